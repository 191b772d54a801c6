//! `use_event_feed`: the installation's event feed (`GET /api/events`) as a signal, for the
//! live lists. Beside `use_deployment_monitor`, and built the same way: the page is
//! rendered on the server with the feed's newest id, and the hook resumes from it, so no
//! event between the render and the socket is missed or doubled; after a dropped
//! connection it reconnects with backoff and `since=<last id>`. When the feed no longer
//! keeps what it missed (`gone`), the page loads again. On the server it does nothing.

use leptos::prelude::*;
use protocol::{FeedEvent, FeedId};

/// Calls `on_event` with every event after `since`, in order, once each, while the
/// component lives. `session_ended` is set when the server refuses the session (signed out
/// or revoked): the page then says so.
pub fn use_event_feed(
    since: FeedId,
    on_event: impl Fn(FeedEvent) + Clone + 'static,
) -> ReadSignal<bool> {
    let (session_ended, set_session_ended) = signal(false);
    Effect::new(move |_| {
        #[cfg(feature = "hydrate")]
        browser::start(since, on_event.clone(), set_session_ended);
        #[cfg(not(feature = "hydrate"))]
        let _ = (since, &on_event, set_session_ended);
    });
    session_ended
}

#[cfg(feature = "hydrate")]
mod browser {
    use futures_util::StreamExt;
    use gloo_net::websocket::{Message, WebSocketError, futures::WebSocket};
    use leptos::prelude::*;
    use protocol::{ErrorCode, FeedEvent, FeedId};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    pub fn start(
        since: FeedId,
        on_event: impl Fn(FeedEvent) + 'static,
        session_ended: WriteSignal<bool>,
    ) {
        let stopped = Arc::new(AtomicBool::new(false));
        let flag = stopped.clone();
        on_cleanup(move || flag.store(true, Ordering::Relaxed));
        leptos::task::spawn_local(run(since, on_event, session_ended, stopped));
    }

    fn url(since: FeedId) -> String {
        crate::monitor::socket_url(&format!("/api/events?since={since}"))
    }

    async fn run(
        mut last: FeedId,
        on_event: impl Fn(FeedEvent),
        session_ended: WriteSignal<bool>,
        stopped: Arc<AtomicBool>,
    ) {
        let mut failures = 0i32;
        loop {
            if stopped.load(Ordering::Relaxed) {
                return;
            }
            if let Ok(socket) = WebSocket::open(&url(last)) {
                let (_write, mut read) = socket.split();
                while let Some(message) = read.next().await {
                    if stopped.load(Ordering::Relaxed) {
                        return;
                    }
                    match message {
                        Ok(Message::Text(text)) => {
                            let Ok(event) = serde_json::from_str::<FeedEvent>(&text) else {
                                continue;
                            };
                            failures = 0;
                            match (&event, event.id()) {
                                (FeedEvent::Error { data, .. }, _) => match data.code {
                                    ErrorCode::Gone => {
                                        let _ = window().location().reload();
                                        return;
                                    }
                                    ErrorCode::Unauthorized | ErrorCode::Forbidden => {
                                        session_ended.set(true);
                                        return;
                                    }
                                    _ => {}
                                },
                                (_, Some(id)) if id > last => {
                                    last = id;
                                    on_event(event);
                                }
                                _ => {}
                            }
                        }
                        Ok(_) => {}
                        Err(WebSocketError::ConnectionClose(close))
                            if (4400..4500).contains(&close.code) =>
                        {
                            session_ended.set(matches!(close.code, 4401 | 4403));
                            return;
                        }
                        Err(_) => break,
                    }
                }
            }
            failures = failures.saturating_add(1);
            crate::monitor::back_off(failures).await;
        }
    }
}
