//! Timing: medians of repeated runs, after one warm-up.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Default)]
pub struct Samples(Vec<Duration>);

impl Samples {
    pub fn from_secs(secs: &[f64]) -> Samples {
        Samples(secs.iter().map(|s| Duration::from_secs_f64(*s)).collect())
    }

    pub fn median(&self) -> Duration {
        let mut sorted = self.0.clone();
        sorted.sort();
        sorted.get(sorted.len() / 2).copied().unwrap_or_default()
    }

    pub fn median_ms(&self) -> f64 {
        self.median().as_secs_f64() * 1000.0
    }
}

/// Runs `f` once to warm up, then `n` times, timing each.
pub fn time_n(n: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<Samples> {
    f()?;
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        f()?;
        samples.push(started.elapsed());
    }
    Ok(Samples(samples))
}

/// The `q`-quantile (0..=1) of `values`, in place.
pub fn quantile(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let index = ((values.len() as f64 - 1.0) * q).round() as usize;
    values.get(index).copied().unwrap_or(f64::NAN)
}
