//! Layers: [`Backend`] wrappers that are backends themselves.
//!
//! Each layer observes or guards the operations of the backend it wraps and
//! forwards every method of the trait (none falls back to a slow default),
//! reporting the inner backend's name and [`Capabilities`] (adjusted where
//! the layer changes them: [`Prefix`] lowers `max_key_len`).
//!
//! The naming follows tower: a `…Layer` value configures, and the [`Layer`]
//! trait's [`layer`](Layer::layer) wraps an `Arc<dyn Backend>` in the
//! layer's backend type (`TimeoutLayer` → [`Timeout`]). Each `…Layer` also
//! has an inherent `wrap`, which takes any `Arc<B>` and keeps the concrete
//! type (`Timeout<B>`): static dispatch, and methods of the wrapper such as
//! [`CircuitBreaker::state`]. Wrappers have no public constructor of their
//! own: the layer is the one way in.
//!
//! | layer | wrapper | what it does |
//! | --- | --- | --- |
//! | [`TracingLayer`] | [`Tracing`] | a `debug` span per operation (`cachette.get`, ...) with OpenTelemetry's database attributes, errors at `warn` |
//! | `MetricsLayer` (feature `metrics`) | `Metrics` | Prometheus-style counters and a latency histogram through the `metrics` facade, and the backend's own figures on an interval |
//! | [`CircuitBreakerLayer`] | [`CircuitBreaker`] | fails fast while the backend keeps failing |
//! | [`RetryLayer`] | [`Retry`] | retries temporary failures of idempotent operations, with backoff |
//! | [`TimeoutLayer`] | [`Timeout`] | a deadline per operation |
//! | [`PrefixLayer`] | [`Prefix`] | a key and tag prefix: a namespace in a shared store |
//!
//! [`Backend`]: crate::Backend
//! [`Capabilities`]: crate::Capabilities
//!
//! What the tracing and metrics layers report, and how to send it to
//! Prometheus and OpenTelemetry: `docs/observability.md`.
//!
//! # Configuration errors come first
//!
//! A layer value is always valid, so wrapping never fails. Whatever can be
//! wrong is rejected where it is written: a constructor or setter whose
//! argument can be invalid returns [`Result<Self>`](crate::Result) (an
//! [`ErrorKind::Config`](crate::ErrorKind::Config) error raised by the
//! layer, e.g. `timeout layer`), the others return `Self`, and chains read
//! `TimeoutLayer::new().reads(limit)?.writes(limit)?`. Two values that are
//! only valid together are given together
//! ([`RetryLayer::backoff`]), so no order of the calls matters.
//!
//! One rule depends on the backend being wrapped: a prefix must leave room
//! for a key under the inner backend's `max_key_len`. [`PrefixLayer::wrap`]
//! and [`LayerStack::build`] check it and fail; through the [`Layer`]
//! trait, the prefixed backend reports a `max_key_len` of 0 and fails each
//! keyed operation with that same error.
//!
//! # Order
//!
//! Order matters. [`LayerStack`] applies the layers in this order, from the
//! caller (outermost) down to the backend:
//!
//! ```text
//! tracing → metrics → circuit breaker → retry → timeout → prefix → your layers → backend
//! ```
//!
//! - **Tracing outermost**: its span covers the whole operation, so what the
//!   layers below log (retry attempts, breaker state changes) is recorded
//!   inside it, and the span reports what the caller saw.
//! - **Metrics next**: it counts operations as the caller sees them: one
//!   per call whatever the retries, fast failures of an open circuit
//!   included, and a duration that includes the backoff.
//! - **Circuit breaker above retry**: one failure is one operation that
//!   failed after its retries, and an open circuit fails fast without
//!   retrying. Below retry, each attempt would count, and retry would keep
//!   retrying the breaker's own fast failures (they are `Connection`
//!   errors, which are temporary).
//! - **Retry above timeout**: each attempt gets its own deadline, and an
//!   attempt that timed out is retried. Above retry, a timeout would bound
//!   all attempts and the backoff together.
//! - **Prefix above your layers**: it only rewrites keys, so every layer
//!   above sees and logs the caller's keys, and the key limit it lowers is
//!   the one the caller is checked against.
//! - **Your layers innermost** ([`LayerStack::layer`], the first added
//!   nearest the backend): they extend the store, so the layers above treat
//!   them as part of it: each attempt of a retry reaches them, the
//!   deadlines and the circuit breaker cover them, and tracing records what
//!   they do inside its span.
//!
//! # Composing by hand
//!
//! Every layer is a backend, so any order is possible:
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use cachette::{Backend, MemoryBackend};
//! use cachette::layers::{Layer, PrefixLayer, RetryLayer, TimeoutLayer, TracingLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> cachette::Result<()> {
//! let store: Arc<dyn Backend> = Arc::new(MemoryBackend::default());
//! let backend = PrefixLayer::new("app:")?.layer(store);
//! let backend = TimeoutLayer::new().all(Duration::from_millis(50))?.layer(backend);
//! let backend = RetryLayer::new().layer(backend);
//! let backend = TracingLayer::new().layer(backend);
//!
//! backend.set("user:1", "Ada".into(), &Default::default()).await?;
//! assert_eq!(backend.get("user:1").await?.as_deref(), Some(&b"Ada"[..]));
//! # Ok(())
//! # }
//! ```
//!
//! # Writing a layer
//!
//! A layer of your own implements [`Layer`] and returns a backend that
//! forwards every method it does not change (deny
//! `clippy::missing_trait_methods` on that impl, as the layers here do, so
//! that no operation falls back to a slow default); [`LayerStack::layer`]
//! stacks it with the others.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::backend::{Backend, KeyStream, KeyTtl, SetCondition, SetOptions, Stats};

