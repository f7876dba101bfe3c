//! The object-storage backend against raw `object_store` calls on the same
//! S3 server, the same bucket and the same store, side by side in one run
//! (and on local files, which have no server noise); then the hit latency
//! of each tier of a memory → Redis → S3 stack.
//!
//! ```text
//! cargo run --release -p cachette-bench --bin object -- [--quick] [--rounds 7] [--ops 500] [--large-ops 50]
//! ```
//!
//! Starts its own S3 server (`S3Server`: moto's server mode, one request
//! at a time, everything in memory) and Redis server on free loopback
//! ports, and a 2-worker tokio runtime (`--workers`); as in the other
//! side-by-side binaries, the workloads run on the thread that blocks on
//! the runtime. moto serves one request at a time (about 1.3 ms for a
//! 4 KiB GET on a 2-core machine), so the rounds are short: 500 4 KiB
//! operations and 50 1 MiB ones; the default run takes well under a
//! minute, `--quick` a few seconds.
//!
//! **Side by side.** Ours is an `ObjectBackend` (prefix `bench`, its
//! defaults otherwise) used through `Arc<dyn Backend>`. The peer is the
//! very same `AmazonS3` store (bucket `bench`, built as an `s3://` URL
//! builds it: connect timeout 5 s, 2 retries), called directly: `put` of
//! the raw value (ours stores the value behind its header of 18 bytes:
//! magic, expiry, key length, tag count) and `get` + `bytes()`, on paths
//! of the same shape as ours under another prefix (`peer/e/k_obj-NNNN`
//! beside ours' `bench/e/k_obj-NNNN`: on local files the depth of the
//! directory costs time), computed once before the rounds (ours escapes
//! the key into its name on every call: nanoseconds, in the peer's
//! favour). Both
//! sides use their own objects, written before the reads; every read
//! checks that it hit and got the whole value (a miss fails the run).
//! Workloads, one operation in flight: get and set (ours with a TTL of
//! 600 s) of 4 KiB values over 64 keys, and of 1 MiB values over 4 keys
//! (below the 8 MiB multipart threshold: one PUT each). The local-files
//! pair is the same over `LocalFileSystem` in a fresh temporary
//! directory (ours with `conditional_update(false)`, as `object+file://`
//! builds it), 4 KiB values.
//!
//! Ratios are ours ÷ peer in operations per second, taken within each
//! round (ours first in even rounds, the peer first in odd ones); the
//! table shows their median and range. Before its rounds, each row runs
//! both sides once untimed (a tenth of the operations).
//!
//! **Tiers.** A `TieredBackend` with a memory L1 (`l1_ttl` 60 s) over a
//! `TieredBackend` with a Redis L1 (`l1_ttl` 600 s) over an
//! `ObjectBackend` on the same S3 server (prefix `tiers`), as a
//! three-tier `CacheManager` entry builds it, no invalidation channel.
//! 32 keys of 4 KiB are written through the stack (TTL 1 h), then `get`
//! is timed with the value in L1; only in Redis (deleted from the memory
//! backend before each read, outside the timed part); only in S3 (deleted
//! from the memory and the Redis backends before each read). Each read
//! fills the tiers above the one that answered, so every read is prepared
//! again. The S3 store of this stack counts its requests, and the stack's
//! own counters (`l1_hits`, `l2_hits` of each tiered layer) confirm which
//! tier answered. For context, the same `get`s on each backend alone.

#[path = "../machine.rs"]
#[allow(
    dead_code,
    reason = "only the machine's description and the date are used here"
)]
mod machine;
#[path = "../side_by_side.rs"]
mod side_by_side;

use std::fmt;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cachette::backends::object::ObjectBackend;
use cachette::backends::object::object_store::aws::AmazonS3Builder;
use cachette::backends::object::object_store::local::LocalFileSystem;
use cachette::backends::object::object_store::path::Path;
use cachette::backends::object::object_store::{
    self, BackoffConfig, ClientOptions, CopyOptions, GetOptions, GetResult, ListResult,
    MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions,
    PutPayload, PutResult, RenameOptions, RetryConfig,
};
use cachette::backends::redis::RedisBackend;
use cachette::backends::tiered::TieredBackend;
use cachette::testing::servers::fresh_dir;
use cachette::testing::servers::redis::RedisServer;
use cachette::testing::servers::s3::{ACCESS_KEY, REGION, S3Server, SECRET_KEY};
use cachette::{Backend, MemoryBackend, SetOptions, Stats};
use clap::Parser;
use futures_util::stream::BoxStream;

