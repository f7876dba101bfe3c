//! `cachette stats`: the backend's counters, each with where it comes
//! from, as a table, JSON or Prometheus' text exposition format; and the
//! [`Reading`] that `watch` redraws.
//!
//! The counters of [`Stats`] are kept by the backend's client, that is by
//! this process: a CLI run that only reads stats sees zeros there. Where a
//! backend reports its server's own figures (Redis' `INFO`, memcached's
//! `stats`, PostgreSQL's table totals) they are shown with their source, and
//! on Redis, which reports no entry count, the keys under the prefix are
//! counted with a SCAN ([`ScanArgs`]: skipped on a database of more than
//! `--scan-limit` keys, since the SCAN walks all of them, or by
//! `--no-scan`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use cachette::{Backend, Stats};
use clap::Args;
use futures_util::StreamExt as _;
use serde::Serialize;

use super::Outcome;
use crate::output::{self, Printer, print_line};

/// Arguments of `cachette stats`.
#[derive(Debug, Args)]
#[command(after_help = "\
The `source` column says where each figure comes from: `this process` (the
counters of this CLI run's client: zeros unless the command did something),
the backend's store (`the directory`, `the database file`, `server: the
table's totals`), the server (`server INFO stats`, `server INFO memory`,
`server INFO keyspace or DBSIZE`, `server stats`), or `SCAN of prefix`
(Redis: the keys under the backend's prefix, counted with SCAN, which
walks the whole database: skipped above --scan-limit keys, `not counted`);
`not reported` where the backend does not know.")]
pub(crate) struct StatsArgs {
    /// Print Prometheus' text exposition format instead of a table:
    /// `cachette_<counter>_total` counters, `cachette_entries` and
    /// `cachette_bytes` gauges (left out where the backend does not report
    /// them), and the backend's own figures as the metrics layer exports
    /// them: `cachette_detail{name=…}` gauges for levels,
    /// `cachette_detail_total{name=…}` counters for running totals; each
    /// labelled with the backend.
    #[arg(long)]
    prometheus: bool,
    #[command(flatten)]
    scan: ScanArgs,
}

/// Whether `stats` and `watch` count the keys under a Redis prefix.
#[derive(Debug, Args)]
pub(crate) struct ScanArgs {
    /// Do not count the keys under the prefix on Redis.
    #[arg(long)]
    no_scan: bool,
    /// Count the keys under the prefix on Redis only when the database
    /// holds at most this many keys (a SCAN walks every key of the
    /// database, whatever the prefix); 0 for no limit.
    #[arg(long, value_name = "KEYS", default_value_t = 1_000_000)]
    scan_limit: u64,
}

impl ScanArgs {
    /// Whether a database of `db_keys` keys (`None`: not known) is within
    /// `--scan-limit`.
    fn within_limit(&self, db_keys: Option<u64>) -> bool {
        self.scan_limit == 0 || db_keys.is_none_or(|keys| keys <= self.scan_limit)
    }
}

/// Where a figure comes from when this process counted it.
const THIS_PROCESS: &str = "this process";

/// The source of a store that reports no entry count.
const NOT_REPORTED: &str = "not reported";

/// The source of a Redis entry count left out because of the database's
/// size.
const OVER_SCAN_LIMIT: &str = "not counted: the database holds more than --scan-limit keys";

/// One reading of a backend's figures, with the source of each.
#[derive(Debug, Clone)]
pub(crate) struct Reading {
    /// The backend's name.
    pub(crate) backend: &'static str,
    /// Its stats; `entries` counted by listing where the backend reports
    /// none.
    pub(crate) stats: Stats,
    /// Where each counter and detail comes from, by name.
    pub(crate) sources: BTreeMap<String, &'static str>,
}

impl Reading {
    /// Reads the backend's stats; counts its keys with a SCAN when it is
    /// Redis (which reports no entry count) and `scan` allows it.
    pub(crate) async fn take(backend: &dyn Backend, scan: &ScanArgs) -> anyhow::Result<Self> {
        let name = backend.name();
        let stats = backend.stats().await?;
        let mut sources: BTreeMap<String, &'static str> = stats
            .counters()
            .iter()
            .map(|(counter, _)| (counter.to_string(), counter_source(name, counter)))
            .collect();
        for (detail, _) in &stats.details {
            sources.insert(detail.clone(), detail_source(name, detail));
        }
        let mut reading = Reading {
            backend: name,
            stats,
            sources,
        };
        let Some(how) = listing_source(name) else {
            return Ok(reading);
        };
        if scan.no_scan {
            return Ok(reading);
        }
        if !scan.within_limit(reading.detail("db_keys")) {
            reading
                .sources
                .insert("entries".to_owned(), OVER_SCAN_LIMIT);
            return Ok(reading);
        }
        let mut keys = backend.keys("*").await?;
        let mut count = 0;
        while let Some(key) = keys.next().await {
            key?;
            count += 1;
        }
        reading.stats.entries = count;
        reading.sources.insert("entries".to_owned(), how);
        Ok(reading)
    }

    /// The source of a counter or detail.
    pub(crate) fn source(&self, name: &str) -> &'static str {
        self.sources.get(name).copied().unwrap_or(THIS_PROCESS)
    }

    /// A detail by name.
    pub(crate) fn detail(&self, name: &str) -> Option<u64> {
        self.stats
            .details
            .iter()
            .find_map(|(detail, value)| (detail == name).then_some(*value))
    }
}

