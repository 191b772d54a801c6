//! The JSON HTTP API of PROTOCOL.md. Handlers parse and check input, call the engine,
//! and map its errors; they hold no logic of their own.

use crate::AppState;
use crate::error::ApiError;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, FromRequest, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use engine::auth::Principal;
use protocol::{ApiToken, App, CreatedToken, Deployment, ErrorCode, NewApp};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A JSON object body; anything else becomes our error format (400, or 413 when too large).
pub struct JsonObject(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
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
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(JsonObject(map)),
            Ok(_) => Err(ApiError::bad_request(
                "the request body must be a JSON object",
            )),
            Err(e) => Err(ApiError::bad_request(format!(
                "the request body is not valid JSON: {e}"
            ))),
        }
    }
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
        "db_queries": engine::db::QUERIES.load(Relaxed),
        "viewers": crate::monitor::VIEWERS.load(Relaxed),
    }))
}

pub async fn list_apps(State(state): State<AppState>) -> Result<Json<Vec<App>>, ApiError> {
    Ok(Json(state.engine.apps().await?))
}

pub async fn create_app(
    State(state): State<AppState>,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let new = new_app_from_json(&body)?;
    let app = state.engine.create_app(new).await?;
    Ok((StatusCode::CREATED, Json(app)).into_response())
}

/// `PATCH /api/apps/{id}`: changes settings; see `AppChanges`.
pub async fn update_app(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<Json<App>, ApiError> {
    let id = parse_id("app id", &id)?;
    if let Some(field) = body.keys().find(|k| {
        !matches!(
            k.as_str(),
            "repo_url" | "branch" | "dockerfile" | "port" | "env"
        )
    }) {
        return Err(unprocessable(
            field,
            "cannot be changed (repo_url, branch, dockerfile, port and env can)",
        ));
    }
    let port = port_field(&body)?;
    let env = env_field(&body, true)?;
    let changes = protocol::AppChanges {
        repo_url: optional_string(&body, "repo_url")?,
        branch: optional_string(&body, "branch")?,
        dockerfile: optional_string(&body, "dockerfile")?,
        port,
        env,
    };
    Ok(Json(state.engine.update_app(id, changes).await?))
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

fn unprocessable(field: &str, message: &str) -> ApiError {
    ApiError::new(ErrorCode::Unprocessable, format!("{field}: {message}"))
}

fn optional_string(body: &Map<String, Value>, field: &str) -> Result<Option<String>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(unprocessable(field, "must be a string")),
    }
}

/// `port`: absent (`None`), `null` (`Some(None)`) or a whole number.
fn port_field(body: &Map<String, Value>) -> Result<Option<Option<i64>>, ApiError> {
    match body.get("port") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(|p| Some(Some(p)))
            .ok_or_else(|| unprocessable("port", "must be a whole number from 1 to 65535")),
        Some(_) => Err(unprocessable("port", "must be a number from 1 to 65535")),
    }
}

/// `env`: an object of names to string values; with `removals`, `null` removes a name.
fn env_field(
    body: &Map<String, Value>,
    removals: bool,
) -> Result<BTreeMap<String, Option<String>>, ApiError> {
    let vars = match body.get("env") {
        None | Some(Value::Null) => return Ok(BTreeMap::new()),
        Some(Value::Object(vars)) => vars,
        Some(_) => {
            return Err(unprocessable(
                "env",
                "must be an object of names to string values",
            ));
        }
    };
    let mut env = BTreeMap::new();
    for (key, value) in vars {
        let value = match value {
            Value::String(s) => Some(s.clone()),
            Value::Null if removals => None,
            _ if removals => {
                return Err(unprocessable(
                    "env",
                    &format!("the value of {key:?} must be a string, or null to remove it"),
                ));
            }
            _ => {
                return Err(unprocessable(
                    "env",
                    &format!("the value of {key:?} must be a string"),
                ));
            }
        };
        env.insert(key.clone(), value);
    }
    Ok(env)
}

/// Field by field, so every type error names its field.
fn new_app_from_json(body: &Map<String, Value>) -> Result<NewApp, ApiError> {
    let name =
        optional_string(body, "name")?.ok_or_else(|| unprocessable("name", "is required"))?;
    let repo_url = optional_string(body, "repo_url")?
        .ok_or_else(|| unprocessable("repo_url", "is required"))?;
    let port = port_field(body)?.flatten();
    let env = env_field(body, false)?
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name, v)))
        .collect();
    Ok(NewApp {
        name,
        repo_url,
        branch: optional_string(body, "branch")?,
        dockerfile: optional_string(body, "dockerfile")?,
        port,
        env,
    })
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
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let value = body.get("appId").or_else(|| body.get("app_id"));
    let app_id = match value {
        Some(Value::Number(n)) => n.as_i64().filter(|id| *id > 0),
        _ => None,
    }
    .ok_or_else(|| ApiError::bad_request("appId is required and must be a positive integer"))?;
    let deployment = state.engine.deploy(app_id).await?;
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

pub async fn deployment_log(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let bytes = state.engine.log(parse_id("deployment id", &id)?).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], bytes).into_response())
}

pub async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such API route: see PROTOCOL.md")
}

/// `GET /api/tokens`: API tokens, never their secrets.
pub async fn list_tokens(State(state): State<AppState>) -> Result<Json<Vec<ApiToken>>, ApiError> {
    Ok(Json(state.engine.auth().tokens().await?))
}

/// `POST /api/tokens` with `{"name": "ci"}`: the answer holds the token, shown only once.
pub async fn create_token(
    State(state): State<AppState>,
    Extension(by): Extension<Principal>,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let name = match body.get("name") {
        Some(Value::String(name)) => name,
        Some(_) => return Err(ApiError::bad_request("name must be a string")),
        None => return Err(ApiError::bad_request("name is required")),
    };
    let created = state.engine.auth().create_token(name, &by).await?;
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
