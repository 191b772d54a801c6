//! Follows a monitor WebSocket (a deployment's log and status) or an app's runtime-log
//! WebSocket to its end. A dropped connection is resumed with `since=<last seq>` after a
//! backoff, so every line reaches the [`Sink`] exactly once (PROTOCOL.md, guarantee 2).
//!
//! A deployment's stream ends at its terminal status followed by close 1000; an app's
//! stream ends only at close 1000. A close in 4400..4499 is the server refusing the
//! request, after an `error` event that says why: that is never retried.

use super::CliError;
use super::client::{CONNECT_TIMEOUT, Client, causes};
use futures_util::{FutureExt, StreamExt};
use protocol::{AppId, DeploymentId, ErrorBody, Event, LogLine, Seq, StatusData};
use serde_json::Value;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// The server pings every 20 s: this long without any frame means the connection is gone
/// even if no TCP error says so.
const SILENCE: Duration = Duration::from_secs(60);
/// Reconnections in a row that bring nothing before giving up (about 45 s of trying).
const MAX_FAILURES: u32 = 12;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Which stream to follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// `GET /api/deployments/logs?id=N&since=S`: ends at the deployment's terminal status.
    Deployment(DeploymentId),
    /// `GET /api/apps/{id}/logs?since=S`: the app's runtime output, open while it exists.
    App(AppId),
}

impl Feed {
    fn path(self, since: Seq) -> String {
        match self {
            Feed::Deployment(id) => format!("/api/deployments/logs?id={id}&since={since}"),
            Feed::App(id) => format!("/api/apps/{id}/logs?since={since}"),
        }
    }

    /// The command that picks up where this one stopped.
    fn resume_hint(self, since: Seq) -> String {
        match self {
            Feed::Deployment(id) => format!(
                "the deployment goes on; `slipway logs {id} --follow --since {since}` resumes"
            ),
            Feed::App(id) => format!("`slipway app-logs {id} --follow` resumes"),
        }
    }
}

/// Receives a stream's events, in order, each log line once.
pub trait Sink {
    fn status(&mut self, status: &StatusData) -> Result<(), CliError>;
    /// One line; `stream` is `stdout` or `stderr` on runtime logs.
    fn line(&mut self, line: &LogLine, stream: Option<&str>) -> Result<(), CliError>;
    /// No message is waiting: write out what is buffered.
    fn flush(&mut self) -> Result<(), CliError>;
    /// A line on stderr about the connection.
    fn note(&mut self, text: &str);
}

/// What the events of a stream have told so far. `since` survives reconnections; the rest
/// is per connection.
#[derive(Debug)]
pub struct Tracker {
    feed: Feed,
    /// The last line delivered.
    pub since: Seq,
    /// Events received on the current connection.
    events: usize,
    /// The deployment's terminal status arrived as the stream's last word: not as the
    /// first message of a connection, which the server repeats after the remaining lines.
    finished: bool,
    last_status: Option<StatusData>,
}

/// What to do with a log event.
#[derive(Debug, PartialEq, Eq)]
pub enum LineStep {
    Deliver,
    /// Already delivered (a server breaking guarantee 2; skipped, never printed twice).
    Seen,
    /// Lines are missing: resume from the last one delivered.
    Gap {
        expected: Seq,
    },
}

impl Tracker {
    pub fn new(feed: Feed, since: Seq) -> Tracker {
        Tracker {
            feed,
            since,
            events: 0,
            finished: false,
            last_status: None,
        }
    }

    pub fn connected(&mut self) {
        self.events = 0;
        self.finished = false;
    }

    pub fn status(&mut self, status: &StatusData) {
        let first = self.events == 0;
        self.events += 1;
        self.finished =
            matches!(self.feed, Feed::Deployment(_)) && status.status.is_terminal() && !first;
        self.last_status = Some(status.clone());
    }

    pub fn line(&mut self, seq: Seq) -> LineStep {
        self.events += 1;
        self.finished = false;
        if seq <= self.since {
            LineStep::Seen
        } else if seq != self.since + 1 {
            LineStep::Gap {
                expected: self.since + 1,
            }
        } else {
            self.since = seq;
            LineStep::Deliver
        }
    }

    pub fn error(&mut self) {
        self.events += 1;
    }

    /// The stream said everything it will say.
    pub fn finished(&self) -> bool {
        self.finished
    }

    pub fn last_status(&self) -> Option<&StatusData> {
        self.last_status.as_ref()
    }
}

/// How one connection ended.
enum End {
    /// The stream is complete.
    Done,
    /// The connection was lost (why): resume.
    Dropped(String),
}

