//! Single-flight: one load per key at a time in this process. The first
//! caller leads the load: as a tokio task of its own (a detached loader),
//! or inside its own future (a borrowing loader); later callers join it
//! and wait for its outcome, unless a write of the key or an invalidation
//! came in between (they start a load of their own). The leader runs the
//! loader, stores its result (unless a write came after it started) and
//! answers every caller.

use std::borrow::Cow;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt as _;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::watch;

use crate::backend::SetOptions;
use crate::error::{Error, ErrorKind, Result};

use super::codec::NAME;
use super::entry::{Found, Freshness, Read};
use super::inner::Inner;
use super::keys::{Fingerprint, StoredKey};
use super::loader::{Adapted, Failure, LoadContext, Loader};
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
    /// The cache's epoch when it started: a call made after an
    /// invalidation or a version change does not join it (its result
    /// would predate them). A write of the key removes it from the map.
    epoch: u64,
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
    /// A fail-safe recovery attempt: reads the backend first, and adopts
    /// a fresh value found there instead of loading.
    pub(super) recovery: bool,
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

impl<C: Codec> FlightGuard<C> {
    /// Removes the flight from the map (if it is still this one's), so
    /// that calls from now on start a load of their own.
    fn leave(&self) {
        let mut flights = self.inner.flights.lock();
        if flights.get(&self.key).is_some_and(|f| f.id == self.id) {
            flights.remove(&self.key);
        }
    }

    /// Answers the callers, after leaving the map: a caller woken by the
    /// answer (on another thread of a multi-thread runtime, at once) that
    /// calls again must not join this finished load and get its outcome
    /// again (an error would look cached).
    fn answer(&self, tx: &watch::Sender<FlightState>, state: FlightState) {
        self.leave();
        tx.send_replace(state);
    }
}

impl<C: Codec> Drop for FlightGuard<C> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            bump(&self.inner.counters.load_errors);
            tracing::warn!(key = %self.key, "a loader panicked");
        }
        self.leave();
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
            recovery: false,
            generation: 0,
            epoch: 0,
            version: self.inner.keys.version(),
            id: 0,
        }
    }

    /// Joins the load of `job.key` in flight, or starts one with `loader`
    /// as a task of its own; says whether it started one. A refresh does
    /// not count as joining. Errors when there is no tokio runtime. Only
    /// for detached loaders: an in-place loader's flight would end here.
    pub(super) fn start_flight<T, L>(
        &self,
        job: Job,
        loader: L,
    ) -> Result<(watch::Receiver<FlightState>, bool)>
    where
        T: Serialize,
        L: Loader<C, T>,
    {
        debug_assert!(
            L::DETACHED,
            "an in-place loader cannot start a background load"
        );
        match self.enter_flight(job)? {
            Entered::Joined(rx, _) => Ok((rx, false)),
            Entered::Leader(leader) => {
                let rx = leader.tx.subscribe();
                drop(loader.lead(leader));
                Ok((rx, true))
            }
        }
    }

    /// Joins the load of `job.key` in flight (giving `job` back), or
    /// registers a new one that the caller leads. Errors when there is no
    /// tokio runtime.
    pub(super) fn enter_flight(&self, mut job: Job) -> Result<Entered<C>> {
        let inner = &self.inner;
        let flight_key = job.key.identity(&job.user_key).into_owned();
        let mut flights = inner.flights.lock();
        let epoch = inner.epoch.load(Ordering::Acquire);
        // A flight whose leader is gone (an in-place caller dropped
        // mid-load) is replaced rather than joined; so is a load that
        // started before an invalidation: it goes on for its callers
        // (without storing), and this call starts a load of its own, which
        // takes its place in the map.
        if let Some(flight) = flights.get(&flight_key)
            && flight.rx.has_changed().is_ok()
            && flight.epoch == epoch
        {
            if !job.refresh {
                bump(&inner.counters.coalesced);
            }
            return Ok(Entered::Joined(flight.rx.clone(), job));
        }
        Error::require_runtime(NAME, "get_or_load", "get_or_load (its loads run as tasks)")?;
        let (tx, rx) = watch::channel(FlightState::default());
        let gate = inner.gate(&job.key.full);
        job.generation = gate.generation.load(Ordering::Acquire);
        job.epoch = epoch;
        job.id = inner.next_flight.fetch_add(1, Ordering::Relaxed);
        flights.insert(
            flight_key.clone(),
            FlightHandle {
                rx,
                id: job.id,
                epoch,
            },
        );
        drop(flights);

        let mut chain: Vec<(u64, String)> =
            LOADING.try_with(|chain| chain.to_vec()).unwrap_or_default();
        chain.push((inner.id, flight_key.clone()));
        // The guard exists before the load runs: a task dropped before its
        // first poll (its runtime shut down), or a leader's caller dropped
        // mid-load, still removes the flight.
        let guard = FlightGuard {
            inner: Arc::clone(inner),
            key: flight_key,
            id: job.id,
        };
        Ok(Entered::Leader(Leader {
            guard,
            job,
            tx,
            chain: chain.into(),
        }))
    }
}

