//! [`Metrics`]: operations counted and timed through the `metrics` facade,
//! and the backend's own figures exported on an interval.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use ::metrics::{
    SharedString, Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge,
    histogram,
};

use parking_lot::Mutex;

use super::{Call, Op, Reply};
use crate::backend::{Backend, Stats};
use crate::backends::common::PurgeTask;
use crate::error::{Error, Result};

const OPERATIONS: &str = "cachette_operations_total";
const DURATION: &str = "cachette_operation_duration_seconds";
const ERRORS: &str = "cachette_errors_total";
const ENTRIES: &str = "cachette_entries";
const BYTES: &str = "cachette_bytes";
const CONNECTION_UP: &str = "cachette_connection_up";
const INVALIDATIONS_RECEIVED: &str = "cachette_invalidations_received_total";
const FLUSHES: &str = "cachette_flushes_total";
const DETAIL_COUNTER: &str = "cachette_detail_total";
const DETAIL_GAUGE: &str = "cachette_detail";

/// Reads one counter of [`Stats`].
type StatsField = fn(&Stats) -> u64;

/// The counters of [`Stats`], exported as absolute counter values: name,
/// help, field.
const STATS_COUNTERS: [(&str, &str, StatsField); 9] = [
    ("cachette_hits_total", "Keys the backend found.", |s| s.hits),
    (
        "cachette_misses_total",
        "Keys the backend did not find.",
        |s| s.misses,
    ),
    (
        "cachette_inserts_total",
        "Writes that created an entry.",
        |s| s.inserts,
    ),
    (
        "cachette_updates_total",
        "Writes that replaced an entry.",
        |s| s.updates,
    ),
    (
        "cachette_deletes_total",
        "Entries removed by delete.",
        |s| s.deletes,
    ),
    (
        "cachette_evictions_total",
        "Entries evicted to respect a bound.",
        |s| s.evictions,
    ),
    (
        "cachette_expirations_total",
        "Entries removed because their TTL ran out.",
        |s| s.expirations,
    ),
    (
        "cachette_invalidations_total",
        "Entries removed by tag invalidation.",
        |s| s.invalidations,
    ),
    (
        "cachette_corrupt_total",
        "Stored entries that could not be read back.",
        |s| s.corrupt,
    ),
];

/// How often the backend's figures are exported unless told otherwise.
const DEFAULT_EXPORT_INTERVAL: Duration = Duration::from_secs(10);

/// Who raises the configuration errors of [`MetricsLayer`].
const NAME: &str = "metrics layer";

/// Configures a [`Metrics`] layer (feature `metrics`).
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use cachette::{Backend, MemoryBackend};
/// use cachette::layers::{Layer, MetricsLayer};
///
/// # fn main() -> cachette::Result<()> {
/// let backend: Arc<dyn Backend> = MetricsLayer::new()
///     .cache_label("sessions")
///     .export_interval(Duration::from_secs(15))?
///     .layer(Arc::new(MemoryBackend::default()));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsLayer {
    backend_label: Option<SharedString>,
    cache_label: Option<SharedString>,
    /// `None`: the backend's figures are not exported.
    export_interval: Option<Duration>,
}

impl Default for MetricsLayer {
    fn default() -> Self {
        MetricsLayer {
            backend_label: None,
            cache_label: None,
            export_interval: Some(DEFAULT_EXPORT_INTERVAL),
        }
    }
}

fn label(value: impl Into<String>) -> SharedString {
    SharedString::from(Arc::<str>::from(value.into()))
}

impl MetricsLayer {
    /// Metrics labelled with the inner backend's name, the backend's
    /// figures exported every 10 s.
    pub fn new() -> Self {
        MetricsLayer::default()
    }

    /// The value of the `backend` label, instead of the inner backend's
    /// name. Also the default `cache` label (see
    /// [`cache_label`](Self::cache_label)).
    pub fn backend_label(mut self, label: impl Into<String>) -> Self {
        self.backend_label = Some(self::label(label));
        self
    }

