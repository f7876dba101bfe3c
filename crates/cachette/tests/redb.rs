//! The redb backend: the conformance suite (the sibling is another
//! namespace of the same file), sharing one file between backends of one
//! process, persistence across a reopen, TTL purge, exact tags, and a
//! crash test that kills a writing child process with SIGKILL.
//!
//! Run with `cargo test -p cachette --all-features --test redb`.

#![cfg(all(feature = "redb", feature = "testing"))]

#[path = "support/durations.rs"]
mod durations;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cachette::backends::redb::{RedbBackend, RedbDurability};
use cachette::testing::{Conformance, Report, run_conformance};
use cachette::{Backend, ErrorKind, Expiry, KeyTtl, SetOptions};

/// A directory removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "cachette-redb-{name}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).expect("the temporary directory is created");
        TempDir(dir)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn open(path: &Path, namespace: &str) -> RedbBackend {
    RedbBackend::builder(path)
        .namespace(namespace)
        .build()
        .unwrap_or_else(|err| panic!("the redb backend opens: {err}"))
}

fn assert_skipped_only(report: &Report, expected: &[&str]) {
    println!("{report}");
    let skipped: Vec<&str> = report.skipped().map(|(check, _)| check).collect();
    assert_eq!(skipped, expected, "{report}");
}

