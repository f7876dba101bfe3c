//! The optional invalidation channel: Redis pub/sub (feature `redis`) or
//! PostgreSQL's `LISTEN`/`NOTIFY` (feature `postgres`).
//!
//! Every tiered instance configured with the same channel publishes what it
//! changes in L2 ([`Change`]) on a normal connection, and listens on a
//! dedicated one for what the others change; it drops the named keys (or
//! the tags, or everything) from its own L1. Its own messages carry its
//! instance id and are ignored.
//!
//! The subscription is watched: when its connection closes, or a ping on
//! it (`PING`, `SELECT 1`) fails or takes longer than the response
//! timeout, the instance stops serving L1 hits, clears L1 (messages may
//! have been missed), and subscribes again with a backoff (50 ms doubling
//! to 1 s). Once subscribed again it clears L1 once more and serves L1
//! again. What differs between the two servers lives in [`redis`] and
//! [`postgres`].

#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::message::{self, ReceivedChange};
use super::{Change, NAME, Shared};
use crate::backends::common::Event;
use crate::error::{Error, ErrorKind, Result};
use crate::params::redact;

/// The first delay before a new subscription attempt.
const RETRY_MIN: Duration = Duration::from_millis(50);
/// The longest delay between subscription attempts.
const RETRY_MAX: Duration = Duration::from_secs(1);

/// The longest timeout or ping interval the channel takes: far beyond any
/// use, and far from the ends of the clocks.
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Where the invalidation channel lives.
#[derive(Clone, PartialEq, Eq)]
enum Target {
    Url(String),
    Tcp { host: String, port: u16 },
}

/// The channel over which tiered instances that share an L2 tell each
/// other what they changed (see the [module docs](super)): Redis pub/sub
/// (feature `redis`) or PostgreSQL's `LISTEN`/`NOTIFY` (feature
/// `postgres`), chosen by the URL's scheme.
///
/// Every instance that shares the L2 should use the same server and channel
/// name; the server need not be the L2 itself.
///
/// ```no_run
/// use std::sync::Arc;
/// use std::time::Duration;
/// use cachette::{Backend, MemoryBackend};
/// use cachette::backends::redis::RedisBackend;
/// use cachette::backends::tiered::{InvalidationChannel, TieredBackend};
///
/// # #[tokio::main] async fn main() -> cachette::Result<()> {
/// let l2 = RedisBackend::builder("127.0.0.1", 6379).prefix("app:").build().await?;
/// let cache = TieredBackend::builder(Arc::new(MemoryBackend::default()), Arc::new(l2))
///     .l1_ttl(Duration::from_secs(60))
///     .invalidation_channel(
///         InvalidationChannel::from_url("redis://127.0.0.1:6379/0", "app:invalidations")
///             .ping_interval(Duration::from_secs(2)),
///     )
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use = "an InvalidationChannel does nothing until given to TieredBuilder::invalidation_channel"]
pub struct InvalidationChannel {
    target: Target,
    channel: String,
    connect_timeout: Duration,
    response_timeout: Duration,
    ping_interval: Duration,
}

impl fmt::Debug for InvalidationChannel {
    /// The URL is shown without its password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InvalidationChannel")
            .field("server", &self.describe())
            .field("channel", &self.channel)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("ping_interval", &self.ping_interval)
            .finish()
    }
}

impl InvalidationChannel {
    /// The default connect timeout: one second.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
    /// The default response timeout (of a publish and of the
    /// subscription's ping): one second.
    pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
    /// The default interval of the `PING` that checks the subscription:
    /// one second.
    pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(1);

    fn with_target(target: Target, channel: impl Into<String>) -> Self {
        InvalidationChannel {
            target,
            channel: channel.into(),
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            response_timeout: Self::DEFAULT_RESPONSE_TIMEOUT,
            ping_interval: Self::DEFAULT_PING_INTERVAL,
        }
    }

    /// The channel `channel` on the (plain TCP) server at `host:port`.
    pub fn new(host: impl Into<String>, port: u16, channel: impl Into<String>) -> Self {
        Self::with_target(
            Target::Tcp {
                host: host.into(),
                port,
            },
            channel,
        )
    }