    /// The value of the `cache` label: the name of the cache, which tells
    /// apart two caches over the same kind of backend (a
    /// [`CacheManager`](crate::CacheManager) entry's name). Defaults to the
    /// `backend` label.
    pub fn cache_label(mut self, name: impl Into<String>) -> Self {
        self.cache_label = Some(self::label(name));
        self
    }

    /// How often the backend's own figures ([`Backend::stats`] and
    /// [`Backend::health`]) are exported (default 10 s). Fails with
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) if zero.
    pub fn export_interval(mut self, interval: Duration) -> Result<Self> {
        if interval.is_zero() {
            return Err(Error::config(
                NAME,
                "export_interval of the metrics layer is zero; use export_stats(false) to export \
                 nothing",
            ));
        }
        self.export_interval = Some(interval);
        Ok(self)
    }

    /// Whether the backend's own figures are exported at all (default
    /// true). Without them, only the operation metrics are recorded and
    /// the layer starts no background task.
    pub fn export_stats(mut self, export: bool) -> Self {
        self.export_interval = match (export, self.export_interval) {
            (false, _) => None,
            (true, Some(interval)) => Some(interval),
            (true, None) => Some(DEFAULT_EXPORT_INTERVAL),
        };
        self
    }

    /// Wraps `inner`, keeping its type ([`Layer::layer`](super::Layer::layer)
    /// does the same for an `Arc<dyn Backend>`), and describes the metrics
    /// to the recorder installed now (if any).
    ///
    /// The export of the backend's figures starts now inside a tokio
    /// runtime, otherwise on the first operation inside one; it ends when
    /// the returned backend is dropped.
    pub fn wrap<B: Backend + ?Sized>(&self, inner: Arc<B>) -> Metrics<B> {
        describe();
        let backend = self
            .backend_label
            .clone()
            .unwrap_or_else(|| SharedString::from(inner.name()));
        let cache = self.cache_label.clone().unwrap_or_else(|| backend.clone());
        let metrics = Metrics {
            labels: Labels { cache, backend },
            export: self.export_interval.map(|interval| Export {
                interval,
                state: Arc::new(AtomicU8::new(IDLE)),
                task: PurgeTask::default(),
            }),
            inner,
        };
        metrics.start_export();
        metrics
    }
}

layer_by_wrap!(MetricsLayer);

/// Describes every metric to the installed recorder.
fn describe() {
    describe_counter!(
        OPERATIONS,
        "Operations on a cachette backend, by outcome (hit, miss, ok, error)."
    );
    describe_histogram!(
        DURATION,
        Unit::Seconds,
        "How long operations on a cachette backend took."
    );
    describe_counter!(
        ERRORS,
        "Failed operations on a cachette backend, by error kind."
    );
    describe_gauge!(ENTRIES, "Entries the backend stores.");
    describe_gauge!(BYTES, Unit::Bytes, "Bytes the backend stores.");
    describe_gauge!(
        CONNECTION_UP,
        "1 if the backend's last health check succeeded, 0 otherwise."
    );
    for (name, help, _) in STATS_COUNTERS {
        describe_counter!(name, help);
    }
    describe_counter!(
        INVALIDATIONS_RECEIVED,
        "Invalidation messages a near or tiered cache received from other instances."
    );
    describe_counter!(
        FLUSHES,
        "Times a near cache dropped its local copy entirely."
    );
    describe_counter!(
        DETAIL_COUNTER,
        "A running total the backend reports by name."
    );
    describe_gauge!(DETAIL_GAUGE, "A level the backend reports by name.");
}

/// The labels every metric of a layer carries.
#[derive(Debug, Clone)]
struct Labels {
    cache: SharedString,
    backend: SharedString,
}

/// The export of the backend's figures: one task at a time, aborted when
/// the layer is dropped or closed.
#[derive(Debug)]
struct Export {
    interval: Duration,
    /// [`IDLE`], [`RUNNING`] or [`CLOSED`].
    state: Arc<AtomicU8>,
    task: PurgeTask,
}

