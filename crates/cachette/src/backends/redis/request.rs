//! Talking to the server: one request or pipeline within the backend's
//! deadline, batches of requests at once, and redis-rs errors mapped to
//! cachette's kinds (with any URL in their text redacted).

use std::future::Future;
use std::time::Duration;

use redis::{RedisError, RedisResult, Value};

use super::cluster::Conn;
use super::{NAME, PARALLEL, RedisBackend, scripts};
use crate::error::{Error, ErrorKind, Result};
use crate::params::redact_text;

/// Maps a redis-rs error to a cachette error of backend `redis`, with any
/// URL in its text redacted.
pub(super) fn map_error(err: RedisError) -> Error {
    use redis::{ErrorKind as K, ServerErrorKind as S};
    let code = err.code().unwrap_or_default().to_owned();
    let detail = err.detail().unwrap_or_default().to_owned();
    let (kind, message) = if err.is_timeout() {
        (
            ErrorKind::Timeout,
            "the server did not answer in time".to_owned(),
        )
    } else {
        match err.kind() {
            K::Io | K::ClusterConnectionNotFound => (
                ErrorKind::Connection,
                format!("the connection failed: {err}"),
            ),
            K::AuthenticationFailed => (
                ErrorKind::PermissionDenied,
                format!("the server refused the login (check user and password): {err}"),
            ),
            K::Server(S::NoPerm) => (
                ErrorKind::PermissionDenied,
                format!("the ACL user may not do this: {err}"),
            ),
            // A transaction (MULTI/EXEC) refused by the ACL reports its
            // commands' NOPERM errors inside an EXECABORT.
            K::Server(S::ExecAbort) if err.to_string().contains("NoPerm") => (
                ErrorKind::PermissionDenied,
                format!("the ACL user may not do this: {err}"),
            ),
            _ if matches!(code.as_str(), "NOAUTH" | "WRONGPASS" | "NOPERM") => (
                ErrorKind::PermissionDenied,
                format!("the server refused: {err}"),
            ),
            // In a cluster, a redirection still left after redis-rs' own
            // retries means the slot's master is not reachable.
            K::Server(S::Moved | S::Ask) => (
                ErrorKind::Connection,
                format!("the master of this key's slot is not reachable: {err}"),
            ),
            K::Server(S::BusyLoading | S::TryAgain | S::ClusterDown | S::MasterDown) => (
                ErrorKind::Connection,
                format!("the server is not ready: {err}"),
            ),
            _ if detail.contains("not an integer") => (
                ErrorKind::NotAnInteger,
                "the stored value is not a decimal 64-bit integer".to_owned(),
            ),
            _ if detail.contains("overflow") => (
                ErrorKind::Overflow,
                "the counter would leave the range of a signed 64-bit integer".to_owned(),
            ),
            _ => (ErrorKind::Backend, format!("{err}")),
        }
    };
    Error::new(kind, NAME, redact_text(&message)).with_source(err)
}

/// Runs `jobs`, at most [`PARALLEL`] at a time; the answers in order.
pub(super) async fn all<T, F: Future<Output = RedisResult<T>>>(
    jobs: Vec<F>,
) -> RedisResult<Vec<T>> {
    let mut out = Vec::with_capacity(jobs.len());
    let mut jobs = jobs.into_iter().peekable();
    while jobs.peek().is_some() {
        let chunk: Vec<F> = jobs.by_ref().take(PARALLEL).collect();
        out.extend(futures_util::future::try_join_all(chunk).await?);
    }
    Ok(out)
}

/// A TTL as Redis takes it: milliseconds, rounded up so that a TTL under
/// one millisecond is 1 (never `0`, which means none here and is an error
/// for `PX`), and `0` for none.
pub(super) fn ttl_arg(ttl: Option<Duration>) -> u64 {
    ttl.map_or(0, |ttl| {
        let millis = ttl.as_nanos().div_ceil(1_000_000).max(1);
        u64::try_from(millis).unwrap_or(u64::MAX)
    })
}

/// [`ErrorKind::Unsupported`] naming `operation` outside a tokio runtime:
/// redis-rs, its reconnections and the backend's deadlines need one.
pub(super) fn require_runtime(operation: &'static str) -> Result<()> {
    Error::require_runtime(NAME, operation, "the Redis backend")
}

impl RedisBackend {
    /// Sends `pipe` on the backend's connection within its deadline (the
    /// near cache's tracked reads share the connection).
    #[cfg(feature = "near")]
    pub(crate) async fn query_pipeline<T: redis::FromRedisValue>(
        &self,
        operation: &'static str,
        pipe: &redis::Pipeline,
    ) -> Result<T> {
        let mut conn = self.conn();
        self.run(operation, async move { pipe.query_async(&mut conn).await })
            .await
    }

    /// Runs one request (one command or one pipeline, one round trip; or
    /// several such requests at once, not one after another) within the
    /// backend's deadline. On a standalone connection redis-rs
    /// already bounds it by that deadline: the request waits at most
    /// `connect_timeout` for a (re)connection, which the manager makes in a
    /// single attempt, then at most `response_timeout` for the answer. So
    /// there it is not wrapped in a timer of its own, which costs the hot
    /// path of many concurrent requests about a tenth of its throughput
    /// (docs/benchmarks.md). Cluster and sentinel connections, and
    /// requests made one after another, go through [`run`](Self::run).
    pub(super) async fn run_request<T>(
        &self,
        operation: &'static str,
        request: impl Future<Output = RedisResult<T>>,
    ) -> Result<T> {
        require_runtime(operation)?;
        match self.inner.conn {
            Conn::Single(_) => request
                .await
                .map_err(|err| map_error(err).with_operation(operation)),
            Conn::Cluster(_) | Conn::Sentinel(_) => self.run(operation, request).await,
        }
    }

