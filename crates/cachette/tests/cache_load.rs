//! `Cache::get_or_load`: single-flight, re-entrancy, negative caching,
//! stale-while-revalidate, fail-safe, timeouts and the distributed lock.
//! Timing tests run on tokio's paused clock with a `TokioClock`.
#![cfg(feature = "memory")]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cachette::cache::{Cache, EntryOptions, LoadContext, LoaderError, TokioClock};
use cachette::{Backend, ErrorKind, MemoryBackend};
use tokio::time::{Instant, advance, sleep};

type Loaded<T> = Pin<Box<dyn Future<Output = Result<Option<T>, std::io::Error>> + Send>>;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn memory() -> Arc<dyn Backend> {
    Arc::new(MemoryBackend::default())
}

fn calls() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

fn count(calls: &AtomicUsize) -> usize {
    calls.load(Ordering::SeqCst)
}

/// A loader that counts its runs, waits `delay`, then answers `answer`
/// (`Err(message)` for an I/O error).
fn loader<T: Send + 'static>(
    calls: &Arc<AtomicUsize>,
    delay: Duration,
    answer: Result<Option<T>, &'static str>,
) -> impl FnOnce(LoadContext) -> Loaded<T> + Send + 'static {
    let calls = Arc::clone(calls);
    move |_| {
        Box::pin(async move {
            calls.fetch_add(1, Ordering::SeqCst);
            if !delay.is_zero() {
                sleep(delay).await;
            }
            answer.map_err(std::io::Error::other)
        })
    }
}

fn options() -> EntryOptions {
    EntryOptions::new()
}

/// Lets spawned loads and refreshes run (the paused clock advances only
/// when every task is idle).
async fn settle() {
    sleep(ms(1)).await;
}

