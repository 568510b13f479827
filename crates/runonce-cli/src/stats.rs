//! `runonce stats`: what the records under a prefix look like, and whether
//! the server can be trusted to keep them.
//!
//! - The keyspace is walked with `SCAN cursor MATCH <prefix>:* COUNT 1000`,
//!   never `KEYS`, so a large Redis is not blocked. On a cluster every
//!   primary (from `CLUSTER SLOTS`) is scanned in turn; through Sentinel,
//!   the current primary.
//! - Every matched key is parsed back with [`runonce::inspect`]; keys that
//!   are not runonce records (another program writing under the prefix) are
//!   counted as `other_keys`, never as records. For each record, `GET` (its
//!   state) and `PTTL` (its time left) go in one pipeline per SCAN batch,
//!   and so does `MEMORY USAGE` for the first [`MEMORY_SAMPLE`] records,
//!   from which the total is extrapolated.
//! - The server's `maxmemory-policy`, `maxmemory`, `appendonly`,
//!   `appendfsync` and `save` get a verdict each (see [`eviction_verdict`]
//!   and [`persistence_verdict`]). A server that refuses `CONFIG GET` gets
//!   `unknown`, not an error.
//! - `--timeout` bounds each Redis call, not the whole walk, which can take
//!   a while on a large keyspace. A progress bar shows on stderr when it is
//!   a terminal and the keyspace holds at least [`LARGE_KEYSPACE`] keys.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, Pipeline, Value};
use runonce::inspect::{parse_record_value, parse_storage_key, scan_pattern};
use runonce::{Namespace, RecordState};
use serde::Serialize;

use crate::cli::{Global, StatsArgs, Target};
use crate::error::{target_hint, CliError};
use crate::output::Doc;

/// `COUNT` of every `SCAN` call.
const SCAN_COUNT: u64 = 1000;
/// How many records `MEMORY USAGE` is asked about, at most.
pub(crate) const MEMORY_SAMPLE: u64 = 1000;
/// From this many keys (`DBSIZE`, all nodes), a terminal gets a progress bar.
const LARGE_KEYSPACE: u64 = 10_000;
/// Extra time past `--timeout` for one call, so the client's own timeout
/// errors (more specific) win when they fire.
const GRACE: Duration = Duration::from_millis(250);

/// The TTL buckets: an upper bound in ms (exclusive) and a label.
const TTL_BUCKETS: [(u64, &str); 6] = [
    (60_000, "<1m"),
    (3_600_000, "<1h"),
    (86_400_000, "<1d"),
    (7 * 86_400_000, "<7d"),
    (30 * 86_400_000, "<30d"),
    (u64::MAX, ">=30d"),
];
/// The bucket of records without a TTL (runonce never writes one).
const NO_TTL: &str = "none";

/// The record states, in column order.
const STATES: [RecordState; 4] = [
    RecordState::Running,
    RecordState::Succeeded,
    RecordState::Canceled,
    RecordState::Failed,
];

fn state_index(s: RecordState) -> usize {
    STATES.iter().position(|x| *x == s).unwrap_or(0)
}

/// One primary to scan.
struct Node {
    /// `host:port`, for messages.
    addr: String,
    conn: Conn,
}

/// A connection that sends everything to one node.
enum Conn {
    Plain(MultiplexedConnection),
    Cluster {
        conn: ClusterConnection,
        host: String,
        port: u16,
    },
}

impl Conn {
    async fn query(&mut self, cmd: Cmd) -> redis::RedisResult<Value> {
        match self {
            Conn::Plain(c) => cmd.query_async(c).await,
            Conn::Cluster { conn, host, port } => {
                let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: host.clone(),
                    port: *port,
                });
                conn.route_command(cmd, route).await
            }
        }
    }

    /// Sends `pipe` and answers one value per command; a command the
    /// server refused answers [`Value::ServerError`] in its place.
    async fn pipeline(&mut self, pipe: Pipeline, n: usize) -> redis::RedisResult<Vec<Value>> {
        match self {
            Conn::Plain(c) => c.req_packed_commands(&pipe, 0, n).await,
            Conn::Cluster { conn, host, port } => {
                let route = SingleNodeRoutingInfo::ByAddress {
                    host: host.clone(),
                    port: *port,
                };
                conn.route_pipeline(pipe, 0, n, route).await
            }
        }
    }
}