/// Follows `feed` from line `since` to its end; answers the last status received (for a
/// deployment, its terminal status).
pub async fn follow(
    client: &Client,
    feed: Feed,
    since: Seq,
    sink: &mut impl Sink,
) -> Result<Option<StatusData>, CliError> {
    let mut tracker = Tracker::new(feed, since);
    let mut connected_once = false;
    let mut failures = 0;
    loop {
        let why = match connect(client, &feed.path(tracker.since)).await {
            Ok(socket) => {
                connected_once = true;
                tracker.connected();
                match read(socket, &mut tracker, sink, client).await? {
                    End::Done => {
                        sink.flush()?;
                        return Ok(tracker.last_status().cloned());
                    }
                    End::Dropped(why) => why,
                }
            }
            Err(Refusal::Final(error)) => return Err(error),
            // Nothing was ever received: the address or the server is wrong, not the network.
            Err(Refusal::Transient(why)) if !connected_once => {
                return Err(CliError::Unreachable {
                    url: client.url().to_owned(),
                    reason: why,
                });
            }
            Err(Refusal::Transient(why)) => why,
        };
        sink.flush()?;
        // A connection that brought events proves the way works: start the backoff over.
        failures = if tracker.events > 0 { 0 } else { failures + 1 };
        tracker.connected();
        if failures >= MAX_FAILURES {
            return Err(CliError::Unreachable {
                url: client.url().to_owned(),
                reason: format!(
                    "{why}; gave up after {MAX_FAILURES} attempts to reconnect ({})",
                    feed.resume_hint(tracker.since)
                ),
            });
        }
        let delay = backoff(failures);
        sink.note(&format!(
            "connection lost ({why}); resuming after line {} in {:.1} s",
            tracker.since,
            delay.as_secs_f64()
        ));
        tokio::time::sleep(delay).await;
    }
}

/// 250 ms, doubling to at most 5 s, with up to a fifth more so that many clients cut
/// at once (a server restart) do not come back in step.
fn backoff(failures: u32) -> Duration {
    let base = Duration::from_millis(250) * 2u32.pow(failures.min(5));
    let base = base.min(Duration::from_secs(5));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    base + base.mul_f64(f64::from(nanos % 200) / 1000.0)
}

enum Refusal {
    /// Retrying cannot help: bad credentials, an unknown deployment.
    Final(CliError),
    /// The network or a restarting server: retry.
    Transient(String),
}

async fn connect(client: &Client, path: &str) -> Result<Socket, Refusal> {
    let url = match client.url().split_once("://") {
        Some(("https", rest)) => format!("wss://{rest}{path}"),
        Some((_, rest)) => format!("ws://{rest}{path}"),
        None => format!("ws://{}{path}", client.url()),
    };
    let mut request = url.as_str().into_client_request().map_err(|e| {
        Refusal::Final(CliError::Usage(format!(
            "{url} is not a WebSocket address: {e}"
        )))
    })?;
    if let Some(token) = &client.target().token {
        let value = HeaderValue::from_str(&format!("Bearer {}", token.0)).map_err(|_| {
            Refusal::Final(CliError::Usage(
                "the token holds characters an HTTP header cannot carry; copy it again".into(),
            ))
        })?;
        request.headers_mut().insert("Authorization", value);
    }
    match tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(request)).await {
        Err(_) => Err(Refusal::Transient(format!(
            "no answer within {} s",
            CONNECT_TIMEOUT.as_secs()
        ))),
        Ok(Ok((socket, _))) => Ok(socket),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => {
            let status = response.status().as_u16();
            // A proxy in front of a restarting server answers 502 or 503.
            if status >= 500 || status == 429 {
                Err(Refusal::Transient(format!("HTTP {status}")))
            } else {
                let body = response.body().as_deref().unwrap_or_default();
                Err(Refusal::Final(client.refusal(status, body)))
            }
        }
        Ok(Err(e)) => Err(Refusal::Transient(causes(&e))),
    }
}

