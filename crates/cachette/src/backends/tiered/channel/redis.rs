//! The invalidation channel over Redis pub/sub: `PUBLISH` on a
//! reconnecting connection, `SUBSCRIBE` on a dedicated one, `PING` to
//! watch it.

use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink, PubSubStream};
use redis::{Client, ConnectionAddr, IntoConnectionInfo, RedisError};

use super::{InvalidationChannel, NAME, Target, within};
use crate::backends::tiered::{Change, message};
use crate::error::{Error, ErrorKind, Result};
use crate::params::redact_text;

/// Opens connections to the channel's server.
pub(super) struct Connector {
    client: Client,
    address: String,
}

impl Connector {
    pub(super) fn new(config: &InvalidationChannel) -> Result<Connector> {
        let info = match &config.target {
            Target::Url(url) => {
                if url.starts_with("rediss:") {
                    // rustls needs one process-wide crypto provider; ring is
                    // the one compiled in. An error means one is installed.
                    let _ = rustls::crypto::ring::default_provider().install_default();
                }
                url.as_str().into_connection_info()
            }
            Target::Tcp { host, port } => {
                ConnectionAddr::Tcp(host.clone(), *port).into_connection_info()
            }
        };
        let client = info.and_then(Client::open).map_err(|err| {
            Error::config(
                NAME,
                format!(
                    "the invalidation channel's server `{}` is not valid: {}",
                    config.describe(),
                    redact_text(&err.to_string())
                ),
            )
        })?;
        Ok(Connector {
            client,
            address: config.describe(),
        })
    }

    pub(super) async fn publisher(&self, config: &InvalidationChannel) -> Result<Publisher> {
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.response_timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(200));
        let timeout = config.connect_timeout + config.response_timeout;
        let what = || {
            format!(
                "cannot connect to the invalidation channel's server {}",
                self.address
            )
        };
        let connecting = async {
            ConnectionManager::new_with_config(self.client.clone(), manager_config)
                .await
                .map_err(|err| map_error(err, what()))
        };
        let connection = within(timeout, what, connecting).await?;
        Ok(Publisher {
            connection,
            timeout,
            address: self.address.clone(),
        })
    }

    pub(super) async fn subscribe(&self, config: &InvalidationChannel) -> Result<Session> {
        let what = || {
            format!(
                "cannot subscribe to the invalidation channel on {}",
                self.address
            )
        };
        let attempt = async {
            let mut pubsub = self.client.get_async_pubsub().await?;
            pubsub.subscribe(config.channel.as_str()).await?;
            Ok::<_, RedisError>(pubsub.split())
        };
        let attempt = async { attempt.await.map_err(|err| map_error(err, what())) };
        let (sink, stream) = within(
            config.connect_timeout + config.response_timeout,
            what,
            attempt,
        )
        .await?;
        Ok(Session { sink, stream })
    }
}

/// The publishing connection (it reconnects by itself).
pub(super) struct Publisher {
    connection: ConnectionManager,
    timeout: Duration,
    address: String,
}

impl Publisher {
    /// `PUBLISH`es the change; once more on the replacing connection if
    /// the first attempt failed on a broken one.
    pub(super) async fn publish(
        &self,
        channel: &str,
        instance: &str,
        change: Change<'_>,
    ) -> Result<u64> {
        let payload = message::encode(instance, change);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut connection = self.connection.clone();
            let what = || format!("cannot publish on {}", self.address);
            let sending = async {
                redis::cmd("PUBLISH")
                    .arg(channel)
                    .arg(payload.as_slice())
                    .query_async::<i64>(&mut connection)
                    .await
                    .map_err(|err| map_error(err, what()))
            };
            match within(self.timeout, what, sending).await {
                Ok(_) => return Ok(1),
                Err(error) if attempts < 2 && error.kind() == ErrorKind::Connection => {}
                Err(error) => return Err(error),
            }
        }
    }
}

/// A subscribed connection: the sink (for `PING`) and the messages.
pub(super) struct Session {
    sink: PubSubSink,
    stream: PubSubStream,
}

impl Session {
    pub(super) async fn next(&mut self) -> Option<Vec<u8>> {
        self.stream
            .next()
            .await
            .map(|message| message.get_payload_bytes().to_vec())
    }

    pub(super) async fn ping(&mut self) -> bool {
        self.sink.ping::<redis::Value>().await.is_ok()
    }
}

/// Maps a redis-rs error of the channel to a cachette error.
fn map_error(err: RedisError, context: String) -> Error {
    let kind = if err.is_timeout() {
        ErrorKind::Timeout
    } else if err.is_io_error() || err.is_connection_dropped() || err.is_connection_refusal() {
        ErrorKind::Connection
    } else if matches!(err.kind(), redis::ErrorKind::AuthenticationFailed)
        || matches!(err.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM"))
    {
        ErrorKind::PermissionDenied
    } else {
        ErrorKind::Backend
    };
    Error::new(
        kind,
        NAME,
        format!("{context}: {}", redact_text(&err.to_string())),
    )
    .with_source(err)
}
