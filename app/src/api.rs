//! Server functions: the dashboard's own actions. Each parses its form into the protocol's
//! types with the same rules as the JSON API and calls the same engine methods, so both
//! paths share validation and behaviour. They fail with [`AppError`]: the code and
//! message the JSON API would answer, and the form field at fault.

use leptos::prelude::*;
use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use protocol::{ApiToken, App, AppId, CreatedToken, Deployment, DeploymentId, ErrorCode, LogLine};
use serde::{Deserialize, Serialize};

/// Why a dashboard action failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppError {
    pub code: ErrorCode,
    pub message: String,
    /// The form field at fault, when there is one; the message is shown next to it.
    pub field: Option<String>,
}

impl AppError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> AppError {
        AppError {
            code,
            message: message.into(),
            field: None,
        }
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    /// The request itself failed (the network, the server is away).
    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        AppError::new(ErrorCode::Unavailable, value.to_string())
    }
}

impl From<protocol::validate::FieldError> for AppError {
    fn from(problem: protocol::validate::FieldError) -> Self {
        AppError {
            code: ErrorCode::Unprocessable,
            message: problem.to_string(),
            field: Some(problem.field),
        }
    }
}

/// What the app page shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppView {
    pub app: App,
    /// The event feed's position the history was read at.
    pub since: u64,
    pub deployments: Vec<Deployment>,
    /// Where forges post pushes, once a webhook secret exists.
    pub webhook_url: Option<String>,
    pub deliveries: Vec<protocol::Delivery>,
}

/// What the monitor page shows before the live view takes over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentView {
    pub deployment: Deployment,
    pub app_name: String,
    pub recent_lines: Vec<LogLine>,
}

/// What the runtime logs page shows before the live view takes over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppLogsView {
    pub app: App,
    /// The oldest line the app still keeps.
    pub kept_from: u64,
    pub recent_lines: Vec<LogLine>,
}

/// Lines a page shows before its WebAssembly loads: the newest, at most this many...
pub const RECENT_LINES: u64 = 200;
/// ...and this much text: a late joiner gets the log's end in a page of bounded size
/// (the lines travel twice, rendered and as the island's data), even when lines are
/// 16 KiB long.
pub const RECENT_BYTES: u64 = 64 * 1024;

/// The apps, and the event feed's position they were read at (the live list resumes
/// the feed from it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppList {
    pub since: u64,
    pub apps: Vec<App>,
}

#[server]
pub async fn list_apps() -> Result<AppList, AppError> {
    let engine = ssr::engine()?;
    // Read the position first: an event between the two is applied again, never missed.
    let since = engine.last_event();
    Ok(AppList {
        since,
        apps: engine.apps().await?,
    })
}

#[server]
pub async fn create_app(
    name: String,
    repo_url: String,
    branch: String,
    dockerfile: String,
    port: String,
    env: String,
) -> Result<AppId, AppError> {
    let new = protocol::NewApp::from_form(&name, &repo_url, &branch, &dockerfile, &port, &env)?;
    Ok(ssr::engine()?.create_app(new).await?.id)
}

/// The server's rules for the fields people most often get wrong (the name, the port,
/// the variables), checked in the browser before a form is sent; the server checks every
/// field again. The other rules stay on the server: each rule here is WebAssembly.
fn precheck(name: Option<&str>, port: &str, env: &str, env_field: &str) -> Result<(), AppError> {
    use protocol::validate;
    if let Some(name) = name {
        validate::app_name(name.trim())?;
    }
    if let Some(port) = validate::port_text(port, "port")? {
        validate::port(port)?;
    }
    let env = validate::env_lines(env, env_field)?;
    validate::env(&env).map_err(|mut problem| {
        problem.field = env_field.into();
        problem
    })?;
    Ok(())
}

impl CreateApp {
    pub fn check(&self) -> Result<(), AppError> {
        precheck(Some(&self.name), &self.port, &self.env, "env")
    }
}

#[server]
pub async fn get_app(id: i64) -> Result<AppView, AppError> {
    let engine = ssr::engine()?;
    let since = engine.last_event();
    let app = engine.app(id).await?;
    let deployments = engine.deployments(id).await?;
    let webhook_url = engine
        .webhook_secret(id)
        .await?
        .map(|_| engine.webhook_url(id));
    let deliveries = engine.deliveries(id).await?;
    Ok(AppView {
        app,
        since,
        deployments,
        webhook_url,
        deliveries,
    })
}

/// Queues a deployment; answers its id (the browser opens its monitor; a plain form post
/// is redirected there).
#[server]
pub async fn deploy(app_id: i64) -> Result<DeploymentId, AppError> {
    let deployment = ssr::engine()?.deploy(app_id).await?;
    leptos_axum::redirect(&format!("/deployments/{}", deployment.id));
    Ok(deployment.id)
}

