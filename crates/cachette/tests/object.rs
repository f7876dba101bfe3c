//! The object-storage backend on local files and against an S3 server
//! the tests start themselves (moto's server mode).
#![cfg(all(feature = "s3", feature = "testing"))]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cachette::backends::object::ObjectBackend;
use cachette::backends::object::object_store::aws::AmazonS3Builder;
use cachette::backends::object::object_store::path::Path;
use cachette::backends::object::object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
};
use cachette::testing::Conformance;
use cachette::testing::servers::fresh_dir;
use cachette::testing::servers::s3::{ACCESS_KEY, REGION, S3Server, SECRET_KEY};
use cachette::{Backend, ErrorKind, Expiry, SetOptions};

/// A store on the test server's `bucket`, signed with the test keys;
/// `retries` and `timeout` as a fault test needs them.
fn s3_store(server: &S3Server, bucket: &str, timeout: Duration) -> Arc<dyn ObjectStore> {
    let store = AmazonS3Builder::new()
        .with_endpoint(server.endpoint())
        .with_bucket_name(bucket)
        .with_region(REGION)
        .with_access_key_id(ACCESS_KEY)
        .with_secret_access_key(SECRET_KEY)
        .with_client_options(
            ClientOptions::new()
                .with_allow_http(true)
                .with_connect_timeout(timeout)
                .with_timeout(timeout),
        )
        .with_retry(RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 0,
            retry_timeout: timeout,
        })
        .build()
        .unwrap();
    Arc::new(store)
}

fn s3_backend(store: &Arc<dyn ObjectStore>, prefix: &str, timeout: Duration) -> Arc<dyn Backend> {
    Arc::new(
        ObjectBackend::builder(Arc::clone(store))
            .prefix(prefix)
            .timeout(timeout)
            .max_value_len(8 << 20)
            .build()
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_files_conform_with_a_sibling_prefix() {
    let dir = fresh_dir();
    let url = |prefix: &str| {
        format!(
            "object+file://{}?prefix={prefix}&max_value_len=8MiB",
            dir.display()
        )
    };
    let subject = cachette::open(&url("subject")).await.unwrap();
    let sibling = cachette::open(&url("sibling")).await.unwrap();
    assert!(!subject.capabilities().conditional_set);
    let report = Conformance::new(subject).sibling(sibling).run().await;
    let skipped: Vec<&str> = report.skipped().map(|(check, _)| check).collect();
    // Local files have no compare-and-swap: the capabilities say so.
    assert_eq!(
        skipped,
        ["concurrent_incr", "concurrent_if_absent"],
        "{report}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_conforms_with_a_sibling_prefix() {
    let server = S3Server::start();
    server.create_bucket("cache");
    let store = s3_store(&server, "cache", Duration::from_secs(10));
    let subject = s3_backend(&store, "subject", Duration::from_secs(30));
    let sibling = s3_backend(&store, "sibling", Duration::from_secs(30));
    assert!(subject.capabilities().conditional_set && subject.capabilities().atomic_incr);
    // moto serves one request at a time: the full concurrency load takes
    // minutes there.
    let report = Conformance::new(subject)
        .sibling(sibling)
        .light_concurrency()
        .run()
        .await;
    assert!(report.skipped().next().is_none(), "{report}");
}

/// Counters are compare-and-swap on the ETag: 8 tasks on two backends
/// add 200 without losing one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_are_atomic_under_contention() {
    let server = S3Server::start();
    server.create_bucket("cache");
    let store = s3_store(&server, "cache", Duration::from_secs(10));
    let one = s3_backend(&store, "c", Duration::from_secs(60));
    let two = s3_backend(&store, "c", Duration::from_secs(60));
    let mut tasks = Vec::new();
    for task in 0..8 {
        let backend = if task % 2 == 0 {
            one.clone()
        } else {
            two.clone()
        };
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                backend.incr("n", 1, Expiry::Never).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(one.get("n").await.unwrap(), Some(Bytes::from("200")));
}

/// A value over the multipart threshold round-trips; a truncated or
/// foreign object under the prefix is a corrupt miss, counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_values_and_corrupt_objects() {
    let server = S3Server::start();
    server.create_bucket("cache");
    let store = s3_store(&server, "cache", Duration::from_secs(30));
    let backend = Arc::new(
        ObjectBackend::builder(Arc::clone(&store))
            .prefix("big")
            .max_value_len(64 << 20)
            .build()
            .unwrap(),
    );
    let large = Bytes::from((0..12 << 20).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    backend
        .set("large", large.clone(), &SetOptions::new())
        .await
        .unwrap();
    assert_eq!(backend.get("large").await.unwrap(), Some(large));

    backend
        .set("cut", Bytes::from("a value"), &SetOptions::new())
        .await
        .unwrap();
    let path = Path::from("big/e/k_cut");
    let whole = store.get(&path).await.unwrap().bytes().await.unwrap();
    store
        .put(&path, PutPayload::from(whole.slice(..whole.len() - 9)))
        .await
        .unwrap();
    store
        .put(&Path::from("big/e/k_foreign"), PutPayload::from("not ours"))
        .await
        .unwrap();
    store
        .put(&Path::from("big/e/k_empty"), PutPayload::new())
        .await
        .unwrap();
    let before = backend.stats().await.unwrap().corrupt;
    assert_eq!(backend.get("cut").await.unwrap(), None);
    assert_eq!(backend.get("foreign").await.unwrap(), None);
    assert_eq!(backend.get("empty").await.unwrap(), None);
    assert_eq!(backend.stats().await.unwrap().corrupt, before + 3);
    // Reads of the header alone agree.
    for key in ["foreign", "empty"] {
        assert!(!backend.exists(key).await.unwrap(), "{key}");
        assert_eq!(
            backend.ttl(key).await.unwrap(),
            cachette::KeyTtl::Missing,
            "{key}"
        );
        assert!(!backend.delete(key).await.unwrap(), "{key}");
    }
}

/// The server killed under load: operations fail within the timeout,
/// nothing hangs; after a restart (empty) the same backend serves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_gives_errors_in_time() {
    let mut server = S3Server::start();
    server.create_bucket("cache");
    let store = s3_store(&server, "cache", Duration::from_millis(500));
    let backend = s3_backend(&store, "fault", Duration::from_secs(1));
    backend
        .set("k", Bytes::from("v"), &SetOptions::new())
        .await
        .unwrap();
    let load = {
        let backend = backend.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let (mut failed, mut slowest) = (0, Duration::ZERO);
            while started.elapsed() < Duration::from_secs(2) {
                let began = Instant::now();
                if let Err(err) = backend.get("k").await {
                    assert!(
                        matches!(err.kind(), ErrorKind::Connection | ErrorKind::Timeout),
                        "{err}"
                    );
                    failed += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                slowest = slowest.max(began.elapsed());
            }
            (failed, slowest)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.kill();
    let (failed, slowest) = load.await.unwrap();
    assert!(failed > 0, "no operation failed with the server gone");
    assert!(
        slowest < Duration::from_secs(5),
        "an operation took {slowest:?}"
    );
    server.restart();
    server.create_bucket("cache");
    backend
        .set("k", Bytes::from("again"), &SetOptions::new())
        .await
        .unwrap();
    assert_eq!(backend.get("k").await.unwrap(), Some(Bytes::from("again")));
}
