//! Every setting of the orchestrator: each is a command-line flag and an
//! environment variable, with a default that works on a laptop. The names are the
//! contract the Helm chart and the runbook use; README.md lists them in one table.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, ValueEnum};

/// Which sandbox runs the queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProviderKind {
    /// In-process: the wasm guest runs on this machine through runner-host.
    Local,
    /// One Kubernetes Job per run, running `runner-host exec` in the runner image.
    K8s,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Local => "local",
            ProviderKind::K8s => "k8s",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address the HTTP service listens on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:8000", global = true)]
    pub listen_addr: SocketAddr,

    /// Folder holding registry.json and the CSV files.
    #[arg(long, env = "DATASETS_DIR", default_value = "datasets", global = true)]
    pub datasets_dir: PathBuf,

    /// Where queries run: `local` (in-process wasm sandbox) or `k8s` (a Job per run).
    #[arg(long, env = "SANDBOX_PROVIDER", value_enum, default_value_t = ProviderKind::Local, global = true)]
    pub sandbox_provider: ProviderKind,

    /// Wall-clock limit of a run.
    #[arg(long, env = "RUN_TIMEOUT_SECONDS", default_value_t = 10.0, global = true)]
    pub run_timeout_seconds: f64,

    /// Rows a run returns at most (more set `truncated`).
    #[arg(long, env = "MAX_ROWS", default_value_t = protocol::defaults::MAX_ROWS, global = true)]
    pub max_rows: u64,

    /// Serialized size of a run's rows at most (more set `truncated`).
    #[arg(long, env = "MAX_OUTPUT_BYTES", default_value_t = protocol::defaults::MAX_OUTPUT_BYTES, global = true)]
    pub max_output_bytes: u64,

    /// Memory a run's wasm guest may use, in MiB.
    #[arg(long, env = "RUN_MEMORY_LIMIT_MB", default_value_t = 256, global = true)]
    pub run_memory_limit_mb: u64,

    /// Scratch disk a run may spill to when a sort, an aggregate or a window does
    /// not fit in its memory, in MiB (0 turns spilling off). The service's disk use
    /// for spilling stays within the run slots times this.
    #[arg(long, env = "RUN_SPILL_MAX_MB", default_value_t = protocol::defaults::SPILL_LIMIT_BYTES >> 20, global = true)]
    pub run_spill_max_mb: u64,

    /// Where each run that spills gets its own scratch directory, removed when the
    /// run ends (those of a process that crashed are removed at start). Default: the
    /// system's temporary folder. Runner Jobs spill to an emptyDir of their own.
    #[arg(long, env = "RUN_SPILL_DIR", value_name = "DIR", global = true)]
    pub run_spill_dir: Option<PathBuf>,

    /// Runs executing at once; more wait up to QUEUE_TIMEOUT_MS, then get 503.
    /// Default: the number of CPUs.
    #[arg(long, env = "MAX_CONCURRENT_RUNS", global = true)]
    pub max_concurrent_runs: Option<usize>,

    /// How long a run waits for a free slot before the request gets 503.
    #[arg(long, env = "QUEUE_TIMEOUT_MS", default_value_t = 2_000, global = true)]
    pub queue_timeout_ms: u64,

    /// Where uploaded datasets are kept (a folder per dataset, beside temporary ones).
    /// Default: `uploads` beside RUN_STORE_PATH (.data/uploads).
    #[arg(long, env = "UPLOADS_DIR", global = true)]
    pub uploads_dir: Option<PathBuf>,

    /// Largest upload (the whole multipart request); 413 as soon as it is exceeded.
    #[arg(long, env = "UPLOAD_MAX_BYTES", default_value_t = 1 << 30, global = true)]
    pub upload_max_bytes: u64,

    /// Bytes of uploaded datasets one owner may keep; 413 QUOTA_EXCEEDED beyond.
    #[arg(long, env = "UPLOAD_QUOTA_BYTES", default_value_t = 5 << 30, global = true)]
    pub upload_quota_bytes: u64,

    /// Time limit of the sandbox run that reads and types an upload (1 to 3600); an
    /// upload also waits at most this long for a run slot.
    #[arg(long, env = "UPLOAD_TIMEOUT_SECONDS", default_value_t = 120.0, global = true)]
    pub upload_timeout_seconds: f64,

    /// The SQLite file holding run records. Default: .data/runs.sqlite.
    #[arg(long, env = "RUN_STORE_PATH", default_value = ".data/runs.sqlite", global = true)]
    pub run_store_path: PathBuf,

    /// A PostgreSQL URL (`postgres://user:password@host:5432/db?sslmode=require`):
    /// runs, threads, turns, tokens and uploads' records are kept there, shared by
    /// every replica, instead of in RUN_STORE_PATH.
    #[arg(long, env = "RUN_STORE_URL", hide_env_values = true, global = true)]
    pub run_store_url: Option<ApiKey>,

    /// A file holding RUN_STORE_URL (a mounted Secret); whitespace around it is
    /// ignored.
    #[arg(long, env = "RUN_STORE_URL_FILE", global = true)]
    pub run_store_url_file: Option<PathBuf>,

    /// With PostgreSQL: PEM certificates of the CA that signed the database's TLS
    /// certificate, trusted besides the bundled public roots (a private CA's).
    #[arg(long, env = "RUN_STORE_CA_FILE", global = true)]
    pub run_store_ca_file: Option<PathBuf>,

    /// With PostgreSQL: how long a run stays `running` after its replica stopped
    /// renewing it; then another replica records it failed with REPLICA_LOST (3 to
    /// 3600).
    #[arg(long, env = "RUN_LEASE_SECONDS", default_value_t = 30, global = true)]
    pub run_lease_seconds: u64,

    /// Largest request body accepted (413 beyond).
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 256 * 1024, global = true)]
    pub max_body_bytes: usize,

    /// Local provider: the guest module (.wasm, .wat or precompiled .cwasm). Default:
    /// the guest embedded in the binary.
    #[arg(long, env = "RUNNER_MODULE", global = true)]
    pub runner_module: Option<PathBuf>,

    /// Local provider: the compilation cache. Default: $XDG_CACHE_HOME/csv-analyst or
    /// ~/.cache/csv-analyst.
    #[arg(long, env = "RUNNER_CACHE_DIR", global = true)]
    pub runner_cache_dir: Option<PathBuf>,

    /// Log filter: error, warn, info, debug, trace, or a tracing directive. Default:
    /// RUST_LOG if set, else info.
    #[arg(long, env = "LOG_LEVEL", global = true)]
    pub log_level: Option<String>,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    /// Open connections at most; more are closed as they are accepted (but for a
    /// small reserve that serves only /healthz, /readyz and /metrics).
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 1024, global = true)]
    pub max_connections: usize,

    /// Open connections one client address may hold (an IPv6 address's /64 counts as
    /// one); more are closed as they are accepted. 0: no per-address cap. Behind a
    /// reverse proxy, an ingress controller or a load balancer that rewrites source
    /// addresses, every client shares the proxy's address: set 0 (the Helm chart
    /// does) or more than the proxy's connection pool, and limit clients at the proxy.
    #[arg(long, env = "MAX_CONNECTIONS_PER_ADDRESS", default_value_t = 32, global = true)]
    pub max_connections_per_address: usize,

    /// A second address serving only /healthz, /readyz and /metrics, with its own
    /// small connection budget (not MAX_CONNECTIONS nor the per-address cap), so
    /// probes answer however many clients hold the main listener. Unset: none.
    #[arg(long, env = "PROBE_LISTEN_ADDR", global = true)]
    pub probe_listen_addr: Option<SocketAddr>,

    /// Seconds a client has to send a request's headers (and that an idle
    /// keep-alive connection stays open).
    #[arg(long, env = "HTTP_HEADER_TIMEOUT_SECONDS", default_value_t = 10.0, global = true)]
    pub http_header_timeout_seconds: f64,

    /// Runs one client (its `x-client-id` header, else its address) may have
    /// waiting or running at once; more get 429. Default: three quarters of the
    /// run slots rounded up, but always at least 1 and, from two slots on, at most
    /// one fewer than the slots, so one client can never take them all. A value set
    /// here is taken as given.
    #[arg(long, env = "MAX_RUNS_PER_CLIENT", global = true)]
    pub max_runs_per_client: Option<usize>,

    /// Size the run store (the database and its write-ahead log) may grow to, in
    /// MiB; at it, the oldest records are pruned to make room (runs that did not
    /// succeed first, never one in progress). 0: no cap.
    #[arg(long, env = "RUN_STORE_MAX_MB", default_value_t = 900, global = true)]
    pub run_store_max_mb: u64,

    /// Runs the store keeps at most; older ones are pruned in the background.
    #[arg(long, env = "RUN_RETENTION_MAX", default_value_t = 100_000, global = true)]
    pub run_retention_max: u64,

    /// Days a run is kept (0: no age limit).
    #[arg(long, env = "RUN_RETENTION_DAYS", default_value_t = 30, global = true)]
    pub run_retention_days: u64,

    /// On SIGTERM, how long runs in flight may take to finish before they are
    /// recorded as interrupted.
    #[arg(long, env = "SHUTDOWN_GRACE_SECONDS", default_value_t = 20, global = true)]
    pub shutdown_grace_seconds: u64,

    #[command(flatten)]
    pub llm: LlmConfig,

    #[command(flatten)]
    pub chat: ChatConfig,

    #[command(flatten)]
    pub k8s: K8sConfig,

    #[command(flatten)]
    pub auth: AuthConfig,

    /// Browser origins allowed to call /mcp (comma-separated, e.g.
    /// `https://app.example.com`); a request with any other `Origin` is 403 (DNS
    /// rebinding). Loopback origins (http://localhost, 127.0.0.1, [::1], any port) are
    /// always allowed; requests without an `Origin` (non-browser clients) are too.
    #[arg(long, env = "MCP_ALLOWED_ORIGINS", value_delimiter = ',', global = true)]
    pub mcp_allowed_origins: Vec<String>,

    /// Single-user mode only (no auth configured): host names requests may be
    /// addressed to besides IP addresses, `localhost` and `*.localhost`
    /// (comma-separated; `*`: any). Any other `Host` is 403, so a web page that
    /// rebinds its own name to this machine's address cannot use the service.
    #[arg(long, env = "ALLOWED_HOSTS", value_delimiter = ',', global = true)]
    pub allowed_hosts: Vec<String>,
}

