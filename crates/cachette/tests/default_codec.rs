//! The default codec is postcard whatever features are enabled: the bytes a
//! `Cache` with the default codec stores are fixed here, byte for byte, so
//! that a feature turned on anywhere in a build cannot change them. Runs
//! with every feature combination the CI builds (`--all-features`, the
//! defaults, `--no-default-features --features memory`).
#![cfg(feature = "memory")]

use std::sync::Arc;
use std::time::Duration;

use cachette::cache::{Cache, Clock, EntryOptions};
use cachette::{Backend, MemoryBackend};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    customer: String,
    quantity: u32,
    coupon: Option<String>,
    items: Vec<u16>,
}

fn order() -> Order {
    Order {
        customer: "Ada".into(),
        quantity: 300,
        coupon: Some("ab".into()),
        items: vec![1, 2, 1000],
    }
}

/// The postcard encoding of [`order`]: varint lengths and integers, no
/// field names.
const PAYLOAD: &[u8] = &[
    3, b'A', b'd', b'a', // customer: length 3, then UTF-8
    0xAC, 0x02, // quantity: 300 as a varint
    1, 2, b'a', b'b', // coupon: Some, length 2, then UTF-8
    3, 1, 2, 0xE8, 0x07, // items: 3 of them, 1, 2, 1000 as varints
];

/// The envelope around [`PAYLOAD`] written at [`NOW`] with a soft TTL of
/// one minute.
const ENVELOPE: &[u8] = &[
    0xCC, b'c', b'h', b't', // magic
    1,    // format version
    3,    // codec id: postcard
    0,    // flags: none
    0x00, 0x10, 0xA5, 0xD4, 0xE8, 0x00, 0x00, 0x00, // created: NOW
    0x60, 0xFA, 0xA5, 0xD4, 0xE8, 0x00, 0x00, 0x00, // soft deadline: NOW + 60 s
    0, 0, 0, 0, 0, 0, 0, 0, // hard deadline: none
];

/// 2001-09-09T01:46:40Z in Unix milliseconds.
const NOW: u64 = 1_000_000_000_000;

/// A clock that never moves, so that envelope times are constants.
#[derive(Debug)]
struct Stopped;

impl Clock for Stopped {
    fn now_unix_ms(&self) -> u64 {
        NOW
    }
}

fn memory() -> Arc<dyn Backend> {
    Arc::new(MemoryBackend::default())
}

#[tokio::test]
async fn a_plain_value_is_stored_as_these_postcard_bytes_with_any_features() {
    let backend = memory();
    let cache = Cache::builder(backend.clone()).build().await.unwrap();
    cache
        .set("order", &order(), &EntryOptions::new())
        .await
        .unwrap();

    let stored = backend.get("cachette:v0:order").await.unwrap().unwrap();
    assert_eq!(&stored[..], PAYLOAD);
    assert_eq!(cache.get::<Order>("order").await.unwrap(), Some(order()));
}

#[tokio::test]
async fn an_envelope_is_stored_as_these_bytes_with_any_features() {
    let backend = memory();
    let cache = Cache::builder(backend.clone())
        .clock(Stopped)
        .soft_ttl(Duration::from_secs(60))
        .build()
        .await
        .unwrap();
    cache
        .set("order", &order(), &EntryOptions::new())
        .await
        .unwrap();

    let stored = backend.get("cachette:v0:order").await.unwrap().unwrap();
    let expected = [ENVELOPE, PAYLOAD].concat();
    assert_eq!(&stored[..], &expected[..]);
    assert_eq!(cache.get::<Order>("order").await.unwrap(), Some(order()));
}

#[test]
fn the_default_codec_is_postcard() {
    use cachette::Codec;
    let codec = cachette::DefaultCodec::default();
    assert_eq!((codec.name(), codec.id()), ("postcard", 3));
}
