//! The Memcached backend: one or several memcached servers (≥ 1.6) over
//! the meta protocol, keys spread by consistent hashing.
//!
//! - **URLs:** `memcached://host1[:port],host2[:port],…[/]?params` (port
//!   11211 by default), `memcached+tls://…` (TLS to every server, checked
//!   against the system's roots and `ca_cert=/path/ca.pem`; memcached
//!   started with `-Z`) and `memcached+unix:///path/to/memcached.sock?params`.
//!   Parameters: `prefix`, `connect_timeout`, `response_timeout` (1 s each
//!   by default, at most a day), `retry_interval` (1 s), `pool_size`
//!   (connections per server, 2), `default_ttl`, `hash` (`ketama`, the
//!   default, or `rendezvous`) and `failover` (`error`, the default, or
//!   `next`).
//! - **Connections:** a few connections per server, each shared by every
//!   caller (requests are pipelined, answers matched in order), with the
//!   deadlines kept inside the connection: every round trip ends within
//!   `connect_timeout + response_timeout`. A server that cannot be reached
//!   fails the operations on its keys at once with
//!   [`ErrorKind::Connection`] (or [`ErrorKind::Timeout`] when it stops
//!   answering) and is reconnected in the background every
//!   `retry_interval`; the other servers keep serving. A server that stops
//!   answering, or closes connections before answering (one at its
//!   connection limit), counts as down too. Replies no command asked for,
//!   or that cannot be read, end the connection (never the process, never
//!   unbounded memory) and fail the operations waiting on it.
//! - **Stats:** hits, misses, deletes and corrupt reads are counted here;
//!   memcached cannot tell a write that creates an entry from one that
//!   replaces it, so writes are counted in `details` as `writes` (with the
//!   servers' `curr_items`, `bytes`, `evictions`, `expired_unfetched`
//!   summed over the reachable servers).
//! - **Several servers:** a key goes to one server, chosen by
//!   libmemcached's ketama ring (MD5, 160 points per server) or pymemcache's
//!   rendezvous hash, computed exactly as those clients do on `prefix +
//!   key`. Adding or removing one of `n` servers moves about `1/n` of the
//!   keys. With `failover=next`, the keys of a server that is down go to
//!   the next server of the ring (clockwise on ketama, the next best score
//!   on rendezvous) until it is back; when it returns, what was written
//!   meanwhile is on the other server and the returning one may serve the
//!   value it held before, so `next` suits caches that tolerate a stale
//!   read after a failure, and `error` (the default) those that do not.
//! - **Namespace and `clear`:** every server holds a *generation* for the
//!   prefix (`{prefix}\xFFg`, a random 64-bit number); an entry is stored
//!   at `{prefix}{generation}:{key}`. Every operation reads the generation
//!   in the same round trip as its own command and starts again in the
//!   rare case it changed. `clear` gives each server a new random
//!   generation: this prefix's entries become unreachable at once (and are
//!   evicted by memcached in time), other prefixes are untouched, and
//!   `flush_all` is never sent ([`MemcachedBackend::flush_servers`] is the
//!   separate, explicit operation). A generation lost to eviction is
//!   replaced by a new random one, which reads as a `clear`, never as old
//!   entries coming back.
//! - **Tags, exactly:** each tag has a version on every server
//!   (`{prefix}\xFFt:{tag}`, random). A tagged entry stores the versions
//!   its tags had on its server when it was written; a read whose tag
//!   versions moved, or whose tag version is gone (evicted), is a miss and
//!   deletes the entry. `invalidate_tags` writes new versions: its cost
//!   grows with the number of tags and servers, not of entries, so it
//!   cannot count the entries it removes and returns 0
//!   ([`Capabilities::counts_invalidations`] is false). A tagged read costs
//!   a second round trip (the tag versions).
//! - **Keys:** memcached takes keys of at most 250 bytes without spaces or
//!   control characters. Such keys are sent as they are; any other key is
//!   sent base64-encoded (the `b` flag) when that fits, otherwise replaced
//!   by the byte `0xFF` (never in a caller's UTF-8 key), `h:` and the
//!   SHA-256 digest of the key, with the key itself kept in the stored item
//!   and compared on every read. An entry holds at most 65,535 tags of at
//!   most 65,535 bytes each. No key is refused below the
//!   4 KiB limit of every backend, none is truncated.
//! - **Values and TTLs:** values up to the server's item size (1 MiB by
//!   default, `-I`) less room for the key and header; a larger item is
//!   [`ErrorKind::InvalidInput`]. memcached keeps whole seconds
//!   ([`TtlPrecision::Seconds`]): TTLs round up to the next second (a
//!   server's clock ticks per second, so an entry may go up to a second
//!   early); TTLs over 30 days are sent as absolute Unix times, as the
//!   protocol requires; a deadline after 2038-01-19 03:14:07 UTC, which
//!   memcached cannot store, is [`ErrorKind::InvalidInput`].
//! - **Counters:** memcached's own counters are unsigned and wrap, so
//!   `incr` is a compare-and-swap loop that follows the rules of every
//!   backend (signed `i64`, [`ErrorKind::NotAnInteger`],
//!   [`ErrorKind::Overflow`], the deadline kept): a read with the item's
//!   CAS, then `ma` with that CAS where the stored number keeps its length,
//!   otherwise `ms` with that CAS (the deadline then kept to the second).
//! - **Leases:** [`Backend::lease`] is `mg … N<ttl> R<30 days>`: a
//!   missing key becomes an empty placeholder (read as a miss) whose first
//!   reader wins; an item stored with an expiry gives the refresh to its
//!   first reader; the others are told [`Lease::Held`] until the key is
//!   written. [`Backend::release_lease`] (`md … C<cas> I`) hands an unused
//!   lease to the next reader. A key stored without expiry has no lease.
//!   The typed front end's distributed lock uses them.
//! - **`keys`:** `lru_crawler metadump hash` on every server, the listed
//!   keys of this prefix's generation read back to drop invalid entries.
//!   Best-effort, as on any cache that evicts: a key written or evicted
//!   during the walk may be missed or listed. A server started with `-X`
//!   or `-o no_lru_crawler` makes it [`ErrorKind::Unsupported`].

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::future::join_all;

