//! Entry points for the fuzz targets of the `fuzz/` crate and for the test
//! that replays their seed corpus (`tests/fuzz_corpus.rs`): one function
//! per decoder that reads outside input, taking arbitrary bytes.
//!
//! Not a public API: compiled only with the `fuzzing` feature, hidden from
//! the docs, and free to change with the decoders it reaches.
//!
//! Every entry point must return normally whatever its input. A panic is a
//! finding: either the decoder panicked (input must be rejected with an
//! error, never a panic), or a property asserted here failed (what a
//! decoder accepts re-encodes to the same thing, what an encoder writes
//! decodes).

use std::fmt::Write as _;

/// A fuzz target: its name (also the folder of its corpus under
/// `fuzz/corpus/`) and its entry point.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// The name `scripts/fuzz` takes.
    pub name: &'static str,
    /// What it feeds the input to.
    pub about: &'static str,
    /// Runs one input.
    pub run: fn(&[u8]),
}

/// Every target compiled in with the features of this build.
pub fn targets() -> Vec<Target> {
    let all: [Option<Target>; 9] = [
        Some(target(
            "envelope",
            "the typed cache's value envelope",
            envelope,
        )),
        file_entry_target(),
        redb_record_target(),
        tiered_message_target(),
        Some(target(
            "url",
            "backend URLs, parsed without connecting",
            url,
        )),
        Some(target(
            "config",
            "TOML configuration and its environment overrides",
            config,
        )),
        Some(target("glob", "the key-pattern matcher", glob)),
        sim_trace_target(),
        memcached_reply_target(),
    ];
    all.into_iter().flatten().collect()
}

/// The target named `name`, if it is compiled in.
pub fn find(name: &str) -> Option<Target> {
    targets().into_iter().find(|target| target.name == name)
}

fn target(name: &'static str, about: &'static str, run: fn(&[u8])) -> Target {
    Target { name, about, run }
}

/// Keeps a value alive and looked at, so the decoder's work is not
/// optimised away and every field's `Debug` runs.
fn consume<T: std::fmt::Debug>(value: &T) {
    let mut sink = String::new();
    let _ = write!(sink, "{value:?}");
    std::hint::black_box(sink);
}

/// Splits `data` at its first NUL: a two-part input for targets that take
/// two strings.
fn split_nul(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[]),
    }
}

/// The value envelope of the typed cache: decoding never panics, and an
/// envelope it accepts re-encodes (uncompressed, and compressed when the
/// `lz4` feature is on) to one that decodes to the same header and payload.
pub fn envelope(data: &[u8]) {
    use crate::cache::envelope::{decode, encode};

    let bytes = bytes::Bytes::copy_from_slice(data);
    let decoded = decode(&bytes, crate::cache::DEFAULT_MAX_DECOMPRESSED_SIZE);
    consume(&decoded);
    #[cfg(feature = "memory")]
    {
        // A live value the cache must serve: no deadline, not a cached
        // "not found", and written under this key.
        let live = decoded.as_ref().ok().filter(|envelope| {
            let meta = &envelope.meta;
            !meta.negative
                && meta.hard_deadline == 0
                && meta.original_key.as_deref().is_none_or(|key| key == "k")
        });
        envelope_through_cache(bytes.clone(), live.map(|envelope| &envelope.payload));
    }
    let Ok(first) = decoded else {
        return;
    };
    for compress_above in [None, Some(0)] {
        let again = encode(&first.meta, &first.payload, compress_above);
        match decode(&again, crate::cache::DEFAULT_MAX_DECOMPRESSED_SIZE) {
            Ok(second) => {
                assert_eq!(
                    second.meta, first.meta,
                    "the header changed on a round trip"
                );
                assert_eq!(
                    second.payload, first.payload,
                    "the payload changed on a round trip"
                );
            }
            Err(err) => panic!("an envelope the encoder wrote does not decode: {err}"),
        }
    }
}

