//! Real PostgreSQL servers for tests (feature `testing`), built on the
//! generic pieces of [`servers`](super).
//!
//! [`PostgresServer::start`] runs `initdb` into a fresh directory (trust
//! authentication, user `cachette`), then `postgres` on a [`free_port`]
//! of loopback with `fsync=off` and no Unix socket, and waits until it
//! accepts connections. When the tests run as root, both run as `nobody`
//! (PostgreSQL refuses root) through `setpriv`, which execs in place, so
//! the process handle is the postmaster itself. The binaries are found in
//! `$CACHETTE_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin`
//! (Debian's `postgresql` package), else on `PATH`. The server is killed
//! on [`Drop`]. Startup takes about a second.
//!
//! ```no_run
//! use cachette::testing::servers::postgres::PostgresServer;
//!
//! let mut server = PostgresServer::start();
//! let url = server.url(); // postgres://cachette@127.0.0.1:PORT/postgres
//! server.crash(); // an immediate shutdown: no checkpoint, unlogged tables emptied
//! server.restart();
//! ```
//!
//! These are test helpers: failures panic.

use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{ServerProcess, TlsFiles, free_port, fresh_dir, running_as_root, wait_until};

/// The user of the test servers (trust authentication: any password).
pub const USER: &str = "cachette";

/// A PostgreSQL server owned by a test.
#[derive(Debug)]
pub struct PostgresServer {
    port: u16,
    process: ServerProcess,
    bin: PathBuf,
}

impl PostgresServer {
    /// Initialises a cluster and starts a server on a free loopback port.
    pub fn start() -> Self {
        Self::launch(None)
    }

    /// Starts a server that also takes TLS (`ssl=on`) with `files`' server
    /// certificate and key (copied into its data directory, the key
    /// readable by the server's user only, as PostgreSQL demands).
    pub fn start_tls(files: &TlsFiles) -> Self {
        Self::launch(Some(files))
    }

