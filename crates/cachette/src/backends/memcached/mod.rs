//! Groundwork of the Memcached backend, compiled only in the library's
//! unit tests. The `memcached://` scheme is still listed as planned: what
//! is here are the parts the backend will be built from, each tested on
//! its own
//! (`docs/memcached-plan.md` has the protocol facts and the design):
//!
//! - [`proto`]: the meta-protocol requests (`mg`, `ms`, `md`, `ma`, `mn`)
//!   and a response parser that never buffers without bound;
//! - [`ring`]: libmemcached's ketama ring and pymemcache's rendezvous
//!   hash, held to the reference clients' vectors;
//! - [`keys`]: stored keys, sent raw, base64-encoded or hashed, never
//!   refused or truncated.
// Used by the tests only until the backend itself lands.
#![allow(dead_code)]

pub(crate) mod keys;
pub(crate) mod proto;
pub(crate) mod ring;

#[cfg(feature = "testing")]
mod tests;
