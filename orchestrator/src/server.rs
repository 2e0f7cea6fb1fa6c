//! The composition root: open the store, load the catalogue, start the sandbox
//! provider, build the services and the state from them; then serve until SIGTERM
//! or Ctrl-C, and let in-flight runs finish.
//!
//! The only module that knows every layer: it builds each service from the narrow
//! pieces it needs. Nothing imports it but the binary.
//!
//! May use: every module (it is the top of the house).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use runner_host::{ModuleSource, Profiler, SandboxOptions, module};
use tokio::net::{TcpListener, TcpStream};

use crate::api::{self, ClientAddr, ConnectionScope};
use crate::auth::Auth;
use crate::chat::Chat;
use crate::config::{Config, ProviderKind};
use crate::connections::{Admitted, ConnectionBudget};
use crate::datasets::Catalog;
use crate::llm::LlmClient;
use crate::metrics::{Metrics, RefusalLabels};
use crate::runs::{RunSettings, Runs};
use crate::sandbox::{Provider, k8s::K8sProvider, local::LocalProvider};
use crate::state::AppState;
use crate::store::{PostgresStore, SqliteStore, Store};
use crate::uploads::{UploadSettings, Uploads};

/// How often the run store is pruned and measured.
const STORE_MAINTENANCE_EVERY: Duration = Duration::from_secs(60);

/// Builds the service's state. Must run inside a tokio runtime (the local provider
/// starts loading its module in the background; the store is pruned in the background).
pub async fn build_state(config: Config) -> anyhow::Result<AppState> {
    config.validate().map_err(anyhow::Error::msg).context("invalid configuration")?;
    // Checked whatever SANDBOX_PROVIDER says: `render-job` uses them too.
    crate::sandbox::k8s::validate(&config.k8s).map_err(anyhow::Error::msg).context("invalid configuration")?;
    let catalog = Arc::new(
        Catalog::load(&config.datasets_dir)
            .with_context(|| format!("cannot load the datasets of DATASETS_DIR={}", config.datasets_dir.display()))?,
    );
    // Links out of the datasets folder, FIFOs, missing files: said at start-up; runs
    // over such a dataset fail with DATASET_ERROR (the same check runs at every mount).
    for dataset in catalog.datasets() {
        if let Err(e) = runner_host::mount::check_dataset(catalog.dir(), &dataset) {
            tracing::warn!(dataset = %dataset.id, error = %e, "this dataset cannot be served");
        }
    }

    let llm = LlmClient::from_config(&config.llm).map_err(anyhow::Error::msg).context("invalid LLM settings")?;
    let store = open_store(&config).await?;
    let provider = match config.sandbox_provider {
        ProviderKind::Local => {
            let options = SandboxOptions {
                module: ModuleSource::from_option(config.runner_module.clone()),
                cache_dir: config.runner_cache_dir.clone().or_else(module::default_cache_dir),
                profiler: Profiler::None,
                spill_dir: config.spill_dir(),
            };
            Provider::Local(LocalProvider::start(options, config.datasets_dir.clone(), config.uploads_dir()))
        }
        ProviderKind::K8s => Provider::K8s(Box::new(K8sProvider::connect(&config).await?)),
    };
    let hashing = catalog.clone();
    if provider.checks_versions() {
        // Runners check their files against these before every run: hashed before
        // the first run is accepted.
        tokio::task::spawn_blocking(move || hashing.compute_hashes(true)).await.context("cannot hash the datasets")?;
    } else {
        tokio::task::spawn_blocking(move || hashing.compute_hashes(false));
    }
    let metrics = Arc::new(Metrics::default());
    provider.use_metrics(&metrics);
    let runs = Runs::new(RunSettings::from_config(&config), catalog, store.clone(), Arc::new(provider), metrics);
    let dataset_ids = runs.catalog().ids();
    let auth = Auth::new(&config.auth, store.clone(), dataset_ids)
        .map_err(anyhow::Error::msg)
        .context("invalid auth settings")?;
    auth.start();
    let uploads = Uploads::open(UploadSettings::from_config(&config), runs.clone())
        .await
        .map_err(anyhow::Error::msg)
        .context("cannot open the uploads")?;
    let chat = Chat::new(runs.clone(), store, llm, config.llm.clone(), config.chat.clone());
    let state = AppState::new(config, runs, chat, auth, uploads);
    tokio::spawn(maintain_store(state.clone()));
    if let Some(lease) = state.runs().store().lease() {
        tokio::spawn(maintain_leases(state.clone(), lease));
    }
    if state.runs().store().shared() {
        tokio::spawn(sync_uploads(state.clone()));
    }
    tokio::spawn(record_module_load(state.clone()));
    Ok(state)
}