use super::common::{BASE_CAPABILITIES, Counters, Event, Limits, back_off, now_ms};
use crate::backend::{
    Backend, Capabilities, Expiry, KeyStream, KeyTtl, Lease, LeaseToken, SetCondition, SetOptions,
    Stats, TtlPrecision, parse_counter,
};
use crate::error::{Error, ErrorKind, Result};

mod builder;
mod conn;
pub(crate) mod entry;
pub(crate) mod keys;
mod listing;
pub(crate) mod proto;
pub(crate) mod ring;
pub(crate) mod url;

#[cfg(all(test, feature = "testing"))]
mod tests;

pub use builder::{Failover, HashKind, MAX_PREFIX_LEN, MemcachedBuilder};

use conn::Server;
use entry::{BARE, Entry, NotEntry};
use keys::ServerKey;
use proto::{Meta, Response, Status};
use ring::Ring;

/// The backend's name in errors, logs and metrics.
pub(crate) const NAME: &str = "memcached";

/// The longest relative TTL memcached takes, in seconds (30 days); longer
/// ones are sent as absolute Unix times.
const MAX_RELATIVE_TTL: u64 = 30 * 24 * 3600;

/// The latest absolute time memcached can store (a signed 32-bit Unix
/// time: 2038-01-19 03:14:07 UTC).
const MAX_ABSOLUTE_TIME: u64 = i32::MAX as u64;

/// How often an operation starts again when the generation moved or a
/// compare-and-swap lost, before it gives up.
const MAX_ATTEMPTS: usize = 64;

/// A backend over one or several memcached servers. Build it with
/// [`MemcachedBackend::builder`] or from a `memcached://` URL.
#[derive(Clone)]
pub struct MemcachedBackend {
    inner: Arc<Inner>,
}

struct Inner {
    servers: Vec<Server>,
    ring: Ring,
    failover: Failover,
    prefix: String,
    /// The key of the prefix's generation (`{prefix}\xFFg`), read by
    /// every operation: built once.
    generation_key: ServerKey,
    limits: Limits,
    /// The last generation seen on each server; 0 before the first.
    generations: Vec<AtomicU64>,
    counters: Counters,
}

impl fmt::Debug for MemcachedBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemcachedBackend")
            .field("servers", &self.inner.servers)
            .field("prefix", &self.inner.prefix)
            .field("failover", &self.inner.failover)
            .finish_non_exhaustive()
    }
}

/// An item as read: what it holds and its CAS, or why it is no entry.
enum Read {
    Missing,
    /// Present on the server but not an entry of this key (a placeholder,
    /// another key's digest slot, corrupt or invalidated): the CAS lets a
    /// conditional write replace it.
    Invalid {
        cas: u64,
    },
    Valid {
        entry: Entry,
        meta: Meta,
    },
}

impl MemcachedBackend {
    /// A builder for servers given as `(host, port)`.
    pub fn builder<I, S>(servers: I) -> MemcachedBuilder
    where
        I: IntoIterator<Item = (S, u16)>,
        S: Into<String>,
    {
        MemcachedBuilder::new(servers)
    }

    /// What a Memcached backend guarantees.
    pub fn default_capabilities() -> Capabilities {
        Capabilities {
            ttl_precision: TtlPrecision::Seconds,
            shared: true,
            counts_invalidations: false,
            max_value_len: Some(builder::DEFAULT_MAX_VALUE_LEN),
            ..BASE_CAPABILITIES
        }
    }

    /// The key prefix of this backend.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The servers, as `host:port` (or `unix:/path`), in the order given.
    pub fn servers(&self) -> Vec<String> {
        self.inner
            .servers
            .iter()
            .map(|server| server.address.to_string())
            .collect()
    }

    /// The index (in [`servers`](Self::servers)) of the server that holds
    /// `key` when every server is up.
    pub fn server_of(&self, key: &str) -> usize {
        self.inner.ring.server(&self.route(key))
    }

    /// Removes **every item of every server**, this prefix or not
    /// (`flush_all`). [`Backend::clear`] removes this prefix's entries
    /// only; this is the separate, explicit operation.
    pub async fn flush_servers(&self) -> Result<()> {
        let outcomes = join_all(self.inner.servers.iter().map(|server| async move {
            listing::text_command(server, "flush_all", |line| line == "OK").await
        }))
        .await;
        for outcome in outcomes {
            outcome.map_err(|err| err.with_operation("flush_servers"))?;
        }
        Ok(())
    }

    fn route(&self, key: &str) -> Vec<u8> {
        let mut route = Vec::with_capacity(self.inner.prefix.len() + key.len());
        route.extend_from_slice(self.inner.prefix.as_bytes());
        route.extend_from_slice(key.as_bytes());
        route
    }

    /// The server of `key`: its own, or with `failover=next` the next one
    /// up on the ring.
    fn server_for(&self, key: &str) -> usize {
        let route = self.route(key);
        match self.inner.failover {
            Failover::Error => self.inner.ring.server(&route),
            Failover::Next => {
                let servers = &self.inner.servers;
                self.inner
                    .ring
                    .server_among(&route, &|index| servers[index].is_up())
                    .unwrap_or_else(|| self.inner.ring.server(&route))
            }
        }
    }

    fn namespace(&self, generation: u64) -> String {
        format!("{}{generation:016x}:", self.inner.prefix)
    }

    fn generation_key(&self) -> &ServerKey {
        &self.inner.generation_key
    }

