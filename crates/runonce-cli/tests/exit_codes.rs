//! Every exit code: 0 success, 2 invalid input (before anything is written,
//! even with Redis down), 3 payload mismatch naming the owner, 1 backend
//! failure (see also unreachable.rs).

mod common;

use common::run;
use runonce_tests::{free_port, RedisServer};

/// Invalid inputs: (arguments, a piece of the value stderr must name).
fn invalid_cases() -> Vec<(Vec<&'static str>, &'static str)> {
    vec![
        (
            vec!["trigger", "--task", "t", "--key", "k", "--ttl", "0s"],
            "0s",
        ),
        (
            vec!["trigger", "--task", "t", "--key", "k", "--ttl", "5x"],
            "5x",
        ),
        (
            vec!["trigger", "--task", "t", "--key", "k", "--ttl", "400d"],
            "400d",
        ),
        (
            vec!["trigger", "--task", "t", "--key", "k", "--ttl", "-5m"],
            "-5m",
        ),
        (vec!["trigger", "--task", "t", "--key", ""], "empty"),
        (
            vec!["trigger", "--task", "t", "--key", "a", "--key", ""],
            "empty",
        ),
        (
            vec!["trigger", "--task", "t", "--key", "k", "--scope", "bogus"],
            "bogus",
        ),
        (
            vec!["trigger", "--task", "t", "--key", "k", "--scope", "run"],
            "--parent-run",
        ),
        (
            vec!["trigger", "--task", "t", "--key", "k", "--scope", "attempt"],
            "--parent-run",
        ),
        (
            vec![
                "trigger",
                "--task",
                "t",
                "--key",
                "k",
                "--scope",
                "attempt",
                "--parent-run",
                "run_p",
            ],
            "--attempt",
        ),
        (
            vec!["trigger", "--task", "t", "--key", "k", "--payload", "{bad"],
            "{bad",
        ),
        (
            vec![
                "trigger",
                "--task",
                "t",
                "--key",
                "k",
                "--on-mismatch",
                "maybe",
            ],
            "maybe",
        ),
        (vec!["trigger", "--task", "", "--key", "k"], "task"),
        (
            vec!["trigger", "--task", "t", "--key", "k", "--env", ""],
            "environment",
        ),
        (
            vec!["trigger", "--task", "t", "--key", "k", "--run-id", ""],
            "run ID",
        ),
        (
            vec!["trigger", "--task", "t", "--key", "k", "--timeout", "soon"],
            "soon",
        ),
        (vec!["trigger", "--key", "k"], "--task"),
        (vec!["lookup", "--task", "t"], "--key"),
        (
            vec!["lookup", "--task", "t", "--key", "k", "--scope", "run"],
            "--parent-run",
        ),
        (
            vec![
                "complete",
                "--task",
                "t",
                "--key",
                "k",
                "--run-id",
                "run_1",
                "--outcome",
                "bogus",
            ],
            "bogus",
        ),
        (
            vec![
                "complete",
                "--task",
                "t",
                "--key",
                "k",
                "--outcome",
                "failed",
            ],
            "--run-id",
        ),
        (
            vec!["release", "--task", "t", "--key", "", "--run-id", "run_1"],
            "empty",
        ),
        (vec!["reset", "--task", "t", "--key", ""], "empty"),
        (vec!["batch", "--task", "t", "--batch-key", ""], "empty"),
        (vec!["nonsense"], "nonsense"),
        (vec!["demo", "--workers", "0"], "0"),
    ]
}

#[test]
fn invalid_input_exits_2_names_the_value_and_writes_nothing() {
    let server = RedisServer::start();
    let url = server.url();
    for (args, named) in invalid_cases() {
        let out = run(&url, &args);
        assert_eq!(out.code(), 2, "{args:?}: {out:#?}");
        assert!(
            out.stderr.contains("error"),
            "{args:?}: stderr has no error message: {out:#?}"
        );
        assert!(
            out.stderr.contains(named),
            "{args:?}: stderr does not name {named:?}: {out:#?}"
        );
        assert!(out.stdout.is_empty(), "{args:?}: {out:#?}");
        assert_eq!(server.dbsize(), 0, "{args:?} wrote to Redis");
    }
}

