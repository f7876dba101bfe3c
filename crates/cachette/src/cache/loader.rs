//! What a loader of [`Cache::get_or_load`](super::Cache::get_or_load)
//! sees: its [`LoadContext`], and how its error reaches every caller of the
//! load ([`LoaderError`]).

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;

use crate::backend::KeyInMessage;
use crate::error::{Error, ErrorKind};

use super::flight::Leader;
use super::{Codec, EntryOptions, cache_error};

/// Any error a loader may return.
pub(super) type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// A loader as the `get_or_load` family takes it (a closure returning a
/// future of `Option<T>` or an error), named once for the steps of a load:
/// [`Detached`] for loaders that run as tasks of their own, [`InPlace`]
/// for loaders that run inside their caller's future.
pub(super) trait Loader<C: Codec, T: Serialize>: Sized {
    /// The future of one run.
    type Running: Future<Output = Result<Option<T>, Self::Error>>;
    /// The loader's error.
    type Error: Into<BoxError>;
    /// Whether this loader may outlive its caller: then stale values,
    /// eager refreshes and fail-safe recovery attempts load in the
    /// background.
    const DETACHED: bool;

    /// Runs the loader.
    fn start(self, context: LoadContext) -> Self::Running;

    /// Leads the flight `leader`: a detached loader runs it as a task of
    /// its own (and returns `None`); an in-place loader returns the future
    /// that its caller awaits.
    fn lead(self, leader: Leader<C>) -> Option<impl Future<Output = ()>>;
}

/// A `'static + Send` loader: [`Cache::get_or_load`](super::Cache::get_or_load).
///
/// It carries the function that spawns its flight, made where the loader's
/// `Send + 'static` bounds are known: bounds on the `Loader` impl itself
/// would make the future of every `get_or_load` call unprovably `Send`
/// (the compiler's "implementation of `Send` is not general enough").
pub(super) struct Detached<F, C: Codec, T> {
    loader: F,
    spawn: fn(Leader<C>, Detached<F, C, T>),
    value: PhantomData<fn() -> T>,
}

impl<F, C: Codec, T> Detached<F, C, T> {
    /// Wraps a loader that may outlive its caller.
    pub(super) fn new<Fut, E>(loader: F) -> Self
    where
        T: Serialize + Send + 'static,
        F: FnOnce(LoadContext) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<T>, E>> + Send + 'static,
        E: Into<BoxError> + Send + 'static,
    {
        Detached {
            loader,
            spawn: |leader, loader: Detached<F, C, T>| leader.spawn(loader),
            value: PhantomData,
        }
    }
}

/// A loader that may borrow from its caller:
/// [`Cache::get_or_load_borrowed`](super::Cache::get_or_load_borrowed).
pub(super) struct InPlace<F>(pub(super) F);

impl<C, T, F, Fut, E> Loader<C, T> for Detached<F, C, T>
where
    C: Codec,
    T: Serialize,
    F: FnOnce(LoadContext) -> Fut,
    Fut: Future<Output = Result<Option<T>, E>>,
    E: Into<BoxError>,
{
    type Running = Fut;
    type Error = E;
    const DETACHED: bool = true;

    fn start(self, context: LoadContext) -> Fut {
        (self.loader)(context)
    }

    fn lead(self, leader: Leader<C>) -> Option<impl Future<Output = ()>> {
        (self.spawn)(leader, self);
        None::<std::future::Ready<()>>
    }
}

impl<C, T, F, Fut, E> Loader<C, T> for InPlace<F>
where
    C: Codec,
    T: Serialize,
    F: FnOnce(LoadContext) -> Fut,
    Fut: Future<Output = Result<Option<T>, E>>,
    E: Into<BoxError>,
{
    type Running = Fut;
    type Error = E;
    const DETACHED: bool = false;

    fn start(self, context: LoadContext) -> Fut {
        (self.0)(context)
    }

    fn lead(self, leader: Leader<C>) -> Option<impl Future<Output = ()>> {
        Some(leader.run(self))
    }
}