/// Runs 1,000 concurrent `get_or_load` calls of one missing key, whose
/// loader answers `answer` only once every other caller has joined it.
/// Returns the cache, every caller's result and how often the loader ran.
async fn thousand_callers<T>(
    answer: fn() -> Result<Option<T>, std::io::Error>,
) -> (Cache, Vec<cachette::Result<Option<T>>>, usize)
where
    T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    let cache = Cache::builder(memory()).build().await.unwrap();
    let runs = calls();
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let mut callers = Vec::new();
    for _ in 0..1_000 {
        let cache = cache.clone();
        let runs = Arc::clone(&runs);
        let release = Arc::clone(&release);
        callers.push(tokio::spawn(async move {
            let loader = move |_| async move {
                runs.fetch_add(1, Ordering::SeqCst);
                // Held until every other caller has joined.
                let _permit = release.acquire().await;
                answer()
            };
            cache.get_or_load("hot", loader, &EntryOptions::new()).await
        }));
    }
    while cache.stats().coalesced < 999 {
        tokio::time::sleep(ms(1)).await;
    }
    release.add_permits(1);
    let mut results = Vec::new();
    for caller in callers {
        results.push(caller.await.unwrap());
    }
    (cache, results, count(&runs))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_thousand_concurrent_callers_share_one_load() {
    let (cache, results, runs) = thousand_callers(|| Ok(Some(String::from("value")))).await;
    for result in results {
        assert_eq!(result.unwrap().as_deref(), Some("value"));
    }
    assert_eq!(runs, 1);
    let stats = cache.stats();
    assert_eq!((stats.loads, stats.coalesced), (1, 999));
    assert_eq!(
        cache.get::<String>("hot").await.unwrap().as_deref(),
        Some("value")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_thousand_concurrent_callers_share_one_failure() {
    let (cache, results, runs) =
        thousand_callers::<u32>(|| Err(std::io::Error::other("database down"))).await;
    let mut shared = Vec::new();
    for result in results {
        let error = result.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Backend);
        assert!(error.message().contains("database down"), "{error}");
        let loader_error = LoaderError::find(&error).expect("the loader's error is the source");
        let io = loader_error.downcast_ref::<std::io::Error>().unwrap();
        assert_eq!(io.to_string(), "database down");
        shared.push(loader_error.shared());
    }
    assert!(
        shared.iter().all(|e| Arc::ptr_eq(e, &shared[0])),
        "one shared error"
    );
    assert_eq!(runs, 1);
    assert_eq!(cache.stats().load_errors, 1);
    assert_eq!(
        cache.get::<u32>("hot").await.unwrap(),
        None,
        "nothing stored"
    );
}

#[tokio::test(start_paused = true)]
async fn a_loader_asking_for_its_own_key_gets_an_error_not_a_deadlock() {
    let cache = Cache::builder(memory()).build().await.unwrap();
    let inner = cache.clone();
    let outcome = tokio::time::timeout(
        secs(60),
        cache.get_or_load(
            "self",
            move |_| async move {
                let again = inner
                    .get_or_load("self", loader(&calls(), ms(0), Ok(Some(1_u32))), &options())
                    .await;
                Ok::<_, std::io::Error>(Some(again.unwrap_err().kind() == ErrorKind::InvalidInput))
            },
            &options(),
        ),
    )
    .await
    .expect("no deadlock");
    assert_eq!(outcome.unwrap(), Some(true));
}

#[tokio::test(start_paused = true)]
async fn a_cycle_through_another_key_is_detected_too() {
    let cache = Cache::builder(memory()).build().await.unwrap();
    let (c1, c2) = (cache.clone(), cache.clone());
    let outcome = tokio::time::timeout(
        secs(60),
        cache.get_or_load(
            "a",
            move |_| async move {
                let b = c1
                    .get_or_load(
                        "b",
                        move |_| async move {
                            let a = c2
                                .get_or_load(
                                    "a",
                                    loader(&calls(), ms(0), Ok(Some(0_u32))),
                                    &options(),
                                )
                                .await;
                            match a {
                                Err(e) if e.kind() == ErrorKind::InvalidInput => Ok(Some(2_u32)),
                                other => Err(std::io::Error::other(format!("{other:?}"))),
                            }
                        },
                        &options(),
                    )
                    .await
                    .map_err(std::io::Error::other)?;
                Ok::<_, std::io::Error>(b.map(|b| b + 1))
            },
            &options(),
        ),
    )
    .await
    .expect("no deadlock");
    assert_eq!(outcome.unwrap(), Some(3));
    assert_eq!(cache.get::<u32>("b").await.unwrap(), Some(2));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_loader_fails_its_waiters_and_the_next_call_loads_again() {
    let cache = Cache::builder(memory()).build().await.unwrap();
    let options = options();
    let callers = (0..10).map(|_| {
        cache.get_or_load(
            "boom",
            |_| async {
                sleep(secs(1)).await;
                if true {
                    panic!("the loader panicked on purpose");
                }
                Ok::<Option<u32>, std::io::Error>(None)
            },
            &options,
        )
    });
    let results = futures_util::future::join_all(callers).await;
    for result in results {
        let error = result.unwrap_err();
        assert!(error.message().contains("panicked"), "{error}");
    }
    assert_eq!(cache.stats().load_errors, 1);
    let runs = calls();
    let value = cache
        .get_or_load("boom", loader(&runs, ms(0), Ok(Some(5_u32))), &options)
        .await
        .unwrap();
    assert_eq!((value, count(&runs)), (Some(5), 1));
}

#[tokio::test(start_paused = true)]
async fn not_found_is_cached_for_the_negative_ttl_only() {
    let cache = Cache::builder(memory())
        .clock(TokioClock::default())
        .negative_ttl(secs(5))
        .build()
        .await
        .unwrap();
    let runs = calls();
    for _ in 0..3 {
        let value = cache
            .get_or_load("ghost", loader::<u32>(&runs, ms(0), Ok(None)), &options())
            .await
            .unwrap();
        assert_eq!(value, None);
    }
    assert_eq!(count(&runs), 1);
    assert_eq!(cache.get::<u32>("ghost").await.unwrap(), None);

    advance(secs(6)).await;
    cache
        .get_or_load("ghost", loader::<u32>(&runs, ms(0), Ok(None)), &options())
        .await
        .unwrap();
    assert_eq!(count(&runs), 2);

    // Without a negative TTL every call loads.
    let no_negative = EntryOptions::new().no_negative_ttl();
    for _ in 0..2 {
        cache
            .get_or_load("other", loader::<u32>(&runs, ms(0), Ok(None)), &no_negative)
            .await
            .unwrap();
    }
    assert_eq!(count(&runs), 4);
}

#[tokio::test(start_paused = true)]
async fn a_stale_value_is_served_at_once_and_refreshed_once_in_the_background() {
    let cache = Cache::builder(memory())
        .clock(TokioClock::default())
        .default_ttl(secs(60))
        .soft_ttl(secs(10))
        .build()
        .await
        .unwrap();
    let runs = calls();
    cache
        .get_or_load("k", loader(&runs, ms(0), Ok(Some(1_u32))), &options())
        .await
        .unwrap();

    advance(secs(9)).await;
    let fresh = cache
        .get_or_load("k", loader(&runs, ms(0), Ok(Some(99_u32))), &options())
        .await
        .unwrap();
    assert_eq!((fresh, count(&runs)), (Some(1), 1), "still fresh: no load");

    advance(secs(2)).await;
    let started = Instant::now();
    for _ in 0..5 {
        let stale = cache
            .get_or_load("k", loader(&runs, secs(3), Ok(Some(2_u32))), &options())
            .await
            .unwrap();
        assert_eq!(stale, Some(1));
    }
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "stale values come at once"
    );
    sleep(secs(4)).await;
    assert_eq!(count(&runs), 2, "one refresh for five stale reads");
    let stats = cache.stats();
    assert_eq!((stats.refreshes, stats.stale_served), (1, 5));
    assert_eq!(cache.get::<u32>("k").await.unwrap(), Some(2));
}

#[tokio::test(start_paused = true)]
async fn a_refresh_knows_it_is_one() {
    let cache = Cache::builder(memory())
        .clock(TokioClock::default())
        .default_ttl(secs(60))
        .soft_ttl(secs(10))
        .build()
        .await
        .unwrap();
    cache.set("k", &1_u32, &options()).await.unwrap();
    advance(secs(15)).await;
    let seen = Arc::new(parking_lot::Mutex::new(None));
    let record = Arc::clone(&seen);
    cache
        .get_or_load(
            "k",
            move |ctx: LoadContext| async move {
                *record.lock() = Some((ctx.key().to_owned(), ctx.is_refresh(), ctx.stale_age()));
                Ok::<_, std::io::Error>(Some(2_u32))
            },
            &options(),
        )
        .await
        .unwrap();
    settle().await;
    assert_eq!(
        seen.lock().clone(),
        Some(("k".to_owned(), true, Some(secs(15))))
    );
}

#[tokio::test(start_paused = true)]
async fn a_set_during_a_refresh_wins_over_the_refresh() {
    let cache = Cache::builder(memory())
        .clock(TokioClock::default())
        .default_ttl(secs(60))
        .soft_ttl(secs(10))
        .build()
        .await
        .unwrap();
    cache.set("k", &"old", &options()).await.unwrap();
    advance(secs(11)).await;
    let runs = calls();
    let stale = cache
        .get_or_load(
            "k",
            loader(&runs, secs(5), Ok(Some(String::from("refreshed")))),
            &options(),
        )
        .await
        .unwrap();
    assert_eq!(stale.as_deref(), Some("old"));
    settle().await;
    cache.set("k", &"written", &options()).await.unwrap();
    sleep(secs(6)).await;
    assert_eq!(count(&runs), 1, "the refresh ran");
    assert_eq!(
        cache.get::<String>("k").await.unwrap().as_deref(),
        Some("written")
    );
}

#[tokio::test(start_paused = true)]
async fn a_write_by_another_cache_during_a_refresh_wins_too() {
    let backend = memory();
    let build = || {
        Cache::builder(backend.clone())
            .clock(TokioClock::default())
            .default_ttl(secs(60))
            .soft_ttl(secs(10))
            .build()
    };
    let (cache, other_process) = (build().await.unwrap(), build().await.unwrap());
    cache.set("k", &"old", &options()).await.unwrap();
    advance(secs(11)).await;
    cache
        .get_or_load(
            "k",
            loader(&calls(), secs(5), Ok(Some(String::from("refreshed")))),
            &options(),
        )
        .await
        .unwrap();
    settle().await;
    other_process
        .set("k", &"written", &options())
        .await
        .unwrap();
    sleep(secs(6)).await;
    assert_eq!(
        cache.get::<String>("k").await.unwrap().as_deref(),
        Some("written")
    );
}

#[tokio::test(start_paused = true)]
async fn after_the_hard_ttl_callers_wait_for_a_new_value() {
    let cache = Cache::builder(memory())
        .clock(TokioClock::default())
        .default_ttl(secs(10))
        .build()
        .await
        .unwrap();
    let runs = calls();
    cache
        .get_or_load("k", loader(&runs, ms(0), Ok(Some(1_u32))), &options())
        .await
        .unwrap();
    advance(secs(11)).await;
    let started = Instant::now();
    let value = cache
        .get_or_load("k", loader(&runs, secs(2), Ok(Some(2_u32))), &options())
        .await
        .unwrap();
    assert_eq!((value, count(&runs)), (Some(2), 2));
    assert_eq!(started.elapsed(), secs(2));
}

#[tokio::test(start_paused = true)]
async fn fail_safe_serves_the_stale_value_and_throttles_the_loader() {
    let cache = Cache::builder(memory())
        .clock(TokioClock::default())
        .default_ttl(secs(10))
        .fail_safe(secs(100))
        .fail_safe_throttle(secs(30))
        // Recovery attempts off: their interval is not below the throttle
        // (`cache_features.rs` tests them).
        .fail_safe_recovery(secs(30))
        .build()
        .await
        .unwrap();
    let runs = calls();
    cache
        .get_or_load("k", loader(&runs, ms(0), Ok(Some(1_u32))), &options())
        .await
        .unwrap();

    advance(secs(11)).await; // t = 11 s: expired, loader fails
    let value = cache
        .get_or_load("k", loader::<u32>(&runs, ms(0), Err("db down")), &options())
        .await
        .unwrap();
    assert_eq!((value, count(&runs)), (Some(1), 2));
    assert_eq!(cache.stats().fail_safe_activations, 1);
    assert_eq!(
        cache.get::<u32>("k").await.unwrap(),
        None,
        "`get` has no fail-safe"
    );

    advance(secs(20)).await; // t = 31 s: throttled, the loader is not called
    let value = cache
        .get_or_load("k", loader::<u32>(&runs, ms(0), Err("db down")), &options())
        .await
        .unwrap();
    assert_eq!((value, count(&runs)), (Some(1), 2));

    advance(secs(11)).await; // t = 42 s: the throttle is over
    let value = cache
        .get_or_load("k", loader::<u32>(&runs, ms(0), Err("db down")), &options())
        .await
        .unwrap();
    assert_eq!((value, count(&runs)), (Some(1), 3));

    advance(secs(60)).await; // t = 102 s: older than the fail-safe maximum age
    let error = cache
        .get_or_load("k", loader::<u32>(&runs, ms(0), Err("db down")), &options())
        .await
        .unwrap_err();
    assert!(error.message().contains("db down"), "{error}");
    assert_eq!(count(&runs), 4);
}

/// A cache with a 10 s TTL (and `cache_fail_safe`, if any) stores 1 for
/// `k`, lets it expire, and asks for it with a failing loader and
/// `per_call` options. Returns the cache and the answer.
async fn expired_then_failing(
    cache_fail_safe: Option<Duration>,
    per_call: &EntryOptions,
) -> (Cache, cachette::Result<Option<u32>>) {
    let mut builder = Cache::builder(memory())
        .clock(TokioClock::default())
        .default_ttl(secs(10));
    if let Some(max_age) = cache_fail_safe {
        builder = builder.fail_safe(max_age);
    }
    let cache = builder.build().await.unwrap();
    let runs = calls();
    cache
        .get_or_load("k", loader(&runs, ms(0), Ok(Some(1_u32))), per_call)
        .await
        .unwrap();
    advance(secs(11)).await;
    let answer = cache
        .get_or_load("k", loader::<u32>(&runs, ms(0), Err("db down")), per_call)
        .await;
    (cache, answer)
}

#[tokio::test(start_paused = true)]
async fn fail_safe_per_call_serves_the_stale_value_in_a_cache_without_it() {
    let per_call = EntryOptions::new().fail_safe(secs(100));
    let (cache, answer) = expired_then_failing(None, &per_call).await;
    assert_eq!(answer.unwrap(), Some(1));
    assert_eq!(cache.stats().fail_safe_activations, 1);
}

#[tokio::test(start_paused = true)]
async fn no_fail_safe_per_call_returns_the_loader_error_in_a_cache_with_it() {
    let per_call = EntryOptions::new().no_fail_safe();
    let (cache, answer) = expired_then_failing(Some(secs(100)), &per_call).await;
    let error = answer.unwrap_err();
    assert!(error.message().contains("db down"), "{error}");
    assert_eq!(cache.stats().fail_safe_activations, 0);
}

#[tokio::test(start_paused = true)]
async fn a_write_ends_the_fail_safe_throttle() {
    let cache = Cache::builder(memory())
        .clock(TokioClock::default())
        .default_ttl(secs(10))
        .fail_safe(secs(100))
        .build()
        .await
        .unwrap();
    cache.set("k", &1_u32, &options()).await.unwrap();
    advance(secs(11)).await;
    let runs = calls();
    let value = cache
        .get_or_load("k", loader::<u32>(&runs, ms(0), Err("db down")), &options())
        .await
        .unwrap();
    assert_eq!(value, Some(1));
    cache.set("k", &7_u32, &options()).await.unwrap();
    let value = cache
        .get_or_load("k", loader::<u32>(&runs, ms(0), Err("db down")), &options())
        .await
        .unwrap();
    assert_eq!(value, Some(7));
}

#[tokio::test(start_paused = true)]
async fn a_soft_timeout_serves_stale_and_the_load_finishes_in_the_background() {
    let cache = Cache::builder(memory())
        .clock(TokioClock::default())
        .default_ttl(secs(10))
        .fail_safe(secs(100))
        .soft_timeout(ms(100))
        .build()
        .await
        .unwrap();
    cache.set("k", &1_u32, &options()).await.unwrap();
    advance(secs(11)).await;
    let runs = calls();
    let started = Instant::now();
    let value = cache
        .get_or_load("k", loader(&runs, secs(2), Ok(Some(2_u32))), &options())
        .await
        .unwrap();
    assert_eq!(value, Some(1));
    assert_eq!(started.elapsed(), ms(100));
    assert_eq!(cache.stats().soft_timeouts, 1);

    sleep(secs(3)).await;
    assert_eq!(
        cache.get::<u32>("k").await.unwrap(),
        Some(2),
        "stored in the background"
    );
    assert_eq!(count(&runs), 1);
}

#[tokio::test(start_paused = true)]
async fn a_soft_timeout_without_a_stale_value_waits_for_the_load() {
    let cache = Cache::builder(memory())
        .clock(TokioClock::default())
        .soft_timeout(ms(100))
        .build()
        .await
        .unwrap();
    let started = Instant::now();
    let value = cache
        .get_or_load("k", loader(&calls(), secs(2), Ok(Some(2_u32))), &options())
        .await
        .unwrap();
    assert_eq!((value, started.elapsed()), (Some(2), secs(2)));
}

#[tokio::test(start_paused = true)]
async fn a_hard_timeout_fails_the_load() {
    let cache = Cache::builder(memory())
        .clock(TokioClock::default())
        .hard_timeout(secs(1))
        .build()
        .await
        .unwrap();
    let started = Instant::now();
    let error = cache
        .get_or_load("k", loader(&calls(), secs(10), Ok(Some(2_u32))), &options())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert_eq!(started.elapsed(), secs(1));
    assert_eq!(cache.stats().hard_timeouts, 1);
    sleep(secs(20)).await;
    assert_eq!(
        cache.get::<u32>("k").await.unwrap(),
        None,
        "the load was cancelled"
    );
}

#[tokio::test(start_paused = true)]
async fn a_hard_timeout_with_a_stale_value_serves_it() {
    let cache = Cache::builder(memory())
        .clock(TokioClock::default())
        .default_ttl(secs(10))
        .fail_safe(secs(100))
        .build()
        .await
        .unwrap();
    cache.set("k", &1_u32, &options()).await.unwrap();
    advance(secs(11)).await;
    let value = cache
        .get_or_load(
            "k",
            loader(&calls(), secs(10), Ok(Some(2_u32))),
            &EntryOptions::new().hard_timeout(secs(1)),
        )
        .await
        .unwrap();
    assert_eq!(value, Some(1));
    assert_eq!(cache.stats().fail_safe_activations, 1);
}

async fn locked_cache(backend: &Arc<dyn Backend>) -> Cache {
    Cache::builder(backend.clone())
        .clock(TokioClock::default())
        .default_ttl(secs(10))
        .fail_safe(secs(100))
        .distributed_lock(secs(30), secs(2))
        .build()
        .await
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn with_a_distributed_lock_the_other_process_waits_for_the_value() {
    let backend = memory();
    let (a, b) = (locked_cache(&backend).await, locked_cache(&backend).await);
    let (a_runs, b_runs) = (calls(), calls());
    let first = tokio::spawn({
        let loader = loader(&a_runs, secs(1), Ok(Some(String::from("from a"))));
        async move { a.get_or_load("k", loader, &options()).await }
    });
    settle().await;
    let started = Instant::now();
    let value = b
        .get_or_load(
            "k",
            loader(&b_runs, ms(0), Ok(Some(String::from("from b")))),
            &options(),
        )
        .await
        .unwrap();
    assert_eq!(value.as_deref(), Some("from a"));
    assert!(started.elapsed() < secs(2), "{:?}", started.elapsed());
    assert_eq!(first.await.unwrap().unwrap().as_deref(), Some("from a"));
    assert_eq!((count(&a_runs), count(&b_runs)), (1, 0));
    assert!(backend.get("cachette:v0:k").await.unwrap().is_some());
}

#[tokio::test(start_paused = true)]
async fn with_a_distributed_lock_the_other_process_loads_itself_after_the_wait() {
    let backend = memory();
    let (a, b) = (locked_cache(&backend).await, locked_cache(&backend).await);
    let b_runs = calls();
    tokio::spawn({
        let loader = loader(&calls(), secs(60), Ok(Some(String::from("from a"))));
        async move { a.get_or_load("k", loader, &options()).await }
    });
    settle().await;
    let started = Instant::now();
    let value = b
        .get_or_load(
            "k",
            loader(&b_runs, ms(0), Ok(Some(String::from("from b")))),
            &options(),
        )
        .await
        .unwrap();
    assert_eq!(value.as_deref(), Some("from b"));
    assert!(started.elapsed() >= secs(2), "{:?}", started.elapsed());
    assert_eq!(count(&b_runs), 1);
}

#[tokio::test(start_paused = true)]
async fn with_a_distributed_lock_a_loser_with_a_stale_value_serves_it_at_once() {
    let backend = memory();
    let (a, b) = (locked_cache(&backend).await, locked_cache(&backend).await);
    a.set("k", &"old", &options()).await.unwrap();
    advance(secs(11)).await;
    tokio::spawn({
        // Shorter than the lock's wait of 2 s.
        let loader = loader(&calls(), secs(1), Ok(Some(String::from("new"))));
        async move { a.get_or_load("k", loader, &options()).await }
    });
    settle().await;
    let b_runs = calls();
    let started = Instant::now();
    let value = b
        .get_or_load(
            "k",
            loader(&b_runs, ms(0), Ok(Some(String::from("from b")))),
            &options(),
        )
        .await
        .unwrap();
    assert_eq!(value.as_deref(), Some("old"));
    assert!(started.elapsed() < ms(50), "{:?}", started.elapsed());
    sleep(secs(3)).await;
    assert_eq!(count(&b_runs), 0, "b found a's value while polling");
    assert_eq!(b.get::<String>("k").await.unwrap().as_deref(), Some("new"));
}

#[tokio::test(start_paused = true)]
async fn a_call_after_an_invalidation_does_not_join_a_load_that_started_before_it() {
    let cache = Cache::builder(memory()).build().await.unwrap();
    let tagged = EntryOptions::new().tags(["t"]);
    let before = tokio::spawn({
        let (cache, tagged) = (cache.clone(), tagged.clone());
        let loader = loader(&calls(), secs(5), Ok(Some(String::from("before"))));
        async move { cache.get_or_load("k", loader, &tagged).await }
    });
    settle().await;
    // The data changed, then its entries were invalidated (a service's
    // write): a read from now on must not get the older load's value.
    cache.invalidate_tags(&["t"]).await.unwrap();
    let runs = calls();
    let after = cache
        .get_or_load(
            "k",
            loader(&runs, secs(1), Ok(Some(String::from("after")))),
            &tagged,
        )
        .await
        .unwrap();
    assert_eq!(after.as_deref(), Some("after"));
    assert_eq!(count(&runs), 1, "the call ran a load of its own");
    let early = before.await.unwrap().unwrap();
    assert_eq!(early.as_deref(), Some("before"), "its caller still gets it");
    assert_eq!(
        cache.get::<String>("k").await.unwrap().as_deref(),
        Some("after"),
        "the older load did not store"
    );
}

#[tokio::test(start_paused = true)]
async fn a_call_after_a_set_does_not_join_a_load_that_started_before_it() {
    let cache = Cache::builder(memory()).build().await.unwrap();
    tokio::spawn({
        let cache = cache.clone();
        let loader = loader(&calls(), secs(5), Ok(Some(String::from("before"))));
        async move { cache.get_or_load("k", loader, &options()).await }
    });
    settle().await;
    cache.set("k", &"written", &options()).await.unwrap();
    cache.delete("k").await.unwrap();
    let after = cache
        .get_or_load(
            "k",
            loader(&calls(), secs(1), Ok(Some(String::from("after")))),
            &options(),
        )
        .await
        .unwrap();
    assert_eq!(after.as_deref(), Some("after"));
}

#[cfg(feature = "testing")]
#[tokio::test(start_paused = true)]
async fn a_store_under_way_during_an_invalidation_does_not_outlive_it() {
    let faulty = cachette::testing::FaultyBackend::new(memory());
    let cache = Cache::builder(Arc::clone(&faulty) as Arc<dyn Backend>)
        .build()
        .await
        .unwrap();
    faulty.set_delay(Some(ms(10)));
    let load = tokio::spawn({
        let cache = cache.clone();
        let loader = loader(&calls(), ms(0), Ok(Some(String::from("old"))));
        async move {
            cache
                .get_or_load("k", loader, &EntryOptions::new().tags(["t"]))
                .await
        }
    });
    // The load's store has passed its checks and is writing (slowly).
    while faulty.calls_of("set") == 0 {
        sleep(ms(1)).await;
    }
    faulty.set_delay(None);
    cache.invalidate_tags(&["t"]).await.unwrap();
    assert_eq!(load.await.unwrap().unwrap().as_deref(), Some("old"));
    assert_eq!(
        cache.get::<String>("k").await.unwrap(),
        None,
        "the invalidation removed what the store wrote"
    );
}
