//! The near cache (`cachette::backends::near`) against the Redis backend
//! and against redis-rs' own client-side cache (`cache-aio`), side by side
//! in one run on one private `redis-server`.
//!
//! ```text
//! cargo run --release -p cachette-bench --bin near -- [--quick] [--rounds 5] [--seconds 1] [--json PATH]
//! ```
//!
//! Starts its own `redis-server` on a free loopback port (never a shared
//! one) and a 2-worker multi-thread runtime. Three measurements:
//!
//! 1. **Hit latency.** Sequential `get`s from one task over 10,000 warm
//!    keys, each timed with `Instant`: the near cache (a local hit) against
//!    a `GET` through the Redis backend; redis-rs' cache-aio hit and the
//!    near cache's `get_ready` are shown for context.
//! 2. **Throughput.** Zipf(1.0) reads over 10,000 warm keys of 64 B from 4
//!    tasks for a fixed time, for the near cache, the Redis backend and
//!    redis-rs' cache (a RESP3 `MultiplexedConnection` whose cache holds
//!    every key), in rounds that rotate their order. Ratios are taken
//!    within each round; the table shows their median and range.
//! 3. **Invalidation delay.** A plain blocking redis-rs connection on the
//!    main thread (not a runtime worker) `SET`s keys that the near cache
//!    holds locally, a few ms apart, then spins (`sched_yield` between
//!    looks) until the local copy is gone. The delay is from the `SET`'s
//!    acknowledgement to that moment. redis-rs' cache is measured the same
//!    way, on keys of its own, in alternation.
//!
//! Prints Markdown (machine, then one table); `--json PATH` also writes
//! every number as JSON.

#[path = "../machine.rs"]
mod machine;

use std::fmt::Write as _;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cachette::backends::near::NearBackend;
use cachette::backends::redis::RedisBackend;
use cachette::sim::zipf_trace;
use cachette::testing::servers::redis::RedisServer;
use cachette::{Backend, SetOptions, Stats};
use clap::Parser;
use redis::aio::MultiplexedConnection;
use redis::caching::CacheConfig;
use serde_json::{Value as Json, json};

use crate::machine::{CpuSnapshot, Interference, Machine, utc_now};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The near cache against the Redis backend and redis-rs' client-side cache.
#[derive(Debug, Parser)]
struct Args {
    /// A short run (well under a minute): fewer operations, 3 rounds of
    /// 0.25 s, 200 invalidations.
    #[arg(long)]
    quick: bool,
    /// Throughput rounds [default: 5; quick: 3].
    #[arg(long)]
    rounds: Option<usize>,
    /// Seconds each contender reads per throughput round [default: 1; quick: 0.25].
    #[arg(long)]
    seconds: Option<f64>,
    /// Also write every number as JSON to this file.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
}

/// How much of each measurement to do.
#[derive(Debug, Clone, Copy)]
struct Scale {
    name: &'static str,
    near_ops: usize,
    redis_ops: usize,
    rounds: usize,
    seconds: f64,
    writes: usize,
}

impl Scale {
    fn of(args: &Args) -> Scale {
        let mut scale = if args.quick {
            Scale {
                name: "quick",
                near_ops: 20_000,
                redis_ops: 2_000,
                rounds: 3,
                seconds: 0.25,
                writes: 200,
            }
        } else {
            Scale {
                name: "full",
                near_ops: 200_000,
                redis_ops: 20_000,
                rounds: 5,
                seconds: 1.0,
                writes: 2_000,
            }
        };
        if let Some(rounds) = args.rounds {
            scale.rounds = rounds.max(1);
        }
        if let Some(seconds) = args.seconds {
            scale.seconds = seconds.max(0.01);
        }
        scale
    }
}

/// The key space of the latency and throughput measurements.
const KEYS: usize = 10_000;
const VALUE_LEN: usize = 64;
const ZIPF_ALPHA: f64 = 1.0;
/// The length of the Zipf stream the reading tasks share.
const TRACE_LEN: usize = 1 << 20;
const SEED: u64 = 42;
const WORKERS: usize = 2;
const TASKS: usize = 4;
/// Reads between two looks at the clock (and a `yield_now`).
const CHECK_EVERY: usize = 64;
/// redis-rs' cache: 32 LRU shards of `size / 32` keys each, filled by key
/// hash; 4× the key space keeps every shard clear of evictions.
const REDIS_RS_CACHE_KEYS: usize = 4 * KEYS;
/// The keys of the invalidation measurement (apart from the others, so
/// that its writes do not touch redis-rs' cache).
const INVALIDATION_KEYS: usize = 100;
/// The pause between two invalidating writes.
const WRITE_GAP: Duration = Duration::from_millis(2);
/// How long the writer waits for a local copy to go before giving up.
const GIVE_UP: Duration = Duration::from_secs(1);
const PREFIX: &str = "nb:";

const LATENCY_TARGET: f64 = 50.0;
const VERSUS_BACKEND_TARGET: f64 = 5.0;
const VERSUS_REDIS_RS_TARGET: f64 = 1.0;
const INVALIDATION_P99_TARGET: Duration = Duration::from_millis(1);

