//! [`Cache::get_or_load`]: single-flight loads, stale-while-revalidate,
//! fail-safe, timeouts and the distributed lock.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::backend::SetOptions;
use crate::error::{Error, ErrorKind, Result};

use super::keys::{Fingerprint, StoredKey};
use super::options::Resolved;
use super::stats::bump;
use super::{Cache, Codec, EntryOptions, Found, Freshness, Inner, Read, cache_error, millis};

type BoxError = Box<dyn StdError + Send + Sync + 'static>;

tokio::task_local! {
    /// The loads the current task is part of: (cache id, stored key), the
    /// outermost first. A load's task inherits its starter's chain.
    static LOADING: Arc<[(u64, String)]>;
}

/// What a loader learns about its load.
#[derive(Debug, Clone)]
pub struct LoadContext {
    key: String,
    refresh: bool,
    stale_created: Option<u64>,
    now: u64,
}

impl LoadContext {
    /// The key being loaded, as the caller wrote it.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Whether this is a background refresh of a stale value (no caller
    /// waits for it).
    pub fn is_refresh(&self) -> bool {
        self.refresh
    }

    /// How old the stale value is that this load replaces, if there is one
    /// with a known age.
    pub fn stale_age(&self) -> Option<Duration> {
        self.stale_created
            .map(|created| Duration::from_millis(self.now.saturating_sub(created)))
    }
}

/// The loader's error, shared by every caller of one load: the
/// [`source`](std::error::Error::source) of the [`Error`] that
/// [`Cache::get_or_load`] returns when its loader failed.
///
/// ```
/// # use cachette::cache::LoaderError;
/// # fn handle(error: &cachette::Error) {
/// if let Some(failed) = LoaderError::find(error) {
///     if let Some(io) = failed.downcast_ref::<std::io::Error>() {
///         eprintln!("the database read failed: {io}");
///     }
/// }
/// # }
/// ```
#[derive(Clone)]
pub struct LoaderError {
    inner: Arc<dyn StdError + Send + Sync + 'static>,
}

impl LoaderError {
    /// The `LoaderError` behind a cachette error, if a loader caused it.
    pub fn find(error: &Error) -> Option<&LoaderError> {
        StdError::source(error)?.downcast_ref::<LoaderError>()
    }

    /// The loader's error.
    pub fn get_ref(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.inner
    }

    /// The loader's error as `E`, if it is one.
    pub fn downcast_ref<E: StdError + 'static>(&self) -> Option<&E> {
        self.inner.downcast_ref::<E>()
    }

    /// The loader's error, shared.
    pub fn shared(&self) -> Arc<dyn StdError + Send + Sync + 'static> {
        Arc::clone(&self.inner)
    }
}

impl fmt::Debug for LoaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.inner, f)
    }
}

impl fmt::Display for LoaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.inner, f)
    }
}

impl StdError for LoaderError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.inner.source()
    }
}

/// Why a load failed, shared by its callers; each gets its own [`Error`].
#[derive(Clone)]
struct Failure {
    kind: ErrorKind,
    message: Arc<str>,
    source: Option<LoaderError>,
}

impl Failure {
    fn to_error(&self) -> Error {
        let error = cache_error(self.kind, self.message.to_string());
        match &self.source {
            Some(source) => error.with_source(source.clone()),
            None => error,
        }
    }

    fn of_loader(key: &str, error: BoxError) -> Failure {
        let kind = error
            .downcast_ref::<Error>()
            .map_or(ErrorKind::Backend, Error::kind);
        Failure {
            kind,
            message: format!("the loader of `{key}` failed: {error}").into(),
            source: Some(LoaderError {
                inner: Arc::from(error),
            }),
        }
    }

    fn vanished(key: &str) -> Failure {
        Failure {
            kind: ErrorKind::Backend,
            message: format!(
                "the loader of `{key}` panicked, or its task was cancelled (runtime shut down)"
            )
            .into(),
            source: None,
        }
    }
}

