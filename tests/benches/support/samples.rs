//! Timed samples and their order statistics.

use std::time::{Duration, Instant};

/// Durations of repeated runs of one operation.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    v: Vec<Duration>,
}

impl Samples {
    /// Room for `n` samples.
    pub fn with_capacity(n: usize) -> Samples {
        Samples {
            v: Vec::with_capacity(n),
        }
    }

    /// Adds one sample.
    pub fn push(&mut self, d: Duration) {
        self.v.push(d);
    }

    /// Runs `f` once, adds its duration and returns its result.
    #[inline]
    pub fn time<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let r = f();
        self.v.push(t.elapsed());
        r
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.v.len()
    }

    /// The `p`-quantile (0.0..=1.0), nearest rank.
    pub fn quantile(&self, p: f64) -> Duration {
        if self.v.is_empty() {
            return Duration::ZERO;
        }
        let mut s = self.v.clone();
        s.sort_unstable();
        let rank = ((p * s.len() as f64).ceil() as usize).clamp(1, s.len());
        s[rank - 1]
    }

    /// The median.
    pub fn median(&self) -> Duration {
        self.quantile(0.5)
    }

    /// The mean (for a cost paid once every few calls, the amortised cost per call).
    pub fn mean(&self) -> Duration {
        if self.v.is_empty() {
            return Duration::ZERO;
        }
        self.v.iter().sum::<Duration>() / self.v.len() as u32
    }

    /// The 90th percentile.
    pub fn p90(&self) -> Duration {
        self.quantile(0.9)
    }
}

/// A duration in the unit that suits it.
pub fn fmt_duration(d: Duration) -> String {
    let ns = d.as_nanos() as f64;
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.2} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}
