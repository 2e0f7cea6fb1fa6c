//! HTTP errors: a status code and `{"error": {"type", "message"}}`.
//!
//! Every request that cannot be served gets one of these (a 4xx for bad input,
//! 503 for a busy or not-yet-ready service), never a bare 500 or a dropped
//! connection. Domain errors ([`crate::error::Error`]) become HTTP errors here, in
//! one place.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::Error;

/// The `type`s only the HTTP layer produces (the domain's come from [`Error::error_type`]).
pub mod kind {
    pub const INVALID_JSON: &str = "INVALID_JSON";
    pub const INVALID_REQUEST: &str = "INVALID_REQUEST";
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "UNSUPPORTED_MEDIA_TYPE";
    pub const PAYLOAD_TOO_LARGE: &str = "PAYLOAD_TOO_LARGE";
    pub const NOT_FOUND: &str = "NOT_FOUND";
    pub const METHOD_NOT_ALLOWED: &str = "METHOD_NOT_ALLOWED";
    /// A request on a connection past MAX_CONNECTIONS, which serves only the probes.
    pub const CONNECTION_LIMIT: &str = "CONNECTION_LIMIT";
    /// A browser page of an origin not allowed to call `/mcp`.
    pub const FORBIDDEN_ORIGIN: &str = "FORBIDDEN_ORIGIN";
    /// `/mcp` without an `Accept` that allows its answers.
    pub const NOT_ACCEPTABLE: &str = "NOT_ACCEPTABLE";
    /// A single-user service addressed by a name it does not know (DNS rebinding).
    pub const FORBIDDEN_HOST: &str = "FORBIDDEN_HOST";
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    /// Seconds after which a retry may succeed (503s).
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, kind, message: message.into(), retry_after: None }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, kind::INVALID_REQUEST, message)
    }

    pub fn unavailable(kind: &'static str, message: impl Into<String>, retry_after: u32) -> Self {
        ApiError { retry_after: Some(retry_after), ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, kind, message) }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "type": self.kind, "message": self.message } });
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 6750: the scheme a client should answer with.
            let challenge = HeaderValue::from_static("Bearer realm=\"csv-analyst\"");
            response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        let status = match &error {
            Error::InvalidRequest(_) | Error::InvalidUpload(_) => StatusCode::BAD_REQUEST,
            Error::UploadInvalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::UploadTooLarge(_) | Error::QuotaExceeded(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::DatasetExists(_) => StatusCode::CONFLICT,
            Error::CuratedDataset(_) => StatusCode::FORBIDDEN,
            Error::UnknownDataset { .. }
            | Error::RunNotFound(_)
            | Error::ThreadNotFound(_)
            | Error::TurnNotFound(_)
            | Error::TokenNotFound(_)
            | Error::AuthNotConfigured(_) => StatusCode::NOT_FOUND,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::ThreadDatasetConflict { .. } => StatusCode::CONFLICT,
            Error::ClientLimit(_) => StatusCode::TOO_MANY_REQUESTS,
            Error::CapacityExceeded(_)
            | Error::SandboxNotReady(_)
            | Error::StoreUnavailable(_)
            | Error::LlmNotConfigured(_)
            | Error::UploadsUnavailable(_)
            | Error::AuthUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let retry_after = match &error {
            Error::CapacityExceeded(_) | Error::ClientLimit(_) => Some(1),
            Error::SandboxNotReady(_) | Error::StoreUnavailable(_) | Error::AuthUnavailable(_) => Some(5),
            _ => None,
        };
        ApiError { status, kind: error.error_type(), message: error.to_string(), retry_after }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                kind::UNSUPPORTED_MEDIA_TYPE,
                "the body must be JSON, sent with Content-Type: application/json",
            ),
            JsonRejection::JsonSyntaxError(e) => ApiError::new(
                StatusCode::BAD_REQUEST,
                kind::INVALID_JSON,
                format!("the body is not valid JSON: {}", source_text(&e)),
            ),
            JsonRejection::JsonDataError(e) => ApiError::new(
                StatusCode::BAD_REQUEST,
                kind::INVALID_REQUEST,
                format!("the request is invalid: {}", source_text(&e)),
            ),
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, kind::PAYLOAD_TOO_LARGE, "the request body is too large")
            }
            other => ApiError::new(other.status(), kind::INVALID_REQUEST, other.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::bad_request(format!("invalid query string: {}", rejection.body_text()))
    }
}

/// The innermost cause's text: serde's message with line and column, without
/// axum's prefix.
fn source_text(error: &dyn std::error::Error) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}
