//! Opening backends by URL, and the cache manager.

use std::path::PathBuf;
use std::sync::Arc;

use cachette::manager::CacheManagerConfig;
use cachette::params::redact;
use cachette::{Backend, CacheManager, Error, ErrorKind, KeyTtl, SetOptions, open, schemes};

async fn open_err(url: &str) -> Error {
    match open(url).await {
        Ok(backend) => panic!(
            "`{url}` opened a {} backend; expected an error",
            backend.name()
        ),
        Err(err) => err,
    }
}

/// Opens `url`, expecting a config error whose message contains every one
/// of `needles`.
async fn open_config_error(url: &str, needles: &[&str]) -> Error {
    let err = open_err(url).await;
    assert_config_error(&err, needles);
    err
}

/// Asserts a config error whose message contains every one of `needles`.
fn assert_config_error(err: &Error, needles: &[&str]) {
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    for needle in needles {
        assert!(err.message().contains(needle), "`{needle}` not in: {err}");
    }
}

async fn set(backend: &Arc<dyn Backend>, key: &str) {
    backend
        .set(key, "v".into(), &SetOptions::new())
        .await
        .unwrap();
}

async fn build(toml: &str) -> cachette::Result<CacheManager> {
    CacheManager::from_toml_str(toml)?.build().await
}

async fn manager(toml: &str) -> CacheManager {
    build(toml).await.unwrap()
}

fn manager_err(result: cachette::Result<CacheManager>) -> Error {
    match result {
        Ok(manager) => panic!("expected an error, got a manager of {:?}", manager.names()),
        Err(err) => err,
    }
}

// --- open: errors ---

#[tokio::test]
async fn unparseable_url_is_a_config_error() {
    open_config_error("not a url", &["cannot parse the URL `not a url`"]).await;
}

#[tokio::test]
async fn unknown_scheme_is_named_with_the_known_schemes() {
    open_config_error(
        "foo://somewhere",
        &[
            "unknown scheme `foo`",
            "known schemes: memory, file, redb, redis",
        ],
    )
    .await;
}

#[tokio::test]
async fn unknown_scheme_close_to_a_known_one_gets_a_suggestion() {
    open_config_error(
        "memroy://",
        &["unknown scheme `memroy`", "did you mean `memory`?"],
    )
    .await;
}

#[cfg(not(feature = "postgres"))]
#[tokio::test]
async fn scheme_without_its_feature_says_which_feature_to_enable() {
    open_config_error(
        "postgres://localhost:5432/test",
        &["the `postgres` backend is not compiled in; enable the cargo feature `postgres`"],
    )
    .await;
}

#[tokio::test]
async fn every_disabled_scheme_names_its_feature() {
    for info in schemes().into_iter().filter(|info| !info.enabled) {
        open_config_error(
            &format!("{}://localhost/x", info.scheme),
            &[&format!("enable the cargo feature `{}`", info.feature)],
        )
        .await;
    }
}

#[cfg(not(feature = "postgres"))]
#[tokio::test]
async fn not_compiled_in_error_redacts_the_password() {
    let err = open_config_error(
        "postgres://user:secret@host/db",
        &["not compiled in", "postgres://user:***@host/db"],
    )
    .await;
    assert!(!err.to_string().contains("secret"), "{err}");
    assert!(!format!("{err:?}").contains("secret"), "{err:?}");
}

#[tokio::test]
async fn unparseable_url_error_redacts_the_password() {
    let err = open_config_error("redis://user:secret@host:notaport", &["cannot parse"]).await;
    assert!(!err.to_string().contains("secret"), "{err}");
}

#[tokio::test]
async fn unknown_parameter_is_named_with_the_expected_ones() {
    open_config_error(
        "memory://?max_entires=10",
        &[
            "unknown parameter `max_entires` for memory://",
            "expected one of max_entries, max_bytes, policy, default_ttl,",
            "shards, purge_interval, max_key_len;",
            "did you mean `max_entries`?",
        ],
    )
    .await;
}

