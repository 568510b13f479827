//! Saturation: when no connection is free, callers get a typed error within
//! a bounded time instead of queueing forever.

use std::time::{Duration, Instant};

use runonce::{Dedupe, Error, ShortfallPolicy, TriggerOptions};
use runonce_tests::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_exhaustion_is_typed_and_bounded() {
    let server = RedisServer::start();
    // Durable claims lease a connection each; with one connection and a
    // WAIT that cannot be met (no replica), the lease is held for 2 s.
    let timeout = Duration::from_millis(600);
    let d = Dedupe::builder()
        .redis_url(server.url())
        .pool_size(1)
        .timeout(timeout)
        .min_replicas(1, Duration::from_secs(2))
        .on_replica_shortfall(ShortfallPolicy::Report)
        .build()
        .await
        .unwrap();
    let holder = {
        let d = d.clone();
        tokio::spawn(async move { d.trigger("t", TriggerOptions::with_key("slow")).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let e = d
        .trigger("t", TriggerOptions::with_key("blocked"))
        .await
        .unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(e, Error::PoolExhausted { .. }), "{e:?}");
    assert!(e.to_string().contains("pool"), "{e}");
    assert!(waited < timeout * 2, "waited {waited:?}");
    let slow = holder.await.unwrap().unwrap();
    assert_eq!(slow.replicas, Some(0), "no replica acknowledged");
    assert!(!slow.cached);
    assert!(
        d.lookup("t", "blocked").await.unwrap().is_none(),
        "nothing written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shortfall_error_policy_names_the_counts() {
    let server = RedisServer::start();
    let d = Dedupe::builder()
        .redis_url(server.url())
        .min_replicas(1, Duration::from_millis(50))
        .build()
        .await
        .unwrap();
    let e = d
        .trigger("t", TriggerOptions::with_key("k").run_id("run_durable_1"))
        .await
        .unwrap_err();
    match &e {
        Error::ReplicaShortfall {
            wanted,
            reached,
            run_id,
            ..
        } => {
            assert_eq!((*wanted, *reached), (1, 0));
            assert_eq!(run_id, "run_durable_1");
        }
        other => panic!("expected ReplicaShortfall, got {other:?}"),
    }
    // The claim stands on the primary; a retry with the same candidate is
    // re-entrant.
    let rec = d.lookup("t", "k").await.unwrap().unwrap();
    assert_eq!(rec.run_id, "run_durable_1");
}