/// How a load ended.
#[derive(Clone)]
enum Outcome {
    Value(Found),
    NotFound,
    Failed(Failure),
}

/// What the callers of a load see: whether another process holds the
/// distributed lock, then the outcome.
#[derive(Clone, Default)]
pub(super) struct FlightState {
    busy_elsewhere: bool,
    done: Option<Outcome>,
}

/// A load in flight, in the cache's map of flights.
pub(super) struct FlightHandle {
    rx: watch::Receiver<FlightState>,
    id: u64,
}

impl fmt::Debug for FlightHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlightHandle")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Everything a load needs besides its loader.
struct Job {
    key: StoredKey,
    user_key: String,
    resolved: Resolved,
    /// What the backend held when the load was decided.
    start: Fingerprint,
    /// A value fail-safe may serve if the load fails.
    fallback: Option<Found>,
    refresh: bool,
    generation: u64,
    epoch: u64,
    version: u64,
    id: u64,
}

/// How waiting for a load ended, for one caller.
enum Waited {
    Done(Outcome),
    /// The channel closed without an outcome: the load's task died.
    Vanished,
    SoftTimeout,
    BusyElsewhere,
}

/// Removes the flight from the map however its task ends; counts a panic.
struct FlightGuard<C: Codec> {
    inner: Arc<Inner<C>>,
    key: String,
    id: u64,
}

impl<C: Codec> Drop for FlightGuard<C> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            bump(&self.inner.counters.load_errors);
            tracing::warn!(key = %self.key, "a loader panicked");
        }
        let mut flights = self.inner.flights.lock();
        if flights.get(&self.key).is_some_and(|f| f.id == self.id) {
            flights.remove(&self.key);
        }
    }
}

