//! The pieces every backend is built from, so that a backend folder holds
//! only what is particular to its store.
//!
//! - [`Limits`]: the key, value and expiry checks of the rules in
//!   [`crate::backend`], made before any I/O, and the deadline of a write.
//! - [`BASE_CAPABILITIES`]: what a store that keeps everything itself
//!   offers; each backend states only where it differs.
//! - [`BuilderLimits`]: the options every builder shares (`default_ttl`,
//!   `max_entries`, `max_bytes`, `max_key_len`, `max_value_len`) with one
//!   meaning, one type and one validation.
//! - [`Counters`]: the event counters behind [`Stats`].
//! - [`now_ms`]: the wall clock in Unix milliseconds, for deadlines that
//!   outlive the process (file, redb). The memory engine uses the monotonic
//!   clock of `crate::clock` instead, which follows tokio's paused clock.
//! - [`PurgeTask`]: the background task that removes expired entries.
//! - [`on_blocking_pool`] and [`catch_panic`]: blocking storage work off the
//!   async worker threads.
//!
//! # Panics in blocking storage work
//!
//! A panic in a blocking storage task (a bug in the store, or in a library
//! under it) does not unwind into the caller: it becomes an
//! [`ErrorKind::Backend`] error that names the operation and says that it
//! panicked, and it is logged with `tracing` at error level. The caller's
//! service stays up, and a fail-safe above the backend can serve stale
//! data meanwhile. The panic message is logged, never put in the error
//! (it may hold data the caller did not ask to see).

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::backend::{
    Capabilities, DEFAULT_MAX_KEY_LEN, Expiry, Stats, TtlPrecision, validate_builder_options,
    validate_key, validate_value,
};
use crate::error::{Error, ErrorKind, Result};

/// What a store that keeps everything itself offers: atomic counters and
/// conditional writes, millisecond TTLs it enforces, tags, listing and
/// `clear`, keys up to [`DEFAULT_MAX_KEY_LEN`], values of any length; not
/// persistent, not shared. Backends override the fields that differ.
pub(crate) const BASE_CAPABILITIES: Capabilities = Capabilities {
    atomic_incr: true,
    conditional_set: true,
    native_ttl: true,
    ttl_precision: TtlPrecision::Milliseconds,
    ttl_inspection: true,
    tags: true,
    counts_invalidations: true,
    key_listing: true,
    clear: true,
    persistent: false,
    shared: false,
    max_key_len: DEFAULT_MAX_KEY_LEN,
    max_value_len: None,
};

/// The limits a backend checks its input against before any I/O.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// The backend named in the errors.
    pub(crate) backend: &'static str,
    /// The longest key the caller may pass, in bytes.
    pub(crate) max_key_len: usize,
    /// The longest value, in bytes, if limited.
    pub(crate) max_value_len: Option<usize>,
    /// The TTL of [`Expiry::Default`].
    pub(crate) default_ttl: Option<Duration>,
}

impl Limits {
    /// An empty key or one over `max_key_len` is
    /// [`ErrorKind::InvalidInput`].
    pub(crate) fn check_key(&self, key: &str) -> Result<()> {
        validate_key(self.backend, key, self.max_key_len)
    }

    /// Checks every key of a batch before any of it runs.
    pub(crate) fn check_keys(&self, keys: &[&str]) -> Result<()> {
        keys.iter().try_for_each(|key| self.check_key(key))
    }

    /// A value over `max_value_len` is [`ErrorKind::InvalidInput`].
    pub(crate) fn check_value(&self, value: &[u8]) -> Result<()> {
        match self.max_value_len {
            Some(max) => validate_value(self.backend, value, max),
            None => Ok(()),
        }
    }

    /// Checks every entry of a batch before any of it runs.
    pub(crate) fn check_entries(&self, entries: &[(&str, bytes::Bytes)]) -> Result<()> {
        entries.iter().try_for_each(|(key, value)| {
            self.check_key(key)?;
            self.check_value(value)
        })
    }

    /// The TTL `expiry` stands for (`None`: no expiry), rounded up to whole
    /// milliseconds (the default TTL too, so that a sub-millisecond one
    /// lives 1 ms rather than being born expired); a zero TTL is
    /// [`ErrorKind::InvalidInput`].
    pub(crate) fn ttl(&self, expiry: Expiry) -> Result<Option<Duration>> {
        Ok(expiry
            .resolve(self.backend, self.default_ttl)?
            .map(whole_millis))
    }

