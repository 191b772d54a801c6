//! Server functions: the dashboard's own actions. Each calls the same engine methods as
//! the HTTP API, so both paths share validation and behaviour.

use leptos::prelude::*;
use protocol::{ApiToken, App, AppId, CreatedToken, Deployment, DeploymentId, LogLine};
use serde::{Deserialize, Serialize};

/// A rejected form field, shown next to its input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldProblem {
    /// The field at fault, when there is one.
    pub field: Option<String>,
    pub message: String,
}

/// What the app page shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppView {
    pub app: App,
    pub deployments: Vec<Deployment>,
}

/// What the monitor page shows before the live view takes over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentView {
    pub deployment: Deployment,
    pub app_name: String,
    pub recent_lines: Vec<LogLine>,
}

/// Lines a page shows before its WebAssembly loads.
pub const RECENT_LINES: u64 = 200;

#[server]
pub async fn list_apps() -> Result<Vec<App>, ServerFnError> {
    use self::ssr::*;
    engine()?.apps().await.map_err(internal)
}

#[server]
pub async fn create_app(
    name: String,
    repo_url: String,
    branch: String,
    dockerfile: String,
    port: String,
    env: String,
) -> Result<Result<AppId, FieldProblem>, ServerFnError> {
    use self::ssr::*;
    let port = match port.trim() {
        "" => None,
        text => match text.parse::<i64>() {
            Ok(port) => Some(port),
            Err(_) => {
                return Ok(Err(FieldProblem {
                    field: Some("port".into()),
                    message: "port: must be a number from 1 to 65535".into(),
                }));
            }
        },
    };
    let env = match parse_env(&env) {
        Ok(env) => env,
        Err(message) => {
            return Ok(Err(FieldProblem {
                field: Some("env".into()),
                message,
            }));
        }
    };
    let blank_to_none = |s: String| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
    let new = protocol::NewApp {
        name: name.trim().to_owned(),
        repo_url: repo_url.trim().to_owned(),
        branch: blank_to_none(branch),
        dockerfile: blank_to_none(dockerfile),
        port,
        env,
    };
    match engine()?.create_app(new).await {
        Ok(app) => Ok(Ok(app.id)),
        Err(::engine::EngineError::Invalid(problem)) => Ok(Err(FieldProblem {
            message: problem.to_string(),
            field: Some(problem.field),
        })),
        Err(::engine::EngineError::Conflict(message)) => Ok(Err(FieldProblem {
            field: Some("name".into()),
            message: format!("name: {message}"),
        })),
        Err(e) => Err(internal(e)),
    }
}

#[server]
pub async fn get_app(id: i64) -> Result<AppView, ServerFnError> {
    use self::ssr::*;
    let engine = engine()?;
    let app = engine.app(id).await.map_err(internal)?;
    let deployments = engine.deployments(id).await.map_err(internal)?;
    Ok(AppView { app, deployments })
}

/// Queues a deployment; answers its id (the browser opens its monitor; a plain form post
/// is redirected there).
#[server]
pub async fn deploy(app_id: i64) -> Result<DeploymentId, ServerFnError> {
    use self::ssr::*;
    let deployment = engine()?.deploy(app_id).await.map_err(internal)?;
    leptos_axum::redirect(&format!("/deployments/{}", deployment.id));
    Ok(deployment.id)
}

#[server]
pub async fn get_deployment(id: i64) -> Result<DeploymentView, ServerFnError> {
    use self::ssr::*;
    let engine = engine()?;
    let deployment = engine.deployment(id).await.map_err(internal)?;
    let app_name = engine
        .app(deployment.app_id)
        .await
        .map(|a| a.name)
        .unwrap_or_default();
    let recent_lines = engine
        .recent_lines(id, RECENT_LINES)
        .await
        .map_err(internal)?;
    Ok(DeploymentView {
        deployment,
        app_name,
        recent_lines,
    })
}

/// Deploys an earlier successful deployment's image again and opens its monitor.
#[server]
pub async fn redeploy(id: i64) -> Result<DeploymentId, ServerFnError> {
    use self::ssr::*;
    let deployment = engine()?.redeploy(id).await.map_err(internal)?;
    leptos_axum::redirect(&format!("/deployments/{}", deployment.id));
    Ok(deployment.id)
}

/// Where a deployment's app answers, once it succeeded: for the monitor of a deployment
/// that went live while watched.
#[server]
pub async fn deployment_url(id: i64) -> Result<Option<String>, ServerFnError> {
    use self::ssr::*;
    Ok(engine()?.deployment(id).await.map_err(internal)?.url)
}

