//! The embedded redb backend: a persistent cache in one ACID database file,
//! pure Rust, no server.
//!
//! - **URL:** `redb:///abs/path/cache.redb?namespace=sessions&default_ttl=5m`
//!   (an absolute path; every parameter optional):
//!
//!   | parameter        | value                                                       |
//!   |------------------|-------------------------------------------------------------|
//!   | `namespace`      | ASCII letters, digits, `-_.:`, at most 128 bytes (default `default`) |
//!   | `default_ttl`    | a duration: `150ms`, `30s`, `5m`                            |
//!   | `max_entries`    | an integer: evicts the oldest writes first                  |
//!   | `max_key_len`    | bytes (default 4096)                                        |
//!   | `max_value_len`  | bytes, e.g. `64MiB` (default 512 MiB)                       |
//!   | `durability`     | `immediate` (default) or `eventual`                         |
//!   | `purge_interval` | a duration (default `60s`)                                  |
//!   | `cache_size`     | bytes of redb's page cache (redb's default: 1 GiB)          |
//!
//!   The same options are on [`RedbBuilder`]. A missing file is created
//!   with mode 0600 (missing directories 0700).
//! - **Tables:** per namespace, five redb tables named
//!   `cachette/<namespace>/...`:
//!
//!   | table        | rows                                | for                                 |
//!   |--------------|-------------------------------------|-------------------------------------|
//!   | `entries`    | key → deadline ‖ write no. ‖ value  | the values (`u64` big-endian header of 16 bytes; deadline in Unix ms, 0 = never) |
//!   | `expiry`     | (deadline, key) → ()                | TTL purge without a full scan       |
//!   | `order`      | write no. → key                     | FIFO eviction under `max_entries`   |
//!   | `tags`       | tag →→ key (multimap)               | `invalidate_tags`                   |
//!   | `entry_tags` | key →→ tag (multimap)               | exact tag rows on overwrite, delete, expiry |
//!
//!   plus one `cachette/meta` table per file with the format version.
//!   Every operation is one redb transaction, so the five tables change
//!   together or not at all; a crash (even `SIGKILL` in the middle of a
//!   write) leaves each key with one of the values written for it, or
//!   none.
//! - **Sharing:** several backends (and [`Cache`](crate::Cache)s) in one
//!   process may open the same file: they share one `redb::Database`,
//!   each in its own namespace; [`Backend::clear`] empties its own
//!   namespace only. redb locks the file for **one process**: opening it
//!   in a second process fails with an error that says so, hence
//!   `shared: false`.
//! - **TTL:** millisecond precision, absolute wall-clock deadlines (they
//!   survive a restart; a clock set back makes entries live longer). An
//!   expired entry reads as a miss at once; it is removed by the next
//!   writes (each write transaction removes up to 16 entries past their
//!   deadline, found through the deadline index), by a background task
//!   every `purge_interval` (when built inside a tokio runtime), and by
//!   [`Backend::purge_expired`].
//! - **Atomicity:** `incr`, conditional sets and `touch` are atomic (one
//!   write transaction each); `set_many` and `delete_many` are one
//!   transaction each too. redb runs one write transaction at a time per
//!   file.
//! - **Blocking:** every database operation runs on tokio's blocking pool
//!   (`spawn_blocking`), never on the async worker threads. A panic in
//!   that work is an [`ErrorKind::Backend`] error of the operation, logged
//!   at error level (the policy of every backend, see
//!   `backends/common.rs`).
//! - **Durability:** [`RedbDurability::Immediate`] (default) flushes each
//!   write to the disk before it returns; `Eventual` leaves the flush to
//!   the OS (safe against a crash of the process, not of the machine).
//! - **Errors:** redb's errors are [`ErrorKind::Backend`]
//!   with redb's error as the source, the file named in the message; a
//!   file that is not a redb database is [`ErrorKind::Config`].
//!   A stored value too short to hold its header is corrupt: it reads as
//!   a miss, is counted in [`Stats::corrupt`] and removed by the next
//!   write of its key.
//! - **Listing:** [`Backend::keys`] walks the keys that start with the
//!   pattern's literal prefix in pages of 1024, one read transaction per
//!   page: a key present during the whole listing is listed once.
//! - **Limits:** keys up to 4096 bytes, values up to 512 MiB by default
//!   (redb itself stores values below 3 GiB). Tags are any strings. redb
//!   grows the file in regions, so even a small cache takes a few MiB on
//!   disk; space freed by deletes is reused, not returned to the OS.
//! - **Stats:** hits, misses, inserts, updates, deletes, evictions,
//!   expirations, invalidations and corrupt count this backend's work
//!   since it was built; `entries` is the size of the namespace's table
//!   (expired entries included until removed); `details` has
//!   `file_bytes`, the size of the file. `bytes` is not tracked.
//!
//! ```no_run
//! use cachette::{Backend, SetOptions};
//! use cachette::backends::redb::RedbBackend;
//!
//! # #[tokio::main] async fn main() -> cachette::Result<()> {
//! let cache = tokio::task::spawn_blocking(|| {
//!     RedbBackend::builder("/var/cache/app/cache.redb").namespace("pages").build()
//! })
//! .await
//! .expect("the open did not panic")?;
//! cache.set("/index.html", "<html>".into(), &SetOptions::new()).await?;
//!
//! // Or from a URL:
//! let same_file = cachette::open("redb:///var/cache/app/cache.redb?namespace=sessions").await?;
//! # Ok(())
//! # }
//! ```

