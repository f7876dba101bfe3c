//! `stats`, `health`, and what unsupported operations answer.

use super::Outcome;
use super::scope::Scope;
use crate::backend::{Backend, Expiry};
use crate::error::ErrorKind;

/// `stats` moves with reads: two hits and three misses raise `hits` and
/// `misses` by at least that much (other work may share the backend), and
/// `hit_ratio` is `hits / (hits + misses)`, within `0..=1`. A backend that
/// does not count reads at all (both stay 0) passes.
pub async fn stats_counters(subject: &dyn Backend) -> Outcome {
    let s = Scope::new(subject, "stats_counters");
    let (present, missing) = (s.key("present"), s.key("missing"));
    s.put(subject, &present, b"v").await;
    let before = s.ok(subject.stats().await, "stats");
    for _ in 0..2 {
        assert!(
            s.get(subject, &present).await.is_some(),
            "{s}: get of a present key"
        );
    }
    for _ in 0..3 {
        assert!(
            s.get(subject, &missing).await.is_none(),
            "{s}: get of a missing key"
        );
    }
    let after = s.ok(subject.stats().await, "stats");
    let counts_reads = after.hits != 0 || after.misses != 0;
    if counts_reads {
        assert!(
            after.hits >= before.hits + 2,
            "{s}: two hits must raise stats.hits by at least 2 (from {} to {})",
            before.hits,
            after.hits
        );
        assert!(
            after.misses >= before.misses + 3,
            "{s}: three misses must raise stats.misses by at least 3 (from {} to {})",
            before.misses,
            after.misses
        );
    }
    for stats in [&before, &after] {
        let ratio = stats.hit_ratio();
        assert!(
            (0.0..=1.0).contains(&ratio),
            "{s}: hit_ratio must be within 0..=1, found {ratio}"
        );
        let reads = stats.hits + stats.misses;
        if reads > 0 {
            let expected = stats.hits as f64 / reads as f64;
            assert!(
                (ratio - expected).abs() < 1e-9,
                "{s}: hit_ratio must be hits / (hits + misses)"
            );
        }
    }
    s.cleanup(subject).await;
    Outcome::Passed
}

/// `health` answers Ok.
pub async fn health(subject: &dyn Backend) -> Outcome {
    let s = Scope::new(subject, "health");
    s.ok(subject.health().await, "health");
    Outcome::Passed
}

/// Every optional operation that the capabilities say is unsupported
/// (`tags`, `key_listing`, `ttl_inspection`) fails with
/// [`ErrorKind::Unsupported`] instead of pretending. (`clear` is never
/// called here, in case a backend clears despite its capabilities.)
pub async fn unsupported_operations(subject: &dyn Backend) -> Outcome {
    let caps = subject.capabilities();
    let s = Scope::new(subject, "unsupported_operations");
    let key = s.key("k");
    let tag = s.tag("t");
    let kind = ErrorKind::Unsupported;
    if !caps.tags {
        s.fails(
            subject.invalidate_tags(&[tag.as_str()]).await,
            kind,
            "invalidate_tags when tags is false",
        );
    }
    if !caps.key_listing {
        let pattern = format!("{}*", crate::glob::escape(s.prefix()));
        s.fails(
            subject.keys(&pattern).await.map(|_| ()),
            kind,
            "keys when key_listing is false",
        );
    }
    if !caps.ttl_inspection {
        s.fails(
            subject.ttl(&key).await,
            kind,
            "ttl when ttl_inspection is false",
        );
        s.fails(
            subject.touch(&key, Expiry::Never).await,
            kind,
            "touch when ttl_inspection is false",
        );
    }
    s.cleanup(subject).await;
    Outcome::Passed
}
