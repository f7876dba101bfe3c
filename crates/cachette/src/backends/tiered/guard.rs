//! The race guard between read-through fills and invalidations.
//!
//! A read that misses L1 reads L2 and then stores the value in L1 (a
//! *fill*). If a write or an invalidation of the same key lands between the
//! L2 read and the fill, the fill would put a stale value into L1, to be
//! served until the L1 TTL runs out. The guard prevents that:
//!
//! - Keys hash to [`STRIPES`] stripes, each with a sequence number and an
//!   async mutex. A reader takes a [`Ticket`] (the stripe's sequence and
//!   the global epoch) **before** it reads L2; it fills L1 only while
//!   holding the stripe's mutex and only if the sequence and the epoch are
//!   unchanged ([`Guard::fill_lock`]).
//! - Every invalidation of a key bumps its stripe's sequence under the
//!   mutex and drops the L1 copy **after** that ([`Guard::bump_keys`]).
//!   So a fill either sees the bump and gives up, or finished its L1 write
//!   before the bump, and the drop that follows removes it.
//! - Invalidations of unknown keys (`clear`, `invalidate_tags`, a lost
//!   subscription) bump the global epoch under a write lock that every
//!   fill holds for reading ([`Guard::bump_all`]); the L1 clear follows.
//! - A `set` that wants to update L1 with its own value (write-through)
//!   bumps its stripe when it starts ([`Guard::begin_write`]) and again
//!   when it finishes ([`Guard::finish_write`]); it may store its value
//!   only if nothing else bumped the stripe or the epoch in between (it was
//!   alone), otherwise it drops the copy. Two overlapping writes of the
//!   same key thus never leave the older value in L1.
//!
//! - Every write of keys marks their stripes as *pending* before it
//!   drops their L1 copies and writes L2 ([`Guard::begin_writes`]), and
//!   unmarks them, bumping the sequence, when it ends or is dropped
//!   ([`Guard::end_writes`]). No fill is made on a pending stripe, so a
//!   reader that read L2 before a write landed cannot put the old value
//!   back in L1, even if the write's future is dropped half-way.
//!
//! Collisions of keys in one stripe only make the guard more conservative
//! (a fill or a write-through is skipped: a later miss, never a stale hit).

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard};

/// The number of stripes; a power of two.
const STRIPES: usize = 256;

struct Stripe {
    seq: AtomicU64,
    /// Writes of keys of this stripe in progress: no fill while any is.
    pending: AtomicU64,
    lock: Mutex<()>,
}

/// The state of the guard. See the module docs.
pub(super) struct Guard {
    stripes: Box<[Stripe]>,
    hasher: foldhash::fast::RandomState,
    /// Bumped by every invalidation of unknown keys; changed only under
    /// the write lock of `global`.
    epoch: AtomicU64,
    global: RwLock<()>,
    /// Whether L1 may serve hits and take fills; changed only under the
    /// write lock of `global`. False while the invalidation channel is not
    /// subscribed.
    serving: AtomicBool,
}

/// What a reader or a writer saw when it started.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ticket {
    stripe: usize,
    seq: u64,
    epoch: u64,
}

/// The locks held while L1 is changed for one key: the global lock for
/// reading and the key's stripe.
pub(super) struct Held<'a> {
    _global: RwLockReadGuard<'a, ()>,
    _stripe: MutexGuard<'a, ()>,
}

impl Guard {
    pub(super) fn new(serving: bool) -> Guard {
        Guard {
            stripes: (0..STRIPES)
                .map(|_| Stripe {
                    seq: AtomicU64::new(0),
                    pending: AtomicU64::new(0),
                    lock: Mutex::new(()),
                })
                .collect(),
            hasher: foldhash::fast::RandomState::default(),
            epoch: AtomicU64::new(0),
            global: RwLock::new(()),
            serving: AtomicBool::new(serving),
        }
    }

    fn stripe_of(&self, key: &str) -> usize {
        (self.hasher.hash_one(key) as usize) & (STRIPES - 1)
    }

    /// Whether L1 may serve hits now.
    pub(super) fn serving(&self) -> bool {
        self.serving.load(Ordering::SeqCst)
    }

