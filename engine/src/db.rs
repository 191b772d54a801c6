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
    FeedId, NotificationFormat, Seq, Status,
};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor};
use std::collections::BTreeMap;
use std::time::Duration;

/// SQLite (one node, the default) or PostgreSQL (a cluster), behind sqlx's `Any` driver:
/// every query is written once, with `$N` parameters, which both accept.
pub(crate) type Pool = AnyPool;
type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

/// Database statements run by this process, for `/api/metrics` and the benchmark's
/// "queries per viewer" figure.
pub static QUERIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub(crate) fn count() {
    QUERIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Which SQL the two databases disagree on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    pub(crate) fn of_url(url: &str) -> Dialect {
        if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Dialect::Postgres
        } else {
            Dialect::Sqlite
        }
    }

    pub(crate) fn of(pool: &Pool) -> Dialect {
        Dialect::of_url(pool.connect_options().database_url.as_str())
    }

    /// Seconds from timestamp `from` to `to` (RFC 3339 text), to the millisecond.
    fn seconds_between(self, from: &str, to: &str) -> String {
        match self {
            Dialect::Sqlite => format!("ROUND((julianday({to}) - julianday({from})) * 86400.0, 3)"),
            Dialect::Postgres => format!(
                "ROUND(EXTRACT(EPOCH FROM (({to})::timestamptz - ({from})::timestamptz))::numeric, 3)::float8"
            ),
        }
    }

    /// Whether the JSON array of strings in `array` holds `value`.
    fn json_array_holds(self, array: &str, value: &str) -> String {
        match self {
            Dialect::Sqlite => {
                format!("EXISTS (SELECT 1 FROM json_each({array}) WHERE json_each.value = {value})")
            }
            Dialect::Postgres => {
                format!("(({array})::jsonb @> jsonb_build_array(({value})::text))")
            }
        }
    }
}

pub(crate) async fn connect(url: &str) -> Result<Pool> {
    sqlx::any::install_default_drivers();
    let dialect = Dialect::of_url(url);
    let options = AnyPoolOptions::new();
    let pool = match dialect {
        Dialect::Sqlite => {
            // The URL carries no pragmas through `Any`: each connection sets them.
            options
                .max_connections(4)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                        )
                        .await?;
                        Ok(())
                    })
                })
                .connect(&sqlite_creating(url))
                .await?
        }
        Dialect::Postgres => {
            options
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await?
        }
    };
    let migrated = match dialect {
        Dialect::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await,
        Dialect::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await,
    };
    migrated.map_err(|e| EngineError::Internal(format!("migrating the database failed: {e}")))?;
    Ok(pool)
}

/// A `sqlite:` URL that creates its file when missing (unless it says otherwise).
fn sqlite_creating(url: &str) -> String {
    if url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
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
    node: Option<String>,
    attempt: i64,
}

/// A deployment with the container id and claim the API does not show.
#[derive(Debug, Clone)]
pub(crate) struct DeploymentRecord {
    pub api: Deployment,
    pub container_id: Option<String>,
    /// How many times it was claimed: a run's writes name the claim they belong to.
    pub attempt: i64,
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
                node: row.node,
            },
            container_id: row.container_id,
            attempt: row.attempt,
        }
    }
}

const DEPLOYMENT_COLUMNS: &str = "id, app_id, status, progress, error_message, failed_stage, \
     commit_sha, image, image_from, container_id, url, created_at, started_at, finished_at, duration, \
     node, attempt";

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
         repo_credentials) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *",
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
async fn set_domains(tx: &mut Tx<'_>, app_id: AppId, domains: &[String]) -> Result<()> {
    count();
    sqlx::query("DELETE FROM app_domains WHERE app_id = $1")
        .bind(app_id)
        .execute(&mut **tx)
        .await?;
    for domain in domains {
        count();
        let inserted = sqlx::query("INSERT INTO app_domains (domain, app_id) VALUES ($1, $2)")
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
        sqlx::query_scalar("SELECT app_id FROM app_domains WHERE domain = $1")
            .bind(domain)
            .fetch_optional(pool)
            .await?,
    )
}

