//! The object-storage backend (feature `object`, with `s3`, `gcs` and
//! `azure` for the clouds): one object per entry on Apache Arrow's
//! `object_store`, for large values that are expensive to compute and
//! cheap to keep — rendered pages, model outputs, query results.
//!
//! - **URLs:** `s3://bucket/prefix?region=…&endpoint=…&allow_http=true`,
//!   `gs://bucket/prefix`, `az://container/prefix`, `object+file:///dir`
//!   (see [`url`]). Credentials come from the environment and the usual
//!   provider chains (`AWS_ACCESS_KEY_ID`, …), never from the URL, and are
//!   never shown.
//! - **Layout:** see [`layout`]: entries under `{prefix}/e/`, names that
//!   are safe in every store and decode back to their keys (digests for
//!   keys too long for a name, with the key in the object), and the
//!   expiry, tags and key in a small header inside the object, so that one
//!   GET answers everything and local files work like buckets.
//! - **Expiry:** an expired object is a miss and is deleted as it is
//!   found; `purge_expired` walks the prefix in pages and reads only each
//!   object's first 16 bytes. Deadlines are the writer's wall clock in
//!   milliseconds.
//! - **Conditional writes:** only-if-absent is `PutMode::Create`,
//!   only-if-present and counters are compare-and-swap on the ETag
//!   (`PutMode::Update`), on S3, GCS and Azure. Local files have no
//!   conditional update: there `conditional_set` and `atomic_incr` are
//!   false (only-if-absent stays atomic) and the capabilities say so.
//! - **Batches:** `get_many` runs up to `concurrency` requests at once;
//!   `delete_many` and `clear` use the store's bulk delete.
//! - **Tags:** a tag index of empty marker objects, `{prefix}/t/{tag}/{name}`,
//!   written before the entry; `invalidate_tags` lists a tag's markers and
//!   deletes the entries that still carry the tag (an entry rewritten
//!   without it is left alone), then the markers.
//! - **Large values** (over `multipart_threshold`, 8 MiB by default) are
//!   written with a multipart upload when the write has no condition.

pub mod builder;
pub mod layout;
pub mod url;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    UpdateVersion, WriteMultipart,
};

use crate::backend::{
    Backend, Capabilities, Expiry, KeyStream, KeyTtl, SetCondition, SetOptions, Stats,
    add_to_counter, format_counter,
};
use crate::backends::common::{
    BASE_CAPABILITIES, Counters, Event, Limits, back_off, checked_tags, now_ms,
};
use crate::error::{Error, ErrorKind, Result};

pub use builder::ObjectBuilder;
use layout::Entry;
/// The `object_store` crate this backend is built on, to build a store
/// of your own for [`ObjectBackend::builder`].
pub use object_store;

pub(crate) const NAME: &str = "object";

/// How often a compare-and-swap starts again before it gives up (the
/// operation's timeout usually ends it first).
const MAX_ATTEMPTS: usize = 256;

/// Waits before compare-and-swap attempt `attempt` of [`MAX_ATTEMPTS`]
/// (not before the first): a lost race backs off with jitter.
async fn pause_before(attempt: usize) {
    if attempt > 0 {
        back_off(
            u32::try_from(attempt).unwrap_or(u32::MAX),
            Duration::from_millis(1),
            Duration::from_millis(100),
        )
        .await;
    }
}

/// The most tags of one entry, and the longest tag (a marker's name).
const MAX_TAGS: usize = 64;
const MAX_TAG_LEN: usize = 256;

/// A cache in an object store. Build it with [`ObjectBackend::builder`]
/// or from an `s3://`, `gs://`, `az://` or `object+file://` URL.
#[derive(Clone)]
pub struct ObjectBackend {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn ObjectStore>,
    /// `{prefix}/e`.
    entries: Path,
    /// `{prefix}/t`.
    tags: Path,
    /// The prefix itself, for `clear`.
    root: Path,
    /// Whether the store has `PutMode::Update` (compare-and-swap).
    conditional_update: bool,
    limits: Limits,
    concurrency: usize,
    multipart_threshold: usize,
    timeout: Duration,
    counters: Counters,
    shown: String,
}

impl fmt::Debug for ObjectBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectBackend")
            .field("store", &self.inner.shown)
            .field("prefix", &self.inner.root.as_ref())
            .finish_non_exhaustive()
    }
}

