//! The two ways to reach the MCP server: streamable HTTP at `/mcp` (stateless, JSON
//! responses when the client accepts them), and stdio for a local client that
//! starts `orchestrator mcp` itself.

use std::sync::Arc;

use rmcp::ServiceExt;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

use super::analyst::Analyst;
use crate::access::Principal;
use crate::auth::Caller;
use crate::chat::Chat;
use crate::runs::Runs;

/// Browser origins always allowed: a page on this machine.
pub const LOOPBACK_ORIGINS: [&str; 6] = [
    "http://localhost:*",
    "http://127.0.0.1:*",
    "http://[::1]:*",
    "https://localhost:*",
    "https://127.0.0.1:*",
    "https://[::1]:*",
];

/// The `/mcp` service. Every request gets a fresh [`Analyst`] answering for the
/// caller the edge put in the request's extensions. A request whose `Origin` is not
/// a loopback origin nor one of `allowed_origins` is 403 (DNS rebinding); the `Host`
/// is not checked (behind an ingress it is the ingress's name: the Origin check and
/// authentication are what protect the route).
pub fn http_service(
    runs: Runs,
    chat: Chat,
    allowed_origins: &[String],
    max_body_bytes: usize,
) -> StreamableHttpService<Analyst, NeverSessionManager> {
    let origins: Vec<String> =
        LOOPBACK_ORIGINS.iter().map(|o| o.to_string()).chain(allowed_origins.iter().cloned()).collect();
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_max_request_body_bytes(max_body_bytes)
        .disable_allowed_hosts()
        .with_allowed_origins(origins)
        .enforce_origin_validation();
    StreamableHttpService::new(
        move || Ok(Analyst::new(runs.clone(), chat.clone(), None)),
        Arc::new(NeverSessionManager::default()),
        config,
    )
}

/// Whether a browser `Origin` may call `/mcp`: a loopback origin (any port), or one
/// of `allowed` (MCP_ALLOWED_ORIGINS) exactly. A request without an `Origin` is not
/// a browser's, and is not asked about.
pub fn origin_allowed(origin: &str, allowed: &[String]) -> bool {
    let origin = origin.trim().trim_end_matches('/');
    if allowed.iter().any(|a| a.trim().trim_end_matches('/').eq_ignore_ascii_case(origin)) {
        return true;
    }
    reqwest::Url::parse(origin).is_ok_and(|url| {
        let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
        matches!(url.scheme(), "http" | "https") && matches!(host, "localhost" | "127.0.0.1" | "::1")
    })
}

/// `orchestrator mcp`: serves one client over stdin and stdout until it closes them.
/// The caller is the local user (whoever can start the binary can read its store);
/// its runs are recorded with origin `mcp`. Logs go to stderr only.
pub async fn serve_stdio(runs: Runs, chat: Chat) -> anyhow::Result<()> {
    let caller = Caller { principal: Principal::local(), client: Some("stdio".into()) };
    let server = Analyst::new(runs, chat, Some(caller));
    let running = server.serve(rmcp::transport::stdio()).await?;
    running.waiting().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_and_listed_origins_may_call() {
        let allowed = vec!["https://app.example.com".to_string()];
        for ok in ["http://localhost:3000", "http://127.0.0.1", "http://[::1]:8080", "https://app.example.com/"] {
            assert!(origin_allowed(ok, &allowed), "{ok}");
        }
        for refused in ["https://evil.example", "http://localhost.evil.example", "null", "https://app.example.com:8443"]
        {
            assert!(!origin_allowed(refused, &allowed), "{refused}");
        }
    }
}
