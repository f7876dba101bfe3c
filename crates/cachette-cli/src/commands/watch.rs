//! `cachette watch`: the stats of a backend, redrawn every interval: hit
//! ratio, operations per second, entries, bytes and evictions, each with
//! where it comes from.
//!
//! Where the backend reports its server's figures (Redis' `INFO stats`
//! and `INFO memory`, memcached's `stats`), those stand in for the
//! counters of this process, which a watching CLI leaves at zero.

use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

use cachette::Backend;
use clap::Args;
use serde::Serialize;
use tokio::time::MissedTickBehavior;

use super::Outcome;
use super::stats::{Reading, ScanArgs};
use crate::output::{self, Printer};
use crate::units::{self, format_bytes};

/// Arguments of `cachette watch`.
#[derive(Debug, Args)]
#[command(after_help = "\
ops/s is the growth of hits + misses + writes over the last interval (blank
on the first frame). Stop with Ctrl-C, or give --count. Under --json, one
JSON object per frame and line.")]
pub(crate) struct WatchArgs {
    /// The time between frames, e.g. `1s`, `250ms`.
    #[arg(long, default_value = "1s", value_name = "DURATION", value_parser = units::parse_positive_duration)]
    interval: Duration,
    /// Stop after this many frames [default: at Ctrl-C].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    #[command(flatten)]
    scan: ScanArgs,
}

/// Stand-ins for this process's counters: `(counter, detail)` where the
/// backend reports the server's figure as that detail.
const SERVER_FIGURES: [(&str, &str); 7] = [
    ("hits", "server_keyspace_hits"),
    ("misses", "server_keyspace_misses"),
    ("evictions", "server_evicted_keys"),
    ("bytes", "server_used_memory"),
    ("entries", "curr_items"),
    ("bytes", "bytes"),
    ("evictions", "evictions"),
];

/// One frame's figures.
#[derive(Debug, Serialize)]
struct Frame {
    frame: u64,
    backend: &'static str,
    /// Since the first frame.
    elapsed_secs: f64,
    hits: u64,
    misses: u64,
    writes: u64,
    hit_ratio: f64,
    /// `null` on the first frame.
    ops_per_sec: Option<f64>,
    entries: u64,
    bytes: u64,
    evictions: u64,
    /// Where each figure comes from.
    sources: Sources,
}

/// The source of each figure of a [`Frame`].
#[derive(Debug, Serialize)]
struct Sources {
    hits: &'static str,
    misses: &'static str,
    writes: &'static str,
    entries: &'static str,
    bytes: &'static str,
    evictions: &'static str,
}

/// A figure: the server's stand-in where the backend reports one, else
/// this reading's counter.
fn figure(reading: &Reading, counter: &str, value: u64) -> (u64, &'static str) {
    SERVER_FIGURES
        .iter()
        .filter(|(name, _)| *name == counter)
        .find_map(|(_, detail)| Some((reading.detail(detail)?, reading.source(detail))))
        .unwrap_or((value, reading.source(counter)))
}

/// The operations a frame counts: hits + misses + writes.
fn operations(hits: u64, misses: u64, writes: u64) -> u64 {
    hits.saturating_add(misses).saturating_add(writes)
}

impl Frame {
    fn new(
        number: u64,
        elapsed: Duration,
        reading: &Reading,
        previous: Option<(&Frame, f64)>,
    ) -> Self {
        let stats = &reading.stats;
        let (hits, hits_from) = figure(reading, "hits", stats.hits);
        let (misses, misses_from) = figure(reading, "misses", stats.misses);
        let (entries, entries_from) = figure(reading, "entries", stats.entries);
        let (bytes, bytes_from) = figure(reading, "bytes", stats.bytes);
        let (evictions, evictions_from) = figure(reading, "evictions", stats.evictions);
        // memcached counts its writes as a detail (it cannot tell inserts
        // from updates).
        let writes = stats
            .inserts
            .saturating_add(stats.updates)
            .saturating_add(reading.detail("writes").unwrap_or(0));
        // The server's counters are its own to report: sums that saturate
        // (and a ratio in f64) rather than an overflow on absurd values.
        let total = hits as f64 + misses as f64;
        let ops = operations(hits, misses, writes);
        let ops_per_sec = previous.map(|(before, secs)| {
            let before = operations(before.hits, before.misses, before.writes);
            ops.saturating_sub(before) as f64 / secs.max(f64::EPSILON)
        });
        Frame {
            frame: number,
            backend: reading.backend,
            elapsed_secs: elapsed.as_secs_f64(),
            hits,
            misses,
            writes,
            hit_ratio: if total == 0.0 {
                0.0
            } else {
                hits as f64 / total
            },
            ops_per_sec,
            entries,
            bytes,
            evictions,
            sources: Sources {
                hits: hits_from,
                misses: misses_from,
                writes: reading.source("inserts"),
                entries: entries_from,
                bytes: bytes_from,
                evictions: evictions_from,
            },
        }
    }

