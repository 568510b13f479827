//! The runonce benchmark: one run against one private `redis-server`
//! (plus, optionally, two private Redis Clusters) on loopback.
//!
//! Every figure is the median of [`BenchConfig::reps`] repetitions, and the
//! repetitions are interleaved (rep 1 of every workload, then rep 2, ...),
//! so slow drift of the machine weighs on every workload alike. The server
//! is flushed before every measurement.
//!
//! What runs:
//! - baselines: `redis-benchmark -c 50 -P 1` and `-P 16` on `EVALSHA` of a
//!   minimal claim script (`SET NX PX`, `GET` on conflict); raw redis-rs
//!   `SET NX PX` at concurrency 1 and 50;
//! - runonce: `trigger` with fresh keys at concurrency 1, 50 and 200, with
//!   50% duplicate keys at 50, `batch_trigger` of 1,000 items, and the
//!   in-process store on one thread;
//! - memory: the `INFO memory` `used_memory` delta per record over many
//!   records, for runonce and for a bare `SET <prefix>:<64-hex> <run id> PX`;
//! - cluster: `trigger` from 50 tasks and `batch_trigger` of 1,000 on a
//!   1-primary and a 3-primary cluster;
//! - optionally (cargo feature `idempotent`) the `idempotent` crate's Redis
//!   store at concurrency 50.
//!
//! Each measurement runs on a fresh tokio runtime of its own, on its own
//! thread, so the figures do not depend on the caller's runtime.
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! let cfg = runonce_bench::BenchConfig { quick: true, ..Default::default() };
//! let report = runonce_bench::run(&cfg, &|label, done, total| {
//!     eprintln!("[{done}/{total}] {label}");
//! })
//! .await?;
//! println!("{}", report.table());
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

mod baseline;
pub mod cli;
mod machine;
mod measure;
mod memory;
mod plot;
mod servers;
mod workloads;

use baseline::RbCommand;
use measure::{median, median_figures, on_runtime, Figures};
use memory::Fill;
use workloads::Target as At;

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Repetitions of every measurement; each figure is their median.
    /// Defaults to 3.
    pub reps: usize,
    /// Small sizes and short phases (a few seconds in all), for tests.
    /// Defaults to false.
    pub quick: bool,
    /// Also measure a 1-primary and a 3-primary Redis Cluster. Defaults to
    /// true.
    pub cluster: bool,
    /// Also measure the `idempotent` crate's Redis store; needs the cargo
    /// feature `idempotent`, and is noted as not included without it.
    /// Defaults to true.
    pub idempotent: bool,
    /// Worker threads of the client's tokio runtime in the Redis workloads:
    /// 0 for a current-thread runtime. Defaults to 0: on a small machine the
    /// client then leaves the other cores to `redis-server`, as
    /// `redis-benchmark` (one thread) does.
    pub client_threads: usize,
    /// Seconds per timed phase, overriding the default (1 s, or 0.1 s when
    /// quick).
    pub seconds: Option<f64>,
    /// Records written per memory measurement, overriding the default
    /// (200,000, or 2,000 when quick).
    pub memory_records: Option<u64>,
    /// Only the workloads whose label contains this text (and the memory
    /// figures only if `memory` does), for profiling one workload. Targets
    /// whose figures are missing are left out. Defaults to none: all.
    pub only: Option<String>,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            reps: 3,
            quick: false,
            cluster: true,
            idempotent: true,
            client_threads: 0,
            seconds: None,
            memory_records: None,
            only: None,
        }
    }
}

/// Sizes that follow from a config.
#[derive(Clone, Copy, Debug)]
struct Sizes {
    duration: Duration,
    warmup: Duration,
    rb_p1: u64,
    rb_p16: u64,
    records: u64,
}

impl Sizes {
    fn of(cfg: &BenchConfig) -> Sizes {
        let secs = cfg
            .seconds
            .unwrap_or(if cfg.quick { 0.1 } else { 1.0 })
            .max(0.01);
        let scale = |full: u64| {
            if cfg.quick {
                (full / 50).max(1000)
            } else {
                full
            }
        };
        Sizes {
            duration: Duration::from_secs_f64(secs),
            warmup: Duration::from_secs_f64((secs / 5.0).max(0.02)),
            rb_p1: scale(100_000),
            rb_p16: scale(400_000),
            records: cfg
                .memory_records
                .unwrap_or(if cfg.quick { 2_000 } else { 200_000 })
                .max(1),
        }
    }
}

