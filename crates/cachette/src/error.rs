//! The one error type of cachette.
//!
//! Every fallible operation returns [`Error`]. Callers branch on
//! [`Error::kind`]; retry logic looks only at [`Error::is_temporary`].

use std::borrow::Cow;
use std::fmt;

/// What went wrong, in terms a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The backend could not be reached or the connection broke.
    Connection,
    /// The operation did not complete within its deadline.
    Timeout,
    /// The caller passed something the backend cannot accept: an empty key, a
    /// key or value over a limit, a zero TTL. The message names the limit.
    InvalidInput,
    /// A URL, builder option or configuration file is wrong.
    Config,
    /// Encoding or decoding a value failed, or stored data was corrupt.
    Serialization,
    /// The backend does not support this operation (see its capabilities).
    Unsupported,
    /// `incr`/`decr` found a value that is not a decimal 64-bit integer.
    NotAnInteger,
    /// `incr`/`decr` would leave the range of a signed 64-bit integer.
    Overflow,
    /// The backend refused the operation for lack of permission (e.g. a
    /// Redis ACL).
    PermissionDenied,
    /// Any other failure reported by the backend.
    Backend,
}

impl ErrorKind {
    /// A short lower-case name, stable across releases.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connection => "connection",
            ErrorKind::Timeout => "timeout",
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::Config => "config",
            ErrorKind::Serialization => "serialization",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::NotAnInteger => "not an integer",
            ErrorKind::Overflow => "overflow",
            ErrorKind::PermissionDenied => "permission denied",
            ErrorKind::Backend => "backend",
        }
    }

    /// Whether an error of this kind may succeed if the same operation is
    /// tried again later.
    pub fn is_temporary(self) -> bool {
        matches!(self, ErrorKind::Connection | ErrorKind::Timeout)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The error of every cachette operation: a kind, the backend's name, the
/// operation, a message and an optional source.
///
/// Messages never contain secrets (passwords are stripped from URLs before
/// they reach an error).
pub struct Error {
    kind: ErrorKind,
    backend: Cow<'static, str>,
    operation: Option<&'static str>,
    message: Cow<'static, str>,
    source: Option<Source>,
}

impl Error {
    /// A new error of `kind` raised by `backend`.
    pub fn new(
        kind: ErrorKind,
        backend: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Error {
            kind,
            backend: backend.into(),
            operation: None,
            message: message.into(),
            source: None,
        }
    }

    /// Shorthand for an [`ErrorKind::InvalidInput`] error.
    pub fn invalid_input(
        backend: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Error::new(ErrorKind::InvalidInput, backend, message)
    }

    /// Shorthand for an [`ErrorKind::Config`] error.
    pub fn config(
        backend: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Error::new(ErrorKind::Config, backend, message)
    }

    /// Shorthand for an [`ErrorKind::Unsupported`] error about `operation`.
    pub fn unsupported(backend: impl Into<Cow<'static, str>>, operation: &'static str) -> Self {
        Error::new(
            ErrorKind::Unsupported,
            backend,
            format!("the operation `{operation}` is not supported by this backend"),
        )
        .with_operation(operation)
    }

    /// [`ErrorKind::Unsupported`] unless this thread is inside a tokio
    /// runtime: `needs` says what the runtime is needed for (a timer, a
    /// connection, a background task), `operation` what was asked.
    /// Entry points that cannot work without tokio call this first rather
    /// than let tokio panic ("there is no reactor running").
    pub(crate) fn require_runtime(
        backend: &'static str,
        operation: &'static str,
        needs: &str,
    ) -> Result<()> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Unsupported,
            backend,
            format!(
                "{needs} needs a tokio runtime: call it from a task of one (e.g. under \
                 `#[tokio::main]`), not from a plain thread or another executor"
            ),
        )
        .with_operation(operation))
    }

    /// Records the operation that failed (`get`, `set`, ...).
    pub fn with_operation(mut self, operation: &'static str) -> Self {
        self.operation = Some(operation);
        self
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Puts `context` in front of the message (`"{context}: {message}"`),
    /// keeping kind, backend, operation and source.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message).into();
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The name of the backend (or layer) that raised the error.
    pub fn backend(&self) -> &str {
        &self.backend
    }

    /// The operation that failed, when known.
    pub fn operation(&self) -> Option<&'static str> {
        self.operation
    }

    /// The human-readable message, without kind or backend.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether trying the same operation again later may succeed.
    pub fn is_temporary(&self) -> bool {
        self.kind.is_temporary()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} error from {}", self.kind, self.backend)?;
        if let Some(op) = self.operation {
            write!(f, " in `{op}`")?;
        }
        // The source is not repeated here: it is returned by `source()`,
        // and error reporters (anyhow's `{:#}`, tracing) print the chain.
        write!(f, ": {}", self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("backend", &self.backend)
            .field("operation", &self.operation)
            .field("message", &self.message)
            .field("source", &self.source)
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

/// The result type of cachette.
pub type Result<T, E = Error> = std::result::Result<T, E>;
