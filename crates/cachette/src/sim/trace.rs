//! Reading cache access traces: the formats of the Caffeine simulator's
//! trace set, compressed or not.
//!
//! A file is decompressed as a stream and parsed as the bytes arrive, so
//! only the keys are ever held in memory, never the decompressed file.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Write};
use std::path::Path;
use std::str::FromStr;

use crate::error::{Error, ErrorKind, Result};

use super::NAME;

/// The format of a trace file: how its requests are encoded, not how it is
/// compressed (that is told by the file name's extension).
///
/// Every request becomes one `u64` key; signed values are cast bit for bit
/// (an `int32` is first widened to `int64`, as Java widens it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TraceFormat {
    /// LIRS: text, one decimal key per line. Lines are trimmed; empty lines
    /// and `*` (a checkpoint marker) are skipped.
    Lirs,
    /// UCSD program memory traces: text lines `<type> 0x<address> <gap>`;
    /// the key is the hexadecimal address.
    Address,
    /// Like [`Address`](TraceFormat::Address) with two more decimal fields,
    /// the hit and miss penalties: `<type> 0x<address> <gap> <hit> <miss>`.
    /// The penalties are checked, not used.
    AddressPenalties,
    /// cache2k: binary, big-endian signed 32-bit keys.
    Cache2k,
    /// CloudPhysics (as distributed with LIRS2): binary, big-endian unsigned
    /// 32-bit keys.
    CloudPhysics,
    /// Corda: binary, big-endian signed 64-bit keys.
    Corda,
    /// Scarab Research: binary, big-endian signed 64-bit keys.
    Scarab,
    /// AdaptSize / webcachesim: text lines `<seq> <id> <size>`. The key is
    /// the pair (id, size), as in webcachesim and Caffeine, mixed into one
    /// `u64` by [`adapt_size_key`]. Sizes are not used as weights: every
    /// request has unit weight.
    AdaptSize,
}

impl TraceFormat {
    /// Every format, in a stable order.
    pub const ALL: [TraceFormat; 8] = [
        TraceFormat::Lirs,
        TraceFormat::Address,
        TraceFormat::AddressPenalties,
        TraceFormat::Cache2k,
        TraceFormat::CloudPhysics,
        TraceFormat::Corda,
        TraceFormat::Scarab,
        TraceFormat::AdaptSize,
    ];

    /// The format's name, as [`FromStr`] reads it: `lirs`, `address`,
    /// `address-penalties`, `cache2k`, `cloud-physics`, `corda`, `scarab`,
    /// `adapt-size`.
    pub fn as_str(self) -> &'static str {
        match self {
            TraceFormat::Lirs => "lirs",
            TraceFormat::Address => "address",
            TraceFormat::AddressPenalties => "address-penalties",
            TraceFormat::Cache2k => "cache2k",
            TraceFormat::CloudPhysics => "cloud-physics",
            TraceFormat::Corda => "corda",
            TraceFormat::Scarab => "scarab",
            TraceFormat::AdaptSize => "adapt-size",
        }
    }

    /// Guesses the format from the folders of `path`, as the trace set lays
    /// them out: `lirs/`, `address/penalties/`, `address/`, `cache2k/`,
    /// `cloud_physics/`, `corda/`, `scarab/`, `adapt_size/`. The folder
    /// nearest to the file decides; `None` if no folder is one of these.
    ///
    /// ```
    /// use std::path::Path;
    /// use cachette::sim::TraceFormat;
    ///
    /// let guess = TraceFormat::guess(Path::new("traces/address/penalties/gcc.trace.xz"));
    /// assert_eq!(guess, Some(TraceFormat::AddressPenalties));
    /// assert_eq!(TraceFormat::guess(Path::new("/tmp/gcc.trace.xz")), None);
    /// ```
    pub fn guess(path: &Path) -> Option<TraceFormat> {
        let folders: Vec<&str> = path
            .parent()?
            .components()
            .rev()
            .filter_map(|component| component.as_os_str().to_str())
            .collect();
        folders.iter().enumerate().find_map(|(i, folder)| {
            match *folder {
                "penalties" if folders.get(i + 1) == Some(&"address") => {
                    return Some(TraceFormat::AddressPenalties);
                }
                "penalties" => return None,
                _ => {}
            }
            folder.parse().ok()
        })
    }

    /// The size of a binary record in bytes; `None` for a text format.
    fn record_len(self) -> Option<usize> {
        match self {
            TraceFormat::Cache2k | TraceFormat::CloudPhysics => Some(4),
            TraceFormat::Corda | TraceFormat::Scarab => Some(8),
            TraceFormat::Lirs
            | TraceFormat::Address
            | TraceFormat::AddressPenalties
            | TraceFormat::AdaptSize => None,
        }
    }
}

