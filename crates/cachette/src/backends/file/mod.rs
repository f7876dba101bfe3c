//! The file backend: one file per entry under a directory, atomic writes,
//! bounded size, shared by several processes.
//!
//! ```
//! use cachette::{Backend, SetOptions};
//! use cachette::backends::file::FileBackend;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> cachette::Result<()> {
//! # let dir = std::env::temp_dir().join(format!("cachette-doc-file-{}", std::process::id()));
//! let cache = FileBackend::builder(&dir).max_bytes(64 << 20).build()?;
//! cache.set("user:1", "Ada".into(), &SetOptions::new()).await?;
//! assert_eq!(cache.get("user:1").await?.as_deref(), Some(&b"Ada"[..]));
//!
//! // The same directory from a URL, as another process would open it.
//! let url = format!("file://{}?max_bytes=64MiB&fsync=true", dir.display());
//! let again = cachette::open(&url).await?;
//! assert_eq!(again.get("user:1").await?.as_deref(), Some(&b"Ada"[..]));
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(())
//! # }
//! ```
//!
//! # URL
//!
//! `file:///absolute/dir?max_entries=100000&max_bytes=64MiB&default_ttl=5m&fsync=true`
//! (every parameter optional; the path is percent-decoded, `file://localhost/…`
//! is accepted, other hosts are not):
//!
//! | parameter         | value |
//! |-------------------|-------|
//! | `max_entries`     | an integer |
//! | `max_bytes`       | bytes with an optional unit (`64MiB`, `1GB`) |
//! | `default_ttl`     | a duration (`150ms`, `30s`, `5m`) |
//! | `fsync`           | a flag, off by default (`true`/`false`, `on`/`off`, … as in [`params`](crate::params)) |
//! | `allow_non_empty` | a flag, off by default: adopt a directory without a cachette marker |
//! | `max_key_len`     | bytes with an optional unit (default 4096) |
//! | `max_value_len`   | bytes with an optional unit (default and at most 512 MiB) |
//!
//! The builder ([`FileBackend::builder`]) has the same options.
//!
//! # The directory
//!
//! - `open` creates a missing directory (0700, parents too) and writes a
//!   marker file `.cachette-cache` (`cachette file cache`, `format: 1`) in
//!   it. A non-empty directory without the marker is refused with a
//!   [`Config`](crate::ErrorKind::Config) error naming it, unless
//!   `allow_non_empty` is set. A marker of a newer format is refused.
//!   Processes that open a fresh directory at the same moment all succeed.
//! - On Unix, a directory owned by another user, or writable by others
//!   (`o+w`), is refused with a [`Config`](crate::ErrorKind::Config) error
//!   that names it and the problem: another user could plant entries this
//!   process would serve.
//! - Each entry is one file, named by the 128-bit hash of its key in hex
//!   (two XXH64 with fixed seeds, stable across processes and versions),
//!   in two levels of fan-out directories: `ab/cd/abcd…` (32 hex digits).
//!   No key can name a path: `../x`, `/abs`, NUL or a 4 KiB key are just
//!   bytes that are hashed. The key is stored in the file and compared on
//!   read, so a hash collision is a miss, never another key's value.
//! - Directories are created 0700, files 0600 (on Unix).
//! - `.cachette-locks/` holds 64 lock files (see *Concurrency*).
//! - `clear` removes only entry files (32-hex names in the right fan-out
//!   directory) and stale temporary files; every other file is left alone.
//!
//! # On-disk format (version 1)
//!
//! Little-endian; a fixed 56-byte header, the key and tags, then the value:
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0  | 8 | magic `CACHETTE` |
//! | 8  | 8 | header checksum: XXH64 (seed 0) of bytes `24..header_len` |
//! | 16 | 8 | value checksum: XXH64 (seed 0) of the value |
//! | 24 | 2 | format version, 1 |
//! | 26 | 2 | flags, 0 (reserved) |
//! | 28 | 4 | header length (bytes before the value) |
//! | 32 | 8 | absolute expiry in Unix milliseconds, 0 = never |
//! | 40 | 8 | value length |
//! | 48 | 4 | key length |
//! | 52 | 4 | tag count |
//! | 56 | … | the key, then each tag as a 4-byte length and its bytes (UTF-8) |
//! | header length | value length | the value |
//!
//! A file whose magic, version, lengths (the file must be exactly header +
//! value long), checksums or UTF-8 do not check out, or whose key does
//! not hash to its name, is corrupt: it reads as a miss, is removed, is
//! counted in [`Stats::corrupt`](crate::Stats::corrupt) and logged at
//! `warn`. Reads never panic on any file content.
//!
//! # Writes and crashes
//!
//! A write goes to a temporary file `.tmp-<random>` in the entry's
//! directory, is flushed with `fsync` if asked, and is renamed over the
//! entry (then the directory is flushed too, with `fsync`). A reader sees
//! the old entry or the new one, never a part. A process killed in the
//! middle leaves at most a temporary file, which scans (`open`,
//! `purge_expired`) and `clear` remove once it is ten minutes old.
//! Without `fsync` a machine crash (not a process crash) may lose recent
//! writes; they read as misses.
//!
//! # Concurrency
//!
//! Several processes (and several `FileBackend`s in one process) may
//! share a directory. Every change of an entry file happens under a
//! striped lock: a mutex for this backend's threads plus, on Unix, an
//! exclusive `flock` of one of 64 lock files, which the kernel releases
//! when a process dies. Hence `incr`, conditional `set`s and `touch` are
//! atomic across processes on Unix ([`Capabilities::atomic_incr`] and
//! [`Capabilities::conditional_set`] are true there; elsewhere they are
//! false: atomic within one `FileBackend` only). Reads take no lock.
//!
//! # Bounds, eviction and the index
//!
//! Each `FileBackend` keeps an in-memory index of the entries it knows
//! (hash → file size, last use, tags), built by one scan of the directory
//! at open (headers only). Writes and reads update it; when it holds more
//! than `max_entries` entries or `max_bytes` bytes of files, the least
//! recently used entry is removed (LRU by this process's uses; after a
//! reopen, by the time of the last write). No write scans the directory.
//!
//! The files are the truth and the index only names candidates, which are
//! checked against their files before anything is removed. But an index
//! learns of other processes' entries lazily: when it reads them, or at
//! the next full scan ([`purge_expired`](crate::Backend::purge_expired)).
//! So with several writing processes, each keeps the bounds over the
//! entries it knows, and the directory may hold more until a scan; call
//! `purge_expired` now and then to resynchronise.
//! [`Stats::entries`](crate::Stats::entries) and `bytes` are the index's
//! view.
//!
//! # TTL and tags
//!
//! Deadlines are absolute Unix milliseconds from the system clock
//! (millisecond precision). An expired entry reads as a miss and is
//! removed by the read; `purge_expired` scans the whole directory and
//! removes every expired entry (and corrupt files and stale temporary
//! files). `touch` rewrites the entry with a new header (temporary file
//! and rename).
//!
//! Tags live in each entry's header; `invalidate_tags` finds candidates in
//! the in-memory tag index and checks each file's header before removing
//! it. Like the bounds, the tag index learns of other processes' entries
//! when it reads them or at a scan: entries another process tagged after
//! this one's last scan and that this one never read are not invalidated.
//!
//! # Limits and costs
//!
//! - Keys up to 4096 bytes (`max_key_len`), values up to
//!   [`FileBackend::MAX_VALUE_LEN`] (512 MiB, or `max_value_len`); under `max_bytes` a whole
//!   entry must fit in the bound, and the key limit is at most a quarter
//!   of it. Tags and key together at most 16 MiB.
//! - `get` reads the whole file and checks both checksums; `exists`,
//!   `ttl`, conditional `set`s and `keys` read the header only (a damaged
//!   value is found when it is read). `keys` scans the directory and
//!   streams the keys.
//! - File I/O never blocks the async runtime: on a multi-threaded runtime
//!   it runs in `tokio::task::block_in_place` (no hop to another thread:
//!   a 4 KiB read costs about what `std::fs::read` does), on a
//!   current-thread runtime on the blocking thread pool (`spawn_blocking`).
//!   `keys` walks the directory on the blocking pool in either case. A
//!   panic in file I/O is an [`ErrorKind::Backend`](crate::ErrorKind::Backend) error of the
//!   operation, logged at error level (the policy of every backend, see
//!   `backends/common.rs`). An
//!   operation under way is not interrupted by a timeout around it (an
//!   `fsync` or a 512 MiB value takes what it takes).

