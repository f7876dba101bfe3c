//! The PostgreSQL backend against real servers started by
//! `cachette::testing::servers::postgres` (initdb in a temporary
//! directory, a free port; never the machine's own server).
#![cfg(all(feature = "postgres", feature = "testing"))]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cachette::backends::postgres::PostgresBackend;
use cachette::testing::servers::postgres::PostgresServer;
use cachette::testing::{Conformance, list_keys};
use cachette::{Backend, ErrorKind, Expiry, SetOptions};

#[path = "support/tls.rs"]
mod tls;

/// The timeouts of backends that run the conformance suite: its checks
/// are about semantics, so a loaded machine gets all the time it needs.
const CONFORMANCE_TIMEOUT: &str = "10s";

async fn open(server: &PostgresServer, params: &str) -> Arc<dyn Backend> {
    let url = format!(
        "{}?connect_timeout={CONFORMANCE_TIMEOUT}&statement_timeout={CONFORMANCE_TIMEOUT}&max_value_len=8MiB&{params}",
        server.url()
    );
    cachette::open(&url)
        .await
        .unwrap_or_else(|err| panic!("open {url}: {err}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conforms_with_a_sibling_prefix() {
    let server = PostgresServer::start();
    let subject = open(&server, "prefix=subject:").await;
    let sibling = open(&server, "prefix=sibling:").await;
    let report = Conformance::new(subject).sibling(sibling).run().await;
    assert!(report.skipped().next().is_none(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_ttl_conforms() {
    let server = PostgresServer::start();
    let subject = open(&server, "prefix=ttl:&default_ttl=60s").await;
    let sibling = open(&server, "prefix=other:").await;
    let report = Conformance::new(subject)
        .sibling(sibling)
        .default_ttl(Duration::from_secs(60))
        .run()
        .await;
    assert!(report.skipped().next().is_none(), "{report}");
}

/// The table is made UNLOGGED (and logged on request), with its version
/// row; the sweeper deletes expired rows on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_table_is_unlogged_and_the_sweeper_removes_expired_rows() {
    let server = PostgresServer::start();
    let backend = open(&server, "sweep_interval=200ms").await;
    assert_eq!(
        server.psql("SELECT relpersistence FROM pg_class WHERE relname = 'cachette_cache'"),
        "u"
    );
    assert_eq!(
        server.psql("SELECT value FROM cachette_cache_meta WHERE name = 'schema_version'"),
        "1"
    );
    // Long enough that the 51 rows are all there when counted, however
    // slow the machine.
    let short = SetOptions::new().ttl(Duration::from_secs(5));
    for i in 0..50 {
        backend
            .set(&format!("short{i}"), Bytes::from("v"), &short)
            .await
            .unwrap();
    }
    backend
        .set("forever", Bytes::from("v"), &SetOptions::new())
        .await
        .unwrap();
    let rows = || server.psql("SELECT count(*) FROM cachette_cache");
    assert_eq!(rows(), "51");
    cachette::testing::servers::wait_until(
        "the sweeper to delete the expired rows",
        Duration::from_secs(30),
        || rows() == "1",
    );
    assert!(backend.stats().await.unwrap().expirations >= 50);

    let _logged = open(&server, "table=durable&unlogged=false").await;
    assert_eq!(
        server.psql("SELECT relpersistence FROM pg_class WHERE relname = 'durable'"),
        "p"
    );
}

/// Keys that are SQL or LIKE syntax are data: quotes, `%`, `_`,
/// backslashes, Unicode, 4 KiB; `keys` patterns with those characters
/// match them literally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_keys_round_trip_literally() {
    let server = PostgresServer::start();
    let backend = open(&server, "prefix=h%25_:").await;
    let long = "k".repeat(4096);
    let keys = [
        "'; DROP TABLE cachette_cache; --",
        "quote'double\"",
        "100%",
        "under_score",
        r"back\slash",
        r"\%\_",
        "ünïcödé·€😀",
        long.as_str(),
    ];
    for (i, key) in keys.iter().enumerate() {
        let value = Bytes::from(format!("value{i}"));
        backend
            .set(key, value.clone(), &SetOptions::new())
            .await
            .unwrap();
        assert_eq!(backend.get(key).await.unwrap(), Some(value), "{key}");
    }
    assert_eq!(server.psql("SELECT count(*) FROM cachette_cache"), "8");
    let mut listed = list_keys(backend.as_ref(), "*").await;
    listed.sort();
    let mut expected: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
    expected.sort();
    assert_eq!(listed, expected);
    // `%` and `_` in a pattern are literal: `100%` matches itself only.
    assert_eq!(list_keys(backend.as_ref(), "100%").await, vec!["100%"]);
    assert_eq!(
        list_keys(backend.as_ref(), "under_*").await,
        vec!["under_score"]
    );
    assert!(list_keys(backend.as_ref(), "under%").await.is_empty());
    // NUL cannot be stored in text: a clear error, before any I/O.
    let err = backend
        .set("nul\0key", Bytes::from("v"), &SetOptions::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.message().contains("NUL"), "{err}");
    assert_eq!(backend.get("nul\0key").await.unwrap(), None);
    // A key one byte over the limit is refused and names the limit.
    let err = backend.get(&"k".repeat(4097)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.message().contains("4096"), "{err}");
}

async fn impatient(server: &PostgresServer) -> PostgresBackend {
    PostgresBackend::builder("127.0.0.1", server.port(), "cachette", "postgres")
        .password("never-shown-secret")
        .prefix("fault:")
        .connect_timeout(Duration::from_secs(2))
        .statement_timeout(Duration::from_secs(2))
        .pool_size(8)
        .build()
        .await
        .unwrap()
}

/// Runs gets and sets from 16 tasks until `stop`; returns the successes,
/// the failures, and the slowest operation. Panics on an error that is
/// not `Connection`/`Timeout`, or that shows the password.
async fn workload(backend: &PostgresBackend, length: Duration) -> (u64, u64, Duration) {
    let mut tasks = Vec::new();
    for task in 0..16_u64 {
        let backend = backend.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut failed, mut slowest) = (0_u64, 0_u64, Duration::ZERO);
            let started = Instant::now();
            let mut i = task;
            while started.elapsed() < length {
                let key = format!("key{}", i % 200);
                i += 7;
                let began = Instant::now();
                let outcome = if i % 2 == 0 {
                    backend.get(&key).await.map(|_| ())
                } else {
                    backend
                        .set(&key, Bytes::from("v"), &SetOptions::new())
                        .await
                        .map(|_| ())
                };
                slowest = slowest.max(began.elapsed());
                match outcome {
                    Ok(()) => ok += 1,
                    Err(err) => {
                        assert!(
                            matches!(err.kind(), ErrorKind::Connection | ErrorKind::Timeout),
                            "{err}"
                        );
                        assert!(!format!("{err} {err:?}").contains("never-shown"), "{err:?}");
                        failed += 1;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
            (ok, failed, slowest)
        }));
    }
    let (mut ok, mut failed, mut slowest) = (0, 0, Duration::ZERO);
    for task in tasks {
        let (o, f, s) = task.await.unwrap();
        ok += o;
        failed += f;
        slowest = slowest.max(s);
    }
    (ok, failed, slowest)
}

/// The server crashes under a concurrent workload: operations fail with
/// `Connection`/`Timeout` within the deadline (4 s here, plus slack for a
/// loaded machine), nothing hangs; after the restart the same backend
/// serves again, on an emptied (UNLOGGED) table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_server_gives_errors_in_time_and_the_backend_recovers() {
    let mut server = PostgresServer::start();
    let backend = impatient(&server).await;
    let (ok, failed, _) = workload(&backend, Duration::from_millis(500)).await;
    assert!(
        ok > 0 && failed == 0,
        "before the crash: {ok} ok, {failed} failed"
    );

    let during = {
        let backend = backend.clone();
        tokio::spawn(async move { workload(&backend, Duration::from_secs(2)).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.crash();
    let (_, failed, slowest) = during.await.unwrap();
    assert!(failed > 0, "no operation failed while the server was down");
    assert!(
        slowest < Duration::from_secs(10),
        "an operation took {slowest:?} with the server down"
    );

    server.restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match backend
            .set("after", Bytes::from("v"), &SetOptions::new())
            .await
        {
            Ok(_) => break,
            Err(err) => {
                assert!(Instant::now() < deadline, "never recovered: {err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert_eq!(backend.get("after").await.unwrap(), Some(Bytes::from("v")));
    // A crash empties an unlogged table: nothing from before is left.
    assert_eq!(backend.get("key1").await.unwrap(), None);
}

/// A frozen server (accepts, never answers): every operation times out
/// within its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_times_out() {
    let server = PostgresServer::start();
    let backend = impatient(&server).await;
    backend
        .set("k", Bytes::from("v"), &SetOptions::new())
        .await
        .unwrap();
    server.freeze();
    let began = Instant::now();
    let err = backend.get("k").await.unwrap_err();
    let took = began.elapsed();
    server.thaw();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(backend.get("k").await.unwrap(), Some(Bytes::from("v")));
}

/// `max_entries` keeps the newest-written rows, `max_bytes` bounds the
/// `size` column's sum; the oldest go first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounds_evict_the_oldest_rows_first() {
    let server = PostgresServer::start();
    let backend = open(&server, "max_entries=50&sweep_batch=7&sweep_interval=1h").await;
    for i in 0..120 {
        backend
            .set(&format!("k{i:03}"), Bytes::from("v"), &SetOptions::new())
            .await
            .unwrap();
    }
    // Rewriting an old key makes it new.
    backend
        .set("k000", Bytes::from("again"), &SetOptions::new())
        .await
        .unwrap();
    backend.purge_expired().await.unwrap();
    assert_eq!(server.psql("SELECT count(*) FROM cachette_cache"), "50");
    assert!(backend.exists("k000").await.unwrap());
    assert!(backend.exists("k119").await.unwrap());
    assert!(!backend.exists("k070").await.unwrap());
    assert!(backend.exists("k071").await.unwrap());
    assert_eq!(backend.stats().await.unwrap().evictions, 70);

    let bytes = open(&server, "table=by_bytes&max_bytes=20KiB&sweep_interval=1h").await;
    for i in 0..100 {
        bytes
            .set(
                &format!("k{i:03}"),
                Bytes::from(vec![b'x'; 900]),
                &SetOptions::new(),
            )
            .await
            .unwrap();
    }
    bytes.purge_expired().await.unwrap();
    let stats = bytes.stats().await.unwrap();
    assert!(stats.bytes <= 20 * 1024, "{} bytes kept", stats.bytes);
    assert!(stats.entries >= 15, "{} entries kept", stats.entries);
    assert!(bytes.exists("k099").await.unwrap());
    assert!(!bytes.exists("k000").await.unwrap());
}

/// `migrate=false` creates nothing and says what to do; a table of a
/// later layout is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_explicit_and_versions_checked() {
    let server = PostgresServer::start();
    let url = format!("{}?table=planned&migrate=false", server.url());
    let err = cachette::open(&url).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.message().contains("migrat"), "{err}");
    let backend = PostgresBackend::builder("127.0.0.1", server.port(), "cachette", "postgres")
        .table("planned")
        .build()
        .await
        .unwrap();
    backend.migrate().await.unwrap();
    cachette::open(&url).await.unwrap();
    // A table dropped under a running backend is created again on use.
    server.psql("DROP TABLE planned");
    backend
        .set("k", Bytes::from("v"), &SetOptions::new())
        .await
        .unwrap();
    assert_eq!(backend.get("k").await.unwrap(), Some(Bytes::from("v")));
    server.psql("UPDATE planned_meta SET value = '99' WHERE name = 'schema_version'");
    let err = cachette::open(&url).await.unwrap_err();
    assert!(err.message().contains("version 99"), "{err}");
}

/// Counters are atomic under contention from two backends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_are_atomic_across_instances() {
    let server = PostgresServer::start();
    let one = open(&server, "").await;
    let two = open(&server, "").await;
    let mut tasks = Vec::new();
    for task in 0..8 {
        let backend = if task % 2 == 0 {
            one.clone()
        } else {
            two.clone()
        };
        tasks.push(tokio::spawn(async move {
            for _ in 0..50 {
                backend.incr("hits", 1, Expiry::Never).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(one.get("hits").await.unwrap(), Some(Bytes::from("400")));
    // The rules of every backend, also where the statement's quick check
    // differs from them: 20 digits with leading zeros are a counter, a
    // plus sign is not.
    let never = SetOptions::new();
    one.set("zeros", Bytes::from("00000000000000000042"), &never)
        .await
        .unwrap();
    assert_eq!(one.incr("zeros", 1, Expiry::Never).await.unwrap(), 43);
    one.set("plus", Bytes::from("+5"), &never).await.unwrap();
    let err = one.incr("plus", 1, Expiry::Never).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotAnInteger, "{err}");
    one.set("max", Bytes::from(i64::MAX.to_string()), &never)
        .await
        .unwrap();
    let err = one.incr("max", 1, Expiry::Never).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Overflow, "{err}");
}

/// TLS through rustls: `require` verifies the chain against `ca_cert`,
/// `verify-full` the host name too; an unknown CA is refused; the
/// conformance suite passes over TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_conforms_and_verifies_the_server() {
    let files = tls::certificates();
    let server = PostgresServer::start_tls(&files);
    let ca = files.ca.display().to_string();
    let subject = open(
        &server,
        &format!("prefix=s:&sslmode=verify-full&ca_cert={ca}"),
    )
    .await;
    let sibling = open(&server, &format!("prefix=o:&sslmode=require&ca_cert={ca}")).await;
    let report = Conformance::new(subject.clone())
        .sibling(sibling)
        .run()
        .await;
    assert!(report.skipped().next().is_none(), "{report}");
    assert!(subject.health().await.is_ok());
    let plain = server.psql(
        "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
         WHERE a.application_name = 'cachette' AND NOT s.ssl",
    );
    let encrypted = server.psql(
        "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
         WHERE a.application_name = 'cachette' AND s.ssl",
    );
    assert_eq!(plain, "0", "every connection of the backends is encrypted");
    assert_ne!(encrypted, "0");
    // A CA nobody configured: the handshake fails, the error says so.
    let other = tls::certificates();
    let url = format!(
        "{}?sslmode=require&ca_cert={}&connect_timeout=5s",
        server.url(),
        other.ca.display()
    );
    let err = cachette::open(&url).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
    // `prefer` takes TLS when offered.
    let preferred = open(&server, &format!("prefix=p:&sslmode=prefer&ca_cert={ca}")).await;
    preferred
        .set("k", Bytes::from("v"), &SetOptions::new())
        .await
        .unwrap();
}

/// Sweepers take turns: while another session holds the table's advisory
/// lock, a pass removes nothing; once it is let go, the next pass removes
/// every expired row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweepers_take_turns_by_the_advisory_lock() {
    let server = PostgresServer::start();
    let backend = PostgresBackend::builder("127.0.0.1", server.port(), "cachette", "postgres")
        .sweep_interval(Duration::from_secs(3600))
        .build()
        .await
        .unwrap();
    let short = SetOptions::new().ttl(Duration::from_millis(50));
    for i in 0..30 {
        backend
            .set(&format!("k{i}"), Bytes::from("v"), &short)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let lock = backend.sweeper_lock();
    // The lock is held until this test ends the session.
    let mut holder = server
        .psql_command()
        .arg("-c")
        .arg(format!("SELECT pg_advisory_lock({lock}), pg_sleep(600)"))
        .spawn()
        .unwrap();
    let held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted";
    cachette::testing::servers::wait_until(
        "psql to hold the lock",
        Duration::from_secs(30),
        || server.psql(held) == "1",
    );
    assert_eq!(
        backend.purge_expired().await.unwrap(),
        0,
        "a pass ran under another's lock"
    );
    // The session goes, and its lock with it.
    server.psql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE query LIKE '%pg_sleep(600)%' AND pid <> pg_backend_pid()",
    );
    let _ = holder.wait();
    cachette::testing::servers::wait_until("the lock to go", Duration::from_secs(30), || {
        server.psql(held) == "0"
    });
    assert_eq!(backend.purge_expired().await.unwrap(), 30);
}
