//! The database: connection, migrations and every query. Private to the engine: status
//! changes go through [`crate::lifecycle`], which commits here and then publishes.
//!
//! Statuses are stored as TEXT through `sqlx::Type`; `stage` and `message` are not stored
//! (they follow from the status).

use crate::credentials::RepoCredentials;
use crate::error::{Conflict, EngineError, Missing, Result};
use protocol::validate::ValidApp;
use protocol::{
    App, AppAction, AppChange, AppId, Deployment, DeploymentId, DeploymentSummary, FeedEvent,
    FeedId, NotificationFormat, Status,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

pub(crate) type Pool = SqlitePool;

/// Database statements run by this process, for `/api/metrics` and the benchmark's
/// "queries per viewer" figure.
pub static QUERIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub(crate) fn count() {
    QUERIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

pub(crate) async fn connect(url: &str) -> Result<Pool> {
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
    repo_credentials: Option<String>,
    memory_mb: i64,
    cpus: f64,
}

/// An app with what the worker needs and the API never shows (env values, credentials,
/// container).
#[derive(Debug, Clone)]
pub(crate) struct AppRecord {
    pub id: AppId,
    pub name: String,
    pub repo_url: String,
    pub branch: String,
    pub dockerfile: String,
    pub port: Option<u16>,
    pub env: BTreeMap<String, String>,
    /// For `repo_url`, which holds none itself.
    pub credentials: Option<RepoCredentials>,
    pub container_id: Option<String>,
    /// Where the serving container answers on loopback: the edge's upstream.
    pub url: Option<String>,
    pub created_at: String,
    pub domains: Vec<String>,
    pub memory_mb: u32,
    pub cpus: f64,
}

impl AppRecord {
    fn from_row(row: AppRow, domains: Vec<String>) -> Self {
        AppRecord {
            id: row.id,
            name: row.name,
            repo_url: row.repo_url,
            branch: row.branch,
            dockerfile: row.dockerfile,
            port: row.port.and_then(|p| u16::try_from(p).ok()),
            env: serde_json::from_str(&row.env).unwrap_or_default(),
            credentials: row
                .repo_credentials
                .and_then(|text| serde_json::from_str(&text).ok()),
            container_id: row.container_id,
            url: row.url,
            created_at: row.created_at,
            domains,
            memory_mb: u32::try_from(row.memory_mb)
                .unwrap_or(protocol::validate::DEFAULT_MEMORY_MB),
            cpus: row.cpus,
        }
    }

    /// The app as the API shows it; `url` is its public address (or `None`).
    pub fn to_api(&self, url: Option<String>, last_deployment: Option<Deployment>) -> App {
        App {
            id: self.id,
            name: self.name.clone(),
            repo_url: self.repo_url.clone(),
            branch: self.branch.clone(),
            dockerfile: self.dockerfile.clone(),
            port: self.port,
            env_keys: self.env.keys().cloned().collect(),
            created_at: self.created_at.clone(),
            url,
            last_deployment,
            domains: self.domains.clone(),
            memory_mb: self.memory_mb,
            cpus: self.cpus,
        }
    }
}

#[derive(sqlx::FromRow)]
struct DeploymentRow {
    id: i64,
    app_id: i64,
    status: Status,
    progress: i64,
    error_message: String,
    failed_stage: Option<Status>,
    commit_sha: Option<String>,
    image: Option<String>,
    image_from: Option<i64>,
    container_id: Option<String>,
    url: Option<String>,
    created_at: String,
    started_at: Option<String>,
    finished_at: Option<String>,
    duration: Option<f64>,
}

/// A deployment with the container id the API does not show.
#[derive(Debug, Clone)]
pub(crate) struct DeploymentRecord {
    pub api: Deployment,
    pub container_id: Option<String>,
}

impl From<DeploymentRow> for DeploymentRecord {
    fn from(row: DeploymentRow) -> Self {
        DeploymentRecord {
            api: Deployment {
                id: row.id,
                app_id: row.app_id,
                status: row.status,
                stage: row.status,
                progress: row.progress.clamp(0, 100) as u8,
                message: row.status.default_message().to_owned(),
                error_message: row.error_message,
                failed_stage: row.failed_stage,
                commit: row.commit_sha,
                image: row.image,
                url: row.url,
                created_at: row.created_at,
                started_at: row.started_at,
                finished_at: row.finished_at,
                duration: row.duration,
                image_from: row.image_from,
            },
            container_id: row.container_id,
        }
    }
}

const DEPLOYMENT_COLUMNS: &str = "id, app_id, status, progress, error_message, failed_stage, \
     commit_sha, image, image_from, container_id, url, created_at, started_at, finished_at, duration";

fn credentials_json(credentials: Option<&RepoCredentials>) -> Result<Option<String>> {
    credentials
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| EngineError::Internal(e.to_string()))
}

/// Inserts an app whose `repo_url` holds no credentials (they come apart).
pub(crate) async fn insert_app(
    pool: &Pool,
    app: &ValidApp,
    credentials: Option<&RepoCredentials>,
) -> Result<(AppRecord, FeedEvent)> {
    count();
    let env = serde_json::to_string(&app.env).map_err(|e| EngineError::Internal(e.to_string()))?;
    let mut tx = pool.begin().await?;
    let result = sqlx::query_as::<_, AppRow>(
        "INSERT INTO apps (name, repo_url, branch, dockerfile, port, env, memory_mb, cpus, created_at, \
         repo_credentials) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
    )
    .bind(&app.name)
    .bind(&app.repo_url)
    .bind(&app.branch)
    .bind(&app.dockerfile)
    .bind(app.port.map(i64::from))
    .bind(env)
    .bind(i64::from(app.memory_mb))
    .bind(app.cpus)
    .bind(crate::time::now())
    .bind(credentials_json(credentials)?)
    .fetch_one(&mut *tx)
    .await;
    let row = match result {
        Ok(row) => row,
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            return Err(Conflict::AppNameTaken(app.name.clone()).into());
        }
        Err(e) => return Err(e.into()),
    };
    set_domains(&mut tx, row.id, &app.domains).await?;
    let event = app_event(&mut tx, row.id, &row.name, AppAction::Created).await?;
    tx.commit().await?;
    Ok((AppRecord::from_row(row, app.domains.clone()), event))
}

