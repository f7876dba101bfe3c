//! The PostgreSQL backend against hand-written tokio-postgres on the same
//! server and the same table, side by side in one run; then a sweep of
//! 1,000,000 expired rows with readers beside it.
//!
//! ```text
//! cargo run --release -p cachette-bench --bin postgres -- [--quick] [--rounds 7] [--ops 8000] [--expired 1000000]
//! ```
//!
//! Starts its own PostgreSQL server (`PostgresServer`: initdb, a free
//! loopback port, `fsync=off`, `shared_buffers=32MB`) and a 2-worker tokio
//! runtime (`--workers`); as in `--bin redis` and `--bin memcached`, the
//! workloads run on the thread that blocks on the runtime and spawn their
//! tasks onto its workers.
//!
//! **Side by side.** Ours is a `PostgresBackend` (table `bench_cache`,
//! its default pool of 16 connections unless `--pool-size` says
//! otherwise) used through `Arc<dyn Backend>`. The peer is tokio-postgres
//! with statements prepared once per client, written here to do what the
//! backend's do on the backend's own table: the row of a key is its
//! SHA-256 (`hash`, the primary key), reads filter on
//! `expires_at IS NULL OR expires_at > <the server's clock in ms>` (the
//! backend's expression), writes are the same `INSERT … ON CONFLICT (hash)
//! DO UPDATE` of the same columns with the same TTL, and `get_many` is one
//! `hash = ANY($1)` statement whose rows are put back in key order. Both
//! sides use the same 1,024 keys of 100-byte values (the rows ours wrote,
//! so that every read of the peer also checks that its hashes are the
//! backend's); every read checks that it hit (a miss fails the run). The
//! peer's hashes are computed once, by the server, before the rounds
//! (ours hashes the key on every call: a few hundred nanoseconds against
//! a round trip of tens of microseconds, in the peer's favour). Peer
//! connections: one client for the sequential workloads; for the 64
//! tasks, once as many clients as ours has pooled connections
//! (`--peer-clients`), task `t` on client `t % n` (tokio-postgres
//! pipelines the requests of the tasks that share a client; ours checks a
//! connection out of its pool for each operation), and once a client per
//! task. Workloads:
//!
//! - sequential get, one request in flight;
//! - sequential set (TTL 600 s), one in flight;
//! - `get_many` of 16 keys, one batch in flight;
//! - get from 64 concurrent tasks;
//! - sequential get and `get_many` again, now that the 64 tasks have
//!   opened every connection of ours' pool (the table shows how many of
//!   ours' connections were open, from `pg_stat_activity`, as each row ran).
//!
//! Ratios are ours ÷ peer in operations (or batches) per second, taken
//! within each round (ours first in even rounds, the peer first in odd
//! ones); the table shows their median and range. Before its rounds, each
//! row runs both sides once untimed (a tenth of the operations).
//!
//! **Sweep.** A second table (`bench_sweep`, a backend of its own whose
//! background sweeper is held off for an hour) gets `--live` live rows
//! through the backend (half without expiry, half expiring in an hour),
//! then `--expired` rows that expired during the last hour, in one
//! `INSERT … SELECT … generate_series` (hash `sha256(convert_to(key,
//! 'UTF8'))`, as the backend computes it), then `VACUUM ANALYZE`. Four
//! tasks read live keys through the backend in a loop, first for
//! `--baseline-seconds` alone, then while `purge_expired()` runs one
//! sweeper pass (its default batches of 1,000 rows); the table gives
//! their latency in both phases and the sweep's time and rows removed.

#[path = "../machine.rs"]
#[allow(
    dead_code,
    reason = "only the machine's description and the date are used here"
)]
mod machine;
#[path = "../side_by_side.rs"]
mod side_by_side;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cachette::backends::postgres::{PostgresBackend, ROW_OVERHEAD};
use cachette::testing::servers::postgres::{PostgresServer, USER};
use cachette::{Backend, SetOptions};
use clap::Parser;
use tokio_postgres::{Client, NoTls, Statement};

