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
        for flag in ["--redis", "--env", "--prefix", "--timeout"] {
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
