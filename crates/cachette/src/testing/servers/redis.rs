//! Real `redis-server` processes for tests (features `testing` + `redis`),
//! built on the generic pieces of [`servers`](super).
//!
//! [`RedisServer::start`] takes a [`free_port`] (never the machine's 6379)
//! and a [`fresh_dir`], starts `redis-server` there without persistence
//! as a [`ServerProcess`], and waits until it logs that it is ready and
//! accepts connections (panicking with the server's log if it never does).
//! The process is killed (`SIGKILL`) and reaped on [`Drop`], and the
//! directory removed. [`RedisServer::kill`] and [`RedisServer::restart`]
//! let fault tests take the server away and bring it back on the same
//! port.
//!
//! ```no_run
//! use cachette::testing::servers::redis::RedisServer;
//!
//! let mut server = RedisServer::start();
//! let url = server.url(); // redis://127.0.0.1:PORT/0
//! server.kill();
//! server.restart();
//! ```
//!
//! [`RedisCluster::start`] makes a cluster of fresh masters the same way
//! (`redis-cli --cluster create`), and can kill one of them.
//! [`RedisSentinel::start`] makes a master, its replica and Redis Sentinel
//! watching them, tuned to fail over within a few seconds.
//!
//! These are test helpers: failures panic.

use std::ffi::OsString;
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub use super::TlsFiles;
use super::{ServerProcess, free_port, fresh_dir, wait_until};

/// A `redis-server` process owned by a test.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    tls: Option<TlsFiles>,
    process: ServerProcess,
}

impl RedisServer {
    /// Starts a plain server on a free loopback port.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server with extra command-line arguments (e.g.
    /// `["--maxmemory", "10mb"]`).
    pub fn start_with(args: &[&str]) -> Self {
        Self::launch_in(fresh_dir(), free_port(), args, None)
    }

    /// Starts a server that speaks TLS only, on a free loopback port, with
    /// these certificates; clients need not present one.
    pub fn start_tls(files: &TlsFiles) -> Self {
        Self::launch_in(fresh_dir(), free_port(), &[], Some(files.clone()))
    }

    fn launch_in(dir: PathBuf, port: u16, extra: &[&str], tls: Option<TlsFiles>) -> Self {
        let mut args: Vec<OsString> = Vec::new();
        match &tls {
            None => args.extend(["--port".into(), port.to_string().into()]),
            Some(tls) => args.extend([
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                port.to_string().into(),
                "--tls-cert-file".into(),
                tls.cert.clone().into(),
                "--tls-key-file".into(),
                tls.key.clone().into(),
                "--tls-ca-cert-file".into(),
                tls.ca.clone().into(),
                "--tls-auth-clients".into(),
                "no".into(),
            ]),
        }
        args.extend(without_persistence(&dir));
        args.extend(extra.iter().map(OsString::from));
        Self::supervise(dir, port, args, tls, "Ready to accept connections")
    }

    /// Starts `redis-server config --sentinel` in `dir` on `port`.
    fn launch_sentinel(dir: PathBuf, port: u16, config: PathBuf) -> Self {
        // The file must come first.
        let mut args: Vec<OsString> = vec![
            config.into(),
            "--sentinel".into(),
            "--port".into(),
            port.to_string().into(),
        ];
        args.extend(without_persistence(&dir));
        // A sentinel listens before it logs that it watches its masters.
        Self::supervise(dir, port, args, None, "+monitor master")
    }

    /// Runs `redis-server args` in `dir`, ready once its log (since each
    /// start) holds `marker` and its port accepts connections.
    fn supervise(
        dir: PathBuf,
        port: u16,
        args: Vec<OsString>,
        tls: Option<TlsFiles>,
        marker: &'static str,
    ) -> Self {
        let ready = move |log: &str| {
            log.contains(marker) && TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok()
        };
        let process = ServerProcess::start("redis-server", args, dir, ready);
        RedisServer { port, tls, process }
    }

    /// The port the server listens on (TLS or not).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's working directory (its log is `log` in there).
    pub fn dir(&self) -> &Path {
        self.process.dir()
    }

    /// `redis://127.0.0.1:PORT/0`, or `rediss://...` for a TLS server.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}/0", self.port)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Whether the process is running (as far as this handle knows).
    pub fn is_running(&self) -> bool {
        self.process.is_running()
    }

    /// Kills the server with `SIGKILL` (no shutdown, no goodbye to
    /// clients) and reaps it. Does nothing if it is not running.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Stops the server with `SIGSTOP`: its socket stays open and accepts
    /// connections, but nothing is answered until [`thaw`](Self::thaw).
    /// The case that only timeouts can end. Does nothing if it is not
    /// running.
    pub fn freeze(&self) {
        self.process.freeze();
    }