/// Which app is named `name`, if any.
pub(crate) async fn app_named(pool: &Pool, name: &str) -> Result<Option<AppId>> {
    count();
    Ok(sqlx::query_scalar("SELECT id FROM apps WHERE name = $1")
        .bind(name)
        .fetch_optional(pool)
        .await?)
}

async fn domains_of(pool: &Pool, app_id: AppId) -> Result<Vec<String>> {
    count();
    Ok(
        sqlx::query_scalar("SELECT domain FROM app_domains WHERE app_id = $1 ORDER BY domain")
            .bind(app_id)
            .fetch_all(pool)
            .await?,
    )
}

pub(crate) async fn app(pool: &Pool, id: AppId) -> Result<AppRecord> {
    count();
    let row = sqlx::query_as::<_, AppRow>("SELECT * FROM apps WHERE id = $1")
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
    let name: Option<String> = sqlx::query_scalar("DELETE FROM apps WHERE id = $1 RETURNING name")
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
        "UPDATE apps SET repo_url = $1, branch = $2, dockerfile = $3, port = $4, env = $5, \
         memory_mb = $6, cpus = $7, repo_credentials = $8 WHERE id = $9",
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

/// Writes an event of the feed in the transaction of the change it reports; its id is
/// the feed's order. Every thousandth event drops those older than the feed keeps.
async fn record_event(tx: &mut Tx<'_>, kind: &str, data: String) -> Result<(FeedId, String)> {
    if (**tx).backend_name() == "PostgreSQL" {
        // One event-writing transaction at a time across the cluster, until it commits:
        // ids then commit in order, so a node that reads the events after the last one
        // it published never skips one that commits later with a smaller id.
        count();
        sqlx::query("SELECT pg_advisory_xact_lock(7130001)")
            .execute(&mut **tx)
            .await?;
    }
    count();
    let timestamp = crate::time::now();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO events (kind, timestamp, data) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(kind)
    .bind(&timestamp)
    .bind(data)
    .fetch_one(&mut **tx)
    .await?;
    if id % 1000 == 0 {
        count();
        sqlx::query("DELETE FROM events WHERE id <= $1")
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
        sqlx::query_as("SELECT id, kind, timestamp, data FROM events ORDER BY id DESC LIMIT $1")
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(pool)
            .await?;
    let last = rows.first().map_or(0, |(id, ..)| *id as FeedId);
    Ok((feed_events(rows.into_iter().rev()), last))
}

/// Up to `limit` events after `after`, oldest first (what other nodes committed).
pub(crate) async fn events_after(pool: &Pool, after: FeedId, limit: i64) -> Result<Vec<FeedEvent>> {
    count();
    let rows: Vec<(i64, String, String, String)> = sqlx::query_as(
        "SELECT id, kind, timestamp, data FROM events WHERE id > $1 ORDER BY id LIMIT $2",
    )
    .bind(i64::try_from(after).unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(feed_events(rows.into_iter()))
}

fn feed_events(rows: impl Iterator<Item = (i64, String, String, String)>) -> Vec<FeedEvent> {
    let mut events = Vec::new();
    for (id, kind, timestamp, data) in rows {
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
    events
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
        sqlx::query("UPDATE apps SET repo_url = $1, repo_credentials = $2 WHERE id = $3")
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
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {DEPLOYMENT_COLUMNS}"
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
        "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE id = $1"
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
        "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE app_id = $1 ORDER BY id DESC LIMIT $2"
    ))
    .bind(app_id)
    .bind(limit)
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|row| DeploymentRecord::from(row).api)
    .collect())
}

