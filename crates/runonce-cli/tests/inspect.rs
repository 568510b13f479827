//! `runonce inspect`: one key's record for humans.

mod common;

use std::time::{Duration, SystemTime};

use common::run;
use runonce::store::storage_key;
use runonce::{IdempotencyKey, Namespace, RunContext, Scope};
use runonce_tests::RedisServer;

/// `label -> value` of the report's lines.
fn fields(out: &str) -> Vec<(String, String)> {
    out.lines()
        .map(|l| {
            let (label, value) = l.split_at(12.min(l.len()));
            (label.trim().to_owned(), value.trim_start().to_owned())
        })
        .collect()
}

fn field(out: &str, label: &str) -> String {
    fields(out)
        .into_iter()
        .find(|(l, _)| l == label)
        .unwrap_or_else(|| panic!("no {label:?} in\n{out}"))
        .1
}

#[test]
fn inspect_shows_owner_state_time_left_creation_fingerprint_and_redis_key() {
    let server = RedisServer::start();
    let url = server.url();
    // Redis runs on this machine, so its clock is this machine's: the
    // creation time shown must fall between here and the inspect call
    // (give or take the clock's ms rounding).
    let before = SystemTime::now() - Duration::from_millis(5);
    let t = run(
        &url,
        &[
            "--env",
            "prod",
            "trigger",
            "--task",
            "send-email",
            "--key",
            "order-7",
            "--ttl",
            "1h",
            "--payload",
            r#"{"to":"a@b.c"}"#,
        ],
    )
    .assert_code(0)
    .json();
    let run_id = t["run_id"].as_str().unwrap().to_owned();
    run(
        &url,
        &[
            "--env",
            "prod",
            "complete",
            "--task",
            "send-email",
            "--key",
            "order-7",
            "--run-id",
            &run_id,
            "--outcome",
            "succeeded",
        ],
    )
    .assert_code(0);

    let out = run(
        &url,
        &[
            "--env",
            "prod",
            "inspect",
            "--task",
            "send-email",
            "--key",
            "order-7",
        ],
    );
    out.assert_code(0);
    let text = &out.stdout;
    let labels: Vec<String> = fields(text).into_iter().map(|(l, _)| l).collect();
    assert_eq!(
        labels,
        [
            "key",
            "digest",
            "task",
            "environment",
            "owner",
            "state",
            "time left",
            "created at",
            "fingerprint"
        ],
        "{text}"
    );
    let key = IdempotencyKey::create("order-7", Scope::Global).unwrap();
    assert_eq!(
        field(text, "key"),
        storage_key("runonce", "prod", &Namespace::task("send-email"), &key)
    );
    let redis_key = field(text, "key");
    let exists: i64 = server.query(redis::cmd("EXISTS").arg(&redis_key));
    assert_eq!(exists, 1, "the shown key is the record's Redis key");
    assert_eq!(field(text, "digest"), t["key"].as_str().unwrap());
    assert_eq!(field(text, "task"), "send-email");
    assert_eq!(field(text, "environment"), "prod");
    assert_eq!(field(text, "owner"), run_id);
    assert_eq!(field(text, "state"), "succeeded");

    // "59m 59s (3599123 ms)": humantime, then the exact ms.
    let left = field(text, "time left");
    let (human, ms) = left.split_once(" (").unwrap();
    let ms: u64 = ms.strip_suffix(" ms)").unwrap().parse().unwrap();
    assert!(ms <= 3_600_000 && ms > 3_540_000, "{left}");
    let parsed = humantime::parse_duration(human).unwrap();
    assert_eq!(parsed.as_secs(), ms / 1000, "{left}");

    // RFC 3339 UTC with milliseconds, from Redis's clock (here: this machine).
    let created = field(text, "created at");
    assert!(created.ends_with('Z') && created.len() == 24, "{created}");
    let at = humantime::parse_rfc3339(&created).unwrap();
    assert!(at >= before, "{created} is before the trigger ran");
    assert!(
        at <= SystemTime::now(),
        "{created} is after the inspect call"
    );

    // The first 8 bytes of SHA-256 over the payload's canonical JSON
    // (here the payload as given: it is already canonical).
    let fp = field(text, "fingerprint");
    assert_eq!(fp, "5fbae3841fb4f233", "sha256 of {{\"to\":\"a@b.c\"}}");
}

#[test]
fn inspect_a_missing_key_says_so_and_exits_0() {
    let server = RedisServer::start();
    let out = run(
        &server.url(),
        &["inspect", "--task", "send-email", "--key", "nothing-here"],
    );
    out.assert_code(0);
    assert!(out.stderr.is_empty(), "{out:#?}");
    assert_eq!(
        field(&out.stdout, "record"),
        "none: no live record holds this key; the next trigger starts a new run"
    );
    assert_eq!(field(&out.stdout, "environment"), "dev");
    assert!(!out.stdout.contains("owner"), "{out:#?}");
    assert_eq!(server.dbsize(), 0, "inspect never writes");
}

#[test]
fn inspect_takes_the_key_flags_of_lookup() {
    let server = RedisServer::start();
    let url = server.url();
    let t = run(
        &url,
        &[
            "trigger",
            "--task",
            "charge",
            "--key",
            "step-1",
            "--scope",
            "run",
            "--parent-run",
            "run_parent_9",
            "--group",
            "payments",
        ],
    )
    .assert_code(0)
    .json();
    let out = run(
        &url,
        &[
            "inspect",
            "--task",
            "charge",
            "--key",
            "step-1",
            "--scope",
            "run",
            "--parent-run",
            "run_parent_9",
            "--attempt",
            "2",
            "--group",
            "payments",
        ],
    );
    out.assert_code(0);
    assert_eq!(field(&out.stdout, "owner"), t["run_id"].as_str().unwrap());
    assert_eq!(field(&out.stdout, "group"), "payments");
    assert_eq!(field(&out.stdout, "fingerprint"), "none");
    assert_eq!(field(&out.stdout, "state"), "running");
    let key = IdempotencyKey::create_in("step-1", Scope::Run, &RunContext::new("run_parent_9", 1))
        .unwrap();
    assert_eq!(
        field(&out.stdout, "key"),
        storage_key("runonce", "dev", &Namespace::group("payments"), &key)
    );

    // Bad key flags: exit 2, nothing read.
    let bad = run(
        &url,
        &[
            "inspect", "--task", "charge", "--key", "step-1", "--scope", "run",
        ],
    );
    bad.assert_code(2);
    assert!(bad.stdout.is_empty());
    run(&url, &["inspect", "--task", "charge", "--key", ""]).assert_code(2);
}
