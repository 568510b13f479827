//! The Redis Cluster backend: the conformance basics, keys spread over every
//! primary, and batches that keep input order.

use std::collections::HashSet;

use runonce::{Dedupe, Outcome, TriggerOptions};
use runonce_tests::RedisCluster;

async fn connect(cluster: &RedisCluster) -> Dedupe {
    Dedupe::builder()
        .cluster(cluster.seed_urls())
        .environment("test")
        .build()
        .await
        .expect("connect to the test cluster")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggers_spread_over_primaries_and_dedupe() {
    let cluster = RedisCluster::start(3, 0);
    let d = connect(&cluster).await;
    assert_eq!(d.eviction_policy(), Some("noeviction"));
    let mut first = Vec::new();
    for i in 0..300 {
        first.push(
            d.trigger("t", TriggerOptions::with_key(format!("k{i}")))
                .await
                .unwrap(),
        );
    }
    for (i, f) in first.iter().enumerate() {
        assert!(!f.cached);
        let again = d
            .trigger("t", TriggerOptions::with_key(format!("k{i}")))
            .await
            .unwrap();
        assert!(again.cached && again.run_id == f.run_id);
    }
    for p in cluster.primaries() {
        assert!(p.dbsize() > 50, "{} holds {} keys", p.addr(), p.dbsize());
    }
    let total: u64 = cluster.primaries().iter().map(|p| p.dbsize()).sum();
    assert_eq!(total, 300);
    // Lifecycle works against whichever node owns the key.
    assert!(d
        .complete("t", "k7", &first[7].run_id, Outcome::Failed)
        .await
        .unwrap());
    assert!(
        !d.trigger("t", TriggerOptions::with_key("k7"))
            .await
            .unwrap()
            .cached
    );
    assert!(d.reset("t", "k8").await.unwrap());
    assert!(d.lookup("t", "k8").await.unwrap().is_none());
    assert_eq!(
        d.lookup("t", "k9").await.unwrap().unwrap().run_id,
        first[9].run_id
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_keeps_order_over_all_slots() {
    let cluster = RedisCluster::start(3, 0);
    let d = connect(&cluster).await;
    let items = |n: usize| -> Vec<TriggerOptions> {
        (0..n)
            .map(|i| TriggerOptions::with_key(format!("item-{i}")))
            .collect()
    };
    let out = d.batch_trigger("t", items(3000)).await.unwrap();
    assert_eq!(out.len(), 3000);
    let mut ids = HashSet::new();
    for (i, r) in out.iter().enumerate() {
        let r = r.as_ref().unwrap();
        assert!(!r.cached, "item {i}");
        assert_eq!(
            r.key,
            Some(
                runonce::IdempotencyKey::create(format!("item-{i}"), runonce::Scope::Global)
                    .unwrap()
            )
        );
        ids.insert(r.run_id.clone());
    }
    assert_eq!(ids.len(), 3000);
    let replay = d.batch_trigger("t", items(3000)).await.unwrap();
    for (a, b) in out.iter().zip(&replay) {
        let (a, b) = (a.as_ref().unwrap(), b.as_ref().unwrap());
        assert!(b.cached && a.run_id == b.run_id);
    }
    let total: u64 = cluster.primaries().iter().map(|p| p.dbsize()).sum();
    assert_eq!(total, 3000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noscript_on_every_node_is_recovered() {
    let cluster = RedisCluster::start(3, 0);
    let d = connect(&cluster).await;
    let before = d
        .batch_trigger(
            "t",
            (0..100)
                .map(|i| TriggerOptions::with_key(format!("n{i}")))
                .collect(),
        )
        .await
        .unwrap();
    for p in cluster.primaries() {
        let _: () = p.query(redis::cmd("SCRIPT").arg("FLUSH"));
    }
    let after = d
        .batch_trigger(
            "t",
            (0..100)
                .map(|i| TriggerOptions::with_key(format!("n{i}")))
                .collect(),
        )
        .await
        .unwrap();
    for (a, b) in before.iter().zip(&after) {
        assert_eq!(a.as_ref().unwrap().run_id, b.as_ref().unwrap().run_id);
    }
}
