//! The monitor WebSocket: `GET /api/deployments/logs?id=N[&since=S][&batch=1]`.
//!
//! With `batch=1` (the dashboard asks for it) every text frame is a JSON array of one or
//! more events, in order: a catch-up of thousands of lines travels in a few frames, and
//! the browser wakes once per frame instead of once per line. Without it every frame is
//! one event, as v1 says.
//!
//! One task per connection pumps its [`Watcher`] into the socket. The socket's send
//! waits for the client, so a slow client slows only its own watcher, which then
//! catches up from the store (bounded memory). Pings every 20 s; a peer silent for
//! 60 s is dropped, and so is one that reads nothing for 60 s while a write waits.

use crate::AppState;
use crate::auth::Access;
use crate::error::ApiError;
use axum::body::Body;
use axum::extract::{Extension, FromRequestParts, Query, State};
use axum::http::header::{
    CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use engine::{Feed, Outgoing, WatchEnd, Watcher};
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use protocol::{ErrorCode, Event, Seq};
use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, handshake::derive_accept_key};
use tokio_util::sync::CancellationToken;

/// A server's side of an upgraded connection.
type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

const PING_EVERY: Duration = Duration::from_secs(20);
const PEER_TIMEOUT: Duration = Duration::from_secs(60);
/// Clients send only pongs and closes: a small read buffer keeps idle sockets cheap (a
/// larger message gets room as it arrives).
const READ_BUFFER: usize = 256;
const MAX_CLIENT_MESSAGE: usize = 64 * 1024;
/// Frames are encoded into one buffer and written out once this much is in it: a burst of
/// catch-up lines goes out in a few large writes. The buffer lives only for the burst.
const WRITE_CHUNK: usize = 64 * 1024;
/// The bound on what tungstenite itself queues (pings, pongs, closes: a few bytes).
const MAX_WRITE_BUFFER: usize = 64 * 1024;
/// Messages taken from the watcher per burst at most.
const MAX_BURST: usize = 256;
/// A batched frame grows to about this much (one event larger than it goes alone).
const BATCH_BYTES: usize = 32 * 1024;
/// The longest one write may wait for the client to read: each waits for at most about
/// `WRITE_CHUNK` (plus one event) to drain, so a client that reads fewer than ~2 KiB/s,
/// or none (a full socket), is dropped like a silent peer. Without it, such a client
/// holds its connection task, and the watcher with the deployment's event stream, for
/// good.
const WRITE_TIMEOUT: Duration = PEER_TIMEOUT;
/// Monitor connections open now, for `/api/metrics`.
pub static VIEWERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A WebSocket upgrade request (RFC 6455, section 4.2.1), or `None` for any other request.
///
/// The connection is taken over by hand rather than through axum's `WebSocket` so that
/// events are written as frames straight from their text: tungstenite's send buffer keeps
/// the capacity of the largest burst it ever held, which was most of an idle viewer's
/// memory after its catch-up. Tungstenite still reads the client's frames and sends
/// pings and closes.
pub struct Upgrade(Option<(HeaderValue, hyper::upgrade::OnUpgrade)>);

impl Upgrade {
    pub fn is_websocket(&self) -> bool {
        self.0.is_some()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        let has_token = |headers: &HeaderMap, name, token: &str| {
            headers.get_all(name).iter().any(|v| {
                v.to_str()
                    .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            })
        };
        let h = &parts.headers;
        let valid = parts.method == Method::GET
            && has_token(h, CONNECTION, "upgrade")
            && has_token(h, UPGRADE, "websocket")
            && h.get(SEC_WEBSOCKET_VERSION).is_some_and(|v| v == "13");
        let key = h.get(SEC_WEBSOCKET_KEY).cloned();
        Ok(Upgrade(match (valid, key) {
            (true, Some(key)) => parts
                .extensions
                .remove::<hyper::upgrade::OnUpgrade>()
                .map(|on| (key, on)),
            _ => None,
        }))
    }
}

