//! The JSON each command prints, field by field, against a real redis-server.

mod common;

use common::{assert_hex64, assert_keyed_trigger, assert_object_keys, run};
use runonce_tests::RedisServer;
use serde_json::Value;

#[test]
fn trigger_then_cached_with_the_same_run() {
    let server = RedisServer::start();
    let url = server.url();
    let first = run(
        &url,
        &["trigger", "--task", "send-email", "--key", "order-7"],
    );
    first.assert_code(0);
    assert!(first.stderr.is_empty(), "{first:#?}");
    let v = first.json();
    let run_id = assert_keyed_trigger(&v);
    assert!(run_id.starts_with("run_"), "{v}");
    assert_eq!(v["cached"], false);
    // Default window: 30 days.
    let ms = v["expires_in_ms"].as_u64().unwrap();
    assert!(
        ms <= 30 * 86_400_000 && ms > 30 * 86_400_000 - 60_000,
        "{v}"
    );

    let again = run(
        &url,
        &["trigger", "--task", "send-email", "--key", "order-7"],
    );
    let w = again.assert_code(0).json();
    assert_eq!(assert_keyed_trigger(&w), run_id);
    assert_eq!(w["cached"], true);
    assert_eq!(w["key"], v["key"]);
    assert_eq!(server.dbsize(), 1);
}

#[test]
fn one_document_per_invocation() {
    let server = RedisServer::start();
    let out = run(&server.url(), &["trigger", "--task", "t", "--key", "k"]);
    out.assert_code(0);
    assert_eq!(out.stdout.lines().count(), 1, "{out:#?}");
    assert!(out.stdout.ends_with('\n'));
}

#[test]
fn trigger_without_key_is_a_new_run_with_null_key() {
    let server = RedisServer::start();
    let a = run(&server.url(), &["trigger", "--task", "t"])
        .assert_code(0)
        .json();
    let b = run(&server.url(), &["trigger", "--task", "t"])
        .assert_code(0)
        .json();
    for v in [&a, &b] {
        assert_object_keys(v, &["run_id", "cached", "key", "expires_in_ms"]);
        assert_eq!(v["cached"], false);
        assert_eq!(v["key"], Value::Null);
        assert_eq!(v["expires_in_ms"], Value::Null);
        assert!(v["run_id"].as_str().unwrap().starts_with("run_"));
    }
    assert_ne!(a["run_id"], b["run_id"]);
    // Redis is not touched.
    assert_eq!(server.dbsize(), 0);
}

#[test]
fn repeated_key_flags_are_parts_of_one_key() {
    let server = RedisServer::start();
    let url = server.url();
    let split = run(
        &url,
        &["trigger", "--task", "t", "--key", "a", "--key", "b"],
    )
    .assert_code(0)
    .json();
    let joined = run(&url, &["trigger", "--task", "t", "--key", "a-b"])
        .assert_code(0)
        .json();
    let split_again = run(
        &url,
        &["trigger", "--task", "t", "--key", "a", "--key", "b"],
    )
    .assert_code(0)
    .json();
    assert_ne!(split["key"], joined["key"]);
    assert_ne!(split["run_id"], joined["run_id"]);
    assert_eq!(split_again["run_id"], split["run_id"]);
    assert_eq!(split_again["cached"], true);
}

#[test]
fn ttl_sets_the_window() {
    let server = RedisServer::start();
    let v = run(
        &server.url(),
        &["trigger", "--task", "t", "--key", "k", "--ttl", "5m"],
    )
    .assert_code(0)
    .json();
    let ms = v["expires_in_ms"].as_u64().unwrap();
    assert!(ms <= 300_000 && ms > 290_000, "{v}");
    let pttl: i64 = server.query(redis::cmd("PTTL").arg(first_key(&server)));
    assert!(pttl > 290_000 && pttl <= 300_000, "{pttl}");
}

fn first_key(server: &RedisServer) -> String {
    let keys: Vec<String> = server.query(redis::cmd("KEYS").arg("*"));
    assert_eq!(keys.len(), 1, "{keys:?}");
    keys[0].clone()
}

#[test]
fn lookup_null_then_record() {
    let server = RedisServer::start();
    let url = server.url();
    let none = run(&url, &["lookup", "--task", "t", "--key", "k"]);
    none.assert_code(0);
    assert_eq!(none.stdout.trim(), "null");
    assert_eq!(none.json(), Value::Null);

    let t = run(
        &url,
        &[
            "trigger",
            "--task",
            "t",
            "--key",
            "k",
            "--payload",
            r#"{"to":"a@b.c"}"#,
        ],
    )
    .assert_code(0)
    .json();
    let rec = run(&url, &["lookup", "--task", "t", "--key", "k"])
        .assert_code(0)
        .json();
    assert_object_keys(
        &rec,
        &["run_id", "state", "expires_in_ms", "has_fingerprint"],
    );
    assert_eq!(rec["run_id"], t["run_id"]);
    assert_eq!(rec["state"], "running");
    assert!(rec["expires_in_ms"].as_u64().unwrap() > 0);
    assert_eq!(rec["has_fingerprint"], true);

    run(&url, &["trigger", "--task", "t", "--key", "plain"]).assert_code(0);
    let plain = run(&url, &["lookup", "--task", "t", "--key", "plain"])
        .assert_code(0)
        .json();
    assert_eq!(plain["has_fingerprint"], false);
}

