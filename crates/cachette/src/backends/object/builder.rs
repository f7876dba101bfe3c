//! [`ObjectBuilder`]: the store, the prefix and the options of an
//! object-storage backend.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use object_store::path::Path;

use super::{Inner, NAME, ObjectBackend};
use crate::backend::DEFAULT_MAX_KEY_LEN;
use crate::backends::common::{BuilderLimits, Counters, Limits, check_timeouts};
use crate::error::{Error, Result};

/// The largest value accepted by default.
pub const DEFAULT_MAX_VALUE_LEN: usize = 1 << 30;

/// Values above this many bytes are written with a multipart upload by
/// default.
pub const DEFAULT_MULTIPART_THRESHOLD: usize = 8 << 20;

/// Builds an [`ObjectBackend`] over any `object_store` store.
///
/// ```
/// # use std::sync::Arc;
/// # use cachette::backends::object::ObjectBackend;
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> cachette::Result<()> {
/// let dir = std::env::temp_dir().join("cachette-object-doc");
/// std::fs::create_dir_all(&dir).unwrap();
/// let store = object_store::local::LocalFileSystem::new_with_prefix(&dir).unwrap();
/// let cache = ObjectBackend::builder(Arc::new(store))
///     .prefix("pages")
///     .conditional_update(false) // local files have no compare-and-swap
///     .build()?;
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until `build` is called"]
#[derive(Clone)]
pub struct ObjectBuilder {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    conditional_update: bool,
    concurrency: usize,
    multipart_threshold: usize,
    timeout: Duration,
    limits: BuilderLimits,
    shown: String,
}

impl fmt::Debug for ObjectBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectBuilder")
            .field("store", &self.shown)
            .field("prefix", &self.prefix)
            .field("conditional_update", &self.conditional_update)
            .field("concurrency", &self.concurrency)
            .field("multipart_threshold", &self.multipart_threshold)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl ObjectBuilder {
    pub(crate) fn new(store: Arc<dyn ObjectStore>) -> Self {
        let shown = store.to_string();
        ObjectBuilder {
            store,
            prefix: String::new(),
            conditional_update: true,
            concurrency: 16,
            multipart_threshold: DEFAULT_MULTIPART_THRESHOLD,
            timeout: Duration::from_secs(30),
            limits: BuilderLimits {
                max_value_len: Some(DEFAULT_MAX_VALUE_LEN),
                ..BuilderLimits::default()
            },
            shown,
        }
    }

    /// The folder of the store under which the cache lives (default: the
    /// store's root). `clear` removes everything under it.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Whether the store replaces an object only if its ETag still
    /// matches (`PutMode::Update`; default true: S3, GCS and Azure do,
    /// local files do not). Without it, only-if-present writes, counters
    /// and `touch` read and then overwrite, and the capabilities say they
    /// are not atomic.
    pub fn conditional_update(mut self, supported: bool) -> Self {
        self.conditional_update = supported;
        self
    }

    /// How many requests a batch runs at once (default 16).
    pub fn concurrency(mut self, requests: usize) -> Self {
        self.concurrency = requests;
        self
    }

    /// Values over this many bytes are written with a multipart upload
    /// (default [`DEFAULT_MULTIPART_THRESHOLD`]; at least 5 MiB, S3's
    /// smallest part).
    pub fn multipart_threshold(mut self, bytes: usize) -> Self {
        self.multipart_threshold = bytes;
        self
    }

    /// How long one operation may take, all its requests included
    /// (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The TTL of entries written with [`Expiry::Default`](crate::Expiry::Default).
    /// No expiry by default.
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.limits.default_ttl = Some(ttl);
        self
    }

    /// The longest value accepted (default [`DEFAULT_MAX_VALUE_LEN`]).
    pub fn max_value_len(mut self, len: usize) -> Self {
        self.limits.max_value_len = Some(len);
        self
    }

    /// How the store is named in errors and `Debug` output (default: the
    /// store's own description).
    pub(crate) fn shown(mut self, shown: impl Into<String>) -> Self {
        self.shown = shown.into();
        self
    }

    /// Checks the options and builds the backend (no request is made).
    pub fn build(self) -> Result<ObjectBackend> {
        self.limits.validate(NAME, DEFAULT_MAX_KEY_LEN)?;
        if self.concurrency == 0 || self.concurrency > 1024 {
            return Err(Error::config(
                NAME,
                "concurrency must be between 1 and 1024",
            ));
        }
        if self.multipart_threshold < 5 << 20 {
            return Err(Error::config(
                NAME,
                "multipart_threshold must be at least 5 MiB (S3's smallest part)",
            ));
        }
        check_timeouts(
            NAME,
            &[("timeout", self.timeout)],
            Duration::from_secs(24 * 3600),
        )?;
        let root = Path::parse(self.prefix.trim_matches('/')).map_err(|err| {
            Error::config(
                NAME,
                format!(
                    "the prefix `{}` is not a valid object path: {err}",
                    self.prefix
                ),
            )
        })?;
        Ok(ObjectBackend {
            inner: Arc::new(Inner {
                store: self.store,
                entries: root.clone().join("e"),
                tags: root.clone().join("t"),
                root,
                conditional_update: self.conditional_update,
                limits: Limits {
                    backend: NAME,
                    max_key_len: DEFAULT_MAX_KEY_LEN,
                    max_value_len: self.limits.max_value_len,
                    default_ttl: self.limits.default_ttl,
                },
                concurrency: self.concurrency,
                multipart_threshold: self.multipart_threshold,
                timeout: self.timeout,
                counters: Counters::default(),
                shown: self.shown,
            }),
        })
    }
}
