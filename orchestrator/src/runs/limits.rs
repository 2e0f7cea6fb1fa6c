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
    /// Scratch disk a run may spill to (RUN_SPILL_MAX_MB; 0: none).
    pub spill_limit_bytes: u64,
    /// Runs executing at once.
    pub slots: usize,
    /// How long a run waits for a slot (QUEUE_TIMEOUT_MS).
    pub queue_timeout: Duration,
    /// Runs one client may have waiting or running (MAX_RUNS_PER_CLIENT).
    pub runs_per_client: usize,
}

impl RunSettings {
    pub fn from_config(config: &Config) -> RunSettings {
        let slots = config.concurrency();
        RunSettings {
            timeout: config.run_timeout(),
            max_rows: config.max_rows,
            max_output_bytes: config.max_output_bytes,
            memory_limit_bytes: config.memory_limit_bytes(),
            spill_limit_bytes: config.spill_limit_bytes(),
            slots,
            queue_timeout: Duration::from_millis(config.queue_timeout_ms),
            runs_per_client: config.max_runs_per_client.unwrap_or_else(|| default_runs_per_client(slots)),
        }
    }

    /// The sandbox request for `sql` over `dataset`, with these limits tightened to `limits`.
    pub fn request(&self, dataset: &Dataset, sql: &str, limits: Limits) -> RunRequest {
        let mut request = runner_host::request_for(dataset, sql);
        request.timeout_ms = limits.timeout_ms;
        request.max_rows = limits.max_rows;
        request.max_output_bytes = self.max_output_bytes;
        request.memory_limit_bytes = self.memory_limit_bytes;
        request.spill_limit_bytes = self.spill_limit_bytes;
        request
    }
}

/// The default MAX_RUNS_PER_CLIENT for `slots` run slots: one client's share.
///
/// The rule: three quarters of the slots, rounded up, and then
/// - at least 1, so every client can run something, and
/// - from two slots on, at most `slots - 1`, so at least one slot is always left
///   to the other clients: one client can never hold every slot.
///
/// So 1 slot → 1, 2 → 1, 3 → 2, 4 → 3, 5 → 4, 8 → 6, 16 → 12.
pub fn default_runs_per_client(slots: usize) -> usize {
    let three_quarters = slots - slots / 4; // ⌈3·slots/4⌉ without overflow
    three_quarters.min(slots.saturating_sub(1)).max(1)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_client_never_holds_every_slot_and_always_gets_one() {
        for slots in 1..=16 {
            let share = default_runs_per_client(slots);
            assert!(share >= 1, "{slots} slots: a client must be able to run something, got {share}");
            if slots >= 2 {
                assert!(share < slots, "{slots} slots: one client could hold all of them ({share})");
            } else {
                assert_eq!(share, 1, "a single slot is everyone's");
            }
            // About three quarters, never more than a quarter (rounded) left as reserve.
            let reserve = slots - share;
            assert!(reserve <= slots.div_ceil(4).max(1), "{slots} slots: reserve {reserve} is more than a quarter");
        }
        let table: Vec<usize> = (1..=8).map(default_runs_per_client).collect();
        assert_eq!(table, [1, 1, 2, 3, 4, 5, 6, 6]);
        assert_eq!(default_runs_per_client(16), 12);
    }

    #[test]
    fn the_configured_share_is_taken_as_given_and_the_default_follows_the_slots() {
        let mut config = Config::without_env();
        config.max_concurrent_runs = Some(2);
        assert_eq!(RunSettings::from_config(&config).runs_per_client, 1);
        config.max_runs_per_client = Some(2);
        assert_eq!(RunSettings::from_config(&config).runs_per_client, 2);
    }
}
