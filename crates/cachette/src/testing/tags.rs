//! Tags and `invalidate_tags`.

use bytes::Bytes;

use super::Outcome;
use super::scope::Scope;
use crate::backend::{Backend, SetOptions};

/// `invalidate_tags` removes exactly the entries stored with any of the
/// tags and returns how many (0 where `counts_invalidations` is false); untagged entries and entries of other tags
/// survive; tags given to `set_many` apply to every entry; a deleted entry
/// is not counted.
pub async fn tag_invalidation(subject: &dyn Backend) -> Outcome {
    if !subject.capabilities().tags {
        return Outcome::Skipped("tags is false");
    }
    // A backend that cannot count what it invalidates answers 0.
    let counts = subject.capabilities().counts_invalidations;
    let counted = |removed: u64| if counts { removed } else { 0 };
    let s = Scope::new(subject, "tag_invalidation");
    let (t1, t2, t3, t4, unknown) = (
        s.tag("t1"),
        s.tag("t2"),
        s.tag("t3"),
        s.tag("t4"),
        s.tag("unknown"),
    );
    let tagged = |tags: &[&String]| SetOptions::new().tags(tags.iter().map(|t| t.as_str()));
    let entries = [
        (s.key("one"), tagged(&[&t1])),
        (s.key("one-two"), tagged(&[&t1, &t2])),
        (s.key("two"), tagged(&[&t2])),
        (s.key("three"), tagged(&[&t3])),
        (s.key("untagged"), SetOptions::new()),
        (s.key("deleted"), tagged(&[&t4])),
    ];
    for (key, options) in &entries {
        let written = s.ok(
            subject.set(key, "v".into(), options).await,
            format_args!("set({key:?}) with tags"),
        );
        assert!(written, "{s}: set with tags must return true");
    }
    let (many_a, many_b) = (s.key("many-a"), s.key("many-b"));
    let answers = s.ok(
        subject
            .set_many(
                &[
                    (many_a.as_str(), Bytes::from_static(b"v")),
                    (many_b.as_str(), Bytes::from_static(b"v")),
                ],
                &tagged(&[&t3]),
            )
            .await,
        "set_many with tags",
    );
    assert_eq!(answers, [true, true], "{s}: set_many with tags");
    let key = |name: &str| format!("{}{name}", s.prefix());
    let present = async |name: &str| s.get(subject, &key(name)).await.is_some();

    assert_eq!(
        s.ok(
            subject.invalidate_tags(&[unknown.as_str()]).await,
            "invalidate_tags of an unknown tag"
        ),
        0,
        "{s}: invalidate_tags of an unknown tag"
    );
    assert_eq!(
        s.ok(
            subject.invalidate_tags(&[]).await,
            "invalidate_tags of no tags"
        ),
        0,
        "{s}: invalidate_tags of no tags"
    );

    let removed = s.ok(
        subject.invalidate_tags(&[t1.as_str()]).await,
        "invalidate_tags([t1])",
    );
    assert_eq!(
        removed,
        counted(2),
        "{s}: invalidate_tags([t1]) must remove and count the 2 entries tagged t1"
    );
    for name in ["one", "one-two"] {
        assert!(
            !present(name).await,
            "{s}: invalidate_tags([t1]) must remove {name:?}"
        );
    }
    for name in ["two", "three", "untagged", "deleted", "many-a", "many-b"] {
        assert!(
            present(name).await,
            "{s}: invalidate_tags([t1]) must keep {name:?}"
        );
    }

    let removed = s.ok(
        subject.invalidate_tags(&[t1.as_str()]).await,
        "a second invalidate_tags([t1])",
    );
    assert_eq!(
        removed,
        counted(0),
        "{s}: a second invalidate_tags([t1]) must find nothing"
    );

    let removed = s.ok(
        subject
            .invalidate_tags(&[t2.as_str(), t3.as_str(), t2.as_str()])
            .await,
        "invalidate_tags([t2, t3, t2])",
    );
    assert_eq!(
        removed,
        counted(4),
        "{s}: invalidate_tags([t2, t3, t2]) must count each of the 4 entries once"
    );
    for name in ["two", "three", "many-a", "many-b"] {
        assert!(
            !present(name).await,
            "{s}: invalidate_tags([t2, t3]) must remove {name:?}"
        );
    }

    let deleted = s.ok(
        subject.delete(&key("deleted")).await,
        "delete of a tagged key",
    );
    assert!(
        deleted,
        "{s}: delete of a present tagged key must return true"
    );
    let removed = s.ok(
        subject.invalidate_tags(&[t4.as_str()]).await,
        "invalidate_tags of a deleted entry's tag",
    );
    assert_eq!(
        removed,
        counted(0),
        "{s}: invalidate_tags must not count a deleted entry"
    );
    assert!(
        present("untagged").await,
        "{s}: invalidate_tags must never remove an untagged entry"
    );
    s.cleanup(subject).await;
    Outcome::Passed
}

/// Overwriting an entry replaces its tags: after a set without tags,
/// invalidating the old tag no longer removes it; after a set with other
/// tags, only the new ones do.
pub async fn tag_overwrite(subject: &dyn Backend) -> Outcome {
    if !subject.capabilities().tags {
        return Outcome::Skipped("tags is false");
    }
    // A backend that cannot count what it invalidates answers 0.
    let counts = subject.capabilities().counts_invalidations;
    let counted = |removed: u64| if counts { removed } else { 0 };
    let s = Scope::new(subject, "tag_overwrite");
    let (old, new, other) = (s.tag("old"), s.tag("new"), s.tag("other"));
    let (untagged_later, retagged) = (s.key("untagged-later"), s.key("retagged"));
    let with = |tag: &String| SetOptions::new().tags([tag.as_str()]);

    s.ok(
        subject.set(&untagged_later, "v1".into(), &with(&old)).await,
        "set with a tag",
    );
    s.ok(
        subject
            .set(&untagged_later, "v2".into(), &SetOptions::new())
            .await,
        "overwrite without tags",
    );
    s.ok(
        subject.set(&retagged, "v1".into(), &with(&other)).await,
        "set with a tag",
    );
    s.ok(
        subject.set(&retagged, "v2".into(), &with(&new)).await,
        "overwrite with another tag",
    );

    let removed = s.ok(
        subject
            .invalidate_tags(&[old.as_str(), other.as_str()])
            .await,
        "invalidate_tags of the old tags",
    );
    assert_eq!(
        removed,
        counted(0),
        "{s}: an overwrite must drop the old tags (nothing is tagged with them any more)"
    );
    assert_eq!(
        s.get(subject, &untagged_later).await.as_deref(),
        Some(&b"v2"[..]),
        "{s}: a key overwritten without tags must survive invalidating its old tag"
    );
    assert_eq!(
        s.get(subject, &retagged).await.as_deref(),
        Some(&b"v2"[..]),
        "{s}: a key overwritten with another tag must survive invalidating its old tag"
    );
    let removed = s.ok(
        subject.invalidate_tags(&[new.as_str()]).await,
        "invalidate_tags of the new tag",
    );
    assert_eq!(
        removed,
        counted(1),
        "{s}: the new tag must remove the overwritten key"
    );
    assert_eq!(
        s.get(subject, &retagged).await,
        None,
        "{s}: the new tag must remove the overwritten key"
    );
    s.cleanup(subject).await;
    Outcome::Passed
}
