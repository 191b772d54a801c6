//! The queue workers and the deployment pipeline: clone, build, deploy, health check.
//!
//! Workers sleep on a `Notify` and claim durable rows; nothing polls on a timer. Each
//! deployment writes its own lines (what it clones, the commit, the image, the container,
//! the health check) into the same log as the build output.

use crate::bus::{DeploymentStream, Lookup};
use crate::db::{self, Change, DeploymentRecord};
use crate::git::SourceError;
use crate::logstore::{LineSplitter, LogWriter};
use crate::runtime::{BuildRequest, ContainerSpec, ContainerState, RuntimeError};
use crate::{Engine, EngineError};
use protocol::{DeploymentId, Status};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

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
/// Without a port, a container counts as up once it has run this long.
const SETTLE_TIME: Duration = Duration::from_secs(3);
/// Container output shown when a container dies or never answers.
const TAIL_LINES: usize = 20;

/// One worker: claim the next deployment, run it, repeat; sleep until woken.
pub async fn run(engine: Engine, n: usize) {
    let inner = &engine.inner;
    tracing::debug!(worker = n, "worker started");
    let mut waiting_for_engine = false;
    loop {
        // Register for wake-ups before looking, so a deployment queued meanwhile is seen.
        let notified = inner.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if inner.shutdown.is_cancelled() {
            break;
        }
        // Claim nothing while the engine is away: deployments wait instead of failing.
        if let Err(e) = inner.runtime.ping().await {
            if !waiting_for_engine {
                tracing::warn!(worker = n, error = %e, "waiting for the container engine; queued deployments stay pending");
                waiting_for_engine = true;
            }
            tokio::select! {
                _ = tokio::time::sleep(ENGINE_RETRY) => continue,
                _ = inner.shutdown.cancelled() => break,
            }
        }
        if waiting_for_engine {
            tracing::info!(worker = n, "the container engine answers again");
            waiting_for_engine = false;
        }
        match db::claim_next(&inner.pool).await {
            Ok(Some(record)) => {
                run_deployment(&engine, record).await;
                // Another deployment of the same app may be claimable now.
                inner.wake.notify_waiters();
                continue;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(worker = n, error = %e, "claiming a deployment failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = inner.shutdown.cancelled() => break,
                }
            }
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = inner.shutdown.cancelled() => break,
        }
    }
    tracing::debug!(worker = n, "worker stopped");
}

/// Why a deployment stopped early.
enum Stop {
    Failed(String),
    Cancelled,
    /// The server is shutting down; the next start reconciles the deployment.
    Shutdown,
    /// The database or log store failed: nothing more can be recorded.
    Engine(EngineError),
}

impl From<EngineError> for Stop {
    fn from(e: EngineError) -> Self {
        Stop::Engine(e)
    }
}

impl From<std::io::Error> for Stop {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::StorageFull {
            Stop::Failed(format!(
                "the disk is full: writing the deployment log failed ({e})"
            ))
        } else {
            Stop::Failed(format!("writing the deployment log failed: {e}"))
        }
    }
}

/// Everything one run of the pipeline holds.
struct Run {
    engine: Engine,
    id: DeploymentId,
    status: Status,
    stream: Arc<DeploymentStream>,
    /// Shared with the blocking task that appends: a cancelled pipeline drops its future,
    /// never the writer.
    log: Arc<std::sync::Mutex<LogWriter>>,
    /// A container this run started and has not handed over to the app yet.
    new_container: Option<String>,
    image_tag: Option<String>,
    /// When the deployment last wrote output or changed status, for the progress deadline.
    activity: Arc<Activity>,
}

/// Milliseconds since the run began at its last sign of progress.
struct Activity {
    began: Instant,
    last_ms: std::sync::atomic::AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            began: Instant::now(),
            last_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let now = self.began.elapsed().as_millis() as u64;
        self.last_ms
            .store(now, std::sync::atomic::Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        let last = self.last_ms.load(std::sync::atomic::Ordering::Relaxed);
        self.began
            .elapsed()
            .saturating_sub(Duration::from_millis(last))
    }
}

/// Resolves, with the reason, once the deployment has shown no progress for `deadline`.
async fn stalled(activity: Arc<Activity>, deadline: Duration) -> String {
    loop {
        let idle = activity.idle();
        if idle >= deadline {
            return format!(
                "no progress for {} s: no output and no status change (SLIPWAY_PROGRESS_DEADLINE_SECS)",
                deadline.as_secs()
            );
        }
        tokio::time::sleep(deadline - idle).await;
    }
}

