//! The statements of the PostgreSQL backend, written once for a table.
//!
//! Every row is keyed by the SHA-256 of its stored key (`hash`, the
//! primary key): a B-tree entry holds at most about 2.7 KB, and keys go up
//! to 4 KiB. The key itself is kept beside it (`key`, compared byte for
//! byte under the `C` collation) for `keys`, `clear` and `invalidate_tags`
//! (which keep to this backend's prefix).
//!
//! Time is the server's (`statement_timestamp()` in milliseconds), so that
//! processes whose clocks disagree agree on what has expired. A row whose
//! `expires_at` has passed is never answered; the sweeper deletes it.

/// The layout this release writes; a table made by a later one is
/// refused rather than misread.
pub(crate) const SCHEMA_VERSION: i32 = 1;

/// The server's clock in milliseconds since the Unix epoch, as the
/// statement started: stable within a statement, so the planner can use
/// it against the `expires_at` index (`clock_timestamp()` is volatile and
/// would make the sweeper scan the whole table).
const NOW: &str = "(extract(epoch from statement_timestamp()) * 1000)::int8";

/// An identifier quoted for SQL (`"` doubled).
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The statements of one table, built once per backend (the pool's
/// statement cache prepares each once per connection).
#[derive(Debug)]
pub(crate) struct Statements {
    pub(crate) create: Vec<String>,
    pub(crate) read_version: String,
    pub(crate) get: String,
    pub(crate) exists: String,
    pub(crate) get_many: String,
    pub(crate) set: String,
    pub(crate) set_if_absent: String,
    pub(crate) set_if_present: String,
    pub(crate) set_many: String,
    pub(crate) delete: String,
    pub(crate) delete_many: String,
    pub(crate) incr: String,
    pub(crate) read_counter: String,
    pub(crate) ttl: String,
    pub(crate) touch: String,
    pub(crate) clear_prefix: String,
    pub(crate) keys_page: String,
    pub(crate) invalidate_tags: String,
    pub(crate) purge_batch: String,
    pub(crate) totals: String,
    pub(crate) evict_batch: String,
    pub(crate) evict_cutoff: String,
    pub(crate) compare_and_set: String,
}

impl Statements {
    /// The statements of `table` in `schema` (the search path's first
    /// schema when `None`); `unlogged` makes a new table `UNLOGGED`.
    pub(crate) fn new(schema: Option<&str>, table: &str, unlogged: bool) -> Self {
        let qualify = |name: &str| match schema {
            Some(schema) => format!("{}.{}", quote_ident(schema), quote_ident(name)),
            None => quote_ident(name),
        };
        let t = qualify(table);
        let meta = qualify(&format!("{table}_meta"));
        let live =
            |alias: &str| format!("({alias}.expires_at IS NULL OR {alias}.expires_at > {NOW})");
        let expires = |param: &str| {
            format!("CASE WHEN {param}::int8 IS NULL THEN NULL ELSE {NOW} + {param}::int8 END")
        };
        let unlogged = if unlogged { "UNLOGGED " } else { "" };
        let create = vec![
            format!(
                "CREATE {unlogged}TABLE IF NOT EXISTS {t} (
                    hash bytea PRIMARY KEY,
                    key text COLLATE \"C\" NOT NULL,
                    value bytea NOT NULL,
                    expires_at int8,
                    tags text[],
                    size int8 NOT NULL,
                    id bigserial NOT NULL
                )"
            ),
            format!(
                "CREATE INDEX IF NOT EXISTS {} ON {t} (expires_at) WHERE expires_at IS NOT NULL",
                quote_ident(&format!("{table}_expires_idx"))
            ),
            format!(
                "CREATE INDEX IF NOT EXISTS {} ON {t} USING gin (tags) WHERE tags IS NOT NULL",
                quote_ident(&format!("{table}_tags_idx"))
            ),
            format!(
                "CREATE INDEX IF NOT EXISTS {} ON {t} (id)",
                quote_ident(&format!("{table}_id_idx"))
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {meta} (name text PRIMARY KEY, value text NOT NULL)"
            ),
            format!(
                "INSERT INTO {meta} (name, value) VALUES ('schema_version', '{SCHEMA_VERSION}') \
                 ON CONFLICT (name) DO NOTHING"
            ),
        ];
        let upsert_columns = "value = excluded.value, expires_at = excluded.expires_at, \
                              tags = excluded.tags, size = excluded.size, id = excluded.id";
        let insert = format!(
            "INSERT INTO {t} AS c (hash, key, value, expires_at, tags, size) \
             VALUES ($1, $2, $3, {}, $5, $6) ON CONFLICT (hash) DO UPDATE SET {upsert_columns}",
            expires("$4")
        );
        // A counter: the stored text plus `$3`, where both are decimal
        // 64-bit integers and so is the sum (the CASE keeps the casts from
        // running on anything else); otherwise no row comes back and the
        // caller reads the value to say why.
        let counter_text = "encode(c.value, 'escape')";
        let in_range = |expr: &str| {
            format!(
                "({expr}) BETWEEN -9223372036854775808::numeric AND 9223372036854775807::numeric"
            )
        };
        let incr_ok = format!(
            "CASE WHEN octet_length(c.value) > 64 THEN false \
             WHEN {counter_text} ~ '^-?0*[0-9]{{1,19}}$' THEN {} AND {} ELSE false END",
            in_range(&format!("{counter_text}::numeric")),
            in_range(&format!("{counter_text}::numeric + $3::int8"))
        );
        Statements {
            create,
            read_version: format!("SELECT value FROM {meta} WHERE name = 'schema_version'"),
            get: format!(
                "SELECT value FROM {t} AS c WHERE hash = $1 AND {}",
                live("c")
            ),
            exists: format!("SELECT 1 FROM {t} AS c WHERE hash = $1 AND {}", live("c")),
            get_many: format!(
                "SELECT hash, value FROM {t} AS c WHERE hash = ANY($1::bytea[]) AND {}",
                live("c")
            ),
            set: insert.clone(),
            set_if_absent: format!("{insert} WHERE NOT {}", live("c")),
            set_if_present: format!(
                "UPDATE {t} AS c SET value = $3, expires_at = {}, tags = $5, size = $6, id = DEFAULT \
                 WHERE hash = $1 AND key = $2 AND {}",
                expires("$4"),
                live("c")
            ),
            set_many: format!(
                "INSERT INTO {t} AS c (hash, key, value, expires_at, tags, size) \
                 SELECT u.hash, u.key, u.value, {}, $5, u.size \
                 FROM unnest($1::bytea[], $2::text[], $3::bytea[], $6::int8[]) AS u(hash, key, value, size) \
                 ON CONFLICT (hash) DO UPDATE SET {upsert_columns}",
                expires("$4")
            ),
            delete: format!(
                "DELETE FROM {t} AS c WHERE hash = $1 RETURNING {}",
                live("c")
            ),
            delete_many: format!(
                "DELETE FROM {t} AS c WHERE hash = ANY($1::bytea[]) RETURNING {}",
                live("c")
            ),
            incr: format!(
                "INSERT INTO {t} AS c (hash, key, value, expires_at, tags, size) \
                 VALUES ($1, $2, convert_to($3::int8::text, 'UTF8'), {}, NULL, $5) \
                 ON CONFLICT (hash) DO UPDATE SET \
                   value = CASE WHEN NOT {live} THEN excluded.value \
                           ELSE convert_to(({counter_text}::numeric + $3::int8)::int8::text, 'UTF8') END, \
                   expires_at = CASE WHEN NOT {live} THEN excluded.expires_at ELSE c.expires_at END, \
                   tags = CASE WHEN NOT {live} THEN NULL ELSE c.tags END, \
                   size = excluded.size \
                 WHERE NOT {live} OR ({incr_ok}) \
                 RETURNING value",
                expires("$4"),
                live = live("c"),
            ),
            read_counter: format!(
                "SELECT value FROM {t} AS c WHERE hash = $1 AND {}",
                live("c")
            ),
            ttl: format!(
                "SELECT c.expires_at - {NOW} FROM {t} AS c WHERE hash = $1 AND {}",
                live("c")
            ),
            touch: format!(
                "UPDATE {t} AS c SET expires_at = {} WHERE hash = $1 AND {}",
                expires("$2"),
                live("c")
            ),
            // In batches, each its own short transaction: a large prefix
            // neither holds its rows locked for long nor runs into the
            // statement timeout.
            clear_prefix: format!(
                "DELETE FROM {t} WHERE ctid = ANY(ARRAY( \
                   SELECT c.ctid FROM {t} AS c WHERE starts_with(c.key, $1) LIMIT $2)) \
                 AND starts_with(key, $1)"
            ),
            keys_page: format!(
                "SELECT hash, key FROM {t} AS c \
                 WHERE hash > $1 AND key LIKE $2 ESCAPE E'\\\\' AND {} \
                 ORDER BY hash LIMIT $3",
                live("c")
            ),
            invalidate_tags: format!(
                "WITH gone AS (DELETE FROM {t} AS c WHERE tags && $1::text[] AND starts_with(key, $2) \
                 RETURNING {} AS live) SELECT count(*) FILTER (WHERE live) FROM gone",
                live("c")
            ),
            // One statement, one transaction: the advisory lock keeps two
            // sweepers off each other's batches, and is let go at its end.
            // The outer condition is checked again: a row rewritten
            // between the choice of its ctid and the delete is followed
            // to its new version, which must not go.
            purge_batch: format!(
                "WITH lock AS (SELECT pg_try_advisory_xact_lock($1::int8) AS got) \
                 DELETE FROM {t} WHERE ctid = ANY(ARRAY( \
                   SELECT c.ctid FROM {t} AS c, lock \
                   WHERE lock.got AND c.expires_at IS NOT NULL AND c.expires_at <= {NOW} \
                   LIMIT $2)) \
                 AND expires_at IS NOT NULL AND expires_at <= {NOW}"
            ),
            totals: format!("SELECT count(*), coalesce(sum(size), 0)::int8 FROM {t}"),
            // Rows written before the pass's cutoff, oldest first; a row
            // rewritten meanwhile has a newer id and stays.
            evict_batch: format!(
                "WITH lock AS (SELECT pg_try_advisory_xact_lock($1::int8) AS got) \
                 DELETE FROM {t} WHERE ctid = ANY(ARRAY( \
                   SELECT c.ctid FROM {t} AS c, lock WHERE lock.got AND c.id < $3 \
                   ORDER BY c.id LIMIT $2)) \
                 AND id < $3"
            ),
            evict_cutoff: format!("SELECT id FROM {t} ORDER BY id OFFSET $1 LIMIT 1"),
            compare_and_set: format!(
                "UPDATE {t} AS c SET value = $3 WHERE hash = $1 AND value = $2 AND {}",
                live("c")
            ),
        }
    }
}

/// `text` escaped for a `LIKE … ESCAPE '\'` pattern: `%`, `_` and `\`
/// match themselves.
pub(crate) fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_metacharacters_are_escaped() {
        assert_eq!(escape_like(r"a%b_c\d"), r"a\%b\_c\\d");
        assert_eq!(escape_like("plain"), "plain");
    }

    #[test]
    fn identifiers_double_their_quotes() {
        assert_eq!(quote_ident("cache"), "\"cache\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    }
}