    /// The key of a prefix's generation.
    pub(crate) fn generation_key_of(prefix: &str) -> ServerKey {
        ServerKey::new("", &format!("{prefix}\u{FF}g"))
    }

    fn tag_key(&self, tag: &str) -> ServerKey {
        ServerKey::new("", &format!("{}\u{FF}t:{tag}", self.inner.prefix))
    }

    /// Sends `build`'s commands to server `s` behind a read of the
    /// generation, in one round trip; starts again (rebuilding the
    /// commands) while the generation used was not the server's. `build`
    /// writes its commands for a namespace and returns how many; the
    /// answer is that namespace and the commands' responses.
    async fn on_server(
        &self,
        s: usize,
        operation: &'static str,
        build: impl Fn(&str, &mut Vec<u8>) -> usize,
    ) -> Result<(String, Vec<Response>)> {
        let server = &self.inner.servers[s];
        let generation_key = self.generation_key();
        let mut generation = self.inner.generations[s].load(Ordering::Relaxed);
        for _ in 0..MAX_ATTEMPTS {
            if generation == 0 {
                generation = self.fetch_generation(s, operation).await?;
            }
            let mut commands = Vec::with_capacity(256);
            proto::meta_get(&mut commands, generation_key.wire(), "v");
            let namespace = self.namespace(generation);
            let count = build(&namespace, &mut commands);
            let mut responses = server
                .call(commands, count + 1)
                .await
                .map_err(|err| err.with_operation(operation))?;
            let seen = match &responses[0] {
                Response::Meta(meta) if meta.status == Some(Status::Value) => {
                    parse_generation(meta.value.as_deref().unwrap_or_default())
                }
                Response::Meta(_) => None,
                Response::Error(line) => return Err(server_error(line, operation)),
            };
            if seen == Some(generation) {
                responses.remove(0);
                return Ok((namespace, responses));
            }
            self.inner.generations[s].store(0, Ordering::Relaxed);
            generation = seen.unwrap_or(0);
            if generation != 0 {
                self.inner.generations[s].store(generation, Ordering::Relaxed);
            }
        }
        Err(Error::new(
            ErrorKind::Backend,
            NAME,
            "the prefix's generation kept changing (a `clear` in a loop?)",
        )
        .with_operation(operation))
    }

    /// Reads server `s`'s generation, creating it when missing (and
    /// replacing one that cannot be read).
    async fn fetch_generation(&self, s: usize, operation: &'static str) -> Result<u64> {
        let server = &self.inner.servers[s];
        let key = self.generation_key();
        for attempt in 0..2 {
            let mut commands = Vec::new();
            let fresh = random_version();
            // Create it if absent (or replace an unreadable one on the
            // second attempt), then read what the server holds.
            let mode = if attempt == 0 { "T0 ME" } else { "T0" };
            proto::meta_set(
                &mut commands,
                key.wire(),
                format!("{fresh:016x}").as_bytes(),
                mode,
            );
            proto::meta_get(&mut commands, key.wire(), "v");
            let responses = server
                .call(commands, 2)
                .await
                .map_err(|err| err.with_operation(operation))?;
            let read = meta_of(&responses[1], operation)?;
            if let Some(generation) = read
                .value
                .as_deref()
                .and_then(parse_generation)
                .filter(|&generation| generation != 0)
            {
                self.inner.generations[s].store(generation, Ordering::Relaxed);
                return Ok(generation);
            }
        }
        Err(Error::new(
            ErrorKind::Backend,
            NAME,
            format!(
                "{}: the generation of the prefix cannot be stored",
                server.address
            ),
        )
        .with_operation(operation))
    }

    /// The current versions of `tags` on server `s`, creating those that
    /// are missing (for a write).
    async fn tag_versions_for_write(
        &self,
        s: usize,
        tags: &[&str],
        operation: &'static str,
    ) -> Result<Vec<(String, u64)>> {
        if tags.is_empty() {
            return Ok(Vec::new());
        }
        let mut commands = Vec::new();
        for tag in tags {
            let key = self.tag_key(tag);
            let fresh = format!("{:016x}", random_version());
            proto::meta_set(&mut commands, key.wire(), fresh.as_bytes(), "T0 ME");
            proto::meta_get(&mut commands, key.wire(), "v");
        }
        let responses = self.inner.servers[s]
            .call(commands, tags.len() * 2)
            .await
            .map_err(|err| err.with_operation(operation))?;
        let mut versions = Vec::with_capacity(tags.len());
        for (tag, pair) in tags.iter().zip(responses.chunks(2)) {
            let read = meta_of(&pair[1], operation)?;
            // Evicted between the two commands: a version no read matches.
            let version = read.value.as_deref().and_then(parse_generation);
            versions.push(((*tag).to_owned(), version.unwrap_or(0)));
        }
        Ok(versions)
    }

    /// The current versions of `tags` on server `s` (`None`: gone).
    async fn current_tag_versions(
        &self,
        s: usize,
        tags: &[&str],
        operation: &'static str,
    ) -> Result<HashMap<String, Option<u64>>> {
        let mut commands = Vec::new();
        for tag in tags {
            proto::meta_get(&mut commands, self.tag_key(tag).wire(), "v");
        }
        let responses = self.inner.servers[s]
            .call(commands, tags.len())
            .await
            .map_err(|err| err.with_operation(operation))?;
        let mut versions = HashMap::with_capacity(tags.len());
        for (tag, response) in tags.iter().zip(&responses) {
            let read = meta_of(response, operation)?;
            let version = read.value.as_deref().and_then(parse_generation);
            versions.insert((*tag).to_owned(), version);
        }
        Ok(versions)
    }

