//! [`RedisBuilder`]: where the server is, how to log in, timeouts, prefix.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{AsyncPushSender, ConnectionManager, ConnectionManagerConfig, SendError};
use redis::{
    ConnectionAddr, ConnectionInfo, IntoConnectionInfo, ProtocolVersion, PushInfo,
    RedisConnectionInfo,
};

use super::cluster::{self, Conn};
use super::sentinel::{SentinelConn, SentinelSettings};
use super::{Inner, MAX_KEY_LEN, NAME, RedisBackend, map_error};
use crate::backends::common::{BuilderLimits, check_timeouts};
use crate::error::{Error, ErrorKind, Result};

/// Where the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Address {
    Tcp {
        host: String,
        port: u16,
        tls: bool,
    },
    Unix(PathBuf),
    /// Seed nodes of a Redis Cluster.
    Cluster(Vec<(String, u16)>),
    /// The sentinels, and the name they monitor the master under.
    Sentinel {
        nodes: Vec<(String, u16)>,
        master: String,
    },
}

/// Hands push messages to a shared sender (redis-rs wants an owned one).
struct ForwardPushes(Arc<dyn AsyncPushSender>);

impl AsyncPushSender for ForwardPushes {
    fn send(&self, info: PushInfo) -> std::result::Result<(), SendError> {
        self.0.send(info)
    }
}

/// Configures and connects a [`RedisBackend`].
///
/// ```no_run
/// use std::time::Duration;
/// use cachette::backends::redis::RedisBackend;
///
/// # #[tokio::main] async fn main() -> cachette::Result<()> {
/// let cache = RedisBackend::builder("127.0.0.1", 6379)
///     .prefix("app:")
///     .username("app")
///     .password("secret")
///     .response_timeout(Duration::from_millis(500))
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use = "a RedisBuilder does nothing until `build` is awaited"]
pub struct RedisBuilder {
    address: Address,
    username: Option<String>,
    password: Option<String>,
    /// The login of the sentinels themselves (sentinel mode).
    sentinel_username: Option<String>,
    sentinel_password: Option<String>,
    db: i64,
    prefix: String,
    connect_timeout: Duration,
    response_timeout: Duration,
    default_ttl: Option<Duration>,
    tags: bool,
    root_cert_pem: Option<Vec<u8>>,
    insecure_tls: bool,
    /// Where RESP3 push messages go (the near cache's invalidations); set,
    /// the connection speaks RESP3.
    push_sender: Option<Arc<dyn AsyncPushSender>>,
}

impl fmt::Debug for RedisBuilder {
    /// The password is never shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBuilder")
            .field("address", &self.address)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("sentinel_username", &self.sentinel_username)
            .field(
                "sentinel_password",
                &self.sentinel_password.as_ref().map(|_| "***"),
            )
            .field("db", &self.db)
            .field("prefix", &self.prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("default_ttl", &self.default_ttl)
            .field("tags", &self.tags)
            .field("root_cert_pem", &self.root_cert_pem.as_ref().map(Vec::len))
            .field("insecure_tls", &self.insecure_tls)
            .field("push_sender", &self.push_sender.is_some())
            .finish()
    }
}

