//! An unreachable Redis fails fast (within --timeout, never a hang) with
//! exit 1 and a message naming the address and what to check.

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::run;
use runonce_tests::free_port;

#[test]
fn nothing_listening_fails_within_the_timeout_naming_the_address() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    for args in [
        vec!["--timeout", "1s", "trigger", "--task", "t", "--key", "k"],
        vec!["--timeout", "1s", "lookup", "--task", "t", "--key", "k"],
        vec!["--timeout", "1s", "reset", "--task", "t", "--key", "k"],
    ] {
        let out = run(&url, &args);
        assert_eq!(out.code(), 1, "{args:?}: {out:#?}");
        assert!(out.elapsed < Duration::from_secs(5), "{args:?}: {out:#?}");
        assert!(out.stdout.is_empty(), "{out:#?}");
        assert!(out.stderr.starts_with("error: "), "{out:#?}");
        assert!(
            out.stderr.contains(&format!("127.0.0.1:{port}")),
            "stderr must name the address: {out:#?}"
        );
        assert!(
            out.stderr.contains("check"),
            "stderr must say what to check: {out:#?}"
        );
    }
}

#[test]
fn the_address_can_come_from_redis_url() {
    let port = free_port();
    let mut c = common::runonce();
    c.env("REDIS_URL", format!("redis://127.0.0.1:{port}"))
        .args(["trigger", "--task", "t", "--key", "k", "--timeout", "1s"]);
    let out = common::finish(c, None);
    out.assert_code(1);
    assert!(
        out.stderr.contains(&format!("127.0.0.1:{port}")),
        "{out:#?}"
    );
    assert!(out.elapsed < Duration::from_secs(5), "{out:#?}");
}

#[test]
fn a_server_that_never_answers_times_out_instead_of_hanging() {
    // Accepts connections and never replies: the worst case for a client.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let holder = std::thread::spawn(move || {
        let mut held = Vec::new();
        listener.set_nonblocking(true).unwrap();
        let until = std::time::Instant::now() + Duration::from_secs(15);
        while std::time::Instant::now() < until {
            if let Ok((s, _)) = listener.accept() {
                held.push(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let url = format!("redis://127.0.0.1:{port}");
    for args in [
        vec!["--timeout", "1s", "trigger", "--task", "t", "--key", "k"],
        vec![
            "--timeout",
            "1s",
            "complete",
            "--task",
            "t",
            "--key",
            "k",
            "--run-id",
            "run_1",
            "--outcome",
            "failed",
        ],
    ] {
        let out = run(&url, &args);
        assert_eq!(out.code(), 1, "{args:?}: {out:#?}");
        assert!(out.elapsed < Duration::from_secs(5), "{args:?}: {out:#?}");
        assert!(out.stderr.contains("timed out"), "{args:?}: {out:#?}");
        assert!(
            out.stderr.contains(&format!("127.0.0.1:{port}")),
            "{out:#?}"
        );
    }
    let mut c = common::runonce();
    c.args(["--redis", &url, "--timeout", "1s", "batch", "--task", "t"]);
    let out = common::finish(c, Some("{\"key\":\"a\"}\n{\"key\":\"b\"}\n"));
    out.assert_code(1);
    assert!(out.elapsed < Duration::from_secs(5), "{out:#?}");
    drop(holder);
}