fn is_reentrant(cache: u64, key: &str) -> bool {
    LOADING
        .try_with(|chain| chain.iter().any(|(id, k)| *id == cache && k == key))
        .unwrap_or(false)
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
    /// error is the [`LoaderError`] source), [`ErrorKind::Timeout`] after
    /// the hard timeout, [`ErrorKind::Serialization`] when the stored value
    /// does not decode into `T` (the loader does not run and the entry is
    /// kept), [`ErrorKind::InvalidInput`] for a re-entrant call or bad
    /// options — each unless fail-safe has a stale value to return instead.
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
        if is_reentrant(inner.id, &stored.full) {
            return Err(cache_error(
                ErrorKind::InvalidInput,
                format!(
                    "the loader of `{key}` asked for `{key}` again (a re-entrant get_or_load); \
                     it would wait for itself"
                ),
            ));
        }
        let fail_safe = resolved.fail_safe;
        if let Some(fail_safe) = fail_safe
            && let Some(found) =
                inner
                    .copies
                    .get(&stored.full, inner.now(), millis(fail_safe.max_age), true)
        {
            // Throttled after a fail-safe activation.
            bump(&inner.counters.stale_served);
            return inner.decode(&found);
        }

        let read = inner.backend.get(&stored.full).await;
        let now = inner.now();
        let local_fallback = || {
            fail_safe.and_then(|f| {
                inner
                    .copies
                    .get(&stored.full, now, millis(f.max_age), false)
            })
        };
        let (start, fallback) = match read {
            Ok(Some(bytes)) => {
                // Hashed only when a load follows, not on a hit.
                let start = || Fingerprint::of(Some(&bytes));
                let read = inner.parse(bytes.clone(), stored.borrowed(), key);
                match inner.count_read(&read) {
                    Some(found) if found.negative => {
                        bump(&inner.counters.hits);
                        return Ok(None);
                    }
                    Some(found) => match found.freshness(now) {
                        Freshness::Fresh => {
                            let value = inner.decode(found)?;
                            bump(&inner.counters.hits);
                            if fail_safe.is_some() {
                                inner.copies.remember(&stored.full, found);
                            }
                            return Ok(value);
                        }
                        Freshness::Stale => {
                            let value = inner.decode(found)?;
                            bump(&inner.counters.stale_served);
                            if fail_safe.is_some() {
                                inner.copies.remember(&stored.full, found);
                            }
                            let job =
                                self.job(stored, key, resolved, start(), Some(found.clone()), true);
                            match self.start_flight(job, loader, true) {
                                Ok((_, true)) => bump(&inner.counters.refreshes),
                                Ok((_, false)) => {}
                                Err(error) => {
                                    tracing::warn!(key = %key, %error, "could not start the refresh");
                                }
                            }
                            return Ok(value);
                        }
                        Freshness::Expired => {
                            bump(&inner.counters.misses);
                            let expired = fail_safe
                                .filter(|f| found.fail_safe_eligible(now, f.max_age))
                                .map(|_| found.clone());
                            (start(), expired.or_else(local_fallback))
                        }
                    },
                    None => (start(), local_fallback()),
                }
            }
            Ok(None) => {
                bump(&inner.counters.misses);
                (Fingerprint::Missing, local_fallback())
            }
            Err(error) => {
                if let Some(found) = local_fallback() {
                    tracing::warn!(
                        key = %key, %error,
                        "fail-safe: the backend failed; serving the value kept by this process"
                    );
                    return self.serve_fail_safe(&stored, &resolved, &found);
                }
                tracing::warn!(key = %key, %error, "the backend failed; loading without it");
                (Fingerprint::Unknown, None)
            }
        };

        let soft_timeout = resolved.soft_timeout;
        let has_fallback = fallback.is_some();
        let job = self.job(stored, key, resolved, start, fallback, false);
        let stored = job.key.clone();
        let fallback = job.fallback.clone();
        let resolved = job.resolved.clone();
        let (rx, _) = self.start_flight(job, loader, false)?;
        match wait(rx, has_fallback, soft_timeout).await {
            Waited::Done(Outcome::Value(found)) => inner.decode(&found),
            Waited::Done(Outcome::NotFound) => Ok(None),
            Waited::Done(Outcome::Failed(failure)) => {
                self.fail_safe_or(&stored, &resolved, fallback, failure)
            }
            Waited::Vanished => {
                self.fail_safe_or(&stored, &resolved, fallback, Failure::vanished(key))
            }
            waited @ (Waited::SoftTimeout | Waited::BusyElsewhere) => match fallback {
                Some(found) => {
                    bump(&inner.counters.stale_served);
                    if let Waited::SoftTimeout = waited {
                        bump(&inner.counters.soft_timeouts);
                    }
                    inner.decode(&found)
                }
                None => Err(cache_error(
                    ErrorKind::Backend,
                    format!("the load of `{key}` ended without a value"),
                )),
            },
        }
    }

    fn job(
        &self,
        key: StoredKey,
        user_key: &str,
        resolved: Resolved,
        start: Fingerprint,
        fallback: Option<Found>,
        refresh: bool,
    ) -> Job {
        Job {
            key,
            user_key: user_key.to_owned(),
            resolved,
            start,
            fallback,
            refresh,
            generation: 0,
            epoch: 0,
            version: self.inner.keys.version(),
            id: 0,
        }
    }

    /// Returns the fallback (a fail-safe activation) or the failure.
    fn fail_safe_or<T: DeserializeOwned>(
        &self,
        stored: &StoredKey,
        resolved: &Resolved,
        fallback: Option<Found>,
        failure: Failure,
    ) -> Result<Option<T>> {
        match fallback {
            Some(found) => {
                tracing::warn!(
                    key = %stored.full, error = %failure.message,
                    "fail-safe: the load failed; serving the stale value"
                );
                self.serve_fail_safe(stored, resolved, &found)
            }
            None => Err(failure.to_error()),
        }
    }

    fn serve_fail_safe<T: DeserializeOwned>(
        &self,
        stored: &StoredKey,
        resolved: &Resolved,
        found: &Found,
    ) -> Result<Option<T>> {
        let inner = &self.inner;
        bump(&inner.counters.fail_safe_activations);
        bump(&inner.counters.stale_served);
        if let Some(fail_safe) = resolved.fail_safe {
            inner
                .copies
                .throttle(&stored.full, found, Instant::now() + fail_safe.throttle);
        }
        inner.decode(found)
    }

    /// Joins the load of `job.key` in flight, or starts one with `loader`;
    /// says whether it started one. A `refresh` does not count as joining.
    /// Errors when there is no tokio runtime.
    fn start_flight<T, F, Fut, E>(
        &self,
        mut job: Job,
        loader: F,
        refresh: bool,
    ) -> Result<(watch::Receiver<FlightState>, bool)>
    where
        T: Serialize + Send + 'static,
        F: FnOnce(LoadContext) -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<Option<T>, E>> + Send + 'static,
        E: Into<BoxError> + Send + 'static,
    {
        let inner = &self.inner;
        let mut flights = inner.flights.lock();
        if let Some(flight) = flights.get(job.key.full.as_str()) {
            if !refresh {
                bump(&inner.counters.coalesced);
            }
            return Ok((flight.rx.clone(), false));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            cache_error(
                ErrorKind::Unsupported,
                "get_or_load needs a tokio runtime".into(),
            )
        })?;
        let (tx, rx) = watch::channel(FlightState::default());
        let gate = inner.gate(&job.key.full);
        job.generation = gate.generation.load(Ordering::Acquire);
        job.epoch = inner.epoch.load(Ordering::Acquire);
        job.id = inner.next_flight.fetch_add(1, Ordering::Relaxed);
        flights.insert(
            job.key.full.to_string(),
            FlightHandle {
                rx: rx.clone(),
                id: job.id,
            },
        );
        drop(flights);

        let mut chain: Vec<(u64, String)> =
            LOADING.try_with(|chain| chain.to_vec()).unwrap_or_default();
        chain.push((inner.id, job.key.full.to_string()));
        let task = run_flight(Arc::clone(inner), job, loader, tx);
        runtime.spawn(LOADING.scope(chain.into(), task));
        Ok((rx, true))
    }
}

