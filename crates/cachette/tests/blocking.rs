//! The blocking API (`cachette::blocking`) from plain `#[test]`s, the way
//! a synchronous program uses it: typed and raw operations, `get_or_load`
//! shared by threads, the errors of a loader, and the typed error (never a
//! panic) inside an async runtime. The last test is a plain-`fn main`
//! program against a real Redis.
#![cfg(all(feature = "blocking", feature = "memory"))]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cachette::blocking::{self, BackendHandle, Cache};
use cachette::cache::LoaderError;
use cachette::{EntryOptions, ErrorKind, Expiry, KeyTtl, MemoryBackend, SetOptions};

/// How long a test waits for something that must happen (threads joining
/// a load) before it fails; never reached on a healthy run.
const PATIENCE: Duration = Duration::from_secs(30);

/// What `get_or_load` gives each of several threads.
type Answers = Vec<cachette::Result<Option<String>>>;

/// Runs `get_or_load("shared")` from `threads` threads at once, with a
/// loader that waits until every thread has joined the load, then
/// returns `outcome`. Returns each thread's answer and how many times the
/// loader ran.
fn load_from_threads(
    cache: &Cache,
    threads: usize,
    outcome: fn() -> Result<Option<String>, std::io::Error>,
) -> (Answers, usize) {
    let runs = Arc::new(AtomicUsize::new(0));
    let (release, released) = mpsc::channel::<()>();
    let released = Arc::new(Mutex::new(released));
    let coalesced_before = cache.stats().coalesced;
    let callers: Vec<_> = (0..threads)
        .map(|_| {
            let cache = cache.clone();
            let runs = Arc::clone(&runs);
            let released = Arc::clone(&released);
            thread::spawn(move || {
                cache.get_or_load(
                    "shared",
                    move |_ctx| {
                        runs.fetch_add(1, Ordering::SeqCst);
                        // Held until every caller is waiting for this load.
                        released.lock().unwrap().recv().unwrap();
                        outcome()
                    },
                    &EntryOptions::new(),
                )
            })
        })
        .collect();
    // Every caller but the one that started the load joins it: counted in
    // `coalesced`. Only then may the loader finish.
    let joined = (threads - 1) as u64;
    let started = Instant::now();
    while cache.stats().coalesced - coalesced_before < joined {
        assert!(
            started.elapsed() < PATIENCE,
            "the threads never all joined the load"
        );
        thread::sleep(Duration::from_millis(1));
    }
    release.send(()).unwrap();
    let answers = callers.into_iter().map(|c| c.join().unwrap()).collect();
    (answers, runs.load(Ordering::SeqCst))
}

#[test]
fn typed_operations_work_from_a_plain_thread() {
    let cache = Cache::from_url("memory://").unwrap();
    let options = EntryOptions::new();
    cache.set("name", "Ada", &options).unwrap();
    assert_eq!(cache.get::<String>("name").unwrap().as_deref(), Some("Ada"));
    assert_eq!(cache.get::<String>("nobody").unwrap(), None);

    cache
        .set_bytes("raw", Bytes::from_static(b"\x00\x01"), &options)
        .unwrap();
    assert_eq!(
        cache.get_bytes("raw").unwrap().as_deref(),
        Some(&b"\x00\x01"[..])
    );

    cache
        .set_many(&[("a", &1u32), ("b", &2u32)], &options)
        .unwrap();
    assert_eq!(
        cache.get_many::<u32>(&["a", "x", "b"]).unwrap(),
        [Some(1), None, Some(2)]
    );

    assert_eq!(cache.incr("count", 5, Expiry::Never).unwrap(), 5);
    assert_eq!(cache.decr("count", 2, Expiry::Never).unwrap(), 3);

    cache
        .set(
            "short",
            &1u8,
            &EntryOptions::new().ttl(Duration::from_secs(60)),
        )
        .unwrap();
    assert!(matches!(cache.ttl("short").unwrap(), KeyTtl::ExpiresIn(_)));
    assert!(cache.touch("short", Expiry::Never).unwrap());
    assert_eq!(cache.ttl("short").unwrap(), KeyTtl::Persistent);

    assert!(cache.delete("name").unwrap());
    assert!(!cache.delete("name").unwrap());
    assert_eq!(cache.get::<String>("name").unwrap(), None);
    // "nobody", "x" and "name" after its delete.
    assert_eq!(cache.stats().misses, 3);
    assert_eq!(cache.namespace(), "cachette");
    assert_eq!(cache.backend().name(), "memory");
}