/// The store RUN_STORE_URL or RUN_STORE_URL_FILE names (PostgreSQL, shared by
/// replicas), else the SQLite file RUN_STORE_PATH, whose runs left `running` by a
/// previous process are marked interrupted.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(url) = config.store_url().map_err(anyhow::Error::msg).context("invalid configuration")? {
        let store = connect_postgres(config, &url).await?;
        tracing::info!(replica = store.replica(), "runs are kept in PostgreSQL, shared with other replicas");
        if config.run_lease() < 3 * store_call_bound() {
            tracing::warn!(
                lease_seconds = config.run_lease_seconds,
                "RUN_LEASE_SECONDS is shorter than three slow store calls: a slow database may get live runs \
                 recorded as REPLICA_LOST"
            );
        }
        return Ok(Arc::new(store));
    }
    let store_cap = (config.run_store_max_mb > 0).then(|| config.run_store_max_mb.saturating_mul(1024 * 1024));
    let (store, interrupted) = SqliteStore::open_capped(&config.run_store_path, store_cap)?;
    if interrupted > 0 {
        tracing::warn!(runs = interrupted, "marked runs left unfinished by the previous process as interrupted");
    }
    Ok(Arc::new(store))
}

/// The store, for a command run beside a service that may be using it
/// (`orchestrator tokens`): nothing is marked interrupted.
pub async fn open_store_beside(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(url) = config.store_url().map_err(anyhow::Error::msg).context("invalid configuration")? {
        return Ok(Arc::new(connect_postgres(config, &url).await?));
    }
    let store = SqliteStore::open_unmarked(&config.run_store_path)
        .with_context(|| format!("cannot open RUN_STORE_PATH={}", config.run_store_path.display()))?;
    Ok(Arc::new(store))
}

/// The PostgreSQL store at `url`, as this process's replica.
async fn connect_postgres(config: &Config, url: &str) -> anyhow::Result<PostgresStore> {
    PostgresStore::connect(url, config.run_store_ca_file.as_deref(), replica_name(), config.run_lease())
        .await
        .context("cannot open the PostgreSQL store (RUN_STORE_URL)")
}

/// The longest one store call may take (a connection, then its statements).
fn store_call_bound() -> Duration {
    crate::store::postgres::CALL_TIMEOUT * 2
}

/// This process's name in the runs it executes: the host's (a pod's) and a random
/// suffix, so a restarted pod is another replica.
fn replica_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "orchestrator".into());
    format!("{host}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// A shared store's leases: renews this replica's every third of RUN_LEASE_SECONDS
/// and ends the runs of replicas that stopped renewing theirs (REPLICA_LOST).
async fn maintain_leases(state: AppState, lease: Duration) {
    let mut tick = tokio::time::interval(lease / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match state.runs().store().maintain().await {
            Ok(0) => {}
            Ok(lost) => tracing::warn!(runs = lost, "runs of a replica that stopped were recorded as REPLICA_LOST"),
            Err(e) => tracing::warn!(error = %e, "cannot renew the runs' leases"),
        }
    }
}

/// How often a replica on a shared store lists what other replicas uploaded or
/// deleted.
const UPLOADS_SYNC_EVERY: Duration = Duration::from_secs(3);

async fn sync_uploads(state: AppState) {
    let mut tick = tokio::time::interval(UPLOADS_SYNC_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = state.uploads().sync().await {
            tracing::debug!(error = %e, "cannot list the uploads' records");
        }
    }
}

/// Publishes the module's load time once it has loaded (local provider).
async fn record_module_load(state: AppState) {
    if state.provider().kind() != ProviderKind::Local {
        return;
    }
    loop {
        if let Some(took) = state.provider().module_load_time() {
            state.metrics().module_load.set(took.as_secs_f64());
            return;
        }
        if matches!(state.provider().readiness().await, Err(ref reason) if reason.contains("failed")) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Retention: keeps the newest RUN_RETENTION_MAX runs and none older than
/// RUN_RETENTION_DAYS, and publishes the store's size. Runs until the process ends.
async fn maintain_store(state: AppState) {
    let mut tick = tokio::time::interval(STORE_MAINTENANCE_EVERY);
    loop {
        tick.tick().await;
        let config = state.config();
        let before = (config.run_retention_days > 0).then(|| {
            let age = Duration::from_secs(config.run_retention_days.saturating_mul(86_400));
            let cutoff = std::time::SystemTime::now().checked_sub(age).unwrap_or(std::time::UNIX_EPOCH);
            humantime::format_rfc3339_millis(cutoff).to_string()
        });
        match state.runs().store().prune(config.run_retention_max, before).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "pruned old runs"),
            Err(e) => tracing::warn!(error = %e, "cannot prune old runs"),
        }
        if let Ok((runs, bytes)) = state.runs().store().size().await {
            state.metrics().store_runs.set(runs as i64);
            state.metrics().store_bytes.set(bytes as i64);
        }
    }
}

/// Connections of the probe listener (PROBE_LISTEN_ADDR) at once: kubelets and
/// metrics scrapers, a handful each.
const PROBE_MAX_CONNECTIONS: usize = 64;
/// The header timeout of probe-only connections (the probe listener's and the
/// probe reserve's), when HTTP_HEADER_TIMEOUT_SECONDS is longer: a probe sends its
/// request at once.
const PROBE_HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// Refused connections are logged at most this often (a wave would flood the log).
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Serves on `listener` until `shutdown` completes, then lets in-flight requests
/// (and so in-flight runs and chat turns) finish for up to SHUTDOWN_GRACE_SECONDS;
/// runs still going then are recorded `interrupted`. No probe listener: see
/// [`serve_with_probes`].
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_with_probes(state, listener, None, shutdown).await
}

