//! `kill -9` on Redis mid-storm (AOF, fsync always), then a restart on the
//! same port: calls during the outage fail fast with a typed error, clients
//! reconnect by themselves, retries with the same candidate learn the
//! truth, and no key ends with two runs.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use runonce::{Dedupe, Error, TriggerOptions};
use runonce_tests::RedisServer;
use tokio::sync::Mutex;

const KEYS: usize = 400;
const TASKS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_and_restart_mid_storm() {
    let server = RedisServer::builder().appendonly(true).start();
    let timeout = Duration::from_millis(500);
    let d = Dedupe::builder()
        .redis_url(server.url())
        .timeout(timeout)
        .build()
        .await
        .unwrap();
    let server = Arc::new(Mutex::new(server));

    // Kill the server once the storm is going, restart it a moment later.
    let killer = {
        let server = server.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            server.lock().await.kill();
            tokio::time::sleep(Duration::from_millis(700)).await;
            server.lock().await.restart();
        })
    };

    let mut storm = tokio::task::JoinSet::new();
    for t in 0..TASKS {
        let d = d.clone();
        storm.spawn(async move {
            let mut answers = Vec::new();
            let mut slowest_error = Duration::ZERO;
            let mut errors = 0usize;
            for j in 0..KEYS {
                let i = (j * 7 + t * 31) % KEYS;
                // One candidate per (task, key): every retry reuses it.
                let candidate = format!("run_t{t}_k{i}");
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    let opts = TriggerOptions::with_key(format!("key-{i}")).run_id(&candidate);
                    let started = Instant::now();
                    match d.trigger("restart", opts).await {
                        Ok(a) => {
                            answers.push((i, candidate.clone(), a));
                            break;
                        }
                        Err(e) => {
                            assert!(
                                matches!(
                                    e,
                                    Error::Backend { .. }
                                        | Error::Timeout { .. }
                                        | Error::PoolExhausted { .. }
                                ),
                                "unexpected error kind: {e:?}"
                            );
                            assert!(e.is_retryable());
                            errors += 1;
                            slowest_error = slowest_error.max(started.elapsed());
                            assert!(Instant::now() < deadline, "no recovery after restart: {e}");
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                // Pace the storm so it spans the outage.
                if j % 20 == 0 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            (answers, errors, slowest_error)
        });
    }
    let results = storm.join_all().await;
    killer.await.unwrap();

    let mut owners: HashMap<usize, HashSet<String>> = HashMap::new();
    let mut total_errors = 0;
    let mut slowest = Duration::ZERO;
    for (answers, errors, slow) in results {
        total_errors += errors;
        slowest = slowest.max(slow);
        for (i, candidate, a) in answers {
            owners.entry(i).or_default().insert(a.run_id.clone());
            if !a.cached {
                assert_eq!(
                    a.run_id, candidate,
                    "cached:false only for the caller's own run"
                );
            }
        }
    }
    assert!(
        total_errors > 0,
        "the outage was not observed; the test proves nothing"
    );
    // A failed call returns within the configured timeout (plus scheduling
    // slack on a busy machine), never a hang.
    assert!(
        slowest < timeout * 3,
        "slowest failing call took {slowest:?}"
    );
    assert_eq!(owners.len(), KEYS);
    let server = server.lock().await;
    for (i, runs) in &owners {
        assert_eq!(runs.len(), 1, "key {i} has runs {runs:?}");
        let rec = d
            .lookup("restart", format!("key-{i}").as_str())
            .await
            .unwrap()
            .unwrap();
        assert!(runs.contains(&rec.run_id));
    }
    assert_eq!(server.dbsize(), KEYS as u64);
    eprintln!("outage errors seen by callers: {total_errors}; slowest failing call: {slowest:?}");
}