/// Runs `f` within `timeout`, mapping failures to an exit-1 error that
/// names the node and the command.
async fn bounded<T>(
    target: &Target,
    addr: &str,
    timeout: Duration,
    what: &str,
    f: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, CliError> {
    match tokio::time::timeout(timeout + GRACE, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(CliError::failure(format!(
            "Redis at {addr} failed {what}: {e}; check that it is running and reachable there \
             and that the user may run SCAN, GET, PTTL, MEMORY USAGE and CONFIG GET"
        ))
        .with_hint(target_hint(target))),
        Err(_) => Err(timed_out(target, addr, what, timeout)),
    }
}

fn timed_out(target: &Target, addr: &str, what: &str, after: Duration) -> CliError {
    CliError::failure(format!(
        "Redis at {addr} did not answer {what} within {}; check the server's load and the \
         network, or raise --timeout",
        humantime::format_duration(after)
    ))
    .with_hint(target_hint(target))
}

fn connect_failed(target: &Target, e: redis::RedisError) -> CliError {
    CliError::failure(format!(
        "cannot connect to Redis at {}: {e}; check that it is running and reachable there",
        target.addr()
    ))
    .with_hint(target_hint(target))
}

/// Connects to every primary of `target`.
async fn connect(target: &Target, timeout: Duration) -> Result<Vec<Node>, CliError> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    let bad = |e: redis::RedisError| {
        CliError::invalid(format!(
            "bad Redis URL: {e}; expected redis://[user:password@]host:port[/db] or rediss://…"
        ))
    };
    let work = async {
        match target {
            Target::Single(url) => {
                let client = redis::Client::open(url.as_str()).map_err(bad)?;
                let addr = client.get_connection_info().addr().to_string();
                let conn = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map_err(|e| connect_failed(target, e))?;
                Ok(vec![Node {
                    addr,
                    conn: Conn::Plain(conn),
                }])
            }
            Target::Sentinel { urls, master } => {
                let mut sentinel = redis::sentinel::Sentinel::build(urls.clone()).map_err(bad)?;
                let client = sentinel
                    .async_master_for(master, None)
                    .await
                    .map_err(|e| connect_failed(target, e))?;
                let addr = client.get_connection_info().addr().to_string();
                let conn = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map_err(|e| connect_failed(target, e))?;
                Ok(vec![Node {
                    addr,
                    conn: Conn::Plain(conn),
                }])
            }
            Target::Cluster(seeds) => {
                let client = redis::cluster::ClusterClient::builder(seeds.clone())
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    .build()
                    .map_err(bad)?;
                let mut conn = client
                    .get_async_connection()
                    .await
                    .map_err(|e| connect_failed(target, e))?;
                let slots = conn
                    .route_command(
                        redis::cmd("CLUSTER").arg("SLOTS").clone(),
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
                    )
                    .await
                    .map_err(|e| {
                        CliError::failure(format!(
                            "Redis Cluster at {} failed CLUSTER SLOTS: {e}",
                            target.addr()
                        ))
                        .with_hint(target_hint(target))
                    })?;
                let primaries = cluster_primaries(&slots);
                if primaries.is_empty() {
                    return Err(CliError::failure(format!(
                        "Redis Cluster at {} reported no primaries serving slots (CLUSTER SLOTS); \
                         check the cluster's state with `redis-cli cluster info`",
                        target.addr()
                    )));
                }
                Ok(primaries
                    .into_iter()
                    .map(|(host, port)| Node {
                        addr: format!("{host}:{port}"),
                        conn: Conn::Cluster {
                            conn: conn.clone(),
                            host,
                            port,
                        },
                    })
                    .collect())
            }
        }
    };
    match tokio::time::timeout(timeout + GRACE, work).await {
        Ok(r) => r,
        Err(_) => Err(timed_out(
            target,
            &target.addr(),
            "while connecting",
            timeout,
        )),
    }
}

/// The distinct `(host, port)` of the primaries in a `CLUSTER SLOTS`
/// reply, sorted.
fn cluster_primaries(reply: &Value) -> Vec<(String, u16)> {
    let mut out: Vec<(String, u16)> = Vec::new();
    let Value::Array(ranges) = reply else {
        return out;
    };
    for range in ranges {
        let Value::Array(fields) = range else {
            continue;
        };
        let Some(Value::Array(primary)) = fields.get(2) else {
            continue;
        };
        let host = primary.first().and_then(text);
        let port = match primary.get(1) {
            Some(Value::Int(p)) => u16::try_from(*p).ok(),
            _ => None,
        };
        if let (Some(host), Some(port)) = (host, port) {
            if !host.is_empty() && !out.contains(&(host.clone(), port)) {
                out.push((host, port));
            }
        }
    }
    out.sort();
    out
}

/// A reply as text, if it is a string.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Okay => Some("OK".to_owned()),
        _ => None,
    }
}

/// The value of a `CONFIG GET <one parameter>` reply (RESP2 or RESP3).
fn config_value(v: &Value) -> Option<String> {
    match v {
        Value::Array(items) => items.get(1).and_then(text),
        Value::Map(pairs) => pairs.first().and_then(|(_, v)| text(v)),
        _ => None,
    }
}

