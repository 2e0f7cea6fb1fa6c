//! The model client the analyst agent talks through: a small, provider-neutral
//! client of our own on `reqwest`, so no vendor SDK decides our types, retries or
//! logging. Two wire dialects sit behind one interface:
//!
//! - [`openai`]: Chat Completions with function tools — the public OpenAI API and
//!   any OpenAI-compatible server (vLLM, Ollama, llama.cpp's `llama-server`), which
//!   then needs no key;
//! - [`anthropic`]: the Messages API with `tool_use`.
//!
//! Both stream over Server-Sent Events ([`sse`]). The agent speaks only the neutral
//! types here ([`ModelRequest`], [`Message`], [`ToolCall`], [`ModelReply`]).
//!
//! Behaviour every caller can rely on:
//! - each attempt is bounded by `LLM_TIMEOUT_SECONDS`, from sending the request to
//!   the last byte of the stream; a timeout is not retried (a stalled provider would
//!   only stall again, and the agent's turn has its own budget);
//! - up to `LLM_MAX_RETRIES` retries on 429 (waiting `Retry-After` seconds, at most
//!   10 s, else 0.5 s, 1 s, 2 s …), on 5xx and on connection failures — only before a
//!   successful response started; never on other 4xx;
//! - dropping a returned future drops its HTTP request at once (nothing is spawned);
//! - the API key appears in no error, `Debug` output or log line: it lives in
//!   [`ApiKey`], whose `Debug` prints `[redacted]`, and every error message is
//!   scrubbed of the key before it leaves this module.

mod anthropic;
mod openai;
pub mod sse;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use self::sse::{SseEvent, SseParser};

const OPENAI_PUBLIC_BASE_URL: &str = "https://api.openai.com/v1";
const ANTHROPIC_PUBLIC_BASE_URL: &str = "https://api.anthropic.com";
/// The longest `Retry-After` we wait; a provider asking for more gets its 429 back.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);
/// The first backoff between retries without `Retry-After`; doubled each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// A provider's error text is quoted up to this many characters.
const MAX_QUOTED_CHARS: usize = 300;
/// A non-streaming reply larger than this is refused.
const MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;
/// Of an error response's body, this much is read (to quote its message).
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// Which model provider the agent uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProviderChoice {
    /// OpenAI if OPENAI_API_KEY or OPENAI_BASE_URL is set, else Anthropic if
    /// ANTHROPIC_API_KEY or ANTHROPIC_BASE_URL is set, else none.
    Auto,
    /// OpenAI Chat Completions, or any OpenAI-compatible server at OPENAI_BASE_URL.
    Openai,
    /// Anthropic Messages.
    Anthropic,
    /// No model: only `SQL:` and `PLAN:` messages work.
    None,
}

/// An API key. Its `Debug` prints `[redacted]` and it has no `Display`, so a key
/// cannot slip into a log line or an error through formatting.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> ApiKey {
        ApiKey(key.into())
    }

    /// The key itself, for the one place that puts it into a request header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    fn is_blank(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl FromStr for ApiKey {
    type Err = std::convert::Infallible;
    fn from_str(key: &str) -> Result<ApiKey, Self::Err> {
        Ok(ApiKey(key.to_string()))
    }
}

impl From<String> for ApiKey {
    fn from(key: String) -> ApiKey {
        ApiKey(key)
    }
}

impl From<&str> for ApiKey {
    fn from(key: &str) -> ApiKey {
        ApiKey(key.to_string())
    }
}

/// The model settings, flattened into the orchestrator's `Config`.
#[derive(Debug, Clone, clap::Args)]
pub struct LlmConfig {
    /// auto (default: whichever key or base URL is set) | openai | anthropic | none.
    #[arg(long, env = "LLM_PROVIDER", value_enum, default_value_t = ProviderChoice::Auto, global = true)]
    pub llm_provider: ProviderChoice,

