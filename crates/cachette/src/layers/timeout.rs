//! [`Timeout`]: a deadline per operation.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use super::{Call, Op, OpClass, Reply};
use crate::backend::{Backend, KeyStream};
use crate::error::{Error, ErrorKind, Result};

/// Configures a [`Timeout`]: a deadline for reads, one for writes and one
/// for scans, each optional (no deadline by default).
///
/// - **reads**: `get`, `exists`, `get_many`, `ttl`, `stats`, `health`;
/// - **writes**: `set`, `set_many`, `delete`, `delete_many`, `incr`,
///   `decr`, `touch`, `invalidate_tags`, `close`;
/// - **scans**: `keys`, `clear`, `purge_expired`. For `keys` the deadline
///   applies to the call and then to the wait for each key of the stream
///   (the time the caller takes between keys does not count).
///
/// An operation past its deadline is dropped and fails with
/// [`ErrorKind::Timeout`] naming the operation and the limit. Below a
/// retry layer, each attempt has its own deadline (see [the module
/// docs](crate::layers)). The deadline is a tokio timer: outside a tokio
/// runtime an operation with a deadline fails with
/// [`ErrorKind::Unsupported`] instead of running unbounded.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use cachette::{Backend, MemoryBackend};
/// use cachette::layers::{Layer, TimeoutLayer};
///
/// # fn main() -> cachette::Result<()> {
/// let backend: Arc<dyn Backend> = TimeoutLayer::new()
///     .all(Duration::from_millis(50))?
///     .scans(Duration::from_secs(5))?
///     .layer(Arc::new(MemoryBackend::default()));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeoutLayer {
    reads: Option<Duration>,
    writes: Option<Duration>,
    scans: Option<Duration>,
}

/// Who raises the configuration errors of [`TimeoutLayer`].
const NAME: &str = "timeout layer";

impl TimeoutLayer {
    /// No deadline yet.
    pub fn new() -> Self {
        TimeoutLayer::default()
    }

    /// The same deadline for reads, writes and scans. Fails with
    /// [`ErrorKind::Config`] if it is zero.
    pub fn all(self, limit: Duration) -> Result<Self> {
        self.reads(limit)?.writes(limit)?.scans(limit)
    }

    /// The deadline of reads. Fails with [`ErrorKind::Config`] if it is
    /// zero.
    pub fn reads(mut self, limit: Duration) -> Result<Self> {
        self.reads = Some(positive(limit, "reads")?);
        Ok(self)
    }

    /// The deadline of writes. Fails with [`ErrorKind::Config`] if it is
    /// zero.
    pub fn writes(mut self, limit: Duration) -> Result<Self> {
        self.writes = Some(positive(limit, "writes")?);
        Ok(self)
    }

    /// The deadline of `keys`, `clear` and `purge_expired`. Fails with
    /// [`ErrorKind::Config`] if it is zero.
    pub fn scans(mut self, limit: Duration) -> Result<Self> {
        self.scans = Some(positive(limit, "scans")?);
        Ok(self)
    }

    /// Wraps `inner`, keeping its type; [`Layer::layer`](super::Layer::layer)
    /// does the same for an `Arc<dyn Backend>`.
    pub fn wrap<B: Backend + ?Sized>(&self, inner: Arc<B>) -> Timeout<B> {
        Timeout {
            limits: *self,
            inner,
        }
    }
}

layer_by_wrap!(TimeoutLayer);

/// `limit`, if it is not zero: a zero deadline would fail every operation.
fn positive(limit: Duration, what: &str) -> Result<Duration> {
    if limit.is_zero() {
        return Err(Error::config(
            NAME,
            format!("the timeout of {what} is zero; give a positive duration or leave it unset"),
        ));
    }
    Ok(limit)
}

/// A backend whose operations fail with [`ErrorKind::Timeout`] when they
/// take longer than their deadline; built by [`TimeoutLayer`].
pub struct Timeout<B: ?Sized = dyn Backend> {
    limits: TimeoutLayer,
    inner: Arc<B>,
}

debug_layer!(Timeout { limits });
backend_around!(Timeout);

impl<B: Backend + ?Sized> Timeout<B> {
    /// The inner backend.
    pub fn inner(&self) -> &Arc<B> {
        &self.inner
    }

    fn limit(&self, op: Op) -> Option<Duration> {
        match op.class() {
            OpClass::Read => self.limits.reads,
            OpClass::Write => self.limits.writes,
            OpClass::Scan => self.limits.scans,
        }
    }

    async fn around<T, F, Fut>(&self, call: Call<'_>, mut f: F) -> Result<T>
    where
        T: Reply,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let Some(limit) = self.limit(call.op) else {
            return f().await;
        };
        Error::require_runtime(NAME, call.op.name(), "the timeout layer's timer")?;
        let backend = self.inner.name();
        match tokio::time::timeout(limit, f()).await {
            Ok(reply) => {
                reply.map(|reply| reply.map_keys(|keys| timed_keys(keys, limit, backend, call.op)))
            }
            Err(_) => Err(timed_out(backend, call.op, limit)),
        }
    }
}

fn timed_out(backend: &'static str, op: Op, limit: Duration) -> Error {
    Error::new(
        ErrorKind::Timeout,
        backend,
        format!(
            "`{}` did not complete within the timeout of {limit:?}",
            op.name()
        ),
    )
    .with_operation(op.name())
}

/// `keys` with a deadline for each key: a wait past it ends the stream
/// with a timeout error.
fn timed_keys(keys: KeyStream, limit: Duration, backend: &'static str, op: Op) -> KeyStream {
    Box::pin(futures_util::stream::unfold(
        Some(keys),
        move |keys| async move {
            let mut keys = keys?;
            // A stream made inside a runtime may be polled outside one.
            if let Err(error) = Error::require_runtime(NAME, op.name(), "the timeout layer's timer")
            {
                return Some((Err(error), None));
            }
            match tokio::time::timeout(limit, keys.next()).await {
                Ok(Some(key)) => Some((key, Some(keys))),
                Ok(None) => None,
                Err(_) => Some((
                    Err(timed_out(backend, op, limit).context("waiting for the next key")),
                    None,
                )),
            }
        },
    ))
}
