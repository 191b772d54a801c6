//! Slipway's wire types, shared by the server, the dashboard (compiled to WASM) and tests.
//!
//! - [`Status`]: the deployment lifecycle, its progress values, messages and transitions.
//! - [`Event`]: the monitor protocol's messages (`status`, `log`, `error`), exactly as
//!   `PROTOCOL.md` shows them.
//! - [`App`], [`Deployment`]: the JSON bodies of the HTTP API.
//! - [`ErrorCode`], [`ApiError`]: the error body every failing request answers with.
//! - [`validate`]: the rules for a new app, shared so the browser and the server agree.
//! - [`ansi`]: a log line as a terminal shows it (colours, `\r` progress), shared by the
//!   server's log search and the browser's log viewer.
//!
//! This crate needs only serde and anstyle-parse: nothing here may pull in a runtime.

pub mod ansi;
mod feed;
#[cfg(feature = "sqlx")]
mod sql;
mod status;
pub mod validate;

pub use feed::{
    AppAction, AppChange, CreatedNotification, DeploymentSummary, FEED_KEPT, FeedEvent, FeedId,
    NewNotification, Notification, NotificationBody, NotificationFormat,
};
pub use status::{Plan, Status};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub type AppId = i64;
pub type DeploymentId = i64;
/// Position of a line in a deployment's log: 1, 2, 3, ... in the order written.
pub type Seq = u64;

/// Longest `line` a log event carries; longer output is split over several events.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// The `data` of a `status` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusData {
    pub deployment_id: DeploymentId,
    pub status: Status,
    pub stage: Status,
    pub progress: u8,
    pub message: String,
    pub error_message: String,
    pub duration: Option<f64>,
    /// The stage a failed deployment failed in; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_stage: Option<Status>,
}

impl StatusData {
    /// What viewers see of deployment `id`: `stage` and `message` follow from `status`.
    pub fn new(
        deployment_id: DeploymentId,
        status: Status,
        progress: u8,
        error_message: String,
        duration: Option<f64>,
        failed_stage: Option<Status>,
    ) -> StatusData {
        StatusData {
            deployment_id,
            status,
            stage: status,
            progress,
            message: status.default_message().to_owned(),
            error_message,
            duration,
            failed_stage,
        }
    }

    /// True when a viewer must be told: `status`, `stage`, `progress` or
    /// `error_message` differ (PROTOCOL.md, guarantee 3).
    pub fn differs_from(&self, other: &StatusData) -> bool {
        self.status != other.status
            || self.stage != other.stage
            || self.progress != other.progress
            || self.error_message != other.error_message
    }
}

/// The `data` of a `log` event: one line of output with its trailing `\n`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub seq: Seq,
    pub line: String,
    /// When the line was written (RFC 3339, UTC, milliseconds).
    pub timestamp: String,
    /// Runtime logs only: `stdout` or `stderr` (absent in a deployment's log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
}

/// `GET /api/deployments/{id}/lines?from=A&to=B`: lines `A..=B` as stored, and how many
/// lines the log holds now. A page of long lines ends early, after
/// [`MAX_PAGE_BYTES`] of text: ask again from the seq after its last line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPage {
    pub total: Seq,
    pub lines: Vec<LogLine>,
}

/// `GET /api/deployments/{id}/search?q=TEXT`: the lines whose text (without ANSI codes)
/// contains `q`, ignoring ASCII case; at most [`MAX_SEARCH_RESULTS`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchResult {
    pub seqs: Vec<Seq>,
    /// More lines matched than were listed.
    pub truncated: bool,
}

/// Text of the lines one `GET /api/deployments/{id}/lines` answers at most (at least one
/// line): 16 lines of 16 KiB, or thousands of ordinary ones.
pub const MAX_PAGE_BYTES: u64 = 256 * 1024;

/// Most matches one search answers.
pub const MAX_SEARCH_RESULTS: usize = 10_000;

/// One server-to-client message of the monitor WebSocket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Status { timestamp: String, data: StatusData },
    Log { timestamp: String, data: LogLine },
    Error { timestamp: String, data: ErrorBody },
}

impl Event {
    /// True for the `status` event that ends a stream.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Event::Status { data, .. } if data.status.is_terminal())
    }
}

/// The error codes of PROTOCOL.md, each with one HTTP status and one WebSocket close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    PayloadTooLarge,
    /// The request's `Host` is not one this server answers for (DNS rebinding).
    Misdirected,
    Unprocessable,
    /// Too many attempts (sign-in): the answer carries `Retry-After`.
    TooManyRequests,
    Internal,
    Unavailable,
    /// The event feed no longer keeps what a client asked to resume from.
    Gone,
}

impl ErrorCode {
    pub const fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::Misdirected => 421,
            ErrorCode::Unprocessable => 422,
            ErrorCode::TooManyRequests => 429,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable => 503,
            ErrorCode::Gone => 410,
        }
    }

    /// The close code of the monitor socket: 4000 plus the HTTP status.
    pub const fn close_code(self) -> u16 {
        4000 + self.http_status()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

/// `{"error": {"code": ..., "message": ...}}`, the body of every failing request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: ErrorBody,
}