/// What a loader learns about its load, and how it adapts the options of
/// the entry it loads to the value (FusionCache's adaptive caching).
///
/// The context is moved into the loader; its setters take `&self`, and
/// what they set applies when the loader returns.
///
/// ```
/// # use std::sync::Arc;
/// # use std::time::Duration;
/// # use cachette::MemoryBackend;
/// # use cachette::cache::{Cache, EntryOptions};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> cachette::Result<()> {
/// let cache = Cache::builder(Arc::new(MemoryBackend::default()))
///     .default_ttl(Duration::from_secs(60))
///     .build()
///     .await?;
/// let status = cache
///     .get_with(
///         "order:7:status",
///         |ctx| async move {
///             let status = String::from("shipped"); // e.g. from the database
///             if status == "shipped" {
///                 // A final state changes no more: keep it for a day.
///                 ctx.set_ttl(Duration::from_secs(86_400));
///             }
///             Some(status)
///         },
///         &EntryOptions::new(),
///     )
///     .await?;
/// assert_eq!(status.as_deref(), Some("shipped"));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct LoadContext {
    pub(super) key: String,
    pub(super) refresh: bool,
    pub(super) stale_created: Option<u64>,
    pub(super) now: u64,
    pub(super) adapted: Arc<Mutex<Adapted>>,
}

/// What a loader set through its [`LoadContext`].
#[derive(Debug, Default)]
pub(super) struct Adapted {
    /// Options over the call's, for the loaded entry.
    pub(super) options: Option<EntryOptions>,
    /// The loaded value is returned but not stored.
    pub(super) skip: bool,
}

impl LoadContext {
    /// The key being loaded, as the caller wrote it.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Whether this is a background load (a refresh of a stale value, an
    /// eager refresh, or a fail-safe recovery attempt): no caller waits
    /// for it.
    pub fn is_refresh(&self) -> bool {
        self.refresh
    }

    /// How old the stale value is that this load replaces, if there is one
    /// with a known age.
    pub fn stale_age(&self) -> Option<Duration> {
        self.stale_created
            .map(|created| Duration::from_millis(self.now.saturating_sub(created)))
    }

    /// Options for the entry this load stores, over the call's options:
    /// every option set here replaces the call's, tags are added (adaptive
    /// caching). Called again, the options add up the same way. The
    /// result is checked like the call's options: a bad combination (a
    /// soft TTL not below the TTL, ...) fails the load with
    /// [`ErrorKind::InvalidInput`] naming the option. Timeouts set here
    /// have no effect: the load is already running.
    pub fn set_options(&self, options: EntryOptions) {
        let mut adapted = self.adapted.lock();
        match &mut adapted.options {
            Some(current) => current.overlay(options),
            None => adapted.options = Some(options),
        }
    }

    /// The TTL of the entry this load stores; see
    /// [`set_options`](Self::set_options).
    pub fn set_ttl(&self, ttl: Duration) {
        self.set_options(EntryOptions::new().ttl(ttl));
    }

    /// Returns the loaded value (or "not found") to the callers without
    /// storing it: neither in the backend nor as this process's fail-safe
    /// copy.
    pub fn skip_caching(&self) {
        self.adapted.lock().skip = true;
    }
}

/// The loader's error, shared by every caller of one load: the
/// [`source`](std::error::Error::source) of the [`Error`] that
/// [`Cache::get_or_load`](super::Cache::get_or_load) returns when its loader failed.
///
/// ```
/// # use cachette::cache::LoaderError;
/// # fn handle(error: &cachette::Error) {
/// if let Some(failed) = LoaderError::find(error) {
///     if let Some(io) = failed.downcast_ref::<std::io::Error>() {
///         eprintln!("the database read failed: {io}");
///     }
/// }
/// # }
/// ```
#[derive(Clone)]
pub struct LoaderError {
    inner: Arc<dyn StdError + Send + Sync + 'static>,
}

impl LoaderError {
    /// The `LoaderError` behind a cachette error, if a loader caused it.
    pub fn find(error: &Error) -> Option<&LoaderError> {
        StdError::source(error)?.downcast_ref::<LoaderError>()
    }

    /// The loader's error.
    pub fn get_ref(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.inner
    }

    /// The loader's error as `E`, if it is one.
    pub fn downcast_ref<E: StdError + 'static>(&self) -> Option<&E> {
        self.inner.downcast_ref::<E>()
    }

    /// The loader's error, shared.
    pub fn shared(&self) -> Arc<dyn StdError + Send + Sync + 'static> {
        Arc::clone(&self.inner)
    }
}

