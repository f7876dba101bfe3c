//! How a cachette key becomes a memcached key.
//!
//! The stored key is the backend's prefix, the namespace generation of the
//! server (see `clear`), `:` and the key. memcached takes keys of at most
//! 250 bytes with no spaces or control characters; such a key is sent as
//! it is. Any other key is sent base64-encoded with the `b` flag when its
//! encoding fits in 250 bytes (raw keys of up to 186 bytes), and otherwise
//! replaced by the byte `0xFF`, `h:` and the base64 of its SHA-256 digest,
//! with the original key kept in the stored value and compared on every
//! read (a different key there reads as a miss). `0xFF` never occurs in
//! UTF-8, so no key of a caller can take a digest's place. No key is
//! refused or truncated.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

use super::proto::WireKey;

/// memcached's key limit, in bytes, after any base64 encoding.
pub(crate) const MAX_WIRE_KEY: usize = 250;

/// What stands in a stored key for a key replaced by its digest: `0xFF`
/// (never in UTF-8), then `h:`.
pub(crate) const DIGEST_MARKER: &[u8] = b"\xFFh:";

/// The longest raw key whose base64 fits in [`MAX_WIRE_KEY`].
pub(crate) const MAX_BASE64_RAW: usize = MAX_WIRE_KEY / 4 * 3;

/// A stored key, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerKey {
    /// What goes on the wire (base64 text when `base64`).
    pub(crate) wire: Vec<u8>,
    pub(crate) base64: bool,
    /// Whether the key was replaced by its digest: the stored value then
    /// carries the original key.
    pub(crate) hashed: bool,
    /// The bytes the rings route on: the key before any encoding, so that
    /// a plain key lands where other clients put it.
    pub(crate) route: Vec<u8>,
}

impl ServerKey {
    /// The stored key for `key` under `namespace` (the prefix and the
    /// generation, `prefix{generation}:`).
    pub(crate) fn new(namespace: &str, key: &str) -> ServerKey {
        let mut raw = Vec::with_capacity(namespace.len() + key.len());
        raw.extend_from_slice(namespace.as_bytes());
        raw.extend_from_slice(key.as_bytes());
        if raw.len() <= MAX_WIRE_KEY && raw.iter().all(|&byte| is_plain(byte)) {
            return ServerKey {
                wire: raw.clone(),
                base64: false,
                hashed: false,
                route: raw,
            };
        }
        if raw.len() <= MAX_BASE64_RAW {
            return ServerKey {
                wire: STANDARD.encode(&raw).into_bytes(),
                base64: true,
                hashed: false,
                route: raw,
            };
        }
        let mut hashed = Vec::with_capacity(namespace.len() + 48);
        hashed.extend_from_slice(namespace.as_bytes());
        hashed.extend_from_slice(DIGEST_MARKER);
        hashed.extend_from_slice(STANDARD.encode(Sha256::digest(key.as_bytes())).as_bytes());
        // A long namespace with a digest may still not be plain or short.
        let plain = hashed.len() <= MAX_WIRE_KEY && hashed.iter().all(|&byte| is_plain(byte));
        ServerKey {
            wire: if plain {
                hashed.clone()
            } else {
                STANDARD.encode(&hashed).into_bytes()
            },
            base64: !plain,
            hashed: true,
            route: hashed,
        }
    }

    /// The key of an item as the server stores it (a listing shows these
    /// bytes), ready to send back.
    pub(crate) fn from_stored(stored: &[u8]) -> ServerKey {
        let plain = stored.len() <= MAX_WIRE_KEY && stored.iter().all(|&byte| is_plain(byte));
        ServerKey {
            wire: if plain {
                stored.to_vec()
            } else {
                STANDARD.encode(stored).into_bytes()
            },
            base64: !plain,
            hashed: stored
                .windows(DIGEST_MARKER.len())
                .any(|w| w == DIGEST_MARKER),
            route: stored.to_vec(),
        }
    }

    /// The key as [`proto`](super::proto) writes it.
    pub(crate) fn wire(&self) -> WireKey<'_> {
        WireKey {
            bytes: &self.wire,
            base64: self.base64,
        }
    }
}

/// A byte memcached takes in a key as it is: printable, not a space.
fn is_plain(byte: u8) -> bool {
    byte > b' ' && byte != 0x7f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_short_keys_go_as_they_are() {
        let key = ServerKey::new("app:0123456789abcdef:", "user:42");
        assert_eq!(key.wire, b"app:0123456789abcdef:user:42");
        assert!(!key.base64 && !key.hashed);
        assert_eq!(key.route, key.wire);
    }

    #[test]
    fn spaces_control_characters_and_long_keys_are_encoded_not_refused() {
        for (user, base64, hashed) in [
            ("with space", true, false),
            ("tab\there", true, false),
            ("line\r\nbreak", true, false),
            ("\u{7f}", true, false),
            ("é", false, false),
            (&"x".repeat(250 - 3), false, false),
            (&"x".repeat(251 - 3), false, true),
            (&" ".repeat(MAX_BASE64_RAW - 3), true, false),
            (&" ".repeat(MAX_BASE64_RAW - 2), false, true),
            (&"y ".repeat(5_000), false, true),
        ] {
            let key = ServerKey::new("ns:", user);
            assert_eq!((key.base64, key.hashed), (base64, hashed), "{user:?}");
            assert!(key.wire.len() <= MAX_WIRE_KEY, "{user:?}");
            assert!(key.wire.iter().all(|&b| is_plain(b)), "{user:?}");
        }
        assert_eq!(MAX_BASE64_RAW, 186);
    }

    /// memcached stores a base64 key decoded (`ms YWJj b` and `ms abc`
    /// are one item), so the stored identity is the routed bytes.
    #[test]
    fn distinct_keys_stay_distinct_on_the_server() {
        let long = |c: &str| c.repeat(400);
        let keys = [
            ServerKey::new("n:", &long("a")),
            ServerKey::new("n:", &long("b")),
            ServerKey::new("n:", "a b"),
            ServerKey::new("n:", "a\tb"),
            ServerKey::new("n:", "YSBi"),
            // A caller's key that looks like a digest slot in UTF-8.
            ServerKey::new("n:", &format!("\u{FF}h:{}", "x".repeat(44))),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a.route, b.route);
            }
        }
    }
}