#[test]
fn an_infallible_loader_needs_no_error_type() {
    let cache = Cache::from_url("memory://").unwrap();
    let value = cache
        .get_with("answer", |ctx| Some(ctx.key().len()), &EntryOptions::new())
        .unwrap();
    assert_eq!(value, Some(6));
    let missing: Option<u8> = cache
        .get_with("ghost", |_| None, &EntryOptions::new())
        .unwrap();
    assert_eq!(missing, None);
    assert_eq!(cache.stats().loads, 2);
}

#[test]
fn tags_and_versions_make_entries_unreachable() {
    let cache = Cache::from_url("memory://").unwrap();
    cache
        .set("tagged", &1u8, &EntryOptions::new().tags(["t"]))
        .unwrap();
    cache.set("plain", &2u8, &EntryOptions::new()).unwrap();
    cache.invalidate_tags(&["t"]).unwrap();
    assert_eq!(cache.get::<u8>("tagged").unwrap(), None);
    assert_eq!(cache.get::<u8>("plain").unwrap(), Some(2));

    assert_eq!(cache.version(), 0);
    assert_eq!(cache.bump_version().unwrap(), 1);
    assert_eq!(cache.get::<u8>("plain").unwrap(), None);
    assert_eq!(cache.refresh_version().unwrap(), 1);
}

#[test]
fn the_builder_forwards_options_and_their_checks() {
    let memory: Arc<dyn cachette::Backend> = Arc::new(MemoryBackend::default());
    let cache = Cache::builder(Arc::clone(&memory))
        .namespace("users")
        .negative_ttl(Duration::from_secs(60))
        .build()
        .unwrap();
    assert_eq!(cache.namespace(), "users");
    // The negative TTL came through: a "not found" is cached.
    let runs = Arc::new(AtomicUsize::new(0));
    for _ in 0..2 {
        let runs = Arc::clone(&runs);
        let found: Option<u8> = cache
            .get_or_load(
                "ghost",
                move |_| {
                    runs.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, std::io::Error>(None)
                },
                &EntryOptions::new(),
            )
            .unwrap();
        assert_eq!(found, None);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    let error = Cache::builder(memory)
        .soft_ttl(Duration::from_secs(60))
        .default_ttl(Duration::from_secs(10))
        .build()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.message().contains("soft_ttl"), "{error}");
}

#[test]
fn sixteen_threads_share_one_run_of_the_loader() {
    let cache = Cache::from_url("memory://").unwrap();
    let (answers, runs) = load_from_threads(&cache, 16, || Ok(Some("loaded".to_owned())));
    assert_eq!(runs, 1);
    assert_eq!(answers.len(), 16);
    for answer in answers {
        assert_eq!(answer.unwrap().as_deref(), Some("loaded"));
    }
    // Stored: the next call is a hit, with no loader run.
    let again: Option<String> = cache
        .get_or_load(
            "shared",
            |_| -> Result<_, std::io::Error> { panic!("no load expected") },
            &EntryOptions::new(),
        )
        .unwrap();
    assert_eq!(again.as_deref(), Some("loaded"));
}

#[test]
fn a_loader_error_reaches_every_caller_and_is_not_cached() {
    let cache = Cache::from_url("memory://").unwrap();
    let (answers, runs) = load_from_threads(&cache, 4, || {
        Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the database is down",
        ))
    });
    assert_eq!(runs, 1);
    for answer in answers {
        let error = answer.unwrap_err();
        let loader = LoaderError::find(&error).expect("the loader's error is the source");
        let io = loader.downcast_ref::<std::io::Error>().unwrap();
        assert_eq!(io.to_string(), "the database is down");
    }
    // Nothing was stored: the next call loads again.
    let (answers, runs) = load_from_threads(&cache, 2, || Ok(Some("back".to_owned())));
    assert_eq!(runs, 1);
    assert!(
        answers
            .iter()
            .all(|a| a.as_ref().unwrap().as_deref() == Some("back"))
    );
}

