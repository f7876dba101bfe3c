//! The key layout: where a user key, its tag record and its tag sets live
//! in Redis (see the module docs of the backend), and which keys can share
//! one request in cluster mode.

use super::{INTERNAL, RedisBackend, cluster};

impl RedisBackend {
    /// The key as stored in Redis: the prefix, then `key`.
    #[cfg(feature = "near")]
    pub(crate) fn stored_key(&self, key: &str) -> Vec<u8> {
        self.data_key(key)
    }

    /// The slot tag of `key`'s slot in cluster mode, `None` standalone.
    pub(super) fn slot_of(&self, key: &str) -> Option<u16> {
        self.is_cluster()
            .then(|| cluster::hash_slot(&self.data_key(key)))
    }

    /// The indices of `keys` (stored keys) that can go in one request:
    /// all of them standalone, those of one slot each in cluster mode.
    pub(super) fn groups<K: AsRef<[u8]>>(&self, keys: &[K]) -> Vec<Vec<usize>> {
        if self.is_cluster() {
            cluster::group_by_slot(keys)
                .into_iter()
                .map(|(_, group)| group)
                .collect()
        } else {
            vec![(0..keys.len()).collect()]
        }
    }

    pub(super) fn data_key(&self, key: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.inner.prefix.len() + key.len());
        out.extend_from_slice(self.inner.prefix.as_bytes());
        out.extend_from_slice(key.as_bytes());
        out
    }

    /// `{prefix}\xFF{kind}:{name}`: an internal key.
    pub(super) fn internal_key(&self, kind: &str, name: &str) -> Vec<u8> {
        let mut out = self.internal_prefix(kind);
        out.extend_from_slice(name.as_bytes());
        out
    }

    pub(super) fn internal_prefix(&self, kind: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.inner.prefix.len() + 3 + kind.len());
        out.extend_from_slice(self.inner.prefix.as_bytes());
        out.push(INTERNAL);
        out.extend_from_slice(kind.as_bytes());
        out.push(b':');
        out
    }

    /// `{prefix}\xFF{kind}:`, then in cluster mode `{T}` where `T` is the
    /// slot tag of `slot`: the internal keys of one slot.
    pub(super) fn slot_prefix(&self, kind: &str, slot: Option<u16>) -> Vec<u8> {
        let mut out = self.internal_prefix(kind);
        if let Some(slot) = slot {
            out.push(b'{');
            out.extend_from_slice(cluster::slot_tag(slot).as_bytes());
            out.push(b'}');
        }
        out
    }

    /// The tags of `key`: `{prefix}\xFFk:key`, or `{prefix}\xFFk:{T}key` in
    /// cluster mode (in the slot of the key).
    pub(super) fn record_key(&self, key: &str) -> Vec<u8> {
        let mut out = self.slot_prefix("k", self.slot_of(key));
        out.extend_from_slice(key.as_bytes());
        out
    }

    /// The prefix of the tag sets that may hold `key`.
    pub(super) fn tag_prefix(&self, key: &str) -> Vec<u8> {
        self.slot_prefix("t", self.slot_of(key))
    }
}
