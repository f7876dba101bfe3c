//! The Redis backend in cluster mode, against three-master clusters of
//! fresh `redis-server` processes started by
//! `cachette::testing::servers::redis::RedisCluster`.
#![cfg(all(feature = "redis", feature = "testing"))]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cachette::backends::redis::{RedisBackend, hash_slot};
use cachette::testing::run_conformance;
use cachette::testing::servers::redis::RedisCluster;
use cachette::{Backend, ErrorKind, SetOptions};

const TIMEOUT: Duration = Duration::from_millis(500);
/// The timeouts of backends that run the conformance suite.
const CONFORMANCE_TIMEOUT: Duration = Duration::from_secs(5);
/// What a busy machine may add to an operation's own timeouts before the
/// caller sees its error.
const SCHEDULING_SLACK: Duration = Duration::from_millis(1500);

async fn backend_with(cluster: &RedisCluster, prefix: &str, timeout: Duration) -> RedisBackend {
    RedisBackend::cluster_builder(cluster.seeds())
        .prefix(prefix)
        .connect_timeout(timeout)
        .response_timeout(timeout)
        .build()
        .await
        .expect("connect to the test cluster")
}

async fn backend(cluster: &RedisCluster, prefix: &str) -> RedisBackend {
    backend_with(cluster, prefix, TIMEOUT).await
}

/// A backend for the conformance suite: its checks are about semantics,
/// so its timeouts leave a loaded machine all the time it needs.
async fn conforming(cluster: &RedisCluster, prefix: &str) -> Arc<dyn Backend> {
    Arc::new(backend_with(cluster, prefix, CONFORMANCE_TIMEOUT).await)
}

use cachette::testing::list_keys as keys;

/// The master (by index) that holds user key `key` under `prefix`.
fn owner(cluster: &RedisCluster, prefix: &str, key: &str) -> usize {
    cluster.owner_of_slot(hash_slot(format!("{prefix}{key}").as_bytes()))
}