    /// The deadline of a write made at `now` (milliseconds of some clock)
    /// with `expiry`: `0` for "never", otherwise at least 1.
    pub(crate) fn deadline(&self, expiry: Expiry, now: u64) -> Result<u64> {
        Ok(deadline_after(now, self.ttl(expiry)?))
    }

    /// `capabilities` with these key and value limits.
    pub(crate) fn advertise(&self, capabilities: Capabilities) -> Capabilities {
        Capabilities {
            max_key_len: self.max_key_len,
            max_value_len: self.max_value_len,
            ..capabilities
        }
    }
}

/// `ttl` rounded up to whole milliseconds, at least 1 ms, saturating at
/// `u64::MAX` milliseconds.
pub(crate) fn whole_millis(ttl: Duration) -> Duration {
    let millis = u64::try_from(ttl.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX);
    Duration::from_millis(millis.max(1))
}

/// The deadline `ttl` after `now` in milliseconds: `0` for no TTL ("never"),
/// otherwise at least 1, saturating at `u64::MAX`.
pub(crate) fn deadline_after(now: u64, ttl: Option<Duration>) -> u64 {
    match ttl {
        None => 0,
        Some(ttl) => {
            let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
            now.saturating_add(millis).max(1)
        }
    }
}

/// The wall clock in Unix milliseconds (0 before 1970, which no clock
/// that matters shows).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// Checks timeouts and intervals of a builder: zero or longer than `max`
/// is an [`ErrorKind::Config`] error naming the option (deadlines are
/// added to clocks, which must not overflow).
#[cfg_attr(not(any(feature = "redis", feature = "memcached")), allow(dead_code))]
pub(crate) fn check_timeouts(
    backend: &'static str,
    timeouts: &[(&str, Duration)],
    max: Duration,
) -> Result<()> {
    for (name, timeout) in timeouts {
        if timeout.is_zero() {
            return Err(Error::config(backend, format!("`{name}` must not be zero")));
        }
        if *timeout > max {
            return Err(Error::config(
                backend,
                format!("`{name}` is {timeout:?}; it must be at most {max:?}"),
            ));
        }
    }
    Ok(())
}

/// The options every backend builder shares. Each name means the same in
/// every builder and has the same type:
///
/// - `default_ttl`: the TTL of [`Expiry::Default`]; unset for no expiry.
/// - `max_entries`: the most entries kept; unset for unbounded.
/// - `max_bytes`: the most bytes kept, as the backend weighs an entry;
///   unset for unbounded.
/// - `max_key_len`: the longest key the caller may pass, in bytes.
/// - `max_value_len`: the longest value, in bytes; unset for the backend's
///   own limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BuilderLimits {
    pub(crate) default_ttl: Option<Duration>,
    pub(crate) max_entries: Option<u64>,
    pub(crate) max_bytes: Option<u64>,
    pub(crate) max_key_len: usize,
    pub(crate) max_value_len: Option<usize>,
}

impl Default for BuilderLimits {
    /// No expiry, unbounded, keys up to [`DEFAULT_MAX_KEY_LEN`].
    fn default() -> Self {
        BuilderLimits {
            default_ttl: None,
            max_entries: None,
            max_bytes: None,
            max_key_len: DEFAULT_MAX_KEY_LEN,
            max_value_len: None,
        }
    }
}

impl BuilderLimits {
    /// Checks the shared options: zero bounds, a zero default TTL, a
    /// `max_key_len` outside `1..=key_len_limit` and a zero `max_value_len`
    /// are [`ErrorKind::Config`] errors naming the option.
    pub(crate) fn validate(&self, backend: &'static str, key_len_limit: usize) -> Result<()> {
        validate_builder_options(backend, self.max_entries, self.max_bytes, self.default_ttl)?;
        if self.max_key_len == 0 {
            return Err(Error::config(backend, "max_key_len must be at least 1"));
        }
        if self.max_key_len > key_len_limit {
            return Err(Error::config(
                backend,
                format!("max_key_len must be between 1 and {key_len_limit}"),
            ));
        }
        if self.max_value_len == Some(0) {
            return Err(Error::config(backend, "max_value_len must be at least 1"));
        }
        Ok(())
    }
}

/// The setters of the options whose meaning does not depend on the
/// store, `default_ttl` and `max_entries`, written once for every builder
/// that keeps its options in a `limits: BuilderLimits` field.
#[cfg(any(feature = "memory", feature = "file", feature = "postgres"))]
macro_rules! shared_limit_setters {
    () => {
        /// The TTL of entries written with [`Expiry::Default`](crate::Expiry::Default).
        /// No expiry by default.
        pub fn default_ttl(mut self, ttl: std::time::Duration) -> Self {
            self.limits.default_ttl = Some(ttl);
            self
        }

        /// Bounds the number of entries. Unbounded by default.
        pub fn max_entries(mut self, max: u64) -> Self {
            self.limits.max_entries = Some(max);
            self
        }
    };
}
#[cfg(any(feature = "memory", feature = "file", feature = "postgres"))]
pub(crate) use shared_limit_setters;

