//! The blocking half of the file backend: the directory, its files and
//! the operations on them. Every method here does file I/O; the
//! [`FileBackend`](super::FileBackend) calls them on tokio's blocking
//! threads.

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use parking_lot::Mutex;

use super::NAME;
pub(super) use super::files::MARKER;
use super::files::{
    FileId, TEMP_PREFIX, create_dir, create_new_file, io_error, is_lower_hex, prepare_dir,
    read_head, read_whole, remove_stale_temp, sync_dir,
};
use super::format::{self, Corruption, FIXED_LEN, Header, decode_entry, key_hash, xxh64};
use super::index::Index;
use super::lock::{StripeGuard, StripeLocks};
use crate::backend::{KeyTtl, SetCondition, add_to_counter, format_counter};
use crate::backends::common::{Counters, Event, Limits, now_ms};
use crate::error::Result;

/// The options the store needs, checked by the builder.
#[derive(Debug, Clone)]
pub(super) struct Options {
    /// The key, value and expiry checks, made before any I/O.
    pub(super) limits: Limits,
    pub(super) fsync: bool,
    pub(super) max_entries: Option<u64>,
    pub(super) max_bytes: Option<u64>,
}

/// Why a file is removed; decides the counter.
#[derive(Debug, Clone, Copy)]
enum Removal {
    Deleted,
    Expired,
    Invalidated,
    Corrupt(Corruption),
}

/// What a read found at a key's path.
#[derive(Debug)]
enum Found {
    /// No file.
    Missing,
    /// A live entry of the key asked (or, in a scan, of its own key).
    Live {
        header: Header,
        size: u64,
        id: FileId,
    },
    /// A valid entry of another key with the same hash: a miss.
    Other,
    /// The key's entry, expired.
    Expired(FileId),
    /// Not a valid entry file.
    Corrupt(Corruption, FileId),
}

/// One item of a walk over the directory.
enum Item {
    Entry { hash: u128, path: PathBuf },
    Temp { path: PathBuf },
}

/// The blocking store.
pub(super) struct Store {
    pub(super) root: PathBuf,
    pub(super) options: Options,
    index: Mutex<Index>,
    locks: StripeLocks,
    pub(super) counters: Counters,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("root", &self.root)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the cache in `root` and builds the index with one
    /// scan.
    pub(super) fn open(root: PathBuf, options: Options, allow_non_empty: bool) -> Result<Store> {
        prepare_dir(&root, allow_non_empty)?;
        let locks = StripeLocks::open(&root)
            .map_err(|e| io_error("create the lock directory in", &root, e))?;
        let store = Store {
            root,
            options,
            index: Mutex::new(Index::default()),
            locks,
            counters: Counters::default(),
        };
        store.scan(true)?;
        Ok(store)
    }

    pub(super) fn entry_path(&self, hash: u128) -> PathBuf {
        let name = format!("{hash:032x}");
        let mut path = self.root.join(&name[..2]);
        path.push(&name[2..4]);
        path.push(name);
        path
    }

