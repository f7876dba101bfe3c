//! [`Prefix`]: a namespace in a shared store.

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;

use crate::backend::{
    Backend, Capabilities, Expiry, KeyStream, KeyTtl, Lease, LeaseToken, SetOptions, Stats,
    validate_key,
};
use crate::error::{Error, Result};
use crate::glob;

use super::Layer;

/// How many keys [`Prefix::clear`](Backend::clear) deletes per
/// `delete_many` call of the inner backend.
const CLEAR_BATCH: usize = 500;

/// Configures a [`Prefix`] backend: the prefix every key and tag gets.
///
/// ```
/// use std::sync::Arc;
/// use cachette::{Backend, MemoryBackend};
/// use cachette::layers::{Layer, PrefixLayer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> cachette::Result<()> {
/// let store: Arc<dyn Backend> = Arc::new(MemoryBackend::default());
/// let sessions = PrefixLayer::new("sessions:")?.layer(store.clone());
/// sessions.set("42", "Ada".into(), &Default::default()).await?;
/// assert_eq!(store.get("sessions:42").await?.as_deref(), Some(&b"Ada"[..]));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixLayer {
    prefix: String,
}

impl PrefixLayer {
    /// Keys and tags will start with `prefix`. Fails with
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) if it is empty.
    pub fn new(prefix: impl Into<String>) -> Result<Self> {
        let prefix = prefix.into();
        if prefix.is_empty() {
            return Err(Error::config(
                "prefix layer",
                "the prefix of the prefix layer is empty; a prefix layer needs a non-empty prefix",
            ));
        }
        Ok(PrefixLayer { prefix })
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Wraps `inner`, keeping its type. Fails with
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) if the prefix leaves
    /// no room for a key under the inner backend's `max_key_len`; through
    /// [`Layer::layer`], such a backend fails each keyed operation and
    /// `health` with that error instead.
    pub fn wrap<B: Backend + ?Sized>(&self, inner: Arc<B>) -> Result<Prefix<B>> {
        let backend = self.around(inner);
        backend.check_room()?;
        Ok(backend)
    }

    /// `inner` under the prefix, whether or not the prefix leaves room.
    fn around<B: Backend + ?Sized>(&self, inner: Arc<B>) -> Prefix<B> {
        let max_key_len = inner
            .capabilities()
            .max_key_len
            .saturating_sub(self.prefix.len());
        Prefix {
            pattern: glob::escape(&self.prefix),
            prefix: self.prefix.clone(),
            max_key_len,
            inner,
        }
    }
}

impl Layer for PrefixLayer {
    fn layer(&self, inner: Arc<dyn Backend>) -> Arc<dyn Backend> {
        Arc::new(self.around(inner))
    }
}

/// A backend whose keys and tags all start with a prefix in the inner
/// backend, a namespace in a store shared with others; built by
/// [`PrefixLayer`].
///
/// - Every key and tag gets the prefix; `keys(pattern)` lists the inner
///   keys that match the escaped prefix followed by `pattern` and returns
///   them without the prefix.
/// - `clear` removes only the keys under the prefix: it lists them (inner
///   `keys`) and deletes them in batches of 500 (inner `delete_many`). It
///   never calls the inner `clear`, so it needs `key_listing`; the
///   capability `clear` reports exactly that.
/// - The prefix counts against the inner backend's key limit: the
///   reported `max_key_len` is the inner one minus the prefix's length, and
///   a longer key is rejected with `InvalidInput` naming that limit.
/// - `stats`, `purge_expired`, `health` and `close` concern the whole
///   inner backend.
/// - A prefix that leaves no room for a key (which only
///   [`Layer::layer`] lets through) reports a `max_key_len` of 0 and fails
///   each keyed operation and `health` with `Config`.
///
/// Keep it below the other layers of this module (see [the module
/// docs](crate::layers)).
pub struct Prefix<B: ?Sized = dyn Backend> {
    prefix: String,
    /// `prefix` with glob characters escaped: the start of inner patterns.
    pattern: String,
    /// The inner limit minus the prefix; 0 if the prefix leaves no room.
    max_key_len: usize,
    inner: Arc<B>,
}

debug_layer!(Prefix {
    prefix,
    max_key_len
});

impl<B: Backend + ?Sized> Prefix<B> {
    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The inner backend.
    pub fn inner(&self) -> &Arc<B> {
        &self.inner
    }

    /// Fails with [`ErrorKind::Config`](crate::ErrorKind::Config) if the
    /// prefix leaves no room for a key under the inner backend's limit.
    fn check_room(&self) -> Result<()> {
        if self.max_key_len > 0 {
            return Ok(());
        }
        Err(Error::config(
            self.inner.name(),
            format!(
                "the prefix of the prefix layer is {} bytes long, which leaves no room for a key \
                 under the limit of {} bytes of the inner backend",
                self.prefix.len(),
                self.inner.capabilities().max_key_len
            ),
        ))
    }

    /// The inner key of `key`, after checking it against the reduced limit.
    fn key(&self, key: &str, op: &'static str) -> Result<String> {
        self.check_room()
            .map_err(|error| error.with_operation(op))?;
        validate_key(self.inner.name(), key, self.max_key_len)
            .map_err(|error| error.with_operation(op))?;
        Ok(self.prefixed(key))
    }

    fn inner_keys(&self, keys: &[&str], op: &'static str) -> Result<Vec<String>> {
        keys.iter().map(|key| self.key(key, op)).collect()
    }

