//! A single `redis-server` process.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};
use tempfile::TempDir;

use crate::binary::require_binary;
use crate::port::free_port;
use crate::wait::POLL_INTERVAL;

/// How long a (re)started server gets to answer `PING`.
const START_DEADLINE: Duration = Duration::from_secs(10);
/// How many fresh ports [`ServerBuilder::start`] tries when the port turns out to be taken.
const START_ATTEMPTS: usize = 5;
/// Log file written by redis-server itself (`--logfile`).
const LOG_FILE: &str = "redis.log";
/// Where the child's stdout/stderr go (early fatal config errors are only printed there).
const STDIO_FILE: &str = "stdio.log";
/// Cluster state file for cluster-enabled servers.
const CLUSTER_CONFIG_FILE: &str = "nodes.conf";
/// Config file of a Sentinel, in its temp dir.
const SENTINEL_CONFIG_FILE: &str = "sentinel.conf";
/// Number of log lines included in panic messages.
const LOG_TAIL_LINES: usize = 40;

/// Builder for a [`RedisServer`] with non-default configuration.
///
/// Obtained from [`RedisServer::builder`]; finish with [`ServerBuilder::start`].
#[derive(Debug, Clone, Default)]
#[must_use = "a ServerBuilder does nothing until .start() is called"]
pub struct ServerBuilder {
    appendonly: Option<bool>,
    replica_of: Option<(u16, Option<String>)>,
    cluster: bool,
    password: Option<String>,
    extra: Vec<(String, String)>,
    /// Sentinel mode: the initial `sentinel.conf` text (see [`crate::RedisSentinel`]).
    sentinel_config: Option<String>,
}