#[test]
fn invalid_input_exits_2_even_with_redis_down() {
    // Validation happens before connecting: nothing listens on this port.
    let url = format!("redis://127.0.0.1:{}", free_port());
    for (args, named) in invalid_cases() {
        let out = run(&url, &args);
        assert_eq!(out.code(), 2, "{args:?}: {out:#?}");
        assert!(out.stderr.contains(named), "{args:?}: {out:#?}");
    }
}

#[test]
fn messages_are_prefixed_error() {
    let server = RedisServer::start();
    let out = run(
        &server.url(),
        &["trigger", "--task", "t", "--key", "k", "--ttl", "0s"],
    );
    out.assert_code(2);
    assert!(out.stderr.starts_with("error: "), "{out:#?}");
    assert!(out.stderr.contains("invalid TTL"), "{out:#?}");
}

#[test]
fn payload_mismatch_exits_3_naming_the_owner() {
    let server = RedisServer::start();
    let url = server.url();
    let first = run(
        &url,
        &[
            "trigger",
            "--task",
            "t",
            "--key",
            "k",
            "--payload",
            r#"{"n":1}"#,
        ],
    )
    .assert_code(0)
    .json();
    let owner = first["run_id"].as_str().unwrap().to_owned();
    let out = run(
        &url,
        &[
            "trigger",
            "--task",
            "t",
            "--key",
            "k",
            "--payload",
            r#"{"n":2}"#,
        ],
    );
    out.assert_code(3);
    assert!(out.stdout.is_empty(), "{out:#?}");
    assert!(out.stderr.starts_with("error: "), "{out:#?}");
    assert!(
        out.stderr.contains(&owner),
        "stderr must name {owner}: {out:#?}"
    );
    // Nothing changed.
    let rec = run(&url, &["lookup", "--task", "t", "--key", "k"])
        .assert_code(0)
        .json();
    assert_eq!(rec["run_id"], owner.as_str());
    assert_eq!(server.dbsize(), 1);
}

#[test]
fn success_exits_0_for_every_command() {
    let server = RedisServer::start();
    let url = server.url();
    let t = run(&url, &["trigger", "--task", "t", "--key", "k"])
        .assert_code(0)
        .json();
    let id = t["run_id"].as_str().unwrap();
    run(&url, &["lookup", "--task", "t", "--key", "k"]).assert_code(0);
    run(
        &url,
        &[
            "complete",
            "--task",
            "t",
            "--key",
            "k",
            "--run-id",
            id,
            "--outcome",
            "canceled",
        ],
    )
    .assert_code(0);
    run(
        &url,
        &["release", "--task", "t", "--key", "k", "--run-id", id],
    )
    .assert_code(0);
    run(&url, &["reset", "--task", "t", "--key", "k"]).assert_code(0);
    let mut c = common::runonce();
    c.args(["--redis", &url, "batch", "--task", "t"]);
    common::finish(c, Some("{\"key\":\"k\"}\n")).assert_code(0);
}

#[test]
fn backend_failure_exits_1_for_every_command() {
    let url = format!("redis://127.0.0.1:{}", free_port());
    for args in [
        vec!["trigger", "--task", "t", "--key", "k"],
        vec!["lookup", "--task", "t", "--key", "k"],
        vec![
            "complete",
            "--task",
            "t",
            "--key",
            "k",
            "--run-id",
            "run_1",
            "--outcome",
            "succeeded",
        ],
        vec!["release", "--task", "t", "--key", "k", "--run-id", "run_1"],
        vec!["reset", "--task", "t", "--key", "k"],
        vec!["demo", "--workers", "2", "--keys", "5", "--repeat", "1"],
    ] {
        let out = run(&url, &args);
        assert_eq!(out.code(), 1, "{args:?}: {out:#?}");
        assert!(out.stderr.contains("error: "), "{args:?}: {out:#?}");
    }
    let mut c = common::runonce();
    c.args(["--redis", &url, "batch", "--task", "t"]);
    let out = common::finish(c, Some("{\"key\":\"k\"}\n"));
    out.assert_code(1);
    assert!(out.stdout.is_empty(), "{out:#?}");
}
