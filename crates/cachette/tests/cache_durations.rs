//! Every duration a user gives the typed front end or a layer either
//! saturates or is refused with an error naming the option: extreme
//! durations (zero, 1 ns, `u64::MAX` seconds, `Duration::MAX`, anything)
//! never panic, whatever the calls made with them.
#![cfg(all(feature = "testing", feature = "memory"))]

use std::sync::Arc;
use std::time::Duration;

use cachette::cache::{Cache, EntryOptions, TokioClock};
use cachette::layers::{CircuitBreakerLayer, LayerStack, RetryLayer, TimeoutLayer};
use cachette::testing::FaultyBackend;
use cachette::{Backend, ErrorKind, MemoryBackend};
use proptest::prelude::*;

fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        Just(Duration::from_secs(u64::MAX)),
        Just(Duration::MAX),
        (any::<u64>(), 0..1_000_000_000_u32).prop_map(|(s, n)| Duration::new(s, n)),
        (0..100_000_u64).prop_map(Duration::from_millis),
    ]
}

/// Ten durations: one per option of each kind below.
fn durations() -> impl Strategy<Value = Vec<Duration>> {
    prop::collection::vec(duration(), 10)
}

/// A memory backend with no periodic purge task. Under the paused clock,
/// tokio advances time only to the nearest timer: with a purge every
/// second, a retry wait of 30 years (what a backoff of `u64::MAX` seconds
/// becomes) would be reached one second at a time, about 10^9 wake-ups.
fn memory() -> Arc<dyn Backend> {
    let backend = MemoryBackend::builder()
        .purge_interval(Duration::MAX)
        .build()
        .expect("a memory backend with default bounds");
    Arc::new(backend)
}

/// The layers, each with durations from `d`, around a backend that fails
/// its next calls (so that retries wait and the circuit opens).
fn layered(d: &[Duration]) -> Arc<dyn Backend> {
    let faulty = FaultyBackend::new(memory());
    faulty.fail_next(8, ErrorKind::Connection);
    let mut stack = LayerStack::new(faulty);
    if let Ok(retry) = RetryLayer::new().backoff(d[0], d[1]) {
        stack = stack.retry(retry);
    }
    if let Ok(timeout) = TimeoutLayer::new().all(d[2]) {
        stack = stack.timeout(timeout);
    }
    let breaker = CircuitBreakerLayer::new()
        .failure_threshold(1)
        .map(|b| b.open_duration(d[3]));
    if let Ok(breaker) = breaker {
        stack = stack.circuit_breaker(breaker);
    }
    stack.build().unwrap_or_else(|_| memory())
}

/// A cache with every builder duration from `d`, or the error naming the
/// option at fault.
async fn cache(backend: Arc<dyn Backend>, d: &[Duration]) -> cachette::Result<Cache> {
    Cache::builder(backend)
        .clock(TokioClock::default())
        .default_ttl(d[0])
        .soft_ttl(d[1])
        .negative_ttl(d[2])
        .jitter(d[3])
        .fail_safe(d[4])
        .fail_safe_throttle(d[5])
        .soft_timeout(d[6])
        .hard_timeout(d[7])
        .distributed_lock(d[8], d[9])
        .build()
        .await
}

fn entry_options(d: &[Duration]) -> EntryOptions {
    EntryOptions::new()
        .ttl(d[0])
        .soft_ttl(d[1])
        .negative_ttl(d[2])
        .jitter(d[3])
        .fail_safe(d[4])
        .soft_timeout(d[5])
        .hard_timeout(d[6])
}

/// Refusals name an option; nothing reports a panic.
fn check(result: &cachette::Result<impl std::fmt::Debug>) {
    if let Err(error) = result {
        assert!(!error.to_string().contains("panicked"), "{error}");
    }
}

async fn exercise(layers: &[Duration], builder: &[Duration], entry: &[Duration]) {
    for backend in [layered(layers), memory()] {
        let built = cache(backend.clone(), builder).await;
        check(&built);
        let plain = Cache::builder(backend).clock(TokioClock::default()).build();
        let caches = [built.ok(), plain.await.ok()];
        for cache in caches.into_iter().flatten() {
            for options in [entry_options(entry), EntryOptions::new().ttl(entry[0])] {
                check(&cache.set("k", &1_u32, &options).await);
                check(&cache.get::<u32>("k").await);
                tokio::time::advance(entry[7].min(Duration::from_secs(1 << 40))).await;
                let loaded = cache
                    .get_or_load(
                        "k",
                        |_| async { Ok::<_, std::io::Error>(Some(2_u32)) },
                        &options,
                    )
                    .await;
                check(&loaded);
                let missing = cache
                    .get_or_load(
                        "none",
                        |_| async { Ok::<Option<u32>, std::io::Error>(None) },
                        &options,
                    )
                    .await;
                check(&missing);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn extreme_durations_never_panic(
        layers in durations(),
        builder in durations(),
        entry in durations(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(exercise(&layers, &builder, &entry));
    }
}
