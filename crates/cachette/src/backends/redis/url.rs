//! The `redis://`, `rediss://`, `redis+unix://`, `redis+cluster://` and
//! `redis+sentinel://` URL forms, opened by [`crate::open`], and their
//! declarations.

use std::sync::Arc;

use ::url::Url;

use super::{NAME, RedisBackend, RedisBuilder};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::params::{
    MultiHostUrl, Opening, Scheme, UrlParams, decode, no_fragment, parse_url, redact,
};

/// A Redis scheme: enabled by the `redis` feature.
const fn scheme(
    name: &'static str,
    description: &'static str,
    open: for<'a> fn(&'a str) -> Opening<'a>,
) -> Scheme {
    Scheme {
        name,
        feature: "redis",
        description,
        capabilities: RedisBackend::default_capabilities,
        open,
    }
}

/// The Redis schemes.
pub(crate) const SCHEMES: &[Scheme] = &[
    scheme("redis", "Redis, standalone", open_standalone),
    scheme("rediss", "Redis, standalone, over TLS", open_standalone),
    scheme("redis+unix", "Redis over a Unix socket", open_standalone),
    scheme(
        "redis+cluster",
        "Redis Cluster (comma-separated seed nodes)",
        open_cluster,
    ),
    scheme(
        "redis+sentinel",
        "Redis behind Sentinel (comma-separated sentinels, then the master's name)",
        open_sentinel,
    ),
];

/// The parameters every form takes.
const PARAMS: &[&str] = &[
    "prefix",
    "connect_timeout",
    "response_timeout",
    "default_ttl",
    "tags",
];
/// The parameters `rediss://` adds.
const TLS_PARAMS: &[&str] = &["ca_cert", "insecure_hostname"];
/// The parameters `redis+unix://` adds.
const UNIX_PARAMS: &[&str] = &["db"];
/// The parameters `redis+sentinel://` adds.
const SENTINEL_PARAMS: &[&str] = &["sentinel_username", "sentinel_password"];

/// The default port of Redis.
const DEFAULT_PORT: u16 = 6379;

/// The parameters of a standalone scheme (`redis`, `rediss` or
/// `redis+unix`), in groups for [`UrlParams::parse`].
pub(crate) fn standalone_params(scheme: &str) -> &'static [&'static [&'static str]] {
    match scheme {
        "rediss" => &[PARAMS, TLS_PARAMS],
        "redis+unix" => &[PARAMS, UNIX_PARAMS],
        _ => &[PARAMS],
    }
}

/// Builds a Redis backend from its URL:
/// `redis://[user[:password]@]host[:port][/db]?prefix=app:&connect_timeout=1s&response_timeout=1s&default_ttl=5m&tags=true`,
/// `rediss://...` with `ca_cert=/path/ca.pem` and `insecure_hostname=true`,
/// or `redis+unix:///path/redis.sock?db=0&...`.
fn open_standalone(url: &str) -> Opening<'_> {
    Box::pin(async move {
        let url = parse_url(url, NAME)?;
        no_fragment(&url, NAME)?;
        let mut params = UrlParams::parse(&url, NAME, standalone_params(url.scheme()))?;
        let backend: Arc<dyn Backend> = Arc::new(standalone(&url, &mut params)?.build().await?);
        Ok(backend)
    })
}

/// The builder a standalone URL describes (without connecting), its query
/// already read into `params` (a wrapping scheme adds its own parameters
/// there).
pub(crate) fn standalone(url: &Url, params: &mut UrlParams) -> Result<RedisBuilder> {
    let shown = redact(url.as_str());
    let mut builder = match url.scheme() {
        "redis" | "rediss" => tcp(url, &shown)?,
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
            let path = decode(url.path(), NAME, "the socket path")?;
            let builder = RedisBuilder::new("", 0).unix(path);
            match params.integer::<i64>("db")? {
                Some(db) => builder.db(db),
                None => builder,
            }
        }
        other => {
            return Err(Error::config(
                NAME,
                format!("`{other}` is not a Redis scheme"),
            ));
        }
    };
    if !url.username().is_empty() {
        builder = builder.username(decode(url.username(), NAME, "the user name")?);
    }
    if let Some(password) = url.password() {
        builder = builder.password(decode(password, NAME, "the password")?);
    }
    builder = common(builder, params)?;
    if let Some(path) = params.text("ca_cert") {
        let pem = std::fs::read(&path).map_err(|err| {
            Error::config(NAME, format!("parameter `ca_cert`: cannot read `{path}`"))
                .with_source(err)
        })?;
        builder = builder.root_certificate_pem(pem);
    }
    if let Some(insecure) = params.flag("insecure_hostname")? {
        builder = builder.danger_accept_invalid_hostnames(insecure);
    }
    Ok(builder)
}

