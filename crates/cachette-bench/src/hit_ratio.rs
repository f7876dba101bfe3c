//! Part 1, hit ratio: one thread per case replays the same request stream
//! through every cache (get; on a miss, insert) and counts the hits.
//!
//! Cases are Zipf streams at fixed capacities and every trace file of the
//! traces folder at capacities chosen from its distinct-key count. Cases
//! are independent, so they run in parallel on two threads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use cachette::Policy;
use cachette::sim::{self, TraceFormat};
use serde::Serialize;

use crate::BoxError;
use crate::caches::{BenchCache, CacheKind, Workload};

/// Requests between two calls of [`BenchCache::settle`]: moka applies its
/// admission and eviction in deferred maintenance, which lags without it.
const SETTLE_EVERY: usize = 1_000;

/// Worker threads for the cases.
const THREADS: usize = 2;

/// The name of the extra column: cachette's default policy in one shard,
/// as `cachette::sim::simulate` runs it (the policy without sharding).
pub(crate) const SINGLE_SHARD: &str = "cachette/s3fifo (1 shard)";

/// What to run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct HitRatioConfig {
    /// Zipf exponents.
    pub(crate) alphas: Vec<f64>,
    /// Distinct keys of the Zipf streams.
    pub(crate) zipf_keys: u64,
    /// Requests per Zipf stream.
    pub(crate) zipf_requests: usize,
    /// Capacities of the Zipf cases.
    pub(crate) zipf_capacities: Vec<u64>,
    /// The seed of every Zipf stream.
    pub(crate) seed: u64,
    /// The traces folder.
    pub(crate) traces_dir: PathBuf,
    /// Take at most this many trace files, the smallest first.
    pub(crate) max_traces: Option<usize>,
    /// Capacities of a trace case as fractions of its distinct keys.
    pub(crate) trace_fractions: Vec<f64>,
    /// The smallest capacity of a trace case.
    pub(crate) min_capacity: u64,
}

/// The results of part 1.
#[derive(Debug, Serialize)]
pub(crate) struct HitRatioReport {
    /// What was run.
    pub(crate) config: HitRatioConfig,
    /// The caches, in column order.
    pub(crate) caches: Vec<String>,
    /// How the numbers were made.
    pub(crate) notes: Vec<String>,
    /// Every case, Zipf first, then traces by path and capacity.
    pub(crate) cases: Vec<CaseResult>,
    /// The mean hit ratio per cache over every trace case (all files, all
    /// capacities); empty without traces.
    pub(crate) trace_means: BTreeMap<String, f64>,
    /// The same mean per capacity fraction, in the order of the fractions.
    pub(crate) trace_means_by_fraction: Vec<FractionMeans>,
    /// Trace files in the mean.
    pub(crate) trace_files: usize,
    /// Why traces (or some of them) were skipped.
    pub(crate) skipped: Vec<String>,
    /// Wall time of part 1.
    pub(crate) seconds: f64,
}

/// The mean hit ratio per cache over the trace cases at one capacity
/// fraction.
#[derive(Debug, Serialize)]
pub(crate) struct FractionMeans {
    /// The fraction of distinct keys, as `1%`.
    pub(crate) fraction: String,
    /// Hit ratio (0..1) per cache.
    pub(crate) means: BTreeMap<String, f64>,
}

/// One case: a request stream at one capacity.
#[derive(Debug, Serialize)]
pub(crate) struct CaseResult {
    /// `zipf` or `trace`.
    pub(crate) kind: &'static str,
    /// `zipf(alpha=0.8)` or the trace's path inside the traces folder.
    pub(crate) source: String,
    /// The trace format (traces only).
    pub(crate) format: Option<&'static str>,
    /// Requests in the stream.
    pub(crate) requests: usize,
    /// Distinct keys in the stream (for Zipf: the key space).
    pub(crate) distinct_keys: u64,
    /// The cache bound in entries.
    pub(crate) capacity: u64,
    /// `capacity / distinct_keys`, as a label: `1%`.
    pub(crate) fraction: String,
    /// Hit ratio (0..1) per cache.
    pub(crate) hit_ratio: BTreeMap<String, f64>,
    /// Wall time of the case, every cache included.
    pub(crate) seconds: f64,
}

