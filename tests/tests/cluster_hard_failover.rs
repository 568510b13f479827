//! Hard failover: `kill -9` of a primary during a trigger storm, measuring how
//! many acknowledged claims the promoted replica lacks, without durability and
//! with `min_replicas(1, ..)`.
//!
//! The loss figures are printed, not asserted: they depend on timing. What is
//! asserted is the durability promise: every claim acknowledged with
//! `min_replicas(1)` met is present after the promotion.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runonce::store::redis::slot;
use runonce::{Dedupe, IdempotencyKey, Scope, ShortfallPolicy, TriggerOptions};
use runonce_tests::{wait_until, RedisCluster, RedisServer};

/// Concurrent trigger loops per handle.
const TASKS: usize = 12;

fn info_field(node: &RedisServer, section: &str, field: &str) -> Option<String> {
    node.try_info(section).and_then(|info| {
        info.lines().find_map(|l| {
            l.strip_prefix(&format!("{field}:"))
                .map(|v| v.trim().to_owned())
        })
    })
}

trait TryInfo {
    fn try_info(&self, section: &str) -> Option<String>;
}

impl TryInfo for RedisServer {
    fn try_info(&self, section: &str) -> Option<String> {
        let client = redis::Client::open(self.url()).ok()?;
        let mut con = client
            .get_connection_with_timeout(Duration::from_millis(500))
            .ok()?;
        redis::cmd("INFO").arg(section).query(&mut con).ok()
    }
}

/// Slot → port of the primary serving it, from `CLUSTER SLOTS`.
fn slot_map(node: &RedisServer) -> HashMap<u16, u16> {
    let ranges: Vec<redis::Value> = node.query(redis::cmd("CLUSTER").arg("SLOTS"));
    let mut map = HashMap::new();
    for r in ranges {
        let redis::Value::Array(f) = r else {
            panic!("CLUSTER SLOTS {r:?}")
        };
        let (redis::Value::Int(lo), redis::Value::Int(hi), redis::Value::Array(p)) =
            (&f[0], &f[1], &f[2])
        else {
            panic!("CLUSTER SLOTS {f:?}")
        };
        let redis::Value::Int(port) = p[1] else {
            panic!("CLUSTER SLOTS node {p:?}")
        };
        for s in *lo..=*hi {
            map.insert(s as u16, port as u16);
        }
    }
    map
}

/// An acknowledged claim: the caller was told `cached: false`.
#[derive(Clone, Debug)]
struct Acked {
    key: String,
    run_id: String,
    replicas: Option<u32>,
    slot: u16,
    at: Instant,
}

/// Trigger loops over fresh keys until `stop`; returns the acknowledged claims.
struct Storm {
    acked: Arc<Mutex<Vec<Acked>>>,
    errors: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Storm {
    fn start(d: &Dedupe, prefix: &str) -> Storm {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..TASKS)
            .map(|t| {
                let (d, acked, errors, stop) =
                    (d.clone(), acked.clone(), errors.clone(), stop.clone());
                let prefix = format!("{prefix}-{t}");
                tokio::spawn(async move {
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let key = format!("{prefix}-{n}");
                        n += 1;
                        match d
                            .trigger("hard", TriggerOptions::with_key(key.as_str()))
                            .await
                        {
                            Ok(t) => {
                                assert!(!t.cached, "fresh key {key} answered cached");
                                let sk = d.storage_key(
                                    "hard",
                                    &IdempotencyKey::create(key.as_str(), Scope::Global).unwrap(),
                                );
                                acked.lock().unwrap().push(Acked {
                                    key,
                                    run_id: t.run_id,
                                    replicas: t.replicas,
                                    slot: slot(&sk),
                                    at: Instant::now(),
                                });
                            }
                            Err(_) => {
                                errors.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                    }
                })
            })
            .collect();
        Storm {
            acked,
            errors,
            stop,
            tasks,
        }
    }

    fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    async fn stop(self) -> (Vec<Acked>, usize) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.expect("storm task");
        }
        let acked = self.acked.lock().unwrap().clone();
        (acked, self.errors.load(Ordering::Relaxed))
    }
}

/// How many of `acked` (those on `victim`'s slots) the cluster no longer holds.
async fn lost(
    checker: &Dedupe,
    acked: &[Acked],
    owner: &HashMap<u16, u16>,
    victim: u16,
) -> (usize, Vec<Acked>) {
    let mine: Vec<&Acked> = acked.iter().filter(|a| owner[&a.slot] == victim).collect();
    let mut missing = Vec::new();
    for a in &mine {
        let rec = checker
            .lookup("hard", a.key.as_str())
            .await
            .expect("lookup after failover");
        if rec.as_ref().map(|r| r.run_id.as_str()) != Some(a.run_id.as_str()) {
            missing.push((*a).clone());
        }
    }
    (mine.len(), missing)
}

async fn handle(cluster: &RedisCluster, env: &str, durable: bool) -> Dedupe {
    let b = Dedupe::builder()
        .cluster(cluster.seed_urls())
        .environment(env)
        .timeout(Duration::from_secs(1));
    let b = if durable {
        b.min_replicas(1, Duration::from_millis(100))
            .on_replica_shortfall(ShortfallPolicy::Report)
    } else {
        b
    };
    b.build().await.expect("connect")
}

