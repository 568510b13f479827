//! Idempotency keys: how parts, scopes and payloads become one digest.

use std::fmt;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::context::RunContext;
use crate::error::{invalid_input, shorten, Error};

/// The most bytes a key may have, over all its parts.
pub const MAX_KEY_BYTES: usize = 2048;

/// What is mixed into a key's digest besides its parts.
///
/// ```
/// use runonce::{IdempotencyKey, RunContext, Scope};
/// let a1 = RunContext::new("run_a", 1);
/// let a2 = RunContext::new("run_a", 2);
/// let k = |s, c: &RunContext| IdempotencyKey::create_in("x", s, c).unwrap();
/// assert_eq!(k(Scope::Run, &a1), k(Scope::Run, &a2));
/// assert_ne!(k(Scope::Attempt, &a1), k(Scope::Attempt, &a2));
/// assert_eq!(k(Scope::Global, &a1), IdempotencyKey::create("x", Scope::Global).unwrap());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scope {
    /// The current run's ID: unique per parent run, stable across its
    /// retries. The default inside a run.
    #[default]
    Run,
    /// The current run's ID and attempt number: unique per attempt.
    Attempt,
    /// Nothing: one key across every caller.
    Global,
}

impl Scope {
    fn name(self) -> &'static str {
        match self {
            Scope::Run => "Run",
            Scope::Attempt => "Attempt",
            Scope::Global => "Global",
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = Error;

    /// Parses `run`, `attempt` or `global` (any case).
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.to_ascii_lowercase().as_str() {
            "run" => Ok(Scope::Run),
            "attempt" => Ok(Scope::Attempt),
            "global" => Ok(Scope::Global),
            _ => Err(invalid_input(
                "scope",
                s,
                "must be one of `run`, `attempt`, `global`",
            )),
        }
    }
}

/// The parts of a key: one string or a list of strings.
///
/// Built with `From` from `&str`, `String`, arrays, slices and vectors of
/// either, so `create("a", ..)` and `create(["a", "b"], ..)` both work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyParts(Vec<String>);

