//! The tiered backend: the conformance suite over memory, file and Redis
//! L2s, read-through and L1 TTLs, the cap by L2's deadline, batched reads,
//! writes, tags, the race guard, and the Redis invalidation channel
//! (against `redis-server` processes started by the test harness).
//!
//! Run with `cargo test -p cachette --all-features --test tiered`.

#![cfg(all(feature = "tiered", feature = "testing", feature = "memory"))]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cachette::backends::tiered::{ChannelState, TieredBackend};
use cachette::{
    Backend, Capabilities, ErrorKind, Expiry, KeyStream, KeyTtl, MemoryBackend, SetOptions, Stats,
    TtlPrecision,
};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::{Instant, sleep};

/// How long an invalidation from another instance may take to arrive.
const PROPAGATION: Duration = Duration::from_secs(2);

/// Runs the conformance suite, one run at a time in this test binary: its
/// timed checks (150 ms TTLs) should not compete with each other for the
/// CPU.
async fn run_conformance(
    subject: Arc<dyn Backend>,
    sibling: Option<Arc<dyn Backend>>,
) -> cachette::testing::Report {
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _turn = ONE_AT_A_TIME.lock().await;
    cachette::testing::run_conformance(subject, sibling).await
}

fn memory() -> Arc<MemoryBackend> {
    Arc::new(MemoryBackend::default())
}

async fn tiered(l1: Arc<dyn Backend>, l2: Arc<dyn Backend>, l1_ttl: Duration) -> TieredBackend {
    TieredBackend::builder(l1, l2)
        .l1_ttl(l1_ttl)
        .build()
        .await
        .expect("the tiered backend builds")
}

async fn memory_over_memory() -> Arc<dyn Backend> {
    Arc::new(tiered(memory(), memory(), Duration::from_secs(30)).await)
}

fn bytes(value: &'static str) -> Option<Bytes> {
    Some(Bytes::from_static(value.as_bytes()))
}

/// Polls `check` every 20 ms until it holds or `limit` has passed; returns
/// whether it held.
async fn eventually(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let started = Instant::now();
    loop {
        if check().await {
            return true;
        }
        if started.elapsed() > limit {
            return false;
        }
        sleep(Duration::from_millis(20)).await;
    }
}

/// A backend that forwards to another and records what it is asked;
/// optionally hides capabilities, and can hold a `get` after it has read
/// the inner backend until released.
struct Recording {
    inner: Arc<dyn Backend>,
    calls: Mutex<Vec<(&'static str, Vec<String>)>>,
    caps: Mutex<Option<Capabilities>>,
    gate: Mutex<Option<Arc<Gate>>>,
    set_gate: Mutex<Option<Arc<Gate>>>,
}

/// Holds one `get`: `read` is notified once it has read the inner backend,
/// then it waits for `release`.
#[derive(Default)]
struct Gate {
    read: Notify,
    release: Notify,
}

impl Recording {
    fn new(inner: Arc<dyn Backend>) -> Arc<Recording> {
        Arc::new(Recording {
            inner,
            calls: Mutex::new(Vec::new()),
            caps: Mutex::new(None),
            gate: Mutex::new(None),
            set_gate: Mutex::new(None),
        })
    }

    fn with_caps(inner: Arc<dyn Backend>, edit: impl FnOnce(&mut Capabilities)) -> Arc<Recording> {
        let recording = Recording::new(inner);
        let mut caps = recording.inner.capabilities();
        edit(&mut caps);
        *recording.caps.lock() = Some(caps);
        recording
    }

    fn record(&self, op: &'static str, keys: &[&str]) {
        self.calls
            .lock()
            .push((op, keys.iter().map(|k| (*k).to_owned()).collect()));
    }

    /// The keys of every call of `op`, in order.
    fn calls_of(&self, op: &str) -> Vec<Vec<String>> {
        self.calls
            .lock()
            .iter()
            .filter(|(name, _)| *name == op)
            .map(|(_, keys)| keys.clone())
            .collect()
    }

    fn forget(&self) {
        self.calls.lock().clear();
    }

    /// Holds the next `get` after its read; see [`Gate`].
    fn hold_next_get(&self) -> Arc<Gate> {
        let gate = Arc::new(Gate::default());
        *self.gate.lock() = Some(Arc::clone(&gate));
        gate
    }

    /// Holds the next `set` after it has written the inner backend.
    fn hold_next_set(&self) -> Arc<Gate> {
        let gate = Arc::new(Gate::default());
        *self.set_gate.lock() = Some(Arc::clone(&gate));
        gate
    }
}

/// Notifies `gate.read` and waits for `gate.release`, if a gate is set.
async fn pass(gate: &Mutex<Option<Arc<Gate>>>) {
    let gate = gate.lock().take();
    if let Some(gate) = gate {
        gate.read.notify_one();
        gate.release.notified().await;
    }
}

#[async_trait]
impl Backend for Recording {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        self.caps
            .lock()
            .unwrap_or_else(|| self.inner.capabilities())
    }

    async fn get(&self, key: &str) -> cachette::Result<Option<Bytes>> {
        self.record("get", &[key]);
        let value = self.inner.get(key).await;
        pass(&self.gate).await;
        value
    }

    async fn set(&self, key: &str, value: Bytes, options: &SetOptions) -> cachette::Result<bool> {
        self.record("set", &[key]);
        let written = self.inner.set(key, value, options).await;
        pass(&self.set_gate).await;
        written
    }

    async fn delete(&self, key: &str) -> cachette::Result<bool> {
        self.record("delete", &[key]);
        self.inner.delete(key).await
    }

    async fn exists(&self, key: &str) -> cachette::Result<bool> {
        self.record("exists", &[key]);
        self.inner.exists(key).await
    }

    async fn get_many(&self, keys: &[&str]) -> cachette::Result<Vec<Option<Bytes>>> {
        self.record("get_many", keys);
        self.inner.get_many(keys).await
    }

    async fn set_many(
        &self,
        entries: &[(&str, Bytes)],
        options: &SetOptions,
    ) -> cachette::Result<Vec<bool>> {
        let keys: Vec<&str> = entries.iter().map(|(k, _)| *k).collect();
        self.record("set_many", &keys);
        self.inner.set_many(entries, options).await
    }

    async fn delete_many(&self, keys: &[&str]) -> cachette::Result<u64> {
        self.record("delete_many", keys);
        self.inner.delete_many(keys).await
    }

    async fn incr(&self, key: &str, delta: i64, expiry: Expiry) -> cachette::Result<i64> {
        self.record("incr", &[key]);
        self.inner.incr(key, delta, expiry).await
    }

