//! The messages of the invalidation channel: what one tiered instance
//! tells the others, and their wire format.
//!
//! A message is one line of header, `cachette-tiered/1 <instance> <op>\n`,
//! followed (for `keys` and `tags`) by the items, each as its length in
//! bytes in ASCII decimal, a `:`, and its UTF-8 bytes. Items may hold any
//! character (newlines, NUL, spaces): the lengths delimit them. `op` is
//! `keys`, `tags` or `clear`.

use std::fmt;

use super::Change;

/// The first word of every message; the digit is the format version.
const MAGIC: &str = "cachette-tiered/1";

/// A message as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Received {
    /// The id of the instance that sent it.
    pub(super) instance: String,
    /// What changed.
    pub(super) change: ReceivedChange,
}

/// The owned form of a [`Change`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ReceivedChange {
    /// See [`Change::Keys`].
    Keys(Vec<String>),
    /// See [`Change::Tags`].
    Tags(Vec<String>),
    /// See [`Change::Clear`].
    Clear,
}

/// Why a message could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unreadable(&'static str);

impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Encodes a change sent by `instance` (which must hold no space or line
/// break).
pub(super) fn encode(instance: &str, change: Change<'_>) -> Vec<u8> {
    let (op, items): (&str, &[&str]) = match change {
        Change::Keys(keys) => ("keys", keys),
        Change::Tags(tags) => ("tags", tags),
        Change::Clear => ("clear", &[]),
    };
    let size: usize = items.iter().map(|item| item.len() + 21).sum();
    let mut out = Vec::with_capacity(MAGIC.len() + instance.len() + op.len() + 3 + size);
    out.extend_from_slice(MAGIC.as_bytes());
    out.push(b' ');
    out.extend_from_slice(instance.as_bytes());
    out.push(b' ');
    out.extend_from_slice(op.as_bytes());
    out.push(b'\n');
    for item in items {
        out.extend_from_slice(item.len().to_string().as_bytes());
        out.push(b':');
        out.extend_from_slice(item.as_bytes());
    }
    out
}

/// Decodes a message; anything that is not exactly a message of this
/// format is [`Unreadable`].
pub(crate) fn decode(payload: &[u8]) -> Result<Received, Unreadable> {
    let newline = payload
        .iter()
        .position(|&b| b == b'\n')
        .ok_or(Unreadable("no header line"))?;
    let header = std::str::from_utf8(&payload[..newline])
        .map_err(|_| Unreadable("the header is not UTF-8"))?;
    let mut words = header.split(' ');
    let (Some(magic), Some(instance), Some(op), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err(Unreadable("the header is not `magic instance op`"));
    };
    if magic != MAGIC {
        return Err(Unreadable("unknown format or version"));
    }
    if instance.is_empty() {
        return Err(Unreadable("the instance id is empty"));
    }
    let body = &payload[newline + 1..];
    let change = match op {
        "keys" => ReceivedChange::Keys(items(body)?),
        "tags" => ReceivedChange::Tags(items(body)?),
        "clear" if body.is_empty() => ReceivedChange::Clear,
        "clear" => return Err(Unreadable("a clear message has a body")),
        _ => return Err(Unreadable("unknown operation")),
    };
    Ok(Received {
        instance: instance.to_owned(),
        change,
    })
}

/// Reads `len:bytes` items until the end of `body`.
fn items(mut body: &[u8]) -> Result<Vec<String>, Unreadable> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let colon = body
            .iter()
            .take(21)
            .position(|&b| b == b':')
            .ok_or(Unreadable("an item has no length"))?;
        let digits = &body[..colon];
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err(Unreadable("an item length is not a decimal number"));
        }
        let len: usize = std::str::from_utf8(digits)
            .ok()
            .and_then(|text| text.parse().ok())
            .ok_or(Unreadable("an item length is out of range"))?;
        let rest = &body[colon + 1..];
        if len > rest.len() {
            return Err(Unreadable("an item is cut short"));
        }
        let (item, tail) = rest.split_at(len);
        let item = std::str::from_utf8(item).map_err(|_| Unreadable("an item is not UTF-8"))?;
        out.push(item.to_owned());
        body = tail;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(change: Change<'_>) -> ReceivedChange {
        let received = decode(&encode("abc123", change)).expect("a message decodes");
        assert_eq!(received.instance, "abc123");
        received.change
    }

    #[test]
    fn keys_with_any_character_round_trip() {
        let keys = [
            "a",
            "",
            "with space",
            "line\nbreak",
            "12:34",
            "nul\0",
            "ключ🔑",
        ];
        assert_eq!(
            round_trip(Change::Keys(&keys)),
            ReceivedChange::Keys(keys.iter().map(|k| (*k).to_owned()).collect())
        );
    }

    #[test]
    fn tags_and_clear_round_trip() {
        assert_eq!(
            round_trip(Change::Tags(&["t1", "t:2"])),
            ReceivedChange::Tags(vec!["t1".into(), "t:2".into()])
        );
        assert_eq!(round_trip(Change::Clear), ReceivedChange::Clear);
        assert_eq!(
            round_trip(Change::Keys(&[])),
            ReceivedChange::Keys(Vec::new())
        );
    }

    #[test]
    fn malformed_messages_are_unreadable() {
        let cases: [&[u8]; 12] = [
            b"",
            b"hello",
            b"cachette-tiered/2 id keys\n1:a",
            b"cachette-tiered/1 id\n",
            b"cachette-tiered/1 id keys extra\n",
            b"cachette-tiered/1  keys\n",
            b"cachette-tiered/1 id drop\n",
            b"cachette-tiered/1 id keys\n2:a",
            b"cachette-tiered/1 id keys\nx:a",
            b"cachette-tiered/1 id keys\n99999999999999999999999:a",
            b"cachette-tiered/1 id keys\n1:\xff",
            b"cachette-tiered/1 id clear\n1:a",
        ];
        for payload in cases {
            assert!(
                decode(payload).is_err(),
                "{:?} must be unreadable",
                String::from_utf8_lossy(payload)
            );
        }
    }
}
