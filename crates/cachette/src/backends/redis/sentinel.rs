//! Sentinel mode: a connection to the master that the sentinels name, which
//! finds the master again when it moves.
//!
//! redis-rs' `SentinelClient` finds the master once and hands out a plain
//! connection fixed on that address, and its lookups have no timeouts (a
//! silent sentinel holds up the answer of the others). So the lookup is
//! done here: every sentinel is asked `SENTINEL GET-MASTER-ADDR-BY-NAME` at
//! once, each over a connection with the backend's timeouts; the addresses
//! are tried in the order the answers arrive, and the first node whose
//! `ROLE` says `master` is kept.
//!
//! The connection is dropped, and the next operation looks the master up
//! again, when:
//! - an operation fails in a way that means the master is gone (I/O,
//!   timeout, a broken connection, `READONLY` from a demoted master);
//! - a sentinel announces `+switch-master` for this master (a background
//!   task subscribes to one sentinel at a time). This matters when the old
//!   master stays up, as in `SENTINEL FAILOVER`: it keeps answering as a
//!   master for several seconds, until the sentinels turn it into a
//!   replica. The announced address is tried first, since the other
//!   sentinels may still name the old master for a moment.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, ConnectionInfo, ErrorKind,
    IntoConnectionInfo, RedisConnectionInfo, RedisError, RedisFuture, RedisResult, Role,
    ServerErrorKind, Value,
};

/// The pause before the switch watcher subscribes again after losing its
/// sentinel.
const RESUBSCRIBE_DELAY: Duration = Duration::from_millis(500);

/// What a [`SentinelConn`] needs to find and reach the master.
pub(super) struct SentinelSettings {
    /// The name the sentinels monitor the master under.
    pub(super) master: String,
    /// The sentinels, with their own login if any.
    pub(super) sentinels: Vec<ConnectionInfo>,
    /// Login and database of the data nodes.
    pub(super) node: RedisConnectionInfo,
    /// Connect and response timeouts of every connection.
    pub(super) config: AsyncConnectionConfig,
    /// The connect plus the response timeout: the bound of a subscription.
    pub(super) deadline: Duration,
}

/// A `host:port` of a data node.
type Address = (String, u16);

/// The connection to the current master of a Sentinel-managed group. Cheap
/// to clone: clones share the connection and re-discover it together.
#[derive(Clone)]
pub(crate) struct SentinelConn {
    shared: Arc<Shared>,
}

struct Shared {
    settings: SentinelSettings,
    /// The connection in use; `None` once it failed.
    current: parking_lot::Mutex<Option<Current>>,
    /// The master a sentinel announced last, to try before asking them.
    announced: parking_lot::Mutex<Option<Address>>,
    /// Numbers the connections, so that an old one's failure never drops
    /// its successor.
    generation: AtomicU64,
    /// Lookups finished so far.
    lookups: AtomicU64,
    /// Held by the one lookup under way; the error of the last lookup if
    /// it failed, for the operations that waited for it.
    lookup: Arc<tokio::sync::Mutex<Option<RedisError>>>,
    /// Dropped with the last clone of the connection: stops the switch
    /// watcher.
    _stop_watcher: tokio::sync::oneshot::Sender<()>,
}

#[derive(Clone)]
struct Current {
    conn: MultiplexedConnection,
    address: Address,
    generation: u64,
}

impl fmt::Debug for SentinelConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentinelConn")
            .field("master", &self.shared.settings.master)
            .field("sentinels", &self.shared.settings.sentinels.len())
            .finish_non_exhaustive()
    }
}

impl SentinelConn {
    /// Finds the master and connects to it, and starts the task that
    /// follows the sentinels' announcements.
    pub(super) async fn connect(settings: SentinelSettings) -> RedisResult<Self> {
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let conn = SentinelConn {
            shared: Arc::new(Shared {
                settings,
                current: parking_lot::Mutex::new(None),
                announced: parking_lot::Mutex::new(None),
                generation: AtomicU64::new(0),
                lookups: AtomicU64::new(0),
                lookup: Arc::new(tokio::sync::Mutex::new(None)),
                _stop_watcher: stop,
            }),
        };
        conn.current().await?;
        tokio::spawn(watch_switches(Arc::downgrade(&conn.shared), stopped));
        Ok(conn)
    }

