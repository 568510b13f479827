//! `maxmemory` reached under `noeviction`: the OOM reply is a typed error,
//! never a new run, and the server holds no record for the refused key.

use runonce::{Dedupe, Error, TriggerOptions};
use runonce_tests::RedisServer;

#[tokio::test]
async fn out_of_memory_is_a_typed_error() {
    let server = RedisServer::start();
    let d = Dedupe::builder()
        .redis_url(server.url())
        .build()
        .await
        .unwrap();
    let kept = d
        .trigger("t", TriggerOptions::with_key("before"))
        .await
        .unwrap();
    // Cap memory just under what the server already uses.
    let info = server.info("memory");
    let used: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _: () = server.query(
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg(used / 2),
    );
    let before = server.dbsize();
    for i in 0..5 {
        let e = d
            .trigger("t", TriggerOptions::with_key(format!("new-{i}")))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::OutOfMemory { .. }), "{e:?}");
        assert!(e.is_retryable());
        assert!(e.to_string().contains("maxmemory"), "{e}");
        assert!(d
            .lookup("t", format!("new-{i}").as_str())
            .await
            .unwrap()
            .is_none());
    }
    assert_eq!(server.dbsize(), before, "nothing written");
    // Reads and cached answers still work at the limit.
    let hit = d
        .trigger("t", TriggerOptions::with_key("before"))
        .await
        .unwrap();
    assert!(hit.cached && hit.run_id == kept.run_id);
    // In one batch, at the limit: the held key answers, the new one alone
    // fails with OutOfMemory.
    let out = d
        .batch_trigger(
            "t",
            vec![
                TriggerOptions::with_key("before"),
                TriggerOptions::with_key("new-batch"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(out[0].as_ref().unwrap().run_id, kept.run_id);
    assert!(
        matches!(out[1], Err(Error::OutOfMemory { .. })),
        "{:?}",
        out[1]
    );
    assert_eq!(server.dbsize(), before);
    // Room again: the same key is claimed normally.
    let _: () = server.query(redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(0));
    assert!(
        !d.trigger("t", TriggerOptions::with_key("new-0"))
            .await
            .unwrap()
            .cached
    );
}