use crate::machine::{Machine, utc_now};
use crate::side_by_side::SideBySide;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The PostgreSQL backend against hand-written tokio-postgres.
#[derive(Debug, Parser)]
struct Args {
    /// A short run: 3 rounds of 1,000 operations and a sweep of 100,000
    /// expired rows.
    #[arg(long)]
    quick: bool,
    /// Rounds per workload [default: 7; quick: 3].
    #[arg(long)]
    rounds: Option<usize>,
    /// Operations (or batches) per workload, side and round [default:
    /// 8000; quick: 1000].
    #[arg(long)]
    ops: Option<usize>,
    /// cachette's connections (`pool_size`) [default: the backend's own,
    /// 16].
    #[arg(long)]
    pool_size: Option<usize>,
    /// The peer's clients for the 64-task workload [default: as many as
    /// cachette's pool holds].
    #[arg(long)]
    peer_clients: Option<usize>,
    /// Expired rows of the sweep [default: 1000000; quick: 100000].
    #[arg(long)]
    expired: Option<u64>,
    /// Live rows of the sweep's table.
    #[arg(long, default_value_t = 10_000)]
    live: usize,
    /// How long the readers run alone before the sweep, in seconds.
    #[arg(long, default_value_t = 1.0)]
    baseline_seconds: f64,
    /// Worker threads of the tokio runtime.
    #[arg(long, default_value_t = 2)]
    workers: usize,
}

/// The backend's own `pool_size` when none is given.
const DEFAULT_POOL_SIZE: usize = 16;
/// The backend's own `sweep_batch`.
const SWEEP_BATCH: u64 = 1000;
/// The backend's own `statement_timeout`.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);
const KEYS: usize = 1024;
const VALUE_LEN: usize = 100;
const BATCH: usize = 16;
const TASKS: usize = 64;
/// The tasks that read during the sweep.
const READERS: usize = 4;
const TTL: Duration = Duration::from_secs(600);
const TARGET: f64 = 0.95;
/// The table of the side-by-side workloads.
const TABLE: &str = "bench_cache";
/// The table of the sweep.
const SWEEP_TABLE: &str = "bench_sweep";
/// The server's clock in milliseconds since the Unix epoch: the
/// expression the backend's statements use.
const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::int8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workload {
    SequentialGet,
    SequentialSet,
    Concurrent64Get,
    GetMany16,
}

impl Workload {
    fn label(self) -> &'static str {
        match self {
            Workload::SequentialGet => "sequential get, 1 in flight",
            Workload::SequentialSet => "sequential set (TTL 600 s), 1 in flight",
            Workload::Concurrent64Get => "get from 64 tasks",
            Workload::GetMany16 => "get_many of 16 keys, 1 batch in flight",
        }
    }
}

/// The peer's connections in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerClients {
    /// One client (the sequential workloads).
    One,
    /// `--peer-clients` clients, task `t` on client `t % n`: tasks that
    /// share a client pipeline their requests on it.
    Shared,
    /// A client of its own for each of the 64 tasks.
    PerTask,
}

/// The rows of the table, in the order they run: the sequential
/// workloads first, while ours has opened a single connection (nothing
/// concurrent has run yet), then the 64 tasks, which open the whole pool,
/// then sequential workloads again with every pooled connection open.
const ROWS: [(Workload, PeerClients); 7] = [
    (Workload::SequentialGet, PeerClients::One),
    (Workload::SequentialSet, PeerClients::One),
    (Workload::GetMany16, PeerClients::One),
    (Workload::Concurrent64Get, PeerClients::Shared),
    (Workload::Concurrent64Get, PeerClients::PerTask),
    (Workload::SequentialGet, PeerClients::One),
    (Workload::GetMany16, PeerClients::One),
];

/// The keys of both sides.
fn keys() -> Arc<[String]> {
    (0..KEYS).map(|i| format!("k:{i:04}")).collect()
}

fn value() -> Bytes {
    Bytes::from(vec![b'v'; VALUE_LEN])
}

fn miss(key: &str) -> BoxError {
    format!("a get of {key} missed: the keys were written before the reads").into()
}

fn short_batch(found: usize) -> BoxError {
    format!("a get_many of {BATCH} keys found {found}: the keys were written before the reads")
        .into()
}

/// One tokio-postgres connection of the peer, with its statements
/// prepared.
struct PeerClient {
    client: Client,
    get: Statement,
    set: Statement,
    get_many: Statement,
}

