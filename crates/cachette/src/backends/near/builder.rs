//! [`NearBuilder`]: the Redis server, the local store, the tracking mode.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio::sync::mpsc;

use super::fence::Fence;
use super::{Inner, NAME, NearBackend, apply_invalidations, push_handler};
use crate::backend::{Backend, validate_ttl};
use crate::backends::common::{Counters, Limits};
use crate::backends::memory::MemoryBackend;
use crate::backends::redis::RedisBuilder;
use crate::error::{Error, Result};

/// How the server tracks what the near cache holds (`CLIENT TRACKING`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Tracking {
    /// The server remembers every key this connection reads and announces
    /// its next change.
    #[default]
    Default,
    /// Only the near cache's reads are tracked (each preceded by
    /// `CLIENT CACHING yes`); the other commands of the connection are not.
    OptIn,
    /// Every change to a key under one of these prefixes (relative to the
    /// backend's prefix; none means the backend's whole prefix) is
    /// announced; the server keeps no table of keys.
    Broadcast(Vec<String>),
}

impl std::str::FromStr for Tracking {
    type Err = Error;

    /// `default`, `optin` or `bcast` (without prefixes).
    fn from_str(text: &str) -> Result<Self> {
        match text.to_ascii_lowercase().as_str() {
            "default" => Ok(Tracking::Default),
            "optin" => Ok(Tracking::OptIn),
            "bcast" | "broadcast" => Ok(Tracking::Broadcast(Vec::new())),
            _ => Err(Error::config(
                NAME,
                format!("unknown tracking mode `{text}`; expected `default`, `optin` or `bcast`"),
            )),
        }
    }
}

/// Configures and connects a [`NearBackend`].
#[derive(Clone)]
#[must_use = "a NearBuilder does nothing until `build` is awaited"]
pub struct NearBuilder {
    redis: RedisBuilder,
    local: Option<Arc<dyn Backend>>,
    tracking: Tracking,
    local_ttl: Option<Duration>,
    #[cfg(feature = "testing")]
    before_store: Option<super::StoreHook>,
}

impl fmt::Debug for NearBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NearBuilder")
            .field("redis", &self.redis)
            .field("local", &self.local.as_ref().map(|local| local.name()))
            .field("tracking", &self.tracking)
            .field("local_ttl", &self.local_ttl)
            .finish_non_exhaustive()
    }
}

impl NearBuilder {
    /// The entry bound of the default local store.
    pub const DEFAULT_LOCAL_ENTRIES: u64 = 100_000;

    pub(super) fn new(redis: RedisBuilder) -> Self {
        NearBuilder {
            redis,
            local: None,
            tracking: Tracking::Default,
            local_ttl: None,
            #[cfg(feature = "testing")]
            before_store: None,
        }
    }

    /// The local store: any backend (its own options bound it). Default: a
    /// memory engine of [`Self::DEFAULT_LOCAL_ENTRIES`] entries.
    pub fn local(mut self, local: Arc<dyn Backend>) -> Self {
        self.local = Some(local);
        self
    }

    /// The tracking mode; default [`Tracking::Default`].
    pub fn tracking(mut self, tracking: Tracking) -> Self {
        self.tracking = tracking;
        self
    }

    /// The longest a local copy lives (it never outlives the server's TTL
    /// either). Default: no limit besides the server's TTL.
    pub fn local_ttl(mut self, ttl: Duration) -> Self {
        self.local_ttl = Some(ttl);
        self
    }

    /// A test hook, not part of the stable API: for tests of the race
    /// guard, awaits `hook(keys)` between receiving a reply and storing
    /// it, so that a test can deliver an invalidation in between.
    #[cfg(feature = "testing")]
    #[doc(hidden)]
    pub fn before_store<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Vec<String>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        use futures_util::FutureExt;
        self.before_store = Some(Arc::new(move |keys| hook(keys).boxed()));
        self
    }

    /// Connects, switches tracking on, and returns the near cache.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) for a bad option or
    /// a cluster, and the errors of [`RedisBuilder::build`].
    pub async fn build(self) -> Result<NearBackend> {
        // The Redis connection and the task applying invalidations.
        Error::require_runtime(NAME, "connect", "the near cache")?;
        if let Some(ttl) = self.local_ttl {
            validate_ttl(NAME, ttl)
                .map_err(|err| Error::config(NAME, format!("`local_ttl`: {}", err.message())))?;
        }
        if let Tracking::Broadcast(prefixes) = &self.tracking
            && prefixes.iter().any(String::is_empty)
        {
            return Err(Error::config(
                NAME,
                "an empty broadcast prefix; leave the list empty to track the whole prefix",
            ));
        }
        let local: Arc<dyn Backend> = match self.local {
            Some(local) => local,
            None => Arc::new(
                MemoryBackend::builder()
                    .max_entries(Self::DEFAULT_LOCAL_ENTRIES)
                    .build()?,
            ),
        };
        let fence = Arc::new(Fence::default());
        let counters = Arc::new(Counters::default());
        let derived = Arc::new(AtomicBool::new(false));
        let (work, queue) = mpsc::unbounded_channel();
        let prefix = self.redis.prefix_text().to_owned();
        let handler = push_handler(prefix, Arc::clone(&fence), Arc::clone(&counters), work);
        let remote = self.redis.push_sender(Arc::new(handler)).build().await?;
        tokio::spawn(apply_invalidations(
            Arc::clone(&local),
            Arc::clone(&derived),
            queue,
        ));
        let limits = Limits {
            backend: NAME,
            // A key the local store refuses would fail every write (its
            // local copy is dropped first).
            max_key_len: remote
                .capabilities()
                .max_key_len
                .min(local.capabilities().max_key_len),
            max_value_len: None,
            default_ttl: None,
        };
        let near = NearBackend {
            inner: Arc::new(Inner {
                limits,
                remote,
                local,
                fence,
                counters,
                derived,
                tracking: self.tracking,
                local_ttl: self.local_ttl,
                enabling: tokio::sync::Mutex::new(()),
                #[cfg(feature = "testing")]
                before_store: self.before_store,
            }),
        };
        near.ensure_tracking().await?;
        Ok(near)
    }
}
