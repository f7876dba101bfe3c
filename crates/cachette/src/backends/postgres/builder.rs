//! [`PostgresBuilder`]: the server, the table and the options of a
//! PostgreSQL backend, checked before anything connects.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};

use super::sql::{SCHEMA_VERSION, Statements};
use super::tls::SslMode;
use super::{Inner, NAME, PostgresBackend, pg_error, pool_error};
use crate::backend::DEFAULT_MAX_KEY_LEN;
use crate::backends::common::{
    BuilderLimits, Counters, Limits, PurgeTask, check_timeouts, shared_limit_setters,
};
use crate::error::{Error, ErrorKind, Result};

/// The default table.
pub const DEFAULT_TABLE: &str = "cachette_cache";

/// The longest value accepted by default (PostgreSQL's `bytea` takes up
/// to 1 GB; a cache row of more is a mistake).
pub const DEFAULT_MAX_VALUE_LEN: usize = 64 << 20;

/// The longest value PostgreSQL's `bytea` holds, less room for the row.
const MAX_VALUE_LEN: usize = (1 << 30) - 1024;

/// The longest table or schema name: PostgreSQL's 63 bytes, less room for
/// the index names made from the table's.
pub const MAX_TABLE_NAME_LEN: usize = 48;

/// The longest prefix, so that a prefix and a key fit in the key limit.
pub const MAX_PREFIX_LEN: usize = 256;

/// Builds a [`PostgresBackend`].
///
/// ```no_run
/// # use std::time::Duration;
/// # use cachette::backends::postgres::PostgresBackend;
/// # #[tokio::main] async fn main() -> cachette::Result<()> {
/// let cache = PostgresBackend::builder("db.internal", 5432, "app", "app")
///     .password("s3cret")
///     .table("web_cache")
///     .max_bytes(2 << 30)
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until `build` is awaited"]
#[derive(Clone)]
pub struct PostgresBuilder {
    host: String,
    port: u16,
    user: String,
    password: Option<String>,
    dbname: String,
    table: String,
    schema: Option<String>,
    prefix: String,
    pool_size: usize,
    unlogged: bool,
    migrate: bool,
    connect_timeout: Duration,
    statement_timeout: Duration,
    sweep_interval: Duration,
    sweep_batch: u32,
    limits: BuilderLimits,
    application_name: String,
    ssl_mode: SslMode,
    root_certificates: Vec<Vec<u8>>,
}

impl fmt::Debug for PostgresBuilder {
    /// Everything but the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresBuilder")
            .field("server", &format!("{}:{}", self.host, self.port))
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("dbname", &self.dbname)
            .field("table", &self.table)
            .field("schema", &self.schema)
            .field("prefix", &self.prefix)
            .field("pool_size", &self.pool_size)
            .field("unlogged", &self.unlogged)
            .field("migrate", &self.migrate)
            .field("ssl_mode", &self.ssl_mode)
            .finish_non_exhaustive()
    }
}

impl PostgresBuilder {
    pub(crate) fn new(host: String, port: u16, user: String, dbname: String) -> Self {
        PostgresBuilder {
            host,
            port,
            user,
            password: None,
            dbname,
            table: DEFAULT_TABLE.to_owned(),
            schema: None,
            prefix: String::new(),
            pool_size: 16,
            unlogged: true,
            migrate: true,
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(5),
            sweep_interval: Duration::from_secs(60),
            sweep_batch: 1000,
            limits: BuilderLimits {
                max_value_len: Some(DEFAULT_MAX_VALUE_LEN),
                ..BuilderLimits::default()
            },
            application_name: "cachette".to_owned(),
            ssl_mode: SslMode::Disable,
            root_certificates: Vec::new(),
        }
    }