impl RedisBuilder {
    /// The default connect timeout: one second.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
    /// The default response timeout: one second.
    pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
    /// The longest connect or response timeout: one day.
    pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);
    /// The longest default TTL: about a hundred years.
    pub const MAX_DEFAULT_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

    pub(super) fn new(host: impl Into<String>, port: u16) -> Self {
        RedisBuilder {
            address: Address::Tcp {
                host: host.into(),
                port,
                tls: false,
            },
            username: None,
            password: None,
            sentinel_username: None,
            sentinel_password: None,
            db: 0,
            prefix: String::new(),
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            response_timeout: Self::DEFAULT_RESPONSE_TIMEOUT,
            default_ttl: None,
            tags: true,
            root_cert_pem: None,
            insecure_tls: false,
            push_sender: None,
        }
    }

    pub(super) fn new_cluster(nodes: Vec<(String, u16)>) -> Self {
        let mut builder = Self::new("", 0);
        builder.address = Address::Cluster(nodes);
        builder
    }

    pub(super) fn new_sentinel(nodes: Vec<(String, u16)>, master: String) -> Self {
        let mut builder = Self::new("", 0);
        builder.address = Address::Sentinel { nodes, master };
        builder
    }

    /// Connects over a Unix socket instead of TCP.
    pub fn unix(mut self, path: impl Into<PathBuf>) -> Self {
        self.address = Address::Unix(path.into());
        self
    }

    /// Connects with TLS (`rediss://`). The server's certificate is checked
    /// against the system's roots, or [`root_certificate_pem`](Self::root_certificate_pem).
    pub fn tls(mut self, on: bool) -> Self {
        if let Address::Tcp { tls, .. } = &mut self.address {
            *tls = on;
        }
        self
    }

    /// A CA certificate (PEM) to trust instead of the system's roots.
    pub fn root_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_cert_pem = Some(pem.into());
        self
    }

    /// Skips the check of the server's host name against its certificate.
    /// Only for tests.
    pub fn danger_accept_invalid_hostnames(mut self, on: bool) -> Self {
        self.insecure_tls = on;
        self
    }

    /// The ACL user name (Redis 6+).
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// The password (`AUTH`). Never shown in `Debug`, logs or errors.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Sentinel mode: the ACL user name for the sentinels themselves
    /// (other modes ignore it).
    pub fn sentinel_username(mut self, username: impl Into<String>) -> Self {
        self.sentinel_username = Some(username.into());
        self
    }

    /// Sentinel mode: the password of the sentinels themselves (their
    /// `requirepass`; other modes ignore it). [`password`](Self::password)
    /// is the data nodes'. Never shown in `Debug`, logs or errors.
    pub fn sentinel_password(mut self, password: impl Into<String>) -> Self {
        self.sentinel_password = Some(password.into());
        self
    }

    /// The database number (`SELECT`), 0 by default.
    pub fn db(mut self, db: i64) -> Self {
        self.db = db;
        self
    }

    /// A prefix put in front of every key; `clear` and `keys` see only the
    /// keys under it. Empty by default (the whole database).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long one connection attempt may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Whether this backend keeps tags (default `true`). With `false`,
    /// [`Capabilities::tags`](crate::Capabilities::tags) is false, a `set`
    /// with tags and `invalidate_tags` are [`ErrorKind::Unsupported`], and
    /// an untagged write is a bare `SET`: it no longer drops the key's tag
    /// record first, which is what a write costs extra to keep tags exact.
    /// Every backend that writes this prefix must then have tags off too: a
    /// key written with tags and overwritten here would keep its old tags.
    pub fn tags(mut self, enabled: bool) -> Self {
        self.tags = enabled;
        self
    }

    /// How long the server may take to answer one operation.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// The TTL of [`Expiry::Default`](crate::Expiry::Default); none by default.
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = Some(ttl);
        self
    }

    /// Sends the server's RESP3 push messages (and redis-rs'
    /// `Disconnection` notices) to `sender`; the connection speaks RESP3.
    /// Standalone only.
    #[cfg(feature = "near")]
    pub(crate) fn push_sender(mut self, sender: Arc<dyn AsyncPushSender>) -> Self {
        self.push_sender = Some(sender);
        self
    }

    /// The key prefix set so far.
    #[cfg(feature = "near")]
    pub(crate) fn prefix_text(&self) -> &str {
        &self.prefix
    }

    /// The address for messages: `host:port` or the socket path.
    fn describe(&self) -> String {
        match &self.address {
            Address::Tcp { host, port, tls } => {
                format!(
                    "{}://{host}:{port}/{}",
                    if *tls { "rediss" } else { "redis" },
                    self.db
                )
            }
            Address::Unix(path) => format!("redis+unix://{}", path.display()),
            Address::Cluster(nodes) => format!("redis+cluster://{}", node_list(nodes)),
            Address::Sentinel { nodes, master } => {
                format!("redis+sentinel://{}/{master}/{}", node_list(nodes), self.db)
            }
        }
    }

    fn connection_info(&self) -> Result<ConnectionInfo> {
        let addr = match &self.address {
            Address::Tcp {
                host,
                port,
                tls: false,
            } => ConnectionAddr::Tcp(host.clone(), *port),
            Address::Tcp {
                host,
                port,
                tls: true,
            } => ConnectionAddr::TcpTls {
                host: host.clone(),
                port: *port,
                insecure: self.insecure_tls,
                tls_params: None,
            },
            Address::Unix(path) => ConnectionAddr::Unix(path.clone()),
            Address::Cluster(_) | Address::Sentinel { .. } => {
                return Err(Error::config(
                    NAME,
                    "a cluster or a sentinel group has no single address",
                ));
            }
        };
        let mut redis = RedisConnectionInfo::default().set_db(self.db);
        if self.push_sender.is_some() {
            redis = redis.set_protocol(ProtocolVersion::RESP3);
        }
        if let Some(user) = &self.username {
            redis = redis.set_username(user);
        }
        if let Some(password) = &self.password {
            redis = redis.set_password(password);
        }
        let info = addr
            .into_connection_info()
            .map_err(map_error)?
            .set_redis_settings(redis);
        Ok(info)
    }

    /// Connects (waiting at most twice the connect timeout plus the
    /// response timeout) and returns the backend.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] for a bad option, [`ErrorKind::Connection`]
    /// or [`ErrorKind::Timeout`] when the server cannot be reached,
    /// [`ErrorKind::PermissionDenied`] for a refused login.
    pub async fn build(self) -> Result<RedisBackend> {
        let limits = BuilderLimits {
            default_ttl: self.default_ttl,
            ..BuilderLimits::default()
        };
        limits.validate(NAME, MAX_KEY_LEN)?;
        if self.prefix.len() >= MAX_KEY_LEN {
            return Err(Error::config(
                NAME,
                format!(
                    "the prefix is {} bytes long; it must leave room for keys \
                     within the limit of {MAX_KEY_LEN} bytes",
                    self.prefix.len()
                ),
            ));
        }
        super::request::require_runtime("connect")?;
        self.check_durations()?;
        if let Address::Cluster(nodes) = &self.address {
            let nodes = nodes.clone();
            return self.build_cluster(nodes).await;
        }
        if let Address::Sentinel { nodes, master } = &self.address {
            let (nodes, master) = (nodes.clone(), master.clone());
            return self.build_sentinel(nodes, master).await;
        }
        let info = self.connection_info()?;
        let tls = matches!(self.address, Address::Tcp { tls: true, .. });
        let client = if tls {
            // rustls needs one process-wide crypto provider; ring is the one
            // compiled in. An error means one is installed already.
            let _ = rustls::crypto::ring::default_provider().install_default();
            redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: self.root_cert_pem.clone(),
                },
            )
        } else {
            redis::Client::open(info)
        }
        .map_err(|err| map_error(err).context(format!("cannot configure {}", self.describe())))?;

        // One connection attempt per reconnect, bounded by the connect
        // timeout, and every request bounded by the response timeout: a
        // request never waits longer than connect + response timeout, the
        // backend's deadline (single requests rely on this, see
        // `RedisBackend::run_request`). After a failed attempt the manager
        // tries again on the next operation.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.response_timeout))
            .set_number_of_retries(0);
        let config = match &self.push_sender {
            Some(sender) => config.set_push_sender(ForwardPushes(Arc::clone(sender))),
            None => config,
        };
        let conn = self
            .connect(ConnectionManager::new_with_config(client, config))
            .await?;
        Ok(self.into_backend(Conn::Single(conn)))
    }

    /// Timeouts neither zero nor over [`MAX_TIMEOUT`](Self::MAX_TIMEOUT),
    /// and a default TTL of at most [`MAX_DEFAULT_TTL`](Self::MAX_DEFAULT_TTL):
    /// anything longer is a [`ErrorKind::Config`] error naming the option
    /// (deadlines are added to clocks, which must not overflow).
    fn check_durations(&self) -> Result<()> {
        check_timeouts(
            NAME,
            &[
                ("connect_timeout", self.connect_timeout),
                ("response_timeout", self.response_timeout),
            ],
            Self::MAX_TIMEOUT,
        )?;
        match self.default_ttl {
            Some(ttl) if ttl > Self::MAX_DEFAULT_TTL => Err(Error::config(
                NAME,
                format!(
                    "`default_ttl` is {ttl:?}; it must be at most {:?}",
                    Self::MAX_DEFAULT_TTL
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Connects to a cluster through its seed nodes: one connection that
    /// learns the slot map and routes every command to its slot's master.
    async fn build_cluster(self, nodes: Vec<(String, u16)>) -> Result<RedisBackend> {
        if nodes.is_empty() {
            return Err(Error::config(
                NAME,
                "a cluster needs at least one seed node",
            ));
        }
        if self.db != 0 {
            return Err(Error::config(
                NAME,
                "Redis Cluster has database 0 only; `db` must be 0",
            ));
        }
        if self.root_cert_pem.is_some() || self.insecure_tls {
            return Err(Error::config(
                NAME,
                "TLS is not supported in cluster mode yet",
            ));
        }
        if self.push_sender.is_some() {
            return Err(Error::config(
                NAME,
                "client-side tracking over Redis Cluster is not supported yet",
            ));
        }
        if !cluster::prefix_is_cluster_safe(&self.prefix) {
            return Err(Error::config(
                NAME,
                format!(
                    "prefix `{}`: in cluster mode a `{{` in the prefix must open a complete, non-empty `{{hash tag}}` (which puts every key in one slot)",
                    self.prefix
                ),
            ));
        }
        let seeds: Vec<ConnectionInfo> = nodes
            .iter()
            .map(|(host, port)| ConnectionAddr::Tcp(host.clone(), *port).into_connection_info())
            .collect::<redis::RedisResult<_>>()
            .map_err(map_error)?;
        // A few quick retries let redis-rs follow a MOVED redirection after
        // a topology change; the backend's deadline (connect + response
        // timeout) bounds every operation anyway.
        let mut builder = redis::cluster::ClusterClientBuilder::new(seeds)
            .connection_timeout(self.connect_timeout)
            .response_timeout(self.response_timeout)
            .retries(3)
            .min_retry_wait(10)
            .max_retry_wait(200);
        if let Some(user) = &self.username {
            builder = builder.username(user);
        }
        if let Some(password) = &self.password {
            builder = builder.password(password);
        }
        let client = builder.build().map_err(|err| {
            map_error(err).context(format!("cannot configure {}", self.describe()))
        })?;
        let conn = self.connect(client.get_async_connection()).await?;
        Ok(self.into_backend(Conn::Cluster(conn)))
    }

    /// Connects to the master that the sentinels name; the connection asks
    /// them again whenever it loses the master.
    async fn build_sentinel(
        self,
        nodes: Vec<(String, u16)>,
        master: String,
    ) -> Result<RedisBackend> {
        if nodes.is_empty() {
            return Err(Error::config(
                NAME,
                "sentinel mode needs at least one sentinel",
            ));
        }
        if master.is_empty() {
            return Err(Error::config(NAME, "sentinel mode needs the master's name"));
        }
        if self.root_cert_pem.is_some() || self.insecure_tls {
            return Err(Error::config(
                NAME,
                "TLS is not supported in sentinel mode yet",
            ));
        }
        if self.push_sender.is_some() {
            return Err(Error::config(
                NAME,
                "client-side tracking behind Redis Sentinel is not supported yet",
            ));
        }
        let login = |username: &Option<String>, password: &Option<String>| {
            let mut info = RedisConnectionInfo::default();
            if let Some(user) = username {
                info = info.set_username(user);
            }
            if let Some(password) = password {
                info = info.set_password(password);
            }
            info
        };
        let sentinel_login = login(&self.sentinel_username, &self.sentinel_password);
        let sentinels = nodes
            .iter()
            .map(|(host, port)| {
                Ok(ConnectionAddr::Tcp(host.clone(), *port)
                    .into_connection_info()?
                    .set_redis_settings(sentinel_login.clone()))
            })
            .collect::<redis::RedisResult<Vec<ConnectionInfo>>>()
            .map_err(map_error)?;
        let settings = SentinelSettings {
            master,
            sentinels,
            node: login(&self.username, &self.password).set_db(self.db),
            config: redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(self.connect_timeout))
                .set_response_timeout(Some(self.response_timeout)),
            deadline: self.connect_timeout + self.response_timeout,
        };
        let conn = self.connect(SentinelConn::connect(settings)).await?;
        Ok(self.into_backend(Conn::Sentinel(conn)))
    }

    /// Waits for a connection within twice the connect timeout plus the
    /// response timeout; errors name the address, never the password.
    async fn connect<C>(
        &self,
        connecting: impl std::future::Future<Output = redis::RedisResult<C>>,
    ) -> Result<C> {
        let deadline = self.connect_timeout * 2 + self.response_timeout;
        match tokio::time::timeout(deadline, connecting).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(err)) => Err(map_error(err)
                .context(format!("cannot connect to {}", self.describe()))
                .with_operation("connect")),
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                NAME,
                format!("no connection to {} within {deadline:?}", self.describe()),
            )
            .with_operation("connect")),
        }
    }

    /// The backend over an established connection.
    fn into_backend(self, conn: Conn) -> RedisBackend {
        let address = self.describe();
        RedisBackend::from_inner(Inner::new(
            conn,
            self.prefix,
            self.default_ttl,
            self.connect_timeout + self.response_timeout,
            address,
            self.tags,
        ))
    }
}

/// `host:port,host:port,...`, IPv6 hosts in brackets.
fn node_list(nodes: &[(String, u16)]) -> String {
    let nodes: Vec<String> = nodes
        .iter()
        .map(|(host, port)| {
            if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            }
        })
        .collect();
    nodes.join(",")
}
