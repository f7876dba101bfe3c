//! The Memcached backend against real `memcached` processes started by
//! `cachette::testing::servers::memcached`.
#![cfg(all(feature = "memcached", feature = "testing"))]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cachette::backends::memcached::{Failover, MemcachedBackend};
use cachette::testing::servers::memcached::{MemcachedCluster, MemcachedServer};
use cachette::testing::{Conformance, list_keys};
use cachette::{Backend, ErrorKind, SetOptions};

#[path = "support/tls.rs"]
mod tls;

/// The timeouts of backends that run the conformance suite: its checks
/// are about semantics, so a loaded machine gets all the time it needs.
const CONFORMANCE_TIMEOUT: &str = "5s";

async fn open(url: &str, prefix: &str) -> Arc<dyn Backend> {
    let separator = if url.contains('?') { '&' } else { '?' };
    let url = format!(
        "{url}{separator}prefix={prefix}&connect_timeout={CONFORMANCE_TIMEOUT}&response_timeout={CONFORMANCE_TIMEOUT}"
    );
    cachette::open(&url)
        .await
        .unwrap_or_else(|err| panic!("open {url}: {err}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_server_conforms_with_a_sibling_prefix() {
    let server = MemcachedServer::start();
    let subject = open(&server.url(), "subject:").await;
    let sibling = open(&server.url(), "sibling:").await;
    let report = Conformance::new(subject).sibling(sibling).run().await;
    let skipped: Vec<&str> = report.skipped().map(|(check, _)| check).collect();
    assert!(skipped.is_empty(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_conform_with_a_sibling_prefix() {
    let cluster = MemcachedCluster::start(3);
    let subject = open(&cluster.url(), "subject:").await;
    let sibling = open(&cluster.url(), "sibling:").await;
    let report = Conformance::new(subject).sibling(sibling).run().await;
    let skipped: Vec<&str> = report.skipped().map(|(check, _)| check).collect();
    assert!(skipped.is_empty(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_ttl_conforms() {
    let server = MemcachedServer::start();
    let subject = open(&format!("{}?default_ttl=60s", server.url()), "ttl:").await;
    let sibling = open(&server.url(), "other:").await;
    let report = Conformance::new(subject)
        .sibling(sibling)
        .default_ttl(Duration::from_secs(60))
        .run()
        .await;
    assert!(report.skipped().next().is_none(), "{report}");
}

/// Keys land where the ring puts them, on exactly one server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_key_lives_on_exactly_one_server() {
    let cluster = MemcachedCluster::start(3);
    let backend = MemcachedBackend::builder(
        cluster
            .servers()
            .iter()
            .map(|server| ("127.0.0.1", server.port())),
    )
    .build()
    .await
    .unwrap();
    let mut per_server = [0_u64; 3];
    for i in 0..300 {
        let key = format!("key{i}");
        backend
            .set(&key, Bytes::from("v"), &SetOptions::new())
            .await
            .unwrap();
        per_server[backend.server_of(&key)] += 1;
    }
    for (index, server) in cluster.servers().iter().enumerate() {
        // Each server also holds this prefix's generation.
        assert_eq!(
            server.stat("curr_items"),
            per_server[index] + 1,
            "server {index}"
        );
        assert!(per_server[index] > 50, "{per_server:?}");
    }
}

/// `clear` empties this prefix on every server and leaves other prefixes
/// alone, without `flush_all`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_bumps_the_generation_and_never_flushes() {
    let cluster = MemcachedCluster::start(2);
    let a = open(&cluster.url(), "a:").await;
    let b = open(&cluster.url(), "b:").await;
    for i in 0..50 {
        let key = format!("k{i}");
        a.set(&key, Bytes::from("a"), &SetOptions::new())
            .await
            .unwrap();
        b.set(&key, Bytes::from("b"), &SetOptions::new())
            .await
            .unwrap();
    }
    a.clear().await.unwrap();
    for i in 0..50 {
        let key = format!("k{i}");
        assert_eq!(a.get(&key).await.unwrap(), None);
        assert_eq!(b.get(&key).await.unwrap().as_deref(), Some(&b"b"[..]));
    }
    // A second process sees the clear too: it reads the generation.
    let again = open(&cluster.url(), "a:").await;
    assert_eq!(again.get("k1").await.unwrap(), None);
    for server in cluster.servers() {
        assert_eq!(server.stat("cmd_flush"), 0);
    }
}

/// A tag invalidated by one instance is invalid for another; an evicted
/// tag version (here: deleted from outside) invalidates its entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_are_exact_across_instances_and_survive_losing_a_version() {
    let server = MemcachedServer::start();
    let one = open(&server.url(), "t:").await;
    let two = open(&server.url(), "t:").await;
    let tagged = SetOptions::new().tags(["users"]);
    one.set("u1", Bytes::from("1"), &tagged).await.unwrap();
    one.set("u2", Bytes::from("2"), &tagged).await.unwrap();
    one.set("plain", Bytes::from("p"), &SetOptions::new())
        .await
        .unwrap();
    assert!(two.get("u1").await.unwrap().is_some());
    two.invalidate_tags(&["users"]).await.unwrap();
    assert_eq!(one.get("u1").await.unwrap(), None);
    assert_eq!(one.get("u2").await.unwrap(), None);
    assert!(one.get("plain").await.unwrap().is_some());

    one.set("u3", Bytes::from("3"), &tagged).await.unwrap();
    assert!(two.get("u3").await.unwrap().is_some());
    // The tag's version is gone (as if evicted): its entries are invalid.
    let answer = server.command("md t:\u{FF}t:users");
    assert!(answer.starts_with("HD"), "{answer}");
    assert_eq!(two.get("u3").await.unwrap(), None);
    assert_eq!(one.get("u3").await.unwrap(), None);
}

/// Counters follow the rules of every backend, not memcached's unsigned
/// wrapping ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_are_signed_and_never_wrap() {
    let server = MemcachedServer::start();
    let backend = open(&server.url(), "c:").await;
    assert_eq!(backend.incr("n", -5, Default::default()).await.unwrap(), -5);
    assert_eq!(backend.incr("n", 3, Default::default()).await.unwrap(), -2);
    assert_eq!(backend.incr("n", 2, Default::default()).await.unwrap(), 0);
    assert_eq!(backend.incr("n", 10, Default::default()).await.unwrap(), 10);
    // A shrinking number is rewritten, never space-padded.
    assert_eq!(backend.decr("n", 1, Default::default()).await.unwrap(), 9);
    assert_eq!(backend.get("n").await.unwrap().as_deref(), Some(&b"9"[..]));
    backend
        .set("max", Bytes::from(i64::MAX.to_string()), &SetOptions::new())
        .await
        .unwrap();
    let err = backend
        .incr("max", 1, Default::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Overflow);
    backend
        .set("text", Bytes::from("+5"), &SetOptions::new())
        .await
        .unwrap();
    let err = backend
        .incr("text", 1, Default::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotAnInteger);
}

/// `keys` is refused as unsupported by a server that forbids dumps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_unsupported_where_the_server_forbids_dumps() {
    let server = MemcachedServer::start_with(&["-X"]);
    let backend = open(&server.url(), "x:").await;
    backend
        .set("k", Bytes::from("v"), &SetOptions::new())
        .await
        .unwrap();
    let err = backend.keys("*").await.err().expect("keys must fail");
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");

    let allowed = MemcachedServer::start();
    let backend = open(&allowed.url(), "x:").await;
    let long = "long key ".repeat(100);
    for key in ["k", "with space", long.as_str()] {
        backend
            .set(key, Bytes::from("v"), &SetOptions::new())
            .await
            .unwrap();
    }
    let mut expected = vec!["k".to_owned(), "with space".to_owned(), long.clone()];
    expected.sort();
    assert_eq!(list_keys(&*backend, "*").await, expected);
}

/// How long an operation on a dead or frozen server may take beyond its
/// own deadlines on a busy machine.
const SLACK: Duration = Duration::from_millis(1500);

/// The deadlines of fault tests: short, yet long enough that a loaded
/// machine never makes a healthy server miss them.
const FAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// A backend with short deadlines, for fault tests.
async fn impatient(cluster: &MemcachedCluster, failover: Failover) -> MemcachedBackend {
    let servers = cluster.servers().iter().map(|s| ("127.0.0.1", s.port()));
    MemcachedBackend::builder(servers)
        .prefix("fault:")
        .connect_timeout(FAULT_TIMEOUT)
        .response_timeout(FAULT_TIMEOUT)
        .retry_interval(Duration::from_millis(200))
        .failover(failover)
        .build()
        .await
        .unwrap()
}

/// Runs gets and sets of `keys` from 16 tasks for `length`; returns, per
/// key's server, how many operations succeeded and failed, and the
/// slowest operation. Panics if an error is not `Connection`/`Timeout`.
async fn workload(
    backend: &MemcachedBackend,
    keys: &[String],
    length: Duration,
) -> ([u64; 3], [u64; 3], Duration) {
    let backend = Arc::new(backend.clone());
    let keys = Arc::new(keys.to_vec());
    let mut tasks = Vec::new();
    for task in 0..16_usize {
        let (backend, keys) = (Arc::clone(&backend), Arc::clone(&keys));
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut failed, mut slowest) = ([0_u64; 3], [0_u64; 3], Duration::ZERO);
            let started = std::time::Instant::now();
            let mut i = task;
            while started.elapsed() < length {
                let key = &keys[i % keys.len()];
                i += 7;
                let server = backend.server_of(key);
                let began = std::time::Instant::now();
                let outcome = if i % 2 == 0 {
                    backend.get(key).await.map(|_| ())
                } else {
                    backend
                        .set(key, Bytes::from("v"), &SetOptions::new())
                        .await
                        .map(|_| ())
                };
                slowest = slowest.max(began.elapsed());
                match outcome {
                    Ok(()) => ok[server] += 1,
                    Err(err) => {
                        assert!(
                            matches!(err.kind(), ErrorKind::Connection | ErrorKind::Timeout),
                            "{err}"
                        );
                        failed[server] += 1;
                    }
                }
            }
            (ok, failed, slowest)
        }));
    }
    let (mut ok, mut failed, mut slowest) = ([0_u64; 3], [0_u64; 3], Duration::ZERO);
    for task in tasks {
        let (o, f, s) = task.await.unwrap();
        for server in 0..3 {
            ok[server] += o[server];
            failed[server] += f[server];
        }
        slowest = slowest.max(s);
    }
    (ok, failed, slowest)
}