/// Whether a request's `Host` (a name, or an address, with or without a port) is one
/// a single-user service answers: an IP address, `localhost`, `*.localhost`, or one
/// of `allowed` (`*`: any).
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let host = host.trim();
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').filter(|(_, port)| port.parse::<u16>().is_ok()).map_or(host, |(name, _)| name),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name.parse::<std::net::IpAddr>().is_ok()
        || name == "localhost"
        || name.ends_with(".localhost")
        || allowed.iter().any(|a| a.trim() == "*" || a.trim().trim_end_matches('.').eq_ignore_ascii_case(&name))
}

/// What a request without a token may do, when auth is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AnonymousAccess {
    /// Run on AUTH_ANONYMOUS_DATASETS, and see only anonymous runs and threads.
    Run,
    /// Nothing: 401 for every route but the page, /healthz, /readyz and /metrics.
    Deny,
}

/// Identity and access (`crate::auth`, `crate::access`). With none of ADMIN_TOKEN,
/// ADMIN_TOKEN_FILE, OIDC_ISSUER and TRUSTED_PROXY_HEADER set, the service is in
/// single-user mode: every request is the local user, who owns everything.
#[derive(Debug, Clone, Args)]
pub struct AuthConfig {
    /// The bootstrap admin token (at least 20 characters, e.g. `openssl rand -hex 32`):
    /// sent as `Authorization: Bearer …`, it may mint, list and revoke tokens and
    /// read every run. Setting it turns auth on.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true, global = true)]
    pub admin_token: Option<ApiKey>,

