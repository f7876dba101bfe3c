//! What users of moka, `cached` and FusionCache ask the typed `Cache` for:
//! `get_with` (no error type), `get_or_load_borrowed`, adaptive caching,
//! fail-safe auto-recovery, eager refresh, `get_many_or_load` and `clear`.
//! Timing runs on tokio's paused clock with a `TokioClock`.
#![cfg(all(feature = "testing", feature = "memory"))]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use cachette::cache::{Cache, EntryOptions, LoadContext, LoaderError, TokioClock};
use cachette::testing::FaultyBackend;
use cachette::{Backend, ErrorKind, KeyTtl, MemoryBackend};
use tokio::time::{advance, sleep, timeout};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn memory() -> Arc<dyn Backend> {
    Arc::new(MemoryBackend::default())
}

fn options() -> EntryOptions {
    EntryOptions::new()
}

/// Lets spawned refreshes run (the paused clock advances only when every
/// task is idle).
async fn settle() {
    sleep(Duration::from_millis(1)).await;
}

/// The database behind the loaders: counts their runs, and fails them
/// while it is down.
struct Source {
    runs: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
}

impl Source {
    fn new(down: bool) -> Source {
        Source {
            runs: Arc::new(AtomicUsize::new(0)),
            down: Arc::new(AtomicBool::new(down)),
        }
    }

    /// A loader that answers `value`, or fails while the source is down.
    fn loader(
        &self,
        value: u32,
    ) -> impl FnOnce(LoadContext) -> std::future::Ready<Result<Option<u32>, std::io::Error>>
    + Send
    + 'static {
        let (runs, down) = (Arc::clone(&self.runs), Arc::clone(&self.down));
        move |_| {
            runs.fetch_add(1, Ordering::SeqCst);
            std::future::ready(if down.load(Ordering::SeqCst) {
                Err(std::io::Error::other("database down"))
            } else {
                Ok(Some(value))
            })
        }
    }

    fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }
}

// --- get_with ---------------------------------------------------------

#[tokio::test]
async fn get_with_takes_a_loader_that_cannot_fail_without_an_error_type() {
    let cache = Cache::builder(memory()).build().await.unwrap();
    let value = cache
        .get_with("k", |_| async { Some(1_u32) }, &options())
        .await
        .unwrap();
    assert_eq!(value, Some(1));
    // The second call is a hit: its loader does not run.
    let value = cache
        .get_with("k", |_| async { Some(2_u32) }, &options())
        .await
        .unwrap();
    assert_eq!(value, Some(1));
    assert_eq!(cache.stats().loads, 1);
}

#[tokio::test]
async fn get_with_caches_not_found_for_the_negative_ttl() {
    let cache = Cache::builder(memory())
        .negative_ttl(secs(60))
        .build()
        .await
        .unwrap();
    for _ in 0..2 {
        let value = cache
            .get_with("missing", |_| async { None::<u32> }, &options())
            .await
            .unwrap();
        assert_eq!(value, None);
    }
    assert_eq!(cache.stats().loads, 1);
}

// --- get_or_load_borrowed ---------------------------------------------

/// A database handle the loader borrows: no `Arc`, no clone.
struct Db {
    reads: AtomicUsize,
    gate: tokio::sync::Semaphore,
}

impl Db {
    async fn read(&self, value: u32) -> Result<Option<u32>, std::io::Error> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let _permit = self.gate.acquire().await.map_err(std::io::Error::other)?;
        Ok(Some(value))
    }
}

fn db(open: bool) -> Db {
    Db {
        reads: AtomicUsize::new(0),
        gate: tokio::sync::Semaphore::new(if open {
            tokio::sync::Semaphore::MAX_PERMITS
        } else {
            0
        }),
    }
}