    /// Runs one exchange with the server within the backend's deadline.
    pub(super) async fn run<T>(
        &self,
        operation: &'static str,
        exchange: impl Future<Output = RedisResult<T>>,
    ) -> Result<T> {
        self.run_within(operation, self.inner.deadline, exchange)
            .await
    }

    /// Runs an exchange with the server within `limit`.
    pub(super) async fn run_within<T>(
        &self,
        operation: &'static str,
        limit: Duration,
        exchange: impl Future<Output = RedisResult<T>>,
    ) -> Result<T> {
        require_runtime(operation)?;
        match tokio::time::timeout(limit, exchange).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(map_error(err).with_operation(operation)),
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                NAME,
                format!(
                    "no answer from {} within {:?}",
                    self.inner.address, self.inner.deadline
                ),
            )
            .with_operation(operation)),
        }
    }

    /// Sends one pipeline of writes; it is sent again after loading the
    /// scripts if the server's script cache was empty (a restarted server):
    /// then no script ran, and a `SET` that did is written again, to the
    /// same effect (a write the pipeline drops records for is never `NX`).
    pub(super) async fn send_pipeline(
        &self,
        operation: &'static str,
        pipe: &redis::Pipeline,
    ) -> Result<Vec<Value>> {
        let started = tokio::time::Instant::now();
        let mut conn = self.conn();
        let sent = self
            .run_request(operation, async { pipe.query_async(&mut conn).await })
            .await;
        match sent {
            Err(err) if err.message().to_ascii_uppercase().contains("NOSCRIPT") => {
                // Loading the script and sending again share what is left
                // of the one deadline.
                let left = self.inner.deadline.saturating_sub(started.elapsed());
                self.run_within(operation, left, async move {
                    scripts::SET_TAGGED.load_async(&mut conn).await?;
                    scripts::DROP_ENTRIES.load_async(&mut conn).await?;
                    pipe.query_async(&mut conn).await
                })
                .await
            }
            other => other,
        }
    }

    /// The server's own figures for [`Stats::details`](crate::Stats): the
    /// keys in the database (every prefix) as `db_keys`, `DBSIZE` summed
    /// over the masters in cluster mode; otherwise one `INFO` (its default
    /// sections) also gives `server_used_memory` (bytes, `INFO memory`) and
    /// `server_keyspace_hits`, `server_keyspace_misses`,
    /// `server_evicted_keys`, `server_expired_keys` (`INFO stats`, for the
    /// whole server, every client and prefix). None when the ACL user may
    /// not run `INFO` (it is in `@dangerous`, which hardened users lack):
    /// the client's own counters are still worth having.
    pub(super) async fn server_figures(&self) -> Result<Vec<(String, u64)>> {
        let mut conn = self.conn();
        if self.is_cluster() {
            // The sum over the masters (redis-rs adds up their answers).
            let keys = self
                .run("stats", async move {
                    redis::cmd("DBSIZE").query_async::<u64>(&mut conn).await
                })
                .await;
            return Ok(unless_refused(keys)?
                .map(|keys| vec![("db_keys".to_owned(), keys)])
                .unwrap_or_default());
        }
        let info: Result<String> = self
            .run("stats", async move {
                redis::cmd("INFO").query_async(&mut conn).await
            })
            .await;
        let Some(info) = unless_refused(info)? else {
            return Ok(Vec::new());
        };
        let db = format!(
            "db{}:",
            redis::aio::ConnectionLike::get_db(&self.inner.conn)
        );
        let keys = info
            .lines()
            .find_map(|line| line.strip_prefix(db.as_str()))
            .and_then(|rest| rest.split(',').find_map(|f| f.strip_prefix("keys=")))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let mut figures = vec![("db_keys".to_owned(), keys)];
        for (field, name) in [
            ("used_memory", "server_used_memory"),
            ("keyspace_hits", "server_keyspace_hits"),
            ("keyspace_misses", "server_keyspace_misses"),
            ("evicted_keys", "server_evicted_keys"),
            ("expired_keys", "server_expired_keys"),
        ] {
            let value = info.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                if key == field {
                    value.trim().parse::<u64>().ok()
                } else {
                    None
                }
            });
            // A server that hides a field (a proxy, an old version) leaves it out.
            if let Some(value) = value {
                figures.push((name.to_owned(), value));
            }
        }
        Ok(figures)
    }
}

/// The answer of a command for [`RedisBackend::server_figures`], or `None`
/// when the ACL refused it.
fn unless_refused<T>(answer: Result<T>) -> Result<Option<T>> {
    match answer {
        Ok(value) => Ok(Some(value)),
        Err(err) if err.kind() == ErrorKind::PermissionDenied => {
            tracing::debug!(error = %err, "the ACL user may not read the server's figures");
            Ok(None)
        }
        Err(err) => Err(err),
    }
}
