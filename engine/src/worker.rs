//! The queue workers and the deployment pipeline: clone, build, deploy, health check.
//!
//! Workers sleep until the lifecycle wakes them and claim durable rows; nothing polls on a
//! timer. A worker sees only a [`WorkerContext`]: the lifecycle (through which it claims
//! and moves its [`Run`]), the container runtime, the source, and its settings. Each
//! deployment writes its own lines (what it clones, the commit, the image, the container,
//! the health check) into the same log as the build output.

use crate::db::Artifacts;
use crate::error::EngineError;
use crate::git::{Repo, Source, SourceError};
use crate::lifecycle::{Activity, Ending, Lifecycle, Run, WriteError};
use crate::logstore::LineSplitter;
use crate::runtime::{
    BuildContext, BuildRequest, ContainerSpec, ContainerState, Limits, Runtime, RuntimeError,
};
use protocol::{DeploymentId, Status};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// While Docker cannot be reached, idle workers look again this often; queued deployments
/// stay pending meanwhile.
const ENGINE_RETRY: Duration = Duration::from_secs(2);
/// A running deployment checks that the Docker engine still answers this often; two
/// failed checks in a row (each given 5 s) end it, so a vanished engine fails it well
/// within 30 s even when no request of the build notices.
const LIVENESS_EVERY: Duration = Duration::from_secs(5);
const LIVENESS_FAILURES: u32 = 2;

/// Output chunks buffered between the runtime and the log: the runtime waits when full.
const OUTPUT_BUFFER: usize = 256;
/// Most lines appended and published as one batch.
const MAX_BATCH_LINES: usize = 1024;
/// Container output shown when a container dies or never answers.
const TAIL_LINES: usize = 20;
/// Between health probes of a starting container; not a viewer-facing poll.
const PROBE_EVERY: Duration = Duration::from_millis(200);
/// One health probe's limit.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the workers need, and nothing else.
#[derive(Clone)]
pub(crate) struct WorkerContext {
    pub lifecycle: Arc<Lifecycle>,
    pub runtime: Arc<dyn Runtime>,
    pub source: Arc<dyn Source>,
    pub settings: Arc<Settings>,
    pub shutdown: CancellationToken,
    /// For health probes: one client, its connections reused.
    pub http: reqwest::Client,
    /// The edge, when it is on: a healthy new container gets the app's traffic through it.
    pub edge: Option<Arc<crate::edge::Edge>>,
    /// Runtime logs: the serving container's output goes there.
    pub app_logs: Option<Arc<crate::app_logs::AppLogs>>,
}

/// The workers' part of the configuration.
pub(crate) struct Settings {
    /// Checkouts live in `<work_dir>/<deployment id>` while they are built.
    pub work_dir: PathBuf,
    pub health_timeout: Duration,
    pub build_timeout: Duration,
    pub progress_deadline: Duration,
    /// Tells this installation's containers and images from others' on the same engine.
    pub instance: String,
}

/// One worker: claim the next deployment, run it, repeat; sleep until woken.
pub(crate) async fn run(cx: WorkerContext, n: usize) {
    tracing::debug!(worker = n, "worker started");
    let mut waiting_for_engine = false;
    loop {
        // Register for wake-ups before looking, so a deployment queued meanwhile is seen.
        let woken = cx.lifecycle.woken();
        tokio::pin!(woken);
        woken.as_mut().enable();
        if cx.shutdown.is_cancelled() {
            break;
        }
        // Claim nothing while the engine is away: deployments wait instead of failing.
        if let Err(e) = cx.runtime.ping().await {
            if !waiting_for_engine {
                tracing::warn!(worker = n, error = %e, "waiting for the container engine; queued deployments stay pending");
                waiting_for_engine = true;
            }
            tokio::select! {
                _ = tokio::time::sleep(ENGINE_RETRY) => continue,
                _ = cx.shutdown.cancelled() => break,
            }
        }
        if waiting_for_engine {
            tracing::info!(worker = n, "the container engine answers again");
            waiting_for_engine = false;
        }
        match cx.lifecycle.claim(&cx.shutdown).await {
            Ok(Some(run)) => {
                run_deployment(&cx, run).await;
                continue;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(worker = n, error = %e, "claiming a deployment failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = cx.shutdown.cancelled() => break,
                }
            }
        }
        // In a cluster, a wake-up lost with a connection is made up for by looking
        // again every few seconds; on one node every wake-up is in-process.
        let fallback = cx.lifecycle.node().fallback_poll();
        tokio::select! {
            _ = &mut woken => {}
            _ = async {
                match fallback {
                    Some(every) => tokio::time::sleep(every).await,
                    None => std::future::pending().await,
                }
            } => {}
            _ = cx.shutdown.cancelled() => break,
        }
    }
    tracing::debug!(worker = n, "worker stopped");
}