/// Resolves, with the reason, once the container engine has stopped answering.
async fn engine_gone(runtime: Arc<dyn crate::runtime::Runtime>) -> String {
    let mut failures = 0;
    loop {
        tokio::time::sleep(LIVENESS_EVERY).await;
        match runtime.ping().await {
            Ok(()) => failures = 0,
            Err(e) => {
                failures += 1;
                if failures >= LIVENESS_FAILURES {
                    return e.to_string();
                }
            }
        }
    }
}

impl Run {
    /// Appends lines to the log, then publishes them, both on the blocking pool: if this
    /// future is dropped (cancel), the lines are still either stored and published, or
    /// neither.
    async fn write(&mut self, lines: Vec<String>) -> Result<(), Stop> {
        if lines.is_empty() {
            return Ok(());
        }
        let (log, stream) = (self.log.clone(), self.stream.clone());
        tokio::task::spawn_blocking(move || {
            let mut writer = log.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let written = writer.append_blocking(lines)?;
            stream.publish_lines(&written);
            Ok::<_, std::io::Error>(())
        })
        .await
        .map_err(|e| Stop::Failed(format!("writing the deployment log failed: {e}")))??;
        self.activity.touch();
        Ok(())
    }

    /// A line of Slipway's own.
    async fn say(&mut self, text: impl AsRef<str>) -> Result<(), Stop> {
        self.write(vec![format!("[slipway] {}\n", text.as_ref())])
            .await
    }

    async fn enter(&mut self, next: Status) -> Result<(), Stop> {
        self.engine
            .transition(self.id, self.status, next, Change::default())
            .await?;
        self.status = next;
        self.activity.touch();
        Ok(())
    }

    async fn progress(&mut self, progress: u8) -> Result<(), Stop> {
        let record =
            db::set_progress(&self.engine.inner.pool, self.id, self.status, progress).await?;
        self.stream.publish_status(record.api.status_data());
        self.activity.touch();
        Ok(())
    }
}

async fn run_deployment(engine: &Engine, record: DeploymentRecord) {
    let id = record.api.id;
    let inner = &engine.inner;
    let token = inner.shutdown.child_token();
    inner
        .running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id, token.clone());
    tracing::info!(
        deployment.id = id,
        app.id = record.api.app_id,
        "deployment started"
    );
    let started = Instant::now();

    let outcome = match prepare(engine, &record).await {
        Ok(mut run) => {
            let limit = inner.config.build_timeout;
            let activity = run.activity.clone();
            let result = tokio::select! {
                result = tokio::time::timeout(limit, pipeline(&mut run, &record)) => result.unwrap_or_else(|_| {
                    Err(Stop::Failed(format!(
                        "timed out: the deployment ran longer than {} s (SLIPWAY_BUILD_TIMEOUT_SECS)",
                        limit.as_secs()
                    )))
                }),
                reason = stalled(activity, inner.config.progress_deadline) => Err(Stop::Failed(reason)),
                reason = engine_gone(inner.runtime.clone()) => Err(Stop::Failed(reason)),
                _ = token.cancelled() => Err(if inner.shutdown.is_cancelled() { Stop::Shutdown } else { Stop::Cancelled }),
            };
            finish(&mut run, result).await
        }
        // Not even the log could be opened (a full or read-only disk): the deployment
        // still ends, with the reason, rather than stay claimed forever.
        Err(e) => {
            let reason = format!("the deployment log could not be opened: {e}");
            let change = Change {
                error_message: Some(reason),
                failed_stage: Some(record.api.status),
                ..Change::default()
            };
            engine
                .transition(id, record.api.status, Status::Failed, change)
                .await
                .map(|_| Status::Failed)
        }
    };
    inner
        .running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&id);
    let duration_ms = started.elapsed().as_millis() as u64;
    match outcome {
        Ok(status) => tracing::info!(deployment.id = id, %status, duration_ms, "deployment ended"),
        Err(e) => {
            tracing::error!(deployment.id = id, error = %e, duration_ms, "deployment could not be recorded")
        }
    }
}

