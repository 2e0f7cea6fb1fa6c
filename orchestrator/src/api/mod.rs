//! The HTTP surface: the router, assembled here, and thin handlers.
//!
//! Each handler extracts, calls a plain function of [`crate::runs`],
//! [`crate::datasets`] or [`crate::chat`], and serialises. Domain errors become
//! `{"error": {"type", "message"}}` with a status code in [`error`], in one place.

pub mod chat;
pub mod error;

use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use self::error::ApiError;
use self::error::kind;
use crate::datasets;
use crate::llm::LlmClient;
use crate::runs::{self, Origin, RunSubmission};
use crate::server::ClientAddr;
use crate::state::AppState;

/// Request ids longer than this are replaced by a fresh one, not echoed.
pub const MAX_REQUEST_ID_CHARS: usize = 200;

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config().max_body_bytes;
    Router::new()
        .route("/", get(crate::page::index))
        .route("/assets/{name}", get(crate::page::asset))
        .route("/runs", post(create_run).get(list_runs))
        .route("/runs/{run_id}", get(get_run))
        .route("/runs/{run_id}/status", get(get_run_status))
        .route("/runs/{run_id}/result.csv", get(get_run_csv))
        .route("/datasets", get(list_datasets))
        .route("/datasets/{dataset_id}/schema", get(get_schema))
        .route("/schemas/plan", get(plan_schema))
        .route("/chat", post(self::chat::chat))
        .route("/chat/stream", post(self::chat::chat_stream))
        .route("/chat/turns/{turn_id}", get(self::chat::get_turn))
        .route("/threads", get(self::chat::list_threads))
        .route("/threads/{thread_id}", delete(self::chat::delete_thread))
        .route("/threads/{thread_id}/messages", get(self::chat::thread_messages))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
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

/// Who a request is from, for MAX_RUNS_PER_CLIENT: its `x-client-id` (visible ASCII,
/// at most 100 characters), else its connection's address; `None` when neither is
/// known (a router served without [`crate::server::serve`]).
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

async fn create_run(
    State(state): State<AppState>,
    headers: HeaderMap,
    ClientKey(client): ClientKey,
    ApiJson(submission): ApiJson<RunSubmission>,
) -> Result<Response, ApiError> {
    let origin = Origin { request_id: request_id(&headers), turn_id: None, client };
    let run = runs::submit(&state, submission, origin).await?;
    Ok(Json(run).into_response())
}

#[derive(Debug, Deserialize)]
pub struct ListParams {
    pub limit: Option<usize>,
}

async fn list_runs(
    State(state): State<AppState>,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(params) = params?;
    let runs = runs::list(&state, params.limit).await?;
    let summaries: Vec<_> = runs.iter().map(runs::Run::summary).collect();
    Ok(Json(json!({ "runs": summaries })))
}

async fn get_run(State(state): State<AppState>, ApiPath(run_id): ApiPath<String>) -> Result<Response, ApiError> {
    Ok(Json(runs::get(&state, &run_id).await?).into_response())
}

async fn get_run_status(
    State(state): State<AppState>,
    ApiPath(run_id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let run = runs::get(&state, &run_id).await?;
    Ok(Json(json!({ "run_id": run.run_id, "status": run.status })))
}

async fn get_run_csv(State(state): State<AppState>, ApiPath(run_id): ApiPath<String>) -> Result<Response, ApiError> {
    let run = runs::get(&state, &run_id).await?;
    let csv = runs::result_csv(&run)?;
    let disposition = format!("attachment; filename=\"run-{}.csv\"", run.run_id.replace(['"', '\\'], ""));
    let mut response = Response::new(Body::from(csv));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

async fn list_datasets(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "datasets": datasets::list(&state) }))
}

async fn get_schema(State(state): State<AppState>, ApiPath(dataset_id): ApiPath<String>) -> Result<Response, ApiError> {
    let view = datasets::schema(&state, &dataset_id).await?;
    Ok(Json(view.as_ref()).into_response())
}

async fn plan_schema() -> Json<Value> {
    Json(crate::plan::json_schema())
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> Response {
    let llm = LlmClient::status(&state.config().llm);
    let provider = state.provider().kind().as_str();
    let checkers = crate::policy::checker_status();
    let stuck_runs = state.provider().stuck_runs();
    match state.provider().readiness().await {
        Ok(detail) => Json(json!({
            "status": "ready",
            "sandbox_provider": provider,
            "sandbox": detail,
            "datasets": state.catalog().ids(),
            "llm": llm,
            // Runs stopped past their deadline whose threads are still blocked in a
            // host call: they hold no slot, but each holds its guest's memory.
            "stuck_runs": stuck_runs,
            // SQL checks that overran their budget and still hold a checker.
            "policy_checkers": {"total": checkers.checkers, "busy": checkers.busy, "overrunning": checkers.overrunning},
        }))
        .into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not_ready", "sandbox_provider": provider, "reason": reason, "llm": llm })),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], state.metrics().render()).into_response()
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

/// Keep-alive comments on event streams.
pub const SSE_KEEP_ALIVE: Duration = Duration::from_secs(15);
