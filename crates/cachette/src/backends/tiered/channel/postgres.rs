//! The invalidation channel over PostgreSQL's `LISTEN`/`NOTIFY`, so that
//! a memory L1 over a PostgreSQL L2 stays coherent with no Redis at all.
//!
//! A message is sent with `SELECT pg_notify(channel, payload)` on a
//! publishing connection (opened again after a failure), and received on a
//! dedicated connection that ran `LISTEN`; `SELECT 1` on it is the ping.
//! A `NOTIFY` payload is text of less than 8,000 bytes: each message is
//! base64 (text may not hold every byte a key may), and a change that
//! names many keys or tags is split into several messages; a single item
//! too long for one message is sent as "everything changed" (the other
//! instances then clear their L1, which is coherent, only coarse).
//! PostgreSQL delivers notifications when the sending transaction commits,
//! in order per sender.

use std::sync::Arc;

use base64::Engine as _;
use futures_util::future::poll_fn;
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client, Config, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{InvalidationChannel, NAME, Target, within};
use crate::backends::postgres::sql::quote_ident;
use crate::backends::tiered::{Change, message};
use crate::error::{Error, ErrorKind, Result};

/// The largest payload `NOTIFY` takes is 7,999 bytes; base64 of this many
/// bytes fits.
const MAX_MESSAGE: usize = 5_900;

/// PostgreSQL's longest identifier, which a channel name is.
const MAX_CHANNEL_LEN: usize = 63;

/// Opens connections to the channel's server.
pub(super) struct Connector {
    config: Config,
    tls: Option<MakeRustlsConnect>,
    address: String,
}

impl Connector {
    /// The server of a `postgres://` URL, read as the backend reads it
    /// (the same user, password, database, `sslmode` and `ca_cert`), so
    /// that the L2's URL serves for the channel too.
    pub(super) fn new(channel: &InvalidationChannel) -> Result<Connector> {
        if channel.channel.len() > MAX_CHANNEL_LEN || channel.channel.contains('\0') {
            return Err(Error::config(
                NAME,
                format!(
                    "a PostgreSQL channel name is an identifier of at most {MAX_CHANNEL_LEN} bytes without NUL; `{}` is {} bytes",
                    channel.channel.escape_debug(),
                    channel.channel.len()
                ),
            ));
        }
        let Target::Url(url) = &channel.target else {
            return Err(Error::config(NAME, "a PostgreSQL channel needs a URL"));
        };
        let builder = crate::backends::postgres::url::builder(url)
            .map_err(|err| {
                Error::config(
                    NAME,
                    format!("the invalidation channel's server: {}", err.message()),
                )
            })?
            .connect_timeout(channel.connect_timeout);
        let (mut config, tls) = builder.connection()?;
        config.application_name("cachette-tiered");
        Ok(Connector {
            config,
            tls,
            address: channel.describe(),
        })
    }

    /// A client and the task that drives its connection; notifications go
    /// to `notifications` when given.
    async fn connect(
        &self,
        notifications: Option<mpsc::UnboundedSender<String>>,
    ) -> Result<(Client, JoinHandle<()>)> {
        let refused = |err: tokio_postgres::Error| {
            Error::new(
                ErrorKind::Connection,
                NAME,
                format!("cannot connect to {}: {err}", self.address),
            )
        };
        match &self.tls {
            None => {
                let (client, connection) = self.config.connect(NoTls).await.map_err(refused)?;
                Ok((client, tokio::spawn(drive(connection, notifications))))
            }
            Some(tls) => {
                let (client, connection) =
                    self.config.connect(tls.clone()).await.map_err(refused)?;
                Ok((client, tokio::spawn(drive(connection, notifications))))
            }
        }
    }

    pub(super) fn publisher(&self, config: &InvalidationChannel) -> Publisher {
        Publisher {
            connector: Connector {
                config: self.config.clone(),
                tls: self.tls.clone(),
                address: self.address.clone(),
            },
            client: Mutex::new(None),
            timeout: config.connect_timeout + config.response_timeout,
        }
    }

    pub(super) async fn subscribe(&self, config: &InvalidationChannel) -> Result<Session> {
        let what = || {
            format!(
                "cannot listen to the invalidation channel on {}",
                self.address
            )
        };
        let attempt = async {
            let (sender, receiver) = mpsc::unbounded_channel();
            let (client, task) = self.connect(Some(sender)).await?;
            let listening = client
                .batch_execute(&format!("LISTEN {}", quote_ident(&config.channel)))
                .await;
            if let Err(err) = listening {
                task.abort();
                return Err(Error::new(
                    ErrorKind::Connection,
                    NAME,
                    format!("{}: {err}", what()),
                ));
            }
            Ok(Session {
                client,
                receiver,
                task,
            })
        };
        within(
            config.connect_timeout + config.response_timeout,
            what,
            attempt,
        )
        .await
    }
}

