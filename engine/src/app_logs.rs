//! Runtime logs: what an app's running container prints, on stdout and stderr, numbered
//! 1, 2, 3, ... per app across its deployments (a line of Slipway's marks each switch to a
//! new container), kept up to `SLIPWAY_RUNTIME_LOG_MB` per app.
//!
//! The lines are stored in segments: each segment is a log of the [`LogStore`] format,
//! named by the `seq` of its first line; the oldest segment goes when the app's lines
//! outgrow their budget. Each stored line starts with one byte telling its stream (`o`
//! stdout, `e` stderr); readers strip it. As with deployments, a line is appended before
//! it is published, and a viewer catches up from the store, then follows the live
//! channel, and falls back to the store when it lags.

use crate::bus::{Published, to_json};
use crate::logstore::{LineSplitter, LogStore, LogWriter};
use crate::runtime::{LogChunk, OutputStream, Runtime};
use crate::watch::{Outgoing, WatchEnd};
use protocol::{AppId, Event, LogLine, Seq, StatusData};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Events kept for viewers a little behind; further behind, they read the store.
const CHANNEL_CAPACITY: usize = 4096;
/// Lines read from the store per catch-up step.
const CATCH_UP_BATCH: Seq = 512;
/// Segments an app's budget is cut into: the oldest one goes at a time.
const SEGMENTS: u64 = 8;
/// Waits before following a container again after its output stream ended (the
/// container restarting, the engine away).
const REFOLLOW_AFTER: Duration = Duration::from_secs(1);

/// One app's runtime log.
pub(crate) struct AppLog {
    store: LogStore,
    state: Mutex<State>,
    tx: broadcast::Sender<Published>,
    /// The newest line stored (and so published or about to be).
    last_seq: AtomicU64,
    budget: u64,
    /// Cancelled when the app is deleted: its viewers end.
    closed: CancellationToken,
}

struct State {
    /// Kept segments, oldest first: (first seq, bytes).
    segments: VecDeque<(Seq, u64)>,
    writer: Option<(Seq, LogWriter)>,
}

impl AppLog {
    fn open(dir: PathBuf, budget: u64) -> io::Result<AppLog> {
        let store = LogStore::new(&dir)?;
        let mut firsts: Vec<Seq> = std::fs::read_dir(&dir)?
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".idx")?.parse().ok()
            })
            .collect();
        firsts.sort_unstable();
        let mut segments = VecDeque::new();
        let mut last_seq = 0;
        for first in firsts {
            let (lines, bytes) = store.size_blocking(first as i64)?;
            if lines > 0 {
                last_seq = first + lines - 1;
            }
            segments.push_back((first, bytes));
        }
        let (tx, _) = broadcast::channel(CHANNEL_CAPACITY);
        Ok(AppLog {
            store,
            state: Mutex::new(State {
                segments,
                writer: None,
            }),
            tx,
            last_seq: AtomicU64::new(last_seq),
            budget,
            closed: CancellationToken::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn last_seq(&self) -> Seq {
        self.last_seq.load(Ordering::Acquire)
    }

    /// The oldest line still kept.
    pub(crate) fn first_seq(&self) -> Seq {
        self.lock()
            .segments
            .front()
            .map(|(first, _)| *first)
            .unwrap_or(self.last_seq() + 1)
    }

    /// Appends lines, then publishes them. Blocking: call it on the blocking pool.
    fn append_blocking(&self, lines: Vec<(OutputStream, String)>) -> io::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut state = self.lock();
        let segment_max = (self.budget / SEGMENTS).max(64 * 1024);
        let current = state.segments.back().map(|(first, bytes)| (*first, *bytes));
        let next_seq = self.last_seq() + 1;
        // A new segment when none is open or the last one is full.
        let roll = match current {
            None => true,
            Some((_, bytes)) => bytes >= segment_max,
        };
        if roll || state.writer.is_none() {
            let first = if roll {
                next_seq
            } else {
                current.map(|(first, _)| first).unwrap_or(next_seq)
            };
            let writer = self.store.writer_blocking(first as i64)?;
            if roll {
                state.segments.push_back((first, 0));
            }
            state.writer = Some((first, writer));
        }
        let stored: Vec<String> = lines
            .iter()
            .map(|(stream, line)| format!("{}{line}", stream.marker()))
            .collect();
        let bytes: u64 = stored.iter().map(|l| l.len() as u64).sum();
        let written = match state.writer.as_mut() {
            Some((_, writer)) => writer.append_blocking(stored)?,
            None => return Err(io::Error::other("no segment open")),
        };
        if let Some(last) = state.segments.back_mut() {
            last.1 += bytes;
        }
        // Over budget: the oldest segments go (never the one being written).
        let mut total: u64 = state.segments.iter().map(|(_, b)| b).sum();
        while total > self.budget && state.segments.len() > 1 {
            if let Some((first, size)) = state.segments.pop_front() {
                self.store.remove_blocking(first as i64)?;
                total -= size;
            }
        }
        let timestamp = crate::time::now();
        for (seq, (line, (stream, text))) in (next_seq..).zip(written.iter().zip(lines)) {
            let event = Event::Log {
                timestamp: timestamp.clone(),
                data: LogLine {
                    seq,
                    line: text,
                    timestamp: line.timestamp.clone(),
                    stream: Some(stream.name().to_owned()),
                },
            };
            self.last_seq.store(seq, Ordering::Release);
            let _ = self.tx.send(Published::Log {
                seq,
                json: to_json(&event),
            });
        }
        Ok(())
    }

    /// Lines `from..=to` still kept, numbered for the app.
    pub(crate) fn read_blocking(&self, from: Seq, to: Seq) -> io::Result<Vec<LogLine>> {
        let segments: Vec<Seq> = self.lock().segments.iter().map(|(f, _)| *f).collect();
        let mut lines = Vec::new();
        for (n, first) in segments.iter().enumerate() {
            let end = segments.get(n + 1).map(|next| next - 1).unwrap_or(Seq::MAX);
            if end < from || *first > to {
                continue;
            }
            let (local_from, local_to) = (from.max(*first) - first + 1, to.min(end) - first + 1);
            for stored in self
                .store
                .read_blocking(*first as i64, local_from, local_to)?
            {
                let (stream, text) = OutputStream::split(&stored.line);
                lines.push(LogLine {
                    seq: first + stored.seq - 1,
                    line: text.to_owned(),
                    timestamp: stored.timestamp,
                    stream: Some(stream.name().to_owned()),
                });
            }
        }
        Ok(lines)
    }
}