pub async fn monitor(
    State(state): State<AppState>,
    access: Option<Extension<Access>>,
    Query(query): Query<HashMap<String, String>>,
    upgrade: Upgrade,
) -> Response {
    // Credentials first: nobody learns whether a deployment exists without them.
    let watcher = match granted(access) {
        Ok(()) => open(&state, &query).await,
        Err(refusal) => Err(refusal),
    };
    let batch = batched(&query);
    socket(&state, watcher, upgrade, "GET /api/deployments/logs", batch)
}

/// Whether the client asked for frames of several events (`batch=1`); anything else is
/// v1's one event per frame.
pub(crate) fn batched(query: &HashMap<String, String>) -> bool {
    query.get("batch").is_some_and(|b| b == "1")
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
    upgrade: Upgrade,
    route: &str,
    batch: bool,
) -> Response {
    let Upgrade(Some((key, on_upgrade))) = upgrade else {
        return match feed {
            Err(e) => e.into_response(),
            Ok(_) => ApiError::bad_request(format!(
                "{route} is a WebSocket: connect with an Upgrade: websocket request"
            ))
            .into_response(),
        };
    };
    let closing = state.closing.clone();
    let task = async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                tracing::debug!("a WebSocket upgrade failed: {e}");
                return;
            }
        };
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .write_buffer_size(0)
            .max_write_buffer_size(MAX_WRITE_BUFFER)
            .max_message_size(Some(MAX_CLIENT_MESSAGE))
            .max_frame_size(Some(MAX_CLIENT_MESSAGE));
        let socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await;
        match feed {
            // A task of its own: this one's state (the upgrade, the handshake) is not
            // kept for the connection's whole life.
            Ok(feed) => drop(tokio::spawn(serve(socket, feed, closing, batch))),
            Err(e) => Box::pin(refuse(socket, e)).await,
        }
    };
    tokio::spawn(task);
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
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

pub(crate) async fn refuse(mut socket: Socket, error: ApiError) {
    let event = Event::Error {
        timestamp: engine::time::now(),
        data: error.body(),
    };
    let json = serde_json::to_string(&event).unwrap_or_default();
    let _ = socket.send(Message::Text(json.into())).await;
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::from(error.code.close_code()),
            reason: error.message.chars().take(100).collect::<String>().into(),
        })))
        .await;
}

/// Counts a connection in [`VIEWERS`] while it lives.
struct Counted;

impl Counted {
    fn new() -> Counted {
        VIEWERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Counted
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        VIEWERS.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Sends `watcher`'s events until the stream ends, the client goes or the server shuts
/// down. One layer of future only, and every write boxed: the task of an idle viewer is
/// as small as its state while it waits.
async fn serve(
    mut socket: Socket,
    mut watcher: impl Feed,
    closing: CancellationToken,
    batch: bool,
) {
    let _counted = Counted::new();
    let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    let mut last_heard = Instant::now();
    let close_code = loop {
        tokio::select! {
            next = watcher.next() => match next {
                Ok(message) => {
                    // Take what is ready too (catch-up, bursts) and write it at once:
                    // one event per frame, or arrays of them with `batch`.
                    // At most about WRITE_CHUNK per write: a slow client has the whole
                    // WRITE_TIMEOUT for it, even with a catch-up of 16 KiB lines.
                    let mut terminal = message.terminal;
                    let mut bytes = message.json.len();
                    let mut burst = vec![message];
                    while !terminal && burst.len() < MAX_BURST && bytes < WRITE_CHUNK {
                        match watcher.next_ready() {
                            Some(more) => {
                                terminal = more.terminal;
                                bytes += more.json.len();
                                burst.push(more);
                            }
                            None => break,
                        }
                    }
                    // Boxed, like every write: a connection's task is as large as its
                    // largest state, and it idles far more than it writes.
                    if !Box::pin(written(send(&mut socket, &burst, batch))).await {
                        return;
                    }
                    if terminal {
                        break 1000;
                    }
                }
                Err(WatchEnd::Finished) => break 1000,
                Err(WatchEnd::Shutdown) => break 1001,
            },
            incoming = socket.next() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => last_heard = Instant::now(),
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > PEER_TIMEOUT {
                    tracing::debug!("dropping a monitor peer silent for 60 s");
                    return;
                }
                if !Box::pin(written(socket.send(Message::Ping(Default::default())))).await {
                    return;
                }
            }
            _ = closing.cancelled() => break 1001,
        }
    };
    Box::pin(close(socket, close_code)).await;
}

/// Closes with `code`, then waits briefly for the client's close so that the connection
/// ends cleanly.
async fn close(mut socket: Socket, code: u16) {
    let close = socket.send(Message::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: "".into(),
    })));
    if !written(close).await {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(message)) = socket.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// Writes `burst` to the client as text frames (RFC 6455, section 5.2: a server's frames
