//! The wall clock of the envelope's timestamps.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The wall clock that [`Cache`](super::Cache) writes into envelopes
/// (`created`, the soft and hard deadlines, in Unix milliseconds) and
/// compares them with.
///
/// Wall-clock time, because other processes read the same entries. Every
/// *wait* (timeouts, lock polling, throttling) uses `tokio::time` instead,
/// so a test with tokio's paused clock drives those; give such a test a
/// [`TokioClock`] as well, so that soft and hard TTLs move with it.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_unix_ms(&self) -> u64;
}

/// The system's wall clock ([`SystemTime::now`]); the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SystemClock;

/// A duration in whole milliseconds, the unit of envelope times; a
/// duration too long for a `u64` saturates (it means "never").
pub(super) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl Clock for SystemClock {
    fn now_unix_ms(&self) -> u64 {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        millis(since_epoch)
    }
}

/// A wall clock driven by `tokio::time::Instant`: a fixed Unix time at
/// creation plus the time tokio has advanced since. With tokio's paused
/// clock (`#[tokio::test(start_paused = true)]`, `tokio::time::advance`),
/// soft and hard TTLs expire exactly when the test says.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    epoch_ms: u64,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// A clock that reads `unix_ms` now and advances with tokio's clock.
    pub fn starting_at(unix_ms: u64) -> Self {
        TokioClock {
            epoch_ms: unix_ms,
            start: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    /// Starts at 2001-09-09T01:46:40Z (10¹² ms), a fixed and readable time.
    fn default() -> Self {
        TokioClock::starting_at(1_000_000_000_000)
    }
}

impl Clock for TokioClock {
    fn now_unix_ms(&self) -> u64 {
        self.epoch_ms.saturating_add(millis(self.start.elapsed()))
    }
}

/// `now + duration` on tokio's clock, saturating at about thirty years
/// from now instead of overflowing.
pub(crate) fn later(duration: Duration) -> tokio::time::Instant {
    saturating_after(tokio::time::Instant::now(), duration)
}

/// `start + duration`, saturating at about thirty years after `start`.
pub(crate) fn saturating_after(
    now: tokio::time::Instant,
    duration: Duration,
) -> tokio::time::Instant {
    now.checked_add(duration)
        .or_else(|| now.checked_add(FAR_FUTURE))
        .unwrap_or(now)
}

/// The farthest deadline [`later`] gives: thirty years.
const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 24 * 60 * 60);
