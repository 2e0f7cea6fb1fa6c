//! Handlers of `/datasets` and `/schemas/plan`.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::ApiPath;
use crate::datasets;
use crate::plan;
use crate::state::AppState;

pub async fn list_datasets(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "datasets": datasets::list(state.catalog()) }))
}

pub async fn get_schema(
    State(state): State<AppState>,
    ApiPath(dataset_id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let view = state.runs().schema(&dataset_id).await?;
    Ok(Json(view.as_ref()).into_response())
}

pub async fn plan_schema() -> Json<Value> {
    Json(plan::json_schema())
}
