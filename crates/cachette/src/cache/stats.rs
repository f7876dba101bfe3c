//! The counters of the typed front end.

use std::sync::atomic::{AtomicU64, Ordering};

/// What a [`Cache`](super::Cache) did since it was built (its clones share
/// the counters). Read with [`Cache::stats`](super::Cache::stats).
///
/// The backend keeps its own counters ([`Backend::stats`](crate::Backend::stats));
/// these count what the front end decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Reads answered by a fresh entry (for `get_or_load`, a cached
    /// "not found" too).
    pub hits: u64,
    /// Reads that found no usable entry: missing, expired, corrupt, or
    /// another key's entry under the same hash.
    pub misses: u64,
    /// Stale values returned: past their soft TTL, at a soft timeout, or by
    /// fail-safe.
    pub stale_served: u64,
    /// Times fail-safe returned a stale value instead of an error.
    pub fail_safe_activations: u64,
    /// Loader runs (foreground and background).
    pub loads: u64,
    /// Loader runs that failed (error, panic or hard timeout).
    pub load_errors: u64,
    /// Background loads started by a read: refreshes of stale values,
    /// eager refreshes, and fail-safe recovery attempts.
    pub refreshes: u64,
    /// Callers of `get_or_load` that joined a load already in flight
    /// instead of running the loader.
    pub coalesced: u64,
    /// Callers that got the stale value when their soft timeout passed.
    pub soft_timeouts: u64,
    /// Loads cancelled by the hard timeout.
    pub hard_timeouts: u64,
    /// Entries that looked like an envelope (or had to be one) but could
    /// not be read: read as misses.
    pub corrupt: u64,
    /// Values that the codec could not decode into the requested type:
    /// [`ErrorKind::Serialization`](crate::ErrorKind::Serialization) errors.
    pub decode_errors: u64,
}

impl CacheStats {
    /// Fresh hits divided by hits, stale values served and misses; 0
    /// before the first read.
    pub fn hit_ratio(&self) -> f64 {
        let reads = self.hits + self.misses + self.stale_served;
        if reads == 0 {
            0.0
        } else {
            self.hits as f64 / reads as f64
        }
    }
}

/// One counter per field of [`CacheStats`]. Hits and misses, counted on
/// every read, are striped so that threads do not contend on one line.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) hits: Striped,
    pub(super) misses: Striped,
    pub(super) stale_served: AtomicU64,
    pub(super) fail_safe_activations: AtomicU64,
    pub(super) loads: AtomicU64,
    pub(super) load_errors: AtomicU64,
    pub(super) refreshes: AtomicU64,
    pub(super) coalesced: AtomicU64,
    pub(super) soft_timeouts: AtomicU64,
    pub(super) hard_timeouts: AtomicU64,
    pub(super) corrupt: AtomicU64,
    pub(super) decode_errors: AtomicU64,
}

/// A counter that can be bumped.
pub(super) trait Counter {
    /// Adds one.
    fn bump(&self);
    /// The count so far.
    fn read(&self) -> u64;
}

impl Counter for AtomicU64 {
    #[inline]
    fn bump(&self) {
        self.fetch_add(1, Ordering::Relaxed);
    }

    fn read(&self) -> u64 {
        self.load(Ordering::Relaxed)
    }
}

/// Adds one to a counter.
#[inline]
pub(super) fn bump(counter: &impl Counter) {
    counter.bump();
}

const STRIPES: usize = 16;

/// One slot per stripe, each on its own cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Slot(AtomicU64);

/// A counter split over [`STRIPES`] slots; a thread always bumps the same
/// slot.
#[derive(Debug, Default)]
pub(super) struct Striped {
    slots: [Slot; STRIPES],
}

#[inline]
fn stripe() -> usize {
    use std::sync::atomic::AtomicUsize;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    STRIPE.with(|s| *s)
}

impl Counter for Striped {
    #[inline]
    fn bump(&self) {
        self.slots[stripe()].0.fetch_add(1, Ordering::Relaxed);
    }

    fn read(&self) -> u64 {
        self.slots
            .iter()
            .map(|slot| slot.0.load(Ordering::Relaxed))
            .sum()
    }
}

impl Counters {
    pub(super) fn snapshot(&self) -> CacheStats {
        fn read(counter: &impl Counter) -> u64 {
            counter.read()
        }
        CacheStats {
            hits: read(&self.hits),
            misses: read(&self.misses),
            stale_served: read(&self.stale_served),
            fail_safe_activations: read(&self.fail_safe_activations),
            loads: read(&self.loads),
            load_errors: read(&self.load_errors),
            refreshes: read(&self.refreshes),
            coalesced: read(&self.coalesced),
            soft_timeouts: read(&self.soft_timeouts),
            hard_timeouts: read(&self.hard_timeouts),
            corrupt: read(&self.corrupt),
            decode_errors: read(&self.decode_errors),
        }
    }
}