fn key(i: usize) -> String {
    format!("z:{i:05}")
}

fn value(i: usize) -> Bytes {
    let mut bytes = vec![b'v'; VALUE_LEN];
    bytes[..8].copy_from_slice(&(i as u64).to_le_bytes());
    Bytes::from(bytes)
}

/// The nearest-rank `q` quantile of sorted samples.
fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn median(values: &[f64]) -> f64 {
    let mut values = values.to_vec();
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn min_max(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)))
}

/// `1.2 µs`, `85 ns`, `1.31 ms`.
fn fmt_ns(ns: u64) -> String {
    let ns = ns as f64;
    if ns < 1_000.0 {
        format!("{ns:.0} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.1} µs", ns / 1_000.0)
    } else {
        format!("{:.2} ms", ns / 1_000_000.0)
    }
}

fn detail(stats: &Stats, name: &str) -> u64 {
    stats
        .details
        .iter()
        .find(|(key, _)| key == name)
        .map_or(0, |(_, value)| *value)
}

/// Per-operation latencies of one side.
#[derive(Debug, Clone)]
struct Latency {
    samples: Vec<u64>,
}

impl Latency {
    fn new(mut samples: Vec<u64>) -> Latency {
        samples.sort_unstable();
        Latency { samples }
    }

    fn p50(&self) -> u64 {
        quantile(&self.samples, 0.50)
    }

    fn p99(&self) -> u64 {
        quantile(&self.samples, 0.99)
    }

    fn max(&self) -> u64 {
        self.samples.last().copied().unwrap_or(0)
    }

    fn json(&self) -> Json {
        json!({
            "ops": self.samples.len(),
            "p50_ns": self.p50(),
            "p90_ns": quantile(&self.samples, 0.90),
            "p99_ns": self.p99(),
            "p999_ns": quantile(&self.samples, 0.999),
            "max_ns": self.max(),
        })
    }
}

/// One reader of the throughput measurement; clones are the tasks' own.
trait Reader: Clone + Send + Sync + 'static {
    /// Reads key `index`; whether it was found.
    fn read(&mut self, index: usize) -> impl Future<Output = Result<bool, BoxError>> + Send;
}

/// A `get` through one of cachette's backends (the near cache or the
/// Redis backend), with static dispatch.
struct BackendReader<B> {
    backend: Arc<B>,
    keys: Arc<Vec<String>>,
}

impl<B> Clone for BackendReader<B> {
    fn clone(&self) -> Self {
        BackendReader {
            backend: Arc::clone(&self.backend),
            keys: Arc::clone(&self.keys),
        }
    }
}

impl<B: Backend> Reader for BackendReader<B> {
    async fn read(&mut self, index: usize) -> Result<bool, BoxError> {
        Ok(self.backend.get(&self.keys[index]).await?.is_some())
    }
}

/// A GET on a RESP3 connection with redis-rs' cache (`CacheMode::All`).
#[derive(Clone)]
struct RedisRsReader {
    connection: MultiplexedConnection,
    /// The keys as stored (with the prefix).
    stored: Arc<Vec<String>>,
}

impl Reader for RedisRsReader {
    async fn read(&mut self, index: usize) -> Result<bool, BoxError> {
        let value: Option<Bytes> = redis::cmd("GET")
            .arg(&self.stored[index])
            .query_async(&mut self.connection)
            .await?;
        Ok(value.is_some())
    }
}

/// Times `ops` sequential reads of keys `0, 1, 2, ..` (mod [`KEYS`]).
async fn latency<R: Reader>(reader: &R, ops: usize) -> Result<Latency, BoxError> {
    let mut reader = reader.clone();
    let mut samples = Vec::with_capacity(ops);
    for i in 0..ops {
        let start = Instant::now();
        let found = reader.read(i % KEYS).await?;
        samples.push(start.elapsed().as_nanos() as u64);
        if !found {
            return Err(format!("key {} is missing", key(i % KEYS)).into());
        }
    }
    Ok(Latency::new(samples))
}

/// The near cache's synchronous path (`get_ready`), for context.
fn latency_ready(near: &NearBackend, keys: &[String], ops: usize) -> Result<Latency, BoxError> {
    let mut samples = Vec::with_capacity(ops);
    for i in 0..ops {
        let start = Instant::now();
        let found = near.get_ready(&keys[i % KEYS]);
        samples.push(start.elapsed().as_nanos() as u64);
        if !matches!(found, Some(Ok(Some(_)))) {
            return Err(format!("key {} is not held locally", key(i % KEYS)).into());
        }
    }
    Ok(Latency::new(samples))
}

/// The cost of timing one operation: two `Instant::now()` back to back.
fn timer_overhead() -> u64 {
    let mut samples: Vec<u64> = (0..100_000)
        .map(|_| {
            let start = Instant::now();
            start.elapsed().as_nanos() as u64
        })
        .collect();
    samples.sort_unstable();
    quantile(&samples, 0.5)
}

