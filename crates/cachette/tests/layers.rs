//! The behaviour of each layer of `cachette::layers`, with `FaultyBackend`
//! to inject faults and tokio's paused clock for time. The conformance
//! suite over the layers is in `layers_conformance.rs`; what the tracing
//! and metrics layers report is in `observability.rs`.
//!
//! Run with `cargo test -p cachette --all-features --test layers`.

#![cfg(all(feature = "testing", feature = "memory"))]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;

use cachette::layers::{
    CircuitBreaker, CircuitBreakerLayer, CircuitState, Layer, LayerStack, PrefixLayer, RetryLayer,
    TimeoutLayer, TracingLayer,
};
use cachette::testing::FaultyBackend;
use cachette::{Backend, ErrorKind, MemoryBackend, SetOptions};

fn memory() -> Arc<dyn Backend> {
    Arc::new(MemoryBackend::default())
}

fn prefixed(inner: &Arc<dyn Backend>, prefix: &str) -> Arc<dyn Backend> {
    PrefixLayer::new(prefix)
        .expect("a non-empty prefix")
        .layer(inner.clone())
}

/// A memory backend behind a `FaultyBackend`: the handle, and the same as a
/// backend.
fn faulty() -> (Arc<FaultyBackend>, Arc<dyn Backend>) {
    let faulty = FaultyBackend::new(memory());
    let backend: Arc<dyn Backend> = faulty.clone();
    (faulty, backend)
}

fn opts() -> SetOptions {
    SetOptions::new()
}

use cachette::testing::list_keys as listed;

/// A backend with the default capabilities (no key listing), whose `keys`
/// stream yields one key, then never another.
#[derive(Debug, Default)]
struct Minimal(MemoryBackend);

#[async_trait::async_trait]
impl Backend for Minimal {
    fn name(&self) -> &'static str {
        "minimal"
    }
    async fn get(&self, key: &str) -> cachette::Result<Option<Bytes>> {
        self.0.get(key).await
    }
    async fn set(&self, key: &str, value: Bytes, options: &SetOptions) -> cachette::Result<bool> {
        self.0.set(key, value, options).await
    }
    async fn delete(&self, key: &str) -> cachette::Result<bool> {
        self.0.delete(key).await
    }
    async fn keys(&self, _pattern: &str) -> cachette::Result<cachette::KeyStream> {
        let first = futures_util::stream::iter([Ok("first".to_owned())]);
        Ok(Box::pin(first.chain(futures_util::stream::pending())))
    }
}

// ---------------------------------------------------------------------------
// Forwarding
// ---------------------------------------------------------------------------

const OPERATIONS: [&str; 18] = [
    "get",
    "set",
    "delete",
    "exists",
    "get_many",
    "set_many",
    "delete_many",
    "incr",
    "decr",
    "ttl",
    "touch",
    "clear",
    "keys",
    "invalidate_tags",
    "purge_expired",
    "stats",
    "health",
    "close",
];

/// Calls every operation of `backend` once, `close` last.
async fn call_every_operation(backend: &dyn Backend) {
    let never = cachette::Expiry::Never;
    backend.get("k").await.unwrap();
    backend.set("k", "1".into(), &opts()).await.unwrap();
    backend.delete("k").await.unwrap();
    backend.exists("k").await.unwrap();
    backend.get_many(&["k"]).await.unwrap();
    backend
        .set_many(&[("k", "1".into())], &opts())
        .await
        .unwrap();
    backend.delete_many(&["k"]).await.unwrap();
    backend.incr("n", 1, never).await.unwrap();
    backend.decr("n", 1, never).await.unwrap();
    backend.ttl("n").await.unwrap();
    backend.touch("n", never).await.unwrap();
    backend.clear().await.unwrap();
    listed(backend, "*").await;
    backend.invalidate_tags(&["t"]).await.unwrap();
    backend.purge_expired().await.unwrap();
    backend.stats().await.unwrap();
    backend.health().await.unwrap();
    backend.close().await.unwrap();
}

