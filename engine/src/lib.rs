//! Slipway's engine: everything between the HTTP edge and the Docker engine. Server-only.
//!
//! - [`config`]: the typed configuration read from `SLIPWAY_*` variables.
//! - `lifecycle`: the one owner of a deployment's life: queue, claim, stages, progress,
//!   end; every change committed to the database and then published on its stream.
//! - `db`: schema and queries, on SQLite (one node) or PostgreSQL (a cluster) through
//!   sqlx's `Any` driver; private: only the engine reaches the database.
//! - `cluster`: this node among the others: heartbeats, leases, LISTEN/NOTIFY signals.
//! - [`logstore`]: the append-only log of each deployment with its offset index.
//! - [`auth`]: the admin account (and its one-time setup code), sessions and API tokens.
//! - [`throttle`]: limits on password checks: a few at once, backoff per address and user.
//! - [`credentials`]: credentials taken out of repository URLs, and how git gets them.
//! - [`files`]: the data directory and database, readable by their owner only.
//! - [`bus`]: one ordered event stream per deployment, fed after each commit/append.
//! - [`watch`]: a viewer: status, catch-up from the store, then live events.
//! - `worker`: the queue workers and the clone → build → deploy pipeline, given only a
//!   narrow context (the lifecycle, the runtime, the source, their settings).
//! - [`runtime`]: the container runtime trait and its Docker implementation.
//! - [`git`]: the source trait and its git CLI implementation.
//!
//! [`Engine`] ties them together; the API handlers and server functions call only it.

mod app_logs;
pub mod auth;
pub mod bus;
mod cluster;
pub mod config;
pub mod credentials;
mod db;
pub mod edge;
pub mod error;
pub mod feed;
pub mod files;
pub mod git;
mod lifecycle;
pub mod logstore;
pub mod metrics;
mod notify;
pub mod runtime;
pub mod swarm;
pub mod throttle;
pub mod time;
pub mod watch;
mod worker;

pub use app_logs::AppLogWatcher;
pub use config::Config;
pub use db::QUERIES;
pub use error::{Conflict, EngineError, Missing, Result};
pub use feed::FeedWatcher;
pub use watch::{Feed, Outgoing, WatchEnd, Watcher};

use lifecycle::Lifecycle;
use logstore::LogStore;
use protocol::{
    App, AppId, Deployment, DeploymentId, LogLine, LogPage, NewApp, SearchResult, Seq, Status,
};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Deployments listed per app.
const HISTORY_LIMIT: i64 = 100;
/// Successful images kept per app, for rollbacks (PROTOCOL.md, "Rollback").
pub const KEPT_IMAGES: usize = 5;
/// In the data directory while no account exists: the setup code, for the operator (and
/// the end-to-end tests) to read. Only its owner may read it.
pub const SETUP_CODE_FILE: &str = "setup-code";

#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    pool: db::Pool,
    auth: Arc<auth::Auth>,
    lifecycle: Arc<Lifecycle>,
    runtime: Arc<dyn runtime::Runtime>,
    /// Caddy, when the edge is on.
    edge: Option<Arc<edge::Edge>>,
    /// What the apps' running containers print.
    app_logs: Arc<app_logs::AppLogs>,
    /// Tells this installation's containers, images and networks from others' on the
    /// same engine (deployment ids restart with each database).
    instance: String,
    shutdown: CancellationToken,
    /// Owns the worker tasks; `shutdown` waits for them.
    tasks: TaskTracker,
}

impl Engine {
    /// Connects to the real Docker engine (or, with `SLIPWAY_RUNTIME=synthetic`, to
    /// none) and starts with the git CLI.
    pub async fn start_with_docker(config: Config) -> Result<Engine> {
        if config.runtime == config::RuntimeKind::Synthetic {
            let source = git::GitCli::from_config(&config);
            let runtime = runtime::synthetic::SyntheticRuntime::instant();
            return Engine::start(config, Arc::new(runtime), Arc::new(source)).await;
        }
        let docker = runtime::docker::DockerRuntime::connect(config.docker_host.as_deref())
            .await
            .map_err(|e| {
                EngineError::Internal(format!(
                    "{e}. Start the Docker engine (dockerd) and try again."
                ))
            })?;
        let source = git::GitCli::from_config(&config);
        if config.runtime == config::RuntimeKind::Swarm {
            let swarm = swarm::SwarmRuntime::connect(docker, &config.registry, &config.node_name())
                .await
                .map_err(|e| EngineError::Internal(e.to_string()))?;
            return Engine::start(config, Arc::new(swarm), Arc::new(source)).await;
        }
        Engine::start(config, Arc::new(docker), Arc::new(source)).await
    }

