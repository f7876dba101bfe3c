//! What every URL scheme shares: how a backend declares its scheme
//! ([`SchemeInfo`] is the public view of that declaration), the typed
//! query parameters of its URL, byte sizes, the redaction of secrets and
//! "did you mean" suggestions.
//!
//! Backends read their URLs with this module; the registry and the manager
//! build on it. It imports neither.
//!
//! # Parameter values
//!
//! Every scheme reads its parameters the same way:
//!
//! | kind      | accepted                                                             |
//! |-----------|----------------------------------------------------------------------|
//! | flag      | `true`, `false`, `1`, `0`, `yes`, `no`, `on`, `off` (any case)       |
//! | integer   | a whole number, e.g. `10000`                                         |
//! | byte size | a whole number with an optional unit: `B`, `KB`, `MB`, `GB`, `TB` (powers of 1000), `KiB`, `MiB`, `GiB`, `TiB` (powers of 1024), any case: `4096`, `64MiB`, `1 GB` |
//! | duration  | `150ms`, `30s`, `5m`, `1h 30m`, at most [`MAX_DURATION`] (100 years) |
//!
//! Key and value limits (`max_key_len`, `max_value_len`) are byte sizes in
//! every scheme. Names and values are percent-decoded (`+` is a space) and
//! must be UTF-8; an unknown, repeated or malformed parameter is an
//! [`ErrorKind::Config`](crate::ErrorKind::Config) error that names the
//! scheme and the parameter, never a secret's value.

// Each backend uses some of the URL helpers; a build without some backends
// leaves the others unused.
#![cfg_attr(
    not(all(
        feature = "memory",
        feature = "file",
        feature = "redb",
        feature = "redis"
    )),
    allow(dead_code)
)]

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use percent_encoding::percent_decode_str;
use url::Url;

use crate::backend::{Backend, Capabilities};
use crate::error::{Error, Result};

/// A URL scheme cachette knows, as [`schemes`](crate::schemes) lists it.
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

/// The backend a URL opens, once it is ready.
pub(crate) type Opening<'a> = BoxFuture<'a, Result<Arc<dyn Backend>>>;

/// A scheme as its backend declares it, once, in the backend's `url.rs`;
/// the registry lists these declarations.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scheme {
    /// The URL scheme, e.g. `memory`.
    pub(crate) name: &'static str,
    /// The cargo feature that compiles the backend in.
    pub(crate) feature: &'static str,
    /// One line about the backend.
    pub(crate) description: &'static str,
    /// What the backend guarantees with its default options.
    pub(crate) capabilities: fn() -> Capabilities,
    /// Opens a backend from a whole URL of this scheme.
    pub(crate) open: for<'a> fn(&'a str) -> Opening<'a>,
}

impl Scheme {
    /// The public view of a compiled-in scheme.
    pub(crate) fn info(&self) -> SchemeInfo {
        SchemeInfo {
            scheme: self.name,
            feature: self.feature,
            enabled: true,
            description: self.description,
            capabilities: Some((self.capabilities)()),
        }
    }
}

