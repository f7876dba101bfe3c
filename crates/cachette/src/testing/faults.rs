//! [`FaultyBackend`]: a wrapper that injects errors and latency, for tests
//! of layers and of code that must survive a failing backend.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;

use crate::backend::{
    Backend, Capabilities, Expiry, KeyStream, KeyTtl, Lease, LeaseToken, SetOptions, Stats,
};
use crate::error::{Error, ErrorKind, Result};

/// The name in errors that [`FaultyBackend`] injects.
const NAME: &str = "faulty";

/// A backend that forwards every operation to an inner backend, unless a
/// fault is armed: then it fails, or waits first.
///
/// - [`fail_with`](FaultyBackend::fail_with): every operation fails with an
///   error of that kind until cleared with `None`;
/// - [`fail_next`](FaultyBackend::fail_next): the next `n` operations fail
///   (these are used up before `fail_with` applies);
/// - [`set_delay`](FaultyBackend::set_delay): every operation sleeps with
///   `tokio::time::sleep` first, so tokio's paused clock drives it.
///
/// An operation is one call of an `async` method of [`Backend`] (`name` and
/// `capabilities` are forwarded and not counted). Whether it fails is
/// decided when it starts, before the delay. [`calls`](FaultyBackend::calls)
/// and [`calls_of`](FaultyBackend::calls_of) count operations, forwarded or
/// failed. Injected errors have [`Error::backend`] `"faulty"`, the
/// operation set, and a message that says they were injected.
///
/// ```
/// use std::sync::Arc;
/// use cachette::{Backend, ErrorKind, MemoryBackend};
/// use cachette::testing::FaultyBackend;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let faulty = FaultyBackend::new(Arc::new(MemoryBackend::default()));
/// let backend: Arc<dyn Backend> = faulty.clone();
///
/// faulty.fail_next(1, ErrorKind::Connection);
/// let error = backend.get("k").await.unwrap_err();
/// assert_eq!(error.kind(), ErrorKind::Connection);
/// assert_eq!(error.backend(), "faulty");
/// assert_eq!(backend.get("k").await.unwrap(), None);
/// assert_eq!((faulty.calls(), faulty.calls_of("get")), (2, 2));
/// # }
/// ```
pub struct FaultyBackend {
    inner: Arc<dyn Backend>,
    state: Mutex<FaultState>,
}

#[derive(Default)]
struct FaultState {
    fail_with: Option<ErrorKind>,
    fail_next: usize,
    fail_next_kind: Option<ErrorKind>,
    delay: Option<Duration>,
    calls: Vec<(&'static str, usize)>,
}

impl FaultyBackend {
    /// Wraps `inner` with no fault armed. The `Arc` serves both as the
    /// handle to arm faults and, cloned, as an `Arc<dyn Backend>`.
    pub fn new(inner: Arc<dyn Backend>) -> Arc<FaultyBackend> {
        Arc::new(FaultyBackend {
            inner,
            state: Mutex::new(FaultState::default()),
        })
    }

    /// Makes every operation fail with an error of `kind`; `None` clears it.
    pub fn fail_with(&self, kind: Option<ErrorKind>) {
        self.state.lock().fail_with = kind;
    }

    /// Makes the next `n` operations fail with an error of `kind` (replacing
    /// any count still armed); `0` clears it.
    pub fn fail_next(&self, n: usize, kind: ErrorKind) {
        let mut state = self.state.lock();
        state.fail_next = n;
        state.fail_next_kind = Some(kind);
    }

    /// Makes every operation sleep this long before it is forwarded or
    /// fails; `None` removes the delay.
    pub fn set_delay(&self, delay: Option<Duration>) {
        self.state.lock().delay = delay;
    }

    /// How many operations were called, forwarded or failed.
    pub fn calls(&self) -> usize {
        self.state.lock().calls.iter().map(|&(_, n)| n).sum()
    }

    /// How many calls of the operation named `op` (`"get"`, `"set_many"`,
    /// ...) were made, forwarded or failed.
    pub fn calls_of(&self, op: &str) -> usize {
        let state = self.state.lock();
        state
            .calls
            .iter()
            .find(|&&(name, _)| name == op)
            .map_or(0, |&(_, n)| n)
    }

