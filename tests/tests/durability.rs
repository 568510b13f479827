//! Durability (`min_replicas`): every answer, fresh or cached, carries the
//! replica count its `WAIT` reached, and the shortfall policy applies to
//! cached answers too. A cached answer read from a record that the replicas
//! may not hold (its claim's `WAIT` fell short) could be lost in a failover,
//! so it must not pass as durable.

use std::time::{Duration, Instant};

use runonce::{Dedupe, Error, ShortfallPolicy, TriggerOptions};
use runonce_tests::RedisServer;

const LONG: Duration = Duration::from_secs(10);
const SHORT: Duration = Duration::from_millis(300);

/// Waits until `primary` reports `n` connected, online replicas that have
/// acknowledged a write.
fn wait_replicas(primary: &RedisServer, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let info = primary.info("replication");
        let online = info
            .lines()
            .filter(|l| l.starts_with("slave") && l.contains("state=online"))
            .count();
        if online == n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{n} replica(s) never came online:\n{info}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut c = primary.connection();
    let _: () = redis::cmd("SET")
        .arg("warm")
        .arg("1")
        .query(&mut c)
        .unwrap();
    let acked: usize = redis::cmd("WAIT").arg(n).arg(20_000).query(&mut c).unwrap();
    assert_eq!(acked, n, "the replicas acknowledge a write");
    let _: () = redis::cmd("DEL").arg("warm").query(&mut c).unwrap();
}

