//! `--help` of the command and every subcommand shows an example.

mod common;

#[test]
fn every_subcommand_has_an_example() {
    for sub in [
        None,
        Some("trigger"),
        Some("batch"),
        Some("lookup"),
        Some("complete"),
        Some("release"),
        Some("reset"),
        Some("inspect"),
        Some("stats"),
        Some("demo"),
    ] {
        let mut c = common::runonce();
        if let Some(s) = sub {
            c.arg(s);
        }
        c.arg("--help");
        let out = common::finish(c, None);
        out.assert_code(0);
        assert!(out.stdout.contains("Example:"), "{sub:?}: {}", out.stdout);
        let name = sub.unwrap_or("trigger");
        assert!(
            out.stdout.contains(&format!("runonce {name}")) || sub.is_none(),
            "{sub:?}: the example uses the command: {}",
            out.stdout
        );
        // The global options are listed everywhere.
        for flag in [
            "--redis",
            "--cluster",
            "--sentinel",
            "--master",
            "--env",
            "--prefix",
            "--timeout",
        ] {
            assert!(out.stdout.contains(flag), "{sub:?} lacks {flag}");
        }
    }
}

#[test]
fn the_worker_subcommand_is_hidden() {
    let out = common::finish(
        {
            let mut c = common::runonce();
            c.arg("--help");
            c
        },
        None,
    );
    assert!(!out.stdout.contains("__worker"), "{}", out.stdout);
    let demo = common::finish(
        {
            let mut c = common::runonce();
            c.args(["demo", "--help"]);
            c
        },
        None,
    );
    assert!(!demo.stdout.contains("--in-memory"), "{}", demo.stdout);
}

#[test]
fn stats_help_documents_the_json_fields() {
    let mut c = common::runonce();
    c.args(["stats", "--help"]);
    let out = common::finish(c, None);
    out.assert_code(0);
    for field in [
        "keys_matched",
        "records",
        "other_keys",
        "by_environment",
        "by_namespace",
        "by_state",
        "ttl",
        "memory",
        "extrapolated",
        "servers",
        "eviction",
        "persistence",
        "--json",
        "--task",
        "--group",
    ] {
        assert!(out.stdout.contains(field), "stats --help lacks {field}");
    }
}

#[test]
fn the_environment_variables_of_the_targets_are_named() {
    let mut c = common::runonce();
    c.arg("--help");
    let out = common::finish(c, None);
    for var in [
        "REDIS_URL",
        "RUNONCE_CLUSTER",
        "RUNONCE_SENTINEL",
        "RUNONCE_MASTER",
    ] {
        assert!(
            out.stdout.contains(var),
            "--help lacks {var}: {}",
            out.stdout
        );
    }
}
