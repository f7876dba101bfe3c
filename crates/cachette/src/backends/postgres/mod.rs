//! The PostgreSQL backend (feature `postgres`): a shared cache in a table,
//! what teams use when they want one without running Redis.
//!
//! - **URL:** `postgres://user[:password]@host[:port]/db?table=…&schema=…`
//!   (`postgresql://` too); see [`url`] for every parameter. The password
//!   never appears in errors, `Debug` output or logs.
//! - **TLS:** `sslmode=prefer|require|verify-ca|verify-full` through
//!   rustls, with the system's roots and `ca_cert=/path/ca.pem`; the chain
//!   is always verified (see [`tls`]).
//! - **Connections:** a deadpool pool of `pool_size` tokio-postgres
//!   connections; every statement is prepared once per connection. Each
//!   operation has a deadline (`connect_timeout` to get a connection, then
//!   `statement_timeout`, which the server enforces too): a server that
//!   is down or frozen gives [`ErrorKind::Connection`] or
//!   [`ErrorKind::Timeout`] within it, and broken connections are
//!   replaced on the next use, so the backend recovers by itself when the
//!   server is back.
//! - **The table** (default `cachette_cache`) is created on first use,
//!   `UNLOGGED` by default: PostgreSQL writes no WAL for it, and empties
//!   it after a crash, which is what a cache wants (`unlogged=false` for
//!   a table that survives crashes and replicates). `migrate=false`
//!   creates nothing (for deployments that forbid DDL at run time: run
//!   [`PostgresBackend::migrate`] once before).
//!   A side table `{table}_meta` holds the layout's version; a table of a
//!   later layout is refused.
//! - **Layout:** one row per entry: `hash` (SHA-256 of the stored key, the
//!   primary key), `key` (text, `C` collation), `value` (bytea),
//!   `expires_at` (server milliseconds, `NULL` for none), `tags` (text[],
//!   GIN-indexed), `size` (bytes of key, value and tags, plus
//!   [`ROW_OVERHEAD`]) and `id` (write order, for eviction). Expired rows
//!   are never answered.
//! - **Operations:** one statement each; batches are single statements
//!   over arrays (`unnest`, `= ANY`); `incr` is one `INSERT … ON CONFLICT
//!   DO UPDATE … RETURNING` that follows the rules of every backend
//!   (signed 64-bit, [`ErrorKind::NotAnInteger`], [`ErrorKind::Overflow`]).
//!   `keys` walks the table in pages of 1,000 rows (a scan, as `SCAN` is
//!   on Redis), `clear` deletes the rows of this prefix, and
//!   `invalidate_tags` the rows of those tags, in one statement.
//! - **Expiry and bounds:** a background sweeper (every `sweep_interval`,
//!   and on `purge_expired`) deletes expired rows in batches of
//!   `sweep_batch` by `ctid`, each batch its own short transaction, so the
//!   table is never locked for long; with `max_entries` or `max_bytes` it
//!   then deletes the oldest-written rows in batches until the table is
//!   within bounds, as Solid Cache does. The size is the sum of the `size`
//!   column (read with one `count`/`sum` scan per pass). Several processes
//!   may share a table: a transaction-level advisory lock keeps their
//!   sweeper batches apart. The bounds are the whole table's, whatever the
//!   prefix.
//! - **Keys:** any non-empty UTF-8 key up to 4 KiB. A key holding NUL
//!   cannot be stored (PostgreSQL's text cannot hold it): writing one is
//!   [`ErrorKind::InvalidInput`], reading or deleting one finds nothing.
//!   Quotes, `%`, `_` and backslashes are data, never SQL.

pub mod builder;
pub(crate) mod sql;
pub mod tls;
pub mod url;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use deadpool_postgres::{Object, Pool, PoolError};
use sha2::{Digest, Sha256};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use crate::backend::{
    Backend, Capabilities, Expiry, KeyStream, KeyTtl, SetCondition, SetOptions, Stats,
    add_to_counter, format_counter,
};
use crate::backends::common::{
    BASE_CAPABILITIES, Counters, Event, Limits, PurgeTask, back_off, checked_tags,
};
use crate::error::{Error, ErrorKind, Result};