/// Why a deployment failed: what `error_message` tells a person.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("Cloning {url} failed: {reason}")]
    Clone { url: String, reason: String },
    #[error(transparent)]
    Source(SourceError),
    #[error("Dockerfile {path:?} not found in the repository at commit {commit}")]
    NoDockerfile { path: String, commit: String },
    #[error("packing the build context failed: {0}")]
    Context(String),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(
        "Health check failed: the container did not answer on port {port} within {} s (last: {last}). Its last output:\n{tail}",
        timeout.as_secs()
    )]
    Unhealthy {
        port: u16,
        timeout: Duration,
        last: String,
        tail: String,
    },
    #[error("The container {how} before it was healthy. Its last output:\n{tail}")]
    Died { how: String, tail: String },
    #[error("the disk is full: writing the deployment log failed ({0})")]
    DiskFull(std::io::Error),
    #[error("writing the deployment log failed: {0}")]
    Log(std::io::Error),
    /// `SLIPWAY_LOG_MAX_MB` reached.
    #[error("{0}")]
    LogFull(WriteError),
    /// Another node took the deployment over (`WriteError::ClaimLost`).
    #[error("{0}")]
    Lost(WriteError),
    #[error(
        "timed out: the deployment ran longer than {} s (SLIPWAY_BUILD_TIMEOUT_SECS)",
        .0.as_secs()
    )]
    Timeout(Duration),
    #[error(
        "no progress for {} s: no output and no status change (SLIPWAY_PROGRESS_DEADLINE_SECS)",
        .0.as_secs()
    )]
    Stalled(Duration),
    #[error("{0}")]
    EngineGone(RuntimeError),
    #[error("{0}")]
    Edge(crate::edge::EdgeError),
}

/// Why a pipeline stopped early.
enum Stop {
    Failed(Failure),
    Cancelled,
    /// The server is shutting down; the next start reconciles the deployment.
    Shutdown,
    /// The database failed: nothing more can be recorded.
    Engine(EngineError),
}

impl From<EngineError> for Stop {
    fn from(e: EngineError) -> Self {
        Stop::Engine(e)
    }
}

impl From<Failure> for Stop {
    fn from(f: Failure) -> Self {
        Stop::Failed(f)
    }
}

impl From<RuntimeError> for Stop {
    fn from(e: RuntimeError) -> Self {
        Stop::Failed(Failure::Runtime(e))
    }
}

impl From<std::io::Error> for Stop {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::StorageFull {
            Stop::Failed(Failure::DiskFull(e))
        } else {
            Stop::Failed(Failure::Log(e))
        }
    }
}

impl From<WriteError> for Stop {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Io(e) => e.into(),
            full @ WriteError::LimitReached(_) => Stop::Failed(Failure::LogFull(full)),
            lost @ WriteError::ClaimLost(_) => Stop::Failed(Failure::Lost(lost)),
        }
    }
}

/// Resolves, with the reason, once the deployment has shown no progress for `deadline`.
async fn stalled(activity: Arc<Activity>, deadline: Duration) -> Failure {
    loop {
        let idle = activity.idle();
        if idle >= deadline {
            return Failure::Stalled(deadline);
        }
        tokio::time::sleep(deadline - idle).await;
    }
}

/// Resolves, with the reason, once the container engine has stopped answering.
async fn engine_gone(runtime: Arc<dyn Runtime>) -> Failure {
    let mut failures = 0;
    loop {
        tokio::time::sleep(LIVENESS_EVERY).await;
        match runtime.ping().await {
            Ok(()) => failures = 0,
            Err(e) => {
                failures += 1;
                if failures >= LIVENESS_FAILURES {
                    return Failure::EngineGone(e);
                }
            }
        }
    }
}