    fn prefixed(&self, name: &str) -> String {
        let mut out = String::with_capacity(self.prefix.len() + name.len());
        out.push_str(&self.prefix);
        out.push_str(name);
        out
    }

    /// `options` with prefixed tags.
    fn options<'o>(&self, options: &'o SetOptions) -> Cow<'o, SetOptions> {
        if options.tags.is_empty() {
            return Cow::Borrowed(options);
        }
        let mut prefixed = options.clone();
        for tag in &mut prefixed.tags {
            *tag = self.prefixed(tag);
        }
        Cow::Owned(prefixed)
    }
}

fn as_strs(keys: &[String]) -> Vec<&str> {
    keys.iter().map(String::as_str).collect()
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<B: Backend + ?Sized> Backend for Prefix<B> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = self.inner.capabilities();
        caps.max_key_len = self.max_key_len;
        caps.clear = caps.key_listing;
        caps
    }

    fn get_ready(&self, key: &str) -> Option<Result<Option<Bytes>>> {
        match self.key(key, "get") {
            Ok(key) => self.inner.get_ready(&key),
            Err(err) => Some(Err(err)),
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.inner.get(&self.key(key, "get")?).await
    }

    async fn set(&self, key: &str, value: Bytes, options: &SetOptions) -> Result<bool> {
        let key = self.key(key, "set")?;
        self.inner.set(&key, value, &self.options(options)).await
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        self.inner.delete(&self.key(key, "delete")?).await
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        self.inner.exists(&self.key(key, "exists")?).await
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>> {
        let keys = self.inner_keys(keys, "get_many")?;
        self.inner.get_many(&as_strs(&keys)).await
    }

    async fn set_many(&self, entries: &[(&str, Bytes)], options: &SetOptions) -> Result<Vec<bool>> {
        let keys = entries
            .iter()
            .map(|(key, _)| self.key(key, "set_many"))
            .collect::<Result<Vec<_>>>()?;
        let entries: Vec<(&str, Bytes)> = keys
            .iter()
            .zip(entries)
            .map(|(key, (_, value))| (key.as_str(), value.clone()))
            .collect();
        self.inner.set_many(&entries, &self.options(options)).await
    }

    async fn delete_many(&self, keys: &[&str]) -> Result<u64> {
        let keys = self.inner_keys(keys, "delete_many")?;
        self.inner.delete_many(&as_strs(&keys)).await
    }

    async fn incr(&self, key: &str, delta: i64, expiry: Expiry) -> Result<i64> {
        self.inner
            .incr(&self.key(key, "incr")?, delta, expiry)
            .await
    }

    async fn decr(&self, key: &str, delta: i64, expiry: Expiry) -> Result<i64> {
        self.inner
            .decr(&self.key(key, "decr")?, delta, expiry)
            .await
    }

    async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        self.inner.ttl(&self.key(key, "ttl")?).await
    }

    async fn touch(&self, key: &str, expiry: Expiry) -> Result<bool> {
        self.inner.touch(&self.key(key, "touch")?, expiry).await
    }

    async fn clear(&self) -> Result<()> {
        if !self.inner.capabilities().key_listing {
            return Err(Error::unsupported(self.inner.name(), "clear").context(
                "a prefix layer clears by listing its keys, which the inner backend cannot do",
            ));
        }
        let mut listed = self.inner.keys(&format!("{}*", self.pattern)).await?;
        let mut batch = Vec::with_capacity(CLEAR_BATCH);
        while let Some(key) = listed.next().await {
            batch.push(key?);
            if batch.len() == CLEAR_BATCH {
                self.inner.delete_many(&as_strs(&batch)).await?;
                batch.clear();
            }
        }
        if !batch.is_empty() {
            self.inner.delete_many(&as_strs(&batch)).await?;
        }
        Ok(())
    }

    async fn keys(&self, pattern: &str) -> Result<KeyStream> {
        let listed = self
            .inner
            .keys(&format!("{}{pattern}", self.pattern))
            .await?;
        let prefix = self.prefix.clone();
        // The inner pattern starts with the escaped prefix, so every key
        // listed starts with the prefix; anything else is not ours.
        Ok(Box::pin(listed.filter_map(move |key| {
            let key = match key {
                Ok(key) => key
                    .strip_prefix(prefix.as_str())
                    .map(|rest| Ok(rest.to_owned())),
                Err(error) => Some(Err(error)),
            };
            std::future::ready(key)
        })))
    }

    async fn invalidate_tags(&self, tags: &[&str]) -> Result<u64> {
        let tags: Vec<String> = tags.iter().map(|tag| self.prefixed(tag)).collect();
        self.inner.invalidate_tags(&as_strs(&tags)).await
    }

    async fn purge_expired(&self) -> Result<u64> {
        self.inner.purge_expired().await
    }

    async fn lease(&self, key: &str, ttl: std::time::Duration) -> Result<Option<Lease>> {
        self.inner.lease(&self.key(key, "lease")?, ttl).await
    }

    async fn release_lease(&self, key: &str, lease: LeaseToken) -> Result<()> {
        let key = self.key(key, "release_lease")?;
        self.inner.release_lease(&key, lease).await
    }

    async fn stats(&self) -> Result<Stats> {
        self.inner.stats().await
    }

    async fn health(&self) -> Result<()> {
        self.check_room()
            .map_err(|error| error.with_operation("health"))?;
        self.inner.health().await
    }

    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}
