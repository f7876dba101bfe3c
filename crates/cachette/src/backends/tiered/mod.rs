//! The tiered backend: a local L1 in front of a (usually shared) L2, over
//! any two [`Backend`]s, with an optional invalidation channel (Redis
//! pub/sub, or PostgreSQL's `LISTEN`/`NOTIFY`) that keeps the L1s of
//! several processes coherent.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use cachette::{Backend, MemoryBackend, SetOptions};
//! use cachette::backends::tiered::TieredBackend;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> cachette::Result<()> {
//! let l1 = Arc::new(MemoryBackend::builder().max_entries(10_000).build()?);
//! let l2 = Arc::new(MemoryBackend::default()); // in practice Redis, a file cache, ...
//! let cache = TieredBackend::builder(l1, l2).l1_ttl(Duration::from_secs(10)).build().await?;
//!
//! cache.set("user:1", "Ada".into(), &SetOptions::new()).await?;
//! assert_eq!(cache.get("user:1").await?.as_deref(), Some(&b"Ada"[..]));
//! # Ok(())
//! # }
//! ```
//!
//! # Options
//!
//! Built with [`TieredBackend::builder`], or from a `CacheManager` TOML
//! entry with the keys `l1`, `l2`, `l1_ttl` and `channel` (see
//! [`CacheConfig`](crate::manager::CacheConfig)); a tiered cache has no URL
//! of its own:
//!
//! | option | default | meaning |
//! |--------|---------|---------|
//! | [`l1_ttl`](TieredBuilder::l1_ttl) | 30 s | the longest an L1 copy lives |
//! | `invalidation_channel` | none | a channel shared by the instances: Redis pub/sub (feature `redis`) or PostgreSQL `LISTEN`/`NOTIFY` (feature `postgres`) |
//!
//! The L1 must enforce TTLs itself with millisecond precision and support
//! `clear` (the memory backend does); it should be dedicated to this tiered
//! backend, since the backend clears it as a whole when it must. A zero
//! `l1_ttl`, or one backend given as both layers, is a
//! [`Config`](crate::ErrorKind::Config) error.
//!
//! # Reads
//!
//! - `get` answers from L1 when it can; on a miss it reads L2 and stores a
//!   copy in L1 (read-through). The copy lives at most `l1_ttl`, and never
//!   beyond the L2 entry's own deadline: when L2 has
//!   [`ttl_inspection`](crate::Capabilities::ttl_inspection), its `ttl` is
//!   asked alongside the `get` and the copy's TTL is capped by what is left
//!   of it (less 2 ms for clock rounding; an entry about to expire is not
//!   copied). Without it, only `l1_ttl` applies, and a copy may outlive a
//!   shorter L2 deadline.
//! - `get_many` answers what L1 holds and asks L2 for the misses only, in
//!   one `get_many` (each key once), then for their TTLs as above.
//! - `exists` answers true from L1, otherwise asks L2. `ttl` and `keys` go
//!   to L2, which is the authority.
//! - A read and a write of the same key may race: the write lands between
//!   the read's L2 answer and its L1 copy. An internal guard (per-key
//!   sequence numbers) makes the read give up its copy in that case, so a
//!   write, delete or invalidation through this instance (or received on
//!   the channel) is never followed by a stale L1 hit here.
//!
//! # Writes
//!
//! A write of keys first drops their L1 copies (and no read copies them
//! into L1 until the write ends), then writes L2, then L1 follows:
//!
//! - `set` writes L2 (conditions `if_absent` / `if_present` are decided by
//!   L2 alone), then stores the same value in L1 (with the write's tags)
//!   if it was written, its deadline is known (`Expiry::After` or
//!   `Expiry::Never`; with `Expiry::Default` L2's default TTL is unknown,
//!   so the copy is dropped instead), and no other change of that key
//!   overlapped it; otherwise it drops the L1 copy.
//! - `set_many`, `delete`, `delete_many`, `incr`, `decr` and `touch` go to
//!   L2 and drop the L1 copies of their keys.
//! - `clear` clears L2 and L1. `purge_expired` runs on both and answers
//!   L2's count.
//! - The L1 copy is dropped even when L2 fails, in case the write landed.
//! - A write whose future is dropped half-way (a client gone, `select!`,
//!   a timeout above) is finished by a task spawned on the runtime: the
//!   L1 copies are dropped again and the other instances told. Meanwhile
//!   no read of this instance serves or copies the old value of a key
//!   written (after a dropped `clear` or `invalidate_tags`, L1 may serve
//!   until that task has run).
//!
//! # Tags
//!
//! `invalidate_tags` runs on L2 (whose count it answers) and then on L1.
//! An L1 copy written through this instance carries the write's tags; a copy
//! read from L2 does not know its tags, so it carries an internal tag
//! (`cachette:tiered:read-from-l2`) instead, and every `invalidate_tags`
//! through this instance drops all such copies along with the copies of the
//! tags named. So after `invalidate_tags(t)` returns, no entry tagged `t` is
//! served by this instance; with a channel, the other instances do the same
//! when the message reaches them. If the L1 has no tags, L1 is cleared
//! instead.
//!
//! # Freshness across processes, and the invalidation channel
//!
//! Without an invalidation channel, an instance knows only of its own
//! writes: when another process writes or deletes a key in the shared L2,
//! this instance keeps serving its L1 copy until the copy's TTL runs out.
//! **L1 is then only as fresh as `l1_ttl`.**
//!
//! With an `InvalidationChannel` (feature `redis` or `postgres`), every write, delete,
//! `incr`/`decr`/`touch`, `invalidate_tags` and `clear` through any
//! instance publishes a small message (the instance's id, the operation,
//! the keys or tags) after L2 has changed; every other instance drops
//! those keys from its L1 (tags: invalidates them as above; `clear`:
//! clears L1), and ignores its own messages. Messages go out on a normal
//! connection; the subscription has its own. A failed publish is logged
//! and counted (`publish_failures`), not returned: the write did happen,
//! and the other instances then keep their copies until their L1 TTL.
//!
//! The subscription is watched (its connection closing, or a `PING` every
//! `ping_interval` unanswered within
//! the response timeout). While it is lost, the instance **serves no L1
//! hits and makes no L1 copies**: every read goes to L2. It clears L1 when
//! it notices the loss, resubscribes (50 ms backoff doubling to 1 s),
//! clears L1 again, and only then serves L1 again. Messages lost between
//! the connection's death and its detection cannot be recovered: for that
//! window, at most the detection time, copies may be stale. `build` waits
//! for the first subscription and fails if it cannot be made.
//!
//! # Capabilities
//!
//! Those of L2 (`atomic_incr`, `conditional_set`, TTLs, tags, listing,
//! `clear`, persistence, sharing, `max_value_len`), except `max_key_len`,
//! which is the smaller of the two layers' limits. An operation that L2
//! does not support fails with [`Unsupported`](crate::ErrorKind::Unsupported).
//! A value too large for L1 is stored in L2 only.
//!
//! # Stats
//!
//! `hits` is L1 hits plus L2 hits, `misses` the reads that missed both;
//! the other counters are L2's. `details` holds `l1_hits`, `l2_hits`,
//! `misses`, the channel's `invalidations_received`, `published`,
//! `publish_failures` and `channel_resets`, then every counter of each
//! layer as `l1.<name>` and `l2.<name>` (their details too). When the typed
//! front end asks [`get_ready`](Backend::get_ready) first, an L1 miss is
//! counted twice in `l1.misses` (once per attempt), never in `misses`.
//!
//! # Errors and lifetime
//!
//! Key limits are checked first (errors name the backend `tiered`); L2's
//! errors are returned as they are. An L1 that fails to read is bypassed
//! (logged at `debug`); one that fails to drop a copy fails the
//! operation (before L2 is written, when the write names its keys).
//! `health` checks both layers; `close` stops the channel, bypasses L1
//! from then on, and closes both layers.