/// A judgement of one setting: a machine-readable word and a sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Verdict {
    /// `ok`, `unsafe`, `unknown` (eviction); `durable`, `aof_everysec`,
    /// `aof_no_fsync`, `snapshots`, `none`, `unknown` (persistence).
    pub(crate) verdict: &'static str,
    /// What it means for dedupe records, and what to do.
    pub(crate) note: String,
}

/// The verdict on `maxmemory-policy`: only `noeviction` keeps records
/// safe.
pub(crate) fn eviction_verdict(policy: Option<&str>, maxmemory: Option<&str>) -> Verdict {
    match policy {
        None => Verdict {
            verdict: "unknown",
            note: "unknown: CONFIG GET was refused; make sure the policy is `noeviction`: \
                   any other policy can evict records and allow duplicates"
                .to_owned(),
        },
        Some("noeviction") => Verdict {
            verdict: "ok",
            note: "ok: records are never evicted (at maxmemory, new claims fail with OOM instead)"
                .to_owned(),
        },
        Some(_) => {
            let mut note = "unsafe: can evict records and allow duplicates; set \
                            `maxmemory-policy noeviction`"
                .to_owned();
            if maxmemory == Some("0") {
                note.push_str(" (maxmemory is 0, so nothing is evicted until a limit is set)");
            }
            Verdict {
                verdict: "unsafe",
                note,
            }
        }
    }
}

/// The verdict on persistence: what a crash or restart of the primary can
/// lose.
pub(crate) fn persistence_verdict(
    appendonly: Option<&str>,
    appendfsync: Option<&str>,
    save: Option<&str>,
) -> Verdict {
    let v = |verdict: &'static str, note: &str| Verdict {
        verdict,
        note: note.to_owned(),
    };
    match (appendonly, appendfsync) {
        (Some("yes"), Some("always")) => v(
            "durable",
            "durable: every claim reaches the AOF on disk before Redis answers",
        ),
        (Some("yes"), Some("everysec")) => v(
            "aof_everysec",
            "may lose ~1s of claims on crash (appendfsync everysec); \
             `appendfsync always` closes the gap",
        ),
        (Some("yes"), _) => v(
            "aof_no_fsync",
            "may lose the claims the OS has not flushed on crash (appendfsync no, often ~30s); \
             `appendfsync always` closes the gap",
        ),
        (Some(_), _) => match save.map(str::trim) {
            Some("") => v(
                "none",
                "claims lost on restart unless replicated: no AOF and no RDB snapshots; \
                 enable `appendonly yes` with `appendfsync always`",
            ),
            Some(_) => v(
                "snapshots",
                "claims lost on restart unless replicated: no AOF, so claims since the last \
                 RDB snapshot are lost; enable `appendonly yes` with `appendfsync always`",
            ),
            None => v(
                "unknown",
                "claims lost on restart unless replicated: no AOF (snapshot settings unknown)",
            ),
        },
        (None, _) => v(
            "unknown",
            "unknown: CONFIG GET was refused; for durable claims use `appendonly yes` with \
             `appendfsync always`",
        ),
    }
}

