//! Losing the script cache (`SCRIPT FLUSH`) in the middle of a storm causes
//! no caller-visible error.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use runonce::{Dedupe, TriggerOptions};
use runonce_tests::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn script_flush_mid_storm_is_invisible() {
    let server = Arc::new(RedisServer::start());
    let d = Dedupe::builder()
        .redis_url(server.url())
        .build()
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flusher = {
        let (server, stop) = (server.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut flushes = 0;
            while !stop.load(Ordering::Relaxed) && flushes < 200 {
                let _: () = server.query(redis::cmd("SCRIPT").arg("FLUSH"));
                flushes += 1;
                std::thread::sleep(Duration::from_millis(3));
            }
            flushes
        })
    };
    let mut storm = tokio::task::JoinSet::new();
    for t in 0..8 {
        let d = d.clone();
        storm.spawn(async move {
            let mut out = Vec::new();
            for j in 0..1500 {
                let i = (j + t * 187) % 1500;
                let a = d
                    .trigger("flush", TriggerOptions::with_key(format!("k{i}")))
                    .await
                    .expect("no caller-visible error while scripts are flushed");
                out.push((i, a.run_id, a.cached));
            }
            out
        });
    }
    let all = storm.join_all().await;
    stop.store(true, Ordering::Relaxed);
    let flushes = flusher.join().unwrap();
    assert!(
        flushes > 3,
        "the storm outran the flusher ({flushes} flushes)"
    );
    let mut owner: HashMap<usize, String> = HashMap::new();
    let mut created: HashMap<usize, usize> = HashMap::new();
    for (i, run, cached) in all.into_iter().flatten() {
        assert_eq!(owner.entry(i).or_insert_with(|| run.clone()), &run);
        if !cached {
            *created.entry(i).or_default() += 1;
        }
    }
    assert_eq!(owner.len(), 1500);
    assert!(created.values().all(|&n| n == 1));
    assert!(server.command_calls("script|load") > 1);
}