/// Kills the primary on `victim` (after cutting its replica off for `cut_off`, if
/// given) while both handles storm, waits for the promotion, and reports the losses.
async fn scenario(
    cluster: &mut RedisCluster,
    dead: &mut Vec<u16>,
    name: &str,
    victim: u16,
    cut_off: Option<Duration>,
) {
    let plain = handle(cluster, "plain", false).await;
    let durable = handle(cluster, "durable", true).await;
    let owner = slot_map(
        cluster
            .nodes()
            .iter()
            .find(|n| !dead.contains(&n.port()))
            .expect("a live node"),
    );
    let replica_port = cluster
        .nodes()
        .iter()
        .find(|n| info_field(n, "replication", "master_port") == Some(victim.to_string()))
        .map(RedisServer::port)
        .expect("the victim has a replica");
    let node =
        |c: &RedisCluster, port: u16| c.nodes().iter().position(|n| n.port() == port).unwrap();

    let storms = [Storm::start(&plain, name), Storm::start(&durable, name)];
    let t = Instant::now();
    while storms.iter().any(|s| s.acked() < 500) {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the storm does not get going"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut link = "up".to_owned();
    if let Some(window) = cut_off {
        // The replica cannot re-authenticate (the primary has no password, so AUTH
        // fails): once its link is cut it stays behind, as after a network blip.
        let replica = &cluster.nodes()[node(cluster, replica_port)];
        let () = replica.query(
            redis::cmd("CONFIG")
                .arg("SET")
                .arg("masterauth")
                .arg("runonce-test-bogus"),
        );
        let victim_node = &cluster.nodes()[node(cluster, victim)];
        let _: i64 = victim_node.query(redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("replica"));
        eprintln!("cut at kill-{window:?}");
        tokio::time::sleep(window).await;
        link = info_field(replica, "replication", "master_link_status").unwrap_or_default();
    }
    let at_kill = (storms[0].acked(), storms[1].acked());
    let kill_time = Instant::now();
    let idx = node(cluster, victim);
    cluster.nodes_mut()[idx].kill();
    dead.push(victim);
    let killed = Instant::now();
    let replica = &cluster.nodes()[node(cluster, replica_port)];
    wait_until(
        Duration::from_secs(30),
        "the replica to be promoted",
        || info_field(replica, "replication", "role").as_deref() == Some("master"),
    );
    let promoted_after = killed.elapsed();
    wait_until(
        Duration::from_secs(30),
        "the cluster to be healthy again",
        || {
            cluster
                .nodes()
                .iter()
                .filter(|n| !dead.contains(&n.port()))
                .all(|n| {
                    n.query::<String>(redis::cmd("CLUSTER").arg("INFO"))
                        .contains("cluster_state:ok")
                })
        },
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let [p, d] = storms;
    let (plain_acked, plain_errors) = p.stop().await;
    let (durable_acked, durable_errors) = d.stop().await;
    if cut_off.is_some() {
        let () = replica.query(redis::cmd("CONFIG").arg("SET").arg("masterauth").arg(""));
    }

    let checker = handle(cluster, "plain", false).await;
    let (plain_on_victim, plain_lost) = lost(&checker, &plain_acked, &owner, victim).await;
    let checker = handle(cluster, "durable", false).await;
    let (durable_on_victim, durable_lost) = lost(&checker, &durable_acked, &owner, victim).await;
    let met = |a: &Acked| a.replicas.is_some_and(|r| r >= 1);
    let durable_met_on_victim = durable_acked
        .iter()
        .filter(|a| owner[&a.slot] == victim && met(a))
        .count();
    let lost_met: Vec<&Acked> = durable_lost.iter().filter(|a| met(a)).collect();
    eprintln!(
        "HARD FAILOVER [{name}] replica link at kill: {link}; promoted {promoted_after:.1?} after kill -9\n  \
         no durability:    {} of {plain_on_victim} acknowledged claims on the killed primary's slots lost \
         ({} acknowledged before the kill, {plain_errors} failed calls during the failover)\n  \
         min_replicas(1):  {} of {durable_on_victim} acknowledged claims lost; of the {durable_met_on_victim} \
         that met min_replicas, {} lost ({} acknowledged before the kill, {durable_errors} failed calls)",
        plain_lost.len(),
        at_kill.0,
        durable_lost.len(),
        lost_met.len(),
        at_kill.1,
    );
    for a in &lost_met {
        eprintln!(
            "  LOST MET {a:?} at kill{:+.3}s",
            if a.at > kill_time {
                (a.at - kill_time).as_secs_f64()
            } else {
                -(kill_time - a.at).as_secs_f64()
            }
        );
    }
    assert!(
        lost_met.is_empty(),
        "[{name}] claims acknowledged with min_replicas(1) met were lost: {:?}",
        &lost_met[..lost_met.len().min(5)]
    );
    assert!(
        durable_met_on_victim > 0,
        "[{name}] no durable claim met min_replicas on the victim"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hard_failover_keeps_every_claim_that_met_min_replicas() {
    let mut cluster = RedisCluster::start(3, 1);
    let primaries: Vec<u16> = cluster.primaries().iter().map(|p| p.port()).collect();
    // 1: kill -9 with a healthy replication link.
    let mut dead = Vec::new();
    scenario(
        &mut cluster,
        &mut dead,
        "healthy replica",
        primaries[0],
        None,
    )
    .await;
    // 2: kill -9 while the replica has been cut off for 300 ms (a network blip, a
    // slow replica): what asynchronous replication can lose.
    scenario(
        &mut cluster,
        &mut dead,
        "replica 300ms behind",
        primaries[1],
        Some(Duration::from_millis(300)),
    )
    .await;
}