/// Wraps a backend in another backend: the configuring half of a layer
/// (see [the module docs](self)).
///
/// `layer` never fails: a layer value is valid once built, and its
/// constructors and setters rejected what was not.
///
/// ```
/// use std::sync::Arc;
/// use cachette::{Backend, MemoryBackend};
/// use cachette::layers::{Layer, TracingLayer};
///
/// let store: Arc<dyn Backend> = Arc::new(MemoryBackend::default());
/// let traced: Arc<dyn Backend> = TracingLayer::new().layer(store);
/// ```
pub trait Layer: Send + Sync + fmt::Debug {
    /// `inner`, wrapped in this layer's backend.
    fn layer(&self, inner: Arc<dyn Backend>) -> Arc<dyn Backend>;
}

/// Implements [`Backend`] for a layer `$layer<B>` (with fields `inner:
/// Arc<B>`) whose inherent method
/// `async fn around<T: Reply, F: FnMut() -> Fut>(&self, call: Call<'_>, f: F) -> Result<T>`
/// runs each operation: `f` calls the inner backend once per call (the
/// retry layer calls it again for each attempt).
macro_rules! backend_around {
    ($layer:ident) => {
        #[async_trait::async_trait]
        #[deny(clippy::missing_trait_methods)]
        impl<B: $crate::Backend + ?Sized> $crate::Backend for $layer<B> {
            fn name(&self) -> &'static str {
                self.inner.name()
            }

            fn capabilities(&self) -> $crate::Capabilities {
                self.inner.capabilities()
            }

            fn get_ready(&self, _key: &str) -> Option<$crate::Result<Option<bytes::Bytes>>> {
                // Every read passes through the layer's `around`.
                None
            }

            async fn get(&self, key: &str) -> $crate::Result<Option<bytes::Bytes>> {
                let call = Call::key($crate::layers::Op::Get, key);
                self.around(call, move || self.inner.get(key)).await
            }

            async fn set(
                &self,
                key: &str,
                value: bytes::Bytes,
                options: &$crate::SetOptions,
            ) -> $crate::Result<bool> {
                let call = Call::key($crate::layers::Op::Set, key).with_options(options);
                self.around(call, move || self.inner.set(key, value.clone(), options))
                    .await
            }

            async fn delete(&self, key: &str) -> $crate::Result<bool> {
                let call = Call::key($crate::layers::Op::Delete, key);
                self.around(call, move || self.inner.delete(key)).await
            }

            async fn exists(&self, key: &str) -> $crate::Result<bool> {
                let call = Call::key($crate::layers::Op::Exists, key);
                self.around(call, move || self.inner.exists(key)).await
            }

            async fn get_many(&self, keys: &[&str]) -> $crate::Result<Vec<Option<bytes::Bytes>>> {
                let call = Call::batch($crate::layers::Op::GetMany, keys.len());
                self.around(call, move || self.inner.get_many(keys)).await
            }

            async fn set_many(
                &self,
                entries: &[(&str, bytes::Bytes)],
                options: &$crate::SetOptions,
            ) -> $crate::Result<Vec<bool>> {
                let call =
                    Call::batch($crate::layers::Op::SetMany, entries.len()).with_options(options);
                self.around(call, move || self.inner.set_many(entries, options))
                    .await
            }

            async fn delete_many(&self, keys: &[&str]) -> $crate::Result<u64> {
                let call = Call::batch($crate::layers::Op::DeleteMany, keys.len());
                self.around(call, move || self.inner.delete_many(keys))
                    .await
            }

            async fn incr(
                &self,
                key: &str,
                delta: i64,
                expiry: $crate::Expiry,
            ) -> $crate::Result<i64> {
                let call = Call::key($crate::layers::Op::Incr, key);
                self.around(call, move || self.inner.incr(key, delta, expiry))
                    .await
            }

            async fn decr(
                &self,
                key: &str,
                delta: i64,
                expiry: $crate::Expiry,
            ) -> $crate::Result<i64> {
                let call = Call::key($crate::layers::Op::Decr, key);
                self.around(call, move || self.inner.decr(key, delta, expiry))
                    .await
            }

            async fn ttl(&self, key: &str) -> $crate::Result<$crate::KeyTtl> {
                let call = Call::key($crate::layers::Op::Ttl, key);
                self.around(call, move || self.inner.ttl(key)).await
            }

            async fn touch(&self, key: &str, expiry: $crate::Expiry) -> $crate::Result<bool> {
                let call = Call::key($crate::layers::Op::Touch, key);
                self.around(call, move || self.inner.touch(key, expiry))
                    .await
            }

            async fn clear(&self) -> $crate::Result<()> {
                let call = Call::new($crate::layers::Op::Clear);
                self.around(call, move || self.inner.clear()).await
            }

            async fn keys(&self, pattern: &str) -> $crate::Result<$crate::KeyStream> {
                let call = Call::key($crate::layers::Op::Keys, pattern);
                self.around(call, move || self.inner.keys(pattern)).await
            }

            async fn invalidate_tags(&self, tags: &[&str]) -> $crate::Result<u64> {
                let call = Call::batch($crate::layers::Op::InvalidateTags, tags.len());
                self.around(call, move || self.inner.invalidate_tags(tags))
                    .await
            }

            async fn lease(
                &self,
                key: &str,
                ttl: std::time::Duration,
            ) -> $crate::Result<Option<$crate::Lease>> {
                let call = Call::key($crate::layers::Op::Lease, key);
                self.around(call, move || self.inner.lease(key, ttl)).await
            }

            async fn release_lease(
                &self,
                key: &str,
                lease: $crate::LeaseToken,
            ) -> $crate::Result<()> {
                let call = Call::key($crate::layers::Op::ReleaseLease, key);
                self.around(call, move || self.inner.release_lease(key, lease))
                    .await
            }

            async fn purge_expired(&self) -> $crate::Result<u64> {
                let call = Call::new($crate::layers::Op::PurgeExpired);
                self.around(call, move || self.inner.purge_expired()).await
            }

            async fn stats(&self) -> $crate::Result<$crate::Stats> {
                let call = Call::new($crate::layers::Op::Stats);
                self.around(call, move || self.inner.stats()).await
            }

            async fn health(&self) -> $crate::Result<()> {
                let call = Call::new($crate::layers::Op::Health);
                self.around(call, move || self.inner.health()).await
            }

            async fn close(&self) -> $crate::Result<()> {
                let call = Call::new($crate::layers::Op::Close);
                self.around(call, move || self.inner.close()).await
            }
        }
    };
}

