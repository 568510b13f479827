//! `runonce-soak`: a bounded soak run with faults injected. It starts a
//! private `redis-server`, puts a fault-injecting proxy in front of it (cut
//! connections, replies delayed past the client timeout), runs `--workers`
//! `runonce-storm` processes over `--keys` keys until about `--triggers`
//! triggers were answered, then checks the outcome against Redis:
//!
//! - every call ended in an answer (failed attempts were typed, retryable
//!   errors, retried with the same candidate run ID);
//! - every key has exactly one run, which Redis holds, and all processes
//!   agree on it;
//! - nobody was told `cached: false` for a run other than the owner.
//!
//! It prints one summary line and exits 0 only when all of that holds.
//!
//! ```text
//! runonce-soak [--workers 8] [--keys 100000] [--triggers 1000000]
//!              [--cut 0.002] [--delay-chance 0.002] [--delay-ms 400]
//!              [--timeout-ms 250] [--seed 1]
//! ```
//!
//! The full run (the defaults, about a million triggers) is not part of CI;
//! the test suite runs a short one (`tests/faults_proxy.rs`).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use runonce::{Dedupe, TriggerOptions};
use runonce_tests::proxy::{FaultProxy, Faults};
use runonce_tests::RedisServer;

struct Args {
    workers: usize,
    keys: usize,
    triggers: usize,
    cut: f64,
    delay_chance: f64,
    delay: Duration,
    timeout: Duration,
    seed: u64,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        workers: 8,
        keys: 100_000,
        triggers: 1_000_000,
        cut: 0.002,
        delay_chance: 0.002,
        delay: Duration::from_millis(400),
        timeout: Duration::from_millis(250),
        seed: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut v = || it.next().ok_or(format!("{flag} needs a value"));
        let bad = |e: String| format!("{flag}: {e}");
        match flag.as_str() {
            "--workers" => a.workers = v()?.parse().map_err(|e| bad(format!("{e}")))?,
            "--keys" => a.keys = v()?.parse().map_err(|e| bad(format!("{e}")))?,
            "--triggers" => a.triggers = v()?.parse().map_err(|e| bad(format!("{e}")))?,
            "--cut" => a.cut = v()?.parse().map_err(|e| bad(format!("{e}")))?,
            "--delay-chance" => a.delay_chance = v()?.parse().map_err(|e| bad(format!("{e}")))?,
            "--delay-ms" => {
                a.delay = Duration::from_millis(v()?.parse().map_err(|e| bad(format!("{e}")))?)
            }
            "--timeout-ms" => {
                a.timeout = Duration::from_millis(v()?.parse().map_err(|e| bad(format!("{e}")))?)
            }
            "--seed" => a.seed = v()?.parse().map_err(|e| bad(format!("{e}")))?,
            _ => {
                return Err(format!(
                    "unknown flag {flag}; see the doc comment of soak.rs"
                ))
            }
        }
    }
    if a.workers == 0 || a.keys == 0 || a.triggers == 0 {
        return Err("--workers, --keys and --triggers must be positive".into());
    }
    Ok(a)
}