    /// The channel `channel` on the server of a URL: Redis
    /// (`redis://[user[:password]@]host[:port][/db]`, `rediss://...` with
    /// the system's roots, or `redis+unix:///path`) or PostgreSQL
    /// (`postgres://user[:password]@host[:port]/db`; the channel name is
    /// then an identifier of at most 63 bytes). The URL is checked when
    /// the tiered backend is built; its password never reaches `Debug`,
    /// logs or errors.
    pub fn from_url(url: impl Into<String>, channel: impl Into<String>) -> Self {
        Self::with_target(Target::Url(url.into()), channel)
    }

    /// How long connecting (and subscribing) may take. This, the
    /// response timeout and the ping interval must be between a nanosecond
    /// and a year: anything else is a [`Config`](crate::ErrorKind::Config)
    /// error naming the option.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long the server may take to answer a `PUBLISH` or a `PING`.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// How often the subscription is checked (`PING`, or `SELECT 1`). A connection
    /// that died without closing (a network partition) is noticed after at
    /// most this interval plus the response timeout.
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = interval;
        self
    }

    /// The channel name.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The server, without any password.
    fn describe(&self) -> String {
        match &self.target {
            Target::Url(url) => redact(url),
            Target::Tcp { host, port } if host.contains(':') => format!("redis://[{host}]:{port}"),
            Target::Tcp { host, port } => format!("redis://{host}:{port}"),
        }
    }

    fn validate(&self) -> Result<()> {
        if self.channel.is_empty() {
            return Err(Error::config(
                NAME,
                "the invalidation channel name must not be empty",
            ));
        }
        for (name, value) in [
            ("connect_timeout", self.connect_timeout),
            ("response_timeout", self.response_timeout),
            ("ping_interval", self.ping_interval),
        ] {
            if value.is_zero() {
                return Err(Error::config(
                    NAME,
                    format!("the invalidation channel's `{name}` must not be zero"),
                ));
            }
            if value > MAX_DURATION {
                return Err(Error::config(
                    NAME,
                    format!("the invalidation channel's `{name}` must be at most one year"),
                ));
            }
        }
        Ok(())
    }
}

/// What a channel's server takes: Redis pub/sub or PostgreSQL
/// `LISTEN`/`NOTIFY`, by the scheme of its URL.
enum Transport {
    #[cfg(feature = "redis")]
    Redis(redis::Connector),
    #[cfg(feature = "postgres")]
    Postgres(postgres::Connector),
}

impl Transport {
    fn of(config: &InvalidationChannel) -> Result<Transport> {
        let scheme = match &config.target {
            Target::Url(url) => url.split(':').next().unwrap_or(""),
            Target::Tcp { .. } => "redis",
        };
        match scheme {
            #[cfg(feature = "redis")]
            "redis" | "rediss" | "redis+unix" => {
                Ok(Transport::Redis(redis::Connector::new(config)?))
            }
            #[cfg(feature = "postgres")]
            "postgres" | "postgresql" => Ok(Transport::Postgres(postgres::Connector::new(config)?)),
            other => Err(Error::config(
                NAME,
                format!(
                    "the invalidation channel's server `{}` has scheme `{other}`; this build takes {SCHEMES}",
                    config.describe(),
                ),
            )),
        }
    }

    /// A connection that publishes.
    async fn publisher(&self, config: &InvalidationChannel) -> Result<Publisher> {
        match self {
            #[cfg(feature = "redis")]
            Transport::Redis(connector) => Ok(Publisher::Redis(connector.publisher(config).await?)),
            #[cfg(feature = "postgres")]
            Transport::Postgres(connector) => {
                Ok(Publisher::Postgres(Box::new(connector.publisher(config))))
            }
        }
    }

    /// A connection subscribed to the channel, once the server confirmed
    /// the subscription.
    async fn subscribe(&self, config: &InvalidationChannel) -> Result<Session> {
        match self {
            #[cfg(feature = "redis")]
            Transport::Redis(connector) => Ok(Session::Redis(connector.subscribe(config).await?)),
            #[cfg(feature = "postgres")]
            Transport::Postgres(connector) => {
                Ok(Session::Postgres(connector.subscribe(config).await?))
            }
        }
    }
}

