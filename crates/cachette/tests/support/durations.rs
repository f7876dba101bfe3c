//! Checks of extreme durations shared by the tests of the persistent
//! backends (included with `#[path]` by each test file that uses them).

use std::time::Duration;

use cachette::{Backend, ErrorKind, KeyTtl, SetOptions};

/// A backend built with a default TTL of 300 µs keeps an entry readable
/// for the millisecond it rounds up to, and reports it as expiring.
/// Retried for up to 10 s, since on a loaded machine a whole millisecond
/// often passes between the write and the read; an entry born expired
/// never reads back, however often it is tried.
pub(crate) async fn a_sub_millisecond_default_ttl_reads_back(cache: &dyn Backend) {
    let started = std::time::Instant::now();
    for attempt in 0.. {
        if started.elapsed() > Duration::from_secs(10) {
            break;
        }
        let key = format!("k{attempt}");
        cache
            .set(&key, "v".into(), &SetOptions::new())
            .await
            .unwrap();
        let value = cache.get(&key).await.unwrap();
        let ttl = cache.ttl(&key).await.unwrap();
        if value.is_some() {
            assert!(
                matches!(ttl, KeyTtl::ExpiresIn(_) | KeyTtl::Missing),
                "an entry with a default TTL expires: {ttl:?}"
            );
            return;
        }
    }
    panic!("an entry with a 300 µs default TTL was never readable");
}

/// A backend built with `Duration::MAX` options writes and reads, and a
/// write with a TTL of `Duration::MAX` is at most an `InvalidInput` error.
pub(crate) async fn the_longest_durations_work(cache: &dyn Backend) {
    cache
        .set("k", "v".into(), &SetOptions::new())
        .await
        .unwrap();
    assert_eq!(cache.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
    assert!(matches!(
        cache.ttl("k").await.unwrap(),
        KeyTtl::ExpiresIn(_) | KeyTtl::Persistent
    ));
    let result = cache
        .set("m", "v".into(), &SetOptions::new().ttl(Duration::MAX))
        .await;
    if let Err(error) = result {
        assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
    }
    assert_eq!(cache.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
}
