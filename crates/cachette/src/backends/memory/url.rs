//! The `memory://` URL form, opened by [`crate::open`].

use std::sync::Arc;

use ::url::Url;

use super::{MemoryBackend, NAME, Policy};
use crate::backend::Backend;
use crate::error::{Error, Result};

use crate::manager::url::UrlParams;

/// The parameters of `memory://`, in the order the docs list them.
const PARAMS: &[&str] = &[
    "max_entries",
    "max_bytes",
    "policy",
    "default_ttl",
    "shards",
    "expiry_interval",
    "max_key_len",
];

/// Builds a memory backend from `memory://?param=value&...`.
pub(crate) fn open(url: &Url) -> Result<Arc<dyn Backend>> {
    let host = url.host_str().unwrap_or("");
    let has_authority = !host.is_empty()
        || url.port().is_some()
        || !url.username().is_empty()
        || url.password().is_some();
    if has_authority || !matches!(url.path(), "" | "/") {
        return Err(Error::config(
            NAME,
            "memory:// takes no host, user or path, only parameters, e.g. `memory://?max_entries=10000`",
        ));
    }
    if url.fragment().is_some() {
        return Err(Error::config(NAME, "memory:// takes no `#fragment`"));
    }
    let mut params = UrlParams::parse(url, NAME, PARAMS)?;
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
    if let Some(shards) = params.integer("shards")? {
        builder = builder.shards(shards);
    }
    if let Some(interval) = params.duration("expiry_interval")? {
        builder = builder.expiry_interval(interval);
    }
    if let Some(max) = params.integer("max_key_len")? {
        builder = builder.max_key_len(max);
    }
    Ok(Arc::new(builder.build()?))
}
