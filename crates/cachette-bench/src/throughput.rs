//! Part 2, throughput, reported as ratios measured side by side.
//!
//! - **get-hit**: 10,000 keys pre-filled with 64 B or 4 KiB values, read by
//!   a precomputed uniform index stream;
//! - **mix 90/10**: 100,000 keys through a 10,000-entry cache, Zipf 1.0,
//!   90 % get and 10 % insert of a 64 B value (so inserts evict).
//!
//! Each at 1 and 2 threads, each thread looping over its own precomputed
//! slice. A round measures every cache once over the same streams (the
//! order rotates from round to round); the ratios ours ÷ moka and ours ÷
//! quick_cache are taken within a round, so that drift of the machine
//! between rounds cancels out, and reported as median with min and max.

use std::hint::black_box;
use std::time::Instant;

use bytes::Bytes;
use cachette::sim;
use serde::Serialize;

use crate::BoxError;
use crate::caches::{BenchCache, CacheKind, Workload};

/// The high bit of an op code marks an insert; the rest is a key index.
const INSERT: u32 = 1 << 31;

/// What to run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ThroughputConfig {
    /// Rounds per case.
    pub(crate) rounds: usize,
    /// Slices a round is cut into; the caches take turns slice by slice.
    pub(crate) slices_per_round: usize,
    /// Thread counts.
    pub(crate) threads: Vec<usize>,
    /// Operations per measurement of a get-hit case (over all threads).
    pub(crate) get_ops: usize,
    /// Keys of the get-hit cases.
    pub(crate) get_keys: usize,
    /// Value sizes of the get-hit cases.
    pub(crate) value_sizes: Vec<usize>,
    /// Operations per measurement of the mix (over all threads).
    pub(crate) mix_ops: usize,
    /// Keys of the mix.
    pub(crate) mix_keys: usize,
    /// The cache bound of the mix.
    pub(crate) mix_capacity: u64,
    /// Percentage of inserts in the mix.
    pub(crate) mix_insert_percent: u64,
    /// The Zipf exponent of the mix.
    pub(crate) mix_alpha: f64,
    /// The seed of every stream.
    pub(crate) seed: u64,
}

/// The results of part 2.
#[derive(Debug, Serialize)]
pub(crate) struct ThroughputReport {
    /// What was run.
    pub(crate) config: ThroughputConfig,
    /// How the numbers were made.
    pub(crate) notes: Vec<String>,
    /// Every case.
    pub(crate) cases: Vec<ThroughputCase>,
    /// Wall time of part 2.
    pub(crate) seconds: f64,
}

/// One workload at one thread count.
#[derive(Debug, Serialize)]
pub(crate) struct ThroughputCase {
    /// `get-hit 64 B`, `get-hit 4 KiB` or `mix 90/10`.
    pub(crate) workload: String,
    /// Threads.
    pub(crate) threads: usize,
    /// Operations per measurement, over all threads.
    pub(crate) ops: usize,
    /// Rounds.
    pub(crate) rounds: usize,
    /// Absolute numbers per cache.
    pub(crate) caches: Vec<CacheThroughput>,
    /// Ratios of each cachette policy to each competitor.
    pub(crate) ratios: Vec<Ratio>,
}

/// One cache's throughput in one case.
#[derive(Debug, Serialize)]
pub(crate) struct CacheThroughput {
    /// The cache.
    pub(crate) cache: String,
    /// Median over rounds, operations per second.
    pub(crate) median_ops_per_sec: f64,
    /// Slowest round.
    pub(crate) min_ops_per_sec: f64,
    /// Fastest round.
    pub(crate) max_ops_per_sec: f64,
    /// Share of gets that hit (should be 1 for get-hit).
    pub(crate) get_hit_ratio: f64,
}

/// ours ÷ theirs, per round.
#[derive(Debug, Serialize)]
pub(crate) struct Ratio {
    /// The cachette configuration.
    pub(crate) cache: String,
    /// The competitor.
    pub(crate) versus: String,
    /// Median over rounds.
    pub(crate) median: f64,
    /// Smallest round.
    pub(crate) min: f64,
    /// Largest round.
    pub(crate) max: f64,
    /// Every round, in order.
    pub(crate) per_round: Vec<f64>,
}

/// One measurement, or the sum of several.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    seconds: f64,
    ops: usize,
    gets: u64,
    hits: u64,
}

