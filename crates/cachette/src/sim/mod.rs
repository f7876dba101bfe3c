//! The hit-ratio simulator (feature `sim`): read a cache access trace, or
//! generate a Zipf one, and replay it through the memory engine under each
//! eviction policy and capacity to compare their miss ratios.
//!
//! - [`read_trace`] reads the trace formats of the Caffeine simulator's
//!   trace set ([`TraceFormat`]), gzip- or xz-compressed or plain, as one
//!   `u64` key per request.
//! - [`zipf_trace`] generates a deterministic Zipf stream.
//! - [`simulate`] replays a trace through a real [`MemoryBackend`]
//!   (one shard, bounded by entries) and counts hits and misses;
//!   [`simulate_grid`] does it for many policies and capacities at once, on
//!   every CPU.
//!
//! The cache is the production engine, not a model of it: what the
//! simulator measures is what `memory://?max_entries=N&policy=P&shards=1`
//! does.
//!
//! ```
//! use cachette::Policy;
//! use cachette::sim::{simulate_grid, zipf_trace};
//!
//! let trace = zipf_trace(1.0, 10_000, 100_000, 42)?;
//! let results = simulate_grid(&trace, &[Policy::Fifo, Policy::S3Fifo], &[100], &|_| {});
//! let (fifo, s3fifo) = (results[0], results[1]);
//! assert!(s3fifo.miss_ratio() < fifo.miss_ratio());
//! # Ok::<(), cachette::Error>(())
//! ```
//!
//! [`MemoryBackend`]: crate::MemoryBackend

mod replay;
mod trace;
mod zipf;

pub use replay::{SimResult, distinct_keys, simulate, simulate_grid};
pub use trace::{TraceFormat, adapt_size_key, read_trace};
pub use zipf::{MAX_ZIPF_KEYS, zipf_trace};

/// The name errors of the simulator carry as their origin.
const NAME: &str = "sim";