    async fn decr(&self, key: &str, delta: i64, expiry: Expiry) -> cachette::Result<i64> {
        self.record("decr", &[key]);
        self.inner.decr(key, delta, expiry).await
    }

    async fn ttl(&self, key: &str) -> cachette::Result<KeyTtl> {
        self.record("ttl", &[key]);
        if !self.capabilities().ttl_inspection {
            return Err(cachette::Error::unsupported(self.name(), "ttl"));
        }
        self.inner.ttl(key).await
    }

    async fn touch(&self, key: &str, expiry: Expiry) -> cachette::Result<bool> {
        self.record("touch", &[key]);
        self.inner.touch(key, expiry).await
    }

    async fn clear(&self) -> cachette::Result<()> {
        self.record("clear", &[]);
        self.inner.clear().await
    }

    async fn keys(&self, pattern: &str) -> cachette::Result<KeyStream> {
        self.record("keys", &[pattern]);
        self.inner.keys(pattern).await
    }

    async fn invalidate_tags(&self, tags: &[&str]) -> cachette::Result<u64> {
        self.record("invalidate_tags", tags);
        if !self.capabilities().tags {
            return Err(cachette::Error::unsupported(self.name(), "invalidate_tags"));
        }
        self.inner.invalidate_tags(tags).await
    }

    async fn purge_expired(&self) -> cachette::Result<u64> {
        self.inner.purge_expired().await
    }

    async fn stats(&self) -> cachette::Result<Stats> {
        self.inner.stats().await
    }

    async fn health(&self) -> cachette::Result<()> {
        self.inner.health().await
    }

    async fn close(&self) -> cachette::Result<()> {
        self.inner.close().await
    }
}

fn detail(stats: &Stats, name: &str) -> u64 {
    stats
        .details
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("stats.details has no `{name}`: {:?}", stats.details))
}

// ---------------------------------------------------------------------------
// Conformance

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_over_memory_conforms() {
    let report =
        run_conformance(memory_over_memory().await, Some(memory_over_memory().await)).await;
    let skipped: Vec<&str> = report.skipped().map(|(check, _)| check).collect();
    assert_eq!(skipped, ["value_size_limit"], "{report}");
}

#[cfg(feature = "file")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_over_file_conforms() {
    use cachette::backends::file::FileBackend;
    use cachette::testing::servers::fresh_dir;

    let (subject_dir, sibling_dir) = (fresh_dir(), fresh_dir());
    let over_file = async |dir: &std::path::Path| -> Arc<dyn Backend> {
        let l2 = FileBackend::builder(dir)
            .build()
            .expect("the file backend opens");
        let cache: Arc<dyn Backend> =
            Arc::new(tiered(memory(), Arc::new(l2), Duration::from_secs(30)).await);
        cache
    };
    let subject = over_file(&subject_dir).await;
    let sibling = over_file(&sibling_dir).await;
    let report = run_conformance(subject, Some(sibling)).await;
    let skipped: Vec<&str> = report.skipped().map(|(check, _)| check).collect();
    assert_eq!(skipped, ["value_size_limit"], "{report}");
    let _ = std::fs::remove_dir_all(subject_dir);
    let _ = std::fs::remove_dir_all(sibling_dir);
}

// ---------------------------------------------------------------------------
// Reads

#[tokio::test]
async fn a_miss_reads_through_and_the_next_read_hits_l1() {
    let l1 = memory();
    let l2 = Recording::new(memory());
    l2.set("k", "v".into(), &SetOptions::new()).await.unwrap();
    l2.forget();
    let cache = tiered(l1.clone(), l2.clone(), Duration::from_secs(60)).await;

    assert_eq!(cache.get("k").await.unwrap(), bytes("v"));
    assert_eq!(
        l1.get("k").await.unwrap(),
        bytes("v"),
        "the read copied the entry into L1"
    );
    assert_eq!(cache.get("k").await.unwrap(), bytes("v"));
    assert_eq!(cache.get("missing").await.unwrap(), None);
    assert_eq!(
        l2.calls_of("get"),
        [vec!["k".to_owned()], vec!["missing".to_owned()]],
        "the second read of `k` must not reach L2"
    );
    let stats = cache.stats().await.unwrap();
    assert_eq!(
        (
            detail(&stats, "l1_hits"),
            detail(&stats, "l2_hits"),
            detail(&stats, "misses")
        ),
        (1, 1, 1)
    );
    assert_eq!((stats.hits, stats.misses), (2, 1));
}

#[tokio::test]
async fn without_a_channel_l1_is_as_fresh_as_its_ttl() {
    let l2 = memory();
    l2.set("k", "old".into(), &SetOptions::new()).await.unwrap();
    let long = tiered(memory(), l2.clone(), Duration::from_secs(60)).await;
    let short = tiered(memory(), l2.clone(), Duration::from_millis(200)).await;
    assert_eq!(long.get("k").await.unwrap(), bytes("old"));
    assert_eq!(short.get("k").await.unwrap(), bytes("old"));
    match short.l1().ttl("k").await.unwrap() {
        KeyTtl::ExpiresIn(left) => assert!(left <= Duration::from_millis(200), "{left:?}"),
        other => panic!("the L1 copy must expire within l1_ttl, found {other:?}"),
    }

    // Another process writes the shared L2.
    l2.set("k", "new".into(), &SetOptions::new()).await.unwrap();
    assert_eq!(
        long.get("k").await.unwrap(),
        bytes("old"),
        "without a channel, the L1 copy is served until its TTL"
    );
    assert!(
        eventually(PROPAGATION, async || short.get("k").await.unwrap()
            == bytes("new"))
        .await,
        "after l1_ttl (200 ms) the new value must be read from L2"
    );
}

#[tokio::test]
async fn an_l1_copy_never_outlives_its_l2_entry() {
    let l1 = memory();
    let l2 = memory();
    let cache = tiered(l1.clone(), l2.clone(), Duration::from_secs(60)).await;
    let ttl = Duration::from_secs(1);
    let written = Instant::now();
    for key in ["get", "get_many"] {
        l2.set(key, "v".into(), &SetOptions::new().ttl(ttl))
            .await
            .unwrap();
    }
    assert_eq!(cache.get("get").await.unwrap(), bytes("v"));
    assert_eq!(cache.get_many(&["get_many"]).await.unwrap(), [bytes("v")]);
    for key in ["get", "get_many"] {
        match l1.ttl(key).await.unwrap() {
            KeyTtl::ExpiresIn(left) => assert!(
                left < ttl,
                "the L1 copy of {key:?} must be capped by its L2 entry's {ttl:?}, found {left:?}"
            ),
            other => {
                panic!("the L1 copy of {key:?} must expire with its L2 entry, found {other:?}")
            }
        }
    }
    tokio::time::sleep_until(written + ttl + Duration::from_millis(200)).await;
    for key in ["get", "get_many"] {
        assert_eq!(l1.get(key).await.unwrap(), None, "the L1 copy of {key:?}");
        assert_eq!(
            cache.get(key).await.unwrap(),
            None,
            "an expired key must not be served"
        );
    }
}

