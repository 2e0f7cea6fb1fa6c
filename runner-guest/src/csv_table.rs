//! CSV tables: a file with a header row, read with the `csv-decoder` crate (a SIMD
//! splitter with arrow-csv's exact answers, and arrow-csv as its fallback), batch by
//! batch. Column types are the registry's where it declares them, inferred from the
//! first records otherwise.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use csv_decoder::CsvReader;
use datafusion::arrow::csv::reader::Format;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::stats::{Precision, Statistics};
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use protocol::{ColumnDecl, ColumnType, TableFile};

use crate::dataset::{BytesRead, CountingReader, ScanExec, dataset_error};

/// Records read to infer the types of columns the registry does not declare.
const INFER_RECORDS: usize = 10_000;

/// One CSV file with a header row.
#[derive(Debug)]
pub struct CsvTable {
    table: String,
    path: PathBuf,
    schema: SchemaRef,
    size: FileSize,
    batch_size: usize,
    bytes_read: BytesRead,
}

impl CsvTable {
    pub fn open(file: &TableFile, batch_size: usize, bytes_read: BytesRead) -> Result<CsvTable> {
        let path = PathBuf::from(&file.path);
        let context = |what: &str| format!("table {} ({}): {what}", file.table, file.path);
        let open = || File::open(&path).map_err(|e| dataset_error(context(&format!("cannot open the file: {e}"))));

        let mut header_reader = csv::ReaderBuilder::new().has_headers(true).from_reader(open()?);
        let header: Vec<String> = header_reader
            .headers()
            .map_err(|e| dataset_error(context(&format!("cannot read the header row: {e}"))))?
            .iter()
            .enumerate()
            .map(|(i, name)| if i == 0 { name.trim_start_matches('\u{feff}').to_string() } else { name.to_string() })
            .collect();
        if header.is_empty() || header.iter().all(|h| h.is_empty()) {
            return Err(dataset_error(context("the file has no header row")));
        }

        let declared: HashMap<&str, ColumnType> =
            file.columns.iter().map(|ColumnDecl { name, column_type }| (name.as_str(), *column_type)).collect();
        let inferred = if header.iter().all(|h| declared.contains_key(h.as_str())) {
            None
        } else {
            let (schema, _) = Format::default()
                .with_header(true)
                .infer_schema(open()?, Some(INFER_RECORDS))
                .map_err(|e| dataset_error(context(&format!("cannot infer column types: {e}"))))?;
            Some(schema)
        };

        let fields: Vec<Field> = header
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let data_type = match declared.get(name.as_str()) {
                    Some(ty) => arrow_type(*ty),
                    None => match inferred.as_ref().map(|s| s.field(i).data_type()) {
                        Some(DataType::Null) | None => DataType::Utf8,
                        Some(ty) => ty.clone(),
                    },
                };
                Field::new(name, data_type, true)
            })
            .collect();
        let mut seen = HashSet::new();
        if let Some(dup) = fields.iter().find(|f| !seen.insert(f.name().as_str())) {
            return Err(dataset_error(context(&format!("column {:?} appears twice in the header", dup.name()))));
        }
        let schema = Schema::new(fields);
        let size =
            FileSize::measure(&path).map_err(|e| dataset_error(context(&format!("cannot read the file: {e}"))))?;
        Ok(CsvTable { table: file.table.clone(), path, schema: Arc::new(schema), size, batch_size, bytes_read })
    }
}

/// The Arrow type each declared column type is read as.
pub fn arrow_type(ty: ColumnType) -> DataType {
    match ty {
        ColumnType::Integer => DataType::Int64,
        ColumnType::Double => DataType::Float64,
        ColumnType::Varchar => DataType::Utf8,
        ColumnType::Boolean => DataType::Boolean,
        ColumnType::Date => DataType::Date32,
        ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
    }
}