impl ServerBuilder {
    /// Adds an extra configuration directive, passed as `--name value` after all the
    /// harness's own directives (so it overrides them), e.g.
    /// `.arg("maxmemory-policy", "allkeys-lru")`.
    pub fn arg(mut self, name: &str, value: &str) -> Self {
        self.extra.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Enables the append-only file (`appendonly yes`); with `fsync_always` also
    /// `appendfsync always`, so every acknowledged write survives a SIGKILL.
    pub fn appendonly(mut self, fsync_always: bool) -> Self {
        self.appendonly = Some(fsync_always);
        self
    }

    /// Makes the server a replica of `primary` (`--replicaof 127.0.0.1 <port>`). If the
    /// primary has a password, it is used as `masterauth`.
    pub fn replica_of(mut self, primary: &RedisServer) -> Self {
        self.replica_of = Some((primary.port, primary.password.clone()));
        self
    }

    /// Enables cluster mode: `cluster-enabled yes`, `cluster-config-file` inside the
    /// server's temp dir, `cluster-node-timeout 2000`.
    pub fn cluster_enabled(mut self) -> Self {
        self.cluster = true;
        self
    }

    /// Requires a password (`requirepass`). All connections the harness makes
    /// ([`RedisServer::connection`], [`RedisServer::query`], …) authenticate with it and
    /// [`RedisServer::url`] includes it.
    pub fn password(mut self, pw: &str) -> Self {
        self.password = Some(pw.to_owned());
        self
    }

    /// Runs the process as a Sentinel (`redis-server <dir>/sentinel.conf --sentinel`)
    /// whose config file starts with `config`. The file lives in the server's temp dir,
    /// where Sentinel can rewrite it; data-node options are left out.
    pub(crate) fn sentinel_config(mut self, config: String) -> Self {
        self.sentinel_config = Some(config);
        self
    }

    /// Command-line arguments for a Sentinel on `port` in `dir`, writing its config file.
    fn sentinel_argv(&self, config: &str, port: u16, dir: &Path) -> Vec<String> {
        let path = dir.join(SENTINEL_CONFIG_FILE);
        std::fs::write(&path, config)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        let mut argv = vec![path.to_string_lossy().into_owned(), "--sentinel".to_owned()];
        for (name, value) in [
            ("bind", "127.0.0.1".to_owned()),
            ("port", port.to_string()),
            ("dir", dir.to_string_lossy().into_owned()),
            ("logfile", dir.join(LOG_FILE).to_string_lossy().into_owned()),
            ("daemonize", "no".to_owned()),
        ] {
            argv.push(format!("--{name}"));
            argv.push(value);
        }
        for (name, value) in &self.extra {
            argv.push(format!("--{name}"));
            argv.push(value.clone());
        }
        argv
    }

    /// Command-line arguments (without the binary) for a server on `port` in `dir`.
    fn argv(&self, port: u16, dir: &Path) -> Vec<String> {
        if let Some(config) = &self.sentinel_config {
            return self.sentinel_argv(config, port, dir);
        }
        let mut argv: Vec<String> = Vec::new();
        let mut push = |name: &str, value: &str| {
            argv.push(format!("--{name}"));
            argv.push(value.to_owned());
        };
        let dir_s = dir.to_string_lossy();
        push("bind", "127.0.0.1");
        push("port", &port.to_string());
        push("save", "");
        push("dir", &dir_s);
        push("logfile", &dir.join(LOG_FILE).to_string_lossy());
        push("daemonize", "no");
        push("maxmemory-policy", "noeviction");
        // Replicas sync immediately instead of after the default 5 s batching delay.
        push("repl-diskless-sync-delay", "0");
        match self.appendonly {
            None => push("appendonly", "no"),
            Some(fsync_always) => {
                push("appendonly", "yes");
                if fsync_always {
                    push("appendfsync", "always");
                }
            }
        }
        if self.cluster {
            push("cluster-enabled", "yes");
            push(
                "cluster-config-file",
                &dir.join(CLUSTER_CONFIG_FILE).to_string_lossy(),
            );
            push("cluster-node-timeout", "2000");
        }
        if let Some((primary_port, primary_pw)) = &self.replica_of {
            argv.push("--replicaof".to_owned());
            argv.push("127.0.0.1".to_owned());
            argv.push(primary_port.to_string());
            if let Some(pw) = primary_pw {
                argv.push("--masterauth".to_owned());
                argv.push(pw.clone());
            }
        }
        if let Some(pw) = &self.password {
            argv.push("--requirepass".to_owned());
            argv.push(pw.clone());
        }
        for (name, value) in &self.extra {
            argv.push(format!("--{name}"));
            argv.push(value.clone());
        }
        argv
    }

    /// Starts the server on a free port in a fresh temp dir and waits (up to ~10 s) until
    /// it answers `PING`. If `redis-server` exits because the port was taken in the
    /// meantime, it retries a few times with a fresh port and directory.
    ///
    /// # Panics
    ///
    /// Panics if `redis-server` is not installed (see [`crate::require_binary`]), or if
    /// the server does not come up; the message includes the tail of its log.
    pub fn start(self) -> RedisServer {
        let bin = require_binary("redis-server");
        let mut last_failure = String::new();
        for attempt in 1..=START_ATTEMPTS {
            let port = free_port();
            let dir = tempfile::Builder::new()
                .prefix("runonce-redis-")
                .tempdir()
                .unwrap_or_else(|e| panic!("cannot create temp dir for redis-server: {e}"));
            let argv = self.argv(port, dir.path());
            let mut server = RedisServer {
                child: None,
                port,
                password: self.password.clone(),
                argv,
                bin: bin.clone(),
                dir,
            };
            server.spawn();
            match server.wait_ready(Instant::now() + START_DEADLINE) {
                Ok(()) => return server,
                Err(ReadyError::Exited(status)) if server.log_says_address_in_use() => {
                    last_failure = format!(
                        "attempt {attempt}: port {port} was taken (redis-server exited with \
                         {status})\n{}",
                        server.log_tail()
                    );
                }
                Err(e) => panic!(
                    "redis-server on {} did not start: {e}\ncommand: {}\n{}",
                    server.addr(),
                    server.command_line(),
                    server.log_tail()
                ),
            }
        }
        panic!("redis-server did not start after {START_ATTEMPTS} attempts; last failure:\n{last_failure}");
    }
}

/// A running (or killed) `redis-server` child process with its own temp dir.
///
/// Dropping it kills the process (SIGKILL), reaps it, and removes the temp dir.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    password: Option<String>,
    argv: Vec<String>,
    bin: PathBuf,
    // Declared last: removed only after the process is gone (Drop kills it first anyway).
    dir: TempDir,
}

