//! `cachette sim`: replay a cache access trace (a file, or a generated Zipf
//! stream) through the memory engine under each eviction policy and cache
//! size, and report the miss ratios as a table, JSON or an SVG plot of
//! miss-ratio curves.
//!
//! The work is done by `cachette::sim`; this file reads the arguments,
//! shows progress and prints.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use cachette::Policy;
use cachette::sim::{self, SimResult, TraceFormat};
use clap::{ArgGroup, Args};
use indicatif::{ProgressBar, ProgressStyle};
use plotters::prelude::*;
use serde::Serialize;

use super::Outcome;
use crate::output::{self, Printer};
use crate::units::thousands;

/// Arguments of `cachette sim`.
#[derive(Debug, Args)]
#[command(
    group(ArgGroup::new("source").required(true).args(["trace", "zipf"])),
    after_help = "\
Every request is a get of its key; a miss is followed by a set, like a
read-through cache. Each cache is a memory backend with one shard, bounded to
--capacity entries, starting empty.

Trace formats (--format; guessed from the file's folder when not given):
  lirs, address, address-penalties, cache2k, cloud-physics, corda, scarab,
  adapt-size (the key is the pair (id, size); every request weighs 1).
Files ending in .gz or .xz are decompressed.

Examples:
  cachette sim --trace traces/lirs/loop.trace.gz --capacity 100,500,900
  cachette sim --trace w106.trace.xz --format cloud-physics --capacity 1%,5%,10% --json
  cachette sim --zipf 1.0 --keys 100000 --requests 1000000 --capacity 1000,10000 --plot zipf.svg"
)]
pub(crate) struct SimArgs {
    /// The trace file to replay (plain, .gz or .xz).
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// The trace's format [default: guessed from the file's folder]
    #[arg(long, conflicts_with = "zipf", value_parser = parse_format)]
    format: Option<TraceFormat>,
    /// Replay a generated Zipf trace with this exponent (> 0) instead of a file.
    #[arg(long, value_name = "ALPHA", value_parser = parse_alpha)]
    zipf: Option<f64>,
    /// The Zipf trace's number of distinct keys.
    #[arg(long, default_value_t = 100_000, conflicts_with = "trace", value_parser = clap::value_parser!(u64).range(1..=sim::MAX_ZIPF_KEYS))]
    keys: u64,
    /// The Zipf trace's number of requests.
    #[arg(long, default_value_t = 1_000_000, conflicts_with = "trace")]
    requests: usize,
    /// The Zipf trace's random seed.
    #[arg(long, default_value_t = 0, conflicts_with = "trace")]
    seed: u64,
    /// Cache sizes in entries, comma-separated; `N%` is N percent of the
    /// trace's distinct keys (e.g. `1000,5000` or `1%,10%`).
    #[arg(
        long,
        required = true,
        value_delimiter = ',',
        value_name = "ENTRIES",
        value_parser = parse_capacity
    )]
    capacity: Vec<Capacity>,
    /// Eviction policies to compare, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "lru,fifo,sieve,s3fifo",
        value_parser = parse_policy
    )]
    policy: Vec<Policy>,
    /// Also draw the miss-ratio curves into this SVG file.
    #[arg(long, value_name = "SVG")]
    plot: Option<PathBuf>,
}

/// A cache size as given on the command line.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Capacity {
    Entries(u64),
    /// A percentage of the trace's distinct keys.
    Percent(f64),
}

