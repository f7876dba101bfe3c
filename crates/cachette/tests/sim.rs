//! The hit-ratio simulator: trace readers on small files written here, the
//! Zipf generator, and replays through the memory engine.
//!
//! Nothing here reads the shared trace set: every trace is made by the test.

#![cfg(feature = "sim")]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use cachette::sim::{
    TraceFormat, adapt_size_key, distinct_keys, read_trace, simulate, simulate_grid, zipf_trace,
};
use cachette::{ErrorKind, Policy};

/// A folder of its own under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "cachette-sim-{}-{name}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    /// Writes `bytes` to `name`, compressed by its extension.
    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, compress(&path, bytes)).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn compress(path: &Path, bytes: &[u8]) -> Vec<u8> {
    match path.extension().and_then(|ext| ext.to_str()) {
        Some("gz") => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(bytes).unwrap();
            encoder.finish().unwrap()
        }
        Some("xz") => {
            let options = lzma_rust2::XzOptions::with_preset(6);
            let mut encoder = lzma_rust2::XzWriter::new(Vec::new(), options).unwrap();
            encoder.write_all(bytes).unwrap();
            encoder.finish().unwrap()
        }
        _ => bytes.to_vec(),
    }
}

fn read(dir: &TempDir, name: &str, format: TraceFormat, bytes: &[u8]) -> Vec<u64> {
    read_trace(&dir.file(name, bytes), format).unwrap()
}

// ---- trace formats ----------------------------------------------------

#[test]
fn lirs_lines_are_trimmed_and_markers_and_blank_lines_skipped() {
    let dir = TempDir::new("lirs");
    let text = b"5\r\n  7 \r\n*\r\n\r\n5\r\n10000";
    assert_eq!(
        read(&dir, "plain.trace", TraceFormat::Lirs, text),
        [5, 7, 5, 10000]
    );
}

#[test]
fn gzip_traces_are_decompressed_by_extension() {
    let dir = TempDir::new("gzip");
    let text = b"1\n2\n*\n3\n\n";
    assert_eq!(
        read(&dir, "small.trace.gz", TraceFormat::Lirs, text),
        [1, 2, 3]
    );
}

#[test]
fn xz_traces_are_decompressed_by_extension() {
    let dir = TempDir::new("xz");
    let text = b"s 0x1fffff50 1 1 100\nl 0x0000000a 3 1 10\n";
    assert_eq!(
        read(&dir, "gcc.trace.xz", TraceFormat::AddressPenalties, text),
        [0x1fff_ff50, 0xa]
    );
}

#[test]
fn lines_split_across_decompressed_chunks_parse_whole() {
    let dir = TempDir::new("chunks");
    let keys: Vec<u64> = (0..200_000).map(|i| i * 7919 % 100_003).collect();
    let text: String = keys.iter().map(|key| format!("{key}\n")).collect();
    assert_eq!(
        read(&dir, "long.trace.gz", TraceFormat::Lirs, text.as_bytes()),
        keys
    );
    assert_eq!(
        read(&dir, "long.trace.xz", TraceFormat::Lirs, text.as_bytes()),
        keys
    );
}

#[test]
fn address_keys_are_the_hex_address() {
    let dir = TempDir::new("address");
    let text = b"s 0x1fffff50 1\nl 0x7fff0000 12\nl 0x1fffff50 0\n";
    assert_eq!(
        read(&dir, "gcc.trace", TraceFormat::Address, text),
        [0x1fff_ff50, 0x7fff_0000, 0x1fff_ff50]
    );
}

#[test]
fn cache2k_records_are_big_endian_i32_sign_extended() {
    let dir = TempDir::new("cache2k");
    let bytes: Vec<u8> = [1_i32, -2, i32::MAX]
        .iter()
        .flat_map(|key| key.to_be_bytes())
        .collect();
    assert_eq!(
        read(&dir, "web.trace.xz", TraceFormat::Cache2k, &bytes),
        [1, (-2_i64) as u64, i32::MAX as u64]
    );
}

