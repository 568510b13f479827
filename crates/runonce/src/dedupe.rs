//! The handle users hold: policy on top of a [`Store`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;

use sha2::{Digest, Sha256};

use crate::context::RunContext;
use crate::error::{check_name, Error};
use crate::key::{check_run_id, IdempotencyKey, KeySpec};
use crate::options::{
    FailurePolicy, MismatchPolicy, Namespace, Outcome, Record, RecordState, ShortfallPolicy,
    TriggerOptions, Triggered,
};
use crate::store::memory::MemoryStore;
use crate::store::redis::{RedisStore, Source, Wait};
use crate::store::{storage_key, Claim, ClaimReply, Store};
use crate::telemetry;
use crate::ttl::Ttl;

/// The dedupe authority: a cheap, clone-able handle over one store.
///
/// Build one per process with [`Dedupe::builder`] (Redis) or
/// [`Dedupe::in_memory`], and clone it into every task.
///
/// ```
/// use runonce::{Dedupe, IdempotencyKey, Outcome, Scope, TriggerOptions};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), runonce::Error> {
/// let dedupe = Dedupe::in_memory("dev");
/// let key = IdempotencyKey::create(["order-7", "receipt"], Scope::Global)?;
///
/// let first = dedupe.trigger("send-email", TriggerOptions::with_key(key)).await?;
/// let again = dedupe.trigger("send-email", TriggerOptions::with_key(key)).await?;
/// assert!(!first.cached && again.cached);
/// assert_eq!(first.run_id, again.run_id);
///
/// // A failed run releases the key: the next trigger starts a new run.
/// dedupe.complete("send-email", &key, &first.run_id, Outcome::Failed).await?;
/// let retry = dedupe.trigger("send-email", TriggerOptions::with_key(key)).await?;
/// assert!(!retry.cached && retry.run_id != first.run_id);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Dedupe {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn Store>,
    environment: String,
    prefix: String,
    default_ttl: Ttl,
    eviction_policy: Option<String>,
    durability: Option<Durability>,
}

#[derive(Debug, Clone, Copy)]
struct Durability {
    replicas: u32,
    timeout: Duration,
    on_shortfall: ShortfallPolicy,
}

/// A prepared trigger: validated input, ready to claim.
struct Prepared {
    run_id: String,
    /// `None` for a trigger without a key.
    keyed: Option<Keyed>,
}

struct Keyed {
    key: IdempotencyKey,
    storage_key: String,
    ttl_ms: u64,
    fingerprint: Option<[u8; 32]>,
    on_mismatch: MismatchPolicy,
}

/// Mints a run ID: `run_` and 21 lowercase Crockford base32 characters,
/// 10 of a millisecond timestamp (so IDs sort by creation time) and 11
/// random (55 bits). 25 characters in all, short enough that a record
/// stays in one small Redis allocation.
///
/// ```
/// let id = runonce::mint_run_id();
/// assert!(id.starts_with("run_") && id.len() == 25);
/// assert_ne!(id, runonce::mint_run_id());
/// ```
pub fn mint_run_id() -> String {
    let mut buf = [0u8; ulid::ULID_LEN];
    let ulid = ulid::Ulid::new().array_to_str(&mut buf);
    ulid.make_ascii_lowercase();
    let mut s = String::with_capacity(25);
    s.push_str("run_");
    s.push_str(&ulid[..21]);
    s
}

impl Dedupe {
    /// A builder for a Redis-backed handle.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), runonce::Error> {
    /// let dedupe = runonce::Dedupe::builder()
    ///     .redis_url("redis://127.0.0.1:6379")
    ///     .environment("prod")
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn builder() -> DedupeBuilder {
        DedupeBuilder::default()
    }

    /// A handle over a fresh in-process store, with the same semantics as
    /// Redis: for unit tests and single-process use. Clones share the store.
    ///
    /// ```
    /// let d = runonce::Dedupe::in_memory("test");
    /// assert_eq!(d.environment(), "test");
    /// ```
    pub fn in_memory(environment: impl Into<String>) -> Dedupe {
        Dedupe::with_store(Arc::new(MemoryStore::new()), environment)
    }

    /// A handle over any [`Store`], with the default prefix and TTL.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let d = runonce::Dedupe::with_store(Arc::new(runonce::store::memory::MemoryStore::new()), "dev");
    /// ```
    pub fn with_store(store: Arc<dyn Store>, environment: impl Into<String>) -> Dedupe {
        Dedupe {
            inner: Arc::new(Inner {
                store,
                environment: environment.into(),
                prefix: DEFAULT_PREFIX.to_owned(),
                default_ttl: Ttl::default(),
                eviction_policy: None,
                durability: None,
            }),
        }
    }

