//! The HTTP edge's error: one code and message, rendered as PROTOCOL.md's JSON body.
//! Internal detail is logged here, once, and never sent to the client.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use engine::EngineError;
use protocol::{ApiError as ApiErrorBody, ErrorBody, ErrorCode};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
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
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::NotFound(m) => ApiError::new(ErrorCode::NotFound, m),
            EngineError::Conflict(m) => ApiError::new(ErrorCode::Conflict, m),
            EngineError::Unauthorized(m) => ApiError::new(ErrorCode::Unauthorized, m),
            EngineError::Invalid(f) => ApiError::new(ErrorCode::Unprocessable, f.to_string()),
            internal => {
                tracing::error!(error = %internal, "request failed");
                ApiError::new(
                    ErrorCode::Internal,
                    "internal error: the server log has the details",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(ApiErrorBody { error: self.body() })).into_response()
    }
}
