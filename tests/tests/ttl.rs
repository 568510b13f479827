//! The dedupe window: expiry opens a new window; a cached hit neither
//! extends the record's TTL nor applies its own.

mod common;

use std::time::Duration;

use common::{eventually, Fixture};
use runonce::{TriggerOptions, Ttl};

fn ms(n: u64) -> Ttl {
    Ttl::from(Duration::from_millis(n))
}

async fn expiry_creates_a_new_run(f: Fixture) {
    let first = f
        .dedupe
        .trigger("poll", TriggerOptions::with_key("tick").ttl(ms(100)))
        .await
        .unwrap();
    assert!(!first.cached);
    assert!(first.expires_in_ms.unwrap() <= 100);
    let d = f.dedupe.clone();
    eventually(Duration::from_secs(3), "the record to expire", || {
        let d = d.clone();
        async move { d.lookup("poll", "tick").await.unwrap().is_none() }
    })
    .await;
    let second = f
        .dedupe
        .trigger("poll", TriggerOptions::with_key("tick").ttl(ms(100)))
        .await
        .unwrap();
    assert!(!second.cached, "{}: a new window after expiry", f.name());
    assert_ne!(second.run_id, first.run_id);
}

async fn cached_hit_keeps_the_original_window(f: Fixture) {
    let first = f
        .dedupe
        .trigger("poll", TriggerOptions::with_key("tock").ttl(ms(200)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let hit = f
        .dedupe
        .trigger(
            "poll",
            TriggerOptions::with_key("tock").ttl(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    assert!(hit.cached);
    assert_eq!(hit.run_id, first.run_id);
    assert!(
        hit.expires_in_ms.unwrap() <= 200,
        "{}: the hit's 60s TTL was not applied: {:?}",
        f.name(),
        hit.expires_in_ms
    );
    let rec = f.dedupe.lookup("poll", "tock").await.unwrap().unwrap();
    assert!(
        rec.expires_in_ms <= 200,
        "not extended: {}",
        rec.expires_in_ms
    );
    // The record still dies on the original schedule.
    let d = f.dedupe.clone();
    eventually(Duration::from_secs(3), "the original window to end", || {
        let d = d.clone();
        async move { d.lookup("poll", "tock").await.unwrap().is_none() }
    })
    .await;
}

async fn default_window_is_thirty_days(f: Fixture) {
    let t = f
        .dedupe
        .trigger("poll", TriggerOptions::with_key("long"))
        .await
        .unwrap();
    let left = t.expires_in_ms.unwrap();
    assert_eq!(left, 30 * 86_400_000);
    let rec = f.dedupe.lookup("poll", "long").await.unwrap().unwrap();
    assert!(rec.expires_in_ms > 30 * 86_400_000 - 60_000);
}

conformance!(
    expiry_creates_a_new_run,
    cached_hit_keeps_the_original_window,
    default_window_is_thirty_days
);
