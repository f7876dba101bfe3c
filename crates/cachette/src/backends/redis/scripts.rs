//! The Lua scripts that keep multi-key invariants atomic on the server.
//!
//! Key layout (see the module docs): a user key `k` is stored at
//! `{prefix}k`; the tags of `k` at `{prefix}\xFFk:k` (a set of tag names);
//! the keys of tag `t` at `{prefix}\xFFt:t` (a set of user keys). `\xFF`
//! never occurs in UTF-8, so no user key can collide with an internal one.
//! In cluster mode the record and tag-set names carry the slot tag `{T}` of
//! the key's slot after the `k:`/`t:`, and the scripts get per-slot
//! prefixes, so every key a script touches is in one slot.
//!
//! Numbers cross the Lua boundary as strings: Lua numbers are doubles and
//! would round counters above 2^53.

use std::sync::LazyLock;

use redis::Script;

/// `incr`: INCRBY, then PEXPIRE only if the key was created. Returns the
/// new value as a string (exact for every `i64`; Lua numbers are doubles),
/// read before the expiry is set so that even a 1 ms TTL cannot take the
/// counter away before it is returned.
///
/// KEYS: data key. ARGV: delta, TTL in ms (`0` = none).
pub(super) static INCR: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local created = redis.call('EXISTS', KEYS[1]) == 0
redis.call('INCRBY', KEYS[1], ARGV[1])
local value = redis.call('GET', KEYS[1])
if created and ARGV[2] ~= '0' then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return value
",
    )
});

/// `set` with tags: the condition, the write, then the tag index: old
/// memberships removed, new ones added, the tag sets kept alive at least
/// as long as the entry. Each tag set is swept a little on the way: a few
/// random members (`SWEEP`, 4) whose record no longer names the tag (an
/// expired entry) are removed, so that expiry cannot grow a set without
/// bound.
///
/// KEYS: data key, tags-of-key set. ARGV: value, TTL in ms (`0` = none),
/// condition (`A`lways, `N`X, `X`X), tag-set prefix, user key, tags...
pub(super) static SET_TAGGED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local SWEEP = 4
local exists = redis.call('EXISTS', KEYS[1]) == 1
if (ARGV[3] == 'N' and exists) or (ARGV[3] == 'X' and not exists) then
  return 0
end
local ttl = ARGV[2]
if ttl == '0' then
  redis.call('SET', KEYS[1], ARGV[1])
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
end
local tag_prefix, user_key = ARGV[4], ARGV[5]
local record_prefix = string.sub(KEYS[2], 1, #KEYS[2] - #user_key)
for _, old in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  redis.call('SREM', tag_prefix .. old, user_key)
end
redis.call('DEL', KEYS[2])
if #ARGV < 6 then
  return 1
end
for i = 6, #ARGV do
  local tag_key = tag_prefix .. ARGV[i]
  local created = redis.call('EXISTS', tag_key) == 0
  redis.call('SADD', tag_key, user_key)
  redis.call('SADD', KEYS[2], ARGV[i])
  for _, member in ipairs(redis.call('SRANDMEMBER', tag_key, SWEEP)) do
    if redis.call('SISMEMBER', record_prefix .. member, ARGV[i]) == 0 then
      redis.call('SREM', tag_key, member)
    end
  end
  if ttl == '0' then
    redis.call('PERSIST', tag_key)
  else
    local left = redis.call('PTTL', tag_key)
    if created or (left >= 0 and left < tonumber(ttl)) then
      redis.call('PEXPIRE', tag_key, ttl)
    end
  end
end
if ttl ~= '0' then
  redis.call('PEXPIRE', KEYS[2], ttl)
end
return 1
",
    )
});

/// `touch`: a new deadline for the key, its tag record, and (extended
/// only) its tag sets. Returns 1 if the key existed.
///
/// KEYS: data key, tags-of-key set. ARGV: TTL in ms (`0` = persist),
/// tag-set prefix.
pub(super) static TOUCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local ttl = ARGV[1]
if ttl == '0' then
  redis.call('PERSIST', KEYS[1])
  redis.call('PERSIST', KEYS[2])
