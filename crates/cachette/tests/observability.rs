//! What the observability layers report: the fields of the tracing
//! layer's spans (OpenTelemetry's conventions for database client spans)
//! and the metrics layer's names, labels and types, including the
//! backend's own figures that it exports on an interval (driven by tokio's
//! paused clock).
//!
//! Run with `cargo test -p cachette --all-features --test observability`.

#![cfg(all(feature = "testing", feature = "memory"))]

use std::sync::{Arc, Mutex};

use bytes::Bytes;

use cachette::layers::{Layer, LayerStack, RetryLayer, TracingLayer};
use cachette::testing::FaultyBackend;
use cachette::{Backend, ErrorKind, MemoryBackend, SetOptions};

fn memory() -> Arc<dyn Backend> {
    Arc::new(MemoryBackend::default())
}

fn opts() -> SetOptions {
    SetOptions::new()
}

/// A memory backend under another name, with the stats and health it is
/// given: stands for the backends that need a server.
#[derive(Debug)]
struct Named {
    name: &'static str,
    store: MemoryBackend,
    stats: Mutex<cachette::Stats>,
    healthy: bool,
}

impl Named {
    fn new(name: &'static str) -> Arc<Named> {
        Arc::new(Named {
            name,
            store: MemoryBackend::default(),
            stats: Mutex::default(),
            healthy: true,
        })
    }
}

#[async_trait::async_trait]
impl Backend for Named {
    fn name(&self) -> &'static str {
        self.name
    }
    async fn get(&self, key: &str) -> cachette::Result<Option<Bytes>> {
        self.store.get(key).await
    }
    async fn set(&self, key: &str, value: Bytes, options: &SetOptions) -> cachette::Result<bool> {
        self.store.set(key, value, options).await
    }
    async fn delete(&self, key: &str) -> cachette::Result<bool> {
        self.store.delete(key).await
    }
    async fn keys(&self, pattern: &str) -> cachette::Result<cachette::KeyStream> {
        self.store.keys(pattern).await
    }
    async fn stats(&self) -> cachette::Result<cachette::Stats> {
        Ok(self.stats.lock().unwrap().clone())
    }
    async fn health(&self) -> cachette::Result<()> {
        if self.healthy {
            Ok(())
        } else {
            Err(cachette::Error::new(
                ErrorKind::Connection,
                self.name,
                "down",
            ))
        }
    }
}

mod capture {
    //! A minimal `tracing` subscriber that keeps spans and events.
    //!
    //! One global subscriber, installed once for this test binary, routes
    //! everything to the capture of the current thread (each
    //! `#[tokio::test]` runs its tasks on its own thread). Scoped
    //! subscribers (`set_default`) would race: tracing caches each
    //! callsite's interest process-wide, and a callsite first hit on a
    //! thread with no subscriber while another test swaps its own in could
    //! stay disabled for that test.

    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::fmt;
    use std::sync::{Arc, Once};