/// The batch size of the batch workloads.
const BATCH: usize = 1000;
/// Callers of the saturating batch workload.
const BATCH_CALLERS: usize = 4;

fn one() -> usize {
    1
}
/// The concurrency of `redis-benchmark` and of the headline workloads.
const C50: usize = 50;
/// Keys per call of the claim.lua ceiling: about what a coalesced call
/// carries with 50 callers and two calls in flight.
const CLAIM_KEYS: usize = 25;

/// One workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Workload {
    /// `redis-benchmark -c 50 -P <pipeline>` on `EVALSHA` of the one-key
    /// claim script.
    RedisBenchmark {
        /// `-P`.
        pipeline: usize,
    },
    /// `redis-benchmark -c 50` on `EVALSHA` of runonce's own claim script
    /// with `keys` keys per call, as a coalesced call carries them: the
    /// server's ceiling for coalesced claims. Figures in keys.
    RedisBenchmarkClaimLua {
        /// Keys per call.
        keys: usize,
    },
    /// `redis-benchmark -c 50 -P 16` on `SET NX PX GET`: a claim in one
    /// native command, no Lua.
    RedisBenchmarkSetNxGet,
    /// Raw redis-rs `SET NX PX`, fresh keys.
    RawSet {
        /// Concurrent tasks.
        concurrency: usize,
    },
    /// runonce `trigger`, fresh keys.
    Trigger {
        /// Concurrent tasks.
        concurrency: usize,
    },
    /// runonce `trigger`, every key twice.
    TriggerDup {
        /// Concurrent tasks.
        concurrency: usize,
    },
    /// runonce `batch_trigger`, fresh keys; figures in items.
    Batch {
        /// Items per batch.
        size: usize,
        /// Callers, each sending one batch at a time (1 measures a lone
        /// caller, whose client work and server work take turns; more keep
        /// the server busy, as the `-c 50` baselines do).
        #[serde(default = "one")]
        callers: usize,
    },
    /// runonce `trigger` on the in-process store, one thread.
    InProcess,
    /// The `idempotent` crate's `ValkeyStore::try_insert`, fresh keys.
    Idempotent {
        /// Concurrent tasks.
        concurrency: usize,
    },
    /// runonce `trigger` on a Redis Cluster, fresh keys.
    ClusterTrigger {
        /// Primaries in the cluster.
        primaries: usize,
        /// Concurrent tasks.
        concurrency: usize,
    },
    /// runonce `batch_trigger` on a Redis Cluster; figures in items.
    ClusterBatch {
        /// Primaries in the cluster.
        primaries: usize,
        /// Items per batch.
        size: usize,
    },
}

fn primaries_label(p: usize) -> String {
    if p == 1 {
        "1 primary".to_owned()
    } else {
        format!("{p} primaries")
    }
}

impl Workload {
    /// The workload's name in the table (without its concurrency).
    pub fn name(&self) -> String {
        match *self {
            Workload::RedisBenchmark { pipeline } => {
                format!("redis-benchmark EVALSHA -P {pipeline}")
            }
            Workload::RedisBenchmarkClaimLua { keys } => {
                format!("redis-benchmark EVALSHA claim.lua, {keys} keys/call, keys")
            }
            Workload::RedisBenchmarkSetNxGet => "redis-benchmark SET NX PX GET -P 16".to_owned(),
            Workload::RawSet { .. } => "redis-rs SET NX PX".to_owned(),
            Workload::Trigger { .. } => "runonce trigger, fresh keys".to_owned(),
            Workload::TriggerDup { .. } => "runonce trigger, 50% duplicates".to_owned(),
            Workload::Batch { size, callers: 1 } => {
                format!("runonce batch_trigger({size}), items")
            }
            Workload::Batch { size, callers } => {
                format!("runonce batch_trigger({size}), {callers} callers, items")
            }
            Workload::InProcess => "runonce in-process store, 1 thread".to_owned(),
            Workload::Idempotent { .. } => "idempotent 0.3.0 try_insert".to_owned(),
            Workload::ClusterTrigger { primaries, .. } => {
                format!("cluster {}: trigger", primaries_label(primaries))
            }
            Workload::ClusterBatch { primaries, size } => format!(
                "cluster {}: batch_trigger({size}), items",
                primaries_label(primaries)
            ),
        }
    }