/// No export task runs: the next operation inside a runtime starts one.
const IDLE: u8 = 0;
/// An export task runs.
const RUNNING: u8 = 1;
/// The backend was closed through the layer: no task starts again.
const CLOSED: u8 = 2;

/// Owned by the export task: when the task ends (its runtime shut down,
/// say, the runtime of a test or of a startup `block_on`), the export is
/// idle again, so that the next operation, inside another runtime,
/// starts it there.
struct Running(Arc<AtomicU8>);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self
            .0
            .compare_exchange(RUNNING, IDLE, Ordering::AcqRel, Ordering::Relaxed);
    }
}

/// A backend that records each operation through the
/// [`metrics`](https://docs.rs/metrics) facade, and exports the inner
/// backend's own figures on an interval; built by [`MetricsLayer`]
/// (feature `metrics`).
///
/// Names and labels follow Prometheus' conventions (`_total` counters,
/// base units); every metric carries the labels `cache` (see
/// [`MetricsLayer::cache_label`]) and `backend` (the inner backend's name,
/// or [`MetricsLayer::backend_label`]).
///
/// # Operations
///
/// Recorded as each operation ends, as the caller sees it:
///
/// | metric | type | more labels | meaning |
/// | --- | --- | --- | --- |
/// | `cachette_operations_total` | counter | `op`, `outcome` | operations that ended; `outcome` is `hit` or `miss` for `get`, `error` for any failure, `ok` otherwise (`get_many` included: its keys are counted by `cachette_hits_total`) |
/// | `cachette_operation_duration_seconds` | histogram | `op` | how long each operation took, in seconds |
/// | `cachette_errors_total` | counter | `op`, `kind` | failed operations by [`ErrorKind`](crate::ErrorKind): `connection`, `timeout`, `invalid_input`, `config`, `serialization`, `unsupported`, `not_an_integer`, `overflow`, `permission_denied`, `backend` |
///
/// `op` is the method's name: `get`, `set`, `delete`, `exists`,
/// `get_many`, `set_many`, `delete_many`, `incr`, `decr`, `ttl`, `touch`,
/// `clear`, `keys`, `invalidate_tags`, `purge_expired`, `lease`,
/// `release_lease`, `stats`, `health`, `close`.
///
/// # The backend's figures
///
/// Every export interval (default 10 s, [`MetricsLayer::export_interval`])
/// a background task asks the inner backend for [`Backend::health`] and
/// [`Backend::stats`] (neither counted as operations) and sets:
///
/// | metric | type | more labels | meaning | source |
/// | --- | --- | --- | --- | --- |
/// | `cachette_connection_up` | gauge | | 1 if the health check succeeded within the interval, else 0 | `health()` |
/// | `cachette_entries` | gauge | | entries stored | [`Stats::entries`] |
/// | `cachette_bytes` | gauge | | bytes stored | [`Stats::bytes`] |
/// | `cachette_hits_total` | counter | | keys found, by any reader of the backend | [`Stats::hits`] |
/// | `cachette_misses_total` | counter | | keys not found | [`Stats::misses`] |
/// | `cachette_inserts_total` | counter | | writes that created an entry | [`Stats::inserts`] |
/// | `cachette_updates_total` | counter | | writes that replaced an entry | [`Stats::updates`] |
/// | `cachette_deletes_total` | counter | | entries removed by `delete` | [`Stats::deletes`] |
/// | `cachette_evictions_total` | counter | | entries evicted to respect a bound | [`Stats::evictions`] |
/// | `cachette_expirations_total` | counter | | entries removed because their TTL ran out | [`Stats::expirations`] |
/// | `cachette_invalidations_total` | counter | | entries removed by `invalidate_tags` | [`Stats::invalidations`] |
/// | `cachette_corrupt_total` | counter | | stored entries that could not be read back | [`Stats::corrupt`] |
/// | `cachette_invalidations_received_total` | counter | | invalidations received from other instances (near cache, tiered channel) | detail `invalidations_received` |
/// | `cachette_flushes_total` | counter | | times the near cache emptied its local store (the server flushed, or the connection was lost) | detail `flushes` |
/// | `cachette_detail` | gauge | `name` | the other details that are levels: those whose name, or its last `.`-separated part (the tiered backend's `l1.entries`), is `entries`, `bytes`, `tags`, `local_entries`, `db_keys`, `server_used_memory` (Redis), `file_bytes`, `curr_items`, `servers` or `servers_reachable` | [`Stats::details`] |
/// | `cachette_detail_total` | counter | `name` | every other detail: a running total (`local_hits`, `remote_hits`, `l1.evictions`, ...) | [`Stats::details`] |
///
/// The counters follow the backend's own cumulative values: each export
/// adds what the backend counted since the previous one, so that they
/// never go back, and a backend whose counters start again from 0 (a
/// restarted server, a rebuilt backend under the same labels) adds its new
/// figures to the old ones instead of standing still until it passes them;
/// a counter a backend does not track stays 0. The hit
/// ratio of the store is `cachette_hits_total / (cachette_hits_total +
/// cachette_misses_total)`. A failed `stats()` leaves the last values in
/// place and is logged at `debug`.
///
/// The export runs as a tokio task, started when the layer wraps a backend
/// inside a runtime, or else on the first operation inside one; outside
/// any runtime nothing is exported and operations are still recorded. The
/// task holds the backend weakly and ends when this layer is dropped, or
/// when [`Backend::close`] succeeds through it. A task that ended with its
/// runtime (a layer built under one runtime, such as a `static` cache
/// first used by one test, then used under another) starts again on the
/// next operation inside a runtime.
///
/// Metrics go to whatever recorder is installed when they are recorded.
/// Placed above the retry and circuit breaker layers, as
/// [`LayerStack`](super::LayerStack) does, it counts operations as callers
/// see them (see [the module docs](crate::layers)).
pub struct Metrics<B: ?Sized = dyn Backend> {
    labels: Labels,
    export: Option<Export>,
    inner: Arc<B>,
}

