//! The single operations on the backend named by `--url`: `get`, `set`,
//! `del`, `ttl`, `touch`, `incr`, `decr`, `keys`, `clear`, `stats`, `ping`.
//!
//! Each prints its answer on stdout, so that scripts can capture it, and
//! reports "absent" (a miss, a missing key, a condition that kept a write
//! from happening) as [`Outcome::Absent`], exit status 1, with a short note
//! on stderr.

use std::io::{self, BufWriter, Read as _, Write as _};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use cachette::{Backend, Expiry, KeyTtl, SetOptions, Stats};
use clap::{ArgGroup, Args};
use futures_util::StreamExt as _;
use serde::Serialize;

use super::Outcome;
use crate::output::{self, note, print_line};
use crate::units;

/// Arguments of `cachette get`.
#[derive(Debug, Args)]
#[command(after_help = "\
A UTF-8 value is printed followed by a newline; any other value is written
to stdout byte for byte. On a miss nothing is printed on stdout, `(miss)` is
printed on stderr and the exit status is 1.")]
pub(crate) struct GetArgs {
    /// The key to read.
    key: String,
    /// Write the value byte for byte, without a trailing newline.
    #[arg(long)]
    raw: bool,
}

/// Arguments of `cachette set`.
#[derive(Debug, Args)]
pub(crate) struct SetArgs {
    /// The key to write.
    key: String,
    /// The value (UTF-8 text); see --stdin for anything else.
    #[arg(required_unless_present = "stdin")]
    value: Option<String>,
    /// Read the value from stdin, byte for byte, instead of VALUE.
    #[arg(long, conflicts_with = "value")]
    stdin: bool,
    /// Expire the key after this long, e.g. `1500ms`, `30s`, `2h 15m`.
    /// Without --ttl or --persist, the backend's default TTL applies.
    #[arg(long, value_name = "DURATION", value_parser = units::parse_positive_duration)]
    ttl: Option<Duration>,
    /// Never expire the key, whatever the backend's default TTL.
    #[arg(long, conflicts_with = "ttl")]
    persist: bool,
    /// Tag the entry (repeatable); invalidating a tag removes the entry.
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Write only if the key is absent.
    #[arg(long, conflicts_with = "xx")]
    nx: bool,
    /// Write only if the key is present.
    #[arg(long)]
    xx: bool,
}

/// Arguments of `cachette del`.
#[derive(Debug, Args)]
pub(crate) struct DelArgs {
    /// The keys to remove.
    #[arg(required = true, num_args = 1..)]
    keys: Vec<String>,
}

/// Arguments of `cachette invalidate-tags`.
#[derive(Debug, Args)]
pub(crate) struct TagsArgs {
    /// The tags.
    #[arg(required = true, num_args = 1..)]
    tags: Vec<String>,
}

/// Arguments of commands that take one key.
#[derive(Debug, Args)]
pub(crate) struct KeyArgs {
    /// The key.
    key: String,
}

/// Arguments of `cachette touch`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("expiry").required(true).args(["ttl", "persist"])))]
pub(crate) struct TouchArgs {
    /// The key.
    key: String,
    /// The new TTL, from now, e.g. `1500ms`, `30s`.
    #[arg(long, value_name = "DURATION", value_parser = units::parse_positive_duration)]
    ttl: Option<Duration>,
    /// Remove the key's deadline: it never expires.
    #[arg(long)]
    persist: bool,
}

/// Arguments of `cachette incr` and `cachette decr`.
#[derive(Debug, Args)]
pub(crate) struct CounterArgs {
    /// The counter's key.
    key: String,
    /// How much to add (incr) or subtract (decr).
    #[arg(default_value_t = 1, allow_negative_numbers = true)]
    by: i64,
    /// The TTL of the counter if this creates it; an existing counter keeps
    /// its deadline.
    #[arg(long, value_name = "DURATION", value_parser = units::parse_positive_duration)]
    ttl: Option<Duration>,
}

/// Whether a counter command adds or subtracts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CounterOp {
    /// `incr`.
    Incr,
    /// `decr`.
    Decr,
}

/// Arguments of `cachette keys`.
#[derive(Debug, Args)]
pub(crate) struct KeysArgs {
    /// A glob pattern: `*` any run of characters, `?` one character,
    /// `[abc]` a set, `\` escapes.
    #[arg(default_value = "*")]
    pattern: String,
}

/// Arguments of `cachette clear`.
#[derive(Debug, Args)]
pub(crate) struct ClearArgs {
    /// Confirm: remove every key of this backend (its prefix or namespace).
    #[arg(long)]
    yes: bool,
}