use crate::machine::{Machine, utc_now};
use crate::side_by_side::SideBySide;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The object-storage backend against raw object_store calls.
#[derive(Debug, Parser)]
struct Args {
    /// A short smoke run: 3 rounds of 40 small and 4 large operations,
    /// 40 reads per tier.
    #[arg(long)]
    quick: bool,
    /// Rounds per workload [default: 7; quick: 3].
    #[arg(long)]
    rounds: Option<usize>,
    /// 4 KiB operations on S3 per workload, side and round [default: 500;
    /// quick: 40].
    #[arg(long)]
    ops: Option<usize>,
    /// 1 MiB operations on S3 per workload, side and round [default: 50;
    /// quick: 4].
    #[arg(long)]
    large_ops: Option<usize>,
    /// 4 KiB operations on local files per workload, side and round
    /// [default: 5000; quick: 400].
    #[arg(long)]
    local_ops: Option<usize>,
    /// Timed reads per tier [default: 300; quick: 40].
    #[arg(long)]
    samples: Option<usize>,
    /// Worker threads of the tokio runtime.
    #[arg(long, default_value_t = 2)]
    workers: usize,
}

const SMALL: usize = 4 << 10;
const LARGE: usize = 1 << 20;
const SMALL_KEYS: usize = 64;
const LARGE_KEYS: usize = 4;
const TIER_KEYS: usize = 32;
const TTL: Duration = Duration::from_secs(600);
const TIER_TTL: Duration = Duration::from_secs(3600);
const TARGET: f64 = 0.95;
const BUCKET: &str = "bench";
/// Ours' prefix in the bucket (and the local directory).
const PREFIX: &str = "bench";
/// The peer's folder, beside ours.
const PEER_PREFIX: &str = "peer";
/// The three-tier stack's prefixes.
const TIER_PREFIX: &str = "tiers";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Get,
    Set,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Size {
    /// 4 KiB.
    Small,
    /// 1 MiB.
    Large,
}

impl Size {
    fn bytes(self) -> usize {
        match self {
            Size::Small => SMALL,
            Size::Large => LARGE,
        }
    }

