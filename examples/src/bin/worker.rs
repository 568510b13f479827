//! A queue worker whose parent runs trigger child tasks with run-scoped
//! keys, so a retried parent does not start its children twice.
//!
//! The worker installs a [`RunContext`] (the parent's run ID and attempt
//! number) around each attempt with [`RunContext::scope`]. Inside it, a raw
//! string key such as `"charge-card"` is run-scoped: unique per parent run,
//! stable across that run's retries. So:
//!
//! 1. attempt 1 of `process-order` triggers its three children, then
//!    crashes;
//! 2. the queue retries the parent (attempt 2, same run ID): the same three
//!    triggers answer `cached` with the runs attempt 1 started, so no child
//!    runs twice;
//! 3. a `Scope::Attempt` key (a per-attempt audit log) is new on each
//!    attempt;
//! 4. another parent run (another order) triggers children of its own.
//!
//! Exits 0 when all of that held. `REDIS_URL` sets the Redis (default
//! `redis://127.0.0.1:6379`).

use std::process::ExitCode;

use anyhow::{ensure, Context};
use runonce::{Dedupe, IdempotencyKey, RunContext, Scope, TriggerOptions, Triggered, Ttl};

/// The children every `process-order` run triggers.
const CHILDREN: [&str; 3] = ["charge-card", "send-receipt", "update-inventory"];

fn main() -> ExitCode {
    runonce_examples::run(story())
}

/// One attempt of the parent task: triggers the children, then fails when
/// `crash` is set (after the triggers, the worst moment for duplicates).
/// Answers each child's trigger, and the per-attempt audit trigger.
async fn process_order(
    dedupe: Dedupe,
    order: u32,
    crash: bool,
) -> anyhow::Result<(Vec<Triggered>, Triggered)> {
    let ctx = RunContext::current().context("process_order runs inside a RunContext")?;
    let ttl: Ttl = "10m".parse()?;
    let mut children = Vec::new();
    for child in CHILDREN {
        // A raw string key inside a run is scoped to the run: the same
        // parent run (any attempt) gets the same key.
        let t = dedupe
            .trigger(
                child,
                TriggerOptions::with_key(format!("order-{order}")).ttl(ttl),
            )
            .await?;
        println!(
            "  {} attempt {}: trigger {child:<16} -> {} ({})",
            ctx.run_id(),
            ctx.attempt(),
            t.run_id,
            if t.cached { "cached" } else { "new" }
        );
        children.push(t);
    }
    // Something that must happen once per attempt: an attempt-scoped key.
    let audit = dedupe
        .trigger(
            "audit-attempt",
            TriggerOptions::with_key(IdempotencyKey::create("audit", Scope::Attempt)?).ttl(ttl),
        )
        .await?;
    println!(
        "  {} attempt {}: trigger {:<16} -> {} ({}, attempt-scoped)",
        ctx.run_id(),
        ctx.attempt(),
        "audit-attempt",
        audit.run_id,
        if audit.cached { "cached" } else { "new" }
    );
    if crash {
        anyhow::bail!("simulated crash after triggering the children");
    }
    Ok((children, audit))
}

/// Runs one attempt the way a worker does: on its own tokio task, with the
/// run context installed for the attempt's duration.
async fn attempt(
    dedupe: &Dedupe,
    run_id: &str,
    n: u32,
    order: u32,
    crash: bool,
) -> anyhow::Result<anyhow::Result<(Vec<Triggered>, Triggered)>> {
    let ctx = RunContext::new(run_id, n);
    let job = tokio::spawn(ctx.scope(process_order(dedupe.clone(), order, crash)));
    // The outer error: the task panicked. The inner one: the attempt failed.
    job.await.context("the attempt's task panicked")
}

async fn story() -> anyhow::Result<()> {
    let dedupe = runonce_examples::connect("worker").await?;
    let parent = runonce::mint_run_id();
    println!("worker: process-order run {parent} for order 7");

    // Attempt 1 triggers the children, then crashes.
    let first = attempt(&dedupe, &parent, 1, 7, true).await?;
    let Err(crash) = first else {
        anyhow::bail!("attempt 1 was meant to crash");
    };
    println!("worker: attempt 1 failed ({crash}); the queue retries the parent");

    // We know what attempt 1 triggered from the records themselves.
    let mut started = Vec::new();
    for child in CHILDREN {
        let key = IdempotencyKey::create_in("order-7", Scope::Run, &RunContext::new(&parent, 1))?;
        let rec = dedupe
            .lookup(child, key)
            .await?
            .with_context(|| format!("attempt 1 left no record for {child}"))?;
        started.push(rec.run_id);
    }

    // Attempt 2 of the same run: every child trigger is answered from the
    // records attempt 1 made.
    let (children, audit2) = attempt(&dedupe, &parent, 2, 7, false).await??;
    for ((child, t), run) in CHILDREN.iter().zip(&children).zip(&started) {
        ensure!(
            t.cached,
            "attempt 2 re-triggered {child}: got a new run {}",
            t.run_id
        );
        ensure!(
            t.run_id == *run,
            "attempt 2 got run {} for {child}, attempt 1 started {run}",
            t.run_id
        );
    }
    ensure!(
        !audit2.cached,
        "the attempt-scoped audit key must be new on attempt 2"
    );
    println!(
        "worker: attempt 2 re-triggered none of its {} children: each answer was the run attempt 1 started",
        CHILDREN.len()
    );

    // A different parent run (order 8) triggers children of its own.
    let other = runonce::mint_run_id();
    println!("worker: process-order run {other} for order 8");
    let (theirs, _) = attempt(&dedupe, &other, 1, 8, false).await??;
    for (child, t) in CHILDREN.iter().zip(&theirs) {
        ensure!(
            !t.cached && !started.contains(&t.run_id),
            "another parent run must start its own {child}"
        );
    }

    // The retries saw the same runs; the other parent got fresh ones.
    println!(
        "OK: the retried parent (attempt 2) did not re-trigger its children; another parent run started its own"
    );
    Ok(())
}