    /// The environment keys are isolated in.
    pub fn environment(&self) -> &str {
        &self.inner.environment
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The TTL of triggers that set none.
    pub fn default_ttl(&self) -> Ttl {
        self.inner.default_ttl
    }

    /// The server's `maxmemory-policy` as read at build time, if it could
    /// be read.
    pub fn eviction_policy(&self) -> Option<&str> {
        self.inner.eviction_policy.as_deref()
    }

    /// The store, e.g. to share it with another handle.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The Redis key that holds the record of `key` in `namespace`.
    ///
    /// ```
    /// use runonce::{Dedupe, IdempotencyKey, Scope};
    /// let d = Dedupe::in_memory("dev");
    /// let k = IdempotencyKey::create("x", Scope::Global)?;
    /// assert!(d.storage_key("send-email", &k).starts_with("runonce:dev:t:send-email:{"));
    /// # Ok::<(), runonce::Error>(())
    /// ```
    pub fn storage_key(&self, namespace: impl Into<Namespace>, key: &IdempotencyKey) -> String {
        storage_key(
            &self.inner.prefix,
            &self.inner.environment,
            &namespace.into(),
            key,
        )
    }

    fn check_namespace(&self, ns: &Namespace) -> Result<(), Error> {
        check_name("environment", &self.inner.environment)?;
        check_name("prefix", &self.inner.prefix)?;
        match ns {
            Namespace::Task(t) => check_name("task", t),
            Namespace::Group(g) => check_name("group", g),
        }
    }

    fn prepare(&self, task: &str, opts: TriggerOptions) -> Result<Prepared, Error> {
        check_name("task", task)?;
        let ns = opts.namespace(task);
        self.check_namespace(&ns)?;
        let run_id = match opts.run_id {
            Some(r) => {
                check_run_id(&r)?;
                r
            }
            None => mint_run_id(),
        };
        let Some(spec) = &opts.key else {
            // A trigger without a key is always a new run; still check what
            // the caller passed so bad input is never silently ignored.
            if let Some(t) = opts.ttl {
                t.as_millis()?;
            }
            if let Some(Err(reason)) = opts.fingerprint {
                return Err(Error::InvalidPayload { reason });
            }
            return Ok(Prepared {
                run_id,
                keyed: None,
            });
        };
        let ctx = opts.run_context.clone().or_else(RunContext::current);
        let key = spec.resolve(ctx.as_ref())?;
        let ttl_ms = opts.ttl.unwrap_or(self.inner.default_ttl).as_millis()?;
        let fingerprint = match opts.fingerprint {
            None => None,
            Some(Ok(f)) => Some(f),
            Some(Err(reason)) => return Err(Error::InvalidPayload { reason }),
        };
        Ok(Prepared {
            run_id,
            keyed: Some(Keyed {
                storage_key: storage_key(&self.inner.prefix, &self.inner.environment, &ns, &key),
                key,
                ttl_ms,
                fingerprint,
                on_mismatch: opts.on_mismatch,
            }),
        })
    }

    /// Checks `opts` for `task` exactly as [`Dedupe::trigger`] would, without
    /// touching the backend: `Ok` means a trigger will not fail on its
    /// input. Useful to reject bad input before connecting.
    ///
    /// ```
    /// use runonce::{Dedupe, TriggerOptions};
    /// let d = Dedupe::in_memory("dev");
    /// assert!(d.validate("t", &TriggerOptions::with_key("k")).is_ok());
    /// assert!(d.validate("t", &TriggerOptions::with_key("")).is_err());
    /// assert!(d.validate("", &TriggerOptions::new()).is_err());
    /// ```
    pub fn validate(&self, task: &str, opts: &TriggerOptions) -> Result<(), Error> {
        self.prepare(task, opts.clone()).map(|_| ())
    }

    /// Applies the shortfall policy when a claim's `WAIT` reached fewer
    /// replicas than durability asks for; `run_id` is the record's owner.
    fn check_replicas(&self, run_id: &str, replicas: Option<u32>) -> Result<(), Error> {
        let (Some(reached), Some(d)) = (replicas, &self.inner.durability) else {
            return Ok(());
        };
        if reached >= d.replicas {
            return Ok(());
        }
        tracing::warn!(
            addr = %self.inner.store.addr(),
            run_id,
            wanted = d.replicas,
            reached,
            "durability shortfall: the record is on the primary but not on enough replicas"
        );
        if d.on_shortfall == ShortfallPolicy::Error {
            return Err(Error::ReplicaShortfall {
                addr: self.inner.store.addr().to_owned(),
                run_id: run_id.to_owned(),
                wanted: d.replicas,
                reached,
            });
        }
        Ok(())
    }

    /// Turns the store's reply into the caller's answer.
    /// `run_id` is the caller's candidate.
    fn answer(&self, run_id: String, k: &Keyed, reply: ClaimReply) -> Result<Triggered, Error> {
        match reply {
            ClaimReply::Created {
                expires_in_ms,
                replicas,
            } => {
                self.check_replicas(&run_id, replicas)?;
                Ok(Triggered {
                    run_id,
                    cached: false,
                    key: Some(k.key),
                    expires_in_ms: Some(expires_in_ms),
                    replicas,
                })
            }
            ClaimReply::Refused(e) => Err(e),
            ClaimReply::Existing {
                record: rec,
                replicas,
            } => {
                let mismatch = match (&k.fingerprint, &rec.fingerprint) {
                    (Some(mine), Some(theirs)) => crate::store::fingerprint_hex(mine) != *theirs,
                    _ => false,
                };
                if mismatch && k.on_mismatch == MismatchPolicy::Error {
                    return Err(Error::PayloadMismatch {
                        owner_run_id: rec.run_id,
                        key: k.key.to_hex(),
                    });
                }
                // An answer from a record the replicas may not hold yet (its
                // claim's WAIT fell short) could be lost in a failover.
                self.check_replicas(&rec.run_id, replicas)?;
                // Re-entrant: the caller's own claim (a retry after a lost
                // reply) answers as new again.
                let cached = rec.run_id != run_id;
                Ok(Triggered {
                    run_id: rec.run_id,
                    cached,
                    key: Some(k.key),
                    expires_in_ms: Some(rec.expires_in_ms),
                    replicas,
                })
            }
        }
    }

    /// Triggers `task`: claims the options' idempotency key for a new run,
    /// or answers with the run that already owns it.
    ///
    /// - No live record: the record is created atomically with the
    ///   candidate run ID and the TTL; `cached: false`.
    /// - A live record: `cached: true` with the owner's run ID; its TTL is
    ///   not extended and this call's TTL is ignored.
    /// - The live record's owner is this call's candidate (a retry after a
    ///   lost reply): `cached: false` again.
    /// - No key: a new run, and the backend is not touched.
    ///
    /// Any number of concurrent callers of one key get exactly one
    /// `cached: false` between them, and the same run ID.
    ///
    /// Errors: input errors before anything is written;
    /// [`Error::PayloadMismatch`] under [`MismatchPolicy::Error`]; backend
    /// errors, after which the outcome is unknown (retry with the same
    /// candidate run ID).
    ///
    /// ```
    /// use runonce::{Dedupe, TriggerOptions};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), runonce::Error> {
    /// let d = Dedupe::in_memory("dev");
    /// let t = d.trigger("report", TriggerOptions::with_key("2026-12-04").ttl("1h".parse::<runonce::Ttl>()?)).await?;
    /// assert!(!t.cached);
    /// assert!(t.expires_in_ms.unwrap() <= 3_600_000);
    /// # Ok(()) }
    /// ```
    pub async fn trigger(&self, task: &str, opts: TriggerOptions) -> Result<Triggered, Error> {
        let start = Instant::now();
        let span = match &opts.group {
            Some(g) => telemetry::span_named("trigger", "group", g),
            None => telemetry::span_named("trigger", "task", task),
        };
        let mut round_trips = 0;
        let result = self
            .trigger_inner(task, opts, &mut round_trips)
            .instrument(span.clone())
            .await;
        let outcome = telemetry::trigger_outcome(&result);
        // Formatting the digest costs an allocation: only for a live span.
        let key = match &result {
            _ if span.is_disabled() => None,
            Ok(t) => t.key.map(|k| k.to_hex()),
            Err(Error::PayloadMismatch { key, .. }) => Some(key.clone()),
            Err(_) => None,
        };
        // One clock read for the span and the histogram.
        let latency = start.elapsed();
        telemetry::close(&span, outcome, key.as_deref(), round_trips, latency);
        metrics::counter!(telemetry::TRIGGERS_TOTAL, "task" => task.to_owned(), "outcome" => outcome)
            .increment(1);
        metrics::histogram!(telemetry::TRIGGER_SECONDS).record(latency.as_secs_f64());
        result
    }

    /// Round trips one claim call costs: one, plus `WAIT` with durability.
    fn claim_round_trips(&self) -> u32 {
        1 + u32::from(self.inner.durability.is_some())
    }

    async fn trigger_inner(
        &self,
        task: &str,
        opts: TriggerOptions,
        round_trips: &mut u32,
    ) -> Result<Triggered, Error> {
        let mut p = self.prepare(task, opts)?;
        let Some(k) = p.keyed.as_mut() else {
            return Ok(Triggered {
                run_id: p.run_id,
                cached: false,
                key: None,
                expires_in_ms: None,
                replicas: None,
            });
        };
        // The storage key is not needed after the claim, and the run ID
        // comes back out of it: move both.
        let mut claim = [Claim::new(
            std::mem::take(&mut k.storage_key),
            std::mem::take(&mut p.run_id),
            k.ttl_ms,
            k.fingerprint,
        )];
        *round_trips = self.claim_round_trips();
        let reply = self
            .inner
            .store
            .claim(&claim)
            .await?
            .pop()
            .ok_or_else(|| Error::Backend {
                addr: self.inner.store.addr().to_owned(),
                message: "empty reply to claim".into(),
            })?;
        let k = p.keyed.as_ref().expect("keyed above");
        self.answer(std::mem::take(&mut claim[0].run_id), k, reply)
    }

    /// Triggers many items in one round trip per backend node, answering
    /// one result per item, in input order.
    ///
    /// - Items that repeat a key inside the batch get the first item's run
    ///   (`cached: true`).
    /// - Items without a key are always new runs.
    /// - A bad item (bad key, TTL, payload mismatch) fails alone.
    ///
    /// The outer `Err` is a backend failure: then no item's outcome is
    /// known, and the whole batch may be retried with the same candidate
    /// run IDs.
    ///
    /// ```
    /// use runonce::{Dedupe, TriggerOptions};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), runonce::Error> {
    /// let d = Dedupe::in_memory("dev");
    /// let out = d.batch_trigger("t", vec![
    ///     TriggerOptions::with_key("a"),
    ///     TriggerOptions::with_key("a"),
    ///     TriggerOptions::with_key(""),
    ///     TriggerOptions::new(),
    /// ]).await?;
    /// let a = out[0].as_ref().unwrap();
    /// assert_eq!(out[1].as_ref().unwrap().run_id, a.run_id);
    /// assert!(out[2].is_err());
    /// assert!(out[3].as_ref().unwrap().key.is_none());
    /// # Ok(()) }
    /// ```
    pub async fn batch_trigger(
        &self,
        task: &str,
        items: Vec<TriggerOptions>,
    ) -> Result<Vec<Result<Triggered, Error>>, Error> {
        self.batch(task, None, items).await
    }

    /// Like [`Dedupe::batch_trigger`], with a batch-level key: every item
    /// without its own key gets a key derived from (batch key, item index),
    /// so replaying the batch returns the same runs.
    ///
    /// ```
    /// use runonce::{Dedupe, TriggerOptions};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), runonce::Error> {
    /// let d = Dedupe::in_memory("dev");
    /// let items = || vec![TriggerOptions::new(), TriggerOptions::new()];
    /// let first = d.batch_trigger_with_key("t", "nightly-2026-12-04", items()).await?;
    /// let replay = d.batch_trigger_with_key("t", "nightly-2026-12-04", items()).await?;
    /// assert_eq!(first[1].as_ref().unwrap().run_id, replay[1].as_ref().unwrap().run_id);
    /// assert!(replay[1].as_ref().unwrap().cached);
    /// # Ok(()) }
    /// ```
    pub async fn batch_trigger_with_key(
        &self,
        task: &str,
        batch_key: impl Into<KeySpec>,
        items: Vec<TriggerOptions>,
    ) -> Result<Vec<Result<Triggered, Error>>, Error> {
        let batch_key = batch_key.into().resolve(RunContext::current().as_ref())?;
        self.batch(task, Some(batch_key), items).await
    }

    async fn batch(
        &self,
        task: &str,
        batch_key: Option<IdempotencyKey>,
        items: Vec<TriggerOptions>,
    ) -> Result<Vec<Result<Triggered, Error>>, Error> {
        let start = Instant::now();
        let span = telemetry::span_named("batch_trigger", "task", task);
        let mut round_trips = 0;
        let result = self
            .batch_inner(task, batch_key, items, &mut round_trips)
            .instrument(span.clone())
            .await;
        let outcome = match &result {
            Ok(items) => {
                // Counted per outcome, then one increment per outcome seen:
                // a label set per item would cost two allocations each.
                let mut counts = [0u64; telemetry::TRIGGER_OUTCOMES.len()];
                for item in items {
                    counts[telemetry::trigger_outcome_index(item)] += 1;
                }
                for (o, n) in telemetry::TRIGGER_OUTCOMES.into_iter().zip(counts) {
                    if n > 0 {
                        metrics::counter!(telemetry::TRIGGERS_TOTAL, "task" => task.to_owned(), "outcome" => o)
                            .increment(n);
                        metrics::counter!(telemetry::BATCH_ITEMS_TOTAL, "task" => task.to_owned(), "outcome" => o)
                            .increment(n);
                    }
                }
                "completed"
            }
            Err(_) => "error",
        };
        let latency = start.elapsed();
        telemetry::close(&span, outcome, None, round_trips, latency);
        metrics::histogram!(telemetry::BATCH_SECONDS).record(latency.as_secs_f64());
        result
    }

    async fn batch_inner(
        &self,
        task: &str,
        batch_key: Option<IdempotencyKey>,
        items: Vec<TriggerOptions>,
        round_trips: &mut u32,
    ) -> Result<Vec<Result<Triggered, Error>>, Error> {
        let prepared: Vec<Result<Prepared, Error>> = items
            .into_iter()
            .enumerate()
            .map(|(i, mut opts)| {
                if let (Some(b), None) = (&batch_key, &opts.key) {
                    opts.key = Some(KeySpec::Key(derive_item_key(b, i)));
                }
                self.prepare(task, opts)
            })
            .collect();

        // One claim per distinct storage key; later repeats point at the
        // first item's claim.
        let mut claims: Vec<Claim> = Vec::new();
        // foldhash, not SipHash: the keys end in a SHA-256 digest, and this
        // map lives for one call.
        let mut first: HashMap<&str, usize, foldhash::fast::RandomState> =
            HashMap::with_capacity_and_hasher(prepared.len(), Default::default());
        let mut slot: Vec<Option<(usize, bool)>> = Vec::with_capacity(prepared.len());
        for p in &prepared {
            let Ok(Prepared {
                run_id,
                keyed: Some(k),
            }) = p
            else {
                slot.push(None);
                continue;
            };
            match first.get(k.storage_key.as_str()) {
                Some(&c) => slot.push(Some((c, true))),
                None => {
                    first.insert(&k.storage_key, claims.len());
                    slot.push(Some((claims.len(), false)));
                    claims.push(Claim::new(
                        k.storage_key.clone(),
                        run_id.clone(),
                        k.ttl_ms,
                        k.fingerprint,
                    ));
                }
            }
        }
        let replies = if claims.is_empty() {
            Vec::new()
        } else {
            *round_trips = self.claim_round_trips();
            self.inner.store.claim(&claims).await?
        };
        if replies.len() != claims.len() {
            return Err(Error::Backend {
                addr: self.inner.store.addr().to_owned(),
                message: format!(
                    "claim answered {} items for {} keys",
                    replies.len(),
                    claims.len()
                ),
            });
        }

        Ok(prepared
            .into_iter()
            .zip(slot)
            .map(|(p, slot)| {
                let p = p?;
                let (Some(k), Some((c, repeat))) = (&p.keyed, slot) else {
                    return Ok(Triggered {
                        run_id: p.run_id,
                        cached: false,
                        key: None,
                        expires_in_ms: None,
                        replicas: None,
                    });
                };
                let reply = match (&replies[c], repeat) {
                    // A repeat of a key that the first item just created sees
                    // the first item's record.
                    (
                        ClaimReply::Created {
                            expires_in_ms,
                            replicas,
                        },
                        true,
                    ) => ClaimReply::Existing {
                        record: Record {
                            run_id: claims[c].run_id.clone(),
                            state: RecordState::Running,
                            expires_in_ms: *expires_in_ms,
                            created_at_ms: 0,
                            has_fingerprint: claims[c].fingerprint.is_some(),
                            fingerprint: claims[c]
                                .fingerprint
                                .as_ref()
                                .map(crate::store::fingerprint_hex),
                        },
                        replicas: *replicas,
                    },
                    (r, _) => r.clone(),
                };
                self.answer(p.run_id, k, reply)
            })
            .collect())
    }

    fn resolve(&self, ns: &Namespace, key: KeySpec) -> Result<(String, String), Error> {
        self.check_namespace(ns)?;
        let key = key.resolve(RunContext::current().as_ref())?;
        Ok((
            storage_key(&self.inner.prefix, &self.inner.environment, ns, &key),
            key.to_hex(),
        ))
    }

    /// Runs one non-trigger call in its span: `f` gets the storage key and
    /// answers; `outcome` names what happened.
    async fn observed<T, F, Fut>(
        &self,
        operation: &'static str,
        ns: Namespace,
        key: KeySpec,
        outcome: fn(&T) -> &'static str,
        f: F,
    ) -> Result<T, Error>
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let start = Instant::now();
        let span = telemetry::span(operation, &ns);
        let resolved = self.resolve(&ns, key);
        let (result, hex) = match resolved {
            Ok((sk, hex)) => (f(sk).instrument(span.clone()).await, Some(hex)),
            Err(e) => (Err(e), None),
        };
        let (o, trips) = match &result {
            Ok(v) => (outcome(v), 1),
            Err(e) if e.is_invalid_input() => ("error", 0),
            Err(_) => ("error", 1),
        };
        telemetry::close(&span, o, hex.as_deref(), trips, start.elapsed());
        result
    }

