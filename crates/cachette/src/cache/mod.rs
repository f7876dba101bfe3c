//! The typed front end: [`Cache`] stores serde values over any
//! [`Backend`], with namespaces and key versions, and
//! [`get_or_load`](Cache::get_or_load) with single-flight,
//! stale-while-revalidate, fail-safe, timeouts, negative caching, TTL
//! jitter and an optional distributed lock. The behaviour follows .NET's
//! FusionCache, in Rust idiom.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use cachette::MemoryBackend;
//! use cachette::cache::{Cache, EntryOptions};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! struct User {
//!     id: u64,
//!     name: String,
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> cachette::Result<()> {
//! let cache = Cache::builder(Arc::new(MemoryBackend::default()))
//!     .namespace("users")
//!     .default_ttl(Duration::from_secs(600))
//!     .soft_ttl(Duration::from_secs(60)) // stale after a minute: served, refreshed in the background
//!     .fail_safe(Duration::from_secs(3600)) // on failure, serve values up to an hour old
//!     .build()
//!     .await?;
//!
//! // Concurrent callers of a missing key share one run of the loader.
//! let user = cache
//!     .get_or_load(
//!         "user:42",
//!         |_ctx| async move {
//!             // e.g. SELECT ... FROM users WHERE id = 42
//!             Ok::<_, std::io::Error>(Some(User { id: 42, name: "Ada".into() }))
//!         },
//!         &EntryOptions::new().tags(["team:7"]),
//!     )
//!     .await?;
//! assert_eq!(user.map(|u| u.name).as_deref(), Some("Ada"));
//!
//! // Plain reads and writes.
//! cache.set("user:43", &User { id: 43, name: "Grace".into() }, &EntryOptions::new()).await?;
//! let grace: Option<User> = cache.get("user:43").await?;
//! assert_eq!(grace.map(|u| u.id), Some(43));
//! assert_eq!(cache.stats().loads, 1);
//! # Ok(())
//! # }
//! ```
//!
//! # Options and defaults
//!
//! Set on the [`CacheBuilder`] (cache-wide defaults); those marked "per
//! call" can be overridden by [`EntryOptions`] for one write or load.
//!
//! | option | default | per call | what it does |
//! | --- | --- | --- | --- |
//! | `codec` | [`DefaultCodec`] ([`Postcard`], whatever the features) | no | how values become bytes: [`Postcard`], `Json`, `MessagePack` (features `json`, `msgpack`), [`RawBytes`], or your own [`Codec`] |
//! | `namespace` | `"cachette"` | no | first part of every stored key; no `:` |
//! | `default_ttl` / `ttl` | the backend's default TTL | yes | hard TTL: afterwards the value is gone (with fail-safe, kept only as a fallback) |
//! | `soft_ttl` (per call, off: `no_soft_ttl`) | none | yes | afterwards the value is stale: `get_or_load` returns it at once and refreshes it in the background; must be below the TTL |
//! | `negative_ttl` (per call, off: `no_negative_ttl`) | none (not cached) | yes | how long a loader's `Ok(None)` ("not found") is cached |
//! | `jitter` | none | yes | a random extra of up to this much added to the TTL and soft TTL of each write; zero is none |
//! | `fail_safe` (per call, off: `no_fail_safe`) | off | yes | the maximum age: when the loader or the backend fails, serve a stale value younger than this instead of the error; at least the soft TTL (or else the TTL) |
//! | `fail_safe_throttle` | 30 s | no | after fail-safe served a key, serve that stale value at once this long, without waiting for the loader or the backend |
//! | `fail_safe_recovery` | 5 s | no | auto-recovery: during the throttle, one background attempt per this interval reads the backend and loads; the first success ends the throttle (an interval not below the throttle: no attempts) |
//! | `fail_safe_capacity` | 10,000 | no | how many keys' last values this process keeps for the case where the backend itself fails |
//! | `soft_timeout` | none | yes | a caller that holds a fail-safe value gets it after this long; the load finishes in the background and stores its result |
//! | `hard_timeout` | none | yes | a load running longer is cancelled: [`ErrorKind::Timeout`], or the stale value if fail-safe has one; above `soft_timeout` |
//! | `eager_refresh(fraction)` (per call, off: `no_eager_refresh`) | off | yes | a `get_or_load` hit past this fraction (above 0, below 1) of the entry's fresh life (to its soft TTL, else its TTL) returns the value and starts one background refresh; needs a soft TTL or a TTL |
//! | the loader's [`LoadContext::set_options`] / `set_ttl` / `skip_caching` | none | per load | adaptive caching: the loader sets the options of the entry it stores (over the call's) from the value it loaded, or does not store it |
//! | `compress_above` (feature `lz4`) | off | no | LZ4-compress payloads of at least this many bytes when that makes them smaller |
//! | `max_decompressed_size` (feature `lz4`) | 64 MiB | no | a compressed value declaring a larger payload is corrupt (a miss, counted), never allocated |
//! | `distributed_lock(lock_ttl, wait)` | off | no | one loader per key across processes (backends with atomic only-if-absent sets) |
//! | `tags` | none | yes | names for [`Cache::invalidate_tags`]; stored as `{namespace}:{tag}` |
//! | `clock` | [`SystemClock`] | no | the wall clock of envelope times; [`TokioClock`] for paused-clock tests |
//!
//! [`CacheBuilder::build`] rejects zero durations, a soft TTL not below the
//! TTL, a fail-safe age below the time a value stays fresh, a soft timeout
//! not below the hard timeout, and a distributed lock over a backend
//! without conditional sets, with [`ErrorKind::Config`]
//! naming the option; the same mistakes in [`EntryOptions`] are
//! [`ErrorKind::InvalidInput`].
//!
//! # Keys
//!
//! A key `k` is stored as `{namespace}:v{version}:{k}`. [`Cache::bump_version`]
//! makes every key of the cache unreachable at once, without a scan: it
//! raises the version of this process and persists it with the backend's
//! `incr` on `{namespace}:__version`. [`CacheBuilder::build`] reads that
//! counter, so a cache built later in any process starts at the latest
//! version; a cache that is already running sees another process's bump
//! only after [`Cache::refresh_version`]. Old entries are not deleted: they
//! expire with their TTL.
//!
//! The counter is written with no expiry, so a Redis with a `volatile-*`
//! eviction policy never evicts it; an `allkeys-*` Redis or a bounded
//! memory engine may. Each bump therefore also writes a marker
//! `{namespace}:__retired:v{old}` holding the new version (no expiry
//! either): a cache that finds no counter follows the markers from the
//! version it knows (0 when it is built), and a process that has seen a
//! version puts a missing or lower counter back to it
//! ([`Cache::refresh_version`], [`Cache::bump_version`]). The risk that
//! remains: if the counter and the marker of the version a new process
//! starts from are both evicted while entries of that old version live on,
//! that process serves those entries until a process that knows the
//! version refreshes, or until they expire. Give entries a TTL, or keep
//! these keys out of eviction's reach (a `volatile-*` policy), when that
//! matters.
//!
//! A stored key longer than the backend's `max_key_len` (or a key that
//! itself starts with `#h:`) is hashed: `{namespace}:v{version}:#h:{h}`,
//! with `h` the 32 hex digits of FNV-1a-128 of the key. Its entry is then
//! always an envelope holding the original key, and a read compares it: two
//! keys that hash alike read each other's entry as a miss, never as a value.
//! Counters ([`Cache::incr`]) hold raw integers with no room for the
//! original key, so their keys are never hashed: a counter key over the
//! limit is an error.
//!
//! # Stored layouts
//!
//! **Plain.** Unless the cache needs an envelope, a value is stored as the
//! codec's output alone (and [`Cache::set_bytes`] as the bytes alone), so
//! that other tools can read it.
//!
//! **Envelope.** Every entry of a cache with a soft TTL, fail-safe, a
//! negative TTL, eager refresh or compression is an envelope, and so is an
//! entry with a hashed key, a cached "not found", a per-call soft TTL,
//! fail-safe or eager refresh, or a plain value that would begin with the
//! magic bytes. Integers are little-endian:
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | magic `CC 63 68 74` (`0xCC` then `cht`; never the start of UTF-8 text) |
//! | 4 | 1 | format version, `1` |
//! | 5 | 1 | codec id ([`Codec::id`]; `4` for raw bytes) |
//! | 6 | 1 | flags: `1` = LZ4-compressed, `2` = original key present, `4` = cached "not found" (no payload) |
//! | 7 | 8 | created, Unix ms |
//! | 15 | 8 | soft deadline, Unix ms (`0` = none) |
//! | 23 | 8 | hard deadline, Unix ms (`0` = the backend's TTL is the deadline; set when fail-safe keeps the entry longer) |
//! | 31 | 4 | uncompressed payload length, only if compressed |
//! | … | 4 + n | original key: length, then UTF-8, only if flagged |
//! | … | rest | payload (the codec's output, LZ4 block format if compressed) |
//!
//! Reads recognise an envelope by its magic in any cache. A cache that
//! writes envelopes (or a hashed key) reads any other value as corrupt. An
//! unknown format version, unknown flags, a truncated header or a payload
//! that does not decompress is corrupt too: a corrupt entry reads as a miss,
//! counted in [`CacheStats::corrupt`], and `get_or_load` replaces it. A
//! value that is readable but does not decode into the requested type is
//! different: [`Cache::get`] and `get_or_load` return an
//! [`ErrorKind::Serialization`] error, count it in
//! [`CacheStats::decode_errors`], and leave the entry as it is. An entry
//! written with another codec is the same error for `get`, and a miss for
//! `get_or_load`, which loads over it (the [`Codec`] docs say why).
//!
//! # `get_or_load`
//!
//! **Single-flight.** Within one process, concurrent `get_or_load` calls
//! for the same key of the same cache (or its clones) that find no usable
//! value share one run of the loader: the first caller starts it as a tokio
//! task (with [`get_or_load_borrowed`](Cache::get_or_load_borrowed), runs it
//! in its own future), later callers wait for it, and every caller gets its
//! result — the
//! value (each decodes its own copy from the encoded bytes, so `T` needs no
//! `Clone`), the "not found", or the error. The error is one shared
//! instance: each caller gets its own [`Error`] whose source is
//! a [`LoaderError`] holding the loader's error in an `Arc` (like moka's
//! `try_get_with` returning `Arc<E>`); its kind is the loader error's kind
//! if that is a cachette `Error`, else `Backend`. The load runs with the
//! options of the caller that started it. Because it is a task of its own,
//! a caller that gives up (a dropped future, a soft timeout) does not cancel
//! it: the load finishes, stores its result and answers the other callers.
//! A call made after a write of the key, an `invalidate_tags` or a version
//! bump does not join a load that started before it (whose result is not
//! stored either): it starts a load of its own, so that it never gets a
//! value older than the write it follows. A loader that panics fails the
//! load for every waiter (an error, never a hang), and the next call
//! starts afresh. A loader that asks for its own
//! key, directly or through loads it starts itself, gets an
//! [`ErrorKind::InvalidInput`] error instead
//! of waiting for itself (detection follows the chain of loads through a
//! task-local; a loader that hands the call to a task it spawns, or two
//! loads that wait on each other from unrelated tasks, are not detected — a
//! `hard_timeout` bounds them). `get_or_load` needs a tokio runtime.
//!
//! **Freshness.** A fresh value is returned. A stale one (past its soft TTL)
//! is returned at once, and one background load refreshes it. Past the hard
//! deadline, or on a miss, the caller waits for the load. With
//! `eager_refresh(f)`, a hit past the fraction `f` of the value's fresh
//! life also starts one background refresh, so that a hot key is refreshed
//! before it goes stale.
//!
//! **The forms.** [`get_or_load`](Cache::get_or_load) takes a `'static +
//! Send` loader returning `Result<Option<T>, E>`;
//! [`get_with`](Cache::get_with) one returning `Option<T>` (no error type
//! to name); [`get_or_load_borrowed`](Cache::get_or_load_borrowed) one that
//! borrows from its caller and runs in the caller's future, so nothing
//! runs in the background (stale values are refreshed in the foreground;
//! its docs give the trade-off); [`get_many_or_load`](Cache::get_many_or_load)
//! one batch loader for the keys of a batch without a fresh value. All
//! share one code path and the options above.
//!
//! **Writes win over loads.** A [`set`](Cache::set), [`delete`](Cache::delete)
//! or [`invalidate_tags`](Cache::invalidate_tags) through this cache (or a
//! clone) that starts after a load of the key started wins: the load's
//! result is still returned to its callers but not stored. Across processes
//! (or separate `Cache` values over one backend) the load reads the key
//! again just before storing and skips the store if the entry changed since
//! the load began; a write landing between that read and the store can
//! still be overwritten.
//!
//! **Fail-safe.** With `fail_safe(max_age)`, entries are kept by the backend
//! for that long (or their TTL, if longer), and this process keeps the last
//! value it saw of up to `fail_safe_capacity` keys. When the loader fails
//! (an error, a panic, a hard timeout) or the backend cannot be read, a
//! stale value younger than `max_age` is returned instead of the
//! error, counted in [`CacheStats::fail_safe_activations`] and logged with
//! `tracing::warn!`; for `fail_safe_throttle` afterwards that key is served
//! from the kept value at once (a write of the key through this cache ends
//! the throttle). Auto-recovery, as FusionCache's: during the throttle, the
//! first call after each `fail_safe_recovery` interval starts one
//! background attempt (counted in [`CacheStats::refreshes`]) that reads the
//! backend — adopting a fresh value another process stored — and otherwise
//! runs the loader; its first success (a value, or a "not found") stores
//! its result as any load does and ends the throttle, and each failure
//! restarts it. A recovered backend or database
//! is thus noticed within about one interval. When the backend fails
//! and no such value exists, the loader still runs and its value is
//! returned (storing it fails with a warning). Plain [`get`](Cache::get)
//! does not use fail-safe: it returns the backend's error.
//!
//! **Distributed lock.** With [`CacheBuilder::distributed_lock`], a load
//! first sets `{namespace}:__lock:{hash}` only if absent, with a TTL of
//! `lock_ttl`. The winner loads, stores, and deletes its lock (if it still
//! holds it). A loser's callers that hold a fail-safe value get it at once;
//! the loser polls the key (10 ms, doubling up to 250 ms) until a new value
//! appears or `wait` has passed, and then loads it itself.
//!
//! # Coming from moka, `cached` or FusionCache
//!
//! | there | here |
//! | --- | --- |
//! | moka `get_with(key, init)` | [`Cache::get_with`] (the loader returns `Option<T>`: `None` is "not found") |
//! | moka `try_get_with`, `cached`'s `#[cached(result = true)]`, FusionCache `GetOrSet` | [`Cache::get_or_load`]; errors are shared like moka's `Arc<E>` ([`LoaderError`]) |
//! | moka `get_with` with a borrowing `init` future | [`Cache::get_or_load_borrowed`] (no background refresh) |
//! | moka `invalidate_all`, FusionCache `Clear()` | [`Cache::clear`] (a key-version bump, on every backend) |
//! | moka `invalidate`, FusionCache `Remove` | [`Cache::delete`] |
//! | FusionCache tags, `RemoveByTag` | [`EntryOptions::tags`], [`Cache::invalidate_tags`] |
//! | moka `time_to_live`, FusionCache `Duration` | `default_ttl` / [`EntryOptions::ttl`] |
//! | FusionCache `EagerRefreshThreshold` | `eager_refresh(fraction)` |
//! | FusionCache fail-safe, `FailSafeThrottleDuration`, auto-recovery | `fail_safe(max_age)`, `fail_safe_throttle`, `fail_safe_recovery` |
//! | FusionCache soft / hard timeouts | `soft_timeout`, `hard_timeout` |
//! | FusionCache adaptive caching (`ctx.Options.Duration = ...`) | [`LoadContext::set_ttl`], [`LoadContext::set_options`], [`LoadContext::skip_caching`] |
//! | `cached`'s batch loads by hand, DataLoader | [`Cache::get_many_or_load`] |

mod batch;
mod builder;
mod clock;
mod codec;
pub(crate) mod config;
mod entry;
pub(crate) mod envelope;
mod failsafe;
mod flight;
mod inner;
mod inspect;
mod keys;
mod load;
mod loader;
mod lock;
mod options;
mod raw;
mod stats;
mod version;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::backend::{Backend, Expiry, KeyTtl};
use crate::error::{Error, ErrorKind, Result};

pub use builder::{
    CacheBuilder, DEFAULT_FAIL_SAFE_CAPACITY, DEFAULT_FAIL_SAFE_RECOVERY,
    DEFAULT_FAIL_SAFE_THROTTLE, DEFAULT_MAX_DECOMPRESSED_SIZE, DEFAULT_NAMESPACE,
};
pub(crate) use clock::saturating_after;
pub use clock::{Clock, SystemClock, TokioClock};
#[cfg(feature = "json")]
pub use codec::Json;
#[cfg(feature = "msgpack")]
pub use codec::MessagePack;
pub use codec::{Codec, DefaultCodec, Postcard, RawBytes};
pub use config::{CacheOptions, CodecName, LockOptions};
pub use inspect::{EnvelopeHeader, StoredValue};
pub use loader::{LoadContext, LoaderError};
pub use options::EntryOptions;
pub use stats::CacheStats;

use codec::{NAME, RAW_BYTES_ID};
use entry::{Found, Read};
use inner::Inner;
use stats::bump;

/// A typed cache over any [`Backend`]. Cheap to clone: clones share the
/// backend, the key version, the loads in flight and the counters.
///
/// Built by [`Cache::builder`]; see the [module docs](self) for the
/// behaviour and every option.
pub struct Cache<C: Codec = DefaultCodec> {
    inner: Arc<Inner<C>>,
}

impl<C: Codec> Clone for Cache<C> {
    fn clone(&self) -> Self {
        Cache {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<C: Codec> fmt::Debug for Cache<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("backend", &self.inner.backend.name())
            .field("codec", &self.inner.codec.name())
            .field("namespace", &self.inner.keys.namespace())
            .field("version", &self.inner.keys.version())
            .field("envelopes", &self.inner.envelopes)
            .finish_non_exhaustive()
    }
}

impl Cache<DefaultCodec> {
    /// A builder over `backend` with every default (see the
    /// [module docs](self)).
    pub fn builder(backend: Arc<dyn Backend>) -> CacheBuilder<DefaultCodec> {
        CacheBuilder::new(backend)
    }
}

impl<C: Codec> Cache<C> {
    /// Reads and decodes a value. `Ok(None)` when the key is missing,
    /// expired (past its hard deadline), a cached "not found", corrupt (also
    /// counted in [`CacheStats::corrupt`]) or another key's entry under the
    /// same hash. A stale value (past its soft TTL) is returned as it is.
    ///
    /// A value that does not decode into `T` is an
    /// [`ErrorKind::Serialization`] error;
    /// the entry is left as it is.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let inner = &*self.inner;
        let finish = |read| match self.usable(&read) {
            Some(found) => inner.decode(found),
            None => Ok(None),
        };
        if let Some(answer) = inner.read_ready(key, &finish)? {
            return Ok(answer);
        }
        inner.read(key, finish).await
    }

    /// Counts a read for `get`-like calls and returns a live value.
    #[inline]
    fn usable<'r>(&self, read: &'r Option<Read>) -> Option<&'r Found> {
        let inner = &*self.inner;
        let Some(read) = read else {
            bump(&inner.counters.misses);
            return None;
        };
        let found = inner.count_read(read)?;
        // The clock is read only for entries with a hard deadline.
        if found.negative || (found.hard_deadline != 0 && inner.now() >= found.hard_deadline) {
            bump(&inner.counters.misses);
            return None;
        }
        bump(&inner.counters.hits);
        Some(found)
    }

    /// Reads the stored bytes of a value without decoding them: what
    /// [`set_bytes`](Self::set_bytes) wrote, or the payload of any entry
    /// (decompressed, without envelope), whatever codec wrote it.
    pub async fn get_bytes(&self, key: &str) -> Result<Option<Bytes>> {
        let finish = |read| {
            let live = self.usable(&read).is_some();
            Ok(match read {
                Some(Read::Found(found)) if live => Some(found.payload),
                _ => None,
            })
        };
        if let Some(answer) = self.inner.read_ready(key, &finish)? {
            return Ok(answer);
        }
        self.inner.read(key, finish).await
    }

    /// Encodes and writes a value; the options default to the cache's.
    /// Ends any fail-safe throttle of the key and wins over a load of the
    /// key in flight (see the [module docs](self)).
    pub async fn set<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        options: &EntryOptions,
    ) -> Result<()> {
        let inner = &*self.inner;
        let payload = Bytes::from(inner.codec.encode(value)?);
        inner.write(key, payload, inner.codec.id(), options).await
    }

    /// Writes bytes as they are, with no codec: in a cache without
    /// envelopes the stored value is exactly `value`. Read them back with
    /// [`get_bytes`](Self::get_bytes) (or `get` with the [`RawBytes`]
    /// codec).
    pub async fn set_bytes(&self, key: &str, value: Bytes, options: &EntryOptions) -> Result<()> {
        self.inner.write(key, value, RAW_BYTES_ID, options).await
    }

    /// Removes a key. Returns whether it existed.
    pub async fn delete(&self, key: &str) -> Result<bool> {
        let inner = &*self.inner;
        let stored = inner.keys.stored(key)?;
        let _writing = inner.enter_write(&stored, key).await;
        inner.backend.delete(&stored.full).await
    }

    /// Reads several values in one backend call; one answer per key asked,
    /// in order. A value that does not decode fails the whole call with an
    /// [`ErrorKind::Serialization`] error
    /// naming its key.
    pub async fn get_many<T: DeserializeOwned>(&self, keys: &[&str]) -> Result<Vec<Option<T>>> {
        let inner = &*self.inner;
        let stored = keys
            .iter()
            .map(|key| inner.keys.stored(key))
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<&str> = stored.iter().map(|s| s.full.as_str()).collect();
        let answers = inner.backend.get_many(&refs).await?;
        let mut out = Vec::with_capacity(keys.len());
        for ((key, stored), bytes) in keys.iter().zip(&stored).zip(answers) {
            let read = bytes.map(|bytes| inner.parse(bytes, stored.borrowed(), key));
            let value = match self.usable(&read) {
                Some(found) => inner.decode(found).map_err(|e| {
                    e.context(format_args!("key {}", crate::backend::KeyInMessage(key)))
                })?,
                None => None,
            };
            out.push(value);
        }
        Ok(out)
    }

    /// Encodes and writes several values in one backend call, with the
    /// same options (one jitter draw for the whole batch).
    pub async fn set_many<T: Serialize>(
        &self,
        entries: &[(&str, &T)],
        options: &EntryOptions,
    ) -> Result<()> {
        let inner = &*self.inner;
        let resolved = inner.resolve(options)?;
        let now = inner.now();
        let plan = resolved.plan(now, false);
        let mut stored_entries = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            let stored = inner.keys.stored(key)?;
            let payload = Bytes::from(inner.codec.encode(*value)?);
            let bytes = inner.entry_bytes(
                &stored,
                key,
                payload,
                inner.codec.id(),
                &resolved,
                &plan,
                now,
                false,
            );
            stored_entries.push((stored, bytes));
        }
        let gate_indices = inner.gate_indices(
            stored_entries
                .iter()
                .map(|(stored, _)| stored.full.as_str()),
        );
        let mut guards = Vec::with_capacity(gate_indices.len());
        for index in gate_indices {
            let gate = &inner.gates[index];
            guards.push(gate.lock.read().await);
            gate.generation.fetch_add(1, Ordering::AcqRel);
        }
        for ((stored, _), (key, _)) in stored_entries.iter().zip(entries) {
            inner.written(&stored.identity(key));
        }
        let batch: Vec<(&str, Bytes)> = stored_entries
            .iter()
            .map(|(stored, bytes)| (stored.full.as_str(), bytes.clone()))
            .collect();
        inner.backend.set_many(&batch, &plan.set_options).await?;
        drop(guards);
        Ok(())
    }

    /// The remaining lifetime of a key in the backend: how long the backend
    /// keeps it. With fail-safe this can exceed the TTL (the envelope's hard
    /// deadline comes first). Needs a backend with TTL inspection.
    pub async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        let stored = self.inner.keys.stored(key)?;
        self.inner.backend.ttl(&stored.full).await
    }

    /// Sets how long the backend keeps a present key: `expiry` from now.
    /// Returns whether the key existed. The deadlines inside an envelope
    /// (soft, and with fail-safe, hard) are not rewritten: to make a value
    /// fresh again, set it again. Needs a backend with TTL inspection.
    pub async fn touch(&self, key: &str, expiry: Expiry) -> Result<bool> {
        let stored = self.inner.keys.stored(key)?;
        self.inner.backend.touch(&stored.full, expiry).await
    }

    /// Adds `delta` to the raw counter at `key` (ASCII decimal, not
    /// encoded with the codec, no envelope) and returns the new value; a
    /// missing counter is created at 0 with `expiry`. Keys that would need
    /// hashing are an [`ErrorKind::InvalidInput`]
    /// error. Read a counter with `incr(key, 0, ..)`.
    pub async fn incr(&self, key: &str, delta: i64, expiry: Expiry) -> Result<i64> {
        let stored = self.inner.counter_key(key)?;
        self.inner.backend.incr(&stored.full, delta, expiry).await
    }

    /// Subtracts `delta` from the raw counter at `key`; see
    /// [`incr`](Self::incr).
    pub async fn decr(&self, key: &str, delta: i64, expiry: Expiry) -> Result<i64> {
        let stored = self.inner.counter_key(key)?;
        self.inner.backend.decr(&stored.full, delta, expiry).await
    }

    /// Removes every entry written with any of these tags (stored as
    /// `{namespace}:{tag}`). Loads in flight do not store their result (a
    /// store already under way is waited for, so the backend removes it),
    /// calls from now on do not join them, and this process's fail-safe
    /// copies are dropped. Returns what the backend reports. Needs a
    /// backend with tags.
    pub async fn invalidate_tags(&self, tags: &[&str]) -> Result<u64> {
        let inner = &*self.inner;
        let stored: Vec<String> = tags.iter().map(|tag| inner.keys.tag(tag)).collect();
        let refs: Vec<&str> = stored.iter().map(String::as_str).collect();
        {
            // Waits for the stores of loads that passed their check: the
            // backend then removes what they wrote.
            let _moving = inner.epoch_gate.write().await;
            inner.epoch.fetch_add(1, Ordering::AcqRel);
        }
        inner.copies.clear();
        inner.backend.invalidate_tags(&refs).await
    }

    /// Makes every key of this cache unreachable, in O(1): raises the key
    /// version and persists it with `incr` on `{namespace}:__version`, so
    /// that caches built afterwards in any process start from it (running
    /// ones call [`refresh_version`](Self::refresh_version)). Returns the
    /// new version. On a backend error nothing changes.
    pub async fn bump_version(&self) -> Result<u64> {
        let inner = &*self.inner;
        let version_key = inner.keys.version_key();
        let persisted = inner.backend.incr(&version_key, 1, Expiry::Never).await?;
        let persisted = version::version_from(persisted)?;
        let local = inner.keys.version();
        let mut next = persisted;
        if persisted <= local {
            // The counter fell behind this process (it was evicted,
            // deleted or cleared): move past the local version, and catch
            // it up.
            next = local.saturating_add(1);
            version::restore(&*inner.backend, &version_key, persisted, next).await;
        }
        version::retire(&*inner.backend, &inner.keys, local, next).await;
        let version = inner.keys.raise_version(next);
        inner.epoch.fetch_add(1, Ordering::AcqRel);
        inner.copies.clear();
        Ok(version)
    }

    /// Empties the cache, for every process and on every backend, in O(1)
    /// (moka's `invalidate_all`, FusionCache's `Clear()`): a
    /// [`bump_version`](Self::bump_version), so every key written before is
    /// unreachable, loads in flight do not store their result, and this
    /// process's fail-safe copies are dropped (nothing stale is served
    /// after a clear). Old entries are not deleted: they expire with their
    /// TTL. Another running process sees the clear after its
    /// [`refresh_version`](Self::refresh_version); a cache built later
    /// starts after it. For the backend's own wipe of every key, see
    /// [`Backend::clear`].
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use cachette::MemoryBackend;
    /// # use cachette::cache::{Cache, EntryOptions};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> cachette::Result<()> {
    /// let cache = Cache::builder(Arc::new(MemoryBackend::default())).build().await?;
    /// cache.set("a", &1_u32, &EntryOptions::new()).await?;
    /// cache.clear().await?;
    /// assert_eq!(cache.get::<u32>("a").await?, None);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn clear(&self) -> Result<()> {
        self.bump_version().await.map(drop)
    }

    /// Reads the persisted key version and adopts it if it is newer (a bump
    /// by another process). Returns the version in force.
    pub async fn refresh_version(&self) -> Result<u64> {
        let inner = &*self.inner;
        let version = version::read(&*inner.backend, &inner.keys, inner.keys.version()).await?;
        let before = inner.keys.version();
        let now = inner.keys.raise_version(version);
        if now != before {
            inner.epoch.fetch_add(1, Ordering::AcqRel);
            inner.copies.clear();
        }
        Ok(now)
    }

    /// The key version in force in this process.
    pub fn version(&self) -> u64 {
        self.inner.keys.version()
    }

    /// The namespace of every stored key.
    pub fn namespace(&self) -> &str {
        self.inner.keys.namespace()
    }

    /// The backend below this cache.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.inner.backend
    }

    /// The codec of values.
    pub fn codec(&self) -> &C {
        &self.inner.codec
    }

    /// The counters of this cache and its clones.
    pub fn stats(&self) -> CacheStats {
        self.inner.counters.snapshot()
    }
}

/// An error of the front end itself, for a key.
fn cache_error(kind: ErrorKind, message: String) -> Error {
    Error::new(kind, NAME, message).with_operation("get_or_load")
}
