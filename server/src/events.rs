//! The event feed: `GET /api/events[?since=N]` (a WebSocket). Every deployment created or
//! changing status and every app created, changed or deleted, in one ordered feed, served
//! by the monitor's socket loop; a `since` older than what the feed keeps is refused with
//! an `error` event `gone` (close 4410), and the client reloads.

use crate::AppState;
use crate::auth::Access;
use crate::error::ApiError;
use axum::extract::{Extension, Query, State};
use axum::response::Response;
use std::collections::HashMap;

pub async fn events(
    State(state): State<AppState>,
    access: Option<Extension<Access>>,
    Query(query): Query<HashMap<String, String>>,
    upgrade: crate::monitor::Upgrade,
) -> Response {
    let feed = crate::monitor::granted(access).and_then(|()| open(&state, &query));
    crate::monitor::socket(&state, feed, upgrade, "GET /api/events?since=N", false)
}

fn open(
    state: &AppState,
    query: &HashMap<String, String>,
) -> Result<engine::FeedWatcher, ApiError> {
    let since = match query.get("since") {
        None => None,
        Some(text) => Some(text.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!(
                "since must be a non-negative integer, not {text:?}"
            ))
        })?),
    };
    Ok(state.engine.watch_events(since)?)
}
