//! Connection faults during a storm: a proxy cuts connections and delays
//! replies past the client timeout while 8 worker processes trigger 10,000
//! keys. Every call ends in an answer or a typed error; retries with the
//! same candidate run ID end in the correct answer; Redis holds exactly one
//! run per key and nobody was told `cached: false` for another run.
//!
//! This is the short CI version of the `runonce-soak` command.

use std::process::Command;

#[test]
fn storm_through_a_faulty_proxy() {
    runonce_tests::require_binary("redis-server");
    let out = Command::new(env!("CARGO_BIN_EXE_runonce-soak"))
        .args(["--workers", "8", "--keys", "10000", "--triggers", "40000"])
        .args([
            "--cut",
            "0.01",
            "--delay-chance",
            "0.01",
            "--delay-ms",
            "300",
        ])
        .args(["--timeout-ms", "150", "--seed", "7"])
        .output()
        .expect("run runonce-soak");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(out.status.success(), "soak failed:\n{stdout}\n{stderr}");
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("soak:"))
        .expect("summary line");
    let field = |name: &str| -> u64 {
        summary
            .split_whitespace()
            .find_map(|f| f.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {summary}"))
    };
    assert_eq!(field("duplicates"), 0);
    assert_eq!(field("disagreements"), 0);
    assert_eq!(field("false_created"), 0);
    assert_eq!(field("answered"), field("triggers"));
    assert!(
        field("cuts") + field("delays") > 0,
        "no fault was injected: {summary}"
    );
    assert!(
        field("failed_attempts") > 0,
        "faults never reached a caller: {summary}"
    );
}
