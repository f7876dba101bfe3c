//! The `near+redis://` and `near+rediss://` URL forms, opened by
//! [`crate::open`], and their declarations: a `redis://` URL whose own
//! parameters go to the Redis backend, plus the near cache's.

use std::sync::Arc;

use ::url::Url;

use super::{NAME, NearBackend, Tracking};
use crate::backend::Backend;
use crate::backends::memory::{MemoryBackend, Policy};
use crate::backends::redis::url::{standalone, standalone_params};
use crate::error::{Error, Result};
use crate::params::{Opening, Scheme, UrlParams, no_fragment, parse_url, redact};

/// A near-cache scheme: enabled by the `near` feature.
const fn scheme(name: &'static str, description: &'static str) -> Scheme {
    Scheme {
        name,
        feature: "near",
        description,
        capabilities: NearBackend::default_capabilities,
        open,
    }
}

/// The near-cache schemes.
pub(crate) const SCHEMES: &[Scheme] = &[
    scheme(
        "near+redis",
        "near cache: a local store kept coherent with Redis by CLIENT TRACKING",
    ),
    scheme("near+rediss", "near cache over Redis with TLS"),
];

/// The near cache's own parameters; the others go to the Redis URL.
const PARAMS: &[&str] = &[
    "tracking",
    "bcast_prefixes",
    "local_ttl",
    "local_max_entries",
    "local_max_bytes",
    "local_policy",
];

fn open(url: &str) -> Opening<'_> {
    Box::pin(async move {
        let backend: Arc<dyn Backend> = Arc::new(builder(&parse_url(url, NAME)?)?.build().await?);
        Ok(backend)
    })
}

/// The builder a near-cache URL describes (without connecting; see the
/// module docs for the form).
pub(crate) fn builder(url: &Url) -> Result<super::NearBuilder> {
    let shown = redact(url.as_str());
    no_fragment(url, NAME)?;
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
    // One parse of the whole query, so that a typo is reported against
    // this scheme with every parameter it takes, its own and Redis's.
    let mut known = vec![PARAMS];
    known.extend_from_slice(standalone_params(redis_scheme));
    let mut params = UrlParams::parse(url, NAME, &known)?;
    let mut redis_url = url.clone();
    redis_url.set_scheme(redis_scheme).map_err(|()| {
        Error::config(
            NAME,
            format!("{shown}: cannot read this URL as a Redis URL"),
        )
    })?;
    let mut builder = NearBackend::builder(standalone(&redis_url, &mut params)?);
    let mut tracking = params.parsed::<Tracking>("tracking")?.unwrap_or_default();
    if let Some(prefixes) = params.text("bcast_prefixes") {
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
    Ok(builder)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<super::super::NearBuilder> {
        builder(&Url::parse(url).unwrap())
    }

    #[test]
    fn a_typo_names_the_near_scheme_its_parameters_and_the_nearest() {
        let err = parse("near+redis://127.0.0.1?local_max_entrie=10").unwrap_err();
        let message = err.message();
        assert!(
            message.contains("unknown parameter `local_max_entrie` for near+redis://"),
            "{err}"
        );
        for name in ["tracking", "local_max_entries", "prefix", "default_ttl"] {
            assert!(message.contains(name), "{name} not in {err}");
        }
        assert!(
            message.contains("did you mean `local_max_entries`?"),
            "{err}"
        );
        assert_eq!(err.backend(), "near");
    }

    #[test]
    fn over_tls_the_redis_tls_parameters_are_listed_too() {
        let err = parse("near+rediss://127.0.0.1?ca_certs=x").unwrap_err();
        assert!(
            err.message().contains("for near+rediss://")
                && err.message().contains("did you mean `ca_cert`?"),
            "{err}"
        );
    }

    #[test]
    fn redis_parameters_reach_the_redis_builder() {
        let shown = format!(
            "{:?}",
            parse("near+redis://127.0.0.1/2?prefix=n:&tracking=optin").unwrap()
        );
        assert!(
            shown.contains("\"n:\"") && shown.contains("db: 2"),
            "{shown}"
        );
    }
}
