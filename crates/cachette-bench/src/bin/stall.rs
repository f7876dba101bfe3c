//! How long a reader waits while the memory engine lists or clears a large
//! store: fills `--entries` keys, then runs `keys("*")` (and then `clear`)
//! in one task while a reader thread calls `get_sync` in a loop and a
//! writer thread calls `set_sync` now and then (a queued writer is what
//! makes readers wait behind a long read lock). Prints the reader's
//! latency p50, p99 and max during each operation.
//!
//! `cargo run --release -p cachette-bench --bin stall -- --entries 1000000`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use cachette::{Backend, MemoryBackend, SetOptions};
use clap::Parser;
use futures_util::StreamExt;

#[derive(Parser)]
struct Args {
    /// Entries filled before the measured operations.
    #[arg(long, default_value_t = 1_000_000)]
    entries: u64,
}

fn key(i: u64) -> String {
    format!("key:{i}")
}

/// Reads random keys until told to stop; returns each read's latency.
fn reader(cache: MemoryBackend, entries: u64, stop: Arc<AtomicBool>) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(1 << 20);
    let mut i: u64 = 0x9E37_79B9;
    while !stop.load(Ordering::Relaxed) {
        i = i
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let key = key((i >> 33) % entries);
        let start = Instant::now();
        let _ = cache.get_sync(&key);
        latencies.push(start.elapsed());
    }
    latencies
}

/// Writes a key every 100 µs until told to stop.
fn writer(cache: MemoryBackend, stop: Arc<AtomicBool>) {
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let _ = cache.set_sync(
            &format!("writer:{}", i % 1_000),
            "w".into(),
            &SetOptions::new(),
        );
        i += 1;
        thread::sleep(Duration::from_micros(100));
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index]
}

/// Runs `operation` with a reader and a writer beside it; prints the
/// reader's latencies.
fn measure(label: &str, cache: &MemoryBackend, entries: u64, operation: impl FnOnce()) {
    let stop = Arc::new(AtomicBool::new(false));
    let reading = {
        let (cache, stop) = (cache.clone(), stop.clone());
        thread::spawn(move || reader(cache, entries, stop))
    };
    let writing = {
        let (cache, stop) = (cache.clone(), stop.clone());
        thread::spawn(move || writer(cache, stop))
    };
    thread::sleep(Duration::from_millis(50));
    let start = Instant::now();
    operation();
    let took = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut latencies = reading.join().unwrap_or_default();
    let _ = writing.join();
    latencies.sort_unstable();
    println!(
        "{label}: took {took:?}; reader p50 {:?}, p99 {:?}, max {:?} over {} reads",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default(),
        latencies.len()
    );
}

fn fill(cache: &MemoryBackend, entries: u64) {
    for i in 0..entries {
        let _ = cache.set_sync(&key(i), "value".into(), &SetOptions::new());
    }
}

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|error| panic!("a tokio runtime: {error}"));
    let cache = MemoryBackend::default();
    fill(&cache, args.entries);
    println!(
        "memory engine, {} entries, {} shards",
        args.entries,
        cache.shard_count()
    );
    measure("keys(\"*\")", &cache, args.entries, || {
        let listed = runtime.block_on(async {
            let stream = cache
                .keys("*")
                .await
                .unwrap_or_else(|e| panic!("keys: {e}"));
            stream.count().await
        });
        println!("  listed {listed} keys");
    });
    measure("clear()", &cache, args.entries, || {
        runtime
            .block_on(cache.clear())
            .unwrap_or_else(|e| panic!("clear: {e}"));
    });
}
