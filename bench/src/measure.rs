//! Timing: medians of repeated runs, after one warm-up; and paired runs of two
//! alternatives, for ratios that hold on a noisy machine.
//!
//! A ratio of two medians measured one after the other compares two stretches of
//! time: a neighbour's build that starts between them, or a CPU clocking down,
//! moves it. Pairs run the two alternatives back to back, so each pair's ratio
//! shares its conditions, and the median of the per-pair ratios drops the pairs a
//! burst of noise spoilt.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Default)]
pub struct Samples(Vec<Duration>);

impl Samples {
    pub fn from_secs(secs: &[f64]) -> Samples {
        Samples(secs.iter().map(|s| Duration::from_secs_f64(*s)).collect())
    }

    /// The median (the mean of the middle two for an even count); zero when empty.
    pub fn median(&self) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(median_of(self.0.iter().map(Duration::as_secs_f64).collect()))
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
        samples.push(timed(&mut f)?);
    }
    Ok(Samples(samples))
}

/// Two alternatives timed in pairs: `a[i]` and `b[i]` ran back to back.
#[derive(Debug, Clone, Default)]
pub struct Pairs {
    pub a: Samples,
    pub b: Samples,
}

impl Pairs {
    /// The per-pair ratios `a / b`.
    fn ratios(&self) -> Vec<f64> {
        self.a.0.iter().zip(&self.b.0).map(|(a, b)| a.as_secs_f64() / b.as_secs_f64()).collect()
    }

    /// The median of the per-pair ratios `a / b` (NaN when there are no pairs).
    pub fn ratio_median(&self) -> f64 {
        median_of(self.ratios())
    }

    /// The `q`-quantile of the per-pair ratios: how far the pairs spread.
    pub fn ratio_quantile(&self, q: f64) -> f64 {
        quantile(&mut self.ratios(), q)
    }
}

/// Runs `a` and `b` once each to warm up, then `n` pairs of them, alternating which
/// goes first (a b, b a, a b, ...) so that neither always runs in the caches, memory
/// and clock state the other leaves behind.
pub fn paired(
    n: usize,
    mut a: impl FnMut() -> anyhow::Result<()>,
    mut b: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Pairs> {
    a()?;
    b()?;
    let (mut a_times, mut b_times) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        if i % 2 == 0 {
            a_times.push(timed(&mut a)?);
            b_times.push(timed(&mut b)?);
        } else {
            b_times.push(timed(&mut b)?);
            a_times.push(timed(&mut a)?);
        }
    }
    Ok(Pairs { a: Samples(a_times), b: Samples(b_times) })
}

/// How long one call of `f` took.
fn timed<F: FnMut() -> anyhow::Result<()>>(f: &mut F) -> anyhow::Result<Duration> {
    let started = Instant::now();
    f()?;
    Ok(started.elapsed())
}

/// The median of `values` (the mean of the middle two for an even count; NaN when empty).
fn median_of(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The `q`-quantile (0..=1) of `values`, in place.
pub fn quantile(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let index = ((values.len() as f64 - 1.0) * q).round() as usize;
    values.get(index).copied().unwrap_or(f64::NAN)
}
