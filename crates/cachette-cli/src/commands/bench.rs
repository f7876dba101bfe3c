//! `cachette bench`: a Zipf-distributed get/set workload against any
//! backend, reporting throughput, hit ratio and latency percentiles.
//!
//! The workload: `--keys` keys named `cachette-bench:<n>`, drawn with a
//! Zipf distribution of exponent `--alpha` (rank 1 = `cachette-bench:0`, the
//! most popular). Each operation is a get with probability `--read-ratio`,
//! otherwise a set of a `--value-size` value. A get that misses is followed
//! by a set of the same key, like a read-through cache filling itself; that
//! set is part of the get's latency and counted as a fill (`--no-fill`
//! turns it off).
//!
//! `--concurrency` tokio tasks each own a random generator, a Zipf sampler
//! and an HDR histogram of per-operation latencies (nanoseconds, 3
//! significant digits); the histograms are merged at the end, so the
//! measured loop shares nothing but the backend and a progress counter.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use cachette::{Backend, SetOptions};
use clap::Args;
use clap::builder::RangedU64ValueParser;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::SmallRng;
use rand::{RngExt as _, SeedableRng as _};
use rand_distr::{Distribution as _, Zipf};
use serde::Serialize;
use tokio::task::JoinSet;

use super::Outcome;
use crate::output::{self, Printer};
use crate::units::{self, format_bytes, thousands};

/// The prefix of every key the benchmark writes.
const KEY_PREFIX: &str = "cachette-bench:";
/// Keys written per `set_many` call during the warmup.
const WARMUP_CHUNK: usize = 1000;
/// Operations a task runs between two looks at its budget, the progress
/// counter and the scheduler (it yields, so that no task starves another).
const BATCH: u64 = 64;
/// The longest latency the histograms tell apart; longer ones count as this.
const MAX_LATENCY: Duration = Duration::from_secs(3600);

/// Arguments of `cachette bench`.
#[derive(Debug, Args)]
#[command(after_help = "\
Each operation is a get (probability --read-ratio) or a set of one of --keys
keys, drawn with a Zipf distribution (--alpha 0 is uniform). A get that
misses is followed by a set of that key, like a read-through cache: the set
is part of the get's latency and counted as a fill (--no-fill turns it off).
The warmup writes every key once first, in batches (set_many). Without
--url (or with a bare memory://), the store is memory bounded to a tenth of
--keys, so that the run evicts and misses.

Keys are named `cachette-bench:<n>` and are left in the backend afterwards.

Examples:
  cachette bench
  cachette bench --ops 1000000 --alpha 0.8 --value-size 4KiB --seed 7
  cachette --url 'memory://?max_entries=10000&policy=lru' bench --no-warmup --json")]
pub(crate) struct BenchArgs {
    /// How many distinct keys the workload draws from.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    keys: u64,
    /// The Zipf exponent: 0 is uniform, 1 classic Zipf, higher is more skewed.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true, value_parser = parse_alpha)]
    alpha: f64,
    /// The size of every value written, e.g. `64`, `4KiB`, `1MB`.
    #[arg(long, default_value = "64", value_name = "BYTES", value_parser = units::parse_byte_size)]
    value_size: usize,
    /// The share of operations that are gets (the rest are sets), in [0, 1].
    #[arg(long, default_value_t = 0.9, value_parser = parse_ratio)]
    read_ratio: f64,
    /// How many tokio tasks issue operations [default: 2 × CPUs]
    #[arg(long, value_name = "TASKS", value_parser = RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    concurrency: Option<usize>,
    /// How long to measure, e.g. `10s`, `1m`.
    #[arg(
        long,
        default_value = "10s",
        conflicts_with = "ops",
        value_parser = units::parse_positive_duration
    )]
    duration: Duration,
    /// Run exactly this many operations (in total) instead of for --duration.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    ops: Option<u64>,
    /// Write every key once before measuring (the default).
    #[arg(long, overrides_with = "no_warmup")]
    warmup: bool,
    /// Start measuring on a cache without the benchmark's keys.
    #[arg(long, overrides_with = "warmup")]
    no_warmup: bool,
    /// Do not write a key back after a get misses.
    #[arg(long)]
    no_fill: bool,
    /// Seed of the random generators, for a repeatable workload [default: random]
    #[arg(long)]
    seed: Option<u64>,
}

