//! The conformance suite: the behaviour every [`Backend`] shares, as plain
//! `async fn` checks that any backend's (or layer's) tests call.
//!
//! Enabled by the `testing` feature. The rules are stated in the
//! [`backend`](crate::backend) module docs; these checks are their
//! executable form. Every backend runs the whole suite with one call,
//! [`run_conformance`] (or the [`Conformance`] builder when it has
//! options), and a backend's test file may call a single check, such as
//! [`ttl_expiry`], on its own. A new backend is done when it passes.
//!
//! Beside the checks: [`FaultyBackend`] injects errors and latency for
//! failure tests, and [`servers`] starts the real server processes that
//! backend tests run against (a free port, a fresh directory, a
//! supervised process; `servers::redis` with the `redis` feature).
//!
//! ```no_run
//! use std::sync::Arc;
//! use cachette::{Backend, MemoryBackend};
//! use cachette::testing::{Conformance, run_conformance, ttl_expiry};
//!
//! // In `tests/conformance_<backend>.rs`, each under
//! // `#[tokio::test(flavor = "multi_thread", worker_threads = 2)]`:
//! async fn memory_backend_conforms() {
//!     let subject: Arc<dyn Backend> = Arc::new(MemoryBackend::default());
//!     // A second backend over the same store with another namespace (or,
//!     // for an in-process backend, another instance): `clear` of the
//!     // subject must leave its keys alone.
//!     let sibling: Arc<dyn Backend> = Arc::new(MemoryBackend::default());
//!     let report = run_conformance(subject, Some(sibling)).await;
//!     // Checks the capabilities rule out are skipped, each with its reason.
//!     let skipped: Vec<&str> = report.skipped().map(|(check, _)| check).collect();
//!     assert_eq!(skipped, ["value_size_limit"], "{report}");
//! }
//!
//! async fn memory_backend_with_a_default_ttl_conforms() -> cachette::Result<()> {
//!     let ttl = std::time::Duration::from_secs(60);
//!     let subject = MemoryBackend::builder().default_ttl(ttl).build()?;
//!     Conformance::new(Arc::new(subject))
//!         .sibling(Arc::new(MemoryBackend::default()))
//!         .default_ttl(ttl)
//!         .run()
//!         .await;
//!     Ok(())
//! }
//!
//! async fn memory_backend_expires_keys() {
//!     ttl_expiry(&MemoryBackend::default()).await;
//! }
//! # #[tokio::main] async fn main() {
//! #     memory_backend_conforms().await;
//! #     memory_backend_with_a_default_ttl_conforms().await.unwrap();
//! #     memory_backend_expires_keys().await;
//! # }
//! ```
//!
//! How the checks behave:
//!
//! - **Failures panic** with a message that names the check and the
//!   backend (``conformance check `ttl_expiry` on backend `memory`: ...``):
//!   these are test helpers. Each check returns an [`Outcome`]: passed, or
//!   skipped because the backend's [`Capabilities`](crate::Capabilities)
//!   say it does not apply (no tags, no key listing, ...).
//! - **They share the store politely.** Every check writes under its own
//!   prefix (`conf:<nanos>:<run>:<check>:`, tags likewise) and deletes its
//!   keys when it passes, so a real server with other data can be used.
//!   Only [`clear_keeps_sibling_keys`] calls `clear`, and only after the
//!   sibling holds keys that must survive; it empties the subject's whole
//!   namespace, so nothing else may use that namespace meanwhile.
//!   [`Conformance::run`] runs it last, alone, and only with a sibling.
//! - **Real time.** The TTL checks sleep on the real clock (150 ms TTLs,
//!   read at 50 ms and 400 ms; 2 s TTLs for backends of
//!   [`TtlPrecision::Seconds`](crate::TtlPrecision::Seconds)). They run
//!   concurrently, so the suite takes well under a second on the memory
//!   backend. Do not pause tokio's clock.
//! - **A multi-threaded runtime** makes the concurrency checks
//!   ([`concurrent_reads_and_writes`], [`concurrent_incr`],
//!   [`concurrent_if_absent`]) race for real; they spawn tokio tasks, hence
//!   take `&Arc<dyn Backend>`. Every other check takes `&dyn Backend` (an
//!   `&Arc<dyn Backend>` coerces to it).
//! - **Room.** The subject needs room for a few hundred entries and, if it
//!   bounds values by `max_value_len` (at most 16 MiB; a larger limit is
//!   not probed), for one value of that size;
//!   evicting a key a check has just written fails the check.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::Backend;

