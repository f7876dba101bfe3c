//! The command line: global options and the list of subcommands. Each
//! subcommand's own arguments live next to its code in [`crate::commands`].

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::commands::{backends, bench, get, ops, sim, stats, watch};

const AFTER_HELP: &str = "\
Exit status:
  0  success
  1  the key is absent, or a condition kept a write from happening
     (get, exists, ttl, touch, set --nx/--xx)
  2  error (a message `error: ...` is printed on stderr; under --json,
     a JSON object {\"error\": {\"kind\": ..., \"message\": ...}})

Examples:
  cachette backends
  cachette --url 'memory://?max_entries=10000' bench --duration 5s
  cachette --url redis://localhost:6379 set greeting hello --ttl 10m --tag demo
  cachette --url redis://localhost:6379 keys 'user:*' | wc -l
  cachette --url redis://localhost:6379 get --namespace users 42
  cachette --url redis://localhost:6379 watch --interval 2s
  cachette --url redis://localhost:6379 --json stats
  cachette --config caches.toml --cache pages get home
  cachette sim --zipf 1.0 --capacity 1000,10000 --plot zipf.svg

Logs go to stderr; set RUST_LOG (default: warn) to see more.
How cachette is built, and the rules every backend follows: docs/design.md
in the cachette repository.";

/// Inspect, query and benchmark any cachette backend.
#[derive(Debug, Parser)]
#[command(name = "cachette", version, after_help = AFTER_HELP)]
pub(crate) struct Cli {
    /// The backend to work on, e.g. `memory://?max_entries=10000` or
    /// `redis://localhost:6379`. A `memory://` store lives only as long as
    /// this process.
    #[arg(
        long,
        global = true,
        env = "CACHETTE_URL",
        default_value = "memory://",
        hide_env_values = true,
        value_name = "URL",
        display_order = 1000
    )]
    pub(crate) url: String,

    /// A TOML file of named caches (`[caches.<name>]` tables with a `url`,
    /// or `l1` and `l2` for a tiered cache); the command works on the cache
    /// `--cache` names, else on the file's default cache. Given, it is used
    /// instead of `--url`. `CACHETTE_CACHES__*` variables override the file.
    #[arg(
        long,
        global = true,
        env = "CACHETTE_CONFIG",
        value_name = "FILE",
        display_order = 1001
    )]
    pub(crate) config: Option<PathBuf>,

    /// The cache of `--config` to work on.
    #[arg(
        long,
        global = true,
        env = "CACHETTE_CACHE",
        value_name = "NAME",
        requires = "config",
        display_order = 1002
    )]
    pub(crate) cache: Option<String>,

    /// Print one JSON document on stdout instead of text (`watch`: one
    /// object per line and frame), and errors as `{"error": {"kind": …,
    /// "message": …}}` on stderr. Values are JSON strings when UTF-8, else
    /// `{"base64": …}`.
    #[arg(long, global = true, display_order = 1003)]
    pub(crate) json: bool,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Print what every backend scheme supports (the capability table).
    Backends(backends::BackendsArgs),
    /// Replay a trace through each eviction policy and cache size; print the miss ratios.
    Sim(sim::SimArgs),
    /// Print the shell completion script for SHELL (bash, zsh, fish, elvish,
    /// powershell), e.g. `cachette completions bash > /etc/bash_completion.d/cachette`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    #[command(flatten)]
    OnBackend(BackendCommand),
}

/// The subcommands that work on the backend named by `--url` (or
/// `--config` and `--cache`).
#[derive(Debug, Subcommand)]
pub(crate) enum BackendCommand {
    /// Print the value of a key; exit status 1 and `(miss)` on stderr if
    /// absent. Decodes what the typed cache wrote (--namespace, --codec).
    Get(get::GetArgs),
    /// Write a key; prints `OK`, or exits 1 if --nx/--xx kept it from writing.
    Set(ops::SetArgs),
    /// Remove keys; prints how many existed.
    Del(ops::DelArgs),
    /// Print `true` if the key exists, `false` (exit status 1) if not.
    Exists(ops::KeyArgs),
    /// Print the values of several keys, one line each; an empty line (and
    /// `(miss) KEY` on stderr) for a missing key.
    Mget(ops::DelArgs),
    /// Remove every entry stored with any of these tags; prints how many
    /// were removed (0 where the backend cannot count them).
    InvalidateTags(ops::TagsArgs),
    /// Print the remaining lifetime of a key: `missing`, `persistent` or e.g. `1432ms`.
    Ttl(ops::KeyArgs),
    /// Give a present key a new deadline (or none); exits 1 if it is absent.
    Touch(ops::TouchArgs),
    /// Add to a counter (created at 0 if missing) and print its new value.
    Incr(ops::CounterArgs),
    /// Subtract from a counter (created at 0 if missing) and print its new value.
    Decr(ops::CounterArgs),
    /// List the keys that match a glob pattern, one per line.
    Keys(ops::KeysArgs),
    /// Remove every key of the backend (its prefix / namespace only); needs --yes.
    Clear(ops::ClearArgs),
    /// Print the backend's counters and the server's figures, with where
    /// each comes from (a table, --json, or --prometheus).
    Stats(stats::StatsArgs),
    /// Redraw the backend's hit ratio, ops/s, entries, bytes and evictions
    /// every --interval until Ctrl-C (or --count frames).
    Watch(watch::WatchArgs),
    /// Check that the backend answers; prints `PONG` and the latency.
    Ping,
    /// Remove expired entries now (one pass of the backend's sweeper); prints how many.
    PurgeExpired,
    /// Run a Zipf-distributed get/set workload and report throughput and latency.
    Bench(bench::BenchArgs),
}
