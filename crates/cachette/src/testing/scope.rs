//! What every check shares: its own key namespace, assertion helpers that
//! name the backend and the check, and the clock of the timed checks.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::task::JoinHandle;

use crate::backend::{Backend, Capabilities, TtlPrecision};
use crate::error::{Error, ErrorKind, Result};

/// Tells runs that start in the same nanosecond apart.
static RUNS: AtomicU64 = AtomicU64::new(0);

/// One check's view of the store: a key prefix no other run uses, the keys
/// written under it (so that they can be deleted at the end), and the name
/// that every failure message starts with.
pub(super) struct Scope {
    backend: &'static str,
    check: &'static str,
    prefix: String,
    written: Mutex<Vec<String>>,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "conformance check `{}` on backend `{}`",
            self.check, self.backend
        )
    }
}

impl Scope {
    pub(super) fn new(subject: &dyn Backend, check: &'static str) -> Scope {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos());
        let run = RUNS.fetch_add(1, Ordering::Relaxed);
        Scope {
            backend: subject.name(),
            check,
            prefix: format!("conf:{nanos}:{run}:{check}:"),
            written: Mutex::new(Vec::new()),
        }
    }

    /// The prefix of every key of this check; it contains no glob
    /// characters, but checks escape it anyway.
    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A key under this check's prefix, deleted by [`Scope::cleanup`].
    pub(super) fn key(&self, name: &str) -> String {
        let key = format!("{}{name}", self.prefix);
        self.written.lock().push(key.clone());
        key
    }

    /// Records a key built by hand so that cleanup deletes it.
    pub(super) fn record(&self, key: &str) {
        self.written.lock().push(key.to_owned());
    }

    /// A tag name no other run uses (tags may be shared across a store).
    pub(super) fn tag(&self, name: &str) -> String {
        format!("{}tag:{name}", self.prefix)
    }

    /// A key of exactly `len` bytes: the prefix, then `fill` (an ASCII
    /// character or a multi-byte one), then ASCII `x` to reach the length.
    /// `None` if the prefix alone is too long. Not recorded.
    pub(super) fn key_of_len(&self, len: usize, fill: char) -> Option<String> {
        let room = len.checked_sub(self.prefix.len() + 1)?;
        let mut key = String::with_capacity(len);
        key.push_str(&self.prefix);
        key.push('.');
        let fills = room / fill.len_utf8();
        key.extend(std::iter::repeat_n(fill, fills));
        while key.len() < len {
            key.push('x');
        }
        Some(key)
    }

    /// Unwraps a result the check needs to succeed.
    #[track_caller]
    pub(super) fn ok<T>(&self, result: Result<T>, what: impl fmt::Display) -> T {
        match result {
            Ok(value) => value,
            Err(error) => panic!("{self}: {what} failed: {error} (kind: {:?})", error.kind()),
        }
    }

    /// Unwraps the error of a result the check needs to fail with `kind`.
    #[track_caller]
    pub(super) fn fails<T: fmt::Debug>(
        &self,
        result: Result<T>,
        kind: ErrorKind,
        what: impl fmt::Display,
    ) -> Error {
        match result {
            Ok(value) => {
                panic!("{self}: {what} must fail with {kind:?}, but it returned Ok({value:?})")
            }
            Err(error) => {
                assert_eq!(
                    error.kind(),
                    kind,
                    "{self}: {what} must fail with {kind:?}, but it failed with: {error}"
                );
                error
            }
        }
    }

    /// Reads a key, failing the check on an error.
    pub(super) async fn get(&self, subject: &dyn Backend, key: &str) -> Option<Bytes> {
        self.ok(subject.get(key).await, format_args!("get({})", Shown(key)))
    }

    /// Writes a key without options and checks that `set` returned true.
    pub(super) async fn put(&self, subject: &dyn Backend, key: &str, value: &'static [u8]) {
        let written = self.ok(
            subject
                .set(key, Bytes::from_static(value), &crate::SetOptions::new())
                .await,
            format_args!("set({})", Shown(key)),
        );
        assert!(
            written,
            "{self}: set({}) without a condition must return true",
            Shown(key)
        );
    }

    /// Lists the keys that match `pattern`, sorted, duplicates removed
    /// (a `SCAN`-based listing may repeat a key).
    pub(super) async fn keys(&self, subject: &dyn Backend, pattern: &str) -> Vec<String> {
        let what = format_args!("keys({pattern:?})").to_string();
        let mut stream = self.ok(subject.keys(pattern).await, &what);
        let mut keys = Vec::new();
        while let Some(key) = stream.next().await {
            keys.push(self.ok(key, format_args!("an item of the stream of {what}")));
        }
        keys.sort();
        keys.dedup();
        keys
    }

