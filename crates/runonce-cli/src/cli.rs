//! The command line: clap types for every subcommand and the global options.

use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, Parser, Subcommand, ValueEnum};
use runonce::{Dedupe, DedupeBuilder};

use crate::error::{redacted_url, redis_addr, CliError};

/// The Redis URL used when neither `--redis` nor `REDIS_URL` is given.
pub(crate) const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// `runonce`: one run per idempotency key, decided by Redis.
#[derive(Debug, Parser)]
#[command(
    name = "runonce",
    version,
    about = "Trigger, inspect and demo the runonce dedupe authority",
    long_about = "Trigger, inspect and demo the runonce dedupe authority.\n\n\
        trigger, batch, lookup, complete, release, reset (and stats --json) print one JSON \
        document on stdout; inspect, stats and demo print text for humans. Exit codes: \
        0 success, 1 backend unavailable or other failure, 2 invalid input (nothing is \
        written), 3 payload mismatch.\n\n\
        Redis is one of --redis URL, --cluster URL,... or --sentinel URL,... --master NAME \
        (or REDIS_URL, RUNONCE_CLUSTER, RUNONCE_SENTINEL + RUNONCE_MASTER); the command line \
        beats the environment.",
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

    /// A Redis Cluster instead: seed node URLs, comma-separated (any few
    /// nodes; the rest are discovered). Excludes --redis and --sentinel.
    #[arg(
        long = "cluster",
        env = "RUNONCE_CLUSTER",
        hide_env_values = true,
        global = true,
        value_name = "URL,..."
    )]
    pub(crate) cluster: Option<String>,

    /// A Sentinel-managed primary instead: sentinel URLs, comma-separated;
    /// needs --master. Excludes --redis and --cluster.
    #[arg(
        long = "sentinel",
        env = "RUNONCE_SENTINEL",
        hide_env_values = true,
        global = true,
        value_name = "URL,..."
    )]
    pub(crate) sentinel: Option<String>,

    /// The master name the sentinels monitor, for --sentinel.
    #[arg(
        long = "master",
        env = "RUNONCE_MASTER",
        global = true,
        value_name = "NAME"
    )]
    pub(crate) master: Option<String>,

    /// Where Redis is, resolved from the four options above by
    /// [`Global::resolve`]; `None` when none was given.
    #[arg(skip)]
    pub(crate) target: Option<Target>,

    /// Whether `--env` (or `RUNONCE_ENV`) was given rather than defaulted;
    /// set by [`Global::resolve`]. `stats` covers every environment unless
    /// it was.
    #[arg(skip)]
    pub(crate) env_given: bool,

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

    /// Bound on the command's Redis work, connecting included (e.g. 500ms,
    /// 2s); for stats, on each Redis call of its scan.
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
    /// Where one-shot commands find Redis: the resolved target, or
    /// [`DEFAULT_REDIS_URL`].
    pub(crate) fn target(&self) -> Target {
        self.target
            .clone()
            .unwrap_or_else(|| Target::Single(DEFAULT_REDIS_URL.to_owned()))
    }

    /// Decides where Redis is from `--redis`, `--cluster`, `--sentinel` and
    /// `--master` and where each value came from, and stores it in
    /// [`Global::target`].
    ///
    /// The three shapes exclude each other. The command line beats the
    /// environment: `--cluster` wins over a `REDIS_URL` exported in the
    /// shell. Two shapes on the command line, or (with none there) two in
    /// the environment, are refused (exit 2) rather than silently picking
    /// one. `--sentinel` needs `--master` (or `RUNONCE_MASTER`); `--master`
    /// on the command line without a sentinel is refused too.
    pub(crate) fn resolve(&mut self, m: &ArgMatches) -> Result<(), CliError> {
        let source = |id: &str| m.value_source(id);
        let shapes = [
            ("--redis", "REDIS_URL", "redis", self.redis.is_some()),
            (
                "--cluster",
                "RUNONCE_CLUSTER",
                "cluster",
                self.cluster.is_some(),
            ),
            (
                "--sentinel",
                "RUNONCE_SENTINEL",
                "sentinel",
                self.sentinel.is_some(),
            ),
        ];
        let on_cli: Vec<_> = shapes
            .iter()
            .filter(|s| s.3 && source(s.2) == Some(ValueSource::CommandLine))
            .collect();
        let in_env: Vec<_> = shapes
            .iter()
            .filter(|s| s.3 && source(s.2) == Some(ValueSource::EnvVariable))
            .collect();
        let chosen = match (on_cli.as_slice(), in_env.as_slice()) {
            ([one], _) | ([], [one]) => Some(one.2),
            ([], []) => None,
            ([], many) => {
                let names: Vec<&str> = many.iter().map(|s| s.1).collect();
                return Err(CliError::invalid(format!(
                    "the environment sets {}, which exclude each other; unset all but one, \
                     or pick one on the command line with --redis, --cluster or --sentinel",
                    names.join(" and ")
                )));
            }
            (many, _) => {
                let names: Vec<&str> = many.iter().map(|s| s.0).collect();
                return Err(CliError::invalid(format!(
                    "{} exclude each other: pass only one of --redis URL, --cluster URL,... \
                     and --sentinel URL,... --master NAME",
                    names.join(" and ")
                )));
            }
        };
        self.env_given = matches!(
            source("env"),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        );
        let master_on_cli = source("master") == Some(ValueSource::CommandLine);
        self.target = match chosen {
            None | Some("redis") if master_on_cli => return Err(CliError::invalid(
                "--master NAME only applies with --sentinel URL,...; pass the sentinel URLs too",
            )),
            Some("cluster") if master_on_cli => {
                return Err(CliError::invalid(
                    "--master NAME only applies with --sentinel URL,..., not with --cluster",
                ))
            }
            None => None,
            Some("redis") => self.redis.clone().map(Target::Single),
            Some("cluster") => Some(Target::Cluster(url_list(
                "--cluster",
                self.cluster.as_deref().unwrap_or_default(),
            )?)),
            Some(_) => {
                let urls = url_list("--sentinel", self.sentinel.as_deref().unwrap_or_default())?;
                let master = match self.master.as_deref().map(str::trim) {
                    Some(m) if !m.is_empty() => m.to_owned(),
                    _ => {
                        return Err(CliError::invalid(
                            "--sentinel needs --master NAME (or RUNONCE_MASTER): the name the \
                             sentinels monitor the primary under, e.g. --master mymaster",
                        ))
                    }
                };
                Some(Target::Sentinel { urls, master })
            }
        };
        Ok(())
    }
}

