//! The event feed (`GET /api/events`): every deployment created or changing status, every
//! app created, changed or deleted, in one ordered stream.
//!
//! Each event is a row of the `events` table, written in the same transaction as the
//! change it reports, so its `id` comes from the database (one sequence for the whole
//! installation) and a change is never without its event. [`EventFeed::order`] is held
//! from that transaction until the event is published, so events are published in `id`
//! order. The newest [`FEED_KEPT`] events are also kept in memory, where a viewer catches
//! up from after connecting with `since` (a viewer further behind gets `gone`).

use crate::bus::to_json_with;
use crate::watch::{Outgoing, WatchEnd};
use protocol::{FEED_KEPT, FeedEvent, FeedId};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

/// Events kept for viewers a little behind; further behind, they read the ring.
const CHANNEL_CAPACITY: usize = 1024;

pub struct EventFeed {
    state: Mutex<State>,
    /// Held from the transaction that writes an event until it is published.
    order: tokio::sync::Mutex<()>,
}

struct State {
    /// The newest events, oldest first: (id, JSON).
    ring: VecDeque<(FeedId, Arc<str>)>,
    /// The newest id published.
    last: FeedId,
    tx: broadcast::Sender<(FeedId, Arc<str>)>,
}

/// `since` is older than what the feed keeps.
#[derive(Debug)]
pub struct Gone {
    pub oldest: FeedId,
}

impl EventFeed {
    /// A feed holding `events` (the newest stored, oldest first).
    pub(crate) fn new(events: Vec<FeedEvent>, last: FeedId) -> EventFeed {
        let ring = events
            .into_iter()
            .filter_map(|e| Some((e.id()?, to_json_with(&e))))
            .collect();
        let (tx, _) = broadcast::channel(CHANNEL_CAPACITY);
        EventFeed {
            state: Mutex::new(State { ring, last, tx }),
            order: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Held while an event is written and until it is published.
    pub(crate) async fn order(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.order.lock().await
    }

    /// Publishes a stored event (call it with [`EventFeed::order`] held).
    pub(crate) fn publish(&self, event: &FeedEvent) {
        let Some(id) = event.id() else { return };
        let json = to_json_with(event);
        let mut state = self.lock();
        state.last = state.last.max(id);
        state.ring.push_back((id, json.clone()));
        while state.ring.len() as u64 > FEED_KEPT {
            state.ring.pop_front();
        }
        let _ = state.tx.send((id, json));
    }

    /// The newest event's id (0 before any).
    pub fn last_id(&self) -> FeedId {
        self.lock().last
    }

    /// A viewer of every event after `since` (`None`: only new ones).
    pub fn watch(self: &Arc<Self>, since: Option<FeedId>) -> Result<FeedWatcher, Gone> {
        let state = self.lock();
        let since = since.unwrap_or(state.last).min(state.last);
        let oldest = state.ring.front().map_or(state.last + 1, |(id, _)| *id);
        if since + 1 < oldest {
            return Err(Gone { oldest });
        }
        let backlog = state
            .ring
            .iter()
            .filter(|(id, _)| *id > since)
            .cloned()
            .collect();
        Ok(FeedWatcher {
            feed: self.clone(),
            rx: state.tx.subscribe(),
            backlog,
            last: since,
        })
    }
}

/// One viewer of the feed.
pub struct FeedWatcher {
    feed: Arc<EventFeed>,
    rx: broadcast::Receiver<(FeedId, Arc<str>)>,
    backlog: VecDeque<(FeedId, Arc<str>)>,
    /// The newest id sent.
    last: FeedId,
}

impl FeedWatcher {
    fn take(&mut self, id: FeedId, json: Arc<str>) -> Option<Outgoing> {
        // Ids are published in order; anything at or before `last` was sent already.
        (id > self.last).then(|| {
            self.last = id;
            Outgoing {
                json,
                terminal: false,
            }
        })
    }

    /// Fell behind the channel: catch up from the ring, or end (the client resumes and
    /// is told `gone` if the ring no longer has what it missed).
    fn resync(&mut self) -> Result<(), WatchEnd> {
        match self.feed.watch(Some(self.last)) {
            Ok(fresh) => {
                self.rx = fresh.rx;
                self.backlog = fresh.backlog;
                Ok(())
            }
            Err(Gone { .. }) => Err(WatchEnd::Shutdown),
        }
    }

    pub async fn next(&mut self) -> Result<Outgoing, WatchEnd> {
        loop {
            if let Some((id, json)) = self.backlog.pop_front() {
                if let Some(out) = self.take(id, json) {
                    return Ok(out);
                }
                continue;
            }
            match self.rx.recv().await {
                Ok((id, json)) => {
                    if let Some(out) = self.take(id, json) {
                        return Ok(out);
                    }
                }
                Err(RecvError::Lagged(_)) => self.resync()?,
                Err(RecvError::Closed) => return Err(WatchEnd::Shutdown),
            }
        }
    }

    pub fn next_ready(&mut self) -> Option<Outgoing> {
        loop {
            if let Some((id, json)) = self.backlog.pop_front() {
                if let Some(out) = self.take(id, json) {
                    return Some(out);
                }
                continue;
            }
            match self.rx.try_recv() {
                Ok((id, json)) => {
                    if let Some(out) = self.take(id, json) {
                        return Some(out);
                    }
                }
                Err(TryRecvError::Lagged(_)) => {
                    if self.resync().is_err() {
                        return None;
                    }
                }
                Err(_) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{AppAction, AppChange};

    fn app_event(id: FeedId) -> FeedEvent {
        FeedEvent::App {
            id,
            timestamp: String::new(),
            data: AppChange {
                id: 1,
                name: "a".into(),
                action: AppAction::Updated,
            },
        }
    }

    fn ids(watcher: &mut FeedWatcher) -> Vec<FeedId> {
        let mut ids = Vec::new();
        while let Some(out) = watcher.next_ready() {
            let event: FeedEvent = serde_json::from_str(&out.json).expect("json");
            ids.push(event.id().expect("id"));
        }
        ids
    }

    #[test]
    fn a_viewer_gets_every_event_after_since_once_in_order() {
        let feed = Arc::new(EventFeed::new((1..=5).map(app_event).collect(), 5));
        let mut resumed = feed.watch(Some(3)).expect("kept");
        let mut fresh = feed.watch(None).expect("kept");
        for id in 6..=8 {
            feed.publish(&app_event(id));
        }
        // A duplicate publish (never happens) is not sent twice.
        feed.publish(&app_event(8));
        assert_eq!(ids(&mut resumed), vec![4, 5, 6, 7, 8]);
        assert_eq!(ids(&mut fresh), vec![6, 7, 8]);
    }

    #[test]
    fn a_since_older_than_the_ring_is_gone_and_a_lagging_viewer_catches_up() {
        let feed = Arc::new(EventFeed::new(Vec::new(), 0));
        let mut slow = feed.watch(Some(0)).expect("empty feed");
        let total = FEED_KEPT + 10;
        for id in 1..=total {
            feed.publish(&app_event(id));
        }
        assert!(matches!(feed.watch(Some(5)), Err(Gone { oldest: 11 })));
        assert!(feed.watch(Some(10)).is_ok());
        // `slow` lagged past the channel and the ring: it ends, and its resume is gone.
        assert!(ids(&mut slow).is_empty());
        let mut behind = feed.watch(Some(total - 2000)).expect("kept");
        assert_eq!(ids(&mut behind), (total - 1999..=total).collect::<Vec<_>>());
    }
}
