//! `#[cachette::cached]` on `async fn`s over the memory engine: one run of
//! the body per key, keys, return types, errors, tags, arguments.
#![cfg(feature = "macros")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cachette::cache::{Cache, CacheBuilder, EntryOptions, TokioClock};
use cachette::{ErrorKind, KeyTtl, MemoryBackend, cached};
use tokio::sync::OnceCell;

/// The cache in `cell`, built on first use with `configure`.
async fn cache_in(
    cell: &'static OnceCell<Cache>,
    configure: fn(CacheBuilder) -> CacheBuilder,
) -> &'static Cache {
    cell.get_or_init(|| async move {
        configure(Cache::builder(Arc::new(MemoryBackend::default())))
            .build()
            .await
            .unwrap()
    })
    .await
}

/// A cache with every default.
async fn plain(cell: &'static OnceCell<Cache>) -> &'static Cache {
    cache_in(cell, |builder| builder).await
}

/// The cache of the tests below; each uses keys and tags of its own.
async fn shared() -> &'static Cache {
    static CACHE: OnceCell<Cache> = OnceCell::const_new();
    plain(&CACHE).await
}

fn runs(counter: &AtomicUsize) -> usize {
    counter.load(Ordering::SeqCst)
}

#[tokio::test]
async fn repeated_calls_run_the_body_once_per_key() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);

    #[cached(cache = shared().await, ttl = "60s", key = "square:{n}")]
    async fn square(n: u64) -> u64 {
        RUNS.fetch_add(1, Ordering::SeqCst);
        n * n
    }

    for _ in 0..3 {
        assert_eq!(square(7).await, 49);
    }
    assert_eq!(runs(&RUNS), 1);
    assert_eq!(square(8).await, 64);
    assert_eq!(runs(&RUNS), 2);
    let stored: Option<u64> = shared().await.get("square:7").await.unwrap();
    assert_eq!(stored, Some(49));
}

#[tokio::test(start_paused = true)]
async fn fifty_concurrent_calls_share_one_run() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);

    #[cached(cache = shared().await, key = "slow:{n}")]
    async fn slow(n: u32) -> Result<u32, cachette::Error> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        // The clock is paused: it moves only once every call waits.
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok(n + 1)
    }

    let calls: Vec<_> = (0..50).map(|_| tokio::spawn(slow(1))).collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), 2);
    }
    assert_eq!(runs(&RUNS), 1);
}

#[tokio::test]
async fn the_ttl_option_sets_the_entry_ttl() {
    #[cached(cache = shared().await, ttl = "90s", key = "ttl:{n}")]
    async fn value(n: u8) -> u8 {
        n
    }

    value(1).await;
    let cache = shared().await;
    // Stored keys are `{namespace}:v{version}:{key}` (the cache module docs).
    let ttl = cache.backend().ttl("cachette:v0:ttl:1").await.unwrap();
    let KeyTtl::ExpiresIn(left) = ttl else {
        panic!("expected a TTL, got {ttl:?}")
    };
    assert!(
        left > Duration::from_secs(60) && left <= Duration::from_secs(90),
        "{left:?}"
    );
}

#[tokio::test]
async fn a_key_format_writes_the_arguments_with_display() {
    #[cached(cache = shared().await, key = "user:{id}:{name}:{id:03}")]
    async fn greeting(id: u32, name: String) -> String {
        format!("hello {name}")
    }

    assert_eq!(greeting(7, "ada".into()).await, "hello ada");
    let stored: Option<String> = shared().await.get("user:7:ada:007").await.unwrap();
    assert_eq!(stored.as_deref(), Some("hello ada"));
}