/// One of three servers killed under a concurrent workload: only its keys
/// fail, each within the deadlines, nothing hangs, the others keep
/// serving; once it is back, the same backend serves its keys again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_fails_only_its_keys_and_comes_back() {
    let mut cluster = MemcachedCluster::start(3);
    let backend = impatient(&cluster, Failover::Error).await;
    let keys: Vec<String> = (0..300).map(|i| format!("key{i}")).collect();
    let (ok, failed, _) = workload(&backend, &keys, Duration::from_millis(300)).await;
    assert_eq!(failed, [0, 0, 0], "before the kill");
    assert!(ok.iter().all(|&n| n > 0), "{ok:?}");

    cluster.server_mut(1).kill();
    let run = workload(&backend, &keys, Duration::from_secs(2));
    let (ok, failed, slowest) = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the workload must not hang");
    assert!(ok[0] > 0 && ok[2] > 0, "the others keep serving: {ok:?}");
    assert_eq!(
        (failed[0], failed[2]),
        (0, 0),
        "only the dead server's keys fail"
    );
    assert!(failed[1] > 0, "the dead server's keys fail: {failed:?}");
    assert!(
        slowest < 2 * FAULT_TIMEOUT + SLACK,
        "an operation took {slowest:?}"
    );

    cluster.server_mut(1).restart();
    let key = keys.iter().find(|key| backend.server_of(key) == 1).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while backend
        .set(key, Bytes::from("back"), &SetOptions::new())
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the server never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        backend.get(key).await.unwrap().as_deref(),
        Some(&b"back"[..])
    );
    let (_, failed, _) = workload(&backend, &keys, Duration::from_millis(300)).await;
    assert_eq!(failed, [0, 0, 0], "after the restart");
}