async fn run_deployment(cx: &WorkerContext, mut run: Run) {
    let id = run.id();
    let started = Instant::now();
    let mut pipeline = Pipeline {
        cx,
        new_container: None,
        updating: None,
    };
    let limit = cx.settings.build_timeout;
    let token = run.token().clone();
    let activity = run.activity();
    let result = tokio::select! {
        result = tokio::time::timeout(limit, pipeline.run(&mut run)) => {
            result.unwrap_or(Err(Stop::Failed(Failure::Timeout(limit))))
        }
        failure = stalled(activity, cx.settings.progress_deadline) => Err(Stop::Failed(failure)),
        failure = engine_gone(cx.runtime.clone()) => Err(Stop::Failed(failure)),
        _ = token.cancelled() => Err(if cx.shutdown.is_cancelled() { Stop::Shutdown } else { Stop::Cancelled }),
    };
    // Whatever happened (success, failure, cancel, timeout, shutdown), the checkout is
    // not needed any more: the pipeline's future may have been dropped mid-clone or
    // mid-build, so it is removed here rather than inside it.
    remove_dir(&checkout_dir(&cx.settings, id)).await;
    let ending = match result {
        Ok(()) => None,
        Err(Stop::Shutdown) => return,
        Err(Stop::Engine(e)) => {
            tracing::error!(deployment.id = id, error = %e, "deployment could not be recorded");
            return;
        }
        Err(Stop::Failed(Failure::Lost(lost))) => {
            // Another node ended this deployment while this one was unheard (it froze):
            // the deployment is theirs to record; this run only cleans up after itself.
            pipeline.undo(id).await;
            tracing::warn!(deployment.id = id, error = %lost, "another node took this deployment over; this node's run stopped and recorded nothing");
            return;
        }
        Err(Stop::Failed(failure)) => Some(Ending::Failed(failure.to_string())),
        Err(Stop::Cancelled) => Some(Ending::Cancelled),
    };
    let outcome = match ending {
        None => Ok(Status::Success),
        Some(ending) => {
            pipeline.undo(id).await;
            run.end(ending).await
        }
    };
    let duration_ms = started.elapsed().as_millis() as u64;
    match outcome {
        Ok(status) => tracing::info!(deployment.id = id, %status, duration_ms, "deployment ended"),
        Err(e) => {
            tracing::error!(deployment.id = id, error = %e, duration_ms, "deployment could not be recorded")
        }
    }
}

/// One run of the pipeline and what it must clean up if it stops early.
struct Pipeline<'a> {
    cx: &'a WorkerContext,
    /// A container this run started and has not handed over to the app yet.
    new_container: Option<String>,
    /// A Swarm service this run is updating: a run that stops early rolls it back.
    updating: Option<String>,
}