    fn keys(self) -> usize {
        match self {
            Size::Small => SMALL_KEYS,
            Size::Large => LARGE_KEYS,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Size::Small => "4 KiB",
            Size::Large => "1 MiB",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Where {
    S3,
    Local,
}

impl Where {
    fn label(self) -> &'static str {
        match self {
            Where::S3 => "S3 (moto)",
            Where::Local => "local files",
        }
    }
}

/// The rows of the side-by-side table, in order.
const ROWS: [(Where, Size, Op); 6] = [
    (Where::S3, Size::Small, Op::Get),
    (Where::S3, Size::Small, Op::Set),
    (Where::S3, Size::Large, Op::Get),
    (Where::S3, Size::Large, Op::Set),
    (Where::Local, Size::Small, Op::Get),
    (Where::Local, Size::Small, Op::Set),
];

/// The `i`-th key of a size: 4 KiB and 1 MiB values under different keys.
fn key(size: Size, i: usize) -> String {
    match size {
        Size::Small => format!("obj-{i:04}"),
        Size::Large => format!("big-{i:04}"),
    }
}

/// A value of `len` bytes (not all alike, in case a layer compresses).
fn value(len: usize) -> Bytes {
    (0..len)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect::<Vec<u8>>()
        .into()
}

fn miss(key: &str) -> BoxError {
    format!("a get of {key} missed: the keys were written before the reads").into()
}

fn short(key: &str, got: usize, want: usize) -> BoxError {
    format!("a get of {key} answered {got} bytes, not {want}").into()
}

/// One store's two sides: ours over it, and its own paths for the peer.
struct Pair {
    ours: Arc<dyn Backend>,
    store: Arc<dyn ObjectStore>,
    small: Box<[(String, Path)]>,
    large: Box<[(String, Path)]>,
}

impl Pair {
    fn new(ours: Arc<dyn Backend>, store: Arc<dyn ObjectStore>) -> Pair {
        let keys = |size: Size| {
            (0..size.keys())
                .map(|i| {
                    let key = key(size, i);
                    // Ours' layout (`{prefix}/e/k_{key}`; these keys
                    // need no escaping) under the peer's prefix.
                    let path = Path::from(format!("{PEER_PREFIX}/e/k_{key}"));
                    (key, path)
                })
                .collect()
        };
        Pair {
            ours,
            store,
            small: keys(Size::Small),
            large: keys(Size::Large),
        }
    }

    fn keys(&self, size: Size) -> &[(String, Path)] {
        match size {
            Size::Small => &self.small,
            Size::Large => &self.large,
        }
    }

    /// Writes every key of both sides once.
    async fn fill(&self) -> Result<(), BoxError> {
        for size in [Size::Small, Size::Large] {
            let value = value(size.bytes());
            for (key, path) in self.keys(size) {
                self.ours
                    .set(key, value.clone(), &SetOptions::new().ttl(TTL))
                    .await?;
                self.store
                    .put(path, PutPayload::from_bytes(value.clone()))
                    .await?;
            }
        }
        Ok(())
    }
}

/// Runs a workload through cachette; returns operations per second.
async fn ours(pair: &Pair, size: Size, op: Op, ops: usize) -> Result<f64, BoxError> {
    let keys = pair.keys(size);
    let value = value(size.bytes());
    let options = SetOptions::new().ttl(TTL);
    let backend = &pair.ours;
    let start = Instant::now();
    for i in 0..ops {
        let key = keys[i % keys.len()].0.as_str();
        match op {
            Op::Get => {
                let got = backend.get(key).await?.ok_or_else(|| miss(key))?;
                if got.len() != value.len() {
                    return Err(short(key, got.len(), value.len()));
                }
            }
            Op::Set => {
                backend.set(key, value.clone(), &options).await?;
            }
        }
    }
    Ok(ops as f64 / start.elapsed().as_secs_f64())
}

/// The same workload in raw object_store calls on the same store.
async fn peer(pair: &Pair, size: Size, op: Op, ops: usize) -> Result<f64, BoxError> {
    let keys = pair.keys(size);
    let value = value(size.bytes());
    let store = &pair.store;
    let start = Instant::now();
    for i in 0..ops {
        let (key, path) = &keys[i % keys.len()];
        match op {
            Op::Get => {
                let got = match store.get(path).await {
                    Ok(result) => result.bytes().await?,
                    Err(object_store::Error::NotFound { .. }) => return Err(miss(key)),
                    Err(err) => return Err(err.into()),
                };
                if got.len() != value.len() {
                    return Err(short(key, got.len(), value.len()));
                }
            }
            Op::Set => {
                store
                    .put(path, PutPayload::from_bytes(value.clone()))
                    .await?;
            }
        }
    }
    Ok(ops as f64 / start.elapsed().as_secs_f64())
}

/// An S3 store on the test server's bucket, signed with the test keys,
/// with the client options an `s3://` URL gets by default.
fn s3_store(server: &S3Server) -> Result<Arc<dyn ObjectStore>, BoxError> {
    let store = AmazonS3Builder::new()
        .with_endpoint(server.endpoint())
        .with_bucket_name(BUCKET)
        .with_region(REGION)
        .with_access_key_id(ACCESS_KEY)
        .with_secret_access_key(SECRET_KEY)
        .with_allow_http(true)
        .with_client_options(
            ClientOptions::new()
                .with_allow_http(true)
                .with_connect_timeout(Duration::from_secs(5)),
        )
        .with_retry(RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 2,
            retry_timeout: Duration::from_secs(30),
        })
        .build()?;
    Ok(Arc::new(store))
}

/// A boxed future of a store's answer (what `#[async_trait]` makes of the
/// trait's `async fn`s).
type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = object_store::Result<T>> + Send + 'a>>;

/// A store that counts the requests it passes on: GETs (HEADs and ranged
/// reads included), PUTs, and every other call.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn ObjectStore>,
    gets: AtomicU64,
    puts: AtomicU64,
    others: AtomicU64,
}