/// A frozen server (it accepts and never answers) fails its keys with
/// `Timeout` within the response timeout; the others keep serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_times_out_only_its_keys() {
    let cluster = MemcachedCluster::start(3);
    let backend = impatient(&cluster, Failover::Error).await;
    let keys: Vec<String> = (0..300).map(|i| format!("key{i}")).collect();
    workload(&backend, &keys, Duration::from_millis(200)).await;
    cluster.servers()[2].freeze();
    let run = workload(&backend, &keys, Duration::from_secs(2));
    let outcome = tokio::time::timeout(Duration::from_secs(30), run).await;
    cluster.servers()[2].thaw();
    let (ok, failed, slowest) = outcome.expect("the workload must not hang");
    assert!(ok[0] > 0 && ok[1] > 0, "{ok:?}");
    assert_eq!((failed[0], failed[1]), (0, 0), "{failed:?}");
    assert!(failed[2] > 0, "{failed:?}");
    assert!(
        slowest < 2 * FAULT_TIMEOUT + SLACK,
        "an operation took {slowest:?}"
    );
}

/// With `failover=next`, the keys of a dead server go to the next server
/// of the ring: every operation succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_failover_the_next_server_takes_a_dead_servers_keys() {
    let mut cluster = MemcachedCluster::start(3);
    let backend = impatient(&cluster, Failover::Next).await;
    let keys: Vec<String> = (0..300).map(|i| format!("key{i}")).collect();
    cluster.server_mut(0).kill();
    // The first operations find it down; after that its keys move.
    let moved = keys.iter().find(|key| backend.server_of(key) == 0).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while backend
        .set(moved, Bytes::from("elsewhere"), &SetOptions::new())
        .await
        .is_err()
    {
        assert!(std::time::Instant::now() < deadline, "no failover");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        backend.get(moved).await.unwrap().as_deref(),
        Some(&b"elsewhere"[..])
    );
    let (ok, failed, _) = workload(&backend, &keys, Duration::from_millis(500)).await;
    assert_eq!(failed, [0, 0, 0], "{ok:?}");
    assert!(ok[0] > 0, "the dead server's keys were served: {ok:?}");
}

