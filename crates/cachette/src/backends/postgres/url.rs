//! The `postgres://` URL form (also spelled `postgresql://`), opened by
//! [`crate::open`]:
//!
//! ```text
//! postgres://user[:password]@host[:port]/database?table=cachette_cache&schema=…&prefix=…
//!     &pool_size=16&unlogged=true&migrate=true&max_bytes=…&max_entries=…
//!     &connect_timeout=5s&statement_timeout=5s&sweep_interval=60s&sweep_batch=1000
//!     &default_ttl=…&max_value_len=64MiB&sslmode=disable
//! ```
//!
//! The user defaults to `postgres`, the port to 5432 and the database to
//! the user's name. The password is percent-decoded and never shown.
//! `sslmode` takes `disable` (the default), `allow`, `prefer`, `require`,
//! `verify-ca` or `verify-full` (see [`tls`](super::tls)), and
//! `ca_cert=/path/ca.pem` adds a CA to trust.

use std::sync::Arc;

use super::{NAME, PostgresBackend, PostgresBuilder, SslMode};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::params::{Opening, Scheme, UrlParams, decode, no_fragment, parse_url, redact};

/// The PostgreSQL schemes.
pub(crate) const SCHEMES: &[Scheme] = &[
    Scheme {
        name: "postgres",
        feature: "postgres",
        description: "a PostgreSQL table (UNLOGGED by default) as a shared cache",
        capabilities: PostgresBackend::default_capabilities,
        open,
    },
    Scheme {
        name: "postgresql",
        feature: "postgres",
        description: "the same as postgres://",
        capabilities: PostgresBackend::default_capabilities,
        open,
    },
];

const PARAMS: &[&str] = &[
    "table",
    "schema",
    "prefix",
    "pool_size",
    "unlogged",
    "migrate",
    "max_bytes",
    "max_entries",
    "connect_timeout",
    "statement_timeout",
    "sweep_interval",
    "sweep_batch",
    "default_ttl",
    "max_value_len",
    "sslmode",
    "ca_cert",
];

/// PostgreSQL's default port.
const DEFAULT_PORT: u16 = 5432;

fn open(url: &str) -> Opening<'_> {
    Box::pin(async move {
        let backend: Arc<dyn Backend> = Arc::new(builder(url)?.build().await?);
        Ok(backend)
    })
}

/// The builder of a `postgres://` URL.
pub(crate) fn builder(url: &str) -> Result<PostgresBuilder> {
    let parsed = parse_url(url, NAME)?;
    no_fragment(&parsed, NAME)?;
    let bad = |what: &str| Error::config(NAME, format!("{}: {what}", redact(url)));
    let host = match parsed.host_str() {
        Some(host) if !host.is_empty() => host.trim_start_matches('[').trim_end_matches(']'),
        _ => {
            return Err(bad(
                "the URL names no host, e.g. `postgres://user@127.0.0.1/db`",
            ));
        }
    };
    let port = parsed.port().unwrap_or(DEFAULT_PORT);
    let user = match parsed.username() {
        "" => "postgres".to_owned(),
        user => decode(user, NAME, "the user name")?,
    };
    let path = parsed.path().trim_start_matches('/');
    if path.contains('/') {
        return Err(bad("the path is the database name alone"));
    }
    let dbname = match path {
        "" => user.clone(),
        name => decode(name, NAME, "the database name")?,
    };
    let mut builder = PostgresBackend::builder(host, port, user, dbname);
    if let Some(password) = parsed.password() {
        builder = builder.password(decode(password, NAME, "the password")?);
    }
    let mut params = UrlParams::parse(&parsed, NAME, &[PARAMS])?;
    if let Some(table) = params.text("table") {
        builder = builder.table(table);
    }
    if let Some(schema) = params.text("schema") {
        builder = builder.schema(schema);
    }
    if let Some(prefix) = params.text("prefix") {
        builder = builder.prefix(prefix);
    }
    if let Some(size) = params.integer::<usize>("pool_size")? {
        builder = builder.pool_size(size);
    }
    if let Some(unlogged) = params.flag("unlogged")? {
        builder = builder.unlogged(unlogged);
    }
    if let Some(migrate) = params.flag("migrate")? {
        builder = builder.migrate(migrate);
    }
    if let Some(max) = params.bytes("max_bytes")? {
        builder = builder.max_bytes(max);
    }
    if let Some(max) = params.integer::<u64>("max_entries")? {
        builder = builder.max_entries(max);
    }
    if let Some(timeout) = params.duration("connect_timeout")? {
        builder = builder.connect_timeout(timeout);
    }
    if let Some(timeout) = params.duration("statement_timeout")? {
        builder = builder.statement_timeout(timeout);
    }
    if let Some(interval) = params.duration("sweep_interval")? {
        builder = builder.sweep_interval(interval);
    }
    if let Some(rows) = params.integer::<u32>("sweep_batch")? {
        builder = builder.sweep_batch(rows);
    }
    if let Some(ttl) = params.duration("default_ttl")? {
        builder = builder.default_ttl(ttl);
    }
    if let Some(len) = params.byte_len("max_value_len")? {
        builder = builder.max_value_len(len);
    }
    if let Some(mode) = params.parsed::<SslMode>("sslmode")? {
        builder = builder.ssl_mode(mode);
    }
    if let Some(path) = params.text("ca_cert") {
        let pem = std::fs::read(&path).map_err(|err| {
            Error::config(NAME, format!("parameter `ca_cert`: cannot read `{path}`"))
                .with_source(err)
        })?;
        builder = builder.root_certificate_pem(pem);
    }
    Ok(builder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_the_server_table_and_options() {
        let builder = builder(
            "postgres://app:s%40cret@db.internal:6543/cachedb?table=web&schema=caches&prefix=p:&pool_size=4&unlogged=false&migrate=false",
        )
        .unwrap();
        let shown = format!("{builder:?}");
        for needle in [
            "db.internal:6543",
            "user: \"app\"",
            "dbname: \"cachedb\"",
            "table: \"web\"",
            "Some(\"caches\")",
            "prefix: \"p:\"",
            "pool_size: 4",
            "unlogged: false",
            "migrate: false",
        ] {
            assert!(shown.contains(needle), "{needle} in {shown}");
        }
        assert!(!shown.contains("cret"), "the password is shown: {shown}");
        let defaults = format!("{:?}", builder_of("postgresql://h"));
        assert!(defaults.contains("h:5432") && defaults.contains("dbname: \"postgres\""));
    }

    fn builder_of(url: &str) -> PostgresBuilder {
        builder(url).unwrap()
    }

    #[test]
    fn bad_urls_name_the_problem_and_never_the_password() {
        for (url, needle) in [
            ("postgres:///db", "names no host"),
            ("postgres://u:secret@h/db/x", "database name alone"),
            (
                "postgres://u:secret@h/db?ca_cert=/no/such/ca.pem",
                "cannot read",
            ),
            ("postgres://u:secret@h/db?sslmode=maybe", "`sslmode`"),
            (
                "postgres://u:secret@h/db?tabel=x",
                "unknown parameter `tabel`",
            ),
            ("postgres://u:secret@h/db?pool_size=many", "pool_size"),
        ] {
            let err = builder(url).unwrap_err();
            assert!(err.message().contains(needle), "{url}: {err}");
            assert!(!err.to_string().contains("secret"), "{url}: {err}");
        }
    }
}
