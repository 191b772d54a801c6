//! The engine's errors. The HTTP edge maps each variant to one status and code;
//! `Internal` detail is logged there and never sent to a client.

use protocol::validate::FieldError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// Credentials missing or wrong.
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Invalid(#[from] FieldError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("log store: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
