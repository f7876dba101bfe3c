//! The Redis backend behind Redis Sentinel, against real `redis-server` and
//! `redis-server --sentinel` processes started by
//! `cachette::testing::servers::redis`.
#![cfg(all(feature = "redis", feature = "testing"))]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cachette::backends::redis::RedisBackend;
use cachette::testing::run_conformance;
use cachette::testing::servers::redis::RedisSentinel;
use cachette::{Backend, ErrorKind, SetOptions};

const TIMEOUT: Duration = Duration::from_secs(1);
/// The timeouts of backends that run the conformance suite.
const CONFORMANCE_TIMEOUT: Duration = Duration::from_secs(5);

async fn backend_with(group: &RedisSentinel, prefix: &str, timeout: Duration) -> RedisBackend {
    RedisBackend::sentinel_builder(group.sentinels(), group.master_name())
        .prefix(prefix)
        .connect_timeout(timeout)
        .response_timeout(timeout)
        .build()
        .await
        .expect("connect through the sentinels")
}

async fn backend(group: &RedisSentinel, prefix: &str) -> RedisBackend {
    backend_with(group, prefix, TIMEOUT).await
}

/// A backend for the conformance suite: its checks are about semantics,
/// so its timeouts leave a loaded machine all the time it needs.
async fn conforming(group: &RedisSentinel, prefix: &str) -> Arc<dyn Backend> {
    Arc::new(backend_with(group, prefix, CONFORMANCE_TIMEOUT).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_discovered_master_conforms_with_a_sibling_prefix() {
    let group = RedisSentinel::start();
    let subject = conforming(&group, "subject:").await;
    let sibling = conforming(&group, "sibling:").await;
    let report = run_conformance(subject, Some(sibling)).await;
    let skipped: Vec<&str> = report.skipped().map(|(check, _)| check).collect();
    assert_eq!(skipped, ["value_size_limit"], "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failover_the_same_backend_writes_to_the_promoted_replica() {
    let mut group = RedisSentinel::start_with_sentinels(3);
    let cache = backend(&group, "fo:").await;
    for i in 0..20 {
        let value = Bytes::from(format!("before-{i}"));
        cache
            .set(&format!("k{i}"), value, &SetOptions::new())
            .await
            .unwrap();
    }
    assert_eq!(group.master(), 0);
    assert_eq!(group.node(0).cli(&["GET", "fo:k7"]).trim(), "before-7");
    // Every write has reached the replica before the master dies.
    assert_eq!(group.node(0).cli(&["WAIT", "1", "5000"]).trim(), "1");

    let old = group.kill_master();
    let killed = Instant::now();
    // Operations fail fast while the sentinels fail over, then the same
    // backend object finds the promoted replica by itself.
    let bound = Duration::from_secs(3);
    let mut failures = 0;
    let recovered = loop {
        let started = Instant::now();
        let result = cache
            .set("after", "written-after".into(), &SetOptions::new())
            .await;
        let took = started.elapsed();
        assert!(took < bound, "an operation took {took:?}: {result:?}");
        match result {
            Ok(_) => break killed.elapsed(),
            Err(err) => {
                assert!(
                    matches!(err.kind(), ErrorKind::Connection | ErrorKind::Timeout),
                    "{err:?}"
                );
                failures += 1;
            }
        }
        assert!(
            killed.elapsed() < Duration::from_secs(20),
            "no write succeeded within 20 s of the failover ({failures} failures)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "writes succeeded again {recovered:?} after the master was killed ({failures} failed)"
    );
    assert!(failures > 0, "the dead master never made an operation fail");

    let promoted = 1 - old;
    assert_eq!(group.master(), promoted);
    assert_eq!(group.role(promoted), "master");
    assert_eq!(
        group.node(promoted).cli(&["GET", "fo:after"]).trim(),
        "written-after"
    );
    assert_eq!(
        cache.get("after").await.unwrap().as_deref(),
        Some(&b"written-after"[..])
    );
    assert_eq!(
        cache.get("k7").await.unwrap().as_deref(),
        Some(&b"before-7"[..])
    );
    assert_eq!(cache.incr("n", 5, Default::default()).await.unwrap(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_manual_failover_writes_follow_the_announced_master() {
    let group = RedisSentinel::start();
    let cache = backend(&group, "mf:").await;
    cache
        .set("before", "v".into(), &SetOptions::new())
        .await
        .unwrap();
    assert_eq!(group.node(0).cli(&["WAIT", "1", "5000"]).trim(), "1");
    // Both nodes stay up. The sentinels promote the replica and announce
    // `+switch-master`, but turn the old master into a replica only some
    // seconds later (Sentinel waits 8 s before it converts a node that
    // still reports itself as master): until then the old master accepts
    // writes, which the backend must no longer send there.
    let started = group
        .sentinel(0)
        .cli(&["SENTINEL", "FAILOVER", group.master_name()]);
    assert_eq!(started.trim(), "OK");
    let started = Instant::now();
    // Once promoted, the replica no longer copies the old master, so a
    // value found there was written there.
    while group.role(1) != "master" {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the replica was not promoted within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut attempt = 0;
    loop {
        attempt += 1;
        let value = format!("moved-{attempt}");
        let written = cache
            .set("after", value.clone().into(), &SetOptions::new())
            .await;
        let seen = group.node(1).try_cli(&["GET", "mf:after"]);
        if written.is_ok() && seen.is_ok_and(|seen| seen.trim() == value) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "writes never reached the promoted replica: {written:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(group.role(1), "master");
    assert_eq!(
        group.role(0),
        "master",
        "the backend moved only when the old master was demoted, not when the switch was announced"
    );
    assert_eq!(
        cache.get("before").await.unwrap().as_deref(),
        Some(&b"v"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_opens_through_the_sentinels_with_the_data_nodes_login_and_database() {
    let group = RedisSentinel::start();
    for node in 0..2 {
        group
            .node(node)
            .cli(&["ACL", "SETUSER", "app", "on", ">n0de-pw", "~app:*", "+@all"]);
    }
    let url = format!(
        "{}/2?prefix=app:&connect_timeout=500ms&response_timeout=500ms",
        group.url().replace("://", "://app:n0de-pw@")
    );
    let cache = cachette::open(&url).await.unwrap();
    cache
        .set("k", "v".into(), &SetOptions::new())
        .await
        .unwrap();
    assert_eq!(cache.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(group.node(0).cli(&["-n", "2", "GET", "app:k"]).trim(), "v");
    let built = RedisBackend::sentinel_builder(group.sentinels(), group.master_name())
        .username("app")
        .password("n0de-pw")
        .db(2)
        .prefix("app:");
    assert!(!format!("{built:?}").contains("n0de-pw"), "{built:?}");
    let built = built.build().await.unwrap();
    assert_eq!(built.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
    assert!(!format!("{built:?}").contains("n0de-pw"), "{built:?}");

    let wrong = url.replace("n0de-pw", "wr0ng-pw");
    let err = cachette::open(&wrong).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err:?}");
    assert!(!format!("{err} {err:?}").contains("wr0ng-pw"), "{err:?}");

    let unknown = format!(
        "{}?connect_timeout=500ms",
        group.url().replace("/cachette", "/nobody")
    );
    let err = cachette::open(&unknown).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection, "{err:?}");
    assert!(err.message().contains("nobody"), "{err}");

    // A sentinel that requires a password of its own.
    group
        .sentinel(0)
        .cli(&["ACL", "SETUSER", "default", "resetpass", ">s3ntinel-pw"]);
    let guarded = format!("{}&sentinel_password=s3ntinel-pw", url);
    let cache = cachette::open(&guarded).await.unwrap();
    assert_eq!(cache.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
    let err = cachette::open(&url).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err:?}");
    let err = cachette::open(&guarded.replace("s3ntinel-pw", "wr0ng-pw"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err:?}");
    assert!(!format!("{err} {err:?}").contains("wr0ng-pw"), "{err:?}");
}