    /// Key for the OpenAI API (not needed for an OpenAI-compatible server at OPENAI_BASE_URL).
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true, global = true)]
    pub openai_api_key: Option<ApiKey>,

    /// Default https://api.openai.com/v1; any OpenAI-compatible server (vLLM, Ollama,
    /// llama.cpp llama-server) works, and then no key is required.
    #[arg(long, env = "OPENAI_BASE_URL", global = true)]
    pub openai_base_url: Option<String>,

    /// The OpenAI (or OpenAI-compatible) model name.
    #[arg(long, env = "OPENAI_MODEL", default_value = "gpt-4o-mini", global = true)]
    pub openai_model: String,

    /// Key for the Anthropic API (not needed with ANTHROPIC_BASE_URL pointing elsewhere).
    #[arg(long, env = "ANTHROPIC_API_KEY", hide_env_values = true, global = true)]
    pub anthropic_api_key: Option<ApiKey>,

    /// Default https://api.anthropic.com.
    #[arg(long, env = "ANTHROPIC_BASE_URL", global = true)]
    pub anthropic_base_url: Option<String>,

    /// The Anthropic model name.
    #[arg(long, env = "ANTHROPIC_MODEL", default_value = "claude-haiku-4-5", global = true)]
    pub anthropic_model: String,

    /// Limit of one model request, from sending it to the end of its stream.
    #[arg(long, env = "LLM_TIMEOUT_SECONDS", default_value_t = 60.0, global = true)]
    pub llm_timeout_seconds: f64,

    /// Retries on 429, 5xx and connection failures (never on other 4xx).
    #[arg(long, env = "LLM_MAX_RETRIES", default_value_t = 2, global = true)]
    pub llm_max_retries: u32,
}

impl Default for LlmConfig {
    /// The same defaults as the flags (for tests and embedding).
    fn default() -> LlmConfig {
        LlmConfig {
            llm_provider: ProviderChoice::Auto,
            openai_api_key: None,
            openai_base_url: None,
            openai_model: "gpt-4o-mini".to_string(),
            anthropic_api_key: None,
            anthropic_base_url: None,
            anthropic_model: "claude-haiku-4-5".to_string(),
            llm_timeout_seconds: 60.0,
            llm_max_retries: 2,
        }
    }
}

