//! `#[cachette::cached]` on plain `fn`s: the expansion calls a blocking
//! cache's `get_or_load(key, loader, options)`. These tests run it over a
//! stand-in with that method (a runtime around the async cache); the same
//! tests over `cachette::blocking::Cache` run with the `blocking` feature.
#![cfg(feature = "macros")]

/// The error of the fallible functions below.
#[derive(Debug)]
enum LookupError {
    Unavailable,
    Cache(cachette::Error),
}

impl std::fmt::Display for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LookupError::Unavailable => f.write_str("unavailable"),
            LookupError::Cache(error) => write!(f, "cache: {error}"),
        }
    }
}

impl From<cachette::Error> for LookupError {
    fn from(error: cachette::Error) -> Self {
        LookupError::Cache(error)
    }
}

/// The behaviour every blocking cache shows under the attribute, over
/// the cache `$cache` (a static).
macro_rules! blocking_behaviour {
    ($cache:path) => {
        use std::sync::atomic::{AtomicUsize, Ordering};

        use crate::LookupError;
        use cachette::cached;

        #[test]
        fn repeated_calls_run_the_body_once_per_key() {
            static RUNS: AtomicUsize = AtomicUsize::new(0);

            #[cached(cache = $cache, ttl = "1m", key = "double:{n}")]
            fn double(n: u64, label: &str) -> String {
                RUNS.fetch_add(1, Ordering::SeqCst);
                format!("{label}{}", n * 2)
            }

            assert_eq!(double(4, "="), "=8");
            assert_eq!(double(4, "="), "=8");
            assert_eq!(double(5, "="), "=10");
            assert_eq!(RUNS.load(Ordering::SeqCst), 2);
        }

        #[test]
        fn errors_are_not_cached_and_the_caller_gets_its_own_error() {
            static RUNS: AtomicUsize = AtomicUsize::new(0);

            #[cached(cache = $cache, key = "flaky")]
            fn flaky() -> Result<u32, LookupError> {
                if RUNS.fetch_add(1, Ordering::SeqCst) == 0 {
                    return Err(LookupError::Unavailable);
                }
                Ok(1)
            }

            assert!(matches!(flaky(), Err(LookupError::Unavailable)));
            assert_eq!(flaky().unwrap(), 1);
            assert_eq!(flaky().unwrap(), 1);
            assert_eq!(RUNS.load(Ordering::SeqCst), 2);
        }

        #[test]
        fn a_cache_error_reaches_a_result_function_as_its_error() {
            #[cached(cache = $cache, key = "mistyped")]
            fn number() -> Result<u32, LookupError> {
                Ok(1)
            }

            #[cached(cache = $cache, key = "mistyped")]
            fn text() -> String {
                "not a number".to_owned()
            }

            assert_eq!(text(), "not a number");
            assert!(matches!(number(), Err(LookupError::Cache(e)) if e.kind() == cachette::ErrorKind::Serialization));
        }

        #[test]
        fn none_is_a_not_found() {
            static RUNS: AtomicUsize = AtomicUsize::new(0);

            #[cached(cache = $cache, key = "missing:{id}", negative_ttl = "1m")]
            fn missing(id: u32) -> Option<u32> {
                RUNS.fetch_add(1, Ordering::SeqCst);
                (id == 0).then_some(0)
            }

            assert_eq!(missing(1), None);
            assert_eq!(missing(1), None);
            assert_eq!(missing(0), Some(0));
            assert_eq!(RUNS.load(Ordering::SeqCst), 2);
        }

        #[test]
        fn a_panicking_body_panics_in_its_own_call() {
            static RUNS: AtomicUsize = AtomicUsize::new(0);

            #[cached(cache = $cache, key = "fragile")]
            fn fragile() -> u32 {
                if RUNS.fetch_add(1, Ordering::SeqCst) == 0 {
                    panic!("first run fails");
                }
                3
            }

            let panic = std::panic::catch_unwind(fragile).unwrap_err();
            assert_eq!(panic.downcast_ref::<&str>(), Some(&"first run fails"));
            assert_eq!(fragile(), 3);
        }
    };
}

/// A stand-in for `cachette::blocking::Cache`: the async cache driven by a
/// runtime of its own, with the blocking `get_or_load` signature.
mod stand_in {
    use std::sync::{Arc, LazyLock};

    use cachette::cache::{Cache, EntryOptions, LoadContext};
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    pub(crate) struct BlockingCache {
        runtime: tokio::runtime::Runtime,
        cache: Cache,
    }

    impl BlockingCache {
        pub(crate) fn get_or_load<T, F, E>(
            &self,
            key: &str,
            loader: F,
            options: &EntryOptions,
        ) -> cachette::Result<Option<T>>
        where
            T: Serialize + DeserializeOwned + Send + 'static,
            F: FnOnce(LoadContext) -> Result<Option<T>, E> + Send + 'static,
            E: Into<Box<dyn std::error::Error + Send + Sync + 'static>> + Send + 'static,
        {
            self.runtime.block_on(self.cache.get_or_load(
                key,
                move |context| async move { loader(context) },
                options,
            ))
        }
    }

    pub(crate) static CACHE: LazyLock<BlockingCache> = LazyLock::new(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let backend = Arc::new(cachette::MemoryBackend::default());
        let cache = runtime.block_on(Cache::builder(backend).build()).unwrap();
        BlockingCache { runtime, cache }
    });

    mod behaviour {
        blocking_behaviour!(super::CACHE);
    }
}

#[cfg(feature = "blocking")]
mod blocking {
    use std::sync::LazyLock;

    pub(crate) static CACHE: LazyLock<cachette::blocking::Cache> =
        LazyLock::new(|| cachette::blocking::Cache::from_url("memory://").unwrap());

    mod behaviour {
        blocking_behaviour!(super::CACHE);
    }
}
