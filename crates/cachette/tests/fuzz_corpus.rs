//! Replays the seed corpus of every fuzz target (`fuzz/corpus/TARGET/`),
//! and every crash the fuzzers found (kept there too), through the same
//! entry points the fuzz targets call: no input may panic. The fuzzers
//! themselves run with `scripts/fuzz` (see docs/fuzzing.md).

#![cfg(feature = "fuzzing")]

use std::fs;
use std::path::{Path, PathBuf};

use cachette::fuzzing::{Target, find, targets};

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus")
}

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

fn replay(target: Target) -> usize {
    let files = inputs(&corpus_root().join(target.name));
    for file in &files {
        let data = fs::read(file).unwrap();
        let outcome = std::panic::catch_unwind(|| (target.run)(&data));
        assert!(
            outcome.is_ok(),
            "{} panicked on {} ({} bytes)",
            target.name,
            file.display(),
            data.len()
        );
    }
    files.len()
}

#[test]
fn every_compiled_target_has_a_seed_corpus_and_no_seed_panics() {
    for target in targets() {
        let replayed = replay(target);
        assert!(replayed > 0, "{} has an empty corpus", target.name);
    }
}

#[test]
fn every_corpus_folder_belongs_to_a_target() {
    let all_features = cfg!(all(
        feature = "file",
        feature = "redb",
        feature = "redis",
        feature = "memcached",
        feature = "tiered",
        feature = "sim"
    ));
    for entry in fs::read_dir(corpus_root()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            find(&name).is_some() || !all_features,
            "fuzz/corpus/{name} names no fuzz target"
        );
    }
    if all_features {
        assert_eq!(targets().len(), 9, "every target is compiled in");
    }
}