impl fmt::Display for TraceFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TraceFormat {
    type Err = Error;

    /// Reads a format's name; case, `-` and `_` do not matter, so the
    /// folder names of the trace set (`cloud_physics`) parse too.
    fn from_str(s: &str) -> Result<Self> {
        let wanted = normalize(s);
        TraceFormat::ALL
            .into_iter()
            .find(|format| normalize(format.as_str()) == wanted)
            .ok_or_else(|| {
                let names: Vec<&str> = TraceFormat::ALL.iter().map(|f| f.as_str()).collect();
                Error::config(
                    NAME,
                    format!(
                        "unknown trace format `{s}`; expected one of {}",
                        names.join(", ")
                    ),
                )
            })
    }
}

fn normalize(name: &str) -> String {
    name.to_ascii_lowercase().replace(['-', '_'], "")
}

/// The key of an AdaptSize request: the pair (`id`, `size`) mixed into one
/// `u64`, so that the same id with another size is another object (as
/// webcachesim and Caffeine see it).
///
/// The mix is fixed and will not change between releases: each half goes
/// through the splitmix64 finalizer (a bijection) and the two are combined
/// with a rotation and a XOR, then finalized once more. Two different pairs
/// collide with a probability of about 2⁻⁶⁴; the 40,240 distinct pairs of the
/// sample trace have 40,240 distinct keys.
pub fn adapt_size_key(id: u64, size: u64) -> u64 {
    mix64(mix64(id) ^ mix64(size ^ 0x9e37_79b9_7f4a_7c15).rotate_left(29))
}

/// The splitmix64 finalizer: a bijection of `u64` that spreads every input
/// bit over every output bit.
pub(super) fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// How a file is compressed, told by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    Xz,
}

impl Compression {
    fn of(path: &Path) -> Compression {
        match path.extension().and_then(|ext| ext.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("gz") => Compression::Gzip,
            Some(ext) if ext.eq_ignore_ascii_case("xz") => Compression::Xz,
            _ => Compression::None,
        }
    }
}

/// Reads every request of a trace file as a key, in trace order.
///
/// The file is decompressed by its extension (`.gz`: gzip, `.xz`: xz;
/// anything else is read as it is) and parsed as a stream, per the rules of
/// [`TraceFormat`].
///
/// # Errors
///
/// - [`ErrorKind::Config`] if the file cannot be opened, read or
///   decompressed;
/// - [`ErrorKind::Serialization`] if a line or record is malformed; the
///   message names its line number (text formats) or byte offset in the
///   decompressed stream (binary formats).
///
/// ```no_run
/// use std::path::Path;
/// use cachette::sim::{TraceFormat, read_trace};
///
/// let keys = read_trace(Path::new("traces/lirs/loop.trace.gz"), TraceFormat::Lirs)?;
/// assert_eq!(keys.len(), 505_500);
/// # Ok::<(), cachette::Error>(())
/// ```
pub fn read_trace(path: &Path, format: TraceFormat) -> Result<Vec<u64>> {
    let context = || format!("{format} trace `{}`", path.display());
    let file = File::open(path).map_err(|err| {
        Error::config(NAME, "cannot open the file")
            .with_source(err)
            .context(context())
    })?;
    let mut parser = Parser::new(format);
    let copied = match Compression::of(path) {
        Compression::None => io::copy(&mut BufReader::new(file), &mut parser).map(drop),
        Compression::Gzip => io::copy(
            &mut flate2::read::MultiGzDecoder::new(BufReader::new(file)),
            &mut parser,
        )
        .map(drop),
        Compression::Xz => io::copy(
            &mut lzma_rust2::XzReader::new_mem_limit(
                BufReader::new(file),
                true,
                XZ_MEMORY_LIMIT_KIB,
            ),
            &mut parser,
        )
        .map(drop),
    };
    if let Some(err) = parser.error.take() {
        return Err(err.context(context()));
    }
    if let Err(err) = copied {
        let message = match Compression::of(path) {
            Compression::None => "cannot read the file",
            Compression::Gzip => "cannot decompress the file as gzip",
            Compression::Xz => "cannot decompress the file as xz",
        };
        return Err(Error::config(NAME, message)
            .with_source(err)
            .context(context()));
    }
    let keys = parser.finish().map_err(|err| err.context(context()))?;
    tracing::debug!(path = %path.display(), %format, requests = keys.len(), "read a trace");
    Ok(keys)
}

