//! The fuzz targets of cachette: one binary, the target named by its first
//! argument, its input read by AFL++ (`cargo afl fuzz`). Run through
//! `scripts/fuzz TARGET SECONDS`; `--list` names the targets.
//!
//! Each target is an entry point of `cachette::fuzzing`, which the corpus
//! replay test (`crates/cachette/tests/fuzz_corpus.rs`) calls too.

use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(name) = std::env::args().nth(1) else {
        eprintln!("usage: cachette-fuzz TARGET (or --list)");
        return ExitCode::FAILURE;
    };
    if name == "--list" {
        for target in cachette::fuzzing::targets() {
            println!("{:<16} {}", target.name, target.about);
        }
        return ExitCode::SUCCESS;
    }
    let Some(target) = cachette::fuzzing::find(&name) else {
        eprintln!("cachette-fuzz: no target `{name}`; see --list");
        return ExitCode::FAILURE;
    };
    afl::fuzz!(|data: &[u8]| {
        (target.run)(data);
    });
    ExitCode::SUCCESS
}
