//! [`LlmClient`]: one model call, streamed or not, in either dialect: the HTTP
//! client and its headers, each attempt's deadline, retries with backoff (and
//! `Retry-After`), bodies read within limits, and every error classified and
//! scrubbed of the key.
//!
//! Uses every other part of the llm module (`types`, `quote`, `error`, `settings`,
//! `sse`, `openai`, `anthropic`); `crate::config` for the settings and
//! `crate::error::chain`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use tokio::time::Instant;

use super::error::LlmError;
use super::quote::{provider_message, redact};
use super::settings::{LlmStatus, Provider, resolve};
use super::sse::{SseEvent, SseParser};
use super::types::{ModelReply, ModelRequest};
use super::{anthropic, openai};
use crate::config::{ApiKey, LlmConfig};

/// The longest `Retry-After` we wait; a provider asking for more gets its 429 back.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);
/// The first backoff between retries without `Retry-After`; doubled each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// A non-streaming reply larger than this is refused.
const MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;
/// Of an error response's body, this much is read (to quote its message).
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// A model client. Cloning is cheap (one shared connection pool).
#[derive(Clone)]
pub struct LlmClient {
    inner: Arc<Inner>,
}

struct Inner {
    provider: Provider,
    endpoint: reqwest::Url,
    host: String,
    model: String,
    key: Option<ApiKey>,
    /// The authentication and version headers, marked sensitive.
    headers: HeaderMap,
    /// The public OpenAI API wants `max_completion_tokens`; compatible servers
    /// know `max_tokens`.
    max_tokens_field: &'static str,
    timeout: Duration,
    max_retries: u32,
    http: reqwest::Client,
}

impl fmt::Debug for LlmClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("LlmClient")
            .field("provider", &inner.provider.name())
            .field("host", &inner.host)
            .field("model", &inner.model)
            .field("key", &inner.key)
            .field("timeout", &inner.timeout)
            .field("max_retries", &inner.max_retries)
            .finish()
    }
}

