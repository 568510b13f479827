//! One demo worker: triggers keys `0..K` in its own shuffled order, `R`
//! passes, with a bounded number of triggers in flight, and reports every
//! answer.
//!
//! The same loop ([`drive`]) runs inside a worker *process* (the hidden
//! `runonce __worker` subcommand, which `runonce demo` starts once per
//! worker) and inside a worker *thread* of the in-process fallback.
//!
//! A worker process reports on stdout, one line per event (flushed at least
//! every [`FLUSH_EVERY`], so the parent's progress bar moves live):
//!
//! ```text
//! t <key index> <cached: 0|1> <latency µs> <run id>     one answer
//! e <key index> <error kind> <message>                  a trigger that failed
//! done <answers>                                        the end, all went through
//! fatal <message>                                       the worker could not run
//! ```

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use runonce::{Dedupe, Error, IdempotencyKey, Scope, TriggerOptions, Ttl};

use crate::cli::{Global, WorkerArgs};
use crate::commands;

/// How often a worker process flushes its report lines at the latest.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_millis(50);

/// How many times a trigger whose outcome is unknown (a backend error) is
/// retried, with the same candidate run ID.
const RETRIES: u32 = 2;

/// What one worker does.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// The task triggered.
    pub(crate) task: String,
    /// Keys `0..keys`.
    pub(crate) keys: u32,
    /// Passes over the keys.
    pub(crate) repeat: u32,
    /// Seed of the worker's shuffles.
    pub(crate) seed: u64,
    /// Triggers in flight at once.
    pub(crate) in_flight: u32,
    /// Window of the records.
    pub(crate) ttl: Ttl,
}

/// One event of a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Report {
    /// An answer to one trigger.
    Answer {
        /// Which key.
        key: u32,
        /// The run that owns it.
        run_id: String,
        /// False when this trigger created the run.
        cached: bool,
        /// How long the trigger took, retries included.
        latency_us: u64,
    },
    /// A trigger that failed.
    Failed {
        /// Which key.
        key: u32,
        /// The error kind, e.g. `timeout`.
        kind: String,
        /// The error message.
        message: String,
    },
    /// The worker finished; this many answers went out.
    Done(u64),
    /// The worker could not run at all.
    Fatal(String),
}

impl Report {
    /// The report as one line of the worker protocol (without newline).
    pub(crate) fn to_line(&self) -> String {
        match self {
            Report::Answer {
                key,
                run_id,
                cached,
                latency_us,
            } => format!("t {key} {} {latency_us} {run_id}", u8::from(*cached)),
            Report::Failed { key, kind, message } => {
                format!("e {key} {kind} {}", one_line(message))
            }
            Report::Done(n) => format!("done {n}"),
            Report::Fatal(m) => format!("fatal {}", one_line(m)),
        }
    }