/// Waits for the outcome of a load; with a fallback, also for the soft
/// timeout or another process's lock.
async fn wait(
    mut rx: watch::Receiver<FlightState>,
    has_fallback: bool,
    soft_timeout: Option<Duration>,
) -> Waited {
    let outcome = async move {
        match rx
            .wait_for(|s| s.done.is_some() || (has_fallback && s.busy_elsewhere))
            .await
        {
            Ok(state) => match &state.done {
                Some(outcome) => Waited::Done(outcome.clone()),
                None => Waited::BusyElsewhere,
            },
            Err(_) => Waited::Vanished,
        }
    };
    match soft_timeout {
        Some(timeout) if has_fallback => tokio::time::timeout(timeout, outcome)
            .await
            .unwrap_or(Waited::SoftTimeout),
        _ => outcome.await,
    }
}

/// The task of one load: lock, load, store, answer.
async fn run_flight<C, T, F, Fut, E>(
    inner: Arc<Inner<C>>,
    job: Job,
    loader: F,
    tx: watch::Sender<FlightState>,
) where
    C: Codec,
    T: Serialize + Send + 'static,
    F: FnOnce(LoadContext) -> Fut + Send + 'static,
    Fut: Future<Output = std::result::Result<Option<T>, E>> + Send + 'static,
    E: Into<BoxError> + Send + 'static,
{
    let _guard = FlightGuard {
        inner: Arc::clone(&inner),
        key: job.key.full.to_string(),
        id: job.id,
    };
    // Double check: a load that finished between this caller's read and
    // the start of this one has stored a fresh value already.
    if job.start != Fingerprint::Unknown
        && let Ok(Some(bytes)) = inner.backend.get(&job.key.full).await
        && let Some(outcome) = fresh_outcome(&inner, &job, bytes)
    {
        tx.send_replace(FlightState {
            busy_elsewhere: false,
            done: Some(outcome),
        });
        return;
    }
    let mut held_lock = None;
    if let Some(lock) = inner.lock {
        let lock_key = inner.keys.lock_key(&job.key);
        let token = format!("{:032x}", fastrand::u128(..));
        let options = SetOptions::new().ttl(lock.lock_ttl).if_absent();
        match inner
            .backend
            .set(&lock_key, Bytes::from(token.clone()), &options)
            .await
        {
            Ok(true) => held_lock = Some((lock_key, token)),
            Ok(false) => {
                tx.send_modify(|state| state.busy_elsewhere = true);
                if let Some(outcome) = poll_for_value(&inner, &job, lock.wait).await {
                    tx.send_replace(FlightState {
                        busy_elsewhere: true,
                        done: Some(outcome),
                    });
                    return;
                }
                tracing::debug!(key = %job.user_key, "the lock holder stored nothing in time; loading");
            }
            Err(error) => {
                tracing::warn!(key = %job.user_key, %error, "could not take the distributed lock; loading");
            }
        }
    }

    let outcome = load(&inner, &job, loader).await;
    if let Outcome::Failed(_) = &outcome
        && let (Some(fail_safe), Some(fallback)) = (job.resolved.fail_safe, &job.fallback)
    {
        inner
            .copies
            .throttle(&job.key.full, fallback, Instant::now() + fail_safe.throttle);
    }
    if let Some((lock_key, token)) = held_lock {
        release_lock(&inner, &lock_key, &token).await;
    }
    tx.send_replace(FlightState {
        busy_elsewhere: false,
        done: Some(outcome),
    });
}