impl BenchArgs {
    fn warmup(&self) -> bool {
        // `overrides_with` leaves only the last of the two flags set.
        self.warmup || !self.no_warmup
    }
}

/// The store `bench` runs on when `--url` is left at `memory://`: bounded
/// to a tenth of the key space (at least one entry), so that the
/// workload evicts and misses.
pub(crate) fn bounded_memory_url(args: &BenchArgs) -> String {
    format!("memory://?max_entries={}", (args.keys / 10).max(1))
}

/// Runs the benchmark and prints its report.
pub(crate) async fn run(
    backend: Arc<dyn Backend>,
    args: &BenchArgs,
    out: Printer,
) -> anyhow::Result<Outcome> {
    let json = out.is_json();
    let concurrency = args.concurrency.unwrap_or_else(default_concurrency);
    // Random seeds stay below 2^32: short to type back, exact in any JSON reader.
    let seed = args
        .seed
        .unwrap_or_else(|| u64::from(rand::rng().random::<u32>()));
    let keys: Arc<[String]> = (0..args.keys).map(|i| format!("{KEY_PREFIX}{i}")).collect();
    let value = random_value(seed, args.value_size);

    let warmup = if args.warmup() {
        let bar = progress_bar(json, keys.len() as u64, "warmup");
        let took = warm_up(&*backend, &keys, &value, &bar).await;
        bar.finish_and_clear();
        Some(took?)
    } else {
        None
    };

    let zipf = Zipf::new(keys.len() as f64, args.alpha)
        .map_err(|err| anyhow::anyhow!("bad Zipf parameters: {err}"))?;
    let progress = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let budget = match args.ops {
        Some(total) => Budget::Ops {
            claimed: Arc::new(AtomicU64::new(0)),
            total,
        },
        None => Budget::Until(started + args.duration),
    };
    let workers = (0..concurrency).map(|task| Worker {
        backend: Arc::clone(&backend),
        keys: Arc::clone(&keys),
        value: value.clone(),
        zipf,
        rng: SmallRng::seed_from_u64(seed.wrapping_add(1 + task as u64)),
        read_ratio: args.read_ratio,
        fill: !args.no_fill,
        budget: budget.clone(),
        progress: Arc::clone(&progress),
    });
    let bar = match &budget {
        Budget::Ops { total, .. } => progress_bar(json, *total, "bench"),
        Budget::Until(_) => progress_bar(json, args.duration.as_millis() as u64, "bench"),
    };
    let tally = measure(workers, &budget, started, &progress, &bar).await;
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    let tally = tally?;

    let report = Report::new(
        backend.name(),
        args,
        concurrency,
        seed,
        warmup,
        &tally,
        elapsed,
    );
    if json {
        output::print_json(&report)?;
    } else {
        report.print_table()?;
    }
    Ok(Outcome::Done)
}

fn default_concurrency() -> usize {
    std::thread::available_parallelism().map_or(4, |cpus| cpus.get() * 2)
}

/// A value of `size` random bytes (random so that compressing backends are
/// not flattered), the same for every write: a clone is a refcount bump.
fn random_value(seed: u64, size: usize) -> Bytes {
    let mut value = vec![0_u8; size];
    SmallRng::seed_from_u64(seed).fill(&mut value[..]);
    Bytes::from(value)
}

/// Writes every key once, in chunks.
async fn warm_up(
    backend: &dyn Backend,
    keys: &[String],
    value: &Bytes,
    bar: &ProgressBar,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let options = SetOptions::new();
    for chunk in keys.chunks(WARMUP_CHUNK) {
        let entries: Vec<(&str, Bytes)> = chunk
            .iter()
            .map(|key| (key.as_str(), value.clone()))
            .collect();
        backend
            .set_many(&entries, &options)
            .await
            .context("the warmup failed")?;
        bar.inc(chunk.len() as u64);
    }
    Ok(started.elapsed())
}

/// Runs the workers to the end of the budget, showing progress, and merges
/// what they measured. The first error stops the benchmark (dropping the
/// `JoinSet` aborts the other tasks).
async fn measure(
    workers: impl Iterator<Item = Worker>,
    budget: &Budget,
    started: Instant,
    progress: &AtomicU64,
    bar: &ProgressBar,
) -> anyhow::Result<Tally> {
    let mut tasks = JoinSet::new();
    for worker in workers {
        tasks.spawn(worker.run());
    }
    let mut total = Tally::new()?;
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                Some(joined) => total.merge(&joined.context("a benchmark task failed")??)?,
                None => return Ok(total),
            },
            _ = ticker.tick() => {
                let done = progress.load(Ordering::Relaxed);
                match budget {
                    Budget::Ops { .. } => bar.set_position(done),
                    Budget::Until(_) => {
                        bar.set_message(format!("{} ops", thousands(done)));
                        bar.set_position(started.elapsed().as_millis() as u64);
                    }
                }
            }
        }
    }
}

