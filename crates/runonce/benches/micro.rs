//! Microbenchmarks of the CPU work on a trigger's hot path: key digesting,
//! JCS canonicalization of payloads, and TTL parsing. Public API only.
//!
//! `cargo bench -p runonce --bench micro` (add `-- --quick` for a short
//! run). The end-to-end figures against Redis are `runonce-bench`'s.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use runonce::{IdempotencyKey, RunContext, Scope, Ttl};
use serde_json::json;

fn key_digest(c: &mut Criterion) {
    let mut g = c.benchmark_group("key_digest");
    g.bench_function("create/1 part/global", |b| {
        b.iter(|| IdempotencyKey::create(black_box("order-7f3a9c"), Scope::Global).unwrap())
    });
    g.bench_function("create/3 parts/global", |b| {
        b.iter(|| {
            IdempotencyKey::create(
                black_box(["user-42", "welcome", "2026-12-04"]),
                Scope::Global,
            )
            .unwrap()
        })
    });
    let ctx = RunContext::new("run_01jbx7c9qz8m4k2v6w3d5", 3);
    g.bench_function("create_in/1 part/attempt", |b| {
        b.iter(|| {
            IdempotencyKey::create_in(black_box("order-7f3a9c"), Scope::Attempt, &ctx).unwrap()
        })
    });
    g.bench_function("raw/outside a run", |b| {
        b.iter(|| IdempotencyKey::raw(black_box("order-7f3a9c")).unwrap())
    });
    for len in [64usize, 2048] {
        let key = "k".repeat(len);
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_with_input(BenchmarkId::new("raw/bytes", len), &key, |b, k| {
            b.iter(|| IdempotencyKey::raw(black_box(k)).unwrap())
        });
    }
    let hex = IdempotencyKey::create("x", Scope::Global).unwrap().to_hex();
    g.throughput(Throughput::Elements(1));
    g.bench_function("from_digest", |b| {
        b.iter(|| IdempotencyKey::from_digest(black_box(&hex)).unwrap())
    });
    g.finish();
}

fn jcs(c: &mut Criterion) {
    let mut g = c.benchmark_group("jcs_from_payload");
    let small = json!({"to": "a@b.c", "template": "welcome", "n": 1.0});
    let nested = json!({
        "order": {"id": "ord_7f3a9c", "total": 129.5, "currency": "EUR",
                  "lines": [{"sku": "A-1", "qty": 2, "price": 19.75},
                            {"sku": "B-22", "qty": 1, "price": 90.0}]},
        "customer": {"id": 42, "email": "a@b.c", "tags": ["vip", "eu"]},
        "meta": {"source": "checkout", "attempt": 1, "ts": 1_733_300_000_000_u64}
    });
    let items: Vec<serde_json::Value> = (0..100)
        .map(|i| json!({"i": i, "name": format!("item-{i}"), "w": i as f64 / 3.0}))
        .collect();
    let large = json!({"items": items, "batch": "nightly"});
    for (name, payload) in [
        ("small", &small),
        ("nested", &nested),
        ("100 items", &large),
    ] {
        let bytes = serde_json::to_vec(payload).unwrap().len() as u64;
        g.throughput(Throughput::Bytes(bytes));
        g.bench_with_input(BenchmarkId::from_parameter(name), payload, |b, p| {
            b.iter(|| IdempotencyKey::from_payload(black_box(p)).unwrap())
        });
    }
    g.finish();
}

fn ttl_parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("ttl_parse");
    for input in [
        "60s",
        "5m",
        "2h",
        "3d",
        "1h 30m",
        "500ms",
        "29days 23h 59m 59s",
    ] {
        g.bench_with_input(BenchmarkId::from_parameter(input), input, |b, s| {
            b.iter(|| black_box(s).parse::<Ttl>().unwrap())
        });
    }
    g.bench_function("invalid/400d", |b| {
        b.iter(|| black_box("400d").parse::<Ttl>().unwrap_err())
    });
    g.finish();
}

criterion_group!(benches, key_digest, jcs, ttl_parse);
criterion_main!(benches);
