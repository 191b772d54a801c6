//! The engine's errors: one typed enum whose [`EngineError::code`] decides, in one place,
//! what the HTTP API and the dashboard's server functions answer. Internal detail (SQL,
//! paths, Docker's raw errors) stays in the `Display` text, which only the server log
//! sees; [`EngineError::public_message`] is what a client is told.

use protocol::validate::FieldError;
use protocol::{AppId, DeploymentId, ErrorCode, Status};

/// Something that does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Missing {
    #[error("app {0} does not exist")]
    App(AppId),
    #[error("deployment {0} does not exist")]
    Deployment(DeploymentId),
    #[error("API token {0} does not exist")]
    Token(i64),
    #[error("notification {0} does not exist")]
    Notification(i64),
}

/// A request that the current state does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    #[error("an app named {0:?} already exists")]
    AppNameTaken(String),
    #[error("the host name {0:?} is already used by another app")]
    DomainTaken(String),
    #[error("deployment {id} has already ended ({status})")]
    AlreadyEnded { id: DeploymentId, status: Status },
    #[error("deployment {0} did not succeed: only a successful deployment can be redeployed")]
    NotRedeployable(DeploymentId),
    #[error("app {0} has no earlier successful deployment to roll back to")]
    NothingToRollBackTo(AppId),
    #[error(
        "the image of deployment {0} is no longer kept: the last 5 successful images of each app are"
    )]
    ImageNotKept(DeploymentId),
    #[error("deployment {deployment} belongs to app {app}, not to app {requested}")]
    OtherApp {
        deployment: DeploymentId,
        app: AppId,
        requested: AppId,
    },
    #[error("deployment {id} is {status} but no worker of this server runs it")]
    NotRunningHere { id: DeploymentId, status: Status },
    /// Someone else moved the deployment first (a worker claimed it, a cancel won).
    #[error("deployment {id} is no longer {expected}")]
    Moved { id: DeploymentId, expected: Status },
    #[error("deployment {id} cannot go from {from} to {to}")]
    Transition {
        id: DeploymentId,
        from: Status,
        to: Status,
    },
    #[error("the admin account already exists: sign in instead")]
    AccountExists,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    NotFound(#[from] Missing),
    #[error(transparent)]
    Conflict(#[from] Conflict),
    /// Credentials missing or wrong; the message says which.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// Known, but not allowed to do this; the message says why.
    #[error("{0}")]
    Forbidden(&'static str),
    /// Too many password checks: from this address, for this user, or at once.
    #[error(
        "too many sign-in attempts: try again in {} s",
        crate::throttle::retry_secs(*retry_after)
    )]
    TooManyRequests { retry_after: std::time::Duration },
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("log store: {0}")]
    Io(#[from] std::io::Error),
    /// The event feed no longer keeps the events after the `since` asked for.
    #[error(
        "events after {since} are no longer kept (the oldest kept is {oldest}): reload, then connect without since"
    )]
    Gone { since: u64, oldest: u64 },
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// What clients are told about an error whose detail is for the server log only.
pub const INTERNAL_MESSAGE: &str = "internal error: the server log has the details";

impl EngineError {
    /// The one mapping of engine errors to the codes of PROTOCOL.md.
    pub fn code(&self) -> ErrorCode {
        match self {
            EngineError::NotFound(_) => ErrorCode::NotFound,
            EngineError::Conflict(_) => ErrorCode::Conflict,
            EngineError::Unauthorized(_) => ErrorCode::Unauthorized,
            EngineError::Forbidden(_) => ErrorCode::Forbidden,
            EngineError::TooManyRequests { .. } => ErrorCode::TooManyRequests,
            EngineError::Invalid(_) => ErrorCode::Unprocessable,
            EngineError::Gone { .. } => ErrorCode::Gone,
            EngineError::Database(_) | EngineError::Io(_) | EngineError::Internal(_) => {
                ErrorCode::Internal
            }
        }
    }

    /// The message a client sees: what was wrong and what to do, never internal detail.
    pub fn public_message(&self) -> String {
        match self.code() {
            ErrorCode::Internal => INTERNAL_MESSAGE.to_owned(),
            _ => self.to_string(),
        }
    }

    /// Whole seconds to wait before trying again (`Retry-After`), when that is the reason.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            EngineError::TooManyRequests { retry_after } => {
                Some(crate::throttle::retry_secs(*retry_after))
            }
            _ => None,
        }
    }

    /// The form field at fault, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            EngineError::Invalid(problem) => Some(&problem.field),
            EngineError::Conflict(Conflict::AppNameTaken(_)) => Some("name"),
            EngineError::Conflict(Conflict::DomainTaken(_)) => Some("domains"),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_detail_is_never_public() {
        let e = EngineError::Internal("/var/lib/slipway/secret.db: locked".into());
        assert_eq!(e.code(), ErrorCode::Internal);
        assert_eq!(e.public_message(), INTERNAL_MESSAGE);
        let e = EngineError::from(Missing::Deployment(99));
        assert_eq!(e.code(), ErrorCode::NotFound);
        assert_eq!(e.public_message(), "deployment 99 does not exist");
        let e = EngineError::from(Conflict::AppNameTaken("hello".into()));
        assert_eq!((e.code(), e.field()), (ErrorCode::Conflict, Some("name")));
        let e = EngineError::TooManyRequests {
            retry_after: std::time::Duration::from_millis(1500),
        };
        assert_eq!(e.code(), ErrorCode::TooManyRequests);
        assert_eq!(e.retry_after(), Some(2));
        assert_eq!(
            e.public_message(),
            "too many sign-in attempts: try again in 2 s"
        );
    }
}
