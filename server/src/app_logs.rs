//! Runtime logs: `GET /api/apps/{id}/logs[?since=N]`. As a WebSocket, the app's current
//! deployment status, then its running containers' output as `log` events with a
//! `stream` field, live, for as long as the app exists (the monitor's socket and
//! guarantees 2, 5, 6 and 7); as plain HTTP, the kept lines as text.

use crate::AppState;
use crate::api::parse_id;
use crate::auth::Access;
use crate::error::ApiError;
use axum::extract::{Extension, Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use protocol::Seq;
use std::collections::HashMap;

pub async fn app_logs(
    State(state): State<AppState>,
    access: Option<Extension<Access>>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    upgrade: crate::monitor::Upgrade,
) -> Response {
    let granted = crate::monitor::granted(access);
    if !upgrade.is_websocket() {
        // Plain HTTP: the kept lines as text.
        return match text(&state, granted, &id).await {
            Ok(response) => response,
            Err(e) => e.into_response(),
        };
    }
    let feed = match granted {
        Ok(()) => open(&state, &id, &query).await,
        Err(refusal) => Err(refusal),
    };
    let batch = crate::monitor::batched(&query);
    crate::monitor::socket(
        &state,
        feed,
        upgrade,
        "GET /api/apps/{id}/logs?since=N",
        batch,
    )
}

async fn text(
    state: &AppState,
    granted: Result<(), ApiError>,
    id: &str,
) -> Result<Response, ApiError> {
    granted?;
    let bytes = state.engine.app_log_text(parse_id("app id", id)?).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], bytes).into_response())
}

async fn open(
    state: &AppState,
    id: &str,
    query: &HashMap<String, String>,
) -> Result<engine::AppLogWatcher, ApiError> {
    let id = parse_id("app id", id)?;
    let since = match query.get("since") {
        None => 0,
        Some(text) => text.parse::<Seq>().map_err(|_| {
            ApiError::bad_request(format!(
                "since must be a non-negative integer, not {text:?}"
            ))
        })?,
    };
    Ok(state.engine.watch_app(id, since).await?)
}
