//! Tests of the memory engine's own rules; the shared behaviour is checked
//! by the conformance suite in `tests/conformance_memory.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use proptest::prelude::*;

use super::{MemoryBackend, Policy, RemovalCause};
use crate::{Backend, ErrorKind, Expiry, KeyTtl, SetOptions};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime")
}

async fn all_keys(cache: &MemoryBackend) -> BTreeSet<String> {
    let stream = cache.keys("*").await.expect("keys");
    stream.map(|k| k.expect("key")).collect().await
}

#[test]
fn builder_rejects_zero_capacity_and_zero_ttl() {
    for (builder, needle) in [
        (MemoryBackend::builder().max_entries(0), "max_entries"),
        (MemoryBackend::builder().max_bytes(0), "max_bytes"),
        (
            MemoryBackend::builder().default_ttl(Duration::ZERO),
            "default_ttl",
        ),
        (MemoryBackend::builder().shards(3), "shards"),
    ] {
        let err = builder.build().expect_err(needle);
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.to_string().contains(needle), "{err}");
    }
}

#[test]
fn overwriting_in_a_full_cache_evicts_nothing() {
    for policy in Policy::ALL {
        let cache = MemoryBackend::builder()
            .max_entries(4)
            .policy(policy)
            .build()
            .unwrap();
        for i in 0..4 {
            cache
                .set_sync(
                    &format!("k{i}"),
                    Bytes::from(vec![b'x'; 10]),
                    &SetOptions::new(),
                )
                .unwrap();
        }
        for round in 0..20u8 {
            cache
                .set_sync("k2", Bytes::from(vec![round; 10]), &SetOptions::new())
                .unwrap();
        }
        for i in 0..4 {
            assert!(
                cache.get_sync(&format!("k{i}")).unwrap().is_some(),
                "{policy}: k{i} was evicted"
            );
        }
        cache.check_invariants();
    }
}

#[test]
fn byte_bound_overwrite_with_same_weight_evicts_nothing() {
    let entry = MemoryBackend::ENTRY_OVERHEAD + 2 + 100;
    for policy in Policy::ALL {
        let cache = MemoryBackend::builder()
            .max_bytes(entry * 5)
            .policy(policy)
            .build()
            .unwrap();
        for i in 0..5 {
            cache
                .set_sync(
                    &format!("k{i}"),
                    Bytes::from(vec![0; 100]),
                    &SetOptions::new(),
                )
                .unwrap();
        }
        cache
            .set_sync("k0", Bytes::from(vec![1; 100]), &SetOptions::new())
            .unwrap();
        cache
            .set_sync("k3", Bytes::from(vec![1; 40]), &SetOptions::new())
            .unwrap();
        for i in 0..5 {
            assert!(
                cache.get_sync(&format!("k{i}")).unwrap().is_some(),
                "{policy}: k{i} evicted"
            );
        }
        // A heavier value makes room for the difference, never by evicting itself.
        cache
            .set_sync("k1", Bytes::from(vec![2; 150]), &SetOptions::new())
            .unwrap();
        assert_eq!(cache.get_sync("k1").unwrap().unwrap().len(), 150);
        cache.check_invariants();
    }
}

#[test]
fn a_value_over_the_limit_is_rejected_naming_the_limit() {
    let cache = MemoryBackend::builder().max_bytes(1000).build().unwrap();
    let caps = cache.capabilities();
    let limit = caps.max_value_len.unwrap();
    assert_eq!(caps.max_key_len, 250, "a quarter of the shard");
    assert_eq!(limit, 1000 - 128 - 250);
    let err = cache
        .set_sync("k", Bytes::from(vec![0; limit + 1]), &SetOptions::new())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains(&limit.to_string()), "{err}");
    // The longest key with the longest value fits.
    let longest_key = "k".repeat(caps.max_key_len);
    let value = Bytes::from(vec![0; limit]);
    assert!(
        cache
            .set_sync(&longest_key, value, &SetOptions::new())
            .unwrap()
    );
}

