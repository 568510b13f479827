//! `runonce demo`: W worker processes trigger the same K keys, each in its
//! own shuffled order, R times, against one Redis; then a table shows that
//! every key got exactly one run and every worker learned the same run ID.
//!
//! - The store: the Redis of `--redis`/`REDIS_URL` (or `--cluster`,
//!   `--sentinel`) if given; otherwise a
//!   private `redis-server` on a free loopback port, started for the demo
//!   and stopped at its end; if `redis-server` is not installed (or with the
//!   hidden `--in-memory`), W worker *threads* over the in-process store.
//! - The workers are real OS processes: this binary re-executed as the
//!   hidden `runonce __worker` (see [`crate::worker`] for their line
//!   protocol), each with its own connection and 32 triggers in flight.
//! - Each demo run uses a fresh environment `demo-<random>`, so a shared
//!   Redis sees no collisions with other data or earlier demos. Its records
//!   have a 10-minute TTL, and on success they are deleted at the end.
//!
//! Exit status: 0 when every key got exactly one run and all answers for a
//! key named the same run; 1 otherwise (or when a trigger or worker failed).

use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc::{self, Sender};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use runonce::{Dedupe, Ttl};
use runonce_tests::RedisServer;

use crate::cli::{DemoArgs, Global, Target};
use crate::commands;
use crate::error::CliError;
use crate::worker::{self, Plan, Report};

/// The task the demo triggers.
const DEMO_TASK: &str = "demo";
/// The window of the demo's records.
const DEMO_TTL: &str = "10m";
/// Triggers in flight per worker.
const IN_FLIGHT: u32 = 32;

/// Where the demo's records live.
enum Store {
    /// A Redis (one server, a cluster or through Sentinel); `private` holds
    /// the server the demo started.
    Redis {
        target: Target,
        private: Option<RedisServer>,
    },
    /// The in-process store, shared by worker threads.
    Memory {
        /// Why the demo is not using Redis.
        reason: String,
    },
}

/// What the parent hears from a worker.
enum Event {
    Report(Report),
    /// The worker process (or thread) ended.
    Exited {
        success: bool,
        status: String,
    },
}

/// `runonce demo`.
pub(crate) fn run(g: &Global, a: &DemoArgs) -> ExitCode {
    match run_inner(g, a) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e}");
            e.exit_code()
        }
    }
}

