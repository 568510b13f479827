//! batch_trigger: order, in-batch repeats, keyless items, per-item errors,
//! batch-level keys, and one round trip for the whole batch.

mod common;

use common::Fixture;
use runonce::{Error, IdempotencyKey, Scope, TriggerOptions};
use serde_json::json;

async fn results_in_order_with_repeats_and_keyless_items(f: Fixture) {
    let existing = f
        .dedupe
        .trigger("t", TriggerOptions::with_key("old"))
        .await
        .unwrap();
    let out = f
        .dedupe
        .batch_trigger(
            "t",
            vec![
                TriggerOptions::with_key("a"),
                TriggerOptions::new(),
                TriggerOptions::with_key("b"),
                TriggerOptions::with_key("a"),
                TriggerOptions::with_key("old"),
                TriggerOptions::new(),
            ],
        )
        .await
        .unwrap();
    assert_eq!(out.len(), 6);
    let r: Vec<_> = out.into_iter().map(Result::unwrap).collect();
    let key = |s: &str| Some(IdempotencyKey::create(s, Scope::Global).unwrap());
    assert_eq!(r[0].key, key("a"));
    assert_eq!(r[2].key, key("b"));
    assert!(!r[0].cached && !r[2].cached);
    assert_eq!(
        r[3].run_id,
        r[0].run_id,
        "{}: a repeat gets the first item's run",
        f.name()
    );
    assert!(r[3].cached);
    assert_eq!(r[4].run_id, existing.run_id);
    assert!(r[4].cached);
    assert!(r[1].key.is_none() && r[5].key.is_none());
    assert!(!r[1].cached && !r[5].cached);
    assert_ne!(r[1].run_id, r[5].run_id);
    assert_eq!(f.dbsize(), 3);
}

async fn one_bad_item_fails_alone(f: Fixture) {
    f.dedupe
        .trigger(
            "t",
            TriggerOptions::with_key("paid").payload(&json!({"v": 1})),
        )
        .await
        .unwrap();
    let out = f
        .dedupe
        .batch_trigger(
            "t",
            vec![
                TriggerOptions::with_key("ok-1"),
                TriggerOptions::with_key(""),
                TriggerOptions::with_key("x").ttl(std::time::Duration::ZERO),
                TriggerOptions::with_key("paid").payload(&json!({"v": 2})),
                TriggerOptions::with_key("ok-2"),
            ],
        )
        .await
        .unwrap();
    assert!(out[0].is_ok() && out[4].is_ok(), "{}: {out:?}", f.name());
    assert!(matches!(out[1], Err(Error::InvalidKey { .. })));
    assert!(matches!(out[2], Err(Error::InvalidTtl { .. })));
    assert!(matches!(out[3], Err(Error::PayloadMismatch { .. })));
    assert_eq!(f.dbsize(), 3, "only the good items and the first record");
}

async fn batch_key_replays_return_the_same_runs(f: Fixture) {
    let items = || (0..5).map(|_| TriggerOptions::new()).collect::<Vec<_>>();
    let first = f
        .dedupe
        .batch_trigger_with_key("t", "nightly", items())
        .await
        .unwrap();
    let replay = f
        .dedupe
        .batch_trigger_with_key("t", "nightly", items())
        .await
        .unwrap();
    let other = f
        .dedupe
        .batch_trigger_with_key("t", "hourly", items())
        .await
        .unwrap();
    for i in 0..5 {
        let (a, b, c) = (
            first[i].as_ref().unwrap(),
            replay[i].as_ref().unwrap(),
            other[i].as_ref().unwrap(),
        );
        assert!(!a.cached && b.cached && !c.cached, "{}: item {i}", f.name());
        assert_eq!(a.run_id, b.run_id);
        assert_ne!(a.run_id, c.run_id);
    }
    let distinct: std::collections::HashSet<_> = first
        .iter()
        .map(|t| t.as_ref().unwrap().run_id.clone())
        .collect();
    assert_eq!(distinct.len(), 5, "each index has its own key");
}

async fn thousand_items_cost_one_round_trip(f: Fixture) {
    let items: Vec<_> = (0..1000)
        .map(|i| TriggerOptions::with_key(format!("item-{i}")))
        .collect();
    // Warm the script cache so the count below is the batch alone.
    f.dedupe
        .trigger("warm", TriggerOptions::with_key("w"))
        .await
        .unwrap();
    if let Some(s) = &f.server {
        s.reset_stats();
    }
    let out = f.dedupe.batch_trigger("t", items).await.unwrap();
    assert_eq!(out.len(), 1000);
    for (i, r) in out.iter().enumerate() {
        let r = r.as_ref().unwrap();
        assert!(!r.cached);
        assert_eq!(
            r.key,
            Some(IdempotencyKey::create(format!("item-{i}"), Scope::Global).unwrap())
        );
    }
    if let Some(s) = &f.server {
        assert_eq!(
            s.command_calls("evalsha"),
            1,
            "one script call for 1,000 items"
        );
        assert_eq!(
            s.command_calls("set"),
            1000,
            "one SET NX per item, inside that call"
        );
        assert_eq!(
            s.command_calls("ping"),
            0,
            "no pool-checkout ping on the hot path"
        );
    }
    assert_eq!(f.dbsize(), 1001);
}

/// Items of one call keep their own windows, whether the call carries one
/// TTL for all of them or one per item.
async fn items_keep_their_own_ttls(f: Fixture) {
    use std::time::Duration;
    let mins = |m: u64| Duration::from_secs(60 * m);
    // Shared: every new item has the same window (a held one keeps its own).
    f.dedupe
        .trigger("t", TriggerOptions::with_key("held").ttl(mins(5)))
        .await
        .unwrap();
    let shared = f
        .dedupe
        .batch_trigger(
            "t",
            vec![
                TriggerOptions::with_key("s1").ttl(mins(10)),
                TriggerOptions::with_key("held").ttl(mins(10)),
                TriggerOptions::with_key("s2").ttl(mins(10)),
            ],
        )
        .await
        .unwrap();
    assert!(shared[1].as_ref().unwrap().cached);
    // Mixed: each item has its own window.
    let mixed = f
        .dedupe
        .batch_trigger(
            "t",
            vec![
                TriggerOptions::with_key("m1").ttl(mins(20)),
                TriggerOptions::with_key("m2"),
                TriggerOptions::with_key("m3").ttl(mins(1)),
            ],
        )
        .await
        .unwrap();
    assert!(mixed.iter().all(|r| !r.as_ref().unwrap().cached));
    let expect = [
        ("s1", mins(10)),
        ("held", mins(5)),
        ("s2", mins(10)),
        ("m1", mins(20)),
        ("m2", Duration::from_secs(30 * 86_400)),
        ("m3", mins(1)),
    ];
    for (key, ttl) in expect {
        let rec = f.dedupe.lookup("t", key).await.unwrap().unwrap();
        let ttl = ttl.as_millis() as u64;
        assert!(
            rec.expires_in_ms <= ttl && rec.expires_in_ms > ttl - 30_000,
            "{}: {key} has {} ms left, expected about {ttl}",
            f.name(),
            rec.expires_in_ms
        );
    }
}

conformance!(
    results_in_order_with_repeats_and_keyless_items,
    one_bad_item_fails_alone,
    batch_key_replays_return_the_same_runs,
    thousand_items_cost_one_round_trip,
    items_keep_their_own_ttls
);