/// The typed cache's read path over a stored value: the memory engine
/// holds the input under a key, and the cache reads it as a typed value and
/// as bytes (a miss, a value, or an error, never a panic). The memory
/// engine answers at once, so no runtime is needed. `live` is the payload
/// of an envelope the cache must serve as it is.
#[cfg(feature = "memory")]
fn envelope_through_cache(bytes: bytes::Bytes, live: Option<&bytes::Bytes>) {
    use std::sync::Arc;

    use futures_util::FutureExt;

    use crate::backend::{Backend, SetOptions};
    use crate::backends::memory::MemoryBackend;
    use crate::cache::Cache;

    /// Where the cache keeps its key `k`.
    const STORED: &str = "fuzz:v0:k";

    fn open() -> Option<(Arc<MemoryBackend>, Cache)> {
        let backend = Arc::new(MemoryBackend::builder().build().ok()?);
        let cache = Cache::builder(backend.clone())
            .namespace("fuzz")
            .fail_safe(std::time::Duration::from_secs(60))
            .build()
            .now_or_never()?
            .ok()?;
        Some((backend, cache))
    }

    thread_local! {
        static CACHE: Option<(Arc<MemoryBackend>, Cache)> = open();
    }
    CACHE.with(|pair| {
        let (backend, cache) = pair.as_ref().expect("the memory engine answers at once");
        let stored = backend
            .set(STORED, bytes, &SetOptions::new())
            .now_or_never();
        assert!(
            matches!(stored, Some(Ok(_))),
            "the memory engine stores at once"
        );
        consume(
            &cache
                .get::<(u64, String, Option<Vec<u8>>)>("k")
                .now_or_never(),
        );
        match cache.get_bytes("k").now_or_never() {
            Some(Ok(read)) => {
                if let Some(payload) = live {
                    assert_eq!(read.as_ref(), Some(payload), "the cache serves the payload");
                }
            }
            Some(Err(err)) => consume(&err),
            None => panic!("the memory engine reads at once"),
        }
    });
}

#[cfg(feature = "file")]
fn file_entry_target() -> Option<Target> {
    Some(target(
        "file_entry",
        "the file backend's entry files",
        file_entry,
    ))
}

#[cfg(not(feature = "file"))]
fn file_entry_target() -> Option<Target> {
    None
}

/// The file backend's entry format. The input is decoded as a whole file,
/// as a header read alone (the first bytes of a longer file), and again
/// with both checksums made right, so that the fuzzer reaches the fields
/// behind them. Then the rest of the input, cut into a key, tags and a
/// value, is encoded as an entry, which must decode.
#[cfg(feature = "file")]
pub fn file_entry(data: &[u8]) {
    use crate::backends::file::format::{decode_entry, decode_header, encode_header, xxh64};

    consume(&decode_entry(data));
    let half = data.len() / 2;
    consume(&decode_header(&data[..half], data.len() as u64));

    // The same bytes with a value checksum and a header checksum that match.
    let mut fixed = data.to_vec();
    if fixed.len() >= 56 {
        let header_len = u32::from_le_bytes([fixed[28], fixed[29], fixed[30], fixed[31]]) as usize;
        if (24..=fixed.len()).contains(&header_len) {
            let value_sum = xxh64(&fixed[header_len..], 0);
            fixed[16..24].copy_from_slice(&value_sum.to_le_bytes());
            let header_sum = xxh64(&fixed[24..header_len], 0);
            fixed[8..16].copy_from_slice(&header_sum.to_le_bytes());
        }
        consume(&decode_entry(&fixed));
    }

    // An entry written by the encoder always reads back.
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\n');
    let key = parts.next().unwrap_or_default();
    let value = parts.next_back().unwrap_or_default().as_bytes();
    let tags: Vec<String> = parts.map(str::to_owned).collect();
    let expires_at = data.len() as u64 * 1_000;
    let mut file = encode_header(key, &tags, expires_at, value.len() as u64, xxh64(value, 0));
    file.extend_from_slice(value);
    if let Err(err) = decode_entry(&file) {
        panic!("an entry the encoder wrote does not decode: {err}");
    }
}

#[cfg(feature = "redb")]
fn redb_record_target() -> Option<Target> {
    Some(target(
        "redb_record",
        "the redb backend's stored records",
        redb_record,
    ))
}