/// Runs the loader (with the hard timeout) and stores its result.
async fn load<C, T, F, Fut, E>(inner: &Arc<Inner<C>>, job: &Job, loader: F) -> Outcome
where
    C: Codec,
    T: Serialize + Send + 'static,
    F: FnOnce(LoadContext) -> Fut + Send + 'static,
    Fut: Future<Output = std::result::Result<Option<T>, E>> + Send + 'static,
    E: Into<BoxError> + Send + 'static,
{
    bump(&inner.counters.loads);
    let context = LoadContext {
        key: job.user_key.clone(),
        refresh: job.refresh,
        stale_created: job.fallback.as_ref().and_then(|f| f.created),
        now: inner.now(),
    };
    let running = loader(context);
    let result = match job.resolved.hard_timeout {
        Some(limit) => match tokio::time::timeout(limit, running).await {
            Ok(result) => result,
            Err(_) => {
                bump(&inner.counters.hard_timeouts);
                bump(&inner.counters.load_errors);
                return Outcome::Failed(Failure {
                    kind: ErrorKind::Timeout,
                    message: format!(
                        "the loader of `{}` did not finish within the hard timeout of {limit:?}",
                        job.user_key
                    )
                    .into(),
                    source: None,
                });
            }
        },
        None => running.await,
    };
    let value = match result {
        Ok(value) => value,
        Err(error) => {
            bump(&inner.counters.load_errors);
            return Outcome::Failed(Failure::of_loader(&job.user_key, error.into()));
        }
    };
    let now = inner.now();
    let Some(value) = value else {
        if job.resolved.negative_ttl.is_some() {
            let plan = job.resolved.plan(now, true);
            let bytes = inner.entry_bytes(
                &job.key,
                &job.user_key,
                Bytes::new(),
                inner.codec.id(),
                &job.resolved,
                &plan,
                now,
                true,
            );
            store(inner, job, bytes, &plan.set_options).await;
        }
        return Outcome::NotFound;
    };
    let payload = match inner.codec.encode(&value) {
        Ok(payload) => Bytes::from(payload),
        Err(error) => {
            bump(&inner.counters.load_errors);
            return Outcome::Failed(Failure {
                kind: error.kind(),
                message: format!("the value loaded for `{}`: {error}", job.user_key).into(),
                source: None,
            });
        }
    };
    let plan = job.resolved.plan(now, false);
    let bytes = inner.entry_bytes(
        &job.key,
        &job.user_key,
        payload.clone(),
        inner.codec.id(),
        &job.resolved,
        &plan,
        now,
        false,
    );
    let stored = store(inner, job, bytes, &plan.set_options).await;
    let found = Found {
        payload,
        codec: Some(inner.codec.id()),
        created: Some(now),
        soft_deadline: plan.soft_deadline,
        hard_deadline: plan.hard_deadline,
        negative: false,
    };
    if stored && job.resolved.fail_safe.is_some() {
        inner.copies.remember(&job.key.full, &found);
    }
    Outcome::Value(found)
}

