//! The file backend: the conformance suite, crashes (a writer killed with
//! SIGKILL), damaged files, permissions, hostile keys, foreign files and
//! the bounds.
//!
//! Run with `cargo test -p cachette --all-features --test file`. Two tests
//! spawn this test binary again as a child process (`child_writer`,
//! `child_incrementer`); those return at once unless their environment
//! variable is set.

#![cfg(all(feature = "file", feature = "testing"))]

#[path = "support/durations.rs"]
mod durations;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use cachette::backends::file::FileBackend;
use cachette::testing::{Conformance, run_conformance};
use cachette::{Backend, ErrorKind, Expiry, KeyTtl, SetOptions};

/// A fresh directory under the system's temporary directory, removed on
/// drop. The directory itself does not exist yet.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "cachette-file-{name}-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn open(dir: &Path) -> FileBackend {
    FileBackend::builder(dir)
        .build()
        .expect("the file backend opens")
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                out.push(entry.path());
            }
        }
    }
    out
}

/// The entry files under `dir`: 32 hex digits.
fn entry_files(dir: &Path) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.len() == 32 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        })
        .collect()
}

// --- conformance ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_backend_conforms() {
    let (dir, sibling_dir) = (TempDir::new("conf"), TempDir::new("conf-sibling"));
    let subject: Arc<dyn Backend> = Arc::new(open(dir.path()));
    let sibling: Arc<dyn Backend> = Arc::new(open(sibling_dir.path()));
    let report = run_conformance(subject, Some(sibling)).await;
    println!("{report}");
    let skipped: Vec<&str> = report.skipped().map(|(check, _)| check).collect();
    // 512 MiB is above what the suite probes.
    assert_eq!(skipped, ["value_size_limit"], "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_file_backend_with_a_default_ttl_conforms() {
    let (dir, sibling_dir) = (TempDir::new("conf-bounded"), TempDir::new("conf-b-sibling"));
    let ttl = Duration::from_secs(60);
    let subject = FileBackend::builder(dir.path())
        .max_entries(100_000)
        .max_bytes(64 << 20)
        .max_value_len(2 << 20)
        .default_ttl(ttl)
        .build()
        .unwrap();
    assert_eq!(subject.capabilities().max_value_len, Some(2 << 20));
    let report = Conformance::new(Arc::new(subject))
        .sibling(Arc::new(open(sibling_dir.path())))
        .default_ttl(ttl)
        .run()
        .await;
    println!("{report}");
    assert_eq!(report.skipped().count(), 0, "{report}");
}

// --- crashes ---

const CHILD_DIR: &str = "CACHETTE_FILE_CHILD";
const CHILD_INCR_DIR: &str = "CACHETTE_FILE_CHILD_INCR";
const CRASH_KEYS: usize = 8;

/// FNV-1a 64, the checksum inside the crash test's values.
fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A self-checking value: `key|seq|filler|checksum`, 40 bytes to 40 KiB.
fn crash_value(key: &str, seq: u64) -> Vec<u8> {
    let filler_len = (seq.wrapping_mul(7919) % 40_000) as usize;
    let mut value = format!("{key}|{seq}|").into_bytes();
    value.extend((0..filler_len).map(|i| b'a' + ((i as u64 + seq) % 26) as u8));
    value.push(b'|');
    let checksum = fnv64(&value);
    value.extend_from_slice(format!("{checksum:016x}").as_bytes());
    value
}

/// Checks that `value` is one that `crash_value(key, _)` wrote.
fn check_crash_value(key: &str, value: &[u8]) {
    assert!(value.len() > 16, "{key}: a value of {} bytes", value.len());
    let (body, checksum) = value.split_at(value.len() - 16);
    let checksum = std::str::from_utf8(checksum).expect("the checksum is text");
    assert_eq!(
        format!("{:016x}", fnv64(body)),
        checksum,
        "{key}: a value whose checksum does not match (a mix or garbage)"
    );
    let prefix = format!("{key}|");
    assert!(
        body.starts_with(prefix.as_bytes()),
        "{key}: another key's value"
    );
}

