//! TTLs: precision, the three `KeyTtl` states, expiry, `touch`, zero and
//! sub-millisecond TTLs, `Expiry::Default` against `Expiry::Never`.

use std::time::Duration;

use bytes::Bytes;
use tokio::time::{Instant, sleep_until};

use super::Outcome;
use super::scope::{LONG_TTL, Scope, Timing};
use crate::backend::{Backend, Expiry, KeyTtl, SetOptions, TtlPrecision};
use crate::error::ErrorKind;
use crate::glob;

/// `ttl` tells a missing key (`Missing`), a key without expiry
/// (`Persistent`) and an expiring one (`ExpiresIn(d)`, `0 < d <= ttl`)
/// apart.
pub async fn ttl_states(subject: &dyn Backend) -> Outcome {
    let caps = subject.capabilities();
    if !caps.ttl_inspection {
        return Outcome::Skipped("ttl_inspection is false");
    }
    let timing = Timing::of(&caps);
    let s = Scope::new(subject, "ttl_states");
    let (missing, persistent, expiring) =
        (s.key("missing"), s.key("persistent"), s.key("expiring"));

    assert_eq!(
        s.ok(subject.ttl(&missing).await, "ttl of a missing key"),
        KeyTtl::Missing,
        "{s}: ttl of a missing key"
    );
    s.ok(
        subject
            .set(
                &persistent,
                "v".into(),
                &SetOptions::new().expiry(Expiry::Never),
            )
            .await,
        "set with Expiry::Never",
    );
    assert_eq!(
        s.ok(
            subject.ttl(&persistent).await,
            "ttl of a key set with Expiry::Never"
        ),
        KeyTtl::Persistent,
        "{s}: ttl of a key set with Expiry::Never"
    );
    let before = Instant::now();
    s.ok(
        subject
            .set(&expiring, "v".into(), &SetOptions::new().ttl(LONG_TTL))
            .await,
        "set with a 10 s TTL",
    );
    let found = s.ok(
        subject.ttl(&expiring).await,
        "ttl of a key set with a 10 s TTL",
    );
    s.assert_expires_in(
        found,
        LONG_TTL,
        before.elapsed(),
        timing.slack,
        "a key set with a 10 s TTL",
    );
    s.cleanup(subject).await;
    Outcome::Passed
}

/// The key of `probe` among `keys`, named in the same order as `probes`.
fn key_of<'a>(keys: &'a [String], probes: &[&str], probe: &str) -> &'a String {
    &keys[probes.iter().position(|p| *p == probe).unwrap_or(0)]
}