/// What a read found.
enum Found {
    /// A live entry, and the version of its object.
    Live(Entry, Option<UpdateVersion>),
    /// An object that is expired, corrupt, foreign or another key's (a
    /// digest collision): to be replaced, if still this version. Expired
    /// objects are left to `purge_expired`: deleting one here could
    /// delete a newer object written meanwhile.
    Dead(Option<UpdateVersion>),
    Missing,
}

/// The version of an object a compare-and-swap expects: its ETag, and
/// the generation where the store has one (GCS needs it).
fn version_of(meta: &object_store::ObjectMeta) -> Option<UpdateVersion> {
    meta.e_tag.as_ref().map(|e_tag| UpdateVersion {
        e_tag: Some(e_tag.clone()),
        version: meta.version.clone(),
    })
}

impl ObjectBackend {
    /// A builder over any `object_store` store (see [`ObjectBuilder`]).
    pub fn builder(store: Arc<dyn ObjectStore>) -> ObjectBuilder {
        ObjectBuilder::new(store)
    }

    /// What an object-storage backend offers before the store narrows it.
    pub fn default_capabilities() -> Capabilities {
        Capabilities {
            persistent: true,
            shared: true,
            ..BASE_CAPABILITIES
        }
    }

    fn path_of(&self, key: &str) -> Result<(Path, bool)> {
        self.inner.limits.check_key(key)?;
        let (name, digest) = layout::name_of(key);
        Ok((self.inner.entries.clone().join(name), digest))
    }

