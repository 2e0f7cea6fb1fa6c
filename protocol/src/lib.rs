//! Wire types shared by every part of csv-analyst.
//!
//! The runner guest (DataFusion compiled to `wasm32-wasip1`) reads a [`RunRequest`]
//! as JSON on stdin and writes one [`RunResult`] as one JSON line on stdout. The
//! runner host, the `runner-host exec` container entry point and the orchestrator
//! speak the same two types, so a result looks the same whichever sandbox ran it.
//!
//! [`registry`] holds the format of `registry.json`, the catalogue of datasets.
//!
//! This crate depends only on serde and sha2: it builds for wasm32 and native alike.

pub mod registry;

mod request;
mod result;

pub use request::{
    ColumnDecl, ColumnType, ExpectedVersion, RequestKind, RunRequest, TableFile, defaults, describe_limits,
    is_parquet_path,
};
pub use result::{ErrorType, RunError, RunResult, RunStats, RunStatus};

/// The directory the dataset is mounted at inside the sandbox (and inside the
/// runner container image).
pub const DATA_MOUNT: &str = "/data";

/// The directory a run may spill to inside the sandbox: its own scratch directory,
/// read-write, preopened only when the request's `spill_limit_bytes` is above zero.
pub const SCRATCH_MOUNT: &str = "/scratch";

/// What each file created in the scratch directory counts against a run's
/// `spill_limit_bytes` beyond the bytes written to it (its inode and last block):
/// the guest and the host count alike.
pub const SCRATCH_FILE_BYTES: u64 = 4096;
