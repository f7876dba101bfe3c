//! [`Tracing`]: a span per operation.

use std::future::Future;
use std::sync::Arc;

use tracing::Instrument;
use tracing::field::{Empty, display};

use super::{Call, Op, Reply};
use crate::backend::Backend;
use crate::error::Result;

/// Configures a [`Tracing`] layer.
///
/// ```
/// use std::sync::Arc;
/// use cachette::{Backend, MemoryBackend};
/// use cachette::layers::{Layer, TracingLayer};
///
/// let backend: Arc<dyn Backend> = TracingLayer::new().layer(Arc::new(MemoryBackend::default()));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TracingLayer {
    record_keys: bool,
}

impl TracingLayer {
    /// Spans without full keys.
    pub fn new() -> Self {
        TracingLayer::default()
    }

    /// Whether spans record keys (and `keys` patterns) in full. Off by
    /// default: keys may be personal data (an e-mail address, a user id),
    /// so spans record only their length and a hash.
    pub fn record_keys(mut self, record: bool) -> Self {
        self.record_keys = record;
        self
    }

    /// Wraps `inner`, keeping its type; [`Layer::layer`](super::Layer::layer)
    /// does the same for an `Arc<dyn Backend>`.
    pub fn wrap<B: Backend + ?Sized>(&self, inner: Arc<B>) -> Tracing<B> {
        Tracing {
            config: *self,
            inner,
        }
    }
}

layer_by_wrap!(TracingLayer);

/// A backend that runs each operation in a `tracing` span; built by
/// [`TracingLayer`].
///
/// The span is named after the operation (`cachette.get`,
/// `cachette.set_many`, ...), at level `debug`, with the fields:
///
/// | field | value |
/// | --- | --- |
/// | `backend` | the inner backend's name |
/// | `key.len` | the length of the key (or `keys` pattern) in bytes |
/// | `key.hash` | a 64-bit FNV-1a hash of the key, in hex: it tells keys apart across log lines, but it does not make them anonymous |
/// | `key` | the key itself, only with [`TracingLayer::record_keys`] |
/// | `count` | the number of keys, entries or tags of a batch operation |
/// | `outcome` | `hit` or `miss` for `get`, `ok` otherwise, or `error` |
/// | `hits`, `misses` | for `get_many` |
/// | `error.kind` | the [`ErrorKind`](crate::ErrorKind) of a failure |
/// | `attempts` | recorded by a [`Retry`](super::Retry) layer below, when it retried |
///
/// A failure is also logged as an event at level `warn`, inside the span.
/// Put this layer outermost so that the events of the layers below are
/// recorded inside its span (see [the module docs](crate::layers)).
pub struct Tracing<B: ?Sized = dyn Backend> {
    config: TracingLayer,
    inner: Arc<B>,
}

debug_layer!(Tracing { config });
backend_around!(Tracing);

/// The span of an operation. Span names must be literals, hence one arm
/// per operation.
fn span(op: Op, backend: &'static str) -> tracing::Span {
    macro_rules! spans {
        ($($op:ident => $name:literal),* $(,)?) => {
            match op {
                $(Op::$op => tracing::debug_span!(
                    $name,
                    backend,
                    key.len = Empty,
                    key.hash = Empty,
                    key = Empty,
                    count = Empty,
                    outcome = Empty,
                    hits = Empty,
                    misses = Empty,
                    error.kind = Empty,
                    attempts = Empty,
                ),)*
            }
        };
    }
    spans! {
        Get => "cachette.get",
        Set => "cachette.set",
        Delete => "cachette.delete",
        Exists => "cachette.exists",
        GetMany => "cachette.get_many",
        SetMany => "cachette.set_many",
        DeleteMany => "cachette.delete_many",
        Incr => "cachette.incr",
        Decr => "cachette.decr",
        Ttl => "cachette.ttl",
        Touch => "cachette.touch",
        Clear => "cachette.clear",
        Keys => "cachette.keys",
        InvalidateTags => "cachette.invalidate_tags",
        PurgeExpired => "cachette.purge_expired",
        Lease => "cachette.lease",
        ReleaseLease => "cachette.release_lease",
        Stats => "cachette.stats",
        Health => "cachette.health",
        Close => "cachette.close",
    }
}

/// 64-bit FNV-1a: stable across processes and releases, so that log lines
/// of several services can be matched by key.
fn key_hash(key: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;
    key.bytes().fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

impl<B: Backend + ?Sized> Tracing<B> {
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
        let span = span(call.op, self.inner.name());
        if !span.is_disabled() {
            if let Some(key) = call.key {
                span.record("key.len", key.len());
                if self.config.record_keys {
                    span.record("key", key);
                } else {
                    span.record("key.hash", display(format_args!("{:016x}", key_hash(key))));
                }
            }
            if let Some(count) = call.count {
                span.record("count", count);
            }
        }
        let result = f().instrument(span.clone()).await;
        match &result {
            Ok(reply) => match (call.op, reply.lookups()) {
                (Op::Get, Some((hits, _))) => {
                    span.record("outcome", if hits > 0 { "hit" } else { "miss" });
                }
                (_, Some((hits, misses))) => {
                    span.record("outcome", "ok");
                    span.record("hits", hits);
                    span.record("misses", misses);
                }
                (_, None) => {
                    span.record("outcome", "ok");
                }
            },
            Err(error) => {
                span.record("outcome", "error");
                span.record("error.kind", error.kind().as_str());
                span.in_scope(|| {
                    tracing::warn!(
                        backend = self.inner.name(),
                        operation = call.op.name(),
                        error.kind = error.kind().as_str(),
                        error = %error,
                        "cachette: operation failed"
                    );
                });
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::key_hash;

    #[test]
    fn key_hash_is_fnv1a() {
        // Reference values of 64-bit FNV-1a.
        assert_eq!(key_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(key_hash("a"), 0xaf63_dc4c_8601_ec8c);
    }
}
