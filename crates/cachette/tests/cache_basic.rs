//! The typed front end's reads and writes: codecs, layouts, keys, versions,
//! counters, tags and the builder's checks.
#![cfg(feature = "memory")]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cachette::cache::{Cache, EntryOptions, RawBytes};
use cachette::{Backend, ErrorKind, Expiry, KeyTtl, MemoryBackend, SetOptions};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    id: u64,
    name: String,
    tags: Vec<String>,
    score: Option<f64>,
}

fn profile() -> Profile {
    Profile {
        id: 42,
        name: "Ada Lovelace".into(),
        tags: vec!["admin".into(), "math".into()],
        score: Some(9.5),
    }
}

fn memory() -> Arc<dyn Backend> {
    Arc::new(MemoryBackend::default())
}

fn options() -> EntryOptions {
    EntryOptions::new()
}

async fn round_trip<C: cachette::Codec>(codec: C) {
    let cache = Cache::builder(memory()).codec(codec).build().await.unwrap();
    cache.set("p", &profile(), &options()).await.unwrap();
    assert_eq!(cache.get::<Profile>("p").await.unwrap(), Some(profile()));
    assert_eq!(cache.get::<Profile>("missing").await.unwrap(), None);
}

#[cfg(feature = "json")]
#[tokio::test]
async fn json_round_trips_a_struct() {
    round_trip(cachette::cache::Json).await;
}

#[cfg(feature = "msgpack")]
#[tokio::test]
async fn msgpack_round_trips_a_struct() {
    round_trip(cachette::cache::MessagePack).await;
}

#[tokio::test]
async fn postcard_round_trips_a_struct() {
    round_trip(cachette::cache::Postcard).await;
}

#[tokio::test]
async fn raw_bytes_codec_round_trips_bytes_and_strings_and_refuses_structs() {
    let backend = memory();
    let cache = Cache::builder(backend.clone())
        .codec(RawBytes)
        .namespace("raw")
        .build()
        .await
        .unwrap();
    cache
        .set("v", &vec![0_u8, 1, 255], &options())
        .await
        .unwrap();
    assert_eq!(
        cache.get::<Vec<u8>>("v").await.unwrap(),
        Some(vec![0, 1, 255])
    );
    assert_eq!(
        backend.get("raw:v0:v").await.unwrap().as_deref(),
        Some(&[0_u8, 1, 255][..]),
        "stored as the bytes alone"
    );
    cache.set("s", "héllo", &options()).await.unwrap();
    assert_eq!(
        cache.get::<String>("s").await.unwrap().as_deref(),
        Some("héllo")
    );
    cache.set("a", &[7_u8; 4], &options()).await.unwrap();
    assert_eq!(cache.get::<[u8; 4]>("a").await.unwrap(), Some([7; 4]));

    let refused = cache.set("p", &profile(), &options()).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Serialization);
    let not_utf8 = cache.get::<String>("v").await.unwrap_err();
    assert_eq!(not_utf8.kind(), ErrorKind::Serialization);
}

#[tokio::test]
async fn set_bytes_stores_the_bytes_alone_in_any_cache() {
    let backend = memory();
    let cache = Cache::builder(backend.clone()).build().await.unwrap();
    let value = Bytes::from_static(b"\x00\x01 not serde");
    cache
        .set_bytes("b", value.clone(), &options())
        .await
        .unwrap();
    assert_eq!(cache.get_bytes("b").await.unwrap(), Some(value.clone()));
    assert_eq!(
        backend.get("cachette:v0:b").await.unwrap(),
        Some(value),
        "default namespace, version 0, no envelope"
    );
}

#[tokio::test]
async fn bytes_that_look_like_an_envelope_are_wrapped_and_read_back_intact() {
    let backend = memory();
    let cache = Cache::builder(backend.clone()).build().await.unwrap();
    let tricky = Bytes::from_static(b"\xCCcht\x01 user data");
    cache
        .set_bytes("t", tricky.clone(), &options())
        .await
        .unwrap();
    assert_ne!(
        backend.get("cachette:v0:t").await.unwrap(),
        Some(tricky.clone())
    );
    assert_eq!(cache.get_bytes("t").await.unwrap(), Some(tricky));
}