    /// A file holding the admin token (a mounted Secret), read at start; instead of
    /// ADMIN_TOKEN.
    #[arg(long, env = "ADMIN_TOKEN_FILE", global = true)]
    pub admin_token_file: Option<PathBuf>,

    /// With auth on, what a request without a token may do: `run` (on
    /// AUTH_ANONYMOUS_DATASETS, seeing only anonymous runs) or `deny` (401).
    #[arg(long, env = "AUTH_ANONYMOUS", value_enum, default_value_t = AnonymousAccess::Run, global = true)]
    pub auth_anonymous: AnonymousAccess,

    /// Datasets anonymous requests may use: ids, comma-separated, or `*` for all.
    #[arg(long, env = "AUTH_ANONYMOUS_DATASETS", default_value = "*", value_delimiter = ',', global = true)]
    pub auth_anonymous_datasets: Vec<String>,

    /// The OIDC issuer whose bearer JWTs (RS256, ES256) are accepted, e.g.
    /// https://login.example.com/realms/team. https, or http on a loopback address
    /// only. Setting it turns auth on; needs OIDC_AUDIENCE.
    #[arg(long, env = "OIDC_ISSUER", global = true)]
    pub oidc_issuer: Option<String>,

    /// The audience (`aud`) the JWTs must be issued for.
    #[arg(long, env = "OIDC_AUDIENCE", global = true)]
    pub oidc_audience: Option<String>,

    /// The JWT claim listing the datasets a subject may use (ids, or `"*"`).
    #[arg(long, env = "OIDC_DATASETS_CLAIM", default_value = "csv_analyst_datasets", global = true)]
    pub oidc_datasets_claim: String,

    /// A JWT claim that makes its subject an admin when it holds OIDC_ADMIN_VALUE
    /// (a string equal to it, or a list containing it). Unset: no OIDC admins.
    #[arg(long, env = "OIDC_ADMIN_CLAIM", global = true)]
    pub oidc_admin_claim: Option<String>,

