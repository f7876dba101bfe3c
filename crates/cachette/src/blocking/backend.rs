//! [`BackendHandle`]: every method of the [`Backend`] trait as a blocking
//! call, over any backend, and [`KeyIter`] for its key listings.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;

use crate::backend::{
    Backend, Capabilities, Expiry, KeyStream, KeyTtl, Lease, LeaseToken, SetOptions, Stats,
};
use crate::cache;
use crate::error::Result;

use super::cache::CacheBuilder;
use super::runtime::Driver;

/// Opens the backend of `url` (any scheme [`cachette::open`](crate::open)
/// knows) on a new runtime and returns a blocking handle to it.
///
/// ```
/// use cachette::SetOptions;
///
/// fn main() -> cachette::Result<()> {
///     let backend = cachette::blocking::open("memory://")?;
///     backend.set("greeting", "hello".into(), &SetOptions::new())?;
///     assert_eq!(backend.get("greeting")?.as_deref(), Some(&b"hello"[..]));
///     Ok(())
/// }
/// ```
pub fn open(url: &str) -> Result<BackendHandle> {
    let driver = Driver::start("open")?;
    let backend = driver.call("open", crate::open(url))?;
    Ok(BackendHandle { backend, driver })
}

/// A blocking handle to any [`Backend`]: each method of the trait as a
/// blocking call on the handle's own runtime (see the
/// [module docs](super)). Made by [`open`] or
/// [`BackendHandle::new`]; cheap to clone (clones share the backend and
/// the runtime, which stops when the last clone is dropped); `Send + Sync`.
///
/// ```
/// use cachette::{Expiry, KeyTtl, SetOptions};
///
/// # fn main() -> cachette::Result<()> {
/// let backend = cachette::blocking::open("memory://")?;
/// backend.set("a", "1".into(), &SetOptions::new().tags(["t"]))?;
/// assert!(backend.exists("a")?);
/// assert_eq!(backend.ttl("a")?, KeyTtl::Persistent);
/// assert_eq!(backend.incr("hits", 5, Expiry::Never)?, 5);
/// let mut keys = backend.keys("*")?.collect::<cachette::Result<Vec<String>>>()?;
/// keys.sort();
/// assert_eq!(keys, ["a", "hits"]);
/// backend.invalidate_tags(&["t"])?;
/// assert!(!backend.exists("a")?);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct BackendHandle {
    backend: Arc<dyn Backend>,
    /// Declared after `backend`: the backend is dropped before the
    /// runtime stops.
    driver: Arc<Driver>,
}

impl fmt::Debug for BackendHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendHandle")
            .field("backend", &self.backend.name())
            .finish_non_exhaustive()
    }
}

impl BackendHandle {
    /// Wraps a backend that already exists, on a new runtime.
    ///
    /// The backend's own background tasks (connections, purge loops) stay
    /// on the runtime they were started on: wrap a backend that needs no
    /// runtime (the memory engine, built outside one) or one whose runtime
    /// outlives this handle. A backend for this handle alone is best
    /// opened by [`open`], on the handle's runtime.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use cachette::{MemoryBackend, SetOptions};
    /// use cachette::blocking::BackendHandle;
    ///
    /// # fn main() -> cachette::Result<()> {
    /// let backend = BackendHandle::new(Arc::new(MemoryBackend::default()))?;
    /// backend.set("k", "v".into(), &SetOptions::new())?;
    /// assert!(backend.delete("k")?);
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(backend: Arc<dyn Backend>) -> Result<BackendHandle> {
        Ok(BackendHandle {
            backend,
            driver: Driver::start("new")?,
        })
    }

    /// The backend behind this handle.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// A builder of a blocking typed [`Cache`](super::Cache) over this
    /// backend, sharing this handle's runtime.
    ///
    /// ```
    /// # use cachette::EntryOptions;
    /// # fn main() -> cachette::Result<()> {
    /// let backend = cachette::blocking::open("memory://")?;
    /// let cache = backend.cache_builder().namespace("users").build()?;
    /// cache.set("1", &"Ada", &EntryOptions::new())?;
    /// assert!(backend.exists("users:v0:1")?);
    /// # Ok(())
    /// # }
    /// ```
    pub fn cache_builder(&self) -> CacheBuilder {
        CacheBuilder::on(
            cache::Cache::builder(Arc::clone(&self.backend)),
            Arc::clone(&self.driver),
        )
    }

