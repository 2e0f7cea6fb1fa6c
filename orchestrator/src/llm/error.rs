//! [`LlmError`]: why a model request failed, the error type the API shows for it,
//! whether it may be retried, and its message scrubbed of the API key.
//!
//! Uses `super::quote` (to scrub the key); the key type is `crate::config`'s.

use super::quote::redact;
use crate::config::ApiKey;

/// Why a model request failed. Messages quote the provider (shortened, and never
/// with the API key in them).
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("{provider} refused the credentials (HTTP {status}): {message}")]
    Auth { provider: &'static str, status: u16, message: String },
    #[error("{provider} is rate limiting this client (attempts: {attempts}): {message}")]
    RateLimited { provider: &'static str, attempts: u32, message: String },
    #[error("{provider} did not answer within {seconds} s: {message}")]
    Timeout { provider: &'static str, seconds: f64, message: String },
    /// 5xx, connection refused or reset, overloaded.
    #[error("{provider} is unavailable (attempts: {attempts}): {message}")]
    Unavailable { provider: &'static str, attempts: u32, message: String },
    /// A 4xx other than 401, 403 and 429: the request itself is wrong.
    #[error("{provider} refused the request (HTTP {status}): {message}")]
    BadRequest { provider: &'static str, status: u16, message: String },
    /// A body or stream that cannot be parsed, or a stream cut before its end.
    #[error("{provider} sent a reply that cannot be used: {message}")]
    BadResponse { provider: &'static str, message: String },
}

impl LlmError {
    /// The error type the API and the run records show.
    pub fn error_type(&self) -> &'static str {
        match self {
            LlmError::Auth { .. } => "LLM_AUTH_ERROR",
            LlmError::RateLimited { .. } => "LLM_RATE_LIMITED",
            LlmError::Timeout { .. } => "LLM_TIMEOUT",
            LlmError::Unavailable { .. } => "LLM_UNAVAILABLE",
            LlmError::BadRequest { .. } => "LLM_BAD_REQUEST",
            LlmError::BadResponse { .. } => "LLM_BAD_RESPONSE",
        }
    }

    fn message_mut(&mut self) -> &mut String {
        match self {
            LlmError::Auth { message, .. }
            | LlmError::RateLimited { message, .. }
            | LlmError::Timeout { message, .. }
            | LlmError::Unavailable { message, .. }
            | LlmError::BadRequest { message, .. }
            | LlmError::BadResponse { message, .. } => message,
        }
    }

    pub(super) fn redacted(mut self, key: Option<&ApiKey>) -> LlmError {
        let message = self.message_mut();
        *message = redact(message, key);
        self
    }

    pub(super) fn retryable(&self) -> bool {
        matches!(self, LlmError::RateLimited { .. } | LlmError::Unavailable { .. })
    }

    pub(super) fn set_attempts(&mut self, count: u32) {
        if let LlmError::RateLimited { attempts, .. } | LlmError::Unavailable { attempts, .. } = self {
            *attempts = count;
        }
    }
}