#[derive(Debug)]
enum ReadyError {
    Exited(ExitStatus),
    Timeout(String),
}

impl std::fmt::Display for ReadyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadyError::Exited(status) => write!(f, "redis-server exited early ({status})"),
            ReadyError::Timeout(last) => write!(
                f,
                "no PING answer within {START_DEADLINE:?} (last error: {last})"
            ),
        }
    }
}

impl RedisServer {
    /// Starts a server with the default configuration: `--bind 127.0.0.1 --port P
    /// --save "" --appendonly no --dir <tempdir> --logfile <tempdir>/redis.log
    /// --daemonize no --maxmemory-policy noeviction --repl-diskless-sync-delay 0`.
    ///
    /// # Panics
    ///
    /// See [`ServerBuilder::start`].
    pub fn start() -> RedisServer {
        ServerBuilder::default().start()
    }

    /// Returns a builder for a server with non-default configuration.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// The TCP port the server listens on (on `127.0.0.1`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `"127.0.0.1:PORT"`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `"redis://127.0.0.1:PORT"`, or `"redis://:PASSWORD@127.0.0.1:PORT"` (password
    /// percent-encoded) when a password is set.
    pub fn url(&self) -> String {
        match &self.password {
            None => format!("redis://127.0.0.1:{}", self.port),
            Some(pw) => format!("redis://:{}@127.0.0.1:{}", percent_encode(pw), self.port),
        }
    }