mod builder;
#[cfg(any(feature = "redis", feature = "postgres"))]
mod channel;
mod guard;
#[cfg(any(feature = "redis", feature = "postgres"))]
pub(crate) mod message;
mod read;
mod shared;
pub(crate) mod url;
mod write;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::time::Instant;

use crate::backend::{
    Backend, Capabilities, Expiry, KeyStream, KeyTtl, SetOptions, Stats, validate_ttl,
};
use crate::backends::common::{Counters, Event, Limits};
use crate::error::{Error, ErrorKind, Result};

pub use builder::TieredBuilder;
#[cfg(any(feature = "redis", feature = "postgres"))]
pub use channel::InvalidationChannel;
use guard::{Guard, Ticket};
use read::missing_once;
use shared::Shared;
use write::{Changed, Writing};

pub(crate) const NAME: &str = "tiered";

/// The tag of L1 copies read from L2, whose own tags are unknown.
const READ_TAG: &str = "cachette:tiered:read-from-l2";

/// Taken off every L1 copy's TTL: the layers round deadlines to whole
/// milliseconds, each up to 1 ms either way.
const CLOCK_SLACK_MS: u128 = 2;

/// How many `ttl` requests `get_many` keeps in flight at once.
const TTL_LOOKUPS: usize = 64;

