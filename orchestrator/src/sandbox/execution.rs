//! What a sandbox reports about one run, whichever provider ran it.

use protocol::RunResult;

/// What a provider reports about one run.
#[derive(Debug, Clone)]
pub struct Execution {
    pub result: RunResult,
    /// The Kubernetes Job that ran it, if any.
    pub job_name: Option<String>,
}
