//! The near cache: a local store in front of Redis, kept coherent by Redis
//! itself through RESP3 client-side tracking (`CLIENT TRACKING`).
//!
//! - **URL:** `near+redis://[user[:password]@]host[:port][/db]?tracking=default&local_ttl=30s&local_max_entries=100000`
//!   (or `near+rediss://` for TLS). Besides the parameters of `redis://`
//!   (`prefix`, `connect_timeout`, `response_timeout`, `default_ttl`, and
//!   `ca_cert`, `insecure_hostname` over TLS) it takes:
//!
//!   | parameter           | value                                              | default   |
//!   |---------------------|----------------------------------------------------|-----------|
//!   | `tracking`          | `default`, `optin` or `bcast`                      | `default` |
//!   | `bcast_prefixes`    | comma-separated key prefixes (with `bcast`)        | all keys of the backend's prefix |
//!   | `local_ttl`         | a duration: the longest life of a local copy       | none (the server's TTL only) |
//!   | `local_max_entries` | the local memory store's entry bound               | 100000    |
//!   | `local_max_bytes`   | the local memory store's byte bound                | none      |
//!   | `local_policy`      | `lru`, `fifo`, `sieve` or `s3fifo`                 | `s3fifo`  |
//!
//!   In code, [`NearBackend::builder`] takes a [`RedisBuilder`] and any
//!   local [`Backend`] ([`NearBuilder::local`]); its bound is that
//!   backend's own.
//! - **Data:** the Redis data is the Redis backend's own: a `near+redis`
//!   and a `redis` backend with the same prefix see the same keys. Reads
//!   are served from the local store when it has the key; otherwise one
//!   round trip fetches the value **and** its `PTTL`, and the reply is kept
//!   locally for at most the server's remaining TTL (and `local_ttl`).
//! - **Tracking modes** ([`Tracking`]): `Default` (the server remembers
//!   the keys this connection read), `OptIn` (only the near cache's own
//!   reads are tracked: each is preceded by `CLIENT CACHING yes`, batch
//!   reads included, so `ttl` and the other commands track nothing) and
//!   `Broadcast` (every write to a key under the given prefixes is
//!   announced; the server keeps no per-key table). With broadcast
//!   prefixes, a key outside them is never kept locally (the server would
//!   not announce its changes): it is read through to Redis every time,
//!   and so is a derived entry with such a source.
//! - **Coherence rules:**
//!   - *Race guard:* a read registers its keys before its command is sent;
//!     its reply is stored only if no invalidation of that key and no flush
//!     arrived since, and it is checked again after storing (see
//!     `fence.rs`). A stale hit is a bug; a miss is cheap.
//!   - *Lost connection:* the local store is flushed; local hits resume
//!     only after tracking is on again on the new connection.
//!   - *`FLUSHALL` / `FLUSHDB`* on the server (an invalidation without
//!     keys): the local store is flushed.
//!   - *Read-your-writes:* every write through the near cache drops the
//!     local copy first, and reads overlapping the write store nothing.
//!     `clear` and `invalidate_tags` flush the local store (the keys a tag
//!     covers are known to Redis only).
//!   - *Derived entries:* [`NearBackend::get_or_derive`] keeps a value
//!     computed from Redis keys, with those keys as its tags; an
//!     invalidation of any of them removes it. The local store needs tags
//!     for this (the memory engine keeps its tag index exact through
//!     eviction and expiry).
//! - **Keys:** as the Redis backend, except that keys beginning with NUL
//!   (`\0`) are reserved for derived entries, and that `max_key_len` is
//!   the smaller of the local store's and Redis's. An invalidation of a
//!   key longer than the local store holds (another client wrote it) is
//!   skipped, never the rest of its batch.
//! - **Stats:** `hits` (local + remote), `misses`, `inserts` (the writes
//!   through the near cache that stored a value), and in `details`:
//!   `local_hits`, `remote_hits`, `invalidations_received` (keys),
//!   `flushes`, `local_entries`; `entries` and `bytes` are the local
//!   store's.
//! - **Limits:** standalone Redis 6+ only (not Cluster); the local copy of
//!   a key may be served until its invalidation message has been handled,
//!   which on loopback takes well under a millisecond (see
//!   `docs/benchmarks.md`).

