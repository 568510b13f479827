//! The one error type of the crate: a variant per cause a caller can act on.

use std::time::Duration;

/// Everything that can go wrong in a runonce call.
///
/// Each variant is a cause a caller can act on, and each message says what to
/// do. Input errors ([`Error::InvalidKey`], [`Error::InvalidTtl`], ...) are
/// raised before anything is sent to the backend, so bad input never writes.
///
/// A backend error ([`Error::Backend`], [`Error::Timeout`]) means the answer
/// is *unknown*: the claim may or may not have been made. Retry with the same
/// candidate run ID (see [`TriggerOptions::run_id`](crate::TriggerOptions::run_id));
/// the claim is re-entrant, so the retry learns the truth.
///
/// ```
/// use runonce::{Error, IdempotencyKey, Scope};
///
/// let err = IdempotencyKey::create("", Scope::Global).unwrap_err();
/// assert!(matches!(err, Error::InvalidKey { .. }));
/// assert!(err.to_string().contains("empty"));
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The idempotency key (or one of its parts) is empty, too long, holds a
    /// NUL byte, or is not a valid digest.
    #[error("invalid idempotency key {value:?}: {reason}; pass a non-empty key of at most 2048 bytes without NUL bytes")]
    InvalidKey {
        /// The offending value (shortened if very long).
        value: String,
        /// Why it was refused.
        reason: String,
    },

    /// A TTL is zero, negative, unparseable or over 365 days.
    #[error("invalid TTL {input:?}: {reason}; use e.g. `60s`, `5m`, `2h`, `3d` or `1h 30m`, between 1ms and 365d")]
    InvalidTtl {
        /// The input as given.
        input: String,
        /// Why it was refused.
        reason: String,
    },

    /// Some other argument (task, group, environment, prefix, run ID,
    /// attempt) is unusable.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidInput {
        /// Which argument, e.g. `"task"` or `"run ID"`.
        what: &'static str,
        /// The offending value (shortened if very long).
        value: String,
        /// Why it was refused.
        reason: String,
    },

    /// The payload could not be serialized to JSON for a fingerprint.
    #[error("invalid payload: {reason}; the payload must serialize to JSON (finite numbers, string map keys)")]
    InvalidPayload {
        /// What the serializer said.
        reason: String,
    },

    /// A `Run` or `Attempt` scoped key was asked for outside a run.
    #[error("scope {scope} needs a run context, and none is installed; run inside `RunContext::scope`, pass the context explicitly, or use Scope::Global")]
    MissingRunContext {
        /// The scope that was asked for (`Run` or `Attempt`).
        scope: &'static str,
    },

    /// The key is owned by a run that was triggered with a different payload.
    #[error("payload mismatch: idempotency key {key} is owned by run {owner_run_id}, which was triggered with a different payload; use a new key, or MismatchPolicy::ReturnExisting to get the existing run")]
    PayloadMismatch {
        /// The run that owns the key.
        owner_run_id: String,
        /// Hex digest of the key.
        key: String,
    },

    /// The backend could not be reached or answered with an error. The
    /// outcome of the call is unknown; retry with the same candidate run ID.
    #[error("backend at {addr} failed: {message}; check that Redis is running and reachable there, then retry with the same run ID")]
    Backend {
        /// The backend address (never includes a password).
        addr: String,
        /// What went wrong.
        message: String,
    },

    /// The backend did not answer within the configured timeout. The outcome
    /// is unknown; retry with the same candidate run ID.
    #[error("backend at {addr} timed out after {after:?}; check the server's load and the network, raise the timeout, then retry with the same run ID")]
    Timeout {
        /// The backend address (never includes a password).
        addr: String,
        /// The timeout that elapsed.
        after: Duration,
    },

    /// Redis refused the write: `maxmemory` reached under `noeviction`.
    /// No new run was created by this call's failed part; retry with the
    /// same candidate run ID once memory is freed.
    #[error("Redis at {addr} is out of memory (maxmemory reached): {message}; free memory or raise maxmemory, then retry with the same run ID")]
    OutOfMemory {
        /// The server's address.
        addr: String,
        /// The server's reply.
        message: String,
    },

    /// Redis rejected the credentials (wrong or missing password/user).
    #[error("Redis at {addr} rejected the credentials: {message}; check the user and password in the URL (redis://user:password@host:port)")]
    AuthFailed {
        /// The server's address.
        addr: String,
        /// The server's reply.
        message: String,
    },

    /// The Redis (ACL) user may not run a command or touch a key runonce
    /// needs.
    #[error("Redis at {addr} denied permission: {message}; the ACL user needs `~<prefix>:* +evalsha +script|load +set +get +pttl +time +del` (and +wait for durability, +config|get for the eviction check)")]
    NoPermission {
        /// The server's address.
        addr: String,
        /// The server's reply.
        message: String,
    },

    /// No pooled connection became free in time.
    #[error("connection pool for {addr} exhausted: no connection free within {after:?}; raise the pool size or lower concurrency")]
    PoolExhausted {
        /// The backend address.
        addr: String,
        /// How long the call waited.
        after: Duration,
    },

    /// The record an answer comes from (this call's new claim, or the held
    /// record of a cached answer) is on the primary, but fewer replicas than
    /// asked for acknowledged it in time: a failover now could lose it.
    #[error("run {run_id} holds the key at {addr}, but only {reached} of {wanted} replicas acknowledged the record within the durability timeout; a failover could lose it: check replica health, then retry the trigger (with the same candidate run ID)")]
    ReplicaShortfall {
        /// The primary's address.
        addr: String,
        /// The run that holds the claim.
        run_id: String,
        /// Replicas asked for.
        wanted: u32,
        /// Replicas that acknowledged.
        reached: u32,
    },

    /// The server may evict dedupe records (strict mode refuses to start).
    #[error("Redis at {addr} has maxmemory-policy {policy:?}, which can evict dedupe records and allow duplicate runs; set `maxmemory-policy noeviction` (or turn off the strict eviction check)")]
    UnsafeEvictionPolicy {
        /// The backend address.
        addr: String,
        /// The policy the server reported (or `unknown`).
        policy: String,
    },

    /// The builder was given a contradictory or incomplete configuration.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl Error {
    /// True when the error came from the caller's input (nothing was written).
    ///
    /// ```
    /// use runonce::Ttl;
    /// assert!("0s".parse::<Ttl>().unwrap_err().is_invalid_input());
    /// ```
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            Error::InvalidKey { .. }
                | Error::InvalidTtl { .. }
                | Error::InvalidInput { .. }
                | Error::InvalidPayload { .. }
                | Error::MissingRunContext { .. }
                | Error::Config(_)
        )
    }

    /// True when the outcome of the call is unknown (backend failure or
    /// timeout): retrying with the same candidate run ID is safe.
    ///
    /// ```
    /// use runonce::Error;
    /// let e = Error::Timeout { addr: "127.0.0.1:6379".into(), after: std::time::Duration::from_secs(1) };
    /// assert!(e.is_retryable());
    /// ```
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Backend { .. }
                | Error::Timeout { .. }
                | Error::PoolExhausted { .. }
                | Error::ReplicaShortfall { .. }
                | Error::OutOfMemory { .. }
        )
    }

    /// A short machine-readable name of the variant, e.g. `invalid_key`.
    ///
    /// ```
    /// use runonce::Error;
    /// assert_eq!(Error::Config("x".into()).kind(), "config");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidKey { .. } => "invalid_key",
            Error::InvalidTtl { .. } => "invalid_ttl",
            Error::InvalidInput { .. } => "invalid_input",
            Error::InvalidPayload { .. } => "invalid_payload",
            Error::MissingRunContext { .. } => "missing_run_context",
            Error::PayloadMismatch { .. } => "payload_mismatch",
            Error::Backend { .. } => "backend",
            Error::Timeout { .. } => "timeout",
            Error::PoolExhausted { .. } => "pool_exhausted",
            Error::OutOfMemory { .. } => "out_of_memory",
            Error::AuthFailed { .. } => "auth_failed",
            Error::NoPermission { .. } => "no_permission",
            Error::ReplicaShortfall { .. } => "replica_shortfall",
            Error::UnsafeEvictionPolicy { .. } => "unsafe_eviction_policy",
            Error::Config(_) => "config",
        }
    }
}

/// Shortens a value for an error message so a 10 MB key does not become a
/// 10 MB log line.
pub(crate) fn shorten(value: &str) -> String {
    const MAX: usize = 80;
    if value.len() <= MAX {
        return value.to_owned();
    }
    let mut end = MAX;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &value[..end], value.len())
}

pub(crate) fn invalid_input(what: &'static str, value: &str, reason: &str) -> Error {
    Error::InvalidInput {
        what,
        value: shorten(value),
        reason: reason.to_owned(),
    }
}

/// Checks a name-like argument (task, group, environment, prefix).
pub(crate) fn check_name(what: &'static str, value: &str) -> Result<(), Error> {
    if value.is_empty() {
        return Err(invalid_input(what, value, "must not be empty"));
    }
    if value.len() > 256 {
        return Err(invalid_input(what, value, "must be at most 256 bytes"));
    }
    if value.contains('\0') {
        return Err(invalid_input(what, value, "must not contain a NUL byte"));
    }
    Ok(())
}