    /// Interprets a `mg … v f c t` answer for `key` (without checking tags).
    fn interpret(
        &self,
        key: &str,
        stored: &ServerKey,
        response: &Response,
        op: &'static str,
    ) -> Result<Read> {
        let meta = meta_of(response, op)?;
        if meta.status != Some(Status::Value) {
            return Ok(Read::Missing);
        }
        let cas = meta.cas.unwrap_or(0);
        let flags = meta.client_flags.unwrap_or(0);
        let data = meta.value.clone().unwrap_or_default();
        match entry::decode(flags, data) {
            Ok(entry) => {
                let owner_matches = match (&entry.key, stored.hashed) {
                    (Some(original), true) => original == key,
                    (None, false) => true,
                    _ => false,
                };
                if owner_matches {
                    Ok(Read::Valid {
                        entry,
                        meta: meta.clone(),
                    })
                } else {
                    Ok(Read::Invalid { cas })
                }
            }
            Err(NotEntry::Foreign) => Ok(Read::Invalid { cas }),
            Err(NotEntry::Corrupt) => {
                self.inner.counters.bump(Event::Corrupt);
                Ok(Read::Invalid { cas })
            }
        }
    }

    /// Checks the tags of the valid reads of server `s` in one round trip;
    /// a read whose tags moved becomes invalid and is deleted.
    async fn check_tags(
        &self,
        s: usize,
        reads: &mut [(String, ServerKey, Read)],
        op: &'static str,
    ) -> Result<()> {
        let tags: Vec<&str> = {
            let mut seen = HashSet::new();
            reads
                .iter()
                .filter_map(|(_, _, read)| match read {
                    Read::Valid { entry, .. } => Some(entry.tags.iter()),
                    _ => None,
                })
                .flatten()
                .map(|(tag, _)| tag.as_str())
                .filter(|tag| seen.insert(*tag))
                .collect()
        };
        if tags.is_empty() {
            return Ok(());
        }
        let current = self.current_tag_versions(s, &tags, op).await?;
        let mut stale = Vec::new();
        for (_, stored, read) in reads.iter_mut() {
            if let Read::Valid { entry, meta } = read {
                let valid = entry
                    .tags
                    .iter()
                    .all(|(tag, version)| current.get(tag) == Some(&Some(*version)));
                if !valid {
                    let cas = meta.cas.unwrap_or(0);
                    stale.push((stored.clone(), cas));
                    *read = Read::Invalid { cas };
                }
            }
        }
        if !stale.is_empty() {
            // Drop the invalidated items unless rewritten meanwhile; a
            // failure here changes no answer.
            let mut commands = Vec::new();
            for (stored, cas) in &stale {
                proto::meta_delete(&mut commands, stored.wire(), &format!("C{cas}"));
            }
            let _ = self.inner.servers[s].call(commands, stale.len()).await;
        }
        Ok(())
    }

    /// Reads `keys` (all on server `s`) with `flags`, tags checked.
    async fn read_on(
        &self,
        s: usize,
        keys: &[&str],
        flags: &str,
        op: &'static str,
    ) -> Result<Vec<Read>> {
        let (namespace, responses) = self
            .on_server(s, op, |namespace, commands| {
                for key in keys {
                    let stored = ServerKey::new(namespace, key);
                    proto::meta_get(commands, stored.wire(), flags);
                }
                keys.len()
            })
            .await?;
        let mut reads = Vec::with_capacity(keys.len());
        for (key, response) in keys.iter().zip(&responses) {
            let stored = ServerKey::new(&namespace, key);
            let read = self.interpret(key, &stored, response, op)?;
            reads.push(((*key).to_owned(), stored, read));
        }
        self.check_tags(s, &mut reads, op).await?;
        Ok(reads.into_iter().map(|(_, _, read)| read).collect())
    }

    async fn read_one(&self, key: &str, flags: &str, op: &'static str) -> Result<Read> {
        self.inner.limits.check_key(key)?;
        self.read_at(self.server_for(key), key, flags, op).await
    }

    /// Reads `key` on server `s` (the one a caller already chose).
    async fn read_at(&self, s: usize, key: &str, flags: &str, op: &'static str) -> Result<Read> {
        let mut reads = self.read_on(s, &[key], flags, op).await?;
        Ok(reads.pop().unwrap_or(Read::Missing))
    }

    /// Reads `keys` on every server at once; the answers in order.
    async fn read_many(&self, keys: &[&str], op: &'static str) -> Result<Vec<Read>> {
        let mut by_server: HashMap<usize, Vec<usize>> = HashMap::new();
        for (index, key) in keys.iter().enumerate() {
            by_server
                .entry(self.server_for(key))
                .or_default()
                .push(index);
        }
        let jobs = by_server.into_iter().map(|(s, indices)| async move {
            let batch: Vec<&str> = indices.iter().map(|&i| keys[i]).collect();
            let reads = self.read_on(s, &batch, "v f c t", op).await?;
            Ok::<_, Error>((indices, reads))
        });
        let mut out: Vec<Read> = keys.iter().map(|_| Read::Missing).collect();
        for outcome in join_all(jobs).await {
            let (indices, reads) = outcome?;
            for (index, read) in indices.into_iter().zip(reads) {
                out[index] = read;
            }
        }
        Ok(out)
    }

    fn count_read(&self, read: &Read) {
        match read {
            Read::Valid { .. } => self.inner.counters.bump(Event::Hit),
            _ => self.inner.counters.bump(Event::Miss),
        }
    }

    /// The `T` token of a write: whole seconds, relative up to 30 days,
    /// absolute beyond; `T0` for no expiry.
    fn ttl_token(&self, expiry: Expiry) -> Result<String> {
        ttl_token(self.inner.limits.ttl(expiry)?)
    }

