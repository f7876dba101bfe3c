//! The Memcached backend against two raw memcached clients on the same
//! servers, side by side in one run: memcache's meta-protocol
//! `AsyncMetaClient` (crate `memcache` 0.21, module `exp`) and
//! async-memcached 0.9.
//!
//! ```text
//! cargo run --release -p cachette-bench --bin memcached -- [--quick] [--rounds 9] [--ops 10000]
//! ```
//!
//! Starts its own `memcached` servers on free loopback ports (one, and a
//! cluster of three), each with 2 worker threads (`--server-threads`), and
//! a 2-worker tokio runtime (`--workers`); as in `--bin redis`, the
//! workloads run on the thread that blocks on the runtime and spawn their
//! tasks onto its workers. Every side writes its own 1,024 keys of 100-byte
//! values before it reads them, and every read checks that it hit (a miss
//! fails the run). cachette is opened from a URL
//! (`memcached://…?prefix=bench:`, its default pool of 2 multiplexed
//! connections per server unless `--pool-size` says otherwise); it stores
//! its entry envelope under a namespaced key and sends each server's batch
//! behind a read of the namespace generation (`mg` of the generation, the
//! batch's commands, `mn`), where the raw clients send their bare
//! commands for bare values. Workloads, each ours against each peer:
//!
//! - sequential GET, one request in flight, one server;
//! - sequential SET (no TTL), one in flight, one server;
//! - GET from 64 concurrent tasks, one server. Ours: one shared backend.
//!   memcache: one client cloned into every task; its pool checks out one
//!   connection per request, and keeps up to 64 idle (`max_idle(64)`; its
//!   default of 8 would dial and drop a connection for most requests).
//!   async-memcached, one connection per `Client` with `&mut self`
//!   methods: every task owns a client of its own (64 connections, no
//!   lock, the best case for it);
//! - `get_many` of 16 keys over three servers, against memcache's
//!   `run_many` of 16 `Get`s (split per server, the servers asked
//!   concurrently). async-memcached talks to one server per client, so it
//!   is measured with `meta_get_multi` of 16 keys on one server, against
//!   `get_many` of 16 on the one-server backend; memcache's `run_many` on
//!   one server is shown there too.
//!
//! Ratios are ours ÷ raw in operations (or batches) per second, taken
//! within each round (ours first in even rounds, raw first in odd ones);
//! the table shows their median and range. Before its rounds, each row
//! runs both sides once untimed (a tenth of the operations), so that
//! connections are open and pools full.

#[path = "../machine.rs"]
#[allow(
    dead_code,
    reason = "only the machine's description and the date are used here"
)]
mod machine;
#[path = "../side_by_side.rs"]
mod side_by_side;

use std::sync::Arc;
use std::time::Instant;

use async_memcached::MetaProtocol;
use bytes::Bytes;
use cachette::testing::servers::memcached::MemcachedServer;
use cachette::{Backend, SetOptions};
use clap::Parser;
use memcache::exp::{AsyncMetaClient, Get};

use crate::machine::{Machine, utc_now};
use crate::side_by_side::SideBySide;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The Memcached backend against memcache and async-memcached.
#[derive(Debug, Parser)]
struct Args {
    /// A short run (well under 30 s): 3 rounds of 2,000 operations.
    #[arg(long)]
    quick: bool,
    /// Rounds per workload [default: 9; quick: 3].
    #[arg(long)]
    rounds: Option<usize>,
    /// Operations (or batches) per workload, side and round [default:
    /// 10000; quick: 2000].
    #[arg(long)]
    ops: Option<usize>,
    /// Worker threads of each memcached server (`-t`).
    #[arg(long, default_value_t = 2)]
    server_threads: usize,
    /// cachette's connections per server (`pool_size`) [default: the
    /// backend's own, 2].
    #[arg(long)]
    pool_size: Option<usize>,
    /// Worker threads of the tokio runtime.
    #[arg(long, default_value_t = 2)]
    workers: usize,
}

const KEYS: usize = 1024;
const VALUE_LEN: usize = 100;
const BATCH: usize = 16;
const TASKS: usize = 64;
const SERVERS: usize = 3;
const TARGET: f64 = 0.95;
/// The prefix of cachette's keys (its URL's `prefix`).
const PREFIX: &str = "bench:";
/// The prefix of the raw clients' keys, which both of them share.
const RAW_PREFIX: &str = "raw:";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workload {
    SequentialGet,
    SequentialSet,
    Concurrent64Get,
    /// `get_many` of [`BATCH`] keys over the three servers.
    GetMany16Cluster,
    /// `get_many` of [`BATCH`] keys on the one server.
    GetMany16One,
}

