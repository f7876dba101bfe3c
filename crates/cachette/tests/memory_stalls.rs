//! The memory engine never holds a shard's lock for a whole `keys` scan or
//! while `clear` frees the values, so that readers of the shard are not
//! stalled behind either (the latency figures are in `docs/benchmarks.md`,
//! from the `stall` benchmark). Both tests use one shard, so that every
//! key shares the lock in question.
#![cfg(feature = "memory")]

#[path = "support/block_on.rs"]
mod support;

use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use cachette::{Backend, MemoryBackend, SetOptions};
use futures_util::StreamExt;
use support::block_on;

const ENTRIES: usize = 100_000;

fn one_shard() -> MemoryBackend {
    MemoryBackend::builder()
        .shards(1)
        .max_entries(2 * ENTRIES as u64)
        .build()
        .expect("a one-shard memory backend")
}

/// A `keys` stream reads the shard a chunk at a time: a `clear` made after
/// its first key ends it within one chunk (at most 1,024 slots), where a
/// scan made under one lock hold would still yield every key.
#[test]
fn a_key_listing_reads_the_shard_in_chunks() {
    let cache = one_shard();
    block_on(async {
        for i in 0..ENTRIES {
            let key = format!("k{i}");
            let value = Bytes::from_static(b"v");
            assert!(cache.set(&key, value, &SetOptions::new()).await.unwrap());
        }
        let mut keys = cache.keys("k*").await.unwrap();
        assert!(keys.next().await.is_some());
        cache.clear().await.unwrap();
        let mut after = 0;
        while let Some(key) = keys.next().await {
            key.unwrap();
            after += 1;
        }
        assert!(after < 1_024, "{after} keys listed after the clear");
    });
}

/// Tells the test when the value it owns is being freed, then waits (up
/// to a generous bound) for a read of the same shard to answer.
struct Probe {
    cache: MemoryBackend,
    answered: mpsc::Sender<bool>,
}

impl Drop for Probe {
    fn drop(&mut self) {
        let cache = self.cache.clone();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(block_on(cache.get("other")).is_ok());
        });
        let answered = rx.recv_timeout(Duration::from_secs(30)).unwrap_or(false);
        let _ = self.answered.send(answered);
    }
}

impl AsRef<[u8]> for Probe {
    fn as_ref(&self) -> &[u8] {
        b"probe"
    }
}

/// `clear` frees the entries after it released the shard's lock: a read of
/// the shard made while a value is being freed is answered at once.
#[test]
fn clear_frees_values_outside_the_shard_lock() {
    let cache = one_shard();
    let (answered, reads) = mpsc::channel();
    let probe = Probe {
        cache: cache.clone(),
        answered,
    };
    block_on(async {
        let value = Bytes::from_owner(probe);
        assert!(cache.set("probe", value, &SetOptions::new()).await.unwrap());
        cache.clear().await.unwrap();
    });
    let answered = reads.recv().expect("the value was freed by clear");
    assert!(
        answered,
        "a read of the shard waited for clear to free its values"
    );
}