mod builder;
mod fence;
mod invalidation;
pub(crate) mod url;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use redis::Value;
use tokio::time::Instant;

use crate::backend::{Backend, Capabilities, Expiry, KeyStream, KeyTtl, SetOptions, Stats};
use crate::backends::common::{Counters, Event, Limits};
use crate::backends::redis::{RedisBackend, RedisBuilder};
use crate::error::{Error, ErrorKind, Result};

pub use builder::{NearBuilder, Tracking};
use fence::{Fence, Ticket};
use invalidation::{apply_invalidations, drop_local, push_handler};

pub(crate) const NAME: &str = "near";

/// The start of the local keys of derived entries and of their tags.
const DERIVED: &str = "\0derived\0";
const SOURCE: &str = "\0source\0";

/// A pause between receiving a reply and storing it (tests of the race
/// guard force an ordering with it).
#[cfg(feature = "testing")]
pub(crate) type StoreHook =
    Arc<dyn Fn(Vec<String>) -> futures_util::future::BoxFuture<'static, ()> + Send + Sync>;

/// Work for the task that applies invalidations to the local store.
enum Work {
    Drop(Vec<String>),
    Clear,
}

struct Inner {
    remote: RedisBackend,
    local: Arc<dyn Backend>,
    fence: Arc<Fence>,
    counters: Arc<Counters>,
    /// The smaller of the local store's key limit and the remote's (what
    /// its prefix leaves); values and expiry are the remote's to check.
    limits: Limits,
    /// Whether any derived entry was stored (invalidations then also
    /// remove the entries tagged with the invalidated keys).
    derived: Arc<AtomicBool>,
    tracking: Tracking,
    local_ttl: Option<Duration>,
    /// One `CLIENT TRACKING` at a time.
    enabling: tokio::sync::Mutex<()>,
    #[cfg(feature = "testing")]
    before_store: Option<StoreHook>,
}

/// A near cache over Redis. Cheap to clone: clones share the connection
/// and the local store.
///
/// ```no_run
/// use std::sync::Arc;
/// use cachette::{Backend, SetOptions};
/// use cachette::backends::memory::MemoryBackend;
/// use cachette::backends::near::{NearBackend, Tracking};
/// use cachette::backends::redis::RedisBackend;
///
/// # #[tokio::main] async fn main() -> cachette::Result<()> {
/// let local = MemoryBackend::builder().max_entries(50_000).build()?;
/// let cache = NearBackend::builder(RedisBackend::builder("127.0.0.1", 6379).prefix("app:"))
///     .local(Arc::new(local))
///     .tracking(Tracking::OptIn)
///     .build()
///     .await?;
/// cache.set("k", "v".into(), &SetOptions::new()).await?;
/// assert_eq!(cache.get("k").await?.as_deref(), Some(&b"v"[..])); // from Redis
/// assert_eq!(cache.get("k").await?.as_deref(), Some(&b"v"[..])); // local
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct NearBackend {
    inner: Arc<Inner>,
}

impl fmt::Debug for NearBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NearBackend")
            .field("remote", &self.inner.remote)
            .field("local", &self.inner.local.name())
            .field("tracking", &self.inner.tracking)
            .field("local_ttl", &self.inner.local_ttl)
            .finish_non_exhaustive()
    }
}

/// The key of a Redis key name, if it is a user key of this prefix.
fn user_key<'a>(stored: &'a [u8], prefix: &str) -> Option<&'a str> {
    let rest = stored.strip_prefix(prefix.as_bytes())?;
    // Internal keys hold a 0xFF byte: never UTF-8.
    std::str::from_utf8(rest).ok().filter(|key| !key.is_empty())
}

fn source_tag(key: &str) -> String {
    let mut tag = String::with_capacity(SOURCE.len() + key.len());
    tag.push_str(SOURCE);
    tag.push_str(key);
    tag
}

/// What one tracked read brought back.
struct Fetched {
    values: Vec<Option<Bytes>>,
    /// The local expiry each value may have, `None` for "do not keep".
    expiries: Vec<Option<Expiry>>,
    ticket: Ticket,
}

impl NearBackend {
    /// A builder over the Redis server `redis` describes (standalone,
    /// TLS or Unix socket).
    pub fn builder(redis: RedisBuilder) -> NearBuilder {
        NearBuilder::new(redis)
    }