impl LlmClient {
    /// `Ok(None)`: no model is configured (switched off, or no key for a public
    /// API). `Err`: settings that cannot work (a bad URL, a timeout ≤ 0).
    pub fn from_config(config: &LlmConfig) -> Result<Option<LlmClient>, String> {
        let resolved = match resolve(config) {
            Ok(resolved) => resolved,
            Err(not_configured) if not_configured.invalid => return Err(not_configured.reason),
            Err(_) => return Ok(None),
        };
        let mut headers = HeaderMap::new();
        if let Some(key) = &resolved.key {
            let (name, value) = match resolved.provider {
                Provider::OpenAi => ("authorization", format!("Bearer {}", key.expose())),
                Provider::Anthropic => ("x-api-key", key.expose().to_string()),
            };
            let mut value = HeaderValue::from_str(&value).map_err(|_| "the API key is not a valid header value")?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        if resolved.provider == Provider::Anthropic {
            headers.insert("anthropic-version", HeaderValue::from_static(anthropic::API_VERSION));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(resolved.timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("csv-analyst/", env!("CARGO_PKG_VERSION")))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|problem| format!("cannot build the HTTP client: {problem}"))?;
        let max_tokens_field = if resolved.provider == Provider::OpenAi && resolved.public {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        Ok(Some(LlmClient {
            inner: Arc::new(Inner {
                provider: resolved.provider,
                endpoint: resolved.endpoint,
                host: resolved.host,
                model: resolved.model,
                key: resolved.key,
                headers,
                max_tokens_field,
                timeout: resolved.timeout,
                max_retries: resolved.max_retries,
                http,
            }),
        }))
    }

    /// What `/readyz` reports.
    pub fn status(config: &LlmConfig) -> LlmStatus {
        match resolve(config) {
            Ok(resolved) => LlmStatus {
                provider: resolved.provider.name().to_string(),
                model: Some(resolved.model),
                base_url_host: Some(resolved.host),
                configured: true,
                reason: None,
            },
            Err(not_configured) => LlmStatus {
                provider: not_configured.provider.to_string(),
                model: not_configured.model,
                base_url_host: not_configured.host,
                configured: false,
                reason: Some(not_configured.reason),
            },
        }
    }

    /// `openai` or `anthropic`.
    pub fn provider(&self) -> &'static str {
        self.inner.provider.name()
    }

    pub fn model(&self) -> &str {
        &self.inner.model
    }

    /// One model call, not streamed.
    pub async fn complete(&self, request: &ModelRequest) -> Result<ModelReply, LlmError> {
        self.complete_inner(request).await.map_err(|error| error.redacted(self.inner.key.as_ref()))
    }

    /// One model call, streamed: `on_text` gets each text fragment as it arrives;
    /// tool-call arguments are assembled from their fragments.
    pub async fn complete_streaming(
        &self,
        request: &ModelRequest,
        on_text: &mut (dyn FnMut(&str) + Send),
    ) -> Result<ModelReply, LlmError> {
        self.complete_streaming_inner(request, on_text).await.map_err(|error| error.redacted(self.inner.key.as_ref()))
    }

    async fn complete_inner(&self, request: &ModelRequest) -> Result<ModelReply, LlmError> {
        let body = self.request_body(request, false);
        let (response, deadline) = self.send(&body).await?;
        let bytes = self.read_body(response, deadline).await?;
        self.parse_reply(&bytes)
    }

    async fn complete_streaming_inner(
        &self,
        request: &ModelRequest,
        on_text: &mut (dyn FnMut(&str) + Send),
    ) -> Result<ModelReply, LlmError> {
        let body = self.request_body(request, true);
        let (mut response, deadline) = self.send(&body).await?;
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if content_type.starts_with("application/json") {
            // A server that ignores `stream: true` answers in one piece.
            let bytes = self.read_body(response, deadline).await?;
            let reply = self.parse_reply(&bytes)?;
            if !reply.text.is_empty() {
                on_text(&reply.text);
            }
            return Ok(reply);
        }
        let mut stream = match self.inner.provider {
            Provider::OpenAi => StreamState::OpenAi(openai::StreamState::default()),
            Provider::Anthropic => StreamState::Anthropic(anthropic::StreamState::default()),
        };
        let mut parser = SseParser::new();
        loop {
            let chunk = match tokio::time::timeout_at(deadline, response.chunk()).await {
                Err(_) => return Err(self.timeout_error("the stream was still open")),
                Ok(Err(problem)) => {
                    return Err(self.bad_response(format!(
                        "the stream broke off before its end: {}",
                        crate::error::chain(&problem.without_url())
                    )));
                }
                Ok(Ok(chunk)) => chunk,
            };
            let Some(chunk) = chunk else { break };
            let events = parser.push(&chunk).map_err(|problem| self.bad_response(problem.to_string()))?;
            for event in events {
                if stream.on_event(&event, on_text)? {
                    return stream.finish(false);
                }
            }
        }
        if let Some(event) = parser.finish().map_err(|problem| self.bad_response(problem.to_string()))?
            && stream.on_event(&event, on_text)?
        {
            return stream.finish(false);
        }
        stream.finish(true)
    }

    fn request_body(&self, request: &ModelRequest, stream: bool) -> serde_json::Value {
        match self.inner.provider {
            Provider::OpenAi => openai::request_body(&self.inner.model, request, stream, self.inner.max_tokens_field),
            Provider::Anthropic => anthropic::request_body(&self.inner.model, request, stream),
        }
    }

    fn parse_reply(&self, body: &[u8]) -> Result<ModelReply, LlmError> {
        match self.inner.provider {
            Provider::OpenAi => openai::parse_reply(body),
            Provider::Anthropic => anthropic::parse_reply(body),
        }
    }

    /// Sends the request, retrying what may be retried. Returns a 2xx response and
    /// the deadline of its attempt (the body must be read before it).
    async fn send(&self, body: &serde_json::Value) -> Result<(reqwest::Response, Instant), LlmError> {
        let inner = &self.inner;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let deadline = Instant::now() + inner.timeout;
            let request = inner.http.post(inner.endpoint.clone()).headers(inner.headers.clone()).json(body);
            let (mut error, retry_after) = match tokio::time::timeout_at(deadline, request.send()).await {
                Err(_) => return Err(self.timeout_error("no response arrived")),
                Ok(Ok(response)) if response.status().is_success() => return Ok((response, deadline)),
                Ok(Ok(response)) => {
                    let retry_after = retry_after(response.headers());
                    let status = response.status().as_u16();
                    let body = match self.read_at_most(response, deadline, MAX_ERROR_BODY_BYTES).await {
                        Ok((body, _)) => body,
                        Err(_) => Vec::new(),
                    };
                    (self.status_error(status, &body), retry_after)
                }
                Ok(Err(problem)) => (self.transport_error(problem), None),
            };
            error.set_attempts(attempt);
            if !error.retryable() || attempt > inner.max_retries {
                return Err(error);
            }
            let wait = match retry_after {
                Some(wait) => wait.min(MAX_RETRY_AFTER),
                None => FIRST_BACKOFF.saturating_mul(1 << (attempt - 1).min(16)).min(MAX_BACKOFF),
            };
            tracing::warn!(
                provider = inner.provider.name(),
                attempt,
                error_type = error.error_type(),
                wait_ms = wait.as_millis() as u64,
                error = %redact(&error.to_string(), inner.key.as_ref()),
                "model request failed; retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// Reads a reply's body before `deadline`; larger than `MAX_REPLY_BYTES` is an error.
    async fn read_body(&self, response: reqwest::Response, deadline: Instant) -> Result<Vec<u8>, LlmError> {
        let (body, complete) = self.read_at_most(response, deadline, MAX_REPLY_BYTES).await?;
        if complete {
            Ok(body)
        } else {
            Err(self.bad_response(format!("the reply is larger than {MAX_REPLY_BYTES} bytes")))
        }
    }

    /// Reads up to `limit` bytes of a body before `deadline`; says whether that was all.
    async fn read_at_most(
        &self,
        mut response: reqwest::Response,
        deadline: Instant,
        limit: usize,
    ) -> Result<(Vec<u8>, bool), LlmError> {
        let mut body = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, response.chunk()).await {
                Err(_) => return Err(self.timeout_error("the body was still arriving")),
                Ok(Err(problem)) => {
                    return Err(self.bad_response(format!(
                        "the body broke off before its end: {}",
                        crate::error::chain(&problem.without_url())
                    )));
                }
                Ok(Ok(None)) => return Ok((body, true)),
                Ok(Ok(Some(chunk))) => {
                    if body.len() + chunk.len() > limit {
                        body.extend_from_slice(&chunk[..limit - body.len()]);
                        return Ok((body, false));
                    }
                    body.extend_from_slice(&chunk);
                }
            }
        }
    }

    fn status_error(&self, status: u16, body: &[u8]) -> LlmError {
        let provider = self.inner.provider.name();
        let message = provider_message(body, self.inner.key.as_ref());
        match status {
            401 | 403 => LlmError::Auth { provider, status, message },
            429 => LlmError::RateLimited { provider, attempts: 1, message },
            400..=499 => LlmError::BadRequest { provider, status, message },
            500..=599 => LlmError::Unavailable { provider, attempts: 1, message: format!("HTTP {status}: {message}") },
            _ => self.bad_response(format!("unexpected HTTP {status}: {message}")),
        }
    }

    fn transport_error(&self, problem: reqwest::Error) -> LlmError {
        let provider = self.inner.provider.name();
        let is_builder = problem.is_builder();
        let message = format!("{}: {}", self.inner.host, crate::error::chain(&problem.without_url()));
        if is_builder {
            LlmError::BadRequest { provider, status: 0, message }
        } else {
            LlmError::Unavailable { provider, attempts: 1, message }
        }
    }

    fn timeout_error(&self, what: &str) -> LlmError {
        LlmError::Timeout {
            provider: self.inner.provider.name(),
            seconds: self.inner.timeout.as_secs_f64(),
            message: what.to_string(),
        }
    }

    fn bad_response(&self, message: String) -> LlmError {
        LlmError::BadResponse { provider: self.inner.provider.name(), message }
    }
}

/// The streaming state of either dialect.
enum StreamState {
    OpenAi(openai::StreamState),
    Anthropic(anthropic::StreamState),
}

impl StreamState {
    /// Takes one event; true when the stream's end marker arrived.
    fn on_event(&mut self, event: &SseEvent, on_text: &mut (dyn FnMut(&str) + Send)) -> Result<bool, LlmError> {
        match self {
            StreamState::OpenAi(state) => state.on_event(event, on_text),
            StreamState::Anthropic(state) => state.on_event(event, on_text),
        }
    }

