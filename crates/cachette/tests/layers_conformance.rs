//! The conformance suite over layers on the memory backend: a prefix (its
//! sibling is another prefix over the same store, the real test of `keys`
//! and `clear`) and the whole stack.
//!
//! Apart from `layers.rs` because the suite runs on the real clock: the
//! memory engine's clock is process-wide and follows tokio's clock, so tests
//! that pause and advance tokio's clock must not share the process.
//!
//! Run with `cargo test -p cachette --all-features --test layers_conformance`.

#![cfg(all(feature = "testing", feature = "memory"))]

use std::sync::Arc;
use std::time::Duration;

use cachette::layers::{
    CircuitBreakerLayer, Layer, LayerStack, PrefixLayer, RetryLayer, TimeoutLayer, TracingLayer,
};
use cachette::testing::{Report, run_conformance};
use cachette::{Backend, MemoryBackend};

fn memory() -> Arc<dyn Backend> {
    Arc::new(MemoryBackend::default())
}

fn prefixed(inner: &Arc<dyn Backend>, prefix: &str) -> Arc<dyn Backend> {
    PrefixLayer::new(prefix)
        .expect("a non-empty prefix")
        .layer(inner.clone())
}

/// Every check applies, except the value size limit (the memory backend
/// has no byte bound here).
fn assert_only_unbounded_values_skipped(report: &Report) {
    println!("{report}");
    let skipped: Vec<&str> = report.skipped().map(|(check, _)| check).collect();
    assert_eq!(skipped, ["value_size_limit"], "{report}");
}

/// A deadline no operation of the suite comes near.
fn generous_timeouts() -> TimeoutLayer {
    TimeoutLayer::new()
        .all(Duration::from_secs(10))
        .expect("a positive timeout")
}

/// Every layer, generous deadlines, over `inner` with `prefix`.
fn full_stack(inner: Arc<dyn Backend>, prefix: &str) -> Arc<dyn Backend> {
    let stack = LayerStack::new(inner)
        .prefix(prefix)
        .timeout(generous_timeouts())
        .retry(RetryLayer::new())
        .circuit_breaker(CircuitBreakerLayer::new())
        .tracing(TracingLayer::new());
    #[cfg(feature = "metrics")]
    let stack = stack.metrics(cachette::layers::MetricsLayer::new());
    stack.build().expect("the stack builds")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixed_memory_conforms_with_a_sibling_prefix_over_the_same_store() {
    let store = memory();
    let report = run_conformance(prefixed(&store, "app:"), Some(prefixed(&store, "other:"))).await;
    assert_only_unbounded_values_skipped(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixed_memory_conforms_with_glob_characters_in_the_prefix() {
    let store = memory();
    let report = run_conformance(prefixed(&store, "a*[b]?\\:"), Some(prefixed(&store, "a"))).await;
    assert_only_unbounded_values_skipped(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_stack_over_memory_conforms() {
    let store = memory();
    let report = run_conformance(
        full_stack(store.clone(), "app:"),
        Some(full_stack(store, "other:")),
    )
    .await;
    assert_only_unbounded_values_skipped(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_without_prefix_over_memory_conforms() {
    let stack = LayerStack::new(memory())
        .timeout(generous_timeouts())
        .retry(RetryLayer::new())
        .circuit_breaker(CircuitBreakerLayer::new())
        .tracing(TracingLayer::new().record_keys(true))
        .build()
        .expect("the stack builds");
    let report = run_conformance(stack, Some(memory())).await;
    assert_only_unbounded_values_skipped(&report);
}
