//! Replaying a trace through the memory engine and counting hits.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use serde::ser::{Serialize, SerializeStruct, Serializer};

use crate::backend::SetOptions;
use crate::backends::memory::{MemoryBackend, Policy};

/// Requests replayed between two calls of the progress callback.
const PROGRESS_CHUNK: usize = 1 << 16;

/// What replaying one trace through one cache found.
///
/// Serializes (for JSON reports) as its fields plus `miss_ratio` and
/// `hit_ratio`, with the policy by name (`"s3fifo"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SimResult {
    /// The eviction policy of the cache.
    pub policy: Policy,
    /// The cache's bound, in entries.
    pub capacity: u64,
    /// Requests replayed: `hits + misses`.
    pub requests: u64,
    /// Requests whose key was in the cache.
    pub hits: u64,
    /// Requests whose key was not in the cache (and was then inserted).
    pub misses: u64,
}

impl SimResult {
    /// `misses / requests`; 0 for an empty trace.
    pub fn miss_ratio(&self) -> f64 {
        ratio(self.misses, self.requests)
    }

    /// `hits / requests`; 0 for an empty trace.
    pub fn hit_ratio(&self) -> f64 {
        ratio(self.hits, self.requests)
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

impl Serialize for SimResult {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut state = serializer.serialize_struct("SimResult", 7)?;
        state.serialize_field("policy", self.policy.as_str())?;
        state.serialize_field("capacity", &self.capacity)?;
        state.serialize_field("requests", &self.requests)?;
        state.serialize_field("hits", &self.hits)?;
        state.serialize_field("misses", &self.misses)?;
        state.serialize_field("miss_ratio", &self.miss_ratio())?;
        state.serialize_field("hit_ratio", &self.hit_ratio())?;
        state.end()
    }
}

/// Replays `trace` through a real [`MemoryBackend`] with this `policy`,
/// bounded to `capacity` entries in a single shard (so the policy sees the
/// whole cache, as in a textbook simulation), hashing keys with a fixed
/// seed so that every run of the same trace gives the same result.
///
/// Each request is a `get_sync` of the key written in decimal; a miss is
/// followed by a `set_sync` of a one-byte value, like a read-through cache
/// filling itself. The cache starts empty. A capacity of 0 holds nothing:
/// every request misses.
///
/// ```
/// use cachette::Policy;
/// use cachette::sim::simulate;
///
/// let result = simulate(&[1, 2, 1, 3, 1], Policy::Lru, 2);
/// assert_eq!((result.hits, result.misses), (2, 3));
/// ```
pub fn simulate(trace: &[u64], policy: Policy, capacity: u64) -> SimResult {
    replay(trace, policy, capacity, &|_| {})
}

/// Runs [`simulate`] for every pair of `capacities` × `policies` on as many
/// threads as there are CPUs, and returns the results ordered by capacity,
/// then by policy (in the order given).
///
/// `progress` is called from the worker threads with the number of requests
/// replayed since its last call, every 65,536 requests or so; the calls add
/// up to `trace.len() × capacities.len() × policies.len()`.
///
/// ```
/// use cachette::Policy;
/// use cachette::sim::{simulate_grid, zipf_trace};
///
/// let trace = zipf_trace(1.0, 1_000, 20_000, 1)?;
/// let results = simulate_grid(&trace, &Policy::ALL, &[10, 100], &|_done| {});
/// assert_eq!(results.len(), 8);
/// assert_eq!((results[0].capacity, results[0].policy), (10, Policy::Lru));
/// # Ok::<(), cachette::Error>(())
/// ```
pub fn simulate_grid(
    trace: &[u64],
    policies: &[Policy],
    capacities: &[u64],
    progress: &(dyn Fn(u64) + Sync),
) -> Vec<SimResult> {
    let jobs: Vec<(Policy, u64)> = capacities
        .iter()
        .flat_map(|&capacity| policies.iter().map(move |&policy| (policy, capacity)))
        .collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, NonZeroUsize::get)
        .min(jobs.len());
    let next = AtomicUsize::new(0);
    let mut done: Vec<(usize, SimResult)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&(policy, capacity)) = jobs.get(index) else {
                            return done;
                        };
                        done.push((index, replay(trace, policy, capacity, progress)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    done.sort_unstable_by_key(|&(index, _)| index);
    done.into_iter().map(|(_, result)| result).collect()
}

fn replay(
    trace: &[u64],
    policy: Policy,
    capacity: u64,
    progress: &(dyn Fn(u64) + Sync),
) -> SimResult {
    let mut result = SimResult {
        policy,
        capacity,
        requests: trace.len() as u64,
        hits: 0,
        misses: 0,
    };
    let cache = match capacity {
        0 => None,
        _ => MemoryBackend::builder()
            .policy(policy)
            .max_entries(capacity)
            .shards(1)
            .fixed_hash_seed()
            .build()
            // One shard and at least one entry are always valid options.
            .inspect_err(|err| tracing::error!(error = %err, "cannot build the simulated cache"))
            .ok(),
    };
    let Some(cache) = cache else {
        result.misses = result.requests;
        progress(result.requests);
        return result;
    };
    let value = Bytes::from_static(b"x");
    let options = SetOptions::new();
    let mut digits = itoa::Buffer::new();
    for chunk in trace.chunks(PROGRESS_CHUNK) {
        for &key in chunk {
            let key = digits.format(key);
            // A key of at most 20 digits and a one-byte value without TTL
            // are always accepted, so neither call can fail.
            if let Ok(Some(_)) = cache.get_sync(key) {
                result.hits += 1;
            } else {
                let _ = cache.set_sync(key, value.clone(), &options);
            }
        }
        progress(chunk.len() as u64);
    }
    result.misses = result.requests - result.hits;
    result
}

/// The number of distinct keys in `trace`.
///
/// ```
/// assert_eq!(cachette::sim::distinct_keys(&[3, 1, 3, 2, 1]), 3);
/// ```
pub fn distinct_keys(trace: &[u64]) -> u64 {
    let mut seen = hashbrown::HashSet::with_capacity_and_hasher(
        trace.len() / 4,
        foldhash::fast::FixedState::default(),
    );
    seen.extend(trace.iter().copied());
    seen.len() as u64
}
