//! Slipway's engine: everything between the HTTP edge and the Docker engine. Server-only.
//!
//! - [`config`]: the typed configuration read from `SLIPWAY_*` variables.
//! - [`db`]: SQLite schema, queries and the guarded status transition.
//! - [`logstore`]: the append-only log of each deployment with its offset index.
//! - [`auth`]: the admin account, sessions and API tokens.
//! - [`bus`]: one ordered event stream per deployment, fed after each commit/append.
//! - [`watch`]: a viewer: status, catch-up from the store, then live events.
//! - [`worker`]: the queue workers and the clone → build → deploy pipeline.
//! - [`runtime`]: the container runtime trait and its Docker implementation.
//! - [`git`]: the source trait and its git CLI implementation.
//!
//! [`Engine`] ties them together; the API handlers and server functions call only it.

pub mod auth;
pub mod bus;
pub mod config;
pub mod db;
pub mod error;
pub mod git;
pub mod logstore;
pub mod runtime;
pub mod time;
pub mod watch;
pub mod worker;

pub use config::Config;
pub use error::{EngineError, Result};
pub use watch::{Outgoing, WatchEnd, Watcher};

use bus::{EventBus, Lookup};
use logstore::LogStore;
use protocol::{App, AppId, Deployment, DeploymentId, LogLine, NewApp, Seq, Status};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Deployments listed per app.
const HISTORY_LIMIT: i64 = 100;

#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    pool: db::Pool,
    auth: auth::Auth,
    store: LogStore,
    bus: EventBus,
    runtime: Arc<dyn runtime::Runtime>,
    source: Arc<dyn git::Source>,
    /// Wakes idle workers when a deployment is queued or an app becomes free.
    wake: Notify,
    /// Cancellation of each deployment a worker is running.
    running: Mutex<HashMap<DeploymentId, CancellationToken>>,
    shutdown: CancellationToken,
    /// Distinguishes this data directory's containers and images from those of other
    /// Slipway instances on the same Docker engine (deployment ids restart per database).
    instance: String,
    /// Owns the worker tasks; `shutdown` waits for them.
    tasks: TaskTracker,
}

impl Engine {
    /// Connects to the real Docker engine and starts with the git CLI.
    pub async fn start_with_docker(config: Config) -> Result<Engine> {
        let docker = runtime::docker::DockerRuntime::connect(config.docker_host.as_deref())
            .await
            .map_err(|e| {
                EngineError::Internal(format!(
                    "{e}. Start the Docker engine (dockerd) and try again."
                ))
            })?;
        let source = git::GitCli::from_config(&config);
        Engine::start(config, Arc::new(docker), Arc::new(source)).await
    }

    /// Opens the database and log store, reconciles what a previous run left mid-flight,
    /// and starts the workers.
    pub async fn start(
        config: Config,
        runtime: Arc<dyn runtime::Runtime>,
        source: Arc<dyn git::Source>,
    ) -> Result<Engine> {
        std::fs::create_dir_all(&config.data_dir)?;
        let pool = db::connect(&config.database_url).await?;
        let store = LogStore::new(config.data_dir.join("logs"))?;
        let auth = auth::Auth::load(pool.clone(), config.admin_token.as_deref()).await?;
        let instance = instance_id(&config.data_dir).await?;
        let engine = Engine {
            inner: Arc::new(Inner {
                config,
                pool,
                auth,
                store,
                bus: EventBus::default(),
                runtime,
                source,
                wake: Notify::new(),
                running: Mutex::new(HashMap::new()),
                shutdown: CancellationToken::new(),
                instance,
                tasks: TaskTracker::new(),
            }),
        };
        worker::reconcile(&engine).await?;
        for n in 0..engine.inner.config.workers {
            engine.inner.tasks.spawn(worker::run(engine.clone(), n));
        }
        Ok(engine)
    }

    /// Short id of this installation, kept in the data directory.
    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    pub fn auth(&self) -> &auth::Auth {
        &self.inner.auth
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Cancelled when the engine shuts down.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    /// Stops the workers and waits for them. Deployments in flight are reconciled at the
    /// next start.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        self.inner.pool.close().await;
    }

    pub async fn create_app(&self, new: NewApp) -> Result<App> {
        let valid = protocol::validate::new_app(&new, self.inner.config.allow_local_repos)?;
        let record = db::insert_app(&self.inner.pool, &valid).await?;
        tracing::info!(app.id = record.id, app.name = %record.name, "app created");
        Ok(record.to_api(None))
    }

