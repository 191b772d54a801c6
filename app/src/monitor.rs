//! `use_deployment_monitor`: the live state of one deployment as signals, and the one
//! owner of its log lines in the browser.
//!
//! The hook starts from what the server rendered (the status and the newest lines, each
//! with its `seq`), opens the monitor WebSocket with `since=<newest seq>`, and files every
//! line in a [`LogBook`] by its `seq`. Older lines are loaded page by page when the viewer
//! asks for them ([`DeploymentMonitor::want`]). After a dropped connection it reconnects
//! with exponential backoff and jitter, resuming with `since=<last seq>`, so each line
//! appears exactly once. On the server it only holds the rendered state.
//!
//! The same hook follows an app's runtime logs ([`LogSource::App`]): the same events on
//! another socket, which stays open while the app exists.

use crate::log_book::LogBook;
use leptos::prelude::*;
use protocol::{AppId, DeploymentId, ErrorBody, LogLine, Seq, StatusData};

/// Whose lines a monitor follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogSource {
    /// A deployment's build and start (`GET /api/deployments/logs?id=`).
    Deployment(DeploymentId),
    /// What an app's running containers print (`GET /api/apps/{id}/logs`).
    App(AppId),
}

impl LogSource {
    /// The socket's path and query, resuming after `since`.
    pub fn socket_path(self, since: Seq) -> String {
        match self {
            LogSource::Deployment(id) => {
                format!("/api/deployments/logs?id={id}&since={since}&batch=1")
            }
            LogSource::App(id) => format!("/api/apps/{id}/logs?since={since}&batch=1"),
        }
    }

    /// The whole log as text, and the name to save it under.
    pub fn download(self) -> (String, String) {
        match self {
            LogSource::Deployment(id) => (
                format!("/api/deployments/{id}/logs"),
                format!("deployment-{id}.log"),
            ),
            LogSource::App(id) => (format!("/api/apps/{id}/logs"), format!("app-{id}.log")),
        }
    }
}

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
    pub source: LogSource,
    /// The latest status event, once one arrived.
    pub status: ReadSignal<Option<StatusData>>,
    /// Every line known, filed by `seq`.
    pub lines: ReadSignal<LogBook>,
    pub connection: ReadSignal<Connection>,
    /// An `error` event from the server (unknown deployment, bad request).
    pub error: ReadSignal<Option<ErrorBody>>,
    set_lines: WriteSignal<LogBook>,
    /// Pages being loaded, by their number.
    loading: StoredValue<Vec<Seq>>,
    /// The rows last asked for: asked again when a load brought only some of them.
    window: StoredValue<(Seq, Seq)>,
}

/// Watches deployment `id` live, starting from the lines the server rendered (`seed`).
/// Call it inside a component; it stops when the component is dropped.
pub fn use_deployment_monitor(id: DeploymentId, seed: Vec<LogLine>) -> DeploymentMonitor {
    use_log_monitor(LogSource::Deployment(id), seed)
}

/// Watches `source` live from the lines the server rendered (`seed`); lines before the
/// seed's first one that the server no longer keeps are left out.
pub fn use_log_monitor(source: LogSource, seed: Vec<LogLine>) -> DeploymentMonitor {
    use_log_monitor_from(source, 1, seed)
}

/// As [`use_log_monitor`] for a log whose lines before `kept_from` are no longer kept.
pub fn use_log_monitor_from(
    source: LogSource,
    kept_from: Seq,
    seed: Vec<LogLine>,
) -> DeploymentMonitor {
    let since = seed.last().map(|l| l.seq).unwrap_or(0);
    let mut book = LogBook::default();
    book.drop_before(kept_from);
    book.insert(seed);
    let (status, set_status) = signal(None::<StatusData>);
    let (lines, set_lines) = signal(book);
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
        browser::start(source, since, setters);
        #[cfg(not(feature = "hydrate"))]
        let _ = (since, setters);
    });
    DeploymentMonitor {
        source,
        status,
        lines,
        connection,
        error,
        set_lines,
        loading: StoredValue::new(Vec::new()),
        window: StoredValue::new((0, 0)),
    }
}

impl DeploymentMonitor {
    /// Lines `from..=to` are about to be shown: loads the missing ones, one request per
    /// page at a time.
    pub fn want(&self, from: Seq, to: Seq) {
        self.window.set_value((from, to));
        let requests = self.lines.with_untracked(|book| book.requests(from, to));
        for (first, last) in requests {
            let page = (first - 1) / crate::log_book::PAGE;
            if self.loading.with_value(|l| l.contains(&page)) {
                continue;
            }
            self.loading.update_value(|l| l.push(page));
            #[cfg(feature = "hydrate")]
            {
                let this = *self;
                leptos::task::spawn_local(async move {
                    let lines = browser::page(this.source, first, last).await;
                    this.loading.update_value(|l| l.retain(|p| *p != page));
                    let Some(lines) = lines else { return };
                    let more = !lines.is_empty();
                    this.set_lines.update(|book| {
                        // A runtime log keeps only its newest lines: those before the
                        // first answered are gone.
                        if matches!(this.source, LogSource::App(_)) {
                            book.drop_before(lines.first().map_or(last + 1, |l| l.seq));
                        }
                        book.insert(lines);
                    });
                    if more {
                        // Long lines come a few at a time: ask for what is still missing.
                        let (from, to) = this.window.get_value();
                        this.want(from, to);
                    }
                });
            }
            #[cfg(not(feature = "hydrate"))]
            let _ = (last, self.set_lines);
        }
    }
}

