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
