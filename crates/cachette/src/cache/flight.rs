//! Single-flight: one load per key at a time in this process. The first
//! caller starts the load as a tokio task of its own; later callers join it
//! and wait for its outcome. The task runs the loader, stores its result
//! (unless a write came after it started) and answers every caller.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt as _;
use serde::Serialize;
use tokio::sync::watch;

use crate::backend::SetOptions;
use crate::error::{Error, ErrorKind, Result};

use super::clock::later;
use super::codec::NAME;
use super::entry::{Found, Freshness, Read};
use super::inner::Inner;
use super::keys::{Fingerprint, StoredKey};
use super::loader::{Failure, LoadContext, Loader};
use super::lock;
use super::options::Resolved;
use super::stats::bump;
use super::{Cache, Codec, cache_error};

tokio::task_local! {
    /// The loads the current task is part of: (cache id, stored key), the
    /// outermost first. A load's task inherits its starter's chain.
    static LOADING: Arc<[(u64, String)]>;
}

/// How a load ended.
#[derive(Clone)]
pub(super) enum Outcome {
    Value(Found),
    NotFound,
    Failed(Failure),
}

/// What the callers of a load see: whether another process holds the
/// distributed lock, then the outcome.
#[derive(Clone, Default)]
pub(super) struct FlightState {
    pub(super) busy_elsewhere: bool,
    pub(super) done: Option<Outcome>,
}