/// `impl Layer for $config` through its inherent, infallible
/// `wrap(&self, Arc<B>) -> $wrapper<B>`.
macro_rules! layer_by_wrap {
    ($config:ident) => {
        impl $crate::layers::Layer for $config {
            fn layer(
                &self,
                inner: std::sync::Arc<dyn $crate::Backend>,
            ) -> std::sync::Arc<dyn $crate::Backend> {
                std::sync::Arc::new(self.wrap(inner))
            }
        }
    };
}

/// `impl Debug` for a layer `$layer<B>` with an `inner: Arc<B>` field: the
/// inner backend's name, then the given fields.
macro_rules! debug_layer {
    ($layer:ident { $($field:ident),* }) => {
        impl<B: $crate::Backend + ?Sized> std::fmt::Debug for $layer<B> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($layer))
                    .field("inner", &self.inner.name())
                    $(.field(stringify!($field), &self.$field))*
                    .finish()
            }
        }
    };
}

mod circuit_breaker;
#[cfg(feature = "metrics")]
mod metrics;
mod prefix;
mod retry;
mod stack;
mod timeout;
mod trace;

#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub use self::metrics::{Metrics, MetricsLayer};
pub use circuit_breaker::{CircuitBreaker, CircuitBreakerLayer, CircuitState};
pub use prefix::{Prefix, PrefixLayer};
pub use retry::{Retry, RetryLayer};
pub use stack::LayerStack;
pub use timeout::{Timeout, TimeoutLayer};
pub use trace::{Tracing, TracingLayer};