/// Splits a comma-separated URL list, refusing empty items.
fn url_list(flag: &str, s: &str) -> Result<Vec<String>, CliError> {
    let urls: Vec<String> = s.split(',').map(|u| u.trim().to_owned()).collect();
    if urls.iter().any(String::is_empty) {
        return Err(CliError::invalid(format!(
            "{flag} {:?}: empty URL in the list; pass comma-separated URLs, e.g. \
             {flag} redis://127.0.0.1:7000,redis://127.0.0.1:7001",
            redacted_url(s)
        )));
    }
    Ok(urls)
}

/// Where Redis is: one server, a cluster, or a Sentinel-managed primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// One server, by URL.
    Single(String),
    /// A Redis Cluster, by seed node URLs.
    Cluster(Vec<String>),
    /// The primary the sentinels name `master`.
    Sentinel {
        /// The sentinels' URLs.
        urls: Vec<String>,
        /// The master name.
        master: String,
    },
}

impl Target {
    /// The library builder pointed at this target.
    pub(crate) fn builder(&self) -> DedupeBuilder {
        let b = Dedupe::builder();
        match self {
            Target::Single(url) => b.redis_url(url.clone()),
            Target::Cluster(seeds) => b.cluster(seeds.clone()),
            Target::Sentinel { urls, master } => b.sentinel(urls.clone(), master.clone()),
        }
    }

    /// Where it is, for messages: `host:port`, `cluster h:p,h:p` or
    /// `sentinel h:p,h:p master NAME`; never a password.
    pub(crate) fn addr(&self) -> String {
        let addrs = |urls: &[String]| -> String {
            urls.iter()
                .map(|u| redis_addr(u))
                .collect::<Vec<_>>()
                .join(",")
        };
        match self {
            Target::Single(url) => redis_addr(url),
            Target::Cluster(seeds) => format!("cluster {}", addrs(seeds)),
            Target::Sentinel { urls, master } => {
                format!("sentinel {} master {master}", addrs(urls))
            }
        }
    }

    /// What it is, for humans: `Redis at redis://…`, passwords redacted.
    pub(crate) fn describe(&self) -> String {
        let urls = |urls: &[String]| -> String {
            urls.iter()
                .map(|u| redacted_url(u))
                .collect::<Vec<_>>()
                .join(",")
        };
        match self {
            Target::Single(url) => format!("Redis at {}", redacted_url(url)),
            Target::Cluster(seeds) => format!("Redis Cluster with seeds {}", urls(seeds)),
            Target::Sentinel { urls: u, master } => {
                format!("the primary of {master} through sentinels {}", urls(u))
            }
        }
    }

