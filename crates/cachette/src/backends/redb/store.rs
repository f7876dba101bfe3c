//! The tables of one namespace and every change to them.
//!
//! All index upkeep lives here, inside one redb transaction at a time, so
//! that the entries, the deadline index, the write-order index and the two
//! tag indexes can only change together.

use std::collections::BTreeSet;
use std::ops::Bound;

use redb::{
    MultimapTable, MultimapTableDefinition, ReadOnlyTable, ReadTransaction, ReadableTable,
    ReadableTableMetadata, Table, TableDefinition, WriteTransaction,
};

use crate::backend::{SetCondition, add_to_counter};
use crate::backends::common::{Event, Tally};
use crate::error::{Error, Result};

use super::{NAME, RedbResult};

/// The length of the header in front of every stored value: the deadline
/// and the write sequence number, both `u64` big-endian.
pub(crate) const HEADER_LEN: usize = 16;

/// How many expired entries each write transaction removes on the side.
pub(super) const PURGE_PER_WRITE: u64 = 16;

/// The format of the tables, recorded in [`META`]; a database written in
/// another format is refused instead of misread.
pub(super) const FORMAT_VERSION: u64 = 1;

/// One table per database: `format` → [`FORMAT_VERSION`].
pub(super) const META: TableDefinition<'static, &'static str, u64> =
    TableDefinition::new("cachette/meta");

type Entries<'t> = Table<'t, &'static [u8], &'static [u8]>;
type Expiry<'t> = Table<'t, (u64, &'static [u8]), ()>;
type Order<'t> = Table<'t, u64, &'static [u8]>;
type Index<'t> = MultimapTable<'t, &'static [u8], &'static [u8]>;

/// The names of the five tables of one namespace.
#[derive(Debug)]
pub(super) struct TableNames {
    entries: String,
    expiry: String,
    order: String,
    tags: String,
    entry_tags: String,
}

impl TableNames {
    pub(super) fn new(namespace: &str) -> Self {
        let name = |table: &str| format!("cachette/{namespace}/{table}");
        TableNames {
            entries: name("entries"),
            expiry: name("expiry"),
            order: name("order"),
            tags: name("tags"),
            entry_tags: name("entry_tags"),
        }
    }

    /// key → header + value.
    pub(super) fn entries(&self) -> TableDefinition<'_, &'static [u8], &'static [u8]> {
        TableDefinition::new(&self.entries)
    }

    /// (deadline, key) → (), for entries that expire.
    pub(super) fn expiry(&self) -> TableDefinition<'_, (u64, &'static [u8]), ()> {
        TableDefinition::new(&self.expiry)
    }

    /// write sequence number → key, oldest first (the eviction order).
    pub(super) fn order(&self) -> TableDefinition<'_, u64, &'static [u8]> {
        TableDefinition::new(&self.order)
    }

    /// tag → keys.
    pub(super) fn tags(&self) -> MultimapTableDefinition<'_, &'static [u8], &'static [u8]> {
        MultimapTableDefinition::new(&self.tags)
    }

    /// key → tags, so that an overwrite, a delete or an expiry finds the
    /// tag rows to remove.
    pub(super) fn entry_tags(&self) -> MultimapTableDefinition<'_, &'static [u8], &'static [u8]> {
        MultimapTableDefinition::new(&self.entry_tags)
    }
}

/// What precedes each stored value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// Absolute deadline in Unix milliseconds; 0 = never expires.
    pub(super) deadline: u64,
    /// The write that stored the value, for the write-order index.
    pub(super) seq: u64,
}

impl Header {
    pub(crate) fn encode(self) -> [u8; HEADER_LEN] {
        let mut out = [0; HEADER_LEN];
        out[..8].copy_from_slice(&self.deadline.to_be_bytes());
        out[8..].copy_from_slice(&self.seq.to_be_bytes());
        out
    }

    /// `None` for a value too short to hold a header (corrupt).
    pub(crate) fn decode(raw: &[u8]) -> Option<Header> {
        let deadline = u64::from_be_bytes(raw.get(..8)?.try_into().ok()?);
        let seq = u64::from_be_bytes(raw.get(8..HEADER_LEN)?.try_into().ok()?);
        Some(Header { deadline, seq })
    }

    pub(super) fn is_expired(self, now: u64) -> bool {
        self.deadline != 0 && self.deadline <= now
    }
}

