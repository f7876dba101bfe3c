//! The byte-level [`Backend`] trait and its vocabulary, and **the rules
//! every backend obeys**.
//!
//! Every store in cachette (memory, file, Redis, ...) implements [`Backend`];
//! layers wrap a `Backend` and are one; the typed front end sits on top of
//! an `Arc<dyn Backend>`. This page is the one statement of the rules:
//! `cachette::testing::run_conformance` (feature `testing`) checks them,
//! and a new backend is done when it passes. Where a backend cannot follow
//! a rule, its [`Capabilities`] say so, and the operations they rule out
//! fail with [`ErrorKind::Unsupported`] instead of pretending.
//!
//! # Keys and values
//!
//! - Keys are `&str` (valid UTF-8), compared byte for byte. Any character
//!   is allowed unless the backend's wire protocol cannot carry it; such a
//!   backend rejects the key with [`ErrorKind::InvalidInput`], it never
//!   rewrites it.
//! - An empty key is [`ErrorKind::InvalidInput`] ("the key is empty").
//! - [`Capabilities::max_key_len`] limits the key **the caller passes**, in
//!   bytes; the default is [`DEFAULT_MAX_KEY_LEN`] (4096). A key one byte
//!   longer is [`ErrorKind::InvalidInput`], and the message names the limit
//!   ("the key `aaaa…` is 4097 bytes long; the limit of this backend is
//!   4096 bytes", a long key cut to its first 64 characters). A layer or backend that adds a prefix or namespace to the
//!   keys it stores lowers its advertised limit accordingly, so that the
//!   limit a caller reads is the one it is checked against. Use
//!   [`validate_key`].
//! - A value longer than [`Capabilities::max_value_len`] is
//!   [`ErrorKind::InvalidInput`] naming the limit ([`validate_value`]).
//!   Nothing is ever truncated.
//!
//! # Expiry
//!
//! - [`Expiry::Default`] is the backend's configured default TTL, which
//!   itself defaults to "no expiry"; [`Expiry::Never`] is no expiry whatever
//!   the default; [`Expiry::After`] expires that long after the write.
//! - TTLs keep millisecond precision. A TTL below one millisecond is
//!   rounded **up** to one millisecond ([`validate_ttl`]); a backend that
//!   can only store seconds rounds up to whole seconds and says so in
//!   [`Capabilities::ttl_precision`].
//! - A zero TTL passed to an operation (`set`, `set_many`, `touch`, `incr`)
//!   is [`ErrorKind::InvalidInput`] and changes nothing: never "no expiry",
//!   never "already expired". A zero default TTL given to a builder (or in
//!   a URL) is a configuration mistake: [`ErrorKind::Config`], naming the
//!   option ([`validate_builder_options`]).
//! - Deadlines are absolute: `touch(key, expiry)` replaces the deadline
//!   with `expiry` from now, it never adds to a relative value; it returns
//!   whether the key existed and never creates one. `touch(key,
//!   Expiry::Never)` makes a key persistent.
//! - [`Backend::ttl`] answers [`KeyTtl::Missing`], [`KeyTtl::Persistent`]
//!   or [`KeyTtl::ExpiresIn`]; an expired key is missing to every operation
//!   even before it is physically removed.
//! - An overwrite (`set` without a condition) replaces value, tags and
//!   deadline.
//!
//! # Counters
//!
//! - Counters are stored as ASCII decimal `i64` (`b"-12"`): no `+`, no
//!   spaces ([`parse_counter`], [`format_counter`]). `incr` creates a
//!   missing key at 0 before adding, with the expiry it is given; an
//!   existing counter keeps its deadline and its tags. `decr(k, d)` is
//!   `incr(k, -d)`.
//! - Anything else stored at the key is [`ErrorKind::NotAnInteger`];
//!   leaving the `i64` range is [`ErrorKind::Overflow`]. Neither changes
//!   the stored value.
//! - [`Capabilities::atomic_incr`] is true only where concurrent `incr`s
//!   never lose an update.
//!
//! # Batches, listing, tags and `clear`
//!
//! - Batch operations answer positionally, one result per key asked,
//!   repeated keys included: `get_many` one `Option` per key, `set_many`
//!   one `bool` per entry (false where a condition kept the write from
//!   happening); `delete_many` counts the keys that existed.
//! - [`Backend::keys`] takes a Redis-style glob (see [`crate::glob`];
//!   `glob::escape` makes a literal prefix safe) and streams the matching
//!   keys as the caller wrote them, without any prefix the backend adds.
//!   No key is hidden from a listing because of its name. A listing may
//!   repeat a key (Redis `SCAN` does).
//! - [`Backend::invalidate_tags`] removes exactly the entries stored with
//!   any of the tags; overwriting an entry replaces its tags. It returns
//!   how many entries it removed where
//!   [`Capabilities::counts_invalidations`] says so, 0 otherwise.
//! - [`Backend::clear`] removes this backend's keys only (its prefix,
//!   namespace or table), never a whole shared server; flushing a server is
//!   a separately named operation of that backend.
//!
//! # Errors
//!
//! One [`Error`] with [`kind`](Error::kind), [`backend`](Error::backend)
//! and [`operation`](Error::operation):
//!
//! | kind | when |
//! | --- | --- |
//! | [`Connection`](ErrorKind::Connection) | the backend cannot be reached or the connection broke (temporary) |
//! | [`Timeout`](ErrorKind::Timeout) | a deadline passed (temporary) |
//! | [`InvalidInput`](ErrorKind::InvalidInput) | an operation got an empty or too long key, a too large value or a zero TTL; the message names the limit |
//! | [`Config`](ErrorKind::Config) | a bad URL, builder option (a zero default TTL included) or configuration file; the message names the parameter |
//! | [`Serialization`](ErrorKind::Serialization) | encoding or decoding failed |
//! | [`Unsupported`](ErrorKind::Unsupported) | an operation the backend's capabilities do not offer |
//! | [`NotAnInteger`](ErrorKind::NotAnInteger), [`Overflow`](ErrorKind::Overflow) | `incr`/`decr` on a non-counter, or out of range |
//! | [`PermissionDenied`](ErrorKind::PermissionDenied) | the server refused (e.g. a Redis ACL) |
//! | [`Backend`](ErrorKind::Backend) | anything else the backend reports |
//!
//! [`Error::is_temporary`] is true for `Connection` and `Timeout` only: the
//! retry layer retries nothing else. Stored data that cannot be read back
//! is a miss, counted in [`Stats::corrupt`], not an error. Messages, `Debug`
//! output and logs never contain passwords: URLs are redacted first.
//!
//! # Stats
//!
//! [`Backend::stats`] returns the counters of [`Stats`], cumulative since
//! the backend was built; a counter a backend does not track stays 0.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;

