//! `cachette get`: a value as stored, or decoded as the typed `Cache`
//! wrote it: under `--namespace` the key is the cache's stored key
//! (`{namespace}:v{version}:{key}`, the version read from the backend as
//! the cache reads it), an envelope is shown as its header and payload, and
//! `--codec` (or the envelope's codec) decodes the payload for display.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context as _;
use bytes::Bytes;
use cachette::Backend;
use cachette::cache::{
    Cache, Codec as _, DEFAULT_MAX_DECOMPRESSED_SIZE, EnvelopeHeader, Json, MessagePack, RawBytes,
    StoredValue,
};
use clap::{Args, ValueEnum};
use serde_json::json;

use super::Outcome;
use crate::output::{self, Printer, print_line};

/// Arguments of `cachette get`.
#[derive(Debug, Args)]
#[command(after_help = "\
A UTF-8 value is printed followed by a newline; any other value is written
to stdout byte for byte. On a miss nothing is printed on stdout, `(miss)` is
printed on stderr and the exit status is 1.

What the typed cache wrote: with --namespace the key is looked up as the
cache stores it (`users:v3:42` for `--namespace users 42` at key version
3). A value in an envelope (soft TTL, fail-safe, compression, hashed keys)
is shown as its payload, with the envelope's header (codec, created,
deadlines, flags) on stderr. The payload is decoded by --codec, by default
the envelope's codec, else raw: json and msgpack print JSON; postcard is
not self-describing and prints hex. --raw writes the stored bytes as they
are, envelope included.

Examples:
  cachette --url redis://localhost get --namespace users 42
  cachette --url redis://localhost get --namespace users --codec json 42 --json")]
pub(crate) struct GetArgs {
    /// The key to read.
    key: String,
    /// Write the stored bytes as they are, without a trailing newline (no
    /// envelope or codec decoding).
    #[arg(long, conflicts_with = "codec")]
    raw: bool,
    /// Read the key of the typed cache with this namespace:
    /// `{namespace}:v{version}:{key}`, at the key version stored in the
    /// backend.
    #[arg(long, value_name = "NS")]
    namespace: Option<String>,
    /// How the payload was encoded [default: the envelope's codec, else raw].
    #[arg(long, value_enum)]
    codec: Option<CodecName>,
}

/// The codecs `get` decodes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum CodecName {
    /// Postcard (the typed cache's default): shown in hex, since it cannot
    /// be decoded without the type.
    Postcard,
    /// JSON, shown as JSON.
    Json,
    /// MessagePack, shown as JSON.
    Msgpack,
    /// The bytes as they are.
    Raw,
}

impl CodecName {
    /// The codec of an envelope's codec id; raw for a codec of the
    /// application's own.
    fn of(header: &EnvelopeHeader) -> Self {
        match header.codec_name {
            Some("json") => CodecName::Json,
            Some("msgpack") => CodecName::Msgpack,
            Some("postcard") => CodecName::Postcard,
            _ => CodecName::Raw,
        }
    }

    fn name(self) -> &'static str {
        match self {
            CodecName::Postcard => "postcard",
            CodecName::Json => "json",
            CodecName::Msgpack => "msgpack",
            CodecName::Raw => "raw",
        }
    }
}

/// `cachette get KEY`.
pub(crate) async fn get(
    backend: &Arc<dyn Backend>,
    args: &GetArgs,
    out: Printer,
) -> anyhow::Result<Outcome> {
    let stored_key = match &args.namespace {
        Some(namespace) => {
            // The cache reads the key version as every typed cache does.
            let cache = Cache::builder(Arc::clone(backend))
                .codec(RawBytes)
                .namespace(namespace.clone())
                .build()
                .await?;
            cache.stored_key(&args.key)?
        }
        None => args.key.clone(),
    };
    let Some(bytes) = backend.get(&stored_key).await? else {
        return miss(args, &stored_key, "(miss)", out);
    };
    if args.raw {
        if out.is_json() {
            output::print_json(&json!({
                "key": args.key,
                "stored_key": stored_key,
                "found": true,
                "codec": CodecName::Raw.name(),
                "value": output::value_json(&bytes),
            }))?;
        } else {
            output::print_bytes(&bytes)?;
        }
        return Ok(Outcome::Done);
    }
    let stored = StoredValue::parse(bytes, DEFAULT_MAX_DECOMPRESSED_SIZE).context(
        "the value starts with the envelope's magic bytes and is not a readable envelope \
         (--raw prints the stored bytes)",
    )?;
    if let Some(header) = &stored.envelope
        && header
            .original_key
            .as_deref()
            .is_some_and(|key| key != args.key)
    {
        return miss(
            args,
            &stored_key,
            "(miss: another key's entry under the same hash)",
            out,
        );
    }
    let codec = match (args.codec, &stored.envelope) {
        (Some(codec), _) => codec,
        (None, Some(header)) => CodecName::of(header),
        (None, None) => CodecName::Raw,
    };
    let negative = stored.envelope.as_ref().is_some_and(|h| h.negative);
    let value = (!negative)
        .then(|| decode(codec, &stored.payload))
        .transpose()?;
    if out.is_json() {
        output::print_json(&json!({
            "key": args.key,
            "stored_key": stored_key,
            "found": true,
            "codec": codec.name(),
            "value": value.as_ref().map(Shown::to_json),
            "envelope": stored.envelope.as_ref().map(envelope_json),
        }))?;
        return Ok(Outcome::Done);
    }
    if let Some(header) = &stored.envelope {
        describe(header, out);
    }
    match value {
        Some(Shown::Bytes(bytes)) => match std::str::from_utf8(&bytes) {
            Ok(text) => print_line(text)?,
            Err(_) => output::print_bytes(&bytes)?,
        },
        Some(Shown::Decoded(value)) => output::print_json(&value)?,
        Some(Shown::Hex(bytes)) => {
            out.note("(postcard is not self-describing: the payload in hex; decode it with the type that wrote it)");
            print_line(hex(&bytes))?;
        }
        None => out.note("(a cached \"not found\": no value)"),
    }
    Ok(Outcome::Done)
}