/// The host, port, TLS and database of a `redis://` or `rediss://` URL.
fn tcp(url: &Url, shown: &str) -> Result<RedisBuilder> {
    let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| {
        Error::config(
            NAME,
            format!("{shown}: the URL names no host, e.g. `redis://127.0.0.1:6379/0`"),
        )
    })?;
    // `[::1]` comes back with its brackets.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = url.port().unwrap_or(DEFAULT_PORT);
    let mut builder = RedisBuilder::new(host, port).tls(url.scheme() == "rediss");
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
    Ok(builder)
}

/// Applies the parameters every form takes.
fn common(mut builder: RedisBuilder, params: &mut UrlParams) -> Result<RedisBuilder> {
    if let Some(prefix) = params.text("prefix") {
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
    if let Some(tags) = params.flag("tags")? {
        builder = builder.tags(tags);
    }
    Ok(builder)
}

/// The default port of Redis Sentinel.
const DEFAULT_SENTINEL_PORT: u16 = 26379;

/// Applies the user info and the parameters every form takes to
/// `builder`; returns the parameters left for the caller.
fn configure(
    parts: &MultiHostUrl<'_>,
    mut builder: RedisBuilder,
    known: &[&[&str]],
) -> Result<(RedisBuilder, UrlParams)> {
    if let Some(info) = parts.userinfo {
        let (user, password) = match info.split_once(':') {
            Some((user, password)) => (user, Some(password)),
            None => (info, None),
        };
        if !user.is_empty() {
            builder = builder.username(decode(user, NAME, "the user name")?);
        }
        if let Some(password) = password {
            builder = builder.password(decode(password, NAME, "the password")?);
        }
    }
    let mut params = UrlParams::parse(&parts.query, NAME, known)?;
    let builder = common(builder, &mut params)?;
    Ok((builder, params))
}

/// Builds a Redis Cluster backend from its URL:
/// `redis+cluster://[user[:password]@]host1:port1,host2:port2,...[/][?prefix=..&connect_timeout=..&response_timeout=..&default_ttl=..]`.
/// The `url` crate cannot parse several hosts, so the authority is split
/// here; the query goes through the common parameter checks.
fn open_cluster(url: &str) -> Opening<'_> {
    Box::pin(async move {
        let backend: Arc<dyn Backend> = Arc::new(cluster_builder(url)?.build().await?);
        Ok(backend)
    })
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
    let (builder, _) = configure(&parts, builder, &[PARAMS])?;
    Ok(builder)
}

/// Builds a backend on the master that Redis Sentinel names, from its URL:
/// `redis+sentinel://[user[:password]@]host1:port1,host2:port2/MASTER[/db][?prefix=..&connect_timeout=..&response_timeout=..&default_ttl=..&sentinel_username=..&sentinel_password=..]`.
/// The hosts are the sentinels (port 26379 by default); user, password
/// and database are the data nodes'.
fn open_sentinel(url: &str) -> Opening<'_> {
    Box::pin(async move {
        let backend: Arc<dyn Backend> = Arc::new(sentinel_builder(url)?.build().await?);
        Ok(backend)
    })
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
    let master = decode(path.next().unwrap_or_default(), NAME, "the master's name")?;
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
    let (mut builder, mut params) = configure(&parts, builder, &[PARAMS, SENTINEL_PARAMS])?;
    if let Some(user) = params.text("sentinel_username") {
        builder = builder.sentinel_username(user);
    }
    if let Some(password) = params.text("sentinel_password") {
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

#[cfg(test)]
mod password_tests {
    use super::*;

    /// Malformed multi-host URLs whose password holds URL delimiters: the
    /// password, or any piece of it, never shows in the error.
    #[test]
    fn no_piece_of_a_password_appears_in_a_cluster_or_sentinel_url_error() {
        let passwords = [
            "hunter2/x",
            "hunter2:9",
            "hunt,er2",
            "hunter2/x/y",
            "hunter2?x",
            "hunter2#x",
            "hunter2@x",
            "hunter2[x",
            "hunter2]:x",
            "hunter2",
        ];
        let shapes = [
            "redis+cluster://app:{p}@h:1",
            "redis+cluster://app:{p}@h:x",
            "redis+cluster://app:{p}@h:1,,h:2",
            "redis+cluster://app:{p}@h:1/3",
            "redis+cluster://app:{p}@h:1?prefx=a",
            "redis+cluster://app:{p}@[::1",
            "redis+cluster://:{p}@h:0",
            "redis+sentinel://app:{p}@h:1",
            "redis+sentinel://app:{p}@h:1/m/x",
            "redis+sentinel://app:{p}@h:x/m",
            "redis+sentinel://app:{p}@h:1/m?prefx=a",
            "redis+sentinel://app:{p}@h:1,/m",
        ];
        for password in passwords {
            for shape in shapes {
                let url = shape.replace("{p}", password);
                let result = if url.starts_with("redis+cluster") {
                    cluster_builder(&url)
                } else {
                    sentinel_builder(&url)
                };
                let shown = match result {
                    Ok(builder) => format!("{builder:?}"),
                    Err(err) => format!("{err} {err:?}"),
                };
                assert!(!shown.contains("hunter2"), "{url}: {shown}");
            }
        }
    }
}
