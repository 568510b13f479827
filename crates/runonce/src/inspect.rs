//! Reading what runonce stores, for tools that walk the keyspace (such as
//! `runonce stats`): a Redis key back into (prefix, environment, namespace,
//! digest), a record value back into a [`Record`], and the `SCAN MATCH`
//! pattern that selects a prefix's records.
//!
//! These are the exact inverses of the layout documented at
//! [`storage_key`]: a key parses only if writing its parts back gives the
//! same key, so nothing that runonce did not write is mistaken for a record.

use base64::Engine as _;

use crate::key::to_hex;
use crate::options::{Namespace, Record};
use crate::store::{parse_record, storage_key};
use crate::IdempotencyKey;

/// The parts of a Redis key that holds a runonce record.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParsedKey {
    /// The key prefix, unescaped (e.g. `runonce`).
    pub prefix: String,
    /// The environment, unescaped (e.g. `prod`).
    pub environment: String,
    /// The task or shared key group, unescaped.
    pub namespace: Namespace,
    /// The idempotency key's digest.
    pub digest: IdempotencyKey,
}

/// Parses a Redis key written by runonce:
/// `<prefix>:<environment>:<t|g>:<task or group>:{<digest, base64url>}`,
/// components percent-escaped (see [`storage_key`]).
///
/// Answers `None` for any other key, including a non-canonical spelling of
/// a runonce key (e.g. a `%3a` that runonce would write as `%3A`): the
/// answer is `Some` exactly when `storage_key` of the parts gives `key`
/// back.
///
/// ```
/// use runonce::{inspect::parse_storage_key, store::storage_key};
/// use runonce::{IdempotencyKey, Namespace, Scope};
///
/// let k = IdempotencyKey::create("order-7", Scope::Global)?;
/// let redis_key = storage_key("runonce", "prod", &Namespace::task("send:email"), &k);
/// let parsed = parse_storage_key(&redis_key).unwrap();
/// assert_eq!(parsed.prefix, "runonce");
/// assert_eq!(parsed.environment, "prod");
/// assert_eq!(parsed.namespace, Namespace::task("send:email"));
/// assert_eq!(parsed.digest, k);
///
/// assert!(parse_storage_key("runonce:prod:t:send-email").is_none());
/// assert!(parse_storage_key("session:42").is_none());
/// # Ok::<(), runonce::Error>(())
/// ```
pub fn parse_storage_key(key: &str) -> Option<ParsedKey> {
    // Escaping turns every `:` inside a component into `%3A`, so a record
    // key has exactly five components.
    let mut parts = key.split(':');
    let (prefix, environment, kind, name, tag) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if parts.next().is_some() {
        return None;
    }
    let b64 = tag.strip_prefix('{')?.strip_suffix('}')?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(b64)
        .ok()?;
    let digest: [u8; 32] = bytes.try_into().ok()?;
    let digest = IdempotencyKey::from_digest(&to_hex(&digest)).ok()?;
    let name = unescape(name)?;
    let namespace = match kind {
        "t" => Namespace::Task(name),
        "g" => Namespace::Group(name),
        _ => return None,
    };
    let parsed = ParsedKey {
        prefix: unescape(prefix)?,
        environment: unescape(environment)?,
        namespace,
        digest,
    };
    // Canonical spellings only: writing the parts back must give `key`.
    let again = storage_key(
        &parsed.prefix,
        &parsed.environment,
        &parsed.namespace,
        &parsed.digest,
    );
    (again == key).then_some(parsed)
}

/// Parses a record value as stored in Redis, given the key's time left
/// (`PTTL`) and the server's clock (`TIME`), both in ms. `None` for a value
/// runonce did not write. The layout is
/// `<header><ttl><fingerprint?><run id>`:
///
/// - header: one base64url digit, `state * 4 + form`: state 0 running,
///   1 succeeded, 2 canceled, 3 failed; form bit 1 says an 11-character
///   base64url fingerprint (the first 8 bytes of the payload's SHA-256)
///   follows, bit 2 that the run ID's `run_` prefix was elided.
/// - ttl: the window the record was created with, in ms, as 6 base64url
///   digits, big-endian. The creation time is derived from it:
///   `now - (ttl - time left)`.
/// - run id: the rest.
///
/// ```
/// use runonce::{inspect::parse_record_value, RecordState};
///
/// // A one-hour window with a minute left.
/// let now = 1_767_225_600_000;
/// let r = parse_record_value(b"GAANu6A01abc", 60_000, now).unwrap();
/// assert_eq!(r.state, RecordState::Succeeded);
/// assert_eq!(r.run_id, "run_01abc");
/// assert_eq!(r.created_at_ms, now - 3_540_000);
/// assert_eq!(r.expires_in_ms, 60_000);
/// assert!(!r.has_fingerprint);
///
/// let r = parse_record_value(b"BAAAOpgAAAAAAAAAP8my-run", 1, now).unwrap();
/// assert_eq!(r.run_id, "my-run");
/// assert_eq!(r.fingerprint.as_deref(), Some("00000000000000ff"));
///
/// assert!(parse_record_value(b"hello", 1, now).is_none());
/// ```
pub fn parse_record_value(raw: &[u8], expires_in_ms: u64, now_ms: u64) -> Option<Record> {
    parse_record(raw, expires_in_ms, now_ms)
}

