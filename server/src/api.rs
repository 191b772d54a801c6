//! The JSON HTTP API of PROTOCOL.md. Bodies are parsed by serde into the protocol's
//! types ([`Body`]); handlers call the engine and map its errors; they hold no logic of
//! their own.

use crate::AppState;
use crate::error::ApiError;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, FromRequest, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use engine::auth::Principal;
use protocol::{ApiToken, App, AppChanges, CreatedToken, Deployment, ErrorCode, NewApp};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A request body the API parses.
pub trait Input: DeserializeOwned {
    /// The answer to a field of the wrong type or a missing one: `422` by default;
    /// PROTOCOL.md asks `400` of some bodies.
    const REJECTION: ErrorCode = ErrorCode::Unprocessable;
}

impl Input for NewApp {}
impl Input for AppChanges {}
impl Input for protocol::Rollback {
    const REJECTION: ErrorCode = ErrorCode::BadRequest;
}
impl Input for protocol::NewNotification {}
impl Input for protocol::NewToken {
    const REJECTION: ErrorCode = ErrorCode::BadRequest;
}
impl Input for protocol::NewDeployment {
    const REJECTION: ErrorCode = ErrorCode::BadRequest;
}

/// The body of `POST /api/account/password`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    current_password: String,
    new_password: String,
}

impl Input for PasswordChange {}

/// A JSON body parsed into `T`; anything else becomes our error format: `400` when it is
/// not a JSON object, `413` when too large, `T::REJECTION` naming the field otherwise.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: Input> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    "the request body is larger than 256 KiB",
                )
            } else {
                ApiError::bad_request(format!("the request body could not be read: {rejection}"))
            }
        })?;
        parse(&bytes).map(Body)
    }
}

/// Parses a body: syntax errors and non-objects are `400`; a field's error names it.
pub fn parse<T: Input>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde names a missing field only inside its message: "missing field `name`".
        let message = match inner.strip_prefix("missing field `") {
            Some(rest) => format!("{}: is required", rest.trim_end_matches('`')),
            None if path == "." => inner,
            None => format!("{path}: {inner}"),
        };
        ApiError::new(T::REJECTION, message)
    })
}

/// A numeric id from the path; anything else is a 400 naming it.
pub fn parse_id(what: &str, text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| {
            ApiError::bad_request(format!("{what} must be a positive integer, not {text:?}"))
        })
}

pub async fn health() -> Json<Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// Counters for operators and the benchmark.
pub async fn metrics() -> Json<Value> {
    use std::sync::atomic::Ordering::Relaxed;
    Json(serde_json::json!({
        "db_queries": engine::QUERIES.load(Relaxed),
        "viewers": crate::monitor::VIEWERS.load(Relaxed),
    }))
}

