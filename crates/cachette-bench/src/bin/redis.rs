//! The Redis backend against raw redis-rs (`MultiplexedConnection`) on the
//! same server, side by side in one run.
//!
//! ```text
//! cargo run --release -p cachette-bench --bin redis -- [--rounds 5] [--ops 20000]
//! ```
//!
//! Starts its own `redis-server` on a free loopback port. Workloads:
//! sequential GET and SET with one request in flight; GETs from 64
//! concurrent tasks on one connection; MGET and pipelined `SET .. PX` in
//! batches of 16. Ratios are ours ÷ raw in operations per second (1.0 =
//! as fast as hand-written redis-rs), taken within each round; the table
//! shows their median and range. `redis-benchmark`'s figure for the same
//! server is printed for context.

#[path = "../side_by_side.rs"]
mod side_by_side;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cachette::backends::redis::RedisBackend;
use cachette::testing::servers::redis::RedisServer;
use cachette::{Backend, SetOptions};
use clap::Parser;
use redis::AsyncCommands;

use crate::side_by_side::SideBySide;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The Redis backend against raw redis-rs.
#[derive(Debug, Parser)]
struct Args {
    /// Rounds per workload.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Operations (or batches) per workload and round.
    #[arg(long, default_value_t = 20_000)]
    ops: usize,
}

const BATCH: usize = 16;
const TASKS: usize = 64;
const TTL: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workload {
    SequentialGet,
    SequentialSet,
    Concurrent64Get,
    Mget16,
    PipelinedSet16,
}

impl Workload {
    const ALL: [Workload; 5] = [
        Workload::SequentialGet,
        Workload::SequentialSet,
        Workload::Concurrent64Get,
        Workload::Mget16,
        Workload::PipelinedSet16,
    ];

    fn label(self) -> &'static str {
        match self {
            Workload::SequentialGet => "sequential GET, 1 in flight",
            Workload::SequentialSet => "sequential SET PX, 1 in flight",
            Workload::Concurrent64Get => "GET from 64 tasks on one connection",
            Workload::Mget16 => "MGET of 16 keys",
            Workload::PipelinedSet16 => "pipelined SET PX of 16 keys",
        }
    }

    fn target(self) -> f64 {
        match self {
            Workload::SequentialGet | Workload::SequentialSet => 0.95,
            _ => 0.90,
        }
    }
}

fn keys() -> Vec<String> {
    (0..1024).map(|i| format!("bench:{i:04}")).collect()
}

/// Runs a workload through cachette; returns operations (or batches) per second.
async fn ours(
    backend: &Arc<RedisBackend>,
    workload: Workload,
    ops: usize,
) -> Result<f64, BoxError> {
    let keys = keys();
    let value = Bytes::from(vec![7u8; 64]);
    let options = SetOptions::new().ttl(TTL);
    let start = Instant::now();
    match workload {
        Workload::SequentialGet => {
            for i in 0..ops {
                backend.get(&keys[i % keys.len()]).await?;
            }
        }
        Workload::SequentialSet => {
            for i in 0..ops {
                backend
                    .set(&keys[i % keys.len()], value.clone(), &options)
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
                        backend.get(&keys[(t * 31 + i) % keys.len()]).await?;
                    }
                    Ok::<_, cachette::Error>(())
                }));
            }
            for task in tasks {
                task.await??;
            }
        }
        Workload::Mget16 => {
            for i in 0..ops {
                let batch: Vec<&str> = (0..BATCH)
                    .map(|j| keys[(i * BATCH + j) % keys.len()].as_str())
                    .collect();
                backend.get_many(&batch).await?;
            }
        }
        Workload::PipelinedSet16 => {
            for i in 0..ops {
                let batch: Vec<(&str, Bytes)> = (0..BATCH)
                    .map(|j| (keys[(i * BATCH + j) % keys.len()].as_str(), value.clone()))
                    .collect();
                backend.set_many(&batch, &options).await?;
            }
        }
    }
    Ok(ops as f64 / start.elapsed().as_secs_f64())
}

