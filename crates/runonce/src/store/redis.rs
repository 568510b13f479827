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
//! that connection's own writes; it is pipelined right behind the claim, so
//! both run on the same node even when a redirect or a dead node makes
//! redis-rs re-route a request.
//!
//! Failover: `READONLY`, `MASTERDOWN` and `NOREPLICAS` replies (and, behind
//! Sentinel, a durability shortfall) drop every connection, so the next call
//! finds the primary afresh. On a cluster a claim makes several attempts
//! within its timeout, each on a fresh connection after the one before
//! timed out, because a redis-rs cluster connection can stop answering for
//! good while slots migrate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use deadpool_redis::PoolError;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::RoutingInfo;
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, Script, ServerErrorKind, Value};

use super::{coalesce, parse_record, write_record_value, BoxFuture, Claim, ClaimReply, Store};
use crate::error::Error;
use crate::options::{Record, RecordState};

/// On a cluster, a claim makes up to this many attempts within its timeout
/// (each on a fresh connection after the one before timed out).
const CLUSTER_ATTEMPTS: u32 = 8;
/// Script calls in flight at once that one cluster attempt's time window is
/// sized for; more calls lengthen it proportionally (see `claim_group`).
const GROUPS_PER_ATTEMPT_WINDOW: usize = 64;

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
    /// The shared connection, tagged with a generation so that a call whose
    /// attempt timed out drops only the connection it used.
    hot: Mutex<Option<(u64, Conn)>>,
    generation: AtomicU64,
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
            generation: AtomicU64::new(0),
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
                    worker.claim_group(&all, 1).await
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
        Ok(self.hot_conn().await?.1)
    }

    /// The hot connection and its generation, connecting if there is none.
    async fn hot_conn(&self) -> Result<(u64, Conn), Error> {
        if let Some((g, c)) = self.hot.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            return Ok((*g, c.clone()));
        }
        // Connecting is rare and its future is large (~10 KB: the pool's
        // and redis-rs's connect futures). Boxed, it stays out of the state
        // of every claim's future, which is moved (copied) on each call.
        Box::pin(self.connect_hot()).await
    }

    /// Opens the hot connection (see [`hot_conn`](Self::hot_conn)).
    async fn connect_hot(&self) -> Result<(u64, Conn), Error> {
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
        let g = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        *self.hot.lock().unwrap_or_else(|p| p.into_inner()) = Some((g, conn.clone()));
        Ok((g, conn))
    }

    /// Drops the hot connection if it is still generation `g`.
    fn invalidate_generation(&self, g: u64) {
        let mut hot = self.hot.lock().unwrap_or_else(|p| p.into_inner());
        if hot.as_ref().is_some_and(|(current, _)| *current == g) {
            *hot = None;
        }
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

    /// The server we talk to may no longer be the primary (a failover): drop
    /// the hot connection and every idle pooled one, so the next call
    /// connects afresh (through Sentinel, to whichever node it names now).
    fn forget_primary(&self) {
        self.invalidate();
        match &self.source {
            Source::Single(p) => {
                p.retain(|_, _| false);
            }
            Source::Sentinel(p) => {
                p.retain(|_, _| false);
            }
            Source::Cluster { spare, .. } => {
                spare.lock().unwrap_or_else(|p| p.into_inner()).clear();
            }
        }
    }

    /// Drops a lease after a failure instead of returning it to its pool,
    /// where a later checkout (PING still answers) would reuse it.
    fn discard(&self, lease: Lease) {
        match lease {
            Lease::Single(c) => drop(deadpool_redis::Connection::take(c)),
            Lease::Sentinel(c) => drop(deadpool_redis::sentinel::Connection::take(c)),
            Lease::Cluster(c) => drop(c),
        }
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
        // READONLY: the node was demoted. MASTERDOWN: a replica lost its
        // primary. NOREPLICAS: the node refuses writes under
        // `min-replicas-to-write`, as a primary cut off by a failover does.
        let stale_primary = matches!(
            e.kind(),
            ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown)
        ) || e.code() == Some("NOREPLICAS");
        if stale_primary {
            self.forget_primary();
        } else if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() {
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
        match e.kind() {
            ErrorKind::AuthenticationFailed => Error::AuthFailed { addr, message },
            ErrorKind::Server(ServerErrorKind::NoPerm) => Error::NoPermission { addr, message },
            _ => refused(addr, e.code(), message),
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

    /// Like [`bounded`](Self::bounded) for work on a leased connection: a
    /// timeout leaves the hot connection alone (the lease is discarded).
    async fn bounded_lease<T>(
        &self,
        timeout: Duration,
        f: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        tokio::time::timeout(timeout, f).await.unwrap_or_else(|_| {
            Err(Error::Timeout {
                addr: self.addr.clone(),
                after: timeout,
            })
        })
    }

    /// The claim `cmd` and `WAIT` for `wait`, pipelined on `conn`, loading
    /// the script and retrying on `NOSCRIPT` (see [`MAX_RELOADS`]). Answers
    /// the script's reply and the replica count reached.
    async fn eval_then_wait(
        &self,
        conn: &mut Conn,
        cmd: &Cmd,
        wait: Wait,
    ) -> Result<(Value, i64), Error> {
        let mut pipe = redis::pipe();
        pipe.add_command(cmd.clone())
            .cmd("WAIT")
            .arg(wait.replicas)
            .arg(wait.timeout.as_millis() as u64);
        let mut reloads = 0;
        loop {
            match pipe.query_async::<(Value, i64)>(conn).await {
                Err(e) if is_noscript(&e) && reloads < MAX_RELOADS => {
                    reloads += 1;
                    self.reload(conn, &CLAIM).await?;
                }
                r => return r.map_err(|e| self.redis_error(e)),
            }
        }
    }

    /// `EVALSHA` on `conn`, loading the script and retrying on `NOSCRIPT`
    /// (see [`MAX_RELOADS`]; on a cluster, `SCRIPT LOAD` goes to every node).
    async fn eval_on(&self, conn: &mut Conn, script: &Script, cmd: &Cmd) -> Result<Value, Error> {
        let mut reloads = 0;
        loop {
            match cmd.query_async::<Value>(conn).await {
                Err(e) if is_noscript(&e) && reloads < MAX_RELOADS => {
                    reloads += 1;
                    self.reload(conn, script).await?;
                }
                r => return r.map_err(|e| self.redis_error(e)),
            }
        }
    }

    /// Loads `script` after a `NOSCRIPT` reply.
    async fn reload(&self, conn: &mut Conn, script: &Script) -> Result<(), Error> {
        tracing::debug!(addr = %self.addr, sha = script.get_hash(), "NOSCRIPT: loading the script");
        metrics::counter!(crate::telemetry::SCRIPT_RELOADS).increment(1);
        script
            .load_async(conn)
            .await
            .map(drop)
            .map_err(|e| self.redis_error(e))
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

    /// The typed error of one item the claim script could not write
    /// (`"E<error>"`: the error's code is its first word).
    fn refusal(&self, message: String) -> Error {
        let code = message.split_whitespace().next().map(str::to_owned);
        refused(self.addr.clone(), code.as_deref(), message)
    }

    fn bad_reply(&self, what: &str, v: &Value) -> Error {
        Error::Backend {
            addr: self.addr.clone(),
            message: format!(
                "unexpected reply to {what}: {v:?} (is another program writing under this prefix?)"
            ),
        }
    }

    /// A record from a script's `{record, pttl, now}` reply.
    fn record(&self, what: &str, reply: &[Value]) -> Result<Record, Error> {
        let [raw, pttl, now] = reply else {
            return Err(self.bad_reply(what, &Value::Array(reply.to_vec())));
        };
        let bytes = match raw {
            Value::BulkString(b) => b.as_slice(),
            other => return Err(self.bad_reply(what, other)),
        };
        let (ttl, now) = match (pttl, now) {
            // No expiry (runonce never writes one; an operator might): the
            // creation time cannot be derived, and is reported as 0.
            (Value::Int(t), Value::Int(_)) if *t < 0 => (0, 0),
            (Value::Int(t), Value::Int(n)) => (*t as u64, (*n).max(0) as u64),
            _ => return Err(self.bad_reply(what, &Value::Array(reply.to_vec()))),
        };
        parse_record(bytes, ttl, now).ok_or_else(|| Error::Backend {
            addr: self.addr.clone(),
            message: format!(
                "the key holds a value runonce did not write ({:?}); is another program writing under this prefix?",
                String::from_utf8_lossy(&bytes[..bytes.len().min(80)])
            ),
        })
    }

    fn claim_cmd(&self, claims: &[&Claim]) -> Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(CLAIM.get_hash()).arg(claims.len());
        for c in claims {
            cmd.arg(&c.key);
        }
        let mut value = Vec::with_capacity(64);
        for c in claims {
            value.clear();
            write_record_value(c, &mut value);
            cmd.arg(&value[..]);
        }
        // One TTL for the whole call when the items share it (the common
        // case: a worker's default window), else one per item.
        match claims.split_first() {
            Some((first, rest)) if rest.iter().all(|c| c.ttl_ms == first.ttl_ms) => {
                cmd.arg(first.ttl_ms);
            }
            _ => {
                for c in claims {
                    cmd.arg(c.ttl_ms);
                }
            }
        }
        if self.wait.is_some() {
            // Durable: held records are re-written in place, so the WAIT
            // behind the call covers them too.
            cmd.arg("w");
        }
        cmd
    }

    fn parse_claims(
        &self,
        group: &[&Claim],
        reply: &Value,
        replicas: Option<u32>,
    ) -> Result<Vec<ClaimReply>, Error> {
        let created = |c: &Claim| ClaimReply::Created {
            expires_in_ms: c.ttl_ms,
            replicas,
        };
        let items = match reply {
            // Every key was free (the common case, answered in one integer).
            Value::Int(n) if *n as usize == group.len() => {
                return Ok(group.iter().map(|c| created(c)).collect())
            }
            Value::Array(items) if items.len() == group.len() => items,
            _ => return Err(self.bad_reply("claim", reply)),
        };
        items
            .iter()
            .zip(group)
            .map(|(item, c)| match item {
                Value::Int(1) => Ok(created(c)),
                Value::Array(held) => Ok(ClaimReply::Existing {
                    record: self.record("claim", held)?,
                    replicas,
                }),
                Value::BulkString(b) if b.first() == Some(&b'E') => Ok(ClaimReply::Refused(
                    self.refusal(String::from_utf8_lossy(&b[1..]).into_owned()),
                )),
                other => Err(self.bad_reply("claim", other)),
            })
            .collect()
    }

    /// Claims one group of keys that share a slot (all keys, off a
    /// cluster) in one script call, with `WAIT` after it when durability is
    /// on. `in_flight` is the number of groups sent at once with this one
    /// (a cluster batch sends one per slot).
    async fn claim_group(
        &self,
        group: &[&Claim],
        in_flight: usize,
    ) -> Result<Vec<ClaimReply>, Error> {
        let cmd = self.claim_cmd(group);
        // A durable claim may spend its WAIT twice: when the script had to be
        // reloaded, the WAIT pipelined behind the refused EVALSHA ran too.
        // (A further reload, the cache flushed again meanwhile, may run the
        // call out of time: a Timeout, which a retry settles.)
        let wait_time = self.wait.map_or(Duration::ZERO, |w| w.timeout * 2);
        if !self.is_cluster() {
            return self
                .claim_attempt(group, &cmd, self.timeout + wait_time)
                .await;
        }
        // On a cluster, a connection can hang for good while slots move
        // (redis-rs 1.8 stops answering every request of a cluster
        // connection that met a redirect at the wrong moment), so a call
        // makes several attempts within its timeout, each on a fresh
        // connection after the one before timed out. Claims are re-entrant
        // for their candidate run ID, so a repeated attempt is safe.
        // A batch's calls share the connection and the nodes, so each one
        // takes longer the more there are (a 3,000-key batch sends ~2,600):
        // the attempts get longer and fewer with the batch, or a slow but
        // live connection under load would be torn down again and again.
        let deadline = tokio::time::Instant::now() + self.timeout + wait_time;
        // At least two attempts remain, so a hung connection is still
        // replaced within the call.
        let share = u32::try_from(in_flight / GROUPS_PER_ATTEMPT_WINDOW)
            .unwrap_or(u32::MAX)
            .max(1);
        let per_attempt = (self.timeout / CLUSTER_ATTEMPTS)
            .saturating_mul(share)
            .min(self.timeout / 2)
            + wait_time;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.claim_attempt(group, &cmd, per_attempt.min(left)).await {
                Err(Error::Timeout { .. }) if deadline > tokio::time::Instant::now() => {
                    tracing::debug!(addr = %self.addr, "claim attempt timed out: retrying on a fresh cluster connection");
                }
                Err(Error::Timeout { .. }) => {
                    return Err(Error::Timeout {
                        addr: self.addr.clone(),
                        after: self.timeout + wait_time,
                    })
                }
                r => return r,
            }
        }
    }

    /// One attempt of [`claim_group`](Self::claim_group), bounded by `limit`.
    async fn claim_attempt(
        &self,
        group: &[&Claim],
        cmd: &Cmd,
        limit: Duration,
    ) -> Result<Vec<ClaimReply>, Error> {
        let deadline = tokio::time::Instant::now() + limit;
        let Some(wait) = self.wait else {
            let mut used = None;
            let reply = tokio::time::timeout_at(deadline, async {
                let (generation, mut conn) = self.hot_conn().await?;
                used = Some(generation);
                self.eval_on(&mut conn, &CLAIM, cmd).await
            })
            .await;
            let reply = match reply {
                Ok(r) => r?,
                Err(_) => {
                    if let Some(generation) = used {
                        self.invalidate_generation(generation);
                    }
                    return Err(Error::Timeout {
                        addr: self.addr.clone(),
                        after: limit,
                    });
                }
            };
            return self.parse_claims(group, &reply, None);
        };
        // Boxed: the durable path's state (a pool checkout, a pipeline)
        // would otherwise double the size of every claim's future.
        Box::pin(self.claim_attempt_durable(group, cmd, deadline, wait)).await
    }

    /// [`claim_attempt`](Self::claim_attempt) with durability: the claim and
    /// its `WAIT` on a leased connection, by `deadline`.
    async fn claim_attempt_durable(
        &self,
        group: &[&Claim],
        cmd: &Cmd,
        deadline: tokio::time::Instant,
        wait: Wait,
    ) -> Result<Vec<ClaimReply>, Error> {
        let left = |now: tokio::time::Instant| deadline.saturating_duration_since(now);
        // (Boxed, like connect_hot: the pool's checkout future is large.)
        let lease = self
            .bounded_lease(left(tokio::time::Instant::now()), Box::pin(self.lease()))
            .await?;
        let mut conn = lease.conn();
        let result = self
            .bounded_lease(left(tokio::time::Instant::now()), async {
                // The claim and its WAIT travel as one pipeline, so they run
                // back to back on one node and one connection: WAIT counts
                // the acknowledgements of exactly this claim's write. (Sent
                // apart, a WAIT that redis-rs re-routes after the primary
                // died would be answered by another node.)
                let (reply, reached) = self.eval_then_wait(&mut conn, cmd, wait).await?;
                let reached = reached.max(0) as u32;
                let replies = self.parse_claims(group, &reply, Some(reached))?;
                Ok((replies, reached))
            })
            .await;
        match result {
            Ok((replies, reached)) if reached >= wait.replicas => {
                self.give_back(lease);
                Ok(replies)
            }
            Ok((replies, _)) if matches!(self.source, Source::Sentinel(_)) => {
                // A shortfall behind Sentinel: a primary that lost its
                // replicas may have been replaced by one of them, so ask
                // Sentinel again on the next call.
                self.discard(lease);
                self.forget_primary();
                Ok(replies)
            }
            Ok((replies, _)) => {
                self.give_back(lease);
                Ok(replies)
            }
            Err(e) => {
                self.discard(lease);
                Err(e)
            }
        }
    }
}

/// How many times one call loads a script after `NOSCRIPT` and sends it
/// again. One reload is not always enough: the script cache can be flushed
/// again between the `SCRIPT LOAD` and the retried `EVALSHA` (an operator
/// running `SCRIPT FLUSH` in a loop, or a failover to a replica that has
/// not loaded it yet), and a caller should not see that as an error.
const MAX_RELOADS: usize = 5;

fn is_noscript(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}

/// The typed error of a server's refusal, from its code and message: one
/// mapping for command replies and for items the claim script reports.
fn refused(addr: String, code: Option<&str>, message: String) -> Error {
    match code {
        Some("WRONGPASS" | "NOAUTH") => Error::AuthFailed { addr, message },
        Some("NOPERM") => Error::NoPermission { addr, message },
        Some("OOM") => Error::OutOfMemory { addr, message },
        // A command refused inside a script comes back as a plain ERR.
        _ if message.contains("can't run this command")
            || message.contains("No permissions to access") =>
        {
            Error::NoPermission { addr, message }
        }
        _ if message.contains("maxmemory") => Error::OutOfMemory { addr, message },
        _ => Error::Backend { addr, message },
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
                    // claim directly. (Boxed: kept out of this future's
                    // state, which the common path above does not need.)
                    Ok(None) => Box::pin(self.core.claim(claims)).await,
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
            return self.claim_group(&all, 1).await;
        }
        // Group by slot, keeping each item's position; every group's script
        // call is in flight at once.
        let mut by_slot: std::collections::BTreeMap<u16, Vec<usize>> = Default::default();
        for (i, c) in claims.iter().enumerate() {
            by_slot.entry(slot(&c.key)).or_default().push(i);
        }
        let groups: Vec<Vec<usize>> = by_slot.into_values().collect();
        let in_flight = groups.len();
        let futures = groups.iter().map(|idx| async move {
            let group: Vec<&Claim> = idx.iter().map(|&i| &claims[i]).collect();
            self.claim_group(&group, in_flight).await
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
            Value::Array(held) => Ok(Some(self.record("lookup", &held)?)),
            other => Err(self.bad_reply("lookup", &other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `f` returns.
    fn future_size<'a, Fut>(_: impl FnOnce(&'a Core, &'a [&'a Claim]) -> Fut) -> usize {
        std::mem::size_of::<Fut>()
    }

    /// Every claim's future is moved into a box or a task, which copies all
    /// of it. The connect and durable paths (pool checkout, redis-rs connect
    /// futures: ~10 KB each) are boxed so the hot path's future stays small;
    /// before that, each trigger copied ~22 KB, two thirds of its CPU time.
    #[test]
    fn claim_futures_stay_small() {
        // 'a names the borrow the futures hold; clippy cannot see its use.
        #[allow(clippy::extra_unused_lifetimes)]
        fn sizes<'a>() -> [(&'static str, usize); 3] {
            [
                ("hot_conn", future_size(|c: &'a Core, _| c.hot_conn())),
                (
                    "claim_group",
                    future_size(|c: &'a Core, g| c.claim_group(g, 1)),
                ),
                (
                    "claim_attempt",
                    future_size(|c: &'a Core, g| async move {
                        c.claim_attempt(g, &redis::cmd("EVALSHA"), Duration::ZERO)
                            .await
                    }),
                ),
            ]
        }
        for (name, size) in sizes() {
            assert!(size <= 4096, "{name}: {size} bytes");
        }
        assert!(sizes()[0].1 <= 256, "{:?}", sizes()[0]);
    }
}
