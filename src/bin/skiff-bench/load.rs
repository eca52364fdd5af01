//! The closed-loop load runner: N workers (one per simulated client, each with its own
//! connection or handle) take operation numbers from a shared counter until a fixed
//! number of operations is done or the deadline passes; every operation's latency is
//! recorded. Also the small statistics helpers (percentiles, medians).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;

use crate::{err, Result};

/// One simulated client: performs operation number `seq` (unique across all workers of a
/// run, so it can be used to build unique keys or names).
pub trait Worker: Send + 'static {
    fn op(&mut self, seq: u64) -> BoxFuture<'_, Result<()>>;
}

/// What one load run measured.
#[derive(Debug, Clone)]
pub struct Run {
    /// Operations completed.
    pub ops: u64,
    /// From the common start to the last worker's end.
    pub wall: Duration,
    /// Every operation's latency.
    pub latencies: Vec<Duration>,
    /// Whether the deadline stopped the run before all operations were done.
    pub timed_out: bool,
}

impl Run {
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

/// Runs `total` operations over `workers` (started together after all are ready), giving
/// up on new operations after `timeout`. The first failing operation fails the run.
pub async fn run<W: Worker>(workers: Vec<W>, total: u64, timeout: Duration) -> Result<Run> {
    let next = Arc::new(AtomicU64::new(0));
    let start_gate = Arc::new(tokio::sync::Barrier::new(workers.len() + 1));
    let mut tasks = Vec::with_capacity(workers.len());
    // Spawning takes microseconds; the deadline only bounds a run that goes wrong.
    let deadline = Instant::now() + timeout;
    for mut worker in workers {
        let next = Arc::clone(&next);
        let gate = Arc::clone(&start_gate);
        tasks.push(tokio::spawn(async move {
            gate.wait().await;
            let mut latencies = Vec::new();
            let mut timed_out = false;
            loop {
                let seq = next.fetch_add(1, Ordering::Relaxed);
                if seq >= total {
                    break;
                }
                if Instant::now() > deadline {
                    timed_out = true;
                    break;
                }
                let t = Instant::now();
                worker.op(seq).await?;
                latencies.push(t.elapsed());
            }
            Ok::<_, crate::Error>((latencies, timed_out))
        }));
    }
    start_gate.wait().await;
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    let mut timed_out = false;
    let mut first_error = None;
    for task in tasks {
        match task.await {
            Ok(Ok((lat, t))) => {
                latencies.extend(lat);
                timed_out |= t;
            }
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(err(format!("worker task failed: {e}")));
            }
        }
    }
    let wall = started.elapsed();
    if let Some(e) = first_error {
        return Err(e);
    }
    Ok(Run {
        ops: latencies.len() as u64,
        wall,
        latencies,
        timed_out,
    })
}

/// Nearest-rank percentile (`p` in 0..=100) of unsorted samples; zero if empty.
pub fn percentile(samples: &[Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Median of floats (the mean of the middle two for an even count); NaN if empty.
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// Milliseconds with two decimals, e.g. `1.25 ms`.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_medians() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&samples, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&samples, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
