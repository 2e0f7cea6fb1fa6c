//! A dataset's schema as the sandbox sees it — the column types DataFusion actually
//! uses, three sample rows per table, the date range of date/time columns — so it
//! can never disagree with what a query sees. Computed with internal runs (not
//! recorded), once per dataset, and kept.

use std::sync::Arc;

use std::time::Duration;

use protocol::registry::DatasetFile;
use protocol::{RequestKind, RunRequest, RunStatus, TableFile, describe_limits};
use serde_json::Value;

use super::limits::Limits;
use super::service::Runs;
use crate::datasets::{CatalogEntry, ColumnView, DataRoot, SAMPLE_ROWS, SchemaView, TableSchema};
use crate::error::Error;
use crate::plan::PlanScope;

impl Runs {
    /// `GET /datasets/{id}/schema`: computed once per dataset and kept.
    pub async fn schema(&self, dataset_id: &str) -> Result<Arc<SchemaView>, Error> {
        let dataset = self.catalog().dataset(dataset_id).ok_or_else(|| self.catalog().unknown_dataset(dataset_id))?;
        let cell = self.schema_cell(dataset_id);
        let view = cell.get_or_try_init(|| self.compute_schema(&dataset)).await?.clone();
        if view.tables.iter().any(|t| t.error.is_some()) {
            // Served once, then computed afresh: a table that failed may be fixed.
            self.forget_schema(dataset_id);
        }
        Ok(view)
    }

    async fn compute_schema(&self, dataset: &CatalogEntry) -> Result<Arc<SchemaView>, Error> {
        self.provider().accepting().map_err(Error::SandboxNotReady)?;
        self.metrics().schema_computations.inc();
        let mut tables = Vec::new();
        for file in &dataset.files {
            tables.push(self.table_schema(dataset, file).await?);
        }
        Ok(Arc::new(SchemaView {
            dataset_id: dataset.id.clone(),
            version_hash: self.catalog().version_hash(dataset),
            tables,
        }))
    }

    /// The tables and columns a query plan over `dataset` may name.
    pub async fn plan_scope(&self, dataset: &CatalogEntry, max_rows: u64) -> Result<PlanScope, Error> {
        let schema = self.schema(&dataset.id).await?;
        let tables = schema
            .tables
            .iter()
            .map(|t| (t.name.clone(), t.columns.iter().map(|c| c.name.clone()).collect()))
            .collect();
        Ok(PlanScope { tables, max_rows })
    }

    async fn table_schema(&self, dataset: &CatalogEntry, file: &DatasetFile) -> Result<TableSchema, Error> {
        let table = file.table_name();
        let quoted = format!("\"{}\"", table.replace('"', "\"\""));
        let sample = self.sandbox_query(dataset, &format!("SELECT * FROM {quoted} LIMIT {SAMPLE_ROWS}")).await?;
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
        self.date_ranges(dataset, &quoted, &mut columns).await?;
        let row_count = match file.row_count {
            Some(n) => Some(n),
            None => {
                let counted = self.sandbox_query(dataset, &format!("SELECT COUNT(*) FROM {quoted}")).await?;
                counted.rows.first().and_then(|row| row.first()).and_then(Value::as_u64)
            }
        };
        Ok(TableSchema { name: table, row_count, columns, sample_rows: sample.rows, error: None })
    }

    /// Fills in the min and max of the date/time columns, in one query.
    async fn date_ranges(
        &self,
        dataset: &CatalogEntry,
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
        let result = self.sandbox_query(dataset, &format!("SELECT {} FROM {quoted_table}", select.join(", "))).await?;
        if let Some(row) = result.rows.first() {
            for (k, &i) in temporal.iter().enumerate() {
                columns[i].min = row.get(2 * k).cloned();
                columns[i].max = row.get(2 * k + 1).cloned();
            }
        }
        Ok(())
    }

    /// Runs an internal query (not recorded as a run) in the sandbox, in a run slot.
    async fn sandbox_query(&self, dataset: &CatalogEntry, sql: &str) -> Result<protocol::RunResult, Error> {
        let permit = self.admission().acquire_slot().await?;
        let limits = Limits { max_rows: SAMPLE_ROWS, ..Limits::service(self.settings()) };
        let request = self.request(dataset, sql, limits);
        let run_id = uuid::Uuid::new_v4().to_string();
        Ok(self.provider().run(&run_id, request, dataset.root(), permit).await.result)
    }

    /// Reads every row of `files` (paths under `/data`, relative to `root`) and types
    /// them, in the sandbox, in a run slot, under the run's memory limit and
    /// `timeout`: a [`RequestKind::Describe`] run, not recorded. Its answer has one
    /// row per column: table, column, type, row count.
    pub async fn describe(
        &self,
        dataset_id: &str,
        files: Vec<TableFile>,
        root: DataRoot,
        timeout: Duration,
    ) -> Result<protocol::RunResult, Error> {
        self.provider().accepting().map_err(Error::SandboxNotReady)?;
        // The whole body has arrived: waiting for a slot (as long as the run itself
        // may take) beats refusing an upload its client would have to send again.
        let permit = self.admission().acquire_slot_within(timeout).await?;
        let columns = files.len() * describe_limits::MAX_COLUMNS;
        let mut request = RunRequest::new(dataset_id, files, "");
        request.kind = RequestKind::Describe;
        request.timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        request.max_rows = columns as u64 + 1;
        // A column's row is its names and type: 1 KiB covers the longest.
        request.max_output_bytes = (columns as u64 + 1) * 1024;
        request.memory_limit_bytes = self.settings().memory_limit_bytes;
        let run_id = uuid::Uuid::new_v4().to_string();
        Ok(self.provider().run(&run_id, request, root, permit).await.result)
    }
}
