//! [`Tracing`]: a span per operation, with the attributes of
//! OpenTelemetry's semantic conventions for database client spans.

use std::future::Future;
use std::sync::Arc;

use tracing::Instrument;
use tracing::field::{Empty, display};

use super::{Call, Op, Reply};
use crate::backend::Backend;
use crate::error::{ErrorKind, Result};

/// Configures a [`Tracing`] layer.
///
/// ```
/// use std::sync::Arc;
/// use cachette::{Backend, MemoryBackend};
/// use cachette::layers::{Layer, TracingLayer};
///
/// let backend: Arc<dyn Backend> = TracingLayer::new()
///     .namespace("sessions")
///     .layer(Arc::new(MemoryBackend::default()));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TracingLayer {
    record_keys: bool,
    namespace: Option<Arc<str>>,
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

    /// The `db.namespace` of the spans: the name of the cache (a
    /// [`CacheManager`](crate::CacheManager) entry's name, a key prefix).
    /// It also ends the OpenTelemetry span name (`get sessions`). Unset by
    /// default: a backend does not know which cache it serves.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(Arc::from(namespace.into()));
        self
    }

    /// Wraps `inner`, keeping its type; [`Layer::layer`](super::Layer::layer)
    /// does the same for an `Arc<dyn Backend>`.
    pub fn wrap<B: Backend + ?Sized>(&self, inner: Arc<B>) -> Tracing<B> {
        Tracing {
            config: self.clone(),
            inner,
        }
    }
}

layer_by_wrap!(TracingLayer);

/// A backend that runs each operation in a `tracing` span; built by
/// [`TracingLayer`].
///
/// The span is named after the operation (`cachette.get`,
/// `cachette.set_many`, ...), at level `debug`. Its fields follow
/// OpenTelemetry's [semantic conventions for database client
/// spans](https://opentelemetry.io/docs/specs/semconv/db/database-spans/)
/// (stable since semantic conventions v1.33.0), in the form
/// [`tracing-opentelemetry`](https://docs.rs/tracing-opentelemetry) maps
/// to OpenTelemetry (`otel.*` fields set the span's name, kind and
/// status); cachette's own fields are under `cachette.`:
///
/// | field | value |
/// | --- | --- |
/// | `otel.name` | the OpenTelemetry span name, `{db.operation.name} {db.namespace}` (`get sessions`), or the operation alone without a namespace |
/// | `otel.kind` | `client`; `internal` for the in-process stores (`memory`, `file`, `redb`), as the conventions allow |
/// | `db.system.name` | `redis` (the `redis` and `near` backends), `memcached`, `postgresql`, `redb`; `cachette` for cachette's own stores (`memory`, `file`, `tiered`, `object`); another backend's [`name`](Backend::name) as it is |
/// | `db.operation.name` | the method: `get`, `set`, `get_many`, `invalidate_tags`, ... |
/// | `db.namespace` | [`TracingLayer::namespace`], if set |
/// | `db.operation.batch.size` | the number of keys or entries of `get_many`, `set_many` and `delete_many`, when 2 or more (the conventions never record a batch of 1) |
/// | `error.type` | on failure, the [`ErrorKind`]: `connection`, `timeout`, `invalid_input`, `config`, `serialization`, `unsupported`, `not_an_integer`, `overflow`, `permission_denied`, `backend` |
/// | `otel.status_code` | `ERROR` on failure, unset otherwise |
/// | `cachette.backend` | the inner backend's [`name`](Backend::name) |
/// | `cachette.outcome` | `hit` or `miss` for `get`, `ok` otherwise, or `error` (the `outcome` label of the metrics layer) |
/// | `cachette.hit` | for `get`: whether the key was found |
/// | `cachette.hits`, `cachette.misses` | for `get_many`: keys found and not found |
/// | `cachette.count` | the number of keys, entries or tags of a batch operation |
/// | `cachette.key.len` | the length of the key (or `keys` pattern) in bytes |
/// | `cachette.key.hash` | a 64-bit FNV-1a hash of the key, in hex: it tells keys apart across log lines, but it does not make them anonymous |
/// | `cachette.key` | the key itself, only with [`TracingLayer::record_keys`] (keys may be personal data) |
/// | `cachette.attempts` | recorded by a [`Retry`](super::Retry) layer below, when it retried |
///
/// `server.address` and `server.port` are not recorded: the layer does
/// not know where a backend connects (a near cache, a cluster, several
/// memcached servers), and would rather omit them than guess.
///
/// A failure is also logged as an event at level `warn`, inside the span,
/// with the error's message. Put this layer outermost so that the events
/// of the layers below are recorded inside its span, and the span covers
/// the retries, as the conventions ask (see [the module
/// docs](crate::layers)).
pub struct Tracing<B: ?Sized = dyn Backend> {
    config: TracingLayer,
    inner: Arc<B>,
}

