//! Time-to-idle bookkeeping of one shard, kept beside the slab (one slot
//! per slab slot) so that an engine without a time-to-idle pays nothing
//! per entry.
//!
//! A read only stores the time of the access, under the shard's read lock.
//! The expiry index is not moved on reads: an entry sits in it under the
//! time it was due when last scheduled, and when that time comes the purge
//! either removes it (idle, or past its TTL) or schedules it again at its
//! new due time.

use std::sync::atomic::{AtomicU64, Ordering};

use super::shard::Index;

#[derive(Debug)]
pub(super) struct IdleTimes {
    /// The time-to-idle in engine milliseconds (at least 1).
    tti: u64,
    /// The last read or write of each slot, in engine milliseconds.
    last_access: Vec<AtomicU64>,
    /// The time under which each slot sits in the expiry index.
    scheduled: Vec<u64>,
}

impl IdleTimes {
    pub(super) fn new(tti: u64) -> Self {
        IdleTimes {
            tti,
            last_access: Vec::new(),
            scheduled: Vec::new(),
        }
    }

    /// Records a read or write of the entry in `index` at `now`; called
    /// under the read lock for reads.
    pub(super) fn touch(&self, index: Index, now: u64) {
        if let Some(last) = self.last_access.get(index as usize)
            && last.load(Ordering::Relaxed) < now
        {
            // Readers race under the read lock: a plain store could put
            // back an earlier time than another reader's, and the entry
            // would go idle before its time-to-idle after the last read.
            last.fetch_max(now, Ordering::Relaxed);
        }
    }

    /// Records the write of a new entry in `index`, growing the slots with
    /// the slab.
    pub(super) fn insert(&mut self, index: Index, now: u64) {
        let index = index as usize;
        if self.last_access.len() <= index {
            self.last_access
                .resize_with(index + 1, || AtomicU64::new(0));
            self.scheduled.resize(index + 1, 0);
        }
        self.last_access[index].store(now, Ordering::Relaxed);
        self.scheduled[index] = 0;
    }

    /// When the entry in `index` becomes idle: its last access plus the
    /// time-to-idle. Like a deadline, it is still live during that
    /// millisecond.
    pub(super) fn idle_at(&self, index: Index) -> u64 {
        self.last_access
            .get(index as usize)
            .map_or(0, |last| last.load(Ordering::Relaxed))
            .saturating_add(self.tti)
    }

    /// The time under which the entry in `index` sits in the expiry index.
    pub(super) fn scheduled(&self, index: Index) -> u64 {
        self.scheduled.get(index as usize).copied().unwrap_or(0)
    }

    pub(super) fn set_scheduled(&mut self, index: Index, at: u64) {
        if let Some(slot) = self.scheduled.get_mut(index as usize) {
            *slot = at;
        }
    }
}