/// A progress bar on stderr; hidden under `--json` (and by indicatif
/// itself when stderr is not a terminal).
fn progress_bar(hidden: bool, length: u64, prefix: &'static str) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(length);
    if let Ok(style) = ProgressStyle::with_template("{prefix:>6} [{wide_bar}] {percent:>3}% {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(prefix);
    bar
}

/// When the workers stop.
#[derive(Debug, Clone)]
enum Budget {
    /// At this instant.
    Until(Instant),
    /// After `total` operations, claimed in batches from a shared counter.
    Ops { claimed: Arc<AtomicU64>, total: u64 },
}

impl Budget {
    /// How many operations to run next; 0 once the budget is spent.
    fn next_batch(&self) -> u64 {
        match self {
            Budget::Until(deadline) => {
                if Instant::now() < *deadline {
                    BATCH
                } else {
                    0
                }
            }
            Budget::Ops { claimed, total } => {
                let start = claimed.fetch_add(BATCH, Ordering::Relaxed);
                total.saturating_sub(start).min(BATCH)
            }
        }
    }
}

/// One benchmark task and everything it owns.
struct Worker {
    backend: Arc<dyn Backend>,
    keys: Arc<[String]>,
    value: Bytes,
    zipf: Zipf<f64>,
    rng: SmallRng,
    read_ratio: f64,
    fill: bool,
    budget: Budget,
    progress: Arc<AtomicU64>,
}

impl Worker {
    async fn run(mut self) -> anyhow::Result<Tally> {
        let mut tally = Tally::new()?;
        let options = SetOptions::new();
        loop {
            let batch = self.budget.next_batch();
            if batch == 0 {
                return Ok(tally);
            }
            for _ in 0..batch {
                let index = self.next_index();
                let key = &self.keys[index];
                let is_get = self.rng.random_bool(self.read_ratio);
                let started = Instant::now();
                if is_get {
                    tally.gets += 1;
                    let found = self
                        .backend
                        .get(key)
                        .await
                        .with_context(|| format!("get `{key}`"))?;
                    if found.is_some() {
                        tally.hits += 1;
                    } else {
                        tally.misses += 1;
                        if self.fill {
                            self.backend
                                .set(key, self.value.clone(), &options)
                                .await
                                .with_context(|| format!("set `{key}` after a miss"))?;
                            tally.fills += 1;
                        }
                    }
                } else {
                    tally.sets += 1;
                    self.backend
                        .set(key, self.value.clone(), &options)
                        .await
                        .with_context(|| format!("set `{key}`"))?;
                }
                tally.latency.saturating_record(nanos(started.elapsed()));
            }
            self.progress.fetch_add(batch, Ordering::Relaxed);
            tokio::task::yield_now().await;
        }
    }

    /// The index of the next key: Zipf rank 1 is key 0.
    fn next_index(&mut self) -> usize {
        let rank = self.zipf.sample(&mut self.rng) as usize;
        rank.clamp(1, self.keys.len()) - 1
    }
}

/// What one task (or, merged, all of them) measured.
#[derive(Debug)]
struct Tally {
    gets: u64,
    sets: u64,
    hits: u64,
    misses: u64,
    fills: u64,
    /// Per-operation latency in nanoseconds.
    latency: Histogram<u64>,
}

impl Tally {
    fn new() -> anyhow::Result<Self> {
        Ok(Tally {
            gets: 0,
            sets: 0,
            hits: 0,
            misses: 0,
            fills: 0,
            latency: Histogram::new_with_bounds(1, nanos(MAX_LATENCY), 3)
                .context("cannot create a latency histogram")?,
        })
    }

    fn merge(&mut self, other: &Tally) -> anyhow::Result<()> {
        self.gets += other.gets;
        self.sets += other.sets;
        self.hits += other.hits;
        self.misses += other.misses;
        self.fills += other.fills;
        self.latency
            .add(&other.latency)
            .context("cannot merge latency histograms")
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Nanoseconds as microseconds, rounded to 2 decimals.
fn micros(nanos: u64) -> f64 {
    (nanos as f64 / 10.0).round() / 100.0
}

/// The outcome of a run: the table's rows, or the `--json` object.
#[derive(Debug, Serialize)]
struct Report {
    backend: &'static str,
    keys: u64,
    alpha: f64,
    value_size: usize,
    read_ratio: f64,
    concurrency: usize,
    seed: u64,
    fill: bool,
    /// Seconds the warmup took; `null` without a warmup.
    warmup_secs: Option<f64>,
    ops: u64,
    duration_secs: f64,
    throughput_ops_per_sec: f64,
    gets: u64,
    sets: u64,
    hits: u64,
    misses: u64,
    fills: u64,
    /// Hits divided by gets; 0 without gets.
    hit_ratio: f64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    max_us: f64,
}

impl Report {
    fn new(
        backend: &'static str,
        args: &BenchArgs,
        concurrency: usize,
        seed: u64,
        warmup: Option<Duration>,
        tally: &Tally,
        elapsed: Duration,
    ) -> Self {
        let ops = tally.gets + tally.sets;
        let secs = elapsed.as_secs_f64();
        Report {
            backend,
            keys: args.keys,
            alpha: args.alpha,
            value_size: args.value_size,
            read_ratio: args.read_ratio,
            concurrency,
            seed,
            fill: !args.no_fill,
            warmup_secs: warmup.map(|took| took.as_secs_f64()),
            ops,
            duration_secs: secs,
            throughput_ops_per_sec: if secs > 0.0 { ops as f64 / secs } else { 0.0 },
            gets: tally.gets,
            sets: tally.sets,
            hits: tally.hits,
            misses: tally.misses,
            fills: tally.fills,
            hit_ratio: if tally.gets == 0 {
                0.0
            } else {
                tally.hits as f64 / tally.gets as f64
            },
            p50_us: micros(tally.latency.value_at_quantile(0.5)),
            p99_us: micros(tally.latency.value_at_quantile(0.99)),
            p999_us: micros(tally.latency.value_at_quantile(0.999)),
            max_us: micros(tally.latency.max()),
        }
    }

    fn print_table(&self) -> std::io::Result<()> {
        let warmup = self.warmup_secs.map_or_else(
            || "off".to_owned(),
            |secs| format!("{} keys in {secs:.2} s", thousands(self.keys)),
        );
        let rows = [
            ("backend", self.backend.to_owned()),
            (
                "workload",
                format!(
                    "{} keys, Zipf α={}, {} values, {:.0}% gets{}",
                    thousands(self.keys),
                    self.alpha,
                    format_bytes(self.value_size as u64),
                    self.read_ratio * 100.0,
                    if self.fill { ", fill on miss" } else { "" },
                ),
            ),
            ("concurrency", format!("{} tasks", self.concurrency)),
            ("seed", self.seed.to_string()),
            ("warmup", warmup),
            ("ops", thousands(self.ops)),
            ("duration", format!("{:.2} s", self.duration_secs)),
            (
                "throughput",
                format!(
                    "{} ops/s",
                    thousands(self.throughput_ops_per_sec.round() as u64)
                ),
            ),
            ("gets", thousands(self.gets)),
            ("sets", thousands(self.sets)),
            (
                "misses",
                format!(
                    "{} ({} fills)",
                    thousands(self.misses),
                    thousands(self.fills)
                ),
            ),
            ("hit ratio", format!("{:.4}", self.hit_ratio)),
            ("latency p50", format!("{:.2} µs", self.p50_us)),
            ("latency p99", format!("{:.2} µs", self.p99_us)),
            ("latency p999", format!("{:.2} µs", self.p999_us)),
            ("latency max", format!("{:.2} µs", self.max_us)),
        ];
        let mut table = output::table(["metric", "value"]);
        for (metric, value) in rows {
            table.add_row([metric.to_owned(), value]);
        }
        output::print_table(&table)
    }
}

fn parse_alpha(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(alpha) if alpha.is_finite() && alpha >= 0.0 => Ok(alpha),
        _ => Err(format!(
            "`{text}` is not a Zipf exponent (a finite number >= 0)"
        )),
    }
}

fn parse_ratio(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(ratio),
        _ => Err(format!("`{text}` is not a ratio between 0 and 1")),
    }
}
