//! [`Cache::get_or_load`], in named steps: read a fresh value, serve a
//! stale one and refresh it, load under single-flight, fall back to
//! fail-safe.

use std::future::Future;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{ErrorKind, Result};

use super::clock::{later, millis};
use super::entry::{Found, Freshness, Read};
use super::flight::{Job, Outcome, Waited, refuse_reentrant, wait};
use super::keys::{Fingerprint, StoredKey};
use super::loader::{BoxError, Failure, LoadContext, Loader};
use super::options::{FailSafe, Resolved};
use super::stats::bump;
use super::{Cache, Codec, EntryOptions, cache_error};

/// What the read before a load found.
enum Lookup {
    /// A fresh value, or a cached "not found": the answer.
    Fresh(Found),
    /// A value past its soft TTL: served at once, refreshed in the
    /// background from the entry with this fingerprint.
    Stale(Found, Fingerprint),
    /// The backend failed, and this process keeps a value fail-safe may
    /// serve.
    BackendFailed(Found),
    /// Nothing usable: load, from an entry with this fingerprint, with the
    /// value fail-safe may serve if the load fails.
    Load {
        start: Fingerprint,
        fallback: Option<Found>,
    },
}

impl<C: Codec> Cache<C> {
    /// Returns the value of `key`, running `loader` to produce it when the
    /// cache has no fresh value; see the [module docs](super) for
    /// single-flight, stale-while-revalidate, fail-safe, timeouts and the
    /// distributed lock, and [`EntryOptions`] for `options`.
    ///
    /// The loader returns `Ok(Some(value))`, `Ok(None)` for "not found"
    /// (cached for the negative TTL, if one is set), or an error of any
    /// type convertible into `Box<dyn Error + Send + Sync>`. It runs as a
    /// tokio task of its own, hence `'static`.
    ///
    /// Returns `Ok(None)` for "not found". Errors: the loader's failure (its
    /// error is the [`LoaderError`](super::LoaderError) source), [`ErrorKind::Timeout`] after
    /// the hard timeout, [`ErrorKind::Serialization`] when the stored value
    /// does not decode into `T` (the loader does not run and the entry is
    /// kept), [`ErrorKind::InvalidInput`] for a re-entrant call or bad
    /// options — each unless fail-safe has a stale value to return instead.
    /// An entry written with another codec is not an error here: it is a
    /// miss, and the loaded value replaces it (see the [codec
    /// docs](super::Codec)).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use cachette::MemoryBackend;
    /// # use cachette::cache::{Cache, EntryOptions};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> cachette::Result<()> {
    /// let cache = Cache::builder(Arc::new(MemoryBackend::default())).build().await?;
    /// let answer: Option<u32> = cache
    ///     .get_or_load("answer", |_| async { Ok::<_, std::io::Error>(Some(42)) }, &EntryOptions::new())
    ///     .await?;
    /// assert_eq!(answer, Some(42));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn get_or_load<T, F, Fut, E>(
        &self,
        key: &str,
        loader: F,
        options: &EntryOptions,
    ) -> Result<Option<T>>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce(LoadContext) -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<Option<T>, E>> + Send + 'static,
        E: Into<BoxError> + Send + 'static,
    {
        let inner = &self.inner;
        let resolved = inner.resolve(options)?;
        let stored = inner.keys.stored(key)?;
        refuse_reentrant(inner.id, &stored, key)?;
        if let Some(found) = self.throttled(&stored.identity(key), resolved.fail_safe) {
            bump(&inner.counters.stale_served);
            return inner.decode(&found);
        }
        match self.lookup(key, &stored, resolved.fail_safe).await {
            Lookup::Fresh(found) => self.serve_fresh(&stored.identity(key), &resolved, &found),
            Lookup::Stale(found, start) => {
                let job = self.job(stored, key, resolved, start, Some(found.clone()), true);
                self.serve_stale_and_refresh(&found, job, loader)
            }
            Lookup::BackendFailed(found) => {
                self.serve_fail_safe(&stored.identity(key), &resolved, &found)
            }
            Lookup::Load { start, fallback } => {
                let job = self.job(stored, key, resolved, start, fallback, false);
                self.load_and_wait(job, loader).await
            }
        }
    }

    /// The value fail-safe serves without the loader or the backend while
    /// the key is throttled after a fail-safe activation.
    fn throttled(&self, copy_key: &str, fail_safe: Option<FailSafe>) -> Option<Found> {
        let inner = &self.inner;
        let max_age = millis(fail_safe?.max_age);
        inner.copies.get(copy_key, inner.now(), max_age, true)
    }

    /// Reads the key's entry and decides what to do with it; counts misses.
    async fn lookup(&self, key: &str, stored: &StoredKey, fail_safe: Option<FailSafe>) -> Lookup {
        let inner = &self.inner;
        let read = inner.backend.get(&stored.full).await;
        let now = inner.now();
        let kept = || {
            let max_age = millis(fail_safe?.max_age);
            inner.copies.get(&stored.identity(key), now, max_age, false)
        };
        let lookup = match read {
            Ok(Some(bytes)) => self.classify(key, stored, bytes, now, fail_safe),
            Ok(None) => {
                bump(&inner.counters.misses);
                Lookup::Load {
                    start: Fingerprint::Missing,
                    fallback: None,
                }
            }
            Err(error) => {
                if let Some(found) = kept() {
                    tracing::warn!(
                        key = %key, %error,
                        "fail-safe: the backend failed; serving the value kept by this process"
                    );
                    return Lookup::BackendFailed(found);
                }
                tracing::warn!(key = %key, %error, "the backend failed; loading without it");
                return Lookup::Load {
                    start: Fingerprint::Unknown,
                    fallback: None,
                };
            }
        };
        match lookup {
            Lookup::Load {
                start,
                fallback: None,
            } => Lookup::Load {
                start,
                fallback: kept(),
            },
            other => other,
        }
    }

    /// What stored `bytes` are for a load: fresh, stale, or something to
    /// load over (with the expired value as the fail-safe fallback, if it
    /// is young enough).
    fn classify(
        &self,
        key: &str,
        stored: &StoredKey,
        bytes: Bytes,
        now: u64,
        fail_safe: Option<FailSafe>,
    ) -> Lookup {
        let inner = &self.inner;
        // Hashed only when a load follows, not on a hit.
        let start = || Fingerprint::of(Some(&bytes));
        let found = match inner.parse(bytes.clone(), stored.borrowed(), key) {
            Read::Found(found) => found,
            unusable => {
                inner.count_read(&unusable);
                return Lookup::Load {
                    start: start(),
                    fallback: None,
                };
            }
        };
        if inner.written_by_other_codec(&found) {
            tracing::debug!(key = %stored.full, "the entry was written with another codec; loading over it");
            bump(&inner.counters.misses);
            return Lookup::Load {
                start: start(),
                fallback: None,
            };
        }
        if found.negative {
            return Lookup::Fresh(found);
        }
        match found.freshness(now) {
            Freshness::Fresh => Lookup::Fresh(found),
            Freshness::Stale => Lookup::Stale(found, start()),
            Freshness::Expired => {
                bump(&inner.counters.misses);
                let fallback = fail_safe
                    .filter(|f| found.fail_safe_eligible(now, f.max_age))
                    .map(|_| found);
                Lookup::Load {
                    start: start(),
                    fallback,
                }
            }
        }
    }

    /// Returns a fresh value (or a cached "not found"), kept for fail-safe.
    fn serve_fresh<T: DeserializeOwned>(
        &self,
        copy_key: &str,
        resolved: &Resolved,
        found: &Found,
    ) -> Result<Option<T>> {
        let inner = &self.inner;
        let value = inner.decode(found)?;
        bump(&inner.counters.hits);
        if resolved.fail_safe.is_some() && !found.negative {
            inner.copies.remember(copy_key, found);
        }
        Ok(value)
    }

    /// Returns a stale value at once, kept for fail-safe, and starts `job`,
    /// one background load that refreshes it.
    fn serve_stale_and_refresh<T, L>(&self, found: &Found, job: Job, loader: L) -> Result<Option<T>>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        L: Loader<T>,
    {
        let inner = &self.inner;
        let value = inner.decode(found)?;
        bump(&inner.counters.stale_served);
        if job.resolved.fail_safe.is_some() {
            inner.copies.remember(&job.copy_key(), found);
        }
        let key = job.user_key.clone();
        match self.start_flight(job, loader, true) {
            Ok((_, true)) => bump(&inner.counters.refreshes),
            Ok((_, false)) => {}
            Err(error) => {
                tracing::warn!(key = %key, %error, "could not start the refresh");
            }
        }
        Ok(value)
    }

    /// Starts or joins the load of the key and waits for it; falls back to
    /// fail-safe when the load fails, and to the stale value at the soft
    /// timeout or while another process holds the lock.
    async fn load_and_wait<T, L>(&self, job: Job, loader: L) -> Result<Option<T>>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        L: Loader<T>,
    {
        let soft_timeout = job.resolved.soft_timeout;
        let has_fallback = job.fallback.is_some();
        let copy_key = job.copy_key().into_owned();
        let key = job.user_key.clone();
        let fallback = job.fallback.clone();
        let resolved = job.resolved.clone();
        let (rx, _) = self.start_flight(job, loader, false)?;
        match wait(rx, has_fallback, soft_timeout).await {
            Waited::Done(Outcome::Value(found)) => self.inner.decode(&found),
            Waited::Done(Outcome::NotFound) => Ok(None),
            Waited::Done(Outcome::Failed(failure)) => {
                self.fail_safe_or(&key, &copy_key, &resolved, fallback, failure)
            }
            Waited::Vanished => self.fail_safe_or(
                &key,
                &copy_key,
                &resolved,
                fallback,
                Failure::vanished(&key),
            ),
            waited @ (Waited::SoftTimeout | Waited::BusyElsewhere) => {
                self.serve_while_loading(&key, fallback, &waited)
            }
        }
    }

    /// The stale value for a caller that stops waiting for a load (its
    /// soft timeout passed, or another process holds the lock).
    fn serve_while_loading<T: DeserializeOwned>(
        &self,
        key: &str,
        fallback: Option<Found>,
        waited: &Waited,
    ) -> Result<Option<T>> {
        let inner = &self.inner;
        let Some(found) = fallback else {
            return Err(cache_error(
                ErrorKind::Backend,
                format!(
                    "the load of {} ended without a value",
                    crate::backend::KeyInMessage(key)
                ),
            ));
        };
        bump(&inner.counters.stale_served);
        if let Waited::SoftTimeout = waited {
            bump(&inner.counters.soft_timeouts);
        }
        inner.decode(&found)
    }

    /// Returns the fallback (a fail-safe activation) or the failure.
    fn fail_safe_or<T: DeserializeOwned>(
        &self,
        key: &str,
        copy_key: &str,
        resolved: &Resolved,
        fallback: Option<Found>,
        failure: Failure,
    ) -> Result<Option<T>> {
        match fallback {
            Some(found) => {
                tracing::warn!(
                    key = %key, error = %failure.message,
                    "fail-safe: the load failed; serving the stale value"
                );
                self.serve_fail_safe(copy_key, resolved, &found)
            }
            None => Err(failure.to_error()),
        }
    }

    /// Serves a stale value instead of an error (a fail-safe activation),
    /// and throttles the key.
    fn serve_fail_safe<T: DeserializeOwned>(
        &self,
        copy_key: &str,
        resolved: &Resolved,
        found: &Found,
    ) -> Result<Option<T>> {
        let inner = &self.inner;
        bump(&inner.counters.fail_safe_activations);
        bump(&inner.counters.stale_served);
        if let Some(fail_safe) = resolved.fail_safe {
            inner
                .copies
                .throttle(copy_key, found, later(fail_safe.throttle));
        }
        inner.decode(found)
    }
}
