//! Property tests: the key encodings are injective, TTLs round-trip through
//! their printed form, canonical JSON ignores field order.

use std::time::Duration;

use proptest::prelude::*;
use runonce::store::storage_key;
use runonce::{IdempotencyKey, Namespace, Scope, Ttl};
use serde::ser::{Serialize, SerializeMap, Serializer};

/// Strings over an alphabet rich in the characters that break naive
/// key layouts.
fn nasty() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just(':'),
            Just('{'),
            Just('}'),
            Just('*'),
            Just(' '),
            Just('%'),
            Just('é'),
            Just('☃'),
            Just('a'),
            Just('b'),
        ],
        1..6,
    )
    .prop_map(|cs| cs.into_iter().collect())
}

fn namespace() -> impl Strategy<Value = Namespace> {
    (any::<bool>(), nasty()).prop_map(|(group, name)| {
        if group {
            Namespace::group(name)
        } else {
            Namespace::task(name)
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(2000)
    })]

    #[test]
    fn storage_keys_are_injective(
        a in (nasty(), nasty(), namespace(), nasty()),
        b in (nasty(), nasty(), namespace(), nasty()),
    ) {
        let key = |t: &(String, String, Namespace, String)| {
            let k = IdempotencyKey::create(t.3.as_str(), Scope::Global).unwrap();
            storage_key(&t.0, &t.1, &t.2, &k)
        };
        if a != b {
            prop_assert_ne!(key(&a), key(&b));
        } else {
            prop_assert_eq!(key(&a), key(&b));
        }
        // Exactly one hash tag, and it is the digest.
        let s = key(&a);
        prop_assert_eq!(s.matches('{').count(), 1);
        prop_assert_eq!(s.matches('}').count(), 1);
        prop_assert!(s.ends_with('}'), "tag at the end: {}", s);
    }

    #[test]
    fn key_parts_are_unambiguous(parts_a in proptest::collection::vec(nasty(), 1..4),
                                 parts_b in proptest::collection::vec(nasty(), 1..4)) {
        let a = IdempotencyKey::create(parts_a.clone(), Scope::Global).unwrap();
        let b = IdempotencyKey::create(parts_b.clone(), Scope::Global).unwrap();
        prop_assert_eq!(a == b, parts_a == parts_b);
    }

    #[test]
    fn same_concatenation_different_split(
        (s, cut) in "[a-z:{}-]{2,12}".prop_flat_map(|s| { let n = s.len(); (Just(s), 1..n) })
    ) {
        let (x, y) = s.split_at(cut);
        let whole = IdempotencyKey::create(s.as_str(), Scope::Global).unwrap();
        let split = IdempotencyKey::create([x, y], Scope::Global).unwrap();
        prop_assert_ne!(whole, split);
    }

    #[test]
    fn ttl_prints_and_parses_back(ms in 1u64..=365 * 86_400_000) {
        let ttl = Ttl::new(Duration::from_millis(ms)).unwrap();
        let back: Ttl = ttl.to_string().parse().unwrap();
        prop_assert_eq!(back, ttl);
        prop_assert_eq!(back.as_millis().unwrap(), ms);
    }

    #[test]
    fn canonical_json_ignores_field_order(
        fields in proptest::collection::btree_map("[a-zA-Z0-9_é]{1,8}", json_leaf(), 1..8),
        seed in any::<u64>(),
    ) {
        let sorted: Vec<(String, serde_json::Value)> = fields.into_iter().collect();
        let mut shuffled = sorted.clone();
        // A deterministic shuffle from the seed.
        let mut x = seed | 1;
        for i in (1..shuffled.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            shuffled.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let a = IdempotencyKey::from_payload(&Ordered(sorted)).unwrap();
        let b = IdempotencyKey::from_payload(&Ordered(shuffled)).unwrap();
        prop_assert_eq!(a, b);
    }
}

fn json_leaf() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        any::<i32>().prop_map(serde_json::Value::from),
        (-1e6f64..1e6).prop_map(serde_json::Value::from),
        "[ -~é]{0,6}".prop_map(serde_json::Value::from),
        any::<bool>().prop_map(serde_json::Value::from),
        Just(serde_json::Value::Null),
    ]
}

/// A JSON object serialized in exactly the given field order.
struct Ordered(Vec<(String, serde_json::Value)>);

impl Serialize for Ordered {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

#[test]
fn integral_floats_equal_integers() {
    let a = IdempotencyKey::from_payload(&serde_json::json!({"n": 1.0, "m": [2.0, 3]})).unwrap();
    let b = IdempotencyKey::from_payload(&serde_json::json!({"m": [2, 3.0], "n": 1})).unwrap();
    assert_eq!(a, b);
}