    /// The reply; `at_eof`: the body ended without the end marker.
    fn finish(self, at_eof: bool) -> Result<ModelReply, LlmError> {
        match self {
            StreamState::OpenAi(state) => state.finish(at_eof),
            StreamState::Anthropic(state) => state.finish(at_eof),
        }
    }
}

/// `Retry-After` in seconds (HTTP dates are ignored: then the backoff applies).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    let seconds: f64 = value.parse().ok()?;
    Duration::try_from_secs_f64(seconds).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProviderChoice;

    fn config() -> LlmConfig {
        LlmConfig::default()
    }

    #[test]
    fn auto_without_anything_is_not_configured() {
        let status = LlmClient::status(&config());
        assert_eq!(
            status,
            LlmStatus {
                provider: "none".into(),
                model: None,
                base_url_host: None,
                configured: false,
                reason: Some(
                    "no model is configured: set OPENAI_API_KEY, OPENAI_BASE_URL (any OpenAI-compatible server) or \
                     ANTHROPIC_API_KEY"
                        .into()
                ),
            }
        );
        assert!(LlmClient::from_config(&config()).unwrap().is_none());
    }

    #[test]
    fn auto_prefers_openai_then_anthropic() {
        let both = LlmConfig {
            openai_api_key: Some("sk-one".into()),
            anthropic_api_key: Some("sk-ant-two".into()),
            ..config()
        };
        let client = LlmClient::from_config(&both).unwrap().unwrap();
        assert_eq!((client.provider(), client.model()), ("openai", "gpt-4o-mini"));

        let anthropic = LlmConfig { anthropic_api_key: Some("sk-ant-two".into()), ..config() };
        let client = LlmClient::from_config(&anthropic).unwrap().unwrap();
        assert_eq!((client.provider(), client.model()), ("anthropic", "claude-haiku-4-5"));
        assert_eq!(
            LlmClient::status(&anthropic),
            LlmStatus {
                provider: "anthropic".into(),
                model: Some("claude-haiku-4-5".into()),
                base_url_host: Some("api.anthropic.com".into()),
                configured: true,
                reason: None,
            }
        );
    }