    /// The inner backend.
    pub fn inner(&self) -> &Arc<dyn Backend> {
        &self.inner
    }

    /// Counts the call of `op`, decides whether it fails, waits the delay,
    /// and returns the injected error, if any.
    async fn enter(&self, op: &'static str) -> Result<()> {
        let (fault, delay) = {
            let mut state = self.state.lock();
            match state.calls.iter_mut().find(|(name, _)| *name == op) {
                Some((_, n)) => *n += 1,
                None => state.calls.push((op, 1)),
            }
            let fault = match state.fail_next_kind {
                Some(kind) if state.fail_next > 0 => {
                    state.fail_next -= 1;
                    Some(kind)
                }
                _ => state.fail_with,
            };
            (fault, state.delay)
        };
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        match fault {
            Some(kind) => Err(Error::new(
                kind,
                NAME,
                format!("injected fault ({kind}) by FaultyBackend"),
            )
            .with_operation(op)),
            None => Ok(()),
        }
    }
}

impl fmt::Debug for FaultyBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.lock();
        f.debug_struct("FaultyBackend")
            .field("inner", &self.inner.name())
            .field("fail_with", &state.fail_with)
            .field("fail_next", &state.fail_next)
            .field("delay", &state.delay)
            .finish_non_exhaustive()
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Backend for FaultyBackend {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn get_ready(&self, _key: &str) -> Option<Result<Option<Bytes>>> {
        // Faults and delays live in the async path.
        None
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.enter("get").await?;
        self.inner.get(key).await
    }

    async fn set(&self, key: &str, value: Bytes, options: &SetOptions) -> Result<bool> {
        self.enter("set").await?;
        self.inner.set(key, value, options).await
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        self.enter("delete").await?;
        self.inner.delete(key).await
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        self.enter("exists").await?;
        self.inner.exists(key).await
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>> {
        self.enter("get_many").await?;
        self.inner.get_many(keys).await
    }

    async fn set_many(&self, entries: &[(&str, Bytes)], options: &SetOptions) -> Result<Vec<bool>> {
        self.enter("set_many").await?;
        self.inner.set_many(entries, options).await
    }

    async fn delete_many(&self, keys: &[&str]) -> Result<u64> {
        self.enter("delete_many").await?;
        self.inner.delete_many(keys).await
    }

    async fn incr(&self, key: &str, delta: i64, expiry: Expiry) -> Result<i64> {
        self.enter("incr").await?;
        self.inner.incr(key, delta, expiry).await
    }

    async fn decr(&self, key: &str, delta: i64, expiry: Expiry) -> Result<i64> {
        self.enter("decr").await?;
        self.inner.decr(key, delta, expiry).await
    }

    async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        self.enter("ttl").await?;
        self.inner.ttl(key).await
    }

    async fn touch(&self, key: &str, expiry: Expiry) -> Result<bool> {
        self.enter("touch").await?;
        self.inner.touch(key, expiry).await
    }

    async fn clear(&self) -> Result<()> {
        self.enter("clear").await?;
        self.inner.clear().await
    }

    async fn keys(&self, pattern: &str) -> Result<KeyStream> {
        self.enter("keys").await?;
        self.inner.keys(pattern).await
    }

    async fn invalidate_tags(&self, tags: &[&str]) -> Result<u64> {
        self.enter("invalidate_tags").await?;
        self.inner.invalidate_tags(tags).await
    }

    async fn purge_expired(&self) -> Result<u64> {
        self.enter("purge_expired").await?;
        self.inner.purge_expired().await
    }

    async fn lease(&self, key: &str, ttl: Duration) -> Result<Option<Lease>> {
        self.enter("lease").await?;
        self.inner.lease(key, ttl).await
    }

    async fn release_lease(&self, key: &str, lease: LeaseToken) -> Result<()> {
        self.enter("release_lease").await?;
        self.inner.release_lease(key, lease).await
    }

    async fn stats(&self) -> Result<Stats> {
        self.enter("stats").await?;
        self.inner.stats().await
    }

    async fn health(&self) -> Result<()> {
        self.enter("health").await?;
        self.inner.health().await
    }

    async fn close(&self) -> Result<()> {
        self.enter("close").await?;
        self.inner.close().await
    }
}