#[tokio::test]
async fn the_default_key_is_the_function_path_and_every_argument() {
    #[cached(cache = shared().await)]
    async fn describe(id: u32, name: Option<String>, flags: Vec<bool>) -> String {
        format!("{id} {name:?} {flags:?}")
    }

    describe(3, Some("a:b".into()), vec![true, false]).await;
    let key = r"cached_macro::describe:3:Some(a\:b):[true,false]";
    let stored: Option<String> = shared().await.get(key).await.unwrap();
    assert_eq!(stored.as_deref(), Some(r#"3 Some("a:b") [true, false]"#));
}

/// cachette under another name, as a renamed dependency makes it.
mod renamed {
    pub(crate) use ::cachette as cache_lib;
}

#[tokio::test]
async fn the_crate_option_names_a_renamed_cachette() {
    #[cached(cache = shared().await, crate = "crate::renamed::cache_lib")]
    async fn renamed_path(id: u32, name: &str) -> cachette::Result<Option<String>> {
        Ok(Some(format!("{name}{id}")))
    }

    assert_eq!(renamed_path(1, "a").await.unwrap().as_deref(), Some("a1"));
    let key = "cached_macro::renamed_path:1:a";
    let stored: Option<String> = shared().await.get(key).await.unwrap();
    assert_eq!(stored.as_deref(), Some("a1"));
}

#[tokio::test]
async fn the_default_key_tells_apart_arguments_that_read_alike() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);

    #[cached(cache = shared().await)]
    async fn join(a: &str, b: &str) -> String {
        RUNS.fetch_add(1, Ordering::SeqCst);
        format!("{a}|{b}")
    }

    assert_eq!(join("a:b", "c").await, "a:b|c");
    assert_eq!(join("a", "b:c").await, "a|b:c");
    assert_eq!(join("a:b", "c").await, "a:b|c");
    assert_eq!(runs(&RUNS), 2);
}

/// The error of the functions below: its own variants, and cache errors.
#[derive(Debug)]
enum LookupError {
    Unavailable(u32),
    Cache(cachette::Error),
}

impl std::fmt::Display for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LookupError::Unavailable(attempt) => {
                write!(f, "database unavailable (attempt {attempt})")
            }
            LookupError::Cache(error) => write!(f, "cache: {error}"),
        }
    }
}

impl From<cachette::Error> for LookupError {
    fn from(error: cachette::Error) -> Self {
        LookupError::Cache(error)
    }
}

#[tokio::test]
async fn errors_are_not_cached_and_the_caller_gets_its_own_error() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);

    #[cached(cache = shared().await, key = "flaky:{id}")]
    async fn flaky(id: u32) -> Result<u32, LookupError> {
        let run = RUNS.fetch_add(1, Ordering::SeqCst) as u32 + 1;
        if run == 1 {
            return Err(LookupError::Unavailable(run));
        }
        Ok(id * 10)
    }

    assert!(matches!(flaky(4).await, Err(LookupError::Unavailable(1))));
    assert_eq!(flaky(4).await.unwrap(), 40);
    assert_eq!(flaky(4).await.unwrap(), 40);
    assert_eq!(runs(&RUNS), 2);
}

#[tokio::test(start_paused = true)]
async fn calls_waiting_for_a_failed_load_get_the_cache_error_with_its_message() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);

    #[cached(cache = shared().await, key = "down")]
    async fn down() -> Result<u32, LookupError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(1)).await;
        Err(LookupError::Unavailable(9))
    }

    let calls: Vec<_> = (0..2).map(|_| tokio::spawn(down())).collect();
    let mut answers = Vec::new();
    for call in calls {
        answers.push(call.await.unwrap());
    }
    assert_eq!(runs(&RUNS), 1);
    let own = answers
        .iter()
        .filter(|a| matches!(a, Err(LookupError::Unavailable(9))))
        .count();
    assert_eq!(own, 1, "{answers:?}");
    let waited = answers
        .iter()
        .find_map(|a| match a {
            Err(LookupError::Cache(error)) => Some(error),
            _ => None,
        })
        .expect("the other call gets the cache's error");
    assert!(
        waited
            .to_string()
            .contains("database unavailable (attempt 9)"),
        "{waited}"
    );
}

#[tokio::test]
async fn a_cache_error_reaches_a_result_function_as_its_error() {
    #[cached(cache = shared().await, key = "typed")]
    async fn typed() -> Result<u32, LookupError> {
        Ok(1)
    }

    let cache = shared().await;
    cache
        .set("typed", "not a number", &EntryOptions::new())
        .await
        .unwrap();
    match typed().await {
        Err(LookupError::Cache(error)) => assert_eq!(error.kind(), ErrorKind::Serialization),
        other => panic!("expected the cache's decode error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_cache_error_runs_a_plain_function_without_the_cache() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);

    #[cached(cache = shared().await, key = "plain")]
    async fn plain_value() -> u32 {
        RUNS.fetch_add(1, Ordering::SeqCst);
        5
    }

    let cache = shared().await;
    cache
        .set("plain", "not a number", &EntryOptions::new())
        .await
        .unwrap();
    assert_eq!(plain_value().await, 5);
    assert_eq!(plain_value().await, 5);
    assert_eq!(runs(&RUNS), 2);
}

#[tokio::test]
async fn a_panicking_body_panics_in_its_own_call() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);

    #[cached(cache = shared().await, key = "fragile")]
    async fn fragile() -> u32 {
        if RUNS.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("first run fails");
        }
        3
    }

    let panic = tokio::spawn(fragile()).await.unwrap_err().into_panic();
    assert_eq!(panic.downcast_ref::<&str>(), Some(&"first run fails"));
    assert_eq!(fragile().await, 3);
    assert_eq!(runs(&RUNS), 2);
}

