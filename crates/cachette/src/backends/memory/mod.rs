//! The in-process memory engine: the default backend and the L1 of the
//! tiered and near caches.
//!
//! - **URL:** `memory://?max_entries=10000&max_bytes=64MiB&policy=s3fifo&default_ttl=5m&time_to_idle=30m&shards=8`
//!   (every parameter optional).
//! - **Policies:** [`Policy::Lru`], [`Policy::Fifo`], [`Policy::Sieve`],
//!   [`Policy::S3Fifo`] (default, with a frequency sketch for admission to
//!   its main queue). Reads of the FIFO family take the shard's read lock
//!   only; a hit sets a bit or bumps a 2-bit counter.
//! - **Bounds:** by entries and/or by bytes. An entry's weight is its key,
//!   its value, its tags and [`MemoryBackend::ENTRY_OVERHEAD`], or what a
//!   [custom weigher](MemoryBuilder::weigher) says. The bound
//!   is split evenly over the shards and is never exceeded after an
//!   operation returns. Overwriting a key never evicts another entry unless
//!   the new value is heavier, and then only to make room for the
//!   difference. Unbounded by default.
//! - **TTL:** millisecond deadlines, checked lazily on every read, removed
//!   incrementally by writes (two per write) and by a background task
//!   (when built inside a tokio runtime) that takes each shard's lock for at
//!   most 256 removals at a time. A [time-to-idle](MemoryBuilder::time_to_idle)
//!   also expires entries not read or written for that long.
//! - **Removal listener:** [`MemoryBuilder::removal_listener`] is told of
//!   each entry that leaves, with its [`RemovalCause`], on the calling
//!   thread after the shard's lock is released.
//! - **Tags:** an exact index from tag to entries, per shard, updated on
//!   insert, overwrite, delete, eviction, expiry and clear.
//! - **Stats:** the counters of [`Stats`] (`bytes` is the total weight, by
//!   the custom weigher if there is one), and in `details`: `tags`, the
//!   distinct tags in the index.
//! - **Limits:** keys up to 4096 bytes by default; an entry must fit in one
//!   shard's share of `max_bytes`.
//!
//! For the hot path without dynamic dispatch, [`MemoryBackend`] also has
//! synchronous methods ([`get_sync`](MemoryBackend::get_sync),
//! [`set_sync`](MemoryBackend::set_sync), ...), which never block on I/O.

mod builder;
mod ghost;
mod idle;
mod listener;
mod shard;
mod sketch;
#[cfg(test)]
mod tests;
pub(crate) mod url;

use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::RwLock;

use crate::backend::{
    Backend, Capabilities, Expiry, KeyStream, KeyTtl, SetCondition, SetOptions, Stats,
    add_to_counter, format_counter,
};
use crate::backends::common::{BASE_CAPABILITIES, Event, Limits, PurgeTask, Tally};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::glob;

pub use builder::{MemoryBuilder, Policy};
use listener::Listener;
pub use listener::RemovalCause;
use shard::{DeadlineUpdate, Removal, ShardConfig, ShardInner, Stored};

/// A custom weigher as the engine keeps it.
type Weigher = Arc<dyn Fn(&str, &[u8]) -> u64 + Send + Sync>;

pub(crate) const NAME: &str = "memory";

/// A shard: its lock, aligned so that two shards never share a cache line.
#[repr(align(128))]
struct Shard {
    inner: RwLock<ShardInner>,
}

struct Inner {
    shards: Box<[Shard]>,
    clock: Clock,
    reads: crate::backends::read_counters::ReadCounters,
    shard_mask: u64,
    hasher: foldhash::fast::SeedableRandomState,
    policy: Policy,
    /// Under a byte bound the longest value accepted is the smallest
    /// shard's share less the overhead and the longest key.
    limits: Limits,
    max_entries: Option<u64>,
    max_bytes: Option<u64>,
    listener: Option<Listener>,
    weigher: Option<Weigher>,
    time_to_idle: Option<Duration>,
    sweeper: PurgeTask,
}