fn run_inner(g: &Global, a: &DemoArgs) -> Result<ExitCode, CliError> {
    let ttl: Ttl = DEMO_TTL.parse().expect("a valid TTL");
    let seed = worker::random_seed();
    let env = format!("demo-{:08x}", seed >> 32);
    let mut demo_global = g.clone();
    demo_global.env = env.clone();
    let total = u64::from(a.workers) * u64::from(a.keys) * u64::from(a.repeat);

    let store = choose_store(g, a);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::failure(format!("cannot start the runtime: {e}")))?;

    // Check the server before starting anyone, so a wrong address fails fast
    // with one clear message; the handle is kept for the clean-up.
    let (check, memory) = match &store {
        Store::Redis { target, .. } => {
            demo_global.target = Some(target.clone());
            let d = rt.block_on(commands::connect_bounded(&demo_global, true))?;
            (Some(d), None)
        }
        Store::Memory { .. } => (None, Some(Dedupe::in_memory(env.clone()))),
    };

    // The header.
    let mode = match &store {
        Store::Redis { .. } => "worker processes",
        Store::Memory { .. } => "worker threads",
    };
    println!(
        "runonce demo: {} {mode} x {} keys x {} passes = {total} triggers, {IN_FLIGHT} in flight per worker",
        a.workers, a.keys, a.repeat
    );
    match &store {
        Store::Redis {
            private: Some(server),
            ..
        } => println!(
            "  store: private redis-server at {} (started for this demo, stopped at its end; pass --redis URL to use yours)",
            server.addr()
        ),
        Store::Redis {
            target,
            private: None,
        } => {
            println!("  store: {}", target.describe())
        }
        Store::Memory { reason } => {
            println!("  store: the in-process store, shared by threads of this one process");
            println!("  note: {reason}");
            println!(
                "        For the multi-process run against a real Redis, install redis-server \
                 (Debian/Ubuntu: `sudo apt-get install redis-server`, macOS: `brew install redis`) \
                 and run `runonce demo` again, or pass --redis URL."
            );
        }
    }
    println!(
        "  keys:  task {DEMO_TASK}, keys [\"demo\", \"key-0\"] .. [\"demo\", \"key-{}\"], prefix {}, environment {env} (fresh for this run), TTL {DEMO_TTL}",
        a.keys - 1,
        g.prefix
    );

    let (tx, rx) = mpsc::channel::<(u32, Event)>();
    let start = Instant::now();
    let mut threads = Vec::new();
    for w in 0..a.workers {
        let plan = Plan {
            task: DEMO_TASK.to_owned(),
            keys: a.keys,
            repeat: a.repeat,
            seed: seed.wrapping_add(u64::from(w).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            in_flight: IN_FLIGHT,
            ttl,
        };
        let tx = tx.clone();
        let spawned = match (&store, &memory) {
            (Store::Memory { .. }, Some(d)) => Ok(spawn_thread(w, d.clone(), plan, tx)),
            _ => spawn_process(w, &demo_global, plan, tx),
        };
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                // Workers already started finish on their own; say why the
                // run stops here.
                drop(rx);
                return Err(e);
            }
        }
    }
    drop(tx);

    let bar = progress_bar(total);
    let mut tally = Tally::new(a.keys);
    let mut workers = vec![WorkerState::default(); a.workers as usize];
    let mut last_rate = Instant::now();
    while let Ok((w, event)) = rx.recv() {
        let state = &mut workers[w as usize];
        match event {
            Event::Report(Report::Done(_)) => state.done = true,
            Event::Report(Report::Fatal(m)) => state.fatal = Some(m),
            Event::Report(r) => {
                tally.add(r);
                bar.inc(1);
                if last_rate.elapsed() >= Duration::from_millis(250) {
                    last_rate = Instant::now();
                    let secs = start.elapsed().as_secs_f64().max(1e-3);
                    bar.set_message(format!("({:.0}/s)", bar.position() as f64 / secs));
                }
            }
            Event::Exited { success, status } => {
                if !success {
                    state.status = Some(status);
                }
            }
        }
    }
    let elapsed = start.elapsed();
    bar.finish_and_clear();
    for t in threads {
        let _ = t.join();
    }

    let summary = tally.summary(a.workers, elapsed);
    print!("{}", summary.table());

    let mut problems = Vec::new();
    for (w, s) in workers.iter().enumerate() {
        if let Some(m) = &s.fatal {
            problems.push(format!("worker {w} could not run: {m}"));
        } else if !s.done || s.status.is_some() {
            problems.push(format!(
                "worker {w} did not finish ({})",
                s.status.as_deref().unwrap_or("no final report")
            ));
        }
    }
    if tally.failed > 0 {
        problems.push(format!(
            "{} triggers failed, e.g. {}",
            tally.failed,
            tally.first_failure.as_deref().unwrap_or("?")
        ));
    }
    if summary.answers + tally.failed < total && problems.is_empty() {
        problems.push(format!(
            "only {} of {total} triggers answered",
            summary.answers
        ));
    }
    let ok = summary.duplicates == 0 && summary.disagreed == 0 && problems.is_empty();

    if summary.duplicates > 0 || summary.disagreed > 0 {
        println!(
            "\nFAIL: {} keys got more than one run, and on {} keys the workers were told different run IDs.",
            summary.duplicates, summary.disagreed
        );
    } else if !problems.is_empty() {
        println!(
            "\nFAIL: the demo did not complete ({} of {total} triggers answered); see the errors on stderr.",
            summary.answers
        );
    } else {
        println!(
            "\nOK: {} keys, {} runs: every key got exactly one run, and all {} workers agreed on its ID.",
            summary.keys_with_runs, summary.created, a.workers
        );
    }
    for p in &problems {
        eprintln!("error: {p}");
    }

    // Clean up.
    match (&store, check) {
        (Store::Redis { private: None, .. }, Some(d)) if ok => {
            match rt.block_on(cleanup(&d, a.keys)) {
                Ok(n) => println!(
                    "  cleaned up: deleted the demo's {n} records (environment {env})"
                ),
                Err(e) => eprintln!(
                    "warning: could not delete the demo's records ({e}); they expire in {DEMO_TTL}"
                ),
            }
        }
        (Store::Redis { private: None, .. }, Some(_)) => println!(
            "  the demo's records are left for inspection (--env {env} lookup --task {DEMO_TASK} --key demo --key key-0); they expire in {DEMO_TTL}"
        ),
        _ => {}
    }
    // A private server stops when `store` drops.
    drop(store);
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Picks the store (see the module docs), starting a private redis-server
/// when needed.
fn choose_store(g: &Global, a: &DemoArgs) -> Store {
    if a.in_memory {
        return Store::Memory {
            reason: "--in-memory was given, so this demo runs worker threads in one process"
                .to_owned(),
        };
    }
    if let Some(target) = &g.target {
        return Store::Redis {
            target: target.clone(),
            private: None,
        };
    }
    let Some(bin) = runonce_tests::find_binary("redis-server") else {
        return Store::Memory {
            reason: "redis-server is not installed (not on PATH, REDIS_SERVER_BIN not set), \
                     so this demo runs worker threads in one process instead of worker processes"
                .to_owned(),
        };
    };
    // The harness panics (with details) when a server does not come up;
    // here that is a fallback, not a crash.
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let started = std::panic::catch_unwind(RedisServer::start);
    std::panic::set_hook(prev);
    match started {
        Ok(server) => Store::Redis {
            target: Target::Single(server.url()),
            private: Some(server),
        },
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            let first = why.trim().lines().next().unwrap_or("").to_owned();
            Store::Memory {
                reason: format!(
                    "{} did not start ({first}), so this demo runs worker threads in one process",
                    bin.display()
                ),
            }
        }
    }
}