use crate::error::{Error, ErrorKind, Result};

/// A stream of keys, as returned by [`Backend::keys`].
///
/// Backends that list keys from a server (Redis `SCAN`) produce them lazily;
/// the stream never has to hold every key at once.
pub type KeyStream = BoxStream<'static, Result<String>>;

/// When an entry expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Expiry {
    /// The backend's configured default TTL (by default: never).
    #[default]
    Default,
    /// Never expires, whatever the backend's default TTL.
    Never,
    /// Expires this long after the write. Must not be zero.
    After(Duration),
}

impl Expiry {
    /// Resolves this expiry against a backend's default TTL.
    ///
    /// Returns the TTL to apply (`None` = no expiry), rounded up to whole
    /// milliseconds, or an [`ErrorKind::InvalidInput`] error for a zero TTL.
    pub fn resolve(
        self,
        backend: &'static str,
        default_ttl: Option<Duration>,
    ) -> Result<Option<Duration>> {
        match self {
            Expiry::Default => Ok(default_ttl),
            Expiry::Never => Ok(None),
            Expiry::After(ttl) => validate_ttl(backend, ttl).map(Some),
        }
    }
}

impl From<Duration> for Expiry {
    fn from(ttl: Duration) -> Self {
        Expiry::After(ttl)
    }
}

impl From<Option<Duration>> for Expiry {
    /// `None` maps to [`Expiry::Default`].
    fn from(ttl: Option<Duration>) -> Self {
        ttl.map_or(Expiry::Default, Expiry::After)
    }
}

/// Checks a TTL and rounds it up to whole milliseconds.
///
/// A zero TTL is an [`ErrorKind::InvalidInput`] error: it is never taken as
/// "no expiry" nor as "already expired".
pub fn validate_ttl(backend: &'static str, ttl: Duration) -> Result<Duration> {
    if ttl.is_zero() {
        return Err(Error::invalid_input(
            backend,
            "a TTL of zero is not allowed; use Expiry::Never for no expiry or delete the key",
        ));
    }
    let millis = ttl.as_nanos().div_ceil(1_000_000);
    let millis = u64::try_from(millis).map_err(|_| {
        Error::invalid_input(
            backend,
            "the TTL is too large (it must fit in u64 milliseconds)",
        )
    })?;
    Ok(Duration::from_millis(millis))
}

