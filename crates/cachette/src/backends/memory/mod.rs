//! The in-process memory engine: the default backend and the L1 of the
//! tiered and near caches.
//!
//! - **URL:** `memory://?max_entries=10000&max_bytes=64MiB&policy=s3fifo&default_ttl=5m&shards=8`
//!   (every parameter optional).
//! - **Policies:** [`Policy::Lru`], [`Policy::Fifo`], [`Policy::Sieve`],
//!   [`Policy::S3Fifo`] (default, with a frequency sketch for admission to
//!   its main queue). Reads of the FIFO family take the shard's read lock
//!   only; a hit sets a bit or bumps a 2-bit counter.
//! - **Bounds:** by entries and/or by bytes. An entry's weight is its key,
//!   its value, its tags and [`MemoryBackend::ENTRY_OVERHEAD`]. The bound
//!   is split evenly over the shards and is never exceeded after an
//!   operation returns. Overwriting a key never evicts another entry unless
//!   the new value is heavier, and then only to make room for the
//!   difference. Unbounded by default.
//! - **TTL:** millisecond deadlines, checked lazily on every read, removed
//!   incrementally by writes (two per write) and by a background task
//!   (when built inside a tokio runtime) that takes each shard's lock for at
//!   most 256 removals at a time.
//! - **Tags:** an exact index from tag to entries, per shard, updated on
//!   insert, overwrite, delete, eviction, expiry and clear.
//! - **Stats:** the counters of [`Stats`], and in `details`: `tags`, the
//!   distinct tags in the index.
//! - **Limits:** keys up to 4096 bytes by default; an entry must fit in one
//!   shard's share of `max_bytes`.
//!
//! For the hot path without dynamic dispatch, [`MemoryBackend`] also has
//! synchronous methods ([`get_sync`](MemoryBackend::get_sync),
//! [`set_sync`](MemoryBackend::set_sync), ...), which never block on I/O.

mod builder;
mod ghost;
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
use shard::{DeadlineUpdate, Removal, ShardInner, Stored};

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
        let shards = (0..count)
            .map(|i| Shard {
                inner: RwLock::new(ShardInner::new(
                    builder.policy,
                    builder::share(builder.limits.max_entries, count, i),
                    builder::share(builder.limits.max_bytes, count, i),
                )),
            })
            .collect();
        // Under a byte bound every key within the key limit and every value
        // within the value limit must fit in the smallest shard: a quarter
        // of it at most for the key, the rest less overhead for the value.
        let bounds = builder.limits;
        let (max_key_len, max_value_len) = match bounds.max_bytes {
            None => (bounds.max_key_len, None),
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
        if entry.deadline != 0 && entry.is_expired(self.inner.clock.now_ms()) {
            drop(guard);
            let mut guard = shard.inner.write();
            guard.find_live(hash, key, self.inner.clock.now_ms());
            drop(guard);
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

    /// Writes a key without dynamic dispatch or a future.
    pub fn set_sync(&self, key: &str, value: Bytes, options: &SetOptions) -> Result<bool> {
        self.check_key(key)?;
        self.inner.limits.check_value(&value)?;
        let deadline = self.deadline(options.expiry)?;
        let (hash, shard) = self.locate(key);
        let stored = shard.inner.write().store(
            hash,
            key,
            value,
            DeadlineUpdate::Set(deadline),
            Some(&options.tags),
            options.condition,
            self.inner.clock.now_ms(),
        );
        self.written(stored)
    }

    fn written(&self, stored: Stored) -> Result<bool> {
        match stored {
            Stored::Written => Ok(true),
            Stored::ConditionFailed => Ok(false),
            Stored::TooHeavy { weight, limit } => Err(Error::invalid_input(
                NAME,
                format!(
                    "the entry weighs {weight} bytes (key + value + tags + {} overhead); \
                     the limit is {limit} bytes (max_bytes divided over {} shards)",
                    shard::ENTRY_OVERHEAD,
                    self.inner.shards.len()
                ),
            )),
        }
    }

    /// Removes a key without dynamic dispatch or a future.
    pub fn delete_sync(&self, key: &str) -> Result<bool> {
        self.check_key(key)?;
        let (hash, shard) = self.locate(key);
        let mut guard = shard.inner.write();
        match guard.find_live(hash, key, self.inner.clock.now_ms()) {
            Some(index) => {
                guard.remove(index, Removal::Deleted);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Adds `delta` to a counter atomically; see [`Backend::incr`].
    pub fn incr_sync(&self, key: &str, delta: i64, expiry: Expiry) -> Result<i64> {
        self.check_key(key)?;
        let deadline = self.deadline(expiry)?;
        let (hash, shard) = self.locate(key);
        let now = self.inner.clock.now_ms();
        let mut guard = shard.inner.write();
        let next = match guard.find_live(hash, key, now) {
            Some(index) => add_to_counter(NAME, &guard.entry(index).value, delta)?,
            None => delta,
        };
        let stored = guard.store(
            hash,
            key,
            format_counter(next),
            DeadlineUpdate::KeepOr(deadline),
            None,
            SetCondition::Always,
            now,
        );
        drop(guard);
        self.written(stored).map(|_| next)
    }

    /// Removes up to `limit` expired entries from every shard, taking each
    /// shard's lock for at most 256 removals at a time.
    fn purge(&self, limit: u64) -> u64 {
        const BATCH: usize = 256;
        let mut removed = 0;
        for shard in self.inner.shards.iter() {
            loop {
                let (count, more) = shard
                    .inner
                    .write()
                    .purge_expired(self.inner.clock.now_ms(), BATCH);
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
            .is_some_and(|i| !guard.entry(i).is_expired(self.inner.clock.now_ms())))
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
        Ok(match guard.find(hash, key).map(|i| guard.entry(i)) {
            None => KeyTtl::Missing,
            Some(entry) if entry.is_expired(now) => KeyTtl::Missing,
            Some(entry) if entry.deadline == 0 => KeyTtl::Persistent,
            Some(entry) => KeyTtl::ExpiresIn(Duration::from_millis((entry.deadline - now).max(1))),
        })
    }

    async fn touch(&self, key: &str, expiry: Expiry) -> Result<bool> {
        self.check_key(key)?;
        let deadline = self.deadline(expiry)?;
        let (hash, shard) = self.locate(key);
        let mut guard = shard.inner.write();
        match guard.find_live(hash, key, self.inner.clock.now_ms()) {
            Some(index) => {
                guard.set_deadline(index, deadline);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn clear(&self) -> Result<()> {
        for shard in self.inner.shards.iter() {
            let old = shard.inner.write().take_all();
            // Freed after the lock is released.
            drop(old);
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
            let mut guard = shard.inner.write();
            for tag in tags {
                removed += guard.invalidate_tag(tag, self.inner.clock.now_ms());
            }
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
            stats.bytes += guard.weight();
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
