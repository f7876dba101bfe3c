//! The `redis://`, `rediss://`, `redis+unix://`, `redis+cluster://` and
//! `redis+sentinel://` URL forms, opened by [`crate::open`].

use std::sync::Arc;

use ::url::Url;

use super::{NAME, RedisBuilder};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::manager::url::{UrlParams, redact};

/// The parameters every form takes.
const PARAMS: &[&str] = &[
    "prefix",
    "connect_timeout",
    "response_timeout",
    "default_ttl",
    "tags",
];
/// The parameters of `rediss://`.
const TLS_PARAMS: &[&str] = &[
    "prefix",
    "connect_timeout",
    "response_timeout",
    "default_ttl",
    "tags",
    "ca_cert",
    "insecure_hostname",
];
/// The parameters of `redis+unix://`.
const UNIX_PARAMS: &[&str] = &[
    "prefix",
    "connect_timeout",
    "response_timeout",
    "default_ttl",
    "tags",
    "db",
];

/// The default port of Redis.
const DEFAULT_PORT: u16 = 6379;

/// Builds a Redis backend from its URL:
/// `redis://[user[:password]@]host[:port][/db]?prefix=app:&connect_timeout=1s&response_timeout=1s&default_ttl=5m&tags=true`,
/// `rediss://...` with `ca_cert=/path/ca.pem` and `insecure_hostname=true`,
/// or `redis+unix:///path/redis.sock?db=0&...`.
pub(crate) async fn open(url: &Url) -> Result<Arc<dyn Backend>> {
    Ok(Arc::new(builder(url)?.build().await?))
}

/// The builder a URL describes (without connecting).
pub(crate) fn builder(url: &Url) -> Result<RedisBuilder> {
    let shown = redact(url.as_str());
    if url.fragment().is_some() {
        return Err(Error::config(
            NAME,
            format!("{shown}: a Redis URL takes no `#fragment`"),
        ));
    }
    let scheme = url.scheme();
    let (mut builder, mut params) = match scheme {
        "redis" | "rediss" => {
            let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| {
                Error::config(
                    NAME,
                    format!("{shown}: the URL names no host, e.g. `redis://127.0.0.1:6379/0`"),
                )
            })?;
            // `[::1]` comes back with its brackets.
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let port = url.port().unwrap_or(DEFAULT_PORT);
            let tls = scheme == "rediss";
            let known = if tls { TLS_PARAMS } else { PARAMS };
            let mut builder = RedisBuilder::new(host, port).tls(tls);
            let db = url.path().trim_matches('/');
            if !db.is_empty() {
                let db = db
                    .parse::<i64>()
                    .ok()
                    .filter(|db| *db >= 0)
                    .ok_or_else(|| {
                        Error::config(
                            NAME,
                            format!("{shown}: the path must be a database number, e.g. `/0`"),
                        )
                    })?;
                builder = builder.db(db);
            }
            (builder, UrlParams::parse(url, NAME, known)?)
        }
        "redis+unix" => {
            if url.host_str().is_some_and(|h| !h.is_empty()) || url.port().is_some() {
                return Err(Error::config(
                    NAME,
                    format!(
                        "{shown}: a Unix socket URL takes no host, e.g. `redis+unix:///run/redis.sock`"
                    ),
                ));
            }
            if url.path().is_empty() || url.path() == "/" {
                return Err(Error::config(
                    NAME,
                    format!(
                        "{shown}: the URL names no socket path, e.g. `redis+unix:///run/redis.sock`"
                    ),
                ));
            }
            let builder = RedisBuilder::new("", 0).unix(url.path());
            let mut params = UrlParams::parse(url, NAME, UNIX_PARAMS)?;
            let builder = match params.integer::<i64>("db")? {
                Some(db) => builder.db(db),
                None => builder,
            };
            (builder, params)
        }
        other => {
            return Err(Error::config(
                NAME,
                format!("`{other}` is not a Redis scheme"),
            ));
        }
    };
    if !url.username().is_empty() {
        let user = percent_decode(url.username());
        builder = builder.username(user);
    }
    if let Some(password) = url.password() {
        builder = builder.password(percent_decode(password));
    }
    if let Some(prefix) = text_param(url, "prefix") {
        builder = builder.prefix(prefix);
    }
    if let Some(timeout) = params.duration("connect_timeout")? {
        builder = builder.connect_timeout(timeout);
    }
    if let Some(timeout) = params.duration("response_timeout")? {
        builder = builder.response_timeout(timeout);
    }
    if let Some(ttl) = params.duration("default_ttl")? {
        builder = builder.default_ttl(ttl);
    }
    if let Some(tags) = bool_param(url, "tags")? {
        builder = builder.tags(tags);
    }
    if let Some(path) = text_param(url, "ca_cert") {
        let pem = std::fs::read(&path).map_err(|err| {
            Error::config(NAME, format!("parameter `ca_cert`: cannot read `{path}`"))
                .with_source(err)
        })?;
        builder = builder.root_certificate_pem(pem);
    }
    if let Some(insecure) = bool_param(url, "insecure_hostname")? {
        builder = builder.danger_accept_invalid_hostnames(insecure);
    }
    Ok(builder)
}