/// What a read found under a key.
#[derive(Debug)]
pub(super) enum Found<T> {
    Missing,
    Expired,
    Corrupt,
    Live(Header, T),
}

/// Creates the tables of a namespace (and the meta table) if they are
/// missing, and checks the format of an existing database.
pub(super) fn prepare(txn: &WriteTransaction, names: &TableNames) -> Result<()> {
    {
        let mut meta = txn.open_table(META).db()?;
        let found = meta.get("format").db()?.map(|v| v.value());
        match found {
            None => {
                meta.insert("format", FORMAT_VERSION).db()?;
            }
            Some(FORMAT_VERSION) => {}
            Some(other) => {
                return Err(Error::config(
                    NAME,
                    format!(
                        "the database holds cachette tables of format {other}; this version reads format {FORMAT_VERSION} only"
                    ),
                ));
            }
        }
    }
    Writer::open(txn, names, 0).map(drop)
}

/// Removes every table of a namespace and creates them again, empty.
pub(super) fn clear(txn: &WriteTransaction, names: &TableNames) -> Result<()> {
    txn.delete_table(names.entries()).db()?;
    txn.delete_table(names.expiry()).db()?;
    txn.delete_table(names.order()).db()?;
    txn.delete_multimap_table(names.tags()).db()?;
    txn.delete_multimap_table(names.entry_tags()).db()?;
    Writer::open(txn, names, 0).map(drop)
}

/// The namespace's tables open for writing inside one write transaction.
pub(super) struct Writer<'txn> {
    entries: Entries<'txn>,
    expiry: Expiry<'txn>,
    order: Order<'txn>,
    tags: Index<'txn>,
    entry_tags: Index<'txn>,
    now: u64,
    next_seq: Option<u64>,
    /// What this transaction did, for the counters.
    pub(super) counts: Tally,
    /// Whether anything was written (a transaction that changed nothing is
    /// aborted instead of committed, which saves an fsync).
    pub(super) changed: bool,
}

impl<'txn> Writer<'txn> {
    pub(super) fn open(txn: &'txn WriteTransaction, names: &TableNames, now: u64) -> Result<Self> {
        Ok(Writer {
            entries: txn.open_table(names.entries()).db()?,
            expiry: txn.open_table(names.expiry()).db()?,
            order: txn.open_table(names.order()).db()?,
            tags: txn.open_multimap_table(names.tags()).db()?,
            entry_tags: txn.open_multimap_table(names.entry_tags()).db()?,
            now,
            next_seq: None,
            counts: Tally::default(),
            changed: false,
        })
    }

    /// The header of the live entry under `key`. An expired or corrupt
    /// entry found on the way is removed (and counted) and reads as absent.
    fn live(&mut self, key: &[u8]) -> Result<Option<Header>> {
        let header = match self.entries.get(key).db()? {
            None => return Ok(None),
            Some(raw) => Header::decode(raw.value()),
        };
        match header {
            None => {
                self.entries.remove(key).db()?;
                self.drop_tags(key)?;
                self.counts.bump(Event::Corrupt);
                self.changed = true;
                Ok(None)
            }
            Some(header) if header.is_expired(self.now) => {
                self.remove(key, header)?;
                self.counts.bump(Event::Expiration);
                Ok(None)
            }
            Some(header) => Ok(Some(header)),
        }
    }

    /// The value (without header) of an entry known to be present.
    fn value(&self, key: &[u8]) -> Result<Vec<u8>> {
        Ok(self
            .entries
            .get(key)
            .db()?
            .map(|raw| raw.value().get(HEADER_LEN..).unwrap_or_default().to_vec())
            .unwrap_or_default())
    }

    /// Removes an entry and every index row that points at it.
    fn remove(&mut self, key: &[u8], header: Header) -> Result<()> {
        self.entries.remove(key).db()?;
        self.unindex(key, header)?;
        self.drop_tags(key)?;
        self.changed = true;
        Ok(())
    }

    /// Removes the deadline and write-order rows of an entry.
    fn unindex(&mut self, key: &[u8], header: Header) -> Result<()> {
        if header.deadline != 0 {
            self.expiry.remove((header.deadline, key)).db()?;
        }
        self.order.remove(header.seq).db()?;
        Ok(())
    }

