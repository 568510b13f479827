//! `runonce-storm`: one worker process of a trigger storm, for multi-process
//! tests and fault injection.
//!
//! It connects to one Redis deployment, triggers keys `<key-prefix><i>` for
//! `i` in `0..keys` (Global scope, so every process shares them) `repeat`
//! times over, `concurrency` calls in flight, and prints one line per answer
//! on stdout:
//!
//! ```text
//! <key index> <run id> <cached 0|1> <replicas reached, or ->
//! ```
//!
//! Failed calls go to stderr as `error <key index> <attempt> <message>`
//! (one line per failed attempt); a call abandoned at the deadline as
//! `gave-up <key index> <message>`. The last stderr line is a summary:
//! `done answers=A errors=E gave_up=G elapsed_ms=T`. The exit status is 0
//! whatever the calls answered (the caller judges the output); 2 for bad
//! flags, 1 when the handle cannot be built.
//!
//! Each pass visits the keys in ascending windows of `--window` keys, shuffled
//! inside each window by `--seed`: processes with different seeds race on the
//! same few keys at the same time, and the storm moves through the key space
//! as time passes, so fresh keys are claimed during the whole run.
//!
//! ```text
//! runonce-storm (--redis URL | --cluster URL,URL.. | --sentinel URL,URL.. --master NAME)
//!   [--env dev] [--task storm] [--keys 1000] [--key-prefix k] [--seed 0]
//!   [--window 64] [--repeat 1] [--concurrency 16] [--batch 0]
//!   [--retry-errors] [--retry-pause-ms 20] [--pace-ms 0] [--deadline-secs 120]
//!   [--timeout-ms 5000] [--ttl 1h]
//!   [--min-replicas N [--wait-timeout-ms 500] [--shortfall error|report]]
//! ```
//!
//! With `--retry-errors` a failed call is sent again, with the same candidate
//! run ID (claims are re-entrant), until it answers or the deadline passes;
//! without it a failed call is reported and the worker moves on. With
//! `--batch B`, a worker sends `batch_trigger` calls of `B` consecutive keys
//! of its order and prints one line per item (a failed item is an `error`
//! line; a failed batch, one per item).

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runonce::{Dedupe, Error, ShortfallPolicy, TriggerOptions, Triggered, Ttl};

/// Where to connect.
#[derive(Debug)]
enum Target {
    Redis(String),
    Cluster(Vec<String>),
    Sentinel(Vec<String>, String),
}

#[derive(Debug)]
struct Args {
    target: Target,
    env: String,
    task: String,
    keys: usize,
    key_prefix: String,
    seed: u64,
    window: usize,
    repeat: usize,
    concurrency: usize,
    batch: usize,
    retry_errors: bool,
    retry_pause: Duration,
    pace: Duration,
    deadline: Duration,
    timeout: Duration,
    ttl: Ttl,
    min_replicas: Option<u32>,
    wait_timeout: Duration,
    shortfall: ShortfallPolicy,
}

