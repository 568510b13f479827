//! Graceful failover: `CLUSTER FAILOVER` on replicas while a multi-process
//! trigger storm runs. No duplicate run, and the callers carry on without a
//! restart.

mod storm;

use std::time::{Duration, Instant};

use runonce::Dedupe;
use runonce_tests::{wait_until, RedisCluster, RedisServer};
use storm::{flags, Storm};

const PROCESSES: usize = 4;
const KEYS: usize = 4000;

fn info_field(node: &RedisServer, section: &str, field: &str) -> Option<String> {
    node.info(section).lines().find_map(|l| {
        l.strip_prefix(&format!("{field}:"))
            .map(|v| v.trim().to_owned())
    })
}

/// The replica of the primary on `primary_port`.
fn replica_of(cluster: &RedisCluster, primary_port: u16) -> &RedisServer {
    cluster
        .nodes()
        .iter()
        .find(|n| {
            info_field(n, "replication", "role").as_deref() == Some("slave")
                && info_field(n, "replication", "master_port") == Some(primary_port.to_string())
        })
        .unwrap_or_else(|| panic!("no replica of port {primary_port}"))
}

/// `CLUSTER FAILOVER` on the replica of `primary_port`; waits until the replica is a
/// primary, the old primary follows it, and every node agrees on the new roles.
fn graceful_failover(cluster: &RedisCluster, primary_port: u16) -> u16 {
    let replica = replica_of(cluster, primary_port);
    let t = Instant::now();
    let () = replica.query(redis::cmd("CLUSTER").arg("FAILOVER"));
    wait_until(Duration::from_secs(30), "the replica to take over", || {
        info_field(replica, "replication", "role").as_deref() == Some("master")
    });
    let old = cluster
        .nodes()
        .iter()
        .find(|n| n.port() == primary_port)
        .unwrap();
    wait_until(Duration::from_secs(30), "the old primary to follow", || {
        info_field(old, "replication", "role").as_deref() == Some("slave")
            && info_field(old, "replication", "master_link_status").as_deref() == Some("up")
    });
    wait_until(Duration::from_secs(30), "every node to agree", || {
        cluster.nodes().iter().all(|n| {
            let nodes: String = n.query(redis::cmd("CLUSTER").arg("NODES"));
            nodes
                .lines()
                .any(|l| l.contains(&format!(":{}@", replica.port())) && l.contains("master"))
                && nodes
                    .lines()
                    .any(|l| l.contains(&format!(":{primary_port}@")) && l.contains("slave"))
        })
    });
    eprintln!(
        "failover {primary_port} -> {} took {:?}",
        replica.port(),
        t.elapsed()
    );
    replica.port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_failover_during_a_storm() {
    let cluster = RedisCluster::start(3, 1);
    let mut common = flags(&["--cluster"]);
    common.push(cluster.seed_urls().join(","));
    common.extend(flags(&[
        "--env",
        "failover",
        "--keys",
        &KEYS.to_string(),
        "--repeat",
        "2",
        "--concurrency",
        "8",
        "--pace-ms",
        "5",
        "--retry-errors",
        "--timeout-ms",
        "2000",
    ]));
    let mut storm = Storm::start(PROCESSES, &common);
    storm.wait_answered(2000, Duration::from_secs(30));

    // Fail over two of the three shards, one after the other, mid-storm.
    let primaries: Vec<u16> = cluster.primaries().iter().map(|p| p.port()).collect();
    let before = storm.answered();
    for &p in &primaries[..2] {
        graceful_failover(&cluster, p);
    }
    let after_failovers = storm.answered();
    assert!(
        !storm.finished(),
        "the storm ended before the failovers did; make it longer"
    );
    let out = storm.finish(Duration::from_secs(90));
    eprintln!(
        "storm {:?}: {before} answers before the failovers, {after_failovers} after, {} errors \
         retried (e.g. {:?})",
        out.elapsed,
        out.errors.len(),
        out.errors.first()
    );
    let owners = out.assert_exactly_once(KEYS, PROCESSES, 2, true);

    // The records live on the new primaries, owned by the agreed runs.
    let d = Dedupe::builder()
        .cluster(cluster.seed_urls())
        .environment("failover")
        .build()
        .await
        .unwrap();
    storm::assert_stored_owners(&d, "storm", &owners).await;
}
