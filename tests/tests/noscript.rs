//! After SCRIPT FLUSH (a restart or failover loses the script cache), the
//! next call reloads the script by itself.

use runonce::{Dedupe, Outcome, TriggerOptions};
use runonce_tests::RedisServer;

#[tokio::test]
async fn calls_survive_script_flush() {
    let server = RedisServer::start();
    let d = Dedupe::builder()
        .redis_url(server.url())
        .build()
        .await
        .unwrap();
    let a = d.trigger("t", TriggerOptions::with_key("k")).await.unwrap();
    let _: () = server.query(redis::cmd("SCRIPT").arg("FLUSH"));
    let b = d.trigger("t", TriggerOptions::with_key("k")).await.unwrap();
    assert!(b.cached && b.run_id == a.run_id);
    let _: () = server.query(redis::cmd("SCRIPT").arg("FLUSH"));
    assert_eq!(d.lookup("t", "k").await.unwrap().unwrap().run_id, a.run_id);
    let _: () = server.query(redis::cmd("SCRIPT").arg("FLUSH"));
    assert!(d
        .complete("t", "k", &a.run_id, Outcome::Failed)
        .await
        .unwrap());
    let _: () = server.query(redis::cmd("SCRIPT").arg("FLUSH"));
    let out = d
        .batch_trigger(
            "t",
            vec![TriggerOptions::with_key("x"), TriggerOptions::with_key("y")],
        )
        .await
        .unwrap();
    assert!(out.iter().all(|r| r.as_ref().is_ok_and(|t| !t.cached)));
    assert!(server.command_calls("script|load") >= 4);
}