#[test]
fn the_call_after_a_failed_load_runs_its_own_loader() {
    // The caller wakes on its own thread as soon as the load fails; its
    // next call must not join the finished load and get the error again.
    let cache = Cache::from_url("memory://").unwrap();
    for round in 0..200u32 {
        let key = format!("flaky:{round}");
        let failed = cache.get_or_load::<u32, _, std::io::Error>(
            &key,
            |_| Err(std::io::Error::other("down")),
            &EntryOptions::new(),
        );
        assert!(failed.is_err());
        let value = cache
            .get_or_load(
                &key,
                move |_| Ok::<_, std::io::Error>(Some(round)),
                &EntryOptions::new(),
            )
            .unwrap();
        assert_eq!(value, Some(round), "round {round}");
    }
}

#[test]
fn a_panicking_loader_is_an_error_for_its_caller() {
    let cache = Cache::from_url("memory://").unwrap();
    let error = cache
        .get_or_load::<u8, _, std::io::Error>(
            "boom",
            |_| panic!("the loader panicked"),
            &EntryOptions::new(),
        )
        .unwrap_err();
    assert!(error.to_string().contains("panic"), "{error}");
    // The next call starts afresh.
    let value = cache
        .get_or_load(
            "boom",
            |_| Ok::<_, std::io::Error>(Some(1u8)),
            &EntryOptions::new(),
        )
        .unwrap();
    assert_eq!(value, Some(1));
}

#[test]
fn a_hard_timeout_returns_while_the_loader_still_runs() {
    let cache = Cache::from_url("memory://").unwrap();
    let (release, released) = mpsc::channel::<()>();
    let error = cache
        .get_or_load(
            "slow",
            move |_| {
                // Ends when the test lets it (or the test is over).
                let _ = released.recv();
                Ok::<_, std::io::Error>(Some(1u8))
            },
            &EntryOptions::new().hard_timeout(Duration::from_millis(20)),
        )
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout);
    let _ = release.send(());
}

#[test]
fn the_last_clone_may_be_dropped_by_a_loader_on_the_runtime_s_own_thread() {
    let cache = Cache::from_url("memory://").unwrap();
    let held = cache.clone();
    let (release, released) = mpsc::channel::<()>();
    let (dropped, was_dropped) = mpsc::channel::<()>();
    let error = cache
        .get_or_load(
            "k",
            move |_| {
                let _ = released.recv();
                // The caller has given up and dropped its clone: this is
                // the last one, dropped on the runtime's blocking pool.
                drop(held);
                dropped.send(()).unwrap();
                Ok::<_, std::io::Error>(Some(1u8))
            },
            &EntryOptions::new().hard_timeout(Duration::from_millis(20)),
        )
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout);
    drop(cache);
    release.send(()).unwrap();
    was_dropped
        .recv_timeout(PATIENCE)
        .expect("the loader's thread dropped the last clone without a panic");
}

#[test]
fn a_loader_may_read_other_keys_through_the_blocking_api() {
    let cache = Cache::from_url("memory://").unwrap();
    cache.set("base", &40u32, &EntryOptions::new()).unwrap();
    let inner = cache.clone();
    let value: Option<u32> = cache
        .get_or_load(
            "derived",
            move |_| {
                let base: Option<u32> = inner.get("base")?;
                let other: Option<u32> = inner.get_or_load(
                    "other",
                    |_| Ok::<_, std::io::Error>(Some(2)),
                    &EntryOptions::new(),
                )?;
                Ok::<_, cachette::Error>(Some(base.unwrap_or(0) + other.unwrap_or(0)))
            },
            &EntryOptions::new(),
        )
        .unwrap();
    assert_eq!(value, Some(42));
    assert_eq!(cache.get::<u32>("other").unwrap(), Some(2));
}