/// Deployments in `statuses`; with `node`, only those that node claimed.
pub(crate) async fn deployments_in(
    pool: &Pool,
    statuses: &[Status],
    node: Option<&str>,
) -> Result<Vec<DeploymentRecord>> {
    let mut all = Vec::new();
    for status in statuses {
        count();
        let rows = sqlx::query_as::<_, DeploymentRow>(&format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments \
             WHERE status = $1 AND ($2 IS NULL OR node = $2) ORDER BY id"
        ))
        .bind(status)
        .bind(node)
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
    sqlx::query("UPDATE deployments SET image = NULL WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

pub(crate) async fn set_webhook_secret(pool: &Pool, app: AppId, secret: &str) -> Result<()> {
    count();
    sqlx::query("UPDATE apps SET webhook_secret = $1 WHERE id = $2")
        .bind(secret)
        .bind(app)
        .execute(pool)
        .await?;
    Ok(())
}

pub(crate) async fn webhook_secret(pool: &Pool, app: AppId) -> Result<Option<String>> {
    count();
    let secret: Option<Option<String>> =
        sqlx::query_scalar("SELECT webhook_secret FROM apps WHERE id = $1")
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
         VALUES ($1, $2, $3, $4, $5)",
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
                 FROM webhook_deliveries WHERE app_id = $1 AND delivery = $2",
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
        "UPDATE webhook_deliveries SET deployment_id = $1, ignored = $2 \
         WHERE app_id = $3 AND delivery = $4 \
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
         FROM webhook_deliveries WHERE app_id = $1 ORDER BY id DESC LIMIT $2",
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
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM deployments WHERE status = $1")
        .bind(status)
        .fetch_one(pool)
        .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// The oldest pending deployment of an app with nothing in flight: the next to claim.
pub(crate) async fn next_claimable(pool: &Pool) -> Result<Option<DeploymentRecord>> {
    count();
    let row = sqlx::query_as::<_, DeploymentRow>(&format!(
        "SELECT {DEPLOYMENT_COLUMNS} FROM deployments d WHERE d.status = $1 AND NOT EXISTS \
             (SELECT 1 FROM deployments a WHERE a.app_id = d.app_id AND a.status IN ($2, $3, $4)) \
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
    /// A claim by this node: sets `started_at`, `node` and the next `attempt`, and
    /// succeeds only while the app has no other deployment in flight (two workers
    /// racing for one app, on one node or on several: one wins; the database's unique
    /// index on in-flight deployments refuses the other).
    pub claim: Option<String>,
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
    let seconds = Dialect::of(pool).seconds_between("started_at", "$5");
    let row = sqlx::query_as::<_, DeploymentRow>(&format!(
        "UPDATE deployments SET status = $1, \
           progress = CASE WHEN $1 = $8 AND progress > $2 THEN progress ELSE $2 END, \
           error_message = COALESCE($3, error_message), failed_stage = COALESCE($4, failed_stage), \
           finished_at = COALESCE($5, finished_at), \
           started_at = CASE WHEN $9 THEN $6 ELSE started_at END, \
           node = CASE WHEN $9 THEN $13 ELSE node END, \
           attempt = CASE WHEN $9 THEN attempt + 1 ELSE attempt END, \
           duration = CASE WHEN $5 IS NOT NULL AND started_at IS NOT NULL \
             THEN {seconds} ELSE duration END \
         WHERE id = $7 AND status = $8 AND (NOT $9 OR NOT EXISTS \
             (SELECT 1 FROM deployments a WHERE a.app_id = deployments.app_id \
              AND a.status IN ($10, $11, $12))) \
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
    .bind(change.claim.is_some())
    .bind(Status::Cloning)
    .bind(Status::Building)
    .bind(Status::Deploying)
    .bind(change.claim)
    .fetch_optional(&mut *tx)
    .await
    .map_err(|e| match &e {
        // Another node claimed a deployment of the same app at the same moment.
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            Conflict::Moved { id, expected: from }.into()
        }
        _ => EngineError::from(e),
    })?;
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
        enqueue_notifications(&mut tx, Dialect::of(pool), &record.api, &now).await?;
    }
    tx.commit().await?;
    Ok((record, event))
}

/// Queues the notifications that listen for the deployment's terminal status, in the
/// transaction that commits it.
async fn enqueue_notifications(
    tx: &mut Tx<'_>,
    dialect: Dialect,
    deployment: &Deployment,
    now: &str,
) -> Result<()> {
    count();
    let summary = serde_json::to_string(&DeploymentSummary::from(deployment))
        .map_err(|e| EngineError::Internal(e.to_string()))?;
    let listens = dialect.json_array_holds("n.events", "$2");
    sqlx::query(&format!(
        "INSERT INTO notification_outbox \
           (notification_id, deployment_id, status, app_name, summary, created_at, next_at) \
         SELECT n.id, $1, $2, (SELECT name FROM apps WHERE id = $3), $4, $5, $5 \
         FROM notifications n WHERE {listens}"
    ))
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
        "SELECT o.id, o.attempts, o.created_at, o.app_name, o.summary, n.url, n.format, n.secret          FROM notification_outbox o JOIN notifications n ON n.id = o.notification_id          WHERE o.delivered_at IS NULL AND o.next_at <= $1 ORDER BY o.id LIMIT $2",
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
        "UPDATE notification_outbox SET delivered_at = $1, attempts = attempts + 1 WHERE id = $2",
    )
    .bind(now)
    .bind(id)
    .execute(pool)
    .await?;
    // Delivered rows are kept a day, for whoever looks into a delivery.
    count();
    sqlx::query(
        "DELETE FROM notification_outbox WHERE delivered_at IS NOT NULL AND delivered_at < $1",
    )
    // RFC 3339 text in UTC sorts as time does ("gave up" sorts after every date: kept).
    .bind(crate::time::before(now, Duration::from_secs(86_400)))
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
        "UPDATE notification_outbox SET attempts = $1, last_error = $2,            next_at = COALESCE($3, next_at),            delivered_at = CASE WHEN $4 IS NULL THEN 'gave up' ELSE NULL END          WHERE id = $5",
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
        "INSERT INTO notifications (url, events, format, secret, created_at)          VALUES ($1, $2, $3, $4, $5) RETURNING id",
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
    let done = sqlx::query("DELETE FROM notifications WHERE id = $1")
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

/// Records what run `claim` produced, if its claim still holds (`Conflict::Moved`
/// otherwise: another node ended the deployment while this one was unheard).
pub(crate) async fn record_artifacts(
    pool: &Pool,
    claim: Claim<'_>,
    artifacts: Artifacts<'_>,
) -> Result<()> {
    count();
    let done = sqlx::query(
        "UPDATE deployments SET commit_sha = COALESCE($1, commit_sha), image = COALESCE($2, image), \
         container_id = COALESCE($3, container_id), url = COALESCE($4, url) \
         WHERE id = $5 AND node = $6 AND attempt = $7 AND status IN ($8, $9, $10)",
    )
    .bind(artifacts.commit)
    .bind(artifacts.image)
    .bind(artifacts.container_id)
    .bind(artifacts.url)
    .bind(claim.id)
    .bind(claim.node)
    .bind(claim.attempt)
    .bind(Status::Cloning)
    .bind(Status::Building)
    .bind(Status::Deploying)
    .execute(pool)
    .await?;
    if done.rows_affected() == 0 {
        let now = deployment(pool, claim.id).await?.api.status;
        return Err(Conflict::Moved {
            id: claim.id,
            expected: now,
        }
        .into());
    }
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
    sqlx::query("UPDATE apps SET container_id = $1, url = $2 WHERE id = $3")
        .bind(container_id)
        .bind(url)
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Whose claim a write belongs to: deployment `id`, claimed by `node` for the
/// `attempt`th time, still deploying there.
pub(crate) struct Claim<'a> {
    pub id: DeploymentId,
    pub node: &'a str,
    pub attempt: i64,
}

/// The app's container is now the one deployment `claim` started, if that claim still
/// holds: a node that lost its claim (it froze and another ended the deployment)
/// changes nothing. `Conflict::Moved` otherwise.
pub(crate) async fn serve_from(
    pool: &Pool,
    app: AppId,
    claim: Claim<'_>,
    container_id: &str,
    url: Option<&str>,
) -> Result<()> {
    count();
    let done = sqlx::query(
        "UPDATE apps SET container_id = $1, url = $2 WHERE id = $3 AND EXISTS \
           (SELECT 1 FROM deployments WHERE id = $4 AND status = $5 AND node = $6 AND attempt = $7)",
    )
    .bind(container_id)
    .bind(url)
    .bind(app)
    .bind(claim.id)
    .bind(Status::Deploying)
    .bind(claim.node)
    .bind(claim.attempt)
    .execute(pool)
    .await?;
    if done.rows_affected() == 0 {
        return Err(Conflict::Moved {
            id: claim.id,
            expected: Status::Deploying,
        }
        .into());
    }
    Ok(())
}

/// `NOTIFY channel, payload`, delivered to every listening node at commit (PostgreSQL).
pub(crate) async fn notify(pool: &Pool, channel: &str, payload: &str) -> Result<()> {
    count();
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(channel)
        .bind(payload)
        .execute(pool)
        .await?;
    Ok(())
}

/// This node starts: its row in `nodes`, seen now.
pub(crate) async fn join(pool: &Pool, name: &str, addr: &str) -> Result<()> {
    count();
    let now = crate::time::now();
    sqlx::query(
        "INSERT INTO nodes (name, addr, started_at, last_seen) VALUES ($1, $2, $3, $3) \
         ON CONFLICT (name) DO UPDATE SET addr = excluded.addr, \
           started_at = excluded.started_at, last_seen = excluded.last_seen",
    )
    .bind(name)
    .bind(addr)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}

/// This node is alive (its heartbeat).
pub(crate) async fn seen(pool: &Pool, name: &str) -> Result<()> {
    count();
    sqlx::query("UPDATE nodes SET last_seen = $2 WHERE name = $1")
        .bind(name)
        .bind(crate::time::now())
        .execute(pool)
        .await?;
    Ok(())
}

/// Every node, with whether it was heard from within `lease` and what it runs.
pub(crate) async fn nodes(pool: &Pool, lease: Duration) -> Result<Vec<protocol::NodeInfo>> {
    count();
    let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
        "SELECT n.name, n.addr, n.last_seen, \
           (SELECT COUNT(*) FROM deployments d WHERE d.node = n.name AND d.status IN ($1, $2, $3)) \
         FROM nodes n ORDER BY n.name",
    )
    .bind(Status::Cloning)
    .bind(Status::Building)
    .bind(Status::Deploying)
    .fetch_all(pool)
    .await?;
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    Ok(rows
        .into_iter()
        .map(|(name, addr, last_seen, running)| protocol::NodeInfo {
            alive: -crate::time::millis_until(&last_seen) <= lease_ms,
            name,
            addr,
            last_seen,
            running: u64::try_from(running).unwrap_or(0),
        })
        .collect())
}

/// In-flight deployments of other nodes not heard from since `cutoff` (or never
/// registered), with their node and when it was last seen.
pub(crate) async fn orphaned(
    pool: &Pool,
    me: &str,
    cutoff: &str,
) -> Result<Vec<(DeploymentRecord, String)>> {
    count();
    let columns = DEPLOYMENT_COLUMNS
        .split(", ")
        .map(|c| format!("d.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    let rows = sqlx::query_as::<_, OrphanRow>(&format!(
        "SELECT {columns}, COALESCE(n.last_seen, 'never') AS last_seen \
         FROM deployments d LEFT JOIN nodes n ON n.name = d.node \
         WHERE d.status IN ($1, $2, $3) AND d.node IS NOT NULL AND d.node <> $4 \
           AND (n.last_seen IS NULL OR n.last_seen < $5) ORDER BY d.id"
    ))
    .bind(Status::Cloning)
    .bind(Status::Building)
    .bind(Status::Deploying)
    .bind(me)
    .bind(cutoff)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| (DeploymentRecord::from(row.deployment), row.last_seen))
        .collect())
}

#[derive(sqlx::FromRow)]
struct OrphanRow {
    #[sqlx(flatten)]
    deployment: DeploymentRow,
    last_seen: String,
}

/// Stores lines of deployment `id`'s log for the other nodes: `(seq, at_ms, line)`, in
/// order. Refused (a unique violation) if another node already wrote one of these seqs.
pub(crate) async fn insert_lines(
    pool: &Pool,
    id: DeploymentId,
    lines: &[(Seq, i64, &str)],
    notify: Option<(&str, &str)>,
) -> Result<()> {
    // Four parameters a line; PostgreSQL takes at most 65,535 in one statement.
    let chunks = lines.len().div_ceil(4096);
    for (k, chunk) in lines.chunks(4096).enumerate() {
        count();
        let mut sql = String::from(
            "WITH stored AS (INSERT INTO log_lines (deployment_id, seq, at_ms, line) VALUES ",
        );
        for n in 0..chunk.len() {
            let p = n * 4;
            if n > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("(${}, ${}, ${}, ${})", p + 1, p + 2, p + 3, p + 4));
        }
        sql.push_str(" RETURNING seq) SELECT COUNT(*) FROM stored");
        // The last chunk announces them all, in the same statement (NOTIFY is sent at
        // commit, and not at all if the insert is refused).
        let notify = notify.filter(|_| k + 1 == chunks);
        if notify.is_some() {
            let p = chunk.len() * 4;
            sql.push_str(&format!(", pg_notify(${}, ${})", p + 1, p + 2));
        }
        let mut query = sqlx::query(&sql);
        for (seq, at_ms, line) in chunk {
            query = query
                .bind(id)
                .bind(i64::try_from(*seq).unwrap_or(i64::MAX))
                .bind(*at_ms)
                .bind(line.as_bytes().to_vec());
        }
        if let Some((channel, payload)) = notify {
            query = query.bind(channel).bind(payload);
        }
        query.execute(pool).await?;
    }
    Ok(())
}

/// Up to `limit` stored lines of deployment `id` after seq `after`, in order.
pub(crate) async fn lines_after(
    pool: &Pool,
    id: DeploymentId,
    after: Seq,
    limit: i64,
) -> Result<Vec<(Seq, i64, String)>> {
    count();
    let rows: Vec<(i64, i64, Vec<u8>)> = sqlx::query_as(
        "SELECT seq, at_ms, line FROM log_lines WHERE deployment_id = $1 AND seq > $2 \
         ORDER BY seq LIMIT $3",
    )
    .bind(id)
    .bind(i64::try_from(after).unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(seq, at_ms, line)| {
            let text = String::from_utf8(line)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            (u64::try_from(seq).unwrap_or(0), at_ms, text)
        })
        .collect())
}

/// The last seq stored for deployment `id` (0: none).
pub(crate) async fn last_line(pool: &Pool, id: DeploymentId) -> Result<Seq> {
    count();
    let last: Option<i64> =
        sqlx::query_scalar("SELECT MAX(seq) FROM log_lines WHERE deployment_id = $1")
            .bind(id)
            .fetch_one(pool)
            .await?;
    Ok(last.and_then(|n| u64::try_from(n).ok()).unwrap_or(0))
}

/// Forgets the stored lines of deleted deployments.
pub(crate) async fn forget_lines(pool: &Pool, id: DeploymentId) -> Result<()> {
    count();
    sqlx::query("DELETE FROM log_lines WHERE deployment_id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}
