//! Codecs: how the typed front end turns values into bytes and back.
//!
//! The default codec and the reading of entries written with another
//! codec are documented on [`Codec`] and [`DefaultCodec`], where users
//! read them.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, ErrorKind, Result};

use super::raw;

/// The name in errors raised by the typed front end itself.
pub(super) const NAME: &str = "cache";

/// Turns values into bytes and back for [`Cache`](super::Cache).
///
/// A codec is a small value (the built-in ones are zero-sized) chosen with
/// [`CacheBuilder::codec`](super::CacheBuilder::codec). Its
/// [`id`](Codec::id) is written into every envelope, so that a value stored
/// with one codec is never decoded with another: reading it through a cache
/// with a different codec is an [`ErrorKind::Serialization`] error (and for
/// `get_or_load`, a miss; see below).
///
/// Ids 1 to 63 are reserved for cachette's codecs; pick an id of 128 or
/// more for your own.
///
/// # The default codec
///
/// [`DefaultCodec`] is [`Postcard`] in every build, whatever features are
/// enabled; its docs say why.
///
/// # Entries written with another codec
///
/// An envelope records the [id](Codec::id) of the codec that wrote it, so
/// a cache recognises an entry of another codec (a cache whose codec
/// changed, or two caches with different codecs sharing keys):
///
/// - [`Cache::get`](super::Cache::get) and
///   [`get_many`](super::Cache::get_many) return an
///   [`ErrorKind::Serialization`] error that names both codecs ("written
///   with json (codec id 1), and this cache reads postcard (codec id 3)"),
///   count it in [`CacheStats::decode_errors`](super::CacheStats::decode_errors),
///   and leave the entry as it is.
/// - [`Cache::get_or_load`](super::Cache::get_or_load) reads it as a miss:
///   the loader runs and its value replaces the entry. That is what a
///   change of codec needs (old entries give way as they are asked for).
///   A value of this cache's own codec that does not decode into the
///   requested type stays an error for `get_or_load` too: it points at
///   two types stored under one key, which a reload would hide.
/// - [`Cache::get_bytes`](super::Cache::get_bytes) returns the payload,
///   whatever codec wrote it.
///
/// A plain value (no envelope) carries no codec id and is decoded with the
/// cache's codec, which may fail or, between binary formats, misread it:
/// caches with different codecs that share keys should write envelopes
/// (any soft TTL, fail-safe or negative TTL turns them on).
pub trait Codec: Send + Sync + fmt::Debug + 'static {
    /// The id written into envelopes. Never 0.
    fn id(&self) -> u8;

    /// A short name for messages (`"json"`, `"postcard"`, ...).
    fn name(&self) -> &'static str;

    /// Encodes a value. Errors are [`ErrorKind::Serialization`].
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>>;

    /// Decodes a value. Errors (including trailing bytes, where the format
    /// can tell) are [`ErrorKind::Serialization`].
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T>;
}

/// The codec of [`Cache`](super::Cache) unless another is chosen:
/// [`Postcard`], whatever features are enabled.
///
/// The default never depends on features: Cargo unifies features across a
/// dependency graph, so a default that followed them would change the
/// bytes (and the codec id) that one crate stores as soon as another crate
/// in the same build enabled a feature. Postcard is always built in (the
/// `postcard` feature is kept, and does nothing); pick another codec
/// explicitly with [`CacheBuilder::codec`](super::CacheBuilder::codec).
pub type DefaultCodec = Postcard;

/// The codec ids of cachette's own codecs.
const JSON_ID: u8 = 1;
const MESSAGE_PACK_ID: u8 = 2;
const POSTCARD_ID: u8 = 3;

/// The name of one of cachette's codecs by id, whether or not this build
/// has it.
pub(super) fn known_name(id: u8) -> Option<&'static str> {
    match id {
        JSON_ID => Some("json"),
        MESSAGE_PACK_ID => Some("msgpack"),
        POSTCARD_ID => Some("postcard"),
        RAW_BYTES_ID => Some("raw bytes"),
        _ => None,
    }
}

fn describe(name: Option<&str>, id: u8) -> String {
    format!("{} (codec id {id})", name.unwrap_or("a codec of its own"))
}

