//! [`Cache::get_many_or_load`]: one backend read for a batch of keys, one
//! loader call for the keys without a fresh value, one write of what it
//! loaded.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::backend::KeyInMessage;
use crate::error::Result;

use super::entry::Found;
use super::keys::StoredKey;
use super::load::Lookup;
use super::loader::{BoxError, Failure};
use super::options::{Plan, Resolved};
use super::stats::bump;
use super::{Cache, Codec, EntryOptions};

/// A key of the batch that the loader is asked for.
struct Pending {
    /// Its first place in the batch.
    index: usize,
    /// The value to serve if the load fails: a stale value, or an expired
    /// one fail-safe may serve.
    fallback: Option<Found>,
    /// Its write gate's generation when the load started.
    generation: u64,
}

/// What one load of a batch found for a key: a value, or "not found".
type Loaded = HashMap<String, Found>;

impl<C: Codec> Cache<C> {
    /// Returns the values of `keys` (one answer per key, in order),
    /// calling `loader` once with the keys that have no fresh value
    /// (each once, in their first order) — `cached`'s and moka's users ask
    /// for this to turn N database reads into one `WHERE id IN (...)`.
    ///
    /// One backend `get_many` finds what is missing; one loader call loads
    /// it; its values are written with one `set_many` (and the "not
    /// found"s, if a negative TTL caches them, with a second one, since
    /// they expire differently). A key the loader does not return is "not
    /// found": `None`, cached negatively if the options have a negative
    /// TTL. Keys it returns that were not asked for are ignored.
    ///
    /// A stale value (past its soft TTL) is loaded again with the missing
    /// keys, in the same call, and served if the loader fails; so is an
    /// expired value that fail-safe may serve. When the loader fails (or
    /// passes the hard timeout) and a key has no such value, the call
    /// fails with the loader's error
    /// ([`LoaderError`](super::LoaderError) is its source). The loader
    /// runs inside this call's future: it may borrow, and nothing runs in
    /// the background (no eager refresh, no throttle).
    ///
    /// **Single-flight:** a batch does not join or start the per-key
    /// loads of [`get_or_load`](Self::get_or_load), and two concurrent
    /// batches that overlap load their common keys twice. What holds is
    /// the write order: a write, an invalidation or a
    /// [`clear`](Self::clear) of this process that comes while the batch
    /// loads wins, and the batch does not store over it.
    ///
    /// ```
    /// # use std::collections::HashMap;
    /// # use std::sync::Arc;
    /// # use cachette::MemoryBackend;
    /// # use cachette::cache::{Cache, EntryOptions};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> cachette::Result<()> {
    /// let cache = Cache::builder(Arc::new(MemoryBackend::default())).build().await?;
    /// cache.set("user:1", &"Ada".to_string(), &EntryOptions::new()).await?;
    /// let names = cache
    ///     .get_many_or_load(
    ///         &["user:1", "user:2", "user:3"],
    ///         |missing| async move {
    ///             // e.g. SELECT id, name FROM users WHERE id IN (...)
    ///             assert_eq!(missing, ["user:2", "user:3"]);
    ///             let found: HashMap<String, String> =
    ///                 [("user:2".to_string(), "Grace".to_string())].into();
    ///             Ok::<_, std::io::Error>(found)
    ///         },
    ///         &EntryOptions::new(),
    ///     )
    ///     .await?;
    /// assert_eq!(names, [Some("Ada".into()), Some("Grace".into()), None]);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn get_many_or_load<T, F, Fut, E, I>(
        &self,
        keys: &[&str],
        loader: F,
        options: &EntryOptions,
    ) -> Result<Vec<Option<T>>>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce(Vec<String>) -> Fut,
        Fut: Future<Output = std::result::Result<I, E>>,
        I: IntoIterator<Item = (String, T)>,
        E: Into<BoxError>,
    {
        let inner = &*self.inner;
        let resolved = inner.resolve(options)?;
        let stored = keys
            .iter()
            .map(|key| inner.keys.stored(key))
            .collect::<Result<Vec<_>>>()?;
        let (answers, pending) = self.read_batch(keys, &stored, &resolved).await?;
        if pending.is_empty() {
            return Ok(answers.into_iter().map(Option::unwrap_or_default).collect());
        }
        let epoch = inner.epoch.load(Ordering::Acquire);
        let version = inner.keys.version();
        let asked: Vec<String> = pending.iter().map(|p| keys[p.index].to_owned()).collect();
        bump(&inner.counters.loads);
        let loaded = match self
            .run_batch_loader(asked.len(), loader(asked), &resolved)
            .await
        {
            Ok(items) => {
                let loaded = self.encode_batch(keys, &pending, items)?;
                self.store_batch(
                    keys,
                    &stored,
                    &pending,
                    &loaded,
                    &resolved,
                    (epoch, version),
                )
                .await;
                loaded
            }
            Err(failure) => {
                bump(&inner.counters.load_errors);
                if pending.iter().any(|p| p.fallback.is_none()) {
                    return Err(failure.to_error());
                }
                tracing::warn!(error = %failure.message, "fail-safe: the batch loader failed; serving stale values");
                let mut fallbacks = Loaded::with_capacity(pending.len());
                for p in pending {
                    let key = keys[p.index];
                    if let Some(found) = p.fallback {
                        self.activate_fail_safe(&stored[p.index].identity(key), &resolved, &found);
                        fallbacks.insert(key.to_owned(), found);
                    }
                }
                fallbacks
            }
        };
        keys.iter()
            .zip(answers)
            .map(|(key, answer)| match (answer, loaded.get(*key)) {
                (Some(answer), _) => Ok(answer),
                (None, Some(found)) => inner
                    .decode(found)
                    .map_err(|e| e.context(format_args!("key {}", KeyInMessage(key)))),
                (None, None) => Ok(None),
            })
            .collect()
    }

    /// Reads the batch with one `get_many`: the answers of the keys that
    /// have one (fresh values, or fail-safe's when the backend failed),
    /// and the keys to load, each once.
    async fn read_batch<T: DeserializeOwned>(
        &self,
        keys: &[&str],
        stored: &[StoredKey],
        resolved: &Resolved,
    ) -> Result<(Vec<Option<Option<T>>>, Vec<Pending>)> {
        let inner = &*self.inner;
        let refs: Vec<&str> = stored.iter().map(|s| s.full.as_str()).collect();
        let mut reads = inner.backend.get_many(&refs).await;
        let mut answers = Vec::with_capacity(keys.len());
        let mut pending = Vec::new();
        let mut seen = HashSet::new();
        for index in 0..keys.len() {
            let (key, stored) = (keys[index], &stored[index]);
            let read = match &mut reads {
                Ok(bytes) => Ok(bytes.get_mut(index).and_then(Option::take)),
                Err(error) => Err(&*error),
            };
            let answer = match self.decide(key, stored, read, resolved) {
                Lookup::Fresh(found) | Lookup::Eager(found, _) => {
                    Some(self.serve_fresh(&stored.identity(key), resolved, &found))
                }
                Lookup::BackendFailed(found) => {
                    Some(self.serve_fail_safe(&stored.identity(key), resolved, &found))
                }
                Lookup::Stale(found, _) => {
                    self.pend(&mut pending, &mut seen, (key, stored), index, Some(found));
                    None
                }
                Lookup::Load { fallback, .. } => {
                    self.pend(&mut pending, &mut seen, (key, stored), index, fallback);
                    None
                }
            };
            answers.push(
                answer
                    .transpose()
                    .map_err(|e| e.context(format_args!("key {}", KeyInMessage(key))))?,
            );
        }
        Ok((answers, pending))
    }

    /// Adds a key to load (once, however often the batch names it).
    fn pend<'k>(
        &self,
        pending: &mut Vec<Pending>,
        seen: &mut HashSet<&'k str>,
        (key, stored): (&'k str, &StoredKey),
        index: usize,
        fallback: Option<Found>,
    ) {
        if seen.insert(key) {
            let gate = self.inner.gate(&stored.full);
            pending.push(Pending {
                index,
                fallback,
                generation: gate.generation.load(Ordering::Acquire),
            });
        }
    }

    /// Runs the batch loader, cancelled after the hard timeout.
    async fn run_batch_loader<T, I, E>(
        &self,
        count: usize,
        running: impl Future<Output = std::result::Result<I, E>>,
        resolved: &Resolved,
    ) -> std::result::Result<I, Failure>
    where
        I: IntoIterator<Item = (String, T)>,
        E: Into<BoxError>,
    {
        let result = match resolved.hard_timeout {
            Some(limit) => match tokio::time::timeout(limit, running).await {
                Ok(result) => result,
                Err(_) => {
                    bump(&self.inner.counters.hard_timeouts);
                    return Err(Failure::batch_timed_out(count, limit));
                }
            },
            None => running.await,
        };
        result.map_err(|error| Failure::of_batch_loader(count, error.into()))
    }

    /// The loaded values of the asked keys, encoded; the asked keys the
    /// loader did not return are "not found".
    fn encode_batch<T: Serialize>(
        &self,
        keys: &[&str],
        pending: &[Pending],
        items: impl IntoIterator<Item = (String, T)>,
    ) -> Result<Loaded> {
        let inner = &*self.inner;
        let mut values: HashMap<String, T> = items.into_iter().collect();
        let now = inner.now();
        let mut loaded = Loaded::with_capacity(pending.len());
        for p in pending {
            let key = keys[p.index];
            let found = match values.remove(key) {
                Some(value) => Found {
                    payload: Bytes::from(inner.codec.encode(&value)?),
                    codec: Some(inner.codec.id()),
                    created: Some(now),
                    soft_deadline: 0,
                    hard_deadline: 0,
                    negative: false,
                },
                None => Found {
                    payload: Bytes::new(),
                    codec: None,
                    created: None,
                    soft_deadline: 0,
                    hard_deadline: 0,
                    negative: true,
                },
            };
            loaded.insert(key.to_owned(), found);
        }
        if !values.is_empty() {
            tracing::debug!(
                extra = values.len(),
                "the batch loader returned keys that were not asked for; ignored"
            );
        }
        Ok(loaded)
    }

    /// Stores what a batch loaded (values with one `set_many`, cached "not
    /// found"s with another), except the keys that a write of this process
    /// changed meanwhile, and nothing after an invalidation or a version
    /// bump. A backend error is logged: the callers have their values.
    async fn store_batch(
        &self,
        keys: &[&str],
        stored: &[StoredKey],
        pending: &[Pending],
        loaded: &Loaded,
        resolved: &Resolved,
        (epoch, version): (u64, u64),
    ) {
        let inner = &*self.inner;
        let now = inner.now();
        let plans = [resolved.plan(now, false), resolved.plan(now, true)];
        let gate_indices =
            inner.gate_indices(pending.iter().map(|p| stored[p.index].full.as_str()));
        let mut guards = Vec::with_capacity(gate_indices.len());
        for index in gate_indices {
            guards.push(inner.gates[index].lock.write().await);
        }
        // As a single load's store: an `invalidate_tags` waits for this
        // store once it passed the check, so that the backend removes what
        // it wrote.
        let _epoch = inner.epoch_gate.read().await;
        let superseded =
            || inner.epoch.load(Ordering::Acquire) != epoch || inner.keys.version() != version;
        if superseded() {
            tracing::debug!("an invalidation came while the batch loaded; not storing it");
            return;
        }
        let mut batches: [Vec<(&str, Bytes)>; 2] = [Vec::new(), Vec::new()];
        let mut kept = Vec::new();
        for p in pending {
            let (key, stored) = (keys[p.index], &stored[p.index]);
            let Some(found) = loaded.get(key) else {
                continue;
            };
            let unchanged =
                inner.gate(&stored.full).generation.load(Ordering::Acquire) == p.generation;
            if !unchanged || (found.negative && resolved.negative_ttl.is_none()) {
                continue;
            }
            let negative = usize::from(found.negative);
            let plan: &Plan = &plans[negative];
            let bytes = inner.entry_bytes(
                stored,
                key,
                found.payload.clone(),
                inner.codec.id(),
                resolved,
                plan,
                now,
                found.negative,
            );
            batches[negative].push((stored.full.as_str(), bytes));
            if !found.negative && resolved.fail_safe.is_some() {
                let mut copy = found.clone();
                copy.soft_deadline = plan.soft_deadline;
                copy.hard_deadline = plan.hard_deadline;
                kept.push((stored.identity(key), copy));
            }
        }
        for (batch, plan) in batches.iter().zip(&plans) {
            if batch.is_empty() {
                continue;
            }
            if let Err(error) = inner.backend.set_many(batch, &plan.set_options).await {
                tracing::warn!(%error, keys = batch.len(), "could not store the batch's loaded values");
            }
        }
        for (copy_key, found) in &kept {
            inner.copies.remember(copy_key, found);
        }
        // A version bump between the check and here has dropped the
        // copies already: these must go too.
        if superseded() {
            for (copy_key, _) in &kept {
                inner.copies.forget(copy_key);
            }
        }
        drop(guards);
    }
}
