//! Timing machinery: closed-loop drivers, private runtimes, statistics.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// The figures of one repetition of one workload.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Figures {
    /// Operations (or items, for batches) per second.
    pub ops_per_sec: f64,
    /// Median latency of one call, µs.
    pub p50_us: f64,
    /// 99th percentile latency of one call, µs.
    pub p99_us: f64,
}

/// One timed phase: how many items were done, in how long, and the latency
/// of every timed call.
#[derive(Debug)]
pub(crate) struct Sample {
    pub items: u64,
    pub secs: f64,
    /// Latencies in ns, sorted.
    pub lat_ns: Vec<u64>,
}

impl Sample {
    pub(crate) fn figures(&self) -> Figures {
        Figures {
            ops_per_sec: if self.secs > 0.0 {
                self.items as f64 / self.secs
            } else {
                0.0
            },
            p50_us: percentile_us(&self.lat_ns, 0.50),
            p99_us: percentile_us(&self.lat_ns, 0.99),
        }
    }
}

/// Nearest-rank percentile of sorted ns latencies, in µs.
pub(crate) fn percentile_us(sorted_ns: &[u64], q: f64) -> f64 {
    if sorted_ns.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted_ns.len() as f64).ceil() as usize;
    sorted_ns[rank.clamp(1, sorted_ns.len()) - 1] as f64 / 1000.0
}

/// The median (the mean of the two middle values for an even count).
pub(crate) fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
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

/// The median of each figure over repetitions.
pub(crate) fn median_figures(reps: &[Figures]) -> Figures {
    let pick = |f: fn(&Figures) -> f64| median(&reps.iter().map(f).collect::<Vec<_>>());
    Figures {
        ops_per_sec: pick(|f| f.ops_per_sec),
        p50_us: pick(|f| f.p50_us),
        p99_us: pick(|f| f.p99_us),
    }
}

/// Runs `make()`'s future to completion on a fresh tokio runtime on its own
/// thread: `threads == 0` is a current-thread runtime, otherwise a
/// multi-thread one with that many workers. Every measurement gets a
/// runtime of its own, so the figures do not depend on the caller's.
pub(crate) fn on_runtime<T, F, Fut>(threads: usize, make: F) -> anyhow::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let handle = std::thread::Builder::new()
        .name("runonce-bench".into())
        .spawn(move || {
            let rt = if threads == 0 {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            } else {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(threads)
                    .enable_all()
                    .build()
            }
            .context("cannot build a tokio runtime")?;
            rt.block_on(make())
        })
        .context("cannot spawn the benchmark thread")?;
    match handle.join() {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Keys of warm-up calls are numbered from here, far above the measured ones.
const WARMUP_BASE: u64 = 1 << 40;

/// A closed loop: `concurrency` tasks call `op(n)` back to back, each with
/// a fresh `n` from one shared counter, until `duration` has passed.
/// `op` answers how many items the call did (1 for a single trigger).
/// A warm-up phase of the same shape runs first, unrecorded, with `n`
/// counted from [`WARMUP_BASE`].
pub(crate) async fn closed_loop<F, Fut>(
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
    op: F,
) -> anyhow::Result<Sample>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<u64>> + Send + 'static,
{
    let op = Arc::new(op);
    if !warmup.is_zero() {
        phase(concurrency, warmup, WARMUP_BASE, op.clone()).await?;
    }
    phase(concurrency, duration, 0, op).await
}

async fn phase<F, Fut>(
    concurrency: usize,
    duration: Duration,
    base: u64,
    op: Arc<F>,
) -> anyhow::Result<Sample>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<u64>> + Send + 'static,
{
    let next = Arc::new(AtomicU64::new(base));
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let op = op.clone();
            let next = next.clone();
            tokio::spawn(async move {
                let mut items = 0u64;
                let mut lat = Vec::with_capacity(4096);
                loop {
                    let t0 = Instant::now();
                    if t0 >= deadline {
                        break;
                    }
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    items += op(n).await?;
                    lat.push(t0.elapsed().as_nanos() as u64);
                }
                anyhow::Ok((items, lat))
            })
        })
        .collect();
    let mut items = 0;
    let mut lat_ns = Vec::new();
    for t in tasks {
        let (i, l) = t.await.context("a benchmark task panicked")??;
        items += i;
        lat_ns.extend(l);
    }
    let secs = start.elapsed().as_secs_f64();
    lat_ns.sort_unstable();
    Ok(Sample {
        items,
        secs,
        lat_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
        let ns: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile_us(&ns, 0.5), 50.0);
        assert_eq!(percentile_us(&ns, 0.99), 99.0);
        assert_eq!(percentile_us(&ns[..1], 0.99), 1.0);
    }
}
