//! Metrics counters move by exactly the expected amounts.

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use runonce::{Dedupe, TriggerOptions};
use runonce_tests::RedisServer;

fn counter(
    snapshot: &[(metrics_util::CompositeKey, DebugValue)],
    name: &str,
    labels: &[(&str, &str)],
) -> u64 {
    snapshot
        .iter()
        .filter(|(k, _)| k.key().name() == name)
        .filter(|(k, _)| {
            labels
                .iter()
                .all(|(ln, lv)| k.key().labels().any(|l| l.key() == *ln && l.value() == *lv))
        })
        .map(|(_, v)| match v {
            DebugValue::Counter(n) => *n,
            other => panic!("{name} is not a counter: {other:?}"),
        })
        .sum()
}

#[test]
fn counters_move_by_exactly_the_expected_amounts() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = RedisServer::start();
    metrics::with_local_recorder(&recorder, || {
        rt.block_on(async {
            let d = Dedupe::builder()
                .redis_url(server.url())
                .build()
                .await
                .unwrap();
            for _ in 0..3 {
                d.trigger("email", TriggerOptions::with_key("a"))
                    .await
                    .unwrap();
            }
            d.trigger("email", TriggerOptions::with_key("b").payload(&1))
                .await
                .unwrap();
            d.trigger("email", TriggerOptions::with_key("b").payload(&2))
                .await
                .unwrap_err();
            d.batch_trigger(
                "sms",
                vec![
                    TriggerOptions::with_key("x"),
                    TriggerOptions::with_key("x"),
                    TriggerOptions::with_key(""),
                ],
            )
            .await
            .unwrap();
            let _: () = server.query(redis::cmd("SCRIPT").arg("FLUSH"));
            d.trigger("email", TriggerOptions::with_key("c"))
                .await
                .unwrap();
        })
    });
    let snap: Vec<_> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(k, _, _, v)| (k, v))
        .collect();
    let t = "runonce_triggers_total";
    assert_eq!(
        counter(&snap, t, &[("task", "email"), ("outcome", "created")]),
        3
    );
    assert_eq!(
        counter(&snap, t, &[("task", "email"), ("outcome", "cached")]),
        2
    );
    assert_eq!(
        counter(&snap, t, &[("task", "email"), ("outcome", "mismatch")]),
        1
    );
    assert_eq!(
        counter(&snap, t, &[("task", "sms"), ("outcome", "created")]),
        1
    );
    assert_eq!(
        counter(&snap, t, &[("task", "sms"), ("outcome", "cached")]),
        1
    );
    assert_eq!(
        counter(&snap, t, &[("task", "sms"), ("outcome", "error")]),
        1
    );
    let b = "runonce_batch_items_total";
    assert_eq!(counter(&snap, b, &[("task", "sms")]), 3);
    assert_eq!(counter(&snap, b, &[("task", "email")]), 0);
    // One load on first use of a fresh server, one after the flush.
    assert_eq!(counter(&snap, "runonce_script_reloads_total", &[]), 2);
    let hist = snap
        .iter()
        .find(|(k, _)| k.key().name() == "runonce_trigger_seconds")
        .map(|(_, v)| match v {
            DebugValue::Histogram(h) => h.len(),
            _ => 0,
        });
    assert_eq!(hist, Some(6), "one latency sample per trigger call");
}