impl Pipeline<'_> {
    async fn undo(&mut self, id: DeploymentId) {
        if let Some(service) = self.updating.take()
            && let Some(swarm) = self.cx.runtime.swarm()
            && let Err(e) = swarm.roll_back(&service).await
        {
            tracing::warn!(deployment.id = id, error = %e, "could not roll the service back");
        }
        if let Some(container) = self.new_container.take()
            && let Err(e) = self.cx.runtime.remove(&container).await
        {
            tracing::warn!(deployment.id = id, error = %e, "could not remove the new container");
        }
    }

    async fn run(&mut self, run: &mut Run) -> Result<(), Stop> {
        let cx = self.cx;
        let app = run.app().await?;
        let id = run.id();

        // A redeploy starts the image of an earlier deployment: no clone, no build.
        let tag = match run.deployment().image.clone() {
            Some(tag) if run.deployment().image_from.is_some() => {
                let commit = run
                    .deployment()
                    .commit
                    .as_deref()
                    .map(|c| format!(" (commit {})", short(c)))
                    .unwrap_or_default();
                run.say(format!(
                    "Redeploying image {tag}{commit}: no clone, no build"
                ))
                .await?;
                tag
            }
            _ => {
                let tag = self.clone_and_build(run, &app).await?;
                run.enter(Status::Deploying).await?;
                tag
            }
        };

        if let Some(swarm) = cx.runtime.swarm() {
            return self.deploy_service(run, &app, tag, swarm).await;
        }
        let instance = &cx.settings.instance;
        let name = container_name(&app.name, id, instance);
        let network = network_name(&app.name, instance);
        cx.runtime
            .ensure_network(&network, labels(app.id, None, instance))
            .await?;
        let limits = Limits {
            memory_mb: app.memory_mb,
            cpus: app.cpus,
            ..Limits::default()
        };
        run.say(format!(
            "Starting container {name} on network {network} ({} MB, {} CPU)",
            limits.memory_mb, limits.cpus
        ))
        .await?;
        let started = cx
            .runtime
            .start(ContainerSpec {
                name,
                image: tag,
                env: app.env.clone(),
                port: app.port,
                labels: labels(app.id, Some(id), instance),
                network: Some(network),
                limits,
            })
            .await?;
        self.new_container = Some(started.id.clone());
        let url = started.host_port.map(|p| format!("http://127.0.0.1:{p}"));
        run.record(Artifacts {
            container_id: Some(&started.id),
            url: url.as_deref(),
            ..Artifacts::default()
        })
        .await?;
        match &url {
            Some(url) => {
                run.say(format!(
                    "Container {} started; port {} published at {url}",
                    short(&started.id),
                    app.port.unwrap_or_default()
                ))
                .await?
            }
            None => {
                run.say(format!("Container {} started", short(&started.id)))
                    .await?
            }
        }
        if app.port.is_some() && started.host_port.is_none() {
            // Its port is not published: it stopped at once.
            let state = cx.runtime.state(&started.id).await?;
            return Err(self.died(&started.id, state).await.into());
        }
        self.health_check(run, &started.id, started.host_port)
            .await?;
        cx.runtime
            .keep_running(&started.id)
            .await
            .map_err(Failure::Runtime)?;

        // Hand over: the edge sends the app's traffic to the new container, then the old
        // one finishes what it was doing, and only then is it stopped.
        let serving = run.app().await?;
        let previous = serving.container_id.clone().filter(|p| *p != started.id);
        let mut public_url = url.clone();
        if let (Some(edge), Some(port)) = (&cx.edge, started.host_port) {
            let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            let route = crate::route_of(edge.settings(), &serving, Some(upstream.to_string()));
            let hosts = route.hosts.join(", ");
            edge.set(app.id, route).await.map_err(Failure::Edge)?;
            run.say(format!(
                "The edge now sends {hosts} to container {}",
                short(&started.id)
            ))
            .await?;
            public_url = Some(edge.settings().public_url(&app.name));
        }
        run.serve(&started.id, url.as_deref(), public_url.as_deref())
            .await?;
        self.new_container = None;
        if let Some(logs) = &cx.app_logs {
            let note = format!(
                "now serving container {} of deployment #{id}",
                short(&started.id)
            );
            logs.follow(app.id, &started.id, Some(note)).await;
        }
        if let (Some(edge), Some(previous_upstream)) =
            (&cx.edge, upstream_of(serving.url.as_deref()))
            && previous.is_some()
        {
            let waited = edge.drain(&previous_upstream.to_string()).await;
            run.say(format!(
                "The previous container finished its requests ({} ms)",
                waited.as_millis()
            ))
            .await?;
        }
        self.finish(run, app.id, previous, public_url).await
    }

    /// The new version serves: the previous container goes, the deployment succeeds, and
    /// images no rollback needs go too.
    async fn finish(
        &self,
        run: &mut Run,
        app: protocol::AppId,
        previous: Option<String>,
        public_url: Option<String>,
    ) -> Result<(), Stop> {
        let cx = self.cx;
        if let Some(previous) = previous {
            match cx.runtime.remove(&previous).await {
                Ok(()) => {
                    run.say(format!(
                        "Stopped the previous container {}",
                        short(&previous)
                    ))
                    .await?
                }
                Err(e) => {
                    run.say(format!(
                        "Could not stop the previous container {}: {e}",
                        short(&previous)
                    ))
                    .await?
                }
            }
        }
        run.say(match &public_url {
            Some(url) => format!("Deployment successful: {url}"),
            None => "Deployment successful".to_owned(),
        })
        .await?;
        run.succeed().await?;
        if let Err(e) = prune_images(cx, app).await {
            tracing::warn!(app.id = app, error = %e, "could not remove old images");
        }
        Ok(())
    }

    /// `SLIPWAY_RUNTIME=swarm`: the image goes to the registry, pinned by digest, and the
    /// app's service is created or updated to it; Swarm's health check, start-first
    /// order and rollback decide, and every task change is a line of the log.
    async fn deploy_service(
        &mut self,
        run: &mut Run,
        app: &crate::db::AppRecord,
        tag: String,
        swarm: &crate::swarm::SwarmRuntime,
    ) -> Result<(), Stop> {
        let cx = self.cx;
        let id = run.id();
        // A redeploy's image was pinned when it was built.
        let image = if tag.contains("@sha256:") {
            tag
        } else {
            run.say(format!(
                "Pushing image {tag} to the registry {}",
                swarm.registry()
            ))
            .await?;
            let (tx, rx) = mpsc::channel(OUTPUT_BUFFER);
            let push = async {
                let tx = tx;
                swarm.push(&tag, &tx).await
            };
            let (pinned, pumped) = tokio::join!(push, pump(run, rx, false));
            pumped?;
            let pinned = pinned?;
            run.record(Artifacts {
                image: Some(&pinned),
                ..Artifacts::default()
            })
            .await?;
            // The registry's name for it stays; the build's own tag is not needed.
            if let Err(e) = cx.runtime.remove_image(&tag).await {
                tracing::warn!(deployment.id = id, error = %e, "could not remove the build's tag");
            }
            run.say(format!("Pushed; the service runs {pinned}"))
                .await?;
            pinned
        };
        run.progress(85).await?;
        let service = swarm.service_name(&app.name);
        let limits = Limits {
            memory_mb: app.memory_mb,
            cpus: app.cpus,
            ..Limits::default()
        };
        run.say(format!(
            "Deploying service {service} ({} MB, {} CPU, {} processes)",
            limits.memory_mb, limits.cpus, limits.pids
        ))
        .await?;
        let before = run.app().await?;
        if before.container_id.as_deref() == Some(service.as_str()) {
            self.updating = Some(service.clone());
        } else {
            // Nothing serves from it yet: a run that stops early removes it.
            self.new_container = Some(service.clone());
        }
        let request = crate::swarm::ServiceRequest {
            name: service.clone(),
            image,
            env: app.env.clone(),
            labels: labels(app.id, None, &cx.settings.instance),
            limits,
        };
        let (tx, rx) = mpsc::channel(OUTPUT_BUFFER);
        let deploy = async {
            let tx = tx;
            swarm.deploy(request, cx.settings.health_timeout, &tx).await
        };
        let (deployed, pumped) = tokio::join!(deploy, pump(run, rx, false));
        // Ended, either way: Swarm rolled back a failed update itself.
        self.updating = None;
        pumped?;
        let created = deployed?;
        run.progress(95).await?;
        let upstream = app.port.map(|port| swarm.dial(&service, port));
        let url = upstream.as_ref().map(|u| format!("http://{u}"));
        run.record(Artifacts {
            container_id: Some(&service),
            url: url.as_deref(),
            ..Artifacts::default()
        })
        .await?;
        let serving = run.app().await?;
        let mut public_url = None;
        if let (Some(edge), Some(upstream)) = (&cx.edge, upstream) {
            let route = crate::route_of(edge.settings(), &serving, Some(upstream.clone()));
            let hosts = route.hosts.join(", ");
            edge.set(app.id, route).await.map_err(Failure::Edge)?;
            run.say(format!(
                "The edge sends {hosts} to service {service} ({upstream} on the overlay network)"
            ))
            .await?;
            if created {
                self.answers_through_edge(run, edge, &app.name).await?;
            }
            public_url = Some(edge.settings().public_url(&app.name));
        }
        run.serve(&service, url.as_deref(), public_url.as_deref())
            .await?;
        self.new_container = None;
        if let Some(logs) = &cx.app_logs {
            let note = format!("now serving service {service} with the image of deployment #{id}");
            logs.follow(app.id, &service, Some(note)).await;
        }
        let previous = serving.container_id.clone().filter(|p| *p != service);
        self.finish(run, app.id, previous, public_url).await
    }

    /// A new service's first check from outside: an HTTP answer below 500 through the
    /// edge, as users will reach it.
    async fn answers_through_edge(
        &self,
        run: &Run,
        edge: &crate::edge::Edge,
        app: &str,
    ) -> Result<(), Stop> {
        let settings = edge.settings();
        let host = settings.host_of(app);
        let port = settings.http.port();
        let url = format!("http://127.0.0.1:{port}/");
        let timeout = self.cx.settings.health_timeout;
        let deadline = Instant::now() + timeout;
        loop {
            let answer = self
                .cx
                .http
                .get(&url)
                .header(reqwest::header::HOST, &host)
                .timeout(PROBE_TIMEOUT)
                .send()
                .await;
            let last = match answer {
                Ok(response) if response.status().as_u16() < 500 => {
                    run.say(format!(
                        "Health check passed: HTTP {} from {host} through the edge",
                        response.status().as_u16()
                    ))
                    .await?;
                    return Ok(());
                }
                Ok(response) => format!("HTTP {}", response.status().as_u16()),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(Failure::Runtime(RuntimeError::Other(format!(
                    "Health check failed: {host} did not answer through the edge within {} s (last: {last})",
                    timeout.as_secs()
                )))
                .into());
            }
            tokio::time::sleep(PROBE_EVERY).await;
        }
    }

    /// Clones the app's branch and builds its image; answers the image's tag.
    async fn clone_and_build(
        &mut self,
        run: &mut Run,
        app: &crate::db::AppRecord,
    ) -> Result<String, Stop> {
        let cx = self.cx;
        let id = run.id();
        // The claim moved the deployment to `cloning`. The checkout is removed by
        // `run_deployment` on every way out.
        let workdir = checkout_dir(&cx.settings, id);
        remove_dir(&workdir).await;
        tokio::fs::create_dir_all(&cx.settings.work_dir).await?;
        run.say(format!("Cloning {} (branch {})", app.repo_url, app.branch))
            .await?;
        let (tx, rx) = mpsc::channel(OUTPUT_BUFFER);
        let repo = Repo {
            url: &app.repo_url,
            branch: &app.branch,
            credentials: app.credentials.as_ref(),
        };
        let fetch = cx.source.fetch(repo, &workdir, tx);
        let (checkout, pumped) = tokio::join!(fetch, pump(run, rx, false));
        pumped?;
        let clone_failure = |e| match e {
            SourceError::CloneFailed(reason) => Failure::Clone {
                url: app.repo_url.clone(),
                reason,
            },
            other => Failure::Source(other),
        };
        let mut checkout = checkout.map_err(clone_failure)?;
        // A deployment of one commit (a webhook's push): exactly that one, even if the
        // branch has moved on since.
        if let Some(wanted) = run.deployment().commit.clone()
            && checkout.commit != wanted
        {
            run.say(format!("Fetching commit {wanted}")).await?;
            checkout.commit = cx
                .source
                .checkout(&workdir, &wanted)
                .await
                .map_err(clone_failure)?;
        }
        run.record(Artifacts {
            commit: Some(&checkout.commit),
            ..Artifacts::default()
        })
        .await?;
        run.say(format!("Checked out commit {}", checkout.commit))
            .await?;

        run.enter(Status::Building).await?;
        let dockerfile = workdir.join(&app.dockerfile);
        if !tokio::fs::metadata(&dockerfile)
            .await
            .map(|m| m.is_file())
            .unwrap_or(false)
        {
            return Err(Failure::NoDockerfile {
                path: app.dockerfile.clone(),
                commit: short(&checkout.commit).to_owned(),
            }
            .into());
        }
        let tag = image_tag(&app.name, id, &cx.settings.instance);
        run.say(format!("Building image {tag} from {}", app.dockerfile))
            .await?;
        let (tx, rx) = mpsc::channel(OUTPUT_BUFFER);
        let request = BuildRequest {
            context: stream_tar(workdir.clone()).await?,
            dockerfile: app.dockerfile.clone(),
            tag: tag.clone(),
            labels: labels(app.id, Some(id), &cx.settings.instance),
        };
        let build = cx.runtime.build(request, tx);
        let (image, pumped) = tokio::join!(build, pump(run, rx, true));
        // Docker has read the context: the checkout is not needed for deploying.
        remove_dir(&workdir).await;
        pumped?;
        let image = image?;
        run.record(Artifacts {
            image: Some(&tag),
            ..Artifacts::default()
        })
        .await?;
        run.say(format!("Built image {tag} ({})", short(&image)))
            .await?;
        Ok(tag)
    }

    async fn health_check(
        &self,
        run: &Run,
        container: &str,
        host_port: Option<u16>,
    ) -> Result<(), Stop> {
        let runtime = &self.cx.runtime;
        let timeout = self.cx.settings.health_timeout;
        let deadline = Instant::now() + timeout;
        let Some(port) = host_port else {
            let settle = runtime.settle_time();
            run.say(format!(
                "No port configured: checking that the container stays up for {} s",
                settle.as_secs()
            ))
            .await?;
            tokio::time::sleep(settle).await;
            return match runtime.state(container).await? {
                ContainerState::Running => Ok(run.say("Container is running").await?),
                other => Err(self.died(container, other).await.into()),
            };
        };
        run.say(format!(
            "Health check: waiting for an HTTP answer below 500 on 127.0.0.1:{port}"
        ))
        .await?;
        let url = format!("http://127.0.0.1:{port}/");
        loop {
            match runtime.state(container).await? {
                ContainerState::Running => {}
                other => return Err(self.died(container, other).await.into()),
            }
            let last = match self.probe(&url).await {
                Ok(code) if code < 500 => {
                    run.say(format!(
                        "Health check passed: HTTP {code} from 127.0.0.1:{port}"
                    ))
                    .await?;
                    return Ok(());
                }
                Ok(code) => format!("HTTP {code}"),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                let tail = runtime
                    .tail(container, TAIL_LINES)
                    .await
                    .unwrap_or_default();
                return Err(Failure::Unhealthy {
                    port,
                    timeout,
                    last,
                    tail: tail.trim_end().to_owned(),
                }
                .into());
            }
            tokio::time::sleep(PROBE_EVERY).await;
        }
    }

    /// One health probe: the status code of a GET, or why there was none.
    async fn probe(&self, url: &str) -> Result<u16, String> {
        let response = self
            .cx
            .http
            .get(url)
            .timeout(PROBE_TIMEOUT)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    format!("no answer within {} s", PROBE_TIMEOUT.as_secs())
                } else if e.is_connect() {
                    "connection refused".to_owned()
                } else {
                    "the connection closed without an HTTP answer".to_owned()
                }
            })?;
        Ok(response.status().as_u16())
    }

    async fn died(&self, container: &str, state: ContainerState) -> Failure {
        let tail = self
            .cx
            .runtime
            .tail(container, TAIL_LINES)
            .await
            .unwrap_or_default();
        let how = match state {
            ContainerState::Exited { code } => format!("exited with code {code}"),
            _ => "disappeared".to_owned(),
        };
        Failure::Died {
            how,
            tail: tail.trim_end().to_owned(),
        }
    }
}