    /// Concurrent callers (1 for a batch loop and the in-process store).
    pub fn concurrency(&self) -> usize {
        match *self {
            Workload::RedisBenchmark { .. }
            | Workload::RedisBenchmarkClaimLua { .. }
            | Workload::RedisBenchmarkSetNxGet => C50,
            Workload::RawSet { concurrency }
            | Workload::Trigger { concurrency }
            | Workload::TriggerDup { concurrency }
            | Workload::Idempotent { concurrency }
            | Workload::ClusterTrigger { concurrency, .. } => concurrency,
            Workload::Batch { callers, .. } => callers,
            Workload::InProcess | Workload::ClusterBatch { .. } => 1,
        }
    }

    /// The workload this one's ops/s ratio is taken against.
    fn baseline(&self) -> Option<Workload> {
        let p16 = Workload::RedisBenchmark { pipeline: 16 };
        match *self {
            Workload::Trigger { concurrency: 1 } => Some(Workload::RawSet { concurrency: 1 }),
            Workload::Trigger { .. } | Workload::TriggerDup { .. } | Workload::Batch { .. } => {
                Some(p16)
            }
            Workload::ClusterTrigger {
                primaries,
                concurrency,
            } if primaries > 1 => Some(Workload::ClusterTrigger {
                primaries: 1,
                concurrency,
            }),
            Workload::ClusterBatch { primaries, size } if primaries > 1 => {
                Some(Workload::ClusterBatch { primaries: 1, size })
            }
            _ => None,
        }
    }

    fn label(&self) -> String {
        format!("{} (c={})", self.name(), self.concurrency())
    }
}

/// One line of the report: one workload's medians.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    /// Which workload.
    pub id: Workload,
    /// Its name.
    pub workload: String,
    /// Concurrent callers.
    pub concurrency: usize,
    /// Calls per second (items per second for batches).
    pub ops_per_sec: f64,
    /// Median latency of one call, µs (a whole batch, for batches).
    pub p50_us: f64,
    /// 99th percentile latency of one call, µs.
    pub p99_us: f64,
    /// The workload `ratio` is taken against, with its concurrency.
    pub baseline: Option<String>,
    /// `ops_per_sec` over the baseline's.
    pub ratio: Option<f64>,
}

/// Bytes per live record, from the `used_memory` delta over `records`
/// records (medians over the repetitions).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MemoryFigures {
    /// Records written per measurement.
    pub records: u64,
    /// A runonce record from a trigger without a payload.
    pub runonce_bytes_per_record: f64,
    /// A runonce record from a trigger with a payload (with its payload
    /// fingerprint).
    pub runonce_payload_bytes_per_record: f64,
    /// A bare `SET runonce:<64-hex> <25-char run id> PX <ttl>`.
    pub bare_set_bytes_per_record: f64,
    /// `runonce_bytes_per_record / bare_set_bytes_per_record`.
    pub ratio: f64,
    /// `runonce_payload_bytes_per_record / bare_set_bytes_per_record`.
    pub payload_ratio: f64,
}

/// One target of the performance issue, checked against the run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Target {
    /// What is compared.
    pub name: String,
    /// The measured value (a ratio, or ops/s for an absolute target).
    pub value: f64,
    /// The goal.
    pub goal: f64,
    /// The stretch goal, if any.
    pub stretch: Option<f64>,
    /// Whether higher values are better (else lower ones are).
    pub higher_is_better: bool,
    /// Whether the goal is met.
    pub met: bool,
    /// Whether the stretch goal is met, if there is one.
    pub stretch_met: Option<bool>,
}

impl Target {
    fn new(name: impl Into<String>, value: f64, goal: f64, higher_is_better: bool) -> Target {
        let met = if higher_is_better {
            value >= goal
        } else {
            value <= goal
        };
        Target {
            name: name.into(),
            value,
            goal,
            stretch: None,
            higher_is_better,
            met,
            stretch_met: None,
        }
    }

    fn stretch(mut self, stretch: f64) -> Target {
        self.stretch = Some(stretch);
        self.stretch_met = Some(if self.higher_is_better {
            self.value >= stretch
        } else {
            self.value <= stretch
        });
        self
    }
}