else
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
for _, tag in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local tag_key = ARGV[2] .. tag
  if ttl == '0' then
    redis.call('PERSIST', tag_key)
  else
    local left = redis.call('PTTL', tag_key)
    if left >= 0 and left < tonumber(ttl) then
      redis.call('PEXPIRE', tag_key, ttl)
    end
  end
end
return 1
",
    )
});

/// `delete` and untagged overwrites: the entries leave their tag sets
/// and lose their tag records; with data keys given, those are unlinked
/// too. Returns how many data keys existed.
///
/// KEYS: the tag records of `n` keys, then (to delete them) their `n` data
/// keys. ARGV: tag-set prefix, then the `n` user keys.
pub(super) static DROP_ENTRIES: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local n = #ARGV - 1
local removed = 0
for i = 1, n do
  for _, tag in ipairs(redis.call('SMEMBERS', KEYS[i])) do
    redis.call('SREM', ARGV[1] .. tag, ARGV[i + 1])
  end
  redis.call('UNLINK', KEYS[i])
  if KEYS[n + i] then
    removed = removed + redis.call('UNLINK', KEYS[n + i])
  end
end
return removed
",
    )
});

/// One bounded step of `invalidate_tags` for one tag set. At cursor `0`
/// the set is renamed to its drain (an O(1) snapshot: writes after it start
/// a new set), unless a drain is left already (another invalidation's,
/// running or failed), which is walked instead. Each step reads one `SSCAN`
/// page of at most about `batch` members of the drain, takes them out, and
/// removes every live entry whose own tag record still names the tag
/// (memberships left behind are skipped). (`SSCAN`, not `SPOP`: picking
/// random members of a large, thinning set costs the server more and
/// more.) Returns the entries removed, `1` if this step renamed the set
/// (`2` if it walked a drain found, `0` if there was nothing to do), and
/// the next cursor (`0` once the drain was walked through).
///
/// KEYS: the tag set, its drain. ARGV: data prefix, tags-of-key prefix,
/// tag-set prefix, the tag, cursor, batch.
pub(super) static INVALIDATE_STEP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local status = 2
if ARGV[5] == '0' and redis.call('EXISTS', KEYS[2]) == 0 then
  if redis.call('EXISTS', KEYS[1]) == 0 then
    return {0, 0, '0'}
  end
  redis.call('RENAME', KEYS[1], KEYS[2])
  status = 1
end
local data_prefix, record_prefix, tag_prefix, tag = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local page = redis.call('SSCAN', KEYS[2], ARGV[5], 'COUNT', ARGV[6])
local removed = 0
for _, user_key in ipairs(page[2]) do
  redis.call('SREM', KEYS[2], user_key)
  local record = record_prefix .. user_key
  if redis.call('SISMEMBER', record, tag) == 1 then
    for _, other in ipairs(redis.call('SMEMBERS', record)) do
      if other ~= tag then
        redis.call('SREM', tag_prefix .. other, user_key)
      end
    end
    removed = removed + redis.call('UNLINK', data_prefix .. user_key)
    redis.call('UNLINK', record)
  end
end
return {removed, status, page[1]}
",
    )
});

/// Cluster mode: records that a tag has entries in some slots, in the
/// tag's slot index, which lives at least as long as those entries.
/// `invalidate_tags` reads it to know which slots' tag sets to visit.
///
/// KEYS: the slot index of one tag. ARGV: TTL in ms (`0` = none), slots...
pub(super) static INDEX_TAG: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local created = redis.call('EXISTS', KEYS[1]) == 0
for i = 2, #ARGV do
  redis.call('SADD', KEYS[1], ARGV[i])
end
local ttl = ARGV[1]
if ttl == '0' then
  redis.call('PERSIST', KEYS[1])
else
  local left = redis.call('PTTL', KEYS[1])
  if created or (left >= 0 and left < tonumber(ttl)) then
    redis.call('PEXPIRE', KEYS[1], ttl)
  end
end
return 1
",
    )
});
