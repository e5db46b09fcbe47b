//! A closed-loop load generator: `concurrency` workers call as fast as answers come back, until
//! a request count or a deadline is reached; each latency goes into an HdrHistogram.
use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;

/// When a measurement stops: whichever comes first.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub requests: u64,
    pub duration: Duration,
}

/// Latencies (µs) and counts of one measurement.
#[derive(Debug, Clone)]
pub struct Measurement {
    pub requests: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    pub concurrency: usize,
    pub micros: Histogram<u64>,
    /// CPU time this process spent during the measurement (user + system, every thread), when
    /// the system says (Linux): everything in this process, load generator included.
    pub cpu: Option<Duration>,
}

impl Measurement {
    fn quantile_ms(&self, q: f64) -> f64 {
        self.micros.value_at_quantile(q) as f64 / 1e3
    }
    pub fn p50_ms(&self) -> f64 {
        self.quantile_ms(0.50)
    }
    pub fn p95_ms(&self) -> f64 {
        self.quantile_ms(0.95)
    }
    pub fn p99_ms(&self) -> f64 {
        self.quantile_ms(0.99)
    }
    pub fn mean_ms(&self) -> f64 {
        self.micros.mean() / 1e3
    }
    pub fn max_ms(&self) -> f64 {
        self.micros.max() as f64 / 1e3
    }
    /// Successful requests per second of wall time.
    pub fn throughput(&self) -> f64 {
        (self.requests - self.errors) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    /// CPU time of this process per request, in µs: what a call costs, however busy the machine
    /// is with other work (wall-clock throughput is not).
    pub fn cpu_micros_per_call(&self) -> Option<f64> {
        let cpu = self.cpu?;
        (self.requests > 0).then(|| cpu.as_secs_f64() * 1e6 / self.requests as f64)
    }
}

/// This process's CPU time so far (user + system), from `/proc/self/stat` (Linux; `None`
/// elsewhere). Clock ticks are 100 per second on Linux, so over seconds of load the error is
/// under a percent.
pub fn process_cpu() -> Option<Duration> {
    const TICKS_PER_SECOND: u64 = 100;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold blanks; fields after it are plain numbers.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    // utime and stime are fields 14 and 15; `after_name` starts at field 3.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis(
        (utime + stime) * 1000 / TICKS_PER_SECOND,
    ))
}

fn histogram() -> Histogram<u64> {
    // 1 µs .. 60 s at 3 significant figures.
    Histogram::new_with_bounds(1, 60_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

/// Runs `call` in `concurrency` workers until `limit`. Worker `w` gets its own generator seeded
/// from `seed` and `w`, so the same seed asks for the same requests on every run.
pub async fn measure<F, Fut>(concurrency: usize, limit: Limit, seed: u64, call: F) -> Measurement
where
    F: Fn(&mut fastrand::Rng) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let call = Arc::new(call);
    let issued = Arc::new(AtomicU64::new(0));
    let cpu_before = process_cpu();
    let started = Instant::now();
    let deadline = started + limit.duration;
    let concurrency = concurrency.max(1);
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let (call, issued) = (Arc::clone(&call), Arc::clone(&issued));
            tokio::spawn(async move {
                let mut rng =
                    fastrand::Rng::with_seed(seed ^ (worker as u64).wrapping_mul(0x9E37_79B9));
                let mut micros = histogram();
                let (mut errors, mut first_error) = (0u64, None);
                let mut done = 0u64;
                while issued.fetch_add(1, Ordering::Relaxed) < limit.requests
                    && Instant::now() < deadline
                {
                    let request = call(&mut rng);
                    let sent = Instant::now();
                    let result = request.await;
                    let elapsed = sent.elapsed();
                    done += 1;
                    micros.saturating_record(
                        u64::try_from(elapsed.as_micros())
                            .unwrap_or(u64::MAX)
                            .max(1),
                    );
                    if let Err(err) = result {
                        errors += 1;
                        first_error.get_or_insert(err);
                    }
                }
                (micros, done, errors, first_error)
            })
        })
        .collect();
    let mut result = Measurement {
        requests: 0,
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
        concurrency,
        micros: histogram(),
        cpu: None,
    };
    for worker in workers {
        match worker.await {
            Ok((micros, done, errors, first_error)) => {
                result.micros.add(&micros).ok();
                result.requests += done;
                result.errors += errors;
                if result.first_error.is_none() {
                    result.first_error = first_error;
                }
            }
            Err(err) => {
                result.errors += 1;
                result
                    .first_error
                    .get_or_insert(format!("worker failed: {err}"));
            }
        }
    }
    result.elapsed = started.elapsed();
    result.cpu = cpu_before
        .zip(process_cpu())
        .map(|(before, after)| after.saturating_sub(before));
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stops_at_the_request_count_and_counts_errors() {
        let limit = Limit {
            requests: 1_000,
            duration: Duration::from_secs(60),
        };
        let result = measure(4, limit, 7, |rng| {
            let fail = rng.u32(..10) == 0;
            async move { if fail { Err("boom".to_owned()) } else { Ok(()) } }
        })
        .await;
        assert_eq!(result.requests, 1_000);
        assert_eq!(result.micros.len(), 1_000);
        assert!(result.errors > 0 && result.errors < 1_000);
        assert_eq!(result.first_error.as_deref(), Some("boom"));
        assert!(result.p50_ms() <= result.p99_ms());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stops_at_the_deadline() {
        let limit = Limit {
            requests: u64::MAX,
            duration: Duration::from_millis(50),
        };
        let result = measure(2, limit, 1, |_| async {
            tokio::task::yield_now().await;
            Ok(())
        })
        .await;
        assert!(result.requests > 0 && result.requests < u64::MAX);
        assert_eq!(result.errors, 0);
    }
}