impl Workload {
    fn label(self) -> &'static str {
        match self {
            Workload::SequentialGet => "sequential GET, 1 in flight, one server",
            Workload::SequentialSet => "sequential SET, 1 in flight, one server",
            Workload::Concurrent64Get => "GET from 64 tasks, one server",
            Workload::GetMany16Cluster => "get_many of 16 keys, three servers",
            Workload::GetMany16One => "get_many of 16 keys, one server",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    Memcache,
    AsyncMemcached,
}

impl Peer {
    fn label(self) -> &'static str {
        match self {
            Peer::Memcache => "memcache `AsyncMetaClient`",
            Peer::AsyncMemcached => "async-memcached",
        }
    }
}

/// The rows of the table, in order.
const ROWS: [(Workload, Peer); 9] = [
    (Workload::SequentialGet, Peer::Memcache),
    (Workload::SequentialGet, Peer::AsyncMemcached),
    (Workload::SequentialSet, Peer::Memcache),
    (Workload::SequentialSet, Peer::AsyncMemcached),
    (Workload::Concurrent64Get, Peer::Memcache),
    (Workload::Concurrent64Get, Peer::AsyncMemcached),
    (Workload::GetMany16Cluster, Peer::Memcache),
    (Workload::GetMany16One, Peer::AsyncMemcached),
    (Workload::GetMany16One, Peer::Memcache),
];

/// The keys of one side, without cachette's prefix (which its URL adds).
fn keys(prefix: &str) -> Arc<[String]> {
    (0..KEYS).map(|i| format!("{prefix}k:{i:04}")).collect()
}

/// The `i`-th batch of [`BATCH`] keys.
fn batch(keys: &[String], i: usize) -> Vec<&str> {
    (0..BATCH)
        .map(|j| keys[(i * BATCH + j) % keys.len()].as_str())
        .collect()
}

fn value() -> Bytes {
    Bytes::from(vec![b'v'; VALUE_LEN])
}

fn miss(key: &str) -> BoxError {
    format!("a GET of {key} missed: the keys were written before the reads").into()
}

fn short_batch(found: usize) -> BoxError {
    format!("a get_many of {BATCH} keys found {found}: the keys were written before the reads")
        .into()
}

/// cachette's side: the backend on one server and on the three.
struct Ours {
    one: Arc<dyn Backend>,
    cluster: Arc<dyn Backend>,
}

/// memcache's side: a client of the one server and one of the three.
struct Memcache {
    one: AsyncMetaClient,
    cluster: AsyncMetaClient,
}

/// async-memcached's side, all on the one server: a client for the
/// sequential workloads and one per task for the concurrent one.
struct AsyncMemcached {
    one: async_memcached::Client,
    per_task: Vec<async_memcached::Client>,
}

/// Runs a workload through cachette; returns operations (or batches) per second.
async fn ours(side: &Ours, workload: Workload, ops: usize) -> Result<f64, BoxError> {
    let keys = keys("");
    let value = value();
    let options = SetOptions::new();
    let backend = match workload {
        Workload::GetMany16Cluster => &side.cluster,
        _ => &side.one,
    };
    let start = Instant::now();
    match workload {
        Workload::SequentialGet => {
            for i in 0..ops {
                let key = &keys[i % KEYS];
                if backend.get(key).await?.is_none() {
                    return Err(miss(key));
                }
            }
        }
        Workload::SequentialSet => {
            for i in 0..ops {
                backend
                    .set(&keys[i % KEYS], value.clone(), &options)
                    .await?;
            }
        }
        Workload::Concurrent64Get => {
            let mut tasks = Vec::with_capacity(TASKS);
            for t in 0..TASKS {
                let backend = backend.clone();
                let keys = keys.clone();
                tasks.push(tokio::spawn(async move {
                    for i in 0..ops / TASKS {
                        let key = &keys[(t * 31 + i) % KEYS];
                        if backend.get(key).await?.is_none() {
                            return Err(miss(key));
                        }
                    }
                    Ok::<_, BoxError>(())
                }));
            }
            for task in tasks {
                task.await??;
            }
        }
        Workload::GetMany16Cluster | Workload::GetMany16One => {
            for i in 0..ops {
                let values = backend.get_many(&batch(&keys, i)).await?;
                let found = values.iter().filter(|v| v.is_some()).count();
                if found != BATCH {
                    return Err(short_batch(found));
                }
            }
        }
    }
    Ok(ops as f64 / start.elapsed().as_secs_f64())
}

