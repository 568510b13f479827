//! The in-process store: same semantics as Redis, for unit tests and
//! single-process use.
//!
//! Built for the hot path (a fresh-key claim):
//! - The key is hashed once, with a fast seeded hash (keys end in a
//!   SHA-256 digest, so a cryptographic hash buys nothing here), and the
//!   maps are keyed by that 64-bit hash with an identity hasher, so growing
//!   a map never re-reads (or re-hashes) the keys. Two keys with the same
//!   64-bit hash are handled exactly: the later one lives in a small
//!   overflow map keyed by the full key (with std's SipHash).
//! - A record is one allocation: its key and run ID share one buffer; the
//!   rest (state, times, an optional fingerprint) sits in the map's
//!   slot, 56 bytes in all.
//! - 16 shards, each under its own lock, picked by other bits of the same
//!   hash, so threads rarely contend.
//! - Expiry is kept in µs since the store's creation (monotonic clock),
//!   and creation times are the store's creation time on the system clock
//!   plus that monotonic offset: one clock read per call.

use std::collections::hash_map::{Entry, RandomState};
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::{Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::{BoxFuture, Claim, ClaimReply, Store, FINGERPRINT_BYTES};
use crate::error::Error;
use crate::key::to_hex;
use crate::options::{Record, RecordState};

/// Number of shards (a power of two).
const SHARDS: usize = 16;
/// A shard sweeps out expired records once it has this many, and then
/// each time it has doubled since the last sweep (amortized O(1)).
const SWEEP_MIN: usize = 1024;

/// One record: key and run ID in one buffer, the rest inline.
#[derive(Debug)]
struct Rec {
    /// `<key><run id>`.
    buf: Box<str>,
    key_len: usize,
    created_at_ms: u64,
    /// µs since the store's epoch.
    expires_at_us: u64,
    /// The first [`FINGERPRINT_BYTES`] bytes of the payload fingerprint.
    fingerprint: Option<[u8; FINGERPRINT_BYTES]>,
    state: RecordState,
}

impl Rec {
    fn new(c: &Claim, created_at_ms: u64, now_us: u64) -> Rec {
        let mut buf = String::with_capacity(c.key.len() + c.run_id.len());
        buf.push_str(&c.key);
        buf.push_str(&c.run_id);
        Rec {
            buf: buf.into_boxed_str(),
            key_len: c.key.len(),
            created_at_ms,
            expires_at_us: now_us.saturating_add(c.ttl_ms.saturating_mul(1000)),
            fingerprint: c.fingerprint.map(|f| std::array::from_fn(|i| f[i])),
            state: RecordState::Running,
        }
    }

    fn key(&self) -> &str {
        &self.buf[..self.key_len]
    }

    fn run_id(&self) -> &str {
        &self.buf[self.key_len..]
    }

    fn live(&self, now_us: u64) -> bool {
        self.expires_at_us > now_us
    }

    fn record(&self, now_us: u64) -> Record {
        Record {
            run_id: self.run_id().to_owned(),
            state: self.state,
            expires_in_ms: self.expires_at_us.saturating_sub(now_us) / 1000,
            created_at_ms: self.created_at_ms,
            has_fingerprint: self.fingerprint.is_some(),
            fingerprint: self.fingerprint.as_ref().map(|f| to_hex(f)),
        }
    }
}

/// Hashes the already-mixed 64-bit key hashes: the identity.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64s are hashed; this is for completeness.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(K1);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type ById = HashMap<u64, Rec, BuildHasherDefault<IdHasher>>;

#[derive(Debug, Default)]
struct Shard {
    /// Records by the 64-bit hash of their key.
    primary: ById,
    /// Records whose key's hash was taken by another key when they were
    /// created (practically never), by key.
    overflow: HashMap<Box<str>, Rec>,
    /// Size after the last sweep.
    swept_at: usize,
}

impl Shard {
    fn len(&self) -> usize {
        self.primary.len() + self.overflow.len()
    }

    fn get_mut(&mut self, h: u64, key: &str) -> Option<&mut Rec> {
        if let Some(r) = self.primary.get_mut(&h) {
            if r.key() == key {
                return Some(r);
            }
        }
        if self.overflow.is_empty() {
            None
        } else {
            self.overflow.get_mut(key)
        }
    }

    fn remove(&mut self, h: u64, key: &str) -> Option<Rec> {
        if self.primary.get(&h).is_some_and(|r| r.key() == key) {
            return self.primary.remove(&h);
        }
        if self.overflow.is_empty() {
            None
        } else {
            self.overflow.remove(key)
        }
    }

    /// Inserts a record whose key is absent.
    fn insert(&mut self, h: u64, rec: Rec) {
        match self.primary.entry(h) {
            Entry::Vacant(v) => {
                v.insert(rec);
            }
            Entry::Occupied(_) => {
                self.overflow.insert(rec.key().into(), rec);
            }
        }
    }

    fn sweep_if_due(&mut self, now_us: u64) {
        let len = self.len();
        if len >= SWEEP_MIN && len >= 2 * self.swept_at {
            self.primary.retain(|_, r| r.live(now_us));
            self.overflow.retain(|_, r| r.live(now_us));
            self.swept_at = self.len();
        }
    }
}

/// An in-process [`Store`] with the same semantics as the Redis store,
/// proven by the same conformance suite. Expiry uses the process's
/// monotonic clock; creation times are the system clock's reading when the
/// store was made plus the monotonic time since (so they never go
/// backwards, even when the system clock is stepped).
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
pub struct MemoryStore {
    shards: [Mutex<Shard>; SHARDS],
    seeds: [u64; 2],
    /// Hash bits kept (all but in tests, which force collisions).
    mask: u64,
    epoch: Instant,
    /// The system clock at `epoch`, in ms since the Unix epoch.
    epoch_unix_ms: u64,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("shards", &SHARDS)
            .finish_non_exhaustive()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

const K1: u64 = 0x9E37_79B9_7F4A_7C15;
const K2: u64 = 0xC2B2_AE3D_27D4_EB4F;

/// The folded 64×64→128-bit multiply (as in wyhash and foldhash).
fn fold(a: u64, b: u64) -> u64 {
    let m = u128::from(a) * u128::from(b);
    (m as u64) ^ ((m >> 64) as u64)
}

fn le64(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    u64::from_le_bytes(w)
}

/// A fast seeded hash of a key: 16 bytes per folded multiply.
fn hash_key(seeds: [u64; 2], key: &[u8]) -> u64 {
    let mut h = seeds[0] ^ (key.len() as u64).wrapping_mul(K1);
    let mut chunks = key.chunks_exact(16);
    for c in &mut chunks {
        h = fold(le64(c) ^ h ^ seeds[1], le64(&c[8..]) ^ K2);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut tail = [0u8; 16];
        tail[..rest.len()].copy_from_slice(rest);
        h = fold(le64(&tail) ^ h ^ seeds[1], le64(&tail[8..]) ^ K2);
    }
    fold(h ^ K2, K1 ^ seeds[1])
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        let random = RandomState::new();
        MemoryStore {
            shards: std::array::from_fn(|_| Mutex::default()),
            seeds: [random.hash_one(1u8), random.hash_one(2u8) | 1],
            mask: u64::MAX,
            epoch: Instant::now(),
            epoch_unix_ms: unix_ms(),
        }
    }

    /// The key's hash and its shard, locked.
    fn shard(&self, key: &str) -> (u64, MutexGuard<'_, Shard>) {
        let h = hash_key(self.seeds, key.as_bytes()) & self.mask;
        // Bits 40..44: independent of the bucket index (low bits) and the
        // control byte (top 7 bits) that the shard's map takes from `h`.
        let i = (h >> 40) as usize & (SHARDS - 1);
        (h, self.shards[i].lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn now_us(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_micros() as u64
    }

    /// Number of live records.
    ///
    /// ```
    /// assert_eq!(runonce::store::memory::MemoryStore::new().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        let now_us = self.now_us(Instant::now());
        self.shards
            .iter()
            .map(|s| {
                let s = s.lock().unwrap_or_else(|p| p.into_inner());
                s.primary.values().filter(|r| r.live(now_us)).count()
                    + s.overflow.values().filter(|r| r.live(now_us)).count()
            })
            .sum()
    }

    /// True when no record is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Claims keys synchronously: the same as [`Store::claim`] without the
    /// future.
    pub fn claim_now(&self, claims: &[Claim]) -> Vec<ClaimReply> {
        let now_us = self.now_us(Instant::now());
        let created_at_ms = self.epoch_unix_ms + now_us / 1000;
        let mut out = Vec::with_capacity(claims.len());
        for c in claims {
            let (h, mut shard) = self.shard(&c.key);
            shard.sweep_if_due(now_us);
            let reply = match shard.get_mut(h, &c.key) {
                Some(r) if r.live(now_us) => ClaimReply::Existing {
                    record: r.record(now_us),
                    replicas: None,
                },
                Some(r) => {
                    *r = Rec::new(c, created_at_ms, now_us);
                    created(c)
                }
                None => {
                    shard.insert(h, Rec::new(c, created_at_ms, now_us));
                    created(c)
                }
            };
            drop(shard);
            out.push(reply);
        }
        out
    }

    /// Runs `f` on the live record of `key` (`None` if there is none; an
    /// expired one is removed first), in its locked shard.
    fn with_live<R>(&self, key: &str, f: impl FnOnce(&mut Shard, u64, Option<u64>) -> R) -> R {
        let now_us = self.now_us(Instant::now());
        let (h, mut shard) = self.shard(key);
        let live = match shard.get_mut(h, key) {
            Some(r) if r.live(now_us) => true,
            Some(_) => {
                shard.remove(h, key);
                false
            }
            None => false,
        };
        f(&mut shard, h, live.then_some(now_us))
    }
}

fn created(c: &Claim) -> ClaimReply {
    ClaimReply::Created {
        expires_in_ms: c.ttl_ms,
        replicas: None,
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
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
            Ok(self.with_live(key, |shard, h, live| {
                if live.is_none() {
                    return false;
                }
                let Some(r) = shard.get_mut(h, key) else {
                    return false;
                };
                if r.run_id() != run_id {
                    return false;
                }
                match to {
                    None => {
                        shard.remove(h, key);
                        true
                    }
                    Some(s) if s == r.state => false,
                    Some(s) => {
                        r.state = s;
                        true
                    }
                }
            }))
        })
    }

    fn reset<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(async move {
            Ok(self.with_live(key, |shard, h, live| {
                shard.remove(h, key);
                live.is_some()
            }))
        })
    }

    fn lookup<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Record>, Error>> {
        Box::pin(async move {
            Ok(self.with_live(key, |shard, h, live| {
                let now_us = live?;
                shard.get_mut(h, key).map(|r| r.record(now_us))
            }))
        })
    }

    fn addr(&self) -> &str {
        "in-memory"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_slot_is_56_bytes() {
        // Key and run ID share one allocation; the 8 fingerprint bytes sit
        // inline (as in Redis, the first 8 bytes of the SHA-256).
        assert_eq!(std::mem::size_of::<Rec>(), 56);
    }

    fn claim(key: &str, run: &str, ttl_ms: u64) -> Claim {
        Claim::new(key.into(), run.into(), ttl_ms, None)
    }

    /// Every key hashes to 0: all but the first of a shard's keys live in
    /// its overflow map, which must behave exactly like the primary one.
    #[test]
    fn colliding_hashes_are_exact() {
        let mut s = MemoryStore::new();
        s.mask = 0;
        let keys: Vec<String> = (0..50).map(|i| format!("k{i}")).collect();
        for k in &keys {
            let r = s.claim_now(&[claim(k, &format!("run_{k}"), 60_000)]);
            assert!(matches!(r[0], ClaimReply::Created { .. }));
        }
        assert_eq!(s.len(), 50);
        for k in &keys {
            match &s.claim_now(&[claim(k, "run_other", 60_000)])[0] {
                ClaimReply::Existing { record, .. } => {
                    assert_eq!(record.run_id, format!("run_{k}"))
                }
                other => panic!("{k}: {other:?}"),
            }
        }
        // Remove the primary one; the others stay reachable.
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert!(rt.block_on(s.reset("k0")).unwrap());
        assert!(rt.block_on(s.lookup("k0")).unwrap().is_none());
        for k in &keys[1..] {
            let rec = rt.block_on(s.lookup(k)).unwrap().unwrap();
            assert_eq!(rec.run_id, format!("run_{k}"));
        }
        assert!(rt
            .block_on(s.finish("k7", "run_k7", Some(RecordState::Succeeded)))
            .unwrap());
        assert!(rt.block_on(s.finish("k8", "run_k8", None)).unwrap());
        assert!(rt.block_on(s.lookup("k8")).unwrap().is_none());
        assert_eq!(s.len(), 48);
        // A fresh claim of a removed key goes wherever there is room.
        let r = s.claim_now(&[claim("k0", "run_new", 60_000)]);
        assert!(matches!(r[0], ClaimReply::Created { .. }));
        assert_eq!(
            rt.block_on(s.lookup("k0")).unwrap().unwrap().run_id,
            "run_new"
        );
    }

    #[test]
    fn expired_records_are_replaced_and_swept() {
        let s = MemoryStore::new();
        let batch: Vec<Claim> = (0..20_000)
            .map(|i| claim(&format!("k{i}"), "run_a", 1))
            .collect();
        s.claim_now(&batch);
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(s.len(), 0);
        let r = s.claim_now(&[claim("k1", "run_b", 60_000)]);
        assert!(matches!(r[0], ClaimReply::Created { .. }));
        // More claims grow the shards and trigger sweeps of the expired
        // records.
        let batch: Vec<Claim> = (0..20_000)
            .map(|i| claim(&format!("j{i}"), "run_c", 60_000))
            .collect();
        s.claim_now(&batch);
        let stored: usize = s.shards.iter().map(|sh| sh.lock().unwrap().len()).sum();
        assert!(stored < 25_000, "expired records were swept: {stored}");
        assert_eq!(s.len(), 20_001);
    }

    #[test]
    fn the_hash_spreads_keys() {
        let seeds = [1, 3];
        let mut seen = std::collections::HashSet::new();
        let mut per_shard = [0usize; SHARDS];
        for i in 0..100_000 {
            let h = hash_key(seeds, format!("runonce:dev:t:task:{{{i:043}}}").as_bytes());
            assert!(seen.insert(h), "collision at {i}");
            per_shard[(h >> 40) as usize & (SHARDS - 1)] += 1;
        }
        for n in per_shard {
            assert!((5_000..7_500).contains(&n), "{per_shard:?}");
        }
        assert_ne!(hash_key(seeds, b"ab"), hash_key(seeds, b"ab\0"));
        assert_ne!(hash_key(seeds, b""), hash_key([2, 3], b""));
    }
}