/// Runs the simulations and prints the report.
pub(crate) fn run(args: &SimArgs, out: Printer) -> anyhow::Result<Outcome> {
    let json = out.is_json();
    let source = Source::new(args)?;
    let spinner = spinner(json, format!("reading {}", source.name()));
    let trace = source.load();
    spinner.finish_and_clear();
    let trace = trace?;
    let distinct = sim::distinct_keys(&trace);

    let sizes = resolve_capacities(&args.capacity, distinct);
    let capacities: Vec<u64> = sizes.iter().map(|size| size.entries).collect();
    let mut policies = Vec::with_capacity(args.policy.len());
    for &policy in &args.policy {
        if !policies.contains(&policy) {
            policies.push(policy);
        }
    }

    let total = trace.len() as u64 * (capacities.len() * policies.len()) as u64;
    let bar = progress_bar(json, total);
    let started = Instant::now();
    let results = sim::simulate_grid(&trace, &policies, &capacities, &|done| bar.inc(done));
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    tracing::debug!(?elapsed, simulations = results.len(), "simulated");

    let report = Report {
        trace: TraceInfo {
            name: source.name(),
            path: source.path(),
            format: source.format().map(|format| format.to_string()),
            zipf: source.zipf(),
            requests: trace.len() as u64,
            distinct_keys: distinct,
        },
        policies: policies.iter().map(|policy| policy.as_str()).collect(),
        capacities: capacities.clone(),
        elapsed_secs: elapsed.as_secs_f64(),
        results,
    };
    if let Some(path) = &args.plot {
        plot(path, &report.trace.name, &policies, &report.results)?;
    }
    if json {
        output::print_json(&report)?;
    } else {
        report.print(&sizes, &policies, elapsed)?;
    }
    if let Some(path) = &args.plot
        && !json
    {
        output::note(&format!(
            "wrote the miss-ratio curves to {}",
            path.display()
        ));
    }
    Ok(Outcome::Done)
}

// ---- the trace -------------------------------------------------------------

/// Where the requests come from.
#[derive(Debug)]
enum Source {
    File { path: PathBuf, format: TraceFormat },
    Zipf(ZipfInfo),
}

/// The parameters of a generated Zipf trace.
#[derive(Debug, Clone, Copy, Serialize)]
struct ZipfInfo {
    alpha: f64,
    keys: u64,
    #[serde(skip)]
    requests: usize,
    seed: u64,
}

impl Source {
    fn new(args: &SimArgs) -> anyhow::Result<Self> {
        if let Some(alpha) = args.zipf {
            return Ok(Source::Zipf(ZipfInfo {
                alpha,
                keys: args.keys,
                requests: args.requests,
                seed: args.seed,
            }));
        }
        let Some(path) = args.trace.clone() else {
            anyhow::bail!("give a trace with --trace FILE or generate one with --zipf ALPHA");
        };
        let format = match args.format {
            Some(format) => format,
            None => TraceFormat::guess(&path).with_context(|| {
                format!(
                    "cannot tell the format of `{}` from its folder; give it with --format \
                     (lirs, address, address-penalties, cache2k, cloud-physics, corda, scarab, \
                     adapt-size)",
                    path.display()
                )
            })?,
        };
        Ok(Source::File { path, format })
    }

    fn load(&self) -> anyhow::Result<Vec<u64>> {
        Ok(match self {
            Source::File { path, format } => sim::read_trace(path, *format)?,
            Source::Zipf(zipf) => sim::zipf_trace(zipf.alpha, zipf.keys, zipf.requests, zipf.seed)?,
        })
    }

    /// The trace's name: the file name, or the Zipf parameters.
    fn name(&self) -> String {
        match self {
            Source::File { path, .. } => path.file_name().map_or_else(
                || path.display().to_string(),
                |name| name.to_string_lossy().into_owned(),
            ),
            Source::Zipf(zipf) => format!(
                "zipf(alpha={}, keys={}, seed={})",
                zipf.alpha,
                thousands(zipf.keys),
                zipf.seed
            ),
        }
    }

    fn path(&self) -> Option<String> {
        match self {
            Source::File { path, .. } => Some(path.display().to_string()),
            Source::Zipf(_) => None,
        }
    }

    fn format(&self) -> Option<TraceFormat> {
        match self {
            Source::File { format, .. } => Some(*format),
            Source::Zipf(_) => None,
        }
    }

    fn zipf(&self) -> Option<ZipfInfo> {
        match self {
            Source::File { .. } => None,
            Source::Zipf(zipf) => Some(*zipf),
        }
    }
}

// ---- capacities ------------------------------------------------------------

/// A cache size resolved against the trace, with how it was asked for.
#[derive(Debug, Clone, PartialEq)]
struct Size {
    entries: u64,
    /// `10%` for a percentage, empty for a plain number of entries.
    percent: String,
}