#[cfg(feature = "json")]
#[tokio::test]
async fn plain_values_are_the_codec_output_alone() {
    let backend = memory();
    let cache = Cache::builder(backend.clone())
        .codec(cachette::cache::Json)
        .namespace("app")
        .build()
        .await
        .unwrap();
    cache.set("n", &[1, 2, 3], &options()).await.unwrap();
    assert_eq!(
        backend.get("app:v0:n").await.unwrap().as_deref(),
        Some(&b"[1,2,3]"[..])
    );
}

#[cfg(feature = "json")]
#[tokio::test]
async fn a_value_that_does_not_decode_is_a_serialization_error_and_stays_stored() {
    let backend = memory();
    let cache = Cache::builder(backend.clone())
        .codec(cachette::cache::Json)
        .build()
        .await
        .unwrap();
    cache.set("p", &profile(), &options()).await.unwrap();
    let before = backend.get("cachette:v0:p").await.unwrap();

    let error = cache.get::<u64>("p").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Serialization);
    let error = cache
        .get_or_load(
            "p",
            |_| async { Ok::<_, std::io::Error>(Some(7_u64)) },
            &options(),
        )
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Serialization);

    assert_eq!(backend.get("cachette:v0:p").await.unwrap(), before);
    assert_eq!(cache.get::<Profile>("p").await.unwrap(), Some(profile()));
    let stats = cache.stats();
    assert_eq!((stats.decode_errors, stats.loads), (2, 0));
}

/// A JSON cache and a cache with the default codec (postcard) over one
/// backend, both writing envelopes (only envelopes carry the codec id).
#[cfg(feature = "json")]
async fn json_and_postcard(backend: &Arc<dyn Backend>) -> (Cache<cachette::cache::Json>, Cache) {
    let soft = Duration::from_secs(60);
    let json = Cache::builder(backend.clone())
        .codec(cachette::cache::Json)
        .soft_ttl(soft)
        .build()
        .await
        .unwrap();
    let postcard = Cache::builder(backend.clone())
        .soft_ttl(soft)
        .build()
        .await
        .unwrap();
    (json, postcard)
}

#[cfg(feature = "json")]
#[tokio::test]
async fn an_envelope_from_another_codec_is_a_serialization_error() {
    let backend = memory();
    let (json, postcard) = json_and_postcard(&backend).await;
    json.set("k", &5_u32, &options()).await.unwrap();
    let error = postcard.get::<u32>("k").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Serialization);
    assert!(error.message().contains("codec id 1"), "{error}");
}

#[cfg(feature = "json")]
#[tokio::test]
async fn the_error_for_another_codec_s_entry_names_both_codecs_and_keeps_the_entry() {
    let backend = memory();
    let (json, postcard) = json_and_postcard(&backend).await;
    json.set("p", &profile(), &options()).await.unwrap();
    let before = backend.get("cachette:v0:p").await.unwrap();

    let error = postcard.get::<Profile>("p").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Serialization);
    assert!(error.message().contains("json (codec id 1)"), "{error}");
    assert!(error.message().contains("postcard (codec id 3)"), "{error}");
    assert_eq!(postcard.stats().decode_errors, 1);
    assert_eq!(backend.get("cachette:v0:p").await.unwrap(), before);
}

#[cfg(feature = "json")]
#[tokio::test]
async fn get_or_load_loads_over_another_codec_s_entry_and_replaces_it() {
    let backend = memory();
    let (json, postcard) = json_and_postcard(&backend).await;
    json.set("p", &profile(), &options()).await.unwrap();

    let mut fresh = profile();
    fresh.id = 7;
    let expected = fresh.clone();
    let loaded = postcard
        .get_or_load(
            "p",
            move |_| async move { Ok::<_, std::io::Error>(Some(fresh)) },
            &options(),
        )
        .await
        .unwrap();

    assert_eq!(loaded.as_ref(), Some(&expected));
    let stats = postcard.stats();
    assert_eq!((stats.loads, stats.misses, stats.decode_errors), (1, 1, 0));
    let stored = backend.get("cachette:v0:p").await.unwrap().unwrap();
    assert_eq!(stored[5], 3, "the entry now holds postcard's codec id");
    assert_eq!(postcard.get::<Profile>("p").await.unwrap(), Some(expected));
}

