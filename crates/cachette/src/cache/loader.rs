//! What a loader of [`Cache::get_or_load`](super::Cache::get_or_load)
//! sees: its [`LoadContext`], and how its error reaches every caller of the
//! load ([`LoaderError`]).

use crate::backend::KeyInMessage;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, ErrorKind};

use super::cache_error;

/// Any error a loader may return.
pub(super) type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// A loader as [`Cache::get_or_load`](super::Cache::get_or_load) takes it
/// (a closure returning a future of `Option<T>` or an error), named once
/// for the steps of a load.
pub(super) trait Loader<T>: Send + 'static {
    /// The future of one run.
    type Running: Future<Output = Result<Option<T>, Self::Error>> + Send + 'static;
    /// The loader's error.
    type Error: Into<BoxError> + Send + 'static;

    /// Runs the loader.
    fn start(self, context: LoadContext) -> Self::Running;
}

impl<T, F, Fut, E> Loader<T> for F
where
    F: FnOnce(LoadContext) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Option<T>, E>> + Send + 'static,
    E: Into<BoxError> + Send + 'static,
{
    type Running = Fut;
    type Error = E;

    fn start(self, context: LoadContext) -> Fut {
        self(context)
    }
}

/// What a loader learns about its load.
#[derive(Debug, Clone)]
pub struct LoadContext {
    pub(super) key: String,
    pub(super) refresh: bool,
    pub(super) stale_created: Option<u64>,
    pub(super) now: u64,
}

impl LoadContext {
    /// The key being loaded, as the caller wrote it.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Whether this is a background refresh of a stale value (no caller
    /// waits for it).
    pub fn is_refresh(&self) -> bool {
        self.refresh
    }

    /// How old the stale value is that this load replaces, if there is one
    /// with a known age.
    pub fn stale_age(&self) -> Option<Duration> {
        self.stale_created
            .map(|created| Duration::from_millis(self.now.saturating_sub(created)))
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
                "the loader of {key} panicked, or its task was cancelled (runtime shut down)",
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
