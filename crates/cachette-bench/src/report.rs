//! The outputs: `bench.json` (every number, with the machine) and
//! `bench.md` (the same as Markdown tables, also printed to stdout).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use serde::Serialize;

use crate::caches::CacheKind;
use crate::hit_ratio::{CaseResult, HitRatioReport};
pub(crate) use crate::machine::{CpuSnapshot, Interference, Machine, utc_now};
use crate::memory::MemoryReport;
use crate::throughput::{ThroughputCase, ThroughputReport};

/// Everything one run produced.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    /// The command line.
    pub(crate) command: String,
    /// When the run started (UTC, RFC 3339).
    pub(crate) date: String,
    /// The scale (`full`, `quick`, `tiny`).
    pub(crate) scale: String,
    /// What the machine is.
    pub(crate) machine: Machine,
    /// Which cachette was measured: the git commit of the workspace, and
    /// whether the memory engine had uncommitted changes.
    pub(crate) cachette_source: String,
    /// Part 1, if it ran.
    pub(crate) hit_ratio: Option<HitRatioReport>,
    /// Part 2, if it ran.
    pub(crate) throughput: Option<ThroughputReport>,
    /// Part 3, if it ran.
    pub(crate) memory: Option<MemoryReport>,
    /// Wall time of the whole run.
    pub(crate) total_seconds: f64,
    /// What the rest of the machine did during each part.
    pub(crate) interference: Vec<Interference>,
}

/// The memory engine's folder, relative to the workspace.
const ENGINE: &str = "crates/cachette/src/backends/memory";

/// The workspace's git commit, with a mark if the memory engine has
/// uncommitted changes; `unknown` without git.
pub(crate) fn cachette_source(workspace: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(workspace)
            .args(args)
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        None => "unknown".to_owned(),
        Some(commit) => match git(&["status", "--porcelain", "--", ENGINE]) {
            Some(changes) if changes.is_empty() => format!("git {commit}"),
            Some(_) => format!("git {commit} + uncommitted changes in {ENGINE}"),
            None => format!("git {commit}"),
        },
    }
}

impl Report {
    /// The report as Markdown.
    pub(crate) fn markdown(&self) -> String {
        let mut md = String::new();
        let m = &self.machine;
        let _ = writeln!(md, "# cachette-bench\n");
        let _ = writeln!(md, "- command: `{}`", self.command);
        let _ = writeln!(md, "- date: {}", self.date);
        let _ = writeln!(
            md,
            "- machine: {} CPUs, {}, {}, {}",
            m.nproc, m.cpu, m.os, m.rustc
        );
        let _ = writeln!(md, "- build: {}; scale: {}", m.profile, self.scale);
        let _ = writeln!(md, "- cachette: {}", self.cachette_source);
        for part in &self.interference {
            let _ = writeln!(
                md,
                "- {}: {:.1} s wall; other processes used {:.1} CPU-s meanwhile, steal {:.1} s",
                part.part, part.wall_seconds, part.other_cpu_seconds, part.steal_seconds
            );
        }
        let _ = writeln!(md, "- total run time: {:.1} s", self.total_seconds);
        if let Some(hit) = &self.hit_ratio {
            hit_ratio_markdown(&mut md, hit);
        }
        if let Some(throughput) = &self.throughput {
            throughput_markdown(&mut md, throughput);
        }
        if let Some(memory) = &self.memory {
            memory_markdown(&mut md, memory);
        }
        md
    }
}

fn notes_markdown(md: &mut String, notes: &[String]) {
    for note in notes {
        let _ = writeln!(md, "- {note}");
    }
    md.push('\n');
}

