//! The Redis backend against real `redis-server` processes started by
//! `cachette::testing::servers::redis`.
#![cfg(all(feature = "redis", feature = "testing"))]

use std::sync::Arc;
use std::time::{Duration, Instant};

use cachette::backends::redis::RedisBackend;
use cachette::testing::run_conformance;
use cachette::testing::servers::fresh_dir;
use cachette::testing::servers::redis::RedisServer;

#[path = "support/tls.rs"]
mod tls;
use cachette::{Backend, ErrorKind, KeyTtl, SetOptions};
use tls::certificates;

const TIMEOUT: Duration = Duration::from_millis(500);
/// The timeouts of backends that run the conformance suite.
const CONFORMANCE_TIMEOUT: Duration = Duration::from_secs(5);
/// What a busy machine may add to an operation's own timeouts before the
/// caller sees its error.
const SCHEDULING_SLACK: Duration = Duration::from_millis(1500);

async fn backend_with(server: &RedisServer, prefix: &str, timeout: Duration) -> RedisBackend {
    RedisBackend::builder("127.0.0.1", server.port())
        .prefix(prefix)
        .connect_timeout(timeout)
        .response_timeout(timeout)
        .build()
        .await
        .expect("connect to the test server")
}

async fn backend(server: &RedisServer, prefix: &str) -> RedisBackend {
    backend_with(server, prefix, TIMEOUT).await
}

/// A backend for the conformance suite: its checks are about semantics,
/// so its timeouts leave a loaded machine all the time it needs.
async fn conforming(server: &RedisServer, prefix: &str) -> Arc<dyn Backend> {
    Arc::new(backend_with(server, prefix, CONFORMANCE_TIMEOUT).await)
}

use cachette::testing::list_keys as keys;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_conforms_with_a_sibling_prefix_on_the_same_server() {
    let server = RedisServer::start();
    let subject = conforming(&server, "subject:").await;
    let sibling = conforming(&server, "sibling:").await;
    let report = run_conformance(subject, Some(sibling)).await;
    let skipped: Vec<&str> = report.skipped().map(|(check, _)| check).collect();
    assert_eq!(skipped, ["value_size_limit"], "{report}");
}

/// With `tags=false` the backend says so in its capabilities, passes the
/// conformance suite (which then skips the tag checks), refuses tagged
/// writes and tag invalidation as unsupported, and sends untagged writes as
/// bare `SET`s: no `UNLINK` of a tag record reaches the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tags_off_writes_are_bare_sets_and_tags_are_unsupported() {
    let server = RedisServer::start();
    let url = |prefix: &str| format!("{}?prefix={prefix}&tags=false", server.url());
    let subject = cachette::open(&url("off:")).await.unwrap();
    let sibling = cachette::open(&url("off-sibling:")).await.unwrap();
    assert!(!subject.capabilities().tags);
    let report = run_conformance(Arc::clone(&subject), Some(sibling)).await;
    assert!(
        report
            .skipped()
            .any(|(check, _)| check == "tag_invalidation"),
        "{report}"
    );

    let unlinks = || {
        let stats = server.cli(&["INFO", "commandstats"]);
        stats
            .lines()
            .find_map(|line| line.strip_prefix("cmdstat_unlink:calls="))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |n| n.parse::<u64>().unwrap())
    };
    let before = unlinks();
    let entries: Vec<(String, bytes::Bytes)> =
        (0..16).map(|i| (format!("k{i}"), "v".into())).collect();
    let refs: Vec<(&str, bytes::Bytes)> = entries
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    subject.set_many(&refs, &SetOptions::new()).await.unwrap();
    subject
        .set("k", "v".into(), &SetOptions::new())
        .await
        .unwrap();
    assert_eq!(unlinks(), before, "an untagged write sent UNLINK");

    let tagged = SetOptions::new().tags(["t"]);
    let err = subject.set("k", "v".into(), &tagged).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(err.message().contains("tags=false"), "{err}");
    let err = subject.invalidate_tags(&["t"]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    // With tags on (the default), the same untagged write drops the tag
    // record first.
    let on = backend(&server, "off:").await;
    on.set("k", "v".into(), &SetOptions::new()).await.unwrap();
    assert_eq!(unlinks(), before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_server_conforms_with_a_generated_ca() {
    let files = certificates();
    let server = RedisServer::start_tls(&files);
    let ca = std::fs::read(&files.ca).unwrap();
    let open = |prefix: &'static str| {
        RedisBackend::builder("127.0.0.1", server.port())
            .tls(true)
            .root_certificate_pem(ca.clone())
            .prefix(prefix)
            .build()
    };
    let subject: Arc<dyn Backend> = Arc::new(open("subject:").await.unwrap());
    let sibling: Arc<dyn Backend> = Arc::new(open("sibling:").await.unwrap());
    let report = run_conformance(subject, Some(sibling)).await;
    assert_eq!(report.skipped().count(), 1, "{report}");

    // The URL form, with the CA from a file.
    let url = format!(
        "{}?ca_cert={}&prefix=url:",
        server.url(),
        files.ca.display()
    );
    let cache = cachette::open(&url).await.unwrap();
    cache
        .set("k", "v".into(), &SetOptions::new())
        .await
        .unwrap();
    assert_eq!(cache.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));

    // Without the CA the server's certificate is not trusted.
    let untrusted = RedisBackend::builder("127.0.0.1", server.port())
        .tls(true)
        .connect_timeout(TIMEOUT)
        .build()
        .await;
    assert!(untrusted.is_err());
}