    /// The Redis backend behind the local store (its writes bypass the
    /// local store; other processes' near caches still see them).
    pub fn remote(&self) -> &RedisBackend {
        &self.inner.remote
    }

    /// The local store.
    pub fn local(&self) -> &Arc<dyn Backend> {
        &self.inner.local
    }

    /// What a near cache guarantees: the Redis backend's capabilities.
    pub fn default_capabilities() -> Capabilities {
        RedisBackend::default_capabilities()
    }

    fn check_key(&self, key: &str) -> Result<()> {
        self.inner.limits.check_key(key)?;
        if key.starts_with('\0') {
            return Err(Error::invalid_input(
                NAME,
                "keys beginning with NUL are reserved for the near cache's derived entries",
            ));
        }
        Ok(())
    }

    fn check_keys(&self, keys: &[&str]) -> Result<()> {
        keys.iter().try_for_each(|key| self.check_key(key))
    }

    /// Whether the server announces the changes of `key`, so that a local
    /// copy of it may be kept: in broadcast mode with prefixes, only keys
    /// under one of them.
    fn tracked(&self, key: &str) -> bool {
        match &self.inner.tracking {
            Tracking::Broadcast(prefixes) if !prefixes.is_empty() => prefixes
                .iter()
                .any(|prefix| key.starts_with(prefix.as_str())),
            _ => true,
        }
    }

    /// Switches tracking on if the connection is new (or was lost), after
    /// flushing the local store: no local hit is served before.
    async fn ensure_tracking(&self) -> Result<()> {
        let inner = &self.inner;
        if inner.fence.serving() {
            return Ok(());
        }
        let _one = inner.enabling.lock().await;
        if inner.fence.serving() {
            return Ok(());
        }
        let connection = inner.fence.connection();
        let mut pipe = redis::pipe();
        let cmd = pipe.cmd("CLIENT").arg("TRACKING").arg("ON");
        match &inner.tracking {
            Tracking::Default => {}
            Tracking::OptIn => {
                cmd.arg("OPTIN");
            }
            Tracking::Broadcast(prefixes) => {
                cmd.arg("BCAST");
                let base = inner.remote.prefix();
                if prefixes.is_empty() {
                    if !base.is_empty() {
                        cmd.arg("PREFIX").arg(base);
                    }
                } else {
                    for prefix in prefixes {
                        cmd.arg("PREFIX").arg(format!("{base}{prefix}"));
                    }
                }
            }
        }
        inner
            .remote
            .query_pipeline::<()>("tracking", &pipe)
            .await
            .map_err(|err| err.context("cannot switch client-side tracking on"))?;
        inner.local.clear().await?;
        if inner.fence.tracking_on(connection) {
            tracing::debug!(backend = NAME, connection, "client-side tracking is on");
        }
        Ok(())
    }

    /// One round trip: the values of `keys` and their `PTTL`s, tracked.
    async fn read_remote(&self, keys: &[&str]) -> Result<Fetched> {
        self.ensure_tracking().await?;
        let inner = &self.inner;
        let ticket = inner.fence.begin_read(keys);
        let mut pipe = redis::pipe();
        if matches!(inner.tracking, Tracking::OptIn) {
            pipe.cmd("CLIENT").arg("CACHING").arg("YES").ignore();
        }
        let stored: Vec<Vec<u8>> = keys.iter().map(|k| inner.remote.stored_key(k)).collect();
        pipe.cmd("MGET").arg(&stored);
        for key in &stored {
            pipe.cmd("PTTL").arg(key);
        }
        let sent = Instant::now();
        let mut reply: Vec<Value> = inner.remote.query_pipeline("get", &pipe).await?;
        let bad = || Error::new(ErrorKind::Backend, NAME, "unexpected reply to MGET + PTTL");
        if reply.len() != keys.len() + 1 {
            return Err(bad().with_operation("get"));
        }
        let ttls = reply.split_off(1);
        let values: Vec<Option<Bytes>> = reply
            .pop()
            .and_then(|v| redis::from_redis_value(v).ok())
            .filter(|v: &Vec<Option<Bytes>>| v.len() == keys.len())
            .ok_or_else(|| bad().with_operation("get"))?;
        let expiries = ttls
            .into_iter()
            .zip(&values)
            .map(|(ttl, value)| match (ttl, value) {
                (Value::Int(ms), Some(_)) => self.local_expiry(ms, sent),
                _ => None,
            })
            .collect();
        #[cfg(feature = "testing")]
        if let Some(hook) = &inner.before_store {
            hook(keys.iter().map(|k| (*k).to_owned()).collect()).await;
        }
        Ok(Fetched {
            values,
            expiries,
            ticket,
        })
    }