/// A `true`/`false` parameter (also `1`/`0`, `yes`/`no`).
fn bool_param(url: &Url, name: &str) -> Result<Option<bool>> {
    let Some(text) = text_param(url, name) else {
        return Ok(None);
    };
    match text.trim() {
        "true" | "1" | "yes" => Ok(Some(true)),
        "false" | "0" | "no" => Ok(Some(false)),
        other => Err(Error::config(
            NAME,
            format!("parameter `{name}`: expected `true` or `false`, got `{other}`"),
        )),
    }
}

/// A parameter taken as text. [`UrlParams::parse`] has already rejected
/// unknown and repeated names.
fn text_param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// Decodes `%XX` escapes of the user info (a password may hold `@` or `:`).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The parameters of `redis+cluster://`.
const CLUSTER_PARAMS: &[&str] = &[
    "prefix",
    "connect_timeout",
    "response_timeout",
    "default_ttl",
    "tags",
];
/// The parameters of `redis+sentinel://`.
const SENTINEL_PARAMS: &[&str] = &[
    "prefix",
    "connect_timeout",
    "response_timeout",
    "default_ttl",
    "tags",
    "sentinel_username",
    "sentinel_password",
];

/// The default port of Redis Sentinel.
const DEFAULT_SENTINEL_PORT: u16 = 26379;

/// A URL with several comma-separated `host:port` nodes, which the `url`
/// crate cannot parse: its parts, the query on a URL of its own so that it
/// goes through the common parameter checks.
struct MultiHostUrl<'a> {
    userinfo: Option<&'a str>,
    nodes: Vec<(String, u16)>,
    /// From the first `/` after the nodes to the query.
    path: &'a str,
    query: Url,
}

impl<'a> MultiHostUrl<'a> {
    /// Splits `url` of `scheme`; a node without a port gets `default_port`.
    /// `bad` makes the error for a malformed URL.
    fn parse(
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
            return Err(bad("a Redis URL takes no `#fragment`"));
        }
        let (head, query) = match rest.split_once('?') {
            Some((head, query)) => (head, Some(query)),
            None => (rest, None),
        };
        let (authority, path) = match head.find('/') {
            Some(slash) => (&head[..slash], &head[slash..]),
            None => (head, ""),
        };
        // The user info ends at the last `@` (a password may hold `@` as %40).
        let (userinfo, hosts) = match authority.rfind('@') {
            Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
            None => (None, authority),
        };
        let mut nodes = Vec::new();
        for node in hosts.split(',') {
            let node = node.trim();
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
            nodes.push((host.to_owned(), port));
        }
        let query = Url::parse(&format!("{scheme}://nodes/?{}", query.unwrap_or("")))
            .map_err(|err| bad("cannot read the query").with_source(err))?;
        Ok(MultiHostUrl {
            userinfo,
            nodes,
            path,
            query,
        })
    }

    /// Applies the user info and the parameters every form takes to
    /// `builder`; returns the parameters left for the caller.
    fn configure(
        &self,
        mut builder: RedisBuilder,
        known: &[&'static str],
    ) -> Result<(RedisBuilder, UrlParams)> {
        if let Some(info) = self.userinfo {
            let (user, password) = match info.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (info, None),
            };
            if !user.is_empty() {
                builder = builder.username(percent_decode(user));
            }
            if let Some(password) = password {
                builder = builder.password(percent_decode(password));
            }
        }
        let mut params = UrlParams::parse(&self.query, NAME, known)?;
        if let Some(prefix) = text_param(&self.query, "prefix") {
            builder = builder.prefix(prefix);
        }
        if let Some(timeout) = params.duration("connect_timeout")? {
            builder = builder.connect_timeout(timeout);
        }
        if let Some(timeout) = params.duration("response_timeout")? {
            builder = builder.response_timeout(timeout);
        }
        if let Some(ttl) = params.duration("default_ttl")? {
            builder = builder.default_ttl(ttl);
        }
        if let Some(tags) = bool_param(&self.query, "tags")? {
            builder = builder.tags(tags);
        }
        Ok((builder, params))
    }
}