/// A 64 MiB server written far past its memory evicts, and the rules
/// still hold: nothing written before a `clear` or tagged before an
/// invalidation comes back, and what is read is what was written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicting_server_keeps_the_clear_and_tag_rules() {
    let server = MemcachedServer::start_with(&["-m", "64"]);
    let backend = open(&server.url(), "evict:").await;
    let value = |phase: &str, i: usize| {
        let mut bytes = format!("{phase}:{i}:").into_bytes();
        bytes.resize(16 * 1024, b'x');
        Bytes::from(bytes)
    };
    let write = async |phase: &str, range: std::ops::Range<usize>, tags: usize| {
        for chunk in range.collect::<Vec<_>>().chunks(64) {
            for &i in chunk {
                let tag = format!("{phase}{}", i % tags);
                let options = SetOptions::new().tags([tag]);
                backend
                    .set(&format!("{phase}{i}"), value(phase, i), &options)
                    .await
                    .unwrap();
            }
        }
    };
    // 32 MiB, half of its tags invalidated, then all of it cleared.
    write("a", 0..2_000, 20).await;
    let invalidated: Vec<String> = (0..10).map(|t| format!("a{t}")).collect();
    let invalidated: Vec<&str> = invalidated.iter().map(String::as_str).collect();
    backend.invalidate_tags(&invalidated).await.unwrap();
    backend.clear().await.unwrap();
    // 128 MiB more, with an invalidation half way.
    write("b", 0..4_000, 50).await;
    let invalidated: Vec<String> = (0..5).map(|t| format!("b{t}")).collect();
    let invalidated: Vec<&str> = invalidated.iter().map(String::as_str).collect();
    backend.invalidate_tags(&invalidated).await.unwrap();
    write("b", 4_000..8_000, 50).await;
    assert!(server.stat("evictions") > 0, "the server must have evicted");

    for i in 0..2_000 {
        assert_eq!(backend.get(&format!("a{i}")).await.unwrap(), None, "a{i}");
    }
    let mut kept = 0;
    for i in 0..8_000 {
        let read = backend.get(&format!("b{i}")).await.unwrap();
        if i < 4_000 && i % 50 < 5 {
            assert_eq!(read, None, "b{i} was invalidated");
        } else if let Some(read) = read {
            assert_eq!(read, value("b", i), "b{i}");
            kept += 1;
        }
    }
    assert!(kept > 0, "some of the last writes must still be there");
    // The generation lost (as if evicted) reads as a clear.
    let answer = server.command("md evict:\u{FF}g");
    assert!(answer.starts_with("HD"), "{answer}");
    assert_eq!(backend.get("b7999").await.unwrap(), None);
}