pub use builder::PostgresBuilder;
use sql::Statements;
pub use tls::SslMode;

pub(crate) const NAME: &str = "postgres";

/// What a row weighs besides its key, value and tags, in bytes (tuple
/// header, the hash, the other columns, index entries), for `max_bytes`.
pub const ROW_OVERHEAD: u64 = 120;

/// The most tags of one entry, and the longest tag (a GIN index entry
/// must fit in a third of a page).
const MAX_TAGS: usize = 1024;
const MAX_TAG_LEN: usize = 1024;

/// The pause between two batches of the sweeper, which leaves the
/// server (and its locks) to the readers for a moment.
const SWEEP_PAUSE: Duration = Duration::from_millis(1);

/// Rows per page of `keys`.
const KEYS_PAGE: i64 = 1000;

/// A cache in a PostgreSQL table. Build it with
/// [`PostgresBackend::builder`] or from a `postgres://` URL.
#[derive(Clone)]
pub struct PostgresBackend {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    statements: Statements,
    prefix: String,
    limits: Limits,
    /// The deadline of one operation: a connection, then the statement.
    deadline: Duration,
    sweep_batch: i64,
    max_entries: Option<u64>,
    max_bytes: Option<u64>,
    /// The advisory lock of this table's sweepers.
    lock_id: i64,
    /// Whether the table is created when missing.
    migrate: bool,
    counters: Counters,
    /// Where the server is, for `Debug` and errors (never the password).
    shown: String,
    sweeper: PurgeTask,
}

impl fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("server", &self.inner.shown)
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

/// An operation's statement parameters.
type Params<'a> = Vec<&'a (dyn ToSql + Sync)>;

/// What a statement answered.
enum Answer {
    Rows(Vec<tokio_postgres::Row>),
    Changed(u64),
}

/// Prepares `statement` (once per connection) and runs it on `client`.
async fn run_on(
    client: &Object,
    statement: &str,
    params: &[&(dyn ToSql + Sync)],
    rows: bool,
) -> std::result::Result<Answer, tokio_postgres::Error> {
    let prepared = client.prepare_cached(statement).await?;
    if rows {
        client.query(&prepared, params).await.map(Answer::Rows)
    } else {
        client.execute(&prepared, params).await.map(Answer::Changed)
    }
}

impl PostgresBackend {
    /// A builder for the server at `host:port`, database `dbname`, as
    /// `user`.
    pub fn builder(
        host: impl Into<String>,
        port: u16,
        user: impl Into<String>,
        dbname: impl Into<String>,
    ) -> PostgresBuilder {
        PostgresBuilder::new(host.into(), port, user.into(), dbname.into())
    }

    /// What a PostgreSQL backend offers before options narrow it.
    pub fn default_capabilities() -> Capabilities {
        Capabilities {
            persistent: true,
            shared: true,
            ..BASE_CAPABILITIES
        }
    }

    /// The prefix of every stored key.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The advisory lock key of this table's sweepers and migrations
    /// (every process computes the same one from the schema and table
    /// names): a batch of the sweeper runs only while no other session
    /// holds it.
    pub fn sweeper_lock(&self) -> i64 {
        self.inner.lock_id
    }

    /// Creates the table, its indexes and its version row if missing (a
    /// transaction under an advisory lock, so that processes starting
    /// together do not race), then checks the layout's version.
    pub async fn migrate(&self) -> Result<()> {
        self.create_table().await
    }

    async fn create_table(&self) -> Result<()> {
        let inner = &self.inner;
        builder::migrate(
            &inner.pool,
            &inner.statements,
            inner.lock_id,
            inner.deadline,
        )
        .await
    }

    /// The stored key of `key`.
    fn stored(&self, key: &str) -> String {
        format!("{}{key}", self.inner.prefix)
    }

    /// Checks `key` and gives its stored key and hash. A key holding NUL
    /// cannot be stored but can be asked for: reads find nothing.
    fn row_of(&self, key: &str) -> Result<(String, Vec<u8>)> {
        self.inner.limits.check_key(key)?;
        let stored = self.stored(key);
        let hash = hash_of(&stored);
        Ok((stored, hash))
    }

