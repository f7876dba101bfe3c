//! Read counters striped over cache lines, so that threads reading never
//! write to the same line just to count a hit (the memory engine's and the
//! Redis backend's hit and miss counters).

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// The number of stripes; threads are spread over them round-robin.
const STRIPES: usize = 32;

#[derive(Debug, Default)]
#[repr(align(128))]
struct Stripe {
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Hit and miss counters.
#[derive(Debug, Default)]
pub(crate) struct ReadCounters {
    stripes: [Stripe; STRIPES],
}

static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn stripe_of_this_thread() -> usize {
    STRIPE.with(|slot| {
        let mut stripe = slot.get();
        if stripe == usize::MAX {
            stripe = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed) % STRIPES;
            slot.set(stripe);
        }
        stripe
    })
}

impl ReadCounters {
    pub(crate) fn hit(&self) {
        self.stripes[stripe_of_this_thread()]
            .hits
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn miss(&self) {
        self.stripes[stripe_of_this_thread()]
            .misses
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Counts `hits` hits and `misses` misses at once (batch reads).
    #[cfg(feature = "redis")]
    pub(crate) fn add(&self, hits: u64, misses: u64) {
        let stripe = &self.stripes[stripe_of_this_thread()];
        stripe.hits.fetch_add(hits, Ordering::Relaxed);
        stripe.misses.fetch_add(misses, Ordering::Relaxed);
    }

    /// (hits, misses) summed over the stripes.
    pub(crate) fn totals(&self) -> (u64, u64) {
        self.stripes.iter().fold((0, 0), |(h, m), s| {
            (
                h + s.hits.load(Ordering::Relaxed),
                m + s.misses.load(Ordering::Relaxed),
            )
        })
    }
}