#[tokio::test]
async fn without_ttl_inspection_an_l1_copy_lives_l1_ttl() {
    let l1 = memory();
    let l2 = Recording::with_caps(memory(), |caps| caps.ttl_inspection = false);
    l2.set(
        "k",
        "v".into(),
        &SetOptions::new().ttl(Duration::from_secs(60)),
    )
    .await
    .unwrap();
    let cache = tiered(l1.clone(), l2.clone(), Duration::from_secs(5)).await;
    assert_eq!(cache.get("k").await.unwrap(), bytes("v"));
    assert!(
        l2.calls_of("ttl").is_empty(),
        "L2 cannot tell TTLs: none asked"
    );
    match l1.ttl("k").await.unwrap() {
        KeyTtl::ExpiresIn(left) => assert!(
            left > Duration::from_secs(3) && left <= Duration::from_secs(5),
            "the copy must live l1_ttl (5 s), found {left:?}"
        ),
        other => panic!("found {other:?}"),
    }
}

#[tokio::test]
async fn get_many_asks_l2_only_for_the_l1_misses_in_one_call() {
    let l1 = memory();
    let l2 = Recording::new(memory());
    for key in ["a", "b", "c"] {
        l2.set(key, key.to_owned().into(), &SetOptions::new())
            .await
            .unwrap();
    }
    let cache = tiered(l1.clone(), l2.clone(), Duration::from_secs(60)).await;
    assert_eq!(cache.get("a").await.unwrap(), bytes("a"));
    l2.forget();

    let found = cache
        .get_many(&["a", "b", "missing", "b", "c"])
        .await
        .unwrap();
    assert_eq!(
        found,
        [bytes("a"), bytes("b"), None, bytes("b"), bytes("c")]
    );
    assert_eq!(
        l2.calls_of("get_many"),
        [vec!["b".to_owned(), "missing".to_owned(), "c".to_owned()]],
        "one get_many of the misses, each once"
    );
    assert!(l2.calls_of("get").is_empty(), "no single gets");

    l2.forget();
    let found = cache.get_many(&["c", "missing", "b", "a"]).await.unwrap();
    assert_eq!(found, [bytes("c"), None, bytes("b"), bytes("a")]);
    assert_eq!(l2.calls_of("get_many"), [vec!["missing".to_owned()]]);
    let stats = cache.stats().await.unwrap();
    assert_eq!(detail(&stats, "l1_hits"), 1 + 3);
    assert_eq!(detail(&stats, "l2_hits"), 1 + 3);
    assert_eq!(detail(&stats, "misses"), 2);
}

// ---------------------------------------------------------------------------
// Writes

#[tokio::test]
async fn set_writes_l2_then_l1_with_the_tags_of_the_write() {
    let l1 = memory();
    let l2 = memory();
    let cache = tiered(l1.clone(), l2.clone(), Duration::from_secs(60)).await;
    let tagged = SetOptions::new().ttl(Duration::from_secs(10)).tags(["t"]);
    assert!(cache.set("k", "v".into(), &tagged).await.unwrap());
    assert_eq!(l2.get("k").await.unwrap(), bytes("v"));
    assert_eq!(
        l1.get("k").await.unwrap(),
        bytes("v"),
        "the write went through to L1"
    );
    assert!(
        matches!(l1.ttl("k").await.unwrap(), KeyTtl::ExpiresIn(left) if left <= Duration::from_secs(10))
    );
    assert_eq!(
        l1.invalidate_tags(&["t"]).await.unwrap(),
        1,
        "the L1 copy carries the tag"
    );

    // With Expiry::Default, L2's default TTL is unknown: no copy.
    cache
        .set("k", "w".into(), &SetOptions::new())
        .await
        .unwrap();
    assert_eq!(l1.get("k").await.unwrap(), None);
    assert_eq!(cache.get("k").await.unwrap(), bytes("w"));
}

#[tokio::test]
async fn an_overwrite_replaces_the_l1_copy() {
    let l1 = memory();
    let cache = tiered(l1.clone(), memory(), Duration::from_secs(60)).await;
    let never = SetOptions::new().expiry(Expiry::Never);
    cache.set("k", "one".into(), &never).await.unwrap();
    assert_eq!(cache.get("k").await.unwrap(), bytes("one"));
    cache.set("k", "two".into(), &never).await.unwrap();
    assert_eq!(cache.get("k").await.unwrap(), bytes("two"));
    assert_eq!(l1.get("k").await.unwrap(), bytes("two"));
}

#[tokio::test]
async fn conditional_sets_are_decided_by_l2() {
    let l1 = memory();
    let l2 = memory();
    let cache = tiered(l1.clone(), l2.clone(), Duration::from_secs(60)).await;
    // Present in L2 only: L1 knows nothing of it.
    l2.set("in-l2", "l2".into(), &SetOptions::new())
        .await
        .unwrap();
    assert!(
        !cache
            .set("in-l2", "x".into(), &SetOptions::new().if_absent())
            .await
            .unwrap()
    );
    assert_eq!(cache.get("in-l2").await.unwrap(), bytes("l2"));

    // Copied into L1, then removed from L2 behind the tiered backend's back.
    l2.set("gone", "v".into(), &SetOptions::new())
        .await
        .unwrap();
    assert_eq!(cache.get("gone").await.unwrap(), bytes("v"));
    l2.delete("gone").await.unwrap();
    assert!(
        !cache
            .set("gone", "x".into(), &SetOptions::new().if_present())
            .await
            .unwrap(),
        "L2 decides: the key is absent there"
    );
    assert_eq!(
        cache.get("gone").await.unwrap(),
        None,
        "the failed write dropped the stale copy"
    );
    assert!(
        cache
            .set("gone", "y".into(), &SetOptions::new().if_absent())
            .await
            .unwrap()
    );
    assert_eq!(cache.get("gone").await.unwrap(), bytes("y"));
}

