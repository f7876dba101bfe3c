//! The `near+redis://` and `near+rediss://` URL forms, opened by
//! [`crate::open`]: a `redis://` URL whose own parameters go to the Redis
//! backend, plus the near cache's.

use std::sync::Arc;

use ::url::Url;

use super::{NAME, NearBackend, Tracking};
use crate::backend::Backend;
use crate::backends::memory::{MemoryBackend, Policy};
use crate::error::{Error, Result};
use crate::manager::url::{UrlParams, redact};

/// The near cache's own parameters; the others go to the Redis URL.
const PARAMS: &[&str] = &[
    "tracking",
    "bcast_prefixes",
    "local_ttl",
    "local_max_entries",
    "local_max_bytes",
    "local_policy",
];

/// Builds a near cache from its URL (see the module docs for the form).
pub(crate) async fn open(url: &Url) -> Result<Arc<dyn Backend>> {
    let shown = redact(url.as_str());
    let redis_scheme = match url.scheme() {
        "near+redis" => "redis",
        "near+rediss" => "rediss",
        other => {
            return Err(Error::config(
                NAME,
                format!("`{other}` is not a near-cache scheme"),
            ));
        }
    };
    // Split the query: the near cache's parameters here, the rest for Redis.
    let (own, rest): (Vec<_>, Vec<_>) = url
        .query_pairs()
        .into_owned()
        .partition(|(name, _)| PARAMS.contains(&name.as_str()));
    let mut redis_url = url.clone();
    redis_url.set_scheme(redis_scheme).map_err(|()| {
        Error::config(
            NAME,
            format!("{shown}: cannot read this URL as a Redis URL"),
        )
    })?;
    redis_url.set_query(None);
    if !rest.is_empty() {
        redis_url.query_pairs_mut().extend_pairs(rest);
    }
    let mut own_url = Url::parse("near://").map_err(|err| Error::config(NAME, err.to_string()))?;
    if !own.is_empty() {
        own_url.query_pairs_mut().extend_pairs(own);
    }
    let mut params = UrlParams::parse(&own_url, NAME, PARAMS)?;

    let mut builder = NearBackend::builder(crate::backends::redis::url::builder(&redis_url)?);
    let mut tracking = params.parsed::<Tracking>("tracking")?.unwrap_or_default();
    if let Some(prefixes) = own_url
        .query_pairs()
        .find(|(name, _)| name == "bcast_prefixes")
        .map(|(_, value)| value.into_owned())
    {
        let Tracking::Broadcast(list) = &mut tracking else {
            return Err(Error::config(
                NAME,
                format!("{shown}: `bcast_prefixes` needs `tracking=bcast`"),
            ));
        };
        list.extend(prefixes.split(',').map(|p| p.trim().to_owned()));
    }
    builder = builder.tracking(tracking);
    if let Some(ttl) = params.duration("local_ttl")? {
        builder = builder.local_ttl(ttl);
    }
    let entries = params.integer::<u64>("local_max_entries")?;
    let bytes = params.bytes("local_max_bytes")?;
    let policy = params.parsed::<Policy>("local_policy")?;
    if entries.is_some() || bytes.is_some() || policy.is_some() {
        let mut local = MemoryBackend::builder();
        if let Some(entries) = entries {
            local = local.max_entries(entries);
        } else if bytes.is_none() {
            local = local.max_entries(super::NearBuilder::DEFAULT_LOCAL_ENTRIES);
        }
        if let Some(bytes) = bytes {
            local = local.max_bytes(bytes);
        }
        if let Some(policy) = policy {
            local = local.policy(policy);
        }
        builder = builder.local(Arc::new(local.build()?));
    }
    Ok(Arc::new(builder.build().await?))
}
