//! [`Retry`]: another attempt after a temporary failure.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::{Call, Reply};
use crate::backend::Backend;
use crate::error::{Error, Result};

/// Configures a [`Retry`]: how many attempts, and the backoff between them.
///
/// A failed attempt is retried only if the error
/// [is temporary](crate::Error::is_temporary) (`Connection`, `Timeout`) and
/// the operation is idempotent: `get`, `exists`, `get_many`, `ttl`, `keys`,
/// `health`, `stats`, `delete`, `delete_many`, `set` and `set_many`
/// without a condition, `touch`, `invalidate_tags`, `purge_expired` and
/// `clear`. Never `incr`/`decr` (a lost reply may hide an applied
/// increment), never a conditional `set` (the first attempt may have
/// written, and the retry would then answer `false`), never `close`. A
/// retried `delete` may answer `false` when its first attempt did remove
/// the key.
///
/// The wait before attempt `n + 1` is drawn uniformly from zero to
/// `min(max, initial × 2^(n-1))`, with the bounds of
/// [`backoff`](RetryLayer::backoff) ("full jitter"), so that clients that
/// failed together do not retry together. For `keys`, only the call is
/// retried, not a failure while reading its stream. The wait is a tokio
/// timer: outside a tokio runtime the first failure is returned as it is.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use cachette::{Backend, MemoryBackend};
/// use cachette::layers::{Layer, RetryLayer};
///
/// # fn main() -> cachette::Result<()> {
/// let backend: Arc<dyn Backend> = RetryLayer::new()
///     .max_attempts(4)?
///     .backoff(Duration::from_millis(20), Duration::from_secs(1))?
///     .layer(Arc::new(MemoryBackend::default()));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryLayer {
    max_attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
}

impl Default for RetryLayer {
    /// 3 attempts, backoff from 10 ms up to 1 s.
    fn default() -> Self {
        RetryLayer {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_secs(1),
        }
    }
}

/// Who raises the configuration errors of [`RetryLayer`].
const NAME: &str = "retry layer";

impl RetryLayer {
    /// 3 attempts, backoff from 10 ms up to 1 s.
    pub fn new() -> Self {
        RetryLayer::default()
    }

    /// Attempts in all, the first included (default 3; 1 never retries).
    /// Fails with [`ErrorKind::Config`](crate::ErrorKind::Config) if zero.
    pub fn max_attempts(mut self, attempts: u32) -> Result<Self> {
        if attempts == 0 {
            return Err(Error::config(
                NAME,
                "max_attempts of the retry layer is zero; it counts the first attempt, so use 1 \
                 for no retries",
            ));
        }
        self.max_attempts = attempts;
        Ok(self)
    }

    /// The bounds of the wait: `initial` is the upper bound of the first
    /// wait (default 10 ms), which doubles with each attempt up to `max`
    /// (default 1 s). Given together so that no order of calls matters;
    /// fails with [`ErrorKind::Config`](crate::ErrorKind::Config) if
    /// `initial` exceeds `max`.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Result<Self> {
        if initial > max {
            return Err(Error::config(
                NAME,
                format!(
                    "the initial backoff of the retry layer ({initial:?}) exceeds its maximum \
                     backoff ({max:?})"
                ),
            ));
        }
        self.initial_backoff = initial;
        self.max_backoff = max;
        Ok(self)
    }

    /// The bounds of the wait, as [`backoff`](RetryLayer::backoff) takes
    /// them: a configuration that gives one keeps the other.
    pub(crate) fn backoff_bounds(&self) -> (Duration, Duration) {
        (self.initial_backoff, self.max_backoff)
    }

    /// Wraps `inner`, keeping its type; [`Layer::layer`](super::Layer::layer)
    /// does the same for an `Arc<dyn Backend>`.
    pub fn wrap<B: Backend + ?Sized>(&self, inner: Arc<B>) -> Retry<B> {
        Retry {
            policy: *self,
            inner,
        }
    }

    /// The wait after the failure of attempt `attempt` (1-based).
    fn wait(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        let ceiling = self
            .initial_backoff
            .saturating_mul(1 << doublings)
            .min(self.max_backoff);
        // `mul_f64` panics when rounding takes the product past
        // `Duration::MAX`; the ceiling itself is a fine wait then.
        Duration::try_from_secs_f64(ceiling.as_secs_f64() * fastrand::f64()).unwrap_or(ceiling)
    }
}

layer_by_wrap!(RetryLayer);

/// A backend that retries temporary failures of idempotent operations;
/// built by [`RetryLayer`].
///
/// Each retry is logged by `tracing` at `debug` (operation, attempt, wait,
/// error), and the number of attempts is recorded in the `cachette.attempts` field
/// of the enclosing [`Tracing`](super::Tracing) span. An error after more
/// than one attempt says how many were made.
pub struct Retry<B: ?Sized = dyn Backend> {
    policy: RetryLayer,
    inner: Arc<B>,
}

debug_layer!(Retry { policy });
backend_around!(Retry);

impl<B: Backend + ?Sized> Retry<B> {
    /// The inner backend.
    pub fn inner(&self) -> &Arc<B> {
        &self.inner
    }

    async fn around<T, F, Fut>(&self, call: Call<'_>, mut f: F) -> Result<T>
    where
        T: Reply,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let retries = call.idempotent();
        let mut attempt = 1;
        loop {
            let result = f().await;
            match result {
                // Waiting needs tokio's timer: outside a runtime the first
                // failure is the answer.
                Err(error)
                    if retries
                        && error.is_temporary()
                        && attempt < self.policy.max_attempts
                        && tokio::runtime::Handle::try_current().is_ok() =>
                {
                    let backoff = self.policy.wait(attempt);
                    tracing::debug!(
                        backend = self.inner.name(),
                        operation = call.op.name(),
                        attempt,
                        backoff = ?backoff,
                        error = %error,
                        "cachette: retrying after a temporary failure"
                    );
                    tokio::time::sleep(backoff).await;
                    attempt += 1;
                }
                result => {
                    if attempt > 1 {
                        tracing::Span::current().record("cachette.attempts", attempt);
                    }
                    return result.map_err(|error| {
                        if attempt > 1 {
                            error.context(format_args!("after {attempt} attempts"))
                        } else {
                            error
                        }
                    });
                }
            }
        }
    }
}
