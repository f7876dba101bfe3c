//! The builder of the memory backend and its eviction policies.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::backends::common::{BuilderLimits, shared_limit_setters, whole_millis};
use crate::error::{Error, Result};

use super::listener::Listener;
use super::{MemoryBackend, NAME, RemovalCause, Weigher};

/// The eviction policy of the memory engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Policy {
    /// Least recently used. A hit moves the entry to the front, which needs
    /// the shard's write lock; under contention the move is skipped.
    Lru,
    /// First in, first out. Hits change nothing.
    Fifo,
    /// SIEVE: FIFO order with a visited bit and a moving hand. Hits only set
    /// a bit.
    Sieve,
    /// S3-FIFO: a small probationary FIFO, a main FIFO with a 2-bit
    /// frequency, and a ghost list of recently evicted keys. Hits only bump
    /// a counter. An entry leaving the probationary queue without a hit
    /// still enters the main queue if a frequency sketch (4-bit count-min,
    /// aged by halving, kept under the write lock) has counted it more
    /// often than the main queue's next victim: loops and scans larger
    /// than the cache keep a stable part of their keys instead of none.
    /// The sketch costs 8 to 16 bytes per entry held, outside the bound; it
    /// grows with the shard up to the entry bound (or 512 bytes an entry of
    /// a byte bound alone).
    #[default]
    S3Fifo,
}

impl Policy {
    /// Every policy, in a stable order.
    pub const ALL: [Policy; 4] = [Policy::Lru, Policy::Fifo, Policy::Sieve, Policy::S3Fifo];

    /// The policy's name as used in URLs and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Lru => "lru",
            Policy::Fifo => "fifo",
            Policy::Sieve => "sieve",
            Policy::S3Fifo => "s3fifo",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Policy {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
            "lru" => Ok(Policy::Lru),
            "fifo" => Ok(Policy::Fifo),
            "sieve" => Ok(Policy::Sieve),
            "s3fifo" => Ok(Policy::S3Fifo),
            _ => Err(Error::config(
                NAME,
                format!("unknown eviction policy `{s}`; expected one of lru, fifo, sieve, s3fifo"),
            )),
        }
    }
}

/// Builds a [`MemoryBackend`]. Every setter consumes and returns the
/// builder; [`build`](MemoryBuilder::build) validates.
///
/// ```
/// use std::time::Duration;
/// use cachette::{MemoryBackend, Policy};
///
/// let cache = MemoryBackend::builder()
///     .max_entries(10_000)
///     .max_bytes(64 << 20)
///     .policy(Policy::Sieve)
///     .default_ttl(Duration::from_secs(300))
///     .build()?;
/// # Ok::<(), cachette::Error>(())
/// ```
#[derive(Clone)]
pub struct MemoryBuilder {
    pub(super) limits: BuilderLimits,
    pub(super) policy: Policy,
    pub(super) shards: Option<usize>,
    pub(super) purge_interval: Duration,
    pub(super) time_to_idle: Option<Duration>,
    pub(super) listener: Option<Listener>,
    pub(super) weigher: Option<Weigher>,
    /// Hash keys with a fixed seed instead of a random one, so that runs
    /// repeat exactly (simulations); keys from outside could then be
    /// chosen to collide, so only the crate's own replays use it.
    pub(super) fixed_hash_seed: bool,
}