#[derive(Clone, Copy)]
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
struct Setters {
    status: WriteSignal<Option<StatusData>>,
    lines: WriteSignal<LogBook>,
    connection: WriteSignal<Connection>,
    error: WriteSignal<Option<ErrorBody>>,
}

/// Applies one event to the state; returns whether it was terminal (a terminal status or
/// an error). Pure, so the resume logic is tested without a browser.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
fn apply(
    event: protocol::Event,
    last_seq: &mut Seq,
    on_status: &mut impl FnMut(StatusData),
    on_line: &mut impl FnMut(LogLine),
    on_error: &mut impl FnMut(ErrorBody),
) -> bool {
    match event {
        protocol::Event::Log { data, .. } => {
            // Rule 2 makes seq contiguous; `since` is the last seq received in order. A
            // runtime log resumed from lines it no longer keeps starts further on.
            if data.seq > *last_seq {
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

/// Waits `ms` milliseconds (the browser's timer).
#[cfg(feature = "hydrate")]
pub(crate) async fn sleep_ms(ms: f64) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let _ = window().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms as i32);
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// Waits before reconnecting after `failures` failed attempts in a row: 250 ms doubling
/// to 15 s, with jitter between half and all of it, which spreads reconnect storms.
#[cfg(feature = "hydrate")]
pub(crate) async fn back_off(failures: i32) {
    const FIRST_DELAY_MS: f64 = 250.0;
    const MAX_DELAY_MS: f64 = 15_000.0;
    let backoff = (FIRST_DELAY_MS * 2f64.powi(failures.min(10) - 1)).min(MAX_DELAY_MS);
    sleep_ms(backoff * (0.5 + js_sys::Math::random() / 2.0)).await;
}

/// The WebSocket URL of `path` on the page's own server (`wss` under `https`).
#[cfg(feature = "hydrate")]
pub(crate) fn socket_url(path: &str) -> String {
    let location = window().location();
    let scheme = if location.protocol().as_deref() == Ok("https:") {
        "wss"
    } else {
        "ws"
    };
    let host = location.host().unwrap_or_default();
    format!("{scheme}://{host}{path}")
}

#[cfg(feature = "hydrate")]
mod browser {
    use super::{Connection, LogSource, Setters, apply};
    use futures_util::StreamExt;
    use futures_util::future::{Either, select};
    use gloo_net::websocket::{Message, WebSocketError, futures::WebSocket};
    use leptos::prelude::*;
    use protocol::{LogLine, Seq};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Lines received are shown at most this often (ms), in one update.
    const FLUSH_MS: f64 = 50.0;

    pub fn start(source: LogSource, since: Seq, setters: Setters) {
        let stopped = Arc::new(AtomicBool::new(false));
        let flag = stopped.clone();
        on_cleanup(move || flag.store(true, Ordering::Relaxed));
        leptos::task::spawn_local(run(source, since, setters, stopped));
    }

    fn url(source: LogSource, since: Seq) -> String {
        super::socket_url(&source.socket_path(since))
    }

    use super::sleep_ms as sleep;

    /// Lines `first..=last` from the server, numbered by it.
    pub async fn page(source: LogSource, first: Seq, last: Seq) -> Option<Vec<LogLine>> {
        let page = match source {
            LogSource::Deployment(id) => crate::api::log_lines(id, first, last).await,
            LogSource::App(id) => crate::api::app_log_lines(id, first, last).await,
        };
        page.ok().map(|page| page.lines)
    }

    async fn run(source: LogSource, mut last_seq: Seq, setters: Setters, stopped: Arc<AtomicBool>) {
        let mut failures = 0i32;
        loop {
            if stopped.load(Ordering::Relaxed) {
                return;
            }
            let mut ended = false;
            if let Ok(socket) = WebSocket::open(&url(source, last_seq)) {
                let (_write, mut read) = socket.split();
                // Lines are filed at most every FLUSH_MS: one signal update (and one
                // render) for a whole burst of catch-up lines, and at once when the
                // stream goes quiet.
                let mut pending = Vec::new();
                let mut last_flush = js_sys::Date::now();
                let flush = |pending: &mut Vec<LogLine>, last_flush: &mut f64| {
                    if !pending.is_empty() {
                        let batch = std::mem::take(pending);
                        setters.lines.update(|book| book.insert(batch));
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
                            // `batch=1`: each frame of the stream is an array of events
                            // (a refusal is one `error` event, as without it).
                            let events = if text.starts_with('[') {
                                serde_json::from_str::<Vec<protocol::Event>>(&text)
                                    .unwrap_or_default()
                            } else {
                                serde_json::from_str::<protocol::Event>(&text)
                                    .into_iter()
                                    .collect()
                            };
                            for event in events {
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
            super::back_off(failures).await;
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
                stream: None,
            },
        }
    }

    fn status(status: Status) -> Event {
        Event::Status {
            timestamp: String::new(),
            data: StatusData::new(1, status, status.progress(), String::new(), None, None),
        }
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
