//! Stored keys: namespace, key version, and hashing of long keys.

use std::borrow::Cow;
use std::fmt::Write as _;
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
const LONGEST_SUFFIX: usize = 2 + LONGEST_VERSION + HASHED_PREFIX.len() + 32;

/// The longest `{version}:` (20 digits).
const LONGEST_VERSION: usize = 20 + 1;

/// A stored key that outlives the call that built it (across an `.await`,
/// or kept by a load). Reads that the backend answers at once use
/// [`KeySpace::with_stored`] instead, which builds short keys on the
/// stack.
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

impl StoredKey {
    /// What tells this key apart in this process (single-flight, fail-safe
    /// copies): the stored key, followed by the original key when hashed,
    /// since two keys may hash alike.
    pub(super) fn identity(&self, key: &str) -> Cow<'_, str> {
        if self.hashed {
            Cow::Owned(format!("{}{key}", self.full))
        } else {
            Cow::Borrowed(self.full.as_str())
        }
    }

    #[inline]
    pub(super) fn borrowed(&self) -> StoredRef<'_> {
        StoredRef {
            full: self.full.as_str(),
            hashed: self.hashed,
        }
    }
}

/// A stored key, borrowed from a [`StoredKey`] or from a stack key of
/// [`KeySpace::with_stored`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct StoredRef<'a> {
    /// As in [`StoredKey::full`].
    pub(super) full: &'a str,
    /// As in [`StoredKey::hashed`].
    pub(super) hashed: bool,
}

/// Stored keys up to this long are built on the stack.
const INLINE_KEY: usize = 96;

/// A string of at most [`INLINE_KEY`] bytes on the stack. In a module of
/// its own so that only its methods write the bytes.
mod inline {
    use super::INLINE_KEY;

    #[derive(Clone, Copy)]
    pub(super) struct InlineKey {
        /// Only whole `&str`s and ASCII digits are ever copied in, so
        /// `bytes[..len]` is always UTF-8.
        bytes: [u8; INLINE_KEY],
        len: usize,
    }

    impl InlineKey {
        /// `s`, if it fits with `spare` bytes left over.
        pub(super) fn with_spare(s: &str, spare: usize) -> Option<Self> {
            if s.len() + spare > INLINE_KEY {
                return None;
            }
            let mut key = InlineKey {
                bytes: [0; INLINE_KEY],
                len: 0,
            };
            key.push(s);
            Some(key)
        }

        #[inline]
        pub(super) fn len(&self) -> usize {
            self.len
        }

        /// Appends `s`. Panics if it does not fit: callers check.
        #[inline]
        pub(super) fn push(&mut self, s: &str) {
            let end = self.len + s.len();
            self.bytes[self.len..end].copy_from_slice(s.as_bytes());
            self.len = end;
        }

        /// Appends `n` in decimal (up to 20 digits). Panics if it does not
        /// fit: callers check.
        #[inline]
        pub(super) fn push_decimal(&mut self, n: u64) {
            let start = self.len;
            let mut rest = n;
            loop {
                // `rest % 10` is one digit.
                self.bytes[self.len] = b'0' + (rest % 10) as u8;
                self.len += 1;
                rest /= 10;
                if rest == 0 {
                    break;
                }
            }
            self.bytes[start..self.len].reverse();
        }

        #[inline]
        pub(super) fn as_str(&self) -> &str {
            // SAFETY: `bytes[..len]` holds only whole `&str`s and ASCII
            // digits (`push`, `push_decimal`), so it is UTF-8. Checking it
            // would cost as much as the rest of a memory hit's key.
            unsafe { std::str::from_utf8_unchecked(&self.bytes[..self.len]) }
        }
    }

    impl std::fmt::Debug for InlineKey {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            std::fmt::Debug::fmt(self.as_str(), f)
        }
    }
}

use inline::InlineKey;

