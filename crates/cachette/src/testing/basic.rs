//! Reads, writes, conditions, values, keys and batches.

use bytes::Bytes;

use super::Outcome;
use super::scope::{Scope, mentions_number};
use crate::backend::{Backend, SetOptions};
use crate::error::ErrorKind;

/// Keys longer than this are not built to probe `max_key_len` (a backend
/// with a huge limit, such as Redis' 512 MB, is not asked to store one).
const PROBED_KEY_LEN: usize = 1 << 20;

/// Values longer than this are not built to probe `max_value_len`.
const PROBED_VALUE_LEN: usize = 16 << 20;

/// `set` returns true and `get` reads the value back; overwriting replaces
/// it; `exists` follows; `delete` returns whether the key existed and
/// removes it.
pub async fn set_get_delete(subject: &dyn Backend) -> Outcome {
    let s = Scope::new(subject, "set_get_delete");
    let key = s.key("k");
    assert_eq!(
        s.get(subject, &key).await,
        None,
        "{s}: a key never written must read as None"
    );
    assert!(
        !s.ok(subject.exists(&key).await, "exists of a key never written"),
        "{s}: exists must be false for a key never written"
    );
    assert!(
        !s.ok(subject.delete(&key).await, "delete of a key never written"),
        "{s}: delete must return false for a key never written"
    );

    s.put(subject, &key, b"one").await;
    assert_eq!(
        s.get(subject, &key).await.as_deref(),
        Some(&b"one"[..]),
        "{s}: get after set"
    );
    assert!(
        s.ok(subject.exists(&key).await, "exists after set"),
        "{s}: exists must be true after set"
    );

    s.put(subject, &key, b"two").await;
    assert_eq!(
        s.get(subject, &key).await.as_deref(),
        Some(&b"two"[..]),
        "{s}: a second set must replace the value"
    );

    assert!(
        s.ok(subject.delete(&key).await, "delete of a present key"),
        "{s}: delete must return true for a present key"
    );
    assert_eq!(
        s.get(subject, &key).await,
        None,
        "{s}: get after delete must be None"
    );
    assert!(
        !s.ok(subject.exists(&key).await, "exists after delete"),
        "{s}: exists must be false after delete"
    );
    assert!(
        !s.ok(subject.delete(&key).await, "a second delete"),
        "{s}: a second delete must return false"
    );
    s.cleanup(subject).await;
    Outcome::Passed
}

/// `if_absent` writes only a missing key and `if_present` only a present
/// one; a failed condition returns false and changes nothing, in `set` and
/// in `set_many` (answered per entry).
pub async fn conditional_set(subject: &dyn Backend) -> Outcome {
    let s = Scope::new(subject, "conditional_set");
    let key = s.key("k");
    let if_absent = SetOptions::new().if_absent();
    let if_present = SetOptions::new().if_present();

    let written = s.ok(
        subject.set(&key, "ghost".into(), &if_present).await,
        "set if_present of a missing key",
    );
    assert!(
        !written,
        "{s}: set if_present of a missing key must return false"
    );
    assert_eq!(
        s.get(subject, &key).await,
        None,
        "{s}: set if_present must not create a missing key"
    );

    let written = s.ok(
        subject.set(&key, "first".into(), &if_absent).await,
        "set if_absent of a missing key",
    );
    assert!(
        written,
        "{s}: set if_absent of a missing key must return true"
    );
    assert_eq!(
        s.get(subject, &key).await.as_deref(),
        Some(&b"first"[..]),
        "{s}: get after set if_absent"
    );

    let written = s.ok(
        subject.set(&key, "second".into(), &if_absent).await,
        "set if_absent of a present key",
    );
    assert!(
        !written,
        "{s}: set if_absent of a present key must return false"
    );
    assert_eq!(
        s.get(subject, &key).await.as_deref(),
        Some(&b"first"[..]),
        "{s}: a failed set if_absent must leave the value unchanged"
    );

    let written = s.ok(
        subject.set(&key, "third".into(), &if_present).await,
        "set if_present of a present key",
    );
    assert!(
        written,
        "{s}: set if_present of a present key must return true"
    );
    assert_eq!(
        s.get(subject, &key).await.as_deref(),
        Some(&b"third"[..]),
        "{s}: set if_present of a present key must replace the value"
    );

    let fresh = s.key("fresh");
    let answers = s.ok(
        subject
            .set_many(
                &[(key.as_str(), "x".into()), (fresh.as_str(), "y".into())],
                &if_absent,
            )
            .await,
        "set_many if_absent",
    );
    assert_eq!(
        answers,
        [false, true],
        "{s}: set_many if_absent over [present, missing]"
    );
    assert_eq!(
        s.get(subject, &key).await.as_deref(),
        Some(&b"third"[..]),
        "{s}: set_many if_absent must leave a present key unchanged"
    );
    assert_eq!(
        s.get(subject, &fresh).await.as_deref(),
        Some(&b"y"[..]),
        "{s}: set_many if_absent must write a missing key"
    );

    let missing = s.key("missing");
    let answers = s.ok(
        subject
            .set_many(
                &[(key.as_str(), "z".into()), (missing.as_str(), "w".into())],
                &if_present,
            )
            .await,
        "set_many if_present",
    );
    assert_eq!(
        answers,
        [true, false],
        "{s}: set_many if_present over [present, missing]"
    );
    assert_eq!(
        s.get(subject, &key).await.as_deref(),
        Some(&b"z"[..]),
        "{s}: set_many if_present must write a present key"
    );
    assert_eq!(
        s.get(subject, &missing).await,
        None,
        "{s}: set_many if_present must not create a missing key"
    );
    s.cleanup(subject).await;
    Outcome::Passed
}