/// A key with a short TTL (150 ms with millisecond precision) is there
/// before its deadline and gone after it, for every operation: `get`,
/// `exists`, `ttl`, `delete`, `touch`, conditional sets, `incr`, `keys`,
/// `invalidate_tags` (each probed first on its own key, so that no read
/// removes the entry before the operation under test sees it).
/// `purge_expired` removes expired entries and keeps live ones.
pub async fn ttl_expiry(subject: &dyn Backend) -> Outcome {
    let caps = subject.capabilities();
    if !caps.native_ttl {
        return Outcome::Skipped("native_ttl is false");
    }
    let timing = Timing::of(&caps);
    let s = Scope::new(subject, "ttl_expiry");
    let tag = s.tag("expiring");
    let probes = [
        "get",
        "exists",
        "ttl",
        "delete",
        "touch",
        "if_absent",
        "if_present",
        "incr",
        "keys",
        "tags",
        "purge",
    ];
    let keys: Vec<String> = probes.iter().map(|p| s.key(p)).collect();
    let key = |probe: &str| key_of(&keys, &probes, probe);
    let live = s.key("live");
    let persistent = s.key("persistent");

    let options = if caps.tags {
        SetOptions::new().ttl(timing.short).tags([tag.as_str()])
    } else {
        SetOptions::new().ttl(timing.short)
    };
    let started = Instant::now();
    let mut ttl_probe_written = started;
    for key in &keys {
        let value = if key.ends_with(":incr") { "40" } else { "v" };
        if key == key_of(&keys, &probes, "ttl") {
            ttl_probe_written = Instant::now();
        }
        let written = s.ok(
            subject.set(key, value.into(), &options).await,
            format_args!("set({key:?}) with a short TTL"),
        );
        assert!(written, "{s}: set with a TTL must return true");
    }
    let written_by = started.elapsed();
    s.ok(
        subject
            .set(&live, "v".into(), &SetOptions::new().ttl(LONG_TTL))
            .await,
        "set with a 10 s TTL",
    );
    s.ok(
        subject
            .set(
                &persistent,
                "v".into(),
                &SetOptions::new().expiry(Expiry::Never),
            )
            .await,
        "set with Expiry::Never",
    );

    if caps.ttl_inspection {
        let found = s.ok(subject.ttl(key("ttl")).await, "ttl right after set");
        s.assert_expires_in_unless_late(
            found,
            timing.short,
            ttl_probe_written,
            timing.slack,
            "right after a set with a short TTL",
        );
    }

    sleep_until(started + timing.check_at).await;
    for key in &keys {
        let found = s.get(subject, key).await;
        // A late read (a busy machine) may legitimately find nothing.
        if found.is_none() {
            assert!(
                started.elapsed() + timing.slack >= timing.short,
                "{s}: {key:?} with a {:?} TTL vanished after only {:?}",
                timing.short,
                started.elapsed()
            );
        }
    }

    sleep_until(started + written_by + timing.gone_by).await;
    let gone = |what: &str| format!("{s}: {what} of a key whose TTL ran out");
    assert_eq!(s.get(subject, key("get")).await, None, "{}", gone("get"));
    assert!(
        !s.ok(subject.exists(key("exists")).await, "exists"),
        "{}",
        gone("exists")
    );
    if caps.ttl_inspection {
        assert_eq!(
            s.ok(subject.ttl(key("ttl")).await, "ttl"),
            KeyTtl::Missing,
            "{}",
            gone("ttl")
        );
        let touched = s.ok(
            subject.touch(key("touch"), Expiry::After(LONG_TTL)).await,
            "touch",
        );
        assert!(!touched, "{}", gone("touch (it must return false)"));
        assert_eq!(
            s.get(subject, key("touch")).await,
            None,
            "{}",
            gone("touch (it must not revive it)")
        );
    }
    assert!(
        !s.ok(subject.delete(key("delete")).await, "delete"),
        "{}",
        gone("delete (it must return false)")
    );
    let written = s.ok(
        subject
            .set(
                key("if_absent"),
                "new".into(),
                &SetOptions::new().if_absent(),
            )
            .await,
        "set if_absent",
    );
    assert!(written, "{}", gone("set if_absent (it must write)"));
    let written = s.ok(
        subject
            .set(
                key("if_present"),
                "new".into(),
                &SetOptions::new().if_present(),
            )
            .await,
        "set if_present",
    );
    assert!(!written, "{}", gone("set if_present (it must not write)"));
    assert_eq!(
        s.get(subject, key("if_present")).await,
        None,
        "{}",
        gone("set if_present")
    );
    assert_eq!(
        s.ok(subject.incr(key("incr"), 2, Expiry::Never).await, "incr"),
        2,
        "{}",
        gone("incr (it must start again from 0)")
    );
    if caps.key_listing {
        let pattern = format!("{}*", glob::escape(s.prefix()));
        let listed = s.keys(subject, &pattern).await;
        assert!(
            !listed.contains(key("keys")),
            "{}: listed {listed:?}",
            gone("keys")
        );
        assert!(
            listed.contains(&live),
            "{s}: keys must list a live key, listed {listed:?}"
        );
    }
    if caps.tags {
        let removed = s.ok(
            subject.invalidate_tags(&[tag.as_str()]).await,
            "invalidate_tags",
        );
        // Only `if_absent` was rewritten (without the tag) and `incr`
        // recreated: every tagged entry has expired, none is counted.
        assert_eq!(
            removed, 0,
            "{s}: invalidate_tags must not count entries whose TTL ran out (they are already gone)"
        );
    }
    s.ok(subject.purge_expired().await, "purge_expired");
    assert_eq!(
        s.get(subject, key("purge")).await,
        None,
        "{}",
        gone("purge_expired then get")
    );
    assert!(
        s.get(subject, &live).await.is_some(),
        "{s}: purge_expired must keep a key with a 10 s TTL"
    );
    assert!(
        s.get(subject, &persistent).await.is_some(),
        "{s}: purge_expired must keep a key without expiry"
    );
    s.cleanup(subject).await;
    Outcome::Passed
}

