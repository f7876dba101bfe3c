//! The typed front end over a failing backend (`cachette::testing::FaultyBackend`),
//! and hash collisions forced with a tiny test hash.
#![cfg(all(feature = "testing", feature = "memory"))]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cachette::cache::{Cache, EntryOptions, TokioClock};
use cachette::testing::FaultyBackend;
use cachette::{Backend, Error, ErrorKind, MemoryBackend};
use tokio::time::advance;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn faulty() -> Arc<FaultyBackend> {
    FaultyBackend::new(Arc::new(MemoryBackend::default()))
}

/// A loader that counts its runs and fails with a connection error while
/// `down` is set (the database shares the outage), else answers `value`.
fn loader(
    runs: &Arc<AtomicUsize>,
    down: bool,
    value: u32,
) -> impl FnOnce(cachette::LoadContext) -> std::future::Ready<cachette::Result<Option<u32>>>
+ Send
+ 'static {
    let runs = Arc::clone(runs);
    move |_| {
        runs.fetch_add(1, Ordering::SeqCst);
        std::future::ready(if down {
            Err(Error::new(ErrorKind::Connection, "database", "unreachable"))
        } else {
            Ok(Some(value))
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_backend_that_starts_failing_keeps_serving_stale_within_the_fail_safe_max_age() {
    let faulty = faulty();
    let cache = Cache::builder(faulty.clone())
        .clock(TokioClock::default())
        .default_ttl(secs(10))
        .soft_ttl(secs(5))
        .fail_safe(secs(60))
        .fail_safe_throttle(secs(5))
        .build()
        .await
        .unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let options = EntryOptions::new();
    let value = cache
        .get_or_load("k", loader(&runs, false, 1), &options)
        .await
        .unwrap();
    assert_eq!(value, Some(1));

    faulty.fail_with(Some(ErrorKind::Connection));
    for step in [1, 10, 20, 28] {
        // t = 1, 11, 31, 59 s: the backend and the database are down.
        advance(secs(step)).await;
        let value = cache
            .get_or_load("k", loader(&runs, true, 2), &options)
            .await
            .unwrap();
        assert_eq!(value, Some(1), "stale value served at step {step}");
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the kept value is served without the loader"
    );
    assert!(cache.stats().fail_safe_activations >= 1);
    let error = cache.get::<u32>("k").await.unwrap_err();
    assert_eq!(
        error.kind(),
        ErrorKind::Connection,
        "`get` has no fail-safe"
    );

    advance(secs(2)).await; // t = 61 s: older than the fail-safe maximum age
    let error = cache
        .get_or_load("k", loader(&runs, true, 2), &options)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Connection);
    assert_eq!(runs.load(Ordering::SeqCst), 2);

    // The database comes back first: its value is served, storing fails.
    let value = cache
        .get_or_load("k", loader(&runs, false, 3), &options)
        .await
        .unwrap();
    assert_eq!(value, Some(3));

    faulty.fail_with(None);
    let value = cache
        .get_or_load("k", loader(&runs, false, 4), &options)
        .await
        .unwrap();
    assert_eq!(
        value,
        Some(4),
        "the backend lost the value during the outage"
    );
    assert_eq!(cache.get::<u32>("k").await.unwrap(), Some(4));
}

#[tokio::test(start_paused = true)]
async fn a_soft_timeout_bounds_the_wait_for_the_load_not_the_read() {
    let faulty = faulty();
    let cache = Cache::builder(faulty.clone())
        .clock(TokioClock::default())
        .default_ttl(secs(10))
        .fail_safe(secs(60))
        .soft_timeout(Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    cache.set("k", &1_u32, &EntryOptions::new()).await.unwrap();
    advance(secs(11)).await;
    // Every backend call now takes a second: the load's store is slow.
    faulty.set_delay(Some(secs(1)));
    let runs = Arc::new(AtomicUsize::new(0));
    let started = tokio::time::Instant::now();
    let value = cache
        .get_or_load("k", loader(&runs, false, 2), &EntryOptions::new())
        .await
        .unwrap();
    // One second for the read, then the soft timeout with the expired value.
    assert_eq!(value, Some(1));
    assert_eq!(started.elapsed(), secs(1) + Duration::from_millis(200));
    faulty.set_delay(None);
    tokio::time::sleep(secs(5)).await;
    assert_eq!(cache.get::<u32>("k").await.unwrap(), Some(2));
}

#[tokio::test]
async fn build_fails_when_the_version_cannot_be_read() {
    let faulty = faulty();
    faulty.fail_with(Some(ErrorKind::Connection));
    let error = Cache::builder(faulty.clone()).build().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Connection);
    assert!(error.message().contains("__version"), "{error}");
}

#[tokio::test]
async fn a_forced_hash_collision_reads_as_a_miss_not_as_the_other_value() {
    let backend: Arc<dyn Backend> =
        Arc::new(MemoryBackend::builder().max_key_len(100).build().unwrap());
    let cache = Cache::builder(backend.clone())
        .key_hasher(|_| 7)
        .build()
        .await
        .unwrap();
    let (first, second) = ("a".repeat(200), "b".repeat(200));
    let options = EntryOptions::new();

    cache.set(&first, &"first", &options).await.unwrap();
    let stored = format!("cachette:v0:#h:{:032x}", 7);
    assert!(backend.get(&stored).await.unwrap().is_some());
    assert_eq!(cache.get::<String>(&second).await.unwrap(), None);
    assert_eq!(
        cache.get::<String>(&first).await.unwrap().as_deref(),
        Some("first")
    );

    // The second key takes the slot: now the first one misses.
    cache.set(&second, &"second", &options).await.unwrap();
    assert_eq!(cache.get::<String>(&first).await.unwrap(), None);
    assert_eq!(
        cache.get::<String>(&second).await.unwrap().as_deref(),
        Some("second")
    );

    // get_or_load of a colliding key loads instead of returning the other.
    let value = cache
        .get_or_load(
            &first,
            |_| async { Ok::<_, std::io::Error>(Some(String::from("loaded"))) },
            &options,
        )
        .await
        .unwrap();
    assert_eq!(value.as_deref(), Some("loaded"));
}
