//! Tests that look inside the tables: the indexes stay exact, corrupt
//! values read as misses, stale index rows are harmless.

use std::time::Duration;

use bytes::Bytes;

use super::store::{self, Header, TableNames};
use super::*;

/// A temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A path named `name` in a new temporary directory.
fn temp_path(name: &str) -> (TempDir, PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "cachette-redb-unit-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    let path = dir.join(name);
    (TempDir(dir), path)
}

fn backend(path: &Path, namespace: &str) -> RedbBackend {
    RedbBackend::builder(path)
        .namespace(namespace)
        .durability(RedbDurability::Eventual)
        .build()
        .expect("the backend builds")
}

/// Panics if an index of `backend`'s namespace disagrees with its entries.
fn assert_indexes_exact(backend: &RedbBackend) {
    let db = backend.inner.database().expect("open");
    let txn = db.begin_read().expect("read transaction");
    if let Err(problem) = store::check_indexes(&txn, &backend.inner.tables) {
        panic!("{problem}");
    }
}

/// Every (tag, key) row of the tag index.
fn tag_rows(backend: &RedbBackend) -> Vec<(String, String)> {
    use redb::{ReadableMultimapTable, ReadableTableMetadata};
    let db = backend.inner.database().expect("open");
    let txn = db.begin_read().expect("read transaction");
    let table = txn
        .open_multimap_table(backend.inner.tables.tags())
        .expect("tags table");
    let mut rows = Vec::new();
    for row in table.iter().expect("iter") {
        let (tag, keys) = row.expect("row");
        for key in keys {
            let key = key.expect("key");
            rows.push((
                String::from_utf8(tag.value().to_vec()).expect("utf-8"),
                String::from_utf8(key.value().to_vec()).expect("utf-8"),
            ));
        }
    }
    let _ = table.len();
    rows
}

fn expiry_rows(backend: &RedbBackend) -> u64 {
    use redb::ReadableTableMetadata;
    let db = backend.inner.database().expect("open");
    let txn = db.begin_read().expect("read transaction");
    txn.open_table(backend.inner.tables.expiry())
        .expect("expiry table")
        .len()
        .expect("len")
}

fn tagged(tags: &[&str]) -> SetOptions {
    SetOptions::new().tags(tags.iter().copied())
}

