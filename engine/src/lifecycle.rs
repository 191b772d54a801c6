//! The one owner of a deployment's life. Only this module queues, claims, moves a
//! deployment from stage to stage, raises its progress, ends it, and opens and finishes
//! its event stream; every one of those commits to the database and then publishes on
//! the deployment's stream, in [`Lifecycle::commit`]. Nothing else can change a status:
//! the database module is private to the engine and only `commit` calls its transition.
//!
//! A worker holds a [`Run`]: the claimed deployment, its log writer and its stream. The
//! run is the only handle that moves that deployment forward, and it ends exactly once.

use crate::bus::{DeploymentStream, EventBus, Lookup};
use crate::cluster::{Node, Signal};
use crate::db::{self, Artifacts, Change, DeploymentRecord, Pool};
use crate::error::{Conflict, EngineError, Result};
use crate::feed::EventFeed;
use crate::logstore::{LogStore, LogWriter};
use crate::watch::Watcher;
use protocol::{AppId, Deployment, DeploymentId, FeedEvent, LogLine, Plan, Seq, Status};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Lines of at most this much text are written on the calling task (see `Run::append`).
const INLINE_WRITE_BYTES: usize = 64 * 1024;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How long `cancel` waits for a running deployment to end.
const CANCEL_WAIT: Duration = Duration::from_secs(30);
/// Claims retried when another worker took the candidate first (each retry means some
/// worker, here or on another node, claimed something).
const CLAIM_ATTEMPTS: usize = 64;
/// How often `cancel` looks whether a deployment running on another node has ended.
const CANCEL_POLL: Duration = Duration::from_millis(50);

pub(crate) struct Lifecycle {
    pool: Pool,
    store: LogStore,
    /// `SLIPWAY_LOG_MAX_MB`: the most a run's log may take on disk (lines and index).
    log_max_bytes: u64,
    bus: EventBus,
    metrics: crate::metrics::Metrics,
    /// Wakes idle workers when a deployment is queued or an app becomes free.
    wake: Notify,
    /// The cancellation token of each deployment a worker of this process runs. A std
    /// mutex: held for a map operation, never across an await.
    running: Mutex<HashMap<DeploymentId, CancellationToken>>,
    /// The event feed: deployments created and changing status, apps changing.
    feed: Arc<EventFeed>,
    /// Wakes the notifier when a deployment ends (its notifications are in the outbox).
    notify: Arc<Notify>,
    /// This node: claims carry its name; wake-ups and cancels reach the other nodes.
    node: Node,
    /// In a cluster: the writers of this node's copies of logs other nodes write.
    /// Held while copying, so that copies of one log never interleave.
    copies: tokio::sync::Mutex<HashMap<DeploymentId, LogWriter>>,
}