/// The in-process memory backend. Cheap to clone: clones share the store.
///
/// ```
/// use cachette::{MemoryBackend, SetOptions};
///
/// let cache = MemoryBackend::builder().max_entries(1_000).build()?;
/// cache.set_sync("k", "v".into(), &SetOptions::new())?;
/// assert_eq!(cache.get_sync("k")?.as_deref(), Some(&b"v"[..]));
/// # Ok::<(), cachette::Error>(())
/// ```
#[derive(Clone)]
pub struct MemoryBackend {
    inner: Arc<Inner>,
}

impl fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBackend")
            .field("policy", &self.inner.policy)
            .field("shards", &self.inner.shards.len())
            .field("max_entries", &self.inner.max_entries)
            .field("max_bytes", &self.inner.max_bytes)
            .field("default_ttl", &self.inner.limits.default_ttl)
            .field("time_to_idle", &self.inner.time_to_idle)
            .field("removal_listener", &self.inner.listener.is_some())
            .field("weigher", &self.inner.weigher.is_some())
            .finish()
    }
}

impl Default for MemoryBackend {
    /// An unbounded cache with the default policy.
    fn default() -> Self {
        MemoryBackend::from_builder(MemoryBuilder::default())
    }
}

impl MemoryBackend {
    /// The fixed per-entry overhead counted in each entry's weight, in bytes.
    pub const ENTRY_OVERHEAD: u64 = shard::ENTRY_OVERHEAD;

    /// A builder with the defaults: unbounded, [`Policy::S3Fifo`], no TTL.
    pub fn builder() -> MemoryBuilder {
        MemoryBuilder::default()
    }

    /// The capabilities of a memory backend with default options.
    pub fn default_capabilities() -> Capabilities {
        BASE_CAPABILITIES
    }

    fn from_builder(builder: MemoryBuilder) -> Self {
        let count = builder.shard_count();
        let time_to_idle = builder.time_to_idle.map_or(0, builder::millis);
        let shards = (0..count)
            .map(|i| Shard {
                inner: RwLock::new(ShardInner::new(ShardConfig {
                    policy: builder.policy,
                    max_entries: builder::share(builder.limits.max_entries, count, i),
                    max_weight: builder::share(builder.limits.max_bytes, count, i),
                    time_to_idle,
                    notify: builder.listener.is_some(),
                })),
            })
            .collect();
        // Under a byte bound every key within the key limit and every value
        // within the value limit must fit in the smallest shard: a quarter
        // of it at most for the key, the rest less overhead for the value.
        // A custom weigher's weight says nothing about lengths: its entries
        // are checked by weight alone.
        let bounds = builder.limits;
        let (max_key_len, max_value_len) = match bounds.max_bytes {
            None => (bounds.max_key_len, None),
            Some(_) if builder.weigher.is_some() => (bounds.max_key_len, None),
            Some(_) => {
                let smallest_share = builder::share(bounds.max_bytes, count, count - 1);
                let key = bounds
                    .max_key_len
                    .min(usize::try_from(smallest_share / 4).unwrap_or(usize::MAX))
                    .max(1);
                let value = smallest_share.saturating_sub(shard::ENTRY_OVERHEAD + key as u64);
                (key, Some(usize::try_from(value).unwrap_or(usize::MAX)))
            }
        };
        let inner = Arc::new(Inner {
            shards,
            clock: Clock::new(),
            reads: crate::backends::read_counters::ReadCounters::default(),
            shard_mask: count as u64 - 1,
            hasher: if builder.fixed_hash_seed {
                foldhash::fast::SeedableRandomState::fixed()
            } else {
                foldhash::fast::SeedableRandomState::random()
            },
            policy: builder.policy,
            limits: Limits {
                backend: NAME,
                max_key_len,
                max_value_len,
                default_ttl: bounds.default_ttl,
            },
            max_entries: bounds.max_entries,
            max_bytes: bounds.max_bytes,
            listener: builder.listener,
            weigher: builder.weigher,
            time_to_idle: builder.time_to_idle,
            sweeper: PurgeTask::default(),
        });
        inner.sweeper.start(
            NAME,
            Arc::downgrade(&inner),
            builder.purge_interval,
            |inner| async move { Ok(MemoryBackend { inner }.purge(u64::MAX)) },
        );
        MemoryBackend { inner }
    }

