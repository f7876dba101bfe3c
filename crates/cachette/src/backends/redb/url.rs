//! The `redb://` URL form, opened by [`crate::open`], and the scheme's
//! declaration.

use std::path::PathBuf;
use std::sync::Arc;

use ::url::Url;

use super::{NAME, RedbBackend, RedbBuilder, RedbDurability};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::params::{
    Opening, Scheme, UrlParams, decode, no_fragment, no_host, no_userinfo, parse_url,
};

/// The `redb://` scheme.
pub(crate) const SCHEMES: &[Scheme] = &[Scheme {
    name: "redb",
    feature: "redb",
    description: "embedded ACID store (pure Rust): one database file, namespaces, TTL, tags",
    capabilities: RedbBackend::default_capabilities,
    open,
}];

/// The parameters of `redb://`, in the order the docs list them.
const PARAMS: &[&str] = &[
    "namespace",
    "default_ttl",
    "max_entries",
    "max_key_len",
    "max_value_len",
    "durability",
    "purge_interval",
    "cache_size",
];

const EXAMPLE: &str = "redb:///var/cache/app/cache.redb?namespace=sessions";

/// What a `redb://` URL holds instead of a host or user.
const HINT: &str = "only an absolute path: `redb:///var/cache/app/cache.redb?namespace=sessions` \
     (a path after `redb://` without a third `/` is read as a host)";

/// Reads `redb:///abs/path?param=value&...` into a builder.
pub(crate) fn builder(url: &Url) -> Result<RedbBuilder> {
    no_host(url, NAME, &["localhost"], HINT)?;
    no_userinfo(url, NAME, HINT)?;
    no_fragment(url, NAME)?;
    let path = decoded_path(url)?;
    let mut params = UrlParams::parse(url, NAME, &[PARAMS])?;
    let mut builder = RedbBackend::builder(path);
    if let Some(namespace) = params.text("namespace") {
        builder = builder.namespace(namespace);
    }
    if let Some(ttl) = params.duration("default_ttl")? {
        builder = builder.default_ttl(ttl);
    }
    if let Some(max) = params.integer("max_entries")? {
        builder = builder.max_entries(max);
    }
    if let Some(max) = params.byte_len("max_key_len")? {
        builder = builder.max_key_len(max);
    }
    if let Some(max) = params.byte_len("max_value_len")? {
        builder = builder.max_value_len(max);
    }
    if let Some(durability) = params.parsed::<RedbDurability>("durability")? {
        builder = builder.durability(durability);
    }
    if let Some(interval) = params.duration("purge_interval")? {
        builder = builder.purge_interval(interval);
    }
    if let Some(bytes) = params.byte_len("cache_size")? {
        builder = builder.cache_size(bytes);
    }
    Ok(builder)
}

fn open(url: &str) -> Opening<'_> {
    Box::pin(open_file(url))
}

/// Builds a redb backend from its URL. Opening the file blocks, so it
/// runs on tokio's blocking pool.
async fn open_file(url: &str) -> Result<Arc<dyn Backend>> {
    let builder = builder(&parse_url(url, NAME)?)?;
    let backend = super::on_blocking_pool(move || builder.build()).await?;
    Ok(Arc::new(backend))
}

/// The percent-decoded absolute path of the URL.
fn decoded_path(url: &Url) -> Result<PathBuf> {
    let encoded = url.path();
    if !encoded.starts_with('/') || encoded == "/" {
        return Err(Error::config(
            NAME,
            format!("redb:// needs the absolute path of the database file, e.g. `{EXAMPLE}`"),
        ));
    }
    let path = decode(encoded, NAME, &format!("the path `{encoded}`"))?;
    if path.contains('\0') {
        return Err(Error::config(NAME, "the path contains a NUL byte"));
    }
    Ok(PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn parse(url: &str) -> Result<RedbBuilder> {
        builder(&Url::parse(url).expect("a valid URL"))
    }

    #[test]
    fn reads_the_path_and_every_parameter() {
        let b = parse(
            "redb:///tmp/some%20dir/c.redb?namespace=app:v1&default_ttl=5m&max_entries=10\
             &max_key_len=100&max_value_len=1MiB&durability=eventual&purge_interval=1s&cache_size=8MiB",
        )
        .expect("parses");
        assert_eq!(b.path, PathBuf::from("/tmp/some dir/c.redb"));
        assert_eq!(b.namespace, "app:v1");
        assert_eq!(b.default_ttl, Some(std::time::Duration::from_secs(300)));
        assert_eq!(b.max_entries, Some(10));
        assert_eq!(b.max_key_len, 100);
        assert_eq!(b.max_value_len, 1 << 20);
        assert_eq!(b.durability, RedbDurability::Eventual);
        assert_eq!(b.purge_interval, std::time::Duration::from_secs(1));
        assert_eq!(b.cache_size, Some(8 << 20));
    }

    #[test]
    fn accepts_localhost_as_the_host() {
        let b = parse("redb://localhost/tmp/c.redb").expect("parses");
        assert_eq!(b.path, PathBuf::from("/tmp/c.redb"));
    }

    #[test]
    fn rejects_a_host_a_relative_path_or_no_path() {
        for url in [
            "redb://cache.redb",
            "redb://./cache.redb",
            "redb://host/tmp/c.redb",
            "redb:///",
            "redb://",
            "redb:",
            "redb:cache.redb",
        ] {
            let err = parse(url).expect_err(url);
            assert_eq!(err.kind(), ErrorKind::Config, "{url}: {err}");
            assert!(err.message().contains("redb:///"), "{url}: {err}");
        }
    }

    #[test]
    fn rejects_unknown_parameters_and_bad_values() {
        let err = parse("redb:///tmp/c.redb?namespce=x").expect_err("typo");
        assert!(
            err.message().contains("unknown parameter `namespce`"),
            "{err}"
        );
        let err = parse("redb:///tmp/c.redb?durability=sometimes").expect_err("bad value");
        assert!(err.message().contains("immediate or eventual"), "{err}");
        let err = parse("redb:///tmp/c.redb?max_entries=ten").expect_err("bad value");
        assert_eq!(err.kind(), ErrorKind::Config);
        let err = parse("redb:///tmp/bad%zz.redb").expect_err("bad escape");
        assert!(err.message().contains("percent escape"), "{err}");
    }
}
