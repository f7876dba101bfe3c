//! The distributed lock of loads: one process at a time loads a key
//! ([`CacheBuilder::distributed_lock`](super::CacheBuilder::distributed_lock)).

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::backend::{Lease, LeaseToken, SetOptions};

use super::Codec;
use super::clock::later;
use super::flight::{FlightState, Job, Outcome, fresh_outcome};
use super::inner::Inner;

/// The settings of [`CacheBuilder::distributed_lock`](super::CacheBuilder::distributed_lock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct DistributedLock {
    pub(super) lock_ttl: Duration,
    pub(super) wait: Duration,
}

/// How taking the lock before a load ended.
pub(super) enum Taken {
    /// This load holds the lock: it loads, then releases it.
    Held(HeldLock),
    /// Another process held the lock and stored a value in time.
    Answered(Outcome),
    /// No lock: none is configured, the backend failed, or the holder
    /// stored nothing in time. The load goes ahead.
    Not,
}

/// A lock this load holds.
pub(super) enum HeldLock {
    /// A lock key and the token this load wrote in it.
    Key { key: String, token: String },
    /// The backend's lease of the entry's key (see [`Backend::lease`](crate::Backend::lease)).
    Lease { key: String, token: LeaseToken },
}

/// Takes the lock of `job`'s key if the cache has one: the backend's lease
/// where it gives one, a lock key written only-if-absent otherwise. A
/// loser tells the callers (they may serve a stale value at once), then
/// waits for the holder's value.
pub(super) async fn take<C: Codec>(
    inner: &Inner<C>,
    job: &Job,
    tx: &watch::Sender<FlightState>,
) -> Taken {
    let Some(lock) = inner.lock else {
        return Taken::Not;
    };
    match inner.backend.lease(&job.key.full, lock.lock_ttl).await {
        Ok(Some(Lease::Granted(token))) => {
            return Taken::Held(HeldLock::Lease {
                key: job.key.full.to_string(),
                token,
            });
        }
        Ok(Some(Lease::Held)) => return lost(inner, job, tx, lock.wait).await,
        Ok(None) => {}
        Err(error) => {
            tracing::warn!(key = %job.user_key, %error, "could not take the distributed lock; loading");
            return Taken::Not;
        }
    }
    let key = inner.keys.lock_key(&job.key);
    let token = format!("{:032x}", fastrand::u128(..));
    let options = SetOptions::new().ttl(lock.lock_ttl).if_absent();
    match inner
        .backend
        .set(&key, Bytes::from(token.clone()), &options)
        .await
    {
        Ok(true) => Taken::Held(HeldLock::Key { key, token }),
        Ok(false) => lost(inner, job, tx, lock.wait).await,
        Err(error) => {
            tracing::warn!(key = %job.user_key, %error, "could not take the distributed lock; loading");
            Taken::Not
        }
    }
}

/// Another process holds the lock: tells the callers, then waits for its
/// value.
async fn lost<C: Codec>(
    inner: &Inner<C>,
    job: &Job,
    tx: &watch::Sender<FlightState>,
    wait: Duration,
) -> Taken {
    tx.send_modify(|state| state.busy_elsewhere = true);
    if let Some(outcome) = poll_for_value(inner, job, wait).await {
        return Taken::Answered(outcome);
    }
    tracing::debug!(key = %job.user_key, "the lock holder stored nothing in time; loading");
    Taken::Not
}

/// A lock loser waits for the holder's value: polls with backoff until a
/// fresh entry other than the one the load started from appears, or `wait`
/// has passed.
async fn poll_for_value<C: Codec>(inner: &Inner<C>, job: &Job, wait: Duration) -> Option<Outcome> {
    const FIRST_POLL: Duration = Duration::from_millis(10);
    const MAX_POLL: Duration = Duration::from_millis(250);
    let deadline = later(wait);
    let mut delay = FIRST_POLL;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        tokio::time::sleep(delay.min(deadline - now)).await;
        delay = (delay * 2).min(MAX_POLL);
        if let Ok(Some(bytes)) = inner.backend.get(&job.key.full).await
            && let Some(outcome) = fresh_outcome(inner, job, bytes)
        {
            return Some(outcome);
        }
    }
}

impl HeldLock {
    /// Releases the lock after a load that ended with `outcome`.
    ///
    /// A lock key is deleted if this load still holds it (a read, then a
    /// delete: not atomic; at worst another holder's lock goes early,
    /// which costs one extra load). A lease is given back only when the
    /// load stored no value: a stored value has ended it already.
    pub(super) async fn release<C: Codec>(self, inner: &Inner<C>, outcome: &Outcome) {
        match self {
            HeldLock::Key { key, token } => match inner.backend.get(&key).await {
                Ok(Some(current)) if current == token.as_bytes() => {
                    if let Err(error) = inner.backend.delete(&key).await {
                        tracing::warn!(key = %key, %error, "could not release the distributed lock");
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(key = %key, %error, "could not release the distributed lock");
                }
            },
            HeldLock::Lease { key, token } => {
                if matches!(outcome, Outcome::Value(_)) {
                    return;
                }
                if let Err(error) = inner.backend.release_lease(&key, token).await {
                    tracing::warn!(key = %key, %error, "could not give back the lease");
                }
            }
        }
    }
}
