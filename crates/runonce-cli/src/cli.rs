//! The command line: clap types for every subcommand and the global options.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The Redis URL used when neither `--redis` nor `REDIS_URL` is given.
pub(crate) const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// `runonce`: one run per idempotency key, decided by Redis.
#[derive(Debug, Parser)]
#[command(
    name = "runonce",
    version,
    about = "Trigger, inspect and demo the runonce dedupe authority",
    long_about = "Trigger, inspect and demo the runonce dedupe authority.\n\n\
        Every command prints one JSON document on stdout. Exit codes: 0 success, \
        1 backend unavailable or other failure, 2 invalid input (nothing is written), \
        3 payload mismatch.",
    after_help = "Example:\n  \
        runonce --redis redis://127.0.0.1:6379 trigger --task send-email --key order-7 --ttl 1h\n  \
        {\"run_id\":\"run_01k…\",\"cached\":false,\"key\":\"3f…\",\"expires_in_ms\":3600000}\n  \
        runonce demo --workers 8 --keys 2000 --repeat 3"
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options every subcommand accepts, before or after its name.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Global options")]
pub(crate) struct Global {
    /// Redis URL: redis://[user:password@]host:port[/db] or rediss://…
    /// [default: redis://127.0.0.1:6379; `demo` starts a private redis-server instead]
    // The value is never shown in --help: it may hold a password.
    #[arg(
        long = "redis",
        env = "REDIS_URL",
        hide_env_values = true,
        global = true,
        value_name = "URL"
    )]
    pub(crate) redis: Option<String>,

    /// Environment the keys are isolated in, e.g. dev, staging, prod.
    #[arg(
        long = "env",
        env = "RUNONCE_ENV",
        default_value = "dev",
        global = true,
        value_name = "NAME"
    )]
    pub(crate) env: String,

    /// Prefix of every Redis key, so several applications can share one Redis.
    #[arg(
        long = "prefix",
        env = "RUNONCE_PREFIX",
        default_value = "runonce",
        global = true,
        value_name = "P"
    )]
    pub(crate) prefix: String,

    /// Bound on the command's Redis work, connecting included (e.g. 500ms, 2s).
    #[arg(
        long = "timeout",
        default_value = "5s",
        global = true,
        value_name = "DURATION",
        value_parser = parse_timeout
    )]
    pub(crate) timeout: Duration,
}

