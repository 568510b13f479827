//! Tracing spans and metrics: what every call decided, how fast.
//!
//! Every public call of [`Dedupe`](crate::Dedupe) runs in one span named
//! `runonce.<operation>` with the fields `task` (or `group`), `key` (the
//! key's hex digest, never the raw parts, which may hold user data),
//! `outcome`, `round_trips` and `latency_us`. Metrics go through the
//! [`metrics`] facade, so any exporter (Prometheus, StatsD, ...) can collect
//! them; with no recorder installed they cost next to nothing.

use std::time::Duration;

use tracing::Span;

use crate::error::Error;
use crate::options::{Namespace, Triggered};

/// Counter: trigger decisions, labelled `task` and `outcome` (`created`,
/// `cached`, `mismatch`, `error`). Batch items count here too.
pub const TRIGGERS_TOTAL: &str = "runonce_triggers_total";
/// Histogram: seconds per `trigger` call.
pub const TRIGGER_SECONDS: &str = "runonce_trigger_seconds";
/// Counter: batch items, labelled `task` and `outcome`.
pub const BATCH_ITEMS_TOTAL: &str = "runonce_batch_items_total";
/// Histogram: seconds per `batch_trigger` call.
pub const BATCH_SECONDS: &str = "runonce_batch_seconds";
/// Counter: scripts reloaded after `NOSCRIPT` (a restart, failover or
/// `SCRIPT FLUSH` emptied the server's script cache).
pub const SCRIPT_RELOADS: &str = "runonce_script_reloads_total";

/// Describes the metrics to the installed recorder (units and help text).
/// Call once after installing an exporter; optional.
///
/// ```
/// runonce::telemetry::describe_metrics();
/// ```
pub fn describe_metrics() {
    use metrics::{describe_counter, describe_histogram, Unit};
    describe_counter!(TRIGGERS_TOTAL, "Trigger decisions by task and outcome.");
    describe_histogram!(TRIGGER_SECONDS, Unit::Seconds, "Latency of trigger calls.");
    describe_counter!(
        BATCH_ITEMS_TOTAL,
        "Batch trigger items by task and outcome."
    );
    describe_histogram!(
        BATCH_SECONDS,
        Unit::Seconds,
        "Latency of batch_trigger calls."
    );
    describe_counter!(SCRIPT_RELOADS, "Lua scripts reloaded after NOSCRIPT.");
}

/// The span of one call on `ns`.
pub(crate) fn span(operation: &'static str, ns: &Namespace) -> Span {
    match ns {
        Namespace::Task(t) => span_named(operation, "task", t),
        Namespace::Group(g) => span_named(operation, "group", g),
    }
}

/// The span of one call, from borrowed parts (no allocation on the hot
/// path).
pub(crate) fn span_named(operation: &'static str, namespace: &'static str, name: &str) -> Span {
    tracing::info_span!(
        "runonce",
        operation,
        task = %name,
        namespace,
        key = tracing::field::Empty,
        outcome = tracing::field::Empty,
        round_trips = tracing::field::Empty,
        latency_us = tracing::field::Empty,
    )
}

/// The outcome labels of trigger answers, indexed by
/// [`trigger_outcome_index`].
pub(crate) const TRIGGER_OUTCOMES: [&str; 4] = ["created", "cached", "mismatch", "error"];

/// The index in [`TRIGGER_OUTCOMES`] of a trigger answer's outcome.
pub(crate) fn trigger_outcome_index(r: &Result<Triggered, Error>) -> usize {
    match r {
        Ok(t) if t.cached => 1,
        Ok(_) => 0,
        Err(Error::PayloadMismatch { .. }) => 2,
        Err(_) => 3,
    }
}

/// The outcome label of a trigger answer.
pub(crate) fn trigger_outcome(r: &Result<Triggered, Error>) -> &'static str {
    TRIGGER_OUTCOMES[trigger_outcome_index(r)]
}

/// Records the closing fields of a span.
pub(crate) fn close(
    span: &Span,
    outcome: &str,
    key: Option<&str>,
    round_trips: u32,
    latency: Duration,
) {
    if let Some(k) = key {
        span.record("key", k);
    }
    span.record("outcome", outcome);
    span.record("round_trips", round_trips);
    span.record("latency_us", latency.as_micros() as u64);
}
