//! The local provider: the wasm guest runs in this process, through the
//! runner-host library, on tokio's blocking pool.
//!
//! The module loads once, in the background: from a precompiled artifact or the
//! compilation cache in milliseconds, or — on the first start after a build —
//! through a Cranelift compile that takes minutes. `/readyz` says which.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use protocol::{ErrorType, RunRequest, RunResult};
use runner_host::{Sandbox, SandboxOptions};
use tokio::sync::OwnedSemaphorePermit;

use crate::datasets::DataRoot;

/// Extra time past a run's own deadline before the provider stops waiting for it.
/// The sandbox ends runs by their deadline plus its own grace for host calls
/// (`runner_host::sandbox::limits::HOST_CALL_GRACE`); this is a guard against a bug
/// in that guarantee. A run given up on frees its slot and is counted as stuck.
const WATCHDOG_GRACE: Duration = Duration::from_secs(5);

enum State {
    Loading { since: Instant },
    Ready(Arc<Sandbox>),
    Failed(String),
}

pub struct LocalProvider {
    datasets_dir: PathBuf,
    uploads_dir: PathBuf,
    state: Arc<RwLock<State>>,
    /// Runs this provider's watchdog gave up on whose task has not ended yet.
    abandoned: Arc<AtomicUsize>,
}

impl LocalProvider {
    /// Starts loading the module in the background and returns at once.
    pub fn start(options: SandboxOptions, datasets_dir: PathBuf, uploads_dir: PathBuf) -> LocalProvider {
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
        LocalProvider { datasets_dir, uploads_dir, state, abandoned: Arc::default() }
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
        // How, not where: host paths stay in the logs.
        self.sandbox()
            .map(|s| format!("module loaded ({}, {} ms)", s.loaded_from().summary(), s.load_time().as_millis()))
    }

    /// How long the module took to load, once it has.
    pub fn load_time(&self) -> Option<Duration> {
        match &*self.state.read().unwrap_or_else(|p| p.into_inner()) {
            State::Ready(sandbox) => Some(sandbox.load_time()),
            State::Loading { .. } | State::Failed(_) => None,
        }
    }

    /// Runs stopped past their deadline whose threads have not ended: blocked in a
    /// host call (a FIFO in a dataset folder, a hung file system). They no longer
    /// hold a run slot, but each holds its guest's memory; `/readyz` should say so.
    pub fn stuck_runs(&self) -> usize {
        let in_sandbox = match &*self.state.read().unwrap_or_else(|p| p.into_inner()) {
            State::Ready(sandbox) => sandbox.stuck_runs(),
            State::Loading { .. } | State::Failed(_) => 0,
        };
        in_sandbox + self.abandoned.load(Ordering::SeqCst)
    }

    pub async fn run(&self, request: RunRequest, root: DataRoot, permit: OwnedSemaphorePermit) -> RunResult {
        let sandbox = match self.sandbox() {
            Ok(sandbox) => sandbox,
            Err(message) => return RunResult::failure(ErrorType::SandboxError, message),
        };
        let watchdog = Duration::from_millis(request.timeout_ms) + WATCHDOG_GRACE;
        let root = match root {
            DataRoot::Curated => self.datasets_dir.clone(),
            DataRoot::Uploads => self.uploads_dir.clone(),
        };
        // The slot is freed by whichever comes first: the end of the run, or the
        // watchdog giving up on it. The task holds it even if this future is dropped
        // (a client that hangs up).
        let slot = Arc::new(Mutex::new(Some(permit)));
        let (task_slot, abandoned) = (slot.clone(), self.abandoned.clone());
        let mut task = tokio::task::spawn_blocking(move || {
            let result = sandbox.run_mounted(&root, request);
            let mut slot = task_slot.lock().unwrap_or_else(|p| p.into_inner());
            if slot.take().is_none() {
                // The watchdog gave up on this run and freed its slot already.
                abandoned.fetch_sub(1, Ordering::SeqCst);
            }
            result
        });
        match tokio::time::timeout(watchdog, &mut task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join_error)) => {
                slot.lock().unwrap_or_else(|p| p.into_inner()).take();
                RunResult::failure(ErrorType::Internal, format!("the sandbox task failed: {join_error}"))
            }
            Err(_) => {
                let gave_up = {
                    let mut held = slot.lock().unwrap_or_else(|p| p.into_inner());
                    let gave_up = held.take().is_some();
                    if gave_up {
                        self.abandoned.fetch_add(1, Ordering::SeqCst);
                    }
                    gave_up
                };
                if gave_up {
                    tracing::error!(
                        grace_ms = WATCHDOG_GRACE.as_millis() as u64,
                        "a sandbox run did not stop after its deadline; its slot is freed and the run counted as stuck"
                    );
                    return RunResult::failure(
                        ErrorType::Timeout,
                        format!("the sandbox did not stop within {} ms of its deadline", WATCHDOG_GRACE.as_millis()),
                    );
                }
                // The run ended just as the watchdog fired.
                task.await.unwrap_or_else(|join_error| {
                    RunResult::failure(ErrorType::Internal, format!("the sandbox task failed: {join_error}"))
                })
            }
        }
    }
}