    /// The password (never shown in errors, `Debug` output or logs).
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// The table (default [`DEFAULT_TABLE`]): letters, digits and `_`,
    /// not starting with a digit, at most [`MAX_TABLE_NAME_LEN`] bytes.
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// The schema of the table (default: the first of the search path).
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// A prefix of every stored key (default none): `clear` and
    /// `invalidate_tags` touch this prefix's rows only.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Connections in the pool (default 16).
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size;
        self
    }

    /// Whether a table this backend creates is `UNLOGGED` (default true:
    /// faster writes, emptied after a server crash, not replicated).
    pub fn unlogged(mut self, unlogged: bool) -> Self {
        self.unlogged = unlogged;
        self
    }

    /// Whether `build` creates the table when missing (default true). With
    /// false, `build` only checks that the table is there, for
    /// deployments that run [`PostgresBackend::migrate`] beforehand.
    pub fn migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// How long getting a connection may take (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a statement may run (default 5 s): the server cancels it
    /// then, and the client gives up on it too.
    pub fn statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = timeout;
        self
    }

    /// How often the sweeper deletes expired rows and enforces the bounds
    /// (default 60 s).
    pub fn sweep_interval(mut self, interval: Duration) -> Self {
        self.sweep_interval = interval;
        self
    }

    /// Rows per sweeper batch (default 1,000), each batch its own short
    /// transaction.
    pub fn sweep_batch(mut self, rows: u32) -> Self {
        self.sweep_batch = rows;
        self
    }

    shared_limit_setters!();

    /// Bounds the table's bytes (the `size` column: key, value, tags and
    /// [`ROW_OVERHEAD`](super::ROW_OVERHEAD) per row): the sweeper deletes
    /// the oldest-written rows beyond it. Unbounded by default.
    pub fn max_bytes(mut self, max: u64) -> Self {
        self.limits.max_bytes = Some(max);
        self
    }

    /// The longest value accepted (default [`DEFAULT_MAX_VALUE_LEN`]).
    pub fn max_value_len(mut self, len: usize) -> Self {
        self.limits.max_value_len = Some(len);
        self
    }

    /// How the connections are encrypted (default [`SslMode::Disable`];
    /// see [`tls`](super::tls)).
    pub fn ssl_mode(mut self, mode: SslMode) -> Self {
        self.ssl_mode = mode;
        self
    }

    /// A CA certificate (PEM) to trust besides the system's roots.
    pub fn root_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_certificates.push(pem.into());
        self
    }

    /// The client settings of a connection, and its TLS connector when
    /// `sslmode` asks for TLS (also used by the tiered backend's
    /// `LISTEN`/`NOTIFY` channel).
    pub(crate) fn connection(
        &self,
    ) -> Result<(
        tokio_postgres::Config,
        Option<tokio_postgres_rustls::MakeRustlsConnect>,
    )> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(&self.dbname)
            .application_name(&self.application_name)
            .connect_timeout(self.connect_timeout)
            .options(format!(
                "-c statement_timeout={}",
                self.statement_timeout.as_millis()
            ));
        if let Some(password) = &self.password {
            config.password(password);
        }
        let tls = match self.ssl_mode {
            SslMode::Disable => None,
            mode => {
                config.ssl_mode(if mode == SslMode::Prefer {
                    tokio_postgres::config::SslMode::Prefer
                } else {
                    tokio_postgres::config::SslMode::Require
                });
                let tls = super::tls::client_config(mode, &self.root_certificates)?;
                Some(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
            }
        };
        Ok((config, tls))
    }

    /// Checks the options, builds the pool, and (unless `migrate(false)`)
    /// creates the table if missing; then checks the layout's version.
    pub async fn build(self) -> Result<PostgresBackend> {
        check_name("table", &self.table)?;
        if let Some(schema) = &self.schema {
            check_name("schema", schema)?;
        }
        if self.prefix.len() > MAX_PREFIX_LEN {
            return Err(Error::config(
                NAME,
                format!(
                    "the prefix is {} bytes; at most {MAX_PREFIX_LEN}",
                    self.prefix.len()
                ),
            ));
        }
        if self.prefix.contains('\0') {
            return Err(Error::config(NAME, "the prefix holds a NUL character"));
        }
        if self.pool_size == 0 || self.pool_size > 1024 {
            return Err(Error::config(NAME, "pool_size must be between 1 and 1024"));
        }
        if self.sweep_batch == 0 {
            return Err(Error::config(NAME, "sweep_batch must be at least 1"));
        }
        self.limits.validate(NAME, DEFAULT_MAX_KEY_LEN)?;
        if self.limits.max_value_len > Some(MAX_VALUE_LEN) {
            return Err(Error::config(
                NAME,
                format!("max_value_len must be at most {MAX_VALUE_LEN} bytes (bytea's limit)"),
            ));
        }
        let day = Duration::from_secs(24 * 3600);
        check_timeouts(
            NAME,
            &[
                ("connect_timeout", self.connect_timeout),
                ("statement_timeout", self.statement_timeout),
                ("sweep_interval", self.sweep_interval),
            ],
            day,
        )?;

        let (config, tls) = self.connection()?;
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match tls {
            None => Manager::from_config(config, tokio_postgres::NoTls, manager_config),
            Some(tls) => Manager::from_config(config, tls, manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(self.pool_size)
            // The most recently used connection first: a caller alone
            // keeps one warm connection (and server process) instead of
            // cycling through all of them.
            .queue_mode(deadpool_postgres::QueueMode::Lifo)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(self.connect_timeout))
            .create_timeout(Some(self.connect_timeout))
            .recycle_timeout(Some(self.connect_timeout))
            .build()
            .map_err(|err| Error::config(NAME, format!("cannot build the pool: {err}")))?;
        let statements = Statements::new(self.schema.as_deref(), &self.table, self.unlogged);
        let shown = format!("postgres://{}:{}/{}", self.host, self.port, self.dbname);
        let lock_id = lock_id(self.schema.as_deref(), &self.table);
        let deadline = self.connect_timeout + self.statement_timeout;
        if self.migrate {
            migrate(&pool, &statements, lock_id, deadline).await?;
        } else {
            check_version(&pool, &statements, deadline).await?;
        }
        let backend = PostgresBackend {
            inner: Arc::new(Inner {
                pool,
                statements,
                prefix: self.prefix,
                limits: Limits {
                    backend: NAME,
                    max_key_len: DEFAULT_MAX_KEY_LEN,
                    max_value_len: self.limits.max_value_len,
                    default_ttl: self.limits.default_ttl,
                },
                deadline,
                sweep_batch: i64::from(self.sweep_batch),
                max_entries: self.limits.max_entries,
                max_bytes: self.limits.max_bytes,
                lock_id,
                migrate: self.migrate,
                counters: Counters::default(),
                shown,
                sweeper: PurgeTask::default(),
            }),
        };
        backend.start_sweeper(self.sweep_interval);
        Ok(backend)
    }
}

