//! [`Cache`]: the typed cache of [`cachette::cache`](crate::cache), one
//! blocking call per method, and its [`CacheBuilder`].

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::backend::{Backend, Expiry, KeyInMessage, KeyTtl};
use crate::cache::{self, CacheStats, Clock, Codec, DefaultCodec, EntryOptions, LoadContext};
use crate::error::{Error, ErrorKind, Result};

use super::NAME;
use super::runtime::{Driver, LoadChain};

/// What a blocking loader's error becomes on its way into the async cache.
type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Numbers the blocking caches of this process, for [`LoadChain`].
static NEXT_CACHE_ID: AtomicU64 = AtomicU64::new(0);

/// The typed cache of [`cachette::cache::Cache`](crate::cache::Cache) for
/// synchronous code: the same options, keys, stored layout and
/// `get_or_load` (single-flight across threads, soft TTL, fail-safe,
/// timeouts), each method a blocking call on the cache's own runtime (see
/// the [module docs](super)).
///
/// Cheap to clone: clones share the cache and the runtime, which stops
/// when the last clone is dropped. `Send + Sync`: share it between threads
/// by clone or by reference.
///
/// ```
/// use cachette::EntryOptions;
///
/// fn main() -> cachette::Result<()> {
///     let cache = cachette::blocking::Cache::from_url("memory://")?;
///     cache.set("user:1", &"Ada".to_string(), &EntryOptions::new())?;
///     let name: Option<String> = cache.get("user:1")?;
///     assert_eq!(name.as_deref(), Some("Ada"));
///     assert!(cache.delete("user:1")?);
///     Ok(())
/// }
/// ```
pub struct Cache<C: Codec = DefaultCodec> {
    cache: cache::Cache<C>,
    id: u64,
    /// Declared after `cache`: the cache (and its backend) is dropped
    /// before the runtime stops.
    driver: Arc<Driver>,
}

impl<C: Codec> Clone for Cache<C> {
    fn clone(&self) -> Self {
        Cache {
            cache: self.cache.clone(),
            id: self.id,
            driver: Arc::clone(&self.driver),
        }
    }
}

impl<C: Codec> fmt::Debug for Cache<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("blocking::Cache")
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl Cache<DefaultCodec> {
    /// A builder over `backend` with every default; its runtime starts in
    /// [`CacheBuilder::build`]. The backend should need no runtime of its
    /// own (the memory engine), or be opened by
    /// [`open`](super::open) so that its connections live on the cache's
    /// runtime: build from [`BackendHandle::cache_builder`](super::BackendHandle::cache_builder)
    /// then.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use cachette::MemoryBackend;
    ///
    /// # fn main() -> cachette::Result<()> {
    /// let cache = cachette::blocking::Cache::builder(Arc::new(MemoryBackend::default()))
    ///     .namespace("users")
    ///     .default_ttl(Duration::from_secs(600))
    ///     .build()?;
    /// assert_eq!(cache.namespace(), "users");
    /// # Ok(())
    /// # }
    /// ```
    pub fn builder(backend: Arc<dyn Backend>) -> CacheBuilder<DefaultCodec> {
        CacheBuilder::from(cache::Cache::builder(backend))
    }

    /// Opens the backend of `url` with [`cachette::open`](crate::open) and
    /// builds a cache over it with every default, on a new runtime.
    ///
    /// ```
    /// # fn main() -> cachette::Result<()> {
    /// let cache = cachette::blocking::Cache::from_url("memory://?max_entries=1000")?;
    /// assert_eq!(cache.backend().name(), "memory");
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_url(url: &str) -> Result<Cache<DefaultCodec>> {
        let driver = Driver::start("from_url")?;
        let cache = driver.call("from_url", async {
            cache::Cache::builder(crate::open(url).await?).build().await
        })?;
        Ok(Cache::new(cache, driver))
    }
}

impl<C: Codec> Cache<C> {
    fn new(cache: cache::Cache<C>, driver: Arc<Driver>) -> Self {
        Cache {
            cache,
            id: NEXT_CACHE_ID.fetch_add(1, Ordering::Relaxed),
            driver,
        }
    }

