//! The one list of URL schemes: [`schemes`] reads it, [`open`] opens a URL
//! through it, and the command line prints it.
//!
//! Each backend declares its schemes once, in its own `url.rs` (name,
//! cargo feature, description, capabilities, `open`). This list takes the
//! declarations of the backends compiled in; for a backend whose feature is
//! off, and for backends not written yet, it names the scheme and the
//! feature to enable. A compiled-in scheme therefore always shows as
//! enabled: nothing here can say otherwise.

use std::sync::Arc;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::params::{Scheme, SchemeInfo, did_you_mean, parse_url, redact};

/// The name in errors raised before a backend is chosen.
const REGISTRY: &str = "registry";

/// One slot of the list: a backend's declarations, or the schemes of a
/// backend that is not in this build.
enum Slot {
    // A build without any backend has no declarations.
    #[cfg_attr(
        not(any(
            feature = "memory",
            feature = "file",
            feature = "redb",
            feature = "redis",
            feature = "memcached",
            feature = "postgres",
            feature = "object",
            feature = "tiered"
        )),
        allow(dead_code)
    )]
    Compiled(&'static [Scheme]),
    // A build with every backend has no absent one.
    #[cfg_attr(
        all(
            feature = "memory",
            feature = "file",
            feature = "redb",
            feature = "redis",
            feature = "memcached",
            feature = "postgres",
            feature = "tiered",
            feature = "near"
        ),
        allow(dead_code)
    )]
    Absent(&'static [SchemeInfo]),
}

/// A backend's slot: its own declarations when its `feature` is on, else
/// the names of its schemes with that feature to enable.
macro_rules! slot {
    ($feature:literal, $declared:path, [$(($scheme:literal, $description:literal)),+ $(,)?]) => {{
        #[cfg(feature = $feature)]
        let slot = Slot::Compiled($declared);
        #[cfg(not(feature = $feature))]
        let slot = Slot::Absent(const { &[$(SchemeInfo::absent($scheme, $feature, $description)),+] });
        slot
    }};
}

/// The slots, in the order [`schemes`] lists them. The descriptions here
/// are shown only for backends left out of the build (a module that is not
/// compiled cannot be read); a compiled backend's own declaration wins.
fn slots() -> [Slot; 12] {
    [
        slot!(
            "memory",
            crate::backends::memory::url::SCHEMES,
            [(
                "memory",
                "in-process engine: LRU, FIFO, SIEVE or S3-FIFO; TTL; byte bounds; tags"
            )]
        ),
        slot!(
            "file",
            crate::backends::file::url::SCHEMES,
            [(
                "file",
                "one file per entry, atomic writes, bounded size, shared by processes"
            )]
        ),
        slot!(
            "redb",
            crate::backends::redb::url::SCHEMES,
            [(
                "redb",
                "embedded ACID store (pure Rust): one database file, namespaces, TTL, tags"
            )]
        ),
        slot!(
            "redis",
            crate::backends::redis::url::SCHEMES,
            [
                ("redis", "Redis, standalone"),
                ("rediss", "Redis, standalone, over TLS"),
                ("redis+unix", "Redis over a Unix socket"),
                ("redis+cluster", "Redis Cluster"),
                ("redis+sentinel", "Redis behind Sentinel"),
            ]
        ),
        slot!(
            "memcached",
            crate::backends::memcached::url::SCHEMES,
            [
                (
                    "memcached",
                    "memcached, one or several servers (comma-separated), consistent hashing"
                ),
                (
                    "memcached+tls",
                    "memcached over TLS, one or several servers"
                ),
                ("memcached+unix", "memcached over a Unix socket"),
            ]
        ),
        slot!(
            "postgres",
            crate::backends::postgres::url::SCHEMES,
            [
                (
                    "postgres",
                    "a PostgreSQL table (UNLOGGED by default) as a shared cache"
                ),
                ("postgresql", "the same as postgres://"),
            ]
        ),
        slot!(
            "object",
            crate::backends::object::url::LOCAL_SCHEMES,
            [(
                "object+file",
                "one object per entry in a local directory (object_store's local files)"
            )]
        ),
        slot!(
            "s3",
            crate::backends::object::url::S3_SCHEMES,
            [(
                "s3",
                "one object per entry in an S3 (or S3-compatible) bucket"
            )]
        ),
        slot!(
            "gcs",
            crate::backends::object::url::GCS_SCHEMES,
            [(
                "gs",
                "one object per entry in a Google Cloud Storage bucket"
            )]
        ),
        slot!(
            "azure",
            crate::backends::object::url::AZURE_SCHEMES,
            [(
                "az",
                "one object per entry in an Azure Blob Storage container"
            )]
        ),
        slot!(
            "tiered",
            crate::backends::tiered::url::SCHEMES,
            [(
                "tiered",
                "L1 + L2 over any two backends, from a TOML table (`l1`, `l2`)"
            )]
        ),
        slot!(
            "near",
            crate::backends::near::url::SCHEMES,
            [
                ("near+redis", "near cache over Redis"),
                ("near+rediss", "near cache over Redis with TLS"),
            ]
        ),
    ]
}

/// Every scheme cachette knows, compiled in or not, in a stable order.
///
/// ```
/// let memory = cachette::schemes().into_iter().find(|s| s.scheme == "memory");
/// assert!(memory.is_some_and(|s| s.enabled && s.capabilities.is_some()));
/// ```
pub fn schemes() -> Vec<SchemeInfo> {
    let mut all = Vec::new();
    for slot in slots() {
        match slot {
            Slot::Compiled(declared) => all.extend(declared.iter().map(Scheme::info)),
            Slot::Absent(listed) => all.extend_from_slice(listed),
        }
    }
    all
}

