//! The builder of the file backend.

use std::path::PathBuf;
use std::sync::Arc;

use crate::backends::common::{BuilderLimits, Limits, shared_limit_setters};
use crate::error::{Error, Result};

use super::store::{ENTRY_OVERHEAD, Options, Store};
use super::{FileBackend, MAX_VALUE_LEN, NAME};

/// The longest key the builder accepts as `max_key_len`.
const MAX_KEY_LEN_LIMIT: usize = 1 << 20;

/// Builds a [`FileBackend`]. Every setter consumes and returns the
/// builder; [`build`](FileBuilder::build) validates, creates or checks the
/// directory and scans it.
///
/// ```
/// use std::time::Duration;
/// use cachette::backends::file::FileBackend;
///
/// let dir = std::env::temp_dir().join(format!("cachette-doc-builder-{}", std::process::id()));
/// let cache = FileBackend::builder(&dir)
///     .max_entries(10_000)
///     .max_bytes(64 << 20)
///     .default_ttl(Duration::from_secs(300))
///     .fsync(true)
///     .build()?;
/// # drop(cache);
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok::<(), cachette::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct FileBuilder {
    dir: PathBuf,
    limits: BuilderLimits,
    fsync: bool,
    allow_non_empty: bool,
}

impl FileBuilder {
    shared_limit_setters!();

    pub(super) fn new(dir: PathBuf) -> Self {
        FileBuilder {
            dir,
            limits: BuilderLimits::default(),
            fsync: false,
            allow_non_empty: false,
        }
    }

    /// Bounds the total size of the entry files in bytes (header, key,
    /// tags and value; not the file system's block overhead). Unbounded by
    /// default.
    pub fn max_bytes(mut self, max: u64) -> Self {
        self.limits.max_bytes = Some(max);
        self
    }

    /// Whether each write is flushed to disk (`fsync` of the file before
    /// the rename and of its directory after) before it returns. Off by
    /// default: writes are still atomic, but the last ones may be lost (as
    /// misses, never as garbage) if the machine crashes.
    pub fn fsync(mut self, fsync: bool) -> Self {
        self.fsync = fsync;
        self
    }

    /// Adopts a non-empty directory that has no cachette marker (off by
    /// default, when such a directory is refused). Its other files are
    /// left alone, by `clear` too.
    pub fn allow_non_empty(mut self, allow: bool) -> Self {
        self.allow_non_empty = allow;
        self
    }

    /// The longest key accepted, in bytes (default 4096, at most 1 MiB).
    pub fn max_key_len(mut self, max: usize) -> Self {
        self.limits.max_key_len = max;
        self
    }

    /// The longest value accepted, in bytes (default and at most
    /// [`FileBackend::MAX_VALUE_LEN`], 512 MiB; under `max_bytes`, at most
    /// what fits in the bound).
    pub fn max_value_len(mut self, max: usize) -> Self {
        self.limits.max_value_len = Some(max);
        self
    }

    /// Validates the options, creates the directory (0700) or checks its
    /// marker, and builds the index with one scan of the directory.
    ///
    /// This does blocking file I/O; in async code call it through
    /// `tokio::task::spawn_blocking`, or open a `file://` URL with
    /// [`crate::open`], which does.
    pub fn build(self) -> Result<FileBackend> {
        let limits = self.limits;
        limits.validate(NAME, MAX_KEY_LEN_LIMIT)?;
        if self.dir.as_os_str().is_empty() {
            return Err(Error::config(NAME, "the cache directory is empty"));
        }
        // Under a byte bound one entry of the longest key and value must
        // fit: the key gets a quarter of the bound at most, the value the
        // rest less the header.
        let (max_key_len, max_value_len) = match limits.max_bytes {
            None => (limits.max_key_len, MAX_VALUE_LEN),
            Some(max_bytes) => {
                let max_bytes = usize::try_from(max_bytes).unwrap_or(usize::MAX);
                let key = limits.max_key_len.min(max_bytes / 4);
                let value = max_bytes.saturating_sub(ENTRY_OVERHEAD + key);
                if key == 0 || value == 0 {
                    return Err(Error::config(
                        NAME,
                        format!(
                            "max_bytes is too small to hold any entry (each takes {ENTRY_OVERHEAD} bytes of header besides its key and value)"
                        ),
                    ));
                }
                (key, value.min(MAX_VALUE_LEN))
            }
        };
        let max_value_len = limits
            .max_value_len
            .map_or(max_value_len, |max| max.min(max_value_len));
        let dir = std::path::absolute(&self.dir).map_err(|e| {
            Error::config(
                NAME,
                format!("cannot resolve the directory {}", self.dir.display()),
            )
            .with_source(e)
        })?;
        let options = Options {
            limits: Limits {
                backend: NAME,
                max_key_len,
                max_value_len: Some(max_value_len),
                default_ttl: limits.default_ttl,
            },
            fsync: self.fsync,
            max_entries: limits.max_entries,
            max_bytes: limits.max_bytes,
        };
        let store = Store::open(dir, options, self.allow_non_empty)?;
        Ok(FileBackend {
            store: Arc::new(store),
        })
    }
}