    /// Reads and decodes a value; see
    /// [`cache::Cache::get`](crate::cache::Cache::get).
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.driver.call("get", self.cache.get(key))
    }

    /// Reads the stored bytes of a value without decoding them; see
    /// [`cache::Cache::get_bytes`](crate::cache::Cache::get_bytes).
    pub fn get_bytes(&self, key: &str) -> Result<Option<Bytes>> {
        self.driver.call("get_bytes", self.cache.get_bytes(key))
    }

    /// Encodes and writes a value; see
    /// [`cache::Cache::set`](crate::cache::Cache::set).
    pub fn set<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        options: &EntryOptions,
    ) -> Result<()> {
        self.driver.call("set", self.cache.set(key, value, options))
    }

    /// Writes bytes as they are, with no codec; see
    /// [`cache::Cache::set_bytes`](crate::cache::Cache::set_bytes).
    pub fn set_bytes(&self, key: &str, value: Bytes, options: &EntryOptions) -> Result<()> {
        self.driver
            .call("set_bytes", self.cache.set_bytes(key, value, options))
    }

    /// Removes a key; returns whether it existed.
    pub fn delete(&self, key: &str) -> Result<bool> {
        self.driver.call("delete", self.cache.delete(key))
    }

    /// Reads several values in one backend call; see
    /// [`cache::Cache::get_many`](crate::cache::Cache::get_many).
    ///
    /// ```
    /// # use cachette::EntryOptions;
    /// # fn main() -> cachette::Result<()> {
    /// let cache = cachette::blocking::Cache::from_url("memory://")?;
    /// cache.set_many(&[("a", &1u32), ("b", &2u32)], &EntryOptions::new())?;
    /// let values: Vec<Option<u32>> = cache.get_many(&["a", "b", "c"])?;
    /// assert_eq!(values, [Some(1), Some(2), None]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn get_many<T: DeserializeOwned>(&self, keys: &[&str]) -> Result<Vec<Option<T>>> {
        self.driver.call("get_many", self.cache.get_many(keys))
    }

    /// Encodes and writes several values in one backend call; see
    /// [`cache::Cache::set_many`](crate::cache::Cache::set_many).
    pub fn set_many<T: Serialize>(
        &self,
        entries: &[(&str, &T)],
        options: &EntryOptions,
    ) -> Result<()> {
        self.driver
            .call("set_many", self.cache.set_many(entries, options))
    }

    /// How long the backend keeps a key; see
    /// [`cache::Cache::ttl`](crate::cache::Cache::ttl).
    pub fn ttl(&self, key: &str) -> Result<KeyTtl> {
        self.driver.call("ttl", self.cache.ttl(key))
    }

    /// Sets how long the backend keeps a present key; see
    /// [`cache::Cache::touch`](crate::cache::Cache::touch).
    pub fn touch(&self, key: &str, expiry: Expiry) -> Result<bool> {
        self.driver.call("touch", self.cache.touch(key, expiry))
    }

    /// Adds `delta` to the raw counter at `key`; see
    /// [`cache::Cache::incr`](crate::cache::Cache::incr).
    ///
    /// ```
    /// # use cachette::Expiry;
    /// # fn main() -> cachette::Result<()> {
    /// let cache = cachette::blocking::Cache::from_url("memory://")?;
    /// assert_eq!(cache.incr("visits", 1, Expiry::Never)?, 1);
    /// assert_eq!(cache.incr("visits", 2, Expiry::Never)?, 3);
    /// assert_eq!(cache.decr("visits", 1, Expiry::Never)?, 2);
    /// # Ok(())
    /// # }
    /// ```
    pub fn incr(&self, key: &str, delta: i64, expiry: Expiry) -> Result<i64> {
        self.driver
            .call("incr", self.cache.incr(key, delta, expiry))
    }

    /// Subtracts `delta` from the raw counter at `key`; see
    /// [`incr`](Self::incr).
    pub fn decr(&self, key: &str, delta: i64, expiry: Expiry) -> Result<i64> {
        self.driver
            .call("decr", self.cache.decr(key, delta, expiry))
    }

    /// Returns the value of `key`, running `loader` to produce it when the
    /// cache has no fresh value: the async
    /// [`get_or_load`](crate::cache::Cache::get_or_load), whose loader runs
    /// this closure on the runtime's blocking pool. Single-flight, soft
    /// TTL (a stale value is returned at once and refreshed in the
    /// background), fail-safe, the hard and soft timeouts, negative
    /// caching and the distributed lock are the async cache's, and hold
    /// for every thread of the process that uses this cache or a clone:
    /// concurrent callers of a missing key share one run of the loader and
    /// all get its value, its "not found" or its error (which is not
    /// cached).
    ///
    /// The loader may read other keys through this or another blocking
    /// cache. A loader that asks for its own key, directly or through
    /// blocking loads it starts, gets an [`ErrorKind::InvalidInput`] error
    /// instead of waiting for itself. A hard timeout stops waiting for the
    /// loader, but cannot stop the closure: it runs to its end on its
    /// thread, and its result is dropped.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use cachette::EntryOptions;
    ///
    /// # fn main() -> cachette::Result<()> {
    /// let cache = cachette::blocking::Cache::from_url("memory://")?;
    /// let runs = Arc::new(AtomicUsize::new(0));
    /// for _ in 0..3 {
    ///     let runs = Arc::clone(&runs);
    ///     let answer: Option<u32> = cache.get_or_load(
    ///         "answer",
    ///         move |_ctx| {
    ///             runs.fetch_add(1, Ordering::SeqCst);
    ///             // e.g. a blocking database query
    ///             Ok::<_, std::io::Error>(Some(42))
    ///         },
    ///         &EntryOptions::new(),
    ///     )?;
    ///     assert_eq!(answer, Some(42));
    /// }
    /// assert_eq!(runs.load(Ordering::SeqCst), 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn get_or_load<T, F, E>(
        &self,
        key: &str,
        loader: F,
        options: &EntryOptions,
    ) -> Result<Option<T>>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce(LoadContext) -> std::result::Result<Option<T>, E> + Send + 'static,
        E: Into<BoxError> + Send + 'static,
    {
        let chain = LoadChain::current();
        if chain.contains(self.id, key) {
            return Err(Error::invalid_input(
                NAME,
                format!(
                    "the loader of {} asked for its own key: it would wait for itself",
                    KeyInMessage(key)
                ),
            )
            .with_operation("get_or_load"));
        }
        let chain = chain.with(self.id, key);
        let loader = move |context: LoadContext| async move {
            let run = move || {
                chain.enter(|| loader(context).map_err(|error| -> BoxError { error.into() }))
            };
            match tokio::task::spawn_blocking(run).await {
                Ok(result) => result,
                // Re-raised in the load's task, where the async cache
                // turns a loader's panic into an error for every caller.
                Err(failed) if failed.is_panic() => std::panic::resume_unwind(failed.into_panic()),
                Err(_) => Err::<Option<T>, BoxError>(Box::new(
                    Error::new(
                        ErrorKind::Backend,
                        NAME,
                        "the loader was cancelled: the runtime is shutting down",
                    )
                    .with_operation("get_or_load"),
                )),
            }
        };
        self.driver
            .call("get_or_load", self.cache.get_or_load(key, loader, options))
    }

    /// [`get_or_load`](Self::get_or_load) for a loader that borrows from
    /// its caller (neither `'static` nor `Send`): it runs on the calling
    /// thread, inside this call, as
    /// [`cache::Cache::get_or_load_borrowed`](crate::cache::Cache::get_or_load_borrowed)
    /// runs its loader in the caller's future. Single-flight still holds
    /// across threads (other callers of the key wait for this one). The
    /// trade-offs are the async form's: a stale value is refreshed in the
    /// foreground (this call waits for the loader), eager refresh does not
    /// apply; and since the loader runs inside the call, a hard timeout
    /// cannot interrupt it, and the loader must not call the blocking API
    /// itself (such a call answers [`ErrorKind::Unsupported`]).
    ///
    /// ```
    /// # use cachette::EntryOptions;
    /// # fn main() -> cachette::Result<()> {
    /// let cache = cachette::blocking::Cache::from_url("memory://")?;
    /// let names = vec!["Ada".to_owned(), "Grace".to_owned()]; // e.g. a connection, borrowed
    /// let name: Option<String> = cache.get_or_load_borrowed(
    ///     "user:1",
    ///     |_ctx| Ok::<_, std::io::Error>(names.get(1).cloned()),
    ///     &EntryOptions::new(),
    /// )?;
    /// assert_eq!(name.as_deref(), Some("Grace"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn get_or_load_borrowed<T, F, E>(
        &self,
        key: &str,
        loader: F,
        options: &EntryOptions,
    ) -> Result<Option<T>>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce(LoadContext) -> std::result::Result<Option<T>, E>,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        let in_place = |context| std::future::ready(loader(context));
        self.driver.call(
            "get_or_load",
            self.cache.get_or_load_borrowed(key, in_place, options),
        )
    }

    /// [`get_or_load`](Self::get_or_load) for a loader that cannot fail:
    /// it returns the value, or `None` for "not found", and needs no error
    /// type (which `get_or_load` cannot infer for a loader that only ever
    /// returns `Ok`).
    ///
    /// ```
    /// # use cachette::EntryOptions;
    /// # fn main() -> cachette::Result<()> {
    /// let cache = cachette::blocking::Cache::from_url("memory://")?;
    /// let square = cache.get_with("square:12", |_ctx| Some(12u64 * 12), &EntryOptions::new())?;
    /// assert_eq!(square, Some(144));
    /// # Ok(())
    /// # }
    /// ```
    pub fn get_with<T, F>(&self, key: &str, loader: F, options: &EntryOptions) -> Result<Option<T>>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce(LoadContext) -> Option<T> + Send + 'static,
    {
        self.get_or_load(
            key,
            move |context| Ok::<_, std::convert::Infallible>(loader(context)),
            options,
        )
    }

    /// Removes every entry written with any of these tags; see
    /// [`cache::Cache::invalidate_tags`](crate::cache::Cache::invalidate_tags).
    ///
    /// ```
    /// # use cachette::EntryOptions;
    /// # fn main() -> cachette::Result<()> {
    /// let cache = cachette::blocking::Cache::from_url("memory://")?;
    /// cache.set("user:1", &1u8, &EntryOptions::new().tags(["team:7"]))?;
    /// cache.invalidate_tags(&["team:7"])?;
    /// assert_eq!(cache.get::<u8>("user:1")?, None);
    /// # Ok(())
    /// # }
    /// ```
    pub fn invalidate_tags(&self, tags: &[&str]) -> Result<u64> {
        self.driver
            .call("invalidate_tags", self.cache.invalidate_tags(tags))
    }

    /// Makes every key of this cache unreachable, in O(1), and returns the
    /// new key version; see
    /// [`cache::Cache::bump_version`](crate::cache::Cache::bump_version).
    ///
    /// ```
    /// # use cachette::EntryOptions;
    /// # fn main() -> cachette::Result<()> {
    /// let cache = cachette::blocking::Cache::from_url("memory://")?;
    /// cache.set("user:1", &1u8, &EntryOptions::new())?;
    /// assert_eq!(cache.bump_version()?, 1);
    /// assert_eq!(cache.get::<u8>("user:1")?, None);
    /// assert_eq!(cache.refresh_version()?, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn bump_version(&self) -> Result<u64> {
        self.driver.call("bump_version", self.cache.bump_version())
    }

    /// Adopts a newer key version persisted by another process; see
    /// [`cache::Cache::refresh_version`](crate::cache::Cache::refresh_version).
    pub fn refresh_version(&self) -> Result<u64> {
        self.driver
            .call("refresh_version", self.cache.refresh_version())
    }

    /// The key version in force in this process (no call to the backend).
    pub fn version(&self) -> u64 {
        self.cache.version()
    }

    /// The namespace of every stored key.
    pub fn namespace(&self) -> &str {
        self.cache.namespace()
    }

    /// The backend below this cache.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        self.cache.backend()
    }

    /// The codec of values.
    pub fn codec(&self) -> &C {
        self.cache.codec()
    }

    /// The counters of this cache and its clones (no call to the backend,
    /// so this works anywhere, even inside an async runtime).
    ///
    /// ```
    /// # fn main() -> cachette::Result<()> {
    /// let cache = cachette::blocking::Cache::from_url("memory://")?;
    /// assert_eq!(cache.get::<u8>("nothing")?, None);
    /// assert_eq!(cache.stats().misses, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn stats(&self) -> CacheStats {
        self.cache.stats()
    }
}