use cachette::testing::list_keys as keys;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_backend_conforms() {
    let dir = TempDir::new("conformance");
    let path = dir.file("cache.redb");
    let subject = open(&path, "subject");
    let sibling = open(&path, "sibling");
    let report = run_conformance(Arc::new(subject), Some(Arc::new(sibling))).await;
    // 512 MiB values are not probed by the suite.
    assert_skipped_only(&report, &["value_size_limit"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_backend_from_a_url_with_limits_and_a_default_ttl_conforms() {
    let dir = TempDir::new("conformance-url");
    let path = dir.file("url cache.redb");
    let ttl = Duration::from_secs(60);
    let url = format!(
        "redb://{}?namespace=from-url&max_value_len=1MiB&default_ttl=60s&max_entries=100000&durability=eventual",
        path.display().to_string().replace(' ', "%20")
    );
    let subject = cachette::open(&url).await.expect("the URL opens");
    assert_eq!(subject.name(), "redb");
    // The sibling is built directly on the same file, in the same process.
    let sibling = open(&path, "built");
    let report = Conformance::new(subject)
        .sibling(Arc::new(sibling))
        .default_ttl(ttl)
        .run()
        .await;
    assert_skipped_only(&report, &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_on_one_file_share_it_and_keep_namespaces_apart() {
    let dir = TempDir::new("namespaces");
    let path = dir.file("shared.redb");
    let left = open(&path, "left");
    // redb refuses a second open of a file, so these only work through
    // the shared database.
    let right = open(&path, "right");
    let by_url = cachette::open(&format!("redb://{}?namespace=url", path.display()))
        .await
        .expect("a third backend on the same file");

    let plain = SetOptions::new();
    left.set("k", "left".into(), &plain).await.unwrap();
    right.set("k", "right".into(), &plain).await.unwrap();
    by_url.set("k", "url".into(), &plain).await.unwrap();
    left.set("only-left", "v".into(), &plain).await.unwrap();
    assert_eq!(left.get("k").await.unwrap().as_deref(), Some(&b"left"[..]));
    assert_eq!(
        right.get("k").await.unwrap().as_deref(),
        Some(&b"right"[..])
    );
    assert_eq!(by_url.get("k").await.unwrap().as_deref(), Some(&b"url"[..]));
    assert_eq!(right.get("only-left").await.unwrap(), None);
    assert_eq!(keys(&right, "*").await, ["k"]);
    assert_eq!(left.stats().await.unwrap().entries, 2);
    assert_eq!(right.stats().await.unwrap().entries, 1);

    // Tags and clear stay within their namespace.
    let tagged = SetOptions::new().tags(["t"]);
    left.set("tagged", "v".into(), &tagged).await.unwrap();
    right.set("tagged", "v".into(), &tagged).await.unwrap();
    assert_eq!(left.invalidate_tags(&["t"]).await.unwrap(), 1);
    assert!(right.exists("tagged").await.unwrap());
    left.clear().await.unwrap();
    assert_eq!(left.stats().await.unwrap().entries, 0);
    assert_eq!(
        right.get("k").await.unwrap().as_deref(),
        Some(&b"right"[..])
    );
    assert_eq!(by_url.get("k").await.unwrap().as_deref(), Some(&b"url"[..]));
    left.set("k", "again".into(), &plain).await.unwrap();
    assert_eq!(left.get("k").await.unwrap().as_deref(), Some(&b"again"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_deadlines_and_tags_survive_a_reopen() {
    let dir = TempDir::new("reopen");
    let path = dir.file("persist.redb");
    {
        let cache = open(&path, "p");
        let ttl = SetOptions::new()
            .ttl(Duration::from_secs(30))
            .tags(["group"]);
        cache.set("expiring", "e".into(), &ttl).await.unwrap();
        cache
            .set("forever", "f".into(), &SetOptions::new())
            .await
            .unwrap();
        cache
            .set(
                "short",
                "s".into(),
                &SetOptions::new().ttl(Duration::from_millis(50)),
            )
            .await
            .unwrap();
        assert_eq!(cache.incr("counter", 41, Expiry::Never).await.unwrap(), 41);
        cache.close().await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(80)).await;
    let cache = open(&path, "p");
    assert_eq!(
        cache.get("forever").await.unwrap().as_deref(),
        Some(&b"f"[..])
    );
    assert_eq!(cache.ttl("forever").await.unwrap(), KeyTtl::Persistent);
    match cache.ttl("expiring").await.unwrap() {
        KeyTtl::ExpiresIn(left) => assert!(
            left <= Duration::from_secs(30) && left > Duration::from_secs(25),
            "the absolute deadline must survive: {left:?} left"
        ),
        other => panic!("expected an expiring key, found {other:?}"),
    }
    assert_eq!(
        cache.get("short").await.unwrap(),
        None,
        "expired while closed"
    );
    assert_eq!(cache.incr("counter", 1, Expiry::Never).await.unwrap(), 42);
    assert_eq!(cache.invalidate_tags(&["group"]).await.unwrap(), 1);
    assert_eq!(cache.get("expiring").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_expired_removes_exactly_the_expired_entries() {
    const EACH: usize = 600;
    let dir = TempDir::new("purge");
    let path = dir.file("purge.redb");
    let cache = RedbBackend::builder(&path)
        .namespace("purge")
        .durability(RedbDurability::Eventual)
        .build()
        .unwrap();
    let ttl = Duration::from_millis(500);
    let short = SetOptions::new().ttl(ttl).tags(["short"]);
    let long = SetOptions::new()
        .ttl(Duration::from_secs(60))
        .tags(["long"]);
    let entries = |prefix: &str| -> Vec<(String, Bytes)> {
        (0..EACH)
            .map(|i| (format!("{prefix}:{i:04}"), Bytes::from(vec![b'v'; 64])))
            .collect()
    };
    // The short-lived entries are written last, so that no later write
    // removes any of them on the side.
    let mut written = Instant::now();
    for (prefix, options) in [
        ("long", &long),
        ("never", &SetOptions::new()),
        ("short", &short),
    ] {
        let batch = entries(prefix);
        let batch: Vec<(&str, Bytes)> =
            batch.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        written = Instant::now();
        cache.set_many(&batch, options).await.unwrap();
    }
    let total = 3 * EACH as u64;
    assert_eq!(cache.stats().await.unwrap().entries, total);
    if written.elapsed() < ttl {
        assert_eq!(
            cache.purge_expired().await.unwrap(),
            0,
            "nothing has expired yet"
        );
    }
    tokio::time::sleep_until((written + ttl + Duration::from_millis(50)).into()).await;
    // Expired entries read as misses before they are removed.
    assert_eq!(cache.get("short:0000").await.unwrap(), None);
    assert_eq!(cache.stats().await.unwrap().entries, total);

    assert_eq!(cache.purge_expired().await.unwrap(), EACH as u64);
    let stats = cache.stats().await.unwrap();
    assert_eq!(stats.entries, 2 * EACH as u64);
    assert_eq!(stats.expirations, EACH as u64);
    assert_eq!(cache.purge_expired().await.unwrap(), 0);
    assert_eq!(cache.invalidate_tags(&["short"]).await.unwrap(), 0);
    assert_eq!(keys(&cache, "short:*").await.len(), 0);
    assert_eq!(keys(&cache, "long:*").await.len(), EACH);
    assert_eq!(keys(&cache, "never:01?1").await.len(), 10);
    assert_eq!(
        keys(&cache, "never:0[0-1][0-1]1").await,
        ["never:0001", "never:0011", "never:0101", "never:0111"]
    );
    assert_eq!(cache.invalidate_tags(&["long"]).await.unwrap(), EACH as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_task_purges_expired_entries() {
    let dir = TempDir::new("background");
    let url = format!(
        "redb://{}?namespace=bg&purge_interval=50ms&durability=eventual",
        dir.file("bg.redb").display()
    );
    let cache = cachette::open(&url).await.unwrap();
    let short = SetOptions::new().ttl(Duration::from_millis(20));
    let batch: Vec<(&str, Bytes)> = vec![("a", "v".into()), ("b", "v".into()), ("c", "v".into())];
    cache.set_many(&batch, &short).await.unwrap();
    cache
        .set("kept", "v".into(), &SetOptions::new())
        .await
        .unwrap();
    let started = Instant::now();
    // No write and no purge_expired call from here on.
    while cache.stats().await.unwrap().entries > 1 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the background purge never ran"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = cache.stats().await.unwrap();
    assert_eq!(stats.expirations, 3);
    assert!(cache.exists("kept").await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_stay_exact_through_overwrite_delete_and_expiry() {
    let dir = TempDir::new("tags");
    let cache = open(&dir.file("tags.redb"), "tags");
    let with = |tags: &[&str]| SetOptions::new().tags(tags.iter().copied());
    cache
        .set("overwritten", "1".into(), &with(&["a"]))
        .await
        .unwrap();
    cache
        .set("overwritten", "2".into(), &with(&["b"]))
        .await
        .unwrap();
    cache
        .set("deleted", "1".into(), &with(&["a", "b"]))
        .await
        .unwrap();
    assert!(cache.delete("deleted").await.unwrap());
    cache
        .set("deleted", "2".into(), &SetOptions::new())
        .await
        .unwrap();
    cache
        .set(
            "expired",
            "1".into(),
            &with(&["a"]).ttl(Duration::from_millis(30)),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    cache
        .set("expired", "2".into(), &with(&["c"]))
        .await
        .unwrap();

    assert_eq!(cache.invalidate_tags(&["a"]).await.unwrap(), 0);
    for key in ["overwritten", "deleted", "expired"] {
        assert!(cache.exists(key).await.unwrap(), "{key} must survive tag a");
    }
    assert_eq!(cache.invalidate_tags(&["b"]).await.unwrap(), 1);
    assert_eq!(cache.get("overwritten").await.unwrap(), None);
    assert!(cache.exists("deleted").await.unwrap(), "deleted lost tag b");
    assert_eq!(cache.invalidate_tags(&["c", "b"]).await.unwrap(), 1);
    assert_eq!(keys(&cache, "*").await, ["deleted"]);
    let stats = cache.stats().await.unwrap();
    assert_eq!(stats.invalidations, 2);
    assert_eq!(stats.expirations, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_entries_from_a_url_bounds_the_namespace() {
    let dir = TempDir::new("bounded");
    let url = format!(
        "redb://{}?namespace=small&max_entries=10&durability=eventual",
        dir.file("small.redb").display()
    );
    let cache = cachette::open(&url).await.unwrap();
    for i in 0..25 {
        cache
            .set(&format!("k{i:02}"), "v".into(), &SetOptions::new())
            .await
            .unwrap();
    }
    let stats = cache.stats().await.unwrap();
    assert_eq!(stats.entries, 10);
    assert_eq!(stats.evictions, 15);
    let expected: Vec<String> = (15..25).map(|i| format!("k{i:02}")).collect();
    assert_eq!(
        keys(&*cache, "*").await,
        expected,
        "the oldest writes go first"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_urls_and_paths_are_config_errors_that_name_the_problem() {
    let dir = TempDir::new("errors");
    for (url, expected) in [
        ("redb://relative.redb", "absolute path"),
        ("redb:///tmp/x.redb?namespace=a/b", "namespace"),
        ("redb:///tmp/x.redb?max_value_len=4GiB", "max_value_len"),
        ("redb:///tmp/x.redb?durability=never", "durability"),
    ] {
        let err = cachette::open(url).await.expect_err(url);
        assert_eq!(err.kind(), ErrorKind::Config, "{url}: {err}");
        assert!(err.to_string().contains(expected), "{url}: {err}");
    }
    let not_a_db = dir.file("notes.txt");
    std::fs::write(
        &not_a_db,
        "these are not the pages you are looking for".repeat(200),
    )
    .unwrap();
    let err = cachette::open(&format!("redb://{}", not_a_db.display()))
        .await
        .expect_err("not a database");
    assert!(
        matches!(err.kind(), ErrorKind::Config | ErrorKind::Backend),
        "{err}"
    );
    assert!(err.to_string().contains("notes.txt"), "{err}");

    let redb = cachette::schemes()
        .into_iter()
        .find(|s| s.scheme == "redb")
        .expect("redb is a known scheme");
    assert!(redb.enabled);
    let caps = redb.capabilities.expect("capabilities");
    assert!(caps.persistent && !caps.shared && caps.atomic_incr && caps.tags);
}

// ---------------------------------------------------------------------------
// Crash test: a child process writes until it is killed.

/// The child reads its database path from this variable; without it the
/// `child_writer` test does nothing.
const CHILD_ENV: &str = "CACHETTE_REDB_CHILD";
/// `immediate` or `eventual`.
const CHILD_DURABILITY_ENV: &str = "CACHETTE_REDB_CHILD_DURABILITY";
const CRASH_KEYS: usize = 24;
const CRASH_NAMESPACE: &str = "crash";

fn fnv1a_64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// `key|counter|padding|checksum`: the padding varies the length, the
/// checksum covers everything before it.
fn crash_value(key: &str, counter: u64) -> Vec<u8> {
    let padding = "x".repeat((counter.wrapping_mul(7919) % 3000) as usize);
    let body = format!("{key}|{counter}|{padding}|");
    format!("{body}{:016x}", fnv1a_64(body.as_bytes())).into_bytes()
}

/// Whether `value` is one that [`crash_value`] wrote for `key`.
fn is_crash_value(key: &str, value: &[u8]) -> bool {
    let Some(split) = value.len().checked_sub(16) else {
        return false;
    };
    let (body, checksum) = value.split_at(split);
    let Ok(checksum) = std::str::from_utf8(checksum) else {
        return false;
    };
    let Ok(text) = std::str::from_utf8(body) else {
        return false;
    };
    let mut parts = text.splitn(3, '|');
    let (Some(found_key), Some(counter), Some(rest)) = (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Ok(counter) = counter.parse::<u64>() else {
        return false;
    };
    found_key == key
        && checksum == format!("{:016x}", fnv1a_64(body))
        && rest.trim_end_matches('|').len() == (counter.wrapping_mul(7919) % 3000) as usize
}

fn crash_key(i: usize) -> String {
    format!("key:{i:02}")
}

/// Runs only as the child of `writes_survive_sigkill_and_read_back_whole`:
/// writes, overwrites and deletes keys until it is killed.
#[test]
fn child_writer() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let durability = match std::env::var(CHILD_DURABILITY_ENV).as_deref() {
        Ok("eventual") => RedbDurability::Eventual,
        _ => RedbDurability::Immediate,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let cache = RedbBackend::builder(&path)
        .namespace(CRASH_NAMESPACE)
        .durability(durability)
        .build()
        .expect("the child opens the database");
    runtime.block_on(async move {
        let mut counter = fastrand::u64(..1 << 40);
        let mut round = 0u64;
        loop {
            for i in 0..CRASH_KEYS {
                counter += 1;
                let key = crash_key(i);
                let options = match i % 3 {
                    0 => SetOptions::new().tags(["crash", "even"]),
                    1 => SetOptions::new()
                        .ttl(Duration::from_secs(3600))
                        .tags(["crash"]),
                    _ => SetOptions::new(),
                };
                cache
                    .set(&key, crash_value(&key, counter).into(), &options)
                    .await
                    .expect("set");
            }
            // A batch of four in one transaction, and a delete.
            let batch: Vec<(String, Bytes)> = (0..4)
                .map(|j| {
                    counter += 1;
                    let key = crash_key((round as usize * 4 + j) % CRASH_KEYS);
                    let value = crash_value(&key, counter).into();
                    (key, value)
                })
                .collect();
            let batch: Vec<(&str, Bytes)> =
                batch.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
            cache
                .set_many(&batch, &SetOptions::new().tags(["crash"]))
                .await
                .expect("set_many");
            cache
                .delete(&crash_key(round as usize % CRASH_KEYS))
                .await
                .expect("delete");
            if round == 0 {
                // Tell the parent the database is open and being written.
                std::fs::write(format!("{path}.ready"), b"ready").expect("the ready file");
            }
            round += 1;
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_survive_sigkill_and_read_back_whole() {
    let dir = TempDir::new("crash");
    let path = dir.file("crash.redb");
    let ready = PathBuf::from(format!("{}.ready", path.display()));
    let exe = std::env::current_exe().expect("the test binary");
    let mut seen_values = 0;
    for run in 0..20 {
        let durability = if run % 2 == 0 {
            "immediate"
        } else {
            "eventual"
        };
        let mut child = std::process::Command::new(&exe)
            .args(["--exact", "child_writer", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &path)
            .env(CHILD_DURABILITY_ENV, durability)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the child starts");
        let waited = Instant::now();
        while !ready.exists() {
            if let Some(status) = child.try_wait().expect("try_wait") {
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    use std::io::Read;
                    let _ = pipe.read_to_string(&mut stderr);
                }
                panic!("run {run}: the child exited early ({status}): {stderr}");
            }
            assert!(
                waited.elapsed() < Duration::from_secs(20),
                "run {run}: the child never became ready"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if run == 0 {
            // The child holds the file: this process cannot open it, and
            // the error says why.
            let err = RedbBackend::builder(&path)
                .namespace(CRASH_NAMESPACE)
                .build()
                .expect_err("the file is locked by the child");
            assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
            assert!(err.message().contains("another process"), "{err}");
        }
        tokio::time::sleep(Duration::from_millis(fastrand::u64(20..=200))).await;
        child.kill().expect("SIGKILL");
        let status = child.wait().expect("the child is reaped");
        assert!(
            !status.success(),
            "run {run}: the child must have been killed"
        );
        std::fs::remove_file(&ready).expect("the ready file is removed");

        let cache = RedbBackend::builder(&path)
            .namespace(CRASH_NAMESPACE)
            .build()
            .unwrap_or_else(|err| panic!("run {run}: reopen after SIGKILL: {err}"));
        let all: Vec<String> = (0..CRASH_KEYS).map(crash_key).collect();
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let values = cache.get_many(&refs).await.expect("get_many");
        let mut present = Vec::new();
        for (key, value) in all.iter().zip(&values) {
            if let Some(value) = value {
                assert!(
                    is_crash_value(key, value),
                    "run {run}: {key} reads as a value never written for it ({} bytes: {:?}...)",
                    value.len(),
                    String::from_utf8_lossy(&value[..value.len().min(40)])
                );
                present.push(key.clone());
                seen_values += 1;
            }
        }
        // The indexes agree with the entries.
        assert_eq!(keys(&cache, "*").await, present, "run {run}: keys");
        let stats = cache.stats().await.expect("stats");
        assert_eq!(stats.entries, present.len() as u64, "run {run}: entries");
        assert_eq!(stats.corrupt, 0, "run {run}: corrupt entries");
        if run == 19 {
            let tagged = cache.invalidate_tags(&["crash"]).await.expect("invalidate");
            let left = keys(&cache, "*").await;
            assert_eq!(
                tagged as usize + left.len(),
                present.len(),
                "run {run}: tags"
            );
        }
        cache.close().await.expect("close");
    }
    assert!(seen_values > 0, "the children must have written something");
}

// --- sub-millisecond and extreme durations ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sub_millisecond_default_ttl_is_rounded_up_to_one_millisecond() {
    let dir = TempDir::new("sub-ms-ttl");
    let cache = RedbBackend::builder(dir.file("c.redb"))
        .durability(RedbDurability::Eventual)
        .default_ttl(Duration::from_micros(300))
        .build()
        .unwrap();
    durations::a_sub_millisecond_default_ttl_reads_back(&cache).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_longest_durations_saturate_instead_of_panicking() {
    let dir = TempDir::new("huge-durations");
    let cache = RedbBackend::builder(dir.file("c.redb"))
        .durability(RedbDurability::Eventual)
        .default_ttl(Duration::MAX)
        .purge_interval(Duration::MAX)
        .build()
        .unwrap();
    durations::the_longest_durations_work(&cache).await;
}