#[tokio::test]
async fn a_corrupt_envelope_reads_as_a_miss_and_is_counted() {
    let backend = memory();
    let cache = Cache::builder(backend.clone())
        .soft_ttl(Duration::from_secs(10))
        .build()
        .await
        .unwrap();
    let unknown_version = Bytes::from_static(b"\xCCcht\x09rest");
    let truncated = Bytes::from_static(b"\xCCcht\x01\x03");
    let not_an_envelope = Bytes::from_static(b"plain");
    for (key, bytes) in [
        ("a", unknown_version),
        ("b", truncated),
        ("c", not_an_envelope),
    ] {
        backend
            .set(&format!("cachette:v0:{key}"), bytes, &SetOptions::new())
            .await
            .unwrap();
        assert_eq!(cache.get::<u32>(key).await.unwrap(), None, "{key}");
    }
    assert_eq!(cache.stats().corrupt, 3);
    assert_eq!(cache.stats().misses, 3);

    // get_or_load replaces a corrupt entry.
    let value = cache
        .get_or_load(
            "a",
            |_| async { Ok::<_, std::io::Error>(Some(1_u32)) },
            &options(),
        )
        .await
        .unwrap();
    assert_eq!(value, Some(1));
    assert_eq!(cache.get::<u32>("a").await.unwrap(), Some(1));
}

#[cfg(feature = "lz4")]
#[tokio::test]
async fn compression_round_trips_and_shrinks_a_compressible_value() {
    let backend = memory();
    let cache = Cache::builder(backend.clone())
        .codec(RawBytes)
        .compress_above(256)
        .build()
        .await
        .unwrap();
    let big = "all work and no play makes jack a dull boy. ".repeat(500);
    cache.set("big", big.as_str(), &options()).await.unwrap();
    let stored = backend.get("cachette:v0:big").await.unwrap().unwrap();
    assert!(
        stored.len() * 10 < big.len(),
        "{} bytes stored for {}",
        stored.len(),
        big.len()
    );
    assert_eq!(cache.get::<String>("big").await.unwrap(), Some(big));

    cache.set("small", "tiny", &options()).await.unwrap();
    let stored = backend.get("cachette:v0:small").await.unwrap().unwrap();
    assert!(
        stored.ends_with(b"tiny"),
        "below the threshold: not compressed"
    );
    assert_eq!(
        cache.get::<String>("small").await.unwrap().as_deref(),
        Some("tiny")
    );
}

#[tokio::test]
async fn bump_version_hides_old_keys_and_survives_into_a_new_cache() {
    let backend = memory();
    let first = Cache::builder(backend.clone())
        .namespace("users")
        .build()
        .await
        .unwrap();
    first.set("u1", &1_u32, &options()).await.unwrap();
    assert_eq!(first.version(), 0);

    assert_eq!(first.bump_version().await.unwrap(), 1);
    assert_eq!(first.get::<u32>("u1").await.unwrap(), None);
    first.set("u2", &2_u32, &options()).await.unwrap();
    assert!(backend.get("users:v1:u2").await.unwrap().is_some());

    let second = Cache::builder(backend.clone())
        .namespace("users")
        .build()
        .await
        .unwrap();
    assert_eq!(second.version(), 1);
    assert_eq!(second.get::<u32>("u1").await.unwrap(), None);
    assert_eq!(second.get::<u32>("u2").await.unwrap(), Some(2));

    // A running cache sees another's bump after refresh_version.
    assert_eq!(second.bump_version().await.unwrap(), 2);
    assert_eq!(first.get::<u32>("u2").await.unwrap(), Some(2));
    assert_eq!(first.refresh_version().await.unwrap(), 2);
    assert_eq!(first.get::<u32>("u2").await.unwrap(), None);

    // Another namespace is untouched.
    let other = Cache::builder(backend.clone())
        .namespace("orders")
        .build()
        .await
        .unwrap();
    assert_eq!(other.version(), 0);
}

#[tokio::test]
async fn bump_version_moves_past_a_deleted_counter() {
    let backend = memory();
    let cache = Cache::builder(backend.clone()).build().await.unwrap();
    cache.bump_version().await.unwrap();
    cache.bump_version().await.unwrap();
    cache.set("k", &1_u8, &options()).await.unwrap();
    backend.delete("cachette:__version").await.unwrap();
    assert_eq!(cache.bump_version().await.unwrap(), 3);
    assert_eq!(cache.get::<u8>("k").await.unwrap(), None);
    let fresh = Cache::builder(backend).build().await.unwrap();
    assert_eq!(fresh.version(), 3);
}