/// A TTL below one millisecond (300 µs) is accepted by `set`, `touch` and
/// `incr`, rounded up: the key expires soon, never "no expiry".
pub async fn sub_millisecond_ttl(subject: &dyn Backend) -> Outcome {
    let caps = subject.capabilities();
    let timing = Timing::of(&caps);
    let tiny = Duration::from_micros(300);
    let rounded = match caps.ttl_precision {
        TtlPrecision::Milliseconds => Duration::from_millis(1),
        _ => Duration::from_secs(1),
    };
    let s = Scope::new(subject, "sub_millisecond_ttl");
    let (set_key, touch_key, incr_key) = (s.key("set"), s.key("touch"), s.key("incr"));

    let written = s.ok(
        subject
            .set(&set_key, "v".into(), &SetOptions::new().ttl(tiny))
            .await,
        "set with a 300 µs TTL",
    );
    assert!(written, "{s}: set with a 300 µs TTL must return true");
    s.ok(
        subject.incr(&incr_key, 1, Expiry::After(tiny)).await,
        "incr of a missing key with a 300 µs TTL",
    );
    if caps.ttl_inspection {
        s.put(subject, &touch_key, b"v").await;
        let touched = s.ok(
            subject.touch(&touch_key, Expiry::After(tiny)).await,
            "touch with a 300 µs TTL",
        );
        assert!(touched, "{s}: touch of a present key must return true");
        for key in [&set_key, &incr_key, &touch_key] {
            match s.ok(subject.ttl(key).await, "ttl") {
                KeyTtl::Missing => {}
                KeyTtl::ExpiresIn(left) => assert!(
                    left <= rounded,
                    "{s}: a 300 µs TTL must be rounded up to {rounded:?}, found ExpiresIn({left:?}) for {key:?}"
                ),
                KeyTtl::Persistent => {
                    panic!("{s}: a 300 µs TTL must not mean \"no expiry\" ({key:?} is Persistent)")
                }
            }
        }
    }
    let last_write = Instant::now();
    if caps.native_ttl {
        sleep_until(last_write + rounded + (timing.gone_by - timing.short)).await;
        for key in [&set_key, &incr_key] {
            assert_eq!(
                s.get(subject, key).await,
                None,
                "{s}: {key:?} with a 300 µs TTL must be gone"
            );
        }
        if caps.ttl_inspection {
            assert_eq!(
                s.get(subject, &touch_key).await,
                None,
                "{s}: a key touched with a 300 µs TTL must be gone"
            );
        }
    }
    s.cleanup(subject).await;
    Outcome::Passed
}

/// A zero TTL is rejected with [`ErrorKind::InvalidInput`] by `set`,
/// `set_many`, `touch` and `incr`, and changes nothing.
pub async fn zero_ttl_rejected(subject: &dyn Backend) -> Outcome {
    let caps = subject.capabilities();
    let s = Scope::new(subject, "zero_ttl_rejected");
    let (set_key, many_key, incr_key, present) = (
        s.key("set"),
        s.key("set_many"),
        s.key("incr"),
        s.key("present"),
    );
    let zero = SetOptions::new().ttl(Duration::ZERO);
    let kind = ErrorKind::InvalidInput;

    s.fails(
        subject.set(&set_key, "v".into(), &zero).await,
        kind,
        "set with a zero TTL",
    );
    assert_eq!(
        s.get(subject, &set_key).await,
        None,
        "{s}: a set with a zero TTL must not store the key"
    );
    s.fails(
        subject
            .set_many(&[(many_key.as_str(), Bytes::from_static(b"v"))], &zero)
            .await,
        kind,
        "set_many with a zero TTL",
    );
    assert_eq!(
        s.get(subject, &many_key).await,
        None,
        "{s}: a set_many with a zero TTL must not store the key"
    );
    s.fails(
        subject
            .incr(&incr_key, 1, Expiry::After(Duration::ZERO))
            .await,
        kind,
        "incr of a missing key with a zero TTL",
    );
    assert_eq!(
        s.get(subject, &incr_key).await,
        None,
        "{s}: an incr with a zero TTL must not create the key"
    );

    let persistent = SetOptions::new().expiry(Expiry::Never);
    s.ok(
        subject.set(&present, "v".into(), &persistent).await,
        "set with Expiry::Never",
    );
    if caps.ttl_inspection {
        s.fails(
            subject.touch(&present, Expiry::After(Duration::ZERO)).await,
            kind,
            "touch with a zero TTL",
        );
        assert_eq!(
            s.ok(subject.ttl(&present).await, "ttl after a rejected touch"),
            KeyTtl::Persistent,
            "{s}: a rejected touch must leave the key's expiry unchanged"
        );
    }
    s.fails(
        subject.set(&present, "w".into(), &zero).await,
        kind,
        "set of a present key with a zero TTL",
    );
    assert_eq!(
        s.get(subject, &present).await.as_deref(),
        Some(&b"v"[..]),
        "{s}: a rejected set must leave the present key unchanged"
    );
    s.cleanup(subject).await;
    Outcome::Passed
}