/// What a run measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// The machine, in one line: cores, CPU, memory, kernel, Redis.
    pub machine: String,
    /// Cores (`nproc`).
    pub cores: usize,
    /// CPU model, from /proc/cpuinfo.
    pub cpu: String,
    /// `redis_version` of the private server.
    pub redis_version: String,
    /// Repetitions per figure.
    pub reps: usize,
    /// Whether this was a quick run (small sizes: not for publishing).
    pub quick: bool,
    /// Seconds per timed phase.
    pub seconds_per_phase: f64,
    /// Client runtime worker threads (0: current-thread runtime).
    pub client_threads: usize,
    /// One row per workload.
    pub rows: Vec<Row>,
    /// Bytes per record.
    pub memory: MemoryFigures,
    /// The issue's targets, met or not.
    pub targets: Vec<Target>,
    /// Anything left out, and why.
    pub notes: Vec<String>,
    /// Wall-clock seconds the run took.
    pub elapsed_secs: f64,
}

impl BenchConfig {
    /// The workloads measured on the single server, in order.
    fn single_workloads(&self) -> Vec<Workload> {
        let mut w = vec![
            Workload::RedisBenchmark { pipeline: 1 },
            Workload::RedisBenchmark { pipeline: 16 },
            Workload::RedisBenchmarkClaimLua { keys: CLAIM_KEYS },
            Workload::RedisBenchmarkSetNxGet,
            Workload::RawSet { concurrency: 1 },
            Workload::RawSet { concurrency: C50 },
            Workload::Trigger { concurrency: 1 },
            Workload::Trigger { concurrency: C50 },
            Workload::Trigger { concurrency: 200 },
            Workload::TriggerDup { concurrency: C50 },
            Workload::Batch {
                size: BATCH,
                callers: 1,
            },
            Workload::Batch {
                size: BATCH,
                callers: BATCH_CALLERS,
            },
            Workload::InProcess,
        ];
        if self.idempotent && cfg!(feature = "idempotent") {
            w.push(Workload::Idempotent { concurrency: C50 });
        }
        w.retain(|w| self.selected(&w.label()));
        w
    }

    /// The workloads measured on the clusters, in order.
    fn cluster_workloads(&self) -> Vec<Workload> {
        if !self.cluster {
            return Vec::new();
        }
        [1, 3]
            .into_iter()
            .flat_map(|primaries| {
                [
                    Workload::ClusterTrigger {
                        primaries,
                        concurrency: C50,
                    },
                    Workload::ClusterBatch {
                        primaries,
                        size: BATCH,
                    },
                ]
            })
            .filter(|w| self.selected(&w.label()))
            .collect()
    }

    /// Every workload a run with this config reports, in table order.
    pub fn workloads(&self) -> Vec<Workload> {
        let mut w = self.single_workloads();
        w.extend(self.cluster_workloads());
        w
    }

    fn selected(&self, label: &str) -> bool {
        self.only.as_deref().is_none_or(|o| label.contains(o))
    }
}

/// Reports progress as (label of the step starting, steps done, steps in
/// all).
struct Progress<'a> {
    f: &'a mut dyn FnMut(&str, u64, u64),
    done: u64,
    total: u64,
}

impl Progress<'_> {
    fn step(&mut self, label: &str) {
        (self.f)(label, self.done, self.total);
        self.done += 1;
    }
}

/// Runs the benchmark (see the crate docs). `progress` is called with the
/// label of each step as it starts, the steps done and the steps in all,
/// and a last time with `done == total`.
///
/// Call it inside a tokio runtime of any flavor: the measurements run on
/// threads and runtimes of their own (started with `spawn_blocking`), and
/// this future only relays progress.
pub async fn run(cfg: &BenchConfig, progress: &dyn Fn(&str, u64, u64)) -> anyhow::Result<Report> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, u64, u64)>();
    let cfg = cfg.clone();
    let job = tokio::task::spawn_blocking(move || {
        run_blocking(&cfg, &mut |label, done, total| {
            let _ = tx.send((label.to_owned(), done, total));
        })
    });
    while let Some((label, done, total)) = rx.recv().await {
        progress(&label, done, total);
    }
    job.await.context("the benchmark thread panicked")?
}

