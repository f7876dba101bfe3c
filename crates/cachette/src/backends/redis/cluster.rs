//! What cluster mode adds: the connection over either kind of server, hash
//! slots, the slot tags that put a key's internal records in its slot, and
//! the list of masters that `keys` and `clear` visit.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, ErrorKind as RedisErrorKind, RedisFuture, RedisResult, Value};

use super::sentinel::SentinelConn;

/// The number of hash slots of Redis Cluster.
pub(super) const SLOTS: u16 = 16384;

/// The connection of a backend: one auto-reconnecting connection to a
/// standalone server, a cluster connection that routes each command to
/// the master of its keys' slot, or a connection to the master that the
/// sentinels name (found again after a failover). All are cheap to clone.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(SentinelConn),
}

impl Conn {
    pub(super) fn is_cluster(&self) -> bool {
        matches!(self, Conn::Cluster(_))
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(conn) => conn.req_packed_command(cmd),
            Conn::Cluster(conn) => conn.req_packed_command(cmd),
            Conn::Sentinel(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
            Conn::Sentinel(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(conn) => conn.get_db(),
            Conn::Cluster(_) => 0,
            Conn::Sentinel(conn) => conn.get_db(),
        }
    }
}

/// A master of the cluster, as `CLUSTER SLOTS` names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Node {
    pub(super) host: String,
    pub(super) port: u16,
}

impl Node {
    pub(super) fn routing(&self) -> RoutingInfo {
        RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
            host: self.host.clone(),
            port: self.port,
        })
    }
}

/// The masters of the cluster, each once, from `CLUSTER SLOTS` (asked of
/// any node).
pub(super) async fn masters(conn: &mut ClusterConnection) -> RedisResult<Vec<Node>> {
    let reply = conn
        .route_command(
            redis::cmd("CLUSTER").arg("SLOTS").clone(),
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
        )
        .await?;
    let ranges: Vec<Vec<Value>> = redis::from_redis_value(reply)?;
    let mut nodes = BTreeMap::new();
    for range in ranges {
        // [start, end, [host, port, id, ...], replicas...]
        let Some(master) = range.get(2) else { continue };
        let fields: Vec<Value> = redis::from_redis_value(master.clone())?;
        let (Some(host), Some(port)) = (fields.first(), fields.get(1)) else {
            continue;
        };
        let host: String = redis::from_redis_value(host.clone())?;
        let port: i64 = redis::from_redis_value(port.clone())?;
        let port = u16::try_from(port).map_err(|_| {
            redis::RedisError::from((
                RedisErrorKind::Parse,
                "CLUSTER SLOTS named a port out of range",
            ))
        })?;
        nodes.insert(Node { host, port }, ());
    }
    Ok(nodes.into_keys().collect())
}

/// CRC16/XMODEM, the checksum of Redis Cluster's key slots.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The part of a key Redis Cluster hashes: the text between the first `{`
/// and the first `}` after it, if that is not empty; else the whole key.
fn hashed_part(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{')
        && let Some(len) = key[open + 1..].iter().position(|&b| b == b'}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

/// The hash slot (0..16384) of a stored key, as `CLUSTER KEYSLOT` computes
/// it, honouring a `{hash tag}`.
pub fn hash_slot(key: &[u8]) -> u16 {
    crc16(hashed_part(key)) % SLOTS
}

/// For every slot, a short ASCII text (no `{` or `}`) that hashes to it:
/// `{text}` in a key puts the key in that slot. Found by trying `0`, `1`,
/// ... in base 36 until every slot has one; the same table on every
/// machine.
static SLOT_TAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut tags = vec![String::new(); usize::from(SLOTS)];
    let mut missing = usize::from(SLOTS);
    let mut n: u64 = 0;
    while missing > 0 {
        let mut text = Vec::new();
        let mut rest = n;
        loop {
            text.push(DIGITS[(rest % 36) as usize]);
            rest /= 36;
            if rest == 0 {
                break;
            }
        }
        let slot = usize::from(crc16(&text) % SLOTS);
        if tags[slot].is_empty() {
            tags[slot] = String::from_utf8(text).unwrap_or_default();
            missing -= 1;
        }
        n += 1;
    }
    tags
});

/// The slot tag of `slot`: `{tag}` in a key puts it there.
pub(super) fn slot_tag(slot: u16) -> &'static str {
    &SLOT_TAGS[usize::from(slot % SLOTS)]
}

/// Whether a prefix leaves the hash slot of each key to the rest of the
/// key or fixes it (a complete `{tag}`), as cluster mode needs: a lone or
/// empty `{...` in the prefix would make the slot of internal keys differ
/// from their entry's.
pub(super) fn prefix_is_cluster_safe(prefix: &str) -> bool {
    let bytes = prefix.as_bytes();
    match bytes.iter().position(|&b| b == b'{') {
        None => true,
        Some(open) => bytes[open + 1..]
            .iter()
            .position(|&b| b == b'}')
            .is_some_and(|len| len > 0),
    }
}

/// Indices of `keys` grouped by the slot of each key, in slot order.
pub(super) fn group_by_slot<K: AsRef<[u8]>>(keys: &[K]) -> Vec<(u16, Vec<usize>)> {
    let mut groups: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
    for (i, key) in keys.iter().enumerate() {
        groups.entry(hash_slot(key.as_ref())).or_default().push(i);
    }
    groups.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_the_reference_values() {
        // From the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(hash_slot(b"foo"), 12182);
        assert_eq!(hash_slot(b"bar"), 5061);
        assert_eq!(hash_slot(b"{user1000}.following"), hash_slot(b"user1000"));
        assert_eq!(hash_slot(b"foo{}{bar}"), hash_slot(b"foo{}{bar}"));
        assert_eq!(hashed_part(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hashed_part(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hashed_part(b"foo{bar}{zap}"), b"bar");
    }

    #[test]
    fn every_slot_has_a_short_tag() {
        for slot in 0..SLOTS {
            let tag = slot_tag(slot);
            assert!(!tag.is_empty() && tag.len() <= 4, "{slot}: {tag:?}");
            assert_eq!(hash_slot(format!("x{{{tag}}}y").as_bytes()), slot);
        }
    }

    #[test]
    fn prefixes_are_checked_for_cluster_mode() {
        assert!(prefix_is_cluster_safe("app:"));
        assert!(prefix_is_cluster_safe("app}:"));
        assert!(prefix_is_cluster_safe("{app}:"));
        assert!(!prefix_is_cluster_safe("app{"));
        assert!(!prefix_is_cluster_safe("{}app"));
    }
}