/// Values come back byte for byte: empty, every byte value, 1 MiB (when
/// `max_value_len` allows), under a unicode key.
pub async fn values_round_trip(subject: &dyn Backend) -> Outcome {
    let s = Scope::new(subject, "values_round_trip");
    let caps = subject.capabilities();
    let mut cases: Vec<(String, Bytes)> = vec![
        (s.key("empty"), Bytes::new()),
        (s.key("binary"), (0..=255u8).collect::<Vec<u8>>().into()),
        (
            s.key("ключ:🔑:键"),
            Bytes::from_static("значение:🔑:值".as_bytes()),
        ),
    ];
    let mib = 1 << 20;
    if caps.max_value_len.is_none_or(|max| max >= mib) {
        // A pattern with a period that is not a power of two, so that a
        // shifted or truncated copy does not compare equal.
        let big: Vec<u8> = (0..mib).map(|i| (i % 251) as u8).collect();
        cases.push((s.key("one-mib"), big.into()));
    }
    for (key, value) in &cases {
        let written = s.ok(
            subject.set(key, value.clone(), &SetOptions::new()).await,
            format_args!("set({key:?})"),
        );
        assert!(written, "{s}: set({key:?}) must return true");
    }
    for (key, value) in &cases {
        let found = s.get(subject, key).await;
        assert!(
            found.as_ref() == Some(value),
            "{s}: the value of {key:?} ({} bytes) must read back unchanged, found {:?}",
            value.len(),
            found.as_ref().map(|v| if v.len() > 64 {
                format!("{} bytes", v.len())
            } else {
                format!("{v:?}")
            }),
        );
    }
    let keys: Vec<&str> = cases.iter().map(|(k, _)| k.as_str()).collect();
    let found = s.ok(subject.get_many(&keys).await, "get_many of every value");
    for ((key, value), found) in cases.iter().zip(&found) {
        assert!(
            found.as_ref() == Some(value),
            "{s}: get_many must read {key:?} back unchanged"
        );
    }
    s.cleanup(subject).await;
    Outcome::Passed
}

/// A value of exactly `max_value_len` bytes is stored; one byte more is
/// rejected with [`ErrorKind::InvalidInput`] naming the limit, and stores
/// nothing. Skipped without a limit (or one above 16 MiB).
pub async fn value_size_limit(subject: &dyn Backend) -> Outcome {
    let Some(max) = subject.capabilities().max_value_len else {
        return Outcome::Skipped("max_value_len is not limited");
    };
    if max > PROBED_VALUE_LEN {
        return Outcome::Skipped("max_value_len is above 16 MiB");
    }
    let s = Scope::new(subject, "value_size_limit");
    let at_limit = s.key("at-limit");
    let over = s.key("over-limit");
    let written = s.ok(
        subject
            .set(&at_limit, vec![b'v'; max].into(), &SetOptions::new())
            .await,
        format_args!("set of a value of exactly max_value_len ({max}) bytes"),
    );
    assert!(
        written,
        "{s}: set of a value of exactly max_value_len bytes must return true"
    );
    assert_eq!(
        s.get(subject, &at_limit).await.map(|v| v.len()),
        Some(max),
        "{s}: a value of exactly max_value_len bytes must read back"
    );
    let error = s.fails(
        subject
            .set(&over, vec![b'v'; max + 1].into(), &SetOptions::new())
            .await,
        ErrorKind::InvalidInput,
        format_args!("set of a value of max_value_len + 1 ({}) bytes", max + 1),
    );
    assert!(
        mentions_number(&error.to_string(), max),
        "{s}: the error for a value over the limit must name the limit ({max}), found: {error}"
    );
    assert_eq!(
        s.get(subject, &over).await,
        None,
        "{s}: a rejected value must not be stored"
    );
    s.cleanup(subject).await;
    Outcome::Passed
}