/// The `SCAN ... MATCH` pattern that selects the records under `prefix`,
/// optionally of one environment and one task or group. Components are
/// escaped exactly as in [`storage_key`], which also escapes the glob
/// characters `*?[]\`, so the pattern matches literally. A pattern can
/// still match keys that are not records; check each with
/// [`parse_storage_key`].
///
/// ```
/// use runonce::{inspect::scan_pattern, Namespace};
///
/// assert_eq!(scan_pattern("runonce", None, None), "runonce:*");
/// assert_eq!(scan_pattern("runonce", Some("prod"), None), "runonce:prod:*");
/// assert_eq!(
///     scan_pattern("app*", None, Some(&Namespace::task("send email"))),
///     "app%2A:*:t:send%20email:*"
/// );
/// assert_eq!(
///     scan_pattern("runonce", Some("dev"), Some(&Namespace::group("mail"))),
///     "runonce:dev:g:mail:*"
/// );
/// ```
pub fn scan_pattern(
    prefix: &str,
    environment: Option<&str>,
    namespace: Option<&Namespace>,
) -> String {
    // Build a real key with the given components and cut it apart, so the
    // escaping is the one `storage_key` uses, by construction.
    let any = IdempotencyKey::from_digest(&"00".repeat(32)).expect("64 hex characters");
    let ns = namespace.cloned().unwrap_or_else(|| Namespace::task("x"));
    let key = storage_key(prefix, environment.unwrap_or("x"), &ns, &any);
    let parts: Vec<&str> = key.split(':').collect();
    let mut out = String::with_capacity(key.len());
    out.push_str(parts[0]);
    out.push(':');
    match (environment, namespace) {
        (None, None) => {}
        (Some(_), None) => {
            out.push_str(parts[1]);
            out.push(':');
        }
        (env, Some(_)) => {
            out.push_str(if env.is_some() { parts[1] } else { "*" });
            out.push(':');
            out.push_str(parts[2]);
            out.push(':');
            out.push_str(parts[3]);
            out.push(':');
        }
    }
    out.push('*');
    out
}

/// Reverses percent-escaping: `%XX` becomes that byte; the result must be
/// UTF-8.
fn unescape(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_owned());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Scope;

    #[test]
    fn round_trips_awkward_names() {
        let k = IdempotencyKey::create("k", Scope::Global).unwrap();
        for (p, e, ns) in [
            ("runonce", "dev", Namespace::task("a")),
            ("a:b", "acme/prod", Namespace::group("x y")),
            ("%41", "{tag}", Namespace::task("*?[]\\\n")),
            ("ünï", "é", Namespace::task("%")),
        ] {
            let s = storage_key(p, e, &ns, &k);
            let parsed = parse_storage_key(&s).unwrap_or_else(|| panic!("{s}"));
            assert_eq!(
                (parsed.prefix.as_str(), parsed.environment.as_str()),
                (p, e)
            );
            assert_eq!(parsed.namespace, ns);
            assert_eq!(parsed.digest, k);
        }
    }

    #[test]
    fn refuses_other_keys() {
        let k = IdempotencyKey::create("k", Scope::Global).unwrap();
        let good = storage_key("p", "e:x", &Namespace::task("t"), &k);
        assert!(parse_storage_key(&good).is_some());
        // Lowercase escape: not how runonce writes it.
        assert!(parse_storage_key(&good.replace("%3A", "%3a")).is_none());
        assert!(parse_storage_key(&good.replace(":t:", ":x:")).is_none());
        assert!(parse_storage_key(&good.replace('{', "")).is_none());
        assert!(parse_storage_key(&format!("{good}:more")).is_none());
        assert!(parse_storage_key("p:e:t:t:{short}").is_none());
        assert!(parse_storage_key("p:e:t:t:{}").is_none());
        assert!(parse_storage_key("").is_none());
    }
}