/// The compiled-in declaration of `scheme`, if any.
fn compiled(scheme: &str) -> Option<&'static Scheme> {
    slots().into_iter().find_map(|slot| match slot {
        Slot::Compiled(declared) => declared.iter().find(|s| s.name == scheme),
        Slot::Absent(_) => None,
    })
}

/// Opens a backend from a URL, e.g. `memory://?max_entries=10000&policy=s3fifo`.
///
/// Each scheme is compiled in by its cargo feature; [`schemes`] lists them
/// all, and each backend's module documents its URL form. The parameters
/// share one syntax for flags, integers, byte sizes and durations (see
/// [`params`](crate::params)). The `memory` scheme takes these, all
/// optional:
///
/// | parameter         | value                                                         |
/// |-------------------|---------------------------------------------------------------|
/// | `max_entries`     | an integer                                                    |
/// | `max_bytes`       | a byte size: `64MiB`, `1GB`, `4096`                           |
/// | `policy`          | `lru`, `fifo`, `sieve` or `s3fifo`                            |
/// | `default_ttl`     | a duration: `150ms`, `30s`, `5m`, `1h 30m`                    |
/// | `time_to_idle`    | a duration: an entry not read or written for that long expires |
/// | `shards`          | a power of two up to 1024                                     |
/// | `purge_interval`  | a duration                                                    |
/// | `max_key_len`     | a byte size                                                   |
///
/// A tiered cache has no URL: it opens from a TOML table through the
/// [`CacheManager`](crate::CacheManager).
///
/// # Errors
///
/// An [`ErrorKind::Config`](crate::ErrorKind::Config) error that names the
/// problem: a URL that does not parse, an unknown scheme, a scheme whose
/// cargo feature is off, an unknown or repeated parameter (with the
/// scheme's parameters and the nearest one), a value of the wrong form.
/// The backend's own validation errors (such as `max_entries=0`) come
/// through unchanged. Passwords in the URL never appear in an error (see
/// [`redact`]).
///
/// ```
/// use cachette::{Backend, KeyTtl, SetOptions};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> cachette::Result<()> {
/// let cache = cachette::open("memory://?max_entries=10000&max_bytes=64MiB&default_ttl=5m").await?;
/// cache.set("greeting", "hello".into(), &SetOptions::new()).await?;
/// assert!(matches!(cache.ttl("greeting").await?, KeyTtl::ExpiresIn(_)));
///
/// let err = cachette::open("memory://?max_entires=10").await.unwrap_err();
/// assert_eq!(err.kind(), cachette::ErrorKind::Config);
/// assert!(err.message().contains("unknown parameter `max_entires`"));
/// # Ok(())
/// # }
/// ```
pub async fn open(url: &str) -> Result<Arc<dyn Backend>> {
    // The scheme is read before the URL is parsed: the multi-host Redis
    // forms are no URL the `url` crate accepts, so their backend parses them.
    let Some(scheme) = scheme_of(url) else {
        return Err(parse_url(url, REGISTRY).err().unwrap_or_else(|| {
            Error::config(
                REGISTRY,
                format!("the URL `{}` names no scheme", redact(url)),
            )
        }));
    };
    match compiled(&scheme) {
        Some(declared) => (declared.open)(url).await,
        None => Err(not_available(&scheme, url)),
    }
}

/// The lower-cased scheme of a URL: what comes before the first `:`, if it
/// has the form of a scheme.
fn scheme_of(url: &str) -> Option<String> {
    let (scheme, _) = url.split_once(':')?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then(|| scheme.to_ascii_lowercase())
}

/// The error for a scheme that is not compiled in: either one [`schemes`]
/// knows but whose feature is off, or an unknown one.
fn not_available(scheme: &str, url: &str) -> Error {
    let all = schemes();
    match all.iter().find(|info| info.scheme == scheme) {
        Some(info) => Error::config(
            REGISTRY,
            format!(
                "the `{}` backend is not compiled in; enable the cargo feature `{}` (to open `{}`)",
                info.scheme,
                info.feature,
                redact(url)
            ),
        ),
        None => {
            let names = all.iter().map(|info| info.scheme);
            Error::config(
                REGISTRY,
                format!(
                    "unknown scheme `{scheme}`; known schemes: {}{}",
                    names.clone().collect::<Vec<_>>().join(", "),
                    did_you_mean(scheme, names)
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scheme_is_listed_once() {
        let all = schemes();
        for info in &all {
            let count = all
                .iter()
                .filter(|other| other.scheme == info.scheme)
                .count();
            assert_eq!(count, 1, "{info:?}");
        }
    }

    #[test]
    fn a_compiled_in_scheme_is_listed_as_enabled() {
        for info in schemes() {
            assert_eq!(compiled(info.scheme).is_some(), info.enabled, "{info:?}");
        }
    }

    #[test]
    fn the_scheme_is_read_before_the_url_parses() {
        assert_eq!(
            scheme_of("redis+cluster://a:1,b:2").as_deref(),
            Some("redis+cluster")
        );
        assert_eq!(scheme_of("Memory://").as_deref(), Some("memory"));
        assert_eq!(scheme_of("not a url"), None);
        assert_eq!(scheme_of("1x://y"), None);
    }
}
