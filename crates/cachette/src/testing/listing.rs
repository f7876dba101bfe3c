//! `keys` and `clear`.

use super::Outcome;
use super::scope::Scope;
use crate::backend::Backend;
use crate::glob::escape;

/// `keys(pattern)` lists exactly the live keys that match the glob: `*`,
/// `?`, `[ab]`, `[^a]`, `[a-c]`, and a literal prefix full of glob
/// characters escaped with [`crate::glob::escape`]. Order is free and a
/// repeated key is tolerated (Redis `SCAN` may repeat one).
pub async fn keys_glob(subject: &dyn Backend) -> Outcome {
    if !subject.capabilities().key_listing {
        return Outcome::Skipped("key_listing is false");
    }
    let s = Scope::new(subject, "keys_glob");
    let names = [
        "a1",
        "a2",
        "ab",
        "b1",
        "c10",
        "d",
        "weird*[x]?:1",
        "weird*[x]?:2",
        "weirdA[x]?:1",
        "weird*[x]?",
    ];
    for name in names {
        let key = s.key(name);
        s.put(subject, &key, b"v").await;
    }
    let base = escape(s.prefix());
    let full = |names: &[&str]| -> Vec<String> {
        let mut keys: Vec<String> = names.iter().map(|n| format!("{}{n}", s.prefix())).collect();
        keys.sort();
        keys
    };
    let cases: [(String, Vec<String>); 9] = [
        (format!("{base}*"), full(&names)),
        (format!("{base}a?"), full(&["a1", "a2", "ab"])),
        (format!("{base}?1"), full(&["a1", "b1"])),
        (format!("{base}[ab]1"), full(&["a1", "b1"])),
        (
            format!("{base}[^a]*"),
            full(&[
                "b1",
                "c10",
                "d",
                "weird*[x]?:1",
                "weird*[x]?:2",
                "weirdA[x]?:1",
                "weird*[x]?",
            ]),
        ),
        (format!("{base}[a-c]?0"), full(&["c10"])),
        (
            format!("{}*", escape(&format!("{}weird*[x]?:", s.prefix()))),
            full(&["weird*[x]?:1", "weird*[x]?:2"]),
        ),
        (
            format!("{base}{}", escape("weird*[x]?")),
            full(&["weird*[x]?"]),
        ),
        (format!("{base}nothing*"), Vec::new()),
    ];
    for (pattern, expected) in &cases {
        let listed = s.keys(subject, pattern).await;
        assert_eq!(
            &listed, expected,
            "{s}: keys({pattern:?}) must list exactly the matching keys"
        );
    }
    s.cleanup(subject).await;
    let listed = s.keys(subject, &format!("{base}*")).await;
    assert!(
        listed.is_empty(),
        "{s}: deleted keys must not be listed, found {listed:?}"
    );
    Outcome::Passed
}

/// `keys(pattern)` follows the Redis glob dialect of [`crate::glob`]:
/// only `^` negates a set (`[!a]` is the set of `!` and `a`), ranges may
/// be reversed, and `\` escapes a character inside and outside a set.
pub async fn keys_glob_dialect(subject: &dyn Backend) -> Outcome {
    if !subject.capabilities().key_listing {
        return Outcome::Skipped("key_listing is false");
    }
    let s = Scope::new(subject, "keys_glob_dialect");
    let names = ["a", "b", "!", "^", "-", "]", "x*", "xy"];
    for name in names {
        s.put(subject, &s.key(name), b"v").await;
    }
    let base = escape(s.prefix());
    let cases: [(&str, &[&str]); 8] = [
        ("[!a]", &["!", "a"]),
        ("[^a]", &["!", "-", "]", "^", "b"]),
        ("[a-b]", &["a", "b"]),
        ("[b-a]", &["a", "b"]),
        (r"x\*", &["x*"]),
        ("x[*]", &["x*"]),
        (r"[\]\-]", &["-", "]"]),
        (r"\!", &["!"]),
    ];
    for (pattern, expected) in cases {
        let mut expected: Vec<String> = expected
            .iter()
            .map(|n| format!("{}{n}", s.prefix()))
            .collect();
        expected.sort();
        let listed = s.keys(subject, &format!("{base}{pattern}")).await;
        assert_eq!(
            listed, expected,
            "{s}: keys(prefix + {pattern:?}) must list the keys the Redis glob dialect matches"
        );
    }
    s.cleanup(subject).await;
    Outcome::Passed
}

/// `clear` removes every key of this backend and nothing of its sibling
/// (another prefix or namespace over the same store, or another
/// instance), including a key of the same name; the backend works after.
///
/// This clears the whole subject: no other test may use the subject's
/// namespace while it runs.
pub async fn clear_keeps_sibling_keys(subject: &dyn Backend, sibling: &dyn Backend) -> Outcome {
    let caps = subject.capabilities();
    if !caps.clear {
        return Outcome::Skipped("clear is false");
    }
    let s = Scope::new(subject, "clear_keeps_sibling_keys");
    let mine = [s.key("mine-1"), s.key("mine-2"), s.key("same-name")];
    let theirs = [s.key("theirs-1"), s.key("theirs-2"), s.key("same-name")];
    for key in &mine {
        s.put(subject, key, b"subject").await;
    }
    for key in &theirs {
        s.put(sibling, key, b"sibling").await;
    }
    for key in &theirs {
        assert_eq!(
            s.get(sibling, key).await.as_deref(),
            Some(&b"sibling"[..]),
            "{s}: the sibling must hold its own value of {key:?} before clear (is it the same namespace as the subject?)"
        );
    }

    s.ok(subject.clear().await, "clear");

    for key in &mine {
        assert_eq!(
            s.get(subject, key).await,
            None,
            "{s}: clear must remove {key:?}"
        );
    }
    for key in &theirs {
        assert_eq!(
            s.get(sibling, key).await.as_deref(),
            Some(&b"sibling"[..]),
            "{s}: clear of the subject must not touch the sibling's {key:?}"
        );
    }
    if caps.key_listing {
        let listed = s.keys(subject, &format!("{}*", escape(s.prefix()))).await;
        assert!(
            listed.is_empty(),
            "{s}: keys must list nothing after clear, found {listed:?}"
        );
    }
    s.put(subject, &mine[0], b"again").await;
    assert_eq!(
        s.get(subject, &mine[0]).await.as_deref(),
        Some(&b"again"[..]),
        "{s}: the backend must work after clear"
    );
    s.cleanup(subject).await;
    let theirs: Vec<&str> = theirs.iter().map(String::as_str).collect();
    s.ok(
        sibling.delete_many(&theirs).await,
        "delete_many on the sibling (cleanup)",
    );
    Outcome::Passed
}