mod builder;
mod registry;
pub(crate) mod store;
#[cfg(test)]
mod tests;
pub(crate) mod url;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use parking_lot::RwLock;
use redb::Database;

use crate::backend::{Backend, Capabilities, Expiry, KeyStream, KeyTtl, SetOptions, Stats};
use crate::backends::common::{
    self, BASE_CAPABILITIES, Counters, Event, Limits, PurgeTask, Tally, deadline_after, now_ms,
};
use crate::error::{Error, ErrorKind, Result};
use crate::glob;

pub use builder::{
    DEFAULT_MAX_VALUE_LEN, MAX_NAMESPACE_LEN, MAX_VALUE_LEN_LIMIT, RedbBuilder, RedbDurability,
};
use store::{Found, Reader, TableNames, Writer};

pub(crate) const NAME: &str = "redb";

/// How many entries one page of [`Backend::keys`] scans (one read
/// transaction each).
const KEYS_PAGE: usize = 1024;

/// How many expired entries one transaction of `purge_expired` removes.
const PURGE_BATCH: u64 = 1024;

/// Turns any redb error into a cachette [`ErrorKind::Backend`] error with
/// redb's error as its source.
trait RedbResult<T> {
    fn db(self) -> Result<T>;
}

impl<T, E: Into<redb::Error>> RedbResult<T> for std::result::Result<T, E> {
    fn db(self) -> Result<T> {
        self.map_err(|err| {
            let err: redb::Error = err.into();
            let message = match &err {
                redb::Error::Io(_) | redb::Error::PreviousIo => "an I/O error in the database file",
                redb::Error::Corrupted(_) => "the database file is corrupted",
                redb::Error::ValueTooLarge(_) => "a value is too large for redb",
                _ => "the redb database failed",
            };
            Error::new(ErrorKind::Backend, NAME, message).with_source(err)
        })
    }
}

struct Inner {
    /// `None` after `close`.
    database: RwLock<Option<Arc<Database>>>,
    path: PathBuf,
    namespace: String,
    tables: TableNames,
    limits: Limits,
    /// Fixed at build time: the defaults with this backend's limits.
    capabilities: Capabilities,
    max_entries: Option<u64>,
    durability: RedbDurability,
    counters: Counters,
    purger: PurgeTask,
}

impl Inner {
    fn database(&self) -> Result<Arc<Database>> {
        self.database.read().clone().ok_or_else(|| {
            Error::new(
                ErrorKind::Backend,
                NAME,
                "the backend is closed; build a new one to open the file again",
            )
        })
    }