/// The empty key and a key of `max_key_len + 1` bytes are rejected with
/// [`ErrorKind::InvalidInput`] (the message names the limit) by every
/// operation; a key of exactly `max_key_len` bytes works. The limit counts
/// the key as the caller passes it: a prefix the backend adds must already
/// be taken off (see [`crate::backend`]).
pub async fn key_limits(subject: &dyn Backend) -> Outcome {
    let s = Scope::new(subject, "key_limits");
    let caps = subject.capabilities();
    let max = caps.max_key_len;

    let mut rejected = vec![(String::new(), "the empty key".to_owned())];
    let probe_length = max < PROBED_KEY_LEN;
    if probe_length {
        let Some(at_limit) = s.key_of_len(max, 'k') else {
            return Outcome::Skipped("max_key_len is shorter than the suite's key prefix");
        };
        s.record(&at_limit);
        s.put(subject, &at_limit, b"v").await;
        assert_eq!(
            s.get(subject, &at_limit).await.as_deref(),
            Some(&b"v"[..]),
            "{s}: a key of exactly max_key_len ({max}) bytes must work"
        );
        let deleted = s.ok(
            subject.delete(&at_limit).await,
            "delete of a key of max_key_len bytes",
        );
        assert!(
            deleted,
            "{s}: delete of a key of exactly max_key_len ({max}) bytes must return true"
        );
        for (fill, label) in [('k', "ASCII"), ('é', "two-byte UTF-8")] {
            if let Some(over) = s.key_of_len(max + 1, fill) {
                rejected.push((
                    over,
                    format!("a key of max_key_len + 1 ({}) bytes of {label}", max + 1),
                ));
            }
        }
    }

    for (key, label) in &rejected {
        let names_limit = !key.is_empty();
        let check = |error: crate::Error, op: &str| {
            if names_limit {
                assert!(
                    mentions_number(&error.to_string(), max),
                    "{s}: {op} of {label}: the error must name the limit ({max}), found: {error}"
                );
            }
        };
        let kind = ErrorKind::InvalidInput;
        check(
            s.fails(
                subject.set(key, "v".into(), &SetOptions::new()).await,
                kind,
                format_args!("set of {label}"),
            ),
            "set",
        );
        check(
            s.fails(subject.get(key).await, kind, format_args!("get of {label}")),
            "get",
        );
        check(
            s.fails(
                subject.delete(key).await,
                kind,
                format_args!("delete of {label}"),
            ),
            "delete",
        );
        check(
            s.fails(
                subject.exists(key).await,
                kind,
                format_args!("exists of {label}"),
            ),
            "exists",
        );
        check(
            s.fails(
                subject.incr(key, 1, Default::default()).await,
                kind,
                format_args!("incr of {label}"),
            ),
            "incr",
        );
        check(
            s.fails(
                subject
                    .set_many(&[(key.as_str(), "v".into())], &SetOptions::new())
                    .await,
                kind,
                format_args!("set_many of {label}"),
            ),
            "set_many",
        );
        check(
            s.fails(
                subject.get_many(&[key.as_str()]).await,
                kind,
                format_args!("get_many of {label}"),
            ),
            "get_many",
        );
        check(
            s.fails(
                subject.delete_many(&[key.as_str()]).await,
                kind,
                format_args!("delete_many of {label}"),
            ),
            "delete_many",
        );
        if caps.ttl_inspection {
            check(
                s.fails(subject.ttl(key).await, kind, format_args!("ttl of {label}")),
                "ttl",
            );
            check(
                s.fails(
                    subject.touch(key, crate::Expiry::Never).await,
                    kind,
                    format_args!("touch of {label}"),
                ),
                "touch",
            );
        }
    }
    s.cleanup(subject).await;
    if probe_length {
        Outcome::Passed
    } else {
        Outcome::Skipped("max_key_len is above 1 MiB; only the empty key was checked")
    }
}

