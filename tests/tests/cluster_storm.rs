//! Redis Cluster under load: many processes racing on the same keys, and
//! batches that cost one script call per slot.

mod storm;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use runonce::store::redis::slot;
use runonce::{Dedupe, IdempotencyKey, Scope, TriggerOptions};
use runonce_tests::{RedisCluster, RedisServer};
use storm::{flags, Storm};

/// The slot ranges each primary serves, from `CLUSTER SLOTS`.
fn slot_owners(cluster: &RedisCluster) -> Vec<(u16, u16, u16)> {
    let any = cluster.primaries()[0];
    let slots: Vec<redis::Value> = any.query(redis::cmd("CLUSTER").arg("SLOTS"));
    slots
        .iter()
        .map(|range| {
            let redis::Value::Array(f) = range else {
                panic!("CLUSTER SLOTS entry {range:?}")
            };
            let int = |v: &redis::Value| match v {
                redis::Value::Int(n) => *n as u16,
                other => panic!("CLUSTER SLOTS field {other:?}"),
            };
            let redis::Value::Array(primary) = &f[2] else {
                panic!("CLUSTER SLOTS node {:?}", f[2])
            };
            (int(&f[0]), int(&f[1]), int(&primary[1]))
        })
        .collect()
}

fn port_of_slot(owners: &[(u16, u16, u16)], s: u16) -> u16 {
    owners
        .iter()
        .find(|(lo, hi, _)| (*lo..=*hi).contains(&s))
        .map(|(_, _, port)| *port)
        .unwrap_or_else(|| panic!("slot {s} has no owner"))
}

fn seeds(cluster: &RedisCluster) -> String {
    cluster.seed_urls().join(",")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_processes_agree_on_every_key() {
    const PROCESSES: usize = 8;
    const KEYS: usize = 5000;
    let t = Instant::now();
    let cluster = RedisCluster::start(3, 0);
    eprintln!("cluster up in {:?}", t.elapsed());
    let mut common = flags(&["--cluster"]);
    common.push(seeds(&cluster));
    common.extend(flags(&[
        "--env",
        "storm",
        "--task",
        "exactly-once",
        "--keys",
        &KEYS.to_string(),
        "--concurrency",
        "16",
        "--window",
        "64",
    ]));
    let storm = Storm::start(PROCESSES, &common);
    let out = storm.finish(Duration::from_secs(120));
    eprintln!("{PROCESSES} processes x {KEYS} keys in {:?}", out.elapsed);
    let owners = out.assert_exactly_once(KEYS, PROCESSES, 1, false);
    assert_eq!(out.created(), KEYS, "exactly one created answer per key");

    // Every record is stored once, on the primary that owns its slot, and
    // names the agreed run.
    let primaries = cluster.primaries();
    let total: u64 = primaries.iter().map(|p| p.dbsize()).sum();
    assert_eq!(total, KEYS as u64);
    for p in &primaries {
        assert!(
            p.dbsize() > KEYS as u64 / 6,
            "{} holds only {} keys",
            p.addr(),
            p.dbsize()
        );
    }
    let d = Dedupe::builder()
        .cluster(cluster.seed_urls())
        .environment("storm")
        .build()
        .await
        .expect("connect");
    storm::assert_stored_owners(&d, "exactly-once", &owners).await;
}

fn info_u64(node: &RedisServer, section: &str, field: &str) -> u64 {
    node.info(section)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{}: INFO {section} has no {field}", node.addr()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_sends_one_script_call_per_slot() {
    const ITEMS: usize = 3000;
    let cluster = RedisCluster::start(3, 0);
    let d = Dedupe::builder()
        .cluster(cluster.seed_urls())
        .environment("batch")
        .build()
        .await
        .expect("connect");
    // Load the scripts everywhere first, so NOSCRIPT retries do not count.
    d.batch_trigger(
        "warm-up",
        (0..64)
            .map(|i| TriggerOptions::with_key(format!("w{i}")))
            .collect(),
    )
    .await
    .unwrap();
    let primaries = cluster.primaries();
    for p in &primaries {
        p.reset_stats();
    }
    let reads_before: BTreeMap<u16, u64> = primaries
        .iter()
        .map(|p| (p.port(), info_u64(p, "stats", "total_reads_processed")))
        .collect();

    let keys: Vec<String> = (0..ITEMS).map(|i| format!("order-{i}")).collect();
    let out = d
        .batch_trigger("ship", keys.iter().map(TriggerOptions::with_key).collect())
        .await
        .unwrap();

    // Input order: item i answers for key i.
    assert_eq!(out.len(), ITEMS);
    for (i, r) in out.iter().enumerate() {
        let r = r.as_ref().unwrap();
        assert!(!r.cached);
        assert_eq!(
            r.key,
            Some(IdempotencyKey::create(keys[i].as_str(), Scope::Global).unwrap())
        );
    }

    // Which slots, and so which node, the batch's keys live on.
    let owners = slot_owners(&cluster);
    let mut slots_of: HashMap<u16, BTreeSet<u16>> = HashMap::new();
    for k in &keys {
        let s = slot(&d.storage_key(
            "ship",
            &IdempotencyKey::create(k.as_str(), Scope::Global).unwrap(),
        ));
        slots_of
            .entry(port_of_slot(&owners, s))
            .or_default()
            .insert(s);
    }
    let all_slots: usize = slots_of.values().map(BTreeSet::len).sum();
    assert!(
        all_slots < ITEMS,
        "some items share a slot ({all_slots} slots for {ITEMS} items)"
    );
    let mut sets = 0;
    for p in &primaries {
        let evalsha = p.command_calls("evalsha");
        let want = slots_of.get(&p.port()).map_or(0, BTreeSet::len) as u64;
        let reads = info_u64(p, "stats", "total_reads_processed") - reads_before[&p.port()];
        eprintln!(
            "{}: {evalsha} EVALSHA for {want} slots, {} SET, {reads} socket reads",
            p.addr(),
            p.command_calls("set")
        );
        assert!(want > 0, "{} got no keys", p.addr());
        assert_eq!(evalsha, want, "{}: one script call per slot", p.addr());
        // The calls travel together: the server reads many per socket read.
        assert!(
            reads * 2 < evalsha,
            "{}: {reads} socket reads for {evalsha} calls",
            p.addr()
        );
        sets += p.command_calls("set");
    }
    assert_eq!(sets, ITEMS as u64, "one SET per item, inside the scripts");
}