/// Arguments of `cachette stats`.
#[derive(Debug, Args)]
pub(crate) struct StatsArgs {
    /// Print one JSON object instead of a table.
    #[arg(long, conflicts_with = "prometheus")]
    json: bool,
    /// Print Prometheus' text exposition format instead of a table:
    /// `cachette_<counter>_total` counters, `cachette_entries` and
    /// `cachette_bytes` gauges, `cachette_detail_total{name=…}` for the
    /// backend's own counters, each labelled with the backend.
    #[arg(long)]
    prometheus: bool,
}

/// `cachette get KEY`.
pub(crate) async fn get(backend: &dyn Backend, args: &GetArgs) -> anyhow::Result<Outcome> {
    let Some(value) = backend.get(&args.key).await? else {
        note("(miss)");
        return Ok(Outcome::Absent);
    };
    match std::str::from_utf8(&value) {
        Ok(text) if !args.raw => print_line(text)?,
        _ => output::print_bytes(&value)?,
    }
    Ok(Outcome::Done)
}

/// `cachette set KEY VALUE`.
pub(crate) async fn set(backend: &dyn Backend, args: &SetArgs) -> anyhow::Result<Outcome> {
    let value = match &args.value {
        Some(text) => Bytes::from(text.clone()),
        None => {
            let mut buffer = Vec::new();
            io::stdin()
                .read_to_end(&mut buffer)
                .context("cannot read the value from stdin")?;
            Bytes::from(buffer)
        }
    };
    let mut options = SetOptions::new().tags(args.tags.iter().cloned());
    if let Some(ttl) = args.ttl {
        options = options.ttl(ttl);
    } else if args.persist {
        options = options.expiry(Expiry::Never);
    }
    if args.nx {
        options = options.if_absent();
    } else if args.xx {
        options = options.if_present();
    }
    if backend.set(&args.key, value, &options).await? {
        print_line("OK")?;
        Ok(Outcome::Done)
    } else {
        note(if args.nx {
            "(not written: the key exists)"
        } else {
            "(not written: the key is absent)"
        });
        Ok(Outcome::Absent)
    }
}

/// `cachette del KEY...`.
pub(crate) async fn del(backend: &dyn Backend, args: &DelArgs) -> anyhow::Result<Outcome> {
    let keys: Vec<&str> = args.keys.iter().map(String::as_str).collect();
    let removed = backend.delete_many(&keys).await?;
    print_line(removed)?;
    Ok(Outcome::Done)
}

/// `cachette ttl KEY`.
pub(crate) async fn ttl(backend: &dyn Backend, args: &KeyArgs) -> anyhow::Result<Outcome> {
    match backend.ttl(&args.key).await? {
        KeyTtl::Missing => {
            print_line("missing")?;
            Ok(Outcome::Absent)
        }
        KeyTtl::Persistent => {
            print_line("persistent")?;
            Ok(Outcome::Done)
        }
        KeyTtl::ExpiresIn(left) => {
            print_line(format_args!("{}ms", left.as_millis()))?;
            Ok(Outcome::Done)
        }
    }
}

/// `cachette touch KEY --ttl D | --persist`.
pub(crate) async fn touch(backend: &dyn Backend, args: &TouchArgs) -> anyhow::Result<Outcome> {
    let expiry = args.ttl.map_or(Expiry::Never, Expiry::After);
    if backend.touch(&args.key, expiry).await? {
        print_line("OK")?;
        Ok(Outcome::Done)
    } else {
        note("(missing)");
        Ok(Outcome::Absent)
    }
}

/// `cachette incr KEY [BY]` and `cachette decr KEY [BY]`.
pub(crate) async fn counter(
    backend: &dyn Backend,
    args: &CounterArgs,
    op: CounterOp,
) -> anyhow::Result<Outcome> {
    let expiry = args.ttl.map_or(Expiry::Default, Expiry::After);
    let value = match op {
        CounterOp::Incr => backend.incr(&args.key, args.by, expiry).await?,
        CounterOp::Decr => backend.decr(&args.key, args.by, expiry).await?,
    };
    print_line(value)?;
    Ok(Outcome::Done)
}

/// `cachette keys [PATTERN]`: streams the keys, one per line.
pub(crate) async fn keys(backend: &dyn Backend, args: &KeysArgs) -> anyhow::Result<Outcome> {
    let mut keys = backend.keys(&args.pattern).await?;
    let mut stdout = BufWriter::new(io::stdout());
    while let Some(key) = keys.next().await {
        writeln!(stdout, "{}", key?)?;
    }
    stdout.flush()?;
    Ok(Outcome::Done)
}