/// Checks the options every bounded backend's builder shares: a bound of
/// zero entries or bytes and a zero default TTL are
/// [`ErrorKind::Config`] errors naming the option.
pub fn validate_builder_options(
    backend: &'static str,
    max_entries: Option<u64>,
    max_bytes: Option<u64>,
    default_ttl: Option<Duration>,
) -> Result<()> {
    if max_entries == Some(0) {
        return Err(Error::config(backend, "max_entries must be at least 1"));
    }
    if max_bytes == Some(0) {
        return Err(Error::config(backend, "max_bytes must be at least 1"));
    }
    if let Some(ttl) = default_ttl
        && ttl.is_zero()
    {
        return Err(Error::config(
            backend,
            "default_ttl must be greater than zero; leave it unset for no expiry",
        ));
    }
    Ok(())
}

/// When a `set` should write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SetCondition {
    /// Always write.
    #[default]
    Always,
    /// Write only if the key is absent (Redis `NX`). Atomic where
    /// [`Capabilities::conditional_set`] says so.
    IfAbsent,
    /// Write only if the key is present (Redis `XX`).
    IfPresent,
}

/// Options of [`Backend::set`] and [`Backend::set_many`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SetOptions {
    /// When the entry expires.
    pub expiry: Expiry,
    /// Tags ("refs"): names this entry depends on. [`Backend::invalidate_tags`]
    /// with any of them removes the entry.
    pub tags: Vec<String>,
    /// When to write.
    pub condition: SetCondition,
}

impl SetOptions {
    /// Options that write always, with the default TTL and no tags.
    pub fn new() -> Self {
        SetOptions::default()
    }

    /// Sets the TTL.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.expiry = Expiry::After(ttl);
        self
    }

    /// Sets the expiry.
    pub fn expiry(mut self, expiry: Expiry) -> Self {
        self.expiry = expiry;
        self
    }

    /// Adds tags.
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags.extend(tags.into_iter().map(Into::into));
        self
    }

    /// Writes only if the key is absent.
    pub fn if_absent(mut self) -> Self {
        self.condition = SetCondition::IfAbsent;
        self
    }

    /// Writes only if the key is present.
    pub fn if_present(mut self) -> Self {
        self.condition = SetCondition::IfPresent;
        self
    }
}

/// The remaining lifetime of a key, as answered by [`Backend::ttl`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyTtl {
    /// The key does not exist (or has expired).
    Missing,
    /// The key exists and never expires.
    Persistent,
    /// The key exists and expires after this long.
    ExpiresIn(Duration),
}

/// The finest TTL a backend can store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum TtlPrecision {
    /// Millisecond deadlines.
    #[default]
    Milliseconds,
    /// Whole seconds; shorter TTLs are rounded up.
    Seconds,
}

/// What a backend guarantees. Data, not behaviour: docs and the CLI print
/// it, the front end and the conformance suite read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Capabilities {
    /// `incr`/`decr` are atomic with respect to every other operation.
    pub atomic_incr: bool,
    /// `set` with a condition is atomic.
    pub conditional_set: bool,
    /// Expiry is enforced by the backend (no stale reads after the deadline).
    pub native_ttl: bool,
    /// The finest TTL the backend keeps.
    pub ttl_precision: TtlPrecision,
    /// `ttl` and `touch` are supported.
    pub ttl_inspection: bool,
    /// Tags and `invalidate_tags` are supported.
    pub tags: bool,
    /// `invalidate_tags` returns how many entries it removed. A backend
    /// that invalidates a tag without visiting its entries (memcached's
    /// tag versions) cannot count them and returns 0.
    pub counts_invalidations: bool,
    /// `keys(pattern)` is supported.
    pub key_listing: bool,
    /// `clear` is supported.
    pub clear: bool,
    /// Data survives a restart of the process.
    pub persistent: bool,
    /// Several processes see the same data.
    pub shared: bool,
    /// The longest key a caller may pass, in bytes of UTF-8. A backend or
    /// layer that stores keys under a prefix of its own advertises its
    /// store's limit minus that prefix.
    pub max_key_len: usize,
    /// The longest value accepted, in bytes, if limited.
    pub max_value_len: Option<usize>,
}