/// The child of the crash test: writes, overwrites, deletes and counts in a
/// loop until it is killed (or 30 s have passed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_writer() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let cache = open(Path::new(&dir));
    println!("child-ready");
    let started = Instant::now();
    let mut seq: u64 = fastrand::u64(..1 << 40);
    while started.elapsed() < Duration::from_secs(30) {
        seq += 1;
        let key = format!("k{}", seq % CRASH_KEYS as u64);
        if seq.is_multiple_of(11) {
            cache.delete(&key).await.unwrap();
        } else {
            let options = SetOptions::new().tags(["crash"]);
            cache
                .set(&key, crash_value(&key, seq).into(), &options)
                .await
                .unwrap();
        }
        cache.incr("counter", 1, Expiry::Never).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_killed_at_any_moment_leaves_whole_entries_or_none() {
    let dir = TempDir::new("crash");
    drop(open(dir.path()));
    let exe = std::env::current_exe().unwrap();
    let mut last_counter = 0;
    let mut seen_values = 0;
    for round in 0..20 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "child_writer",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_DIR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the child process starts");
        let stdout = child.stdout.take().unwrap();
        let ready = tokio::task::spawn_blocking(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .any(|line| line.contains("child-ready"))
        })
        .await
        .unwrap();
        assert!(ready, "round {round}: the child never got ready");
        tokio::time::sleep(Duration::from_millis(fastrand::u64(20..=200))).await;
        child.kill().expect("SIGKILL reaches the child");
        child.wait().unwrap();

        let cache = open(dir.path());
        for i in 0..CRASH_KEYS {
            let key = format!("k{i}");
            if let Some(value) = cache.get(&key).await.unwrap() {
                check_crash_value(&key, &value);
                seen_values += 1;
            }
        }
        let counter: i64 = match cache.get("counter").await.unwrap() {
            Some(value) => std::str::from_utf8(&value).unwrap().parse().unwrap(),
            None => 0,
        };
        assert!(
            counter >= last_counter,
            "round {round}: the counter went back from {last_counter} to {counter}"
        );
        last_counter = counter;
        assert_eq!(
            cache.stats().await.unwrap().corrupt,
            0,
            "round {round}: a killed writer must not leave a damaged entry"
        );
    }
    assert!(
        seen_values > 0 && last_counter > 0,
        "the children never wrote anything"
    );
    let temps = files_under(dir.path())
        .iter()
        .filter(|p| p.to_string_lossy().contains(".tmp-"))
        .count();
    println!(
        "20 kills: counter at {last_counter}, {seen_values} values read back whole, \
         {temps} temporary files left by writes cut short"
    );
}