    /// Removes the tag rows of an entry, in both directions.
    fn drop_tags(&mut self, key: &[u8]) -> Result<()> {
        let tags = self
            .entry_tags
            .remove_all(key)
            .db()?
            .map(|tag| tag.map(|tag| tag.value().to_vec()))
            .collect::<Result<Vec<_>, _>>()
            .db()?;
        for tag in tags {
            self.tags.remove(tag.as_slice(), key).db()?;
        }
        Ok(())
    }

    fn take_seq(&mut self) -> Result<u64> {
        let seq = match self.next_seq {
            Some(seq) => seq,
            None => self
                .order
                .last()
                .db()?
                .map_or(1, |(seq, _)| seq.value().saturating_add(1)),
        };
        self.next_seq = Some(seq.saturating_add(1));
        Ok(seq)
    }

    /// Stores header + value and the index rows of the header. `seq`
    /// `None` takes the next write sequence number.
    fn put(&mut self, key: &[u8], value: &[u8], deadline: u64, seq: Option<u64>) -> Result<()> {
        let seq = match seq {
            Some(seq) => seq,
            None => self.take_seq()?,
        };
        let header = Header { deadline, seq };
        let len = u32::try_from(HEADER_LEN + value.len())
            .map_err(|_| Error::invalid_input(NAME, "the value is too large for redb"))?;
        {
            let mut slot = self.entries.insert_reserve(key, len).db()?;
            let slot = slot.as_mut();
            slot[..HEADER_LEN].copy_from_slice(&header.encode());
            slot[HEADER_LEN..].copy_from_slice(value);
        }
        if deadline != 0 {
            self.expiry.insert((deadline, key), ()).db()?;
        }
        self.order.insert(seq, key).db()?;
        self.changed = true;
        Ok(())
    }

    fn add_tags(&mut self, key: &[u8], tags: &[String]) -> Result<()> {
        for tag in tags {
            self.tags.insert(tag.as_bytes(), key).db()?;
            self.entry_tags.insert(key, tag.as_bytes()).db()?;
        }
        Ok(())
    }

    /// `set`: writes unless `condition` says otherwise; an overwrite
    /// replaces value, deadline and tags.
    pub(super) fn set(
        &mut self,
        key: &str,
        value: &[u8],
        deadline: u64,
        tags: &[String],
        condition: SetCondition,
    ) -> Result<bool> {
        let key = key.as_bytes();
        let old = self.live(key)?;
        match (condition, old) {
            (SetCondition::IfAbsent, Some(_)) | (SetCondition::IfPresent, None) => {
                return Ok(false);
            }
            _ => {}
        }
        match old {
            Some(header) => {
                self.unindex(key, header)?;
                self.drop_tags(key)?;
                self.counts.bump(Event::Update);
            }
            None => self.counts.bump(Event::Insert),
        }
        self.put(key, value, deadline, None)?;
        self.add_tags(key, tags)?;
        Ok(true)
    }

