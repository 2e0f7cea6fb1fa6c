//! Prometheus metrics, served as text at `GET /metrics`.
//!
//! - `csv_analyst_runs_total{status,provider}`: finished runs by status.
//! - `csv_analyst_run_duration_seconds{provider}`: run latency (accepted → finished).
//! - `csv_analyst_runs_in_flight`: runs executing now.
//! - `csv_analyst_http_requests_total{method,route,status}`: HTTP requests served.

use std::sync::atomic::AtomicI64;

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
    pub status: u16,
}

pub struct Metrics {
    registry: Registry,
    pub runs: Family<RunLabels, Counter>,
    pub run_duration: Family<ProviderLabels, Histogram>,
    pub in_flight: Gauge<i64, AtomicI64>,
    pub http_requests: Family<HttpLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("csv_analyst");
        let runs = Family::<RunLabels, Counter>::default();
        registry.register("runs", "Finished runs by status and provider", runs.clone());
        let run_duration = Family::<ProviderLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        registry.register("run_duration_seconds", "Run latency from acceptance to result", run_duration.clone());
        let in_flight = Gauge::<i64, AtomicI64>::default();
        registry.register("runs_in_flight", "Runs executing now", in_flight.clone());
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests by method, route and status", http_requests.clone());
        Metrics { registry, runs, run_duration, in_flight, http_requests }
    }
}

impl Metrics {
    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}
