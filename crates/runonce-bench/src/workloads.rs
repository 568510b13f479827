//! The runonce workloads (and the optional `idempotent` baseline).

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use runonce::{Dedupe, TriggerOptions};

use crate::measure::{closed_loop, Sample};

/// The task every workload triggers.
pub(crate) const TASK: &str = "bench";

/// Where a workload's Dedupe points.
#[derive(Clone, Debug)]
pub(crate) enum Target {
    /// One Redis server.
    Url(String),
    /// A Redis Cluster, by seed URLs.
    Cluster(Vec<String>),
}

pub(crate) async fn connect(target: &Target) -> anyhow::Result<Dedupe> {
    let b = Dedupe::builder().environment("dev");
    let b = match target {
        Target::Url(u) => b.redis_url(u.clone()),
        Target::Cluster(seeds) => b.cluster(seeds.clone()),
    };
    b.build().await.context("cannot build the runonce handle")
}

/// `trigger` from `concurrency` tasks. Fresh keys, or with `duplicates`,
/// key `n / 2` for call `n`: every key is triggered twice, by two calls
/// that run at about the same time, so half the calls find a record.
pub(crate) async fn trigger(
    target: Target,
    concurrency: usize,
    duplicates: bool,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Sample> {
    let d = connect(&target).await?;
    closed_loop(concurrency, warmup, duration, move |n| {
        let d = d.clone();
        async move {
            let key = if duplicates {
                format!("dup-{}", n / 2)
            } else {
                format!("fresh-{n}")
            };
            let t = d.trigger(TASK, TriggerOptions::with_key(key)).await?;
            if t.cached && !duplicates {
                bail!("a fresh key answered cached");
            }
            Ok(1)
        }
    })
    .await
}

/// `batch_trigger` of `size` fresh keys from `callers` concurrent callers,
/// each one batch at a time; counts items.
pub(crate) async fn batch(
    target: Target,
    size: usize,
    callers: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Sample> {
    let d = connect(&target).await?;
    closed_loop(callers, warmup, duration, move |n| {
        let d = d.clone();
        async move {
            let items = (0..size)
                .map(|i| TriggerOptions::with_key(format!("batch-{n}-{i}")))
                .collect();
            let out = d.batch_trigger(TASK, items).await?;
            let n = out.len() as u64;
            for r in out {
                if r?.cached {
                    bail!("a fresh key answered cached");
                }
            }
            Ok(n)
        }
    })
    .await
}

/// `trigger` with fresh keys on the in-process store, one thread, one call
/// at a time. Every 8th call is timed, so reading the clock does not weigh
/// on the throughput.
pub(crate) async fn in_process(duration: Duration) -> anyhow::Result<Sample> {
    const TIMED_EVERY: u64 = 8;
    const CHECK_EVERY: u64 = 256;
    let d = Dedupe::in_memory("dev");
    let mut key = String::with_capacity(32);
    // Warm-up: allocator and map growth.
    for n in 0..10_000u64 {
        once(&d, (1 << 40) + n, &mut key).await?;
    }
    let mut lat_ns = Vec::with_capacity(1 << 16);
    let start = Instant::now();
    let deadline = start + duration;
    let mut n = 0u64;
    loop {
        if n % CHECK_EVERY == 0 && Instant::now() >= deadline {
            break;
        }
        let t = if n % TIMED_EVERY == 0 {
            let t0 = Instant::now();
            let t = once(&d, n, &mut key).await?;
            lat_ns.push(t0.elapsed().as_nanos() as u64);
            t
        } else {
            once(&d, n, &mut key).await?
        };
        if t.cached {
            bail!("a fresh key answered cached");
        }
        n += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    lat_ns.sort_unstable();
    Ok(Sample {
        items: n,
        secs,
        lat_ns,
    })
}

/// One in-process trigger of key `fresh-<n>`, formatted into `key`.
async fn once(d: &Dedupe, n: u64, key: &mut String) -> Result<runonce::Triggered, runonce::Error> {
    use std::fmt::Write as _;
    key.clear();
    let _ = write!(key, "fresh-{n}");
    d.trigger(TASK, TriggerOptions::with_key(key.as_str()))
        .await
}

/// The `idempotent` crate 0.3.0's Redis store (`ValkeyStore::try_insert`)
/// with fresh keys from `concurrency` tasks.
#[cfg(feature = "idempotent")]
pub(crate) async fn idempotent(
    url: String,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Sample> {
    use std::sync::Arc;

    use idempotent::fingerprint::{DefaultFingerprintStrategy, FingerprintStrategy};
    use idempotent::store::valkey::ValkeyStore;
    use idempotent::store::{IdempotencyStore, InsertResult};
    use idempotent::{IdempotencyEntry, IdempotencyKey};

    let store = Arc::new(
        ValkeyStore::new(redis::Client::open(url.as_str())?)
            .await
            .map_err(|e| anyhow::anyhow!("idempotent ValkeyStore: {e}"))?,
    );
    let fingerprint = DefaultFingerprintStrategy.compute(TASK, b"{}");
    let ttl = Duration::from_millis(crate::baseline::TTL_MS);
    closed_loop(concurrency, warmup, duration, move |n| {
        let store = store.clone();
        async move {
            let key = IdempotencyKey::new(format!("fresh-{n}"))
                .map_err(|e| anyhow::anyhow!("idempotent key: {e}"))?;
            let r = store
                .try_insert(&key, IdempotencyEntry::new(fingerprint, ttl))
                .await
                .map_err(|e| anyhow::anyhow!("idempotent try_insert: {e}"))?;
            if !matches!(r, InsertResult::Claimed { .. }) {
                bail!("a fresh key was found taken");
            }
            Ok(1)
        }
    })
    .await
}