/// Every app's runtime log, and who follows which container.
pub(crate) struct AppLogs {
    dir: PathBuf,
    budget: u64,
    runtime: Arc<dyn Runtime>,
    logs: Mutex<HashMap<AppId, Arc<AppLog>>>,
    /// The follower of each app: the container it follows and how to stop it.
    followers: Mutex<HashMap<AppId, (String, CancellationToken)>>,
    shutdown: CancellationToken,
    tasks: tokio_util::task::TaskTracker,
}

impl AppLogs {
    pub(crate) fn new(
        dir: PathBuf,
        budget: u64,
        runtime: Arc<dyn Runtime>,
        shutdown: CancellationToken,
        tasks: tokio_util::task::TaskTracker,
    ) -> AppLogs {
        AppLogs {
            dir,
            budget,
            runtime,
            logs: Mutex::new(HashMap::new()),
            followers: Mutex::new(HashMap::new()),
            shutdown,
            tasks,
        }
    }

    /// The app's log, opened from disk the first time.
    pub(crate) async fn log(&self, app: AppId) -> io::Result<Arc<AppLog>> {
        if let Some(log) = self
            .logs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&app)
        {
            return Ok(log.clone());
        }
        let (dir, budget) = (self.dir.join(app.to_string()), self.budget);
        let opened = Arc::new(
            tokio::task::spawn_blocking(move || AppLog::open(dir, budget))
                .await
                .map_err(io::Error::other)??,
        );
        let mut logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        Ok(logs.entry(app).or_insert(opened).clone())
    }

    /// From now on the app's log follows `container`; `note` (a line of Slipway's) marks
    /// the switch. Following the same container again only adds the note.
    pub(crate) async fn follow(&self, app: AppId, container: &str, note: Option<String>) {
        let token = {
            let mut followers = self.followers.lock().unwrap_or_else(|p| p.into_inner());
            // Followed already (a Swarm service keeps its name across deployments): only
            // the note is new.
            if followers.get(&app).is_some_and(|(c, _)| c == container) {
                None
            } else {
                if let Some((_, old)) = followers.remove(&app) {
                    old.cancel();
                }
                let token = self.shutdown.child_token();
                followers.insert(app, (container.to_owned(), token.clone()));
                Some(token)
            }
        };
        let log = match self.log(app).await {
            Ok(log) => log,
            Err(e) => {
                tracing::error!(app.id = app, error = %e, "the app's runtime log cannot be opened");
                return;
            }
        };
        if let Some(note) = note {
            let line = vec![(OutputStream::Stdout, format!("[slipway] {note}\n"))];
            let writer = log.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || writer.append_blocking(line))
                .await
                .map_err(io::Error::other)
                .and_then(|r| r)
            {
                tracing::warn!(app.id = app, error = %e, "could not write to the runtime log");
            }
        }
        let Some(token) = token else { return };
        let follower = follow(
            log,
            self.runtime.clone(),
            container.to_owned(),
            self.dir.join(app.to_string()).join("cursor"),
            token,
        );
        self.tasks.spawn(follower);
    }

    /// The app was deleted: stop following, drop its lines.
    pub(crate) async fn forget(&self, app: AppId) {
        if let Some((_, token)) = self
            .followers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&app)
        {
            token.cancel();
        }
        if let Some(log) = self
            .logs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&app)
        {
            log.closed.cancel();
        }
        let _ = tokio::fs::remove_dir_all(self.dir.join(app.to_string())).await;
    }
}

