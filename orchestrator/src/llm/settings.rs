//! Settings resolution: an [`LlmConfig`] checked and turned into what a client
//! needs (`Resolved`: the provider, its endpoint, the model, the key, the timeout),
//! or the reason there is no client (`NotConfigured`); and [`LlmStatus`], what
//! `/readyz` says about it.
//!
//! Uses nothing else of the llm module; the settings are `crate::config`'s.

use std::time::Duration;

use reqwest::header::HeaderValue;
use serde::Serialize;

use crate::config::{ApiKey, LlmConfig, ProviderChoice};

const OPENAI_PUBLIC_BASE_URL: &str = "https://api.openai.com/v1";
const ANTHROPIC_PUBLIC_BASE_URL: &str = "https://api.anthropic.com";

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
pub(super) enum Provider {
    OpenAi,
    Anthropic,
}

impl Provider {
    pub(super) fn name(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::Anthropic => "anthropic",
        }
    }
}

/// Settings checked and ready for a client.
pub(super) struct Resolved {
    pub(super) provider: Provider,
    pub(super) endpoint: reqwest::Url,
    pub(super) host: String,
    /// The base URL is the provider's public one.
    pub(super) public: bool,
    pub(super) model: String,
    pub(super) key: Option<ApiKey>,
    pub(super) timeout: Duration,
    pub(super) max_retries: u32,
}

/// Why there is no client: switched off or missing a key (`invalid: false`), or
/// settings that cannot work (`invalid: true`).
pub(super) struct NotConfigured {
    pub(super) provider: &'static str,
    pub(super) model: Option<String>,
    pub(super) host: Option<String>,
    pub(super) reason: String,
    pub(super) invalid: bool,
}

fn is_set(value: &Option<String>) -> bool {
    value.as_deref().is_some_and(|v| !v.trim().is_empty())
}

fn key_if_set(key: &Option<ApiKey>) -> Option<ApiKey> {
    key.as_ref().filter(|k| !k.is_blank()).map(ApiKey::trimmed)
}

pub(super) fn resolve(config: &LlmConfig) -> Result<Resolved, NotConfigured> {
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
