//! The Redis store: Lua scripts invoked by SHA, on one Redis, a Redis
//! Cluster or a Sentinel-managed primary.
//!
//! One round trip per call: deadpool-redis pings a connection on every
//! checkout, which would double the cost of a trigger, so the store takes
//! one multiplexed connection out of the pool for good and pipelines every
//! call over it. A connection-level failure drops it, and the next call
//! takes a fresh one, so clients reconnect by themselves (after a Sentinel
//! failover the fresh one goes to the new primary).
//!
//! On a cluster one script call cannot span slots, so a batch sends one
//! script call per slot, all at once: each node receives its share as one
//! pipelined burst and the batch costs one round trip per node touched.
//! redis-rs follows `MOVED`/`ASK` redirects; `NOSCRIPT` from any node loads
//! the script on every node and retries.
//!
//! Durability (`WAIT`) runs on a connection leased exclusively for the call,
//! since `WAIT` blocks its connection and counts the acknowledgements of
//! that connection's own writes.

use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use deadpool_redis::PoolError;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, Script, ServerErrorKind, Value};

use super::{coalesce, parse_record, record_tail, BoxFuture, Claim, ClaimReply, Store};
use crate::error::Error;
use crate::options::{Record, RecordState};

static CLAIM: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../../../lua/claim.lua")));
static FINISH: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../../../lua/finish.lua")));
static LOOKUP: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../../../lua/lookup.lua")));

/// Where connections come from.
pub(crate) enum Source {
    /// One Redis server, through a deadpool-redis pool.
    Single(deadpool_redis::Pool),
    /// The primary that Sentinel names.
    Sentinel(deadpool_redis::sentinel::Pool),
    /// A Redis Cluster; `spare` holds idle exclusive connections for
    /// durable claims.
    Cluster {
        client: Box<ClusterClient>,
        spare: Mutex<Vec<ClusterConnection>>,
    },
}

