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

use crate::error::Error;
use crate::plan::PlanScope;
use crate::runs::Limits;
use crate::state::AppState;

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
    /// The earliest and latest value of a date/time column ("last month" is the
    /// data's last month, not the calendar's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<Value>,
}

impl ColumnView {
    pub fn is_temporal(&self) -> bool {
        let t = self.column_type.to_ascii_uppercase();
        t.starts_with("DATE") || t.starts_with("TIMESTAMP")
    }
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
        .catalog()
        .datasets()
        .iter()
        .map(|d| DatasetView {
            id: d.id.clone(),
            name: if d.name.is_empty() { d.id.clone() } else { d.name.clone() },
            description: d.description.clone(),
            prompts: d.prompts.clone(),
            version_hash: state.catalog().version_hash(d),
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

pub async fn schema(state: &AppState, dataset_id: &str) -> Result<Arc<SchemaView>, Error> {
    let dataset = state.catalog().dataset(dataset_id).ok_or_else(|| state.catalog().unknown_dataset(dataset_id))?;
    let cell = state.schema_cell(dataset_id);
    let view = cell.get_or_try_init(|| compute_schema(state, dataset)).await?.clone();
    if view.tables.iter().any(|t| t.error.is_some()) {
        // Served once, then computed afresh: a table that failed may be fixed.
        state.forget_schema(dataset_id);
    }
    Ok(view)
}

async fn compute_schema(state: &AppState, dataset: &Dataset) -> Result<Arc<SchemaView>, Error> {
    state.provider().accepting().map_err(Error::SandboxNotReady)?;
    state.metrics().schema_computations.inc();
    let mut tables = Vec::new();
    for file in &dataset.files {
        tables.push(table_schema(state, dataset, file).await?);
    }
    Ok(Arc::new(SchemaView {
        dataset_id: dataset.id.clone(),
        version_hash: state.catalog().version_hash(dataset),
        tables,
    }))
}

/// The tables and columns a query plan over `dataset` may name.
pub async fn plan_scope(state: &AppState, dataset: &Dataset, max_rows: u64) -> Result<PlanScope, Error> {
    let schema = schema(state, &dataset.id).await?;
    let tables =
        schema.tables.iter().map(|t| (t.name.clone(), t.columns.iter().map(|c| c.name.clone()).collect())).collect();
    Ok(PlanScope { tables, max_rows })
}

async fn table_schema(state: &AppState, dataset: &Dataset, file: &DatasetFile) -> Result<TableSchema, Error> {
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
                min: None,
                max: None,
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
    let mut columns: Vec<ColumnView> = sample
        .columns
        .iter()
        .zip(sample.column_types.iter().map(String::as_str).chain(std::iter::repeat("")))
        .map(|(name, ty)| ColumnView {
            name: name.clone(),
            column_type: ty.to_string(),
            description: description(name),
            min: None,
            max: None,
        })
        .collect();
    date_ranges(state, dataset, &quoted, &mut columns).await?;
    let row_count = match file.row_count {
        Some(n) => Some(n),
        None => {
            let counted = sandbox_query(state, dataset, &format!("SELECT COUNT(*) FROM {quoted}")).await?;
            counted.rows.first().and_then(|row| row.first()).and_then(Value::as_u64)
        }
    };
    Ok(TableSchema { name: table, row_count, columns, sample_rows: sample.rows, error: None })
}

/// Fills in the min and max of the date/time columns, in one query.
async fn date_ranges(
    state: &AppState,
    dataset: &Dataset,
    quoted_table: &str,
    columns: &mut [ColumnView],
) -> Result<(), Error> {
    let temporal: Vec<usize> = (0..columns.len()).filter(|&i| columns[i].is_temporal()).collect();
    if temporal.is_empty() {
        return Ok(());
    }
    let quote = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
    let select: Vec<String> =
        temporal.iter().map(|&i| format!("MIN({c}), MAX({c})", c = quote(&columns[i].name))).collect();
    let result = sandbox_query(state, dataset, &format!("SELECT {} FROM {quoted_table}", select.join(", "))).await?;
    if let Some(row) = result.rows.first() {
        for (k, &i) in temporal.iter().enumerate() {
            columns[i].min = row.get(2 * k).cloned();
            columns[i].max = row.get(2 * k + 1).cloned();
        }
    }
    Ok(())
}

/// Runs an internal query (not recorded as a run) in the sandbox, in a run slot.
async fn sandbox_query(state: &AppState, dataset: &Dataset, sql: &str) -> Result<protocol::RunResult, Error> {
    let permit = state.acquire_slot().await?;
    let limits = Limits { timeout_ms: state.config().run_timeout().as_millis() as u64, max_rows: SAMPLE_ROWS };
    let request = state.run_request(dataset, sql, limits);
    let run_id = uuid::Uuid::new_v4().to_string();
    Ok(state.provider().run(&run_id, request, permit).await.result)
}
