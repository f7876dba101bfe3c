//! One shard of the memory engine: a slab of entries, a hash table of slab
//! indices, the policy's intrusive queues, the expiry index and the tag
//! index. Everything here runs under the shard's lock; the only state
//! touched under the read lock is an entry's atomic frequency counter.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use bytes::Bytes;
use hashbrown::{HashMap, HashSet, HashTable};

use super::Policy;
use super::ghost::Ghost;
use super::idle::IdleTimes;
use super::listener::{RemovalCause, Removed};
use super::sketch::FrequencySketch;
use crate::backends::common::{Event, Tally};

/// A slab index; `NIL` ends a list.
pub(super) type Index = u32;
pub(super) const NIL: Index = u32::MAX;

/// Which queue an entry is on. Every policy but S3-FIFO uses `MAIN` only.
const MAIN: u8 = 0;
const SMALL: u8 = 1;

/// The S3-FIFO small queue's share of the bound: one part in this many.
const SMALL_QUEUE_DIVISOR: u64 = 20;

/// The S3-FIFO frequency cap (2 bits).
const MAX_FREQ: u8 = 3;

/// Why an entry left the cache; decides which counter moves and what the
/// removal listener is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Removal {
    Deleted,
    Evicted,
    Expired,
    Invalidated,
}

impl Removal {
    fn counted_as(self) -> Event {
        match self {
            Removal::Deleted => Event::Delete,
            Removal::Evicted => Event::Eviction,
            Removal::Expired => Event::Expiration,
            Removal::Invalidated => Event::Invalidation,
        }
    }

    fn cause(self) -> RemovalCause {
        match self {
            Removal::Deleted => RemovalCause::Removed,
            Removal::Evicted => RemovalCause::Evicted,
            Removal::Expired => RemovalCause::Expired,
            Removal::Invalidated => RemovalCause::Invalidated,
        }
    }
}

#[derive(Debug)]
pub(super) struct Entry {
    pub(super) key: Box<str>,
    pub(super) value: Bytes,
    /// Absolute deadline in engine milliseconds; 0 = never.
    pub(super) deadline: u64,
    pub(super) hash: u64,
    pub(super) weight: u64,
    /// SIEVE's visited bit or S3-FIFO's frequency; written under the read
    /// lock, hence atomic.
    pub(super) freq: AtomicU8,
    queue: u8,
    /// Toward the head (newer).
    prev: Index,
    /// Toward the tail (older).
    next: Index,
    pub(super) tags: Box<[Arc<str>]>,
}

impl Entry {
    /// Whether the deadline has passed. `now` is rounded down to whole
    /// milliseconds, so an entry lives through the millisecond of its
    /// deadline: it expires up to 1 ms late, never early.
    pub(super) fn is_expired(&self, now: u64) -> bool {
        self.deadline != 0 && self.deadline < now
    }

