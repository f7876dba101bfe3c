//! The runtime behind a blocking handle, and the one place that turns a
//! future into a blocking call (see the [module docs](super) for why it
//! is a multi-thread runtime with one worker).

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use crate::error::{Error, ErrorKind, Result};

use super::NAME;

/// The runtime of one blocking handle and its clones: created with the
/// handle, shut down (in the background, never waiting) when the last
/// clone is dropped.
pub(super) struct Driver {
    /// `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
}

impl fmt::Debug for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Driver").finish_non_exhaustive()
    }
}

impl Driver {
    /// Starts a runtime for a handle built by `operation`; refused inside
    /// an async runtime like every blocking call.
    pub(super) fn start(operation: &'static str) -> Result<Arc<Driver>> {
        refuse_async_context(operation)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("cachette-blocking")
            .enable_all()
            .build()
            .map_err(|error| {
                Error::new(
                    ErrorKind::Backend,
                    NAME,
                    "could not start the runtime of the blocking API",
                )
                .with_operation(operation)
                .with_source(error)
            })?;
        Ok(Arc::new(Driver {
            runtime: Some(runtime),
        }))
    }

    /// Runs `future` to completion on the calling thread, with this
    /// runtime's timers, I/O and worker behind it; an
    /// [`ErrorKind::Unsupported`] error inside an async runtime.
    pub(super) fn run<F: Future>(&self, operation: &'static str, future: F) -> Result<F::Output> {
        refuse_async_context(operation)?;
        match &self.runtime {
            Some(runtime) => Ok(runtime.handle().block_on(future)),
            // Unreachable: the runtime is taken only by `drop`.
            None => Err(Error::new(
                ErrorKind::Backend,
                NAME,
                "the runtime of the blocking API is shut down",
            )
            .with_operation(operation)),
        }
    }

    /// [`run`](Self::run) for a fallible future.
    pub(super) fn call<T, F>(&self, operation: &'static str, future: F) -> Result<T>
    where
        F: Future<Output = Result<T>>,
    {
        self.run(operation, future)?
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // `shutdown_background` neither waits nor panics, even when
            // the last clone is dropped inside an async context (where a
            // plain drop of a runtime panics) or on one of this runtime's
            // own threads.
            runtime.shutdown_background();
        }
    }
}

thread_local! {
    /// The loads this thread runs the loader of, outermost first: set on a
    /// blocking loader's thread for the time of the loader (see
    /// [`LoadChain`]).
    static CHAIN: RefCell<Option<LoadChain>> = const { RefCell::new(None) };
}

/// The chain of `get_or_load` calls whose loader this thread runs: which
/// cache (by id) and which key. A thread with a chain is a loader of ours
/// on the runtime's blocking pool, where blocking calls are allowed (tokio
/// lets a `spawn_blocking` thread block); the chain also catches a loader
/// that asks for its own key, which would otherwise wait for itself.
#[derive(Debug, Clone, Default)]
pub(super) struct LoadChain {
    loads: Vec<(u64, String)>,
}

impl LoadChain {
    /// The chain of the calling thread (empty outside a loader).
    pub(super) fn current() -> LoadChain {
        CHAIN.with(|chain| chain.borrow().clone().unwrap_or_default())
    }

    /// Whether this chain already loads `key` of cache `cache`.
    pub(super) fn contains(&self, cache: u64, key: &str) -> bool {
        self.loads.iter().any(|(id, k)| *id == cache && k == key)
    }

    /// This chain with one more load.
    pub(super) fn with(mut self, cache: u64, key: &str) -> LoadChain {
        self.loads.push((cache, key.to_owned()));
        self
    }

    /// Runs `body` on this thread with this chain in force.
    pub(super) fn enter<R>(self, body: impl FnOnce() -> R) -> R {
        struct Restore(Option<LoadChain>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let previous = self.0.take();
                CHAIN.with(|chain| *chain.borrow_mut() = previous);
            }
        }
        let previous = CHAIN.with(|chain| chain.borrow_mut().replace(self));
        let _restore = Restore(previous);
        body()
    }
}

/// The error of a blocking call made where it would block an async
/// runtime's thread.
fn refuse_async_context(operation: &'static str) -> Result<()> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Ok(());
    }
    // A loader of ours runs on a runtime's blocking pool, where blocking
    // is allowed: it may read other keys through the blocking API.
    if CHAIN.with(|chain| chain.borrow().is_some()) {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Unsupported,
        NAME,
        "the blocking API cannot run inside an async runtime (it would block one of the \
         runtime's threads); use cachette::cache::Cache, or cachette::open, with `.await` \
         there",
    )
    .with_operation(operation))
}
