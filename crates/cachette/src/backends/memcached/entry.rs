//! What a stored item holds: its client flags say how to read its bytes.
//!
//! - [`BARE`]: the value itself, nothing else (untagged entries under a
//!   plain or base64 key, and counters, so that `get` of a counter reads
//!   `b"-12"` and `ma` can add to it in place).
//! - [`FRAMED`]: a header, then the value. The header holds the entry's
//!   tags with the version each tag had on this server when the entry was
//!   written, and, for a key stored under its digest, the original key:
//!
//!   ```text
//!   0xCA  u16 tag count  { u16 length, tag, u64 version }*  u8 has key  [ u32 length, key ]  value
//!   ```
//!   (integers little-endian).
//!
//! Any other flags (an item created by `mg … N`, or by another client) or
//! a header that cannot be read is not an entry of cachette: a miss, the
//! latter counted as corrupt.

use bytes::{BufMut, Bytes, BytesMut};

/// Client flags of an item that is the value alone.
pub(crate) const BARE: u32 = 2;
/// Client flags of an item with a header.
pub(crate) const FRAMED: u32 = 1;

const MAGIC: u8 = 0xCA;

/// An entry read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The tags and the versions they had when it was written.
    pub(crate) tags: Vec<(String, u64)>,
    /// The original key, for a key stored under its digest.
    pub(crate) key: Option<String>,
    pub(crate) value: Bytes,
}

/// The flags and bytes to store `value` with `tags` (and `key`, for a
/// hashed key).
pub(crate) fn encode(value: &[u8], tags: &[(String, u64)], key: Option<&str>) -> (u32, Bytes) {
    if tags.is_empty() && key.is_none() {
        return (BARE, Bytes::copy_from_slice(value));
    }
    let mut out = BytesMut::with_capacity(value.len() + 16 + key.map_or(0, str::len));
    out.put_u8(MAGIC);
    // Tags are bounded by the caller's key limit, keys by 4 KiB: both fit.
    out.put_u16_le(u16::try_from(tags.len()).unwrap_or(u16::MAX));
    for (tag, version) in tags.iter().take(usize::from(u16::MAX)) {
        let tag = &tag.as_bytes()[..tag.len().min(usize::from(u16::MAX))];
        out.put_u16_le(tag.len() as u16);
        out.put_slice(tag);
        out.put_u64_le(*version);
    }
    match key {
        Some(key) => {
            out.put_u8(1);
            out.put_u32_le(u32::try_from(key.len()).unwrap_or(u32::MAX));
            out.put_slice(key.as_bytes());
        }
        None => out.put_u8(0),
    }
    out.put_slice(value);
    (FRAMED, out.freeze())
}

/// Why stored bytes are not an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotEntry {
    /// Flags cachette does not write: someone else's item, or an empty
    /// placeholder.
    Foreign,
    /// A header that cannot be read.
    Corrupt,
}

/// Reads an item stored with `flags`.
pub(crate) fn decode(flags: u32, mut data: Bytes) -> Result<Entry, NotEntry> {
    match flags {
        BARE => Ok(Entry {
            tags: Vec::new(),
            key: None,
            value: data,
        }),
        FRAMED => {
            let mut reader = Reader(&mut data);
            if reader.u8()? != MAGIC {
                return Err(NotEntry::Corrupt);
            }
            let count = reader.u16()?;
            let mut tags = Vec::with_capacity(usize::from(count).min(64));
            for _ in 0..count {
                let len = usize::from(reader.u16()?);
                let tag = reader.text(len)?;
                tags.push((tag, reader.u64()?));
            }
            let key = match reader.u8()? {
                0 => None,
                1 => {
                    let len = usize::try_from(reader.u32()?).map_err(|_| NotEntry::Corrupt)?;
                    Some(reader.text(len)?)
                }
                _ => return Err(NotEntry::Corrupt),
            };
            Ok(Entry {
                tags,
                key,
                value: data,
            })
        }
        _ => Err(NotEntry::Foreign),
    }
}

struct Reader<'a>(&'a mut Bytes);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<Bytes, NotEntry> {
        if self.0.len() < n {
            return Err(NotEntry::Corrupt);
        }
        Ok(self.0.split_to(n))
    }
    fn u8(&mut self) -> Result<u8, NotEntry> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, NotEntry> {
        let bytes = self.take(2)?;
        Ok(u16::from_le_bytes([bytes[0], bytes[1]]))
    }
    fn u32(&mut self) -> Result<u32, NotEntry> {
        let bytes = self.take(4)?;
        let mut array = [0; 4];
        array.copy_from_slice(&bytes);
        Ok(u32::from_le_bytes(array))
    }
    fn u64(&mut self) -> Result<u64, NotEntry> {
        let bytes = self.take(8)?;
        let mut array = [0; 8];
        array.copy_from_slice(&bytes);
        Ok(u64::from_le_bytes(array))
    }
    fn text(&mut self, len: usize) -> Result<String, NotEntry> {
        String::from_utf8(self.take(len)?.to_vec()).map_err(|_| NotEntry::Corrupt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        let tags = vec![("t1".to_owned(), 7), ("é".to_owned(), u64::MAX)];
        for (tags, key) in [
            (vec![], None),
            (tags.clone(), None),
            (vec![], Some("long key")),
            (tags, Some("k")),
        ] {
            let (flags, bytes) = encode(b"value", &tags, key);
            let entry = decode(flags, bytes).unwrap();
            assert_eq!(entry.tags, tags);
            assert_eq!(entry.key.as_deref(), key);
            assert_eq!(&entry.value[..], b"value");
        }
        assert_eq!(
            encode(b"-12", &[], None),
            (BARE, Bytes::from_static(b"-12"))
        );
    }

    #[test]
    fn foreign_and_broken_items_are_not_entries() {
        assert_eq!(decode(0, Bytes::new()), Err(NotEntry::Foreign));
        assert_eq!(decode(7, Bytes::from_static(b"x")), Err(NotEntry::Foreign));
        let (flags, whole) = encode(b"v", &[("tag".to_owned(), 1)], Some("key"));
        for cut in 0..whole.len() - 1 {
            let result = decode(flags, whole.slice(..cut));
            assert_eq!(result, Err(NotEntry::Corrupt), "cut at {cut}");
        }
        assert_eq!(
            decode(FRAMED, Bytes::from_static(b"\x00\x00\x00\x00")),
            Err(NotEntry::Corrupt)
        );
    }
}