impl Global {
    /// The Redis URL to use for one-shot commands.
    pub(crate) fn redis_url(&self) -> &str {
        self.redis.as_deref().unwrap_or(DEFAULT_REDIS_URL)
    }
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid timeout {s:?}: {e}; use e.g. 500ms, 2s, 1m"))?;
    if d.is_zero() {
        return Err(format!("invalid timeout {s:?}: must be positive"));
    }
    Ok(d)
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Trigger a task: claim the key for a new run, or learn the run that owns it.
    #[command(after_help = "Example:\n  \
        runonce trigger --task send-email --key order-7 --key receipt --ttl 1h --payload '{\"to\":\"a@b.c\"}'\n  \
        {\"run_id\":\"run_01k…\",\"cached\":false,\"key\":\"9c…(64 hex)\",\"expires_in_ms\":3600000}\n\n  \
        A run-scoped key (unique per parent run, stable across its retries):\n  \
        runonce trigger --task charge --key step-1 --scope run --parent-run run_01kparent\n\n  \
        No key: always a new run, Redis is not touched:\n  \
        runonce trigger --task send-email\n  \
        {\"run_id\":\"run_01k…\",\"cached\":false,\"key\":null,\"expires_in_ms\":null}")]
    Trigger(TriggerArgs),

    /// Trigger many items read as JSON lines on stdin; prints one JSON array.
    #[command(after_help = "Example:\n  \
        printf '%s\\n' '{\"key\":\"a\"}' '{\"key\":[\"b\",\"1\"],\"ttl\":\"5m\"}' '{\"key\":\"a\"}' '{}' \\\n    \
        | runonce batch --task send-email\n  \
        [{\"run_id\":\"run_A\",\"cached\":false,…},{\"run_id\":\"run_B\",…},{\"run_id\":\"run_A\",\"cached\":true,…},{\"run_id\":\"run_C\",\"key\":null,…}]\n\n  \
        Each line: {\"key\": \"...\" | [\"part\", ...], \"ttl\": \"5m\", \"payload\": {...}}; every field is optional,\n  \
        blank lines are skipped. A bad line becomes {\"error\":{\"kind\":\"...\",\"message\":\"...\"}} in its place.")]
    Batch(BatchArgs),

    /// Show the record that holds a key, or null.
    #[command(after_help = "Example:\n  \
        runonce lookup --task send-email --key order-7\n  \
        {\"run_id\":\"run_01k…\",\"state\":\"running\",\"expires_in_ms\":3597512,\"has_fingerprint\":false}")]
    Lookup(LookupArgs),

    /// Record how the owning run ended (failed releases the key).
    #[command(after_help = "Example:\n  \
        runonce complete --task send-email --key order-7 --run-id run_01k… --outcome succeeded\n  \
        {\"changed\":true}")]
    Complete(CompleteArgs),

    /// Release a key if the given run owns it (compare-and-delete).
    #[command(after_help = "Example:\n  \
        runonce release --task send-email --key order-7 --run-id run_01k…\n  \
        {\"changed\":true}")]
    Release(ReleaseArgs),

    /// Delete a key's record unconditionally.
    #[command(after_help = "Example:\n  \
        runonce reset --task send-email --key order-7\n  \
        {\"changed\":false}")]
    Reset(KeyArgs),

    /// Show it working: many worker processes trigger the same keys at once.
    #[command(after_help = "Example:\n  \
        runonce demo                                  # private redis-server, 8 workers x 2000 keys x 3\n  \
        runonce demo --workers 4 --keys 500 --repeat 2\n  \
        runonce --redis redis://127.0.0.1:6379 demo   # against your Redis (keys under a fresh demo-… env)\n\n  \
        Exits 1 if any key got more than one run or any two workers disagreed.")]
    Demo(DemoArgs),

    /// Internal: one demo worker process (started by `runonce demo`).
    #[command(name = "__worker", hide = true)]
    Worker(WorkerArgs),
}

/// Key scope, as on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ScopeArg {
    /// One key across every caller.
    Global,
    /// Unique per parent run, stable across its retries (needs --parent-run).
    Run,
    /// Unique per attempt of the parent run (needs --parent-run and --attempt).
    Attempt,
}

/// What a payload mismatch does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum MismatchArg {
    /// Fail (exit 3), naming the run that owns the key.
    Error,
    /// Answer with the existing run.
    Existing,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutcomeArg {
    /// Keep the key until its TTL ends.
    Succeeded,
    /// Release the key so the next trigger starts a new run.
    Failed,
    /// Keep the key until its TTL ends.
    Canceled,
}

/// The key of a command: its parts and scope, and the task or group.
#[derive(Debug, Clone, Args)]
pub(crate) struct KeyArgs {
    /// The task being triggered, e.g. send-email.
    #[arg(long, value_name = "T")]
    pub(crate) task: String,

    /// A part of the idempotency key; repeat for a multi-part key.
    #[arg(long = "key", value_name = "PART", required = true)]
    pub(crate) key: Vec<String>,

    #[command(flatten)]
    pub(crate) scope: ScopeArgs,

    /// Scope the key to a shared key group instead of the task.
    #[arg(long, value_name = "NAME")]
    pub(crate) group: Option<String>,
}

/// Scope flags shared by every keyed command.
#[derive(Debug, Clone, Args)]
pub(crate) struct ScopeArgs {
    /// What is mixed into the key's digest.
    #[arg(long, value_enum, default_value = "global")]
    pub(crate) scope: ScopeArg,

    /// The parent run's ID, for --scope run and --scope attempt.
    #[arg(long, value_name = "ID")]
    pub(crate) parent_run: Option<String>,

    /// The parent run's attempt number (from 1), for --scope attempt.
    #[arg(long, value_name = "N")]
    pub(crate) attempt: Option<u32>,
}