impl fmt::Debug for MemoryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBuilder")
            .field("limits", &self.limits)
            .field("policy", &self.policy)
            .field("shards", &self.shards)
            .field("purge_interval", &self.purge_interval)
            .field("time_to_idle", &self.time_to_idle)
            .field("removal_listener", &self.listener.is_some())
            .field("weigher", &self.weigher.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for MemoryBuilder {
    fn default() -> Self {
        MemoryBuilder {
            limits: BuilderLimits::default(),
            policy: Policy::default(),
            shards: None,
            purge_interval: Duration::from_secs(1),
            time_to_idle: None,
            listener: None,
            weigher: None,
            fixed_hash_seed: false,
        }
    }
}

/// Entries per shard below which the automatic shard count is halved, so
/// that small caches keep a precise policy.
const MIN_ENTRIES_PER_SHARD: u64 = 256;
/// Bytes per shard below which the automatic shard count is halved, so that
/// one large value still fits in one shard.
const MIN_BYTES_PER_SHARD: u64 = 4 << 20;
/// Bytes per shard below which a shard count chosen with
/// [`MemoryBuilder::shards`] is halved: a shard holds at least a few small
/// entries. (Every chosen count keeps at least one entry of `max_entries`
/// per shard, or the shards together would hold more than the bound.)
const MIN_BYTES_PER_CHOSEN_SHARD: u64 = 1 << 10;

impl MemoryBuilder {
    shared_limit_setters!();

    /// Bounds the total weight in bytes: key + value + tags + a fixed
    /// per-entry overhead ([`MemoryBackend::ENTRY_OVERHEAD`]), or what a
    /// [custom weigher](Self::weigher) says. Unbounded by default.
    pub fn max_bytes(mut self, max: u64) -> Self {
        self.limits.max_bytes = Some(max);
        self
    }

    /// Chooses the eviction policy (default: [`Policy::S3Fifo`]).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// The number of shards (a power of two, at most 1024). By default four
    /// per CPU, reduced so that each shard keeps at least 256 entries and
    /// 4 MiB of its bound. A count chosen here is halved until each shard
    /// gets at least one entry of `max_entries` and 1 KiB of `max_bytes`,
    /// so that the bounds hold whatever the count
    /// ([`MemoryBackend::shard_count`] tells the result). A single entry
    /// must fit within one shard's share of `max_bytes`.
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards);
        self
    }

    /// Hashes keys with a fixed seed: the same requests give the same
    /// evictions in every run (see the field).
    #[cfg_attr(not(feature = "sim"), allow(dead_code))]
    pub(crate) fn fixed_hash_seed(mut self) -> Self {
        self.fixed_hash_seed = true;
        self
    }

    /// How often the background task removes expired entries (default 1 s).
    /// It runs only if the backend is built inside a tokio runtime; reads
    /// check deadlines lazily in any case.
    pub fn purge_interval(mut self, interval: Duration) -> Self {
        self.purge_interval = interval;
        self
    }

    /// The former name of [`purge_interval`](Self::purge_interval).
    #[deprecated(note = "renamed `purge_interval`, the name redb uses for the same option")]
    pub fn expiry_interval(self, interval: Duration) -> Self {
        self.purge_interval(interval)
    }

    /// Expires an entry that has not been read or written for `idle`, in
    /// addition to its TTL (whichever comes first). Reads (`get`,
    /// `get_many`) and writes (`set`, `incr`, `touch`) of the entry restart
    /// its idle time; `exists` and `ttl` do not. [`Backend::ttl`](crate::Backend::ttl)
    /// reports the earlier of the TTL and the end of the idle time, as it
    /// stands. An idle entry is removed like one past its TTL: lazily when
    /// it is next accessed, by the background purge, by a write's
    /// incremental purge, or by `purge_expired`; the removal listener sees
    /// [`RemovalCause::Expired`]. Millisecond precision, rounded up; none
    /// by default. The URL parameter is `time_to_idle`.
    ///
    /// An engine with a time-to-idle keeps 16 bytes more per entry (outside
    /// the byte bound), and a hit stores its time: reads of one hot key
    /// from many threads then share a written cache line.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cachette::{Backend, MemoryBackend, SetOptions};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> cachette::Result<()> {
    /// let sessions = MemoryBackend::builder()
    ///     .time_to_idle(Duration::from_secs(30 * 60))
    ///     .build()?;
    /// sessions.set("session:1", "alice".into(), &SetOptions::new()).await?;
    /// sessions.set("session:2", "bob".into(), &SetOptions::new()).await?;
    /// tokio::time::advance(Duration::from_secs(20 * 60)).await;
    /// sessions.get("session:1").await?; // still in use
    /// tokio::time::advance(Duration::from_secs(20 * 60)).await;
    /// assert!(sessions.get("session:1").await?.is_some());
    /// assert!(sessions.get("session:2").await?.is_none()); // idle for 40 minutes
    /// # Ok(())
    /// # }
    /// ```
    pub fn time_to_idle(mut self, idle: Duration) -> Self {
        self.time_to_idle = Some(idle);
        self
    }

    /// Calls `listener` with the key, the value and the cause each time an
    /// entry leaves the engine: evicted, expired, replaced by a write,
    /// deleted, invalidated by tag or cleared (see [`RemovalCause`]).
    ///
    /// - **When:** synchronously, on the thread whose call removed the
    ///   entry (a `set` that evicts, a `get` that finds an entry expired,
    ///   the background purge task, ...), after the shard's lock is
    ///   released and before that call returns. The listener may call back
    ///   into the cache without deadlock; it delays the call it runs in, so
    ///   a slow listener should hand its work to a channel.
    /// - **Expired entries** are reported when the engine removes them,
    ///   never before their deadline and possibly after it: when a `get`,
    ///   `set`, `delete`, `incr` or `touch` of that key finds it expired,
    ///   when a `set` or `incr` of another key in its shard removes up to
    ///   two overdue entries (earliest first), when
    ///   the background task purges (every `purge_interval`, only if the
    ///   backend was built inside a tokio runtime), on
    ///   [`purge_expired`](crate::Backend::purge_expired), and when
    ///   `invalidate_tags` or `clear` meets them. `exists` and `ttl` do not
    ///   remove expired entries and report nothing.
    /// - **Replaced** gives the old value; it is reported for every write
    ///   over a live entry, `incr` included.
    /// - **Not reported:** entries still stored when the last clone of the
    ///   backend is dropped, and writes refused by their condition or by
    ///   the byte bound (they remove nothing).
    /// - **A panicking listener** is caught and logged (`tracing` warning);
    ///   the removal stands, the engine stays usable, and the other
    ///   removals of the same call are still reported.
    /// - **A listener that owns a clone of the backend** keeps it alive,
    ///   background purge included, for as long as the listener lives: a
    ///   reference cycle. Send the removals to a channel instead, or hold
    ///   the backend through something the owner can empty.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use cachette::{MemoryBackend, RemovalCause, SetOptions};
    ///
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let log = Arc::clone(&seen);
    /// let cache = MemoryBackend::builder()
    ///     .max_entries(1)
    ///     .removal_listener(move |key, _value, cause| {
    ///         log.lock().unwrap().push((key.to_owned(), cause));
    ///     })
    ///     .build()?;
    /// cache.set_sync("a", "1".into(), &SetOptions::new())?;
    /// cache.set_sync("a", "2".into(), &SetOptions::new())?;
    /// cache.set_sync("b", "3".into(), &SetOptions::new())?;
    /// cache.delete_sync("b")?;
    /// assert_eq!(
    ///     *seen.lock().unwrap(),
    ///     [
    ///         ("a".to_owned(), RemovalCause::Replaced),
    ///         ("a".to_owned(), RemovalCause::Evicted),
    ///         ("b".to_owned(), RemovalCause::Removed),
    ///     ]
    /// );
    /// # Ok::<(), cachette::Error>(())
    /// ```
    ///
    /// Under a typed [`Cache`](crate::Cache) the listener sees the stored
    /// keys, `{namespace}:v{version}:{key}` (`v0` until the first
    /// [`bump_version`](crate::Cache::bump_version)), and the stored bytes
    /// (the encoded value, in the cache's envelope when it uses one):
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use cachette::{Cache, EntryOptions, MemoryBackend};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> cachette::Result<()> {
    /// let removed = Arc::new(Mutex::new(Vec::new()));
    /// let log = Arc::clone(&removed);
    /// let backend = MemoryBackend::builder()
    ///     .removal_listener(move |key, _bytes, cause| {
    ///         log.lock().unwrap().push(format!("{cause} {key}"));
    ///     })
    ///     .build()?;
    /// let users = Cache::builder(Arc::new(backend))
    ///     .namespace("users")
    ///     .build()
    ///     .await?;
    /// users.set("42", "Ada", &EntryOptions::new()).await?;
    /// users.delete("42").await?;
    /// assert_eq!(*removed.lock().unwrap(), ["removed users:v0:42"]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn removal_listener(
        mut self,
        listener: impl Fn(&str, Bytes, RemovalCause) + Send + Sync + 'static,
    ) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    /// Weighs entries for [`max_bytes`](Self::max_bytes) with `weigher`
    /// (given the key and the value) instead of the default weight (key +
    /// value + tags + [`MemoryBackend::ENTRY_OVERHEAD`]). The weights are
    /// in whatever unit the weigher chooses; `max_bytes` is then a bound in
    /// that unit, and [`Stats::bytes`](crate::Stats::bytes) reports the
    /// total of the weights. An entry that alone weighs more than one
    /// shard's share of the bound is refused with an
    /// [`InvalidInput`](crate::ErrorKind::InvalidInput) error, as an
    /// oversize value is without a weigher; the value-length limit derived
    /// from `max_bytes` no longer applies. Weights add up without overflow.
    ///
    /// The weigher runs on the writing thread before the shard's lock is
    /// taken (`incr` weighs the new value of the counter as read, and reads
    /// again if another write changed it meanwhile), so it may call the
    /// cache; it should be quick, and give the same weight for the same
    /// key and value. If it panics, the write panics and changes nothing.
    ///
    /// ```
    /// use cachette::{Backend, MemoryBackend, SetOptions};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> cachette::Result<()> {
    /// // Bound by value size alone, 1 KiB in all, in one shard.
    /// let cache = MemoryBackend::builder()
    ///     .max_bytes(1024)
    ///     .shards(1)
    ///     .weigher(|_key, value| value.len() as u64)
    ///     .build()?;
    /// for i in 0..8 {
    ///     cache.set(&format!("k{i}"), vec![0; 256].into(), &SetOptions::new()).await?;
    /// }
    /// let stats = cache.stats().await?;
    /// assert_eq!((stats.entries, stats.bytes), (4, 1024));
    /// # Ok(())
    /// # }
    /// ```
    pub fn weigher(mut self, weigher: impl Fn(&str, &[u8]) -> u64 + Send + Sync + 'static) -> Self {
        self.weigher = Some(Arc::new(weigher));
        self
    }

    /// The longest key accepted, in bytes (default 4096).
    pub fn max_key_len(mut self, max: usize) -> Self {
        self.limits.max_key_len = max;
        self
    }

    /// Validates the options and builds the backend.
    pub fn build(self) -> Result<MemoryBackend> {
        // Keys live in memory: no limit of the store's own beyond usize.
        self.limits.validate(NAME, usize::MAX)?;
        if self.purge_interval.is_zero() {
            return Err(Error::config(
                NAME,
                "purge_interval must be greater than zero",
            ));
        }
        if self.time_to_idle.is_some_and(|idle| idle.is_zero()) {
            return Err(Error::config(
                NAME,
                "time_to_idle must be greater than zero",
            ));
        }
        if let Some(shards) = self.shards
            && (shards == 0 || !shards.is_power_of_two() || shards > 1024)
        {
            return Err(Error::config(
                NAME,
                format!("shards must be a power of two between 1 and 1024, not {shards}"),
            ));
        }
        Ok(MemoryBackend::from_builder(self))
    }

    /// The shard count: the one asked for, or four per CPU; halved until
    /// every shard gets its minimum share of each bound.
    pub(super) fn shard_count(&self) -> usize {
        let (mut shards, min_entries, min_bytes) = match self.shards {
            Some(shards) => (shards, 1, MIN_BYTES_PER_CHOSEN_SHARD),
            None => {
                let cpus = std::thread::available_parallelism().map_or(4, |n| n.get());
                let shards = (cpus * 4).next_power_of_two().min(64);
                (shards, MIN_ENTRIES_PER_SHARD, MIN_BYTES_PER_SHARD)
            }
        };
        for (bound, min) in [
            (self.limits.max_entries, min_entries),
            (self.limits.max_bytes, min_bytes),
        ] {
            if let Some(max) = bound {
                while shards > 1 && max / (shards as u64) < min {
                    shards /= 2;
                }
            }
        }
        shards
    }
}

/// A duration in whole milliseconds, rounded up, at least 1.
pub(super) fn millis(duration: Duration) -> u64 {
    u64::try_from(whole_millis(duration).as_millis()).unwrap_or(u64::MAX)
}

/// Splits `total` over `parts` so that the shares add up to `total` exactly.
pub(super) fn share(total: Option<u64>, parts: usize, index: usize) -> u64 {
    match total {
        None => u64::MAX,
        Some(total) => {
            let parts = parts as u64;
            let index = index as u64;
            total / parts + u64::from(index < total % parts)
        }
    }
}