    /// Records a hit; called under the read lock.
    pub(super) fn record_hit(&self, policy: Policy) {
        match policy {
            Policy::Sieve => {
                if self.freq.load(Ordering::Relaxed) == 0 {
                    self.freq.store(1, Ordering::Relaxed);
                }
            }
            Policy::S3Fifo => {
                let freq = self.freq.load(Ordering::Relaxed);
                if freq < MAX_FREQ {
                    // A lost update under a race only undercounts a hit.
                    self.freq.store(freq + 1, Ordering::Relaxed);
                }
            }
            Policy::Lru | Policy::Fifo => {}
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct List {
    head: Index,
    tail: Index,
    /// Wider than an entry's weight, so that the weights of a custom
    /// weigher add up without overflow in an unbounded shard.
    weight: u128,
    len: u64,
}

impl List {
    const EMPTY: List = List {
        head: NIL,
        tail: NIL,
        weight: 0,
        len: 0,
    };
}

/// The outcome of [`ShardInner::store`].
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Stored {
    Written,
    ConditionFailed,
    /// The entry alone outweighs the shard's byte bound.
    TooHeavy {
        weight: u64,
        limit: u64,
    },
}

/// What a write changes besides the value.
#[derive(Debug, Clone, Copy)]
pub(super) enum DeadlineUpdate {
    /// Replace the deadline (0 = none).
    Set(u64),
    /// Keep the existing entry's deadline; a new entry gets this one.
    KeepOr(u64),
}

/// What a shard is built with.
#[derive(Debug, Clone, Copy)]
pub(super) struct ShardConfig {
    pub(super) policy: Policy,
    pub(super) max_entries: u64,
    pub(super) max_weight: u64,
    /// The time-to-idle in engine milliseconds; 0 = none.
    pub(super) time_to_idle: u64,
    /// Whether removed entries are kept for a removal listener.
    pub(super) notify: bool,
}

#[derive(Debug)]
pub(super) struct ShardInner {
    config: ShardConfig,
    policy: Policy,
    table: HashTable<Index>,
    slots: Vec<Option<Entry>>,
    free: Vec<Index>,
    queues: [List; 2],
    /// SIEVE's hand: the next candidate, moving from tail to head.
    hand: Index,
    ghost: Ghost,
    /// S3-FIFO's admission sketch (`None` for the other policies and for
    /// an unbounded shard, which never evicts).
    sketch: Option<FrequencySketch>,
    expiry: BTreeSet<(u64, Index)>,
    tags: HashMap<Arc<str>, HashSet<Index>>,
    max_entries: u64,
    max_weight: u64,
    /// Last accesses for the time-to-idle, if there is one.
    idle: Option<IdleTimes>,
    /// What left the shard under the current lock hold, for the removal
    /// listener (always empty without one).
    removed: Vec<Removed>,
    /// Counted under the write lock: plain integers.
    pub(super) counters: Tally,
}

/// The per-entry overhead counted in an entry's weight: the entry itself,
/// its slot in the hash table and in the expiry index, rounded up.
pub(super) const ENTRY_OVERHEAD: u64 = 128;

/// The weight of an entry: what it costs in memory, approximately.
pub(super) fn weight_of(key: &str, value: &[u8], tags: &[String]) -> u64 {
    let tags: usize = tags.iter().map(|t| t.len() + 16).sum();
    (key.len() + value.len() + tags) as u64 + ENTRY_OVERHEAD
}

impl ShardInner {
    pub(super) fn new(config: ShardConfig) -> Self {
        let ShardConfig {
            policy,
            max_entries,
            max_weight,
            time_to_idle,
            notify: _,
        } = config;
        let ghost_capacity = if max_entries == u64::MAX {
            0
        } else {
            max_entries
        };
        ShardInner {
            config,
            policy,
            table: HashTable::new(),
            slots: Vec::new(),
            free: Vec::new(),
            queues: [List::EMPTY; 2],
            hand: NIL,
            ghost: Ghost::new(ghost_capacity),
            sketch: admission_sketch(policy, max_entries, max_weight),
            expiry: BTreeSet::new(),
            tags: HashMap::new(),
            max_entries,
            max_weight,
            idle: (time_to_idle != 0).then(|| IdleTimes::new(time_to_idle)),
            removed: Vec::new(),
            counters: Tally::default(),
        }
    }

    pub(super) fn len(&self) -> u64 {
        self.queues[0].len + self.queues[1].len
    }

    /// The total weight, saturated to `u64` (only an unbounded shard with
    /// a custom weigher can exceed it).
    pub(super) fn weight(&self) -> u64 {
        u64::try_from(self.total_weight()).unwrap_or(u64::MAX)
    }

    fn total_weight(&self) -> u128 {
        self.queues[0].weight + self.queues[1].weight
    }

    /// Whether `extra` more weight would exceed the bound (`u64::MAX`
    /// stands for none: a custom weigher's weights may add up beyond it).
    fn over_bound_with(&self, extra: u64) -> bool {
        self.max_weight != u64::MAX
            && self.total_weight() + u128::from(extra) > u128::from(self.max_weight)
    }

    /// The time-to-idle bookkeeping, if the engine has a time-to-idle.
    pub(super) fn idle(&self) -> Option<&IdleTimes> {
        self.idle.as_ref()
    }

    /// Whether the entry in `index` has expired at `now`: past its deadline
    /// or, with a time-to-idle, not accessed for that long.
    pub(super) fn is_expired(&self, index: Index, now: u64) -> bool {
        self.slot(index).is_expired(now)
            || self
                .idle
                .as_ref()
                .is_some_and(|idle| idle.idle_at(index) < now)
    }

    /// When the entry in `index` expires unless accessed meanwhile (0 =
    /// never): its deadline, or the earlier of its deadline and the end of
    /// its time-to-idle.
    pub(super) fn due(&self, index: Index) -> u64 {
        let deadline = self.slot(index).deadline;
        match &self.idle {
            None => deadline,
            Some(idle) if deadline == 0 => idle.idle_at(index),
            Some(idle) => deadline.min(idle.idle_at(index)),
        }
    }

    /// Takes what left the shard under this lock hold, so that the caller
    /// tells the listener after releasing the lock.
    pub(super) fn take_removed(&mut self) -> Vec<Removed> {
        std::mem::take(&mut self.removed)
    }

    pub(super) fn find(&self, hash: u64, key: &str) -> Option<Index> {
        self.table
            .find(hash, |&i| self.slot(i).key.as_ref() == key)
            .copied()
    }

    pub(super) fn entry(&self, index: Index) -> &Entry {
        self.slot(index)
    }

    fn slot(&self, index: Index) -> &Entry {
        match &self.slots[index as usize] {
            Some(entry) => entry,
            None => unreachable_slot(index),
        }
    }

    fn slot_mut(&mut self, index: Index) -> &mut Entry {
        match &mut self.slots[index as usize] {
            Some(entry) => entry,
            None => unreachable_slot(index),
        }
    }

    /// Finds a live entry; an expired one is removed and counted.
    pub(super) fn find_live(&mut self, hash: u64, key: &str, now: u64) -> Option<Index> {
        let index = self.find(hash, key)?;
        if self.is_expired(index, now) {
            self.remove(index, Removal::Expired);
            return None;
        }
        Some(index)
    }

    /// Writes an entry. `tags: None` keeps the tags of an existing entry;
    /// `weight: None` weighs it by [`weight_of`] (a custom weigher's weight
    /// is computed by the caller, outside the lock).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn store(
        &mut self,
        hash: u64,
        key: &str,
        value: Bytes,
        weight: Option<u64>,
        deadline: DeadlineUpdate,
        tags: Option<&[String]>,
        condition: crate::SetCondition,
        now: u64,
    ) -> Stored {
        use crate::SetCondition;

        self.purge_expired(now, 2);
        let existing = self.find_live(hash, key, now);
        match (condition, existing) {
            (SetCondition::IfAbsent, Some(_)) | (SetCondition::IfPresent, None) => {
                return Stored::ConditionFailed;
            }
            _ => {}
        }
        let kept_tags: Vec<String>;
        let tags: &[String] = match (tags, existing) {
            (Some(tags), _) => tags,
            (None, Some(index)) => {
                kept_tags = self
                    .slot(index)
                    .tags
                    .iter()
                    .map(|t| t.to_string())
                    .collect();
                &kept_tags
            }
            (None, None) => &[],
        };
        let weight = weight.unwrap_or_else(|| weight_of(key, &value, tags));
        if weight > self.max_weight {
            return Stored::TooHeavy {
                weight,
                limit: self.max_weight,
            };
        }
        match existing {
            Some(index) => self.overwrite(index, value, weight, deadline, tags, now),
            None => self.insert(hash, key, value, weight, deadline, tags, now),
        }
        Stored::Written
    }

    #[allow(clippy::too_many_arguments)]
    fn overwrite(
        &mut self,
        index: Index,
        value: Bytes,
        weight: u64,
        deadline: DeadlineUpdate,
        tags: &[String],
        now: u64,
    ) {
        self.counters.bump(Event::Update);
        self.unlink_tags(index);
        let scheduled = self.scheduled(index);
        let new_deadline = match deadline {
            DeadlineUpdate::Set(d) => d,
            DeadlineUpdate::KeepOr(_) => self.slot(index).deadline,
        };
        let interned = self.link_tags(index, tags);
        let old_weight = self.slot(index).weight;
        let queue = self.slot(index).queue as usize;
        let notify = self.config.notify;
        let replaced = {
            let entry = self.slot_mut(index);
            let old_value = std::mem::replace(&mut entry.value, value);
            entry.deadline = new_deadline;
            entry.weight = weight;
            entry.tags = interned;
            notify.then(|| (entry.key.clone(), old_value, RemovalCause::Replaced))
        };
        self.removed.extend(replaced);
        if let Some(idle) = &self.idle {
            idle.touch(index, now);
        }
        self.reschedule(index, scheduled);
        self.queues[queue].weight =
            self.queues[queue].weight - u128::from(old_weight) + u128::from(weight);
        // Overwriting never evicts another entry when the entry did not grow
        // (always so under an entry-count bound). A heavier value makes room
        // for the difference only; the overwritten entry itself is never the
        // victim, so it is taken off its queue while the policy chooses.
        if self.over_bound_with(0) {
            self.unlink(index);
            while self.over_bound_with(weight) {
                if !self.evict_one() {
                    break;
                }
            }
            self.push_head(queue as u8, index);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn insert(
        &mut self,
        hash: u64,
        key: &str,
        value: Bytes,
        weight: u64,
        deadline: DeadlineUpdate,
        tags: &[String],
        now: u64,
    ) {
        while self.len() + 1 > self.max_entries || self.over_bound_with(weight) {
            if !self.evict_one() {
                break;
            }
        }
        self.counters.bump(Event::Insert);
        let deadline = match deadline {
            DeadlineUpdate::Set(d) | DeadlineUpdate::KeepOr(d) => d,
        };
        let entry = Entry {
            key: key.into(),
            value,
            deadline,
            hash,
            weight,
            freq: AtomicU8::new(0),
            queue: MAIN,
            prev: NIL,
            next: NIL,
            tags: Box::new([]),
        };
        let index = match self.free.pop() {
            Some(index) => {
                self.slots[index as usize] = Some(entry);
                index
            }
            None => {
                self.slots.push(Some(entry));
                (self.slots.len() - 1) as Index
            }
        };
        let slots = &self.slots;
        self.table
            .insert_unique(hash, index, |&i| match &slots[i as usize] {
                Some(entry) => entry.hash,
                None => unreachable_slot(i),
            });
        if let Some(idle) = &mut self.idle {
            idle.insert(index, now);
        }
        self.reschedule(index, 0);
        let interned = self.link_tags(index, tags);
        self.slot_mut(index).tags = interned;
        let live = self.len() + 1;
        if let Some(sketch) = &mut self.sketch {
            sketch.ensure_capacity(live);
            sketch.add(hash, 1);
        }
        let queue = match self.policy {
            Policy::S3Fifo if !self.ghost.take(hash) => SMALL,
            _ => MAIN,
        };
        self.push_head(queue, index);
    }

    /// Removes an entry from every structure, counts why, and keeps it for
    /// the removal listener if there is one.
    pub(super) fn remove(&mut self, index: Index, why: Removal) {
        self.unlink(index);
        self.unlink_tags(index);
        let hash = self.slot(index).hash;
        if let Ok(found) = self.table.find_entry(hash, |&i| i == index) {
            found.remove();
        }
        let scheduled = self.scheduled(index);
        if scheduled != 0 {
            self.expiry.remove(&(scheduled, index));
        }
        let entry = match self.slots[index as usize].take() {
            Some(entry) => entry,
            None => unreachable_slot(index),
        };
        self.free.push(index);
        self.counters.bump(why.counted_as());
        if self.config.notify {
            self.removed.push((entry.key, entry.value, why.cause()));
        }
    }

    /// Replaces an entry's deadline (0 = none); counts as an access for the
    /// time-to-idle.
    pub(super) fn set_deadline(&mut self, index: Index, deadline: u64, now: u64) {
        let scheduled = self.scheduled(index);
        self.slot_mut(index).deadline = deadline;
        if let Some(idle) = &self.idle {
            idle.touch(index, now);
        }
        self.reschedule(index, scheduled);
    }

    /// The time under which an entry sits in the expiry index (0 = not
    /// in it): its deadline, unless a time-to-idle schedules it.
    fn scheduled(&self, index: Index) -> u64 {
        match &self.idle {
            None => self.slot(index).deadline,
            Some(idle) => idle.scheduled(index),
        }
    }

    /// Moves an entry in the expiry index from `from` (0 = not in it) to
    /// the time it is now due.
    fn reschedule(&mut self, index: Index, from: u64) {
        let to = self.due(index);
        if from != to {
            if from != 0 {
                self.expiry.remove(&(from, index));
            }
            if to != 0 {
                self.expiry.insert((to, index));
            }
        }
        if let Some(idle) = &mut self.idle {
            idle.set_scheduled(index, to);
        }
    }

    /// Removes up to `limit` expired entries, earliest first. Returns how
    /// many were removed and whether more are due. An entry due for its
    /// time-to-idle but read since is scheduled again at its new time
    /// instead (which counts toward `limit`, bounding the lock hold).
    pub(super) fn purge_expired(&mut self, now: u64, limit: usize) -> (u64, bool) {
        let mut removed = 0;
        let mut steps = 0;
        while let Some(&(scheduled, index)) = self.expiry.first() {
            if scheduled >= now {
                return (removed, false);
            }
            if steps >= limit {
                return (removed, true);
            }
            steps += 1;
            if self.is_expired(index, now) {
                self.remove(index, Removal::Expired);
                removed += 1;
            } else {
                // Only a time-to-idle moves the due time after scheduling,
                // and always later: the entry lands at or after `now`.
                self.reschedule(index, scheduled);
            }
        }
        (removed, false)
    }

    /// Removes every entry tagged with `tag`; returns how many live ones
    /// there were (expired ones go too, counted as expirations).
    pub(super) fn invalidate_tag(&mut self, tag: &str, now: u64) -> u64 {
        let Some(indices) = self.tags.get(tag) else {
            return 0;
        };
        let indices: Vec<Index> = indices.iter().copied().collect();
        let mut invalidated = 0;
        for index in indices {
            if self.is_expired(index, now) {
                self.remove(index, Removal::Expired);
            } else {
                self.remove(index, Removal::Invalidated);
                invalidated += 1;
            }
        }
        invalidated
    }

    /// Empties the shard (counters stay) and returns the old contents, so
    /// that the caller frees them (and tells the listener) after releasing
    /// the lock.
    pub(super) fn take_all(&mut self) -> ShardInner {
        let mut emptied = ShardInner::new(self.config);
        emptied.counters = self.counters;
        std::mem::replace(self, emptied)
    }

    /// What `clear` removed from this shard's old contents, for the
    /// listener: each live entry as cleared, each expired one as expired.
    pub(super) fn into_cleared(mut self, now: u64) -> Vec<Removed> {
        let mut removed = self.take_removed();
        for index in 0..self.slots.len() as Index {
            if self.slots[index as usize].is_none() {
                continue;
            }
            let cause = if self.is_expired(index, now) {
                RemovalCause::Expired
            } else {
                RemovalCause::Cleared
            };
            if let Some(entry) = self.slots[index as usize].take() {
                removed.push((entry.key, entry.value, cause));
            }
        }
        removed
    }

    /// Moves an entry to the head of its queue (LRU's reorder on hit).
    pub(super) fn move_to_head(&mut self, index: Index) {
        let queue = self.slot(index).queue;
        if self.queues[queue as usize].head == index {
            return;
        }
        self.unlink(index);
        self.push_head(queue, index);
    }

    /// The live entries in slots `from..from + count`, for key listing in
    /// chunks, and the slot to continue from (`None` at the end). An entry
    /// keeps its slot for as long as it is stored.
    pub(super) fn live_entries_from(
        &self,
        from: usize,
        count: usize,
        now: u64,
    ) -> (impl Iterator<Item = &Entry>, Option<usize>) {
        let end = from.saturating_add(count).min(self.slots.len());
        let next = (end < self.slots.len()).then_some(end);
        let entries = self
            .slots
            .get(from..end)
            .unwrap_or_default()
            .iter()
            .enumerate()
            .filter_map(move |(offset, slot)| {
                let entry = slot.as_ref()?;
                let index = (from + offset) as Index;
                (!self.is_expired(index, now)).then_some(entry)
            });
        (entries, next)
    }

    /// Distinct tags in the index.
    pub(super) fn tag_count(&self) -> usize {
        self.tags.len()
    }

    /// The number of indexed entries per tag, for checks of the index.
    #[cfg(test)]
    pub(super) fn tag_index(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = self
            .tags
            .iter()
            .map(|(tag, indices)| {
                let mut keys: Vec<String> = indices
                    .iter()
                    .map(|&i| self.slot(i).key.to_string())
                    .collect();
                keys.sort();
                (tag.to_string(), keys)
            })
            .collect();
        out.sort();
        out
    }

    /// Checks every internal invariant; for tests.
    #[cfg(test)]
    pub(super) fn check_invariants(&self) {
        let live = self.slots.iter().flatten().count() as u64;
        assert_eq!(live, self.len(), "queue lengths disagree with the slab");
        assert_eq!(
            self.table.len() as u64,
            live,
            "table size disagrees with the slab"
        );
        let weight: u128 = self
            .slots
            .iter()
            .flatten()
            .map(|e| u128::from(e.weight))
            .sum();
        assert_eq!(
            weight,
            self.total_weight(),
            "queue weights disagree with the slab"
        );
        assert!(self.len() <= self.max_entries, "entry bound exceeded");
        assert!(!self.over_bound_with(0), "byte bound exceeded");
        let scheduled: Vec<(u64, Index)> = (0..self.slots.len() as Index)
            .filter(|&i| self.slots[i as usize].is_some())
            .map(|i| (self.scheduled(i), i))
            .filter(|&(at, _)| at != 0)
            .collect();
        assert_eq!(
            self.expiry.len(),
            scheduled.len(),
            "expiry index is not exact"
        );
        assert!(
            scheduled.iter().all(|key| self.expiry.contains(key)),
            "expiry index is not exact"
        );
        let tagged: usize = self.slots.iter().flatten().map(|e| e.tags.len()).sum();
        let indexed: usize = self.tags.values().map(|s| s.len()).sum();
        assert_eq!(tagged, indexed, "tag index is not exact");
        assert!(
            self.tags.values().all(|s| !s.is_empty()),
            "tag index keeps empty tags"
        );
        for queue in 0..2 {
            let mut count = 0;
            let mut cursor = self.queues[queue].head;
            while cursor != NIL {
                count += 1;
                cursor = self.slot(cursor).next;
            }
            assert_eq!(count, self.queues[queue].len, "queue {queue} is broken");
        }
    }

    // --- tags -------------------------------------------------------------

    fn link_tags(&mut self, index: Index, tags: &[String]) -> Box<[Arc<str>]> {
        let mut interned: Vec<Arc<str>> = Vec::with_capacity(tags.len());
        for tag in tags {
            if interned.iter().any(|t| t.as_ref() == tag.as_str()) {
                continue;
            }
            let shared = match self.tags.get_key_value(tag.as_str()) {
                Some((shared, _)) => shared.clone(),
                None => Arc::from(tag.as_str()),
            };
            self.tags.entry(shared.clone()).or_default().insert(index);
            interned.push(shared);
        }
        interned.into_boxed_slice()
    }

    fn unlink_tags(&mut self, index: Index) {
        let tags = std::mem::take(&mut self.slot_mut(index).tags);
        for tag in tags.iter() {
            if let Some(indices) = self.tags.get_mut(tag.as_ref()) {
                indices.remove(&index);
                if indices.is_empty() {
                    self.tags.remove(tag.as_ref());
                }
            }
        }
    }

    // --- queues -----------------------------------------------------------

    fn push_head(&mut self, queue: u8, index: Index) {
        let old_head = self.queues[queue as usize].head;
        let weight = {
            let entry = self.slot_mut(index);
            entry.queue = queue;
            entry.prev = NIL;
            entry.next = old_head;
            entry.weight
        };
        if old_head != NIL {
            self.slot_mut(old_head).prev = index;
        }
        let list = &mut self.queues[queue as usize];
        list.head = index;
        if list.tail == NIL {
            list.tail = index;
        }
        list.len += 1;
        list.weight += u128::from(weight);
    }

    fn unlink(&mut self, index: Index) {
        let (queue, prev, next, weight) = {
            let entry = self.slot(index);
            (entry.queue as usize, entry.prev, entry.next, entry.weight)
        };
        if self.hand == index {
            self.hand = prev;
        }
        if prev != NIL {
            self.slot_mut(prev).next = next;
        } else {
            self.queues[queue].head = next;
        }
        if next != NIL {
            self.slot_mut(next).prev = prev;
        } else {
            self.queues[queue].tail = prev;
        }
        let entry = self.slot_mut(index);
        entry.prev = NIL;
        entry.next = NIL;
        let list = &mut self.queues[queue];
        list.len -= 1;
        list.weight -= u128::from(weight);
    }

    // --- eviction ---------------------------------------------------------

    /// Evicts one entry by the policy. Returns false if nothing is left.
    fn evict_one(&mut self) -> bool {
        let victim = match self.policy {
            Policy::Lru | Policy::Fifo => self.queues[MAIN as usize].tail,
            Policy::Sieve => self.sieve_victim(),
            Policy::S3Fifo => self.s3fifo_victim(),
        };
        if victim == NIL {
            return false;
        }
        let hash = self.slot(victim).hash;
        let from_small = self.slot(victim).queue == SMALL;
        self.remove(victim, Removal::Evicted);
        if from_small {
            let live = self.len();
            self.ghost.insert(hash, live);
        }
        true
    }

    fn sieve_victim(&mut self) -> Index {
        let tail = self.queues[MAIN as usize].tail;
        if tail == NIL {
            return NIL;
        }
        let mut cursor = if self.hand == NIL { tail } else { self.hand };
        loop {
            let entry = self.slot(cursor);
            if entry.freq.load(Ordering::Relaxed) == 0 {
                // `unlink` moves the hand on to the victim's neighbour.
                self.hand = cursor;
                return cursor;
            }
            entry.freq.store(0, Ordering::Relaxed);
            cursor = if entry.prev == NIL { tail } else { entry.prev };
        }
    }

    fn s3fifo_victim(&mut self) -> Index {
        // The small queue holds a twentieth of the shard's bound: the
        // hit-ratio lab (docs/benchmarks.md) found 5 % better than the
        // paper's 10 % on every Zipf case, at a cost of 0.05 points on the
        // mean over the traces.
        let small_target_weight = u128::from(self.max_weight / SMALL_QUEUE_DIVISOR);
        let small_target_len = self.max_entries / SMALL_QUEUE_DIVISOR;
        loop {
            let small = self.queues[SMALL as usize];
            let main = self.queues[MAIN as usize];
            let from_small = small.len > 0
                && (main.len == 0
                    || small.weight > small_target_weight
                    || small.len > small_target_len);
            if from_small {
                let candidate = small.tail;
                let entry = self.slot(candidate);
                let freq = entry.freq.load(Ordering::Relaxed);
                if freq > 0 || self.admits(candidate, main.tail) {
                    let hash = entry.hash;
                    entry.freq.store(0, Ordering::Relaxed);
                    self.count_hits(hash, freq);
                    self.unlink(candidate);
                    self.push_head(MAIN, candidate);
                    continue;
                }
                return candidate;
            }
            let candidate = main.tail;
            if candidate == NIL {
                return NIL;
            }
            let entry = self.slot(candidate);
            let freq = entry.freq.load(Ordering::Relaxed);
            if freq > 0 {
                let hash = entry.hash;
                entry.freq.store(freq - 1, Ordering::Relaxed);
                // All pending hits, on every pass: an entry hit often is
                // counted more than once, which weighs residents above
                // newcomers. The lab measured this above counting one hit
                // per pass (trace mean 46.96 % vs 46.76 %, first sketch size).
                self.count_hits(hash, freq);
                self.unlink(candidate);
                self.push_head(MAIN, candidate);
                continue;
            }
            return candidate;
        }
    }

    /// Whether an entry leaving the small queue without a hit takes the
    /// place of the main queue's `main_tail` instead of being evicted: it
    /// does if the main queue is empty, or if the sketch has counted it more
    /// often than that entry (its pending hits included). Ties keep the
    /// main queue's entry.
    fn admits(&self, candidate: Index, main_tail: Index) -> bool {
        let Some(sketch) = &self.sketch else {
            return false;
        };
        if main_tail == NIL {
            return true;
        }
        let resident = self.slot(main_tail);
        let resident_count = u16::from(sketch.estimate(resident.hash))
            + u16::from(resident.freq.load(Ordering::Relaxed));
        u16::from(sketch.estimate(self.slot(candidate).hash)) > resident_count
    }

    /// Adds hits that the eviction scan found to the admission sketch.
    fn count_hits(&mut self, hash: u64, hits: u8) {
        if let Some(sketch) = &mut self.sketch {
            sketch.add(hash, hits);
        }
    }
}

/// The admission sketch of a shard: S3-FIFO only, growing up to the
/// entries the shard can hold (from the byte bound at 512 bytes an entry
/// when only bytes are bounded: at most 3 % of the bound).
fn admission_sketch(policy: Policy, max_entries: u64, max_weight: u64) -> Option<FrequencySketch> {
    if policy != Policy::S3Fifo {
        return None;
    }
    let expected = if max_entries != u64::MAX {
        max_entries
    } else if max_weight != u64::MAX {
        max_weight / 512
    } else {
        return None;
    };
    Some(FrequencySketch::new(expected))
}

#[cold]
fn unreachable_slot(index: Index) -> ! {
    // Every index reached here comes from the table, a queue or an index
    // that removal keeps exact; an empty slot means the shard is corrupt.
    panic!("memory engine invariant broken: slot {index} is empty")
}
