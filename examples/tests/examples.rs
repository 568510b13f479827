//! Every example runs against a real redis-server (the test harness's) and
//! exits 0 with its story told: the examples compile in CI and run against
//! the test harness's Redis.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use runonce_tests::RedisServer;

/// How long one example may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(60);

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs an example binary with `REDIS_URL` set, within [`DEADLINE`].
fn run(bin: &str, redis_url: &str) -> Run {
    let mut child = Command::new(bin)
        .env("REDIS_URL", redis_url)
        .env_remove("METRICS_SERVE_SECS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {bin}: {e}"));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).map(|_| s)
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).map(|_| s)
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{bin} did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run {
        code: status.code(),
        stdout: t_out.join().unwrap().unwrap(),
        stderr: t_err.join().unwrap().unwrap(),
    }
}

fn assert_story(bin: &str, server: &RedisServer, lines: &[&str]) -> Run {
    let r = run(bin, &server.url());
    assert_eq!(
        r.code,
        Some(0),
        "{bin} failed\n--- stdout\n{}\n--- stderr\n{}",
        r.stdout,
        r.stderr
    );
    for want in lines {
        assert!(
            r.stdout.lines().any(|l| l.contains(want)),
            "{bin}: no line with {want:?} in\n{}",
            r.stdout
        );
    }
    r
}

#[test]
fn worker_retried_parent_does_not_retrigger_its_children() {
    let server = RedisServer::start();
    let r = assert_story(
        env!("CARGO_BIN_EXE_worker"),
        &server,
        &[
            "attempt 1: trigger charge-card",
            "attempt 1 failed (simulated crash",
            "attempt 2: trigger charge-card",
            "attempt 2 re-triggered none of its 3 children",
            "OK: the retried parent (attempt 2) did not re-trigger its children",
        ],
    );
    // Attempt 2's child triggers were all answered from attempt 1's runs.
    let attempt2: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.contains("attempt 2: trigger") && !l.contains("audit-attempt"))
        .collect();
    assert_eq!(attempt2.len(), 3, "{}", r.stdout);
    assert!(
        attempt2.iter().all(|l| l.ends_with("(cached)")),
        "{}",
        r.stdout
    );
    // Run it again: a fresh environment each time, so it holds again.
    assert_story(env!("CARGO_BIN_EXE_worker"), &server, &["OK: "]);
}

#[test]
fn backend_dedupes_requests_with_global_keys_and_fingerprints() {
    let server = RedisServer::start();
    assert_story(
        env!("CARGO_BIN_EXE_backend"),
        &server,
        &[
            "POST /orders (Idempotency-Key: checkout-5f2a)    -> 201",
            "POST /orders again (a client retry)              -> 200",
            "-> 422 {\"error\":\"payload_mismatch\"",
            "-> 1 x 201, 15 x 200, 1 distinct run",
            "POST /orders same body, fields reordered         -> 200",
            "OK: retries replayed the first run",
        ],
    );
}

#[test]
fn metrics_are_served_in_the_prometheus_text_format() {
    let server = RedisServer::start();
    let r = assert_story(
        env!("CARGO_BIN_EXE_metrics"),
        &server,
        &[
            "metrics: endpoint http://127.0.0.1:",
            "runonce_triggers_total{task=\"send-email\",outcome=\"created\"} 5",
            "runonce_triggers_total{task=\"send-email\",outcome=\"cached\"} 5",
            "runonce_triggers_total{task=\"charge\",outcome=\"mismatch\"} 1",
            "OK: http://127.0.0.1:",
        ],
    );
    assert!(r.stderr.is_empty(), "{}", r.stderr);
}

#[test]
fn examples_fail_with_exit_1_when_redis_is_unreachable() {
    let url = format!("redis://127.0.0.1:{}", runonce_tests::free_port());
    for bin in [
        env!("CARGO_BIN_EXE_worker"),
        env!("CARGO_BIN_EXE_backend"),
        env!("CARGO_BIN_EXE_metrics"),
    ] {
        let start = Instant::now();
        let r = run(bin, &url);
        assert_eq!(r.code, Some(1), "{bin}: {}", r.stderr);
        assert!(r.stderr.starts_with("error: "), "{bin}: {}", r.stderr);
        assert!(start.elapsed() < Duration::from_secs(15), "{bin}");
    }
}