impl FlightState {
    /// The state of a load that ended with `outcome`.
    pub(super) fn done(busy_elsewhere: bool, outcome: Outcome) -> Self {
        FlightState {
            busy_elsewhere,
            done: Some(outcome),
        }
    }
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
pub(super) struct Job {
    pub(super) key: StoredKey,
    pub(super) user_key: String,
    pub(super) resolved: Resolved,
    /// What the backend held when the load was decided.
    pub(super) start: Fingerprint,
    /// A value fail-safe may serve if the load fails.
    pub(super) fallback: Option<Found>,
    pub(super) refresh: bool,
    generation: u64,
    epoch: u64,
    version: u64,
    id: u64,
}

/// How waiting for a load ended, for one caller.
pub(super) enum Waited {
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

/// Refuses a load that its own loader started, directly or through loads
/// it started: it would wait for itself.
pub(super) fn refuse_reentrant(cache: u64, stored: &StoredKey, key: &str) -> Result<()> {
    let reentrant = LOADING
        .try_with(|chain| {
            chain
                .iter()
                .any(|(id, k)| *id == cache && *k == stored.identity(key))
        })
        .unwrap_or(false);
    if reentrant {
        return Err(cache_error(
            ErrorKind::InvalidInput,
            format!(
                "the loader of {key} asked for {key} again (a re-entrant get_or_load); \
                 it would wait for itself",
                key = crate::backend::KeyInMessage(key)
            ),
        ));
    }
    Ok(())
}

impl Job {
    /// The key of this load's fail-safe copy.
    pub(super) fn copy_key(&self) -> std::borrow::Cow<'_, str> {
        self.key.identity(&self.user_key)
    }
}

impl<C: Codec> Cache<C> {
    /// A load of `key` not yet started.
    pub(super) fn job(
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

    /// Joins the load of `job.key` in flight, or starts one with `loader`;
    /// says whether it started one. A `refresh` does not count as joining.
    /// Errors when there is no tokio runtime.
    pub(super) fn start_flight<T, L>(
        &self,
        mut job: Job,
        loader: L,
        refresh: bool,
    ) -> Result<(watch::Receiver<FlightState>, bool)>
    where
        T: Serialize + Send + 'static,
        L: Loader<T>,
    {
        let inner = &self.inner;
        let flight_key = job.key.identity(&job.user_key).into_owned();
        let mut flights = inner.flights.lock();
        if let Some(flight) = flights.get(&flight_key) {
            if !refresh {
                bump(&inner.counters.coalesced);
            }
            return Ok((flight.rx.clone(), false));
        }
        Error::require_runtime(NAME, "get_or_load", "get_or_load (its loads run as tasks)")?;
        let runtime = tokio::runtime::Handle::current();
        let (tx, rx) = watch::channel(FlightState::default());
        let gate = inner.gate(&job.key.full);
        job.generation = gate.generation.load(Ordering::Acquire);
        job.epoch = inner.epoch.load(Ordering::Acquire);
        job.id = inner.next_flight.fetch_add(1, Ordering::Relaxed);
        flights.insert(
            flight_key.clone(),
            FlightHandle {
                rx: rx.clone(),
                id: job.id,
            },
        );
        drop(flights);

        let mut chain: Vec<(u64, String)> =
            LOADING.try_with(|chain| chain.to_vec()).unwrap_or_default();
        chain.push((inner.id, flight_key.clone()));
        // The guard exists before the task: a task dropped before its first
        // poll (its runtime shut down) still removes the flight.
        let guard = FlightGuard {
            inner: Arc::clone(inner),
            key: flight_key,
            id: job.id,
        };
        let task = run_flight(guard, job, loader, tx);
        runtime.spawn(LOADING.scope(chain.into(), task));
        Ok((rx, true))
    }
}

/// Waits for the outcome of a load; with a fallback, also for the soft
/// timeout or another process's lock.
pub(super) async fn wait(
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
async fn run_flight<C, T, L>(
    guard: FlightGuard<C>,
    job: Job,
    loader: L,
    tx: watch::Sender<FlightState>,
) where
    C: Codec,
    T: Serialize + Send + 'static,
    L: Loader<T>,
{
    let inner = Arc::clone(&guard.inner);
    // Double check: a load that finished between this caller's read and
    // the start of this one has stored a fresh value already.
    if job.start != Fingerprint::Unknown
        && let Ok(Some(bytes)) = inner.backend.get(&job.key.full).await
        && let Some(outcome) = fresh_outcome(&inner, &job, bytes)
    {
        tx.send_replace(FlightState::done(false, outcome));
        return;
    }
    let held_lock = match lock::take(&inner, &job, &tx).await {
        lock::Taken::Answered(outcome) => {
            tx.send_replace(FlightState::done(true, outcome));
            return;
        }
        lock::Taken::Held(held) => Some(held),
        lock::Taken::Not => None,
    };

    let outcome = load(&inner, &job, loader).await;
    if let Outcome::Failed(_) = &outcome
        && let (Some(fail_safe), Some(fallback)) = (job.resolved.fail_safe, &job.fallback)
    {
        inner
            .copies
            .throttle(&job.copy_key(), fallback, later(fail_safe.throttle));
    }
    if let Some(held) = held_lock {
        held.release(&inner, &outcome).await;
    }
    tx.send_replace(FlightState::done(false, outcome));
}

/// Runs the loader and stores its result.
async fn load<C, T, L>(inner: &Arc<Inner<C>>, job: &Job, loader: L) -> Outcome
where
    C: Codec,
    T: Serialize + Send + 'static,
    L: Loader<T>,
{
    bump(&inner.counters.loads);
    match run_loader(inner, job, loader).await {
        Ok(Some(value)) => store_value(inner, job, value).await,
        Ok(None) => {
            store_not_found(inner, job).await;
            Outcome::NotFound
        }
        Err(failure) => {
            bump(&inner.counters.load_errors);
            Outcome::Failed(failure)
        }
    }
}

/// Runs the loader, cancelled after the hard timeout.
async fn run_loader<C, T, L>(
    inner: &Inner<C>,
    job: &Job,
    loader: L,
) -> std::result::Result<Option<T>, Failure>
where
    C: Codec,
    L: Loader<T>,
{
    let context = LoadContext {
        key: job.user_key.clone(),
        refresh: job.refresh,
        stale_created: job.fallback.as_ref().and_then(|f| f.created),
        now: inner.now(),
    };
    // A panic becomes this load's failure, with its message.
    let running = AssertUnwindSafe(async move { loader.start(context).await }).catch_unwind();
    let result = match job.resolved.hard_timeout {
        Some(limit) => match tokio::time::timeout(limit, running).await {
            Ok(result) => result,
            Err(_) => {
                bump(&inner.counters.hard_timeouts);
                return Err(Failure::timed_out(&job.user_key, limit));
            }
        },
        None => running.await,
    };
    match result {
        Ok(result) => result.map_err(|error| Failure::of_loader(&job.user_key, error.into())),
        Err(payload) => {
            tracing::warn!(key = %job.user_key, "a loader panicked");
            Err(Failure::panicked(&job.user_key, payload.as_ref()))
        }
    }
}

/// Stores a loaded value; the outcome every caller decodes it from.
async fn store_value<C: Codec, T: Serialize>(inner: &Inner<C>, job: &Job, value: T) -> Outcome {
    let now = inner.now();
    let payload = match inner.codec.encode(&value) {
        Ok(payload) => Bytes::from(payload),
        Err(error) => {
            bump(&inner.counters.load_errors);
            return Outcome::Failed(Failure::of_encoding(&job.user_key, &error));
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
        inner.copies.remember(&job.copy_key(), &found);
    }
    Outcome::Value(found)
}

/// Stores a loader's "not found", if the options cache it.
async fn store_not_found<C: Codec>(inner: &Inner<C>, job: &Job) {
    if job.resolved.negative_ttl.is_none() {
        return;
    }
    let now = inner.now();
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

/// The outcome that stored `bytes` give a load without running it: a
/// fresh entry of this cache's codec other than the one the load started
/// from. (Another codec's entry is what the load replaces.)
pub(super) fn fresh_outcome<C: Codec>(
    inner: &Inner<C>,
    job: &Job,
    bytes: Bytes,
) -> Option<Outcome> {
    if Fingerprint::of(Some(&bytes)) == job.start {
        return None;
    }
    match inner.parse(bytes, job.key.borrowed(), &job.user_key) {
        Read::Found(found)
            if found.freshness(inner.now()) == Freshness::Fresh
                && !inner.written_by_other_codec(&found) =>
        {
            Some(if found.negative {
                Outcome::NotFound
            } else {
                Outcome::Value(found)
            })
        }
        _ => None,
    }
}
