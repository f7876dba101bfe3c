//! The on-disk format of one entry, and the two hashes it relies on: the
//! file name (a 128-bit hash of the key) and the checksums (XXH64).
//!
//! Every integer is little-endian. An entry file is a header followed by
//! the value:
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0  | 8 | magic `CACHETTE` |
//! | 8  | 8 | header checksum: XXH64 (seed 0) of bytes `24..header_len` |
//! | 16 | 8 | value checksum: XXH64 (seed 0) of the value |
//! | 24 | 2 | format version (1) |
//! | 26 | 2 | flags (0; reserved) |
//! | 28 | 4 | header length: bytes before the value |
//! | 32 | 8 | absolute expiry in Unix milliseconds (0 = never) |
//! | 40 | 8 | value length |
//! | 48 | 4 | key length |
//! | 52 | 4 | tag count |
//! | 56 | … | the key (UTF-8), then each tag as a 4-byte length and its UTF-8 |
//! | header length | value length | the value |
//!
//! A file is accepted only if every field agrees: the magic, the version,
//! the lengths (the file is exactly header + value long, so a truncated or
//! extended file is rejected), both checksums and UTF-8 key and tags.

use std::fmt;

/// The first eight bytes of every entry file.
pub(super) const MAGIC: [u8; 8] = *b"CACHETTE";
/// The version of this layout, also written in the directory's marker.
pub(super) const FORMAT_VERSION: u16 = 1;
/// The length of the fixed part of the header.
pub(super) const FIXED_LEN: usize = 56;
/// The longest header accepted (key and tags), so that a garbled length
/// field never makes a reader allocate gigabytes.
pub(super) const MAX_HEADER_LEN: usize = 16 << 20;

/// The seeds of the two halves of the key hash. Fixed forever: they name
/// the files of every cache written so far.
const KEY_SEED_HIGH: u64 = 0x6361_6368_6574_7465; // "cachette"
const KEY_SEED_LOW: u64 = 0x6b65_795f_6e61_6d65; // "key_name"

const PRIME_1: u64 = 0x9E37_79B1_85EB_CA87;
const PRIME_2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const PRIME_3: u64 = 0x1656_67B1_9E37_79F9;
const PRIME_4: u64 = 0x85EB_CA77_C2B2_AE63;
const PRIME_5: u64 = 0x27D4_EB2F_1656_67C5;

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn read_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn xxh64_round(acc: u64, input: u64) -> u64 {
    acc.wrapping_add(input.wrapping_mul(PRIME_2))
        .rotate_left(31)
        .wrapping_mul(PRIME_1)
}

fn xxh64_merge(acc: u64, lane: u64) -> u64 {
    (acc ^ xxh64_round(0, lane))
        .wrapping_mul(PRIME_1)
        .wrapping_add(PRIME_4)
}

