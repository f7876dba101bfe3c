//! Per-call options and the cache-wide defaults they fall back on.

use std::time::Duration;

use crate::backend::{Expiry, SetOptions};

use super::clock::millis;
use super::keys::KeySpace;

/// Options of one write ([`Cache::set`](super::Cache::set), ...) or one
/// [`Cache::get_or_load`](super::Cache::get_or_load). Every option left
/// alone takes the cache's default, set on the
/// [`CacheBuilder`](super::CacheBuilder); the table in the
/// [module docs](super) lists them.
///
/// ```
/// use std::time::Duration;
/// use cachette::cache::EntryOptions;
///
/// let options = EntryOptions::new()
///     .ttl(Duration::from_secs(600))
///     .soft_ttl(Duration::from_secs(60))
///     .negative_ttl(Duration::from_secs(5))
///     .jitter(Duration::from_secs(30))
///     .tags(["user:42"]);
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryOptions {
    expiry: Option<Expiry>,
    soft_ttl: Option<Option<Duration>>,
    negative_ttl: Option<Option<Duration>>,
    jitter: Option<Duration>,
    tags: Vec<String>,
    fail_safe: Option<Option<Duration>>,
    soft_timeout: Option<Option<Duration>>,
    hard_timeout: Option<Option<Duration>>,
    eager_refresh: Option<Option<Fraction>>,
}

/// A fraction of an entry's fresh life (checked to be above 0 and below 1
/// when options are resolved).
#[derive(Debug, Clone, Copy)]
pub(super) struct Fraction(pub(super) f64);

impl PartialEq for Fraction {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for Fraction {}

impl EntryOptions {
    /// Every option at the cache's default.
    pub fn new() -> Self {
        EntryOptions::default()
    }

    /// The (hard) TTL: the entry is gone after it (with fail-safe, kept
    /// longer but only as a fallback). Zero is an error.
    pub fn ttl(self, ttl: Duration) -> Self {
        self.expiry(Expiry::After(ttl))
    }

    /// The expiry: [`Expiry::Never`], [`Expiry::Default`] (the backend's
    /// default TTL) or [`Expiry::After`].
    pub fn expiry(mut self, expiry: Expiry) -> Self {
        self.expiry = Some(expiry);
        self
    }

    /// The soft TTL: after it the value is stale; `get_or_load` returns it
    /// at once and refreshes it in the background. Must be shorter than the
    /// TTL.
    pub fn soft_ttl(mut self, soft_ttl: Duration) -> Self {
        self.soft_ttl = Some(Some(soft_ttl));
        self
    }

    /// No soft TTL for this entry, whatever the cache's default.
    pub fn no_soft_ttl(mut self) -> Self {
        self.soft_ttl = Some(None);
        self
    }

    /// Caches a loader's "not found" (`Ok(None)`) for this long.
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = Some(Some(ttl));
        self
    }

    /// Does not cache a loader's "not found", whatever the cache's default.
    pub fn no_negative_ttl(mut self) -> Self {
        self.negative_ttl = Some(None);
        self
    }

    /// Adds a random extra of up to `jitter` to the TTL (and the soft
    /// TTL), so that entries written together do not expire together. Zero
    /// turns jitter off.
    pub fn jitter(mut self, jitter: Duration) -> Self {
        self.jitter = Some(jitter);
        self
    }

    /// Adds tags: [`Cache::invalidate_tags`](super::Cache::invalidate_tags)
    /// with any of them removes the entry.
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags.extend(tags.into_iter().map(Into::into));
        self
    }

    /// Fail-safe for this call, with this maximum age: when the load or
    /// the backend fails, a stale value younger than `max_age` is returned
    /// instead of the error (as
    /// [`CacheBuilder::fail_safe`](super::CacheBuilder::fail_safe), which
    /// sets the default). At least the time a value stays fresh.
    pub fn fail_safe(mut self, max_age: Duration) -> Self {
        self.fail_safe = Some(Some(max_age));
        self
    }

    /// No fail-safe for this call, whatever the cache's default.
    pub fn no_fail_safe(mut self) -> Self {
        self.fail_safe = Some(None);
        self
    }

    /// How long a `get_or_load` caller that holds a stale value waits for
    /// the loader before it returns the stale value (the load goes on in
    /// the background and stores its result).
    pub fn soft_timeout(mut self, timeout: Duration) -> Self {
        self.soft_timeout = Some(Some(timeout));
        self
    }

    /// How long a load may run before it is cancelled and fails with
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) (or fail-safe
    /// serves the stale value).
    pub fn hard_timeout(mut self, timeout: Duration) -> Self {
        self.hard_timeout = Some(Some(timeout));
        self
    }

    /// Neither a soft nor a hard timeout for this call.
    pub fn no_timeouts(mut self) -> Self {
        self.soft_timeout = Some(None);
        self.hard_timeout = Some(None);
        self
    }

    /// Eager refresh for this call (as
    /// [`CacheBuilder::eager_refresh`](super::CacheBuilder::eager_refresh),
    /// which sets the default): a hit past this fraction of the entry's
    /// fresh life starts one background refresh. Above 0 and below 1.
    pub fn eager_refresh(mut self, fraction: f64) -> Self {
        self.eager_refresh = Some(Some(Fraction(fraction)));
        self
    }

    /// No eager refresh for this call, whatever the cache's default.
    pub fn no_eager_refresh(mut self) -> Self {
        self.eager_refresh = Some(None);
        self
    }

    /// These options with `other`'s over them: each option `other` sets
    /// replaces this one's; tags are added.
    pub(super) fn overlay(&mut self, other: EntryOptions) {
        fn over<V>(mine: &mut Option<V>, theirs: Option<V>) {
            if theirs.is_some() {
                *mine = theirs;
            }
        }
        over(&mut self.expiry, other.expiry);
        over(&mut self.soft_ttl, other.soft_ttl);
        over(&mut self.negative_ttl, other.negative_ttl);
        over(&mut self.jitter, other.jitter);
        over(&mut self.fail_safe, other.fail_safe);
        over(&mut self.soft_timeout, other.soft_timeout);
        over(&mut self.hard_timeout, other.hard_timeout);
        over(&mut self.eager_refresh, other.eager_refresh);
        self.tags.extend(other.tags);
    }
}

