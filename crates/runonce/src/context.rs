//! The run context: which run (and attempt) the current code executes for.

use std::future::Future;

tokio::task_local! {
    static CURRENT: RunContext;
}

/// The run that the current code executes for: its run ID and attempt
/// number (attempts count from 1).
///
/// A worker installs it for the duration of a run with [`RunContext::scope`];
/// [`Scope::Run`](crate::Scope::Run) and [`Scope::Attempt`](crate::Scope::Attempt)
/// keys created inside read it. It can also be passed explicitly with
/// [`IdempotencyKey::create_in`](crate::IdempotencyKey::create_in) or
/// [`TriggerOptions::run_context`](crate::TriggerOptions::run_context).
///
/// ```
/// use runonce::{IdempotencyKey, RunContext, Scope};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), runonce::Error> {
/// let first = RunContext::new("run_parent", 1)
///     .scope(async { IdempotencyKey::create("child", Scope::Run) })
///     .await?;
/// let retry = RunContext::new("run_parent", 2)
///     .scope(async { IdempotencyKey::create("child", Scope::Run) })
///     .await?;
/// assert_eq!(first, retry); // stable across the parent's retries
/// assert!(IdempotencyKey::create("child", Scope::Run).is_err()); // no run here
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RunContext {
    run_id: String,
    attempt: u32,
}

impl RunContext {
    /// A context for `run_id` at `attempt` (1 for the first attempt).
    pub fn new(run_id: impl Into<String>, attempt: u32) -> Self {
        RunContext {
            run_id: run_id.into(),
            attempt,
        }
    }

    /// The current run's ID.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The current attempt number.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Runs `fut` with this context installed (a tokio task-local), so keys
    /// created inside it are scoped to this run.
    ///
    /// ```
    /// use runonce::RunContext;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let seen = RunContext::new("run_a", 3)
    ///     .scope(async { RunContext::current().map(|c| c.attempt()) })
    ///     .await;
    /// assert_eq!(seen, Some(3));
    /// # }
    /// ```
    pub async fn scope<F: Future>(self, fut: F) -> F::Output {
        CURRENT.scope(self, fut).await
    }

    /// Runs the closure `f` with this context installed.
    ///
    /// ```
    /// use runonce::RunContext;
    /// let id = RunContext::new("run_a", 1).sync_scope(|| RunContext::current().unwrap().run_id().to_owned());
    /// assert_eq!(id, "run_a");
    /// ```
    pub fn sync_scope<R>(self, f: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(self, f)
    }

    /// The context installed around the current code, if any.
    ///
    /// ```
    /// assert!(runonce::RunContext::current().is_none());
    /// ```
    pub fn current() -> Option<RunContext> {
        CURRENT.try_with(Clone::clone).ok()
    }
}
