//! A frequency sketch for S3-FIFO's admission into the main queue: a
//! count-min sketch of 4-bit counters (four rows) that ages by halving, as
//! in TinyLFU. It counts the writes that fill a miss and the hits that the
//! eviction scan finds on an entry (its frequency bits), so it is only ever
//! touched under the shard's write lock; reads stay lock-free of it.
//!
//! An entry leaving the small queue without a hit would normally be
//! evicted. If the sketch says it has been asked for more often than the
//! entry the main queue would give up, it takes that place instead. This
//! keeps a stable part of a loop or scan larger than the cache in the main
//! queue, where plain S3-FIFO gets no hits at all.

/// Rows of the sketch; each row has its own hash of the key.
const ROWS: usize = 4;

/// Odd multipliers that give each row its own index from one 64-bit hash.
const ROW_SEEDS: [u64; ROWS] = [
    0x9e37_79b9_7f4a_7c15,
    0xc2b2_ae3d_27d4_eb4f,
    0x1656_67b1_9e37_79f9,
    0xd6e8_feb8_6659_fd93,
];

/// The largest value of a 4-bit counter.
const MAX_COUNT: u8 = 15;

/// Counters per row at the most: 2^23 (4 MiB per row, 16 MiB per shard).
const MAX_WIDTH: u64 = 1 << 23;

/// Counters per row at the least.
const MIN_WIDTH: u64 = 64;

/// Counters per row for each entry the shard holds. One counter per entry
/// (10 increments per counter between halvings) drowned the keys in each
/// other's counts and cost 0.6 points on Zipf 0.8; four tell them apart.
const WIDTH_FACTOR: u64 = 4;

/// Halve every counter after this many increments per entry of the shard.
/// The hit-ratio lab (docs/benchmarks.md) tried 10, 16, 32 and 64: the mean
/// over the traces rose to 32 and then held, with no Zipf case worse.
const SAMPLE_FACTOR: u64 = 32;

/// Entries a new sketch is sized for before the shard grows (at most the
/// bound): 8 KiB per shard at first, so that a large bound costs memory
/// only once the entries are there.
const INITIAL_ENTRIES: u64 = 1024;

#[derive(Debug)]
pub(super) struct FrequencySketch {
    /// `ROWS` rows of `width` 4-bit counters, two to a byte.
    nibbles: Box<[u8]>,
    /// `width - 1`; `width` is a power of two.
    mask: u64,
    /// Increments since the last halving.
    additions: u64,
    /// Increments that trigger a halving.
    sample: u64,
    /// The entries the sketch is sized for now.
    sized_for: u64,
    /// The entries the shard can hold: the sketch never grows past them.
    max_entries: u64,
}

impl FrequencySketch {
    /// A sketch for a shard that holds at most about `max_entries`
    /// entries; it starts small and grows with the shard
    /// ([`ensure_capacity`](Self::ensure_capacity)).
    pub(super) fn new(max_entries: u64) -> Self {
        let max_entries = max_entries.clamp(1, MAX_WIDTH);
        Self::sized(INITIAL_ENTRIES.min(max_entries), max_entries)
    }

    fn sized(entries: u64, max_entries: u64) -> Self {
        let width = (entries * WIDTH_FACTOR)
            .clamp(MIN_WIDTH, MAX_WIDTH)
            .next_power_of_two()
            .min(MAX_WIDTH);
        FrequencySketch {
            nibbles: vec![0; ROWS * width as usize / 2].into_boxed_slice(),
            mask: width - 1,
            additions: 0,
            sample: entries * SAMPLE_FACTOR,
            sized_for: entries,
            max_entries,
        }
    }

    /// Grows the sketch (at least doubling it, up to the shard's bound)
    /// once the shard holds more entries than it is sized for. The counts
    /// start over: a sketch too small for its keys counts mostly noise.
    pub(super) fn ensure_capacity(&mut self, live_entries: u64) {
        if live_entries <= self.sized_for || self.sized_for >= self.max_entries {
            return;
        }
        let entries = (self.sized_for * 2).max(live_entries).min(self.max_entries);
        *self = Self::sized(entries, self.max_entries);
    }

