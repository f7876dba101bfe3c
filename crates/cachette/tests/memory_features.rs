//! The memory engine's removal listener, custom weigher and time-to-idle.
//! Tests that need time run on tokio's paused clock, which the engine's
//! deadlines follow.
#![cfg(feature = "memory")]

use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use cachette::{
    Backend, ErrorKind, KeyTtl, MemoryBackend, MemoryBuilder, Policy, RemovalCause, SetOptions,
};

/// What a listener saw: key, value and cause, in order.
type Seen = Arc<Mutex<Vec<(String, Bytes, RemovalCause)>>>;

/// A builder whose listener records every removal, in one shard (so that
/// bounds are exact) with FIFO order (so that the victim is known).
fn recorded() -> (MemoryBuilder, Seen) {
    let seen: Seen = Arc::default();
    let log = Arc::clone(&seen);
    let builder = MemoryBackend::builder()
        .shards(1)
        .policy(Policy::Fifo)
        .removal_listener(move |key, value, cause| {
            log.lock().unwrap().push((key.to_owned(), value, cause));
        });
    (builder, seen)
}

/// The removals seen so far, as (key, value, cause) with text values.
fn seen(log: &Seen) -> Vec<(String, String, RemovalCause)> {
    log.lock()
        .unwrap()
        .iter()
        .map(|(key, value, cause)| {
            let value = String::from_utf8_lossy(value).into_owned();
            (key.clone(), value, *cause)
        })
        .collect()
}

fn removal(key: &str, value: &str, cause: RemovalCause) -> (String, String, RemovalCause) {
    (key.to_owned(), value.to_owned(), cause)
}

fn set(cache: &MemoryBackend, key: &str, value: &str) {
    let stored = cache.set_sync(
        key,
        Bytes::copy_from_slice(value.as_bytes()),
        &SetOptions::new(),
    );
    assert!(stored.unwrap(), "{key} was not stored");
}

fn ttl(cache: &MemoryBackend, key: &str, value: &str, ttl: Duration) {
    let options = SetOptions::new().ttl(ttl);
    let stored = cache.set_sync(key, Bytes::copy_from_slice(value.as_bytes()), &options);
    assert!(stored.unwrap(), "{key} was not stored");
}

/// Runs `work` on its own thread and returns its result, or `None` if it
/// has not finished within a minute (a deadlock: it takes microseconds).
fn unless_deadlocked<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || done.send(work()));
    finished.recv_timeout(Duration::from_secs(60)).ok()
}

// --- removal listener ------------------------------------------------------

#[test]
fn an_entry_evicted_by_max_entries_is_reported_once_as_evicted() {
    let (builder, log) = recorded();
    let cache = builder.max_entries(2).build().unwrap();
    set(&cache, "a", "1");
    set(&cache, "b", "2");
    assert!(seen(&log).is_empty());
    set(&cache, "c", "3");
    assert_eq!(seen(&log), [removal("a", "1", RemovalCause::Evicted)]);
    assert_eq!(cache.get_sync("a").unwrap(), None);
}

#[test]
fn a_write_over_a_live_entry_reports_the_old_value_as_replaced() {
    let (builder, log) = recorded();
    let cache = builder.build().unwrap();
    set(&cache, "k", "old");
    set(&cache, "k", "new");
    assert_eq!(seen(&log), [removal("k", "old", RemovalCause::Replaced)]);
    assert_eq!(cache.get_sync("k").unwrap().as_deref(), Some(&b"new"[..]));
}

#[test]
fn a_write_refused_by_its_condition_reports_nothing() {
    let (builder, log) = recorded();
    let cache = builder.build().unwrap();
    set(&cache, "k", "old");
    let options = SetOptions::new().if_absent();
    assert!(!cache.set_sync("k", "new".into(), &options).unwrap());
    assert!(seen(&log).is_empty());
}