/// What changed in L2, as told to the other instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
enum Change<'a> {
    /// These keys were written, deleted, counted or touched.
    Keys(&'a [&'a str]),
    /// Entries with any of these tags were invalidated.
    Tags(&'a [&'a str]),
    /// Every key was removed.
    Clear,
}

/// Whether the invalidation channel keeps L1 coherent right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChannelState {
    /// No invalidation channel is configured: L1 serves, fresh up to its
    /// TTL.
    Disabled,
    /// Subscribed: L1 serves.
    Subscribed,
    /// The subscription is lost (or the backend is closed): L1 is bypassed
    /// until it is back.
    Disconnected,
}

struct Inner {
    shared: Arc<Shared>,
    l2: Arc<dyn Backend>,
    caps: Capabilities,
    /// The key limit: the smaller of L1's and L2's.
    limits: Limits,
    l2_ttl_inspection: bool,
    l1_ttl: Duration,
    instance: String,
    #[cfg(any(feature = "redis", feature = "postgres"))]
    channel: Option<channel::Channel>,
}

/// An L1 backend in front of an L2 backend; see the [module docs](self).
/// Cheap to clone: clones share both layers and the channel.
#[derive(Clone)]
pub struct TieredBackend {
    inner: Arc<Inner>,
}

impl fmt::Debug for TieredBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("TieredBackend");
        debug
            .field("l1", &self.inner.shared.l1.name())
            .field("l2", &self.inner.l2.name())
            .field("l1_ttl", &self.inner.l1_ttl)
            .field("instance", &self.inner.instance);
        #[cfg(any(feature = "redis", feature = "postgres"))]
        debug.field("channel", &self.inner.channel);
        debug.finish()
    }
}

/// Whether a failed or successful operation may have changed L2.
fn may_have_changed(error: &Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::Connection | ErrorKind::Timeout | ErrorKind::Backend
    )
}

/// Rejects a zero TTL before anything is touched.
fn check_expiry(expiry: Expiry) -> Result<()> {
    if let Expiry::After(ttl) = expiry {
        validate_ttl(NAME, ttl)?;
    }
    Ok(())
}

/// Appends a layer's stats to `details` as `<layer>.<name>`.
fn push_layer(details: &mut Vec<(String, u64)>, layer: &str, stats: Stats) {
    details.extend(
        stats
            .counters()
            .into_iter()
            .map(|(name, value)| (format!("{layer}.{name}"), value)),
    );
    details.extend(
        stats
            .details
            .into_iter()
            .map(|(name, value)| (format!("{layer}.{name}"), value)),
    );
}

