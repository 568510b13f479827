//! Live resharding: slots move between primaries (`redis-cli --cluster
//! reshard`, i.e. `CLUSTER SETSLOT` IMPORTING/MIGRATING and `MIGRATE`) while
//! a multi-process trigger storm runs. No duplicate run, no error for any
//! caller.

mod storm;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use runonce::Dedupe;
use runonce_tests::{require_binary, RedisCluster};
use storm::{flags, Storm};

const PROCESSES: usize = 4;
const KEYS: usize = 4000;

/// Moves `slots` slots from the primary on `from` to the one on `to`, with their keys.
fn reshard(cluster: &RedisCluster, from: u16, to: u16, slots: usize) -> Result<(), String> {
    let id = |port: u16| -> String {
        let node = cluster
            .nodes()
            .iter()
            .find(|n| n.port() == port)
            .expect("a node");
        node.query(redis::cmd("CLUSTER").arg("MYID"))
    };
    let out = Command::new(require_binary("redis-cli"))
        .args(["--cluster", "reshard", &format!("127.0.0.1:{from}")])
        .args(["--cluster-from", &id(from), "--cluster-to", &id(to)])
        .args(["--cluster-slots", &slots.to_string(), "--cluster-yes"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run redis-cli: {e}"))?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if out.status.success() && !text.contains("[ERR") {
        Ok(())
    } else {
        Err(format!(
            "reshard {from} -> {to} failed ({}):\n{text}",
            out.status
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resharding_during_a_storm_loses_nothing() {
    let cluster = Arc::new(RedisCluster::start(3, 0));
    let ports: Vec<u16> = cluster.primaries().iter().map(|p| p.port()).collect();
    let mut common = flags(&["--cluster"]);
    common.push(cluster.seed_urls().join(","));
    common.extend(flags(&[
        "--env",
        "reshard",
        "--keys",
        &KEYS.to_string(),
        "--repeat",
        "2",
        "--concurrency",
        "8",
        "--pace-ms",
        "6",
    ]));
    // Half the workers send batches: multi-key script calls per slot, which
    // meet TRYAGAIN while their slot is half migrated.
    let mut storm = Storm::start_with(PROCESSES, &common, |i| {
        if i % 2 == 1 {
            flags(&["--batch", "40"])
        } else {
            Vec::new()
        }
    });
    storm.wait_answered(1000, Duration::from_secs(30));

    // Reshard round the ring of primaries until the storm is over.
    let done = Arc::new(AtomicBool::new(false));
    let mover = {
        let (cluster, done) = (cluster.clone(), done.clone());
        std::thread::spawn(move || {
            let mut moves = Vec::new();
            let mut i = 0;
            while !done.load(Ordering::Relaxed) && moves.len() < 12 {
                let (from, to) = (ports[i % 3], ports[(i + 1) % 3]);
                let t = Instant::now();
                reshard(&cluster, from, to, 1000).unwrap_or_else(|e| panic!("{e}"));
                moves.push((from, to, t.elapsed()));
                i += 1;
            }
            moves
        })
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    while !storm.finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let answered_at_end = storm.answered();
    done.store(true, Ordering::Relaxed);
    let out = storm.finish(Duration::from_secs(10));
    let moves = mover.join().expect("resharding thread");
    eprintln!(
        "storm {:?}, {answered_at_end} answers; moves {moves:?}",
        out.elapsed
    );
    let migrated: u64 = cluster
        .nodes()
        .iter()
        .map(|n| n.command_calls("migrate"))
        .sum();
    eprintln!("MIGRATE calls {migrated}, errors {}", out.errors.len());
    let owners = out.assert_exactly_once(KEYS, PROCESSES, 2, false);
    assert!(
        moves.len() >= 2,
        "the storm outlasted only {} reshards",
        moves.len()
    );

    let d = Dedupe::builder()
        .cluster(cluster.seed_urls())
        .environment("reshard")
        .build()
        .await
        .unwrap();
    storm::assert_stored_owners(&d, "storm", &owners).await;
}
