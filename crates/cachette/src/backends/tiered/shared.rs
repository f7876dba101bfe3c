//! What the backend shares with the channel's listening task: L1, the
//! race guard and the counters, and the ways L1 copies are written and
//! dropped.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::READ_TAG;
use super::guard::{Guard, Ticket};
use crate::backend::{Backend, SetOptions};
use crate::backends::common::Counters;
use crate::error::Result;

/// What the backend shares with the channel's listening task: L1, the race
/// guard and the counters.
pub(super) struct Shared {
    pub(super) l1: Arc<dyn Backend>,
    pub(super) l1_tags: bool,
    pub(super) guard: Guard,
    pub(super) counters: Counters,
}

impl Shared {
    /// Stores a copy read from L2, unless the key (or everything) was
    /// invalidated since `ticket` was taken. L1 errors are only logged.
    pub(super) async fn fill(&self, key: &str, value: Bytes, ttl: Duration, ticket: Ticket) {
        let Some(_held) = self.guard.fill_lock(ticket).await else {
            return;
        };
        let mut options = SetOptions::new().ttl(ttl);
        if self.l1_tags {
            options = options.tags([READ_TAG]);
        }
        if let Err(error) = self.l1.set(key, value, &options).await {
            tracing::debug!(%error, "tiered backend could not copy an entry into L1");
        }
    }

    /// Ends a `set` begun with [`Guard::begin_write`]: stores `copy` in L1
    /// if the write was alone, drops the L1 copy otherwise.
    pub(super) async fn finish_write(
        &self,
        key: &str,
        ticket: Ticket,
        copy: Option<(Bytes, Duration, &[String])>,
    ) -> Result<()> {
        let (_held, alone) = self.guard.finish_write(ticket).await;
        if alone && let Some((value, ttl, tags)) = copy {
            let mut options = SetOptions::new().ttl(ttl);
            if self.l1_tags {
                options = options.tags(tags.iter().cloned());
            }
            match self.l1.set(key, value, &options).await {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(error) => {
                    tracing::debug!(%error, "tiered backend could not write an entry through to L1");
                }
            }
        }
        self.l1
            .delete(key)
            .await
            .map(|_| ())
            .map_err(|error| error.context("tiered: dropping the L1 copy after a write"))
    }

    /// Drops the L1 copies of `keys`, after any fill in progress on them.
    pub(super) async fn drop_keys(&self, keys: &[&str]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        self.guard.bump_keys(keys).await;
        self.l1
            .delete_many(keys)
            .await
            .map(|_| ())
            .map_err(|error| error.context("tiered: dropping L1 copies"))
    }

    /// Drops the L1 copies tagged with any of `tags` and every copy read
    /// from L2 (whose tags are unknown); clears L1 if it has no tags.
    pub(super) async fn drop_tags(&self, tags: &[&str]) -> Result<()> {
        if tags.is_empty() {
            return Ok(());
        }
        self.guard.bump_all(None).await;
        let dropped = if self.l1_tags {
            let mut all = tags.to_vec();
            all.push(READ_TAG);
            self.l1.invalidate_tags(&all).await.map(|_| ())
        } else {
            self.l1.clear().await
        };
        dropped.map_err(|error| error.context("tiered: invalidating tags in L1"))
    }

    /// Clears L1, after any fill in progress.
    pub(super) async fn drop_all(&self) -> Result<()> {
        self.guard.bump_all(None).await;
        self.l1
            .clear()
            .await
            .map_err(|error| error.context("tiered: clearing L1"))
    }
}