    /// Records how the run that owns `key` ended. `Succeeded` and
    /// `Canceled` keep the key until its TTL ends; `Failed` releases it so
    /// the next trigger starts a new run. Only the owner run can do this
    /// (compare-and-set): a stale worker changes nothing. Answers whether
    /// the record changed.
    ///
    /// `namespace` is the task, or [`Namespace::group`] for a grouped key.
    ///
    /// ```
    /// use runonce::{Dedupe, Outcome, TriggerOptions};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), runonce::Error> {
    /// let d = Dedupe::in_memory("dev");
    /// let t = d.trigger("t", TriggerOptions::with_key("k")).await?;
    /// assert!(!d.complete("t", "k", "run_someone_else", Outcome::Failed).await?);
    /// assert!(d.complete("t", "k", &t.run_id, Outcome::Succeeded).await?);
    /// # Ok(()) }
    /// ```
    pub async fn complete(
        &self,
        namespace: impl Into<Namespace>,
        key: impl Into<KeySpec>,
        run_id: &str,
        outcome: Outcome,
    ) -> Result<bool, Error> {
        self.complete_with(namespace, key, run_id, outcome, FailurePolicy::default())
            .await
    }

    /// [`Dedupe::complete`] with a per-call policy for failures:
    /// [`FailurePolicy::Keep`] keeps the key (state `failed`) instead of
    /// releasing it.
    ///
    /// ```
    /// use runonce::{Dedupe, FailurePolicy, Outcome, RecordState, TriggerOptions};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), runonce::Error> {
    /// let d = Dedupe::in_memory("dev");
    /// let t = d.trigger("t", TriggerOptions::with_key("k")).await?;
    /// d.complete_with("t", "k", &t.run_id, Outcome::Failed, FailurePolicy::Keep).await?;
    /// assert_eq!(d.lookup("t", "k").await?.unwrap().state, RecordState::Failed);
    /// # Ok(()) }
    /// ```
    pub async fn complete_with(
        &self,
        namespace: impl Into<Namespace>,
        key: impl Into<KeySpec>,
        run_id: &str,
        outcome: Outcome,
        on_failure: FailurePolicy,
    ) -> Result<bool, Error> {
        let to = match (outcome, on_failure) {
            (Outcome::Succeeded, _) => Some(RecordState::Succeeded),
            (Outcome::Canceled, _) => Some(RecordState::Canceled),
            (Outcome::Failed, FailurePolicy::Keep) => Some(RecordState::Failed),
            (Outcome::Failed, FailurePolicy::Release) => None,
        };
        self.finish("complete", namespace.into(), key.into(), run_id, to)
            .await
    }