    fn launch(tls: Option<&TlsFiles>) -> Self {
        let bin = bin_dir();
        let dir = fresh_dir();
        let data = dir.join("data");
        std::fs::create_dir_all(&data)
            .unwrap_or_else(|err| panic!("cannot create {}: {err}", data.display()));
        let as_nobody = running_as_root();
        if as_nobody {
            hand_to_nobody(&dir);
            hand_to_nobody(&data);
        }
        let initdb = bin.join("initdb");
        let mut command = unprivileged(&initdb, as_nobody);
        command.args(["-D"]).arg(&data).args([
            "-U",
            USER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ]);
        let output = command.output().unwrap_or_else(|err| {
            panic!(
                "cannot run {} (is PostgreSQL installed?): {err}",
                initdb.display()
            )
        });
        assert!(
            output.status.success(),
            "initdb failed: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let mut settings = Vec::new();
        if let Some(files) = tls {
            let (cert, key) = (data.join("server.crt"), data.join("server.key"));
            for (from, to) in [(&files.cert, &cert), (&files.key, &key)] {
                std::fs::copy(from, to)
                    .unwrap_or_else(|err| panic!("cannot copy {}: {err}", from.display()));
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    let _ = std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o600));
                }
                if as_nobody {
                    hand_to_nobody(to);
                }
            }
            settings.extend([
                "ssl=on".to_owned(),
                format!("ssl_cert_file={}", cert.display()),
                format!("ssl_key_file={}", key.display()),
            ]);
        }
        let port = free_port();
        let postgres = bin.join("postgres");
        let mut args: Vec<String> = Vec::new();
        let program = if as_nobody {
            args.extend(setpriv_args());
            args.push(postgres.display().to_string());
            "setpriv".to_owned()
        } else {
            postgres.display().to_string()
        };
        args.extend(["-D".to_owned(), data.display().to_string()]);
        for setting in [
            "listen_addresses=127.0.0.1".to_owned(),
            format!("port={port}"),
            "unix_socket_directories=".to_owned(),
            "fsync=off".to_owned(),
            "synchronous_commit=off".to_owned(),
            "full_page_writes=off".to_owned(),
            "max_connections=200".to_owned(),
            "shared_buffers=32MB".to_owned(),
        ]
        .into_iter()
        .chain(settings)
        {
            args.extend(["-c".to_owned(), setting]);
        }
        let process = ServerProcess::start(&program, args, dir, move |log: &str| {
            log.contains("database system is ready to accept connections")
                && TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok()
        });
        PostgresServer { port, process, bin }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://cachette@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server the way a crash would: an immediate shutdown
    /// (`SIGQUIT`: every connection dropped, no checkpoint; unlogged
    /// tables come back empty), then waits until the port is closed.
    pub fn crash(&mut self) {
        self.process.signal_and_wait("-QUIT");
        let port = self.port;
        wait_until(
            "the server's port to close",
            Duration::from_secs(30),
            || TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err(),
        );
    }

    /// Starts the server again on the same port and data directory.
    pub fn restart(&mut self) {
        if self.process.is_running() {
            self.crash();
        }
        self.process.restart();
    }

    /// Stops the server and every one of its processes with `SIGSTOP`:
    /// connections are accepted by the kernel and never answered until
    /// [`thaw`](Self::thaw).
    pub fn freeze(&self) {
        self.signal_all("-STOP");
    }

    /// Lets a frozen server run again.
    pub fn thaw(&self) {
        self.signal_all("-CONT");
    }

    /// Sends `signal` to the postmaster and its children (the backends
    /// that serve open connections).
    fn signal_all(&self, signal: &str) {
        let Some(pid) = self.process.pid() else {
            return;
        };
        let _ = Command::new("pkill")
            .args([signal, "-P", &pid.to_string()])
            .status();
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status();
        assert!(
            status.as_ref().is_ok_and(|s| s.success()),
            "kill {signal} failed: {status:?}"
        );
    }

    /// Runs SQL through `psql` (unaligned, tuples only) and returns its
    /// output: for checks from outside cachette.
    pub fn psql(&self, sql: &str) -> String {
        let output = self
            .psql_command()
            .args(["-c", sql])
            .output()
            .unwrap_or_else(|err| panic!("cannot run psql: {err}"));
        assert!(
            output.status.success(),
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// A `psql` command connected to the server (unaligned, tuples only,
    /// stopping at the first error), for a test to add `-c SQL` to, or
    /// to run in the background.
    pub fn psql_command(&self) -> Command {
        let mut command = Command::new(self.bin.join("psql"));
        command
            .args([
                "-X",
                "-A",
                "-t",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .args(["-p", &self.port.to_string(), "-U", USER, "-d", "postgres"]);
        command
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// Where the server's programs are.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CACHETTE_PG_BIN") {
        return PathBuf::from(dir);
    }
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version);
    match newest {
        Some((_, bin)) => bin,
        None => PathBuf::new(),
    }
}

/// `program`, run as `nobody` when `as_nobody`.
fn unprivileged(program: &Path, as_nobody: bool) -> Command {
    if as_nobody {
        let mut command = Command::new("setpriv");
        command.args(setpriv_args()).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// `setpriv`'s arguments to become `nobody` (65534) and exec in place.
fn setpriv_args() -> Vec<String> {
    ["--reuid=65534", "--regid=65534", "--clear-groups"]
        .iter()
        .map(|arg| (*arg).to_owned())
        .collect()
}

/// Makes `path` belong to `nobody`, so that the server can write there.
fn hand_to_nobody(path: &Path) {
    #[cfg(unix)]
    std::os::unix::fs::chown(path, Some(65534), Some(65534))
        .unwrap_or_else(|err| panic!("cannot hand {} to nobody: {err}", path.display()));
}

impl Drop for PostgresServer {
    /// An immediate shutdown, so that no backend process outlives the
    /// test (a killed postmaster leaves its children to notice alone).
    fn drop(&mut self) {
        self.process.signal_and_wait("-QUIT");
    }
}