#[tokio::test]
async fn incr_decr_and_touch_go_to_l2_and_drop_the_l1_copy() {
    let l1 = memory();
    let l2 = memory();
    let cache = tiered(l1.clone(), l2.clone(), Duration::from_secs(60)).await;
    l2.set("n", "5".into(), &SetOptions::new()).await.unwrap();
    assert_eq!(cache.get("n").await.unwrap(), bytes("5"));
    assert_eq!(cache.incr("n", 2, Expiry::Default).await.unwrap(), 7);
    assert_eq!(cache.get("n").await.unwrap(), bytes("7"));
    assert_eq!(cache.decr("n", 3, Expiry::Default).await.unwrap(), 4);
    assert_eq!(cache.get("n").await.unwrap(), bytes("4"));
    assert_eq!(l1.get("n").await.unwrap(), bytes("4"));
    assert!(
        cache
            .touch("n", Expiry::After(Duration::from_secs(5)))
            .await
            .unwrap()
    );
    assert_eq!(l1.get("n").await.unwrap(), None, "touch dropped the copy");
    assert!(matches!(
        cache.ttl("n").await.unwrap(),
        KeyTtl::ExpiresIn(_)
    ));
}

#[tokio::test]
async fn delete_delete_many_and_clear_act_on_both_layers() {
    let l1 = memory();
    let l2 = memory();
    let cache = tiered(l1.clone(), l2.clone(), Duration::from_secs(60)).await;
    for key in ["a", "b", "c", "d"] {
        l2.set(key, "v".into(), &SetOptions::new()).await.unwrap();
        assert_eq!(cache.get(key).await.unwrap(), bytes("v"));
    }
    assert!(cache.delete("a").await.unwrap());
    assert_eq!(
        (l1.get("a").await.unwrap(), l2.get("a").await.unwrap()),
        (None, None)
    );
    assert_eq!(cache.delete_many(&["b", "c", "missing"]).await.unwrap(), 2);
    for key in ["b", "c"] {
        assert_eq!(
            (l1.get(key).await.unwrap(), l2.get(key).await.unwrap()),
            (None, None)
        );
    }
    cache.clear().await.unwrap();
    assert_eq!(
        (l1.get("d").await.unwrap(), l2.get("d").await.unwrap()),
        (None, None)
    );
    assert_eq!(l1.stats().await.unwrap().entries, 0);
}

#[tokio::test]
async fn invalidate_tags_drops_every_copy_read_from_l2_and_the_tagged_writes() {
    let l1 = memory();
    let l2 = memory();
    let cache = tiered(l1.clone(), l2.clone(), Duration::from_secs(60)).await;
    // Tagged by another writer: the copy in L1 does not know its tags.
    l2.set("read", "v".into(), &SetOptions::new().tags(["t"]))
        .await
        .unwrap();
    assert_eq!(cache.get("read").await.unwrap(), bytes("v"));
    let never = SetOptions::new().expiry(Expiry::Never);
    cache
        .set("written-t", "v".into(), &never.clone().tags(["t"]))
        .await
        .unwrap();
    cache
        .set("written-u", "v".into(), &never.clone().tags(["u"]))
        .await
        .unwrap();

    assert_eq!(
        cache.invalidate_tags(&["t"]).await.unwrap(),
        2,
        "L2's count"
    );
    assert_eq!(
        cache.get("read").await.unwrap(),
        None,
        "the copy read from L2 is dropped"
    );
    assert_eq!(cache.get("written-t").await.unwrap(), None);
    assert_eq!(
        l1.get("written-u").await.unwrap(),
        bytes("v"),
        "a copy written through with another tag stays"
    );
}

#[tokio::test]
async fn an_l1_without_tags_is_cleared_by_invalidate_tags() {
    let l1 = Recording::with_caps(memory(), |caps| caps.tags = false);
    let cache = tiered(l1.clone(), memory(), Duration::from_secs(60)).await;
    let never = SetOptions::new().expiry(Expiry::Never);
    cache
        .set("k", "v".into(), &never.clone().tags(["t"]))
        .await
        .unwrap();
    cache.set("other", "v".into(), &never).await.unwrap();
    assert_eq!(cache.invalidate_tags(&["t"]).await.unwrap(), 1);
    assert_eq!(l1.calls_of("clear").len(), 1);
    assert_eq!(cache.get("k").await.unwrap(), None);
    assert_eq!(cache.get("other").await.unwrap(), bytes("v"));
}

// ---------------------------------------------------------------------------
// The race guard

/// A read that got the old value from L2 while a write (or delete, or
/// clear) ran must not leave that value in L1.
async fn check_read_racing(change: &str) {
    let l1 = memory();
    let l2 = Recording::new(memory());
    l2.set("k", "old".into(), &SetOptions::new().tags(["t"]))
        .await
        .unwrap();
    let cache = Arc::new(tiered(l1.clone(), l2.clone(), Duration::from_secs(60)).await);

    let gate = l2.hold_next_get();
    let reader = tokio::spawn({
        let cache = Arc::clone(&cache);
        async move { cache.get("k").await }
    });
    gate.read.notified().await;
    let expected = match change {
        "set" => {
            cache
                .set("k", "new".into(), &SetOptions::new().expiry(Expiry::Never))
                .await
                .unwrap();
            bytes("new")
        }
        "delete" => {
            cache.delete("k").await.unwrap();
            None
        }
        "clear" => {
            cache.clear().await.unwrap();
            None
        }
        "invalidate_tags" => {
            assert_eq!(cache.invalidate_tags(&["t"]).await.unwrap(), 1);
            None
        }
        other => panic!("unknown change {other}"),
    };
    gate.release.notify_one();
    let read = reader.await.unwrap().unwrap();
    assert_eq!(read, bytes("old"), "the racing read answers what it read");
    assert_ne!(
        l1.get("k").await.unwrap(),
        bytes("old"),
        "the racing read must not copy the old value into L1 after a {change}"
    );
    assert_eq!(
        cache.get("k").await.unwrap(),
        expected,
        "after a racing {change}"
    );
}

#[tokio::test]
async fn a_read_racing_a_set_leaves_no_stale_copy() {
    check_read_racing("set").await;
}

#[tokio::test]
async fn a_read_racing_a_delete_leaves_no_stale_copy() {
    check_read_racing("delete").await;
}

#[tokio::test]
async fn a_read_racing_a_clear_leaves_no_stale_copy() {
    check_read_racing("clear").await;
}

#[tokio::test]
async fn a_read_racing_invalidate_tags_leaves_no_stale_copy() {
    check_read_racing("invalidate_tags").await;
}

