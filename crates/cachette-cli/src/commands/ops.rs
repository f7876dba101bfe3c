//! The single operations on the backend named by `--url`: `set`, `del`,
//! `exists`, `mget`, `invalidate-tags`, `ttl`, `touch`, `incr`, `decr`,
//! `keys`, `clear`, `ping`, `purge-expired` (`get` and `stats` have
//! modules of their own).
//!
//! Each prints its answer on stdout, so that scripts can capture it (one
//! JSON document under `--json`, see [`crate::output`]), and reports
//! "absent" (a miss, a missing key, a condition that kept a write from
//! happening) as [`Outcome::Absent`], exit status 1, with a short note on
//! stderr.

use std::io::{self, BufWriter, Read as _, Write as _};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use cachette::{Backend, Expiry, KeyTtl, SetOptions};
use clap::{ArgGroup, Args};
use futures_util::StreamExt as _;
use serde_json::json;

use super::Outcome;
use crate::output::{self, Printer, print_json, print_line};
use crate::units;

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

/// `cachette set KEY VALUE`.
pub(crate) async fn set(
    backend: &dyn Backend,
    args: &SetArgs,
    out: Printer,
) -> anyhow::Result<Outcome> {
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
    let written = backend.set(&args.key, value, &options).await?;
    if written {
        out.answer("OK", &json!({ "key": args.key, "written": true }))?;
        return Ok(Outcome::Done);
    }
    let why = if args.nx {
        "(not written: the key exists)"
    } else {
        "(not written: the key is absent)"
    };
    out.absent(why, &json!({ "key": args.key, "written": false }))?;
    Ok(Outcome::Absent)
}

/// `cachette del KEY...`.
pub(crate) async fn del(
    backend: &dyn Backend,
    args: &DelArgs,
    out: Printer,
) -> anyhow::Result<Outcome> {
    let keys: Vec<&str> = args.keys.iter().map(String::as_str).collect();
    let removed = backend.delete_many(&keys).await?;
    out.answer(removed, &json!({ "removed": removed }))?;
    Ok(Outcome::Done)
}

/// `cachette ttl KEY`.
pub(crate) async fn ttl(
    backend: &dyn Backend,
    args: &KeyArgs,
    out: Printer,
) -> anyhow::Result<Outcome> {
    let (text, state, millis) = match backend.ttl(&args.key).await? {
        KeyTtl::Missing => ("missing".to_owned(), "missing", None),
        KeyTtl::Persistent => ("persistent".to_owned(), "persistent", None),
        KeyTtl::ExpiresIn(left) => {
            let millis = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
            (format!("{millis}ms"), "expires", Some(millis))
        }
    };
    out.answer(
        &text,
        &json!({ "key": args.key, "state": state, "ttl_ms": millis }),
    )?;
    Ok(if state == "missing" {
        Outcome::Absent
    } else {
        Outcome::Done
    })
}

/// `cachette touch KEY --ttl D | --persist`.
pub(crate) async fn touch(
    backend: &dyn Backend,
    args: &TouchArgs,
    out: Printer,
) -> anyhow::Result<Outcome> {
    let expiry = args.ttl.map_or(Expiry::Never, Expiry::After);
    let touched = backend.touch(&args.key, expiry).await?;
    let doc = json!({ "key": args.key, "touched": touched });
    if touched {
        out.answer("OK", &doc)?;
        return Ok(Outcome::Done);
    }
    out.absent("(missing)", &doc)?;
    Ok(Outcome::Absent)
}

/// `cachette incr KEY [BY]` and `cachette decr KEY [BY]`.
pub(crate) async fn counter(
    backend: &dyn Backend,
    args: &CounterArgs,
    op: CounterOp,
    out: Printer,
) -> anyhow::Result<Outcome> {
    let expiry = args.ttl.map_or(Expiry::Default, Expiry::After);
    let value = match op {
        CounterOp::Incr => backend.incr(&args.key, args.by, expiry).await?,
        CounterOp::Decr => backend.decr(&args.key, args.by, expiry).await?,
    };
    out.answer(value, &json!({ "key": args.key, "value": value }))?;
    Ok(Outcome::Done)
}