async fn prepare(engine: &Engine, record: &DeploymentRecord) -> Result<Run, EngineError> {
    let id = record.api.id;
    let log = engine.inner.store.writer(id).await?;
    let stream = match engine
        .inner
        .bus
        .open(record.api.status_data(), log.last_seq())
    {
        Lookup::Live(stream) => stream,
        _ => {
            return Err(EngineError::Internal(format!(
                "deployment {id} ended before it started"
            )));
        }
    };
    // The row is already `cloning` (claimed); tell viewers who saw it pending.
    stream.publish_status(record.api.status_data());
    Ok(Run {
        engine: engine.clone(),
        id,
        status: record.api.status,
        stream,
        log: Arc::new(std::sync::Mutex::new(log)),
        new_container: None,
        image_tag: None,
        activity: Arc::new(Activity::new()),
    })
}

/// Records how the pipeline ended: success was recorded by the pipeline; a failure or
/// a cancellation is logged, cleaned up and committed here.
async fn finish(run: &mut Run, result: Result<(), Stop>) -> Result<Status, EngineError> {
    let (to, reason) = match result {
        Ok(()) => return Ok(Status::Success),
        Err(Stop::Shutdown) => return Ok(run.status),
        Err(Stop::Engine(e)) => return Err(e),
        Err(Stop::Failed(reason)) => (Status::Failed, reason),
        Err(Stop::Cancelled) => (Status::Cancelled, String::new()),
    };
    if let Some(container) = run.new_container.take()
        && let Err(e) = run.engine.inner.runtime.remove(&container).await
    {
        tracing::warn!(deployment.id = run.id, error = %e, "could not remove the new container");
    }
    let line = match to {
        Status::Cancelled => format!("Deployment cancelled during {}", run.status),
        _ => format!("Deployment failed during {}: {reason}", run.status),
    };
    if let Err(Stop::Failed(e) | Stop::Engine(EngineError::Internal(e))) = run.say(&line).await {
        tracing::warn!(deployment.id = run.id, error = %e, "could not log the end of the deployment");
    }
    let change = match to {
        Status::Failed => Change {
            error_message: Some(reason),
            failed_stage: Some(run.status),
            ..Change::default()
        },
        _ => Change::default(),
    };
    run.engine
        .transition(run.id, run.status, to, change)
        .await?;
    Ok(to)
}