impl SchemeInfo {
    /// A scheme that is not compiled in: its feature is off, or its
    /// backend is not written yet.
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
    pub(crate) const fn absent(
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

/// Parses a whole URL, with an error that names what was expected and
/// never shows a password.
pub(crate) fn parse_url(url: &str, backend: &'static str) -> Result<Url> {
    Url::parse(url).map_err(|err| {
        Error::config(
            backend,
            format!(
                "cannot parse the URL `{}`; expected `scheme://...`, e.g. `memory://?max_entries=10000`",
                redact(url)
            ),
        )
        .with_source(err)
    })
}

/// Rejects a `#fragment`, which no scheme uses.
pub(crate) fn no_fragment(url: &Url, backend: &'static str) -> Result<()> {
    match url.fragment() {
        Some(_) => Err(Error::config(
            backend,
            format!("{}:// takes no `#fragment`", url.scheme()),
        )),
        None => Ok(()),
    }
}

/// Rejects a user name or a password; `hint` says what the URL holds
/// instead.
pub(crate) fn no_userinfo(url: &Url, backend: &'static str, hint: &str) -> Result<()> {
    if url.username().is_empty() && url.password().is_none() {
        return Ok(());
    }
    Err(Error::config(
        backend,
        format!("{}:// takes no user or password; {hint}", url.scheme()),
    ))
}

/// Rejects a host (other than those in `allowed`, such as `localhost` for
/// a local path) or a port; `hint` says what the URL holds instead.
pub(crate) fn no_host(
    url: &Url,
    backend: &'static str,
    allowed: &[&str],
    hint: &str,
) -> Result<()> {
    let host = url.host_str().unwrap_or("");
    if (host.is_empty() || allowed.contains(&host)) && url.port().is_none() {
        return Ok(());
    }
    Err(Error::config(
        backend,
        format!("{}:// takes no host or port; {hint}", url.scheme()),
    ))
}

/// Percent-decodes one part of a URL into UTF-8 text. A `%` that does not
/// start an escape, or bytes that are not UTF-8, are errors naming `what`
/// (never its text, which may be a password).
pub(crate) fn decode(text: &str, backend: &'static str, what: &str) -> Result<String> {
    let bytes = text.as_bytes();
    let malformed = bytes.iter().enumerate().any(|(i, &byte)| {
        byte == b'%'
            && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    });
    if malformed {
        return Err(Error::config(
            backend,
            format!("{what} has a malformed percent escape (write a `%` as `%25`)"),
        ));
    }
    percent_decode_str(text)
        .decode_utf8()
        .map(|text| text.into_owned())
        .map_err(|_| {
            Error::config(
                backend,
                format!("{what} is not valid UTF-8 once percent-decoded"),
            )
        })
}

/// The query parameters of a URL, checked against the names a scheme
/// accepts, and typed accessors that take each one out (see the
/// [module docs](self) for the accepted forms).
pub(crate) struct UrlParams {
    backend: &'static str,
    scheme: String,
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

impl UrlParams {
    /// Reads the query of `url`. `known` lists the parameters of its scheme
    /// in groups (a wrapping scheme's own, then its inner backend's); an
    /// unknown or repeated parameter is an error naming the scheme, all of
    /// them and the nearest.
    pub(crate) fn parse(url: &Url, backend: &'static str, known: &[&[&str]]) -> Result<Self> {
        let scheme = url.scheme().to_owned();
        let mut values = BTreeMap::new();
        let pairs = url.query().unwrap_or("").split('&');
        for pair in pairs.filter(|pair| !pair.is_empty()) {
            let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = decode(&raw_name.replace('+', " "), backend, "a parameter name")?;
            let all = known.iter().flat_map(|group| group.iter().copied());
            if !all.clone().any(|candidate| candidate == name) {
                return Err(Error::config(
                    backend,
                    format!(
                        "unknown parameter `{name}` for {scheme}://; expected one of {}{}",
                        all.clone().collect::<Vec<_>>().join(", "),
                        did_you_mean(&name, all)
                    ),
                ));
            }
            let value = decode(
                &raw_value.replace('+', " "),
                backend,
                &format!("parameter `{name}`"),
            )?;
            if values.insert(name.clone(), value).is_some() {
                return Err(Error::config(
                    backend,
                    format!("parameter `{name}` is given more than once; give it once"),
                ));
            }
        }
        Ok(UrlParams {
            backend,
            scheme,
            values,
        })
    }

    /// An error about the value of parameter `name`. Never echoes the value
    /// of a secret.
    fn bad_value(&self, name: &str, expected: &str, value: &str) -> Error {
        let shown = if is_secret_name(name) { "***" } else { value };
        Error::config(
            self.backend,
            format!("parameter `{name}`: expected {expected}, got `{shown}`"),
        )
    }

    /// Takes a value out and reads it with `read`, whose `Err` names what
    /// was expected.
    fn take<T>(
        &mut self,
        name: &str,
        read: impl FnOnce(&str) -> std::result::Result<T, String>,
    ) -> Result<Option<T>> {
        let Some(value) = self.values.remove(name) else {
            return Ok(None);
        };
        read(value.trim())
            .map(Some)
            .map_err(|expected| self.bad_value(name, &expected, &value))
    }

    /// A value as text, as written (after percent-decoding).
    pub(crate) fn text(&mut self, name: &str) -> Option<String> {
        self.values.remove(name)
    }

    /// A flag: `true`/`false`, `1`/`0`, `yes`/`no` or `on`/`off`.
    pub(crate) fn flag(&mut self, name: &str) -> Result<Option<bool>> {
        self.take(name, |value| match value.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err("`true` or `false` (also 1/0, yes/no, on/off)".to_owned()),
        })
    }

    /// A non-negative integer of type `T`.
    pub(crate) fn integer<T: FromStr>(&mut self, name: &str) -> Result<Option<T>> {
        self.take(name, |value| {
            value.parse().map_err(|_| "an integer".to_owned())
        })
    }

    /// A size in bytes: an integer with an optional unit.
    pub(crate) fn bytes(&mut self, name: &str) -> Result<Option<u64>> {
        self.take(name, |value| {
            parse_byte_size(value).ok_or_else(|| {
                "a size in bytes such as `64MiB` (an integer with an optional unit: KiB, MiB, GiB, KB, MB, GB)"
                    .to_owned()
            })
        })
    }

    /// A size in bytes held in memory, such as a key or value limit: a
    /// byte size that must fit this platform's `usize`.
    pub(crate) fn byte_len(&mut self, name: &str) -> Result<Option<usize>> {
        let Some(bytes) = self.bytes(name)? else {
            return Ok(None);
        };
        usize::try_from(bytes).map(Some).map_err(|_| {
            Error::config(
                self.backend,
                format!("parameter `{name}`: {bytes} bytes do not fit in this platform's usize"),
            )
        })
    }

    /// A duration in humantime form (`150ms`, `5m`, `1h 30m`), at most
    /// [`MAX_DURATION`].
    pub(crate) fn duration(&mut self, name: &str) -> Result<Option<Duration>> {
        self.take(name, parse_duration)
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
                self.backend,
                format!("parameter `{name}`: {}", err.message()),
            )
        })
    }
}

