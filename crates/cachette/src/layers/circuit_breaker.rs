//! [`CircuitBreaker`]: fail fast while the backend keeps failing.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use super::{Call, Op, Reply};
use crate::backend::Backend;
use crate::cache::saturating_after;
use crate::error::{Error, ErrorKind, Result};

/// Configures a [`CircuitBreaker`]: after how many consecutive temporary
/// failures it opens, and for how long.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use cachette::{Backend, MemoryBackend};
/// use cachette::layers::{CircuitBreakerLayer, CircuitState};
///
/// # fn main() -> cachette::Result<()> {
/// let breaker = CircuitBreakerLayer::new()
///     .failure_threshold(10)?
///     .open_duration(Duration::from_secs(30))
///     .wrap(Arc::new(MemoryBackend::default()));
/// assert_eq!(breaker.state(), CircuitState::Closed);
/// let backend: Arc<dyn Backend> = Arc::new(breaker);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitBreakerLayer {
    failure_threshold: u32,
    open_duration: Duration,
}

impl Default for CircuitBreakerLayer {
    /// Opens after 5 consecutive failures, for 5 seconds.
    fn default() -> Self {
        CircuitBreakerLayer {
            failure_threshold: 5,
            open_duration: Duration::from_secs(5),
        }
    }
}

/// Who raises the configuration errors of [`CircuitBreakerLayer`].
const NAME: &str = "circuit breaker";

impl CircuitBreakerLayer {
    /// Opens after 5 consecutive failures, for 5 seconds.
    pub fn new() -> Self {
        CircuitBreakerLayer::default()
    }

    /// How many consecutive temporary failures open the circuit (default
    /// 5). Fails with [`ErrorKind::Config`] if zero.
    pub fn failure_threshold(mut self, failures: u32) -> Result<Self> {
        if failures == 0 {
            return Err(Error::config(
                NAME,
                "failure_threshold of the circuit breaker is zero; it must be at least 1",
            ));
        }
        self.failure_threshold = failures;
        Ok(self)
    }

    /// How long the circuit stays open before it lets a probe through
    /// (default 5 s).
    pub fn open_duration(mut self, duration: Duration) -> Self {
        self.open_duration = duration;
        self
    }

    /// Wraps `inner` in a closed circuit of its own, keeping its type;
    /// [`Layer::layer`](super::Layer::layer) does the same for an
    /// `Arc<dyn Backend>`.
    pub fn wrap<B: Backend + ?Sized>(&self, inner: Arc<B>) -> CircuitBreaker<B> {
        CircuitBreaker {
            config: *self,
            state: Mutex::new(State::Closed { failures: 0 }),
            inner,
        }
    }
}

layer_by_wrap!(CircuitBreakerLayer);

/// The state of a [`CircuitBreaker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CircuitState {
    /// Operations go through; consecutive temporary failures are counted.
    Closed,
    /// Operations fail fast without reaching the backend.
    Open,
    /// The open duration has passed: the next operation goes through as a
    /// probe (one at a time; the others fail fast).
    HalfOpen,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// Whether an admitted operation is the probe of a half-open circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    Normal,
    Probe,
}

/// A backend that stops calling its inner backend after
/// `failure_threshold` consecutive temporary failures; built by
/// [`CircuitBreakerLayer`].
///
/// - **Closed**: operations go through. A temporary error
///   ([`Error::is_temporary`]) counts as a failure; any other answer,
///   including a non-temporary error (the backend did answer), resets the
///   count. The threshold reached, the circuit opens.
/// - **Open**: for `open_duration`, operations fail at once with
///   [`ErrorKind::Connection`] ("circuit open ...") without reaching the
///   inner backend.
/// - **Half-open**: then exactly one operation goes through as a probe
///   while the others still fail fast. Its success closes the circuit, its
///   temporary failure opens it again for `open_duration`. A probe that is
///   cancelled lets the next operation probe.
///
/// `close` always goes through and is not counted. For `keys`, only the
/// call counts, not errors while reading its stream. State changes are
/// logged by `tracing` (`warn` when opening, `info` otherwise). Time is
/// tokio's, so a paused test clock drives it.
pub struct CircuitBreaker<B: ?Sized = dyn Backend> {
    config: CircuitBreakerLayer,
    state: Mutex<State>,
    inner: Arc<B>,
}

