//! The Redis backend: standalone Redis over an auto-reconnecting
//! connection, with TLS (rustls) and ACL logins, a Redis Cluster, or the
//! master of a group watched by Redis Sentinel.
//!
//! - **URLs:** `redis://[user[:password]@]host[:port][/db][?params]`,
//!   `rediss://...` (TLS) and `redis+unix:///path/to/redis.sock[?db=N&...]`.
//!   Parameters: `prefix`, `connect_timeout`, `response_timeout`,
//!   `default_ttl`, `tags` (`false` turns tags off, see
//!   [`RedisBuilder::tags`]), and for `rediss://` `ca_cert` (a PEM file) and
//!   `insecure_hostname=true`; `redis+unix://` takes `db` as a parameter.
//! - **Connections:** one multiplexed connection (redis-rs
//!   `ConnectionManager`) that reconnects by itself. Every exchange with
//!   the server ends within `connect_timeout + response_timeout` (1 s +
//!   1 s by default), and with it every operation of one round trip (`get`,
//!   `set`, `get_many`, `set_many`, `exists`, `ttl`, `incr`, `delete`);
//!   operations that walk the key space or the tag index (`keys`, `clear`,
//!   `invalidate_tags`) get that bound for each of their round trips. A
//!   dead or hung server gives [`ErrorKind::Connection`] or
//!   [`ErrorKind::Timeout`], never a hang, and the same backend serves
//!   again once the server is back.
//! - **Operations:** `get_many` is one `MGET`; `set_many` one pipeline of
//!   `SET .. PX [NX|XX]`; `delete_many` `UNLINK` in batches of 512; `incr`
//!   a Lua script (`INCRBY`, then `PEXPIRE` only if it created the key);
//!   `ttl` is `PTTL`; `touch` `PEXPIRE`/`PERSIST`; `keys` a lazy `SCAN
//!   MATCH`; `clear` `SCAN` + `UNLINK` of this prefix only (never
//!   `FLUSHDB`; [`RedisBackend::flush_database`] is the separate,
//!   explicit operation); `health` is `PING`. TTLs keep milliseconds.
//! - **Key layout:** the user key `k` lives at `{prefix}k`. Tags use two
//!   kinds of Redis sets under the sub-prefix `{prefix}\xFF`: the byte
//!   `0xFF` never occurs in UTF-8, so no user key can collide with them and
//!   none is hidden from `keys` because of its name.
//!   - `{prefix}\xFFt:{tag}`: the user keys stored with `tag`;
//!   - `{prefix}\xFFk:{key}`: the tags of `key` (the authority).
//!
//!   A tagged `set` (a Lua script) removes the key's old memberships and
//!   adds the new ones; the tag record expires with its key and a tag set
//!   lives at least as long as its longest-lived key. `delete`, an untagged
//!   overwrite and expiry remove the record but leave the key's name in the
//!   tag sets; `invalidate_tags` (a script) skips such stale names by
//!   checking the record, and removes the tag sets. So stale names are
//!   bounded by the tag set's lifetime or the next invalidation.
//! - **Cluster mode** (`redis+cluster://[user[:password]@]h1:p1,h2:p2,...`
//!   with the same `prefix` and timeout parameters, or
//!   [`RedisBackend::cluster_builder`]): one redis-rs cluster connection
//!   routes each command to the master of its slot ([`hash_slot`], CRC16
//!   honouring `{hash tags}`). The same code serves both modes; where they
//!   differ:
//!   - `get_many`, `set_many` and `delete_many` group their keys by slot
//!     and send one `MGET` / pipeline / `UNLINK` pair per slot (at most 64
//!     at once), answers put back in the caller's order. A dead master
//!     fails the whole batch.
//!   - `keys` and `clear` ask `CLUSTER SLOTS` for the masters and `SCAN`
//!     each one; `clear` unlinks what it finds per slot.
//!   - The internal keys of an entry are kept in the entry's slot by a slot
//!     tag `{T}` (a short text whose CRC16 is that slot), so each script
//!     still touches one slot: the tag record is `{prefix}\xFFk:{T}key`
//!     and the tag sets are **per slot**, `{prefix}\xFFt:{T}tag` (the keys
//!     of that slot with the tag). Each tag also has a slot index
//!     `{prefix}\xFFi:tag` (a set of slot numbers, in whatever slot its
//!     name hashes to), kept alive at least as long as its entries.
//!     A tagged write runs the script in the key's slot, **then** adds the
//!     slot to the index; `invalidate_tags` takes the slots out of the index
//!     (`SMEMBERS` + `SREM`), **then** runs the invalidation script in each
//!     of them. So a write racing an invalidation either is removed by it
//!     or leaves its slot in the index for the next one. (A tagged write
//!     that fails between its two steps returns an error and may be missed
//!     by invalidations until it is written again or expires.)
//!   - The prefix must not hold a lone or empty `{`: either none, or a
//!     complete `{tag}` (which puts every key of the backend in one slot).
//!   - Only database 0; no TLS yet; `stats` reports `db_keys` as the sum of
//!     the masters' `DBSIZE` (every prefix).
//! - **Sentinel mode**
//!   (`redis+sentinel://[user[:password]@]host1:port1,host2:port2/MASTER[/db][?params]`,
//!   sentinel port 26379 by default, or [`RedisBackend::sentinel_builder`]):
//!   the user, password and database are those of the data nodes; the
//!   parameters are those of `redis://` plus `sentinel_username` and
//!   `sentinel_password` for sentinels that require a login. The backend
//!   asks every sentinel for the master's address (`SENTINEL
//!   GET-MASTER-ADDR-BY-NAME`), connects to the first one whose `ROLE` is
//!   `master` (an ACL user without `ROLE` trusts the sentinels) and works
//!   as standalone over one multiplexed connection. When the master goes
//!   away (I/O error, timeout, or `READONLY` from a master demoted to a
//!   replica), the operation that noticed fails, and the next one asks the
//!   sentinels again: during a failover operations fail with
//!   [`ErrorKind::Connection`] or [`ErrorKind::Timeout`] within the usual
//!   deadline, and the same backend writes to the promoted replica once
//!   the sentinels name it. A background task also subscribes to one
//!   sentinel's `+switch-master` announcements, so that after a failover
//!   that leaves the old master running (`SENTINEL FAILOVER`) writes move
//!   at once, not seconds later when Sentinel demotes the old master. No
//!   TLS and no client-side tracking in this mode yet.
//! - **Limits:** keys up to 4096 bytes (the prefix is not counted: Redis
//!   itself allows 512 MiB); values up to 512 MiB (Redis' limit). Any
//!   UTF-8 is a valid key (Redis is binary-safe).
//! - **Stats:** hits, misses, deletes and invalidations counted by this
//!   client; `details` has `db_keys` (from `INFO keyspace`) when the server
//!   answers.
//! - **Needs:** Redis 6+ for ACL users; the scripts touch keys they do not
//!   declare, which standalone Redis allows, and so does Redis Cluster
//!   (7.0 tested) since those keys are in the declared keys' slot.