// ---------------------------------------------------------------------------
// Capabilities, stats, health, builder

#[tokio::test]
async fn capabilities_are_l2s_with_the_smaller_key_limit() {
    let l1 = Arc::new(MemoryBackend::builder().max_key_len(100).build().unwrap());
    let l2 = Recording::with_caps(memory(), |caps| {
        caps.tags = false;
        caps.persistent = true;
    });
    let cache = tiered(l1, l2, Duration::from_secs(60)).await;
    let caps = cache.capabilities();
    assert_eq!(caps.max_key_len, 100);
    assert!(!caps.tags && caps.persistent && caps.atomic_incr && caps.ttl_inspection);

    let long = "k".repeat(101);
    let error = cache.get(&long).await.unwrap_err();
    assert_eq!(
        (error.kind(), error.backend()),
        (ErrorKind::InvalidInput, "tiered")
    );
    assert!(error.to_string().contains("100"), "{error}");
    let error = cache
        .set(&long, "v".into(), &SetOptions::new())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    let error = cache.invalidate_tags(&["t"]).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unsupported);
}

#[tokio::test]
async fn stats_show_both_layers() {
    let l1 = memory();
    let cache = tiered(l1.clone(), memory(), Duration::from_secs(60)).await;
    cache
        .set("k", "v".into(), &SetOptions::new().expiry(Expiry::Never))
        .await
        .unwrap();
    cache.get("k").await.unwrap();
    let stats = cache.stats().await.unwrap();
    assert_eq!(detail(&stats, "l1_hits"), 1);
    assert_eq!(detail(&stats, "l1.entries"), 1);
    assert_eq!(detail(&stats, "l1.hits"), 1);
    assert_eq!(detail(&stats, "l2.entries"), 1);
    assert_eq!(detail(&stats, "l2.inserts"), 1);
    assert_eq!(stats.entries, 1);
    assert_eq!(detail(&stats, "published"), 0);
    assert_eq!(cache.channel_state(), ChannelState::Disabled);
}

#[tokio::test]
async fn a_failing_l1_is_bypassed_on_reads_and_fails_health() {
    use cachette::testing::FaultyBackend;
    let faulty = FaultyBackend::new(memory());
    let l2 = memory();
    l2.set("k", "v".into(), &SetOptions::new()).await.unwrap();
    let cache = tiered(faulty.clone(), l2, Duration::from_secs(60)).await;
    faulty.fail_with(Some(ErrorKind::Connection));
    assert_eq!(cache.get("k").await.unwrap(), bytes("v"));
    assert_eq!(cache.get_many(&["k"]).await.unwrap(), [bytes("v")]);
    let error = cache.health().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Connection);
    faulty.fail_with(None);
    cache.health().await.unwrap();
}

#[tokio::test]
async fn the_builder_rejects_bad_options() {
    let config = |result: cachette::Result<TieredBackend>| match result {
        Ok(_) => panic!("the builder must refuse"),
        Err(error) => {
            assert_eq!(error.kind(), ErrorKind::Config, "{error}");
            error.to_string()
        }
    };
    let message = config(
        TieredBackend::builder(memory(), memory())
            .l1_ttl(Duration::ZERO)
            .build()
            .await,
    );
    assert!(message.contains("l1_ttl"), "{message}");

    let same: Arc<dyn Backend> = memory();
    config(TieredBackend::builder(same.clone(), same).build().await);

    let no_ttl = Recording::with_caps(memory(), |caps| caps.native_ttl = false);
    let message = config(TieredBackend::builder(no_ttl, memory()).build().await);
    assert!(message.contains("native_ttl"), "{message}");

    let seconds = Recording::with_caps(memory(), |caps| caps.ttl_precision = TtlPrecision::Seconds);
    config(TieredBackend::builder(seconds, memory()).build().await);

    let no_clear = Recording::with_caps(memory(), |caps| caps.clear = false);
    config(TieredBackend::builder(no_clear, memory()).build().await);
}

// ---------------------------------------------------------------------------
// Redis: as L2, and the invalidation channel

/// The helpers of the tests with an invalidation channel (Redis or
/// PostgreSQL).
#[cfg(any(feature = "redis", feature = "postgres"))]
mod channel_helpers {
    use super::*;
    use cachette::backends::tiered::InvalidationChannel;

    /// An instance with its own memory L1 over `l2`, on `channel`.
    pub(crate) async fn instance(
        l2: Arc<dyn Backend>,
        channel: InvalidationChannel,
    ) -> (TieredBackend, Arc<MemoryBackend>) {
        let l1 = memory();
        let cache = TieredBackend::builder(l1.clone(), l2)
            .l1_ttl(Duration::from_secs(60))
            .invalidation_channel(channel)
            .build()
            .await
            .expect("the tiered backend subscribes");
        assert_eq!(cache.channel_state(), ChannelState::Subscribed);
        (cache, l1)
    }

    /// Waits until `b` has applied every message `a` published, then reads
    /// `key` through `b` and checks that its L1 holds the copy.
    pub(crate) async fn copied(
        a: &TieredBackend,
        b: &TieredBackend,
        l1: &MemoryBackend,
        key: &str,
        value: &'static str,
    ) {
        let settled = eventually(PROPAGATION, async || {
            let published = detail(&a.stats().await.unwrap(), "published");
            detail(&b.stats().await.unwrap(), "invalidations_received") >= published
        })
        .await;
        assert!(settled, "B must receive every message A published");
        assert_eq!(b.get(key).await.unwrap(), bytes(value));
        assert_eq!(
            l1.get(key).await.unwrap(),
            bytes(value),
            "reading {key:?} must copy it into B's L1"
        );
    }

    /// Waits until the channel of `b` is lost (and its L1 copy of `key`
    /// dropped with it) after `lose` took the server away; then, after
    /// `restore` brought it back, until both `a` and `b` are subscribed
    /// again.
    pub(crate) async fn lost_and_regained<S>(
        (a, b, b_l1): (&TieredBackend, &TieredBackend, &MemoryBackend),
        key: &str,
        server: &mut S,
        lose: impl FnOnce(&mut S),
        between: impl AsyncFnOnce(),
        restore: impl FnOnce(&mut S),
    ) {
        lose(server);
        assert!(
            eventually(Duration::from_secs(10), async || b.channel_state()
                == ChannelState::Disconnected)
            .await,
            "B must notice that its subscription is gone"
        );
        assert!(
            gone_from(b_l1, key).await,
            "B clears L1 when the subscription is lost"
        );
        between().await;
        restore(server);
        for (name, instance) in [("A", a), ("B", b)] {
            assert!(
                eventually(Duration::from_secs(20), async || instance.channel_state()
                    == ChannelState::Subscribed)
                .await,
                "{name} must subscribe again once the server is back"
            );
        }
    }