/// A connection of either kind, usable as one.
#[derive(Clone)]
enum Conn {
    Plain(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Plain(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Plain(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Plain(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// An exclusively leased connection; returned to its pool on drop.
enum Lease {
    Single(deadpool_redis::Connection),
    Sentinel(deadpool_redis::sentinel::Connection),
    Cluster(ClusterConnection),
}

impl Lease {
    fn conn(&self) -> Conn {
        match self {
            Lease::Single(c) => Conn::Plain((**c).clone()),
            Lease::Sentinel(c) => Conn::Plain((**c).clone()),
            Lease::Cluster(c) => Conn::Cluster(c.clone()),
        }
    }
}

/// Durability asked of every claim: `WAIT` for this many replica
/// acknowledgements, at most this long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Wait {
    pub(crate) replicas: u32,
    pub(crate) timeout: Duration,
}

/// The connection side of the store, shared with the coalescing task.
struct Core {
    source: Source,
    hot: Mutex<Option<Conn>>,
    addr: String,
    timeout: Duration,
    wait: Option<Wait>,
}

/// A [`Store`] on one Redis server, a Redis Cluster or a Sentinel-managed
/// primary.
///
/// On one server (or Sentinel) without durability, concurrent single-key
/// claims are coalesced: while script calls are in flight, the claims that
/// arrive queue up and go together in the next call. A lone caller is sent
/// at once, so latency at low concurrency does not suffer, and under load
/// many claims share one round trip and one script call.
pub struct RedisStore {
    core: Arc<Core>,
    coalescer: Option<coalesce::Coalescer>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("addr", &self.core.addr)
            .field("timeout", &self.core.timeout)
            .field("wait", &self.core.wait)
            .field("coalescing", &self.coalescer.is_some())
            .finish_non_exhaustive()
    }
}

/// The cluster slot of a key (CRC16/XMODEM of its hash tag, mod 16384).
///
/// ```
/// use runonce::store::redis::slot;
/// assert_eq!(slot("user:{42}:a"), slot("{42}"));
/// assert_eq!(slot("foo"), 12182);
/// ```
pub fn slot(key: &str) -> u16 {
    let b = key.as_bytes();
    let tagged = b.iter().position(|&c| c == b'{').and_then(|open| {
        let close = b[open + 1..].iter().position(|&c| c == b'}')?;
        (close > 0).then(|| &b[open + 1..open + 1 + close])
    });
    crc16::State::<crc16::XMODEM>::calculate(tagged.unwrap_or(b)) % 16384
}

impl RedisStore {
    /// A store over one Redis server's pool. `addr` names the server in
    /// error messages; `timeout` bounds every call, connecting included.
    /// Must be called inside a tokio runtime (it spawns the coalescing
    /// task).
    pub fn new(pool: deadpool_redis::Pool, addr: impl Into<String>, timeout: Duration) -> Self {
        Self::from_source(Source::Single(pool), addr.into(), timeout, None)
    }

    pub(crate) fn from_source(
        source: Source,
        addr: String,
        timeout: Duration,
        wait: Option<Wait>,
    ) -> Self {
        let core = Arc::new(Core {
            source,
            hot: Mutex::new(None),
            addr,
            timeout,
            wait,
        });
        let coalescer = (!core.is_cluster() && core.wait.is_none()).then(|| {
            let worker = core.clone();
            coalesce::Coalescer::spawn(move |claims: Vec<Claim>| {
                let worker = worker.clone();
                async move {
                    let all: Vec<&Claim> = claims.iter().collect();
                    worker.claim_group(&all).await
                }
            })
        });
        RedisStore { core, coalescer }
    }

    /// Reads `maxmemory-policy` (of every primary, on a cluster: the first
    /// unsafe one wins). `Ok(None)` when the server refuses `CONFIG GET`
    /// (managed services often do); connection failures are errors.
    pub async fn eviction_policy(&self) -> Result<Option<String>, Error> {
        self.core.eviction_policy().await
    }
}

impl Core {
    fn is_cluster(&self) -> bool {
        matches!(self.source, Source::Cluster { .. })
    }

    async fn conn(&self) -> Result<Conn, Error> {
        if let Some(c) = self.hot.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            return Ok(c.clone());
        }
        let conn = match &self.source {
            Source::Single(p) => Conn::Plain(deadpool_redis::Connection::take(
                p.timeout_get(&self.checkout_timeouts())
                    .await
                    .map_err(|e| self.pool_error(e))?,
            )),
            Source::Sentinel(p) => Conn::Plain(deadpool_redis::sentinel::Connection::take(
                p.timeout_get(&self.checkout_timeouts())
                    .await
                    .map_err(|e| self.pool_error(e))?,
            )),
            Source::Cluster { client, .. } => Conn::Cluster(
                client
                    .get_async_connection()
                    .await
                    .map_err(|e| self.redis_error(e))?,
            ),
        };
        *self.hot.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn.clone());
        Ok(conn)
    }

    async fn lease(&self) -> Result<Lease, Error> {
        Ok(match &self.source {
            Source::Single(p) => Lease::Single(
                p.timeout_get(&self.checkout_timeouts())
                    .await
                    .map_err(|e| self.pool_error(e))?,
            ),
            Source::Sentinel(p) => Lease::Sentinel(
                p.timeout_get(&self.checkout_timeouts())
                    .await
                    .map_err(|e| self.pool_error(e))?,
            ),
            Source::Cluster { client, spare } => {
                let idle = spare.lock().unwrap_or_else(|p| p.into_inner()).pop();
                match idle {
                    Some(c) => Lease::Cluster(c),
                    None => Lease::Cluster(
                        client
                            .get_async_connection()
                            .await
                            .map_err(|e| self.redis_error(e))?,
                    ),
                }
            }
        })
    }

    fn give_back(&self, lease: Lease) {
        if let (Lease::Cluster(c), Source::Cluster { spare, .. }) = (lease, &self.source) {
            spare.lock().unwrap_or_else(|p| p.into_inner()).push(c);
        }
    }

    /// Checkout bounds, whatever the pool was configured with: waiting
    /// for a free connection gets half the call's timeout, so a full pool
    /// surfaces as [`Error::PoolExhausted`] rather than a generic timeout.
    fn checkout_timeouts(&self) -> deadpool_redis::Timeouts {
        let half = Some(self.timeout / 2);
        deadpool_redis::Timeouts {
            wait: half,
            create: half,
            recycle: half,
        }
    }

    fn invalidate(&self) {
        *self.hot.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn pool_error(&self, e: PoolError) -> Error {
        match e {
            PoolError::Timeout(deadpool_redis::TimeoutType::Wait) => Error::PoolExhausted {
                addr: self.addr.clone(),
                after: self.timeout / 2,
            },
            PoolError::Timeout(_) => Error::Timeout {
                addr: self.addr.clone(),
                after: self.timeout / 2,
            },
            PoolError::Backend(e) => self.redis_error(e),
            other => Error::Backend {
                addr: self.addr.clone(),
                message: other.to_string(),
            },
        }
    }

    fn redis_error(&self, e: RedisError) -> Error {
        let stale_primary = matches!(
            e.kind(),
            ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown)
        );
        if e.is_io_error()
            || e.is_connection_dropped()
            || e.is_unrecoverable_error()
            || stale_primary
        {
            self.invalidate();
        }
        if e.is_timeout() {
            return Error::Timeout {
                addr: self.addr.clone(),
                after: self.timeout,
            };
        }
        let addr = self.addr.clone();
        let message = e.to_string();
        match (e.kind(), e.code()) {
            (ErrorKind::AuthenticationFailed, _) | (_, Some("WRONGPASS" | "NOAUTH")) => {
                return Error::AuthFailed { addr, message }
            }
            (ErrorKind::Server(ServerErrorKind::NoPerm), _) | (_, Some("NOPERM")) => {
                return Error::NoPermission { addr, message }
            }
            // A command refused inside a script comes back as a plain ERR.
            _ if message.contains("can't run this command")
                || message.contains("No permissions to access") =>
            {
                return Error::NoPermission { addr, message }
            }
            (_, Some("OOM")) => return Error::OutOfMemory { addr, message },
            _ => {}
        }
        Error::Backend {
            addr: self.addr.clone(),
            message: e.to_string(),
        }
    }

    /// Runs `f` under the store's timeout; a timeout also drops the hot
    /// connection, since a hung connection would fail every later call.
    async fn bounded<T>(
        &self,
        timeout: Duration,
        f: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        match tokio::time::timeout(timeout, f).await {
            Ok(r) => r,
            Err(_) => {
                self.invalidate();
                Err(Error::Timeout {
                    addr: self.addr.clone(),
                    after: timeout,
                })
            }
        }
    }

    /// `EVALSHA` on `conn`, loading the script and retrying once on
    /// `NOSCRIPT` (on a cluster, `SCRIPT LOAD` goes to every node).
    async fn eval_on(&self, conn: &mut Conn, script: &Script, cmd: &Cmd) -> Result<Value, Error> {
        let r = match cmd.query_async::<Value>(conn).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                tracing::debug!(addr = %self.addr, sha = script.get_hash(), "NOSCRIPT: loading the script");
                metrics::counter!(crate::telemetry::SCRIPT_RELOADS).increment(1);
                script
                    .load_async(conn)
                    .await
                    .map_err(|e| self.redis_error(e))?;
                cmd.query_async::<Value>(conn).await
            }
            r => r,
        };
        r.map_err(|e| self.redis_error(e))
    }

    async fn eval(&self, script: &Script, cmd: Cmd) -> Result<Value, Error> {
        self.bounded(self.timeout, async {
            let mut conn = self.conn().await?;
            self.eval_on(&mut conn, script, &cmd).await
        })
        .await
    }

    /// Sends any command on the hot connection, under the timeout.
    pub(crate) async fn query<T: redis::FromRedisValue>(&self, cmd: Cmd) -> Result<T, Error> {
        self.bounded(self.timeout, async {
            let mut conn = self.conn().await?;
            cmd.query_async::<T>(&mut conn)
                .await
                .map_err(|e| self.redis_error(e))
        })
        .await
    }

    async fn eviction_policy(&self) -> Result<Option<String>, Error> {
        let mut cmd = redis::cmd("CONFIG");
        cmd.arg("GET").arg("maxmemory-policy");
        let reply = self
            .bounded(self.timeout, async {
                // Connection errors (unreachable, bad password) propagate;
                // only a refused CONFIG GET means "cannot tell".
                let mut conn = self.conn().await?;
                let r = match &mut conn {
                    Conn::Plain(c) => cmd.query_async::<Value>(c).await,
                    Conn::Cluster(c) => {
                        c.route_command(
                            cmd.clone(),
                            RoutingInfo::MultiNode((
                                redis::cluster_routing::MultipleNodeRoutingInfo::AllMasters,
                                None,
                            )),
                        )
                        .await
                    }
                };
                Ok(match r {
                    Ok(v) => Some(v),
                    // A server-side refusal (ACL, renamed command, managed
                    // service) only means the policy cannot be read.
                    Err(e) if matches!(e.kind(), ErrorKind::Server(_)) => {
                        tracing::debug!(addr = %self.addr, error = %e, "CONFIG GET maxmemory-policy refused");
                        None
                    }
                    Err(e) => return Err(self.redis_error(e)),
                })
            })
            .await?;
        Ok(reply.and_then(|v| {
            let all = policies(&v);
            all.iter()
                .find(|p| *p != "noeviction")
                .or(all.first())
                .cloned()
        }))
    }

    fn bad_reply(&self, what: &str, v: &Value) -> Error {
        Error::Backend {
            addr: self.addr.clone(),
            message: format!(
                "unexpected reply to {what}: {v:?} (is another program writing under this prefix?)"
            ),
        }
    }

    fn record(&self, raw: &Value, pttl: &Value) -> Result<Record, Error> {
        let bytes = match raw {
            Value::BulkString(b) => b.as_slice(),
            other => return Err(self.bad_reply("claim", other)),
        };
        let ttl = match pttl {
            Value::Int(n) => (*n).max(0) as u64,
            other => return Err(self.bad_reply("claim", other)),
        };
        parse_record(bytes, ttl).ok_or_else(|| Error::Backend {
            addr: self.addr.clone(),
            message: format!(
                "the key holds a value runonce did not write ({:?}); is another program writing under this prefix?",
                String::from_utf8_lossy(&bytes[..bytes.len().min(80)])
            ),
        })
    }

    fn claim_cmd(claims: &[&Claim]) -> Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(CLAIM.get_hash()).arg(claims.len());
        for c in claims {
            cmd.arg(&c.key);
        }
        for c in claims {
            cmd.arg(record_tail(c)).arg(c.ttl_ms);
        }
        cmd
    }

    fn parse_claims(
        &self,
        n: usize,
        reply: &Value,
        replicas: Option<u32>,
    ) -> Result<Vec<ClaimReply>, Error> {
        let Value::Array(items) = reply else {
            return Err(self.bad_reply("claim", reply));
        };
        if items.len() != n {
            return Err(self.bad_reply("claim", reply));
        }
        items
            .iter()
            .map(|item| match item {
                Value::Int(ttl) => Ok(ClaimReply::Created {
                    expires_in_ms: (*ttl).max(0) as u64,
                    replicas,
                }),
                Value::Array(pair) if pair.len() == 2 => {
                    Ok(ClaimReply::Existing(self.record(&pair[0], &pair[1])?))
                }
                other => Err(self.bad_reply("claim", other)),
            })
            .collect()
    }

    /// Claims one group of keys that share a slot (all keys, off a
    /// cluster) in one script call, with `WAIT` after it when durability is
    /// on.
    async fn claim_group(&self, group: &[&Claim]) -> Result<Vec<ClaimReply>, Error> {
        let cmd = Self::claim_cmd(group);
        let Some(wait) = self.wait else {
            let reply = self.eval(&CLAIM, cmd).await?;
            return self.parse_claims(group.len(), &reply, None);
        };
        let lease = self.bounded(self.timeout, self.lease()).await?;
        let mut conn = lease.conn();
        let budget = self.timeout + wait.timeout;
        let result = self
            .bounded(budget, async {
                let reply = self.eval_on(&mut conn, &CLAIM, &cmd).await?;
                let mut w = redis::cmd("WAIT");
                w.arg(wait.replicas).arg(wait.timeout.as_millis() as u64);
                let reached = match &mut conn {
                    Conn::Plain(c) => w.query_async::<i64>(c).await,
                    Conn::Cluster(c) => {
                        let route = Route::new(slot(&group[0].key), SlotAddr::Master);
                        match c
                            .route_command(
                                w,
                                RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                            )
                            .await
                        {
                            Ok(Value::Int(n)) => Ok(n),
                            Ok(other) => return Err(self.bad_reply("WAIT", &other)),
                            Err(e) => Err(e),
                        }
                    }
                }
                .map_err(|e| self.redis_error(e))?;
                self.parse_claims(group.len(), &reply, Some(reached.max(0) as u32))
            })
            .await;
        if result.is_ok() {
            self.give_back(lease);
        }
        result
    }
}