fn hit_ratio_markdown(md: &mut String, hit: &HitRatioReport) {
    let default = CacheKind::cachette_default().name();
    let moka = CacheKind::Moka.name();
    let _ = writeln!(md, "\n## Hit ratio ({:.1} s)\n", hit.seconds);
    notes_markdown(md, &hit.notes);
    for line in &hit.skipped {
        let _ = writeln!(md, "- skipped: {line}");
    }
    if !hit.skipped.is_empty() {
        md.push('\n');
    }
    let header = |md: &mut String, first: &str| {
        let _ = write!(md, "| {first} | capacity |");
        for cache in &hit.caches {
            let _ = write!(md, " {cache} |");
        }
        let _ = writeln!(md, " {default} − moka (points) |");
        let _ = write!(md, "|---|---:|");
        for _ in &hit.caches {
            md.push_str("---:|");
        }
        md.push_str("---:|\n");
    };
    let row = |md: &mut String, case: &CaseResult| {
        let _ = write!(
            md,
            "| {} | {} ({}) |",
            case.source,
            thousands(case.capacity),
            case.fraction
        );
        for cache in &hit.caches {
            let _ = write!(md, " {} |", pct(case.hit_ratio.get(cache).copied()));
        }
        let _ = writeln!(
            md,
            " {} |",
            points(
                case.hit_ratio.get(&default).copied(),
                case.hit_ratio.get(&moka).copied()
            )
        );
    };
    let zipf: Vec<&CaseResult> = hit.cases.iter().filter(|c| c.kind == "zipf").collect();
    if !zipf.is_empty() {
        let _ = writeln!(
            md,
            "### Zipf ({} requests, {} keys)\n",
            thousands(zipf[0].requests as u64),
            thousands(zipf[0].distinct_keys)
        );
        header(md, "workload");
        for case in zipf {
            row(md, case);
        }
    }
    let traces: Vec<&CaseResult> = hit.cases.iter().filter(|c| c.kind == "trace").collect();
    if !traces.is_empty() {
        let _ = writeln!(md, "\n### Traces ({} files)\n", hit.trace_files);
        header(md, "trace");
        for case in traces {
            row(md, case);
        }
        let mut means: Vec<(String, &BTreeMap<String, f64>)> =
            vec![("**mean, all trace cases**".to_owned(), &hit.trace_means)];
        for by in &hit.trace_means_by_fraction {
            means.push((format!("mean at {}", by.fraction), &by.means));
        }
        for (label, values) in means {
            let _ = write!(md, "| {label} | |");
            for cache in &hit.caches {
                let _ = write!(md, " {} |", pct(values.get(cache).copied()));
            }
            let _ = writeln!(
                md,
                " {} |",
                points(values.get(&default).copied(), values.get(&moka).copied())
            );
        }
    }
}

fn throughput_markdown(md: &mut String, report: &ThroughputReport) {
    let _ = writeln!(md, "\n## Throughput ({:.1} s)\n", report.seconds);
    notes_markdown(md, &report.notes);
    let _ = writeln!(
        md,
        "| workload | threads | cachette | ÷ moka, median [min–max] | ÷ quick_cache, median [min–max] |"
    );
    let _ = writeln!(md, "|---|---:|---|---:|---:|");
    for case in &report.cases {
        let mut ours: Vec<&str> = case.ratios.iter().map(|r| r.cache.as_str()).collect();
        ours.dedup();
        for cache in ours {
            let cell = |versus: CacheKind| {
                case.ratios
                    .iter()
                    .find(|r| r.cache == cache && r.versus == versus.name())
                    .map_or_else(
                        || "–".to_owned(),
                        |r| format!("{:.2} [{:.2}–{:.2}]", r.median, r.min, r.max),
                    )
            };
            let _ = writeln!(
                md,
                "| {} | {} | {cache} | {} | {} |",
                case.workload,
                case.threads,
                cell(CacheKind::Moka),
                cell(CacheKind::QuickCache)
            );
        }
    }
    let _ = writeln!(
        md,
        "\nAbsolute, median Mops/s [min–max] (get hit ratio in the mix):\n"
    );
    let _ = writeln!(md, "| workload | threads | cache | Mops/s | get hits |");
    let _ = writeln!(md, "|---|---:|---|---:|---:|");
    for case in &report.cases {
        absolute_rows(md, case);
    }
}

fn absolute_rows(md: &mut String, case: &ThroughputCase) {
    for cache in &case.caches {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.2} [{:.2}–{:.2}] | {} |",
            case.workload,
            case.threads,
            cache.cache,
            cache.median_ops_per_sec / 1e6,
            cache.min_ops_per_sec / 1e6,
            cache.max_ops_per_sec / 1e6,
            pct(Some(cache.get_hit_ratio))
        );
    }
}

fn memory_markdown(md: &mut String, memory: &MemoryReport) {
    let _ = writeln!(md, "\n## Memory per entry ({:.1} s)\n", memory.seconds);
    notes_markdown(md, &memory.notes);
    let _ = writeln!(
        md,
        "| cache | bytes per entry | overhead per entry (− {} B) | entries retained |",
        memory.payload_per_entry
    );
    let _ = writeln!(md, "|---|---:|---:|---:|");
    for cache in &memory.caches {
        let _ = writeln!(
            md,
            "| {} | {:.1} | {:.1} | {} |",
            cache.cache, cache.bytes_per_entry, cache.overhead_per_entry, cache.entries_retained
        );
    }
}

/// `1234567` as `1,234,567`.
pub(crate) fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A ratio as a percentage with two decimals; `–` if missing.
fn pct(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "–".to_owned(), |r| format!("{:.2}%", r * 100.0))
}

/// `a − b` in percentage points, signed.
fn points(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) => format!("{:+.2}", (a - b) * 100.0),
        _ => "–".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::thousands;

    #[test]
    fn thousands_groups_digits_by_three() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
