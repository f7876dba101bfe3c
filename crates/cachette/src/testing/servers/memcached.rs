//! Real `memcached` processes for tests (features `testing` +
//! `memcached`), built on the generic pieces of [`servers`](super).
//!
//! [`MemcachedServer::start`] takes a [`free_port`] (never the machine's
//! 11211) and starts `memcached` on loopback with 64 MiB of memory and one
//! worker thread, as `nobody` when the tests run as root (memcached
//! refuses to run as root otherwise), and waits until it answers
//! `version`. The process is killed (`SIGKILL`) and reaped on [`Drop`].
//! [`MemcachedServer::kill`] and [`MemcachedServer::restart`] take it away
//! and bring it back, empty, on the same port.
//!
//! ```no_run
//! use cachette::testing::servers::memcached::MemcachedServer;
//!
//! let mut server = MemcachedServer::start();
//! let url = server.url(); // memcached://127.0.0.1:PORT
//! server.kill();
//! server.restart();
//! ```
//!
//! These are test helpers: failures panic.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::Duration;

use super::{ServerProcess, TlsFiles, free_port, fresh_dir, running_as_root};

/// A `memcached` process owned by a test.
#[derive(Debug)]
pub struct MemcachedServer {
    port: u16,
    process: ServerProcess,
    tls: bool,
}

impl MemcachedServer {
    /// Starts a server with 64 MiB of memory on a free loopback port.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server with extra command-line arguments (e.g.
    /// `["-m", "8"]` for 8 MiB, `["-X"]` to forbid `lru_crawler
    /// metadump`).
    pub fn start_with(extra: &[&str]) -> Self {
        Self::launch(extra, false)
    }

    /// Starts a server that speaks TLS only (`-Z`), with `files`' server
    /// certificate and key (made readable to the server's user). Its URL is
    /// `memcached+tls://127.0.0.1:PORT`.
    pub fn start_tls(files: &TlsFiles) -> Self {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for path in [&files.cert, &files.key] {
                let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644));
                if let Some(dir) = path.parent() {
                    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
                }
            }
        }
        let option = format!(
            "ssl_chain_cert={},ssl_key={}",
            files.cert.display(),
            files.key.display()
        );
        Self::launch(&["-Z", "-o", &option], true)
    }

    fn launch(extra: &[&str], tls: bool) -> Self {
        let port = free_port();
        let mut args: Vec<String> = [
            "-l",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "0",
            "-m",
            "64",
            "-t",
            "1",
        ]
        .iter()
        .map(|&arg| arg.to_owned())
        .collect();
        if running_as_root() {
            args.extend(["-u".to_owned(), "nobody".to_owned()]);
        }
        args.extend(extra.iter().map(|&arg| arg.to_owned()));
        let process = ServerProcess::start("memcached", args, fresh_dir(), move |_log: &str| {
            if tls {
                TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok()
            } else {
                answers_version(port)
            }
        });
        MemcachedServer { port, process, tls }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host:port` of the server, as a `memcached://` URL lists it.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `memcached://127.0.0.1:PORT` (`memcached+tls://` for a TLS server).
    pub fn url(&self) -> String {
        let scheme = if self.tls {
            "memcached+tls"
        } else {
            "memcached"
        };
        format!("{scheme}://{}", self.address())
    }

    /// Kills the server (`SIGKILL`).
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts the server again on the same port, empty.
    pub fn restart(&mut self) {
        self.process.restart();
    }

    /// Stops the server with `SIGSTOP`: connections are accepted and never
    /// answered until [`thaw`](Self::thaw).
    pub fn freeze(&self) {
        self.process.freeze();
    }

    /// Lets a frozen server run again.
    pub fn thaw(&self) {
        self.process.thaw();
    }

    /// Sends one text-protocol command and returns the server's answer, up
    /// to and including the line that ends it (`END`, `OK`, `MN` or any
    /// single-line reply): for checks from outside cachette, such as
    /// `stats` or `mg key v`.
    pub fn command(&self, command: &str) -> String {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))
            .unwrap_or_else(|err| panic!("cannot connect to memcached on {}: {err}", self.port));
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        stream
            .write_all(format!("{command}\r\n").as_bytes())
            .unwrap_or_else(|err| panic!("cannot send {command:?}: {err}"));
        let mut reader = BufReader::new(stream);
        let mut answer = String::new();
        loop {
            let mut line = String::new();
            let read = reader
                .read_line(&mut line)
                .unwrap_or_else(|err| panic!("no answer to {command:?}: {err}"));
            assert!(
                read > 0,
                "memcached closed the connection after {command:?}"
            );
            answer.push_str(&line);
            let line = line.trim_end();
            let multi_line = line.starts_with("STAT ") || line.starts_with("VA ");
            if line.starts_with("VA ") {
                // The data block follows its header.
                let mut data = String::new();
                let _ = reader.read_line(&mut data);
                answer.push_str(&data);
                return answer;
            }
            if !multi_line {
                return answer;
            }
        }
    }

    /// The value of one `stats` counter (e.g. `curr_items`, `evictions`).
    pub fn stat(&self, name: &str) -> u64 {
        let stats = self.command("stats");
        stats
            .lines()
            .find_map(|line| {
                let mut parts = line.split_whitespace();
                (parts.next() == Some("STAT") && parts.next() == Some(name))
                    .then(|| parts.next()?.parse().ok())
                    .flatten()
            })
            .unwrap_or_else(|| panic!("no stat `{name}` in:\n{stats}"))
    }
}

/// Several servers for tests of key distribution and failures.
#[derive(Debug)]
pub struct MemcachedCluster {
    servers: Vec<MemcachedServer>,
}

impl MemcachedCluster {
    /// Starts `n` servers.
    pub fn start(n: usize) -> Self {
        MemcachedCluster {
            servers: (0..n).map(|_| MemcachedServer::start()).collect(),
        }
    }

    /// The servers, in URL order.
    pub fn servers(&self) -> &[MemcachedServer] {
        &self.servers
    }

    /// One server, to kill or restart.
    pub fn server_mut(&mut self, index: usize) -> &mut MemcachedServer {
        &mut self.servers[index]
    }

    /// `memcached://h1:p1,h2:p2,…`.
    pub fn url(&self) -> String {
        let addresses: Vec<String> = self.servers.iter().map(MemcachedServer::address).collect();
        format!("memcached://{}", addresses.join(","))
    }
}

/// Whether memcached answers `version` on `port`.
fn answers_version(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream.write_all(b"version\r\n").is_err() {
        return false;
    }
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("VERSION")
}