/// Replaces an app's extra host names; one taken by another app is a conflict.
async fn set_domains(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    app_id: AppId,
    domains: &[String],
) -> Result<()> {
    count();
    sqlx::query("DELETE FROM app_domains WHERE app_id = ?")
        .bind(app_id)
        .execute(&mut **tx)
        .await?;
    for domain in domains {
        count();
        let inserted = sqlx::query("INSERT INTO app_domains (domain, app_id) VALUES (?, ?)")
            .bind(domain)
            .bind(app_id)
            .execute(&mut **tx)
            .await;
        match inserted {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(Conflict::DomainTaken(domain.clone()).into());
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Which app has the extra host name `domain`, if any.
pub(crate) async fn app_with_domain(pool: &Pool, domain: &str) -> Result<Option<AppId>> {
    count();
    Ok(
        sqlx::query_scalar("SELECT app_id FROM app_domains WHERE domain = ?")
            .bind(domain)
            .fetch_optional(pool)
            .await?,
    )
}

/// Which app is named `name`, if any.
pub(crate) async fn app_named(pool: &Pool, name: &str) -> Result<Option<AppId>> {
    count();
    Ok(sqlx::query_scalar("SELECT id FROM apps WHERE name = ?")
        .bind(name)
        .fetch_optional(pool)
        .await?)
}

async fn domains_of(pool: &Pool, app_id: AppId) -> Result<Vec<String>> {
    count();
    Ok(
        sqlx::query_scalar("SELECT domain FROM app_domains WHERE app_id = ? ORDER BY domain")
            .bind(app_id)
            .fetch_all(pool)
            .await?,
    )
}

pub(crate) async fn app(pool: &Pool, id: AppId) -> Result<AppRecord> {
    count();
    let row = sqlx::query_as::<_, AppRow>("SELECT * FROM apps WHERE id = ?")
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or(Missing::App(id))?;
    let domains = domains_of(pool, id).await?;
    Ok(AppRecord::from_row(row, domains))
}

pub(crate) async fn apps(pool: &Pool) -> Result<Vec<AppRecord>> {
    count();
    let rows = sqlx::query_as::<_, AppRow>("SELECT * FROM apps ORDER BY id")
        .fetch_all(pool)
        .await?;
    count();
    let mut domains: BTreeMap<AppId, Vec<String>> = BTreeMap::new();
    let pairs: Vec<(AppId, String)> =
        sqlx::query_as("SELECT app_id, domain FROM app_domains ORDER BY domain")
            .fetch_all(pool)
            .await?;
    for (app, domain) in pairs {
        domains.entry(app).or_default().push(domain);
    }
    Ok(rows
        .into_iter()
        .map(|row| {
            let names = domains.remove(&row.id).unwrap_or_default();
            AppRecord::from_row(row, names)
        })
        .collect())
}

pub(crate) async fn delete_app(pool: &Pool, id: AppId) -> Result<Option<FeedEvent>> {
    count();
    let mut tx = pool.begin().await?;
    let name: Option<String> = sqlx::query_scalar("DELETE FROM apps WHERE id = ? RETURNING name")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    let event = match name {
        Some(name) => Some(app_event(&mut tx, id, &name, AppAction::Deleted).await?),
        None => None,
    };
    tx.commit().await?;
    Ok(event)
}

/// Replaces an app's settings (already validated; `repo_url` without credentials).
pub(crate) async fn update_app(
    pool: &Pool,
    id: AppId,
    app: &ValidApp,
    credentials: Option<&RepoCredentials>,
) -> Result<FeedEvent> {
    count();
    let env = serde_json::to_string(&app.env).map_err(|e| EngineError::Internal(e.to_string()))?;
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE apps SET repo_url = ?, branch = ?, dockerfile = ?, port = ?, env = ?, \
         memory_mb = ?, cpus = ?, repo_credentials = ? WHERE id = ?",
    )
    .bind(&app.repo_url)
    .bind(&app.branch)
    .bind(&app.dockerfile)
    .bind(app.port.map(i64::from))
    .bind(env)
    .bind(i64::from(app.memory_mb))
    .bind(app.cpus)
    .bind(credentials_json(credentials)?)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    set_domains(&mut tx, id, &app.domains).await?;
    let event = app_event(&mut tx, id, &app.name, AppAction::Updated).await?;
    tx.commit().await?;
    Ok(event)
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Sqlite>;

/// Writes an event of the feed in the transaction of the change it reports; its id is
/// the feed's order. Every thousandth event drops those older than the feed keeps.
async fn record_event(tx: &mut Tx<'_>, kind: &str, data: String) -> Result<(FeedId, String)> {
    count();
    let timestamp = crate::time::now();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO events (kind, timestamp, data) VALUES (?, ?, ?) RETURNING id",
    )
    .bind(kind)
    .bind(&timestamp)
    .bind(data)
    .fetch_one(&mut **tx)
    .await?;
    if id % 1000 == 0 {
        count();
        sqlx::query("DELETE FROM events WHERE id <= ?")
            .bind(id - protocol::FEED_KEPT as i64 - 1000)
            .execute(&mut **tx)
            .await?;
    }
    Ok((id as FeedId, timestamp))
}

async fn app_event(tx: &mut Tx<'_>, id: AppId, name: &str, action: AppAction) -> Result<FeedEvent> {
    let data = AppChange {
        id,
        name: name.to_owned(),
        action,
    };
    let json = serde_json::to_string(&data).map_err(|e| EngineError::Internal(e.to_string()))?;
    let (feed_id, timestamp) = record_event(tx, "app", json).await?;
    Ok(FeedEvent::App {
        id: feed_id,
        timestamp,
        data,
    })
}

async fn deployment_event(tx: &mut Tx<'_>, deployment: &Deployment) -> Result<FeedEvent> {
    let data = DeploymentSummary::from(deployment);
    let json = serde_json::to_string(&data).map_err(|e| EngineError::Internal(e.to_string()))?;
    let (feed_id, timestamp) = record_event(tx, "deployment", json).await?;
    Ok(FeedEvent::Deployment {
        id: feed_id,
        timestamp,
        data,
    })
}

/// The newest `limit` events, oldest first, and the newest id.
pub(crate) async fn recent_events(pool: &Pool, limit: u64) -> Result<(Vec<FeedEvent>, FeedId)> {
    count();
    let rows: Vec<(i64, String, String, String)> =
        sqlx::query_as("SELECT id, kind, timestamp, data FROM events ORDER BY id DESC LIMIT ?")
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(pool)
            .await?;
    let last = rows.first().map_or(0, |(id, ..)| *id as FeedId);
    let mut events = Vec::with_capacity(rows.len());
    for (id, kind, timestamp, data) in rows.into_iter().rev() {
        let id = id as FeedId;
        let event = match kind.as_str() {
            "deployment" => serde_json::from_str(&data).map(|data| FeedEvent::Deployment {
                id,
                timestamp,
                data,
            }),
            _ => serde_json::from_str(&data).map(|data| FeedEvent::App {
                id,
                timestamp,
                data,
            }),
        };
        match event {
            Ok(event) => events.push(event),
            Err(e) => tracing::warn!(event.id = id, error = %e, "an unreadable event of the feed"),
        }
    }
    Ok((events, last))
}

/// Moves credentials that apps saved before migration 0005 still hold in `repo_url` into
/// their own column. Answers the ids of the apps changed.
pub(crate) async fn split_repo_credentials(pool: &Pool) -> Result<Vec<AppId>> {
    count();
    let rows: Vec<(AppId, String)> =
        sqlx::query_as("SELECT id, repo_url FROM apps WHERE repo_url LIKE '%@%'")
            .fetch_all(pool)
            .await?;
    let mut changed = Vec::new();
    for (id, url) in rows {
        let (clean, Some(credentials)) = crate::credentials::split(&url) else {
            continue;
        };
        count();
        sqlx::query("UPDATE apps SET repo_url = ?, repo_credentials = ? WHERE id = ?")
            .bind(clean)
            .bind(credentials_json(Some(&credentials))?)
            .bind(id)
            .execute(pool)
            .await?;
        changed.push(id);
    }
    Ok(changed)
}

/// An earlier deployment's image to start again, instead of cloning and building.
pub(crate) struct Reuse<'a> {
    pub from: DeploymentId,
    pub image: &'a str,
    pub commit: Option<&'a str>,
}

/// Queues a deployment (`pending`): a build of the branch's head, of `commit`, or (with
/// `reuse`) a start of an earlier image.
pub(crate) async fn insert_deployment(
    pool: &Pool,
    app_id: AppId,
    reuse: Option<Reuse<'_>>,
    commit: Option<&str>,
) -> Result<(DeploymentRecord, FeedEvent)> {
    count();
    let pending = Status::Pending;
    let mut tx = pool.begin().await?;
    let row = sqlx::query_as::<_, DeploymentRow>(&format!(
        "INSERT INTO deployments (app_id, image, image_from, commit_sha, status, progress, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING {DEPLOYMENT_COLUMNS}"
    ))
    .bind(app_id)
    .bind(reuse.as_ref().map(|r| r.image))
    .bind(reuse.as_ref().map(|r| r.from))
    .bind(reuse.as_ref().and_then(|r| r.commit).or(commit))
    .bind(pending)
    .bind(i64::from(pending.progress()))
    .bind(crate::time::now())
    .fetch_one(&mut *tx)
    .await?;
    let record = DeploymentRecord::from(row);
    let event = deployment_event(&mut tx, &record.api).await?;
    tx.commit().await?;
    Ok((record, event))
}

pub(crate) async fn deployment(pool: &Pool, id: DeploymentId) -> Result<DeploymentRecord> {
    count();
    sqlx::query_as::<_, DeploymentRow>(&format!(
        "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE id = ?"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?
    .map(DeploymentRecord::from)
    .ok_or(Missing::Deployment(id).into())
}

pub(crate) async fn deployments_of_app(
    pool: &Pool,
    app_id: AppId,
    limit: i64,
) -> Result<Vec<Deployment>> {
    count();
    Ok(sqlx::query_as::<_, DeploymentRow>(&format!(
        "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE app_id = ? ORDER BY id DESC LIMIT ?"
    ))
    .bind(app_id)
    .bind(limit)
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|row| DeploymentRecord::from(row).api)
    .collect())
}

pub(crate) async fn deployments_in(
    pool: &Pool,
    statuses: &[Status],
) -> Result<Vec<DeploymentRecord>> {
    let mut all = Vec::new();
    for status in statuses {
        count();
        let rows = sqlx::query_as::<_, DeploymentRow>(&format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE status = ? ORDER BY id"
        ))
        .bind(status)
        .fetch_all(pool)
        .await?;
        all.extend(rows.into_iter().map(DeploymentRecord::from));
    }
    Ok(all)
}

/// The image a deployment built, once it was removed (images of old deployments are not
/// kept): it can no longer be started again.
pub(crate) async fn forget_image(pool: &Pool, id: DeploymentId) -> Result<()> {
    count();
    sqlx::query("UPDATE deployments SET image = NULL WHERE id = ?")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

pub(crate) async fn set_webhook_secret(pool: &Pool, app: AppId, secret: &str) -> Result<()> {
    count();
    sqlx::query("UPDATE apps SET webhook_secret = ? WHERE id = ?")
        .bind(secret)
        .bind(app)
        .execute(pool)
        .await?;
    Ok(())
}

pub(crate) async fn webhook_secret(pool: &Pool, app: AppId) -> Result<Option<String>> {
    count();
    let secret: Option<Option<String>> =
        sqlx::query_scalar("SELECT webhook_secret FROM apps WHERE id = ?")
            .bind(app)
            .fetch_optional(pool)
            .await?;
    secret.ok_or(Missing::App(app).into())
}

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    delivery: String,
    forge: String,
    event: String,
    received_at: String,
    deployment_id: Option<i64>,
    ignored: Option<String>,
}

impl From<DeliveryRow> for protocol::Delivery {
    fn from(row: DeliveryRow) -> Self {
        protocol::Delivery {
            delivery: row.delivery,
            forge: row.forge,
            event: row.event,
            received_at: row.received_at,
            deployment_id: row.deployment_id,
            ignored: row.ignored,
        }
    }
}

/// Records a delivery as received; if the forge sent it before, answers that one instead
/// (the caller then does nothing again).
pub(crate) async fn begin_delivery(
    pool: &Pool,
    app: AppId,
    delivery: &str,
    forge: &str,
    event: &str,
) -> Result<Option<protocol::Delivery>> {
    count();
    let inserted = sqlx::query(
        "INSERT INTO webhook_deliveries (app_id, delivery, forge, event, received_at) \
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(app)
    .bind(delivery)
    .bind(forge)
    .bind(event)
    .bind(crate::time::now())
    .execute(pool)
    .await;
    match inserted {
        Ok(_) => Ok(None),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            count();
            let row = sqlx::query_as::<_, DeliveryRow>(
                "SELECT delivery, forge, event, received_at, deployment_id, ignored \
                 FROM webhook_deliveries WHERE app_id = ? AND delivery = ?",
            )
            .bind(app)
            .bind(delivery)
            .fetch_one(pool)
            .await?;
            Ok(Some(row.into()))
        }
        Err(e) => Err(e.into()),
    }
}

/// What a delivery did.
pub(crate) async fn finish_delivery(
    pool: &Pool,
    app: AppId,
    delivery: &str,
    deployment: Option<DeploymentId>,
    ignored: Option<&str>,
) -> Result<protocol::Delivery> {
    count();
    Ok(sqlx::query_as::<_, DeliveryRow>(
        "UPDATE webhook_deliveries SET deployment_id = ?, ignored = ? \
         WHERE app_id = ? AND delivery = ? \
         RETURNING delivery, forge, event, received_at, deployment_id, ignored",
    )
    .bind(deployment)
    .bind(ignored)
    .bind(app)
    .bind(delivery)
    .fetch_one(pool)
    .await?
    .into())
}

pub(crate) async fn deliveries(
    pool: &Pool,
    app: AppId,
    limit: i64,
) -> Result<Vec<protocol::Delivery>> {
    count();
    Ok(sqlx::query_as::<_, DeliveryRow>(
        "SELECT delivery, forge, event, received_at, deployment_id, ignored \
         FROM webhook_deliveries WHERE app_id = ? ORDER BY id DESC LIMIT ?",
    )
    .bind(app)
    .bind(limit)
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(Into::into)
    .collect())
}

/// How many deployments are in `status`.
pub(crate) async fn count_in(pool: &Pool, status: Status) -> Result<u64> {
    count();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM deployments WHERE status = ?")
        .bind(status)
        .fetch_one(pool)
        .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// The oldest pending deployment of an app with nothing in flight: the next to claim.
pub(crate) async fn next_claimable(pool: &Pool) -> Result<Option<DeploymentRecord>> {
    count();
    let row = sqlx::query_as::<_, DeploymentRow>(&format!(
        "SELECT {DEPLOYMENT_COLUMNS} FROM deployments d WHERE d.status = ?1 AND NOT EXISTS \
             (SELECT 1 FROM deployments a WHERE a.app_id = d.app_id AND a.status IN (?2, ?3, ?4)) \
         ORDER BY d.id LIMIT 1"
    ))
    .bind(Status::Pending)
    .bind(Status::Cloning)
    .bind(Status::Building)
    .bind(Status::Deploying)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(DeploymentRecord::from))
}

/// What a committed change writes besides the status.
#[derive(Debug, Default)]
pub(crate) struct Change {
    /// Progress inside the stage (otherwise the status's own value).
    pub progress: Option<u8>,
    pub error_message: Option<String>,
    pub failed_stage: Option<Status>,
    /// A claim: sets `started_at`, and succeeds only while the app has no other
    /// deployment in flight (two workers racing for one app: one wins).
    pub claim: bool,
}

/// Moves deployment `id` from `from` to `to` if it is still in `from`. Terminal statuses
/// also record `finished_at` and `duration`; `to == from` raises progress only (never
/// lowers it). Returns the updated row, or `Conflict::Moved` if the deployment was no
/// longer in `from`. Only [`crate::lifecycle`] calls this, and publishes what it returns.
pub(crate) async fn transition(
    pool: &Pool,
    id: DeploymentId,
    from: Status,
    to: Status,
    change: Change,
) -> Result<(DeploymentRecord, Option<FeedEvent>)> {
    count();
    let mut tx = pool.begin().await?;
    let now = crate::time::now();
    let finished = to.is_terminal().then(|| now.clone());
    let progress = change.progress.unwrap_or(to.progress());
    let row = sqlx::query_as::<_, DeploymentRow>(&format!(
        "UPDATE deployments SET status = ?1, \
           progress = CASE WHEN ?1 = ?8 AND progress > ?2 THEN progress ELSE ?2 END, \
           error_message = COALESCE(?3, error_message), failed_stage = COALESCE(?4, failed_stage), \
           finished_at = COALESCE(?5, finished_at), \
           started_at = CASE WHEN ?9 THEN ?6 ELSE started_at END, \
           duration = CASE WHEN ?5 IS NOT NULL AND started_at IS NOT NULL \
             THEN ROUND((julianday(?5) - julianday(started_at)) * 86400.0, 3) ELSE duration END \
         WHERE id = ?7 AND status = ?8 AND (NOT ?9 OR NOT EXISTS \
             (SELECT 1 FROM deployments a WHERE a.app_id = deployments.app_id \
              AND a.status IN (?10, ?11, ?12))) \
         RETURNING {DEPLOYMENT_COLUMNS}"
    ))
    .bind(to)
    .bind(i64::from(progress))
    .bind(change.error_message)
    .bind(change.failed_stage)
    .bind(finished)
    .bind(&now)
    .bind(id)
    .bind(from)
    .bind(change.claim)
    .bind(Status::Cloning)
    .bind(Status::Building)
    .bind(Status::Deploying)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Err(Conflict::Moved { id, expected: from }.into());
    };
    let record = DeploymentRecord::from(row);
    // Progress inside a stage is not an event of the feed.
    let event = if to != from {
        Some(deployment_event(&mut tx, &record.api).await?)
    } else {
        None
    };
    if to.is_terminal() {
        enqueue_notifications(&mut tx, &record.api, &now).await?;
    }
    tx.commit().await?;
    Ok((record, event))
}

