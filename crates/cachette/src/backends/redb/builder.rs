//! The builder of the redb backend and its durability setting.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use crate::backends::common::BuilderLimits;
use crate::error::{Error, Result};

use super::{NAME, RedbBackend, store};

/// When a write is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum RedbDurability {
    /// Every write transaction is flushed to the disk (fsync) before it
    /// returns: a write that returned survives a crash of the process and
    /// of the machine.
    #[default]
    Immediate,
    /// Writes reach the operating system before they return but are
    /// flushed to the disk later: they survive a crash of the process, a
    /// power loss may lose the last ones (never half of one). Much faster
    /// on real disks.
    Eventual,
}

impl RedbDurability {
    /// The name used in URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            RedbDurability::Immediate => "immediate",
            RedbDurability::Eventual => "eventual",
        }
    }

    pub(super) fn to_redb(self) -> redb::Durability {
        match self {
            RedbDurability::Immediate => redb::Durability::Immediate,
            RedbDurability::Eventual => redb::Durability::Eventual,
        }
    }
}

impl fmt::Display for RedbDurability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RedbDurability {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "immediate" => Ok(RedbDurability::Immediate),
            "eventual" => Ok(RedbDurability::Eventual),
            _ => Err(Error::config(
                NAME,
                format!("unknown durability `{s}`; expected immediate or eventual"),
            )),
        }
    }
}

/// The longest value accepted by default: 512 MiB.
pub const DEFAULT_MAX_VALUE_LEN: usize = 512 << 20;

/// The longest value [`RedbBuilder::max_value_len`] accepts: redb stores
/// values below 3 GiB, and each value carries a 16-byte header.
pub const MAX_VALUE_LEN_LIMIT: usize = (3 << 30) - store::HEADER_LEN;

/// The longest namespace, in bytes.
pub const MAX_NAMESPACE_LEN: usize = 128;

/// Builds a [`RedbBackend`]. Every setter consumes and returns the
/// builder; [`build`](RedbBuilder::build) validates and opens the file.
///
/// ```no_run
/// use std::time::Duration;
/// use cachette::backends::redb::RedbBackend;
///
/// let cache = RedbBackend::builder("/var/cache/app/cache.redb")
///     .namespace("sessions")
///     .default_ttl(Duration::from_secs(300))
///     .max_entries(100_000)
///     .build()?;
/// # Ok::<(), cachette::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct RedbBuilder {
    pub(super) path: PathBuf,
    pub(super) namespace: String,
    pub(super) default_ttl: Option<Duration>,
    pub(super) max_entries: Option<u64>,
    pub(super) max_key_len: usize,
    pub(super) max_value_len: usize,
    pub(super) durability: RedbDurability,
    pub(super) purge_interval: Duration,
    pub(super) cache_size: Option<usize>,
}

impl RedbBuilder {
    pub(super) fn new(path: impl AsRef<Path>) -> Self {
        RedbBuilder {
            path: path.as_ref().to_path_buf(),
            namespace: "default".to_owned(),
            default_ttl: None,
            max_entries: None,
            max_key_len: crate::backend::DEFAULT_MAX_KEY_LEN,
            max_value_len: DEFAULT_MAX_VALUE_LEN,
            durability: RedbDurability::default(),
            purge_interval: Duration::from_secs(60),
            cache_size: None,
        }
    }

    /// The namespace: backends with different namespaces on one file
    /// keep separate entries, and `clear` empties its own namespace only.
    /// ASCII letters, digits, `-`, `_`, `.` and `:`, at most 128 bytes
    /// (default `default`).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The TTL of entries written with [`Expiry::Default`](crate::Expiry::Default).
    /// No expiry by default.
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = Some(ttl);
        self
    }

    /// Bounds the number of entries of this namespace: a write beyond the
    /// bound evicts the oldest writes first (FIFO; `touch` does not count
    /// as a write). Unbounded by default.
    pub fn max_entries(mut self, max: u64) -> Self {
        self.max_entries = Some(max);
        self
    }

    /// The longest key accepted, in bytes (default 4096).
    pub fn max_key_len(mut self, max: usize) -> Self {
        self.max_key_len = max;
        self
    }

    /// The longest value accepted, in bytes (default
    /// [`DEFAULT_MAX_VALUE_LEN`], 512 MiB; at most
    /// [`MAX_VALUE_LEN_LIMIT`]). A value is held in memory whole while it
    /// is written and read.
    pub fn max_value_len(mut self, max: usize) -> Self {
        self.max_value_len = max;
        self
    }

    /// When writes are on disk (default [`RedbDurability::Immediate`]).
    pub fn durability(mut self, durability: RedbDurability) -> Self {
        self.durability = durability;
        self
    }

    /// How often a background task removes expired entries (default
    /// 60 s). It runs only if the backend is built inside a tokio runtime;
    /// reads check deadlines in any case, and each write removes up to 16
    /// expired entries.
    pub fn purge_interval(mut self, interval: Duration) -> Self {
        self.purge_interval = interval;
        self
    }

    /// The size of redb's page cache in bytes (redb's default: 1 GiB, used
    /// only as it fills). Applies when this process first opens the file;
    /// later backends on the same file share that cache.
    pub fn cache_size(mut self, bytes: usize) -> Self {
        self.cache_size = Some(bytes);
        self
    }

    /// Validates the options, opens (or creates) the database file and
    /// the namespace's tables.
    ///
    /// This blocks on file I/O (after a crash, redb repairs the file on
    /// open, which may take a while for a large file); inside an async
    /// context call it through `tokio::task::spawn_blocking`, or use
    /// [`crate::open`] with a `redb://` URL, which does.
    pub fn build(self) -> Result<RedbBackend> {
        validate_namespace(&self.namespace)?;
        // The fields stay flat (the URL reader fills them); the checks are
        // those of every builder.
        let limits = BuilderLimits {
            default_ttl: self.default_ttl,
            max_entries: self.max_entries,
            max_bytes: None,
            max_key_len: self.max_key_len,
            max_value_len: Some(self.max_value_len),
        };
        limits.validate(NAME, usize::MAX)?;
        if self.max_value_len > MAX_VALUE_LEN_LIMIT {
            return Err(Error::config(
                NAME,
                format!(
                    "max_value_len is {} bytes; the limit of redb is {MAX_VALUE_LEN_LIMIT} bytes",
                    self.max_value_len
                ),
            ));
        }
        if self.purge_interval.is_zero() {
            return Err(Error::config(
                NAME,
                "purge_interval must be greater than zero",
            ));
        }
        RedbBackend::from_builder(self)
    }
}

fn validate_namespace(namespace: &str) -> Result<()> {
    if namespace.is_empty() {
        return Err(Error::config(NAME, "the namespace is empty"));
    }
    if namespace.len() > MAX_NAMESPACE_LEN {
        return Err(Error::config(
            NAME,
            format!(
                "the namespace is {} bytes long; the limit is {MAX_NAMESPACE_LEN} bytes",
                namespace.len()
            ),
        ));
    }
    if let Some(bad) = namespace
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
    {
        return Err(Error::config(
            NAME,
            format!(
                "the namespace `{}` contains {bad:?}; use ASCII letters, digits, `-`, `_`, `.` and `:`",
                namespace.escape_debug()
            ),
        ));
    }
    Ok(())
}