    /// Opens the database and log store, reconciles what a previous run left mid-flight,
    /// and starts the workers.
    pub async fn start(
        config: Config,
        runtime: Arc<dyn runtime::Runtime>,
        source: Arc<dyn git::Source>,
    ) -> Result<Engine> {
        // Logs, checkouts and the database are nobody else's business.
        files::private_dir(&config.data_dir)?;
        files::private_database(&config.database_url())?;
        let database_url = config.database_url();
        let pool = db::connect(&database_url).await?;
        let node = cluster::Node {
            name: config.node_name(),
            addr: config.addr.to_string(),
            lease: config.node_lease,
            dialect: db::Dialect::of_url(&database_url),
        };
        db::join(&pool, &node.name, &node.addr).await?;
        for id in db::split_repo_credentials(&pool).await? {
            tracing::info!(
                app.id = id,
                "credentials in the app's repository URL moved to their own column"
            );
        }
        let store = LogStore::new(config.data_dir.join("logs"))?;
        let admin_token = config.admin_token.as_ref().map(|t| t.0.as_str());
        let auth = Arc::new(
            auth::Auth::load(
                pool.clone(),
                admin_token,
                node.clustered().then(|| node.clone()),
            )
            .await?,
        );
        auth.write_setup_file(&config.data_dir.join(SETUP_CODE_FILE))?;
        let instance = instance_id(&config.data_dir).await?;
        // Checkouts a previous run left behind (a crash, a kill): nothing runs yet.
        let work_dir = config.data_dir.join("work");
        match std::fs::remove_dir_all(&work_dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        let (events, last_event) = db::recent_events(&pool, protocol::FEED_KEPT).await?;
        let feed = Arc::new(feed::EventFeed::new(events, last_event));
        let lifecycle = Arc::new(Lifecycle::new(
            pool.clone(),
            store,
            config.log_max_bytes,
            feed,
            node.clone(),
        ));
        let shutdown = CancellationToken::new();
        let mut cx = worker::WorkerContext {
            lifecycle: lifecycle.clone(),
            runtime: runtime.clone(),
            source,
            settings: Arc::new(worker::Settings {
                work_dir,
                health_timeout: config.health_timeout,
                build_timeout: config.build_timeout,
                progress_deadline: config.progress_deadline,
                instance: instance.clone(),
            }),
            shutdown: shutdown.clone(),
            http: reqwest::Client::builder()
                .no_proxy()
                .user_agent("slipway-health-check")
                .build()
                .map_err(|e| EngineError::Internal(format!("building the HTTP client: {e}")))?,
            edge: None,
            app_logs: None,
        };
        worker::reconcile(&cx).await?;
        let tasks = TaskTracker::new();
        tasks.spawn(cluster_duties(
            lifecycle.clone(),
            auth.clone(),
            pool.clone(),
            database_url,
            shutdown.clone(),
        ));
        let app_logs = Arc::new(app_logs::AppLogs::new(
            config.data_dir.join("runtime"),
            config.runtime_log_bytes,
            runtime.clone(),
            shutdown.clone(),
            tasks.clone(),
        ));
        for app in db::apps(&pool).await? {
            if let Some(container) = &app.container_id {
                app_logs.follow(app.id, container, None).await;
            }
        }
        cx.app_logs = Some(app_logs.clone());
        let edge = match edge::EdgeSettings::from_config(&config) {
            Some(mut settings) => {
                settings.dir = std::path::absolute(&settings.dir)?;
                let routes = routes(&pool, runtime.as_ref(), &settings).await?;
                let edge = match runtime.swarm() {
                    Some(swarm) => edge::Edge::start_on_swarm(settings, routes, swarm).await,
                    None => edge::Edge::start(settings, routes, shutdown.clone(), &tasks).await,
                }
                .map_err(|e| EngineError::Internal(e.to_string()))?;
                tasks.spawn(follow_runtime(
                    pool.clone(),
                    runtime.clone(),
                    edge.clone(),
                    instance.clone(),
                    shutdown.clone(),
                ));
                if runtime.swarm().is_some() && node.clustered() {
                    tasks.spawn(follow_cluster_routes(
                        pool.clone(),
                        runtime.clone(),
                        edge.clone(),
                        lifecycle.feed().clone(),
                        shutdown.clone(),
                    ));
                }
                Some(edge)
            }
            None => None,
        };
        cx.edge = edge.clone();
        let public_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", config.addr));
        tasks.spawn(
            notify::Notifier::new(pool.clone(), lifecycle.notifications(), public_url)
                .run(shutdown.clone()),
        );
        for n in 0..config.workers {
            tasks.spawn(worker::run(cx.clone(), n));
        }
        Ok(Engine {
            inner: Arc::new(Inner {
                config,
                pool,
                auth,
                lifecycle,
                runtime,
                edge,
                app_logs,
                instance,
                shutdown,
                tasks,
            }),
        })
    }

    /// The edge's settings, when the edge is on.
    pub fn edge(&self) -> Option<&edge::EdgeSettings> {
        self.inner.edge.as_deref().map(edge::Edge::settings)
    }

    /// The app as the API shows it: `url` is its public address through the edge (or,
    /// with the edge off, where its container answers on loopback).
    fn app_view(&self, record: &db::AppRecord, last: Option<Deployment>) -> App {
        let url = match &self.inner.edge {
            Some(edge) => record
                .container_id
                .as_ref()
                .map(|_| edge.settings().public_url(&record.name)),
            None => record.url.clone(),
        };
        record.to_api(url, last)
    }

    /// Host names must lead to one app: an extra domain may be neither another app's
    /// own name at the apps domain nor another app's extra domain (the database checks
    /// those), and a new app's name must not be someone's extra domain.
    async fn check_hosts(&self, app: Option<AppId>, name: &str, domains: &[String]) -> Result<()> {
        let suffix = format!(".{}", self.inner.config.apps_domain);
        for domain in domains {
            if let Some(other) = domain.strip_suffix(&suffix)
                && let Some(owner) = db::app_named(&self.inner.pool, other).await?
                && Some(owner) != app
            {
                return Err(Conflict::DomainTaken(domain.clone()).into());
            }
        }
        let own = format!("{name}{suffix}");
        match db::app_with_domain(&self.inner.pool, &own).await? {
            Some(owner) if Some(owner) != app => Err(Conflict::DomainTaken(own).into()),
            _ => Ok(()),
        }
    }

    /// Points the edge at the app's current state (its hosts changed).
    async fn update_route(&self, id: AppId) -> Result<()> {
        if let Some(edge) = &self.inner.edge {
            let record = db::app(&self.inner.pool, id).await?;
            let upstream = edge.routes().await.remove(&id).and_then(|r| r.upstream);
            edge.set(id, route_of(edge.settings(), &record, upstream))
                .await
                .map_err(|e| EngineError::Internal(e.to_string()))?;
        }
        Ok(())
    }

    pub fn auth(&self) -> &auth::Auth {
        &self.inner.auth
    }

    /// The nodes of the cluster (one, on SQLite), by name.
    pub async fn nodes(&self) -> Result<Vec<protocol::NodeInfo>> {
        db::nodes(&self.inner.pool, self.inner.config.node_lease).await
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Stops the workers and waits for them. Deployments in flight are reconciled at the
    /// next start.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        self.inner.pool.close().await;
    }

    /// Registers an app. Credentials in its repository URL are stored apart from it.
    pub async fn create_app(&self, new: NewApp) -> Result<App> {
        let mut valid = protocol::validate::new_app(&new, self.inner.config.allow_local_repos)?;
        self.check_hosts(None, &valid.name, &valid.domains).await?;
        let (url, credentials) = credentials::split(&valid.repo_url);
        valid.repo_url = url;
        let record = self
            .inner
            .lifecycle
            .recorded(async {
                let (record, event) =
                    db::insert_app(&self.inner.pool, &valid, credentials.as_ref()).await?;
                Ok((record, Some(event)))
            })
            .await?;
        self.update_route(record.id).await?;
        tracing::info!(app.id = record.id, app.name = %record.name, "app created");
        Ok(self.app_view(&record, None))
    }

    /// Changes an app's settings; the next deployment uses them. Validated as a new app is.
    /// A repository URL with credentials replaces the stored ones; one without keeps them
    /// only if it points at the same origin (they are never sent to another host).
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
            repo_url: changes.repo_url.unwrap_or_else(|| current.repo_url.clone()),
            branch: Some(changes.branch.unwrap_or(current.branch)),
            dockerfile: Some(changes.dockerfile.unwrap_or(current.dockerfile)),
            port: changes.port.unwrap_or(current.port.map(i64::from)),
            env,
            domains: changes.domains.unwrap_or(current.domains),
            memory_mb: Some(changes.memory_mb.unwrap_or(i64::from(current.memory_mb))),
            cpus: Some(changes.cpus.unwrap_or(current.cpus)),
        };
        let mut valid = protocol::validate::new_app(&merged, self.inner.config.allow_local_repos)?;
        self.check_hosts(Some(id), &valid.name, &valid.domains)
            .await?;
        let (url, given) = credentials::split(&valid.repo_url);
        let kept = match given {
            Some(given) => Some(given),
            None if credentials::origin(&url) == credentials::origin(&current.repo_url) => {
                current.credentials.clone()
            }
            None => None,
        };
        valid.repo_url = url;
        self.inner
            .lifecycle
            .recorded(async {
                let event = db::update_app(&self.inner.pool, id, &valid, kept.as_ref()).await?;
                Ok(((), Some(event)))
            })
            .await?;
        self.update_route(id).await?;
        tracing::info!(app.id = id, "app settings changed");
        self.app(id).await
    }

    pub async fn apps(&self) -> Result<Vec<App>> {
        let mut apps = Vec::new();
        for record in db::apps(&self.inner.pool).await? {
            let last = db::deployments_of_app(&self.inner.pool, record.id, 1)
                .await?
                .pop();
            apps.push(self.app_view(&record, last));
        }
        Ok(apps)
    }

    pub async fn app(&self, id: AppId) -> Result<App> {
        let record = db::app(&self.inner.pool, id).await?;
        let last = db::deployments_of_app(&self.inner.pool, id, 1).await?.pop();
        Ok(self.app_view(&record, last))
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
        if let Some(edge) = &self.inner.edge
            && let Err(e) = edge.remove(id).await
        {
            tracing::warn!(app.id = id, error = %e, "could not remove the app's route");
        }
        if let Some(container) = &record.container_id
            && let Err(e) = self.inner.runtime.remove(container).await
        {
            tracing::warn!(app.id = id, error = %e, "could not remove the app's container");
        }
        let network = worker::network_name(&record.name, &self.inner.instance);
        if let Err(e) = self.inner.runtime.remove_network(&network).await {
            tracing::warn!(app.id = id, error = %e, "could not remove the app's network");
        }
        self.inner
            .lifecycle
            .recorded(async { Ok(((), db::delete_app(&self.inner.pool, id).await?)) })
            .await?;
        self.inner.app_logs.forget(id).await;
        let ids: Vec<DeploymentId> = history.iter().map(|d| d.id).collect();
        self.inner.lifecycle.forget(&ids).await?;
        tracing::info!(app.id = id, "app deleted");
        Ok(())
    }

    /// Queues a deployment of the app's branch; a worker picks it up at once if one is free.
    pub async fn deploy(&self, app_id: AppId) -> Result<Deployment> {
        self.deploy_commit(app_id, None).await
    }

    /// Queues a deployment that builds exactly `commit` (a full SHA), or the branch's head.
    pub async fn deploy_commit(&self, app_id: AppId, commit: Option<&str>) -> Result<Deployment> {
        let commit = commit.map(protocol::validate::commit).transpose()?;
        db::app(&self.inner.pool, app_id).await?;
        self.inner
            .lifecycle
            .queue(app_id, None, commit.as_deref())
            .await
    }

    /// A new webhook secret for the app; the previous one stops working. Answers it with
    /// the URL forges post to (`<public URL>/api/hooks/<app id>`).
    pub async fn rotate_webhook(&self, app_id: AppId) -> Result<protocol::Webhook> {
        db::app(&self.inner.pool, app_id).await?;
        let secret = auth::random_hex();
        db::set_webhook_secret(&self.inner.pool, app_id, &secret).await?;
        tracing::info!(app.id = app_id, "webhook secret rotated");
        Ok(protocol::Webhook {
            url: self.webhook_url(app_id),
            secret,
        })
    }

    /// Where forges post the app's pushes.
    pub fn webhook_url(&self, app_id: AppId) -> String {
        let base = match &self.inner.config.public_url {
            Some(url) => url.clone(),
            None => format!("http://{}", self.inner.config.addr),
        };
        format!("{base}/api/hooks/{app_id}")
    }

    /// The app's webhook secret, to check a delivery's signature (`None`: no webhook).
    pub async fn webhook_secret(&self, app_id: AppId) -> Result<Option<String>> {
        db::webhook_secret(&self.inner.pool, app_id).await
    }

    /// A delivery whose signature checked out: a push to the app's branch deploys exactly
    /// the pushed commit; anything else is recorded with why it was ignored. The same
    /// delivery id again answers what the first did and queues nothing.
    pub async fn receive_hook(&self, app_id: AppId, hook: Hook) -> Result<protocol::Delivery> {
        let pool = &self.inner.pool;
        if let Some(earlier) =
            db::begin_delivery(pool, app_id, &hook.delivery, &hook.forge, &hook.event).await?
        {
            return Ok(earlier);
        }
        let app = db::app(pool, app_id).await?;
        let outcome = match hook.push {
            Push::Ignore(why) => Err(why),
            Push::Branch { branch, .. } if branch != app.branch => Err(format!(
                "a push to branch {branch}, not to the app's branch {}",
                app.branch
            )),
            Push::Branch { commit, .. } => Ok(commit),
        };
        let delivery = match outcome {
            Ok(commit) => match self.deploy_commit(app_id, Some(&commit)).await {
                Ok(deployment) => {
                    db::finish_delivery(pool, app_id, &hook.delivery, Some(deployment.id), None)
                        .await?
                }
                Err(e) => {
                    let why = format!("not deployed: {}", e.public_message());
                    db::finish_delivery(pool, app_id, &hook.delivery, None, Some(&why)).await?;
                    return Err(e);
                }
            },
            Err(why) => db::finish_delivery(pool, app_id, &hook.delivery, None, Some(&why)).await?,
        };
        tracing::info!(app.id = app_id, forge = %hook.forge, delivery = %hook.delivery, deployment.id = ?delivery.deployment_id, ignored = ?delivery.ignored, "webhook delivery");
        Ok(delivery)
    }

    /// The app's recent webhook deliveries, newest first.
    pub async fn deliveries(&self, app_id: AppId) -> Result<Vec<protocol::Delivery>> {
        db::app(&self.inner.pool, app_id).await?;
        db::deliveries(&self.inner.pool, app_id, 20).await
    }

    /// Deploys again the image an earlier successful deployment built: no clone, no build
    /// (`pending` → `deploying` → `success`).
    pub async fn redeploy(&self, id: DeploymentId) -> Result<Deployment> {
        let source = db::deployment(&self.inner.pool, id).await?.api;
        let image = match (&source.status, &source.image) {
            (Status::Success, Some(image)) => image.clone(),
            _ => return Err(Conflict::NotRedeployable(id).into()),
        };
        let reuse = db::Reuse {
            from: id,
            image: &image,
            commit: source.commit.as_deref(),
        };
        self.inner
            .lifecycle
            .queue(source.app_id, Some(reuse), None)
            .await
    }

    /// Starts again the image of one of the app's last successful deployments (by default
    /// the one before the current), with no clone and no build.
    pub async fn rollback(&self, app_id: AppId, to: Option<DeploymentId>) -> Result<Deployment> {
        db::app(&self.inner.pool, app_id).await?;
        let history = db::deployments_of_app(&self.inner.pool, app_id, i64::MAX).await?;
        let kept = kept_images(&history);
        let target = match to {
            Some(id) => {
                let target = db::deployment(&self.inner.pool, id).await?.api;
                if target.app_id != app_id {
                    return Err(Conflict::OtherApp {
                        deployment: id,
                        app: target.app_id,
                        requested: app_id,
                    }
                    .into());
                }
                if target.status != Status::Success {
                    return Err(Conflict::NotRedeployable(id).into());
                }
                if !target
                    .image
                    .as_ref()
                    .is_some_and(|image| kept.contains(image))
                {
                    return Err(Conflict::ImageNotKept(id).into());
                }
                target
            }
            None => {
                // The newest success serves now; the one before it is where to go back.
                let current = kept.first();
                history
                    .iter()
                    .find(|d| {
                        d.status == Status::Success
                            && d.image.is_some()
                            && d.image.as_ref() != current
                    })
                    .cloned()
                    .ok_or(Conflict::NothingToRollBackTo(app_id))?
            }
        };
        let image = target.image.clone().unwrap_or_default();
        let reuse = db::Reuse {
            from: target.id,
            image: &image,
            commit: target.commit.as_deref(),
        };
        tracing::info!(app.id = app_id, deployment.id = target.id, "rollback");
        self.inner.lifecycle.queue(app_id, Some(reuse), None).await
    }

    pub async fn deployment(&self, id: DeploymentId) -> Result<Deployment> {
        Ok(db::deployment(&self.inner.pool, id).await?.api)
    }

    pub async fn deployments(&self, app_id: AppId) -> Result<Vec<Deployment>> {
        db::app(&self.inner.pool, app_id).await?;
        db::deployments_of_app(&self.inner.pool, app_id, HISTORY_LIMIT).await
    }

    /// The whole log so far, in memory (tests; the API streams [`Engine::log_file`]).
    pub async fn log(&self, id: DeploymentId) -> Result<Vec<u8>> {
        db::deployment(&self.inner.pool, id).await?;
        Ok(self
            .inner
            .lifecycle
            .synced_store(id)
            .await?
            .read_all(id)
            .await?)
    }

    /// A deployment's log as it stands now, to be read piece by piece (the download):
    /// a log of any size is served in constant memory.
    pub async fn log_file(&self, id: DeploymentId) -> Result<logstore::LogFile> {
        db::deployment(&self.inner.pool, id).await?;
        Ok(self
            .inner
            .lifecycle
            .synced_store(id)
            .await?
            .open_all(id)
            .await?)
    }

    /// Lines `from..=to` of a deployment's log (clamped to what exists; cut after
    /// [`protocol::MAX_PAGE_BYTES`] of text), and how many it holds.
    pub async fn lines(&self, id: DeploymentId, from: Seq, to: Seq) -> Result<LogPage> {
        db::deployment(&self.inner.pool, id).await?;
        let store = self.inner.lifecycle.synced_store(id).await?;
        let total = store.count(id).await?;
        let lines = store
            .read_bounded(id, from, to.min(total), protocol::MAX_PAGE_BYTES)
            .await?;
        Ok(LogPage { total, lines })
    }

    /// The lines of a deployment's log that contain `text` (see `LogStore::search`).
    pub async fn search(&self, id: DeploymentId, text: &str) -> Result<SearchResult> {
        db::deployment(&self.inner.pool, id).await?;
        let needle = text.to_ascii_lowercase();
        let (seqs, truncated) = self
            .inner
            .lifecycle
            .synced_store(id)
            .await?
            .search(id, needle, protocol::MAX_SEARCH_RESULTS)
            .await?;
        Ok(SearchResult { seqs, truncated })
    }

    /// The newest lines, for pages rendered before the live view takes over: at most `n`
    /// of them and `max_bytes` of text (at least the last line).
    pub async fn recent_lines(
        &self,
        id: DeploymentId,
        n: u64,
        max_bytes: u64,
    ) -> Result<Vec<LogLine>> {
        Ok(self
            .inner
            .lifecycle
            .synced_store(id)
            .await?
            .tail(id, n, max_bytes)
            .await?)
    }

    /// A viewer of the app's runtime log, after line `since` (from the oldest kept line if
    /// `since` is older).
    pub async fn watch_app(&self, app: AppId, since: Seq) -> Result<AppLogWatcher> {
        db::app(&self.inner.pool, app).await?;
        let status = match db::deployments_of_app(&self.inner.pool, app, 1)
            .await?
            .pop()
        {
            Some(current) => current.status_data(),
            None => protocol::StatusData::new(0, Status::Pending, 0, String::new(), None, None),
        };
        let log = self.inner.app_logs.log(app).await?;
        Ok(AppLogWatcher::new(log, status, since))
    }

    /// The app's kept runtime lines `from..=to` (at most 5,000), and its newest seq.
    pub async fn app_log_lines(&self, app: AppId, from: Seq, to: Seq) -> Result<LogPage> {
        let (_, total, lines) = self
            .read_app_log(app, |_, last| {
                (from, to.min(last).min(from.saturating_add(4_999)))
            })
            .await?;
        Ok(LogPage { total, lines })
    }

    /// Reads the app's kept runtime lines in the range `pick(first kept, newest)` answers;
    /// answers the first kept, the newest and the lines.
    async fn read_app_log(
        &self,
        app: AppId,
        pick: impl FnOnce(Seq, Seq) -> (Seq, Seq),
    ) -> Result<(Seq, Seq, Vec<LogLine>)> {
        db::app(&self.inner.pool, app).await?;
        let log = self.inner.app_logs.log(app).await?;
        let (first, last) = (log.first_seq(), log.last_seq());
        let (from, to) = pick(first, last);
        let lines = tokio::task::spawn_blocking(move || log.read_blocking(from, to))
            .await
            .map_err(|e| EngineError::Internal(e.to_string()))??;
        Ok((first, last, lines))
    }

    /// A viewer of the event feed after `since` (`None`: from now on).
    pub fn watch_events(&self, since: Option<u64>) -> Result<feed::FeedWatcher> {
        self.inner
            .lifecycle
            .feed()
            .watch(since)
            .map_err(|gone| EngineError::Gone {
                since: since.unwrap_or(0),
                oldest: gone.oldest,
            })
    }

    /// The newest event's id: a page rendered now resumes the feed from it.
    pub fn last_event(&self) -> u64 {
        self.inner.lifecycle.feed().last_id()
    }

    /// `POST /api/notifications`: a new outgoing notification and its secret.
    pub async fn create_notification(
        &self,
        new: protocol::NewNotification,
    ) -> Result<protocol::CreatedNotification> {
        let url = protocol::validate::notification_url(&new.url)?;
        let events = protocol::validate::notification_events(&new.events)?;
        let secret = auth::random_hex();
        let created =
            db::insert_notification(&self.inner.pool, &url, &events, new.format, &secret).await?;
        tracing::info!(notification.id = created.id, "notification created");
        Ok(protocol::CreatedNotification {
            id: created.id,
            secret,
        })
    }

    pub async fn notifications(&self) -> Result<Vec<protocol::Notification>> {
        db::notifications(&self.inner.pool).await
    }

    pub async fn delete_notification(&self, id: i64) -> Result<()> {
        if db::delete_notification(&self.inner.pool, id).await? {
            Ok(())
        } else {
            Err(Missing::Notification(id).into())
        }
    }

    /// The app's newest `n` kept runtime lines, and the oldest seq it still keeps.
    pub async fn app_log_tail(&self, app: AppId, n: Seq) -> Result<(Seq, Vec<LogLine>)> {
        let (first, _, lines) = self
            .read_app_log(app, |first, last| {
                (last.saturating_sub(n.saturating_sub(1)).max(first), last)
            })
            .await?;
        Ok((first, lines))
    }

    /// The app's kept runtime lines as text, oldest first.
    pub async fn app_log_text(&self, app: AppId) -> Result<Vec<u8>> {
        let (_, _, lines) = self.read_app_log(app, |first, last| (first, last)).await?;
        Ok(lines
            .into_iter()
            .flat_map(|l| l.line.into_bytes())
            .collect())
    }

    /// `GET /metrics` in the Prometheus text format; `viewers` are the open monitors.
    pub async fn metrics(&self, viewers: u64) -> Result<String> {
        self.inner.lifecycle.metrics(viewers).await
    }

    /// A viewer of deployment `id` that starts after line `since`.
    pub async fn watch(&self, id: DeploymentId, since: Seq) -> Result<Watcher> {
        self.inner.lifecycle.watch(id, since).await
    }

    /// Stops a pending or running deployment and waits (up to 30 s) until it has ended.
    pub async fn cancel(&self, id: DeploymentId) -> Result<Deployment> {
        self.inner.lifecycle.cancel(id).await
    }
}