/// A registered app as the API shows it. Environment values are never echoed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct App {
    pub id: AppId,
    pub name: String,
    pub repo_url: String,
    pub branch: String,
    pub dockerfile: String,
    pub port: Option<u16>,
    pub env_keys: Vec<String>,
    pub created_at: String,
    /// The app's public address (through the edge) once a deployment succeeded; with the
    /// edge off, where its container answers on loopback.
    pub url: Option<String>,
    pub last_deployment: Option<Deployment>,
    /// Extra host names the edge serves the app at, beside `<name>.<apps domain>`.
    #[serde(default)]
    pub domains: Vec<String>,
    #[serde(default = "default_memory_mb")]
    pub memory_mb: u32,
    #[serde(default = "default_cpus")]
    pub cpus: f64,
}

fn default_memory_mb() -> u32 {
    validate::DEFAULT_MEMORY_MB
}

fn default_cpus() -> f64 {
    validate::DEFAULT_CPUS
}

/// A deployment as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    pub id: DeploymentId,
    pub app_id: AppId,
    pub status: Status,
    pub stage: Status,
    pub progress: u8,
    pub message: String,
    pub error_message: String,
    pub failed_stage: Option<Status>,
    pub commit: Option<String>,
    pub image: Option<String>,
    pub url: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// Seconds from `started_at` to `finished_at`, once finished.
    pub duration: Option<f64>,
    /// The deployment whose image this one starts again (a redeploy or a rollback): no
    /// clone, no build.
    #[serde(default)]
    pub image_from: Option<DeploymentId>,
    /// The node that runs (or ran) it, once claimed (PROTOCOL.md, "A cluster").
    #[serde(default)]
    pub node: Option<String>,
}

/// A node of the cluster, as `GET /api/nodes` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    /// Where it serves the API (`SLIPWAY_ADDR`).
    pub addr: String,
    /// Its last heartbeat.
    pub last_seen: String,
    /// Heard from within `SLIPWAY_NODE_LEASE_SECS`.
    pub alive: bool,
    /// Deployments in flight on it.
    pub running: u64,
}

impl Deployment {
    pub fn status_data(&self) -> StatusData {
        StatusData::new(
            self.id,
            self.status,
            self.progress,
            self.error_message.clone(),
            self.duration,
            self.failed_stage,
        )
    }

    /// Which stages this deployment runs.
    pub fn plan(&self) -> Plan {
        match self.image_from {
            Some(_) => Plan::Image,
            None => Plan::Build,
        }
    }
}

/// The body of `POST /api/apps`, before validation ([`validate::new_app`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewApp {
    pub name: String,
    pub repo_url: String,
    #[serde(default)]
    pub branch: Option<String>,
    #[serde(default)]
    pub dockerfile: Option<String>,
    #[serde(default)]
    pub port: Option<i64>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Extra host names (PROTOCOL.md: unique across apps).
    #[serde(default)]
    pub domains: Vec<String>,
    #[serde(default)]
    pub memory_mb: Option<i64>,
    #[serde(default)]
    pub cpus: Option<f64>,
}

impl NewApp {
    /// The add-app form's fields, each text as typed: blank optional fields are absent,
    /// `port` is digits, `env` is `NAME=value` lines.
    pub fn from_form(
        name: &str,
        repo_url: &str,
        branch: &str,
        dockerfile: &str,
        port: &str,
        env: &str,
    ) -> Result<NewApp, validate::FieldError> {
        Ok(NewApp {
            name: name.trim().to_owned(),
            repo_url: repo_url.trim().to_owned(),
            branch: validate::blank_to_none(branch),
            dockerfile: validate::blank_to_none(dockerfile),
            port: validate::port_text(port, "port")?,
            env: validate::env_lines(env, "env")?,
            ..NewApp::default()
        })
    }
}

/// The body of `POST /api/deployments`: `appId` (or `app_id`), a positive integer; and
/// optionally `commit`, the full SHA of the commit to build (default: the branch's head).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewDeployment {
    #[serde(rename = "appId", alias = "app_id")]
    pub app_id: std::num::NonZeroU64,
    #[serde(default)]
    pub commit: Option<String>,
}

/// `POST /api/apps/{id}/webhook`: where forges send pushes, and the secret they sign
/// with (shown this once; the previous secret stops working).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Webhook {
    pub url: String,
    pub secret: String,
}

/// A webhook delivery and what it did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// The forge's id of the delivery.
    pub delivery: String,
    pub forge: String,
    pub event: String,
    pub received_at: String,
    /// The deployment it queued.
    pub deployment_id: Option<DeploymentId>,
    /// Or why it queued nothing.
    pub ignored: Option<String>,
}

/// Changes to an app's settings (`PATCH /api/apps/{id}`): absent fields stay as they are.
/// Environment values are never shown back, so `env` names only the variables to set
/// (a value) or remove (`null`). Other fields (`name`) cannot be changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppChanges {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    /// `Some(None)` removes the port.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub port: Option<Option<i64>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, Option<String>>,
    /// Replaces the app's extra host names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domains: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
}

