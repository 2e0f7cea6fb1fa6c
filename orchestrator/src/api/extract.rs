//! Extractors every handler shares: JSON bodies and paths whose rejections are
//! answered as [`ApiError`]s, the request id, who the caller is ([`Authenticated`]),
//! and list parameters.

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::{HeaderMap, header};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::auth::{Caller, Credentials};
use crate::state::AppState;

/// The peer address of a connection (the server puts it in each request's
/// extensions), for per-client fairness when a request has no `x-client-id`.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::SocketAddr);

/// Which routes a connection may use; the server puts it in each request's
/// extensions (none: every route, as for a router served some other way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionScope {
    /// Every route: a main-listener connection within the budget.
    All,
    /// The probe routes only ([`PROBE_PATHS`]): the probe listener (PROBE_LISTEN_ADDR);
    /// other paths are 404.
    ProbeListener,
    /// The probe routes only: a main-listener connection past MAX_CONNECTIONS, from
    /// the probe reserve; other paths are 503 `CONNECTION_LIMIT`.
    ProbeReserve,
}

/// The routes served whatever the connection budget: the probes and the metrics.
pub const PROBE_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// `axum::Json`, with its rejections answered as [`ApiError`]s.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Json::<T>::from_request(req, state).await.map(|Json(value)| ApiJson(value)).map_err(ApiError::from)
    }
}

/// `axum::extract::Path`, with its rejections (an invalid UTF-8 segment, say)
/// answered as JSON [`ApiError`]s like every other error.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| ApiPath(value))
            .map_err(|rejection| ApiError::bad_request(format!("invalid path: {}", rejection.body_text())))
    }
}

/// The request id the request-id layer set (the client's, or a fresh one).
pub fn request_id(headers: &HeaderMap) -> Option<String> {
    headers.get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// Who a request is from ([`Caller`]: its principal and its fairness key), as
/// [`crate::auth::Auth`] finds from its headers and connection. Every route but the
/// page and the probes takes it: a request it refuses (bad credentials, or none
/// where AUTH_ANONYMOUS=deny) is a 401 before the handler runs.
pub struct Authenticated(pub Caller);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &AppState) -> Result<Self, ApiError> {
        let headers = &parts.headers;
        let forwarded_for: Vec<&str> =
            headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect();
        let forwarded_for = forwarded_for.join(",");
        let credentials = Credentials {
            authorization: headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()),
            peer: parts.extensions.get::<ClientAddr>().map(|ClientAddr(peer)| peer.ip()),
            forwarded_for: Some(forwarded_for.as_str()).filter(|f| !f.is_empty()),
            client_id: headers.get("x-client-id").and_then(|v| v.to_str().ok()),
            proxy_user: state.auth().proxy_header().and_then(|name| headers.get(name)).map(|v| v.as_bytes()),
            proxy_user_repeated: state
                .auth()
                .proxy_header()
                .is_some_and(|name| headers.get_all(name).iter().count() > 1),
        };
        Ok(Authenticated(state.auth().authenticate(credentials).await?))
    }
}

#[derive(Debug, Deserialize)]
pub struct ListParams {
    pub limit: Option<usize>,
    /// Everyone's records rather than one's own (admins).
    #[serde(default)]
    pub all: bool,
}
