//! `GET /datasets` and `GET /datasets/{id}/schema`.
//!
//! The listing comes from the registry. The schema comes from the sandbox itself —
//! the column types DataFusion actually uses, and three sample rows per table — so
//! it can never disagree with what a query sees. It is computed once per dataset
//! and kept.

use std::sync::Arc;

use protocol::registry::{Dataset, DatasetFile};
use protocol::{RunError, RunStatus};
use serde::Serialize;
use serde_json::Value;

use crate::app::AppState;
use crate::error::{ApiError, kind};
use crate::runs::unknown_dataset;

/// Sample rows shown per table.
pub const SAMPLE_ROWS: u64 = 3;

#[derive(Debug, Clone, Serialize)]
pub struct DatasetView {
    pub id: String,
    pub name: String,
    pub description: String,
    pub prompts: Vec<String>,
    pub version_hash: Option<String>,
    pub tables: Vec<TableView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TableView {
    pub name: String,
    pub file: String,
    pub description: String,
    pub row_count: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ColumnView {
    pub name: String,
    #[serde(rename = "type")]
    pub column_type: String,
    pub description: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TableSchema {
    pub name: String,
    pub row_count: Option<u64>,
    pub columns: Vec<ColumnView>,
    pub sample_rows: Vec<Vec<Value>>,
    /// Set when the sandbox could not read the table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<RunError>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SchemaView {
    pub dataset_id: String,
    pub version_hash: Option<String>,
    pub tables: Vec<TableSchema>,
}

pub fn list(state: &AppState) -> Vec<DatasetView> {
    state
        .catalog
        .datasets()
        .iter()
        .map(|d| DatasetView {
            id: d.id.clone(),
            name: if d.name.is_empty() { d.id.clone() } else { d.name.clone() },
            description: d.description.clone(),
            prompts: d.prompts.clone(),
            version_hash: state.catalog.version_hash(d),
            tables: d
                .files
                .iter()
                .map(|f| TableView {
                    name: f.table_name(),
                    file: f.path.clone(),
                    description: f.description.clone(),
                    row_count: f.row_count,
                })
                .collect(),
        })
        .collect()
}

pub async fn schema(state: &AppState, dataset_id: &str) -> Result<Arc<SchemaView>, ApiError> {
    let dataset = state.catalog.dataset(dataset_id).ok_or_else(|| unknown_dataset(state, dataset_id))?;
    if let Some(cached) = state.schemas.lock().await.get(dataset_id) {
        return Ok(cached.clone());
    }
    state.provider.accepting().map_err(|reason| ApiError::unavailable(kind::SANDBOX_NOT_READY, reason, 5))?;
    let mut tables = Vec::new();
    for file in &dataset.files {
        tables.push(table_schema(state, dataset, file).await?);
    }
    let view = Arc::new(SchemaView {
        dataset_id: dataset.id.clone(),
        version_hash: state.catalog.version_hash(dataset),
        tables,
    });
    if view.tables.iter().all(|t| t.error.is_none()) {
        state.schemas.lock().await.insert(dataset.id.clone(), view.clone());
    }
    Ok(view)
}

async fn table_schema(state: &AppState, dataset: &Dataset, file: &DatasetFile) -> Result<TableSchema, ApiError> {
    let table = file.table_name();
    let quoted = format!("\"{}\"", table.replace('"', "\"\""));
    let sample = sandbox_query(state, dataset, &format!("SELECT * FROM {quoted} LIMIT {SAMPLE_ROWS}")).await?;
    let described = file.columns();
    let description =
        |name: &str| described.iter().find(|c| c.name == name).map(|c| c.description.clone()).unwrap_or_default();
    if sample.status != RunStatus::Success {
        let columns = described
            .iter()
            .map(|c| ColumnView {
                name: c.name.clone(),
                column_type: c.declared_type.clone().unwrap_or_default(),
                description: c.description.clone(),
            })
            .collect();
        return Ok(TableSchema {
            name: table,
            row_count: file.row_count,
            columns,
            sample_rows: vec![],
            error: sample.error,
        });
    }
    let columns = sample
        .columns
        .iter()
        .zip(sample.column_types.iter().map(String::as_str).chain(std::iter::repeat("")))
        .map(|(name, ty)| ColumnView {
            name: name.clone(),
            column_type: ty.to_string(),
            description: description(name),
        })
        .collect();
    let row_count = match file.row_count {
        Some(n) => Some(n),
        None => {
            let counted = sandbox_query(state, dataset, &format!("SELECT COUNT(*) FROM {quoted}")).await?;
            counted.rows.first().and_then(|row| row.first()).and_then(Value::as_u64)
        }
    };
    Ok(TableSchema { name: table, row_count, columns, sample_rows: sample.rows, error: None })
}

/// Runs an internal query (not recorded as a run) in the sandbox, in a run slot.
async fn sandbox_query(state: &AppState, dataset: &Dataset, sql: &str) -> Result<protocol::RunResult, ApiError> {
    let permit = state.acquire_slot().await?;
    let timeout_ms = state.config.run_timeout().as_millis() as u64;
    let request = state.run_request(dataset, sql, timeout_ms, SAMPLE_ROWS);
    let run_id = uuid::Uuid::new_v4().to_string();
    Ok(state.provider.run(&run_id, request, permit).await.result)
}
