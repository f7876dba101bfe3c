//! The caches under comparison behind one small trait, so that every
//! workload is written once and monomorphised per cache.
//!
//! Every cache is built the way its users get it by default: cachette's
//! memory engine from the default builder (automatic shard count) with an
//! entry bound and a policy; moka's `sync::Cache` with `max_capacity`;
//! quick_cache's `sync::Cache::new`; `lru::LruCache::new`. Each pays what its
//! own API requires: cachette copies a `&str` key on insert, the others take
//! an owned key, so the adapters clone it there.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::Hash;
use std::num::NonZeroUsize;
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use cachette::{MemoryBackend, Policy, SetOptions};

/// A key type of a workload: `u64` for the hit-ratio replays, `String` for
/// throughput and memory.
pub(crate) trait BenchKey: Hash + Eq + Clone + Send + Sync + 'static {
    /// Calls `f` with the key as text, the form cachette's keys take.
    fn with_str<R>(&self, f: impl FnOnce(&str) -> R) -> R;
}

impl BenchKey for u64 {
    fn with_str<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        thread_local! {
            // One buffer per thread, reused by every request.
            static BUFFER: RefCell<String> = const { RefCell::new(String::new()) };
        }
        BUFFER.with_borrow_mut(|buffer| {
            buffer.clear();
            // Writing to a String cannot fail.
            let _ = write!(buffer, "{self}");
            f(buffer)
        })
    }
}

impl BenchKey for String {
    fn with_str<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        f(self)
    }
}

/// A value type of a workload: `()` for the hit-ratio replays, `Bytes`
/// elsewhere.
pub(crate) trait BenchValue: Clone + Send + Sync + 'static {
    /// The value as cachette stores it.
    fn into_bytes(self) -> Bytes;
    /// The value from what cachette returns.
    fn from_bytes(bytes: Bytes) -> Self;
}

impl BenchValue for () {
    fn into_bytes(self) -> Bytes {
        Bytes::new()
    }

    fn from_bytes(_: Bytes) -> Self {}
}

impl BenchValue for Bytes {
    fn into_bytes(self) -> Bytes {
        self
    }

    fn from_bytes(bytes: Bytes) -> Self {
        bytes
    }
}

/// A cache as the workloads see it.
pub(crate) trait BenchCache<K, V>: Sync {
    /// Reads a key; `Some` on a hit.
    fn get(&self, key: &K) -> Option<V>;
    /// Writes a key, cloning it only if the cache needs an owned one.
    fn insert(&self, key: &K, value: V);
    /// Runs deferred maintenance (moka's pending tasks); a no-op elsewhere.
    fn settle(&self) {}
}

/// A workload that runs against any cache: the visitor that
/// [`CacheKind::run`] hands the concrete cache to.
pub(crate) trait Workload<K: BenchKey, V: BenchValue> {
    /// What the workload produces.
    type Output;
    /// Runs the workload against `cache`.
    fn run<C: BenchCache<K, V> + 'static>(self, cache: C) -> Self::Output;
}

/// Every cache the harness knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheKind {
    /// cachette's memory engine with a policy.
    Cachette(Policy),
    /// `moka::sync::Cache`.
    Moka,
    /// `quick_cache::sync::Cache`.
    QuickCache,
    /// `lru::LruCache` behind a mutex.
    Lru,
    /// An unbounded `std::collections::HashMap`, the memory reference.
    HashMap,
}

impl CacheKind {
    /// Every cachette policy, in [`Policy::ALL`] order.
    pub(crate) fn cachette_policies() -> impl Iterator<Item = CacheKind> {
        Policy::ALL.into_iter().map(CacheKind::Cachette)
    }

    /// cachette with its default policy.
    pub(crate) fn cachette_default() -> CacheKind {
        CacheKind::Cachette(Policy::default())
    }

    /// The name used in tables and JSON: `cachette/s3fifo`, `moka`, ...
    pub(crate) fn name(self) -> String {
        match self {
            CacheKind::Cachette(policy) => format!("cachette/{policy}"),
            CacheKind::Moka => "moka".to_owned(),
            CacheKind::QuickCache => "quick_cache".to_owned(),
            CacheKind::Lru => "lru".to_owned(),
            CacheKind::HashMap => "HashMap".to_owned(),
        }
    }