/// Follows a container's output into the log until cancelled. When its output ends (the
/// container stopped, the engine went away), it follows again from the last line it saw,
/// so a container the engine restarts goes on in the same log, nothing twice.
async fn follow(
    log: Arc<AppLog>,
    runtime: Arc<dyn Runtime>,
    container: String,
    cursor_file: PathBuf,
    token: CancellationToken,
) {
    use futures_util::StreamExt;
    // The engine's timestamp of the last line taken (RFC 3339 with nanoseconds), kept on
    // disk so a restart of Slipway takes nothing twice either.
    let mut cursor: Option<String> =
        tokio::fs::read_to_string(&cursor_file)
            .await
            .ok()
            .and_then(|text| {
                let (id, at) = text.trim().split_once(' ')?;
                (id == container).then(|| at.to_owned())
            });
    let mut splitters: HashMap<OutputStream, LineSplitter> = HashMap::new();
    loop {
        let mut output = runtime.follow_logs(&container, cursor.clone());
        loop {
            let chunk = tokio::select! {
                chunk = output.next() => chunk,
                _ = token.cancelled() => return,
            };
            let Some(Ok(LogChunk {
                stream,
                timestamp,
                text,
            })) = chunk
            else {
                break;
            };
            if cursor
                .as_deref()
                .is_some_and(|seen| !crate::time::is_after(&timestamp, seen))
            {
                continue;
            }
            let lines = splitters.entry(stream).or_default().push(&text);
            cursor = Some(timestamp.clone());
            if lines.is_empty() {
                continue;
            }
            let batch: Vec<(OutputStream, String)> =
                lines.into_iter().map(|l| (stream, l)).collect();
            let writer = log.clone();
            let written = tokio::task::spawn_blocking(move || writer.append_blocking(batch)).await;
            if !matches!(written, Ok(Ok(()))) {
                tracing::warn!(container = %container, "could not write to the runtime log");
            }
            let _ = tokio::fs::write(&cursor_file, format!("{container} {timestamp}")).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(REFOLLOW_AFTER) => {}
            _ = token.cancelled() => return,
        }
        // The container is gone for good: nothing more to follow.
        if matches!(
            runtime.state(&container).await,
            Ok(crate::runtime::ContainerState::Missing)
        ) {
            return;
        }
    }
}

/// A viewer of an app's runtime log: the app's current deployment status, then every line
/// after `since` (from the oldest kept, if `since` is older), then live lines. It ends
/// only when the app is deleted or the server shuts down.
pub struct AppLogWatcher {
    log: Arc<AppLog>,
    rx: broadcast::Receiver<Published>,
    next: Seq,
    ready: VecDeque<Outgoing>,
}

impl AppLogWatcher {
    pub(crate) fn new(log: Arc<AppLog>, status: StatusData, since: Seq) -> AppLogWatcher {
        // Subscribe before looking at the store: every line is in one or the other.
        let rx = log.tx.subscribe();
        let next = since.saturating_add(1).max(log.first_seq());
        let mut ready = VecDeque::new();
        ready.push_back(Outgoing {
            json: to_json(&Event::Status {
                timestamp: crate::time::now(),
                data: status,
            }),
            terminal: false,
        });
        AppLogWatcher {
            log,
            rx,
            next,
            ready,
        }
    }

    pub async fn next(&mut self) -> Result<Outgoing, WatchEnd> {
        loop {
            if let Some(message) = self.ready.pop_front() {
                return Ok(message);
            }
            // Lines already stored are read from the store, in batches.
            let last = self.log.last_seq();
            if self.next <= last {
                self.next = self.next.max(self.log.first_seq());
                let to = last.min(self.next + CATCH_UP_BATCH - 1);
                let (log, from) = (self.log.clone(), self.next);
                let lines = tokio::task::spawn_blocking(move || log.read_blocking(from, to))
                    .await
                    .map_err(|_| WatchEnd::Shutdown)?
                    .map_err(|_| WatchEnd::Shutdown)?;
                let timestamp = crate::time::now();
                for line in lines {
                    if line.seq != self.next {
                        continue;
                    }
                    self.next += 1;
                    self.ready.push_back(Outgoing {
                        json: to_json(&Event::Log {
                            timestamp: timestamp.clone(),
                            data: line,
                        }),
                        terminal: false,
                    });
                }
                if self.ready.is_empty() {
                    // Dropped while reading (over budget): go on from what is kept.
                    self.next = self.next.max(self.log.first_seq()).max(to + 1);
                }
                continue;
            }
            let received = tokio::select! {
                received = self.rx.recv() => received,
                _ = self.log.closed.cancelled() => return Err(WatchEnd::Finished),
            };
            match received {
                Ok(Published::Log { seq, json }) if seq == self.next => {
                    self.next += 1;
                    return Ok(Outgoing {
                        json,
                        terminal: false,
                    });
                }
                // Ahead (the store has it) or behind (sent already): the loop decides.
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return Err(WatchEnd::Finished),
            }
        }
    }

    /// The next message if one is ready now.
    pub fn next_ready(&mut self) -> Option<Outgoing> {
        self.ready.pop_front()
    }
}