    pub(crate) async fn gone_from(l1: &MemoryBackend, key: &str) -> bool {
        eventually(PROPAGATION, async || l1.get(key).await.unwrap().is_none()).await
    }
}

#[cfg(feature = "redis")]
mod redis {
    use super::channel_helpers::{copied, gone_from, instance, lost_and_regained};
    use super::*;
    use cachette::backends::redis::RedisBackend;
    use cachette::backends::tiered::InvalidationChannel;
    use cachette::testing::servers::free_port;
    use cachette::testing::servers::redis::RedisServer;

    const TIMEOUT: Duration = Duration::from_millis(500);

    async fn redis_l2(server: &RedisServer, prefix: &str) -> Arc<dyn Backend> {
        Arc::new(
            RedisBackend::builder("127.0.0.1", server.port())
                .prefix(prefix)
                .connect_timeout(TIMEOUT)
                .response_timeout(TIMEOUT)
                .build()
                .await
                .expect("connect to the test server"),
        )
    }

    /// A channel whose pings a busy machine cannot make time out (a timed
    /// out ping resets the channel, which clears and bypasses L1).
    fn channel(server: &RedisServer, name: &str) -> InvalidationChannel {
        InvalidationChannel::new("127.0.0.1", server.port(), name)
            .connect_timeout(Duration::from_secs(2))
            .response_timeout(Duration::from_secs(2))
            .ping_interval(Duration::from_secs(1))
    }

    /// A write whose future is dropped after L2 changed (a client gone, a
    /// timeout above) must neither leave the old L1 copy here nor leave the
    /// other instances uninformed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_dropped_after_l2_changed_serves_no_stale_copy_here_or_elsewhere() {
        let server = RedisServer::start();
        let l2 = Recording::new(memory());
        let (a, a_l1) = instance(l2.clone(), channel(&server, "inv")).await;
        let (b, b_l1) = instance(l2.clone(), channel(&server, "inv")).await;
        let never = SetOptions::new().expiry(Expiry::Never);
        a.set("k", "old".into(), &never).await.unwrap();
        copied(&a, &b, &b_l1, "k", "old").await;
        assert_eq!(a_l1.get("k").await.unwrap(), bytes("old"));