/// XXH64 of `data` with `seed`: a stable, specified 64-bit hash (the
/// checksum of entries and the halves of the key hash).
pub(crate) fn xxh64(data: &[u8], seed: u64) -> u64 {
    let len = data.len();
    let mut at = 0;
    let mut hash = if len >= 32 {
        let mut lanes = [
            seed.wrapping_add(PRIME_1).wrapping_add(PRIME_2),
            seed.wrapping_add(PRIME_2),
            seed,
            seed.wrapping_sub(PRIME_1),
        ];
        while at + 32 <= len {
            for (i, lane) in lanes.iter_mut().enumerate() {
                *lane = xxh64_round(*lane, read_u64(data, at + i * 8));
            }
            at += 32;
        }
        let mut hash = lanes[0]
            .rotate_left(1)
            .wrapping_add(lanes[1].rotate_left(7))
            .wrapping_add(lanes[2].rotate_left(12))
            .wrapping_add(lanes[3].rotate_left(18));
        for lane in lanes {
            hash = xxh64_merge(hash, lane);
        }
        hash
    } else {
        seed.wrapping_add(PRIME_5)
    };
    hash = hash.wrapping_add(len as u64);
    while at + 8 <= len {
        hash ^= xxh64_round(0, read_u64(data, at));
        hash = hash
            .rotate_left(27)
            .wrapping_mul(PRIME_1)
            .wrapping_add(PRIME_4);
        at += 8;
    }
    if at + 4 <= len {
        hash ^= u64::from(read_u32(data, at)).wrapping_mul(PRIME_1);
        hash = hash
            .rotate_left(23)
            .wrapping_mul(PRIME_2)
            .wrapping_add(PRIME_3);
        at += 4;
    }
    for &byte in &data[at..] {
        hash ^= u64::from(byte).wrapping_mul(PRIME_5);
        hash = hash.rotate_left(11).wrapping_mul(PRIME_1);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(PRIME_2);
    hash ^= hash >> 29;
    hash = hash.wrapping_mul(PRIME_3);
    hash ^ (hash >> 32)
}

/// The 128-bit hash that names a key's file: two XXH64 of the key with
/// fixed seeds. The same in every process and every version.
pub(super) fn key_hash(key: &str) -> u128 {
    let high = xxh64(key.as_bytes(), KEY_SEED_HIGH);
    let low = xxh64(key.as_bytes(), KEY_SEED_LOW);
    (u128::from(high) << 64) | u128::from(low)
}

/// Why a file is not a valid entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Corruption {
    /// Shorter than the fixed header.
    TooShort,
    /// Does not start with the magic.
    BadMagic,
    /// A format version this build does not read.
    Version(u16),
    /// The lengths disagree with each other or with the file's size.
    Lengths,
    /// The header checksum does not match.
    HeaderChecksum,
    /// The value checksum does not match.
    ValueChecksum,
    /// The key or a tag is not UTF-8.
    NotUtf8,
    /// The file name is not the hash of the key in the header.
    Misplaced,
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Corruption::TooShort => f.write_str("shorter than an entry header"),
            Corruption::BadMagic => f.write_str("not an entry file (wrong magic)"),
            Corruption::Version(v) => write!(f, "unknown format version {v}"),
            Corruption::Lengths => f.write_str("lengths disagree (truncated or extended)"),
            Corruption::HeaderChecksum => f.write_str("header checksum mismatch"),
            Corruption::ValueChecksum => f.write_str("value checksum mismatch"),
            Corruption::NotUtf8 => f.write_str("key or tag is not UTF-8"),
            Corruption::Misplaced => f.write_str("the file name is not the hash of its key"),
        }
    }
}

/// The fields of a header that the fixed part alone gives.
#[derive(Debug, Clone, Copy)]
pub(super) struct Fixed {
    /// Bytes before the value.
    pub(super) header_len: usize,
}

/// Checks the fixed part of a header (`bytes` holds at least
/// [`FIXED_LEN`] bytes of a file `file_len` bytes long).
pub(super) fn decode_fixed(bytes: &[u8], file_len: u64) -> Result<Fixed, Corruption> {
    if bytes.len() < FIXED_LEN || file_len < FIXED_LEN as u64 {
        return Err(Corruption::TooShort);
    }
    if bytes[..8] != MAGIC {
        return Err(Corruption::BadMagic);
    }
    let version = read_u16(bytes, 24);
    if version != FORMAT_VERSION {
        return Err(Corruption::Version(version));
    }
    let header_len = read_u32(bytes, 28) as usize;
    let value_len = read_u64(bytes, 40);
    let total = (header_len as u64).checked_add(value_len);
    if !(FIXED_LEN..=MAX_HEADER_LEN).contains(&header_len) || total != Some(file_len) {
        return Err(Corruption::Lengths);
    }
    Ok(Fixed { header_len })
}