#[tokio::test]
async fn long_keys_are_hashed_and_round_trip() {
    let backend: Arc<dyn Backend> =
        Arc::new(MemoryBackend::builder().max_key_len(128).build().unwrap());
    let cache = Cache::builder(backend.clone()).build().await.unwrap();
    let long_a = format!("a{}", "x".repeat(300));
    let long_b = format!("b{}", "x".repeat(300));
    cache.set(&long_a, &"A", &options()).await.unwrap();
    cache.set(&long_b, &"B", &options()).await.unwrap();
    assert_eq!(
        cache.get::<String>(&long_a).await.unwrap().as_deref(),
        Some("A")
    );
    assert_eq!(
        cache.get::<String>(&long_b).await.unwrap().as_deref(),
        Some("B")
    );
    assert!(cache.delete(&long_a).await.unwrap());
    assert_eq!(cache.get::<String>(&long_a).await.unwrap(), None);

    // A key that looks like a hashed one is hashed too.
    cache.set("#h:0123", &"C", &options()).await.unwrap();
    assert!(backend.get("cachette:v0:#h:0123").await.unwrap().is_none());
    assert_eq!(
        cache.get::<String>("#h:0123").await.unwrap().as_deref(),
        Some("C")
    );

    // Counters are never hashed.
    let error = cache.incr(&long_a, 1, Expiry::Never).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
}

#[tokio::test]
async fn empty_keys_are_invalid_input() {
    let cache = Cache::builder(memory()).build().await.unwrap();
    let error = cache.get::<u8>("").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
}

#[tokio::test]
async fn batches_answer_in_order() {
    let cache = Cache::builder(memory()).build().await.unwrap();
    cache
        .set_many(&[("a", &1_u32), ("b", &2_u32)], &options())
        .await
        .unwrap();
    let values = cache
        .get_many::<u32>(&["b", "missing", "a", "b"])
        .await
        .unwrap();
    assert_eq!(values, [Some(2), None, Some(1), Some(2)]);
}

#[tokio::test]
async fn counters_are_raw_and_namespaced() {
    let backend = memory();
    let cache = Cache::builder(backend.clone())
        .namespace("hits")
        .build()
        .await
        .unwrap();
    assert_eq!(cache.incr("page", 5, Expiry::Never).await.unwrap(), 5);
    assert_eq!(cache.decr("page", 2, Expiry::Never).await.unwrap(), 3);
    assert_eq!(
        backend.get("hits:v0:page").await.unwrap().as_deref(),
        Some(&b"3"[..])
    );
}

#[tokio::test]
async fn tags_are_namespaced_and_invalidate() {
    let backend = memory();
    let a = Cache::builder(backend.clone())
        .namespace("a")
        .build()
        .await
        .unwrap();
    let b = Cache::builder(backend.clone())
        .namespace("b")
        .build()
        .await
        .unwrap();
    let tagged = EntryOptions::new().tags(["team"]);
    a.set("x", &1_u8, &tagged).await.unwrap();
    a.set("y", &2_u8, &options()).await.unwrap();
    b.set("x", &3_u8, &tagged).await.unwrap();
    a.invalidate_tags(&["team"]).await.unwrap();
    assert_eq!(a.get::<u8>("x").await.unwrap(), None);
    assert_eq!(a.get::<u8>("y").await.unwrap(), Some(2));
    assert_eq!(b.get::<u8>("x").await.unwrap(), Some(3));
}

#[tokio::test(start_paused = true)]
async fn ttl_and_jitter_stay_within_bounds() {
    let backend = memory();
    let cache = Cache::builder(backend.clone())
        .default_ttl(Duration::from_secs(10))
        .jitter(Duration::from_secs(5))
        .build()
        .await
        .unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..50 {
        let key = format!("k{i}");
        cache.set(&key, &i, &options()).await.unwrap();
        let KeyTtl::ExpiresIn(ttl) = cache.ttl(&key).await.unwrap() else {
            panic!("{key} has no TTL");
        };
        assert!(
            ttl >= Duration::from_secs(10) && ttl <= Duration::from_secs(15),
            "{ttl:?}"
        );
        seen.insert(ttl);
    }
    assert!(seen.len() > 10, "jitter spreads the TTLs: {seen:?}");

    // A per-call TTL without jitter is exact.
    let exact = EntryOptions::new()
        .ttl(Duration::from_secs(3))
        .jitter(Duration::ZERO);
    cache.set("exact", &0, &exact).await.unwrap();
    assert_eq!(
        cache.ttl("exact").await.unwrap(),
        KeyTtl::ExpiresIn(Duration::from_secs(3))
    );
}