/// What one worker reported.
#[derive(Default)]
struct WorkerOut {
    answers: Vec<(usize, String, bool)>,
    errors: usize,
    untyped_errors: Vec<String>,
    gave_up: usize,
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("runonce-soak: {e}");
            return ExitCode::from(2);
        }
    };
    let storm = std::env::current_exe()
        .ok()
        .and_then(|p| Some(p.parent()?.join("runonce-storm")))
        .filter(|p| p.exists())
        .expect("runonce-storm next to runonce-soak (build the runonce-tests binaries)");
    let server = RedisServer::start();
    let proxy = FaultProxy::start(
        &server.addr(),
        Faults {
            cut: args.cut,
            delay_chance: args.delay_chance,
            delay: args.delay,
        },
        args.seed,
    );
    let repeat = args.triggers.div_ceil(args.workers * args.keys).max(1);
    let started = Instant::now();
    let children: Vec<_> = (0..args.workers)
        .map(|w| {
            Command::new(&storm)
                .args(["--redis", &proxy.url(), "--env", "soak", "--task", "soak"])
                .args([
                    "--keys",
                    &args.keys.to_string(),
                    "--repeat",
                    &repeat.to_string(),
                ])
                .args(["--seed", &(args.seed * 1000 + w as u64).to_string()])
                .args([
                    "--concurrency",
                    "16",
                    "--retry-errors",
                    "--retry-pause-ms",
                    "10",
                ])
                .args(["--timeout-ms", &args.timeout.as_millis().to_string()])
                .args(["--deadline-secs", "900"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start a runonce-storm worker")
        })
        .collect();
    let readers: Vec<_> = children
        .into_iter()
        .map(|mut child| {
            let stdout = child.stdout.take().unwrap();
            let stderr = child.stderr.take().unwrap();
            let errs = std::thread::spawn(move || {
                let mut out = WorkerOut::default();
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(rest) = line.strip_prefix("error ") {
                        out.errors += 1;
                        // `error <key> <attempt> <message>`
                        let msg = rest.splitn(3, ' ').nth(2).unwrap_or("");
                        let typed = msg.starts_with("backend at ")
                            || msg.starts_with("connection pool for ")
                            || msg.starts_with("Redis at ");
                        if !typed {
                            out.untyped_errors.push(line.clone());
                        }
                    } else if line.starts_with("gave-up ") {
                        out.gave_up += 1;
                    }
                }
                out
            });
            let answers = std::thread::spawn(move || {
                let mut v = Vec::new();
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    let mut f = line.split(' ');
                    let (Some(i), Some(run), Some(cached)) = (f.next(), f.next(), f.next()) else {
                        continue;
                    };
                    if let Ok(i) = i.parse::<usize>() {
                        v.push((i, run.to_owned(), cached == "1"));
                    }
                }
                v
            });
            (child, answers, errs)
        })
        .collect();
    let mut outs = Vec::new();
    for (mut child, answers, errs) in readers {
        let status = child.wait().expect("wait for a worker");
        let mut out = errs.join().unwrap();
        out.answers = answers.join().unwrap();
        if !status.success() {
            eprintln!("runonce-soak: a worker exited with {status}");
            return ExitCode::FAILURE;
        }
        outs.push(out);
    }
    let elapsed = started.elapsed();

    // Judge against Redis itself, not through the proxy.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let owners: HashMap<usize, Option<String>> = rt.block_on(async {
        let d = Dedupe::builder()
            .redis_url(server.url())
            .environment("soak")
            .build()
            .await
            .expect("connect to the soak server");
        let mut owners = HashMap::new();
        for i in 0..args.keys {
            let rec = d
                .lookup("soak", format!("k{i}").as_str())
                .await
                .expect("lookup");
            owners.insert(i, rec.map(|r| r.run_id));
        }
        // A trigger without faults must agree with the record.
        let probe = d
            .trigger("soak", TriggerOptions::with_key("k0"))
            .await
            .expect("probe");
        assert!(probe.cached);
        owners
    });

    let expected = args.workers * args.keys * repeat;
    let answers: usize = outs.iter().map(|o| o.answers.len()).sum();
    let errors: usize = outs.iter().map(|o| o.errors).sum();
    let gave_up: usize = outs.iter().map(|o| o.gave_up).sum();
    let untyped: Vec<&String> = outs.iter().flat_map(|o| &o.untyped_errors).collect();
    let mut wrong_owner = 0usize;
    let mut false_created = 0usize;
    let mut runs_per_key: HashMap<usize, std::collections::HashSet<&str>> = HashMap::new();
    for o in &outs {
        for (i, run, cached) in &o.answers {
            runs_per_key.entry(*i).or_default().insert(run);
            match owners.get(i).and_then(|o| o.as_deref()) {
                Some(owner) if owner == run => {}
                _ => {
                    wrong_owner += 1;
                    if !cached {
                        false_created += 1;
                    }
                }
            }
        }
    }
    let duplicates = runs_per_key.values().filter(|r| r.len() > 1).count();
    let missing = owners.values().filter(|o| o.is_none()).count();
    println!(
        "soak: workers={} keys={} triggers={} answered={} elapsed={:.1}s rate={:.0}/s \
         failed_attempts={} (typed, retried) gave_up={} cuts={} delays={} \
         duplicates={} disagreements={} false_created={} missing_records={} untyped_errors={}",
        args.workers,
        args.keys,
        expected,
        answers,
        elapsed.as_secs_f64(),
        answers as f64 / elapsed.as_secs_f64(),
        errors,
        gave_up,
        proxy.cuts(),
        proxy.delays(),
        duplicates,
        wrong_owner,
        false_created,
        missing,
        untyped.len()
    );
    for u in untyped.iter().take(5) {
        eprintln!("untyped error: {u}");
    }
    let ok = answers == expected
        && gave_up == 0
        && duplicates == 0
        && wrong_owner == 0
        && missing == 0
        && untyped.is_empty();
    if ok {
        println!("OK: every call answered; one run per key; Redis agrees with every answer");
        ExitCode::SUCCESS
    } else {
        println!("FAIL");
        ExitCode::FAILURE
    }
}