#[test]
fn a_loader_asking_for_its_own_key_gets_an_error_instead_of_waiting() {
    let cache = Cache::from_url("memory://").unwrap();
    let inner = cache.clone();
    let error = cache
        .get_or_load(
            "loop",
            move |_| {
                // Through a second key, so that the chain is followed.
                inner.get_or_load::<u8, _, cachette::Error>(
                    "step",
                    {
                        let inner = inner.clone();
                        move |_| {
                            inner.get_or_load(
                                "loop",
                                |_| Ok::<_, std::io::Error>(Some(1u8)),
                                &EntryOptions::new(),
                            )
                        }
                    },
                    &EntryOptions::new(),
                )
            },
            &EntryOptions::new(),
        )
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
    assert!(error.to_string().contains("its own key"), "{error}");
}

#[test]
fn a_backend_handle_offers_every_backend_method() {
    let backend = blocking::open("memory://").unwrap();
    assert_eq!(backend.name(), "memory");
    let options = SetOptions::new().tags(["t"]);
    assert!(
        backend
            .set("a", Bytes::from_static(b"1"), &options)
            .unwrap()
    );
    assert_eq!(backend.get("a").unwrap().as_deref(), Some(&b"1"[..]));
    assert!(backend.exists("a").unwrap());
    let written = backend
        .set_many(
            &[
                ("b", Bytes::from_static(b"2")),
                ("c", Bytes::from_static(b"3")),
            ],
            &SetOptions::new(),
        )
        .unwrap();
    assert_eq!(written, [true, true]);
    let read = backend.get_many(&["a", "b", "zz"]).unwrap();
    assert_eq!(
        read.iter().map(|v| v.is_some()).collect::<Vec<_>>(),
        [true, true, false]
    );
    assert_eq!(backend.incr("n", 3, Expiry::Never).unwrap(), 3);
    assert_eq!(backend.decr("n", 1, Expiry::Never).unwrap(), 2);
    assert_eq!(backend.ttl("a").unwrap(), KeyTtl::Persistent);
    assert!(
        backend
            .touch("a", Expiry::After(Duration::from_secs(60)))
            .unwrap()
    );
    assert!(matches!(backend.ttl("a").unwrap(), KeyTtl::ExpiresIn(_)));
    let mut keys: Vec<String> = backend
        .keys("*")
        .unwrap()
        .collect::<cachette::Result<_>>()
        .unwrap();
    keys.sort();
    assert_eq!(keys, ["a", "b", "c", "n"]);
    backend.invalidate_tags(&["t"]).unwrap();
    assert!(!backend.exists("a").unwrap());
    assert_eq!(backend.delete_many(&["b", "c"]).unwrap(), 2);
    assert!(backend.delete("n").unwrap());
    backend.purge_expired().unwrap();
    backend.health().unwrap();
    backend.stats().unwrap();
    backend
        .set("d", Bytes::from_static(b"4"), &SetOptions::new())
        .unwrap();
    backend.clear().unwrap();
    assert!(!backend.exists("d").unwrap());
    backend.close().unwrap();
}

#[test]
fn a_backend_handle_wraps_an_existing_backend_and_builds_caches_on_it() {
    let memory: Arc<dyn cachette::Backend> = Arc::new(MemoryBackend::default());
    let handle = BackendHandle::new(Arc::clone(&memory)).unwrap();
    let cache = handle.cache_builder().namespace("app").build().unwrap();
    cache.set("k", &7u8, &EntryOptions::new()).unwrap();
    assert!(handle.exists("app:v0:k").unwrap());
    assert!(Arc::ptr_eq(handle.backend(), &memory));
    // The cache outlives the handle it came from: they share the runtime.
    drop(handle);
    assert_eq!(cache.get::<u8>("k").unwrap(), Some(7));
}

