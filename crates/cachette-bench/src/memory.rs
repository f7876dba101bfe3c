//! Part 3, memory per entry: the live bytes a cache holds after it is
//! filled, less what was live before it was built, per entry.
//!
//! The bytes come from [`CountingAllocator`], the binary's global
//! allocator: the sizes requested from the system allocator, live (freed
//! blocks subtracted). The system allocator's own per-block overhead is not
//! included. Counting is switched on only for this part, so the other
//! parts do not pay for a shared atomic on every allocation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use serde::Serialize;

use crate::caches::{BenchCache, CacheKind, Workload};

/// Key bytes per entry.
const KEY_LEN: usize = 16;
/// Value bytes per entry.
const VALUE_LEN: usize = 64;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static COUNTING: AtomicBool = AtomicBool::new(false);

/// `std::alloc::System`, counting the live bytes while counting is on.
#[derive(Debug)]
pub(crate) struct CountingAllocator;

fn record(delta: isize) {
    if COUNTING.load(Ordering::Relaxed) {
        LIVE.fetch_add(delta, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments,
// which meet `System`'s contract because they meet this one's; the counter
// has no effect on the memory.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is; see above.
        let block = unsafe { System.alloc(layout) };
        if !block.is_null() {
            record(layout.size() as isize);
        }
        block
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is; see above.
        let block = unsafe { System.alloc_zeroed(layout) };
        if !block.is_null() {
            record(layout.size() as isize);
        }
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is; see above.
        unsafe { System.dealloc(block, layout) };
        record(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is; see above.
        let moved = unsafe { System.realloc(block, layout, new_size) };
        if !moved.is_null() {
            record(new_size as isize - layout.size() as isize);
        }
        moved
    }
}

/// The live bytes counted so far.
fn live_bytes() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// What to run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct MemoryConfig {
    /// Entries inserted.
    pub(crate) entries: usize,
    /// The bound of the bounded caches (above `entries`: no eviction).
    pub(crate) capacity: u64,
}

/// The results of part 3.
#[derive(Debug, Serialize)]
pub(crate) struct MemoryReport {
    /// What was run.
    pub(crate) config: MemoryConfig,
    /// How the numbers were made.
    pub(crate) notes: Vec<String>,
    /// Entries inserted.
    pub(crate) entries: usize,
    /// The bound of the bounded caches.
    pub(crate) capacity: u64,
    /// Key plus value bytes of one entry.
    pub(crate) payload_per_entry: usize,
    /// Every cache.
    pub(crate) caches: Vec<CacheMemory>,
    /// Wall time of part 3.
    pub(crate) seconds: f64,
}

/// One cache's memory.
#[derive(Debug, Serialize)]
pub(crate) struct CacheMemory {
    /// The cache.
    pub(crate) cache: String,
    /// Live bytes after filling, less before building.
    pub(crate) total_bytes: i64,
    /// `total_bytes / entries`.
    pub(crate) bytes_per_entry: f64,
    /// `bytes_per_entry - (key + value)`.
    pub(crate) overhead_per_entry: f64,
    /// Entries found by reading every key back after the measurement.
    pub(crate) entries_retained: usize,
}

/// The caches of part 3, the reference first.
pub(crate) fn caches() -> Vec<CacheKind> {
    vec![
        CacheKind::HashMap,
        CacheKind::cachette_default(),
        CacheKind::Moka,
        CacheKind::QuickCache,
        CacheKind::Lru,
    ]
}

/// Runs part 3. Call it while no other thread of the harness runs: the
/// counter is process-wide.
pub(crate) fn run(config: &MemoryConfig) -> MemoryReport {
    let started = Instant::now();
    COUNTING.store(true, Ordering::SeqCst);
    let caches = caches()
        .into_iter()
        .map(|cache| {
            let before = live_bytes();
            let (after, entries_retained) = cache.run(
                config.capacity,
                Fill {
                    entries: config.entries,
                },
            );
            let total = after - before;
            let per_entry = total as f64 / config.entries.max(1) as f64;
            eprintln!(
                "[memory] {}: {per_entry:.1} bytes per entry ({entries_retained} of {} entries retained)",
                cache.name(),
                config.entries
            );
            CacheMemory {
                cache: cache.name(),
                total_bytes: total as i64,
                bytes_per_entry: per_entry,
                overhead_per_entry: per_entry - (KEY_LEN + VALUE_LEN) as f64,
                entries_retained,
            }
        })
        .collect();
    COUNTING.store(false, Ordering::SeqCst);
    MemoryReport {
        config: config.clone(),
        notes: vec![
            format!(
                "{} entries: String keys format!(\"{{:016}}\", i) ({KEY_LEN} B), distinct Bytes::from(vec![..; {VALUE_LEN}]) values; \
                 bounded caches built for {} entries, so nothing is evicted.",
                config.entries, config.capacity
            ),
            "Bytes per entry = (live bytes after filling and settling − live bytes before building) / entries; \
             live bytes are the sizes requested from the system allocator by a counting #[global_allocator], \
             without malloc's own per-block overhead. Structures sized from the capacity at build time count too."
                .to_owned(),
            "cachette: default builder with max_entries; moka: sync::Cache with max_capacity, run_pending_tasks() after filling; \
             quick_cache: sync::Cache::new; lru: LruCache::new; HashMap: std HashMap<String, Bytes>, the reference."
                .to_owned(),
        ],
        entries: config.entries,
        capacity: config.capacity,
        payload_per_entry: KEY_LEN + VALUE_LEN,
        caches,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// Fills a cache; returns the live bytes once it is full and settled, and
/// how many entries it kept (read back after the measurement, since a
/// first read may allocate).
struct Fill {
    entries: usize,
}

impl Workload<String, Bytes> for Fill {
    type Output = (isize, usize);

    fn run<C: BenchCache<String, Bytes> + 'static>(self, cache: C) -> (isize, usize) {
        for i in 0..self.entries {
            let key = format!("{i:016}");
            cache.insert(&key, Bytes::from(vec![i as u8; VALUE_LEN]));
        }
        cache.settle();
        let live = live_bytes();
        let retained = (0..self.entries)
            .filter(|i| black_box(cache.get(&format!("{i:016}"))).is_some())
            .count();
        (live, retained)
    }
}
