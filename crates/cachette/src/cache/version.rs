//! The persisted key version: `{namespace}:__version`, and the markers
//! that let a lost counter be found again.
//!
//! A counter can be lost: evicted by an `allkeys-*` Redis or a bounded
//! memory engine, or deleted. Each bump therefore also writes a marker
//! `{namespace}:__retired:v{old}` holding the new version, and a reader
//! that finds no counter follows the markers from the version it knows
//! (0 for a new process). A process that has seen a version puts a
//! missing or lower counter back to it.

use crate::backend::{Backend, Expiry, SetOptions, parse_counter};
use crate::error::{Error, Result};

use super::codec::NAME;
use super::keys::KeySpace;

/// How many markers a read follows at most.
const MAX_MARKERS: usize = 64;

/// The version in force for a process that knows `known`: the counter,
/// or when it is missing the end of the markers from `known`; the
/// counter is put back if it was missing or behind.
pub(super) async fn read(backend: &dyn Backend, keys: &KeySpace, known: u64) -> Result<u64> {
    let counter_key = keys.version_key();
    let counter = match backend.get(&counter_key).await? {
        Some(bytes) => Some(version_from(parse_counter(backend.name(), &bytes)?)?),
        None => None,
    };
    let mut version = counter.unwrap_or(0).max(known);
    if counter.is_none() {
        for _ in 0..MAX_MARKERS {
            match backend.get(&keys.retired_key(version)).await? {
                Some(bytes) => {
                    let next = version_from(parse_counter(backend.name(), &bytes)?)?;
                    if next <= version {
                        break;
                    }
                    version = next;
                }
                None => break,
            }
        }
    }
    if counter.is_none_or(|c| c < version) {
        restore(backend, &counter_key, counter.unwrap_or(0), version).await;
    }
    Ok(version)
}

/// Raises the counter from `from` to `to` (best effort: logged on error).
pub(super) async fn restore(backend: &dyn Backend, counter_key: &str, from: u64, to: u64) {
    let gap = i64::try_from(to.saturating_sub(from)).unwrap_or(i64::MAX);
    if gap == 0 {
        return;
    }
    tracing::warn!(key = %counter_key, version = to, "the key version counter was lost or behind; putting it back");
    if let Err(error) = backend.incr(counter_key, gap, Expiry::Never).await {
        tracing::warn!(key = %counter_key, %error, "could not put the key version back");
    }
}

/// Records that `old` was replaced by `new` (best effort: logged on error).
pub(super) async fn retire(backend: &dyn Backend, keys: &KeySpace, old: u64, new: u64) {
    let key = keys.retired_key(old);
    let options = SetOptions::new().expiry(Expiry::Never);
    let value = bytes::Bytes::from(new.to_string());
    if let Err(error) = backend.set(&key, value, &options).await {
        tracing::warn!(%key, %error, "could not record the retired key version");
    }
}

/// A persisted key version: a counter that is not negative.
pub(super) fn version_from(counter: i64) -> Result<u64> {
    u64::try_from(counter).map_err(|_| {
        Error::config(
            NAME,
            format!("the key version counter holds a negative value ({counter})"),
        )
    })
}