fn total_keys(cluster: &RedisCluster) -> u64 {
    (0..3).map(|node| cluster.dbsize(node)).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_conforms_with_a_sibling_prefix_on_the_same_cluster() {
    let cluster = RedisCluster::start(3);
    let subject = conforming(&cluster, "subject:").await;
    let sibling = conforming(&cluster, "sibling:").await;
    let report = run_conformance(subject, Some(sibling)).await;
    let skipped: Vec<&str> = report.skipped().map(|(check, _)| check).collect();
    assert_eq!(skipped, ["value_size_limit"], "{report}");

    // The URL form, with the seed nodes separated by commas.
    let url = format!("{}?prefix=url:&response_timeout=800ms", cluster.url());
    let cache = cachette::open(&url).await.unwrap();
    cache
        .set("k", "v".into(), &SetOptions::new())
        .await
        .unwrap();
    assert_eq!(cache.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(
        cluster
            .node(owner(&cluster, "url:", "k"))
            .cli(&["GET", "url:k"])
            .trim(),
        "v"
    );
    cache.health().await.unwrap();
    let stats = cache.stats().await.unwrap();
    assert!(
        stats
            .details
            .iter()
            .any(|(name, n)| name == "db_keys" && *n >= 1)
    );

    // Our slot is the server's.
    for key in ["foo", "url:k", "a{tag}b", "{}x", "\u{e9}t\u{e9}"] {
        let server: u16 = cluster
            .node(0)
            .cli(&["CLUSTER", "KEYSLOT", key])
            .trim()
            .parse()
            .unwrap();
        assert_eq!(hash_slot(key.as_bytes()), server, "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_key_operations_span_slots_with_positional_results() {
    let cluster = RedisCluster::start(3);
    let cache = backend(&cluster, "m:").await;
    let names: Vec<String> = (0..60).map(|i| format!("key-{i}")).collect();
    let owners: BTreeSet<usize> = names.iter().map(|k| owner(&cluster, "m:", k)).collect();
    assert_eq!(owners.len(), 3, "the keys live on every master");

    // Even keys are written, with tags; the odd ones stay missing.
    let entries: Vec<(&str, Bytes)> = names
        .iter()
        .enumerate()
        .filter(|(i, _)| i.is_multiple_of(2))
        .map(|(i, k)| (k.as_str(), Bytes::from(format!("v{i}"))))
        .collect();
    let tagged = SetOptions::new().tags(["even"]);
    let written = cache.set_many(&entries, &tagged).await.unwrap();
    assert_eq!(written, vec![true; 30]);
    // Only-if-absent across slots: positional answers.
    let again: Vec<(&str, Bytes)> = names[..6]
        .iter()
        .map(|k| (k.as_str(), Bytes::from_static(b"new")))
        .collect();
    let written = cache
        .set_many(&again, &SetOptions::new().if_absent())
        .await
        .unwrap();
    assert_eq!(written, [false, true, false, true, false, true]);

    // Every key, in reverse order, with one repeated.
    let mut asked: Vec<&str> = names.iter().rev().map(String::as_str).collect();
    asked.push("key-0");
    let values = cache.get_many(&asked).await.unwrap();
    assert_eq!(values.len(), asked.len());
    for (key, value) in asked.iter().zip(&values) {
        let i: usize = key["key-".len()..].parse().unwrap();
        let expected = match i {
            _ if i.is_multiple_of(2) => Some(format!("v{i}")),
            1 | 3 | 5 => Some("new".to_owned()),
            _ => None,
        };
        assert_eq!(
            value.as_deref(),
            expected.as_deref().map(str::as_bytes),
            "{key}"
        );
    }

    // Tags of entries in many slots are invalidated together.
    assert_eq!(cache.invalidate_tags(&["even"]).await.unwrap(), 30);
    assert!(cache.get("key-0").await.unwrap().is_none());
    assert_eq!(cache.invalidate_tags(&["even"]).await.unwrap(), 0);

    let all: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(cache.delete_many(&all).await.unwrap(), 3);
    assert_eq!(total_keys(&cluster), 0, "nothing internal is left behind");

    // A tagged entry touched to live forever keeps its tag invalidatable.
    let short = SetOptions::new().tags(["t"]).ttl(Duration::from_secs(1));
    cache.set("long", "v".into(), &short).await.unwrap();
    assert!(cache.touch("long", cachette::Expiry::Never).await.unwrap());
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(cache.invalidate_tags(&["t"]).await.unwrap(), 1);
    assert_eq!(total_keys(&cluster), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_clear_cover_every_master_and_only_the_prefix() {
    let cluster = RedisCluster::start(3);
    let cache = backend(&cluster, "app:").await;
    let other = backend(&cluster, "other:").await;
    let names: Vec<String> = (0..90).map(|i| format!("k{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        let options = if i.is_multiple_of(3) {
            SetOptions::new().tags(["t"])
        } else {
            SetOptions::new()
        };
        cache.set(name, "v".into(), &options).await.unwrap();
    }
    for i in 0..30 {
        other
            .set(&format!("keep{i}"), "v".into(), &SetOptions::new())
            .await
            .unwrap();
    }
    for node in 0..3 {
        assert!(cluster.dbsize(node) > 0, "node {node} holds keys");
    }
    let mut expected = names.clone();
    expected.sort();
    assert_eq!(keys(&cache, "*").await, expected);
    assert_eq!(keys(&cache, "k1?").await.len(), 10);
    assert_eq!(keys(&other, "*").await.len(), 30);

    cache.clear().await.unwrap();
    assert!(keys(&cache, "*").await.is_empty());
    assert_eq!(cache.invalidate_tags(&["t"]).await.unwrap(), 0);
    assert_eq!(
        total_keys(&cluster),
        30,
        "only the other prefix's keys are left"
    );
    assert_eq!(keys(&other, "*").await.len(), 30);

    // A prefix whose `{` would split keys from their records is refused.
    let err = RedisBackend::cluster_builder(cluster.seeds())
        .prefix("bad{")
        .build()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    // A complete hash tag in the prefix puts everything in one slot.
    let pinned = backend(&cluster, "{pin}:").await;
    pinned
        .set_many(
            &[("a", "1".into()), ("b", "2".into())],
            &SetOptions::new().tags(["x"]),
        )
        .await
        .unwrap();
    assert_eq!(pinned.invalidate_tags(&["x"]).await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_fails_its_slots_only() {
    let mut cluster = RedisCluster::start(3);
    let cache = backend(&cluster, "f:").await;
    let names: Vec<String> = (0..30).map(|i| format!("k{i}")).collect();
    for name in &names {
        cache
            .set(name, "v".into(), &SetOptions::new())
            .await
            .unwrap();
    }
    let (lost, kept): (Vec<&String>, Vec<&String>) = names
        .iter()
        .partition(|name| owner(&cluster, "f:", name) == 1);
    assert!(!lost.is_empty() && !kept.is_empty());

    cluster.kill(1);
    let deadline = TIMEOUT * 2 + SCHEDULING_SLACK;
    let started = Instant::now();
    for name in lost.iter().take(3) {
        let begun = Instant::now();
        let err = cache.get(name).await.unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::Connection | ErrorKind::Timeout),
            "{err}"
        );
        assert!(begun.elapsed() <= deadline, "{:?}", begun.elapsed());
    }
    for name in &kept {
        let begun = Instant::now();
        let value = cache.get(name).await.unwrap();
        assert_eq!(value.as_deref(), Some(&b"v"[..]), "{name}");
        assert!(begun.elapsed() <= deadline, "{:?}", begun.elapsed());
        cache
            .set(name, "w".into(), &SetOptions::new())
            .await
            .unwrap();
    }
    // A batch over the surviving masters works; one touching the dead
    // master's slots fails as a whole.
    let kept_keys: Vec<&str> = kept.iter().map(|k| k.as_str()).collect();
    let values = cache.get_many(&kept_keys).await.unwrap();
    assert!(values.iter().all(|v| v.as_deref() == Some(&b"w"[..])));
    let err = cache.get_many(&[kept_keys[0], lost[0]]).await.unwrap_err();
    assert!(err.is_temporary(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(15));
}
