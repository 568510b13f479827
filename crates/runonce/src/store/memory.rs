//! The in-process store: same semantics as Redis, for unit tests and
//! single-process use.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{BoxFuture, Claim, ClaimReply, Store};
use crate::error::Error;
use crate::key::to_hex;
use crate::options::{Record, RecordState};

#[derive(Debug)]
struct Entry {
    run_id: String,
    state: RecordState,
    created_at_ms: u64,
    fingerprint: Option<[u8; 32]>,
    expires_at: Instant,
}

#[derive(Debug, Default)]
struct Map {
    entries: HashMap<String, Entry>,
    /// Size after the last sweep of expired entries; the next sweep runs
    /// when the map has doubled, so sweeping stays amortized O(1).
    swept_at: usize,
}

/// An in-process [`Store`] with the same semantics as the Redis store,
/// proven by the same conformance suite. Expiry uses the process's
/// monotonic clock; creation times use the system clock.
///
/// Records live as long as the store: share it between tasks through one
/// [`Dedupe`](crate::Dedupe) handle (which is `Clone`).
///
/// ```
/// use runonce::{Dedupe, TriggerOptions};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), runonce::Error> {
/// let d = Dedupe::in_memory("test");
/// let a = d.trigger("t", TriggerOptions::with_key("k")).await?;
/// let b = d.trigger("t", TriggerOptions::with_key("k")).await?;
/// assert_eq!((a.cached, b.cached), (false, true));
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct MemoryStore {
    map: Mutex<Map>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of live records.
    ///
    /// ```
    /// assert_eq!(runonce::store::memory::MemoryStore::new().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        let now = Instant::now();
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.entries.values().filter(|e| e.expires_at > now).count()
    }

    /// True when no record is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Claims keys synchronously: the same as [`Store::claim`] without the
    /// future.
    pub fn claim_now(&self, claims: &[Claim]) -> Vec<ClaimReply> {
        let now = Instant::now();
        let created_at_ms = unix_ms();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.entries.len() >= 1024 && map.entries.len() >= 2 * map.swept_at {
            map.entries.retain(|_, e| e.expires_at > now);
            map.swept_at = map.entries.len();
        }
        let mut out = Vec::with_capacity(claims.len());
        for c in claims {
            if let Some(e) = map.entries.get(&c.key) {
                if e.expires_at > now {
                    out.push(ClaimReply::Existing(record(e, now)));
                    continue;
                }
            }
            map.entries.insert(
                c.key.clone(),
                Entry {
                    run_id: c.run_id.clone(),
                    state: RecordState::Running,
                    created_at_ms,
                    fingerprint: c.fingerprint,
                    expires_at: now + Duration::from_millis(c.ttl_ms),
                },
            );
            out.push(ClaimReply::Created {
                expires_in_ms: c.ttl_ms,
                replicas: None,
            });
        }
        out
    }

    fn with_live<R>(&self, key: &str, f: impl FnOnce(&mut Map, bool) -> R) -> R {
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let live = match map.entries.get(key) {
            Some(e) if e.expires_at > now => true,
            Some(_) => {
                map.entries.remove(key);
                false
            }
            None => false,
        };
        f(&mut map, live)
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn record(e: &Entry, now: Instant) -> Record {
    Record {
        run_id: e.run_id.clone(),
        state: e.state,
        expires_in_ms: e.expires_at.saturating_duration_since(now).as_millis() as u64,
        created_at_ms: e.created_at_ms,
        has_fingerprint: e.fingerprint.is_some(),
        fingerprint: e.fingerprint.map(|f| to_hex(&f)),
    }
}

impl Store for MemoryStore {
    fn claim<'a>(&'a self, claims: &'a [Claim]) -> BoxFuture<'a, Result<Vec<ClaimReply>, Error>> {
        Box::pin(async move { Ok(self.claim_now(claims)) })
    }

    fn finish<'a>(
        &'a self,
        key: &'a str,
        run_id: &'a str,
        to: Option<RecordState>,
    ) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(async move {
            Ok(self.with_live(key, |map, live| {
                if !live {
                    return false;
                }
                let Some(e) = map.entries.get_mut(key) else {
                    return false;
                };
                if e.run_id != run_id {
                    return false;
                }
                match to {
                    None => {
                        map.entries.remove(key);
                        true
                    }
                    Some(s) if s == e.state => false,
                    Some(s) => {
                        e.state = s;
                        true
                    }
                }
            }))
        })
    }

    fn reset<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(async move {
            Ok(self.with_live(key, |map, live| {
                map.entries.remove(key);
                live
            }))
        })
    }

    fn lookup<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Record>, Error>> {
        Box::pin(async move {
            Ok(self.with_live(key, |map, live| {
                live.then(|| record(&map.entries[key], Instant::now()))
            }))
        })
    }

    fn addr(&self) -> &str {
        "in-memory"
    }
}