#[test]
fn cloud_physics_records_are_big_endian_u32() {
    let dir = TempDir::new("cloud");
    let bytes: Vec<u8> = [1_u32, u32::MAX, 0x0102_0304]
        .iter()
        .flat_map(|key| key.to_be_bytes())
        .collect();
    assert_eq!(
        read(&dir, "w106.trace", TraceFormat::CloudPhysics, &bytes),
        [1, u64::from(u32::MAX), 0x0102_0304]
    );
}

#[test]
fn corda_and_scarab_records_are_big_endian_i64() {
    let dir = TempDir::new("i64");
    let keys = [0_i64, -1, i64::MIN, 0x0102_0304_0506_0708];
    let bytes: Vec<u8> = keys.iter().flat_map(|key| key.to_be_bytes()).collect();
    let expected: Vec<u64> = keys.iter().map(|&key| key as u64).collect();
    for format in [TraceFormat::Corda, TraceFormat::Scarab] {
        assert_eq!(read(&dir, "vault.gz", format, &bytes), expected, "{format}");
    }
}

#[test]
fn adapt_size_keys_are_the_id_and_size_pair() {
    let dir = TempDir::new("adapt");
    let text = b"1 5 100\n2 5 200\n3 5 100\n4 6 100\n";
    let keys = read(&dir, "request.trace", TraceFormat::AdaptSize, text);
    assert_eq!(
        keys,
        [
            adapt_size_key(5, 100),
            adapt_size_key(5, 200),
            adapt_size_key(5, 100),
            adapt_size_key(6, 100)
        ]
    );
    assert_eq!(distinct_keys(&keys), 3);
}

#[test]
fn a_malformed_line_is_a_serialization_error_naming_its_number() {
    let dir = TempDir::new("bad-line");
    let path = dir.file("bad.trace.gz", b"1\n2\nthree\n4\n");
    let err = read_trace(&path, TraceFormat::Lirs).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Serialization);
    assert!(err.to_string().contains("line 3"), "{err}");
    assert!(err.to_string().contains("three"), "{err}");

    let path = dir.file("bad-address.trace", b"s 0x10 1\ns 10 1\n");
    let err = read_trace(&path, TraceFormat::Address).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Serialization);
    assert!(err.to_string().contains("line 2"), "{err}");
}

#[test]
fn a_partial_binary_record_is_a_serialization_error_naming_its_offset() {
    let dir = TempDir::new("bad-record");
    let path = dir.file("short.trace.xz", &[0, 0, 0, 1, 0, 0]);
    let err = read_trace(&path, TraceFormat::Cache2k).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Serialization);
    assert!(err.to_string().contains("offset 4"), "{err}");
}

#[test]
fn a_missing_or_corrupt_file_is_a_config_error() {
    let dir = TempDir::new("missing");
    let err = read_trace(&dir.0.join("absent.trace"), TraceFormat::Lirs).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("absent.trace"), "{err}");

    let path = dir.0.join("corrupt.trace.gz");
    std::fs::write(&path, b"this is not gzip").unwrap();
    let err = read_trace(&path, TraceFormat::Lirs).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
}

#[test]
fn formats_parse_their_names_and_folder_names() {
    for format in TraceFormat::ALL {
        assert_eq!(format.to_string().parse::<TraceFormat>().unwrap(), format);
    }
    assert_eq!(
        "cloud_physics".parse::<TraceFormat>().unwrap(),
        TraceFormat::CloudPhysics
    );
    let err = "parquet".parse::<TraceFormat>().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
}

