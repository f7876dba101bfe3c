//! The Redis backend at its edges: sub-millisecond and huge durations,
//! no tokio runtime, a cluster without slots, and a very large tag.
#![cfg(all(feature = "redis", feature = "testing"))]

#[path = "support/block_on.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use cachette::backends::redis::RedisBackend;
use cachette::testing::servers::redis::{RedisCluster, RedisServer};
use cachette::{Backend, ErrorKind, Expiry, KeyTtl, SetOptions};

use support::block_on;

const TIMEOUT: Duration = Duration::from_millis(500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sub_millisecond_default_ttl_expires_after_one_millisecond_not_never() {
    let server = RedisServer::start();
    let cache = RedisBackend::builder("127.0.0.1", server.port())
        .default_ttl(Duration::from_micros(300))
        .build()
        .await
        .unwrap();
    // Plain, tagged, incr and touch: each gives the key a deadline.
    cache
        .set("plain", "v".into(), &SetOptions::new())
        .await
        .unwrap();
    let tagged = SetOptions::new().tags(["t"]);
    cache.set("tagged", "v".into(), &tagged).await.unwrap();
    cache.incr("counter", 1, Expiry::Default).await.unwrap();
    cache
        .set(
            "touched",
            "v".into(),
            &SetOptions::new().expiry(Expiry::Never),
        )
        .await
        .unwrap();
    cache.touch("touched", Expiry::Default).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    for key in ["plain", "tagged", "counter", "touched"] {
        assert_eq!(cache.ttl(key).await.unwrap(), KeyTtl::Missing, "{key}");
        assert_eq!(server.cli(&["EXISTS", key]).trim(), "0", "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_durations_in_urls_and_builders_never_panic() {
    let server = RedisServer::start();
    let port = server.port();
    let huge = "18446744073709551615s";
    for option in ["connect_timeout", "response_timeout", "default_ttl"] {
        let url = format!("redis://127.0.0.1:{port}/?{option}={huge}");
        if let Err(err) = cachette::open(&url).await {
            assert_eq!(err.kind(), ErrorKind::Config, "{url}: {err}");
            assert!(err.message().contains(option), "{url}: {err}");
        }
    }
    let builders = [
        (
            "connect_timeout",
            RedisBackend::builder("127.0.0.1", port).connect_timeout(Duration::MAX),
        ),
        (
            "response_timeout",
            RedisBackend::builder("127.0.0.1", port).response_timeout(Duration::MAX),
        ),
        (
            "default_ttl",
            RedisBackend::builder("127.0.0.1", port).default_ttl(Duration::MAX),
        ),
        (
            "connect_timeout",
            RedisBackend::cluster_builder([("127.0.0.1", port)]).connect_timeout(Duration::MAX),
        ),
        (
            "response_timeout",
            RedisBackend::sentinel_builder([("127.0.0.1", port)], "m")
                .response_timeout(Duration::MAX),
        ),
    ];
    for (option, builder) in builders {
        match builder.build().await {
            Ok(cache) => {
                // Working: a write with the default TTL is an error or works.
                let _ = cache.set("k", "v".into(), &SetOptions::new()).await;
                cache.health().await.unwrap();
            }
            Err(err) => {
                assert_eq!(err.kind(), ErrorKind::Config, "{option}: {err}");
                assert!(err.message().contains(option), "{option}: {err}");
            }
        }
    }
}

#[test]
fn building_outside_a_tokio_runtime_is_an_unsupported_error() {
    let server = RedisServer::start();
    let url = server.url();
    let err = block_on(cachette::open(&url)).map(|_| ()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(err.message().contains("tokio"), "{err}");
    let builder = RedisBackend::builder("127.0.0.1", server.port());
    let err = block_on(builder.build()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
}

#[test]
fn operations_from_a_thread_without_a_runtime_are_unsupported_errors() {
    let server = RedisServer::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cache = runtime.block_on(
        RedisBackend::builder("127.0.0.1", server.port())
            .connect_timeout(TIMEOUT)
            .response_timeout(TIMEOUT)
            .build(),
    );
    let cache = cache.unwrap();
    let outcome = std::thread::spawn(move || {
        let results = [
            block_on(cache.get("k")).map(|_| ()),
            block_on(cache.set("k", "v".into(), &SetOptions::new())).map(|_| ()),
            block_on(cache.delete("k")).map(|_| ()),
            block_on(cache.incr("n", 1, Expiry::Never)).map(|_| ()),
            block_on(cache.keys("*")).map(|_| ()),
            block_on(cache.clear()),
            block_on(cache.health()),
        ];
        results
            .into_iter()
            .map(|result| result.map_err(|err| (err.kind(), err.to_string())))
            .collect::<Vec<_>>()
    })
    .join()
    .expect("no panic on a plain thread");
    for result in outcome {
        let (kind, message) = result.unwrap_err();
        assert_eq!(kind, ErrorKind::Unsupported, "{message}");
        assert!(message.contains("tokio"), "{message}");
    }
    drop(runtime);
}

/// Unassigns every slot in every node's view of `cluster`, until each
/// answers `CLUSTER SLOTS` with an empty list (gossip may bring a slot back
/// once, before its owner dropped it too).
async fn drop_every_slot(cluster: &RedisCluster) {
    for _ in 0..50 {
        let mut left = 0;
        for port in cluster.ports() {
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            let slots: Vec<redis::Value> = redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query_async(&mut conn)
                .await
                .unwrap();
            if slots.is_empty() {
                continue;
            }
            left += 1;
            let mut pipe = redis::pipe();
            for slot in 0..16384 {
                pipe.cmd("CLUSTER").arg("DELSLOTS").arg(slot).ignore();
            }
            // Slots already unassigned answer errors; the others are gone.
            let _ = pipe.query_async::<()>(&mut conn).await;
        }
        if left == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the cluster kept some slots");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_clear_on_a_cluster_without_slots_are_errors_saying_so() {
    let cluster = RedisCluster::start(3);
    let cache = RedisBackend::cluster_builder(cluster.seeds())
        .connect_timeout(TIMEOUT)
        .response_timeout(TIMEOUT)
        .build()
        .await
        .unwrap();
    drop_every_slot(&cluster).await;
    for result in [cache.keys("*").await.map(|_| ()), cache.clear().await] {
        let err = result.unwrap_err();
        assert!(err.message().contains("no slots"), "{err}");
    }
}

/// Writes `count` entries `k0`, `k1`, ... tagged `tag` straight into the
/// server (the backend's key layout, no prefix), in short Lua loops.
fn write_tagged_entries(server: &RedisServer, tag: &str, count: u32) {
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let fill = redis::Script::new(
        r"
for i = tonumber(ARGV[2]), tonumber(ARGV[3]) do
  local key = 'k' .. i
  redis.call('SET', key, 'v')
  redis.call('SADD', '\255k:' .. key, ARGV[1])
  redis.call('SADD', '\255t:' .. ARGV[1], key)
end
return 1
",
    );
    let chunk = 20_000;
    for start in (0..count).step_by(chunk) {
        let end = (start + chunk as u32).min(count) - 1;
        let _: i64 = fill.arg(tag).arg(start).arg(end).invoke(&mut conn).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidating_a_tag_of_a_million_entries_never_blocks_the_server() {
    const ENTRIES: u32 = 1_000_000;
    let server = RedisServer::start();
    write_tagged_entries(&server, "big", ENTRIES);
    assert_eq!(
        server.cli(&["DBSIZE"]).trim(),
        (2 * ENTRIES + 1).to_string()
    );
    let cache = RedisBackend::builder("127.0.0.1", server.port())
        .connect_timeout(Duration::from_secs(5))
        .response_timeout(Duration::from_secs(60))
        .build()
        .await
        .unwrap();
    // The server's own view: every command that runs a second or longer
    // is logged (a loaded machine can stretch a short script past 50 ms of
    // wall time, so that bound is checked on PINGs, not here), and the
    // scripts are counted (the filling above is not).
    server.cli(&["CONFIG", "SET", "slowlog-log-slower-than", "1000000"]);
    server.cli(&["SLOWLOG", "RESET"]);
    server.cli(&["CONFIG", "RESETSTAT"]);

    // PINGs on a connection of their own, every 5 ms, from a thread of
    // their own; every wait is kept. The server runs no script for more
    // than a few ms, so a PING waits that long at most; the bounds leave
    // room for a loaded machine descheduling the server or the thread now
    // and then (a script over the whole tag held every PING for seconds).
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pinger = {
        let stop = Arc::clone(&stop);
        let client = redis::Client::open(server.url()).unwrap();
        std::thread::spawn(move || {
            let mut conn = client.get_connection().unwrap();
            let mut waits = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let sent = std::time::Instant::now();
                // A server busy in a script answers `BUSY`: as bad as late.
                let answer: redis::RedisResult<String> = redis::cmd("PING").query(&mut conn);
                waits.push(match answer {
                    Ok(_) => sent.elapsed(),
                    Err(_) => Duration::MAX,
                });
                std::thread::sleep(Duration::from_millis(5));
            }
            waits
        })
    };
    let removed = cache.invalidate_tags(&["big"]).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut waits = pinger.join().unwrap();
    assert_eq!(removed.unwrap(), u64::from(ENTRIES));
    waits.sort_unstable();
    let p99 = waits[waits.len() * 99 / 100];
    let slowest = waits[waits.len() - 1];
    eprintln!(
        "{} PINGs during the invalidation: p50 {:?}, p99 {p99:?}, slowest {slowest:?}",
        waits.len(),
        waits[waits.len() / 2]
    );
    assert!(
        p99 < Duration::from_millis(50) && slowest < Duration::from_secs(1),
        "{} PINGs: p99 {p99:?}, slowest {slowest:?}",
        waits.len()
    );
    // The work was cut into bounded steps, whatever the load: at least a
    // thousand scripts (a thousand members each at most, on average), and
    // none ran for a second.
    let info = server.cli(&["INFO", "commandstats"]);
    let scripts: u64 = info
        .lines()
        .find_map(|line| line.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().unwrap());
    assert!(scripts >= 1_000, "{scripts} scripts for {ENTRIES} members");
    assert_eq!(
        server.cli(&["SLOWLOG", "LEN"]).trim(),
        "0",
        "commands of a second or more: {}",
        server.cli(&["SLOWLOG", "GET", "10"])
    );
    assert_eq!(server.cli(&["DBSIZE"]).trim(), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_overwrites_and_expiry_take_keys_out_of_their_tag_sets() {
    let server = RedisServer::start();
    let cache = RedisBackend::builder("127.0.0.1", server.port())
        .build()
        .await
        .unwrap();
    let members = |tag: &str| {
        server.cli(&[
            "EVAL",
            "return redis.call('SCARD', '\\255t:' .. ARGV[1])",
            "0",
            tag,
        ])
    };
    let tagged = SetOptions::new().tags(["a", "b"]);
    for key in ["deleted", "overwritten", "retagged"] {
        cache.set(key, "v".into(), &tagged).await.unwrap();
    }
    assert_eq!(members("a").trim(), "3");
    cache.delete("deleted").await.unwrap();
    cache
        .set("overwritten", "w".into(), &SetOptions::new())
        .await
        .unwrap();
    cache
        .set("retagged", "w".into(), &SetOptions::new().tags(["c"]))
        .await
        .unwrap();
    assert_eq!(members("a").trim(), "0");
    assert_eq!(members("b").trim(), "0");
    assert_eq!(members("c").trim(), "1");

    // 100 entries of tag `e` expire; 300 later writes of the tag sweep
    // their names out (a few random members per write), all but a few.
    let short = SetOptions::new()
        .tags(["e"])
        .expiry(Expiry::After(Duration::from_millis(1)));
    for i in 0..100 {
        cache
            .set(&format!("old{i}"), "v".into(), &short)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let long = SetOptions::new().tags(["e"]);
    for i in 0..300 {
        cache
            .set(&format!("new{i}"), "v".into(), &long)
            .await
            .unwrap();
    }
    let left: u64 = members("e").trim().parse().unwrap();
    assert!((300..330).contains(&left), "{left} members");
}
