//! The `memcached://` and `memcached+unix://` URL forms, opened by
//! [`crate::open`], and their declarations.

use std::sync::Arc;

use super::{Failover, HashKind, MemcachedBackend, MemcachedBuilder, NAME};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::params::{
    MultiHostUrl, Opening, Scheme, UrlParams, decode, no_fragment, no_host, no_userinfo, parse_url,
    redact,
};

/// The Memcached schemes.
pub(crate) const SCHEMES: &[Scheme] = &[
    Scheme {
        name: "memcached",
        feature: "memcached",
        description: "memcached, one or several servers (comma-separated), consistent hashing",
        capabilities: MemcachedBackend::default_capabilities,
        open: open_tcp,
    },
    Scheme {
        name: "memcached+tls",
        feature: "memcached",
        description: "memcached over TLS, one or several servers",
        capabilities: MemcachedBackend::default_capabilities,
        open: open_tcp,
    },
    Scheme {
        name: "memcached+unix",
        feature: "memcached",
        description: "memcached over a Unix socket",
        capabilities: MemcachedBackend::default_capabilities,
        open: open_unix,
    },
];

/// The parameters both forms take.
const PARAMS: &[&str] = &[
    "prefix",
    "connect_timeout",
    "response_timeout",
    "retry_interval",
    "pool_size",
    "default_ttl",
    "max_value_len",
    "hash",
    "failover",
];

/// The parameters `memcached+tls://` adds.
const TLS_PARAMS: &[&str] = &["ca_cert"];

/// memcached's default port.
const DEFAULT_PORT: u16 = 11211;

fn open_tcp(url: &str) -> Opening<'_> {
    Box::pin(async move {
        let backend: Arc<dyn Backend> = Arc::new(tcp_builder(url)?.build().await?);
        Ok(backend)
    })
}

fn open_unix(url: &str) -> Opening<'_> {
    Box::pin(async move {
        let backend: Arc<dyn Backend> = Arc::new(unix_builder(url)?.build().await?);
        Ok(backend)
    })
}

/// The builder of `memcached://h1[:p1],h2[:p2],…[/][?params]` (and of
/// `memcached+tls://…?ca_cert=/path/ca.pem`).
pub(crate) fn tcp_builder(url: &str) -> Result<MemcachedBuilder> {
    let shown = redact(url);
    let bad = |what: &str| Error::config(NAME, format!("{shown}: {what}"));
    let tls = url.starts_with("memcached+tls://");
    let scheme = if tls { "memcached+tls" } else { "memcached" };
    let parts = MultiHostUrl::parse(url, scheme, DEFAULT_PORT, bad)?;
    if parts.userinfo.is_some() {
        return Err(bad(
            "memcached takes no user or password (its SASL login is not supported)",
        ));
    }
    if !parts.path.trim_matches('/').is_empty() {
        return Err(bad("a memcached URL has no path; put options in the query"));
    }
    let mut builder = MemcachedBackend::builder(parts.nodes.clone()).tls(tls);
    let known: &[&[&str]] = if tls {
        &[PARAMS, TLS_PARAMS]
    } else {
        &[PARAMS]
    };
    let mut params = UrlParams::parse(&parts.query, NAME, known)?;
    if let Some(path) = params.text("ca_cert") {
        let pem = std::fs::read(&path).map_err(|err| {
            Error::config(NAME, format!("parameter `ca_cert`: cannot read `{path}`"))
                .with_source(err)
        })?;
        builder = builder.root_certificate_pem(pem);
    }
    options(builder, &mut params)
}