#[tokio::test]
async fn every_layer_forwards_every_operation_once() {
    type Wrap = fn(Arc<dyn Backend>) -> Arc<dyn Backend>;
    let layers: [(&str, Wrap); 6] = [
        ("timeout", |b| {
            TimeoutLayer::new()
                .all(Duration::from_secs(1))
                .unwrap()
                .layer(b)
        }),
        ("retry", |b| RetryLayer::new().layer(b)),
        ("circuit breaker", |b| CircuitBreakerLayer::new().layer(b)),
        ("tracing", |b| TracingLayer::new().layer(b)),
        ("metrics", |b| {
            #[cfg(feature = "metrics")]
            // Without the export, which would call `stats` and `health`.
            let b = cachette::layers::MetricsLayer::new()
                .export_stats(false)
                .layer(b);
            b
        }),
        ("prefix", |b| prefixed(&b, "app:")),
    ];
    for (name, wrap) in layers {
        let (faults, inner) = faulty();
        let backend = wrap(inner);
        assert_eq!(backend.capabilities().tags, faults.capabilities().tags);
        call_every_operation(&*backend).await;
        for op in OPERATIONS {
            // A prefix clears by listing and deleting its keys.
            let expected = match (name, op) {
                ("prefix", "clear") => 0,
                ("prefix", "keys" | "delete_many") => 2,
                _ => 1,
            };
            assert_eq!(faults.calls_of(op), expected, "{name} layer, `{op}`");
        }
    }
}

// ---------------------------------------------------------------------------
// Prefix
// ---------------------------------------------------------------------------

#[tokio::test]
async fn prefixed_stores_keys_under_the_prefix_in_the_inner_backend() {
    let store = memory();
    let app = prefixed(&store, "app:");
    app.set("k", "v".into(), &opts()).await.unwrap();
    assert_eq!(
        store.get("app:k").await.unwrap().as_deref(),
        Some(&b"v"[..])
    );
    assert_eq!(store.get("k").await.unwrap(), None);
}

#[tokio::test]
async fn prefixed_keys_lists_only_its_keys_without_the_prefix() {
    let store = memory();
    let (app, other) = (prefixed(&store, "app:"), prefixed(&store, "other:"));
    for key in ["a1", "a2", "b1"] {
        app.set(key, "v".into(), &opts()).await.unwrap();
    }
    other.set("a3", "v".into(), &opts()).await.unwrap();
    store.set("a4", "v".into(), &opts()).await.unwrap();

    assert_eq!(listed(&*app, "*").await, ["a1", "a2", "b1"]);
    assert_eq!(listed(&*app, "a*").await, ["a1", "a2"]);
    assert_eq!(listed(&*other, "*").await, ["a3"]);
}

#[tokio::test]
async fn prefixed_keys_treats_glob_characters_in_the_prefix_literally() {
    let store = memory();
    let starred = prefixed(&store, "a*:");
    starred.set("k", "v".into(), &opts()).await.unwrap();
    // Would match the unescaped pattern `a*:*`.
    store.set("abc:k", "v".into(), &opts()).await.unwrap();
    assert_eq!(listed(&*starred, "*").await, ["k"]);
    starred.clear().await.unwrap();
    assert!(store.exists("abc:k").await.unwrap());
}

#[tokio::test]
async fn prefixed_clear_removes_only_its_keys_in_batches_without_inner_clear() {
    let (faults, store) = faulty();
    let app = prefixed(&store, "app:");
    let other = prefixed(&store, "other:");
    let keys: Vec<String> = (0..1200).map(|i| format!("k{i}")).collect();
    let entries: Vec<(&str, Bytes)> = keys.iter().map(|k| (k.as_str(), "v".into())).collect();
    app.set_many(&entries, &opts()).await.unwrap();
    other.set("k1", "theirs".into(), &opts()).await.unwrap();
    store.set("k2", "unprefixed".into(), &opts()).await.unwrap();

    app.clear().await.unwrap();

    assert!(listed(&*app, "*").await.is_empty());
    assert_eq!(
        other.get("k1").await.unwrap().as_deref(),
        Some(&b"theirs"[..])
    );
    assert_eq!(
        store.get("k2").await.unwrap().as_deref(),
        Some(&b"unprefixed"[..])
    );
    assert_eq!(
        faults.calls_of("clear"),
        0,
        "the inner clear is never called"
    );
    assert_eq!(
        faults.calls_of("delete_many"),
        3,
        "1200 keys in batches of 500"
    );
}