async fn pipeline(run: &mut Run, record: &DeploymentRecord) -> Result<(), Stop> {
    let inner = run.engine.inner.clone();
    let app = db::app(&inner.pool, record.api.app_id).await?;

    // A redeploy arrives with the image of an earlier deployment: no clone, no build.
    let tag = match record.api.image.clone() {
        Some(tag) => {
            let commit = record
                .api
                .commit
                .as_deref()
                .map(|c| format!(" (commit {})", &c[..c.len().min(12)]))
                .unwrap_or_default();
            run.say(format!(
                "Redeploying image {tag}{commit}: no clone, no build"
            ))
            .await?;
            run.enter(Status::Building).await?;
            tag
        }
        None => clone_and_build(run, &app).await?,
    };

    // Deploying.
    run.enter(Status::Deploying).await?;
    let name = container_name(&app.name, run.id, &inner.instance);
    run.say(format!("Starting container {name}")).await?;
    let started = inner
        .runtime
        .start(ContainerSpec {
            name,
            image: tag,
            env: app.env.clone(),
            port: app.port,
            labels: labels(app.id, run.id),
        })
        .await
        .map_err(runtime_failure)?;
    run.new_container = Some(started.id.clone());
    let url = started.host_port.map(|p| format!("http://127.0.0.1:{p}"));
    db::record_artifacts(
        &inner.pool,
        run.id,
        None,
        None,
        Some(&started.id),
        url.as_deref(),
    )
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
    health_check(run, &started.id, started.host_port).await?;

    // Hand over: the new container serves; only now stop the previous one.
    let previous = db::app(&inner.pool, app.id).await?.container_id;
    if let Some(previous) = previous.filter(|p| *p != started.id) {
        match inner.runtime.remove(&previous).await {
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
    db::set_app_container(&inner.pool, app.id, &started.id, url.as_deref()).await?;
    run.new_container = None;
    run.say(match &url {
        Some(url) => format!("Deployment successful: {url}"),
        None => "Deployment successful".to_owned(),
    })
    .await?;
    run.enter(Status::Success).await
}

/// Clones the app's branch and builds its image; answers the image's tag.
async fn clone_and_build(run: &mut Run, app: &db::AppRecord) -> Result<String, Stop> {
    let inner = run.engine.inner.clone();
    // Cloning.
    let workdir = inner.config.data_dir.join("work").join(run.id.to_string());
    remove_dir(&workdir).await;
    if let Some(parent) = workdir.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    run.say(format!("Cloning {} (branch {})", app.repo_url, app.branch))
        .await?;
    let (tx, rx) = mpsc::channel(OUTPUT_BUFFER);
    let fetch = inner.source.fetch(&app.repo_url, &app.branch, &workdir, tx);
    let (checkout, pumped) = tokio::join!(fetch, pump(run, rx, false));
    pumped?;
    let checkout = checkout.map_err(|e| match e {
        SourceError::CloneFailed(reason) => {
            Stop::Failed(format!("Cloning {} failed: {reason}", app.repo_url))
        }
        other => Stop::Failed(other.to_string()),
    })?;
    db::record_artifacts(
        &inner.pool,
        run.id,
        Some(&checkout.commit),
        None,
        None,
        None,
    )
    .await?;
    run.say(format!("Checked out commit {}", checkout.commit))
        .await?;

    // Building.
    run.enter(Status::Building).await?;
    let dockerfile = workdir.join(&app.dockerfile);
    if !tokio::fs::metadata(&dockerfile)
        .await
        .map(|m| m.is_file())
        .unwrap_or(false)
    {
        remove_dir(&workdir).await;
        return Err(Stop::Failed(format!(
            "Dockerfile {:?} not found in the repository at commit {}",
            app.dockerfile,
            &checkout.commit[..12]
        )));
    }
    let tag = image_tag(&app.name, run.id, &inner.instance);
    run.image_tag = Some(tag.clone());
    run.say(format!("Building image {tag} from {}", app.dockerfile))
        .await?;
    let context_tar = tar_directory(workdir.clone()).await?;
    remove_dir(&workdir).await;
    let (tx, rx) = mpsc::channel(OUTPUT_BUFFER);
    let request = BuildRequest {
        context_tar,
        dockerfile: app.dockerfile.clone(),
        tag: tag.clone(),
        labels: labels(app.id, run.id),
    };
    let build = inner.runtime.build(request, tx);
    let (image, pumped) = tokio::join!(build, pump(run, rx, true));
    pumped?;
    let image = image.map_err(runtime_failure)?;
    db::record_artifacts(&inner.pool, run.id, None, Some(&tag), None, None).await?;
    run.say(format!("Built image {tag} ({})", short(&image)))
        .await?;
    Ok(tag)
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
/// producer never blocks, and the first error is returned.
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
        if let Err(e) = run.write(lines).await {
            failed = Some(e);
            continue;
        }
        if let Some(p) = progress
            && let Err(e) = run.progress(p).await
        {
            failed = Some(e);
        }
    }
    match failed {
        Some(e) => Err(e),
        None => run.write(splitter.finish()).await,
    }
}

fn runtime_failure(e: RuntimeError) -> Stop {
    Stop::Failed(e.to_string())
}

async fn health_check(run: &mut Run, container: &str, host_port: Option<u16>) -> Result<(), Stop> {
    let runtime = run.engine.inner.runtime.clone();
    let timeout = run.engine.inner.config.health_timeout;
    let deadline = Instant::now() + timeout;
    let Some(port) = host_port else {
        run.say(format!(
            "No port configured: checking that the container stays up for {} s",
            SETTLE_TIME.as_secs()
        ))
        .await?;
        tokio::time::sleep(SETTLE_TIME).await;
        return match runtime.state(container).await.map_err(runtime_failure)? {
            ContainerState::Running => run.say("Container is running").await,
            other => Err(died(run, container, other).await),
        };
    };
    run.say(format!(
        "Health check: waiting for an HTTP answer below 500 on 127.0.0.1:{port}"
    ))
    .await?;
    let mut last;
    loop {
        match runtime.state(container).await.map_err(runtime_failure)? {
            ContainerState::Running => {}
            other => return Err(died(run, container, other).await),
        }
        match http_status(port).await {
            Ok(code) if code < 500 => {
                return run
                    .say(format!(
                        "Health check passed: HTTP {code} from 127.0.0.1:{port}"
                    ))
                    .await;
            }
            Ok(code) => last = format!("HTTP {code}"),
            Err(e) => last = e,
        }
        if Instant::now() >= deadline {
            let tail = runtime
                .tail(container, TAIL_LINES)
                .await
                .unwrap_or_default();
            return Err(Stop::Failed(format!(
                "Health check failed: the container did not answer on port {port} within {} s (last: {last}). Its last output:\n{}",
                timeout.as_secs(),
                tail.trim_end()
            )));
        }
        // Between probes of a starting container; not a viewer-facing poll.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn died(run: &Run, container: &str, state: ContainerState) -> Stop {
    let tail = run
        .engine
        .inner
        .runtime
        .tail(container, TAIL_LINES)
        .await
        .unwrap_or_default();
    let how = match state {
        ContainerState::Exited { code } => format!("exited with code {code}"),
        _ => "disappeared".to_owned(),
    };
    Stop::Failed(format!(
        "The container {how} before it was healthy. Its last output:\n{}",
        tail.trim_end()
    ))
}

/// One HTTP/1.0 request to 127.0.0.1:port; the status code of the answer.
async fn http_status(port: u16) -> Result<u16, String> {
    let attempt = async {
        let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| e.to_string())?;
        socket
            .write_all(
                b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\nUser-Agent: slipway-health-check\r\n\r\n",
            )
            .await
            .map_err(|e| e.to_string())?;
        let mut head = Vec::with_capacity(64);
        let mut buf = [0u8; 64];
        while !head.contains(&b'\n') && head.len() < 1024 {
            let n = socket.read(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&head);
        let code = text
            .strip_prefix("HTTP/")
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|code| code.parse::<u16>().ok());
        code.ok_or_else(|| "the connection closed without an HTTP answer".to_owned())
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .unwrap_or_else(|_| Err("no answer within 2 s".to_owned()))
}

/// Names carry the installation id: deployment ids restart with each database.
fn image_tag(app: &str, deployment: DeploymentId, instance: &str) -> String {
    format!("slipway/{app}:{deployment}-{instance}")
}

fn container_name(app: &str, deployment: DeploymentId, instance: &str) -> String {
    format!("slipway-{app}-{deployment}-{instance}")
}

fn labels(app: i64, deployment: DeploymentId) -> HashMap<String, String> {
    HashMap::from([
        ("slipway.managed".to_owned(), "true".to_owned()),
        ("slipway.app".to_owned(), app.to_string()),
        ("slipway.deployment".to_owned(), deployment.to_string()),
    ])
}

fn short(id: &str) -> &str {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    &id[..id.len().min(12)]
}

async fn remove_dir(dir: &PathBuf) {
    match tokio::fs::remove_dir_all(dir).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            tracing::warn!(dir = %dir.display(), error = %e, "could not remove a work directory")
        }
        _ => {}
    }
}