    /// Runs `work` within the operation's deadline.
    async fn timed<T>(
        &self,
        operation: &'static str,
        work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.inner.timeout, work).await {
            Ok(outcome) => outcome.map_err(|err| err.with_operation(operation)),
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                NAME,
                format!(
                    "no answer from {} within {:?}",
                    self.inner.shown, self.inner.timeout
                ),
            )
            .with_operation(operation)),
        }
    }

    /// Reads the object of `key` and judges it at `now`.
    async fn read(&self, key: &str, path: &Path, digest: bool, now: u64) -> Result<Found> {
        let result = match self.inner.store.get(path).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(Found::Missing),
            Err(err) => return Err(store_error(err)),
        };
        let e_tag = version_of(&result.meta);
        let bytes = result.bytes().await.map_err(store_error)?;
        let Some(entry) = layout::decode(bytes) else {
            self.inner.counters.bump(Event::Corrupt);
            return Ok(Found::Dead(e_tag));
        };
        let owner = match (&entry.key, digest) {
            (Some(stored), true) => stored == key,
            (None, false) => true,
            _ => false,
        };
        if !owner {
            return Ok(Found::Dead(e_tag));
        }
        if entry.expired(now) {
            return Ok(Found::Dead(e_tag));
        }
        Ok(Found::Live(entry, e_tag))
    }

    /// The expiry of `key`'s live object, from its first bytes only (a
    /// ranged GET: a large value is not downloaded); `None` if it is
    /// missing, expired, not an entry or another key's.
    async fn read_head(
        &self,
        key: &str,
        path: &Path,
        digest: bool,
        now: u64,
    ) -> Result<Option<u64>> {
        let len = layout::FIXED_LEN + if digest { key.len() } else { 0 };
        let Some(head) = first_bytes(&*self.inner.store, path, len).await? else {
            return Ok(None);
        };
        let Some((expires_at, key_len)) = layout::fixed(&head) else {
            return Ok(None);
        };
        let owner = if digest {
            key_len == key.len() && head.get(layout::FIXED_LEN..) == Some(key.as_bytes())
        } else {
            key_len == 0
        };
        let live = expires_at == 0 || expires_at > now;
        Ok((owner && live).then_some(expires_at))
    }

    /// Writes `bytes` to `path` with `mode`: `Ok(false)` when the mode's
    /// condition failed.
    async fn write(&self, path: &Path, bytes: Bytes, mode: PutMode) -> Result<bool> {
        if matches!(mode, PutMode::Overwrite) && bytes.len() > self.inner.multipart_threshold {
            let upload = self
                .inner
                .store
                .put_multipart(path)
                .await
                .map_err(store_error)?;
            let mut writer = WriteMultipart::new(upload);
            writer.put(bytes);
            writer.finish().await.map_err(store_error)?;
            return Ok(true);
        }
        match self
            .inner
            .store
            .put_opts(path, PutPayload::from_bytes(bytes), PutOptions::from(mode))
            .await
        {
            Ok(_) => Ok(true),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(false),
            Err(err) => Err(store_error(err)),
        }
    }

    /// Replaces the object read as `found` (absent, or that version):
    /// atomically where the store compares versions, by overwriting
    /// otherwise.
    async fn replace(
        &self,
        path: &Path,
        bytes: Bytes,
        found: Option<UpdateVersion>,
    ) -> Result<bool> {
        let mode = match found {
            None => PutMode::Create,
            Some(version) if self.inner.conditional_update => PutMode::Update(version),
            Some(_) => PutMode::Overwrite,
        };
        self.write(path, bytes, mode).await
    }

    /// Writes the tag markers of an entry named `name`.
    async fn mark(&self, tags: &[String], path: &Path) -> Result<()> {
        let Some(name) = path.filename() else {
            return Ok(());
        };
        let markers: Vec<_> = tags
            .iter()
            .map(|tag| {
                let marker = self
                    .inner
                    .tags
                    .clone()
                    .join(layout::name_of(tag).0)
                    .join(name);
                async move {
                    self.inner
                        .store
                        .put(&marker, PutPayload::new())
                        .await
                        .map(|_| ())
                        .map_err(store_error)
                }
            })
            .collect();
        futures_util::stream::iter(markers)
            .buffer_unordered(self.inner.concurrency)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    async fn set_one(&self, key: &str, value: &Bytes, options: &SetOptions) -> Result<bool> {
        let (path, digest) = self.path_of(key)?;
        self.inner.limits.check_value(value)?;
        let now = now_ms();
        let expires_at = self.inner.limits.deadline(options.expiry, now)?;
        let tags = checked_tags(NAME, &options.tags, MAX_TAGS, 1..=MAX_TAG_LEN)?;
        let bytes = layout::encode(expires_at, digest.then_some(key), &tags, value);
        if !tags.is_empty() {
            self.mark(&tags, &path).await?;
        }
        let written = match options.condition {
            SetCondition::Always => self.write(&path, bytes, PutMode::Overwrite).await?,
            SetCondition::IfAbsent => {
                let mut outcome = None;
                for attempt in 0..MAX_ATTEMPTS {
                    pause_before(attempt).await;
                    if self.write(&path, bytes.clone(), PutMode::Create).await? {
                        outcome = Some(true);
                        break;
                    }
                    match self.read(key, &path, digest, now).await? {
                        Found::Live(..) => {
                            outcome = Some(false);
                            break;
                        }
                        Found::Dead(e_tag) => {
                            if self.replace(&path, bytes.clone(), e_tag).await? {
                                outcome = Some(true);
                                break;
                            }
                        }
                        Found::Missing => {}
                    }
                }
                outcome.ok_or_else(|| contended("set"))?
            }
            SetCondition::IfPresent => {
                let mut outcome = None;
                for attempt in 0..MAX_ATTEMPTS {
                    pause_before(attempt).await;
                    match self.read(key, &path, digest, now).await? {
                        Found::Live(_, e_tag) => {
                            if self.replace(&path, bytes.clone(), e_tag).await? {
                                outcome = Some(true);
                                break;
                            }
                        }
                        Found::Dead(_) | Found::Missing => {
                            outcome = Some(false);
                            break;
                        }
                    }
                }
                outcome.ok_or_else(|| contended("set"))?
            }
        };
        if written {
            self.inner.counters.bump(Event::Insert);
        }
        Ok(written)
    }

    async fn get_one(&self, key: &str) -> Result<Option<Bytes>> {
        let (path, digest) = self.path_of(key)?;
        let found = self.read(key, &path, digest, now_ms()).await?;
        Ok(match found {
            Found::Live(entry, _) => {
                self.inner.counters.bump(Event::Hit);
                Some(entry.value)
            }
            _ => {
                self.inner.counters.bump(Event::Miss);
                None
            }
        })
    }

    /// The live entries' keys under the prefix, with their paths: from
    /// the names, or from the header of digest-named objects; expired
    /// objects are skipped (their first bytes are read).
    fn walk(
        &self,
    ) -> impl futures_util::Stream<Item = Result<(Path, Option<String>, u64)>> + Send + 'static
    {
        let backend = self.clone();
        let listing = self.inner.store.list(Some(&self.inner.entries));
        listing
            .map(move |meta| {
                let backend = backend.clone();
                async move {
                    let meta = meta.map_err(store_error)?;
                    let name = meta.location.filename().unwrap_or("").to_owned();
                    let extra = if layout::is_digest(&name) { 4096 } else { 0 };
                    let len = layout::FIXED_LEN + extra;
                    let Some(head) =
                        first_bytes(&*backend.inner.store, &meta.location, len).await?
                    else {
                        return Ok(None);
                    };
                    let Some((expires_at, key_len)) = layout::fixed(&head) else {
                        return Ok(Some((meta.location, None, 0)));
                    };
                    let key = if layout::is_digest(&name) {
                        head.get(layout::FIXED_LEN..layout::FIXED_LEN + key_len)
                            .and_then(|key| String::from_utf8(key.to_vec()).ok())
                    } else {
                        layout::key_of(&name)
                    };
                    Ok(Some((meta.location, key, expires_at)))
                }
            })
            .buffer_unordered(self.inner.concurrency)
            .try_filter_map(|found| async move { Ok(found) })
    }
}

