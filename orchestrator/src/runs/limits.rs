//! The limits every run is held to ([`RunSettings`], taken once from the
//! configuration: the narrow piece of [`crate::config::Config`] the run service
//! needs), and the tighter ones a request may ask for ([`Limits`]).

use std::time::Duration;

use protocol::RunRequest;
use protocol::registry::Dataset;

use crate::config::Config;
use crate::error::Error;

#[derive(Debug, Clone)]
pub struct RunSettings {
    /// Wall-clock limit of a run (RUN_TIMEOUT_SECONDS).
    pub timeout: Duration,
    pub max_rows: u64,
    pub max_output_bytes: u64,
    pub memory_limit_bytes: u64,
    /// Runs executing at once.
    pub slots: usize,
    /// How long a run waits for a slot (QUEUE_TIMEOUT_MS).
    pub queue_timeout: Duration,
    /// Runs one client may have waiting or running (MAX_RUNS_PER_CLIENT).
    pub runs_per_client: usize,
}

impl RunSettings {
    pub fn from_config(config: &Config) -> RunSettings {
        RunSettings {
            timeout: config.run_timeout(),
            max_rows: config.max_rows,
            max_output_bytes: config.max_output_bytes,
            memory_limit_bytes: config.memory_limit_bytes(),
            slots: config.concurrency(),
            queue_timeout: Duration::from_millis(config.queue_timeout_ms),
            runs_per_client: config.runs_per_client(),
        }
    }

    /// The sandbox request for `sql` over `dataset`, with these limits tightened to `limits`.
    pub fn request(&self, dataset: &Dataset, sql: &str, limits: Limits) -> RunRequest {
        let mut request = runner_host::request_for(dataset, sql);
        request.timeout_ms = limits.timeout_ms;
        request.max_rows = limits.max_rows;
        request.max_output_bytes = self.max_output_bytes;
        request.memory_limit_bytes = self.memory_limit_bytes;
        request
    }
}

/// The limits of one run: the service's, or tighter ones the request asked for.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeout_ms: u64,
    pub max_rows: u64,
}

impl Limits {
    pub fn new(settings: &RunSettings, max_rows: Option<u64>, timeout_seconds: Option<f64>) -> Result<Limits, Error> {
        let service_timeout_ms = settings.timeout.as_millis() as u64;
        let timeout_ms = match timeout_seconds {
            None => service_timeout_ms,
            Some(t) if t > 0.0 && t.is_finite() => ((t * 1000.0).ceil() as u64).clamp(1, service_timeout_ms),
            Some(_) => return Err(Error::invalid("timeout_seconds must be a positive number")),
        };
        let max_rows = max_rows.map_or(settings.max_rows, |n| n.min(settings.max_rows));
        Ok(Limits { timeout_ms, max_rows })
    }

    /// The service's own limits.
    pub fn service(settings: &RunSettings) -> Limits {
        Limits { timeout_ms: settings.timeout.as_millis() as u64, max_rows: settings.max_rows }
    }
}
