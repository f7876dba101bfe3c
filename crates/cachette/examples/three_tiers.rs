//! A three-tier cache: memory in each process, a shared Redis, and S3 (or
//! any S3-compatible store) for what is large and expensive, kept
//! coherent by the Redis invalidation channel; configured from TOML.
//!
//! ```sh
//! AWS_ACCESS_KEY_ID=… AWS_SECRET_ACCESS_KEY=… \
//! cargo run -p cachette --example three_tiers --features tiered,redis,s3 -- \
//!     redis://127.0.0.1:6379/0 's3://bucket/cache?region=eu-west-1'
//! ```
//!
//! A read that misses memory and Redis is filled from S3 into both, with
//! the entry's remaining TTL; a write goes to S3, then Redis, then memory,
//! and tells the other processes to drop their memory copies.

use std::time::{Duration, Instant};

use cachette::{CacheManager, SetOptions};

#[tokio::main]
async fn main() -> cachette::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(redis), Some(s3)) = (args.next(), args.next()) else {
        eprintln!("usage: three_tiers REDIS_URL S3_URL");
        std::process::exit(2);
    };
    // The channel takes the server alone, without the cache's parameters.
    let server = redis.split('?').next().unwrap_or(&redis);
    let toml = format!(
        r#"
        [caches.reports]
        l1 = "memory://?max_entries=10000"
        l2 = "{redis}"
        l3 = "{s3}"
        l1_ttl = "60s"
        channel = "{server}"
        "#
    );
    let manager = CacheManager::from_toml_str(&toml)?.build().await?;
    let reports = manager.get("reports")?;

    let report = vec![b'x'; 4 << 20];
    let started = Instant::now();
    reports
        .set(
            "report:2026-12",
            report.into(),
            &SetOptions::new().ttl(Duration::from_secs(3600)),
        )
        .await?;
    println!("written to S3, Redis and memory in {:?}", started.elapsed());

    let started = Instant::now();
    let value = reports.get("report:2026-12").await?;
    println!(
        "read back {} bytes from memory in {:?}",
        value.map_or(0, |v| v.len()),
        started.elapsed()
    );
    manager.close().await
}