    /// The frame as a table, under a title line.
    fn draw(&self, interval: Duration) -> anyhow::Result<()> {
        let mut table = output::table(["figure", "value", "source"]);
        let ops = self
            .ops_per_sec
            .map_or_else(String::new, |ops| format!("{ops:.1}"));
        let ops_from = if self.sources.hits == self.sources.writes {
            self.sources.hits.to_owned()
        } else {
            format!(
                "{} (reads), {} (writes)",
                self.sources.hits, self.sources.writes
            )
        };
        let rows = [
            (
                "hit ratio",
                format!("{:.4}", self.hit_ratio),
                self.sources.hits.to_owned(),
            ),
            ("ops/s", ops, ops_from),
            (
                "entries",
                self.entries.to_string(),
                self.sources.entries.to_owned(),
            ),
            (
                "bytes",
                format_bytes(self.bytes),
                self.sources.bytes.to_owned(),
            ),
            (
                "evictions",
                self.evictions.to_string(),
                self.sources.evictions.to_owned(),
            ),
        ];
        for (name, value, source) in rows {
            table.add_row([name.to_owned(), value, source]);
        }
        output::align_right(&mut table, [1]);
        output::print_line(format_args!(
            "{} every {} (frame {}, Ctrl-C to stop)",
            self.backend,
            humantime::format_duration(interval),
            self.frame
        ))?;
        output::print_table(&table)?;
        Ok(())
    }
}

/// `cachette watch`.
pub(crate) async fn watch(
    backend: &dyn Backend,
    args: &WatchArgs,
    out: Printer,
) -> anyhow::Result<Outcome> {
    // Only a terminal is cleared; a pipe gets the frames one after another.
    let clear = !out.is_json() && std::io::stdout().is_terminal();
    let mut ticks = tokio::time::interval(args.interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut previous: Option<(Frame, Instant)> = None;
    let mut number = 0;
    // One listener for the whole run: a Ctrl-C during a reading stops too.
    // `ctrl_c` installs its handler when first polled, so `stop` is polled
    // first (`biased`): the handler is in place before the first frame is
    // drawn, not whenever the select happens to poll it.
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    while args.count.is_none_or(|count| number < count) {
        let next = async {
            ticks.tick().await;
            Reading::take(backend, &args.scan).await
        };
        let reading = tokio::select! {
            biased;
            _ = &mut stop => break,
            reading = next => reading?,
        };
        number += 1;
        let now = Instant::now();
        let before = previous
            .as_ref()
            .map(|(frame, at)| (frame, now.duration_since(*at).as_secs_f64()));
        let frame = Frame::new(number, now.duration_since(started), &reading, before);
        if out.is_json() {
            output::print_json_line(&frame)?;
        } else {
            if clear {
                // Clear the screen and move to its top left corner.
                output::print_bytes(b"\x1b[2J\x1b[H")?;
            } else if number > 1 {
                output::print_line("")?;
            }
            frame.draw(args.interval)?;
            std::io::stdout().flush()?;
        }
        previous = Some((frame, now));
    }
    Ok(Outcome::Done)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// A server that reports counters at the top of `u64` (broken, or
    /// hostile) makes no overflow: the sums saturate, the ratio holds.
    #[test]
    fn server_counters_at_the_top_of_u64_do_not_overflow() {
        let mut stats = cachette::Stats::default();
        stats.inserts = 1;
        stats.details = vec![
            ("server_keyspace_hits".to_owned(), u64::MAX),
            ("server_keyspace_misses".to_owned(), u64::MAX),
        ];
        let reading = Reading {
            backend: "redis",
            stats,
            sources: BTreeMap::new(),
        };
        let first = Frame::new(1, Duration::ZERO, &reading, None);
        assert_eq!(first.hit_ratio, 0.5);
        let second = Frame::new(2, Duration::from_secs(1), &reading, Some((&first, 1.0)));
        assert_eq!(second.ops_per_sec, Some(0.0));
    }
}