/// Builds a blocking [`Cache`]: the async
/// [`cache::CacheBuilder`](crate::cache::CacheBuilder) with the same
/// setters (each documented there, with the defaults in the
/// [`cachette::cache`](crate::cache) module docs), and a
/// [`build`](Self::build) that runs the async build on the cache's
/// runtime. [`map`](Self::map) reaches any option of the async builder;
/// `From` wraps an async builder as it is.
#[must_use = "a CacheBuilder does nothing until `build` is called"]
pub struct CacheBuilder<C: Codec = DefaultCodec> {
    builder: cache::CacheBuilder<C>,
    /// The runtime of the backend, when it was opened by a blocking
    /// handle; `None`: a new one in `build`.
    driver: Option<Arc<Driver>>,
}

impl<C: Codec> fmt::Debug for CacheBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("blocking::CacheBuilder")
            .field("builder", &self.builder)
            .finish_non_exhaustive()
    }
}

impl<C: Codec> From<cache::CacheBuilder<C>> for CacheBuilder<C> {
    /// Builds an async builder's cache on a runtime of its own.
    fn from(builder: cache::CacheBuilder<C>) -> Self {
        CacheBuilder {
            builder,
            driver: None,
        }
    }
}

/// Setters that hand their arguments to the async builder's setter of the
/// same name.
macro_rules! forward_setters {
    ($($(#[$attr:meta])* $name:ident($($arg:ident: $ty:ty),*);)*) => {$(
        $(#[$attr])*
        pub fn $name(self, $($arg: $ty),*) -> Self {
            self.map(|builder| builder.$name($($arg),*))
        }
    )*};
}

impl<C: Codec> CacheBuilder<C> {
    pub(super) fn on(builder: cache::CacheBuilder<C>, driver: Arc<Driver>) -> Self {
        CacheBuilder {
            builder,
            driver: Some(driver),
        }
    }

    /// Changes the async builder inside: any option it has, including
    /// those without a setter here.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # fn main() -> cachette::Result<()> {
    /// let cache = cachette::blocking::Cache::builder(Arc::new(cachette::MemoryBackend::default()))
    ///     .map(|builder| builder.namespace("users").fail_safe(Duration::from_secs(3600)))
    ///     .build()?;
    /// assert_eq!(cache.namespace(), "users");
    /// # Ok(())
    /// # }
    /// ```
    pub fn map<D: Codec>(
        self,
        change: impl FnOnce(cache::CacheBuilder<C>) -> cache::CacheBuilder<D>,
    ) -> CacheBuilder<D> {
        CacheBuilder {
            builder: change(self.builder),
            driver: self.driver,
        }
    }

    /// The codec of values; see
    /// [`cache::CacheBuilder::codec`](crate::cache::CacheBuilder::codec).
    pub fn codec<D: Codec>(self, codec: D) -> CacheBuilder<D> {
        self.map(|builder| builder.codec(codec))
    }

    forward_setters! {
        /// See [`cache::CacheBuilder::namespace`](crate::cache::CacheBuilder::namespace).
        namespace(namespace: impl Into<String>);
        /// See [`cache::CacheBuilder::default_ttl`](crate::cache::CacheBuilder::default_ttl).
        default_ttl(ttl: Duration);
        /// See [`cache::CacheBuilder::default_expiry`](crate::cache::CacheBuilder::default_expiry).
        default_expiry(expiry: Expiry);
        /// See [`cache::CacheBuilder::soft_ttl`](crate::cache::CacheBuilder::soft_ttl).
        soft_ttl(soft_ttl: Duration);
        /// See [`cache::CacheBuilder::negative_ttl`](crate::cache::CacheBuilder::negative_ttl).
        negative_ttl(ttl: Duration);
        /// See [`cache::CacheBuilder::jitter`](crate::cache::CacheBuilder::jitter).
        jitter(jitter: Duration);
        /// See [`cache::CacheBuilder::fail_safe`](crate::cache::CacheBuilder::fail_safe).
        fail_safe(max_age: Duration);
        /// See [`cache::CacheBuilder::fail_safe_throttle`](crate::cache::CacheBuilder::fail_safe_throttle).
        fail_safe_throttle(throttle: Duration);
        /// See [`cache::CacheBuilder::fail_safe_capacity`](crate::cache::CacheBuilder::fail_safe_capacity).
        fail_safe_capacity(entries: usize);
        /// See [`cache::CacheBuilder::soft_timeout`](crate::cache::CacheBuilder::soft_timeout).
        soft_timeout(timeout: Duration);
        /// See [`cache::CacheBuilder::hard_timeout`](crate::cache::CacheBuilder::hard_timeout).
        hard_timeout(timeout: Duration);
        /// See `cache::CacheBuilder::compress_above` (feature `lz4`).
        #[cfg(feature = "lz4")]
        compress_above(bytes: usize);
        /// See `cache::CacheBuilder::max_decompressed_size` (feature `lz4`).
        #[cfg(feature = "lz4")]
        max_decompressed_size(bytes: usize);
        /// See [`cache::CacheBuilder::distributed_lock`](crate::cache::CacheBuilder::distributed_lock).
        distributed_lock(lock_ttl: Duration, wait: Duration);
        /// See [`cache::CacheBuilder::clock`](crate::cache::CacheBuilder::clock).
        clock(clock: impl Clock);
    }

    /// Checks the options and builds the cache, on the runtime of the
    /// handle that opened the backend or else on a new one; see
    /// [`cache::CacheBuilder::build`](crate::cache::CacheBuilder::build)
    /// for the checks. Inside an async runtime: an
    /// [`ErrorKind::Unsupported`] error (see the [module docs](super)).
    pub fn build(self) -> Result<Cache<C>> {
        let driver = match self.driver {
            Some(driver) => driver,
            None => Driver::start("build")?,
        };
        let cache = driver.call("build", self.builder.build())?;
        Ok(Cache::new(cache, driver))
    }
}
