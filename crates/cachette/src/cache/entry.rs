//! What stored bytes are to the front end: a plain value or an envelope,
//! read into a [`Found`] entry (or a miss), and written back.

use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::error::Result;

use super::clock::millis;
use super::codec::{self, Codec};
use super::envelope::{self, Envelope, Meta};
use super::inner::Inner;
use super::keys::{StoredKey, StoredRef};
use super::options::{Plan, Resolved};
use super::stats::bump;

/// A readable entry: a plain value or an envelope's contents.
#[derive(Debug, Clone)]
pub(super) struct Found {
    pub(super) payload: Bytes,
    /// `None` for a plain value.
    pub(super) codec: Option<u8>,
    /// `None` for a plain value (its age is unknown).
    pub(super) created: Option<u64>,
    pub(super) soft_deadline: u64,
    pub(super) hard_deadline: u64,
    pub(super) negative: bool,
}

/// Where an entry stands at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Freshness {
    Fresh,
    /// Past the soft deadline: served, and refreshed.
    Stale,
    /// Past the hard deadline: only fail-safe may serve it.
    Expired,
}

impl Found {
    pub(super) fn freshness(&self, now: u64) -> Freshness {
        if self.hard_deadline != 0 && now >= self.hard_deadline {
            Freshness::Expired
        } else if self.soft_deadline != 0 && now >= self.soft_deadline {
            Freshness::Stale
        } else {
            Freshness::Fresh
        }
    }

    /// Whether a fresh value at `now` is past `fraction` of its fresh life
    /// (to its soft deadline, else its hard deadline, else `fresh_for`
    /// after it was created): time for an eager refresh. Never for a
    /// value of unknown age.
    pub(super) fn eager_refresh_due(
        &self,
        now: u64,
        fraction: f64,
        fresh_for: Option<Duration>,
    ) -> bool {
        let Some(created) = self.created else {
            return false;
        };
        let end = match (self.soft_deadline, self.hard_deadline, fresh_for) {
            (0, 0, Some(fresh_for)) => created.saturating_add(millis(fresh_for)),
            (0, 0, None) => return false,
            (0, hard, _) => hard,
            (soft, _, _) => soft,
        };
        // Whole milliseconds: the fraction of a life of up to 2^53 ms is
        // exact enough.
        let life = end.saturating_sub(created) as f64;
        now >= created.saturating_add((life * fraction) as u64)
    }

    /// Whether fail-safe may serve this value at `now`.
    pub(super) fn fail_safe_eligible(&self, now: u64, max_age: Duration) -> bool {
        !self.negative
            && self
                .created
                .is_some_and(|created| now.saturating_sub(created) < millis(max_age))
    }
}

/// What a backend read turned out to be.
#[derive(Debug)]
pub(super) enum Read {
    Found(Found),
    /// Unreadable: a miss, counted.
    Corrupt,
    /// Another key's entry under the same hash: a miss.
    Collision,
}

impl<C: Codec> Inner<C> {
    /// Interprets stored bytes for the caller's `key`.
    #[inline]
    pub(super) fn parse(&self, bytes: Bytes, stored: StoredRef<'_>, key: &str) -> Read {
        if envelope::is_envelope(&bytes) || self.envelopes || stored.hashed {
            return self.parse_envelope(bytes, stored, key);
        }
        Read::Found(Found {
            payload: bytes,
            codec: None,
            created: None,
            soft_deadline: 0,
            hard_deadline: 0,
            negative: false,
        })
    }

    /// [`parse`](Self::parse) for bytes that are, or must be, an envelope.
    /// Out of line: it keeps the plain hit path short.
    #[inline(never)]
    pub(super) fn parse_envelope(&self, bytes: Bytes, stored: StoredRef<'_>, key: &str) -> Read {
        if !envelope::is_envelope(&bytes) {
            tracing::debug!(key = %stored.full, "the entry is not an envelope, read as a miss");
            return Read::Corrupt;
        }
        match envelope::decode(&bytes, self.max_decompressed) {
            Ok(Envelope { meta, payload }) => match (&meta.original_key, stored.hashed) {
                (Some(original), _) if original != key => Read::Collision,
                (None, true) => Read::Collision,
                _ => Read::Found(Found {
                    payload,
                    codec: Some(meta.codec),
                    created: Some(meta.created),
                    soft_deadline: meta.soft_deadline,
                    hard_deadline: meta.hard_deadline,
                    negative: meta.negative,
                }),
            },
            Err(error) => {
                tracing::debug!(key = %stored.full, %error, "unreadable envelope, read as a miss");
                Read::Corrupt
            }
        }
    }

