//! Any number of concurrent callers of one key get exactly one
//! `cached: false` between them, and all get the same run ID.

mod common;

use std::collections::{HashMap, HashSet};

use common::Fixture;
use runonce::{IdempotencyKey, Scope, TriggerOptions};
use tokio::task::JoinSet;

async fn sixty_four_tasks_one_key(f: Fixture) {
    let mut set = JoinSet::new();
    for _ in 0..64 {
        let d = f.dedupe.clone();
        set.spawn(async move {
            d.trigger("charge", TriggerOptions::with_key("invoice-1"))
                .await
                .unwrap()
        });
    }
    let answers = set.join_all().await;
    assert_eq!(answers.len(), 64);
    let created = answers.iter().filter(|t| !t.cached).count();
    assert_eq!(
        created,
        1,
        "{}: exactly one caller creates the run",
        f.name()
    );
    let ids: HashSet<_> = answers.iter().map(|t| t.run_id.clone()).collect();
    assert_eq!(ids.len(), 1, "{}: everyone learns one run ID", f.name());
    let rec = f
        .dedupe
        .lookup("charge", "invoice-1")
        .await
        .unwrap()
        .unwrap();
    assert!(ids.contains(&rec.run_id));
    assert_eq!(f.dbsize(), 1);
}

async fn sixty_four_tasks_thousand_keys(f: Fixture) {
    const KEYS: usize = 1000;
    let keys: Vec<IdempotencyKey> = (0..KEYS)
        .map(|i| IdempotencyKey::create(["k", &i.to_string()], Scope::Global).unwrap())
        .collect();
    let mut set = JoinSet::new();
    for t in 0..64 {
        let d = f.dedupe.clone();
        let keys = keys.clone();
        set.spawn(async move {
            let mut out = Vec::with_capacity(KEYS);
            // Each task walks the keys from its own starting point so
            // tasks collide on different keys at different times.
            for j in 0..KEYS {
                let i = (j + t * 97) % KEYS;
                let a = d
                    .trigger("fanout", TriggerOptions::with_key(keys[i]))
                    .await
                    .unwrap();
                out.push((i, a.run_id, a.cached));
            }
            out
        });
    }
    let mut runs: HashMap<usize, HashSet<String>> = HashMap::new();
    let mut created: HashMap<usize, usize> = HashMap::new();
    for answers in set.join_all().await {
        for (i, run, cached) in answers {
            runs.entry(i).or_default().insert(run);
            if !cached {
                *created.entry(i).or_default() += 1;
            }
        }
    }
    assert_eq!(runs.len(), KEYS);
    for i in 0..KEYS {
        assert_eq!(runs[&i].len(), 1, "{}: key {i} has one run", f.name());
        assert_eq!(
            created.get(&i),
            Some(&1),
            "{}: key {i} created once",
            f.name()
        );
    }
    assert_eq!(f.dbsize(), KEYS as u64);
}

conformance!(sixty_four_tasks_one_key, sixty_four_tasks_thousand_keys);