/// [`run`] without a runtime: blocks the calling thread. Do not call it from
/// inside an async task.
pub fn run_blocking(
    cfg: &BenchConfig,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> anyhow::Result<Report> {
    let started = Instant::now();
    servers::check_binaries(cfg.cluster)?;
    let sizes = Sizes::of(cfg);
    let reps = cfg.reps.max(1);
    let single = cfg.single_workloads();
    let clustered = cfg.cluster_workloads();
    let fills: &[Fill] = if cfg.selected("memory") {
        &[Fill::BareSet, Fill::Runonce, Fill::RunonceWithPayload]
    } else {
        &[]
    };
    let with_clusters = !clustered.is_empty();
    let setup_steps = 1 + if with_clusters { 2 } else { 0 };
    let per_rep = single.len() + clustered.len() + fills.len();
    let mut p = Progress {
        f: progress,
        done: 0,
        total: (setup_steps + per_rep * reps) as u64,
    };

    p.step("starting redis-server");
    let server = runonce_tests::RedisServer::start();
    let url = server.url();
    let port = server.port();
    let sha = baseline::load_script(&url, baseline::CLAIM_ONE)?;
    let claim_sha = baseline::load_script(&url, baseline::CLAIM_LUA)?;
    let redis_version = servers::info_field(&servers::info(&url, "server")?, "redis_version")
        .unwrap_or("unknown")
        .to_owned();
    let mut clusters: HashMap<usize, servers::Cluster> = HashMap::new();
    if with_clusters {
        for primaries in [1, 3] {
            p.step(&format!(
                "starting a cluster of {}",
                primaries_label(primaries)
            ));
            clusters.insert(primaries, servers::Cluster::start(primaries)?);
        }
    }

    let mut samples: HashMap<Workload, Vec<Figures>> = HashMap::new();
    let mut memory: HashMap<&'static str, Vec<f64>> = HashMap::new();
    let ctx = Ctx {
        server_us_per_item: Default::default(),
        url: url.clone(),
        port,
        sha,
        claim_sha,
        sizes,
        threads: cfg.client_threads,
    };
    for rep in 1..=reps {
        for &w in single.iter().chain(&clustered) {
            p.step(&format!("rep {rep}/{reps}: {}", w.label()));
            let figures = match w {
                Workload::ClusterTrigger { primaries, .. }
                | Workload::ClusterBatch { primaries, .. } => {
                    let c = &clusters[&primaries];
                    c.flushall()?;
                    ctx.measure(w, At::Cluster(c.seeds.clone()))
                }
                _ => {
                    servers::flushall(&url)?;
                    ctx.measure(w, At::Url(url.clone()))
                }
            }
            .with_context(|| format!("workload {}", w.label()))?;
            samples.entry(w).or_default().push(figures);
        }
        for &fill in fills {
            p.step(&format!(
                "rep {rep}/{reps}: memory, {} records, {fill:?}",
                sizes.records
            ));
            let b = memory::bytes_per_record(&url, fill, sizes.records)?;
            memory.entry(fill_key(fill)).or_default().push(b);
        }
    }
    servers::flushall(&url)?;
    drop(clusters);
    drop(server);

    let medians: HashMap<Workload, Figures> = samples
        .iter()
        .map(|(w, reps)| (*w, median_figures(reps)))
        .collect();
    let rows: Vec<Row> = cfg
        .workloads()
        .into_iter()
        .map(|w| {
            let f = medians[&w];
            let base = w.baseline().filter(|b| medians.contains_key(b));
            Row {
                id: w,
                workload: w.name(),
                concurrency: w.concurrency(),
                ops_per_sec: f.ops_per_sec,
                p50_us: f.p50_us,
                p99_us: f.p99_us,
                baseline: base.map(|b| b.label()),
                ratio: base.map(|b| f.ops_per_sec / medians[&b].ops_per_sec),
            }
        })
        .collect();
    let m = |fill| memory.get(fill_key(fill)).map_or(0.0, |v| median(v));
    let bare = m(Fill::BareSet);
    let mem = MemoryFigures {
        records: if fills.is_empty() { 0 } else { sizes.records },
        runonce_bytes_per_record: m(Fill::Runonce),
        runonce_payload_bytes_per_record: m(Fill::RunonceWithPayload),
        bare_set_bytes_per_record: bare,
        ratio: m(Fill::Runonce) / bare,
        payload_ratio: m(Fill::RunonceWithPayload) / bare,
    };
    let mut notes = Vec::new();
    if !cfg!(feature = "idempotent") {
        notes.push(
            "The idempotent 0.3.0 baseline is not included: this build lacks the cargo feature \
             `idempotent` (cargo run --release -p runonce-bench --features idempotent)."
                .to_owned(),
        );
    } else if !cfg.idempotent {
        notes.push("The idempotent 0.3.0 baseline was turned off.".to_owned());
    }
    if !cfg.cluster {
        notes.push("The cluster workloads were turned off.".to_owned());
    }
    if cfg.quick {
        notes.push("Quick run: small sizes and short phases; not for publishing.".to_owned());
    }
    if let Some(only) = &cfg.only {
        notes.push(format!("Only the workloads matching {only:?} ran."));
    }
    let p16 = medians.get(&Workload::RedisBenchmark { pipeline: 16 });
    let per_item = ctx.server_us_per_item.into_inner().expect("not poisoned");
    for w in rows.iter().map(|r| r.id) {
        if let (Some(us), Some(p16)) = (per_item.get(&w), p16) {
            notes.push(format!(
                "{}: the claim script ran {:.2} µs per item on the server (INFO commandstats, \
                 median); 1.5x redis-benchmark -P 16 allows {:.2} µs per item for the whole call.",
                w.label(),
                median(us),
                1e6 / (1.5 * p16.ops_per_sec)
            ));
        }
    }
    let targets = targets(&medians, &mem);
    let (cores, cpu, line) = machine::describe(&redis_version);
    p.step("done");
    Ok(Report {
        machine: line,
        cores,
        cpu,
        redis_version,
        reps,
        quick: cfg.quick,
        seconds_per_phase: sizes.duration.as_secs_f64(),
        client_threads: cfg.client_threads,
        rows,
        memory: mem,
        targets,
        notes,
        elapsed_secs: started.elapsed().as_secs_f64(),
    })
}

fn fill_key(fill: Fill) -> &'static str {
    match fill {
        Fill::Runonce => "runonce",
        Fill::RunonceWithPayload => "runonce+payload",
        Fill::BareSet => "bare",
    }
}