    /// Writes one item on server `s` with `flags`: its `T` token, then a
    /// mode (none, `ME` or `C<cas>`); the status the server answered.
    async fn store(
        &self,
        s: usize,
        key: &str,
        value: &[u8],
        tags: &[(String, u64)],
        flags: &str,
        op: &'static str,
    ) -> Result<Status> {
        let (_, responses) = self
            .on_server(s, op, |namespace, commands| {
                let stored = ServerKey::new(namespace, key);
                let (client_flags, bytes) =
                    entry::encode(value, tags, stored.hashed.then_some(key));
                proto::meta_set(
                    commands,
                    stored.wire(),
                    &bytes,
                    &format!("F{client_flags} {flags}"),
                );
                1
            })
            .await?;
        let meta = meta_of(&responses[0], op)?;
        Ok(meta.status.unwrap_or(Status::NotStored))
    }

    async fn set_one(&self, key: &str, value: &[u8], options: &SetOptions) -> Result<bool> {
        const OP: &str = "set";
        let ttl = self.ttl_token(options.expiry)?;
        let s = self.server_for(key);
        let tags = distinct(&options.tags);
        let tags = self.tag_versions_for_write(s, &tags, OP).await?;
        let written = match options.condition {
            SetCondition::Always => {
                self.store(s, key, value, &tags, &ttl, OP).await?;
                true
            }
            SetCondition::IfAbsent => {
                let mut outcome = None;
                for _ in 0..MAX_ATTEMPTS {
                    match self
                        .store(s, key, value, &tags, &format!("{ttl} ME"), OP)
                        .await?
                    {
                        Status::Done => outcome = Some(true),
                        _ => match self.read_at(s, key, "v f c", OP).await? {
                            Read::Valid { .. } => outcome = Some(false),
                            Read::Missing => continue,
                            Read::Invalid { cas } => {
                                let mode = format!("C{cas}");
                                if self
                                    .store(s, key, value, &tags, &format!("{ttl} {mode}"), OP)
                                    .await?
                                    == Status::Done
                                {
                                    outcome = Some(true);
                                } else {
                                    continue;
                                }
                            }
                        },
                    }
                    break;
                }
                outcome.ok_or_else(|| contended(OP, MAX_ATTEMPTS as u32))?
            }
            SetCondition::IfPresent => {
                let mut outcome = None;
                for _ in 0..MAX_ATTEMPTS {
                    match self.read_at(s, key, "v f c", OP).await? {
                        Read::Valid { meta, .. } => {
                            let mode = format!("C{}", meta.cas.unwrap_or(0));
                            if self
                                .store(s, key, value, &tags, &format!("{ttl} {mode}"), OP)
                                .await?
                                != Status::Done
                            {
                                continue;
                            }
                            outcome = Some(true);
                        }
                        Read::Missing | Read::Invalid { .. } => outcome = Some(false),
                    }
                    break;
                }
                outcome.ok_or_else(|| contended(OP, MAX_ATTEMPTS as u32))?
            }
        };
        if written {
            self.inner.counters.bump(Event::Insert);
        }
        Ok(written)
    }

    /// Writes unconditionally every entry of `indices` (all on server `s`)
    /// in one round trip.
    async fn store_batch(
        &self,
        s: usize,
        entries: &[(&str, Bytes)],
        indices: &[usize],
        tags: &[String],
        ttl: &str,
    ) -> Result<()> {
        const OP: &str = "set_many";
        let tag_names: Vec<&str> = tags.iter().map(String::as_str).collect();
        let tags = self.tag_versions_for_write(s, &tag_names, OP).await?;
        let (_, responses) = self
            .on_server(s, OP, |namespace, commands| {
                for &index in indices {
                    let (key, value) = &entries[index];
                    let stored = ServerKey::new(namespace, key);
                    let (flags, bytes) = entry::encode(value, &tags, stored.hashed.then_some(*key));
                    proto::meta_set(commands, stored.wire(), &bytes, &format!("F{flags} {ttl}"));
                }
                indices.len()
            })
            .await?;
        for response in &responses {
            meta_of(response, OP)?;
        }
        self.inner.counters.add(Event::Insert, indices.len() as u64);
        Ok(())
    }

    /// One attempt of `incr`: `None` when a compare-and-swap lost.
    async fn try_incr(&self, key: &str, delta: i64, ttl: &str) -> Result<Option<i64>> {
        const OP: &str = "incr";
        let s = self.server_for(key);
        match self.read_at(s, key, "v f c t", OP).await? {
            Read::Missing => {
                let value = delta.to_string();
                let status = self
                    .store(s, key, value.as_bytes(), &[], &format!("{ttl} ME"), OP)
                    .await?;
                Ok((status == Status::Done).then_some(delta))
            }
            Read::Invalid { cas } => {
                let value = delta.to_string();
                let mode = format!("C{cas}");
                let status = self
                    .store(s, key, value.as_bytes(), &[], &format!("{ttl} {mode}"), OP)
                    .await?;
                Ok((status == Status::Done).then_some(delta))
            }
            Read::Valid { entry, meta } => {
                let current = parse_counter(NAME, &entry.value)?;
                let next = current.checked_add(delta).ok_or_else(|| {
                    Error::new(
                        ErrorKind::Overflow,
                        NAME,
                        "the counter would leave the range of a signed 64-bit integer",
                    )
                })?;
                let cas = meta.cas.unwrap_or(0);
                let text = next.to_string();
                let in_place = meta.client_flags == Some(BARE)
                    && current >= 0
                    && next >= 0
                    && text.len() >= entry.value.len();
                if in_place {
                    // memcached adds in place and keeps the deadline to
                    // the second; the number cannot shrink, so no padding.
                    let (mode, amount) = if delta >= 0 {
                        ("MI", delta.unsigned_abs())
                    } else {
                        ("MD", delta.unsigned_abs())
                    };
                    let (_, responses) = self
                        .on_server(s, OP, |namespace, commands| {
                            let stored = ServerKey::new(namespace, key);
                            proto::meta_arithmetic(
                                commands,
                                stored.wire(),
                                &format!("C{cas} D{amount} {mode}"),
                            );
                            1
                        })
                        .await?;
                    let status = meta_of(&responses[0], OP)?.status;
                    return Ok((status == Some(Status::Done)).then_some(next));
                }
                // Rewrite it with its tags and what is left of its life.
                let keep = match meta.ttl {
                    None | Some(-1) => "T0".to_owned(),
                    Some(left) => ttl_token(Some(Duration::from_secs(
                        u64::try_from(left).unwrap_or(1).max(1),
                    )))?,
                };
                let mode = format!("C{cas}");
                let status = self
                    .store(
                        s,
                        key,
                        text.as_bytes(),
                        &entry.tags,
                        &format!("{keep} {mode}"),
                        OP,
                    )
                    .await?;
                Ok((status == Status::Done).then_some(next))
            }
        }
    }
}