    use parking_lot::Mutex;
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Level, Metadata, Subscriber};

    #[derive(Debug, Clone)]
    pub(crate) struct Span {
        pub(crate) name: &'static str,
        pub(crate) level: Level,
        pub(crate) fields: HashMap<String, String>,
    }

    #[derive(Debug, Clone)]
    pub(crate) struct Logged {
        pub(crate) level: Level,
        pub(crate) span: Option<&'static str>,
        pub(crate) fields: HashMap<String, String>,
    }

    #[derive(Debug, Default)]
    struct State {
        spans: Vec<Span>,
        events: Vec<Logged>,
        stack: Vec<u64>,
    }

    #[derive(Debug, Clone, Default)]
    pub(crate) struct Capture(Arc<Mutex<State>>);

    struct Fields<'a>(&'a mut HashMap<String, String>);

    impl Visit for Fields<'_> {
        fn record_str(&mut self, field: &Field, value: &str) {
            self.0.insert(field.name().to_owned(), value.to_owned());
        }
        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            self.0.insert(field.name().to_owned(), format!("{value:?}"));
        }
    }

    impl Capture {
        pub(crate) fn spans(&self) -> Vec<Span> {
            self.0.lock().spans.clone()
        }
        pub(crate) fn events(&self) -> Vec<Logged> {
            self.0.lock().events.clone()
        }
    }

    thread_local! {
        static CURRENT: RefCell<Option<Capture>> = const { RefCell::new(None) };
    }

    /// Ends the capture of this thread when dropped.
    pub(crate) struct Capturing(());

    impl Drop for Capturing {
        fn drop(&mut self) {
            CURRENT.with(|current| current.borrow_mut().take());
        }
    }

    /// Captures what this thread traces until the guard drops.
    pub(crate) fn start() -> (Capture, Capturing) {
        static INSTALL: Once = Once::new();
        INSTALL.call_once(|| {
            tracing::subscriber::set_global_default(Router)
                .unwrap_or_else(|e| panic!("no other global subscriber in this binary: {e}"));
        });
        let capture = Capture::default();
        CURRENT.with(|current| *current.borrow_mut() = Some(capture.clone()));
        (capture, Capturing(()))
    }

    /// The global subscriber: every callsite always enabled, everything
    /// handed to the current thread's capture, if any.
    struct Router;

    /// The span id handed out on threads without a capture.
    const UNCAPTURED: u64 = u64::MAX;

    fn with_current<R>(f: impl FnOnce(&Capture) -> R) -> Option<R> {
        CURRENT.with(|current| current.borrow().as_ref().map(f))
    }

    impl Subscriber for Router {
        fn register_callsite(
            &self,
            _: &'static Metadata<'static>,
        ) -> tracing::subscriber::Interest {
            tracing::subscriber::Interest::always()
        }
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, attrs: &Attributes<'_>) -> Id {
            with_current(|c| c.new_span(attrs)).unwrap_or(Id::from_u64(UNCAPTURED))
        }
        fn record(&self, id: &Id, values: &Record<'_>) {
            if id.into_u64() != UNCAPTURED {
                with_current(|c| c.record(id, values));
            }
        }
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            with_current(|c| c.event(event));
        }
        fn enter(&self, id: &Id) {
            if id.into_u64() != UNCAPTURED {
                with_current(|c| c.enter(id));
            }
        }
        fn exit(&self, id: &Id) {
            if id.into_u64() != UNCAPTURED {
                with_current(|c| c.exit(id));
            }
        }
    }

    impl Capture {
        fn new_span(&self, attrs: &Attributes<'_>) -> Id {
            let mut span = Span {
                name: attrs.metadata().name(),
                level: *attrs.metadata().level(),
                fields: HashMap::new(),
            };
            attrs.record(&mut Fields(&mut span.fields));
            let mut state = self.0.lock();
            state.spans.push(span);
            Id::from_u64(state.spans.len() as u64)
        }
        fn record(&self, id: &Id, values: &Record<'_>) {
            let mut state = self.0.lock();
            if let Some(span) = state.spans.get_mut(id.into_u64() as usize - 1) {
                values.record(&mut Fields(&mut span.fields));
            }
        }
        fn event(&self, event: &Event<'_>) {
            let mut state = self.0.lock();
            let span = state
                .stack
                .last()
                .and_then(|&id| state.spans.get(id as usize - 1))
                .map(|span| span.name);
            let mut fields = HashMap::new();
            event.record(&mut Fields(&mut fields));
            state.events.push(Logged {
                level: *event.metadata().level(),
                span,
                fields,
            });
        }
        fn enter(&self, id: &Id) {
            self.0.lock().stack.push(id.into_u64());
        }
        fn exit(&self, _: &Id) {
            self.0.lock().stack.pop();
        }
    }
}

// ---------------------------------------------------------------------------
// Tracing
// ---------------------------------------------------------------------------

/// The fields of the only span captured.
fn only_span(capture: &capture::Capture) -> capture::Span {
    let spans = capture.spans();
    assert_eq!(spans.len(), 1, "{spans:?}");
    spans[0].clone()
}

#[tokio::test]
async fn a_hit_is_a_span_with_the_database_conventions_attributes() {
    let (capture, _capturing) = capture::start();
    let store = memory();
    store.set("k", "v".into(), &opts()).await.unwrap();
    let backend = TracingLayer::new().layer(store);

    backend.get("k").await.unwrap();

    let span = only_span(&capture);
    assert_eq!(
        (span.name, span.level),
        ("cachette.get", tracing::Level::DEBUG)
    );
    let field = |name: &str| span.fields.get(name).map(String::as_str);
    assert_eq!(field("otel.name"), Some("get"));
    assert_eq!(field("otel.kind"), Some("internal"));
    assert_eq!(field("db.system.name"), Some("cachette"));
    assert_eq!(field("db.operation.name"), Some("get"));
    assert_eq!(field("cachette.backend"), Some("memory"));
    assert_eq!(field("cachette.hit"), Some("true"));
    assert_eq!(field("cachette.outcome"), Some("hit"));
    for absent in [
        "error.type",
        "otel.status_code",
        "db.namespace",
        "cachette.key",
    ] {
        assert_eq!(field(absent), None, "{absent}");
    }
}

