//! An S3-compatible server for tests (feature `testing`): moto's server
//! mode (`moto_server`, from PyPI's `moto[server]`; `scripts/test`
//! installs it when missing), built on the generic pieces of
//! [`servers`](super).
//!
//! [`S3Server::start`] runs moto's server application on a [`free_port`]
//! of loopback, one request at a time (moto checks `If-Match` and then
//! writes without a lock between them, so only a server that serves one
//! request at a time makes conditional writes atomic, as S3's are), and
//! waits until it answers. moto keeps everything in memory: a restarted
//! server is empty. It accepts any credentials (it does not check
//! signatures), honours `If-None-Match: *` and `If-Match` on
//! `PutObject`, bulk deletes, `ListObjectsV2` and multipart uploads.
//!
//! ```no_run
//! use cachette::testing::servers::s3::S3Server;
//!
//! let server = S3Server::start();
//! server.create_bucket("cache");
//! let endpoint = server.endpoint(); // http://127.0.0.1:PORT
//! ```
//!
//! These are test helpers: failures panic.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::Duration;

use super::{ServerProcess, free_port, fresh_dir};

/// The access key the tests sign with (moto accepts any).
pub const ACCESS_KEY: &str = "cachette-test";
/// The secret key the tests sign with.
pub const SECRET_KEY: &str = "cachette-test-secret";
/// The region the tests use.
pub const REGION: &str = "us-east-1";

/// moto's own `moto_server`, but serving one request at a time.
const LAUNCHER: &str = "import os, sys\n\
port = int(sys.argv[1])\n\
os.environ['MOTO_PORT'] = str(port)\n\
from werkzeug.serving import run_simple\n\
from moto.server import DomainDispatcherApplication, create_backend_app\n\
run_simple('127.0.0.1', port, DomainDispatcherApplication(create_backend_app), threaded=False)\n";

/// A moto server process owned by a test.
#[derive(Debug)]
pub struct S3Server {
    port: u16,
    process: ServerProcess,
}

impl S3Server {
    /// Starts a server on a free loopback port.
    pub fn start() -> Self {
        let port = free_port();
        let args = ["-c".to_owned(), LAUNCHER.to_owned(), port.to_string()];
        let process = ServerProcess::start("python3", args, fresh_dir(), move |_log: &str| {
            request(port, "GET", "/moto-api/").is_some()
        });
        S3Server { port, process }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `s3://{bucket}/{prefix}?endpoint=…&allow_http=true&region=us-east-1`
    /// (credentials come from the environment: set `AWS_ACCESS_KEY_ID`
    /// and `AWS_SECRET_ACCESS_KEY` for the process that opens it).
    pub fn url(&self, bucket: &str, prefix: &str) -> String {
        format!(
            "s3://{bucket}/{prefix}?endpoint={}&allow_http=true&region={REGION}",
            self.endpoint()
        )
    }

    /// Creates a bucket.
    pub fn create_bucket(&self, bucket: &str) {
        let status = request(self.port, "PUT", &format!("/{bucket}"));
        assert!(
            status.as_deref().is_some_and(|line| line.contains(" 200 ")),
            "creating bucket {bucket} answered {status:?}"
        );
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
}

/// Sends an empty HTTP/1.1 request and returns the status line.
fn request(port: u16, method: &str, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).ok()?;
    let answer = String::from_utf8_lossy(&answer);
    answer.lines().next().map(str::to_owned)
}
