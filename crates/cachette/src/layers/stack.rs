//! [`LayerStack`]: the layers in their documented order.

use std::fmt;
use std::sync::Arc;

#[cfg(feature = "metrics")]
use super::MetricsLayer;
use super::{CircuitBreakerLayer, Layer, PrefixLayer, RetryLayer, TimeoutLayer, TracingLayer};
use crate::backend::Backend;
use crate::error::Result;

/// Stacks layers around a backend in a fixed order, whatever the order of
/// the calls:
///
/// ```text
/// tracing → metrics → circuit breaker → retry → timeout → prefix → your layers → backend
/// ```
///
/// (outermost first; [the module docs](crate::layers) say why). Each layer
/// is optional; [`layer`](LayerStack::layer) adds one of your own, and
/// composing by hand gives any other order.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use cachette::{Backend, MemoryBackend};
/// use cachette::layers::{CircuitBreakerLayer, LayerStack, RetryLayer, TimeoutLayer, TracingLayer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> cachette::Result<()> {
/// let backend: Arc<dyn Backend> = LayerStack::new(Arc::new(MemoryBackend::default()))
///     .prefix("app:")
///     .timeout(TimeoutLayer::new().all(Duration::from_millis(100))?)
///     .retry(RetryLayer::new())
///     .circuit_breaker(CircuitBreakerLayer::new())
///     .tracing(TracingLayer::new())
///     .build()?;
/// backend.set("k", "v".into(), &Default::default()).await?;
/// assert!(backend.exists("k").await?);
/// # Ok(())
/// # }
/// ```
#[must_use = "a LayerStack does nothing until `build` is called"]
pub struct LayerStack {
    backend: Arc<dyn Backend>,
    /// The caller's own layers, the first added innermost.
    layers: Vec<Box<dyn Layer>>,
    prefix: Option<String>,
    timeout: Option<TimeoutLayer>,
    retry: Option<RetryLayer>,
    circuit_breaker: Option<CircuitBreakerLayer>,
    #[cfg(feature = "metrics")]
    metrics: Option<MetricsLayer>,
    tracing: Option<TracingLayer>,
}

impl LayerStack {
    /// No layer yet around `backend`.
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        LayerStack {
            backend,
            layers: Vec::new(),
            prefix: None,
            timeout: None,
            retry: None,
            circuit_breaker: None,
            #[cfg(feature = "metrics")]
            metrics: None,
            tracing: None,
        }
    }

    /// A layer of your own, below the prefix and every other layer of the
    /// stack: each call adds one above the previous ones, so the first
    /// added is nearest the backend.
    pub fn layer(mut self, layer: impl Layer + 'static) -> Self {
        self.layers.push(Box::new(layer));
        self
    }

    /// A [`Prefix`](super::Prefix) namespace, above your layers and below
    /// the others. [`build`](LayerStack::build) checks it as
    /// [`PrefixLayer::new`] and [`PrefixLayer::wrap`] do.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// A [`Timeout`](super::Timeout) per attempt, below retry.
    pub fn timeout(mut self, layer: TimeoutLayer) -> Self {
        self.timeout = Some(layer);
        self
    }

    /// A [`Retry`](super::Retry), below the circuit breaker.
    pub fn retry(mut self, layer: RetryLayer) -> Self {
        self.retry = Some(layer);
        self
    }

    /// A [`CircuitBreaker`](super::CircuitBreaker), below metrics.
    pub fn circuit_breaker(mut self, layer: CircuitBreakerLayer) -> Self {
        self.circuit_breaker = Some(layer);
        self
    }

    /// A [`Metrics`](super::Metrics) layer, below tracing (feature
    /// `metrics`).
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn metrics(mut self, layer: MetricsLayer) -> Self {
        self.metrics = Some(layer);
        self
    }

    /// A [`Tracing`](super::Tracing) layer, outermost.
    pub fn tracing(mut self, layer: TracingLayer) -> Self {
        self.tracing = Some(layer);
        self
    }

    /// Wraps the backend in the chosen layers, innermost first. The layers
    /// were checked when they were configured; what is left is the prefix:
    /// fails with [`ErrorKind::Config`](crate::ErrorKind::Config) if it is
    /// empty or leaves no room for a key under the key limit of the layers
    /// below it.
    pub fn build(self) -> Result<Arc<dyn Backend>> {
        let mut backend = self.backend;
        for layer in &self.layers {
            backend = layer.layer(backend);
        }
        if let Some(prefix) = self.prefix {
            backend = Arc::new(PrefixLayer::new(prefix)?.wrap(backend)?);
        }
        backend = around(backend, self.timeout.as_ref());
        backend = around(backend, self.retry.as_ref());
        backend = around(backend, self.circuit_breaker.as_ref());
        #[cfg(feature = "metrics")]
        {
            backend = around(backend, self.metrics.as_ref());
        }
        Ok(around(backend, self.tracing.as_ref()))
    }
}

/// `backend` in `layer`, if there is one.
fn around(backend: Arc<dyn Backend>, layer: Option<&impl Layer>) -> Arc<dyn Backend> {
    match layer {
        Some(layer) => layer.layer(backend),
        None => backend,
    }
}

impl fmt::Debug for LayerStack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("LayerStack");
        debug
            .field("backend", &self.backend.name())
            .field("layers", &self.layers)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("circuit_breaker", &self.circuit_breaker);
        #[cfg(feature = "metrics")]
        debug.field("metrics", &self.metrics);
        debug.field("tracing", &self.tracing).finish()
    }
}