#[tokio::test]
async fn a_miss_records_hit_false() {
    let (capture, _capturing) = capture::start();
    let backend = TracingLayer::new().layer(memory());

    backend.get("missing").await.unwrap();

    let span = only_span(&capture);
    assert_eq!(span.fields["cachette.hit"], "false");
    assert_eq!(span.fields["cachette.outcome"], "miss");
    assert!(!span.fields.contains_key("otel.status_code"));
}

#[tokio::test]
async fn an_error_sets_error_type_and_the_error_status_and_logs_at_warn() {
    let (capture, _capturing) = capture::start();
    let faults = FaultyBackend::new(memory());
    let backend = TracingLayer::new().layer(faults.clone());
    faults.fail_next(1, ErrorKind::Connection);

    backend.get("k").await.unwrap_err();

    let span = only_span(&capture);
    assert_eq!(span.fields["error.type"], "connection");
    assert_eq!(span.fields["otel.status_code"], "ERROR");
    assert_eq!(span.fields["cachette.outcome"], "error");
    assert!(!span.fields.contains_key("cachette.hit"));
    let warnings: Vec<_> = capture
        .events()
        .into_iter()
        .filter(|e| e.level == tracing::Level::WARN)
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].span, Some("cachette.get"));
    assert_eq!(warnings[0].fields["error.type"], "connection");
    assert_eq!(warnings[0].fields["db.operation.name"], "get");
}

#[tokio::test]
async fn error_type_is_the_error_kind_in_snake_case() {
    let (capture, _capturing) = capture::start();
    let faults = FaultyBackend::new(memory());
    let backend = TracingLayer::new().layer(faults.clone());
    faults.fail_next(1, ErrorKind::InvalidInput);

    backend.delete("k").await.unwrap_err();

    assert_eq!(only_span(&capture).fields["error.type"], "invalid_input");
}

#[tokio::test]
async fn a_namespace_becomes_db_namespace_and_ends_the_otel_name() {
    let (capture, _capturing) = capture::start();
    let backend = TracingLayer::new().namespace("sessions").layer(memory());

    backend.set("k", "v".into(), &opts()).await.unwrap();

    let span = only_span(&capture);
    assert_eq!(span.fields["otel.name"], "set sessions");
    assert_eq!(span.fields["db.namespace"], "sessions");
    assert_eq!(span.fields["cachette.outcome"], "ok");
}

#[tokio::test]
async fn db_system_name_uses_the_well_known_values_and_servers_get_client_spans() {
    let (capture, _capturing) = capture::start();
    for name in ["postgres", "redis", "near", "memcached", "custom"] {
        TracingLayer::new()
            .layer(Named::new(name))
            .get("k")
            .await
            .unwrap();
    }

    let systems: Vec<(String, String)> = capture
        .spans()
        .iter()
        .map(|s| {
            assert_eq!(s.fields["otel.kind"], "client", "{s:?}");
            (
                s.fields["cachette.backend"].clone(),
                s.fields["db.system.name"].clone(),
            )
        })
        .collect();
    let systems: Vec<(&str, &str)> = systems
        .iter()
        .map(|(backend, system)| (backend.as_str(), system.as_str()))
        .collect();
    assert_eq!(
        systems,
        [
            ("postgres", "postgresql"),
            ("redis", "redis"),
            ("near", "redis"),
            ("memcached", "memcached"),
            ("custom", "custom"),
        ]
    );
}