    /// Changes an app's settings; the next deployment uses them. Validated as a new app is.
    pub async fn update_app(&self, id: AppId, changes: protocol::AppChanges) -> Result<App> {
        let current = db::app(&self.inner.pool, id).await?;
        let mut env = current.env.clone();
        for (name, value) in changes.env {
            match value {
                Some(value) => env.insert(name, value),
                None => env.remove(&name),
            };
        }
        let merged = NewApp {
            name: current.name.clone(),
            repo_url: changes.repo_url.unwrap_or(current.repo_url),
            branch: Some(changes.branch.unwrap_or(current.branch)),
            dockerfile: Some(changes.dockerfile.unwrap_or(current.dockerfile)),
            port: changes.port.unwrap_or(current.port.map(i64::from)),
            env,
        };
        let valid = protocol::validate::new_app(&merged, self.inner.config.allow_local_repos)?;
        db::update_app(&self.inner.pool, id, &valid).await?;
        tracing::info!(app.id = id, "app settings changed");
        self.app(id).await
    }

    pub async fn apps(&self) -> Result<Vec<App>> {
        let mut apps = Vec::new();
        for record in db::apps(&self.inner.pool).await? {
            let last = db::deployments_of_app(&self.inner.pool, record.id, 1)
                .await?
                .pop();
            apps.push(record.to_api(last));
        }
        Ok(apps)
    }

    pub async fn app(&self, id: AppId) -> Result<App> {
        let record = db::app(&self.inner.pool, id).await?;
        let last = db::deployments_of_app(&self.inner.pool, id, 1).await?.pop();
        Ok(record.to_api(last))
    }

