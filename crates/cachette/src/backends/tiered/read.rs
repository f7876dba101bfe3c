//! The steps of a batch read: L1 first, then the keys it missed from L2
//! in one request, their copies into L1, and the answers put back in the
//! caller's order.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use tokio::time::Instant;

use super::guard::Ticket;
use super::{NAME, TTL_LOOKUPS, TieredBackend};
use crate::backend::KeyTtl;
use crate::backends::common::Event;
use crate::error::{Error, ErrorKind, Result};

/// The keys L1 missed, each once, in the order asked.
pub(super) fn missing_once<'k>(keys: &[&'k str], found: &[Option<Bytes>]) -> Vec<&'k str> {
    let mut seen = HashSet::new();
    keys.iter()
        .zip(found)
        .filter(|(key, value)| value.is_none() && seen.insert(**key))
        .map(|(key, _)| *key)
        .collect()
}

impl TieredBackend {
    /// What L1 holds of `keys`, one answer per key; all misses when L1 is
    /// bypassed or fails (a failing L1 is only logged).
    pub(super) async fn read_l1_many(&self, keys: &[&str]) -> Vec<Option<Bytes>> {
        let shared = self.shared();
        let mut found = vec![None; keys.len()];
        if shared.guard.serving() && !keys.is_empty() {
            match shared.l1.get_many(keys).await {
                Ok(from_l1) if from_l1.len() == keys.len() => found = from_l1,
                Ok(_) => {
                    tracing::debug!("tiered backend bypassed an L1 get_many of the wrong length")
                }
                Err(error) => tracing::debug!(%error, "tiered backend bypassed a failing L1 read"),
            }
        }
        let l1_hits = found.iter().filter(|value| value.is_some()).count();
        shared.counters.add(Event::LocalHit, l1_hits as u64);
        found
    }

    /// Reads `missing` from L2 in one `get_many`; an answer of the wrong
    /// length is an error.
    pub(super) async fn read_l2_many(&self, missing: &[&str]) -> Result<Vec<Option<Bytes>>> {
        let l2 = &self.inner.l2;
        let values = l2.get_many(missing).await?;
        if values.len() != missing.len() {
            return Err(Error::new(
                ErrorKind::Backend,
                NAME,
                format!(
                    "the L2 backend `{}` answered {} values to a get_many of {} keys",
                    l2.name(),
                    values.len(),
                    missing.len()
                ),
            )
            .with_operation("get_many"));
        }
        Ok(values)
    }

    /// Copies the values found in L2 into L1, each with what is left of
    /// its L2 TTL (capped by `l1_ttl`) and unless invalidated since its
    /// ticket was taken.
    pub(super) async fn copy_into_l1(
        &self,
        missing: &[&str],
        values: &[Option<Bytes>],
        tickets: Vec<Ticket>,
        started: Instant,
    ) {
        let mut ttls = self.l2_ttls(missing, values).await.into_iter();
        for ((key, value), ticket) in missing.iter().zip(values).zip(tickets) {
            let Some(value) = value else { continue };
            let ttl = if self.inner.l2_ttl_inspection {
                Some(ttls.next().unwrap_or(Ok(KeyTtl::Missing)))
            } else {
                None
            };
            if let Some(ttl) = self.read_copy_ttl(started, ttl) {
                self.shared().fill(key, value.clone(), ttl, ticket).await;
            }
        }
    }

    /// The L2 TTLs of the keys found, in order; none when L2 cannot tell.
    async fn l2_ttls(&self, missing: &[&str], values: &[Option<Bytes>]) -> Vec<Result<KeyTtl>> {
        if !self.inner.l2_ttl_inspection {
            return Vec::new();
        }
        let l2 = &self.inner.l2;
        // Boxed futures, so that the stream needs no closure over borrowed
        // keys.
        let lookups: Vec<_> = missing
            .iter()
            .zip(values)
            .filter(|(_, value)| value.is_some())
            .map(|(key, _)| l2.ttl(key))
            .collect();
        stream::iter(lookups).buffered(TTL_LOOKUPS).collect().await
    }

    /// Fills the answers L1 missed with L2's (repeated keys included) and
    /// counts the L2 hits and the misses.
    pub(super) fn answer_from_l2(
        &self,
        keys: &[&str],
        found: &mut [Option<Bytes>],
        missing: Vec<&str>,
        values: Vec<Option<Bytes>>,
    ) {
        let from_l2: HashMap<&str, Option<Bytes>> = missing.into_iter().zip(values).collect();
        let (mut l2_hits, mut misses) = (0, 0);
        for (key, slot) in keys.iter().zip(found.iter_mut()) {
            if slot.is_some() {
                continue;
            }
            *slot = from_l2.get(key).cloned().flatten();
            if slot.is_some() {
                l2_hits += 1;
            } else {
                misses += 1;
            }
        }
        let counters = &self.shared().counters;
        counters.add(Event::RemoteHit, l2_hits);
        counters.add(Event::Miss, misses);
    }
}