#[async_trait]
impl Backend for ObjectBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = self.inner.limits.advertise(Self::default_capabilities());
        caps.conditional_set = self.inner.conditional_update;
        caps.atomic_incr = self.inner.conditional_update;
        caps
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.timed("get", self.get_one(key)).await
    }

    async fn set(&self, key: &str, value: Bytes, options: &SetOptions) -> Result<bool> {
        self.timed("set", self.set_one(key, &value, options)).await
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        let work = async {
            let (path, digest) = self.path_of(key)?;
            let existed = self
                .read_head(key, &path, digest, now_ms())
                .await?
                .is_some();
            match self.inner.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(err) => return Err(store_error(err)),
            }
            if existed {
                self.inner.counters.bump(Event::Delete);
            }
            Ok(existed)
        };
        self.timed("delete", work).await
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        let work = async {
            let (path, digest) = self.path_of(key)?;
            Ok(self
                .read_head(key, &path, digest, now_ms())
                .await?
                .is_some())
        };
        self.timed("exists", work).await
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>> {
        self.inner.limits.check_keys(keys)?;
        let reads: Vec<_> = keys.iter().map(|key| self.get_one(key)).collect();
        let work = futures_util::stream::iter(reads)
            .buffered(self.inner.concurrency)
            .try_collect::<Vec<_>>();
        self.timed("get_many", work).await
    }

    async fn set_many(&self, entries: &[(&str, Bytes)], options: &SetOptions) -> Result<Vec<bool>> {
        self.inner.limits.check_entries(entries)?;
        // One key written twice: the later write wins, so writes of one
        // key run in order; distinct keys run at once.
        let mut last = std::collections::HashMap::new();
        for (index, (key, _)) in entries.iter().enumerate() {
            last.insert(*key, index);
        }
        if options.condition != SetCondition::Always || last.len() != entries.len() {
            let mut out = Vec::with_capacity(entries.len());
            for (key, value) in entries {
                out.push(self.set(key, value.clone(), options).await?);
            }
            return Ok(out);
        }
        let writes: Vec<_> = entries
            .iter()
            .map(|(key, value)| self.set_one(key, value, options))
            .collect();
        let work = futures_util::stream::iter(writes)
            .buffered(self.inner.concurrency)
            .try_collect::<Vec<_>>();
        self.timed("set_many", work).await
    }

    async fn delete_many(&self, keys: &[&str]) -> Result<u64> {
        self.inner.limits.check_keys(keys)?;
        let mut distinct: Vec<&str> = keys.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        let work = async {
            let checks: Vec<_> = distinct.iter().map(|key| self.exists(key)).collect();
            let live = futures_util::stream::iter(checks)
                .buffered(self.inner.concurrency)
                .try_collect::<Vec<bool>>()
                .await?;
            let paths: Vec<Path> = distinct
                .iter()
                .map(|key| self.path_of(key).map(|(path, _)| path))
                .collect::<Result<_>>()?;
            self.delete_paths(paths).await?;
            let removed = live.iter().filter(|live| **live).count() as u64;
            self.inner.counters.add(Event::Delete, removed);
            Ok(removed)
        };
        self.timed("delete_many", work).await
    }

    async fn incr(&self, key: &str, delta: i64, expiry: Expiry) -> Result<i64> {
        let work = async {
            let (path, digest) = self.path_of(key)?;
            for attempt in 0..MAX_ATTEMPTS {
                pause_before(attempt).await;
                let now = now_ms();
                let (value, expires_at, tags, e_tag) =
                    match self.read(key, &path, digest, now).await? {
                        Found::Live(entry, e_tag) => {
                            let value = add_to_counter(NAME, &entry.value, delta)?;
                            (value, entry.expires_at, entry.tags, e_tag)
                        }
                        Found::Dead(e_tag) => {
                            let expires_at = self.inner.limits.deadline(expiry, now)?;
                            (delta, expires_at, Vec::new(), e_tag)
                        }
                        Found::Missing => {
                            let expires_at = self.inner.limits.deadline(expiry, now)?;
                            (delta, expires_at, Vec::new(), None)
                        }
                    };
                let bytes = layout::encode(
                    expires_at,
                    digest.then_some(key),
                    &tags,
                    &format_counter(value),
                );
                if self.replace(&path, bytes, e_tag).await? {
                    return Ok(value);
                }
            }
            Err(contended("incr"))
        };
        self.timed("incr", work).await
    }

    async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        let work = async {
            let (path, digest) = self.path_of(key)?;
            let now = now_ms();
            Ok(match self.read_head(key, &path, digest, now).await? {
                Some(0) => KeyTtl::Persistent,
                Some(expires_at) => {
                    KeyTtl::ExpiresIn(Duration::from_millis(expires_at.saturating_sub(now)))
                }
                None => KeyTtl::Missing,
            })
        };
        self.timed("ttl", work).await
    }

    async fn touch(&self, key: &str, expiry: Expiry) -> Result<bool> {
        let work = async {
            let (path, digest) = self.path_of(key)?;
            for attempt in 0..MAX_ATTEMPTS {
                pause_before(attempt).await;
                let now = now_ms();
                let (entry, e_tag) = match self.read(key, &path, digest, now).await? {
                    Found::Live(entry, e_tag) => (entry, e_tag),
                    _ => return Ok(false),
                };
                let expires_at = self.inner.limits.deadline(expiry, now)?;
                let bytes =
                    layout::encode(expires_at, entry.key.as_deref(), &entry.tags, &entry.value);
                if self.replace(&path, bytes, e_tag).await? {
                    return Ok(true);
                }
            }
            Err(contended("touch"))
        };
        self.timed("touch", work).await
    }

    async fn clear(&self) -> Result<()> {
        // The entries and the tag index only: whatever else lives under
        // the prefix (or the whole bucket, with no prefix) is not ours.
        let work = async {
            for folder in [&self.inner.entries, &self.inner.tags] {
                let paths: Vec<Path> = self
                    .inner
                    .store
                    .list(Some(folder))
                    .map_ok(|meta| meta.location)
                    .try_collect()
                    .await
                    .map_err(store_error)?;
                self.delete_paths(paths).await?;
            }
            Ok(())
        };
        self.timed("clear", work).await
    }

    async fn keys(&self, pattern: &str) -> Result<KeyStream> {
        let glob = crate::glob::Pattern::new(pattern);
        let now = now_ms();
        Ok(self
            .walk()
            .try_filter_map(move |(_, key, expires_at)| {
                let keep =
                    key.filter(|key| (expires_at == 0 || expires_at > now) && glob.matches(key));
                async move { Ok(keep) }
            })
            .boxed())
    }

    async fn invalidate_tags(&self, tags: &[&str]) -> Result<u64> {
        let work = async {
            let mut removed = 0;
            for tag in tags {
                let folder = self.inner.tags.clone().join(layout::name_of(tag).0);
                let markers: Vec<Path> = self
                    .inner
                    .store
                    .list(Some(&folder))
                    .map_ok(|meta| meta.location)
                    .try_collect()
                    .await
                    .map_err(store_error)?;
                let now = now_ms();
                let checks: Vec<_> = markers
                    .iter()
                    .map(|marker| {
                        let name = marker.filename().unwrap_or("").to_owned();
                        async move {
                            let path = self.inner.entries.clone().join(name.as_str());
                            let entry = match self.inner.store.get(&path).await {
                                Ok(result) => {
                                    layout::decode(result.bytes().await.map_err(store_error)?)
                                }
                                Err(object_store::Error::NotFound { .. }) => None,
                                Err(err) => return Err(store_error(err)),
                            };
                            Ok(entry
                                .filter(|entry| entry.tags.iter().any(|t| t == tag))
                                .map(|entry| (path, !entry.expired(now))))
                        }
                    })
                    .collect();
                let doomed: Vec<(Path, bool)> = futures_util::stream::iter(checks)
                    .buffer_unordered(self.inner.concurrency)
                    .try_filter_map(|found| async move { Ok(found) })
                    .try_collect()
                    .await?;
                removed += doomed.iter().filter(|(_, live)| *live).count() as u64;
                let mut paths: Vec<Path> = doomed.into_iter().map(|(path, _)| path).collect();
                paths.extend(markers);
                self.delete_paths(paths).await?;
            }
            self.inner.counters.add(Event::Invalidation, removed);
            Ok(removed)
        };
        self.timed("invalidate_tags", work).await
    }

    async fn purge_expired(&self) -> Result<u64> {
        let now = now_ms();
        let expired: Vec<Path> = self
            .walk()
            .try_filter_map(move |(path, _, expires_at)| async move {
                Ok((expires_at != 0 && expires_at <= now).then_some(path))
            })
            .try_collect()
            .await?;
        let count = expired.len() as u64;
        self.delete_paths(expired).await?;
        self.inner.counters.add(Event::Expiration, count);
        Ok(count)
    }

    async fn stats(&self) -> Result<Stats> {
        let mut stats = Stats::default();
        self.inner.counters.fill(&mut stats);
        Ok(stats)
    }

    async fn health(&self) -> Result<()> {
        let work = async {
            let probe = self.inner.root.clone().join("health-probe");
            match self.inner.store.head(&probe).await {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(err) => Err(store_error(err)),
            }
        };
        self.timed("health", work).await
    }
}