/// What a [`Counting`] store has passed on so far.
#[derive(Debug, Clone, Copy, Default)]
struct Requests {
    gets: u64,
    puts: u64,
    others: u64,
}

impl Counting {
    fn new(inner: Arc<dyn ObjectStore>) -> Counting {
        Counting {
            inner,
            gets: AtomicU64::new(0),
            puts: AtomicU64::new(0),
            others: AtomicU64::new(0),
        }
    }

    fn requests(&self) -> Requests {
        Requests {
            gets: self.gets.load(Ordering::Relaxed),
            puts: self.puts.load(Ordering::Relaxed),
            others: self.others.load(Ordering::Relaxed),
        }
    }
}

impl Requests {
    fn since(self, before: Requests) -> Requests {
        Requests {
            gets: self.gets - before.gets,
            puts: self.puts - before.puts,
            others: self.others - before.others,
        }
    }

    fn add(&mut self, more: Requests) {
        self.gets += more.gets;
        self.puts += more.puts;
        self.others += more.others;
    }

    /// `1.00 GET`, `3.00 GET + 1.00 PUT`, per operation.
    fn per(self, ops: usize) -> String {
        let ops = ops.max(1) as f64;
        let mut parts = Vec::new();
        for (count, what) in [
            (self.gets, "GET"),
            (self.puts, "PUT"),
            (self.others, "other"),
        ] {
            if count > 0 {
                parts.push(format!("{:.2} {what}", count as f64 / ops));
            }
        }
        if parts.is_empty() {
            "0".to_owned()
        } else {
            parts.join(" + ")
        }
    }
}

impl fmt::Display for Counting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Counting({})", self.inner)
    }
}

impl ObjectStore for Counting {
    fn put_opts<'life0, 'life1, 'async_trait>(
        &'life0 self,
        location: &'life1 Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> StoreFuture<'async_trait, PutResult>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        self.puts.fetch_add(1, Ordering::Relaxed);
        self.inner.put_opts(location, payload, opts)
    }

    fn put_multipart_opts<'life0, 'life1, 'async_trait>(
        &'life0 self,
        location: &'life1 Path,
        opts: PutMultipartOptions,
    ) -> StoreFuture<'async_trait, Box<dyn MultipartUpload>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        self.others.fetch_add(1, Ordering::Relaxed);
        self.inner.put_multipart_opts(location, opts)
    }

    fn get_opts<'life0, 'life1, 'async_trait>(
        &'life0 self,
        location: &'life1 Path,
        options: GetOptions,
    ) -> StoreFuture<'async_trait, GetResult>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        self.gets.fetch_add(1, Ordering::Relaxed);
        self.inner.get_opts(location, options)
    }

    fn get_ranges<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        location: &'life1 Path,
        ranges: &'life2 [Range<u64>],
    ) -> StoreFuture<'async_trait, Vec<Bytes>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        self.gets
            .fetch_add(ranges.len().max(1) as u64, Ordering::Relaxed);
        self.inner.get_ranges(location, ranges)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.others.fetch_add(1, Ordering::Relaxed);
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.others.fetch_add(1, Ordering::Relaxed);
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.others.fetch_add(1, Ordering::Relaxed);
        self.inner.list_with_offset(prefix, offset)
    }

    fn list_with_delimiter<'life0, 'life1, 'async_trait>(
        &'life0 self,
        prefix: Option<&'life1 Path>,
    ) -> StoreFuture<'async_trait, ListResult>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        self.others.fetch_add(1, Ordering::Relaxed);
        self.inner.list_with_delimiter(prefix)
    }

    fn copy_opts<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        from: &'life1 Path,
        to: &'life2 Path,
        options: CopyOptions,
    ) -> StoreFuture<'async_trait, ()>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        self.others.fetch_add(1, Ordering::Relaxed);
        self.inner.copy_opts(from, to, options)
    }

    fn rename_opts<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        from: &'life1 Path,
        to: &'life2 Path,
        options: RenameOptions,
    ) -> StoreFuture<'async_trait, ()>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        self.others.fetch_add(1, Ordering::Relaxed);
        self.inner.rename_opts(from, to, options)
    }
}