mod basic;
mod concurrency;
mod counters;
mod expiry;
mod faults;
mod listing;
mod scope;
pub mod servers;
mod service;
mod tags;

pub use basic::{
    batch_operations, conditional_set, key_limits, set_get_delete, unusual_keys, value_size_limit,
    values_round_trip,
};
pub use concurrency::{concurrent_if_absent, concurrent_incr, concurrent_reads_and_writes};
use concurrency::{
    concurrent_if_absent_under, concurrent_incr_under, concurrent_reads_and_writes_under,
};
pub use counters::{incr_decr, incr_errors, incr_keeps_ttl};
pub use expiry::{
    default_and_never_expiry, sub_millisecond_ttl, touch_replaces_deadline, ttl_expiry, ttl_states,
    zero_ttl_rejected,
};
pub use faults::FaultyBackend;
pub use listing::{clear_keeps_sibling_keys, keys_glob, keys_glob_dialect};
pub use service::{health, stats_counters, unsupported_operations};
pub use tags::{tag_invalidation, tag_overwrite};

/// What one check did. A failing check panics instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// The check ran and every assertion held.
    Passed,
    /// The check does not apply to this backend; the reason names the
    /// capability (or the missing sibling) that ruled it out.
    Skipped(&'static str),
}

/// What a run of the whole suite did, check by check.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Report {
    /// The name of the backend checked.
    pub backend: &'static str,
    /// Every check, by function name, with its outcome, in a stable order.
    pub checks: Vec<(&'static str, Outcome)>,
    /// How long the run took.
    pub elapsed: Duration,
}

impl Report {
    /// The checks that were skipped, with the reason.
    pub fn skipped(&self) -> impl Iterator<Item = (&'static str, &'static str)> + '_ {
        self.checks
            .iter()
            .filter_map(|&(check, outcome)| match outcome {
                Outcome::Skipped(reason) => Some((check, reason)),
                Outcome::Passed => None,
            })
    }

    /// How many checks passed.
    pub fn passed(&self) -> usize {
        self.checks
            .iter()
            .filter(|(_, outcome)| *outcome == Outcome::Passed)
            .count()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "conformance of `{}`: {} of {} checks passed in {:?}",
            self.backend,
            self.passed(),
            self.checks.len(),
            self.elapsed
        )?;
        for (check, reason) in self.skipped() {
            writeln!(f, "  skipped {check}: {reason}")?;
        }
        Ok(())
    }
}

/// Runs every check against `subject`; `sibling` (see
/// [`clear_keeps_sibling_keys`]) enables the `clear` check. The subject is
/// assumed to have no default TTL; use [`Conformance`] otherwise.
///
/// Panics on the first failure; returns what ran and what was skipped.
pub async fn run_conformance(
    subject: Arc<dyn Backend>,
    sibling: Option<Arc<dyn Backend>>,
) -> Report {
    let mut suite = Conformance::new(subject);
    suite.sibling = sibling;
    suite.run().await
}

/// The whole suite with its options: a sibling for the `clear` check, and
/// the subject's default TTL.
///
/// ```no_run
/// # use std::sync::Arc;
/// # use std::time::Duration;
/// # use cachette::{Backend, MemoryBackend};
/// # #[tokio::main] async fn main() -> cachette::Result<()> {
/// let subject: Arc<dyn Backend> =
///     Arc::new(MemoryBackend::builder().default_ttl(Duration::from_secs(60)).build()?);
/// let report = cachette::testing::Conformance::new(subject)
///     .sibling(Arc::new(MemoryBackend::default()))
///     .default_ttl(Duration::from_secs(60))
///     .run()
///     .await;
/// println!("{report}");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a Conformance does nothing until `run` is awaited"]
pub struct Conformance {
    subject: Arc<dyn Backend>,
    sibling: Option<Arc<dyn Backend>>,
    default_ttl: Option<Duration>,
    load: concurrency::Load,
}

impl Conformance {
    /// The suite for `subject`, without a sibling (the `clear` check is
    /// skipped) and assuming no default TTL.
    pub fn new(subject: Arc<dyn Backend>) -> Self {
        Conformance {
            subject,
            sibling: None,
            default_ttl: None,
            load: concurrency::Load::FULL,
        }
    }

