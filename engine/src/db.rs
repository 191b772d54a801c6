//! The database: connection, migrations and every query. Deployments are durable rows;
//! a status changes only through [`transition`], guarded by the status it expects.

use crate::error::{EngineError, Result};
use protocol::validate::ValidApp;
use protocol::{App, AppId, Deployment, DeploymentId, Status};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

pub type Pool = SqlitePool;

/// Database statements run by this process, for `/api/metrics` and the benchmark's
/// "queries per viewer" figure.
pub static QUERIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn count() {
    QUERIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

pub async fn connect(url: &str) -> Result<Pool> {
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        // SQLite busy: wait and retry rather than fail.
        .busy_timeout(Duration::from_secs(10));
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await?;
    sqlx::migrate!("./migrations")
        .run(&pool)
        .await
        .map_err(|e| EngineError::Internal(format!("migrating the database failed: {e}")))?;
    Ok(pool)
}

#[derive(sqlx::FromRow)]
struct AppRow {
    id: i64,
    name: String,
    repo_url: String,
    branch: String,
    dockerfile: String,
    port: Option<i64>,
    env: String,
    container_id: Option<String>,
    url: Option<String>,
    created_at: String,
}

/// An app with what the worker needs and the API never shows (env values, container).
#[derive(Debug, Clone)]
pub struct AppRecord {
    pub id: AppId,
    pub name: String,
    pub repo_url: String,
    pub branch: String,
    pub dockerfile: String,
    pub port: Option<u16>,
    pub env: BTreeMap<String, String>,
    pub container_id: Option<String>,
    pub url: Option<String>,
    pub created_at: String,
}

impl From<AppRow> for AppRecord {
    fn from(row: AppRow) -> Self {
        AppRecord {
            id: row.id,
            name: row.name,
            repo_url: row.repo_url,
            branch: row.branch,
            dockerfile: row.dockerfile,
            port: row.port.and_then(|p| u16::try_from(p).ok()),
            env: serde_json::from_str(&row.env).unwrap_or_default(),
            container_id: row.container_id,
            url: row.url,
            created_at: row.created_at,
        }
    }
}

impl AppRecord {
    pub fn to_api(&self, last_deployment: Option<Deployment>) -> App {
        App {
            id: self.id,
            name: self.name.clone(),
            repo_url: self.repo_url.clone(),
            branch: self.branch.clone(),
            dockerfile: self.dockerfile.clone(),
            port: self.port,
            env_keys: self.env.keys().cloned().collect(),
            created_at: self.created_at.clone(),
            url: self.url.clone(),
            last_deployment,
        }
    }
}

#[derive(sqlx::FromRow)]
struct DeploymentRow {
    id: i64,
    app_id: i64,
    status: String,
    stage: String,
    progress: i64,
    message: String,
    error_message: String,
    failed_stage: Option<String>,
    commit_sha: Option<String>,
    image: Option<String>,
    container_id: Option<String>,
    url: Option<String>,
    created_at: String,
    started_at: Option<String>,
    finished_at: Option<String>,
    duration: Option<f64>,
}

/// A deployment with the container id the API does not show.
#[derive(Debug, Clone)]
pub struct DeploymentRecord {
    pub api: Deployment,
    pub container_id: Option<String>,
}

impl TryFrom<DeploymentRow> for DeploymentRecord {
    type Error = EngineError;
    fn try_from(row: DeploymentRow) -> Result<Self> {
        let status = Status::parse(&row.status).ok_or_else(|| {
            EngineError::Internal(format!(
                "deployment {} has unknown status {:?}",
                row.id, row.status
            ))
        })?;
        Ok(DeploymentRecord {
            api: Deployment {
                id: row.id,
                app_id: row.app_id,
                status,
                stage: Status::parse(&row.stage).unwrap_or(status),
                progress: row.progress.clamp(0, 100) as u8,
                message: row.message,
                error_message: row.error_message,
                failed_stage: row.failed_stage.as_deref().and_then(Status::parse),
                commit: row.commit_sha,
                image: row.image,
                url: row.url,
                created_at: row.created_at,
                started_at: row.started_at,
                finished_at: row.finished_at,
                duration: row.duration,
            },
            container_id: row.container_id,
        })
    }
}

const DEPLOYMENT_COLUMNS: &str = "id, app_id, status, stage, progress, message, error_message, failed_stage, \
     commit_sha, image, container_id, url, created_at, started_at, finished_at, duration";

pub async fn insert_app(pool: &Pool, app: &ValidApp) -> Result<AppRecord> {
    count();
    let env = serde_json::to_string(&app.env).map_err(|e| EngineError::Internal(e.to_string()))?;
    let result = sqlx::query_as::<_, AppRow>(
        "INSERT INTO apps (name, repo_url, branch, dockerfile, port, env, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING *",
    )
    .bind(&app.name)
    .bind(&app.repo_url)
    .bind(&app.branch)
    .bind(&app.dockerfile)
    .bind(app.port.map(i64::from))
    .bind(env)
    .bind(crate::time::now())
    .fetch_one(pool)
    .await;
    match result {
        Ok(row) => Ok(row.into()),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(EngineError::Conflict(
            format!("an app named {:?} already exists", app.name),
        )),
        Err(e) => Err(e.into()),
    }
}

pub async fn app(pool: &Pool, id: AppId) -> Result<AppRecord> {
    count();
    sqlx::query_as::<_, AppRow>("SELECT * FROM apps WHERE id = ?")
        .bind(id)
        .fetch_optional(pool)
        .await?
        .map(AppRecord::from)
        .ok_or_else(|| EngineError::NotFound(format!("app {id} does not exist")))
}

pub async fn apps(pool: &Pool) -> Result<Vec<AppRecord>> {
    count();
    Ok(
        sqlx::query_as::<_, AppRow>("SELECT * FROM apps ORDER BY id")
            .fetch_all(pool)
            .await?
            .into_iter()
            .map(AppRecord::from)
            .collect(),
    )
}

pub async fn delete_app(pool: &Pool, id: AppId) -> Result<()> {
    count();
    sqlx::query("DELETE FROM apps WHERE id = ?")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Replaces an app's settings (already validated).
pub async fn update_app(pool: &Pool, id: AppId, app: &ValidApp) -> Result<()> {
    count();
    let env = serde_json::to_string(&app.env).map_err(|e| EngineError::Internal(e.to_string()))?;
    sqlx::query(
        "UPDATE apps SET repo_url = ?, branch = ?, dockerfile = ?, port = ?, env = ? WHERE id = ?",
    )
    .bind(&app.repo_url)
    .bind(&app.branch)
    .bind(&app.dockerfile)
    .bind(app.port.map(i64::from))
    .bind(env)
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn set_app_container(
    pool: &Pool,
    id: AppId,
    container_id: &str,
    url: Option<&str>,
) -> Result<()> {
    count();
    sqlx::query("UPDATE apps SET container_id = ?, url = ? WHERE id = ?")
        .bind(container_id)
        .bind(url)
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Queues a deployment. With `reuse` (an image and its commit), it is a redeploy: the
/// worker starts that image instead of cloning and building.
pub async fn insert_deployment(
    pool: &Pool,
    app_id: AppId,
    reuse: Option<(&str, Option<&str>)>,
) -> Result<DeploymentRecord> {
    count();
    let pending = Status::Pending;
    let row = sqlx::query_as::<_, DeploymentRow>(&format!(
        "INSERT INTO deployments (app_id, image, commit_sha, status, stage, progress, message, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING {DEPLOYMENT_COLUMNS}"
    ))
    .bind(app_id)
    .bind(reuse.map(|(image, _)| image))
    .bind(reuse.and_then(|(_, commit)| commit))
    .bind(pending.as_str())
    .bind(pending.as_str())
    .bind(i64::from(pending.progress()))
    .bind(pending.default_message())
    .bind(crate::time::now())
    .fetch_one(pool)
    .await?;
    row.try_into()
}

pub async fn deployment(pool: &Pool, id: DeploymentId) -> Result<DeploymentRecord> {
    count();
    sqlx::query_as::<_, DeploymentRow>(&format!(
        "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE id = ?"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| EngineError::NotFound(format!("deployment {id} does not exist")))?
    .try_into()
}

pub async fn deployments_of_app(pool: &Pool, app_id: AppId, limit: i64) -> Result<Vec<Deployment>> {
    count();
    sqlx::query_as::<_, DeploymentRow>(&format!(
        "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE app_id = ? ORDER BY id DESC LIMIT ?"
    ))
    .bind(app_id)
    .bind(limit)
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|row| DeploymentRecord::try_from(row).map(|r| r.api))
    .collect()
}

pub async fn deployments_in(pool: &Pool, statuses: &[Status]) -> Result<Vec<DeploymentRecord>> {
    count();
    let mut all = Vec::new();
    for status in statuses {
        let rows = sqlx::query_as::<_, DeploymentRow>(&format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE status = ? ORDER BY id"
        ))
        .bind(status.as_str())
        .fetch_all(pool)
        .await?;
        for row in rows {
            all.push(row.try_into()?);
        }
    }
    Ok(all)
}

/// Claims the oldest pending deployment of an app that has no deployment in flight,
/// moving it to `cloning` in the same statement so two workers never take the same one.
pub async fn claim_next(pool: &Pool) -> Result<Option<DeploymentRecord>> {
    count();
    let cloning = Status::Cloning;
    let row = sqlx::query_as::<_, DeploymentRow>(&format!(
        "UPDATE deployments SET status = ?1, stage = ?1, progress = ?2, message = ?3, started_at = ?4 \
         WHERE id = (SELECT d.id FROM deployments d WHERE d.status = 'pending' AND NOT EXISTS \
             (SELECT 1 FROM deployments a WHERE a.app_id = d.app_id \
              AND a.status IN ('cloning', 'building', 'deploying')) ORDER BY d.id LIMIT 1) \
         AND status = 'pending' RETURNING {DEPLOYMENT_COLUMNS}"
    ))
    .bind(cloning.as_str())
    .bind(i64::from(cloning.progress()))
    .bind(cloning.default_message())
    .bind(crate::time::now())
    .fetch_optional(pool)
    .await?;
    row.map(DeploymentRecord::try_from).transpose()
}

/// What changes with a status (besides status, stage, progress and message).
#[derive(Debug, Default)]
pub struct Change {
    pub progress: Option<u8>,
    pub error_message: Option<String>,
    pub failed_stage: Option<Status>,
}

/// Moves deployment `id` from `from` to `to` if it is still in `from`. Terminal statuses
/// also record `finished_at` and `duration`. Returns the updated row, or `Conflict` if
/// the deployment was no longer in `from` (someone else moved it).
pub async fn transition(
    pool: &Pool,
    id: DeploymentId,
    from: Status,
    to: Status,
    change: Change,
) -> Result<DeploymentRecord> {
    count();
    if !from.can_transition_to(to) {
        return Err(EngineError::Conflict(format!(
            "deployment {id} cannot go from {from} to {to}"
        )));
    }
    let now = crate::time::now();
    let finished = to.is_terminal().then(|| now.clone());
    let row = sqlx::query_as::<_, DeploymentRow>(&format!(
        "UPDATE deployments SET status = ?1, stage = ?1, progress = ?2, message = ?3, \
           error_message = COALESCE(?4, error_message), failed_stage = COALESCE(?5, failed_stage), \
           finished_at = COALESCE(?6, finished_at), \
           started_at = COALESCE(started_at, CASE WHEN ?1 IN ('failed', 'cancelled') THEN NULL ELSE ?7 END), \
           duration = CASE WHEN ?6 IS NOT NULL AND started_at IS NOT NULL \
             THEN ROUND((julianday(?6) - julianday(started_at)) * 86400.0, 3) ELSE duration END \
         WHERE id = ?8 AND status = ?9 RETURNING {DEPLOYMENT_COLUMNS}"
    ))
    .bind(to.as_str())
    .bind(i64::from(change.progress.unwrap_or(to.progress())))
    .bind(to.default_message())
    .bind(change.error_message)
    .bind(change.failed_stage.map(Status::as_str))
    .bind(finished)
    .bind(now)
    .bind(id)
    .bind(from.as_str())
    .fetch_optional(pool)
    .await?;
    match row {
        Some(row) => row.try_into(),
        None => Err(EngineError::Conflict(format!(
            "deployment {id} is no longer {from}"
        ))),
    }
}

/// Raises progress inside the current stage (never past the next stage's value).
pub async fn set_progress(
    pool: &Pool,
    id: DeploymentId,
    status: Status,
    progress: u8,
) -> Result<DeploymentRecord> {
    count();
    let progress = progress.min(status.progress_ceiling());
    let row = sqlx::query_as::<_, DeploymentRow>(&format!(
        "UPDATE deployments SET progress = MAX(progress, ?1) WHERE id = ?2 AND status = ?3 \
         RETURNING {DEPLOYMENT_COLUMNS}"
    ))
    .bind(i64::from(progress))
    .bind(id)
    .bind(status.as_str())
    .fetch_optional(pool)
    .await?;
    match row {
        Some(row) => row.try_into(),
        None => Err(EngineError::Conflict(format!(
            "deployment {id} is no longer {status}"
        ))),
    }
}

/// Records what the worker produced: the commit, the image, the container and its URL.
pub async fn record_artifacts(
    pool: &Pool,
    id: DeploymentId,
    commit: Option<&str>,
    image: Option<&str>,
    container_id: Option<&str>,
    url: Option<&str>,
) -> Result<()> {
    count();
    sqlx::query(
        "UPDATE deployments SET commit_sha = COALESCE(?, commit_sha), image = COALESCE(?, image), \
         container_id = COALESCE(?, container_id), url = COALESCE(?, url) WHERE id = ?",
    )
    .bind(commit)
    .bind(image)
    .bind(container_id)
    .bind(url)
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}