    /// Lets a frozen server run again (`SIGCONT`).
    pub fn thaw(&self) {
        self.process.thaw();
    }

    /// Starts the server again on the same port, with the same arguments,
    /// after killing it if it still runs. Its data is gone (no
    /// persistence).
    pub fn restart(&mut self) {
        self.process.restart();
    }

    /// Runs `redis-cli` against this (plain) server and returns its output,
    /// e.g. `server.cli(&["ACL", "SETUSER", "app", "on", ">pw", "~app:*", "+@all"])`.
    /// Panics if `redis-cli` fails to run or exits with an error.
    pub fn cli(&self, args: &[&str]) -> String {
        self.try_cli(args)
            .unwrap_or_else(|error| panic!("redis-cli {args:?} failed: {error}"))
    }

    /// Like [`cli`](Self::cli), but a failed command is an `Err` with
    /// `redis-cli`'s error output instead of a panic: for a server that may
    /// close connections at that moment (a node changing its role).
    pub fn try_cli(&self, args: &[&str]) -> Result<String, String> {
        let mut command = Command::new("redis-cli");
        command
            .arg("-h")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(self.port.to_string());
        if let Some(tls) = &self.tls {
            command.arg("--tls").arg("--cacert").arg(&tls.ca);
        }
        let output = command
            .args(args)
            .output()
            .unwrap_or_else(|err| panic!("cannot run redis-cli: {err}"));
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }
}

/// The arguments every server of a test gets: loopback only, no RDB or
/// AOF files, `dir` as its working directory.
fn without_persistence(dir: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        .into_iter()
        .map(OsString::from)
        .collect();
    args.push("--dir".into());
    args.push(dir.into());
    args
}

/// How long a new cluster may take to agree on its slots.
const CLUSTER_STARTUP: Duration = Duration::from_secs(20);

/// A Redis Cluster of fresh masters (no replicas) on free loopback ports,
/// owned by a test: every process is killed on [`Drop`].
///
/// The nodes run with `cluster-require-full-coverage no`, so that after
/// [`kill`](Self::kill) the other masters keep serving their slots, and a
/// short `cluster-node-timeout` (2 s).
///
/// ```no_run
/// use cachette::testing::servers::redis::RedisCluster;
///
/// let mut cluster = RedisCluster::start(3);
/// let url = cluster.url(); // redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3
/// cluster.kill(1);
/// ```
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `masters` fresh `redis-server --cluster-enabled yes`
    /// processes, joins them with `redis-cli --cluster create
    /// --cluster-replicas 0` (which gives each master an equal share of
    /// the slots, in the order of [`ports`](Self::ports)), and waits until
    /// every node reports `cluster_state:ok` and knows every other node.
    /// Needs at least 3 masters.
    pub fn start(masters: usize) -> Self {
        assert!(masters >= 3, "redis-cli --cluster create needs 3 masters");
        let nodes: Vec<RedisServer> = (0..masters)
            .map(|_| {
                let dir = fresh_dir();
                let config = dir.join("nodes.conf").display().to_string();
                // The bus port is chosen too: port + 10000 may not exist.
                let bus = free_port().to_string();
                let args = [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &config,
                    "--cluster-port",
                    &bus,
                    "--cluster-node-timeout",
                    "2000",
                    "--cluster-require-full-coverage",
                    "no",
                ];
                RedisServer::launch_in(dir, free_port(), &args, None)
            })
            .collect();
        let cluster = RedisCluster { nodes };
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for port in cluster.ports() {
            create.arg(format!("127.0.0.1:{port}"));
        }
        let output = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|err| panic!("cannot run redis-cli: {err}"));
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        cluster.wait_ok();
        cluster
    }

    fn wait_ok(&self) {
        let known = format!("cluster_known_nodes:{}", self.nodes.len());
        wait_until(
            "the cluster to reach cluster_state:ok",
            CLUSTER_STARTUP,
            || {
                self.nodes.iter().all(|node| {
                    let info = node.cli(&["CLUSTER", "INFO"]);
                    info.contains("cluster_state:ok") && info.contains(&known)
                })
            },
        );
    }

    /// The nodes' client ports, in the order they were created.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(RedisServer::port).collect()
    }

    /// The seed nodes, `("127.0.0.1", port)` each, for
    /// `RedisBackend::cluster_builder`.
    pub fn seeds(&self) -> Vec<(String, u16)> {
        self.ports()
            .into_iter()
            .map(|port| ("127.0.0.1".to_owned(), port))
            .collect()
    }

    /// `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,...`.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .ports()
            .into_iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        format!("redis+cluster://{}", nodes.join(","))
    }

    /// One node's process.
    pub fn node(&self, node: usize) -> &RedisServer {
        &self.nodes[node]
    }

    /// Kills node `node` with `SIGKILL`. Its slots have no other master:
    /// their keys are unavailable, the rest of the cluster keeps serving.
    pub fn kill(&mut self, node: usize) {
        self.nodes[node].kill();
    }

    /// The node (by index) whose master serves `slot`, from `CLUSTER
    /// NODES` asked of a running node.
    pub fn owner_of_slot(&self, slot: u16) -> usize {
        let alive = self
            .nodes
            .iter()
            .find(|node| node.is_running())
            .expect("a running node");
        let table = alive.cli(&["CLUSTER", "NODES"]);
        for line in table.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") {
                continue;
            }
            let serves = fields[8..].iter().any(|range| {
                let (start, end) = range.split_once('-').unwrap_or((range, range));
                match (start.parse::<u16>(), end.parse::<u16>()) {
                    (Ok(start), Ok(end)) => (start..=end).contains(&slot),
                    _ => false,
                }
            });
            if !serves {
                continue;
            }
            // `ip:port@bus`
            let port = fields[1]
                .split('@')
                .next()
                .and_then(|addr| addr.rsplit(':').next())
                .and_then(|port| port.parse::<u16>().ok());
            if let Some(index) = port.and_then(|port| self.ports().iter().position(|p| *p == port))
            {
                return index;
            }
        }
        panic!("no node serves slot {slot}:\n{table}");
    }

    /// The number of keys on node `node` (`DBSIZE`).
    pub fn dbsize(&self, node: usize) -> u64 {
        self.nodes[node]
            .cli(&["DBSIZE"])
            .trim()
            .parse()
            .unwrap_or_else(|err| panic!("DBSIZE of node {node}: {err}"))
    }
}

