//! `cachette`, the command line of the cachette caching toolkit.
//!
//! This file only parses the command line, sets up logging and the tokio
//! runtime, dispatches to [`commands`] and turns the outcome into an exit
//! status. See `cachette --help` for the commands and the exit statuses.

mod cli;
mod commands;
mod output;
mod units;

use std::io;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::cli::Cli;
use crate::commands::Outcome;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(&err),
    };
    let json = cli.json;
    init_tracing();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(commands::run(cli)));
    match result {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Absent) => ExitCode::from(1),
        // `cachette keys | head` closes the pipe early: that is not an error.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            output::print_error(output::error_kind(&err), &format!("{err:#}"), json);
            ExitCode::from(2)
        }
    }
}

/// A command line clap refused (or `--help`, `--version`): clap's own
/// message, or under `--json` the JSON error of kind `usage`, exit status 2.
fn usage_error(err: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let informational = matches!(
        err.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    // The command line could not be parsed, so `--json` is looked for as
    // a word of it.
    if informational || !std::env::args_os().any(|arg| arg == "--json") {
        err.exit();
    }
    let message = err.render().to_string();
    let message = message
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ");
    output::print_error("usage", message, true);
    ExitCode::from(2)
}

/// Logs go to stderr, filtered by `RUST_LOG` (default: `warn`).
fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .init();
}

/// Whether the command failed writing to a closed stdout. A broken pipe
/// under a cachette error is a backend's connection breaking (memcached's
/// socket), a failure that must not pass for success.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .take_while(|cause| cause.downcast_ref::<cachette::Error>().is_none())
        .any(|cause| {
            cause
                .downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_stdout_is_a_broken_pipe() {
        let err = anyhow::Error::from(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(is_broken_pipe(&err.context("printing the answer")));
    }

    #[test]
    fn a_backend_connection_broken_mid_write_is_an_error_not_a_closed_stdout() {
        let broken = cachette::Error::new(
            cachette::ErrorKind::Connection,
            "memcached",
            "127.0.0.1:11211: the connection broke",
        )
        .with_source(io::Error::from(io::ErrorKind::BrokenPipe));
        let err = anyhow::Error::from(broken).context("cannot open a `memcached://` backend");
        assert!(!is_broken_pipe(&err));
    }
}