/// `Expiry::Never` never expires whatever the default; `Expiry::Default`
/// applies the backend's configured default TTL (`default_ttl`, `None` for
/// "no expiry", the default of every backend). A set replaces the deadline
/// of the key it overwrites.
pub async fn default_and_never_expiry(
    subject: &dyn Backend,
    default_ttl: Option<Duration>,
) -> Outcome {
    let caps = subject.capabilities();
    if !caps.ttl_inspection {
        return Outcome::Skipped("ttl_inspection is false");
    }
    let timing = Timing::of(&caps);
    let s = Scope::new(subject, "default_and_never_expiry");
    let never = SetOptions::new().expiry(Expiry::Never);
    let default = SetOptions::new().expiry(Expiry::Default);
    let long = SetOptions::new().ttl(LONG_TTL);
    let (a, b, c, d) = (
        s.key("never"),
        s.key("default"),
        s.key("long-then-default"),
        s.key("long-then-never"),
    );

    let started = Instant::now();
    s.ok(
        subject.set(&a, "v".into(), &never).await,
        "set with Expiry::Never",
    );
    s.ok(
        subject.set(&b, "v".into(), &default).await,
        "set with Expiry::Default",
    );
    s.ok(
        subject.set(&c, "v".into(), &long).await,
        "set with a 10 s TTL",
    );
    s.ok(
        subject.set(&c, "w".into(), &default).await,
        "overwrite with Expiry::Default",
    );
    s.ok(
        subject.set(&d, "v".into(), &long).await,
        "set with a 10 s TTL",
    );
    s.ok(
        subject.set(&d, "w".into(), &never).await,
        "overwrite with Expiry::Never",
    );

    for key in [&a, &d] {
        assert_eq!(
            s.ok(subject.ttl(key).await, "ttl"),
            KeyTtl::Persistent,
            "{s}: a key last set with Expiry::Never must be Persistent ({key:?})"
        );
    }
    for key in [&b, &c] {
        let found = s.ok(subject.ttl(key).await, "ttl");
        match default_ttl {
            None => assert_eq!(
                found,
                KeyTtl::Persistent,
                "{s}: a key last set with Expiry::Default must be Persistent when the backend has no default TTL ({key:?})"
            ),
            Some(ttl) => s.assert_expires_in(
                found,
                ttl,
                started.elapsed(),
                timing.slack,
                format_args!(
                    "a key last set with Expiry::Default ({key:?}) under a default TTL of {ttl:?}"
                ),
            ),
        }
    }
    s.cleanup(subject).await;
    Outcome::Passed
}

