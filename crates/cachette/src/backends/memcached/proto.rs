//! memcached's meta protocol (memcached ≥ 1.6): requests written into a
//! buffer, responses parsed from one as bytes arrive. The commands and
//! their flags are described in `docs/memcached-plan.md`.
//!
//! A response is one line, `<code> <flag>*\r\n`, except `VA`, which is
//! followed by a data block of the size it gives and `\r\n`. Error lines
//! (`ERROR`, `CLIENT_ERROR …`, `SERVER_ERROR …`) carry no flags, so no
//! opaque: they cannot be matched to a quiet request. The parser refuses
//! a line longer than [`MAX_LINE`] and a data block larger than the limit
//! it is given, so that a broken or hostile server cannot make it buffer
//! without bound.

use bytes::{Buf, Bytes, BytesMut};

/// The longest response line accepted (a key of 250 bytes, base64 or not,
/// and every flag fit easily).
pub(crate) const MAX_LINE: usize = 2048;

/// A key as sent: its bytes, and whether they are base64 (the `b` flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WireKey<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) base64: bool,
}

/// Appends `mg <key> <flags>` to `out`.
pub(crate) fn meta_get(out: &mut Vec<u8>, key: WireKey<'_>, flags: &str) {
    command(out, b"mg", key, None, flags);
}