/// What one measurement needs.
struct Ctx {
    /// Server µs per item inside the claim script, per repetition of each
    /// single-server batch workload.
    server_us_per_item: std::sync::Mutex<HashMap<Workload, Vec<f64>>>,
    url: String,
    port: u16,
    sha: String,
    claim_sha: String,
    sizes: Sizes,
    threads: usize,
}

impl Ctx {
    fn measure(&self, w: Workload, at: At) -> anyhow::Result<Figures> {
        let Sizes {
            duration, warmup, ..
        } = self.sizes;
        let url = self.url.clone();
        let threads = self.threads;
        let sample = match w {
            Workload::RedisBenchmark { pipeline } => {
                let n = if pipeline == 1 {
                    self.sizes.rb_p1
                } else {
                    self.sizes.rb_p16
                };
                let cmd = RbCommand::ClaimOne { sha: &self.sha };
                return baseline::redis_benchmark(self.port, C50, pipeline, n, cmd);
            }
            Workload::RedisBenchmarkClaimLua { keys } => {
                let cmd = RbCommand::ClaimLua {
                    sha: &self.claim_sha,
                    keys,
                };
                let calls = (self.sizes.rb_p16 / keys as u64).max(100);
                let f = baseline::redis_benchmark(self.port, C50, 1, calls, cmd)?;
                return Ok(Figures {
                    ops_per_sec: f.ops_per_sec * keys as f64,
                    ..f
                });
            }
            Workload::RedisBenchmarkSetNxGet => {
                let cmd = RbCommand::SetNxGet;
                return baseline::redis_benchmark(self.port, C50, 16, self.sizes.rb_p16, cmd);
            }
            Workload::RawSet { concurrency } => on_runtime(threads, move || {
                baseline::raw_set(url, concurrency, warmup, duration)
            })?,
            Workload::Trigger { concurrency } | Workload::ClusterTrigger { concurrency, .. } => {
                on_runtime(threads, move || {
                    workloads::trigger(at, concurrency, false, warmup, duration)
                })?
            }
            Workload::TriggerDup { concurrency } => on_runtime(threads, move || {
                workloads::trigger(at, concurrency, true, warmup, duration)
            })?,
            Workload::Batch { size, callers } => {
                let before = servers::script_stats(&url)?;
                let sample = on_runtime(threads, move || {
                    workloads::batch(at, size, callers, warmup, duration)
                })?;
                let after = servers::script_stats(&url)?;
                if let Some(us) = after.us_per_call_since(&before) {
                    self.server_us_per_item
                        .lock()
                        .expect("not poisoned")
                        .entry(w)
                        .or_default()
                        .push(us / size as f64);
                }
                sample
            }
            Workload::ClusterBatch { size, .. } => on_runtime(threads, move || {
                workloads::batch(at, size, 1, warmup, duration)
            })?,
            Workload::InProcess => on_runtime(0, move || workloads::in_process(duration))?,
            #[cfg(feature = "idempotent")]
            Workload::Idempotent { concurrency } => on_runtime(threads, move || {
                workloads::idempotent(url, concurrency, warmup, duration)
            })?,
            #[cfg(not(feature = "idempotent"))]
            Workload::Idempotent { .. } => {
                anyhow::bail!("built without the cargo feature `idempotent`")
            }
        };
        if sample.items == 0 {
            anyhow::bail!("no call finished");
        }
        Ok(sample.figures())
    }
}

