//! `--cluster URL,...` and `--sentinel URL,... --master NAME` (and
//! RUNONCE_CLUSTER, RUNONCE_SENTINEL, RUNONCE_MASTER): one of three
//! exclusive ways to say where Redis is; the command line beats the
//! environment.

mod common;

use std::time::Duration;

use common::{assert_keyed_trigger, run_env};
use runonce_tests::{free_port, RedisCluster, RedisSentinel};

fn dead_url() -> String {
    format!("redis://127.0.0.1:{}", free_port())
}

#[test]
fn cluster_trigger_twice_is_cached_with_the_same_run() {
    let cluster = RedisCluster::start(3, 0);
    let seeds = cluster.seed_urls().join(",");

    let first = run_env(
        &[],
        &["--cluster", &seeds, "trigger", "--task", "t", "--key", "k"],
    );
    let v = first.assert_code(0).json();
    let run_id = assert_keyed_trigger(&v);
    assert_eq!(v["cached"], false, "{v}");

    // Again from the environment; a REDIS_URL in the environment loses to
    // --cluster on the command line.
    let again = run_env(
        &[("RUNONCE_CLUSTER", &seeds)],
        &["trigger", "--task", "t", "--key", "k"],
    );
    let w = again.assert_code(0).json();
    assert_eq!(w["cached"], true, "{w}");
    assert_eq!(assert_keyed_trigger(&w), run_id);
    let third = run_env(
        &[("REDIS_URL", &dead_url())],
        &["trigger", "--task", "t", "--key", "k", "--cluster", &seeds],
    );
    let x = third.assert_code(0).json();
    assert_eq!(
        (x["cached"].clone(), x["run_id"].clone()),
        (true.into(), run_id.clone().into())
    );

    // Keys spread over the primaries; stats scans every one of them.
    for i in 0..30 {
        run_env(
            &[],
            &[
                "--cluster",
                &seeds,
                "trigger",
                "--task",
                "spread",
                "--key",
                &format!("k{i}"),
            ],
        )
        .assert_code(0);
    }
    let stats = run_env(&[], &["--cluster", &seeds, "stats", "--json"]);
    let s = stats.assert_code(0).json();
    assert_eq!(s["records"], 31, "{s}");
    assert_eq!(s["servers"].as_array().unwrap().len(), 3, "{s}");
    let keys: u64 = s["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["keys"].as_u64().unwrap())
        .sum();
    assert_eq!(keys, 31, "{s}");
    assert!(
        s["servers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["keys"].as_u64() > Some(0))
            .count()
            > 1,
        "the keys spread over the primaries: {s}"
    );

    let inspect = run_env(
        &[],
        &["--cluster", &seeds, "inspect", "--task", "t", "--key", "k"],
    );
    inspect.assert_code(0);
    assert!(
        inspect
            .stdout
            .lines()
            .any(|l| l == format!("owner        {run_id}")),
        "{inspect:#?}"
    );
}

#[test]
fn sentinel_trigger_twice_is_cached_with_the_same_run() {
    let deployment = RedisSentinel::start("mymaster");
    let sentinels = deployment.sentinel_urls().join(",");
    let first = run_env(
        &[],
        &[
            "--sentinel",
            &sentinels,
            "--master",
            "mymaster",
            "trigger",
            "--task",
            "t",
            "--key",
            "k",
        ],
    );
    let v = first.assert_code(0).json();
    let run_id = assert_keyed_trigger(&v);
    assert_eq!(v["cached"], false);
    let again = run_env(
        &[
            ("RUNONCE_SENTINEL", &sentinels),
            ("RUNONCE_MASTER", "mymaster"),
        ],
        &["trigger", "--task", "t", "--key", "k"],
    );
    let w = again.assert_code(0).json();
    assert_eq!(w["cached"], true, "{w}");
    assert_eq!(assert_keyed_trigger(&w), run_id);

    // stats reads the current primary.
    let stats = run_env(
        &[
            ("RUNONCE_SENTINEL", &sentinels),
            ("RUNONCE_MASTER", "mymaster"),
        ],
        &["stats", "--json"],
    );
    let s = stats.assert_code(0).json();
    assert_eq!(s["records"], 1, "{s}");
    assert_eq!(
        s["servers"][0]["addr"],
        format!("127.0.0.1:{}", deployment.primary_port())
    );
}

/// Refused before Redis is contacted: exit 2, nothing on stdout, a message
/// that says what to do.
fn assert_refused(env: &[(&str, &str)], args: &[&str], says: &str) {
    let out = run_env(env, args);
    out.assert_code(2);
    assert!(out.stdout.is_empty(), "{out:#?}");
    assert!(out.stderr.starts_with("error: "), "{out:#?}");
    assert!(
        out.stderr.contains(says),
        "stderr should say {says:?}: {out:#?}"
    );
    assert!(out.elapsed < Duration::from_secs(5), "{out:#?}");
}

#[test]
fn sentinel_without_master_is_invalid_input() {
    let lookup = ["lookup", "--task", "t", "--key", "k"];
    let s = dead_url();
    assert_refused(
        &[],
        &[&["--sentinel", s.as_str()][..], &lookup].concat(),
        "--master NAME",
    );
    assert_refused(&[("RUNONCE_SENTINEL", &s)], &lookup, "--master NAME");
    // An empty master is no master.
    assert_refused(
        &[],
        &[&["--sentinel", s.as_str(), "--master", " "][..], &lookup].concat(),
        "--master NAME",
    );
}

#[test]
fn the_three_shapes_exclude_each_other() {
    let t = ["trigger", "--task", "t", "--key", "k"];
    let (a, b) = (dead_url(), dead_url());
    assert_refused(
        &[],
        &[&["--redis", a.as_str(), "--cluster", b.as_str()][..], &t].concat(),
        "--redis and --cluster exclude each other",
    );
    assert_refused(
        &[],
        &[
            &[
                "--cluster",
                a.as_str(),
                "--sentinel",
                b.as_str(),
                "--master",
                "m",
            ][..],
            &t,
        ]
        .concat(),
        "exclude each other",
    );
    // Both in the environment, none on the command line: ambiguous.
    assert_refused(
        &[("REDIS_URL", &a), ("RUNONCE_CLUSTER", &b)],
        &t,
        "REDIS_URL and RUNONCE_CLUSTER",
    );
    // --master alone means nothing.
    assert_refused(
        &[],
        &[&["--master", "m"][..], &t].concat(),
        "--master NAME only applies with --sentinel",
    );
    assert_refused(
        &[],
        &[&["--cluster", a.as_str(), "--master", "m"][..], &t].concat(),
        "not with --cluster",
    );
    // Empty items in a list.
    assert_refused(
        &[],
        &[&["--cluster", &format!("{a},,{b}")][..], &t].concat(),
        "empty URL",
    );
    // A key refused before the target matters at all still exits 2.
    assert_refused(
        &[],
        &[
            "--cluster",
            a.as_str(),
            "trigger",
            "--task",
            "t",
            "--key",
            "",
        ],
        "empty",
    );
}

#[test]
fn an_unreachable_cluster_fails_fast_naming_the_seeds() {
    let (a, b) = (free_port(), free_port());
    let seeds = format!("redis://127.0.0.1:{a},redis://127.0.0.1:{b}");
    let out = run_env(
        &[],
        &[
            "--cluster",
            &seeds,
            "--timeout",
            "1s",
            "trigger",
            "--task",
            "t",
            "--key",
            "k",
        ],
    );
    out.assert_code(1);
    assert!(out.elapsed < Duration::from_secs(5), "{out:#?}");
    assert!(out.stderr.contains(&format!("127.0.0.1:{a}")), "{out:#?}");
    assert!(
        out.stderr.contains("--cluster"),
        "the hint says how it was set: {out:#?}"
    );
}