#[server]
pub async fn get_deployment(id: i64) -> Result<DeploymentView, AppError> {
    let engine = ssr::engine()?;
    let deployment = engine.deployment(id).await?;
    let app_name = engine
        .app(deployment.app_id)
        .await
        .map(|a| a.name)
        .unwrap_or_default();
    let recent_lines = engine.recent_lines(id, RECENT_LINES, RECENT_BYTES).await?;
    Ok(DeploymentView {
        deployment,
        app_name,
        recent_lines,
    })
}

/// Deploys an earlier successful deployment's image again and opens its monitor.
#[server]
pub async fn redeploy(id: i64) -> Result<DeploymentId, AppError> {
    let deployment = ssr::engine()?.redeploy(id).await?;
    leptos_axum::redirect(&format!("/deployments/{}", deployment.id));
    Ok(deployment.id)
}

/// Lines `from..=to` of a deployment's log, numbered by the server (the monitor loads
/// the pages it shows; `GET /api/deployments/{id}/lines` is the same for scripts).
#[server]
pub async fn log_lines(id: i64, from: u64, to: u64) -> Result<protocol::LogPage, AppError> {
    Ok(ssr::engine()?
        .lines(id, from, to.min(from.saturating_add(4_999)))
        .await?)
}

/// The lines of a deployment's log that contain `text` (as `GET .../search`).
#[server]
pub async fn search_log(id: i64, text: String) -> Result<Vec<u64>, AppError> {
    Ok(ssr::engine()?.search(id, text.trim()).await?.seqs)
}

/// The app and the newest lines its running containers printed.
#[server]
pub async fn get_app_logs(id: i64) -> Result<AppLogsView, AppError> {
    let engine = ssr::engine()?;
    let app = engine.app(id).await?;
    let (kept_from, recent_lines) = engine.app_log_tail(id, RECENT_LINES).await?;
    Ok(AppLogsView {
        app,
        kept_from,
        recent_lines,
    })
}

/// Lines `from..=to` of an app's runtime log (those still kept).
#[server]
pub async fn app_log_lines(id: i64, from: u64, to: u64) -> Result<protocol::LogPage, AppError> {
    Ok(ssr::engine()?.app_log_lines(id, from, to).await?)
}

/// Starts the image of one of the app's last successful deployments again (a rollback)
/// and opens its monitor.
#[server]
pub async fn rollback(app_id: i64, id: i64) -> Result<DeploymentId, AppError> {
    let deployment = ssr::engine()?.rollback(app_id, Some(id)).await?;
    leptos_axum::redirect(&format!("/deployments/{}", deployment.id));
    Ok(deployment.id)
}

/// A new webhook secret for the app (shown once; the previous one stops working).
#[server]
pub async fn rotate_webhook(app_id: i64) -> Result<protocol::Webhook, AppError> {
    Ok(ssr::engine()?.rotate_webhook(app_id).await?)
}

/// Where a deployment's app answers, once it succeeded: for the monitor of a deployment
/// that went live while watched.
#[server]
pub async fn deployment_url(id: i64) -> Result<Option<String>, AppError> {
    Ok(ssr::engine()?.deployment(id).await?.url)
}

/// Changes an app's settings. `env_set` holds `NAME=value` lines to add or change;
/// `env_remove` names to remove, separated by spaces or commas; `domains` the app's extra
/// host names (spaces, commas or lines). Answers the names of the variables now set:
/// values are never sent back.
#[allow(clippy::too_many_arguments)]
#[server]
pub async fn update_app(
    id: i64,
    repo_url: String,
    branch: String,
    dockerfile: String,
    port: String,
    env_set: String,
    env_remove: String,
    domains: String,
    memory_mb: String,
    cpus: String,
) -> Result<Vec<String>, AppError> {
    use protocol::validate::{blank_to_none, domain_text, env_lines, port_text};
    let mut env: std::collections::BTreeMap<String, Option<String>> =
        env_lines(&env_set, "env_set")?
            .into_iter()
            .map(|(k, v)| (k, Some(v)))
            .collect();
    for name in env_remove.split([' ', ',', '\n']).map(str::trim) {
        if !name.is_empty() {
            env.insert(name.to_owned(), None);
        }
    }
    let changes = protocol::AppChanges {
        repo_url: Some(repo_url.trim().to_owned()),
        branch: blank_to_none(&branch),
        dockerfile: blank_to_none(&dockerfile),
        port: Some(port_text(&port, "port")?),
        env,
        domains: Some(domain_text(&domains)),
        memory_mb: number_text(&memory_mb, "memory_mb")?,
        cpus: number_text(&cpus, "cpus")?,
    };
    match ssr::engine()?.update_app(id, changes).await {
        Ok(app) => Ok(app.env_keys),
        // The form's field for variables is `env_set`.
        Err(e) => {
            let mut error = AppError::from(e);
            if error.field.as_deref() == Some("env") {
                error.field = Some("env_set".into());
            }
            Err(error)
        }
    }
}

