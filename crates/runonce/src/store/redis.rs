//! The Redis store: Lua scripts invoked by SHA over one multiplexed
//! connection.
//!
//! One round trip per call: deadpool-redis pings a connection on every
//! checkout, which would double the cost of a trigger, so the store checks
//! one multiplexed connection out once, keeps a clone of it, and pipelines
//! every call over it. A connection-level failure drops the clone and the
//! next call checks out a fresh one, so clients reconnect by themselves.

use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use deadpool_redis::{Pool, PoolError};
use redis::aio::MultiplexedConnection;
use redis::{ErrorKind, RedisError, Script, ServerErrorKind, Value};

use super::{parse_record, record_tail, BoxFuture, Claim, ClaimReply, Store};
use crate::error::Error;
use crate::options::{Record, RecordState};

static CLAIM: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../../../lua/claim.lua")));
static FINISH: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../../../lua/finish.lua")));
static LOOKUP: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../../../lua/lookup.lua")));

/// A [`Store`] on one Redis server (or anything a deadpool-redis pool
/// reaches).
pub struct RedisStore {
    pool: Pool,
    hot: Mutex<Option<MultiplexedConnection>>,
    addr: String,
    timeout: Duration,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("addr", &self.addr)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store over `pool`. `addr` names the server in error messages;
    /// `timeout` bounds every call, connection checkout included.
    pub fn new(pool: Pool, addr: impl Into<String>, timeout: Duration) -> Self {
        RedisStore {
            pool,
            hot: Mutex::new(None),
            addr: addr.into(),
            timeout,
        }
    }

    async fn conn(&self) -> Result<MultiplexedConnection, Error> {
        if let Some(c) = self.hot.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            return Ok(c.clone());
        }
        let obj = self.pool.get().await.map_err(|e| self.pool_error(e))?;
        let conn: MultiplexedConnection = (*obj).clone();
        *self.hot.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn.clone());
        Ok(conn)
    }

    fn invalidate(&self) {
        *self.hot.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn pool_error(&self, e: PoolError) -> Error {
        match e {
            PoolError::Timeout(deadpool_redis::TimeoutType::Wait) => Error::PoolExhausted {
                addr: self.addr.clone(),
                after: self.timeout,
            },
            PoolError::Timeout(_) => Error::Timeout {
                addr: self.addr.clone(),
                after: self.timeout,
            },
            PoolError::Backend(e) => self.redis_error(e),
            other => Error::Backend {
                addr: self.addr.clone(),
                message: other.to_string(),
            },
        }
    }

    fn redis_error(&self, e: RedisError) -> Error {
        if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() {
            self.invalidate();
        }
        if e.is_timeout() {
            return Error::Timeout {
                addr: self.addr.clone(),
                after: self.timeout,
            };
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
        f: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => r,
            Err(_) => {
                self.invalidate();
                Err(Error::Timeout {
                    addr: self.addr.clone(),
                    after: self.timeout,
                })
            }
        }
    }

    /// `EVALSHA`, loading the script and retrying once on `NOSCRIPT`.
    async fn eval(&self, script: &Script, cmd: redis::Cmd) -> Result<Value, Error> {
        self.bounded(async {
            let mut conn = self.conn().await?;
            let r = match cmd.query_async::<Value>(&mut conn).await {
                Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                    tracing::debug!(addr = %self.addr, sha = script.get_hash(), "NOSCRIPT: loading the script");
                    script
                        .load_async(&mut conn)
                        .await
                        .map_err(|e| self.redis_error(e))?;
                    cmd.query_async::<Value>(&mut conn).await
                }
                r => r,
            };
            r.map_err(|e| self.redis_error(e))
        })
        .await
    }

    /// Sends any command on the hot connection, under the timeout.
    pub(crate) async fn query<T: redis::FromRedisValue>(
        &self,
        cmd: redis::Cmd,
    ) -> Result<T, Error> {
        self.bounded(async {
            let mut conn = self.conn().await?;
            cmd.query_async::<T>(&mut conn)
                .await
                .map_err(|e| self.redis_error(e))
        })
        .await
    }

    /// Reads `maxmemory-policy`. `Ok(None)` when the server refuses
    /// `CONFIG GET` (managed services often do); connection failures are
    /// errors.
    pub async fn eviction_policy(&self) -> Result<Option<String>, Error> {
        let mut cmd = redis::cmd("CONFIG");
        cmd.arg("GET").arg("maxmemory-policy");
        match self.query::<Vec<String>>(cmd).await {
            Ok(v) => Ok(v.get(1).cloned()),
            Err(Error::Backend { message, .. }) => {
                tracing::debug!(addr = %self.addr, %message, "CONFIG GET maxmemory-policy refused");
                Ok(None)
            }
            Err(e) => Err(e),
        }
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
}

impl Store for RedisStore {
    fn claim<'a>(&'a self, claims: &'a [Claim]) -> BoxFuture<'a, Result<Vec<ClaimReply>, Error>> {
        Box::pin(async move {
            if claims.is_empty() {
                return Ok(Vec::new());
            }
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(CLAIM.get_hash()).arg(claims.len());
            for c in claims {
                cmd.arg(&c.key);
            }
            for c in claims {
                cmd.arg(record_tail(c)).arg(c.ttl_ms);
            }
            let reply = self.eval(&CLAIM, cmd).await?;
            let Value::Array(items) = &reply else {
                return Err(self.bad_reply("claim", &reply));
            };
            if items.len() != claims.len() {
                return Err(self.bad_reply("claim", &reply));
            }
            items
                .iter()
                .map(|item| match item {
                    Value::Int(ttl) => Ok(ClaimReply::Created {
                        expires_in_ms: (*ttl).max(0) as u64,
                    }),
                    Value::Array(pair) if pair.len() == 2 => {
                        Ok(ClaimReply::Existing(self.record(&pair[0], &pair[1])?))
                    }
                    other => Err(self.bad_reply("claim", other)),
                })
                .collect()
        })
    }

    fn finish<'a>(
        &'a self,
        key: &'a str,
        run_id: &'a str,
        to: Option<RecordState>,
    ) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(async move {
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
        })
    }

    fn reset<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(async move {
            let mut cmd = redis::cmd("DEL");
            cmd.arg(key);
            Ok(self.query::<i64>(cmd).await? > 0)
        })
    }

    fn lookup<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Record>, Error>> {
        Box::pin(async move {
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(LOOKUP.get_hash()).arg(1).arg(key);
            match self.eval(&LOOKUP, cmd).await? {
                Value::Nil => Ok(None),
                Value::Array(pair) if pair.len() == 2 => Ok(Some(self.record(&pair[0], &pair[1])?)),
                other => Err(self.bad_reply("lookup", &other)),
            }
        })
    }

    fn addr(&self) -> &str {
        &self.addr
    }
}