/// The peer: a client for the sequential workloads, `shared` and
/// `per_task` for the 64 tasks, and the SHA-256 of every key.
struct Peer {
    one: Arc<PeerClient>,
    shared: Vec<Arc<PeerClient>>,
    per_task: Vec<Arc<PeerClient>>,
    hashes: Arc<[Vec<u8>]>,
}

impl Peer {
    fn clients(&self, which: PeerClients) -> &[Arc<PeerClient>] {
        match which {
            PeerClients::One => std::slice::from_ref(&self.one),
            PeerClients::Shared => &self.shared,
            PeerClients::PerTask => &self.per_task,
        }
    }

    fn label(&self, which: PeerClients) -> String {
        match which {
            PeerClients::One => "1 client".to_owned(),
            PeerClients::Shared => format!(
                "{n} clients, task t on client t % {n} (pipelined)",
                n = self.shared.len()
            ),
            PeerClients::PerTask => format!("{TASKS} clients, one per task"),
        }
    }
}

/// A tokio-postgres connection to the test server, its connection task
/// spawned.
async fn connect(port: u16) -> Result<Client, BoxError> {
    let (client, connection) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .user(USER)
        .dbname("postgres")
        .application_name("cachette-bench-peer")
        .connect(NoTls)
        .await?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            eprintln!("[postgres] a peer connection failed: {err}");
        }
    });
    Ok(client)
}

impl PeerClient {
    /// Connects and prepares the peer's statements on [`TABLE`].
    async fn connect(port: u16) -> Result<PeerClient, BoxError> {
        let client = connect(port).await?;
        let live = format!("(expires_at IS NULL OR expires_at > {NOW_MS})");
        let get = client
            .prepare(&format!(
                "SELECT value FROM {TABLE} WHERE hash = $1 AND {live}"
            ))
            .await?;
        let set = client
            .prepare(&format!(
                "INSERT INTO {TABLE} (hash, key, value, expires_at, tags, size) \
                 VALUES ($1, $2, $3, {NOW_MS} + $4, NULL, $5) \
                 ON CONFLICT (hash) DO UPDATE SET value = excluded.value, \
                 expires_at = excluded.expires_at, tags = excluded.tags, \
                 size = excluded.size, id = excluded.id"
            ))
            .await?;
        let get_many = client
            .prepare(&format!(
                "SELECT hash, value FROM {TABLE} WHERE hash = ANY($1) AND {live}"
            ))
            .await?;
        Ok(PeerClient {
            client,
            get,
            set,
            get_many,
        })
    }

    async fn get(&self, hash: &[u8]) -> Result<Option<Bytes>, tokio_postgres::Error> {
        let row = self.client.query_opt(&self.get, &[&hash]).await?;
        Ok(row.map(|row| Bytes::from(row.get::<_, Vec<u8>>(0))))
    }
}

