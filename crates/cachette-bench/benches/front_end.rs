//! The typed front end's hit path against the raw backend hit and against
//! moka's `get_with`: `cargo bench -p cachette-bench --bench front_end`.
//!
//! All three read a small struct (or its bytes) that is already cached.
//! The front end uses the compact codec (postcard) over the memory backend,
//! behind `Arc<dyn Backend>` like the raw read it is compared with.

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use cachette::{Backend, Cache, EntryOptions, MemoryBackend, SetOptions};
use criterion::{Criterion, criterion_group, criterion_main};
use serde::{Deserialize, Serialize};

/// A typical small cached record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Profile {
    id: u64,
    name: String,
    active: bool,
    score: f32,
}

fn profile() -> Profile {
    Profile {
        id: 42,
        name: "Ada Lovelace".to_owned(),
        active: true,
        score: 9.5,
    }
}

fn front_end(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let memory = MemoryBackend::builder()
        .max_entries(10_000)
        .build()
        .expect("memory");
    let backend: Arc<dyn Backend> = Arc::new(memory.clone());
    let cache = runtime
        .block_on(Cache::builder(backend.clone()).namespace("bench").build())
        .expect("cache");
    runtime
        .block_on(cache.set("user:42", &profile(), &EntryOptions::default()))
        .expect("set");
    // The raw read sees a value of the same size under a key of the same length.
    let raw_key = "bench:v0:user:42";
    let encoded = Bytes::from(postcard::to_stdvec(&profile()).expect("encode"));
    runtime
        .block_on(backend.set(raw_key, encoded, &SetOptions::new()))
        .expect("raw set");
    let moka: moka::sync::Cache<String, Profile> = moka::sync::Cache::new(10_000);
    moka.insert("user:42".to_owned(), profile());

    let mut group = c.benchmark_group("hit");
    group.bench_function("raw dyn Backend::get", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(backend.get(black_box(raw_key)).await.expect("get")) })
    });
    group.bench_function("MemoryBackend::get_sync", |b| {
        b.iter(|| black_box(memory.get_sync(black_box(raw_key)).expect("get")))
    });
    group.bench_function("Cache::get::<Profile> (postcard)", |b| {
        b.to_async(&runtime).iter(|| async {
            black_box(
                cache
                    .get::<Profile>(black_box("user:42"))
                    .await
                    .expect("get"),
            )
        })
    });
    group.bench_function("moka get_with", |b| {
        b.iter(|| black_box(moka.get_with_by_ref(black_box("user:42"), profile)))
    });
    group.finish();
}

criterion_group!(benches, front_end);
criterion_main!(benches);
