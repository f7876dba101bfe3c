//! The millisecond clock behind the memory engine's deadlines.
//!
//! It reads `tokio::time::Instant`, which is the monotonic clock in
//! production and follows tokio's paused clock in tests, so that TTL
//! behaviour can be tested deterministically. Each engine keeps its own
//! base, taken when it is built: a paused runtime that moved time forward
//! in one test cannot freeze the clock of an engine built in another.

use tokio::time::Instant;

/// Milliseconds since the engine was built.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    base: Instant,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Clock {
            base: Instant::now(),
        }
    }

    /// Milliseconds since the base, never 0 (0 stands for "no deadline" in
    /// the engines that store deadlines as `u64`). Rounded down: a deadline
    /// compared with `<` is then never early.
    pub(crate) fn now_ms(&self) -> u64 {
        let elapsed = Instant::now().saturating_duration_since(self.base);
        u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX - 1) + 1
    }
}