mod builder;
mod cluster;
mod scripts;
mod sentinel;
pub(crate) mod url;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use redis::{RedisError, RedisResult, Value};

use crate::backend::{
    Backend, Capabilities, Expiry, KeyStream, KeyTtl, SetCondition, SetOptions, Stats,
    TtlPrecision, parse_counter, validate_key,
};
use crate::error::{Error, ErrorKind, Result};
use crate::glob;
use crate::params::redact_text;

pub use builder::RedisBuilder;
pub use cluster::hash_slot;

use cluster::{Conn, Node};

pub(crate) const NAME: &str = "redis";

/// Keys accepted, in bytes (the prefix is not counted).
pub const MAX_KEY_LEN: usize = 4096;
/// Values accepted, in bytes: Redis' own limit for a string.
pub const MAX_VALUE_LEN: usize = 512 * 1024 * 1024;
/// Keys per `UNLINK` and per `SCAN` page.
const BATCH: usize = 512;

/// The sub-prefix of internal keys: never valid UTF-8, so never a user key.
const INTERNAL: u8 = 0xFF;
/// Requests of one batch in flight at once (cluster mode sends one per
/// slot).
const PARALLEL: usize = 64;

pub(super) struct Inner {
    conn: Conn,
    prefix: String,
    default_ttl: Option<Duration>,
    deadline: Duration,
    address: String,
    /// Whether tags are kept ([`RedisBuilder::tags`]).
    tags: bool,
    reads: crate::backends::read_counters::ReadCounters,
    deletes: AtomicU64,
    invalidations: AtomicU64,
}

impl Inner {
    pub(super) fn new(
        conn: Conn,
        prefix: String,
        default_ttl: Option<Duration>,
        deadline: Duration,
        address: String,
        tags: bool,
    ) -> Self {
        Inner {
            conn,
            prefix,
            default_ttl,
            deadline,
            address,
            tags,
            reads: crate::backends::read_counters::ReadCounters::default(),
            deletes: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
        }
    }
}

/// A cache in a Redis server. Cheap to clone: clones share the connection.
///
/// ```no_run
/// use cachette::{Backend, SetOptions};
/// use cachette::backends::redis::RedisBackend;
///
/// # #[tokio::main] async fn main() -> cachette::Result<()> {
/// let cache = RedisBackend::builder("127.0.0.1", 6379).prefix("app:").build().await?;
/// cache.set("k", "v".into(), &SetOptions::new()).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisBackend {
    inner: Arc<Inner>,
}

impl fmt::Debug for RedisBackend {
    /// The address without credentials, the prefix and the timeouts.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("address", &self.inner.address)
            .field("prefix", &self.inner.prefix)
            .field("default_ttl", &self.inner.default_ttl)
            .field("deadline", &self.inner.deadline)
            .finish_non_exhaustive()
    }
}

/// Maps a redis-rs error to a cachette error of backend `redis`, with any
/// URL in its text redacted.
pub(super) fn map_error(err: RedisError) -> Error {
    use redis::{ErrorKind as K, ServerErrorKind as S};
    let code = err.code().unwrap_or_default().to_owned();
    let detail = err.detail().unwrap_or_default().to_owned();
    let (kind, message) = if err.is_timeout() {
        (
            ErrorKind::Timeout,
            "the server did not answer in time".to_owned(),
        )
    } else {
        match err.kind() {
            K::Io | K::ClusterConnectionNotFound => (
                ErrorKind::Connection,
                format!("the connection failed: {err}"),
            ),
            K::AuthenticationFailed => (
                ErrorKind::PermissionDenied,
                format!("the server refused the login (check user and password): {err}"),
            ),
            K::Server(S::NoPerm) => (
                ErrorKind::PermissionDenied,
                format!("the ACL user may not do this: {err}"),
            ),
            // A transaction (MULTI/EXEC) refused by the ACL reports its
            // commands' NOPERM errors inside an EXECABORT.
            K::Server(S::ExecAbort) if err.to_string().contains("NoPerm") => (
                ErrorKind::PermissionDenied,
                format!("the ACL user may not do this: {err}"),
            ),
            _ if matches!(code.as_str(), "NOAUTH" | "WRONGPASS" | "NOPERM") => (
                ErrorKind::PermissionDenied,
                format!("the server refused: {err}"),
            ),
            // In a cluster, a redirection still left after redis-rs' own
            // retries means the slot's master is not reachable.
            K::Server(S::Moved | S::Ask) => (
                ErrorKind::Connection,
                format!("the master of this key's slot is not reachable: {err}"),
            ),
            K::Server(S::BusyLoading | S::TryAgain | S::ClusterDown | S::MasterDown) => (
                ErrorKind::Connection,
                format!("the server is not ready: {err}"),
            ),
            _ if detail.contains("not an integer") => (
                ErrorKind::NotAnInteger,
                "the stored value is not a decimal 64-bit integer".to_owned(),
            ),
            _ if detail.contains("overflow") => (
                ErrorKind::Overflow,
                "the counter would leave the range of a signed 64-bit integer".to_owned(),
            ),
            _ => (ErrorKind::Backend, format!("{err}")),
        }
    };
    Error::new(kind, NAME, redact_text(&message)).with_source(err)
}

