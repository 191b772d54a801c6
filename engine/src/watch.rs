//! A viewer of one deployment: the status first, then every log line after `since` in
//! order, then live events, ending with the terminal status (PROTOCOL.md guarantees 1-4).
//!
//! The viewer reads its channel at its own pace. If it falls more than the channel's
//! capacity behind (`Lagged`), it takes a fresh snapshot and catches up from the store:
//! slow viewers cost disk reads, never unbounded memory, and never lose a line.

use crate::bus::{self, DeploymentStream, Published, Snapshot};
use crate::logstore::LogStore;
use protocol::{DeploymentId, Event, Seq, StatusData};
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

/// Lines read from the store per catch-up step, and their text at most: bounds a
/// viewer's memory (512 ordinary lines, or 16 lines of 16 KiB).
const CATCH_UP_BATCH: u64 = 512;
const CATCH_UP_BYTES: u64 = 256 * 1024;

/// Room kept for ready messages once they are sent: a status and a line or two.
const IDLE_READY: usize = 4;

/// One message for the client, already serialised.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub json: Arc<str>,
    /// The terminal status: the last message of the stream.
    pub terminal: bool,
}

pub struct Watcher {
    id: DeploymentId,
    store: LogStore,
    stream: Option<Arc<DeploymentStream>>,
    rx: Option<tokio::sync::broadcast::Receiver<Published>>,
    /// Messages ready to go.
    ready: VecDeque<Outgoing>,
    last_sent_seq: Seq,
    /// Catch up from the store up to this `seq` before taking live events.
    catch_up_to: Seq,
    /// Status to send once caught up (after a resync).
    status_after_catch_up: Option<StatusData>,
    last_status: StatusData,
    done: bool,
}

/// What a socket sends: a deployment's monitor ([`Watcher`]) or an app's runtime log
/// ([`crate::AppLogWatcher`]).
pub trait Feed: Send {
    /// The next message, waiting for it, or how the feed ended.
    fn next(&mut self) -> impl std::future::Future<Output = Result<Outgoing, WatchEnd>> + Send;
    /// The next message if one is ready now: lets the socket write a burst with one flush.
    fn next_ready(&mut self) -> Option<Outgoing>;
}

impl Feed for Watcher {
    fn next(&mut self) -> impl std::future::Future<Output = Result<Outgoing, WatchEnd>> + Send {
        Watcher::next(self)
    }
    fn next_ready(&mut self) -> Option<Outgoing> {
        Watcher::next_ready(self)
    }
}

impl Feed for crate::AppLogWatcher {
    fn next(&mut self) -> impl std::future::Future<Output = Result<Outgoing, WatchEnd>> + Send {
        crate::AppLogWatcher::next(self)
    }
    fn next_ready(&mut self) -> Option<Outgoing> {
        crate::AppLogWatcher::next_ready(self)
    }
}

impl Feed for crate::FeedWatcher {
    fn next(&mut self) -> impl std::future::Future<Output = Result<Outgoing, WatchEnd>> + Send {
        crate::FeedWatcher::next(self)
    }
    fn next_ready(&mut self) -> Option<Outgoing> {
        crate::FeedWatcher::next_ready(self)
    }
}

pub enum WatchEnd {
    /// The terminal status was sent.
    Finished,
    /// The engine is shutting down; the client should resume with `since`.
    Shutdown,
}

impl Watcher {
    /// A viewer of a deployment that is still running.
    pub(crate) fn live(
        id: DeploymentId,
        store: LogStore,
        stream: Arc<DeploymentStream>,
        since: Seq,
    ) -> Watcher {
        let Snapshot {
            status,
            last_seq,
            rx,
        } = stream.snapshot();
        if status.status.is_terminal() {
            // It ended between the lookup and the snapshot.
            return Watcher::finished(id, store, status, since, last_seq);
        }
        let mut watcher = Watcher::start(id, store, status, since, last_seq);
        watcher.stream = Some(stream);
        watcher.rx = Some(rx);
        watcher
    }

    /// A viewer of a deployment that has ended: status, remaining lines, status again.
    pub(crate) fn finished(
        id: DeploymentId,
        store: LogStore,
        status: StatusData,
        since: Seq,
        last_seq: Seq,
    ) -> Watcher {
        let mut watcher = Watcher::start(id, store, status.clone(), since, last_seq);
        watcher.status_after_catch_up = Some(status);
        watcher
    }

    fn start(
        id: DeploymentId,
        store: LogStore,
        status: StatusData,
        since: Seq,
        last_seq: Seq,
    ) -> Watcher {
        let mut ready = VecDeque::new();
        ready.push_back(status_message(&status, false));
        Watcher {
            id,
            store,
            stream: None,
            rx: None,
            ready,
            last_sent_seq: since,
            catch_up_to: last_seq,
            status_after_catch_up: None,
            last_status: status,
            done: false,
        }
    }