/// A webhook delivery, its signature checked, as the HTTP edge read it from a forge.
#[derive(Debug, Clone)]
pub struct Hook {
    pub forge: String,
    pub event: String,
    /// The forge's delivery id: the same one twice queues nothing new.
    pub delivery: String,
    pub push: Push,
}

/// What a delivery asks for.
#[derive(Debug, Clone)]
pub enum Push {
    /// A push to a branch: deploy `commit` if it is the app's branch.
    Branch { branch: String, commit: String },
    /// A ping, a tag, a deleted branch, another event: why nothing is deployed.
    Ignore(String),
}

/// The images of an app's last `KEPT_IMAGES` successful deployments, newest first (a
/// redeploy shares its image with the deployment that built it).
pub(crate) fn kept_images(history: &[Deployment]) -> Vec<String> {
    let mut kept: Vec<String> = Vec::new();
    for deployment in history.iter().filter(|d| d.status == Status::Success) {
        if let Some(image) = &deployment.image
            && !kept.contains(image)
        {
            kept.push(image.clone());
            if kept.len() == KEPT_IMAGES {
                break;
            }
        }
    }
    kept
}

/// An app's route: its host names, and where its serving container (or service) answers.
fn route_of(
    settings: &edge::EdgeSettings,
    app: &db::AppRecord,
    upstream: Option<String>,
) -> edge::Route {
    let mut hosts = vec![settings.host_of(&app.name)];
    hosts.extend(app.domains.iter().cloned());
    edge::Route { hosts, upstream }
}