/// Reads one connection until it ends, handing events to `sink`.
async fn read(
    mut socket: Socket,
    tracker: &mut Tracker,
    sink: &mut impl Sink,
    client: &Client,
) -> Result<End, CliError> {
    let mut refusal: Option<ErrorBody> = None;
    let dropped = |tracker: &Tracker, why: String| {
        if tracker.finished() {
            End::Done
        } else {
            End::Dropped(why)
        }
    };
    loop {
        // Output is written out only when no message is waiting: one write per burst.
        let message = match socket.next().now_or_never() {
            Some(message) => message,
            None => {
                sink.flush()?;
                match tokio::time::timeout(SILENCE, socket.next()).await {
                    Ok(message) => message,
                    Err(_) => {
                        return Ok(End::Dropped(format!(
                            "nothing from the server for {} s",
                            SILENCE.as_secs()
                        )));
                    }
                }
            }
        };
        let text = match message {
            None => return Ok(dropped(tracker, "the connection closed".into())),
            Some(Err(e)) => return Ok(dropped(tracker, causes(&e))),
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => {
                let (code, reason) = frame
                    .map(|frame| (u16::from(frame.code), frame.reason.as_str().to_owned()))
                    .unwrap_or((1005, String::new()));
                return closed(code, reason, refusal, tracker, client);
            }
            // tungstenite answers pings itself; binary frames are not part of the protocol.
            Some(Ok(_)) => continue,
        };
        let unexpected = |what: String| CliError::Protocol {
            url: client.url().to_owned(),
            what,
        };
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| unexpected(format!("a WebSocket message is not JSON: {e}")))?;
        // Runtime logs add `stream` to log events (PROTOCOL.md, "Runtime logs").
        let stream = value
            .pointer("/data/stream")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if !matches!(
            value.get("type").and_then(Value::as_str),
            Some("status" | "log" | "error")
        ) {
            // A later version of the protocol may add events; they are not for us.
            continue;
        }
        let event: Event = serde_json::from_value(value)
            .map_err(|e| unexpected(format!("an event does not match PROTOCOL.md: {e}")))?;
        match event {
            Event::Status { data, .. } => {
                tracker.status(&data);
                sink.status(&data)?;
            }
            Event::Log { data, .. } => match tracker.line(data.seq) {
                LineStep::Deliver => sink.line(&data, stream.as_deref())?,
                LineStep::Seen => {}
                LineStep::Gap { expected } => {
                    return Ok(End::Dropped(format!(
                        "line {} arrived where line {expected} was due",
                        data.seq
                    )));
                }
            },
            Event::Error { data, .. } => {
                tracker.error();
                refusal = Some(data);
            }
        }
    }
}

fn closed(
    code: u16,
    reason: String,
    refusal: Option<ErrorBody>,
    tracker: &Tracker,
    client: &Client,
) -> Result<End, CliError> {
    if (4400..4500).contains(&code) {
        let (error_code, message) = match refusal {
            Some(body) => (
                serde_json::to_value(body.code)
                    .ok()
                    .and_then(|code| code.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                body.message,
            ),
            None => (format!("close code {code}"), reason),
        };
        if code == 4401 {
            return Err(client.unauthorized(&message));
        }
        return Err(CliError::Refused {
            status: code - 4000,
            code: error_code,
            message,
        });
    }
    if tracker.finished() || (code == 1000 && matches!(tracker.feed, Feed::App(_))) {
        return Ok(End::Done);
    }
    let reason = if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    };
    Ok(End::Dropped(format!(
        "the server closed the connection with code {code}{reason}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::Status;

    fn status(status: Status) -> StatusData {
        StatusData::new(7, status, status.progress(), String::new(), None, None)
    }

    #[test]
    fn lines_are_delivered_once_in_order() {
        let mut tracker = Tracker::new(Feed::Deployment(7), 2);
        tracker.connected();
        tracker.status(&status(Status::Building));
        assert_eq!(tracker.line(2), LineStep::Seen);
        assert_eq!(tracker.line(3), LineStep::Deliver);
        assert_eq!(tracker.line(3), LineStep::Seen);
        assert_eq!(tracker.line(5), LineStep::Gap { expected: 4 });
        assert_eq!(
            tracker.since, 3,
            "a gap resumes after the last line delivered"
        );
        assert_eq!(tracker.line(4), LineStep::Deliver);
    }

    #[test]
    fn a_terminal_status_ends_the_stream_only_as_its_last_word() {
        let mut tracker = Tracker::new(Feed::Deployment(7), 0);
        tracker.connected();
        // Joined after the end: the server sends the terminal status, the remaining
        // lines, then the terminal status again.
        tracker.status(&status(Status::Success));
        assert!(!tracker.finished());
        tracker.line(1);
        assert!(!tracker.finished());
        tracker.status(&status(Status::Success));
        assert!(tracker.finished());
        // A new connection starts over.
        tracker.connected();
        assert!(!tracker.finished());
        tracker.status(&status(Status::Building));
        tracker.status(&status(Status::Failed));
        assert!(tracker.finished());
    }

    #[test]
    fn an_app_stream_never_ends_at_a_status() {
        let mut tracker = Tracker::new(Feed::App(3), 0);
        tracker.connected();
        tracker.status(&status(Status::Success));
        tracker.status(&status(Status::Success));
        assert!(!tracker.finished());
    }

    #[test]
    fn resumed_paths_carry_since() {
        assert_eq!(
            Feed::Deployment(7).path(42),
            "/api/deployments/logs?id=7&since=42"
        );
        assert_eq!(Feed::App(3).path(0), "/api/apps/3/logs?since=0");
    }

    #[test]
    fn backoff_grows_to_a_ceiling() {
        assert!(
            backoff(0) >= Duration::from_millis(250) && backoff(0) < Duration::from_millis(400)
        );
        assert!(backoff(3) >= Duration::from_secs(2));
        assert!(backoff(40) <= Duration::from_secs(6));
    }
}