#[test]
fn header_round_trips_and_short_values_are_corrupt() {
    let header = Header {
        deadline: 1_700_000_000_123,
        seq: 42,
    };
    let mut raw = header.encode().to_vec();
    raw.extend_from_slice(b"value");
    assert_eq!(Header::decode(&raw), Some(header));
    assert_eq!(Header::decode(&raw[..15]), None);
    assert_eq!(Header::decode(b""), None);
    assert!(header.is_expired(1_700_000_000_123));
    assert!(!header.is_expired(1_700_000_000_122));
    assert!(
        !Header {
            deadline: 0,
            seq: 1
        }
        .is_expired(u64::MAX)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_rows_follow_overwrite_delete_incr_and_touch() {
    let (_dir, path) = temp_path("tags.redb");
    let b = backend(&path, "tags");
    b.set("a", "1".into(), &tagged(&["t1", "t2"]))
        .await
        .unwrap();
    b.set("b", "2".into(), &tagged(&["t2"])).await.unwrap();
    b.set("c", "3".into(), &tagged(&["t3"])).await.unwrap();
    assert_indexes_exact(&b);

    // Overwrite with other tags, without tags, delete.
    b.set("a", "1b".into(), &tagged(&["t3"])).await.unwrap();
    b.set("b", "2b".into(), &SetOptions::new()).await.unwrap();
    assert!(b.delete("c").await.unwrap());
    assert_indexes_exact(&b);
    assert_eq!(tag_rows(&b), [("t3".to_owned(), "a".to_owned())]);

    // incr and touch keep the tags.
    b.set("n", "1".into(), &tagged(&["counter"])).await.unwrap();
    assert_eq!(b.incr("n", 2, Expiry::Default).await.unwrap(), 3);
    assert!(
        b.touch("n", Expiry::After(Duration::from_secs(60)))
            .await
            .unwrap()
    );
    assert_indexes_exact(&b);
    assert_eq!(b.invalidate_tags(&["counter"]).await.unwrap(), 1);
    assert_eq!(b.invalidate_tags(&["t3", "t3"]).await.unwrap(), 1);
    assert_indexes_exact(&b);
    assert!(tag_rows(&b).is_empty());
    assert_eq!(b.get("b").await.unwrap().as_deref(), Some(&b"2b"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_removes_tag_and_deadline_rows() {
    let (_dir, path) = temp_path("expiry.redb");
    let b = backend(&path, "expiry");
    b.set(
        "long",
        "v".into(),
        &SetOptions::new()
            .ttl(Duration::from_secs(60))
            .tags(["gone"]),
    )
    .await
    .unwrap();
    b.set("forever", "v".into(), &SetOptions::new())
        .await
        .unwrap();
    // One transaction, so that no write removes any of them on the side.
    let short = SetOptions::new()
        .ttl(Duration::from_millis(100))
        .tags(["gone"]);
    let keys: Vec<String> = (0..40).map(|i| format!("short:{i}")).collect();
    let batch: Vec<(&str, Bytes)> = keys
        .iter()
        .map(|k| (k.as_str(), Bytes::from("v")))
        .collect();
    b.set_many(&batch, &short).await.unwrap();
    assert_eq!(expiry_rows(&b), 41);
    tokio::time::sleep(Duration::from_millis(150)).await;

    // One write removes up to 16 expired entries on the side.
    b.set("other", "v".into(), &SetOptions::new())
        .await
        .unwrap();
    assert_eq!(expiry_rows(&b), 41 - store::PURGE_PER_WRITE);
    assert_indexes_exact(&b);

    assert_eq!(
        b.purge_expired().await.unwrap(),
        40 - store::PURGE_PER_WRITE
    );
    assert_eq!(expiry_rows(&b), 1);
    assert_indexes_exact(&b);
    assert_eq!(tag_rows(&b), [("gone".to_owned(), "long".to_owned())]);
    let stats = b.stats().await.unwrap();
    assert_eq!(stats.expirations, 40);
    assert_eq!(stats.entries, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_value_reads_as_a_miss_and_is_replaced() {
    let (_dir, path) = temp_path("corrupt.redb");
    let b = backend(&path, "corrupt");
    b.set("k", "v".into(), &tagged(&["t"])).await.unwrap();
    {
        let db = b.inner.database().unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut entries = txn.open_table(b.inner.tables.entries()).unwrap();
            entries.insert(&b"k"[..], &b"short"[..]).unwrap();
            entries.insert(&b"other"[..], &b""[..]).unwrap();
        }
        txn.commit().unwrap();
    }
    assert_eq!(b.get("k").await.unwrap(), None);
    assert_eq!(b.get_many(&["other", "k"]).await.unwrap(), [None, None]);
    assert!(!b.exists("k").await.unwrap());
    assert_eq!(b.ttl("k").await.unwrap(), KeyTtl::Missing);
    assert_eq!(b.stats().await.unwrap().corrupt, 3);
    let mut keys: Vec<String> = b.keys("*").await.unwrap().try_collect().await.unwrap();
    keys.sort();
    assert!(keys.is_empty(), "{keys:?}");

    // A write of the key replaces the corrupt value and drops its tags.
    assert!(
        b.set("k", "new".into(), &SetOptions::new().if_absent())
            .await
            .unwrap()
    );
    assert_eq!(b.get("k").await.unwrap().as_deref(), Some(&b"new"[..]));
    assert_eq!(b.invalidate_tags(&["t"]).await.unwrap(), 0);
    assert_eq!(b.incr("other", 1, Expiry::Default).await.unwrap(), 1);
    assert_eq!(
        b.stats().await.unwrap().corrupt,
        5,
        "3 reads and 2 writes found one"
    );
    // The stale write-order and deadline rows of the corrupt values are
    // dropped by eviction and purge without harm.
    assert_eq!(b.purge_expired().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_entries_evicts_the_oldest_writes() {
    let (_dir, path) = temp_path("bounded.redb");
    let b = RedbBackend::builder(&path)
        .namespace("bounded")
        .max_entries(3)
        .durability(RedbDurability::Eventual)
        .build()
        .unwrap();
    for key in ["a", "b", "c"] {
        b.set(key, Bytes::from(key), &tagged(&["all"]))
            .await
            .unwrap();
    }
    // Overwriting `a` makes it the newest write; `touch` does not.
    b.set("a", "a2".into(), &tagged(&["all"])).await.unwrap();
    assert!(b.touch("b", Expiry::Never).await.unwrap());
    b.set("d", "d".into(), &tagged(&["all"])).await.unwrap();
    assert_eq!(b.get("b").await.unwrap(), None, "b was the oldest write");
    for key in ["a", "c", "d"] {
        assert!(b.get(key).await.unwrap().is_some(), "{key} must survive");
    }
    b.set_many(&[("e", "e".into()), ("f", "f".into())], &SetOptions::new())
        .await
        .unwrap();
    let stats = b.stats().await.unwrap();
    assert_eq!(stats.entries, 3);
    assert_eq!(stats.evictions, 3);
    assert_indexes_exact(&b);
    assert_eq!(
        b.invalidate_tags(&["all"]).await.unwrap(),
        1,
        "only d is left of the tagged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_on_one_file_share_the_database() {
    let (_dir, path) = temp_path("shared.redb");
    let one = backend(&path, "one");
    let two = backend(&path, "two");
    assert!(Arc::ptr_eq(
        &one.inner.database().unwrap(),
        &two.inner.database().unwrap()
    ));
    // Another spelling of the same path finds the same database.
    let dir = path.parent().unwrap();
    let spelled = dir.join(".").join("shared.redb");
    let three = backend(&spelled, "three");
    assert!(Arc::ptr_eq(
        &one.inner.database().unwrap(),
        &three.inner.database().unwrap()
    ));
    drop((one, two, three));
    let again = backend(&path, "one");
    assert_eq!(Arc::strong_count(&again.inner.database().unwrap()), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_releases_the_file() {
    let (_dir, path) = temp_path("close.redb");
    let b = backend(&path, "x");
    b.set("k", "v".into(), &SetOptions::new()).await.unwrap();
    b.close().await.unwrap();
    let err = b.get("k").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend);
    assert!(err.message().contains("closed"), "{err}");
    // Nothing else holds the file: redb can open it directly.
    let db = redb::Database::open(b.path()).expect("the file is free again");
    drop(db);
}

#[cfg(unix)]
#[test]
fn files_and_directories_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, path) = temp_path("nested/private.redb");
    let b = backend(&path, "p");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(b.path()), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
}

#[test]
fn builder_rejects_bad_options() {
    let (_dir, path) = temp_path("options.redb");
    let cases: Vec<(RedbBuilder, &str)> = vec![
        (RedbBackend::builder(&path).namespace(""), "empty"),
        (RedbBackend::builder(&path).namespace("a/b"), "'/'"),
        (
            RedbBackend::builder(&path).namespace("x".repeat(129)),
            "128",
        ),
        (RedbBackend::builder(&path).max_entries(0), "max_entries"),
        (
            RedbBackend::builder(&path).default_ttl(Duration::ZERO),
            "default_ttl",
        ),
        (RedbBackend::builder(&path).max_key_len(0), "max_key_len"),
        (
            RedbBackend::builder(&path).max_value_len(usize::MAX),
            "max_value_len",
        ),
        (
            RedbBackend::builder(&path).purge_interval(Duration::ZERO),
            "purge_interval",
        ),
        (RedbBackend::builder(""), "empty"),
    ];
    for (builder, expected) in cases {
        let err = builder.build().expect_err(expected);
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
        assert!(err.message().contains(expected), "{expected}: {err}");
    }
    assert!(!path.exists(), "invalid options must not create the file");
}

#[test]
fn a_file_that_is_not_a_database_is_a_config_error() {
    let (_dir, path) = temp_path("foreign.redb");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    let err = RedbBackend::builder(&path).build().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.message().contains("foreign.redb"), "{err}");
}

#[test]
fn works_without_a_tokio_runtime() {
    let (_dir, path) = temp_path("no-runtime.redb");
    let b = backend(&path, "plain");
    let value = futures_util::FutureExt::now_or_never(async {
        b.set("k", "v".into(), &SetOptions::new()).await?;
        b.get("k").await
    })
    .expect("no runtime: the work runs inline")
    .unwrap();
    assert_eq!(value.as_deref(), Some(&b"v"[..]));
}

#[test]
fn table_names_are_per_namespace() {
    let names = TableNames::new("app:v1");
    assert_eq!(
        redb::TableHandle::name(&names.entries()),
        "cachette/app:v1/entries"
    );
}