    #[test]
    fn blank_settings_count_as_unset() {
        let blank = LlmConfig {
            openai_api_key: Some("  ".into()),
            openai_base_url: Some("".into()),
            anthropic_base_url: Some("http://127.0.0.1:9/".into()),
            ..config()
        };
        let status = LlmClient::status(&blank);
        assert_eq!(status.provider, "anthropic");
        assert_eq!(status.base_url_host.as_deref(), Some("127.0.0.1:9"));
        assert!(status.configured);
    }

    #[test]
    fn a_compatible_server_needs_no_key() {
        let local = LlmConfig {
            openai_base_url: Some("http://localhost:8080/v1".into()),
            openai_model: "qwen".into(),
            ..config()
        };
        let client = LlmClient::from_config(&local).unwrap().unwrap();
        assert_eq!(client.inner.endpoint.as_str(), "http://localhost:8080/v1/chat/completions");
        assert_eq!(client.inner.max_tokens_field, "max_tokens");
        assert!(client.inner.headers.is_empty());
        assert_eq!(LlmClient::status(&local).base_url_host.as_deref(), Some("localhost:8080"));
    }

    #[test]
    fn explicit_openai_without_key_on_the_public_api_is_not_configured() {
        let openai = LlmConfig { llm_provider: ProviderChoice::Openai, ..config() };
        assert!(LlmClient::from_config(&openai).unwrap().is_none());
        let status = LlmClient::status(&openai);
        assert_eq!(status.provider, "openai");
        assert_eq!(status.model.as_deref(), Some("gpt-4o-mini"));
        assert_eq!(status.base_url_host.as_deref(), Some("api.openai.com"));
        assert!(!status.configured);
        assert_eq!(
            status.reason.as_deref(),
            Some(
                "OPENAI_API_KEY is not set; it is needed for https://api.openai.com/v1 (a OPENAI_BASE_URL pointing \
                 at another server needs no key)"
            )
        );
    }

