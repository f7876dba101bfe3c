//! Connections to one memcached server: a few long-lived connections,
//! each shared by every caller (multiplexed), reconnected in the
//! background.
//!
//! A caller hands a [`Connection`] a batch of meta commands; the
//! connection's task appends `mn`, writes the batch (coalesced with
//! whatever else is queued into one write) and its reader hands back every
//! response up to the `MN`, in order. memcached answers the commands of a
//! connection strictly in order, so batches never need tags: the first
//! batch waiting is the one the next `MN` ends.
//!
//! Deadlines live inside the connection, not in a timer per request: the
//! reader watches the oldest batch in flight and, when it has waited
//! `response_timeout`, fails every batch of the connection with
//! [`ErrorKind::Timeout`] and reconnects (a server that does not answer
//! its oldest request will not answer the later ones either). A batch
//! that waits for a connection waits at most `connect_timeout`, so that
//! every batch ends within `connect_timeout + response_timeout`.
//!
//! A server that cannot be reached is *down*: batches for it fail at once
//! with [`ErrorKind::Connection`] while a reconnect is tried every
//! `retry_interval` in the background. A caller that drops its future
//! leaves the connection healthy: the reader still reads the answer.

use std::collections::VecDeque;
use std::fmt;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;

use super::NAME;
use super::proto::{self, Response};
use crate::error::{Error, ErrorKind, Result};

/// Where a server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Address {
    /// A TCP `host:port`.
    Tcp { host: String, port: u16 },
    /// A Unix socket.
    Unix(PathBuf),
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Address::Tcp { host, port } => write!(f, "{host}:{port}"),
            Address::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// TLS over TCP: the connector (roots and rustls settings).
pub(crate) type Tls = tokio_rustls::TlsConnector;

/// The timing options of every connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Duration,
    pub(crate) retry_interval: Duration,
}

/// The largest data block a response may carry: memcached's largest item
/// (`-I` at most 1 GiB) and room for its key. A larger one is a server out
/// of step, not data.
const MAX_BLOCK: usize = (1 << 30) + (1 << 20);

/// A batch of commands and where its responses go.
struct Batch {
    bytes: Vec<u8>,
    /// How many commands it holds (each answered once).
    commands: usize,
    /// When the caller handed it over: it must end within
    /// `connect_timeout + response_timeout` of this.
    submitted: Instant,
    reply: oneshot::Sender<Result<Vec<Response>>>,
}

/// A batch written and waiting for its `MN`.
struct InFlight {
    deadline: Instant,
    commands: usize,
    reply: oneshot::Sender<Result<Vec<Response>>>,
}

/// The batches in flight on one live connection, shared by its writer
/// and its reader.
#[derive(Default)]
struct Pending {
    queue: Mutex<VecDeque<InFlight>>,
    /// Wakes the reader when the queue goes from empty to not empty, so
    /// that it watches the new oldest deadline.
    added: Notify,
}

/// The same error again, for each batch a failure ends (an [`Error`]
/// holds its source and is not `Clone`).
fn copy(error: &Error) -> Error {
    Error::new(error.kind(), NAME, error.message().to_owned())
}

impl Pending {
    fn fail_all(&self, error: &Error) {
        for waiting in self.queue.lock().drain(..) {
            let _ = waiting.reply.send(Err(copy(error)));
        }
    }
}

