//! [`TieredBuilder`]: the two layers, the L1 TTL, the invalidation channel.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::{Backend, TtlPrecision, validate_ttl};
use crate::error::{Error, Result};

#[cfg(any(feature = "redis", feature = "postgres"))]
use super::channel::InvalidationChannel;
use super::{NAME, TieredBackend};

/// Configures and builds a [`TieredBackend`]. Every setter consumes and
/// returns the builder; [`build`](TieredBuilder::build) validates (and
/// subscribes to the invalidation channel, if one is set).
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use cachette::MemoryBackend;
/// use cachette::backends::tiered::TieredBackend;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> cachette::Result<()> {
/// let l1 = MemoryBackend::builder().max_entries(10_000).build()?;
/// let l2 = MemoryBackend::default(); // in practice a shared store: Redis, a file cache...
/// let cache = TieredBackend::builder(Arc::new(l1), Arc::new(l2))
///     .l1_ttl(Duration::from_secs(10))
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[must_use = "a TieredBuilder does nothing until `build` is awaited"]
pub struct TieredBuilder {
    pub(super) l1: Arc<dyn Backend>,
    pub(super) l2: Arc<dyn Backend>,
    pub(super) l1_ttl: Duration,
    #[cfg(any(feature = "redis", feature = "postgres"))]
    pub(super) channel: Option<InvalidationChannel>,
}

impl fmt::Debug for TieredBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("TieredBuilder");
        debug
            .field("l1", &self.l1.name())
            .field("l2", &self.l2.name())
            .field("l1_ttl", &self.l1_ttl);
        #[cfg(any(feature = "redis", feature = "postgres"))]
        debug.field("channel", &self.channel);
        debug.finish()
    }
}

impl TieredBuilder {
    /// The default [`l1_ttl`](Self::l1_ttl): 30 seconds.
    pub const DEFAULT_L1_TTL: Duration = Duration::from_secs(30);

    pub(super) fn new(l1: Arc<dyn Backend>, l2: Arc<dyn Backend>) -> Self {
        TieredBuilder {
            l1,
            l2,
            l1_ttl: Self::DEFAULT_L1_TTL,
            #[cfg(any(feature = "redis", feature = "postgres"))]
            channel: None,
        }
    }

    /// The longest an L1 copy lives (default 30 s). A copy never outlives
    /// its L2 entry's deadline when L2 can report it; without an
    /// invalidation channel this is also how stale L1 may be when other
    /// processes write to a shared L2.
    pub fn l1_ttl(mut self, ttl: Duration) -> Self {
        self.l1_ttl = ttl;
        self
    }

    /// Keeps L1 coherent with the other instances that share L2 through a
    /// channel: Redis pub/sub (feature `redis`) or PostgreSQL
    /// `LISTEN`/`NOTIFY` (feature `postgres`). None by default.
    #[cfg(any(feature = "redis", feature = "postgres"))]
    pub fn invalidation_channel(mut self, channel: InvalidationChannel) -> Self {
        self.channel = Some(channel);
        self
    }

    /// Validates the options, connects and subscribes the invalidation
    /// channel if one is set (L1 serves only once it is subscribed), and
    /// builds the backend.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) for a zero
    /// `l1_ttl` or one beyond `u64` milliseconds, the same backend given as L1 and L2, an L1 that does not
    /// enforce TTLs itself, keeps only whole seconds or cannot `clear`, or
    /// a bad channel option; [`ErrorKind::Connection`](crate::ErrorKind::Connection)
    /// or [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) when the
    /// channel's server cannot be reached.
    pub async fn build(self) -> Result<TieredBackend> {
        if self.l1_ttl.is_zero() {
            return Err(Error::config(NAME, "l1_ttl must be greater than zero"));
        }
        validate_ttl(NAME, self.l1_ttl)
            .map_err(|err| Error::config(NAME, format!("`l1_ttl`: {}", err.message())))?;
        if std::ptr::addr_eq(Arc::as_ptr(&self.l1), Arc::as_ptr(&self.l2)) {
            return Err(Error::config(
                NAME,
                "L1 and L2 must be two different backends",
            ));
        }
        let l1 = self.l1.capabilities();
        let l1_name = self.l1.name();
        if !l1.native_ttl {
            return Err(Error::config(
                NAME,
                format!(
                    "the L1 backend `{l1_name}` does not enforce TTLs (native_ttl is false); its copies would outlive l1_ttl"
                ),
            ));
        }
        if l1.ttl_precision != TtlPrecision::Milliseconds {
            return Err(Error::config(
                NAME,
                format!(
                    "the L1 backend `{l1_name}` keeps TTLs in whole seconds; its copies could outlive their L2 entries"
                ),
            ));
        }
        if !l1.clear {
            return Err(Error::config(
                NAME,
                format!("the L1 backend `{l1_name}` cannot clear; a tiered L1 must"),
            ));
        }
        TieredBackend::from_builder(self).await
    }
}