/// The same workload in hand-written redis-rs.
async fn raw(
    connection: &redis::aio::MultiplexedConnection,
    prefix: &str,
    workload: Workload,
    ops: usize,
) -> Result<f64, BoxError> {
    let keys: Vec<String> = keys().into_iter().map(|k| format!("{prefix}{k}")).collect();
    let value = vec![7u8; 64];
    let ttl_ms = TTL.as_millis() as u64;
    let mut con = connection.clone();
    let start = Instant::now();
    match workload {
        Workload::SequentialGet => {
            for i in 0..ops {
                let _: Option<Vec<u8>> = con.get(&keys[i % keys.len()]).await?;
            }
        }
        Workload::SequentialSet => {
            for i in 0..ops {
                let _: () = redis::cmd("SET")
                    .arg(&keys[i % keys.len()])
                    .arg(&value)
                    .arg("PX")
                    .arg(ttl_ms)
                    .query_async(&mut con)
                    .await?;
            }
        }
        Workload::Concurrent64Get => {
            let mut tasks = Vec::with_capacity(TASKS);
            for t in 0..TASKS {
                let mut con = connection.clone();
                let keys = keys.clone();
                tasks.push(tokio::spawn(async move {
                    for i in 0..ops / TASKS {
                        let _: Option<Vec<u8>> = con.get(&keys[(t * 31 + i) % keys.len()]).await?;
                    }
                    Ok::<_, redis::RedisError>(())
                }));
            }
            for task in tasks {
                task.await??;
            }
        }
        Workload::Mget16 => {
            for i in 0..ops {
                let batch: Vec<&str> = (0..BATCH)
                    .map(|j| keys[(i * BATCH + j) % keys.len()].as_str())
                    .collect();
                let _: Vec<Option<Vec<u8>>> =
                    redis::cmd("MGET").arg(&batch).query_async(&mut con).await?;
            }
        }
        Workload::PipelinedSet16 => {
            for i in 0..ops {
                let mut pipe = redis::pipe();
                for j in 0..BATCH {
                    pipe.cmd("SET")
                        .arg(&keys[(i * BATCH + j) % keys.len()])
                        .arg(&value)
                        .arg("PX")
                        .arg(ttl_ms)
                        .ignore();
                }
                let _: () = pipe.query_async(&mut con).await?;
            }
        }
    }
    Ok(ops as f64 / start.elapsed().as_secs_f64())
}

fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    let server = RedisServer::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(&args, &server))?;
    let context = std::process::Command::new("redis-benchmark")
        .args([
            "-p",
            &server.port().to_string(),
            "-t",
            "get,set",
            "-n",
            "100000",
            "-q",
        ])
        .output();
    match context {
        Ok(out) => println!(
            "\nredis-benchmark on the same server (50 clients, its defaults):\n\n```\n{}```",
            String::from_utf8_lossy(&out.stdout)
                .replace('\r', "\n")
                .lines()
                .filter(|l| l.contains("requests per second"))
                .map(|l| format!("{}\n", l.trim()))
                .collect::<String>()
        ),
        Err(err) => println!("\n(redis-benchmark not run: {err})"),
    }
    Ok(())
}

async fn run(args: &Args, server: &RedisServer) -> Result<(), BoxError> {
    let prefix = "cachette:";
    let build = |tags: bool| {
        RedisBackend::builder("127.0.0.1", server.port())
            .prefix(prefix)
            .tags(tags)
            .build()
    };
    let backend = Arc::new(build(true).await?);
    // The same prefix with tags off (`tags=false`): untagged writes are bare
    // SETs. Only the write workloads differ.
    let tags_off = Arc::new(build(false).await?);
    let client = redis::Client::open(format!("redis://127.0.0.1:{}/0", server.port()))?;
    let connection = client.get_multiplexed_async_connection().await?;
    // Both read the same values: the raw side reads the keys cachette wrote.
    ours(&backend, Workload::SequentialSet, 1024).await?;
    println!(
        "| workload | ours ops/s (median) | raw redis-rs ops/s (median) | ours ÷ raw, median [min–max] | target |"
    );
    println!("|---|---:|---:|---:|---:|");
    for workload in Workload::ALL {
        compare(args, &backend, &connection, prefix, workload, "").await?;
    }
    for workload in [Workload::SequentialSet, Workload::PipelinedSet16] {
        compare(
            args,
            &tags_off,
            &connection,
            prefix,
            workload,
            " (tags off)",
        )
        .await?;
    }
    Ok(())
}

/// Runs `workload` through cachette and raw redis-rs in alternating rounds
/// and prints its table row.
async fn compare(
    args: &Args,
    backend: &Arc<RedisBackend>,
    connection: &redis::aio::MultiplexedConnection,
    prefix: &str,
    workload: Workload,
    note: &str,
) -> Result<(), BoxError> {
    let rounds = SideBySide::run(
        args.rounds,
        async || ours(backend, workload, args.ops).await,
        async || raw(connection, prefix, workload, args.ops).await,
    )
    .await?;
    println!(
        "| {}{note} | {} | ≥ {:.2} |",
        workload.label(),
        rounds.cells(),
        workload.target()
    );
    eprintln!("[redis] {}{note} done", workload.label());
    Ok(())
}
