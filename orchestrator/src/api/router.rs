//! The whole HTTP surface, assembled in one place: every route, the fallbacks, and
//! the layers (request ids, tracing, body limit, request metrics).

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequestParts, MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use tower::Layer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use super::error::{ApiError, kind};
use super::extract::{Authenticated, ConnectionScope, PROBE_PATHS};
use super::{admin, chat, datasets, health, runs};
use crate::state::AppState;
use crate::{mcp, page};

/// Request ids longer than this are replaced by a fresh one, not echoed.
pub const MAX_REQUEST_ID_CHARS: usize = 200;

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config().max_body_bytes;
    let mcp = middleware::from_fn_with_state(state.clone(), authenticate_mcp).layer(mcp::http_service(
        state.runs().clone(),
        state.chat().clone(),
        &state.config().mcp_allowed_origins,
        body_limit,
    ));
    Router::new()
        .route("/", get(page::index))
        .route("/assets/{name}", get(page::asset))
        .route("/runs", post(runs::create_run).get(runs::list_runs))
        .route("/runs/{run_id}", get(runs::get_run))
        .route("/runs/{run_id}/status", get(runs::get_run_status))
        .route("/runs/{run_id}/result.csv", get(runs::get_run_csv))
        .route(
            "/datasets",
            get(datasets::list_datasets)
                .post(datasets::upload_dataset)
                .layer(DefaultBodyLimit::max(usize::try_from(state.config().upload_max_bytes).unwrap_or(usize::MAX))),
        )
        .route("/datasets/{dataset_id}", delete(datasets::delete_dataset))
        .route("/datasets/{dataset_id}/schema", get(datasets::get_schema))
        .route("/schemas/plan", get(datasets::plan_schema))
        .route("/chat", post(chat::chat))
        .route("/chat/stream", post(chat::chat_stream))
        .route("/chat/turns/{turn_id}", get(chat::get_turn))
        .route("/threads", get(chat::list_threads))
        .route("/threads/{thread_id}", delete(chat::delete_thread))
        .route("/threads/{thread_id}/messages", get(chat::thread_messages))
        .route("/me", get(admin::me))
        .route("/admin/tokens", post(admin::create_token).get(admin::list_tokens))
        .route("/admin/tokens/{token_id}", delete(admin::revoke_token))
        .route_service("/mcp", mcp)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(within_connection_scope))
        .layer(middleware::from_fn_with_state(state.clone(), time_out_bodies))
        .layer(middleware::from_fn_with_state(state.clone(), known_hosts_only))
        .layer(middleware::from_fn_with_state(state.clone(), count_requests))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
            let request_id = request.extensions().get::<RequestId>().and_then(|id| id.header_value().to_str().ok());
            tracing::info_span!(
                "http",
                method = %request.method(),
                path = %request.uri().path(),
                request_id = request_id.unwrap_or(""),
            )
        }))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(middleware::from_fn(drop_oversized_request_id))
        .with_state(state)
}

/// `/mcp` answers for the caller the API's own authentication finds (a 401 with
/// `WWW-Authenticate` when it finds none it accepts); the MCP server reads the
/// [`crate::auth::Caller`] from the request's extensions.
async fn authenticate_mcp(State(state): State<AppState>, request: Request, next: Next) -> Response {
    // DNS rebinding: a page of another origin must not reach a local server.
    if let Some(origin) = request.headers().get(axum::http::header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !mcp::origin_allowed(origin, &state.config().mcp_allowed_origins) {
            let message = format!("the origin {origin:?} may not call /mcp: add it to MCP_ALLOWED_ORIGINS");
            return ApiError::new(StatusCode::FORBIDDEN, kind::FORBIDDEN_ORIGIN, message).into_response();
        }
    }
    let (mut parts, body) = request.into_parts();
    match Authenticated::from_request_parts(&mut parts, &state).await {
        Ok(Authenticated(caller)) => parts.extensions.insert(caller),
        Err(error) => return error.into_response(),
    };
    // A POST body is read here, whole and bounded: one cut short, too large, not JSON
    // or a batch is a 4xx in the service's shape before the MCP layer sees it.
    let body = if parts.method == Method::POST {
        let bytes = match axum::body::to_bytes(body, state.config().max_body_bytes).await {
            Ok(bytes) => bytes,
            Err(e) if crate::error::chain(&e).contains("length limit") => {
                let message =
                    format!("the request body is larger than MAX_BODY_BYTES={}", state.config().max_body_bytes);
                return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, kind::PAYLOAD_TOO_LARGE, message).into_response();
            }
            Err(e) => {
                let message = format!("the request body could not be read: {}", crate::error::chain(&e));
                return ApiError::bad_request(message).into_response();
            }
        };
        match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Err(e) => {
                let message = format!("the body is not valid JSON: {e}");
                return ApiError::new(StatusCode::BAD_REQUEST, kind::INVALID_JSON, message).into_response();
            }
            Ok(serde_json::Value::Array(_)) => {
                return ApiError::bad_request(
                    "JSON-RPC batches are not accepted (MCP removed them in 2025-06-18): send one message a request",
                )
                .into_response();
            }
            Ok(_) => Body::from(bytes),
        }
    } else {
        body
    };
    as_json_error(next.run(Request::from_parts(parts, body)).await).await
}

