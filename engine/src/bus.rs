//! One ordered event stream per deployment.
//!
//! The worker appends a line to the [`LogStore`](crate::logstore::LogStore) and then
//! publishes it; it commits a status change to the database and then publishes it. Both
//! go through the same [`DeploymentStream`], under one lock, so viewers see events in the
//! order they happened (PROTOCOL.md guarantee 3) by construction.
//!
//! A viewer takes a [`Snapshot`] (current status, last published `seq`, and a receiver)
//! atomically under that lock: every event after the snapshot reaches the receiver, every
//! line up to it is in the store. Nobody polls anything.

use protocol::{DeploymentId, Event, LogLine, Seq, StatusData};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::broadcast;

/// Events kept for viewers that are a little behind. A viewer further behind gets
/// `Lagged` and catches up from the store, so this bounds memory, not correctness.
const STREAM_CAPACITY: usize = 4096;

/// An event as it travels to viewers: serialised once, shared by all of them.
#[derive(Debug, Clone)]
pub enum Published {
    Log { seq: Seq, json: Arc<str> },
    Status { data: StatusData, json: Arc<str> },
}

pub fn to_json(event: &Event) -> Arc<str> {
    to_json_with(event)
}

/// Any of our wire types, serialised once.
pub fn to_json_with<T: serde::Serialize>(event: &T) -> Arc<str> {
    // Our event types serialise infallibly: no maps with non-string keys, no I/O.
    serde_json::to_string(event)
        .unwrap_or_else(|e| {
            format!(r#"{{"type":"error","data":{{"code":"internal","message":"{e}"}}}}"#)
        })
        .into()
}

#[derive(Debug)]
pub struct DeploymentStream {
    // std Mutex: held only to update two fields and hand events to the channel, which
    // never blocks; no await happens under it.
    state: Mutex<StreamState>,
}

#[derive(Debug)]
struct StreamState {
    status: StatusData,
    last_seq: Seq,
    tx: broadcast::Sender<Published>,
}

pub struct Snapshot {
    pub status: StatusData,
    pub last_seq: Seq,
    pub rx: broadcast::Receiver<Published>,
}

impl DeploymentStream {
    pub(crate) fn new(status: StatusData, last_seq: Seq) -> Self {
        let (tx, _) = broadcast::channel(STREAM_CAPACITY);
        DeploymentStream {
            state: Mutex::new(StreamState {
                status,
                last_seq,
                tx,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, StreamState> {
        // A panic under this lock cannot leave the state half-written (plain assignments).
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn snapshot(&self) -> Snapshot {
        let state = self.lock();
        Snapshot {
            status: state.status.clone(),
            last_seq: state.last_seq,
            rx: state.tx.subscribe(),
        }
    }

    /// Publishes lines that are already in the store.
    pub fn publish_lines(&self, lines: &[LogLine]) {
        let mut state = self.lock();
        for line in lines {
            state.last_seq = line.seq;
            let json = to_json(&Event::Log {
                timestamp: crate::time::now(),
                data: line.clone(),
            });
            // No receivers is fine: nobody is watching.
            let _ = state.tx.send(Published::Log {
                seq: line.seq,
                json,
            });
        }
    }

    /// Publishes a status that is already committed to the database. Sends an event only
    /// when something a viewer sees changed.
    pub fn publish_status(&self, data: StatusData) {
        let mut state = self.lock();
        if !data.differs_from(&state.status) {
            state.status = data;
            return;
        }
        state.status = data.clone();
        let json = to_json(&Event::Status {
            timestamp: crate::time::now(),
            data: data.clone(),
        });
        let _ = state.tx.send(Published::Status { data, json });
    }
}

pub enum Lookup {
    Live(Arc<DeploymentStream>),
    /// The deployment ended while this process ran: read its final state from the database.
    Finished,
    Unknown,
}

/// The streams of every deployment this process has touched.
#[derive(Debug, Default)]
pub struct EventBus {
    entries: Mutex<HashMap<DeploymentId, Entry>>,
}

#[derive(Debug)]
enum Entry {
    Live(Arc<DeploymentStream>),
    Finished,
}

impl EventBus {
    fn lock(&self) -> MutexGuard<'_, HashMap<DeploymentId, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn get(&self, id: DeploymentId) -> Lookup {
        match self.lock().get(&id) {
            Some(Entry::Live(stream)) => Lookup::Live(stream.clone()),
            Some(Entry::Finished) => Lookup::Finished,
            None => Lookup::Unknown,
        }
    }

    /// The live stream of an unfinished deployment, created from `status` (read from the
    /// database) if nobody created it yet. `Finished` if it ended meanwhile.
    pub fn open(&self, status: StatusData, last_seq: Seq) -> Lookup {
        let mut entries = self.lock();
        match entries.get(&status.deployment_id) {
            Some(Entry::Live(stream)) => Lookup::Live(stream.clone()),
            Some(Entry::Finished) => Lookup::Finished,
            None if status.status.is_terminal() => Lookup::Finished,
            None => {
                let stream = Arc::new(DeploymentStream::new(status.clone(), last_seq));
                entries.insert(status.deployment_id, Entry::Live(stream.clone()));
                Lookup::Live(stream)
            }
        }
    }

    /// Publishes the terminal status (already committed) and closes the stream: viewers
    /// drain what they have, then see the channel close.
    pub fn finish(&self, terminal: StatusData) {
        let mut entries = self.lock();
        if let Some(Entry::Live(stream)) = entries.get(&terminal.deployment_id) {
            stream.publish_status(terminal.clone());
        }
        entries.insert(terminal.deployment_id, Entry::Finished);
    }

    /// Forgets a deployment (its app was deleted).
    pub fn forget(&self, id: DeploymentId) {
        self.lock().remove(&id);
    }
}
