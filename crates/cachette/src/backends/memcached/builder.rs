//! [`MemcachedBuilder`]: the servers and options of a Memcached backend,
//! checked before anything connects.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use futures_util::future::join_all;

use super::conn::{Address, Server, Timing};
use super::ring::{Distribution, Ring, ServerName};
use super::{Inner, MemcachedBackend, NAME, ttl_token};
use crate::backend::DEFAULT_MAX_KEY_LEN;
use crate::backends::common::{Counters, Limits, check_timeouts, tls_client_config};
use crate::error::{Error, ErrorKind, Result};

/// The largest value accepted by default: memcached's default item size
/// (1 MiB) less room for the stored key and cachette's header.
pub(crate) const DEFAULT_MAX_VALUE_LEN: usize = 1024 * 1024 - 8 * 1024;

/// memcached's largest item size (`-I` takes at most 1 GiB).
const MAX_ITEM_SIZE: usize = 1 << 30;

/// The longest prefix: a prefix, the generation and a key's digest must
/// fit in memcached's 250 bytes, base64-encoded if need be.
pub const MAX_PREFIX_LEN: usize = 100;

/// How keys are spread over the servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum HashKind {
    /// libmemcached's ketama ring (MD5, 160 points per server), as
    /// libmemcached's `MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED` computes it.
    #[default]
    Ketama,
    /// pymemcache's rendezvous hash (MurmurHash3 of `host:port-key`).
    Rendezvous,
}

/// What happens to the keys of a server that cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Failover {
    /// Operations on its keys fail with `Connection` or `Timeout` until it
    /// is back.
    #[default]
    Error,
    /// Its keys go to the next server of the ring until it is back.
    Next,
}

/// Builds a [`MemcachedBackend`].
///
/// ```no_run
/// # use std::time::Duration;
/// # use cachette::backends::memcached::MemcachedBackend;
/// # #[tokio::main] async fn main() -> cachette::Result<()> {
/// let cache = MemcachedBackend::builder([("10.0.0.1", 11211), ("10.0.0.2", 11211)])
///     .prefix("app:")
///     .response_timeout(Duration::from_millis(500))
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until `build` is awaited"]
#[derive(Clone)]
pub struct MemcachedBuilder {
    servers: Vec<Address>,
    prefix: String,
    connect_timeout: Duration,
    response_timeout: Duration,
    retry_interval: Duration,
    pool_size: usize,
    default_ttl: Option<Duration>,
    max_value_len: usize,
    hash: HashKind,
    failover: Failover,
    tls: bool,
    root_certificates: Vec<Vec<u8>>,
}