/// One server: `pool_size` connections, used in turn (skipping those that
/// are down while another is up), and whether each could connect at its
/// last attempt.
pub(crate) struct Server {
    pub(crate) address: Address,
    connections: Vec<mpsc::UnboundedSender<Batch>>,
    next: AtomicUsize,
    up: Vec<Arc<AtomicBool>>,
    timing: Timing,
    tls: Option<Tls>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("address", &self.address)
            .field("connections", &self.connections.len())
            .field("up", &self.is_up())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Starts the connection tasks of one server (a tokio runtime must be
    /// running). They end when the `Server` is dropped.
    pub(crate) fn start(
        address: Address,
        pool_size: usize,
        timing: Timing,
        tls: Option<Tls>,
    ) -> Server {
        let up: Vec<Arc<AtomicBool>> = (0..pool_size.max(1))
            .map(|_| Arc::new(AtomicBool::new(true)))
            .collect();
        let connections = up
            .iter()
            .map(|up| {
                let (sender, receiver) = mpsc::unbounded_channel();
                let link = Link {
                    address: address.clone(),
                    timing,
                    tls: tls.clone(),
                };
                tokio::spawn(supervise(link, receiver, Arc::clone(up)));
                sender
            })
            .collect();
        Server {
            address,
            connections,
            next: AtomicUsize::new(0),
            up,
            timing,
            tls,
        }
    }

    /// Whether a connection's last attempt succeeded.
    pub(crate) fn is_up(&self) -> bool {
        self.up.iter().any(|up| up.load(Ordering::Relaxed))
    }

    /// The connection for the next batch: the next in turn that is up, or
    /// the next in turn when none is (it fails the batch at once, or
    /// carries it if it reconnects first).
    fn pick(&self) -> usize {
        let count = self.connections.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % count;
        (0..count)
            .map(|offset| (start + offset) % count)
            .find(|&index| self.up[index].load(Ordering::Relaxed))
            .unwrap_or(start)
    }

    /// Sends `commands` (meta commands, each answered by exactly one
    /// response) and returns their `count` responses in order.
    pub(crate) async fn call(&self, mut commands: Vec<u8>, count: usize) -> Result<Vec<Response>> {
        proto::meta_noop(&mut commands);
        let index = self.pick();
        let (reply, answer) = oneshot::channel();
        let batch = Batch {
            bytes: commands,
            commands: count,
            submitted: Instant::now(),
            reply,
        };
        if self.connections[index].send(batch).is_err() {
            return Err(self.error(ErrorKind::Connection, "the connection task has ended"));
        }
        let responses = answer.await.map_err(|_| {
            self.error(
                ErrorKind::Connection,
                "the connection closed before answering",
            )
        })??;
        if responses.len() != count {
            // An error line the protocol did not announce (a command it
            // could not parse answers twice): the batch cannot be read.
            let detail = responses
                .iter()
                .find_map(|response| match response {
                    Response::Error(line) => Some(line.as_str()),
                    Response::Meta(_) => None,
                })
                .unwrap_or("no error line");
            return Err(self.error(
                ErrorKind::Backend,
                format!(
                    "{} answers to a batch of {count} commands ({detail})",
                    responses.len()
                ),
            ));
        }
        Ok(responses)
    }

    fn error(&self, kind: ErrorKind, message: impl fmt::Display) -> Error {
        Error::new(kind, NAME, format!("{}: {message}", self.address))
    }

    /// Opens a connection of its own (for `lru_crawler metadump`, which
    /// must not share one), within `connect_timeout`.
    pub(crate) async fn dedicated(&self) -> Result<Stream> {
        let link = Link {
            address: self.address.clone(),
            timing: self.timing,
            tls: self.tls.clone(),
        };
        link.connect().await
    }

    /// The timing options.
    pub(crate) fn timing(&self) -> Timing {
        self.timing
    }
}

/// A connected byte stream, TCP or Unix.
pub(crate) type Stream = Pin<Box<dyn AsyncStream>>;

/// What a connection is read and written through.
pub(crate) trait AsyncStream: AsyncRead + AsyncWrite + Send {}
impl<T: AsyncRead + AsyncWrite + Send> AsyncStream for T {}

/// Where and how one connection connects.
struct Link {
    address: Address,
    timing: Timing,
    tls: Option<Tls>,
}

impl Link {
    /// Connects (and shakes hands, with TLS) within `connect_timeout`.
    async fn connect(&self) -> Result<Stream> {
        let address = &self.address;
        let timeout = self.timing.connect_timeout;
        let attempt = async {
            let stream: Stream = match address {
                Address::Tcp { host, port } => {
                    let stream = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
                    stream.set_nodelay(true)?;
                    match &self.tls {
                        None => Box::pin(stream),
                        Some(tls) => {
                            let name = rustls::pki_types::ServerName::try_from(host.clone())
                                .map_err(|err| {
                                    std::io::Error::new(std::io::ErrorKind::InvalidInput, err)
                                })?;
                            Box::pin(tls.connect(name, stream).await?)
                        }
                    }
                }
                #[cfg(unix)]
                Address::Unix(path) => Box::pin(tokio::net::UnixStream::connect(path).await?),
                #[cfg(not(unix))]
                Address::Unix(_) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::Unsupported,
                        "Unix sockets need a Unix system",
                    ));
                }
            };
            Ok::<_, std::io::Error>(stream)
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(err)) => Err(Error::new(
                ErrorKind::Connection,
                NAME,
                format!("{address}: cannot connect: {err}"),
            )
            .with_source(err)),
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                NAME,
                format!("{address}: no connection within {timeout:?}"),
            )),
        }
    }
}

/// The life of one connection: connect, serve until it breaks, and while
/// the server cannot be reached, fail batches at once and try again every
/// `retry_interval`. Ends when every sender is dropped.
async fn supervise(link: Link, mut batches: mpsc::UnboundedReceiver<Batch>, up: Arc<AtomicBool>) {
    let (address, timing) = (&link.address, link.timing);
    loop {
        let error = match link.connect().await {
            Ok(stream) => {
                up.store(true, Ordering::Relaxed);
                let pending = Pending::default();
                let answered = AtomicBool::new(false);
                let outcome = serve(stream, &mut batches, &pending, &answered, address, timing);
                let Some(error) = outcome.await else {
                    return;
                };
                tracing::debug!(server = %address, error = %error, "memcached connection lost");
                pending.fail_all(&error);
                // A connection that broke after serving is reconnected at
                // once; one closed before any answer (a server at its
                // connection limit, a proxy without a backend) or a server
                // that stopped answering is down, like one that refuses.
                if answered.load(Ordering::Relaxed) && error.kind() != ErrorKind::Timeout {
                    continue;
                }
                error
            }
            Err(error) => error,
        };
        if up.swap(false, Ordering::Relaxed) {
            tracing::warn!(server = %address, error = %error, "memcached server down; retrying in the background");
        }
        let error = Error::new(
            error.kind(),
            NAME,
            format!(
                "{} (the server is down; retried every {:?})",
                error.message(),
                timing.retry_interval
            ),
        );
        // Batches that waited for this attempt fail now.
        while let Ok(batch) = batches.try_recv() {
            let _ = batch.reply.send(Err(copy(&error)));
        }
        let retry = tokio::time::sleep(timing.retry_interval);
        tokio::pin!(retry);
        loop {
            tokio::select! {
                batch = batches.recv() => match batch {
                    Some(batch) => { let _ = batch.reply.send(Err(copy(&error))); }
                    None => return,
                },
                () = &mut retry => break,
            }
        }
    }
}