/// `cachette clear --yes`.
pub(crate) async fn clear(backend: &dyn Backend, args: &ClearArgs) -> anyhow::Result<Outcome> {
    if !args.yes {
        bail!("`clear` removes every key of the backend; pass --yes to confirm");
    }
    backend.clear().await?;
    print_line("OK")?;
    Ok(Outcome::Done)
}

/// `cachette stats [--json]`.
pub(crate) async fn stats(backend: &dyn Backend, args: &StatsArgs) -> anyhow::Result<Outcome> {
    let stats = backend.stats().await?;
    if args.json {
        output::print_json(&StatsRow::new(backend.name(), &stats))?;
    } else if args.prometheus {
        print_line(prometheus(backend.name(), &stats).trim_end())?;
    } else {
        let mut table = output::table(["counter", "value"]);
        table.add_row(["backend".to_owned(), backend.name().to_owned()]);
        for (name, value) in stats.counters() {
            table.add_row([name.to_owned(), value.to_string()]);
        }
        table.add_row(["hit ratio".to_owned(), format!("{:.4}", stats.hit_ratio())]);
        for (name, value) in &stats.details {
            table.add_row([name.clone(), value.to_string()]);
        }
        output::align_right(&mut table, [1]);
        output::print_table(&table)?;
    }
    Ok(Outcome::Done)
}

/// `stats` in Prometheus' text exposition format (version 0.0.4).
fn prometheus(backend: &str, stats: &Stats) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let label = format!("backend=\"{}\"", escape_label(backend));
    for (name, value) in stats.counters() {
        let (metric, kind) = match name {
            "entries" | "bytes" => (format!("cachette_{name}"), "gauge"),
            _ => (format!("cachette_{name}_total"), "counter"),
        };
        let _ = writeln!(out, "# TYPE {metric} {kind}");
        let _ = writeln!(out, "{metric}{{{label}}} {value}");
    }
    if !stats.details.is_empty() {
        let _ = writeln!(out, "# TYPE cachette_detail_total counter");
        for (name, value) in &stats.details {
            let _ = writeln!(
                out,
                "cachette_detail_total{{{label},name=\"{}\"}} {value}",
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

/// `cachette ping`.
pub(crate) async fn ping(backend: &dyn Backend) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    backend.health().await?;
    let latency = started.elapsed();
    print_line(format_args!("PONG {:.3}ms", latency.as_secs_f64() * 1e3))?;
    Ok(Outcome::Done)
}

/// `cachette exists KEY`.
pub(crate) async fn exists(backend: &dyn Backend, args: &KeyArgs) -> anyhow::Result<Outcome> {
    let found = backend.exists(&args.key).await?;
    print_line(found)?;
    Ok(if found {
        Outcome::Done
    } else {
        Outcome::Absent
    })
}

/// `cachette mget KEY...`.
pub(crate) async fn mget(backend: &dyn Backend, args: &DelArgs) -> anyhow::Result<Outcome> {
    let keys: Vec<&str> = args.keys.iter().map(String::as_str).collect();
    let values = backend.get_many(&keys).await?;
    for (key, value) in keys.iter().zip(values) {
        match value {
            Some(value) => match std::str::from_utf8(&value) {
                Ok(text) => print_line(text)?,
                Err(_) => {
                    output::print_bytes(&value)?;
                    print_line("")?;
                }
            },
            None => {
                note(&format!("(miss) {key}"));
                print_line("")?;
            }
        }
    }
    Ok(Outcome::Done)
}

/// `cachette invalidate-tags TAG...`.
pub(crate) async fn invalidate_tags(
    backend: &dyn Backend,
    args: &TagsArgs,
) -> anyhow::Result<Outcome> {
    let tags: Vec<&str> = args.tags.iter().map(String::as_str).collect();
    print_line(backend.invalidate_tags(&tags).await?)?;
    Ok(Outcome::Done)
}

/// `cachette purge-expired`.
pub(crate) async fn purge_expired(backend: &dyn Backend) -> anyhow::Result<Outcome> {
    print_line(backend.purge_expired().await?)?;
    Ok(Outcome::Done)
}

/// [`Stats`] in `--json` output.
#[derive(Debug, Serialize)]
struct StatsRow {
    backend: &'static str,
    #[serde(flatten)]
    counters: std::collections::BTreeMap<&'static str, u64>,
    hit_ratio: f64,
    details: std::collections::BTreeMap<String, u64>,
}

impl StatsRow {
    fn new(backend: &'static str, stats: &Stats) -> Self {
        StatsRow {
            backend,
            counters: stats.counters().into_iter().collect(),
            hit_ratio: stats.hit_ratio(),
            details: stats.details.iter().cloned().collect(),
        }
    }
}