impl KeyParts {
    /// The parts, in order.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

impl From<&str> for KeyParts {
    fn from(s: &str) -> Self {
        KeyParts(vec![s.to_owned()])
    }
}
impl From<String> for KeyParts {
    fn from(s: String) -> Self {
        KeyParts(vec![s])
    }
}
impl From<&String> for KeyParts {
    fn from(s: &String) -> Self {
        KeyParts(vec![s.clone()])
    }
}
impl From<Vec<String>> for KeyParts {
    fn from(v: Vec<String>) -> Self {
        KeyParts(v)
    }
}
impl From<Vec<&str>> for KeyParts {
    fn from(v: Vec<&str>) -> Self {
        KeyParts(v.into_iter().map(str::to_owned).collect())
    }
}
impl From<&[&str]> for KeyParts {
    fn from(v: &[&str]) -> Self {
        KeyParts(v.iter().map(|s| (*s).to_owned()).collect())
    }
}
impl From<&[String]> for KeyParts {
    fn from(v: &[String]) -> Self {
        KeyParts(v.to_vec())
    }
}
impl<const N: usize> From<[&str; N]> for KeyParts {
    fn from(v: [&str; N]) -> Self {
        KeyParts(v.iter().map(|s| (*s).to_owned()).collect())
    }
}
impl<const N: usize> From<[String; N]> for KeyParts {
    fn from(v: [String; N]) -> Self {
        KeyParts(v.into())
    }
}

/// An idempotency key, reduced to its SHA-256 digest.
///
/// The digest covers an unambiguous, length-prefixed encoding of the scope,
/// the run context the scope asks for, and every part, so `["a-b"]` and
/// `["a", "b"]` are different keys, and so are the same parts under
/// different runs.
///
/// ```
/// use runonce::{IdempotencyKey, Scope};
/// let joined = IdempotencyKey::create("a-b", Scope::Global)?;
/// let split = IdempotencyKey::create(["a", "b"], Scope::Global)?;
/// assert_ne!(joined, split);
/// assert_eq!(joined.to_hex().len(), 64);
/// // An already-computed digest is passed explicitly, never guessed.
/// assert_eq!(IdempotencyKey::from_digest(&joined.to_hex())?, joined);
/// # Ok::<(), runonce::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdempotencyKey([u8; 32]);

const DOMAIN: &[u8] = b"runonce.key.v1\0";

fn put_bytes(h: &mut Sha256, b: &[u8]) {
    h.update((b.len() as u64).to_be_bytes());
    h.update(b);
}

impl IdempotencyKey {
    /// A key from `parts` under `scope`, reading the run context installed
    /// with [`RunContext::scope`] for `Run` and `Attempt`.
    ///
    /// Errors: [`Error::InvalidKey`] for no parts, an empty part, more than
    /// 2048 bytes in all or a NUL byte; [`Error::MissingRunContext`] for
    /// `Run`/`Attempt` outside a run (never a silent fallback to `Global`).
    ///
    /// ```
    /// use runonce::{Error, IdempotencyKey, Scope};
    /// let k = IdempotencyKey::create(["user-42", "welcome"], Scope::Global)?;
    /// assert!(matches!(
    ///     IdempotencyKey::create("x", Scope::Run),
    ///     Err(Error::MissingRunContext { .. })
    /// ));
    /// # Ok::<(), runonce::Error>(())
    /// ```
    pub fn create(parts: impl Into<KeyParts>, scope: Scope) -> Result<Self, Error> {
        let ctx = match scope {
            Scope::Global => None,
            _ => Some(RunContext::current().ok_or(Error::MissingRunContext {
                scope: scope.name(),
            })?),
        };
        Self::build(&parts.into(), scope, ctx.as_ref())
    }

    /// A key from `parts` under `scope`, with the run context passed
    /// explicitly instead of read from the task-local.
    ///
    /// ```
    /// use runonce::{IdempotencyKey, RunContext, Scope};
    /// let ctx = RunContext::new("run_1", 1);
    /// let k = IdempotencyKey::create_in("x", Scope::Attempt, &ctx)?;
    /// assert_ne!(k, IdempotencyKey::create("x", Scope::Global)?);
    /// # Ok::<(), runonce::Error>(())
    /// ```
    pub fn create_in(
        parts: impl Into<KeyParts>,
        scope: Scope,
        ctx: &RunContext,
    ) -> Result<Self, Error> {
        Self::build(&parts.into(), scope, Some(ctx))
    }

    /// A raw string key: scoped like `create(key, Scope::Run)` inside a run
    /// (a context installed with [`RunContext::scope`]) and like
    /// `create(key, Scope::Global)` outside one.
    ///
    /// ```
    /// use runonce::{IdempotencyKey, RunContext, Scope};
    /// assert_eq!(IdempotencyKey::raw("k")?, IdempotencyKey::create("k", Scope::Global)?);
    /// let inside = RunContext::new("run_1", 1).sync_scope(|| IdempotencyKey::raw("k"))?;
    /// assert_eq!(inside, IdempotencyKey::create_in("k", Scope::Run, &RunContext::new("run_1", 1))?);
    /// # Ok::<(), runonce::Error>(())
    /// ```
    pub fn raw(key: &str) -> Result<Self, Error> {
        Self::raw_in(key, RunContext::current().as_ref())
    }

    pub(crate) fn raw_in(key: &str, ctx: Option<&RunContext>) -> Result<Self, Error> {
        match ctx {
            Some(c) => Self::build(&KeyParts::from(key), Scope::Run, Some(c)),
            None => Self::build(&KeyParts::from(key), Scope::Global, None),
        }
    }

