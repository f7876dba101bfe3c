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

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}
