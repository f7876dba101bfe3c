//! The builder of the memory backend and its eviction policies.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::backends::common::{BuilderLimits, shared_limit_setters};
use crate::error::{Error, Result};

use super::{MemoryBackend, NAME};

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
#[derive(Debug, Clone)]
pub struct MemoryBuilder {
    pub(super) limits: BuilderLimits,
    pub(super) policy: Policy,
    pub(super) shards: Option<usize>,
    pub(super) purge_interval: Duration,
    /// Hash keys with a fixed seed instead of a random one, so that runs
    /// repeat exactly (simulations); keys from outside could then be
    /// chosen to collide, so only the crate's own replays use it.
    pub(super) fixed_hash_seed: bool,
}

impl Default for MemoryBuilder {
    fn default() -> Self {
        MemoryBuilder {
            limits: BuilderLimits::default(),
            policy: Policy::default(),
            shards: None,
            purge_interval: Duration::from_secs(1),
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
    /// per-entry overhead ([`MemoryBackend::ENTRY_OVERHEAD`]). Unbounded by
    /// default.
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