    /// Runs `work` in one write transaction and commits it (or aborts it
    /// when nothing changed or `work` failed); counters move only after a
    /// commit.
    fn write<T>(&self, work: impl FnOnce(&mut Writer<'_>) -> Result<T>) -> Result<T> {
        let db = self.database()?;
        let mut txn = db.begin_write().db()?;
        txn.set_durability(self.durability.to_redb());
        let (out, counts, changed) = {
            let mut writer = Writer::open(&txn, &self.tables, now_ms())?;
            let out = work(&mut writer)?;
            writer.finish(self.max_entries)?;
            (out, writer.counts, writer.changed)
        };
        if changed {
            txn.commit().db()?;
        } else {
            txn.abort().db()?;
        }
        self.counters.add_tally(&counts);
        Ok(out)
    }

    /// Runs `work` in one read transaction.
    fn read<T>(&self, work: impl FnOnce(&Reader) -> Result<T>) -> Result<T> {
        let db = self.database()?;
        let txn = db.begin_read().db()?;
        let reader = Reader::open(&txn, &self.tables, now_ms())?;
        work(&reader)
    }

    /// The deadline of a write made now that lives `ttl`; 0 = never.
    /// Taken on the blocking thread, when the write happens.
    fn deadline(&self, ttl: Option<Duration>) -> u64 {
        deadline_after(now_ms(), ttl)
    }

    /// Reads one key, counting the hit, miss or corrupt entry.
    fn get_one(&self, reader: &Reader, key: &str, counts: &mut Tally) -> Result<Option<Bytes>> {
        match reader.get(key, Bytes::copy_from_slice)? {
            Found::Live(_, value) => {
                counts.bump(Event::Hit);
                Ok(Some(value))
            }
            Found::Corrupt => {
                counts.bump(Event::Corrupt);
                counts.bump(Event::Miss);
                Ok(None)
            }
            Found::Missing | Found::Expired => {
                counts.bump(Event::Miss);
                Ok(None)
            }
        }
    }

    /// Removes every expired entry, [`PURGE_BATCH`] per transaction.
    fn purge(&self) -> Result<u64> {
        let mut removed = 0;
        loop {
            let batch = self.write(|w| w.purge(PURGE_BATCH))?;
            removed += batch;
            if batch < PURGE_BATCH {
                return Ok(removed);
            }
        }
    }
}

/// A cache in a redb database file. Cheap to clone: clones share the
/// backend (and every backend on the same file shares the database).
///
/// See the [module docs](self) for the URL form, the tables and the
/// guarantees.
#[derive(Clone)]
pub struct RedbBackend {
    inner: Arc<Inner>,
}

impl fmt::Debug for RedbBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbBackend")
            .field("path", &self.inner.path)
            .field("namespace", &self.inner.namespace)
            .field("default_ttl", &self.inner.limits.default_ttl)
            .field("max_entries", &self.inner.max_entries)
            .field("durability", &self.inner.durability)
            .finish()
    }
}

impl RedbBackend {
    /// A builder for a backend on the database file at `path`, with the
    /// defaults: namespace `default`, no TTL, unbounded, immediate
    /// durability.
    pub fn builder(path: impl AsRef<Path>) -> RedbBuilder {
        RedbBuilder::new(path)
    }

    /// The capabilities of a redb backend with default options.
    pub fn default_capabilities() -> Capabilities {
        Capabilities {
            persistent: true,
            max_value_len: Some(DEFAULT_MAX_VALUE_LEN),
            ..BASE_CAPABILITIES
        }
    }

    fn from_builder(builder: RedbBuilder) -> Result<Self> {
        let (path, db) = registry::open(&builder.path, builder.cache_size)?;
        let tables = TableNames::new(&builder.namespace);
        let in_file = |err: Error| match err.kind() {
            ErrorKind::Backend | ErrorKind::Config => {
                err.context(format_args!("database file `{}`", path.display()))
            }
            _ => err,
        };
        let mut txn = db.begin_write().db().map_err(in_file)?;
        txn.set_durability(builder.durability.to_redb());
        store::prepare(&txn, &tables).map_err(in_file)?;
        txn.commit().db().map_err(in_file)?;

        let limits = Limits {
            backend: NAME,
            max_key_len: builder.max_key_len,
            max_value_len: Some(builder.max_value_len),
            default_ttl: builder.default_ttl,
        };
        let inner = Arc::new(Inner {
            database: RwLock::new(Some(db)),
            path,
            namespace: builder.namespace,
            tables,
            capabilities: limits.advertise(Self::default_capabilities()),
            limits,
            max_entries: builder.max_entries,
            durability: builder.durability,
            counters: Counters::default(),
            purger: PurgeTask::default(),
        });
        inner.purger.start(
            NAME,
            Arc::downgrade(&inner),
            builder.purge_interval,
            |inner| async move { RedbBackend { inner }.purge_expired().await },
        );
        Ok(RedbBackend { inner })
    }