/// Runs a workload through cachette; returns operations (or batches) per
/// second.
async fn ours(
    backend: &Arc<dyn Backend>,
    keys: &Arc<[String]>,
    workload: Workload,
    ops: usize,
) -> Result<f64, BoxError> {
    let value = value();
    let options = SetOptions::new().ttl(TTL);
    let start = Instant::now();
    let done = match workload {
        Workload::SequentialGet => {
            for i in 0..ops {
                let key = &keys[i % KEYS];
                if backend.get(key).await?.is_none() {
                    return Err(miss(key));
                }
            }
            ops
        }
        Workload::SequentialSet => {
            for i in 0..ops {
                backend
                    .set(&keys[i % KEYS], value.clone(), &options)
                    .await?;
            }
            ops
        }
        Workload::Concurrent64Get => {
            let per_task = ops.div_ceil(TASKS);
            let mut tasks = Vec::with_capacity(TASKS);
            for t in 0..TASKS {
                let backend = backend.clone();
                let keys = keys.clone();
                tasks.push(tokio::spawn(async move {
                    for i in 0..per_task {
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
            per_task * TASKS
        }
        Workload::GetMany16 => {
            for i in 0..ops {
                let batch: Vec<&str> = (0..BATCH)
                    .map(|j| keys[(i * BATCH + j) % KEYS].as_str())
                    .collect();
                let values = backend.get_many(&batch).await?;
                let found = values.iter().filter(|v| v.is_some()).count();
                if found != BATCH {
                    return Err(short_batch(found));
                }
            }
            ops
        }
    };
    Ok(done as f64 / start.elapsed().as_secs_f64())
}

/// The same workload in hand-written tokio-postgres.
async fn peer(
    side: &Peer,
    keys: &Arc<[String]>,
    workload: Workload,
    clients: PeerClients,
    ops: usize,
) -> Result<f64, BoxError> {
    let value = value();
    let ttl_ms = TTL.as_millis() as i64;
    let clients = side.clients(clients);
    let one = &clients[0];
    let start = Instant::now();
    let done = match workload {
        Workload::SequentialGet => {
            for i in 0..ops {
                if one.get(&side.hashes[i % KEYS]).await?.is_none() {
                    return Err(miss(&keys[i % KEYS]));
                }
            }
            ops
        }
        Workload::SequentialSet => {
            for i in 0..ops {
                let key = keys[i % KEYS].as_str();
                let hash = side.hashes[i % KEYS].as_slice();
                let size = (key.len() + value.len()) as i64 + ROW_OVERHEAD as i64;
                let bytes: &[u8] = &value;
                one.client
                    .execute(&one.set, &[&hash, &key, &bytes, &ttl_ms, &size])
                    .await?;
            }
            ops
        }
        Workload::Concurrent64Get => {
            let per_task = ops.div_ceil(TASKS);
            let mut tasks = Vec::with_capacity(TASKS);
            for t in 0..TASKS {
                let client = clients[t % clients.len()].clone();
                let hashes = side.hashes.clone();
                let keys = keys.clone();
                tasks.push(tokio::spawn(async move {
                    for i in 0..per_task {
                        let index = (t * 31 + i) % KEYS;
                        if client.get(&hashes[index]).await?.is_none() {
                            return Err(miss(&keys[index]));
                        }
                    }
                    Ok::<_, BoxError>(())
                }));
            }
            for task in tasks {
                task.await??;
            }
            per_task * TASKS
        }
        Workload::GetMany16 => {
            for i in 0..ops {
                let batch: Vec<&[u8]> = (0..BATCH)
                    .map(|j| side.hashes[(i * BATCH + j) % KEYS].as_slice())
                    .collect();
                let rows = one.client.query(&one.get_many, &[&batch]).await?;
                let found: HashMap<Vec<u8>, Bytes> = rows
                    .into_iter()
                    .map(|row| {
                        (
                            row.get::<_, Vec<u8>>(0),
                            Bytes::from(row.get::<_, Vec<u8>>(1)),
                        )
                    })
                    .collect();
                let values: Vec<Option<Bytes>> =
                    batch.iter().map(|hash| found.get(*hash).cloned()).collect();
                let found = values.iter().filter(|v| v.is_some()).count();
                if found != BATCH {
                    return Err(short_batch(found));
                }
            }
            ops
        }
    };
    Ok(done as f64 / start.elapsed().as_secs_f64())
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
    port: u16,
    rounds: usize,
    ops: usize,
    pool_size: Option<usize>,
    peer_clients: usize,
    expired: u64,
    live: usize,
    baseline: Duration,
}

fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    let rounds = args.rounds.unwrap_or(if args.quick { 3 } else { 7 }).max(1);
    let ops = args
        .ops
        .unwrap_or(if args.quick { 1_000 } else { 8_000 })
        .max(1);
    let expired = args
        .expired
        .unwrap_or(if args.quick { 100_000 } else { 1_000_000 });
    let pool_size = args.pool_size.unwrap_or(DEFAULT_POOL_SIZE);
    let peer_clients = args.peer_clients.unwrap_or(pool_size).max(1);
    let machine = Machine::detect();
    let date = utc_now();
    let load_before = load_average();
    let started = Instant::now();
    let server = PostgresServer::start();
    let version = server.psql("SHOW server_version");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers.max(1))
        .enable_all()
        .build()?;
    println!(
        "{date}, {} ({} CPUs, {}), PostgreSQL {version} (fsync=off, shared_buffers=32MB), {} tokio workers; \
         ours: pool_size={pool_size}; peer: tokio-postgres, 1 client for the sequential workloads, \
         for the 64 tasks {peer_clients} shared clients and then one client per task; \
         {rounds} rounds of {ops} operations; load average before: {load_before}\n",
        machine.cpu,
        machine.nproc,
        machine.profile,
        args.workers.max(1),
    );
    let setup = Setup {
        port: server.port(),
        rounds,
        ops,
        pool_size: args.pool_size,
        peer_clients,
        expired,
        live: args.live.max(READERS),
        baseline: Duration::from_secs_f64(args.baseline_seconds.max(0.01)),
    };
    runtime.block_on(run(&setup))?;
    println!(
        "\n{:.0} s in all; load average after: {}",
        started.elapsed().as_secs_f64(),
        load_average()
    );
    // The connections first, then the server they talk to.
    drop(runtime);
    drop(server);
    Ok(())
}

async fn run(setup: &Setup) -> Result<(), BoxError> {
    let mut builder =
        PostgresBackend::builder("127.0.0.1", setup.port, USER, "postgres").table(TABLE);
    if let Some(size) = setup.pool_size {
        builder = builder.pool_size(size);
    }
    let backend: Arc<dyn Backend> = Arc::new(builder.build().await?);
    let keys = keys();
    let value = value();
    for key in keys.iter() {
        backend
            .set(key, value.clone(), &SetOptions::new().ttl(TTL))
            .await?;
    }

    // The table exists now (ours made it): the peer's statements prepare.
    let one = Arc::new(PeerClient::connect(setup.port).await?);
    let mut shared = Vec::with_capacity(setup.peer_clients);
    for _ in 0..setup.peer_clients {
        shared.push(Arc::new(PeerClient::connect(setup.port).await?));
    }
    let mut per_task = Vec::with_capacity(TASKS);
    for _ in 0..TASKS {
        per_task.push(Arc::new(PeerClient::connect(setup.port).await?));
    }
    let key_list: Vec<&str> = keys.iter().map(String::as_str).collect();
    let hashes: Arc<[Vec<u8>]> = one
        .client
        .query(
            "SELECT sha256(convert_to(k, 'UTF8')) FROM unnest($1::text[]) WITH ORDINALITY AS u(k, n) \
             ORDER BY n",
            &[&key_list],
        )
        .await?
        .into_iter()
        .map(|row| row.get::<_, Vec<u8>>(0))
        .collect();
    let rows_found: i64 = one
        .client
        .query_one(
            &format!("SELECT count(*) FROM {TABLE} WHERE hash = ANY($1)"),
            &[&hashes.to_vec()],
        )
        .await?
        .get(0);
    if rows_found != KEYS as i64 {
        return Err(format!(
            "the peer's hashes find {rows_found} of the {KEYS} rows cachette wrote"
        )
        .into());
    }
    let side = Peer {
        one,
        shared,
        per_task,
        hashes,
    };

    println!(
        "| workload | ours: connections open | peer: tokio-postgres | ours ops/s (median) | peer ops/s (median) | ours ÷ peer, median [min–max] | target |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|");
    let warm_up = (setup.ops / 10).max(TASKS);
    for (workload, clients) in ROWS {
        ours(&backend, &keys, workload, warm_up).await?;
        peer(&side, &keys, workload, clients, warm_up).await?;
        let before = open_connections(&side.one.client).await?;
        let rounds = SideBySide::run(
            setup.rounds,
            async || ours(&backend, &keys, workload, setup.ops).await,
            async || peer(&side, &keys, workload, clients, setup.ops).await,
        )
        .await?;
        let after = open_connections(&side.one.client).await?;
        let open = if before == after {
            before.to_string()
        } else {
            format!("{before} → {after}")
        };
        println!(
            "| {} | {open} | {} | {} | ≥ {TARGET:.2} |",
            workload.label(),
            side.label(clients),
            rounds.cells()
        );
        eprintln!(
            "[postgres] {} against {} done",
            workload.label(),
            side.label(clients)
        );
    }
    backend.close().await?;

    sweep(setup, &side.one.client).await
}

/// The backend's connections to the server (its `application_name`):
/// its pool opens them as concurrent operations need them.
async fn open_connections(client: &Client) -> Result<i64, BoxError> {
    Ok(client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'cachette'",
            &[],
        )
        .await?
        .get(0))
}

/// Latencies of the readers of one phase.
struct Reads {
    seconds: f64,
    latencies: Vec<Duration>,
    misses: u64,
    errors: u64,
    first_error: Option<String>,
}

/// `READERS` tasks that get live keys through `backend` until `stop`.
fn spawn_readers(
    backend: &Arc<dyn Backend>,
    keys: &Arc<[String]>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Reads>> {
    (0..READERS)
        .map(|reader| {
            let backend = backend.clone();
            let keys = keys.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let start = Instant::now();
                let mut reads = Reads {
                    seconds: 0.0,
                    latencies: Vec::with_capacity(1 << 16),
                    misses: 0,
                    errors: 0,
                    first_error: None,
                };
                let mut state = 0x9E37_79B9_u64 + reader as u64;
                while !stop.load(Ordering::Relaxed) {
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    let key = &keys[(state >> 33) as usize % keys.len()];
                    let asked = Instant::now();
                    let got = backend.get(key).await;
                    reads.latencies.push(asked.elapsed());
                    match got {
                        Ok(Some(_)) => {}
                        Ok(None) => reads.misses += 1,
                        Err(err) => {
                            reads.errors += 1;
                            reads.first_error.get_or_insert_with(|| err.to_string());
                        }
                    }
                }
                reads.seconds = start.elapsed().as_secs_f64();
                reads
            })
        })
        .collect()
}

/// Stops the readers and merges what they measured.
async fn join_readers(
    stop: &AtomicBool,
    readers: Vec<tokio::task::JoinHandle<Reads>>,
) -> Result<Reads, BoxError> {
    stop.store(true, Ordering::Relaxed);
    let mut all = Reads {
        seconds: 0.0,
        latencies: Vec::new(),
        misses: 0,
        errors: 0,
        first_error: None,
    };
    for reader in readers {
        let reads = reader.await?;
        all.seconds = all.seconds.max(reads.seconds);
        all.latencies.extend(reads.latencies);
        all.misses += reads.misses;
        all.errors += reads.errors;
        if all.first_error.is_none() {
            all.first_error = reads.first_error;
        }
    }
    all.latencies.sort_unstable();
    Ok(all)
}

/// The nearest-rank `q` quantile of sorted samples.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `85 µs`, `1.31 ms`, `2.40 s`.
fn fmt_duration(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1_000.0 {
        format!("{us:.0} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1_000.0)
    } else {
        format!("{:.2} s", us / 1_000_000.0)
    }
}

impl Reads {
    /// `seconds | gets | gets/s | p50 | p99 | max | misses / errors`.
    fn cells(&self) -> String {
        let n = self.latencies.len();
        format!(
            "{:.2} | {n} | {:.0} | {} | {} | {} | {} / {}",
            self.seconds,
            n as f64 / self.seconds.max(1e-9),
            fmt_duration(quantile(&self.latencies, 0.50)),
            fmt_duration(quantile(&self.latencies, 0.99)),
            fmt_duration(self.latencies.last().copied().unwrap_or_default()),
            self.misses,
            self.errors
        )
    }
}

/// Fills the sweep's table and measures one `purge_expired` with readers
/// beside it.
async fn sweep(setup: &Setup, client: &Client) -> Result<(), BoxError> {
    let mut builder = PostgresBackend::builder("127.0.0.1", setup.port, USER, "postgres")
        .table(SWEEP_TABLE)
        // Only the measured pass sweeps.
        .sweep_interval(Duration::from_secs(3600));
    if let Some(size) = setup.pool_size {
        builder = builder.pool_size(size);
    }
    let backend: Arc<dyn Backend> = Arc::new(builder.build().await?);

    // Live rows, through the backend: half without expiry, half for an hour.
    let live: Arc<[String]> = (0..setup.live).map(|i| format!("live:{i:07}")).collect();
    let value = value();
    for (n, chunk) in live.chunks(500).enumerate() {
        let entries: Vec<(&str, Bytes)> = chunk
            .iter()
            .map(|key| (key.as_str(), value.clone()))
            .collect();
        let options = if n % 2 == 0 {
            SetOptions::new()
        } else {
            SetOptions::new().ttl(Duration::from_secs(3600))
        };
        backend.set_many(&entries, &options).await?;
    }

    // Expired rows, in one statement: expired 1 s to 1 h ago.
    let filling = Instant::now();
    let inserted = client
        .execute(
            &format!(
                "INSERT INTO {SWEEP_TABLE} (hash, key, value, expires_at, tags, size) \
                 SELECT sha256(convert_to(k, 'UTF8')), k, convert_to(repeat('v', {VALUE_LEN}), 'UTF8'), \
                        {NOW_MS} - 1000 - (g % 3599000), NULL, octet_length(k) + {VALUE_LEN} + {ROW_OVERHEAD} \
                 FROM (SELECT 'expired:' || g AS k, g FROM generate_series(1, $1::int8) AS g) AS s"
            ),
            &[&(setup.expired as i64)],
        )
        .await?;
    let fill_seconds = filling.elapsed().as_secs_f64();
    let vacuuming = Instant::now();
    client
        .batch_execute(&format!("VACUUM ANALYZE {SWEEP_TABLE}"))
        .await?;
    let vacuum_seconds = vacuuming.elapsed().as_secs_f64();
    let heap_mb: i64 = client
        .query_one(
            &format!("SELECT pg_total_relation_size('{SWEEP_TABLE}') >> 20"),
            &[],
        )
        .await?
        .get(0);
    // The backend answers none of them, and every live one.
    if setup.expired > 0 && backend.get("expired:1").await?.is_some() {
        return Err("the backend answered an expired row".into());
    }
    if backend.get(&live[0]).await?.is_none() {
        return Err("the backend missed a live row".into());
    }

    println!(
        "\n## Sweep of {} expired rows\n\n`{SWEEP_TABLE}`: {} live rows through `set_many` (half without expiry, half \
         expiring in 1 h), then {inserted} expired rows in one `INSERT … SELECT generate_series` ({fill_seconds:.1} s), \
         `VACUUM ANALYZE` ({vacuum_seconds:.1} s); {heap_mb} MiB with indexes. One `purge_expired()` (batches of \
         {SWEEP_BATCH}, statement_timeout {STATEMENT_TIMEOUT:?}: the backend's defaults) while {READERS} tasks get \
         live keys through the same backend.\n",
        setup.expired, setup.live,
    );

    let stop = Arc::new(AtomicBool::new(false));
    let readers = spawn_readers(&backend, &live, &stop);
    tokio::time::sleep(setup.baseline).await;
    let before = join_readers(&stop, readers).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let readers = spawn_readers(&backend, &live, &stop);
    // Let the readers get going first.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let sweeping = Instant::now();
    let purged = backend.purge_expired().await;
    let sweep_time = sweeping.elapsed();
    let during = join_readers(&stop, readers).await?;

    let row = client
        .query_one(
            &format!(
                "SELECT count(*), count(*) FILTER (WHERE expires_at IS NOT NULL AND expires_at <= {NOW_MS}) \
                 FROM {SWEEP_TABLE}"
            ),
            &[],
        )
        .await?;
    let (left, left_expired): (i64, i64) = (row.get(0), row.get(1));

    println!("| {READERS} readers | seconds | gets | gets/s | p50 | p99 | max | misses / errors |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    println!("| before the sweep | {} |", before.cells());
    println!("| during `purge_expired()` | {} |", during.cells());
    for (phase, reads) in [("before", &before), ("during", &during)] {
        if let Some(err) = &reads.first_error {
            println!("\nfirst reader error {phase} the sweep: {err}");
        }
    }
    let secs = sweep_time.as_secs_f64();
    match purged {
        Ok(removed) => println!(
            "\n`purge_expired()`: removed {removed} rows in {secs:.2} s ({:.0} rows/s, {} batches); \
             left in the table: {left} rows ({left_expired} of them expired; {} live expected)",
            removed as f64 / secs.max(1e-9),
            removed.div_ceil(SWEEP_BATCH),
            setup.live
        ),
        Err(err) => println!(
            "\n`purge_expired()` FAILED after {secs:.2} s: {err}; left in the table: {left} rows \
             ({left_expired} of them expired)"
        ),
    }
    backend.close().await?;
    Ok(())
}
