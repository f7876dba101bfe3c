//! The typed front end against hostile or unlucky conditions: loads whose
//! task never runs, forced hash collisions, an evicted key version, huge
//! declared LZ4 sizes and panicking loaders.
#![cfg(all(feature = "testing", feature = "memory"))]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use cachette::backends::memory::Policy;
use cachette::cache::{Cache, Clock, EntryOptions};
use cachette::testing::FaultyBackend;
use cachette::{Backend, ErrorKind, MemoryBackend};

/// A wall clock that moves only when a test says so.
#[derive(Debug, Clone, Default)]
struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_unix_ms(&self) -> u64 {
        1_000_000_000_000 + self.0.load(Ordering::SeqCst)
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn value(answer: u32) -> Result<Option<u32>, std::io::Error> {
    Ok(Some(answer))
}

#[test]
fn a_refresh_dropped_with_its_runtime_before_it_ran_does_not_block_later_loads() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::default());
    let clock = ManualClock::default();
    let options = EntryOptions::new();
    let first = runtime();
    let cache = first.block_on(async {
        let cache = Cache::builder(backend)
            .clock(clock.clone())
            .default_ttl(Duration::from_secs(600))
            .soft_ttl(Duration::from_secs(10))
            .build()
            .await
            .unwrap();
        cache.set("k", &1_u32, &options).await.unwrap();
        clock.advance(Duration::from_secs(11));
        // A stale read: served at once, its refresh spawned but not run.
        let stale = cache.get_or_load("k", |_| value(2), &options).await;
        assert_eq!(stale.unwrap(), Some(1));
        cache
    });
    drop(first);

    let second = runtime();
    second.block_on(async {
        cache.delete("k").await.unwrap();
        let loaded = cache.get_or_load("k", |_| value(3), &options).await;
        assert_eq!(loaded.unwrap(), Some(3));
    });
}

/// A cache over a backend with short keys whose long keys all hash alike.
async fn colliding(backend: Arc<dyn Backend>) -> Cache {
    Cache::builder(backend)
        .key_hasher(|_| 7)
        .fail_safe(Duration::from_secs(3600))
        .build()
        .await
        .unwrap()
}

fn short_keys() -> Arc<MemoryBackend> {
    Arc::new(MemoryBackend::builder().max_key_len(100).build().unwrap())
}

#[tokio::test(start_paused = true)]
async fn colliding_hashed_keys_never_share_a_load() {
    let cache = colliding(short_keys()).await;
    let (first, second) = ("a".repeat(200), "b".repeat(200));
    let options = EntryOptions::new();
    let slow_first = cache.get_or_load(
        &first,
        |_| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            value(1).await
        },
        &options,
    );
    let fast_second = async {
        tokio::task::yield_now().await;
        cache.get_or_load(&second, |_| value(2), &options).await
    };
    let (one, two) = tokio::join!(slow_first, fast_second);
    assert_eq!(one.unwrap(), Some(1));
    assert_eq!(two.unwrap(), Some(2), "the second key got the first's load");
}

#[tokio::test]
async fn colliding_hashed_keys_never_share_a_fail_safe_copy() {
    let faulty = FaultyBackend::new(short_keys());
    let cache = colliding(faulty.clone()).await;
    let (first, second) = ("a".repeat(200), "b".repeat(200));
    let options = EntryOptions::new();
    let one = cache.get_or_load(&first, |_| value(1), &options).await;
    assert_eq!(one.unwrap(), Some(1));

    faulty.fail_with(Some(ErrorKind::Connection));
    let two = cache
        .get_or_load(
            &second,
            |_| async { Err::<Option<u32>, _>(std::io::Error::other("database down")) },
            &options,
        )
        .await;
    assert!(two.is_err(), "the second key got the first's copy: {two:?}");
}