mod builder;
mod files;
pub(crate) mod format;
mod index;
mod lock;
mod store;
pub(crate) mod url;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::runtime::RuntimeFlavor;

use crate::backend::{Backend, Capabilities, Expiry, KeyStream, KeyTtl, SetOptions, Stats};
use crate::backends::common::{self, BASE_CAPABILITIES, Limits, now_ms};
use crate::error::{Error, Result};

pub use builder::FileBuilder;
use store::Store;

pub(crate) const NAME: &str = "file";

/// An operation that took longer yields to the runtime right away.
const SLOW_OPERATION: std::time::Duration = std::time::Duration::from_millis(1);

/// The longest value the file backend stores: 512 MiB.
const MAX_VALUE_LEN: usize = 512 << 20;

/// The file backend. Cheap to clone: clones share the index and locks.
/// See the [module docs](self) for the URL, the format and the
/// guarantees.
#[derive(Clone)]
pub struct FileBackend {
    store: Arc<Store>,
}

impl fmt::Debug for FileBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let options = &self.store.options;
        f.debug_struct("FileBackend")
            .field("dir", &self.store.root)
            .field("max_entries", &options.max_entries)
            .field("max_bytes", &options.max_bytes)
            .field("default_ttl", &options.limits.default_ttl)
            .field("fsync", &options.fsync)
            .finish()
    }
}

