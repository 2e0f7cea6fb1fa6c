//! The HTTP service: its one state struct and its router, assembled here.
//!
//! Handlers are thin: they extract, call a plain function of [`crate::runs`] or
//! [`crate::datasets`], and serialize. Errors are [`ApiError`]s, always JSON.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use protocol::RunRequest;
use protocol::registry::Dataset;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

use crate::catalog::Catalog;
use crate::config::Config;
use crate::datasets::{self, SchemaView};
use crate::error::{ApiError, kind};
use crate::metrics::{HttpLabels, Metrics};
use crate::runs::{self, RunRecordView, RunSubmission};
use crate::sandbox::Provider;
use crate::store::Store;

/// Everything the handlers share.
pub struct AppState {
    pub config: Config,
    pub catalog: Arc<Catalog>,
    pub store: Store,
    pub provider: Provider,
    /// One permit per run allowed to execute at once.
    pub slots: Arc<Semaphore>,
    pub metrics: Metrics,
    pub schemas: Mutex<HashMap<String, Arc<SchemaView>>>,
}

pub type SharedState = Arc<AppState>;

impl AppState {
    /// A run slot, waiting at most QUEUE_TIMEOUT_MS for one to free up.
    pub async fn acquire_slot(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        let wait = Duration::from_millis(self.config.queue_timeout_ms);
        match tokio::time::timeout(wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(ApiError::unavailable(
                kind::CAPACITY_EXCEEDED,
                format!(
                    "all {} run slots are busy and none freed up within {} ms; retry shortly",
                    self.config.concurrency(),
                    self.config.queue_timeout_ms
                ),
                1,
            )),
        }
    }

    /// A request for `sql` over `dataset` with the service's limits, or tighter
    /// `timeout_ms` and `max_rows`.
    pub fn run_request(&self, dataset: &Dataset, sql: &str, timeout_ms: u64, max_rows: u64) -> RunRequest {
        let mut request = self.config.run_request(dataset, sql);
        request.timeout_ms = timeout_ms;
        request.max_rows = max_rows;
        request
    }
}

/// The whole HTTP surface.
pub fn router(state: SharedState) -> Router {
    let body_limit = state.config.max_body_bytes;
    Router::new()
        .route("/runs", post(create_run).get(list_runs))
        .route("/runs/{run_id}", get(get_run))
        .route("/runs/{run_id}/status", get(get_run_status))
        .route("/datasets", get(list_datasets))
        .route("/datasets/{dataset_id}/schema", get(get_schema))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), count_requests))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
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

fn request_id(headers: &HeaderMap) -> Option<String> {
    headers.get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_string)
}

async fn create_run(
    State(state): State<SharedState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    let submission: RunSubmission = serde_json::from_value(body.clone())
        .map_err(|e| ApiError::bad_request(format!("the request is invalid: {e}")))?;
    let response = runs::submit(&state, submission, body, request_id(&headers)).await?;
    Ok(Json(response).into_response())
}

#[derive(Debug, Deserialize)]
struct ListParams {
    limit: Option<usize>,
}

async fn list_runs(
    State(state): State<SharedState>,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(params) = params?;
    let runs = runs::list(&state, params.limit).await?;
    Ok(Json(json!({ "runs": runs })))
}

async fn get_run(
    State(state): State<SharedState>,
    Path(run_id): Path<String>,
) -> Result<Json<RunRecordView>, ApiError> {
    Ok(Json(runs::get(&state, &run_id).await?.into()))
}

async fn get_run_status(State(state): State<SharedState>, Path(run_id): Path<String>) -> Result<Json<Value>, ApiError> {
    let record = runs::get(&state, &run_id).await?;
    Ok(Json(json!({ "run_id": record.run_id, "status": record.status })))
}

async fn list_datasets(State(state): State<SharedState>) -> Json<Value> {
    Json(json!({ "datasets": datasets::list(&state) }))
}

async fn get_schema(State(state): State<SharedState>, Path(dataset_id): Path<String>) -> Result<Json<Value>, ApiError> {
    let view = datasets::schema(&state, &dataset_id).await?;
    Ok(Json(serde_json::to_value(view.as_ref()).unwrap_or(Value::Null)))
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<SharedState>) -> Response {
    let config = &state.config;
    let llm = json!({
        "provider": config.llm_provider,
        "openai_api_key_set": config.openai_api_key.as_deref().is_some_and(|k| !k.is_empty()),
        "anthropic_api_key_set": config.anthropic_api_key.as_deref().is_some_and(|k| !k.is_empty()),
        "required": false,
    });
    let provider = state.provider.kind().as_str();
    match state.provider.readiness().await {
        Ok(detail) => Json(json!({
            "status": "ready",
            "sandbox_provider": provider,
            "sandbox": detail,
            "datasets": state.catalog.ids(),
            "llm": llm,
        }))
        .into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not_ready", "sandbox_provider": provider, "reason": reason, "llm": llm })),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<SharedState>) -> Response {
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], state.metrics.render()).into_response()
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

/// Counts every request by method, route template and status.
async fn count_requests(State(state): State<SharedState>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let route =
        request.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(request).await;
    let labels = HttpLabels { method, route, status: response.status().as_u16() };
    state.metrics.http_requests.get_or_create(&labels).inc();
    response
}