    /// [`row_of`](Self::row_of) for a write: the key must be storable.
    fn row_to_write(&self, key: &str) -> Result<(String, Vec<u8>)> {
        self.check_key(key)?;
        self.row_of(key)
    }

    fn check_key(&self, key: &str) -> Result<()> {
        self.inner.limits.check_key(key)?;
        if key.contains('\0') {
            return Err(Error::invalid_input(
                NAME,
                "the key holds a NUL character, which PostgreSQL text cannot store",
            ));
        }
        Ok(())
    }

    /// Runs one prepared statement on a pooled connection, within the
    /// operation's deadline: its rows, or how many rows it changed. When
    /// the table is gone (dropped, or lost in a crash before its creation
    /// reached the disk) and `migrate` is on, it is created again and the
    /// statement runs once more; a statement the server rolled back for a
    /// deadlock or a serialization failure runs again, up to 4 times.
    async fn run(
        &self,
        operation: &'static str,
        statement: &str,
        params: &[&(dyn ToSql + Sync)],
        rows: bool,
    ) -> Result<Answer> {
        let attempt = async {
            let mut created = false;
            let mut tries = 0;
            loop {
                tries += 1;
                let client = self.inner.pool.get().await.map_err(pool_error)?;
                let err = match run_on(&client, statement, params, rows).await {
                    Ok(answer) => return Ok(answer),
                    Err(err) => err,
                };
                drop(client);
                let code = err.code();
                if self.inner.migrate && !created && code == Some(&SqlState::UNDEFINED_TABLE) {
                    tracing::warn!(
                        server = %self.inner.shown,
                        "the cache table is gone; creating it again"
                    );
                    self.create_table().await?;
                    created = true;
                } else if tries < 4
                    && (code == Some(&SqlState::T_R_DEADLOCK_DETECTED)
                        || code == Some(&SqlState::T_R_SERIALIZATION_FAILURE))
                {
                    // The server rolled the statement back: run it again.
                    back_off(tries, Duration::from_millis(5), Duration::from_millis(40)).await;
                } else {
                    return Err(pg_error(&err));
                }
            }
        };
        match tokio::time::timeout(self.inner.deadline, attempt).await {
            Ok(outcome) => outcome.map_err(|err| err.with_operation(operation)),
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                NAME,
                format!(
                    "no answer from {} within {:?}",
                    self.inner.shown, self.inner.deadline
                ),
            )
            .with_operation(operation)),
        }
    }

    /// Runs one prepared statement and returns its rows.
    async fn query(
        &self,
        operation: &'static str,
        statement: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>> {
        match self.run(operation, statement, params, true).await? {
            Answer::Rows(rows) => Ok(rows),
            Answer::Changed(_) => Ok(Vec::new()),
        }
    }

    /// Runs one prepared statement and returns how many rows it changed.
    async fn execute(
        &self,
        operation: &'static str,
        statement: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64> {
        match self.run(operation, statement, params, false).await? {
            Answer::Changed(changed) => Ok(changed),
            Answer::Rows(rows) => Ok(rows.len() as u64),
        }
    }

    /// The `expires_at` offset of a write, in milliseconds (`None`: no
    /// expiry).
    fn ttl_ms(&self, expiry: Expiry) -> Result<Option<i64>> {
        Ok(self
            .inner
            .limits
            .ttl(expiry)?
            // Far beyond any use, and far from the end of int8 once the
            // server adds its clock.
            .map(|ttl| {
                i64::try_from(ttl.as_millis())
                    .unwrap_or(i64::MAX)
                    .min(i64::MAX / 4)
            }))
    }

    /// The tags of a write, checked, without repeats (`None` for none).
    fn tags_of(&self, tags: &[String]) -> Result<Option<Vec<String>>> {
        if tags.is_empty() {
            return Ok(None);
        }
        if tags.iter().any(|tag| tag.contains('\0')) {
            return Err(Error::invalid_input(
                NAME,
                "a tag holds a NUL character, which PostgreSQL text cannot store",
            ));
        }
        checked_tags(NAME, tags, MAX_TAGS, 0..=MAX_TAG_LEN).map(Some)
    }

    /// One sweeper pass: expired rows, then the bounds. Returns how many
    /// expired rows it removed.
    pub(crate) async fn sweep(&self) -> Result<u64> {
        let mut purged = 0;
        loop {
            let removed = self
                .execute(
                    "purge_expired",
                    &self.inner.statements.purge_batch,
                    &[&self.inner.lock_id, &self.inner.sweep_batch],
                )
                .await?;
            // Counted batch by batch: a later failure loses no count.
            self.inner.counters.add(Event::Expiration, removed);
            purged += removed;
            if removed < self.inner.sweep_batch as u64 {
                break;
            }
            tokio::time::sleep(SWEEP_PAUSE).await;
        }
        self.evict().await?;
        Ok(purged)
    }

    /// Deletes the oldest-written rows while the table is over a bound.
    async fn evict(&self) -> Result<()> {
        if self.inner.max_entries.is_none() && self.inner.max_bytes.is_none() {
            return Ok(());
        }
        let (entries, bytes) = self.totals().await?;
        let over_entries = self
            .inner
            .max_entries
            .map_or(0, |max| entries.saturating_sub(max));
        let over_bytes = match self.inner.max_bytes {
            Some(max) if bytes > max && entries > 0 => {
                // Rows of the average size that make up the excess.
                let average = (bytes / entries).max(1);
                (bytes - max).div_ceil(average)
            }
            _ => 0,
        };
        let mut excess = over_entries.max(over_bytes);
        if excess == 0 {
            return Ok(());
        }
        // The rows older than the excess-th go: a bound on the id, so that
        // two passes at once delete the same rows, not twice as many.
        let offset = i64::try_from(excess).unwrap_or(i64::MAX);
        let cutoff: i64 = match self
            .query("evict", &self.inner.statements.evict_cutoff, &[&offset])
            .await?
            .first()
        {
            Some(row) => row.get(0),
            None => i64::MAX,
        };
        while excess > 0 {
            let batch = excess.min(self.inner.sweep_batch as u64) as i64;
            let removed = self
                .execute(
                    "evict",
                    &self.inner.statements.evict_batch,
                    &[&self.inner.lock_id, &batch, &cutoff],
                )
                .await?;
            self.inner.counters.add(Event::Eviction, removed);
            if removed == 0 {
                // Another process sweeps (its lock), or the table emptied.
                break;
            }
            excess = excess.saturating_sub(removed);
            tokio::time::sleep(SWEEP_PAUSE).await;
        }
        Ok(())
    }

    /// The rows of the table and the sum of their sizes.
    async fn totals(&self) -> Result<(u64, u64)> {
        let rows = self
            .query("stats", &self.inner.statements.totals, &[])
            .await?;
        let row = rows.first();
        let entries: i64 = row.map_or(0, |row| row.get(0));
        let bytes: i64 = row.map_or(0, |row| row.get(1));
        Ok((entries.max(0) as u64, bytes.max(0) as u64))
    }

    fn start_sweeper(&self, interval: Duration) {
        self.inner.sweeper.start(
            NAME,
            Arc::downgrade(&self.inner),
            interval,
            |inner| async move { PostgresBackend { inner }.sweep().await },
        );
    }

    async fn set_one(&self, key: &str, value: &Bytes, options: &SetOptions) -> Result<bool> {
        let (stored, hash) = self.row_to_write(key)?;
        self.inner.limits.check_value(value)?;
        let ttl = self.ttl_ms(options.expiry)?;
        let tags = self.tags_of(&options.tags)?;
        let size = row_size(&stored, value, tags.as_deref());
        let value: &[u8] = value;
        let statements = &self.inner.statements;
        let statement = match options.condition {
            SetCondition::Always => &statements.set,
            SetCondition::IfAbsent => &statements.set_if_absent,
            SetCondition::IfPresent => &statements.set_if_present,
        };
        let changed = self
            .execute(
                "set",
                statement,
                &[&hash, &stored, &value, &ttl, &tags, &size],
            )
            .await?;
        if changed > 0 {
            self.inner.counters.bump(Event::Insert);
        }
        Ok(changed > 0 || options.condition == SetCondition::Always)
    }
}

#[async_trait]
impl Backend for PostgresBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.limits.advertise(Self::default_capabilities())
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let (_, hash) = self.row_of(key)?;
        let rows = self
            .query("get", &self.inner.statements.get, &[&hash])
            .await?;
        let value = rows
            .first()
            .map(|row| Bytes::from(row.get::<_, Vec<u8>>(0)));
        self.inner.counters.bump(if value.is_some() {
            Event::Hit
        } else {
            Event::Miss
        });
        Ok(value)
    }

    async fn set(&self, key: &str, value: Bytes, options: &SetOptions) -> Result<bool> {
        self.set_one(key, &value, options).await
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        let (_, hash) = self.row_of(key)?;
        let rows = self
            .query("delete", &self.inner.statements.delete, &[&hash])
            .await?;
        let existed = rows.first().is_some_and(|row| row.get::<_, bool>(0));
        if existed {
            self.inner.counters.bump(Event::Delete);
        }
        Ok(existed)
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        let (_, hash) = self.row_of(key)?;
        let rows = self
            .query("exists", &self.inner.statements.exists, &[&hash])
            .await?;
        Ok(!rows.is_empty())
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let hashes: Vec<Vec<u8>> = keys
            .iter()
            .map(|key| self.row_of(key).map(|(_, hash)| hash))
            .collect::<Result<_>>()?;
        let rows = self
            .query("get_many", &self.inner.statements.get_many, &[&hashes])
            .await?;
        let found: std::collections::HashMap<Vec<u8>, Bytes> = rows
            .into_iter()
            .map(|row| {
                (
                    row.get::<_, Vec<u8>>(0),
                    Bytes::from(row.get::<_, Vec<u8>>(1)),
                )
            })
            .collect();
        let out: Vec<Option<Bytes>> = hashes.iter().map(|hash| found.get(hash).cloned()).collect();
        let hits = out.iter().filter(|value| value.is_some()).count() as u64;
        self.inner.counters.add(Event::Hit, hits);
        self.inner
            .counters
            .add(Event::Miss, out.len() as u64 - hits);
        Ok(out)
    }

    async fn set_many(&self, entries: &[(&str, Bytes)], options: &SetOptions) -> Result<Vec<bool>> {
        if options.condition != SetCondition::Always {
            // Each conditional write answers for itself, in order.
            let mut out = Vec::with_capacity(entries.len());
            for (key, value) in entries {
                out.push(self.set_one(key, value, options).await?);
            }
            return Ok(out);
        }
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let ttl = self.ttl_ms(options.expiry)?;
        let tags = self.tags_of(&options.tags)?;
        // The last write of a key wins; one statement may touch a row once.
        let mut last = std::collections::HashMap::with_capacity(entries.len());
        for (index, (key, value)) in entries.iter().enumerate() {
            self.check_key(key)?;
            self.inner.limits.check_value(value)?;
            last.insert(*key, index);
        }
        // Rows locked in one order (their hash) by every writer, so that
        // two batches never wait on each other.
        let mut order: Vec<(Vec<u8>, usize)> = last
            .into_values()
            .map(|index| (hash_of(&self.stored(entries[index].0)), index))
            .collect();
        order.sort_unstable();
        let mut hashes = Vec::with_capacity(order.len());
        let mut keys = Vec::with_capacity(order.len());
        let mut values: Vec<&[u8]> = Vec::with_capacity(order.len());
        let mut sizes = Vec::with_capacity(order.len());
        for (hash, index) in order {
            let (key, value) = &entries[index];
            let stored = self.stored(key);
            hashes.push(hash);
            sizes.push(row_size(&stored, value, tags.as_deref()));
            keys.push(stored);
            values.push(value);
        }
        let params: Params<'_> = vec![&hashes, &keys, &values, &ttl, &tags, &sizes];
        self.execute("set_many", &self.inner.statements.set_many, &params)
            .await?;
        self.inner.counters.add(Event::Insert, keys.len() as u64);
        Ok(vec![true; entries.len()])
    }

    async fn delete_many(&self, keys: &[&str]) -> Result<u64> {
        if keys.is_empty() {
            return Ok(0);
        }
        let hashes: Vec<Vec<u8>> = keys
            .iter()
            .map(|key| self.row_of(key).map(|(_, hash)| hash))
            .collect::<Result<_>>()?;
        let rows = self
            .query(
                "delete_many",
                &self.inner.statements.delete_many,
                &[&hashes],
            )
            .await?;
        let removed = rows.iter().filter(|row| row.get::<_, bool>(0)).count() as u64;
        self.inner.counters.add(Event::Delete, removed);
        Ok(removed)
    }

    async fn incr(&self, key: &str, delta: i64, expiry: Expiry) -> Result<i64> {
        let (stored, hash) = self.row_to_write(key)?;
        let ttl = self.ttl_ms(expiry)?;
        let size = row_size(&stored, b"-9223372036854775808", None);
        for _ in 0..8 {
            let rows = self
                .query(
                    "incr",
                    &self.inner.statements.incr,
                    &[&hash, &stored, &delta, &ttl, &size],
                )
                .await?;
            if let Some(row) = rows.first() {
                let bytes: Vec<u8> = row.get(0);
                return crate::backend::parse_counter(NAME, &bytes);
            }
            // Not a counter, or the sum does not fit: read it to say which
            // (the error of the rules every backend follows); a counter
            // the statement's quick check refused is added here, by
            // compare-and-set.
            let rows = self
                .query("incr", &self.inner.statements.read_counter, &[&hash])
                .await?;
            if let Some(row) = rows.first() {
                let bytes: Vec<u8> = row.get(0);
                let sum = add_to_counter(NAME, &bytes, delta)?;
                let new: &[u8] = &format_counter(sum);
                let old: &[u8] = &bytes;
                let swapped = self
                    .execute(
                        "incr",
                        &self.inner.statements.compare_and_set,
                        &[&hash, &old, &new],
                    )
                    .await?;
                if swapped > 0 {
                    return Ok(sum);
                }
            }
            // It changed between the statements: again.
        }
        Err(Error::new(
            ErrorKind::Backend,
            NAME,
            "the counter kept changing between an increment and its check",
        )
        .with_operation("incr"))
    }

    async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        let (_, hash) = self.row_of(key)?;
        let rows = self
            .query("ttl", &self.inner.statements.ttl, &[&hash])
            .await?;
        Ok(match rows.first() {
            None => KeyTtl::Missing,
            Some(row) => match row.get::<_, Option<i64>>(0) {
                None => KeyTtl::Persistent,
                Some(left) => KeyTtl::ExpiresIn(Duration::from_millis(left.max(1) as u64)),
            },
        })
    }

    async fn touch(&self, key: &str, expiry: Expiry) -> Result<bool> {
        let (_, hash) = self.row_of(key)?;
        let ttl = self.ttl_ms(expiry)?;
        let changed = self
            .execute("touch", &self.inner.statements.touch, &[&hash, &ttl])
            .await?;
        Ok(changed > 0)
    }

    async fn clear(&self) -> Result<()> {
        loop {
            let removed = self
                .execute(
                    "clear",
                    &self.inner.statements.clear_prefix,
                    &[&self.inner.prefix, &self.inner.sweep_batch],
                )
                .await?;
            if removed < self.inner.sweep_batch as u64 {
                return Ok(());
            }
        }
    }

    async fn keys(&self, pattern: &str) -> Result<KeyStream> {
        let glob = crate::glob::Pattern::new(pattern);
        let like = format!(
            "{}{}%",
            sql::escape_like(&self.inner.prefix),
            sql::escape_like(glob.literal_prefix())
        );
        let backend = self.clone();
        let pages = futures_util::stream::try_unfold(
            (Some(Vec::<u8>::new()), backend, glob, like),
            |(after, backend, glob, like)| async move {
                let Some(after) = after else {
                    return Ok(None);
                };
                let rows = backend
                    .query(
                        "keys",
                        &backend.inner.statements.keys_page,
                        &[&after, &like, &KEYS_PAGE],
                    )
                    .await?;
                let next = (rows.len() as i64 == KEYS_PAGE)
                    .then(|| rows.last().map(|row| row.get::<_, Vec<u8>>(0)))
                    .flatten();
                let prefix_len = backend.inner.prefix.len();
                let keys: Vec<Result<String>> = rows
                    .iter()
                    .filter_map(|row| {
                        let stored: String = row.get(1);
                        let key = stored.get(prefix_len..)?.to_owned();
                        glob.matches(&key).then_some(Ok(key))
                    })
                    .collect();
                Ok(Some((
                    futures_util::stream::iter(keys),
                    (next, backend, glob, like),
                )))
            },
        );
        use futures_util::StreamExt;
        Ok(futures_util::TryStreamExt::try_flatten(pages).boxed())
    }

    async fn invalidate_tags(&self, tags: &[&str]) -> Result<u64> {
        if tags.is_empty() {
            return Ok(0);
        }
        let tags: Vec<&str> = tags.to_vec();
        let rows = self
            .query(
                "invalidate_tags",
                &self.inner.statements.invalidate_tags,
                &[&tags, &self.inner.prefix],
            )
            .await?;
        let removed = rows.first().map_or(0, |row| row.get::<_, i64>(0)).max(0) as u64;
        self.inner.counters.add(Event::Invalidation, removed);
        Ok(removed)
    }

    async fn purge_expired(&self) -> Result<u64> {
        self.sweep().await
    }

    async fn stats(&self) -> Result<Stats> {
        let mut stats = Stats::default();
        self.inner.counters.fill(&mut stats);
        let (entries, bytes) = self.totals().await?;
        stats.entries = entries;
        stats.bytes = bytes;
        Ok(stats)
    }

    async fn health(&self) -> Result<()> {
        self.query("health", "SELECT 1", &[]).await?;
        Ok(())
    }

    async fn close(&self) -> Result<()> {
        self.inner.sweeper.stop();
        self.inner.pool.close();
        Ok(())
    }
}