/// Who wrote a message. The system prompt is not a message: see [`ModelRequest::system`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    User,
    Assistant,
    /// The result of a tool call, answering [`Message::tool_call_id`].
    Tool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
    /// The calls an assistant message made (empty otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// The call a tool message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    pub fn user(content: impl Into<String>) -> Message {
        Message { role: Role::User, content: content.into(), tool_calls: Vec::new(), tool_call_id: None }
    }

    pub fn assistant(content: impl Into<String>, tool_calls: Vec<ToolCall>) -> Message {
        Message { role: Role::Assistant, content: content.into(), tool_calls, tool_call_id: None }
    }

    pub fn tool_result(tool_call_id: impl Into<String>, content: impl Into<String>) -> Message {
        Message {
            role: Role::Tool,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: Some(tool_call_id.into()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The provider's id of the call; the tool result quotes it.
    pub id: String,
    pub name: String,
    /// The raw JSON text the model wrote, which may be malformed: the agent checks it.
    pub arguments: String,
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// The arguments' JSON Schema (an object schema).
    pub parameters: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRequest {
    pub system: String,
    pub messages: Vec<Message>,
    pub tools: Vec<ToolSpec>,
    pub max_tokens: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelReply {
    /// The reply's text (empty when the model only called tools). An OpenAI refusal
    /// lands here too.
    pub text: String,
    pub tool_calls: Vec<ToolCall>,
    pub usage: Usage,
    /// Why the model stopped, as the provider says it (`stop`, `tool_calls`,
    /// `end_turn`, `tool_use`, `length`, `max_tokens` …), when it says.
    pub stop_reason: Option<String>,
}

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

    fn redacted(mut self, key: Option<&ApiKey>) -> LlmError {
        let message = self.message_mut();
        *message = redact(message, key);
        self
    }

    fn retryable(&self) -> bool {
        matches!(self, LlmError::RateLimited { .. } | LlmError::Unavailable { .. })
    }

    fn set_attempts(&mut self, count: u32) {
        if let LlmError::RateLimited { attempts, .. } | LlmError::Unavailable { attempts, .. } = self {
            *attempts = count;
        }
    }
}

/// What `/readyz` says about the model. Never holds a key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LlmStatus {
    /// `openai`, `anthropic` or `none`.
    pub provider: String,
    pub model: Option<String>,
    /// Host (and port, when not the scheme's default) of the base URL.
    pub base_url_host: Option<String>,
    pub configured: bool,
    /// Why it is not configured.
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Provider {
    OpenAi,
    Anthropic,
}

impl Provider {
    fn name(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::Anthropic => "anthropic",
        }
    }
}

/// Settings checked and ready for a client.
struct Resolved {
    provider: Provider,
    endpoint: reqwest::Url,
    host: String,
    /// The base URL is the provider's public one.
    public: bool,
    model: String,
    key: Option<ApiKey>,
    timeout: Duration,
    max_retries: u32,
}

/// Why there is no client: switched off or missing a key (`invalid: false`), or
/// settings that cannot work (`invalid: true`).
struct NotConfigured {
    provider: &'static str,
    model: Option<String>,
    host: Option<String>,
    reason: String,
    invalid: bool,
}

fn is_set(value: &Option<String>) -> bool {
    value.as_deref().is_some_and(|v| !v.trim().is_empty())
}

fn key_if_set(key: &Option<ApiKey>) -> Option<ApiKey> {
    key.as_ref().filter(|k| !k.is_blank()).map(|k| ApiKey(k.0.trim().to_string()))
}

fn resolve(config: &LlmConfig) -> Result<Resolved, NotConfigured> {
    let openai_chosen = key_if_set(&config.openai_api_key).is_some() || is_set(&config.openai_base_url);
    let anthropic_chosen = key_if_set(&config.anthropic_api_key).is_some() || is_set(&config.anthropic_base_url);
    let provider = match config.llm_provider {
        ProviderChoice::Openai => Provider::OpenAi,
        ProviderChoice::Anthropic => Provider::Anthropic,
        ProviderChoice::Auto if openai_chosen => Provider::OpenAi,
        ProviderChoice::Auto if anthropic_chosen => Provider::Anthropic,
        ProviderChoice::Auto => {
            return Err(NotConfigured {
                provider: "none",
                model: None,
                host: None,
                reason: "no model is configured: set OPENAI_API_KEY, OPENAI_BASE_URL (any OpenAI-compatible \
                         server) or ANTHROPIC_API_KEY"
                    .to_string(),
                invalid: false,
            });
        }
        ProviderChoice::None => {
            return Err(NotConfigured {
                provider: "none",
                model: None,
                host: None,
                reason: "LLM_PROVIDER=none switches the model off".to_string(),
                invalid: false,
            });
        }
    };
    let (base_setting, key_setting, model, public_base, key_var, base_var, model_var, path) = match provider {
        Provider::OpenAi => (
            &config.openai_base_url,
            &config.openai_api_key,
            &config.openai_model,
            OPENAI_PUBLIC_BASE_URL,
            "OPENAI_API_KEY",
            "OPENAI_BASE_URL",
            "OPENAI_MODEL",
            "chat/completions",
        ),
        Provider::Anthropic => (
            &config.anthropic_base_url,
            &config.anthropic_api_key,
            &config.anthropic_model,
            ANTHROPIC_PUBLIC_BASE_URL,
            "ANTHROPIC_API_KEY",
            "ANTHROPIC_BASE_URL",
            "ANTHROPIC_MODEL",
            "v1/messages",
        ),
    };
    let model = model.trim().to_string();
    let invalid = |host: Option<String>, reason: String| NotConfigured {
        provider: provider.name(),
        model: (!model.is_empty()).then(|| model.clone()),
        host,
        reason,
        invalid: true,
    };
    let base = base_setting.as_deref().map(str::trim).filter(|b| !b.is_empty()).unwrap_or(public_base);
    let (base_url, host) = parse_base_url(base).map_err(|problem| invalid(None, format!("{base_var} {problem}")))?;
    let public = base_url.host_str() == reqwest::Url::parse(public_base).ok().as_ref().and_then(|u| u.host_str());
    if model.is_empty() {
        return Err(invalid(Some(host), format!("{model_var} is empty")));
    }
    let key = key_if_set(key_setting);
    if key.is_none() && public {
        return Err(NotConfigured {
            provider: provider.name(),
            model: Some(model),
            host: Some(host),
            reason: format!(
                "{key_var} is not set; it is needed for {public_base} (a {base_var} pointing at another server \
                 needs no key)"
            ),
            invalid: false,
        });
    }
    if let Some(key) = &key
        && HeaderValue::from_str(key.expose()).is_err()
    {
        return Err(invalid(Some(host), format!("{key_var} holds characters an HTTP header cannot carry")));
    }
    let timeout = config.llm_timeout_seconds;
    let timeout = match Duration::try_from_secs_f64(timeout) {
        Ok(duration) if timeout > 0.0 => duration,
        _ => return Err(invalid(Some(host), format!("LLM_TIMEOUT_SECONDS must be a positive number, not {timeout}"))),
    };
    let endpoint = base_url
        .join(path)
        .map_err(|problem| invalid(Some(host.clone()), format!("{base_var} cannot take the path {path}: {problem}")))?;
    Ok(Resolved { provider, endpoint, host, public, model, key, timeout, max_retries: config.llm_max_retries })
}

/// Checks a base URL; returns it ending in `/` (so `join` appends) and its host.
/// Never quotes the URL back: it might carry a password.
fn parse_base_url(base: &str) -> Result<(reqwest::Url, String), String> {
    let mut url = reqwest::Url::parse(base).map_err(|problem| format!("is not a valid URL ({problem})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http:// or https:// URL".to_string());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain credentials; use the API key setting".to_string());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or fragment".to_string());
    }
    let Some(host) = url.host_str() else { return Err("has no host".to_string()) };
    let host = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok((url, host))
}

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

/// The message of a provider's error body (`{"error": {"type", "message"}}` in both
/// dialects; `{"error": "…"}` from some compatible servers; else the text itself),
/// scrubbed of the key and shortened.
fn provider_message(body: &[u8], key: Option<&ApiKey>) -> String {
    let text = String::from_utf8_lossy(body);
    let message = match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(json) => {
            let error = json.get("error").unwrap_or(&json);
            match (error.get("type").and_then(|t| t.as_str()), error.get("message").and_then(|m| m.as_str())) {
                (Some(kind), Some(message)) => format!("{kind}: {message}"),
                (None, Some(message)) => message.to_string(),
                _ => match error.as_str() {
                    Some(message) => message.to_string(),
                    None => text.trim().to_string(),
                },
            }
        }
        Err(_) => text.trim().to_string(),
    };
    if message.is_empty() { "(empty body)".to_string() } else { shorten(&redact(&message, key), MAX_QUOTED_CHARS) }
}