/// The error of reading an envelope written with codec id `stored`
/// through a cache whose codec is `ours`: it names both.
#[cold]
pub(super) fn other_codec_error(stored: u8, ours: &impl Codec) -> Error {
    decode_error(
        ours.name(),
        format_args!(
            "the entry was written with {}, and this cache reads {}",
            describe(known_name(stored), stored),
            describe(Some(ours.name()), ours.id())
        ),
    )
}

pub(super) fn encode_error(codec: &'static str, error: impl fmt::Display) -> Error {
    Error::new(
        ErrorKind::Serialization,
        NAME,
        format!("could not encode the value with {codec}: {error}"),
    )
    .with_operation("encode")
}

pub(super) fn decode_error(codec: &'static str, error: impl fmt::Display) -> Error {
    Error::new(
        ErrorKind::Serialization,
        NAME,
        format!("could not decode the stored value with {codec}: {error}"),
    )
    .with_operation("decode")
}

/// JSON (`serde_json`): readable by every other tool, the largest output.
/// Id 1. Feature `json` (default).
#[cfg(feature = "json")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Json;

#[cfg(feature = "json")]
impl Codec for Json {
    fn id(&self) -> u8 {
        JSON_ID
    }

    fn name(&self) -> &'static str {
        "json"
    }

    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>> {
        serde_json::to_vec(value).map_err(|e| encode_error(self.name(), e))
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T> {
        serde_json::from_slice(bytes).map_err(|e| decode_error(self.name(), e))
    }
}

/// MessagePack (`rmp-serde`), structs as maps with field names so that
/// other MessagePack readers understand them. Id 2. Feature `msgpack`.
#[cfg(feature = "msgpack")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct MessagePack;

#[cfg(feature = "msgpack")]
impl Codec for MessagePack {
    fn id(&self) -> u8 {
        MESSAGE_PACK_ID
    }

    fn name(&self) -> &'static str {
        "msgpack"
    }

    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>> {
        rmp_serde::to_vec_named(value).map_err(|e| encode_error(self.name(), e))
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T> {
        rmp_serde::from_slice(bytes).map_err(|e| decode_error(self.name(), e))
    }
}

/// Postcard: the compact binary codec (varints, no field names), the
/// [default](DefaultCodec). Not self-describing: a change of the type's
/// fields makes old entries fail to decode. Trailing bytes are an error.
/// Id 3. Always built in (the `postcard` feature is kept for
/// compatibility and does nothing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Postcard;

impl Codec for Postcard {
    fn id(&self) -> u8 {
        POSTCARD_ID
    }

    fn name(&self) -> &'static str {
        "postcard"
    }

    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>> {
        postcard::to_allocvec(value).map_err(|e| encode_error(self.name(), e))
    }

    #[inline]
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T> {
        let mut deserializer = postcard::Deserializer::from_bytes(bytes);
        let value = T::deserialize(&mut deserializer).map_err(|e| decode_error(self.name(), e))?;
        let rest = deserializer
            .finalize()
            .map_err(|e| decode_error(self.name(), e))?;
        if rest.is_empty() {
            Ok(value)
        } else {
            Err(decode_error(
                self.name(),
                format_args!("{} bytes left over after the value", rest.len()),
            ))
        }
    }
}

/// Raw bytes: byte strings and strings are stored as they are, with no
/// framing at all. Id 4. Always available.
///
/// Encodes any value that serializes as a byte string or a string
/// (`Vec<u8>`, `[u8; N]`, `String`, `&str`, `serde_bytes::ByteBuf`, and
/// newtypes around them); anything else is an
/// [`ErrorKind::Serialization`] error. It decodes into the same types (a
/// `String` only from valid UTF-8).
///
/// To skip serde altogether, every [`Cache`](super::Cache) (whatever its
/// codec) also has [`get_bytes`](super::Cache::get_bytes) and
/// [`set_bytes`](super::Cache::set_bytes), which store
/// [`Bytes`](bytes::Bytes) as they are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct RawBytes;

/// The codec id of [`RawBytes`], also written by
/// [`Cache::set_bytes`](super::Cache::set_bytes).
pub(super) const RAW_BYTES_ID: u8 = 4;

impl Codec for RawBytes {
    fn id(&self) -> u8 {
        RAW_BYTES_ID
    }

    fn name(&self) -> &'static str {
        "raw bytes"
    }

    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>> {
        raw::to_bytes(value).map_err(|e| encode_error(self.name(), e))
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T> {
        raw::from_bytes(bytes).map_err(|e| decode_error(self.name(), e))
    }
}