#[tokio::test]
async fn batches_of_two_or_more_record_db_operation_batch_size() {
    let (capture, _capturing) = capture::start();
    let backend = TracingLayer::new().layer(memory());

    backend.set("k", "v".into(), &opts()).await.unwrap();
    backend.get_many(&["k", "missing", "k"]).await.unwrap();
    backend.get_many(&["k"]).await.unwrap();

    let spans = capture.spans();
    let batch = &spans[1].fields;
    assert_eq!(batch["db.operation.name"], "get_many");
    assert_eq!(batch["db.operation.batch.size"], "3");
    assert_eq!(batch["cachette.count"], "3");
    assert_eq!(
        (
            batch["cachette.hits"].as_str(),
            batch["cachette.misses"].as_str()
        ),
        ("2", "1")
    );
    assert_eq!(batch["cachette.outcome"], "ok");
    let single = &spans[2].fields;
    assert_eq!(single["cachette.count"], "1");
    assert!(
        !single.contains_key("db.operation.batch.size"),
        "{single:?}"
    );
}

#[tokio::test]
async fn spans_record_the_key_length_and_hash_not_the_key() {
    let (capture, _capturing) = capture::start();
    let backend = TracingLayer::new().layer(memory());

    backend.get("user:ada@example.com").await.unwrap();

    let span = only_span(&capture);
    assert_eq!(span.fields["cachette.key.len"], "20");
    assert_eq!(span.fields["cachette.key.hash"].len(), 16);
    assert!(!span.fields.contains_key("cachette.key"));
    assert!(!format!("{span:?}").contains("ada@example.com"));
}

#[tokio::test]
async fn spans_record_full_keys_only_when_asked() {
    let (capture, _capturing) = capture::start();
    let backend = TracingLayer::new().record_keys(true).layer(memory());

    backend.get("user:1").await.unwrap();

    assert_eq!(only_span(&capture).fields["cachette.key"], "user:1");
}

/// The `cachette.attempts` field is recorded through `Span::current()`,
/// which this minimal subscriber does not track; the retries' events show
/// the nesting.
#[tokio::test(start_paused = true)]
async fn retry_logs_its_attempts_inside_the_tracing_span() {
    let (capture, _capturing) = capture::start();
    let faults = FaultyBackend::new(memory());
    let backend = LayerStack::new(faults.clone())
        .retry(RetryLayer::new())
        .tracing(TracingLayer::new())
        .build()
        .unwrap();
    faults.fail_next(2, ErrorKind::Connection);

    backend.get("k").await.unwrap();

    let span = only_span(&capture);
    assert_eq!(span.fields["cachette.outcome"], "miss");
    assert!(!span.fields.contains_key("error.type"));
    let retries = capture
        .events()
        .into_iter()
        .filter(|e| e.level == tracing::Level::DEBUG && e.span == Some("cachette.get"))
        .count();
    assert_eq!(retries, 2);
}

// ---------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------

#[cfg(feature = "metrics")]
mod metrics_layer {
    use std::collections::BTreeMap;
    use std::future::Future;
    use std::time::Duration;

    use cachette::layers::MetricsLayer;
    use metrics::Unit;
    use metrics_util::MetricKind;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

    use super::*;

    /// One recorded metric: kind, name, sorted labels.
    type Series = (MetricKind, String, Vec<(String, String)>);

    /// What was recorded since the last look: values, and units.
    #[derive(Debug, Default)]
    struct Recorded {
        values: BTreeMap<Series, DebugValue>,
        units: BTreeMap<String, Unit>,
    }

    impl Recorded {
        fn counter(&self, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
            match self.values.get(&series(MetricKind::Counter, name, labels)) {
                Some(DebugValue::Counter(n)) => Some(*n),
                None => None,
                other => panic!("{name}: {other:?}"),
            }
        }

        fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
            match self.values.get(&series(MetricKind::Gauge, name, labels)) {
                Some(DebugValue::Gauge(n)) => Some(n.into_inner()),
                None => None,
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    /// Takes what was recorded since the last look (the debugging recorder
    /// resets values as it reads them).
    fn look(snapshotter: &Snapshotter) -> Recorded {
        let mut recorded = Recorded::default();
        for (key, unit, _, value) in snapshotter.snapshot().into_vec() {
            let (kind, key) = key.into_parts();
            let mut labels: Vec<(String, String)> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            if let Some(unit) = unit {
                recorded.units.insert(key.name().to_owned(), unit);
            }
            recorded
                .values
                .insert((kind, key.name().to_owned(), labels), value);
        }
        recorded
    }

    /// Runs `test` on a current-thread runtime with the clock paused and a
    /// local debugging recorder: what `test` returned, and what was
    /// recorded (since `test` last looked, through the snapshotter it is
    /// given).
    fn recorded<T, F: Future<Output = T>>(test: impl FnOnce(Snapshotter) -> F) -> (T, Recorded) {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let inside = recorder.snapshotter();
        let answer = metrics::with_local_recorder(&recorder, || on_a_paused_clock(test(inside)));
        (answer, look(&snapshotter))
    }

    /// Runs `future` to its end on a new current-thread runtime with the
    /// clock paused; the runtime, and its tasks, end with it.
    fn on_a_paused_clock<T>(future: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("a runtime")
            .block_on(future)
    }

    fn series(kind: MetricKind, name: &str, labels: &[(&str, &str)]) -> Series {
        let mut labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        labels.sort();
        (kind, name.to_owned(), labels)
    }

    /// The labels of an operation of the default memory layer.
    fn op(op: &'static str, outcome: &'static str) -> [(&'static str, &'static str); 4] {
        [
            ("cache", "memory"),
            ("backend", "memory"),
            ("op", op),
            ("outcome", outcome),
        ]
    }

    const MEMORY: [(&str, &str); 2] = [("cache", "memory"), ("backend", "memory")];

    /// An interval for the export tests.
    const EVERY: Duration = Duration::from_secs(5);

    /// A moment after the next export.
    async fn after_an_export() {
        tokio::time::sleep(EVERY + Duration::from_millis(1)).await;
    }

    #[test]
    fn operations_are_counted_by_cache_backend_op_and_outcome() {
        let (_, metrics) = recorded(|_| async {
            let faults = FaultyBackend::new(memory());
            let backend = MetricsLayer::new().layer(faults.clone());
            backend.set("k", "v".into(), &opts()).await.unwrap();
            backend.set("k", "v".into(), &opts()).await.unwrap();
            backend.get("k").await.unwrap();
            backend.get("missing").await.unwrap();
            backend.get_many(&["k", "missing"]).await.unwrap();
            faults.fail_next(1, ErrorKind::Connection);
            backend.delete("k").await.unwrap_err();
        });

        let count =
            |labels: [(&str, &str); 4]| metrics.counter("cachette_operations_total", &labels);
        assert_eq!(count(op("set", "ok")), Some(2));
        assert_eq!(count(op("get", "hit")), Some(1));
        assert_eq!(count(op("get", "miss")), Some(1));
        assert_eq!(count(op("get_many", "ok")), Some(1));
        assert_eq!(count(op("delete", "error")), Some(1));
        assert_eq!(count(op("delete", "ok")), None);
        assert_eq!(count(op("get", "ok")), None);
    }

    #[test]
    fn failures_are_counted_by_error_kind() {
        let (_, metrics) = recorded(|_| async {
            let faults = FaultyBackend::new(memory());
            let backend = MetricsLayer::new().layer(faults.clone());
            faults.fail_next(2, ErrorKind::Timeout);
            backend.get("k").await.unwrap_err();
            backend.get("k").await.unwrap_err();
            faults.fail_next(1, ErrorKind::InvalidInput);
            backend.set("k", "v".into(), &opts()).await.unwrap_err();
        });

        let errors = |op: &str, kind: &str| {
            metrics.counter(
                "cachette_errors_total",
                &[
                    ("cache", "memory"),
                    ("backend", "memory"),
                    ("op", op),
                    ("kind", kind),
                ],
            )
        };
        assert_eq!(errors("get", "timeout"), Some(2));
        assert_eq!(errors("set", "invalid_input"), Some(1));
        assert_eq!(errors("set", "timeout"), None);
    }

    #[test]
    fn each_operation_records_its_duration_in_seconds() {
        let (_, metrics) = recorded(|_| async {
            let backend = MetricsLayer::new().layer(memory());
            backend.exists("k").await.unwrap();
            backend.exists("k").await.unwrap();
        });

        let key = series(
            MetricKind::Histogram,
            "cachette_operation_duration_seconds",
            &[("cache", "memory"), ("backend", "memory"), ("op", "exists")],
        );
        let DebugValue::Histogram(durations) = &metrics.values[&key] else {
            panic!("a histogram: {metrics:?}");
        };
        assert_eq!(durations.len(), 2);
        assert_eq!(
            metrics.units.get("cachette_operation_duration_seconds"),
            Some(&Unit::Seconds)
        );
    }

    #[test]
    fn the_cache_label_names_the_cache_and_defaults_to_the_backend_label() {
        let (_, metrics) = recorded(|_| async {
            let named = MetricsLayer::new().cache_label("sessions").layer(memory());
            named.health().await.unwrap();
            let relabelled = MetricsLayer::new().backend_label("store").layer(memory());
            relabelled.health().await.unwrap();
        });

        let health = |cache: &str, backend: &str| {
            metrics.counter(
                "cachette_operations_total",
                &[
                    ("cache", cache),
                    ("backend", backend),
                    ("op", "health"),
                    ("outcome", "ok"),
                ],
            )
        };
        assert_eq!(health("sessions", "memory"), Some(1));
        assert_eq!(health("store", "store"), Some(1));
    }

    #[test]
    fn in_the_stack_one_operation_is_counted_per_call_despite_retries() {
        let (_, metrics) = recorded(|_| async {
            let faults = FaultyBackend::new(memory());
            let backend = LayerStack::new(faults.clone())
                .retry(
                    RetryLayer::new()
                        .backoff(Duration::ZERO, Duration::from_secs(1))
                        .unwrap(),
                )
                .metrics(MetricsLayer::new())
                .build()
                .unwrap();
            faults.fail_next(2, ErrorKind::Connection);
            backend.get("k").await.unwrap();
        });

        let count =
            |labels: [(&str, &str); 4]| metrics.counter("cachette_operations_total", &labels);
        assert_eq!(count(op("get", "miss")), Some(1));
        assert_eq!(count(op("get", "error")), None);
    }

    #[test]
    fn the_backends_entries_bytes_and_counters_are_exported_every_interval() {
        let (stats, metrics) = recorded(|_| async {
            let store = Arc::new(MemoryBackend::default());
            let backend = MetricsLayer::new()
                .export_interval(EVERY)
                .unwrap()
                .layer(store.clone());
            for key in ["a", "b", "c"] {
                backend.set(key, "value".into(), &opts()).await.unwrap();
            }
            backend.get("a").await.unwrap();
            backend.get("missing").await.unwrap();
            after_an_export().await;
            store.stats().await.unwrap()
        });

        assert_eq!(stats.entries, 3);
        assert!(stats.bytes > 0, "{stats:?}");
        assert_eq!(metrics.gauge("cachette_entries", &MEMORY), Some(3.0));
        assert_eq!(
            metrics.gauge("cachette_bytes", &MEMORY),
            Some(stats.bytes as f64)
        );
        assert_eq!(metrics.gauge("cachette_connection_up", &MEMORY), Some(1.0));
        assert_eq!(metrics.counter("cachette_inserts_total", &MEMORY), Some(3));
        assert_eq!(metrics.counter("cachette_hits_total", &MEMORY), Some(1));
        assert_eq!(metrics.counter("cachette_misses_total", &MEMORY), Some(1));
        assert_eq!(
            metrics.counter("cachette_evictions_total", &MEMORY),
            Some(0)
        );
        assert_eq!(metrics.units.get("cachette_bytes"), Some(&Unit::Bytes));
    }

    #[test]
    fn a_bounded_memory_backend_exports_its_evictions() {
        let (stats, metrics) = recorded(|_| async {
            let store = Arc::new(
                MemoryBackend::builder()
                    .max_entries(4)
                    .shards(1)
                    .build()
                    .unwrap(),
            );
            let backend = MetricsLayer::new()
                .export_interval(EVERY)
                .unwrap()
                .layer(store.clone());
            for n in 0..20 {
                backend
                    .set(&format!("key:{n}"), "value".into(), &opts())
                    .await
                    .unwrap();
            }
            after_an_export().await;
            store.stats().await.unwrap()
        });

        assert!(stats.evictions >= 16, "{stats:?}");
        assert_eq!(
            metrics.counter("cachette_evictions_total", &MEMORY),
            Some(stats.evictions)
        );
        assert_eq!(
            metrics.gauge("cachette_entries", &MEMORY),
            Some(stats.entries as f64)
        );
    }

    #[test]
    fn details_are_exported_by_meaning_as_counters_or_gauges() {
        let (_, metrics) = recorded(|_| async {
            let mut named = Named::new("near");
            let stats = Arc::get_mut(&mut named)
                .expect("not shared")
                .stats
                .get_mut()
                .unwrap();
            stats.details = [
                ("invalidations_received", 5),
                ("flushes", 2),
                ("local_hits", 9),
                ("local_entries", 4),
                ("l1.entries", 7),
                ("l1.evictions", 3),
            ]
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect();
            let _backend = MetricsLayer::new()
                .export_interval(EVERY)
                .unwrap()
                .layer(named);
            after_an_export().await;
        });

        let near = [("cache", "near"), ("backend", "near")];
        assert_eq!(
            metrics.counter("cachette_invalidations_received_total", &near),
            Some(5)
        );
        assert_eq!(metrics.counter("cachette_flushes_total", &near), Some(2));
        let detail = |name: &'static str| [("cache", "near"), ("backend", "near"), ("name", name)];
        for (name, total) in [
            ("local_hits", Some(9)),
            ("l1.evictions", Some(3)),
            ("flushes", None),
        ] {
            assert_eq!(
                metrics.counter("cachette_detail_total", &detail(name)),
                total,
                "{name}"
            );
        }
        for (name, level) in [("local_entries", 4.0), ("l1.entries", 7.0)] {
            assert_eq!(
                metrics.gauge("cachette_detail", &detail(name)),
                Some(level),
                "{name}"
            );
        }
    }

    /// Wraps a backend named `name` in a metrics layer, and lets one export
    /// after another see the stats that `set` makes of each of `values`.
    async fn export_in_turn(
        name: &'static str,
        values: &[u64],
        set: fn(&mut cachette::Stats, u64),
    ) {
        let named = Named::new(name);
        let _backend = MetricsLayer::new()
            .export_interval(EVERY)
            .unwrap()
            .layer(named.clone());
        for &value in values {
            set(&mut named.stats.lock().unwrap(), value);
            after_an_export().await;
        }
    }

    #[test]
    fn a_redis_servers_used_memory_is_a_gauge_that_follows_it_down() {
        let (_, metrics) = recorded(|_| {
            export_in_turn("redis", &[4096, 1024], |stats, bytes| {
                stats.details = vec![
                    ("server_used_memory".to_owned(), bytes),
                    ("l2.server_used_memory".to_owned(), bytes),
                ];
            })
        });

        for name in ["server_used_memory", "l2.server_used_memory"] {
            let detail = [("cache", "redis"), ("backend", "redis"), ("name", name)];
            assert_eq!(metrics.gauge("cachette_detail", &detail), Some(1024.0));
            assert_eq!(metrics.counter("cachette_detail_total", &detail), None);
        }
    }

    #[test]
    fn counters_keep_counting_when_the_backends_counters_start_again() {
        // 5 hits, then the server restarts and counts 2, then 4.
        let (_, metrics) = recorded(|_| {
            export_in_turn("near", &[5, 2, 4], |stats, hits| {
                stats.hits = hits;
                stats.details = vec![("local_hits".to_owned(), hits)];
            })
        });

        // 5 before the restart and 4 after: the exported counter neither
        // goes back nor stands still below its old total.
        let near = [("cache", "near"), ("backend", "near")];
        assert_eq!(metrics.counter("cachette_hits_total", &near), Some(9));
        let detail = [
            ("cache", "near"),
            ("backend", "near"),
            ("name", "local_hits"),
        ];
        assert_eq!(metrics.counter("cachette_detail_total", &detail), Some(9));
    }

    #[test]
    fn connection_up_follows_the_health_check_of_each_export() {
        let (looks, _) = recorded(|snapshotter| async move {
            let faults = FaultyBackend::new(memory());
            let _backend = MetricsLayer::new()
                .export_interval(EVERY)
                .unwrap()
                .layer(faults.clone());
            faults.fail_next(1, ErrorKind::Connection);
            after_an_export().await;
            let down = look(&snapshotter).gauge("cachette_connection_up", &MEMORY);
            tokio::time::sleep(EVERY).await;
            let up = look(&snapshotter).gauge("cachette_connection_up", &MEMORY);
            (
                down,
                up,
                faults.calls_of("health"),
                faults.calls_of("stats"),
            )
        });

        assert_eq!(looks, (Some(0.0), Some(1.0), 2, 2));
    }

    #[test]
    fn exported_calls_are_not_counted_as_operations() {
        let (_, metrics) = recorded(|_| async {
            let _backend = MetricsLayer::new()
                .export_interval(EVERY)
                .unwrap()
                .layer(memory());
            after_an_export().await;
        });

        assert_eq!(metrics.gauge("cachette_entries", &MEMORY), Some(0.0));
        assert!(
            !metrics
                .values
                .keys()
                .any(|(_, name, _)| name == "cachette_operations_total"),
            "{metrics:?}"
        );
    }

    #[test]
    fn the_export_ends_when_the_layer_is_dropped() {
        let (strong, metrics) = recorded(|_| async {
            let store: Arc<dyn Backend> = memory();
            let backend = MetricsLayer::new()
                .export_interval(EVERY)
                .unwrap()
                .layer(store.clone());
            backend.set("a", "1".into(), &opts()).await.unwrap();
            after_an_export().await;
            drop(backend);
            store.set("b", "2".into(), &opts()).await.unwrap();
            for _ in 0..3 {
                after_an_export().await;
            }
            Arc::strong_count(&store)
        });

        // The last export saw one entry; none ran after the drop.
        assert_eq!(metrics.gauge("cachette_entries", &MEMORY), Some(1.0));
        assert_eq!(strong, 1, "the export task holds no strong handle");
    }

    #[test]
    fn the_export_ends_when_the_backend_is_closed_through_the_layer() {
        let (calls, metrics) = recorded(|_| async {
            let faults = FaultyBackend::new(memory());
            let backend = MetricsLayer::new()
                .export_interval(EVERY)
                .unwrap()
                .layer(faults.clone());
            backend.close().await.unwrap();
            for _ in 0..3 {
                after_an_export().await;
            }
            backend.get("k").await.unwrap();
            after_an_export().await;
            (faults.calls_of("health"), faults.calls_of("stats"))
        });

        assert_eq!(calls, (0, 0));
        assert_eq!(metrics.gauge("cachette_connection_up", &MEMORY), None);
    }

    #[test]
    fn wrapped_outside_a_runtime_the_export_starts_on_the_first_operation() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let backend = metrics::with_local_recorder(&recorder, || {
            MetricsLayer::new()
                .export_interval(EVERY)
                .unwrap()
                .layer(memory())
        });
        let (before, after) = metrics::with_local_recorder(&recorder, || {
            on_a_paused_clock(async {
                after_an_export().await;
                let before = look(&snapshotter).gauge("cachette_entries", &MEMORY);
                backend.set("k", "v".into(), &opts()).await.unwrap();
                after_an_export().await;
                let after = look(&snapshotter).gauge("cachette_entries", &MEMORY);
                (before, after)
            })
        });

        assert_eq!((before, after), (None, Some(1.0)));
    }

