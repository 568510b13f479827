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
use crate::key::to_hex;
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
    /// A live record holds the key; nothing was written to it.
    Existing {
        /// The record.
        record: Record,
        /// Replica acknowledgements reached for the record, when
        /// durability is on: the claim re-wrote the held record in place
        /// (same value, same TTL) so that its `WAIT` covers it too. An
        /// answer taken from a record the replicas may not hold could be
        /// lost in a failover, like an unacknowledged claim.
        replicas: Option<u32>,
    },
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

/// How many leading bytes of the payload's SHA-256 a record keeps: 64 bits
/// tell two payloads apart with a false match of 2^-64, and keep a record
/// with a fingerprint inside Redis's 44-byte embedded-string limit.
pub(crate) const FINGERPRINT_BYTES: usize = 8;

/// The fingerprint as records report it: hex of its first
/// [`FINGERPRINT_BYTES`] bytes.
pub(crate) fn fingerprint_hex(fp: &[u8; 32]) -> String {
    to_hex(&fp[..FINGERPRINT_BYTES])
}

/// The `run_` prefix that minted run IDs carry; records elide it.
const RUN_PREFIX: &str = "run_";
/// Header bit: an 11-character fingerprint follows the TTL.
const FORM_FINGERPRINT: u8 = 1;
/// Header bit: the run ID's `run_` prefix is elided.
const FORM_RUN_PREFIX: u8 = 2;
/// base64url characters of a stored fingerprint.
const FINGERPRINT_CHARS: usize = 11;
/// base64url digits of the stored TTL (36 bits of ms: 795 days, above
/// [`Ttl::MAX`](crate::Ttl::MAX)).
const TTL_CHARS: usize = 6;
/// The largest TTL a record can carry.
const MAX_STORED_TTL_MS: u64 = (1 << (6 * TTL_CHARS)) - 1;
/// The base64url alphabet, digit value = index.
const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn b64_digit(c: u8) -> Option<u8> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        b'_' => 63,
        _ => return None,
    })
}

fn state_index(state: RecordState) -> u8 {
    match state {
        RecordState::Running => 0,
        RecordState::Succeeded => 1,
        RecordState::Canceled => 2,
        RecordState::Failed => 3,
    }
}

/// The header character: state and form bits in one base64url digit.
pub(crate) fn header(state: RecordState, form: u8) -> u8 {
    B64[usize::from(state_index(state) * 4 + form)]
}

/// The record value a claim writes (see [`write_record_value`]).
#[cfg(test)]
pub(crate) fn record_value(claim: &Claim) -> Vec<u8> {
    let mut v = Vec::new();
    write_record_value(claim, &mut v);
    v
}

/// Appends the record value a claim writes to `v` (a claim call reuses one
/// buffer for all its items). The client builds it whole, so the claim
/// script only hands it to `SET` (no string work in Lua, no clock read).
/// See [`parse_record`] for the layout.
pub(crate) fn write_record_value(claim: &Claim, v: &mut Vec<u8>) {
    use base64::Engine;
    let (mut form, run) = match claim.run_id.strip_prefix(RUN_PREFIX) {
        Some(rest) => (FORM_RUN_PREFIX, rest),
        None => (0, claim.run_id.as_str()),
    };
    if claim.fingerprint.is_some() {
        form |= FORM_FINGERPRINT;
    }
    v.reserve(1 + TTL_CHARS + FINGERPRINT_CHARS + run.len());
    v.push(header(RecordState::Running, form));
    let ttl = claim.ttl_ms.min(MAX_STORED_TTL_MS);
    v.extend(
        (0..TTL_CHARS)
            .rev()
            .map(|i| B64[((ttl >> (6 * i)) & 63) as usize]),
    );
    if let Some(fp) = &claim.fingerprint {
        let mut chars = [0u8; FINGERPRINT_CHARS];
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode_slice(&fp[..FINGERPRINT_BYTES], &mut chars)
            .expect("8 bytes fit 11 characters");
        v.extend_from_slice(&chars);
    }
    v.extend_from_slice(run.as_bytes());
}