impl Default for Capabilities {
    /// The capabilities of a backend that only implements the required
    /// methods: non-atomic, no TTL inspection, no tags, no listing.
    fn default() -> Self {
        Capabilities {
            atomic_incr: false,
            conditional_set: false,
            native_ttl: false,
            ttl_precision: TtlPrecision::Milliseconds,
            ttl_inspection: false,
            tags: false,
            counts_invalidations: false,
            key_listing: false,
            clear: false,
            persistent: false,
            shared: false,
            max_key_len: DEFAULT_MAX_KEY_LEN,
            max_value_len: None,
        }
    }
}

/// The key limit of backends that set none of their own: 4 KiB of UTF-8.
pub const DEFAULT_MAX_KEY_LEN: usize = 4096;

/// Counters and gauges of a backend. Counters are cumulative since the
/// backend was built; fields a backend does not track stay 0.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Reads that found a live entry.
    pub hits: u64,
    /// Reads that found nothing (or an expired or corrupt entry).
    pub misses: u64,
    /// Writes that created an entry.
    pub inserts: u64,
    /// Writes that replaced an existing entry.
    pub updates: u64,
    /// Entries removed by `delete`/`delete_many`.
    pub deletes: u64,
    /// Entries removed by the eviction policy to respect a bound.
    pub evictions: u64,
    /// Entries removed because their TTL ran out.
    pub expirations: u64,
    /// Entries removed by `invalidate_tags`.
    pub invalidations: u64,
    /// Stored entries that could not be read back (counted as misses too).
    pub corrupt: u64,
    /// Entries currently stored, if known.
    pub entries: u64,
    /// Bytes currently stored (weights, including per-entry overhead).
    pub bytes: u64,
    /// Backend-specific counters, by name.
    pub details: Vec<(String, u64)>,
}

impl Stats {
    /// The counters by name (`hits`, `misses`, ... `entries`, `bytes`),
    /// in the order of the fields; `details` not included.
    pub fn counters(&self) -> [(&'static str, u64); 11] {
        [
            ("hits", self.hits),
            ("misses", self.misses),
            ("inserts", self.inserts),
            ("updates", self.updates),
            ("deletes", self.deletes),
            ("evictions", self.evictions),
            ("expirations", self.expirations),
            ("invalidations", self.invalidations),
            ("corrupt", self.corrupt),
            ("entries", self.entries),
            ("bytes", self.bytes),
        ]
    }

    /// Whether the detail called `name` is a level that goes up and down
    /// (a gauge: `entries`, `bytes`, `db_keys`, `server_used_memory`, …)
    /// rather than a running total (a counter). Decided on the last
    /// `.`-separated part, so that the tiered backend's `l1.entries` is a
    /// level too. The metrics layer and the CLI's Prometheus output both
    /// follow it.
    pub fn detail_is_level(name: &str) -> bool {
        const LEVELS: &[&str] = &[
            "entries",
            "bytes",
            "tags",
            "local_entries",
            "db_keys",
            "server_used_memory",
            "file_bytes",
            "curr_items",
            "servers",
            "servers_reachable",
        ];
        LEVELS.contains(&name.rsplit('.').next().unwrap_or(name))
    }

    /// Hits divided by reads, or 0 before the first read.
    pub fn hit_ratio(&self) -> f64 {
        let reads = self.hits + self.misses;
        if reads == 0 {
            0.0
        } else {
            self.hits as f64 / reads as f64
        }
    }
}

/// The answer of [`Backend::lease`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Lease {
    /// This caller may load the key. If the load writes nothing, give the
    /// token back with [`Backend::release_lease`].
    Granted(LeaseToken),
    /// Another caller holds the lease: its value is on the way.
    Held,
}

/// Names a granted [`Lease`]; what it holds is the backend's (Memcached:
/// the CAS value of the item the lease was granted on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseToken(u64);

impl LeaseToken {
    /// A token holding `value`.
    pub fn new(value: u64) -> Self {
        LeaseToken(value)
    }

    /// What the token holds.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// The byte-level cache backend.
///
/// Dyn-compatible: the manager, `tiered` and `near` hold `Arc<dyn Backend>`.
/// Only [`get`](Backend::get), [`set`](Backend::set) and
/// [`delete`](Backend::delete) are required; every other method has a
/// correct (if slow, or unsupported) default that backends override natively
/// when they can do better. Wrappers should forward every method.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The backend's name, used in errors, logs and metrics.
    fn name(&self) -> &'static str;

    /// What this backend guarantees.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    /// Reads a key. `Ok(None)` is a miss.
    async fn get(&self, key: &str) -> Result<Option<Bytes>>;