/// What [`Cache::enter_flight`] found.
pub(super) enum Entered<C: Codec> {
    /// A load of the key is in flight: its outcome, and the job given back.
    Joined(watch::Receiver<FlightState>, Job),
    /// The caller leads a new load.
    Leader(Leader<C>),
}

/// A load registered in the map of flights, not yet running: its leader
/// runs it in place ([`run`](Self::run)) or as a task ([`spawn`](Self::spawn)).
pub(super) struct Leader<C: Codec> {
    guard: FlightGuard<C>,
    job: Job,
    tx: watch::Sender<FlightState>,
    chain: Arc<[(u64, String)]>,
}

impl<C: Codec> Leader<C> {
    /// The outcome of this load, for its leader.
    pub(super) fn receiver(&self) -> watch::Receiver<FlightState> {
        self.tx.subscribe()
    }

    /// Runs the load inside the caller's future. Dropping that future
    /// ends the flight: its waiters see the channel close.
    pub(super) async fn run<T: Serialize, L: Loader<C, T>>(self, loader: L) {
        let Leader {
            guard,
            job,
            tx,
            chain,
        } = self;
        LOADING
            .scope(chain, run_flight(guard, job, loader, tx))
            .await;
    }

    /// Runs the load as a tokio task of its own.
    pub(super) fn spawn<T, L>(self, loader: L)
    where
        T: Serialize + Send + 'static,
        L: Loader<C, T, Running: Send + 'static, Error: Send + 'static> + Send + 'static,
    {
        tokio::spawn(self.run(loader));
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

/// One load: lock, load, store, answer.
async fn run_flight<C, T, L>(
    guard: FlightGuard<C>,
    mut job: Job,
    loader: L,
    tx: watch::Sender<FlightState>,
) where
    C: Codec,
    T: Serialize,
    L: Loader<C, T>,
{
    let inner = Arc::clone(&guard.inner);
    // Double check: a load that finished between this caller's read and
    // the start of this one has stored a fresh value already. A recovery
    // attempt reads here what its caller did not.
    if job.start != Fingerprint::Unknown || job.recovery {
        match inner.backend.get(&job.key.full).await {
            Ok(bytes) => {
                if let Some(outcome) = bytes.clone().and_then(|b| fresh_outcome(&inner, &job, b)) {
                    if let (Outcome::Value(found), Some(_)) = (&outcome, job.resolved.fail_safe) {
                        // Ends a throttle: the value is new.
                        inner.copies.remember(&job.copy_key(), found);
                    }
                    succeed(&guard, &job, &tx, false, outcome);
                    return;
                }
                if job.recovery {
                    job.start = Fingerprint::of(bytes.as_deref());
                }
            }
            Err(error) if job.recovery => {
                let failure = Failure::of_backend(&job.user_key, &error);
                fail(&guard, &job, &tx, failure);
                return;
            }
            Err(_) => {}
        }
    }
    let held_lock = match lock::take(&inner, &job, &tx).await {
        lock::Taken::Answered(outcome) => {
            succeed(&guard, &job, &tx, true, outcome);
            return;
        }
        lock::Taken::Held(held) => Some(held),
        lock::Taken::Not => None,
    };

    let outcome = load(&inner, &job, loader).await;
    if let Some(held) = held_lock {
        held.release(&inner, &outcome).await;
    }
    match outcome {
        Outcome::Failed(failure) => fail(&guard, &job, &tx, failure),
        outcome => succeed(&guard, &job, &tx, false, outcome),
    }
}

/// Ends a load that produced a value or a "not found": a success ends the
/// key's fail-safe throttle, whether or not its result was stored (a "not
/// found", a skipped store, an entry another process changed), then
/// answers the callers.
fn succeed<C: Codec>(
    guard: &FlightGuard<C>,
    job: &Job,
    tx: &watch::Sender<FlightState>,
    busy_elsewhere: bool,
    outcome: Outcome,
) {
    if job.resolved.fail_safe.is_some() && !matches!(outcome, Outcome::Failed(_)) {
        guard.inner.copies.end_throttle(&job.copy_key());
    }
    guard.answer(tx, FlightState::done(busy_elsewhere, outcome));
}

/// Ends a failed load: throttles its key if fail-safe holds a fallback,
/// then answers the callers.
fn fail<C: Codec>(
    guard: &FlightGuard<C>,
    job: &Job,
    tx: &watch::Sender<FlightState>,
    failure: Failure,
) {
    if let (Some(fail_safe), Some(fallback)) = (job.resolved.fail_safe, &job.fallback) {
        guard
            .inner
            .copies
            .throttle(&job.copy_key(), fallback, fail_safe);
    }
    guard.answer(tx, FlightState::done(false, Outcome::Failed(failure)));
}

/// Runs the loader and stores its result with the options in force: the
/// call's, or the loader's over them.
async fn load<C, T, L>(inner: &Arc<Inner<C>>, job: &Job, loader: L) -> Outcome
where
    C: Codec,
    T: Serialize,
    L: Loader<C, T>,
{
    bump(&inner.counters.loads);
    let adapted = Arc::new(Mutex::new(Adapted::default()));
    let loaded = run_loader(inner, job, loader, &adapted).await;
    let adapted = std::mem::take(&mut *adapted.lock());
    let resolved = match (&loaded, adapted.options) {
        (Ok(_), Some(options)) => match job.resolved.adapt(&options, &inner.keys) {
            Ok(resolved) => Cow::Owned(resolved),
            Err(message) => {
                bump(&inner.counters.load_errors);
                return Outcome::Failed(Failure::of_options(&job.user_key, &message));
            }
        },
        _ => Cow::Borrowed(&job.resolved),
    };
    let store = !adapted.skip;
    match loaded {
        Ok(Some(value)) => store_value(inner, job, &resolved, store, value).await,
        Ok(None) => {
            if store {
                store_not_found(inner, job, &resolved).await;
            }
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
    adapted: &Arc<Mutex<Adapted>>,
) -> std::result::Result<Option<T>, Failure>
where
    C: Codec,
    T: Serialize,
    L: Loader<C, T>,
{
    let context = LoadContext {
        key: job.user_key.clone(),
        refresh: job.refresh,
        stale_created: job.fallback.as_ref().and_then(|f| f.created),
        now: inner.now(),
        adapted: Arc::clone(adapted),
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

/// Stores a loaded value (unless `store` is off); the outcome every
/// caller decodes it from.
async fn store_value<C: Codec, T: Serialize>(
    inner: &Inner<C>,
    job: &Job,
    resolved: &Resolved,
    store_it: bool,
    value: T,
) -> Outcome {
    let now = inner.now();
    let payload = match inner.codec.encode(&value) {
        Ok(payload) => Bytes::from(payload),
        Err(error) => {
            bump(&inner.counters.load_errors);
            return Outcome::Failed(Failure::of_encoding(&job.user_key, &error));
        }
    };
    let plan = resolved.plan(now, false);
    let found = Found {
        payload: payload.clone(),
        codec: Some(inner.codec.id()),
        created: Some(now),
        soft_deadline: plan.soft_deadline,
        hard_deadline: plan.hard_deadline,
        negative: false,
    };
    if !store_it {
        return Outcome::Value(found);
    }
    let bytes = inner.entry_bytes(
        &job.key,
        &job.user_key,
        payload,
        inner.codec.id(),
        resolved,
        &plan,
        now,
        false,
    );
    let stored = store(inner, job, bytes, &plan.set_options).await;
    // A value the backend could not take is still the newest this process
    // has seen: kept, it ends a fail-safe throttle. A write that came
    // after the load wins over it.
    if stored != Stored::Superseded && resolved.fail_safe.is_some() {
        inner.copies.remember(&job.copy_key(), &found);
        // A write or an invalidation between the store and here has
        // already dropped the copies: this one must go too (they move
        // their generation or epoch before they drop copies).
        if superseded(inner, job) {
            inner.copies.forget(&job.copy_key());
        }
    }
    Outcome::Value(found)
}

/// Stores a loader's "not found", if the options cache it.
async fn store_not_found<C: Codec>(inner: &Inner<C>, job: &Job, resolved: &Resolved) {
    if resolved.negative_ttl.is_none() {
        return;
    }
    let now = inner.now();
    let plan = resolved.plan(now, true);
    let bytes = inner.entry_bytes(
        &job.key,
        &job.user_key,
        Bytes::new(),
        inner.codec.id(),
        resolved,
        &plan,
        now,
        true,
    );
    store(inner, job, bytes, &plan.set_options).await;
}

/// Whether a load's result was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stored {
    Yes,
    /// A write, an invalidation or a version bump came after the load
    /// started, or the entry changed in the backend meanwhile.
    Superseded,
    /// The backend failed.
    Failed,
}

/// Stores a load's result unless a write of this process, an invalidation
/// or a version bump came after the load started, or the entry changed in
/// the backend meanwhile.
async fn store<C: Codec>(
    inner: &Inner<C>,
    job: &Job,
    bytes: Bytes,
    options: &SetOptions,
) -> Stored {
    let gate = inner.gate(&job.key.full);
    let _storing = gate.lock.write().await;
    let _epoch = inner.epoch_gate.read().await;
    if superseded(inner, job) {
        tracing::debug!(key = %job.user_key, "a write came after the load started; not storing its result");
        return Stored::Superseded;
    }
    if job.start != Fingerprint::Unknown {
        match inner.backend.get(&job.key.full).await {
            Ok(current) if Fingerprint::of(current.as_deref()) != job.start => {
                tracing::debug!(key = %job.user_key, "the entry changed while loading; not storing the result");
                return Stored::Superseded;
            }
            _ => {}
        }
    }
    match inner.backend.set(&job.key.full, bytes, options).await {
        Ok(_) => Stored::Yes,
        Err(error) => {
            tracing::warn!(key = %job.user_key, %error, "could not store the loaded value");
            Stored::Failed
        }
    }
}

/// Whether a write of this process to the load's key, an invalidation or
/// a version bump came after the load started: its result is then not
/// stored, nor kept as a fail-safe copy.
fn superseded<C: Codec>(inner: &Inner<C>, job: &Job) -> bool {
    inner.gate(&job.key.full).generation.load(Ordering::Acquire) != job.generation
        || inner.epoch.load(Ordering::Acquire) != job.epoch
        || inner.keys.version() != job.version
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
