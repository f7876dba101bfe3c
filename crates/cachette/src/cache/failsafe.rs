//! The in-process copies that fail-safe falls back on when the backend
//! itself fails, the throttle after a fail-safe activation, and the pace
//! of the recovery attempts during a throttle.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;

use parking_lot::Mutex;
use tokio::time::Instant;

use super::clock::{later, millis};
use super::entry::Found;
use super::options::FailSafe;

const SHARDS: usize = 16;

/// The last value seen per key (only values with a `created` time), bounded
/// by a number of entries, oldest insertion evicted first.
#[derive(Debug)]
pub(super) struct LocalCopies {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    hasher: foldhash::fast::FixedState,
}

#[derive(Debug, Default)]
struct Shard {
    map: HashMap<String, LocalCopy>,
    /// Insertion order, with the sequence number of the insertion so that
    /// a key removed and inserted again is not evicted by its old place.
    order: VecDeque<(String, u64)>,
    next_seq: u64,
}

#[derive(Debug)]
struct LocalCopy {
    found: Found,
    created: u64,
    throttled_until: Option<Instant>,
    /// While throttled: when the next recovery attempt is due.
    next_attempt: Option<Instant>,
    seq: u64,
}

/// A throttled key's kept value, and whether a recovery attempt is due.
#[derive(Debug)]
pub(super) struct Throttled {
    pub(super) found: Found,
    /// This caller's turn to start a recovery attempt (one per interval).
    pub(super) attempt: bool,
}

impl LocalCopies {
    pub(super) fn new(capacity: usize) -> Self {
        LocalCopies {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            hasher: foldhash::fast::FixedState::with_seed(0x5eed),
        }
    }

    fn shard(&self, key: &str) -> &Mutex<Shard> {
        let index = (self.hasher.hash_one(key) as usize) % SHARDS;
        &self.shards[index]
    }

    /// Keeps `found` as the fallback of `key`. An unchanged value keeps its
    /// throttle; a new one clears it.
    pub(super) fn remember(&self, key: &str, found: &Found) {
        let Some(created) = found.created else {
            return;
        };
        let mut shard = self.shard(key).lock();
        if let Some(copy) = shard.map.get_mut(key) {
            if copy.created != created {
                copy.found = found.clone();
                copy.created = created;
                copy.throttled_until = None;
                copy.next_attempt = None;
            }
            return;
        }
        shard.insert(key, found.clone(), created, None, self.per_shard);
    }

    /// Keeps `found` as the fallback of `key`, throttled for
    /// `fail_safe.throttle`, with the first recovery attempt due after
    /// `fail_safe.recovery`.
    pub(super) fn throttle(&self, key: &str, found: &Found, fail_safe: FailSafe) {
        let Some(created) = found.created else {
            return;
        };
        let until = later(fail_safe.throttle);
        let next_attempt = later(fail_safe.recovery);
        let mut shard = self.shard(key).lock();
        if let Some(copy) = shard.map.get_mut(key) {
            copy.found = found.clone();
            copy.created = created;
            copy.throttled_until = Some(until);
            copy.next_attempt = Some(next_attempt);
            return;
        }
        shard.insert(key, found.clone(), created, Some(until), self.per_shard);
        if let Some(copy) = shard.map.get_mut(key) {
            copy.next_attempt = Some(next_attempt);
        }
    }

    /// The copy of a throttled `key` younger than the maximum age, if its
    /// throttle lasts; a due recovery attempt is given to this caller
    /// alone (the next one is due an interval later).
    pub(super) fn throttled(
        &self,
        key: &str,
        now_ms: u64,
        fail_safe: FailSafe,
    ) -> Option<Throttled> {
        let found = self.get(key, now_ms, millis(fail_safe.max_age), true)?;
        let mut shard = self.shard(key).lock();
        let copy = shard.map.get_mut(key)?;
        let now = Instant::now();
        let attempt = copy.next_attempt.is_some_and(|due| due <= now);
        if attempt {
            copy.next_attempt = Some(later(fail_safe.recovery));
        }
        Some(Throttled { found, attempt })
    }

    /// The copy of `key` if it is younger than `max_age_ms` at `now_ms`;
    /// with `throttled_only`, only while its throttle lasts.
    pub(super) fn get(
        &self,
        key: &str,
        now_ms: u64,
        max_age_ms: u64,
        throttled_only: bool,
    ) -> Option<Found> {
        let mut shard = self.shard(key).lock();
        let copy = shard.map.get(key)?;
        if now_ms.saturating_sub(copy.created) >= max_age_ms {
            shard.map.remove(key);
            return None;
        }
        if throttled_only && copy.throttled_until.is_none_or(|t| t <= Instant::now()) {
            return None;
        }
        Some(copy.found.clone())
    }

    /// Ends the throttle of `key` (a load of it succeeded), keeping its
    /// copy as the fallback.
    pub(super) fn end_throttle(&self, key: &str) {
        if let Some(copy) = self.shard(key).lock().map.get_mut(key) {
            copy.throttled_until = None;
            copy.next_attempt = None;
        }
    }

    pub(super) fn forget(&self, key: &str) {
        self.shard(key).lock().map.remove(key);
    }

    pub(super) fn clear(&self) {
        for shard in &self.shards {
            let mut shard = shard.lock();
            shard.map.clear();
            shard.order.clear();
        }
    }
}

impl Shard {
    fn insert(
        &mut self,
        key: &str,
        found: Found,
        created: u64,
        throttled_until: Option<Instant>,
        capacity: usize,
    ) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.map.insert(
            key.to_owned(),
            LocalCopy {
                found,
                created,
                throttled_until,
                next_attempt: None,
                seq,
            },
        );
        self.order.push_back((key.to_owned(), seq));
        while self.map.len() > capacity {
            let Some((oldest, oldest_seq)) = self.order.pop_front() else {
                break;
            };
            if self.map.get(&oldest).is_some_and(|c| c.seq == oldest_seq) {
                self.map.remove(&oldest);
            }
        }
        // Forgotten keys leave their place in the queue behind; drop those
        // places before the queue outgrows the map.
        if self.order.len() > 2 * capacity {
            let map = &self.map;
            self.order
                .retain(|(key, seq)| map.get(key).is_some_and(|c| c.seq == *seq));
        }
    }
}
