//! Where an entry lives in the store and what its object holds.
//!
//! **Names.** An entry of key `k` is the object `{prefix}/e/{name}`, where
//! `name` is `k_` followed by the key with every byte outside
//! `[a-z0-9_-]` written as `!xx` (two lower-case hex digits): safe in
//! every store (no `/`, no `.` or `..`, no control characters, only
//! characters AWS lists as safe, none that `object_store` would
//! percent-encode itself, and no upper case, so that a file system that
//! ignores case keeps `A` and `a` apart) and reversible, so `keys` reads the key
//! back from the name. A key whose escaped name would pass
//! [`MAX_NAME_LEN`] bytes is stored as `h_` and the hex SHA-256 of the key
//! instead, with the key itself in the object's header (checked on read).
//!
//! **Objects.** One GET answers the value and its metadata:
//!
//! ```text
//! "CCO1"  u64 expires_at (ms since the Unix epoch, 0 for none)
//!         u32 key length (0 unless the name is a digest)  key
//!         u16 tag count  { u16 length, tag }*
//!         value
//! ```
//! (integers little-endian). The first [`FIXED_LEN`] bytes alone tell the
//! expiry, so listing and sweeping read just those.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use sha2::{Digest, Sha256};

/// The first bytes of every entry object.
const MAGIC: &[u8; 4] = b"CCO1";

/// The magic, the expiry and the key length.
pub const FIXED_LEN: usize = 16;

/// The longest escaped name before a key is stored under its digest: a
/// file name takes at most 255 bytes, and S3 keys 1,024 with the prefix,
/// the folders and a tag marker's two names included.
pub const MAX_NAME_LEN: usize = 200;

/// The name of key `key` and whether it is a digest.
pub(crate) fn name_of(key: &str) -> (String, bool) {
    let mut name = String::with_capacity(key.len() + 2);
    name.push_str("k_");
    for &byte in key.as_bytes() {
        if byte.is_ascii_lowercase() || byte.is_ascii_digit() || matches!(byte, b'_' | b'-') {
            name.push(char::from(byte));
        } else {
            name.push('!');
            name.push_str(&format!("{byte:02x}"));
        }
        if name.len() > MAX_NAME_LEN {
            break;
        }
    }
    if name.len() <= MAX_NAME_LEN {
        return (name, false);
    }
    let digest = Sha256::digest(key.as_bytes());
    let mut hashed = String::with_capacity(2 + 64);
    hashed.push_str("h_");
    for byte in digest {
        hashed.push_str(&format!("{byte:02x}"));
    }
    (hashed, true)
}

/// The key a name stands for: `Some(key)` for an escaped name, `None`
/// for a digest (its key is in the header) or a name cachette did not
/// write.
pub(crate) fn key_of(name: &str) -> Option<String> {
    let escaped = name.strip_prefix("k_")?;
    let bytes = escaped.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'!' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Whether `name` is a digest name.
pub(crate) fn is_digest(name: &str) -> bool {
    name.starts_with("h_")
}

/// An entry read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Milliseconds since the Unix epoch; 0 for none.
    pub(crate) expires_at: u64,
    /// The key, for a digest name.
    pub(crate) key: Option<String>,
    pub(crate) tags: Vec<String>,
    pub(crate) value: Bytes,
}

impl Entry {
    /// Whether the entry has expired at `now` (milliseconds).
    pub(crate) fn expired(&self, now: u64) -> bool {
        self.expires_at != 0 && self.expires_at <= now
    }
}

/// The bytes of an entry object.
pub(crate) fn encode(expires_at: u64, key: Option<&str>, tags: &[String], value: &[u8]) -> Bytes {
    let key = key.unwrap_or("");
    let tags_len: usize = tags.iter().map(|tag| tag.len() + 2).sum();
    let mut out = BytesMut::with_capacity(FIXED_LEN + key.len() + 2 + tags_len + value.len());
    out.put_slice(MAGIC);
    out.put_u64_le(expires_at);
    // Keys and tags are bounded far below these widths by the backend's
    // limits.
    out.put_u32_le(u32::try_from(key.len()).unwrap_or(u32::MAX));
    out.put_slice(key.as_bytes());
    out.put_u16_le(u16::try_from(tags.len()).unwrap_or(u16::MAX));
    for tag in tags.iter().take(usize::from(u16::MAX)) {
        let tag = &tag.as_bytes()[..tag.len().min(usize::from(u16::MAX))];
        out.put_u16_le(tag.len() as u16);
        out.put_slice(tag);
    }
    out.put_slice(value);
    out.freeze()
}