/// Creates the ACL user `user` (password `s3cret-pw`) with these rules;
/// returns its URL without parameters.
fn acl_user(server: &RedisServer, user: &str, rules: &[&str]) -> String {
    let mut command = vec!["ACL", "SETUSER", user, "on", ">s3cret-pw"];
    command.extend_from_slice(rules);
    server.cli(&command);
    format!("redis://{user}:s3cret-pw@127.0.0.1:{}/0", server.port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_user_works_within_its_pattern_and_is_denied_outside() {
    let server = RedisServer::start();
    let login = acl_user(&server, "limited", &["~allowed:*", "+@all"]);
    let url = format!("{login}?prefix=allowed:");
    let allowed = cachette::open(&url).await.unwrap();
    allowed
        .set("k", "v".into(), &SetOptions::new())
        .await
        .unwrap();
    assert_eq!(allowed.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(allowed.incr("n", 2, Default::default()).await.unwrap(), 2);

    let url = format!("{login}?prefix=other:");
    let outside = cachette::open(&url).await.unwrap();
    let err = outside.get("k").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert_eq!(err.backend(), "redis");
    let err = outside
        .set("k", "v".into(), &SetOptions::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");

    let url = format!("redis://limited:wrong-pw@127.0.0.1:{}/0", server.port());
    let err = cachette::open(&url).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(!format!("{err} {err:?}").contains("wrong-pw"), "{err:?}");
}

/// `INFO` is in `@dangerous`, which a hardened ACL user lacks: its stats
/// are the client's counters without the server's figures, not an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_of_an_acl_user_that_may_not_run_info_are_the_clients_counters() {
    let server = RedisServer::start();
    let login = acl_user(&server, "hardened", &["~app:*", "+@all", "-@dangerous"]);
    let cache = cachette::open(&format!("{login}?prefix=app:"))
        .await
        .unwrap();
    cache
        .set("k", "v".into(), &SetOptions::new())
        .await
        .unwrap();
    assert!(cache.get("k").await.unwrap().is_some());
    let stats = cache.stats().await.unwrap();
    assert_eq!(stats.hits, 1);
    assert!(stats.details.is_empty(), "{:?}", stats.details);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_never_appears_in_debug_or_errors() {
    let server = RedisServer::start();
    server.cli(&["CONFIG", "SET", "requirepass", "hunter2-secret"]);
    let url = format!(
        "redis://:hunter2-secret@127.0.0.1:{}/0?prefix=p:",
        server.port()
    );
    let cache = cachette::open(&url).await.unwrap();
    cache
        .set("k", "v".into(), &SetOptions::new())
        .await
        .unwrap();
    assert!(!format!("{cache:?}").contains("hunter2"));
    let builder = RedisBackend::builder("127.0.0.1", server.port()).password("hunter2-secret");
    assert!(!format!("{builder:?}").contains("hunter2"));

    let closed = format!(
        "redis://:hunter2-secret@127.0.0.1:{}/0",
        cachette::testing::servers::free_port()
    );
    let err = cachette::open(&closed).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
    assert!(!format!("{err} {err:?}").contains("hunter2"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_and_keys_stay_within_the_prefix_and_hide_no_user_key() {
    let server = RedisServer::start();
    let cache = backend(&server, "app:").await;
    let other = backend(&server, "other:").await;
    let tagged = SetOptions::new().tags(["t"]);
    // Names that look like internal or meta keys are still user keys.
    for key in ["a", "a:meta", "__tag:x", "\u{0}t:y", "x*"] {
        cache.set(key, "v".into(), &tagged).await.unwrap();
    }
    other
        .set("keep", "v".into(), &SetOptions::new())
        .await
        .unwrap();
    assert_eq!(
        keys(&cache, "*").await,
        ["\u{0}t:y", "__tag:x", "a", "a:meta", "x*"]
    );
    assert_eq!(keys(&cache, "a*").await, ["a", "a:meta"]);
    assert_eq!(cache.invalidate_tags(&["t"]).await.unwrap(), 5);
    cache.set("b", "v".into(), &tagged).await.unwrap();
    cache.clear().await.unwrap();
    assert!(keys(&cache, "*").await.is_empty());
    assert_eq!(
        server.cli(&["DBSIZE"]).trim(),
        "1",
        "only the other prefix's key is left"
    );
    assert!(other.exists("keep").await.unwrap());

    // Millisecond TTLs are kept as given.
    cache
        .set(
            "ms",
            "v".into(),
            &SetOptions::new().ttl(Duration::from_millis(1500)),
        )
        .await
        .unwrap();
    let pttl: i64 = server.cli(&["PTTL", "app:ms"]).trim().parse().unwrap();
    // Above 1000: not rounded to whole seconds (the slack is for a slow
    // redis-cli start).
    assert!((1001..=1500).contains(&pttl), "{pttl}");
    assert!(
        matches!(cache.ttl("ms").await.unwrap(), KeyTtl::ExpiresIn(d) if d <= Duration::from_millis(1500))
    );

    cache.flush_database().await.unwrap();
    assert_eq!(server.cli(&["DBSIZE"]).trim(), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_during_a_workload_fails_fast_and_the_same_backend_recovers() {
    let mut server = RedisServer::start();
    let cache = Arc::new(backend(&server, "fault:").await);
    let deadline = TIMEOUT * 2 + SCHEDULING_SLACK;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for task in 0..16 {
        let (cache, stop) = (cache.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut failures = 0u64;
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let key = format!("k{task}:{}", i % 50);
                let started = Instant::now();
                let result = if i.is_multiple_of(2) {
                    cache
                        .set(&key, "v".into(), &SetOptions::new())
                        .await
                        .map(|_| ())
                } else {
                    cache.get(&key).await.map(|_| ())
                };
                let took = started.elapsed();
                assert!(took <= deadline, "an operation took {took:?}");
                if let Err(err) = result {
                    assert!(
                        matches!(err.kind(), ErrorKind::Connection | ErrorKind::Timeout),
                        "{err}"
                    );
                    assert_eq!(err.backend(), "redis");
                    failures += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                i += 1;
            }
            failures
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.kill();
    // New operations fail within the deadline while the server is away.
    for _ in 0..3 {
        let started = Instant::now();
        let err = cache.get("k").await.unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::Connection | ErrorKind::Timeout),
            "{err}"
        );
        assert!(started.elapsed() <= deadline, "{:?}", started.elapsed());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.restart();
    serves_again_within_5s(&cache).await;
    // The restarted server has an empty script cache: pipelined scripts
    // load it again.
    let tagged = SetOptions::new().tags(["t"]);
    let written = cache
        .set_many(&[("a", "1".into()), ("b", "2".into())], &tagged)
        .await
        .unwrap();
    assert_eq!(written, [true, true]);
    assert_eq!(cache.invalidate_tags(&["t"]).await.unwrap(), 2);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut failures = 0;
    for task in tasks {
        failures += task.await.expect("no task panics");
    }
    assert!(failures > 0, "the workload saw the outage");
}

/// A frozen server (`SIGSTOP`) accepts connections and answers nothing:
/// only timeouts end an operation. Every kind of operation must end within
/// the deadline (connect + response timeout) with a timeout or connection
/// error, first on the live connection to the frozen server, then (after
/// it is thawed, serves again, and is killed) on reconnects to a port that
/// accepts connections and never answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_fails_every_operation_within_the_deadline() {
    let server = RedisServer::start();
    let cache = backend(&server, "frozen:").await;
    cache
        .set("k", "v".into(), &SetOptions::new())
        .await
        .unwrap();
    let deadline = TIMEOUT * 2 + SCHEDULING_SLACK;
    server.freeze();
    for round in 0..2 {
        let what = |operation: &str| format!("round {round}, {operation}");
        fails_within(deadline, &what("get"), cache.get("k")).await;
        let plain = SetOptions::new();
        fails_within(deadline, &what("set"), cache.set("k", "w".into(), &plain)).await;
        fails_within(deadline, &what("exists"), cache.exists("k")).await;
        fails_within(deadline, &what("ttl"), cache.ttl("k")).await;
        fails_within(deadline, &what("get_many"), cache.get_many(&["k", "l"])).await;
        let entries = [("k", "w".into()), ("l", "x".into())];
        let set_many = cache.set_many(&entries, &plain);
        fails_within(deadline, &what("set_many"), set_many).await;
        let incr = cache.incr("n", 1, cachette::Expiry::Never);
        fails_within(deadline, &what("incr"), incr).await;
    }
    server.thaw();
    serves_again_within_5s(&cache).await;

    // Now the server is gone and its port accepts connections that never
    // answer: every operation meets a reconnect whose handshake hangs.
    let mut server = server;
    server.kill();
    let _silent = std::net::TcpListener::bind(("127.0.0.1", server.port())).unwrap();
    for attempt in 0..2 {
        let what = |operation: &str| format!("silent port, attempt {attempt}, {operation}");
        fails_within(deadline, &what("get"), cache.get("k")).await;
        let plain = SetOptions::new();
        let set = cache.set("k", "w".into(), &plain);
        fails_within(deadline, &what("set"), set).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_follow_overwrites_and_tolerate_stale_memberships() {
    let server = RedisServer::start();
    let cache = backend(&server, "tags:").await;
    let with = |tags: &[&str]| SetOptions::new().tags(tags.iter().copied());
    cache.set("k", "1".into(), &with(&["old"])).await.unwrap();
    cache.set("k", "2".into(), &with(&["new"])).await.unwrap();
    assert_eq!(cache.invalidate_tags(&["old"]).await.unwrap(), 0);
    assert!(cache.exists("k").await.unwrap());
    // An untagged overwrite drops the tags; the stale name is skipped.
    cache
        .set("k", "3".into(), &SetOptions::new())
        .await
        .unwrap();
    assert_eq!(cache.invalidate_tags(&["new"]).await.unwrap(), 0);
    assert!(cache.exists("k").await.unwrap());
    // Deleted, then written again with the same tag: invalidated.
    cache.set("j", "1".into(), &with(&["t"])).await.unwrap();
    cache.delete("j").await.unwrap();
    cache
        .set("j", "2".into(), &with(&["t", "u"]))
        .await
        .unwrap();
    assert_eq!(cache.invalidate_tags(&["t"]).await.unwrap(), 1);
    assert!(!cache.exists("j").await.unwrap());
    // Nothing internal is left behind but the user key.
    assert_eq!(server.cli(&["DBSIZE"]).trim(), "1");
    // Tag sets of expiring entries expire too.
    cache
        .set(
            "e",
            "1".into(),
            &with(&["x"]).ttl(Duration::from_millis(100)),
        )
        .await
        .unwrap();
    // Redis removes expired keys in the background: wait for it.
    cachette::testing::servers::wait_until(
        "the expired entry's keys to go",
        Duration::from_secs(10),
        || server.cli(&["DBSIZE"]).trim() == "1",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_are_exact_across_the_whole_i64_range() {
    let server = RedisServer::start();
    let cache = backend(&server, "n:").await;
    let big = i64::MAX - 1;
    assert_eq!(cache.incr("c", big, Default::default()).await.unwrap(), big);
    assert_eq!(
        cache.incr("c", 1, Default::default()).await.unwrap(),
        i64::MAX
    );
    let err = cache.incr("c", 1, Default::default()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Overflow, "{err}");
    assert_eq!(
        cache.get("c").await.unwrap().as_deref(),
        Some(i64::MAX.to_string().as_bytes())
    );
    cache
        .set("s", "abc".into(), &SetOptions::new())
        .await
        .unwrap();
    let err = cache.incr("s", 1, Default::default()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotAnInteger, "{err}");
    // The TTL applies only when incr creates the counter.
    let ttl = cachette::Expiry::After(Duration::from_secs(60));
    cache.incr("t", 1, ttl).await.unwrap();
    cache.touch("t", cachette::Expiry::Never).await.unwrap();
    cache.incr("t", 1, ttl).await.unwrap();
    assert_eq!(cache.ttl("t").await.unwrap(), KeyTtl::Persistent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_url_opens_with_db_and_prefix() {
    let dir = fresh_dir();
    let socket = dir.join("redis.sock");
    let socket_arg = socket.display().to_string();
    let server = RedisServer::start_with(&["--unixsocket", &socket_arg, "--unixsocketperm", "700"]);
    let url = format!("redis+unix://{}?db=1&prefix=u:", socket.display());
    let cache = cachette::open(&url).await.unwrap();
    cache
        .set("k", "v".into(), &SetOptions::new())
        .await
        .unwrap();
    assert_eq!(server.cli(&["-n", "1", "GET", "u:k"]).trim(), "v");
    cache.health().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_parameters_are_checked() {
    for (url, needle) in [
        ("redis://127.0.0.1:1/x", "database number"),
        ("redis://127.0.0.1:1/0?prefx=a", "unknown parameter `prefx`"),
        (
            "redis://127.0.0.1:1/0?response_timeout=soon",
            "response_timeout",
        ),
        ("redis+unix://", "socket path"),
        ("redis://127.0.0.1:1/0?tags=maybe", "parameter `tags`"),
    ] {
        let err = cachette::open(url).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{url}: {err}");
        assert!(err.message().contains(needle), "{url}: {err}");
    }
    let redis = cachette::schemes()
        .into_iter()
        .find(|s| s.scheme == "redis")
        .unwrap();
    assert!(
        redis.enabled
            && redis
                .capabilities
                .is_some_and(|c| c.atomic_incr && c.shared)
    );
}

/// Writes until the backend serves again (temporary errors only, for at
/// most 5 s), then reads the write back.
async fn serves_again_within_5s(cache: &RedisBackend) {
    let started = Instant::now();
    loop {
        match cache.set("back", "v".into(), &SetOptions::new()).await {
            Ok(_) => break,
            Err(err) => {
                assert!(err.is_temporary(), "{err}");
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "no recovery: {err}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    assert_eq!(cache.get("back").await.unwrap().as_deref(), Some(&b"v"[..]));
}

/// Runs `operation`, which must fail with a timeout or connection error
/// within `deadline`.
async fn fails_within<T: std::fmt::Debug>(
    deadline: Duration,
    what: &str,
    operation: impl std::future::Future<Output = cachette::Result<T>>,
) {
    let started = Instant::now();
    let result = operation.await;
    let took = started.elapsed();
    let err = result.expect_err(what);
    assert!(
        matches!(err.kind(), ErrorKind::Timeout | ErrorKind::Connection),
        "{what}: {err}"
    );
    assert!(took <= deadline, "{what} took {took:?}");
}

/// `max_key_len` is the limit on the caller's key: the prefix the backend
/// adds takes its share of the 4096 bytes of a stored name, as in the
/// `Prefixed` layer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_lowers_max_key_len_by_its_length() {
    use cachette::backends::redis::MAX_KEY_LEN;
    let server = RedisServer::start();
    let cache = backend(&server, "app:").await;
    let max = cache.capabilities().max_key_len;
    assert_eq!(max, MAX_KEY_LEN - "app:".len());
    let longest = "k".repeat(max);
    assert!(
        cache
            .set(&longest, "v".into(), &SetOptions::new())
            .await
            .unwrap()
    );
    let err = cache.get(&"k".repeat(max + 1)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.message().contains(&max.to_string()), "{err}");
}

#[tokio::test]
async fn a_prefix_that_leaves_no_room_for_keys_is_a_config_error() {
    use cachette::backends::redis::MAX_KEY_LEN;
    let err = RedisBackend::builder("127.0.0.1", 1)
        .prefix("p".repeat(MAX_KEY_LEN))
        .build()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.message().contains("prefix"), "{err}");
}

#[tokio::test]
async fn a_zero_default_ttl_is_a_config_error_like_in_every_builder() {
    let err = RedisBackend::builder("127.0.0.1", 1)
        .default_ttl(Duration::ZERO)
        .build()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.message().contains("default_ttl"), "{err}");
}