    #[test]
    fn explicit_anthropic_needs_a_key_unless_a_base_url_is_set() {
        let anthropic = LlmConfig { llm_provider: ProviderChoice::Anthropic, ..config() };
        assert!(LlmClient::from_config(&anthropic).unwrap().is_none());
        let with_url = LlmConfig { anthropic_base_url: Some("http://10.0.0.5:4000".into()), ..anthropic.clone() };
        let client = LlmClient::from_config(&with_url).unwrap().unwrap();
        assert_eq!(client.inner.endpoint.as_str(), "http://10.0.0.5:4000/v1/messages");
        assert_eq!(client.inner.headers.get("anthropic-version").unwrap(), "2023-06-01");
        assert!(client.inner.headers.get("x-api-key").is_none());
    }

    #[test]
    fn none_switches_the_model_off_even_with_a_key() {
        let off = LlmConfig { llm_provider: ProviderChoice::None, openai_api_key: Some("sk-x".into()), ..config() };
        assert!(LlmClient::from_config(&off).unwrap().is_none());
        assert_eq!(LlmClient::status(&off).provider, "none");
    }

    #[test]
    fn invalid_settings_are_errors() {
        let cases = [
            (
                LlmConfig { openai_base_url: Some("not a url".into()), ..config() },
                "OPENAI_BASE_URL is not a valid URL (relative URL without a base)",
            ),
            (
                LlmConfig { openai_base_url: Some("ftp://example.com".into()), ..config() },
                "OPENAI_BASE_URL must be an http:// or https:// URL",
            ),
            (
                LlmConfig { anthropic_base_url: Some("https://user:secret@example.com".into()), ..config() },
                "ANTHROPIC_BASE_URL must not contain credentials; use the API key setting",
            ),
            (
                LlmConfig { openai_api_key: Some("sk-x".into()), llm_timeout_seconds: 0.0, ..config() },
                "LLM_TIMEOUT_SECONDS must be a positive number, not 0",
            ),
            (
                LlmConfig { openai_api_key: Some("sk-x".into()), llm_timeout_seconds: -1.0, ..config() },
                "LLM_TIMEOUT_SECONDS must be a positive number, not -1",
            ),
            (
                LlmConfig { openai_api_key: Some("sk-x".into()), openai_model: " ".into(), ..config() },
                "OPENAI_MODEL is empty",
            ),
            (
                LlmConfig { openai_api_key: Some("sk-\nx".into()), ..config() },
                "OPENAI_API_KEY holds characters an HTTP header cannot carry",
            ),
        ];
        for (settings, expected) in cases {
            assert_eq!(LlmClient::from_config(&settings).unwrap_err(), expected);
            let status = LlmClient::status(&settings);
            assert!(!status.configured);
            assert_eq!(status.reason.as_deref(), Some(expected));
        }
    }

    #[test]
    fn the_public_openai_api_gets_max_completion_tokens_and_a_bearer_header() {
        let openai = LlmConfig { openai_api_key: Some("sk-secret-123".into()), ..config() };
        let client = LlmClient::from_config(&openai).unwrap().unwrap();
        assert_eq!(client.inner.endpoint.as_str(), "https://api.openai.com/v1/chat/completions");
        assert_eq!(client.inner.max_tokens_field, "max_completion_tokens");
        assert_eq!(client.inner.headers.get("authorization").unwrap(), "Bearer sk-secret-123");
    }

    #[test]
    fn keys_never_show_in_debug_output() {
        let settings = LlmConfig {
            openai_api_key: Some("sk-secret-123".into()),
            anthropic_api_key: Some("sk-ant-secret-456".into()),
            ..config()
        };
        let config_text = format!("{settings:?}");
        let client_text = format!("{:?}", LlmClient::from_config(&settings).unwrap().unwrap());
        for text in [config_text, client_text] {
            assert!(!text.contains("secret"), "{text}");
            assert!(text.contains("[redacted]"), "{text}");
        }
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert("retry-after", HeaderValue::from_static("0.5"));
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(500)));
        headers.insert("retry-after", HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(retry_after(&headers), None);
    }
}