/// The expiry and key length from the first [`FIXED_LEN`] bytes; `None`
/// if they are not the start of an entry.
pub(crate) fn fixed(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut head = bytes.get(..FIXED_LEN)?;
    if &head[..4] != MAGIC {
        return None;
    }
    head.advance(4);
    let expires_at = head.get_u64_le();
    let key_len = usize::try_from(head.get_u32_le()).ok()?;
    Some((expires_at, key_len))
}

/// Reads an entry object; `None` if it is not one (truncated, foreign).
pub(crate) fn decode(mut bytes: Bytes) -> Option<Entry> {
    let (expires_at, key_len) = fixed(&bytes)?;
    bytes.advance(FIXED_LEN);
    if bytes.len() < key_len {
        return None;
    }
    let key = bytes.split_to(key_len);
    let key = if key_len == 0 {
        None
    } else {
        Some(String::from_utf8(key.to_vec()).ok()?)
    };
    if bytes.len() < 2 {
        return None;
    }
    let count = bytes.get_u16_le();
    let mut tags = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        if bytes.len() < 2 {
            return None;
        }
        let len = usize::from(bytes.get_u16_le());
        if bytes.len() < len {
            return None;
        }
        tags.push(String::from_utf8(bytes.split_to(len).to_vec()).ok()?);
    }
    Some(Entry {
        expires_at,
        key,
        tags,
        value: bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_are_safe_and_reversible() {
        for key in [
            "plain", "a/b", "..", ".", "sp ace", "ünï", "~tilde", "!bang", "x\0y", "%41",
        ] {
            let (name, digest) = name_of(key);
            assert!(!digest);
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-!".contains(&b)),
                "{name}"
            );
            assert_eq!(key_of(&name).as_deref(), Some(key));
        }
        assert_ne!(name_of("A").0.to_lowercase(), name_of("a").0.to_lowercase());
        let long = "é".repeat(100);
        let (name, digest) = name_of(&long);
        assert!(digest && is_digest(&name) && name.len() == 66, "{name}");
        assert_eq!(key_of(&name), None);
        assert_eq!(key_of("foreign"), None);
        assert_eq!(key_of("k_!G1"), None);
        assert_eq!(key_of("k_!4"), None);
    }

    #[test]
    fn truncated_or_foreign_objects_are_not_entries() {
        let bytes = encode(
            42,
            Some("key"),
            &["t1".to_owned(), "t2".to_owned()],
            b"value",
        );
        let entry = decode(bytes.clone()).unwrap();
        assert_eq!(entry.expires_at, 42);
        assert_eq!(entry.key.as_deref(), Some("key"));
        assert_eq!(entry.tags, ["t1", "t2"]);
        assert_eq!(&entry.value[..], b"value");
        for cut in 0..bytes.len() - 5 {
            assert_eq!(decode(bytes.slice(..cut)), None, "cut at {cut}");
        }
        assert_eq!(
            decode(Bytes::from_static(b"hello, world, not an entry")),
            None
        );
    }

    proptest! {
        #[test]
        fn any_key_round_trips(key in any::<String>()) {
            let (name, digest) = name_of(&key);
            prop_assert!(name.len() <= MAX_NAME_LEN + 3);
            if !digest {
                prop_assert_eq!(key_of(&name), Some(key));
            }
        }

        #[test]
        fn any_bytes_decode_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut with_magic = MAGIC.to_vec();
            with_magic.extend_from_slice(&bytes);
            let _ = decode(Bytes::from(with_magic));
            let _ = decode(Bytes::from(bytes));
        }
    }
}