    /// Builds this cache bounded to `capacity` entries (the `HashMap`
    /// ignores the bound) and runs `workload` on it.
    pub(crate) fn run<K, V, W>(self, capacity: u64, workload: W) -> W::Output
    where
        K: BenchKey,
        V: BenchValue,
        W: Workload<K, V>,
    {
        match self {
            CacheKind::Cachette(policy) => workload.run(CachetteCache::new(policy, capacity)),
            CacheKind::Moka => workload.run(MokaCache::new(capacity)),
            CacheKind::QuickCache => workload.run(QuickCache::new(capacity)),
            CacheKind::Lru => workload.run(LruCache::new(capacity)),
            CacheKind::HashMap => workload.run(MapCache::default()),
        }
    }
}

/// A harness error: the cache refused an operation the workload relies on,
/// so its numbers would mean nothing.
#[cold]
fn refused(operation: &str, error: &cachette::Error) -> ! {
    panic!("cachette refused {operation}: {error}")
}

/// cachette's memory engine through its synchronous fast path.
struct CachetteCache {
    backend: MemoryBackend,
    options: SetOptions,
}

impl CachetteCache {
    fn new(policy: Policy, capacity: u64) -> Self {
        let backend = MemoryBackend::builder()
            .max_entries(capacity.max(1))
            .policy(policy)
            .build()
            .unwrap_or_else(|error| refused("the builder options", &error));
        CachetteCache {
            backend,
            options: SetOptions::new(),
        }
    }
}

impl<K: BenchKey, V: BenchValue> BenchCache<K, V> for CachetteCache {
    fn get(&self, key: &K) -> Option<V> {
        key.with_str(|key| match self.backend.get_sync(key) {
            Ok(value) => value.map(V::from_bytes),
            Err(error) => refused("get_sync", &error),
        })
    }

    fn insert(&self, key: &K, value: V) {
        key.with_str(|key| {
            if let Err(error) = self
                .backend
                .set_sync(key, value.into_bytes(), &self.options)
            {
                refused("set_sync", &error);
            }
        });
    }
}

/// `moka::sync::Cache` with `max_capacity`.
struct MokaCache<K, V>(moka::sync::Cache<K, V>);

impl<K: BenchKey, V: BenchValue> MokaCache<K, V> {
    fn new(capacity: u64) -> Self {
        MokaCache(moka::sync::Cache::new(capacity))
    }
}

impl<K: BenchKey, V: BenchValue> BenchCache<K, V> for MokaCache<K, V> {
    fn get(&self, key: &K) -> Option<V> {
        self.0.get(key)
    }

    fn insert(&self, key: &K, value: V) {
        self.0.insert(key.clone(), value);
    }

    fn settle(&self) {
        self.0.run_pending_tasks();
    }
}

/// `quick_cache::sync::Cache::new(capacity)`.
struct QuickCache<K, V>(quick_cache::sync::Cache<K, V>);

impl<K: BenchKey, V: BenchValue> QuickCache<K, V> {
    fn new(capacity: u64) -> Self {
        QuickCache(quick_cache::sync::Cache::new(to_usize(capacity)))
    }
}

impl<K: BenchKey, V: BenchValue> BenchCache<K, V> for QuickCache<K, V> {
    fn get(&self, key: &K) -> Option<V> {
        self.0.get(key)
    }

    fn insert(&self, key: &K, value: V) {
        self.0.insert(key.clone(), value);
    }
}

/// `lru::LruCache`; single-threaded, so behind an (uncontended) mutex.
struct LruCache<K: Hash + Eq, V>(Mutex<lru::LruCache<K, V>>);

impl<K: BenchKey, V: BenchValue> LruCache<K, V> {
    fn new(capacity: u64) -> Self {
        let capacity = NonZeroUsize::new(to_usize(capacity)).unwrap_or(NonZeroUsize::MIN);
        LruCache(Mutex::new(lru::LruCache::new(capacity)))
    }
}

impl<K: BenchKey, V: BenchValue> BenchCache<K, V> for LruCache<K, V> {
    fn get(&self, key: &K) -> Option<V> {
        lock(&self.0).get(key).cloned()
    }

    fn insert(&self, key: &K, value: V) {
        lock(&self.0).put(key.clone(), value);
    }
}

/// A plain `HashMap` with the standard hasher: what storing the entries
/// costs without any cache bookkeeping.
struct MapCache<K, V>(Mutex<HashMap<K, V>>);

impl<K, V> Default for MapCache<K, V> {
    fn default() -> Self {
        MapCache(Mutex::new(HashMap::new()))
    }
}

impl<K: BenchKey, V: BenchValue> BenchCache<K, V> for MapCache<K, V> {
    fn get(&self, key: &K) -> Option<V> {
        lock(&self.0).get(key).cloned()
    }

    fn insert(&self, key: &K, value: V) {
        lock(&self.0).insert(key.clone(), value);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn to_usize(capacity: u64) -> usize {
    usize::try_from(capacity).unwrap_or(usize::MAX).max(1)
}
