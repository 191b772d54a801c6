//! The monitor WebSocket: `GET /api/deployments/logs?id=N[&since=S]`.
//!
//! One task per connection pumps its [`Watcher`] into the socket. The socket's send
//! waits for the client, so a slow client slows only its own watcher, which then
//! catches up from the store (bounded memory). Pings every 20 s; a peer silent for
//! 60 s is dropped, and so is one that reads nothing for 60 s while a write waits.

use crate::AppState;
use crate::auth::Access;
use crate::error::ApiError;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, Query, State};
use axum::response::{IntoResponse, Response};
use engine::{Feed, WatchEnd, Watcher};
use futures_util::{SinkExt, StreamExt};
use protocol::{ErrorCode, Event, Seq};
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const PING_EVERY: Duration = Duration::from_secs(20);
const PEER_TIMEOUT: Duration = Duration::from_secs(60);
/// Clients send only pongs and closes: a small read buffer keeps idle sockets cheap.
const READ_BUFFER: usize = 4 * 1024;
const MAX_CLIENT_MESSAGE: usize = 64 * 1024;
/// Frames are written out once this much is queued: a burst of catch-up lines goes out in
/// a few large writes.
const WRITE_BUFFER: usize = 64 * 1024;
/// The send queue's hard bound. Feeding a frame first writes out what is queued beyond
/// `WRITE_BUFFER`, waiting for the client if it must, so the queue holds about
/// `WRITE_BUFFER` plus one frame (at most ~100 KiB of escaped JSON); this limit only turns
/// a bug into a failed connection instead of unbounded memory. A slow client makes the
/// writes wait, and its viewer catches up from the store afterwards.
const MAX_WRITE_BUFFER: usize = 8 * 1024 * 1024;
/// Frames written per flush at most.
const MAX_BURST: usize = 256;
/// The longest one write may wait for the client to read: each waits for at most about
/// `WRITE_BUFFER` plus one frame to drain, so a client that reads fewer than ~1 KiB/s, or
/// none (a full socket), is dropped like a silent peer. Without it, such a client holds
/// its connection task, and the watcher with the deployment's event stream, for good.
const WRITE_TIMEOUT: Duration = PEER_TIMEOUT;
/// Monitor connections open now, for `/api/metrics`.
pub static VIEWERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

pub async fn monitor(
    State(state): State<AppState>,
    access: Option<Extension<Access>>,
    Query(query): Query<HashMap<String, String>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    // Credentials first: nobody learns whether a deployment exists without them.
    let watcher = match granted(access) {
        Ok(()) => open(&state, &query).await,
        Err(refusal) => Err(refusal),
    };
    socket(&state, watcher, upgrade, "GET /api/deployments/logs")
}

/// What the gate decided for a socket (it lets sockets through, so that a refusal is
/// answered as an error event and a 44xx close).
pub(crate) fn granted(access: Option<Extension<Access>>) -> Result<(), ApiError> {
    match access.map(|Extension(access)| access) {
        Some(Access::Granted(_)) => Ok(()),
        Some(Access::Refused(refusal)) => Err(refusal),
        None => Err(ApiError::new(
            ErrorCode::Unauthorized,
            "no credentials were checked for this request",
        )),
    }
}

/// Upgrades to a WebSocket that sends `feed`, or refuses with an error event and a 44xx
/// close code; a plain HTTP request gets the error as JSON. `route` names the socket in
/// the error for a request without the upgrade.
pub(crate) fn socket<F: Feed + 'static>(
    state: &AppState,
    feed: Result<F, ApiError>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    route: &str,
) -> Response {
    let watcher = feed;
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(_) => {
            return match watcher {
                Err(e) => e.into_response(),
                Ok(_) => ApiError::bad_request(format!(
                    "{route} is a WebSocket: connect with an Upgrade: websocket request"
                ))
                .into_response(),
            };
        }
    };
    let closing = state.closing.clone();
    upgrade
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| async move {
            match watcher {
                Ok(watcher) => serve(socket, watcher, closing).await,
                Err(e) => refuse(socket, e).await,
            }
        })
}

async fn open(state: &AppState, query: &HashMap<String, String>) -> Result<Watcher, ApiError> {
    let id = query.get("id").ok_or_else(|| {
        ApiError::bad_request("id is required: /api/deployments/logs?id=<deployment id>")
    })?;
    let id = crate::api::parse_id("id", id)?;
    let since = match query.get("since") {
        None => 0,
        Some(text) => text.parse::<Seq>().map_err(|_| {
            ApiError::bad_request(format!(
                "since must be a non-negative integer, not {text:?}"
            ))
        })?,
    };
    Ok(state.engine.watch(id, since).await?)
}

pub(crate) async fn refuse(mut socket: WebSocket, error: ApiError) {
    let event = Event::Error {
        timestamp: engine::time::now(),
        data: error.body(),
    };
    let json = serde_json::to_string(&event).unwrap_or_default();
    let _ = socket.send(Message::Text(json.into())).await;
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: error.code.close_code(),
            reason: error.message.chars().take(100).collect::<String>().into(),
        })))
        .await;
}

pub(crate) async fn serve(socket: WebSocket, watcher: impl Feed, closing: CancellationToken) {
    VIEWERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    pump(socket, watcher, closing).await;
    VIEWERS.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
}

async fn pump(socket: WebSocket, mut watcher: impl Feed, closing: CancellationToken) {
    let (mut tx, mut rx) = socket.split();
    let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    let mut last_heard = Instant::now();
    let close_code = loop {
        tokio::select! {
            next = watcher.next() => match next {
                Ok(message) => {
                    // Feed what is ready (catch-up, bursts) and flush once: many frames
                    // per write, still one event per frame.
                    let mut terminal = message.terminal;
                    let mut burst = vec![message];
                    while !terminal && burst.len() < MAX_BURST {
                        match watcher.next_ready() {
                            Some(more) => {
                                terminal = more.terminal;
                                burst.push(more);
                            }
                            None => break,
                        }
                    }
                    for message in burst {
                        let frame = Message::Text(message.json.as_ref().into());
                        if !written(tx.feed(frame)).await {
                            return;
                        }
                    }
                    if !written(tx.flush()).await {
                        return;
                    }
                    if terminal {
                        break 1000;
                    }
                }
                Err(WatchEnd::Finished) => break 1000,
                Err(WatchEnd::Shutdown) => break 1001,
            },
            incoming = rx.next() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => last_heard = Instant::now(),
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > PEER_TIMEOUT {
                    tracing::debug!("dropping a monitor peer silent for 60 s");
                    return;
                }
                if !written(tx.send(Message::Ping(Default::default()))).await {
                    return;
                }
            }
            _ = closing.cancelled() => break 1001,
        }
    };
    let close = tx.send(Message::Close(Some(CloseFrame {
        code: close_code,
        reason: "".into(),
    })));
    if !written(close).await {
        return;
    }
    // Wait briefly for the client's close so the connection ends cleanly.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(message)) = rx.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// Whether a write to the client finished within [`WRITE_TIMEOUT`]; `false` drops it.
async fn written<E>(write: impl Future<Output = Result<(), E>>) -> bool {
    match tokio::time::timeout(WRITE_TIMEOUT, write).await {
        Ok(result) => result.is_ok(),
        Err(_) => {
            tracing::debug!("dropping a monitor peer that read nothing for 60 s");
            false
        }
    }
}
