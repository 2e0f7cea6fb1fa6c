//! Handlers of `/runs`: submit a query, read a run, list runs, download a result.

use axum::Json;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, Authenticated, ListParams, request_id};
use crate::runs::{self, Origin, RunSubmission};
use crate::state::AppState;
use crate::store::Run;

pub async fn create_run(
    State(state): State<AppState>,
    headers: HeaderMap,
    Authenticated(caller): Authenticated,
    ApiJson(submission): ApiJson<RunSubmission>,
) -> Result<Response, ApiError> {
    let origin = Origin {
        request_id: request_id(&headers),
        turn_id: None,
        client: caller.client,
        principal: caller.principal,
        channel: "api",
    };
    let run = state.runs().submit(submission, origin).await?;
    Ok(Json(run).into_response())
}

pub async fn list_runs(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(params) = params?;
    let runs = state.runs().list(params.limit, &caller.principal, params.all).await?;
    let summaries: Vec<_> = runs.iter().map(Run::summary).collect();
    Ok(Json(json!({ "runs": summaries })))
}

pub async fn get_run(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(run_id): ApiPath<String>,
) -> Result<Response, ApiError> {
    Ok(Json(state.runs().get(&run_id, &caller.principal).await?).into_response())
}

pub async fn get_run_status(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(run_id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let run = state.runs().get(&run_id, &caller.principal).await?;
    Ok(Json(json!({ "run_id": run.run_id, "status": run.status })))
}

pub async fn get_run_csv(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(run_id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let run = state.runs().get(&run_id, &caller.principal).await?;
    let disposition = format!("attachment; filename=\"run-{}.csv\"", run.run_id.replace(['"', '\\'], ""));
    let export = runs::CsvExport::of(run)?;
    let (row_count, truncated) = (export.row_count(), export.truncated());
    let chunks = export.map(|chunk| Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(chunk)));
    let mut response = Response::new(Body::from_stream(futures::stream::iter(chunks)));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    headers.insert("x-row-count", HeaderValue::from(row_count));
    headers.insert("x-truncated", HeaderValue::from_static(if truncated { "true" } else { "false" }));
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}
