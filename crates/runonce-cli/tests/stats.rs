//! `runonce stats` on keyspaces of known shape: exact counts per
//! environment, task/group and state, TTL buckets, memory sampling, the
//! server's verdicts, filters, and unrelated keys left out.

mod common;

use std::time::Duration;

use common::run;
use runonce::store::storage_key;
use runonce::{
    Dedupe, FailurePolicy, IdempotencyKey, Namespace, Outcome, Scope, TriggerOptions, Ttl,
};
use runonce_tests::RedisServer;
use serde_json::{json, Value};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn handle(url: &str, env: &str, prefix: &str) -> Dedupe {
    Dedupe::builder()
        .redis_url(url)
        .environment(env)
        .prefix(prefix)
        .check_eviction(false)
        .build()
        .await
        .unwrap()
}

fn ttl(s: &str) -> Ttl {
    s.parse().unwrap()
}

/// Triggers `n` keys `k0..` of `task` (in `group` if given) with `ttl`;
/// answers the run IDs.
async fn seed(
    d: &Dedupe,
    task: &str,
    group: Option<&str>,
    n: usize,
    t: Option<&str>,
) -> Vec<String> {
    let mut runs = Vec::new();
    for i in 0..n {
        let mut o = TriggerOptions::with_key(format!("k{i}"));
        if let Some(t) = t {
            o = o.ttl(ttl(t));
        }
        if let Some(g) = group {
            o = o.group(g);
        }
        let r = d.trigger(task, o).await.unwrap();
        assert!(!r.cached);
        runs.push(r.run_id);
    }
    runs
}

fn key(s: &str) -> IdempotencyKey {
    IdempotencyKey::create(s, Scope::Global).unwrap()
}

/// The keyspace of the tests below:
///
/// | environment | namespace  | records | states                          | TTL    |
/// | ----------- | ---------- | ------- | ------------------------------- | ------ |
/// | dev         | task a     | 30      | 20 running, 10 succeeded        | 10m    |
/// | dev         | task b     | 20      | running                         | 2h     |
/// | dev         | group g    | 5       | running                         | 3d     |
/// | prod        | task a     | 4       | 2 running, 1 canceled, 1 failed | 30d    |
/// | prod        | task b     | 2       | running                         | 45s    |
/// | staging     | task "x y" | 1       | running                         | 100d   |
/// | manual      | task m     | 1       | running (written by hand)       | none   |
///
/// plus 2 prod/a records released by failed runs (gone), 3 records under
/// another prefix `app2`, 4 keys under the prefix that are not records,
/// and 3 keys outside it.
fn seed_known_shape(server: &RedisServer) {
    let url = server.url();
    rt().block_on(async {
        let dev = handle(&url, "dev", "runonce").await;
        let a = seed(&dev, "a", None, 30, Some("10m")).await;
        for run in &a[..10] {
            let i = a.iter().position(|r| r == run).unwrap();
            assert!(dev
                .complete("a", format!("k{i}"), run, Outcome::Succeeded)
                .await
                .unwrap());
        }
        seed(&dev, "b", None, 20, Some("2h")).await;
        seed(&dev, "c", Some("g"), 5, Some("3d")).await;

        let prod = handle(&url, "prod", "runonce").await;
        let pa = seed(&prod, "a", None, 6, None).await;
        prod.complete("a", "k0", &pa[0], Outcome::Canceled)
            .await
            .unwrap();
        prod.complete_with("a", "k1", &pa[1], Outcome::Failed, FailurePolicy::Keep)
            .await
            .unwrap();
        // Released: no record left.
        prod.complete("a", "k4", &pa[4], Outcome::Failed)
            .await
            .unwrap();
        prod.complete("a", "k5", &pa[5], Outcome::Failed)
            .await
            .unwrap();
        seed(&prod, "b", None, 2, Some("45s")).await;

        let staging = handle(&url, "staging", "runonce").await;
        seed(&staging, "x y", None, 1, Some("100d")).await;

        let app2 = handle(&url, "dev", "app2").await;
        seed(&app2, "a", None, 3, None).await;
    });
    // A record without a TTL (runonce never writes one; an operator might).
    let manual = storage_key("runonce", "manual", &Namespace::task("m"), &key("m"));
    let _: () = server.query(redis::cmd("SET").arg(&manual).arg("CCafsgAmanual"));
    // Under the prefix, not records.
    let hash_key = storage_key("runonce", "dev", &Namespace::task("h"), &key("h"));
    let garbage_key = storage_key("runonce", "dev", &Namespace::task("g2"), &key("g2"));
    let _: () = server.query(redis::cmd("SET").arg("runonce:junk").arg("1"));
    let _: () = server.query(
        redis::cmd("SET")
            .arg("runonce:dev:t:a:{not base64!}")
            .arg("R1::run_x"),
    );
    let _: i64 = server.query(redis::cmd("HSET").arg(&hash_key).arg("f").arg("v"));
    let _: () = server.query(redis::cmd("SET").arg(&garbage_key).arg("garbage"));
    // Outside the prefix.
    let lookalike = storage_key("runonce-x", "dev", &Namespace::task("a"), &key("k0"));
    for k in ["other:thing", "runonceless", lookalike.as_str()] {
        let _: () = server.query(redis::cmd("SET").arg(k).arg("R1::run_y"));
    }
}

