//! Handlers of `/datasets` and `/schemas/plan`.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::{ApiPath, Authenticated};
use crate::datasets;
use crate::plan;
use crate::state::AppState;

pub async fn list_datasets(State(state): State<AppState>, Authenticated(caller): Authenticated) -> Json<Value> {
    Json(json!({ "datasets": datasets::list(state.catalog(), &caller.principal) }))
}

pub async fn get_schema(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(dataset_id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let dataset = state.catalog().dataset_for(&dataset_id, &caller.principal)?;
    let view = state.runs().schema(&dataset.id).await?;
    Ok(Json(view.as_ref()).into_response())
}

pub async fn plan_schema(_: Authenticated) -> Json<Value> {
    Json(plan::json_schema())
}