#[test]
fn complete_release_reset_report_changed() {
    let server = RedisServer::start();
    let url = server.url();
    let t = run(&url, &["trigger", "--task", "t", "--key", "k"])
        .assert_code(0)
        .json();
    let run_id = t["run_id"].as_str().unwrap();

    // A stale worker changes nothing.
    let stale = run(
        &url,
        &[
            "complete",
            "--task",
            "t",
            "--key",
            "k",
            "--run-id",
            "run_other",
            "--outcome",
            "succeeded",
        ],
    )
    .assert_code(0)
    .json();
    assert_eq!(stale, serde_json::json!({"changed": false}));

    let done = run(
        &url,
        &[
            "complete",
            "--task",
            "t",
            "--key",
            "k",
            "--run-id",
            run_id,
            "--outcome",
            "succeeded",
        ],
    )
    .assert_code(0)
    .json();
    assert_eq!(done, serde_json::json!({"changed": true}));
    let rec = run(&url, &["lookup", "--task", "t", "--key", "k"])
        .assert_code(0)
        .json();
    assert_eq!(rec["state"], "succeeded");

    // release: compare-and-delete.
    let wrong = run(
        &url,
        &[
            "release",
            "--task",
            "t",
            "--key",
            "k",
            "--run-id",
            "run_other",
        ],
    )
    .assert_code(0)
    .json();
    assert_eq!(wrong, serde_json::json!({"changed": false}));
    let released = run(
        &url,
        &["release", "--task", "t", "--key", "k", "--run-id", run_id],
    )
    .assert_code(0)
    .json();
    assert_eq!(released, serde_json::json!({"changed": true}));
    assert_eq!(server.dbsize(), 0);

    // reset: unconditional; says whether a record existed.
    run(&url, &["trigger", "--task", "t", "--key", "k"]).assert_code(0);
    let reset = run(&url, &["reset", "--task", "t", "--key", "k"])
        .assert_code(0)
        .json();
    assert_eq!(reset, serde_json::json!({"changed": true}));
    let again = run(&url, &["reset", "--task", "t", "--key", "k"])
        .assert_code(0)
        .json();
    assert_eq!(again, serde_json::json!({"changed": false}));
}

#[test]
fn failed_outcome_releases_the_key() {
    let server = RedisServer::start();
    let url = server.url();
    let first = run(&url, &["trigger", "--task", "t", "--key", "k"])
        .assert_code(0)
        .json();
    let run_id = first["run_id"].as_str().unwrap();
    let failed = run(
        &url,
        &[
            "complete",
            "--task",
            "t",
            "--key",
            "k",
            "--run-id",
            run_id,
            "--outcome",
            "failed",
        ],
    )
    .assert_code(0)
    .json();
    assert_eq!(failed["changed"], true);
    assert_eq!(
        run(&url, &["lookup", "--task", "t", "--key", "k"])
            .assert_code(0)
            .json(),
        Value::Null
    );
    let retry = run(&url, &["trigger", "--task", "t", "--key", "k"])
        .assert_code(0)
        .json();
    assert_eq!(retry["cached"], false);
    assert_ne!(retry["run_id"], first["run_id"]);
}

#[test]
fn candidate_run_id_is_reentrant() {
    let server = RedisServer::start();
    let url = server.url();
    let args = [
        "trigger", "--task", "t", "--key", "k", "--run-id", "run_mine",
    ];
    let a = run(&url, &args).assert_code(0).json();
    assert_eq!(a["run_id"], "run_mine");
    assert_eq!(a["cached"], false);
    // A retry with the same candidate (a lost reply) learns it made the claim.
    let b = run(&url, &args).assert_code(0).json();
    assert_eq!(b["run_id"], "run_mine");
    assert_eq!(b["cached"], false);
    // Another candidate sees the owner.
    let c = run(
        &url,
        &[
            "trigger",
            "--task",
            "t",
            "--key",
            "k",
            "--run-id",
            "run_theirs",
        ],
    )
    .assert_code(0)
    .json();
    assert_eq!(c["run_id"], "run_mine");
    assert_eq!(c["cached"], true);
}