    /// The server's temp dir (working dir, log file, AOF, cluster config).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn connection_info(&self) -> ConnectionInfo {
        let mut redis_settings = RedisConnectionInfo::default().set_skip_set_lib_name();
        if let Some(pw) = &self.password {
            redis_settings = redis_settings.set_password(pw);
        }
        ConnectionAddr::Tcp("127.0.0.1".to_owned(), self.port)
            .into_connection_info()
            .expect("a TCP address is always a valid connection info")
            .set_redis_settings(redis_settings)
    }

    /// A connection with short timeouts, for the harness's own polling.
    pub(crate) fn try_probe_connection(&self) -> redis::RedisResult<redis::Connection> {
        let con = redis::Client::open(self.connection_info())?
            .get_connection_with_timeout(Duration::from_millis(500))?;
        con.set_read_timeout(Some(Duration::from_secs(2)))?;
        con.set_write_timeout(Some(Duration::from_secs(2)))?;
        Ok(con)
    }

    /// Runs `cmd` on a fresh probe connection, returning errors instead of panicking.
    pub(crate) fn try_query<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> redis::RedisResult<T> {
        cmd.query(&mut self.try_probe_connection()?)
    }

    /// Opens a new synchronous connection (authenticated if a password is set). The
    /// connection has no read timeout, so blocking commands work.
    ///
    /// # Panics
    ///
    /// Panics (with the log tail) if the server cannot be reached within 5 s.
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.connection_info())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(5)))
            .unwrap_or_else(|e| {
                panic!(
                    "cannot connect to redis-server at {}: {e}\n{}",
                    self.addr(),
                    self.log_tail()
                )
            })
    }

    /// Runs `cmd` on a new connection and converts the reply to `T`.
    ///
    /// # Panics
    ///
    /// Panics with the server address, the command and the error if the connection or
    /// the command fails or the reply cannot be converted.
    pub fn query<T: redis::FromRedisValue>(&self, cmd: &mut redis::Cmd) -> T {
        let mut con = self.connection();
        cmd.query(&mut con).unwrap_or_else(|e| {
            panic!(
                "redis command `{}` on {} failed: {e}",
                describe_cmd(cmd),
                self.addr()
            )
        })
    }

    /// Number of keys in the current database (`DBSIZE`).
    pub fn dbsize(&self) -> u64 {
        self.query(&mut redis::cmd("DBSIZE"))
    }

    /// The text of `INFO <section>` (e.g. `"replication"`, `"commandstats"`).
    pub fn info(&self, section: &str) -> String {
        self.query(redis::cmd("INFO").arg(section))
    }

    /// How many times command `cmd` (e.g. `"evalsha"`, `"set"`, `"ping"`; case-insensitive,
    /// subcommands as `"config|resetstat"`) was called since start or the last
    /// [`reset_stats`](Self::reset_stats), from `INFO commandstats`
    /// (`cmdstat_<name>:calls=N,...`). Returns 0 when the command was never called.
    pub fn command_calls(&self, cmd: &str) -> u64 {
        parse_command_calls(&self.info("commandstats"), cmd)
    }

    /// Resets the server's statistics, including command stats (`CONFIG RESETSTAT`).
    pub fn reset_stats(&self) {
        let () = self.query(redis::cmd("CONFIG").arg("RESETSTAT"));
    }

    /// Kills the process with SIGKILL and waits for it to exit. Idempotent. The temp dir
    /// (and any AOF in it) is kept, so the server can be [`restart`](Self::restart)ed.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Fails only if the process already exited; wait() reaps it either way.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again with the same port, dir and arguments (killing it first if
    /// it is still running) and waits until it answers `PING`. Retries for up to ~10 s if
    /// the port is momentarily unavailable.
    ///
    /// # Panics
    ///
    /// Panics with the log tail if the server does not come back within the deadline.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            self.spawn();
            match self.wait_ready(deadline) {
                Ok(()) => return,
                Err(ReadyError::Exited(_)) if Instant::now() < deadline => {
                    self.kill();
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!(
                    "redis-server on {} did not restart: {e}\ncommand: {}\n{}",
                    self.addr(),
                    self.command_line(),
                    self.log_tail()
                ),
            }
        }
    }

    /// Whether the process is still alive (it may have been killed via
    /// [`kill`](Self::kill) or have exited on its own; an exited process is reaped).
    pub fn is_running(&mut self) -> bool {
        let Some(child) = self.child.as_mut() else {
            return false;
        };
        match child.try_wait() {
            Ok(None) => true,
            Ok(Some(_)) | Err(_) => {
                self.child = None;
                false
            }
        }
    }

    /// True unless [`kill`](Self::kill) was called (or `is_running` saw it exit); does not
    /// check the OS, so it works through `&self`.
    pub(crate) fn has_child(&self) -> bool {
        self.child.is_some()
    }

    fn spawn(&mut self) {
        debug_assert!(self.child.is_none());
        let stdio_path = self.dir.path().join(STDIO_FILE);
        let open_stdio = || {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&stdio_path)
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null())
        };
        let child = Command::new(&self.bin)
            .args(&self.argv)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(open_stdio())
            .stderr(open_stdio())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", self.bin.display()));
        self.child = Some(child);
    }

    /// Polls until the spawned child answers `PING` (and `INFO server` reports our own
    /// child's pid, so a foreign server that grabbed the port is not mistaken for ours).
    fn wait_ready(&mut self, deadline: Instant) -> Result<(), ReadyError> {
        loop {
            let child = self.child.as_mut().expect("wait_ready after spawn");
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Err(ReadyError::Exited(status));
            }
            let pid = child.id();
            let last_error = match self.probe(pid) {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                self.kill();
                return Err(ReadyError::Timeout(last_error));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    fn probe(&self, expected_pid: u32) -> Result<(), String> {
        let mut con = self.try_probe_connection().map_err(|e| e.to_string())?;
        let pong: String = redis::cmd("PING")
            .query(&mut con)
            .map_err(|e| e.to_string())?;
        if pong != "PONG" {
            return Err(format!("unexpected PING reply {pong:?}"));
        }
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query(&mut con)
            .map_err(|e| e.to_string())?;
        match info_field(&info, "process_id").and_then(|p| p.parse::<u32>().ok()) {
            Some(pid) if pid == expected_pid => Ok(()),
            Some(pid) => Err(format!(
                "port {} is answered by another redis-server (pid {pid}, ours is {expected_pid})",
                self.port
            )),
            None => Err("INFO server has no process_id".to_owned()),
        }
    }

    fn log_says_address_in_use(&self) -> bool {
        [LOG_FILE, STDIO_FILE].iter().any(|f| {
            std::fs::read_to_string(self.dir.path().join(f))
                .is_ok_and(|s| s.contains("Address already in use"))
        })
    }

    fn command_line(&self) -> String {
        let mut s = self.bin.display().to_string();
        for a in &self.argv {
            if a.is_empty() || a.contains(' ') {
                let _ = write!(s, " {a:?}");
            } else {
                let _ = write!(s, " {a}");
            }
        }
        s
    }

    /// The last lines of the server's log file and of its stdout/stderr, for diagnostics.
    pub(crate) fn log_tail(&self) -> String {
        let mut out = String::new();
        for name in [LOG_FILE, STDIO_FILE] {
            let path = self.dir.path().join(name);
            let _ = writeln!(out, "--- tail of {} ---", path.display());
            match tail_lines(&path, LOG_TAIL_LINES) {
                Ok(t) if t.trim().is_empty() => out.push_str("(empty)\n"),
                Ok(t) => out.push_str(&t),
                Err(e) => {
                    let _ = writeln!(out, "({e})");
                }
            }
        }
        out
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Value of `field:value` in INFO output.
pub(crate) fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines().find_map(|line| {
        line.strip_prefix(field)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::trim)
    })
}

fn parse_command_calls(commandstats: &str, cmd: &str) -> u64 {
    let prefix = format!("cmdstat_{}:", cmd.to_ascii_lowercase());
    commandstats
        .lines()
        .find_map(|line| line.trim().strip_prefix(prefix.as_str()))
        .and_then(|stats| {
            stats
                .split(',')
                .find_map(|kv| kv.strip_prefix("calls="))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn tail_lines(path: &Path, lines: usize) -> std::io::Result<String> {
    const MAX_BYTES: u64 = 64 * 1024;
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(MAX_BYTES)))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    let mut out = all[all.len().saturating_sub(lines)..].join("\n");
    out.push('\n');
    Ok(out)
}

fn describe_cmd(cmd: &redis::Cmd) -> String {
    let mut s = String::new();
    for arg in cmd.args_iter() {
        if !s.is_empty() {
            s.push(' ');
        }
        match arg {
            redis::Arg::Simple(bytes) => s.push_str(&String::from_utf8_lossy(bytes)),
            _ => s.push_str("<cursor>"),
        }
        if s.len() > 200 {
            s.truncate(200);
            s.push('…');
            break;
        }
    }
    s
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commandstats() {
        let info = "# Commandstats\r\n\
                    cmdstat_set:calls=3,usec=12,usec_per_call=4.00,rejected_calls=0,failed_calls=0\r\n\
                    cmdstat_setex:calls=7,usec=1,usec_per_call=0.1\r\n\
                    cmdstat_config|resetstat:calls=1,usec=5\r\n";
        assert_eq!(parse_command_calls(info, "set"), 3);
        assert_eq!(parse_command_calls(info, "SETEX"), 7);
        assert_eq!(parse_command_calls(info, "config|resetstat"), 1);
        assert_eq!(parse_command_calls(info, "get"), 0);
    }

    #[test]
    fn info_fields() {
        let info = "# Server\r\nprocess_id:42\r\nrole:master\r\n";
        assert_eq!(info_field(info, "process_id"), Some("42"));
        assert_eq!(info_field(info, "role"), Some("master"));
        assert_eq!(info_field(info, "rol"), None);
    }

    #[test]
    fn encodes_passwords() {
        assert_eq!(percent_encode("a b@c:d/é"), "a%20b%40c%3Ad%2F%C3%A9");
    }
}