/// Reads a generation or tag version: 16 hex digits.
fn parse_generation(bytes: &[u8]) -> Option<u64> {
    if bytes.len() != 16 {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(bytes).ok()?, 16).ok()
}

/// A random non-zero 64-bit number.
fn random_version() -> u64 {
    fastrand::u64(1..)
}

/// The most tags of one entry, and the longest tag, that its header holds.
const MAX_TAGS: usize = u16::MAX as usize;

/// Tags the entry header cannot hold are [`ErrorKind::InvalidInput`].
fn check_tags(tags: &[String]) -> Result<()> {
    if tags.len() > MAX_TAGS {
        return Err(Error::invalid_input(
            NAME,
            format!(
                "{} tags; the limit of this backend is {MAX_TAGS}",
                tags.len()
            ),
        ));
    }
    if let Some(tag) = tags.iter().find(|tag| tag.len() > MAX_TAGS) {
        return Err(Error::invalid_input(
            NAME,
            format!(
                "a tag of {} bytes; the limit of this backend is {MAX_TAGS} bytes",
                tag.len()
            ),
        ));
    }
    Ok(())
}

/// The tags of a write, each once.
fn distinct(tags: &[String]) -> Vec<&str> {
    let mut seen = HashSet::new();
    tags.iter()
        .map(String::as_str)
        .filter(|tag| seen.insert(*tag))
        .collect()
}

/// The `T` token of a TTL (`None`: no expiry).
fn ttl_token(ttl: Option<Duration>) -> Result<String> {
    let Some(ttl) = ttl else {
        return Ok("T0".to_owned());
    };
    let seconds = u64::try_from(ttl.as_nanos().div_ceil(1_000_000_000))
        .unwrap_or(u64::MAX)
        .max(1);
    if seconds <= MAX_RELATIVE_TTL {
        return Ok(format!("T{seconds}"));
    }
    let now = now_ms() / 1000;
    let at = now.saturating_add(seconds);
    if at > MAX_ABSOLUTE_TIME {
        return Err(Error::invalid_input(
            NAME,
            format!(
                "a TTL of {seconds} s ends after 2038-01-19 03:14:07 UTC, the latest \
                 deadline memcached can store"
            ),
        ));
    }
    Ok(format!("T{at}"))
}

/// The meta response of `response`, or the server's error line as an
/// error.
fn meta_of<'a>(response: &'a Response, operation: &'static str) -> Result<&'a Meta> {
    match response {
        Response::Meta(meta) => Ok(meta),
        Response::Error(line) => Err(server_error(line, operation)),
    }
}

/// An error line of the server as an error.
fn server_error(line: &str, operation: &'static str) -> Error {
    let kind = if line.contains("object too large") {
        return Error::invalid_input(
            NAME,
            "the item (value, key and header) is larger than the server's item size \
             limit (memcached's `-I`, 1 MiB by default)",
        )
        .with_operation(operation);
    } else if line.contains("non-numeric") {
        ErrorKind::NotAnInteger
    } else {
        ErrorKind::Backend
    };
    Error::new(kind, NAME, format!("the server answered `{line}`")).with_operation(operation)
}

fn contended(operation: &'static str, attempts: u32) -> Error {
    Error::new(
        ErrorKind::Timeout,
        NAME,
        format!("gave up after {attempts} lost compare-and-swap attempts"),
    )
    .with_operation(operation)
}

