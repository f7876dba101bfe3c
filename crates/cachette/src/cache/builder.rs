//! [`CacheBuilder`]: the options of a [`Cache`] and their checks.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::{Backend, Expiry};
use crate::error::{Error, Result};

use super::Cache;
use super::clock::{Clock, SystemClock};
use super::codec::{Codec, DefaultCodec, NAME};
use super::inner::Inner;
use super::keys::{KeyHasher, KeySpace, fnv1a_128};
use super::lock::DistributedLock;
use super::options::Defaults;
use super::version;

/// The namespace of a cache built without [`CacheBuilder::namespace`].
pub const DEFAULT_NAMESPACE: &str = "cachette";
/// The default of [`CacheBuilder::fail_safe_throttle`]: 30 seconds.
pub const DEFAULT_FAIL_SAFE_THROTTLE: Duration = Duration::from_secs(30);
/// The default of [`CacheBuilder::fail_safe_recovery`]: 5 seconds.
pub const DEFAULT_FAIL_SAFE_RECOVERY: Duration = Duration::from_secs(5);
/// The default of [`CacheBuilder::fail_safe_capacity`]: 10,000 entries.
pub const DEFAULT_FAIL_SAFE_CAPACITY: usize = 10_000;
/// The default of `CacheBuilder::max_decompressed_size` (feature `lz4`):
/// 64 MiB.
pub const DEFAULT_MAX_DECOMPRESSED_SIZE: usize = 64 << 20;

/// Builds a [`Cache`]: consuming setters, then [`build`](Self::build),
/// which checks the options and reads the namespace's key version from
/// the backend. The [module docs](super) list every option with its
/// default.
#[must_use = "a CacheBuilder does nothing until `build` is awaited"]
pub struct CacheBuilder<C: Codec = DefaultCodec> {
    backend: Arc<dyn Backend>,
    codec: C,
    namespace: String,
    defaults: Defaults,
    fail_safe_capacity: usize,
    compress_above: Option<usize>,
    max_decompressed: usize,
    lock: Option<DistributedLock>,
    clock: Arc<dyn Clock>,
    hasher: KeyHasher,
}

impl<C: Codec> fmt::Debug for CacheBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("backend", &self.backend.name())
            .field("codec", &self.codec.name())
            .field("namespace", &self.namespace)
            .field("defaults", &self.defaults)
            .field("fail_safe_capacity", &self.fail_safe_capacity)
            .field("compress_above", &self.compress_above)
            .field("max_decompressed_size", &self.max_decompressed)
            .field("distributed_lock", &self.lock)
            .field("clock", &self.clock)
            .finish()
    }
}

impl CacheBuilder<DefaultCodec> {
    pub(super) fn new(backend: Arc<dyn Backend>) -> Self {
        CacheBuilder {
            backend,
            codec: DefaultCodec::default(),
            namespace: DEFAULT_NAMESPACE.to_owned(),
            defaults: Defaults {
                expiry: Expiry::Default,
                soft_ttl: None,
                negative_ttl: None,
                jitter: None,
                fail_safe: None,
                fail_safe_throttle: DEFAULT_FAIL_SAFE_THROTTLE,
                fail_safe_recovery: DEFAULT_FAIL_SAFE_RECOVERY,
                soft_timeout: None,
                hard_timeout: None,
                eager_refresh: None,
            },
            fail_safe_capacity: DEFAULT_FAIL_SAFE_CAPACITY,
            compress_above: None,
            max_decompressed: DEFAULT_MAX_DECOMPRESSED_SIZE,
            lock: None,
            clock: Arc::new(SystemClock),
            hasher: fnv1a_128,
        }
    }
}

impl<C: Codec> CacheBuilder<C> {
    /// The codec of values (default [`DefaultCodec`]).
    pub fn codec<D: Codec>(self, codec: D) -> CacheBuilder<D> {
        CacheBuilder {
            backend: self.backend,
            codec,
            namespace: self.namespace,
            defaults: self.defaults,
            fail_safe_capacity: self.fail_safe_capacity,
            compress_above: self.compress_above,
            max_decompressed: self.max_decompressed,
            lock: self.lock,
            clock: self.clock,
            hasher: self.hasher,
        }
    }