/// The route table from the database: each app's hosts, and where its serving container
/// answers now (asked of the runtime: the port changes when the engine restarts it).
/// A serving container's new port is recorded. On Swarm, a service keeps its name.
async fn routes(
    pool: &db::Pool,
    runtime: &dyn runtime::Runtime,
    settings: &edge::EdgeSettings,
) -> Result<std::collections::BTreeMap<AppId, edge::Route>> {
    let mut table = std::collections::BTreeMap::new();
    for app in db::apps(pool).await? {
        let mut upstream = None;
        if let (Some(container), Some(port)) = (&app.container_id, app.port) {
            upstream = match runtime.swarm() {
                Some(swarm) => Some(swarm.dial(container, port)),
                None => match runtime.host_port(container, port).await {
                    Ok(Some(host_port)) => {
                        let address = std::net::SocketAddr::from(([127, 0, 0, 1], host_port));
                        let url = format!("http://{address}");
                        if app.url.as_deref() != Some(url.as_str()) {
                            db::set_app_container(pool, app.id, container, Some(&url)).await?;
                        }
                        Some(address.to_string())
                    }
                    Ok(None) => None,
                    Err(e) => {
                        tracing::warn!(app.id = app.id, error = %e, "could not find the app's container port");
                        None
                    }
                },
            };
        }
        table.insert(app.id, route_of(settings, &app, upstream));
    }
    Ok(table)
}

