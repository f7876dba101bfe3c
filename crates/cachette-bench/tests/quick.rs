//! Runs the built harness at its smallest scale and checks the shape of
//! `bench.json`: every part, every cache, every throughput case. No timing
//! is asserted; the numbers of a debug build mean nothing.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn run_tiny() -> Value {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cachette-bench-quick");
    let _ = std::fs::remove_dir_all(&out);
    let output = Command::new(env!("CARGO_BIN_EXE_cachette-bench"))
        .args(["--quick", "--scale", "tiny", "--out"])
        .arg(&out)
        .output()
        .expect("the harness starts");
    assert!(
        output.status.success(),
        "the harness failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let markdown = String::from_utf8_lossy(&output.stdout);
    assert!(markdown.starts_with("# cachette-bench"), "{markdown}");
    assert_eq!(
        std::fs::read_to_string(out.join("bench.md")).expect("bench.md is written"),
        markdown
    );
    let json = std::fs::read_to_string(out.join("bench.json")).expect("bench.json is written");
    serde_json::from_str(&json).expect("bench.json parses")
}

fn names(values: &Value, field: &str) -> Vec<String> {
    values
        .as_array()
        .expect("an array")
        .iter()
        .map(|v| v[field].as_str().expect("a string").to_owned())
        .collect()
}

#[test]
fn tiny_run_writes_every_section_for_every_cache() {
    let report = run_tiny();

    assert!(report["machine"]["nproc"].as_u64().is_some_and(|n| n > 0));
    assert!(report["date"].as_str().is_some_and(|d| d.ends_with('Z')));

    let hit = &report["hit_ratio"];
    let caches: Vec<&str> = hit["caches"]
        .as_array()
        .expect("hit_ratio.caches")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for cache in [
        "cachette/lru",
        "cachette/fifo",
        "cachette/sieve",
        "cachette/s3fifo",
        "moka",
        "quick_cache",
        "lru",
    ] {
        assert!(caches.contains(&cache), "{cache} missing from {caches:?}");
    }
    let cases = hit["cases"].as_array().expect("hit_ratio.cases");
    let zipf = cases.iter().filter(|c| c["kind"] == "zipf").count();
    assert_eq!(zipf, 6, "3 exponents × 2 capacities");
    for case in cases {
        for cache in &caches {
            let ratio = case["hit_ratio"][cache].as_f64().expect("a hit ratio");
            assert!((0.0..=1.0).contains(&ratio), "{cache}: {ratio}");
        }
    }

    let throughput = report["throughput"]["cases"]
        .as_array()
        .expect("throughput.cases");
    let workloads: Vec<(String, u64)> = throughput
        .iter()
        .map(|c| {
            let workload = c["workload"].as_str().expect("a workload").to_owned();
            (workload, c["threads"].as_u64().expect("threads"))
        })
        .collect();
    for workload in ["get-hit 64 B", "get-hit 4 KiB", "mix 90/10"] {
        for threads in [1, 2] {
            assert!(
                workloads.contains(&(workload.to_owned(), threads)),
                "{workload} at {threads} threads missing from {workloads:?}"
            );
        }
    }
    for case in throughput {
        let caches = names(&case["caches"], "cache");
        assert!(caches.contains(&"moka".to_owned()), "{caches:?}");
        assert!(caches.contains(&"quick_cache".to_owned()), "{caches:?}");
        let versus = names(&case["ratios"], "versus");
        assert!(versus.contains(&"moka".to_owned()), "{versus:?}");
        assert!(versus.contains(&"quick_cache".to_owned()), "{versus:?}");
    }

    let memory = &report["memory"]["caches"];
    let caches = names(memory, "cache");
    for cache in ["HashMap", "cachette/s3fifo", "moka", "quick_cache", "lru"] {
        assert!(caches.contains(&cache.to_owned()), "{cache} missing");
    }
    for cache in memory.as_array().expect("memory.caches") {
        assert!(cache["bytes_per_entry"].as_f64().is_some_and(|b| b > 80.0));
    }
}