    /// The local expiry of a value whose `PTTL` was `pttl` in a reply to a
    /// request sent at `sent`: never past the server's deadline.
    fn local_expiry(&self, pttl: i64, sent: Instant) -> Option<Expiry> {
        let local = self.inner.local_ttl;
        match pttl {
            -1 => Some(local.map_or(Expiry::Never, Expiry::After)),
            ms if ms > 0 => {
                let left = Duration::from_millis(ms as u64).checked_sub(sent.elapsed())?;
                let left = Duration::from_millis(left.as_millis() as u64);
                if left.is_zero() {
                    return None;
                }
                Some(Expiry::After(local.map_or(left, |local| local.min(left))))
            }
            _ => None,
        }
    }

    /// Stores what a read fetched where its ticket allows; the values.
    async fn fetch(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>> {
        let fetched = self.read_remote(keys).await?;
        let counters = &self.inner.counters;
        for (i, value) in fetched.values.iter().enumerate() {
            let Some(value) = value else {
                counters.bump(Event::Miss);
                continue;
            };
            counters.bump(Event::RemoteHit);
            if let Some(expiry) = fetched.expiries[i]
                && self.tracked(keys[i])
            {
                self.store(keys[i], value, expiry, Vec::new(), || {
                    fetched.ticket.valid(i)
                })
                .await;
            }
        }
        Ok(fetched.values)
    }

    /// Stores a local copy if `valid()` allows, and removes it again if
    /// `valid()` no longer holds once it is stored.
    async fn store(
        &self,
        key: &str,
        value: &Bytes,
        expiry: Expiry,
        tags: Vec<String>,
        valid: impl Fn() -> bool,
    ) {
        if !valid() {
            return;
        }
        let local = &self.inner.local;
        let options = SetOptions {
            expiry,
            tags,
            ..SetOptions::new()
        };
        if let Err(err) = local.set(key, value.clone(), &options).await {
            tracing::debug!(backend = NAME, error = %err, "the local store did not keep a copy");
            return;
        }
        if !valid()
            && let Err(err) = local.delete(key).await
        {
            tracing::warn!(backend = NAME, error = %err, "cannot drop a local copy");
        }
    }

    /// A local hit, if local hits are served; errors of the local store
    /// count as misses.
    async fn local_get(&self, key: &str) -> Option<Bytes> {
        if !self.inner.fence.serving() {
            return None;
        }
        let found = match self.inner.local.get_ready(key) {
            Some(ready) => ready,
            None => self.inner.local.get(key).await,
        };
        match found {
            Ok(Some(value)) => {
                self.inner.counters.bump(Event::LocalHit);
                Some(value)
            }
            Ok(None) => None,
            Err(err) => {
                tracing::debug!(backend = NAME, error = %err, "local store read failed");
                None
            }
        }
    }

    /// Runs a write of `keys` on the server, fenced: the local copies go
    /// first, and reads overlapping it store nothing.
    async fn write<T>(&self, keys: &[&str], op: impl Future<Output = Result<T>>) -> Result<T> {
        let _fence = self.inner.fence.begin_write(keys);
        let owned: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
        drop_local(self.inner.local.as_ref(), &self.inner.derived, &owned).await?;
        op.await
    }

    /// Runs `op` (which may remove any keys), then flushes the local
    /// store: in-flight reads store nothing.
    async fn write_all<T>(&self, op: impl Future<Output = Result<T>>) -> Result<T> {
        let out = op.await;
        self.inner.fence.flush();
        self.inner.counters.bump(Event::Flush);
        self.inner.local.clear().await?;
        out
    }

    /// The value derived from the Redis keys `sources`: from the local
    /// store when it is there, or `derive(values of sources)` kept locally
    /// with the sources as tags, so that a write to any source (by anyone)
    /// removes it. The derived entry lives at most as long as the shortest
    /// TTL among the sources and `local_ttl`. A source missing in Redis is
    /// passed as `None`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] for bad keys or no sources,
    /// [`ErrorKind::Unsupported`] if the local store has no tags, the
    /// error of `derive`, or of the read.
    pub async fn get_or_derive<F, Fut>(
        &self,
        key: &str,
        sources: &[&str],
        derive: F,
    ) -> Result<Bytes>
    where
        F: FnOnce(Vec<Option<Bytes>>) -> Fut,
        Fut: Future<Output = Result<Bytes>>,
    {
        self.check_key(key)?;
        if sources.is_empty() {
            return Err(Error::invalid_input(
                NAME,
                "a derived entry needs at least one source key",
            ));
        }
        for source in sources {
            self.check_key(source)?;
        }
        if !self.inner.local.capabilities().tags {
            return Err(Error::unsupported(
                NAME,
                "get_or_derive (the local store has no tags)",
            ));
        }
        let local_key = format!("{DERIVED}{key}");
        if let Some(value) = self.local_get(&local_key).await {
            return Ok(value);
        }
        let fetched = self.read_remote(sources).await?;
        let mut expiry = Some(self.inner.local_ttl.map_or(Expiry::Never, Expiry::After))
            .filter(|_| sources.iter().all(|source| self.tracked(source)));
        for (value, source_expiry) in fetched.values.iter().zip(&fetched.expiries) {
            match (value, source_expiry) {
                (None, _) => {}
                (Some(_), None) => expiry = None,
                (Some(_), Some(Expiry::After(ttl))) => {
                    expiry = expiry.map(|current| match current {
                        Expiry::After(current) => Expiry::After(current.min(*ttl)),
                        _ => Expiry::After(*ttl),
                    });
                }
                (Some(_), Some(_)) => {}
            }
        }
        let value = derive(fetched.values).await?;
        self.inner.counters.bump(Event::Miss);
        if let Some(expiry) = expiry {
            self.inner.derived.store(true, Ordering::Release);
            let tags = sources.iter().map(|s| source_tag(s)).collect();
            self.store(&local_key, &value, expiry, tags, || {
                fetched.ticket.all_valid()
            })
            .await;
        }
        Ok(value)
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Backend for NearBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.limits.advertise(Self::default_capabilities())
    }

    fn get_ready(&self, key: &str) -> Option<Result<Option<Bytes>>> {
        if !self.inner.fence.serving() || key.starts_with('\0') {
            return None;
        }
        match self.inner.local.get_ready(key)? {
            Ok(Some(value)) => {
                self.inner.counters.bump(Event::LocalHit);
                Some(Ok(Some(value)))
            }
            _ => None,
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.check_key(key)?;
        if let Some(value) = self.local_get(key).await {
            return Ok(Some(value));
        }
        let mut values = self.fetch(&[key]).await?;
        Ok(values.pop().flatten())
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>> {
        self.check_keys(keys)?;
        let mut out = if self.inner.fence.serving() {
            match self.inner.local.get_many(keys).await {
                Ok(found) => found,
                Err(err) => {
                    tracing::debug!(backend = NAME, error = %err, "local store read failed");
                    vec![None; keys.len()]
                }
            }
        } else {
            vec![None; keys.len()]
        };
        let hits = out.iter().filter(|v| v.is_some()).count() as u64;
        self.inner.counters.add(Event::LocalHit, hits);
        let missing: Vec<usize> = (0..keys.len()).filter(|&i| out[i].is_none()).collect();
        if missing.is_empty() {
            return Ok(out);
        }
        let missing_keys: Vec<&str> = missing.iter().map(|&i| keys[i]).collect();
        let fetched = self.fetch(&missing_keys).await?;
        for (i, value) in missing.into_iter().zip(fetched) {
            out[i] = value;
        }
        Ok(out)
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        self.check_key(key)?;
        if self.local_get(key).await.is_some() {
            return Ok(true);
        }
        self.inner.remote.exists(key).await
    }

    async fn set(&self, key: &str, value: Bytes, options: &SetOptions) -> Result<bool> {
        self.check_key(key)?;
        let written = self
            .write(&[key], self.inner.remote.set(key, value, options))
            .await?;
        self.inner.counters.add(Event::Insert, u64::from(written));
        Ok(written)
    }

    async fn set_many(&self, entries: &[(&str, Bytes)], options: &SetOptions) -> Result<Vec<bool>> {
        let keys: Vec<&str> = entries.iter().map(|(key, _)| *key).collect();
        self.check_keys(&keys)?;
        let written = self
            .write(&keys, self.inner.remote.set_many(entries, options))
            .await?;
        let inserts = written.iter().filter(|written| **written).count() as u64;
        self.inner.counters.add(Event::Insert, inserts);
        Ok(written)
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        self.check_key(key)?;
        self.write(&[key], self.inner.remote.delete(key)).await
    }

    async fn delete_many(&self, keys: &[&str]) -> Result<u64> {
        self.check_keys(keys)?;
        self.write(keys, self.inner.remote.delete_many(keys)).await
    }

    async fn incr(&self, key: &str, delta: i64, expiry: Expiry) -> Result<i64> {
        self.check_key(key)?;
        self.write(&[key], self.inner.remote.incr(key, delta, expiry))
            .await
    }

    async fn decr(&self, key: &str, delta: i64, expiry: Expiry) -> Result<i64> {
        self.check_key(key)?;
        self.write(&[key], self.inner.remote.decr(key, delta, expiry))
            .await
    }

    async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        self.check_key(key)?;
        self.inner.remote.ttl(key).await
    }

    async fn touch(&self, key: &str, expiry: Expiry) -> Result<bool> {
        self.check_key(key)?;
        self.write(&[key], self.inner.remote.touch(key, expiry))
            .await
    }

    async fn clear(&self) -> Result<()> {
        self.write_all(self.inner.remote.clear()).await
    }

    async fn keys(&self, pattern: &str) -> Result<KeyStream> {
        self.inner.remote.keys(pattern).await
    }

    async fn invalidate_tags(&self, tags: &[&str]) -> Result<u64> {
        self.write_all(self.inner.remote.invalidate_tags(tags))
            .await
    }

    async fn lease(
        &self,
        key: &str,
        ttl: std::time::Duration,
    ) -> Result<Option<crate::backend::Lease>> {
        // The shared tier decides who loads.
        self.inner.remote.lease(key, ttl).await
    }

    async fn release_lease(&self, key: &str, lease: crate::backend::LeaseToken) -> Result<()> {
        self.inner.remote.release_lease(key, lease).await
    }

    async fn purge_expired(&self) -> Result<u64> {
        self.inner.local.purge_expired().await?;
        self.inner.remote.purge_expired().await
    }

    async fn stats(&self) -> Result<Stats> {
        let c = &self.inner.counters;
        let local = self.inner.local.stats().await?;
        let mut details = c.details(&[
            ("local_hits", Event::LocalHit),
            ("remote_hits", Event::RemoteHit),
            ("invalidations_received", Event::InvalidationReceived),
            ("flushes", Event::Flush),
        ]);
        details.push(("local_entries".to_owned(), local.entries));
        Ok(Stats {
            hits: c.get(Event::LocalHit) + c.get(Event::RemoteHit),
            misses: c.get(Event::Miss),
            inserts: c.get(Event::Insert),
            evictions: local.evictions,
            expirations: local.expirations,
            entries: local.entries,
            bytes: local.bytes,
            details,
            ..Stats::default()
        })
    }

    async fn health(&self) -> Result<()> {
        self.inner.remote.health().await?;
        self.ensure_tracking().await
    }

    async fn close(&self) -> Result<()> {
        self.inner.local.close().await?;
        self.inner.remote.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_keys_are_the_prefixed_utf8_non_internal_names() {
        assert_eq!(user_key(b"app:k", "app:"), Some("k"));
        assert_eq!(user_key(b"other:k", "app:"), None);
        assert_eq!(user_key(b"app:", "app:"), None);
        assert_eq!(user_key(b"app:\xFFk:x", "app:"), None);
        assert_eq!(user_key(b"k", ""), Some("k"));
        assert_eq!(user_key("app:ÿ".as_bytes(), "app:"), Some("ÿ"));
    }
}
