//! Invalidations: the push messages of the tracking connection, and the
//! task that applies them to the local store.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc;

use super::fence::Fence;
use super::{NAME, Work, source_tag, user_key};
use crate::backend::Backend;
use crate::backends::common::{Counters, Event};
use crate::error::Result;

/// Handles the connection's push messages: counts and fences at once (the
/// reader that is about to store must see them), and queues the local
/// deletes for the worker.
pub(super) fn push_handler(
    prefix: String,
    fence: Arc<Fence>,
    counters: Arc<Counters>,
    work: mpsc::UnboundedSender<Work>,
) -> impl Fn(PushInfo) -> std::result::Result<(), ()> + Send + Sync + 'static {
    move |info: PushInfo| {
        match info.kind {
            PushKind::Invalidate => match info.data.first() {
                Some(Value::Array(names)) => {
                    let keys: Vec<String> = names
                        .iter()
                        .filter_map(|name| match name {
                            Value::BulkString(bytes) => user_key(bytes, &prefix),
                            _ => None,
                        })
                        .map(str::to_owned)
                        .collect();
                    counters.add(Event::InvalidationReceived, names.len() as u64);
                    fence.invalidate(keys.iter().map(String::as_str));
                    if !keys.is_empty() {
                        let _ = work.send(Work::Drop(keys));
                    }
                }
                // `FLUSHALL` / `FLUSHDB`: an invalidation without keys.
                _ => {
                    tracing::debug!(
                        backend = NAME,
                        "the server flushed; flushing the local store"
                    );
                    counters.bump(Event::Flush);
                    fence.flush();
                    let _ = work.send(Work::Clear);
                }
            },
            PushKind::Disconnection => {
                tracing::debug!(
                    backend = NAME,
                    "connection lost; flushing the local store until tracking is on again"
                );
                counters.bump(Event::Flush);
                fence.disconnected();
                let _ = work.send(Work::Clear);
            }
            _ => {}
        }
        Ok(())
    }
}

/// Applies queued invalidations to the local store until the connection
/// (the only sender) is gone.
pub(super) async fn apply_invalidations(
    local: Arc<dyn Backend>,
    derived: Arc<AtomicBool>,
    mut work: mpsc::UnboundedReceiver<Work>,
) {
    while let Some(job) = work.recv().await {
        let outcome = match job {
            Work::Drop(keys) => drop_local(local.as_ref(), &derived, &keys).await,
            Work::Clear => local.clear().await,
        };
        if let Err(err) = outcome {
            tracing::warn!(backend = NAME, error = %err, "the local store refused an invalidation");
        }
    }
}

/// Removes the local copies of `keys` and the derived entries made from
/// them. A key the local store cannot hold (over its key limit) has no
/// copy to remove; if the batch still fails, each key is removed on its
/// own, so that one refused key never keeps the others stale.
pub(super) async fn drop_local(
    local: &dyn Backend,
    derived: &AtomicBool,
    keys: &[String],
) -> Result<()> {
    let max_key_len = local.capabilities().max_key_len;
    let refs: Vec<&str> = keys
        .iter()
        .map(String::as_str)
        .filter(|key| key.len() <= max_key_len)
        .collect();
    delete_each_if_refused(local, &refs).await?;
    if derived.load(Ordering::Acquire) {
        let tags: Vec<String> = keys.iter().map(|key| source_tag(key)).collect();
        let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
        local.invalidate_tags(&tags).await?;
    }
    Ok(())
}

/// `delete_many(keys)`, or, if the local store refuses the batch, one
/// `delete` per key; the first error of those, after trying them all.
async fn delete_each_if_refused(local: &dyn Backend, keys: &[&str]) -> Result<()> {
    if keys.is_empty() || local.delete_many(keys).await.is_ok() {
        return Ok(());
    }
    let mut outcome = Ok(());
    for key in keys {
        if let Err(err) = local.delete(key).await {
            tracing::warn!(backend = NAME, error = %err, "the local store refused to drop a copy");
            if outcome.is_ok() {
                outcome = Err(err);
            }
        }
    }
    outcome
}