    /// Reads and parses the entry of `key` (`None` on a miss) and hands it
    /// to `finish`, if the backend answers at once ([`Backend::get_ready`]):
    /// the key is built on the stack and no future is set up. `Ok(None)`
    /// when the backend needs its `get`: then call [`read`](Self::read).
    pub(super) fn read_ready<R>(
        &self,
        key: &str,
        finish: &impl Fn(Option<Read>) -> Result<R>,
    ) -> Result<Option<R>> {
        self.keys
            .with_stored(key, |stored| match self.backend.get_ready(stored.full) {
                None => Ok(None),
                Some(bytes) => finish(bytes?.map(|bytes| self.parse(bytes, stored, key))).map(Some),
            })
    }

    /// [`read_ready`](Self::read_ready) through the backend's `get`. The
    /// callers try `read_ready` first in their own body, so that a hit
    /// does not even set up this future.
    pub(super) async fn read<R>(
        &self,
        key: &str,
        finish: impl Fn(Option<Read>) -> Result<R>,
    ) -> Result<R> {
        let stored = self.keys.stored(key)?;
        let bytes = self.backend.get(&stored.full).await?;
        finish(bytes.map(|bytes| self.parse(bytes, stored.borrowed(), key)))
    }

    /// Counts a read that is not a found value; returns the value if any.
    #[inline]
    pub(super) fn count_read<'r>(&self, read: &'r Read) -> Option<&'r Found> {
        match read {
            Read::Found(found) => Some(found),
            Read::Corrupt => {
                bump(&self.counters.corrupt);
                bump(&self.counters.misses);
                None
            }
            Read::Collision => {
                bump(&self.counters.misses);
                None
            }
        }
    }

    /// Whether another codec wrote this value (a cached "not found" has no
    /// value, so any codec's serves).
    pub(super) fn written_by_other_codec(&self, found: &Found) -> bool {
        !found.negative && found.codec.is_some_and(|id| id != self.codec.id())
    }

    /// Decodes a found value (a cached "not found" is `None`).
    #[inline]
    pub(super) fn decode<T: DeserializeOwned>(&self, found: &Found) -> Result<Option<T>> {
        if found.negative {
            return Ok(None);
        }
        if let Some(id) = found.codec
            && id != self.codec.id()
        {
            bump(&self.counters.decode_errors);
            return Err(codec::other_codec_error(id, &self.codec));
        }
        match self.codec.decode(&found.payload) {
            Ok(value) => Ok(Some(value)),
            Err(error) => {
                bump(&self.counters.decode_errors);
                Err(error)
            }
        }
    }

    /// The bytes to store for `payload` (or a "not found" with `negative`)
    /// written at `now` with `plan`'s deadlines.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn entry_bytes(
        &self,
        stored: &StoredKey,
        key: &str,
        payload: Bytes,
        codec: u8,
        resolved: &Resolved,
        plan: &Plan,
        now: u64,
        negative: bool,
    ) -> Bytes {
        let needs_envelope = self.envelopes
            || stored.hashed
            || negative
            || resolved.needs_envelope()
            || plan.soft_deadline != 0
            || plan.hard_deadline != 0
            || envelope::is_envelope(&payload);
        if !needs_envelope {
            return payload;
        }
        let meta = Meta {
            codec,
            created: now,
            soft_deadline: plan.soft_deadline,
            hard_deadline: plan.hard_deadline,
            original_key: stored.hashed.then(|| key.to_owned()),
            negative,
        };
        envelope::encode(&meta, &payload, self.compress_above)
    }
}
