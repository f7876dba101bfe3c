//! Every backend, layer and the typed cache called from a plain thread,
//! outside any tokio runtime: the local backends work, and whatever needs
//! tokio (a connection, a timer, a background task) answers
//! [`ErrorKind::Unsupported`] naming tokio. Nothing panics.
#![cfg(all(feature = "memory", feature = "testing"))]

#[path = "support/block_on.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cachette::layers::{CircuitBreakerLayer, LayerStack, RetryLayer, TimeoutLayer};
use cachette::testing::FaultyBackend;
use cachette::{Backend, Cache, EntryOptions, ErrorKind, Expiry, KeyTtl, SetOptions};
use futures_util::TryStreamExt;
use support::block_on;

/// The error is `Unsupported` and says that tokio is needed.
fn assert_needs_tokio<T: std::fmt::Debug>(result: cachette::Result<T>, what: &str) {
    let error = result.expect_err(what);
    assert_eq!(error.kind(), ErrorKind::Unsupported, "{what}: {error}");
    assert!(error.to_string().contains("tokio"), "{what}: {error}");
}

/// Every operation of `backend`, checked for its answer.
async fn works(backend: &dyn Backend) {
    let name = backend.name();
    let ttl = SetOptions::new().ttl(Duration::from_secs(60));
    assert!(backend.set("a", Bytes::from("1"), &ttl).await.unwrap());
    assert_eq!(backend.get("a").await.unwrap(), Some(Bytes::from("1")));
    assert!(matches!(
        backend.ttl("a").await.unwrap(),
        KeyTtl::ExpiresIn(_)
    ));
    assert_eq!(
        backend.incr("n", 5, Expiry::Never).await.unwrap(),
        5,
        "{name}"
    );
    let mut keys: Vec<String> = backend
        .keys("*")
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    keys.sort();
    assert_eq!(keys, ["a", "n"], "{name}");
    assert!(backend.delete("a").await.unwrap());
    backend.health().await.unwrap();
    backend.clear().await.unwrap();
    assert_eq!(backend.get("n").await.unwrap(), None, "{name}");
}

#[test]
fn local_backends_work_from_a_plain_thread() {
    let dir = cachette::testing::servers::fresh_dir();
    let mut urls = vec!["memory://".to_owned()];
    if cfg!(feature = "file") {
        urls.push(format!("file://{}", dir.join("files").display()));
    }
    if cfg!(feature = "redb") {
        urls.push(format!("redb://{}", dir.join("cache.redb").display()));
    }
    for url in urls {
        let backend = block_on(cachette::open(&url)).unwrap_or_else(|e| panic!("{url}: {e}"));
        block_on(works(&*backend));
    }
}

#[test]
fn the_typed_cache_reads_and_writes_but_loads_need_tokio() {
    let backend: Arc<dyn Backend> = Arc::new(cachette::MemoryBackend::default());
    let cache: Cache = block_on(Cache::builder(backend).build()).unwrap();
    let options = EntryOptions::new().ttl(Duration::from_secs(60));
    block_on(cache.set("k", &7_u32, &options)).unwrap();
    assert_eq!(block_on(cache.get::<u32>("k")).unwrap(), Some(7));
    let loaded = block_on(cache.get_or_load(
        "other",
        |_| async { Ok::<_, std::io::Error>(Some(1_u32)) },
        &options,
    ));
    assert_needs_tokio(loaded, "get_or_load");
}

#[test]
fn layers_without_tokio_timers_refuse_or_do_not_wait() {
    let memory: Arc<dyn Backend> = Arc::new(cachette::MemoryBackend::default());
    let timed = LayerStack::new(Arc::clone(&memory))
        .timeout(TimeoutLayer::new().all(Duration::from_secs(1)).unwrap())
        .build()
        .unwrap();
    assert_needs_tokio(block_on(timed.get("k")), "a timeout layer's get");
    assert_needs_tokio(
        block_on(timed.keys("*")).map(|_| ()),
        "a timeout layer's keys",
    );

    // The retry layer answers the first failure rather than wait.
    let faulty = FaultyBackend::new(Arc::clone(&memory));
    faulty.fail_next(2, ErrorKind::Connection);
    let retried = LayerStack::new(faulty.clone())
        .retry(RetryLayer::new().max_attempts(3).unwrap())
        .circuit_breaker(CircuitBreakerLayer::new())
        .build()
        .unwrap();
    let error = block_on(retried.get("k")).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Connection, "{error}");
    assert_eq!(faulty.calls_of("get"), 1);
    assert_eq!(
        block_on(retried.get("k")).unwrap_err().kind(),
        ErrorKind::Connection
    );
    assert_eq!(block_on(retried.get("k")).unwrap(), None);
}

#[cfg(feature = "redis")]
#[test]
fn backends_that_connect_or_run_tasks_need_tokio() {
    // Refused before any connection is tried: nothing listens on port 1.
    for url in [
        "redis://127.0.0.1:1",
        "redis+cluster://127.0.0.1:1",
        "redis+sentinel://127.0.0.1:1/mymaster",
        #[cfg(feature = "near")]
        "near+redis://127.0.0.1:1",
    ] {
        assert_needs_tokio(block_on(cachette::open(url)).map(|_| ()), url);
    }
}

#[cfg(all(feature = "tiered", feature = "redis"))]
#[test]
fn a_tiered_backend_works_and_its_channel_needs_tokio() {
    use cachette::backends::tiered::{InvalidationChannel, TieredBackend};
    let memory = || -> Arc<dyn Backend> { Arc::new(cachette::MemoryBackend::default()) };
    let tiered = block_on(TieredBackend::builder(memory(), memory()).build()).unwrap();
    block_on(works(&tiered));
    let channel = InvalidationChannel::new("127.0.0.1", 1, "changes");
    let built = TieredBackend::builder(memory(), memory()).invalidation_channel(channel);
    assert_needs_tokio(block_on(built.build()).map(|_| ()), "a tiered channel");
}