/// [`TASKS`] tasks read the Zipf stream (each from its own offset) for
/// `seconds`; operations per second over all of them.
async fn throughput<R: Reader>(
    reader: &R,
    trace: &Arc<Vec<u16>>,
    seconds: f64,
) -> Result<f64, BoxError> {
    let deadline = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(TASKS);
    for t in 0..TASKS {
        let mut reader = reader.clone();
        let trace = Arc::clone(trace);
        tasks.push(tokio::spawn(async move {
            let mut at = t * trace.len() / TASKS;
            let mut ops = 0_u64;
            let mut missing = 0_u64;
            loop {
                for _ in 0..CHECK_EVERY {
                    if !reader.read(usize::from(trace[at])).await? {
                        missing += 1;
                    }
                    at += 1;
                    if at == trace.len() {
                        at = 0;
                    }
                }
                ops += CHECK_EVERY as u64;
                if start.elapsed() >= deadline {
                    break;
                }
                tokio::task::yield_now().await;
            }
            Ok::<_, BoxError>((ops, missing))
        }));
    }
    let (mut ops, mut missing) = (0, 0);
    for task in tasks {
        let (o, m) = task.await??;
        ops += o;
        missing += m;
    }
    let elapsed = start.elapsed().as_secs_f64();
    if missing > 0 {
        return Err(format!("{missing} reads found no value").into());
    }
    Ok(ops as f64 / elapsed)
}

/// The three contenders of the throughput measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Contender {
    Near,
    Backend,
    RedisRs,
}

impl Contender {
    const ALL: [Contender; 3] = [Contender::Near, Contender::Backend, Contender::RedisRs];
}

struct Readers {
    near: BackendReader<NearBackend>,
    backend: BackendReader<RedisBackend>,
    redis_rs: RedisRsReader,
}

impl Readers {
    async fn throughput(
        &self,
        contender: Contender,
        trace: &Arc<Vec<u16>>,
        seconds: f64,
    ) -> Result<f64, BoxError> {
        match contender {
            Contender::Near => throughput(&self.near, trace, seconds).await,
            Contender::Backend => throughput(&self.backend, trace, seconds).await,
            Contender::RedisRs => throughput(&self.redis_rs, trace, seconds).await,
        }
    }
}

/// The throughput rounds.
struct Throughput {
    near: Vec<f64>,
    backend: Vec<f64>,
    redis_rs: Vec<f64>,
    versus_backend: Vec<f64>,
    versus_redis_rs: Vec<f64>,
}

/// The invalidation measurement.
struct Invalidation {
    /// From the `SET`'s acknowledgement until the local copy is gone.
    after_ack: Latency,
    /// From just before the `SET` was sent until the local copy is gone.
    after_send: Latency,
    /// Writes whose local copy was already gone at the acknowledgement.
    gone_at_ack: usize,
    /// Writes whose local copy outlived [`GIVE_UP`].
    timeouts: usize,
    /// Reads after the copy was gone that returned the old value.
    stale: usize,
    /// Rounds skipped because the near cache would not hold the key.
    not_held: usize,
}

fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    let scale = Scale::of(&args);
    let machine = Machine::detect();
    let date = utc_now();
    let started = Instant::now();
    let server = RedisServer::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()?;
    let (mut outcome, live) = runtime.block_on(run(scale, server.port()))?;
    // 3. Invalidation delay: on this thread, outside the runtime.
    let cpu = CpuSnapshot::take(outcome.redis_pid);
    let (near_side, rs_side) = invalidation(
        runtime.handle(),
        &live.near,
        &live.redis_rs,
        server.port(),
        scale.writes,
    )?;
    outcome.invalidation = near_side;
    outcome.rs_invalidation = rs_side;
    outcome
        .interference
        .extend(cpu.and_then(|c| c.interference("invalidation")));
    runtime.block_on(finish(&live, &mut outcome))?;
    let total_seconds = started.elapsed().as_secs_f64();
    let command = std::env::args().collect::<Vec<_>>().join(" ");

    let md = markdown(&command, &date, &machine, scale, &outcome, total_seconds);
    print!("{md}");
    if let Some(path) = &args.json {
        let report = report_json(&command, &date, &machine, scale, &outcome, total_seconds);
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")?;
        eprintln!("[near] wrote {}", path.display());
    }
    // The connections first, then the server they talk to.
    drop(live);
    drop(runtime);
    drop(server);
    Ok(())
}

/// Everything [`run`] measured.
struct Outcome {
    redis_version: String,
    timer_ns: u64,
    near: Latency,
    near_ready: Latency,
    backend: Latency,
    redis_rs: Latency,
    throughput: Throughput,
    /// The near cache's invalidation delays.
    invalidation: Invalidation,
    /// redis-rs' cache's, for context.
    rs_invalidation: Invalidation,
    interference: Vec<Interference>,
    notes: Vec<String>,
    redis_pid: Option<u32>,
}

