//! Several nodes on one PostgreSQL (PROTOCOL.md, "A cluster"), and the one node of a
//! SQLite installation, which is a cluster of one.
//!
//! PostgreSQL is the only thing the nodes share: no broker, no consensus of our own.
//! - Each node has a row in `nodes` and refreshes its `last_seen` (a heartbeat) every
//!   quarter of `SLIPWAY_NODE_LEASE_SECS`. A node unheard for longer than the lease is
//!   lost: any other node ends its in-flight deployments `failed`, naming it and the
//!   stage. A node that comes back finds them ended, and every write of a run is a
//!   compare-and-set on the status (and its claim), so it changes nothing.
//! - Claims are exact because the database refuses a second in-flight deployment of an
//!   app (a partial unique index), whatever the isolation level; see `db::transition`.
//! - Wake-ups go through LISTEN/NOTIFY, which PostgreSQL delivers at commit: a queued
//!   deployment (or an app freed) wakes idle workers on every node; a cancel reaches
//!   the node that runs the deployment; a sign-out or revoked token makes every node
//!   read its sessions again; a status change reaches viewers on every node.
//! - Log lines are stored in PostgreSQL too (`log_lines`), one INSERT and one NOTIFY per
//!   batch; every other node copies them into its own log store and publishes them to
//!   its viewers, so every read path (catch-up, resume, ranges, search, download) works
//!   on every node with the same seqs. A node that missed some copies them when a
//!   viewer or a reader asks. NOTIFY reaches only sessions already listening, so workers also look
//!   for work every few seconds (the fallback), and a reconnected listener treats the
//!   gap as a wake-up of every kind.

use crate::db::{self, Dialect, Pool};
use protocol::DeploymentId;
use std::time::Duration;
use tokio::sync::mpsc;

/// What one node tells the others. The channel names are PostgreSQL identifiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Signal {
    /// A deployment was queued or an app became free: idle workers look for work.
    Queue,
    /// Cancel this deployment, wherever it runs.
    Cancel(DeploymentId),
    /// Sessions or tokens were revoked: forget what is cached.
    Auth,
    /// A deployment's status changed, committed by node `by`: the other nodes' viewers
    /// of it read it from the database.
    Status { id: DeploymentId, by: String },
    /// Node `by` stored more lines of a deployment's log: the others copy them.
    Lines { id: DeploymentId, by: String },
    /// Node `by` committed events of the feed: the others publish them to their viewers.
    Feed { by: String },
}

const QUEUE: &str = "slipway_queue";
const CANCEL: &str = "slipway_cancel";
const AUTH: &str = "slipway_auth";
const STATUS: &str = "slipway_status";
const LINES: &str = "slipway_lines";
const FEED: &str = "slipway_feed";

impl Signal {
    pub(crate) fn channel_and_payload(&self) -> (&'static str, String) {
        match self {
            Signal::Queue => (QUEUE, String::new()),
            Signal::Cancel(id) => (CANCEL, id.to_string()),
            Signal::Auth => (AUTH, String::new()),
            Signal::Status { id, by } => (STATUS, format!("{id} {by}")),
            Signal::Lines { id, by } => (LINES, format!("{id} {by}")),
            Signal::Feed { by } => (FEED, by.clone()),
        }
    }

    fn parse(channel: &str, payload: &str) -> Option<Signal> {
        match channel {
            QUEUE => Some(Signal::Queue),
            CANCEL => payload.parse().ok().map(Signal::Cancel),
            AUTH => Some(Signal::Auth),
            FEED => Some(Signal::Feed {
                by: payload.to_owned(),
            }),
            STATUS | LINES => {
                let (id, by) = payload.split_once(' ')?;
                let (id, by) = (id.parse().ok()?, by.to_owned());
                Some(if channel == STATUS {
                    Signal::Status { id, by }
                } else {
                    Signal::Lines { id, by }
                })
            }
            _ => None,
        }
    }
}

/// This node's place in the cluster.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub name: String,
    pub addr: String,
    pub lease: Duration,
    pub dialect: Dialect,
}

impl Node {
    /// Whether other nodes may share the database (PostgreSQL).
    pub(crate) fn clustered(&self) -> bool {
        self.dialect == Dialect::Postgres
    }

