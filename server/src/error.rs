//! The HTTP edge's error: one code and message, rendered as PROTOCOL.md's JSON body.
//! Engine errors are mapped by [`EngineError::code`] and
//! [`EngineError::public_message`], the same rule the dashboard's server functions use;
//! internal detail is logged once, when the response is made, and never sent.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use engine::EngineError;
use protocol::{ApiError as ApiErrorBody, ErrorBody, ErrorCode};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// What the server log gets for an internal error.
    detail: Option<String>,
    /// Seconds to wait before trying again (`Retry-After`), for `too_many_requests`.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            detail: None,
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::BadRequest, message)
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code,
            message: self.message.clone(),
        }
    }

    /// Logs the detail of an internal error (once: it is taken).
    pub fn log(&mut self) {
        if let Some(detail) = self.detail.take() {
            tracing::error!(error = %detail, "request failed");
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let code = e.code();
        ApiError {
            code,
            message: e.public_message(),
            detail: (code == ErrorCode::Internal).then(|| e.to_string()),
            retry_after: e.retry_after(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(mut self) -> Response {
        self.log();
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(ApiErrorBody { error: self.body() })).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}
