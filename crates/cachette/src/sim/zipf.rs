//! Synthetic traces: a deterministic Zipf stream.

use crate::error::{Error, Result};

use super::NAME;
use super::trace::mix64;

/// The largest key space [`zipf_trace`] accepts: its table takes 8 bytes
/// per key, so this bounds it at 2 GiB.
pub const MAX_ZIPF_KEYS: u64 = 1 << 28;

/// A Zipf(`alpha`) stream of `requests` keys over `0..keys`, the same for
/// the same arguments on every platform and release.
///
/// Key `k` is requested with probability `(k + 1)^-alpha / H(keys, alpha)`,
/// so key 0 is the most popular. Sampling inverts a table of the
/// cumulative weights by binary search, driven by a splitmix64 generator
/// seeded with `seed`.
///
/// # Errors
///
/// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) unless
/// `alpha` is finite and greater than 0 and `keys` is between 1 and
/// [`MAX_ZIPF_KEYS`].
///
/// ```
/// use cachette::sim::zipf_trace;
///
/// let trace = zipf_trace(1.0, 1_000, 10_000, 7)?;
/// assert_eq!(trace.len(), 10_000);
/// assert!(trace.iter().all(|&key| key < 1_000));
/// assert_eq!(trace, zipf_trace(1.0, 1_000, 10_000, 7)?);
/// # Ok::<(), cachette::Error>(())
/// ```
pub fn zipf_trace(alpha: f64, keys: u64, requests: usize, seed: u64) -> Result<Vec<u64>> {
    if !(alpha.is_finite() && alpha > 0.0) {
        return Err(Error::invalid_input(
            NAME,
            format!("the Zipf exponent must be a finite number greater than 0, not {alpha}"),
        ));
    }
    if !(1..=MAX_ZIPF_KEYS).contains(&keys) {
        return Err(Error::invalid_input(
            NAME,
            format!("a Zipf trace needs between 1 and {MAX_ZIPF_KEYS} keys, not {keys}"),
        ));
    }
    // `cumulative[k]` is the weight of keys 0..=k, not normalized.
    let mut total = 0.0_f64;
    let cumulative: Vec<f64> = (1..=keys)
        .map(|rank| {
            total += (rank as f64).powf(-alpha);
            total
        })
        .collect();
    let last = keys - 1;
    let mut rng = SplitMix64(seed);
    Ok((0..requests)
        .map(|_| {
            let target = rng.next_f64() * total;
            let key = cumulative.partition_point(|&weight| weight <= target) as u64;
            // Rounding can put `target` at `total`; that is the last key.
            key.min(last)
        })
        .collect())
}

/// The splitmix64 generator: one `u64` of state, full period, and good
/// enough statistics for sampling.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }

    /// Uniform in `[0, 1)`, with 53 random bits.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1_u64 << 53) as f64)
    }
}
