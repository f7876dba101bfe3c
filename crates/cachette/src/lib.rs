//! cachette is a caching toolkit: one byte-level, async, dyn-compatible
//! [`Backend`] trait with real backends behind it, layers around it and a
//! typed front end on top.
//!
//! ```
//! use std::time::Duration;
//! use cachette::{Backend, KeyTtl, SetOptions};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> cachette::Result<()> {
//! // Any backend opens from a URL; the memory engine is built in.
//! let cache = cachette::open("memory://?max_entries=10000&policy=s3fifo").await?;
//!
//! cache.set("user:1", "Ada".into(), &SetOptions::new().ttl(Duration::from_secs(60))).await?;
//! assert_eq!(cache.get("user:1").await?.as_deref(), Some(&b"Ada"[..]));
//! assert!(matches!(cache.ttl("user:1").await?, KeyTtl::ExpiresIn(_)));
//! assert_eq!(cache.incr("visits", 1, Default::default()).await?, 1);
//! # Ok(())
//! # }
//! ```
//!
//! See `docs/design.md` in the repository for the architecture, the
//! [`backend`] module for the rules every backend obeys (the one place they
//! are written), and `cachette::testing` (feature `testing`) for the
//! conformance suite that checks them.

#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod backend;
pub mod backends;
#[cfg(feature = "blocking")]
pub mod blocking;
pub mod cache;
#[cfg(feature = "memory")]
mod clock;
pub mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod glob;
pub mod layers;
pub mod manager;
#[cfg(feature = "macros")]
mod memo;
pub mod params;
mod registry;
#[cfg(feature = "sim")]
pub mod sim;
#[cfg(feature = "testing")]
pub mod testing;

pub use backend::{
    Backend, Capabilities, Expiry, KeyStream, KeyTtl, Lease, LeaseToken, SetCondition, SetOptions,
    Stats, TtlPrecision,
};
#[cfg(feature = "memory")]
pub use backends::memory::{MemoryBackend, MemoryBuilder, Policy, RemovalCause};
pub use cache::{Cache, CacheBuilder, CacheStats, Codec, DefaultCodec, EntryOptions, LoadContext};
#[cfg(feature = "macros")]
pub use cachette_macros::cached;
pub use error::{Error, ErrorKind, Result};
pub use manager::CacheManager;
#[cfg(feature = "macros")]
#[doc(hidden)]
pub use memo::__private;
#[cfg(feature = "macros")]
pub use memo::KeyPart;
pub use params::SchemeInfo;
pub use registry::{open, schemes};

/// The README's examples, compiled and run as doc tests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