/// A decoded header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    /// Bytes before the value.
    pub(super) header_len: usize,
    /// Absolute expiry in Unix milliseconds; 0 = never.
    pub(super) expires_at: u64,
    /// The key.
    pub(super) key: String,
    /// The tags.
    pub(super) tags: Vec<String>,
    /// The XXH64 of the value.
    pub(super) value_checksum: u64,
}

impl Header {
    /// Whether the entry has expired at `now` (Unix milliseconds).
    pub(super) fn is_expired(&self, now: u64) -> bool {
        self.expires_at != 0 && self.expires_at <= now
    }
}

/// Decodes the header of a file `file_len` bytes long; `bytes` holds at
/// least its first `header_len` bytes. The value is not checked.
pub(crate) fn decode_header(bytes: &[u8], file_len: u64) -> Result<Header, Corruption> {
    let fixed = decode_fixed(bytes, file_len)?;
    let header_len = fixed.header_len;
    if bytes.len() < header_len {
        return Err(Corruption::Lengths);
    }
    let header = &bytes[..header_len];
    if xxh64(&header[24..], 0) != read_u64(header, 8) {
        return Err(Corruption::HeaderChecksum);
    }
    let key_len = read_u32(header, 48) as usize;
    let tag_count = read_u32(header, 52) as usize;
    let text = |at: usize, len: usize| -> Result<String, Corruption> {
        let end = at.checked_add(len).ok_or(Corruption::Lengths)?;
        let bytes = header.get(at..end).ok_or(Corruption::Lengths)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| Corruption::NotUtf8)
    };
    let key = text(FIXED_LEN, key_len)?;
    let mut at = FIXED_LEN + key_len;
    // Each tag takes at least its 4-byte length.
    if tag_count > (header_len - FIXED_LEN) / 4 {
        return Err(Corruption::Lengths);
    }
    let mut tags = Vec::with_capacity(tag_count);
    for _ in 0..tag_count {
        let len_bytes = header.get(at..at + 4).ok_or(Corruption::Lengths)?;
        let len = read_u32(len_bytes, 0) as usize;
        tags.push(text(at + 4, len)?);
        at += 4 + len;
    }
    if at != header_len {
        return Err(Corruption::Lengths);
    }
    Ok(Header {
        header_len,
        expires_at: read_u64(header, 32),
        key,
        tags,
        value_checksum: read_u64(header, 16),
    })
}

/// Decodes a whole entry file and checks the value's checksum.
pub(crate) fn decode_entry(file: &[u8]) -> Result<Header, Corruption> {
    let header = decode_header(file, file.len() as u64)?;
    if xxh64(&file[header.header_len..], 0) != header.value_checksum {
        return Err(Corruption::ValueChecksum);
    }
    Ok(header)
}

/// The length of the header [`encode_header`] writes for this key and
/// these tags.
pub(super) fn header_len(key: &str, tags: &[String]) -> usize {
    FIXED_LEN + key.len() + tags.iter().map(|t| 4 + t.len()).sum::<usize>()
}

