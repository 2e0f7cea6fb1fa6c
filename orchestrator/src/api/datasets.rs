//! Handlers of `/datasets` (listing, schemas, uploads, deletion) and `/schemas/plan`.

use axum::Json;
use axum::extract::multipart::{Field, MultipartError, MultipartRejection};
use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::{ApiPath, Authenticated};
use crate::datasets;
use crate::error::Error;
use crate::plan;
use crate::state::AppState;
use crate::uploads::Staging;

/// Bytes of the `id` field at most.
const MAX_ID_FIELD_BYTES: usize = 256;
/// Bytes of the `description` field at most.
const MAX_DESCRIPTION_BYTES: usize = 4096;

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

/// `POST /datasets` (multipart/form-data): `id`, then `description` (optional) and
/// one or more `file` parts, each streamed to disk as it comes. 201 with the
/// dataset as `GET /datasets` lists it.
pub async fn upload_dataset(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let max_bytes = state.config().upload_max_bytes;
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > max_bytes) {
        return Err(Error::UploadTooLarge(format!("the upload is larger than UPLOAD_MAX_BYTES={max_bytes}")).into());
    }
    let mut multipart = multipart
        .map_err(|e| Error::InvalidUpload(format!("send the upload as multipart/form-data ({})", e.body_text())))?;
    let uploads = state.uploads();
    let mut staging: Option<Staging> = None;
    let mut description = String::new();
    while let Some(mut field) = multipart.next_field().await.map_err(|e| body_error(&e, max_bytes))? {
        match field.name().unwrap_or_default() {
            "id" => {
                if staging.is_some() {
                    return Err(Error::InvalidUpload("the upload has two `id` fields".into()).into());
                }
                let id = text_field(&mut field, "id", MAX_ID_FIELD_BYTES, max_bytes).await?;
                staging = Some(uploads.begin(id.trim(), &caller.principal)?);
            }
            "description" => {
                description = text_field(&mut field, "description", MAX_DESCRIPTION_BYTES, max_bytes).await?;
            }
            "file" => {
                let Some(staging) = staging.as_mut() else {
                    return Err(Error::InvalidUpload("send the `id` field before the files".into()).into());
                };
                let name = field.file_name().unwrap_or_default().to_string();
                let mut sink = staging.file(&name).await?;
                while let Some(chunk) = field.chunk().await.map_err(|e| body_error(&e, max_bytes))? {
                    sink.write(&chunk).await?;
                }
                sink.finish().await?;
            }
            other => {
                return Err(Error::InvalidUpload(format!(
                    "unknown field {other:?}: an upload has `id`, `description` and `file` fields"
                ))
                .into());
            }
        }
    }
    let Some(staging) = staging else {
        return Err(Error::InvalidUpload("the upload has no `id` field".into()).into());
    };
    let view = uploads.publish(staging, description, caller.client.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// `DELETE /datasets/{id}`: an upload, by its owner or the admin. 204.
pub async fn delete_dataset(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(dataset_id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state.uploads().delete(&dataset_id, &caller.principal).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A small text field, read whole.
async fn text_field(field: &mut Field<'_>, name: &str, limit: usize, max_bytes: u64) -> Result<String, ApiError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(|e| body_error(&e, max_bytes))? {
        if bytes.len() + chunk.len() > limit {
            return Err(Error::InvalidUpload(format!("the `{name}` field is longer than {limit} bytes")).into());
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes).map_err(|_| Error::InvalidUpload(format!("the `{name}` field is not UTF-8")).into())
}

/// A body that broke off, is not multipart, or is too large.
fn body_error(e: &MultipartError, max_bytes: u64) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Error::UploadTooLarge(format!("the upload is larger than UPLOAD_MAX_BYTES={max_bytes}")).into()
    } else {
        Error::InvalidUpload(format!("the upload cannot be read: {}", e.body_text())).into()
    }
}