    /// The value of OIDC_ADMIN_CLAIM that makes an admin (e.g. a group name).
    #[arg(long, env = "OIDC_ADMIN_VALUE", global = true)]
    pub oidc_admin_value: Option<String>,

    /// Peers (CIDRs, comma-separated) trusted to set TRUSTED_PROXY_HEADER,
    /// X-Forwarded-For (the client's address for fairness) and x-client-id. Unset:
    /// none, and those headers are ignored.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',', global = true)]
    pub trusted_proxies: Vec<String>,

    /// A header naming the user, set by an authenticating proxy (oauth2-proxy:
    /// X-Forwarded-User); read only from TRUSTED_PROXIES. Setting it turns auth on.
    #[arg(long, env = "TRUSTED_PROXY_HEADER", global = true)]
    pub trusted_proxy_header: Option<String>,

    /// Datasets a user named by TRUSTED_PROXY_HEADER may use: ids, comma-separated,
    /// or `*` for all.
    #[arg(long, env = "TRUSTED_PROXY_DATASETS", default_value = "*", value_delimiter = ',', global = true)]
    pub trusted_proxy_datasets: Vec<String>,
}

/// Admin tokens shorter than this are refused at start.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 20;

impl AuthConfig {
    /// Whether any identity is configured (else: single-user mode).
    pub fn enabled(&self) -> bool {
        self.admin_token.is_some()
            || self.admin_token_file.is_some()
            || self.oidc_issuer.is_some()
            || self.trusted_proxy_header.is_some()
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.admin_token.is_some() && self.admin_token_file.is_some() {
            return Err("set ADMIN_TOKEN or ADMIN_TOKEN_FILE, not both".into());
        }
        if let Some(token) = &self.admin_token
            && token.expose().trim().chars().count() < MIN_ADMIN_TOKEN_CHARS
        {
            return Err(format!(
                "ADMIN_TOKEN must have at least {MIN_ADMIN_TOKEN_CHARS} characters (try `openssl rand -hex 32`)"
            ));
        }
        match (&self.oidc_issuer, &self.oidc_audience) {
            (Some(issuer), Some(audience)) => {
                check_issuer_url(issuer)?;
                if audience.trim().is_empty() {
                    return Err("OIDC_AUDIENCE must not be empty".into());
                }
            }
            (Some(_), None) => return Err("OIDC_ISSUER needs OIDC_AUDIENCE (the `aud` its tokens carry)".into()),
            (None, Some(_)) => return Err("OIDC_AUDIENCE is set but OIDC_ISSUER is not".into()),
            (None, None) => {}
        }
        if self.oidc_admin_claim.is_some() != self.oidc_admin_value.is_some() {
            return Err("OIDC_ADMIN_CLAIM and OIDC_ADMIN_VALUE go together".into());
        }
        for cidr in &self.trusted_proxies {
            parse_cidr(cidr)?;
        }
        if let Some(header) = &self.trusted_proxy_header {
            if self.trusted_proxies.is_empty() {
                return Err("TRUSTED_PROXY_HEADER needs TRUSTED_PROXIES (the proxies allowed to set it)".into());
            }
            if axum::http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                return Err(format!("TRUSTED_PROXY_HEADER {header:?} is not a header name"));
            }
        }
        Ok(())
    }
}

/// A CIDR (`10.0.0.0/8`, `::1/128`) or a bare address (one host).
pub fn parse_cidr(text: &str) -> Result<ipnet::IpNet, String> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("TRUSTED_PROXIES: {text:?} is not a CIDR such as 10.0.0.0/8"))
}

/// Whether a URL's host is this machine: `localhost` or a loopback address.
pub fn is_loopback(url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// An issuer must be https, or http on a loopback address (tests, a local issuer).
fn check_issuer_url(issuer: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(issuer).map_err(|e| format!("OIDC_ISSUER {issuer:?} is not a URL: {e}"))?;
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&url) => Ok(()),
        _ => Err(format!("OIDC_ISSUER must be an https URL (http only on a loopback address): {issuer}")),
    }
}

/// What data of a dataset the model may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DataExposure {
    /// Sample rows in the context, and each run's result rows (up to LLM_RESULT_ROWS).
    Results,
    /// Sample rows in the context; of results only columns, types and row counts.
    Samples,
    /// No cell value of the dataset ever reaches the model.
    Schema,
}

/// Settings of the analyst agent (`POST /chat`).
#[derive(Debug, Clone, Args)]
pub struct ChatConfig {
    /// What the model may see of the data: results, samples or schema.
    #[arg(long, env = "LLM_DATA_EXPOSURE", value_enum, default_value_t = DataExposure::Results, global = true)]
    pub llm_data_exposure: DataExposure,

    /// Result rows of each run sent back to the model (LLM_DATA_EXPOSURE=results).
    #[arg(long, env = "LLM_RESULT_ROWS", default_value_t = 50, global = true)]
    pub llm_result_rows: usize,

