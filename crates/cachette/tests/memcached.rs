//! The Memcached backend against real `memcached` processes started by
//! `cachette::testing::servers::memcached`.
#![cfg(all(feature = "memcached", feature = "testing"))]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cachette::backends::memcached::MemcachedBackend;
use cachette::testing::servers::memcached::{MemcachedCluster, MemcachedServer};
use cachette::testing::{Conformance, list_keys};
use cachette::{Backend, ErrorKind, SetOptions};

/// The timeouts of backends that run the conformance suite: its checks
/// are about semantics, so a loaded machine gets all the time it needs.
const CONFORMANCE_TIMEOUT: &str = "5s";

async fn open(url: &str, prefix: &str) -> Arc<dyn Backend> {
    let url = format!(
        "{url}?prefix={prefix}&connect_timeout={CONFORMANCE_TIMEOUT}&response_timeout={CONFORMANCE_TIMEOUT}"
    );
    cachette::open(&url)
        .await
        .unwrap_or_else(|err| panic!("open {url}: {err}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_server_conforms_with_a_sibling_prefix() {
    let server = MemcachedServer::start();
    let subject = open(&server.url(), "subject:").await;
    let sibling = open(&server.url(), "sibling:").await;
    let report = Conformance::new(subject).sibling(sibling).run().await;
    let skipped: Vec<&str> = report.skipped().map(|(check, _)| check).collect();
    assert!(skipped.is_empty(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_conform_with_a_sibling_prefix() {
    let cluster = MemcachedCluster::start(3);
    let subject = open(&cluster.url(), "subject:").await;
    let sibling = open(&cluster.url(), "sibling:").await;
    let report = Conformance::new(subject).sibling(sibling).run().await;
    let skipped: Vec<&str> = report.skipped().map(|(check, _)| check).collect();
    assert!(skipped.is_empty(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_ttl_conforms() {
    let server = MemcachedServer::start();
    let url = format!("{}?default_ttl=60s&prefix=ttl:", server.url());
    let subject = cachette::open(&url).await.unwrap();
    let sibling = open(&server.url(), "other:").await;
    Conformance::new(subject)
        .sibling(sibling)
        .default_ttl(Duration::from_secs(60))
        .run()
        .await;
}

/// Keys land where the ring puts them, on exactly one server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_key_lives_on_exactly_one_server() {
    let cluster = MemcachedCluster::start(3);
    let backend = MemcachedBackend::builder(
        cluster
            .servers()
            .iter()
            .map(|server| ("127.0.0.1", server.port())),
    )
    .build()
    .await
    .unwrap();
    let mut per_server = [0_u64; 3];
    for i in 0..300 {
        let key = format!("key{i}");
        backend
            .set(&key, Bytes::from("v"), &SetOptions::new())
            .await
            .unwrap();
        per_server[backend.server_of(&key)] += 1;
    }
    for (index, server) in cluster.servers().iter().enumerate() {
        // Each server also holds this prefix's generation.
        assert_eq!(
            server.stat("curr_items"),
            per_server[index] + 1,
            "server {index}"
        );
        assert!(per_server[index] > 50, "{per_server:?}");
    }
}

/// `clear` empties this prefix on every server and leaves other prefixes
/// alone, without `flush_all`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_bumps_the_generation_and_never_flushes() {
    let cluster = MemcachedCluster::start(2);
    let a = open(&cluster.url(), "a:").await;
    let b = open(&cluster.url(), "b:").await;
    for i in 0..50 {
        let key = format!("k{i}");
        a.set(&key, Bytes::from("a"), &SetOptions::new())
            .await
            .unwrap();
        b.set(&key, Bytes::from("b"), &SetOptions::new())
            .await
            .unwrap();
    }
    a.clear().await.unwrap();
    for i in 0..50 {
        let key = format!("k{i}");
        assert_eq!(a.get(&key).await.unwrap(), None);
        assert_eq!(b.get(&key).await.unwrap().as_deref(), Some(&b"b"[..]));
    }
    // A second process sees the clear too: it reads the generation.
    let again = open(&cluster.url(), "a:").await;
    assert_eq!(again.get("k1").await.unwrap(), None);
    for server in cluster.servers() {
        assert_eq!(server.stat("cmd_flush"), 0);
    }
}

/// A tag invalidated by one instance is invalid for another; an evicted
/// tag version (here: deleted from outside) invalidates its entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_are_exact_across_instances_and_survive_losing_a_version() {
    let server = MemcachedServer::start();
    let one = open(&server.url(), "t:").await;
    let two = open(&server.url(), "t:").await;
    let tagged = SetOptions::new().tags(["users"]);
    one.set("u1", Bytes::from("1"), &tagged).await.unwrap();
    one.set("u2", Bytes::from("2"), &tagged).await.unwrap();
    one.set("plain", Bytes::from("p"), &SetOptions::new())
        .await
        .unwrap();
    assert!(two.get("u1").await.unwrap().is_some());
    two.invalidate_tags(&["users"]).await.unwrap();
    assert_eq!(one.get("u1").await.unwrap(), None);
    assert_eq!(one.get("u2").await.unwrap(), None);
    assert!(one.get("plain").await.unwrap().is_some());

    one.set("u3", Bytes::from("3"), &tagged).await.unwrap();
    assert!(two.get("u3").await.unwrap().is_some());
    // The tag's version is gone (as if evicted): its entries are invalid.
    let answer = server.command("md t:\u{FF}t:users");
    assert!(answer.starts_with("HD"), "{answer}");
    assert_eq!(two.get("u3").await.unwrap(), None);
    assert_eq!(one.get("u3").await.unwrap(), None);
}

/// Counters follow the rules of every backend, not memcached's unsigned
/// wrapping ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_are_signed_and_never_wrap() {
    let server = MemcachedServer::start();
    let backend = open(&server.url(), "c:").await;
    assert_eq!(backend.incr("n", -5, Default::default()).await.unwrap(), -5);
    assert_eq!(backend.incr("n", 3, Default::default()).await.unwrap(), -2);
    assert_eq!(backend.incr("n", 2, Default::default()).await.unwrap(), 0);
    assert_eq!(backend.incr("n", 10, Default::default()).await.unwrap(), 10);
    // A shrinking number is rewritten, never space-padded.
    assert_eq!(backend.decr("n", 1, Default::default()).await.unwrap(), 9);
    assert_eq!(backend.get("n").await.unwrap().as_deref(), Some(&b"9"[..]));
    backend
        .set("max", Bytes::from(i64::MAX.to_string()), &SetOptions::new())
        .await
        .unwrap();
    let err = backend
        .incr("max", 1, Default::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Overflow);
    backend
        .set("text", Bytes::from("+5"), &SetOptions::new())
        .await
        .unwrap();
    let err = backend
        .incr("text", 1, Default::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotAnInteger);
}

/// `keys` is refused as unsupported by a server that forbids dumps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_unsupported_where_the_server_forbids_dumps() {
    let server = MemcachedServer::start_with(&["-X"]);
    let backend = open(&server.url(), "x:").await;
    backend
        .set("k", Bytes::from("v"), &SetOptions::new())
        .await
        .unwrap();
    let err = backend.keys("*").await.err().expect("keys must fail");
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");

    let allowed = MemcachedServer::start();
    let backend = open(&allowed.url(), "x:").await;
    let long = "long key ".repeat(100);
    for key in ["k", "with space", long.as_str()] {
        backend
            .set(key, Bytes::from("v"), &SetOptions::new())
            .await
            .unwrap();
    }
    let mut expected = vec!["k".to_owned(), "with space".to_owned(), long.clone()];
    expected.sort();
    assert_eq!(list_keys(&*backend, "*").await, expected);
}
