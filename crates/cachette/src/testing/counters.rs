//! `incr` and `decr`.

use bytes::Bytes;
use tokio::time::Instant;

use super::Outcome;
use super::scope::{LONG_TTL, Scope, Timing};
use crate::backend::{Backend, Expiry, KeyTtl, SetOptions};
use crate::error::ErrorKind;

/// `incr` creates a missing key at `0 + delta`, adds negative deltas,
/// `decr` subtracts, and the stored value reads back as ASCII decimal
/// (`b"5"`, `b"-2"`).
pub async fn incr_decr(subject: &dyn Backend) -> Outcome {
    let s = Scope::new(subject, "incr_decr");
    let (counter, down) = (s.key("counter"), s.key("down"));
    let steps: [(&str, i64, i64, &[u8]); 6] = [
        ("incr", 5, 5, b"5"),
        ("incr", -7, -2, b"-2"),
        ("decr", 3, -5, b"-5"),
        ("decr", -10, 5, b"5"),
        ("incr", 0, 5, b"5"),
        (
            "incr",
            1_000_000_000_000,
            1_000_000_000_005,
            b"1000000000005",
        ),
    ];
    for (op, delta, expected, stored) in steps {
        let result = if op == "incr" {
            subject.incr(&counter, delta, Expiry::Default).await
        } else {
            subject.decr(&counter, delta, Expiry::Default).await
        };
        let value = s.ok(result, format_args!("{op}({counter:?}, {delta})"));
        assert_eq!(
            value, expected,
            "{s}: {op} by {delta} must return the new value"
        );
        assert_eq!(
            s.get(subject, &counter).await.as_deref(),
            Some(stored),
            "{s}: after {op} by {delta} the counter must read back as ASCII decimal"
        );
    }
    let value = s.ok(
        subject.decr(&down, 4, Expiry::Default).await,
        "decr of a missing key",
    );
    assert_eq!(value, -4, "{s}: decr of a missing key must start from 0");
    assert_eq!(
        s.get(subject, &down).await.as_deref(),
        Some(&b"-4"[..]),
        "{s}: a counter created by decr"
    );

    s.put(subject, &down, b"41").await;
    let value = s.ok(
        subject.incr(&down, 1, Expiry::Default).await,
        "incr of a value written by set",
    );
    assert_eq!(
        value, 42,
        "{s}: incr must count on from a decimal value written by set"
    );
    s.cleanup(subject).await;
    Outcome::Passed
}

/// `incr` of a value that is not a decimal `i64` fails with
/// [`ErrorKind::NotAnInteger`]; leaving the `i64` range fails with
/// [`ErrorKind::Overflow`]. Neither changes the stored value.
pub async fn incr_errors(subject: &dyn Backend) -> Outcome {
    let s = Scope::new(subject, "incr_errors");
    let not_integers: [&'static [u8]; 8] = [
        b"abc",
        b"",
        b" 1",
        b"1 ",
        b"+1",
        b"1.5",
        b"0x10",
        b"\xff\xfe",
    ];
    for (i, value) in not_integers.into_iter().enumerate() {
        let key = s.key(&format!("text{i}"));
        s.put(subject, &key, value).await;
        s.fails(
            subject.incr(&key, 1, Expiry::Default).await,
            ErrorKind::NotAnInteger,
            format_args!("incr of the value {:?}", Bytes::from_static(value)),
        );
        assert_eq!(
            s.get(subject, &key).await.as_deref(),
            Some(value),
            "{s}: a failed incr must leave the value {:?} unchanged",
            Bytes::from_static(value)
        );
    }

    let max = s.key("max");
    let max_text = i64::MAX.to_string();
    s.ok(
        subject
            .set(&max, max_text.clone().into(), &SetOptions::new())
            .await,
        "set of i64::MAX",
    );
    s.fails(
        subject.incr(&max, 1, Expiry::Default).await,
        ErrorKind::Overflow,
        "incr of i64::MAX by 1",
    );
    s.fails(
        subject.decr(&max, -1, Expiry::Default).await,
        ErrorKind::Overflow,
        "decr of i64::MAX by -1",
    );
    assert_eq!(
        s.get(subject, &max).await.as_deref(),
        Some(max_text.as_bytes()),
        "{s}: an overflowing incr must leave the value unchanged"
    );

    let min = s.key("min");
    let min_text = i64::MIN.to_string();
    s.ok(
        subject
            .set(&min, min_text.clone().into(), &SetOptions::new())
            .await,
        "set of i64::MIN",
    );
    s.fails(
        subject.incr(&min, -1, Expiry::Default).await,
        ErrorKind::Overflow,
        "incr of i64::MIN by -1",
    );
    s.fails(
        subject.decr(&min, 1, Expiry::Default).await,
        ErrorKind::Overflow,
        "decr of i64::MIN by 1",
    );
    assert_eq!(
        s.get(subject, &min).await.as_deref(),
        Some(min_text.as_bytes()),
        "{s}: an overflowing decr must leave the value unchanged"
    );

    let zero = s.key("zero");
    s.put(subject, &zero, b"0").await;
    s.fails(
        subject.decr(&zero, i64::MIN, Expiry::Default).await,
        ErrorKind::Overflow,
        "decr of 0 by i64::MIN",
    );
    assert_eq!(
        s.get(subject, &zero).await.as_deref(),
        Some(&b"0"[..]),
        "{s}: a failed decr must leave 0 unchanged"
    );
    s.cleanup(subject).await;
    Outcome::Passed
}