/// The schemes a channel URL may have in this build.
const SCHEMES: &str = if cfg!(all(feature = "redis", feature = "postgres")) {
    "`redis://`, `rediss://`, `redis+unix://` or `postgres://`"
} else if cfg!(feature = "redis") {
    "`redis://`, `rediss://` or `redis+unix://` (PostgreSQL needs the feature `postgres`)"
} else {
    "`postgres://` (Redis needs the feature `redis`)"
};

/// The connection that publishes.
enum Publisher {
    #[cfg(feature = "redis")]
    Redis(redis::Publisher),
    #[cfg(feature = "postgres")]
    Postgres(Box<postgres::Publisher>),
}

impl Publisher {
    /// Sends the change; returns how many messages it took.
    async fn publish(&self, channel: &str, instance: &str, change: Change<'_>) -> Result<u64> {
        match self {
            #[cfg(feature = "redis")]
            Publisher::Redis(publisher) => publisher.publish(channel, instance, change).await,
            #[cfg(feature = "postgres")]
            Publisher::Postgres(publisher) => publisher.publish(channel, instance, change).await,
        }
    }
}

/// A subscribed connection.
enum Session {
    #[cfg(feature = "redis")]
    Redis(redis::Session),
    #[cfg(feature = "postgres")]
    Postgres(postgres::Session),
}

impl Session {
    /// The next message's bytes; `None` once the connection closed.
    /// Cancel-safe.
    async fn next(&mut self) -> Option<Vec<u8>> {
        match self {
            #[cfg(feature = "redis")]
            Session::Redis(session) => session.next().await,
            #[cfg(feature = "postgres")]
            Session::Postgres(session) => session.next().await,
        }
    }

    /// Checks the connection within `timeout`; why not, if it failed.
    async fn ping(&mut self, timeout: Duration) -> std::result::Result<(), &'static str> {
        let answer = match self {
            #[cfg(feature = "redis")]
            Session::Redis(session) => tokio::time::timeout(timeout, session.ping()).await,
            #[cfg(feature = "postgres")]
            Session::Postgres(session) => tokio::time::timeout(timeout, session.ping()).await,
        };
        match answer {
            Ok(true) => Ok(()),
            Ok(false) => Err("a ping failed"),
            Err(_) => Err("a ping was not answered in time"),
        }
    }
}