/// TLS with a CA of the test's own: the suite passes; without the CA the
/// handshake fails, as a connection error within the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_conforms_with_a_generated_ca_and_refuses_an_unknown_one() {
    let files = tls::certificates();
    let server = MemcachedServer::start_tls(&files);
    let url = format!("{}?ca_cert={}", server.url(), files.ca.display());
    let subject = open(&url, "tls:").await;
    let sibling = open(&url, "tls-sibling:").await;
    let report = Conformance::new(subject).sibling(sibling).run().await;
    assert!(report.skipped().next().is_none(), "{report}");

    let started = std::time::Instant::now();
    let err = cachette::open(&format!("{}?connect_timeout=1s", server.url()))
        .await
        .expect_err("an unknown CA must be refused");
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
    assert!(started.elapsed() < Duration::from_secs(1) + SLACK);
}

/// A fake server on a free port: each connection gets `answer` (written
/// once, or in a loop with `endless`), and the connections are counted.
fn fake_server(answer: &'static [u8], endless: bool) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            std::thread::spawn(move || {
                let mut request = [0_u8; 4096];
                loop {
                    if !endless && matches!(stream.read(&mut request), Ok(0) | Err(_)) {
                        return;
                    }
                    if stream.write_all(answer).is_err() || answer.is_empty() {
                        return;
                    }
                }
            });
        }
    });
    (port, accepted)
}

async fn on_fake(port: u16) -> cachette::Result<MemcachedBackend> {
    MemcachedBackend::builder([("127.0.0.1", port)])
        .pool_size(1)
        .connect_timeout(Duration::from_secs(1))
        .response_timeout(Duration::from_secs(1))
        .retry_interval(Duration::from_millis(100))
        .build()
        .await
}