    /// Compare-and-set (`to`) or compare-and-delete (`None`) of `key` by its
    /// owner `run_id`, observed as `operation`.
    async fn finish(
        &self,
        operation: &'static str,
        namespace: Namespace,
        key: KeySpec,
        run_id: &str,
        to: Option<RecordState>,
    ) -> Result<bool, Error> {
        let outcome: fn(&bool) -> &'static str = if to.is_none() {
            |changed| if *changed { "released" } else { "unchanged" }
        } else {
            |changed| if *changed { "completed" } else { "unchanged" }
        };
        self.observed(operation, namespace, key, outcome, |sk| async move {
            check_run_id(run_id)?;
            self.inner.store.finish(&sk, run_id, to).await
        })
        .await
    }

    /// Releases `key` if `run_id` owns it (compare-and-delete). Use it when
    /// the claim succeeded but enqueueing the run failed. Answers whether a
    /// record was deleted.
    ///
    /// ```
    /// use runonce::{Dedupe, TriggerOptions};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), runonce::Error> {
    /// let d = Dedupe::in_memory("dev");
    /// let t = d.trigger("t", TriggerOptions::with_key("k")).await?;
    /// assert!(d.release("t", "k", &t.run_id).await?);
    /// assert!(d.lookup("t", "k").await?.is_none());
    /// # Ok(()) }
    /// ```
    pub async fn release(
        &self,
        namespace: impl Into<Namespace>,
        key: impl Into<KeySpec>,
        run_id: &str,
    ) -> Result<bool, Error> {
        self.finish("release", namespace.into(), key.into(), run_id, None)
            .await
    }

    /// Deletes the record of `key` unconditionally; answers whether one
    /// existed.
    ///
    /// ```
    /// use runonce::{Dedupe, TriggerOptions};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), runonce::Error> {
    /// let d = Dedupe::in_memory("dev");
    /// d.trigger("t", TriggerOptions::with_key("k")).await?;
    /// assert!(d.reset("t", "k").await?);
    /// assert!(!d.reset("t", "k").await?);
    /// # Ok(()) }
    /// ```
    pub async fn reset(
        &self,
        namespace: impl Into<Namespace>,
        key: impl Into<KeySpec>,
    ) -> Result<bool, Error> {
        let outcome: fn(&bool) -> &'static str =
            |existed| if *existed { "reset" } else { "missing" };
        self.observed(
            "reset",
            namespace.into(),
            key.into(),
            outcome,
            |sk| async move { self.inner.store.reset(&sk).await },
        )
        .await
    }

    /// The live record of `key`: owner, state, time left, fingerprint.
    ///
    /// ```
    /// use runonce::{Dedupe, RecordState, TriggerOptions};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), runonce::Error> {
    /// let d = Dedupe::in_memory("dev");
    /// let t = d.trigger("t", TriggerOptions::with_key("k")).await?;
    /// let r = d.lookup("t", "k").await?.unwrap();
    /// assert_eq!((r.run_id, r.state), (t.run_id, RecordState::Running));
    /// # Ok(()) }
    /// ```
    pub async fn lookup(
        &self,
        namespace: impl Into<Namespace>,
        key: impl Into<KeySpec>,
    ) -> Result<Option<Record>, Error> {
        let outcome: fn(&Option<Record>) -> &'static str =
            |r| if r.is_some() { "found" } else { "missing" };
        self.observed(
            "lookup",
            namespace.into(),
            key.into(),
            outcome,
            |sk| async move { self.inner.store.lookup(&sk).await },
        )
        .await
    }
}