fn namespace_row(v: &Value, env: &str, kind: &str, name: &str) -> Value {
    v["by_namespace"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["environment"] == env && r["kind"] == kind && r["name"] == name)
        .unwrap_or_else(|| panic!("no row {env}/{kind}/{name} in {v}"))
        .clone()
}

fn counts(records: u64, running: u64, succeeded: u64, canceled: u64, failed: u64) -> Value {
    json!({"records": records, "running": running, "succeeded": succeeded,
           "canceled": canceled, "failed": failed})
}

fn assert_row(v: &Value, env: &str, kind: &str, name: &str, want: Value) {
    let row = namespace_row(v, env, kind, name);
    for (k, n) in want.as_object().unwrap() {
        assert_eq!(&row[k], n, "{env}/{kind}/{name} {k}: {row}");
    }
}

#[test]
fn stats_counts_a_seeded_keyspace_exactly() {
    let server = RedisServer::start();
    seed_known_shape(&server);
    let v = run(&server.url(), &["stats", "--json"])
        .assert_code(0)
        .json();
    common::assert_object_keys(
        &v,
        &[
            "prefix",
            "environment",
            "task",
            "group",
            "pattern",
            "keys_matched",
            "records",
            "other_keys",
            "by_environment",
            "by_namespace",
            "by_state",
            "ttl",
            "memory",
            "servers",
        ],
    );
    assert_eq!(v["prefix"], "runonce");
    assert_eq!(
        v["environment"],
        Value::Null,
        "every environment by default"
    );
    assert_eq!(v["pattern"], "runonce:*");
    assert_eq!(v["records"], 63, "{v}");
    assert_eq!(v["other_keys"], 4, "{v}");
    assert_eq!(v["keys_matched"], 67, "{v}");

    assert_eq!(v["by_namespace"].as_array().unwrap().len(), 7, "{v}");
    assert_row(&v, "dev", "task", "a", counts(30, 20, 10, 0, 0));
    assert_row(&v, "dev", "task", "b", counts(20, 20, 0, 0, 0));
    assert_row(&v, "dev", "group", "g", counts(5, 5, 0, 0, 0));
    assert_row(&v, "prod", "task", "a", counts(4, 2, 0, 1, 1));
    assert_row(&v, "prod", "task", "b", counts(2, 2, 0, 0, 0));
    assert_row(&v, "staging", "task", "x y", counts(1, 1, 0, 0, 0));
    assert_row(&v, "manual", "task", "m", counts(1, 1, 0, 0, 0));

    assert_eq!(
        v["by_environment"],
        json!([
            {"environment": "dev", "records": 55},
            {"environment": "manual", "records": 1},
            {"environment": "prod", "records": 6},
            {"environment": "staging", "records": 1},
        ])
    );
    assert_eq!(
        v["by_state"],
        json!({"running": 51, "succeeded": 10, "canceled": 1, "failed": 1})
    );
    assert_eq!(
        v["ttl"],
        json!([
            {"bucket": "<1m", "records": 2},
            {"bucket": "<1h", "records": 30},
            {"bucket": "<1d", "records": 20},
            {"bucket": "<7d", "records": 5},
            {"bucket": "<30d", "records": 4},
            {"bucket": ">=30d", "records": 1},
            {"bucket": "none", "records": 1},
        ])
    );

    // Every record measured: nothing extrapolated.
    let m = &v["memory"];
    assert_eq!(m["sampled_records"], 63, "{m}");
    assert_eq!(m["extrapolated"], false, "{m}");
    assert_eq!(m["estimated_bytes"], m["sampled_bytes"], "{m}");
    assert!(m["sampled_bytes"].as_u64().unwrap() > 63 * 40, "{m}");

    // The harness's server: noeviction, no AOF, no snapshots.
    let servers = v["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 1);
    let s = &servers[0];
    assert_eq!(s["addr"], server.addr());
    assert_eq!(s["keys"], server.dbsize());
    assert_eq!(s["maxmemory_policy"], "noeviction");
    assert_eq!(s["eviction"]["verdict"], "ok");
    assert_eq!(s["appendonly"], "no");
    assert_eq!(s["save"], "");
    assert_eq!(s["persistence"]["verdict"], "none");
    assert!(
        s["persistence"]["note"]
            .as_str()
            .unwrap()
            .contains("claims lost on restart unless replicated"),
        "{s}"
    );
}

/// The numbers of the human table row made of `cells` and then numbers
/// only.
fn human_row(out: &str, cells: &[&str]) -> Vec<u64> {
    out.lines()
        .find_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            if words.len() <= cells.len() || words[..cells.len()] != *cells {
                return None;
            }
            words[cells.len()..]
                .iter()
                .map(|w| w.parse().ok())
                .collect::<Option<Vec<u64>>>()
        })
        .unwrap_or_else(|| panic!("no row {cells:?} in\n{out}"))
}