    /// A second backend over the same store in another namespace (another
    /// prefix, database or table), or another instance of an in-process
    /// backend. Its keys must survive `clear` of the subject.
    pub fn sibling(mut self, sibling: Arc<dyn Backend>) -> Self {
        self.sibling = Some(sibling);
        self
    }

    /// The default TTL the subject was built with, which
    /// [`Expiry::Default`](crate::Expiry::Default) must apply (by default
    /// none: no expiry).
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = Some(ttl);
        self
    }

    /// Runs the three concurrency checks with 8 tasks instead of 32, each
    /// making a quarter of the operations: for a backend whose test
    /// server serves one request at a time (moto's S3, say), where the
    /// full load takes minutes. The checks still race writers against
    /// each other; they only take less time.
    pub fn light_concurrency(mut self) -> Self {
        self.load = concurrency::Load::LIGHT;
        self
    }

    /// Runs every check; the timed ones concurrently with the rest, the
    /// `clear` check last and alone. Panics on the first failure.
    pub async fn run(self) -> Report {
        let started = tokio::time::Instant::now();
        let subject = &self.subject;
        let dyn_subject: &dyn Backend = &**subject;

        let timed = async {
            let (expiry, sub_ms, touch) = tokio::join!(
                ttl_expiry(dyn_subject),
                sub_millisecond_ttl(dyn_subject),
                touch_replaces_deadline(dyn_subject),
            );
            [
                ("ttl_expiry", expiry),
                ("sub_millisecond_ttl", sub_ms),
                ("touch_replaces_deadline", touch),
            ]
        };
        let rest = async {
            let mut checks = Vec::new();
            macro_rules! run {
                ($($check:ident($($arg:expr),*);)*) => {
                    $( checks.push((stringify!($check), $check($($arg),*).await)); )*
                };
            }
            run! {
                health(dyn_subject);
                set_get_delete(dyn_subject);
                conditional_set(dyn_subject);
                values_round_trip(dyn_subject);
                value_size_limit(dyn_subject);
                key_limits(dyn_subject);
                unusual_keys(dyn_subject);
                batch_operations(dyn_subject);
                ttl_states(dyn_subject);
                zero_ttl_rejected(dyn_subject);
                default_and_never_expiry(dyn_subject, self.default_ttl);
                incr_decr(dyn_subject);
                incr_errors(dyn_subject);
                incr_keeps_ttl(dyn_subject);
                keys_glob(dyn_subject);
                keys_glob_dialect(dyn_subject);
                tag_invalidation(dyn_subject);
                tag_overwrite(dyn_subject);
                stats_counters(dyn_subject);
                unsupported_operations(dyn_subject);
            }
            let load = self.load;
            checks.push((
                "concurrent_reads_and_writes",
                concurrent_reads_and_writes_under(subject, load).await,
            ));
            checks.push((
                "concurrent_incr",
                concurrent_incr_under(subject, load).await,
            ));
            checks.push((
                "concurrent_if_absent",
                concurrent_if_absent_under(subject, load).await,
            ));
            checks
        };
        let (timed, mut checks) = tokio::join!(timed, rest);
        checks.extend(timed);

        let clear = match &self.sibling {
            Some(sibling) => clear_keeps_sibling_keys(dyn_subject, &**sibling).await,
            None => Outcome::Skipped("no sibling backend was given"),
        };
        checks.push(("clear_keeps_sibling_keys", clear));
        Report {
            backend: subject.name(),
            checks,
            elapsed: started.elapsed(),
        }
    }
}

/// Every key of `backend` that matches `pattern`, sorted (repeats kept:
/// a `SCAN`-based listing may repeat a key). Panics if listing fails; for
/// tests.
pub async fn list_keys(backend: &dyn Backend, pattern: &str) -> Vec<String> {
    use futures_util::StreamExt;
    let mut stream = backend
        .keys(pattern)
        .await
        .unwrap_or_else(|err| panic!("keys({pattern:?}) on {}: {err}", backend.name()));
    let mut keys = Vec::new();
    while let Some(key) = stream.next().await {
        keys.push(key.unwrap_or_else(|err| panic!("a listed key of {}: {err}", backend.name())));
    }
    keys.sort();
    keys
}
