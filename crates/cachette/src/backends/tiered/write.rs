//! Writes that finish even when their future is dropped.
//!
//! A write's future may be dropped at any await (a client gone, a
//! `select!`, a timeout layer above). Were it dropped after L2 changed and
//! before L1 and the other instances were told, the old L1 copies would be
//! served on. So a write of keys first marks them pending (no fill of them
//! is made) and drops their L1 copies, **then** writes L2; and a
//! [`Writing`] that is dropped before [`Writing::finish`] spawns the rest
//! on the runtime: the L1 drop again (the L2 write may still land, as with
//! a command already sent to a server) and the message to the other
//! instances.

use super::{Change, TieredBackend};
use crate::error::Result;

/// What a write changes, owned, for the task that finishes a dropped one.
pub(super) enum Changed {
    Keys(Vec<String>),
    Tags(Vec<String>),
    Clear,
}

/// A write in progress; see the module docs.
pub(super) struct Writing {
    backend: TieredBackend,
    /// The guard stripes marked pending.
    stripes: Vec<usize>,
    /// `None` once finished.
    change: Option<Changed>,
}

impl Writing {
    /// Begins a write of `keys`: marks them pending and drops their L1
    /// copies. An L1 that cannot drop them fails the write before L2 is
    /// touched.
    pub(super) async fn keys(backend: &TieredBackend, keys: &[&str]) -> Result<Writing> {
        let shared = backend.shared();
        let writing = Writing {
            backend: backend.clone(),
            stripes: shared.guard.begin_writes(keys),
            change: Some(Changed::Keys(
                keys.iter().map(|key| (*key).to_owned()).collect(),
            )),
        };
        match shared.drop_keys(keys).await {
            Ok(()) => Ok(writing),
            Err(error) => {
                writing.finish();
                Err(error)
            }
        }
    }

    /// Begins a write of keys unknown here (`clear`, `invalidate_tags`).
    pub(super) fn unknown_keys(backend: &TieredBackend, change: Changed) -> Writing {
        Writing {
            backend: backend.clone(),
            stripes: Vec::new(),
            change: Some(change),
        }
    }

    /// The write told L1 and the other instances itself.
    pub(super) fn finish(mut self) {
        self.change = None;
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        self.backend.shared().guard.end_writes(&self.stripes);
        let Some(change) = self.change.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                backend = super::NAME,
                "a write was dropped outside a runtime; L1 copies may stay until their TTL"
            );
            return;
        };
        let backend = self.backend.clone();
        runtime.spawn(async move {
            if let Err(error) = backend.finish_dropped(&change).await {
                tracing::warn!(backend = super::NAME, %error, "cannot finish a dropped write");
            }
        });
    }
}

impl TieredBackend {
    /// Drops the L1 copies a dropped write may have made stale, and tells
    /// the other instances.
    async fn finish_dropped(&self, change: &Changed) -> Result<()> {
        let shared = self.shared();
        match change {
            Changed::Keys(keys) => {
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                self.changed_keys(&keys, true).await
            }
            Changed::Tags(tags) => {
                let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
                let dropped = shared.drop_tags(&tags).await;
                self.announce(Change::Tags(&tags)).await;
                dropped
            }
            Changed::Clear => {
                let dropped = shared.drop_all().await;
                self.announce(Change::Clear).await;
                dropped
            }
        }
    }
}