    /// An already-computed digest: exactly 64 hex characters (any case).
    ///
    /// ```
    /// use runonce::IdempotencyKey;
    /// assert!(IdempotencyKey::from_digest(&"ab".repeat(32)).is_ok());
    /// assert!(IdempotencyKey::from_digest("abc").is_err());
    /// ```
    pub fn from_digest(hex: &str) -> Result<Self, Error> {
        let bad = |reason: &str| Error::InvalidKey {
            value: shorten(hex),
            reason: reason.to_owned(),
        };
        if hex.len() != 64 {
            return Err(bad("a digest must be exactly 64 hex characters"));
        }
        let mut out = [0u8; 32];
        for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
            let hi = hex_val(pair[0]).ok_or_else(|| bad("not a hex digest"))?;
            let lo = hex_val(pair[1]).ok_or_else(|| bad("not a hex digest"))?;
            out[i] = (hi << 4) | lo;
        }
        Ok(IdempotencyKey(out))
    }

    /// A global key from a payload: SHA-256 over its RFC 8785 (JCS)
    /// canonical JSON, so logically equal payloads give equal keys whatever
    /// their field order or number spelling.
    ///
    /// ```
    /// use runonce::IdempotencyKey;
    /// use serde_json::json;
    /// let a = IdempotencyKey::from_payload(&json!({"to": "a@b.c", "n": 1.0}))?;
    /// let b = IdempotencyKey::from_payload(&json!({"n": 1, "to": "a@b.c"}))?;
    /// assert_eq!(a, b);
    /// # Ok::<(), runonce::Error>(())
    /// ```
    pub fn from_payload<T: Serialize + ?Sized>(payload: &T) -> Result<Self, Error> {
        let canonical = canonical_json(payload)?;
        let mut h = Sha256::new();
        h.update(DOMAIN);
        h.update(b"P");
        put_bytes(&mut h, &canonical);
        Ok(IdempotencyKey(h.finalize().into()))
    }

    /// The 32 digest bytes.
    pub fn digest(&self) -> &[u8; 32] {
        &self.0
    }

    /// The digest as 64 lowercase hex characters.
    pub fn to_hex(&self) -> String {
        to_hex(&self.0)
    }

    fn build(parts: &KeyParts, scope: Scope, ctx: Option<&RunContext>) -> Result<Self, Error> {
        check_parts(parts)?;
        let mut h = Sha256::new();
        h.update(DOMAIN);
        match (scope, ctx) {
            (Scope::Global, _) => h.update(b"G"),
            (Scope::Run, Some(c)) => {
                check_run_id(c.run_id())?;
                h.update(b"R");
                put_bytes(&mut h, c.run_id().as_bytes());
            }
            (Scope::Attempt, Some(c)) => {
                check_run_id(c.run_id())?;
                h.update(b"A");
                put_bytes(&mut h, c.run_id().as_bytes());
                h.update(c.attempt().to_be_bytes());
            }
            (s, None) => return Err(Error::MissingRunContext { scope: s.name() }),
        }
        h.update((parts.0.len() as u64).to_be_bytes());
        for p in &parts.0 {
            put_bytes(&mut h, p.as_bytes());
        }
        Ok(IdempotencyKey(h.finalize().into()))
    }
}

fn check_parts(parts: &KeyParts) -> Result<(), Error> {
    let shown = || shorten(&parts.0.join(", "));
    let bad = |reason: String| Error::InvalidKey {
        value: shown(),
        reason,
    };
    if parts.0.is_empty() {
        return Err(bad(
            "a key needs at least one part (the key is empty)".into()
        ));
    }
    let mut total = 0usize;
    for (i, p) in parts.0.iter().enumerate() {
        if p.is_empty() {
            return Err(bad(if parts.0.len() == 1 {
                "the key is empty".into()
            } else {
                format!("part {i} is empty")
            }));
        }
        if p.contains('\0') {
            return Err(bad(format!("part {i} contains a NUL byte")));
        }
        total += p.len();
    }
    if total > MAX_KEY_BYTES {
        return Err(bad(format!(
            "the key is {total} bytes, over the {MAX_KEY_BYTES}-byte limit"
        )));
    }
    Ok(())
}