impl TieredBackend {
    /// A builder over these two layers, with the defaults: `l1_ttl` 30 s,
    /// no invalidation channel.
    pub fn builder(l1: Arc<dyn Backend>, l2: Arc<dyn Backend>) -> TieredBuilder {
        TieredBuilder::new(l1, l2)
    }

    async fn from_builder(builder: TieredBuilder) -> Result<TieredBackend> {
        let l1_caps = builder.l1.capabilities();
        let l2_caps = builder.l2.capabilities();
        let mut caps = l2_caps;
        caps.max_key_len = l1_caps.max_key_len.min(l2_caps.max_key_len);
        #[cfg(any(feature = "redis", feature = "postgres"))]
        let has_channel = builder.channel.is_some();
        #[cfg(not(any(feature = "redis", feature = "postgres")))]
        let has_channel = false;
        let shared = Arc::new(Shared {
            l1: builder.l1,
            l1_tags: l1_caps.tags,
            // With a channel, L1 serves only once it is subscribed.
            guard: Guard::new(!has_channel),
            counters: Counters::default(),
        });
        let instance = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        #[cfg(any(feature = "redis", feature = "postgres"))]
        let channel = match builder.channel {
            Some(config) => {
                Some(channel::Channel::start(config, Arc::clone(&shared), instance.clone()).await?)
            }
            None => None,
        };
        Ok(TieredBackend {
            inner: Arc::new(Inner {
                shared,
                l2: builder.l2,
                caps,
                limits: Limits {
                    backend: NAME,
                    max_key_len: caps.max_key_len,
                    max_value_len: None,
                    default_ttl: None,
                },
                l2_ttl_inspection: l2_caps.ttl_inspection,
                l1_ttl: builder.l1_ttl,
                instance,
                #[cfg(any(feature = "redis", feature = "postgres"))]
                channel,
            }),
        })
    }

    /// The L1 backend.
    pub fn l1(&self) -> &Arc<dyn Backend> {
        &self.inner.shared.l1
    }

    /// The L2 backend.
    pub fn l2(&self) -> &Arc<dyn Backend> {
        &self.inner.l2
    }

    /// The longest an L1 copy lives.
    pub fn l1_ttl(&self) -> Duration {
        self.inner.l1_ttl
    }

