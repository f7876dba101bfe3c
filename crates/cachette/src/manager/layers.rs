//! [`LayersConfig`]: the layer stack of a configured cache, as data.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::cache::config::duration;
use crate::error::Result;
use crate::layers::{CircuitBreakerLayer, LayerStack, RetryLayer, TimeoutLayer, TracingLayer};

/// The layers of a configured cache: the `[caches.<name>.layers]` table.
/// Each present layer wraps the backend; the order is
/// [`LayerStack`]'s, whatever the order in the file, from the caller down
/// to the backend:
///
/// ```text
/// tracing → metrics → circuit_breaker → retry → timeout → prefix → backend
/// ```
///
/// Tracing and metrics see what the caller sees (one operation per call,
/// retries and backoff included); the breaker counts operations that failed
/// after their retries; each retry attempt has its own deadline; the
/// prefix only rewrites keys. [The layers' docs](crate::layers) give the
/// reasons in full. A fixed order means no file can put a retry outside a
/// breaker by accident.
///
/// | key | value | layer |
/// | --- | --- | --- |
/// | `prefix` | text, e.g. `"app:"` | [`PrefixLayer`](crate::layers::PrefixLayer) |
/// | `timeout` | `{ all, reads, writes, scans }`, durations, each optional (`all` first, the others override it) | [`TimeoutLayer`] |
/// | `retry` | `{ max_attempts, initial_backoff, max_backoff }` (defaults 3, `10ms`, `1s`) | [`RetryLayer`] |
/// | `circuit_breaker` | `{ failure_threshold, open_duration }` (defaults 5, `5s`) | [`CircuitBreakerLayer`] |
/// | `metrics` | `{ cache_label, backend_label, export_interval, export_stats }` (feature `metrics`; `cache` label by default the cache's name, `backend` the backend's) | `MetricsLayer` |
/// | `tracing` | `{ record_keys, namespace }` (`record_keys` default `false`; `namespace`, the spans' `db.namespace`, default the cache's name) | [`TracingLayer`] |
///
/// An empty table (`metrics = {}`) adds the layer with its defaults. Your
/// own layers ([`LayerStack::layer`]) exist in code only, as the layer is a
/// value of your type: wrap the backend yourself (this type's
/// [`wrap`](Self::wrap) puts the configured layers around it) and add it
/// with [`CacheManager::builder`](crate::CacheManager::builder).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct LayersConfig {
    /// A key and tag prefix ([`LayerStack::prefix`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// A deadline per operation (per attempt, below retry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<TimeoutConfig>,
    /// Retries of temporary failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryConfig>,
    /// Fail fast while the backend keeps failing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreakerConfig>,
    /// Counters and latencies through the `metrics` facade (feature
    /// `metrics`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsConfig>,
    /// A span per operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<TracingConfig>,
}

/// The options of [`TimeoutLayer`]; see [`LayersConfig`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TimeoutConfig {
    /// [`TimeoutLayer::all`], applied before the three others.
    #[serde(default, with = "duration", skip_serializing_if = "Option::is_none")]
    pub all: Option<Duration>,
    /// [`TimeoutLayer::reads`].
    #[serde(default, with = "duration", skip_serializing_if = "Option::is_none")]
    pub reads: Option<Duration>,
    /// [`TimeoutLayer::writes`].
    #[serde(default, with = "duration", skip_serializing_if = "Option::is_none")]
    pub writes: Option<Duration>,
    /// [`TimeoutLayer::scans`].
    #[serde(default, with = "duration", skip_serializing_if = "Option::is_none")]
    pub scans: Option<Duration>,
}

/// The options of [`RetryLayer`]; see [`LayersConfig`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RetryConfig {
    /// [`RetryLayer::max_attempts`], the first attempt included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// The first bound of [`RetryLayer::backoff`].
    #[serde(default, with = "duration", skip_serializing_if = "Option::is_none")]
    pub initial_backoff: Option<Duration>,
    /// The second bound of [`RetryLayer::backoff`].
    #[serde(default, with = "duration", skip_serializing_if = "Option::is_none")]
    pub max_backoff: Option<Duration>,
}

/// The options of [`CircuitBreakerLayer`]; see [`LayersConfig`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CircuitBreakerConfig {
    /// [`CircuitBreakerLayer::failure_threshold`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<u32>,
    /// [`CircuitBreakerLayer::open_duration`].
    #[serde(default, with = "duration", skip_serializing_if = "Option::is_none")]
    pub open_duration: Option<Duration>,
}

/// The options of the metrics layer (feature `metrics`); see
/// [`LayersConfig`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct MetricsConfig {
    /// The value of the `cache` label (`MetricsLayer::cache_label`); by
    /// default the name of the cache entry, so that two caches over the
    /// same kind of backend are told apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_label: Option<String>,
    /// The value of the `backend` label (`MetricsLayer::backend_label`);
    /// by default the backend's name (`memory`, `redis`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_label: Option<String>,
    /// How often the backend's own figures are exported
    /// (`MetricsLayer::export_interval`, default 10 s).
    #[serde(default, with = "duration", skip_serializing_if = "Option::is_none")]
    pub export_interval: Option<Duration>,
    /// Whether the backend's own figures are exported at all
    /// (`MetricsLayer::export_stats`, default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_stats: Option<bool>,
}