#[tokio::test]
async fn non_integer_value_names_the_parameter_and_the_value() {
    open_config_error(
        "memory://?max_entries=ten",
        &["parameter `max_entries`: expected an integer, got `ten`"],
    )
    .await;
}

#[tokio::test]
async fn repeated_parameter_is_an_error() {
    open_config_error(
        "memory://?max_entries=10&max_entries=20",
        &["parameter `max_entries` is given more than once"],
    )
    .await;
}

#[tokio::test]
async fn max_bytes_with_an_unknown_unit_is_an_error() {
    open_config_error(
        "memory://?max_bytes=64MiBs",
        &["parameter `max_bytes`", "got `64MiBs`"],
    )
    .await;
}

#[tokio::test]
async fn malformed_duration_is_an_error() {
    open_config_error(
        "memory://?default_ttl=soon",
        &[
            "parameter `default_ttl`",
            "expected a duration",
            "got `soon`",
        ],
    )
    .await;
}

#[tokio::test]
async fn unknown_policy_is_an_error() {
    open_config_error(
        "memory://?policy=random",
        &["parameter `policy`", "unknown eviction policy `random`"],
    )
    .await;
}

#[tokio::test]
async fn zero_max_entries_comes_through_from_the_builder() {
    let err = open_config_error(
        "memory://?max_entries=0",
        &["max_entries must be at least 1"],
    )
    .await;
    assert_eq!(err.backend(), "memory");
}

#[tokio::test]
async fn shards_that_are_not_a_power_of_two_come_through_from_the_builder() {
    open_config_error("memory://?shards=3", &["shards must be a power of two"]).await;
}

#[tokio::test]
async fn zero_purge_interval_comes_through_from_the_builder() {
    open_config_error(
        "memory://?purge_interval=0s",
        &["purge_interval must be greater than zero"],
    )
    .await;
}

#[tokio::test]
async fn memory_url_with_a_host_is_an_error() {
    open_config_error(
        "memory://localhost?max_entries=1",
        &["memory:// takes no host"],
    )
    .await;
}

// --- open: memory parameters applied ---

#[tokio::test]
async fn memory_url_without_parameters_opens_an_unbounded_cache() {
    let cache = open("memory://").await.unwrap();
    assert_eq!(cache.name(), "memory");
    for i in 0..1000 {
        set(&cache, &format!("k{i}")).await;
    }
    assert_eq!(cache.stats().await.unwrap().entries, 1000);
}

#[tokio::test]
async fn max_entries_bounds_the_number_of_entries() {
    let cache = open("memory://?max_entries=2").await.unwrap();
    for key in ["a", "b", "c"] {
        set(&cache, key).await;
    }
    assert!(cache.stats().await.unwrap().entries <= 2);
}

#[tokio::test]
async fn max_bytes_with_a_unit_bounds_the_bytes() {
    let cache = open("memory://?max_bytes=2kib&shards=1").await.unwrap();
    for i in 0..100 {
        cache
            .set(&format!("k{i}"), vec![0u8; 100].into(), &SetOptions::new())
            .await
            .unwrap();
    }
    let stats = cache.stats().await.unwrap();
    assert!(stats.bytes <= 2048, "{} bytes stored", stats.bytes);
    assert!(stats.evictions > 0);
}

/// In a cache of two entries under `policy`: writes `a` and `b`, reads `a`,
/// writes `c`; answers whether `a` and `b` are still there.
async fn a_and_b_left_after_reading_a(policy: &str) -> (bool, bool) {
    let url = format!("memory://?max_entries=2&shards=1&policy={policy}");
    let cache = open(&url).await.unwrap();
    set(&cache, "a").await;
    set(&cache, "b").await;
    cache.get("a").await.unwrap();
    set(&cache, "c").await;
    (
        cache.exists("a").await.unwrap(),
        cache.exists("b").await.unwrap(),
    )
}

#[tokio::test]
async fn policy_lru_keeps_the_entry_read_most_recently() {
    assert_eq!(a_and_b_left_after_reading_a("lru").await, (true, false));
}

