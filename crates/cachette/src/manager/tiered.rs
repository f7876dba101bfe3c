//! A tiered cache from its [`CacheConfig`]: each layer opens from its own
//! URL through the registry, then the tiered backend is built over them.
//! This lives above the registry because a tiered cache opens other
//! schemes; the tiered backend itself knows nothing of URLs.

use std::sync::Arc;

use crate::backend::Backend;
use crate::backends::tiered::TieredBackend;
use crate::error::Result;
use crate::registry::open as open_url;

use super::CacheConfig;

/// Opens the layers at `l1` and `l2` (and `l3`) and builds the tiered
/// cache `name` over them with the rest of `config`. Three layers nest:
/// `l1` over a tiered backend of `l2` over `l3`, each upper layer with
/// `l1_ttl`; the channel, if any, keeps the `l1`s coherent.
pub(super) async fn open(
    name: &str,
    l1: &str,
    l2: &str,
    config: &CacheConfig,
) -> Result<Arc<dyn Backend>> {
    let l1 = async { open_url(l1).await.map_err(|err| err.context("l1")) };
    let l2 = async {
        let l2_layer = open_url(l2).await.map_err(|err| err.context("l2"))?;
        let Some(l3) = &config.l3 else {
            return Ok(l2_layer);
        };
        let l3 = open_url(l3).await.map_err(|err| err.context("l3"))?;
        let mut lower = TieredBackend::builder(l2_layer, l3);
        if let Some(ttl) = config.l1_ttl {
            lower = lower.l1_ttl(ttl);
        }
        let lower: Arc<dyn Backend> = Arc::new(lower.build().await?);
        Ok(lower)
    };
    let (l1, l2) = futures_util::future::try_join(l1, l2).await?;
    let mut builder = TieredBackend::builder(l1, l2);
    if let Some(ttl) = config.l1_ttl {
        builder = builder.l1_ttl(ttl);
    }
    if let Some(url) = &config.channel {
        builder = with_channel(builder, name, url)?;
    }
    Ok(Arc::new(builder.build().await?))
}

#[cfg(any(feature = "redis", feature = "postgres"))]
fn with_channel(
    builder: crate::backends::tiered::TieredBuilder,
    name: &str,
    url: &str,
) -> Result<crate::backends::tiered::TieredBuilder> {
    Ok(builder.invalidation_channel(channel::from_url(name, url)?))
}

#[cfg(not(any(feature = "redis", feature = "postgres")))]
fn with_channel(
    _builder: crate::backends::tiered::TieredBuilder,
    _name: &str,
    _url: &str,
) -> Result<crate::backends::tiered::TieredBuilder> {
    Err(crate::error::Error::config(
        super::MANAGER,
        "`channel` (the invalidation channel over Redis pub/sub or PostgreSQL LISTEN/NOTIFY) needs the cargo feature `redis` or `postgres`",
    ))
}

#[cfg(any(feature = "redis", feature = "postgres"))]
mod channel {
    use crate::backends::tiered::InvalidationChannel;
    use crate::error::{Error, Result};
    use crate::params::{UrlParams, no_fragment, parse_url, redact};

    /// The name in errors about the channel: it belongs to the tiered
    /// backend.
    const TIERED: &str = "tiered";

    /// The channel's own parameters; the rest of the URL goes to redis-rs.
    const PARAMS: &[&str] = &[
        "name",
        "connect_timeout",
        "response_timeout",
        "ping_interval",
    ];

    /// The invalidation channel a `channel` URL describes:
    /// `redis://[user[:password]@]host[:port][/db]?name=..&ping_interval=..`
    /// or `postgres://user[:password]@host[:port]/db?name=..`.
    pub(super) fn from_url(cache: &str, url: &str) -> Result<InvalidationChannel> {
        let mut parsed = parse_url(url, TIERED)?;
        if !matches!(
            parsed.scheme(),
            "redis" | "rediss" | "redis+unix" | "postgres" | "postgresql"
        ) {
            return Err(Error::config(
                TIERED,
                format!(
                    "`channel` must be a `redis://`, `rediss://`, `redis+unix://` or `postgres://` URL, not `{}`",
                    redact(url)
                ),
            ));
        }
        no_fragment(&parsed, TIERED)?;
        // A PostgreSQL server takes the backend's own parameters
        // (`sslmode`, `ca_cert`, …): they stay in its URL, and the
        // backend's parser checks them when the channel starts.
        let postgres = parsed.scheme().starts_with("postgres");
        type Pairs = Vec<(String, String)>;
        let (own, server): (Pairs, Pairs) = parsed
            .query_pairs()
            .into_owned()
            .partition(|(key, _)| !postgres || PARAMS.contains(&key.as_str()));
        let mut own_url = parsed.clone();
        own_url.query_pairs_mut().clear().extend_pairs(&own);
        let mut params = UrlParams::parse(&own_url, TIERED, &[PARAMS])?;
        let name = params
            .text("name")
            .unwrap_or_else(|| format!("cachette:tiered:{cache}"));
        if server.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(&server);
        }
        let mut channel = InvalidationChannel::from_url(String::from(parsed), name);
        if let Some(timeout) = params.duration("connect_timeout")? {
            channel = channel.connect_timeout(timeout);
        }
        if let Some(timeout) = params.duration("response_timeout")? {
            channel = channel.response_timeout(timeout);
        }
        if let Some(interval) = params.duration("ping_interval")? {
            channel = channel.ping_interval(interval);
        }
        Ok(channel)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn the_channel_url_gives_a_server_a_name_and_timeouts() {
            let channel = from_url(
                "pages",
                "redis://app:s3cret@127.0.0.1:6390/0?name=app:inv&ping_interval=2s",
            )
            .unwrap();
            assert_eq!(channel.channel(), "app:inv");
            let shown = format!("{channel:?}");
            assert!(
                shown.contains("127.0.0.1:6390/0") && shown.contains("2s"),
                "{shown}"
            );
            assert!(
                !shown.contains("s3cret") && !shown.contains("name="),
                "{shown}"
            );
        }

        #[test]
        fn without_a_name_the_channel_is_named_after_the_cache() {
            let channel = from_url("pages", "redis://127.0.0.1").unwrap();
            assert_eq!(channel.channel(), "cachette:tiered:pages");
        }

        #[test]
        fn a_typo_in_the_channel_url_suggests_the_parameter() {
            let err = from_url("pages", "redis://127.0.0.1?nam=x").unwrap_err();
            assert!(err.message().contains("did you mean `name`?"), "{err}");
            let err = from_url("pages", "memory://").unwrap_err();
            assert!(err.message().contains("`channel` must be"), "{err}");
        }
    }
}
