//! Extreme durations from URLs, TOML and the environment never panic:
//! each one either works (saturating) or is a `Config` error naming the
//! option.
//!
//! Every parameter of every compiled-in scheme is fed each extreme value
//! (a parameter that is not a duration just refuses it), the TOML
//! `l1_ttl` and the environment's `L1_TTL` too, and a property test feeds
//! random numbers with every unit. The schemes that talk to a server point
//! at a loopback port nothing listens on, so nothing connects.

use std::cell::Cell;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;

use cachette::manager::CacheManagerConfig;
use cachette::{Backend, ErrorKind, SetOptions, schemes};
use proptest::prelude::*;

/// The extreme values every duration option must survive.
const EXTREMES: &[&str] = &[
    "0s",
    "1ns",
    "999us",
    "1ms",
    "36524days",
    "36525days",
    "18446744073709551615s",
    "18446744073709551615ms",
    "99999999999999999999h",
    "584542046090years",
    "18446744073709551615s 999999999ns",
];

thread_local! {
    /// Panics on this thread, in tasks of a current-thread runtime too
    /// (tokio catches those, so the caller would never see them). Per
    /// thread, so that one test's failure is not counted in another's.
    static PANICS: Cell<usize> = const { Cell::new(0) };
}

fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.with(|panics| panics.set(panics.get() + 1));
            previous(info);
        }));
    });
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cachette-durations-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback port nothing listens on (bound, then released).
fn unused_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Whether the scheme talks to a server (Redis, memcached, PostgreSQL).
fn is_remote(scheme: &str) -> bool {
    scheme.contains("redis") || scheme.contains("memcached") || scheme.starts_with("postgres")
}

/// A URL of `scheme` that opens without a server (or fails to connect
/// to a port nothing listens on); `None` for a scheme no URL opens.
fn base_url(scheme: &str, dir: &TempDir) -> Option<String> {
    let port = unused_port();
    let path = dir.0.display();
    Some(match scheme {
        "memory" => "memory://".to_owned(),
        "file" => format!("file://{path}/cache"),
        "redb" => format!("redb://{path}/cache.redb"),
        "object+file" => format!("object+file://{path}/objects"),
        "s3" => format!(
            "s3://bucket/p?endpoint=http://127.0.0.1:{port}&allow_http=true&region=us-east-1"
        ),
        "gs" | "az" => format!("{scheme}://bucket/p"),
        "tiered" => return None,
        "redis+unix" | "memcached+unix" => format!("{scheme}://{path}/no.sock"),
        "redis+cluster" => format!("{scheme}://127.0.0.1:{port},127.0.0.1:{port}"),
        _ if scheme.contains("sentinel") => {
            format!("{scheme}://127.0.0.1:{port},127.0.0.1:{port}/main")
        }
        _ if is_remote(scheme) => format!("{scheme}://127.0.0.1:{port}"),
        _ => format!("{scheme}://"),
    })
}

/// The parameters of a URL, as the error about an unknown one lists them.
async fn parameters(base: &str) -> Vec<String> {
    let separator = if base.contains('?') { '&' } else { '?' };
    let error = match cachette::open(&format!("{base}{separator}zz_no_such=1")).await {
        Ok(backend) => panic!("{base}: an unknown parameter opened a {}", backend.name()),
        Err(error) => error,
    };
    let message = error.message();
    let Some((_, list)) = message.split_once("expected one of ") else {
        panic!("{base}: the error lists no parameters: {error}");
    };
    let list = list.split(';').next().unwrap_or("");
    list.split(", ")
        .map(|name| name.trim().to_owned())
        .collect()
}

/// Opens `url` and uses the backend a little; a panic anywhere fails.
/// A cloud store is only opened: without credentials it would ask the
/// cloud's metadata service, which a test must not wait for.
async fn open_and_use(url: &str) {
    let cloud = ["s3:", "gs:", "az:"]
        .iter()
        .any(|scheme| url.starts_with(scheme));
    match cachette::open(url).await {
        Ok(_) if cloud => {}
        Ok(backend) => use_backend(backend).await,
        Err(error) => assert!(
            matches!(
                error.kind(),
                ErrorKind::Config | ErrorKind::Connection | ErrorKind::Timeout
            ),
            "{url}: {error}"
        ),
    }
}

/// Writes with the default TTL and reads back, giving background tasks
/// (purge loops) a moment to tick.
async fn use_backend(backend: Arc<dyn Backend>) {
    let _ = backend.set("k", "v".into(), &SetOptions::new()).await;
    let _ = backend.get("k").await;
    let _ = backend.ttl("k").await;
    tokio::time::sleep(Duration::from_millis(2)).await;
    let _ = backend.close().await;
}