impl FileBackend {
    /// The longest value accepted without a byte bound: 512 MiB.
    pub const MAX_VALUE_LEN: usize = MAX_VALUE_LEN;

    /// A builder for a cache in `dir`: unbounded, no default TTL, no
    /// `fsync`, refusing a non-empty directory that is not a cache.
    pub fn builder(dir: impl Into<PathBuf>) -> FileBuilder {
        FileBuilder::new(dir.into())
    }

    /// The cache directory (absolute).
    pub fn dir(&self) -> &std::path::Path {
        &self.store.root
    }

    /// The path of the file that holds (or would hold) `key`: where to
    /// look when debugging. Nothing needs to exist there.
    pub fn entry_path(&self, key: &str) -> PathBuf {
        self.store.entry_path(format::key_hash(key))
    }

    /// The capabilities of a file backend with default options, on this
    /// platform.
    pub fn default_capabilities() -> Capabilities {
        Capabilities {
            atomic_incr: lock::CROSS_PROCESS,
            conditional_set: lock::CROSS_PROCESS,
            persistent: true,
            shared: true,
            max_value_len: Some(MAX_VALUE_LEN),
            ..BASE_CAPABILITIES
        }
    }

    fn limits(&self) -> &Limits {
        &self.store.options.limits
    }

    /// Checks a whole entry against the limits before any I/O.
    fn check_entry(&self, key: &str, value: &[u8], tags: &[String]) -> Result<()> {
        let options = &self.store.options;
        options.limits.check_key(key)?;
        options.limits.check_value(value)?;
        let overhead = store::overhead(key, tags);
        if overhead > format::MAX_HEADER_LEN || tags.iter().any(|t| t.len() > u32::MAX as usize) {
            return Err(Error::invalid_input(
                NAME,
                format!(
                    "the key and tags take {overhead} bytes; the limit of this backend is {} bytes",
                    format::MAX_HEADER_LEN
                ),
            ));
        }
        if let Some(max_bytes) = options.max_bytes {
            let size = (overhead + value.len()) as u64;
            if size > max_bytes {
                return Err(Error::invalid_input(
                    NAME,
                    format!(
                        "the entry takes {size} bytes (header, key, tags and value); \
                         the limit of this backend is max_bytes = {max_bytes} bytes"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The absolute deadline (Unix ms, 0 = never) of an expiry from now.
    fn deadline(&self, expiry: Expiry) -> Result<u64> {
        self.limits().deadline(expiry, now_ms())
    }

    /// Runs `f`, which does file I/O, without blocking the runtime: in
    /// `block_in_place` on a multi-threaded runtime (no thread hop, the
    /// worker's other tasks move to another thread), on the blocking
    /// thread pool otherwise.
    ///
    /// `block_in_place` never returns `Pending`, so a loop of fast
    /// operations would starve the futures joined or selected with it: an
    /// operation yields after it took long (an `fsync`, a large value),
    /// and otherwise spends tokio's cooperative budget, which yields every
    /// 128 operations.
    async fn blocking<T, F>(&self, operation: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T> + Send + 'static,
    {
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|handle| handle.runtime_flavor() == RuntimeFlavor::MultiThread);
        if multi_thread {
            let started = std::time::Instant::now();
            let result = tokio::task::block_in_place(|| {
                common::catch_panic(NAME, operation, || f(&self.store))
            });
            if started.elapsed() > SLOW_OPERATION {
                tokio::task::yield_now().await;
            } else {
                tokio::task::consume_budget().await;
            }
            return result.map_err(|e| e.with_operation(operation));
        }
        let store = Arc::clone(&self.store);
        common::on_blocking_pool(NAME, operation, move || f(&store)).await
    }
}

#[async_trait]
impl Backend for FileBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        self.limits().advertise(Self::default_capabilities())
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.limits().check_key(key)?;
        let key = key.to_owned();
        self.blocking("get", move |store| store.get(&key)).await
    }

    async fn set(&self, key: &str, value: Bytes, options: &SetOptions) -> Result<bool> {
        self.check_entry(key, &value, &options.tags)?;
        let expires_at = self.deadline(options.expiry)?;
        let (key, tags, condition) = (key.to_owned(), options.tags.clone(), options.condition);
        self.blocking("set", move |store| {
            store.set(&key, &value, &tags, expires_at, condition)
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        self.limits().check_key(key)?;
        let key = key.to_owned();
        self.blocking("delete", move |store| store.delete(&key))
            .await
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        self.limits().check_key(key)?;
        let key = key.to_owned();
        self.blocking("exists", move |store| store.exists(&key))
            .await
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>> {
        self.limits().check_keys(keys)?;
        let keys: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
        self.blocking("get_many", move |store| {
            keys.iter().map(|key| store.get(key)).collect()
        })
        .await
    }

    async fn set_many(&self, entries: &[(&str, Bytes)], options: &SetOptions) -> Result<Vec<bool>> {
        for (key, value) in entries {
            self.check_entry(key, value, &options.tags)?;
        }
        let expires_at = self.deadline(options.expiry)?;
        let entries: Vec<(String, Bytes)> = entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        let (tags, condition) = (options.tags.clone(), options.condition);
        self.blocking("set_many", move |store| {
            entries
                .iter()
                .map(|(key, value)| store.set(key, value, &tags, expires_at, condition))
                .collect()
        })
        .await
    }

    async fn delete_many(&self, keys: &[&str]) -> Result<u64> {
        self.limits().check_keys(keys)?;
        let keys: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
        self.blocking("delete_many", move |store| {
            let mut removed = 0;
            for key in &keys {
                removed += u64::from(store.delete(key)?);
            }
            Ok(removed)
        })
        .await
    }

    async fn incr(&self, key: &str, delta: i64, expiry: Expiry) -> Result<i64> {
        self.limits().check_key(key)?;
        let expires_at = self.deadline(expiry)?;
        let key = key.to_owned();
        self.blocking("incr", move |store| store.incr(&key, delta, expires_at))
            .await
    }

    async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        self.limits().check_key(key)?;
        let key = key.to_owned();
        self.blocking("ttl", move |store| store.ttl(&key)).await
    }

    async fn touch(&self, key: &str, expiry: Expiry) -> Result<bool> {
        self.limits().check_key(key)?;
        let expires_at = self.deadline(expiry)?;
        let key = key.to_owned();
        self.blocking("touch", move |store| store.touch(&key, expires_at))
            .await
    }

    async fn clear(&self) -> Result<()> {
        self.blocking("clear", |store| store.clear()).await
    }

    async fn keys(&self, pattern: &str) -> Result<KeyStream> {
        let (sender, receiver) = tokio::sync::mpsc::channel::<Result<String>>(256);
        let pattern = pattern.to_owned();
        let store = Arc::clone(&self.store);
        // The walk runs on a blocking thread (tokio's, or a thread of its
        // own outside a runtime) and hands keys over as the stream is
        // polled; dropping the stream stops it.
        let walk = move || {
            let listed = common::catch_panic(NAME, "keys", || {
                store.list_keys(&pattern, &mut |key| sender.blocking_send(Ok(key)).is_ok())
            });
            if let Err(error) = listed {
                let _ = sender.blocking_send(Err(error.with_operation("keys")));
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(walk)),
            Err(_) => drop(std::thread::spawn(walk)),
        }
        Ok(Box::pin(futures_util::stream::unfold(
            receiver,
            |mut receiver| async move { receiver.recv().await.map(|item| (item, receiver)) },
        )))
    }

    async fn invalidate_tags(&self, tags: &[&str]) -> Result<u64> {
        let tags: Vec<String> = tags.iter().map(|t| (*t).to_owned()).collect();
        self.blocking("invalidate_tags", move |store| {
            let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
            store.invalidate_tags(&tags)
        })
        .await
    }

    async fn purge_expired(&self) -> Result<u64> {
        self.blocking("purge_expired", |store| store.scan(false))
            .await
    }

    async fn stats(&self) -> Result<Stats> {
        let (entries, bytes) = self.store.size();
        let mut stats = Stats {
            entries,
            bytes,
            ..Stats::default()
        };
        self.store.counters.fill(&mut stats);
        Ok(stats)
    }

    async fn health(&self) -> Result<()> {
        self.blocking("health", |store| store.health()).await
    }
}
