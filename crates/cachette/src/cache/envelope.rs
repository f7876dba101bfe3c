//! The envelope: a small binary header in front of a stored value, written
//! only when the cache needs it. The layout is documented in the module
//! docs of [`cache`](super).

use bytes::{BufMut, Bytes, BytesMut};

/// The first four bytes of every envelope: `0xCC 'c' 'h' 't'`. `0xCC`
/// followed by an ASCII letter is not UTF-8, so JSON text never starts so.
pub(super) const MAGIC: [u8; 4] = [0xCC, b'c', b'h', b't'];

/// The envelope format this code writes and reads.
pub(super) const FORMAT_VERSION: u8 = 1;

pub(super) const FLAG_COMPRESSED: u8 = 0b001;
const FLAG_ORIGINAL_KEY: u8 = 0b010;
const FLAG_NEGATIVE: u8 = 0b100;
const KNOWN_FLAGS: u8 = FLAG_COMPRESSED | FLAG_ORIGINAL_KEY | FLAG_NEGATIVE;

/// magic, version, codec, flags, created, soft deadline, hard deadline.
const FIXED_HEADER: usize = 4 + 1 + 1 + 1 + 8 + 8 + 8;

/// LZ4 never expands data by more than this factor, so a larger declared
/// size is corrupt (and must not be allocated).
#[cfg(feature = "lz4")]
const MAX_LZ4_RATIO: usize = 255;

/// The header fields of an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Meta {
    /// The codec that encoded the payload.
    pub(super) codec: u8,
    /// When the value was written, Unix ms.
    pub(super) created: u64,
    /// After this, the value is stale (served, and refreshed); 0 = never.
    pub(super) soft_deadline: u64,
    /// After this, the value is expired and only fail-safe may serve it;
    /// 0 = when the backend drops it.
    pub(crate) hard_deadline: u64,
    /// The key as the caller wrote it, for hashed keys.
    pub(crate) original_key: Option<String>,
    /// A cached "not found" answer of a loader.
    pub(crate) negative: bool,
}

/// A parsed envelope with its payload, decompressed.
#[derive(Debug, Clone)]
pub(crate) struct Envelope {
    pub(crate) meta: Meta,
    pub(crate) payload: Bytes,
}

/// Why bytes that start with the magic are not a readable envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EnvelopeError {
    /// Another format version (written by a newer cachette).
    UnknownVersion(u8),
    /// Truncated, unknown flags, a bad length, or a payload that does not
    /// decompress.
    Corrupt(&'static str),
    /// Compressed with LZ4, and this build has no `lz4` feature.
    #[cfg_attr(feature = "lz4", allow(dead_code))]
    NeedsLz4,
}

impl std::fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnvelopeError::UnknownVersion(v) => write!(f, "unknown envelope format version {v}"),
            EnvelopeError::Corrupt(why) => write!(f, "corrupt envelope: {why}"),
            EnvelopeError::NeedsLz4 => {
                f.write_str("the value is LZ4-compressed and the `lz4` feature is off")
            }
        }
    }
}

/// Whether stored bytes claim to be an envelope.
#[inline]
pub(super) fn is_envelope(bytes: &[u8]) -> bool {
    bytes.starts_with(&MAGIC)
}

/// Writes an envelope around `payload`, compressing it with LZ4 first
/// when `compress_above` is set, the payload is at least that long, and
/// compression makes it smaller.
pub(crate) fn encode(meta: &Meta, payload: &[u8], compress_above: Option<usize>) -> Bytes {
    let compressed = compress(payload, compress_above);
    let mut flags = 0;
    let mut size = FIXED_HEADER;
    if compressed.is_some() {
        flags |= FLAG_COMPRESSED;
        size += 4;
    }
    if let Some(key) = &meta.original_key {
        flags |= FLAG_ORIGINAL_KEY;
        size += 4 + key.len();
    }
    if meta.negative {
        flags |= FLAG_NEGATIVE;
    }
    let body: &[u8] = compressed.as_deref().unwrap_or(payload);
    let mut out = BytesMut::with_capacity(size + body.len());
    out.put_slice(&MAGIC);
    out.put_u8(FORMAT_VERSION);
    out.put_u8(meta.codec);
    out.put_u8(flags);
    out.put_u64_le(meta.created);
    out.put_u64_le(meta.soft_deadline);
    out.put_u64_le(meta.hard_deadline);
    if compressed.is_some() {
        // Payloads over 4 GiB are never compressed (see `compress`).
        out.put_u32_le(u32::try_from(payload.len()).unwrap_or(u32::MAX));
    }
    if let Some(key) = &meta.original_key {
        out.put_u32_le(u32::try_from(key.len()).unwrap_or(u32::MAX));
        out.put_slice(key.as_bytes());
    }
    out.put_slice(body);
    out.freeze()
}

#[cfg(feature = "lz4")]
fn compress(payload: &[u8], compress_above: Option<usize>) -> Option<Vec<u8>> {
    let threshold = compress_above?;
    if payload.len() < threshold || u32::try_from(payload.len()).is_err() {
        return None;
    }
    let compressed = lz4_flex::block::compress(payload);
    (compressed.len() < payload.len()).then_some(compressed)
}

#[cfg(not(feature = "lz4"))]
fn compress(_payload: &[u8], _compress_above: Option<usize>) -> Option<Vec<u8>> {
    None
}

