//! A trigger retried with the same candidate run ID (after a lost reply)
//! answers `cached: false` with that run ID; another candidate is cached.

mod common;

use common::Fixture;
use runonce::TriggerOptions;

async fn retry_with_same_candidate_is_not_cached(f: Fixture) {
    let opts = || TriggerOptions::with_key("job-9").run_id("run_candidate_1");
    let first = f.dedupe.trigger("sync", opts()).await.unwrap();
    assert_eq!(first.run_id, "run_candidate_1");
    assert!(!first.cached);

    let retry = f.dedupe.trigger("sync", opts()).await.unwrap();
    assert_eq!(retry.run_id, "run_candidate_1");
    assert!(
        !retry.cached,
        "{}: the owner's retry learns it created the run",
        f.name()
    );
    assert!(retry.expires_in_ms.unwrap() <= first.expires_in_ms.unwrap());

    let other = f
        .dedupe
        .trigger(
            "sync",
            TriggerOptions::with_key("job-9").run_id("run_candidate_2"),
        )
        .await
        .unwrap();
    assert_eq!(other.run_id, "run_candidate_1");
    assert!(other.cached);
    assert_eq!(f.dbsize(), 1);
}

async fn no_key_is_always_new_and_touches_nothing(f: Fixture) {
    let a = f
        .dedupe
        .trigger("sync", TriggerOptions::new())
        .await
        .unwrap();
    let b = f
        .dedupe
        .trigger("sync", TriggerOptions::new())
        .await
        .unwrap();
    assert!(!a.cached && !b.cached);
    assert_ne!(a.run_id, b.run_id);
    assert!(a.run_id.starts_with("run_"));
    assert_eq!((a.key, a.expires_in_ms), (None, None));
    assert_eq!(f.dbsize(), 0, "{}: no key, no write", f.name());
}

conformance!(
    retry_with_same_candidate_is_not_cached,
    no_key_is_always_new_and_touches_nothing
);