/// Removes the images of an app's ended deployments but those of its last
/// `KEPT_IMAGES` successes (kept for rollbacks); a removed image can no longer be started.
async fn prune_images(cx: &WorkerContext, app: protocol::AppId) -> Result<(), EngineError> {
    let history = cx.lifecycle.history(app).await?;
    let kept = crate::kept_images(&history);
    for deployment in history.iter().filter(|d| d.status.is_terminal()) {
        if let Some(image) = &deployment.image
            && !kept.contains(image)
        {
            if let Err(e) = cx.runtime.remove_image(image).await {
                tracing::warn!(deployment.id = deployment.id, error = %e, "could not remove an old image");
                continue;
            }
            cx.lifecycle.forget_image(deployment.id).await?;
        }
    }
    Ok(())
}

/// The progress a Dockerfile's `Step k/n` line means: from 50 towards 80.
fn step_progress(line: &str) -> Option<u8> {
    let rest = line.strip_prefix("Step ")?;
    let (k, rest) = rest.split_once('/')?;
    let n = rest.split(|c: char| !c.is_ascii_digit()).next()?;
    let (k, n): (u32, u32) = (k.parse().ok()?, n.parse().ok()?);
    if k == 0 || n == 0 || k > n {
        return None;
    }
    let base = u32::from(Status::Building.progress());
    let span = u32::from(Status::Deploying.progress()) - base;
    Some((base + span * (k - 1) / n) as u8)
}