/// The nearest-rank `q` quantile of sorted samples.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `0.85 µs`, `85 µs`, `1.31 ms`, `2.40 s`.
fn fmt_duration(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 10.0 {
        format!("{us:.2} µs")
    } else if us < 1_000.0 {
        format!("{us:.0} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1_000.0)
    } else {
        format!("{:.2} s", us / 1_000_000.0)
    }
}

/// `moto` and `redis-server` versions.
fn versions() -> (String, String) {
    let run = |program: &str, args: &[&str]| {
        std::process::Command::new(program)
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
            .filter(|text| !text.is_empty())
    };
    let moto = run("python3", &["-c", "import moto; print(moto.__version__)"]).map_or_else(
        || "moto (version unknown)".to_owned(),
        |v| format!("moto {v}"),
    );
    let redis = run("redis-server", &["--version"])
        .and_then(|text| {
            text.split_whitespace()
                .find_map(|word| word.strip_prefix("v="))
                .map(|v| format!("Redis {v}"))
        })
        .unwrap_or_else(|| "Redis (version unknown)".to_owned());
    (moto, redis)
}

/// The 1-, 5- and 15-minute load averages, from /proc/loadavg.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|load| {
            load.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// What [`run`] needs.
struct Setup {
    rounds: usize,
    ops: usize,
    large_ops: usize,
    local_ops: usize,
    samples: usize,
    s3: Arc<dyn ObjectStore>,
    redis_port: u16,
    dir: std::path::PathBuf,
}

fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    let quick = args.quick;
    let rounds = args.rounds.unwrap_or(if quick { 3 } else { 7 }).max(1);
    let ops = args.ops.unwrap_or(if quick { 40 } else { 500 }).max(1);
    let large_ops = args.large_ops.unwrap_or(if quick { 4 } else { 50 }).max(1);
    let local_ops = args
        .local_ops
        .unwrap_or(if quick { 400 } else { 5_000 })
        .max(1);
    let samples = args.samples.unwrap_or(if quick { 40 } else { 300 }).max(1);
    let machine = Machine::detect();
    let date = utc_now();
    let load_before = load_average();
    let started = Instant::now();
    let s3 = S3Server::start();
    s3.create_bucket(BUCKET);
    let redis = RedisServer::start();
    let dir = fresh_dir();
    let (moto, redis_version) = versions();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers.max(1))
        .enable_all()
        .build()?;
    println!(
        "{date}, {} ({} CPUs, {}), {moto} (one request at a time), {redis_version}, {} tokio workers; \
         {rounds} rounds of {ops} (4 KiB) and {large_ops} (1 MiB) operations on S3, {local_ops} on local files; \
         {samples} reads per tier; load average before: {load_before}\n",
        machine.cpu,
        machine.nproc,
        machine.profile,
        args.workers.max(1),
    );
    let setup = Setup {
        rounds,
        ops,
        large_ops,
        local_ops,
        samples,
        s3: s3_store(&s3)?,
        redis_port: redis.port(),
        dir: dir.clone(),
    };
    let outcome = runtime.block_on(run(&setup));
    println!(
        "\n{:.0} s in all; load average after: {}",
        started.elapsed().as_secs_f64(),
        load_average()
    );
    // The connections first, then the servers they talk to.
    drop(setup);
    drop(runtime);
    drop(redis);
    drop(s3);
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

