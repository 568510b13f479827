//! What callers pass in and get back: trigger options, answers, records.

use serde::{Serialize, Serializer};

use crate::context::RunContext;
use crate::key::{fingerprint, IdempotencyKey, KeySpec};
use crate::ttl::Ttl;

/// What to do when a key is retriggered with a different payload.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MismatchPolicy {
    /// Fail with [`Error::PayloadMismatch`](crate::Error::PayloadMismatch),
    /// naming the owning run. The default.
    #[default]
    Error,
    /// Answer with the existing run (`cached: true`) as if the payloads
    /// matched.
    ReturnExisting,
}

/// What a key is scoped to: a task (the default) or a shared key group.
///
/// Keys of different tasks never collide; keys in one group dedupe against
/// each other whatever task triggered them. Both stay isolated per
/// environment. `&str` and `String` convert to [`Namespace::Task`].
///
/// ```
/// use runonce::Namespace;
/// assert_eq!(Namespace::from("send-email"), Namespace::Task("send-email".into()));
/// assert_eq!(Namespace::group("emails"), Namespace::Group("emails".into()));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Namespace {
    /// Scoped to one task.
    Task(String),
    /// Scoped to a shared key group.
    Group(String),
}

impl Namespace {
    /// A task namespace.
    pub fn task(name: impl Into<String>) -> Self {
        Namespace::Task(name.into())
    }
    /// A shared key group.
    pub fn group(name: impl Into<String>) -> Self {
        Namespace::Group(name.into())
    }
}

impl From<&str> for Namespace {
    fn from(s: &str) -> Self {
        Namespace::Task(s.to_owned())
    }
}
impl From<String> for Namespace {
    fn from(s: String) -> Self {
        Namespace::Task(s)
    }
}
impl From<&String> for Namespace {
    fn from(s: &String) -> Self {
        Namespace::Task(s.clone())
    }
}
impl From<&Namespace> for Namespace {
    fn from(n: &Namespace) -> Self {
        n.clone()
    }
}

/// Options of one trigger. Every field is optional.
///
/// ```
/// use runonce::{IdempotencyKey, MismatchPolicy, Scope, TriggerOptions};
/// let opts = TriggerOptions::new()
///     .key(IdempotencyKey::create(["user-42", "welcome"], Scope::Global)?)
///     .ttl("1h".parse::<runonce::Ttl>()?)
///     .payload(&serde_json::json!({"to": "a@b.c"}))
///     .on_mismatch(MismatchPolicy::ReturnExisting)
///     .group("emails");
/// # Ok::<(), runonce::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct TriggerOptions {
    pub(crate) key: Option<KeySpec>,
    pub(crate) ttl: Option<Ttl>,
    pub(crate) fingerprint: Option<Result<[u8; 32], String>>,
    pub(crate) run_id: Option<String>,
    pub(crate) on_mismatch: MismatchPolicy,
    pub(crate) group: Option<String>,
    pub(crate) run_context: Option<RunContext>,
}

impl TriggerOptions {
    /// No key: the trigger is always a new run and the backend is not
    /// touched.
    pub fn new() -> Self {
        Self::default()
    }

    /// Options with just an idempotency key.
    ///
    /// ```
    /// let opts = runonce::TriggerOptions::with_key("order-7");
    /// ```
    pub fn with_key(key: impl Into<KeySpec>) -> Self {
        Self::default().key(key)
    }

    /// The idempotency key: an [`IdempotencyKey`] or a raw string (scoped
    /// `Run` inside a run, `Global` outside one). Defaults to none.
    #[must_use]
    pub fn key(mut self, key: impl Into<KeySpec>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// The dedupe window of a new record. Ignored when the key already has
    /// a live record. Defaults to the handle's default TTL (30 days unless
    /// configured).
    #[must_use]
    pub fn ttl(mut self, ttl: impl Into<Ttl>) -> Self {
        self.ttl = Some(ttl.into());
        self
    }

    /// The payload, fingerprinted (SHA-256 of its RFC 8785 canonical JSON)
    /// and stored with the record. A later trigger of the same key with a
    /// different payload follows the mismatch policy. Defaults to none. A
    /// payload that cannot be serialized fails the trigger with
    /// [`Error::InvalidPayload`](crate::Error::InvalidPayload).
    #[must_use]
    pub fn payload<T: Serialize + ?Sized>(mut self, payload: &T) -> Self {
        self.fingerprint = Some(fingerprint(payload).map_err(|e| e.to_string()));
        self
    }

    /// The candidate run ID. Defaults to a freshly minted `run_…` ID.
    ///
    /// Pass the same candidate when retrying a call whose reply was lost:
    /// the claim is re-entrant, so the retry answers `cached: false` if the
    /// first call made the claim.
    #[must_use]
    pub fn run_id(mut self, run_id: impl Into<String>) -> Self {
        self.run_id = Some(run_id.into());
        self
    }

    /// What a payload mismatch does. Defaults to [`MismatchPolicy::Error`].
    #[must_use]
    pub fn on_mismatch(mut self, policy: MismatchPolicy) -> Self {
        self.on_mismatch = policy;
        self
    }

    /// Scope the key to a shared key group instead of the task, so triggers
    /// of different tasks dedupe against each other. Defaults to none.
    #[must_use]
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// The run context for raw string keys, instead of the task-local one.
    /// Defaults to the context installed with [`RunContext::scope`], if any.
    #[must_use]
    pub fn run_context(mut self, ctx: RunContext) -> Self {
        self.run_context = Some(ctx);
        self
    }

    pub(crate) fn namespace(&self, task: &str) -> Namespace {
        match &self.group {
            Some(g) => Namespace::Group(g.clone()),
            None => Namespace::Task(task.to_owned()),
        }
    }
}

/// The answer to a trigger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Triggered {
    /// The run that owns the key: the candidate when `cached` is false.
    pub run_id: String,
    /// True when an existing run answered; false when this call created the
    /// run (or re-entered its own claim with the same candidate).
    pub cached: bool,
    /// The key's digest, or `None` for a trigger without a key.
    #[serde(serialize_with = "ser_key")]
    pub key: Option<IdempotencyKey>,
    /// Time left on the dedupe window in ms, from the backend's clock.
    /// `None` for a trigger without a key.
    pub expires_in_ms: Option<u64>,
    /// Replica acknowledgements reached (`WAIT`) for the record this answer
    /// comes from, when the handle asks for durability
    /// ([`DedupeBuilder::min_replicas`](crate::DedupeBuilder::min_replicas)):
    /// for a new claim, its write; for a cached answer, the held record
    /// (re-written in place so the `WAIT` covers it). `None` without
    /// durability.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
}