/// Parses a stored record, given the key's time left (`PTTL`) and the
/// server's clock, both in ms. The layout is compact: a minted run ID gives
/// 28 bytes, the size class of a bare 25-byte run ID, and 39 with a
/// fingerprint, still a Redis embedded string (at most 44 bytes).
///
/// ```text
/// <header><ttl><fingerprint?><run id>
/// header       1 base64url digit: state * 4 + form, state 0 running,
///              1 succeeded, 2 canceled, 3 failed (kept); form bit 1 = a
///              fingerprint follows, bit 2 = the run ID's "run_" prefix is
///              elided
/// ttl          6 base64url digits, big-endian: the window the record was
///              created with, in ms
/// fingerprint  11 chars: the first 8 bytes of the payload's SHA-256, base64url
/// run id       the rest
/// ```
///
/// The creation time is not stored: it is `now - (ttl - time left)`, exact
/// to the ms by the server's clock, since nothing changes a record's expiry
/// after its claim (finishing keeps the TTL).
pub(crate) fn parse_record(raw: &[u8], expires_in_ms: u64, now_ms: u64) -> Option<Record> {
    use base64::Engine;
    let (&head, rest) = raw.split_first()?;
    let head = b64_digit(head).filter(|h| *h < 16)?;
    let state = [
        RecordState::Running,
        RecordState::Succeeded,
        RecordState::Canceled,
        RecordState::Failed,
    ][usize::from(head / 4)];
    let form = head % 4;
    let (ttl, mut rest) = rest.split_at_checked(TTL_CHARS)?;
    let mut ttl_ms = 0u64;
    for &c in ttl {
        ttl_ms = ttl_ms << 6 | u64::from(b64_digit(c)?);
    }
    let fingerprint = if form & FORM_FINGERPRINT != 0 {
        let (fp, after) = rest.split_at_checked(FINGERPRINT_CHARS)?;
        let mut bytes = [0u8; FINGERPRINT_BYTES];
        let n = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode_slice(fp, &mut bytes)
            .ok()?;
        if n != FINGERPRINT_BYTES {
            return None;
        }
        rest = after;
        Some(to_hex(&bytes))
    } else {
        None
    };
    let run = std::str::from_utf8(rest).ok()?;
    let run_id = if form & FORM_RUN_PREFIX != 0 {
        format!("{RUN_PREFIX}{run}")
    } else {
        run.to_owned()
    };
    let age = ttl_ms.saturating_sub(expires_in_ms);
    Some(Record {
        run_id,
        state,
        expires_in_ms,
        created_at_ms: now_ms.saturating_sub(age),
        has_fingerprint: fingerprint.is_some(),
        fingerprint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8], left: u64, now: u64) -> Record {
        parse_record(raw, left, now).unwrap_or_else(|| panic!("{:?}", String::from_utf8_lossy(raw)))
    }

    #[test]
    fn record_round_trip() {
        let c = Claim::new("k".into(), "run_a:b".into(), 60_000, Some([7; 32]));
        let raw = record_value(&c);
        assert_eq!(raw.len(), 1 + 6 + 11 + 3);
        // Created 1.5 s before `now`: 58.5 s left of 60.
        let r = parse(&raw, 58_500, 1_700_000_001_623);
        assert_eq!(r.run_id, "run_a:b");
        assert_eq!(r.created_at_ms, 1_700_000_000_123);
        assert_eq!(r.fingerprint.as_deref(), Some("0707070707070707"));
        assert_eq!(r.fingerprint, Some(fingerprint_hex(&[7; 32])));
        assert_eq!(r.state, RecordState::Running);
        assert_eq!(r.expires_in_ms, 58_500);

        let c = Claim::new("k".into(), "my-run".into(), 1, None);
        let mut raw = record_value(&c);
        assert_eq!(&raw[..], b"AAAAAABmy-run");
        raw[0] = header(RecordState::Succeeded, 0);
        assert_eq!(&raw[..], b"EAAAAABmy-run");
        let r = parse(&raw, 1, 5);
        assert!(!r.has_fingerprint);
        assert_eq!(r.run_id, "my-run");
        assert_eq!(r.created_at_ms, 5);
        assert_eq!(r.state, RecordState::Succeeded);

        // A run ID that is only the prefix, and one that repeats it.
        for id in ["run_", "run_run_x"] {
            let c = Claim::new("k".into(), id.into(), 10, Some([0xff; 32]));
            assert_eq!(parse(&record_value(&c), 1, 1).run_id, id);
        }
    }

    #[test]
    fn minted_records_are_embedded_strings() {
        // Redis keeps a string of at most 44 bytes inside its object header,
        // in a 48-byte allocation up to 28 bytes (as a bare 25-byte value).
        let c = Claim::new("k".into(), crate::mint_run_id(), 10, Some([1; 32]));
        let raw = record_value(&c);
        assert_eq!(raw.len(), 39, "{raw:?}");
        let c = Claim::new("k".into(), crate::mint_run_id(), 10, None);
        let raw = record_value(&c);
        assert_eq!(raw.len(), 28, "{raw:?}");
        // The longest window fits the 6-character TTL: with no time left,
        // the record was created exactly one window before `now`.
        let max = crate::Ttl::MAX.as_millis() as u64;
        let c = Claim::new("k".into(), "x".into(), max, None);
        assert_eq!(parse(&record_value(&c), 0, max + 5).created_at_ms, 5);
    }

    #[test]
    fn foreign_values_are_refused() {
        for raw in [
            &b"AAAAAA"[..],
            b"QAAAAAArun_a",
            b"A!AAAAArun_a",
            b"BAAAAAAshort",
            b"AAAAAAA\xff",
        ] {
            assert!(parse_record(raw, 1, 1).is_none(), "{raw:?}");
        }
    }
}
