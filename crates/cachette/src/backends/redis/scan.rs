//! Walking the key space: `SCAN` on the server (or on every master of a
//! cluster) for `keys` and `clear`, and `UNLINK` in batches.

use futures_util::stream::{self, StreamExt};

use super::cluster::{self, Conn, Node};
use super::request::all;
use super::{BATCH, INTERNAL, NAME, RedisBackend};
use crate::backend::KeyStream;
use crate::error::{Error, ErrorKind, Result};
use crate::glob;

impl RedisBackend {
    /// The servers `keys` and `clear` visit: the one server, or every
    /// master of the cluster (`None` stands for "the connection's server").
    pub(super) async fn scan_targets(&self, operation: &'static str) -> Result<Vec<Option<Node>>> {
        match self.conn() {
            Conn::Single(_) | Conn::Sentinel(_) => Ok(vec![None]),
            Conn::Cluster(mut conn) => {
                let masters = self
                    .run(operation, async move { cluster::masters(&mut conn).await })
                    .await?;
                if masters.is_empty() {
                    // Nothing to visit is not "nothing stored": the keys
                    // of unassigned slots may still sit on the nodes.
                    return Err(Error::new(
                        ErrorKind::Connection,
                        NAME,
                        "the cluster reports no slots (`CLUSTER SLOTS` is empty): \
                         no master to scan",
                    )
                    .with_operation(operation));
                }
                Ok(masters.into_iter().map(Some).collect())
            }
        }
    }

    /// One `SCAN .. MATCH pattern` page of one server: the next cursor
    /// and the stored keys found.
    pub(super) async fn scan_raw(
        &self,
        operation: &'static str,
        node: Option<&Node>,
        cursor: u64,
        pattern: &[u8],
    ) -> Result<(u64, Vec<Vec<u8>>)> {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(BATCH);
        let conn = self.conn();
        let routing = node.map(Node::routing);
        self.run(operation, async move {
            match (conn, routing) {
                (Conn::Cluster(mut conn), Some(routing)) => {
                    let reply = conn.route_command(cmd, routing).await?;
                    Ok(redis::from_redis_value(reply)?)
                }
                (mut conn, _) => cmd.query_async(&mut conn).await,
            }
        })
        .await
    }

    /// Reads one `SCAN` page: the next cursor and the user keys found.
    pub(super) async fn scan_page(
        &self,
        node: Option<&Node>,
        cursor: u64,
        pattern: &[u8],
    ) -> Result<(u64, Vec<String>)> {
        let (next, raw) = self.scan_raw("keys", node, cursor, pattern).await?;
        let prefix = self.inner.prefix.len();
        let keys = raw
            .into_iter()
            .filter_map(|full| {
                let rest = full.get(prefix..)?;
                if rest.first() == Some(&INTERNAL) {
                    return None;
                }
                String::from_utf8(rest.to_vec()).ok()
            })
            .collect();
        Ok((next, keys))
    }

    /// `UNLINK`s stored keys in batches (of one slot each in cluster
    /// mode); returns how many existed.
    pub(super) async fn unlink(&self, operation: &'static str, keys: &[Vec<u8>]) -> Result<u64> {
        let mut commands = Vec::new();
        for group in self.groups(keys) {
            for chunk in group.chunks(BATCH) {
                let mut cmd = redis::cmd("UNLINK");
                for &i in chunk {
                    cmd.arg(&keys[i]);
                }
                commands.push(cmd);
            }
        }
        let mut jobs = Vec::with_capacity(commands.len());
        for cmd in commands {
            let mut conn = self.conn();
            jobs.push(async move { cmd.query_async::<u64>(&mut conn).await });
        }
        let counts = self.run(operation, all(jobs)).await?;
        Ok(counts.into_iter().sum())
    }

    /// Removes every key under the prefix: `SCAN` and `UNLINK` on each
    /// server, never `FLUSHDB`.
    pub(super) async fn clear_prefix(&self) -> Result<()> {
        let mut pattern = glob::escape(&self.inner.prefix).into_bytes();
        pattern.push(b'*');
        for node in self.scan_targets("clear").await? {
            let mut cursor = 0;
            loop {
                let (next, found) = self
                    .scan_raw("clear", node.as_ref(), cursor, &pattern)
                    .await?;
                if !found.is_empty() {
                    self.unlink("clear", &found).await?;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(())
    }

    /// The user keys matching `pattern`, read lazily page by page, server
    /// after server.
    pub(super) async fn key_stream(&self, pattern: &str) -> Result<KeyStream> {
        let mut full = glob::escape(&self.inner.prefix).into_bytes();
        full.extend_from_slice(pattern.as_bytes());
        let mut nodes = std::collections::VecDeque::from(self.scan_targets("keys").await?);
        // The first page is read now, so that a dead server fails the call
        // rather than the stream.
        // `scan_targets` names at least one server.
        let first_node = nodes.pop_front().flatten();
        let (next, first) = self.scan_page(first_node.as_ref(), 0, &full).await?;
        let this = self.clone();
        // (node, cursor): the page to read next; cursor 0 means this node is
        // done, so the next node starts.
        let mut queue = nodes;
        let pages = stream::unfold(
            Some((first_node, next)),
            move |state: Option<(Option<Node>, u64)>| {
                let this = this.clone();
                let full = full.clone();
                // The next page: this node's, or the next node's first.
                let next = state.and_then(|(node, cursor)| match cursor {
                    0 => queue.pop_front().map(|node| (node, 0)),
                    _ => Some((node, cursor)),
                });
                async move {
                    let (node, cursor) = next?;
                    match this.scan_page(node.as_ref(), cursor, &full).await {
                        Ok((next, keys)) => Some((
                            stream::iter(keys.into_iter().map(Ok)).left_stream(),
                            Some((node, next)),
                        )),
                        Err(err) => Some((stream::iter([Err(err)]).right_stream(), None)),
                    }
                }
            },
        )
        .flatten();
        Ok(stream::iter(first.into_iter().map(Ok)).chain(pages).boxed())
    }
}
