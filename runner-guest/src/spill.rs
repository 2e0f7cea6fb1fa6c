//! Spilling to the run's scratch directory: DataFusion's spill files, over `std::fs`.
//!
//! When a sort, an aggregate or a window does not fit in the memory pool, DataFusion
//! writes sorted runs to temporary files and merges them back. Its default files
//! read back through `tokio::fs`, which needs threads that `wasm32-wasip1` does not
//! have, so the guest gives its disk manager a [`TempFileFactory`] of its own:
//! [`ScratchFiles`], plain files under the scratch directory the host preopens for
//! this run alone ([`protocol::SCRATCH_MOUNT`]), written and read synchronously.
//!
//! The factory counts every byte written (and [`protocol::SCRATCH_FILE_BYTES`] per
//! file) against the request's `spill_limit_bytes`
//! and refuses the write that would pass it; the run then fails with `SPILL_LIMIT`
//! (see [`SpillBudget::exceeded`]). The count is of bytes written, not of bytes on
//! disk at one moment: the host counts the same way, and stops a guest that writes
//! past the cap whatever this code does. A file is removed when DataFusion drops
//! its last reference; the host removes the directory when the run ends.
//!
//! DataFusion's top-k (a sort with a `LIMIT`) keeps its k rows in memory and cannot
//! spill, and a large `OFFSET` makes k large: [`SortLargeFetches`] plans such a sort
//! as a full sort, which spills, under a limit.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SpillFile, SpillWriter, TempFileFactory};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::limit::GlobalLimitExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use futures::Stream;

/// Bytes read from a spill file at a time (a merge reads many files at once, each
/// holding one chunk outside the memory pool).
const READ_CHUNK: usize = 64 * 1024;

/// What a run may write to its scratch directory, and what it has written.
#[derive(Debug)]
pub struct SpillBudget {
    limit: u64,
    written: AtomicU64,
    exceeded: AtomicBool,
}

impl SpillBudget {
    pub fn new(limit: u64) -> Arc<SpillBudget> {
        Arc::new(SpillBudget { limit, written: AtomicU64::new(0), exceeded: AtomicBool::new(false) })
    }

    /// Bytes written to spill files so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Whether a write was refused because it would have passed the cap.
    pub fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::Relaxed)
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    fn charge(&self, bytes: u64) -> io::Result<()> {
        let written = self.written.load(Ordering::Relaxed);
        if written.saturating_add(bytes) > self.limit {
            self.exceeded.store(true, Ordering::Relaxed);
            return Err(io::Error::other(format!(
                "the query needs more than {} MiB of scratch disk to spill to",
                self.limit >> 20
            )));
        }
        self.written.store(written + bytes, Ordering::Relaxed);
        Ok(())
    }
}

/// Creates DataFusion's spill files under one directory, charged to one budget.
#[derive(Debug)]
pub struct ScratchFiles {
    dir: PathBuf,
    budget: Arc<SpillBudget>,
    next: AtomicU64,
}

impl ScratchFiles {
    pub fn new(dir: impl Into<PathBuf>, budget: Arc<SpillBudget>) -> ScratchFiles {
        ScratchFiles { dir: dir.into(), budget, next: AtomicU64::new(0) }
    }
}

impl TempFileFactory for ScratchFiles {
    fn create_temp_file(&self, description: &str) -> Result<Arc<dyn SpillFile>> {
        // Charged as the host charges it: a file costs a block before its bytes.
        self.budget.charge(protocol::SCRATCH_FILE_BYTES).map_err(DataFusionError::IoError)?;
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("spill-{n}.arrows"));
        File::create_new(&path).map_err(|e| {
            DataFusionError::Execution(format!(
                "cannot create a spill file for {description} in the scratch directory: {e}"
            ))
        })?;
        Ok(Arc::new(ScratchFile { path, size: Arc::default(), budget: self.budget.clone() }))
    }
}

/// One spill file; removed when DataFusion drops its last reference.
#[derive(Debug)]
struct ScratchFile {
    path: PathBuf,
    size: Arc<AtomicU64>,
    budget: Arc<SpillBudget>,
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        // Nothing to do when it fails: the host removes the whole directory at the end.
        let _ = std::fs::remove_file(&self.path);
    }
}

impl SpillFile for ScratchFile {
    fn path(&self) -> Option<&Path> {
        Some(&self.path)
    }

    fn size(&self) -> Option<u64> {
        Some(self.size.load(Ordering::Relaxed))
    }

    fn read_stream(&self) -> Result<Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>> {
        let file = File::open(&self.path).map_err(DataFusionError::IoError)?;
        // Synchronous reads: the guest has one thread, and a read of a local file
        // returns at once.
        let chunks = futures::stream::unfold(Some(file), |file| async move {
            let mut file = file?;
            let mut chunk = Vec::with_capacity(READ_CHUNK);
            match Read::take(&mut file, READ_CHUNK as u64).read_to_end(&mut chunk) {
                Ok(0) => None,
                Ok(_) => Some((Ok(Bytes::from(chunk)), Some(file))),
                Err(e) => Some((Err(DataFusionError::IoError(e)), None)),
            }
        });
        Ok(Box::pin(chunks))
    }

    fn open_writer(&self) -> Result<Box<dyn SpillWriter>> {
        let file = OpenOptions::new().append(true).open(&self.path).map_err(DataFusionError::IoError)?;
        Ok(Box::new(ScratchWriter { file, size: self.size.clone(), budget: self.budget.clone() }))
    }
}

struct ScratchWriter {
    file: File,
    size: Arc<AtomicU64>,
    budget: Arc<SpillBudget>,
}

impl Write for ScratchWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.budget.charge(buf.len() as u64)?;
        self.file.write_all(buf)?;
        self.size.fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl SpillWriter for ScratchWriter {
    fn finish(&mut self) -> Result<()> {
        self.file.flush().map_err(DataFusionError::IoError)
    }
}

/// Plans a sort that keeps more than `max_top_k` rows (`ORDER BY … LIMIT n OFFSET m`
/// with a large `n + m`) as a full sort, which spills, under a limit; a smaller one
/// stays a top-k, which is faster and needs little memory.
#[derive(Debug)]
pub struct SortLargeFetches {
    pub max_top_k: usize,
}

impl PhysicalOptimizerRule for SortLargeFetches {
    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, _config: &ConfigOptions) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(sort) = node.downcast_ref::<SortExec>() else { return Ok(Transformed::no(node)) };
            match sort.fetch() {
                Some(fetch) if fetch > self.max_top_k => {
                    let full = SortExec::new(sort.expr().clone(), Arc::clone(sort.input()))
                        .with_preserve_partitioning(sort.preserve_partitioning());
                    Ok(Transformed::yes(Arc::new(GlobalLimitExec::new(Arc::new(full), 0, Some(fetch)))))
                }
                _ => Ok(Transformed::no(node)),
            }
        })
        .data()
    }

    fn name(&self) -> &str {
        "sort_large_fetches"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