/// Resolves percentages against the distinct keys (at least one entry
/// each), then sorts the sizes and drops repeats.
fn resolve_capacities(capacities: &[Capacity], distinct: u64) -> Vec<Size> {
    let mut sizes: Vec<Size> = capacities
        .iter()
        .map(|&capacity| match capacity {
            Capacity::Entries(entries) => Size {
                entries,
                percent: String::new(),
            },
            Capacity::Percent(percent) => Size {
                entries: ((distinct as f64 * percent / 100.0).round() as u64).max(1),
                percent: format!("{percent}%"),
            },
        })
        .collect();
    // A plain size sorts before a percentage that resolves to the same
    // entries, so that it is the one kept.
    sizes.sort_by(|a, b| (a.entries, &a.percent).cmp(&(b.entries, &b.percent)));
    sizes.dedup_by_key(|size| size.entries);
    sizes
}

// ---- output ----------------------------------------------------------------

/// The `--json` object.
#[derive(Debug, Serialize)]
struct Report {
    trace: TraceInfo,
    policies: Vec<&'static str>,
    /// Cache sizes in entries, ascending.
    capacities: Vec<u64>,
    elapsed_secs: f64,
    /// One per capacity and policy: by capacity, then in the order of
    /// `policies`.
    results: Vec<SimResult>,
}

#[derive(Debug, Serialize)]
struct TraceInfo {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    zipf: Option<ZipfInfo>,
    requests: u64,
    distinct_keys: u64,
}

impl Report {
    /// The trace's description, then a table of miss ratios: one row per
    /// capacity, one column per policy.
    fn print(&self, sizes: &[Size], policies: &[Policy], elapsed: Duration) -> anyhow::Result<()> {
        let format = self
            .trace
            .format
            .as_deref()
            .map_or_else(String::new, |format| format!(" ({format})"));
        output::print_line(format_args!("trace:     {}{format}", self.trace.name))?;
        output::print_line(format_args!(
            "requests:  {}",
            thousands(self.trace.requests)
        ))?;
        output::print_line(format_args!(
            "distinct:  {} keys",
            thousands(self.trace.distinct_keys)
        ))?;
        output::print_line(format_args!(
            "simulated: {} caches in {:.2} s",
            self.results.len(),
            elapsed.as_secs_f64()
        ))?;

        let mut table = output::table(["capacity"]);
        table.set_header(
            std::iter::once("capacity").chain(policies.iter().map(|policy| policy.as_str())),
        );
        let columns = policies.len().max(1);
        for (size, row) in sizes.iter().zip(self.results.chunks(columns)) {
            let label = if size.percent.is_empty() {
                thousands(size.entries)
            } else {
                format!("{} ({})", thousands(size.entries), size.percent)
            };
            table.add_row(
                std::iter::once(label).chain(
                    row.iter()
                        .map(|result| format!("{:.4}", result.miss_ratio())),
                ),
            );
        }
        output::align_right(&mut table, 0..=policies.len());
        output::print_line("miss ratio by capacity (entries) and policy:")?;
        output::print_table(&table)?;
        Ok(())
    }
}

/// A spinner on stderr while the trace is read; hidden under `--json` (and
/// by indicatif itself when stderr is not a terminal).
fn spinner(hidden: bool, message: String) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let spinner = ProgressBar::new_spinner().with_message(message);
    spinner.enable_steady_tick(Duration::from_millis(100));
    spinner
}

/// A progress bar over every request of every simulation.
fn progress_bar(hidden: bool, total: u64) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) =
        ProgressStyle::with_template("{prefix:>6} [{wide_bar}] {percent:>3}% {per_sec} eta {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix("sim");
    bar
}

// ---- the plot --------------------------------------------------------------

/// One colour per policy, in the order given (colour-blind safe enough and
/// distinct in print).
const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// The most capacities labelled on the x axis.
const MAX_TICKS: usize = 10;

