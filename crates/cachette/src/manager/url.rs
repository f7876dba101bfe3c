//! [`open`]: from a URL to a backend, one match arm per scheme.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use ::url::Url;

use crate::backend::{Backend, Capabilities};
use crate::error::{Error, Result};

use super::{MANAGER, did_you_mean};

/// A URL scheme cachette knows.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct SchemeInfo {
    /// The URL scheme, e.g. `memory`.
    pub scheme: &'static str,
    /// The cargo feature that compiles it in.
    pub feature: &'static str,
    /// Whether that feature is on in this build.
    pub enabled: bool,
    /// One line about the backend.
    pub description: &'static str,
    /// What the backend guarantees with its default options, when compiled in.
    pub capabilities: Option<Capabilities>,
}

impl SchemeInfo {
    /// A scheme whose backend is not written yet: never enabled, no
    /// capabilities. Each backend replaces its entry when it lands.
    const fn planned(
        scheme: &'static str,
        feature: &'static str,
        description: &'static str,
    ) -> Self {
        SchemeInfo {
            scheme,
            feature,
            enabled: false,
            description,
            capabilities: None,
        }
    }
}

/// A standalone Redis scheme: enabled by the `redis` feature.
fn redis_scheme(scheme: &'static str, description: &'static str) -> SchemeInfo {
    SchemeInfo {
        scheme,
        feature: "redis",
        enabled: cfg!(feature = "redis"),
        description,
        #[cfg(feature = "redis")]
        capabilities: Some(crate::backends::redis::RedisBackend::default_capabilities()),
        #[cfg(not(feature = "redis"))]
        capabilities: None,
    }
}

fn near_scheme(scheme: &'static str, description: &'static str) -> SchemeInfo {
    SchemeInfo {
        scheme,
        feature: "near",
        enabled: cfg!(feature = "near"),
        description,
        #[cfg(feature = "near")]
        capabilities: Some(crate::backends::near::NearBackend::default_capabilities()),
        #[cfg(not(feature = "near"))]
        capabilities: None,
    }
}

/// Every scheme cachette knows, compiled in or not, in a stable order.
///
/// ```
/// let memory = cachette::schemes().into_iter().find(|s| s.scheme == "memory");
/// assert!(memory.is_some_and(|s| s.enabled && s.capabilities.is_some()));
/// ```
pub fn schemes() -> Vec<SchemeInfo> {
    vec![
        SchemeInfo {
            scheme: "memory",
            feature: "memory",
            enabled: cfg!(feature = "memory"),
            description: "in-process engine: LRU, FIFO, SIEVE or S3-FIFO; TTL; byte bounds; tags",
            #[cfg(feature = "memory")]
            capabilities: Some(crate::backends::memory::MemoryBackend::default_capabilities()),
            #[cfg(not(feature = "memory"))]
            capabilities: None,
        },
        // The backends below are not written yet, so their cargo features do
        // not exist. Each backend, when it lands, replaces its entry with
        // `enabled: cfg!(feature = "...")` and its capabilities, and adds its
        // match arm to `open`.
        SchemeInfo {
            scheme: "file",
            feature: "file",
            enabled: cfg!(feature = "file"),
            description: "one file per entry, atomic writes, bounded size, shared by processes",
            #[cfg(feature = "file")]
            capabilities: Some(crate::backends::file::FileBackend::default_capabilities()),
            #[cfg(not(feature = "file"))]
            capabilities: None,
        },
        SchemeInfo {
            scheme: "redb",
            feature: "redb",
            enabled: cfg!(feature = "redb"),
            description: "embedded ACID store (pure Rust): one database file, namespaces, TTL, tags",
            #[cfg(feature = "redb")]
            capabilities: Some(crate::backends::redb::RedbBackend::default_capabilities()),
            #[cfg(not(feature = "redb"))]
            capabilities: None,
        },
        redis_scheme("redis", "Redis, standalone"),
        redis_scheme("rediss", "Redis, standalone, over TLS"),
        redis_scheme("redis+unix", "Redis over a Unix socket"),
        redis_scheme(
            "redis+cluster",
            "Redis Cluster (comma-separated seed nodes)",
        ),
        redis_scheme(
            "redis+sentinel",
            "Redis behind Sentinel (comma-separated sentinels, then the master's name)",
        ),
        SchemeInfo::planned(
            "memcached",
            "memcached",
            "memcached, several servers, consistent hashing",
        ),
        SchemeInfo::planned(
            "postgres",
            "postgres",
            "a PostgreSQL table as a shared cache",
        ),
        SchemeInfo::planned("tiered", "tiered", "L1 + L2 over any two backends"),
        near_scheme(
            "near+redis",
            "near cache: a local store kept coherent with Redis by CLIENT TRACKING",
        ),
        near_scheme("near+rediss", "near cache over Redis with TLS"),
    ]
}

