//! The near cache against real `redis-server` processes, with writes from
//! `redis-cli` (a client no part of cachette controls).
#![cfg(all(feature = "near", feature = "testing"))]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cachette::backends::memory::MemoryBackend;
use cachette::backends::near::{NearBackend, NearBuilder, Tracking};
use cachette::backends::redis::RedisBackend;
use cachette::testing::run_conformance;
use cachette::testing::servers::redis::RedisServer;
use cachette::{Backend, KeyTtl, SetOptions};

const TIMEOUT: Duration = Duration::from_millis(500);
/// How long a test waits for an invalidation to arrive (generous: a loaded
/// machine).
const BOUND: Duration = Duration::from_secs(2);

fn redis(server: &RedisServer, prefix: &str) -> cachette::backends::redis::RedisBuilder {
    RedisBackend::builder("127.0.0.1", server.port())
        .prefix(prefix)
        .connect_timeout(TIMEOUT)
        .response_timeout(TIMEOUT)
}

fn near(server: &RedisServer, prefix: &str) -> NearBuilder {
    NearBackend::builder(redis(server, prefix))
}

fn detail(stats: &cachette::Stats, name: &str) -> u64 {
    stats
        .details
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no `{name}` in {stats:?}"))
}

async fn stat(cache: &NearBackend, name: &str) -> u64 {
    detail(&cache.stats().await.unwrap(), name)
}

