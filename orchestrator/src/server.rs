//! Start-up and shut-down: open the store, load the catalogue, start the sandbox
//! provider, serve until SIGTERM or Ctrl-C, and let in-flight runs finish.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use runner_host::{ModuleSource, SandboxOptions, module};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, Semaphore};

use crate::app::{self, AppState, SharedState};
use crate::catalog::Catalog;
use crate::config::{Config, ProviderKind};
use crate::metrics::Metrics;
use crate::sandbox::{Provider, k8s::K8sProvider, local::LocalProvider};
use crate::store::Store;

/// Builds the service's state. Must run inside a tokio runtime (the local provider
/// starts loading its module in the background).
pub async fn build_state(config: Config) -> anyhow::Result<SharedState> {
    config.validate().map_err(anyhow::Error::msg).context("invalid configuration")?;
    let catalog = Arc::new(
        Catalog::load(&config.datasets_dir)
            .with_context(|| format!("cannot load the datasets of DATASETS_DIR={}", config.datasets_dir.display()))?,
    );
    let hashing = catalog.clone();
    tokio::task::spawn_blocking(move || hashing.compute_missing_hashes());

    let (store, interrupted) = Store::open(&config.run_store_path)?;
    if interrupted > 0 {
        tracing::warn!(runs = interrupted, "marked runs left unfinished by the previous process as interrupted");
    }
    let provider = match config.sandbox_provider {
        ProviderKind::Local => {
            let options = SandboxOptions {
                module: ModuleSource::from_option(config.runner_module.clone()),
                cache_dir: config.runner_cache_dir.clone().or_else(module::default_cache_dir),
            };
            Provider::Local(LocalProvider::start(options, config.datasets_dir.clone()))
        }
        ProviderKind::K8s => Provider::K8s(Box::new(K8sProvider::connect(&config).await?)),
    };
    let slots = Arc::new(Semaphore::new(config.concurrency()));
    Ok(Arc::new(AppState {
        config,
        catalog,
        store,
        provider,
        slots,
        metrics: Metrics::default(),
        schemas: Mutex::new(HashMap::new()),
    }))
}

/// Serves on `listener` until `shutdown` completes, then waits for in-flight
/// requests (and so in-flight runs) to finish.
pub async fn serve(
    state: SharedState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let address = listener.local_addr()?;
    tracing::info!(%address, provider = state.provider.kind().as_str(), datasets = ?state.catalog.ids(), "serving");
    axum::serve(listener, app::router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .context("the HTTP server failed")?;
    tracing::info!("stopped");
    Ok(())
}

/// The `serve` command: bind LISTEN_ADDR and serve until a signal.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.listen_addr)
        .await
        .with_context(|| format!("cannot listen on LISTEN_ADDR={}", config.listen_addr))?;
    let state = build_state(config).await?;
    serve(state, listener, shutdown_signal()).await
}

/// SIGTERM (Kubernetes) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight runs");
}
