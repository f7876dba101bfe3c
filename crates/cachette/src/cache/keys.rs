//! Stored keys: namespace, key version, and hashing of long keys.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

use super::codec::NAME;

/// The prefix of hashed keys (after `{namespace}:v{version}:`). A key the
/// caller writes with this prefix is hashed too, so that every stored key
/// of this form carries its original key in the envelope.
pub(super) const HASHED_PREFIX: &str = "#h:";

/// The function that hashes long keys: FNV-1a, 128 bits (stable across
/// processes, platforms and releases, which a stored key must be).
pub(super) type KeyHasher = fn(&str) -> u128;

/// FNV-1a with 128 bits of state.
pub(super) fn fnv1a_128(key: &str) -> u128 {
    const OFFSET_BASIS: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    key.bytes().fold(OFFSET_BASIS, |hash, byte| {
        (hash ^ u128::from(byte)).wrapping_mul(PRIME)
    })
}

/// The longest stored key this cache can produce beyond the namespace:
/// `:v` + a 20-digit version + `:#h:` + 32 hex digits.
const LONGEST_SUFFIX: usize = 2 + 20 + 1 + HASHED_PREFIX.len() + 32;

/// A stored key. Built on every operation from the cached prefix with one
/// allocation of the exact size.
#[derive(Clone)]
pub(super) struct KeyString(String);