#[async_trait]
impl Backend for MemcachedBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.limits.advertise(Self::default_capabilities())
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let read = self.read_one(key, "v f c", "get").await?;
        self.count_read(&read);
        Ok(match read {
            Read::Valid { entry, .. } => Some(entry.value),
            _ => None,
        })
    }

    async fn set(&self, key: &str, value: Bytes, options: &SetOptions) -> Result<bool> {
        self.inner.limits.check_key(key)?;
        self.inner.limits.check_value(&value)?;
        check_tags(&options.tags)?;
        self.set_one(key, &value, options).await
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        Ok(self.delete_many(&[key]).await? == 1)
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        let read = self.read_one(key, "v f c", "exists").await?;
        Ok(matches!(read, Read::Valid { .. }))
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>> {
        self.inner.limits.check_keys(keys)?;
        let reads = self.read_many(keys, "get_many").await?;
        Ok(reads
            .into_iter()
            .map(|read| {
                self.count_read(&read);
                match read {
                    Read::Valid { entry, .. } => Some(entry.value),
                    _ => None,
                }
            })
            .collect())
    }

    async fn set_many(&self, entries: &[(&str, Bytes)], options: &SetOptions) -> Result<Vec<bool>> {
        self.inner.limits.check_entries(entries)?;
        check_tags(&options.tags)?;
        if options.condition != SetCondition::Always {
            // In order: a key repeated in the batch sees the earlier write.
            let mut out = Vec::with_capacity(entries.len());
            for (key, value) in entries {
                out.push(self.set_one(key, value, options).await?);
            }
            return Ok(out);
        }
        let ttl = self.ttl_token(options.expiry)?;
        let tags: Vec<String> = distinct(&options.tags)
            .into_iter()
            .map(str::to_owned)
            .collect();
        let mut by_server: HashMap<usize, Vec<usize>> = HashMap::new();
        for (index, (key, _)) in entries.iter().enumerate() {
            by_server
                .entry(self.server_for(key))
                .or_default()
                .push(index);
        }
        let jobs = by_server
            .iter()
            .map(|(&s, indices)| self.store_batch(s, entries, indices, &tags, &ttl));
        for outcome in join_all(jobs).await {
            outcome?;
        }
        Ok(vec![true; entries.len()])
    }

    async fn delete_many(&self, keys: &[&str]) -> Result<u64> {
        const OP: &str = "delete";
        self.inner.limits.check_keys(keys)?;
        let mut by_server: HashMap<usize, Vec<&str>> = HashMap::new();
        for key in keys {
            by_server.entry(self.server_for(key)).or_default().push(key);
        }
        let jobs = by_server.into_iter().map(|(s, batch)| async move {
            // Read each item, then delete it, in one round trip; an item
            // that was not a valid entry was not there.
            let (namespace, responses) = self
                .on_server(s, OP, |namespace, commands| {
                    for key in &batch {
                        let stored = ServerKey::new(namespace, key);
                        proto::meta_get(commands, stored.wire(), "v f c");
                        proto::meta_delete(commands, stored.wire(), "");
                    }
                    batch.len() * 2
                })
                .await?;
            let mut reads = Vec::with_capacity(batch.len());
            for (key, pair) in batch.iter().zip(responses.chunks(2)) {
                let deleted = meta_of(&pair[1], OP)?.status == Some(Status::Done);
                let stored = ServerKey::new(&namespace, key);
                // Counted only if this delete removed a valid entry (not
                // one a concurrent delete removed first).
                let read = match self.interpret(key, &stored, &pair[0], OP)? {
                    Read::Valid { .. } if !deleted => Read::Missing,
                    read => read,
                };
                reads.push(((*key).to_owned(), stored, read));
            }
            self.check_tags(s, &mut reads, OP).await?;
            Ok::<u64, Error>(
                reads
                    .iter()
                    .filter(|(_, _, read)| matches!(read, Read::Valid { .. }))
                    .count() as u64,
            )
        });
        let mut removed = 0;
        for outcome in join_all(jobs).await {
            removed += outcome?;
        }
        self.inner.counters.add(Event::Delete, removed);
        Ok(removed)
    }

    async fn incr(&self, key: &str, delta: i64, expiry: Expiry) -> Result<i64> {
        self.inner.limits.check_key(key)?;
        let ttl = self.ttl_token(expiry)?;
        // Under contention a compare-and-swap may lose many times: try
        // again, with a random pause that grows up to 5 ms, within a
        // budget of ten response timeouts.
        let budget = self.inner.servers[self.server_for(key)]
            .timing()
            .response_timeout
            .saturating_mul(10);
        let started = tokio::time::Instant::now();
        let mut attempt = 0_u32;
        loop {
            if let Some(value) = self.try_incr(key, delta, &ttl).await? {
                return Ok(value);
            }
            if started.elapsed() > budget {
                return Err(contended("incr", attempt));
            }
            back_off(attempt, Duration::from_micros(50), Duration::from_millis(5)).await;
            attempt += 1;
        }
    }

    async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        Ok(match self.read_one(key, "v f c t", "ttl").await? {
            Read::Valid { meta, .. } => match meta.ttl {
                None | Some(-1) => KeyTtl::Persistent,
                Some(left) => {
                    KeyTtl::ExpiresIn(Duration::from_secs(u64::try_from(left).unwrap_or(0)))
                }
            },
            _ => KeyTtl::Missing,
        })
    }

    async fn touch(&self, key: &str, expiry: Expiry) -> Result<bool> {
        self.inner.limits.check_key(key)?;
        let ttl = self.ttl_token(expiry)?;
        // The new deadline goes with the read (one round trip); an invalid
        // entry touched stays invalid.
        let read = self.read_one(key, &format!("v f c {ttl}"), "touch").await?;
        Ok(matches!(read, Read::Valid { .. }))
    }

    async fn clear(&self) -> Result<()> {
        let key = self.generation_key();
        let outcomes = join_all(self.inner.servers.iter().enumerate().map(
            |(s, server)| async move {
                let generation = random_version();
                let mut commands = Vec::new();
                proto::meta_set(
                    &mut commands,
                    key.wire(),
                    format!("{generation:016x}").as_bytes(),
                    "T0",
                );
                let responses = server.call(commands, 1).await?;
                meta_of(&responses[0], "clear")?;
                self.inner.generations[s].store(generation, Ordering::Relaxed);
                Ok::<(), Error>(())
            },
        ))
        .await;
        all_servers(outcomes, &self.inner.servers, "clear")
    }

    async fn keys(&self, pattern: &str) -> Result<KeyStream> {
        listing::keys(self.clone(), pattern).await
    }

    async fn lease(&self, key: &str, ttl: Duration) -> Result<Option<Lease>> {
        const OP: &str = "lease";
        self.inner.limits.check_key(key)?;
        // Whole seconds, rounded up; a lease is never longer than the
        // longest relative TTL.
        let seconds = ttl
            .as_secs()
            .saturating_add(u64::from(ttl.subsec_nanos() > 0))
            .clamp(1, MAX_RELATIVE_TTL);
        // `N`: a missing key becomes an empty placeholder, and its first
        // reader wins. `R`: of the readers of an item that expires within
        // 30 days (past its soft TTL, as the front end asks), the first
        // wins. Either way the others see `Z` until the key is written.
        let flags = format!("c N{seconds} R{MAX_RELATIVE_TTL}");
        let (_, responses) = self
            .on_server(self.server_for(key), OP, |namespace, commands| {
                proto::meta_get(commands, ServerKey::new(namespace, key).wire(), &flags);
                1
            })
            .await?;
        let meta = meta_of(&responses[0], OP)?;
        Ok(if meta.won {
            Some(Lease::Granted(LeaseToken::new(meta.cas.unwrap_or(0))))
        } else if meta.already_won {
            Some(Lease::Held)
        } else {
            None
        })
    }

    async fn release_lease(&self, key: &str, lease: LeaseToken) -> Result<()> {
        const OP: &str = "release_lease";
        self.inner.limits.check_key(key)?;
        // Marks the item stale, which hands the lease to the next reader,
        // unless it was written since (then its CAS moved: `EX`).
        let flags = format!("C{} I", lease.get());
        let (_, responses) = self
            .on_server(self.server_for(key), OP, |namespace, commands| {
                proto::meta_delete(commands, ServerKey::new(namespace, key).wire(), &flags);
                1
            })
            .await?;
        meta_of(&responses[0], OP)?;
        Ok(())
    }

    async fn invalidate_tags(&self, tags: &[&str]) -> Result<u64> {
        let mut seen = HashSet::new();
        let tags: Vec<&str> = tags.iter().copied().filter(|t| seen.insert(*t)).collect();
        if tags.is_empty() {
            return Ok(0);
        }
        let outcomes = join_all(self.inner.servers.iter().map(|server| {
            let tags = &tags;
            async move {
                let mut commands = Vec::new();
                for tag in tags {
                    let version = format!("{:016x}", random_version());
                    proto::meta_set(
                        &mut commands,
                        self.tag_key(tag).wire(),
                        version.as_bytes(),
                        "T0",
                    );
                }
                for response in server.call(commands, tags.len()).await? {
                    meta_of(&response, "invalidate_tags")?;
                }
                Ok::<(), Error>(())
            }
        }))
        .await;
        all_servers(outcomes, &self.inner.servers, "invalidate_tags")?;
        Ok(0)
    }

    async fn stats(&self) -> Result<Stats> {
        let mut stats = Stats::default();
        self.inner.counters.fill(&mut stats);
        // memcached cannot tell a write that creates an entry from one
        // that replaces it: writes are counted under their own name.
        let writes = std::mem::take(&mut stats.inserts);
        let mut totals: Vec<(String, u64)> =
            ["curr_items", "bytes", "evictions", "expired_unfetched"]
                .iter()
                .map(|name| ((*name).to_owned(), 0))
                .collect();
        let answers = join_all(
            self.inner
                .servers
                .iter()
                .map(|server| listing::text_command(server, "stats", |line| line == "END")),
        )
        .await;
        let mut reachable = 0;
        for lines in answers.into_iter().flatten() {
            reachable += 1;
            for line in lines {
                let mut parts = line.split(' ');
                if parts.next() != Some("STAT") {
                    continue;
                }
                let (Some(name), Some(value)) = (parts.next(), parts.next()) else {
                    continue;
                };
                if let Some(total) = totals.iter_mut().find(|(n, _)| n == name) {
                    total.1 += value.parse::<u64>().unwrap_or(0);
                }
            }
        }
        totals.push(("writes".to_owned(), writes));
        totals.push(("servers_reachable".to_owned(), reachable));
        totals.push(("servers".to_owned(), self.inner.servers.len() as u64));
        stats.details = totals;
        Ok(stats)
    }

    async fn health(&self) -> Result<()> {
        let outcomes = join_all(
            self.inner
                .servers
                .iter()
                .map(|server| async move { server.call(Vec::new(), 0).await.map(|_| ()) }),
        )
        .await;
        all_servers(outcomes, &self.inner.servers, "health")
    }
}

