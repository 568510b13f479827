//! `runonce batch`: JSON lines in, one JSON array out, in input order; a bad
//! line is an error item, not a failed batch.

mod common;

use common::{assert_keyed_trigger, assert_object_keys};
use runonce_tests::RedisServer;
use serde_json::Value;

fn batch(url: &str, extra: &[&str], input: &str) -> common::Run {
    let mut c = common::runonce();
    c.args(["--redis", url, "batch", "--task", "send-email"])
        .args(extra);
    common::finish(c, Some(input))
}

fn assert_error_item(v: &Value, kind: &str) {
    assert_object_keys(v, &["error"]);
    assert_object_keys(&v["error"], &["kind", "message"]);
    assert_eq!(v["error"]["kind"], kind, "{v}");
    assert!(!v["error"]["message"].as_str().unwrap().is_empty());
}

#[test]
fn bad_lines_among_good_ones() {
    let server = RedisServer::start();
    let input = concat!(
        "{\"key\":\"a\"}\n",
        "{\"key\":[\"b\",\"1\"],\"ttl\":\"5m\",\"payload\":{\"to\":\"x@y.z\"}}\n",
        "this is not json\n",
        "\n",
        "{\"key\":\"a\"}\n",
        "{}\n",
        "{\"key\":\"\"}\n",
        "{\"key\":\"c\",\"ttl\":\"soon\"}\n",
        "{\"kye\":\"typo\"}\n",
        "   \n",
        "{\"key\":\"d\"}",
    );
    let out = batch(&server.url(), &[], input);
    out.assert_code(0);
    let items = out.json();
    let items = items.as_array().expect("an array");
    assert_eq!(items.len(), 9, "blank lines skipped: {items:#?}");

    let a = assert_keyed_trigger(&items[0]);
    assert_eq!(items[0]["cached"], false);
    assert_keyed_trigger(&items[1]);
    assert_eq!(items[1]["cached"], false);
    let ms = items[1]["expires_in_ms"].as_u64().unwrap();
    assert!(ms <= 300_000 && ms > 290_000, "{}", items[1]);
    assert_error_item(&items[2], "invalid_input");
    // A repeated key gets the first item's run.
    assert_eq!(assert_keyed_trigger(&items[3]), a);
    assert_eq!(items[3]["cached"], true);
    assert_eq!(items[3]["key"], items[0]["key"]);
    // No key: a new run.
    assert_object_keys(&items[4], &["run_id", "cached", "key", "expires_in_ms"]);
    assert_eq!(items[4]["key"], Value::Null);
    assert_eq!(items[4]["cached"], false);
    assert_error_item(&items[5], "invalid_key");
    assert_error_item(&items[6], "invalid_ttl");
    assert_error_item(&items[7], "invalid_input");
    assert_keyed_trigger(&items[8]);

    // Only the good keyed lines wrote: a, b/1, d.
    assert_eq!(server.dbsize(), 3);

    // The batch's keys are Global: a plain trigger sees the same run.
    let mut c = common::runonce();
    c.args([
        "--redis",
        &server.url(),
        "trigger",
        "--task",
        "send-email",
        "--key",
        "a",
    ]);
    let t = common::finish(c, None).assert_code(0).json();
    assert_eq!(t["run_id"], a.as_str());
    assert_eq!(t["cached"], true);
}

#[test]
fn a_replay_returns_the_same_runs() {
    let server = RedisServer::start();
    let input = "{\"key\":\"x\"}\n{\"key\":[\"y\",\"z\"]}\n";
    let first = batch(&server.url(), &[], input).assert_code(0).json();
    let replay = batch(&server.url(), &[], input).assert_code(0).json();
    for i in 0..2 {
        assert_eq!(first[i]["cached"], false);
        assert_eq!(replay[i]["cached"], true);
        assert_eq!(replay[i]["run_id"], first[i]["run_id"]);
    }
}

#[test]
fn batch_key_derives_item_keys() {
    let server = RedisServer::start();
    let input = "{}\n{}\n{\"key\":\"own\"}\n";
    let first = batch(&server.url(), &["--batch-key", "nightly"], input)
        .assert_code(0)
        .json();
    let replay = batch(&server.url(), &["--batch-key", "nightly"], input)
        .assert_code(0)
        .json();
    for i in 0..3 {
        assert_keyed_trigger(&first[i]);
        assert_eq!(first[i]["cached"], false, "{first}");
        assert_eq!(replay[i]["run_id"], first[i]["run_id"]);
        assert_eq!(replay[i]["cached"], true);
    }
    assert_ne!(first[0]["key"], first[1]["key"]);
    // Another batch key is another set of runs.
    let other = batch(&server.url(), &["--batch-key", "weekly"], "{}\n")
        .assert_code(0)
        .json();
    assert_eq!(other[0]["cached"], false);
    assert_ne!(other[0]["key"], first[0]["key"]);
}

#[test]
fn payload_mismatch_fails_only_its_item() {
    let server = RedisServer::start();
    batch(
        &server.url(),
        &[],
        "{\"key\":\"p\",\"payload\":{\"n\":1}}\n",
    )
    .assert_code(0);
    let out = batch(
        &server.url(),
        &[],
        "{\"key\":\"p\",\"payload\":{\"n\":2}}\n{\"key\":\"q\"}\n",
    );
    out.assert_code(0);
    let items = out.json();
    assert_error_item(&items[0], "payload_mismatch");
    assert_eq!(items[1]["cached"], false);
}

#[test]
fn empty_input_is_an_empty_array() {
    let server = RedisServer::start();
    let out = batch(&server.url(), &[], "");
    out.assert_code(0);
    assert_eq!(out.json(), serde_json::json!([]));
    let out = batch(&server.url(), &[], "\n\n");
    assert_eq!(out.assert_code(0).json(), serde_json::json!([]));
}