/// A field that is present, even as `null`: `Some(None)`; absent fields stay `None`
/// through `#[serde(default)]`.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// The body of `POST /api/apps/{id}/rollback` (it may be empty): the deployment whose
/// image to start again; by default the successful one before the current.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    #[serde(default)]
    pub deployment_id: Option<std::num::NonZeroU64>,
}

/// The body of `POST /api/tokens`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewToken {
    pub name: String,
}

/// An API token as listed: never the secret itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiToken {
    pub id: i64,
    pub name: String,
    /// The token's first characters, to tell tokens apart.
    pub prefix: String,
    pub created_by: String,
    pub created_at: String,
}

/// A token just created: the only time its secret is shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub info: ApiToken,
    pub token: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn building() -> StatusData {
        StatusData {
            deployment_id: 456,
            status: Status::Building,
            stage: Status::Building,
            progress: 50,
            message: "Building Docker image".into(),
            error_message: String::new(),
            duration: None,
            failed_stage: None,
        }
    }

    #[test]
    fn status_event_json_is_pinned() {
        let event = Event::Status {
            timestamp: "2026-11-28T03:21:08.123Z".into(),
            data: building(),
        };
        assert_eq!(
            serde_json::to_string(&event).expect("serialises"),
            r#"{"type":"status","timestamp":"2026-11-28T03:21:08.123Z","data":{"deployment_id":456,"status":"building","stage":"building","progress":50,"message":"Building Docker image","error_message":"","duration":null}}"#
        );
    }

    #[test]
    fn failed_status_event_names_the_stage() {
        let mut data = building();
        data.status = Status::Failed;
        data.stage = Status::Failed;
        data.progress = 0;
        data.error_message = "Docker build failed with exit code 1: step 2".into();
        data.duration = Some(1.5);
        data.failed_stage = Some(Status::Building);
        let value = serde_json::to_value(Event::Status {
            timestamp: "t".into(),
            data,
        })
        .expect("serialises");
        assert_eq!(value["data"]["failed_stage"], json!("building"));
        assert_eq!(value["data"]["duration"], json!(1.5));
        assert_eq!(value["data"]["status"], json!("failed"));
    }

    #[test]
    fn log_event_json_is_pinned() {
        let event = Event::Log {
            timestamp: "2026-11-28T03:21:08.125Z".into(),
            data: LogLine {
                seq: 17,
                line: "Step 1/5 : FROM scratch\n".into(),
                timestamp: "2026-11-28T03:21:08.124Z".into(),
                stream: None,
            },
        };
        assert_eq!(
            serde_json::to_string(&event).expect("serialises"),
            r#"{"type":"log","timestamp":"2026-11-28T03:21:08.125Z","data":{"seq":17,"line":"Step 1/5 : FROM scratch\n","timestamp":"2026-11-28T03:21:08.124Z"}}"#
        );
    }

    #[test]
    fn error_event_json_is_pinned() {
        let event = Event::Error {
            timestamp: "2026-11-28T03:21:08.125Z".into(),
            data: ErrorBody {
                code: ErrorCode::NotFound,
                message: "deployment 999 does not exist".into(),
            },
        };
        assert_eq!(
            serde_json::to_string(&event).expect("serialises"),
            r#"{"type":"error","timestamp":"2026-11-28T03:21:08.125Z","data":{"code":"not_found","message":"deployment 999 does not exist"}}"#
        );
    }

    #[test]
    fn events_round_trip() {
        let event = Event::Status {
            timestamp: "t".into(),
            data: building(),
        };
        let text = serde_json::to_string(&event).expect("serialises");
        assert_eq!(serde_json::from_str::<Event>(&text).expect("parses"), event);
        assert!(!event.is_terminal());
    }

    #[test]
    fn error_codes_map_to_http_and_close_codes() {
        assert_eq!(ErrorCode::BadRequest.close_code(), 4400);
        assert_eq!(ErrorCode::NotFound.close_code(), 4404);
        assert_eq!(ErrorCode::Unauthorized.close_code(), 4401);
        assert_eq!(ErrorCode::PayloadTooLarge.http_status(), 413);
        assert_eq!(
            serde_json::to_value(ErrorCode::PayloadTooLarge).expect("serialises"),
            json!("payload_too_large")
        );
        assert_eq!(ErrorCode::Misdirected.http_status(), 421);
        assert_eq!(
            serde_json::to_value(ErrorCode::Misdirected).expect("serialises"),
            json!("misdirected")
        );
        assert_eq!(ErrorCode::TooManyRequests.http_status(), 429);
        assert_eq!(
            serde_json::to_value(ErrorCode::TooManyRequests).expect("serialises"),
            json!("too_many_requests")
        );
    }

    #[test]
    fn status_differs_only_on_the_fields_that_matter() {
        let a = building();
        let mut b = a.clone();
        b.message = "something else".into();
        assert!(!a.differs_from(&b));
        b.progress = 55;
        assert!(a.differs_from(&b));
    }
}
