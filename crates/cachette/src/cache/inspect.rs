//! Stored entries as a tool sees them: the stored key of a cache key, and
//! stored bytes read back into an envelope's header and its payload,
//! without decoding the value. The `cachette get --namespace` command is
//! built on this; the layout itself is in the [module docs](super).

use bytes::Bytes;

use crate::error::{Error, ErrorKind, Result};

use super::Cache;
use super::codec::{self, Codec, NAME};
use super::envelope::{self, FLAG_COMPRESSED};

/// The header of an envelope (see "Stored layouts" in the
/// [module docs](super)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EnvelopeHeader {
    /// The id of the codec that wrote the payload ([`Codec::id`]).
    pub codec_id: u8,
    /// The name of the cachette codec with that id (`"json"`,
    /// `"msgpack"`, `"postcard"`, `"raw bytes"`), whether or not this
    /// build has it; `None` for a codec of the application's own.
    pub codec_name: Option<&'static str>,
    /// When the value was written, Unix ms.
    pub created_unix_ms: u64,
    /// After this (Unix ms) the value is stale; `None` without a soft TTL.
    pub soft_deadline_unix_ms: Option<u64>,
    /// After this (Unix ms) only fail-safe may serve the value; `None`
    /// when the backend's TTL is the deadline.
    pub hard_deadline_unix_ms: Option<u64>,
    /// Whether the payload was stored LZ4-compressed (the
    /// [`StoredValue::payload`] is decompressed).
    pub compressed: bool,
    /// The caller's key, stored for hashed keys.
    pub original_key: Option<String>,
    /// A cached "not found" of a loader (no payload).
    pub negative: bool,
}

/// Stored bytes as the typed [`Cache`] reads them: a plain value, or an
/// envelope's header and its payload.
///
/// ```
/// use bytes::Bytes;
/// use cachette::cache::StoredValue;
///
/// let plain = StoredValue::parse(Bytes::from_static(b"hello"), 1 << 20)?;
/// assert!(plain.envelope.is_none());
/// assert_eq!(&plain.payload[..], b"hello");
/// # Ok::<(), cachette::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoredValue {
    /// The envelope's header; `None` for a plain value.
    pub envelope: Option<EnvelopeHeader>,
    /// The codec's output: the stored bytes of a plain value, or the
    /// envelope's payload, decompressed.
    pub payload: Bytes,
}

impl StoredValue {
    /// Reads stored bytes: an envelope when they start with its magic
    /// bytes, else a plain value. A compressed payload declaring more than
    /// `max_decompressed` bytes is not decompressed.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Serialization`] for bytes that start with the magic
    /// bytes and are not a readable envelope (an unknown format version,
    /// unknown flags, a truncated header, a payload that does not
    /// decompress, or one that needs the `lz4` feature); the message says
    /// which.
    pub fn parse(bytes: Bytes, max_decompressed: usize) -> Result<Self> {
        if !envelope::is_envelope(&bytes) {
            return Ok(StoredValue {
                envelope: None,
                payload: bytes,
            });
        }
        let compressed = bytes
            .get(6)
            .is_some_and(|flags| flags & FLAG_COMPRESSED != 0);
        let parsed = envelope::decode(&bytes, max_decompressed).map_err(|error| {
            Error::new(ErrorKind::Serialization, NAME, error.to_string()).with_operation("inspect")
        })?;
        let meta = parsed.meta;
        let nonzero = |ms: u64| (ms != 0).then_some(ms);
        Ok(StoredValue {
            envelope: Some(EnvelopeHeader {
                codec_id: meta.codec,
                codec_name: codec::known_name(meta.codec),
                created_unix_ms: meta.created,
                soft_deadline_unix_ms: nonzero(meta.soft_deadline),
                hard_deadline_unix_ms: nonzero(meta.hard_deadline),
                compressed,
                original_key: meta.original_key,
                negative: meta.negative,
            }),
            payload: parsed.payload,
        })
    }
}

impl<C: Codec> Cache<C> {
    /// The key under which the backend stores `key` now:
    /// `{namespace}:v{version}:{key}`, or the hashed form for a long key
    /// (see "Keys" in the [module docs](super)). For tools that read what
    /// the cache wrote with the backend alone.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> cachette::Result<()> {
    /// let backend = Arc::new(cachette::MemoryBackend::default());
    /// let cache = cachette::cache::Cache::builder(backend).namespace("users").build().await?;
    /// assert_eq!(cache.stored_key("42")?, "users:v0:42");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] for an empty key.
    pub fn stored_key(&self, key: &str) -> Result<String> {
        Ok(self.inner.keys.stored(key)?.full.as_str().to_owned())
    }
}