/// The primary key of a stored key.
fn hash_of(stored: &str) -> Vec<u8> {
    Sha256::digest(stored.as_bytes()).to_vec()
}

/// The weight of a row for `max_bytes`.
fn row_size(stored: &str, value: &[u8], tags: Option<&[String]>) -> i64 {
    let tags: usize = tags.map_or(0, |tags| tags.iter().map(|tag| tag.len() + 4).sum());
    (stored.len() + value.len() + tags) as i64 + ROW_OVERHEAD as i64
}

/// A pool's failure as cachette's error.
fn pool_error(err: PoolError) -> Error {
    match err {
        PoolError::Backend(err) => pg_error(&err),
        PoolError::Timeout(_) => Error::new(
            ErrorKind::Timeout,
            NAME,
            "no connection to the server within connect_timeout",
        ),
        PoolError::Closed => Error::new(ErrorKind::Connection, NAME, "the backend is closed"),
        other => Error::new(ErrorKind::Connection, NAME, other.to_string()),
    }
}

/// Whether an I/O error is among the causes of `err`.
fn io_source(err: &tokio_postgres::Error) -> bool {
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// A client's failure as cachette's error: lost connections are
/// `Connection`, cancelled statements `Timeout`, refused data
/// `InvalidInput`, the rest `Backend`, with the server's message (which
/// never holds the password).
fn pg_error(err: &tokio_postgres::Error) -> Error {
    let kind = match err.code() {
        Some(code) if *code == SqlState::QUERY_CANCELED => ErrorKind::Timeout,
        Some(code)
            if code.code().starts_with("08")
                || *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW
                || *code == SqlState::TOO_MANY_CONNECTIONS =>
        {
            ErrorKind::Connection
        }
        Some(code)
            if *code == SqlState::CHARACTER_NOT_IN_REPERTOIRE
                || *code == SqlState::UNTRANSLATABLE_CHARACTER
                || *code == SqlState::PROGRAM_LIMIT_EXCEEDED =>
        {
            ErrorKind::InvalidInput
        }
        Some(code)
            if *code == SqlState::INSUFFICIENT_PRIVILEGE || code.code().starts_with("28") =>
        {
            ErrorKind::PermissionDenied
        }
        Some(_) => ErrorKind::Backend,
        // No server answer: a connection that failed or closed is
        // temporary; anything else (a setting the client refused) is not.
        None if err.is_closed() || io_source(err) => ErrorKind::Connection,
        None => ErrorKind::Backend,
    };
    let message = match err.as_db_error() {
        Some(db) => format!(
            "the server answered: {} ({})",
            db.message(),
            db.code().code()
        ),
        None => format!("{err}"),
    };
    Error::new(kind, NAME, message)
}