#[tokio::test]
async fn prefixed_invalidate_tags_reaches_only_its_entries() {
    let store = memory();
    let (app, other) = (prefixed(&store, "app:"), prefixed(&store, "other:"));
    let tagged = SetOptions::new().tags(["user:1"]);
    app.set("profile", "a".into(), &tagged).await.unwrap();
    other.set("profile", "o".into(), &tagged).await.unwrap();

    assert_eq!(app.invalidate_tags(&["user:1"]).await.unwrap(), 1);

    assert_eq!(app.get("profile").await.unwrap(), None);
    assert_eq!(
        other.get("profile").await.unwrap().as_deref(),
        Some(&b"o"[..])
    );
    // The inner tag carries the prefix.
    assert_eq!(store.invalidate_tags(&["other:user:1"]).await.unwrap(), 1);
}

#[tokio::test]
async fn prefixed_reports_the_reduced_key_limit_and_rejects_longer_keys() {
    let store = memory();
    let app = prefixed(&store, "app:");
    let limit = store.capabilities().max_key_len - 4;
    assert_eq!(app.capabilities().max_key_len, limit);

    let at_limit = "k".repeat(limit);
    app.set(&at_limit, "v".into(), &opts()).await.unwrap();
    let error = app
        .set(&"k".repeat(limit + 1), "v".into(), &opts())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    assert!(error.to_string().contains(&limit.to_string()), "{error}");
}

#[tokio::test]
async fn prefixed_rejects_the_empty_key() {
    let app = prefixed(&memory(), "app:");
    let error = app.get("").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
}

#[test]
fn empty_prefix_is_a_config_error() {
    let error = PrefixLayer::new("").unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
}

#[test]
fn prefix_as_long_as_the_key_limit_is_a_config_error() {
    let store = memory();
    let prefix = "p".repeat(store.capabilities().max_key_len);
    assert_eq!(
        PrefixLayer::new(prefix)
            .unwrap()
            .wrap(store)
            .unwrap_err()
            .kind(),
        ErrorKind::Config
    );
}