/// The MCP layer's own HTTP refusals (405, 406, 415, 403 …) come as plain text:
/// given the service's `{"error": {"type", "message"}}` shape, like every other
/// route's. JSON answers (JSON-RPC errors included) pass as they are.
async fn as_json_error(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/event-stream"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), 64 * 1024).await.unwrap_or_default();
    let message = String::from_utf8_lossy(&text).trim().to_string();
    let kind = match status {
        StatusCode::METHOD_NOT_ALLOWED => kind::METHOD_NOT_ALLOWED,
        StatusCode::NOT_ACCEPTABLE => kind::NOT_ACCEPTABLE,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => kind::UNSUPPORTED_MEDIA_TYPE,
        StatusCode::PAYLOAD_TOO_LARGE => kind::PAYLOAD_TOO_LARGE,
        StatusCode::FORBIDDEN => kind::FORBIDDEN_ORIGIN,
        StatusCode::NOT_FOUND => kind::NOT_FOUND,
        s if s.is_server_error() => "INTERNAL",
        _ => kind::INVALID_REQUEST,
    };
    let message = if message.is_empty() { status.to_string() } else { message };
    ApiError::new(status, kind, message).into_response()
}

/// DNS rebinding: in single-user mode (no credentials to steal, every request the
/// local user) a request addressed to a name that is not this machine's
/// ([`crate::config::host_allowed`]: an IP address, `localhost`, ALLOWED_HOSTS) is
/// 403 — a page of `evil.example` rebound to 127.0.0.1 reaches the port, but under
/// its own name. The probes answer whatever the name (kubelets use the pod's address).
/// With auth on, a request needs credentials a rebinding page does not have.
async fn known_hosts_only(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if state.auth().enabled() || PROBE_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let host = request.headers().get(axum::http::header::HOST).and_then(|h| h.to_str().ok());
    match host {
        Some(host) if !crate::config::host_allowed(host, &state.config().allowed_hosts) => {
            let message = format!(
                "this single-user service answers requests addressed to an IP address or localhost, not {host:?}: \
                 add the name to ALLOWED_HOSTS, or turn auth on"
            );
            ApiError::new(StatusCode::FORBIDDEN, kind::FORBIDDEN_HOST, message).into_response()
        }
        _ => next.run(request).await,
    }
}

/// A client must keep sending its body: a pause between two pieces longer than
/// HTTP_HEADER_TIMEOUT_SECONDS ends the request (400), so a half-sent body cannot
/// hold a connection and a handler forever.
async fn time_out_bodies(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let timeout = std::time::Duration::from_secs_f64(state.config().http_header_timeout_seconds);
    next.run(request.map(|body| Body::new(tower_http::timeout::TimeoutBody::new(timeout, body)))).await
}

/// A client's `x-request-id` that is too long or not visible ASCII is removed, so
/// the request-id layer makes a fresh one instead of echoing it into headers,
/// records and logs.
async fn drop_oversized_request_id(mut request: Request, next: Next) -> Response {
    let bad = request.headers().get("x-request-id").is_some_and(|v| {
        v.len() > MAX_REQUEST_ID_CHARS || v.to_str().map_or(true, |s| s.chars().any(|c| !c.is_ascii_graphic()))
    });
    if bad {
        request.headers_mut().remove("x-request-id");
    }
    next.run(request).await
}

/// A connection that may use only the probe routes (the probe listener, or the
/// probe reserve past MAX_CONNECTIONS) gets a JSON error for any other path.
async fn within_connection_scope(request: Request, next: Next) -> Response {
    let scope = request.extensions().get::<ConnectionScope>().copied().unwrap_or(ConnectionScope::All);
    if scope == ConnectionScope::All || PROBE_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let probes = PROBE_PATHS.join(", ");
    let error = match scope {
        ConnectionScope::ProbeReserve => ApiError::unavailable(
            kind::CONNECTION_LIMIT,
            format!(
                "the service holds MAX_CONNECTIONS open connections; past them a connection serves only {probes}; \
                 retry shortly"
            ),
            1,
        ),
        _ => ApiError::new(
            StatusCode::NOT_FOUND,
            kind::NOT_FOUND,
            format!("the probe listener (PROBE_LISTEN_ADDR) serves only {probes}, not {}", request.uri().path()),
        ),
    };
    error.into_response()
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, kind::NOT_FOUND, format!("no route for {}", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        kind::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// Counts every request by method, route template and status code.
async fn count_requests(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let method = request.method().as_str().to_string();
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string());
    let response = next.run(request).await;
    state.metrics().observe_http(&method, route.as_deref(), response.status().as_u16());
    response
}
