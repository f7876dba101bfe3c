//! [`Cache::get_or_load`], in named steps: read a fresh value, serve a
//! stale one and refresh it, load under single-flight, fall back to
//! fail-safe.

use std::convert::Infallible;
use std::future::Future;

use bytes::Bytes;
use futures_util::FutureExt as _;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{ErrorKind, Result};

use super::clock::millis;
use super::entry::{Found, Freshness, Read};
use super::failsafe::Throttled;
use super::flight::{Entered, Job, Outcome, Waited, refuse_reentrant, wait};
use super::keys::{Fingerprint, StoredKey};
use super::loader::{BoxError, Detached, Failure, InPlace, LoadContext, Loader};
use super::options::{FailSafe, Fraction, Resolved};
use super::stats::bump;
use super::{Cache, Codec, EntryOptions, cache_error};

/// What the read before a load found.
pub(super) enum Lookup {
    /// A fresh value, or a cached "not found": the answer.
    Fresh(Found),
    /// A fresh value past the eager-refresh point: the answer, refreshed
    /// in the background from the entry with this fingerprint.
    Eager(Found, Fingerprint),
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
    /// distributed lock, and [`EntryOptions`] for `options`. This is
    /// moka's `try_get_with`; [`get_with`](Self::get_with) is the form
    /// for loaders that cannot fail, and
    /// [`get_or_load_borrowed`](Self::get_or_load_borrowed) the form for
    /// loaders that borrow from their caller.
    ///
    /// The loader returns `Ok(Some(value))`, `Ok(None)` for "not found"
    /// (cached for the negative TTL, if one is set), or an error of any
    /// type convertible into `Box<dyn Error + Send + Sync>`. It runs as a
    /// tokio task of its own, hence `'static`. Through its
    /// [`LoadContext`] it may choose the options of the entry it stores
    /// from the value it loaded (adaptive caching).
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
        self.load_with(key, Detached::new(loader), options).await
    }

    /// [`get_or_load`](Self::get_or_load) for a loader that cannot fail
    /// (moka's `get_with`): it returns `Some(value)` or `None` for "not
    /// found", and needs no error type. Everything else is as in
    /// `get_or_load`; the call can still fail (a backend or decoding
    /// error, a hard timeout).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use cachette::MemoryBackend;
    /// # use cachette::cache::{Cache, EntryOptions};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> cachette::Result<()> {
    /// let cache = Cache::builder(Arc::new(MemoryBackend::default())).build().await?;
    /// let answer = cache.get_with("answer", |_| async { Some(42_u32) }, &EntryOptions::new()).await?;
    /// assert_eq!(answer, Some(42));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn get_with<T, F, Fut>(
        &self,
        key: &str,
        loader: F,
        options: &EntryOptions,
    ) -> Result<Option<T>>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce(LoadContext) -> Fut + Send + 'static,
        Fut: Future<Output = Option<T>> + Send + 'static,
    {
        let loader = move |context| loader(context).map(Ok::<_, Infallible>);
        self.load_with(key, Detached::new(loader), options).await
    }

    /// [`get_or_load`](Self::get_or_load) for a loader that borrows from
    /// its caller (`&self`, `&db`): it need not be `'static` or `Send`,
    /// because it runs inside this call's future instead of a task of its
    /// own.
    ///
    /// Single-flight still holds in this process: the first caller runs
    /// the loader, concurrent callers of the key (through any `get_or_load`
    /// form) wait for it. If that first caller is dropped mid-load (a
    /// cancelled request), one of the waiting callers takes over with its
    /// own loader (as a task of its own for a
    /// [`get_or_load`](Self::get_or_load) caller), and the others wait for
    /// that one, as with moka's `get_with`. A distributed lock the dropped
    /// caller held stays until its `lock_ttl`.
    ///
    /// The trade-off — nothing runs after this call returns:
    /// - a stale value (past its soft TTL) is refreshed in the foreground:
    ///   this caller runs the loader and waits for it; if the loader fails,
    ///   the stale value is returned (with fail-safe, as with any failed
    ///   load). Concurrent callers holding the stale value wait too, up to
    ///   their soft timeout;
    /// - the caller running the loader ignores the soft timeout (returning
    ///   early would cancel its load); the hard timeout holds;
    /// - eager refresh does not apply;
    /// - during a fail-safe throttle, the caller whose turn it is makes the
    ///   recovery attempt in the foreground.
    ///
    /// Use `get_or_load` where latency matters more than a clone.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use cachette::MemoryBackend;
    /// # use cachette::cache::{Cache, EntryOptions};
    /// struct Db {
    ///     names: Vec<String>,
    /// }
    ///
    /// impl Db {
    ///     async fn name(&self, id: usize) -> Result<Option<String>, std::io::Error> {
    ///         Ok(self.names.get(id).cloned())
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> cachette::Result<()> {
    /// let cache = Cache::builder(Arc::new(MemoryBackend::default())).build().await?;
    /// let db = Db { names: vec!["Ada".into()] };
    /// // The loader borrows `db`: no Arc, no clone.
    /// let name = cache
    ///     .get_or_load_borrowed("user:0", |_| db.name(0), &EntryOptions::new())
    ///     .await?;
    /// assert_eq!(name.as_deref(), Some("Ada"));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn get_or_load_borrowed<T, F, Fut, E>(
        &self,
        key: &str,
        loader: F,
        options: &EntryOptions,
    ) -> Result<Option<T>>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce(LoadContext) -> Fut,
        Fut: Future<Output = std::result::Result<Option<T>, E>>,
        E: Into<BoxError>,
    {
        self.load_with(key, InPlace(loader), options).await
    }

    /// The body of every `get_or_load` form.
    async fn load_with<T, L>(
        &self,
        key: &str,
        loader: L,
        options: &EntryOptions,
    ) -> Result<Option<T>>
    where
        T: Serialize + DeserializeOwned,
        L: Loader<C, T>,
    {
        let inner = &self.inner;
        let resolved = inner.resolve(options)?;
        let stored = inner.keys.stored(key)?;
        refuse_reentrant(inner.id, &stored, key)?;
        // While throttled, the kept value is served; an in-place loader
        // makes a due recovery attempt in the foreground instead, as a
        // load past the throttle would.
        if let Some(throttled) = self.throttled(&stored.identity(key), resolved.fail_safe)
            && (L::DETACHED || !throttled.attempt)
        {
            bump(&inner.counters.stale_served);
            let value = inner.decode(&throttled.found)?;
            if throttled.attempt {
                let fallback = Some(throttled.found);
                let mut job = self.job(stored, key, resolved, Fingerprint::Unknown, fallback, true);
                job.recovery = true;
                self.refresh_in_background(job, loader);
            }
            return Ok(value);
        }
        match self.lookup(key, &stored, &resolved).await {
            Lookup::Fresh(found) => self.serve_fresh(&stored.identity(key), &resolved, &found),
            Lookup::Eager(found, start) => {
                let value = self.serve_fresh(&stored.identity(key), &resolved, &found)?;
                if L::DETACHED {
                    let job = self.job(stored, key, resolved, start, Some(found), true);
                    self.refresh_in_background(job, loader);
                }
                Ok(value)
            }
            Lookup::Stale(found, start) if L::DETACHED => {
                let job = self.job(stored, key, resolved, start, Some(found.clone()), true);
                self.serve_stale_and_refresh(&found, job, loader)
            }
            Lookup::Stale(found, start) => {
                // No background: refreshed in the foreground, the stale
                // value the fallback.
                let job = self.job(stored, key, resolved, start, Some(found), false);
                self.load_and_wait(job, loader).await
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

    /// The value fail-safe serves without waiting for the loader or the
    /// backend while the key is throttled after a fail-safe activation,
    /// and whether this caller starts a recovery attempt.
    fn throttled(&self, copy_key: &str, fail_safe: Option<FailSafe>) -> Option<Throttled> {
        let inner = &self.inner;
        inner.copies.throttled(copy_key, inner.now(), fail_safe?)
    }

    /// Reads the key's entry and decides what to do with it; counts misses.
    async fn lookup(&self, key: &str, stored: &StoredKey, resolved: &Resolved) -> Lookup {
        match self.inner.backend.get(&stored.full).await {
            Ok(read) => self.decide(key, stored, Ok(read), resolved),
            Err(error) => self.decide(key, stored, Err(&error), resolved),
        }
    }

    /// What the backend's answer `read` for a key means for a load; counts
    /// misses.
    pub(super) fn decide(
        &self,
        key: &str,
        stored: &StoredKey,
        read: std::result::Result<Option<Bytes>, &crate::Error>,
        resolved: &Resolved,
    ) -> Lookup {
        let inner = &self.inner;
        let fail_safe = resolved.fail_safe;
        let now = inner.now();
        let kept = || {
            let max_age = millis(fail_safe?.max_age);
            inner.copies.get(&stored.identity(key), now, max_age, false)
        };
        let lookup = match read {
            Ok(Some(bytes)) => self.classify(key, stored, bytes, now, resolved),
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
    pub(super) fn classify(
        &self,
        key: &str,
        stored: &StoredKey,
        bytes: Bytes,
        now: u64,
        resolved: &Resolved,
    ) -> Lookup {
        let inner = &self.inner;
        let fail_safe = resolved.fail_safe;
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
            Freshness::Fresh => match resolved.eager_refresh {
                Some(Fraction(fraction))
                    if found.eager_refresh_due(now, fraction, resolved.fresh_for()) =>
                {
                    Lookup::Eager(found, start())
                }
                _ => Lookup::Fresh(found),
            },
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
    pub(super) fn serve_fresh<T: DeserializeOwned>(
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
        T: Serialize + DeserializeOwned,
        L: Loader<C, T>,
    {
        let inner = &self.inner;
        let value = inner.decode(found)?;
        bump(&inner.counters.stale_served);
        if job.resolved.fail_safe.is_some() {
            inner.copies.remember(&job.copy_key(), found);
        }
        self.refresh_in_background(job, loader);
        Ok(value)
    }

    /// Starts `job` as a background load (a refresh, an eager refresh or
    /// a recovery attempt) unless the key is loading already; counted in
    /// [`CacheStats::refreshes`](super::CacheStats::refreshes).
    fn refresh_in_background<T: Serialize, L: Loader<C, T>>(&self, job: Job, loader: L) {
        let key = job.user_key.clone();
        match self.start_flight(job, loader) {
            Ok((_, true)) => bump(&self.inner.counters.refreshes),
            Ok((_, false)) => {}
            Err(error) => {
                tracing::warn!(key = %key, %error, "could not start the refresh");
            }
        }
    }

    /// Starts or joins the load of the key and waits for it; falls back to
    /// fail-safe when the load fails, and to the stale value at the soft
    /// timeout or while another process holds the lock.
    async fn load_and_wait<T, L>(&self, mut job: Job, loader: L) -> Result<Option<T>>
    where
        T: Serialize + DeserializeOwned,
        L: Loader<C, T>,
    {
        let soft_timeout = job.resolved.soft_timeout;
        let has_fallback = job.fallback.is_some();
        let copy_key = job.copy_key().into_owned();
        let key = job.user_key.clone();
        let fallback = job.fallback.clone();
        let resolved = job.resolved.clone();
        let waited = loop {
            match self.enter_flight(job)? {
                Entered::Joined(rx, returned) => {
                    let waited = wait(rx, has_fallback, soft_timeout).await;
                    if !matches!(waited, Waited::Vanished) {
                        break waited;
                    }
                    // The caller that ran its loader in place was dropped
                    // mid-load (or the runtime of the load's task shut
                    // down): this caller takes over with its own loader.
                    job = returned;
                }
                Entered::Leader(leader) => {
                    let rx = leader.receiver();
                    match loader.lead(leader) {
                        Some(running) => {
                            running.await;
                            break wait(rx, false, None).await;
                        }
                        None => break wait(rx, has_fallback, soft_timeout).await,
                    }
                }
            }
        };
        match waited {
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
    pub(super) fn serve_fail_safe<T: DeserializeOwned>(
        &self,
        copy_key: &str,
        resolved: &Resolved,
        found: &Found,
    ) -> Result<Option<T>> {
        self.activate_fail_safe(copy_key, resolved, found);
        self.inner.decode(found)
    }

    /// Counts a fail-safe activation serving `found`, and throttles the
    /// key.
    pub(super) fn activate_fail_safe(&self, copy_key: &str, resolved: &Resolved, found: &Found) {
        let inner = &self.inner;
        bump(&inner.counters.fail_safe_activations);
        bump(&inner.counters.stale_served);
        if let Some(fail_safe) = resolved.fail_safe {
            inner.copies.throttle(copy_key, found, fail_safe);
        }
    }
}