/// A durable handle. Where a replica is expected to acknowledge, `wait` is
/// generous (WAIT returns as soon as it does); where none can, it is short.
async fn durable(primary: &RedisServer, policy: ShortfallPolicy, wait: Duration) -> Dedupe {
    Dedupe::builder()
        .redis_url(primary.url())
        .min_replicas(1, wait)
        .on_replica_shortfall(policy)
        .build()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_answers_carry_their_replica_count_and_fall_under_the_policy() {
    let primary = RedisServer::start();
    let mut replica = RedisServer::builder().replica_of(&primary).start();
    wait_replicas(&primary, 1);
    let d = durable(&primary, ShortfallPolicy::Error, LONG).await;

    let first = d
        .trigger("t", TriggerOptions::with_key("k").run_id("run_owner"))
        .await
        .unwrap();
    assert!(!first.cached);
    assert_eq!(first.replicas, Some(1));
    let again = d
        .trigger("t", TriggerOptions::with_key("k").run_id("run_other"))
        .await
        .unwrap();
    assert!(again.cached);
    assert_eq!(again.run_id, "run_owner");
    assert_eq!(again.replicas, Some(1), "the cached answer was confirmed");

    // The held record is re-written in place for the WAIT: same value, TTL
    // kept.
    let key = d.storage_key("t", &first.key.unwrap());
    let value: Vec<u8> = primary.query(redis::cmd("GET").arg(&key));
    let ttl: i64 = primary.query(redis::cmd("PTTL").arg(&key));
    let window = first.expires_in_ms.unwrap() as i64;
    assert!(ttl > 0 && ttl <= window, "TTL kept: {ttl} of {window} ms");
    let replica_value: Vec<u8> = replica.query(redis::cmd("GET").arg(&key));
    assert_eq!(value, replica_value, "the replica holds the record");

    // Without its replica, the primary cannot confirm any answer.
    replica.kill();
    let d = durable(&primary, ShortfallPolicy::Error, SHORT).await;
    let report = durable(&primary, ShortfallPolicy::Report, SHORT).await;
    let e = d
        .trigger("t", TriggerOptions::with_key("k").run_id("run_other"))
        .await
        .unwrap_err();
    match &e {
        Error::ReplicaShortfall {
            run_id,
            wanted,
            reached,
            ..
        } => {
            assert_eq!(run_id, "run_owner", "the error names the owner");
            assert_eq!((*wanted, *reached), (1, 0));
        }
        other => panic!("expected ReplicaShortfall, got {other:?}"),
    }
    // The owner's own retry (re-entrant) falls short the same way.
    let e = d
        .trigger("t", TriggerOptions::with_key("k").run_id("run_owner"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::ReplicaShortfall { .. }), "{e:?}");
    // Under the report policy, the cached answer says how far it got.
    let reported = report
        .trigger("t", TriggerOptions::with_key("k").run_id("run_other"))
        .await
        .unwrap();
    assert!(reported.cached);
    assert_eq!(reported.run_id, "run_owner");
    assert_eq!(reported.replicas, Some(0));

    // None of this changed the record.
    let after: Vec<u8> = primary.query(redis::cmd("GET").arg(&key));
    let ttl_after: i64 = primary.query(redis::cmd("PTTL").arg(&key));
    assert_eq!(after, value);
    assert!(
        ttl_after <= ttl && ttl_after > ttl - 60_000,
        "{ttl} -> {ttl_after}"
    );
    assert_eq!(primary.dbsize(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_record_the_server_will_not_rewrite_is_an_item_error() {
    // min-replicas-to-write 1 with no replica: the primary refuses writes,
    // so a durable caller cannot confirm the held record and gets a typed
    // error, while a non-durable caller still reads it.
    let primary = RedisServer::start();
    let plain = Dedupe::builder()
        .redis_url(primary.url())
        .build()
        .await
        .unwrap();
    plain
        .trigger("t", TriggerOptions::with_key("k").run_id("run_owner"))
        .await
        .unwrap();
    let _: () = primary.query(
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("min-replicas-to-write")
            .arg("1"),
    );
    let d = durable(&primary, ShortfallPolicy::Report, SHORT).await;
    let e = d
        .trigger("t", TriggerOptions::with_key("k").run_id("run_other"))
        .await
        .unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    assert!(e.to_string().contains("NOREPLICAS"), "{e}");
    let read = plain
        .trigger("t", TriggerOptions::with_key("k").run_id("run_other"))
        .await
        .unwrap();
    assert!(read.cached);
    assert_eq!(read.run_id, "run_owner");
    assert_eq!(primary.dbsize(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_answer_waits_for_the_record_it_read() {
    // The replica stays connected but stops acknowledging (DEBUG SLEEP), so
    // a fresh claim is on the primary only. A second client, on a connection
    // that never wrote, then reads that record: its answer must report the
    // replicas that hold the record it answers from. (Redis documents WAIT
    // as covering the client's own previous writes; the claim script
    // re-writes a held record in place for durable callers, so the WAIT
    // covers it whatever a server version counts for a read.)
    let primary = RedisServer::start();
    let replica = RedisServer::builder()
        .replica_of(&primary)
        .arg("enable-debug-command", "yes")
        .start();
    wait_replicas(&primary, 1);
    // (wait_replicas saw one write acknowledged: the replica's ack offset is
    // past 0, so a WAIT with nothing of its own to wait for would count it.)
    let mut conn = replica.connection();
    let sleeper = std::thread::spawn(move || {
        let _: () = redis::cmd("DEBUG")
            .arg("SLEEP")
            .arg("3")
            .query(&mut conn)
            .unwrap();
    });
    tokio::time::sleep(Duration::from_millis(200)).await;

    let writer = durable(&primary, ShortfallPolicy::Report, SHORT).await;
    let created = writer
        .trigger("t", TriggerOptions::with_key("k").run_id("run_owner"))
        .await
        .unwrap();
    assert!(!created.cached);
    assert_eq!(
        created.replicas,
        Some(0),
        "the sleeping replica did not ack"
    );

    let reader = durable(&primary, ShortfallPolicy::Report, SHORT).await;
    let cached = reader
        .trigger("t", TriggerOptions::with_key("k").run_id("run_other"))
        .await
        .unwrap();
    assert!(cached.cached);
    assert_eq!(cached.run_id, "run_owner");
    assert_eq!(
        cached.replicas,
        Some(0),
        "the answer came from a record no replica has acknowledged"
    );
    sleeper.join().unwrap();
}