/// The operations of [`Backend`], as layers name and classify them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Op {
    Get,
    Set,
    Delete,
    Exists,
    GetMany,
    SetMany,
    DeleteMany,
    Incr,
    Decr,
    Ttl,
    Touch,
    Clear,
    Keys,
    InvalidateTags,
    PurgeExpired,
    Lease,
    ReleaseLease,
    Stats,
    Health,
    Close,
}

/// Which deadline of [`TimeoutLayer`] applies to an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpClass {
    Read,
    Write,
    Scan,
}

impl Op {
    /// The method's name: `get`, `set_many`, ...
    pub(crate) fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Set => "set",
            Op::Delete => "delete",
            Op::Exists => "exists",
            Op::GetMany => "get_many",
            Op::SetMany => "set_many",
            Op::DeleteMany => "delete_many",
            Op::Incr => "incr",
            Op::Decr => "decr",
            Op::Ttl => "ttl",
            Op::Touch => "touch",
            Op::Clear => "clear",
            Op::Keys => "keys",
            Op::InvalidateTags => "invalidate_tags",
            Op::PurgeExpired => "purge_expired",
            Op::Lease => "lease",
            Op::ReleaseLease => "release_lease",
            Op::Stats => "stats",
            Op::Health => "health",
            Op::Close => "close",
        }
    }

    /// Reads, writes, and the operations that walk the whole store.
    pub(crate) fn class(self) -> OpClass {
        match self {
            Op::Get | Op::Exists | Op::GetMany | Op::Ttl | Op::Stats | Op::Health => OpClass::Read,
            Op::Set
            | Op::Delete
            | Op::SetMany
            | Op::DeleteMany
            | Op::Incr
            | Op::Decr
            | Op::Touch
            | Op::InvalidateTags
            | Op::Lease
            | Op::ReleaseLease
            | Op::Close => OpClass::Write,
            Op::Keys | Op::Clear | Op::PurgeExpired => OpClass::Scan,
        }
    }

    /// Whether running the operation twice leaves the store as running it
    /// once would (for `set` and `set_many`: without a condition).
    fn idempotent(self) -> bool {
        !matches!(self, Op::Incr | Op::Decr | Op::Lease | Op::Close)
    }
}

/// One call of a [`Backend`] method, as the layers see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Call<'a> {
    pub(crate) op: Op,
    /// The key, or the pattern of `keys`.
    pub(crate) key: Option<&'a str>,
    /// How many keys, entries or tags a batch operation carries.
    pub(crate) count: Option<usize>,
    /// A `set` or `set_many` with a condition (`IfAbsent`, `IfPresent`).
    pub(crate) conditional: bool,
}

impl<'a> Call<'a> {
    pub(crate) fn new(op: Op) -> Self {
        Call {
            op,
            key: None,
            count: None,
            conditional: false,
        }
    }

    pub(crate) fn key(op: Op, key: &'a str) -> Self {
        Call {
            key: Some(key),
            ..Call::new(op)
        }
    }

    pub(crate) fn batch(op: Op, count: usize) -> Self {
        Call {
            count: Some(count),
            ..Call::new(op)
        }
    }

    pub(crate) fn with_options(mut self, options: &SetOptions) -> Self {
        self.conditional = options.condition != SetCondition::Always;
        self
    }

    /// Whether the call may be sent again after a temporary failure.
    pub(crate) fn idempotent(&self) -> bool {
        self.op.idempotent() && !self.conditional
    }
}

/// What layers look at in the answer of an operation.
pub(crate) trait Reply: Sized {
    /// Hits and misses, for the answers of `get` and `get_many`.
    fn lookups(&self) -> Option<(u64, u64)> {
        None
    }

    /// Applies `wrap` to the stream of a `keys` answer; other answers are
    /// returned as they are.
    fn map_keys(self, wrap: impl FnOnce(KeyStream) -> KeyStream) -> Self {
        let _ = wrap;
        self
    }
}

impl Reply for Option<Bytes> {
    fn lookups(&self) -> Option<(u64, u64)> {
        Some(if self.is_some() { (1, 0) } else { (0, 1) })
    }
}

impl Reply for Vec<Option<Bytes>> {
    fn lookups(&self) -> Option<(u64, u64)> {
        let hits = self.iter().filter(|value| value.is_some()).count() as u64;
        Some((hits, self.len() as u64 - hits))
    }
}

impl Reply for KeyStream {
    fn map_keys(self, wrap: impl FnOnce(KeyStream) -> KeyStream) -> Self {
        wrap(self)
    }
}

impl Reply for () {}
impl Reply for bool {}
impl Reply for u64 {}
impl Reply for i64 {}
impl Reply for KeyTtl {}
impl Reply for Stats {}
impl Reply for Vec<bool> {}
impl Reply for Option<crate::backend::Lease> {}