/// The outcome of an operation on every server: the first error, naming
/// the servers that failed (the others did their part).
fn all_servers(
    outcomes: Vec<Result<()>>,
    servers: &[Server],
    operation: &'static str,
) -> Result<()> {
    let failed: Vec<(usize, Error)> = outcomes
        .into_iter()
        .enumerate()
        .filter_map(|(s, outcome)| outcome.err().map(|err| (s, err)))
        .collect();
    let Some((_, first)) = failed.first() else {
        return Ok(());
    };
    let names: Vec<String> = failed
        .iter()
        .map(|(s, _)| servers[*s].address.to_string())
        .collect();
    Err(Error::new(
        first.kind(),
        NAME,
        format!(
            "{} of {} servers failed ({}); the others did their part: {}",
            failed.len(),
            servers.len(),
            names.join(", "),
            first.message()
        ),
    )
    .with_operation(operation))
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn ttls_become_whole_seconds_relative_then_absolute() {
        assert_eq!(ttl_token(None).unwrap(), "T0");
        assert_eq!(ttl_token(Some(Duration::from_micros(300))).unwrap(), "T1");
        assert_eq!(ttl_token(Some(Duration::from_millis(1500))).unwrap(), "T2");
        assert_eq!(
            ttl_token(Some(Duration::from_secs(MAX_RELATIVE_TTL))).unwrap(),
            format!("T{MAX_RELATIVE_TTL}")
        );
        let absolute = ttl_token(Some(Duration::from_secs(MAX_RELATIVE_TTL + 1))).unwrap();
        let at: u64 = absolute[1..].parse().unwrap();
        let now = now_ms() / 1000;
        assert!((now + MAX_RELATIVE_TTL..=now + MAX_RELATIVE_TTL + 2).contains(&at));
        let err = ttl_token(Some(Duration::from_secs(100 * 365 * 24 * 3600))).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.message().contains("2038"), "{err}");
        assert_eq!(
            ttl_token(Some(Duration::MAX)).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    }

    #[test]
    fn generations_are_sixteen_hex_digits() {
        assert_eq!(parse_generation(b"00000000000000ff"), Some(255));
        assert_eq!(parse_generation(b"ff"), None);
        assert_eq!(parse_generation(b"zzzzzzzzzzzzzzzz"), None);
    }
}