    /// `delete`: whether a live entry was removed.
    pub(super) fn delete(&mut self, key: &str) -> Result<bool> {
        let key = key.as_bytes();
        match self.live(key)? {
            Some(header) => {
                self.remove(key, header)?;
                self.counts.bump(Event::Delete);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// `incr`: an existing counter keeps its deadline and tags; a missing
    /// one is created at 0 with `deadline`.
    pub(super) fn incr(&mut self, key: &str, delta: i64, deadline: u64) -> Result<i64> {
        let key = key.as_bytes();
        let (next, deadline) = match self.live(key)? {
            Some(header) => {
                let next = add_to_counter(NAME, &self.value(key)?, delta)?;
                self.unindex(key, header)?;
                self.counts.bump(Event::Update);
                (next, header.deadline)
            }
            None => {
                self.counts.bump(Event::Insert);
                (delta, deadline)
            }
        };
        self.put(key, next.to_string().as_bytes(), deadline, None)?;
        Ok(next)
    }

    /// `touch`: replaces the deadline of a live entry.
    pub(super) fn touch(&mut self, key: &str, deadline: u64) -> Result<bool> {
        let key = key.as_bytes();
        match self.live(key)? {
            Some(header) => {
                let value = self.value(key)?;
                self.unindex(key, header)?;
                self.put(key, &value, deadline, Some(header.seq))?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// `invalidate_tags`: removes every live entry with any of the tags
    /// and returns how many.
    pub(super) fn invalidate(&mut self, tags: &[String]) -> Result<u64> {
        let mut removed = 0;
        let tags: BTreeSet<&str> = tags.iter().map(String::as_str).collect();
        for tag in tags {
            let keys = self
                .tags
                .remove_all(tag.as_bytes())
                .db()?
                .map(|key| key.map(|key| key.value().to_vec()))
                .collect::<Result<Vec<_>, _>>()
                .db()?;
            if !keys.is_empty() {
                self.changed = true;
            }
            for key in keys {
                if let Some(header) = self.live(&key)? {
                    self.remove(&key, header)?;
                    self.counts.bump(Event::Invalidation);
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// Removes up to `limit` entries whose deadline has passed, found
    /// through the deadline index (oldest deadline first). Returns how
    /// many entries were removed.
    pub(super) fn purge(&mut self, limit: u64) -> Result<u64> {
        let mut removed = 0;
        while removed < limit {
            let Some((deadline, key)) = self.expiry.first().db()?.map(|(row, _)| {
                let (deadline, key) = row.value();
                (deadline, key.to_vec())
            }) else {
                break;
            };
            if deadline > self.now {
                break;
            }
            self.expiry.remove((deadline, key.as_slice())).db()?;
            self.changed = true;
            let header = self
                .entries
                .get(key.as_slice())
                .db()?
                .and_then(|raw| Header::decode(raw.value()));
            // A row whose entry has another deadline would be stale; it is
            // dropped without touching the entry.
            if let Some(header) = header.filter(|h| h.deadline == deadline) {
                self.remove(&key, header)?;
                self.counts.bump(Event::Expiration);
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Evicts the oldest writes until at most `max` entries remain.
    pub(super) fn evict(&mut self, max: u64) -> Result<()> {
        while self.entries.len().db()? > max {
            let Some((seq, key)) = self
                .order
                .first()
                .db()?
                .map(|(seq, key)| (seq.value(), key.value().to_vec()))
            else {
                break;
            };
            self.order.remove(seq).db()?;
            self.changed = true;
            let header = self
                .entries
                .get(key.as_slice())
                .db()?
                .and_then(|raw| Header::decode(raw.value()));
            if let Some(header) = header.filter(|h| h.seq == seq) {
                self.remove(&key, header)?;
                self.counts.bump(Event::Eviction);
            }
        }
        Ok(())
    }

    /// The housekeeping every write transaction ends with: a few expired
    /// entries removed, then the entry bound enforced.
    pub(super) fn finish(&mut self, max_entries: Option<u64>) -> Result<()> {
        if self.changed {
            self.purge(PURGE_PER_WRITE)?;
        }
        if let Some(max) = max_entries {
            self.evict(max)?;
        }
        Ok(())
    }
}

/// The namespace's entries open for reading inside one read transaction.
pub(super) struct Reader {
    entries: ReadOnlyTable<&'static [u8], &'static [u8]>,
    now: u64,
}

impl Reader {
    pub(super) fn open(txn: &ReadTransaction, names: &TableNames, now: u64) -> Result<Self> {
        Ok(Reader {
            entries: txn.open_table(names.entries()).db()?,
            now,
        })
    }

    /// Reads an entry; `value` maps the stored value (after the header).
    pub(super) fn get<T>(&self, key: &str, value: impl FnOnce(&[u8]) -> T) -> Result<Found<T>> {
        let Some(raw) = self.entries.get(key.as_bytes()).db()? else {
            return Ok(Found::Missing);
        };
        let raw = raw.value();
        Ok(match Header::decode(raw) {
            None => Found::Corrupt,
            Some(header) if header.is_expired(self.now) => Found::Expired,
            Some(header) => Found::Live(header, value(&raw[HEADER_LEN..])),
        })
    }

    /// How many entries the namespace stores, expired ones included until
    /// they are removed.
    pub(super) fn len(&self) -> Result<u64> {
        self.entries.len().db()
    }

    /// One page of `keys`: the live keys that start with `prefix` and
    /// match `pattern`, scanning at most `limit` entries after `after`.
    /// Returns the matches and where the next page starts (`None` when the
    /// prefix is exhausted).
    pub(super) fn keys_page(
        &self,
        pattern: &crate::glob::Pattern,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<(Vec<String>, Option<Vec<u8>>)> {
        let start = match after {
            Some(after) => Bound::Excluded(after),
            None => Bound::Included(pattern.literal_prefix().as_bytes()),
        };
        let mut matches = Vec::new();
        let mut scanned = 0;
        let mut last = None;
        for row in self
            .entries
            .range::<&[u8]>((start, Bound::Unbounded))
            .db()?
        {
            let (key, raw) = row.db()?;
            let key = key.value();
            if !key.starts_with(pattern.literal_prefix().as_bytes()) {
                return Ok((matches, None));
            }
            // A key that is not UTF-8 or a corrupt value is not listed.
            if let (Ok(key), Some(header)) = (std::str::from_utf8(key), Header::decode(raw.value()))
                && !header.is_expired(self.now)
                && pattern.matches(key)
            {
                matches.push(key.to_owned());
            }
            scanned += 1;
            if scanned == limit {
                last = Some(key.to_vec());
                break;
            }
        }
        Ok((matches, last))
    }
}

/// For tests: every row of every table of a namespace, checked against
/// each other. Returns a description of the first inconsistency.
#[cfg(test)]
pub(super) fn check_indexes(txn: &ReadTransaction, names: &TableNames) -> Result<(), String> {
    use redb::ReadableMultimapTable;
    use std::collections::BTreeMap;

    let fail = |e: Error| e.to_string();
    let entries = txn.open_table(names.entries()).db().map_err(fail)?;
    let expiry = txn.open_table(names.expiry()).db().map_err(fail)?;
    let order = txn.open_table(names.order()).db().map_err(fail)?;
    let tags = txn.open_multimap_table(names.tags()).db().map_err(fail)?;
    let entry_tags = txn
        .open_multimap_table(names.entry_tags())
        .db()
        .map_err(fail)?;

    let mut headers = BTreeMap::new();
    for row in entries.iter().db().map_err(fail)? {
        let (key, raw) = row.db().map_err(fail)?;
        let header = Header::decode(raw.value()).ok_or("a corrupt entry")?;
        headers.insert(key.value().to_vec(), header);
    }
    let mut expiring = BTreeSet::new();
    for row in expiry.iter().db().map_err(fail)? {
        let (row, _) = row.db().map_err(fail)?;
        let (deadline, key) = row.value();
        expiring.insert((deadline, key.to_vec()));
    }
    let wanted: BTreeSet<(u64, Vec<u8>)> = headers
        .iter()
        .filter(|(_, h)| h.deadline != 0)
        .map(|(k, h)| (h.deadline, k.clone()))
        .collect();
    if expiring != wanted {
        return Err(format!(
            "the deadline index {expiring:?} does not match the entries {wanted:?}"
        ));
    }
    let mut ordered = BTreeSet::new();
    for row in order.iter().db().map_err(fail)? {
        let (seq, key) = row.db().map_err(fail)?;
        ordered.insert((seq.value(), key.value().to_vec()));
    }
    let wanted: BTreeSet<(u64, Vec<u8>)> =
        headers.iter().map(|(k, h)| (h.seq, k.clone())).collect();
    if ordered != wanted {
        return Err(format!(
            "the write-order index {ordered:?} does not match the entries {wanted:?}"
        ));
    }
    type Pairs = BTreeSet<(Vec<u8>, Vec<u8>)>;
    let pairs = |table: &redb::ReadOnlyMultimapTable<&'static [u8], &'static [u8]>,
                 swap: bool|
     -> Result<Pairs, String> {
        let mut out = BTreeSet::new();
        for row in table.iter().db().map_err(fail)? {
            let (first, values) = row.db().map_err(fail)?;
            for second in values {
                let second = second.db().map_err(fail)?;
                let pair = (first.value().to_vec(), second.value().to_vec());
                out.insert(if swap { (pair.1, pair.0) } else { pair });
            }
        }
        Ok(out)
    };
    let by_tag = pairs(&tags, true)?;
    let by_key = pairs(&entry_tags, false)?;
    if by_tag != by_key {
        return Err(format!(
            "the tag index {by_tag:?} does not mirror the entry-tag index {by_key:?}"
        ));
    }
    if let Some((key, _)) = by_key.iter().find(|(key, _)| !headers.contains_key(key)) {
        return Err(format!("a tag row points at the missing entry {key:?}"));
    }
    Ok(())
}