/// `runonce trigger`.
#[derive(Debug, Clone, Args)]
pub(crate) struct TriggerArgs {
    /// The task being triggered, e.g. send-email.
    #[arg(long, value_name = "T")]
    pub(crate) task: String,

    /// A part of the idempotency key; repeat for a multi-part key. Without
    /// --key every trigger is a new run.
    #[arg(long = "key", value_name = "PART")]
    pub(crate) key: Vec<String>,

    #[command(flatten)]
    pub(crate) scope: ScopeArgs,

    /// Dedupe window of a new record, e.g. 60s, 5m, 2h, 3d, "1h 30m" [default: 30d].
    // Hyphen values are let through so `--ttl -5m` is refused as a negative
    // TTL naming the input, not as an unknown flag.
    #[arg(long, value_name = "TTL", allow_hyphen_values = true)]
    pub(crate) ttl: Option<String>,

    /// The payload as JSON; its fingerprint is stored with the record.
    #[arg(long, value_name = "JSON", allow_hyphen_values = true)]
    pub(crate) payload: Option<String>,

    /// What a retrigger with a different payload does.
    #[arg(long, value_enum, default_value = "error")]
    pub(crate) on_mismatch: MismatchArg,

    /// Scope the key to a shared key group instead of the task.
    #[arg(long, value_name = "NAME")]
    pub(crate) group: Option<String>,

    /// Candidate run ID (default: a fresh run_… ID). Retry with the same one
    /// after a timeout to learn whether the first call made the claim.
    #[arg(long, value_name = "CANDIDATE")]
    pub(crate) run_id: Option<String>,
}

/// `runonce batch`.
#[derive(Debug, Clone, Args)]
pub(crate) struct BatchArgs {
    /// The task being triggered.
    #[arg(long, value_name = "T")]
    pub(crate) task: String,

    /// A batch-level key: items without a key get one derived from (batch key,
    /// item index), so replaying the batch returns the same runs.
    #[arg(long, value_name = "K")]
    pub(crate) batch_key: Option<String>,
}

/// `runonce lookup`.
#[derive(Debug, Clone, Args)]
pub(crate) struct LookupArgs {
    #[command(flatten)]
    pub(crate) key: KeyArgs,
}

/// `runonce complete`.
#[derive(Debug, Clone, Args)]
pub(crate) struct CompleteArgs {
    #[command(flatten)]
    pub(crate) key: KeyArgs,

    /// The run that owns the key.
    #[arg(long, value_name = "ID")]
    pub(crate) run_id: String,

    /// How the run ended.
    #[arg(long, value_enum)]
    pub(crate) outcome: OutcomeArg,
}

/// `runonce release`.
#[derive(Debug, Clone, Args)]
pub(crate) struct ReleaseArgs {
    #[command(flatten)]
    pub(crate) key: KeyArgs,

    /// The run that owns the key.
    #[arg(long, value_name = "ID")]
    pub(crate) run_id: String,
}

/// `runonce demo`.
#[derive(Debug, Clone, Args)]
pub(crate) struct DemoArgs {
    /// Worker processes.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub(crate) workers: u32,

    /// Keys every worker triggers.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub(crate) keys: u32,

    /// How many times each worker triggers each key.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub(crate) repeat: u32,

    /// Use worker threads over the in-process store, as when redis-server is
    /// missing.
    #[arg(long, hide = true)]
    pub(crate) in_memory: bool,
}

/// `runonce __worker`: what one demo worker process does.
#[derive(Debug, Clone, Args)]
pub(crate) struct WorkerArgs {
    /// The task the demo triggers.
    #[arg(long)]
    pub(crate) task: String,
    /// Keys to trigger: key-0 … key-(K-1).
    #[arg(long)]
    pub(crate) keys: u32,
    /// Passes over the keys, each in a fresh shuffled order.
    #[arg(long)]
    pub(crate) repeat: u32,
    /// Seed of the shuffles.
    #[arg(long)]
    pub(crate) seed: u64,
    /// Triggers in flight at once.
    #[arg(long, default_value_t = 32)]
    pub(crate) in_flight: u32,
    /// TTL of the demo's records.
    #[arg(long, default_value = "10m")]
    pub(crate) ttl: String,
}