/// The key of item `index` of a batch keyed `batch`.
fn derive_item_key(batch: &IdempotencyKey, index: usize) -> IdempotencyKey {
    let mut h = Sha256::new();
    h.update(b"runonce.batch-item.v1\0");
    h.update(batch.digest());
    h.update((index as u64).to_be_bytes());
    let digest: [u8; 32] = h.finalize().into();
    IdempotencyKey::from_digest(&crate::key::to_hex(&digest)).expect("64 hex characters")
}

const DEFAULT_PREFIX: &str = "runonce";
const DEFAULT_ENVIRONMENT: &str = "dev";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_POOL_SIZE: usize = 16;

/// Builds a Redis-backed [`Dedupe`]. Every setting has a default; only the
/// connection (URL or pool) must be given.
///
/// ```no_run
/// use std::time::Duration;
/// # async fn f() -> Result<(), runonce::Error> {
/// let dedupe = runonce::Dedupe::builder()
///     .redis_url("redis://:secret@127.0.0.1:6379")
///     .environment("prod")
///     .prefix("billing")
///     .default_ttl("7d".parse::<runonce::Ttl>()?)
///     .timeout(Duration::from_secs(2))
///     .strict_eviction_check(true)
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use]
pub struct DedupeBuilder {
    redis_url: Option<String>,
    pool: Option<deadpool_redis::Pool>,
    store: Option<Arc<dyn Store>>,
    cluster: Option<Vec<String>>,
    sentinel: Option<(Vec<String>, String)>,
    sentinel_node_auth: Option<(Option<String>, String)>,
    min_replicas: Option<(u32, Duration)>,
    on_shortfall: ShortfallPolicy,
    environment: String,
    prefix: String,
    default_ttl: Ttl,
    timeout: Duration,
    pool_size: usize,
    check_eviction: bool,
    strict_eviction_check: bool,
}

