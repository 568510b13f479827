//! A backend that deduplicates API requests: a handler (no HTTP server
//! needed to show it) claims a global idempotency key per request and
//! stores the request body's fingerprint with it.
//!
//! - A client retry with the same `Idempotency-Key` and body replays the
//!   first answer: same run, `200` instead of `201`.
//! - The same key with a different body is refused with `422`, naming the
//!   run that owns the key (the payload fingerprint caught it).
//! - 16 concurrent copies of one request start exactly one run.
//! - Without a header, the key is derived from the body itself
//!   ([`IdempotencyKey::from_payload`]): resubmitting an equal body, even
//!   with its fields in another order, is the same order.
//!
//! Exits 0 when all of that held. `REDIS_URL` sets the Redis (default
//! `redis://127.0.0.1:6379`).

use std::process::ExitCode;

use anyhow::ensure;
use runonce::{Dedupe, Error, IdempotencyKey, Scope, TriggerOptions, Ttl};
use serde_json::{json, Value};

fn main() -> ExitCode {
    runonce_examples::run(story())
}

/// What the API receives.
#[derive(Clone, Debug)]
struct Request {
    /// The client's account.
    client: String,
    /// The `Idempotency-Key` header, if any.
    idempotency_key: Option<String>,
    /// The JSON body.
    body: Value,
}

/// What the API answers.
#[derive(Clone, Debug, PartialEq)]
struct Response {
    status: u16,
    body: Value,
}

/// `POST /orders`: starts a `create-order` run once per idempotency key.
async fn create_order(dedupe: &Dedupe, req: &Request) -> Response {
    // Global keys: every API replica, every retry, the same answer. The
    // client is part of the key so two clients never share one.
    let key = match &req.idempotency_key {
        Some(k) => IdempotencyKey::create(
            ["create-order", req.client.as_str(), k.as_str()],
            Scope::Global,
        ),
        None => IdempotencyKey::from_payload(&json!({ "client": req.client, "order": req.body })),
    };
    let key = match key {
        Ok(k) => k,
        Err(e) => return error(400, &e),
    };
    let ttl: Ttl = "24h".parse().expect("a valid TTL");
    let opts = TriggerOptions::with_key(key).ttl(ttl).payload(&req.body);
    match dedupe.trigger("create-order", opts).await {
        // A new run: this is where the order would be enqueued.
        Ok(t) if !t.cached => Response {
            status: 201,
            body: json!({ "run_id": t.run_id, "replayed": false }),
        },
        Ok(t) => Response {
            status: 200,
            body: json!({ "run_id": t.run_id, "replayed": true }),
        },
        Err(e @ Error::PayloadMismatch { .. }) => error(422, &e),
        Err(e) if e.is_invalid_input() => error(400, &e),
        // Backend trouble: the outcome is unknown; the client retries with
        // the same key and learns it.
        Err(e) => error(503, &e),
    }
}

fn error(status: u16, e: &Error) -> Response {
    Response {
        status,
        body: json!({ "error": e.kind(), "message": e.to_string() }),
    }
}

fn show(label: &str, r: &Response) {
    println!("  {label:<48} -> {} {}", r.status, r.body);
}

async fn story() -> anyhow::Result<()> {
    let dedupe = runonce_examples::connect("backend").await?;
    let req = Request {
        client: "acme".into(),
        idempotency_key: Some("checkout-5f2a".into()),
        body: json!({ "sku": "book-1", "qty": 2 }),
    };

    let first = create_order(&dedupe, &req).await;
    show("POST /orders (Idempotency-Key: checkout-5f2a)", &first);
    ensure!(
        first.status == 201,
        "the first request creates a run: {first:?}"
    );
    let run = first.body["run_id"].clone();

    let retry = create_order(&dedupe, &req).await;
    show("POST /orders again (a client retry)", &retry);
    ensure!(
        retry.status == 200 && retry.body["run_id"] == run,
        "a retry replays the first run: {retry:?}"
    );

    let changed = Request {
        body: json!({ "sku": "book-1", "qty": 3 }),
        ..req.clone()
    };
    let refused = create_order(&dedupe, &changed).await;
    show("POST /orders same key, qty 3 instead of 2", &refused);
    ensure!(
        refused.status == 422
            && refused.body["error"] == "payload_mismatch"
            && refused.body["message"]
                .as_str()
                .is_some_and(|m| m.contains(run.as_str().unwrap_or("?"))),
        "a different body under the same key is refused, naming the owner run: {refused:?}"
    );

    // Many replicas receive the same request at once: one run.
    let burst = Request {
        idempotency_key: Some("checkout-77c1".into()),
        ..req.clone()
    };
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (d, r) = (dedupe.clone(), burst.clone());
        tasks.spawn(async move { create_order(&d, &r).await });
    }
    let mut answers = Vec::new();
    while let Some(a) = tasks.join_next().await {
        answers.push(a?);
    }
    let created = answers.iter().filter(|a| a.status == 201).count();
    let runs: std::collections::BTreeSet<String> = answers
        .iter()
        .map(|a| a.body["run_id"].to_string())
        .collect();
    println!(
        "  16 concurrent POST /orders (Idempotency-Key: checkout-77c1) -> {created} x 201, {} x 200, {} distinct run",
        answers.iter().filter(|a| a.status == 200).count(),
        runs.len()
    );
    ensure!(
        created == 1 && runs.len() == 1 && answers.iter().all(|a| a.status < 300),
        "concurrent copies start exactly one run: {answers:?}"
    );

    // No header: the body is the key. Field order does not matter (the
    // payload is canonicalized, RFC 8785).
    let plain = Request {
        idempotency_key: None,
        body: json!({ "sku": "pen-9", "qty": 1, "note": "gift" }),
        ..req.clone()
    };
    let reordered = Request {
        body: serde_json::from_str(r#"{"note":"gift","qty":1.0,"sku":"pen-9"}"#)?,
        ..plain.clone()
    };
    let a = create_order(&dedupe, &plain).await;
    show("POST /orders without a key", &a);
    let b = create_order(&dedupe, &reordered).await;
    show("POST /orders same body, fields reordered", &b);
    ensure!(
        a.status == 201 && b.status == 200 && a.body["run_id"] == b.body["run_id"],
        "an equal body is the same order: {a:?} {b:?}"
    );

    println!(
        "OK: retries replayed the first run, a changed body was refused with 422, and 16 concurrent requests started one run"
    );
    Ok(())
}