/// The connections that outlive [`run`].
struct Live {
    near: NearBackend,
    backend: Arc<RedisBackend>,
    redis_rs: MultiplexedConnection,
}

/// Parts 1 and 2.
async fn run(scale: Scale, port: u16) -> Result<(Outcome, Live), BoxError> {
    let mut notes = Vec::new();
    let mut interference = Vec::new();
    let keys: Arc<Vec<String>> = Arc::new((0..KEYS).map(key).collect());
    let stored: Arc<Vec<String>> = Arc::new(keys.iter().map(|k| format!("{PREFIX}{k}")).collect());

    let backend = Arc::new(
        RedisBackend::builder("127.0.0.1", port)
            .prefix(PREFIX)
            .build()
            .await?,
    );
    let near = NearBackend::builder(RedisBackend::builder("127.0.0.1", port).prefix(PREFIX))
        .build()
        .await?;
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/0?protocol=resp3"))?;
    let cache_config = CacheConfig::new()
        .set_size(std::num::NonZeroUsize::new(REDIS_RS_CACHE_KEYS).ok_or("a cache size")?);
    let redis_rs = client
        .get_multiplexed_async_connection_with_config(
            &redis::AsyncConnectionConfig::new().set_cache_config(cache_config),
        )
        .await?;
    let mut plain = redis::Client::open(format!("redis://127.0.0.1:{port}/0"))?
        .get_multiplexed_async_connection()
        .await?;
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut plain)
        .await?;
    let redis_pid = info
        .lines()
        .find_map(|line| line.strip_prefix("process_id:"))
        .and_then(|pid| pid.trim().parse().ok());
    let redis_version = info
        .lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .unwrap_or("unknown")
        .trim()
        .to_owned();

    // The data, written through the Redis backend (no TTL).
    let options = SetOptions::new();
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(500) {
        let entries: Vec<(&str, Bytes)> = chunk
            .iter()
            .map(|&i| (keys[i].as_str(), value(i)))
            .collect();
        backend.set_many(&entries, &options).await?;
    }
    let readers = Readers {
        near: BackendReader {
            backend: Arc::new(near.clone()),
            keys: Arc::clone(&keys),
        },
        backend: BackendReader {
            backend: Arc::clone(&backend),
            keys: Arc::clone(&keys),
        },
        redis_rs: RedisRsReader {
            connection: redis_rs.clone(),
            stored: Arc::clone(&stored),
        },
    };

    // Warm: every key read twice through each contender (the first read
    // of a cache fetches and keeps it, the second should hit).
    for _ in 0..2 {
        for i in 0..KEYS {
            readers.near.clone().read(i).await?;
            readers.redis_rs.clone().read(i).await?;
        }
    }
    for i in 0..KEYS {
        readers.backend.clone().read(i).await?;
    }
    let near_stats = near.stats().await?;
    let held = detail(&near_stats, "local_entries");
    if held < KEYS as u64 {
        notes.push(format!(
            "after warming, the near cache held {held} of {KEYS} keys locally"
        ));
    }
    let before = redis_rs
        .get_cache_statistics()
        .ok_or("redis-rs has no cache")?;
    for i in 0..KEYS {
        readers.redis_rs.clone().read(i).await?;
    }
    let after = redis_rs
        .get_cache_statistics()
        .ok_or("redis-rs has no cache")?;
    let rs_misses = after.miss - before.miss;
    if rs_misses > 0 {
        notes.push(format!(
            "after warming, redis-rs' cache still missed {rs_misses} of {KEYS} keys"
        ));
    }
    eprintln!(
        "[near] warmed: near holds {held} keys, redis-rs' cache missed {rs_misses} of {KEYS} on a re-read"
    );

    // 1. Hit latency.
    let cpu = CpuSnapshot::take(redis_pid);
    let timer_ns = timer_overhead();
    let hits_before = detail(&near.stats().await?, "local_hits");
    let near_latency = latency(&readers.near, scale.near_ops).await?;
    let local_hits = detail(&near.stats().await?, "local_hits") - hits_before;
    if local_hits < scale.near_ops as u64 {
        notes.push(format!(
            "hit latency: only {local_hits} of {} near-cache reads were local hits",
            scale.near_ops
        ));
    }
    let near_ready = latency_ready(&near, &keys, scale.near_ops)?;
    let backend_latency = latency(&readers.backend, scale.redis_ops).await?;
    let redis_rs_latency = latency(&readers.redis_rs, scale.near_ops).await?;
    interference.extend(cpu.and_then(|c| c.interference("hit latency")));
    eprintln!(
        "[near] hit latency: near p50 {}, Redis backend p50 {}",
        fmt_ns(near_latency.p50()),
        fmt_ns(backend_latency.p50())
    );

    // 2. Throughput.
    let cpu = CpuSnapshot::take(redis_pid);
    let trace: Arc<Vec<u16>> = Arc::new(
        zipf_trace(ZIPF_ALPHA, KEYS as u64, TRACE_LEN, SEED)?
            .into_iter()
            .map(|k| u16::try_from(k).map_err(|_| "a key beyond u16"))
            .collect::<Result<_, _>>()?,
    );
    let warm_seconds = (scale.seconds / 4.0).max(0.05);
    for contender in Contender::ALL {
        readers.throughput(contender, &trace, warm_seconds).await?;
    }
    let near_before = near.stats().await?;
    let rs_before = redis_rs
        .get_cache_statistics()
        .ok_or("redis-rs has no cache")?;
    let mut rounds = Throughput {
        near: Vec::new(),
        backend: Vec::new(),
        redis_rs: Vec::new(),
        versus_backend: Vec::new(),
        versus_redis_rs: Vec::new(),
    };
    for round in 0..scale.rounds {
        let (mut near_ops, mut backend_ops, mut rs_ops) = (0.0, 0.0, 0.0);
        for j in 0..Contender::ALL.len() {
            let contender = Contender::ALL[(round + j) % Contender::ALL.len()];
            let ops = readers.throughput(contender, &trace, scale.seconds).await?;
            match contender {
                Contender::Near => near_ops = ops,
                Contender::Backend => backend_ops = ops,
                Contender::RedisRs => rs_ops = ops,
            }
        }
        rounds.near.push(near_ops);
        rounds.backend.push(backend_ops);
        rounds.redis_rs.push(rs_ops);
        rounds.versus_backend.push(near_ops / backend_ops);
        rounds.versus_redis_rs.push(near_ops / rs_ops);
        eprintln!(
            "[near] throughput round {}: near {near_ops:.0}, Redis backend {backend_ops:.0}, redis-rs cache {rs_ops:.0} ops/s",
            round + 1
        );
    }
    let near_after = near.stats().await?;
    let rs_after = redis_rs
        .get_cache_statistics()
        .ok_or("redis-rs has no cache")?;
    let remote = detail(&near_after, "remote_hits") - detail(&near_before, "remote_hits");
    let near_misses = near_after.misses - near_before.misses;
    if remote + near_misses > 0 {
        notes.push(format!(
            "throughput: the near cache went to Redis {} times during the rounds",
            remote + near_misses
        ));
    }
    let rs_missed = rs_after.miss - rs_before.miss;
    if rs_missed > 0 {
        notes.push(format!(
            "throughput: redis-rs' cache missed {rs_missed} times during the rounds"
        ));
    }
    interference.extend(cpu.and_then(|c| c.interference("throughput")));

    let outcome = Outcome {
        redis_version,
        timer_ns,
        near: near_latency,
        near_ready,
        backend: backend_latency,
        redis_rs: redis_rs_latency,
        throughput: rounds,
        invalidation: Delays::default().finish(),
        rs_invalidation: Delays::default().finish(),
        interference,
        notes,
        redis_pid,
    };
    let live = Live {
        near,
        backend,
        redis_rs,
    };
    Ok((outcome, live))
}