impl Default for DedupeBuilder {
    fn default() -> Self {
        DedupeBuilder {
            redis_url: None,
            pool: None,
            store: None,
            cluster: None,
            sentinel: None,
            sentinel_node_auth: None,
            min_replicas: None,
            on_shortfall: ShortfallPolicy::default(),
            environment: DEFAULT_ENVIRONMENT.to_owned(),
            prefix: DEFAULT_PREFIX.to_owned(),
            default_ttl: Ttl::default(),
            timeout: DEFAULT_TIMEOUT,
            pool_size: DEFAULT_POOL_SIZE,
            check_eviction: true,
            strict_eviction_check: false,
        }
    }
}

impl DedupeBuilder {
    /// A `redis://` or `rediss://` URL, with `user:password@` for AUTH/ACL
    /// and `/db` for a database number. No default: set this or
    /// [`pool`](Self::pool).
    pub fn redis_url(mut self, url: impl Into<String>) -> Self {
        self.redis_url = Some(url.into());
        self
    }

    /// A Redis Cluster, by seed node URLs (any few nodes; the rest are
    /// discovered). Keys spread over all slots by their hash tag; redis-rs
    /// follows `MOVED`/`ASK` during resharding and failover. No default.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), runonce::Error> {
    /// let d = runonce::Dedupe::builder()
    ///     .cluster(["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"])
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn cluster<I, S>(mut self, seed_urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.cluster = Some(seed_urls.into_iter().map(Into::into).collect());
        self
    }