/// The build context: the checkout without `.git`, as a tar archive.
async fn tar_directory(dir: PathBuf) -> Result<Vec<u8>, Stop> {
    tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
        let git = dir.join(".git");
        if git.exists() {
            std::fs::remove_dir_all(&git)?;
        }
        let mut builder = tar::Builder::new(Vec::new());
        builder.follow_symlinks(false);
        builder.append_dir_all(".", &dir)?;
        builder.into_inner()
    })
    .await
    .map_err(|e| Stop::Failed(format!("packing the build context failed: {e}")))?
    .map_err(|e| Stop::Failed(format!("packing the build context failed: {e}")))
}

/// At start: deployments a previous run left mid-flight end `failed` with a reason and
/// a last log line, and their half-made containers are removed. Pending ones stay
/// queued; the workers take them.
pub(crate) async fn reconcile(engine: &Engine) -> Result<(), EngineError> {
    let inner = &engine.inner;
    let stuck = db::deployments_in(
        &inner.pool,
        &[Status::Cloning, Status::Building, Status::Deploying],
    )
    .await?;
    for record in stuck {
        let id = record.api.id;
        let stage = record.api.status;
        let reason = format!("interrupted: the server restarted during {stage}");
        let writer = inner.store.writer(id).await?;
        let (_, written) = writer.append(vec![format!("[slipway] {reason}\n")]).await;
        written?;
        // Its half-made container and image, found by their names even if the crash came
        // before they were recorded; never the app's serving container.
        let app = db::app(&inner.pool, record.api.app_id).await?;
        let container = record
            .container_id
            .clone()
            .unwrap_or_else(|| container_name(&app.name, id, &inner.instance));
        if app.container_id.as_deref() != Some(container.as_str())
            && let Err(e) = inner.runtime.remove(&container).await
        {
            tracing::warn!(deployment.id = id, error = %e, "could not remove an interrupted container");
        }
        if let Err(e) = inner
            .runtime
            .remove_image(&image_tag(&app.name, id, &inner.instance))
            .await
        {
            tracing::warn!(deployment.id = id, error = %e, "could not remove an interrupted image");
        }
        let change = Change {
            error_message: Some(reason),
            failed_stage: Some(stage),
            ..Change::default()
        };
        engine.transition(id, stage, Status::Failed, change).await?;
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