    /// The eviction policy.
    pub fn policy(&self) -> Policy {
        self.inner.policy
    }

    /// The number of shards.
    pub fn shard_count(&self) -> usize {
        self.inner.shards.len()
    }

    fn locate(&self, key: &str) -> (u64, &Shard) {
        let hash = self.inner.hasher.hash_one(key);
        // The table uses the low bits and the top seven; shards use others.
        let shard = ((hash >> 40) & self.inner.shard_mask) as usize;
        (hash, &self.inner.shards[shard])
    }

    fn check_key(&self, key: &str) -> Result<()> {
        self.inner.limits.check_key(key)
    }

    /// The deadline on the engine's monotonic clock (0 = never).
    fn deadline(&self, expiry: Expiry) -> Result<u64> {
        self.inner
            .limits
            .deadline(expiry, self.inner.clock.now_ms())
    }

    /// Reads a key without dynamic dispatch or a future.
    pub fn get_sync(&self, key: &str) -> Result<Option<Bytes>> {
        self.check_key(key)?;
        let (hash, shard) = self.locate(key);
        let guard = shard.inner.read();
        let Some(index) = guard.find(hash, key) else {
            drop(guard);
            self.inner.reads.miss();
            return Ok(None);
        };
        let entry = guard.entry(index);
        if (entry.deadline != 0 || guard.idle().is_some())
            && let Some(now) = self.expired_on_read(&guard, index)
        {
            drop(guard);
            self.write(shard, |guard| guard.find_live(hash, key, now));
            self.inner.reads.miss();
            return Ok(None);
        }
        entry.record_hit(self.inner.policy);
        let value = entry.value.clone();
        drop(guard);
        self.inner.reads.hit();
        if self.inner.policy == Policy::Lru {
            // LRU's reorder needs the write lock. Under contention it is
            // skipped: the order is then approximate, never wrong about
            // what is stored.
            if let Some(mut guard) = shard.inner.try_write()
                && let Some(index) = guard.find(hash, key)
            {
                guard.move_to_head(index);
            }
        }
        Ok(Some(value))
    }

    /// On a read of an entry with a deadline or a time-to-idle: the time
    /// if the entry has expired, otherwise `None` after restarting its idle
    /// time. Out of line, so that reads of entries without either keep a
    /// short path.
    #[inline(never)]
    fn expired_on_read(&self, shard: &ShardInner, index: shard::Index) -> Option<u64> {
        let now = self.inner.clock.now_ms();
        if shard.is_expired(index, now) {
            return Some(now);
        }
        if let Some(idle) = shard.idle() {
            idle.touch(index, now);
        }
        None
    }

    /// Writes a key without dynamic dispatch or a future.
    pub fn set_sync(&self, key: &str, value: Bytes, options: &SetOptions) -> Result<bool> {
        self.check_key(key)?;
        self.inner.limits.check_value(&value)?;
        let deadline = self.deadline(options.expiry)?;
        let weight = self.custom_weight(key, &value);
        let (hash, shard) = self.locate(key);
        let stored = self.write(shard, |guard| {
            guard.store(
                hash,
                key,
                value,
                weight,
                DeadlineUpdate::Set(deadline),
                Some(&options.tags),
                options.condition,
                self.inner.clock.now_ms(),
            )
        });
        self.written(stored)
    }

