//! The storage trait and its two implementations: Redis and in-memory.
//!
//! A store knows nothing about scopes, payload policies or batches: it
//! claims already-encoded keys, finishes and reads records. The policy lives
//! once in [`Dedupe`](crate::Dedupe), so both stores behave the same by
//! construction and one conformance suite tests both.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use crate::error::Error;
use crate::key::{from_hex32, to_hex};
use crate::options::{Record, RecordState};

mod coalesce;
pub mod memory;
pub mod redis;

/// A boxed, sendable future, as the [`Store`] methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One key to claim.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Claim {
    /// The encoded storage key (see [`storage_key`]).
    pub key: String,
    /// The candidate run ID.
    pub run_id: String,
    /// The window for a new record, in ms (at least 1).
    pub ttl_ms: u64,
    /// The payload fingerprint to store, if any.
    pub fingerprint: Option<[u8; 32]>,
}

impl Claim {
    /// A claim of `key` for `run_id`.
    pub fn new(key: String, run_id: String, ttl_ms: u64, fingerprint: Option<[u8; 32]>) -> Self {
        Claim {
            key,
            run_id,
            ttl_ms,
            fingerprint,
        }
    }
}

/// The store's answer to one [`Claim`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ClaimReply {
    /// The key was free and is now claimed for the candidate.
    Created {
        /// Time left on the new window, in ms.
        expires_in_ms: u64,
        /// Replica acknowledgements reached (`WAIT`), when durability is on.
        replicas: Option<u32>,
    },
    /// A live record holds the key; nothing was written.
    Existing(Record),
    /// The server refused this item's write (e.g. out of memory); nothing
    /// was written for it. Other items of the same call are unaffected.
    Refused(Error),
}

/// A dedupe store: the one trait both backends implement.
///
/// Every method is atomic per key. `claim` takes distinct keys and may
/// answer them in one round trip.
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// Claims each key if free (`SET NX PX` semantics), answering in order.
    fn claim<'a>(&'a self, claims: &'a [Claim]) -> BoxFuture<'a, Result<Vec<ClaimReply>, Error>>;

    /// If `run_id` owns `key`: sets its state to `to` keeping the TTL, or
    /// deletes it when `to` is `None`. Answers whether anything changed.
    fn finish<'a>(
        &'a self,
        key: &'a str,
        run_id: &'a str,
        to: Option<RecordState>,
    ) -> BoxFuture<'a, Result<bool, Error>>;

    /// Deletes `key` unconditionally; answers whether a record existed.
    fn reset<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, Error>>;

    /// The live record of `key`, if any.
    fn lookup<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Record>, Error>>;

    /// Where the store lives, for error messages (never with a password).
    fn addr(&self) -> &str;
}

/// Percent-escapes the bytes that would make a key component ambiguous
/// (`%`, `:`), break the hash tag (`{`, `}`), or act as glob characters in
/// `SCAN MATCH` (`*`, `?`, `[`, `]`, `\`), plus spaces and control bytes.
fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '%' | ':' | '{' | '}' | '*' | '?' | '[' | ']' | '\\' | ' ' => {
                out.push_str(&format!("%{:02X}", c as u32));
            }
            c if c.is_ascii_control() => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
}

/// The Redis key of one record:
/// `<prefix>:<environment>:<t|g>:<task or group>:{<digest, base64url>}`.
///
/// Components are percent-escaped, so the mapping is injective: no two
/// (prefix, environment, namespace, digest) tuples share a key, whatever
/// characters they hold. The digest is the hash tag, so different keys
/// spread over all cluster slots.
///
/// ```
/// use runonce::{IdempotencyKey, Namespace, Scope, store::storage_key};
/// let k = IdempotencyKey::create("x", Scope::Global)?;
/// let s = storage_key("runonce", "prod", &Namespace::task("send:email"), &k);
/// assert!(s.starts_with("runonce:prod:t:send%3Aemail:{"));
/// # Ok::<(), runonce::Error>(())
/// ```
pub fn storage_key(
    prefix: &str,
    environment: &str,
    namespace: &crate::Namespace,
    key: &crate::IdempotencyKey,
) -> String {
    let mut out = String::with_capacity(prefix.len() + environment.len() + 90);
    escape_into(&mut out, prefix);
    out.push(':');
    escape_into(&mut out, environment);
    let (kind, name) = match namespace {
        crate::Namespace::Task(t) => (":t:", t),
        crate::Namespace::Group(g) => (":g:", g),
    };
    out.push_str(kind);
    escape_into(&mut out, name);
    out.push_str(":{");
    // base64url (43 characters) rather than hex (64): a shorter key saves
    // memory per record, and the alphabet has no `{` or `}`.
    base64::Engine::encode_string(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        key.digest(),
        &mut out,
    );
    out.push('}');
    out
}

/// The part of a record the client sends: `<fingerprint hex>:<run id>`.
pub(crate) fn record_tail(claim: &Claim) -> String {
    let fp = claim.fingerprint.map(|f| to_hex(&f)).unwrap_or_default();
    format!("{fp}:{}", claim.run_id)
}

/// Parses a stored record `<state><created ms>:<fingerprint hex>:<run id>`.
pub(crate) fn parse_record(raw: &[u8], expires_in_ms: u64) -> Option<Record> {
    let (&code, rest) = raw.split_first()?;
    let state = RecordState::from_code(code)?;
    let colon = rest.iter().position(|&b| b == b':')?;
    let created_at_ms = std::str::from_utf8(&rest[..colon]).ok()?.parse().ok()?;
    let rest = &rest[colon + 1..];
    let colon = rest.iter().position(|&b| b == b':')?;
    let fp = &rest[..colon];
    let fingerprint = match fp.len() {
        0 => None,
        _ => Some(to_hex(&from_hex32(fp)?)),
    };
    let run_id = String::from_utf8(rest[colon + 1..].to_vec()).ok()?;
    Some(Record {
        run_id,
        state,
        expires_in_ms,
        created_at_ms,
        has_fingerprint: fingerprint.is_some(),
        fingerprint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip() {
        let c = Claim::new("k".into(), "run_a:b".into(), 10, Some([7; 32]));
        let raw = format!("R1700000000123:{}", record_tail(&c));
        let r = parse_record(raw.as_bytes(), 5).unwrap();
        assert_eq!(r.run_id, "run_a:b");
        assert_eq!(r.created_at_ms, 1_700_000_000_123);
        assert_eq!(r.fingerprint.as_deref(), Some(&*to_hex(&[7; 32])));
        assert_eq!(r.state, RecordState::Running);
        let c = Claim::new("k".into(), "run_x".into(), 10, None);
        let raw = format!("S1:{}", record_tail(&c));
        let r = parse_record(raw.as_bytes(), 5).unwrap();
        assert!(!r.has_fingerprint);
        assert_eq!(r.state, RecordState::Succeeded);
        assert!(parse_record(b"garbage", 1).is_none());
    }
}