/// A miss: `note` on stderr, or the JSON answer; exit status 1.
fn miss(args: &GetArgs, stored_key: &str, note: &str, out: Printer) -> anyhow::Result<Outcome> {
    out.absent(
        note,
        &json!({ "key": args.key, "stored_key": stored_key, "found": false }),
    )?;
    Ok(Outcome::Absent)
}

/// A payload as it is shown.
#[derive(Debug)]
enum Shown {
    /// As stored (raw).
    Bytes(Bytes),
    /// Decoded by a self-describing codec.
    Decoded(serde_json::Value),
    /// Bytes that cannot be decoded without their type (postcard).
    Hex(Bytes),
}

impl Shown {
    fn to_json(&self) -> serde_json::Value {
        match self {
            Shown::Bytes(bytes) | Shown::Hex(bytes) => output::value_json(bytes),
            Shown::Decoded(value) => value.clone(),
        }
    }
}

/// Decodes a payload with `codec` (the library's codecs, into JSON).
fn decode(codec: CodecName, payload: &Bytes) -> anyhow::Result<Shown> {
    Ok(match codec {
        CodecName::Raw => Shown::Bytes(payload.clone()),
        CodecName::Postcard => Shown::Hex(payload.clone()),
        CodecName::Json => Shown::Decoded(Json.decode(payload)?),
        CodecName::Msgpack => Shown::Decoded(MessagePack.decode(payload)?),
    })
}

/// The bytes in lower-case hex.
fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, byte| {
            use std::fmt::Write as _;
            let _ = write!(out, "{byte:02x}");
            out
        })
}

/// A Unix time in ms as RFC 3339 (UTC, milliseconds). RFC 3339 ends at
/// year 9999 (humantime fails on later times, and `to_string` would panic
/// on that); a later time, which only a corrupt header holds, is shown as
/// its count of ms.
fn timestamp(unix_ms: u64) -> String {
    use std::fmt::Write as _;
    let mut text = String::new();
    let written = UNIX_EPOCH
        .checked_add(Duration::from_millis(unix_ms))
        .is_some_and(|time| write!(text, "{}", humantime::format_rfc3339_millis(time)).is_ok());
    if written {
        text
    } else {
        format!("{unix_ms} ms after the Unix epoch (past year 9999)")
    }
}

/// The flags of an envelope, by name.
fn flags(header: &EnvelopeHeader) -> Vec<&'static str> {
    [
        (header.compressed, "compressed"),
        (header.original_key.is_some(), "original key"),
        (header.negative, "not found"),
    ]
    .into_iter()
    .filter_map(|(set, name)| set.then_some(name))
    .collect()
}

/// Prints the envelope's header on stderr, one field a line.
fn describe(header: &EnvelopeHeader, out: Printer) {
    let codec = header.codec_name.unwrap_or("a codec of its own");
    out.note(&format!("envelope: codec {codec} (id {})", header.codec_id));
    out.note(&format!(
        "  created:       {}",
        timestamp(header.created_unix_ms)
    ));
    let deadline = |ms: Option<u64>, none: &str| ms.map_or_else(|| none.to_owned(), timestamp);
    out.note(&format!(
        "  stale after:   {}",
        deadline(header.soft_deadline_unix_ms, "never (no soft TTL)")
    ));
    out.note(&format!(
        "  expires after: {}",
        deadline(header.hard_deadline_unix_ms, "the backend's TTL")
    ));
    let flags = flags(header);
    if !flags.is_empty() {
        out.note(&format!("  flags:         {}", flags.join(", ")));
    }
    if let Some(key) = &header.original_key {
        out.note(&format!("  original key:  {key}"));
    }
}

/// An envelope's header in `--json` output (times in Unix ms, `null` for
/// none).
fn envelope_json(header: &EnvelopeHeader) -> serde_json::Value {
    json!({
        "codec_id": header.codec_id,
        "codec": header.codec_name,
        "created_unix_ms": header.created_unix_ms,
        "created": timestamp(header.created_unix_ms),
        "soft_deadline_unix_ms": header.soft_deadline_unix_ms,
        "hard_deadline_unix_ms": header.hard_deadline_unix_ms,
        "compressed": header.compressed,
        "original_key": header.original_key,
        "negative": header.negative,
        "flags": flags(header),
    })
}