    /// Whether the invalidation channel keeps L1 coherent right now.
    pub fn channel_state(&self) -> ChannelState {
        #[cfg(any(feature = "redis", feature = "postgres"))]
        if self.inner.channel.is_some() {
            return if self.inner.shared.guard.serving() {
                ChannelState::Subscribed
            } else {
                ChannelState::Disconnected
            };
        }
        ChannelState::Disabled
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    fn check_key(&self, key: &str) -> Result<()> {
        self.inner.limits.check_key(key)
    }

    fn check_keys(&self, keys: &[&str]) -> Result<()> {
        self.inner.limits.check_keys(keys)
    }

    /// Tells the other instances what changed, if there is a channel.
    async fn announce(&self, change: Change<'_>) {
        #[cfg(any(feature = "redis", feature = "postgres"))]
        if let Some(channel) = &self.inner.channel {
            channel.publish(change).await;
        }
        #[cfg(not(any(feature = "redis", feature = "postgres")))]
        let _ = change;
    }

    /// The TTL of an L1 copy of an entry that has `left` to live as seen
    /// at `started` or later (`None`: no deadline), or `None` if it is too
    /// close to its deadline to be copied.
    fn copy_ttl(&self, started: Instant, left: Option<Duration>) -> Option<Duration> {
        let Some(deadline) = left.and_then(|left| started.checked_add(left)) else {
            return Some(self.inner.l1_ttl);
        };
        let left = deadline
            .saturating_duration_since(Instant::now())
            .as_millis();
        let millis = left.checked_sub(CLOCK_SLACK_MS).filter(|&ms| ms > 0)?;
        let millis = u64::try_from(millis).unwrap_or(u64::MAX);
        Some(Duration::from_millis(millis).min(self.inner.l1_ttl))
    }

    /// The TTL of an L1 copy of an entry read from L2, given L2's `ttl`
    /// answer (`None` when L2 cannot tell).
    fn read_copy_ttl(&self, started: Instant, ttl: Option<Result<KeyTtl>>) -> Option<Duration> {
        match ttl {
            None | Some(Ok(KeyTtl::Persistent)) => self.copy_ttl(started, None),
            Some(Ok(KeyTtl::ExpiresIn(left))) => self.copy_ttl(started, Some(left)),
            // Gone since, or unknown: no copy.
            Some(Ok(KeyTtl::Missing)) | Some(Err(_)) => None,
        }
    }

    /// Ends an operation that changed (or may have changed) `keys` in L2:
    /// drops their L1 copies and tells the other instances.
    async fn changed_keys(&self, keys: &[&str], announce: bool) -> Result<()> {
        let dropped = self.shared().drop_keys(keys).await;
        if announce && !keys.is_empty() {
            self.announce(Change::Keys(keys)).await;
        }
        dropped
    }

    /// Runs `op`, a change of `keys` in L2, as a write that finishes even
    /// if dropped (see `write.rs`): their L1 copies go first, and again
    /// after; the other instances are told if `changed(answer)` (or if a
    /// failure may have changed L2).
    async fn write_keys<T>(
        &self,
        keys: &[&str],
        op: impl Future<Output = Result<T>>,
        changed: impl FnOnce(&T) -> bool,
    ) -> Result<T> {
        let writing = Writing::keys(self, keys).await?;
        let answer = op.await;
        let announce = answer.as_ref().map_or_else(may_have_changed, changed);
        let dropped = self.changed_keys(keys, announce).await;
        writing.finish();
        let answer = answer?;
        dropped?;
        Ok(answer)
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Backend for TieredBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.caps
    }

    fn get_ready(&self, key: &str) -> Option<Result<Option<Bytes>>> {
        if let Err(error) = self.check_key(key) {
            return Some(Err(error));
        }
        let shared = self.shared();
        if !shared.guard.serving() {
            return None;
        }
        match shared.l1.get_ready(key) {
            Some(Ok(Some(value))) => {
                shared.counters.bump(Event::LocalHit);
                Some(Ok(Some(value)))
            }
            _ => None,
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.check_key(key)?;
        let shared = self.shared();
        if shared.guard.serving() {
            match shared.l1.get(key).await {
                Ok(Some(value)) => {
                    shared.counters.bump(Event::LocalHit);
                    return Ok(Some(value));
                }
                Ok(None) => {}
                Err(error) => tracing::debug!(%error, "tiered backend bypassed a failing L1 read"),
            }
        }
        let ticket = shared.guard.snapshot(key);
        let started = Instant::now();
        let l2 = &self.inner.l2;
        let (value, ttl) = if self.inner.l2_ttl_inspection {
            let (value, ttl) = tokio::join!(l2.get(key), l2.ttl(key));
            (value?, Some(ttl))
        } else {
            (l2.get(key).await?, None)
        };
        let Some(value) = value else {
            shared.counters.bump(Event::Miss);
            return Ok(None);
        };
        shared.counters.bump(Event::RemoteHit);
        if let Some(ttl) = self.read_copy_ttl(started, ttl) {
            shared.fill(key, value.clone(), ttl, ticket).await;
        }
        Ok(Some(value))
    }

    async fn set(&self, key: &str, value: Bytes, options: &SetOptions) -> Result<bool> {
        self.check_key(key)?;
        check_expiry(options.expiry)?;
        let shared = self.shared();
        let writing = Writing::keys(self, &[key]).await?;
        let ticket = shared.guard.begin_write(key);
        let started = Instant::now();
        let written = self.inner.l2.set(key, value.clone(), options).await;
        let copy_ttl = match (&written, options.expiry) {
            (Ok(true), Expiry::After(ttl)) => self.copy_ttl(started, Some(ttl)),
            (Ok(true), Expiry::Never) => self.copy_ttl(started, None),
            // L2's default TTL is unknown; so is the outcome of a failure.
            _ => None,
        };
        let copy = copy_ttl.map(|ttl| (value, ttl, options.tags.as_slice()));
        let finished = shared.finish_write(key, ticket, copy).await;
        let announce = match &written {
            Ok(written) => *written,
            Err(error) => may_have_changed(error),
        };
        if announce {
            self.announce(Change::Keys(&[key])).await;
        }
        writing.finish();
        let written = written?;
        finished?;
        Ok(written)
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        self.check_key(key)?;
        self.write_keys(&[key], self.inner.l2.delete(key), |_| true)
            .await
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        self.check_key(key)?;
        let shared = self.shared();
        if shared.guard.serving() {
            match shared.l1.exists(key).await {
                Ok(true) => return Ok(true),
                Ok(false) => {}
                Err(error) => tracing::debug!(%error, "tiered backend bypassed a failing L1 read"),
            }
        }
        self.inner.l2.exists(key).await
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>> {
        self.check_keys(keys)?;
        let mut found = self.read_l1_many(keys).await;
        let missing = missing_once(keys, &found);
        if missing.is_empty() {
            return Ok(found);
        }
        let tickets: Vec<Ticket> = missing
            .iter()
            .map(|key| self.shared().guard.snapshot(key))
            .collect();
        let started = Instant::now();
        let values = self.read_l2_many(&missing).await?;
        self.copy_into_l1(&missing, &values, tickets, started).await;
        self.answer_from_l2(keys, &mut found, missing, values);
        Ok(found)
    }

    async fn set_many(&self, entries: &[(&str, Bytes)], options: &SetOptions) -> Result<Vec<bool>> {
        let keys: Vec<&str> = entries.iter().map(|(key, _)| *key).collect();
        self.check_keys(&keys)?;
        check_expiry(options.expiry)?;
        let writing = Writing::keys(self, &keys).await?;
        let written = self.inner.l2.set_many(entries, options).await;
        let dropped = self.shared().drop_keys(&keys).await;
        let changed: Vec<&str> = match &written {
            Ok(answers) => keys
                .iter()
                .zip(answers)
                .filter(|(_, written)| **written)
                .map(|(key, _)| *key)
                .collect(),
            Err(error) if may_have_changed(error) => keys,
            Err(_) => Vec::new(),
        };
        if !changed.is_empty() {
            self.announce(Change::Keys(&changed)).await;
        }
        writing.finish();
        let written = written?;
        dropped?;
        Ok(written)
    }

    async fn delete_many(&self, keys: &[&str]) -> Result<u64> {
        self.check_keys(keys)?;
        self.write_keys(keys, self.inner.l2.delete_many(keys), |_| true)
            .await
    }

    async fn incr(&self, key: &str, delta: i64, expiry: Expiry) -> Result<i64> {
        self.check_key(key)?;
        check_expiry(expiry)?;
        let incr = self.inner.l2.incr(key, delta, expiry);
        self.write_keys(&[key], incr, |_| true).await
    }

    async fn decr(&self, key: &str, delta: i64, expiry: Expiry) -> Result<i64> {
        self.check_key(key)?;
        check_expiry(expiry)?;
        let decr = self.inner.l2.decr(key, delta, expiry);
        self.write_keys(&[key], decr, |_| true).await
    }

    async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        self.check_key(key)?;
        self.inner.l2.ttl(key).await
    }

    async fn touch(&self, key: &str, expiry: Expiry) -> Result<bool> {
        self.check_key(key)?;
        check_expiry(expiry)?;
        let touch = self.inner.l2.touch(key, expiry);
        self.write_keys(&[key], touch, |touched| *touched).await
    }

    async fn clear(&self) -> Result<()> {
        if !self.inner.caps.clear {
            return Err(Error::unsupported(NAME, "clear"));
        }
        let writing = Writing::unknown_keys(self, Changed::Clear);
        let cleared = self.inner.l2.clear().await;
        let dropped = self.shared().drop_all().await;
        if cleared.as_ref().map_or_else(may_have_changed, |_| true) {
            self.announce(Change::Clear).await;
        }
        writing.finish();
        cleared?;
        dropped
    }

    async fn keys(&self, pattern: &str) -> Result<KeyStream> {
        if !self.inner.caps.key_listing {
            return Err(Error::unsupported(NAME, "keys"));
        }
        self.inner.l2.keys(pattern).await
    }

    async fn invalidate_tags(&self, tags: &[&str]) -> Result<u64> {
        if !self.inner.caps.tags {
            return Err(Error::unsupported(NAME, "invalidate_tags"));
        }
        if tags.is_empty() {
            return self.inner.l2.invalidate_tags(tags).await;
        }
        let owned = tags.iter().map(|tag| (*tag).to_owned()).collect();
        let writing = Writing::unknown_keys(self, Changed::Tags(owned));
        let removed = self.inner.l2.invalidate_tags(tags).await;
        let dropped = self.shared().drop_tags(tags).await;
        if removed.as_ref().map_or_else(may_have_changed, |_| true) {
            self.announce(Change::Tags(tags)).await;
        }
        writing.finish();
        let removed = removed?;
        dropped?;
        Ok(removed)
    }

    async fn lease(
        &self,
        key: &str,
        ttl: std::time::Duration,
    ) -> Result<Option<crate::backend::Lease>> {
        // The shared tier decides who loads.
        self.inner.l2.lease(key, ttl).await
    }

    async fn release_lease(&self, key: &str, lease: crate::backend::LeaseToken) -> Result<()> {
        self.inner.l2.release_lease(key, lease).await
    }

    async fn purge_expired(&self) -> Result<u64> {
        let (from_l1, from_l2) = tokio::join!(
            self.shared().l1.purge_expired(),
            self.inner.l2.purge_expired()
        );
        if let Err(error) = from_l1 {
            tracing::debug!(%error, "tiered backend could not purge L1");
        }
        from_l2
    }

    async fn stats(&self) -> Result<Stats> {
        let shared = self.shared();
        let (l1, l2) = tokio::join!(shared.l1.stats(), self.inner.l2.stats());
        let l1 = l1.map_err(|error| error.context("tiered: the stats of L1"))?;
        let l2 = l2.map_err(|error| error.context("tiered: the stats of L2"))?;
        let c = &shared.counters;
        let mut details = c.details(&[
            ("l1_hits", Event::LocalHit),
            ("l2_hits", Event::RemoteHit),
            ("misses", Event::Miss),
            ("invalidations_received", Event::InvalidationReceived),
            ("published", Event::Published),
            ("publish_failures", Event::PublishFailure),
            ("channel_resets", Event::ChannelReset),
        ]);
        let stats = Stats {
            hits: c.get(Event::LocalHit) + c.get(Event::RemoteHit),
            misses: c.get(Event::Miss),
            inserts: l2.inserts,
            updates: l2.updates,
            deletes: l2.deletes,
            evictions: l2.evictions,
            expirations: l2.expirations,
            invalidations: l2.invalidations,
            corrupt: l2.corrupt,
            entries: l2.entries,
            bytes: l2.bytes,
            details: Vec::new(),
        };
        push_layer(&mut details, "l1", l1);
        push_layer(&mut details, "l2", l2);
        Ok(Stats { details, ..stats })
    }

    async fn health(&self) -> Result<()> {
        let (l1, l2) = tokio::join!(self.shared().l1.health(), self.inner.l2.health());
        l2.map_err(|error| error.context("tiered: L2 is not healthy"))?;
        l1.map_err(|error| error.context("tiered: L1 is not healthy"))
    }

    async fn close(&self) -> Result<()> {
        #[cfg(any(feature = "redis", feature = "postgres"))]
        if let Some(channel) = &self.inner.channel {
            channel.stop();
        }
        // Nothing keeps L1 coherent any more.
        self.shared().guard.bump_all(Some(false)).await;
        let (l1, l2) = tokio::join!(self.shared().l1.close(), self.inner.l2.close());
        l2?;
        l1
    }
}