const USAGE: &str = "usage: runonce-storm (--redis URL | --cluster URL,URL.. | --sentinel URL,URL.. --master NAME) \
[--env ENV] [--task TASK] [--keys N] [--key-prefix P] [--seed S] [--window W] [--repeat R] \
[--concurrency C] [--batch B] [--retry-errors] [--retry-pause-ms MS] [--pace-ms MS] \
[--deadline-secs S] [--timeout-ms MS] [--ttl TTL] [--min-replicas N] [--wait-timeout-ms MS] \
[--shortfall error|report]";

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut redis = None;
    let mut cluster = None;
    let mut sentinel = None;
    let mut master = None;
    let mut a = Args {
        target: Target::Redis(String::new()),
        env: "dev".into(),
        task: "storm".into(),
        keys: 1000,
        key_prefix: "k".into(),
        seed: 0,
        window: 64,
        repeat: 1,
        concurrency: 16,
        batch: 0,
        retry_errors: false,
        retry_pause: Duration::from_millis(20),
        pace: Duration::ZERO,
        deadline: Duration::from_secs(120),
        timeout: Duration::from_secs(5),
        ttl: Ttl::from(Duration::from_secs(3600)),
        min_replicas: None,
        wait_timeout: Duration::from_millis(500),
        shortfall: ShortfallPolicy::Error,
    };
    fn num<T: std::str::FromStr>(flag: &str, v: Option<String>) -> Result<T, String> {
        let v = v.ok_or_else(|| format!("{flag} needs a value"))?;
        v.parse()
            .map_err(|_| format!("{flag}: {v:?} is not a valid number"))
    }
    fn list(flag: &str, v: Option<String>) -> Result<Vec<String>, String> {
        let v = v.ok_or_else(|| format!("{flag} needs a value"))?;
        let urls: Vec<String> = v
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if urls.is_empty() {
            return Err(format!("{flag} needs at least one URL"));
        }
        Ok(urls)
    }
    let ms = |n: u64| Duration::from_millis(n);
    while let Some(flag) = it.next() {
        let mut value = || it.next();
        match flag.as_str() {
            "--redis" => redis = Some(value().ok_or("--redis needs a URL")?),
            "--cluster" => cluster = Some(list("--cluster", value())?),
            "--sentinel" => sentinel = Some(list("--sentinel", value())?),
            "--master" => master = Some(value().ok_or("--master needs a name")?),
            "--env" => a.env = value().ok_or("--env needs a value")?,
            "--task" => a.task = value().ok_or("--task needs a value")?,
            "--keys" => a.keys = num(&flag, value())?,
            "--key-prefix" => a.key_prefix = value().ok_or("--key-prefix needs a value")?,
            "--seed" => a.seed = num(&flag, value())?,
            "--window" => a.window = num::<usize>(&flag, value())?.max(1),
            "--repeat" => a.repeat = num(&flag, value())?,
            "--concurrency" => a.concurrency = num::<usize>(&flag, value())?.max(1),
            "--batch" => a.batch = num(&flag, value())?,
            "--retry-errors" => a.retry_errors = true,
            "--retry-pause-ms" => a.retry_pause = ms(num(&flag, value())?),
            "--pace-ms" => a.pace = ms(num(&flag, value())?),
            "--deadline-secs" => a.deadline = Duration::from_secs(num(&flag, value())?),
            "--timeout-ms" => a.timeout = ms(num(&flag, value())?),
            "--ttl" => {
                let v = value().ok_or("--ttl needs a value")?;
                a.ttl = v.parse().map_err(|e: Error| e.to_string())?;
            }
            "--min-replicas" => a.min_replicas = Some(num(&flag, value())?),
            "--wait-timeout-ms" => a.wait_timeout = ms(num(&flag, value())?),
            "--shortfall" => {
                a.shortfall = match value().as_deref() {
                    Some("error") => ShortfallPolicy::Error,
                    Some("report") => ShortfallPolicy::Report,
                    other => return Err(format!("--shortfall error|report, not {other:?}")),
                }
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown flag {other:?}\n{USAGE}")),
        }
    }
    a.target = match (redis, cluster, sentinel, master) {
        (Some(url), None, None, None) => Target::Redis(url),
        (None, Some(seeds), None, None) => Target::Cluster(seeds),
        (None, None, Some(urls), Some(name)) => Target::Sentinel(urls, name),
        (None, None, Some(_), None) => return Err("--sentinel needs --master NAME".into()),
        _ => {
            return Err(format!(
                "give exactly one of --redis, --cluster or --sentinel\n{USAGE}"
            ))
        }
    };
    Ok(a)
}

/// splitmix64: a tiny deterministic generator for the shuffles.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Key indices in visiting order: every pass, windows ascending, each window
/// shuffled (Fisher-Yates) by the seed.
fn order(keys: usize, window: usize, repeat: usize, seed: u64) -> Vec<usize> {
    let mut rng = Rng(seed ^ 0x5EED_5EED_5EED_5EED);
    let mut out = Vec::with_capacity(keys * repeat);
    for _ in 0..repeat {
        let mut start = 0;
        while start < keys {
            let end = (start + window).min(keys);
            let mut w: Vec<usize> = (start..end).collect();
            for i in (1..w.len()).rev() {
                let j = (rng.next() % (i as u64 + 1)) as usize;
                w.swap(i, j);
            }
            out.extend(w);
            start = end;
        }
    }
    out
}

