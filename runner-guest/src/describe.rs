//! A description of the request's files ([`RequestKind::Describe`]): how the service
//! types a file someone uploaded, inside the sandbox, before it keeps it.
//!
//! Every table is read whole, every row parsed as its schema, so a file that is
//! described is a file every later query can read: ragged rows, invalid UTF-8, a
//! truncated Parquet file or a codec the guest lacks fail here, with the table, the
//! line or the column at fault. A CSV column inferred from the first records that a
//! later record contradicts (`12`, …, `n/a`) becomes VARCHAR, as DuckDB's sniffer
//! would have it, rather than failing. Column names must be usable: not empty, not
//! repeated, no control characters, at most [`describe_limits::MAX_COLUMN_NAME_BYTES`]
//! bytes, at most [`describe_limits::MAX_COLUMNS`] per table.
//!
//! The answer is one row per column: `table`, `column`, `type` (the registry's type
//! name: `INTEGER`, `DOUBLE`, `VARCHAR`, `BOOLEAN`, `DATE`, `TIMESTAMP` for CSV; a
//! Parquet file's own types by their SQL names), `row_count`.
//!
//! [`RequestKind::Describe`]: protocol::RequestKind::Describe

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::catalog::TableProvider;
use datafusion::error::DataFusionError;
use datafusion::physical_plan::execute_stream;
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use protocol::{ColumnDecl, ColumnType, ErrorType, RunResult, TableFile, describe_limits};
use serde_json::{Value, json};

use crate::Failure;
use crate::csv_table::CsvTable;
use crate::dataset::{BytesRead, is_parquet};
use crate::errors::classify;
use crate::parquet_table::ParquetTable;

/// Columns a CSV file may turn from their inferred type to VARCHAR.
const MAX_RETYPED_COLUMNS: usize = 64;

/// Describes every file of the request.
pub async fn describe(
    ctx: &SessionContext,
    files: &[TableFile],
    batch_size: usize,
    bytes_read: BytesRead,
) -> Result<RunResult, Failure> {
    let mut rows = Vec::new();
    for file in files {
        let (schema, row_count) = describe_file(ctx, file, batch_size, &bytes_read).await?;
        let parquet = is_parquet(&file.path);
        for field in schema.fields() {
            rows.push(vec![
                json!(file.table),
                json!(field.name()),
                json!(type_name(field.data_type(), parquet)),
                json!(row_count),
            ]);
        }
    }
    let columns = ["table", "column", "type", "row_count"].map(String::from).to_vec();
    let types = ["VARCHAR", "VARCHAR", "VARCHAR", "BIGINT"].map(String::from).to_vec();
    Ok(RunResult::success(columns, types, rows, false))
}

/// One file's schema and rows, read whole. A CSV column whose inferred type a
/// later record contradicts is read again as VARCHAR.
async fn describe_file(
    ctx: &SessionContext,
    file: &TableFile,
    batch_size: usize,
    bytes_read: &BytesRead,
) -> Result<(Arc<Schema>, u64), Failure> {
    let tables = [file.table.clone()];
    let fail = |e: &DataFusionError| classify(e, &tables);
    let mut file = file.clone();
    loop {
        let table: Arc<dyn TableProvider> = if is_parquet(&file.path) {
            Arc::new(ParquetTable::open(&file, batch_size, bytes_read.clone()).map_err(|e| fail(&e))?)
        } else {
            Arc::new(CsvTable::open(&file, batch_size, bytes_read.clone()).map_err(|e| fail(&e))?)
        };
        let schema = table.schema();
        check_names(&file, &schema)?;
        match count_rows(ctx, table.as_ref()).await {
            Ok(rows) => return Ok((schema, rows)),
            Err(e) => match retype(&mut file, &schema, &e) {
                true => continue,
                false => return Err(fail(&e)),
            },
        }
    }
}

/// Reads every column of every row.
async fn count_rows(ctx: &SessionContext, table: &dyn TableProvider) -> Result<u64, DataFusionError> {
    let state = ctx.state();
    let plan = table.scan(&state, None, &[], None).await?;
    let mut stream = execute_stream(plan, ctx.task_ctx())?;
    let mut rows = 0u64;
    while let Some(batch) = stream.next().await {
        rows += batch?.num_rows() as u64;
    }
    Ok(rows)
}

/// When `error` is a CSV value that does not parse as its column's inferred type
/// (arrow-csv says `... for column N at line L`), declares that column VARCHAR and
/// says so; otherwise (or past [`MAX_RETYPED_COLUMNS`]) leaves the file as it is.
fn retype(file: &mut TableFile, schema: &Schema, error: &DataFusionError) -> bool {
    if is_parquet(&file.path) || file.columns.len() >= MAX_RETYPED_COLUMNS {
        return false;
    }
    let message = error.to_string();
    let Some(index) = message
        .split_once("for column ")
        .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|digits| digits.parse::<usize>().ok())
    else {
        return false;
    };
    let Some(field) = schema.fields().get(index) else { return false };
    if *field.data_type() == DataType::Utf8 || file.columns.iter().any(|c| &c.name == field.name()) {
        return false;
    }
    file.columns.push(ColumnDecl { name: field.name().clone(), column_type: ColumnType::Varchar });
    true
}

/// Column names a table must have to be queried by name.
fn check_names(file: &TableFile, schema: &Schema) -> Result<(), Failure> {
    let refuse = |what: String| Err((ErrorType::DatasetError, format!("table {} ({}): {what}", file.table, file.path)));
    let fields = schema.fields();
    if fields.len() > describe_limits::MAX_COLUMNS {
        return refuse(format!(
            "it has {} columns; at most {} are allowed",
            fields.len(),
            describe_limits::MAX_COLUMNS
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, field) in fields.iter().enumerate() {
        let name = field.name();
        let position = i + 1;
        if name.trim().is_empty() {
            return refuse(format!("column {position} has an empty name"));
        }
        if name.len() > describe_limits::MAX_COLUMN_NAME_BYTES {
            return refuse(format!(
                "column {position}'s name is {} bytes long; at most {} are allowed",
                name.len(),
                describe_limits::MAX_COLUMN_NAME_BYTES
            ));
        }
        if name.chars().any(char::is_control) {
            return refuse(format!("column {position}'s name {name:?} has a control character"));
        }
        if !seen.insert(name.to_lowercase()) {
            return refuse(format!("column {position}'s name {name:?} appears twice (names are case-insensitive)"));
        }
    }
    Ok(())
}

/// The registry's name for a column's type: one of its six for CSV, the SQL name
/// of a Parquet file's own type.
fn type_name(data_type: &DataType, parquet: bool) -> Value {
    let registry = match data_type {
        DataType::Int64 if !parquet => Some(ColumnType::Integer),
        DataType::Float64 if !parquet => Some(ColumnType::Double),
        DataType::Utf8 | DataType::Null if !parquet => Some(ColumnType::Varchar),
        DataType::Boolean if !parquet => Some(ColumnType::Boolean),
        DataType::Date32 if !parquet => Some(ColumnType::Date),
        DataType::Timestamp(_, None) if !parquet => Some(ColumnType::Timestamp),
        _ => None,
    };
    match registry {
        Some(ty) => json!(ty.sql_name()),
        None => json!(crate::json_rows::sql_type_name(data_type)),
    }
}