impl UpdateApp {
    pub fn check(&self) -> Result<(), AppError> {
        precheck(None, &self.port, &self.env_set, "env_set")
    }
}

/// A number typed into a form: blank is none.
#[cfg_attr(not(feature = "ssr"), allow(dead_code))]
fn number_text<T: std::str::FromStr>(
    text: &str,
    field: &str,
) -> Result<Option<T>, protocol::validate::FieldError> {
    match text.trim() {
        "" => Ok(None),
        text => text
            .parse()
            .map(Some)
            .map_err(|_| protocol::validate::FieldError::new(field, "must be a number")),
    }
}

#[server]
pub async fn cancel_deployment(id: i64) -> Result<(), AppError> {
    ssr::engine()?.cancel(id).await?;
    Ok(())
}

/// Whether `code` is the setup code, so `/setup` may show its form (while no account
/// exists). A wrong or missing code answers `false` and makes the page a 403.
#[server]
pub async fn setup_allowed(code: String) -> Result<bool, AppError> {
    let allowed = ssr::engine()?.auth().setup_code_matches(&code);
    if !allowed
        && let Some(response) = leptos::prelude::use_context::<leptos_axum::ResponseOptions>()
    {
        response.set_status(axum::http::StatusCode::FORBIDDEN);
    }
    Ok(allowed)
}

/// Who is signed in, for the header; `None` on the public sign-in pages.
#[server]
pub async fn current_user() -> Result<Option<String>, AppError> {
    Ok(ssr::principal().await.map(|p| p.name))
}

#[server]
pub async fn list_tokens() -> Result<Vec<ApiToken>, AppError> {
    Ok(ssr::engine()?.auth().tokens().await?)
}

/// Creates an API token; the answer is the only time its secret is shown.
#[server]
pub async fn new_token(name: String) -> Result<CreatedToken, AppError> {
    let by = ssr::principal()
        .await
        .ok_or_else(|| AppError::new(ErrorCode::Unauthorized, "sign in first"))?;
    Ok(ssr::engine()?.auth().create_token(&name, &by).await?)
}

#[server]
pub async fn revoke_token(id: i64) -> Result<(), AppError> {
    Ok(ssr::engine()?.auth().revoke_token(id).await?)
}

/// The nodes of the cluster (one on SQLite).
#[server]
pub async fn list_nodes() -> Result<Vec<protocol::NodeInfo>, AppError> {
    Ok(ssr::engine()?.nodes().await?)
}

#[cfg(feature = "ssr")]
mod ssr {
    use super::AppError;
    use protocol::ErrorCode;

    /// The request's principal, put there by the server's gate.
    pub async fn principal() -> Option<engine::auth::Principal> {
        leptos_axum::extract::<axum::Extension<engine::auth::Principal>>()
            .await
            .ok()
            .map(|axum::Extension(p)| p)
    }

    pub fn engine() -> Result<engine::Engine, AppError> {
        leptos::prelude::use_context::<engine::Engine>()
            .ok_or_else(|| AppError::new(ErrorCode::Internal, engine::error::INTERNAL_MESSAGE))
    }

    /// The JSON API's rule (`EngineError::code`); internal detail goes to the log only.
    impl From<engine::EngineError> for AppError {
        fn from(e: engine::EngineError) -> Self {
            let code = e.code();
            if code == ErrorCode::Internal {
                leptos::logging::error!("server function failed: {e}");
            }
            AppError {
                code,
                message: e.public_message(),
                field: e.field().map(str::to_owned),
            }
        }
    }
}

#[server]
pub async fn list_notifications() -> Result<Vec<protocol::Notification>, AppError> {
    Ok(ssr::engine()?.notifications().await?)
}

/// Adds an outgoing notification from the form: a checkbox per status it is sent for.
#[server]
pub async fn add_notification(
    url: String,
    format: String,
    success: Option<String>,
    failed: Option<String>,
    cancelled: Option<String>,
) -> Result<protocol::CreatedNotification, AppError> {
    use protocol::{NotificationFormat, Status};
    let format = match format.as_str() {
        "slack" => NotificationFormat::Slack,
        "json" | "" => NotificationFormat::Json,
        other => {
            return Err(AppError::from(protocol::validate::FieldError::new(
                "format",
                format!("must be json or slack, not {other:?}"),
            )));
        }
    };
    let events = [
        (success, Status::Success),
        (failed, Status::Failed),
        (cancelled, Status::Cancelled),
    ]
    .into_iter()
    .filter_map(|(checked, status)| checked.map(|_| status))
    .collect();
    let new = protocol::NewNotification {
        url,
        events,
        format,
    };
    Ok(ssr::engine()?.create_notification(new).await?)
}

#[server]
pub async fn delete_notification(id: i64) -> Result<(), AppError> {
    Ok(ssr::engine()?.delete_notification(id).await?)
}
