//! The persistent backends against the file system itself and cacache:
//! reads and writes of 2,000 entries of 4 KiB and of 64 KiB in a temporary
//! directory, in rounds that alternate the stores.
//!
//! ```text
//! cargo run --release -p cachette-bench --bin disk -- [--rounds 5] [--entries 2000]
//! ```
//!
//! Every store writes the same bytes under the same keys, then reads them
//! all back (from the page cache: these are cache workloads). `std::fs` is
//! the floor of what any one-file-per-entry store can do: it writes the
//! bytes with no header, no temporary file and no rename. Ratios are
//! ours ÷ theirs in entries per second (above 1 means faster), taken within
//! each round; the table shows their median and range.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use cachette::backends::file::FileBackend;
use cachette::backends::redb::RedbBackend;
use cachette::{Backend, SetOptions};
use clap::Parser;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Disk-backed stores side by side.
#[derive(Debug, Parser)]
struct Args {
    /// Rounds per size.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Entries written and read per round.
    #[arg(long, default_value_t = 2000)]
    entries: usize,
    /// Where the stores live [default: a new folder under the system temp dir].
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// One store under test.
enum Store {
    StdFs(PathBuf),
    Cacache(PathBuf),
    Cachette(&'static str, Arc<dyn Backend>),
}

impl Store {
    fn name(&self) -> &'static str {
        match self {
            Store::StdFs(_) => "std::fs",
            Store::Cacache(_) => "cacache",
            Store::Cachette(name, _) => name,
        }
    }

    async fn write(&self, keys: &[String], value: &Bytes) -> Result<(), BoxError> {
        match self {
            Store::StdFs(dir) => {
                for key in keys {
                    std::fs::write(dir.join(key), value)?;
                }
            }
            Store::Cacache(dir) => {
                for key in keys {
                    cacache::write_sync(dir, key, value)?;
                }
            }
            Store::Cachette(_, backend) => {
                let options = SetOptions::new();
                for key in keys {
                    backend.set(key, value.clone(), &options).await?;
                }
            }
        }
        Ok(())
    }

    async fn read(&self, keys: &[String], expected: usize) -> Result<(), BoxError> {
        for key in keys {
            let len = match self {
                Store::StdFs(dir) => std::fs::read(dir.join(key))?.len(),
                Store::Cacache(dir) => cacache::read_sync(dir, key)?.len(),
                Store::Cachette(_, backend) => backend
                    .get(key)
                    .await?
                    .ok_or("a written entry is missing")?
                    .len(),
            };
            if len != expected {
                return Err(format!("{}: read {len} bytes, wrote {expected}", self.name()).into());
            }
        }
        Ok(())
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    let root = args.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("cachette-disk-bench-{}", std::process::id()))
    });
    std::fs::create_dir_all(&root)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = runtime.block_on(run(&args, &root));
    let _ = std::fs::remove_dir_all(&root);
    result
}

async fn run(args: &Args, root: &Path) -> Result<(), BoxError> {
    let keys: Vec<String> = (0..args.entries).map(|i| format!("entry-{i:06}")).collect();
    println!(
        "| size | operation | store | entries/s (median) | file ÷ store, median [min–max] | redb ÷ store, median [min–max] |"
    );
    println!("|---|---|---|---:|---:|---:|");
    for size in [4 << 10, 64 << 10] {
        let stores = open_stores(root, size).await?;
        let value = Bytes::from((0..size).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
        // rates[store][op] per round; op 0 = write, 1 = read.
        let mut rates = vec![[Vec::new(), Vec::new()]; stores.len()];
        for round in 0..args.rounds {
            for offset in 0..stores.len() {
                let index = (round + offset) % stores.len();
                let store = &stores[index];
                let start = Instant::now();
                store.write(&keys, &value).await?;
                rates[index][0].push(keys.len() as f64 / start.elapsed().as_secs_f64());
                let start = Instant::now();
                store.read(&keys, size).await?;
                rates[index][1].push(keys.len() as f64 / start.elapsed().as_secs_f64());
            }
            eprintln!(
                "[disk] {} KiB, round {}/{}",
                size >> 10,
                round + 1,
                args.rounds
            );
        }
        let ours = |name: &str| stores.iter().position(|s| s.name() == name);
        let (file, redb) = (ours("cachette file"), ours("cachette redb"));
        for (op, label) in [(0, "write"), (1, "read")] {
            for (index, store) in stores.iter().enumerate() {
                let ratio = |ours: Option<usize>| match ours {
                    Some(ours) if ours != index => {
                        let mut ratios: Vec<f64> = (0..args.rounds)
                            .map(|r| rates[ours][op][r] / rates[index][op][r])
                            .collect();
                        let (min, max) = ratios
                            .iter()
                            .fold((f64::MAX, 0.0_f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
                        format!("{:.2} [{min:.2}–{max:.2}]", median(&mut ratios))
                    }
                    _ => "—".to_owned(),
                };
                let mut own = rates[index][op].clone();
                println!(
                    "| {} KiB | {label} | {} | {:.0} | {} | {} |",
                    size >> 10,
                    store.name(),
                    median(&mut own),
                    ratio(file),
                    ratio(redb)
                );
            }
        }
    }
    Ok(())
}

async fn open_stores(root: &Path, size: usize) -> Result<Vec<Store>, BoxError> {
    let dir = |name: &str| -> Result<PathBuf, BoxError> {
        let path = root.join(format!("{name}-{size}"));
        std::fs::create_dir_all(&path)?;
        Ok(path)
    };
    let file = FileBackend::builder(root.join(format!("file-{size}"))).build()?;
    let redb = RedbBackend::builder(root.join(format!("redb-{size}.redb"))).build()?;
    Ok(vec![
        Store::StdFs(dir("std")?),
        Store::Cacache(dir("cacache")?),
        Store::Cachette("cachette file", Arc::new(file)),
        Store::Cachette("cachette redb", Arc::new(redb)),
    ])
}
