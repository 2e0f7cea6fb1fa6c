//! Parquet tables: a file's own schema is the table's, and its row groups are read
//! with the `parquet` crate's Arrow reader, batch by batch, only the columns the
//! query names (the footer says where each column chunk is, so the others are never
//! read).
//!
//! DataFusion's own Parquet source needs an `object_store`, and `object_store`'s
//! local file system is not compiled for wasm32; the `parquet` crate's reader over a
//! `std::fs::File` needs `File::try_clone`, which WASI lacks. So the file is read
//! through [`FileChunks`], which opens the file afresh for each piece the reader asks
//! for. The codecs compiled in are snappy, gzip, LZ4 (raw and Hadoop's framing),
//! zstd and brotli; a file compressed otherwise fails with the codec named.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::stats::{Precision, Statistics};
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::errors::ParquetError;
use parquet::file::reader::{ChunkReader, Length};
use protocol::TableFile;

use crate::dataset::{BytesRead, CountingReader, ScanExec, dataset_error};

/// One Parquet file.
#[derive(Debug)]
pub struct ParquetTable {
    table: String,
    chunks: FileChunks,
    schema: SchemaRef,
    rows: usize,
    batch_size: usize,
}

impl ParquetTable {
    /// Reads the footer: the schema and the row count.
    pub fn open(file: &TableFile, batch_size: usize, bytes_read: BytesRead) -> Result<ParquetTable> {
        let context = |what: String| dataset_error(format!("table {} ({}): {what}", file.table, file.path));
        let path = PathBuf::from(&file.path);
        let len = std::fs::metadata(&path).map_err(|e| context(format!("cannot open the file: {e}")))?.len();
        let chunks = FileChunks { path, len, bytes_read };
        let builder = ParquetRecordBatchReaderBuilder::try_new(chunks.clone())
            .map_err(|e| context(format!("is not a readable Parquet file: {e}")))?;
        let rows = usize::try_from(builder.metadata().file_metadata().num_rows().max(0)).unwrap_or(usize::MAX);
        // The file's key-value metadata (pandas' and arrow's) is not the table's.
        let schema = Arc::new(Schema::new(builder.schema().fields().clone()));
        Ok(ParquetTable { table: file.table.clone(), chunks, schema, rows, batch_size })
    }
}

#[async_trait]
impl TableProvider for ParquetTable {
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
        let projection = projection.cloned().unwrap_or_else(|| (0..self.schema.fields().len()).collect());
        let projected = Arc::new(self.schema.project(&projection)?);
        let mut statistics = Statistics::new_unknown(&projected);
        statistics.num_rows = Precision::Exact(self.rows);
        let share = projected.fields().len().max(1) as f64 / self.schema.fields().len().max(1) as f64;
        statistics.total_byte_size = Precision::Inexact((self.chunks.len as f64 * share) as usize);
        let partition = ParquetPartition {
            table: self.table.clone(),
            chunks: self.chunks.clone(),
            projected: projected.clone(),
            projection,
            batch_size: self.batch_size,
        };
        let exec = StreamingTableExec::try_new(projected, vec![Arc::new(partition)], None, [], false, limit)?;
        Ok(Arc::new(ScanExec::new("ParquetScanExec", self.table.clone(), Arc::new(exec), statistics)))
    }
}

/// One pass over one Parquet file, as a stream of batches.
#[derive(Debug)]
struct ParquetPartition {
    table: String,
    chunks: FileChunks,
    projected: SchemaRef,
    projection: Vec<usize>,
    batch_size: usize,
}

impl PartitionStream for ParquetPartition {
    fn schema(&self) -> &SchemaRef {
        &self.projected
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let context = {
            let (table, path) = (self.table.clone(), self.chunks.path.display().to_string());
            move |what: String| dataset_error(format!("table {table} ({path}): {what}"))
        };
        let projected = self.projected.clone();
        let reader = ParquetRecordBatchReaderBuilder::try_new(self.chunks.clone()).and_then(|builder| {
            let mask = ProjectionMask::roots(builder.parquet_schema(), self.projection.iter().copied());
            builder.with_projection(mask).with_batch_size(self.batch_size).build()
        });
        let batches: Box<dyn Iterator<Item = Result<RecordBatch>> + Send> = match reader {
            Ok(reader) => Box::new(reader.map(move |batch| {
                let batch = batch.map_err(|e| context(format!("cannot be read: {e}")))?;
                // The reader's batches carry the file's field metadata; the plan's
                // schema is the table's. A projection of no columns keeps its rows.
                let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
                RecordBatch::try_new_with_options(projected.clone(), batch.columns().to_vec(), &options)
                    .map_err(|e| context(format!("does not match its own schema: {e}")))
            })),
            Err(e) => Box::new(std::iter::once(Err(context(format!("cannot be read: {e}"))))),
        };
        Box::pin(RecordBatchStreamAdapter::new(self.projected.clone(), futures::stream::iter(batches)))
    }
}

/// The file as the Parquet reader asks for it: each piece is read by opening the
/// file again (WASI has no `File::try_clone`), so pieces can be read in any order.
#[derive(Debug, Clone)]
struct FileChunks {
    path: PathBuf,
    len: u64,
    bytes_read: BytesRead,
}

impl FileChunks {
    fn open_at(&self, start: u64) -> parquet::errors::Result<File> {
        let mut file = File::open(&self.path).map_err(|e| ParquetError::External(Box::new(e)))?;
        file.seek(SeekFrom::Start(start)).map_err(|e| ParquetError::External(Box::new(e)))?;
        Ok(file)
    }
}

impl Length for FileChunks {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for FileChunks {
    type T = CountingReader<std::io::Take<File>>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        let left = self.len.saturating_sub(start);
        Ok(CountingReader { inner: self.open_at(start)?.take(left), bytes_read: self.bytes_read.clone() })
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        // A footer may claim any range: nothing past the file's end is allocated.
        let end = start.checked_add(length as u64).filter(|&end| end <= self.len).ok_or_else(|| {
            ParquetError::EOF(format!("a range of {length} bytes at {start} is past the file's end ({})", self.len))
        })?;
        let mut buffer = vec![0u8; (end - start) as usize];
        let mut reader = self.get_read(start)?;
        reader.read_exact(&mut buffer).map_err(|e| ParquetError::External(Box::new(e)))?;
        Ok(Bytes::from(buffer))
    }
}