/// Where a backend's `entries` and `bytes` come from.
fn store_source(backend: &str) -> &'static str {
    match backend {
        "memory" => THIS_PROCESS,
        "file" => "the directory",
        "redb" => "the database file",
        "postgres" => "server: the table's totals",
        "tiered" => "L2",
        _ => NOT_REPORTED,
    }
}

/// How the keys of a backend that reports no entry count are counted, for
/// the backends whose listing is cheap enough to run by default (a SCAN on
/// the server; a listing of object storage pays per request and is left
/// out).
fn listing_source(backend: &str) -> Option<&'static str> {
    match backend {
        "redis" | "near" => Some("SCAN of prefix"),
        _ => None,
    }
}

/// Where a counter of [`Stats::counters`] comes from.
fn counter_source(backend: &str, counter: &str) -> &'static str {
    match counter {
        "entries" | "bytes" => store_source(backend),
        _ => THIS_PROCESS,
    }
}

/// Where a backend's detail comes from (what the backends' docs say of
/// their `details`).
fn detail_source(backend: &str, detail: &str) -> &'static str {
    match (backend, detail) {
        // A cluster answers DBSIZE summed over its masters instead.
        ("redis", "db_keys") => "server INFO keyspace or DBSIZE (every prefix)",
        ("redis", "server_used_memory") => "server INFO memory",
        ("redis", name) if name.starts_with("server_") => "server INFO stats",
        ("memcached", "curr_items" | "bytes" | "evictions" | "expired_unfetched") => {
            "server stats (sum over the servers)"
        }
        ("redb", "file_bytes") => "the database file",
        _ => THIS_PROCESS,
    }
}

/// `cachette stats`.
pub(crate) async fn stats(
    backend: &dyn Backend,
    args: &StatsArgs,
    out: Printer,
) -> anyhow::Result<Outcome> {
    if args.prometheus && out.is_json() {
        anyhow::bail!("--prometheus and --json are two output formats: pick one");
    }
    let reading = Reading::take(backend, &args.scan).await?;
    if out.is_json() {
        output::print_json(&StatsDoc::new(&reading))?;
    } else if args.prometheus {
        print_line(prometheus(&reading).trim_end())?;
    } else {
        let stats = &reading.stats;
        let mut table = output::table(["figure", "value", "source"]);
        table.add_row(["backend", reading.backend, ""]);
        for (name, value) in stats.counters() {
            table.add_row([
                name.to_owned(),
                value.to_string(),
                reading.source(name).to_owned(),
            ]);
        }
        table.add_row([
            "hit ratio".to_owned(),
            format!("{:.4}", stats.hit_ratio()),
            reading.source("hits").to_owned(),
        ]);
        for (name, value) in &stats.details {
            table.add_row([
                name.clone(),
                value.to_string(),
                reading.source(name).to_owned(),
            ]);
        }
        output::align_right(&mut table, [1]);
        output::print_table(&table)?;
    }
    Ok(Outcome::Done)
}

/// A reading in Prometheus' text exposition format (version 0.0.4).
fn prometheus(reading: &Reading) -> String {
    let mut out = String::new();
    let label = format!("backend=\"{}\"", escape_label(reading.backend));
    for (name, value) in reading.stats.counters() {
        let source = reading.source(name);
        // A 0 for a figure the backend does not know would read as a
        // measurement on a dashboard: no sample says "unknown".
        if source == NOT_REPORTED || source == OVER_SCAN_LIMIT {
            continue;
        }
        let (metric, kind) = match name {
            "entries" | "bytes" => (format!("cachette_{name}"), "gauge"),
            _ => (format!("cachette_{name}_total"), "counter"),
        };
        let _ = writeln!(out, "# HELP {metric} The backend's {name} ({source}).");
        let _ = writeln!(out, "# TYPE {metric} {kind}");
        let _ = writeln!(out, "{metric}{{{label}}} {value}");
    }
    // The backend's own figures, as the metrics layer exports them: levels
    // as the gauge `cachette_detail`, running totals as the counter
    // `cachette_detail_total`.
    for (metric, kind, level) in [
        ("cachette_detail", "gauge", true),
        ("cachette_detail_total", "counter", false),
    ] {
        let family: Vec<&(String, u64)> = reading
            .stats
            .details
            .iter()
            .filter(|(name, _)| Stats::detail_is_level(name) == level)
            .collect();
        if family.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "# HELP {metric} The backend's own figures, by name ({kind}s)."
        );
        let _ = writeln!(out, "# TYPE {metric} {kind}");
        for (name, value) in family {
            let _ = writeln!(
                out,
                "{metric}{{{label},name=\"{}\"}} {value}",
                escape_label(name)
            );
        }
    }
    out
}

/// A label value as the exposition format writes it.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A [`Reading`] in `--json` output.
#[derive(Debug, Serialize)]
struct StatsDoc {
    backend: &'static str,
    #[serde(flatten)]
    counters: BTreeMap<&'static str, u64>,
    hit_ratio: f64,
    details: BTreeMap<String, u64>,
    sources: BTreeMap<String, &'static str>,
}

impl StatsDoc {
    fn new(reading: &Reading) -> Self {
        StatsDoc {
            backend: reading.backend,
            counters: reading.stats.counters().into_iter().collect(),
            hit_ratio: reading.stats.hit_ratio(),
            details: reading.stats.details.iter().cloned().collect(),
            sources: reading.sources.clone(),
        }
    }
}
