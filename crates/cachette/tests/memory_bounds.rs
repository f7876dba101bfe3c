//! The memory engine's bounds and option limits under extreme settings:
//! more shards than entries, huge durations, over-long keys.
#![cfg(feature = "memory")]

use std::sync::Arc;
use std::time::Duration;

use cachette::cache::Cache;

use cachette::{Backend, ErrorKind, Expiry, KeyTtl, MemoryBackend, SetOptions};
use proptest::prelude::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime")
}

fn entries(cache: &MemoryBackend) -> u64 {
    runtime()
        .block_on(cache.stats())
        .expect("stats of a memory backend")
        .entries
}

#[test]
fn more_shards_than_entries_never_exceed_max_entries() {
    let cache = MemoryBackend::builder()
        .max_entries(10)
        .shards(64)
        .build()
        .expect("builds");
    for i in 0..1_000 {
        cache
            .set_sync(&format!("k{i}"), "v".into(), &SetOptions::new())
            .expect("set");
    }
    assert!(entries(&cache) <= 10, "holds {}", entries(&cache));
}

#[test]
fn more_shards_than_a_small_byte_bound_allows_still_store_entries() {
    let cache = MemoryBackend::builder()
        .max_bytes(4_096)
        .shards(1024)
        .build()
        .expect("builds");
    cache
        .set_sync("key", "a small value".into(), &SetOptions::new())
        .expect("an entry far below max_bytes fits");
    for i in 0..1_000 {
        cache
            .set_sync(&format!("k{i}"), "v".into(), &SetOptions::new())
            .expect("set");
    }
    let stats = runtime().block_on(cache.stats()).expect("stats");
    assert!(stats.bytes <= 4_096, "weighs {}", stats.bytes);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn len_never_exceeds_max_entries_for_any_shard_count(
        max_entries in 1u64..200,
        shard_power in 0u32..=10,
        keys in proptest::collection::vec(0u32..2_000, 0..600),
    ) {
        let cache = MemoryBackend::builder()
            .max_entries(max_entries)
            .shards(1 << shard_power)
            .build()
            .expect("builds");
        for key in keys {
            cache.set_sync(&format!("k{key}"), "v".into(), &SetOptions::new()).expect("set");
        }
        let held = entries(&cache);
        prop_assert!(held <= max_entries, "holds {held} of {max_entries}");
    }
}

#[test]
fn a_default_ttl_of_duration_max_saturates() {
    let cache = MemoryBackend::builder()
        .default_ttl(Duration::MAX)
        .build()
        .expect("a huge default_ttl builds");
    cache
        .set_sync("k", "v".into(), &SetOptions::new())
        .expect("a write with the default TTL");
    assert_eq!(
        cache.get_sync("k").expect("get").as_deref(),
        Some(&b"v"[..])
    );
    let ttl = runtime().block_on(cache.ttl("k")).expect("ttl");
    assert!(
        matches!(ttl, KeyTtl::ExpiresIn(left) if left > Duration::from_secs(100 * 365 * 86_400)),
        "{ttl:?}"
    );
    let explicit = cache.set_sync(
        "e",
        "v".into(),
        &SetOptions::new().expiry(Expiry::After(Duration::MAX)),
    );
    if let Err(error) = explicit {
        assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
    }
}

#[test]
fn a_purge_interval_of_duration_max_builds_inside_a_runtime() {
    runtime().block_on(async {
        let cache = MemoryBackend::builder()
            .purge_interval(Duration::MAX)
            .default_ttl(Duration::MAX)
            .build()
            .expect("a huge purge_interval builds");
        cache
            .set("k", "v".into(), &SetOptions::new())
            .await
            .expect("set");
        // Let the purge task run its first ticks.
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(cache.exists("k").await.expect("exists"));
    });
}

#[test]
fn an_over_long_key_is_cut_in_the_error_message() {
    let cache = MemoryBackend::default();
    let key = "x".repeat(5_000);
    let error = cache
        .get_sync(&key)
        .expect_err("a 5000-byte key is refused");
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    let message = error.to_string();
    assert!(message.len() < 300, "{} bytes: {message}", message.len());
    assert!(message.contains("5000 bytes"), "{message}");
    assert!(
        message.contains(&"x".repeat(32)),
        "the key's start is shown: {message}"
    );
}

#[test]
fn an_over_long_counter_key_is_cut_in_the_error_message() {
    runtime().block_on(async {
        let cache = Cache::builder(Arc::new(MemoryBackend::default()))
            .build()
            .await
            .expect("a cache builds");
        let key = "x".repeat(5_000);
        let error = cache
            .incr(&key, 1, Expiry::Never)
            .await
            .expect_err("a counter key that must be hashed is refused");
        let message = error.to_string();
        assert!(message.len() < 600, "{} bytes: {message}", message.len());
        assert!(message.contains("5000 bytes"), "{message}");
    });
}