/// The most memory an xz trace may ask its decoder for (its dictionary):
/// 1 GiB, beyond `xz -9e`'s 64 MiB; a larger request is a decompression
/// error, not an allocation.
const XZ_MEMORY_LIMIT_KIB: u32 = 1024 * 1024;

/// Longest text line accepted. Longer means a binary file read as text.
const MAX_LINE: usize = 4096;

/// A push parser: decompressors write into it, it appends keys. The first
/// error is kept in `error` and stops the stream (the writer gets an
/// `io::Error` that only says so).
struct Parser {
    format: TraceFormat,
    keys: Vec<u64>,
    /// An incomplete line or record, carried over to the next write.
    pending: Vec<u8>,
    /// Decompressed bytes consumed so far, `pending` included.
    consumed: u64,
    /// Text lines completed so far.
    lines: u64,
    error: Option<Error>,
}

impl Write for Parser {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.error.is_some() {
            return Err(stopped());
        }
        let fed = match self.format.record_len() {
            Some(len) => {
                self.feed_records(buf, len);
                Ok(())
            }
            None => self.feed_lines(buf),
        };
        self.consumed += buf.len() as u64;
        match fed {
            Ok(()) => Ok(buf.len()),
            Err(err) => {
                self.error = Some(err);
                Err(stopped())
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn stopped() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "the trace is malformed")
}

impl Parser {
    fn new(format: TraceFormat) -> Self {
        Parser {
            format,
            keys: Vec::new(),
            pending: Vec::new(),
            consumed: 0,
            lines: 0,
            error: None,
        }
    }

    fn feed_records(&mut self, mut buf: &[u8], len: usize) {
        if !self.pending.is_empty() {
            let missing = (len - self.pending.len()).min(buf.len());
            self.pending.extend_from_slice(&buf[..missing]);
            buf = &buf[missing..];
            if self.pending.len() < len {
                return;
            }
            let key = decode_record(self.format, &self.pending);
            self.keys.push(key);
            self.pending.clear();
        }
        let records = buf.chunks_exact(len);
        self.pending.extend_from_slice(records.remainder());
        self.keys.reserve(records.len());
        let format = self.format;
        self.keys
            .extend(records.map(|record| decode_record(format, record)));
    }

    fn feed_lines(&mut self, mut buf: &[u8]) -> Result<()> {
        while let Some(end) = buf.iter().position(|&b| b == b'\n') {
            let (line, rest) = (&buf[..end], &buf[end + 1..]);
            buf = rest;
            if self.pending.is_empty() {
                self.parse_line(line)?;
            } else {
                let mut whole = std::mem::take(&mut self.pending);
                whole.extend_from_slice(line);
                let parsed = self.parse_line(&whole);
                whole.clear();
                self.pending = whole;
                parsed?;
            }
        }
        if self.pending.len() + buf.len() > MAX_LINE {
            return Err(self.malformed(format!(
                "line {} is longer than {MAX_LINE} bytes; is this a {} trace?",
                self.lines + 1,
                self.format
            )));
        }
        self.pending.extend_from_slice(buf);
        Ok(())
    }