debug_layer!(Tracing { config });
backend_around!(Tracing);

/// The name of an [`ErrorKind`] as a label or attribute value:
/// [`ErrorKind::as_str`] in snake case (`invalid_input`).
pub(super) fn error_type(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Connection => "connection",
        ErrorKind::Timeout => "timeout",
        ErrorKind::InvalidInput => "invalid_input",
        ErrorKind::Config => "config",
        ErrorKind::Serialization => "serialization",
        ErrorKind::Unsupported => "unsupported",
        ErrorKind::NotAnInteger => "not_an_integer",
        ErrorKind::Overflow => "overflow",
        ErrorKind::PermissionDenied => "permission_denied",
        ErrorKind::Backend => "backend",
    }
}

/// The `db.system.name` of a backend: the conventions' well-known value
/// where one applies.
fn db_system(backend: &'static str) -> &'static str {
    match backend {
        "redis" | "near" => "redis",
        "postgres" => "postgresql",
        "memory" | "file" | "tiered" | "object" => "cachette",
        other => other,
    }
}

/// The `otel.kind` of a backend's spans.
fn span_kind(backend: &'static str) -> &'static str {
    match backend {
        "memory" | "file" | "redb" => "internal",
        _ => "client",
    }
}

/// The span of an operation, with the attributes the conventions want at
/// creation (they drive sampling). Span names must be literals, hence one
/// arm per operation.
fn span(op: Op, backend: &'static str, namespace: Option<&str>) -> tracing::Span {
    let operation = op.name();
    macro_rules! spans {
        ($($op:ident => $name:literal),* $(,)?) => {
            match op {
                $(Op::$op => tracing::debug_span!(
                    $name,
                    otel.name = %OtelName(operation, namespace),
                    otel.kind = span_kind(backend),
                    otel.status_code = Empty,
                    db.system.name = db_system(backend),
                    db.operation.name = operation,
                    db.namespace = namespace,
                    db.operation.batch.size = Empty,
                    error.type = Empty,
                    cachette.backend = backend,
                    cachette.outcome = Empty,
                    cachette.hit = Empty,
                    cachette.hits = Empty,
                    cachette.misses = Empty,
                    cachette.count = Empty,
                    cachette.key.len = Empty,
                    cachette.key.hash = Empty,
                    cachette.key = Empty,
                    cachette.attempts = Empty,
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

/// `{db.operation.name} {db.namespace}`, or the operation alone.
struct OtelName<'a>(&'static str, Option<&'a str>);

impl std::fmt::Display for OtelName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.1 {
            Some(namespace) => write!(f, "{} {namespace}", self.0),
            None => f.write_str(self.0),
        }
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
        let span = span(call.op, self.inner.name(), self.config.namespace.as_deref());
        if !span.is_disabled() {
            self.record_call(&span, call);
        }
        let result = f().instrument(span.clone()).await;
        match &result {
            Ok(reply) => match (call.op, reply.lookups()) {
                (Op::Get, Some((hits, _))) => {
                    span.record("cachette.outcome", if hits > 0 { "hit" } else { "miss" });
                    span.record("cachette.hit", hits > 0);
                }
                (_, Some((hits, misses))) => {
                    span.record("cachette.outcome", "ok");
                    span.record("cachette.hits", hits);
                    span.record("cachette.misses", misses);
                }
                (_, None) => {
                    span.record("cachette.outcome", "ok");
                }
            },
            Err(error) => {
                let error_type = error_type(error.kind());
                span.record("cachette.outcome", "error");
                span.record("error.type", error_type);
                span.record("otel.status_code", "ERROR");
                span.in_scope(|| {
                    tracing::warn!(
                        cachette.backend = self.inner.name(),
                        db.operation.name = call.op.name(),
                        error.type = error_type,
                        error = %error,
                        "cachette: operation failed"
                    );
                });
            }
        }
        result
    }

    /// Records what the call carries: its key (or a hash of it) and the
    /// size of a batch.
    fn record_call(&self, span: &tracing::Span, call: Call<'_>) {
        if let Some(key) = call.key {
            span.record("cachette.key.len", key.len());
            if self.config.record_keys {
                span.record("cachette.key", key);
            } else {
                span.record(
                    "cachette.key.hash",
                    display(format_args!("{:016x}", key_hash(key))),
                );
            }
        }
        if let Some(count) = call.count {
            span.record("cachette.count", count);
            let batch = matches!(call.op, Op::GetMany | Op::SetMany | Op::DeleteMany);
            if batch && count >= 2 {
                span.record("db.operation.batch.size", count);
            }
        }
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