/// Polls `check` until it holds or `BOUND` passes.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < BOUND, "{what}: not within {BOUND:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn bytes(text: &str) -> Option<Bytes> {
    Some(Bytes::copy_from_slice(text.as_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_conforms_with_a_sibling_prefix_on_the_same_server() {
    let server = RedisServer::start();
    let subject: Arc<dyn Backend> = Arc::new(near(&server, "subject:").build().await.unwrap());
    let sibling: Arc<dyn Backend> = Arc::new(near(&server, "sibling:").build().await.unwrap());
    let report = run_conformance(subject, Some(sibling)).await;
    let skipped: Vec<&str> = report.skipped().map(|(check, _)| check).collect();
    assert_eq!(skipped, ["value_size_limit"], "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optin_near_conforms_too() {
    let server = RedisServer::start();
    let subject: Arc<dyn Backend> = Arc::new(
        near(&server, "subject:")
            .tracking(Tracking::OptIn)
            .build()
            .await
            .unwrap(),
    );
    let report = run_conformance(subject, None).await;
    assert!(report.passed() > 20, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_read_is_local_and_a_foreign_write_invalidates_it() {
    let server = RedisServer::start();
    let cache = near(&server, "app:").build().await.unwrap();
    server.cli(&["SET", "app:k", "one"]);
    assert_eq!(cache.get("k").await.unwrap(), bytes("one"));
    assert_eq!(cache.get("k").await.unwrap(), bytes("one"));
    assert_eq!(stat(&cache, "remote_hits").await, 1);
    assert_eq!(stat(&cache, "local_hits").await, 1);
    assert_eq!(cache.local().get("k").await.unwrap(), bytes("one"));

    server.cli(&["SET", "app:k", "two"]);
    eventually("the foreign write reaches the near cache", async || {
        cache.get("k").await.unwrap() == bytes("two")
    })
    .await;
    assert!(stat(&cache, "invalidations_received").await >= 1);
    // A key of another prefix is none of this cache's business.
    server.cli(&["SET", "other:k", "x"]);
    assert_eq!(cache.get("k").await.unwrap(), bytes("two"));
}

/// The race guard, with the ordering forced: the reply of a read is held
/// back until the invalidation of its key has been handled. The stale
/// reply is returned to that reader (it was the value when read) but must
/// not be kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_during_a_read_keeps_its_reply_out_of_the_local_store() {
    let server = RedisServer::start();
    let reached = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Notify::new());
    // Armed, the next read of "raced" stops before storing its reply.
    let armed = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (hook_reached, hook_release) = (Arc::clone(&reached), Arc::clone(&release));
    let hook_armed = Arc::clone(&armed);
    let cache = near(&server, "app:")
        .before_store(move |keys: Vec<String>| {
            let (reached, release) = (Arc::clone(&hook_reached), Arc::clone(&hook_release));
            let stop =
                keys.iter().any(|k| k == "raced") && hook_armed.swap(false, Ordering::SeqCst);
            async move {
                if stop {
                    reached.notify_one();
                    release.notified().await;
                }
            }
        })
        .build()
        .await
        .unwrap();
    server.cli(&["SET", "app:raced", "old"]);
    let reader = {
        let cache = cache.clone();
        tokio::spawn(async move { cache.get("raced").await })
    };
    reached.notified().await;
    // The read was answered with "old"; now the key changes.
    server.cli(&["SET", "app:raced", "new"]);
    eventually("the invalidation arrives", async || {
        stat(&cache, "invalidations_received").await >= 1
    })
    .await;
    release.notify_one();
    assert_eq!(reader.await.unwrap().unwrap(), bytes("old"));
    assert_eq!(
        cache.local().get("raced").await.unwrap(),
        None,
        "a reply older than an invalidation was kept"
    );
    assert_eq!(cache.get("raced").await.unwrap(), bytes("new"));

    // The same with a flush (FLUSHALL) in between. "raced" is local now:
    // drop it so that the read goes to the server.
    cache.local().delete("raced").await.unwrap();
    armed.store(true, Ordering::SeqCst);
    let reader = {
        let cache = cache.clone();
        tokio::spawn(async move { cache.get("raced").await })
    };
    reached.notified().await;
    let flushes = stat(&cache, "flushes").await;
    server.cli(&["FLUSHALL"]);
    eventually("the flush arrives", async || {
        stat(&cache, "flushes").await > flushes
    })
    .await;
    release.notify_one();
    assert_eq!(reader.await.unwrap().unwrap(), bytes("new"));
    assert_eq!(cache.local().get("raced").await.unwrap(), None);
    assert_eq!(cache.get("raced").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_copy_never_outlives_the_server_ttl() {
    let server = RedisServer::start();
    let cache = near(&server, "app:")
        .local_ttl(Duration::from_secs(60))
        .build()
        .await
        .unwrap();
    // The long key first, and a TTL that a slow redis-cli start cannot use up.
    server.cli(&["SET", "app:forever", "v"]);
    server.cli(&["SET", "app:short", "v", "PX", "2000"]);
    assert_eq!(cache.get("short").await.unwrap(), bytes("v"));
    assert_eq!(cache.get("forever").await.unwrap(), bytes("v"));
    match cache.local().ttl("short").await.unwrap() {
        KeyTtl::ExpiresIn(left) => assert!(left <= Duration::from_millis(2000), "{left:?}"),
        other => panic!("the local copy of a 2 s key must expire, found {other:?}"),
    }
    match cache.local().ttl("forever").await.unwrap() {
        KeyTtl::ExpiresIn(left) => assert!(left <= Duration::from_secs(60), "{left:?}"),
        other => panic!("local_ttl must bound a persistent key's copy, found {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(cache.get("short").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_flushes_and_tracking_is_back_before_local_hits() {
    let mut server = RedisServer::start();
    let cache = near(&server, "app:").build().await.unwrap();
    server.cli(&["SET", "app:k", "before"]);
    assert_eq!(cache.get("k").await.unwrap(), bytes("before"));
    assert_eq!(cache.local().get("k").await.unwrap(), bytes("before"));

    server.kill();
    eventually("the lost connection flushes the local store", async || {
        cache.local().get("k").await.unwrap().is_none()
    })
    .await;
    assert!(stat(&cache, "flushes").await >= 1);
    let err = cache.get("k").await.unwrap_err();
    assert!(err.is_temporary(), "{err}");

    server.restart();
    server.cli(&["SET", "app:k", "after"]);
    eventually("the same near cache serves again", async || {
        cache.get("k").await.ok().flatten() == bytes("after")
    })
    .await;
    let clients = server.cli(&["CLIENT", "LIST"]);
    assert!(
        clients.lines().any(|line| line
            .split(' ')
            .any(|f| f.starts_with("flags=") && f.contains('t'))),
        "tracking is on again: {clients}"
    );
    // Served locally now, and still invalidated.
    assert_eq!(cache.get("k").await.unwrap(), bytes("after"));
    server.cli(&["SET", "app:k", "later"]);
    eventually("invalidations work on the new connection", async || {
        cache.get("k").await.unwrap() == bytes("later")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushall_on_the_server_flushes_the_local_store() {
    let server = RedisServer::start();
    let cache = near(&server, "app:").build().await.unwrap();
    for db_flush in ["FLUSHALL", "FLUSHDB"] {
        cache
            .set("k", "v".into(), &SetOptions::new())
            .await
            .unwrap();
        cache
            .local()
            .set("untracked", "x".into(), &SetOptions::new())
            .await
            .unwrap();
        assert_eq!(cache.get("k").await.unwrap(), bytes("v"));
        let flushes = stat(&cache, "flushes").await;
        server.cli(&[db_flush]);
        eventually("the flush empties the local store", async || {
            cache.local().stats().await.unwrap().entries == 0
        })
        .await;
        assert_eq!(stat(&cache, "flushes").await, flushes + 1, "{db_flush}");
        assert_eq!(cache.get("k").await.unwrap(), None, "{db_flush}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_reads_its_own_writes_at_once() {
    let server = RedisServer::start();
    let cache = near(&server, "app:").build().await.unwrap();
    let counter_key = "n";
    for i in 0..200u32 {
        let value = i.to_string();
        cache
            .set("k", value.clone().into(), &SetOptions::new())
            .await
            .unwrap();
        // No wait: the local copy of the previous value must be gone.
        assert_eq!(cache.get("k").await.unwrap(), bytes(&value), "round {i}");
        assert_eq!(cache.get("k").await.unwrap(), bytes(&value), "round {i}");
        let n = cache
            .incr(counter_key, 1, cachette::Expiry::Never)
            .await
            .unwrap();
        assert_eq!(cache.get(counter_key).await.unwrap(), bytes(&n.to_string()));
    }
    cache.delete("k").await.unwrap();
    assert_eq!(cache.get("k").await.unwrap(), None);
    cache
        .set("t", "tagged".into(), &SetOptions::new().tags(["group"]))
        .await
        .unwrap();
    assert_eq!(cache.get("t").await.unwrap(), bytes("tagged"));
    cache.invalidate_tags(&["group"]).await.unwrap();
    assert_eq!(cache.get("t").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn derived_entries_go_with_any_of_their_sources() {
    let server = RedisServer::start();
    let local = MemoryBackend::builder()
        .max_entries(16)
        .shards(1)
        .build()
        .unwrap();
    let cache = near(&server, "app:")
        .local(Arc::new(local))
        .build()
        .await
        .unwrap();
    server.cli(&["SET", "app:a", "2"]);
    server.cli(&["SET", "app:b", "3"]);
    let runs = Arc::new(AtomicUsize::new(0));
    let sum = |runs: Arc<AtomicUsize>| {
        move |values: Vec<Option<Bytes>>| async move {
            runs.fetch_add(1, Ordering::SeqCst);
            let total: i64 = values
                .iter()
                .flatten()
                .map(|v| std::str::from_utf8(v).unwrap().parse::<i64>().unwrap())
                .sum();
            Ok(Bytes::from(total.to_string()))
        }
    };
    let derive = async || {
        cache
            .get_or_derive("sum", &["a", "b"], sum(Arc::clone(&runs)))
            .await
            .unwrap()
    };
    assert_eq!(derive().await, "5");
    assert_eq!(derive().await, "5");
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the second call is local");

    server.cli(&["SET", "app:b", "10"]);
    eventually(
        "a foreign write to a source drops the derived entry",
        async || derive().await == "12",
    )
    .await;
    let before = runs.load(Ordering::SeqCst);
    cache
        .set("a", "100".into(), &SetOptions::new())
        .await
        .unwrap();
    assert_eq!(
        derive().await,
        "110",
        "an own write to a source drops it at once"
    );
    assert_eq!(runs.load(Ordering::SeqCst), before + 1);

    // The tag index follows evictions: 200 derived entries in a store of
    // 16 leave at most 16 entries' worth of tags.
    for i in 0..200 {
        let source = format!("s{i}");
        cache
            .get_or_derive(&format!("d{i}"), &[source.as_str()], sum(Arc::clone(&runs)))
            .await
            .unwrap();
    }
    let local = cache.local().stats().await.unwrap();
    assert!(local.evictions > 0, "{local:?}");
    assert!(local.entries <= 16, "{local:?}");
    assert!(detail(&local, "tags") <= 2 * local.entries, "{local:?}");
    // ... and expiries: derived entries live no longer than their sources.
    server.cli(&["SET", "app:brief", "1", "PX", "1000"]);
    cache
        .get_or_derive("from-brief", &["brief"], sum(Arc::clone(&runs)))
        .await
        .unwrap();
    cache.local().clear().await.unwrap();
    cache
        .get_or_derive("from-brief", &["brief"], sum(Arc::clone(&runs)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    cache.local().purge_expired().await.unwrap();
    let local = cache.local().stats().await.unwrap();
    assert_eq!(local.entries, 0, "{local:?}");
    assert_eq!(detail(&local, "tags"), 0, "the tag index leaks: {local:?}");
}

/// `INFO commandstats` calls of `command`.
fn calls(server: &RedisServer, command: &str) -> u64 {
    let info = server.cli(&["INFO", "commandstats"]);
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_many_serves_local_hits_and_fetches_the_rest_in_one_round_trip() {
    for tracking in [Tracking::Default, Tracking::OptIn] {
        let server = RedisServer::start();
        let cache = near(&server, "app:")
            .tracking(tracking.clone())
            .build()
            .await
            .unwrap();
        for key in ["a", "b", "c", "d"] {
            server.cli(&["SET", &format!("app:{key}"), key]);
        }
        assert_eq!(cache.get("a").await.unwrap(), bytes("a"));
        assert_eq!(cache.get("b").await.unwrap(), bytes("b"));
        let (mget, pttl) = (calls(&server, "mget"), calls(&server, "pttl"));
        let found = cache
            .get_many(&["a", "c", "b", "d", "missing"])
            .await
            .unwrap();
        assert_eq!(
            found,
            vec![bytes("a"), bytes("c"), bytes("b"), bytes("d"), None]
        );
        assert_eq!(calls(&server, "mget"), mget + 1, "{tracking:?}: one MGET");
        assert_eq!(
            calls(&server, "pttl"),
            pttl + 3,
            "{tracking:?}: only the three keys not held locally"
        );
        // The batch read is tracked: foreign writes invalidate its keys.
        assert_eq!(cache.local().get("c").await.unwrap(), bytes("c"));
        server.cli(&["SET", "app:c", "C"]);
        server.cli(&["SET", "app:d", "D"]);
        eventually("batch-read keys are tracked", async || {
            cache.get_many(&["c", "d"]).await.unwrap() == vec![bytes("C"), bytes("D")]
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optin_tracks_only_the_near_reads_and_bcast_every_key_of_its_prefixes() {
    let server = RedisServer::start();
    let optin = near(&server, "app:")
        .tracking(Tracking::OptIn)
        .build()
        .await
        .unwrap();
    let default = near(&server, "app:").build().await.unwrap();
    server.cli(&["SET", "app:t", "1", "PX", "60000"]);
    // `ttl` sends PTTL without CLIENT CACHING yes: not tracked in OPTIN.
    optin.ttl("t").await.unwrap();
    default.ttl("t").await.unwrap();
    server.cli(&["SET", "app:t", "2"]);
    eventually("default mode tracks every read command", async || {
        stat(&default, "invalidations_received").await >= 1
    })
    .await;
    assert_eq!(
        stat(&optin, "invalidations_received").await,
        0,
        "OPTIN tracked a key it was not asked to"
    );

    let bcast = near(&server, "app:")
        .tracking(Tracking::Broadcast(vec!["p:".into()]))
        .build()
        .await
        .unwrap();
    server.cli(&["SET", "app:p:never-read", "x"]);
    eventually("BCAST announces keys never read", async || {
        stat(&bcast, "invalidations_received").await >= 1
    })
    .await;
    let seen = stat(&bcast, "invalidations_received").await;
    server.cli(&["SET", "app:q:other", "x"]);
    server.cli(&["SET", "app:p:k", "old"]);
    assert_eq!(bcast.get("p:k").await.unwrap(), bytes("old"));
    server.cli(&["SET", "app:p:k", "new"]);
    eventually("BCAST invalidates", async || {
        bcast.get("p:k").await.unwrap() == bytes("new")
    })
    .await;
    eventually("BCAST counts both announcements", async || {
        stat(&bcast, "invalidations_received").await >= seen + 2
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_url_form_opens_a_near_cache() {
    let server = RedisServer::start();
    let url = format!(
        "near+redis://127.0.0.1:{}/0?prefix=u:&tracking=optin&local_ttl=30s&local_max_entries=100",
        server.port()
    );
    let cache = cachette::open(&url).await.unwrap();
    assert_eq!(cache.name(), "near");
    cache
        .set("k", "v".into(), &SetOptions::new())
        .await
        .unwrap();
    assert_eq!(server.cli(&["GET", "u:k"]).trim(), "v");
    assert_eq!(cache.get("k").await.unwrap(), bytes("v"));

    for (bad, needle) in [
        ("tracking=sometimes", "tracking"),
        ("local_ttl=0s", "local_ttl"),
        ("bcast_prefixes=a", "bcast_prefixes"),
        ("local_max_entries=0", "max_entries"),
    ] {
        let url = format!("near+redis://127.0.0.1:{}/0?{bad}", server.port());
        let err = cachette::open(&url).await.unwrap_err();
        assert_eq!(err.kind(), cachette::ErrorKind::Config, "{bad}: {err}");
        assert!(err.to_string().contains(needle), "{bad}: {err}");
    }
}

/// Coherence under load: a reader hammers `get` through the near cache
/// while separate `redis-cli` processes write increasing values. Once a
/// write is acknowledged and `STALE_BOUND` has passed, no read may return
/// an older value. The delay until the reader stops seeing the old value
/// is measured and printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coherence_under_load_with_redis_cli_writing() {
    const KEYS: usize = 4;
    const WRITES: usize = 120;
    // Generous for a loaded machine: the bench measures the real delay.
    const STALE_BOUND: Duration = Duration::from_secs(1);
    let server = RedisServer::start();
    let cache = near(&server, "co:").build().await.unwrap();
    for k in 0..KEYS {
        server.cli(&["SET", &format!("co:k{k}"), "0"]);
    }
    let origin = Instant::now();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // (key, read start, read end, value), in µs since `origin`.
    let reader = {
        let (cache, stop) = (cache.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut reads = Vec::new();
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let k = i % KEYS;
                i += 1;
                let start = origin.elapsed();
                let value = cache.get(&format!("k{k}")).await.unwrap().unwrap();
                let end = origin.elapsed();
                let value: u64 = std::str::from_utf8(&value).unwrap().parse().unwrap();
                reads.push((k, start, end, value));
                if i.is_multiple_of(64) {
                    tokio::task::yield_now().await;
                }
            }
            reads
        })
    };
    // (key, acknowledged at, value)
    let mut writes = Vec::new();
    let port = server.port().to_string();
    for w in 1..=WRITES {
        let k = w % KEYS;
        let value = w.to_string();
        let key = format!("co:k{k}");
        let port = port.clone();
        let output = tokio::task::spawn_blocking(move || {
            std::process::Command::new("redis-cli")
                .args(["-h", "127.0.0.1", "-p", &port, "SET", &key, &value])
                .output()
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "OK");
        writes.push((k, origin.elapsed(), w as u64));
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    tokio::time::sleep(STALE_BOUND * 2).await;
    stop.store(true, Ordering::Relaxed);
    let reads = reader.await.unwrap();
    assert!(
        reads.len() > WRITES * 10,
        "the reader read only {} times",
        reads.len()
    );

    let mut delays = Vec::with_capacity(writes.len());
    let mut stale_past_bound = Vec::new();
    for &(k, acked, value) in &writes {
        // The last read that began after the acknowledgement and still saw
        // an older value.
        let last_old = reads
            .iter()
            .filter(|r| r.0 == k && r.1 >= acked && r.3 < value)
            .map(|r| r.1)
            .max();
        let delay = last_old.map_or(Duration::ZERO, |t| t - acked);
        delays.push(delay);
        if delay > STALE_BOUND {
            stale_past_bound.push((k, value, delay));
        }
    }
    delays.sort();
    let p = |q: f64| delays[((delays.len() - 1) as f64 * q).round() as usize];
    let stats = cache.stats().await.unwrap();
    println!(
        "near cache coherence: {} reads, {} writes by redis-cli, stale window after the acknowledgement p50 {:?} p99 {:?} max {:?}; local hits {}, remote hits {}",
        reads.len(),
        writes.len(),
        p(0.5),
        p(0.99),
        delays.last().unwrap(),
        detail(&stats, "local_hits"),
        detail(&stats, "remote_hits")
    );
    assert!(
        stale_past_bound.is_empty(),
        "stale reads past {STALE_BOUND:?} after the write was acknowledged: {stale_past_bound:?}"
    );
    assert!(
        detail(&stats, "local_hits") > detail(&stats, "remote_hits"),
        "the near cache served mostly from the server: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bcast_with_prefixes_reads_keys_outside_them_through_to_redis() {
    let server = RedisServer::start();
    let cache = near(&server, "app:")
        .tracking(Tracking::Broadcast(vec!["p:".into()]))
        .build()
        .await
        .unwrap();
    server.cli(&["SET", "app:q:k", "old"]);
    server.cli(&["SET", "app:q:source", "1"]);
    assert_eq!(cache.get("q:k").await.unwrap(), bytes("old"));
    assert_eq!(cache.get("q:k").await.unwrap(), bytes("old"));
    let derive = |values: Vec<Option<Bytes>>| async move { Ok(values[0].clone().unwrap()) };
    let derived = cache.get_or_derive("d", &["q:source"], derive).await;
    assert_eq!(derived.unwrap(), Bytes::from_static(b"1"));

    // The server announces nothing outside "p:": nothing there may be kept.
    server.cli(&["SET", "app:q:k", "new"]);
    server.cli(&["SET", "app:q:source", "2"]);
    assert_eq!(cache.get("q:k").await.unwrap(), bytes("new"));
    assert_eq!(cache.get_many(&["q:k"]).await.unwrap(), vec![bytes("new")]);
    let derived = cache.get_or_derive("d", &["q:source"], derive).await;
    assert_eq!(derived.unwrap(), Bytes::from_static(b"2"));
    assert_eq!(stat(&cache, "local_hits").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_too_long_for_the_local_store_does_not_lose_the_rest_of_its_invalidation_batch() {
    let server = RedisServer::start();
    let local = MemoryBackend::builder().max_key_len(16).build().unwrap();
    let cache = near(&server, "app:")
        .local(Arc::new(local))
        .tracking(Tracking::Broadcast(Vec::new()))
        .build()
        .await
        .unwrap();
    server.cli(&["SET", "app:k", "old"]);
    // In broadcast mode the server announces that SET too; on a loaded
    // machine the announcement can arrive after the first read and drop
    // its copy (as it must). Read until the local store holds the key.
    eventually("a read keeps a local copy", async || {
        cache.get("k").await.unwrap() == bytes("old")
            && cache.local().get("k").await.unwrap() == bytes("old")
    })
    .await;
    // One command, one broadcast batch: the long key and "k" together.
    let long = format!("app:{}", "x".repeat(100));
    server.cli(&["MSET", &long, "v", "app:k", "new"]);
    eventually(
        "the batch invalidates the key the local store holds",
        async || cache.local().get("k").await.unwrap().is_none(),
    )
    .await;
    assert_eq!(cache.get("k").await.unwrap(), bytes("new"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_limit_is_the_smaller_of_the_local_stores_and_redis() {
    let server = RedisServer::start();
    let local = MemoryBackend::builder()
        .max_bytes(8 * 1024)
        .build()
        .unwrap();
    let local_limit = local.capabilities().max_key_len;
    let remote_limit = redis(&server, "app:")
        .build()
        .await
        .unwrap()
        .capabilities()
        .max_key_len;
    assert!(
        local_limit < remote_limit,
        "the test needs a smaller local limit"
    );
    let cache = near(&server, "app:")
        .local(Arc::new(local))
        .build()
        .await
        .unwrap();
    let limit = cache.capabilities().max_key_len;
    assert_eq!(limit, local_limit);
    let longest = "k".repeat(limit);
    cache
        .set(&longest, Bytes::from_static(b"v"), &SetOptions::new())
        .await
        .unwrap();
    assert_eq!(cache.get(&longest).await.unwrap(), bytes("v"));
    assert_eq!(cache.get(&longest).await.unwrap(), bytes("v"));
    assert_eq!(stat(&cache, "local_hits").await, 1);
    let too_long = "k".repeat(limit + 1);
    let refused = cache
        .set(&too_long, Bytes::from_static(b"v"), &SetOptions::new())
        .await;
    assert_eq!(
        refused.unwrap_err().kind(),
        cachette::ErrorKind::InvalidInput
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_the_near_cache_count_as_inserts() {
    let server = RedisServer::start();
    let cache = near(&server, "app:").build().await.unwrap();
    cache
        .set("a", Bytes::from_static(b"1"), &SetOptions::new())
        .await
        .unwrap();
    let entries = [
        ("b", Bytes::from_static(b"2")),
        ("c", Bytes::from_static(b"3")),
    ];
    cache.set_many(&entries, &SetOptions::new()).await.unwrap();
    assert_eq!(cache.stats().await.unwrap().inserts, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_local_ttl_is_a_config_error_or_saturates_instead_of_panicking() {
    let server = RedisServer::start();
    let refused = near(&server, "app:").local_ttl(Duration::MAX).build().await;
    let refused = refused.unwrap_err();
    assert_eq!(refused.kind(), cachette::ErrorKind::Config);
    assert!(refused.message().contains("local_ttl"), "{refused}");
    let longest = Duration::from_millis(u64::MAX);
    let cache = near(&server, "app:").local_ttl(longest).build().await;
    let cache = cache.unwrap();
    server.cli(&["SET", "app:k", "v"]);
    server.cli(&["SET", "app:t", "v", "PX", "60000"]);
    for _ in 0..2 {
        assert_eq!(cache.get("k").await.unwrap(), bytes("v"));
        assert_eq!(cache.get("t").await.unwrap(), bytes("v"));
    }
    assert_eq!(stat(&cache, "local_hits").await, 2);
}