/// Runs `work` on a fresh current-thread runtime, then asserts that
/// nothing panicked meanwhile.
fn without_panics(what: &str, work: impl std::future::Future<Output = ()>) {
    count_panics();
    let before = PANICS.with(Cell::get);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(work);
    drop(runtime);
    assert_eq!(PANICS.with(Cell::get), before, "{what} panicked");
}

/// Feeds every extreme value to every parameter of the schemes `pick`
/// selects.
fn every_parameter_of(pick: impl Fn(&str) -> bool) {
    for info in schemes().into_iter().filter(|info| info.enabled) {
        if !pick(info.scheme) {
            continue;
        }
        let dir = TempDir::new();
        let Some(base) = base_url(info.scheme, &dir) else {
            continue;
        };
        without_panics(info.scheme, async {
            for name in parameters(&base).await {
                for value in EXTREMES {
                    let encoded = value.replace(' ', "%20");
                    let separator = if base.contains('?') { '&' } else { '?' };
                    open_and_use(&format!("{base}{separator}{name}={encoded}")).await;
                }
            }
        });
    }
}

#[test]
fn extreme_durations_in_local_urls_never_panic() {
    every_parameter_of(|scheme| !is_remote(scheme));
}

/// Redis, memcached and PostgreSQL URLs.
#[test]
fn extreme_durations_in_redis_urls_never_panic() {
    every_parameter_of(is_remote);
}

#[test]
fn a_duration_over_a_hundred_years_is_a_config_error_naming_the_parameter() {
    without_panics("a URL", async {
        for url in [
            "memory://?default_ttl=18446744073709551615s",
            "memory://?purge_interval=99999999999999999999h",
            "memory://?default_ttl=36526days",
        ] {
            let error = match cachette::open(url).await {
                Ok(_) => panic!("{url} opened"),
                Err(error) => error,
            };
            assert_eq!(error.kind(), ErrorKind::Config, "{url}: {error}");
            assert!(error.message().contains("parameter `"), "{url}: {error}");
            assert!(error.message().contains("100 years"), "{url}: {error}");
        }
        assert!(
            cachette::open("memory://?default_ttl=36524days")
                .await
                .is_ok()
        );
    });
}

/// A TOML configuration of one tiered cache whose `l1_ttl` is `value`.
fn tiered_toml(value: &str) -> String {
    format!("[caches.c]\nl1 = \"memory://\"\nl2 = \"memory://\"\nl1_ttl = \"{value}\"\n")
}

#[test]
fn extreme_durations_in_toml_and_the_environment_never_panic() {
    without_panics("the manager", async {
        for value in EXTREMES {
            let from_toml = CacheManagerConfig::from_toml_str(&tiered_toml(value));
            let from_env = CacheManagerConfig::new().apply_env_vars([
                ("CACHETTE_CACHES__C__L1", "memory://"),
                ("CACHETTE_CACHES__C__L2", "memory://"),
                ("CACHETTE_CACHES__C__L1_TTL", value),
            ]);
            let dir = TempDir::new();
            let url = format!(
                "file://{}/c?default_ttl={}",
                dir.0.display(),
                value.replace(' ', "%20")
            );
            let from_url =
                CacheManagerConfig::from_toml_str(&format!("[caches.c]\nurl = \"{url}\"\n"));
            for config in [from_toml, from_env, from_url] {
                let built = match config {
                    Ok(config) => config.build().await,
                    Err(error) => Err(error),
                };
                match built {
                    Ok(manager) => use_backend(manager.get("c").unwrap()).await,
                    Err(error) => assert_eq!(error.kind(), ErrorKind::Config, "{value}: {error}"),
                }
            }
        }
    });
}

/// A duration in some unit, written as users write them.
fn any_duration() -> impl Strategy<Value = String> {
    let units = prop::sample::select(vec![
        "ns", "us", "ms", "s", "m", "min", "h", "d", "days", "w", "months", "y", "years",
    ]);
    (any::<u64>(), units, any::<bool>()).prop_map(|(number, unit, small)| {
        let number = if small { number % 2_000 } else { number };
        format!("{number}{unit}")
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_durations_in_urls_and_toml_never_panic(value in any_duration()) {
        let dir = TempDir::new();
        without_panics(&value, async {
            for url in [
                format!("memory://?default_ttl={value}"),
                format!("memory://?purge_interval={value}"),
                format!("file://{}/f?default_ttl={value}", dir.0.display()),
                format!("redb://{}/r.redb?default_ttl={value}&purge_interval={value}", dir.0.display()),
            ] {
                open_and_use(&url).await;
            }
            if let Ok(config) = CacheManagerConfig::from_toml_str(&tiered_toml(&value))
                && let Ok(manager) = config.build().await
            {
                use_backend(manager.get("c").unwrap()).await;
            }
        });
    }
}