    #[test]
    fn the_export_starts_again_under_a_new_runtime_when_its_runtime_ended() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let faults = FaultyBackend::new(memory());
        let in_a_runtime = |backend: &Arc<dyn Backend>| {
            metrics::with_local_recorder(&recorder, || {
                on_a_paused_clock(async {
                    backend.set("k", "v".into(), &opts()).await.unwrap();
                    after_an_export().await;
                })
            });
            look(&snapshotter).gauge("cachette_connection_up", &MEMORY)
        };
        let backend = MetricsLayer::new()
            .export_interval(EVERY)
            .unwrap()
            .layer(faults.clone());

        // Each runtime is dropped at the end of its `block_on`, and its
        // export task with it.
        assert_eq!(in_a_runtime(&backend), Some(1.0));
        assert_eq!(in_a_runtime(&backend), Some(1.0));
        assert_eq!(faults.calls_of("stats"), 2);
    }

    #[test]
    fn without_export_no_figures_are_exported() {
        let (_, metrics) = recorded(|_| async {
            let backend = MetricsLayer::new().export_stats(false).layer(memory());
            backend.set("k", "v".into(), &opts()).await.unwrap();
            after_an_export().await;
            tokio::time::sleep(Duration::from_secs(60)).await;
        });

        assert_eq!(metrics.gauge("cachette_entries", &MEMORY), None);
        assert_eq!(
            metrics.counter("cachette_operations_total", &op("set", "ok")),
            Some(1)
        );
    }

    #[test]
    fn a_zero_export_interval_is_a_config_error_naming_the_option() {
        let error = MetricsLayer::new()
            .export_interval(Duration::ZERO)
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
        assert!(error.to_string().contains("export_interval"), "{error}");
    }
}
