//! The race guard of the near cache: which reads may store their reply.
//!
//! A read registers its keys *before* its command is sent and takes a
//! ticket: the epoch of each key, the flush count and the connection it
//! runs on. An invalidation of a key bumps that key's epoch (only keys with
//! a read or write in flight have one); a flush (`FLUSHALL`, `clear`, a lost
//! connection) bumps the flush count. A reply is stored only if nothing
//! moved since the ticket was taken, and the reader checks again after
//! storing: anything that moved in between makes it delete what it stored.
//! So an invalidation either stops the store, or removes the stored value
//! (the invalidation's own delete, or the reader's), whatever the order in
//! which the tasks run.
//!
//! A write through the near cache is fenced too: while it is in flight,
//! reads of its keys store nothing, and its start and end bump the epochs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use hashbrown::HashMap;
use parking_lot::Mutex;

/// The keys with a read or write in flight, and the connection state.
#[derive(Default)]
pub(super) struct Fence {
    state: Mutex<State>,
    /// A mirror of `State::tracking == Some(State::connection)`, read by
    /// every local hit without taking the lock.
    serving: AtomicBool,
}

#[derive(Default)]
struct State {
    pending: HashMap<String, Pending, foldhash::fast::RandomState>,
    /// Bumped by every flush of the local store.
    flushes: u64,
    /// Bumped by every lost connection.
    connection: u64,
    /// The connection on which tracking was last switched on.
    tracking: Option<u64>,
}

#[derive(Default)]
struct Pending {
    /// Reads and writes holding this entry.
    users: u32,
    /// Writes in flight.
    writers: u32,
    epoch: u64,
}

/// What a read saw when it began.
pub(super) struct Ticket {
    fence: Arc<Fence>,
    keys: Vec<String>,
    epochs: Vec<u64>,
    flushes: u64,
    /// Whether tracking was on for the connection when the read began.
    tracked: Option<u64>,
    writer: bool,
}

impl Fence {
    /// Whether local hits may be served: tracking is on for the current
    /// connection and its local store was flushed after the last loss.
    pub(super) fn serving(&self) -> bool {
        self.serving.load(Ordering::Acquire)
    }

    /// The current connection generation.
    pub(super) fn connection(&self) -> u64 {
        self.state.lock().connection
    }

    /// Registers a read of `keys`; store its replies only while
    /// [`Ticket::valid`] says so.
    pub(super) fn begin_read(self: &Arc<Self>, keys: &[&str]) -> Ticket {
        self.begin(keys, false)
    }

    /// Registers a write of `keys`: reads in flight or beginning before it
    /// ends store nothing.
    pub(super) fn begin_write(self: &Arc<Self>, keys: &[&str]) -> Ticket {
        self.begin(keys, true)
    }

    fn begin(self: &Arc<Self>, keys: &[&str], writer: bool) -> Ticket {
        let mut state = self.state.lock();
        let mut epochs = Vec::with_capacity(keys.len());
        for &key in keys {
            let entry = state.pending.entry_ref(key).or_default();
            entry.users += 1;
            if writer {
                entry.writers += 1;
                entry.epoch += 1;
            }
            epochs.push(entry.epoch);
        }
        Ticket {
            fence: Arc::clone(self),
            keys: keys.iter().map(|key| (*key).to_owned()).collect(),
            epochs,
            flushes: state.flushes,
            tracked: state.tracking.filter(|&on| on == state.connection),
            writer,
        }
    }

