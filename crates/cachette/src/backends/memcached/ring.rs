//! Which server holds a key: libmemcached's ketama ring (the default) or
//! pymemcache's rendezvous hash, computed exactly as those clients do, so
//! that they and cachette find a key on the same server.
//!
//! - **Ketama** (libmemcached's `MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED`): each
//!   server gets 160 points on a ring of `u32` (156 for some server counts:
//!   libmemcached computes the count in `f32`, and so does this module).
//!   The points of a server are the MD5 digests of `host-N` (`host:port-N`
//!   when the port is not 11211) for `N = 0, 1, …`, four little-endian
//!   `u32`s per digest. A key goes to the first point at or after the first
//!   four bytes of its MD5 digest (little-endian), wrapping around; with one
//!   server there is no hashing.
//! - **Rendezvous** (pymemcache's `RendezvousHash`): every server scores
//!   the key with MurmurHash3 (x86, 32 bits, seed 0) of `host:port-key`;
//!   the highest score wins, ties going to the greater server name.
//!
//! Adding or removing one of `n` servers moves about `1/n` of the keys,
//! and only to or from that server. The unit tests hold both rings to
//! vectors computed with libmemcached 1.1.4 and pymemcache 4.0.0
//! (`docs/memcached-plan.md`).

use md5::{Digest, Md5};

/// A server as the rings name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerName {
    /// The host as written in the URL (a name or an IP address).
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl ServerName {
    /// memcached's default port, which ketama leaves out of point names.
    const DEFAULT_PORT: u16 = 11211;

    /// `host:port`, the rendezvous name (and the ketama one but for the
    /// default port).
    fn full(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The name ketama hashes for this server's points.
    fn ketama(&self) -> String {
        if self.port == Self::DEFAULT_PORT {
            self.host.clone()
        } else {
            self.full()
        }
    }
}

/// How keys are spread over the servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Distribution {
    /// libmemcached's ketama ring (MD5, 160 points per server).
    #[default]
    Ketama,
    /// pymemcache's rendezvous hash (MurmurHash3).
    Rendezvous,
}

/// A routing table over a fixed list of servers.
#[derive(Debug, Clone)]
pub(crate) enum Ring {
    /// The ketama points, sorted by (point, server).
    Ketama {
        points: Vec<(u32, usize)>,
        servers: usize,
    },
    /// The servers' `host:port` names.
    Rendezvous { names: Vec<String> },
}

impl Ring {
    /// The ring of `servers` (at least one) by `distribution`.
    pub(crate) fn new(distribution: Distribution, servers: &[ServerName]) -> Ring {
        match distribution {
            Distribution::Ketama => Ring::Ketama {
                points: ketama_points(servers),
                servers: servers.len(),
            },
            Distribution::Rendezvous => Ring::Rendezvous {
                names: servers.iter().map(ServerName::full).collect(),
            },
        }
    }

    /// The server of `key`.
    pub(crate) fn server(&self, key: &[u8]) -> usize {
        self.server_among(key, &|_| true).unwrap_or(0)
    }

    /// The server of `key` among those `usable` accepts: the next one
    /// clockwise on the ketama ring, or the next best score; `None` when
    /// no server is usable.
    pub(crate) fn server_among(&self, key: &[u8], usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        match self {
            Ring::Ketama { points, servers } => {
                if *servers == 1 {
                    return usable(0).then_some(0);
                }
                let hash = md5_u32(key);
                let start = points.partition_point(|&(point, _)| point < hash);
                (0..points.len())
                    .map(|i| points[(start + i) % points.len()].1)
                    .find(|&server| usable(server))
            }
            Ring::Rendezvous { names } => names
                .iter()
                .enumerate()
                .filter(|&(server, _)| usable(server))
                .map(|(server, name)| (rendezvous_score(name, key), name, server))
                .max_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)))
                .map(|(_, _, server)| server),
        }
    }
}