    /// How often this node says it is alive, and looks for lost nodes.
    pub(crate) fn heartbeat(&self) -> Duration {
        (self.lease / 4).max(Duration::from_millis(250))
    }

    /// How often idle workers look for work without being woken: never on one node
    /// (every wake-up is in-process); a few seconds in a cluster, in case a
    /// notification was lost with a connection.
    pub(crate) fn fallback_poll(&self) -> Option<Duration> {
        self.clustered().then_some(Duration::from_secs(3))
    }

    /// Tells every node (this one included) `signal`. Nothing to do on one node.
    pub(crate) async fn announce(&self, pool: &Pool, signal: Signal) {
        if !self.clustered() {
            return;
        }
        let (channel, payload) = signal.channel_and_payload();
        if let Err(e) = db::notify(pool, channel, &payload).await {
            tracing::warn!(%channel, error = %e, "could not notify the other nodes");
        }
    }
}

/// Listens for other nodes' signals and hands them to `signals`, reconnecting when the
/// connection drops (a reconnection is reported as every signal, since some may have
/// been missed). Returns when `signals` is closed.
pub(crate) async fn listen(url: String, signals: mpsc::UnboundedSender<Signal>) {
    use sqlx::postgres::PgListener;
    let mut backoff = Duration::from_millis(100);
    loop {
        let listener = async {
            let mut listener = PgListener::connect(&url).await?;
            listener.ignore_pool_close_event(true);
            listener
                .listen_all([QUEUE, CANCEL, AUTH, STATUS, LINES, FEED])
                .await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = match listener.await {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!(error = %e, "could not listen to the other nodes; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                if signals.is_closed() {
                    return;
                }
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        // Whatever was said while this node was not listening.
        for signal in missed() {
            if signals.send(signal).is_err() {
                return;
            }
        }
        loop {
            // `try_recv` gives `None` when the connection was lost (and reconnects
            // at the next call): treated as a missed wake-up of every kind.
            let signal = match listener.try_recv().await {
                Ok(Some(message)) => Signal::parse(message.channel(), message.payload()),
                Ok(None) => {
                    tracing::warn!("the connection that listens to the other nodes was lost");
                    for signal in missed() {
                        if signals.send(signal).is_err() {
                            return;
                        }
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "listening to the other nodes failed; reconnecting");
                    break;
                }
            };
            if let Some(signal) = signal
                && signals.send(signal).is_err()
            {
                return;
            }
        }
    }
}

/// What a listener that was not listening may have missed: work, sessions, events.
fn missed() -> [Signal; 3] {
    let by = String::new();
    [Signal::Queue, Signal::Auth, Signal::Feed { by }]
}

/// The message of a deployment ended because its node was lost.
pub(crate) fn lost_message(node: &str, stage: protocol::Status, last_seen: &str) -> String {
    format!(
        "the node {node} that ran this deployment was lost during {stage} (last heard from at {last_seen})"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_round_trip_through_channel_and_payload() {
        let status = Signal::Status {
            id: 7,
            by: "node-a:3000".into(),
        };
        let lines = Signal::Lines {
            id: 8,
            by: "node-b".into(),
        };
        let feed = Signal::Feed {
            by: "node-c".into(),
        };
        for signal in [
            Signal::Queue,
            Signal::Cancel(42),
            Signal::Auth,
            status,
            lines,
            feed,
        ] {
            let (channel, payload) = signal.channel_and_payload();
            assert_eq!(Signal::parse(channel, &payload), Some(signal));
        }
        assert_eq!(Signal::parse(CANCEL, "x"), None);
        assert_eq!(Signal::parse("other", ""), None);
    }

    #[test]
    fn one_node_polls_never_and_a_cluster_rarely() {
        let mut node = Node {
            name: "a".into(),
            addr: "127.0.0.1:1".into(),
            lease: Duration::from_secs(10),
            dialect: Dialect::Sqlite,
        };
        assert_eq!(node.fallback_poll(), None);
        assert_eq!(node.heartbeat(), Duration::from_millis(2500));
        node.dialect = Dialect::Postgres;
        assert!(node.fallback_poll().is_some());
    }
}