/// Moves output from a producer (git, the Docker build) into the log as it arrives.
/// When the log cannot be written (a full disk), the rest is drained unwritten so the
/// producer never blocks, and the first error is returned. When the log reaches its limit,
/// the pump stops at once: the producer's next send fails, which stops a Docker build.
async fn pump(
    run: &mut Run,
    mut rx: mpsc::Receiver<String>,
    track_steps: bool,
) -> Result<(), Stop> {
    let mut splitter = LineSplitter::default();
    let mut failed = None;
    while let Some(chunk) = rx.recv().await {
        if failed.is_some() {
            continue;
        }
        let mut lines = splitter.push(chunk.as_bytes());
        // Whatever else is already waiting goes into the same append: one write and one
        // publish for a burst instead of one per chunk.
        while lines.len() < MAX_BATCH_LINES {
            match rx.try_recv() {
                Ok(chunk) => lines.extend(splitter.push(chunk.as_bytes())),
                Err(_) => break,
            }
        }
        let progress = if track_steps {
            lines.iter().filter_map(|l| step_progress(l)).max()
        } else {
            None
        };
        match run.write(lines).await {
            Ok(()) => {}
            Err(end @ (WriteError::LimitReached(_) | WriteError::ClaimLost(_))) => {
                return Err(end.into());
            }
            Err(e) => {
                failed = Some(Stop::from(e));
                continue;
            }
        }
        if let Some(p) = progress
            && let Err(e) = run.progress(p).await
        {
            failed = Some(e.into());
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(run.write(splitter.finish()).await?),
    }
}

/// Names carry the installation id: deployment ids restart with each database.
fn image_tag(app: &str, deployment: DeploymentId, instance: &str) -> String {
    format!("slipway/{app}:{deployment}-{instance}")
}

fn container_name(app: &str, deployment: DeploymentId, instance: &str) -> String {
    format!("slipway-{app}-{deployment}-{instance}")
}

/// The app's own network: its containers join no other, so apps cannot reach each other.
pub(crate) fn network_name(app: &str, instance: &str) -> String {
    format!("slipway-{app}-{instance}")
}

fn labels(app: i64, deployment: Option<DeploymentId>, instance: &str) -> HashMap<String, String> {
    let mut labels = HashMap::from([
        ("slipway.managed".to_owned(), "true".to_owned()),
        ("slipway.instance".to_owned(), instance.to_owned()),
        ("slipway.app".to_owned(), app.to_string()),
    ]);
    if let Some(deployment) = deployment {
        labels.insert("slipway.deployment".to_owned(), deployment.to_string());
    }
    labels
}

/// `http://127.0.0.1:PORT` (a serving container's loopback address) as a socket address.
fn upstream_of(url: Option<&str>) -> Option<std::net::SocketAddr> {
    let url = url::Url::parse(url?).ok()?;
    let host: std::net::IpAddr = url.host_str()?.parse().ok()?;
    Some(std::net::SocketAddr::new(host, url.port()?))
}

fn short(id: &str) -> &str {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    &id[..id.len().min(12)]
}

async fn remove_dir(dir: &Path) {
    match tokio::fs::remove_dir_all(dir).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            tracing::warn!(dir = %dir.display(), error = %e, "could not remove a work directory")
        }
        _ => {}
    }
}