/// Opens a backend from a URL, e.g. `memory://?max_entries=10000&policy=s3fifo`.
///
/// Each scheme is compiled in by its cargo feature; [`schemes`] lists them
/// all. The `memory` scheme takes these parameters, all optional:
///
/// | parameter         | value                                                         |
/// |-------------------|---------------------------------------------------------------|
/// | `max_entries`     | an integer                                                    |
/// | `max_bytes`       | bytes, an integer with an optional unit: `KiB`, `MiB`, `GiB`, `TiB` (powers of 1024), `KB`, `MB`, `GB`, `TB` (powers of 1000), `B`; any case |
/// | `policy`          | `lru`, `fifo`, `sieve` or `s3fifo`                            |
/// | `default_ttl`     | a duration: `150ms`, `30s`, `5m`, `1h 30m`                    |
/// | `shards`          | a power of two up to 1024                                     |
/// | `expiry_interval` | a duration                                                    |
/// | `max_key_len`     | an integer (bytes)                                            |
///
/// # Errors
///
/// An [`ErrorKind::Config`](crate::ErrorKind::Config) error that names the
/// problem: a URL that does not parse, an unknown scheme, a scheme whose
/// cargo feature is off, an unknown or repeated parameter, a value of the
/// wrong form. The backend's own validation errors (such as
/// `max_entries=0`) come through unchanged. Passwords in the URL never
/// appear in an error (see [`redact`]).
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
    // The `redis+cluster` and `redis+sentinel` arms: their comma-separated
    // nodes are no host the `url` crate accepts, so they parse the URL
    // themselves.
    #[cfg(feature = "redis")]
    if url.starts_with("redis+cluster://") {
        return crate::backends::redis::url::open_cluster(url).await;
    }
    #[cfg(feature = "redis")]
    if url.starts_with("redis+sentinel://") {
        return crate::backends::redis::url::open_sentinel(url).await;
    }
    let parsed = Url::parse(url).map_err(|err| {
        Error::config(
            MANAGER,
            format!(
                "cannot parse the URL `{}`; expected `scheme://...`, e.g. `memory://?max_entries=10000`",
                redact(url)
            ),
        )
        .with_source(err)
    })?;
    match parsed.scheme() {
        #[cfg(feature = "memory")]
        "memory" => crate::backends::memory::url::open(&parsed),
        #[cfg(feature = "file")]
        "file" => crate::backends::file::url::open(&parsed).await,
        #[cfg(feature = "redb")]
        "redb" => crate::backends::redb::url::open(&parsed).await,
        #[cfg(feature = "redis")]
        "redis" | "rediss" | "redis+unix" => crate::backends::redis::url::open(&parsed).await,
        #[cfg(feature = "near")]
        "near+redis" | "near+rediss" => crate::backends::near::url::open(&parsed).await,
        other => Err(not_available(other, url)),
    }
}

/// The error for a scheme that has no match arm in [`open`]: either one
/// [`schemes`] knows but whose feature is off, or an unknown one.
fn not_available(scheme: &str, url: &str) -> Error {
    let all = schemes();
    match all.iter().find(|info| info.scheme == scheme) {
        Some(info) => Error::config(
            MANAGER,
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
                MANAGER,
                format!(
                    "unknown scheme `{scheme}`; known schemes: {}{}",
                    names.clone().collect::<Vec<_>>().join(", "),
                    did_you_mean(scheme, names)
                ),
            )
        }
    }
}

/// Replaces the secrets in a URL with `***`, so that it can go into an
/// error, a log line or `Debug` output.
///
/// The password of the user info is replaced, and so is the value of every
/// query parameter whose name says it is a secret (`password`, `pass`,
/// `secret`, `token`, `auth`, ...). Text that does not parse as a URL is
/// redacted conservatively: everything between `://` and the last `@` after
/// the first `:` of the user info.
///
/// ```
/// use cachette::manager::redact;
///
/// assert_eq!(redact("redis://app:hunter2@cache.internal:6379/0"), "redis://app:***@cache.internal:6379/0");
/// assert_eq!(redact("postgres://db/cache?password=hunter2&sslmode=require"), "postgres://db/cache?password=***&sslmode=require");
/// assert_eq!(redact("memory://?max_entries=10"), "memory://?max_entries=10");
/// ```
pub fn redact(url: &str) -> String {
    match Url::parse(url) {
        Ok(parsed) => redact_parsed(url, parsed),
        Err(_) => redact_text(url),
    }
}

