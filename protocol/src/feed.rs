//! The event feed (`GET /api/events`, PROTOCOL.md "Live everywhere") and notifications.

use crate::{AppId, Deployment, DeploymentId, ErrorBody, Status};
use serde::{Deserialize, Serialize};

/// The position of an event in the feed: increasing by one per event, installation-wide.
pub type FeedId = u64;

/// Events every feed keeps for resuming clients, at least.
pub const FEED_KEPT: u64 = 10_000;

/// One message of the feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FeedEvent {
    /// A deployment was created or its status changed.
    Deployment {
        id: FeedId,
        timestamp: String,
        data: DeploymentSummary,
    },
    /// An app was created, changed or deleted.
    App {
        id: FeedId,
        timestamp: String,
        data: AppChange,
    },
    /// The feed cannot go on (`gone`: the events after `since` are no longer kept; the
    /// client reloads its state and connects without `since`).
    Error { timestamp: String, data: ErrorBody },
}

impl FeedEvent {
    /// The event's position, for `since` (none for an error).
    pub fn id(&self) -> Option<FeedId> {
        match self {
            FeedEvent::Deployment { id, .. } | FeedEvent::App { id, .. } => Some(*id),
            FeedEvent::Error { .. } => None,
        }
    }
}

/// A deployment as the feed shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentSummary {
    pub id: DeploymentId,
    pub app_id: AppId,
    pub status: Status,
    pub progress: u8,
    pub commit: Option<String>,
    pub error_message: String,
    pub created_at: String,
    pub finished_at: Option<String>,
}

impl From<&Deployment> for DeploymentSummary {
    fn from(d: &Deployment) -> DeploymentSummary {
        DeploymentSummary {
            id: d.id,
            app_id: d.app_id,
            status: d.status,
            progress: d.progress,
            commit: d.commit.clone(),
            error_message: d.error_message.clone(),
            created_at: d.created_at.clone(),
            finished_at: d.finished_at.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppChange {
    pub id: AppId,
    pub name: String,
    pub action: AppAction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppAction {
    Created,
    Updated,
    Deleted,
}

/// How a notification is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NotificationFormat {
    /// The deployment summary, the app's name and the monitor's URL, signed.
    #[default]
    Json,
    /// `{"text": ...}`, as Slack's incoming webhooks take it.
    Slack,
}

/// `POST /api/notifications`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewNotification {
    pub url: String,
    pub events: Vec<Status>,
    #[serde(default)]
    pub format: NotificationFormat,
}

/// A notification as `GET /api/notifications` lists it (the secret is shown once, when
/// it is created).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub id: i64,
    pub url: String,
    pub events: Vec<Status>,
    pub format: NotificationFormat,
    pub created_at: String,
}

/// The answer to `POST /api/notifications`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedNotification {
    pub id: i64,
    pub secret: String,
}

/// The body of a `json` notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationBody {
    #[serde(flatten)]
    pub deployment: DeploymentSummary,
    pub app_name: String,
    pub monitor_url: String,
}