#[test]
fn stats_human_report_has_the_same_counts() {
    let server = RedisServer::start();
    seed_known_shape(&server);
    let out = run(&server.url(), &["stats"]).assert_code(0).stdout.clone();
    assert!(
        out.starts_with("runonce stats: prefix runonce, every environment, Redis at "),
        "{out}"
    );
    assert!(
        out.contains(": 67 keys matched, 63 records, 4 not runonce records"),
        "{out}"
    );
    // records running succeeded canceled failed
    assert_eq!(human_row(&out, &["dev", "task", "a"]), [30, 20, 10, 0, 0]);
    assert_eq!(human_row(&out, &["dev", "task", "b"]), [20, 20, 0, 0, 0]);
    assert_eq!(human_row(&out, &["dev", "group", "g"]), [5, 5, 0, 0, 0]);
    assert_eq!(human_row(&out, &["prod", "task", "a"]), [4, 2, 0, 1, 1]);
    assert_eq!(human_row(&out, &["prod", "task", "b"]), [2, 2, 0, 0, 0]);
    assert_eq!(
        human_row(&out, &["staging", "task", "\"x", "y\""]),
        [1, 1, 0, 0, 0]
    );
    assert_eq!(human_row(&out, &["total"]), [63, 51, 10, 1, 1]);
    for (state, n) in [
        ("running", 51),
        ("succeeded", 10),
        ("canceled", 1),
        ("failed", 1),
    ] {
        assert_eq!(human_row(&out, &[state]), [n], "{state}");
    }
    for (env, n) in [("dev", 55), ("prod", 6), ("staging", 1), ("manual", 1)] {
        assert_eq!(human_row(&out, &[env]), [n], "{env}");
    }
    for (bucket, n) in [
        ("<1m", 2),
        ("<1h", 30),
        ("<1d", 20),
        ("<7d", 5),
        ("<30d", 4),
        (">=30d", 1),
        ("none", 1),
    ] {
        assert_eq!(human_row(&out, &[bucket]), [n], "{bucket}");
    }
    assert!(out.contains("every record measured"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("maxmemory-policy  noeviction") && l.contains("ok: ")),
        "{out}"
    );
    assert!(out.ends_with('\n') && !out.ends_with("\n\n"), "{out:?}");
}

#[test]
fn stats_filters_by_environment_task_group_and_prefix() {
    let server = RedisServer::start();
    seed_known_shape(&server);
    let url = server.url();

    let prod = run(&url, &["--env", "prod", "stats", "--json"])
        .assert_code(0)
        .json();
    assert_eq!(prod["environment"], "prod");
    assert_eq!(prod["pattern"], "runonce:prod:*");
    assert_eq!(prod["records"], 6, "{prod}");
    assert_eq!(prod["other_keys"], 0, "{prod}");
    assert_eq!(
        prod["by_environment"],
        json!([{"environment": "prod", "records": 6}])
    );

    // RUNONCE_ENV counts as given, too.
    let mut c = common::runonce();
    c.env("RUNONCE_ENV", "staging")
        .args(["--redis", &url, "stats", "--json"]);
    let staging = common::finish(c, None).assert_code(0).json();
    assert_eq!(staging["records"], 1, "{staging}");

    let a = run(&url, &["stats", "--task", "a", "--json"])
        .assert_code(0)
        .json();
    assert_eq!(a["task"], "a");
    assert_eq!(a["records"], 34, "{a}");
    assert_eq!(a["by_namespace"].as_array().unwrap().len(), 2, "{a}");
    assert_eq!(
        a["by_state"],
        json!({"running": 22, "succeeded": 10, "canceled": 1, "failed": 1})
    );

    let g = run(&url, &["stats", "--group", "g", "--json"])
        .assert_code(0)
        .json();
    assert_eq!(g["group"], "g");
    assert_eq!(g["records"], 5, "{g}");
    assert_row(&g, "dev", "group", "g", counts(5, 5, 0, 0, 0));

    let dev_a = run(&url, &["--env", "dev", "stats", "--task", "a"]);
    dev_a.assert_code(0);
    assert!(
        dev_a
            .stdout
            .contains("prefix runonce, environment dev, task a"),
        "{dev_a:#?}"
    );
    assert_eq!(human_row(&dev_a.stdout, &["total"]), [30, 20, 10, 0, 0]);

    let app2 = run(&url, &["--prefix", "app2", "stats", "--json"])
        .assert_code(0)
        .json();
    assert_eq!(app2["records"], 3, "{app2}");
    assert_eq!(app2["other_keys"], 0, "{app2}");

    let none = run(&url, &["--env", "nowhere", "stats", "--json"])
        .assert_code(0)
        .json();
    assert_eq!(none["records"], 0);
    assert_eq!(none["memory"], Value::Null);

    // Bad filters: exit 2, before Redis.
    run(&url, &["stats", "--task", "a", "--group", "g"]).assert_code(2);
    let empty = run(&url, &["stats", "--task", ""]);
    empty.assert_code(2);
    assert!(empty.stderr.starts_with("error: "), "{empty:#?}");
    assert!(empty.stdout.is_empty());
}