/// Redacts a URL the `url` crate understands. Returns `original` unchanged
/// when there is nothing to hide, so that the user sees what they wrote.
fn redact_parsed(original: &str, mut parsed: Url) -> String {
    let mut changed = false;
    if parsed.password().is_some() {
        // Fails only for URLs without a host, which have no password either.
        if parsed.set_password(Some("***")).is_err() {
            return redact_text(original);
        }
        changed = true;
    }
    if parsed.query_pairs().any(|(name, _)| is_secret_name(&name)) {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(name, value)| {
                let value = if is_secret_name(&name) {
                    "***".into()
                } else {
                    value.into_owned()
                };
                (name.into_owned(), value)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
        changed = true;
    }
    if changed {
        parsed.into()
    } else {
        original.to_owned()
    }
}

/// Redacts every URL-like part of free text (an unparseable URL, a parser's
/// message). Over-redacts rather than leaks.
pub(crate) fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("://") {
        let (before, after) = rest.split_at(start + 3);
        out.push_str(before);
        let end = after
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>'))
            .unwrap_or(after.len());
        let (token, tail) = after.split_at(end);
        out.push_str(&redact_token(token));
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// Redacts one URL without its `scheme://`: the password of the user info
/// (up to the last `@`), then secret query parameters.
fn redact_token(token: &str) -> String {
    let (userinfo, rest) = match token.rfind('@') {
        Some(at) => (Some(&token[..at]), &token[at..]),
        None => (None, token),
    };
    let mut out = String::with_capacity(token.len());
    if let Some(info) = userinfo {
        match info.split_once(':') {
            Some((user, _password)) => {
                out.push_str(user);
                out.push_str(":***");
            }
            None => out.push_str(info),
        }
    }
    match rest.split_once('?') {
        Some((head, query)) => {
            out.push_str(head);
            out.push('?');
            let parts: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _)) if is_secret_name(name) => format!("{name}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            out.push_str(&parts.join("&"));
        }
        None => out.push_str(rest),
    }
    out
}

/// Whether a query parameter's name says its value is a secret.
fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["pass", "secret", "token", "auth", "credential"]
        .iter()
        .any(|word| name.contains(word))
}

/// The query parameters of a URL, checked against the names a scheme
/// accepts, and typed accessors that take each one out.
///
/// Every scheme's arm of [`open`] parses its parameters with this, so that
/// all of them report unknown, repeated and malformed parameters alike.
// Every backend's arm of `open` uses this; a build without any has none.
#[cfg_attr(not(feature = "memory"), allow(dead_code))]
pub(crate) struct UrlParams {
    scheme: &'static str,
    values: BTreeMap<String, String>,
}

impl fmt::Debug for UrlParams {
    /// Names only: a value may be a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UrlParams")
            .field("scheme", &self.scheme)
            .field("names", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg_attr(not(feature = "memory"), allow(dead_code))]
impl UrlParams {
    /// Reads the query of `url`. An unknown or repeated parameter is an
    /// error; `known` lists the parameters of `scheme`.
    pub(crate) fn parse(url: &Url, scheme: &'static str, known: &[&'static str]) -> Result<Self> {
        let mut values = BTreeMap::new();
        for (name, value) in url.query_pairs() {
            if !known.contains(&name.as_ref()) {
                return Err(Error::config(
                    scheme,
                    format!(
                        "unknown parameter `{name}` for {scheme}://; expected one of {}{}",
                        known.join(", "),
                        did_you_mean(&name, known.iter().copied())
                    ),
                ));
            }
            if values
                .insert(name.to_string(), value.into_owned())
                .is_some()
            {
                return Err(Error::config(
                    scheme,
                    format!("parameter `{name}` is given more than once; give it once"),
                ));
            }
        }
        Ok(UrlParams { scheme, values })
    }

    /// An error about the value of parameter `name`. Never echoes the value
    /// of a secret.
    fn bad_value(&self, name: &str, expected: &str, value: &str) -> Error {
        let shown = if is_secret_name(name) { "***" } else { value };
        Error::config(
            self.scheme,
            format!("parameter `{name}`: expected {expected}, got `{shown}`"),
        )
    }