#[test]
fn tags_stay_exact_through_eviction_and_expiry() {
    runtime().block_on(async {
        let cache = MemoryBackend::builder()
            .max_entries(3)
            .shards(1)
            .build()
            .unwrap();
        let tagged = SetOptions::new().tags(["t"]);
        for i in 0..10 {
            cache
                .set(&format!("k{i}"), "v".into(), &tagged)
                .await
                .unwrap();
        }
        let index = cache.tag_index();
        assert_eq!(index.len(), 1);
        assert_eq!(
            index[0].1.len(),
            3,
            "evicted entries must leave the tag index"
        );
        cache.clear().await.unwrap();
        assert!(cache.tag_index().is_empty());

        let short = SetOptions::new()
            .ttl(Duration::from_millis(100))
            .tags(["u"]);
        cache.set("a", "v".into(), &short).await.unwrap();
        tokio::time::advance(Duration::from_millis(150)).await;
        assert_eq!(cache.purge_expired().await.unwrap(), 1);
        assert!(
            cache.tag_index().is_empty(),
            "expired entries must leave the tag index"
        );
        cache.check_invariants();
    });
}

#[test]
fn expired_entries_are_removed_in_the_background() {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(async {
            let cache = MemoryBackend::builder()
                .purge_interval(Duration::from_millis(50))
                .build()
                .unwrap();
            let options = SetOptions::new().ttl(Duration::from_millis(100));
            for i in 0..1000 {
                cache
                    .set(&format!("k{i}"), "v".into(), &options)
                    .await
                    .unwrap();
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            let stats = cache.stats().await.unwrap();
            assert_eq!(stats.entries, 0);
            assert_eq!(stats.expirations, 1000);
        });
}

#[test]
fn incr_keeps_the_deadline_of_an_existing_counter() {
    runtime().block_on(async {
        let cache = MemoryBackend::default();
        cache
            .incr("c", 1, Expiry::After(Duration::from_secs(10)))
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(4)).await;
        cache
            .incr("c", 1, Expiry::After(Duration::from_secs(100)))
            .await
            .unwrap();
        match cache.ttl("c").await.unwrap() {
            KeyTtl::ExpiresIn(left) => assert_eq!(left, Duration::from_secs(6)),
            other => panic!("expected a deadline, got {other:?}"),
        }
    });
}

#[test]
fn lru_keeps_recently_read_entries() {
    let cache = MemoryBackend::builder()
        .max_entries(3)
        .shards(1)
        .policy(Policy::Lru)
        .build()
        .unwrap();
    for key in ["a", "b", "c"] {
        cache.set_sync(key, "v".into(), &SetOptions::new()).unwrap();
    }
    cache.get_sync("a").unwrap();
    cache.set_sync("d", "v".into(), &SetOptions::new()).unwrap();
    assert!(cache.get_sync("a").unwrap().is_some());
    assert!(cache.get_sync("b").unwrap().is_none());
}

#[test]
fn sieve_and_s3fifo_keep_a_visited_entry_over_a_new_one() {
    for policy in [Policy::Sieve, Policy::S3Fifo] {
        let cache = MemoryBackend::builder()
            .max_entries(10)
            .shards(1)
            .policy(policy)
            .build()
            .unwrap();
        cache
            .set_sync("hot", "v".into(), &SetOptions::new())
            .unwrap();
        for i in 0..30 {
            cache.get_sync("hot").unwrap();
            cache
                .set_sync(&format!("cold{i}"), "v".into(), &SetOptions::new())
                .unwrap();
        }
        assert!(
            cache.get_sync("hot").unwrap().is_some(),
            "{policy} evicted the hot entry"
        );
    }
}

// --- property tests -------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Get(u8),
    Set {
        key: u8,
        value: Vec<u8>,
        tags: Vec<u8>,
        condition: u8,
    },
    SetCounter(u8, i64),
    Delete(u8),
    Exists(u8),
    Incr(u8, i64),
    GetMany(Vec<u8>),
    DeleteMany(Vec<u8>),
    Invalidate(u8),
    Ttl(u8),
    Touch(u8, bool),
    Advance(u16),
    Clear,
}

fn op_strategy(with_clear: bool) -> impl Strategy<Value = Op> {
    let key = 0u8..12;
    let value = proptest::collection::vec(any::<u8>(), 0..24);
    let tags = proptest::collection::vec(0u8..4, 0..3);
    let delta = prop_oneof![-3i64..3, Just(i64::MAX), Just(i64::MIN)];
    prop_oneof![
        4 => key.clone().prop_map(Op::Get),
        4 => (key.clone(), value, tags, 0u8..3)
            .prop_map(|(key, value, tags, condition)| Op::Set { key, value, tags, condition }),
        1 => (key.clone(), -5i64..5).prop_map(|(k, v)| Op::SetCounter(k, v)),
        2 => key.clone().prop_map(Op::Delete),
        1 => key.clone().prop_map(Op::Exists),
        2 => (key.clone(), delta).prop_map(|(k, d)| Op::Incr(k, d)),
        1 => proptest::collection::vec(key.clone(), 0..5).prop_map(Op::GetMany),
        1 => proptest::collection::vec(key.clone(), 0..5).prop_map(Op::DeleteMany),
        1 => (0u8..4).prop_map(Op::Invalidate),
        1 => key.clone().prop_map(Op::Ttl),
        1 => (key, any::<bool>()).prop_map(|(k, ttl)| Op::Touch(k, ttl)),
        1 => (0u16..300).prop_map(Op::Advance),
        1 => Just(if with_clear { Op::Clear } else { Op::Get(0) }),
    ]
}