/// Replies no server should send: a flag that is not ASCII, answers to
/// nothing, a connection closed at once. Each is an error of the
/// operation, never a panic, a dead connection task, unbounded memory or
/// a storm of reconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_server_gives_errors_and_nothing_worse() {
    // A reply flag of a multi-byte character (beside a real server, so
    // that the backend builds): the fake server's keys fail, time after
    // time, and its connection is made again each time (its task lives).
    let (port, accepted) = fake_server("HD \u{e9}\r\n".as_bytes(), false);
    let real = MemcachedServer::start();
    let backend = MemcachedBackend::builder([("127.0.0.1", real.port()), ("127.0.0.1", port)])
        .pool_size(1)
        .retry_interval(Duration::from_millis(50))
        .build()
        .await
        .unwrap();
    let key = (0..100)
        .map(|i| format!("k{i}"))
        .find(|key| backend.server_of(key) == 1)
        .unwrap();
    for _ in 0..3 {
        let err = backend.get(&key).await.unwrap_err();
        assert!(!err.message().contains("task has ended"), "{err}");
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    assert!(accepted.load(std::sync::atomic::Ordering::Relaxed) >= 2);

    // Answers streamed without a question: the connection is dropped as
    // out of step (memory stays bounded); operations fail cleanly.
    let (port, _) = fake_server(b"HD\r\n", true);
    let err = on_fake(port).await.expect_err("an out-of-step server");
    assert!(
        matches!(err.kind(), ErrorKind::Backend | ErrorKind::Connection),
        "{err}"
    );

    // Accepted and closed at once: the server is down and tried again
    // every retry interval, not thousands of times a second.
    let (port, accepted) = fake_server(b"", false);
    let _ = on_fake(port).await;
    let counted = accepted.load(std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let reconnects = accepted.load(std::sync::atomic::Ordering::Relaxed) - counted;
    assert!(reconnects <= 20, "{reconnects} connections in a second");
}

/// Leases (`mg … N`/`R`): of the callers that ask for a missing key, or
/// for an expiring one nobody refreshed yet, exactly one wins until the
/// key is written; a lease given back goes to the next caller; a key
/// without expiry has none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_go_to_one_caller_until_the_key_is_written() {
    use cachette::{Lease, LeaseToken};
    let cluster = MemcachedCluster::start(2);
    let one = open(&cluster.url(), "lease:").await;
    let two = open(&cluster.url(), "lease:").await;
    let ttl = Duration::from_secs(30);

    let Some(Lease::Granted(token)) = one.lease("k", ttl).await.unwrap() else {
        panic!("the first caller of a missing key gets the lease");
    };
    assert_eq!(two.lease("k", ttl).await.unwrap(), Some(Lease::Held));
    assert_eq!(one.lease("k", ttl).await.unwrap(), Some(Lease::Held));
    // The placeholder is no entry.
    assert_eq!(two.get("k").await.unwrap(), None);
    assert!(!two.exists("k").await.unwrap());

    // Given back, the lease goes to the next caller, once.
    one.release_lease("k", token).await.unwrap();
    let Some(Lease::Granted(token)) = two.lease("k", ttl).await.unwrap() else {
        panic!("a lease given back goes to the next caller");
    };
    assert_eq!(one.lease("k", ttl).await.unwrap(), Some(Lease::Held));

    // A write ends the lease; giving back a stale token then changes nothing.
    let options = SetOptions::new().ttl(Duration::from_secs(60));
    two.set("k", Bytes::from_static(b"v1"), &options)
        .await
        .unwrap();
    two.release_lease("k", token).await.unwrap();
    assert_eq!(one.get("k").await.unwrap().as_deref(), Some(&b"v1"[..]));

    // An expiring entry: one caller wins the refresh, the value stays readable.
    let Some(Lease::Granted(_)) = one.lease("k", ttl).await.unwrap() else {
        panic!("the first caller of an expiring key gets the refresh");
    };
    assert_eq!(two.lease("k", ttl).await.unwrap(), Some(Lease::Held));
    assert_eq!(two.get("k").await.unwrap().as_deref(), Some(&b"v1"[..]));
    two.set("k", Bytes::from_static(b"v2"), &options)
        .await
        .unwrap();
    assert!(matches!(
        two.lease("k", ttl).await.unwrap(),
        Some(Lease::Granted(_))
    ));

    // No expiry, no lease.
    one.set("forever", Bytes::from_static(b"v"), &SetOptions::new())
        .await
        .unwrap();
    assert_eq!(one.lease("forever", ttl).await.unwrap(), None);
    // A token of nothing is given back without error.
    one.release_lease("never-leased", LeaseToken::new(1))
        .await
        .unwrap();
}

