//! complete / release / reset / lookup: only the owner changes a record.

mod common;

use common::Fixture;
use runonce::{FailurePolicy, Outcome, RecordState, TriggerOptions};

async fn failed_releases_the_key(f: Fixture) {
    let a = f
        .dedupe
        .trigger("t", TriggerOptions::with_key("k"))
        .await
        .unwrap();
    assert!(f
        .dedupe
        .complete("t", "k", &a.run_id, Outcome::Failed)
        .await
        .unwrap());
    assert!(f.dedupe.lookup("t", "k").await.unwrap().is_none());
    let b = f
        .dedupe
        .trigger("t", TriggerOptions::with_key("k"))
        .await
        .unwrap();
    assert!(!b.cached, "{}: a failed run frees the key", f.name());
    assert_ne!(a.run_id, b.run_id);
}

async fn succeeded_and_canceled_keep_the_key(f: Fixture) {
    for (key, outcome, state) in [
        ("s", Outcome::Succeeded, RecordState::Succeeded),
        ("c", Outcome::Canceled, RecordState::Canceled),
    ] {
        let a = f
            .dedupe
            .trigger("t", TriggerOptions::with_key(key))
            .await
            .unwrap();
        assert!(f
            .dedupe
            .complete("t", key, &a.run_id, outcome)
            .await
            .unwrap());
        let rec = f.dedupe.lookup("t", key).await.unwrap().unwrap();
        assert_eq!(rec.state, state);
        assert!(rec.expires_in_ms > 0);
        let b = f
            .dedupe
            .trigger("t", TriggerOptions::with_key(key))
            .await
            .unwrap();
        assert!(b.cached && b.run_id == a.run_id, "{}: {key} kept", f.name());
        // Completing again with the same outcome changes nothing.
        assert!(!f
            .dedupe
            .complete("t", key, &a.run_id, outcome)
            .await
            .unwrap());
    }
}

async fn keep_on_failure_policy(f: Fixture) {
    let a = f
        .dedupe
        .trigger("t", TriggerOptions::with_key("k"))
        .await
        .unwrap();
    assert!(f
        .dedupe
        .complete_with("t", "k", &a.run_id, Outcome::Failed, FailurePolicy::Keep)
        .await
        .unwrap());
    let rec = f.dedupe.lookup("t", "k").await.unwrap().unwrap();
    assert_eq!(rec.state, RecordState::Failed);
    assert!(
        f.dedupe
            .trigger("t", TriggerOptions::with_key("k"))
            .await
            .unwrap()
            .cached
    );
}

async fn stale_worker_changes_nothing(f: Fixture) {
    let owner = f
        .dedupe
        .trigger("t", TriggerOptions::with_key("k"))
        .await
        .unwrap();
    let stale = "run_stale_worker";
    assert!(!f.dedupe.release("t", "k", stale).await.unwrap());
    assert!(!f
        .dedupe
        .complete("t", "k", stale, Outcome::Failed)
        .await
        .unwrap());
    assert!(!f
        .dedupe
        .complete("t", "k", stale, Outcome::Succeeded)
        .await
        .unwrap());
    let rec = f.dedupe.lookup("t", "k").await.unwrap().unwrap();
    assert_eq!(rec.run_id, owner.run_id);
    assert_eq!(rec.state, RecordState::Running, "{}", f.name());
    // Nothing to release or complete on a missing key either.
    assert!(!f.dedupe.release("t", "nope", stale).await.unwrap());
    assert!(!f
        .dedupe
        .complete("t", "nope", stale, Outcome::Failed)
        .await
        .unwrap());
}

async fn release_by_owner_frees_the_key(f: Fixture) {
    let a = f
        .dedupe
        .trigger("t", TriggerOptions::with_key("k"))
        .await
        .unwrap();
    assert!(f.dedupe.release("t", "k", &a.run_id).await.unwrap());
    assert!(!f.dedupe.release("t", "k", &a.run_id).await.unwrap());
    assert!(
        !f.dedupe
            .trigger("t", TriggerOptions::with_key("k"))
            .await
            .unwrap()
            .cached
    );
}

async fn reset_and_lookup(f: Fixture) {
    assert!(!f.dedupe.reset("t", "k").await.unwrap(), "{}", f.name());
    assert!(f.dedupe.lookup("t", "k").await.unwrap().is_none());
    let a = f
        .dedupe
        .trigger(
            "t",
            TriggerOptions::with_key("k").ttl(std::time::Duration::from_secs(60)),
        )
        .await
        .unwrap();
    let rec = f.dedupe.lookup("t", "k").await.unwrap().unwrap();
    assert_eq!(rec.run_id, a.run_id);
    assert_eq!(rec.state, RecordState::Running);
    assert!(rec.expires_in_ms > 50_000 && rec.expires_in_ms <= 60_000);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        rec.created_at_ms.abs_diff(now_ms) < 60_000,
        "{}",
        rec.created_at_ms
    );
    assert!(f.dedupe.reset("t", "k").await.unwrap());
    assert!(f.dedupe.lookup("t", "k").await.unwrap().is_none());
    assert_eq!(f.dbsize(), 0);
}

conformance!(
    failed_releases_the_key,
    succeeded_and_canceled_keep_the_key,
    keep_on_failure_policy,
    stale_worker_changes_nothing,
    release_by_owner_frees_the_key,
    reset_and_lookup
);