/// Appends `ms <key> <len> <flags>` and the data block to `out`.
pub(crate) fn meta_set(out: &mut Vec<u8>, key: WireKey<'_>, value: &[u8], flags: &str) {
    command(out, b"ms", key, Some(value.len()), flags);
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends `md <key> <flags>` to `out`.
pub(crate) fn meta_delete(out: &mut Vec<u8>, key: WireKey<'_>, flags: &str) {
    command(out, b"md", key, None, flags);
}

/// Appends `ma <key> <flags>` to `out`.
pub(crate) fn meta_arithmetic(out: &mut Vec<u8>, key: WireKey<'_>, flags: &str) {
    command(out, b"ma", key, None, flags);
}

/// Appends `mn`, which the server answers with `MN` once every request
/// before it is answered (the end of a quiet batch).
pub(crate) fn meta_noop(out: &mut Vec<u8>) {
    out.extend_from_slice(b"mn\r\n");
}

fn command(out: &mut Vec<u8>, name: &[u8], key: WireKey<'_>, len: Option<usize>, flags: &str) {
    out.extend_from_slice(name);
    out.push(b' ');
    out.extend_from_slice(key.bytes);
    if let Some(len) = len {
        out.push(b' ');
        out.extend_from_slice(len.to_string().as_bytes());
    }
    if key.base64 {
        out.extend_from_slice(b" b");
    }
    if !flags.is_empty() {
        out.push(b' ');
        out.extend_from_slice(flags.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// The status of a meta response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// `VA`: a value follows.
    Value,
    /// `HD`: success, no value.
    Done,
    /// `EN`: a miss (`mg`).
    Miss,
    /// `NS`: not stored (the mode's condition failed).
    NotStored,
    /// `EX`: the CAS did not match.
    Exists,
    /// `NF`: not found.
    NotFound,
    /// `MN`: the end of a batch.
    Noop,
}

/// One parsed response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Meta {
    pub(crate) status: Option<Status>,
    /// The data block of `VA`.
    pub(crate) value: Option<Bytes>,
    /// `O`: the opaque token sent with the request.
    pub(crate) opaque: Option<u32>,
    /// `t`: remaining seconds; `-1` for none.
    pub(crate) ttl: Option<i64>,
    /// `c`: the item's CAS value.
    pub(crate) cas: Option<u64>,
    /// `f`: the item's client flags.
    pub(crate) client_flags: Option<u32>,
    /// `W`: this client won the right to recompute the item.
    pub(crate) won: bool,
    /// `X`: the item is stale.
    pub(crate) stale: bool,
    /// `Z`: another client already won the right to recompute.
    pub(crate) already_won: bool,
}

/// What the server said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Response {
    /// A meta response.
    Meta(Meta),
    /// `ERROR`, `CLIENT_ERROR …` or `SERVER_ERROR …`: the whole line.
    Error(String),
}

/// A response that cannot be parsed: the connection is out of step and
/// must be closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProtocolError(pub(crate) String);

/// Parses the first complete response of `buffer` and removes it;
/// `Ok(None)` when more bytes are needed. A data block over
/// `max_value` bytes is a [`ProtocolError`].
pub(crate) fn parse(
    buffer: &mut BytesMut,
    max_value: usize,
) -> Result<Option<Response>, ProtocolError> {
    let Some(end) = buffer.windows(2).position(|pair| pair == b"\r\n") else {
        if buffer.len() > MAX_LINE {
            return Err(ProtocolError(format!(
                "a response line longer than {MAX_LINE} bytes"
            )));
        }
        return Ok(None);
    };
    if end > MAX_LINE {
        return Err(ProtocolError(format!(
            "a response line longer than {MAX_LINE} bytes"
        )));
    }
    let line = std::str::from_utf8(&buffer[..end])
        .map_err(|_| ProtocolError("a response line that is not text".into()))?;
    if line == "ERROR" || line.starts_with("CLIENT_ERROR") || line.starts_with("SERVER_ERROR") {
        let message = line.to_owned();
        buffer.advance(end + 2);
        return Ok(Some(Response::Error(message)));
    }
    let mut tokens = line.split(' ');
    let code = tokens.next().unwrap_or_default();
    let status = match code {
        "VA" => Status::Value,
        "HD" => Status::Done,
        "EN" => Status::Miss,
        "NS" => Status::NotStored,
        "EX" => Status::Exists,
        "NF" => Status::NotFound,
        "MN" => Status::Noop,
        _ => {
            return Err(ProtocolError(format!(
                "an unknown response `{}`",
                shown(line)
            )));
        }
    };
    let mut meta = Meta {
        status: Some(status),
        ..Meta::default()
    };
    let size = if status == Status::Value {
        let size = tokens
            .next()
            .and_then(|size| size.parse::<usize>().ok())
            .ok_or_else(|| ProtocolError("a VA response without its size".into()))?;
        if size > max_value {
            return Err(ProtocolError(format!(
                "a value of {size} bytes, over the limit of {max_value}"
            )));
        }
        Some(size)
    } else {
        None
    };
    for token in tokens.filter(|token| !token.is_empty()) {
        read_flag(&mut meta, token)?;
    }
    if let Some(size) = size {
        let total = end + 2 + size + 2;
        if buffer.len() < total {
            buffer.reserve(total - buffer.len());
            return Ok(None);
        }
        if &buffer[total - 2..total] != b"\r\n" {
            return Err(ProtocolError("a data block not ended by \\r\\n".into()));
        }
        buffer.advance(end + 2);
        meta.value = Some(buffer.split_to(size).freeze());
        buffer.advance(2);
    } else {
        buffer.advance(end + 2);
    }
    Ok(Some(Response::Meta(meta)))
}

/// A server's text as an error shows it: escaped, and cut to 64
/// characters (after a desync it may be a piece of a cached value).
fn shown(text: &str) -> String {
    let cut: String = text.chars().take(64).collect();
    let ellipsis = if cut.len() < text.len() { "…" } else { "" };
    format!("{}{ellipsis}", cut.escape_debug())
}

/// Records one returned flag; flags cachette never asks for are skipped.
fn read_flag(meta: &mut Meta, token: &str) -> Result<(), ProtocolError> {
    let number = || ProtocolError(format!("a bad `{}` flag", shown(token)));
    // Flags are one ASCII letter; anything else is not a flag.
    let Some(flag) = token.get(..1) else {
        return Err(number());
    };
    let value = &token[1..];
    match flag {
        "O" => meta.opaque = Some(value.parse().map_err(|_| number())?),
        "t" => meta.ttl = Some(value.parse().map_err(|_| number())?),
        "c" => meta.cas = Some(value.parse().map_err(|_| number())?),
        "f" => meta.client_flags = Some(value.parse().map_err(|_| number())?),
        "W" => meta.won = true,
        "X" => meta.stale = true,
        "Z" => meta.already_won = true,
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> WireKey<'_> {
        WireKey {
            bytes: text.as_bytes(),
            base64: false,
        }
    }

    #[test]
    fn requests_are_written_as_the_protocol_spells_them() {
        let mut out = Vec::new();
        meta_get(&mut out, key("k"), "v t c f q O7");
        meta_set(&mut out, key("k"), b"hi", "T30 F1 ME");
        meta_delete(&mut out, key("k"), "q");
        meta_arithmetic(&mut out, key("n"), "D5 MI v");
        let base64 = WireKey {
            bytes: b"YQ==",
            base64: true,
        };
        meta_get(&mut out, base64, "v");
        meta_noop(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "mg k v t c f q O7\r\nms k 2 T30 F1 ME\r\nhi\r\nmd k q\r\nma n D5 MI v\r\n\
             mg YQ== b v\r\nmn\r\n"
        );
    }

    fn parse_all(input: &[u8]) -> Vec<Response> {
        let mut buffer = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(response) = parse(&mut buffer, 1 << 20).unwrap() {
            out.push(response);
        }
        assert!(buffer.is_empty(), "{buffer:?} left over");
        out
    }

    #[test]
    fn replies_seen_on_memcached_1_6_18_parse() {
        let responses = parse_all(
            b"VA 2 O0 kg1\r\nv1\r\nVA 0 c41 f0 t-1 W\r\n\r\nHD t100\r\nEN\r\nNS O1\r\n\
              VA 3 t30 c44 X W\r\nabc\r\nNF O4\r\nMN\r\nCLIENT_ERROR bad command line format\r\n",
        );
        let Response::Meta(first) = &responses[0] else {
            panic!()
        };
        assert_eq!(first.value.as_deref(), Some(&b"v1"[..]));
        assert_eq!(first.opaque, Some(0));
        let Response::Meta(lease) = &responses[1] else {
            panic!()
        };
        assert_eq!(lease.value.as_deref(), Some(&b""[..]));
        assert_eq!(
            (lease.cas, lease.ttl, lease.won),
            (Some(41), Some(-1), true)
        );
        let Response::Meta(stale) = &responses[5] else {
            panic!()
        };
        assert!(stale.stale && stale.won && !stale.already_won);
        let statuses: Vec<_> = responses
            .iter()
            .filter_map(|r| match r {
                Response::Meta(meta) => meta.status,
                Response::Error(_) => None,
            })
            .collect();
        use Status::*;
        assert_eq!(
            statuses,
            [Value, Value, Done, Miss, NotStored, Value, NotFound, Noop]
        );
        assert_eq!(
            responses[8],
            Response::Error("CLIENT_ERROR bad command line format".into())
        );
    }

    #[test]
    fn a_response_split_anywhere_waits_for_the_rest() {
        let whole = b"VA 5 t-1\r\nhello\r\nHD\r\n";
        for cut in 0..whole.len() {
            let mut buffer = BytesMut::from(&whole[..cut]);
            let first = parse(&mut buffer, 100).unwrap();
            if cut < 17 {
                assert_eq!(first, None, "cut at {cut}");
            }
            buffer.extend_from_slice(&whole[cut..]);
            let mut all = Vec::new();
            if let Some(response) = first {
                all.push(response);
            }
            while let Some(response) = parse(&mut buffer, 100).unwrap() {
                all.push(response);
            }
            assert_eq!(all.len(), 2, "cut at {cut}");
        }
    }

    proptest::proptest! {
        /// Whatever a server sends, the parser answers or refuses; it never
        /// panics, and never holds more than a line and a block.
        #[test]
        fn any_bytes_parse_or_fail_cleanly(input in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let mut buffer = BytesMut::from(&input[..]);
            while let Ok(Some(_)) = parse(&mut buffer, 64) {}
        }

        #[test]
        fn any_flags_parse_or_fail_cleanly(flags in "[ -~é\\u{80}-\\u{10FFFF}]{0,40}") {
            let mut buffer = BytesMut::from(format!("HD {flags}\r\n").as_bytes());
            let _ = parse(&mut buffer, 64);
        }
    }

    #[test]
    fn broken_responses_are_protocol_errors() {
        for input in [
            &b"XX 1\r\n"[..],
            b"VA\r\n",
            b"VA 1\r\nab\r\n",
            b"HD tNaN\r\n",
            b"VA 2000000 t1\r\n",
            "HD é\r\n".as_bytes(),
        ] {
            let mut buffer = BytesMut::from(input);
            assert!(parse(&mut buffer, 1 << 20).is_err(), "{input:?}");
        }
        let mut endless = BytesMut::from(&[b'a'; MAX_LINE + 1][..]);
        assert!(parse(&mut endless, 1 << 20).is_err());
    }
}
