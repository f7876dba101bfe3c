//! Three tiers from TOML, end to end: a memory L1 per process, a shared
//! Redis L2 and an S3 L3 (servers started by the test), with the Redis
//! invalidation channel between the L1s.
//!
//! One test in its own binary: the S3 layer reads its credentials from
//! the environment, as in production, and the variables are set before
//! any other thread exists.
#![cfg(all(
    feature = "tiered",
    feature = "redis",
    feature = "s3",
    feature = "memory",
    feature = "testing"
))]

use std::time::Duration;

use bytes::Bytes;
use cachette::testing::servers::redis::RedisServer;
use cachette::testing::servers::s3::{ACCESS_KEY, S3Server, SECRET_KEY};
use cachette::{CacheManager, KeyTtl, SetOptions};

#[test]
fn memory_over_redis_over_s3_from_toml() {
    // SAFETY: no other thread of this process exists yet (this binary
    // holds one test, and its runtime is built below).
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", ACCESS_KEY);
        std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(three_tiers());
}

async fn three_tiers() {
    let redis = RedisServer::start();
    let s3 = S3Server::start();
    s3.create_bucket("cache");
    let redis_url = format!("redis://127.0.0.1:{}/0", redis.port());
    let s3_url = s3.url("cache", "pages");
    let toml = format!(
        r#"
        [caches.pages]
        l1 = "memory://?max_entries=1000"
        l2 = "{redis_url}?prefix=pages:"
        l3 = "{s3_url}"
        l1_ttl = "60s"
        channel = "{redis_url}?name=pages-inv&response_timeout=2s"
        "#
    );
    let open = async || {
        CacheManager::from_toml_str(&toml)
            .unwrap()
            .build()
            .await
            .unwrap()
    };
    let (one, two) = (open().await, open().await);
    let a = one.get("pages").unwrap();
    let b = two.get("pages").unwrap();
    let l2 = cachette::open(&format!("{redis_url}?prefix=pages:"))
        .await
        .unwrap();
    let l3 = cachette::open(&s3_url).await.unwrap();

    // A write goes to every tier.
    let ten = SetOptions::new().ttl(Duration::from_secs(30));
    a.set("home", Bytes::from("<html>1"), &ten).await.unwrap();
    assert_eq!(l2.get("home").await.unwrap(), Some(Bytes::from("<html>1")));
    assert_eq!(l3.get("home").await.unwrap(), Some(Bytes::from("<html>1")));

    // A read that misses L1 and L2 fills them from L3, with the remaining
    // TTL (30 s), not the upper tiers' 60 s.
    l2.delete("home").await.unwrap();
    assert_eq!(b.get("home").await.unwrap(), Some(Bytes::from("<html>1")));
    match l2.ttl("home").await.unwrap() {
        KeyTtl::ExpiresIn(left) => assert!(left <= Duration::from_secs(30), "{left:?}"),
        other => panic!("L2 was not filled from L3 with a deadline: {other:?}"),
    }
    // B now serves it from its L1: even with L2 and L3 emptied.
    l2.delete("home").await.unwrap();
    l3.delete("home").await.unwrap();
    assert_eq!(b.get("home").await.unwrap(), Some(Bytes::from("<html>1")));

    // A write through A reaches every tier, and the channel drops B's copy.
    a.set("home", Bytes::from("<html>2"), &ten).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if b.get("home").await.unwrap() == Some(Bytes::from("<html>2")) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "B kept its stale copy"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(l3.get("home").await.unwrap(), Some(Bytes::from("<html>2")));

    // A delete goes through every tier too.
    assert!(b.delete("home").await.unwrap());
    assert_eq!(l2.get("home").await.unwrap(), None);
    assert_eq!(l3.get("home").await.unwrap(), None);
}
