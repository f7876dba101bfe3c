//! The backends. Each lives in its own folder with the same shape: a
//! builder, the backend, and its docs (URL form, options, capabilities).

// Each backend uses some of the shared pieces; with only some backends
// compiled in, the others are unused.
#[cfg(any(
    feature = "memory",
    feature = "file",
    feature = "redb",
    feature = "redis",
    feature = "memcached",
    feature = "postgres",
    feature = "object",
    feature = "tiered",
    // The metrics layer's export loop is the purge loop.
    feature = "metrics"
))]
#[cfg_attr(
    not(all(
        feature = "memory",
        feature = "file",
        feature = "redb",
        feature = "redis",
        feature = "memcached",
        feature = "postgres",
        feature = "object",
        feature = "tiered",
        feature = "near"
    )),
    allow(dead_code)
)]
pub(crate) mod common;
#[cfg(feature = "file")]
pub mod file;
#[cfg(feature = "memcached")]
pub mod memcached;
#[cfg(feature = "memory")]
pub mod memory;
#[cfg(feature = "near")]
pub mod near;
#[cfg(feature = "object")]
pub mod object;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(any(feature = "memory", feature = "redis"))]
pub(crate) mod read_counters;
#[cfg(feature = "redb")]
pub mod redb;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "tiered")]
pub mod tiered;