/// This node's part in the cluster: its heartbeat, ending lost nodes' deployments, and
/// (on PostgreSQL) the other nodes' signals. On one node (SQLite) only the heartbeat,
/// which keeps `GET /api/nodes` true.
async fn cluster_duties(
    lifecycle: Arc<Lifecycle>,
    auth: Arc<auth::Auth>,
    pool: db::Pool,
    database_url: String,
    shutdown: CancellationToken,
) {
    let node = lifecycle.node().clone();
    let (signals, mut incoming) = tokio::sync::mpsc::unbounded_channel();
    if node.clustered() {
        tokio::spawn(cluster::listen(database_url, signals));
    } else {
        drop(signals);
    }
    let mut beat = tokio::time::interval(node.heartbeat());
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = beat.tick() => {
                if let Err(e) = db::seen(&pool, &node.name).await {
                    tracing::warn!(error = %e, "could not record this node's heartbeat");
                }
                if node.clustered()
                    && let Err(e) = lifecycle.fail_orphans().await
                {
                    tracing::warn!(error = %e, "could not end the deployments of lost nodes");
                }
            }
            Some(first) = incoming.recv() => {
                // Everything said meanwhile, in order; a copy of a log takes every line
                // stored so far, so later notices of the same log's lines add nothing.
                let mut signals = vec![first];
                while let Ok(next) = incoming.try_recv() {
                    let repeated = matches!(next, cluster::Signal::Lines { .. })
                        && signals.contains(&next);
                    if !repeated {
                        signals.push(next);
                    }
                }
                for signal in signals {
                    lifecycle.signal(&signal).await;
                    if signal == cluster::Signal::Auth
                        && let Err(e) = auth.reload().await
                    {
                        tracing::warn!(error = %e, "could not reload sessions and tokens");
                    }
                }
            }
        }
    }
}