#[cfg(not(feature = "redb"))]
fn redb_record_target() -> Option<Target> {
    None
}

/// The header in front of every value the redb backend stores: decoding
/// never panics, and a header it accepts re-encodes to the same bytes.
#[cfg(feature = "redb")]
pub fn redb_record(data: &[u8]) {
    use crate::backends::redb::store::{HEADER_LEN, Header};

    let Some(header) = Header::decode(data) else {
        assert!(data.len() < HEADER_LEN, "a record long enough has a header");
        return;
    };
    consume(&header);
    assert_eq!(
        &header.encode()[..],
        &data[..HEADER_LEN],
        "the header changed on a round trip"
    );
}

#[cfg(all(feature = "tiered", feature = "redis"))]
fn tiered_message_target() -> Option<Target> {
    Some(target(
        "tiered_message",
        "the tiered backend's invalidation messages",
        tiered_message,
    ))
}

#[cfg(not(all(feature = "tiered", feature = "redis")))]
fn tiered_message_target() -> Option<Target> {
    None
}

/// A message of the tiered backend's invalidation channel, as any
/// publisher on the channel may send it: decoding never panics.
#[cfg(all(feature = "tiered", feature = "redis"))]
pub fn tiered_message(data: &[u8]) {
    consume(&crate::backends::tiered::message::decode(data));
}

#[cfg(feature = "memcached")]
fn memcached_reply_target() -> Option<Target> {
    Some(target(
        "memcached_reply",
        "memcached's meta-protocol replies, and the entry header in their values",
        memcached_reply,
    ))
}

#[cfg(not(feature = "memcached"))]
fn memcached_reply_target() -> Option<Target> {
    None
}

/// Bytes a memcached server (or anything on its port) sends: the reply
/// parser never panics, always makes progress when it answers, never
/// returns a data block over its limit, and a value with client flags
/// goes through the entry decoder, which never panics either.
#[cfg(feature = "memcached")]
pub fn memcached_reply(data: &[u8]) {
    use crate::backends::memcached::{entry, proto};
    const LIMIT: usize = 256;
    let mut buffer = bytes::BytesMut::from(data);
    loop {
        let before = buffer.len();
        match proto::parse(&mut buffer, LIMIT) {
            Ok(Some(response)) => {
                assert!(buffer.len() < before, "a reply parsed from no bytes");
                if let proto::Response::Meta(meta) = &response {
                    assert!(meta.value.as_ref().is_none_or(|v| v.len() <= LIMIT));
                    if let (Some(flags), Some(value)) = (meta.client_flags, &meta.value) {
                        consume(&entry::decode(flags, value.clone()));
                    }
                }
                consume(&response);
            }
            Ok(None) | Err(_) => return,
        }
    }
}

/// A backend URL, parsed as [`open`](crate::open) parses it but without
/// connecting, creating a directory or opening a file: the builder of its
/// scheme is made and dropped. Also [`redact`](crate::params::redact).
pub fn url(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    consume(&crate::params::redact(text));
    consume(&crate::params::parse_byte_size(text));
    let Ok(url) = crate::params::parse_url(text, "fuzz") else {
        return;
    };
    match url.scheme() {
        #[cfg(feature = "memory")]
        "memory" => consume(&crate::backends::memory::url::builder(&url).is_ok()),
        #[cfg(feature = "file")]
        "file" => consume(&crate::backends::file::url::builder(&url).is_ok()),
        #[cfg(feature = "redb")]
        "redb" => consume(&crate::backends::redb::url::builder(&url).is_ok()),
        #[cfg(feature = "redis")]
        "redis" | "rediss" | "redis+unix" => {
            use crate::backends::redis::url::{standalone, standalone_params};
            use crate::params::UrlParams;

            let params = UrlParams::parse(&url, "fuzz", standalone_params(url.scheme()));
            if let Ok(mut params) = params {
                consume(&standalone(&url, &mut params).is_ok());
            }
        }
        #[cfg(feature = "redis")]
        "redis+cluster" => consume(&crate::backends::redis::url::cluster_builder(text).is_ok()),
        #[cfg(feature = "redis")]
        "redis+sentinel" => consume(&crate::backends::redis::url::sentinel_builder(text).is_ok()),
        #[cfg(feature = "memcached")]
        "memcached" | "memcached+tls" => {
            consume(&crate::backends::memcached::url::tcp_builder(text).is_ok());
        }
        #[cfg(feature = "memcached")]
        "memcached+unix" => {
            consume(&crate::backends::memcached::url::unix_builder(text).is_ok());
        }
        #[cfg(feature = "near")]
        "near+redis" | "near+rediss" => {
            consume(&crate::backends::near::url::builder(&url).is_ok());
        }
        _ => {}
    }
}