#[test]
fn stats_samples_memory_and_extrapolates_on_a_larger_keyspace() {
    let server = RedisServer::start();
    let url = server.url();
    rt().block_on(async {
        let d = handle(&url, "dev", "runonce").await;
        let items = (0..1200)
            .map(|i| TriggerOptions::with_key(format!("bulk-{i}")).ttl(ttl("1h")))
            .collect();
        let out = d.batch_trigger("bulk", items).await.unwrap();
        assert!(out.iter().all(|r| r.as_ref().is_ok_and(|t| !t.cached)));
    });
    let v = run(&url, &["stats", "--json"]).assert_code(0).json();
    assert_eq!(v["records"], 1200, "{v}");
    assert_row(&v, "dev", "task", "bulk", counts(1200, 1200, 0, 0, 0));
    let m = &v["memory"];
    assert_eq!(m["sampled_records"], 1000, "{m}");
    assert_eq!(m["extrapolated"], true, "{m}");
    let per = m["bytes_per_record"].as_f64().unwrap();
    let est = m["estimated_bytes"].as_f64().unwrap();
    assert!((est - per * 1200.0).abs() <= 1200.0 * 0.1, "{m}");
    assert!(est > m["sampled_bytes"].as_f64().unwrap(), "{m}");

    let human = run(&url, &["stats"]).assert_code(0).stdout.clone();
    assert!(
        human.contains("sampled 1000 records") && human.contains("extrapolated"),
        "{human}"
    );
}

#[test]
fn stats_judges_eviction_and_persistence() {
    let server = RedisServer::builder()
        .appendonly(true)
        .arg("maxmemory-policy", "allkeys-lru")
        .start();
    let v = run(&server.url(), &["stats", "--json"])
        .assert_code(0)
        .json();
    let s = &v["servers"][0];
    assert_eq!(s["maxmemory_policy"], "allkeys-lru");
    assert_eq!(s["eviction"]["verdict"], "unsafe");
    assert!(
        s["eviction"]["note"]
            .as_str()
            .unwrap()
            .starts_with("unsafe: can evict records and allow duplicates"),
        "{s}"
    );
    assert_eq!(s["appendonly"], "yes");
    assert_eq!(s["appendfsync"], "always");
    assert_eq!(s["persistence"]["verdict"], "durable");

    let human = run(&server.url(), &["stats"]);
    human.assert_code(0);
    assert!(
        human
            .stdout
            .contains("unsafe: can evict records and allow duplicates"),
        "{human:#?}"
    );
    assert!(
        human
            .stdout
            .contains("appendonly yes, appendfsync always  durable"),
        "{human:#?}"
    );

    let everysec = RedisServer::builder().appendonly(false).start();
    let v = run(&everysec.url(), &["stats", "--json"])
        .assert_code(0)
        .json();
    assert_eq!(v["servers"][0]["persistence"]["verdict"], "aof_everysec");
    assert!(v["servers"][0]["persistence"]["note"]
        .as_str()
        .unwrap()
        .contains("may lose ~1s of claims on crash"));
}

#[test]
fn stats_on_an_unreachable_redis_fails_fast_naming_it() {
    let port = runonce_tests::free_port();
    let out = run(
        &format!("redis://127.0.0.1:{port}"),
        &["--timeout", "1s", "stats"],
    );
    out.assert_code(1);
    assert!(out.elapsed < Duration::from_secs(5), "{out:#?}");
    assert!(out.stdout.is_empty(), "{out:#?}");
    assert!(out.stderr.starts_with("error: "), "{out:#?}");
    assert!(
        out.stderr.contains(&format!("127.0.0.1:{port}")),
        "{out:#?}"
    );
}
