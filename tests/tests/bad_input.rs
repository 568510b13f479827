//! Bad input gets a typed error naming the bad value, and nothing is
//! written.

mod common;

use std::time::Duration;

use common::Fixture;
use runonce::{Error, IdempotencyKey, Namespace, Outcome, Scope, TriggerOptions, Ttl};

async fn bad_keys_and_ttls_write_nothing(f: Fixture) {
    let before = f.dbsize();
    let d = &f.dedupe;
    let long = "k".repeat(2049);
    let key_cases: Vec<(TriggerOptions, &str)> = vec![
        (TriggerOptions::with_key(""), "\"\""),
        (TriggerOptions::with_key(long.as_str()), "2049 bytes"),
        (TriggerOptions::with_key("a\0b"), "NUL"),
    ];
    for (opts, named) in key_cases {
        let e = d.trigger("t", opts).await.unwrap_err();
        assert!(matches!(e, Error::InvalidKey { .. }), "{}: {e:?}", f.name());
        assert!(e.to_string().contains(named), "{e}");
    }
    for parts in [vec!["a", ""], vec![]] {
        let e = IdempotencyKey::create(parts, Scope::Global).unwrap_err();
        assert!(matches!(e, Error::InvalidKey { .. }), "{e}");
    }
    for input in ["0s", "-5m", "5x", "", "400d"] {
        let e = input.parse::<Ttl>().unwrap_err();
        assert!(matches!(e, Error::InvalidTtl { .. }), "{input}: {e:?}");
        assert!(e.to_string().contains(&format!("{input:?}")), "{e}");
    }
    for ttl in [Duration::ZERO, Duration::from_secs(400 * 86_400)] {
        let e = d
            .trigger("t", TriggerOptions::with_key("k").ttl(ttl))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidTtl { .. }), "{e:?}");
    }
    let mut non_string_keys = std::collections::HashMap::new();
    non_string_keys.insert((1, 2), "v");
    for opts in [
        TriggerOptions::with_key("k").payload(&f64::NAN),
        TriggerOptions::with_key("k").payload(&non_string_keys),
    ] {
        let e = d.trigger("t", opts).await.unwrap_err();
        assert!(matches!(e, Error::InvalidPayload { .. }), "{e:?}");
    }
    for (task, opts) in [
        ("", TriggerOptions::with_key("k")),
        ("t", TriggerOptions::with_key("k").run_id("")),
        ("t", TriggerOptions::with_key("k").group("")),
        ("t\0", TriggerOptions::with_key("k")),
    ] {
        let e = d.trigger(task, opts).await.unwrap_err();
        assert!(matches!(e, Error::InvalidInput { .. }), "{e:?}");
    }
    let e = d
        .complete("t", "", "run_x", Outcome::Failed)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidKey { .. }));
    let e = d.reset(Namespace::group(""), "k").await.unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }));
    let e = IdempotencyKey::from_digest("xyz").unwrap_err();
    assert!(matches!(e, Error::InvalidKey { .. }) && e.to_string().contains("xyz"));
    let e = d.lookup("t", "").await.unwrap_err();
    assert!(matches!(e, Error::InvalidKey { .. }));
    // Batch items fail one by one, but still write nothing.
    let out = d
        .batch_trigger(
            "t",
            vec![
                TriggerOptions::with_key(""),
                TriggerOptions::with_key("k").ttl(Duration::ZERO),
            ],
        )
        .await
        .unwrap();
    assert!(out
        .iter()
        .all(|r| r.as_ref().is_err_and(Error::is_invalid_input)));
    assert_eq!(f.dbsize(), before, "{}: bad input never writes", f.name());
}

async fn bad_environment_or_prefix_is_refused(f: Fixture) {
    for (env, prefix) in [("", "p"), ("e", ""), ("e\0", "p")] {
        let d = runonce::Dedupe::builder()
            .environment(env)
            .prefix(prefix)
            .store(std::sync::Arc::new(
                runonce::store::memory::MemoryStore::new(),
            ))
            .build()
            .await;
        assert!(
            matches!(d, Err(Error::InvalidInput { .. })),
            "{env:?} {prefix:?}"
        );
    }
    let d = runonce::Dedupe::in_memory("");
    let e = d
        .trigger("t", TriggerOptions::with_key("k"))
        .await
        .unwrap_err();
    assert!(matches!(
        e,
        Error::InvalidInput {
            what: "environment",
            ..
        }
    ));
    assert_eq!(f.dbsize(), 0);
}

conformance!(
    bad_keys_and_ttls_write_nothing,
    bad_environment_or_prefix_is_refused
);
