//! Server processes for tests (feature `testing`): the pieces every test
//! that starts a real server needs, whatever the server.
//!
//! - [`free_port`]: a free loopback port, never the same one twice in a
//!   process.
//! - [`fresh_dir`]: a new, empty temporary directory.
//! - [`ServerProcess`]: a child process with its working directory and its
//!   log in such a directory, polled until a readiness check holds (its log
//!   is printed if it never does), killed and reaped on [`Drop`].
//! - [`wait_until`]: polls any condition with a deadline.
//!
//! A server of a backend builds on these (see `servers::redis` with the `redis`
//! feature): it chooses the arguments and the readiness check, and adds
//! what only that server has (a URL, a command-line client).
//!
//! ```no_run
//! use std::net::{Ipv4Addr, TcpStream};
//! use cachette::testing::servers::{ServerProcess, free_port, fresh_dir};
//!
//! let port = free_port();
//! let server = ServerProcess::start(
//!     "memcached",
//!     ["-l", "127.0.0.1", "-p", &port.to_string()],
//!     fresh_dir(),
//!     move |_log: &str| TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok(),
//! );
//! // ... test against 127.0.0.1:port; the process dies with `server`.
//! # drop(server);
//! ```
//!
//! These are test helpers: failures panic.

pub mod memcached;
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;
pub mod s3;

use std::ffi::OsString;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A port that was free a moment ago: bind port 0 and let it go.
///
/// Never the same port twice in one process: a test that killed its
/// server may still have clients, sentinels or replicas pointing at that
/// port, and a Redis sentinel turns a server that comes back there into a
/// replica of its own master. Handing the port to another test's fresh
/// server would let the two tests see each other's data.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    loop {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|err| panic!("cannot bind a loopback port: {err}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|err| panic!("cannot read the bound port: {err}"))
            .port();
        let mut handed_out = HANDED_OUT
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
}

/// A new, empty directory under the system's temporary directory.
pub fn fresh_dir() -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!(
        "cachette-test-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|err| panic!("cannot create {}: {err}", dir.display()));
    dir
}