/// The first four bytes of the MD5 digest of `bytes`, little-endian.
fn md5_u32(bytes: &[u8]) -> u32 {
    let digest = Md5::digest(bytes);
    u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// Points per server with equal weights, as libmemcached computes them:
/// `floor(share × 160 / 4 × servers + 1e-10) × 4` in `f32`, where the
/// share is `1 / servers`. Rounding makes it 156 for some counts (25, 47,
/// 50, …).
fn points_per_server(servers: usize) -> usize {
    // Server counts are small; the casts mirror libmemcached's.
    #[allow(clippy::cast_precision_loss)]
    let live = servers as f32;
    let share = 1.0_f32 / live;
    let quarter = share * 160.0_f32 / 4.0_f32 * live;
    // The constant is a `double` in libmemcached: the sum is made in
    // `f64` and cast back before the floor.
    #[allow(clippy::cast_possible_truncation)]
    let sum = (f64::from(quarter) + 0.000_000_000_1) as f32;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let digests = sum.floor() as usize;
    digests * 4
}

/// Every server's ketama points, sorted by (point, server).
fn ketama_points(servers: &[ServerName]) -> Vec<(u32, usize)> {
    let per_server = points_per_server(servers.len());
    let mut points = Vec::with_capacity(per_server * servers.len());
    for (index, server) in servers.iter().enumerate() {
        let name = server.ketama();
        for n in 0..per_server / 4 {
            let digest = Md5::digest(format!("{name}-{n}").as_bytes());
            for quarter in digest.chunks_exact(4) {
                let point = u32::from_le_bytes([quarter[0], quarter[1], quarter[2], quarter[3]]);
                points.push((point, index));
            }
        }
    }
    points.sort_unstable();
    points
}

/// pymemcache's score of `key` on the server `name`: MurmurHash3 of
/// `name-key`.
fn rendezvous_score(name: &str, key: &[u8]) -> u32 {
    let mut input = Vec::with_capacity(name.len() + 1 + key.len());
    input.extend_from_slice(name.as_bytes());
    input.push(b'-');
    input.extend_from_slice(key);
    murmur3_32(&input, 0)
}

/// MurmurHash3, x86 variant, 32-bit result.
fn murmur3_32(data: &[u8], seed: u32) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let scramble = |k: u32| k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    let mut hash = seed;
    let blocks = data.chunks_exact(4);
    let tail = blocks.remainder();
    for block in blocks {
        let k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        hash ^= scramble(k);
        hash = hash
            .rotate_left(13)
            .wrapping_mul(5)
            .wrapping_add(0xe654_6b64);
    }
    if !tail.is_empty() {
        let k = tail
            .iter()
            .rev()
            .fold(0_u32, |k, &byte| (k << 8) | u32::from(byte));
        hash ^= scramble(k);
    }
    // The length is mixed in modulo 2^32, as the reference does.
    #[allow(clippy::cast_possible_truncation)]
    let length = data.len() as u32;
    hash ^= length;
    hash ^= hash >> 16;
    hash = hash.wrapping_mul(0x85eb_ca6b);
    hash ^= hash >> 13;
    hash = hash.wrapping_mul(0xc2b2_ae35);
    hash ^ (hash >> 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers(n: u16) -> Vec<ServerName> {
        (0..n)
            .map(|i| ServerName {
                host: "127.0.0.1".into(),
                port: 11211 + i,
            })
            .collect()
    }

    /// (key, ketama of 3, ketama of 2, rendezvous of 3, rendezvous of 2),
    /// servers 127.0.0.1:11211, :11212, :11213, from libmemcached 1.1.4
    /// and pymemcache 4.0.0.
    const VECTORS: [(&str, usize, usize, usize, usize); 22] = [
        ("key0", 2, 1, 2, 1),
        ("key1", 1, 1, 1, 1),
        ("key2", 2, 1, 2, 0),
        ("key3", 0, 0, 2, 0),
        ("key4", 0, 0, 2, 0),
        ("key5", 1, 1, 0, 0),
        ("key6", 0, 0, 2, 1),
        ("key7", 1, 1, 1, 1),
        ("key8", 0, 0, 1, 1),
        ("key9", 1, 1, 2, 0),
        ("key10", 1, 1, 1, 1),
        ("key11", 1, 1, 1, 1),
        ("key12", 1, 1, 1, 1),
        ("key13", 0, 0, 2, 0),
        ("key14", 1, 1, 0, 0),
        ("key15", 2, 0, 1, 1),
        ("key16", 1, 1, 2, 0),
        ("key17", 2, 0, 0, 0),
        ("key18", 2, 0, 0, 0),
        ("key19", 0, 0, 2, 1),
        ("foo", 0, 0, 2, 0),
        ("user:42", 1, 1, 1, 1),
    ];

    #[test]
    fn both_rings_agree_with_the_reference_clients() {
        let ketama3 = Ring::new(Distribution::Ketama, &servers(3));
        let ketama2 = Ring::new(Distribution::Ketama, &servers(2));
        let rendezvous3 = Ring::new(Distribution::Rendezvous, &servers(3));
        let rendezvous2 = Ring::new(Distribution::Rendezvous, &servers(2));
        for (key, k3, k2, r3, r2) in VECTORS {
            let key_bytes = key.as_bytes();
            assert_eq!(ketama3.server(key_bytes), k3, "ketama of 3, {key}");
            assert_eq!(ketama2.server(key_bytes), k2, "ketama of 2, {key}");
            assert_eq!(rendezvous3.server(key_bytes), r3, "rendezvous of 3, {key}");
            assert_eq!(rendezvous2.server(key_bytes), r2, "rendezvous of 2, {key}");
        }
    }

    #[test]
    fn ketama_points_match_libmemcached() {
        // MD5("127.0.0.1-0") and MD5("127.0.0.1:11212-0"), four points each.
        let points = ketama_points(&servers(2));
        for point in [3_187_647_615, 2_893_990_766, 813_702_075, 4_292_932_786] {
            assert!(points.contains(&(point, 0)), "{point}");
        }
        for point in [647_876_633, 3_420_366_637, 96_110_928, 4_175_585_575] {
            assert!(points.contains(&(point, 1)), "{point}");
        }
        assert_eq!(points.len(), 320);
    }

    #[test]
    fn some_server_counts_get_156_points_as_in_libmemcached() {
        for n in [1, 2, 3, 4, 10, 24, 26, 49, 51] {
            assert_eq!(points_per_server(n), 160, "{n} servers");
        }
        for n in [25, 47, 50, 55, 61, 71, 94, 100] {
            assert_eq!(points_per_server(n), 156, "{n} servers");
        }
    }

    #[test]
    fn murmur3_matches_the_reference_scores() {
        // pymemcache's scores of `foo` on the three servers.
        assert_eq!(rendezvous_score("127.0.0.1:11211", b"foo"), 553_244_281);
        assert_eq!(rendezvous_score("127.0.0.1:11212", b"foo"), 160_172_816);
        assert_eq!(rendezvous_score("127.0.0.1:11213", b"foo"), 3_781_735_599);
        // Published MurmurHash3_x86_32 values.
        assert_eq!(murmur3_32(b"", 0), 0);
        assert_eq!(murmur3_32(b"", 1), 0x514e_28b7);
        assert_eq!(murmur3_32(b"hello", 0), 0x248b_fa47);
    }

    /// Adding a fourth server moves about a quarter of the keys, all to
    /// it; removing one moves only its own keys.
    #[test]
    fn adding_or_removing_a_server_moves_only_its_share() {
        for distribution in [Distribution::Ketama, Distribution::Rendezvous] {
            let three = Ring::new(distribution, &servers(3));
            let four = Ring::new(distribution, &servers(4));
            let two = Ring::new(distribution, &servers(2));
            let keys: Vec<String> = (0..10_000).map(|i| format!("user:{i}")).collect();
            let mut moved = 0;
            for key in &keys {
                let (before, after) = (three.server(key.as_bytes()), four.server(key.as_bytes()));
                if before != after {
                    assert_eq!(
                        after, 3,
                        "{distribution:?}: {key} moved between old servers"
                    );
                    moved += 1;
                }
                let (before, after) = (three.server(key.as_bytes()), two.server(key.as_bytes()));
                if before != 2 {
                    assert_eq!(
                        before, after,
                        "{distribution:?}: {key} left a remaining server"
                    );
                }
            }
            assert!(
                (1_800..3_300).contains(&moved),
                "{distribution:?}: {moved} of 10,000 moved"
            );
        }
    }

    #[test]
    fn a_down_server_sends_its_keys_to_the_next_one() {
        for distribution in [Distribution::Ketama, Distribution::Rendezvous] {
            let ring = Ring::new(distribution, &servers(3));
            for i in 0..1_000 {
                let key = format!("k{i}");
                let home = ring.server(key.as_bytes());
                let next = ring.server_among(key.as_bytes(), &|s| s != home).unwrap();
                assert_ne!(next, home);
                // The same as a ring without that server, for rendezvous;
                // for ketama, the next server clockwise.
                assert_eq!(ring.server_among(key.as_bytes(), &|_| false), None);
            }
        }
    }
}