#[tokio::test(start_paused = true)]
async fn values_expire_with_the_hard_ttl() {
    let cache = Cache::builder(memory())
        .default_ttl(Duration::from_secs(10))
        .build()
        .await
        .unwrap();
    cache.set("k", &1_u8, &options()).await.unwrap();
    tokio::time::advance(Duration::from_millis(9_999)).await;
    assert_eq!(cache.get::<u8>("k").await.unwrap(), Some(1));
    // The memory engine never expires early, so give it its millisecond.
    tokio::time::advance(Duration::from_millis(2)).await;
    assert_eq!(cache.get::<u8>("k").await.unwrap(), None);
}

#[tokio::test]
async fn the_builder_rejects_inconsistent_options() {
    let secs = Duration::from_secs;
    let cases: Vec<(&str, cachette::CacheBuilder)> = vec![
        (
            "zero ttl",
            Cache::builder(memory()).default_ttl(Duration::ZERO),
        ),
        (
            "soft_ttl above ttl",
            Cache::builder(memory())
                .default_ttl(secs(10))
                .soft_ttl(secs(10)),
        ),
        (
            "fail-safe shorter than the soft ttl",
            Cache::builder(memory())
                .default_ttl(secs(60))
                .soft_ttl(secs(30))
                .fail_safe(secs(10)),
        ),
        (
            "soft timeout above the hard timeout",
            Cache::builder(memory())
                .soft_timeout(secs(2))
                .hard_timeout(secs(1)),
        ),
        (
            "zero negative ttl",
            Cache::builder(memory()).negative_ttl(Duration::ZERO),
        ),
        (
            "a colon in the namespace",
            Cache::builder(memory()).namespace("a:b"),
        ),
        ("an empty namespace", Cache::builder(memory()).namespace("")),
    ];
    for (case, builder) in cases {
        let error = builder.build().await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config, "{case}: {error}");
    }
}

#[tokio::test]
async fn per_call_options_are_checked_too() {
    let cache = Cache::builder(memory())
        .default_ttl(Duration::from_secs(10))
        .build()
        .await
        .unwrap();
    let bad = EntryOptions::new().soft_ttl(Duration::from_secs(20));
    let error = cache.set("k", &1_u8, &bad).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    let error = cache
        .set(
            "k",
            &1_u8,
            &EntryOptions::new().fail_safe(Duration::from_secs(5)),
        )
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
}

/// A backend with only the required methods: no conditional sets.
#[derive(Debug, Default)]
struct Minimal(parking_lot::Mutex<std::collections::HashMap<String, Bytes>>);

#[async_trait::async_trait]
impl Backend for Minimal {
    fn name(&self) -> &'static str {
        "minimal"
    }

    async fn get(&self, key: &str) -> cachette::Result<Option<Bytes>> {
        Ok(self.0.lock().get(key).cloned())
    }

    async fn set(&self, key: &str, value: Bytes, _: &SetOptions) -> cachette::Result<bool> {
        self.0.lock().insert(key.to_owned(), value);
        Ok(true)
    }

    async fn delete(&self, key: &str) -> cachette::Result<bool> {
        Ok(self.0.lock().remove(key).is_some())
    }
}

#[tokio::test]
async fn a_distributed_lock_needs_conditional_sets() {
    let error = Cache::builder(Arc::new(Minimal::default()))
        .distributed_lock(Duration::from_secs(5), Duration::from_secs(1))
        .build()
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.message().contains("minimal"), "{error}");

    // The rest works over such a backend.
    let cache = Cache::builder(Arc::new(Minimal::default()))
        .build()
        .await
        .unwrap();
    cache.set("k", &1_u8, &options()).await.unwrap();
    assert_eq!(cache.get::<u8>("k").await.unwrap(), Some(1));
}