    /// The counter positions of `hash`, one per row.
    #[inline]
    fn positions(&self, hash: u64) -> [usize; ROWS] {
        let width = self.mask + 1;
        let mut positions = [0; ROWS];
        for (row, seed) in ROW_SEEDS.iter().enumerate() {
            let mixed = hash.wrapping_mul(*seed);
            let column = (mixed >> 32 ^ mixed) & self.mask;
            positions[row] = (row as u64 * width + column) as usize;
        }
        positions
    }

    #[inline]
    fn get(&self, position: usize) -> u8 {
        (self.nibbles[position / 2] >> ((position & 1) * 4)) & 0x0f
    }

    /// How often `hash` was counted (an overestimate at worst).
    pub(super) fn estimate(&self, hash: u64) -> u8 {
        self.positions(hash)
            .into_iter()
            .map(|position| self.get(position))
            .min()
            .unwrap_or(0)
    }

    /// Counts `hash` `times` more times (saturating).
    pub(super) fn add(&mut self, hash: u64, times: u8) {
        if times == 0 {
            return;
        }
        for position in self.positions(hash) {
            let count = self.get(position);
            let next = count.saturating_add(times).min(MAX_COUNT);
            let shift = (position & 1) * 4;
            let byte = &mut self.nibbles[position / 2];
            *byte = (*byte & !(0x0f << shift)) | (next << shift);
        }
        self.additions += u64::from(times);
        if self.additions >= self.sample {
            self.halve();
        }
    }

    /// Ages the sketch: every counter is halved, so that what was popular
    /// long ago does not keep its place for ever.
    fn halve(&mut self) {
        for byte in self.nibbles.iter_mut() {
            *byte = (*byte >> 1) & 0x77;
        }
        self.additions /= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::FrequencySketch;

    #[test]
    fn counts_saturate_at_fifteen_and_never_undercount() {
        let mut sketch = FrequencySketch::new(1024);
        for _ in 0..5 {
            sketch.add(42, 1);
        }
        assert!(sketch.estimate(42) >= 5);
        sketch.add(42, 200);
        assert_eq!(sketch.estimate(42), 15);
        assert_eq!(
            sketch.estimate(7),
            0,
            "an empty sketch of this size holds no other key"
        );
    }

    #[test]
    fn it_grows_with_the_shard_up_to_the_bound() {
        let mut sketch = FrequencySketch::new(1_000_000);
        assert_eq!(sketch.sized_for, super::INITIAL_ENTRIES);
        sketch.ensure_capacity(1_000);
        assert_eq!(
            sketch.sized_for,
            super::INITIAL_ENTRIES,
            "no growth within the size"
        );
        sketch.ensure_capacity(1_025);
        assert_eq!(sketch.sized_for, 2_048);
        sketch.ensure_capacity(900_000);
        assert_eq!(sketch.sized_for, 900_000);
        sketch.ensure_capacity(5_000_000);
        assert_eq!(sketch.sized_for, 1_000_000, "never past the bound");
        assert_eq!(
            sketch.nibbles.len() as u64,
            4 * (4 * 1_000_000u64).next_power_of_two() / 2
        );
    }

    #[test]
    fn halving_ages_every_counter() {
        let mut sketch = FrequencySketch::new(64);
        sketch.add(1, 8);
        let before = sketch.estimate(1);
        sketch.halve();
        assert_eq!(sketch.estimate(1), before / 2);
    }

    #[test]
    fn many_additions_trigger_aging() {
        let mut sketch = FrequencySketch::new(64);
        sketch.add(9, 12);
        // 64 entries × SAMPLE_FACTOR increments: the sample size.
        for key in 0..(64 * super::SAMPLE_FACTOR) {
            sketch.add(key.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1 << 63, 1);
        }
        assert!(sketch.estimate(9) < 12, "the counts were never halved");
    }
}
