//! Everything from configuration: a cache's layers and the options of its
//! typed `Cache`, from TOML and the environment.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cachette::cache::{EntryOptions, Postcard, RawBytes};
use cachette::manager::CacheManagerConfig;
use cachette::testing::FaultyBackend;
use cachette::{
    Backend, Cache, CacheManager, DefaultCodec, Error, ErrorKind, KeyTtl, MemoryBackend, open,
};

async fn manager(toml: &str) -> CacheManager {
    CacheManager::from_toml_str(toml)
        .unwrap()
        .build()
        .await
        .unwrap()
}

/// Asserts a config error whose message contains every one of `needles`.
fn assert_config_error(err: &Error, needles: &[&str]) {
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    for needle in needles {
        assert!(err.message().contains(needle), "`{needle}` not in: {err}");
    }
}

fn parse_err(toml: &str) -> Error {
    CacheManager::from_toml_str(toml).unwrap_err()
}

fn env_err(toml: &str, vars: &[(&str, &str)]) -> Error {
    CacheManager::from_toml_str(toml)
        .unwrap()
        .apply_env_vars(vars.iter().copied())
        .unwrap_err()
}

async fn build_err(toml: &str) -> Error {
    match CacheManager::from_toml_str(toml).unwrap().build().await {
        Ok(manager) => panic!("expected an error, got {:?}", manager.names()),
        Err(err) => err,
    }
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("cachette-config-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The remaining TTL, which must be set.
async fn ttl_of<C: cachette::Codec>(cache: &Cache<C>, key: &str) -> Duration {
    match cache.ttl(key).await.unwrap() {
        KeyTtl::ExpiresIn(ttl) => ttl,
        other => panic!("`{key}` has no TTL: {other:?}"),
    }
}

// --- a cache from TOML alone ---

#[tokio::test]
async fn a_cache_with_layers_and_typed_options_opens_from_toml_alone() {
    let dir = TempDir::new("toml-alone");
    let url = format!("file://{}", dir.0.display());
    let manager = manager(&format!(
        r#"
        [caches.users]
        url = "{url}"

        [caches.users.layers]
        prefix = "app:"
        timeout = {{ all = "5s" }}
        retry = {{ max_attempts = 2 }}
        circuit_breaker = {{ failure_threshold = 10, open_duration = "1s" }}
        tracing = {{ record_keys = true }}

        [caches.users.cache]
        namespace = "users"
        ttl = "10m"
        negative_ttl = "30s"
        "#
    ))
    .await;
    let users = manager.cache::<DefaultCodec>("users").await.unwrap();
    users
        .set("user:1", &"Ada".to_owned(), &EntryOptions::new())
        .await
        .unwrap();

    // The namespace and the prefix are in the stored key.
    let raw = open(&url).await.unwrap();
    assert!(raw.exists("app:users:v0:user:1").await.unwrap());
    // The manager's backend is the one in the layers: no prefix to see.
    assert!(
        manager
            .get("users")
            .unwrap()
            .exists("users:v0:user:1")
            .await
            .unwrap()
    );

    // The TTL came from the configuration.
    let ttl = ttl_of(&users, "user:1").await;
    assert!(
        ttl > Duration::from_secs(9 * 60) && ttl <= Duration::from_secs(600),
        "{ttl:?}"
    );

    // The negative TTL too: a "not found" is cached, the loader runs once.
    let loads = Arc::new(AtomicUsize::new(0));
    for _ in 0..2 {
        let loads = Arc::clone(&loads);
        let found: Option<String> = users
            .get_or_load(
                "user:404",
                move |_ctx| async move {
                    loads.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, std::io::Error>(None)
                },
                &EntryOptions::new(),
            )
            .await
            .unwrap();
        assert_eq!(found, None);
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    manager.close().await.unwrap();
}

#[tokio::test]
async fn a_soft_ttl_from_the_configuration_turns_envelopes_on() {
    let manager = manager(
        r#"
        [caches.plain]
        url = "memory://"
        [caches.soft]
        url = "memory://"
        cache = { soft_ttl = "1m", ttl = "10m" }
        "#,
    )
    .await;
    let plain_bytes = cachette::Codec::encode(&Postcard, "Ada").unwrap();
    for (name, enveloped) in [("plain", false), ("soft", true)] {
        let cache = manager.cache::<DefaultCodec>(name).await.unwrap();
        cache.set("k", &"Ada", &EntryOptions::new()).await.unwrap();
        let stored = manager
            .get(name)
            .unwrap()
            .get("cachette:v0:k")
            .await
            .unwrap()
            .expect("the entry is stored under the default namespace");
        assert_eq!(
            stored[..] != plain_bytes[..],
            enveloped,
            "{name}: {stored:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_hard_timeout_from_the_configuration_cancels_a_slow_load() {
    let manager = manager(
        r#"
        [caches.slow]
        url = "memory://"
        cache = { hard_timeout = "100ms" }
        "#,
    )
    .await;
    let cache = manager.cache::<DefaultCodec>("slow").await.unwrap();
    let err = cache
        .get_or_load(
            "k",
            |_ctx| async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                Ok::<_, std::io::Error>(Some(1u8))
            },
            &EntryOptions::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
}

#[cfg(feature = "lz4")]
#[tokio::test]
async fn compression_from_the_configuration_shrinks_large_values() {
    let manager = manager(
        r#"
        [caches.pages]
        url = "memory://"
        cache = { namespace = "pages", compress_above = "1KiB" }
        "#,
    )
    .await;
    let cache = manager.cache::<DefaultCodec>("pages").await.unwrap();
    let page = "<p>hello</p>".repeat(1000);
    cache
        .set("home", &page, &EntryOptions::new())
        .await
        .unwrap();
    let stored = manager
        .get("pages")
        .unwrap()
        .get("pages:v0:home")
        .await
        .unwrap()
        .unwrap();
    assert!(
        stored.len() < page.len() / 4,
        "{} bytes stored",
        stored.len()
    );
    assert_eq!(cache.get::<String>("home").await.unwrap(), Some(page));
}

#[tokio::test]
async fn the_typed_cache_of_a_name_is_built_once_and_shared() {
    let manager = manager("[caches.main]\nurl = \"memory://\"").await;
    let first = manager.cache::<DefaultCodec>("main").await.unwrap();
    first.set("k", &1u32, &EntryOptions::new()).await.unwrap();
    let second = manager.cache::<DefaultCodec>("main").await.unwrap();
    assert_eq!(second.get::<u32>("k").await.unwrap(), Some(1));
    // One cache: the counters are shared.
    assert_eq!(first.stats().hits, 1);
}

#[tokio::test]
async fn a_cache_from_a_url_has_the_default_options() {
    let cache = Cache::from_url("memory://?default_ttl=1m").await.unwrap();
    cache.set("k", &7u8, &EntryOptions::new()).await.unwrap();
    assert_eq!(cache.namespace(), "cachette");
    assert!(ttl_of(&cache, "k").await <= Duration::from_secs(60));
    let err = Cache::from_url("memroy://").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
}

// --- the codec ---

#[tokio::test]
async fn a_codec_other_than_the_configured_one_is_an_error_naming_both() {
    let manager = manager(
        r#"
        [caches.blobs]
        url = "memory://"
        cache = { codec = "raw" }
        "#,
    )
    .await;
    let err = manager.cache::<DefaultCodec>("blobs").await.unwrap_err();
    assert_config_error(&err, &["cache `blobs`", "`raw`", "`postcard`"]);
    let blobs = manager.cache::<RawBytes>("blobs").await.unwrap();
    blobs.set("k", &"x", &EntryOptions::new()).await.unwrap();
}

#[tokio::test]
async fn an_unknown_codec_name_is_an_error_naming_the_valid_ones() {
    let err = parse_err("[caches.a]\nurl = \"memory://\"\ncache = { codec = \"cbor\" }");
    assert_config_error(
        &err,
        &[
            "caches.a.cache.codec",
            "`cbor`",
            "`postcard`",
            "`json`",
            "`msgpack`",
            "`raw`",
        ],
    );
}

// --- the layers, on a backend that fails ---

/// A faulty memory backend, and the same in the layers that `layers`
/// (the body of a `[caches.a.layers]` table) configures.
fn faulty_in(layers: &str) -> (Arc<FaultyBackend>, Arc<dyn Backend>) {
    let toml = format!("[caches.a]\nurl = \"memory://\"\n[caches.a.layers]\n{layers}");
    let config = CacheManagerConfig::from_toml_str(&toml).unwrap();
    let faulty = FaultyBackend::new(Arc::new(MemoryBackend::default()));
    let backend = config.caches["a"].layers.wrap("a", faulty.clone()).unwrap();
    (faulty, backend)
}

#[tokio::test(start_paused = true)]
async fn a_configured_retry_layer_retries_temporary_failures() {
    let (faulty, backend) =
        faulty_in(r#"retry = { max_attempts = 3, initial_backoff = "5ms", max_backoff = "20ms" }"#);
    faulty.fail_next(2, ErrorKind::Connection);
    assert_eq!(backend.get("k").await.unwrap(), None);
    assert_eq!(faulty.calls_of("get"), 3);

    faulty.fail_next(3, ErrorKind::Connection);
    let err = backend.get("k").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection);
}

#[tokio::test(start_paused = true)]
async fn a_configured_timeout_layer_times_out_a_stalled_backend() {
    let (faulty, backend) = faulty_in(r#"timeout = { all = "1s", reads = "250ms" }"#);
    faulty.set_delay(Some(Duration::from_secs(10)));
    let err = backend.get("k").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(err.message().contains("250ms"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_configured_circuit_breaker_opens_after_its_threshold() {
    let (faulty, backend) =
        faulty_in(r#"circuit_breaker = { failure_threshold = 2, open_duration = "1m" }"#);
    faulty.fail_with(Some(ErrorKind::Connection));
    for _ in 0..2 {
        backend.get("k").await.unwrap_err();
    }
    let calls = faulty.calls();
    backend.get("k").await.unwrap_err();
    assert_eq!(faulty.calls(), calls, "an open circuit fails fast");
}

#[tokio::test]
async fn the_layers_are_applied_in_the_stack_order_whatever_the_file_order() {
    // Retry below the breaker: one failed operation after its retries
    // counts once, so a threshold of 2 is not reached by one call that
    // failed three attempts.
    let (faulty, backend) = faulty_in(
        r#"
        circuit_breaker = { failure_threshold = 2 }
        retry = { max_attempts = 3, initial_backoff = "1ms", max_backoff = "1ms" }
        "#,
    );
    faulty.fail_next(3, ErrorKind::Connection);
    backend.get("k").await.unwrap_err();
    assert_eq!(faulty.calls_of("get"), 3);
    assert_eq!(
        backend.get("k").await.unwrap(),
        None,
        "the circuit is closed"
    );
}

#[cfg(feature = "metrics")]
#[tokio::test]
async fn a_configured_metrics_layer_labels_the_series_with_the_cache_name() {
    use metrics_util::debugging::DebuggingRecorder;

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // This thread's recorder: the test's runtime runs on this thread.
    let _recording = metrics::set_default_local_recorder(&recorder);
    let manager = manager(
        r#"
        [caches.sessions]
        url = "memory://"
        layers = { metrics = {} }
        [caches.pages]
        url = "memory://"
        layers = { metrics = { cache_label = "html", backend_label = "mem", export_stats = false } }
        "#,
    )
    .await;
    for name in ["sessions", "pages"] {
        manager.get(name).unwrap().get("k").await.unwrap();
    }
    let labels: Vec<(String, String)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == "cachette_operations_total")
        .map(|(key, ..)| {
            let label = |name: &str| {
                key.key()
                    .labels()
                    .find(|label| label.key() == name)
                    .map(|label| label.value().to_owned())
                    .unwrap_or_default()
            };
            (label("cache"), label("backend"))
        })
        .collect();
    assert!(
        labels.contains(&("sessions".into(), "memory".into())),
        "{labels:?}"
    );
    assert!(
        labels.contains(&("html".into(), "mem".into())),
        "{labels:?}"
    );
    assert_eq!(labels.len(), 2, "{labels:?}");
}

// --- the environment ---

#[tokio::test]
async fn environment_settings_at_every_level_win_over_the_file() {
    let toml = r#"
        [caches.users]
        url = "memory://"
        [caches.users.layers]
        retry = { max_attempts = 2, initial_backoff = "1ms" }
        [caches.users.cache]
        namespace = "users"
        ttl = "10m"
    "#;
    let config = CacheManager::from_toml_str(toml)
        .unwrap()
        .apply_env_vars([
            ("CACHETTE_CACHES__USERS__LAYERS__RETRY__MAX_ATTEMPTS", "5"),
            ("cachette_caches__users__cache__ttl", "5m"),
            ("CACHETTE_CACHES__USERS__LAYERS__TRACING", "true"),
            ("CACHETTE_CACHES__USERS__LAYERS__TIMEOUT__READS", "2s"),
            (
                "CACHETTE_CACHES__USERS__CACHE__DISTRIBUTED_LOCK__LOCK_TTL",
                "5s",
            ),
            (
                "CACHETTE_CACHES__USERS__CACHE__DISTRIBUTED_LOCK__WAIT",
                "1s",
            ),
            ("CACHETTE_CACHES__USERS__CACHE__CODEC", "postcard"),
        ])
        .unwrap();
    let users = &config.caches["users"];
    let retry = users.layers.retry.as_ref().unwrap();
    assert_eq!(retry.max_attempts, Some(5));
    // What the environment does not set is kept.
    assert_eq!(retry.initial_backoff, Some(Duration::from_millis(1)));
    assert_eq!(users.cache.namespace.as_deref(), Some("users"));
    assert_eq!(users.cache.ttl, Some(Duration::from_secs(300)));
    assert!(users.layers.tracing.is_some());
    assert_eq!(
        users.layers.timeout.as_ref().unwrap().reads,
        Some(Duration::from_secs(2))
    );

    let manager = config.build().await.unwrap();
    let cache = manager.cache::<Postcard>("users").await.unwrap();
    cache.set("k", &1u8, &EntryOptions::new()).await.unwrap();
    assert!(ttl_of(&cache, "k").await <= Duration::from_secs(300));
}

#[tokio::test]
async fn the_environment_adds_a_cache_with_layers_and_options() {
    let manager = CacheManagerConfig::new()
        .apply_env_vars([
            ("CACHETTE_CACHES__JOBS__URL", "memory://"),
            ("CACHETTE_CACHES__JOBS__CACHE__NAMESPACE", "jobs"),
            ("CACHETTE_CACHES__JOBS__LAYERS__PREFIX", "q:"),
        ])
        .unwrap()
        .build()
        .await
        .unwrap();
    let jobs = manager.cache::<DefaultCodec>("jobs").await.unwrap();
    assert_eq!(jobs.namespace(), "jobs");
}

#[test]
fn the_environment_turns_a_layer_off() {
    let toml = "[caches.a]\nurl = \"memory://\"\nlayers = { retry = { max_attempts = 4 } }";
    let config = CacheManager::from_toml_str(toml)
        .unwrap()
        .apply_env_vars([("CACHETTE_CACHES__A__LAYERS__RETRY", "false")])
        .unwrap();
    assert!(config.caches["a"].layers.retry.is_none());
    // Turning on a layer that has options keeps them.
    let config = CacheManager::from_toml_str(toml)
        .unwrap()
        .apply_env_vars([("CACHETTE_CACHES__A__LAYERS__RETRY", "true")])
        .unwrap();
    let retry = config.caches["a"].layers.retry.as_ref().unwrap();
    assert_eq!(retry.max_attempts, Some(4));
}

#[test]
fn an_unknown_environment_setting_names_the_valid_ones_at_its_level() {
    let toml = "[caches.a]\nurl = \"memory://\"";
    let err = env_err(
        toml,
        &[("CACHETTE_CACHES__A__LAYERS__RETRY__ATTEMPTS", "5")],
    );
    assert_config_error(
        &err,
        &[
            "CACHETTE_CACHES__A__LAYERS__RETRY__ATTEMPTS",
            "unknown setting `LAYERS__RETRY__ATTEMPTS`",
            "MAX_ATTEMPTS, INITIAL_BACKOFF, MAX_BACKOFF",
        ],
    );
    let err = env_err(toml, &[("CACHETTE_CACHES__A__CACHE__TTTL", "")]);
    assert_config_error(&err, &["`CACHE__TTTL`", "NAMESPACE, TTL, SOFT_TTL"]);
    let err = env_err(toml, &[("CACHETTE_CACHES__A__LAYER__RETRY", "true")]);
    assert_config_error(
        &err,
        &["`LAYER`", "URL, L1, L2, L3, L1_TTL, CHANNEL, LAYERS, CACHE"],
    );
    let err = env_err(toml, &[("CACHETTE_CACHES__A__LAYERS", "x")]);
    assert_config_error(&err, &["`LAYERS` is a group", "PREFIX, TIMEOUT, RETRY"]);
    let err = env_err(toml, &[("CACHETTE_CACHES__A__CACHE__TTL__X", "1s")]);
    assert_config_error(&err, &["`CACHE__TTL` has no settings under it"]);
}

#[test]
fn a_malformed_environment_value_names_the_form_and_not_the_value() {
    let toml = "[caches.a]\nurl = \"memory://\"";
    let cases = [
        (
            "CACHETTE_CACHES__A__CACHE__TTL",
            "ten minutes",
            "a duration",
        ),
        (
            "CACHETTE_CACHES__A__LAYERS__RETRY__MAX_ATTEMPTS",
            "many",
            "a whole number",
        ),
        (
            "CACHETTE_CACHES__A__LAYERS__TRACING__RECORD_KEYS",
            "yes please",
            "`true` or `false`",
        ),
        (
            "CACHETTE_CACHES__A__CACHE__COMPRESS_ABOVE",
            "lots",
            "a byte size",
        ),
        (
            "CACHETTE_CACHES__A__CACHE__CODEC",
            "cbor",
            "one of postcard, json, msgpack, raw",
        ),
        (
            "CACHETTE_CACHES__A__LAYERS__METRICS",
            "maybe",
            "`true` or `false`",
        ),
    ];
    for (variable, value, expected) in cases {
        let err = env_err(toml, &[(variable, value)]);
        assert_config_error(&err, &[variable, expected]);
        assert!(!err.message().contains(value), "{err}");
    }
}

// --- unknown keys and bad values in TOML ---

#[test]
fn an_unknown_key_at_every_level_is_named_with_the_valid_ones() {
    let cases = [
        (
            "[caches.a]\nurl = \"memory://\"\n[caches.a.layers]\nretry = { attempts = 3 }",
            &[
                "`attempts`",
                "`max_attempts`, `initial_backoff`, `max_backoff`",
                "line 4",
            ][..],
        ),
        (
            "[caches.a]\nurl = \"memory://\"\n[caches.a.layers]\nlogging = {}",
            &[
                "`logging`",
                "`prefix`, `timeout`, `retry`, `circuit_breaker`, `metrics`, `tracing`",
            ],
        ),
        (
            "[caches.a]\nurl = \"memory://\"\n[caches.a.cache]\nttl = \"1m\"\nsoft_tl = \"1s\"",
            &["`soft_tl`", "`namespace`, `ttl`, `soft_ttl`", "line 5"],
        ),
        (
            "[caches.a]\nurl = \"memory://\"\ncache = { distributed_lock = { ttl = \"1s\" } }",
            &["`ttl`", "`lock_ttl`, `wait`"],
        ),
        (
            "[caches.a]\nurl = \"memory://\"\noptions = {}",
            &["`options`", "`url`", "`layers`", "`cache`"],
        ),
        (
            "[caches.a]\nurl = \"memory://\"\n[caches.a.layers]\ntimeout = { operation = \"1s\" }",
            &["`operation`", "`all`, `reads`, `writes`, `scans`"],
        ),
    ];
    for (toml, needles) in cases {
        assert_config_error(&parse_err(toml), needles);
    }
}

#[test]
fn a_bad_value_in_the_file_names_the_setting() {
    let cases = [
        (
            "[caches.a]\nurl = \"memory://\"\n[caches.a.cache]\nttl = \"ten\"",
            &["`caches.a.cache.ttl`", "a duration", "line 4"][..],
        ),
        (
            "[caches.a]\nurl = \"memory://\"\nlayers = { retry = { max_attempts = \"3\" } }",
            &["`caches.a.layers.retry.max_attempts`"],
        ),
        (
            "[caches.a]\nurl = \"memory://\"\ncache = { compress_above = -1 }",
            &["`caches.a.cache.compress_above`", "a byte size"],
        ),
    ];
    for (toml, needles) in cases {
        assert_config_error(&parse_err(toml), needles);
    }
}

#[tokio::test]
async fn option_mistakes_fail_when_the_manager_is_built() {
    let cases = [
        (
            "cache = { ttl = \"1m\", soft_ttl = \"2m\" }",
            &["cache `a`", "soft_ttl"][..],
        ),
        (
            "cache = { namespace = \"a:b\" }",
            &["cache `a`", "namespace"],
        ),
        (
            "cache = { distributed_lock = { wait = \"1s\" } }",
            &["lock_ttl"],
        ),
        (
            "layers = { retry = { max_attempts = 0 } }",
            &["cache `a`", "max_attempts"],
        ),
        (
            "layers = { retry = { initial_backoff = \"2s\" } }",
            &["initial backoff", "exceeds its maximum"],
        ),
        (
            "layers = { timeout = { reads = \"0s\" } }",
            &["timeout of reads is zero"],
        ),
        (
            "layers = { circuit_breaker = { failure_threshold = 0 } }",
            &["failure_threshold"],
        ),
    ];
    for (line, needles) in cases {
        let err = build_err(&format!("[caches.a]\nurl = \"memory://\"\n{line}")).await;
        assert_config_error(&err, needles);
    }
}

#[test]
fn the_debug_form_of_a_cache_shows_its_layers_and_options_without_secrets() {
    let config = CacheManager::from_toml_str(
        r#"
        [caches.a]
        url = "redis://app:s3cret@127.0.0.1:6390/0"
        layers = { retry = { max_attempts = 4 } }
        cache = { namespace = "users" }
        "#,
    )
    .unwrap();
    let shown = format!("{config:?}");
    assert!(shown.contains("max_attempts: Some(4)"), "{shown}");
    assert!(shown.contains("\"users\""), "{shown}");
    assert!(!shown.contains("s3cret"), "{shown}");
}