/// A missing counter is created with the `expiry` given; an existing
/// counter keeps its own deadline (or lack of one) whatever `expiry` says,
/// and its tags.
pub async fn incr_keeps_ttl(subject: &dyn Backend) -> Outcome {
    let caps = subject.capabilities();
    if !caps.ttl_inspection {
        return Outcome::Skipped("ttl_inspection is false");
    }
    let timing = Timing::of(&caps);
    let s = Scope::new(subject, "incr_keeps_ttl");
    let (expiring, persistent, fresh, fresh_never) = (
        s.key("expiring"),
        s.key("persistent"),
        s.key("fresh"),
        s.key("fresh-never"),
    );

    let started = Instant::now();
    s.ok(
        subject
            .set(&expiring, "1".into(), &SetOptions::new().ttl(LONG_TTL))
            .await,
        "set with a 10 s TTL",
    );
    s.ok(
        subject
            .set(
                &persistent,
                "1".into(),
                &SetOptions::new().expiry(Expiry::Never),
            )
            .await,
        "set with Expiry::Never",
    );

    let value = s.ok(
        subject.incr(&expiring, 1, Expiry::Never).await,
        "incr of an expiring counter",
    );
    assert_eq!(value, 2, "{s}: incr of an expiring counter");
    let found = s.ok(subject.ttl(&expiring).await, "ttl");
    s.assert_expires_in(
        found,
        LONG_TTL,
        started.elapsed(),
        timing.slack,
        "an expiring counter after incr with Expiry::Never",
    );

    let value = s.ok(
        subject.incr(&persistent, 1, Expiry::After(LONG_TTL)).await,
        "incr of a persistent counter",
    );
    assert_eq!(value, 2, "{s}: incr of a persistent counter");
    assert_eq!(
        s.ok(subject.ttl(&persistent).await, "ttl"),
        KeyTtl::Persistent,
        "{s}: a persistent counter must stay Persistent after incr with a TTL"
    );

    let before = Instant::now();
    s.ok(
        subject.incr(&fresh, 1, Expiry::After(LONG_TTL)).await,
        "incr of a missing key with a 10 s TTL",
    );
    let found = s.ok(subject.ttl(&fresh).await, "ttl");
    s.assert_expires_in(
        found,
        LONG_TTL,
        before.elapsed(),
        timing.slack,
        "a counter created by incr with a 10 s TTL",
    );
    s.ok(
        subject.incr(&fresh_never, 1, Expiry::Never).await,
        "incr of a missing key with Expiry::Never",
    );
    assert_eq!(
        s.ok(subject.ttl(&fresh_never).await, "ttl"),
        KeyTtl::Persistent,
        "{s}: a counter created by incr with Expiry::Never must be Persistent"
    );

    if caps.tags {
        let (tagged, tag) = (s.key("tagged"), s.tag("counter"));
        let options = SetOptions::new().expiry(Expiry::Never).tags([tag.as_str()]);
        s.ok(
            subject.set(&tagged, "1".into(), &options).await,
            "set of a tagged counter",
        );
        s.ok(
            subject.incr(&tagged, 1, Expiry::Default).await,
            "incr of a tagged counter",
        );
        let removed = s.ok(
            subject.invalidate_tags(&[tag.as_str()]).await,
            "invalidate_tags",
        );
        // A backend that cannot count what it invalidates answers 0.
        let expected = u64::from(caps.counts_invalidations);
        assert_eq!(
            removed, expected,
            "{s}: incr must keep the tags of an existing counter"
        );
        assert_eq!(
            s.get(subject, &tagged).await,
            None,
            "{s}: incr must keep the tags of an existing counter"
        );
    }
    s.cleanup(subject).await;
    Outcome::Passed
}
