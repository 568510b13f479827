//! What the runonce examples share: where Redis is, a fresh environment per
//! run, and a bounded `main`.
//!
//! Each example is a binary in `src/bin/`:
//!
//! - `worker`: a tokio worker installs a [`runonce::RunContext`] for each
//!   run and triggers child tasks with run-scoped keys; a retried parent
//!   (attempt 2) gets its children's runs back instead of re-triggering
//!   them.
//! - `backend`: an API handler deduplicates requests with global keys and
//!   payload fingerprints: a client's retry replays the first answer, the
//!   same key with a different body is refused.
//! - `metrics`: the library's metrics exported in the Prometheus text
//!   format on `http://127.0.0.1:<port>/metrics`.
//!
//! Run one with `cargo run -p runonce-examples --bin worker` (Redis from
//! `REDIS_URL`, default `redis://127.0.0.1:6379`). Each prints what happens
//! and exits 0 when its story held, non-zero (with `error: ...`) otherwise,
//! within [`DEADLINE`].

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use runonce::Dedupe;

/// The Redis URL when `REDIS_URL` is not set.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// How long an example may run before it gives up.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The Redis URL: `REDIS_URL`, or [`DEFAULT_REDIS_URL`].
///
/// ```
/// let url = runonce_examples::redis_url();
/// assert!(url.starts_with("redis"));
/// ```
pub fn redis_url() -> String {
    std::env::var("REDIS_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_REDIS_URL.to_owned())
}

/// A handle on [`redis_url`] in a fresh environment `example-<name>-<id>`,
/// so a run never sees the records of an earlier one.
pub async fn connect(name: &str) -> anyhow::Result<Dedupe> {
    let url = redis_url();
    let id = runonce::mint_run_id();
    let environment = format!("example-{name}-{}", &id[id.len() - 8..]);
    let dedupe = Dedupe::builder()
        .redis_url(url)
        .environment(environment)
        .timeout(Duration::from_secs(2))
        .build()
        .await?;
    println!(
        "{name}: connected to {} (environment {})",
        dedupe.store().addr(),
        dedupe.environment()
    );
    Ok(dedupe)
}

/// Runs `story` on a tokio runtime within [`DEADLINE`]: exit 0 when it
/// returns `Ok`, 1 with `error: ...` on stderr otherwise.
pub fn run<F>(story: F) -> ExitCode
where
    F: Future<Output = anyhow::Result<()>>,
{
    run_for(DEADLINE, story)
}

/// [`run`] with another deadline.
pub fn run_for<F>(deadline: Duration, story: F) -> ExitCode
where
    F: Future<Output = anyhow::Result<()>>,
{
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match tokio::time::timeout(deadline, story).await {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!("did not finish within {deadline:?}")),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