#[test]
fn formats_are_guessed_from_the_trace_set_folders() {
    let cases = [
        ("traces/lirs/loop.trace.gz", Some(TraceFormat::Lirs)),
        ("traces/address/gcc.trace.gz", Some(TraceFormat::Address)),
        (
            "traces/address/penalties/gcc.trace.xz",
            Some(TraceFormat::AddressPenalties),
        ),
        ("/a/cache2k/web07.trace.xz", Some(TraceFormat::Cache2k)),
        (
            "cloud_physics/w106.trace.xz",
            Some(TraceFormat::CloudPhysics),
        ),
        ("corda/trace_vaultservice.gz", Some(TraceFormat::Corda)),
        ("scarab/scarab-recs.trace.xz", Some(TraceFormat::Scarab)),
        ("adapt_size/request.trace.xz", Some(TraceFormat::AdaptSize)),
        ("/tmp/loop.trace.gz", None),
        ("lirs", None),
    ];
    for (path, expected) in cases {
        assert_eq!(TraceFormat::guess(Path::new(path)), expected, "{path}");
    }
}

// ---- Zipf ---------------------------------------------------------------

#[test]
fn zipf_traces_are_deterministic_per_seed() {
    let a = zipf_trace(0.9, 1_000, 10_000, 3).unwrap();
    assert_eq!(a, zipf_trace(0.9, 1_000, 10_000, 3).unwrap());
    assert_ne!(a, zipf_trace(0.9, 1_000, 10_000, 4).unwrap());
    assert!(a.iter().all(|&key| key < 1_000));
}

#[test]
fn zipf_rank_zero_has_frequency_one_over_the_harmonic_number() {
    let (keys, requests) = (1_000_u64, 200_000);
    for alpha in [0.7, 1.0, 1.3] {
        let trace = zipf_trace(alpha, keys, requests, 11).unwrap();
        let harmonic: f64 = (1..=keys).map(|rank| (rank as f64).powf(-alpha)).sum();
        let expected = 1.0 / harmonic;
        let observed = trace.iter().filter(|&&key| key == 0).count() as f64 / requests as f64;
        assert!(
            (observed - expected).abs() < 0.01,
            "alpha {alpha}: rank 0 drawn {observed:.4}, expected {expected:.4}"
        );
    }
}

#[test]
fn zipf_refuses_a_non_positive_exponent_or_no_keys() {
    for alpha in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let err = zipf_trace(alpha, 10, 10, 0).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "alpha {alpha}");
    }
    assert_eq!(
        zipf_trace(1.0, 0, 10, 0).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(zipf_trace(1.0, 1, 5, 0).unwrap(), [0; 5]);
}

// ---- replay -------------------------------------------------------------

#[test]
fn a_loop_one_key_larger_than_the_cache_always_misses_under_lru_and_fifo() {
    let capacity = 100;
    let trace: Vec<u64> = (0..50 * (capacity + 1))
        .map(|i| i % (capacity + 1))
        .collect();
    for policy in [Policy::Lru, Policy::Fifo] {
        let result = simulate(&trace, policy, capacity);
        assert_eq!(result.hits, 0, "{policy}");
        assert_eq!(result.misses, trace.len() as u64, "{policy}");
        assert_eq!(result.miss_ratio(), 1.0, "{policy}");
    }
}

#[test]
fn a_single_repeated_key_misses_once() {
    let trace = vec![42; 1_000];
    for policy in Policy::ALL {
        let result = simulate(&trace, policy, 10);
        assert_eq!((result.hits, result.misses), (999, 1), "{policy}");
    }
}

#[test]
fn hits_and_misses_add_up_to_the_requests_under_every_policy() {
    let trace = zipf_trace(0.8, 5_000, 50_000, 5).unwrap();
    for policy in Policy::ALL {
        for capacity in [0, 1, 50, 500, 10_000] {
            let result = simulate(&trace, policy, capacity);
            assert_eq!(result.requests, 50_000);
            assert_eq!(result.hits + result.misses, result.requests, "{policy}");
            assert!((result.hit_ratio() + result.miss_ratio() - 1.0).abs() < 1e-12);
        }
    }
}