/// A cache with a negative TTL of a minute, or one without.
async fn negative_ttl(negative: bool) -> &'static Cache {
    static NEGATIVE: OnceCell<Cache> = OnceCell::const_new();
    static PLAIN: OnceCell<Cache> = OnceCell::const_new();
    if negative {
        cache_in(&NEGATIVE, |builder| {
            builder.negative_ttl(Duration::from_secs(60))
        })
        .await
    } else {
        plain(&PLAIN).await
    }
}

#[tokio::test]
async fn none_is_cached_only_when_the_cache_has_a_negative_ttl() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);

    // The cache expression may use the arguments.
    #[cached(cache = negative_ttl(negative).await, key = "find:{id}")]
    async fn find(negative: bool, id: u32) -> Option<String> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        (id == 1).then(|| "one".to_owned())
    }

    assert_eq!(find(true, 2).await, None);
    assert_eq!(find(true, 2).await, None);
    assert_eq!(runs(&RUNS), 1, "the None is cached");
    assert_eq!(find(true, 1).await.as_deref(), Some("one"));
    assert_eq!(find(true, 1).await.as_deref(), Some("one"));
    assert_eq!(runs(&RUNS), 2);
    assert_eq!(find(false, 2).await, None);
    assert_eq!(find(false, 2).await, None);
    assert_eq!(runs(&RUNS), 4, "without a negative TTL, None is not cached");
}

#[tokio::test]
async fn the_negative_ttl_option_caches_a_result_none() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);

    #[cached(cache = shared().await, key = "row:{id}", negative_ttl = "30s")]
    async fn row(id: u32) -> Result<Option<u32>, cachette::Error> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        Ok((id > 10).then_some(id))
    }

    assert_eq!(row(1).await.unwrap(), None);
    assert_eq!(row(1).await.unwrap(), None);
    assert_eq!(row(11).await.unwrap(), Some(11));
    assert_eq!(row(11).await.unwrap(), Some(11));
    assert_eq!(runs(&RUNS), 2);
}

#[tokio::test]
async fn invalidating_a_tag_forgets_the_tagged_results() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    // A cache of its own: an invalidation keeps the loads in flight of
    // the other tests (run in parallel) from storing their results.
    static CACHE: OnceCell<Cache> = OnceCell::const_new();

    #[cached(cache = plain(&CACHE).await, key = "member:{team}:{id}", tags = ["team:{team}", "members"])]
    async fn member(team: String, id: u32) -> String {
        RUNS.fetch_add(1, Ordering::SeqCst);
        format!("{team}/{id}")
    }

    member("red".into(), 1).await;
    member("blue".into(), 1).await;
    assert_eq!(runs(&RUNS), 2);
    plain(&CACHE)
        .await
        .invalidate_tags(&["team:red"])
        .await
        .unwrap();
    member("red".into(), 1).await;
    member("blue".into(), 1).await;
    assert_eq!(runs(&RUNS), 3, "only the red entry was invalidated");
    plain(&CACHE)
        .await
        .invalidate_tags(&["members"])
        .await
        .unwrap();
    member("blue".into(), 1).await;
    assert_eq!(runs(&RUNS), 4);
}

