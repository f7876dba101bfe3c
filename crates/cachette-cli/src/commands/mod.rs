//! The subcommands, and what they share: opening the backend named by
//! `--url` (or by `--config` and `--cache`) and the outcome that becomes
//! the exit status.

pub(crate) mod backends;
pub(crate) mod bench;
pub(crate) mod get;
pub(crate) mod ops;
pub(crate) mod sim;
pub(crate) mod stats;
pub(crate) mod watch;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use cachette::{Backend, CacheManager};

use crate::cli::{BackendCommand, Cli, Command};
use crate::output::{self, Printer};

/// How a command that did not fail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// It did what was asked (exit status 0).
    Done,
    /// The key was absent or a condition kept a write from happening (exit
    /// status 1).
    Absent,
}

/// Runs the command given on the command line.
pub(crate) async fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let out = Printer::new(cli.json);
    let command = match cli.command {
        Command::Backends(args) => return backends::run(&args, out),
        Command::Completions { shell } => return completions(shell, out),
        Command::Sim(args) => return sim::run(&args, out),
        Command::OnBackend(command) => command,
    };
    let (backend, manager) = match &cli.config {
        Some(path) => {
            let manager = open_config(path).await?;
            let backend = match &cli.cache {
                Some(name) => manager.get(name),
                None => manager.default_cache(),
            }?;
            (backend, Some(manager))
        }
        None => {
            // An unbounded store would hold every key after the warm-up: a
            // benchmark of hits alone. The default store is bounded below
            // the key space instead.
            let url = match &command {
                BackendCommand::Bench(args) if cli.url == "memory://" => {
                    bench::bounded_memory_url(args)
                }
                _ => cli.url.clone(),
            };
            (open_backend(&url).await?, None)
        }
    };
    let outcome = match command {
        BackendCommand::Bench(args) => bench::run(Arc::clone(&backend), &args, out).await,
        BackendCommand::Get(args) => get::get(&backend, &args, out).await,
        BackendCommand::Set(args) => ops::set(&*backend, &args, out).await,
        BackendCommand::Del(args) => ops::del(&*backend, &args, out).await,
        BackendCommand::Ttl(args) => ops::ttl(&*backend, &args, out).await,
        BackendCommand::Touch(args) => ops::touch(&*backend, &args, out).await,
        BackendCommand::Incr(args) => {
            ops::counter(&*backend, &args, ops::CounterOp::Incr, out).await
        }
        BackendCommand::Decr(args) => {
            ops::counter(&*backend, &args, ops::CounterOp::Decr, out).await
        }
        BackendCommand::Keys(args) => ops::keys(&*backend, &args, out).await,
        BackendCommand::Clear(args) => ops::clear(&*backend, &args, out).await,
        BackendCommand::Stats(args) => stats::stats(&*backend, &args, out).await,
        BackendCommand::Watch(args) => watch::watch(&*backend, &args, out).await,
        BackendCommand::Ping => ops::ping(&*backend, out).await,
        BackendCommand::Exists(args) => ops::exists(&*backend, &args, out).await,
        BackendCommand::Mget(args) => ops::mget(&*backend, &args, out).await,
        BackendCommand::InvalidateTags(args) => ops::invalidate_tags(&*backend, &args, out).await,
        BackendCommand::PurgeExpired => ops::purge_expired(&*backend, out).await,
    };
    let closed = match &manager {
        Some(manager) => manager.close().await,
        None => backend.close().await,
    };
    if let Err(err) = closed {
        tracing::warn!(error = %err, "closing the backend failed");
    }
    outcome
}

/// `cachette completions SHELL`: the script, or under `--json`
/// `{"shell": …, "script": …}`.
fn completions(shell: clap_complete::Shell, out: Printer) -> anyhow::Result<Outcome> {
    use clap::CommandFactory;
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "cachette", &mut script);
    if out.is_json() {
        let script = String::from_utf8_lossy(&script);
        output::print_json(&serde_json::json!({ "shell": shell.to_string(), "script": script }))?;
    } else {
        output::print_bytes(&script)?;
    }
    Ok(Outcome::Done)
}

/// Opens every cache of the configuration file at `path`, with the
/// environment applied over it.
async fn open_config(path: &Path) -> anyhow::Result<CacheManager> {
    let manager = async { CacheManager::from_env_and_file(path)?.build().await }
        .await
        .with_context(|| format!("cannot open the caches of `{}`", path.display()))?;
    tracing::debug!(caches = ?manager.names(), "opened the configured caches");
    Ok(manager)
}

/// Opens the backend at `url`. The error names the URL's scheme but never
/// the whole URL, which may carry a password.
async fn open_backend(url: &str) -> anyhow::Result<Arc<dyn Backend>> {
    let backend = cachette::open(url)
        .await
        .with_context(|| match url.split_once("://") {
            Some((scheme, _)) => format!("cannot open a `{scheme}://` backend"),
            None => "cannot open the backend".to_owned(),
        })?;
    tracing::debug!(backend = backend.name(), "opened the backend");
    Ok(backend)
}