impl ObjectBackend {
    /// Deletes `paths` with the store's bulk delete; a path already gone
    /// is no error.
    async fn delete_paths(&self, paths: Vec<Path>) -> Result<()> {
        if paths.is_empty() {
            return Ok(());
        }
        let stream = futures_util::stream::iter(paths.into_iter().map(Ok)).boxed();
        let mut results = self.inner.store.delete_stream(stream);
        while let Some(result) = results.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(err) => return Err(store_error(err)),
            }
        }
        Ok(())
    }
}

/// The first `len` bytes of an object (fewer if it is shorter); `None` if
/// it is gone. A store refuses a range that starts past the end of an
/// empty object: the object's size then tells a short object from a
/// failure.
async fn first_bytes(store: &dyn ObjectStore, path: &Path, len: usize) -> Result<Option<Bytes>> {
    let options = GetOptions {
        range: Some(GetRange::Bounded(0..len as u64)),
        ..GetOptions::default()
    };
    match store.get_opts(path, options).await {
        Ok(result) => Ok(Some(result.bytes().await.map_err(store_error)?)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(err) => match store.head(path).await {
            Ok(meta) if meta.size < len as u64 => Ok(Some(Bytes::new())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            _ => Err(store_error(err)),
        },
    }
}

/// A store's failure as cachette's error: the kind from the error's
/// variant, or, for a request that failed, from the HTTP client's own
/// classification (never from the message, which names the key). The
/// store's messages name paths and HTTP statuses, never credentials.
fn store_error(err: object_store::Error) -> Error {
    let kind = match &err {
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => ErrorKind::PermissionDenied,
        object_store::Error::NotSupported { .. } | object_store::Error::NotImplemented { .. } => {
            ErrorKind::Unsupported
        }
        object_store::Error::InvalidPath { .. } => ErrorKind::InvalidInput,
        other => request_kind(other),
    };
    Error::new(kind, NAME, error_chain(&err))
}

/// `Connection` or `Timeout` for a request the network failed, `Backend`
/// for anything else.
fn request_kind(err: &(dyn std::error::Error + 'static)) -> ErrorKind {
    #[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
    {
        use object_store::client::{HttpError, HttpErrorKind};
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(cause) = source {
            if let Some(http) = cause.downcast_ref::<HttpError>() {
                return match http.kind() {
                    HttpErrorKind::Timeout => ErrorKind::Timeout,
                    HttpErrorKind::Connect
                    | HttpErrorKind::Request
                    | HttpErrorKind::Interrupted => ErrorKind::Connection,
                    _ => ErrorKind::Backend,
                };
            }
            source = cause.source();
        }
    }
    let _ = err;
    ErrorKind::Backend
}

/// An error and its sources, joined.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn contended(operation: &'static str) -> Error {
    Error::new(
        ErrorKind::Backend,
        NAME,
        format!("gave up after {MAX_ATTEMPTS} lost compare-and-swap attempts"),
    )
    .with_operation(operation)
}