/// Two instances of the typed front end with a distributed lock, each
/// over its own backend (wrapped to count operations).
async fn locked_caches(
    cluster: &MemcachedCluster,
    soft_ttl: Option<Duration>,
) -> Vec<(cachette::Cache, Arc<cachette::testing::FaultyBackend>)> {
    let mut caches = Vec::new();
    for _ in 0..2 {
        let faulty = cachette::testing::FaultyBackend::new(open(&cluster.url(), "lock:").await);
        let mut builder = cachette::Cache::builder(faulty.clone())
            .default_ttl(Duration::from_secs(60))
            .distributed_lock(Duration::from_secs(30), Duration::from_secs(20));
        if let Some(soft_ttl) = soft_ttl {
            builder = builder.soft_ttl(soft_ttl);
        }
        caches.push((builder.build().await.unwrap(), faulty));
    }
    caches
}

/// Runs `get_or_load` of `key` from 100 concurrent callers spread over
/// `caches`; the loader counts its runs in `loads` and answers `value`.
async fn hundred_callers(
    caches: &[(cachette::Cache, Arc<cachette::testing::FaultyBackend>)],
    key: &'static str,
    loads: &Arc<std::sync::atomic::AtomicUsize>,
    value: &'static str,
) -> Vec<Option<String>> {
    let mut callers = Vec::new();
    for caller in 0..100 {
        let cache = caches[caller % caches.len()].0.clone();
        let loads = Arc::clone(loads);
        callers.push(tokio::spawn(async move {
            let loader = move |_| async move {
                loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok::<_, std::io::Error>(Some(String::from(value)))
            };
            cache
                .get_or_load(key, loader, &cachette::EntryOptions::new())
                .await
        }));
    }
    let mut values = Vec::new();
    for caller in callers {
        values.push(caller.await.unwrap().unwrap());
    }
    values
}

/// The typed front end's distributed lock over memcached takes leases
/// (`mg … N`): 100 concurrent callers on two instances, each with its own
/// backend, run the loader once and all get its value; no lock key is
/// written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_callers_on_two_instances_run_one_load() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let cluster = MemcachedCluster::start(2);
    let loads = Arc::new(AtomicUsize::new(0));
    let caches = locked_caches(&cluster, None).await;
    let values = hundred_callers(&caches, "report", &loads, "computed once").await;
    assert!(values.iter().all(|v| v.as_deref() == Some("computed once")));
    assert_eq!(
        loads.load(Ordering::SeqCst),
        1,
        "the loader ran more than once"
    );
    let calls = |op| caches.iter().map(|(_, f)| f.calls_of(op)).sum::<usize>();
    assert!(calls("lease") >= 1, "no lease was asked for");
    assert_eq!(calls("set"), 1, "only the value is written, no lock key");
    assert_eq!(calls("delete"), 0, "no lock key is released");
}

/// Early refresh over memcached (`mg … R`): past the soft TTL, 100
/// concurrent callers on two instances are served the old value at once,
/// and one of them, in one process, refreshes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_callers_past_the_soft_ttl_run_one_refresh() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let cluster = MemcachedCluster::start(2);
    let loads = Arc::new(AtomicUsize::new(0));
    let caches = locked_caches(&cluster, Some(Duration::from_millis(200))).await;
    let first = hundred_callers(&caches, "page", &loads, "old").await;
    assert!(first.iter().all(|v| v.as_deref() == Some("old")));
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_millis(400)).await;

    let served = hundred_callers(&caches, "page", &loads, "new").await;
    assert!(
        served.iter().all(|v| v.as_deref() == Some("old")),
        "past the soft TTL every caller is served the stale value at once"
    );
    // The refresh is under way in one process; both come to see its value.
    for (cache, _) in &caches {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let value: Option<String> = cache.get("page").await.unwrap();
            if value.as_deref() == Some("new") {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the refresh never landed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(
        loads.load(Ordering::SeqCst),
        2,
        "the refresh ran more than once"
    );
    let calls = |op| caches.iter().map(|(_, f)| f.calls_of(op)).sum::<usize>();
    assert_eq!(
        calls("set"),
        2,
        "the first value and the refresh, no lock keys"
    );
}