impl fmt::Debug for LoaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.inner, f)
    }
}

impl fmt::Display for LoaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.inner, f)
    }
}

impl StdError for LoaderError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.inner.source()
    }
}

/// Why a load failed, shared by its callers; each gets its own [`Error`].
#[derive(Clone)]
pub(super) struct Failure {
    kind: ErrorKind,
    pub(super) message: Arc<str>,
    source: Option<LoaderError>,
}

impl Failure {
    /// This failure as the error of one caller.
    pub(super) fn to_error(&self) -> Error {
        let error = cache_error(self.kind, self.message.to_string());
        match &self.source {
            Some(source) => error.with_source(source.clone()),
            None => error,
        }
    }

    /// The loader returned an error.
    pub(super) fn of_loader(key: &str, error: BoxError) -> Failure {
        let kind = error
            .downcast_ref::<Error>()
            .map_or(ErrorKind::Backend, Error::kind);
        Failure {
            kind,
            message: format!(
                "the loader of {key} failed: {error}",
                key = KeyInMessage(key)
            )
            .into(),
            source: Some(LoaderError {
                inner: Arc::from(error),
            }),
        }
    }

    /// The batch loader of `keys` keys returned an error.
    pub(super) fn of_batch_loader(keys: usize, error: BoxError) -> Failure {
        let kind = error
            .downcast_ref::<Error>()
            .map_or(ErrorKind::Backend, Error::kind);
        Failure {
            kind,
            message: format!("the batch loader of {keys} keys failed: {error}").into(),
            source: Some(LoaderError {
                inner: Arc::from(error),
            }),
        }
    }

    /// The loader panicked; keeps the panic's message when it is text.
    pub(super) fn panicked(key: &str, payload: &(dyn std::any::Any + Send)) -> Failure {
        let text = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
        let message = match text {
            Some(text) => format!(
                "the loader of {key} panicked: {text}",
                key = KeyInMessage(key)
            ),
            None => format!("the loader of {key} panicked", key = KeyInMessage(key)),
        };
        Failure {
            kind: ErrorKind::Backend,
            message: message.into(),
            source: None,
        }
    }

    /// The loader's task ended without an outcome.
    pub(super) fn vanished(key: &str) -> Failure {
        Failure {
            kind: ErrorKind::Backend,
            message: format!(
                "the loader of {key} panicked, or was cancelled (its runtime shut down, or the \
                 caller running it in its own future was dropped)",
                key = KeyInMessage(key)
            )
            .into(),
            source: None,
        }
    }

    /// The loader ran past the hard timeout and was cancelled.
    pub(super) fn timed_out(key: &str, limit: Duration) -> Failure {
        Failure {
            kind: ErrorKind::Timeout,
            message: format!(
                "the loader of {key} did not finish within the hard timeout of {limit:?}",
                key = KeyInMessage(key)
            )
            .into(),
            source: None,
        }
    }

    /// The loader's options for its entry are not valid.
    pub(super) fn of_options(key: &str, message: &str) -> Failure {
        Failure {
            kind: ErrorKind::InvalidInput,
            message: format!(
                "the options the loader of {key} set: {message}",
                key = KeyInMessage(key)
            )
            .into(),
            source: None,
        }
    }

    /// The backend could not be read before a fail-safe recovery attempt.
    pub(super) fn of_backend(key: &str, error: &Error) -> Failure {
        Failure {
            kind: error.kind(),
            message: format!(
                "reading {key} before a recovery attempt: {error}",
                key = KeyInMessage(key)
            )
            .into(),
            source: None,
        }
    }

    /// The batch loader ran past the hard timeout and was cancelled.
    pub(super) fn batch_timed_out(keys: usize, limit: Duration) -> Failure {
        Failure {
            kind: ErrorKind::Timeout,
            message: format!(
                "the batch loader of {keys} keys did not finish within the hard timeout of {limit:?}"
            )
            .into(),
            source: None,
        }
    }

    /// The loaded value could not be encoded.
    pub(super) fn of_encoding(key: &str, error: &Error) -> Failure {
        Failure {
            kind: error.kind(),
            message: format!(
                "the value loaded for {key}: {error}",
                key = KeyInMessage(key)
            )
            .into(),
            source: None,
        }
    }
}
