//! The engine driven by a fake runtime: deterministic, fast, no Docker. Git is real
//! (local repositories). Waits are on events, with timeouts, never on sleeps.
#![allow(clippy::unwrap_used)]

use engine::runtime::{
    BuildRequest, ContainerSpec, ContainerState, Runtime, RuntimeError, StartedContainer,
};
use engine::{Config, Engine, Outgoing};
use futures_util::future::BoxFuture;
use protocol::{Event, NewApp, Status};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, mpsc};

/// Prints `lines` build lines (as `Step k/n` plus output), then succeeds; or blocks
/// until released when `block` is set.
struct FakeRuntime {
    lines: usize,
    block: bool,
    building: Arc<Notify>,
    removed: Arc<AtomicBool>,
    images_removed: Arc<std::sync::Mutex<Vec<String>>>,
}

impl FakeRuntime {
    fn new(lines: usize, block: bool) -> Self {
        FakeRuntime {
            lines,
            block,
            building: Arc::new(Notify::new()),
            removed: Arc::new(AtomicBool::new(false)),
            images_removed: Arc::default(),
        }
    }
}

impl Runtime for FakeRuntime {
    fn build(
        &self,
        _request: BuildRequest,
        output: mpsc::Sender<String>,
    ) -> BoxFuture<'_, Result<String, RuntimeError>> {
        Box::pin(async move {
            output.send("Step 1/2 : FROM scratch\n".into()).await.ok();
            self.building.notify_one();
            if self.block {
                std::future::pending::<()>().await;
            }
            for n in 1..=self.lines {
                output.send(format!("output line {n}\n")).await.ok();
            }
            output.send("Step 2/2 : CMD x\n".into()).await.ok();
            Ok("sha256:0123456789abcdef".into())
        })
    }
    fn start(&self, _spec: ContainerSpec) -> BoxFuture<'_, Result<StartedContainer, RuntimeError>> {
        Box::pin(async {
            Ok(StartedContainer {
                id: "fake-container".into(),
                host_port: None,
            })
        })
    }
    fn state<'a>(&'a self, _c: &'a str) -> BoxFuture<'a, Result<ContainerState, RuntimeError>> {
        Box::pin(async { Ok(ContainerState::Running) })
    }
    fn tail<'a>(&'a self, _c: &'a str, _n: usize) -> BoxFuture<'a, Result<String, RuntimeError>> {
        Box::pin(async { Ok(String::new()) })
    }
    fn remove<'a>(&'a self, _c: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        self.removed.store(true, Ordering::SeqCst);
        Box::pin(async { Ok(()) })
    }
    fn remove_image<'a>(&'a self, image: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        self.images_removed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(image.to_owned());
        Box::pin(async { Ok(()) })
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "slipway-engine-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn repo(dir: &Path) -> PathBuf {
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(repo.join("Dockerfile"), "FROM scratch\n").unwrap();
    git(
        &repo,
        &[
            &["init", "-q", "-b", "main"],
            &["add", "."],
            &["commit", "-q", "-m", "x"],
        ],
    );
    repo
}

/// Runs git commands in `repo`, each of which must succeed.
fn git(repo: &Path, commands: &[&[&str]]) {
    for args in commands {
        let ok = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t.invalid"])
            .args(*args)
            .current_dir(repo)
            .status()
            .unwrap()
            .success();
        assert!(ok, "git {args:?}");
    }
}

async fn start(dir: &Path, runtime: Arc<dyn Runtime>, workers: usize) -> Engine {
    start_with(dir, runtime, workers, &[]).await
}

/// An engine whose configuration also holds `vars`.
async fn start_with(
    dir: &Path,
    runtime: Arc<dyn Runtime>,
    workers: usize,
    vars: &[(&str, &str)],
) -> Engine {
    let data = dir.join("data");
    let workers = workers.to_string();
    let config = Config::from_lookup(|var| {
        if let Some((_, value)) = vars.iter().find(|(name, _)| *name == var) {
            return Some((*value).to_owned());
        }
        match var {
            "SLIPWAY_DATA_DIR" => Some(data.display().to_string()),
            "SLIPWAY_ALLOW_LOCAL_REPOS" => Some("1".into()),
            "SLIPWAY_WORKERS" => Some(workers.clone()),
            _ => None,
        }
    })
    .unwrap();
    let source = engine::git::GitCli::from_config(&config);
    Engine::start(config, runtime, Arc::new(source))
        .await
        .unwrap()
}