/// The fail-safe settings in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FailSafe {
    pub(super) max_age: Duration,
    pub(super) throttle: Duration,
    /// How often a throttled key is tried again in the background.
    pub(super) recovery: Duration,
}

/// The cache-wide defaults, and after [`Defaults::resolve`], the options of
/// one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Defaults {
    pub(super) expiry: Expiry,
    pub(super) soft_ttl: Option<Duration>,
    pub(super) negative_ttl: Option<Duration>,
    pub(super) jitter: Option<Duration>,
    /// The maximum age of values fail-safe serves; `None` = off.
    pub(super) fail_safe: Option<Duration>,
    pub(super) fail_safe_throttle: Duration,
    pub(super) fail_safe_recovery: Duration,
    pub(super) soft_timeout: Option<Duration>,
    pub(super) hard_timeout: Option<Duration>,
    pub(super) eager_refresh: Option<Fraction>,
}

/// The options of one call, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Resolved {
    pub(super) expiry: Expiry,
    pub(super) soft_ttl: Option<Duration>,
    pub(super) negative_ttl: Option<Duration>,
    pub(super) jitter: Option<Duration>,
    /// Namespaced.
    pub(super) tags: Vec<String>,
    pub(super) fail_safe: Option<FailSafe>,
    pub(super) soft_timeout: Option<Duration>,
    pub(super) hard_timeout: Option<Duration>,
    /// The fraction of the fresh life after which a hit refreshes.
    pub(super) eager_refresh: Option<Fraction>,
    /// The defaults these options were resolved from, for a loader's
    /// options over them.
    base: Defaults,
}

/// How one entry is written: its envelope deadlines and the backend's TTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Plan {
    pub(super) soft_deadline: u64,
    pub(super) hard_deadline: u64,
    pub(super) set_options: SetOptions,
}

impl Defaults {
    /// Checks the options; the message names the option at fault.
    pub(super) fn check(&self) -> std::result::Result<(), String> {
        let nonzero = [
            ("soft_ttl", self.soft_ttl),
            ("negative_ttl", self.negative_ttl),
            ("fail_safe", self.fail_safe),
            ("soft_timeout", self.soft_timeout),
            ("hard_timeout", self.hard_timeout),
        ];
        if let Expiry::After(ttl) = self.expiry
            && ttl.is_zero()
        {
            return Err("ttl is zero; use Expiry::Never for no expiry".into());
        }
        for (name, value) in nonzero {
            if value.is_some_and(|d| d.is_zero()) {
                return Err(format!("{name} is zero"));
            }
        }
        if self.fail_safe.is_some() && self.fail_safe_throttle.is_zero() {
            return Err("fail_safe_throttle is zero".into());
        }
        if self.fail_safe.is_some() && self.fail_safe_recovery.is_zero() {
            return Err("fail_safe_recovery is zero".into());
        }
        if let (Some(soft), Expiry::After(ttl)) = (self.soft_ttl, self.expiry)
            && soft >= ttl
        {
            return Err(format!(
                "soft_ttl ({soft:?}) must be shorter than ttl ({ttl:?})"
            ));
        }
        let fresh_for = fresh_for(self.soft_ttl, self.expiry);
        if let Some(Fraction(fraction)) = self.eager_refresh {
            if !(fraction > 0.0 && fraction < 1.0) {
                return Err(format!(
                    "eager_refresh ({fraction}) must be a fraction above 0 and below 1"
                ));
            }
            if fresh_for.is_none() {
                return Err(
                    "eager_refresh needs a soft_ttl or a ttl (Expiry::After) to take a fraction of"
                        .into(),
                );
            }
        }
        if let (Some(max_age), Some(fresh_for)) = (self.fail_safe, fresh_for)
            && max_age < fresh_for
        {
            return Err(format!(
                "fail_safe ({max_age:?}, the maximum age) must be at least the time a value \
                 stays fresh (the soft_ttl, or else the ttl: {fresh_for:?})"
            ));
        }
        if let (Some(soft), Some(hard)) = (self.soft_timeout, self.hard_timeout)
            && soft >= hard
        {
            return Err(format!(
                "soft_timeout ({soft:?}) must be shorter than hard_timeout ({hard:?})"
            ));
        }
        Ok(())
    }