/// A URL with several comma-separated `host:port` nodes, which the `url`
/// crate cannot parse: its parts, the query on a URL of its own so that it
/// goes through the common parameter checks.
pub(crate) struct MultiHostUrl<'a> {
    /// `user[:password]`, still percent-encoded.
    pub(crate) userinfo: Option<&'a str>,
    /// The nodes, in order.
    pub(crate) nodes: Vec<(String, u16)>,
    /// From the first `/` after the nodes to the query.
    pub(crate) path: &'a str,
    /// The query, on a URL of its own.
    pub(crate) query: Url,
}

impl<'a> MultiHostUrl<'a> {
    /// Splits `url` of `scheme`; a node without a port gets `default_port`.
    /// `bad` makes the error for a malformed URL.
    pub(crate) fn parse(
        url: &'a str,
        scheme: &str,
        default_port: u16,
        bad: impl Fn(&str) -> Error,
    ) -> Result<Self> {
        let rest = url
            .strip_prefix(scheme)
            .and_then(|rest| rest.strip_prefix("://"))
            .ok_or_else(|| bad(&format!("not a `{scheme}://` URL")))?;
        if rest.contains('#') {
            return Err(bad("the URL takes no `#fragment`"));
        }
        let (head, query) = match rest.split_once('?') {
            Some((head, query)) => (head, Some(query)),
            None => (rest, None),
        };
        // The user info goes first, before the nodes and the path are
        // split: it ends at the last `@` before the query, so a password
        // may hold `/`, `,`, `:` or `@` and none of it is read as a node.
        let (userinfo, head) = match head.rfind('@') {
            Some(at) => (Some(&head[..at]), &head[at + 1..]),
            None => (None, head),
        };
        if userinfo.is_none() && query.is_some_and(|query| query.contains('@')) {
            // A password holding `?` or a query holding `@`: which one
            // cannot be told, and a guess could show a password.
            return Err(bad(
                "an `@` after the `?`: percent-encode a `?` in the password (`%3F`) \
                 and an `@` in the query (`%40`)",
            ));
        }
        let (hosts, path) = match head.find('/') {
            Some(slash) => (&head[..slash], &head[slash..]),
            None => (head, ""),
        };
        let nodes = hosts
            .split(',')
            .map(|node| parse_node(node.trim(), default_port, &bad))
            .collect::<Result<Vec<_>>>()?;
        let query = Url::parse(&format!("{scheme}://nodes/?{}", query.unwrap_or("")))
            .map_err(|err| bad("cannot read the query").with_source(err))?;
        Ok(MultiHostUrl {
            userinfo,
            nodes,
            path,
            query,
        })
    }
}