/// The builder of `memcached+unix:///path/to/socket[?params]`.
pub(crate) fn unix_builder(url: &str) -> Result<MemcachedBuilder> {
    let parsed = parse_url(url, NAME)?;
    no_fragment(&parsed, NAME)?;
    no_userinfo(&parsed, NAME, "memcached has no login")?;
    no_host(
        &parsed,
        NAME,
        &[],
        "the socket path follows `memcached+unix://`, e.g. `memcached+unix:///run/memcached.sock`",
    )?;
    if parsed.path().is_empty() || parsed.path() == "/" {
        return Err(Error::config(
            NAME,
            format!(
                "{}: the URL names no socket path, e.g. `memcached+unix:///run/memcached.sock`",
                redact(url)
            ),
        ));
    }
    let path = decode(parsed.path(), NAME, "the socket path")?;
    let builder = MemcachedBackend::builder(Vec::<(String, u16)>::new()).unix(path);
    let mut params = UrlParams::parse(&parsed, NAME, &[PARAMS])?;
    options(builder, &mut params)
}

fn options(mut builder: MemcachedBuilder, params: &mut UrlParams) -> Result<MemcachedBuilder> {
    if let Some(prefix) = params.text("prefix") {
        builder = builder.prefix(prefix);
    }
    if let Some(timeout) = params.duration("connect_timeout")? {
        builder = builder.connect_timeout(timeout);
    }
    if let Some(timeout) = params.duration("response_timeout")? {
        builder = builder.response_timeout(timeout);
    }
    if let Some(interval) = params.duration("retry_interval")? {
        builder = builder.retry_interval(interval);
    }
    if let Some(size) = params.integer::<usize>("pool_size")? {
        builder = builder.pool_size(size);
    }
    if let Some(ttl) = params.duration("default_ttl")? {
        builder = builder.default_ttl(ttl);
    }
    if let Some(len) = params.byte_len("max_value_len")? {
        builder = builder.max_value_len(len);
    }
    if let Some(hash) = params.text("hash") {
        builder = builder.hash(match hash.as_str() {
            "ketama" => HashKind::Ketama,
            "rendezvous" => HashKind::Rendezvous,
            other => {
                return Err(Error::config(
                    NAME,
                    format!("parameter `hash`: `{other}` is not `ketama` or `rendezvous`"),
                ));
            }
        });
    }
    if let Some(failover) = params.text("failover") {
        builder = builder.failover(match failover.as_str() {
            "error" => Failover::Error,
            "next" => Failover::Next,
            other => {
                return Err(Error::config(
                    NAME,
                    format!("parameter `failover`: `{other}` is not `error` or `next`"),
                ));
            }
        });
    }
    Ok(builder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_the_servers_and_options() {
        let builder = tcp_builder(
            "memcached://10.0.0.1,10.0.0.2:11212,[::1]:11213/?prefix=app:&pool_size=4&hash=rendezvous&failover=next&response_timeout=250ms",
        )
        .unwrap();
        let shown = format!("{builder:?}");
        for needle in [
            "10.0.0.1:11211",
            "10.0.0.2:11212",
            "[::1]:11213",
            "prefix: \"app:\"",
            "pool_size: 4",
            "Rendezvous",
            "Next",
            "250ms",
        ] {
            assert!(shown.contains(needle), "{needle} in {shown}");
        }
        let unix = unix_builder("memcached+unix:///run/mc.sock?prefix=p").unwrap();
        assert!(format!("{unix:?}").contains("unix:/run/mc.sock"));
    }

    #[test]
    fn bad_urls_name_the_problem() {
        for (url, needle) in [
            ("memcached://", "node is empty"),
            ("memcached://h:0", "bad port"),
            ("memcached://u:secret@h:1", "no user or password"),
            ("memcached://h/path", "no path"),
            ("memcached://h?hash=md5", "`hash`"),
            ("memcached://h?failover=maybe", "`failover`"),
            ("memcached://h?prefx=a", "unknown parameter `prefx`"),
            ("memcached+unix://host/x.sock", "no host or port"),
            ("memcached+unix://", "no socket path"),
        ] {
            let err = match url.starts_with("memcached+unix") {
                true => unix_builder(url).unwrap_err(),
                false => tcp_builder(url).unwrap_err(),
            };
            assert!(err.message().contains(needle), "{url}: {err}");
            assert!(!err.message().contains("secret"), "{url}: {err}");
        }
    }
}