/// A running invalidation channel: the connection that publishes and the
/// task that listens. Dropping it stops the task.
pub(super) struct Channel {
    channel: String,
    instance: String,
    address: String,
    publisher: Publisher,
    shared: Arc<Shared>,
    task: parking_lot::Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("server", &self.address)
            .field("channel", &self.channel)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl Channel {
    /// Connects the publisher, subscribes, lets L1 serve, and starts the
    /// listening task.
    pub(super) async fn start(
        config: InvalidationChannel,
        shared: Arc<Shared>,
        instance: String,
    ) -> Result<Channel> {
        config.validate()?;
        Error::require_runtime(NAME, "build", "the invalidation channel")?;
        let runtime = tokio::runtime::Handle::current();
        let transport = Transport::of(&config)?;
        let publisher = transport.publisher(&config).await?;
        let session = transport.subscribe(&config).await?;
        // L1 was bypassed until the subscription stood.
        shared.guard.bump_all(Some(true)).await;
        tracing::debug!(
            server = %config.describe(),
            channel = %config.channel,
            instance = %instance,
            "tiered backend subscribed to its invalidation channel"
        );
        let task = runtime.spawn(listen_forever(
            Arc::clone(&shared),
            transport,
            config.clone(),
            instance.clone(),
            session,
        ));
        Ok(Channel {
            address: config.describe(),
            channel: config.channel,
            instance,
            publisher,
            shared,
            task: parking_lot::Mutex::new(Some(task)),
        })
    }

    /// Tells the other instances what changed. A failure is logged and
    /// counted, never returned: L2 was changed already, and the other
    /// instances then keep their copies until their L1 TTL. A message
    /// that fails on a broken connection is sent once more, on the
    /// connection that replaces it.
    pub(super) async fn publish(&self, change: Change<'_>) {
        let counters = &self.shared.counters;
        match self
            .publisher
            .publish(&self.channel, &self.instance, change)
            .await
        {
            // Counted per message, as the receivers count them.
            Ok(messages) => counters.add(Event::Published, messages),
            Err(error) => {
                counters.bump(Event::PublishFailure);
                tracing::warn!(
                    channel = %self.channel,
                    server = %self.address,
                    %error,
                    "tiered backend could not publish an invalidation; other instances keep their L1 copies until their L1 TTL"
                );
            }
        }
    }

    /// Stops listening (the caller stops L1 from serving).
    pub(super) fn stop(&self) {
        if let Some(task) = self.task.lock().take() {
            task.abort();
        }
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        if let Some(task) = self.task.get_mut().take() {
            task.abort();
        }
    }
}

/// Awaits `attempt` within `deadline`; a timeout is an error that names
/// `what` (never a password).
async fn within<T>(
    deadline: Duration,
    what: impl FnOnce() -> String,
    attempt: impl Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(deadline, attempt).await {
        Ok(outcome) => outcome,
        Err(_) => Err(Error::new(
            ErrorKind::Timeout,
            NAME,
            format!("{}: no answer within {deadline:?}", what()),
        )),
    }
}

/// Listens until the task is aborted: handles messages, and on a lost
/// subscription clears L1, bypasses it, and resubscribes.
async fn listen_forever(
    shared: Arc<Shared>,
    transport: Transport,
    config: InvalidationChannel,
    instance: String,
    mut session: Session,
) {
    loop {
        let reason = listen(&shared, &config, &instance, &mut session).await;
        shared.counters.bump(Event::ChannelReset);
        tracing::warn!(
            server = %config.describe(),
            channel = %config.channel,
            reason,
            "tiered backend lost its invalidation channel; L1 is cleared and bypassed until it is subscribed again"
        );
        shared.guard.bump_all(Some(false)).await;
        if let Err(error) = shared.l1.clear().await {
            tracing::warn!(%error, "tiered backend could not clear L1");
        }
        let mut delay = RETRY_MIN;
        session = loop {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(RETRY_MAX);
            let fresh = match transport.subscribe(&config).await {
                Ok(fresh) => fresh,
                Err(error) => {
                    tracing::debug!(%error, "tiered backend could not resubscribe yet");
                    continue;
                }
            };
            // Messages may have been missed until the subscription stood:
            // L1 is cleared again before it serves.
            match shared.l1.clear().await {
                Ok(()) => {
                    shared.guard.bump_all(Some(true)).await;
                    tracing::info!(
                        server = %config.describe(),
                        channel = %config.channel,
                        "tiered backend subscribed to its invalidation channel again"
                    );
                    break fresh;
                }
                Err(error) => {
                    tracing::warn!(%error, "tiered backend could not clear L1; it stays bypassed");
                }
            }
        };
    }
}

/// Handles messages until the subscription is lost; returns why.
async fn listen(
    shared: &Shared,
    config: &InvalidationChannel,
    instance: &str,
    session: &mut Session,
) -> &'static str {
    let mut ping = tokio::time::interval(config.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    loop {
        tokio::select! {
            received = session.next() => match received {
                Some(payload) => handle(shared, instance, &payload).await,
                None => return "the connection closed",
            },
            _ = ping.tick() => {
                if let Err(why) = session.ping(config.response_timeout).await {
                    return why;
                }
            }
        }
    }
}

/// Applies one message from the channel to L1.
async fn handle(shared: &Shared, instance: &str, payload: &[u8]) {
    let received = match message::decode(payload) {
        Ok(received) if received.instance == instance => return,
        Ok(received) => received,
        Err(why) => {
            tracing::warn!(%why, "tiered backend received an unreadable invalidation; L1 is cleared");
            if let Err(error) = shared.drop_all().await {
                tracing::warn!(%error, "tiered backend could not clear L1");
            }
            return;
        }
    };
    let applied = match &received.change {
        ReceivedChange::Keys(keys) => {
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            shared.drop_keys(&keys).await
        }
        ReceivedChange::Tags(tags) => {
            let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
            shared.drop_tags(&tags).await
        }
        ReceivedChange::Clear => shared.drop_all().await,
    };
    if let Err(error) = applied {
        tracing::warn!(%error, "tiered backend could not apply an invalidation; L1 is cleared");
        if let Err(error) = shared.drop_all().await {
            tracing::warn!(%error, "tiered backend could not clear L1");
        }
    }
    // Counted once applied, so that the count tells what L1 reflects.
    shared.counters.bump(Event::InvalidationReceived);
}