/// The configuration of a cache manager: the input up to its first NUL is
/// the TOML, each line after it a `NAME=value` environment variable applied
/// over it.
pub fn config(data: &[u8]) {
    use crate::manager::CacheManagerConfig;

    let (toml, env) = split_nul(data);
    let Ok(toml) = std::str::from_utf8(toml) else {
        return;
    };
    let env = String::from_utf8_lossy(env);
    let vars: Vec<(&str, &str)> = env
        .lines()
        .map(|line| line.split_once('=').unwrap_or((line, "")))
        .collect();
    let parsed = CacheManagerConfig::from_toml_str(toml);
    consume(&parsed);
    let base = parsed.unwrap_or_default();
    consume(&base.apply_env_vars(vars));
}

/// The glob matcher: the input up to its first NUL is a pattern, the rest a
/// key. Matching never panics; an escaped literal matches itself and is its
/// own literal prefix; a key that matches starts with the pattern's literal
/// prefix (backends narrow their scans by it).
pub fn glob(data: &[u8]) {
    use crate::glob::{escape, literal_prefix, matches};

    let (pattern, text) = split_nul(data);
    let pattern = String::from_utf8_lossy(pattern);
    let text = String::from_utf8_lossy(text);
    let prefix = literal_prefix(&pattern);
    if matches(&pattern, &text) {
        assert!(
            text.starts_with(&prefix),
            "{text:?} matches {pattern:?} but lacks its literal prefix {prefix:?}"
        );
    }
    let escaped = escape(&text);
    assert!(
        matches(&escaped, &text),
        "{escaped:?} does not match {text:?}"
    );
    assert_eq!(
        literal_prefix(&escaped),
        *text,
        "the literal prefix of {escaped:?}"
    );
}

#[cfg(feature = "sim")]
fn sim_trace_target() -> Option<Target> {
    Some(target(
        "sim_trace",
        "the simulator's trace readers",
        sim_trace,
    ))
}

#[cfg(not(feature = "sim"))]
fn sim_trace_target() -> Option<Target> {
    None
}

/// A trace file of the simulator. The first byte picks the format (its low
/// three bits) and how the rest is stored (the next two): as it is, as a
/// `.gz` or `.xz` file (so the decompressors read it), or gzip-compressed
/// here first (so the parsers get the decompressor's chunks). The file is
/// written under the temporary directory, named by the process id.
#[cfg(feature = "sim")]
pub fn sim_trace(data: &[u8]) {
    use std::io::Write;

    use crate::sim::{TraceFormat, read_trace};

    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let format = TraceFormat::ALL[usize::from(pick & 0b111)];
    let (extension, contents) = match (pick >> 3) & 0b11 {
        0 => ("trace", body.to_vec()),
        1 => ("gz", body.to_vec()),
        2 => ("xz", body.to_vec()),
        _ => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            let gzipped = encoder.write_all(body).and_then(|()| encoder.finish());
            let Ok(gzipped) = gzipped else {
                return;
            };
            ("gz", gzipped)
        }
    };
    let path = std::env::temp_dir().join(format!(
        "cachette-fuzz-{}-{:?}.{extension}",
        std::process::id(),
        std::thread::current().id()
    ));
    if std::fs::write(&path, contents).is_ok() {
        consume(&read_trace(&path, format));
    }
    let _ = std::fs::remove_file(&path);
}
