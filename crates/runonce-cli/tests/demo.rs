//! `runonce demo` with small sizes: against a given Redis, against its own
//! private redis-server (the embedded default), and over the in-process
//! store; checks the exit status and the table's numbers.

mod common;

use std::net::TcpStream;

use runonce_tests::RedisServer;

/// The number in the table row `label` (the first token after the label).
fn row(stdout: &str, label: &str) -> u64 {
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no row {label:?} in:\n{stdout}"));
    line.trim_start()[label.len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("row {label:?} has no number: {line:?}"))
}

fn check_table(stdout: &str, workers: u64, keys: u64, repeat: u64) {
    let triggers = workers * keys * repeat;
    assert_eq!(row(stdout, "workers"), workers, "{stdout}");
    assert_eq!(row(stdout, "keys "), keys, "{stdout}");
    assert_eq!(row(stdout, "triggers"), triggers, "{stdout}");
    assert_eq!(row(stdout, "runs created"), keys, "{stdout}");
    assert_eq!(row(stdout, "cached answers"), triggers - keys, "{stdout}");
    assert_eq!(row(stdout, "keys where workers disagreed"), 0, "{stdout}");
    assert_eq!(row(stdout, "duplicate runs"), 0, "{stdout}");
    assert!(row(stdout, "throughput") > 0, "{stdout}");
    for label in ["p50 latency", "p99 latency"] {
        let line = stdout.lines().find(|l| l.contains(label)).unwrap();
        assert!(line.contains("µs") || line.contains("ms"), "{line}");
    }
    assert!(stdout.contains("OK:"), "{stdout}");
}

fn demo(extra_global: &[&str], args: &[&str]) -> common::Run {
    let mut c = common::runonce();
    c.args(extra_global).arg("demo").args(args);
    common::finish(c, None)
}

#[test]
fn worker_processes_against_a_given_redis() {
    let server = RedisServer::start();
    server.reset_stats();
    let out = demo(
        &["--redis", &server.url()],
        &["--workers", "3", "--keys", "50", "--repeat", "2"],
    );
    out.assert_code(0);
    check_table(&out.stdout, 3, 50, 2);
    assert!(out.stdout.contains("worker processes"), "{}", out.stdout);
    // The triggers reached this server (the client may coalesce concurrent
    // claims into fewer script calls), over one connection per worker
    // process plus the parent's.
    let calls = server.command_calls("evalsha") + server.command_calls("eval");
    assert!(calls >= 3, "{calls} script calls for 3 workers");
    let info = server.info("stats");
    let conns: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("total_connections_received:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("total_connections_received");
    assert!(
        conns >= 4,
        "{conns} connections for 3 workers and the parent"
    );
    // A fresh environment, holding exactly the demo's records, cleaned up
    // after a successful run.
    assert!(out.stdout.contains("environment demo-"), "{}", out.stdout);
    assert!(
        out.stdout.contains("deleted the demo's 50 records"),
        "{}",
        out.stdout
    );
    assert_eq!(server.dbsize(), 0);
}

#[test]
fn embedded_default_starts_and_stops_a_private_redis_server() {
    runonce_tests::require_binary("redis-server");
    let out = demo(&[], &["--workers", "3", "--keys", "50", "--repeat", "2"]);
    out.assert_code(0);
    check_table(&out.stdout, 3, 50, 2);
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("private redis-server at "))
        .unwrap_or_else(|| panic!("no private server named: {}", out.stdout));
    let addr = line
        .split("private redis-server at ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    // Stopped at the end.
    assert!(TcpStream::connect(addr).is_err(), "{addr} still listening");
}

#[test]
fn in_memory_fallback_uses_threads_and_says_how_to_get_processes() {
    let out = demo(
        &[],
        &[
            "--workers",
            "3",
            "--keys",
            "50",
            "--repeat",
            "2",
            "--in-memory",
        ],
    );
    out.assert_code(0);
    check_table(&out.stdout, 3, 50, 2);
    assert!(out.stdout.contains("worker threads"), "{}", out.stdout);
    assert!(
        out.stdout.contains("apt-get install redis-server"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("brew install redis"), "{}", out.stdout);
}

#[test]
fn fallback_when_redis_server_is_missing() {
    let mut c = common::runonce();
    c.env("REDIS_SERVER_BIN", "/nonexistent/redis-server")
        .args(["demo", "--workers", "2", "--keys", "20", "--repeat", "1"]);
    let out = common::finish(c, None);
    out.assert_code(0);
    check_table(&out.stdout, 2, 20, 1);
    assert!(out.stdout.contains("not installed"), "{}", out.stdout);
    assert!(
        out.stdout.contains("apt-get install redis-server"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_polluted_key_space_is_not_a_problem() {
    // Two demos against one Redis at once use separate environments.
    let server = RedisServer::start();
    let url = server.url();
    let a = std::thread::spawn({
        let url = url.clone();
        move || {
            demo(
                &["--redis", &url],
                &["--workers", "2", "--keys", "30", "--repeat", "2"],
            )
        }
    });
    let b = demo(
        &["--redis", &url],
        &["--workers", "2", "--keys", "30", "--repeat", "2"],
    );
    let a = a.join().unwrap();
    for out in [a, b] {
        out.assert_code(0);
        check_table(&out.stdout, 2, 30, 2);
    }
}

#[test]
fn a_redis_that_evicts_records_fails_the_demo() {
    // The reason runonce wants `maxmemory-policy noeviction`: a Redis that
    // evicts dedupe records under memory pressure hands out duplicate runs,
    // and the demo must catch it (exit 1) rather than report success.
    let server = RedisServer::start();
    let info = server.info("memory");
    let used: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory");
    let limit = (used + 300 * 1024).to_string();
    let _: () = server.query(redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(&limit));
    let _: () = server.query(
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory-policy")
            .arg("allkeys-random"),
    );
    let out = demo(
        &["--redis", &server.url()],
        &["--workers", "2", "--keys", "4000", "--repeat", "2"],
    );
    out.assert_code(1);
    assert!(row(&out.stdout, "duplicate runs") > 0, "{out:#?}");
    assert!(row(&out.stdout, "runs created") > 4000, "{out:#?}");
    assert!(out.stdout.contains("FAIL"), "{out:#?}");
    assert!(!out.stdout.contains("OK:"), "{out:#?}");
    assert!(out.stderr.contains("maxmemory-policy"), "{out:#?}");
}

#[test]
fn a_failed_run_is_not_reported_as_ok() {
    // Every write refused (maxmemory below what the server already uses,
    // nothing to evict): no answers, exit 1, and no "OK".
    let server = RedisServer::builder()
        .arg("maxmemory", "1")
        .arg("maxmemory-policy", "noeviction")
        .start();
    let out = demo(
        &["--redis", &server.url(), "--timeout", "2s"],
        &["--workers", "2", "--keys", "20", "--repeat", "1"],
    );
    out.assert_code(1);
    assert!(out.stdout.contains("FAIL"), "{out:#?}");
    assert!(!out.stdout.contains("OK:"), "{out:#?}");
    assert!(out.stderr.contains("triggers failed"), "{out:#?}");
}
