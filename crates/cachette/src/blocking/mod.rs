//! The blocking API (feature `blocking`), the way reqwest does it: the
//! typed [`Cache`] and a [`BackendHandle`] to any backend, for synchronous
//! programs — a plain `fn main`, threads, a web framework without async —
//! with no runtime to build.
//!
//! ```
//! use std::time::Duration;
//! use cachette::EntryOptions;
//! use cachette::blocking::Cache;
//!
//! fn main() -> cachette::Result<()> {
//!     // "redis://127.0.0.1:6379" works the same way.
//!     let cache = Cache::from_url("memory://")?;
//!     let options = EntryOptions::new().ttl(Duration::from_secs(60)).tags(["team:7"]);
//!
//!     let user: Option<String> = cache.get_or_load(
//!         "user:42",
//!         |_ctx| Ok::<_, std::io::Error>(Some("Ada".to_string())), // e.g. a blocking SQL query
//!         &options,
//!     )?;
//!     assert_eq!(user.as_deref(), Some("Ada"));
//!
//!     cache.invalidate_tags(&["team:7"])?;
//!     assert_eq!(cache.get::<String>("user:42")?, None);
//!     Ok(())
//! }
//! ```
//!
//! # The model
//!
//! **A runtime per handle, on its own thread.** [`Cache::from_url`],
//! [`CacheBuilder::build`], [`open`] and [`BackendHandle::new`] start a
//! tokio runtime (multi-thread, one worker thread named
//! `cachette-blocking`, timers and I/O on); clones share it, and dropping
//! the last clone shuts it down in the background (without waiting, and
//! without a panic, wherever the drop happens). The backend is opened and
//! the cache built on it, so connections, purge loops and the loads of
//! `get_or_load` run as tasks of that worker. Build a handle once and share
//! it (a clone per thread, or a `static` in a `std::sync::LazyLock`, which
//! keeps its runtime for the life of the process); building one per call
//! would start a runtime per call.
//!
//! **A call runs on the calling thread.** Each method drives the async
//! method's future with the runtime's `Handle::block_on` on the thread that
//! called it, while the worker drives timers, sockets and spawned tasks.
//! This was chosen over reqwest's dedicated thread fed by a channel: calls
//! from many threads proceed in parallel instead of queueing behind one
//! thread, the arguments are borrowed (no `'static` copies of keys and
//! values), and a call that completes without waiting (a hit in the memory
//! engine) costs one poll, no thread switch. A call that waits on the
//! network costs a park and a wake-up of the calling thread on top of the
//! async call.
//!
//! **Single-flight across threads.** Every thread using one [`Cache`] (or
//! its clones) shares one async [`cache::Cache`](crate::cache::Cache), so
//! `get_or_load`'s guarantees hold across OS threads: concurrent callers of
//! a missing key share one run of the loader. The loader is a plain
//! closure that [`Cache::get_or_load`] runs on the runtime's blocking pool
//! (`spawn_blocking`); soft TTL, fail-safe, timeouts, negative caching and
//! the distributed lock are the async cache's, unchanged. Two separately
//! built caches share no loads, as in the async API.
//!
//! **Not inside an async runtime.** Blocking a thread of an async runtime
//! stalls every task on it (and tokio panics on a nested `block_on`). So
//! every blocking call, constructors included, made on a thread inside a
//! tokio runtime returns an [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported)
//! error whose message says so — never a panic. There, use the async
//! [`cachette::cache::Cache`](crate::cache::Cache) with `.await`. The one
//! exception is a loader of [`Cache::get_or_load`]: it runs on a blocking
//! pool thread, where blocking is allowed, so it may read other keys
//! through the blocking API (directly: not from inside a future that the
//! loader drives with tokio's `Handle::block_on`, where tokio panics on the
//! nested `block_on`). Methods that make no call to the backend
//! ([`Cache::stats`], [`Cache::namespace`], [`Cache::backend`],
//! [`BackendHandle::name`], …) work anywhere.

mod backend;
mod cache;
mod runtime;

pub use backend::{BackendHandle, KeyIter, open};
pub use cache::{Cache, CacheBuilder};

/// The name of the blocking API in errors.
const NAME: &str = "blocking";

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn handles_are_send_and_sync() {
        assert_send_sync::<Cache>();
        assert_send_sync::<CacheBuilder>();
        assert_send_sync::<BackendHandle>();
    }
}