/// Builds a Redis Cluster backend from its URL:
/// `redis+cluster://[user[:password]@]host1:port1,host2:port2,...[/][?prefix=..&connect_timeout=..&response_timeout=..&default_ttl=..]`.
/// The `url` crate cannot parse several hosts, so the authority is split
/// here; the query goes through the common parameter checks.
pub(crate) async fn open_cluster(url: &str) -> Result<Arc<dyn Backend>> {
    Ok(Arc::new(cluster_builder(url)?.build().await?))
}

/// The builder a `redis+cluster://` URL describes (without connecting).
pub(crate) fn cluster_builder(url: &str) -> Result<RedisBuilder> {
    let shown = redact(url);
    let bad = |what: &str| {
        Error::config(
            NAME,
            format!(
                "{shown}: {what}; expected `redis+cluster://[user[:password]@]host1:port1,host2:port2[?prefix=...]`"
            ),
        )
    };
    let parts = MultiHostUrl::parse(url, "redis+cluster", DEFAULT_PORT, bad)?;
    if !matches!(parts.path, "" | "/" | "/0") {
        return Err(bad(
            "a cluster has database 0 only, so the URL takes no path but `/0`",
        ));
    }
    let builder = RedisBuilder::new_cluster(parts.nodes.clone());
    let (builder, _) = parts.configure(builder, CLUSTER_PARAMS)?;
    Ok(builder)
}

/// Builds a backend on the master that Redis Sentinel names, from its URL:
/// `redis+sentinel://[user[:password]@]host1:port1,host2:port2/MASTER[/db][?prefix=..&connect_timeout=..&response_timeout=..&default_ttl=..&sentinel_username=..&sentinel_password=..]`.
/// The hosts are the sentinels (port 26379 by default); user, password
/// and database are the data nodes'.
pub(crate) async fn open_sentinel(url: &str) -> Result<Arc<dyn Backend>> {
    Ok(Arc::new(sentinel_builder(url)?.build().await?))
}