    /// The connection to the master: the one in use, or a new one to the
    /// master the sentinels name now. Operations that find no connection
    /// wait for one lookup instead of each starting their own, and fail
    /// with its error if it failed. The lookup runs in its own task, so
    /// that it finishes (bounded by the timeouts of its connections) even
    /// when the operation that started it gives up first.
    async fn current(&self) -> RedisResult<Current> {
        let shared = &self.shared;
        if let Some(current) = shared.current.lock().clone() {
            return Ok(current);
        }
        let seen = shared.lookups.load(Ordering::Acquire);
        let mut last_error = Arc::clone(&shared.lookup).lock_owned().await;
        if let Some(current) = shared.current.lock().clone() {
            return Ok(current);
        }
        if shared.lookups.load(Ordering::Acquire) != seen
            && let Some(err) = last_error.as_ref()
        {
            return Err(err.clone());
        }
        let this = self.clone();
        let lookup = tokio::spawn(async move {
            let mut found = this.find_master().await;
            // A switch announced during the lookup may have come too late
            // for it: one more, which tries the announced master first.
            if let Ok((_, address)) = &found
                && this
                    .shared
                    .announced
                    .lock()
                    .as_ref()
                    .is_some_and(|announced| announced != address)
            {
                found = this.find_master().await;
            }
            let shared = &this.shared;
            shared.lookups.fetch_add(1, Ordering::Release);
            match found {
                Ok((conn, address)) => {
                    *last_error = None;
                    let current = Current {
                        conn,
                        address,
                        generation: shared.generation.fetch_add(1, Ordering::Relaxed) + 1,
                    };
                    *shared.current.lock() = Some(current.clone());
                    Ok(current)
                }
                Err(err) => {
                    *last_error = Some(err.clone());
                    Err(err)
                }
            }
        });
        lookup.await.unwrap_or_else(|err| {
            Err(unavailable(format!(
                "the lookup of the master failed: {err}"
            )))
        })
    }

    /// Drops connection `generation` after `result` showed it lost the
    /// master; passes `result` on.
    fn settle<T>(&self, generation: u64, result: RedisResult<T>) -> RedisResult<T> {
        if let Err(err) = &result
            && lost_master(err)
        {
            let mut current = self.shared.current.lock();
            if current.as_ref().is_some_and(|c| c.generation == generation) {
                *current = None;
                tracing::debug!(
                    master = %self.shared.settings.master,
                    error = %err,
                    "redis sentinel: lost the master; the next operation looks it up again"
                );
            }
        }
        result
    }

    /// The announced master first (taken: tried once), then every
    /// sentinel at once: connects to the first address that answers
    /// `ROLE` as a master.
    async fn find_master(&self) -> RedisResult<(MultiplexedConnection, Address)> {
        let settings = &self.shared.settings;
        let announced = self.shared.announced.lock().take();
        let mut tried: Vec<Address> = Vec::new();
        let mut master_error = None;
        if let Some(address) = announced {
            match self.connect_master(&address).await {
                Ok(conn) => return Ok(self.found(conn, address)),
                Err(err) => master_error = Some(err),
            }
            tried.push(address);
        }
        let mut answers: FuturesUnordered<_> = settings
            .sentinels
            .iter()
            .map(|sentinel| self.ask(sentinel))
            .collect();
        let mut sentinel_error = None;
        while let Some(answer) = answers.next().await {
            match answer {
                Ok(Some(address)) if !tried.contains(&address) => {
                    match self.connect_master(&address).await {
                        Ok(conn) => return Ok(self.found(conn, address)),
                        Err(err) => master_error = Some(err),
                    }
                    tried.push(address);
                }
                Ok(_) => {}
                Err(err) => sentinel_error = Some(err),
            }
        }
        Err(master_error.or(sentinel_error).unwrap_or_else(|| {
            unavailable(format!(
                "no sentinel knows a master named `{}`",
                settings.master
            ))
        }))
    }

    fn found(
        &self,
        conn: MultiplexedConnection,
        address: Address,
    ) -> (MultiplexedConnection, Address) {
        tracing::info!(
            master = %self.shared.settings.master,
            address = %format!("{}:{}", address.0, address.1),
            "redis sentinel: connected to the master"
        );
        (conn, address)
    }

    /// One sentinel's idea of the master's address; `None` if it does not
    /// know the name.
    async fn ask(&self, sentinel: &ConnectionInfo) -> RedisResult<Option<Address>> {
        let settings = &self.shared.settings;
        let mut conn = Client::open(sentinel.clone())?
            .get_multiplexed_async_connection_with_config(&settings.config)
            .await?;
        redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(&settings.master)
            .query_async(&mut conn)
            .await
    }