#[test]
fn a_cache_larger_than_the_key_space_misses_only_cold() {
    let trace = zipf_trace(1.0, 1_000, 50_000, 9).unwrap();
    let cold = distinct_keys(&trace);
    for policy in Policy::ALL {
        assert_eq!(simulate(&trace, policy, 1_000).misses, cold, "{policy}");
    }
}

#[test]
fn s3fifo_and_sieve_beat_fifo_on_zipf_at_one_percent() {
    let trace = zipf_trace(1.0, 100_000, 1_000_000, 1).unwrap();
    let fifo = simulate(&trace, Policy::Fifo, 1_000).miss_ratio();
    for policy in [Policy::S3Fifo, Policy::Sieve] {
        let miss_ratio = simulate(&trace, policy, 1_000).miss_ratio();
        assert!(
            miss_ratio < fifo,
            "{policy} {miss_ratio:.4} vs fifo {fifo:.4}"
        );
    }
}

#[test]
fn the_grid_matches_single_runs_in_capacity_then_policy_order() {
    let trace = zipf_trace(1.0, 2_000, 100_000, 2).unwrap();
    let policies = [Policy::S3Fifo, Policy::Lru, Policy::Sieve];
    let capacities = [20, 200];
    let progress = AtomicU64::new(0);
    let results = simulate_grid(&trace, &policies, &capacities, &|done| {
        progress.fetch_add(done, Ordering::Relaxed);
    });
    let expected: Vec<_> = capacities
        .iter()
        .flat_map(|&capacity| policies.iter().map(move |&policy| (policy, capacity)))
        .map(|(policy, capacity)| simulate(&trace, policy, capacity))
        .collect();
    assert_eq!(results, expected);
    assert_eq!(progress.into_inner(), 6 * trace.len() as u64);
}

#[test]
fn an_empty_grid_or_trace_gives_what_it_was_asked() {
    assert!(simulate_grid(&[1, 2], &[], &[10], &|_| {}).is_empty());
    let results = simulate_grid(&[], &Policy::ALL, &[10], &|_| {});
    assert_eq!(results.len(), 4);
    assert!(
        results
            .iter()
            .all(|r| r.requests == 0 && r.miss_ratio() == 0.0)
    );
}

#[test]
fn results_serialize_with_the_policy_name_and_ratios() {
    let result = simulate(&[1, 1, 2, 1], Policy::S3Fifo, 10);
    // Any serde format will do; toml is at hand.
    let value = toml::Value::try_from(result).unwrap();
    assert_eq!(value["policy"].as_str(), Some("s3fifo"));
    assert_eq!(value["hits"].as_integer(), Some(2));
    assert_eq!(value["miss_ratio"].as_float(), Some(0.5));
}

#[test]
fn s3fifo_keeps_part_of_a_loop_larger_than_the_cache() {
    // 50 passes over 400 keys through a cache of 200: every recency or
    // FIFO policy evicts each key before it comes back and never hits.
    // S3-FIFO's admission sketch keeps a stable part of the loop in its
    // main queue (at most 200 of 400 keys, so at most half the requests).
    let trace: Vec<u64> = (0..50).flat_map(|_| 0..400u64).collect();
    let lru = simulate(&trace, Policy::Lru, 200);
    assert_eq!(lru.hits, 0, "{lru:?}");
    let s3fifo = simulate(&trace, Policy::S3Fifo, 200);
    assert!(s3fifo.hit_ratio() > 0.3, "{s3fifo:?}");
    assert!(s3fifo.hit_ratio() <= 0.5, "{s3fifo:?}");
}

#[test]
fn simulations_repeat_exactly() {
    let trace = zipf_trace(0.9, 5_000, 50_000, 3).unwrap();
    for policy in Policy::ALL {
        assert_eq!(
            simulate(&trace, policy, 300),
            simulate(&trace, policy, 300),
            "{policy:?}"
        );
    }
}
