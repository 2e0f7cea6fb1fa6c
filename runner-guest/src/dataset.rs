//! The dataset as DataFusion sees it: one schema whose tables are the request's
//! files, CSV ([`crate::csv_table`]) or Parquet ([`crate::parquet_table`]) by their
//! extension, each read as a stream of Arrow batches.
//!
//! `object_store`'s local file system is not compiled for wasm32, so DataFusion's own
//! file sources cannot read the preopened `/data`: the tables here read with `std::fs`,
//! batch by batch, so that memory stays flat however large the file is. Each scan
//! tells the planner its file's size ([`ScanExec`]), so joins build on the smaller side.
//!
//! Tables are opened lazily, when the planner first asks for them: a query that reads
//! one table of five pays for one header read and one schema inference.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::common::stats::Statistics;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::statistics::StatisticsArgs;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use protocol::TableFile;

use crate::csv_table::CsvTable;
use crate::parquet_table::ParquetTable;

/// Bytes read from dataset files by all scans of one run.
#[derive(Debug, Clone, Default)]
pub struct BytesRead(Arc<AtomicU64>);

impl BytesRead {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
}

/// A reader that counts what it reads into a run's [`BytesRead`].
pub struct CountingReader<R> {
    pub inner: R,
    pub bytes_read: BytesRead,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes_read.add(n as u64);
        Ok(n)
    }
}

/// A dataset file that cannot be opened or parsed. The guest reports these as
/// `DATASET_ERROR`, apart from errors in the SQL.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DatasetError(pub String);

pub fn dataset_error(message: String) -> DataFusionError {
    DataFusionError::External(Box::new(DatasetError(message)))
}

/// Whether `path` names a Parquet file (by its extension, in any case).
pub fn is_parquet(path: &str) -> bool {
    protocol::is_parquet_path(path)
}

/// The dataset: a DataFusion schema of CSV and Parquet tables.
#[derive(Debug)]
pub struct DatasetSchema {
    files: Vec<TableFile>,
    batch_size: usize,
    bytes_read: BytesRead,
    opened: Mutex<HashMap<String, Arc<dyn TableProvider>>>,
}

impl DatasetSchema {
    /// Checks the request's files: every path under `data_root` (`/data` in the
    /// sandbox), table names unique.
    pub fn new(files: &[TableFile], data_root: &str, batch_size: usize, bytes_read: BytesRead) -> Result<Self, String> {
        let mut seen = HashSet::new();
        for file in files {
            if file.table.is_empty() {
                return Err(format!("file {:?} has an empty table name", file.path));
            }
            let root = data_root.trim_end_matches('/');
            let under_root = file.path.strip_prefix(root).is_some_and(|rest| rest.starts_with('/'));
            if !under_root || file.path.split('/').any(|part| part == "..") {
                return Err(format!("file path {:?} is not under {data_root}", file.path));
            }
            if !seen.insert(file.table.to_ascii_lowercase()) {
                return Err(format!("table {:?} is listed twice", file.table));
            }
        }
        Ok(DatasetSchema { files: files.to_vec(), batch_size, bytes_read, opened: Mutex::new(HashMap::new()) })
    }

    fn find(&self, name: &str) -> Option<&TableFile> {
        self.files
            .iter()
            .find(|f| f.table == name)
            .or_else(|| self.files.iter().find(|f| f.table.eq_ignore_ascii_case(name)))
    }
}

#[async_trait]
impl SchemaProvider for DatasetSchema {
    fn table_names(&self) -> Vec<String> {
        self.files.iter().map(|f| f.table.clone()).collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let Some(file) = self.find(name) else {
            return Ok(None);
        };
        let key = file.table.to_ascii_lowercase();
        if let Some(table) = self.opened.lock().expect("table cache lock").get(&key) {
            return Ok(Some(table.clone()));
        }
        let table: Arc<dyn TableProvider> = if is_parquet(&file.path) {
            Arc::new(ParquetTable::open(file, self.batch_size, self.bytes_read.clone())?)
        } else {
            Arc::new(CsvTable::open(file, self.batch_size, self.bytes_read.clone())?)
        };
        self.opened.lock().expect("table cache lock").insert(key, table.clone());
        Ok(Some(table))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.find(name).is_some()
    }
}

/// The scan of one file: a [`StreamingTableExec`] that also tells the planner the
/// file's size (DataFusion's own streaming source reports nothing, so a join would
/// build its hash table on whichever side the query names first).
///
/// [`StreamingTableExec`]: datafusion::physical_plan::streaming::StreamingTableExec
#[derive(Debug)]
pub struct ScanExec {
    /// `CsvScanExec` or `ParquetScanExec`, as EXPLAIN shows it.
    name: &'static str,
    table: String,
    inner: Arc<dyn ExecutionPlan>,
    statistics: Arc<Statistics>,
}

impl ScanExec {
    pub fn new(name: &'static str, table: String, inner: Arc<dyn ExecutionPlan>, statistics: Statistics) -> ScanExec {
        ScanExec { name, table, inner, statistics: Arc::new(statistics) }
    }
}

impl DisplayAs for ScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "{}: table={}, rows~{}, bytes~{}",
            self.name, self.table, self.statistics.num_rows, self.statistics.total_byte_size
        )
    }
}

impl ExecutionPlan for ScanExec {
    fn name(&self) -> &str {
        self.name
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.inner.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal("a file scan has no children to replace".to_string()))
        }
    }

    fn execute(&self, partition: usize, ctx: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        self.inner.execute(partition, ctx)
    }

    fn statistics_from_inputs(&self, _inputs: &[Arc<Statistics>], args: &StatisticsArgs) -> Result<Arc<Statistics>> {
        match args.partition() {
            None | Some(0) => Ok(self.statistics.clone()),
            Some(partition) => {
                Err(DataFusionError::Internal(format!("a file scan has one partition, not partition {partition}")))
            }
        }
    }
}