async fn run(setup: &Setup) -> Result<(), BoxError> {
    let s3_ours: Arc<dyn Backend> = Arc::new(
        ObjectBackend::builder(setup.s3.clone())
            .prefix(PREFIX)
            .build()?,
    );
    let s3 = Pair::new(s3_ours, setup.s3.clone());
    let local_store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(&setup.dir)?);
    let local_ours: Arc<dyn Backend> = Arc::new(
        ObjectBackend::builder(local_store.clone())
            .prefix(PREFIX)
            .conditional_update(false)
            .build()?,
    );
    let local = Pair::new(local_ours, local_store);
    s3.fill().await?;
    local.fill().await?;

    println!(
        "| workload | store | ops per side and round | ours ops/s (median) | peer ops/s (median) | ours ÷ peer, median [min–max] | target |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    for (place, size, op) in ROWS {
        let pair = match place {
            Where::S3 => &s3,
            Where::Local => &local,
        };
        let ops = match (place, size) {
            (Where::Local, _) => setup.local_ops,
            (Where::S3, Size::Small) => setup.ops,
            (Where::S3, Size::Large) => setup.large_ops,
        };
        let warm_up = (ops / 10).max(2);
        ours(pair, size, op, warm_up).await?;
        peer(pair, size, op, warm_up).await?;
        let rounds = SideBySide::run(
            setup.rounds,
            async || ours(pair, size, op, ops).await,
            async || peer(pair, size, op, ops).await,
        )
        .await?;
        let label = format!(
            "sequential {} of {}, 1 in flight",
            match op {
                Op::Get => "get",
                Op::Set => "set",
            },
            size.label()
        );
        println!(
            "| {label} | {} | {ops} | {} | ≥ {TARGET:.2} |",
            place.label(),
            rounds.cells()
        );
        eprintln!("[object] {label} on {} done", place.label());
    }

    tiers(setup).await
}

/// Which tier a timed read should find the value in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tier {
    Memory,
    Redis,
    S3,
}

/// One row of latencies.
struct Latencies {
    sorted: Vec<Duration>,
    requests: Requests,
}

impl Latencies {
    fn cells(&self) -> String {
        let n = self.sorted.len();
        format!(
            "{n} | {} | {} | {} | {}",
            fmt_duration(quantile(&self.sorted, 0.50)),
            fmt_duration(quantile(&self.sorted, 0.99)),
            fmt_duration(self.sorted.last().copied().unwrap_or_default()),
            self.requests.per(n)
        )
    }
}

/// A detail counter of a tiered backend's stats (`l1_hits`,
/// `l2.l1_hits`, …).
fn detail(stats: &Stats, name: &str) -> u64 {
    stats
        .details
        .iter()
        .find(|(n, _)| n == name)
        .map_or(0, |(_, v)| *v)
}

/// Times `samples` gets of the tier-keys on `backend`, running `prepare`
/// (untimed) before each; counts the S3 requests of the timed part only.
async fn time_gets(
    backend: &Arc<dyn Backend>,
    keys: &[String],
    counting: &Counting,
    samples: usize,
    mut prepare: impl AsyncFnMut(&str) -> Result<(), BoxError>,
) -> Result<Latencies, BoxError> {
    let mut sorted = Vec::with_capacity(samples);
    let mut requests = Requests::default();
    for i in 0..samples {
        let key = keys[i % keys.len()].as_str();
        prepare(key).await?;
        let before = counting.requests();
        let asked = Instant::now();
        let got = backend.get(key).await?;
        sorted.push(asked.elapsed());
        requests.add(counting.requests().since(before));
        let got = got.ok_or_else(|| miss(key))?;
        if got.len() != SMALL {
            return Err(short(key, got.len(), SMALL));
        }
    }
    sorted.sort_unstable();
    Ok(Latencies { sorted, requests })
}