debug_layer!(Metrics { labels, export });
backend_around!(Metrics);

impl<B: Backend + ?Sized> Metrics<B> {
    /// The inner backend.
    pub fn inner(&self) -> &Arc<B> {
        &self.inner
    }

    async fn around<T, F, Fut>(&self, call: Call<'_>, mut f: F) -> Result<T>
    where
        T: Reply,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.start_export();
        let started = Instant::now();
        let result = f().await;
        let elapsed = started.elapsed();
        if let (Op::Close, Ok(_), Some(export)) = (call.op, &result, &self.export) {
            // A closed backend has no figures left to export, and no
            // later operation starts the export again.
            export.state.store(CLOSED, Ordering::Release);
            export.task.stop();
        }
        let op = call.op.name();
        let Labels { cache, backend } = &self.labels;
        let outcome = match &result {
            Err(error) => {
                let kind = super::trace::error_type(error.kind());
                counter!(ERRORS, "cache" => cache.clone(), "backend" => backend.clone(), "op" => op, "kind" => kind)
                    .increment(1);
                "error"
            }
            Ok(reply) => match (call.op, reply.lookups()) {
                (Op::Get, Some((hits, _))) if hits > 0 => "hit",
                (Op::Get, Some(_)) => "miss",
                _ => "ok",
            },
        };
        counter!(OPERATIONS, "cache" => cache.clone(), "backend" => backend.clone(), "op" => op, "outcome" => outcome)
            .increment(1);
        histogram!(DURATION, "cache" => cache.clone(), "backend" => backend.clone(), "op" => op)
            .record(elapsed.as_secs_f64());
        result
    }