    /// The options that select this target, for a child process.
    pub(crate) fn to_args(&self) -> Vec<String> {
        match self {
            Target::Single(url) => vec!["--redis".into(), url.clone()],
            Target::Cluster(seeds) => vec!["--cluster".into(), seeds.join(",")],
            Target::Sentinel { urls, master } => vec![
                "--sentinel".into(),
                urls.join(","),
                "--master".into(),
                master.clone(),
            ],
        }
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

    /// Show one key's record for humans: owner, state, time left, creation
    /// time, fingerprint and the Redis key.
    #[command(after_help = "Example:\n  \
        runonce inspect --task send-email --key order-7\n  \
        key          runonce:dev:t:send-email:{PXbR…}\n  \
        digest       3cd6…(64 hex)\n  \
        task         send-email\n  \
        environment  dev\n  \
        owner        run_01k…\n  \
        state        running\n  \
        time left    59m 58s (3598123 ms)\n  \
        created at   2026-01-05T10:00:00.123Z\n  \
        fingerprint  none\n\n  \
        A key without a record prints `record       none: …` and exits 0, like lookup's null.")]
    Inspect(LookupArgs),

    /// Count the records under the prefix (SCAN, never KEYS): by environment,
    /// task/group, state and time left; their memory; and whether the
    /// server's eviction and persistence settings keep them.
    #[command(after_help = STATS_HELP)]
    Stats(StatsArgs),

    /// Show it working: many worker processes trigger the same keys at once.
    #[command(after_help = "Example:\n  \
        runonce demo                                  # private redis-server, 8 workers x 2000 keys x 3\n  \
        runonce demo --workers 4 --keys 500 --repeat 2\n  \
        runonce --redis redis://127.0.0.1:6379 demo   # against your Redis (keys under a fresh demo-… env)\n\n  \
        Exits 1 if any key got more than one run or any two workers disagreed.")]
    Demo(DemoArgs),

    /// Measure runonce against Redis's own ceilings on a private
    /// redis-server: redis-benchmark EVALSHA and raw redis-rs SET NX PX as
    /// baselines, trigger at concurrency 1/50/200, batches, the in-process
    /// store, bytes per record, cluster 1 vs 3 primaries.
    #[command(after_help = "Example:\n  \
        runonce bench                          # table: ops/s, p50/p99 µs, ratio to baseline (median of 3)\n  \
        runonce bench --quick --json           # a few seconds, JSON\n  \
        runonce bench --svg BENCHMARKS.svg     # also the throughput-vs-concurrency plot\n\n  \
        Build with --release for figures worth reading.")]
    Bench(BenchArgs),

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

/// `runonce stats`.
#[derive(Debug, Clone, Args)]
pub(crate) struct StatsArgs {
    /// Only the records of this task.
    #[arg(long, value_name = "T", conflicts_with = "group")]
    pub(crate) task: Option<String>,

    /// Only the records of this shared key group.
    #[arg(long, value_name = "NAME")]
    pub(crate) group: Option<String>,

    /// Print one JSON document (fields below) instead of the tables.
    #[arg(long)]
    pub(crate) json: bool,
}

/// The after-help of `runonce stats`: an example and the JSON fields.
const STATS_HELP: &str = "Example:
  runonce stats                       # every environment under the prefix
  runonce --env prod stats --task send-email
  runonce stats --json | jq .by_state

Scope: every environment under --prefix, unless --env (or RUNONCE_ENV) is given;
--task T or --group NAME narrows it to one task or group. Keys under the prefix
that are not runonce records are counted as other_keys, never as records.
--timeout bounds each Redis call; the scan as a whole may take longer. A progress
bar shows on stderr when it is a terminal and the keyspace holds 10000+ keys.

JSON fields (--json):
  prefix, environment, task, group   the scope (null: not filtered)
  pattern                  the SCAN MATCH pattern
  keys_matched             keys SCAN returned for the pattern
  records                  live runonce records counted
  other_keys               matched keys that are not runonce records
  by_environment           [{environment, records}]
  by_namespace             [{environment, kind (task|group), name, records,
                             running, succeeded, canceled, failed}]
  by_state                 {running, succeeded, canceled, failed}
  ttl                      [{bucket, records}], buckets <1m <1h <1d <7d <30d >=30d
                           none (PTTL; none = no expiry)
  memory                   {sampled_records, sampled_bytes, bytes_per_record,
                            estimated_bytes, extrapolated} from MEMORY USAGE of up
                           to 1000 records, extrapolated to all; null with no
                           records or when MEMORY USAGE is refused
  servers                  [{addr, keys (DBSIZE), maxmemory_policy, maxmemory,
                            eviction {verdict, note}, appendonly, appendfsync, save,
                            persistence {verdict, note}}], one per primary; a
                           setting is null when CONFIG GET is refused
  eviction.verdict         ok (noeviction) | unsafe (can evict records and allow
                           duplicates) | unknown
  persistence.verdict      durable (AOF, appendfsync always) | aof_everysec (may
                           lose ~1s of claims on crash) | aof_no_fsync | snapshots
                           (RDB only) | none | unknown; without AOF, claims are lost
                           on restart unless replicated";

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

/// `runonce bench`.
#[derive(Debug, Clone, Args)]
pub(crate) struct BenchArgs {
    /// Print the figures as JSON instead of the table.
    #[arg(long)]
    pub(crate) json: bool,
    /// Small sizes and short phases (a few seconds; not for publishing).
    #[arg(long)]
    pub(crate) quick: bool,
    /// Repetitions per figure; each figure is their median.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub(crate) reps: u32,
    /// Also write the throughput-against-concurrency plot (SVG) to this path.
    #[arg(long, value_name = "PATH")]
    pub(crate) svg: Option<String>,
    /// Skip the 1- vs 3-primary Redis Cluster workloads.
    #[arg(long)]
    pub(crate) no_cluster: bool,
    /// Only the workloads whose label contains TEXT (`memory` for the memory
    /// figures).
    #[arg(long, value_name = "TEXT")]
    pub(crate) only: Option<String>,
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
