//! Runs the near-cache harness (`--bin near`) at its smallest scale against
//! the `redis-server` it starts itself, and checks the shape of its JSON:
//! every measurement is there and every read found its value. No timing is
//! asserted; the numbers of a debug build mean nothing.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

#[test]
fn quick_run_reports_latency_throughput_and_invalidation() {
    let json = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("near-quick.json");
    let _ = std::fs::remove_file(&json);
    let output = Command::new(env!("CARGO_BIN_EXE_near"))
        .args(["--quick", "--rounds", "1", "--seconds", "0.05", "--json"])
        .arg(&json)
        .output()
        .expect("the near harness starts");
    assert!(
        output.status.success(),
        "the near harness failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let markdown = String::from_utf8_lossy(&output.stdout);
    assert!(
        markdown.starts_with("# cachette-bench: near cache"),
        "{markdown}"
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON is written"))
            .expect("the JSON parses");

    for side in [
        "near_get",
        "near_get_ready",
        "redis_backend_get",
        "redis_rs_cache_aio_get",
    ] {
        let ops = report["hit_latency"][side]["ops"].as_u64();
        assert!(ops.is_some_and(|n| n > 0), "hit_latency.{side}: {ops:?}");
    }
    for ratio in ["near_over_redis_backend", "near_over_redis_rs_cache_aio"] {
        let median = report["throughput"][ratio]["median"].as_f64();
        assert!(
            median.is_some_and(|r| r > 0.0),
            "throughput.{ratio}: {median:?}"
        );
    }
    for side in ["invalidation", "redis_rs_cache_aio_invalidation"] {
        let part = &report[side];
        assert!(
            part["after_ack"]["ops"].as_u64().is_some_and(|n| n > 0),
            "{side}: {part}"
        );
        assert_eq!(part["stale_reads"].as_u64(), Some(0), "{side}: {part}");
        assert_eq!(part["timeouts"].as_u64(), Some(0), "{side}: {part}");
    }
}