/// The error of a blocking call inside an async runtime.
fn assert_refused<T: std::fmt::Debug>(result: cachette::Result<T>) {
    let error = result.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unsupported, "{error}");
    assert!(
        error
            .message()
            .contains("cannot run inside an async runtime"),
        "{error}"
    );
    assert!(
        error.message().contains("cachette::cache::Cache"),
        "{error}"
    );
}

/// A cache and a handle built on a plain thread, to be used elsewhere.
fn built_outside() -> (Cache, BackendHandle) {
    thread::spawn(|| {
        let cache = Cache::from_url("memory://").unwrap();
        cache.set("k", &1u8, &EntryOptions::new()).unwrap();
        let backend = blocking::open("memory://").unwrap();
        backend
            .set("k", Bytes::from_static(b"1"), &SetOptions::new())
            .unwrap();
        (cache, backend)
    })
    .join()
    .unwrap()
}

#[tokio::test]
async fn calls_inside_an_async_runtime_are_a_typed_error_not_a_panic() {
    assert_refused(Cache::from_url("memory://"));
    assert_refused(blocking::open("memory://"));
    assert_refused(BackendHandle::new(Arc::new(MemoryBackend::default())));
    assert_refused(Cache::builder(Arc::new(MemoryBackend::default())).build());

    let (cache, backend) = built_outside();
    assert_refused(cache.get::<u8>("k"));
    assert_refused(cache.set("k", &2u8, &EntryOptions::new()));
    assert_refused(cache.get_or_load(
        "k",
        |_| Ok::<_, std::io::Error>(Some(3u8)),
        &EntryOptions::new(),
    ));
    assert_refused(cache.invalidate_tags(&["t"]));
    assert_refused(cache.bump_version());
    assert_refused(backend.get("k"));
    assert_refused(backend.keys("*"));
    // What makes no call works anywhere.
    assert_eq!(cache.namespace(), "cachette");
    assert_eq!(cache.stats().loads, 0);

    // Nothing changed, as seen from a plain thread.
    let value = thread::spawn(move || cache.get::<u8>("k")).join().unwrap();
    assert_eq!(value.unwrap(), Some(1));
}

#[tokio::test]
async fn a_key_listing_advanced_inside_an_async_runtime_errs_once_then_ends() {
    let keys = thread::spawn(|| {
        let backend = blocking::open("memory://").unwrap();
        backend
            .set("k", Bytes::from_static(b"1"), &SetOptions::new())
            .unwrap();
        backend.keys("*").unwrap()
    })
    .join()
    .unwrap();
    let mut keys = keys;
    assert_refused(keys.next().unwrap());
    assert!(keys.next().is_none());
}