impl Sample {
    fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.seconds
    }

    fn add(&mut self, other: Sample) {
        self.seconds += other.seconds;
        self.ops += other.ops;
        self.gets += other.gets;
        self.hits += other.hits;
    }
}

/// Measures one cache on a set of per-thread streams.
type Measure<'a> = Box<dyn Fn(&[&[u32]]) -> Sample + 'a>;

/// Runs part 2.
pub(crate) fn run(config: &ThroughputConfig) -> Result<ThroughputReport, BoxError> {
    let started = Instant::now();
    let mut cases = Vec::new();

    // cachette's default first, then the competitors, then (get-hit only)
    // cachette's other policies.
    let competitors = [
        CacheKind::cachette_default(),
        CacheKind::Moka,
        CacheKind::QuickCache,
    ];
    let get_caches: Vec<CacheKind> = competitors
        .into_iter()
        .chain(CacheKind::cachette_policies().filter(|&c| c != CacheKind::cachette_default()))
        .collect();
    let get_keys = keys(config.get_keys);
    for &size in &config.value_sizes {
        let values = values(config.get_keys, size);
        let workload = format!("get-hit {}", size_label(size));
        for &threads in &config.threads {
            let streams = split(config.get_ops, threads, |thread, len| {
                Ok(uniform_stream(config.get_keys, len, config.seed ^ thread))
            })?;
            let measures: Vec<(CacheKind, Measure<'_>)> = get_caches
                .iter()
                .map(|&cache| {
                    let workload = GetHit {
                        keys: &get_keys,
                        values: &values,
                    };
                    // Twice the keys: every key stays, whatever the
                    // admission policy.
                    (cache, cache.run(2 * config.get_keys as u64, workload))
                })
                .collect();
            cases.push(measure_case(
                &workload, threads, config, &measures, &streams,
            ));
        }
    }

    let mix_keys = keys(config.mix_keys);
    let mix_values = values(config.mix_keys, 64);
    let warmup = mix_stream(config, config.mix_ops.min(4 * config.mix_keys), u64::MAX)?;
    let workload = format!(
        "mix {}/{}",
        100 - config.mix_insert_percent,
        config.mix_insert_percent
    );
    for &threads in &config.threads {
        let streams = split(config.mix_ops, threads, |thread, len| {
            mix_stream(config, len, thread)
        })?;
        let measures: Vec<(CacheKind, Measure<'_>)> = competitors
            .iter()
            .map(|&cache| {
                let workload = Mix {
                    keys: &mix_keys,
                    values: &mix_values,
                    warmup: &warmup,
                };
                (cache, cache.run(config.mix_capacity, workload))
            })
            .collect();
        cases.push(measure_case(
            &workload, threads, config, &measures, &streams,
        ));
    }

    Ok(ThroughputReport {
        config: config.clone(),
        notes: notes(config),
        cases,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn notes(config: &ThroughputConfig) -> Vec<String> {
    vec![
        format!(
            "Every cache is String -> Bytes: cachette get_sync(&str)/set_sync, moka sync::Cache::get(&String)/insert, \
             quick_cache sync::Cache::get(&String)/insert; keys precomputed, owned keys cloned on insert only where the API needs them. \
             {} rounds of {} slices: the caches take turns slice by slice, in an order that rotates; \
             a round's ops/s = its operations / the sum of its slices' times; ratios are taken within a round.",
            config.rounds, config.slices_per_round
        ),
        format!(
            "get-hit: {} keys pre-filled (capacity {}, so all stay), one distinct Bytes per key, \
             uniform random key stream precomputed per thread; every get is black_boxed.",
            config.get_keys,
            2 * config.get_keys
        ),
        format!(
            "mix: {} keys, capacity {}, Zipf {} key stream precomputed per thread, {}% gets, {}% inserts of a 64 B value; \
             caches warmed with the same kind of stream before the first round and reused across rounds.",
            config.mix_keys,
            config.mix_capacity,
            config.mix_alpha,
            100 - config.mix_insert_percent,
            config.mix_insert_percent
        ),
        "A slice's time runs from spawning its threads to joining them; \
         one discarded warm-up slice per cache precedes the rounds."
            .to_owned(),
    ]
}

/// Runs `config.rounds` rounds over `measures` and computes the ratios.
fn measure_case(
    workload: &str,
    threads: usize,
    config: &ThroughputConfig,
    measures: &[(CacheKind, Measure<'_>)],
    streams: &[Vec<u32>],
) -> ThroughputCase {
    let ops = streams.iter().map(Vec::len).sum();
    // A round is cut into slices, and the caches take turns slice by
    // slice, so that a burst of outside load hits them all alike.
    let slices = config.slices_per_round.max(1);
    let slice = |index: usize| -> Vec<&[u32]> {
        streams
            .iter()
            .map(|stream| {
                let len = stream.len();
                &stream[index * len / slices..(index + 1) * len / slices]
            })
            .collect()
    };
    // A discarded slice first: page faults, lazy promotions, frequency.
    for (_, measure) in measures {
        measure(&slice(0));
    }
    // samples[cache][round]
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); measures.len()];
    for round in 0..config.rounds {
        let mut totals = vec![Sample::default(); measures.len()];
        for index in 0..slices {
            let part = slice(index);
            for offset in 0..measures.len() {
                let cache = (round + index + offset) % measures.len();
                totals[cache].add((measures[cache].1)(&part));
            }
        }
        for (samples, total) in samples.iter_mut().zip(totals) {
            samples.push(total);
        }
        let line: Vec<String> = measures
            .iter()
            .zip(&samples)
            .map(|((cache, _), s)| {
                let last = s.last().map_or(0.0, Sample::ops_per_sec);
                format!("{} {:.2} M", cache.name(), last / 1e6)
            })
            .collect();
        eprintln!(
            "[throughput] {workload}, {threads} thread(s), round {}/{}: {} ops/s",
            round + 1,
            config.rounds,
            line.join(", ")
        );
    }

    let caches = measures
        .iter()
        .zip(&samples)
        .map(|((cache, _), samples)| {
            let rates: Vec<f64> = samples.iter().map(Sample::ops_per_sec).collect();
            let (median, min, max) = summary(&rates);
            let gets: u64 = samples.iter().map(|s| s.gets).sum();
            let hits: u64 = samples.iter().map(|s| s.hits).sum();
            CacheThroughput {
                cache: cache.name(),
                median_ops_per_sec: median,
                min_ops_per_sec: min,
                max_ops_per_sec: max,
                get_hit_ratio: if gets == 0 {
                    0.0
                } else {
                    hits as f64 / gets as f64
                },
            }
        })
        .collect();

    let mut ratios = Vec::new();
    let position = |kind: CacheKind| measures.iter().position(|(cache, _)| *cache == kind);
    for (ours, (cache, _)) in measures.iter().enumerate() {
        if !matches!(cache, CacheKind::Cachette(_)) {
            continue;
        }
        for theirs in [CacheKind::Moka, CacheKind::QuickCache] {
            let Some(theirs_index) = position(theirs) else {
                continue;
            };
            let per_round: Vec<f64> = samples[ours]
                .iter()
                .zip(&samples[theirs_index])
                .map(|(a, b)| a.ops_per_sec() / b.ops_per_sec())
                .collect();
            let (median, min, max) = summary(&per_round);
            ratios.push(Ratio {
                cache: cache.name(),
                versus: theirs.name(),
                median,
                min,
                max,
                per_round,
            });
        }
    }
    ThroughputCase {
        workload: workload.to_owned(),
        threads,
        ops,
        rounds: config.rounds,
        caches,
        ratios,
    }
}

/// Runs `op` over every stream, one thread per stream, and times it.
fn measure<C: Sync>(cache: &C, streams: &[&[u32]], op: impl Fn(&C, u32) -> Hit + Sync) -> Sample {
    let op = &op;
    let started = Instant::now();
    let (gets, hits) = std::thread::scope(|scope| {
        let workers: Vec<_> = streams
            .iter()
            .map(|stream| {
                scope.spawn(move || {
                    let (mut gets, mut hits) = (0_u64, 0_u64);
                    for &code in *stream {
                        match op(cache, code) {
                            Hit::Yes => (gets, hits) = (gets + 1, hits + 1),
                            Hit::No => gets += 1,
                            Hit::Insert => {}
                        }
                    }
                    (gets, hits)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .fold((0, 0), |(g, h), (gets, hits)| (g + gets, h + hits))
    });
    Sample {
        seconds: started.elapsed().as_secs_f64(),
        ops: streams.iter().map(|stream| stream.len()).sum(),
        gets,
        hits,
    }
}

/// What one operation was.
#[derive(Debug, Clone, Copy)]
enum Hit {
    Yes,
    No,
    Insert,
}

fn get<C: BenchCache<String, Bytes>>(cache: &C, key: &String) -> Hit {
    if black_box(cache.get(key)).is_some() {
        Hit::Yes
    } else {
        Hit::No
    }
}

/// The get-hit workload: fills the cache, reads every key once (so that
/// values are in their steady shared form), then measures gets.
struct GetHit<'a> {
    keys: &'a [String],
    values: &'a [Bytes],
}

impl<'a> Workload<String, Bytes> for GetHit<'a> {
    type Output = Measure<'a>;

    fn run<C: BenchCache<String, Bytes> + 'static>(self, cache: C) -> Measure<'a> {
        let keys = self.keys;
        for (key, value) in keys.iter().zip(self.values) {
            cache.insert(key, value.clone());
        }
        cache.settle();
        for key in keys {
            black_box(cache.get(key));
        }
        Box::new(move |streams| {
            measure(&cache, streams, |cache, code| {
                get(cache, &keys[code as usize])
            })
        })
    }
}

/// The mix: warms the cache up with a stream like the measured ones, then
/// measures gets and inserts.
struct Mix<'a> {
    keys: &'a [String],
    values: &'a [Bytes],
    warmup: &'a [u32],
}

impl<'a> Workload<String, Bytes> for Mix<'a> {
    type Output = Measure<'a>;

    fn run<C: BenchCache<String, Bytes> + 'static>(self, cache: C) -> Measure<'a> {
        let (keys, values) = (self.keys, self.values);
        let op = move |cache: &C, code: u32| {
            let index = (code & !INSERT) as usize;
            if code & INSERT == 0 {
                get(cache, &keys[index])
            } else {
                cache.insert(&keys[index], values[index].clone());
                Hit::Insert
            }
        };
        for &code in self.warmup {
            op(&cache, code);
        }
        cache.settle();
        Box::new(move |streams| measure(&cache, streams, op))
    }
}

/// `count` keys as the memory part formats them: 16 digits.
fn keys(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{i:016}")).collect()
}

/// One distinct value of `size` bytes per key.
fn values(count: usize, size: usize) -> Vec<Bytes> {
    (0..count)
        .map(|i| Bytes::from(vec![i as u8; size]))
        .collect()
}

/// Splits `ops` over `threads` streams made by `make(thread, len)`.
fn split(
    ops: usize,
    threads: usize,
    mut make: impl FnMut(u64, usize) -> Result<Vec<u32>, BoxError>,
) -> Result<Vec<Vec<u32>>, BoxError> {
    (0..threads)
        .map(|thread| make(thread as u64, ops / threads.max(1)))
        .collect()
}

/// `len` indices uniform over `0..keys`.
fn uniform_stream(keys: usize, len: usize, seed: u64) -> Vec<u32> {
    let mut rng = SplitMix64(seed);
    (0..len)
        .map(|_| (rng.next() % keys as u64) as u32)
        .collect()
}

/// `len` op codes of the mix: Zipf key indices, a share of them marked as
/// inserts. `stream` tells the streams (threads, warm-up) apart.
fn mix_stream(config: &ThroughputConfig, len: usize, stream: u64) -> Result<Vec<u32>, BoxError> {
    let seed = config.seed ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let zipf = sim::zipf_trace(config.mix_alpha, config.mix_keys as u64, len, seed)?;
    let mut rng = SplitMix64(!seed);
    Ok(zipf
        .into_iter()
        .map(|key| {
            let insert = rng.next() % 100 < config.mix_insert_percent;
            key as u32 | if insert { INSERT } else { 0 }
        })
        .collect())
}

/// The median, min and max of `values` (NaN if empty).
pub(crate) fn summary(values: &[f64]) -> (f64, f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let Some((&min, &max)) = sorted.first().zip(sorted.last()) else {
        return (f64::NAN, f64::NAN, f64::NAN);
    };
    let middle = sorted.len() / 2;
    let median = if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    };
    (median, min, max)
}

/// `64 B`, `4 KiB`.
fn size_label(size: usize) -> String {
    if size >= 1024 && size.is_multiple_of(1024) {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

/// splitmix64: a small, fast, well-mixed generator for the index streams.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}
