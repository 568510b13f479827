//! Bad bytes at the edges of the CLI: a key argument that is not UTF-8, a
//! 2,049-byte key, and a NUL byte or invalid UTF-8 inside batch input. Each
//! is refused with exit 2 (or an error item in a batch) and writes nothing.

mod common;

use std::os::unix::ffi::OsStrExt;
use std::process::Stdio;
use std::time::Instant;

use runonce_tests::RedisServer;

#[test]
fn non_utf8_key_argument_exits_2() {
    let server = RedisServer::start();
    let mut c = common::runonce();
    c.args(["--redis", &server.url(), "trigger", "--task", "t", "--key"])
        .arg(std::ffi::OsStr::from_bytes(b"bad\xffkey"));
    let out = common::finish(c, None);
    out.assert_code(2);
    assert!(out.stderr.contains("UTF-8"), "{out:#?}");
    assert_eq!(server.dbsize(), 0);
}

#[test]
fn oversized_key_exits_2_naming_its_size() {
    let server = RedisServer::start();
    let long = "k".repeat(2049);
    let out = common::run(&server.url(), &["trigger", "--task", "t", "--key", &long]);
    out.assert_code(2);
    assert!(out.stderr.contains("2049 bytes"), "{out:#?}");
    let ok = "k".repeat(2048);
    common::run(&server.url(), &["trigger", "--task", "t", "--key", &ok]).assert_code(0);
    assert_eq!(server.dbsize(), 1);
}

#[test]
fn nul_and_invalid_utf8_in_batch_lines_are_error_items() {
    let server = RedisServer::start();
    let mut c = common::runonce();
    c.args(["--redis", &server.url(), "batch", "--task", "t"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = c.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"{\"key\":\"ok\"}\n").unwrap();
        stdin.write_all(b"{\"key\":\"a\\u0000b\"}\n").unwrap();
        stdin.write_all(b"{\"key\":\"bad\xff\"}\n").unwrap();
        stdin.write_all(b"{\"key\":[\"x\",\"\"]}\n").unwrap();
    }
    let out = common::wait(child, start);
    out.assert_code(0);
    let items = out.json();
    let items = items.as_array().unwrap();
    assert_eq!(items.len(), 4, "{items:#?}");
    assert!(items[0]["run_id"].is_string());
    for (i, item) in items.iter().enumerate().skip(1) {
        let kind = item["error"]["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("item {i}: {item}"));
        assert!(kind.starts_with("invalid"), "item {i}: {item}");
    }
    assert!(items[1]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("NUL"));
    assert_eq!(server.dbsize(), 1, "only the good line wrote");
}
