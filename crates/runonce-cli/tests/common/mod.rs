//! Shared helpers of the CLI integration tests: run the `runonce` binary
//! hermetically (no REDIS_URL/RUNONCE_* from the caller's environment), with
//! a hard deadline so a hang fails the test instead of stalling it.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long any one invocation may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// What one invocation did.
#[derive(Debug)]
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    /// The exit code (panics if killed by a signal).
    pub fn code(&self) -> i32 {
        self.status
            .code()
            .unwrap_or_else(|| panic!("killed by a signal: {self:?}"))
    }

    /// stdout as one JSON document (panics, showing the run, if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {self:#?}"))
    }

    /// Asserts the exit code, showing the whole run if it differs.
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code(), code, "unexpected exit code: {self:#?}");
        self
    }
}

/// A `runonce` command with a clean environment.
pub fn runonce() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_runonce"));
    for var in [
        "REDIS_URL",
        "RUNONCE_ENV",
        "RUNONCE_PREFIX",
        "RUNONCE_CLUSTER",
        "RUNONCE_SENTINEL",
        "RUNONCE_MASTER",
    ] {
        c.env_remove(var);
    }
    c
}

/// Runs `args` with the given Redis URL (passed as `--redis`), no stdin.
pub fn run(url: &str, args: &[&str]) -> Run {
    let mut c = runonce();
    c.arg("--redis").arg(url).args(args);
    finish(c, None)
}

/// Runs `args` with no Redis option on the command line and `env` set.
pub fn run_env(env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut c = runonce();
    c.envs(env.iter().copied()).args(args);
    finish(c, None)
}

/// Runs a prepared command, feeding `stdin` if given.
pub fn finish(mut c: Command, stdin: Option<&str>) -> Run {
    c.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = c.spawn().expect("spawn runonce");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("piped stdin");
        pipe.write_all(input.as_bytes()).expect("write stdin");
    }
    wait(child, start)
}

/// Waits for a spawned child with the [`DEADLINE`], collecting its output.
pub fn wait(mut child: Child, start: Instant) -> Run {
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).map(|_| s)
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).map(|_| s)
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("runonce did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = start.elapsed();
    Run {
        status,
        stdout: t_out.join().unwrap().expect("read stdout"),
        stderr: t_err.join().unwrap().expect("read stderr"),
        elapsed,
    }
}

/// Asserts `v` is a trigger answer with exactly the contract's fields and
/// types, and a key (64 lowercase hex) and window; returns the run ID.
pub fn assert_keyed_trigger(v: &Value) -> String {
    assert_object_keys(v, &["run_id", "cached", "key", "expires_in_ms"]);
    let run_id = v["run_id"].as_str().expect("run_id is a string");
    assert!(!run_id.is_empty(), "{v}");
    assert!(v["cached"].is_boolean(), "{v}");
    let key = v["key"].as_str().expect("key is a string");
    assert_hex64(key);
    assert!(v["expires_in_ms"].is_u64(), "{v}");
    run_id.to_owned()
}

/// Asserts `s` is 64 lowercase hex characters.
pub fn assert_hex64(s: &str) {
    assert_eq!(s.len(), 64, "{s}");
    assert!(
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "not lowercase hex: {s}"
    );
}

/// Asserts `v` is an object with exactly `keys`.
pub fn assert_object_keys(v: &Value, keys: &[&str]) {
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"));
    let mut got: Vec<&str> = obj.keys().map(String::as_str).collect();
    let mut want = keys.to_vec();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want, "{v}");
}