/// Runs `jobs`, at most [`PARALLEL`] at a time; the answers in order.
async fn all<T, F: Future<Output = RedisResult<T>>>(jobs: Vec<F>) -> RedisResult<Vec<T>> {
    let mut out = Vec::with_capacity(jobs.len());
    let mut jobs = jobs.into_iter().peekable();
    while jobs.peek().is_some() {
        let chunk: Vec<F> = jobs.by_ref().take(PARALLEL).collect();
        out.extend(futures_util::future::try_join_all(chunk).await?);
    }
    Ok(out)
}

/// A TTL as the scripts take it: milliseconds, `0` for none.
fn ttl_arg(ttl: Option<Duration>) -> u64 {
    ttl.map_or(0, |ttl| u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
}

impl RedisBackend {
    /// A builder for a server at `host:port`.
    pub fn builder(host: impl Into<String>, port: u16) -> RedisBuilder {
        RedisBuilder::new(host, port)
    }

    /// A builder for a Redis Cluster reached through these seed nodes
    /// (`host`, `port`); the other masters are learned from them.
    ///
    /// ```no_run
    /// use cachette::backends::redis::RedisBackend;
    ///
    /// # #[tokio::main] async fn main() -> cachette::Result<()> {
    /// let cache = RedisBackend::cluster_builder([("10.0.0.1", 7000), ("10.0.0.2", 7000)])
    ///     .prefix("app:")
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn cluster_builder<H: Into<String>>(
        nodes: impl IntoIterator<Item = (H, u16)>,
    ) -> RedisBuilder {
        RedisBuilder::new_cluster(
            nodes
                .into_iter()
                .map(|(host, port)| (host.into(), port))
                .collect(),
        )
    }

    /// A builder for the master that these sentinels (`host`, `port`)
    /// monitor under `master_name`; after a failover the backend follows
    /// the promoted replica. Username, password and database apply to the
    /// data nodes; see [`RedisBuilder::sentinel_password`] for sentinels
    /// that require a login.
    ///
    /// ```no_run
    /// use cachette::backends::redis::RedisBackend;
    ///
    /// # #[tokio::main] async fn main() -> cachette::Result<()> {
    /// let cache = RedisBackend::sentinel_builder(
    ///     [("10.0.0.1", 26379), ("10.0.0.2", 26379), ("10.0.0.3", 26379)],
    ///     "mymaster",
    /// )
    /// .password("secret")
    /// .prefix("app:")
    /// .build()
    /// .await?;
    /// # Ok(()) }
    /// ```
    pub fn sentinel_builder<H: Into<String>>(
        sentinels: impl IntoIterator<Item = (H, u16)>,
        master_name: impl Into<String>,
    ) -> RedisBuilder {
        RedisBuilder::new_sentinel(
            sentinels
                .into_iter()
                .map(|(host, port)| (host.into(), port))
                .collect(),
            master_name.into(),
        )
    }

    /// Whether this backend talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.inner.conn.is_cluster()
    }

    pub(super) fn from_inner(inner: Inner) -> Self {
        RedisBackend {
            inner: Arc::new(inner),
        }
    }

    /// What a Redis backend guarantees.
    pub fn default_capabilities() -> Capabilities {
        Capabilities {
            atomic_incr: true,
            conditional_set: true,
            native_ttl: true,
            ttl_precision: TtlPrecision::Milliseconds,
            ttl_inspection: true,
            tags: true,
            key_listing: true,
            clear: true,
            persistent: false,
            shared: true,
            max_key_len: MAX_KEY_LEN,
            max_value_len: Some(MAX_VALUE_LEN),
        }
    }

    /// The key prefix of this backend.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// Removes **every key of the database**, this prefix or not
    /// (`FLUSHDB`). [`Backend::clear`] removes this prefix's keys only.
    pub async fn flush_database(&self) -> Result<()> {
        let mut conn = self.conn();
        self.run("flush_database", async move {
            redis::cmd("FLUSHDB").query_async::<()>(&mut conn).await
        })
        .await
    }

    fn conn(&self) -> Conn {
        self.inner.conn.clone()
    }

    /// Sends `pipe` on the backend's connection within its deadline (the
    /// near cache's tracked reads share the connection).
    pub(crate) async fn query_pipeline<T: redis::FromRedisValue>(
        &self,
        operation: &'static str,
        pipe: &redis::Pipeline,
    ) -> Result<T> {
        let mut conn = self.conn();
        self.run(operation, async move { pipe.query_async(&mut conn).await })
            .await
    }

    /// The key as stored in Redis: the prefix, then `key`.
    pub(crate) fn stored_key(&self, key: &str) -> Vec<u8> {
        self.data_key(key)
    }

    /// The slot tag of `key`'s slot in cluster mode, `None` standalone.
    fn slot_of(&self, key: &str) -> Option<u16> {
        self.is_cluster()
            .then(|| cluster::hash_slot(&self.data_key(key)))
    }

    /// The indices of `keys` (stored keys) that can go in one request:
    /// all of them standalone, those of one slot each in cluster mode.
    fn groups<K: AsRef<[u8]>>(&self, keys: &[K]) -> Vec<Vec<usize>> {
        if self.is_cluster() {
            cluster::group_by_slot(keys)
                .into_iter()
                .map(|(_, group)| group)
                .collect()
        } else {
            vec![(0..keys.len()).collect()]
        }
    }

    /// Runs one request (one command or one pipeline, one round trip; or
    /// several such requests at once, not one after another) within the
    /// backend's deadline. On a standalone connection redis-rs
    /// already bounds it by that deadline: the request waits at most
    /// `connect_timeout` for a (re)connection, which the manager makes in a
    /// single attempt, then at most `response_timeout` for the answer. So
    /// there it is not wrapped in a timer of its own, which costs the hot
    /// path of many concurrent requests about a tenth of its throughput
    /// (docs/benchmarks.md). Cluster and sentinel connections, and
    /// requests made one after another, go through [`run`](Self::run).
    async fn run_request<T>(
        &self,
        operation: &'static str,
        request: impl Future<Output = RedisResult<T>>,
    ) -> Result<T> {
        match self.inner.conn {
            Conn::Single(_) => request
                .await
                .map_err(|err| map_error(err).with_operation(operation)),
            Conn::Cluster(_) | Conn::Sentinel(_) => self.run(operation, request).await,
        }
    }

    /// Runs one exchange with the server within the backend's deadline.
    async fn run<T>(
        &self,
        operation: &'static str,
        exchange: impl Future<Output = RedisResult<T>>,
    ) -> Result<T> {
        self.run_within(operation, self.inner.deadline, exchange)
            .await
    }

    /// Runs an exchange with the server within `limit`.
    async fn run_within<T>(
        &self,
        operation: &'static str,
        limit: Duration,
        exchange: impl Future<Output = RedisResult<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(limit, exchange).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(map_error(err).with_operation(operation)),
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                NAME,
                format!(
                    "no answer from {} within {:?}",
                    self.inner.address, self.inner.deadline
                ),
            )
            .with_operation(operation)),
        }
    }

    fn data_key(&self, key: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.inner.prefix.len() + key.len());
        out.extend_from_slice(self.inner.prefix.as_bytes());
        out.extend_from_slice(key.as_bytes());
        out
    }

    /// `{prefix}\xFF{kind}:{name}`: an internal key.
    fn internal_key(&self, kind: &str, name: &str) -> Vec<u8> {
        let mut out = self.internal_prefix(kind);
        out.extend_from_slice(name.as_bytes());
        out
    }

    fn internal_prefix(&self, kind: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.inner.prefix.len() + 3 + kind.len());
        out.extend_from_slice(self.inner.prefix.as_bytes());
        out.push(INTERNAL);
        out.extend_from_slice(kind.as_bytes());
        out.push(b':');
        out
    }

    /// `{prefix}\xFF{kind}:`, then in cluster mode `{T}` where `T` is the
    /// slot tag of `slot`: the internal keys of one slot.
    fn slot_prefix(&self, kind: &str, slot: Option<u16>) -> Vec<u8> {
        let mut out = self.internal_prefix(kind);
        if let Some(slot) = slot {
            out.push(b'{');
            out.extend_from_slice(cluster::slot_tag(slot).as_bytes());
            out.push(b'}');
        }
        out
    }

    /// The tags of `key`: `{prefix}\xFFk:key`, or `{prefix}\xFFk:{T}key` in
    /// cluster mode (in the slot of the key).
    fn record_key(&self, key: &str) -> Vec<u8> {
        let mut out = self.slot_prefix("k", self.slot_of(key));
        out.extend_from_slice(key.as_bytes());
        out
    }

    /// The prefix of the tag sets that may hold `key`.
    fn tag_prefix(&self, key: &str) -> Vec<u8> {
        self.slot_prefix("t", self.slot_of(key))
    }

    fn check_key(&self, key: &str) -> Result<()> {
        validate_key(NAME, key, MAX_KEY_LEN)
    }

    fn check_value(&self, value: &Bytes) -> Result<()> {
        crate::backend::validate_value(NAME, value, MAX_VALUE_LEN)
    }

    fn resolve(&self, expiry: Expiry) -> Result<Option<Duration>> {
        expiry.resolve(NAME, self.inner.default_ttl)
    }

    /// Adds to `pipe` one `UNLINK` of the tag records of `keys`, the keys
    /// of untagged writes about to follow in the same pipeline; its answer
    /// is ignored.
    ///
    /// The records go first. A tagged write of one of these keys landing
    /// between the `UNLINK` and its `SET` leaves its record in place for the
    /// untagged value: a later invalidation of those tags removes the value
    /// (a miss), never leaves a tagged value behind. No MULTI is needed for
    /// that, and none is sent. An absent key has no tag record, so `NX`
    /// writes have nothing to drop. In cluster mode `keys` are of one slot,
    /// and so are their records.
    fn push_record_unlink<'k>(
        &self,
        pipe: &mut redis::Pipeline,
        keys: impl IntoIterator<Item = &'k str>,
        condition: SetCondition,
    ) {
        if condition == SetCondition::IfAbsent || !self.inner.tags {
            return;
        }
        pipe.cmd("UNLINK");
        for key in keys {
            pipe.arg(self.record_key(key));
        }
        pipe.ignore();
    }

    /// Adds the `SET` of one untagged write to `pipe`, after
    /// [`push_record_unlink`](Self::push_record_unlink) of its key.
    fn push_plain_set(
        &self,
        pipe: &mut redis::Pipeline,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        condition: SetCondition,
    ) {
        pipe.cmd("SET").arg(self.data_key(key)).arg(value);
        if let Some(ttl) = ttl {
            pipe.arg("PX").arg(ttl_arg(Some(ttl)));
        }
        match condition {
            SetCondition::Always => {}
            SetCondition::IfAbsent => {
                pipe.arg("NX");
            }
            SetCondition::IfPresent => {
                pipe.arg("XX");
            }
        }
    }

    fn tagged_set_invocation<'a>(
        &self,
        invocation: &mut redis::ScriptInvocation<'a>,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        options: &SetOptions,
    ) {
        let condition = match options.condition {
            SetCondition::Always => "A",
            SetCondition::IfAbsent => "N",
            SetCondition::IfPresent => "X",
        };
        invocation
            .key(self.data_key(key))
            .key(self.record_key(key))
            .arg(value)
            .arg(ttl_arg(ttl))
            .arg(condition)
            .arg(self.tag_prefix(key))
            .arg(key);
        for tag in &options.tags {
            invocation.arg(tag.as_str());
        }
    }

    fn check_tags(&self, options: &SetOptions) -> Result<()> {
        if !options.tags.is_empty() {
            self.tags_on("set")?;
        }
        if options.tags.iter().any(String::is_empty) {
            return Err(Error::invalid_input(NAME, "a tag is empty"));
        }
        Ok(())
    }

    /// [`ErrorKind::Unsupported`] naming `operation` when tags are off.
    fn tags_on(&self, operation: &'static str) -> Result<()> {
        if self.inner.tags {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Unsupported,
            NAME,
            "tags are off for this backend (`tags=false`)",
        )
        .with_operation(operation))
    }

    /// The servers `keys` and `clear` visit: the one server, or every
    /// master of the cluster (`None` stands for "the connection's server").
    async fn scan_targets(&self, operation: &'static str) -> Result<Vec<Option<Node>>> {
        match self.conn() {
            Conn::Single(_) | Conn::Sentinel(_) => Ok(vec![None]),
            Conn::Cluster(mut conn) => {
                let masters = self
                    .run(operation, async move { cluster::masters(&mut conn).await })
                    .await?;
                Ok(masters.into_iter().map(Some).collect())
            }
        }
    }

    /// One `SCAN .. MATCH pattern` page of one server: the next cursor
    /// and the stored keys found.
    async fn scan_raw(
        &self,
        operation: &'static str,
        node: Option<&Node>,
        cursor: u64,
        pattern: &[u8],
    ) -> Result<(u64, Vec<Vec<u8>>)> {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(BATCH);
        let conn = self.conn();
        let routing = node.map(Node::routing);
        self.run(operation, async move {
            match (conn, routing) {
                (Conn::Cluster(mut conn), Some(routing)) => {
                    let reply = conn.route_command(cmd, routing).await?;
                    Ok(redis::from_redis_value(reply)?)
                }
                (mut conn, _) => cmd.query_async(&mut conn).await,
            }
        })
        .await
    }

    /// Reads one `SCAN` page: the next cursor and the user keys found.
    async fn scan_page(
        &self,
        node: Option<&Node>,
        cursor: u64,
        pattern: &[u8],
    ) -> Result<(u64, Vec<String>)> {
        let (next, raw) = self.scan_raw("keys", node, cursor, pattern).await?;
        let prefix = self.inner.prefix.len();
        let keys = raw
            .into_iter()
            .filter_map(|full| {
                let rest = full.get(prefix..)?;
                if rest.first() == Some(&INTERNAL) {
                    return None;
                }
                String::from_utf8(rest.to_vec()).ok()
            })
            .collect();
        Ok((next, keys))
    }

    /// `UNLINK`s stored keys in batches (of one slot each in cluster
    /// mode); returns how many existed.
    async fn unlink(&self, operation: &'static str, keys: &[Vec<u8>]) -> Result<u64> {
        let mut commands = Vec::new();
        for group in self.groups(keys) {
            for chunk in group.chunks(BATCH) {
                let mut cmd = redis::cmd("UNLINK");
                for &i in chunk {
                    cmd.arg(&keys[i]);
                }
                commands.push(cmd);
            }
        }
        let mut jobs = Vec::with_capacity(commands.len());
        for cmd in commands {
            let mut conn = self.conn();
            jobs.push(async move { cmd.query_async::<u64>(&mut conn).await });
        }
        let counts = self.run(operation, all(jobs)).await?;
        Ok(counts.into_iter().sum())
    }

    /// Sends one pipeline; a pipeline of tagged writes is sent again after
    /// loading the script if the server's script cache was empty (a
    /// restarted server): then no command ran.
    async fn send_pipeline(
        &self,
        operation: &'static str,
        pipe: &redis::Pipeline,
        tagged: bool,
    ) -> Result<Vec<Value>> {
        let started = tokio::time::Instant::now();
        let mut conn = self.conn();
        let sent = self
            .run_request(operation, async { pipe.query_async(&mut conn).await })
            .await;
        match sent {
            Err(err) if tagged && err.message().to_ascii_uppercase().contains("NOSCRIPT") => {
                // Loading the script and sending again share what is left
                // of the one deadline.
                let left = self.inner.deadline.saturating_sub(started.elapsed());
                self.run_within(operation, left, async move {
                    scripts::SET_TAGGED.load_async(&mut conn).await?;
                    pipe.query_async(&mut conn).await
                })
                .await
            }
            other => other,
        }
    }

    /// Cluster mode: records in each tag's slot index that entries of
    /// these slots carry the tag (after they were written, see the module
    /// docs). Nothing to do standalone.
    async fn index_tags(
        &self,
        operation: &'static str,
        tags: &[String],
        slots: &[u16],
        ttl: Option<Duration>,
    ) -> Result<()> {
        if !self.is_cluster() || slots.is_empty() {
            return Ok(());
        }
        let mut jobs = Vec::with_capacity(tags.len());
        for tag in tags {
            let mut invocation = scripts::INDEX_TAG.prepare_invoke();
            invocation
                .key(self.internal_key("i", tag))
                .arg(ttl_arg(ttl))
                .arg(slots);
            let mut conn = self.conn();
            jobs.push(async move { invocation.invoke_async::<()>(&mut conn).await });
        }
        self.run(operation, all(jobs)).await?;
        Ok(())
    }
}