/// [`serve`], and with `probe_listener` (PROBE_LISTEN_ADDR) also serves the probe
/// routes (`/healthz`, `/readyz`, `/metrics`; other paths are 404) there.
///
/// Connections are served here rather than by `axum::serve` so that they are
/// bounded (`crate::connections`): on the main listener at most MAX_CONNECTIONS at
/// once, at most MAX_CONNECTIONS_PER_ADDRESS of them from one address (more are
/// closed at accept), and past MAX_CONNECTIONS a small reserve that serves the probe
/// routes only (one request a connection; anything else is 503 `CONNECTION_LIMIT`),
/// so the probes answer on the main listener too while a wave holds every
/// connection. The probe listener has its own budget (PROBE_MAX_CONNECTIONS), not
/// the main listener's. A client must send a request's headers within
/// HTTP_HEADER_TIMEOUT_SECONDS (also the limit on an idle keep-alive connection;
/// at most PROBE_HEADER_TIMEOUT on probe-only connections).
pub async fn serve_with_probes(
    state: AppState,
    listener: TcpListener,
    probe_listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let address = listener.local_addr()?;
    let probe_address = probe_listener.as_ref().map(TcpListener::local_addr).transpose()?;
    tracing::info!(
        %address,
        probe_address = %probe_address.map_or_else(|| "none".to_string(), |a| a.to_string()),
        provider = state.provider().kind().as_str(),
        datasets = ?state.catalog().ids(),
        store = %state.runs().store().location(),
        "serving"
    );
    let router = api::router(state.clone());
    let config = state.config();
    let budget = ConnectionBudget::main(config.max_connections, config.max_connections_per_address);
    let probe_budget = ConnectionBudget::new(PROBE_MAX_CONNECTIONS, 0, 0, 0);
    let header_timeout = Duration::from_secs_f64(config.http_header_timeout_seconds);
    let probe_header_timeout = header_timeout.min(PROBE_HEADER_TIMEOUT);
    let mut refusals = RefusalLog::default();
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (accepted, on_probe_listener) = tokio::select! {
            accepted = listener.accept() => (accepted, false),
            accepted = accept_if_any(probe_listener.as_ref()) => (accepted, true),
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, or a connection reset before accept:
                // pause briefly rather than spin.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let admitted = if on_probe_listener {
            match probe_budget.admit(peer.ip()) {
                Ok(Admitted::Full(guard) | Admitted::ProbesOnly(guard)) => Ok((guard, ConnectionScope::ProbeListener)),
                Err(_) => Err("probe_limit"),
            }
        } else {
            match budget.admit(peer.ip()) {
                Ok(Admitted::Full(guard)) => Ok((guard, ConnectionScope::All)),
                Ok(Admitted::ProbesOnly(guard)) => Ok((guard, ConnectionScope::ProbeReserve)),
                Err(refusal) => Err(refusal.as_str()),
            }
        };
        let (guard, scope) = match admitted {
            Ok(admitted) => admitted,
            Err(reason) => {
                state.metrics().connections_refused.get_or_create(&RefusalLabels { reason }).inc();
                refusals.refused(reason, peer, config);
                drop(stream);
                continue;
            }
        };
        let service = TowerToHyperService::new(
            router.clone().layer(axum::Extension(ClientAddr(peer))).layer(axum::Extension(scope)),
        );
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(TokioTimer::new());
        if scope == ConnectionScope::All {
            builder.header_read_timeout(header_timeout).keep_alive(true);
        } else {
            // A probe-only connection: one request (the reserve's) or keep-alive
            // (the probe listener's), and a short wait for headers either way.
            builder.header_read_timeout(probe_header_timeout).keep_alive(scope == ConnectionScope::ProbeListener);
        }
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _guard = guard;
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    drop(probe_listener);
    tracing::info!("shutting down: finishing in-flight requests");
    let grace = Duration::from_secs(config.shutdown_grace_seconds);
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        let message = format!(
            "the orchestrator shut down and the run did not finish within SHUTDOWN_GRACE_SECONDS={}",
            grace.as_secs()
        );
        match state.runs().store().interrupt_running(&message).await {
            Ok(n) => tracing::warn!(runs = n, "shutdown grace over: runs still in flight recorded as interrupted"),
            Err(e) => tracing::error!(error = %e, "cannot record the interrupted runs"),
        }
    }
    // A run's slot is released only once its sandbox has stopped (a k8s Job deleted):
    // give those deletions a last bounded wait before the process exits.
    if !state.runs().admission().drain(Duration::from_secs(10)).await {
        tracing::warn!("some sandboxes were still being cleaned up at exit");
    }
    tracing::info!("stopped");
    Ok(())
}