/// are not masked) encoded straight from the events' text into a buffer that lives only
/// for this burst, written out every [`WRITE_CHUNK`].
async fn send(socket: &mut Socket, burst: &[Outgoing], batch: bool) -> std::io::Result<()> {
    // Whatever tungstenite queued (a pong) goes first, whole: frames never interleave.
    socket.flush().await.map_err(std::io::Error::other)?;
    let mut out = Vec::with_capacity(WRITE_CHUNK.min(encoded_len(burst, batch)));
    let io = socket.get_mut();
    let mut write = async |out: &mut Vec<u8>, frame: &[&str]| -> std::io::Result<()> {
        let len = frame.iter().map(|p| p.len()).sum::<usize>();
        frame_header(out, len);
        for piece in frame {
            out.extend_from_slice(piece.as_bytes());
        }
        if out.len() >= WRITE_CHUNK {
            io.write_all(out).await?;
            out.clear();
        }
        Ok(())
    };
    if !batch {
        for message in burst {
            write(&mut out, &[&message.json]).await?;
        }
    } else {
        for group in batches(burst) {
            let mut pieces = Vec::with_capacity(group.len() * 2 + 1);
            for (n, message) in group.iter().enumerate() {
                pieces.push(if n == 0 { "[" } else { "," });
                pieces.push(&message.json);
            }
            pieces.push("]");
            write(&mut out, &pieces).await?;
        }
    }
    io.write_all(&out).await?;
    io.flush().await
}

/// `burst` cut into runs whose array fits in [`BATCH_BYTES`] (an event larger than that
/// goes alone).
fn batches(burst: &[Outgoing]) -> Vec<&[Outgoing]> {
    let mut groups = Vec::new();
    let (mut start, mut size) = (0, 1);
    for (n, message) in burst.iter().enumerate() {
        if n > start && size + message.json.len() + 1 > BATCH_BYTES {
            groups.push(&burst[start..n]);
            (start, size) = (n, 1);
        }
        size += message.json.len() + 1;
    }
    if start < burst.len() {
        groups.push(&burst[start..]);
    }
    groups
}

/// About how many bytes `burst` takes on the wire.
fn encoded_len(burst: &[Outgoing], batch: bool) -> usize {
    let text: usize = burst.iter().map(|m| m.json.len() + 1).sum();
    text + if batch { 10 } else { 10 * burst.len() }
}

/// The header of an unmasked, final text frame of `len` bytes.
fn frame_header(out: &mut Vec<u8>, len: usize) {
    out.push(0x81);
    if len < 126 {
        out.push(len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.push(126);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn message(len: usize) -> Outgoing {
        Outgoing {
            json: Arc::from("x".repeat(len)),
            terminal: false,
        }
    }

    #[test]
    fn frame_headers_use_the_shortest_length_encoding() {
        let header = |len| {
            let mut out = Vec::new();
            frame_header(&mut out, len);
            out
        };
        assert_eq!(header(0), [0x81, 0]);
        assert_eq!(header(125), [0x81, 125]);
        assert_eq!(header(126), [0x81, 126, 0, 126]);
        assert_eq!(header(65_535), [0x81, 126, 0xff, 0xff]);
        assert_eq!(header(65_536), [0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn batches_fill_up_to_their_size_and_a_large_event_goes_alone() {
        let burst: Vec<Outgoing> = [10_000, 10_000, 10_000, 10_000, 40_000, 5]
            .into_iter()
            .map(message)
            .collect();
        let sizes: Vec<usize> = batches(&burst).iter().map(|g| g.len()).collect();
        assert_eq!(sizes, [3, 1, 1, 1]);
        assert_eq!(sizes.iter().sum::<usize>(), burst.len());
        assert!(batches(&[]).is_empty());
    }
}