    /// The primary that Sentinel names `master_name`, by sentinel URLs.
    /// After a failover, the next call reconnects to the new primary. No
    /// default.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), runonce::Error> {
    /// let d = runonce::Dedupe::builder()
    ///     .sentinel(["redis://10.0.0.1:26379", "redis://10.0.0.2:26379"], "mymaster")
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn sentinel<I, S>(mut self, sentinel_urls: I, master_name: impl Into<String>) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.sentinel = Some((
            sentinel_urls.into_iter().map(Into::into).collect(),
            master_name.into(),
        ));
        self
    }

    /// Credentials for the Redis nodes that Sentinel names (the sentinels'
    /// own credentials go in their URLs). Defaults to none.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), runonce::Error> {
    /// let d = runonce::Dedupe::builder()
    ///     .sentinel(["redis://10.0.0.1:26379"], "mymaster")
    ///     .sentinel_node_auth(Some("app".into()), "secret")
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn sentinel_node_auth(
        mut self,
        username: Option<String>,
        password: impl Into<String>,
    ) -> Self {
        self.sentinel_node_auth = Some((username, password.into()));
        self
    }

    /// Durability: after every claim, `WAIT` until `replicas` replicas
    /// acknowledged it, at most `timeout`. The count reached is reported in
    /// [`Triggered::replicas`]; a shortfall follows
    /// [`on_replica_shortfall`](Self::on_replica_shortfall). `WAIT` runs on a
    /// connection leased for the call, so it never stalls other callers.
    /// Defaults to none (Redis replication is asynchronous: see the
    /// README's deployment guide for what a failover can lose).
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), runonce::Error> {
    /// let d = runonce::Dedupe::builder()
    ///     .redis_url("redis://127.0.0.1:6379")
    ///     .min_replicas(1, std::time::Duration::from_millis(100))
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn min_replicas(mut self, replicas: u32, timeout: Duration) -> Self {
        self.min_replicas = Some((replicas, timeout));
        self
    }

    /// What a durability shortfall does. Defaults to
    /// [`ShortfallPolicy::Error`].
    pub fn on_replica_shortfall(mut self, policy: ShortfallPolicy) -> Self {
        self.on_shortfall = policy;
        self
    }

    /// A deadpool-redis pool to use instead of a URL. Its timeouts are the
    /// caller's; every call is still bounded by [`timeout`](Self::timeout).
    pub fn pool(mut self, pool: deadpool_redis::Pool) -> Self {
        self.pool = Some(pool);
        self
    }

    /// Any other [`Store`], e.g. a shared
    /// [`MemoryStore`](crate::store::memory::MemoryStore), instead of
    /// Redis. No eviction check runs for it.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use runonce::{store::memory::MemoryStore, Dedupe};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), runonce::Error> {
    /// let store = Arc::new(MemoryStore::new());
    /// let a = Dedupe::builder().store(store.clone()).prefix("app-a").build().await?;
    /// let b = Dedupe::builder().store(store).prefix("app-b").build().await?;
    /// # Ok(()) }
    /// ```
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// The environment keys are isolated in, e.g. `prod` or `acme/prod`.
    /// Defaults to `dev`.
    pub fn environment(mut self, environment: impl Into<String>) -> Self {
        self.environment = environment.into();
        self
    }

    /// The prefix of every Redis key, so several applications can share one
    /// Redis. Defaults to `runonce`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The TTL of triggers that set none. Defaults to 30 days.
    pub fn default_ttl(mut self, ttl: impl Into<Ttl>) -> Self {
        self.default_ttl = ttl.into();
        self
    }

    /// The bound on every backend call, connecting included. Defaults to
    /// 5 seconds.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Connections in the pool built from the URL. Defaults to 16. (Calls
    /// share one multiplexed connection; the pool replaces it when it
    /// breaks.)
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size;
        self
    }

    /// Whether to read `maxmemory-policy` at build and warn when it can
    /// evict records. Defaults to true.
    pub fn check_eviction(mut self, check: bool) -> Self {
        self.check_eviction = check;
        self
    }

    /// Refuse to build ([`Error::UnsafeEvictionPolicy`]) unless the server
    /// reports `maxmemory-policy noeviction`. Defaults to false (warn only).
    pub fn strict_eviction_check(mut self, strict: bool) -> Self {
        self.strict_eviction_check = strict;
        self
    }

    /// Connects and checks the eviction policy.
    ///
    /// Errors: [`Error::Config`] without a URL or pool or for a bad URL,
    /// input errors for a bad environment, prefix or TTL, a backend error
    /// when the server cannot be reached for the eviction check, and
    /// [`Error::UnsafeEvictionPolicy`] in strict mode.
    pub async fn build(self) -> Result<Dedupe, Error> {
        check_name("environment", &self.environment)?;
        check_name("prefix", &self.prefix)?;
        self.default_ttl.as_millis()?;
        if self.timeout.is_zero() {
            return Err(Error::Config("timeout must be positive".into()));
        }
        let sources = [
            self.redis_url.is_some(),
            self.pool.is_some(),
            self.store.is_some(),
            self.cluster.is_some(),
            self.sentinel.is_some(),
        ];
        match sources.iter().filter(|s| **s).count() {
            0 => {
                return Err(Error::Config(
                    "no Redis given: call redis_url(..), pool(..), cluster(..) or sentinel(..), or use Dedupe::in_memory"
                        .into(),
                ))
            }
            1 => {}
            _ => {
                return Err(Error::Config(
                    "set only one of redis_url, pool, cluster, sentinel or store".into(),
                ))
            }
        }
        let durability = match self.min_replicas {
            Some((0, _)) => None,
            Some((n, t)) if t.is_zero() => {
                return Err(Error::Config(format!(
                    "min_replicas({n}, 0s): the durability timeout must be positive (WAIT 0 blocks forever)"
                )))
            }
            Some((replicas, timeout)) => Some(Durability {
                replicas,
                timeout,
                on_shortfall: self.on_shortfall,
            }),
            None => None,
        };
        if let Some(store) = self.store {
            if durability.is_some() {
                return Err(Error::Config("min_replicas needs a Redis backend".into()));
            }
            return Ok(Dedupe {
                inner: Arc::new(Inner {
                    store,
                    environment: self.environment,
                    prefix: self.prefix,
                    default_ttl: self.default_ttl,
                    eviction_policy: None,
                    durability: None,
                }),
            });
        }
        let wait = durability.map(|d| Wait {
            replicas: d.replicas,
            timeout: d.timeout,
        });
        // A reply may take the call's timeout plus a durability WAIT; the
        // per-call bound is enforced above the connection anyway.
        let reply_timeout = self.timeout + wait.map(|w| w.timeout).unwrap_or_default();
        let (source, addr) = if let Some(pool) = self.pool {
            (Source::Single(pool), "caller-supplied pool".to_owned())
        } else if let Some(url) = &self.redis_url {
            let (pool, addr) = pool_from_url(url, self.timeout, reply_timeout, self.pool_size)?;
            (Source::Single(pool), addr)
        } else if let Some(seeds) = &self.cluster {
            cluster_source(seeds, self.timeout, reply_timeout)?
        } else if let Some((urls, master)) = &self.sentinel {
            sentinel_source(
                urls,
                master,
                self.sentinel_node_auth.clone(),
                self.timeout,
                self.pool_size,
            )?
        } else {
            unreachable!("one source is set")
        };
        let store = RedisStore::from_source(source, addr.clone(), self.timeout, wait);
        let mut eviction_policy = None;
        if self.check_eviction || self.strict_eviction_check {
            eviction_policy = store.eviction_policy().await?;
            match eviction_policy.as_deref() {
                Some("noeviction") => {}
                policy => {
                    let shown = policy.unwrap_or("unknown");
                    if self.strict_eviction_check {
                        return Err(Error::UnsafeEvictionPolicy {
                            addr,
                            policy: shown.to_owned(),
                        });
                    }
                    tracing::warn!(
                        addr = %addr,
                        policy = shown,
                        "Redis maxmemory-policy is not noeviction: records can be evicted under memory pressure, which allows duplicate runs; set `maxmemory-policy noeviction`"
                    );
                }
            }
        }
        Ok(Dedupe {
            inner: Arc::new(Inner {
                store: Arc::new(store),
                environment: self.environment,
                prefix: self.prefix,
                default_ttl: self.default_ttl,
                eviction_policy,
                durability,
            }),
        })
    }
}