    /// The backend's name, used in errors, logs and metrics.
    pub fn name(&self) -> &'static str {
        self.backend.name()
    }

    /// What the backend can do and its limits.
    pub fn capabilities(&self) -> Capabilities {
        self.backend.capabilities()
    }

    /// [`Backend::get`]: the value of `key`, if present.
    pub fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.driver.call("get", self.backend.get(key))
    }

    /// [`Backend::set`]: writes `value`; returns whether it was written
    /// (a condition of `options` may prevent it).
    pub fn set(&self, key: &str, value: Bytes, options: &SetOptions) -> Result<bool> {
        self.driver
            .call("set", self.backend.set(key, value, options))
    }

    /// [`Backend::delete`]: removes `key`; returns whether it existed.
    pub fn delete(&self, key: &str) -> Result<bool> {
        self.driver.call("delete", self.backend.delete(key))
    }

    /// [`Backend::exists`]: whether `key` is present.
    pub fn exists(&self, key: &str) -> Result<bool> {
        self.driver.call("exists", self.backend.exists(key))
    }

    /// [`Backend::get_many`]: one answer per key, in order.
    pub fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>> {
        self.driver.call("get_many", self.backend.get_many(keys))
    }

    /// [`Backend::set_many`]: one "written" flag per entry, in order.
    pub fn set_many(&self, entries: &[(&str, Bytes)], options: &SetOptions) -> Result<Vec<bool>> {
        self.driver
            .call("set_many", self.backend.set_many(entries, options))
    }

    /// [`Backend::delete_many`]: how many of the keys existed.
    pub fn delete_many(&self, keys: &[&str]) -> Result<u64> {
        self.driver
            .call("delete_many", self.backend.delete_many(keys))
    }

    /// [`Backend::incr`]: adds `delta` to the counter at `key`.
    pub fn incr(&self, key: &str, delta: i64, expiry: Expiry) -> Result<i64> {
        self.driver
            .call("incr", self.backend.incr(key, delta, expiry))
    }

    /// [`Backend::decr`]: subtracts `delta` from the counter at `key`.
    pub fn decr(&self, key: &str, delta: i64, expiry: Expiry) -> Result<i64> {
        self.driver
            .call("decr", self.backend.decr(key, delta, expiry))
    }

    /// [`Backend::ttl`]: the remaining lifetime of `key`.
    pub fn ttl(&self, key: &str) -> Result<KeyTtl> {
        self.driver.call("ttl", self.backend.ttl(key))
    }

    /// [`Backend::touch`]: sets how long a present key is kept.
    pub fn touch(&self, key: &str, expiry: Expiry) -> Result<bool> {
        self.driver.call("touch", self.backend.touch(key, expiry))
    }

    /// [`Backend::clear`]: removes every key of this backend.
    pub fn clear(&self) -> Result<()> {
        self.driver.call("clear", self.backend.clear())
    }

    /// [`Backend::keys`]: the keys matching a glob pattern, read lazily as
    /// the iterator advances (collect it into a `Result<Vec<String>>`).
    pub fn keys(&self, pattern: &str) -> Result<KeyIter> {
        let stream = self.driver.call("keys", self.backend.keys(pattern))?;
        Ok(KeyIter {
            stream: Some(stream),
            driver: Arc::clone(&self.driver),
        })
    }

    /// [`Backend::invalidate_tags`]: removes the entries with any of these
    /// tags.
    pub fn invalidate_tags(&self, tags: &[&str]) -> Result<u64> {
        self.driver
            .call("invalidate_tags", self.backend.invalidate_tags(tags))
    }

    /// [`Backend::lease`]: asks for the right to load `key`.
    pub fn lease(&self, key: &str, ttl: Duration) -> Result<Option<Lease>> {
        self.driver.call("lease", self.backend.lease(key, ttl))
    }

    /// [`Backend::release_lease`]: gives back a lease whose load wrote
    /// nothing.
    pub fn release_lease(&self, key: &str, lease: LeaseToken) -> Result<()> {
        self.driver
            .call("release_lease", self.backend.release_lease(key, lease))
    }

    /// [`Backend::purge_expired`]: removes expired entries now.
    pub fn purge_expired(&self) -> Result<u64> {
        self.driver
            .call("purge_expired", self.backend.purge_expired())
    }

    /// [`Backend::stats`]: the backend's counters.
    pub fn stats(&self) -> Result<Stats> {
        self.driver.call("stats", self.backend.stats())
    }

    /// [`Backend::health`]: whether the backend can serve requests.
    pub fn health(&self) -> Result<()> {
        self.driver.call("health", self.backend.health())
    }

    /// [`Backend::close`]: releases connections and background tasks.
    pub fn close(&self) -> Result<()> {
        self.driver.call("close", self.backend.close())
    }
}

/// The keys of [`BackendHandle::keys`], each read by a blocking call as
/// the iterator advances. After an error (the backend's, or the call made
/// inside an async runtime) the iterator ends.
pub struct KeyIter {
    /// `None` once ended.
    stream: Option<KeyStream>,
    /// Declared after `stream`, which may hold a connection of the runtime.
    driver: Arc<Driver>,
}

impl fmt::Debug for KeyIter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyIter")
            .field("ended", &self.stream.is_none())
            .finish_non_exhaustive()
    }
}

impl Iterator for KeyIter {
    type Item = Result<String>;

    fn next(&mut self) -> Option<Result<String>> {
        let stream = self.stream.as_mut()?;
        let next = match self.driver.run("keys", stream.next()) {
            Ok(next) => next,
            Err(error) => Some(Err(error)),
        };
        if !matches!(next, Some(Ok(_))) {
            self.stream = None;
        }
        next
    }
}