    /// Ends the stream: a last line without a newline is parsed, a partial
    /// record is an error.
    fn finish(mut self) -> Result<Vec<u64>> {
        if !self.pending.is_empty() {
            match self.format.record_len() {
                Some(len) => {
                    let offset = self.consumed - self.pending.len() as u64;
                    return Err(self.malformed(format!(
                        "the last record at byte offset {offset} has {} bytes, not {len} \
                         (the decompressed size, {}, is not a multiple of {len})",
                        self.pending.len(),
                        self.consumed,
                    )));
                }
                None => {
                    let line = std::mem::take(&mut self.pending);
                    self.parse_line(&line)?;
                }
            }
        }
        Ok(self.keys)
    }

    fn parse_line(&mut self, line: &[u8]) -> Result<()> {
        self.lines += 1;
        let text = line.trim_ascii();
        // Text formats are ASCII; anything else cannot parse as a number.
        let text = std::str::from_utf8(text).map_err(|_| {
            self.malformed(format!(
                "line {} is not ASCII text; is this a {} trace?",
                self.lines, self.format
            ))
        })?;
        if text.is_empty() || (self.format == TraceFormat::Lirs && text == "*") {
            return Ok(());
        }
        match parse_text_key(self.format, text) {
            Some(key) => {
                self.keys.push(key);
                Ok(())
            }
            None => Err(self.malformed(format!(
                "line {}: expected `{}`, found `{}`",
                self.lines,
                line_form(self.format),
                excerpt(text)
            ))),
        }
    }

    fn malformed(&self, message: String) -> Error {
        Error::new(ErrorKind::Serialization, NAME, message)
    }
}

fn decode_record(format: TraceFormat, record: &[u8]) -> u64 {
    match (format, record) {
        (TraceFormat::Cache2k, &[a, b, c, d]) => i64::from(i32::from_be_bytes([a, b, c, d])) as u64,
        (TraceFormat::CloudPhysics, &[a, b, c, d]) => u64::from(u32::from_be_bytes([a, b, c, d])),
        (_, &[a, b, c, d, e, f, g, h]) => i64::from_be_bytes([a, b, c, d, e, f, g, h]) as u64,
        // `record_len` and the chunking make this unreachable.
        _ => 0,
    }
}

/// The key of one non-empty, trimmed text line; `None` if it is malformed.
fn parse_text_key(format: TraceFormat, line: &str) -> Option<u64> {
    let mut fields = line.split_ascii_whitespace();
    let key = match format {
        TraceFormat::Lirs => fields.next()?.parse::<i64>().ok()? as u64,
        TraceFormat::Address | TraceFormat::AddressPenalties => {
            let kind = fields.next()?;
            let address = fields.next()?.strip_prefix("0x")?;
            fields.next()?.parse::<u64>().ok()?;
            if format == TraceFormat::AddressPenalties {
                fields.next()?.parse::<f64>().ok()?;
                fields.next()?.parse::<f64>().ok()?;
            }
            if !matches!(kind, "l" | "s") || address.is_empty() {
                return None;
            }
            u64::from_str_radix(address, 16).ok()?
        }
        TraceFormat::AdaptSize => {
            fields.next()?.parse::<u64>().ok()?;
            let id = fields.next()?.parse::<i64>().ok()? as u64;
            let size = fields.next()?.parse::<u64>().ok()?;
            adapt_size_key(id, size)
        }
        TraceFormat::Cache2k
        | TraceFormat::CloudPhysics
        | TraceFormat::Corda
        | TraceFormat::Scarab => {
            return None;
        }
    };
    fields.next().is_none().then_some(key)
}

/// What a line of a text format looks like, for error messages.
fn line_form(format: TraceFormat) -> &'static str {
    match format {
        TraceFormat::Lirs => "<decimal key>",
        TraceFormat::Address => "<l|s> 0x<hex address> <gap>",
        TraceFormat::AddressPenalties => "<l|s> 0x<hex address> <gap> <hit penalty> <miss penalty>",
        TraceFormat::AdaptSize => "<seq> <id> <size>",
        _ => "a binary record",
    }
}

/// The start of a line, short enough for an error message.
fn excerpt(text: &str) -> String {
    const MAX: usize = 60;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    }
}