    /// Starts the export of the backend's figures, once, if one is asked
    /// for and this thread is inside a tokio runtime.
    fn start_export(&self) {
        let Some(export) = &self.export else { return };
        if export.state.load(Ordering::Relaxed) != IDLE
            || tokio::runtime::Handle::try_current().is_err()
            || export
                .state
                .compare_exchange(IDLE, RUNNING, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let running = Running(Arc::clone(&export.state));
        let labels = self.labels.clone();
        let interval = export.interval;
        let exported = Arc::new(Mutex::new(Exported::default()));
        // The purge loop is the loop needed: a weak handle, a tick per
        // interval, aborted on drop. Failures are logged here (at debug:
        // a backend that is down would repeat them every interval), so
        // the loop never sees one.
        export.task.start(
            self.inner.name(),
            Arc::downgrade(&self.inner),
            interval,
            move |inner| {
                // Dropped with the task, whatever ends it.
                let _ = &running;
                let labels = labels.clone();
                let exported = Arc::clone(&exported);
                async move {
                    export_figures(&*inner, &labels, &exported, interval).await;
                    Ok(0)
                }
            },
        );
    }
}

/// Asks the backend for its health and stats, each bounded by `limit`, and
/// records them.
async fn export_figures<B: Backend + ?Sized>(
    inner: &B,
    labels: &Labels,
    exported: &Mutex<Exported>,
    limit: Duration,
) {
    let Labels { cache, backend } = labels;
    let up = matches!(
        tokio::time::timeout(limit, inner.health()).await,
        Ok(Ok(()))
    );
    gauge!(CONNECTION_UP, "cache" => cache.clone(), "backend" => backend.clone()).set(if up {
        1.0
    } else {
        0.0
    });
    match tokio::time::timeout(limit, inner.stats()).await {
        Ok(Ok(stats)) => record_stats(labels, &stats, &mut exported.lock()),
        Ok(Err(error)) => {
            tracing::debug!(backend = inner.name(), %error, "metrics: could not read the backend's stats");
        }
        Err(_) => {
            tracing::debug!(
                backend = inner.name(),
                limit = ?limit,
                "metrics: the backend's stats took longer than the export interval"
            );
        }
    }
}

/// The backend's counters as last exported by one layer: each export adds
/// what the backend counted since. (`Counter::absolute` would not do: the
/// recorders keep the highest value it was given, so after a backend
/// restarts from 0 its counter would stand still until it passed its old
/// total.)
#[derive(Debug, Default)]
struct Exported {
    /// By metric name, and detail name for `cachette_detail_total`.
    last: HashMap<(&'static str, String), u64>,
}

impl Exported {
    /// How much the counter `metric` (of the backend's detail `detail`,
    /// if any) grew since its last export: the difference, or the whole of
    /// `value` if it went back (the backend's counters started again from
    /// 0).
    fn growth(&mut self, metric: &'static str, detail: &str, value: u64) -> u64 {
        let last = self.last.entry((metric, detail.to_owned())).or_insert(0);
        let growth = value.checked_sub(*last).unwrap_or(value);
        *last = value;
        growth
    }
}

/// Sets the gauges and advances the counters of [`Stats`].
fn record_stats(labels: &Labels, stats: &Stats, exported: &mut Exported) {
    let Labels { cache, backend } = labels;
    let labelled = || [("cache", cache.clone()), ("backend", backend.clone())];
    gauge!(ENTRIES, &labelled()).set(stats.entries as f64);
    gauge!(BYTES, &labelled()).set(stats.bytes as f64);
    for (name, _, value) in STATS_COUNTERS {
        counter!(name, &labelled()).increment(exported.growth(name, "", value(stats)));
    }
    for (name, value) in &stats.details {
        match name.as_str() {
            "invalidations_received" => counter!(INVALIDATIONS_RECEIVED, &labelled())
                .increment(exported.growth(INVALIDATIONS_RECEIVED, "", *value)),
            "flushes" => {
                counter!(FLUSHES, &labelled()).increment(exported.growth(FLUSHES, "", *value))
            }
            _ => {
                let detail = [
                    ("cache", cache.clone()),
                    ("backend", backend.clone()),
                    ("name", SharedString::from(name.clone())),
                ];
                if Stats::detail_is_level(name) {
                    gauge!(DETAIL_GAUGE, &detail).set(*value as f64);
                } else {
                    counter!(DETAIL_COUNTER, &detail).increment(exported.growth(
                        DETAIL_COUNTER,
                        name,
                        *value,
                    ));
                }
            }
        }
    }
}