/// Draws one miss-ratio curve per policy: capacity on a logarithmic x
/// axis, miss ratio on the y axis.
fn plot(
    path: &Path,
    title: &str,
    policies: &[Policy],
    results: &[SimResult],
) -> anyhow::Result<()> {
    let failed = |err: &dyn std::fmt::Display| {
        anyhow::anyhow!("cannot draw the plot into `{}`: {err}", path.display())
    };
    let mut capacities: Vec<f64> = results.iter().map(|r| r.capacity.max(1) as f64).collect();
    capacities.sort_by(f64::total_cmp);
    capacities.dedup();
    let smallest = capacities.first().copied().unwrap_or(1.0);
    let largest = capacities.last().copied().unwrap_or(1.0);
    // The ticks are the capacities simulated, at most about ten of them.
    let ticks: Vec<f64> = capacities
        .iter()
        .copied()
        .step_by(capacities.len().div_ceil(MAX_TICKS).max(1))
        .collect();
    let highest = results
        .iter()
        .map(SimResult::miss_ratio)
        .fold(0.0_f64, f64::max);
    let y_max = (highest * 1.1).clamp(0.01, 1.05);

    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| failed(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(
            (smallest / 1.25..largest * 1.25)
                .log_scale()
                .with_key_points(ticks),
            0.0..y_max,
        )
        .map_err(|e| failed(&e))?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc("capacity (entries, log scale)")
        .y_desc("miss ratio")
        .x_label_formatter(&|capacity| thousands(capacity.round() as u64))
        .y_label_formatter(&|ratio| format!("{ratio:.2}"))
        .draw()
        .map_err(|e| failed(&e))?;
    for (index, &policy) in policies.iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        let points: Vec<(f64, f64)> = results
            .iter()
            .filter(|result| result.policy == policy)
            .map(|result| (result.capacity.max(1) as f64, result.miss_ratio()))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
            .map_err(|e| failed(&e))?
            .label(policy.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], colour.stroke_width(2)));
        chart
            .draw_series(PointSeries::of_element(
                points,
                4,
                colour.filled(),
                &|point, size, style| Circle::new(point, size, style),
            ))
            .map_err(|e| failed(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(|e| failed(&e))?;
    root.present().map_err(|e| failed(&e))?;
    Ok(())
}

// ---- argument parsers ------------------------------------------------------

fn parse_format(text: &str) -> Result<TraceFormat, String> {
    text.parse()
        .map_err(|err: cachette::Error| err.message().to_owned())
}

fn parse_policy(text: &str) -> Result<Policy, String> {
    text.parse()
        .map_err(|err: cachette::Error| err.message().to_owned())
}

fn parse_alpha(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(alpha) if alpha.is_finite() && alpha > 0.0 => Ok(alpha),
        _ => Err(format!(
            "`{text}` is not a Zipf exponent (a finite number > 0)"
        )),
    }
}

fn parse_capacity(text: &str) -> Result<Capacity, String> {
    let text = text.trim();
    if let Some(percent) = text.strip_suffix('%') {
        return match percent.trim().parse::<f64>() {
            Ok(percent) if percent.is_finite() && percent > 0.0 => Ok(Capacity::Percent(percent)),
            _ => Err(format!(
                "`{text}` is not a percentage of the distinct keys greater than 0"
            )),
        };
    }
    match text.replace('_', "").parse::<u64>() {
        Ok(entries) if entries > 0 => Ok(Capacity::Entries(entries)),
        _ => Err(format!(
            "`{text}` is not a capacity (a number of entries > 0, or a percentage such as `10%`)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacities_parse_as_entries_or_percentages() {
        assert_eq!(parse_capacity("1000"), Ok(Capacity::Entries(1000)));
        assert_eq!(parse_capacity("10_000"), Ok(Capacity::Entries(10_000)));
        assert_eq!(parse_capacity("2.5%"), Ok(Capacity::Percent(2.5)));
        for bad in ["0", "-1", "0%", "x%", "ten", ""] {
            assert!(parse_capacity(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn percentages_resolve_against_the_distinct_keys_sorted_and_deduplicated() {
        let sizes = resolve_capacities(
            &[
                Capacity::Percent(10.0),
                Capacity::Entries(5),
                Capacity::Percent(0.001),
                Capacity::Entries(100),
            ],
            1000,
        );
        let entries: Vec<u64> = sizes.iter().map(|size| size.entries).collect();
        assert_eq!(entries, [1, 5, 100]);
        assert_eq!(sizes[0].percent, "0.001%");
        assert_eq!(sizes[2].percent, "", "the plain size is kept");
    }
}
