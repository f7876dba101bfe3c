//! The `tiered` scheme's declaration. A tiered cache is two caches, so it
//! has no URL of its own: it opens from a TOML table that names the URL
//! of each layer (see [`CacheConfig`](crate::manager::CacheConfig)).

use super::NAME;
use crate::backend::Capabilities;
use crate::error::Error;
use crate::params::{Opening, Scheme, redact};

/// The `tiered` scheme. Its capabilities are those of its L2, so the
/// declaration promises only what every pair of layers gives.
pub(crate) const SCHEMES: &[Scheme] = &[Scheme {
    name: "tiered",
    feature: "tiered",
    description: "L1 + L2 over any two backends, from a TOML table (`l1`, `l2`); capabilities are its L2's",
    capabilities: Capabilities::default,
    open,
}];

/// Explains where a tiered cache is configured instead of a URL.
fn open(url: &str) -> Opening<'_> {
    Box::pin(std::future::ready(Err(Error::config(
        NAME,
        format!(
            "a tiered cache has no URL form (`{}`); configure it as a table with the URL of each layer, \
             e.g. `[caches.main]` with `l1 = \"memory://?max_entries=10000\"` and `l2 = \"redis://127.0.0.1:6379\"`, \
             and open it with `CacheManager::from_toml_str` (or `--config` on the command line)",
            redact(url)
        ),
    ))))
}