struct Shared {
    args: Args,
    dedupe: Dedupe,
    order: Vec<usize>,
    next: AtomicUsize,
    started: Instant,
    out: Mutex<std::io::BufWriter<std::io::Stdout>>,
    answers: AtomicU64,
    errors: AtomicU64,
    gave_up: AtomicU64,
}

impl Shared {
    fn answer(&self, index: usize, t: &Triggered) {
        let replicas = t.replicas.map_or_else(|| "-".to_owned(), |r| r.to_string());
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(
            out,
            "{index} {} {} {replicas}",
            t.run_id,
            u8::from(t.cached)
        );
        self.answers.fetch_add(1, Ordering::Relaxed);
    }

    fn error(&self, index: usize, attempt: u32, e: &Error) {
        eprintln!("error {index} {attempt} {}", one_line(e));
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    fn give_up(&self, index: usize, e: &Error) {
        eprintln!("gave-up {index} {}", one_line(e));
        self.gave_up.fetch_add(1, Ordering::Relaxed);
    }

    fn past_deadline(&self) -> bool {
        self.started.elapsed() >= self.args.deadline
    }

    fn key(&self, index: usize) -> String {
        format!("{}{index}", self.args.key_prefix)
    }

    fn options(&self, index: usize, run_id: &str) -> TriggerOptions {
        TriggerOptions::with_key(self.key(index))
            .ttl(self.args.ttl)
            .run_id(run_id)
    }

    /// Whether to try again after a failed attempt.
    async fn again(&self, index: usize, attempt: u32, e: &Error) -> bool {
        self.error(index, attempt, e);
        if !self.args.retry_errors {
            return false;
        }
        if self.past_deadline() {
            self.give_up(index, e);
            return false;
        }
        tokio::time::sleep(self.args.retry_pause).await;
        true
    }

    async fn single(&self, index: usize) {
        let run_id = runonce::mint_run_id();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .dedupe
                .trigger(&self.args.task, self.options(index, &run_id))
                .await
            {
                Ok(t) => return self.answer(index, &t),
                Err(e) => {
                    if !self.again(index, attempt, &e).await {
                        return;
                    }
                }
            }
        }
    }

    async fn batch(&self, indices: &[usize]) {
        let run_ids: Vec<String> = indices.iter().map(|_| runonce::mint_run_id()).collect();
        // Items still to answer: positions into `indices`.
        let mut pending: Vec<usize> = (0..indices.len()).collect();
        let mut attempt = 0;
        while !pending.is_empty() {
            attempt += 1;
            let items = pending
                .iter()
                .map(|&p| self.options(indices[p], &run_ids[p]))
                .collect();
            let mut failed = Vec::new();
            let mut last = None;
            match self.dedupe.batch_trigger(&self.args.task, items).await {
                Ok(answers) => {
                    for (&p, a) in pending.iter().zip(answers) {
                        match a {
                            Ok(t) => self.answer(indices[p], &t),
                            Err(e) => {
                                self.error(indices[p], attempt, &e);
                                failed.push(p);
                                last = Some(e);
                            }
                        }
                    }
                }
                Err(e) => {
                    for &p in &pending {
                        self.error(indices[p], attempt, &e);
                    }
                    failed = pending.clone();
                    last = Some(e);
                }
            }
            pending = failed;
            let Some(e) = last else { break };
            if !self.args.retry_errors {
                break;
            }
            if self.past_deadline() {
                for &p in &pending {
                    self.give_up(indices[p], &e);
                }
                break;
            }
            tokio::time::sleep(self.args.retry_pause).await;
        }
    }

    async fn worker(self: Arc<Self>) {
        let step = self.args.batch.max(1);
        loop {
            let at = self.next.fetch_add(step, Ordering::Relaxed);
            if at >= self.order.len() {
                return;
            }
            let end = (at + step).min(self.order.len());
            let chunk = &self.order[at..end];
            if self.past_deadline() {
                let e = Error::Config("the storm's --deadline-secs passed".into());
                for &i in chunk {
                    self.give_up(i, &e);
                }
                continue;
            }
            if self.args.batch == 0 {
                self.single(chunk[0]).await;
            } else {
                self.batch(chunk).await;
            }
            if !self.args.pace.is_zero() {
                tokio::time::sleep(self.args.pace).await;
            }
        }
    }
}