/// How long new sentinels may take to find the replica and each other.
const SENTINEL_STARTUP: Duration = Duration::from_secs(20);

/// A master, one replica (`--replicaof`) and one or more Redis Sentinel
/// processes watching them, on free loopback ports, owned by a test: every
/// process is killed on [`Drop`].
///
/// The sentinels call the master down after 500 ms without an answer
/// (`down-after-milliseconds`) and give a failover 3 s
/// (`failover-timeout`), so that after [`kill_master`](Self::kill_master)
/// the replica is promoted within a few seconds on loopback.
///
/// ```no_run
/// use cachette::testing::servers::redis::RedisSentinel;
///
/// let mut group = RedisSentinel::start();
/// let url = group.url(); // redis+sentinel://127.0.0.1:S1/cachette
/// let old = group.kill_master();
/// // ... later, once the sentinels have promoted the replica:
/// assert_ne!(group.master(), old);
/// ```
#[derive(Debug)]
pub struct RedisSentinel {
    /// The data nodes: the first master, then its replica.
    nodes: Vec<RedisServer>,
    sentinels: Vec<RedisServer>,
}

impl RedisSentinel {
    /// The name the sentinels monitor the master under.
    pub const MASTER_NAME: &'static str = "cachette";

    /// A master, its replica and one sentinel (quorum 1).
    pub fn start() -> Self {
        Self::start_with_sentinels(1)
    }

