//! The conformance suite against the memory backend: default, bounded by
//! entries under each eviction policy, bounded by bytes, and with a default
//! TTL. Each subject gets an independent memory instance as its sibling.
//!
//! Run with `cargo test -p cachette --all-features --test conformance_memory`.

#![cfg(all(feature = "testing", feature = "memory"))]

use std::sync::Arc;
use std::time::Duration;

use cachette::testing::{Conformance, Report, run_conformance};
use cachette::{Backend, MemoryBackend, Policy};

fn sibling() -> Option<Arc<dyn Backend>> {
    Some(Arc::new(MemoryBackend::default()))
}

/// Every check applies to the memory backend, except the value size limit
/// when it has no byte bound.
fn assert_skipped_only(report: &Report, expected: &[&str]) {
    println!("{report}");
    let skipped: Vec<&str> = report.skipped().map(|(check, _)| check).collect();
    assert_eq!(skipped, expected, "{report}");
}

fn assert_nothing_skipped(report: &Report) {
    assert_skipped_only(report, &[]);
}

const UNBOUNDED_VALUES: &[&str] = &["value_size_limit"];

async fn bounded_by_entries_conforms(policy: Policy) {
    let subject = MemoryBackend::builder()
        .max_entries(100_000)
        .policy(policy)
        .build()
        .expect("a bounded memory backend builds");
    let report = run_conformance(Arc::new(subject), sibling()).await;
    assert_skipped_only(&report, UNBOUNDED_VALUES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_memory_backend_conforms() {
    let report = run_conformance(Arc::new(MemoryBackend::default()), sibling()).await;
    assert_skipped_only(&report, UNBOUNDED_VALUES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lru_bounded_by_entries_conforms() {
    bounded_by_entries_conforms(Policy::Lru).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_bounded_by_entries_conforms() {
    bounded_by_entries_conforms(Policy::Fifo).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sieve_bounded_by_entries_conforms() {
    bounded_by_entries_conforms(Policy::Sieve).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3fifo_bounded_by_entries_conforms() {
    bounded_by_entries_conforms(Policy::S3Fifo).await;
}

#[test]
fn every_policy_has_a_bounded_conformance_test() {
    // Keeps the four tests above in step with `Policy::ALL`.
    assert_eq!(
        Policy::ALL,
        [Policy::Lru, Policy::Fifo, Policy::Sieve, Policy::S3Fifo]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_backend_bounded_by_bytes_conforms() {
    let subject = MemoryBackend::builder()
        .max_bytes(64 << 20)
        .build()
        .expect("a memory backend bounded by bytes builds");
    let report = run_conformance(Arc::new(subject), sibling()).await;
    assert_nothing_skipped(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_backend_with_a_default_ttl_conforms() {
    let ttl = Duration::from_secs(60);
    let subject = MemoryBackend::builder()
        .default_ttl(ttl)
        .build()
        .expect("a memory backend with a default TTL builds");
    let report = Conformance::new(Arc::new(subject))
        .sibling(Arc::new(MemoryBackend::default()))
        .default_ttl(ttl)
        .run()
        .await;
    assert_skipped_only(&report, UNBOUNDED_VALUES);
}