/// The same workload with memcache's `AsyncMetaClient`.
async fn memcache(side: &Memcache, workload: Workload, ops: usize) -> Result<f64, BoxError> {
    let keys = keys(RAW_PREFIX);
    let value = value();
    let client = match workload {
        Workload::GetMany16Cluster => &side.cluster,
        _ => &side.one,
    };
    let start = Instant::now();
    match workload {
        Workload::SequentialGet => {
            for i in 0..ops {
                let key = &keys[i % KEYS];
                if !client.get(key).send().await?.hit() {
                    return Err(miss(key));
                }
            }
        }
        Workload::SequentialSet => {
            for i in 0..ops {
                let key = &keys[i % KEYS];
                if !client.set(key, &value).send().await?.applied() {
                    return Err(format!("memcache did not store {key}").into());
                }
            }
        }
        Workload::Concurrent64Get => {
            let mut tasks = Vec::with_capacity(TASKS);
            for t in 0..TASKS {
                let client = client.clone();
                let keys = keys.clone();
                tasks.push(tokio::spawn(async move {
                    for i in 0..ops / TASKS {
                        let key = &keys[(t * 31 + i) % KEYS];
                        if !client.get(key).send().await?.hit() {
                            return Err(miss(key));
                        }
                    }
                    Ok::<_, BoxError>(())
                }));
            }
            for task in tasks {
                task.await??;
            }
        }
        Workload::GetMany16Cluster | Workload::GetMany16One => {
            for i in 0..ops {
                let results = client
                    .run_many(batch(&keys, i).into_iter().map(Get::new))
                    .await?;
                let mut found = 0;
                for result in results {
                    found += usize::from(result?.hit());
                }
                if found != BATCH {
                    return Err(short_batch(found));
                }
            }
        }
    }
    Ok(ops as f64 / start.elapsed().as_secs_f64())
}

/// The same workload with async-memcached (one server only).
async fn async_memcached(
    side: &mut AsyncMemcached,
    workload: Workload,
    ops: usize,
) -> Result<f64, BoxError> {
    const VALUE_FLAG: &[&str] = &["v"];
    let keys = keys(RAW_PREFIX);
    let value = value();
    let client = &mut side.one;
    let start = Instant::now();
    match workload {
        Workload::SequentialGet => {
            for i in 0..ops {
                let key = &keys[i % KEYS];
                let got = client.meta_get(key, false, None, Some(VALUE_FLAG)).await?;
                if got.is_none_or(|v| v.data.is_none()) {
                    return Err(miss(key));
                }
            }
        }
        Workload::SequentialSet => {
            for i in 0..ops {
                client
                    .meta_set(&keys[i % KEYS], &value[..], false, None, None)
                    .await?;
            }
        }
        Workload::Concurrent64Get => {
            let clients = std::mem::take(&mut side.per_task);
            let mut tasks = Vec::with_capacity(TASKS);
            for (t, mut client) in clients.into_iter().enumerate() {
                let keys = keys.clone();
                tasks.push(tokio::spawn(async move {
                    for i in 0..ops / TASKS {
                        let key = &keys[(t * 31 + i) % KEYS];
                        let got = client.meta_get(key, false, None, Some(VALUE_FLAG)).await?;
                        if got.is_none_or(|v| v.data.is_none()) {
                            return Err(miss(key));
                        }
                    }
                    Ok::<_, BoxError>(client)
                }));
            }
            for task in tasks {
                side.per_task.push(task.await??);
            }
        }
        Workload::GetMany16One => {
            for i in 0..ops {
                let values = client
                    .meta_get_multi(&batch(&keys, i), Some(VALUE_FLAG))
                    .await?;
                let found = values.iter().filter(|v| v.data.is_some()).count();
                if found != BATCH {
                    return Err(short_batch(found));
                }
            }
        }
        Workload::GetMany16Cluster => {
            return Err("async-memcached talks to one server per client".into());
        }
    }
    Ok(ops as f64 / start.elapsed().as_secs_f64())
}

/// `memcached -V`.
fn memcached_version() -> String {
    std::process::Command::new("memcached")
        .arg("-V")
        .output()
        .ok()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|version| !version.is_empty())
        .unwrap_or_else(|| "memcached (version unknown)".to_owned())
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

fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    let rounds = args.rounds.unwrap_or(if args.quick { 3 } else { 9 });
    let ops = args.ops.unwrap_or(if args.quick { 2_000 } else { 10_000 });
    let machine = Machine::detect();
    let date = utc_now();
    let load_before = load_average();
    let started = Instant::now();
    let threads = args.server_threads.max(1).to_string();
    let server_args = ["-t", threads.as_str()];
    let one = MemcachedServer::start_with(&server_args);
    let cluster: Vec<MemcachedServer> = (0..SERVERS)
        .map(|_| MemcachedServer::start_with(&server_args))
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers.max(1))
        .enable_all()
        .build()?;
    let pool = args
        .pool_size
        .map_or(String::new(), |size| format!(" (pool_size={size})"));
    println!(
        "{date}, {} ({} CPUs, {}), {}, {} servers of `-t {threads}`, {} tokio workers{pool}; {rounds} rounds of {ops} operations; load average before: {load_before}\n",
        machine.cpu,
        machine.nproc,
        machine.profile,
        memcached_version(),
        1 + SERVERS,
        args.workers.max(1),
    );
    let setup = Setup {
        rounds,
        ops,
        pool_size: args.pool_size,
        one: one.address(),
        cluster: cluster.iter().map(MemcachedServer::address).collect(),
    };
    runtime.block_on(run(setup))?;
    println!(
        "\n{:.0} s in all; load average after: {}",
        started.elapsed().as_secs_f64(),
        load_average()
    );
    // The connections first, then the servers they talk to.
    drop(runtime);
    drop(cluster);
    drop(one);
    Ok(())
}

/// What [`run`] needs: the scale and the servers' `host:port`.
struct Setup {
    rounds: usize,
    ops: usize,
    pool_size: Option<usize>,
    one: String,
    cluster: Vec<String>,
}

async fn run(setup: Setup) -> Result<(), BoxError> {
    let Setup {
        rounds,
        ops,
        pool_size,
        one,
        cluster,
    } = setup;
    let query = match pool_size {
        Some(size) => format!("?prefix={PREFIX}&pool_size={size}"),
        None => format!("?prefix={PREFIX}"),
    };
    let ours_side = Ours {
        one: cachette::open(&format!("memcached://{one}{query}")).await?,
        cluster: cachette::open(&format!("memcached://{}{query}", cluster.join(","))).await?,
    };
    let memcache_side = Memcache {
        one: AsyncMetaClient::builder()
            .max_idle(TASKS)
            .connect_multiple_async([one.as_str()])
            .await?,
        cluster: AsyncMetaClient::builder()
            .max_idle(TASKS)
            .connect_multiple_async(cluster.iter().map(String::as_str))
            .await?,
    };
    let mut per_task = Vec::with_capacity(TASKS);
    for _ in 0..TASKS {
        per_task.push(async_memcached::Client::new(format!("tcp://{one}")).await?);
    }
    let mut async_memcached_side = AsyncMemcached {
        one: async_memcached::Client::new(format!("tcp://{one}")).await?,
        per_task,
    };
    // Every side writes its keys (the raw clients share theirs), on the one
    // server and on the three.
    let ours_keys = keys("");
    let raw_keys = keys(RAW_PREFIX);
    let value = value();
    for backend in [&ours_side.one, &ours_side.cluster] {
        for key in ours_keys.iter() {
            backend.set(key, value.clone(), &SetOptions::new()).await?;
        }
    }
    for client in [&memcache_side.one, &memcache_side.cluster] {
        for key in raw_keys.iter() {
            client.set(key, &value).send().await?;
        }
    }

    println!(
        "| workload | peer | ours ops/s (median) | peer ops/s (median) | ours ÷ peer, median [min–max] | target |"
    );
    println!("|---|---|---:|---:|---:|---:|");
    let warm_up = (ops / 10).max(TASKS);
    for (workload, peer) in ROWS {
        let side_by_side = match peer {
            Peer::Memcache => {
                ours(&ours_side, workload, warm_up).await?;
                memcache(&memcache_side, workload, warm_up).await?;
                SideBySide::run(
                    rounds,
                    async || ours(&ours_side, workload, ops).await,
                    async || memcache(&memcache_side, workload, ops).await,
                )
                .await?
            }
            Peer::AsyncMemcached => {
                ours(&ours_side, workload, warm_up).await?;
                async_memcached(&mut async_memcached_side, workload, warm_up).await?;
                SideBySide::run(
                    rounds,
                    async || ours(&ours_side, workload, ops).await,
                    async || async_memcached(&mut async_memcached_side, workload, ops).await,
                )
                .await?
            }
        };
        println!(
            "| {} | {} | {} | ≥ {TARGET:.2} |",
            workload.label(),
            peer.label(),
            side_by_side.cells()
        );
        eprintln!(
            "[memcached] {} against {} done",
            workload.label(),
            peer.label()
        );
    }
    Ok(())
}