    /// Cancels the app's deployments in flight, removes its container, its history and logs.
    pub async fn delete_app(&self, id: AppId) -> Result<()> {
        let record = db::app(&self.inner.pool, id).await?;
        let history = db::deployments_of_app(&self.inner.pool, id, i64::MAX).await?;
        for deployment in history.iter().filter(|d| !d.status.is_terminal()) {
            match self.cancel(deployment.id).await {
                Ok(_) | Err(EngineError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        if let Some(container) = &record.container_id
            && let Err(e) = self.inner.runtime.remove(container).await
        {
            tracing::warn!(app.id = id, error = %e, "could not remove the app's container");
        }
        db::delete_app(&self.inner.pool, id).await?;
        for deployment in &history {
            self.inner.bus.forget(deployment.id);
            self.inner.store.remove(deployment.id).await?;
        }
        tracing::info!(app.id = id, "app deleted");
        Ok(())
    }

    /// Queues a deployment of the app; a worker picks it up at once if one is free.
    pub async fn deploy(&self, app_id: AppId) -> Result<Deployment> {
        db::app(&self.inner.pool, app_id).await?;
        let record = db::insert_deployment(&self.inner.pool, app_id, None).await?;
        self.queued(record)
    }

    /// Deploys again the image an earlier successful deployment built: no clone, no build.
    pub async fn redeploy(&self, id: DeploymentId) -> Result<Deployment> {
        let source = db::deployment(&self.inner.pool, id).await?.api;
        let image = match (&source.status, &source.image) {
            (Status::Success, Some(image)) => image.clone(),
            _ => {
                return Err(EngineError::Conflict(format!(
                    "deployment {id} did not succeed: only a successful deployment can be redeployed"
                )));
            }
        };
        let record = db::insert_deployment(
            &self.inner.pool,
            source.app_id,
            Some((&image, source.commit.as_deref())),
        )
        .await?;
        self.queued(record)
    }

    fn queued(&self, record: db::DeploymentRecord) -> Result<Deployment> {
        let app_id = record.api.app_id;
        self.inner.bus.open(record.api.status_data(), 0);
        self.inner.wake.notify_waiters();
        tracing::info!(
            app.id = app_id,
            deployment.id = record.api.id,
            "deployment queued"
        );
        Ok(record.api)
    }

    pub async fn deployment(&self, id: DeploymentId) -> Result<Deployment> {
        Ok(db::deployment(&self.inner.pool, id).await?.api)
    }

    pub async fn deployments(&self, app_id: AppId) -> Result<Vec<Deployment>> {
        db::app(&self.inner.pool, app_id).await?;
        db::deployments_of_app(&self.inner.pool, app_id, HISTORY_LIMIT).await
    }

    /// The whole log so far.
    pub async fn log(&self, id: DeploymentId) -> Result<Vec<u8>> {
        db::deployment(&self.inner.pool, id).await?;
        Ok(self.inner.store.read_all(id).await?)
    }

    /// The last `n` lines, for pages rendered before the live view takes over.
    pub async fn recent_lines(&self, id: DeploymentId, n: u64) -> Result<Vec<LogLine>> {
        let count = self.inner.store.count(id).await?;
        Ok(self
            .inner
            .store
            .read(id, count.saturating_sub(n) + 1, count)
            .await?)
    }

    /// A viewer of deployment `id` that starts after line `since`.
    pub async fn watch(&self, id: DeploymentId, since: Seq) -> Result<Watcher> {
        let store = self.inner.store.clone();
        if let Lookup::Live(stream) = self.inner.bus.get(id) {
            return Ok(Watcher::live(id, store, stream, since));
        }
        let record = db::deployment(&self.inner.pool, id).await?;
        let count = self.inner.store.count(id).await?;
        match self.inner.bus.open(record.api.status_data(), count) {
            Lookup::Live(stream) => Ok(Watcher::live(id, store, stream, since)),
            Lookup::Finished | Lookup::Unknown => {
                // Ended: read the final state after the end was committed.
                let record = db::deployment(&self.inner.pool, id).await?;
                let count = self.inner.store.count(id).await?;
                Ok(Watcher::finished(
                    id,
                    store,
                    record.api.status_data(),
                    since,
                    count,
                ))
            }
        }
    }

    /// Stops a pending or running deployment and waits (up to 30 s) until it has ended.
    pub async fn cancel(&self, id: DeploymentId) -> Result<Deployment> {
        let record = db::deployment(&self.inner.pool, id).await?;
        let status = record.api.status;
        if status.is_terminal() {
            return Err(EngineError::Conflict(format!(
                "deployment {id} has already ended ({status})"
            )));
        }
        if status == Status::Pending {
            match self
                .transition(
                    id,
                    Status::Pending,
                    Status::Cancelled,
                    db::Change::default(),
                )
                .await
            {
                Ok(record) => return Ok(record.api),
                // A worker claimed it just now: cancel it there.
                Err(EngineError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let mut watcher = self.watch(id, Seq::MAX).await?;
        let token = self.running_token(id);
        match token {
            Some(token) => token.cancel(),
            None => {
                let now = db::deployment(&self.inner.pool, id).await?.api;
                if now.status.is_terminal() {
                    return Ok(now);
                }
                return Err(EngineError::Conflict(format!(
                    "deployment {id} is {} but no worker of this server runs it",
                    now.status
                )));
            }
        }
        let ended = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(message) = watcher.next().await {
                if message.terminal {
                    break;
                }
            }
        })
        .await;
        if ended.is_err() {
            tracing::warn!(
                deployment.id = id,
                "cancel requested; the deployment has not ended after 30 s"
            );
        }
        self.deployment(id).await
    }

    fn running_token(&self, id: DeploymentId) -> Option<CancellationToken> {
        self.inner
            .running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&id)
            .cloned()
    }

    /// The one way a status changes: commit to the database, then publish.
    pub(crate) async fn transition(
        &self,
        id: DeploymentId,
        from: Status,
        to: Status,
        change: db::Change,
    ) -> Result<db::DeploymentRecord> {
        let record = db::transition(&self.inner.pool, id, from, to, change).await?;
        let data = record.api.status_data();
        if to.is_terminal() {
            self.inner.bus.finish(data);
        } else if let Lookup::Live(stream) = self.inner.bus.open(data.clone(), 0) {
            stream.publish_status(data);
        }
        Ok(record)
    }
}

/// Reads `<data_dir>/instance`, creating it with a fresh random id the first time.
async fn instance_id(data_dir: &std::path::Path) -> Result<String> {
    let path = data_dir.join("instance");
    match tokio::fs::read_to_string(&path).await {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    // Random enough to tell installations apart: hashed clock and process id.
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.write_u32(std::process::id());
    let id = format!("{:06x}", hasher.finish() & 0xff_ffff);
    tokio::fs::write(&path, &id).await?;
    Ok(id)
}