    /// Records an invalidation of `keys` (before the local copies go).
    pub(super) fn invalidate<'a>(&self, keys: impl IntoIterator<Item = &'a str>) {
        let mut state = self.state.lock();
        if state.pending.is_empty() {
            return;
        }
        for key in keys {
            if let Some(entry) = state.pending.get_mut(key) {
                entry.epoch += 1;
            }
        }
    }

    /// Records a flush of the local store (before it is cleared).
    pub(super) fn flush(&self) {
        self.state.lock().flushes += 1;
    }

    /// Records a lost connection: no local hit is served until tracking is
    /// on again for a new connection.
    pub(super) fn disconnected(&self) {
        let mut state = self.state.lock();
        state.connection += 1;
        state.flushes += 1;
        state.tracking = None;
        self.serving.store(false, Ordering::Release);
    }

    /// Records that tracking was switched on while `connection` was the
    /// current connection and the local store was flushed since; serving
    /// resumes only if no loss happened meanwhile.
    pub(super) fn tracking_on(&self, connection: u64) -> bool {
        let mut state = self.state.lock();
        if state.connection != connection {
            return false;
        }
        state.tracking = Some(connection);
        self.serving.store(true, Ordering::Release);
        true
    }

    fn still(&self, ticket: &Ticket, index: Option<usize>) -> bool {
        let state = self.state.lock();
        if ticket.tracked.is_none()
            || ticket.tracked != state.tracking
            || state.tracking != Some(state.connection)
            || ticket.flushes != state.flushes
        {
            return false;
        }
        let unchanged = |i: usize| {
            state
                .pending
                .get(ticket.keys[i].as_str())
                .is_some_and(|p| p.epoch == ticket.epochs[i] && p.writers == 0)
        };
        match index {
            Some(i) => unchanged(i),
            None => (0..ticket.keys.len()).all(unchanged),
        }
    }

    fn end(&self, ticket: &Ticket) {
        let mut state = self.state.lock();
        for key in &ticket.keys {
            let Some(entry) = state.pending.get_mut(key.as_str()) else {
                continue;
            };
            entry.users = entry.users.saturating_sub(1);
            if ticket.writer {
                entry.writers = entry.writers.saturating_sub(1);
                entry.epoch += 1;
            }
            if entry.users == 0 {
                state.pending.remove(key.as_str());
            }
        }
    }

    /// Keys with a read or write in flight (for tests of leaks).
    #[cfg(test)]
    pub(super) fn pending_len(&self) -> usize {
        self.state.lock().pending.len()
    }
}

impl Ticket {
    /// Whether the reply for key `index` may be stored (and, checked again
    /// after storing, may stay).
    pub(super) fn valid(&self, index: usize) -> bool {
        self.fence.still(self, Some(index))
    }

    /// Whether replies for all keys may be stored.
    pub(super) fn all_valid(&self) -> bool {
        self.fence.still(self, None)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.fence.end(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracked() -> Arc<Fence> {
        let fence = Arc::new(Fence::default());
        assert!(fence.tracking_on(fence.connection()));
        fence
    }

    #[test]
    fn an_invalidation_during_a_read_stops_its_store() {
        let fence = tracked();
        let read = fence.begin_read(&["a", "b"]);
        assert!(read.valid(0) && read.valid(1));
        fence.invalidate(["a"]);
        assert!(!read.valid(0), "a was invalidated after the read began");
        assert!(read.valid(1), "b was not");
        assert!(!read.all_valid());
        drop(read);
        assert_eq!(fence.pending_len(), 0, "finished reads leave nothing");
    }

    #[test]
    fn a_write_in_flight_stops_stores_until_it_ends() {
        let fence = tracked();
        let before = fence.begin_read(&["k"]);
        let write = fence.begin_write(&["k"]);
        let during = fence.begin_read(&["k"]);
        assert!(!before.valid(0), "a read older than the write");
        assert!(!during.valid(0), "a read overlapping the write");
        drop(write);
        assert!(!during.valid(0), "the write's end moves the epoch again");
        let after = fence.begin_read(&["k"]);
        assert!(after.valid(0), "a read after the write may store");
        drop((before, during, after));
        assert_eq!(fence.pending_len(), 0);
    }

    #[test]
    fn flushes_and_lost_connections_stop_every_store() {
        let fence = tracked();
        let read = fence.begin_read(&["k"]);
        fence.flush();
        assert!(!read.valid(0));
        let read = fence.begin_read(&["k"]);
        fence.disconnected();
        assert!(!fence.serving());
        assert!(!read.valid(0));
        let untracked = fence.begin_read(&["k"]);
        assert!(!untracked.valid(0), "no store before tracking is on again");
        let stale = fence.connection() - 1;
        assert!(!fence.tracking_on(stale), "tracking on an old connection");
        assert!(fence.tracking_on(fence.connection()));
        assert!(fence.serving());
        assert!(
            !untracked.valid(0),
            "a read that began untracked never stores"
        );
        assert!(fence.begin_read(&["k"]).valid(0));
    }

    #[test]
    fn invalidations_of_idle_keys_leave_nothing_behind() {
        let fence = tracked();
        fence.invalidate(["x", "y"]);
        assert_eq!(fence.pending_len(), 0);
    }
}
