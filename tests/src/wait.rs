//! Generic polling helper.

use std::time::{Duration, Instant};

/// Poll interval used by [`wait_until`] and the server start-up loops.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Calls `f` every ~10 ms until it returns `true`.
///
/// `f` is always called at least once, and once more after the deadline has passed (so a
/// slow final poll does not produce a spurious failure).
///
/// # Panics
///
/// Panics with a message naming `what` if `f` has not returned `true` within `deadline`.
pub fn wait_until<F: FnMut() -> bool>(deadline: Duration, what: &str, mut f: F) {
    let start = Instant::now();
    loop {
        let expired = start.elapsed() >= deadline;
        if f() {
            return;
        }
        if expired {
            panic!(
                "timed out after {:.1?} waiting for: {what}",
                start.elapsed()
            );
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}
