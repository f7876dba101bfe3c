//! The backends. Each lives in its own folder with the same shape: a
//! builder, the backend, and its docs (URL form, options, capabilities).

#[cfg(feature = "file")]
pub mod file;
#[cfg(feature = "memory")]
pub mod memory;
#[cfg(feature = "near")]
pub mod near;
#[cfg(any(feature = "memory", feature = "redis"))]
pub(crate) mod read_counters;
#[cfg(feature = "redb")]
pub mod redb;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "tiered")]
pub mod tiered;