fn targets(m: &HashMap<Workload, Figures>, mem: &MemoryFigures) -> Vec<Target> {
    let get = |w: Workload| m.get(&w).copied();
    let p16 = get(Workload::RedisBenchmark { pipeline: 16 });
    let mut out = Vec::new();
    if let (Some(t), Some(b)) = (get(Workload::Trigger { concurrency: C50 }), p16) {
        out.push(
            Target::new(
                "trigger from 50 tasks / redis-benchmark -c 50 -P 16 EVALSHA, ops/s",
                t.ops_per_sec / b.ops_per_sec,
                1.0,
                true,
            )
            .stretch(1.5),
        );
    }
    for (callers, name) in [
        (
            1,
            "batch_trigger(1000) items/s, 1 caller / redis-benchmark -P 16 EVALSHA ops/s",
        ),
        (
            BATCH_CALLERS,
            "batch_trigger(1000) items/s, 4 callers / redis-benchmark -P 16 EVALSHA ops/s",
        ),
    ] {
        if let (Some(t), Some(b)) = (
            get(Workload::Batch {
                size: BATCH,
                callers,
            }),
            p16,
        ) {
            out.push(Target::new(name, t.ops_per_sec / b.ops_per_sec, 1.5, true));
        }
    }
    if let (Some(t), Some(r)) = (
        get(Workload::Trigger { concurrency: 1 }),
        get(Workload::RawSet { concurrency: 1 }),
    ) {
        out.push(Target::new(
            "concurrency 1, p50: trigger / redis-rs SET NX PX",
            t.p50_us / r.p50_us,
            1.3,
            false,
        ));
        out.push(Target::new(
            "concurrency 1, p99: trigger / redis-rs SET NX PX",
            t.p99_us / r.p99_us,
            1.5,
            false,
        ));
    }
    if mem.records > 0 {
        out.push(
            Target::new(
                "bytes per record (no payload) / bare SET record",
                mem.ratio,
                1.1,
                false,
            )
            .stretch(1.0),
        );
        out.push(
            Target::new(
                "bytes per record (with payload fingerprint) / bare SET record",
                mem.payload_ratio,
                1.1,
                false,
            )
            .stretch(1.0),
        );
    }
    if let Some(f) = get(Workload::InProcess) {
        out.push(Target::new(
            "in-process store, fresh-key triggers/s on one thread",
            f.ops_per_sec,
            1_000_000.0,
            true,
        ));
    }
    if let (Some(t), Some(i)) = (
        get(Workload::Trigger { concurrency: C50 }),
        get(Workload::Idempotent { concurrency: C50 }),
    ) {
        out.push(Target::new(
            "trigger from 50 tasks / idempotent 0.3.0 try_insert from 50 tasks",
            t.ops_per_sec / i.ops_per_sec,
            1.5,
            true,
        ));
    }
    for (name, one, three) in [
        (
            "cluster trigger from 50 tasks: 3 primaries / 1 primary",
            Workload::ClusterTrigger {
                primaries: 1,
                concurrency: C50,
            },
            Workload::ClusterTrigger {
                primaries: 3,
                concurrency: C50,
            },
        ),
        (
            "cluster batch_trigger(1000): 3 primaries / 1 primary",
            Workload::ClusterBatch {
                primaries: 1,
                size: BATCH,
            },
            Workload::ClusterBatch {
                primaries: 3,
                size: BATCH,
            },
        ),
    ] {
        if let (Some(a), Some(b)) = (get(one), get(three)) {
            out.push(Target::new(name, b.ops_per_sec / a.ops_per_sec, 1.0, true));
        }
    }
    out
}