/// What a backend counts. The first nine are the counters of [`Stats`];
/// the others are particular to the two-level backends (near and tiered),
/// which report them in [`Stats::details`] under their own names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    Hit,
    Miss,
    Insert,
    Update,
    Delete,
    Eviction,
    Expiration,
    Invalidation,
    Corrupt,
    /// A hit in the local level (near's local store, tiered's L1).
    LocalHit,
    /// A hit in the remote level (near's Redis, tiered's L2).
    RemoteHit,
    /// An invalidation message received from other instances.
    InvalidationReceived,
    /// A flush of the local level (near).
    Flush,
    /// An invalidation message published (tiered).
    Published,
    /// An invalidation message that could not be published (tiered).
    PublishFailure,
    /// A reset of the invalidation channel (tiered).
    ChannelReset,
}

const EVENTS: usize = Event::ChannelReset as usize + 1;

/// Event counts gathered where atomics would cost or be wrong: under a
/// lock the counts are plain integers, and a transaction's counts reach the
/// backend's [`Counters`] only once it committed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tally {
    counts: [u64; EVENTS],
}

impl Tally {
    /// Counts `n` occurrences of `event`.
    pub(crate) fn add(&mut self, event: Event, n: u64) {
        self.counts[event as usize] += n;
    }

    /// Counts one occurrence of `event`.
    pub(crate) fn bump(&mut self, event: Event) {
        self.add(event, 1);
    }

    /// How often `event` occurred.
    pub(crate) fn get(&self, event: Event) -> u64 {
        self.counts[event as usize]
    }

    /// Adds every count of `other`.
    pub(crate) fn merge(&mut self, other: &Tally) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine += theirs;
        }
    }

    /// Writes the nine counters of [`Stats`]; the other fields are left
    /// alone.
    pub(crate) fn fill(&self, stats: &mut Stats) {
        fill_stats(stats, |event| self.get(event));
    }
}

/// Writes the nine counters of [`Stats`] from `count`.
fn fill_stats(stats: &mut Stats, count: impl Fn(Event) -> u64) {
    stats.hits = count(Event::Hit);
    stats.misses = count(Event::Miss);
    stats.inserts = count(Event::Insert);
    stats.updates = count(Event::Update);
    stats.deletes = count(Event::Delete);
    stats.evictions = count(Event::Eviction);
    stats.expirations = count(Event::Expiration);
    stats.invalidations = count(Event::Invalidation);
    stats.corrupt = count(Event::Corrupt);
}

/// Event counters since the backend was built; relaxed atomics, so they
/// are exact once the operations that moved them have returned.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    values: [AtomicU64; EVENTS],
}