/// The closing counters, and the connections closed.
async fn finish(live: &Live, outcome: &mut Outcome) -> Result<(), BoxError> {
    let stats = live.near.stats().await?;
    outcome.notes.push(format!(
        "near cache stats at the end: local_hits {}, remote_hits {}, misses {}, invalidations_received {}, flushes {}, local_entries {}",
        detail(&stats, "local_hits"),
        detail(&stats, "remote_hits"),
        stats.misses,
        detail(&stats, "invalidations_received"),
        detail(&stats, "flushes"),
        detail(&stats, "local_entries"),
    ));
    let rs = live
        .redis_rs
        .get_cache_statistics()
        .ok_or("redis-rs has no cache")?;
    outcome.notes.push(format!(
        "redis-rs cache stats at the end: hit {}, miss {}, invalidate {}",
        rs.hit, rs.miss, rs.invalidate
    ));
    live.near.close().await?;
    live.backend.close().await?;
    Ok(())
}

/// Whether the near cache holds `key` locally (and with what).
fn held(near: &NearBackend, key: &str) -> Option<Bytes> {
    match near.local().get_ready(key) {
        Some(Ok(found)) => found,
        _ => None,
    }
}

/// The delays of one side of the invalidation measurement, as they come.
#[derive(Default)]
struct Delays {
    after_ack: Vec<u64>,
    after_send: Vec<u64>,
    gone_at_ack: usize,
    timeouts: usize,
    stale: usize,
    not_held: usize,
}

impl Delays {
    /// `SET stored new` through `writer`, then spins until `still_held()`
    /// turns false.
    fn write(
        &mut self,
        writer: &mut redis::Connection,
        stored: &str,
        new: &[u8],
        still_held: impl Fn() -> bool,
    ) -> Result<(), BoxError> {
        let sent = Instant::now();
        redis::cmd("SET").arg(stored).arg(new).query::<()>(writer)?;
        let acked = Instant::now();
        let mut first = true;
        while still_held() {
            first = false;
            if acked.elapsed() > GIVE_UP {
                self.timeouts += 1;
                break;
            }
            std::thread::yield_now();
        }
        let gone = Instant::now();
        if first {
            self.gone_at_ack += 1;
        }
        self.after_ack
            .push(gone.duration_since(acked).as_nanos() as u64);
        self.after_send
            .push(gone.duration_since(sent).as_nanos() as u64);
        Ok(())
    }