/// The builder a `redis+sentinel://` URL describes (without connecting).
pub(crate) fn sentinel_builder(url: &str) -> Result<RedisBuilder> {
    let shown = redact(url);
    let bad = |what: &str| {
        Error::config(
            NAME,
            format!(
                "{shown}: {what}; expected `redis+sentinel://[user[:password]@]host1:port1,host2:port2/MASTER_NAME[/db][?prefix=...]`"
            ),
        )
    };
    let parts = MultiHostUrl::parse(url, "redis+sentinel", DEFAULT_SENTINEL_PORT, bad)?;
    let mut path = parts.path.trim_start_matches('/').splitn(2, '/');
    let master = percent_decode(path.next().unwrap_or_default());
    if master.is_empty() {
        return Err(bad("the URL names no master"));
    }
    let mut builder = RedisBuilder::new_sentinel(parts.nodes.clone(), master);
    match path.next().map(|db| db.trim_end_matches('/')) {
        None | Some("") => {}
        Some(db) => {
            let db = db
                .parse::<i64>()
                .ok()
                .filter(|db| *db >= 0)
                .ok_or_else(|| bad("after the master's name the path holds a database number"))?;
            builder = builder.db(db);
        }
    }
    let (mut builder, _) = parts.configure(builder, SENTINEL_PARAMS)?;
    if let Some(user) = text_param(&parts.query, "sentinel_username") {
        builder = builder.sentinel_username(user);
    }
    if let Some(password) = text_param(&parts.query, "sentinel_password") {
        builder = builder.sentinel_password(password);
    }
    Ok(builder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_name_every_seed_node() {
        let builder = cluster_builder(
            "redis+cluster://app:p%40ss@10.0.0.1:7000,10.0.0.2,[::1]:7002/?prefix=a:&connect_timeout=250ms",
        )
        .unwrap();
        let shown = format!("{builder:?}");
        assert!(shown.contains("\"10.0.0.1\", 7000"), "{shown}");
        assert!(shown.contains("\"10.0.0.2\", 6379"), "{shown}");
        assert!(shown.contains("\"::1\", 7002"), "{shown}");
        assert!(shown.contains("\"a:\""), "{shown}");
        assert!(shown.contains("250ms"), "{shown}");
        assert!(
            !shown.contains("p@ss") && !shown.contains("p%40ss"),
            "{shown}"
        );
        for (url, needle) in [
            ("redis+cluster://h:1,,h:2", "empty"),
            ("redis+cluster://h:x", "bad port"),
            ("redis+cluster://h:1/3", "database 0"),
            ("redis+cluster://h:1?prefx=a", "unknown parameter `prefx`"),
            ("redis+cluster://u:secret@h:1#f", "fragment"),
        ] {
            let err = cluster_builder(url).unwrap_err();
            assert!(err.message().contains(needle), "{url}: {err}");
            assert!(!err.message().contains("secret"), "{url}: {err}");
        }
    }

    #[test]
    fn sentinel_urls_name_the_sentinels_the_master_and_the_database() {
        let builder = sentinel_builder(
            "redis+sentinel://app:p%40ss@10.0.0.1:26380,10.0.0.2,[::1]:26381/my%20master/3?prefix=a:&sentinel_password=s3nt&response_timeout=250ms",
        )
        .unwrap();
        let shown = format!("{builder:?}");
        assert!(shown.contains("\"10.0.0.1\", 26380"), "{shown}");
        assert!(shown.contains("\"10.0.0.2\", 26379"), "{shown}");
        assert!(shown.contains("\"::1\", 26381"), "{shown}");
        assert!(shown.contains("master: \"my master\""), "{shown}");
        assert!(shown.contains("db: 3"), "{shown}");
        assert!(shown.contains("username: Some(\"app\")"), "{shown}");
        assert!(shown.contains("\"a:\""), "{shown}");
        assert!(shown.contains("250ms"), "{shown}");
        for secret in ["p@ss", "p%40ss", "s3nt"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        let plain = format!("{:?}", sentinel_builder("redis+sentinel://h/m").unwrap());
        assert!(plain.contains("db: 0"), "{plain}");
        for (url, needle) in [
            ("redis+sentinel://h:1", "names no master"),
            ("redis+sentinel://h:1/", "names no master"),
            ("redis+sentinel://h:1/m/x", "database number"),
            ("redis+sentinel://h:1/m/-1", "database number"),
            ("redis+sentinel://h:1,/m", "empty"),
            ("redis+sentinel://h:0/m", "bad port"),
            (
                "redis+sentinel://h:1/m?prefx=a",
                "unknown parameter `prefx`",
            ),
            ("redis+sentinel://u:secret@h:1/m#f", "fragment"),
            (
                "redis+sentinel://u:secret@h:1/m?sentinel_password=secret&x=1",
                "unknown parameter `x`",
            ),
        ] {
            let err = sentinel_builder(url).unwrap_err();
            assert!(err.message().contains(needle), "{url}: {err}");
            assert!(!err.message().contains("secret"), "{url}: {err}");
        }
    }
}