/// The options of [`TracingLayer`]; see [`LayersConfig`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TracingConfig {
    /// [`TracingLayer::record_keys`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_keys: Option<bool>,
    /// [`TracingLayer::namespace`] (`db.namespace`); by default the name
    /// of the cache entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl LayersConfig {
    /// Whether no layer is configured.
    pub fn is_empty(&self) -> bool {
        *self == LayersConfig::default()
    }

    /// `backend` in the configured layers, in [`LayerStack`]'s order;
    /// `cache` is the name of the cache, the default label of the metrics
    /// layer. The manager calls this on every cache it opens; call it
    /// yourself to put the configured layers around a backend made in
    /// code.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use cachette::{Backend, MemoryBackend};
    /// use cachette::manager::CacheManagerConfig;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> cachette::Result<()> {
    /// let config = CacheManagerConfig::from_toml_str(r#"
    ///     [caches.users]
    ///     url = "memory://"
    ///     [caches.users.layers]
    ///     prefix = "app:"
    ///     retry = { max_attempts = 5 }
    /// "#)?;
    /// let store: Arc<dyn Backend> = Arc::new(MemoryBackend::default());
    /// let users = config.caches["users"].layers.wrap("users", Arc::clone(&store))?;
    /// users.set("k", "v".into(), &Default::default()).await?;
    /// assert!(store.exists("app:k").await?);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// The [`ErrorKind::Config`](crate::ErrorKind::Config) errors of the
    /// layers' setters (a zero timeout, zero attempts, an initial backoff
    /// above the maximum, a zero failure threshold) and of
    /// [`LayerStack::build`] (a prefix that leaves no room for a key); a
    /// `metrics` layer without the `metrics` feature.
    pub fn wrap(&self, cache: &str, backend: Arc<dyn Backend>) -> Result<Arc<dyn Backend>> {
        let mut stack = LayerStack::new(backend);
        if let Some(prefix) = &self.prefix {
            stack = stack.prefix(prefix.clone());
        }
        if let Some(timeout) = &self.timeout {
            stack = stack.timeout(timeout.layer()?);
        }
        if let Some(retry) = &self.retry {
            stack = stack.retry(retry.layer()?);
        }
        if let Some(breaker) = &self.circuit_breaker {
            stack = stack.circuit_breaker(breaker.layer()?);
        }
        if let Some(metrics) = &self.metrics {
            stack = metrics.stack(stack, cache)?;
        }
        if let Some(tracing) = &self.tracing {
            let namespace = tracing.namespace.as_deref().unwrap_or(cache);
            stack = stack.tracing(
                TracingLayer::new()
                    .record_keys(tracing.record_keys == Some(true))
                    .namespace(namespace),
            );
        }
        stack.build()
    }
}

/// A deadline setter of [`TimeoutLayer`].
type TimeoutSetter = fn(TimeoutLayer, Duration) -> Result<TimeoutLayer>;

impl TimeoutConfig {
    fn layer(&self) -> Result<TimeoutLayer> {
        let mut layer = TimeoutLayer::new();
        let limits: [(Option<Duration>, TimeoutSetter); 4] = [
            (self.all, TimeoutLayer::all),
            (self.reads, TimeoutLayer::reads),
            (self.writes, TimeoutLayer::writes),
            (self.scans, TimeoutLayer::scans),
        ];
        for (limit, setter) in limits {
            if let Some(limit) = limit {
                layer = setter(layer, limit)?;
            }
        }
        Ok(layer)
    }
}

impl RetryConfig {
    fn layer(&self) -> Result<RetryLayer> {
        let mut layer = RetryLayer::new();
        if let Some(attempts) = self.max_attempts {
            layer = layer.max_attempts(attempts)?;
        }
        if self.initial_backoff.is_some() || self.max_backoff.is_some() {
            let (initial, max) = layer.backoff_bounds();
            layer = layer.backoff(
                self.initial_backoff.unwrap_or(initial),
                self.max_backoff.unwrap_or(max),
            )?;
        }
        Ok(layer)
    }
}

impl CircuitBreakerConfig {
    fn layer(&self) -> Result<CircuitBreakerLayer> {
        let mut layer = CircuitBreakerLayer::new();
        if let Some(failures) = self.failure_threshold {
            layer = layer.failure_threshold(failures)?;
        }
        if let Some(duration) = self.open_duration {
            layer = layer.open_duration(duration);
        }
        Ok(layer)
    }
}

impl MetricsConfig {
    /// `stack` with a metrics layer labelled `cache_label` (or `cache`).
    #[cfg(feature = "metrics")]
    fn stack(&self, stack: LayerStack, cache: &str) -> Result<LayerStack> {
        let mut layer = crate::layers::MetricsLayer::new();
        if let Some(backend) = &self.backend_label {
            layer = layer.backend_label(backend.clone());
        }
        layer = layer.cache_label(self.cache_label.as_deref().unwrap_or(cache));
        if let Some(interval) = self.export_interval {
            layer = layer.export_interval(interval)?;
        }
        if let Some(export) = self.export_stats {
            layer = layer.export_stats(export);
        }
        Ok(stack.metrics(layer))
    }

    /// Without the `metrics` feature, a metrics layer is an error.
    #[cfg(not(feature = "metrics"))]
    fn stack(&self, _stack: LayerStack, _cache: &str) -> Result<LayerStack> {
        Err(crate::error::Error::config(
            super::MANAGER,
            "the `metrics` layer needs the cargo feature `metrics`",
        ))
    }
}