        let gate = l2.hold_next_set();
        tokio::select! {
            _ = a.set("k", "new".into(), &never) => panic!("the held set finished"),
            () = gate.read.notified() => {}
        }
        assert_eq!(l2.inner.get("k").await.unwrap(), bytes("new"));
        assert_eq!(a.get("k").await.unwrap(), bytes("new"));
        let told = eventually(PROPAGATION, async || {
            b.get("k").await.unwrap() == bytes("new")
        })
        .await;
        assert!(told, "the other instance must learn of the dropped write");
    }

    /// A built cache works, or the build is a `Config` error naming
    /// `option`; never a panic.
    async fn works_or_names(built: cachette::Result<TieredBackend>, option: &str) {
        match built {
            Ok(cache) => {
                let never = SetOptions::new().expiry(Expiry::Never);
                cache.set("k", "v".into(), &never).await.unwrap();
                assert_eq!(cache.get("k").await.unwrap(), bytes("v"));
                cache.close().await.unwrap();
            }
            Err(error) => {
                assert_eq!(error.kind(), cachette::ErrorKind::Config, "{error}");
                assert!(error.message().contains(option), "{error}");
            }
        }
    }

    /// Durations beyond any clock are refused naming the option, or
    /// saturate; never a panic.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn huge_channel_durations_and_l1_ttl_do_not_panic() {
        let server = RedisServer::start();
        let huge = TieredBackend::builder(memory(), memory()).l1_ttl(Duration::MAX);
        works_or_names(huge.build().await, "l1_ttl").await;
        for option in ["connect_timeout", "response_timeout", "ping_interval"] {
            let huge = channel(&server, "inv");
            let huge = match option {
                "connect_timeout" => huge.connect_timeout(Duration::MAX),
                "response_timeout" => huge.response_timeout(Duration::MAX),
                _ => huge.ping_interval(Duration::MAX),
            };
            let built = TieredBackend::builder(memory(), memory())
                .invalidation_channel(huge)
                .build()
                .await;
            works_or_names(built, option).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_over_redis_conforms() {
        let server = RedisServer::start();
        let subject: Arc<dyn Backend> = Arc::new(
            tiered(
                memory(),
                redis_l2(&server, "subject:").await,
                Duration::from_secs(30),
            )
            .await,
        );
        let sibling: Arc<dyn Backend> = Arc::new(
            tiered(
                memory(),
                redis_l2(&server, "sibling:").await,
                Duration::from_secs(30),
            )
            .await,
        );
        let report = run_conformance(subject, Some(sibling)).await;
        let skipped: Vec<&str> = report.skipped().map(|(check, _)| check).collect();
        assert_eq!(skipped, ["value_size_limit"], "{report}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_over_redis_with_a_channel_conforms() {
        let server = RedisServer::start();
        let (subject, _) =
            instance(redis_l2(&server, "subject:").await, channel(&server, "inv")).await;
        let (sibling, _) =
            instance(redis_l2(&server, "sibling:").await, channel(&server, "inv")).await;
        let report = run_conformance(Arc::new(subject.clone()), Some(Arc::new(sibling))).await;
        let skipped: Vec<&str> = report.skipped().map(|(check, _)| check).collect();
        assert_eq!(skipped, ["value_size_limit"], "{report}");
        let stats = subject.stats().await.unwrap();
        assert!(detail(&stats, "published") > 0);
        assert_eq!(detail(&stats, "publish_failures"), 0);
    }

    /// A memcached L2 under memory L1s, kept coherent by the Redis
    /// channel: the conformance suite, and a change through one instance
    /// dropping another's copy.
    #[cfg(feature = "memcached")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_over_memcached_with_a_redis_channel_conforms() {
        use cachette::testing::servers::memcached::MemcachedServer;
        let server = RedisServer::start();
        let memcached = MemcachedServer::start();
        let l2 = async |prefix: &str| {
            let url = format!(
                "{}?prefix={prefix}&connect_timeout=5s&response_timeout=5s",
                memcached.url()
            );
            cachette::open(&url).await.unwrap()
        };
        let (subject, _) = instance(l2("subject:").await, channel(&server, "inv")).await;
        let (sibling, _) = instance(l2("sibling:").await, channel(&server, "inv")).await;
        let report = run_conformance(Arc::new(subject.clone()), Some(Arc::new(sibling))).await;
        let skipped: Vec<&str> = report.skipped().map(|(check, _)| check).collect();
        assert!(skipped.is_empty(), "{report}");
        assert_eq!(
            detail(&subject.stats().await.unwrap(), "publish_failures"),
            0
        );

        let (a, _) = instance(l2("app:").await, channel(&server, "mc")).await;
        let (b, b_l1) = instance(l2("app:").await, channel(&server, "mc")).await;
        let never = SetOptions::new().expiry(Expiry::Never);
        a.set("k", "one".into(), &never).await.unwrap();
        copied(&a, &b, &b_l1, "k", "one").await;
        a.set("k", "two".into(), &never).await.unwrap();
        assert!(gone_from(&b_l1, "k").await, "B's copy must be dropped");
        assert_eq!(b.get("k").await.unwrap(), bytes("two"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn changes_through_one_instance_drop_the_copies_of_another() {
        let server = RedisServer::start();
        let (a, a_l1) = instance(redis_l2(&server, "app:").await, channel(&server, "inv")).await;
        let (b, b_l1) = instance(redis_l2(&server, "app:").await, channel(&server, "inv")).await;
        let never = SetOptions::new().expiry(Expiry::Never);

        // set
        a.set("k", "v1".into(), &never).await.unwrap();
        copied(&a, &b, &b_l1, "k", "v1").await;
        a.set("k", "v2".into(), &never).await.unwrap();
        assert!(gone_from(&b_l1, "k").await, "A's set must drop B's copy");
        assert_eq!(b.get("k").await.unwrap(), bytes("v2"));
        assert_eq!(
            a_l1.get("k").await.unwrap(),
            bytes("v2"),
            "A ignores its own message: its written-through copy stays"
        );

        // delete
        copied(&a, &b, &b_l1, "k", "v2").await;
        a.delete("k").await.unwrap();
        assert!(gone_from(&b_l1, "k").await, "A's delete must drop B's copy");
        assert_eq!(b.get("k").await.unwrap(), None);

        // incr
        a.set("n", "1".into(), &never).await.unwrap();
        copied(&a, &b, &b_l1, "n", "1").await;
        a.incr("n", 1, Expiry::Default).await.unwrap();
        assert!(gone_from(&b_l1, "n").await, "A's incr must drop B's copy");
        assert_eq!(b.get("n").await.unwrap(), bytes("2"));

        // invalidate_tags
        a.set("tagged", "v".into(), &never.clone().tags(["t"]))
            .await
            .unwrap();
        copied(&a, &b, &b_l1, "tagged", "v").await;
        assert_eq!(a.invalidate_tags(&["t"]).await.unwrap(), 1);
        assert!(
            gone_from(&b_l1, "tagged").await,
            "A's invalidate_tags must drop B's copy"
        );
        assert_eq!(b.get("tagged").await.unwrap(), None);

        // clear
        for key in ["x", "y"] {
            a.set(key, "v".into(), &never).await.unwrap();
            copied(&a, &b, &b_l1, key, "v").await;
        }
        a.clear().await.unwrap();
        assert!(
            gone_from(&b_l1, "x").await && gone_from(&b_l1, "y").await,
            "A's clear must clear B's L1"
        );
        assert_eq!(b.get_many(&["x", "y"]).await.unwrap(), [None, None]);

        let stats = b.stats().await.unwrap();
        assert!(
            detail(&stats, "invalidations_received") >= 5,
            "{:?}",
            stats.details
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lost_subscription_bypasses_and_clears_l1_until_it_is_back() {
        let data = RedisServer::start();
        let mut bus = RedisServer::start();
        let (a, _) = instance(redis_l2(&data, "app:").await, channel(&bus, "inv")).await;
        let (b, b_l1) = instance(redis_l2(&data, "app:").await, channel(&bus, "inv")).await;
        let never = SetOptions::new().expiry(Expiry::Never);
        a.set("k", "v1".into(), &never).await.unwrap();
        copied(&a, &b, &b_l1, "k", "v1").await;

        let between = async || {
            // While unsubscribed, B serves no L1 hit: a value planted in its L1
            // is not answered.
            b_l1.set("k", "planted".into(), &never).await.unwrap();
            assert_eq!(
                b.get("k").await.unwrap(),
                bytes("v1"),
                "B reads L2 while unsubscribed"
            );
            assert_eq!(b.get_many(&["k"]).await.unwrap(), [bytes("v1")]);
            // Writes still work; their publication fails and is counted.
            a.set("k", "v2".into(), &never).await.unwrap();
            assert!(detail(&a.stats().await.unwrap(), "publish_failures") >= 1);
            assert_eq!(b.get("k").await.unwrap(), bytes("v2"));
        };
        lost_and_regained(
            (&a, &b, &b_l1),
            "k",
            &mut bus,
            RedisServer::kill,
            between,
            RedisServer::restart,
        )
        .await;
        assert_eq!(
            b_l1.get("k").await.unwrap(),
            None,
            "B clears L1 again before it serves from it"
        );
        assert!(detail(&b.stats().await.unwrap(), "channel_resets") >= 1);

        // Invalidations work again.
        assert_eq!(b.get("k").await.unwrap(), bytes("v2"));
        assert_eq!(
            b_l1.get("k").await.unwrap(),
            bytes("v2"),
            "B copies into L1 again"
        );
        a.set("k", "v3".into(), &never).await.unwrap();
        assert!(
            gone_from(&b_l1, "k").await,
            "after the restart A's set must drop B's copy"
        );
        assert_eq!(b.get("k").await.unwrap(), bytes("v3"));
    }

    #[tokio::test]
    async fn the_channel_options_are_checked() {
        let config = |result: cachette::Result<TieredBackend>| match result {
            Ok(_) => panic!("the builder must refuse"),
            Err(error) => error,
        };
        let build = |channel: InvalidationChannel| {
            TieredBackend::builder(memory(), memory())
                .invalidation_channel(channel)
                .build()
        };
        let error = config(build(InvalidationChannel::new("127.0.0.1", 1, "")).await);
        assert_eq!(error.kind(), ErrorKind::Config, "{error}");
        let error = config(
            build(InvalidationChannel::new("127.0.0.1", 1, "c").ping_interval(Duration::ZERO))
                .await,
        );
        assert_eq!(error.kind(), ErrorKind::Config, "{error}");
        let error = config(build(InvalidationChannel::from_url("http://:s3cret@host/", "c")).await);
        assert_eq!(error.kind(), ErrorKind::Config, "{error}");
        assert!(
            !format!("{error} {error:?}").contains("s3cret"),
            "{error:?}"
        );

        let closed = format!("redis://:s3cret@127.0.0.1:{}/0", free_port());
        let channel = InvalidationChannel::from_url(closed, "c").connect_timeout(TIMEOUT);
        assert!(!format!("{channel:?}").contains("s3cret"));
        let error = config(build(channel).await);
        assert!(
            matches!(error.kind(), ErrorKind::Connection | ErrorKind::Timeout),
            "{error}"
        );
        assert!(
            !format!("{error} {error:?}").contains("s3cret"),
            "{error:?}"
        );
    }
}

/// The invalidation channel over PostgreSQL's LISTEN/NOTIFY, with
/// PostgreSQL as L2: no Redis anywhere.
#[cfg(feature = "postgres")]
mod postgres {
    use super::channel_helpers::{copied, gone_from, instance, lost_and_regained};
    use super::*;
    use cachette::backends::tiered::InvalidationChannel;
    use cachette::testing::servers::postgres::PostgresServer;

    async fn postgres_l2(server: &PostgresServer, prefix: &str) -> Arc<dyn Backend> {
        let url = format!(
            "{}?prefix={prefix}&connect_timeout=5s&statement_timeout=5s&max_value_len=8MiB",
            server.url()
        );
        cachette::open(&url)
            .await
            .expect("connect to the test server")
    }

    /// A channel whose pings a busy machine cannot make time out.
    fn channel(server: &PostgresServer, name: &str) -> InvalidationChannel {
        InvalidationChannel::from_url(server.url(), name)
            .connect_timeout(Duration::from_secs(2))
            .response_timeout(Duration::from_secs(2))
            .ping_interval(Duration::from_secs(1))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_over_postgres_with_a_postgres_channel_conforms() {
        let server = PostgresServer::start();
        let (subject, _) = instance(
            postgres_l2(&server, "subject:").await,
            channel(&server, "inv"),
        )
        .await;
        let (sibling, _) = instance(
            postgres_l2(&server, "sibling:").await,
            channel(&server, "inv"),
        )
        .await;
        let report = run_conformance(Arc::new(subject.clone()), Some(Arc::new(sibling))).await;
        let skipped: Vec<&str> = report.skipped().map(|(check, _)| check).collect();
        assert!(skipped.is_empty(), "{report}");
        let stats = subject.stats().await.unwrap();
        assert!(detail(&stats, "published") > 0);
        assert_eq!(detail(&stats, "publish_failures"), 0);
    }

    /// Two instances over one PostgreSQL table: a write, a tag
    /// invalidation and a clear through one drop the other's copies; a
    /// write of 2,000 keys at once (several NOTIFY messages) too.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn changes_through_one_instance_drop_the_copies_of_another() {
        let server = PostgresServer::start();
        let (a, _) = instance(postgres_l2(&server, "app:").await, channel(&server, "pg")).await;
        let (b, b_l1) = instance(postgres_l2(&server, "app:").await, channel(&server, "pg")).await;
        let never = SetOptions::new().expiry(Expiry::Never);
        a.set("k", "one".into(), &never).await.unwrap();
        copied(&a, &b, &b_l1, "k", "one").await;
        a.set("k", "two".into(), &never).await.unwrap();
        assert!(gone_from(&b_l1, "k").await, "B's copy must be dropped");
        assert_eq!(b.get("k").await.unwrap(), bytes("two"));

        let tagged = SetOptions::new().expiry(Expiry::Never).tags(["t"]);
        a.set("t1", "x".into(), &tagged).await.unwrap();
        copied(&a, &b, &b_l1, "t1", "x").await;
        a.invalidate_tags(&["t"]).await.unwrap();
        assert!(gone_from(&b_l1, "t1").await, "a tag invalidation reaches B");
        assert_eq!(b.get("t1").await.unwrap(), None);

        let keys: Vec<String> = (0..2_000).map(|i| format!("batch-{i:04}")).collect();
        let entries: Vec<(&str, Bytes)> = keys.iter().map(|k| (k.as_str(), "old".into())).collect();
        a.set_many(&entries, &never).await.unwrap();
        copied(&a, &b, &b_l1, "batch-1999", "old").await;
        assert_eq!(b.get("batch-0000").await.unwrap(), bytes("old"));
        let entries: Vec<(&str, Bytes)> = keys.iter().map(|k| (k.as_str(), "new".into())).collect();
        a.set_many(&entries, &never).await.unwrap();
        assert!(gone_from(&b_l1, "batch-0000").await);
        assert!(gone_from(&b_l1, "batch-1999").await);
        assert_eq!(b.get("batch-1999").await.unwrap(), bytes("new"));

        a.set("k", "three".into(), &never).await.unwrap();
        copied(&a, &b, &b_l1, "k", "three").await;
        a.clear().await.unwrap();
        assert!(gone_from(&b_l1, "k").await, "a clear reaches B");
        assert_eq!(detail(&a.stats().await.unwrap(), "publish_failures"), 0);
    }

    /// The server crashes: the instances notice, bypass and clear L1, and
    /// listen again once it is back (the same backends, not rebuilt).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lost_listener_bypasses_l1_until_it_listens_again() {
        let mut server = PostgresServer::start();
        let (a, _) = instance(postgres_l2(&server, "app:").await, channel(&server, "inv")).await;
        let (b, b_l1) = instance(postgres_l2(&server, "app:").await, channel(&server, "inv")).await;
        let never = SetOptions::new().expiry(Expiry::Never);
        a.set("k", "v1".into(), &never).await.unwrap();
        copied(&a, &b, &b_l1, "k", "v1").await;

        lost_and_regained(
            (&a, &b, &b_l1),
            "k",
            &mut server,
            PostgresServer::crash,
            async || {},
            PostgresServer::restart,
        )
        .await;
        // The unlogged table came back empty; the pair is coherent again.
        let written = eventually(Duration::from_secs(20), async || {
            a.set("k", "v2".into(), &never).await.is_ok()
        })
        .await;
        assert!(written, "A writes again once the server is back");
        copied(&a, &b, &b_l1, "k", "v2").await;
        a.set("k", "v3".into(), &never).await.unwrap();
        assert!(
            gone_from(&b_l1, "k").await,
            "after the restart A's set drops B's copy"
        );
        assert_eq!(b.get("k").await.unwrap(), bytes("v3"));
    }
}