/// The next connection of `listener`; never, without one.
async fn accept_if_any(listener: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// Logs refused connections without flooding: the first one, then at most one line
/// every REFUSAL_LOG_EVERY with the count since (the metric counts each).
#[derive(Default)]
struct RefusalLog {
    last: Option<Instant>,
    since: u64,
}

impl RefusalLog {
    fn refused(&mut self, reason: &'static str, peer: SocketAddr, config: &Config) {
        self.since += 1;
        if self.last.is_some_and(|last| last.elapsed() < REFUSAL_LOG_EVERY) {
            return;
        }
        let limit = match reason {
            "address_limit" => format!("MAX_CONNECTIONS_PER_ADDRESS={}", config.max_connections_per_address),
            "connection_limit" => format!("MAX_CONNECTIONS={} and the probe reserve", config.max_connections),
            _ => format!("the probe listener's {PROBE_MAX_CONNECTIONS} connections"),
        };
        tracing::warn!(%peer, reason, refused = self.since, "connections refused at accept: {limit} reached");
        self.last = Some(Instant::now());
        self.since = 0;
    }
}

/// The `serve` command: bind LISTEN_ADDR (and PROBE_LISTEN_ADDR, when set) and
/// serve until a signal.
pub async fn run(config: Config) -> anyhow::Result<()> {
    config.validate().map_err(anyhow::Error::msg).context("invalid configuration")?;
    let listener = TcpListener::bind(config.listen_addr)
        .await
        .with_context(|| format!("cannot listen on LISTEN_ADDR={}", config.listen_addr))?;
    let probe_listener = match config.probe_listen_addr {
        Some(address) => Some(
            TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot listen on PROBE_LISTEN_ADDR={address}"))?,
        ),
        None => None,
    };
    let state = build_state(config).await?;
    serve_with_probes(state, listener, probe_listener, shutdown_signal()).await
}

/// The `mcp` command: the MCP server over stdin and stdout, with the service's
/// settings and store (logs on stderr).
pub async fn run_mcp_stdio(config: Config) -> anyhow::Result<()> {
    let state = build_state(config).await?;
    // A desktop client starts this process and calls at once: answer it only once
    // the sandbox can run (the first start after a build compiles it, for minutes).
    let mut last_said = Instant::now();
    loop {
        match state.provider().readiness().await {
            Ok(_) => break,
            Err(reason) if reason.contains("failed") => anyhow::bail!("the sandbox cannot start: {reason}"),
            Err(reason) => {
                if last_said.elapsed() >= Duration::from_secs(10) {
                    tracing::info!("waiting for the sandbox before serving MCP: {reason}");
                    last_said = Instant::now();
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    crate::mcp::serve_stdio(state.runs().clone(), state.chat().clone()).await
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