    /// Model calls per chat turn at most.
    #[arg(long, env = "LLM_MAX_STEPS", default_value_t = 6, global = true)]
    pub llm_max_steps: u32,

    /// Queries (SQL or plans) per chat turn at most.
    #[arg(long, env = "LLM_MAX_SQL_ATTEMPTS", default_value_t = 3, global = true)]
    pub llm_max_sql_attempts: u32,

    /// Wall-clock limit of a chat turn.
    #[arg(long, env = "CHAT_TURN_TIMEOUT_SECONDS", default_value_t = 90.0, global = true)]
    pub chat_turn_timeout_seconds: f64,
}

/// Which model provider the agent uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProviderChoice {
    /// OpenAI if OPENAI_API_KEY or OPENAI_BASE_URL is set, else Anthropic if
    /// ANTHROPIC_API_KEY or ANTHROPIC_BASE_URL is set, else none.
    Auto,
    /// OpenAI Chat Completions, or any OpenAI-compatible server at OPENAI_BASE_URL.
    Openai,
    /// Anthropic Messages.
    Anthropic,
    /// No model: only `SQL:` and `PLAN:` messages work.
    None,
}

/// A secret: an API key, or a database URL with its password. Its `Debug` prints
/// `[redacted]` and it has no `Display`, so it cannot slip into a log line or an
/// error through formatting.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> ApiKey {
        ApiKey(key.into())
    }

    /// The key itself, for the one place that puts it into a request header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the key is empty or white space (a key set but left blank).
    pub fn is_blank(&self) -> bool {
        self.0.trim().is_empty()
    }

    /// The key without surrounding white space.
    pub fn trimmed(&self) -> ApiKey {
        ApiKey(self.0.trim().to_string())
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl FromStr for ApiKey {
    type Err = std::convert::Infallible;
    fn from_str(key: &str) -> Result<ApiKey, Self::Err> {
        Ok(ApiKey(key.to_string()))
    }
}

impl From<String> for ApiKey {
    fn from(key: String) -> ApiKey {
        ApiKey(key)
    }
}

impl From<&str> for ApiKey {
    fn from(key: &str) -> ApiKey {
        ApiKey(key.to_string())
    }
}

/// The model settings (`crate::llm` reads them), flattened into [`Config`].
#[derive(Debug, Clone, Args)]
pub struct LlmConfig {
    /// auto (default: whichever key or base URL is set) | openai | anthropic | none.
    #[arg(long, env = "LLM_PROVIDER", value_enum, default_value_t = ProviderChoice::Auto, global = true)]
    pub llm_provider: ProviderChoice,

    /// Key for the OpenAI API (not needed for an OpenAI-compatible server at OPENAI_BASE_URL).
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true, global = true)]
    pub openai_api_key: Option<ApiKey>,

    /// Default https://api.openai.com/v1; any OpenAI-compatible server (vLLM, Ollama,
    /// llama.cpp llama-server) works, and then no key is required.
    #[arg(long, env = "OPENAI_BASE_URL", global = true)]
    pub openai_base_url: Option<String>,

    /// The OpenAI (or OpenAI-compatible) model name.
    #[arg(long, env = "OPENAI_MODEL", default_value = "gpt-4o-mini", global = true)]
    pub openai_model: String,

    /// Key for the Anthropic API (not needed with ANTHROPIC_BASE_URL pointing elsewhere).
    #[arg(long, env = "ANTHROPIC_API_KEY", hide_env_values = true, global = true)]
    pub anthropic_api_key: Option<ApiKey>,

    /// Default https://api.anthropic.com.
    #[arg(long, env = "ANTHROPIC_BASE_URL", global = true)]
    pub anthropic_base_url: Option<String>,

    /// The Anthropic model name.
    #[arg(long, env = "ANTHROPIC_MODEL", default_value = "claude-haiku-4-5", global = true)]
    pub anthropic_model: String,

    /// Limit of one model request, from sending it to the end of its stream.
    #[arg(long, env = "LLM_TIMEOUT_SECONDS", default_value_t = 60.0, global = true)]
    pub llm_timeout_seconds: f64,

    /// Retries on 429, 5xx and connection failures (never on other 4xx).
    #[arg(long, env = "LLM_MAX_RETRIES", default_value_t = 2, global = true)]
    pub llm_max_retries: u32,
}

impl Default for LlmConfig {
    /// The same defaults as the flags (for tests and embedding).
    fn default() -> LlmConfig {
        LlmConfig {
            llm_provider: ProviderChoice::Auto,
            openai_api_key: None,
            openai_base_url: None,
            openai_model: "gpt-4o-mini".to_string(),
            anthropic_api_key: None,
            anthropic_base_url: None,
            anthropic_model: "claude-haiku-4-5".to_string(),
            llm_timeout_seconds: 60.0,
            llm_max_retries: 2,
        }
    }
}

