//! Spans carry task, key digest, outcome, round trips and latency, never
//! raw key parts. (Alone in its test binary: a thread-local subscriber races
//! tracing's callsite interest cache when other tests run in parallel.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use runonce::{Dedupe, IdempotencyKey, Outcome, Scope, TriggerOptions};
use runonce_tests::RedisServer;
use serde_json::json;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

type Fields = HashMap<String, String>;

/// Collects the fields of every closed `runonce` span.
#[derive(Clone, Default)]
struct Spans {
    open: Arc<Mutex<HashMap<u64, Fields>>>,
    closed: Arc<Mutex<Vec<Fields>>>,
}

struct Collect<'a>(&'a mut Fields);

impl Visit for Collect<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: tracing::Subscriber> Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        if attrs.metadata().name() != "runonce" {
            return;
        }
        let mut f = Fields::new();
        attrs.record(&mut Collect(&mut f));
        self.open.lock().unwrap().insert(id.into_u64(), f);
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        if let Some(f) = self.open.lock().unwrap().get_mut(&id.into_u64()) {
            values.record(&mut Collect(f));
        }
    }
    fn on_close(&self, id: Id, _: Context<'_, S>) {
        if let Some(f) = self.open.lock().unwrap().remove(&id.into_u64()) {
            self.closed.lock().unwrap().push(f);
        }
    }
}

#[tokio::test]
async fn spans_for_each_outcome_without_key_material() {
    let server = RedisServer::start();
    let spans = Spans::default();
    let subscriber = tracing_subscriber::registry().with(spans.clone());
    let _guard = tracing::subscriber::set_default(subscriber);
    let d = Dedupe::builder()
        .redis_url(server.url())
        .build()
        .await
        .unwrap();

    let secret = "customer-4411-card-ending-9876";
    let key = IdempotencyKey::create(secret, Scope::Global).unwrap();
    let opts = || TriggerOptions::with_key(key).payload(&json!({"amount": 5}));
    let created = d.trigger("charge", opts()).await.unwrap();
    d.trigger("charge", opts()).await.unwrap();
    d.trigger(
        "charge",
        TriggerOptions::with_key(key).payload(&json!({"amount": 6})),
    )
    .await
    .unwrap_err();
    d.trigger("charge", TriggerOptions::with_key(""))
        .await
        .unwrap_err();
    d.complete("charge", &key, &created.run_id, Outcome::Failed)
        .await
        .unwrap();

    let closed = spans.closed.lock().unwrap().clone();
    let by_outcome = |o: &str| {
        closed
            .iter()
            .find(|f| f.get("outcome").map(String::as_str) == Some(o))
            .unwrap_or_else(|| panic!("no span with outcome {o}: {closed:#?}"))
            .clone()
    };
    for o in ["created", "cached", "mismatch"] {
        let f = by_outcome(o);
        assert_eq!(f["operation"], "trigger");
        assert_eq!(f["task"], "charge");
        assert_eq!(f["key"], key.to_hex(), "{o}: the digest, not the parts");
        assert_eq!(f["round_trips"], "1", "{o}");
        assert!(f["latency_us"].parse::<u64>().is_ok(), "{f:?}");
    }
    let err = by_outcome("error");
    assert_eq!(err["round_trips"], "0", "bad input never reaches Redis");
    let released = by_outcome("released");
    assert_eq!(released["operation"], "complete");
    assert_eq!(released["key"], key.to_hex());
    for f in &closed {
        for v in f.values() {
            assert!(!v.contains(secret), "raw key material leaked: {f:?}");
        }
    }
}