    fn finish(self) -> Invalidation {
        Invalidation {
            after_ack: Latency::new(self.after_ack),
            after_send: Latency::new(self.after_send),
            gone_at_ack: self.gone_at_ack,
            timeouts: self.timeouts,
            stale: self.stale,
            not_held: self.not_held,
        }
    }
}

/// The invalidation measurement, on the calling thread (not a runtime
/// worker: the runtime stays free to handle the push messages): a plain
/// blocking redis-rs connection writes keys that the near cache and
/// redis-rs' cache hold, alternately, and the thread spins until the copy
/// is gone (the near cache's local store no longer has it; redis-rs'
/// cache has counted the invalidation).
fn invalidation(
    runtime: &tokio::runtime::Handle,
    near: &NearBackend,
    redis_rs: &MultiplexedConnection,
    port: u16,
    writes: usize,
) -> Result<(Invalidation, Invalidation), BoxError> {
    let mut writer =
        redis::Client::open(format!("redis://127.0.0.1:{port}/0"))?.get_connection()?;
    let near_keys: Vec<String> = (0..INVALIDATION_KEYS)
        .map(|i| format!("inv:{i:03}"))
        .collect();
    let rs_keys: Vec<String> = (0..INVALIDATION_KEYS)
        .map(|i| format!("{PREFIX}rs-inv:{i:03}"))
        .collect();
    // What each key holds on the server now.
    let mut near_current: Vec<Bytes> = (0..INVALIDATION_KEYS).map(value).collect();
    let mut rs_current = near_current.clone();
    for i in 0..INVALIDATION_KEYS {
        redis::cmd("SET")
            .arg(format!("{PREFIX}{}", near_keys[i]))
            .arg(near_current[i].as_ref())
            .query::<()>(&mut writer)?;
        redis::cmd("SET")
            .arg(&rs_keys[i])
            .arg(rs_current[i].as_ref())
            .query::<()>(&mut writer)?;
    }
    let stats = || redis_rs.get_cache_statistics().unwrap_or_default();
    let rs_get = |key: &str| -> Result<Option<Bytes>, BoxError> {
        let mut connection = redis_rs.clone();
        Ok(runtime.block_on(redis::cmd("GET").arg(key).query_async(&mut connection))?)
    };
    let (mut near_side, mut rs_side) = (Delays::default(), Delays::default());
    for n in 0..writes {
        let i = n % INVALIDATION_KEYS;
        for side in [n % 2, 1 - n % 2] {
            let new = value(INVALIDATION_KEYS + n);
            if side == 0 {
                // The near cache: held locally (the first read after an
                // invalidation fetches and keeps it).
                let key = &near_keys[i];
                let mut old = None;
                for _ in 0..20 {
                    if runtime.block_on(near.get(key))?.as_ref() != Some(&near_current[i]) {
                        near_side.stale += 1;
                    }
                    if let Some(copy) = held(near, key) {
                        old = Some(copy);
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                let Some(old) = old else {
                    near_side.not_held += 1;
                    continue;
                };
                near_side.write(&mut writer, &format!("{PREFIX}{key}"), &new, || {
                    held(near, key).is_some_and(|copy| copy == old)
                })?;
                near_current[i] = new;
            } else {
                // redis-rs' cache: a GET that hits shows that it holds the key.
                let key = &rs_keys[i];
                let mut cached = false;
                for _ in 0..20 {
                    let hits = stats().hit;
                    if rs_get(key)?.as_ref() != Some(&rs_current[i]) {
                        rs_side.stale += 1;
                    }
                    if stats().hit > hits {
                        cached = true;
                        break;
                    }
                }
                if !cached {
                    rs_side.not_held += 1;
                    continue;
                }
                let invalidated = stats().invalidate;
                rs_side.write(&mut writer, key, &new, || stats().invalidate == invalidated)?;
                rs_current[i] = new;
            }
            std::thread::sleep(WRITE_GAP);
        }
    }
    // Every key reads its last value.
    for i in 0..INVALIDATION_KEYS {
        if runtime.block_on(near.get(&near_keys[i]))?.as_ref() != Some(&near_current[i]) {
            near_side.stale += 1;
        }
        if rs_get(&rs_keys[i])?.as_ref() != Some(&rs_current[i]) {
            rs_side.stale += 1;
        }
    }
    eprintln!(
        "[near] invalidation: {} + {} writes",
        near_side.after_ack.len(),
        rs_side.after_ack.len()
    );
    Ok((near_side.finish(), rs_side.finish()))
}

fn met(yes: bool) -> &'static str {
    if yes { "yes" } else { "**no**" }
}

fn ratio_cell(values: &[f64]) -> String {
    let (lo, hi) = min_max(values);
    format!("{:.2}× [{lo:.2}–{hi:.2}]", median(values))
}

fn markdown(
    command: &str,
    date: &str,
    machine: &Machine,
    scale: Scale,
    o: &Outcome,
    total_seconds: f64,
) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# cachette-bench: near cache\n");
    let _ = writeln!(md, "- command: `{command}`");
    let _ = writeln!(md, "- date: {date}");
    let _ = writeln!(
        md,
        "- machine: {} CPUs, {}, {}, {}",
        machine.nproc, machine.cpu, machine.os, machine.rustc
    );
    let _ = writeln!(
        md,
        "- build: {}; scale: {}; redis-server {} on loopback (private, started by this run); runtime: {WORKERS} workers",
        machine.profile, scale.name, o.redis_version
    );
    for part in &o.interference {
        let _ = writeln!(
            md,
            "- {}: {:.1} s wall; other processes (not this one nor its redis-server) used {:.1} CPU-s meanwhile, steal {:.1} s",
            part.part, part.wall_seconds, part.other_cpu_seconds, part.steal_seconds
        );
    }
    let _ = writeln!(md, "- total run time: {total_seconds:.1} s\n");

    let t = &o.throughput;
    let inv = &o.invalidation;
    let latency_ratio = o.backend.p50() as f64 / o.near.p50().max(1) as f64;
    let _ = writeln!(
        md,
        "| measurement | ours (near cache) | peer | ratio | target | met? |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|:---:|");
    let _ = writeln!(
        md,
        "| hit latency p50, `get` of a warm key ({} / {} ops) | {} | {} (Redis backend GET) | {latency_ratio:.0}× faster | ≥ {LATENCY_TARGET:.0}× | {} |",
        scale.near_ops,
        scale.redis_ops,
        fmt_ns(o.near.p50()),
        fmt_ns(o.backend.p50()),
        met(latency_ratio >= LATENCY_TARGET)
    );
    let _ = writeln!(
        md,
        "| hit latency p99 | {} | {} (Redis backend GET) | {:.0}× faster | — | — |",
        fmt_ns(o.near.p99()),
        fmt_ns(o.backend.p99()),
        o.backend.p99() as f64 / o.near.p99().max(1) as f64
    );
    let _ = writeln!(
        md,
        "| hit latency p50 / p99, context | {} / {} (`get_ready`) | {} / {} (redis-rs cache-aio hit) | {:.2}× (`get` vs cache-aio p50) | — | — |",
        fmt_ns(o.near_ready.p50()),
        fmt_ns(o.near_ready.p99()),
        fmt_ns(o.redis_rs.p50()),
        fmt_ns(o.redis_rs.p99()),
        o.redis_rs.p50() as f64 / o.near.p50().max(1) as f64
    );
    let versus_backend = median(&t.versus_backend);
    let _ = writeln!(
        md,
        "| Zipf {ZIPF_ALPHA:.1} reads, {KEYS} keys of {VALUE_LEN} B, {TASKS} tasks: ops/s vs Redis backend | {:.0} | {:.0} | {} | ≥ {VERSUS_BACKEND_TARGET:.1}× | {} |",
        median(&t.near),
        median(&t.backend),
        ratio_cell(&t.versus_backend),
        met(versus_backend >= VERSUS_BACKEND_TARGET)
    );
    let versus_rs = median(&t.versus_redis_rs);
    let _ = writeln!(
        md,
        "| the same vs redis-rs cache-aio | {:.0} | {:.0} | {} | ≥ {VERSUS_REDIS_RS_TARGET:.1}× | {} |",
        median(&t.near),
        median(&t.redis_rs),
        ratio_cell(&t.versus_redis_rs),
        met(versus_rs >= VERSUS_REDIS_RS_TARGET)
    );
    let a = &inv.after_ack;
    let ra = &o.rs_invalidation.after_ack;
    let three = |l: &Latency| {
        format!(
            "{} / {} / {}",
            fmt_ns(l.p50()),
            fmt_ns(l.p99()),
            fmt_ns(l.max())
        )
    };
    let _ = writeln!(
        md,
        "| invalidation delay after the SET's ack, p50 / p99 / max ({} / {} writes) | {} | {} (redis-rs cache-aio) | — | p99 ≤ {} | {} |",
        a.samples.len(),
        ra.samples.len(),
        three(a),
        three(ra),
        fmt_ns(INVALIDATION_P99_TARGET.as_nanos() as u64),
        met(!a.samples.is_empty()
            && inv.timeouts == 0
            && a.p99() <= INVALIDATION_P99_TARGET.as_nanos() as u64)
    );
    let _ = writeln!(
        md,
        "| the same from before the SET was sent (includes its round trip) | {} | {} (redis-rs cache-aio) | — | — | — |",
        three(&inv.after_send),
        three(&o.rs_invalidation.after_send),
    );
    let _ = writeln!(md);
    let _ = writeln!(
        md,
        "- Latency: one task, sequential reads cycling over the {KEYS} warm keys, each timed with `Instant` (two back-to-back `Instant::now()` take {}; not subtracted).",
        fmt_ns(o.timer_ns)
    );
    let _ = writeln!(
        md,
        "- Throughput: {} rounds of {:.2} s per contender, order rotated each round; ratios are near ÷ peer within a round, median [min–max]. Per-round ops/s: near {:?}, Redis backend {:?}, redis-rs cache-aio {:?}.",
        scale.rounds,
        scale.seconds,
        t.near.iter().map(|x| x.round()).collect::<Vec<_>>(),
        t.backend.iter().map(|x| x.round()).collect::<Vec<_>>(),
        t.redis_rs.iter().map(|x| x.round()).collect::<Vec<_>>()
    );
    let _ = writeln!(
        md,
        "- Peers: the Redis backend is `RedisBackend` on the same server and prefix; redis-rs cache-aio is a RESP3 `MultiplexedConnection` with `CacheConfig` (mode All, {REDIS_RS_CACHE_KEYS} keys in 32 LRU shards) reading `GET` into `Option<Bytes>`. The near cache uses its default local store (memory engine, {} entries) and `Tracking::Default`.",
        cachette::backends::near::NearBuilder::DEFAULT_LOCAL_ENTRIES
    );
    let _ = writeln!(
        md,
        "- Invalidation: {INVALIDATION_KEYS} keys per side, a plain blocking RESP2 redis-rs connection on the main thread (not a runtime worker) writes them, near cache and redis-rs' cache alternately, {} ms apart, then spins with `sched_yield` between looks (a bare busy spin starved the runtime of a core on a 2-CPU machine and measured its own ms-long tails) until the copy is gone (near: `local().get_ready` no longer returns the old value; redis-rs: its `invalidate` counter moved). Near / redis-rs: copy already gone at the ack {} / {}; gave up after {GIVE_UP:?} {} / {}; stale reads {} / {}; key not held before a write {} / {}.",
        WRITE_GAP.as_millis(),
        inv.gone_at_ack,
        o.rs_invalidation.gone_at_ack,
        inv.timeouts,
        o.rs_invalidation.timeouts,
        inv.stale,
        o.rs_invalidation.stale,
        inv.not_held,
        o.rs_invalidation.not_held,
    );
    for note in &o.notes {
        let _ = writeln!(md, "- {note}");
    }
    md
}