    /// The next message for the client, or how the stream ended.
    pub async fn next(&mut self) -> Result<Outgoing, WatchEnd> {
        loop {
            if let Some(message) = self.pop_ready() {
                return Ok(message);
            }
            if self.done {
                return Err(WatchEnd::Finished);
            }
            if self.last_sent_seq < self.catch_up_to {
                self.catch_up().await;
                continue;
            }
            if let Some(status) = self.status_after_catch_up.take() {
                // A finished deployment repeats its terminal status last; a resynced
                // viewer hears of a change it missed.
                if status.status.is_terminal() || status.differs_from(&self.last_status) {
                    self.last_status = status.clone();
                    self.ready
                        .push_back(status_message(&status, status.status.is_terminal()));
                }
                continue;
            }
            let Some(rx) = self.rx.as_mut() else {
                return Err(WatchEnd::Finished);
            };
            match rx.recv().await {
                Ok(published) => {
                    if let Some(message) = self.accept(published) {
                        return Ok(message);
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(
                        deployment.id = self.id,
                        missed,
                        "viewer lagged; catching up from the store"
                    );
                    self.resync();
                }
                Err(RecvError::Closed) => return Err(WatchEnd::Shutdown),
            }
        }
    }

    /// The next message if one is available without waiting: lets the socket write a
    /// burst of frames with one flush.
    pub fn next_ready(&mut self) -> Option<Outgoing> {
        if let Some(message) = self.pop_ready() {
            return Some(message);
        }
        if self.done
            || self.last_sent_seq < self.catch_up_to
            || self.status_after_catch_up.is_some()
        {
            return None;
        }
        match self.rx.as_mut()?.try_recv() {
            Ok(published) => self.accept(published),
            Err(TryRecvError::Lagged(_)) => {
                self.resync();
                None
            }
            Err(_) => None,
        }
    }

    fn pop_ready(&mut self) -> Option<Outgoing> {
        let message = self.ready.pop_front()?;
        if message.terminal {
            self.done = true;
        }
        if self.ready.is_empty() && self.ready.capacity() > IDLE_READY {
            // A catch-up filled it; an idle viewer should not keep that room.
            self.ready = VecDeque::new();
        }
        Some(message)
    }

    /// Takes one live event: the message to send now, if any.
    fn accept(&mut self, published: Published) -> Option<Outgoing> {
        match published {
            Published::Log { seq, json } => {
                if seq == self.last_sent_seq.saturating_add(1) {
                    self.last_sent_seq = seq;
                    self.catch_up_to = seq;
                    return Some(Outgoing {
                        json,
                        terminal: false,
                    });
                } else if seq > self.last_sent_seq.saturating_add(1) {
                    // Lines we have not sent yet are in the store: read them in order.
                    self.catch_up_to = seq;
                }
                None
            }
            Published::Status { data, json } => {
                if data.differs_from(&self.last_status) {
                    let terminal = data.status.is_terminal();
                    if terminal {
                        self.done = true;
                    }
                    self.last_status = data;
                    return Some(Outgoing { json, terminal });
                }
                None
            }
        }
    }

    fn resync(&mut self) {
        if let Some(stream) = &self.stream {
            let Snapshot {
                status,
                last_seq,
                rx,
            } = stream.snapshot();
            // A terminal snapshot means no more events: drop the receiver and finish from
            // the store, ending with that status.
            self.rx = (!status.status.is_terminal()).then_some(rx);
            self.catch_up_to = self.catch_up_to.max(last_seq);
            self.status_after_catch_up = Some(status);
        }
    }

    async fn catch_up(&mut self) {
        let from = self.last_sent_seq.saturating_add(1);
        let to = self
            .catch_up_to
            .min(self.last_sent_seq.saturating_add(CATCH_UP_BATCH));
        match self
            .store
            .read_bounded(self.id, from, to, CATCH_UP_BYTES)
            .await
        {
            Ok(lines) if !lines.is_empty() => {
                let timestamp = crate::time::now();
                for line in lines {
                    self.last_sent_seq = line.seq;
                    let json = bus::to_json(&Event::Log {
                        timestamp: timestamp.clone(),
                        data: line,
                    });
                    self.ready.push_back(Outgoing {
                        json,
                        terminal: false,
                    });
                }
            }
            Ok(_) => {
                // The store holds fewer lines than announced (it was removed): stop asking.
                self.catch_up_to = self.last_sent_seq;
            }
            Err(e) => {
                tracing::error!(deployment.id = self.id, error = %e, "reading the log store failed");
                self.catch_up_to = self.last_sent_seq;
            }
        }
    }
}

fn status_message(status: &StatusData, terminal: bool) -> Outgoing {
    Outgoing {
        json: bus::to_json(&Event::Status {
            timestamp: crate::time::now(),
            data: status.clone(),
        }),
        terminal,
    }
}