async fn new_app(engine: &Engine, dir: &Path) -> i64 {
    engine
        .create_app(NewApp {
            name: "fake".into(),
            repo_url: repo(dir).display().to_string(),
            ..NewApp::default()
        })
        .await
        .unwrap()
        .id
}

/// Reads a watcher to its end, optionally pausing to fall behind.
async fn drain(mut watcher: engine::Watcher, pause_every: Option<usize>) -> Vec<Event> {
    let mut events = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Outgoing { json, terminal }) = watcher.next().await {
            events.push(serde_json::from_str::<Event>(&json).unwrap());
            if let Some(every) = pause_every
                && events.len() % every == 0
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if terminal {
                break;
            }
        }
    })
    .await
    .expect("the stream ends");
    events
}

fn statuses(events: &[Event]) -> Vec<Status> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Status { data, .. } => Some(data.status),
            _ => None,
        })
        .collect()
}

/// What a viewer saw of the deployment's state, checked against the lifecycle's rules
/// and against the database at the end: every change that was committed was published.
async fn assert_every_change_was_published(engine: &Engine, id: i64, events: &[Event]) {
    let states: Vec<protocol::StatusData> = events
        .iter()
        .filter_map(|e| match e {
            Event::Status { data, .. } => Some(data.clone()),
            _ => None,
        })
        .collect();
    for pair in states.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let moved = a.status.can_transition_to(b.status);
        let rose = a.status == b.status && (b.progress > a.progress || b.status.is_terminal());
        assert!(moved || rose, "{:?} -> {:?}", a, b);
    }
    let stored = engine.deployment(id).await.unwrap().status_data();
    let last = states.last().expect("a status event");
    assert_eq!(last, &stored, "the last event is the committed state");
}