/// Where deployment `id`'s checkout lives while it is built.
fn checkout_dir(settings: &Settings, id: DeploymentId) -> PathBuf {
    settings.work_dir.join(id.to_string())
}

/// Pieces of the build context in flight between the tar writer and Docker: with
/// [`TAR_CHUNK`] bytes each, the context never takes more than about 1 MiB of memory,
/// however large the checkout.
const TAR_CHUNKS: usize = 16;
const TAR_CHUNK: usize = 64 * 1024;

/// The build context: the checkout without `.git`, as a tar archive written on the
/// blocking pool while Docker reads it. When the reader goes away (the build failed or
/// was cancelled), the writer stops at its next piece.
async fn stream_tar(dir: PathBuf) -> Result<BuildContext, Failure> {
    let git = dir.join(".git");
    if tokio::fs::try_exists(&git).await.unwrap_or(false) {
        tokio::fs::remove_dir_all(&git)
            .await
            .map_err(|e| Failure::Context(e.to_string()))?;
    }
    let (tx, rx) = mpsc::channel(TAR_CHUNKS);
    tokio::task::spawn_blocking(move || {
        let mut writer = ChunkWriter {
            tx,
            buf: Vec::with_capacity(TAR_CHUNK),
        };
        let written = (|| {
            let mut builder = tar::Builder::new(&mut writer);
            builder.follow_symlinks(false);
            // Docker's tar reader refuses GNU sparse entries ("unhandled tar header type
            // 83"), and git checks out runs of zeros as holes: write every byte.
            builder.sparse(false);
            builder.append_dir_all(".", &dir)?;
            builder.finish()
        })();
        match written.and_then(|()| writer.flush_chunk()) {
            Ok(()) => {}
            // The reader is gone: nobody is left to tell.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            Err(e) => {
                let _ = writer.tx.blocking_send(Err(e));
            }
        }
    });
    Ok(BuildContext::new(rx))
}