/// Encodes a header for a value of `value_len` bytes whose XXH64 is
/// `value_checksum`. The caller has checked that the header fits in
/// [`MAX_HEADER_LEN`] and that the key and each tag fit in a `u32`.
pub(crate) fn encode_header(
    key: &str,
    tags: &[String],
    expires_at: u64,
    value_len: u64,
    value_checksum: u64,
) -> Vec<u8> {
    let len = header_len(key, tags);
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[0; 8]); // the header checksum, filled in below
    out.extend_from_slice(&value_checksum.to_le_bytes());
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&expires_at.to_le_bytes());
    out.extend_from_slice(&value_len.to_le_bytes());
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(&(tags.len() as u32).to_le_bytes());
    out.extend_from_slice(key.as_bytes());
    for tag in tags {
        out.extend_from_slice(&(tag.len() as u32).to_le_bytes());
        out.extend_from_slice(tag.as_bytes());
    }
    let checksum = xxh64(&out[24..], 0);
    out[8..16].copy_from_slice(&checksum.to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xxh64_matches_the_reference_values() {
        // Reference values of the XXH64 specification's implementation,
        // over the bytes `(i * 7 + 3) as u8`.
        let data: Vec<u8> = (0..100u32).map(|i| (i * 7 + 3) as u8).collect();
        let cases: [(u64, usize, u64); 12] = [
            (0x0, 0, 0xef46db3751d8e999),
            (0x0, 1, 0x1f25c8d0bc1f4bb6),
            (0x0, 3, 0x31d2363f52e564c9),
            (0x0, 4, 0x9bb64b7d66ee9fda),
            (0x0, 8, 0xdab99d95c6f90092),
            (0x0, 31, 0xa2aa5f33cc4a6119),
            (0x0, 32, 0x23c3c17ef790fd97),
            (0x0, 33, 0x50a7cfc7ba588784),
            (0x0, 100, 0xa61f8d4c170fe531),
            (0x9e3779b97f4a7c15, 100, 0xf6d8f65c625abb4f),
            (0x1, 0, 0xd5afba1336a3be4b),
            (0xdeadbeef, 17, 0xbb73bf603543947e),
        ];
        for (seed, len, expected) in cases {
            assert_eq!(
                xxh64(&data[..len], seed),
                expected,
                "seed {seed:#x}, {len} bytes"
            );
        }
        assert_eq!(xxh64(b"abc", 0), 0x44bc2cf5ad770999);
    }

    #[test]
    fn key_hash_is_stable() {
        // File names of existing caches depend on these values.
        assert_eq!(
            format!("{:032x}", key_hash("user:1")),
            format!(
                "{:016x}{:016x}",
                xxh64(b"user:1", KEY_SEED_HIGH),
                xxh64(b"user:1", KEY_SEED_LOW)
            )
        );
        assert_ne!(key_hash("a"), key_hash("b"));
    }

    fn entry(key: &str, tags: &[String], expires_at: u64, value: &[u8]) -> Vec<u8> {
        let mut file = encode_header(key, tags, expires_at, value.len() as u64, xxh64(value, 0));
        file.extend_from_slice(value);
        file
    }

    #[test]
    fn an_entry_round_trips() {
        let tags = vec!["t1".to_owned(), String::new(), "ü".to_owned()];
        let file = entry("k\0ey", &tags, 1234, b"value");
        let header = decode_entry(&file).unwrap();
        assert_eq!(header.key, "k\0ey");
        assert_eq!(header.tags, tags);
        assert_eq!(header.expires_at, 1234);
        assert_eq!(&file[header.header_len..], b"value");
        assert_eq!(header.header_len, header_len("k\0ey", &tags));
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_rejected() {
        let file = entry("key", &["tag".to_owned()], 0, b"some value bytes");
        for len in 0..file.len() {
            assert!(decode_entry(&file[..len]).is_err(), "truncated to {len}");
        }
        for at in 0..file.len() {
            let mut bad = file.clone();
            bad[at] ^= 0x10;
            assert!(decode_entry(&bad).is_err(), "byte {at} flipped");
        }
        let mut longer = file.clone();
        longer.push(0);
        assert_eq!(decode_entry(&longer), Err(Corruption::Lengths));
    }

    #[test]
    fn random_bytes_are_rejected() {
        let mut rng = fastrand::Rng::with_seed(7);
        for len in [0, 1, 55, 56, 57, 200, 4096] {
            for _ in 0..50 {
                let bytes: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
                assert!(decode_entry(&bytes).is_err());
            }
        }
        // Random bytes behind a valid magic, too.
        for _ in 0..200 {
            let mut bytes: Vec<u8> = (0..300).map(|_| rng.u8(..)).collect();
            bytes[..8].copy_from_slice(&MAGIC);
            bytes[24..26].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
            assert!(decode_entry(&bytes).is_err());
        }
    }
}