    /// A non-negative integer.
    pub(crate) fn integer<T: FromStr>(&mut self, name: &str) -> Result<Option<T>> {
        let Some(value) = self.values.remove(name) else {
            return Ok(None);
        };
        value
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| self.bad_value(name, "an integer", &value))
    }

    /// A size in bytes: an integer with an optional unit.
    pub(crate) fn bytes(&mut self, name: &str) -> Result<Option<u64>> {
        let Some(value) = self.values.remove(name) else {
            return Ok(None);
        };
        parse_byte_size(&value).map(Some).ok_or_else(|| {
            self.bad_value(
                name,
                "a size in bytes such as `64MiB` (an integer with an optional unit: KiB, MiB, GiB, KB, MB, GB)",
                &value,
            )
        })
    }

    /// A duration in humantime form (`150ms`, `5m`, `1h 30m`).
    pub(crate) fn duration(&mut self, name: &str) -> Result<Option<Duration>> {
        let Some(value) = self.values.remove(name) else {
            return Ok(None);
        };
        humantime::parse_duration(value.trim())
            .map(Some)
            .map_err(|err| {
                self.bad_value(name, "a duration such as `150ms`, `30s` or `5m`", &value)
                    .with_source(err)
            })
    }

    /// A value parsed by its type's `FromStr`, whose error names what it
    /// expected.
    pub(crate) fn parsed<T: FromStr<Err = Error>>(&mut self, name: &str) -> Result<Option<T>> {
        let Some(value) = self.values.remove(name) else {
            return Ok(None);
        };
        value.trim().parse().map(Some).map_err(|err: Error| {
            Error::new(
                err.kind(),
                self.scheme,
                format!("parameter `{name}`: {}", err.message()),
            )
        })
    }
}

/// Parses a byte size: a whole number with an optional unit, `B`, `KB`,
/// `MB`, `GB`, `TB` (powers of 1000) or `KiB`, `MiB`, `GiB`, `TiB` (powers
/// of 1024), case-insensitive, with or without a space: `64`, `4KiB`,
/// `1 MB`. `None` for anything else or on overflow.
///
/// ```
/// assert_eq!(cachette::manager::parse_byte_size("64MiB"), Some(64 << 20));
/// assert_eq!(cachette::manager::parse_byte_size("ten"), None);
/// ```
pub fn parse_byte_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let number: u64 = number.parse().ok()?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return None,
    };
    number.checked_mul(multiplier)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_bytes_accepts_units_in_any_case() {
        assert_eq!(parse_byte_size("4096"), Some(4096));
        assert_eq!(parse_byte_size("64MiB"), Some(64 << 20));
        assert_eq!(parse_byte_size("64mib"), Some(64 << 20));
        assert_eq!(parse_byte_size("10 KB"), Some(10_000));
        assert_eq!(parse_byte_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_byte_size("1gb"), Some(1_000_000_000));
    }

    #[test]
    fn parse_bytes_rejects_garbage_and_overflow() {
        for bad in [
            "",
            "MiB",
            "1.5GiB",
            "-1",
            "12 parsecs",
            "99999999999999999999",
            "20000000TiB",
        ] {
            assert_eq!(parse_byte_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn redact_hides_userinfo_passwords() {
        assert_eq!(redact("redis://user:secret@host"), "redis://user:***@host");
        assert_eq!(
            redact("redis://:secret@host:6379"),
            "redis://:***@host:6379"
        );
        assert_eq!(redact("rediss://user@host"), "rediss://user@host");
    }

    #[test]
    fn redact_hides_secret_query_parameters() {
        assert_eq!(
            redact("postgres://host/db?user=app&password=secret"),
            "postgres://host/db?user=app&password=***"
        );
    }

    #[test]
    fn redact_leaves_urls_without_secrets_as_written() {
        for url in [
            "memory://?max_entries=10&policy=lru",
            "file:///var/cache/app",
            "redis://host/0",
        ] {
            assert_eq!(redact(url), url);
        }
    }

    #[test]
    fn redact_hides_passwords_in_unparseable_urls() {
        let redacted = redact("redis://user:pa/ss@host:notaport");
        assert!(!redacted.contains("pa/ss"), "{redacted}");
        let redacted = redact("redis://user:se?cret@host:x");
        assert!(
            !redacted.contains("se?cret") && !redacted.contains("cret"),
            "{redacted}"
        );
    }

    #[test]
    fn redact_text_hides_every_url_in_a_message() {
        let text = "invalid type: string \"redis://u:one@a\", and `rediss://v:two@b/0?token=three`";
        let redacted = redact_text(text);
        for secret in ["one", "two", "three"] {
            assert!(!redacted.contains(secret), "{redacted}");
        }
        assert!(
            redacted.starts_with("invalid type: string \"redis://u:***@a\""),
            "{redacted}"
        );
    }
}