#[async_trait]
impl TableProvider for CsvTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // The projection goes into the CSV decoder: columns the query does not read
        // are split past, not decoded.
        let projection = projection.cloned().unwrap_or_else(|| (0..self.schema.fields().len()).collect());
        let projected = Arc::new(self.schema.project(&projection)?);
        let statistics = self.size.statistics(&projected, self.schema.fields().len());
        let partition = CsvPartition {
            table: self.table.clone(),
            path: self.path.clone(),
            file_schema: self.schema.clone(),
            projected: projected.clone(),
            projection,
            batch_size: self.batch_size,
            bytes_read: self.bytes_read.clone(),
        };
        let exec = StreamingTableExec::try_new(projected, vec![Arc::new(partition)], None, [], false, limit)?;
        Ok(Arc::new(ScanExec::new("CsvScanExec", self.table.clone(), Arc::new(exec), statistics)))
    }
}

/// What the planner is told about a file's size, from its length and the first
/// records: enough for a join to build its hash table on the smaller side.
#[derive(Debug, Clone, Copy)]
struct FileSize {
    bytes: u64,
    /// Average record length in the sample at the start of the file.
    record_bytes: f64,
}

impl FileSize {
    /// Bytes sampled at the start of the file for the average record length.
    const SAMPLE_BYTES: usize = 64 * 1024;

    fn measure(path: &std::path::Path) -> std::io::Result<FileSize> {
        let mut file = File::open(path)?;
        let bytes = file.metadata()?.len();
        let mut sample = Vec::with_capacity(Self::SAMPLE_BYTES);
        file.by_ref().take(Self::SAMPLE_BYTES as u64).read_to_end(&mut sample)?;
        let lines = sample.iter().filter(|&&b| b == b'\n').count().max(1);
        Ok(FileSize { bytes, record_bytes: sample.len().max(1) as f64 / lines as f64 })
    }

    /// Inexact rows and the projected columns' share of the bytes.
    fn statistics(&self, projected: &SchemaRef, file_columns: usize) -> Statistics {
        let mut statistics = Statistics::new_unknown(projected);
        statistics.num_rows = Precision::Inexact((self.bytes as f64 / self.record_bytes) as usize);
        let share = projected.fields().len().max(1) as f64 / file_columns.max(1) as f64;
        statistics.total_byte_size = Precision::Inexact((self.bytes as f64 * share) as usize);
        statistics
    }
}

/// One pass over one CSV file, as a stream of batches.
#[derive(Debug)]
struct CsvPartition {
    table: String,
    path: PathBuf,
    file_schema: SchemaRef,
    projected: SchemaRef,
    projection: Vec<usize>,
    batch_size: usize,
    bytes_read: BytesRead,
}

impl PartitionStream for CsvPartition {
    fn schema(&self) -> &SchemaRef {
        &self.projected
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let table = self.table.clone();
        let path = self.path.display().to_string();
        let file = self.path.clone();
        let bytes_read = self.bytes_read.clone();
        // Opened again if the decoder hands the file over to arrow-csv.
        let open = move || File::open(&file).map(|inner| CountingReader { inner, bytes_read: bytes_read.clone() });
        let options = csv_decoder::Options { batch_size: self.batch_size, ..csv_decoder::Options::default() };
        let reader = CsvReader::new(self.file_schema.clone(), self.projection.clone(), options, open)
            .map_err(|e| dataset_error(format!("table {table} ({path}): cannot open the file: {e}")));
        let batches: Box<dyn Iterator<Item = Result<_>> + Send> = match reader {
            Ok(reader) => Box::new(reader.map(move |batch| {
                batch.map_err(|e| dataset_error(format!("table {table} ({path}) does not parse as its schema: {e}")))
            })),
            Err(e) => Box::new(std::iter::once(Err(e))),
        };
        Box::pin(RecordBatchStreamAdapter::new(self.projected.clone(), futures::stream::iter(batches)))
    }
}
