//! The whole HTTP surface, assembled in one place: every route, the fallbacks, and
//! the layers (request ids, tracing, body limit, request metrics).

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts, MatchedPath, Request, State};
use axum::http::StatusCode;
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
        .route("/datasets", get(datasets::list_datasets))
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
        Ok(Authenticated(caller)) => {
            parts.extensions.insert(caller);
            next.run(Request::from_parts(parts, body)).await
        }
        Err(error) => error.into_response(),
    }
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
