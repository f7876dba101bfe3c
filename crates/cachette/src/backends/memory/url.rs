//! The `memory://` URL form, opened by [`crate::open`], and the scheme's
//! declaration.

use std::sync::Arc;

use ::url::Url;

use super::{MemoryBackend, NAME, Policy};
use crate::backend::Backend;
use crate::error::Result;
use crate::params::{Opening, Scheme, UrlParams, no_fragment, no_host, no_userinfo, parse_url};

/// The `memory://` scheme.
pub(crate) const SCHEMES: &[Scheme] = &[Scheme {
    name: "memory",
    feature: "memory",
    description: "in-process engine: LRU, FIFO, SIEVE or S3-FIFO; TTL; byte bounds; tags",
    capabilities: MemoryBackend::default_capabilities,
    open,
}];

/// The parameters of `memory://`, in the order the docs list them.
const PARAMS: &[&str] = &[
    "max_entries",
    "max_bytes",
    "policy",
    "default_ttl",
    "time_to_idle",
    "shards",
    "purge_interval",
    "max_key_len",
];

/// What a `memory://` URL holds instead of a host, user or path.
const HINT: &str = "only parameters, e.g. `memory://?max_entries=10000`";

fn open(url: &str) -> Opening<'_> {
    Box::pin(std::future::ready(open_now(url)))
}

/// Builds a memory backend from `memory://?param=value&...`.
fn open_now(url: &str) -> Result<Arc<dyn Backend>> {
    let url = parse_url(url, NAME)?;
    Ok(Arc::new(builder(&url)?.build()?))
}

pub(crate) fn builder(url: &Url) -> Result<super::MemoryBuilder> {
    no_host(url, NAME, &[], HINT)?;
    no_userinfo(url, NAME, HINT)?;
    if !matches!(url.path(), "" | "/") {
        return Err(crate::error::Error::config(
            NAME,
            format!("memory:// takes no path; {HINT}"),
        ));
    }
    no_fragment(url, NAME)?;
    let mut params = UrlParams::parse(url, NAME, &[PARAMS])?;
    let mut builder = MemoryBackend::builder();
    if let Some(max) = params.integer("max_entries")? {
        builder = builder.max_entries(max);
    }
    if let Some(max) = params.bytes("max_bytes")? {
        builder = builder.max_bytes(max);
    }
    if let Some(policy) = params.parsed::<Policy>("policy")? {
        builder = builder.policy(policy);
    }
    if let Some(ttl) = params.duration("default_ttl")? {
        builder = builder.default_ttl(ttl);
    }
    if let Some(idle) = params.duration("time_to_idle")? {
        builder = builder.time_to_idle(idle);
    }
    if let Some(shards) = params.integer("shards")? {
        builder = builder.shards(shards);
    }
    if let Some(interval) = params.duration("purge_interval")? {
        builder = builder.purge_interval(interval);
    }
    if let Some(max) = params.byte_len("max_key_len")? {
        builder = builder.max_key_len(max);
    }
    Ok(builder)
}
