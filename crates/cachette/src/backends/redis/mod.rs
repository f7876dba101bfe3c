//! The Redis backend: standalone Redis over an auto-reconnecting
//! connection, with TLS (rustls) and ACL logins, a Redis Cluster, or the
//! master of a group watched by Redis Sentinel.
//!
//! - **URLs:** `redis://[user[:password]@]host[:port][/db][?params]`,
//!   `rediss://...` (TLS) and `redis+unix:///path/to/redis.sock[?db=N&...]`.
//!   Parameters: `prefix`, `connect_timeout`, `response_timeout` (each at
//!   most a day), `default_ttl` (at most about a hundred years; a TTL under
//!   a millisecond is sent as 1 ms), `tags` (`false` turns tags off, see
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
//!   `SET .. PX [NX|XX]`; `delete_many` one script per batch of 512 keys
//!   (values, tag records and memberships); `incr`
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
//!   lives at least as long as its longest-lived key. `delete` and an
//!   untagged overwrite (a script in the same pipeline) take the key out of
//!   its tag sets with its record. Expiry cannot do that, so every tagged
//!   write also checks a few random members of each of its tag sets and
//!   removes those whose record no longer names the tag: stale names stay
//!   a small share of a set. `invalidate_tags` renames each tag set to a
//!   drain `{prefix}\xFFd:{tag}` (writes after that start a new set), then
//!   walks the drain in steps of a hundred members (`SSCAN`, one short
//!   script each), removing the entries whose record still names the tag:
//!   the server never runs one long script, however large the tag. A drain
//!   left by a failed invalidation is walked by the next one.
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
//! - **Limits:** key names up to [`MAX_KEY_LEN`] (4096) bytes, the prefix
//!   included; values up to 512 MiB (Redis' limit). Any UTF-8 is a valid
//!   key (Redis is binary-safe).
//!
//!   The rule, the same as for the `Prefixed` layer:
//!   [`Capabilities::max_key_len`] is the limit on the key the **caller**
//!   passes. The prefix the backend adds is its own business, so it
//!   reports and checks what the prefix leaves, `4096 - prefix.len()`
//!   bytes (`prefix=app:` gives 4092); a prefix that leaves nothing is a
//!   [`Config`](ErrorKind::Config) error at build time. The internal keys
//!   of the tag index add a few bytes more, which Redis' own limit of
//!   512 MiB leaves room for.
//! - **Stats:** hits, misses, deletes and invalidations counted by this
//!   client; `details` has the server's figures: `db_keys` (the keys of the
//!   database, every prefix: `INFO keyspace`, or `DBSIZE` summed over the
//!   masters of a cluster) and, outside cluster mode,
//!   `server_used_memory` (bytes, `INFO memory`), `server_keyspace_hits`,
//!   `server_keyspace_misses`, `server_evicted_keys` and
//!   `server_expired_keys` (`INFO stats`: the whole server, every client);
//!   none when the ACL user may not run them (`INFO` is in `@dangerous`).
//! - **Needs:** a tokio runtime (with I/O and time enabled): building the
//!   backend or calling it from a plain thread or another executor is an
//!   [`ErrorKind::Unsupported`] error, never a panic. Redis 6+ for ACL users; the scripts touch keys they do not
//!   declare, which standalone Redis allows, and so does Redis Cluster
//!   (7.0 tested) since those keys are in the declared keys' slot.

mod builder;
mod cluster;
mod keys;
mod request;
mod scan;
mod scripts;
mod sentinel;
mod tags;
pub(crate) mod url;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use redis::Value;

use crate::backend::{
    Backend, Capabilities, Expiry, KeyStream, KeyTtl, SetOptions, Stats, parse_counter,
};
use crate::backends::common::{BASE_CAPABILITIES, Counters, Event, Limits};
use crate::error::{Error, ErrorKind, Result};

pub use builder::RedisBuilder;
pub use cluster::hash_slot;

use cluster::Conn;
use request::map_error;
use request::{all, ttl_arg};

pub(crate) const NAME: &str = "redis";

