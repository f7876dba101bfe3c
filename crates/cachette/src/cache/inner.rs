//! The state that a [`Cache`](super::Cache) and its clones share, and the
//! write path, ordered against the stores of loads.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::RwLockReadGuard;

use crate::backend::Backend;
use crate::error::{Error, Result};

use super::EntryOptions;
use super::clock::Clock;
use super::codec::{Codec, NAME};
use super::failsafe::LocalCopies;
use super::flight::FlightHandle;
use super::keys::{KeySpace, StoredKey};
use super::lock::DistributedLock;
use super::options::{Defaults, Resolved};
use super::stats::Counters;

/// How many stripes of write gates (see [`WriteGate`]).
pub(super) const WRITE_GATES: usize = 256;

/// Orders the writes of this process against the stores of loads: a write
/// holds the read side and bumps the generation; a load stores under the
/// write side, and only if the generation has not moved since it started.
/// Keys share a gate by hash; sharing only makes a load skip its store
/// more often, never less.
#[derive(Debug, Default)]
pub(super) struct WriteGate {
    pub(super) lock: tokio::sync::RwLock<()>,
    pub(super) generation: AtomicU64,
}

/// The process-wide source of cache ids, for re-entrancy detection.
static NEXT_CACHE_ID: AtomicU64 = AtomicU64::new(1);

pub(super) struct Inner<C> {
    pub(super) backend: Arc<dyn Backend>,
    pub(super) codec: C,
    pub(super) keys: KeySpace,
    pub(super) defaults: Defaults,
    /// Whether every entry is an envelope.
    pub(super) envelopes: bool,
    pub(super) compress_above: Option<usize>,
    /// The largest decompressed payload a read accepts.
    pub(super) max_decompressed: usize,
    pub(super) lock: Option<DistributedLock>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) counters: Counters,
    pub(super) id: u64,
    pub(super) flights: Mutex<HashMap<String, FlightHandle>>,
    pub(super) next_flight: AtomicU64,
    pub(super) gates: Box<[WriteGate]>,
    pub(super) gate_hasher: foldhash::fast::FixedState,
    /// Moves on `invalidate_tags` and `bump_version`: loads that started
    /// before do not store.
    pub(super) epoch: AtomicU64,
    /// Orders stores against `invalidate_tags`: a load stores (checks the
    /// epoch, then writes) under the read side; `invalidate_tags` moves
    /// the epoch under the write side, so that a store that passed the
    /// check has reached the backend before the backend invalidates.
    pub(super) epoch_gate: tokio::sync::RwLock<()>,
    pub(super) copies: LocalCopies,
}

impl<C: Codec> Inner<C> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        backend: Arc<dyn Backend>,
        codec: C,
        keys: KeySpace,
        defaults: Defaults,
        envelopes: bool,
        (compress_above, max_decompressed): (Option<usize>, usize),
        lock: Option<DistributedLock>,
        clock: Arc<dyn Clock>,
        fail_safe_capacity: usize,
    ) -> Self {
        Inner {
            backend,
            codec,
            keys,
            defaults,
            envelopes,
            compress_above,
            max_decompressed,
            lock,
            clock,
            counters: Counters::default(),
            id: NEXT_CACHE_ID.fetch_add(1, Ordering::Relaxed),
            flights: Mutex::new(HashMap::new()),
            next_flight: AtomicU64::new(0),
            gates: (0..WRITE_GATES).map(|_| WriteGate::default()).collect(),
            gate_hasher: foldhash::fast::FixedState::with_seed(0x6a7e),
            epoch: AtomicU64::new(0),
            epoch_gate: tokio::sync::RwLock::new(()),
            copies: LocalCopies::new(fail_safe_capacity),
        }
    }

    pub(super) fn now(&self) -> u64 {
        self.clock.now_unix_ms()
    }

    pub(super) fn gate_index(&self, stored: &str) -> usize {
        (self.gate_hasher.hash_one(stored) as usize) % WRITE_GATES
    }

    /// The gates of several keys, each once, in index order: taken in that
    /// order, two batches never wait on each other crosswise.
    pub(super) fn gate_indices<'k>(&self, stored: impl Iterator<Item = &'k str>) -> Vec<usize> {
        let mut indices: Vec<usize> = stored.map(|key| self.gate_index(key)).collect();
        indices.sort_unstable();
        indices.dedup();
        indices
    }

    pub(super) fn gate(&self, stored: &str) -> &WriteGate {
        &self.gates[self.gate_index(stored)]
    }

    pub(super) fn resolve(&self, options: &EntryOptions) -> Result<Resolved> {
        self.defaults
            .resolve(options, &self.keys)
            .map_err(|message| Error::invalid_input(NAME, message))
    }

    /// Writes one entry, ordered against loads of the same key.
    pub(super) async fn write(
        &self,
        key: &str,
        payload: Bytes,
        codec: u8,
        options: &EntryOptions,
    ) -> Result<()> {
        let stored = self.keys.stored(key)?;
        let resolved = self.resolve(options)?;
        let now = self.now();
        let plan = resolved.plan(now, false);
        let bytes = self.entry_bytes(&stored, key, payload, codec, &resolved, &plan, now, false);
        let _writing = self.enter_write(&stored, key).await;
        self.backend
            .set(&stored.full, bytes, &plan.set_options)
            .await?;
        Ok(())
    }

    /// Starts a write of `stored` (held until the guard drops): loads that
    /// started before it do not store, and fail-safe forgets its copy.
    pub(super) async fn enter_write(
        &self,
        stored: &StoredKey,
        key: &str,
    ) -> RwLockReadGuard<'_, ()> {
        let gate = self.gate(&stored.full);
        let writing = gate.lock.read().await;
        gate.generation.fetch_add(1, Ordering::AcqRel);
        self.written(&stored.identity(key));
        writing
    }

    /// Drops what this process holds of a key being written (after its
    /// generation moved): its fail-safe copy, and its load in flight from
    /// the map of flights, so that calls from now on do not join a load
    /// older than the write (that load answers its callers, and does not
    /// store).
    pub(super) fn written(&self, identity: &str) {
        self.copies.forget(identity);
        self.flights.lock().remove(identity);
    }

    /// A key for `incr`/`decr`: never hashed (a raw counter has no room for
    /// the original key).
    pub(super) fn counter_key(&self, key: &str) -> Result<StoredKey> {
        let stored = self.keys.stored(key)?;
        if stored.hashed {
            return Err(Error::invalid_input(
                NAME,
                format!(
                    "the counter key {} ({} bytes) would have to be hashed (it is too long \
                     for the backend's limit of {} bytes after the namespace and version, or \
                     starts with `#h:`), and counters cannot carry the original key",
                    crate::backend::KeyInMessage(key),
                    key.len(),
                    self.backend.capabilities().max_key_len
                ),
            ));
        }
        Ok(stored)
    }
}