fn thousands(v: f64) -> String {
    let n = v.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl Report {
    /// "2 cores" or similar, for captions.
    fn cores_label(&self) -> String {
        if self.cores == 1 {
            "1 core".to_owned()
        } else {
            format!("{} cores", self.cores)
        }
    }

    /// The report as a plain-text table: rows, memory, targets, notes.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "machine: {}", self.machine);
        let _ = writeln!(
            s,
            "median of {} repetition(s), {:.2} s per timed phase, client runtime: {}",
            self.reps,
            self.seconds_per_phase,
            if self.client_threads == 0 {
                "current-thread".to_owned()
            } else {
                format!("{} worker threads", self.client_threads)
            }
        );
        let _ = writeln!(s);
        let w = self
            .rows
            .iter()
            .map(|r| r.workload.chars().count())
            .max()
            .unwrap_or(8)
            .max(8);
        let bw = self
            .rows
            .iter()
            .filter_map(|r| r.baseline.as_ref().map(|b| b.chars().count()))
            .max()
            .unwrap_or(8)
            .max(8);
        let _ = writeln!(
            s,
            "{:<w$}  {:>5}  {:>11}  {:>9}  {:>9}  {:<bw$}  {:>6}",
            "workload", "conc", "ops/s", "p50 µs", "p99 µs", "baseline", "ratio"
        );
        let _ = writeln!(s, "{}", "-".repeat(w + bw + 55));
        for r in &self.rows {
            let _ = writeln!(
                s,
                "{:<w$}  {:>5}  {:>11}  {:>9.1}  {:>9.1}  {:<bw$}  {:>6}",
                r.workload,
                r.concurrency,
                thousands(r.ops_per_sec),
                r.p50_us,
                r.p99_us,
                r.baseline.as_deref().unwrap_or("-"),
                r.ratio.map(|x| format!("{x:.2}x")).unwrap_or("-".into()),
            );
        }
        let m = &self.memory;
        if m.records > 0 {
            let _ = writeln!(s);
            let _ = writeln!(
                s,
                "memory (used_memory delta over {} records):",
                thousands(m.records as f64)
            );
            let _ = writeln!(
                s,
                "  bare SET <prefix>:<64-hex> <25-char run id> PX   {:>7.1} B/record",
                m.bare_set_bytes_per_record
            );
            let _ = writeln!(
                s,
                "  runonce record, no payload                      {:>7.1} B/record  {:.2}x",
                m.runonce_bytes_per_record, m.ratio
            );
            let _ = writeln!(
                s,
                "  runonce record, with payload fingerprint        {:>7.1} B/record  {:.2}x",
                m.runonce_payload_bytes_per_record, m.payload_ratio
            );
        }
        let _ = writeln!(s);
        let _ = writeln!(s, "targets:");
        for t in &self.targets {
            let op = if t.higher_is_better { ">=" } else { "<=" };
            let fmt = |v: f64| {
                if v >= 1000.0 {
                    thousands(v)
                } else {
                    format!("{v:.2}")
                }
            };
            let stretch = match (t.stretch, t.stretch_met) {
                (Some(x), Some(met)) => format!(
                    "; stretch {op} {}: {}",
                    fmt(x),
                    if met { "met" } else { "missed" }
                ),
                _ => String::new(),
            };
            let _ = writeln!(
                s,
                "  [{}] {}: {} (goal {op} {}{stretch})",
                if t.met { "met" } else { "MISSED" },
                t.name,
                fmt(t.value),
                fmt(t.goal),
            );
        }
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        let _ = writeln!(s, "run took {:.1} s", self.elapsed_secs);
        s
    }

    /// A report printed by [`Report::json`], read back (to re-render its
    /// table or plot).
    pub fn from_json(text: &str) -> anyhow::Result<Report> {
        serde_json::from_str(text).context("not a runonce-bench JSON report")
    }

    /// The figures as pretty-printed JSON.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// An SVG plot (plotters) of ops/s against concurrency for runonce and
    /// the baselines.
    pub fn svg(&self) -> String {
        plot::svg(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1234567.0), "1,234,567");
    }

    #[test]
    fn every_workload_has_a_distinct_label() {
        let cfg = BenchConfig::default();
        let labels: std::collections::HashSet<String> =
            cfg.workloads().iter().map(Workload::label).collect();
        assert_eq!(labels.len(), cfg.workloads().len());
    }
}