fn one_line(e: &Error) -> String {
    e.to_string().replace(['\n', '\r'], " ")
}

async fn connect(args: &Args) -> Result<Dedupe, Error> {
    let b = Dedupe::builder()
        .environment(&args.env)
        .timeout(args.timeout);
    let b = match &args.target {
        Target::Redis(url) => b.redis_url(url),
        Target::Cluster(seeds) => b.cluster(seeds.clone()),
        Target::Sentinel(urls, master) => b.sentinel(urls.clone(), master),
    };
    let b = match args.min_replicas {
        Some(n) => b
            .min_replicas(n, args.wait_timeout)
            .on_replica_shortfall(args.shortfall),
        None => b,
    };
    b.build().await
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let started = Instant::now();
        // Building reads the eviction policy, so it needs the backend: retry
        // while it is unreachable (e.g. mid-failover), up to the deadline.
        let dedupe = loop {
            match connect(&args).await {
                Ok(d) => break d,
                Err(e) if started.elapsed() < args.deadline => {
                    eprintln!("connect-error {}", one_line(&e));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => {
                    eprintln!("cannot connect: {}", one_line(&e));
                    return ExitCode::from(1);
                }
            }
        };
        let shared = Arc::new(Shared {
            order: order(args.keys, args.window, args.repeat, args.seed),
            args,
            dedupe,
            next: AtomicUsize::new(0),
            started,
            out: Mutex::new(std::io::BufWriter::with_capacity(
                64 * 1024,
                std::io::stdout(),
            )),
            answers: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            gave_up: AtomicU64::new(0),
        });
        // Flush answers every 50 ms, so a watching test sees progress.
        let flusher = {
            let shared = shared.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let _ = shared.out.lock().unwrap_or_else(|p| p.into_inner()).flush();
                }
            })
        };
        let workers: Vec<_> = (0..shared.args.concurrency)
            .map(|_| tokio::spawn(shared.clone().worker()))
            .collect();
        for w in workers {
            if let Err(e) = w.await {
                eprintln!("worker panicked: {e}");
            }
        }
        flusher.abort();
        let _ = shared.out.lock().unwrap_or_else(|p| p.into_inner()).flush();
        eprintln!(
            "done answers={} errors={} gave_up={} elapsed_ms={}",
            shared.answers.load(Ordering::Relaxed),
            shared.errors.load(Ordering::Relaxed),
            shared.gave_up.load(Ordering::Relaxed),
            shared.started.elapsed().as_millis()
        );
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_visits_every_key_per_pass_in_windows() {
        let o = order(10, 4, 2, 7);
        assert_eq!(o.len(), 20);
        for pass in o.chunks(10) {
            let mut sorted = pass.to_vec();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..10).collect::<Vec<_>>());
            let mut first: Vec<usize> = pass[..4].to_vec();
            first.sort_unstable();
            assert_eq!(first, vec![0, 1, 2, 3]);
        }
        assert_ne!(order(64, 64, 1, 1), order(64, 64, 1, 2));
    }

    #[test]
    fn parses_flags() {
        let a = parse_args(
            "--cluster redis://a:1,redis://b:2 --keys 5 --retry-errors --min-replicas 1 --shortfall report"
                .split(' ')
                .map(str::to_owned),
        )
        .unwrap();
        assert!(matches!(a.target, Target::Cluster(ref s) if s.len() == 2));
        assert_eq!((a.keys, a.retry_errors, a.min_replicas), (5, true, Some(1)));
        assert_eq!(a.shortfall, ShortfallPolicy::Report);
        assert!(
            parse_args(["--sentinel".to_owned(), "redis://s:1".to_owned()].into_iter()).is_err()
        );
        assert!(parse_args(["--bogus".to_owned()].into_iter()).is_err());
    }
}