/// The key space of one cache: its namespace, its current key version and
/// the backend's key limit.
#[derive(Debug)]
pub(super) struct KeySpace {
    namespace: String,
    /// `{namespace}:v`, the start of every stored key, ready to be copied
    /// and completed on the stack; `None` when the namespace is too long
    /// for a stack key.
    key_start: Option<InlineKey>,
    version: AtomicU64,
    max_key_len: usize,
    hasher: KeyHasher,
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
        Ok(KeySpace {
            key_start: InlineKey::with_spare(&format!("{namespace}:v"), LONGEST_VERSION),
            namespace,
            version: AtomicU64::new(0),
            max_key_len,
            hasher,
        })
    }

    pub(super) fn namespace(&self) -> &str {
        &self.namespace
    }

    #[inline]
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

    /// The marker of a replaced key version: `{namespace}:__retired:v{old}`.
    pub(super) fn retired_key(&self, old: u64) -> String {
        format!("{}:__retired:v{old}", self.namespace)
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

    /// The stored key of `key` under the current version, in one
    /// allocation of the exact size.
    pub(super) fn stored(&self, key: &str) -> Result<StoredKey> {
        check_key(key)?;
        let prefix = self.key_start.map(|mut start| {
            self.push_version(&mut start);
            start
        });
        Ok(self.heap_key(prefix.as_ref(), key))
    }

    /// Calls `f` with the stored key of `key` under the current version,
    /// built on the stack unless it is long or hashed: no lock, no
    /// allocation and no formatting. For reads that the backend answers at
    /// once ([`Backend::get_ready`](crate::Backend::get_ready)).
    #[inline]
    pub(super) fn with_stored<R>(
        &self,
        key: &str,
        f: impl FnOnce(StoredRef<'_>) -> Result<R>,
    ) -> Result<R> {
        check_key(key)?;
        let Some(mut inline) = self.key_start else {
            return f(self.heap_key(None, key).borrowed());
        };
        self.push_version(&mut inline);
        if !self.must_hash(inline.len(), key) && inline.len() + key.len() <= INLINE_KEY {
            inline.push(key);
            return f(StoredRef {
                full: inline.as_str(),
                hashed: false,
            });
        }
        f(self.heap_key(Some(&inline), key).borrowed())
    }

    /// Completes `{namespace}:v` (from `key_start`) to
    /// `{namespace}:v{version}:` with the current version.
    #[inline]
    fn push_version(&self, start: &mut InlineKey) {
        start.push_decimal(self.version());
        start.push(":");
    }

    /// The stored key of `key` (not empty) on the heap, after `prefix`
    /// (`{namespace}:v{version}:`, built when the namespace is short).
    fn heap_key(&self, prefix: Option<&InlineKey>, key: &str) -> StoredKey {
        let formatted;
        let prefix = match prefix {
            Some(prefix) => prefix.as_str(),
            None => {
                formatted = format!("{}:v{}:", self.namespace, self.version());
                &formatted
            }
        };
        let hashed = self.must_hash(prefix.len(), key);
        let tail = if hashed {
            HASHED_PREFIX.len() + 32
        } else {
            key.len()
        };
        let mut full = String::with_capacity(prefix.len() + tail);
        full.push_str(prefix);
        if hashed {
            // Writing into a `String` cannot fail.
            let _ = write!(full, "{HASHED_PREFIX}{:032x}", (self.hasher)(key));
        } else {
            full.push_str(key);
        }
        StoredKey {
            full: KeyString(full),
            hashed,
        }
    }

    /// Whether `key` after a prefix of `prefix_len` bytes must be hashed:
    /// too long for the backend, or shaped like a hashed key.
    #[inline]
    fn must_hash(&self, prefix_len: usize, key: &str) -> bool {
        prefix_len + key.len() > self.max_key_len || key.starts_with(HASHED_PREFIX)
    }
}

/// Rejects the empty key.
#[inline]
fn check_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::invalid_input(NAME, "the key is empty"));
    }
    Ok(())
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
            "a long key within the limit is kept whole"
        );
        assert!(!long_inline.hashed);
        let long = space.stored(&"x".repeat(80)).unwrap();
        assert!(long.hashed);
        assert!(long.full.starts_with("ns:v0:#h:"));
        assert!(space.stored("#h:abc").unwrap().hashed);
    }

    #[test]
    fn stack_keys_equal_heap_keys() {
        let keys = [
            "k".to_owned(),
            "#h:abc".to_owned(),
            "é:ü".to_owned(),
            "x".repeat(60),
            "y".repeat(100),
            "z".repeat(300),
        ];
        for namespace in ["ns".to_owned(), "n".repeat(80)] {
            let space = KeySpace::new(namespace.clone(), 250, fnv1a_128).unwrap();
            for version in [0, 7, 10, 12_345, u64::MAX] {
                space.raise_version(version);
                for key in &keys {
                    let heap = space.stored(key).unwrap();
                    let stack = space
                        .with_stored(key, |stored| Ok(stored.full.to_owned()))
                        .unwrap();
                    assert_eq!(stack, heap.full.as_str(), "{namespace} v{version} {key}");
                    let hashed = space.with_stored(key, |stored| Ok(stored.hashed)).unwrap();
                    assert_eq!(hashed, heap.hashed);
                    if !heap.hashed {
                        assert_eq!(stack, format!("{namespace}:v{version}:{key}"));
                    }
                }
            }
        }
    }

    #[test]
    fn the_empty_key_is_invalid_input() {
        let space = KeySpace::new("ns".into(), 4096, fnv1a_128).unwrap();
        assert!(space.stored("").is_err());
        assert!(space.with_stored("", |_| Ok(())).is_err());
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