/// A request stream and what it is.
struct Source {
    kind: &'static str,
    name: String,
    format: Option<TraceFormat>,
    keys: Vec<u64>,
    distinct: u64,
}

struct Case {
    source: usize,
    capacity: u64,
    fraction: String,
}

/// The caches of part 1, in column order.
pub(crate) fn caches() -> Vec<CacheKind> {
    let mut caches: Vec<CacheKind> = CacheKind::cachette_policies().collect();
    caches.extend([CacheKind::Moka, CacheKind::QuickCache, CacheKind::Lru]);
    caches
}

/// Runs part 1.
pub(crate) fn run(config: &HitRatioConfig) -> Result<HitRatioReport, BoxError> {
    let started = Instant::now();
    let mut skipped = Vec::new();
    let mut sources = zipf_sources(config)?;
    let zipf_count = sources.len();
    sources.extend(trace_sources(config, &mut skipped));
    let trace_files = sources.len() - zipf_count;

    let mut cases = Vec::new();
    for (index, source) in sources.iter().enumerate() {
        if source.kind == "zipf" {
            for &capacity in &config.zipf_capacities {
                let fraction = percent(capacity as f64 / source.distinct as f64);
                cases.push(Case {
                    source: index,
                    capacity,
                    fraction,
                });
            }
        } else {
            for &fraction in &config.trace_fractions {
                let capacity =
                    ((source.distinct as f64 * fraction).round() as u64).max(config.min_capacity);
                cases.push(Case {
                    source: index,
                    capacity,
                    fraction: percent(fraction),
                });
            }
        }
    }

    let caches = caches();
    let total = cases.len();
    let done = AtomicUsize::new(0);
    // The longest cases first, so that the two threads finish together.
    let mut order: Vec<usize> = (0..total).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(sources[cases[i].source].keys.len()));
    let results = parallel_map(&order, |&i| {
        let case = &cases[i];
        let source = &sources[case.source];
        let result = run_case(source, case, &caches);
        let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
        eprintln!("{}", progress_line(finished, total, &result));
        (i, result)
    });
    let mut results: Vec<(usize, CaseResult)> = results;
    results.sort_by_key(|(i, _)| *i);
    let cases: Vec<CaseResult> = results.into_iter().map(|(_, result)| result).collect();

    let mut names: Vec<String> = caches.iter().map(|cache| cache.name()).collect();
    names.push(SINGLE_SHARD.to_owned());
    let traces: Vec<&CaseResult> = cases.iter().filter(|c| c.kind == "trace").collect();
    let trace_means = means(&names, &traces);
    let trace_means_by_fraction = config
        .trace_fractions
        .iter()
        .map(|&fraction| {
            let fraction = percent(fraction);
            let subset: Vec<&CaseResult> = traces
                .iter()
                .copied()
                .filter(|c| c.fraction == fraction)
                .collect();
            let means = means(&names, &subset);
            FractionMeans { fraction, means }
        })
        .filter(|by| !by.means.is_empty())
        .collect();
    Ok(HitRatioReport {
        config: config.clone(),
        caches: names,
        notes: notes(config),
        cases,
        trace_means,
        trace_means_by_fraction,
        trace_files,
        skipped,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn notes(config: &HitRatioConfig) -> Vec<String> {
    vec![
        "Single thread per case; every cache sees the same stream; on each request: get, and on a miss insert.".to_owned(),
        format!(
            "cachette: MemoryBackend::builder().max_entries(cap).policy(p).build() (default builder, automatic shard count), \
             get_sync/set_sync with the u64 key formatted into a reused String; default policy {}.",
            Policy::default()
        ),
        format!(
            "moka: sync::Cache<u64, ()> with max_capacity(cap); run_pending_tasks() every {SETTLE_EVERY} requests, \
             without which its admission and eviction lag behind the requests."
        ),
        "quick_cache: sync::Cache<u64, ()>::new(cap). lru: LruCache<u64, ()>::new(cap).".to_owned(),
        format!(
            "`{SINGLE_SHARD}`: cachette::sim::simulate, the default policy in one shard (the policy without the \
             sharding of the default builder)."
        ),
        format!(
            "Zipf: cachette::sim::zipf_trace over {} keys, {} requests, seed {}.",
            config.zipf_keys, config.zipf_requests, config.seed
        ),
        "Traces: capacity = fraction × distinct keys (at least the minimum); AdaptSize keys are (id, size) pairs at unit weight.".to_owned(),
        "cachette's hasher is randomly seeded per cache, so its shard split (and hit ratio) varies slightly between runs.".to_owned(),
    ]
}

fn zipf_sources(config: &HitRatioConfig) -> Result<Vec<Source>, BoxError> {
    config
        .alphas
        .iter()
        .map(|&alpha| {
            let keys = sim::zipf_trace(alpha, config.zipf_keys, config.zipf_requests, config.seed)?;
            Ok(Source {
                kind: "zipf",
                name: format!("zipf(alpha={alpha:.1})"),
                format: None,
                keys,
                distinct: config.zipf_keys,
            })
        })
        .collect()
}

/// Reads every trace file under the traces folder (in parallel), skipping
/// with a line on stderr what cannot be read.
fn trace_sources(config: &HitRatioConfig, skipped: &mut Vec<String>) -> Vec<Source> {
    let dir = &config.traces_dir;
    if !dir.is_dir() {
        let line = format!(
            "traces folder {} not found: skipping the trace cases",
            dir.display()
        );
        eprintln!("[hit ratio] {line}");
        skipped.push(line);
        return Vec::new();
    }
    let mut files = Vec::new();
    walk(dir, &mut files);
    let mut files: Vec<(PathBuf, TraceFormat, u64)> = files
        .into_iter()
        .filter(|path| is_trace_file(path))
        .filter_map(|path| {
            let format = TraceFormat::guess(path.strip_prefix(dir).unwrap_or(&path))?;
            let size = path.metadata().map_or(u64::MAX, |m| m.len());
            Some((path, format, size))
        })
        .collect();
    if let Some(max) = config.max_traces {
        files.sort_by_key(|(path, _, size)| (*size, path.clone()));
        if files.len() > max {
            let line = format!(
                "{} trace files found; this scale takes the {max} smallest",
                files.len()
            );
            eprintln!("[hit ratio] {line}");
            skipped.push(line);
            files.truncate(max);
        }
    }
    // The largest files first, so that the two threads finish together.
    files.sort_by_key(|(path, _, size)| (std::cmp::Reverse(*size), path.clone()));
    eprintln!(
        "[hit ratio] reading {} trace files from {}",
        files.len(),
        dir.display()
    );
    let loaded = parallel_map(&files, |(path, format, _)| {
        let name = path
            .strip_prefix(dir)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned();
        let started = Instant::now();
        match sim::read_trace(path, *format) {
            Ok(keys) => {
                let distinct = sim::distinct_keys(&keys);
                eprintln!(
                    "[hit ratio] read {name}: {} requests, {distinct} distinct keys ({:.1} s)",
                    keys.len(),
                    started.elapsed().as_secs_f64()
                );
                Ok(Source {
                    kind: "trace",
                    name,
                    format: Some(*format),
                    keys,
                    distinct,
                })
            }
            Err(error) => Err(format!("cannot read {name}: {error}; skipped")),
        }
    });
    let mut sources = Vec::new();
    for result in loaded {
        match result {
            Ok(source) if source.distinct > 0 => sources.push(source),
            Ok(source) => skipped.push(format!("{} is empty; skipped", source.name)),
            Err(line) => {
                eprintln!("[hit ratio] {line}");
                skipped.push(line);
            }
        }
    }
    sources.sort_by(|a, b| a.name.cmp(&b.name));
    sources
}

/// Every file under `dir`, recursively; unreadable folders are passed over.
fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, files);
        } else {
            files.push(path);
        }
    }
}