impl fmt::Debug for MemcachedBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let servers: Vec<String> = self.servers.iter().map(ToString::to_string).collect();
        f.debug_struct("MemcachedBuilder")
            .field("servers", &servers)
            .field("prefix", &self.prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("retry_interval", &self.retry_interval)
            .field("pool_size", &self.pool_size)
            .field("default_ttl", &self.default_ttl)
            .field("hash", &self.hash)
            .field("failover", &self.failover)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl MemcachedBuilder {
    /// The default of `connect_timeout` and `response_timeout`.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
    /// The longest timeout or retry interval accepted.
    pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);
    /// The most connections per server.
    pub const MAX_POOL_SIZE: usize = 64;

    pub(super) fn new<I, S>(servers: I) -> Self
    where
        I: IntoIterator<Item = (S, u16)>,
        S: Into<String>,
    {
        MemcachedBuilder {
            servers: servers
                .into_iter()
                .map(|(host, port)| Address::Tcp {
                    host: host.into(),
                    port,
                })
                .collect(),
            prefix: String::new(),
            connect_timeout: Self::DEFAULT_TIMEOUT,
            response_timeout: Self::DEFAULT_TIMEOUT,
            retry_interval: Self::DEFAULT_TIMEOUT,
            pool_size: 2,
            default_ttl: None,
            max_value_len: DEFAULT_MAX_VALUE_LEN,
            hash: HashKind::Ketama,
            failover: Failover::Error,
            tls: false,
            root_certificates: Vec::new(),
        }
    }

    /// TLS to every server (memcached started with `-Z`), checked against
    /// the system's roots and those added with
    /// [`root_certificate_pem`](Self::root_certificate_pem). Not over a
    /// Unix socket.
    pub fn tls(mut self, on: bool) -> Self {
        self.tls = on;
        self
    }

    /// Trusts the CA certificates of `pem` (one or several PEM blocks)
    /// besides the system's roots. Turns TLS on.
    pub fn root_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_certificates.push(pem.into());
        self.tls = true;
        self
    }

    /// The TLS connector, if TLS is on.
    fn tls_connector(&self) -> Result<Option<super::conn::Tls>> {
        if !self.tls {
            return Ok(None);
        }
        if self.servers.iter().any(|s| matches!(s, Address::Unix(_))) {
            return Err(Error::config(NAME, "TLS is not offered over a Unix socket"));
        }
        let config = tls_client_config(NAME, &self.root_certificates)?;
        Ok(Some(tokio_rustls::TlsConnector::from(Arc::new(config))))
    }

    /// One server on a Unix socket instead of the TCP servers.
    pub fn unix(mut self, path: impl Into<PathBuf>) -> Self {
        self.servers = vec![Address::Unix(path.into())];
        self
    }

    /// A prefix for every stored key (at most [`MAX_PREFIX_LEN`] bytes):
    /// `clear` removes this prefix's entries only.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a connection attempt may take (1 s by default).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long the server may take to answer (1 s by default).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// How often a server that cannot be reached is tried again (1 s by
    /// default); meanwhile its keys fail at once.
    pub fn retry_interval(mut self, interval: Duration) -> Self {
        self.retry_interval = interval;
        self
    }

    /// Connections per server (2 by default, at most
    /// [`MAX_POOL_SIZE`](Self::MAX_POOL_SIZE)); each carries many requests
    /// at once.
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size;
        self
    }

    /// The TTL of entries written with [`Expiry::Default`](crate::Expiry::Default).
    /// No expiry by default.
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = Some(ttl);
        self
    }

    /// The longest value accepted (by default memcached's default item
    /// size, 1 MiB, less 8 KiB for the key and header): raise it for
    /// servers started with a larger `-I`.
    pub fn max_value_len(mut self, len: usize) -> Self {
        self.max_value_len = len;
        self
    }

    /// How keys are spread over the servers (ketama by default).
    pub fn hash(mut self, hash: HashKind) -> Self {
        self.hash = hash;
        self
    }

    /// What happens to the keys of a server that cannot be reached (they
    /// fail, by default).
    pub fn failover(mut self, failover: Failover) -> Self {
        self.failover = failover;
        self
    }

    fn check(&self) -> Result<()> {
        if self.servers.is_empty() {
            return Err(Error::config(NAME, "no server was given"));
        }
        check_timeouts(
            NAME,
            &[
                ("connect_timeout", self.connect_timeout),
                ("response_timeout", self.response_timeout),
                ("retry_interval", self.retry_interval),
            ],
            Self::MAX_TIMEOUT,
        )?;
        if !(1..=Self::MAX_POOL_SIZE).contains(&self.pool_size) {
            return Err(Error::config(
                NAME,
                format!(
                    "`pool_size` is {}; it must be between 1 and {}",
                    self.pool_size,
                    Self::MAX_POOL_SIZE
                ),
            ));
        }
        if self.prefix.len() > MAX_PREFIX_LEN {
            return Err(Error::config(
                NAME,
                format!(
                    "the prefix is {} bytes long; the limit is {MAX_PREFIX_LEN} bytes",
                    self.prefix.len()
                ),
            ));
        }
        if !(1..=MAX_ITEM_SIZE).contains(&self.max_value_len) {
            return Err(Error::config(
                NAME,
                format!(
                    "`max_value_len` is {}; it must be between 1 and {MAX_ITEM_SIZE} \
                     (memcached's largest item, `-I 1g`)",
                    self.max_value_len
                ),
            ));
        }
        if let Some(ttl) = self.default_ttl {
            if ttl.is_zero() {
                return Err(Error::config(
                    NAME,
                    "`default_ttl` must be greater than zero; leave it unset for no expiry",
                ));
            }
            ttl_token(Some(ttl))
                .map_err(|err| Error::config(NAME, format!("`default_ttl`: {}", err.message())))?;
        }
        Ok(())
    }

    /// Checks the options, starts the connections and waits until each
    /// server answered or failed once (at most `connect_timeout +
    /// response_timeout`). Fails when no server can be reached; servers
    /// that cannot be reached yet are retried in the background. Needs a
    /// tokio runtime.
    pub async fn build(self) -> Result<MemcachedBackend> {
        self.check()?;
        let tls = self.tls_connector()?;
        Error::require_runtime(NAME, "build", "connecting to memcached")?;
        let timing = Timing {
            connect_timeout: self.connect_timeout,
            response_timeout: self.response_timeout,
            retry_interval: self.retry_interval,
        };
        let names: Vec<ServerName> = self
            .servers
            .iter()
            .map(|address| match address {
                Address::Tcp { host, port } => ServerName {
                    host: host.clone(),
                    port: *port,
                },
                Address::Unix(path) => ServerName {
                    host: path.display().to_string(),
                    port: 0,
                },
            })
            .collect();
        let distribution = match self.hash {
            HashKind::Ketama => Distribution::Ketama,
            HashKind::Rendezvous => Distribution::Rendezvous,
        };
        let servers: Vec<Server> = self
            .servers
            .iter()
            .map(|address| Server::start(address.clone(), self.pool_size, timing, tls.clone()))
            .collect();
        let answers = join_all(servers.iter().map(|server| server.call(Vec::new(), 0))).await;
        let reachable = answers.iter().filter(|answer| answer.is_ok()).count();
        if reachable == 0 {
            let first = answers.into_iter().find_map(Result::err);
            let detail = first.map_or_else(String::new, |err| format!(": {}", err.message()));
            return Err(Error::new(
                ErrorKind::Connection,
                NAME,
                format!("no memcached server could be reached{detail}"),
            )
            .with_operation("build"));
        }
        let generations = servers.iter().map(|_| AtomicU64::new(0)).collect();
        Ok(MemcachedBackend {
            inner: Arc::new(Inner {
                ring: Ring::new(distribution, &names),
                servers,
                failover: self.failover,
                generation_key: MemcachedBackend::generation_key_of(&self.prefix),
                prefix: self.prefix,
                limits: Limits {
                    backend: NAME,
                    max_key_len: DEFAULT_MAX_KEY_LEN,
                    max_value_len: Some(self.max_value_len),
                    default_ttl: self.default_ttl,
                },
                generations,
                counters: Counters::default(),
            }),
        })
    }
}