#[tokio::test(start_paused = true)]
async fn the_soft_ttl_and_fail_safe_of_the_cache_apply_to_the_function() {
    static CACHE: OnceCell<Cache> = OnceCell::const_new();
    static RUNS: AtomicUsize = AtomicUsize::new(0);

    /// A cache on tokio's paused clock, built in this test's runtime.
    async fn timed() -> &'static Cache {
        cache_in(&CACHE, |builder| builder.clock(TokioClock::default())).await
    }

    #[cached(cache = timed().await, key = "price", ttl = "10s", soft_ttl = "2s", fail_safe = "1h")]
    async fn price() -> Result<u32, cachette::Error> {
        let run = RUNS.fetch_add(1, Ordering::SeqCst) as u32 + 1;
        if run == 3 {
            return Err(cachette::Error::new(ErrorKind::Backend, "db", "down"));
        }
        Ok(run * 100)
    }

    assert_eq!(price().await.unwrap(), 100);
    tokio::time::advance(Duration::from_secs(3)).await;
    assert_eq!(price().await.unwrap(), 100, "stale: returned at once");
    // The background refresh runs while this task sleeps.
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(runs(&RUNS), 2);
    assert_eq!(price().await.unwrap(), 200, "refreshed");
    tokio::time::advance(Duration::from_secs(11)).await;
    assert_eq!(
        price().await.unwrap(),
        200,
        "expired, and the body fails: fail-safe"
    );
    assert_eq!(runs(&RUNS), 3);
    assert_eq!(timed().await.stats().fail_safe_activations, 1);
}

/// A handle that is cheap to clone, as a pool is.
#[derive(Clone)]
struct Pool {
    prefix: &'static str,
}

#[tokio::test]
async fn reference_arguments_are_lent_to_the_body_from_owned_copies() {
    #[cached(cache = shared().await, key = "lend:{name}:{bytes:?}")]
    async fn lend(pool: &Pool, name: &str, bytes: &[u8], mut count: u32) -> String {
        count += 1;
        tokio::task::yield_now().await;
        format!("{}{name}{}{count}", pool.prefix, bytes.len())
    }

    let pool = Pool { prefix: ">" };
    let name = String::from("ada");
    assert_eq!(lend(&pool, &name, &[1, 2], 1).await, ">ada22");
    assert_eq!(
        lend(&pool, "ada", &[1, 2], 9).await,
        ">ada22",
        "same key, cached"
    );
}

#[tokio::test]
async fn the_cache_may_be_any_expression_that_derefs_to_a_cache() {
    static CELL: OnceCell<Cache> = OnceCell::const_new();
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    static LAZY: std::sync::LazyLock<Cache> = std::sync::LazyLock::new(|| {
        // `build` is async: run it on a runtime of its own thread.
        std::thread::spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
                .block_on(Cache::builder(Arc::new(MemoryBackend::default())).build())
                .unwrap()
        })
        .join()
        .unwrap()
    });

    /// An owned clone of a cache.
    async fn owned() -> Cache {
        plain(&CELL).await.clone()
    }

    #[cached(cache = owned().await, key = "owned:{n}")]
    async fn from_owned(n: u32) -> u32 {
        RUNS.fetch_add(1, Ordering::SeqCst);
        n
    }

    #[cached(cache = LAZY, key = "lazy:{n}")]
    async fn from_static(n: u32) -> u32 {
        n
    }

    #[cached(cache = &*LAZY, key = "deref:{n}")]
    async fn from_deref(n: u32) -> u32 {
        n
    }

    let _ = &*LAZY; // built here, outside the runtime's polling of the calls
    assert_eq!(from_owned(1).await + from_owned(1).await, 2);
    assert_eq!(runs(&RUNS), 1);
    assert_eq!(from_static(2).await, 2);
    assert_eq!(from_deref(3).await, 3);
    assert_eq!(LAZY.get::<u32>("lazy:2").await.unwrap(), Some(2));
    assert_eq!(LAZY.get::<u32>("deref:3").await.unwrap(), Some(3));
}

/// Text made mostly of the characters the key format escapes.
fn text(max: usize) -> impl proptest::strategy::Strategy<Value = String> {
    proptest::string::string_regex(&format!(r#"[a:\\,()\[\]"]{{0,{max}}}"#)).unwrap()
}

/// The arguments of a function `(String, Option<String>, Vec<String>)`.
fn arguments() -> impl proptest::strategy::Strategy<Value = (String, Option<String>, Vec<String>)> {
    (
        text(4),
        proptest::option::of(text(3)),
        proptest::collection::vec(text(2), 0..3),
    )
}

proptest::proptest! {
    #[test]
    fn different_arguments_never_write_the_same_default_key(a in arguments(), b in arguments()) {
        let key = |(text, option, list): &(String, Option<String>, Vec<String>)| {
            let mut key = String::new();
            cachette::__private::key_part(&mut key, text);
            cachette::__private::key_part(&mut key, option);
            cachette::__private::key_part(&mut key, list);
            key
        };
        proptest::prop_assert_eq!(key(&a) == key(&b), a == b, "{} / {}", key(&a), key(&b));
    }
}