fn report_json(
    command: &str,
    date: &str,
    machine: &Machine,
    scale: Scale,
    o: &Outcome,
    total_seconds: f64,
) -> Json {
    let t = &o.throughput;
    let ratio = |values: &[f64]| {
        let (lo, hi) = min_max(values);
        json!({ "median": median(values), "min": lo, "max": hi, "rounds": values })
    };
    json!({
        "command": command,
        "date": date,
        "machine": machine,
        "scale": scale.name,
        "redis_version": o.redis_version,
        "total_seconds": total_seconds,
        "interference": o.interference,
        "timer_overhead_ns": o.timer_ns,
        "hit_latency": {
            "near_get": o.near.json(),
            "near_get_ready": o.near_ready.json(),
            "redis_backend_get": o.backend.json(),
            "redis_rs_cache_aio_get": o.redis_rs.json(),
            "p50_ratio_backend_over_near": o.backend.p50() as f64 / o.near.p50().max(1) as f64,
            "target": LATENCY_TARGET,
        },
        "throughput": {
            "zipf_alpha": ZIPF_ALPHA,
            "keys": KEYS,
            "value_bytes": VALUE_LEN,
            "tasks": TASKS,
            "workers": WORKERS,
            "seconds_per_round": scale.seconds,
            "near_ops_per_second": t.near,
            "redis_backend_ops_per_second": t.backend,
            "redis_rs_cache_aio_ops_per_second": t.redis_rs,
            "near_over_redis_backend": ratio(&t.versus_backend),
            "near_over_redis_rs_cache_aio": ratio(&t.versus_redis_rs),
            "targets": { "near_over_redis_backend": VERSUS_BACKEND_TARGET, "near_over_redis_rs_cache_aio": VERSUS_REDIS_RS_TARGET },
        },
        "invalidation": {
            "after_ack": o.invalidation.after_ack.json(),
            "after_send": o.invalidation.after_send.json(),
            "gone_at_ack": o.invalidation.gone_at_ack,
            "timeouts": o.invalidation.timeouts,
            "stale_reads": o.invalidation.stale,
            "not_held": o.invalidation.not_held,
            "p99_target_ns": INVALIDATION_P99_TARGET.as_nanos() as u64,
        },
        "redis_rs_cache_aio_invalidation": {
            "after_ack": o.rs_invalidation.after_ack.json(),
            "after_send": o.rs_invalidation.after_send.json(),
            "gone_at_ack": o.rs_invalidation.gone_at_ack,
            "timeouts": o.rs_invalidation.timeouts,
            "stale_reads": o.rs_invalidation.stale,
            "not_held": o.rs_invalidation.not_held,
        },
        "notes": o.notes,
    })
}