/// The child of the cross-process `incr` test: 200 increments, then exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_incrementer() {
    let Some(dir) = std::env::var_os(CHILD_INCR_DIR) else {
        return;
    };
    let cache = open(Path::new(&dir));
    for _ in 0..200 {
        cache.incr("shared", 1, Expiry::Never).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incr_is_atomic_across_processes() {
    let dir = TempDir::new("incr");
    let cache = open(dir.path());
    assert!(cache.capabilities().atomic_incr && cache.capabilities().conditional_set);
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..3)
        .map(|_| {
            Command::new(&exe)
                .args(["--exact", "child_incrementer", "--test-threads", "1"])
                .env(CHILD_INCR_DIR, dir.path())
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for _ in 0..200 {
        cache.incr("shared", 1, Expiry::Never).await.unwrap();
    }
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    assert_eq!(
        cache.get("shared").await.unwrap().as_deref(),
        Some(&b"800"[..])
    );
}

// --- damaged files ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_flipped_and_random_files_read_as_misses_and_are_counted() {
    let dir = TempDir::new("bad");
    let cache = open(dir.path());
    let keys: Vec<String> = (0..30).map(|i| format!("key-{i}")).collect();
    for (i, key) in keys.iter().enumerate() {
        let value: Vec<u8> = (0..(100 + i * 97)).map(|j| (j % 251) as u8).collect();
        let options = SetOptions::new().tags(["t"]);
        cache.set(key, value.into(), &options).await.unwrap();
    }
    let mut rng = fastrand::Rng::with_seed(42);
    for (i, key) in keys.iter().enumerate() {
        let path = cache.entry_path(key);
        let mut bytes = std::fs::read(&path).unwrap();
        match i % 3 {
            // Truncated anywhere, to nothing at all included.
            0 => bytes.truncate(rng.usize(..bytes.len())),
            // One byte flipped, in the header or the value.
            1 => {
                let at = rng.usize(..bytes.len());
                bytes[at] ^= 1 << rng.u8(..8);
            }
            // Replaced with random data of a random length.
            _ => bytes = (0..rng.usize(..5000)).map(|_| rng.u8(..)).collect(),
        }
        std::fs::write(&path, &bytes).unwrap();
    }
    let before = cache.stats().await.unwrap();
    for key in &keys {
        assert_eq!(cache.get(key).await.unwrap(), None, "{key}");
    }
    let after = cache.stats().await.unwrap();
    assert_eq!(after.corrupt - before.corrupt, 30);
    assert_eq!(after.misses - before.misses, 30);
    assert!(
        entry_files(dir.path()).is_empty(),
        "damaged files are removed"
    );

    // Damaged files found by other operations are misses too.
    cache
        .set("again", "v".into(), &SetOptions::new())
        .await
        .unwrap();
    std::fs::write(cache.entry_path("again"), b"garbage").unwrap();
    assert!(!cache.exists("again").await.unwrap());
    assert_eq!(cache.stats().await.unwrap().corrupt, 31);

    // The backend keeps working, for the same keys too.
    for key in &keys {
        cache
            .set(key, "fresh".into(), &SetOptions::new())
            .await
            .unwrap();
        assert_eq!(
            cache.get(key).await.unwrap().as_deref(),
            Some(&b"fresh"[..])
        );
    }
    assert_eq!(cache.invalidate_tags(&["t"]).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_file_found_at_open_or_by_a_scan_is_removed() {
    let dir = TempDir::new("bad-scan");
    let cache = open(dir.path());
    cache
        .set("a", "1".into(), &SetOptions::new())
        .await
        .unwrap();
    cache
        .set("b", "2".into(), &SetOptions::new())
        .await
        .unwrap();
    std::fs::write(cache.entry_path("a"), b"not an entry").unwrap();
    let reopened = open(dir.path());
    assert_eq!(reopened.stats().await.unwrap().corrupt, 1);
    assert_eq!(reopened.stats().await.unwrap().entries, 1);
    std::fs::write(cache.entry_path("b"), b"not an entry either").unwrap();
    reopened.purge_expired().await.unwrap();
    assert_eq!(reopened.stats().await.unwrap().corrupt, 2);
    assert!(entry_files(dir.path()).is_empty());
}

// --- the directory ---

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directories_are_0700_and_files_0600() {
    use std::os::unix::fs::PermissionsExt;
    let parent = TempDir::new("perm");
    let root = parent.path().join("nested").join("cache");
    let cache = open(&root);
    cache
        .set("k", "v".into(), &SetOptions::new())
        .await
        .unwrap();
    cache.incr("n", 1, Expiry::Never).await.unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let entry = cache.entry_path("k");
    let dirs = [
        parent.path().join("nested"),
        root.clone(),
        entry.parent().unwrap().to_path_buf(),
        entry.parent().unwrap().parent().unwrap().to_path_buf(),
        root.join(".cachette-locks"),
    ];
    for dir in &dirs {
        assert_eq!(mode(dir), 0o700, "{}", dir.display());
    }
    let files = files_under(&root);
    assert!(files.len() >= 4, "{files:?}"); // marker, two entries, locks
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_empty_foreign_directory_is_refused_unless_allowed() {
    let dir = TempDir::new("foreign");
    std::fs::create_dir_all(dir.path()).unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"mine").unwrap();
    let error = FileBackend::builder(dir.path()).build().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(
        error.message().contains(&dir.path().display().to_string()),
        "the error names the directory: {error}"
    );
    assert!(error.message().contains("allow_non_empty"), "{error}");

    let url = format!("file://{}", dir.path().display());
    let error = cachette::open(&url).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);

    let cache = FileBackend::builder(dir.path())
        .allow_non_empty(true)
        .build()
        .unwrap();
    // Once adopted, it carries the marker and opens without the option.
    drop(open(dir.path()));
    cache
        .set("k", "v".into(), &SetOptions::new())
        .await
        .unwrap();
    assert_eq!(cache.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_removes_entries_and_leaves_foreign_files_alone() {
    let dir = TempDir::new("clear");
    let cache = open(dir.path());
    for i in 0..20 {
        let key = format!("k{i}");
        cache
            .set(&key, "v".into(), &SetOptions::new())
            .await
            .unwrap();
    }
    let fan_out = cache.entry_path("k0").parent().unwrap().to_path_buf();
    let foreign = [
        dir.path().join("notes.txt"),
        fan_out.join("README"),
        fan_out.join("0123456789abcdef0123456789ABCDEF"),
        fan_out
            .parent()
            .unwrap()
            .join("0123456789abcdef0123456789abcdef"),
    ];
    for path in &foreign {
        std::fs::write(path, b"not yours").unwrap();
    }
    cache.clear().await.unwrap();
    assert_eq!(
        entry_files(dir.path()).len(),
        2,
        "only the foreign hex names remain"
    );
    for path in &foreign {
        assert_eq!(
            std::fs::read(path).unwrap(),
            b"not yours",
            "{}",
            path.display()
        );
    }
    for i in 0..20 {
        assert_eq!(cache.get(&format!("k{i}")).await.unwrap(), None);
    }
    assert_eq!(cache.stats().await.unwrap().entries, 0);
    // A reopened backend ignores the foreign files too.
    let reopened = open(dir.path());
    assert_eq!(reopened.stats().await.unwrap().corrupt, 0);
    assert_eq!(reopened.stats().await.unwrap().entries, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_keys_stay_inside_the_directory() {
    let parent = TempDir::new("keys");
    let root = parent.path().join("cache");
    let cache = open(&root);
    let absolute = format!("/cachette-test-{}-abs", std::process::id());
    let keys = [
        "../../etc/passwd".to_owned(),
        "../outside".to_owned(),
        absolute.clone(),
        "a\0b".to_owned(),
        "..".to_owned(),
        ".".to_owned(),
        ".cachette-cache".to_owned(),
        "C:\\windows\\x".to_owned(),
        "x".repeat(4000),
        "é/".repeat(1000),
    ];
    for (i, key) in keys.iter().enumerate() {
        let value = Bytes::from(format!("value-{i}"));
        cache
            .set(key, value.clone(), &SetOptions::new())
            .await
            .unwrap();
        assert_eq!(cache.get(key).await.unwrap(), Some(value), "{key:?}");
    }
    let listed: HashSet<String> = {
        use futures_util::StreamExt;
        let stream = cache.keys("*").await.unwrap();
        stream.map(|k| k.unwrap()).collect().await
    };
    assert_eq!(listed, keys.iter().cloned().collect::<HashSet<_>>());
    let beside: Vec<_> = std::fs::read_dir(parent.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(beside, ["cache"], "nothing is written beside the cache");
    assert!(!Path::new(&absolute).exists());
    assert_eq!(entry_files(&root).len(), keys.len());
    for file in files_under(&root) {
        assert!(file.starts_with(&root), "{}", file.display());
    }
    assert_eq!(
        std::fs::read_to_string(root.join(".cachette-cache")).unwrap(),
        "cachette file cache\nformat: 1\n",
        "a key named like the marker does not touch it"
    );
}

// --- bounds, TTL, sharing ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_keeps_the_entry_bound() {
    let dir = TempDir::new("evict");
    let cache = FileBackend::builder(dir.path())
        .max_entries(10)
        .build()
        .unwrap();
    for i in 0..100 {
        let key = format!("k{i}");
        cache
            .set(&key, "v".into(), &SetOptions::new())
            .await
            .unwrap();
        if i == 50 {
            // A read makes k45 the most recent: it survives the next nine writes.
            assert!(cache.get("k45").await.unwrap().is_some());
        }
    }
    assert!(entry_files(dir.path()).len() <= 10);
    let stats = cache.stats().await.unwrap();
    assert_eq!((stats.entries, stats.evictions), (10, 90));
    assert!(cache.get("k99").await.unwrap().is_some());
    assert!(cache.get("k0").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_keeps_the_byte_bound_across_a_reopen() {
    let dir = TempDir::new("evict-bytes");
    let value = Bytes::from(vec![7u8; 1000]);
    {
        let cache = FileBackend::builder(dir.path())
            .fsync(true)
            .build()
            .unwrap();
        for i in 0..10 {
            let key = format!("old{i}");
            cache
                .set(&key, value.clone(), &SetOptions::new())
                .await
                .unwrap();
        }
        // File times are coarse (a few ms): old and new must differ.
        tokio::time::sleep(Duration::from_millis(50)).await;
        for i in 0..15 {
            let key = format!("new{i}");
            cache
                .set(&key, value.clone(), &SetOptions::new())
                .await
                .unwrap();
        }
    }
    // Reopened with a bound that 18 entries fit: the oldest writes go.
    let cache = FileBackend::builder(dir.path())
        .max_bytes(20_000)
        .build()
        .unwrap();
    let total: u64 = entry_files(dir.path())
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(total <= 20_000, "{total} bytes on disk");
    let stats = cache.stats().await.unwrap();
    assert_eq!(
        (stats.bytes, stats.entries, stats.evictions),
        (total, 18, 7)
    );
    for i in 0..15 {
        let key = format!("new{i}");
        assert!(cache.get(&key).await.unwrap().is_some(), "{key}");
    }
    let error = cache
        .set("huge", vec![0u8; 20_000].into(), &SetOptions::new())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    assert!(error.message().contains("20000"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_deadlines_and_tags_survive_a_reopen() {
    let dir = TempDir::new("reopen");
    {
        let cache = open(dir.path());
        let tagged = SetOptions::new().tags(["group"]);
        cache.set("tagged", "v".into(), &tagged).await.unwrap();
        let short = SetOptions::new().ttl(Duration::from_millis(50));
        cache.set("short", "v".into(), &short).await.unwrap();
        let long = SetOptions::new().ttl(Duration::from_secs(60));
        cache.set("long", "v".into(), &long).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(80)).await;
    let cache = open(dir.path());
    // The scan at open removed the expired entry.
    assert_eq!(cache.stats().await.unwrap().expirations, 1);
    assert_eq!(cache.get("short").await.unwrap(), None);
    assert!(matches!(
        cache.ttl("long").await.unwrap(),
        KeyTtl::ExpiresIn(left) if left > Duration::from_secs(50)
    ));
    assert_eq!(cache.ttl("tagged").await.unwrap(), KeyTtl::Persistent);
    assert_eq!(cache.invalidate_tags(&["group"]).await.unwrap(), 1);
    assert_eq!(cache.get("tagged").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_expired_finds_what_other_backends_wrote() {
    let dir = TempDir::new("shared");
    let mine = open(dir.path());
    let theirs = open(dir.path());
    let short = SetOptions::new().ttl(Duration::from_millis(30)).tags(["t"]);
    theirs.set("a", "1".into(), &short).await.unwrap();
    theirs
        .set("b", "2".into(), &SetOptions::new().tags(["t"]))
        .await
        .unwrap();
    assert_eq!(mine.get("b").await.unwrap().as_deref(), Some(&b"2"[..]));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(mine.purge_expired().await.unwrap(), 1);
    assert_eq!(mine.stats().await.unwrap().entries, 1);
    assert_eq!(mine.invalidate_tags(&["t"]).await.unwrap(), 1);
    assert_eq!(theirs.get("b").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_opens_the_backend_with_its_options() {
    let dir = TempDir::new("url");
    let url = format!(
        "file://{}?max_bytes=64MiB&fsync=true&default_ttl=5m&max_entries=1000",
        dir.path().display()
    );
    let cache = cachette::open(&url).await.unwrap();
    assert_eq!(cache.name(), "file");
    let caps = cache.capabilities();
    assert!(caps.persistent && caps.shared && caps.tags && caps.key_listing);
    cache
        .set("k", "v".into(), &SetOptions::new())
        .await
        .unwrap();
    assert!(matches!(
        cache.ttl("k").await.unwrap(),
        KeyTtl::ExpiresIn(left) if left > Duration::from_secs(290)
    ));
    let info = cachette::schemes()
        .into_iter()
        .find(|s| s.scheme == "file")
        .unwrap();
    assert!(info.enabled && info.capabilities.is_some());
}

#[tokio::test(flavor = "current_thread")]
async fn a_current_thread_runtime_works_through_the_blocking_pool() {
    let dir = TempDir::new("current-thread");
    let cache = open(dir.path());
    cache
        .set("k", "v".into(), &SetOptions::new())
        .await
        .unwrap();
    assert_eq!(cache.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(cache.incr("n", 2, Expiry::Never).await.unwrap(), 2);
    let listed: Vec<String> = {
        use futures_util::TryStreamExt;
        cache.keys("*").await.unwrap().try_collect().await.unwrap()
    };
    assert_eq!(listed.len(), 2);
}

// --- sub-millisecond and extreme durations ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sub_millisecond_default_ttl_is_rounded_up_to_one_millisecond() {
    let dir = TempDir::new("sub-ms-ttl");
    let cache = FileBackend::builder(dir.path())
        .default_ttl(Duration::from_micros(300))
        .build()
        .unwrap();
    durations::a_sub_millisecond_default_ttl_reads_back(&cache).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_longest_durations_saturate_instead_of_panicking() {
    let dir = TempDir::new("huge-durations");
    let cache = FileBackend::builder(dir.path())
        .default_ttl(Duration::MAX)
        .build()
        .unwrap();
    durations::the_longest_durations_work(&cache).await;
}

// --- start-up ---

/// Opens the same fresh directory from `count` threads at once.
fn open_at_once(root: &Path, count: usize) -> Vec<cachette::Result<FileBackend>> {
    let barrier = Arc::new(std::sync::Barrier::new(count));
    let handles: Vec<_> = (0..count)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            let root = root.to_path_buf();
            std::thread::spawn(move || {
                barrier.wait();
                FileBackend::builder(&root).build()
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn many_openers_of_a_fresh_directory_at_once_all_succeed() {
    for round in 0..40 {
        let dir = TempDir::new("race");
        for result in open_at_once(dir.path(), 8) {
            if let Err(error) = result {
                panic!("round {round}: an opener failed: {error}");
            }
        }
    }
}

#[test]
fn a_directory_another_opener_is_preparing_opens() {
    // What an opener sees when another one, a moment ahead, has written
    // its marker under a temporary name and made its lock directory
    // between this one's look for the marker and its listing.
    let dir = TempDir::new("half-prepared");
    std::fs::create_dir_all(dir.path().join(".cachette-locks")).unwrap();
    std::fs::write(dir.path().join(".cachette-cache.tmp-0123456789abcdef"), b"").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    if let Err(error) = FileBackend::builder(dir.path()).build() {
        panic!("the directory is refused: {error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_opener() {
    let Ok(root) = std::env::var("CACHETTE_TEST_OPEN_DIR") else {
        return;
    };
    let start: u128 = std::env::var("CACHETTE_TEST_OPEN_AT")
        .unwrap()
        .parse()
        .unwrap();
    // Every child waits for the same moment, so that the opens overlap.
    loop {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        if now >= start {
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    match FileBackend::builder(&root).build() {
        Ok(_) => println!("OPENED"),
        Err(error) => println!("FAILED {error}: {:?}", std::error::Error::source(&error)),
    }
}

#[test]
fn processes_opening_a_fresh_directory_at_once_all_succeed() {
    let exe = std::env::current_exe().unwrap();
    for round in 0..5 {
        let dir = TempDir::new("race-processes");
        let start = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis()
            + 500;
        let children: Vec<_> = (0..4)
            .map(|_| {
                Command::new(&exe)
                    .args(["--exact", "child_opener", "--nocapture", "--test-threads=1"])
                    .env("CACHETTE_TEST_OPEN_DIR", dir.path())
                    .env("CACHETTE_TEST_OPEN_AT", start.to_string())
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let output = child.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&output.stdout);
            assert!(
                text.contains("OPENED"),
                "round {round}: a child could not open: {text}"
            );
        }
    }
}

#[cfg(unix)]
#[test]
fn a_root_writable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("world-writable");
    std::fs::create_dir_all(dir.path()).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let error = FileBackend::builder(dir.path()).build().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config, "{error}");
    assert!(error.message().contains("writable by others"), "{error}");
    assert!(
        error.message().contains(&dir.path().display().to_string()),
        "{error}"
    );
}

#[cfg(unix)]
#[test]
fn a_root_owned_by_another_user_is_refused() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        println!("skipped: only root can give a directory to another user");
        return;
    }
    let dir = TempDir::new("foreign-owner");
    std::fs::create_dir_all(dir.path()).unwrap();
    std::os::unix::fs::chown(dir.path(), Some(65534), Some(65534)).unwrap();
    let error = FileBackend::builder(dir.path()).build().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config, "{error}");
    assert!(error.message().contains("owned by another user"), "{error}");
    assert!(
        error.message().contains(&dir.path().display().to_string()),
        "{error}"
    );
}