#[tokio::test]
async fn prefix_without_room_fails_each_keyed_operation_and_health_with_a_config_error() {
    let store = memory();
    let prefix = "p".repeat(store.capabilities().max_key_len);
    let backend = PrefixLayer::new(prefix).unwrap().layer(store);
    assert_eq!(backend.capabilities().max_key_len, 0);

    let error = backend.get("k").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert_eq!(error.operation(), Some("get"));
    assert!(error.message().contains("no room"), "{error}");
    let error = backend.set("k", "v".into(), &opts()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert_eq!(
        backend.health().await.unwrap_err().kind(),
        ErrorKind::Config
    );
}

#[tokio::test]
async fn prefixed_clear_is_unsupported_without_inner_key_listing() {
    let app = PrefixLayer::new("app:")
        .unwrap()
        .wrap(Arc::new(Minimal::default()))
        .unwrap();
    assert!(!app.capabilities().clear);
    assert_eq!(
        app.clear().await.unwrap_err().kind(),
        ErrorKind::Unsupported
    );
}

// ---------------------------------------------------------------------------
// Timeout
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn timeout_fails_a_slow_operation_with_kind_timeout_naming_operation_and_limit() {
    let (faults, inner) = faulty();
    faults.set_delay(Some(Duration::from_secs(1)));
    let backend = TimeoutLayer::new()
        .reads(Duration::from_millis(100))
        .unwrap()
        .layer(inner);

    let started = tokio::time::Instant::now();
    let error = backend.get("k").await.unwrap_err();

    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert_eq!(error.operation(), Some("get"));
    assert!(error.to_string().contains("100ms"), "{error}");
    assert_eq!(started.elapsed(), Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn timeout_applies_the_limit_of_the_operation_class() {
    let (faults, inner) = faulty();
    faults.set_delay(Some(Duration::from_secs(1)));
    let backend = TimeoutLayer::new()
        .reads(Duration::from_millis(100))
        .unwrap()
        .scans(Duration::from_millis(200))
        .unwrap()
        .layer(inner);

    assert!(
        backend.set("k", "v".into(), &opts()).await.unwrap(),
        "no write limit"
    );
    let error = backend.clear().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert!(error.to_string().contains("200ms"), "{error}");
}

#[tokio::test(start_paused = true)]
async fn operation_within_its_timeout_succeeds() {
    let (faults, inner) = faulty();
    faults.set_delay(Some(Duration::from_millis(50)));
    let backend = TimeoutLayer::new()
        .all(Duration::from_millis(100))
        .unwrap()
        .layer(inner);
    backend.set("k", "v".into(), &opts()).await.unwrap();
    assert_eq!(backend.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
}

#[tokio::test(start_paused = true)]
async fn timeout_ends_a_keys_stream_that_stalls() {
    let backend = TimeoutLayer::new()
        .scans(Duration::from_millis(100))
        .unwrap()
        .layer(Arc::new(Minimal::default()));
    let mut keys = backend.keys("*").await.unwrap();
    assert_eq!(keys.next().await.unwrap().unwrap(), "first");
    let error = keys.next().await.unwrap().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert!(
        keys.next().await.is_none(),
        "the stream ends after a timeout"
    );
}

#[test]
fn zero_timeout_is_a_config_error() {
    let error = TimeoutLayer::new().writes(Duration::ZERO).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.to_string().contains("writes"), "{error}");
}

// ---------------------------------------------------------------------------
// Retry
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn retry_recovers_from_two_connection_failures() {
    let (faults, inner) = faulty();
    inner.set("k", "v".into(), &opts()).await.unwrap();
    let backend = RetryLayer::new().layer(inner);
    faults.fail_next(2, ErrorKind::Connection);

    assert_eq!(backend.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(faults.calls_of("get"), 3);
}

#[tokio::test(start_paused = true)]
async fn retry_gives_up_after_max_attempts() {
    let (faults, inner) = faulty();
    let backend = RetryLayer::new().max_attempts(4).unwrap().layer(inner);
    faults.fail_with(Some(ErrorKind::Timeout));

    let error = backend.get("k").await.unwrap_err();

    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert!(error.to_string().contains("after 4 attempts"), "{error}");
    assert_eq!(faults.calls_of("get"), 4);
}

#[tokio::test(start_paused = true)]
async fn retry_never_retries_incr_or_decr() {
    let (faults, inner) = faulty();
    let backend = RetryLayer::new().layer(inner);
    faults.fail_next(2, ErrorKind::Connection);

    let error = backend.incr("n", 1, Default::default()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Connection);
    let error = backend.decr("n", 1, Default::default()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Connection);
    assert_eq!((faults.calls_of("incr"), faults.calls_of("decr")), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn retry_never_retries_a_conditional_set() {
    let (faults, inner) = faulty();
    let backend = RetryLayer::new().layer(inner);
    faults.fail_next(2, ErrorKind::Connection);

    let error = backend
        .set("k", "v".into(), &SetOptions::new().if_absent())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Connection);
    let entries = [("k", Bytes::from("v"))];
    let error = backend
        .set_many(&entries, &SetOptions::new().if_present())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Connection);
    assert_eq!(faults.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn retry_retries_an_unconditional_set() {
    let (faults, inner) = faulty();
    let backend = RetryLayer::new().layer(inner);
    faults.fail_next(1, ErrorKind::Connection);
    assert!(backend.set("k", "v".into(), &opts()).await.unwrap());
    assert_eq!(faults.calls_of("set"), 2);
}

#[tokio::test(start_paused = true)]
async fn retry_does_not_retry_a_non_temporary_error() {
    let (faults, inner) = faulty();
    let backend = RetryLayer::new().layer(inner);
    faults.fail_next(2, ErrorKind::Backend);

    let error = backend.get("k").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Backend);
    assert_eq!(faults.calls_of("get"), 1);
}

#[tokio::test(start_paused = true)]
async fn retry_waits_at_most_the_doubling_backoff_bound() {
    let (faults, inner) = faulty();
    let backend = RetryLayer::new()
        .max_attempts(4)
        .unwrap()
        .backoff(Duration::from_millis(100), Duration::from_millis(150))
        .unwrap()
        .layer(inner);
    faults.fail_with(Some(ErrorKind::Connection));

    let started = tokio::time::Instant::now();
    backend.get("k").await.unwrap_err();
    // Waits of at most 100 ms, then 150 ms (capped, not 200), then 150 ms.
    assert!(
        started.elapsed() <= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn retry_with_zero_attempts_is_a_config_error() {
    let error = RetryLayer::new().max_attempts(0).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
}

#[test]
fn retry_with_an_initial_backoff_above_the_maximum_is_a_config_error() {
    let error = RetryLayer::new()
        .backoff(Duration::from_secs(2), Duration::from_secs(1))
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.message().contains("exceeds"), "{error}");
}

#[test]
fn layer_configuration_errors_name_the_layer() {
    let errors = [
        PrefixLayer::new("").unwrap_err(),
        TimeoutLayer::new().reads(Duration::ZERO).unwrap_err(),
        RetryLayer::new().max_attempts(0).unwrap_err(),
        CircuitBreakerLayer::new().failure_threshold(0).unwrap_err(),
    ];
    let names: Vec<&str> = errors.iter().map(|error| error.backend()).collect();
    assert_eq!(
        names,
        [
            "prefix layer",
            "timeout layer",
            "retry layer",
            "circuit breaker"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn retry_above_timeout_retries_a_timed_out_attempt() {
    let (faults, inner) = faulty();
    faults.set_delay(Some(Duration::from_secs(1)));
    let timeout = TimeoutLayer::new()
        .reads(Duration::from_millis(100))
        .unwrap()
        .layer(inner);
    let backend = RetryLayer::new().layer(timeout);

    let error = backend.get("k").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert_eq!(faults.calls_of("get"), 3);
}

// ---------------------------------------------------------------------------
// Circuit breaker
// ---------------------------------------------------------------------------

fn breaker(inner: Arc<dyn Backend>) -> CircuitBreaker {
    CircuitBreakerLayer::new()
        .failure_threshold(3)
        .unwrap()
        .open_duration(Duration::from_secs(5))
        .wrap(inner)
}

/// A breaker over a failing backend, opened by three failures.
async fn opened_breaker() -> (Arc<FaultyBackend>, CircuitBreaker) {
    let (faults, inner) = faulty();
    let breaker = breaker(inner);
    faults.fail_with(Some(ErrorKind::Connection));
    for _ in 0..3 {
        breaker.get("k").await.unwrap_err();
    }
    (faults, breaker)
}

#[tokio::test(start_paused = true)]
async fn breaker_opens_after_threshold_consecutive_failures() {
    let (faults, inner) = faulty();
    let breaker = breaker(inner);
    faults.fail_with(Some(ErrorKind::Connection));
    for _ in 0..2 {
        breaker.get("k").await.unwrap_err();
        assert_eq!(breaker.state(), CircuitState::Closed);
    }
    breaker.get("k").await.unwrap_err();
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn open_breaker_fails_fast_without_calling_the_backend() {
    let (faults, breaker) = opened_breaker().await;
    let calls = faults.calls();

    let error = breaker.set("k", "v".into(), &opts()).await.unwrap_err();

    assert_eq!(error.kind(), ErrorKind::Connection);
    assert!(error.message().contains("circuit open"), "{error}");
    assert_eq!(faults.calls(), calls);
}

#[tokio::test(start_paused = true)]
async fn breaker_half_opens_after_the_open_duration() {
    let (_faults, breaker) = opened_breaker().await;
    tokio::time::advance(Duration::from_millis(4999)).await;
    assert_eq!(breaker.state(), CircuitState::Open);
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn successful_probe_closes_the_breaker() {
    let (faults, breaker) = opened_breaker().await;
    tokio::time::advance(Duration::from_secs(5)).await;
    faults.fail_with(None);

    assert_eq!(breaker.get("k").await.unwrap(), None);
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn failed_probe_reopens_the_breaker() {
    let (faults, breaker) = opened_breaker().await;
    tokio::time::advance(Duration::from_secs(5)).await;
    let calls = faults.calls();

    breaker.get("k").await.unwrap_err();

    assert_eq!(faults.calls(), calls + 1, "the probe reached the backend");
    assert_eq!(breaker.state(), CircuitState::Open);
    tokio::time::advance(Duration::from_secs(4)).await;
    assert_eq!(
        breaker.state(),
        CircuitState::Open,
        "open for a whole duration again"
    );
}

#[tokio::test(start_paused = true)]
async fn half_open_breaker_lets_exactly_one_probe_through() {
    let (faults, breaker) = opened_breaker().await;
    let breaker = Arc::new(breaker);
    tokio::time::advance(Duration::from_secs(5)).await;
    faults.fail_with(None);
    faults.set_delay(Some(Duration::from_millis(100)));
    let calls = faults.calls();

    let probe = tokio::spawn({
        let breaker = breaker.clone();
        async move { breaker.get("k").await }
    });
    tokio::task::yield_now().await;
    let error = breaker.get("other").await.unwrap_err();

    assert!(error.message().contains("circuit open"), "{error}");
    assert_eq!(probe.await.unwrap().unwrap(), None);
    assert_eq!(faults.calls(), calls + 1);
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn cancelled_probe_lets_the_next_operation_probe() {
    let (faults, breaker) = opened_breaker().await;
    tokio::time::advance(Duration::from_secs(5)).await;
    faults.fail_with(None);
    faults.set_delay(Some(Duration::from_secs(1)));
    let cancelled = tokio::time::timeout(Duration::from_millis(10), breaker.get("k")).await;
    assert!(cancelled.is_err(), "the probe was cancelled");
    faults.set_delay(None);

    assert_eq!(breaker.get("k").await.unwrap(), None);
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn non_temporary_errors_do_not_open_the_breaker() {
    let (faults, inner) = faulty();
    let breaker = breaker(inner);
    faults.fail_with(Some(ErrorKind::InvalidInput));
    for _ in 0..10 {
        breaker.get("k").await.unwrap_err();
    }
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn success_resets_the_consecutive_failure_count() {
    let (faults, inner) = faulty();
    let breaker = breaker(inner);
    for _ in 0..3 {
        faults.fail_next(2, ErrorKind::Connection);
        breaker.get("k").await.unwrap_err();
        breaker.get("k").await.unwrap_err();
        breaker.get("k").await.unwrap();
    }
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[test]
fn breaker_with_a_zero_threshold_is_a_config_error() {
    let error = CircuitBreakerLayer::new().failure_threshold(0).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
}

// ---------------------------------------------------------------------------
// The stack
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn stack_counts_one_breaker_failure_per_retried_operation() {
    let (faults, inner) = faulty();
    let backend = LayerStack::new(inner)
        .retry(RetryLayer::new().max_attempts(3).unwrap())
        .circuit_breaker(CircuitBreakerLayer::new().failure_threshold(2).unwrap())
        .build()
        .unwrap();
    faults.fail_with(Some(ErrorKind::Connection));

    backend.get("k").await.unwrap_err();
    assert_eq!(faults.calls(), 3, "retry is below the breaker");
    backend.get("k").await.unwrap_err();
    assert_eq!(faults.calls(), 6);
    let error = backend.get("k").await.unwrap_err();
    assert!(error.message().contains("circuit open"), "{error}");
    assert_eq!(faults.calls(), 6, "an open circuit is not retried");
}

#[tokio::test(start_paused = true)]
async fn stack_gives_each_attempt_its_own_timeout() {
    let (faults, inner) = faulty();
    faults.set_delay(Some(Duration::from_secs(1)));
    let backend = LayerStack::new(inner)
        .timeout(
            TimeoutLayer::new()
                .reads(Duration::from_millis(100))
                .unwrap(),
        )
        .retry(RetryLayer::new())
        .build()
        .unwrap();
    assert_eq!(
        backend.get("k").await.unwrap_err().kind(),
        ErrorKind::Timeout
    );
    assert_eq!(faults.calls(), 3);
}

#[tokio::test]
async fn stack_reports_the_prefixed_key_limit() {
    let store = memory();
    let backend = LayerStack::new(store.clone())
        .prefix("app:")
        .retry(RetryLayer::new())
        .tracing(TracingLayer::new())
        .build()
        .unwrap();
    assert_eq!(
        backend.capabilities().max_key_len,
        store.capabilities().max_key_len - 4
    );
    assert_eq!(backend.name(), store.name());
}

#[test]
fn stack_with_an_empty_prefix_is_a_config_error() {
    let error = LayerStack::new(memory()).prefix("").build().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
}

#[test]
fn stack_with_a_prefix_that_leaves_no_room_is_a_config_error() {
    let store = memory();
    let prefix = "p".repeat(store.capabilities().max_key_len);
    let error = LayerStack::new(store).prefix(prefix).build().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.message().contains("no room"), "{error}");
}

/// A layer of a user's own: its backend logs, under the layer's name, the
/// key of each `get` it forwards.
#[derive(Debug)]
struct KeyLogLayer {
    name: &'static str,
    log: Arc<Mutex<Vec<(&'static str, String)>>>,
}

struct KeyLog {
    name: &'static str,
    log: Arc<Mutex<Vec<(&'static str, String)>>>,
    inner: Arc<dyn Backend>,
}

impl Layer for KeyLogLayer {
    fn layer(&self, inner: Arc<dyn Backend>) -> Arc<dyn Backend> {
        Arc::new(KeyLog {
            name: self.name,
            log: self.log.clone(),
            inner,
        })
    }
}

#[async_trait::async_trait]
impl Backend for KeyLog {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn capabilities(&self) -> cachette::Capabilities {
        self.inner.capabilities()
    }
    async fn get(&self, key: &str) -> cachette::Result<Option<Bytes>> {
        self.log.lock().unwrap().push((self.name, key.to_owned()));
        self.inner.get(key).await
    }
    async fn set(&self, key: &str, value: Bytes, options: &SetOptions) -> cachette::Result<bool> {
        self.inner.set(key, value, options).await
    }
    async fn delete(&self, key: &str) -> cachette::Result<bool> {
        self.inner.delete(key).await
    }
}

#[tokio::test(start_paused = true)]
async fn stack_puts_your_layers_below_the_prefix_and_retry_the_first_added_innermost() {
    let (faults, inner) = faulty();
    let log = Arc::new(Mutex::new(Vec::new()));
    let layer = |name| KeyLogLayer {
        name,
        log: log.clone(),
    };
    let backend = LayerStack::new(inner)
        .tracing(TracingLayer::new())
        .retry(RetryLayer::new())
        .prefix("app:")
        .layer(layer("first"))
        .layer(layer("second"))
        .build()
        .unwrap();
    faults.fail_next(1, ErrorKind::Connection);

    backend.get("k").await.unwrap();

    let attempt = [
        ("second", "app:k".to_owned()),
        ("first", "app:k".to_owned()),
    ];
    assert_eq!(*log.lock().unwrap(), [attempt.clone(), attempt].concat());
}

// ---------------------------------------------------------------------------
// FaultyBackend
// ---------------------------------------------------------------------------

#[tokio::test]
async fn faulty_backend_fails_with_an_injected_error_until_cleared() {
    let (faults, backend) = faulty();
    faults.fail_with(Some(ErrorKind::PermissionDenied));
    let error = backend.delete("k").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::PermissionDenied);
    assert_eq!(error.backend(), "faulty");
    assert!(error.message().contains("injected"), "{error}");
    faults.fail_with(None);
    assert!(!backend.delete("k").await.unwrap());
    assert_eq!((faults.calls(), faults.calls_of("delete")), (2, 2));
}

#[tokio::test(start_paused = true)]
async fn faulty_backend_delays_on_the_paused_clock() {
    let (faults, backend) = faulty();
    faults.set_delay(Some(Duration::from_secs(3)));
    let started = tokio::time::Instant::now();
    backend.health().await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(3));
}