    /// Applies a call's options over these defaults and checks the result.
    pub(super) fn resolve(
        &self,
        options: &EntryOptions,
        keys: &KeySpace,
    ) -> std::result::Result<Resolved, String> {
        let mut merged = self.clone();
        if let Some(expiry) = options.expiry {
            merged.expiry = expiry;
        }
        if let Some(soft) = options.soft_ttl {
            merged.soft_ttl = soft;
        }
        if let Some(negative) = options.negative_ttl {
            merged.negative_ttl = negative;
        }
        if let Some(jitter) = options.jitter {
            merged.jitter = Some(jitter);
        }
        if let Some(fail_safe) = options.fail_safe {
            merged.fail_safe = fail_safe;
        }
        if let Some(soft) = options.soft_timeout {
            merged.soft_timeout = soft;
        }
        if let Some(hard) = options.hard_timeout {
            merged.hard_timeout = hard;
        }
        if let Some(eager) = options.eager_refresh {
            merged.eager_refresh = eager;
        }
        merged.check()?;
        Ok(Resolved {
            expiry: merged.expiry,
            soft_ttl: merged.soft_ttl,
            negative_ttl: merged.negative_ttl,
            jitter: merged.jitter.filter(|j| !j.is_zero()),
            tags: options.tags.iter().map(|t| keys.tag(t)).collect(),
            fail_safe: merged.fail_safe.map(|max_age| FailSafe {
                max_age,
                throttle: merged.fail_safe_throttle,
                recovery: merged.fail_safe_recovery,
            }),
            soft_timeout: merged.soft_timeout,
            hard_timeout: merged.hard_timeout,
            eager_refresh: merged.eager_refresh,
            base: merged,
        })
    }
}

/// How long a value stays fresh: the soft TTL, or else the TTL.
fn fresh_for(soft_ttl: Option<Duration>, expiry: Expiry) -> Option<Duration> {
    soft_ttl.or(match expiry {
        Expiry::After(ttl) => Some(ttl),
        Expiry::Default | Expiry::Never => None,
    })
}

impl Resolved {
    /// These options with a loader's `options` over them (adaptive
    /// caching), checked; the tags add up.
    pub(super) fn adapt(
        &self,
        options: &EntryOptions,
        keys: &KeySpace,
    ) -> std::result::Result<Resolved, String> {
        let mut adapted = self.base.resolve(options, keys)?;
        let mut tags = self.tags.clone();
        tags.append(&mut adapted.tags);
        adapted.tags = tags;
        Ok(adapted)
    }

    /// How long a value written with these options stays fresh.
    pub(super) fn fresh_for(&self) -> Option<Duration> {
        fresh_for(self.soft_ttl, self.expiry)
    }

    /// Whether entries written with these options need an envelope.
    pub(super) fn needs_envelope(&self) -> bool {
        self.soft_ttl.is_some() || self.fail_safe.is_some() || self.eager_refresh.is_some()
    }

    /// The deadlines and backend options of an entry written `now` (Unix
    /// ms): a value, or with `negative`, a cached "not found" (which needs
    /// a `negative_ttl`).
    pub(super) fn plan(&self, now: u64, negative: bool) -> Plan {
        let extra = self.jitter.map_or(Duration::ZERO, |j| {
            Duration::from_millis(fastrand::u64(0..=millis(j)))
        });
        let mut set_options = SetOptions::new();
        set_options.tags.clone_from(&self.tags);
        if negative {
            let ttl = self
                .negative_ttl
                .unwrap_or(Duration::from_millis(1))
                .saturating_add(extra);
            set_options.expiry = Expiry::After(ttl);
            return Plan {
                soft_deadline: 0,
                hard_deadline: 0,
                set_options,
            };
        }
        let soft_deadline = self.soft_ttl.map_or(0, |soft| {
            now.saturating_add(millis(soft.saturating_add(extra)))
        });
        let (expiry, hard_deadline) = match self.expiry {
            Expiry::After(ttl) => {
                let ttl = ttl.saturating_add(extra);
                match self.fail_safe {
                    // Keep the entry for fail-safe beyond its TTL; the
                    // envelope's hard deadline says when it expires.
                    Some(fail_safe) if fail_safe.max_age > ttl => (
                        Expiry::After(fail_safe.max_age),
                        now.saturating_add(millis(ttl)),
                    ),
                    _ => (Expiry::After(ttl), 0),
                }
            }
            other => (other, 0),
        };
        set_options.expiry = expiry;
        Plan {
            soft_deadline,
            hard_deadline,
            set_options,
        }
    }
}