/// `text` without the key in it.
fn redact(text: &str, key: Option<&ApiKey>) -> String {
    match key {
        Some(key) if !key.expose().is_empty() => text.replace(key.expose(), "[redacted]"),
        _ => text.to_string(),
    }
}

fn shorten(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// Shortens what a malformed body or event looked like, for an error message.
fn excerpt(text: &str) -> String {
    shorten(text.trim(), 120)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn provider_messages_are_quoted_shortened_and_redacted() {
        let key = ApiKey::new("sk-secret-123");
        let openai = br#"{"error":{"message":"Incorrect API key provided: sk-secret-123.","type":"invalid_request_error","code":"invalid_api_key"}}"#;
        assert_eq!(
            provider_message(openai, Some(&key)),
            "invalid_request_error: Incorrect API key provided: [redacted]."
        );
        let anthropic = br#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#;
        assert_eq!(provider_message(anthropic, None), "authentication_error: invalid x-api-key");
        assert_eq!(provider_message(br#"{"error":"model not found"}"#, None), "model not found");
        assert_eq!(provider_message(b"  Bad Gateway\n", None), "Bad Gateway");
        assert_eq!(provider_message(b"", None), "(empty body)");
        // The key is removed before shortening, so a cut cannot leave half of it.
        let long = format!("{}sk-secret-123 and more", "x".repeat(295));
        assert_eq!(provider_message(long.as_bytes(), Some(&key)), format!("{}[reda…", "x".repeat(295)));
        assert_eq!(shorten("ééé", 2), "éé…");
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