#[tokio::test]
async fn policy_fifo_evicts_the_oldest_entry_even_if_read() {
    assert_eq!(a_and_b_left_after_reading_a("FIFO").await, (false, true));
}

#[tokio::test]
async fn default_ttl_applies_to_entries_written_without_a_ttl() {
    let cache = open("memory://?default_ttl=5m").await.unwrap();
    set(&cache, "k").await;
    match cache.ttl("k").await.unwrap() {
        KeyTtl::ExpiresIn(left) => {
            assert!(left.as_secs() > 290 && left.as_secs() <= 300, "{left:?}")
        }
        other => panic!("expected an expiring key, got {other:?}"),
    }
}

#[tokio::test]
async fn without_default_ttl_entries_are_persistent() {
    let cache = open("memory://").await.unwrap();
    set(&cache, "k").await;
    assert_eq!(cache.ttl("k").await.unwrap(), KeyTtl::Persistent);
}

#[tokio::test]
async fn max_key_len_limits_keys() {
    let cache = open("memory://?max_key_len=4").await.unwrap();
    assert_eq!(cache.capabilities().max_key_len, 4);
    let err = cache
        .set("12345", "v".into(), &SetOptions::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

#[tokio::test]
async fn lib_example_url_opens() {
    let cache = open("memory://?max_entries=10000&policy=s3fifo")
        .await
        .unwrap();
    assert_eq!(cache.name(), "memory");
}

// --- schemes and redact ---

#[test]
fn schemes_name_their_features_and_are_enabled_only_when_compiled_in() {
    /// Whether this test binary was built with the feature.
    fn compiled(feature: &str) -> bool {
        (feature == "memory" && cfg!(feature = "memory"))
            || (feature == "file" && cfg!(feature = "file"))
            || (feature == "redb" && cfg!(feature = "redb"))
            || (feature == "redis" && cfg!(feature = "redis"))
            || (feature == "memcached" && cfg!(feature = "memcached"))
            || (feature == "postgres" && cfg!(feature = "postgres"))
            || (feature == "near" && cfg!(feature = "near"))
            || (feature == "tiered" && cfg!(feature = "tiered"))
    }
    let all = schemes();
    let expected = [
        ("memory", "memory"),
        ("file", "file"),
        ("redb", "redb"),
        ("redis", "redis"),
        ("rediss", "redis"),
        ("redis+unix", "redis"),
        ("redis+cluster", "redis"),
        ("redis+sentinel", "redis"),
        ("memcached", "memcached"),
        ("memcached+tls", "memcached"),
        ("memcached+unix", "memcached"),
        ("postgres", "postgres"),
        ("postgresql", "postgres"),
        ("tiered", "tiered"),
        ("near+redis", "near"),
        ("near+rediss", "near"),
    ];
    for (scheme, feature) in expected {
        let info = all
            .iter()
            .find(|info| info.scheme == scheme)
            .unwrap_or_else(|| panic!("no scheme `{scheme}`"));
        assert_eq!(info.feature, feature);
        assert!(!info.enabled || compiled(feature), "{info:?}");
        assert_eq!(info.capabilities.is_some(), info.enabled, "{info:?}");
    }
    assert_eq!(
        all.iter()
            .find(|info| info.scheme == "memcached")
            .is_some_and(|info| info.enabled),
        cfg!(feature = "memcached")
    );
    let postgres = all.iter().find(|info| info.scheme == "postgres").unwrap();
    assert_eq!(postgres.enabled, cfg!(feature = "postgres"), "{postgres:?}");
    let memory = all.iter().find(|info| info.scheme == "memory").unwrap();
    assert!(memory.enabled && memory.capabilities.is_some());
}

#[test]
fn tiered_is_compiled_in_exactly_when_its_feature_is_on() {
    let tiered = schemes()
        .into_iter()
        .find(|info| info.scheme == "tiered")
        .expect("tiered is listed");
    assert_eq!(tiered.enabled, cfg!(feature = "tiered"), "{tiered:?}");
    assert_eq!(tiered.capabilities.is_some(), tiered.enabled, "{tiered:?}");
}

#[cfg(feature = "tiered")]
#[tokio::test]
async fn a_tiered_url_says_to_use_the_toml_form() {
    open_config_error(
        "tiered://?l1=memory://",
        &["a tiered cache has no URL form", "[caches.main]", "l1 = "],
    )
    .await;
}

#[cfg(feature = "near")]
#[tokio::test]
async fn a_typo_on_a_wrapped_scheme_names_that_scheme_and_suggests_the_nearest() {
    let err = open_config_error(
        "near+redis://127.0.0.1?local_max_entrie=10",
        &[
            "unknown parameter `local_max_entrie` for near+redis://",
            "local_max_entries",
            "prefix",
            "did you mean `local_max_entries`?",
        ],
    )
    .await;
    assert_eq!(err.backend(), "near");
}

#[tokio::test]
async fn every_scheme_names_itself_in_an_unknown_parameter_error() {
    for info in schemes().into_iter().filter(|info| info.enabled) {
        let url = match info.scheme {
            "tiered" => continue,
            "file" | "redb" | "object+file" => {
                format!("{}:///tmp/cachette-never-opened?bogus=1", info.scheme)
            }
            "redis+unix" | "memcached+unix" => {
                format!("{}:///tmp/cachette.sock?bogus=1", info.scheme)
            }
            "redis+sentinel" => "redis+sentinel://127.0.0.1/master?bogus=1".to_owned(),
            "memory" => "memory://?bogus=1".to_owned(),
            scheme => format!("{scheme}://127.0.0.1?bogus=1"),
        };
        open_config_error(
            &url,
            &[&format!("unknown parameter `bogus` for {}://", info.scheme)],
        )
        .await;
    }
}

#[tokio::test]
async fn flags_read_alike_in_every_scheme() {
    // `on`/`off` and `yes`/`no` are flags everywhere, not only in file://.
    #[cfg(feature = "redis")]
    open_config_error(
        "redis://127.0.0.1:1/0?tags=maybe",
        &["parameter `tags`", "1/0, yes/no, on/off"],
    )
    .await;
    #[cfg(feature = "file")]
    open_config_error(
        "file:///tmp/x?fsync=maybe",
        &["parameter `fsync`", "1/0, yes/no, on/off"],
    )
    .await;
}

#[cfg(feature = "file")]
#[tokio::test]
async fn key_limits_are_byte_sizes_in_every_scheme() {
    let dir = std::env::temp_dir().join(format!("cachette-limits-{}", std::process::id()));
    let cache = open(&format!("file://{}?max_key_len=1KiB", dir.display()))
        .await
        .unwrap();
    assert_eq!(cache.capabilities().max_key_len, 1024);
    drop(cache);
    let _ = std::fs::remove_dir_all(&dir);
    let cache = open("memory://?max_key_len=1KiB").await.unwrap();
    assert_eq!(cache.capabilities().max_key_len, 1024);
}

#[test]
fn redact_replaces_the_password_with_stars() {
    assert_eq!(
        redact("redis://user:secret@host:6379/0"),
        "redis://user:***@host:6379/0"
    );
}

// --- manager: configuration ---

const TWO_CACHES: &str = r#"
default = "main"

[caches.main]
url = "memory://?max_entries=10000"

[caches.sessions]
url = "memory://?policy=lru&default_ttl=30m"
"#;

#[tokio::test]
async fn toml_with_two_caches_opens_both() {
    let manager = manager(TWO_CACHES).await;
    assert_eq!(manager.names(), ["main", "sessions"]);
    let sessions = manager.get("sessions").unwrap();
    set(&sessions, "s").await;
    assert!(matches!(
        sessions.ttl("s").await.unwrap(),
        KeyTtl::ExpiresIn(_)
    ));
    let main = manager.get("main").unwrap();
    set(&main, "m").await;
    assert_eq!(main.ttl("m").await.unwrap(), KeyTtl::Persistent);
    assert!(!sessions.exists("m").await.unwrap());
}

#[test]
fn toml_unknown_top_level_key_is_an_error() {
    let err = CacheManager::from_toml_str("defualt = \"main\"").unwrap_err();
    assert_config_error(&err, &["unknown field `defualt`", "line 1"]);
}

#[test]
fn toml_unknown_cache_key_is_an_error() {
    let err = CacheManager::from_toml_str("[caches.main]\nurl = \"memory://\"\nttl = \"5m\"\n")
        .unwrap_err();
    assert_config_error(&err, &["unknown field `ttl`", "line 3"]);
}

#[test]
fn toml_syntax_error_names_the_line() {
    let err = CacheManager::from_toml_str("[caches.main]\nurl = memory://\n").unwrap_err();
    assert_config_error(&err, &["cannot parse the cache configuration at line 2"]);
}

#[test]
fn toml_error_never_echoes_a_password() {
    let err =
        CacheManager::from_toml_str("[caches]\nmain = \"redis://user:secret@host\"\n").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(!err.to_string().contains("secret"), "{err}");
}

#[test]
fn toml_empty_cache_name_is_an_error() {
    let err = CacheManager::from_toml_str("[caches.\"\"]\nurl = \"memory://\"\n").unwrap_err();
    assert_config_error(&err, &["a cache name is empty"]);
}

/// A file in the temp dir, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &str) -> Self {
        let path = std::env::temp_dir().join(format!("cachette-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test]
async fn config_file_opens_its_caches() {
    let file = TempFile::new("good.toml", TWO_CACHES);
    let manager = CacheManager::from_file(&file.0)
        .unwrap()
        .build()
        .await
        .unwrap();
    assert_eq!(manager.names(), ["main", "sessions"]);
}

#[test]
fn config_file_error_names_the_file_and_the_problem() {
    let file = TempFile::new("bad.toml", "[caches.main]\nurl = 42\n");
    let err = CacheManager::from_file(&file.0).unwrap_err();
    assert_config_error(
        &err,
        &[&file.0.display().to_string(), "line 2", "expected a string"],
    );
}

#[test]
fn missing_config_file_error_names_the_file() {
    let path = std::env::temp_dir().join("cachette-no-such-file.toml");
    let err = CacheManager::from_file(&path).unwrap_err();
    assert_config_error(&err, &["cannot read", &path.display().to_string()]);
}

#[test]
fn config_debug_hides_passwords() {
    let config =
        CacheManager::from_toml_str("[caches.main]\nurl = \"redis://user:secret@host\"\n").unwrap();
    let debug = format!("{config:?}");
    assert!(
        !debug.contains("secret") && debug.contains("redis://user:***@host"),
        "{debug}"
    );
}

// --- manager: environment ---

#[test]
fn env_variable_overrides_the_url_of_a_cache() {
    let config = CacheManager::from_toml_str(TWO_CACHES)
        .unwrap()
        .apply_env_vars([("CACHETTE_CACHES__MAIN__URL", "memory://?max_entries=5")])
        .unwrap();
    assert_eq!(config.caches["main"].url, "memory://?max_entries=5");
    assert_eq!(
        config.caches["sessions"].url,
        "memory://?policy=lru&default_ttl=30m"
    );
}

#[tokio::test]
async fn env_variable_adds_a_new_cache() {
    let manager = CacheManager::from_toml_str(TWO_CACHES)
        .unwrap()
        .apply_env_vars([(
            "CACHETTE_CACHES__USER_PROFILES__URL".to_owned(),
            "memory://".to_owned(),
        )])
        .unwrap()
        .build()
        .await
        .unwrap();
    assert_eq!(manager.names(), ["main", "sessions", "user_profiles"]);
}

#[tokio::test]
async fn env_default_overrides_the_configured_default() {
    let manager = CacheManager::from_toml_str(TWO_CACHES)
        .unwrap()
        .apply_env_vars([("CACHETTE_DEFAULT", "sessions")])
        .unwrap()
        .build()
        .await
        .unwrap();
    assert_eq!(manager.default_name(), Some("sessions"));
}

#[test]
fn env_variable_with_an_unknown_setting_is_an_error() {
    let err = CacheManagerConfig::new()
        .apply_env_vars([("CACHETTE_CACHES__MAIN__URI", "memory://")])
        .unwrap_err();
    assert_config_error(
        &err,
        &["CACHETTE_CACHES__MAIN__URI", "unknown setting `URI`"],
    );
}

#[test]
fn env_variable_without_a_setting_is_an_error() {
    let err = CacheManagerConfig::new()
        .apply_env_vars([("CACHETTE_CACHES__MAIN", "memory://")])
        .unwrap_err();
    assert_config_error(
        &err,
        &[
            "CACHETTE_CACHES__MAIN",
            "expected `CACHETTE_CACHES__<NAME>__URL`",
        ],
    );
}

#[test]
fn env_error_never_echoes_the_value() {
    let err = CacheManagerConfig::new()
        .apply_env_vars([("CACHETTE_CACHES__MAIN__PASSWORD", "secret")])
        .unwrap_err();
    assert!(!err.to_string().contains("secret"), "{err}");
}

#[test]
fn env_ignores_other_variables_and_empty_values() {
    let config = CacheManager::from_toml_str(TWO_CACHES)
        .unwrap()
        .apply_env_vars([
            ("CACHETTE_URL", "redis://elsewhere"),
            ("PATH", "/usr/bin"),
            ("CACHETTE_CACHES__MAIN__URL", ""),
            ("CACHETTE_DEFAULT", ""),
        ])
        .unwrap();
    assert_eq!(config, CacheManager::from_toml_str(TWO_CACHES).unwrap());
}

// --- manager: lookup and default ---

#[tokio::test]
async fn unknown_cache_name_lists_the_known_ones() {
    let manager = manager(TWO_CACHES).await;
    let err = manager.get("sesions").unwrap_err();
    assert_config_error(
        &err,
        &[
            "no cache named `sesions`; known: main, sessions",
            "did you mean `sessions`?",
        ],
    );
}

#[tokio::test]
async fn failing_cache_url_names_the_cache() {
    let err = manager_err(build("[caches.main]\nurl = \"memory://?max_entries=0\"\n").await);
    assert_config_error(&err, &["cache `main`: max_entries must be at least 1"]);
    assert_eq!(err.backend(), "memory");
}

#[tokio::test]
async fn configured_default_is_the_default_cache() {
    let manager = manager(TWO_CACHES).await;
    assert_eq!(manager.default_name(), Some("main"));
    set(&manager.default_cache().unwrap(), "k").await;
    assert!(manager.get("main").unwrap().exists("k").await.unwrap());
}

#[tokio::test]
async fn single_cache_is_the_default_without_being_named() {
    let manager = manager("[caches.only]\nurl = \"memory://\"\n").await;
    assert_eq!(manager.default_name(), Some("only"));
}

#[tokio::test]
async fn cache_named_default_is_the_default_among_several() {
    let toml = "[caches.default]\nurl = \"memory://\"\n[caches.other]\nurl = \"memory://\"\n";
    let manager = manager(toml).await;
    assert_eq!(manager.default_name(), Some("default"));
}

#[tokio::test]
async fn several_caches_without_a_default_have_none() {
    let toml = "[caches.a]\nurl = \"memory://\"\n[caches.b]\nurl = \"memory://\"\n";
    let manager = manager(toml).await;
    assert_eq!(manager.default_name(), None);
    let err = manager.default_cache().unwrap_err();
    assert_config_error(&err, &["there is no default cache", "known: a, b"]);
}

#[tokio::test]
async fn default_naming_a_missing_cache_is_an_error() {
    let toml = "default = \"mian\"\n[caches.main]\nurl = \"memory://\"\n";
    let err = manager_err(build(toml).await);
    assert_config_error(
        &err,
        &["the default cache `mian` is not configured; known: main"],
    );
}

#[tokio::test]
async fn empty_configuration_builds_an_empty_manager() {
    let manager = manager("").await;
    assert!(manager.names().is_empty());
    let err = manager.get("main").unwrap_err();
    assert_config_error(&err, &["no caches are configured"]);
}

// --- manager: builder ---

#[tokio::test]
async fn builder_holds_backends_made_in_code() {
    let main = open("memory://").await.unwrap();
    let manager = CacheManager::builder()
        .add("main", Arc::clone(&main))
        .add("other", open("memory://").await.unwrap())
        .default("main")
        .build()
        .unwrap();
    assert!(Arc::ptr_eq(&manager.get("main").unwrap(), &main));
    assert!(Arc::ptr_eq(&manager.default_cache().unwrap(), &main));
}

#[tokio::test]
async fn builder_rejects_a_name_added_twice() {
    let err = manager_err(
        CacheManager::builder()
            .add("main", open("memory://").await.unwrap())
            .add("main", open("memory://").await.unwrap())
            .build(),
    );
    assert_config_error(&err, &["the cache `main` is added twice"]);
}

#[tokio::test]
async fn close_of_memory_caches_succeeds() {
    let manager = manager(TWO_CACHES).await;
    manager.close().await.unwrap();
}

// --- manager: tiered caches ---

#[cfg(feature = "tiered")]
const TIERED: &str = r#"
[caches.pages]
l1 = "memory://?max_entries=100"
l2 = "memory://"
l1_ttl = "10s"
"#;

#[cfg(feature = "tiered")]
#[tokio::test]
async fn a_tiered_cache_opens_from_toml_over_its_two_layers() {
    let manager = manager(TIERED).await;
    let pages = manager.get("pages").unwrap();
    assert_eq!(pages.name(), "tiered");
    set(&pages, "home").await;
    assert_eq!(pages.get("home").await.unwrap().as_deref(), Some(&b"v"[..]));
    let stats = pages.stats().await.unwrap();
    assert!(
        stats.details.iter().any(|(name, _)| name == "l1_hits"),
        "{stats:?}"
    );
}

#[cfg(feature = "tiered")]
#[tokio::test]
async fn a_tiered_layer_that_fails_names_the_cache_and_the_layer() {
    let toml = "[caches.pages]\nl1 = \"memory://?max_entries=0\"\nl2 = \"memory://\"\n";
    let err = manager_err(build(toml).await);
    assert_config_error(&err, &["cache `pages`: l1: max_entries must be at least 1"]);
}

#[tokio::test]
async fn a_tiered_cache_needs_both_layers_and_no_url() {
    let err = manager_err(build("[caches.pages]\nl1 = \"memory://\"\n").await);
    assert_config_error(&err, &["cache `pages`", "needs both `l1` and `l2`"]);
    let toml = "[caches.pages]\nurl = \"memory://\"\nl1 = \"memory://\"\nl2 = \"memory://\"\n";
    let err = manager_err(build(toml).await);
    assert_config_error(&err, &["either `url` or the keys of a tiered cache"]);
    let err = manager_err(build("[caches.pages]\n").await);
    assert_config_error(&err, &["no `url` is given"]);
}

#[test]
fn an_unknown_cache_key_names_the_valid_ones() {
    let err = CacheManager::from_toml_str("[caches.main]\nl4 = \"memory://\"\n").unwrap_err();
    assert_config_error(
        &err,
        &[
            "unknown field `l4`",
            "`url`",
            "`l1`",
            "`l2`",
            "`l3`",
            "`l1_ttl`",
            "`channel`",
        ],
    );
}

#[test]
fn a_bad_l1_ttl_is_an_error_naming_the_line() {
    let err = CacheManager::from_toml_str("[caches.main]\nl1_ttl = \"soon\"\n").unwrap_err();
    assert_config_error(&err, &["line 2", "expected a duration"]);
}

#[test]
fn env_variables_set_the_keys_of_a_tiered_cache() {
    let config = CacheManagerConfig::new()
        .apply_env_vars([
            ("CACHETTE_CACHES__PAGES__L1", "memory://"),
            ("CACHETTE_CACHES__PAGES__L2", "redis://u:secret@host"),
            ("CACHETTE_CACHES__PAGES__L1_TTL", "5s"),
        ])
        .unwrap();
    let pages = &config.caches["pages"];
    assert_eq!(pages.l1.as_deref(), Some("memory://"));
    assert_eq!(pages.l1_ttl, Some(std::time::Duration::from_secs(5)));
    assert!(!format!("{config:?}").contains("secret"));
    let err = CacheManagerConfig::new()
        .apply_env_vars([("CACHETTE_CACHES__PAGES__L1_TTL", "soon")])
        .unwrap_err();
    assert_config_error(
        &err,
        &["CACHETTE_CACHES__PAGES__L1_TTL", "expected a duration"],
    );
}

#[cfg(all(feature = "tiered", feature = "redis", feature = "testing"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiered_cache_with_a_channel_opens_from_toml() {
    let server = cachette::testing::servers::redis::RedisServer::start();
    let toml = format!(
        "[caches.pages]\nl1 = \"memory://\"\nl2 = \"redis://127.0.0.1:{port}/0?prefix=t:\"\n\
         channel = \"redis://127.0.0.1:{port}/0?name=t:inv&ping_interval=200ms\"\n",
        port = server.port()
    );
    let manager = manager(&toml).await;
    let pages = manager.get("pages").unwrap();
    set(&pages, "home").await;
    assert_eq!(server.cli(&["GET", "t:home"]).trim(), "v");
    let stats = pages.stats().await.unwrap();
    assert!(
        stats.details.iter().any(|(name, _)| name == "published"),
        "{stats:?}"
    );
    manager.close().await.unwrap();
}

// --- manager: the case of cache names ---

#[test]
fn env_variable_overrides_a_cache_whose_toml_name_has_capitals() {
    let config = CacheManager::from_toml_str("[caches.Main]\nurl = \"memory://\"\n")
        .unwrap()
        .apply_env_vars([("CACHETTE_CACHES__MAIN__URL", "memory://?max_entries=5")])
        .unwrap();
    assert_eq!(config.caches.len(), 1, "{config:?}");
    assert_eq!(config.caches["Main"].url, "memory://?max_entries=5");
}

#[tokio::test]
async fn env_default_names_a_cache_without_regard_to_case() {
    let manager = CacheManager::from_toml_str(TWO_CACHES)
        .unwrap()
        .apply_env_vars([("CACHETTE_DEFAULT", "SESSIONS")])
        .unwrap()
        .build()
        .await
        .unwrap();
    assert_eq!(manager.default_name(), Some("sessions"));
}

#[tokio::test]
async fn env_default_names_a_cache_the_environment_adds() {
    let manager = CacheManagerConfig::new()
        .apply_env_vars([
            ("CACHETTE_DEFAULT", "User_Profiles"),
            ("CACHETTE_CACHES__USER_PROFILES__URL", "memory://"),
        ])
        .unwrap()
        .build()
        .await
        .unwrap();
    assert_eq!(manager.names(), ["user_profiles"]);
    assert_eq!(manager.default_name(), Some("user_profiles"));
}

#[test]
fn env_variable_matching_two_names_that_differ_only_in_case_is_an_error() {
    let err = CacheManager::from_toml_str(
        "[caches.Main]\nurl = \"memory://\"\n[caches.MAIN]\nurl = \"memory://\"\n",
    )
    .unwrap()
    .apply_env_vars([("CACHETTE_CACHES__main__URL", "memory://?max_entries=5")])
    .unwrap_err();
    assert_config_error(&err, &["CACHETTE_CACHES__main__URL", "`MAIN`", "`Main`"]);
}

#[test]
fn toml_with_two_unknown_keys_reports_the_first() {
    let err = CacheManager::from_toml_str(
        "[caches.main]\nurl = \"memory://\"\nttl = \"5m\"\nsize = 10\n",
    )
    .unwrap_err();
    assert_config_error(&err, &["unknown field `ttl`", "line 3"]);
}

#[test]
fn toml_with_two_unknown_top_level_keys_reports_the_first() {
    let err = CacheManager::from_toml_str("defualt = \"main\"\ncache = 1\n").unwrap_err();
    assert_config_error(&err, &["unknown field `defualt`", "line 1"]);
}