/// Where a record belongs: (environment, `task` or `group`, name).
type NsKey = (String, &'static str, String);

/// What the walk found.
#[derive(Default)]
struct Tally {
    keys_matched: u64,
    other_keys: u64,
    /// (environment, kind, name) → records per state.
    by_namespace: BTreeMap<NsKey, [u64; 4]>,
    /// Per TTL bucket, then "none".
    ttl: [u64; TTL_BUCKETS.len() + 1],
    mem_sampled: u64,
    mem_bytes: u64,
    /// Why `MEMORY USAGE` could not be read, if it could not.
    mem_error: Option<String>,
}

impl Tally {
    fn records(&self) -> u64 {
        self.by_namespace.values().flatten().sum()
    }

    fn add_ttl(&mut self, pttl: i64) {
        if pttl < 0 {
            self.ttl[TTL_BUCKETS.len()] += 1;
            return;
        }
        let ms = pttl as u64;
        let i = TTL_BUCKETS
            .iter()
            .position(|(max, _)| ms < *max)
            .unwrap_or(TTL_BUCKETS.len() - 1);
        self.ttl[i] += 1;
    }
}

/// The filters of one walk.
struct Filter {
    prefix: String,
    environment: Option<String>,
    namespace: Option<Namespace>,
}

impl Filter {
    fn pattern(&self) -> String {
        scan_pattern(
            &self.prefix,
            self.environment.as_deref(),
            self.namespace.as_ref(),
        )
    }

    /// The record's (environment, kind, name) if `key` is a record this
    /// walk counts; `Err(())` for a key that is not a runonce record.
    fn classify(&self, key: &[u8]) -> Result<Option<NsKey>, ()> {
        let key = std::str::from_utf8(key).map_err(|_| ())?;
        let parsed = parse_storage_key(key).ok_or(())?;
        if parsed.prefix != self.prefix {
            return Err(());
        }
        if let Some(env) = &self.environment {
            if parsed.environment != *env {
                return Ok(None);
            }
        }
        if let Some(ns) = &self.namespace {
            if parsed.namespace != *ns {
                return Ok(None);
            }
        }
        let (kind, name) = match parsed.namespace {
            Namespace::Task(t) => ("task", t),
            Namespace::Group(g) => ("group", g),
            _ => return Err(()),
        };
        Ok(Some((parsed.environment, kind, name)))
    }
}

/// One node's settings, as read.
struct Settings {
    keys: u64,
    maxmemory_policy: Option<String>,
    maxmemory: Option<String>,
    appendonly: Option<String>,
    appendfsync: Option<String>,
    save: Option<String>,
}

async fn read_settings(
    node: &mut Node,
    target: &Target,
    timeout: Duration,
) -> Result<Settings, CliError> {
    const PARAMS: [&str; 5] = [
        "maxmemory-policy",
        "maxmemory",
        "appendonly",
        "appendfsync",
        "save",
    ];
    let mut pipe = redis::pipe();
    pipe.cmd("DBSIZE");
    for p in PARAMS {
        pipe.cmd("CONFIG").arg("GET").arg(p);
    }
    let replies = bounded(
        target,
        &node.addr,
        timeout,
        "DBSIZE and CONFIG GET",
        node.conn.pipeline(pipe, PARAMS.len() + 1),
    )
    .await?;
    let keys = match replies.first() {
        Some(Value::Int(n)) => (*n).max(0) as u64,
        other => {
            return Err(CliError::failure(format!(
                "Redis at {} answered DBSIZE with {other:?}",
                node.addr
            )))
        }
    };
    // A refused CONFIG GET (ACL, managed service) answers an error in its
    // place: the setting is unknown.
    let config = |i: usize| replies.get(i + 1).and_then(config_value);
    Ok(Settings {
        keys,
        maxmemory_policy: config(0),
        maxmemory: config(1),
        appendonly: config(2),
        appendfsync: config(3),
        save: config(4),
    })
}

/// Walks one node's keys under the filter's pattern into `tally`.
async fn scan_node(
    node: &mut Node,
    target: &Target,
    timeout: Duration,
    filter: &Filter,
    tally: &mut Tally,
    progress: &mut dyn FnMut(u64, &Tally),
    node_keys: u64,
) -> Result<(), CliError> {
    let pattern = filter.pattern();
    // SCAN ends in finitely many calls: each visits at least one bucket of
    // a table that is at most a few times the key count. The bound only
    // guards against a misbehaving server.
    let max_calls = 1_000 + node_keys.saturating_mul(20);
    let mut cursor: u64 = 0;
    let mut calls: u64 = 0;
    loop {
        calls += 1;
        if calls > max_calls {
            return Err(CliError::failure(format!(
                "Redis at {} did not finish SCAN within {max_calls} calls; is the keyspace \
                 changing very fast? Try again",
                node.addr
            )));
        }
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT);
        let reply = bounded(target, &node.addr, timeout, "SCAN", node.conn.query(cmd)).await?;
        let (next, keys) = parse_scan(&reply).ok_or_else(|| {
            CliError::failure(format!(
                "Redis at {} answered SCAN with {reply:?}",
                node.addr
            ))
        })?;
        tally.keys_matched += keys.len() as u64;

        // The records among the keys, and their (environment, kind, name).
        let mut records = Vec::with_capacity(keys.len());
        for key in keys {
            match filter.classify(&key) {
                Ok(Some(ns)) => records.push((key, ns)),
                Ok(None) => {}
                Err(()) => tally.other_keys += 1,
            }
        }
        if !records.is_empty() {
            read_records(node, target, timeout, records, tally).await?;
        }
        progress(calls * SCAN_COUNT, tally);
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// `GET`, `PTTL` (and `MEMORY USAGE` while sampling) of `records`, in one
/// pipeline.
async fn read_records(
    node: &mut Node,
    target: &Target,
    timeout: Duration,
    records: Vec<(Vec<u8>, NsKey)>,
    tally: &mut Tally,
) -> Result<(), CliError> {
    let mut pipe = redis::pipe();
    let mut sampled = Vec::with_capacity(records.len());
    let mut to_sample = if tally.mem_error.is_none() {
        MEMORY_SAMPLE.saturating_sub(tally.mem_sampled)
    } else {
        0
    };
    let mut n = 0;
    for (key, _) in &records {
        pipe.cmd("GET").arg(key);
        pipe.cmd("PTTL").arg(key);
        n += 2;
        let sample = to_sample > 0;
        if sample {
            pipe.cmd("MEMORY").arg("USAGE").arg(key);
            n += 1;
            to_sample -= 1;
        }
        sampled.push(sample);
    }
    let replies = bounded(
        target,
        &node.addr,
        timeout,
        "GET/PTTL/MEMORY USAGE",
        node.conn.pipeline(pipe, n),
    )
    .await?;
    if replies.len() != n {
        return Err(CliError::failure(format!(
            "Redis at {} answered {} replies to a pipeline of {n} commands",
            node.addr,
            replies.len()
        )));
    }
    let mut replies = replies.into_iter();
    for ((_, ns), sample) in records.into_iter().zip(sampled) {
        let value = replies.next().unwrap_or(Value::Nil);
        let pttl = replies.next().unwrap_or(Value::Nil);
        let memory = if sample { replies.next() } else { None };
        let raw = match value {
            // Expired or deleted since SCAN saw it: not live any more.
            Value::Nil => continue,
            Value::BulkString(b) => b,
            // WRONGTYPE and the like: not a runonce record.
            _ => {
                tally.other_keys += 1;
                continue;
            }
        };
        let pttl = match pttl {
            Value::Int(-2) => continue, // expired in between
            Value::Int(ms) => ms,
            _ => -1,
        };
        // (Only the state is tallied: the creation time, which needs the
        // server's clock, is not reported here.)
        let Some(record) = parse_record_value(&raw, pttl.max(0) as u64, 0) else {
            tally.other_keys += 1;
            continue;
        };
        tally.by_namespace.entry(ns).or_default()[state_index(record.state)] += 1;
        tally.add_ttl(pttl);
        match memory {
            Some(Value::Int(bytes)) => {
                tally.mem_sampled += 1;
                tally.mem_bytes += bytes.max(0) as u64;
            }
            Some(Value::ServerError(e)) if tally.mem_error.is_none() => {
                tally.mem_error = Some(format!("MEMORY USAGE was refused: {e:?}"));
            }
            _ => {}
        }
    }
    Ok(())
}

/// `(next cursor, keys)` of a `SCAN` reply.
fn parse_scan(reply: &Value) -> Option<(u64, Vec<Vec<u8>>)> {
    let Value::Array(parts) = reply else {
        return None;
    };
    let [cursor, Value::Array(keys)] = parts.as_slice() else {
        return None;
    };
    let cursor = text(cursor)?.parse().ok()?;
    let keys = keys
        .iter()
        .map(|k| match k {
            Value::BulkString(b) => Some(b.clone()),
            other => text(other).map(String::into_bytes),
        })
        .collect::<Option<Vec<_>>>()?;
    Some((cursor, keys))
}

/// `runonce stats --json`: the document. Field order is the contract's.
#[derive(Debug, Serialize)]
pub(crate) struct StatsOut {
    prefix: String,
    environment: Option<String>,
    task: Option<String>,
    group: Option<String>,
    pattern: String,
    keys_matched: u64,
    records: u64,
    other_keys: u64,
    by_environment: Vec<EnvOut>,
    by_namespace: Vec<NamespaceOut>,
    by_state: StatesOut,
    ttl: Vec<BucketOut>,
    memory: Option<MemoryOut>,
    servers: Vec<ServerOut>,
}

#[derive(Debug, Serialize)]
struct EnvOut {
    environment: String,
    records: u64,
}

#[derive(Debug, Serialize)]
struct NamespaceOut {
    environment: String,
    kind: &'static str,
    name: String,
    records: u64,
    running: u64,
    succeeded: u64,
    canceled: u64,
    failed: u64,
}

#[derive(Debug, Default, Serialize)]
struct StatesOut {
    running: u64,
    succeeded: u64,
    canceled: u64,
    failed: u64,
}

impl StatesOut {
    fn from_counts(c: &[u64; 4]) -> Self {
        StatesOut {
            running: c[0],
            succeeded: c[1],
            canceled: c[2],
            failed: c[3],
        }
    }
}

#[derive(Debug, Serialize)]
struct BucketOut {
    bucket: &'static str,
    records: u64,
}

#[derive(Debug, Serialize)]
struct MemoryOut {
    sampled_records: u64,
    sampled_bytes: u64,
    bytes_per_record: f64,
    estimated_bytes: u64,
    extrapolated: bool,
}

#[derive(Debug, Serialize)]
struct ServerOut {
    addr: String,
    keys: u64,
    maxmemory_policy: Option<String>,
    maxmemory: Option<String>,
    eviction: Verdict,
    appendonly: Option<String>,
    appendfsync: Option<String>,
    save: Option<String>,
    persistence: Verdict,
}

impl StatsOut {
    fn build(filter: &Filter, tally: &Tally, servers: Vec<ServerOut>) -> StatsOut {
        let mut by_env: BTreeMap<&str, u64> = BTreeMap::new();
        let mut states = [0u64; 4];
        let mut by_namespace = Vec::new();
        for ((env, kind, name), counts) in &tally.by_namespace {
            let total: u64 = counts.iter().sum();
            *by_env.entry(env).or_default() += total;
            for (s, c) in states.iter_mut().zip(counts) {
                *s += c;
            }
            by_namespace.push(NamespaceOut {
                environment: env.clone(),
                kind,
                name: name.clone(),
                records: total,
                running: counts[0],
                succeeded: counts[1],
                canceled: counts[2],
                failed: counts[3],
            });
        }
        let records = tally.records();
        let memory = match (&tally.mem_error, tally.mem_sampled) {
            (None, sampled) if sampled > 0 => {
                let per = tally.mem_bytes as f64 / sampled as f64;
                Some(MemoryOut {
                    sampled_records: sampled,
                    sampled_bytes: tally.mem_bytes,
                    bytes_per_record: (per * 10.0).round() / 10.0,
                    estimated_bytes: if sampled >= records {
                        tally.mem_bytes
                    } else {
                        (per * records as f64).round() as u64
                    },
                    extrapolated: sampled < records,
                })
            }
            _ => None,
        };
        let (task, group) = match &filter.namespace {
            Some(Namespace::Task(t)) => (Some(t.clone()), None),
            Some(Namespace::Group(g)) => (None, Some(g.clone())),
            _ => (None, None),
        };
        StatsOut {
            prefix: filter.prefix.clone(),
            environment: filter.environment.clone(),
            task,
            group,
            pattern: filter.pattern(),
            keys_matched: tally.keys_matched,
            records,
            other_keys: tally.other_keys,
            by_environment: by_env
                .into_iter()
                .map(|(e, n)| EnvOut {
                    environment: e.to_owned(),
                    records: n,
                })
                .collect(),
            by_namespace,
            by_state: StatesOut::from_counts(&states),
            ttl: TTL_BUCKETS
                .iter()
                .map(|(_, label)| *label)
                .chain([NO_TTL])
                .zip(tally.ttl)
                .map(|(bucket, records)| BucketOut { bucket, records })
                .collect(),
            memory,
            servers,
        }
    }

    /// The human report.
    fn human(&self, tally: &Tally, target: &Target) -> String {
        let mut out = String::new();
        let scope = match (&self.environment, &self.task, &self.group) {
            (None, None, None) => "every environment".to_owned(),
            (e, t, g) => {
                let mut parts = Vec::new();
                if let Some(e) = e {
                    parts.push(format!("environment {}", shown(e)));
                }
                if let Some(t) = t {
                    parts.push(format!("task {}", shown(t)));
                }
                if let Some(g) = g {
                    parts.push(format!("group {}", shown(g)));
                }
                parts.join(", ")
            }
        };
        out.push_str(&format!(
            "runonce stats: prefix {}, {scope}, {}\n",
            shown(&self.prefix),
            target.describe()
        ));
        out.push_str(&format!(
            "scanned {} node{} with SCAN MATCH {} COUNT {SCAN_COUNT}: {} keys matched, {} records, {} not runonce records\n",
            self.servers.len(),
            if self.servers.len() == 1 { "" } else { "s" },
            self.pattern,
            self.keys_matched,
            self.records,
            self.other_keys,
        ));

        out.push_str("\nrecords by environment and task/group\n");
        let mut rows: Vec<Vec<String>> = vec![[
            "environment",
            "kind",
            "name",
            "records",
            "running",
            "succeeded",
            "canceled",
            "failed",
        ]
        .map(String::from)
        .to_vec()];
        for n in &self.by_namespace {
            rows.push(vec![
                shown(&n.environment),
                n.kind.to_owned(),
                shown(&n.name),
                n.records.to_string(),
                n.running.to_string(),
                n.succeeded.to_string(),
                n.canceled.to_string(),
                n.failed.to_string(),
            ]);
        }
        let s = &self.by_state;
        rows.push(vec![
            "total".into(),
            String::new(),
            String::new(),
            self.records.to_string(),
            s.running.to_string(),
            s.succeeded.to_string(),
            s.canceled.to_string(),
            s.failed.to_string(),
        ]);
        out.push_str(&table(&rows, 3));

        out.push_str("\nrecords by environment\n");
        let mut rows: Vec<Vec<String>> = vec![vec!["environment".into(), "records".into()]];
        for e in &self.by_environment {
            rows.push(vec![shown(&e.environment), e.records.to_string()]);
        }
        out.push_str(&table(&rows, 1));

        out.push_str("\nrecords by state\n");
        let mut rows: Vec<Vec<String>> = vec![vec!["state".into(), "records".into()]];
        for (name, n) in [
            ("running", s.running),
            ("succeeded", s.succeeded),
            ("canceled", s.canceled),
            ("failed", s.failed),
        ] {
            rows.push(vec![name.into(), n.to_string()]);
        }
        out.push_str(&table(&rows, 1));

        out.push_str("\ntime left (PTTL)\n");
        let mut rows: Vec<Vec<String>> = vec![vec!["ttl".into(), "records".into()]];
        for b in &self.ttl {
            rows.push(vec![b.bucket.into(), b.records.to_string()]);
        }
        out.push_str(&table(&rows, 1));

        out.push_str("\nmemory (MEMORY USAGE)\n");
        match (&self.memory, &tally.mem_error) {
            (Some(m), _) if m.extrapolated => out.push_str(&format!(
                "~{} for {} records: sampled {} records ({}, {} per record) and extrapolated\n",
                bytes(m.estimated_bytes),
                self.records,
                m.sampled_records,
                bytes(m.sampled_bytes),
                bytes(m.bytes_per_record.round() as u64),
            )),
            (Some(m), _) => out.push_str(&format!(
                "{} for {} records ({} per record), every record measured\n",
                bytes(m.estimated_bytes),
                self.records,
                bytes(m.bytes_per_record.round() as u64),
            )),
            (None, Some(e)) => out.push_str(&format!("unknown: {e}\n")),
            (None, None) => out.push_str("no records\n"),
        }

        for srv in &self.servers {
            out.push_str(&format!("\nserver {} ({} keys)\n", srv.addr, srv.keys));
            let unknown = || "unknown".to_owned();
            let policy = srv.maxmemory_policy.clone().unwrap_or_else(unknown);
            let show = |v: &Option<String>| v.clone().unwrap_or_else(unknown);
            let persistence = match srv.appendonly.as_deref() {
                Some("yes") => format!("appendonly yes, appendfsync {}", show(&srv.appendfsync)),
                Some(other) => format!(
                    "appendonly {other}, save {}",
                    srv.save
                        .as_ref()
                        .map(|s| format!("{s:?}"))
                        .unwrap_or_else(unknown)
                ),
                None => unknown(),
            };
            let rows = vec![
                vec!["maxmemory-policy".into(), policy, srv.eviction.note.clone()],
                vec![
                    "persistence".into(),
                    persistence,
                    srv.persistence.note.clone(),
                ],
            ];
            out.push_str(&table(&rows, usize::MAX));
        }
        out.pop(); // the document's last newline: `Doc::print` adds one
        out
    }
}

/// A name for the human report: as is, or quoted when it holds spaces or
/// control characters (so columns stay parseable).
fn shown(s: &str) -> String {
    if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        format!("{s:?}")
    } else {
        s.to_owned()
    }
}

/// Bytes for humans: `512 B`, `4.2 KiB`, `1.5 MiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Aligned columns, two spaces apart: columns from `first_number` on are
/// right-aligned, except the last column of a row, which is never padded.
fn table(rows: &[Vec<String>], first_number: usize) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; cols];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = widths[i] - cell.chars().count();
            let last = i + 1 == row.len();
            if i >= first_number {
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                if !last {
                    line.push_str(&" ".repeat(pad));
                }
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn progress_bar(total: u64) -> ProgressBar {
    if total < LARGE_KEYSPACE || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} ~{pos}/{len} keys scanned, {msg}",
        )
        .expect("a valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// `runonce stats`.
pub(crate) async fn stats(g: &Global, a: &StatsArgs) -> Result<Doc, CliError> {
    let namespace = match (&a.task, &a.group) {
        (Some(t), _) => Some(Namespace::task(t.clone())),
        (None, Some(gr)) => Some(Namespace::group(gr.clone())),
        (None, None) => None,
    };
    let filter = Filter {
        prefix: g.prefix.clone(),
        environment: g.env_given.then(|| g.env.clone()),
        namespace,
    };
    // Check the names with the library's own rules before connecting.
    let rehearsal = runonce::Dedupe::builder()
        .store(std::sync::Arc::new(
            runonce::store::memory::MemoryStore::new(),
        ))
        .environment(g.env.clone())
        .prefix(g.prefix.clone())
        .build()
        .await
        .map_err(|e| CliError::from_lib(e, ""))?;
    let mut probe = runonce::TriggerOptions::new();
    if let Some(gr) = &a.group {
        probe = probe.group(gr.clone());
    }
    rehearsal
        .validate(a.task.as_deref().unwrap_or("stats"), &probe)
        .map_err(|e| CliError::from_lib(e, ""))?;

    let target = g.target();
    let mut nodes = connect(&target, g.timeout).await?;
    let mut settings = Vec::with_capacity(nodes.len());
    for node in &mut nodes {
        settings.push(read_settings(node, &target, g.timeout).await?);
    }
    let total_keys: u64 = settings.iter().map(|s| s.keys).sum();
    let bar = progress_bar(total_keys);
    let mut tally = Tally::default();
    let mut done_before: u64 = 0;
    for (node, s) in nodes.iter_mut().zip(&settings) {
        let node_keys = s.keys;
        let mut progress = |visited: u64, t: &Tally| {
            bar.set_position((done_before + visited.min(node_keys)).min(total_keys));
            bar.set_message(format!("{} records", t.records()));
        };
        let r = scan_node(
            node,
            &target,
            g.timeout,
            &filter,
            &mut tally,
            &mut progress,
            node_keys,
        )
        .await;
        if let Err(e) = r {
            bar.finish_and_clear();
            return Err(e);
        }
        done_before += node_keys;
    }
    bar.finish_and_clear();

    let servers = nodes
        .iter()
        .zip(settings)
        .map(|(n, s)| ServerOut {
            addr: n.addr.clone(),
            keys: s.keys,
            eviction: eviction_verdict(s.maxmemory_policy.as_deref(), s.maxmemory.as_deref()),
            persistence: persistence_verdict(
                s.appendonly.as_deref(),
                s.appendfsync.as_deref(),
                s.save.as_deref(),
            ),
            maxmemory_policy: s.maxmemory_policy,
            maxmemory: s.maxmemory,
            appendonly: s.appendonly,
            appendfsync: s.appendfsync,
            save: s.save,
        })
        .collect();
    let out = StatsOut::build(&filter, &tally, servers);
    Ok(if a.json {
        Doc::new(&out)
    } else {
        Doc::text(out.human(&tally, &target))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eviction_verdicts() {
        assert_eq!(
            eviction_verdict(Some("noeviction"), Some("0")).verdict,
            "ok"
        );
        let v = eviction_verdict(Some("allkeys-lru"), Some("100mb"));
        assert_eq!(v.verdict, "unsafe");
        assert!(v
            .note
            .starts_with("unsafe: can evict records and allow duplicates"));
        assert!(eviction_verdict(Some("volatile-ttl"), Some("0"))
            .note
            .contains("maxmemory is 0"));
        assert_eq!(eviction_verdict(None, None).verdict, "unknown");
    }

    #[test]
    fn persistence_verdicts() {
        let v = |a, f, s| persistence_verdict(a, f, s).verdict;
        assert_eq!(v(Some("yes"), Some("always"), Some("")), "durable");
        assert_eq!(v(Some("yes"), Some("everysec"), None), "aof_everysec");
        assert!(persistence_verdict(Some("yes"), Some("everysec"), None)
            .note
            .contains("may lose ~1s of claims on crash"));
        assert_eq!(v(Some("yes"), Some("no"), None), "aof_no_fsync");
        assert_eq!(v(Some("no"), Some("everysec"), Some("3600 1")), "snapshots");
        assert_eq!(v(Some("no"), None, Some("")), "none");
        assert!(persistence_verdict(Some("no"), None, Some(""))
            .note
            .contains("claims lost on restart unless replicated"));
        assert_eq!(v(None, None, None), "unknown");
    }

    #[test]
    fn ttl_buckets() {
        let mut t = Tally::default();
        for ms in [
            0,
            59_999,
            60_000,
            3_599_999,
            86_400_000,
            30 * 86_400_000,
            -1,
        ] {
            t.add_ttl(ms);
        }
        assert_eq!(t.ttl, [2, 2, 0, 1, 0, 1, 1]);
    }

    #[test]
    fn cluster_slots_primaries() {
        let node = |h: &str, p: i64| {
            Value::Array(vec![
                Value::BulkString(h.as_bytes().to_vec()),
                Value::Int(p),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(100),
                node("127.0.0.1", 7001),
                node("127.0.0.1", 7004),
            ]),
            Value::Array(vec![
                Value::Int(101),
                Value::Int(200),
                node("127.0.0.1", 7000),
            ]),
            Value::Array(vec![
                Value::Int(201),
                Value::Int(300),
                node("127.0.0.1", 7001),
            ]),
        ]);
        assert_eq!(
            cluster_primaries(&reply),
            vec![("127.0.0.1".into(), 7000), ("127.0.0.1".into(), 7001)]
        );
    }

    #[test]
    fn tables_align() {
        let rows = vec![
            vec!["name".to_owned(), "n".to_owned()],
            vec!["a".to_owned(), "100".to_owned()],
        ];
        assert_eq!(table(&rows, 1), "name    n\na     100\n");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(4300), "4.2 KiB");
        assert_eq!(shown("a b"), "\"a b\"");
    }
}