    /// A connection to `address` if it is a master. A user whose ACL
    /// forbids `ROLE` has to trust the sentinels.
    async fn connect_master(&self, (host, port): &Address) -> RedisResult<MultiplexedConnection> {
        let settings = &self.shared.settings;
        let info = ConnectionAddr::Tcp(host.clone(), *port)
            .into_connection_info()?
            .set_redis_settings(settings.node.clone());
        let mut conn = Client::open(info)?
            .get_multiplexed_async_connection_with_config(&settings.config)
            .await?;
        match redis::cmd("ROLE").query_async::<Role>(&mut conn).await {
            Ok(Role::Primary { .. }) => Ok(conn),
            Err(err) if err.kind() == ErrorKind::Server(ServerErrorKind::NoPerm) => Ok(conn),
            Ok(_) => Err(unavailable(format!(
                "the sentinels name {host}:{port} as the master of `{}`, but it is not one (yet); a failover may be under way",
                settings.master
            ))),
            Err(err) => Err(err),
        }
    }
}

impl Shared {
    /// A sentinel announced that the master is now at `address`: unless
    /// the connection leads there already, it is dropped and the next
    /// operation tries `address` first.
    fn master_moved(&self, address: Address) {
        let mut current = self.current.lock();
        if current.as_ref().is_some_and(|c| c.address == address) {
            return;
        }
        tracing::info!(
            master = %self.settings.master,
            address = %format!("{}:{}", address.0, address.1),
            "redis sentinel: the sentinels switched the master"
        );
        *self.announced.lock() = Some(address);
        *current = None;
    }
}

/// Follows `+switch-master` on one sentinel at a time, moving on to the
/// next one when a subscription ends; stops when the connection is
/// dropped.
async fn watch_switches(shared: Weak<Shared>, mut stopped: tokio::sync::oneshot::Receiver<()>) {
    let (sentinels, master, deadline) = match shared.upgrade() {
        Some(shared) => (
            shared.settings.sentinels.clone(),
            shared.settings.master.clone(),
            shared.settings.deadline,
        ),
        None => return,
    };
    for sentinel in sentinels.iter().cycle() {
        tokio::select! {
            _ = &mut stopped => return,
            ended = listen(&shared, sentinel, &master, deadline) => {
                tracing::debug!(
                    master = %master,
                    error = %ended.err().map(|err| err.to_string()).unwrap_or_default(),
                    "redis sentinel: the subscription to +switch-master ended"
                );
            }
        }
        tokio::select! {
            _ = &mut stopped => return,
            () = tokio::time::sleep(RESUBSCRIBE_DELAY) => {}
        }
    }
}

/// Subscribes to `+switch-master` on `sentinel` and reports each switch of
/// `master` until the subscription ends.
async fn listen(
    shared: &Weak<Shared>,
    sentinel: &ConnectionInfo,
    master: &str,
    deadline: Duration,
) -> RedisResult<()> {
    let client = Client::open(sentinel.clone())?;
    let subscribing = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe("+switch-master").await?;
        Ok::<_, RedisError>(pubsub)
    };
    let mut pubsub = tokio::time::timeout(deadline, subscribing)
        .await
        .map_err(|_| unavailable("the sentinel did not answer the subscription".to_owned()))??;
    let mut messages = pubsub.on_message();
    let prefix = format!("{master} ");
    while let Some(message) = messages.next().await {
        // `<name> <old ip> <old port> <new ip> <new port>`
        let Ok(text) = message.get_payload::<String>() else {
            continue;
        };
        if !text.starts_with(&prefix) {
            continue;
        }
        let mut fields = text.rsplit(' ');
        let (Some(port), Some(host)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        match shared.upgrade() {
            Some(shared) => shared.master_moved((host.to_owned(), port)),
            None => return Ok(()),
        }
    }
    Err(unavailable(
        "the sentinel closed the subscription".to_owned(),
    ))
}

/// Whether an error means that the connection no longer leads to the
/// master: the server is gone or unreachable, or it has become a replica.
fn lost_master(err: &RedisError) -> bool {
    err.is_io_error()
        || err.is_unrecoverable_error()
        || matches!(
            err.kind(),
            ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown)
        )
}

/// An error of kind I/O (a connection error to the caller) with `message`.
fn unavailable(message: String) -> RedisError {
    io::Error::new(io::ErrorKind::NotConnected, message).into()
}

impl ConnectionLike for SentinelConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut current = self.current().await?;
            let result = current.conn.req_packed_command(cmd).await;
            self.settle(current.generation, result)
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let mut current = self.current().await?;
            let result = current
                .conn
                .req_packed_commands(pipeline, offset, count)
                .await;
            self.settle(current.generation, result)
        })
    }

    fn get_db(&self) -> i64 {
        self.shared.settings.node.db()
    }
}
