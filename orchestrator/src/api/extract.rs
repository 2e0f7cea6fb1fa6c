//! Extractors every handler shares: JSON bodies and paths whose rejections are
//! answered as [`ApiError`]s, the request id, the client's key for fairness, and
//! list parameters.

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::error::ApiError;

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

/// Who a request is from, for MAX_RUNS_PER_CLIENT: its `x-client-id` (visible ASCII,
/// at most 100 characters), else its connection's address; `None` when neither is
/// known (a router served without a connection that sets [`ClientAddr`]).
pub struct ClientKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for ClientKey {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        let id = parts
            .headers
            .get("x-client-id")
            .and_then(|v| v.to_str().ok())
            .filter(|id| !id.is_empty() && id.len() <= 100 && id.chars().all(|c| c.is_ascii_graphic()));
        let key = match (id, parts.extensions.get::<ClientAddr>()) {
            (Some(id), _) => Some(format!("id:{id}")),
            (None, Some(ClientAddr(peer))) => Some(format!("ip:{}", peer.ip())),
            (None, None) => None,
        };
        Ok(ClientKey(key))
    }
}

#[derive(Debug, Deserialize)]
pub struct ListParams {
    pub limit: Option<usize>,
}