/// `cachette keys [PATTERN]`: streams the keys, one per line, or under
/// `--json` into `{"keys": [...]}` as they come (never all in memory).
pub(crate) async fn keys(
    backend: &dyn Backend,
    args: &KeysArgs,
    out: Printer,
) -> anyhow::Result<Outcome> {
    let mut keys = backend.keys(&args.pattern).await?;
    let mut stdout = BufWriter::new(io::stdout());
    if out.is_json() {
        stdout.write_all(b"{\"keys\": [")?;
    }
    let mut first = true;
    while let Some(key) = keys.next().await {
        let key = key?;
        if out.is_json() {
            if !first {
                stdout.write_all(b", ")?;
            }
            serde_json::to_writer(&mut stdout, &key).map_err(io::Error::from)?;
        } else {
            writeln!(stdout, "{key}")?;
        }
        first = false;
    }
    if out.is_json() {
        stdout.write_all(b"]}\n")?;
    }
    stdout.flush()?;
    Ok(Outcome::Done)
}

/// `cachette clear --yes`.
pub(crate) async fn clear(
    backend: &dyn Backend,
    args: &ClearArgs,
    out: Printer,
) -> anyhow::Result<Outcome> {
    if !args.yes {
        bail!("`clear` removes every key of the backend; pass --yes to confirm");
    }
    backend.clear().await?;
    out.answer("OK", &json!({ "cleared": true }))?;
    Ok(Outcome::Done)
}

/// `cachette ping`.
pub(crate) async fn ping(backend: &dyn Backend, out: Printer) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    backend.health().await?;
    let millis = started.elapsed().as_secs_f64() * 1e3;
    out.answer(
        format_args!("PONG {millis:.3}ms"),
        &json!({ "pong": true, "latency_ms": millis }),
    )?;
    Ok(Outcome::Done)
}

/// `cachette exists KEY`.
pub(crate) async fn exists(
    backend: &dyn Backend,
    args: &KeyArgs,
    out: Printer,
) -> anyhow::Result<Outcome> {
    let found = backend.exists(&args.key).await?;
    out.answer(found, &json!({ "key": args.key, "exists": found }))?;
    Ok(if found {
        Outcome::Done
    } else {
        Outcome::Absent
    })
}

/// `cachette mget KEY...`.
pub(crate) async fn mget(
    backend: &dyn Backend,
    args: &DelArgs,
    out: Printer,
) -> anyhow::Result<Outcome> {
    let keys: Vec<&str> = args.keys.iter().map(String::as_str).collect();
    let values = backend.get_many(&keys).await?;
    if out.is_json() {
        let entries: Vec<serde_json::Value> = keys
            .iter()
            .zip(&values)
            .map(|(key, value)| {
                json!({
                    "key": key,
                    "found": value.is_some(),
                    "value": value.as_deref().map(output::value_json),
                })
            })
            .collect();
        print_json(&json!({ "entries": entries }))?;
        return Ok(Outcome::Done);
    }
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
                out.note(&format!("(miss) {key}"));
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
    out: Printer,
) -> anyhow::Result<Outcome> {
    let tags: Vec<&str> = args.tags.iter().map(String::as_str).collect();
    let removed = backend.invalidate_tags(&tags).await?;
    out.answer(removed, &json!({ "invalidated": removed }))?;
    Ok(Outcome::Done)
}

/// `cachette purge-expired`.
pub(crate) async fn purge_expired(backend: &dyn Backend, out: Printer) -> anyhow::Result<Outcome> {
    let purged = backend.purge_expired().await?;
    out.answer(purged, &json!({ "purged": purged }))?;
    Ok(Outcome::Done)
}