    /// Deletes every key this check wrote.
    pub(super) async fn cleanup(&self, subject: &dyn Backend) {
        let keys = std::mem::take(&mut *self.written.lock());
        for chunk in keys.chunks(100) {
            let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
            self.ok(
                subject.delete_many(&chunk).await,
                "delete_many of the check's keys (cleanup)",
            );
        }
    }
}

/// A key as failure messages show it: quoted, and cut short when long.
pub(super) struct Shown<'a>(pub(super) &'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 80;
        if self.0.len() <= SHOWN {
            return write!(f, "{:?}", self.0);
        }
        let mut end = SHOWN;
        while !self.0.is_char_boundary(end) {
            end -= 1;
        }
        write!(f, "{:?}… ({} bytes)", &self.0[..end], self.0.len())
    }
}

/// Whether `message` contains `number` as a whole decimal number (not as
/// part of a longer one).
pub(super) fn mentions_number(message: &str, number: usize) -> bool {
    let number = number.to_string();
    message
        .split(|c: char| !c.is_ascii_digit())
        .any(|run| run == number)
}

/// Awaits spawned tasks; a panic in one is re-raised with its own message.
pub(super) async fn join_tasks<T>(scope: &Scope, tasks: Vec<JoinHandle<T>>) -> Vec<T> {
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        match task.await {
            Ok(result) => results.push(result),
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => panic!("{scope}: a spawned task did not finish: {error}"),
        }
    }
    results
}

/// The durations of the timed checks, from the backend's TTL precision.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timing {
    /// The short TTL whose expiry is awaited.
    pub(super) short: Duration,
    /// When a key with the short TTL is read and must still be there.
    pub(super) check_at: Duration,
    /// When a key with the short TTL must be gone.
    pub(super) gone_by: Duration,
    /// How much earlier than its TTL a key may legitimately vanish
    /// (deadlines are stored in whole milliseconds or seconds).
    pub(super) slack: Duration,
}

impl Timing {
    pub(super) fn of(caps: &Capabilities) -> Timing {
        match caps.ttl_precision {
            TtlPrecision::Milliseconds => Timing {
                short: Duration::from_millis(150),
                check_at: Duration::from_millis(50),
                gone_by: Duration::from_millis(400),
                slack: Duration::from_millis(2),
            },
            _ => Timing {
                short: Duration::from_secs(2),
                check_at: Duration::from_millis(500),
                gone_by: Duration::from_millis(3500),
                slack: Duration::from_secs(1),
            },
        }
    }
}

/// The persistent-key TTL of checks that do not wait for expiry.
pub(super) const LONG_TTL: Duration = Duration::from_secs(10);

impl Scope {
    /// Checks that `found` is `ExpiresIn(d)` with `d` at most `ttl` and at
    /// least `ttl` minus the time since the write (minus `slack`).
    /// Like [`assert_expires_in`](Self::assert_expires_in) for a key
    /// written (or touched) at `written` with `ttl`, except that a reply
    /// that comes after the TTL has run out (a busy machine) may find the
    /// key missing. Returns whether the key was there.
    #[track_caller]
    pub(super) fn assert_expires_in_unless_late(
        &self,
        found: crate::KeyTtl,
        ttl: Duration,
        written: tokio::time::Instant,
        slack: Duration,
        what: impl fmt::Display,
    ) -> bool {
        if found == crate::KeyTtl::Missing {
            let since = written.elapsed();
            assert!(
                since + slack >= ttl,
                "{self}: {what}: a key with a {ttl:?} TTL vanished after only {since:?}"
            );
            return false;
        }
        self.assert_expires_in(found, ttl, written.elapsed(), slack, what);
        true
    }

    #[track_caller]
    pub(super) fn assert_expires_in(
        &self,
        found: crate::KeyTtl,
        ttl: Duration,
        since_write: Duration,
        slack: Duration,
        what: impl fmt::Display,
    ) {
        let crate::KeyTtl::ExpiresIn(left) = found else {
            panic!("{self}: {what}: ttl must be ExpiresIn(at most {ttl:?}), found {found:?}");
        };
        assert!(
            left <= ttl,
            "{self}: {what}: ttl must be at most the {ttl:?} set, found ExpiresIn({left:?})"
        );
        assert!(
            left + since_write + slack >= ttl,
            "{self}: {what}: ttl must be about {ttl:?} minus the {since_write:?} since the write, \
             found ExpiresIn({left:?})"
        );
    }
}