/// `GET /metrics`: the Prometheus series of PROTOCOL.md, in the OpenMetrics text format.
pub async fn prometheus(State(state): State<AppState>) -> Result<Response, ApiError> {
    use std::sync::atomic::Ordering::Relaxed;
    let viewers = crate::monitor::VIEWERS.load(Relaxed) as u64;
    let text = state.engine.metrics(viewers).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

pub async fn list_apps(State(state): State<AppState>) -> Result<Json<Vec<App>>, ApiError> {
    Ok(Json(state.engine.apps().await?))
}

pub async fn create_app(
    State(state): State<AppState>,
    Body(new): Body<NewApp>,
) -> Result<Response, ApiError> {
    let app = state.engine.create_app(new).await?;
    Ok((StatusCode::CREATED, Json(app)).into_response())
}

/// `PATCH /api/apps/{id}`: changes settings; see `AppChanges`.
pub async fn update_app(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Body(changes): Body<AppChanges>,
) -> Result<Json<App>, ApiError> {
    let id = parse_id("app id", &id)?;
    Ok(Json(state.engine.update_app(id, changes).await?))
}

/// `POST /api/apps/{id}/rollback` with `{"deployment_id": N}` or no body: starts that
/// deployment's image again (by default the successful one before the current).
pub async fn rollback(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Deployment>), ApiError> {
    let app = parse_id("app id", &id)?;
    let request: protocol::Rollback = if body.iter().all(u8::is_ascii_whitespace) {
        protocol::Rollback::default()
    } else {
        parse(&body)?
    };
    let to = request
        .deployment_id
        .map(|id| i64::try_from(id.get()).unwrap_or(i64::MAX));
    let deployment = state.engine.rollback(app, to).await?;
    Ok((StatusCode::CREATED, Json(deployment)))
}

/// `POST /api/apps/{id}/webhook`: a new webhook secret (the old one stops working) and
/// the URL forges post to.
pub async fn rotate_webhook(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<protocol::Webhook>, ApiError> {
    Ok(Json(
        state
            .engine
            .rotate_webhook(parse_id("app id", &id)?)
            .await?,
    ))
}

/// `GET /api/apps/{id}/webhook/deliveries`: the app's recent deliveries and what each did.
pub async fn deliveries(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<protocol::Delivery>>, ApiError> {
    Ok(Json(
        state.engine.deliveries(parse_id("app id", &id)?).await?,
    ))
}

/// `POST /api/deployments/{id}/redeploy`: deploys that deployment's image again.
pub async fn redeploy(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Deployment>), ApiError> {
    let deployment = state
        .engine
        .redeploy(parse_id("deployment id", &id)?)
        .await?;
    Ok((StatusCode::CREATED, Json(deployment)))
}

pub async fn show_app(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<App>, ApiError> {
    Ok(Json(state.engine.app(parse_id("app id", &id)?).await?))
}

pub async fn delete_app(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.engine.delete_app(parse_id("app id", &id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn app_deployments(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<Deployment>>, ApiError> {
    Ok(Json(
        state.engine.deployments(parse_id("app id", &id)?).await?,
    ))
}

pub async fn create_deployment(
    State(state): State<AppState>,
    Body(new): Body<protocol::NewDeployment>,
) -> Result<Response, ApiError> {
    let app_id = i64::try_from(new.app_id.get()).unwrap_or(i64::MAX);
    let deployment = state
        .engine
        .deploy_commit(app_id, new.commit.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(deployment)).into_response())
}

pub async fn show_deployment(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Deployment>, ApiError> {
    Ok(Json(
        state
            .engine
            .deployment(parse_id("deployment id", &id)?)
            .await?,
    ))
}

pub async fn cancel_deployment(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Deployment>, ApiError> {
    Ok(Json(
        state.engine.cancel(parse_id("deployment id", &id)?).await?,
    ))
}

/// Bytes read from the log file at a time: the download's memory, whatever the log's size.
const DOWNLOAD_CHUNK: usize = 64 * 1024;

/// `GET /api/deployments/{id}/logs`: the log as it stands, streamed from its file (a log
/// may hold `SLIPWAY_LOG_MAX_MB`; many downloads at once must not hold it in memory).
pub async fn deployment_log(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let log = state
        .engine
        .log_file(parse_id("deployment id", &id)?)
        .await?;
    let len = log.len;
    let body = axum::body::Body::from_stream(log.into_stream(DOWNLOAD_CHUNK));
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_owned()),
            (header::CONTENT_LENGTH, len.to_string()),
        ],
        body,
    )
        .into_response())
}

/// Most lines one `GET /api/deployments/{id}/lines` answers.
pub const MAX_PAGE_LINES: u64 = 5000;

#[derive(serde::Deserialize)]
pub struct LinesQuery {
    from: Option<String>,
    to: Option<String>,
}

/// `GET /api/deployments/{id}/lines?from=A&to=B`: lines `A..=B` with their seqs (at most
/// 5,000 at a time), and the log's length.
pub async fn deployment_lines(
    State(state): State<AppState>,
    Path(id): Path<String>,
    axum::extract::Query(query): axum::extract::Query<LinesQuery>,
) -> Result<Json<protocol::LogPage>, ApiError> {
    let id = parse_id("deployment id", &id)?;
    let seq = |name: &str, text: Option<&str>| -> Result<u64, ApiError> {
        text.ok_or_else(|| ApiError::bad_request(format!("{name} is required")))?
            .parse::<u64>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| ApiError::bad_request(format!("{name} must be a positive integer")))
    };
    let from = seq("from", query.from.as_deref())?;
    let to = seq("to", query.to.as_deref())?;
    if to < from || to - from >= MAX_PAGE_LINES {
        return Err(ApiError::bad_request(format!(
            "to must be from {from} to {}",
            from + MAX_PAGE_LINES - 1
        )));
    }
    Ok(Json(state.engine.lines(id, from, to).await?))
}

#[derive(serde::Deserialize)]
pub struct SearchQuery {
    q: Option<String>,
}

/// `GET /api/deployments/{id}/search?q=TEXT`: the seqs of the lines containing TEXT.
pub async fn search_log(
    State(state): State<AppState>,
    Path(id): Path<String>,
    axum::extract::Query(query): axum::extract::Query<SearchQuery>,
) -> Result<Json<protocol::SearchResult>, ApiError> {
    let id = parse_id("deployment id", &id)?;
    let text = query.q.unwrap_or_default();
    if text.trim().is_empty() || text.len() > 1024 {
        return Err(ApiError::bad_request("q must be 1 to 1024 characters"));
    }
    Ok(Json(state.engine.search(id, text.trim()).await?))
}

pub async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such API route: see PROTOCOL.md")
}

/// `POST /api/account/password` with `{"current_password", "new_password"}`: the
/// signed-in user's new password. Every session of the user ends; the answer sets a new
/// session cookie. API tokens have no password (403). Throttled like signing in.
pub async fn change_password(
    State(state): State<AppState>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    Extension(by): Extension<Principal>,
    Body(change): Body<PasswordChange>,
) -> Result<Response, ApiError> {
    let user = crate::auth::password_owner(&by)?;
    let secret = state
        .engine
        .auth()
        .change_password(
            user,
            &change.current_password,
            &change.new_password,
            peer.ip(),
        )
        .await?;
    Ok(crate::auth::with_session(
        &state,
        StatusCode::NO_CONTENT.into_response(),
        &secret,
    ))
}

/// `DELETE /api/sessions`: signs out every session of the signed-in user (this one
/// included), or with an API token every session of everyone. Answers `{"ended": N}`.
pub async fn end_sessions(
    State(state): State<AppState>,
    Extension(by): Extension<Principal>,
) -> Result<Response, ApiError> {
    let ended = state
        .engine
        .auth()
        .sign_out_everywhere(crate::auth::sessions_of(&by))
        .await?;
    let answer = Json(serde_json::json!({ "ended": ended })).into_response();
    Ok(match crate::auth::sessions_of(&by) {
        Some(_) => crate::auth::with_session(&state, answer, ""),
        None => answer,
    })
}

/// `GET /api/nodes`: the nodes of the cluster (one on SQLite), with whether each is
/// alive and what it runs.
pub async fn nodes(
    State(state): State<AppState>,
) -> Result<Json<Vec<protocol::NodeInfo>>, ApiError> {
    Ok(Json(state.engine.nodes().await?))
}

/// `GET /api/tokens`: API tokens, never their secrets.
pub async fn list_tokens(State(state): State<AppState>) -> Result<Json<Vec<ApiToken>>, ApiError> {
    Ok(Json(state.engine.auth().tokens().await?))
}

/// `POST /api/tokens` with `{"name": "ci"}`: the answer holds the token, shown only once.
pub async fn create_token(
    State(state): State<AppState>,
    Extension(by): Extension<Principal>,
    Body(new): Body<protocol::NewToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let created = state.engine.auth().create_token(&new.name, &by).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// `DELETE /api/tokens/{id}`: the token stops working at once.
pub async fn revoke_token(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id("token id", &id)?;
    state.engine.auth().revoke_token(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/notifications`: `201` with the id and the secret (shown only once).
pub async fn create_notification(
    State(state): State<AppState>,
    Body(new): Body<protocol::NewNotification>,
) -> Result<(StatusCode, Json<protocol::CreatedNotification>), ApiError> {
    let created = state.engine.create_notification(new).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

pub async fn list_notifications(
    State(state): State<AppState>,
) -> Result<Json<Vec<protocol::Notification>>, ApiError> {
    Ok(Json(state.engine.notifications().await?))
}

pub async fn delete_notification(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id("notification id", &id)?;
    state.engine.delete_notification(id).await?;
    Ok(StatusCode::NO_CONTENT)
}