#[test]
fn a_deleted_entry_is_reported_once_as_removed() {
    let (builder, log) = recorded();
    let cache = builder.build().unwrap();
    set(&cache, "k", "v");
    assert!(cache.delete_sync("k").unwrap());
    assert!(!cache.delete_sync("k").unwrap());
    assert_eq!(seen(&log), [removal("k", "v", RemovalCause::Removed)]);
}

#[tokio::test]
async fn entries_of_an_invalidated_tag_are_reported_as_invalidated() {
    let (builder, log) = recorded();
    let cache = builder.build().unwrap();
    let tagged = SetOptions::new().tags(["team:1"]);
    cache.set("a", "1".into(), &tagged).await.unwrap();
    cache
        .set("b", "2".into(), &SetOptions::new())
        .await
        .unwrap();
    assert_eq!(cache.invalidate_tags(&["team:1"]).await.unwrap(), 1);
    assert_eq!(cache.invalidate_tags(&["team:1"]).await.unwrap(), 0);
    assert_eq!(seen(&log), [removal("a", "1", RemovalCause::Invalidated)]);
}

#[tokio::test]
async fn clear_reports_every_entry_once_as_cleared() {
    let (builder, log) = recorded();
    let cache = builder.build().unwrap();
    set(&cache, "a", "1");
    set(&cache, "b", "2");
    cache.clear().await.unwrap();
    cache.clear().await.unwrap();
    let mut removed = seen(&log);
    removed.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        removed,
        [
            removal("a", "1", RemovalCause::Cleared),
            removal("b", "2", RemovalCause::Cleared),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn an_entry_past_its_ttl_is_reported_once_as_expired_when_read() {
    let (builder, log) = recorded();
    let cache = builder.build().unwrap();
    ttl(&cache, "k", "v", Duration::from_secs(1));
    tokio::time::advance(Duration::from_millis(900)).await;
    assert!(cache.get("k").await.unwrap().is_some());
    assert!(seen(&log).is_empty(), "reported before its deadline");
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(cache.get("k").await.unwrap(), None);
    assert_eq!(cache.purge_expired().await.unwrap(), 0);
    assert_eq!(seen(&log), [removal("k", "v", RemovalCause::Expired)]);
}

#[tokio::test(start_paused = true)]
async fn an_entry_past_its_ttl_is_reported_as_expired_by_the_purge_without_a_read() {
    let (builder, log) = recorded();
    // No background purge within the test: only `purge_expired` removes.
    let cache = builder
        .purge_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    ttl(&cache, "k", "v", Duration::from_secs(1));
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(seen(&log).is_empty(), "reported before removal");
    assert_eq!(cache.purge_expired().await.unwrap(), 1);
    assert_eq!(cache.purge_expired().await.unwrap(), 0);
    assert_eq!(seen(&log), [removal("k", "v", RemovalCause::Expired)]);
}

#[tokio::test(start_paused = true)]
async fn the_background_purge_reports_expired_entries_without_a_read() {
    let (builder, log) = recorded();
    let cache = builder
        .purge_interval(Duration::from_secs(1))
        .build()
        .unwrap();
    ttl(&cache, "k", "v", Duration::from_secs(1));
    // The paused clock moves on to each timer: the purge runs meanwhile.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(seen(&log), [removal("k", "v", RemovalCause::Expired)]);
    assert_eq!(cache.stats().await.unwrap().entries, 0);
}

#[tokio::test(start_paused = true)]
async fn an_idle_entry_is_reported_once_as_expired() {
    let (builder, log) = recorded();
    let cache = builder
        .time_to_idle(Duration::from_secs(10))
        .build()
        .unwrap();
    set(&cache, "k", "v");
    tokio::time::advance(Duration::from_secs(11)).await;
    assert_eq!(cache.get("k").await.unwrap(), None);
    assert_eq!(cache.purge_expired().await.unwrap(), 0);
    assert_eq!(seen(&log), [removal("k", "v", RemovalCause::Expired)]);
}

#[test]
fn a_listener_may_call_back_into_the_cache() {
    let cache = Arc::new(OnceLock::<MemoryBackend>::new());
    let handle = Arc::clone(&cache);
    let built = MemoryBackend::builder()
        .shards(1)
        .max_entries(2)
        .policy(Policy::Fifo)
        .removal_listener(move |key, value, cause| {
            // Same shard, same lock: this deadlocks if the listener runs
            // under the lock. The write evicts too, calling the listener
            // again (once: primed keys are not written again).
            if let Some(cache) = handle.get()
                && cause == RemovalCause::Evicted
                && !key.ends_with('\'')
            {
                let _ = cache.get_sync(key);
                let _ = cache.set_sync(&format!("{key}'"), value, &SetOptions::new());
            }
        })
        .build()
        .unwrap();
    cache.set(built.clone()).unwrap();
    let finished = unless_deadlocked(move || {
        for key in ["a", "b", "c", "d"] {
            set(&built, key, "v");
        }
    });
    assert!(
        finished.is_some(),
        "a listener calling the cache deadlocked"
    );
}

#[tokio::test]
async fn a_panicking_listener_loses_no_entry_and_stops_no_report() {
    let calls = Arc::new(Mutex::new(0));
    let counted = Arc::clone(&calls);
    let cache = MemoryBackend::builder()
        .shards(1)
        .removal_listener(move |key, _value, _cause| {
            *counted.lock().unwrap() += 1;
            panic!("listener failed on {key}");
        })
        .build()
        .unwrap();
    set(&cache, "a", "1");
    set(&cache, "b", "2");
    assert!(cache.delete_sync("a").unwrap());
    assert_eq!(cache.get_sync("a").unwrap(), None);
    set(&cache, "b", "3");
    assert_eq!(cache.get_sync("b").unwrap().as_deref(), Some(&b"3"[..]));
    set(&cache, "c", "4");
    cache.clear().await.unwrap();
    // delete, replace, then both entries of the clear.
    assert_eq!(*calls.lock().unwrap(), 4);
    let stats = cache.stats().await.unwrap();
    assert_eq!(stats.entries, 0);
    set(&cache, "d", "5");
    assert!(cache.get_sync("d").unwrap().is_some());
}

#[tokio::test]
async fn a_typed_cache_over_the_engine_reports_its_stored_keys() {
    let (builder, log) = recorded();
    let backend = builder.build().unwrap();
    let users = cachette::cache::Cache::builder(Arc::new(backend))
        .namespace("users")
        .build()
        .await
        .unwrap();
    let options = cachette::EntryOptions::new();
    users.set("42", "Ada", &options).await.unwrap();
    users.set("42", "Grace", &options).await.unwrap();
    assert!(users.delete("42").await.unwrap());
    let removed: Vec<(String, RemovalCause)> = seen(&log)
        .into_iter()
        .map(|(key, _, cause)| (key, cause))
        .collect();
    assert_eq!(
        removed,
        [
            ("users:v0:42".to_owned(), RemovalCause::Replaced),
            ("users:v0:42".to_owned(), RemovalCause::Removed),
        ]
    );
}

// --- custom weigher --------------------------------------------------------

fn by_value_length() -> MemoryBuilder {
    MemoryBackend::builder()
        .shards(1)
        .policy(Policy::Fifo)
        .weigher(|_key, value| value.len() as u64)
}

#[tokio::test]
async fn a_weigher_bounds_the_store_by_its_weights() {
    let cache = by_value_length().max_bytes(100).build().unwrap();
    for i in 0..10 {
        let key = format!("k{i}");
        cache
            .set(&key, vec![b'x'; 30].into(), &SetOptions::new())
            .await
            .unwrap();
    }
    let stats = cache.stats().await.unwrap();
    assert_eq!((stats.entries, stats.bytes), (3, 90));
    assert_eq!(stats.evictions, 7);
    // Long keys weigh nothing to this weigher: the default weight would
    // have kept no 30-byte value with a 60-byte key in 100 bytes.
    let long_key = "k".repeat(60);
    cache
        .set(&long_key, vec![b'x'; 30].into(), &SetOptions::new())
        .await
        .unwrap();
    assert!(cache.get(&long_key).await.unwrap().is_some());
}

#[tokio::test]
async fn an_entry_heavier_than_the_bound_is_refused_naming_the_weigher() {
    let cache = by_value_length().max_bytes(100).build().unwrap();
    let error = cache
        .set("k", vec![b'x'; 101].into(), &SetOptions::new())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    assert!(error.message().contains("custom weigher"), "{error}");
    assert!(error.message().contains("101"), "{error}");
    assert_eq!(cache.stats().await.unwrap().entries, 0);
}

#[tokio::test]
async fn a_weigher_lifts_the_value_length_limit_of_the_byte_bound() {
    // By the default weight, a 1 MiB value cannot fit in 4 KiB.
    let cache = MemoryBackend::builder()
        .shards(1)
        .max_bytes(4096)
        .weigher(|_key, _value| 1)
        .build()
        .unwrap();
    assert_eq!(cache.capabilities().max_value_len, None);
    let big = Bytes::from(vec![0u8; 1 << 20]);
    assert!(cache.set("big", big, &SetOptions::new()).await.unwrap());
    assert_eq!(cache.stats().await.unwrap().bytes, 1);
}

#[tokio::test]
async fn huge_weights_saturate_instead_of_overflowing() {
    let cache = MemoryBackend::builder()
        .shards(1)
        .weigher(|_key, _value| u64::MAX)
        .build()
        .unwrap();
    for key in ["a", "b", "c"] {
        set(&cache, key, "v");
    }
    let stats = cache.stats().await.unwrap();
    assert_eq!((stats.entries, stats.bytes), (3, u64::MAX));
    assert!(cache.delete_sync("a").unwrap());
    assert!(cache.delete_sync("b").unwrap());
    assert_eq!(cache.stats().await.unwrap().bytes, u64::MAX);
    assert!(cache.delete_sync("c").unwrap());
    assert_eq!(cache.stats().await.unwrap().bytes, 0);
}

#[tokio::test]
async fn counters_are_weighed_by_the_weigher() {
    let cache = by_value_length().max_bytes(100).build().unwrap();
    cache
        .incr("n", 12345, cachette::Expiry::Never)
        .await
        .unwrap();
    assert_eq!(cache.stats().await.unwrap().bytes, 5);
}

#[test]
fn concurrent_increments_with_a_weigher_lose_no_update() {
    let cache = by_value_length().max_bytes(1 << 20).build().unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let cache = cache.clone();
            std::thread::spawn(move || {
                for _ in 0..500 {
                    cache.incr_sync("n", 1, cachette::Expiry::Never).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(cache.get_sync("n").unwrap().as_deref(), Some(&b"2000"[..]));
}

#[test]
fn a_weigher_may_call_back_into_the_cache() {
    let cache = Arc::new(OnceLock::<MemoryBackend>::new());
    let handle = Arc::clone(&cache);
    let built = MemoryBackend::builder()
        .shards(1)
        .max_bytes(1 << 20)
        .weigher(move |key, value| {
            // Same shard, same lock: this deadlocks under the lock.
            if let Some(cache) = handle.get() {
                let _ = cache.get_sync(key);
            }
            value.len() as u64
        })
        .build()
        .unwrap();
    cache.set(built.clone()).unwrap();
    let counted = unless_deadlocked(move || {
        set(&built, "k", "v");
        built.incr_sync("n", 5, cachette::Expiry::Never).unwrap()
    });
    assert_eq!(counted, Some(5), "a weigher calling the cache deadlocked");
}

// --- time-to-idle ----------------------------------------------------------

fn idle_after_10s() -> MemoryBackend {
    MemoryBackend::builder()
        .shards(1)
        .time_to_idle(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn reads_keep_an_entry_alive_past_its_time_to_idle() {
    let cache = idle_after_10s();
    set(&cache, "read", "v");
    set(&cache, "idle", "v");
    for _ in 0..5 {
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(cache.get("read").await.unwrap().is_some());
    }
    // 30 s in: "read" was read every 6 s, "idle" never.
    assert!(cache.get("idle").await.unwrap().is_none());
    tokio::time::advance(Duration::from_secs(11)).await;
    assert!(cache.get("read").await.unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn the_purge_removes_idle_entries_and_keeps_read_ones() {
    let cache = MemoryBackend::builder()
        .shards(1)
        .time_to_idle(Duration::from_secs(10))
        .purge_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    set(&cache, "read", "v");
    set(&cache, "idle", "v");
    tokio::time::advance(Duration::from_secs(6)).await;
    assert!(cache.get_sync("read").unwrap().is_some());
    tokio::time::advance(Duration::from_secs(6)).await;
    assert_eq!(cache.purge_expired().await.unwrap(), 1);
    assert_eq!(cache.stats().await.unwrap().entries, 1);
    assert!(cache.exists("read").await.unwrap());
    tokio::time::advance(Duration::from_secs(6)).await;
    assert_eq!(cache.purge_expired().await.unwrap(), 1);
    assert_eq!(cache.stats().await.unwrap().entries, 0);
}

#[tokio::test(start_paused = true)]
async fn writes_restart_the_idle_time_and_exists_does_not() {
    let cache = idle_after_10s();
    set(&cache, "k", "v");
    tokio::time::advance(Duration::from_secs(8)).await;
    set(&cache, "k", "v2");
    tokio::time::advance(Duration::from_secs(8)).await;
    assert!(cache.exists("k").await.unwrap());
    tokio::time::advance(Duration::from_secs(3)).await;
    assert!(!cache.exists("k").await.unwrap());
    assert!(cache.get("k").await.unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn the_ttl_still_applies_to_an_entry_read_often() {
    let cache = idle_after_10s();
    ttl(&cache, "k", "v", Duration::from_secs(15));
    for _ in 0..2 {
        tokio::time::advance(Duration::from_secs(7)).await;
        assert!(cache.get("k").await.unwrap().is_some());
    }
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(cache.get("k").await.unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn ttl_reports_the_earlier_of_the_ttl_and_the_idle_time() {
    let cache = idle_after_10s();
    set(&cache, "persistent", "v");
    ttl(&cache, "short", "v", Duration::from_secs(4));
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(
        cache.ttl("persistent").await.unwrap(),
        KeyTtl::ExpiresIn(Duration::from_secs(8))
    );
    assert_eq!(
        cache.ttl("short").await.unwrap(),
        KeyTtl::ExpiresIn(Duration::from_secs(2))
    );
}

#[test]
fn a_zero_time_to_idle_is_refused() {
    let error = MemoryBackend::builder()
        .time_to_idle(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.message().contains("time_to_idle"), "{error}");
}

#[tokio::test(start_paused = true)]
async fn the_time_to_idle_url_parameter_sets_the_time_to_idle() {
    let cache = cachette::open("memory://?time_to_idle=30s").await.unwrap();
    cache
        .set("k", "v".into(), &SetOptions::new())
        .await
        .unwrap();
    assert_eq!(
        cache.ttl("k").await.unwrap(),
        KeyTtl::ExpiresIn(Duration::from_secs(30))
    );
    tokio::time::advance(Duration::from_secs(31)).await;
    assert!(cache.get("k").await.unwrap().is_none());
}

#[tokio::test]
async fn a_bad_time_to_idle_url_parameter_is_a_config_error_naming_it() {
    for url in ["memory://?time_to_idle=soon", "memory://?time_to_idle=0s"] {
        let error = cachette::open(url).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config, "{url}");
        assert!(error.message().contains("time_to_idle"), "{url}: {error}");
    }
}