    /// Answers a read at once, without a future, when the backend can do so
    /// without I/O (an in-process store); `None` means "use
    /// [`get`](Backend::get)". The typed front end tries this first, so a
    /// memory hit costs no boxed future. Layers that observe operations
    /// return `None`, so that every read still passes through them.
    fn get_ready(&self, key: &str) -> Option<Result<Option<Bytes>>> {
        let _ = key;
        None
    }

    /// Writes a key. Returns `false` only when `options.condition` kept the
    /// write from happening.
    async fn set(&self, key: &str, value: Bytes, options: &SetOptions) -> Result<bool>;

    /// Removes a key. Returns whether it existed.
    async fn delete(&self, key: &str) -> Result<bool>;

    /// Whether a key exists.
    async fn exists(&self, key: &str) -> Result<bool> {
        Ok(self.get(key).await?.is_some())
    }

    /// Reads several keys; one answer per key asked, in order.
    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            out.push(self.get(key).await?);
        }
        Ok(out)
    }

    /// Writes several keys with the same options; one answer per entry, in
    /// order (`false` where the condition kept the write from happening).
    async fn set_many(&self, entries: &[(&str, Bytes)], options: &SetOptions) -> Result<Vec<bool>> {
        let mut out = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            out.push(self.set(key, value.clone(), options).await?);
        }
        Ok(out)
    }

    /// Removes several keys. Returns how many existed.
    async fn delete_many(&self, keys: &[&str]) -> Result<u64> {
        let mut removed = 0;
        for key in keys {
            if self.delete(key).await? {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Adds `delta` to the counter at `key` and returns the new value.
    ///
    /// A missing key is created at 0 with `expiry`; an existing counter keeps
    /// its deadline. The default is a read followed by a write and is not
    /// atomic ([`Capabilities::atomic_incr`] is false).
    async fn incr(&self, key: &str, delta: i64, expiry: Expiry) -> Result<i64> {
        let (next, existed) = match self.get(key).await? {
            Some(current) => (add_to_counter(self.name(), &current, delta)?, true),
            None => (delta, false),
        };
        let mut options = SetOptions::new();
        if existed {
            // Keep the deadline of the existing counter as well as this
            // trait allows without `ttl`: re-apply what is left of it.
            options.expiry = match self.ttl(key).await {
                Ok(KeyTtl::ExpiresIn(left)) => Expiry::After(left.max(Duration::from_millis(1))),
                Ok(KeyTtl::Persistent) | Ok(KeyTtl::Missing) => Expiry::Never,
                Err(_) => Expiry::Default,
            };
        } else {
            options.expiry = expiry;
        }
        self.set(key, format_counter(next), &options).await?;
        Ok(next)
    }

    /// Subtracts `delta` from the counter at `key`; see [`Backend::incr`].
    async fn decr(&self, key: &str, delta: i64, expiry: Expiry) -> Result<i64> {
        let negated = delta.checked_neg().ok_or_else(|| {
            Error::new(
                ErrorKind::Overflow,
                self.name(),
                "decr by i64::MIN cannot be expressed as an incr",
            )
        })?;
        self.incr(key, negated, expiry).await
    }

    /// The remaining lifetime of a key.
    async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        let _ = key;
        Err(Error::unsupported(self.name(), "ttl"))
    }

    /// Sets a new absolute deadline for a present key: `expiry` from now.
    /// Returns whether the key existed.
    async fn touch(&self, key: &str, expiry: Expiry) -> Result<bool> {
        let _ = (key, expiry);
        Err(Error::unsupported(self.name(), "touch"))
    }

    /// Removes every key of this backend (its prefix, namespace or table
    /// only).
    async fn clear(&self) -> Result<()> {
        Err(Error::unsupported(self.name(), "clear"))
    }

    /// Lists the keys that match a glob pattern (see [`crate::glob`]).
    async fn keys(&self, pattern: &str) -> Result<KeyStream> {
        let _ = pattern;
        Err(Error::unsupported(self.name(), "keys"))
    }

    /// Removes every entry stored with any of these tags. Returns how many
    /// entries were removed where [`Capabilities::counts_invalidations`]
    /// says the backend knows, 0 otherwise.
    async fn invalidate_tags(&self, tags: &[&str]) -> Result<u64> {
        let _ = tags;
        Err(Error::unsupported(self.name(), "invalidate_tags"))
    }

    /// Asks for the right to load `key` for at most `ttl` — a lease, the
    /// backend's own stampede protection (Memcached's `mg … N`/`R`): of
    /// the callers that ask while a key is missing, or while it is stored
    /// with an expiry and nobody refreshed it yet, one gets
    /// [`Lease::Granted`] and the others [`Lease::Held`] until the key is
    /// written again (or the lease's `ttl` passes).
    ///
    /// `Ok(None)`: the backend has no leases (the default), or none
    /// applies to this key (a key stored without expiry). The typed front
    /// end's [distributed lock](crate::CacheBuilder::distributed_lock)
    /// uses a lease where the backend gives one, and a lock key otherwise.
    async fn lease(&self, key: &str, ttl: Duration) -> Result<Option<Lease>> {
        let _ = (key, ttl);
        Ok(None)
    }

    /// Gives back a lease whose load wrote nothing, so that the next
    /// caller may load at once. Nothing happens when the key was written
    /// since. The default does nothing.
    async fn release_lease(&self, key: &str, lease: LeaseToken) -> Result<()> {
        let _ = (key, lease);
        Ok(())
    }

    /// Removes expired entries now. Returns how many were removed.
    async fn purge_expired(&self) -> Result<u64> {
        Ok(0)
    }

    /// The backend's counters.
    async fn stats(&self) -> Result<Stats> {
        Ok(Stats::default())
    }

    /// Checks that the backend can serve requests.
    async fn health(&self) -> Result<()> {
        Ok(())
    }

    /// Releases connections and background tasks. Operations after `close`
    /// may fail.
    async fn close(&self) -> Result<()> {
        Ok(())
    }
}

impl fmt::Debug for dyn Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backend")
            .field("name", &self.name())
            .finish_non_exhaustive()
    }
}