#[async_trait]
impl Backend for RedisBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        let mut capabilities = Self::default_capabilities();
        capabilities.tags = self.inner.tags;
        capabilities
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.check_key(key)?;
        let mut conn = self.conn();
        let key = self.data_key(key);
        let value: Option<Bytes> = self
            .run_request("get", async move {
                redis::cmd("GET").arg(key).query_async(&mut conn).await
            })
            .await?;
        if value.is_some() {
            self.inner.reads.hit();
        } else {
            self.inner.reads.miss();
        }
        Ok(value)
    }

    async fn set(&self, key: &str, value: Bytes, options: &SetOptions) -> Result<bool> {
        self.check_key(key)?;
        self.check_value(&value)?;
        self.check_tags(options)?;
        let ttl = self.resolve(options.expiry)?;
        let mut conn = self.conn();
        if options.tags.is_empty() {
            let mut pipe = redis::pipe();
            self.push_record_unlink(&mut pipe, [key], options.condition);
            self.push_plain_set(&mut pipe, key, &value, ttl, options.condition);
            let (answer,): (Value,) = self
                .run_request("set", async move { pipe.query_async(&mut conn).await })
                .await?;
            Ok(!matches!(answer, Value::Nil))
        } else {
            let mut invocation = scripts::SET_TAGGED.prepare_invoke();
            self.tagged_set_invocation(&mut invocation, key, &value, ttl, options);
            let written: i64 = self
                .run(
                    "set",
                    async move { invocation.invoke_async(&mut conn).await },
                )
                .await?;
            if written == 1 {
                let slots: Vec<u16> = self.slot_of(key).into_iter().collect();
                self.index_tags("set", &options.tags, &slots, ttl).await?;
            }
            Ok(written == 1)
        }
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        Ok(self.delete_many(&[key]).await? == 1)
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        self.check_key(key)?;
        let mut conn = self.conn();
        let key = self.data_key(key);
        let found: i64 = self
            .run_request("exists", async move {
                redis::cmd("EXISTS").arg(key).query_async(&mut conn).await
            })
            .await?;
        Ok(found == 1)
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        for key in keys {
            self.check_key(key)?;
        }
        let stored: Vec<Vec<u8>> = keys.iter().map(|key| self.data_key(key)).collect();
        let mut jobs = Vec::new();
        for group in self.groups(&stored) {
            let mut cmd = redis::cmd("MGET");
            for &i in &group {
                cmd.arg(&stored[i]);
            }
            let mut conn = self.conn();
            jobs.push(async move {
                let values: Vec<Option<Bytes>> = cmd.query_async(&mut conn).await?;
                Ok((group, values))
            });
        }
        // Concurrent requests (one per slot), each bounded on its own.
        let answers = self.run_request("get_many", all(jobs)).await?;
        let mut values = vec![None; keys.len()];
        for (group, found) in answers {
            for (i, value) in group.into_iter().zip(found) {
                values[i] = value;
            }
        }
        let hits = values.iter().filter(|v| v.is_some()).count() as u64;
        self.inner.reads.add(hits, values.len() as u64 - hits);
        Ok(values)
    }

    async fn set_many(&self, entries: &[(&str, Bytes)], options: &SetOptions) -> Result<Vec<bool>> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        for (key, value) in entries {
            self.check_key(key)?;
            self.check_value(value)?;
        }
        self.check_tags(options)?;
        let ttl = self.resolve(options.expiry)?;
        let tagged = !options.tags.is_empty();
        let stored: Vec<Vec<u8>> = entries.iter().map(|(key, _)| self.data_key(key)).collect();
        let mut pipelines = Vec::new();
        for group in self.groups(&stored) {
            let mut pipe = redis::pipe();
            if !tagged {
                let keys = group.iter().map(|&i| entries[i].0);
                self.push_record_unlink(&mut pipe, keys, options.condition);
            }
            for &i in &group {
                let (key, value) = &entries[i];
                if tagged {
                    let mut invocation = scripts::SET_TAGGED.prepare_invoke();
                    self.tagged_set_invocation(&mut invocation, key, value, ttl, options);
                    pipe.invoke_script(&invocation);
                } else {
                    self.push_plain_set(&mut pipe, key, value, ttl, options.condition);
                }
            }
            pipelines.push((group, pipe));
        }
        let mut jobs = Vec::with_capacity(pipelines.len());
        for (group, pipe) in pipelines {
            jobs.push(async move {
                let answers = self.send_pipeline("set_many", &pipe, tagged).await?;
                Ok::<_, Error>((group, answers))
            });
        }
        let answers = futures_util::future::try_join_all(jobs).await?;
        let mut written = vec![false; entries.len()];
        for (group, answers) in answers {
            for (i, answer) in group.into_iter().zip(answers) {
                written[i] = match answer {
                    Value::Nil => false,
                    Value::Int(n) => n == 1,
                    _ => true,
                };
            }
        }
        if tagged && self.is_cluster() {
            let mut slots: Vec<u16> = stored
                .iter()
                .zip(&written)
                .filter(|(_, written)| **written)
                .map(|(key, _)| cluster::hash_slot(key))
                .collect();
            slots.sort_unstable();
            slots.dedup();
            self.index_tags("set_many", &options.tags, &slots, ttl)
                .await?;
        }
        Ok(written)
    }

    async fn delete_many(&self, keys: &[&str]) -> Result<u64> {
        for key in keys {
            self.check_key(key)?;
        }
        let stored: Vec<Vec<u8>> = keys.iter().map(|key| self.data_key(key)).collect();
        let mut pipelines = Vec::new();
        for group in self.groups(&stored) {
            for chunk in group.chunks(BATCH) {
                let mut pipe = redis::pipe();
                pipe.cmd("UNLINK");
                for &i in chunk {
                    pipe.arg(&stored[i]);
                }
                pipe.cmd("UNLINK");
                for &i in chunk {
                    pipe.arg(self.record_key(keys[i]));
                }
                pipe.ignore();
                pipelines.push(pipe);
            }
        }
        let mut jobs = Vec::with_capacity(pipelines.len());
        for pipe in pipelines {
            let mut conn = self.conn();
            jobs.push(async move {
                let (count,): (u64,) = pipe.query_async(&mut conn).await?;
                Ok(count)
            });
        }
        let removed: u64 = self.run("delete_many", all(jobs)).await?.into_iter().sum();
        self.inner.deletes.fetch_add(removed, Ordering::Relaxed);
        Ok(removed)
    }

    async fn incr(&self, key: &str, delta: i64, expiry: Expiry) -> Result<i64> {
        self.check_key(key)?;
        let ttl = self.resolve(expiry)?;
        let mut conn = self.conn();
        let mut invocation = scripts::INCR.prepare_invoke();
        invocation
            .key(self.data_key(key))
            .arg(delta)
            .arg(ttl_arg(ttl));
        let value: Option<Vec<u8>> = self
            .run(
                "incr",
                async move { invocation.invoke_async(&mut conn).await },
            )
            .await?;
        let Some(value) = value else {
            // The script reads the counter right after INCRBY, in the same
            // atomic step; no reply means the script did not run as sent.
            return Err(Error::new(
                ErrorKind::Backend,
                NAME,
                "the incr script returned no value",
            )
            .with_operation("incr"));
        };
        parse_counter(NAME, &value).map_err(|err| err.with_operation("incr"))
    }

    async fn decr(&self, key: &str, delta: i64, expiry: Expiry) -> Result<i64> {
        let negated = delta.checked_neg().ok_or_else(|| {
            Error::new(
                ErrorKind::Overflow,
                NAME,
                "decr by i64::MIN cannot be expressed as an incr",
            )
            .with_operation("decr")
        })?;
        self.incr(key, negated, expiry).await
    }

    async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        self.check_key(key)?;
        let mut conn = self.conn();
        let key = self.data_key(key);
        let millis: i64 = self
            .run_request("ttl", async move {
                redis::cmd("PTTL").arg(key).query_async(&mut conn).await
            })
            .await?;
        Ok(match millis {
            -1 => KeyTtl::Persistent,
            // -2 (missing); nothing else is negative.
            m if m < 0 => KeyTtl::Missing,
            m => KeyTtl::ExpiresIn(Duration::from_millis(m.unsigned_abs())),
        })
    }

    async fn touch(&self, key: &str, expiry: Expiry) -> Result<bool> {
        self.check_key(key)?;
        let ttl = self.resolve(expiry)?;
        let mut conn = self.conn();
        let mut invocation = scripts::TOUCH.prepare_invoke();
        invocation
            .key(self.data_key(key))
            .key(self.record_key(key))
            .arg(ttl_arg(ttl))
            .arg(self.tag_prefix(key));
        let touched: i64 = self
            .run(
                "touch",
                async move { invocation.invoke_async(&mut conn).await },
            )
            .await?;
        if touched == 1 && self.is_cluster() {
            // The tags' slot indexes must live as long as the entry.
            let mut conn = self.conn();
            let record = self.record_key(key);
            let tags: Vec<String> = self
                .run("touch", async move {
                    redis::cmd("SMEMBERS")
                        .arg(record)
                        .query_async(&mut conn)
                        .await
                })
                .await?;
            let slots: Vec<u16> = self.slot_of(key).into_iter().collect();
            self.index_tags("touch", &tags, &slots, ttl).await?;
        }
        Ok(touched == 1)
    }

    async fn clear(&self) -> Result<()> {
        let mut pattern = glob::escape(&self.inner.prefix).into_bytes();
        pattern.push(b'*');
        for node in self.scan_targets("clear").await? {
            let mut cursor = 0;
            loop {
                let (next, found) = self
                    .scan_raw("clear", node.as_ref(), cursor, &pattern)
                    .await?;
                if !found.is_empty() {
                    self.unlink("clear", &found).await?;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(())
    }

    async fn keys(&self, pattern: &str) -> Result<KeyStream> {
        let mut full = glob::escape(&self.inner.prefix).into_bytes();
        full.extend_from_slice(pattern.as_bytes());
        let mut nodes = self.scan_targets("keys").await?;
        // The first page is read now, so that a dead server fails the call
        // rather than the stream.
        let first_node = nodes.remove(0);
        let (next, first) = self.scan_page(first_node.as_ref(), 0, &full).await?;
        let this = self.clone();
        // (node, cursor): the page to read next; cursor 0 means this node is
        // done, so the next node starts.
        let mut queue = std::collections::VecDeque::from(nodes);
        let pages = stream::unfold(
            Some((first_node, next)),
            move |state: Option<(Option<Node>, u64)>| {
                let this = this.clone();
                let full = full.clone();
                // The next page: this node's, or the next node's first.
                let next = state.and_then(|(node, cursor)| match cursor {
                    0 => queue.pop_front().map(|node| (node, 0)),
                    _ => Some((node, cursor)),
                });
                async move {
                    let (node, cursor) = next?;
                    match this.scan_page(node.as_ref(), cursor, &full).await {
                        Ok((next, keys)) => Some((
                            stream::iter(keys.into_iter().map(Ok)).left_stream(),
                            Some((node, next)),
                        )),
                        Err(err) => Some((stream::iter([Err(err)]).right_stream(), None)),
                    }
                }
            },
        )
        .flatten();
        Ok(stream::iter(first.into_iter().map(Ok)).chain(pages).boxed())
    }

    async fn invalidate_tags(&self, tags: &[&str]) -> Result<u64> {
        self.tags_on("invalidate_tags")?;
        if tags.is_empty() {
            return Ok(0);
        }
        let mut unique: Vec<&str> = tags.to_vec();
        unique.sort_unstable();
        unique.dedup();
        // Standalone: one script over every tag. Cluster: the slots each
        // tag's index names (taken out of the index first, see the module
        // docs), then one script per slot over the tags found there.
        let mut by_slot: std::collections::BTreeMap<Option<u16>, Vec<&str>> = Default::default();
        if self.is_cluster() {
            let mut jobs = Vec::with_capacity(unique.len());
            for tag in &unique {
                let index = self.internal_key("i", tag);
                let mut conn = self.conn();
                jobs.push(async move {
                    let slots: Vec<u16> = redis::cmd("SMEMBERS")
                        .arg(&index)
                        .query_async(&mut conn)
                        .await?;
                    if !slots.is_empty() {
                        redis::cmd("SREM")
                            .arg(&index)
                            .arg(&slots)
                            .query_async::<()>(&mut conn)
                            .await?;
                    }
                    Ok(slots)
                });
            }
            let found = self.run("invalidate_tags", all(jobs)).await?;
            let found = unique.iter().copied().zip(found);
            for (tag, slots) in found {
                for slot in slots {
                    by_slot.entry(Some(slot)).or_default().push(tag);
                }
            }
        } else {
            by_slot.insert(None, unique);
        }
        let mut jobs = Vec::with_capacity(by_slot.len());
        for (slot, tags) in by_slot {
            let tag_prefix = self.slot_prefix("t", slot);
            let mut invocation = scripts::INVALIDATE_TAGS.prepare_invoke();
            for tag in &tags {
                let mut key = tag_prefix.clone();
                key.extend_from_slice(tag.as_bytes());
                invocation.key(key);
            }
            invocation
                .arg(self.inner.prefix.as_bytes())
                .arg(self.slot_prefix("k", slot))
                .arg(tag_prefix);
            for tag in &tags {
                invocation.arg(*tag);
            }
            let mut conn = self.conn();
            jobs.push(async move { invocation.invoke_async::<u64>(&mut conn).await });
        }
        let removed: u64 = self
            .run("invalidate_tags", all(jobs))
            .await?
            .into_iter()
            .sum();
        self.inner
            .invalidations
            .fetch_add(removed, Ordering::Relaxed);
        Ok(removed)
    }

    async fn stats(&self) -> Result<Stats> {
        let reads = self.inner.reads.totals();
        let mut stats = Stats {
            hits: reads.0,
            misses: reads.1,
            deletes: self.inner.deletes.load(Ordering::Relaxed),
            invalidations: self.inner.invalidations.load(Ordering::Relaxed),
            ..Stats::default()
        };
        let mut conn = self.conn();
        let keys = if self.is_cluster() {
            // The sum over the masters (redis-rs adds up their answers).
            self.run("stats", async move {
                redis::cmd("DBSIZE").query_async::<u64>(&mut conn).await
            })
            .await?
        } else {
            let info: String = self
                .run("stats", async move {
                    redis::cmd("INFO")
                        .arg("keyspace")
                        .query_async(&mut conn)
                        .await
                })
                .await?;
            let db = format!(
                "db{}:",
                redis::aio::ConnectionLike::get_db(&self.inner.conn)
            );
            info.lines()
                .find_map(|line| line.strip_prefix(db.as_str()))
                .and_then(|rest| rest.split(',').find_map(|f| f.strip_prefix("keys=")))
                .and_then(|n| n.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        stats.details.push(("db_keys".to_owned(), keys));
        Ok(stats)
    }

    async fn health(&self) -> Result<()> {
        let mut conn = self.conn();
        self.run("health", async move {
            redis::cmd("PING").query_async::<()>(&mut conn).await
        })
        .await
    }
}