    /// The ticket of a reader, taken before it reads L2.
    pub(super) fn snapshot(&self, key: &str) -> Ticket {
        let stripe = self.stripe_of(key);
        Ticket {
            stripe,
            seq: self.stripes[stripe].seq.load(Ordering::SeqCst),
            epoch: self.epoch.load(Ordering::SeqCst),
        }
    }

    /// The ticket of a write that may update L1 when it finishes, taken
    /// before it writes L2. Bumps the stripe, so that overlapping writes
    /// see each other.
    pub(super) fn begin_write(&self, key: &str) -> Ticket {
        let stripe = self.stripe_of(key);
        let seq = self.stripes[stripe].seq.fetch_add(1, Ordering::SeqCst) + 1;
        Ticket {
            stripe,
            seq,
            epoch: self.epoch.load(Ordering::SeqCst),
        }
    }

    /// The locks under which a reader may fill L1, or `None` if anything
    /// was invalidated since its ticket was taken (or L1 is not serving).
    pub(super) async fn fill_lock(&self, ticket: Ticket) -> Option<Held<'_>> {
        let global = self.global.read().await;
        if !self.serving() || self.epoch.load(Ordering::SeqCst) != ticket.epoch {
            return None;
        }
        let stripe = &self.stripes[ticket.stripe];
        let guard = stripe.lock.lock().await;
        // `pending` first: a write ends by bumping `seq`, then `pending`.
        if stripe.pending.load(Ordering::SeqCst) != 0
            || stripe.seq.load(Ordering::SeqCst) != ticket.seq
        {
            return None;
        }
        Some(Held {
            _global: global,
            _stripe: guard,
        })
    }

    /// Ends a write begun with [`begin_write`](Guard::begin_write): bumps
    /// the stripe and returns the locks under which L1 must be updated,
    /// with whether the write was alone (it may store its own value in L1;
    /// otherwise it must drop the L1 copy).
    pub(super) async fn finish_write(&self, ticket: Ticket) -> (Held<'_>, bool) {
        let global = self.global.read().await;
        let stripe = &self.stripes[ticket.stripe];
        let guard = stripe.lock.lock().await;
        let alone = self.serving()
            && self.epoch.load(Ordering::SeqCst) == ticket.epoch
            && stripe.seq.load(Ordering::SeqCst) == ticket.seq;
        stripe.seq.fetch_add(1, Ordering::SeqCst);
        (
            Held {
                _global: global,
                _stripe: guard,
            },
            alone,
        )
    }

    /// The stripes of `keys`, each once.
    fn stripes_of(&self, keys: &[&str]) -> Vec<usize> {
        let mut stripes: Vec<usize> = keys.iter().map(|key| self.stripe_of(key)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        stripes
    }

    /// Marks writes of `keys` as in progress: until
    /// [`end_writes`](Guard::end_writes) with the stripes returned, no fill
    /// of them is made (a reader may have read L2 before the write landed).
    pub(super) fn begin_writes(&self, keys: &[&str]) -> Vec<usize> {
        let stripes = self.stripes_of(keys);
        for &index in &stripes {
            self.stripes[index].pending.fetch_add(1, Ordering::SeqCst);
        }
        stripes
    }

    /// Ends writes begun with [`begin_writes`](Guard::begin_writes):
    /// synchronous, so that a dropped write ends too. Bumps each stripe
    /// first, so that readers that started during the write fill nothing.
    pub(super) fn end_writes(&self, stripes: &[usize]) {
        for &index in stripes {
            let stripe = &self.stripes[index];
            stripe.seq.fetch_add(1, Ordering::SeqCst);
            stripe.pending.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Bumps the stripes of `keys` (each once), waiting for fills in
    /// progress on them. The caller drops the L1 copies afterwards.
    pub(super) async fn bump_keys(&self, keys: &[&str]) {
        for index in self.stripes_of(keys) {
            let stripe = &self.stripes[index];
            let _guard = stripe.lock.lock().await;
            stripe.seq.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Bumps the global epoch, waiting for every fill in progress, and sets
    /// whether L1 may serve (`None`: unchanged). The caller clears or
    /// invalidates L1 afterwards.
    pub(super) async fn bump_all(&self, serving: Option<bool>) {
        let _global = self.global.write().await;
        self.epoch.fetch_add(1, Ordering::SeqCst);
        if let Some(serving) = serving {
            self.serving.store(serving, Ordering::SeqCst);
        }
    }
}