/// A connection and the task that drives it (stopped on drop).
struct Connected {
    client: Client,
    task: JoinHandle<()>,
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The publishing connection, opened on first use and again once it
/// closed. The lock is held only to open one; publishes share the client
/// (tokio-postgres pipelines them).
pub(super) struct Publisher {
    connector: Connector,
    client: Mutex<Option<Arc<Connected>>>,
    timeout: std::time::Duration,
}

impl Publisher {
    /// Sends the change's messages; returns how many. A message that
    /// fails is sent once more (on a new connection if the old one
    /// closed).
    pub(super) async fn publish(
        &self,
        channel: &str,
        instance: &str,
        change: Change<'_>,
    ) -> Result<u64> {
        let mut sent = 0;
        for payload in payloads(instance, change) {
            let mut attempts = 0;
            loop {
                attempts += 1;
                let what = || format!("cannot notify on {}", self.connector.address);
                match within(self.timeout, what, self.notify(channel, &payload)).await {
                    Ok(()) => break,
                    Err(error) if attempts < 2 && error.kind() != ErrorKind::Config => {}
                    Err(error) => return Err(error),
                }
            }
            sent += 1;
        }
        Ok(sent)
    }

    /// The open connection, or a new one if there is none or it closed.
    async fn connection(&self) -> Result<Arc<Connected>> {
        let mut slot = self.client.lock().await;
        if let Some(connected) = slot.as_ref()
            && !connected.client.is_closed()
        {
            return Ok(Arc::clone(connected));
        }
        let (client, task) = self.connector.connect(None).await?;
        let connected = Arc::new(Connected { client, task });
        *slot = Some(Arc::clone(&connected));
        Ok(connected)
    }

    async fn notify(&self, channel: &str, payload: &str) -> Result<()> {
        let connected = self.connection().await?;
        connected
            .client
            .execute("SELECT pg_notify($1, $2)", &[&channel, &payload])
            .await
            .map(|_| ())
            .map_err(|err| {
                Error::new(
                    ErrorKind::Connection,
                    NAME,
                    format!("cannot notify on {}: {err}", self.connector.address),
                )
            })
    }
}

/// Drives a connection until it ends, handing its notifications to
/// `notifications` when given.
async fn drive<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
    notifications: Option<mpsc::UnboundedSender<String>>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(Ok(message)) = poll_fn(|cx| connection.poll_message(cx)).await {
        if let (AsyncMessage::Notification(notification), Some(sender)) = (message, &notifications)
            && sender.send(notification.payload().to_owned()).is_err()
        {
            return;
        }
    }
}

/// The base64 payloads of `change`: one, or several for a change that
/// names more keys or tags than one `NOTIFY` holds.
fn payloads(instance: &str, change: Change<'_>) -> Vec<String> {
    let encode = |change: Change<'_>| {
        base64::engine::general_purpose::STANDARD.encode(message::encode(instance, change))
    };
    let (items, keys) = match change {
        Change::Keys(keys) => (keys, true),
        Change::Tags(tags) => (tags, false),
        Change::Clear => return vec![encode(Change::Clear)],
    };
    let header = instance.len() + 32;
    let mut out = Vec::new();
    let mut group: Vec<&str> = Vec::new();
    let mut size = header;
    let mut flush = |group: &mut Vec<&str>| {
        if !group.is_empty() {
            let change = if keys {
                Change::Keys(group)
            } else {
                Change::Tags(group)
            };
            out.push(encode(change));
            group.clear();
        }
    };
    for item in items {
        let cost = item.len() + 21;
        if header + cost > MAX_MESSAGE {
            // One item longer than a message: everything changed.
            return vec![encode(Change::Clear)];
        }
        if size + cost > MAX_MESSAGE {
            flush(&mut group);
            size = header;
        }
        group.push(item);
        size += cost;
    }
    flush(&mut group);
    out
}

/// The listening connection.
pub(super) struct Session {
    client: Client,
    receiver: mpsc::UnboundedReceiver<String>,
    task: JoinHandle<()>,
}

impl Session {
    pub(super) async fn next(&mut self) -> Option<Vec<u8>> {
        let payload = self.receiver.recv().await?;
        // An unreadable payload goes on as it is, and reads as unreadable.
        Some(
            base64::engine::general_purpose::STANDARD
                .decode(payload.as_bytes())
                .unwrap_or_else(|_| payload.into_bytes()),
        )
    }

    pub(super) async fn ping(&mut self) -> bool {
        self.client.simple_query("SELECT 1").await.is_ok()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_change_is_split_and_an_oversized_item_clears() {
        let keys: Vec<String> = (0..2_000).map(|i| format!("key-{i:05}")).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let split = payloads("instance", Change::Keys(&keys));
        assert!(split.len() > 1);
        let mut seen = Vec::new();
        for payload in &split {
            assert!(payload.len() < 8000, "{} bytes", payload.len());
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(payload)
                .unwrap();
            match message::decode(&bytes).unwrap().change {
                message::ReceivedChange::Keys(keys) => seen.extend(keys),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(seen, keys);
        let huge = "k".repeat(10_000);
        let cleared = payloads("instance", Change::Tags(&[huge.as_str()]));
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&cleared[0])
            .unwrap();
        assert_eq!(
            message::decode(&bytes).unwrap().change,
            message::ReceivedChange::Clear
        );
    }
}