/// A trace is compressed (`.gz`, `.xz`) or named `*.trace*`; licences,
/// checksums and READMEs in the same folders are not.
fn is_trace_file(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let compressed = matches!(path.extension().and_then(|e| e.to_str()), Some("gz" | "xz"));
    (compressed || name.contains(".trace")) && !name.ends_with(".txt") && !name.ends_with(".md")
}

fn run_case(source: &Source, case: &Case, caches: &[CacheKind]) -> CaseResult {
    let started = Instant::now();
    let mut hit_ratio = BTreeMap::new();
    for &cache in caches {
        let ratio = cache.run(
            case.capacity,
            Replay {
                requests: &source.keys,
            },
        );
        hit_ratio.insert(cache.name(), ratio);
    }
    let single = sim::simulate(&source.keys, Policy::default(), case.capacity);
    hit_ratio.insert(SINGLE_SHARD.to_owned(), single.hit_ratio());
    CaseResult {
        kind: source.kind,
        source: source.name.clone(),
        format: source.format.map(TraceFormat::as_str),
        requests: source.keys.len(),
        distinct_keys: source.distinct,
        capacity: case.capacity,
        fraction: case.fraction.clone(),
        hit_ratio,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// The replay: get every request; on a miss, insert it.
struct Replay<'a> {
    requests: &'a [u64],
}

impl Workload<u64, ()> for Replay<'_> {
    type Output = f64;

    fn run<C: BenchCache<u64, ()> + 'static>(self, cache: C) -> f64 {
        let mut hits = 0_u64;
        for (i, key) in self.requests.iter().enumerate() {
            if cache.get(key).is_some() {
                hits += 1;
            } else {
                cache.insert(key, ());
            }
            if i % SETTLE_EVERY == SETTLE_EVERY - 1 {
                cache.settle();
            }
        }
        if self.requests.is_empty() {
            0.0
        } else {
            hits as f64 / self.requests.len() as f64
        }
    }
}

