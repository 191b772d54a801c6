//! `use_deployment_monitor`: the live state of one deployment as signals.
//!
//! In the browser it opens the monitor WebSocket, applies every event, and after a
//! dropped connection reconnects with exponential backoff and jitter, resuming with
//! `since=<last seq>`, so each line appears exactly once. On the server it does nothing:
//! pages render from server functions and the hook takes over after hydration.

use leptos::prelude::*;
use protocol::{DeploymentId, ErrorBody, LogLine, StatusData};

/// The state of the monitor's connection, for the UI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// Not connected yet (also what the server renders).
    Connecting,
    Live,
    /// The connection dropped; trying again.
    Reconnecting,
    /// The deployment ended (or cannot be watched): no more events.
    Closed,
}

impl Connection {
    pub fn label(self) -> &'static str {
        match self {
            Connection::Connecting => "connecting",
            Connection::Live => "live",
            Connection::Reconnecting => "reconnecting",
            Connection::Closed => "closed",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct DeploymentMonitor {
    /// The latest status event, once one arrived.
    pub status: ReadSignal<Option<StatusData>>,
    /// Every log line received, in `seq` order, without gaps or repeats.
    pub lines: ReadSignal<Vec<LogLine>>,
    pub connection: ReadSignal<Connection>,
    /// An `error` event from the server (unknown deployment, bad request).
    pub error: ReadSignal<Option<ErrorBody>>,
}

/// Watches deployment `id` live. Call it inside a component; it stops when the
/// component is dropped.
pub fn use_deployment_monitor(id: DeploymentId) -> DeploymentMonitor {
    let (status, set_status) = signal(None::<StatusData>);
    let (lines, set_lines) = signal(Vec::<LogLine>::new());
    let (connection, set_connection) = signal(Connection::Connecting);
    let (error, set_error) = signal(None::<ErrorBody>);
    let setters = Setters {
        status: set_status,
        lines: set_lines,
        connection: set_connection,
        error: set_error,
    };
    // Effects run only in the browser, after hydration.
    Effect::new(move |_| {
        #[cfg(feature = "hydrate")]
        browser::start(id, setters);
        #[cfg(not(feature = "hydrate"))]
        let _ = (id, setters);
    });
    DeploymentMonitor {
        status,
        lines,
        connection,
        error,
    }
}

#[derive(Clone, Copy)]
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
struct Setters {
    status: WriteSignal<Option<StatusData>>,
    lines: WriteSignal<Vec<LogLine>>,
    connection: WriteSignal<Connection>,
    error: WriteSignal<Option<ErrorBody>>,
}

/// Applies one event to the state; returns whether it was terminal (a terminal status or
/// an error).
/// Pure, so the resume logic is tested without a browser.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
fn apply(
    event: protocol::Event,
    last_seq: &mut u64,
    on_status: &mut impl FnMut(StatusData),
    on_line: &mut impl FnMut(LogLine),
    on_error: &mut impl FnMut(ErrorBody),
) -> bool {
    match event {
        protocol::Event::Log { data, .. } => {
            // Rule 2 makes seq contiguous; never show a line twice, whatever arrives.
            if data.seq == *last_seq + 1 {
                *last_seq = data.seq;
                on_line(data);
            }
            false
        }
        protocol::Event::Status { data, .. } => {
            let terminal = data.status.is_terminal();
            on_status(data);
            terminal
        }
        protocol::Event::Error { data, .. } => {
            on_error(data);
            true
        }
    }
}

/// A stored log as lines numbered from 1; an unfinished last line (no `\n` yet) is left
/// for the monitor to deliver. `None` when line boundaries are ambiguous: the server cuts
/// lines longer than `MAX_LINE_BYTES` into pieces without `\n`, so a longer line here
/// means the numbering could not be trusted, and the monitor delivers everything instead.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
fn split_log(text: &str) -> Option<Vec<LogLine>> {
    let mut lines = Vec::new();
    for line in text.split_inclusive('\n') {
        if line.len() > protocol::MAX_LINE_BYTES {
            return None;
        }
        if line.ends_with('\n') {
            lines.push(LogLine {
                seq: lines.len() as u64 + 1,
                line: line.to_owned(),
                timestamp: String::new(),
            });
        }
    }
    Some(lines)
}

#[cfg(feature = "hydrate")]
mod browser {
    use super::{Connection, Setters, apply};
    use futures_util::StreamExt;
    use futures_util::future::{Either, select};
    use gloo_net::websocket::{Message, WebSocketError, futures::WebSocket};
    use leptos::prelude::*;
    use protocol::DeploymentId;
    use protocol::LogLine;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    const FIRST_DELAY_MS: f64 = 250.0;
    const MAX_DELAY_MS: f64 = 15_000.0;
    /// Lines received are shown at most this often (ms), in one update.
    const FLUSH_MS: f64 = 50.0;

    pub fn start(id: DeploymentId, setters: Setters) {
        let stopped = Arc::new(AtomicBool::new(false));
        let flag = stopped.clone();
        on_cleanup(move || flag.store(true, Ordering::Relaxed));
        leptos::task::spawn_local(run(id, setters, stopped));
    }

    fn url(id: DeploymentId, since: u64) -> String {
        let location = window().location();
        let scheme = if location.protocol().as_deref() == Ok("https:") {
            "wss"
        } else {
            "ws"
        };
        let host = location.host().unwrap_or_default();
        format!("{scheme}://{host}/api/deployments/logs?id={id}&since={since}")
    }

    async fn sleep(ms: f64) {
        let promise = js_sys::Promise::new(&mut |resolve, _| {
            let _ =
                window().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms as i32);
        });
        let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
    }

    /// Every complete line stored so far, in one HTTP request: far cheaper than one
    /// WebSocket event per line for a long log. The monitor then resumes after them.
    async fn stored_lines(id: DeploymentId) -> Option<Vec<LogLine>> {
        let response = gloo_net::http::Request::get(&format!("/api/deployments/{id}/logs"))
            .send()
            .await
            .ok()?;
        if !response.ok() {
            return None;
        }
        let text = response.text().await.ok()?;
        super::split_log(&text)
    }

    async fn run(id: DeploymentId, setters: Setters, stopped: Arc<AtomicBool>) {
        let mut last_seq = 0u64;
        if let Some(lines) = stored_lines(id).await {
            last_seq = lines.len() as u64;
            if !lines.is_empty() {
                setters.lines.set(lines);
            }
        }
        let mut failures = 0i32;
        loop {
            if stopped.load(Ordering::Relaxed) {
                return;
            }
            let mut ended = false;
            if let Ok(socket) = WebSocket::open(&url(id, last_seq)) {
                let (_write, mut read) = socket.split();
                // Lines are applied at most every FLUSH_MS: one signal update (and one
                // render) for a whole burst of catch-up lines, and at once when the
                // stream goes quiet.
                let mut pending = Vec::new();
                let mut last_flush = js_sys::Date::now();
                let flush = |pending: &mut Vec<LogLine>, last_flush: &mut f64| {
                    if !pending.is_empty() {
                        let batch = std::mem::take(pending);
                        setters.lines.update(|lines| lines.extend(batch));
                    }
                    *last_flush = js_sys::Date::now();
                };
                let mut live = false;
                // The server's last message before its 1000 close is the terminal status.
                let mut last_was_terminal = false;
                loop {
                    let message = if pending.is_empty() {
                        read.next().await
                    } else {
                        match select(read.next(), Box::pin(sleep(FLUSH_MS))).await {
                            Either::Left((message, _)) => message,
                            Either::Right(_) => {
                                flush(&mut pending, &mut last_flush);
                                continue;
                            }
                        }
                    };
                    if stopped.load(Ordering::Relaxed) {
                        return;
                    }
                    let Some(message) = message else {
                        break;
                    };
                    match message {
                        Ok(Message::Text(text)) => {
                            if let Ok(event) = serde_json::from_str::<protocol::Event>(&text) {
                                failures = 0;
                                if !live {
                                    setters.connection.set(Connection::Live);
                                    live = true;
                                }
                                // A terminal status may come first (the deployment had
                                // ended); the stream still brings every line, then the
                                // terminal status again, then a clean close.
                                last_was_terminal = apply(
                                    event,
                                    &mut last_seq,
                                    &mut |status| setters.status.set(Some(status)),
                                    &mut |line| pending.push(line),
                                    &mut |error| setters.error.set(Some(error)),
                                );
                            }
                        }
                        Ok(_) => {}
                        Err(WebSocketError::ConnectionClose(close)) => {
                            // 1000 right after the terminal status: the deployment ended
                            // and everything was sent. 44xx: refused (an error event came
                            // first). Anything else (a proxy closing with 1000 mid-stream
                            // too) is a dropped connection: resume.
                            ended = (close.code == 1000 && last_was_terminal)
                                || (4400..4500).contains(&close.code);
                            break;
                        }
                        Err(_) => break,
                    }
                    if js_sys::Date::now() - last_flush >= FLUSH_MS {
                        flush(&mut pending, &mut last_flush);
                    }
                }
                flush(&mut pending, &mut last_flush);
            }
            if ended || stopped.load(Ordering::Relaxed) {
                setters.connection.set(Connection::Closed);
                return;
            }
            setters.connection.set(Connection::Reconnecting);
            failures = failures.saturating_add(1);
            let backoff = (FIRST_DELAY_MS * 2f64.powi(failures.min(10) - 1)).min(MAX_DELAY_MS);
            // Full jitter between half and all of the backoff spreads reconnect storms.
            sleep(backoff * (0.5 + js_sys::Math::random() / 2.0)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::apply;
    use protocol::{Event, LogLine, Status, StatusData};

    fn log(seq: u64) -> Event {
        Event::Log {
            timestamp: String::new(),
            data: LogLine {
                seq,
                line: format!("line {seq}\n"),
                timestamp: String::new(),
            },
        }
    }

    fn status(status: Status) -> Event {
        Event::Status {
            timestamp: String::new(),
            data: StatusData {
                deployment_id: 1,
                status,
                stage: status,
                progress: status.progress(),
                message: status.default_message().into(),
                error_message: String::new(),
                duration: None,
                failed_stage: None,
            },
        }
    }

    #[test]
    fn a_stored_log_splits_into_numbered_lines() {
        let lines = super::split_log("one\ntwo\r50%\rdone\nhalf a li").unwrap_or_default();
        let got: Vec<(u64, &str)> = lines.iter().map(|l| (l.seq, l.line.as_str())).collect();
        assert_eq!(got, vec![(1, "one\n"), (2, "two\r50%\rdone\n")]);
        // A line the server had to cut: numbering unknown, so no shortcut.
        let long = "x".repeat(protocol::MAX_LINE_BYTES + 1) + "\n";
        assert!(super::split_log(&long).is_none());
    }

    #[test]
    fn lines_are_kept_once_in_order_across_a_resume() {
        let mut last = 0;
        let mut seen = Vec::new();
        let mut statuses = Vec::new();
        // First connection delivers 1..=3, then drops; the resume (since=3) repeats
        // nothing, but a misbehaving server that did would be ignored.
        for event in [
            status(Status::Building),
            log(1),
            log(2),
            log(3),
            status(Status::Building),
            log(3),
            log(4),
            status(Status::Success),
        ] {
            let ended = apply(
                event,
                &mut last,
                &mut |s| statuses.push(s.status),
                &mut |l| seen.push(l.seq),
                &mut |_| {},
            );
            if ended {
                break;
            }
        }
        assert_eq!(seen, vec![1, 2, 3, 4]);
        assert_eq!(statuses.last(), Some(&Status::Success));
        assert_eq!(last, 4);
    }
}