/// Checks a run ID (minted, candidate or from a run context).
pub(crate) fn check_run_id(run_id: &str) -> Result<(), Error> {
    if run_id.is_empty() {
        return Err(invalid_input("run ID", run_id, "must not be empty"));
    }
    if run_id.len() > 256 {
        return Err(invalid_input("run ID", run_id, "must be at most 256 bytes"));
    }
    if run_id.chars().any(char::is_control) {
        return Err(invalid_input(
            "run ID",
            run_id,
            "must not contain control characters",
        ));
    }
    Ok(())
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdempotencyKey({})", self.to_hex())
    }
}

/// How an operation names its key: a ready [`IdempotencyKey`], or a raw
/// string resolved when the call runs (see [`IdempotencyKey::raw`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeySpec {
    /// A key already built.
    Key(IdempotencyKey),
    /// A raw string: `Run` scope inside a run, `Global` outside one.
    Raw(String),
}

impl KeySpec {
    pub(crate) fn resolve(&self, ctx: Option<&RunContext>) -> Result<IdempotencyKey, Error> {
        match self {
            KeySpec::Key(k) => Ok(*k),
            KeySpec::Raw(s) => match ctx {
                Some(c) => IdempotencyKey::raw_in(s, Some(c)),
                None => IdempotencyKey::raw(s),
            },
        }
    }
}

impl From<IdempotencyKey> for KeySpec {
    fn from(k: IdempotencyKey) -> Self {
        KeySpec::Key(k)
    }
}
impl From<&IdempotencyKey> for KeySpec {
    fn from(k: &IdempotencyKey) -> Self {
        KeySpec::Key(*k)
    }
}
impl From<&str> for KeySpec {
    fn from(s: &str) -> Self {
        KeySpec::Raw(s.to_owned())
    }
}
impl From<String> for KeySpec {
    fn from(s: String) -> Self {
        KeySpec::Raw(s)
    }
}
impl From<&String> for KeySpec {
    fn from(s: &String) -> Self {
        KeySpec::Raw(s.clone())
    }
}

/// RFC 8785 (JCS) canonical JSON of a payload.
pub(crate) fn canonical_json<T: Serialize + ?Sized>(payload: &T) -> Result<Vec<u8>, Error> {
    // Straight to the JCS serializer: going through `serde_json::Value`
    // would turn NaN into `null` and make it collide with a real null.
    serde_jcs::to_vec(payload).map_err(|e| Error::InvalidPayload {
        reason: e.to_string(),
    })
}

/// SHA-256 of a payload's canonical JSON: what a record stores to detect a
/// retrigger with a different payload.
pub(crate) fn fingerprint<T: Serialize + ?Sized>(payload: &T) -> Result<[u8; 32], Error> {
    Ok(Sha256::digest(canonical_json(payload)?).into())
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert!(IdempotencyKey::create("a".repeat(2048), Scope::Global).is_ok());
        let e = IdempotencyKey::create("a".repeat(2049), Scope::Global).unwrap_err();
        assert!(e.to_string().contains("2049 bytes"), "{e}");
        assert!(IdempotencyKey::create(["a", ""], Scope::Global).is_err());
        assert!(IdempotencyKey::create(Vec::<String>::new(), Scope::Global).is_err());
        assert!(IdempotencyKey::create("a\0b", Scope::Global).is_err());
    }

    #[test]
    fn hex_round_trip() {
        let k = IdempotencyKey::create("x", Scope::Global).unwrap();
        assert_eq!(IdempotencyKey::from_digest(&k.to_hex()).unwrap(), k);
        assert_eq!(
            IdempotencyKey::from_digest(&k.to_hex().to_uppercase()).unwrap(),
            k
        );
    }
}