/// Polls `ready` every 50 ms until it holds; panics naming `what` once
/// `within` has passed.
pub fn wait_until(what: &str, within: Duration, mut ready: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ready() {
        assert!(
            started.elapsed() < within,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The readiness check of a [`ServerProcess`]: given what the process has
/// logged since it was (re)started, whether it serves.
type Readiness = Box<dyn FnMut(&str) -> bool + Send + Sync>;

/// A server process owned by a test.
///
/// Its working directory is the one given to [`start`](Self::start); its
/// standard output and error go to the file `log` in there. It is killed
/// (`SIGKILL`) and reaped on [`Drop`], and the directory removed.
pub struct ServerProcess {
    program: String,
    args: Vec<OsString>,
    dir: PathBuf,
    ready: Readiness,
    child: Option<Child>,
}

impl fmt::Debug for ServerProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerProcess")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("dir", &self.dir)
            .field("pid", &self.child.as_ref().map(Child::id))
            .finish_non_exhaustive()
    }
}

impl ServerProcess {
    /// How long a process may take to become ready.
    pub const STARTUP: Duration = Duration::from_secs(10);

    /// Starts `program` with `args` in `dir` and returns once `ready`
    /// holds. `ready` is asked every 20 ms with what the process has logged
    /// since it started (e.g. "Ready to accept connections"), and may probe
    /// the server itself (connect to its port).
    ///
    /// Panics if the program cannot be started, and with the process's log
    /// if it exits or is not ready within [`STARTUP`](Self::STARTUP).
    pub fn start<I, S>(
        program: &str,
        args: I,
        dir: PathBuf,
        ready: impl FnMut(&str) -> bool + Send + Sync + 'static,
    ) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let mut process = ServerProcess {
            program: program.to_owned(),
            args: args.into_iter().map(Into::into).collect(),
            dir,
            ready: Box::new(ready),
            child: None,
        };
        process.spawn();
        process
    }

    /// The process's working directory (its log is `log` in there).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Everything the process has logged, across restarts.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is running (as far as this handle knows).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the process with `SIGKILL` (no shutdown, no goodbye to
    /// clients) and reaps it. Does nothing if it is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the process with `SIGSTOP`: its sockets stay open and accept
    /// connections, but nothing is answered until [`thaw`](Self::thaw).
    /// The case that only timeouts can end. Does nothing if it is not
    /// running.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen process run again (`SIGCONT`).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    /// Sends `signal` (as `kill` spells it, e.g. `-QUIT`) and waits for
    /// the process to exit, at most 30 s, then kills it. Does nothing if it
    /// is not running. For servers whose own shutdown matters (PostgreSQL's
    /// immediate shutdown also stops its child processes).
    pub fn signal_and_wait(&mut self, signal: &str) {
        if self.child.is_none() {
            return;
        }
        // A frozen process would never see the signal.
        self.signal("-CONT");
        self.signal(signal);
        let started = Instant::now();
        while let Some(child) = self.child.as_mut() {
            if !matches!(child.try_wait(), Ok(None)) || started.elapsed() > Duration::from_secs(30)
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill();
    }

    /// Starts the process again with the same arguments in the same
    /// directory, after killing it if it still runs, and waits until it is
    /// ready.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("log")
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let status = Command::new("kill")
                .arg(signal)
                .arg(child.id().to_string())
                .status();
            assert!(
                status.as_ref().is_ok_and(|s| s.success()),
                "kill {signal} failed: {status:?}"
            );
        }
    }

    fn spawn(&mut self) {
        // A restarted process appends to the log; each run's readiness
        // check reads only what this run wrote.
        let log_start = self.log().len();
        let log = self.open_log();
        let stderr = log
            .try_clone()
            .unwrap_or_else(|err| panic!("cannot share the log file: {err}"));
        let child = Command::new(&self.program)
            .args(&self.args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot start {} (is it installed and on PATH?): {err}",
                    self.program
                )
            });
        self.child = Some(child);
        self.wait_ready(log_start);
    }

    fn open_log(&self) -> File {
        let path = self.log_path();
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|err| panic!("cannot open {}: {err}", path.display()))
    }

    fn wait_ready(&mut self, log_start: usize) {
        let started = Instant::now();
        loop {
            let log = self.log();
            if (self.ready)(log.get(log_start..).unwrap_or_default()) {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                panic!(
                    "{} exited with {status} before it was ready; its log:\n{}",
                    self.program,
                    self.log()
                );
            }
            if started.elapsed() > Self::STARTUP {
                self.kill();
                panic!(
                    "{} was not ready within {:?}; its log:\n{}",
                    self.program,
                    Self::STARTUP,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_never_hands_out_the_same_port_twice() {
        let mut ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 200);
    }

    #[test]
    fn fresh_dir_is_new_and_empty_every_time() {
        let (a, b) = (fresh_dir(), fresh_dir());
        assert_ne!(a, b);
        for dir in [&a, &b] {
            let entries = std::fs::read_dir(dir).map(Iterator::count).ok();
            assert_eq!(entries, Some(0), "{}", dir.display());
            std::fs::remove_dir_all(dir).ok();
        }
    }

    #[test]
    fn a_process_is_ready_when_its_check_holds_and_is_gone_after_drop() {
        let process = ServerProcess::start(
            "sh",
            ["-c", "echo listening; exec sleep 30"],
            fresh_dir(),
            |log: &str| log.contains("listening"),
        );
        assert!(process.is_running());
        let dir = process.dir().to_owned();
        drop(process);
        assert!(!dir.exists(), "the directory is removed on drop");
    }

    #[test]
    fn a_restarted_process_checks_only_its_new_log() {
        let mut process = ServerProcess::start(
            "sh",
            ["-c", "echo run; exec sleep 30"],
            fresh_dir(),
            // Ready once this run logged its line: a check that saw the
            // first run's line again would pass at once.
            |log: &str| log.matches("run").count() == 1,
        );
        process.restart();
        assert_eq!(process.log().matches("run").count(), 2);
    }

    #[test]
    #[should_panic(expected = "exited with exit status: 3 before it was ready; its log:\nboom")]
    fn a_process_that_exits_before_it_is_ready_panics_with_its_log() {
        ServerProcess::start("sh", ["-c", "echo boom; exit 3"], fresh_dir(), |_: &str| {
            false
        });
    }
}

/// The certificate files of a TLS server, in PEM.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TlsFiles {
    /// The server's certificate (for `127.0.0.1` and `localhost`).
    pub cert: PathBuf,
    /// The server's private key.
    pub key: PathBuf,
    /// The CA that signed the certificate; clients trust it.
    pub ca: PathBuf,
}

impl TlsFiles {
    /// The three files.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>, ca: impl Into<PathBuf>) -> Self {
        TlsFiles {
            cert: cert.into(),
            key: key.into(),
            ca: ca.into(),
        }
    }
}

/// Whether this process runs as root (servers that refuse root then run
/// as `nobody`).
pub(crate) fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.trim_ascii() == b"0")
}
