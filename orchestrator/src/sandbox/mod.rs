//! Sandbox providers: where a run's guest executes.
//!
//! - [`local::LocalProvider`]: in this process (the default; no Docker, no cluster).
//! - [`k8s::K8sProvider`]: one Kubernetes Job per run, whose container runs
//!   `runner-host exec`, so the wasm sandbox sits inside the container's isolation.
//!
//! Both take the same [`protocol::RunRequest`] (paths under `/data`) and give back
//! the same [`protocol::RunResult`], in an [`Execution`].
//!
//! May use: `runner-host`, `protocol`, [`crate::config`] (the provider's own
//! settings), [`crate::metrics`], [`crate::error`], [`crate::datasets`]' [`DataRoot`]
//! (which folder a request's paths are under). Knows nothing of runs, the
//! store or HTTP: a run slot comes in as a semaphore permit, a result goes out.

pub mod execution;
pub mod k8s;
pub mod local;

use protocol::RunRequest;
use tokio::sync::OwnedSemaphorePermit;

pub use self::execution::Execution;
use crate::config::ProviderKind;
pub use crate::datasets::DataRoot;
use crate::metrics::Metrics;

pub enum Provider {
    Local(local::LocalProvider),
    K8s(Box<k8s::K8sProvider>),
}

impl Provider {
    pub fn kind(&self) -> ProviderKind {
        match self {
            Provider::Local(_) => ProviderKind::Local,
            Provider::K8s(_) => ProviderKind::K8s,
        }
    }

    /// Runs `request`, whose paths are under `/data` relative to `root`. `permit` is
    /// the run's concurrency slot; the provider holds it until the sandbox has really
    /// stopped.
    pub async fn run(
        &self,
        run_id: &str,
        request: RunRequest,
        root: DataRoot,
        permit: OwnedSemaphorePermit,
    ) -> Execution {
        match self {
            Provider::Local(local) => Execution { result: local.run(request, root, permit).await, job_name: None },
            Provider::K8s(k8s) => k8s.run(run_id, request, root, permit).await,
        }
    }

    /// Whether the runner checks a request's files against the dataset's version hash
    /// before it runs: runner Jobs do (their files come from their image or a volume);
    /// the local sandbox reads the files the service itself hashed.
    pub fn checks_versions(&self) -> bool {
        matches!(self, Provider::K8s(_))
    }

    /// Whether `request` can be sent to a runner at all (a runner Job's request
    /// travels in an environment variable, which Linux caps at 128 KiB).
    pub fn check_request(&self, request: &RunRequest) -> Result<(), String> {
        match self {
            Provider::Local(_) => Ok(()),
            Provider::K8s(_) => k8s::job::check_request_size(request),
        }
    }

    /// Whether uploaded datasets can be run here: the local sandbox reads
    /// UPLOADS_DIR; runner Jobs need K8S_UPLOADS_PVC, the same volume the service
    /// writes uploads to.
    pub fn uploads_supported(&self) -> Result<(), String> {
        match self {
            Provider::Local(_) => Ok(()),
            Provider::K8s(k8s) => k8s.uploads_supported(),
        }
    }

    /// Records the provider's own metrics in the service's registry (the k8s
    /// provider: Job create errors and pod start times; the local one has none).
    pub fn use_metrics(&self, metrics: &Metrics) {
        if let Provider::K8s(k8s) = self {
            k8s.use_metrics(k8s::K8sMetrics {
                job_create_errors: metrics.k8s_job_create_errors.clone(),
                pod_start: metrics.k8s_pod_start.clone(),
            });
        }
    }

    /// Whether runs can be accepted now: a description, or the reason not.
    pub async fn readiness(&self) -> Result<String, String> {
        match self {
            Provider::Local(local) => local.readiness(),
            Provider::K8s(k8s) => k8s.readiness().await,
        }
    }

    /// Runs past their deadline whose threads are still blocked (local provider).
    pub fn stuck_runs(&self) -> usize {
        match self {
            Provider::Local(local) => local.stuck_runs(),
            Provider::K8s(_) => 0,
        }
    }

    /// How long the sandbox module took to load (local provider, once loaded).
    pub fn module_load_time(&self) -> Option<std::time::Duration> {
        match self {
            Provider::Local(local) => local.load_time(),
            Provider::K8s(_) => None,
        }
    }

    /// A cheap check before accepting a run: is the sandbox able to start one?
    pub fn accepting(&self) -> Result<(), String> {
        match self {
            Provider::Local(local) => local.readiness().map(|_| ()),
            Provider::K8s(_) => Ok(()),
        }
    }
}
