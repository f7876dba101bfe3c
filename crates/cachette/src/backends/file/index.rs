//! The in-memory index of one process: what it knows of the directory,
//! for the bounds (LRU eviction) and for tags.
//!
//! The files are the truth; the index only picks candidates. It is built
//! by one scan at open, updated by this process's own operations, and
//! learns of entries written by other processes when it reads them or at
//! the next full scan (`purge_expired`). Every candidate it names is
//! checked against its file before anything is removed.

use std::collections::{BTreeSet, HashMap, HashSet};

/// What the index keeps of one entry.
#[derive(Debug, Clone)]
pub(super) struct Meta {
    /// The LRU stamp: larger is more recent.
    stamp: u64,
    /// The size of the file in bytes.
    pub(super) size: u64,
    /// The entry's tags.
    pub(super) tags: Vec<String>,
}

#[derive(Debug, Default)]
pub(super) struct Index {
    entries: HashMap<u128, Meta>,
    /// `(stamp, hash)` in LRU order: the first is the least recently used.
    order: BTreeSet<(u64, u128)>,
    tags: HashMap<String, HashSet<u128>>,
    next_stamp: u64,
    bytes: u64,
}

impl Index {
    /// Entries known.
    pub(super) fn len(&self) -> u64 {
        self.entries.len() as u64
    }

    /// Bytes of the files known.
    pub(super) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The stamp the next access will get; entries stamped before it were
    /// last seen before now.
    pub(super) fn next_stamp(&self) -> u64 {
        self.next_stamp
    }

    pub(super) fn contains(&self, hash: u128) -> bool {
        self.entries.contains_key(&hash)
    }

    /// Records a write or a read of an entry of `size` bytes with `tags`
    /// as its most recent use. Returns the entry it replaces, if known.
    pub(super) fn record(&mut self, hash: u128, size: u64, tags: &[String]) -> Option<Meta> {
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        match self.entries.get_mut(&hash) {
            Some(meta) => {
                let old = meta.clone();
                self.order.remove(&(meta.stamp, hash));
                self.order.insert((stamp, hash));
                meta.stamp = stamp;
                self.bytes = self.bytes - meta.size + size;
                meta.size = size;
                if meta.tags != tags {
                    let new_tags = tags.to_vec();
                    let old_tags = std::mem::replace(&mut meta.tags, new_tags);
                    self.untag(hash, &old_tags);
                    self.tag(hash, tags);
                }
                Some(old)
            }
            None => {
                self.entries.insert(
                    hash,
                    Meta {
                        stamp,
                        size,
                        tags: tags.to_vec(),
                    },
                );
                self.order.insert((stamp, hash));
                self.bytes += size;
                self.tag(hash, tags);
                None
            }
        }
    }

    /// Forgets an entry (removed, or found missing).
    pub(super) fn forget(&mut self, hash: u128) -> Option<Meta> {
        let meta = self.entries.remove(&hash)?;
        self.order.remove(&(meta.stamp, hash));
        self.bytes -= meta.size;
        self.untag(hash, &meta.tags);
        Some(meta)
    }

    /// Whether the index holds more than the bounds allow.
    pub(super) fn over(&self, max_entries: Option<u64>, max_bytes: Option<u64>) -> bool {
        max_entries.is_some_and(|max| self.len() > max)
            || max_bytes.is_some_and(|max| self.bytes > max)
    }

    /// Takes the least recently used entry out of the index.
    pub(super) fn pop_least_recent(&mut self) -> Option<(u128, Meta)> {
        let &(_, hash) = self.order.first()?;
        self.forget(hash).map(|meta| (hash, meta))
    }

    /// The entries tagged with any of `tags`, each once.
    pub(super) fn tagged(&self, tags: &[&str]) -> Vec<u128> {
        let mut found = HashSet::new();
        for tag in tags {
            if let Some(hashes) = self.tags.get(*tag) {
                found.extend(hashes.iter().copied());
            }
        }
        found.into_iter().collect()
    }

    /// Forgets the entries last used before `stamp` that are not in
    /// `seen` (a full scan did not find their files).
    pub(super) fn retain_seen(&mut self, seen: &HashSet<u128>, stamp: u64) {
        let gone: Vec<u128> = self
            .entries
            .iter()
            .filter(|(hash, meta)| meta.stamp < stamp && !seen.contains(*hash))
            .map(|(hash, _)| *hash)
            .collect();
        for hash in gone {
            self.forget(hash);
        }
    }

    pub(super) fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
        self.tags.clear();
        self.bytes = 0;
    }

    fn tag(&mut self, hash: u128, tags: &[String]) {
        for tag in tags {
            self.tags.entry(tag.clone()).or_default().insert(hash);
        }
    }

    fn untag(&mut self, hash: u128, tags: &[String]) {
        for tag in tags {
            if let Some(hashes) = self.tags.get_mut(tag) {
                hashes.remove(&hash);
                if hashes.is_empty() {
                    self.tags.remove(tag);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn least_recent_goes_first_and_a_read_refreshes() {
        let mut index = Index::default();
        index.record(1, 10, &[]);
        index.record(2, 20, &[]);
        index.record(3, 30, &[]);
        index.record(1, 10, &[]);
        assert_eq!((index.len(), index.bytes()), (3, 60));
        assert!(index.over(Some(2), None) && index.over(None, Some(59)));
        assert_eq!(index.pop_least_recent().map(|(h, _)| h), Some(2));
        assert_eq!(index.pop_least_recent().map(|(h, _)| h), Some(3));
        assert_eq!((index.len(), index.bytes()), (1, 10));
    }

    #[test]
    fn tags_follow_overwrites_and_removals() {
        let mut index = Index::default();
        index.record(1, 1, &tags(&["a", "b"]));
        index.record(2, 1, &tags(&["b"]));
        let mut b = index.tagged(&["b"]);
        b.sort();
        assert_eq!(b, [1, 2]);
        index.record(1, 1, &tags(&["c"]));
        assert_eq!(index.tagged(&["a"]), Vec::<u128>::new());
        assert_eq!(index.tagged(&["b", "c", "b"]).len(), 2);
        index.forget(2);
        assert_eq!(index.tagged(&["b"]), Vec::<u128>::new());
        assert!(!index.tags.contains_key("b"));
    }

    #[test]
    fn retain_seen_keeps_recent_entries() {
        let mut index = Index::default();
        index.record(1, 1, &[]);
        index.record(2, 1, &[]);
        let stamp = index.next_stamp();
        index.record(3, 1, &[]);
        index.retain_seen(&HashSet::from([2]), stamp);
        assert!(!index.contains(1) && index.contains(2) && index.contains(3));
    }
}