fn seqs(events: &[Event]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Log { data, .. } => Some(data.seq),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_work_runs_to_success_with_ordered_events() {
    let dir = temp_dir("success");
    let engine = start(&dir, Arc::new(FakeRuntime::new(50, false)), 1).await;
    let app = new_app(&engine, &dir).await;
    let deployment = engine.deploy(app).await.unwrap();
    let events = drain(engine.watch(deployment.id, 0).await.unwrap(), None).await;

    let statuses: Vec<Status> = events
        .iter()
        .filter_map(|e| match e {
            Event::Status { data, .. } => Some(data.status),
            _ => None,
        })
        .collect();
    let mut stages = statuses.clone();
    stages.dedup();
    // The first status is the current one: pending, or cloning if a worker was quicker.
    if stages.first() == Some(&Status::Pending) {
        stages.remove(0);
    }
    assert_eq!(
        stages,
        vec![
            Status::Cloning,
            Status::Building,
            Status::Deploying,
            Status::Success
        ]
    );
    let seqs = seqs(&events);
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert!(seqs.len() > 50);
    assert_every_change_was_published(&engine, deployment.id, &events).await;
    let done = engine.deployment(deployment.id).await.unwrap();
    assert_eq!(done.status, Status::Success);
    assert_eq!(done.progress, 100);
    assert!(done.commit.is_some() && done.duration.is_some());
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_concurrent_viewers_get_every_line_in_order() {
    let dir = temp_dir("slow");
    // Far more lines than the live channel holds: a slow viewer must lag and catch up.
    let engine = start(&dir, Arc::new(FakeRuntime::new(20_000, false)), 1).await;
    let app = new_app(&engine, &dir).await;
    let deployment = engine.deploy(app).await.unwrap();
    let slow = tokio::spawn(drain(
        engine.watch(deployment.id, 0).await.unwrap(),
        Some(2_000),
    ));
    let mut fast = Vec::new();
    for _ in 0..5 {
        fast.push(tokio::spawn(drain(
            engine.watch(deployment.id, 0).await.unwrap(),
            None,
        )));
    }
    let slow = slow.await.unwrap();
    let slow_seqs = seqs(&slow);
    assert!(slow_seqs.len() > 20_000);
    assert_eq!(
        slow_seqs,
        (1..=slow_seqs.len() as u64).collect::<Vec<_>>(),
        "no gaps, no repeats"
    );
    assert!(slow.last().is_some_and(Event::is_terminal));
    let log_of = |events: &[Event]| -> Vec<String> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Log { data, .. } => Some(data.line.clone()),
                _ => None,
            })
            .collect()
    };
    for viewer in fast {
        let events = viewer.await.unwrap();
        assert_eq!(
            log_of(&events),
            log_of(&slow),
            "every viewer gets the identical log"
        );
    }
    // Resume from the middle.
    let resumed = drain(engine.watch(deployment.id, 12_345).await.unwrap(), None).await;
    assert_eq!(seqs(&resumed).first(), Some(&12_346));
    assert_eq!(seqs(&resumed).len(), slow_seqs.len() - 12_345);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_running_build_and_a_finished_one_is_a_conflict() {
    let dir = temp_dir("cancel");
    let runtime = Arc::new(FakeRuntime::new(0, true));
    let building = runtime.building.clone();
    let engine = start(&dir, runtime, 1).await;
    let app = new_app(&engine, &dir).await;
    let deployment = engine.deploy(app).await.unwrap();
    let viewer = tokio::spawn(drain(engine.watch(deployment.id, 0).await.unwrap(), None));
    tokio::time::timeout(Duration::from_secs(30), building.notified())
        .await
        .expect("the build starts");
    let cancelled = engine.cancel(deployment.id).await.unwrap();
    assert_eq!(cancelled.status, Status::Cancelled);
    let events = viewer.await.unwrap();
    assert_every_change_was_published(&engine, deployment.id, &events).await;
    assert!(matches!(
        engine.cancel(deployment.id).await,
        Err(engine::EngineError::Conflict(_))
    ));
    let log = String::from_utf8(engine.log(deployment.id).await.unwrap()).unwrap();
    assert!(
        log.contains("Deployment cancelled during building"),
        "{log}"
    );

    // A pending deployment is cancelled at once.
    let engine2 = engine.clone();
    let second = engine2.deploy(app).await.unwrap();
    let third = engine2.deploy(app).await.unwrap();
    let cancelled = engine.cancel(third.id).await.unwrap();
    assert_eq!(cancelled.status, Status::Cancelled);
    let _ = engine.cancel(second.id).await;
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_ends_interrupted_deployments_with_a_reason() {
    let dir = temp_dir("restart");
    let runtime = Arc::new(FakeRuntime::new(0, true));
    let building = runtime.building.clone();
    let engine = start(&dir, runtime, 1).await;
    let app = new_app(&engine, &dir).await;
    let deployment = engine.deploy(app).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), building.notified())
        .await
        .expect("the build starts");
    engine.shutdown().await;

    let engine = start(&dir, Arc::new(FakeRuntime::new(3, false)), 1).await;
    let after = engine.deployment(deployment.id).await.unwrap();
    assert_eq!(after.status, Status::Failed);
    assert_eq!(after.failed_stage, Some(Status::Building));
    assert_eq!(
        after.error_message,
        "interrupted: the server restarted during building"
    );
    let log = String::from_utf8(engine.log(deployment.id).await.unwrap()).unwrap();
    assert!(
        log.ends_with("[slipway] interrupted: the server restarted during building\n"),
        "{log}"
    );
    // The queue goes on.
    let next = engine.deploy(app).await.unwrap();
    let events = drain(engine.watch(next.id, 0).await.unwrap(), None).await;
    assert!(
        matches!(events.last(), Some(Event::Status { data, .. }) if data.status == Status::Success)
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_that_runs_too_long_fails_with_the_reason() {
    let dir = temp_dir("timeout");
    let engine = start_with(
        &dir,
        Arc::new(FakeRuntime::new(0, true)),
        1,
        &[("SLIPWAY_BUILD_TIMEOUT_SECS", "1")],
    )
    .await;
    let app = new_app(&engine, &dir).await;
    let deployment = engine.deploy(app).await.unwrap();
    let events = drain(engine.watch(deployment.id, 0).await.unwrap(), None).await;
    let Some(Event::Status { data, .. }) = events.last() else {
        panic!("the stream ends with a status: {events:?}");
    };
    assert_eq!(data.status, Status::Failed);
    assert_eq!(data.failed_stage, Some(Status::Building));
    assert!(
        data.error_message.starts_with("timed out"),
        "{}",
        data.error_message
    );
    engine.shutdown().await;
}

/// The last status of a deployment, waiting for the end through a viewer that skips the
/// log (`since` beyond any line).
async fn final_status(engine: &Engine, id: i64) -> protocol::StatusData {
    let events = drain(engine.watch(id, u64::MAX).await.unwrap(), None).await;
    match events.last() {
        Some(Event::Status { data, .. }) => data.clone(),
        other => panic!("the stream ends with a status, not {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_without_progress_fails_at_the_deadline() {
    let dir = temp_dir("deadline");
    let engine = start_with(
        &dir,
        Arc::new(FakeRuntime::new(0, true)),
        1,
        &[("SLIPWAY_PROGRESS_DEADLINE_SECS", "1")],
    )
    .await;
    let app = new_app(&engine, &dir).await;
    let deployment = engine.deploy(app).await.unwrap();
    let data = final_status(&engine, deployment.id).await;
    assert_eq!(data.status, Status::Failed);
    assert_eq!(data.failed_stage, Some(Status::Building));
    assert!(
        data.error_message.starts_with("no progress for 1 s"),
        "{}",
        data.error_message
    );
    engine.shutdown().await;
}

/// The log of the first deployment lives on a "disk" that is always full (`/dev/full`
/// answers every write with ENOSPC): it fails with the reason, and the next one works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_deployment_and_the_next_one_works() {
    let dir = temp_dir("disk-full");
    let engine = start(&dir, Arc::new(FakeRuntime::new(10, false)), 1).await;
    let app = new_app(&engine, &dir).await;
    let logs = dir.join("data").join("logs");
    for file in ["1.log", "1.idx"] {
        std::os::unix::fs::symlink("/dev/full", logs.join(file)).unwrap();
    }
    let first = engine.deploy(app).await.unwrap();
    assert_eq!(first.id, 1);
    let data = final_status(&engine, first.id).await;
    assert_eq!(data.status, Status::Failed);
    assert!(
        data.error_message.contains("No space left on device"),
        "{}",
        data.error_message
    );
    let second = engine.deploy(app).await.unwrap();
    let events = drain(engine.watch(second.id, 0).await.unwrap(), None).await;
    let Some(Event::Status { data, .. }) = events.last() else {
        panic!("{events:?}");
    };
    assert_eq!(data.status, Status::Success, "{}", data.error_message);
    assert_eq!(
        seqs(&events),
        (1..=seqs(&events).len() as u64).collect::<Vec<_>>()
    );
    engine.shutdown().await;
}

/// A clone that outgrows SLIPWAY_CLONE_MAX_MB is stopped with the reason.
#[tokio::test]
async fn a_repository_over_the_size_limit_is_refused() {
    use engine::git::{GitCli, Repo, Source, SourceError};
    let dir = temp_dir("clone-size");
    let repo = repo(&dir);
    // 3 MiB that do not compress.
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let noise: Vec<u8> = (0..3 * 1024 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(repo.join("blob.bin"), noise).unwrap();
    git(&repo, &[&["add", "."], &["commit", "-q", "-m", "big"]]);
    let cli = |max_bytes| GitCli {
        allow_local: true,
        timeout: Duration::from_secs(60),
        max_bytes,
        max_files: 1000,
        path: std::env::var_os("PATH"),
        home: None,
    };
    let url = repo.display().to_string();
    let repo = Repo {
        url: &url,
        branch: "main",
        credentials: None,
    };
    let (tx, _rx) = mpsc::channel(1024);
    let refused = cli(1024 * 1024).fetch(repo, &dir.join("small"), tx).await;
    assert!(
        matches!(refused, Err(SourceError::TooLarge(1))),
        "{:?}",
        refused.err()
    );
    let (tx, _rx) = mpsc::channel(1024);
    let fits = cli(16 * 1024 * 1024)
        .fetch(repo, &dir.join("large"), tx)
        .await;
    assert!(fits.is_ok(), "{:?}", fits.err());
}

/// Another process holds SQLite's write lock for a while: the engine waits and retries
/// (busy timeout) instead of failing, and the deployment runs to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_database_is_waited_for() {
    use sqlx::Connection;
    let dir = temp_dir("busy");
    let engine = start(&dir, Arc::new(FakeRuntime::new(5, false)), 1).await;
    let app = new_app(&engine, &dir).await;
    let url = format!("sqlite://{}/data/slipway.db", dir.display());
    let mut other = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        sqlx::query("COMMIT").execute(&mut other).await.unwrap();
    });
    let deployment = engine.deploy(app).await.expect("waits for the lock");
    release.await.unwrap();
    let data = final_status(&engine, deployment.id).await;
    assert_eq!(data.status, Status::Success, "{}", data.error_message);
    engine.shutdown().await;
}