/// Stores a load's result unless a write of this process, an invalidation
/// or a version bump came after the load started, or the entry changed in
/// the backend meanwhile. Returns whether it stored.
async fn store<C: Codec>(inner: &Inner<C>, job: &Job, bytes: Bytes, options: &SetOptions) -> bool {
    let gate = inner.gate(&job.key.full);
    let _storing = gate.lock.write().await;
    if gate.generation.load(Ordering::Acquire) != job.generation
        || inner.epoch.load(Ordering::Acquire) != job.epoch
        || inner.keys.version() != job.version
    {
        tracing::debug!(key = %job.user_key, "a write came after the load started; not storing its result");
        return false;
    }
    if job.start != Fingerprint::Unknown {
        match inner.backend.get(&job.key.full).await {
            Ok(current) if Fingerprint::of(current.as_deref()) != job.start => {
                tracing::debug!(key = %job.user_key, "the entry changed while loading; not storing the result");
                return false;
            }
            _ => {}
        }
    }
    match inner.backend.set(&job.key.full, bytes, options).await {
        Ok(_) => true,
        Err(error) => {
            tracing::warn!(key = %job.user_key, %error, "could not store the loaded value");
            false
        }
    }
}

/// A lock loser waits for the holder's value: polls with backoff until a
/// fresh entry other than the one the load started from appears, or `wait`
/// has passed.
async fn poll_for_value<C: Codec>(inner: &Inner<C>, job: &Job, wait: Duration) -> Option<Outcome> {
    const FIRST_POLL: Duration = Duration::from_millis(10);
    const MAX_POLL: Duration = Duration::from_millis(250);
    let deadline = Instant::now() + wait;
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

/// The outcome that stored `bytes` give a load without running it: a
/// fresh entry other than the one the load started from.
fn fresh_outcome<C: Codec>(inner: &Inner<C>, job: &Job, bytes: Bytes) -> Option<Outcome> {
    if Fingerprint::of(Some(&bytes)) == job.start {
        return None;
    }
    match inner.parse(bytes, job.key.borrowed(), &job.user_key) {
        Read::Found(found) if found.freshness(inner.now()) == Freshness::Fresh => {
            Some(if found.negative {
                Outcome::NotFound
            } else {
                Outcome::Value(found)
            })
        }
        _ => None,
    }
}

/// Deletes the lock if this load still holds it (a read, then a delete:
/// not atomic; at worst another holder's lock goes early, which costs one
/// extra load).
async fn release_lock<C: Codec>(inner: &Inner<C>, lock_key: &str, token: &str) {
    match inner.backend.get(lock_key).await {
        Ok(Some(current)) if current == token.as_bytes() => {
            if let Err(error) = inner.backend.delete(lock_key).await {
                tracing::warn!(key = %lock_key, %error, "could not release the distributed lock");
            }
        }
        Ok(_) => {}
        Err(error) => {
            tracing::warn!(key = %lock_key, %error, "could not release the distributed lock");
        }
    }
}