debug_layer!(CircuitBreaker { config, state });
backend_around!(CircuitBreaker);

impl<B: Backend + ?Sized> CircuitBreaker<B> {
    /// The inner backend.
    pub fn inner(&self) -> &Arc<B> {
        &self.inner
    }

    /// The current state. An open circuit whose `open_duration` has
    /// passed is half-open.
    pub fn state(&self) -> CircuitState {
        let mut state = self.state.lock();
        match self.refresh(&mut state, Instant::now()) {
            State::Closed { .. } => CircuitState::Closed,
            State::Open { .. } => CircuitState::Open,
            State::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }

    /// Moves an open circuit whose time is up to half-open.
    fn refresh(&self, state: &mut State, now: Instant) -> State {
        if let State::Open { until } = *state
            && now >= until
        {
            *state = State::HalfOpen { probing: false };
            tracing::info!(
                backend = self.inner.name(),
                "cachette: circuit half-open; the next operation probes the backend"
            );
        }
        *state
    }

    /// Lets an operation through, or fails it fast.
    fn admit(&self, op: Op) -> Result<Admission> {
        let now = Instant::now();
        let mut state = self.state.lock();
        let message = match self.refresh(&mut state, now) {
            State::Closed { .. } => return Ok(Admission::Normal),
            State::HalfOpen { probing: false } => {
                *state = State::HalfOpen { probing: true };
                return Ok(Admission::Probe);
            }
            State::HalfOpen { probing: true } => {
                "circuit open (half-open: a probe of the backend is in flight)".to_owned()
            }
            State::Open { until } => format!(
                "circuit open after {} consecutive failures; the backend is probed again in {:?}",
                self.config.failure_threshold,
                until - now
            ),
        };
        Err(Error::new(ErrorKind::Connection, self.inner.name(), message).with_operation(op.name()))
    }

    /// Counts the answer of an admitted operation.
    fn record(&self, admission: Admission, failed: bool) {
        let now = Instant::now();
        let mut state = self.state.lock();
        let backend = self.inner.name();
        match (admission, *state, failed) {
            (Admission::Probe, _, false) => {
                *state = State::Closed { failures: 0 };
                tracing::info!(backend, "cachette: circuit closed; the probe succeeded");
            }
            (Admission::Probe, _, true) => {
                *state = State::Open {
                    until: saturating_after(now, self.config.open_duration),
                };
                tracing::warn!(
                    backend,
                    open_for = ?self.config.open_duration,
                    "cachette: circuit reopened; the probe failed"
                );
            }
            (Admission::Normal, State::Closed { .. }, false) => {
                *state = State::Closed { failures: 0 };
            }
            (Admission::Normal, State::Closed { failures }, true) => {
                let failures = failures.saturating_add(1);
                if failures >= self.config.failure_threshold {
                    *state = State::Open {
                        until: saturating_after(now, self.config.open_duration),
                    };
                    tracing::warn!(
                        backend,
                        failures,
                        open_for = ?self.config.open_duration,
                        "cachette: circuit opened after consecutive failures"
                    );
                } else {
                    *state = State::Closed { failures };
                }
            }
            // The circuit opened while this operation was in flight: its
            // answer changes nothing.
            (Admission::Normal, State::Open { .. } | State::HalfOpen { .. }, _) => {}
        }
    }

    async fn around<T, F, Fut>(&self, call: Call<'_>, mut f: F) -> Result<T>
    where
        T: Reply,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        if call.op == Op::Close {
            return f().await;
        }
        let admission = self.admit(call.op)?;
        let mut probe = ProbeGuard {
            state: &self.state,
            armed: admission == Admission::Probe,
        };
        let result = f().await;
        probe.armed = false;
        self.record(
            admission,
            result.as_ref().is_err_and(|error| error.is_temporary()),
        );
        result
    }
}

/// Frees the probe slot of a half-open circuit if the probe is cancelled
/// (its future dropped) before it answers.
struct ProbeGuard<'a> {
    state: &'a Mutex<State>,
    armed: bool,
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut state = self.state.lock();
            if let State::HalfOpen { probing: true } = *state {
                *state = State::HalfOpen { probing: false };
            }
        }
    }
}