fn key_name(key: u8) -> String {
    format!("key:{key}")
}

fn tag_names(tags: &[u8]) -> Vec<String> {
    tags.iter().map(|t| format!("tag{t}")).collect()
}

/// A plain model: key → (value, tags). No TTLs: the model test only uses
/// `Advance` with entries that never expire, which must change nothing.
#[derive(Default)]
struct Model {
    entries: HashMap<String, (Bytes, BTreeSet<String>)>,
}

fn condition_of(code: u8) -> SetOptions {
    match code {
        1 => SetOptions::new().if_absent(),
        2 => SetOptions::new().if_present(),
        _ => SetOptions::new(),
    }
}

async fn run_against_model(policy: Policy, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let cache = MemoryBackend::builder()
        .policy(policy)
        .max_entries(10_000)
        .build()
        .unwrap();
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Get(k) => {
                let expected = model.entries.get(&key_name(k)).map(|(v, _)| v.clone());
                prop_assert_eq!(cache.get(&key_name(k)).await.unwrap(), expected);
            }
            Op::Set {
                key,
                value,
                tags,
                condition,
            } => {
                let key = key_name(key);
                let present = model.entries.contains_key(&key);
                let options = condition_of(condition).tags(tag_names(&tags));
                let should_write = match condition {
                    1 => !present,
                    2 => present,
                    _ => true,
                };
                let written = cache
                    .set(&key, Bytes::from(value.clone()), &options)
                    .await
                    .unwrap();
                prop_assert_eq!(written, should_write);
                if should_write {
                    let tags = tag_names(&tags).into_iter().collect();
                    model.entries.insert(key, (Bytes::from(value), tags));
                }
            }
            Op::SetCounter(k, v) => {
                let value = Bytes::from(v.to_string());
                cache
                    .set(&key_name(k), value.clone(), &SetOptions::new())
                    .await
                    .unwrap();
                model.entries.insert(key_name(k), (value, BTreeSet::new()));
            }
            Op::Delete(k) => {
                let existed = model.entries.remove(&key_name(k)).is_some();
                prop_assert_eq!(cache.delete(&key_name(k)).await.unwrap(), existed);
            }
            Op::Exists(k) => {
                let present = model.entries.contains_key(&key_name(k));
                prop_assert_eq!(cache.exists(&key_name(k)).await.unwrap(), present);
            }
            Op::Incr(k, delta) => {
                let key = key_name(k);
                let expected = match model.entries.get(&key) {
                    None => Ok(delta),
                    Some((value, _)) => match std::str::from_utf8(value)
                        .ok()
                        .filter(|s| !s.starts_with('+'))
                        .and_then(|s| s.parse::<i64>().ok())
                    {
                        None => Err(ErrorKind::NotAnInteger),
                        Some(current) => current.checked_add(delta).ok_or(ErrorKind::Overflow),
                    },
                };
                let got = cache
                    .incr(&key, delta, Expiry::Default)
                    .await
                    .map_err(|e| e.kind());
                prop_assert_eq!(got, expected);
                if let Ok(next) = expected {
                    let tags = model
                        .entries
                        .get(&key)
                        .map(|(_, t)| t.clone())
                        .unwrap_or_default();
                    model
                        .entries
                        .insert(key, (Bytes::from(next.to_string()), tags));
                }
            }
            Op::GetMany(keys) => {
                let names: Vec<String> = keys.iter().map(|&k| key_name(k)).collect();
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                let expected: Vec<Option<Bytes>> = names
                    .iter()
                    .map(|k| model.entries.get(k).map(|(v, _)| v.clone()))
                    .collect();
                prop_assert_eq!(cache.get_many(&refs).await.unwrap(), expected);
            }
            Op::DeleteMany(keys) => {
                let names: Vec<String> = keys.iter().map(|&k| key_name(k)).collect();
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                let removed = names
                    .iter()
                    .filter(|k| model.entries.remove(*k).is_some())
                    .count();
                prop_assert_eq!(cache.delete_many(&refs).await.unwrap(), removed as u64);
            }
            Op::Invalidate(t) => {
                let tag = format!("tag{t}");
                let before = model.entries.len();
                model.entries.retain(|_, (_, tags)| !tags.contains(&tag));
                let removed = (before - model.entries.len()) as u64;
                prop_assert_eq!(cache.invalidate_tags(&[&tag]).await.unwrap(), removed);
            }
            Op::Ttl(k) => {
                let expected = if model.entries.contains_key(&key_name(k)) {
                    KeyTtl::Persistent
                } else {
                    KeyTtl::Missing
                };
                prop_assert_eq!(cache.ttl(&key_name(k)).await.unwrap(), expected);
            }
            Op::Touch(k, _) => {
                let present = model.entries.contains_key(&key_name(k));
                prop_assert_eq!(
                    cache.touch(&key_name(k), Expiry::Never).await.unwrap(),
                    present
                );
            }
            Op::Advance(ms) => tokio::time::advance(Duration::from_millis(u64::from(ms))).await,
            Op::Clear => {
                cache.clear().await.unwrap();
                model.entries.clear();
            }
        }
    }
    let expected: BTreeSet<String> = model.entries.keys().cloned().collect();
    prop_assert_eq!(all_keys(&cache).await, expected);
    cache.check_invariants();
    Ok(())
}