    /// The custom weigher's weight of an entry, if there is one.
    fn custom_weight(&self, key: &str, value: &[u8]) -> Option<u64> {
        self.inner.weigher.as_ref().map(|weigh| weigh(key, value))
    }

    /// Runs `change` under the shard's write lock, then tells the removal
    /// listener what it removed, after releasing the lock.
    fn write<R>(&self, shard: &Shard, change: impl FnOnce(&mut ShardInner) -> R) -> R {
        let mut guard = shard.inner.write();
        let out = change(&mut guard);
        if let Some(listener) = &self.inner.listener {
            let removed = guard.take_removed();
            drop(guard);
            listener::report(listener, removed);
        }
        out
    }

    fn written(&self, stored: Stored) -> Result<bool> {
        match stored {
            Stored::Written => Ok(true),
            Stored::ConditionFailed => Ok(false),
            Stored::TooHeavy { weight, limit } => {
                let weighed_as = match self.inner.weigher {
                    Some(_) => "by the custom weigher".to_owned(),
                    None => format!("key + value + tags + {} overhead", shard::ENTRY_OVERHEAD),
                };
                Err(Error::invalid_input(
                    NAME,
                    format!(
                        "the entry weighs {weight} bytes ({weighed_as}); \
                         the limit is {limit} bytes (max_bytes divided over {} shards)",
                        self.inner.shards.len()
                    ),
                ))
            }
        }
    }

    /// Removes a key without dynamic dispatch or a future.
    pub fn delete_sync(&self, key: &str) -> Result<bool> {
        self.check_key(key)?;
        let (hash, shard) = self.locate(key);
        let now = self.inner.clock.now_ms();
        Ok(
            self.write(shard, |guard| match guard.find_live(hash, key, now) {
                Some(index) => {
                    guard.remove(index, Removal::Deleted);
                    true
                }
                None => false,
            }),
        )
    }

    /// Adds `delta` to a counter atomically; see [`Backend::incr`].
    pub fn incr_sync(&self, key: &str, delta: i64, expiry: Expiry) -> Result<i64> {
        self.check_key(key)?;
        let deadline = self.deadline(expiry)?;
        let (hash, shard) = self.locate(key);
        loop {
            // A custom weigher runs outside the lock: the new value is
            // computed and weighed from the counter as read, and written
            // only if the counter still holds that value (else read again).
            let weighed = match &self.inner.weigher {
                None => None,
                Some(weigh) => {
                    let seen = self.live_value(shard, hash, key);
                    let next = next_counter(seen.as_ref(), delta)?;
                    let value = format_counter(next);
                    Some((weigh(key, &value), seen, next, value))
                }
            };
            let now = self.inner.clock.now_ms();
            let outcome = self.write(shard, |guard| {
                let current = guard
                    .find_live(hash, key, now)
                    .map(|index| &guard.entry(index).value);
                let (weight, next, value) = match &weighed {
                    None => {
                        let next = next_counter(current, delta)?;
                        (None, next, format_counter(next))
                    }
                    Some((_, seen, _, _)) if current != seen.as_ref() => return Ok(None),
                    Some((weight, _, next, value)) => (Some(*weight), *next, value.clone()),
                };
                let stored = guard.store(
                    hash,
                    key,
                    value,
                    weight,
                    DeadlineUpdate::KeepOr(deadline),
                    None,
                    SetCondition::Always,
                    now,
                );
                Ok::<_, Error>(Some((stored, next)))
            })?;
            if let Some((stored, next)) = outcome {
                return self.written(stored).map(|_| next);
            }
        }
    }

    /// The value of a live entry, read under the read lock.
    fn live_value(&self, shard: &Shard, hash: u64, key: &str) -> Option<Bytes> {
        let guard = shard.inner.read();
        let index = guard.find(hash, key)?;
        let now = self.inner.clock.now_ms();
        (!guard.is_expired(index, now)).then(|| guard.entry(index).value.clone())
    }