/// A cursor over the header that reports truncation as corruption.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EnvelopeError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or(EnvelopeError::Corrupt("truncated header"))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, EnvelopeError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, EnvelopeError> {
        let mut buf = [0; 4];
        buf.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(buf))
    }

    fn u64(&mut self) -> Result<u64, EnvelopeError> {
        let mut buf = [0; 8];
        buf.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(buf))
    }
}

/// Parses bytes that start with [`MAGIC`]. A compressed payload declaring
/// more than `max_decompressed` bytes is corrupt, and never allocated.
pub(crate) fn decode(bytes: &Bytes, max_decompressed: usize) -> Result<Envelope, EnvelopeError> {
    let mut reader = Reader {
        bytes: bytes.as_ref(),
        at: 0,
    };
    if reader.take(4)? != MAGIC {
        return Err(EnvelopeError::Corrupt("no magic"));
    }
    let version = reader.u8()?;
    if version != FORMAT_VERSION {
        return Err(EnvelopeError::UnknownVersion(version));
    }
    let codec = reader.u8()?;
    let flags = reader.u8()?;
    if flags & !KNOWN_FLAGS != 0 {
        return Err(EnvelopeError::Corrupt("unknown flags"));
    }
    let created = reader.u64()?;
    let soft_deadline = reader.u64()?;
    let hard_deadline = reader.u64()?;
    let uncompressed_len = if flags & FLAG_COMPRESSED != 0 {
        Some(reader.u32()? as usize)
    } else {
        None
    };
    let original_key = if flags & FLAG_ORIGINAL_KEY != 0 {
        let len = reader.u32()? as usize;
        let key = std::str::from_utf8(reader.take(len)?)
            .map_err(|_| EnvelopeError::Corrupt("the original key is not UTF-8"))?;
        Some(key.to_owned())
    } else {
        None
    };
    let negative = flags & FLAG_NEGATIVE != 0;
    let body = bytes.slice(reader.at..);
    if negative && !body.is_empty() {
        return Err(EnvelopeError::Corrupt("a not-found marker with a payload"));
    }
    let payload = match uncompressed_len {
        None => body,
        Some(len) => decompress(&body, len, max_decompressed)?,
    };
    Ok(Envelope {
        meta: Meta {
            codec,
            created,
            soft_deadline,
            hard_deadline,
            original_key,
            negative,
        },
        payload,
    })
}

#[cfg(feature = "lz4")]
fn decompress(body: &[u8], len: usize, max: usize) -> Result<Bytes, EnvelopeError> {
    if len > max {
        return Err(EnvelopeError::Corrupt(
            "the declared uncompressed size is over this cache's max_decompressed_size",
        ));
    }
    if len > body.len().saturating_mul(MAX_LZ4_RATIO).saturating_add(64) {
        return Err(EnvelopeError::Corrupt(
            "the declared uncompressed size is impossible",
        ));
    }
    match lz4_flex::block::decompress(body, len) {
        Ok(out) if out.len() == len => Ok(Bytes::from(out)),
        Ok(_) => Err(EnvelopeError::Corrupt(
            "the payload decompressed to another size",
        )),
        Err(_) => Err(EnvelopeError::Corrupt("the payload does not decompress")),
    }
}

#[cfg(not(feature = "lz4"))]
fn decompress(_body: &[u8], _len: usize, _max: usize) -> Result<Bytes, EnvelopeError> {
    Err(EnvelopeError::NeedsLz4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        Meta {
            codec: 3,
            created: 1_000,
            soft_deadline: 2_000,
            hard_deadline: 0,
            original_key: Some("a long key".into()),
            negative: false,
        }
    }

    #[test]
    fn round_trips_every_field() {
        let bytes = encode(&meta(), b"payload", None);
        assert!(is_envelope(&bytes));
        let envelope = decode(&bytes, usize::MAX).unwrap();
        assert_eq!(envelope.meta, meta());
        assert_eq!(&envelope.payload[..], b"payload");
    }

    #[test]
    fn every_truncation_is_corrupt_not_a_panic() {
        let bytes = encode(&meta(), b"payload", None);
        let header_end = bytes.len() - b"payload".len();
        for cut in 4..header_end {
            let cut = bytes.slice(..cut);
            assert!(matches!(
                decode(&cut, usize::MAX),
                Err(EnvelopeError::Corrupt(_))
            ));
        }
    }

    #[test]
    fn unknown_version_and_flags_are_rejected() {
        let mut bytes = encode(&meta(), b"x", None).to_vec();
        bytes[4] = 9;
        assert_eq!(
            decode(&Bytes::from(bytes.clone()), usize::MAX).unwrap_err(),
            EnvelopeError::UnknownVersion(9)
        );
        bytes[4] = FORMAT_VERSION;
        bytes[6] |= 0b1000_0000;
        assert!(matches!(
            decode(&Bytes::from(bytes), usize::MAX),
            Err(EnvelopeError::Corrupt(_))
        ));
    }

    #[cfg(feature = "lz4")]
    #[test]
    fn compression_round_trips_and_rejects_absurd_sizes() {
        let payload = vec![b'a'; 10_000];
        let bytes = encode(&meta(), &payload, Some(100));
        assert!(bytes.len() < 1_000);
        assert_eq!(
            &decode(&bytes, usize::MAX).unwrap().payload[..],
            &payload[..]
        );

        assert!(matches!(
            decode(&bytes, 9_999),
            Err(EnvelopeError::Corrupt(_))
        ));
        let mut forged = bytes.to_vec();
        forged[FIXED_HEADER..FIXED_HEADER + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode(&Bytes::from(forged), usize::MAX),
            Err(EnvelopeError::Corrupt(_))
        ));
    }
}