fn cluster_source(
    seeds: &[String],
    timeout: Duration,
    reply_timeout: Duration,
) -> Result<(Source, String), Error> {
    if seeds.is_empty() {
        return Err(Error::Config(
            "cluster(..) needs at least one seed URL".into(),
        ));
    }
    let client = redis::cluster::ClusterClient::builder(seeds.to_vec())
        .connection_timeout(timeout)
        .response_timeout(reply_timeout)
        // TRYAGAIN / CLUSTERDOWN during resharding and failover clear in
        // milliseconds to seconds; redis-rs's default first wait is over a
        // second. Retry quickly, within the call's own timeout.
        .min_retry_wait(10)
        .max_retry_wait(250)
        .tcp_settings(tcp_settings())
        .build()
        .map_err(|e| Error::Config(format!("bad cluster seed URLs {seeds:?}: {e}")))?;
    let addr = format!("cluster {}", seed_addrs(seeds).join(","));
    Ok((
        Source::Cluster {
            client: Box::new(client),
            spare: Default::default(),
        },
        addr,
    ))
}

fn sentinel_source(
    urls: &[String],
    master: &str,
    node_auth: Option<(Option<String>, String)>,
    timeout: Duration,
    size: usize,
) -> Result<(Source, String), Error> {
    if urls.is_empty() || master.is_empty() {
        return Err(Error::Config(
            "sentinel(..) needs at least one sentinel URL and a master name".into(),
        ));
    }
    let manager = deadpool_redis::sentinel::Manager::new(
        urls.to_vec(),
        master.to_owned(),
        node_auth.map(|(username, password)| {
            deadpool_redis::sentinel::SentinelNodeConnectionInfo {
                tls_mode: None,
                redis_connection_info: Some(deadpool_redis::RedisConnectionInfo {
                    username,
                    password: Some(password),
                    ..Default::default()
                }),
            }
        }),
        deadpool_redis::sentinel::SentinelServerType::Master,
    )
    .map_err(|e| Error::Config(format!("bad sentinel URLs {urls:?}: {e}")))?;
    let pool = deadpool_redis::sentinel::Pool::builder(manager)
        .max_size(size.max(1))
        .wait_timeout(Some(timeout))
        .create_timeout(Some(timeout))
        .recycle_timeout(Some(timeout))
        .runtime(deadpool_redis::Runtime::Tokio1)
        .build()
        .map_err(|e| Error::Config(format!("cannot build the sentinel pool: {e}")))?;
    let addr = format!("sentinel {} master {master}", seed_addrs(urls).join(","));
    Ok((Source::Sentinel(pool), addr))
}

/// Host:port of each URL, never the password.
fn seed_addrs(urls: &[String]) -> Vec<String> {
    use redis::IntoConnectionInfo;
    urls.iter()
        .map(|u| {
            u.as_str()
                .into_connection_info()
                .map(|i| i.addr().to_string())
                .unwrap_or_else(|_| "<bad url>".into())
        })
        .collect()
}

/// TCP settings of single-server and cluster connections: `TCP_NODELAY`.
/// A claim is a small write, and with Nagle's algorithm a second one waits
/// for the first one's ACK while the first is in flight (redis-rs leaves
/// Nagle on by default; Redis turns it off on its side).
fn tcp_settings() -> redis::io::tcp::TcpSettings {
    redis::io::tcp::TcpSettings::default().set_nodelay(true)
}

fn pool_from_url(
    url: &str,
    timeout: Duration,
    reply_timeout: Duration,
    size: usize,
) -> Result<(deadpool_redis::Pool, String), Error> {
    use redis::IntoConnectionInfo;
    let bad = |e: redis::RedisError| {
        Error::Config(format!(
            "bad Redis URL: {e}; expected redis://[user:password@]host:port[/db] or rediss://…"
        ))
    };
    let info = url
        .into_connection_info()
        .map_err(bad)?
        .set_tcp_settings(tcp_settings());
    let addr = info.addr().to_string();
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(reply_timeout));
    let manager = deadpool_redis::Manager::new_with_config(info, config).map_err(bad)?;
    let pool = deadpool_redis::Pool::builder(manager)
        .max_size(size.max(1))
        .wait_timeout(Some(timeout))
        .create_timeout(Some(timeout))
        .recycle_timeout(Some(timeout))
        .runtime(deadpool_redis::Runtime::Tokio1)
        .build()
        .map_err(|e| Error::Config(format!("cannot build the connection pool: {e}")))?;
    Ok((pool, addr))
}
