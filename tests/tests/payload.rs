//! Payload keys (RFC 8785 canonical JSON) and payload fingerprints with
//! their mismatch policies.

mod common;

use common::Fixture;
use runonce::{Error, IdempotencyKey, MismatchPolicy, TriggerOptions};
use serde_json::json;

async fn equal_payloads_give_equal_keys(f: Fixture) {
    let a = IdempotencyKey::from_payload(&json!({"to": "a@b.c", "n": 1.0, "tags": ["x", "y"]}))
        .unwrap();
    let b =
        IdempotencyKey::from_payload(&json!({"tags": ["x", "y"], "n": 1, "to": "a@b.c"})).unwrap();
    let c =
        IdempotencyKey::from_payload(&json!({"tags": ["y", "x"], "n": 1, "to": "a@b.c"})).unwrap();
    assert_eq!(a, b, "field order and 1.0 vs 1 do not matter");
    assert_ne!(a, c, "array order does");
    let t1 = f
        .dedupe
        .trigger("t", TriggerOptions::with_key(a))
        .await
        .unwrap();
    let t2 = f
        .dedupe
        .trigger("t", TriggerOptions::with_key(b))
        .await
        .unwrap();
    assert!(t2.cached && t1.run_id == t2.run_id, "{}", f.name());
}

async fn mismatch_errors_naming_the_owner(f: Fixture) {
    let first = f
        .dedupe
        .trigger(
            "charge",
            TriggerOptions::with_key("inv-1").payload(&json!({"amount": 10})),
        )
        .await
        .unwrap();
    // Same payload in another field order: a plain cached hit.
    let same = f
        .dedupe
        .trigger(
            "charge",
            TriggerOptions::with_key("inv-1").payload(&json!({"amount": 10.0})),
        )
        .await
        .unwrap();
    assert!(same.cached);
    let err = f
        .dedupe
        .trigger(
            "charge",
            TriggerOptions::with_key("inv-1").payload(&json!({"amount": 11})),
        )
        .await
        .unwrap_err();
    match &err {
        Error::PayloadMismatch { owner_run_id, .. } => assert_eq!(owner_run_id, &first.run_id),
        other => panic!("{}: expected PayloadMismatch, got {other:?}", f.name()),
    }
    assert!(err.to_string().contains(&first.run_id));
    let rec = f.dedupe.lookup("charge", "inv-1").await.unwrap().unwrap();
    assert!(rec.has_fingerprint);
    assert_eq!(rec.run_id, first.run_id);
}

async fn return_existing_policy_answers_the_owner(f: Fixture) {
    let first = f
        .dedupe
        .trigger(
            "charge",
            TriggerOptions::with_key("inv-2").payload(&json!({"amount": 10})),
        )
        .await
        .unwrap();
    let again = f
        .dedupe
        .trigger(
            "charge",
            TriggerOptions::with_key("inv-2")
                .payload(&json!({"amount": 99}))
                .on_mismatch(MismatchPolicy::ReturnExisting),
        )
        .await
        .unwrap();
    assert!(again.cached);
    assert_eq!(again.run_id, first.run_id);
}

async fn no_fingerprint_without_payload(f: Fixture) {
    f.dedupe
        .trigger("t", TriggerOptions::with_key("plain"))
        .await
        .unwrap();
    let rec = f.dedupe.lookup("t", "plain").await.unwrap().unwrap();
    assert!(!rec.has_fingerprint);
    assert_eq!(rec.fingerprint, None);
    // A later trigger with a payload cannot compare, so it is a cached hit.
    let hit = f
        .dedupe
        .trigger(
            "t",
            TriggerOptions::with_key("plain").payload(&json!({"a": 1})),
        )
        .await
        .unwrap();
    assert!(hit.cached);
}

conformance!(
    equal_payloads_give_equal_keys,
    mismatch_errors_naming_the_owner,
    return_existing_policy_answers_the_owner,
    no_fingerprint_without_payload
);