    /// The canonical path of the database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The namespace of this backend.
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Runs `work` on tokio's blocking pool (inline outside a runtime);
    /// errors name the operation and, for storage errors, the file. A
    /// panic in `work` is an [`ErrorKind::Backend`] error (see
    /// [`common`](crate::backends::common)).
    async fn run<T: Send + 'static>(
        &self,
        operation: &'static str,
        work: impl FnOnce(&Inner) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = Arc::clone(&self.inner);
        let task = move || {
            work(&inner).map_err(|err| {
                let err = err.with_operation(operation);
                match err.kind() {
                    ErrorKind::Backend => {
                        err.context(format_args!("database file `{}`", inner.path.display()))
                    }
                    _ => err,
                }
            })
        };
        common::on_blocking_pool(NAME, operation, task).await
    }
}

/// Runs `task` (opening a database) on tokio's blocking pool, or inline
/// outside a runtime; a panic is an error, as for every operation.
pub(crate) async fn on_blocking_pool<T: Send + 'static>(
    task: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    common::on_blocking_pool(NAME, "open", task).await
}

#[async_trait]
impl Backend for RedbBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.limits().check_key(key)?;
        let key = key.to_owned();
        self.run("get", move |inner| {
            let mut counts = Tally::default();
            let found = inner.read(|r| inner.get_one(r, &key, &mut counts))?;
            inner.counters.add_tally(&counts);
            Ok(found)
        })
        .await
    }

    async fn set(&self, key: &str, value: Bytes, options: &SetOptions) -> Result<bool> {
        self.limits().check_key(key)?;
        self.limits().check_value(&value)?;
        let ttl = self.limits().ttl(options.expiry)?;
        let key = key.to_owned();
        let tags = options.tags.clone();
        let condition = options.condition;
        self.run("set", move |inner| {
            inner.write(|w| w.set(&key, &value, inner.deadline(ttl), &tags, condition))
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        self.limits().check_key(key)?;
        let key = key.to_owned();
        self.run("delete", move |inner| inner.write(|w| w.delete(&key)))
            .await
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        self.limits().check_key(key)?;
        let key = key.to_owned();
        self.run("exists", move |inner| {
            inner.read(|r| Ok(matches!(r.get(&key, |_| ())?, Found::Live(..))))
        })
        .await
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>> {
        self.limits().check_keys(keys)?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = keys.iter().map(|&k| k.to_owned()).collect();
        self.run("get_many", move |inner| {
            let mut counts = Tally::default();
            let found = inner.read(|r| {
                keys.iter()
                    .map(|key| inner.get_one(r, key, &mut counts))
                    .collect()
            })?;
            inner.counters.add_tally(&counts);
            Ok(found)
        })
        .await
    }

    async fn set_many(&self, entries: &[(&str, Bytes)], options: &SetOptions) -> Result<Vec<bool>> {
        self.limits().check_entries(entries)?;
        let ttl = self.limits().ttl(options.expiry)?;
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let entries: Vec<(String, Bytes)> = entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        let tags = options.tags.clone();
        let condition = options.condition;
        self.run("set_many", move |inner| {
            inner.write(|w| {
                let deadline = inner.deadline(ttl);
                entries
                    .iter()
                    .map(|(key, value)| w.set(key, value, deadline, &tags, condition))
                    .collect()
            })
        })
        .await
    }

    async fn delete_many(&self, keys: &[&str]) -> Result<u64> {
        self.limits().check_keys(keys)?;
        if keys.is_empty() {
            return Ok(0);
        }
        let keys: Vec<String> = keys.iter().map(|&k| k.to_owned()).collect();
        self.run("delete_many", move |inner| {
            inner.write(|w| {
                let mut removed = 0;
                for key in &keys {
                    removed += u64::from(w.delete(key)?);
                }
                Ok(removed)
            })
        })
        .await
    }

    async fn incr(&self, key: &str, delta: i64, expiry: Expiry) -> Result<i64> {
        self.limits().check_key(key)?;
        let ttl = self.limits().ttl(expiry)?;
        let key = key.to_owned();
        self.run("incr", move |inner| {
            inner.write(|w| w.incr(&key, delta, inner.deadline(ttl)))
        })
        .await
    }

    async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        self.limits().check_key(key)?;
        let key = key.to_owned();
        self.run("ttl", move |inner| {
            inner.read(|r| {
                Ok(match r.get(&key, |_| ())? {
                    Found::Live(header, ()) if header.deadline == 0 => KeyTtl::Persistent,
                    Found::Live(header, ()) => {
                        let left = header.deadline.saturating_sub(now_ms()).max(1);
                        KeyTtl::ExpiresIn(Duration::from_millis(left))
                    }
                    Found::Missing | Found::Expired | Found::Corrupt => KeyTtl::Missing,
                })
            })
        })
        .await
    }

    async fn touch(&self, key: &str, expiry: Expiry) -> Result<bool> {
        self.limits().check_key(key)?;
        let ttl = self.limits().ttl(expiry)?;
        let key = key.to_owned();
        self.run("touch", move |inner| {
            inner.write(|w| w.touch(&key, inner.deadline(ttl)))
        })
        .await
    }

    async fn clear(&self) -> Result<()> {
        self.run("clear", move |inner| {
            let db = inner.database()?;
            let mut txn = db.begin_write().db()?;
            txn.set_durability(inner.durability.to_redb());
            store::clear(&txn, &inner.tables)?;
            txn.commit().db()
        })
        .await
    }

    async fn keys(&self, pattern: &str) -> Result<KeyStream> {
        let pattern = glob::Pattern::new(pattern);
        let backend = self.clone();
        // One read transaction per page, each starting after the last key
        // of the previous one: a key present all along is listed once.
        let pages = futures_util::stream::try_unfold(
            Some(None::<Vec<u8>>),
            move |cursor: Option<Option<Vec<u8>>>| {
                let backend = backend.clone();
                let pattern = pattern.clone();
                async move {
                    let Some(after) = cursor else {
                        return Ok(None);
                    };
                    let (keys, next) = backend
                        .run("keys", move |inner| {
                            inner.read(|r| r.keys_page(&pattern, after.as_deref(), KEYS_PAGE))
                        })
                        .await?;
                    Ok(Some((keys, next.map(Some))))
                }
            },
        );
        Ok(pages
            .map_ok(|keys| futures_util::stream::iter(keys.into_iter().map(Ok)))
            .try_flatten()
            .boxed())
    }

    async fn invalidate_tags(&self, tags: &[&str]) -> Result<u64> {
        if tags.is_empty() {
            return Ok(0);
        }
        let tags: Vec<String> = tags.iter().map(|&t| t.to_owned()).collect();
        self.run("invalidate_tags", move |inner| {
            inner.write(|w| w.invalidate(&tags))
        })
        .await
    }

    async fn purge_expired(&self) -> Result<u64> {
        self.run("purge_expired", Inner::purge).await
    }

    async fn stats(&self) -> Result<Stats> {
        self.run("stats", move |inner| {
            let mut stats = Stats::default();
            inner.counters.fill(&mut stats);
            stats.entries = inner.read(Reader::len)?;
            if let Ok(meta) = std::fs::metadata(&inner.path) {
                stats.details.push(("file_bytes".to_owned(), meta.len()));
            }
            Ok(stats)
        })
        .await
    }

    async fn health(&self) -> Result<()> {
        self.run("health", move |inner| inner.read(|_| Ok(())))
            .await
    }

    /// Stops the background purge and lets go of the database; the file
    /// is closed when no other backend in this process uses it.
    async fn close(&self) -> Result<()> {
        self.inner.purger.stop();
        let db = self.inner.database.write().take();
        if db.is_some() {
            // Dropping the last reference closes the file, which may
            // write; keep that off the async worker threads.
            self.run("close", move |_| {
                drop(db);
                Ok(())
            })
            .await?;
        }
        Ok(())
    }
}