/// A table or schema name: an SQL identifier we never need to guess about.
fn check_name(what: &str, name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= MAX_TABLE_NAME_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if valid {
        Ok(())
    } else {
        Err(Error::config(
            NAME,
            format!(
                "the {what} name `{name}` is not an identifier of letters, digits and `_` \
                 (not starting with a digit, at most {MAX_TABLE_NAME_LEN} bytes)"
            ),
        ))
    }
}

/// The advisory lock of a table's migrations and sweepers (FNV-1a of its
/// qualified name, so every process finds the same one).
fn lock_id(schema: Option<&str>, table: &str) -> i64 {
    let name = format!("cachette:{}.{table}", schema.unwrap_or(""));
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    hash as i64
}

/// Creates the table if missing, in one transaction under the advisory
/// lock, then checks the layout's version.
pub(super) async fn migrate(
    pool: &Pool,
    statements: &Statements,
    lock_id: i64,
    deadline: Duration,
) -> Result<()> {
    let work = async {
        let mut client = pool.get().await.map_err(pool_error)?;
        let transaction = client.transaction().await.map_err(|err| pg_error(&err))?;
        transaction
            .execute("SELECT pg_advisory_xact_lock($1)", &[&lock_id])
            .await
            .map_err(|err| pg_error(&err))?;
        for statement in &statements.create {
            transaction
                .batch_execute(statement)
                .await
                .map_err(|err| pg_error(&err))?;
        }
        transaction.commit().await.map_err(|err| pg_error(&err))
    };
    tokio::time::timeout(deadline * 4, work)
        .await
        .map_err(|_| Error::new(ErrorKind::Timeout, NAME, "creating the table timed out"))?
        .map_err(|err| err.with_operation("migrate"))?;
    check_version(pool, statements, deadline).await
}

/// Checks that the table exists with a layout this release reads.
async fn check_version(pool: &Pool, statements: &Statements, deadline: Duration) -> Result<()> {
    let work = async {
        let client = pool.get().await.map_err(pool_error)?;
        client
            .query_opt(&statements.read_version, &[])
            .await
            .map_err(|err| {
                if err.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) {
                    Error::config(
                        NAME,
                        "the cache table does not exist; run the migration (`migrate=true`, \
                         `PostgresBackend::migrate`) first",
                    )
                } else {
                    pg_error(&err)
                }
            })
    };
    let row = tokio::time::timeout(deadline, work)
        .await
        .map_err(|_| {
            Error::new(
                ErrorKind::Timeout,
                NAME,
                "reading the table's version timed out",
            )
        })?
        .map_err(|err| err.with_operation("build"))?;
    let version: Option<String> = row.map(|row| row.get(0));
    match version.as_deref().map(str::parse::<i32>) {
        Some(Ok(SCHEMA_VERSION)) => Ok(()),
        Some(Ok(other)) => Err(Error::config(
            NAME,
            format!(
                "the cache table has layout version {other}; this release reads version {SCHEMA_VERSION}"
            ),
        )),
        _ => Err(Error::config(
            NAME,
            "the cache table has no readable layout version row; run the migration",
        )),
    }
}