/// One `host[:port]` or `[v6][:port]` node of a multi-host URL.
fn parse_node(node: &str, default_port: u16, bad: impl Fn(&str) -> Error) -> Result<(String, u16)> {
    if node.is_empty() {
        return Err(bad("a node is empty"));
    }
    let (host, port) = if let Some(v6) = node.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| bad("an IPv6 address lacks its `]`"))?;
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => return Err(bad(&format!("cannot read the node `{node}`"))),
        }
    } else {
        match node.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (node, None),
        }
    };
    if host.is_empty() {
        return Err(bad(&format!("the node `{node}` names no host")));
    }
    let port = match port {
        None => default_port,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| bad(&format!("the node `{node}` has a bad port")))?,
    };
    Ok((host.to_owned(), port))
}

/// The longest duration a URL or a configuration file may give: 100
/// years (of 365.25 days). Longer ones, which no deadline needs, are
/// [`ErrorKind::Config`](crate::ErrorKind::Config) errors naming the
/// option, so that no clock arithmetic on them can overflow; to mean
/// "never", leave the option out.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 31_557_600);

/// Reads a duration in humantime form (`150ms`, `30s`, `5m`, `1h 30m`) of
/// at most [`MAX_DURATION`]; the `Err` says what was expected.
pub(crate) fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    const EXPECTED: &str = "a duration such as `150ms`, `30s` or `5m`";
    match humantime::parse_duration(text.trim()) {
        Ok(duration) if duration <= MAX_DURATION => Ok(duration),
        Ok(_) => Err(format!("{EXPECTED}, of at most 100 years")),
        // humantime reports an overflow as an error of its own.
        Err(humantime::DurationError::NumberOverflow) => {
            Err(format!("{EXPECTED}, of at most 100 years"))
        }
        Err(_) => Err(EXPECTED.to_owned()),
    }
}

/// Parses a byte size: a whole number with an optional unit, `B`, `KB`,
/// `MB`, `GB`, `TB` (powers of 1000) or `KiB`, `MiB`, `GiB`, `TiB` (powers
/// of 1024), case-insensitive, with or without a space: `64`, `4KiB`,
/// `1 MB`. `None` for anything else or on overflow.
///
/// ```
/// assert_eq!(cachette::params::parse_byte_size("64MiB"), Some(64 << 20));
/// assert_eq!(cachette::params::parse_byte_size("ten"), None);
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
/// use cachette::params::redact;
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
    // A parameter's value may be a URL of its own (an S3 `endpoint`), with
    // a password of its own: it is redacted the same way.
    let hidden = |name: &str, value: &str| {
        if is_secret_name(name) {
            Some("***".to_owned())
        } else if value.contains("://") {
            Some(redact(value)).filter(|redacted| redacted != value)
        } else {
            None
        }
    };
    if parsed
        .query_pairs()
        .any(|(name, value)| hidden(&name, &value).is_some())
    {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(name, value)| {
                let value = hidden(&name, &value).unwrap_or_else(|| value.into_owned());
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

/// `"; did you mean `x`?"` when one of `candidates` is a likely typo of
/// `word`, else `""`.
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> String {
    candidates
        .into_iter()
        .map(|candidate| (edit_distance(word, candidate), candidate))
        .filter(|&(distance, candidate)| distance > 0 && distance <= (candidate.len() / 3).max(1))
        .min_by_key(|&(distance, _)| distance)
        .map_or_else(String::new, |(_, candidate)| {
            format!("; did you mean `{candidate}`?")
        })
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = Vec::with_capacity(b.len() + 1);
        current.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests;