    /// A master, its replica and `sentinels` sentinels with a majority
    /// quorum. Returns once the replica is in sync and every sentinel
    /// knows the replica and the other sentinels (so that a failover can
    /// start right away).
    pub fn start_with_sentinels(sentinels: usize) -> Self {
        assert!(sentinels >= 1, "at least one sentinel");
        let master = RedisServer::start();
        let master_port = master.port().to_string();
        let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &master_port]);
        wait_until(
            "the replica to sync with the master",
            SENTINEL_STARTUP,
            || {
                replica
                    .cli(&["INFO", "replication"])
                    .contains("master_link_status:up")
            },
        );
        let quorum = sentinels / 2 + 1;
        let name = Self::MASTER_NAME;
        let config = format!(
            "sentinel monitor {name} 127.0.0.1 {master_port} {quorum}\n\
             sentinel down-after-milliseconds {name} 500\n\
             sentinel failover-timeout {name} 3000\n\
             sentinel parallel-syncs {name} 1\n"
        );
        let sentinels = (0..sentinels)
            .map(|_| {
                let dir = fresh_dir();
                let file = dir.join("sentinel.conf");
                std::fs::write(&file, &config)
                    .unwrap_or_else(|err| panic!("cannot write {}: {err}", file.display()));
                RedisServer::launch_sentinel(dir, free_port(), file)
            })
            .collect();
        let group = RedisSentinel {
            nodes: vec![master, replica],
            sentinels,
        };
        let others = (group.sentinels.len() - 1).to_string();
        wait_until(
            "the sentinels to find the replica and each other",
            SENTINEL_STARTUP,
            || {
                group.sentinels.iter().all(|sentinel| {
                    let master = sentinel.cli(&["SENTINEL", "MASTER", name]);
                    // A replica can be promoted only once the sentinel has read
                    // its `INFO` (`info-refresh`: milliseconds since then).
                    let replica = sentinel.cli(&["SENTINEL", "REPLICAS", name]);
                    field(&master, "flags").as_deref() == Some("master")
                        && field(&master, "num-slaves").as_deref() == Some("1")
                        && field(&master, "num-other-sentinels").as_deref() == Some(others.as_str())
                        && field(&replica, "flags").as_deref() == Some("slave")
                        && field(&replica, "master-link-status").as_deref() == Some("ok")
                        && field(&replica, "info-refresh")
                            .and_then(|ms| ms.parse::<u64>().ok())
                            .is_some_and(|ms| ms < 5_000)
                })
            },
        );
        group
    }

    /// The name the sentinels monitor the master under.
    pub fn master_name(&self) -> &'static str {
        Self::MASTER_NAME
    }

    /// The sentinels, `("127.0.0.1", port)` each, for
    /// `RedisBackend::sentinel_builder`.
    pub fn sentinels(&self) -> Vec<(String, u16)> {
        self.sentinels
            .iter()
            .map(|sentinel| ("127.0.0.1".to_owned(), sentinel.port()))
            .collect()
    }

    /// `redis+sentinel://127.0.0.1:S1,127.0.0.1:S2,.../cachette`.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .sentinels
            .iter()
            .map(|sentinel| format!("127.0.0.1:{}", sentinel.port()))
            .collect();
        format!("redis+sentinel://{}/{}", nodes.join(","), Self::MASTER_NAME)
    }

    /// Data node `node`: 0 is the first master, 1 its replica.
    pub fn node(&self, node: usize) -> &RedisServer {
        &self.nodes[node]
    }

    /// Sentinel `sentinel`'s process.
    pub fn sentinel(&self, sentinel: usize) -> &RedisServer {
        &self.sentinels[sentinel]
    }

    /// The data node (0 or 1) that the sentinels name to clients as the
    /// master now (`SENTINEL GET-MASTER-ADDR-BY-NAME`): the answer of the
    /// running sentinel with the newest configuration epoch, since the
    /// others learn of a failover a moment later.
    pub fn master(&self) -> usize {
        let (_, port) = self
            .sentinels
            .iter()
            .filter(|sentinel| sentinel.is_running())
            .map(|sentinel| {
                let state = sentinel.cli(&["SENTINEL", "MASTER", Self::MASTER_NAME]);
                let epoch = field(&state, "config-epoch")
                    .and_then(|epoch| epoch.parse::<u64>().ok())
                    .unwrap_or_else(|| panic!("no `config-epoch` in {state:?}"));
                let address =
                    sentinel.cli(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", Self::MASTER_NAME]);
                let port = address
                    .lines()
                    .nth(1)
                    .and_then(|port| port.trim().parse::<u16>().ok())
                    .unwrap_or_else(|| panic!("no master address in {address:?}"));
                (epoch, port)
            })
            .max()
            .expect("a running sentinel");
        self.nodes
            .iter()
            .position(|node| node.port() == port)
            .unwrap_or_else(|| panic!("the sentinels name an unknown master on port {port}"))
    }

    /// The role data node `node` reports itself (`ROLE`): `master` or
    /// `slave`.
    ///
    /// A node changing its role closes its clients' connections; the
    /// question is asked again for up to 10 s while that happens.
    pub fn role(&self, node: usize) -> String {
        let started = std::time::Instant::now();
        loop {
            match self.nodes[node].try_cli(&["ROLE"]) {
                Ok(reply) => return reply.lines().next().unwrap_or_default().trim().to_owned(),
                Err(error) if started.elapsed() < Duration::from_secs(10) => {
                    tracing::debug!(%error, node, "ROLE failed; asking again");
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(error) => panic!("redis-cli ROLE on node {node} kept failing: {error}"),
            }
        }
    }

    /// Kills the node the sentinels name as the master (`SIGKILL`) and
    /// returns its index.
    pub fn kill_master(&mut self) -> usize {
        let master = self.master();
        self.nodes[master].kill();
        master
    }
}

/// The value after the line `name` in a `redis-cli` reply of field, value,
/// field, value... lines.
fn field(reply: &str, name: &str) -> Option<String> {
    let mut lines = reply.lines().map(str::trim);
    while let Some(line) = lines.next() {
        if line == name {
            return lines.next().map(str::to_owned);
        }
    }
    None
}
