//! `cachette-bench`: compares cachette's memory engine with moka,
//! quick_cache and lru on hit ratio, throughput and memory per entry, and
//! writes `bench.json` and `bench.md`.
//!
//! ```text
//! cargo run --release -p cachette-bench -- [--quick] [--out DIR] [--only hit|throughput|memory] [--traces DIR]
//! ```
//!
//! Progress goes to stderr; the Markdown report goes to stdout and to
//! `OUT/bench.md`, every number to `OUT/bench.json`.

mod caches;
mod hit_ratio;
mod machine;
mod memory;
mod report;
mod throughput;

use std::path::PathBuf;
use std::time::Instant;

use clap::{Parser, ValueEnum};

use crate::hit_ratio::HitRatioConfig;
use crate::memory::{CountingAllocator, MemoryConfig};
use crate::report::{CpuSnapshot, Machine, Report};
use crate::throughput::ThroughputConfig;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// The error type of the harness.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The workspace root, where the default folders are found.
const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// The seed of every generated stream, fixed so that runs compare.
const SEED: u64 = 42;

/// Compares cachette's memory engine with moka, quick_cache and lru.
#[derive(Debug, Parser)]
#[command(name = "cachette-bench", version)]
struct Args {
    /// The whole harness in under a minute (release build): fewer requests,
    /// the two smallest traces, 3 rounds, 100k entries for memory.
    #[arg(long)]
    quick: bool,
    /// The size of the run; overrides --quick. `tiny` is for the debug-build
    /// smoke test.
    #[arg(long, value_enum)]
    scale: Option<Scale>,
    /// Where bench.json and bench.md go [default: <workspace>/target/cachette-bench].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Run one part only.
    #[arg(long, value_enum)]
    only: Option<Part>,
    /// The folder of trace files [default: <workspace>/../shared/traces].
    #[arg(long, value_name = "DIR")]
    traces: Option<PathBuf>,
    /// Throughput rounds [default: 7; quick and tiny: 3].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    rounds: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scale {
    /// The numbers to publish.
    Full,
    /// Under a minute in a release build.
    Quick,
    /// Seconds in a debug build; checks the plumbing, not the caches.
    Tiny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Part {
    /// Hit ratio on Zipf streams and traces.
    Hit,
    /// Throughput ratios.
    Throughput,
    /// Memory per entry.
    Memory,
}

/// Every setting of one run.
#[derive(Debug)]
struct Plan {
    hit_ratio: HitRatioConfig,
    throughput: ThroughputConfig,
    memory: MemoryConfig,
}

impl Plan {
    fn new(scale: Scale, traces_dir: PathBuf, rounds: Option<u16>) -> Plan {
        let (zipf_keys, zipf_requests, zipf_capacities, max_traces) = match scale {
            Scale::Full => (100_000, 1_000_000, vec![1_000, 10_000], None),
            Scale::Quick => (100_000, 100_000, vec![1_000, 10_000], Some(2)),
            Scale::Tiny => (10_000, 20_000, vec![100, 1_000], Some(1)),
        };
        let hit_ratio = HitRatioConfig {
            alphas: vec![0.8, 1.0, 1.2],
            zipf_keys,
            zipf_requests,
            zipf_capacities,
            seed: SEED,
            traces_dir,
            max_traces,
            trace_fractions: vec![0.01, 0.05, 0.20],
            min_capacity: 10,
        };
        let (default_rounds, get_ops, get_keys, mix_ops, mix_keys, mix_capacity) = match scale {
            Scale::Full => (7, 2_000_000, 10_000, 2_000_000, 100_000, 10_000),
            Scale::Quick => (3, 1_000_000, 10_000, 500_000, 100_000, 10_000),
            Scale::Tiny => (3, 20_000, 1_000, 20_000, 10_000, 1_000),
        };
        let throughput = ThroughputConfig {
            rounds: rounds.map_or(default_rounds, usize::from),
            slices_per_round: if scale == Scale::Tiny { 2 } else { 8 },
            threads: vec![1, 2],
            get_ops,
            get_keys,
            value_sizes: vec![64, 4096],
            mix_ops,
            mix_keys,
            mix_capacity,
            mix_insert_percent: 10,
            mix_alpha: 1.0,
            seed: SEED,
        };
        let entries = match scale {
            Scale::Full => 1_000_000,
            Scale::Quick => 100_000,
            Scale::Tiny => 10_000,
        };
        let memory = MemoryConfig {
            entries,
            capacity: 2 * entries as u64,
        };
        Plan {
            hit_ratio,
            throughput,
            memory,
        }
    }
}

fn main() {
    if let Err(error) = run(Args::parse()) {
        eprintln!("cachette-bench: {error}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<(), BoxError> {
    let started = Instant::now();
    let scale = args.scale.unwrap_or(if args.quick {
        Scale::Quick
    } else {
        Scale::Full
    });
    let workspace = PathBuf::from(WORKSPACE);
    let traces_dir = args
        .traces
        .clone()
        .unwrap_or_else(|| workspace.join("../shared/traces"));
    let traces_dir = traces_dir.canonicalize().unwrap_or(traces_dir);
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| workspace.join("target/cachette-bench"));
    let plan = Plan::new(scale, traces_dir, args.rounds);
    let wants = |part: Part| args.only.is_none_or(|only| only == part);
    if cfg!(debug_assertions) && scale != Scale::Tiny {
        eprintln!(
            "cachette-bench: this is a debug build; run with --release for numbers that mean something"
        );
    }

    let mut report = Report {
        command: command_line(),
        date: report::utc_now(),
        scale: format!("{scale:?}").to_lowercase(),
        machine: Machine::detect(),
        cachette_source: report::cachette_source(&workspace),
        hit_ratio: None,
        throughput: None,
        memory: None,
        total_seconds: 0.0,
        interference: Vec::new(),
    };
    // One part at a time: the throughput part needs the machine to itself,
    // and the memory part's allocation counter is process-wide.
    if wants(Part::Hit) {
        let snapshot = part_start("hit ratio");
        report.hit_ratio = Some(hit_ratio::run(&plan.hit_ratio)?);
        report
            .interference
            .extend(snapshot.and_then(|s| s.interference("hit ratio")));
    }
    if wants(Part::Throughput) {
        let snapshot = part_start("throughput");
        report.throughput = Some(throughput::run(&plan.throughput)?);
        report
            .interference
            .extend(snapshot.and_then(|s| s.interference("throughput")));
    }
    if wants(Part::Memory) {
        let snapshot = part_start("memory");
        report.memory = Some(memory::run(&plan.memory));
        report
            .interference
            .extend(snapshot.and_then(|s| s.interference("memory")));
    }
    report.total_seconds = started.elapsed().as_secs_f64();

    let markdown = report.markdown();
    std::fs::create_dir_all(&out)
        .map_err(|error| format!("cannot create {}: {error}", out.display()))?;
    let json_path = out.join("bench.json");
    let md_path = out.join("bench.md");
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)? + "\n")
        .map_err(|error| format!("cannot write {}: {error}", json_path.display()))?;
    std::fs::write(&md_path, &markdown)
        .map_err(|error| format!("cannot write {}: {error}", md_path.display()))?;
    print!("{markdown}");
    eprintln!(
        "cachette-bench: wrote {} and {} ({:.1} s)",
        json_path.display(),
        md_path.display(),
        report.total_seconds
    );
    Ok(())
}

/// Announces a part on stderr and snapshots the CPU counters.
fn part_start(part: &str) -> Option<CpuSnapshot> {
    eprintln!("== {part}");
    CpuSnapshot::take(None)
}

/// The command as a user would type it.
fn command_line() -> String {
    let mut words = vec!["cachette-bench".to_owned()];
    words.extend(std::env::args().skip(1));
    words.join(" ")
}
