//! The hot path costs one round trip per trigger: no pool-checkout PING,
//! no separate script load once the script is cached.

use runonce::{Dedupe, TriggerOptions};
use runonce_tests::RedisServer;

#[tokio::test]
async fn one_command_per_trigger() {
    let server = RedisServer::start();
    let d = Dedupe::builder()
        .redis_url(server.url())
        .build()
        .await
        .unwrap();
    d.trigger("t", TriggerOptions::with_key("warm"))
        .await
        .unwrap();
    server.reset_stats();
    for i in 0..100 {
        d.trigger("t", TriggerOptions::with_key(format!("k{i}")))
            .await
            .unwrap();
        d.trigger("t", TriggerOptions::with_key(format!("k{i}")))
            .await
            .unwrap();
    }
    let info = server.info("commandstats");
    let total: u64 = info
        .lines()
        .filter(|l| l.starts_with("cmdstat_") && !l.starts_with("cmdstat_config|resetstat"))
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert_eq!(server.command_calls("evalsha"), 200);
    assert_eq!(server.command_calls("ping"), 0);
    // Inside the scripts: TIME and SET per call, GET+PTTL per hit; nothing
    // else crossed the wire.
    let scripted = server.command_calls("time")
        + server.command_calls("set")
        + server.command_calls("get")
        + server.command_calls("pttl");
    assert_eq!(total, 200 + scripted, "{info}");
}

/// Concurrent single-key triggers share script calls: while one call is in
/// flight, the others queue and go together.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_triggers_are_coalesced() {
    let server = RedisServer::start();
    let d = Dedupe::builder()
        .redis_url(server.url())
        .build()
        .await
        .unwrap();
    d.trigger("t", TriggerOptions::with_key("warm"))
        .await
        .unwrap();
    server.reset_stats();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..500 {
        let d = d.clone();
        set.spawn(async move {
            d.trigger("t", TriggerOptions::with_key(format!("c{i}")))
                .await
                .unwrap()
        });
    }
    let answers = set.join_all().await;
    assert!(answers.iter().all(|t| !t.cached));
    assert_eq!(server.command_calls("set"), 500);
    let calls = server.command_calls("evalsha");
    assert!(
        calls < 250,
        "500 concurrent triggers took {calls} script calls"
    );
    assert_eq!(server.dbsize(), 501);
}