/// A redeploy starts the image an earlier deployment built: no clone, no build. Only a
/// successful deployment can be redeployed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redeploy_reuses_the_image_without_building() {
    let dir = temp_dir("redeploy");
    let engine = start(&dir, Arc::new(FakeRuntime::new(3, false)), 1).await;
    let app = new_app(&engine, &dir).await;
    let first = engine.deploy(app).await.unwrap();
    assert_eq!(
        final_status(&engine, first.id).await.status,
        Status::Success
    );
    let built = engine.deployment(first.id).await.unwrap();

    let again = engine.redeploy(first.id).await.unwrap();
    assert_eq!(again.image, built.image);
    assert_eq!(again.commit, built.commit);
    let events = drain(engine.watch(again.id, 0).await.unwrap(), None).await;
    let text: String = events
        .iter()
        .filter_map(|e| match e {
            Event::Log { data, .. } => Some(data.line.as_str()),
            _ => None,
        })
        .collect();
    assert!(text.contains("Redeploying image"), "{text}");
    assert!(!text.contains("Cloning"), "{text}");
    // Only the stages that ran: pending (if the viewer came first), deploying, success.
    let mut stages: Vec<Status> = statuses(&events);
    stages.dedup();
    stages.retain(|s| *s != Status::Pending);
    assert_eq!(stages, vec![Status::Deploying, Status::Success]);
    assert_eq!(again.image_from, Some(first.id));
    assert!(!text.contains("Step 1/2"), "{text}");
    let Some(Event::Status { data, .. }) = events.last() else {
        panic!("{events:?}");
    };
    assert_eq!(data.status, Status::Success, "{}", data.error_message);
    assert_every_change_was_published(&engine, again.id, &events).await;

    let pending = engine.deploy(app).await.unwrap();
    let refused = engine.redeploy(pending.id).await;
    assert!(
        matches!(refused, Err(engine::EngineError::Conflict(_))),
        "{refused:?}"
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollbacks_start_kept_images_and_only_five_are_kept() {
    let dir = temp_dir("rollback");
    let runtime = Arc::new(FakeRuntime::new(2, false));
    let removed = runtime.images_removed.clone();
    let engine = start(&dir, runtime, 1).await;
    let app = new_app(&engine, &dir).await;
    // Nothing to go back to yet.
    assert!(matches!(
        engine.rollback(app, None).await,
        Err(engine::EngineError::Conflict(
            engine::Conflict::NothingToRollBackTo(_)
        ))
    ));
    let mut built = Vec::new();
    for _ in 0..7 {
        let d = engine.deploy(app).await.unwrap();
        assert_eq!(final_status(&engine, d.id).await.status, Status::Success);
        built.push(engine.deployment(d.id).await.unwrap());
    }
    // The two oldest images were removed, the last five kept (pruned right after each
    // success is committed, so the last prune may still be running).
    let started = std::time::Instant::now();
    while removed.lock().unwrap_or_else(|p| p.into_inner()).len() < 2
        && started.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let removed = removed.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let oldest: Vec<String> = built[..2].iter().filter_map(|d| d.image.clone()).collect();
    assert_eq!(removed, oldest);
    for old in &built[..2] {
        assert_eq!(engine.deployment(old.id).await.unwrap().image, None);
        assert!(matches!(
            engine.rollback(app, Some(old.id)).await,
            Err(engine::EngineError::Conflict(
                engine::Conflict::ImageNotKept(_)
            ))
        ));
    }
    // By default: the successful deployment before the current one, without a build.
    let back = engine.rollback(app, None).await.unwrap();
    assert_eq!(back.image_from, Some(built[5].id));
    assert_eq!(back.image, built[5].image);
    let events = drain(engine.watch(back.id, 0).await.unwrap(), None).await;
    let mut stages = statuses(&events);
    stages.dedup();
    stages.retain(|s| *s != Status::Pending);
    assert_eq!(stages, vec![Status::Deploying, Status::Success]);
    // To a chosen one of the five.
    let chosen = engine.rollback(app, Some(built[2].id)).await.unwrap();
    assert_eq!(chosen.image, built[2].image);
    assert_eq!(
        final_status(&engine, chosen.id).await.status,
        Status::Success
    );
    // Not another app's deployment, not a failed one.
    let other = engine
        .create_app(NewApp {
            name: "other".into(),
            repo_url: repo(&dir.join("other")).display().to_string(),
            ..NewApp::default()
        })
        .await
        .unwrap()
        .id;
    assert!(matches!(
        engine.rollback(other, Some(built[6].id)).await,
        Err(engine::EngineError::Conflict(
            engine::Conflict::OtherApp { .. }
        ))
    ));
    engine.shutdown().await;
}