/// `touch` sets a new absolute deadline on a present key and returns true:
/// a 10 s key touched with a short TTL is gone after it, a short key
/// touched with 10 s survives it, `Expiry::Never` makes a key Persistent.
/// On a missing key it returns false and creates nothing.
pub async fn touch_replaces_deadline(subject: &dyn Backend) -> Outcome {
    let caps = subject.capabilities();
    if !caps.ttl_inspection {
        return Outcome::Skipped("ttl_inspection is false");
    }
    let timing = Timing::of(&caps);
    let s = Scope::new(subject, "touch_replaces_deadline");
    let (missing, shortened, lengthened, persisted, expiring) = (
        s.key("missing"),
        s.key("shortened"),
        s.key("lengthened"),
        s.key("persisted"),
        s.key("expiring"),
    );

    let touched = s.ok(
        subject.touch(&missing, Expiry::After(LONG_TTL)).await,
        "touch of a missing key",
    );
    assert!(!touched, "{s}: touch of a missing key must return false");
    assert_eq!(
        s.ok(subject.ttl(&missing).await, "ttl"),
        KeyTtl::Missing,
        "{s}: touch must not create a missing key"
    );

    // A short key lengthened right after its write; a machine too slow to
    // touch it within its TTL leaves nothing to check for it.
    let lengthened_written = Instant::now();
    s.ok(
        subject
            .set(
                &lengthened,
                "v".into(),
                &SetOptions::new().ttl(timing.short),
            )
            .await,
        "set with a short TTL",
    );
    let lengthened_live = s.ok(
        subject.touch(&lengthened, Expiry::After(LONG_TTL)).await,
        "touch of a short key with 10 s",
    );
    if !lengthened_live {
        let since = lengthened_written.elapsed();
        assert!(
            since + timing.slack >= timing.short,
            "{s}: touch of a present key must return true ({lengthened:?}, {since:?} after its write)"
        );
    }

    let started = Instant::now();
    s.ok(
        subject
            .set(&shortened, "v".into(), &SetOptions::new().ttl(LONG_TTL))
            .await,
        "set with a 10 s TTL",
    );
    s.ok(
        subject
            .set(&persisted, "v".into(), &SetOptions::new().ttl(LONG_TTL))
            .await,
        "set with a 10 s TTL",
    );
    s.ok(
        subject
            .set(
                &expiring,
                "v".into(),
                &SetOptions::new().expiry(Expiry::Never),
            )
            .await,
        "set with Expiry::Never",
    );
    let set_by = started.elapsed();
    let touches = [
        (&shortened, Expiry::After(timing.short)),
        (&persisted, Expiry::Never),
        (&expiring, Expiry::After(LONG_TTL)),
    ];
    for (key, expiry) in touches {
        let touched = s.ok(
            subject.touch(key, expiry).await,
            format_args!("touch({key:?}, {expiry:?})"),
        );
        assert!(
            touched,
            "{s}: touch of a present key must return true ({key:?})"
        );
    }
    let touched_by = started.elapsed();
    let found = s.ok(subject.ttl(&shortened).await, "ttl");
    s.assert_expires_in_unless_late(
        found,
        timing.short,
        started,
        timing.slack,
        "a 10 s key touched with a short TTL",
    );
    if lengthened_live {
        let found = s.ok(subject.ttl(&lengthened).await, "ttl");
        s.assert_expires_in(
            found,
            LONG_TTL,
            lengthened_written.elapsed(),
            timing.slack,
            "a short key touched with 10 s",
        );
    }
    assert_eq!(
        s.ok(subject.ttl(&persisted).await, "ttl"),
        KeyTtl::Persistent,
        "{s}: a key touched with Expiry::Never must be Persistent"
    );
    let found = s.ok(subject.ttl(&expiring).await, "ttl");
    s.assert_expires_in(
        found,
        LONG_TTL,
        started.elapsed(),
        timing.slack,
        "a persistent key touched with 10 s",
    );

    if caps.native_ttl {
        sleep_until(started + set_by.max(touched_by) + timing.gone_by).await;
        assert_eq!(
            s.get(subject, &shortened).await,
            None,
            "{s}: a 10 s key touched with a {:?} TTL must be gone after {:?}",
            timing.short,
            started.elapsed()
        );
        assert!(
            !lengthened_live || s.get(subject, &lengthened).await.is_some(),
            "{s}: a key set with a {:?} TTL and touched with 10 s must survive its first deadline",
            timing.short
        );
    }
    s.cleanup(subject).await;
    Outcome::Passed
}