#[tokio::test(flavor = "current_thread")]
async fn dropping_the_last_clone_inside_a_current_thread_runtime_does_not_panic() {
    let (cache, backend) = built_outside();
    let clone = cache.clone();
    drop(cache);
    drop(clone);
    drop(backend);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_clone_in_a_task_does_not_panic() {
    let (cache, backend) = built_outside();
    tokio::spawn(async move {
        drop(cache);
        drop(backend);
    })
    .await
    .unwrap();
}

/// A synchronous program against Redis, as `examples/blocking.rs` is: the
/// server is started for the test, the rest is plain blocking code.
#[cfg(all(feature = "redis", feature = "testing"))]
#[test]
fn a_plain_program_uses_redis_through_the_blocking_api() {
    use cachette::testing::servers::redis::RedisServer;

    let server = RedisServer::start();
    let url = server.url();

    let cache = Cache::from_url(&url).unwrap();
    let options = EntryOptions::new()
        .ttl(Duration::from_secs(60))
        .tags(["team:7"]);
    cache.set("user:1", "Ada", &options).unwrap();
    assert_eq!(
        cache.get::<String>("user:1").unwrap().as_deref(),
        Some("Ada")
    );

    let (answers, runs) = load_from_threads(&cache, 8, || Ok(Some("Grace".to_owned())));
    assert_eq!(runs, 1);
    assert!(
        answers
            .iter()
            .all(|a| a.as_ref().unwrap().as_deref() == Some("Grace"))
    );
    let loaded: Option<String> = cache
        .get_or_load(
            "user:2",
            |_| Ok::<_, std::io::Error>(Some("Lin".to_owned())),
            &options,
        )
        .unwrap();
    assert_eq!(loaded.as_deref(), Some("Lin"));

    cache.invalidate_tags(&["team:7"]).unwrap();
    assert_eq!(cache.get::<String>("user:1").unwrap(), None);
    assert_eq!(cache.get::<String>("user:2").unwrap(), None);

    // A version bump reaches a cache built afterwards (in any process).
    assert_eq!(
        cache.get::<String>("shared").unwrap().as_deref(),
        Some("Grace")
    );
    assert_eq!(cache.bump_version().unwrap(), 1);
    assert_eq!(cache.get::<String>("shared").unwrap(), None);
    assert_eq!(Cache::from_url(&url).unwrap().version(), 1);

    // Raw bytes through a handle to the backend.
    let backend = blocking::open(&url).unwrap();
    assert_eq!(backend.name(), "redis");
    backend
        .set("raw", Bytes::from_static(b"\xffbytes"), &SetOptions::new())
        .unwrap();
    assert_eq!(
        backend.get("raw").unwrap().as_deref(),
        Some(&b"\xffbytes"[..])
    );
    assert!(backend.exists("cachette:__version").unwrap());
    backend.health().unwrap();
    assert!(backend.delete("raw").unwrap());
}

/// A borrowing loader reads its caller's state (not `Send`, not
/// `'static`) on the caller's own thread, and runs once for the key.
#[test]
fn a_borrowing_loader_runs_on_the_caller_s_thread_once() {
    let cache = Cache::from_url("memory://").unwrap();
    let names = ["Ada".to_owned()];
    let runs = std::cell::Cell::new(0);
    let ran_on = std::cell::Cell::new(None);
    let load = |_ctx| {
        runs.set(runs.get() + 1);
        ran_on.set(Some(thread::current().id()));
        Ok::<_, std::io::Error>(names.first().cloned())
    };
    let first: Option<String> = cache
        .get_or_load_borrowed("user:0", load, &EntryOptions::new())
        .unwrap();
    assert_eq!(first.as_deref(), Some("Ada"));
    assert_eq!(ran_on.get(), Some(thread::current().id()));
    let again: Option<String> = cache
        .get_or_load_borrowed(
            "user:0",
            |_ctx| Ok::<_, std::io::Error>(Some("not loaded".to_owned())),
            &EntryOptions::new(),
        )
        .unwrap();
    assert_eq!(again.as_deref(), Some("Ada"));
    assert_eq!(runs.get(), 1);
}

/// Callers on other threads wait for the caller running a borrowing
/// loader: one run for all of them.
#[test]
fn borrowing_loaders_on_many_threads_share_one_run() {
    let cache = Cache::from_url("memory://").unwrap();
    let runs = AtomicUsize::new(0);
    let (release, released) = mpsc::channel::<()>();
    let released = Mutex::new(released);
    let values: Vec<Option<u32>> = thread::scope(|scope| {
        // Owned here: should the wait below fail, unwinding drops it, and a
        // loader left waiting wakes (with an error) instead of hanging.
        let release = release;
        let callers: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    cache
                        .get_or_load_borrowed(
                            "k",
                            |_ctx| {
                                runs.fetch_add(1, Ordering::SeqCst);
                                // Held until every other caller has joined.
                                released.lock().unwrap().recv().unwrap();
                                Ok::<_, std::io::Error>(Some(7_u32))
                            },
                            &EntryOptions::new(),
                        )
                        .unwrap()
                })
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        while cache.stats().coalesced < 7 {
            assert!(Instant::now() < deadline, "the callers never joined");
            thread::sleep(Duration::from_millis(5));
        }
        release.send(()).unwrap();
        callers.into_iter().map(|c| c.join().unwrap()).collect()
    });
    assert!(values.iter().all(|v| *v == Some(7)), "{values:?}");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}