/// Serves one live connection until it breaks (the error) or every sender
/// is gone (`None`).
async fn serve(
    stream: Stream,
    batches: &mut mpsc::UnboundedReceiver<Batch>,
    pending: &Pending,
    answered: &AtomicBool,
    address: &Address,
    timing: Timing,
) -> Option<Error> {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let write = async {
        let mut buffer = Vec::new();
        while let Some(batch) = batches.recv().await {
            buffer.clear();
            let mut queued = Some(batch);
            // Coalesce what is queued into one write; register each batch
            // before its bytes can be answered.
            {
                let now = Instant::now();
                let mut queue = pending.queue.lock();
                let was_empty = queue.is_empty();
                while let Some(batch) = queued.take() {
                    let limit = batch.submitted + timing.connect_timeout + timing.response_timeout;
                    if limit <= now {
                        // It waited its whole time for a connection.
                        let _ = batch.reply.send(Err(Error::new(
                            ErrorKind::Timeout,
                            NAME,
                            format!(
                                "{address}: not sent within {:?}",
                                timing.connect_timeout + timing.response_timeout
                            ),
                        )));
                    } else {
                        buffer.extend_from_slice(&batch.bytes);
                        queue.push_back(InFlight {
                            deadline: limit.min(now + timing.response_timeout),
                            commands: batch.commands,
                            reply: batch.reply,
                        });
                    }
                    if buffer.len() < 64 * 1024 {
                        queued = batches.try_recv().ok();
                    }
                }
                if was_empty {
                    pending.added.notify_one();
                }
            }
            if buffer.is_empty() {
                continue;
            }
            if let Err(err) = writer.write_all(&buffer).await {
                return Some(
                    Error::new(
                        ErrorKind::Connection,
                        NAME,
                        format!("{address}: the connection broke: {err}"),
                    )
                    .with_source(err),
                );
            }
        }
        None
    };
    let read = async {
        let mut buffer = BytesMut::with_capacity(16 * 1024);
        let mut answers = Vec::new();
        let never = Instant::now() + Duration::from_secs(365 * 24 * 3600);
        loop {
            let deadline = pending
                .queue
                .lock()
                .front()
                .map_or(never, |oldest| oldest.deadline);
            let read = tokio::select! {
                // An answer already there wins over a deadline just passed.
                biased;
                read = reader.read_buf(&mut buffer) => read,
                () = pending.added.notified() => continue,
                () = tokio::time::sleep_until(deadline) => {
                    return Error::new(
                        ErrorKind::Timeout,
                        NAME,
                        format!("{address}: no answer within {:?}", timing.response_timeout),
                    );
                }
            };
            match read {
                Ok(0) => {
                    return Error::new(
                        ErrorKind::Connection,
                        NAME,
                        format!("{address}: the server closed the connection"),
                    );
                }
                Ok(_) => {}
                Err(err) => {
                    return Error::new(
                        ErrorKind::Connection,
                        NAME,
                        format!("{address}: the connection broke: {err}"),
                    )
                    .with_source(err);
                }
            }
            loop {
                match proto::parse(&mut buffer, MAX_BLOCK) {
                    Ok(None) => break,
                    Ok(Some(Response::Meta(meta))) if meta.status == Some(proto::Status::Noop) => {
                        let Some(done) = pending.queue.lock().pop_front() else {
                            return Error::new(
                                ErrorKind::Backend,
                                NAME,
                                format!("{address}: an answer to nothing was asked"),
                            );
                        };
                        answered.store(true, Ordering::Relaxed);
                        let _ = done.reply.send(Ok(std::mem::take(&mut answers)));
                    }
                    Ok(Some(response)) => {
                        // Each command is answered once (an unreadable one
                        // at most twice); more is a server out of step.
                        let expected = pending.queue.lock().front().map(|oldest| oldest.commands);
                        match expected {
                            Some(commands) if answers.len() <= 2 * commands => {
                                answers.push(response);
                            }
                            _ => {
                                return Error::new(
                                    ErrorKind::Backend,
                                    NAME,
                                    format!("{address}: answers that no command asked for"),
                                );
                            }
                        }
                    }
                    Err(err) => {
                        return Error::new(
                            ErrorKind::Backend,
                            NAME,
                            format!("{address}: cannot read the server's answer: {}", err.0),
                        );
                    }
                }
            }
        }
    };
    tokio::select! {
        error = write => error,
        error = read => Some(error),
    }
}