/// Settings of the Kubernetes provider (`SANDBOX_PROVIDER=k8s`).
#[derive(Debug, Clone, Args)]
pub struct K8sConfig {
    /// The kubeconfig to use outside a cluster. Default: the in-cluster service
    /// account when in a pod, else ~/.kube/config.
    #[arg(long, env = "KUBECONFIG", global = true)]
    pub kubeconfig: Option<PathBuf>,

    /// Namespace the runner Jobs are created in. Default: the pod's own namespace in
    /// a cluster, else the kubeconfig's.
    #[arg(long, env = "K8S_NAMESPACE", global = true)]
    pub k8s_namespace: Option<String>,

    /// The runner image (runner-host, the precompiled guest, the datasets at /data).
    #[arg(long, env = "RUNNER_IMAGE", default_value = "csv-analyst-runner:dev", global = true)]
    pub runner_image: String,

    /// Image pull policy of the runner container: Always, IfNotPresent or Never.
    #[arg(long, env = "K8S_IMAGE_PULL_POLICY", default_value = "IfNotPresent", global = true)]
    pub k8s_image_pull_policy: String,

    /// CPU limit (and request) of the runner container.
    #[arg(long, env = "K8S_CPU_LIMIT", default_value = "1", global = true)]
    pub k8s_cpu_limit: String,

    /// Memory limit (and request) of the runner container. Default: the wasm memory
    /// cap plus 256 MiB for the host and the precompiled module.
    #[arg(long, env = "K8S_MEMORY_LIMIT", global = true)]
    pub k8s_memory_limit: Option<String>,

    /// Seconds a finished Job stays before Kubernetes deletes it.
    #[arg(long, env = "K8S_JOB_TTL_SECONDS", default_value_t = 300, global = true)]
    pub k8s_job_ttl_seconds: i32,

    /// Delete each Job (background propagation) as soon as its result is read.
    #[arg(long, env = "K8S_DELETE_JOBS", default_value_t = false, action = clap::ArgAction::Set, global = true)]
    pub k8s_delete_jobs: bool,

    /// A PersistentVolumeClaim holding the datasets, mounted read-only at /data.
    /// Default: the datasets baked into the runner image.
    #[arg(long, env = "K8S_DATASETS_PVC", global = true)]
    pub k8s_datasets_pvc: Option<String>,

    /// The PersistentVolumeClaim UPLOADS_DIR is on (ReadWriteMany), mounted read-only
    /// at /data by runner Jobs of uploaded datasets. Unset: uploads are refused (503)
    /// with SANDBOX_PROVIDER=k8s.
    #[arg(long, env = "K8S_UPLOADS_PVC", global = true)]
    pub k8s_uploads_pvc: Option<String>,

    /// Service account of the runner pods (its token is never mounted).
    #[arg(long, env = "K8S_SERVICE_ACCOUNT_NAME", global = true)]
    pub k8s_service_account_name: Option<String>,

    /// Secrets runner pods pull the runner image with (comma-separated names).
    #[arg(long, env = "K8S_IMAGE_PULL_SECRETS", value_delimiter = ',', global = true)]
    pub k8s_image_pull_secrets: Vec<String>,

    /// Jobs running at once (the k8s provider's MAX_CONCURRENT_RUNS).
    #[arg(long, env = "K8S_MAX_CONCURRENT_JOBS", default_value_t = 16, global = true)]
    pub k8s_max_concurrent_jobs: usize,

    /// Seconds past the run timeout before Kubernetes kills a runner Job
    /// (its activeDeadlineSeconds is the run timeout plus this).
    #[arg(long, env = "K8S_JOB_DEADLINE_GRACE_SECONDS", default_value_t = 30, global = true)]
    pub k8s_job_deadline_grace_seconds: i64,

    /// How long a runner pod may wait to start (scheduling, image pull) before the
    /// run fails.
    #[arg(long, env = "K8S_POD_START_TIMEOUT_SECONDS", default_value_t = 60, global = true)]
    pub k8s_pod_start_timeout_seconds: u64,
}

/// Parses a [`Config`] on its own, for tests and embedders.
#[derive(clap::Parser)]
#[command(name = "orchestrator")]
struct ConfigOnly {
    #[command(flatten)]
    config: Config,
}