/// The three-tier stack's hit latency at each tier.
async fn tiers(setup: &Setup) -> Result<(), BoxError> {
    let counting = Arc::new(Counting::new(setup.s3.clone()));
    let memory = Arc::new(MemoryBackend::builder().max_entries(10_000).build()?);
    let memory_dyn: Arc<dyn Backend> = memory.clone();
    let redis: Arc<dyn Backend> = Arc::new(
        RedisBackend::builder("127.0.0.1", setup.redis_port)
            .prefix(format!("{TIER_PREFIX}:"))
            .build()
            .await?,
    );
    let object: Arc<dyn Backend> = Arc::new(
        ObjectBackend::builder(counting.clone())
            .prefix(TIER_PREFIX)
            .build()?,
    );
    let lower: Arc<dyn Backend> = Arc::new(
        TieredBackend::builder(redis.clone(), object.clone())
            .l1_ttl(Duration::from_secs(600))
            .build()
            .await?,
    );
    let stack: Arc<dyn Backend> = Arc::new(
        TieredBackend::builder(memory_dyn.clone(), lower)
            .l1_ttl(Duration::from_secs(60))
            .build()
            .await?,
    );
    let keys: Vec<String> = (0..TIER_KEYS).map(|i| format!("page-{i:04}")).collect();
    let value = value(SMALL);
    let options = SetOptions::new().ttl(TIER_TTL);
    let before = counting.requests();
    for key in &keys {
        stack.set(key, value.clone(), &options).await?;
    }
    let writes = counting.requests().since(before);
    // Every tier holds every key now.
    for key in &keys {
        for (name, backend) in [("memory", &memory_dyn), ("Redis", &redis), ("S3", &object)] {
            if backend.get(key).await?.is_none() {
                return Err(format!("{key} is missing from {name} after a write").into());
            }
        }
    }
    // Warm the connections and paths of every tier once.
    for key in &keys {
        memory.delete(key).await?;
        redis.delete(key).await?;
        stack.get(key).await?;
    }

    println!(
        "\n## Three tiers: memory (l1_ttl 60 s) over Redis (l1_ttl 600 s) over S3, 4 KiB values\n\n\
         {TIER_KEYS} keys written through the stack (TTL 1 h), S3 requests per write: {}. Each timed `get` \
         starts from the state named (the tiers above are emptied before it, untimed).\n",
        writes.per(TIER_KEYS)
    );
    println!(
        "| read | value before the read | reads | p50 | p99 | max | S3 requests per read | answered by (stack counters) |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---|");
    let samples = setup.samples;
    for tier in [Tier::Memory, Tier::Redis, Tier::S3] {
        let stats_before = stack.stats().await?;
        let latencies = time_gets(&stack, &keys, &counting, samples, async |key: &str| {
            match tier {
                Tier::Memory => {}
                Tier::Redis => {
                    memory.delete(key).await?;
                }
                Tier::S3 => {
                    memory.delete(key).await?;
                    redis.delete(key).await?;
                }
            }
            Ok(())
        })
        .await?;
        let stats_after = stack.stats().await?;
        let diff = |name: &str| detail(&stats_after, name) - detail(&stats_before, name);
        // The outer layer's L1 is memory; its L2 is the Redis-over-S3
        // layer, whose own L1 is Redis and L2 is S3.
        let answered = format!(
            "memory {}, Redis {}, S3 {}, missed {}",
            diff("l1_hits"),
            diff("l2.l1_hits"),
            diff("l2.l2_hits"),
            diff("misses")
        );
        let (label, state) = match tier {
            Tier::Memory => ("L1 hit", "in memory, Redis and S3"),
            Tier::Redis => ("L2 hit", "in Redis and S3 (deleted from memory)"),
            Tier::S3 => ("L3 hit", "in S3 only (deleted from memory and Redis)"),
        };
        println!(
            "| stack `get`, {label} | {state} | {} | {answered} |",
            latencies.cells()
        );
        eprintln!("[object] three tiers: {label} done");
    }

    // Each backend alone, for context.
    for (label, backend) in [
        ("memory backend alone", &memory_dyn),
        ("Redis backend alone", &redis),
        ("object backend alone (S3)", &object),
    ] {
        let latencies =
            time_gets(backend, &keys, &counting, samples, async |_: &str| Ok(())).await?;
        println!("| `get`, {label} | present | {} | – |", latencies.cells());
    }
    let mut sorted = Vec::with_capacity(samples);
    let before = counting.requests();
    for i in 0..samples {
        let path = Path::from(format!("{TIER_PREFIX}/e/k_{}", keys[i % keys.len()]));
        let asked = Instant::now();
        let got = counting.get(&path).await?.bytes().await?;
        sorted.push(asked.elapsed());
        if got.len() <= SMALL {
            return Err(format!("the object {path} holds {} bytes", got.len()).into());
        }
    }
    sorted.sort_unstable();
    let raw = Latencies {
        sorted,
        requests: counting.requests().since(before),
    };
    println!(
        "| raw `get` + `bytes()` of the same objects | present | {} | – |",
        raw.cells()
    );
    stack.close().await?;
    Ok(())
}
