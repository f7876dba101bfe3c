//! The tag index: the writes that keep it, the slot indexes of cluster
//! mode, and invalidation.

use std::time::Duration;

use super::request::{all, ttl_arg};
use super::{NAME, PARALLEL, RedisBackend, scripts};

/// Members of a tag set handled by one step of `invalidate_tags`: a few
/// milliseconds of the server's time at most.
const INVALIDATE_BATCH: usize = 100;
use crate::backend::{SetCondition, SetOptions};
use crate::error::{Error, ErrorKind, Result};

impl RedisBackend {
    /// Adds to `pipe` one [`DROP_ENTRIES`](scripts::DROP_ENTRIES) of the
    /// tag records of `keys`, the keys of untagged writes about to follow
    /// in the same pipeline: they leave their tag sets. Its answer is
    /// ignored.
    ///
    /// The records go first. A tagged write of one of these keys landing
    /// between the script and its `SET` leaves its record in place for the
    /// untagged value: a later invalidation of those tags removes the value
    /// (a miss), never leaves a tagged value behind. No MULTI is needed for
    /// that, and none is sent. An absent key has no tag record, so `NX`
    /// writes have nothing to drop. In cluster mode `keys` are of one slot,
    /// and so are their records.
    pub(super) fn push_record_drop<'k>(
        &self,
        pipe: &mut redis::Pipeline,
        keys: impl IntoIterator<Item = &'k str>,
        condition: SetCondition,
    ) {
        if condition == SetCondition::IfAbsent || !self.inner.tags {
            return;
        }
        let keys: Vec<&str> = keys.into_iter().collect();
        pipe.invoke_script(&self.drop_entries(&keys, false));
        pipe.ignore();
    }

    /// The [`DROP_ENTRIES`](scripts::DROP_ENTRIES) of `keys` (of one slot
    /// in cluster mode): their tag records and memberships, and with
    /// `data` their values too.
    pub(super) fn drop_entries<'a>(
        &self,
        keys: &[&str],
        data: bool,
    ) -> redis::ScriptInvocation<'a> {
        let mut invocation = scripts::DROP_ENTRIES.prepare_invoke();
        for key in keys {
            invocation.key(self.record_key(key));
        }
        if data {
            for key in keys {
                invocation.key(self.data_key(key));
            }
        }
        let tag_prefix = keys.first().map(|key| self.tag_prefix(key));
        invocation.arg(tag_prefix.unwrap_or_default());
        for key in keys {
            invocation.arg(*key);
        }
        invocation
    }

    /// Adds the `SET` of one untagged write to `pipe`, after
    /// [`push_record_drop`](Self::push_record_drop) of its key.
    pub(super) fn push_plain_set(
        &self,
        pipe: &mut redis::Pipeline,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        condition: SetCondition,
    ) {
        pipe.cmd("SET").arg(self.data_key(key)).arg(value);
        if let Some(ttl) = ttl {
            pipe.arg("PX").arg(ttl_arg(Some(ttl)));
        }
        match condition {
            SetCondition::Always => {}
            SetCondition::IfAbsent => {
                pipe.arg("NX");
            }
            SetCondition::IfPresent => {
                pipe.arg("XX");
            }
        }
    }

    pub(super) fn tagged_set_invocation<'a>(
        &self,
        invocation: &mut redis::ScriptInvocation<'a>,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        options: &SetOptions,
    ) {
        let condition = match options.condition {
            SetCondition::Always => "A",
            SetCondition::IfAbsent => "N",
            SetCondition::IfPresent => "X",
        };
        invocation
            .key(self.data_key(key))
            .key(self.record_key(key))
            .arg(value)
            .arg(ttl_arg(ttl))
            .arg(condition)
            .arg(self.tag_prefix(key))
            .arg(key);
        for tag in &options.tags {
            invocation.arg(tag.as_str());
        }
    }

    pub(super) fn check_tags(&self, options: &SetOptions) -> Result<()> {
        if !options.tags.is_empty() {
            self.tags_on("set")?;
        }
        if options.tags.iter().any(String::is_empty) {
            return Err(Error::invalid_input(NAME, "a tag is empty"));
        }
        Ok(())
    }

    /// [`ErrorKind::Unsupported`] naming `operation` when tags are off.
    pub(super) fn tags_on(&self, operation: &'static str) -> Result<()> {
        if self.inner.tags {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Unsupported,
            NAME,
            "tags are off for this backend (`tags=false`)",
        )
        .with_operation(operation))
    }

    /// Cluster mode: records in each tag's slot index that entries of
    /// these slots carry the tag (after they were written, see the module
    /// docs). Nothing to do standalone.
    pub(super) async fn index_tags(
        &self,
        operation: &'static str,
        tags: &[String],
        slots: &[u16],
        ttl: Option<Duration>,
    ) -> Result<()> {
        if !self.is_cluster() || slots.is_empty() {
            return Ok(());
        }
        let mut jobs = Vec::with_capacity(tags.len());
        for tag in tags {
            let mut invocation = scripts::INDEX_TAG.prepare_invoke();
            invocation
                .key(self.internal_key("i", tag))
                .arg(ttl_arg(ttl))
                .arg(slots);
            let mut conn = self.conn();
            jobs.push(async move { invocation.invoke_async::<()>(&mut conn).await });
        }
        self.run(operation, all(jobs)).await?;
        Ok(())
    }

    /// Removes the entries tagged with any of `tags`: each tag set walked
    /// in short steps ([`drain_tag`](Self::drain_tag)); in cluster mode the
    /// slots of each tag's index first, then the tag's set in each of them
    /// (see the module docs).
    pub(super) async fn invalidate(&self, tags: &[&str]) -> Result<u64> {
        if tags.is_empty() {
            return Ok(0);
        }
        let mut unique: Vec<&str> = tags.to_vec();
        unique.sort_unstable();
        unique.dedup();
        // Standalone: every tag's one set. Cluster: the slots each
        // tag's index names (taken out of the index first, see the module
        // docs), then the tag's set in each of those slots.
        let mut by_slot: std::collections::BTreeMap<Option<u16>, Vec<&str>> = Default::default();
        if self.is_cluster() {
            let mut jobs = Vec::with_capacity(unique.len());
            for tag in &unique {
                let index = self.internal_key("i", tag);
                let mut conn = self.conn();
                jobs.push(async move {
                    let slots: Vec<u16> = redis::cmd("SMEMBERS")
                        .arg(&index)
                        .query_async(&mut conn)
                        .await?;
                    if !slots.is_empty() {
                        redis::cmd("SREM")
                            .arg(&index)
                            .arg(&slots)
                            .query_async::<()>(&mut conn)
                            .await?;
                    }
                    Ok(slots)
                });
            }
            let found = self.run("invalidate_tags", all(jobs)).await?;
            let found = unique.iter().copied().zip(found);
            for (tag, slots) in found {
                for slot in slots {
                    by_slot.entry(Some(slot)).or_default().push(tag);
                }
            }
        } else {
            by_slot.insert(None, unique);
        }
        let steps: Vec<(Option<u16>, &str)> = by_slot
            .into_iter()
            .flat_map(|(slot, tags)| tags.into_iter().map(move |tag| (slot, tag)))
            .collect();
        let mut removed = 0;
        for chunk in steps.chunks(PARALLEL) {
            let mut jobs = Vec::with_capacity(chunk.len());
            for &(slot, tag) in chunk {
                jobs.push(self.drain_tag(slot, tag));
            }
            let counts = futures_util::future::try_join_all(jobs).await?;
            removed += counts.into_iter().sum::<u64>();
        }
        Ok(removed)
    }

    /// Removes the entries of one tag set (of `slot` in cluster mode) in
    /// bounded steps of about [`INVALIDATE_BATCH`] members each, so that
    /// the server never runs one long script. Stops once the drain it
    /// renamed the set to was walked through: every member present
    /// throughout a walk is seen (see [`INVALIDATE_STEP`](scripts::INVALIDATE_STEP)).
    async fn drain_tag(&self, slot: Option<u16>, tag: &str) -> Result<u64> {
        let mut set = self.slot_prefix("t", slot);
        set.extend_from_slice(tag.as_bytes());
        let mut drain = self.slot_prefix("d", slot);
        drain.extend_from_slice(tag.as_bytes());
        let (mut removed, mut renamed, mut cursor) = (0, false, "0".to_owned());
        loop {
            let mut invocation = scripts::INVALIDATE_STEP.prepare_invoke();
            invocation
                .key(&set)
                .key(&drain)
                .arg(self.inner.prefix.as_bytes())
                .arg(self.slot_prefix("k", slot))
                .arg(self.slot_prefix("t", slot))
                .arg(tag)
                .arg(&cursor)
                .arg(INVALIDATE_BATCH);
            let mut conn = self.conn();
            let (count, status, next): (u64, u8, String) = self
                .run("invalidate_tags", async move {
                    invocation.invoke_async(&mut conn).await
                })
                .await?;
            removed += count;
            renamed |= status == 1;
            if status == 0 || (renamed && next == "0") {
                return Ok(removed);
            }
            cursor = next;
        }
    }
}