/// Runs random operations on a small cache with TTLs (and perhaps a
/// time-to-idle and a custom weigher) and checks the invariants after every step: the bounds
/// hold, the tag index is exactly the tags of the live entries, the
/// counters add up, and the removal listener was told of exactly what the
/// counters counted.
async fn run_with_small_bounds(
    policy: Policy,
    max_entries: Option<u64>,
    max_bytes: Option<u64>,
    time_to_idle: Option<u64>,
    weighed: bool,
    ops: Vec<Op>,
) -> Result<(), TestCaseError> {
    let told: Arc<Mutex<HashMap<RemovalCause, u64>>> = Arc::default();
    let log = Arc::clone(&told);
    let mut builder = MemoryBackend::builder()
        .policy(policy)
        .shards(1)
        .removal_listener(move |_key, _value, cause| {
            *log.lock().unwrap().entry(cause).or_default() += 1;
        });
    if let Some(max) = max_entries {
        builder = builder.max_entries(max);
    }
    if let Some(max) = max_bytes {
        builder = builder.max_bytes(max);
    }
    if let Some(idle) = time_to_idle {
        builder = builder.time_to_idle(Duration::from_millis(idle));
    }
    if weighed {
        // Heavier than the default weight for values, so that the byte
        // bound still evicts; every generated entry fits in 200.
        builder = builder.weigher(|key, value| (key.len() + value.len() * 8) as u64);
    }
    let cache = builder.build().unwrap();
    // The tags each key was last written with.
    let mut written_tags: HashMap<String, BTreeSet<String>> = HashMap::new();
    let mut reads = 0u64;
    for op in ops {
        match op {
            Op::Get(k) => {
                reads += 1;
                cache.get(&key_name(k)).await.unwrap();
            }
            Op::GetMany(keys) => {
                reads += keys.len() as u64;
                let names: Vec<String> = keys.iter().map(|&k| key_name(k)).collect();
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                cache.get_many(&refs).await.unwrap();
            }
            Op::Set {
                key,
                value,
                tags,
                condition,
            } => {
                let ttl = if condition == 0 {
                    Expiry::Default
                } else {
                    Expiry::After(Duration::from_millis(u64::from(condition) * 100))
                };
                let options = SetOptions::new().tags(tag_names(&tags)).expiry(ttl);
                let limit = cache.capabilities().max_value_len.unwrap_or(usize::MAX);
                let too_long = value.len() > limit;
                match cache
                    .set(&key_name(key), Bytes::from(value), &options)
                    .await
                {
                    Ok(written) => {
                        prop_assert!(!too_long, "a value over {limit} bytes was accepted");
                        if written {
                            written_tags
                                .insert(key_name(key), tag_names(&tags).into_iter().collect());
                        }
                    }
                    Err(err) => {
                        prop_assert!(too_long, "unexpected error: {err}");
                        prop_assert_eq!(err.kind(), ErrorKind::InvalidInput);
                    }
                }
            }
            Op::SetCounter(k, v) => {
                cache
                    .set(&key_name(k), Bytes::from(v.to_string()), &SetOptions::new())
                    .await
                    .unwrap();
                written_tags.insert(key_name(k), BTreeSet::new());
            }
            Op::Delete(k) => {
                cache.delete(&key_name(k)).await.unwrap();
            }
            Op::Exists(k) => {
                cache.exists(&key_name(k)).await.unwrap();
            }
            Op::Incr(k, delta) => {
                let existed = cache.exists(&key_name(k)).await.unwrap();
                if cache
                    .incr(&key_name(k), delta, Expiry::Default)
                    .await
                    .is_ok()
                    && !existed
                {
                    written_tags.insert(key_name(k), BTreeSet::new());
                }
            }
            Op::DeleteMany(keys) => {
                let names: Vec<String> = keys.iter().map(|&k| key_name(k)).collect();
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                cache.delete_many(&refs).await.unwrap();
            }
            Op::Invalidate(t) => {
                cache.invalidate_tags(&[&format!("tag{t}")]).await.unwrap();
            }
            Op::Ttl(k) => {
                cache.ttl(&key_name(k)).await.unwrap();
            }
            Op::Touch(k, with_ttl) => {
                let expiry = if with_ttl {
                    Expiry::After(Duration::from_millis(150))
                } else {
                    Expiry::Never
                };
                cache.touch(&key_name(k), expiry).await.unwrap();
            }
            Op::Advance(ms) => {
                tokio::time::advance(Duration::from_millis(u64::from(ms))).await;
                if ms % 3 == 0 {
                    cache.purge_expired().await.unwrap();
                }
            }
            Op::Clear => unreachable!("not generated for this test"),
        }
        cache.check_invariants();
        let stats = cache.stats().await.unwrap();
        if let Some(max) = max_entries {
            prop_assert!(
                stats.entries <= max,
                "entries {} over bound {max}",
                stats.entries
            );
        }
        if let Some(max) = max_bytes {
            prop_assert!(stats.bytes <= max, "bytes {} over bound {max}", stats.bytes);
        }
        let removed = stats.deletes + stats.evictions + stats.expirations + stats.invalidations;
        prop_assert_eq!(
            stats.inserts,
            removed + stats.entries,
            "counters do not add up: {:?}",
            stats
        );
        prop_assert_eq!(stats.hits + stats.misses, reads);
        let told_of = |cause| told.lock().unwrap().get(&cause).copied().unwrap_or(0);
        prop_assert_eq!(told_of(RemovalCause::Evicted), stats.evictions);
        prop_assert_eq!(told_of(RemovalCause::Expired), stats.expirations);
        prop_assert_eq!(told_of(RemovalCause::Removed), stats.deletes);
        prop_assert_eq!(told_of(RemovalCause::Invalidated), stats.invalidations);
        prop_assert_eq!(told_of(RemovalCause::Replaced), stats.updates);
        // The tag index holds exactly the tags of the entries present
        // (expired-but-not-yet-removed entries are still present here).
        let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for shard in cache.inner.shards.iter() {
            for entry in shard.inner.read().live_entries_from(0, usize::MAX, 0).0 {
                for tag in &written_tags[entry.key.as_ref()] {
                    expected
                        .entry(tag.clone())
                        .or_default()
                        .push(entry.key.to_string());
                }
            }
        }
        for keys in expected.values_mut() {
            keys.sort();
        }
        let expected: Vec<(String, Vec<String>)> = expected.into_iter().collect();
        prop_assert_eq!(cache.tag_index(), expected);
    }
    Ok(())
}

fn policy_strategy() -> impl Strategy<Value = Policy> {
    prop_oneof![
        Just(Policy::Lru),
        Just(Policy::Fifo),
        Just(Policy::Sieve),
        Just(Policy::S3Fifo)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn memory_engine_answers_like_a_hash_map(
        policy in policy_strategy(),
        ops in proptest::collection::vec(op_strategy(true), 1..60),
    ) {
        runtime().block_on(run_against_model(policy, ops))?;
    }

    #[test]
    fn small_caches_keep_their_invariants(
        policy in policy_strategy(),
        max_entries in proptest::option::of(1u64..8),
        max_bytes in proptest::option::of(200u64..900),
        time_to_idle in proptest::option::of(50u64..400),
        weighed in any::<bool>(),
        ops in proptest::collection::vec(op_strategy(false), 1..80),
    ) {
        let bounds = run_with_small_bounds(policy, max_entries, max_bytes, time_to_idle, weighed, ops);
        runtime().block_on(bounds)?;
    }
}