fn policies(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => {
            // CONFIG GET answers [name, value]; a fan-out answers a list of those.
            if let [Value::BulkString(name), Value::BulkString(value)] = items.as_slice() {
                if name.as_slice() == b"maxmemory-policy" {
                    return vec![String::from_utf8_lossy(value).into_owned()];
                }
            }
            items.iter().flat_map(policies).collect()
        }
        Value::Map(pairs) => pairs
            .iter()
            .flat_map(|(k, v)| match (k, v) {
                (Value::BulkString(name), Value::BulkString(value))
                    if name.as_slice() == b"maxmemory-policy" =>
                {
                    vec![String::from_utf8_lossy(value).into_owned()]
                }
                (_, v) => policies(v),
            })
            .collect(),
        _ => Vec::new(),
    }
}

impl Store for RedisStore {
    fn claim<'a>(&'a self, claims: &'a [Claim]) -> BoxFuture<'a, Result<Vec<ClaimReply>, Error>> {
        Box::pin(async move {
            if let (Some(co), [one]) = (&self.coalescer, claims) {
                // Bounded here too: a stuck queue must not hang the caller.
                let timeout = self.core.timeout * 2;
                return match tokio::time::timeout(timeout, co.claim(one.clone())).await {
                    Ok(Some(r)) => r.map(|r| vec![r]),
                    // The coalescing task is gone (its runtime shut down):
                    // claim directly.
                    Ok(None) => self.core.claim(claims).await,
                    Err(_) => Err(Error::Timeout {
                        addr: self.core.addr.clone(),
                        after: timeout,
                    }),
                };
            }
            self.core.claim(claims).await
        })
    }