/// Changes an app's settings. `env_set` holds `NAME=value` lines to add or change;
/// `env_remove` names to remove, separated by spaces or commas. Answers the names of the
/// variables now set: values are never sent back.
#[server]
pub async fn update_app(
    id: i64,
    repo_url: String,
    branch: String,
    dockerfile: String,
    port: String,
    env_set: String,
    env_remove: String,
) -> Result<Result<Vec<String>, FieldProblem>, ServerFnError> {
    use self::ssr::*;
    let problem = |field: &str, message: String| {
        Ok(Err(FieldProblem {
            field: Some(field.to_owned()),
            message,
        }))
    };
    let port = match port.trim() {
        "" => Some(None),
        text => match text.parse::<i64>() {
            Ok(port) => Some(Some(port)),
            Err(_) => return problem("port", "port: must be a number from 1 to 65535".into()),
        },
    };
    let mut env = std::collections::BTreeMap::new();
    match parse_env(&env_set) {
        Ok(set) => env.extend(set.into_iter().map(|(k, v)| (k, Some(v)))),
        Err(message) => return problem("env_set", message),
    }
    for name in env_remove
        .split([' ', ',', '\n'])
        .filter(|n| !n.trim().is_empty())
    {
        env.insert(name.trim().to_owned(), None);
    }
    let changes = protocol::AppChanges {
        repo_url: Some(repo_url.trim().to_owned()),
        branch: Some(branch.trim().to_owned()).filter(|b| !b.is_empty()),
        dockerfile: Some(dockerfile.trim().to_owned()).filter(|d| !d.is_empty()),
        port,
        env,
    };
    match engine()?.update_app(id, changes).await {
        Ok(app) => Ok(Ok(app.env_keys)),
        Err(::engine::EngineError::Invalid(p)) => {
            let field = if p.field == "env" {
                "env_set".to_owned()
            } else {
                p.field.clone()
            };
            problem(&field, p.to_string())
        }
        Err(e) => Err(internal(e)),
    }
}

#[server]
pub async fn cancel_deployment(id: i64) -> Result<(), ServerFnError> {
    use self::ssr::*;
    engine()?.cancel(id).await.map_err(internal)?;
    Ok(())
}

/// Who is signed in, for the header; `None` on the public sign-in pages.
#[server]
pub async fn current_user() -> Result<Option<String>, ServerFnError> {
    Ok(self::ssr::principal().await.map(|p| p.name))
}

#[server]
pub async fn list_tokens() -> Result<Vec<ApiToken>, ServerFnError> {
    use self::ssr::*;
    engine()?.auth().tokens().await.map_err(internal)
}

/// Creates an API token; the answer is the only time its secret is shown.
#[server]
pub async fn new_token(name: String) -> Result<Result<CreatedToken, FieldProblem>, ServerFnError> {
    use self::ssr::*;
    let by = principal()
        .await
        .ok_or_else(|| ServerFnError::new("sign in first"))?;
    match engine()?.auth().create_token(&name, &by).await {
        Ok(created) => Ok(Ok(created)),
        Err(::engine::EngineError::Invalid(problem)) => Ok(Err(FieldProblem {
            field: Some(problem.field.clone()),
            message: problem.to_string(),
        })),
        Err(e) => Err(internal(e)),
    }
}

#[server]
pub async fn revoke_token(id: i64) -> Result<(), ServerFnError> {
    use self::ssr::*;
    engine()?.auth().revoke_token(id).await.map_err(internal)
}

#[cfg(feature = "ssr")]
mod ssr {
    use leptos::prelude::*;
    use std::collections::BTreeMap;

    /// The request's principal, put there by the server's gate.
    pub async fn principal() -> Option<engine::auth::Principal> {
        leptos_axum::extract::<axum::Extension<engine::auth::Principal>>()
            .await
            .ok()
            .map(|axum::Extension(p)| p)
    }

    pub fn engine() -> Result<engine::Engine, ServerFnError> {
        use_context::<engine::Engine>()
            .ok_or_else(|| ServerFnError::new("the engine is not available"))
    }

    /// Engine errors for the page: what a person can act on, never internal detail.
    pub fn internal(e: engine::EngineError) -> ServerFnError {
        match e {
            engine::EngineError::NotFound(m) | engine::EngineError::Conflict(m) => {
                ServerFnError::new(m)
            }
            engine::EngineError::Invalid(f) => ServerFnError::new(f.to_string()),
            other => {
                leptos::logging::error!("server function failed: {other}");
                ServerFnError::new("internal error: the server log has the details")
            }
        }
    }

    /// `KEY=value` lines; blank lines and `#` comments are skipped.
    pub fn parse_env(text: &str) -> Result<BTreeMap<String, String>, String> {
        let mut env = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| format!("env: line {} must look like NAME=value", n + 1))?;
            env.insert(key.trim().to_owned(), value.to_owned());
        }
        Ok(env)
    }
}
