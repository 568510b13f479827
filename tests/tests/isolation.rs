//! Keys never collide across environments, tasks or prefixes; a shared key
//! group dedupes across tasks but stays per environment.

mod common;

use common::Fixture;
use runonce::{Namespace, TriggerOptions};

async fn environments_tasks_and_prefixes_are_isolated(f: Fixture) {
    let prod = f.handle("prod", "runonce").await;
    let staging = f.handle("staging", "runonce").await;
    let other_app = f.handle("prod", "other-app").await;
    let k = || TriggerOptions::with_key("same-key");

    let a = prod.trigger("email", k()).await.unwrap();
    let b = staging.trigger("email", k()).await.unwrap();
    let c = prod.trigger("sms", k()).await.unwrap();
    let d = other_app.trigger("email", k()).await.unwrap();
    for t in [&a, &b, &c, &d] {
        assert!(!t.cached, "{}: {t:?}", f.name());
    }
    let ids: std::collections::HashSet<_> = [&a, &b, &c, &d].iter().map(|t| &t.run_id).collect();
    assert_eq!(ids.len(), 4);
    assert_eq!(f.dbsize(), 4);
    // Each one still dedupes within its own namespace.
    assert!(prod.trigger("email", k()).await.unwrap().cached);
    assert!(other_app.trigger("email", k()).await.unwrap().cached);
}

async fn shared_group_dedupes_across_tasks(f: Fixture) {
    let k = || TriggerOptions::with_key("user-7-welcome").group("onboarding");
    let a = f.dedupe.trigger("send-email", k()).await.unwrap();
    let b = f.dedupe.trigger("send-sms", k()).await.unwrap();
    assert!(!a.cached);
    assert!(b.cached, "{}: same group, other task", f.name());
    assert_eq!(a.run_id, b.run_id);
    // The group is not the task of the same name.
    let t = f
        .dedupe
        .trigger("onboarding", TriggerOptions::with_key("user-7-welcome"))
        .await
        .unwrap();
    assert!(!t.cached);
    // Still isolated per environment.
    let other_env = f.handle("other", "runonce").await;
    assert!(!other_env.trigger("send-email", k()).await.unwrap().cached);
    let rec = f
        .dedupe
        .lookup(Namespace::group("onboarding"), "user-7-welcome")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.run_id, a.run_id);
}

async fn special_characters_do_not_collide(f: Fixture) {
    // Without escaping, ("a:b", "c") and ("a", "b:c") would share a key.
    let one = f.handle("a:b", "p").await;
    let two = f.handle("a", "b:p").await;
    let x = one
        .trigger("c", TriggerOptions::with_key("k"))
        .await
        .unwrap();
    let y = two
        .trigger("b:c", TriggerOptions::with_key("k"))
        .await
        .unwrap();
    let z = one
        .trigger("{c}", TriggerOptions::with_key("k"))
        .await
        .unwrap();
    assert!(!x.cached && !y.cached && !z.cached, "{}", f.name());
}

conformance!(
    environments_tasks_and_prefixes_are_isolated,
    shared_group_dedupes_across_tasks,
    special_characters_do_not_collide
);