/// Keys with spaces, line breaks, NUL, tabs, glob characters or
/// protocol-like text either work like any other key (distinct from each
/// other, compared byte for byte, listed by `keys`) or are rejected with
/// [`ErrorKind::InvalidInput`]; nothing else (no rewriting, no protocol
/// injection).
pub async fn unusual_keys(subject: &dyn Backend) -> Outcome {
    let s = Scope::new(subject, "unusual_keys");
    let names = [
        "with space",
        "line\r\nbreak",
        "nul\0byte",
        "tab\there",
        "inject\r\nSET injected 1\r\n",
        "*?[]{}\\",
        "ünïcödé·€",
        // Compared byte for byte: no case folding, no Unicode normalization.
        "Case",
        "case",
        "caf\u{e9}",
        "cafe\u{301}",
    ];
    let keys: Vec<String> = names.iter().map(|n| s.key(n)).collect();
    let mut accepted = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let value = Bytes::from(format!("value-{i}"));
        match subject.set(key, value.clone(), &SetOptions::new()).await {
            Ok(written) => {
                assert!(written, "{s}: set({key:?}) must return true");
                accepted.push((key, value));
            }
            Err(error) => assert_eq!(
                error.kind(),
                ErrorKind::InvalidInput,
                "{s}: set({key:?}) must work or fail with InvalidInput, found: {error}"
            ),
        }
    }
    for (key, value) in &accepted {
        assert_eq!(
            s.get(subject, key).await.as_ref(),
            Some(value),
            "{s}: the accepted key {key:?} must read back its own value"
        );
    }
    if subject.capabilities().key_listing {
        let listed = s
            .keys(subject, &format!("{}*", crate::glob::escape(s.prefix())))
            .await;
        for (key, _) in &accepted {
            assert!(
                listed.contains(key),
                "{s}: keys must list the accepted key {key:?}, listed {listed:?}"
            );
        }
    }
    assert_eq!(
        s.get(subject, &format!("{}injected", s.prefix())).await,
        None,
        "{s}: a key containing protocol text must not write another key"
    );
    s.cleanup(subject).await;
    Outcome::Passed
}

/// Batch operations answer positionally for every key asked, missing and
/// repeated keys included: `get_many(["a", "missing", "a"])` is
/// `[Some, None, Some]`, `set_many` returns one bool per entry (the last of
/// repeated entries wins), `delete_many` counts the keys that existed.
pub async fn batch_operations(subject: &dyn Backend) -> Outcome {
    let s = Scope::new(subject, "batch_operations");
    let (a, b, c, missing) = (s.key("a"), s.key("b"), s.key("c"), s.key("missing"));

    assert!(
        s.ok(subject.get_many(&[]).await, "get_many of no keys")
            .is_empty(),
        "{s}: get_many of no keys"
    );
    assert!(
        s.ok(
            subject.set_many(&[], &SetOptions::new()).await,
            "set_many of no entries"
        )
        .is_empty(),
        "{s}: set_many of no entries"
    );
    assert_eq!(
        s.ok(subject.delete_many(&[]).await, "delete_many of no keys"),
        0,
        "{s}: delete_many of no keys"
    );

    let entries = [
        (a.as_str(), Bytes::from_static(b"1")),
        (b.as_str(), Bytes::from_static(b"2")),
        (c.as_str(), Bytes::from_static(b"old")),
        (c.as_str(), Bytes::from_static(b"3")),
    ];
    let answers = s.ok(
        subject.set_many(&entries, &SetOptions::new()).await,
        "set_many",
    );
    assert_eq!(
        answers, [true; 4],
        "{s}: set_many must answer true for every entry"
    );
    assert_eq!(
        s.get(subject, &c).await.as_deref(),
        Some(&b"3"[..]),
        "{s}: the last of repeated set_many entries must win"
    );

    let found = s.ok(
        subject
            .get_many(&[
                a.as_str(),
                missing.as_str(),
                a.as_str(),
                b.as_str(),
                c.as_str(),
            ])
            .await,
        "get_many",
    );
    let expected: Vec<Option<Bytes>> = vec![
        Some(Bytes::from_static(b"1")),
        None,
        Some(Bytes::from_static(b"1")),
        Some(Bytes::from_static(b"2")),
        Some(Bytes::from_static(b"3")),
    ];
    assert_eq!(
        found, expected,
        "{s}: get_many([a, missing, a, b, c]) must answer positionally"
    );

    let removed = s.ok(
        subject
            .delete_many(&[a.as_str(), missing.as_str(), b.as_str(), a.as_str()])
            .await,
        "delete_many",
    );
    assert_eq!(
        removed, 2,
        "{s}: delete_many([a, missing, b, a]) must count the 2 keys that existed"
    );
    let found = s.ok(
        subject
            .get_many(&[a.as_str(), b.as_str(), c.as_str()])
            .await,
        "get_many after delete_many",
    );
    assert_eq!(
        found,
        vec![None, None, Some(Bytes::from_static(b"3"))],
        "{s}: delete_many must remove exactly the keys asked"
    );
    s.cleanup(subject).await;
    Outcome::Passed
}