#[tokio::test]
async fn an_evicted_key_version_does_not_bring_back_the_old_entries() {
    let backend = Arc::new(
        MemoryBackend::builder()
            .policy(Policy::Lru)
            .shards(1)
            .max_entries(4)
            .build()
            .unwrap(),
    );
    let options = EntryOptions::new();
    let old = Cache::builder(backend.clone()).build().await.unwrap();
    old.set("k", &"before the bump", &options).await.unwrap();
    assert_eq!(old.bump_version().await.unwrap(), 1);
    // The old entry is read again (by anyone), then new writes evict the
    // least recently used key: the version counter.
    assert!(backend.get("cachette:v0:k").await.unwrap().is_some());
    let mut written = 0;
    while backend.exists("cachette:__version").await.unwrap() {
        assert!(written < 10, "the version key was never evicted");
        old.set(&format!("x{written}"), &"after the bump", &options)
            .await
            .unwrap();
        written += 1;
    }

    let new = Cache::builder(backend.clone()).build().await.unwrap();
    assert!(new.version() >= 1, "a new process started at version 0");
    assert_eq!(new.get::<String>("k").await.unwrap(), None);

    // A running process that has seen the version restores the counter.
    backend.delete("cachette:__version").await.unwrap();
    assert_eq!(old.refresh_version().await.unwrap(), 1);
    let counter = backend.get("cachette:__version").await.unwrap();
    assert_eq!(counter.as_deref(), Some(&b"1"[..]));
}

/// A cache that compresses values of 1 KiB and more, with the default
/// decompression bound or `max`.
#[cfg(feature = "lz4")]
async fn compressing(backend: &Arc<dyn Backend>, max: Option<usize>) -> Cache {
    let builder = Cache::builder(backend.clone()).compress_above(1024);
    let builder = match max {
        Some(max) => builder.max_decompressed_size(max),
        None => builder,
    };
    builder.build().await.unwrap()
}

#[cfg(feature = "lz4")]
#[tokio::test]
async fn a_value_declaring_more_than_the_decompression_bound_is_a_corrupt_miss() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::default());
    let writer = compressing(&backend, None).await;
    let huge = Bytes::from(vec![0_u8; 65 << 20]);
    writer
        .set_bytes("huge", huge, &EntryOptions::new())
        .await
        .unwrap();
    let stored = backend.get("cachette:v0:huge").await.unwrap().unwrap();
    assert!(stored.len() < 1 << 20, "the value is stored compressed");

    let reader = compressing(&backend, None).await;
    assert!(reader.get_bytes("huge").await.unwrap().is_none());
    assert_eq!(reader.stats().corrupt, 1);
}

#[cfg(feature = "lz4")]
#[tokio::test]
async fn the_decompression_bound_is_a_builder_option() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::default());
    let writer = compressing(&backend, None).await;
    let small = compressing(&backend, Some(1 << 20)).await;
    let body = Bytes::from(vec![0_u8; 2 << 20]);
    small
        .set_bytes("two", body.clone(), &EntryOptions::new())
        .await
        .unwrap();
    assert!(small.get_bytes("two").await.unwrap().is_none());
    assert_eq!(small.stats().corrupt, 1);
    assert!(writer.get_bytes("two").await.unwrap() == Some(body));
}

#[tokio::test]
async fn a_panicking_loader_error_keeps_the_panic_message() {
    let cache = Cache::builder(Arc::new(MemoryBackend::default()))
        .build()
        .await
        .unwrap();
    let options = EntryOptions::new();
    let literal = cache
        .get_or_load(
            "a",
            |_| async {
                if true {
                    panic!("the database handle is gone");
                }
                value(1).await
            },
            &options,
        )
        .await
        .unwrap_err();
    assert!(
        literal.to_string().contains("the database handle is gone"),
        "{literal}"
    );
    let formatted = cache
        .get_or_load(
            "b",
            |_| async {
                if true {
                    panic!("row {} is missing", 42);
                }
                value(1).await
            },
            &options,
        )
        .await
        .unwrap_err();
    assert!(
        formatted.to_string().contains("row 42 is missing"),
        "{formatted}"
    );
    assert_eq!(cache.stats().load_errors, 2);
}

#[tokio::test]
async fn a_failing_loader_of_a_long_key_names_the_key_cut_short() {
    let cache = Cache::builder(Arc::new(MemoryBackend::default()))
        .build()
        .await
        .unwrap();
    let key = "k".repeat(5_000);
    let error = cache
        .get_or_load(
            &key,
            |_| async { Err::<Option<u64>, _>(std::io::Error::other("the database is down")) },
            &EntryOptions::new(),
        )
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(message.contains("the database is down"), "{message}");
    assert!(message.contains("kkkk"), "{message}");
    assert!(message.len() < 500, "{} bytes: {message}", message.len());
}
