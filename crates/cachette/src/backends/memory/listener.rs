//! The removal listener: why an entry left the memory engine, and how the
//! engine tells the listener without holding a shard's lock.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use bytes::Bytes;

/// Why an entry left a [`MemoryBackend`](super::MemoryBackend), as told
/// to its [removal listener](super::MemoryBuilder::removal_listener).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RemovalCause {
    /// The eviction policy removed it to keep `max_entries` or `max_bytes`.
    Evicted,
    /// Its time-to-live or time-to-idle passed; reported when the engine
    /// removes it (see [`MemoryBuilder::removal_listener`](super::MemoryBuilder::removal_listener)),
    /// which may be later than the deadline, never earlier.
    Expired,
    /// A write (`set`, `incr`) stored a new value over it; the listener
    /// gets the old value.
    Replaced,
    /// `delete` (or `delete_many`) removed it.
    Removed,
    /// `invalidate_tags` removed it.
    Invalidated,
    /// `clear` removed it.
    Cleared,
}

impl RemovalCause {
    /// The cause's name in lower case (`evicted`, `expired`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            RemovalCause::Evicted => "evicted",
            RemovalCause::Expired => "expired",
            RemovalCause::Replaced => "replaced",
            RemovalCause::Removed => "removed",
            RemovalCause::Invalidated => "invalidated",
            RemovalCause::Cleared => "cleared",
        }
    }

    /// Whether the engine removed the entry on its own (eviction or
    /// expiry) rather than because a caller asked for it.
    pub fn was_evicted(self) -> bool {
        matches!(self, RemovalCause::Evicted | RemovalCause::Expired)
    }
}

impl fmt::Display for RemovalCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The listener as the engine keeps it.
pub(super) type Listener = Arc<dyn Fn(&str, Bytes, RemovalCause) + Send + Sync>;

/// An entry that left a shard, kept until the shard's lock is released.
pub(super) type Removed = (Box<str>, Bytes, RemovalCause);

/// Tells the listener of each removal, in order, on the calling thread.
/// A listener that panics is logged and skipped: the removals after it
/// are still reported, and the engine, whose locks are not held here, is
/// unaffected.
pub(super) fn report(listener: &Listener, removed: Vec<Removed>) {
    for (key, value, cause) in removed {
        let call = AssertUnwindSafe(|| listener(&key, value, cause));
        if let Err(panic) = catch_unwind(call) {
            let message = panic
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("a non-text payload");
            tracing::warn!(
                backend = super::NAME,
                cause = cause.as_str(),
                panic = message,
                "the removal listener panicked; the entry is removed all the same"
            );
        }
    }
}