/// Queues the notifications that listen for the deployment's terminal status, in the
/// transaction that commits it.
async fn enqueue_notifications(tx: &mut Tx<'_>, deployment: &Deployment, now: &str) -> Result<()> {
    count();
    let summary = serde_json::to_string(&DeploymentSummary::from(deployment))
        .map_err(|e| EngineError::Internal(e.to_string()))?;
    sqlx::query(
        "INSERT INTO notification_outbox            (notification_id, deployment_id, status, app_name, summary, created_at, next_at)          SELECT n.id, ?1, ?2, (SELECT name FROM apps WHERE id = ?3), ?4, ?5, ?5          FROM notifications n          WHERE EXISTS (SELECT 1 FROM json_each(n.events) WHERE json_each.value = ?2)",
    )
    .bind(deployment.id)
    .bind(deployment.status)
    .bind(deployment.app_id)
    .bind(summary)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A notification to deliver, with where and how.
#[derive(sqlx::FromRow)]
pub(crate) struct OutboxRow {
    pub id: i64,
    pub attempts: i64,
    pub created_at: String,
    pub app_name: String,
    pub summary: String,
    pub url: String,
    pub format: NotificationFormat,
    pub secret: String,
}

/// Deliveries due at `now`, oldest first.
pub(crate) async fn due_notifications(
    pool: &Pool,
    now: &str,
    limit: i64,
) -> Result<Vec<OutboxRow>> {
    count();
    Ok(sqlx::query_as::<_, OutboxRow>(
        "SELECT o.id, o.attempts, o.created_at, o.app_name, o.summary, n.url, n.format, n.secret          FROM notification_outbox o JOIN notifications n ON n.id = o.notification_id          WHERE o.delivered_at IS NULL AND o.next_at <= ? ORDER BY o.id LIMIT ?",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// When the next undelivered notification is due.
pub(crate) async fn next_notification_due(pool: &Pool) -> Result<Option<String>> {
    count();
    Ok(sqlx::query_scalar(
        "SELECT MIN(next_at) FROM notification_outbox WHERE delivered_at IS NULL",
    )
    .fetch_one(pool)
    .await?)
}

pub(crate) async fn notification_delivered(pool: &Pool, id: i64, now: &str) -> Result<()> {
    count();
    sqlx::query(
        "UPDATE notification_outbox SET delivered_at = ?, attempts = attempts + 1 WHERE id = ?",
    )
    .bind(now)
    .bind(id)
    .execute(pool)
    .await?;
    // Delivered rows are kept a day, for whoever looks into a delivery.
    count();
    sqlx::query(
        "DELETE FROM notification_outbox WHERE delivered_at IS NOT NULL          AND julianday(?) - julianday(delivered_at) > 1",
    )
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}

/// A failed attempt: tried again at `next`, or (`None`) given up.
pub(crate) async fn notification_failed(
    pool: &Pool,
    id: i64,
    attempts: i64,
    next: Option<&str>,
    why: &str,
) -> Result<()> {
    count();
    // Given up: kept as delivered = never, with the reason, out of the due set.
    sqlx::query(
        "UPDATE notification_outbox SET attempts = ?, last_error = ?,            next_at = COALESCE(?, next_at),            delivered_at = CASE WHEN ? IS NULL THEN 'gave up' ELSE NULL END          WHERE id = ?",
    )
    .bind(attempts)
    .bind(why)
    .bind(next)
    .bind(next)
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

pub(crate) async fn insert_notification(
    pool: &Pool,
    url: &str,
    events: &[Status],
    format: NotificationFormat,
    secret: &str,
) -> Result<protocol::Notification> {
    count();
    let json = serde_json::to_string(events).map_err(|e| EngineError::Internal(e.to_string()))?;
    let created_at = crate::time::now();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO notifications (url, events, format, secret, created_at)          VALUES (?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(url)
    .bind(json)
    .bind(format)
    .bind(secret)
    .bind(&created_at)
    .fetch_one(pool)
    .await?;
    Ok(protocol::Notification {
        id,
        url: url.to_owned(),
        events: events.to_vec(),
        format,
        created_at,
    })
}

pub(crate) async fn notifications(pool: &Pool) -> Result<Vec<protocol::Notification>> {
    count();
    let rows: Vec<(i64, String, String, NotificationFormat, String)> =
        sqlx::query_as("SELECT id, url, events, format, created_at FROM notifications ORDER BY id")
            .fetch_all(pool)
            .await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, url, events, format, created_at)| protocol::Notification {
                id,
                url,
                events: serde_json::from_str(&events).unwrap_or_default(),
                format,
                created_at,
            },
        )
        .collect())
}

pub(crate) async fn delete_notification(pool: &Pool, id: i64) -> Result<bool> {
    count();
    let done = sqlx::query("DELETE FROM notifications WHERE id = ?")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// What a running deployment produced: the commit, the image, the container and its URL.
#[derive(Debug, Default)]
pub(crate) struct Artifacts<'a> {
    pub commit: Option<&'a str>,
    pub image: Option<&'a str>,
    pub container_id: Option<&'a str>,
    pub url: Option<&'a str>,
}

pub(crate) async fn record_artifacts(
    pool: &Pool,
    id: DeploymentId,
    artifacts: Artifacts<'_>,
) -> Result<()> {
    count();
    sqlx::query(
        "UPDATE deployments SET commit_sha = COALESCE(?, commit_sha), image = COALESCE(?, image), \
         container_id = COALESCE(?, container_id), url = COALESCE(?, url) WHERE id = ?",
    )
    .bind(artifacts.commit)
    .bind(artifacts.image)
    .bind(artifacts.container_id)
    .bind(artifacts.url)
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

/// The app's serving container is now `container_id`, answering at `url`.
pub(crate) async fn set_app_container(
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