/// The longest key name this backend stores, in bytes, the prefix
/// included: a caller's key may take what the prefix leaves
/// (`MAX_KEY_LEN - prefix.len()`, which [`Capabilities::max_key_len`]
/// reports).
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
    /// The key limit is what the prefix leaves of [`MAX_KEY_LEN`].
    limits: Limits,
    deadline: Duration,
    address: String,
    /// Whether tags are kept ([`RedisBuilder::tags`]).
    tags: bool,
    /// Hits and misses, striped: every read counts one.
    reads: crate::backends::read_counters::ReadCounters,
    /// Deletes and invalidations.
    counters: Counters,
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
            limits: Limits {
                backend: NAME,
                max_key_len: MAX_KEY_LEN.saturating_sub(prefix.len()),
                max_value_len: Some(MAX_VALUE_LEN),
                default_ttl,
            },
            conn,
            prefix,
            deadline,
            address,
            tags,
            reads: crate::backends::read_counters::ReadCounters::default(),
            counters: Counters::default(),
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
            .field("default_ttl", &self.inner.limits.default_ttl)
            .field("deadline", &self.inner.deadline)
            .finish_non_exhaustive()
    }
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

    /// What a Redis backend without a prefix guarantees (a prefix lowers
    /// `max_key_len` by its length).
    pub fn default_capabilities() -> Capabilities {
        Capabilities {
            shared: true,
            max_key_len: MAX_KEY_LEN,
            max_value_len: Some(MAX_VALUE_LEN),
            ..BASE_CAPABILITIES
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

    fn limits(&self) -> &Limits {
        &self.inner.limits
    }
}

#[async_trait]
impl Backend for RedisBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            tags: self.inner.tags,
            ..self.limits().advertise(Self::default_capabilities())
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.limits().check_key(key)?;
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
        self.limits().check_key(key)?;
        self.limits().check_value(&value)?;
        self.check_tags(options)?;
        let ttl = self.limits().ttl(options.expiry)?;
        let mut conn = self.conn();
        if options.tags.is_empty() {
            let mut pipe = redis::pipe();
            self.push_record_drop(&mut pipe, [key], options.condition);
            self.push_plain_set(&mut pipe, key, &value, ttl, options.condition);
            let answers = self.send_pipeline("set", &pipe).await?;
            Ok(!matches!(answers.first(), Some(Value::Nil) | None))
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
        self.limits().check_key(key)?;
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
        self.limits().check_keys(keys)?;
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
        self.limits().check_entries(entries)?;
        self.check_tags(options)?;
        let ttl = self.limits().ttl(options.expiry)?;
        let tagged = !options.tags.is_empty();
        let stored: Vec<Vec<u8>> = entries.iter().map(|(key, _)| self.data_key(key)).collect();
        let mut pipelines = Vec::new();
        for group in self.groups(&stored) {
            let mut pipe = redis::pipe();
            if !tagged {
                let keys = group.iter().map(|&i| entries[i].0);
                self.push_record_drop(&mut pipe, keys, options.condition);
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
                let answers = self.send_pipeline("set_many", &pipe).await?;
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
        self.limits().check_keys(keys)?;
        let stored: Vec<Vec<u8>> = keys.iter().map(|key| self.data_key(key)).collect();
        // Each batch (of one slot) in one script: the values, the tag
        // records and the memberships in the tag sets go together.
        let mut jobs = Vec::new();
        for group in self.groups(&stored) {
            for chunk in group.chunks(BATCH) {
                let chunk: Vec<&str> = chunk.iter().map(|&i| keys[i]).collect();
                let invocation = self.drop_entries(&chunk, true);
                let mut conn = self.conn();
                jobs.push(async move { invocation.invoke_async::<u64>(&mut conn).await });
            }
        }
        let removed: u64 = self.run("delete_many", all(jobs)).await?.into_iter().sum();
        self.inner.counters.add(Event::Delete, removed);
        Ok(removed)
    }

    async fn incr(&self, key: &str, delta: i64, expiry: Expiry) -> Result<i64> {
        self.limits().check_key(key)?;
        let ttl = self.limits().ttl(expiry)?;
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
        self.limits().check_key(key)?;
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
        self.limits().check_key(key)?;
        let ttl = self.limits().ttl(expiry)?;
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
        self.clear_prefix().await
    }

    async fn keys(&self, pattern: &str) -> Result<KeyStream> {
        self.key_stream(pattern).await
    }

    async fn invalidate_tags(&self, tags: &[&str]) -> Result<u64> {
        self.tags_on("invalidate_tags")?;
        let removed = self.invalidate(tags).await?;
        self.inner.counters.add(Event::Invalidation, removed);
        Ok(removed)
    }

    async fn stats(&self) -> Result<Stats> {
        let mut stats = Stats::default();
        self.inner.counters.fill(&mut stats);
        (stats.hits, stats.misses) = self.inner.reads.totals();
        stats.details = self.server_figures().await?;
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