#[tokio::test]
async fn a_borrowing_loader_reads_from_its_caller_s_state() {
    let cache = Cache::builder(memory()).build().await.unwrap();
    let db = db(true);
    for _ in 0..3 {
        let value = cache
            .get_or_load_borrowed("k", |_| db.read(7), &options())
            .await
            .unwrap();
        assert_eq!(value, Some(7));
    }
    assert_eq!(db.reads.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn concurrent_borrowing_callers_share_one_load() {
    let cache = Cache::builder(memory()).build().await.unwrap();
    let db = db(false);
    let options = options();
    let first = cache.get_or_load_borrowed("k", |_| db.read(1), &options);
    let second = cache.get_or_load_borrowed("k", |_| db.read(2), &options);
    let release = async {
        // Both callers are in: the first leads, the second waits.
        while cache.stats().coalesced < 1 {
            settle().await;
        }
        db.gate.add_permits(1);
    };
    let (first, second, ()) = tokio::join!(first, second, release);
    assert_eq!((first.unwrap(), second.unwrap()), (Some(1), Some(1)));
    assert_eq!(db.reads.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn when_the_caller_running_a_borrowed_load_is_dropped_a_waiter_takes_over() {
    let cache = Cache::builder(memory()).build().await.unwrap();
    let stuck = db(false);
    let ready = db(true);
    let options = options();
    let mut leader = Box::pin(cache.get_or_load_borrowed("k", |_| stuck.read(1), &options));
    let mut waiter = Box::pin(cache.get_or_load_borrowed("k", |_| ready.read(2), &options));
    // The leader starts its load, which never finishes; the waiter joins it.
    assert!(timeout(secs(1), &mut leader).await.is_err());
    assert!(timeout(secs(1), &mut waiter).await.is_err());
    assert_eq!(cache.stats().coalesced, 1);
    drop(leader); // a cancelled request
    let value = timeout(secs(1), waiter)
        .await
        .expect("the waiter does not hang");
    assert_eq!(
        value.unwrap(),
        Some(2),
        "the waiter loaded with its own loader"
    );
    assert_eq!(ready.reads.load(Ordering::SeqCst), 1);
    assert_eq!(cache.get::<u32>("k").await.unwrap(), Some(2));
}

#[tokio::test(start_paused = true)]
async fn a_get_or_load_waiting_on_a_dropped_borrowed_load_takes_over() {
    let cache = Cache::builder(memory()).build().await.unwrap();
    let stuck = db(false);
    let options = options();
    let mut leader = Box::pin(cache.get_or_load_borrowed("k", |_| stuck.read(1), &options));
    assert!(timeout(secs(1), &mut leader).await.is_err());
    let source = Source::new(false);
    let waiter = tokio::spawn({
        let (cache, loader) = (cache.clone(), source.loader(2));
        async move { cache.get_or_load("k", loader, &EntryOptions::new()).await }
    });
    while cache.stats().coalesced < 1 {
        settle().await;
    }
    drop(leader); // a cancelled request
    let value = timeout(secs(1), waiter)
        .await
        .expect("the waiter does not hang")
        .unwrap();
    assert_eq!(
        value.unwrap(),
        Some(2),
        "the waiter loaded with its own loader, not failed with the cancelled one"
    );
    assert_eq!(source.runs(), 1);
    assert_eq!(cache.get::<u32>("k").await.unwrap(), Some(2));
}

#[tokio::test(start_paused = true)]
async fn a_borrowing_loader_refreshes_a_stale_value_in_the_foreground() {
    let cache = Cache::builder(memory())
        .clock(TokioClock::default())
        .default_ttl(secs(60))
        .soft_ttl(secs(5))
        .build()
        .await
        .unwrap();
    let db = db(true);
    cache.set("k", &1_u32, &options()).await.unwrap();
    advance(secs(6)).await; // stale
    let value = cache
        .get_or_load_borrowed("k", |_| db.read(2), &options())
        .await
        .unwrap();
    assert_eq!(value, Some(2), "the caller waited for the new value");
    assert_eq!(cache.stats().refreshes, 0, "nothing ran in the background");

    // A failed refresh serves the stale value.
    advance(secs(6)).await;
    let value = cache
        .get_or_load_borrowed(
            "k",
            |_| async { Err::<Option<u32>, _>(std::io::Error::other("down")) },
            &options(),
        )
        .await
        .unwrap();
    assert_eq!(value, Some(2));
}

// --- adaptive caching -------------------------------------------------

#[tokio::test]
async fn a_loader_chooses_the_ttl_from_the_value_it_loaded() {
    let cache = Cache::builder(memory())
        .default_ttl(secs(10))
        .build()
        .await
        .unwrap();
    for (key, status) in [("order:1", "shipped"), ("order:2", "pending")] {
        let value = cache
            .get_with(
                key,
                move |ctx| async move {
                    if status == "shipped" {
                        ctx.set_ttl(secs(86_400));
                    }
                    Some(status.to_string())
                },
                &options(),
            )
            .await
            .unwrap();
        assert_eq!(value.as_deref(), Some(status));
    }
    let remaining = |ttl: KeyTtl| match ttl {
        KeyTtl::ExpiresIn(left) => left,
        other => panic!("expected a TTL, got {other:?}"),
    };
    assert!(remaining(cache.ttl("order:1").await.unwrap()) > secs(3_600));
    assert!(remaining(cache.ttl("order:2").await.unwrap()) <= secs(10));
}

#[tokio::test]
async fn a_loader_s_options_add_tags_and_cache_its_not_found() {
    let cache = Cache::builder(memory()).build().await.unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    for _ in 0..2 {
        let runs = Arc::clone(&runs);
        let value = cache
            .get_with(
                "user:9",
                move |ctx| async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    ctx.set_options(EntryOptions::new().negative_ttl(secs(60)));
                    None::<u32>
                },
                &options(),
            )
            .await
            .unwrap();
        assert_eq!(value, None);
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the loader's negative TTL cached the miss"
    );

    let value = cache
        .get_with(
            "user:10",
            |ctx| async move {
                ctx.set_options(EntryOptions::new().tags(["team:1"]));
                Some(10_u32)
            },
            &EntryOptions::new().tags(["users"]),
        )
        .await
        .unwrap();
    assert_eq!(value, Some(10));
    cache.invalidate_tags(&["team:1"]).await.unwrap();
    assert_eq!(cache.get::<u32>("user:10").await.unwrap(), None);
}

#[tokio::test]
async fn a_loader_can_skip_caching_its_value() {
    let cache = Cache::builder(memory()).build().await.unwrap();
    let value = cache
        .get_with(
            "k",
            |ctx| async move {
                ctx.skip_caching();
                Some(1_u32)
            },
            &options(),
        )
        .await
        .unwrap();
    assert_eq!(value, Some(1));
    assert_eq!(cache.get::<u32>("k").await.unwrap(), None);
}

#[tokio::test]
async fn bad_options_from_a_loader_fail_its_load_with_the_option_named() {
    let cache = Cache::builder(memory())
        .default_ttl(secs(10))
        .build()
        .await
        .unwrap();
    let error = cache
        .get_with(
            "k",
            |ctx| async move {
                ctx.set_options(EntryOptions::new().soft_ttl(secs(20)));
                Some(1_u32)
            },
            &options(),
        )
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    assert!(error.message().contains("soft_ttl"), "{error}");
    assert_eq!(cache.get::<u32>("k").await.unwrap(), None);
}

// --- fail-safe auto-recovery ------------------------------------------

/// A cache with a 10 s TTL and fail-safe: a 60 s throttle, with recovery
/// attempts every 5 s.
async fn recovering_cache(backend: Arc<dyn Backend>) -> Cache {
    Cache::builder(backend)
        .clock(TokioClock::default())
        .default_ttl(secs(10))
        .fail_safe(secs(300))
        .fail_safe_throttle(secs(60))
        .fail_safe_recovery(secs(5))
        .build()
        .await
        .unwrap()
}

/// A [`recovering_cache`] whose value of `k` (1) expired at 10 s, and
/// whose loader failed at 11 s: fail-safe served 1 and throttles `k`.
async fn throttled_cache(backend: Arc<dyn Backend>) -> Cache {
    let cache = recovering_cache(backend).await;
    cache.set("k", &1_u32, &options()).await.unwrap();
    // Read once: this process keeps the value for fail-safe.
    assert_eq!(
        cache
            .get_with("k", |_| async { Some(0_u32) }, &options())
            .await
            .unwrap(),
        Some(1)
    );
    advance(secs(11)).await;
    let source = Source::new(true);
    let value = cache
        .get_or_load("k", source.loader(2), &options())
        .await
        .unwrap();
    assert_eq!(value, Some(1));
    assert_eq!(cache.stats().fail_safe_activations, 1);
    cache
}

#[tokio::test(start_paused = true)]
async fn during_the_throttle_one_attempt_per_interval_tries_the_loader() {
    let cache = throttled_cache(memory()).await;
    let source = Source::new(true);
    let mut served = Vec::new();
    // t = 12 .. 21 s, one call a second, the loader still failing.
    for _ in 0..10 {
        advance(secs(1)).await;
        let value = cache
            .get_or_load("k", source.loader(2), &options())
            .await
            .unwrap();
        served.push(value);
        settle().await;
    }
    assert!(served.iter().all(|v| *v == Some(1)), "{served:?}");
    // Attempts at 16 s and 21 s: each failure restarts the interval.
    assert_eq!(source.runs(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_first_successful_attempt_ends_the_throttle() {
    let cache = throttled_cache(memory()).await;
    let source = Source::new(false);
    advance(secs(1)).await; // t = 12 s: the database is back; no attempt due yet
    let value = cache
        .get_or_load("k", source.loader(2), &options())
        .await
        .unwrap();
    assert_eq!((value, source.runs()), (Some(1), 0));

    advance(secs(4)).await; // t = 16 s: an attempt is due
    let value = cache
        .get_or_load("k", source.loader(2), &options())
        .await
        .unwrap();
    assert_eq!(value, Some(1), "the attempt runs in the background");
    settle().await;
    assert_eq!(source.runs(), 1);
    assert_eq!(cache.stats().refreshes, 1);

    // The throttle is over (44 s early): the new value is served.
    let value = cache
        .get_or_load("k", source.loader(3), &options())
        .await
        .unwrap();
    assert_eq!(value, Some(2));
    assert_eq!(source.runs(), 1);
}

/// Checks that a recovery attempt with `attempt`, a loader that succeeds
/// without storing a value, ends the throttle all the same.
async fn a_successful_attempt_ends_the_throttle<F, Fut>(attempt: F)
where
    F: FnOnce(LoadContext) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Option<u32>> + Send + 'static,
{
    let cache = throttled_cache(memory()).await;
    advance(secs(5)).await; // t = 16 s: an attempt is due
    let value = cache.get_with("k", attempt, &options()).await.unwrap();
    assert_eq!(value, Some(1), "the attempt runs in the background");
    settle().await;
    assert_eq!(cache.stats().refreshes, 1);
    // The attempt succeeded: the stale value is no longer served at once.
    let value = cache
        .get_with("k", |_| async { Some(3_u32) }, &options())
        .await
        .unwrap();
    assert_eq!(value, Some(3));
}

#[tokio::test(start_paused = true)]
async fn an_attempt_that_finds_nothing_ends_the_throttle_too() {
    a_successful_attempt_ends_the_throttle(|_| async { None }).await;
}

#[tokio::test(start_paused = true)]
async fn an_attempt_that_skips_caching_ends_the_throttle_too() {
    a_successful_attempt_ends_the_throttle(|ctx| async move {
        ctx.skip_caching();
        Some(2)
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_borrowing_loader_makes_the_recovery_attempt_in_the_foreground() {
    let cache = throttled_cache(memory()).await;
    let db = db(true);
    advance(secs(1)).await; // t = 12 s: throttled, no attempt due
    let value = cache
        .get_or_load_borrowed("k", |_| db.read(2), &options())
        .await
        .unwrap();
    assert_eq!((value, db.reads.load(Ordering::SeqCst)), (Some(1), 0));
    advance(secs(4)).await; // t = 16 s: this caller's turn
    let value = cache
        .get_or_load_borrowed("k", |_| db.read(2), &options())
        .await
        .unwrap();
    assert_eq!(value, Some(2), "the caller waited for the attempt");
    assert_eq!(cache.stats().refreshes, 0);
}

#[tokio::test(start_paused = true)]
async fn a_recovered_backend_is_noticed_within_one_recovery_interval() {
    let faulty = FaultyBackend::new(memory());
    let cache = recovering_cache(faulty.clone()).await;
    let source = Source::new(false);
    let value = cache
        .get_or_load("k", source.loader(1), &options())
        .await
        .unwrap();
    assert_eq!(value, Some(1));

    faulty.fail_with(Some(ErrorKind::Connection));
    advance(secs(11)).await; // expired, and the backend is down
    let value = cache
        .get_or_load("k", source.loader(2), &options())
        .await
        .unwrap();
    assert_eq!(value, Some(1), "fail-safe served the kept value");
    assert_eq!(source.runs(), 1);

    faulty.fail_with(None);
    advance(secs(5)).await; // t = 16 s: the first attempt is due
    let value = cache
        .get_or_load("k", source.loader(2), &options())
        .await
        .unwrap();
    assert_eq!(value, Some(1));
    settle().await;
    assert_eq!(
        source.runs(),
        2,
        "the attempt read the backend, then loaded"
    );
    let value = cache
        .get_or_load("k", source.loader(3), &options())
        .await
        .unwrap();
    assert_eq!(value, Some(2));
    assert_eq!(cache.get::<u32>("k").await.unwrap(), Some(2));
}

// --- eager refresh ----------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_hit_past_the_eager_threshold_refreshes_in_the_background() {
    let cache = Cache::builder(memory())
        .clock(TokioClock::default())
        .default_ttl(secs(100))
        .soft_ttl(secs(10))
        .eager_refresh(0.5)
        .build()
        .await
        .unwrap();
    let source = Source::new(false);
    let load = |value| source.loader(value);
    assert_eq!(
        cache.get_or_load("k", load(1), &options()).await.unwrap(),
        Some(1)
    );

    advance(secs(4)).await; // 40 % of the fresh life: a plain hit
    assert_eq!(
        cache.get_or_load("k", load(2), &options()).await.unwrap(),
        Some(1)
    );
    settle().await;
    assert_eq!(source.runs(), 1);

    advance(secs(2)).await; // 60 %: a hit that refreshes
    for _ in 0..3 {
        assert_eq!(
            cache.get_or_load("k", load(2), &options()).await.unwrap(),
            Some(1)
        );
    }
    settle().await;
    assert_eq!(source.runs(), 2, "one refresh for the three hits");
    assert_eq!(
        cache.get_or_load("k", load(3), &options()).await.unwrap(),
        Some(2)
    );
    let stats = cache.stats();
    assert_eq!((stats.refreshes, stats.stale_served), (1, 0), "never stale");
}

#[tokio::test(start_paused = true)]
async fn without_a_soft_ttl_eager_refresh_takes_a_fraction_of_the_ttl() {
    let cache = Cache::builder(memory())
        .clock(TokioClock::default())
        .default_ttl(secs(10))
        .build()
        .await
        .unwrap();
    let per_call = EntryOptions::new().eager_refresh(0.8);
    let source = Source::new(false);
    let load = |value| source.loader(value);
    cache.get_or_load("k", load(1), &per_call).await.unwrap();
    advance(secs(9)).await;
    assert_eq!(
        cache.get_or_load("k", load(2), &per_call).await.unwrap(),
        Some(1)
    );
    settle().await;
    assert_eq!(source.runs(), 2);
    advance(secs(2)).await; // past the first value's TTL: the refreshed one lives
    assert_eq!(cache.get::<u32>("k").await.unwrap(), Some(2));
}

#[tokio::test]
async fn eager_refresh_fractions_outside_zero_to_one_are_rejected() {
    for fraction in [0.0, 1.0, -0.5, 1.5, f64::NAN, f64::INFINITY] {
        let error = Cache::builder(memory())
            .default_ttl(secs(10))
            .eager_refresh(fraction)
            .build()
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config, "{fraction}");
        assert!(error.message().contains("eager_refresh"), "{error}");
    }
    let error = Cache::builder(memory())
        .eager_refresh(0.5)
        .build()
        .await
        .unwrap_err();
    assert!(
        error.message().contains("needs a soft_ttl or a ttl"),
        "{error}"
    );

    let cache = Cache::builder(memory())
        .default_ttl(secs(10))
        .build()
        .await
        .unwrap();
    let error = cache
        .get_with(
            "k",
            |_| async { Some(1_u32) },
            &EntryOptions::new().eager_refresh(1.0),
        )
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
}

// --- get_many_or_load -------------------------------------------------

#[tokio::test]
async fn a_batch_loads_its_missing_keys_in_one_loader_call() {
    let faulty = FaultyBackend::new(memory());
    let cache = Cache::builder(faulty.clone())
        .negative_ttl(secs(60))
        .build()
        .await
        .unwrap();
    cache.set("a", &1_u32, &options()).await.unwrap();
    let (gets, sets) = (faulty.calls_of("get_many"), faulty.calls_of("set_many"));
    let mut asked = Vec::new();
    let values = cache
        .get_many_or_load(
            &["a", "b", "c", "b"],
            |missing| {
                asked.push(missing);
                async { Ok::<_, std::io::Error>(HashMap::from([("b".to_string(), 2_u32)])) }
            },
            &options(),
        )
        .await
        .unwrap();
    assert_eq!(values, [Some(1), Some(2), None, Some(2)]);
    assert_eq!(asked, [["b", "c"]], "one call, each missing key once");
    assert_eq!(faulty.calls_of("get_many"), gets + 1);
    // The value, then the cached "not found" (another expiry).
    assert_eq!(faulty.calls_of("set_many"), sets + 2);

    // Everything is cached now, "c" as not found: no loader call.
    let values = cache
        .get_many_or_load(
            &["a", "b", "c"],
            |_| async { Err::<Vec<(String, u32)>, _>(std::io::Error::other("not called")) },
            &options(),
        )
        .await
        .unwrap();
    assert_eq!(values, [Some(1), Some(2), None]);
    assert_eq!(cache.stats().loads, 1);
}

#[tokio::test(start_paused = true)]
async fn a_failed_batch_serves_stale_values_and_fails_without_them() {
    let cache = Cache::builder(memory())
        .clock(TokioClock::default())
        .default_ttl(secs(100))
        .soft_ttl(secs(10))
        .build()
        .await
        .unwrap();
    cache.set("a", &1_u32, &options()).await.unwrap();
    advance(secs(11)).await; // "a" is stale
    let failing =
        |_: Vec<String>| async { Err::<Vec<(String, u32)>, _>(std::io::Error::other("db down")) };
    let values = cache
        .get_many_or_load(&["a"], failing, &options())
        .await
        .unwrap();
    assert_eq!(values, [Some(1)]);

    let error = cache
        .get_many_or_load(&["a", "b"], failing, &options())
        .await
        .unwrap_err();
    assert!(error.message().contains("db down"), "{error}");
    let source = LoaderError::find(&error).expect("the loader's error is the source");
    assert!(source.downcast_ref::<std::io::Error>().is_some());

    // A working loader replaces the stale value.
    let values = cache
        .get_many_or_load(
            &["a", "b"],
            |keys| async move {
                Ok::<_, std::io::Error>(keys.into_iter().map(|k| (k, 5_u32)).collect::<Vec<_>>())
            },
            &options(),
        )
        .await
        .unwrap();
    assert_eq!(values, [Some(5), Some(5)]);
    assert_eq!(cache.get::<u32>("a").await.unwrap(), Some(5));
}

#[tokio::test]
async fn a_write_during_a_batch_load_wins_over_it() {
    let cache = Cache::builder(memory()).build().await.unwrap();
    let values = cache
        .get_many_or_load(
            &["a", "b"],
            |keys| async {
                cache.set("b", &9_u32, &options()).await.unwrap();
                Ok::<_, std::io::Error>(keys.into_iter().map(|k| (k, 1_u32)).collect::<Vec<_>>())
            },
            &options(),
        )
        .await
        .unwrap();
    assert_eq!(values, [Some(1), Some(1)]);
    assert_eq!(cache.get::<u32>("a").await.unwrap(), Some(1));
    assert_eq!(cache.get::<u32>("b").await.unwrap(), Some(9));
}

#[tokio::test(start_paused = true)]
async fn a_batch_store_under_way_during_an_invalidation_does_not_outlive_it() {
    let faulty = FaultyBackend::new(memory());
    let cache = Cache::builder(Arc::clone(&faulty) as Arc<dyn Backend>)
        .build()
        .await
        .unwrap();
    faulty.set_delay(Some(Duration::from_millis(10)));
    let batch = tokio::spawn({
        let cache = cache.clone();
        async move {
            cache
                .get_many_or_load(
                    &["a", "b"],
                    |keys| async move {
                        Ok::<_, std::io::Error>(
                            keys.into_iter().map(|k| (k, 1_u32)).collect::<Vec<_>>(),
                        )
                    },
                    &EntryOptions::new().tags(["t"]),
                )
                .await
        }
    });
    // The batch's store has passed its checks and is writing (slowly).
    while faulty.calls_of("set_many") == 0 {
        sleep(Duration::from_millis(1)).await;
    }
    faulty.set_delay(None);
    cache.invalidate_tags(&["t"]).await.unwrap();
    assert_eq!(batch.await.unwrap().unwrap(), [Some(1), Some(1)]);
    assert_eq!(
        cache.get_many::<u32>(&["a", "b"]).await.unwrap(),
        [None, None],
        "the invalidation removed what the batch wrote"
    );
}

// --- clear ------------------------------------------------------------

#[tokio::test]
async fn clear_makes_every_key_unreachable_for_this_and_later_caches() {
    let backend = memory();
    let cache = Cache::builder(backend.clone()).build().await.unwrap();
    cache.set("a", &1_u32, &options()).await.unwrap();
    cache.set("b", &2_u32, &options()).await.unwrap();
    cache.clear().await.unwrap();
    assert_eq!(
        cache.get_many::<u32>(&["a", "b"]).await.unwrap(),
        [None, None]
    );
    // The old entries are still in the backend, under the old version.
    assert!(backend.get("cachette:v0:a").await.unwrap().is_some());
    let later = Cache::builder(backend).build().await.unwrap();
    assert_eq!(later.get::<u32>("a").await.unwrap(), None);
    // The cache keeps working after a clear.
    cache.set("a", &3_u32, &options()).await.unwrap();
    assert_eq!(later.get::<u32>("a").await.unwrap(), Some(3));
}

#[tokio::test(start_paused = true)]
async fn clear_drops_this_process_s_fail_safe_copies() {
    let faulty = FaultyBackend::new(memory());
    let cache = Cache::builder(faulty.clone())
        .clock(TokioClock::default())
        .default_ttl(secs(10))
        .fail_safe(secs(300))
        .build()
        .await
        .unwrap();
    cache
        .get_with("k", |_| async { Some(1_u32) }, &options())
        .await
        .unwrap();
    cache.clear().await.unwrap();
    faulty.fail_with(Some(ErrorKind::Connection));
    let source = Source::new(true);
    let error = cache
        .get_or_load("k", source.loader(2), &options())
        .await
        .unwrap_err();
    assert!(
        error.message().contains("database down"),
        "no stale value after a clear: {error}"
    );
}

#[cfg(feature = "file")]
#[tokio::test]
async fn clear_works_on_a_file_backend() {
    let dir = std::env::temp_dir().join(format!(
        "cachette-clear-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let url = format!("file://{}", dir.display());
    let cache = Cache::builder(cachette::open(&url).await.unwrap())
        .build()
        .await
        .unwrap();
    cache.set("a", &1_u32, &options()).await.unwrap();
    cache.clear().await.unwrap();
    assert_eq!(cache.get::<u32>("a").await.unwrap(), None);
    // Another process (a new backend over the same directory) agrees.
    let other = Cache::builder(cachette::open(&url).await.unwrap())
        .build()
        .await
        .unwrap();
    assert_eq!(other.version(), cache.version());
    assert_eq!(other.get::<u32>("a").await.unwrap(), None);
    drop((cache, other));
    let _ = std::fs::remove_dir_all(&dir);
}