#[test]
fn scopes_mix_the_parent_run_into_the_key() {
    let server = RedisServer::start();
    let url = server.url();
    let key = |extra: &[&str]| {
        let mut args = vec!["trigger", "--task", "t", "--key", "step"];
        args.extend_from_slice(extra);
        let v = run(&url, &args).assert_code(0).json();
        assert_keyed_trigger(&v);
        v["key"].as_str().unwrap().to_owned()
    };
    let global = key(&[]);
    assert_eq!(key(&["--scope", "global"]), global);
    let run_a1 = key(&["--scope", "run", "--parent-run", "run_a"]);
    let run_a2 = key(&["--scope", "run", "--parent-run", "run_a", "--attempt", "2"]);
    let run_b = key(&["--scope", "run", "--parent-run", "run_b"]);
    let att_a1 = key(&[
        "--scope",
        "attempt",
        "--parent-run",
        "run_a",
        "--attempt",
        "1",
    ]);
    let att_a2 = key(&[
        "--scope",
        "attempt",
        "--parent-run",
        "run_a",
        "--attempt",
        "2",
    ]);
    assert_eq!(run_a1, run_a2, "run scope is stable across retries");
    assert_ne!(run_a1, run_b);
    assert_ne!(run_a1, global);
    assert_ne!(att_a1, att_a2, "attempt scope is unique per attempt");
    assert_ne!(att_a1, run_a1);
    for k in [&global, &run_a1, &run_b, &att_a1, &att_a2] {
        assert_hex64(k);
    }
    // lookup takes the same scope flags.
    let rec = run(
        &url,
        &[
            "lookup",
            "--task",
            "t",
            "--key",
            "step",
            "--scope",
            "attempt",
            "--parent-run",
            "run_a",
            "--attempt",
            "2",
        ],
    )
    .assert_code(0)
    .json();
    assert!(rec["run_id"].is_string(), "{rec}");
}

#[test]
fn groups_dedupe_across_tasks_and_environments_isolate() {
    let server = RedisServer::start();
    let url = server.url();
    let a = run(
        &url,
        &[
            "trigger", "--task", "email", "--key", "u1", "--group", "notify",
        ],
    )
    .assert_code(0)
    .json();
    let b = run(
        &url,
        &[
            "trigger", "--task", "sms", "--key", "u1", "--group", "notify",
        ],
    )
    .assert_code(0)
    .json();
    assert_eq!(b["run_id"], a["run_id"]);
    assert_eq!(b["cached"], true);
    // Without the group, tasks are separate.
    let c = run(&url, &["trigger", "--task", "sms", "--key", "u1"])
        .assert_code(0)
        .json();
    assert_eq!(c["cached"], false);
    // Another environment is another world.
    let d = run(
        &url,
        &[
            "trigger", "--task", "email", "--key", "u1", "--group", "notify", "--env", "prod",
        ],
    )
    .assert_code(0)
    .json();
    assert_eq!(d["cached"], false);
    assert_ne!(d["run_id"], a["run_id"]);
    // lookup by group.
    let rec = run(
        &url,
        &[
            "lookup", "--task", "any", "--key", "u1", "--group", "notify",
        ],
    )
    .assert_code(0)
    .json();
    assert_eq!(rec["run_id"], a["run_id"]);
}

#[test]
fn global_options_before_or_after_the_subcommand_and_from_the_environment() {
    let server = RedisServer::start();
    let url = server.url();
    // After the subcommand.
    let mut c = common::runonce();
    c.args([
        "trigger", "--task", "t", "--key", "k", "--redis", &url, "--prefix", "app1", "--env", "e1",
    ]);
    let a = common::finish(c, None).assert_code(0).json();
    // Before it.
    let mut c = common::runonce();
    c.args([
        "--redis",
        &url,
        "--prefix",
        "app1",
        "--env",
        "e1",
        "--timeout",
        "2s",
        "trigger",
        "--task",
        "t",
        "--key",
        "k",
    ]);
    let b = common::finish(c, None).assert_code(0).json();
    assert_eq!(b["run_id"], a["run_id"]);
    assert_eq!(b["cached"], true);
    // From the environment.
    let mut c = common::runonce();
    c.env("REDIS_URL", &url)
        .env("RUNONCE_PREFIX", "app1")
        .env("RUNONCE_ENV", "e1")
        .args(["trigger", "--task", "t", "--key", "k"]);
    let e = common::finish(c, None).assert_code(0).json();
    assert_eq!(e["run_id"], a["run_id"]);

    let keys: Vec<String> = server.query(redis::cmd("KEYS").arg("*"));
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].starts_with("app1:"), "{keys:?}");
    assert!(keys[0].contains("e1"), "{keys:?}");
}

#[test]
fn on_mismatch_existing_returns_the_owner() {
    let server = RedisServer::start();
    let url = server.url();
    let a = run(
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
    // Logically equal payloads match whatever their field order.
    let same = run(
        &url,
        &[
            "trigger",
            "--task",
            "t",
            "--key",
            "k",
            "--payload",
            r#"{ "n" : 1.0 }"#,
        ],
    )
    .assert_code(0)
    .json();
    assert_eq!(same["run_id"], a["run_id"]);
    let b = run(
        &url,
        &[
            "trigger",
            "--task",
            "t",
            "--key",
            "k",
            "--payload",
            r#"{"n":2}"#,
            "--on-mismatch",
            "existing",
        ],
    )
    .assert_code(0)
    .json();
    assert_eq!(b["run_id"], a["run_id"]);
    assert_eq!(b["cached"], true);
}