impl Counters {
    /// Counts `n` occurrences of `event`.
    pub(crate) fn add(&self, event: Event, n: u64) {
        if n != 0 {
            self.values[event as usize].fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Counts one occurrence of `event`.
    pub(crate) fn bump(&self, event: Event) {
        self.add(event, 1);
    }

    /// How often `event` occurred.
    pub(crate) fn get(&self, event: Event) -> u64 {
        self.values[event as usize].load(Ordering::Relaxed)
    }

    /// Writes the nine counters of [`Stats`]; the other fields are left
    /// alone.
    pub(crate) fn fill(&self, stats: &mut Stats) {
        fill_stats(stats, |event| self.get(event));
    }

    /// Adds every count of `tally`.
    pub(crate) fn add_tally(&self, tally: &Tally) {
        for (counter, &n) in self.values.iter().zip(&tally.counts) {
            if n != 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// `(name, count)` pairs for [`Stats::details`].
    pub(crate) fn details(&self, named: &[(&str, Event)]) -> Vec<(String, u64)> {
        named
            .iter()
            .map(|&(name, event)| (name.to_owned(), self.get(event)))
            .collect()
    }
}

/// The background task that removes expired entries. It holds only a weak
/// reference to the backend's state, so dropping the last handle of the
/// backend ends it; dropping the `PurgeTask` (or [`stop`](Self::stop))
/// aborts it.
#[derive(Debug, Default)]
pub(crate) struct PurgeTask {
    task: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl PurgeTask {
    /// Starts calling `purge` every `interval` (the first call one interval
    /// from now), if built inside a tokio runtime; outside one, nothing
    /// runs and reads and writes still honour deadlines by themselves.
    /// `purge` answers how many entries it removed; failures are logged
    /// at warn level and the loop goes on.
    pub(crate) fn start<T, F, Fut>(
        &self,
        backend: &'static str,
        state: Weak<T>,
        interval: Duration,
        purge: F,
    ) where
        T: ?Sized + Send + Sync + 'static,
        F: Fn(Arc<T>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<u64>> + Send,
    {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // A longer interval is never reached, and would overflow the clock.
        let interval = interval.min(crate::params::MAX_DURATION);
        let task = runtime.spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let Some(state) = state.upgrade() else { return };
                match purge(state).await {
                    Ok(0) => {}
                    Ok(removed) => tracing::trace!(backend, removed, "removed expired entries"),
                    Err(error) => {
                        tracing::warn!(backend, %error, "could not remove expired entries");
                    }
                }
            }
        });
        *self.task.lock() = Some(task);
    }

    /// Aborts the task, if it runs.
    pub(crate) fn stop(&self) {
        if let Some(task) = self.task.lock().take() {
            task.abort();
        }
    }
}

impl Drop for PurgeTask {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `task`, turning a panic into an [`ErrorKind::Backend`] error (see
/// the [module docs](self)).
pub(crate) fn catch_panic<T>(
    backend: &'static str,
    operation: &'static str,
    task: impl FnOnce() -> Result<T>,
) -> Result<T> {
    std::panic::catch_unwind(AssertUnwindSafe(task))
        .unwrap_or_else(|payload| Err(panicked(backend, operation, payload.as_ref())))
}

/// The error (and the log line) of a panicked storage task.
fn panicked(backend: &'static str, operation: &'static str, payload: &(dyn Any + Send)) -> Error {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    tracing::error!(
        backend,
        operation,
        panic = message,
        "a storage task panicked"
    );
    Error::new(
        ErrorKind::Backend,
        backend,
        format!("the storage task of `{operation}` panicked; see the error log"),
    )
    .with_operation(operation)
}

/// Runs `task`, which blocks on storage I/O, on tokio's blocking pool (or
/// inline outside a runtime). A panic becomes an error (see the
/// [module docs](self)); errors carry `operation`.
pub(crate) async fn on_blocking_pool<T: Send + 'static>(
    backend: &'static str,
    operation: &'static str,
    task: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let guarded = move || catch_panic(backend, operation, task);
    let result = match tokio::runtime::Handle::try_current() {
        Err(_) => guarded(),
        Ok(runtime) => runtime
            .spawn_blocking(guarded)
            .await
            .unwrap_or_else(|join| {
                Err(Error::new(
                    ErrorKind::Backend,
                    backend,
                    format!("the storage task of `{operation}` was cancelled"),
                )
                .with_source(join))
            }),
    };
    result.map_err(|error| error.with_operation(operation))
}

/// The roots a backend's TLS trusts: the system's, and the PEM
/// certificates of `extra_roots` (a private CA, `ca_cert`). A file that
/// holds no usable certificate, or no roots at all, is a
/// [`ErrorKind::Config`] error.
#[cfg(any(feature = "memcached", feature = "postgres"))]
pub(crate) fn tls_roots(
    backend: &'static str,
    extra_roots: &[Vec<u8>],
) -> Result<rustls::RootCertStore> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls_native_certs::load_native_certs().certs {
        // A system root rustls cannot read is left out, as browsers do.
        let _ = roots.add(certificate);
    }
    for pem in extra_roots {
        let mut found = false;
        for certificate in CertificateDer::pem_slice_iter(pem) {
            let certificate = certificate.map_err(|err| {
                Error::config(backend, format!("`ca_cert`: not a PEM certificate: {err}"))
            })?;
            roots.add(certificate).map_err(|err| {
                Error::config(
                    backend,
                    format!("`ca_cert`: not a usable CA certificate: {err}"),
                )
            })?;
            found = true;
        }
        if !found {
            return Err(Error::config(
                backend,
                "`ca_cert`: no PEM certificate in it",
            ));
        }
    }
    if roots.is_empty() {
        return Err(Error::config(
            backend,
            "TLS needs trusted roots: the system has none; give `ca_cert`",
        ));
    }
    Ok(roots)
}

/// The rustls client settings of a backend's TLS: [`tls_roots`], ring's
/// cryptography, rustls' safe protocol versions, the server's name
/// checked.
#[cfg(any(feature = "memcached", feature = "postgres"))]
pub(crate) fn tls_client_config(
    backend: &'static str,
    extra_roots: &[Vec<u8>],
) -> Result<rustls::ClientConfig> {
    let roots = tls_roots(backend, extra_roots)?;
    Ok(tls_config_builder(backend)?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A rustls client configuration with ring and the safe protocol
/// versions, before its verifier is chosen.
#[cfg(any(feature = "memcached", feature = "postgres"))]
pub(crate) fn tls_config_builder(
    backend: &'static str,
) -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| Error::config(backend, format!("TLS: {err}")))
}

/// Waits before attempt `attempt + 1` of an operation that lost a race
/// (a compare-and-swap, a deadlock): a random time up to `first`
/// doubling with each attempt to at most `max`, so that racing writers
/// spread out instead of colliding again.
#[cfg(any(feature = "memcached", feature = "postgres", feature = "object"))]
pub(crate) async fn back_off(attempt: u32, first: Duration, max: Duration) {
    let ceiling = first.saturating_mul(1 << attempt.min(16)).min(max);
    let micros = u64::try_from(ceiling.as_micros()).unwrap_or(u64::MAX);
    tokio::time::sleep(Duration::from_micros(fastrand::u64(0..=micros))).await;
}

/// The tags of a write, each once, checked against a backend's limits: at
/// most `max_tags` tags, each of a length in `lengths` (bytes), else
/// [`ErrorKind::InvalidInput`] naming the limit.
#[cfg(any(feature = "postgres", feature = "object"))]
pub(crate) fn checked_tags(
    backend: &'static str,
    tags: &[String],
    max_tags: usize,
    lengths: std::ops::RangeInclusive<usize>,
) -> Result<Vec<String>> {
    if tags.len() > max_tags {
        return Err(Error::invalid_input(
            backend,
            format!(
                "{} tags; the limit of this backend is {max_tags}",
                tags.len()
            ),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for tag in tags {
        if !lengths.contains(&tag.len()) {
            return Err(Error::invalid_input(
                backend,
                format!(
                    "a tag of {} bytes; tags are {} to {} bytes",
                    tag.len(),
                    lengths.start(),
                    lengths.end()
                ),
            ));
        }
        if !out.contains(tag) {
            out.push(tag.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_storage_task_is_a_backend_error_naming_the_operation() {
        let outcome: Result<()> =
            on_blocking_pool("test", "get", || panic!("the store is broken")).await;
        let error = outcome.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Backend);
        assert_eq!(error.operation(), Some("get"));
        assert!(error.message().contains("`get` panicked"), "{error}");
        assert!(!error.message().contains("the store is broken"), "{error}");
    }

    #[test]
    fn a_panic_outside_a_runtime_is_the_same_error() {
        let error = catch_panic::<()>("test", "set", || panic!("boom")).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Backend);
        assert_eq!(error.operation(), Some("set"));
    }

    #[test]
    fn a_deadline_is_zero_for_never_and_at_least_one_otherwise() {
        assert_eq!(deadline_after(100, None), 0);
        assert_eq!(deadline_after(0, Some(Duration::ZERO)), 1);
        assert_eq!(deadline_after(100, Some(Duration::from_millis(5))), 105);
        assert_eq!(
            deadline_after(u64::MAX, Some(Duration::from_secs(1))),
            u64::MAX
        );
    }

    #[test]
    fn a_default_ttl_is_rounded_up_to_whole_milliseconds() {
        let limits = Limits {
            backend: "test",
            max_key_len: 10,
            max_value_len: None,
            default_ttl: Some(Duration::from_micros(300)),
        };
        assert_eq!(
            limits.ttl(Expiry::Default).unwrap(),
            Some(Duration::from_millis(1))
        );
        assert_eq!(limits.deadline(Expiry::Default, 100).unwrap(), 101);
        let huge = Limits {
            default_ttl: Some(Duration::MAX),
            ..limits
        };
        assert_eq!(huge.deadline(Expiry::Default, 100).unwrap(), u64::MAX);
    }

    #[test]
    fn counters_fill_the_stats_counters() {
        let counters = Counters::default();
        counters.bump(Event::Hit);
        counters.add(Event::Corrupt, 3);
        counters.add(Event::LocalHit, 2);
        let mut stats = Stats::default();
        counters.fill(&mut stats);
        assert_eq!((stats.hits, stats.corrupt, stats.misses), (1, 3, 0));
        assert_eq!(
            counters.details(&[("local_hits", Event::LocalHit)]),
            vec![("local_hits".to_owned(), 2)]
        );
    }
}