/// Starts worker process `w`: this binary as `runonce __worker`, with a
/// thread that reads its report lines.
fn spawn_process(
    w: u32,
    g: &Global,
    plan: Plan,
    tx: Sender<(u32, Event)>,
) -> Result<std::thread::JoinHandle<()>, CliError> {
    let exe = std::env::current_exe().map_err(|e| {
        CliError::failure(format!("cannot find this executable to start workers: {e}"))
    })?;
    let mut child = Command::new(&exe)
        .arg("__worker")
        .args(g.target().to_args())
        .args(["--env", &g.env])
        .args(["--prefix", &g.prefix])
        .args([
            "--timeout",
            &humantime::format_duration(g.timeout).to_string(),
        ])
        .args(["--task", &plan.task])
        .args(["--keys", &plan.keys.to_string()])
        .args(["--repeat", &plan.repeat.to_string()])
        .args(["--seed", &plan.seed.to_string()])
        .args(["--in-flight", &plan.in_flight.to_string()])
        .args(["--ttl", &plan.ttl.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| {
            CliError::failure(format!(
                "cannot start worker process {} __worker: {e}",
                exe.display()
            ))
        })?;
    let stdout = child.stdout.take().expect("stdout is piped");
    Ok(std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let report = Report::parse(&line)
                .unwrap_or_else(|| Report::Fatal(format!("unexpected output line {line:?}")));
            if tx.send((w, Event::Report(report))).is_err() {
                break;
            }
        }
        let (success, status) = match child.wait() {
            Ok(s) => (s.success(), s.to_string()),
            Err(e) => (false, e.to_string()),
        };
        let _ = tx.send((w, Event::Exited { success, status }));
    }))
}

/// Starts worker thread `w` over the shared in-process store.
fn spawn_thread(
    w: u32,
    dedupe: Dedupe,
    plan: Plan,
    tx: Sender<(u32, Event)>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = tx.send((
                    w,
                    Event::Report(Report::Fatal(format!("cannot start the runtime: {e}"))),
                ));
                return;
            }
        };
        let sink_tx = tx.clone();
        rt.block_on(worker::drive(dedupe, plan, move |r| {
            sink_tx.send((w, Event::Report(r))).is_ok()
        }));
        let _ = tx.send((
            w,
            Event::Exited {
                success: true,
                status: "thread finished".to_owned(),
            },
        ));
    })
}

/// Deletes the demo's records; answers how many existed.
async fn cleanup(d: &Dedupe, keys: u32) -> Result<u64, runonce::Error> {
    let mut deleted = 0;
    let all: Vec<u32> = (0..keys).collect();
    for chunk in all.chunks(IN_FLIGHT as usize) {
        let mut set = tokio::task::JoinSet::new();
        for &k in chunk {
            let d = d.clone();
            set.spawn(async move { d.reset(DEMO_TASK, worker::demo_key(k)).await });
        }
        while let Some(r) = set.join_next().await {
            let existed = r.map_err(|e| runonce::Error::Backend {
                addr: "demo clean-up".to_owned(),
                message: e.to_string(),
            })??;
            deleted += u64::from(existed);
        }
    }
    Ok(deleted)
}