/// A `Write` that sends what it is given to a channel in pieces of [`TAR_CHUNK`] bytes,
/// waiting (on the blocking pool) while the channel is full.
struct ChunkWriter {
    tx: mpsc::Sender<std::io::Result<bytes::Bytes>>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    fn flush_chunk(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(TAR_CHUNK));
        self.tx
            .blocking_send(Ok(chunk.into()))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(TAR_CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == TAR_CHUNK {
            self.flush_chunk()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// At start: deployments a previous run left mid-flight end `failed` with a reason and
/// a last log line, and their half-made containers are removed. Pending ones stay
/// queued; the workers take them.
pub(crate) async fn reconcile(cx: &WorkerContext) -> Result<(), EngineError> {
    let instance = &cx.settings.instance;
    for record in cx.lifecycle.interrupted().await? {
        let id = record.api.id;
        let stage = record.api.status;
        // Its half-made container and image, found by their names even if the crash came
        // before they were recorded; never the app's serving container.
        let app = cx.lifecycle.app(record.api.app_id).await?;
        if let Some(swarm) = cx.runtime.swarm()
            && stage == Status::Deploying
        {
            // Its service update may have gone on without us: back to what served.
            let service = swarm.service_name(&app.name);
            let undone = if app.container_id.as_deref() == Some(service.as_str()) {
                swarm.roll_back(&service).await
            } else {
                cx.runtime.remove(&service).await
            };
            if let Err(e) = undone {
                tracing::warn!(deployment.id = id, error = %e, "could not undo an interrupted service update");
            }
        }
        let container = record
            .container_id
            .clone()
            .unwrap_or_else(|| container_name(&app.name, id, instance));
        if app.container_id.as_deref() != Some(container.as_str())
            && let Err(e) = cx.runtime.remove(&container).await
        {
            tracing::warn!(deployment.id = id, error = %e, "could not remove an interrupted container");
        }
        if let Err(e) = cx
            .runtime
            .remove_image(&image_tag(&app.name, id, instance))
            .await
        {
            tracing::warn!(deployment.id = id, error = %e, "could not remove an interrupted image");
        }
        let reason = format!("interrupted: the server restarted during {stage}");
        cx.lifecycle.fail_interrupted(&record, reason).await?;
        tracing::warn!(deployment.id = id, %stage, "deployment interrupted by a restart marked failed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::step_progress;

    #[test]
    fn steps_move_progress_from_50_towards_80() {
        assert_eq!(step_progress("Step 1/5 : FROM scratch\n"), Some(50));
        assert_eq!(step_progress("Step 3/5 : RUN x\n"), Some(62));
        assert_eq!(step_progress("Step 5/5 : CMD x\n"), Some(74));
        assert_eq!(step_progress("Step 6/5 : CMD x\n"), None);
        assert_eq!(step_progress("Stepping\n"), None);
    }
}
