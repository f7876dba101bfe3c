//! [`Metrics`]: counters and latencies through the `metrics` facade.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use ::metrics::{SharedString, Unit, counter, describe_counter, describe_histogram, histogram};

use super::{Call, Reply};
use crate::backend::Backend;
use crate::error::Result;

const OPERATIONS: &str = "cachette_operations_total";
const DURATION: &str = "cachette_operation_duration_seconds";
const HITS: &str = "cachette_hits_total";
const MISSES: &str = "cachette_misses_total";

/// Configures a [`Metrics`] layer (feature `metrics`).
///
/// ```
/// use std::sync::Arc;
/// use cachette::{Backend, MemoryBackend};
/// use cachette::layers::{Layer, MetricsLayer};
///
/// let backend: Arc<dyn Backend> = MetricsLayer::new()
///     .backend_label("sessions")
///     .layer(Arc::new(MemoryBackend::default()));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsLayer {
    backend_label: Option<SharedString>,
}

impl MetricsLayer {
    /// Metrics labelled with the inner backend's name.
    pub fn new() -> Self {
        MetricsLayer::default()
    }

    /// The value of the `backend` label, instead of the inner backend's
    /// name: tells apart two caches over the same kind of backend.
    pub fn backend_label(mut self, label: impl Into<String>) -> Self {
        self.backend_label = Some(SharedString::from(Arc::<str>::from(label.into())));
        self
    }

    /// Wraps `inner`, keeping its type ([`Layer::layer`](super::Layer::layer)
    /// does the same for an `Arc<dyn Backend>`), and describes the metrics
    /// to the recorder installed now (if any).
    pub fn wrap<B: Backend + ?Sized>(&self, inner: Arc<B>) -> Metrics<B> {
        describe_counter!(OPERATIONS, "Operations on a cachette backend, by outcome.");
        describe_histogram!(
            DURATION,
            Unit::Seconds,
            "How long operations on a cachette backend took."
        );
        describe_counter!(HITS, "Keys found by get and get_many.");
        describe_counter!(MISSES, "Keys not found by get and get_many.");
        let backend = self
            .backend_label
            .clone()
            .unwrap_or_else(|| SharedString::from(inner.name()));
        Metrics { backend, inner }
    }
}

layer_by_wrap!(MetricsLayer);

/// A backend that records each operation through the
/// [`metrics`](https://docs.rs/metrics) facade; built by [`MetricsLayer`]
/// (feature `metrics`).
///
/// | metric | type | labels |
/// | --- | --- | --- |
/// | `cachette_operations_total` | counter | `backend`, `operation`, `outcome` (`ok` or `error`) |
/// | `cachette_operation_duration_seconds` | histogram | `backend`, `operation` |
/// | `cachette_hits_total` | counter | `backend`, `operation` (`get`, `get_many`) |
/// | `cachette_misses_total` | counter | `backend`, `operation` (`get`, `get_many`) |
///
/// `operation` is the method's name (`get`, `set_many`, ...); `get_many`
/// counts a hit or a miss per key asked. Metrics go to whatever recorder is
/// installed when the operation runs. Placed above the retry and circuit
/// breaker layers, as [`LayerStack`](super::LayerStack) does, it counts
/// operations as callers see them (see [the module docs](crate::layers)).
pub struct Metrics<B: ?Sized = dyn Backend> {
    backend: SharedString,
    inner: Arc<B>,
}

debug_layer!(Metrics { backend });
backend_around!(Metrics);

impl<B: Backend + ?Sized> Metrics<B> {
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
        let started = Instant::now();
        let result = f().await;
        let elapsed = started.elapsed();
        let operation = call.op.name();
        let outcome = if result.is_ok() { "ok" } else { "error" };
        counter!(
            OPERATIONS,
            "backend" => self.backend.clone(),
            "operation" => operation,
            "outcome" => outcome
        )
        .increment(1);
        histogram!(DURATION, "backend" => self.backend.clone(), "operation" => operation)
            .record(elapsed.as_secs_f64());
        if let Some((hits, misses)) = result.as_ref().ok().and_then(Reply::lookups) {
            for (name, count) in [(HITS, hits), (MISSES, misses)] {
                if count > 0 {
                    counter!(name, "backend" => self.backend.clone(), "operation" => operation)
                        .increment(count);
                }
            }
        }
        result
    }
}