    /// Removes up to `limit` expired entries from every shard, taking each
    /// shard's lock for at most 256 removals at a time.
    fn purge(&self, limit: u64) -> u64 {
        const BATCH: usize = 256;
        let mut removed = 0;
        for shard in self.inner.shards.iter() {
            loop {
                let now = self.inner.clock.now_ms();
                let (count, more) = self.write(shard, |guard| guard.purge_expired(now, BATCH));
                removed += count;
                if !more || removed >= limit {
                    break;
                }
            }
        }
        removed
    }

    /// Checks every shard's internal invariants; for tests.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        for shard in self.inner.shards.iter() {
            shard.inner.read().check_invariants();
        }
    }

    /// Every tag with the keys it indexes, sorted; for tests.
    #[cfg(test)]
    pub(crate) fn tag_index(&self) -> Vec<(String, Vec<String>)> {
        let mut all: Vec<(String, Vec<String>)> = Vec::new();
        for shard in self.inner.shards.iter() {
            for (tag, keys) in shard.inner.read().tag_index() {
                match all.iter_mut().find(|(t, _)| *t == tag) {
                    Some((_, existing)) => existing.extend(keys),
                    None => all.push((tag, keys)),
                }
            }
        }
        for (_, keys) in &mut all {
            keys.sort();
        }
        all.sort();
        all
    }
}

/// A counter's next value: `current` (none for a missing key) plus `delta`.
fn next_counter(current: Option<&Bytes>, delta: i64) -> Result<i64> {
    match current {
        Some(value) => add_to_counter(NAME, value, delta),
        None => Ok(delta),
    }
}

/// Slots of one shard read per lock hold while listing keys.
const LISTING_CHUNK: usize = 1024;

/// Where a key listing stands: a shard and a slot cursor in it.
struct Listing {
    backend: MemoryBackend,
    pattern: glob::Pattern,
    shard: usize,
    /// The next slot of `shard`; `None` once the shard is done.
    slot: Option<usize>,
}

impl Listing {
    /// The matching keys of the next non-empty chunk, or `None` at the end.
    fn next_chunk(&mut self) -> Option<Vec<String>> {
        let inner = &self.backend.inner;
        loop {
            let shard = inner.shards.get(self.shard)?;
            let Some(from) = self.slot else {
                self.shard += 1;
                self.slot = Some(0);
                continue;
            };
            let now = inner.clock.now_ms();
            let guard = shard.inner.read();
            let (entries, next) = guard.live_entries_from(from, LISTING_CHUNK, now);
            let keys: Vec<String> = entries
                .filter(|e| self.pattern.matches(&e.key))
                .map(|e| e.key.to_string())
                .collect();
            drop(guard);
            self.slot = next;
            if !keys.is_empty() {
                return Some(keys);
            }
        }
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.limits.advertise(BASE_CAPABILITIES)
    }

    fn get_ready(&self, key: &str) -> Option<Result<Option<Bytes>>> {
        Some(self.get_sync(key))
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.get_sync(key)
    }