/// Keeps the edge pointed at the containers: when the container engine comes back (it
/// restarted and so did the containers, on new ports) or one of ours starts again, the
/// table is rebuilt from the database and the runtime.
async fn follow_runtime(
    pool: db::Pool,
    runtime: Arc<dyn runtime::Runtime>,
    edge: Arc<edge::Edge>,
    instance: String,
    shutdown: CancellationToken,
) {
    use futures_util::StreamExt;
    let mut events = runtime.events(&instance);
    loop {
        let event = tokio::select! {
            event = events.next() => event,
            _ = shutdown.cancelled() => return,
        };
        let Some(event) = event else { return };
        tracing::debug!(?event, "the container engine reports");
        match routes(&pool, runtime.as_ref(), edge.settings()).await {
            Ok(table) => {
                if let Err(e) = edge.replace(table).await {
                    tracing::error!(error = %e, "could not update the edge after the container engine changed");
                }
            }
            Err(e) => tracing::error!(error = %e, "could not rebuild the edge's routes"),
        }
    }
}

/// On Swarm in a cluster, apps are services every node's edge can reach by name, and any
/// node may deploy one: each edge follows the event feed (one ordered stream for the
/// whole cluster) and reloads its table from the database after each burst of events. A
/// route this node set for a service whose first deployment is still under way (not in
/// the database yet) is kept.
async fn follow_cluster_routes(
    pool: db::Pool,
    runtime: Arc<dyn runtime::Runtime>,
    edge: Arc<edge::Edge>,
    feed: Arc<feed::EventFeed>,
    shutdown: CancellationToken,
) {
    let Ok(mut events) = feed.watch(None) else {
        return;
    };
    loop {
        tokio::select! {
            next = events.next() => if next.is_err() { return },
            _ = shutdown.cancelled() => return,
        }
        while events.next_ready().is_some() {}
        let mut table = match routes(&pool, runtime.as_ref(), edge.settings()).await {
            Ok(table) => table,
            Err(e) => {
                tracing::error!(error = %e, "could not rebuild the edge's routes");
                continue;
            }
        };
        let current = edge.routes().await;
        for (app, route) in table.iter_mut() {
            if route.upstream.is_none() {
                route.upstream = current.get(app).and_then(|r| r.upstream.clone());
            }
        }
        if let Err(e) = edge.replace(table).await {
            tracing::error!(error = %e, "could not update the edge after another node's change");
        }
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
