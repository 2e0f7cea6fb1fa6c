//! Prometheus metrics, served as text at `GET /metrics`.
//!
//! - `csv_analyst_runs_total{status,provider}`: finished runs by status.
//! - `csv_analyst_run_duration_seconds{provider}`: run latency (accepted → finished),
//!   with buckets reaching past the longest run timeout plus a pod start.
//! - `csv_analyst_run_queue_wait_seconds`: time a run waited for a slot.
//! - `csv_analyst_runs_in_flight`: runs executing now.
//! - `csv_analyst_capacity_rejections_total`: runs refused because every slot was busy.
//! - `csv_analyst_http_requests_total{method,route,code}`: HTTP requests served (known
//!   methods and routes only; `other` for the rest, so a client cannot create series).
//! - `csv_analyst_connections_refused_total{reason}`: connections closed at accept:
//!   `address_limit` (MAX_CONNECTIONS_PER_ADDRESS), `connection_limit` (MAX_CONNECTIONS
//!   and the probe reserve), `probe_limit` (the probe listener's own budget).
//! - `csv_analyst_k8s_job_create_errors_total`, `csv_analyst_k8s_pod_start_seconds`.
//! - `csv_analyst_module_load_seconds`: how long the sandbox module took to load.
//! - `csv_analyst_schema_computations_total`: dataset schemas computed in the sandbox.
//! - `csv_analyst_store_runs`, `csv_analyst_store_bytes`: the run store's size.
//! - `csv_analyst_chat_turns_total{endpoint,status}`, `csv_analyst_llm_requests_total{provider,outcome}`,
//!   `csv_analyst_llm_request_duration_seconds{provider}`, `csv_analyst_llm_tokens_total{direction}`.
//! - `csv_analyst_build_info{version}`: always 1.
//!
//! A leaf: uses nothing of this crate. The services and the providers get the
//! metrics they record as handles (a `Counter` is shared by cloning).

use std::sync::atomic::{AtomicI64, AtomicU64};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    pub status: String,
    pub provider: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    pub provider: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub route: String,
    pub code: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TurnLabels {
    pub endpoint: String,
    pub status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LlmLabels {
    pub provider: String,
    pub outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub direction: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

pub struct Metrics {
    registry: Registry,
    pub runs: Family<RunLabels, Counter>,
    pub run_duration: Family<ProviderLabels, Histogram>,
    pub queue_wait: Histogram,
    pub in_flight: Gauge<i64, AtomicI64>,
    pub capacity_rejections: Counter,
    pub http_requests: Family<HttpLabels, Counter>,
    pub connections_refused: Family<RefusalLabels, Counter>,
    pub k8s_job_create_errors: Counter,
    pub k8s_pod_start: Histogram,
    pub module_load: Gauge<f64, AtomicU64>,
    pub schema_computations: Counter,
    pub store_runs: Gauge<i64, AtomicI64>,
    pub store_bytes: Gauge<i64, AtomicI64>,
    pub chat_turns: Family<TurnLabels, Counter>,
    pub llm_requests: Family<LlmLabels, Counter>,
    pub llm_duration: Family<ProviderLabels, Histogram>,
    pub llm_tokens: Family<TokenLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("csv_analyst");
        let runs = Family::<RunLabels, Counter>::default();
        registry.register("runs", "Finished runs by status and provider", runs.clone());
        // 1 ms to ~65 min: past RUN_TIMEOUT_SECONDS' maximum (900 s) plus a pod start.
        let run_duration = Family::<ProviderLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 23))
        });
        registry.register("run_duration_seconds", "Run latency from acceptance to result", run_duration.clone());
        let queue_wait = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register("run_queue_wait_seconds", "Time a run waited for a free slot", queue_wait.clone());
        let in_flight = Gauge::<i64, AtomicI64>::default();
        registry.register("runs_in_flight", "Runs executing now", in_flight.clone());
        let capacity_rejections = Counter::default();
        registry.register(
            "capacity_rejections",
            "Runs refused because every run slot stayed busy",
            capacity_rejections.clone(),
        );
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests by method, route and status code", http_requests.clone());
        let connections_refused = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "connections_refused",
            "Connections closed as they were accepted, by the limit that refused them",
            connections_refused.clone(),
        );
        let k8s_job_create_errors = Counter::default();
        registry.register(
            "k8s_job_create_errors",
            "Kubernetes Jobs the API refused to create",
            k8s_job_create_errors.clone(),
        );
        let k8s_pod_start = Histogram::new(exponential_buckets(0.05, 2.0, 14));
        registry.register(
            "k8s_pod_start_seconds",
            "Time from Job creation to a running runner pod",
            k8s_pod_start.clone(),
        );
        let module_load = Gauge::<f64, AtomicU64>::default();
        registry.register("module_load_seconds", "How long the sandbox module took to load", module_load.clone());
        let schema_computations = Counter::default();
        registry.register(
            "schema_computations",
            "Dataset schemas computed in the sandbox (once per dataset, however many ask)",
            schema_computations.clone(),
        );
        let store_runs = Gauge::<i64, AtomicI64>::default();
        registry.register("store_runs", "Runs kept in the run store", store_runs.clone());
        let store_bytes = Gauge::<i64, AtomicI64>::default();
        registry.register("store_bytes", "Size of the run store's database", store_bytes.clone());
        let chat_turns = Family::<TurnLabels, Counter>::default();
        registry.register("chat_turns", "Chat turns by endpoint and status", chat_turns.clone());
        let llm_requests = Family::<LlmLabels, Counter>::default();
        registry.register("llm_requests", "Model requests by provider and outcome", llm_requests.clone());
        let llm_duration = Family::<ProviderLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.05, 2.0, 12))
        });
        registry.register("llm_request_duration_seconds", "Model request latency", llm_duration.clone());
        let llm_tokens = Family::<TokenLabels, Counter>::default();
        registry.register("llm_tokens", "Model tokens by direction (input, output)", llm_tokens.clone());
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION").to_string() }).set(1);
        registry.register("build_info", "The orchestrator's version", build_info);
        Metrics {
            registry,
            runs,
            run_duration,
            queue_wait,
            in_flight,
            capacity_rejections,
            http_requests,
            connections_refused,
            k8s_job_create_errors,
            k8s_pod_start,
            module_load,
            schema_computations,
            store_runs,
            store_bytes,
            chat_turns,
            llm_requests,
            llm_duration,
            llm_tokens,
        }
    }
}

/// HTTP methods that get their own label; any other is `other`.
const KNOWN_METHODS: [&str; 7] = ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"];

impl Metrics {
    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }

    /// Counts a finished run.
    pub fn observe_run(&self, status: &str, provider: &str, seconds: f64) {
        self.runs.get_or_create(&RunLabels { status: status.to_string(), provider: provider.to_string() }).inc();
        self.run_duration.get_or_create(&ProviderLabels { provider: provider.to_string() }).observe(seconds);
    }

    /// Counts an HTTP request. `route` is the matched route template, if any.
    pub fn observe_http(&self, method: &str, route: Option<&str>, code: u16) {
        let method = if KNOWN_METHODS.contains(&method) { method } else { "other" };
        let labels = HttpLabels { method: method.to_string(), route: route.unwrap_or("other").to_string(), code };
        self.http_requests.get_or_create(&labels).inc();
    }
}