    async fn set(&self, key: &str, value: Bytes, options: &SetOptions) -> Result<bool> {
        self.set_sync(key, value, options)
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        self.delete_sync(key)
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        self.check_key(key)?;
        let (hash, shard) = self.locate(key);
        let guard = shard.inner.read();
        Ok(guard
            .find(hash, key)
            .is_some_and(|i| !guard.is_expired(i, self.inner.clock.now_ms())))
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>> {
        keys.iter().map(|key| self.get_sync(key)).collect()
    }

    async fn set_many(&self, entries: &[(&str, Bytes)], options: &SetOptions) -> Result<Vec<bool>> {
        self.inner.limits.check_entries(entries)?;
        entries
            .iter()
            .map(|(key, value)| self.set_sync(key, value.clone(), options))
            .collect()
    }

    async fn delete_many(&self, keys: &[&str]) -> Result<u64> {
        self.inner.limits.check_keys(keys)?;
        let mut removed = 0;
        for key in keys {
            removed += u64::from(self.delete_sync(key)?);
        }
        Ok(removed)
    }

    async fn incr(&self, key: &str, delta: i64, expiry: Expiry) -> Result<i64> {
        self.incr_sync(key, delta, expiry)
    }

    async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        self.check_key(key)?;
        let (hash, shard) = self.locate(key);
        let guard = shard.inner.read();
        let now = self.inner.clock.now_ms();
        Ok(match guard.find(hash, key) {
            None => KeyTtl::Missing,
            Some(index) if guard.is_expired(index, now) => KeyTtl::Missing,
            Some(index) => match guard.due(index) {
                0 => KeyTtl::Persistent,
                due => KeyTtl::ExpiresIn(Duration::from_millis(due.saturating_sub(now).max(1))),
            },
        })
    }

    async fn touch(&self, key: &str, expiry: Expiry) -> Result<bool> {
        self.check_key(key)?;
        let deadline = self.deadline(expiry)?;
        let (hash, shard) = self.locate(key);
        let now = self.inner.clock.now_ms();
        Ok(
            self.write(shard, |guard| match guard.find_live(hash, key, now) {
                Some(index) => {
                    guard.set_deadline(index, deadline, now);
                    true
                }
                None => false,
            }),
        )
    }

    async fn clear(&self) -> Result<()> {
        for shard in self.inner.shards.iter() {
            let old = shard.inner.write().take_all();
            // Freed, and told to the listener, after the lock is released.
            if let Some(listener) = &self.inner.listener {
                listener::report(listener, old.into_cleared(self.inner.clock.now_ms()));
            }
        }
        Ok(())
    }

    /// Lists lazily, 1,024 slots of one shard per lock hold.
    /// A key stored for the whole listing is listed exactly once; a key
    /// written, removed or expiring meanwhile may be listed or not, and a
    /// key removed and written again meanwhile may be listed twice.
    async fn keys(&self, pattern: &str) -> Result<KeyStream> {
        let listing = Listing {
            backend: self.clone(),
            pattern: glob::Pattern::new(pattern),
            shard: 0,
            slot: Some(0),
        };
        let stream = futures_util::stream::unfold(listing, |mut listing| async move {
            let keys = listing.next_chunk()?;
            Some((
                futures_util::stream::iter(keys.into_iter().map(Ok)),
                listing,
            ))
        });
        Ok(Box::pin(stream.flatten()))
    }

    async fn invalidate_tags(&self, tags: &[&str]) -> Result<u64> {
        let mut removed = 0;
        for shard in self.inner.shards.iter() {
            let now = self.inner.clock.now_ms();
            removed += self.write(shard, |guard| {
                tags.iter()
                    .map(|tag| guard.invalidate_tag(tag, now))
                    .sum::<u64>()
            });
        }
        Ok(removed)
    }

    async fn purge_expired(&self) -> Result<u64> {
        Ok(self.purge(u64::MAX))
    }

    async fn stats(&self) -> Result<Stats> {
        let mut stats = Stats::default();
        let mut tally = Tally::default();
        let mut tags = 0;
        for shard in self.inner.shards.iter() {
            let guard = shard.inner.read();
            tally.merge(&guard.counters);
            stats.entries += guard.len();
            stats.bytes = stats.bytes.saturating_add(guard.weight());
            tags += guard.tag_count() as u64;
        }
        let (hits, misses) = self.inner.reads.totals();
        tally.add(Event::Hit, hits);
        tally.add(Event::Miss, misses);
        tally.fill(&mut stats);
        stats.details.push(("tags".to_owned(), tags));
        Ok(stats)
    }

    async fn close(&self) -> Result<()> {
        self.inner.sweeper.stop();
        Ok(())
    }
}