/// Checks a key against the rules every backend shares: not empty, at most
/// `max_len` bytes.
pub fn validate_key(backend: &'static str, key: &str, max_len: usize) -> Result<()> {
    if key.is_empty() {
        return Err(Error::invalid_input(backend, "the key is empty"));
    }
    if key.len() > max_len {
        return Err(Error::invalid_input(
            backend,
            format!(
                "the key {} is {} bytes long; the limit of this backend is {max_len} bytes",
                KeyInMessage(key),
                key.len()
            ),
        ));
    }
    Ok(())
}

/// A key as error messages show it, in backticks: whole when short,
/// otherwise its first [`KeyInMessage::SHOWN_CHARS`] characters and an
/// ellipsis, so that a huge key never floods a log line. Messages give the
/// key's length beside it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyInMessage<'a>(pub(crate) &'a str);

impl KeyInMessage<'_> {
    /// The characters shown of a long key.
    pub(crate) const SHOWN_CHARS: usize = 64;
}

impl std::fmt::Display for KeyInMessage<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = self.0;
        match key.char_indices().nth(Self::SHOWN_CHARS) {
            None => write!(f, "`{key}`"),
            Some((cut, _)) => write!(f, "`{}…`", &key[..cut]),
        }
    }
}

/// Checks a value's length against a backend's limit; the error names the
/// limit.
pub fn validate_value(backend: &'static str, value: &[u8], max_len: usize) -> Result<()> {
    if value.len() > max_len {
        return Err(Error::invalid_input(
            backend,
            format!(
                "the value is {} bytes long; the limit of this backend is {max_len} bytes",
                value.len()
            ),
        ));
    }
    Ok(())
}

/// Parses a stored counter (ASCII decimal `i64`) and adds `delta`.
pub fn add_to_counter(backend: &'static str, current: &[u8], delta: i64) -> Result<i64> {
    parse_counter(backend, current)?
        .checked_add(delta)
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Overflow,
                backend,
                "the counter would leave the range of a signed 64-bit integer",
            )
        })
}

/// Parses a stored counter: ASCII decimal, an optional leading `-`, no
/// spaces, within `i64`.
pub fn parse_counter(backend: &'static str, bytes: &[u8]) -> Result<i64> {
    let not_integer = || {
        Error::new(
            ErrorKind::NotAnInteger,
            backend,
            "the stored value is not a decimal 64-bit integer",
        )
    };
    let text = std::str::from_utf8(bytes).map_err(|_| not_integer())?;
    if text.is_empty() || text.starts_with('+') {
        return Err(not_integer());
    }
    text.parse::<i64>().map_err(|_| not_integer())
}

/// Formats a counter the way [`parse_counter`] reads it.
pub fn format_counter(value: i64) -> Bytes {
    Bytes::from(value.to_string())
}
