//! The runner host: runs the csv-analyst guest (DataFusion compiled to
//! `wasm32-wasip1`) inside a wasmtime sandbox.
//!
//! - [`sandbox`]: the engine, its limits and [`Sandbox::run`], which turns any guest
//!   behaviour into a [`protocol::RunResult`].
//! - [`module`]: where the guest comes from (embedded, a file, a precompiled
//!   artifact) and the compilation cache that keeps Cranelift to once per build.
//! - [`mount`]: which folder the guest sees at `/data`.
//! - [`output`]: the capped pipes that hold the guest's stdout and stderr.
//! - [`scratch`]: the read-write directory a run may spill to, and the host's count
//!   of what the guest writes there.
//!
//! The orchestrator embeds this library for its local provider; the `runner-host`
//! binary wraps it for people (`run`), for Kubernetes Jobs (`exec`) and for
//! container images (`precompile`).

pub mod module;
pub mod mount;
pub mod output;
pub mod sandbox;
pub mod scratch;

use std::path::Path;

use protocol::registry::Dataset;
use protocol::{ErrorType, RunRequest, RunResult};

pub use module::{LoadedFrom, ModuleError, ModuleSource};
pub use sandbox::{Profiler, Sandbox, SandboxOptions};

/// A request for `sql` over `dataset`, with default limits and the paths the
/// runner image uses (`/data/<path in the registry>`).
pub fn request_for(dataset: &Dataset, sql: &str) -> RunRequest {
    RunRequest::new(dataset.id.clone(), mount::table_files(dataset), sql)
}

impl Sandbox {
    /// Runs a request whose paths are `/data/...` relative to `root`, mounting only
    /// the dataset's own folder (see [`mount::narrow`]), reached from `root` without
    /// symbolic links (see [`mount::verify_mount`]), holding the files its
    /// `expected_version` names, if it names one (see [`mount::check_version`]).
    pub fn run_mounted(&self, root: &Path, request: RunRequest) -> RunResult {
        if let Err(e) = mount::check_version(root, &request) {
            return RunResult::failure(ErrorType::DatasetError, e.to_string());
        }
        let mount = match mount::narrow(root, request) {
            Ok(mount) => mount,
            Err(message) => return RunResult::failure(ErrorType::InvalidRequest, message),
        };
        match mount::verify_mount(root, mount) {
            Ok(verified) => self.run(&verified.request, &verified.host_dir),
            Err(e) => RunResult::failure(ErrorType::DatasetError, e.to_string()),
        }
    }
}