/// Why a run's output could not be written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    /// The log is full: the run must end.
    #[error(
        "log limit reached: the deployment's log passed {} MB (SLIPWAY_LOG_MAX_MB), so its output was stopped",
        .0 / (1024 * 1024)
    )]
    LimitReached(u64),
    /// Another node took this deployment over (this node was unheard for too long):
    /// the run must stop at once and change nothing more.
    #[error("this node lost the deployment to another node: {0}")]
    ClaimLost(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// How a run ends when it does not succeed.
#[derive(Debug)]
pub(crate) enum Ending {
    /// `failed`, with what a person should read in `error_message`.
    Failed(String),
    Cancelled,
}

impl Lifecycle {
    pub(crate) fn new(
        pool: Pool,
        store: LogStore,
        log_max_bytes: u64,
        feed: Arc<EventFeed>,
        node: Node,
    ) -> Lifecycle {
        Lifecycle {
            pool,
            store,
            log_max_bytes,
            bus: EventBus::default(),
            metrics: crate::metrics::Metrics::default(),
            wake: Notify::new(),
            running: Mutex::new(HashMap::new()),
            feed,
            notify: Arc::new(Notify::new()),
            node,
            copies: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Publishes an event of the feed this node committed (with the feed's order held).
    /// In a cluster, first every event other nodes committed before it, so that the
    /// feed stays in `id` order on every node; then tells the others.
    async fn publish_event(&self, event: &FeedEvent) {
        if !self.node.clustered() {
            self.feed.publish(event);
            return;
        }
        self.catch_up_feed().await;
        if event.id() > Some(self.feed.last_id()) {
            self.feed.publish(event);
        }
        let by = self.node.name.clone();
        self.node.announce(&self.pool, Signal::Feed { by }).await;
    }

    /// Publishes the events committed (by any node) after the last one published here.
    /// Call it with the feed's order held.
    async fn catch_up_feed(&self) {
        loop {
            let last = self.feed.last_id();
            let events = match db::events_after(&self.pool, last, 1000).await {
                Ok(events) => events,
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the events other nodes committed");
                    return;
                }
            };
            for event in &events {
                self.feed.publish(event);
            }
            if events.len() < 1000 {
                return;
            }
        }
    }

    /// Stores lines this node wrote where the other nodes read them, and tells them.
    /// Refused when another node already wrote those seqs: this node lost its claim
    /// (it froze and another ended the deployment), so its run must stop.
    async fn share_lines(&self, id: DeploymentId, lines: &[LogLine]) -> Result<(), WriteError> {
        let at_ms = lines
            .first()
            .map_or(0, |l| crate::time::millis_of(&l.timestamp));
        let rows: Vec<(Seq, i64, &str)> = lines
            .iter()
            .map(|l| (l.seq, at_ms, l.line.as_str()))
            .collect();
        // Stored and announced in one statement: one round trip, and no announcement
        // of lines that were refused.
        let (channel, payload) = Signal::Lines {
            id,
            by: self.node.name.clone(),
        }
        .channel_and_payload();
        match db::insert_lines(&self.pool, id, &rows, Some((channel, &payload))).await {
            Ok(()) => Ok(()),
            Err(e) => Err(WriteError::ClaimLost(e.to_string())),
        }
    }

    /// Copies into this node's log store the lines of deployment `id` that other nodes
    /// stored and this node lacks, and publishes them to its viewers. Returns the guard
    /// of the copies: nothing is copied while the caller holds it. Nothing to do on one
    /// node, or for a deployment this node runs (its own writer is the only one).
    async fn copy_lines(
        &self,
        id: DeploymentId,
    ) -> Result<Option<tokio::sync::MutexGuard<'_, HashMap<DeploymentId, LogWriter>>>> {
        if !self.node.clustered() {
            return Ok(None);
        }
        let mut copies = self.copies.lock().await;
        if self.running_map().contains_key(&id) {
            return Ok(Some(copies));
        }
        const BATCH: i64 = 4096;
        loop {
            let last = match copies.get(&id) {
                Some(writer) => writer.last_seq(),
                None => self.store.count(id).await?,
            };
            let rows = db::lines_after(&self.pool, id, last, BATCH).await?;
            let Some(&(first, _, _)) = rows.first() else {
                break;
            };
            if first != last + 1 {
                tracing::warn!(
                    deployment.id = id,
                    last,
                    first,
                    "a gap in the shared log; copying stops here"
                );
                break;
            }
            let full = rows.len() as i64 == BATCH;
            let mut writer = match copies.remove(&id) {
                Some(writer) => writer,
                None => self.store.writer(id).await?,
            };
            let (writer, written) = tokio::task::spawn_blocking(move || {
                let mut written = Vec::with_capacity(rows.len());
                let mut rows = rows.into_iter().peekable();
                while let Some((_, at_ms, line)) = rows.next() {
                    // Lines of one batch share their time: appended together.
                    let mut group = vec![line];
                    while let Some((_, _, next)) = rows.next_if(|(_, ms, _)| *ms == at_ms) {
                        group.push(next);
                    }
                    let at = chrono::DateTime::from_timestamp_millis(at_ms).unwrap_or_default();
                    match writer.append_at_blocking(group, at) {
                        Ok(lines) => written.extend(lines),
                        Err(e) => return (writer, Err(e)),
                    }
                }
                (writer, Ok(written))
            })
            .await
            .map_err(|e| EngineError::Internal(format!("copying a log: {e}")))?;
            let written = match written {
                Ok(written) => written,
                Err(e) => return Err(e.into()),
            };
            if let Lookup::Live(stream) = self.bus.get(id) {
                stream.publish_lines(&written);
            }
            copies.insert(id, writer);
            if !full {
                break;
            }
        }
        Ok(Some(copies))
    }

    /// The log store, holding every line of `id` stored so far on any node.
    pub(crate) async fn synced_store(&self, id: DeploymentId) -> Result<&LogStore> {
        self.copy_lines(id).await?;
        Ok(&self.store)
    }

    pub(crate) fn node(&self) -> &Node {
        &self.node
    }

    /// Another node (or this one) said something.
    pub(crate) async fn signal(&self, signal: &Signal) {
        match signal {
            Signal::Status { id, by } if *by != self.node.name => {
                // Another node moved a deployment: viewers here get its new status, and
                // at its end this node's copy of its log is complete and closed.
                let live = match self.bus.get(*id) {
                    Lookup::Live(stream) => Some(stream),
                    _ => None,
                };
                let copying = self.copies.lock().await.contains_key(id);
                if live.is_none() && !copying {
                    return;
                }
                match db::deployment(&self.pool, *id).await {
                    Ok(record) if record.api.status.is_terminal() => {
                        // Its last lines first (committed before its end).
                        if let Err(e) = self.copy_lines(*id).await {
                            tracing::warn!(deployment.id = id, error = %e, "could not copy another node's log lines");
                        }
                        self.copies.lock().await.remove(id);
                        if live.is_some() {
                            self.bus.finish(record.api.status_data());
                        }
                    }
                    Ok(record) => {
                        if let Some(stream) = live {
                            stream.publish_status(record.api.status_data());
                        }
                    }
                    Err(e) => {
                        tracing::warn!(deployment.id = id, error = %e, "could not read a status another node committed");
                    }
                }
            }
            Signal::Status { .. } => {}
            Signal::Lines { id, by } if *by != self.node.name => {
                if let Err(e) = self.copy_lines(*id).await {
                    tracing::warn!(deployment.id = id, error = %e, "could not copy another node's log lines");
                }
            }
            Signal::Lines { .. } => {}
            Signal::Feed { by } if *by != self.node.name => {
                let _order = self.feed.order().await;
                self.catch_up_feed().await;
            }
            Signal::Feed { .. } => {}
            Signal::Queue => self.wake.notify_waiters(),
            Signal::Cancel(id) => {
                if let Some(token) = self.running_map().get(id) {
                    tracing::info!(deployment.id = id, "cancel requested by another node");
                    token.cancel();
                }
            }
            Signal::Auth => {}
        }
    }

    /// Ends the in-flight deployments of nodes unheard for longer than the lease:
    /// `failed`, naming the node and the stage. Viewers get the terminal status.
    pub(crate) async fn fail_orphans(&self) -> Result<usize> {
        let cutoff = crate::time::before(&crate::time::now(), self.node.lease);
        let mut ended = 0;
        for (record, last_seen) in db::orphaned(&self.pool, &self.node.name, &cutoff).await? {
            let stage = record.api.status;
            let lost = record.api.node.as_deref().unwrap_or("?");
            let reason = crate::cluster::lost_message(lost, stage, &last_seen);
            // The log's last line says why, on every node; if the lost node wrote that
            // seq first, it is back and the status below settles who wins.
            let id = record.api.id;
            let next = db::last_line(&self.pool, id).await? + 1;
            let line = format!("[slipway] Deployment failed during {stage}: {reason}\n");
            let now = crate::time::millis_of(&crate::time::now());
            let by = self.node.name.clone();
            let (channel, payload) = Signal::Lines { id, by }.channel_and_payload();
            let rows = [(next, now, line.as_str())];
            if db::insert_lines(&self.pool, id, &rows, Some((channel, &payload)))
                .await
                .is_ok()
            {
                self.copy_lines(id).await?;
            }
            match self.fail(id, stage, reason).await {
                Ok(_) => {
                    tracing::warn!(deployment.id = record.api.id, node = lost, %stage, "deployment of a lost node marked failed");
                    ended += 1;
                }
                // Its node came back and moved it, or another node got there first.
                Err(EngineError::Conflict(Conflict::Moved { .. })) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(ended)
    }

    pub(crate) fn feed(&self) -> &Arc<EventFeed> {
        &self.feed
    }

    /// What wakes the notifier.
    pub(crate) fn notifications(&self) -> Arc<Notify> {
        self.notify.clone()
    }

    /// Runs a change that writes events of the feed, then publishes them, in order.
    pub(crate) async fn recorded<T>(
        &self,
        change: impl std::future::Future<Output = Result<(T, Option<FeedEvent>)>>,
    ) -> Result<T> {
        let _order = self.feed.order().await;
        let (value, event) = change.await?;
        if let Some(event) = event {
            self.publish_event(&event).await;
        }
        Ok(value)
    }

    /// `GET /metrics`: the counters, with the queue's depth and `viewers` as of now.
    pub(crate) async fn metrics(&self, viewers: u64) -> Result<String> {
        let queued = db::count_in(&self.pool, Status::Pending).await?;
        Ok(self.metrics.encode(queued, viewers))
    }

    /// A future that resolves at the next wake-up (a deployment queued or ended). Enable
    /// it before looking for work, so a deployment queued meanwhile is not missed.
    pub(crate) fn woken(&self) -> tokio::sync::futures::Notified<'_> {
        self.wake.notified()
    }

    /// Queues a deployment; a worker picks it up at once if one is free.
    pub(crate) async fn queue(
        &self,
        app_id: AppId,
        reuse: Option<db::Reuse<'_>>,
        commit: Option<&str>,
    ) -> Result<Deployment> {
        let record = self
            .recorded(async {
                let (record, event) =
                    db::insert_deployment(&self.pool, app_id, reuse, commit).await?;
                Ok((record, Some(event)))
            })
            .await?;
        self.stream(&record.api, 0);
        self.wake.notify_waiters();
        self.node.announce(&self.pool, Signal::Queue).await;
        tracing::info!(
            app.id = app_id,
            deployment.id = record.api.id,
            "deployment queued"
        );
        Ok(record.api)
    }

    /// Claims the oldest pending deployment of an app with nothing in flight, moving it
    /// to its plan's first stage. `None` when there is nothing to claim.
    pub(crate) async fn claim(
        self: &Arc<Self>,
        shutdown: &CancellationToken,
    ) -> Result<Option<Run>> {
        for _ in 0..CLAIM_ATTEMPTS {
            let Some(candidate) = db::next_claimable(&self.pool).await? else {
                return Ok(None);
            };
            let id = candidate.api.id;
            let plan = candidate.api.plan();
            let first = plan.next(Status::Pending).unwrap_or(Status::Success);
            let claim = Change {
                claim: Some(self.node.name.clone()),
                ..Change::default()
            };
            let record = match self.commit(id, Status::Pending, first, claim).await {
                Ok(record) => record,
                // Another worker, or a cancel, got there first: look again.
                Err(EngineError::Conflict(Conflict::Moved { .. })) => continue,
                Err(e) => return Err(e),
            };
            let token = shutdown.child_token();
            self.running_map().insert(id, token.clone());
            if let Some(waited) =
                record.api.started_at.as_deref().and_then(|started| {
                    crate::time::seconds_between(&record.api.created_at, started)
                })
            {
                self.metrics.stage(Status::Pending, waited);
            }
            tracing::info!(deployment.id = id, app.id = record.api.app_id, %first, "deployment claimed");
            return match self.store.writer(id).await {
                Ok(log) => {
                    let stream = self.stream(&record.api, log.last_seq());
                    Ok(Some(Run {
                        lifecycle: self.clone(),
                        record: record.api,
                        attempt: record.attempt,
                        plan,
                        stream,
                        log: Arc::new(Mutex::new(log)),
                        sharer: Arc::new(Sharer::default()),
                        token,
                        activity: Arc::new(Activity::new()),
                        entered: Instant::now(),
                        ended: false,
                    }))
                }
                // Not even the log can be opened (a full or read-only disk): the
                // deployment still ends, with the reason, rather than stay claimed.
                Err(e) => {
                    self.running_map().remove(&id);
                    let reason = format!("the deployment log could not be opened: {e}");
                    self.fail(id, first, reason).await?;
                    Ok(None)
                }
            };
        }
        Ok(None)
    }

    /// The one way a deployment's state changes: commit to the database, then publish on
    /// its stream (a terminal status finishes the stream). `to == from` raises progress.
    async fn commit(
        &self,
        id: DeploymentId,
        from: Status,
        to: Status,
        change: Change,
    ) -> Result<DeploymentRecord> {
        let progress_only = to == from && !from.is_terminal();
        if !(progress_only || from.can_transition_to(to)) {
            return Err(Conflict::Transition { id, from, to }.into());
        }
        // A status change writes an event of the feed: held in order until published.
        let _order = if to != from {
            Some(self.feed.order().await)
        } else {
            None
        };
        let (record, event) = db::transition(&self.pool, id, from, to, change).await?;
        if let Some(event) = event {
            self.publish_event(&event).await;
        }
        let data = record.api.status_data();
        // Progress inside a stage too: other nodes' viewers see what this node's see.
        let signal = Signal::Status {
            id,
            by: self.node.name.clone(),
        };
        self.node.announce(&self.pool, signal).await;
        if to.is_terminal() {
            self.metrics.ended(to);
            self.notify.notify_one();
        }
        if to.is_terminal() {
            self.bus.finish(data);
            // The app is free for its next deployment.
            self.wake.notify_waiters();
            self.node.announce(&self.pool, Signal::Queue).await;
        } else {
            self.stream(&record.api, 0).publish_status(data);
        }
        Ok(record)
    }

    /// Ends deployment `id` (in `stage`) `failed` with `reason`.
    async fn fail(&self, id: DeploymentId, stage: Status, reason: String) -> Result<Deployment> {
        let change = Change {
            error_message: Some(reason),
            failed_stage: Some(stage),
            ..Change::default()
        };
        Ok(self.commit(id, stage, Status::Failed, change).await?.api)
    }

    /// The live stream of an unfinished deployment, opened if nobody opened it yet.
    /// `last_seq` is how many lines its log holds when it is opened here.
    fn stream(&self, deployment: &Deployment, last_seq: Seq) -> Arc<DeploymentStream> {
        match self.bus.open(deployment.status_data(), last_seq) {
            Lookup::Live(stream) => stream,
            // Ended meanwhile: a detached stream that nobody watches.
            _ => Arc::new(DeploymentStream::new(deployment.status_data(), last_seq)),
        }
    }

    fn running_map(&self) -> std::sync::MutexGuard<'_, HashMap<DeploymentId, CancellationToken>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A viewer of deployment `id` that starts after line `since`.
    pub(crate) async fn watch(&self, id: DeploymentId, since: Seq) -> Result<Watcher> {
        // In a cluster: every line stored so far is in this node's copy, and no copy
        // happens until the viewer's stream is open.
        let _copies = self.copy_lines(id).await?;
        let store = self.store.clone();
        if let Lookup::Live(stream) = self.bus.get(id) {
            return Ok(Watcher::live(id, store, stream, since));
        }
        let record = db::deployment(&self.pool, id).await?;
        let count = self.store.count(id).await?;
        match self.bus.open(record.api.status_data(), count) {
            Lookup::Live(stream) => Ok(Watcher::live(id, store, stream, since)),
            Lookup::Finished | Lookup::Unknown => {
                // Ended: read the final state after the end was committed.
                let record = db::deployment(&self.pool, id).await?;
                let count = self.store.count(id).await?;
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
    pub(crate) async fn cancel(&self, id: DeploymentId) -> Result<Deployment> {
        let status = db::deployment(&self.pool, id).await?.api.status;
        if status.is_terminal() {
            return Err(Conflict::AlreadyEnded { id, status }.into());
        }
        if status == Status::Pending {
            match self
                .commit(id, Status::Pending, Status::Cancelled, Change::default())
                .await
            {
                Ok(record) => return Ok(record.api),
                // A worker claimed it just now: cancel it there.
                Err(EngineError::Conflict(Conflict::Moved { .. })) => {}
                Err(e) => return Err(e),
            }
        }
        let mut watcher = self.watch(id, Seq::MAX).await?;
        let token = self.running_map().get(&id).cloned();
        let Some(token) = token else {
            let now = db::deployment(&self.pool, id).await?.api;
            if now.status.is_terminal() {
                return Ok(now);
            }
            if self.node.clustered() && now.node.as_deref() != Some(self.node.name.as_str()) {
                return self.cancel_elsewhere(id).await;
            }
            return Err(Conflict::NotRunningHere {
                id,
                status: now.status,
            }
            .into());
        };
        token.cancel();
        let ended = tokio::time::timeout(CANCEL_WAIT, async {
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
        Ok(db::deployment(&self.pool, id).await?.api)
    }

    /// Cancels a deployment another node runs: tells every node, then waits (up to
    /// 30 s) until the database says it ended.
    async fn cancel_elsewhere(&self, id: DeploymentId) -> Result<Deployment> {
        self.node.announce(&self.pool, Signal::Cancel(id)).await;
        let deadline = Instant::now() + CANCEL_WAIT;
        loop {
            let now = db::deployment(&self.pool, id).await?.api;
            if now.status.is_terminal() || Instant::now() >= deadline {
                return Ok(now);
            }
            tokio::time::sleep(CANCEL_POLL).await;
        }
    }

    pub(crate) async fn app(&self, id: AppId) -> Result<db::AppRecord> {
        db::app(&self.pool, id).await
    }

    /// An app's deployments, newest first.
    pub(crate) async fn history(&self, app: AppId) -> Result<Vec<Deployment>> {
        db::deployments_of_app(&self.pool, app, i64::MAX).await
    }

    /// The deployment's image was removed.
    pub(crate) async fn forget_image(&self, id: DeploymentId) -> Result<()> {
        db::forget_image(&self.pool, id).await
    }

    /// Deployments a previous run of this process left mid-flight.
    pub(crate) async fn interrupted(&self) -> Result<Vec<DeploymentRecord>> {
        // In a cluster, only this node's: the others' are theirs (or, if lost, ended
        // by `fail_orphans`).
        let node = self.node.clustered().then_some(self.node.name.as_str());
        db::deployments_in(
            &self.pool,
            &[Status::Cloning, Status::Building, Status::Deploying],
            node,
        )
        .await
    }

    /// Ends a deployment interrupted by a restart: a last log line with `reason`, then
    /// `failed`.
    pub(crate) async fn fail_interrupted(
        &self,
        record: &DeploymentRecord,
        reason: String,
    ) -> Result<()> {
        let id = record.api.id;
        let writer = self.store.writer(id).await?;
        let (_, written) = writer.append(vec![format!("[slipway] {reason}\n")]).await;
        written?;
        if self.node.clustered() {
            // What the crash kept from the other nodes, and the reason.
            let shared = db::last_line(&self.pool, id).await?;
            let unshared = self.store.read(id, shared + 1, Seq::MAX).await?;
            self.share_lines(id, &unshared)
                .await
                .map_err(|e| EngineError::Internal(e.to_string()))?;
        }
        self.fail(id, record.api.status, reason).await?;
        Ok(())
    }

    /// Forgets deployments whose app was deleted: their streams and logs.
    pub(crate) async fn forget(&self, ids: &[DeploymentId]) -> Result<()> {
        for id in ids {
            self.bus.forget(*id);
            self.copies.lock().await.remove(id);
            self.store.remove(*id).await?;
            if self.node.clustered() {
                db::forget_lines(&self.pool, *id).await?;
            }
        }
        Ok(())
    }
}

/// A deployment claimed by a worker: the only handle that moves it forward.
pub(crate) struct Run {
    lifecycle: Arc<Lifecycle>,
    /// The deployment as claimed (status updated as it moves).
    record: Deployment,
    /// Which claim of it this run is: its writes hold only while the claim does.
    attempt: i64,
    plan: Plan,
    stream: Arc<DeploymentStream>,
    /// Shared with the blocking task that appends: a cancelled pipeline drops its future,
    /// never the writer.
    log: Arc<Mutex<LogWriter>>,
    /// In a cluster: the lines written here and not yet stored for the other nodes.
    sharer: Arc<Sharer>,
    token: CancellationToken,
    activity: Arc<Activity>,
    /// When the current stage began, for the stage durations of `/metrics`.
    entered: Instant,
    ended: bool,
}

/// Stores a run's lines for the other nodes off the run's own path: the run appends
/// and publishes locally, hands the lines here and goes on; one flush at a time takes
/// everything handed over so far (so a burst becomes one INSERT) and stores it. A
/// refusal (another node took the deployment over) is kept for the run to see.
#[derive(Default)]
pub(crate) struct Sharer {
    pending: Mutex<Vec<LogLine>>,
    /// Held by the flush in progress: flushes store in seq order.
    flushing: tokio::sync::Mutex<()>,
    /// Why the other nodes refused lines: the first seq refused, and the error.
    refused: Mutex<Option<(Seq, String)>>,
}

impl Sharer {
    /// Hands lines over; true when nothing was waiting, so no flush is due yet that
    /// would take them (the caller schedules one). Every flush takes all that waits.
    fn push(&self, lines: Vec<LogLine>) -> bool {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let due = pending.is_empty();
        pending.extend(lines);
        due
    }

    fn refused(&self) -> Option<(Seq, String)> {
        self.refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Stores whatever was handed over and not stored yet (waiting for a flush in
    /// progress first).
    async fn flush(&self, lifecycle: &Lifecycle, id: DeploymentId) {
        let _one = self.flushing.lock().await;
        let lines = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        let Some(first) = lines.first().map(|l| l.seq) else {
            return;
        };
        if self.refused().is_some() {
            return;
        }
        if let Err(WriteError::ClaimLost(e)) = lifecycle.share_lines(id, &lines).await {
            *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = Some((first, e));
        }
    }
}

impl Run {
    pub(crate) fn id(&self) -> DeploymentId {
        self.record.id
    }

    pub(crate) fn deployment(&self) -> &Deployment {
        &self.record
    }

    /// Cancelled when someone cancels this deployment or the server shuts down.
    pub(crate) fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// When the deployment last wrote output or changed status.
    pub(crate) fn activity(&self) -> Arc<Activity> {
        self.activity.clone()
    }

    pub(crate) async fn app(&self) -> Result<db::AppRecord> {
        self.lifecycle.app(self.record.app_id).await
    }

    /// Appends lines to the log, then publishes them, in one step that a dropped future
    /// (cancel) cannot split: the lines are either stored and published, or neither.
    /// The log holds at most `SLIPWAY_LOG_MAX_MB`: the lines that fit are written, and
    /// `LimitReached` says the run must end.
    pub(crate) async fn write(&self, lines: Vec<String>) -> Result<(), WriteError> {
        self.append(lines, Some(self.lifecycle.log_max_bytes)).await
    }

    async fn append(&self, mut lines: Vec<String>, limit: Option<u64>) -> Result<(), WriteError> {
        if lines.is_empty() {
            return Ok(());
        }
        let count = lines.len();
        let bytes: usize = lines.iter().map(String::len).sum();
        let (log, stream) = (self.log.clone(), self.stream.clone());
        let shared = self.lifecycle.node.clustered();
        let store_and_publish = move || {
            let mut writer = log.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let mut full = None;
            if let Some(limit) = limit {
                let mut size = writer.disk_bytes();
                let fits = lines
                    .iter()
                    .take_while(|line| {
                        size += LogWriter::cost(line.len());
                        size <= limit
                    })
                    .count();
                if fits < lines.len() {
                    lines.truncate(fits);
                    full = Some(WriteError::LimitReached(limit));
                }
            }
            let mut copy = Vec::new();
            if !lines.is_empty() {
                let written: Vec<LogLine> = writer.append_blocking(lines)?;
                stream.publish_lines(&written);
                if shared {
                    copy = written;
                }
            }
            Ok::<_, WriteError>((full, copy))
        };
        // A build's lines come a few at a time: appending them to the page cache takes
        // microseconds, less than the blocking pool's hand-over (a thread woken, then this
        // task woken again), which was most of Slipway's share of a line's latency. Large
        // batches (a catch-up of buffered output) still go to the blocking pool.
        let outcome = if bytes <= INLINE_WRITE_BYTES {
            store_and_publish()?
        } else {
            tokio::task::spawn_blocking(store_and_publish)
                .await
                .map_err(std::io::Error::other)??
        };
        let (full, copy) = outcome;
        if !copy.is_empty() && self.sharer.push(copy) {
            let (sharer, lifecycle, id) =
                (self.sharer.clone(), self.lifecycle.clone(), self.record.id);
            tokio::spawn(async move { sharer.flush(&lifecycle, id).await });
        }
        self.check_claim()?;
        self.lifecycle.metrics.lines(count);
        self.activity.touch();
        match full {
            Some(full) => Err(full),
            None => Ok(()),
        }
    }

    /// This run's claim, which its writes name.
    fn claim(&self) -> db::Claim<'_> {
        db::Claim {
            id: self.record.id,
            node: &self.lifecycle.node.name,
            attempt: self.attempt,
        }
    }

    /// In a cluster: fails once another node refused this run's lines (it took the
    /// deployment over while this node was unheard). This node's copy of the log then
    /// goes back to what the others have (and copies theirs later).
    fn check_claim(&self) -> Result<(), WriteError> {
        let Some((first, reason)) = self.sharer.refused() else {
            return Ok(());
        };
        let mut writer = self.log.lock().unwrap_or_else(|p| p.into_inner());
        writer.truncate_blocking(first - 1)?;
        Err(WriteError::ClaimLost(reason))
    }

    /// Every line written so far is stored for the other nodes: called before a status
    /// change, so that other nodes' viewers get the lines before the status.
    async fn shared(&self) {
        if self.lifecycle.node.clustered() {
            self.sharer.flush(&self.lifecycle, self.record.id).await;
        }
    }

    /// The current stage ended: its duration goes to `/metrics`.
    fn stage_ended(&mut self) {
        self.lifecycle
            .metrics
            .stage(self.record.status, self.entered.elapsed().as_secs_f64());
        self.entered = Instant::now();
    }

    /// A line of Slipway's own.
    pub(crate) async fn say(&self, text: impl AsRef<str>) -> Result<(), WriteError> {
        self.write(vec![format!("[slipway] {}\n", text.as_ref())])
            .await
    }

    /// Moves to `next`, which must be the plan's next stage.
    pub(crate) async fn enter(&mut self, next: Status) -> Result<()> {
        let (id, from) = (self.record.id, self.record.status);
        if next.is_terminal() || self.plan.next(from) != Some(next) {
            return Err(Conflict::Transition { id, from, to: next }.into());
        }
        self.stage_ended();
        self.shared().await;
        self.record = self
            .lifecycle
            .commit(id, from, next, Change::default())
            .await?
            .api;
        self.activity.touch();
        Ok(())
    }

    /// Raises progress inside the current stage, never past the next stage's value.
    pub(crate) async fn progress(&mut self, progress: u8) -> Result<()> {
        // The step line that raised it reaches other nodes first.
        self.shared().await;
        let status = self.record.status;
        let change = Change {
            progress: Some(progress.min(status.progress_ceiling())),
            ..Change::default()
        };
        self.record = self
            .lifecycle
            .commit(self.record.id, status, status, change)
            .await?
            .api;
        self.activity.touch();
        Ok(())
    }

    /// Records what the run produced (commit, image, container).
    pub(crate) async fn record(&mut self, artifacts: Artifacts<'_>) -> Result<()> {
        if let Some(commit) = artifacts.commit {
            self.record.commit = Some(commit.to_owned());
        }
        if let Some(image) = artifacts.image {
            self.record.image = Some(image.to_owned());
        }
        db::record_artifacts(&self.lifecycle.pool, self.claim(), artifacts).await
    }

    /// The new container is healthy and serves the app from now on: `url` is where it
    /// answers on loopback, `public_url` where people reach it.
    pub(crate) async fn serve(
        &mut self,
        container_id: &str,
        url: Option<&str>,
        public_url: Option<&str>,
    ) -> Result<()> {
        let claim = self.claim();
        db::serve_from(
            &self.lifecycle.pool,
            self.record.app_id,
            claim,
            container_id,
            url,
        )
        .await?;
        self.record(Artifacts {
            url: public_url,
            ..Artifacts::default()
        })
        .await
    }

    /// The deployment ends `success` (its container serves: [`Run::serve`]).
    pub(crate) async fn succeed(&mut self) -> Result<()> {
        let (id, from) = (self.record.id, self.record.status);
        if self.plan.next(from) != Some(Status::Success) {
            return Err(Conflict::Transition {
                id,
                from,
                to: Status::Success,
            }
            .into());
        }
        self.stage_ended();
        self.shared().await;
        self.record = self
            .lifecycle
            .commit(id, from, Status::Success, Change::default())
            .await?
            .api;
        self.ended = true;
        Ok(())
    }

    /// Ends the run `failed` or `cancelled` with a last log line saying why.
    pub(crate) async fn end(&mut self, ending: Ending) -> Result<Status> {
        let stage = self.record.status;
        let line = match &ending {
            Ending::Cancelled => format!("Deployment cancelled during {stage}"),
            Ending::Failed(reason) => format!("Deployment failed during {stage}: {reason}"),
        };
        // The last line goes in even past the log limit: it says why the run ended.
        if let Err(e) = self.append(vec![format!("[slipway] {line}\n")], None).await {
            tracing::warn!(deployment.id = self.record.id, error = %e, "could not log the end of the deployment");
        }
        self.stage_ended();
        self.shared().await;
        let record = match ending {
            Ending::Failed(reason) => self.lifecycle.fail(self.record.id, stage, reason).await?,
            Ending::Cancelled => {
                self.lifecycle
                    .commit(self.record.id, stage, Status::Cancelled, Change::default())
                    .await?
                    .api
            }
        };
        self.record = record;
        self.ended = true;
        Ok(self.record.status)
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        self.lifecycle.running_map().remove(&self.record.id);
        if !self.ended {
            // Shutdown: the next start reconciles it.
            tracing::info!(deployment.id = self.record.id, status = %self.record.status, "deployment left for the next start");
        }
    }
}

/// Milliseconds since the run began at its last sign of progress.
pub(crate) struct Activity {
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

    /// How long since the last sign of progress.
    pub(crate) fn idle(&self) -> Duration {
        let last = self.last_ms.load(std::sync::atomic::Ordering::Relaxed);
        self.began
            .elapsed()
            .saturating_sub(Duration::from_millis(last))
    }
}

#[cfg(test)]
mod tests {
    /// The engine's sources, by file name.
    fn sources() -> Vec<(String, String)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        let mut stack = vec![dir];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("src is readable").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                    let text = std::fs::read_to_string(&path).expect("a source file");
                    files.push((name.unwrap_or_default(), text));
                }
            }
        }
        files
    }

    /// A status that changed without being published would reach no viewer. Statuses are
    /// written only by `db::transition`, which only `Lifecycle::commit` calls, and
    /// `commit` publishes what it committed; streams are opened and finished here only.
    #[test]
    fn only_the_lifecycle_changes_and_publishes_a_status() {
        let files = sources();
        assert!(files.len() > 10, "the sources were found");
        for (name, text) in &files {
            let code = text.split("#[cfg(test)]").next().unwrap_or(text);
            let writes_status =
                code.contains("SET status") || code.contains("INSERT INTO deployments");
            match name.as_str() {
                "db.rs" => {
                    // One UPDATE of the status (in `transition`), one INSERT (`pending`).
                    assert_eq!(
                        code.matches("SET status").count(),
                        1,
                        "db.rs: one status update"
                    );
                    let transition = code
                        .split("pub(crate) async fn transition")
                        .nth(1)
                        .unwrap_or("");
                    let body = transition.split("\npub(crate)").next().unwrap_or("");
                    assert!(
                        body.contains("SET status"),
                        "the status update is in db::transition"
                    );
                }
                _ => assert!(!writes_status, "{name} writes a deployment's status"),
            }
            if name != "lifecycle.rs" {
                for call in [
                    "db::transition(",
                    "db::insert_deployment(",
                    ".publish_status(",
                    "bus.finish(",
                    "bus.open(",
                ] {
                    let allowed = name == "bus.rs" && call == ".publish_status(";
                    assert!(
                        allowed || !code.contains(call),
                        "{name} calls {call} outside the lifecycle"
                    );
                }
            }
        }
        let lifecycle = files
            .iter()
            .find(|(name, _)| name == "lifecycle.rs")
            .and_then(|(_, text)| text.split("#[cfg(test)]").next())
            .unwrap_or_default();
        let commit = lifecycle
            .split("async fn commit(")
            .nth(1)
            .and_then(|rest| rest.split("\n    }\n").next())
            .unwrap_or_default();
        assert_eq!(
            lifecycle.matches("db::transition(").count(),
            1,
            "one caller of db::transition"
        );
        assert!(
            commit.contains("db::transition(")
                && commit.contains("publish_status(")
                && commit.contains("bus.finish(")
        );
    }
}