    fn lock(&self, hash: u128) -> Result<StripeGuard<'_>> {
        self.locks
            .lock(hash)
            .map_err(|e| io_error("lock a stripe of", &self.root, e))
    }

    /// Classifies a decoded file. `key` is the key asked, or `None` in a
    /// scan (then the key in the header must hash to the file's name).
    fn classify(
        decoded: Result<Header, Corruption>,
        size: u64,
        id: FileId,
        key: Option<&str>,
        hash: u128,
        now: u64,
    ) -> Found {
        let header = match decoded {
            Ok(header) => header,
            Err(corruption) => return Found::Corrupt(corruption, id),
        };
        let own = key.is_some_and(|key| key == header.key);
        if !own {
            if key_hash(&header.key) != hash {
                return Found::Corrupt(Corruption::Misplaced, id);
            }
            if key.is_some() {
                return Found::Other;
            }
        }
        if header.is_expired(now) {
            Found::Expired(id)
        } else {
            Found::Live { header, size, id }
        }
    }

    /// Reads the header of `key`'s file.
    fn peek(&self, key: Option<&str>, hash: u128, path: &Path) -> Result<Found> {
        let read = read_head(path).map_err(|e| io_error("read", path, e))?;
        Ok(match read {
            None => Found::Missing,
            Some((decoded, size, id)) => Self::classify(decoded, size, id, key, hash, now_ms()),
        })
    }

    /// Reads the whole file of `key`, checking the value's checksum.
    fn read(&self, key: &str, hash: u128, path: &Path) -> Result<(Found, Vec<u8>)> {
        let read = read_whole(path).map_err(|e| io_error("read", path, e))?;
        Ok(match read {
            None => (Found::Missing, Vec::new()),
            Some((bytes, id)) => {
                let found = Self::classify(
                    decode_entry(&bytes),
                    bytes.len() as u64,
                    id,
                    Some(key),
                    hash,
                    now_ms(),
                );
                (found, bytes)
            }
        })
    }

    /// Removes the file at `path` if it is still the file `id`, counting
    /// the removal. Takes the stripe lock unless the caller holds it.
    fn remove_if_same(
        &self,
        hash: u128,
        path: &Path,
        id: FileId,
        why: Removal,
        locked: bool,
    ) -> Result<bool> {
        let _guard = if locked { None } else { Some(self.lock(hash)?) };
        match fs::symlink_metadata(path) {
            Ok(meta) if FileId::of(&meta) == id => {}
            Ok(_) => return Ok(false),
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(error) => return Err(io_error("inspect", path, error)),
        }
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(error) => return Err(io_error("remove", path, error)),
        }
        self.index.lock().forget(hash);
        match why {
            Removal::Deleted => self.counters.bump(Event::Delete),
            Removal::Expired => self.counters.bump(Event::Expiration),
            Removal::Invalidated => self.counters.bump(Event::Invalidation),
            Removal::Corrupt(reason) => {
                self.counters.bump(Event::Corrupt);
                tracing::warn!(
                    path = %path.display(),
                    %reason,
                    "file backend: removed a corrupt entry file"
                );
            }
        }
        Ok(true)
    }

    /// Removes what a read found if it is expired or corrupt. Returns the
    /// live header, if any.
    fn settle(
        &self,
        hash: u128,
        path: &Path,
        found: Found,
        locked: bool,
    ) -> Result<Option<Header>> {
        match found {
            Found::Live { header, .. } => Ok(Some(header)),
            Found::Expired(id) => {
                self.remove_if_same(hash, path, id, Removal::Expired, locked)?;
                Ok(None)
            }
            Found::Corrupt(reason, id) => {
                self.remove_if_same(hash, path, id, Removal::Corrupt(reason), locked)?;
                Ok(None)
            }
            Found::Missing => {
                self.index.lock().forget(hash);
                Ok(None)
            }
            Found::Other => Ok(None),
        }
    }

    /// Writes an entry atomically: a temporary file in the entry's
    /// directory, optionally synced, renamed over the entry. Returns the
    /// file's size. The caller holds the stripe lock.
    fn write_entry(
        &self,
        hash: u128,
        key: &str,
        tags: &[String],
        expires_at: u64,
        value: &[u8],
        value_checksum: Option<u64>,
    ) -> Result<u64> {
        let checksum = value_checksum.unwrap_or_else(|| xxh64(value, 0));
        let header = format::encode_header(key, tags, expires_at, value.len() as u64, checksum);
        let path = self.entry_path(hash);
        let dir = path.parent().unwrap_or(&self.root);
        let (temp, mut file) = self.create_temp(dir)?;
        let written = (|| {
            file.write_all(&header)?;
            file.write_all(value)?;
            if self.options.fsync {
                file.sync_all()?;
            }
            drop(file);
            fs::rename(&temp, &path)?;
            if self.options.fsync {
                sync_dir(dir)?;
            }
            Ok(())
        })();
        if let Err(error) = written {
            let _ = fs::remove_file(&temp);
            return Err(io_error("write the entry", &path, error));
        }
        Ok((header.len() + value.len()) as u64)
    }

    /// Creates a fresh temporary file in `dir`, creating `dir` if needed.
    fn create_temp(&self, dir: &Path) -> Result<(PathBuf, File)> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let temp = dir.join(format!("{TEMP_PREFIX}{}", super::files::unique_suffix()));
            match create_new_file(&temp) {
                Ok(file) => return Ok((temp, file)),
                // Another writer drew the same name: draw again.
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists && attempts < 4 => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound && attempts < 4 => {
                    create_dir(dir).map_err(|e| io_error("create the directory", dir, e))?;
                    if self.options.fsync {
                        // Make the new fan-out directories durable too.
                        for parent in [dir.parent(), Some(self.root.as_path())]
                            .into_iter()
                            .flatten()
                        {
                            sync_dir(parent).map_err(|e| io_error("sync", parent, e))?;
                        }
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists && attempts < 4 => {}
                Err(error) => return Err(io_error("create a temporary file in", dir, error)),
            }
        }
    }

    /// Records an entry in the index (this process's most recent use) and
    /// evicts if a bound is exceeded. Returns whether it replaced one the
    /// index knew.
    fn record(&self, hash: u128, size: u64, tags: &[String]) -> bool {
        self.index.lock().record(hash, size, tags).is_some()
    }

    /// Evicts least recently used entries until the index is within the
    /// bounds. Call without holding a stripe lock.
    fn enforce_bounds(&self) -> Result<()> {
        let (max_entries, max_bytes) = (self.options.max_entries, self.options.max_bytes);
        loop {
            let victim = {
                let mut index = self.index.lock();
                if !index.over(max_entries, max_bytes) {
                    return Ok(());
                }
                index.pop_least_recent()
            };
            let Some((hash, _)) = victim else {
                return Ok(());
            };
            let _guard = self.lock(hash)?;
            if self.index.lock().contains(hash) {
                // Written or read again since it was chosen.
                continue;
            }
            let path = self.entry_path(hash);
            match fs::remove_file(&path) {
                Ok(()) => self.counters.bump(Event::Eviction),
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(io_error("evict", &path, error)),
            }
        }
    }

    pub(super) fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let hash = key_hash(key);
        let path = self.entry_path(hash);
        let (found, bytes) = self.read(key, hash, &path)?;
        let Some(header) = self.settle(hash, &path, found, false)? else {
            self.counters.bump(Event::Miss);
            return Ok(None);
        };
        self.counters.bump(Event::Hit);
        let size = bytes.len() as u64;
        self.record(hash, size, &header.tags);
        self.enforce_bounds()?;
        Ok(Some(Bytes::from(bytes).slice(header.header_len..)))
    }

    pub(super) fn exists(&self, key: &str) -> Result<bool> {
        let hash = key_hash(key);
        let path = self.entry_path(hash);
        let found = self.peek(Some(key), hash, &path)?;
        Ok(self.settle(hash, &path, found, false)?.is_some())
    }

    pub(super) fn ttl(&self, key: &str) -> Result<KeyTtl> {
        let hash = key_hash(key);
        let path = self.entry_path(hash);
        let found = self.peek(Some(key), hash, &path)?;
        Ok(match self.settle(hash, &path, found, false)? {
            None => KeyTtl::Missing,
            Some(header) if header.expires_at == 0 => KeyTtl::Persistent,
            Some(header) => {
                let left = header.expires_at.saturating_sub(now_ms()).max(1);
                KeyTtl::ExpiresIn(Duration::from_millis(left))
            }
        })
    }

    /// Writes `key` unless `condition` says otherwise; `expires_at` is
    /// absolute (0 = never).
    pub(super) fn set(
        &self,
        key: &str,
        value: &[u8],
        tags: &[String],
        expires_at: u64,
        condition: SetCondition,
    ) -> Result<bool> {
        let hash = key_hash(key);
        let guard = self.lock(hash)?;
        if condition != SetCondition::Always {
            let path = self.entry_path(hash);
            let found = self.peek(Some(key), hash, &path)?;
            let live = self.settle(hash, &path, found, true)?.is_some();
            let write = match condition {
                SetCondition::IfAbsent => !live,
                SetCondition::IfPresent | SetCondition::Always => live,
            };
            if !write {
                return Ok(false);
            }
        }
        let size = self.write_entry(hash, key, tags, expires_at, value, None)?;
        let replaced = self.record(hash, size, tags);
        drop(guard);
        self.counters.bump(if replaced {
            Event::Update
        } else {
            Event::Insert
        });
        self.enforce_bounds()?;
        Ok(true)
    }

    pub(super) fn delete(&self, key: &str) -> Result<bool> {
        let hash = key_hash(key);
        let path = self.entry_path(hash);
        let _guard = self.lock(hash)?;
        match self.peek(Some(key), hash, &path)? {
            Found::Live { id, .. } => self.remove_if_same(hash, &path, id, Removal::Deleted, true),
            found => {
                self.settle(hash, &path, found, true)?;
                Ok(false)
            }
        }
    }

    /// Adds `delta` to the counter at `key`; a missing counter is created
    /// with the absolute deadline `expires_at`.
    pub(super) fn incr(&self, key: &str, delta: i64, expires_at: u64) -> Result<i64> {
        let hash = key_hash(key);
        let path = self.entry_path(hash);
        let guard = self.lock(hash)?;
        let (found, bytes) = self.read(key, hash, &path)?;
        let (next, expires_at, tags) = match self.settle(hash, &path, found, true)? {
            Some(header) => (
                add_to_counter(NAME, &bytes[header.header_len..], delta)?,
                header.expires_at,
                header.tags,
            ),
            None => (delta, expires_at, Vec::new()),
        };
        let size = self.write_entry(hash, key, &tags, expires_at, &format_counter(next), None)?;
        let replaced = self.record(hash, size, &tags);
        drop(guard);
        self.counters.bump(if replaced {
            Event::Update
        } else {
            Event::Insert
        });
        self.enforce_bounds()?;
        Ok(next)
    }

    /// Replaces the deadline of a live key by rewriting its file.
    pub(super) fn touch(&self, key: &str, expires_at: u64) -> Result<bool> {
        let hash = key_hash(key);
        let path = self.entry_path(hash);
        let _guard = self.lock(hash)?;
        let (found, bytes) = self.read(key, hash, &path)?;
        let Some(header) = self.settle(hash, &path, found, true)? else {
            return Ok(false);
        };
        let value = &bytes[header.header_len..];
        let size = self.write_entry(
            hash,
            key,
            &header.tags,
            expires_at,
            value,
            Some(header.value_checksum),
        )?;
        self.record(hash, size, &header.tags);
        Ok(true)
    }

    /// Removes every entry file and stale temporary file; leaves every
    /// other file alone.
    pub(super) fn clear(&self) -> Result<()> {
        let now = SystemTime::now();
        self.walk(&mut |item| {
            match item {
                Item::Entry { hash, path } => {
                    let _guard = self.lock(hash)?;
                    match fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                        Err(error) => return Err(io_error("remove", &path, error)),
                    }
                }
                Item::Temp { path } => remove_stale_temp(&path, now),
            }
            Ok(ControlFlow::Continue(()))
        })?;
        self.index.lock().clear();
        Ok(())
    }

    /// Calls `emit` with every live key that matches `pattern` until it
    /// returns false.
    pub(super) fn list_keys(
        &self,
        pattern: &str,
        emit: &mut dyn FnMut(String) -> bool,
    ) -> Result<()> {
        let pattern = crate::glob::Pattern::new(pattern);
        self.walk(&mut |item| {
            let Item::Entry { hash, path } = item else {
                return Ok(ControlFlow::Continue(()));
            };
            let found = self.peek(None, hash, &path)?;
            if let Some(header) = self.settle(hash, &path, found, false)?
                && pattern.matches(&header.key)
                && !emit(header.key)
            {
                return Ok(ControlFlow::Break(()));
            }
            Ok(ControlFlow::Continue(()))
        })
    }

    /// Removes every live entry tagged with any of `tags`; returns how many.
    pub(super) fn invalidate_tags(&self, tags: &[&str]) -> Result<u64> {
        let candidates = self.index.lock().tagged(tags);
        let mut removed = 0;
        for hash in candidates {
            let path = self.entry_path(hash);
            let _guard = self.lock(hash)?;
            match self.peek(None, hash, &path)? {
                Found::Live { header, id, size } => {
                    if header.tags.iter().any(|t| tags.contains(&t.as_str())) {
                        if self.remove_if_same(hash, &path, id, Removal::Invalidated, true)? {
                            removed += 1;
                        }
                    } else {
                        // Rewritten with other tags (by another process).
                        self.record(hash, size, &header.tags);
                    }
                }
                found => {
                    self.settle(hash, &path, found, true)?;
                }
            }
        }
        Ok(removed)
    }

    /// Scans the whole directory: removes expired and corrupt entries and
    /// stale temporary files, and brings the index up to date with the
    /// files (including those other processes wrote). Returns how many
    /// expired entries were removed.
    pub(super) fn scan(&self, at_open: bool) -> Result<u64> {
        let start = self.index.lock().next_stamp();
        let now = SystemTime::now();
        let now_ms = now_ms();
        let mut removed = 0;
        let mut live = Vec::new();
        let mut seen = HashSet::new();
        self.walk(&mut |item| {
            match item {
                Item::Temp { path } => remove_stale_temp(&path, now),
                Item::Entry { hash, path } => {
                    let Some((decoded, size, id)) =
                        read_head(&path).map_err(|e| io_error("read", &path, e))?
                    else {
                        return Ok(ControlFlow::Continue(()));
                    };
                    match Self::classify(decoded, size, id, None, hash, now_ms) {
                        Found::Live { header, size, id } => {
                            seen.insert(hash);
                            live.push((id.modified(), hash, size, header.tags));
                        }
                        Found::Expired(id) => {
                            if self.remove_if_same(hash, &path, id, Removal::Expired, false)? {
                                removed += 1;
                            }
                        }
                        Found::Corrupt(reason, id) => {
                            self.remove_if_same(hash, &path, id, Removal::Corrupt(reason), false)?;
                        }
                        Found::Missing | Found::Other => {}
                    }
                }
            }
            Ok(ControlFlow::Continue(()))
        })?;
        {
            let mut index = self.index.lock();
            if at_open {
                // The order of last writes is the best guess of recency.
                live.sort_by_key(|(modified, ..)| *modified);
            }
            for (_, hash, size, tags) in &live {
                if !index.contains(*hash) {
                    index.record(*hash, *size, tags);
                }
            }
            index.retain_seen(&seen, start);
        }
        self.enforce_bounds()?;
        Ok(removed)
    }

    /// Entries and bytes the index knows.
    pub(super) fn size(&self) -> (u64, u64) {
        let index = self.index.lock();
        (index.len(), index.bytes())
    }

    /// Checks that the directory and its marker are still there.
    pub(super) fn health(&self) -> Result<()> {
        let marker = self.root.join(MARKER);
        fs::metadata(&marker)
            .map(|_| ())
            .map_err(|e| io_error("find the cache marker", &marker, e))
    }

    /// Visits every entry file and temporary file under the fan-out
    /// directories; nothing else.
    fn walk(&self, visit: &mut dyn FnMut(Item) -> Result<ControlFlow<()>>) -> Result<()> {
        let read = |dir: &Path| -> Result<Option<Vec<fs::DirEntry>>> {
            match fs::read_dir(dir) {
                Ok(entries) => entries
                    .collect::<io::Result<Vec<_>>>()
                    .map(Some)
                    .map_err(|e| io_error("list", dir, e)),
                Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(error) => Err(io_error("list", dir, error)),
            }
        };
        let is_dir = |entry: &fs::DirEntry| entry.file_type().is_ok_and(|t| t.is_dir());
        for top in read(&self.root)?.unwrap_or_default() {
            let top_name = top.file_name();
            let Some(top_name) = top_name.to_str().filter(|n| is_lower_hex(n, 2)) else {
                continue;
            };
            if !is_dir(&top) {
                continue;
            }
            for second in read(&top.path())?.unwrap_or_default() {
                let second_name = second.file_name();
                let Some(second_name) = second_name.to_str().filter(|n| is_lower_hex(n, 2)) else {
                    continue;
                };
                if !is_dir(&second) {
                    continue;
                }
                for file in read(&second.path())?.unwrap_or_default() {
                    let name = file.file_name();
                    let Some(name) = name.to_str() else { continue };
                    let item = if name.starts_with(TEMP_PREFIX) {
                        Item::Temp { path: file.path() }
                    } else if is_lower_hex(name, 32)
                        && name[..2] == *top_name
                        && name[2..4] == *second_name
                        && let Ok(hash) = u128::from_str_radix(name, 16)
                    {
                        Item::Entry {
                            hash,
                            path: file.path(),
                        }
                    } else {
                        continue;
                    };
                    if visit(item)?.is_break() {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }
}

/// The bytes an entry of this key and these tags takes besides its value.
pub(super) fn overhead(key: &str, tags: &[String]) -> usize {
    format::header_len(key, tags)
}

/// The fixed part of every entry's header, in bytes.
pub(super) const ENTRY_OVERHEAD: usize = FIXED_LEN;