    fn finish<'a>(
        &'a self,
        key: &'a str,
        run_id: &'a str,
        to: Option<RecordState>,
    ) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(self.core.finish(key, run_id, to))
    }

    fn reset<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(self.core.reset(key))
    }

    fn lookup<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Record>, Error>> {
        Box::pin(self.core.lookup(key))
    }

    fn addr(&self) -> &str {
        &self.core.addr
    }
}

impl Core {
    async fn claim(&self, claims: &[Claim]) -> Result<Vec<ClaimReply>, Error> {
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        if !self.is_cluster() {
            let all: Vec<&Claim> = claims.iter().collect();
            return self.claim_group(&all).await;
        }
        // Group by slot, keeping each item's position; every group's script
        // call is in flight at once.
        let mut by_slot: std::collections::BTreeMap<u16, Vec<usize>> = Default::default();
        for (i, c) in claims.iter().enumerate() {
            by_slot.entry(slot(&c.key)).or_default().push(i);
        }
        let groups: Vec<Vec<usize>> = by_slot.into_values().collect();
        let futures = groups.iter().map(|idx| async move {
            let group: Vec<&Claim> = idx.iter().map(|&i| &claims[i]).collect();
            self.claim_group(&group).await
        });
        let replies = futures_util::future::try_join_all(futures).await?;
        let mut out: Vec<Option<ClaimReply>> = vec![None; claims.len()];
        for (idx, rep) in groups.iter().zip(replies) {
            for (&i, r) in idx.iter().zip(rep) {
                out[i] = Some(r);
            }
        }
        Ok(out
            .into_iter()
            .map(|r| r.expect("every item answered"))
            .collect())
    }

    async fn finish(
        &self,
        key: &str,
        run_id: &str,
        to: Option<RecordState>,
    ) -> Result<bool, Error> {
        let mut cmd = redis::cmd("EVALSHA");
        let code = to
            .map(|s| (s.code() as char).to_string())
            .unwrap_or_default();
        cmd.arg(FINISH.get_hash())
            .arg(1)
            .arg(key)
            .arg(run_id)
            .arg(code);
        match self.eval(&FINISH, cmd).await? {
            Value::Int(n) => Ok(n == 1),
            other => Err(self.bad_reply("finish", &other)),
        }
    }

    async fn reset(&self, key: &str) -> Result<bool, Error> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(key);
        Ok(self.query::<i64>(cmd).await? > 0)
    }

    async fn lookup(&self, key: &str) -> Result<Option<Record>, Error> {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(LOOKUP.get_hash()).arg(1).arg(key);
        match self.eval(&LOOKUP, cmd).await? {
            Value::Nil => Ok(None),
            Value::Array(pair) if pair.len() == 2 => Ok(Some(self.record(&pair[0], &pair[1])?)),
            other => Err(self.bad_reply("lookup", &other)),
        }
    }
}