    /// Parses one line of the worker protocol.
    pub(crate) fn parse(line: &str) -> Option<Report> {
        let (tag, rest) = line.split_once(' ')?;
        match tag {
            "t" => {
                let mut it = rest.splitn(4, ' ');
                let key = it.next()?.parse().ok()?;
                let cached = match it.next()? {
                    "0" => false,
                    "1" => true,
                    _ => return None,
                };
                let latency_us = it.next()?.parse().ok()?;
                let run_id = it.next()?.to_owned();
                Some(Report::Answer {
                    key,
                    run_id,
                    cached,
                    latency_us,
                })
            }
            "e" => {
                let mut it = rest.splitn(3, ' ');
                Some(Report::Failed {
                    key: it.next()?.parse().ok()?,
                    kind: it.next()?.to_owned(),
                    message: it.next().unwrap_or("").to_owned(),
                })
            }
            "done" => Some(Report::Done(rest.parse().ok()?)),
            "fatal" => Some(Report::Fatal(rest.to_owned())),
            _ => None,
        }
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// The demo's idempotency key number `i`: parts `["demo", "key-<i>"]`,
/// Global scope, the same in every worker.
pub(crate) fn demo_key(i: u32) -> IdempotencyKey {
    IdempotencyKey::create(["demo".to_owned(), format!("key-{i}")], Scope::Global)
        .expect("demo keys are valid")
}

/// SplitMix64: a small, well-mixed generator for the shuffles (the demo
/// needs different orders per worker, not cryptographic randomness).
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Fisher–Yates shuffle.
    pub(crate) fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

/// A random seed from the standard library's per-process random hasher
/// keys, the clock and the process ID.
pub(crate) fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// The order a worker triggers keys in: `repeat` passes, each a fresh
/// shuffle of `0..keys`.
pub(crate) fn order(keys: u32, repeat: u32, seed: u64) -> Vec<u32> {
    let mut rng = SplitMix64::new(seed);
    let mut out = Vec::with_capacity(keys as usize * repeat as usize);
    for _ in 0..repeat {
        let mut pass: Vec<u32> = (0..keys).collect();
        rng.shuffle(&mut pass);
        out.extend(pass);
    }
    out
}

/// Runs one worker's plan against `dedupe`, handing a [`Report`] per
/// trigger and a final [`Report::Done`] to `sink` (which answers false when
/// nobody listens any more).
///
/// `plan.in_flight` tasks share one cursor over the worker's order, so that
/// many triggers are in flight at once. A trigger that fails with an
/// unknown outcome is retried with the same candidate run ID (the claim is
/// re-entrant, so a retry of a claim that did go through answers
/// `cached: false` again, as it should).
pub(crate) async fn drive<S>(dedupe: Dedupe, plan: Plan, sink: S)
where
    S: Fn(Report) -> bool + Clone + Send + Sync + 'static,
{
    let order = Arc::new(order(plan.keys, plan.repeat, plan.seed));
    let keys: Arc<Vec<IdempotencyKey>> = Arc::new((0..plan.keys).map(demo_key).collect());
    let cursor = Arc::new(AtomicUsize::new(0));
    let task: Arc<str> = plan.task.into();
    let mut handles = Vec::new();
    for _ in 0..plan.in_flight.max(1) {
        let (dedupe, order, keys, cursor, task, sink) = (
            dedupe.clone(),
            order.clone(),
            keys.clone(),
            cursor.clone(),
            task.clone(),
            sink.clone(),
        );
        let ttl = plan.ttl;
        handles.push(tokio::spawn(async move {
            let mut answered = 0u64;
            loop {
                let n = cursor.fetch_add(1, Ordering::Relaxed);
                let Some(&k) = order.get(n) else { break };
                let report = trigger_once(&dedupe, &task, k, keys[k as usize], ttl).await;
                if matches!(report, Report::Answer { .. }) {
                    answered += 1;
                }
                if !sink(report) {
                    break;
                }
            }
            answered
        }));
    }
    let mut answered = 0;
    for h in handles {
        match h.await {
            Ok(n) => answered += n,
            Err(e) => {
                sink(Report::Fatal(format!("worker task failed: {e}")));
                return;
            }
        }
    }
    sink(Report::Done(answered));
}

async fn trigger_once(
    dedupe: &Dedupe,
    task: &str,
    index: u32,
    key: IdempotencyKey,
    ttl: Ttl,
) -> Report {
    let candidate = runonce::mint_run_id();
    let start = Instant::now();
    let mut tries = 0;
    loop {
        let opts = TriggerOptions::with_key(key)
            .ttl(ttl)
            .run_id(candidate.clone());
        match dedupe.trigger(task, opts).await {
            Ok(t) => {
                return Report::Answer {
                    key: index,
                    run_id: t.run_id,
                    cached: t.cached,
                    latency_us: start.elapsed().as_micros() as u64,
                }
            }
            Err(e) if e.is_retryable() && tries < RETRIES => tries += 1,
            Err(e) => return failed(index, &e),
        }
    }
}

fn failed(key: u32, e: &Error) -> Report {
    Report::Failed {
        key,
        kind: e.kind().to_owned(),
        message: e.to_string(),
    }
}

/// `runonce __worker`: connects, runs [`drive`] on a runtime thread, and
/// writes its reports to stdout as they come.
pub(crate) fn run_process(g: &Global, a: &WorkerArgs) -> std::process::ExitCode {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
    let mut emit = |r: &Report| writeln!(out, "{}", r.to_line()).and_then(|()| out.flush());
    let ttl = match a.ttl.parse::<Ttl>() {
        Ok(t) => t,
        Err(e) => {
            let _ = emit(&Report::Fatal(e.to_string()));
            return std::process::ExitCode::from(2);
        }
    };
    let plan = Plan {
        task: a.task.clone(),
        keys: a.keys,
        repeat: a.repeat,
        seed: a.seed,
        in_flight: a.in_flight,
        ttl,
    };
    let (tx, rx) = mpsc::channel();
    let g = g.clone();
    let runner = std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = tx.send(Report::Fatal(format!("cannot start the runtime: {e}")));
                return;
            }
        };
        rt.block_on(async move {
            // The parent checked the server (and its eviction policy) already.
            match commands::connect(&g, false).await {
                Ok(d) => drive(d, plan, move |r| tx.send(r).is_ok()).await,
                Err(e) => {
                    let _ = tx.send(Report::Fatal(e.message));
                }
            }
        });
    });

    let mut ok = false;
    let mut last_flush = Instant::now();
    loop {
        match rx.recv_timeout(FLUSH_EVERY) {
            Ok(r) => {
                ok = matches!(r, Report::Done(_));
                let line = r.to_line();
                if writeln!(out, "{line}").is_err() {
                    return std::process::ExitCode::FAILURE;
                }
                if last_flush.elapsed() >= FLUSH_EVERY {
                    let _ = out.flush();
                    last_flush = Instant::now();
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                let _ = out.flush();
                last_flush = Instant::now();
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    let _ = out.flush();
    let _ = runner.join();
    if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        for r in [
            Report::Answer {
                key: 7,
                run_id: "run_01abc".into(),
                cached: true,
                latency_us: 1234,
            },
            Report::Failed {
                key: 3,
                kind: "timeout".into(),
                message: "backend at 127.0.0.1:1 timed out".into(),
            },
            Report::Done(42),
            Report::Fatal("no redis".into()),
        ] {
            assert_eq!(Report::parse(&r.to_line()), Some(r));
        }
        assert_eq!(Report::parse("garbage"), None);
        assert_eq!(Report::parse("t x 0 1 run"), None);
    }

    #[test]
    fn orders_are_permutations_per_pass() {
        let o = order(100, 3, 7);
        assert_eq!(o.len(), 300);
        for pass in o.chunks(100) {
            let mut p = pass.to_vec();
            p.sort_unstable();
            assert_eq!(p, (0..100).collect::<Vec<_>>());
        }
        assert_ne!(order(100, 1, 1), order(100, 1, 2));
        assert_eq!(order(100, 1, 1), order(100, 1, 1));
    }

    #[test]
    fn demo_keys_are_distinct() {
        assert_ne!(demo_key(1), demo_key(2));
        assert_eq!(demo_key(1), demo_key(1));
    }
}
