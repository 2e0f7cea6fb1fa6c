//! The local provider: the wasm guest runs in this process, through the
//! runner-host library, on tokio's blocking pool.
//!
//! The module loads once, in the background: from a precompiled artifact or the
//! compilation cache in milliseconds, or — on the first start after a build —
//! through a Cranelift compile that takes minutes. `/readyz` says which.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use protocol::{ErrorType, RunRequest, RunResult};
use runner_host::{Sandbox, SandboxOptions};
use tokio::sync::OwnedSemaphorePermit;

/// Extra time past a run's own deadline before the provider stops waiting for it.
/// The wasm deadline ends runs; this is a guard against a bug in that guarantee.
const WATCHDOG_GRACE: Duration = Duration::from_secs(5);

enum State {
    Loading { since: Instant },
    Ready(Arc<Sandbox>),
    Failed(String),
}

pub struct LocalProvider {
    datasets_dir: PathBuf,
    state: Arc<RwLock<State>>,
}

impl LocalProvider {
    /// Starts loading the module in the background and returns at once.
    pub fn start(options: SandboxOptions, datasets_dir: PathBuf) -> LocalProvider {
        let state = Arc::new(RwLock::new(State::Loading { since: Instant::now() }));
        let loading = state.clone();
        tokio::task::spawn_blocking(move || {
            tracing::info!(module = %options.module, "loading the sandbox module");
            let loaded = match Sandbox::new(&options) {
                Ok(sandbox) => {
                    tracing::info!(
                        from = %sandbox.loaded_from(),
                        ms = sandbox.load_time().as_millis() as u64,
                        "sandbox ready"
                    );
                    State::Ready(Arc::new(sandbox))
                }
                Err(e) => {
                    tracing::error!(error = %e, "the sandbox module failed to load");
                    State::Failed(e.to_string())
                }
            };
            *loading.write().unwrap_or_else(|p| p.into_inner()) = loaded;
        });
        LocalProvider { datasets_dir, state }
    }

    fn sandbox(&self) -> Result<Arc<Sandbox>, String> {
        match &*self.state.read().unwrap_or_else(|p| p.into_inner()) {
            State::Ready(sandbox) => Ok(sandbox.clone()),
            State::Loading { since } => Err(format!(
                "the sandbox module is loading ({} s so far); the first start after a build compiles it, which takes minutes",
                since.elapsed().as_secs()
            )),
            State::Failed(message) => Err(format!("the sandbox module failed to load: {message}")),
        }
    }

    /// Ready when the module is loaded: a description of how, or why not.
    pub fn readiness(&self) -> Result<String, String> {
        self.sandbox().map(|s| format!("module loaded ({}, {} ms)", s.loaded_from(), s.load_time().as_millis()))
    }

    pub async fn run(&self, request: RunRequest, permit: OwnedSemaphorePermit) -> RunResult {
        let sandbox = match self.sandbox() {
            Ok(sandbox) => sandbox,
            Err(message) => return RunResult::failure(ErrorType::SandboxError, message),
        };
        let watchdog = Duration::from_millis(request.timeout_ms) + WATCHDOG_GRACE;
        let root = self.datasets_dir.clone();
        // The permit moves into the task: the slot stays taken for as long as the
        // guest runs, even if this future is dropped.
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            sandbox.run_mounted(&root, request)
        });
        match tokio::time::timeout(watchdog, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join_error)) => {
                RunResult::failure(ErrorType::Internal, format!("the sandbox task failed: {join_error}"))
            }
            Err(_) => RunResult::failure(
                ErrorType::Timeout,
                format!("the sandbox did not stop within {} ms of its deadline", WATCHDOG_GRACE.as_millis()),
            ),
        }
    }
}