/// What a claim that reached fewer replica acknowledgements than asked for
/// does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ShortfallPolicy {
    /// Fail with [`Error::ReplicaShortfall`](crate::Error::ReplicaShortfall).
    /// The claim stands on the primary; retrying with the same candidate
    /// run ID is safe. The default.
    #[default]
    Error,
    /// Answer normally and report the count in [`Triggered::replicas`].
    Report,
}

fn ser_key<S: Serializer>(k: &Option<IdempotencyKey>, s: S) -> Result<S::Ok, S::Error> {
    match k {
        Some(k) => s.serialize_str(&k.to_hex()),
        None => s.serialize_none(),
    }
}

/// The state of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum RecordState {
    /// Claimed by a run that has not completed.
    Running,
    /// The run succeeded; the key is kept until its TTL ends.
    Succeeded,
    /// The run was canceled; the key is kept until its TTL ends.
    Canceled,
    /// The run failed and the caller asked to keep the key
    /// ([`FailurePolicy::Keep`]).
    Failed,
}

impl RecordState {
    pub(crate) fn code(self) -> u8 {
        match self {
            RecordState::Running => b'R',
            RecordState::Succeeded => b'S',
            RecordState::Canceled => b'C',
            RecordState::Failed => b'F',
        }
    }

    /// The lowercase name, as in JSON.
    ///
    /// ```
    /// assert_eq!(runonce::RecordState::Running.as_str(), "running");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            RecordState::Running => "running",
            RecordState::Succeeded => "succeeded",
            RecordState::Canceled => "canceled",
            RecordState::Failed => "failed",
        }
    }
}

/// What a backend holds for one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Record {
    /// The run that owns the key.
    pub run_id: String,
    /// Its state.
    pub state: RecordState,
    /// Time left on the window in ms, from the backend's clock.
    pub expires_in_ms: u64,
    /// When the record was created, in ms since the Unix epoch, from the
    /// backend's clock (0 for a record without a TTL, which runonce never
    /// writes).
    pub created_at_ms: u64,
    /// Whether a payload fingerprint is stored.
    pub has_fingerprint: bool,
    /// The payload fingerprint, if any: hex of the first 8 bytes of the
    /// SHA-256 of the payload's canonical JSON (16 characters).
    pub fingerprint: Option<String>,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// Keeps the key until its TTL ends.
    Succeeded,
    /// Releases the key (unless [`FailurePolicy::Keep`]), so the next
    /// trigger starts a new run. Use it for crashed, timed-out, expired and
    /// system failures too.
    Failed,
    /// Keeps the key until its TTL ends.
    Canceled,
}

impl std::str::FromStr for Outcome {
    type Err = crate::Error;

    /// Parses `succeeded`, `failed` or `canceled` (any case).
    fn from_str(s: &str) -> Result<Self, crate::Error> {
        match s.to_ascii_lowercase().as_str() {
            "succeeded" => Ok(Outcome::Succeeded),
            "failed" => Ok(Outcome::Failed),
            "canceled" | "cancelled" => Ok(Outcome::Canceled),
            _ => Err(crate::error::invalid_input(
                "outcome",
                s,
                "must be one of `succeeded`, `failed`, `canceled`",
            )),
        }
    }
}

/// What [`Outcome::Failed`] does to the key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailurePolicy {
    /// Release the key so the next trigger starts a new run. The default.
    #[default]
    Release,
    /// Keep the key (state `failed`) until its TTL ends.
    Keep,
}