impl Config {
    /// The PostgreSQL URL, from RUN_STORE_URL or the file RUN_STORE_URL_FILE names;
    /// `None`: the SQLite store.
    pub fn store_url(&self) -> Result<Option<String>, String> {
        match (&self.run_store_url, &self.run_store_url_file) {
            (Some(_), Some(_)) => Err("set RUN_STORE_URL or RUN_STORE_URL_FILE, not both".into()),
            (Some(url), None) => Ok(Some(url.expose().trim().to_string())),
            (None, Some(path)) => {
                let url = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read RUN_STORE_URL_FILE {}: {e}", path.display()))?;
                Ok(Some(url.trim().to_string()))
            }
            (None, None) => Ok(None),
        }
    }

    pub fn run_lease(&self) -> Duration {
        Duration::from_secs(self.run_lease_seconds)
    }

    /// UPLOADS_DIR, or `uploads` beside the run store.
    pub fn uploads_dir(&self) -> PathBuf {
        self.uploads_dir
            .clone()
            .unwrap_or_else(|| self.run_store_path.parent().unwrap_or_else(|| Path::new(".")).join("uploads"))
    }

    /// The configuration from command-line arguments (without the program name) and
    /// the environment, as the binary reads it.
    pub fn from_args<I, T>(args: I) -> Result<Config, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::Parser;
        let args = std::iter::once(std::ffi::OsString::from("orchestrator")).chain(args.into_iter().map(Into::into));
        ConfigOnly::try_parse_from(args).map(|c| c.config)
    }

    /// Every setting at its default, whatever the process environment says: for
    /// tests and embedders that must not be changed by an exported `MAX_ROWS`.
    pub fn without_env() -> Config {
        use clap::{CommandFactory, FromArgMatches};
        let command = ConfigOnly::command().mut_args(|arg| arg.env(None::<&str>));
        let matches = command.try_get_matches_from(["orchestrator"]).expect("the defaults parse");
        ConfigOnly::from_arg_matches(&matches).expect("the defaults are a valid configuration").config
    }

    pub fn run_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.run_timeout_seconds.max(0.001))
    }

    pub fn memory_limit_bytes(&self) -> u64 {
        self.run_memory_limit_mb.saturating_mul(1024 * 1024)
    }

    /// What a run may spill, in bytes (0: spilling is off).
    pub fn spill_limit_bytes(&self) -> u64 {
        self.run_spill_max_mb.saturating_mul(1024 * 1024)
    }

    /// Where the in-process sandbox makes runs' scratch directories.
    pub fn spill_dir(&self) -> PathBuf {
        self.run_spill_dir.clone().unwrap_or_else(std::env::temp_dir)
    }

    /// Runs executing at once, for the configured provider.
    pub fn concurrency(&self) -> usize {
        match self.sandbox_provider {
            ProviderKind::K8s => self.k8s.k8s_max_concurrent_jobs.max(1),
            ProviderKind::Local => self
                .max_concurrent_runs
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
                .max(1),
        }
    }

    /// Checks the settings that clap cannot.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.run_timeout_seconds > 0.0 && self.run_timeout_seconds <= 900.0) {
            return Err("RUN_TIMEOUT_SECONDS must be greater than 0 and at most 900".into());
        }
        if !(16..=4096).contains(&self.run_memory_limit_mb) {
            return Err("RUN_MEMORY_LIMIT_MB must be between 16 and 4096".into());
        }
        if self.run_spill_max_mb > runner_host::sandbox::limits::MAX_SPILL_BYTES >> 20 {
            return Err(format!(
                "RUN_SPILL_MAX_MB must be at most {} (1 TiB); 0 turns spilling off",
                runner_host::sandbox::limits::MAX_SPILL_BYTES >> 20
            ));
        }
        if self.max_output_bytes == 0 {
            return Err("MAX_OUTPUT_BYTES must be at least 1".into());
        }
        if !["Always", "IfNotPresent", "Never"].contains(&self.k8s.k8s_image_pull_policy.as_str()) {
            return Err("K8S_IMAGE_PULL_POLICY must be Always, IfNotPresent or Never".into());
        }
        if self.k8s.k8s_job_deadline_grace_seconds < 1 {
            return Err("K8S_JOB_DEADLINE_GRACE_SECONDS must be at least 1".into());
        }
        if self.k8s.k8s_job_ttl_seconds < 0 {
            return Err("K8S_JOB_TTL_SECONDS must not be negative".into());
        }
        if self.max_connections == 0 {
            return Err("MAX_CONNECTIONS must be at least 1".into());
        }
        if !(self.upload_timeout_seconds.is_finite() && (1.0..=3600.0).contains(&self.upload_timeout_seconds)) {
            return Err("UPLOAD_TIMEOUT_SECONDS must be between 1 and 3600: the run it limits holds a run slot".into());
        }
        if self.upload_max_bytes == 0 || self.upload_quota_bytes == 0 {
            return Err("UPLOAD_MAX_BYTES and UPLOAD_QUOTA_BYTES must be at least 1".into());
        }
        if let Some(probe) = self.probe_listen_addr
            && probe.port() != 0
            && probe.port() == self.listen_addr.port()
            && (probe.ip() == self.listen_addr.ip()
                || probe.ip().is_unspecified()
                || self.listen_addr.ip().is_unspecified())
        {
            return Err(format!(
                "PROBE_LISTEN_ADDR ({probe}) must be another address or port than LISTEN_ADDR ({})",
                self.listen_addr
            ));
        }
        if !(self.http_header_timeout_seconds > 0.0 && self.http_header_timeout_seconds <= 600.0) {
            return Err("HTTP_HEADER_TIMEOUT_SECONDS must be greater than 0 and at most 600".into());
        }
        self.auth.validate()?;
        if self.max_runs_per_client == Some(0) {
            return Err("MAX_RUNS_PER_CLIENT must be at least 1".into());
        }
        if !(3..=3600).contains(&self.run_lease_seconds) {
            return Err("RUN_LEASE_SECONDS must be between 3 and 3600".into());
        }
        if self.run_retention_max == 0 {
            return Err("RUN_RETENTION_MAX must be at least 1".into());
        }
        if self.chat.llm_max_steps == 0 || self.chat.llm_max_sql_attempts == 0 {
            return Err("LLM_MAX_STEPS and LLM_MAX_SQL_ATTEMPTS must be at least 1".into());
        }
        if !(self.chat.chat_turn_timeout_seconds > 0.0 && self.chat.chat_turn_timeout_seconds <= 3600.0) {
            return Err("CHAT_TURN_TIMEOUT_SECONDS must be greater than 0 and at most 3600".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_url_comes_from_the_setting_or_its_file_not_both() {
        let mut config = Config::without_env();
        assert_eq!(config.store_url(), Ok(None), "SQLite by default");
        assert_eq!(config.run_lease_seconds, 30);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("url");
        std::fs::write(&file, "postgres://u:p@db:5432/csv\n").unwrap();
        config.run_store_url_file = Some(file.clone());
        assert_eq!(config.store_url(), Ok(Some("postgres://u:p@db:5432/csv".into())), "trimmed");
        config.run_store_url = Some(ApiKey::new("postgres://other"));
        assert!(!format!("{config:?}").contains("postgres://other"), "the URL (its password) is not in Debug");
        assert!(config.store_url().unwrap_err().contains("not both"));
        config.run_store_url_file = None;
        assert_eq!(config.store_url(), Ok(Some("postgres://other".into())));
        config.run_store_url_file = Some(dir.path().join("absent"));
        config.run_store_url = None;
        assert!(config.store_url().unwrap_err().starts_with("cannot read RUN_STORE_URL_FILE"));
        config.run_lease_seconds = 2;
        assert_eq!(config.validate().unwrap_err(), "RUN_LEASE_SECONDS must be between 3 and 3600");
    }

    #[test]
    fn the_probe_listener_must_not_take_the_main_address() {
        let mut config = Config::without_env();
        assert_eq!(config.max_connections_per_address, 32);
        assert_eq!(config.probe_listen_addr, None);
        config.listen_addr = "0.0.0.0:8000".parse().unwrap();
        for clash in ["0.0.0.0:8000", "127.0.0.1:8000"] {
            config.probe_listen_addr = Some(clash.parse().unwrap());
            let error = config.validate().unwrap_err();
            assert!(error.contains("PROBE_LISTEN_ADDR"), "{clash}: {error}");
        }
        for fine in ["0.0.0.0:8001", "127.0.0.1:0"] {
            config.probe_listen_addr = Some(fine.parse().unwrap());
            assert_eq!(config.validate(), Ok(()), "{fine}");
        }
        let parsed =
            Config::from_args(["--probe-listen-addr", "127.0.0.1:9000", "--max-connections-per-address", "0"]).unwrap();
        assert_eq!(parsed.probe_listen_addr, Some("127.0.0.1:9000".parse().unwrap()));
        assert_eq!(parsed.max_connections_per_address, 0);
    }

    #[test]
    fn only_addresses_localhost_and_listed_names_are_hosts_of_a_single_user_service() {
        let allowed = vec!["csv.internal".to_string()];
        for ok in ["127.0.0.1:8000", "10.1.2.3", "[::1]:8000", "localhost:8000", "app.localhost", "CSV.internal:80"] {
            assert!(host_allowed(ok, &allowed), "{ok}");
        }
        for refused in ["evil.example:8000", "localhost.evil.example", "127.0.0.1.nip.io", "csv.internal.evil"] {
            assert!(!host_allowed(refused, &allowed), "{refused}");
        }
        assert!(host_allowed("anything.example", &["*".to_string()]));
    }
}