impl KeyString {
    pub(super) fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for KeyString {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for KeyString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for KeyString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq for KeyString {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for KeyString {}

/// A key as the backend sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StoredKey {
    /// `{namespace}:v{version}:{key}` or `{namespace}:v{version}:#h:{hash}`.
    pub(super) full: KeyString,
    /// Whether the caller's key was hashed (then the envelope carries it).
    pub(super) hashed: bool,
}

/// The key space of one cache: its namespace, its current key version and
/// the backend's key limit.
#[derive(Debug)]
pub(super) struct KeySpace {
    namespace: String,
    version: AtomicU64,
    max_key_len: usize,
    hasher: KeyHasher,
    /// `{namespace}:v{version}:` for the version it was built for: every
    /// operation needs it, the version changes rarely.
    prefix: parking_lot::RwLock<(u64, String)>,
}

impl KeySpace {
    /// Checks the namespace against the backend's key limit.
    pub(super) fn new(namespace: String, max_key_len: usize, hasher: KeyHasher) -> Result<Self> {
        if namespace.is_empty() {
            return Err(Error::config(NAME, "the namespace is empty"));
        }
        if let Some(bad) = namespace
            .chars()
            .find(|c| *c == ':' || c.is_whitespace() || c.is_control())
        {
            return Err(Error::config(
                NAME,
                format!(
                    "the namespace must not contain {bad:?} (no `:`, whitespace or control characters)"
                ),
            ));
        }
        if namespace.len() + LONGEST_SUFFIX > max_key_len {
            return Err(Error::config(
                NAME,
                format!(
                    "the namespace is {} bytes long; with the version and a hashed key it must fit \
                     in this backend's key limit of {max_key_len} bytes (at most {} bytes)",
                    namespace.len(),
                    max_key_len.saturating_sub(LONGEST_SUFFIX)
                ),
            ));
        }
        let prefix = format!("{namespace}:v0:");
        Ok(KeySpace {
            namespace,
            version: AtomicU64::new(0),
            max_key_len,
            hasher,
            prefix: parking_lot::RwLock::new((0, prefix)),
        })
    }

    pub(super) fn namespace(&self) -> &str {
        &self.namespace
    }

    pub(super) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Raises the version to `version` if it is higher; returns the
    /// version now in force.
    pub(super) fn raise_version(&self, version: u64) -> u64 {
        self.version
            .fetch_max(version, Ordering::AcqRel)
            .max(version)
    }

    /// Where the key version is persisted: `{namespace}:__version`.
    pub(super) fn version_key(&self) -> String {
        format!("{}:__version", self.namespace)
    }

    /// The distributed lock of a stored key: `{namespace}:__lock:{hash}`.
    pub(super) fn lock_key(&self, stored: &StoredKey) -> String {
        format!(
            "{}:__lock:{:032x}",
            self.namespace,
            (self.hasher)(stored.full.as_str())
        )
    }

    /// A tag as stored: `{namespace}:{tag}`, so that caches with other
    /// namespaces over the same backend keep their tags apart.
    pub(super) fn tag(&self, tag: &str) -> String {
        format!("{}:{tag}", self.namespace)
    }

    /// The stored key of `key` under the current version.
    pub(super) fn stored(&self, key: &str) -> Result<StoredKey> {
        if key.is_empty() {
            return Err(Error::invalid_input(NAME, "the key is empty"));
        }
        let version = self.version();
        let cached = self.prefix.read();
        let guard = if cached.0 == version {
            cached
        } else {
            drop(cached);
            let mut stale = self.prefix.write();
            *stale = (version, format!("{}:v{version}:", self.namespace));
            parking_lot::RwLockWriteGuard::downgrade(stale)
        };
        let prefix = guard.1.as_str();
        let hashed = prefix.len() + key.len() > self.max_key_len || key.starts_with(HASHED_PREFIX);
        let full = if hashed {
            format!("{prefix}{HASHED_PREFIX}{:032x}", (self.hasher)(key))
        } else {
            let mut full = String::with_capacity(prefix.len() + key.len());
            full.push_str(prefix);
            full.push_str(key);
            full
        };
        let full = KeyString(full);
        Ok(StoredKey { full, hashed })
    }
}

/// What a backend held at a key when a load started, to tell at store
/// time whether someone else wrote meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fingerprint {
    /// The read failed: nothing to compare with.
    Unknown,
    /// No entry.
    Missing,
    /// An entry with this hash (in-process only, not stored anywhere).
    Bytes(u64),
}

impl Fingerprint {
    pub(super) fn of(bytes: Option<&[u8]>) -> Fingerprint {
        use std::hash::BuildHasher;
        match bytes {
            None => Fingerprint::Missing,
            Some(bytes) => {
                Fingerprint::Bytes(foldhash::quality::FixedState::with_seed(0).hash_one(bytes))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_128_matches_the_reference_vectors() {
        assert_eq!(fnv1a_128(""), 0x6c62272e07bb014262b821756295c58d);
        assert_eq!(fnv1a_128("a"), 0xd228cb696f1a8caf78912b704e4a8964);
    }

    #[test]
    fn the_prefix_follows_the_version() {
        let space = KeySpace::new("ns".into(), 4096, fnv1a_128).unwrap_or_else(|e| panic!("{e}"));
        let key = |space: &KeySpace| space.stored("k").unwrap_or_else(|e| panic!("{e}")).full;
        assert_eq!(key(&space).as_str(), "ns:v0:k");
        space.raise_version(u64::MAX);
        assert_eq!(key(&space).as_str(), format!("ns:v{}:k", u64::MAX));
    }

    #[test]
    fn long_and_hash_like_keys_are_hashed() {
        let space = KeySpace::new("ns".into(), 80, fnv1a_128).unwrap_or_else(|e| panic!("{e}"));
        let short = space.stored("short").unwrap();
        assert_eq!((short.full.as_str(), short.hashed), ("ns:v0:short", false));
        let long_inline = space.stored(&"y".repeat(70)).unwrap();
        assert_eq!(
            long_inline.full.len(),
            76,
            "past the inline size: on the heap"
        );
        assert!(!long_inline.hashed);
        let long = space.stored(&"x".repeat(80)).unwrap();
        assert!(long.hashed);
        assert!(long.full.starts_with("ns:v0:#h:"));
        assert!(space.stored("#h:abc").unwrap().hashed);
    }

    #[test]
    fn bad_namespaces_are_config_errors() {
        for bad in ["", "a:b", "a b", "a\nb"] {
            assert!(
                KeySpace::new(bad.into(), 4096, fnv1a_128).is_err(),
                "{bad:?}"
            );
        }
        assert!(KeySpace::new("n".repeat(4096), 4096, fnv1a_128).is_err());
    }
}
