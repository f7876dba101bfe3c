//! S3-FIFO's ghost queue: the hashes of entries recently evicted from the
//! small queue. A key that comes back while its hash is here skips the small
//! queue. Only hashes are kept, so a collision at worst admits one entry to
//! the main queue early.

use std::collections::VecDeque;

use hashbrown::HashMap;

#[derive(Debug)]
pub(super) struct Ghost {
    order: VecDeque<u64>,
    counts: HashMap<u64, u32>,
    /// Fixed capacity; 0 means "follow the shard's entry count".
    capacity: u64,
}

impl Ghost {
    pub(super) fn new(capacity: u64) -> Self {
        Ghost {
            order: VecDeque::new(),
            counts: HashMap::new(),
            capacity,
        }
    }

    /// Remembers an evicted hash. `live_entries` sizes the queue when no
    /// fixed capacity was given.
    pub(super) fn insert(&mut self, hash: u64, live_entries: u64) {
        let capacity = if self.capacity == 0 {
            live_entries.max(1)
        } else {
            self.capacity
        };
        while self.order.len() as u64 >= capacity {
            self.pop_oldest();
        }
        self.order.push_back(hash);
        *self.counts.entry(hash).or_insert(0) += 1;
    }

    /// Whether the hash was remembered; forgets it if so.
    pub(super) fn take(&mut self, hash: u64) -> bool {
        match self.counts.get_mut(&hash) {
            Some(count) => {
                // The hash stays in `order` until it ages out; its count
                // going to zero is what makes it forgotten.
                *count -= 1;
                if *count == 0 {
                    self.counts.remove(&hash);
                }
                true
            }
            None => false,
        }
    }

    fn pop_oldest(&mut self) {
        if let Some(old) = self.order.pop_front()
            && let Some(count) = self.counts.get_mut(&old)
        {
            *count -= 1;
            if *count == 0 {
                self.counts.remove(&old);
            }
        }
    }
}