fn progress_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} triggers {msg} eta {eta}",
        )
        .expect("a valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

#[derive(Clone, Default)]
struct WorkerState {
    done: bool,
    fatal: Option<String>,
    status: Option<String>,
}

/// What the answers for one key were.
#[derive(Clone, Default)]
struct KeyTally {
    /// The distinct run IDs answered (normally exactly one).
    run_ids: Vec<String>,
    /// How many answers were `cached: false`.
    created: u32,
}

/// Everything the workers reported.
struct Tally {
    keys: Vec<KeyTally>,
    created: u64,
    cached: u64,
    failed: u64,
    first_failure: Option<String>,
    latencies_us: Vec<u64>,
}

impl Tally {
    fn new(keys: u32) -> Self {
        Tally {
            keys: vec![KeyTally::default(); keys as usize],
            created: 0,
            cached: 0,
            failed: 0,
            first_failure: None,
            latencies_us: Vec::new(),
        }
    }

    fn add(&mut self, r: Report) {
        match r {
            Report::Answer {
                key,
                run_id,
                cached,
                latency_us,
            } => {
                self.latencies_us.push(latency_us);
                let Some(k) = self.keys.get_mut(key as usize) else {
                    self.failed += 1;
                    self.first_failure
                        .get_or_insert_with(|| format!("an answer for unknown key {key}"));
                    return;
                };
                if cached {
                    self.cached += 1;
                } else {
                    self.created += 1;
                    k.created += 1;
                }
                if !k.run_ids.contains(&run_id) {
                    k.run_ids.push(run_id);
                }
            }
            Report::Failed { key, kind, message } => {
                self.failed += 1;
                self.first_failure
                    .get_or_insert_with(|| format!("key {key}: {kind}: {message}"));
            }
            Report::Done(_) | Report::Fatal(_) => {}
        }
    }

    fn summary(&mut self, workers: u32, elapsed: Duration) -> Summary {
        self.latencies_us.sort_unstable();
        let answers = self.created + self.cached;
        Summary {
            workers,
            keys: self.keys.len() as u64,
            answers,
            created: self.created,
            cached: self.cached,
            keys_with_runs: self.keys.iter().filter(|k| !k.run_ids.is_empty()).count() as u64,
            disagreed: self.keys.iter().filter(|k| k.run_ids.len() > 1).count() as u64,
            duplicates: self
                .keys
                .iter()
                .filter(|k| k.created > 1 || k.run_ids.len() > 1)
                .count() as u64,
            elapsed,
            p50_us: percentile(&self.latencies_us, 0.50),
            p99_us: percentile(&self.latencies_us, 0.99),
        }
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The numbers of the final table.
struct Summary {
    workers: u32,
    keys: u64,
    /// Triggers answered.
    answers: u64,
    /// `cached: false` answers.
    created: u64,
    /// `cached: true` answers.
    cached: u64,
    keys_with_runs: u64,
    /// Keys for which not every answer named the same run.
    disagreed: u64,
    /// Keys that got more than one run (more than one `cached: false`, or
    /// more than one run ID).
    duplicates: u64,
    elapsed: Duration,
    p50_us: u64,
    p99_us: u64,
}

impl Summary {
    fn table(&self) -> String {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let rows: [(&str, String); 10] = [
            ("workers", self.workers.to_string()),
            ("keys", self.keys.to_string()),
            ("triggers", self.answers.to_string()),
            ("runs created", self.created.to_string()),
            ("cached answers", self.cached.to_string()),
            ("keys where workers disagreed", self.disagreed.to_string()),
            ("duplicate runs", self.duplicates.to_string()),
            (
                "throughput",
                format!("{:.0} triggers/s", self.answers as f64 / secs),
            ),
            ("p50 latency", latency(self.p50_us)),
            ("p99 latency", latency(self.p99_us)),
        ];
        let mut out = String::from("\n");
        for (label, value) in rows {
            out.push_str(&format!("  {label:<30} {value}\n"));
        }
        out.push_str(&format!(
            "  {:<30} {}\n",
            "wall time",
            format_secs(self.elapsed)
        ));
        out
    }
}

fn latency(us: u64) -> String {
    if us < 1000 {
        format!("{us} µs")
    } else {
        format!("{:.2} ms", us as f64 / 1000.0)
    }
}

fn format_secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(key: u32, run: &str, cached: bool) -> Report {
        Report::Answer {
            key,
            run_id: run.into(),
            cached,
            latency_us: 10,
        }
    }

    #[test]
    fn counts_duplicates_and_disagreements() {
        let mut t = Tally::new(3);
        t.add(answer(0, "a", false));
        t.add(answer(0, "a", true));
        t.add(answer(1, "b", false));
        t.add(answer(1, "c", false)); // two runs for key 1
        t.add(answer(2, "d", false));
        t.add(answer(2, "e", true)); // disagreement on key 2
        let s = t.summary(2, Duration::from_secs(1));
        assert_eq!((s.answers, s.created, s.cached), (6, 4, 2));
        assert_eq!(s.disagreed, 2);
        assert_eq!(s.duplicates, 2);
    }

    #[test]
    fn percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), 50);
        assert_eq!(percentile(&v, 0.99), 99);
        assert_eq!(percentile(&[7], 0.99), 7);
        assert_eq!(percentile(&[], 0.5), 0);
    }
}