    /// The namespace in front of every stored key (default
    /// [`DEFAULT_NAMESPACE`]). Not empty; no `:`, whitespace or control
    /// characters.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The default TTL of entries (default: the backend's default TTL,
    /// [`Expiry::Default`]).
    pub fn default_ttl(self, ttl: Duration) -> Self {
        self.default_expiry(Expiry::After(ttl))
    }

    /// The default expiry of entries (default [`Expiry::Default`]).
    pub fn default_expiry(mut self, expiry: Expiry) -> Self {
        self.defaults.expiry = expiry;
        self
    }

    /// The default soft TTL (default none): after it a value is stale, and
    /// `get_or_load` returns it at once while one background load
    /// refreshes it. Must be shorter than the TTL. Turns envelopes on.
    pub fn soft_ttl(mut self, soft_ttl: Duration) -> Self {
        self.defaults.soft_ttl = Some(soft_ttl);
        self
    }

    /// Caches a loader's "not found" (`Ok(None)`) for this long (default:
    /// not cached). Turns envelopes on.
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.defaults.negative_ttl = Some(ttl);
        self
    }

    /// Adds a random extra of up to `jitter` to every TTL and soft TTL
    /// (default none; zero is none).
    pub fn jitter(mut self, jitter: Duration) -> Self {
        self.defaults.jitter = Some(jitter);
        self
    }

    /// Turns fail-safe on (default off): when a load or the backend fails,
    /// `get_or_load` returns a stale value younger than `max_age` instead
    /// of the error. Entries are kept by the backend for `max_age` (or
    /// their TTL, if longer). `max_age` must be at least the time a value
    /// stays fresh (the soft TTL, or else the TTL). Turns envelopes on.
    /// One call can change it with
    /// [`EntryOptions::fail_safe`](super::EntryOptions::fail_safe) or turn
    /// it off with [`EntryOptions::no_fail_safe`](super::EntryOptions::no_fail_safe).
    pub fn fail_safe(mut self, max_age: Duration) -> Self {
        self.defaults.fail_safe = Some(max_age);
        self
    }

    /// After a fail-safe activation, how long `get_or_load` of that key
    /// serves the stale value at once, without waiting for the loader or
    /// the backend (default [`DEFAULT_FAIL_SAFE_THROTTLE`]). Meanwhile
    /// the key is tried again in the background every
    /// [`fail_safe_recovery`](Self::fail_safe_recovery), and the first
    /// success ends the throttle.
    pub fn fail_safe_throttle(mut self, throttle: Duration) -> Self {
        self.defaults.fail_safe_throttle = throttle;
        self
    }

    /// Auto-recovery: while a key is throttled after a fail-safe
    /// activation, at most one `get_or_load` call per `interval` (default
    /// [`DEFAULT_FAIL_SAFE_RECOVERY`]) starts one background attempt,
    /// which reads the backend and, unless it finds a fresh value, runs
    /// the loader. The first attempt that succeeds stores its value and
    /// ends the throttle, so a recovered backend or database is noticed
    /// within about one `interval` instead of one throttle. An interval
    /// not below the throttle turns recovery attempts off.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use cachette::MemoryBackend;
    /// # use cachette::cache::{Cache, EntryOptions, TokioClock};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> cachette::Result<()> {
    /// let secs = Duration::from_secs;
    /// let cache = Cache::builder(Arc::new(MemoryBackend::default()))
    ///     .clock(TokioClock::default()) // tokio's paused clock, for this example
    ///     .default_ttl(secs(10))
    ///     .fail_safe(secs(300))
    ///     .fail_safe_throttle(secs(60))
    ///     .fail_safe_recovery(secs(5))
    ///     .build()
    ///     .await?;
    /// let opts = EntryOptions::new();
    /// let load = |price: u32, up: bool| {
    ///     move |_| async move {
    ///         if up { Ok(Some(price)) } else { Err(std::io::Error::other("database down")) }
    ///     }
    /// };
    /// assert_eq!(cache.get_or_load("price", load(1, true), &opts).await?, Some(1));
    ///
    /// tokio::time::advance(secs(11)).await; // expired, and the database is down
    /// assert_eq!(cache.get_or_load("price", load(2, false), &opts).await?, Some(1)); // fail-safe
    ///
    /// tokio::time::advance(secs(5)).await; // the database is back; an attempt is due
    /// assert_eq!(cache.get_or_load("price", load(2, true), &opts).await?, Some(1)); // starts it
    /// tokio::time::sleep(Duration::from_millis(1)).await; // the attempt runs in the background
    ///
    /// // The throttle ended 44 s early: the recovered value is served.
    /// assert_eq!(cache.get_or_load("price", load(3, true), &opts).await?, Some(2));
    /// # Ok(())
    /// # }
    /// ```
    pub fn fail_safe_recovery(mut self, interval: Duration) -> Self {
        self.defaults.fail_safe_recovery = interval;
        self
    }

    /// Eager refresh (default off, FusionCache's `EagerRefreshThreshold`):
    /// a `get_or_load` hit after `fraction` of the entry's fresh life (the
    /// time to its soft TTL, or to its TTL without one) returns the fresh
    /// value and starts one background refresh, so that a hot key is
    /// refreshed before it goes stale. Above 0 and below 1; needs a soft
    /// TTL or a TTL. Turns envelopes on (the entry's age is needed).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use cachette::MemoryBackend;
    /// # use cachette::cache::Cache;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> cachette::Result<()> {
    /// let cache = Cache::builder(Arc::new(MemoryBackend::default()))
    ///     .default_ttl(Duration::from_secs(600))
    ///     .soft_ttl(Duration::from_secs(60))
    ///     .eager_refresh(0.9) // hits after 54 s refresh in the background
    ///     .build()
    ///     .await?;
    /// # let _ = cache;
    /// let error = Cache::builder(Arc::new(MemoryBackend::default()))
    ///     .default_ttl(Duration::from_secs(600))
    ///     .eager_refresh(1.5)
    ///     .build()
    ///     .await
    ///     .unwrap_err();
    /// assert!(error.message().contains("eager_refresh"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn eager_refresh(mut self, fraction: f64) -> Self {
        self.defaults.eager_refresh = Some(super::options::Fraction(fraction));
        self
    }

    /// How many keys' last values this process keeps for fail-safe when
    /// the backend fails (default [`DEFAULT_FAIL_SAFE_CAPACITY`]); the
    /// oldest insertion goes first.
    pub fn fail_safe_capacity(mut self, entries: usize) -> Self {
        self.fail_safe_capacity = entries;
        self
    }

    /// The default soft timeout of loads (default none): a caller holding
    /// a stale value gets it after this long, and the load goes on in the
    /// background.
    pub fn soft_timeout(mut self, timeout: Duration) -> Self {
        self.defaults.soft_timeout = Some(timeout);
        self
    }

    /// The default hard timeout of loads (default none): a load still
    /// running after it is cancelled and fails with
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout), unless fail-safe
    /// has a stale value.
    pub fn hard_timeout(mut self, timeout: Duration) -> Self {
        self.defaults.hard_timeout = Some(timeout);
        self
    }

    /// Compresses payloads of at least `bytes` with LZ4 when that makes
    /// them smaller (default off). Turns envelopes on.
    #[cfg(feature = "lz4")]
    pub fn compress_above(mut self, bytes: usize) -> Self {
        self.compress_above = Some(bytes);
        self
    }

    /// The largest payload a read decompresses (default
    /// [`DEFAULT_MAX_DECOMPRESSED_SIZE`]). A stored value declaring more
    /// is counted as corrupt ([`CacheStats::corrupt`](super::CacheStats::corrupt))
    /// and read as a miss, without allocating the declared size: a hostile
    /// or damaged entry cannot make readers allocate gigabytes.
    #[cfg(feature = "lz4")]
    pub fn max_decompressed_size(mut self, bytes: usize) -> Self {
        self.max_decompressed = bytes;
        self
    }

    /// Lets one process at a time load a key (default off). A loader first
    /// asks the backend for a lease of the entry's key
    /// ([`Backend::lease`](crate::Backend::lease): Memcached's `mg … N`/`R`,
    /// held for at most `lock_ttl`); where the backend has none, it takes
    /// `{namespace}:__lock:{hash}` with an only-if-absent `set` that
    /// expires after `lock_ttl`. The others serve their stale value if
    /// they have one; otherwise they poll for the value (10 ms, doubling,
    /// at most 250 ms apart) and load it themselves once `wait` has passed.
    /// Both misses and the refreshes of stale values (see
    /// [`soft_ttl`](Self::soft_ttl)) take the lock. Needs a backend with
    /// atomic conditional sets
    /// ([`Capabilities::conditional_set`](crate::Capabilities::conditional_set)).
    pub fn distributed_lock(mut self, lock_ttl: Duration, wait: Duration) -> Self {
        self.lock = Some(DistributedLock { lock_ttl, wait });
        self
    }

    /// The wall clock of envelope timestamps (default [`SystemClock`]);
    /// tests with tokio's paused clock use
    /// [`TokioClock`](super::TokioClock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// A test hook, built only with the `testing` feature: replaces the
    /// hash of long keys (FNV-1a, 128 bits), so that a test can force two
    /// keys onto one stored key and check that they read each other's
    /// entry as a miss. Not for production caches: a weak hash turns most
    /// reads of long keys into misses.
    #[cfg(feature = "testing")]
    pub fn key_hasher(mut self, hasher: fn(&str) -> u128) -> Self {
        self.hasher = hasher;
        self
    }

    /// The checks of [`build`](Self::build) that need no I/O, the
    /// namespace's included: what
    /// [`CacheOptions`](super::CacheOptions) checks when a
    /// [`CacheManager`](crate::CacheManager) is built.
    pub(super) fn check(&self) -> Result<()> {
        self.defaults
            .check()
            .map_err(|message| Error::config(NAME, message))?;
        if self.codec.id() == 0 {
            return Err(Error::config(NAME, "the codec id 0 is reserved"));
        }
        if self.fail_safe_capacity == 0 {
            return Err(Error::config(NAME, "fail_safe_capacity is zero"));
        }
        if self.compress_above == Some(0) {
            return Err(Error::config(NAME, "compress_above is zero"));
        }
        let capabilities = self.backend.capabilities();
        if let Some(lock) = &self.lock {
            if lock.lock_ttl.is_zero() || lock.wait.is_zero() {
                return Err(Error::config(
                    NAME,
                    "distributed_lock needs a nonzero lock_ttl and wait",
                ));
            }
            if !capabilities.conditional_set {
                return Err(Error::config(
                    NAME,
                    format!(
                        "distributed_lock needs atomic only-if-absent sets, which the backend `{}` \
                         does not offer",
                        self.backend.name()
                    ),
                ));
            }
        }
        KeySpace::new(
            self.namespace.clone(),
            capabilities.max_key_len,
            self.hasher,
        )?;
        Ok(())
    }

    /// Checks the options and builds the cache. Reads the namespace's key
    /// version (`{namespace}:__version`) from the backend, so that this
    /// cache starts at the latest [`bump_version`](Cache::bump_version)
    /// of any process.
    ///
    /// Errors: [`ErrorKind::Config`](crate::ErrorKind::Config) naming the
    /// option at fault (zero durations, `soft_ttl` not below `ttl`,
    /// a `fail_safe` maximum age below the fresh time, `soft_timeout` not below
    /// `hard_timeout`, a bad namespace, a distributed lock on a backend
    /// without conditional sets); the backend's error if the version cannot
    /// be read.
    pub async fn build(self) -> Result<Cache<C>> {
        self.check()?;
        let capabilities = self.backend.capabilities();
        let keys = KeySpace::new(self.namespace, capabilities.max_key_len, self.hasher)?;
        let version = version::read(&*self.backend, &keys, 0)
            .await
            .map_err(|e| e.context(format!("reading the key version `{}`", keys.version_key())))?;
        keys.raise_version(version);
        let envelopes = self.defaults.soft_ttl.is_some()
            || self.defaults.fail_safe.is_some()
            || self.defaults.negative_ttl.is_some()
            || self.defaults.eager_refresh.is_some()
            || self.compress_above.is_some();
        Ok(Cache {
            inner: Arc::new(Inner::new(
                self.backend,
                self.codec,
                keys,
                self.defaults,
                envelopes,
                (self.compress_above, self.max_decompressed),
                self.lock,
                self.clock,
                self.fail_safe_capacity,
            )),
        })
    }
}
