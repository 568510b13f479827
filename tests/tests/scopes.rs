//! Run, Attempt and Global scopes, and the unambiguous part encoding.

mod common;

use common::Fixture;
use runonce::{Error, IdempotencyKey, RunContext, Scope, TriggerOptions};

async fn run_scope_is_per_parent_and_stable_across_attempts(f: Fixture) {
    let child = |ctx: RunContext| {
        let d = f.dedupe.clone();
        ctx.scope(async move {
            let key = IdempotencyKey::create("child", Scope::Run).unwrap();
            d.trigger("child-task", TriggerOptions::with_key(key))
                .await
                .unwrap()
        })
    };
    let p1a1 = child(RunContext::new("run_parent_1", 1)).await;
    let p1a2 = child(RunContext::new("run_parent_1", 2)).await;
    let p2a1 = child(RunContext::new("run_parent_2", 1)).await;
    assert!(!p1a1.cached);
    assert!(
        p1a2.cached,
        "{}: a retried parent does not re-trigger",
        f.name()
    );
    assert_eq!(p1a1.run_id, p1a2.run_id);
    assert!(!p2a1.cached, "another parent gets its own child");
}

async fn attempt_scope_is_per_attempt(f: Fixture) {
    let k1 = IdempotencyKey::create_in("x", Scope::Attempt, &RunContext::new("run_p", 1)).unwrap();
    let k2 = IdempotencyKey::create_in("x", Scope::Attempt, &RunContext::new("run_p", 2)).unwrap();
    assert_ne!(k1, k2);
    let a = f
        .dedupe
        .trigger("t", TriggerOptions::with_key(k1))
        .await
        .unwrap();
    let b = f
        .dedupe
        .trigger("t", TriggerOptions::with_key(k2))
        .await
        .unwrap();
    assert!(!a.cached && !b.cached);
}

async fn global_scope_is_the_same_everywhere(f: Fixture) {
    let outside = IdempotencyKey::create("g", Scope::Global).unwrap();
    let inside = RunContext::new("run_z", 5)
        .scope(async { IdempotencyKey::create("g", Scope::Global).unwrap() })
        .await;
    assert_eq!(outside, inside);
    let a = f
        .dedupe
        .trigger("t", TriggerOptions::with_key(outside))
        .await
        .unwrap();
    let b = f
        .dedupe
        .trigger("t", TriggerOptions::with_key(inside))
        .await
        .unwrap();
    assert!(b.cached && a.run_id == b.run_id);
}

async fn run_scope_without_context_is_an_error(f: Fixture) {
    for scope in [Scope::Run, Scope::Attempt] {
        let e = IdempotencyKey::create("x", scope).unwrap_err();
        assert!(matches!(e, Error::MissingRunContext { .. }), "{e}");
    }
    assert_eq!(f.dbsize(), 0);
}

async fn raw_keys_are_run_scoped_inside_a_run(f: Fixture) {
    let ctx = RunContext::new("run_parent", 1);
    let inside = ctx
        .clone()
        .scope(f.dedupe.trigger("t", TriggerOptions::with_key("raw")))
        .await
        .unwrap();
    let expected = IdempotencyKey::create_in("raw", Scope::Run, &ctx).unwrap();
    assert_eq!(inside.key, Some(expected));
    let outside = f
        .dedupe
        .trigger("t", TriggerOptions::with_key("raw"))
        .await
        .unwrap();
    assert_eq!(
        outside.key,
        Some(IdempotencyKey::create("raw", Scope::Global).unwrap())
    );
    assert!(
        !outside.cached,
        "{}: different scopes, different keys",
        f.name()
    );
    // An explicit context on the options works like the task-local one.
    let explicit = f
        .dedupe
        .trigger("t", TriggerOptions::with_key("raw").run_context(ctx))
        .await
        .unwrap();
    assert!(explicit.cached);
    assert_eq!(explicit.run_id, inside.run_id);
}

async fn parts_are_length_prefixed(f: Fixture) {
    let joined = IdempotencyKey::create(["a-b"], Scope::Global).unwrap();
    let split = IdempotencyKey::create(["a", "b"], Scope::Global).unwrap();
    let shifted = IdempotencyKey::create(["ab", ""], Scope::Global);
    assert_ne!(joined, split);
    assert!(shifted.is_err());
    let a = f
        .dedupe
        .trigger("t", TriggerOptions::with_key(joined))
        .await
        .unwrap();
    let b = f
        .dedupe
        .trigger("t", TriggerOptions::with_key(split))
        .await
        .unwrap();
    assert!(!a.cached && !b.cached);
    assert_ne!(a.run_id, b.run_id);
}

conformance!(
    run_scope_is_per_parent_and_stable_across_attempts,
    attempt_scope_is_per_attempt,
    global_scope_is_the_same_everywhere,
    run_scope_without_context_is_an_error,
    raw_keys_are_run_scoped_inside_a_run,
    parts_are_length_prefixed
);