fn progress_line(finished: usize, total: usize, result: &CaseResult) -> String {
    let ratios: Vec<String> = [
        CacheKind::cachette_default().name(),
        CacheKind::Moka.name(),
        CacheKind::Lru.name(),
    ]
    .into_iter()
    .map(|name| {
        let ratio = result.hit_ratio.get(&name).copied().unwrap_or(f64::NAN);
        format!("{name} {:.2}%", ratio * 100.0)
    })
    .collect();
    format!(
        "[hit ratio] {finished}/{total} {} @ {} ({}): {} ({:.1} s)",
        result.source,
        result.capacity,
        result.fraction,
        ratios.join(", "),
        result.seconds
    )
}

/// The mean hit ratio per cache over `cases`; empty if there are none.
fn means(names: &[String], cases: &[&CaseResult]) -> BTreeMap<String, f64> {
    if cases.is_empty() {
        return BTreeMap::new();
    }
    names
        .iter()
        .map(|name| {
            let sum: f64 = cases
                .iter()
                .map(|c| c.hit_ratio.get(name).copied().unwrap_or(f64::NAN))
                .sum();
            (name.clone(), sum / cases.len() as f64)
        })
        .collect()
}

/// `0.01` as `1%`, `0.005` as `0.5%`.
fn percent(fraction: f64) -> String {
    let value = fraction * 100.0;
    if (value - value.round()).abs() < 1e-9 {
        format!("{value:.0}%")
    } else {
        format!("{value:.2}%")
    }
}

/// Maps `items` with `f` on [`THREADS`] threads, each taking the next item
/// when it is free; the results come back in the order of `items`.
fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let mut done: Vec<(usize, R)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS.min(items.len()))
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(index) else {
                            return mine;
                        };
                        mine.push((index, f(item)));
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
    done.sort_by_key(|(index, _)| *index);
    done.into_iter().map(|(_, result)| result).collect()
}
