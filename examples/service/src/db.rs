//! The PostgreSQL side: the `products` table and its three queries.

use std::fmt;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod};
use serde::{Deserialize, Serialize};
use tokio_postgres::{NoTls, Row};

/// The table the service reads and writes; [`create_schema`] runs it.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS products (
    id bigint PRIMARY KEY,
    name text NOT NULL,
    price_cents bigint NOT NULL,
    category text NOT NULL
);
CREATE INDEX IF NOT EXISTS products_by_category ON products (category, id);
";

/// A row of `products`; also what the cache stores and the API returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    /// The primary key.
    pub id: i64,
    /// The product's name.
    pub name: String,
    /// The price, in cents.
    pub price_cents: i64,
    /// The category, e.g. `books`.
    pub category: String,
}

impl Product {
    fn from_row(row: &Row) -> Result<Self, DbError> {
        Ok(Product {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            price_cents: row.try_get("price_cents")?,
            category: row.try_get("category")?,
        })
    }
}

/// The body of `PUT /products/{id}`: the new values of every column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductUpdate {
    /// The new name.
    pub name: String,
    /// The new price, in cents.
    pub price_cents: i64,
    /// The new category.
    pub category: String,
}

/// A pool of connections to `database_url` (at most 16).
pub fn pool(database_url: &str) -> Result<Pool, DbError> {
    let config: tokio_postgres::Config = database_url.parse()?;
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(16)
        .build()
        .map_err(|err| DbError(format!("cannot build the connection pool: {err}")))
}

/// Creates the table and its index if they are missing.
pub async fn create_schema(pool: &Pool) -> Result<(), DbError> {
    pool.get().await?.batch_execute(SCHEMA).await?;
    Ok(())
}

/// The product `id`, if there is one.
pub async fn product(pool: &Pool, id: i64) -> Result<Option<Product>, DbError> {
    let client = pool.get().await?;
    let query = client
        .prepare_cached("SELECT id, name, price_cents, category FROM products WHERE id = $1")
        .await?;
    let row = client.query_opt(&query, &[&id]).await?;
    row.as_ref().map(Product::from_row).transpose()
}

/// The products of `category`, by id.
pub async fn products_in(pool: &Pool, category: &str) -> Result<Vec<Product>, DbError> {
    let client = pool.get().await?;
    let query = client
        .prepare_cached(
            "SELECT id, name, price_cents, category FROM products WHERE category = $1 ORDER BY id",
        )
        .await?;
    let rows = client.query(&query, &[&category]).await?;
    rows.iter().map(Product::from_row).collect()
}

/// Writes `update` over the product `id`; returns its category before
/// the update, or `None` if there is no such product. The old row is
/// locked while it is read, so a concurrent update cannot slip between.
pub async fn update(
    pool: &Pool,
    id: i64,
    update: &ProductUpdate,
) -> Result<Option<String>, DbError> {
    let client = pool.get().await?;
    let query = client
        .prepare_cached(
            "WITH old AS (SELECT id, category FROM products WHERE id = $1 FOR UPDATE)
             UPDATE products p SET name = $2, price_cents = $3, category = $4
             FROM old WHERE p.id = old.id
             RETURNING old.category",
        )
        .await?;
    let row = client
        .query_opt(
            &query,
            &[&id, &update.name, &update.price_cents, &update.category],
        )
        .await?;
    Ok(row.map(|row| row.try_get("category")).transpose()?)
}

/// Whether the database answers a trivial query.
pub async fn ping(pool: &Pool) -> Result<(), DbError> {
    pool.get().await?.simple_query("SELECT 1").await?;
    Ok(())
}

/// A failed query, or no connection to run it on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbError(String);

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostgreSQL: {}", self.0)
    }
}

impl std::error::Error for DbError {}

impl From<tokio_postgres::Error> for DbError {
    fn from(err: tokio_postgres::Error) -> Self {
        // `Display` of a server error is only "db error"; its message is
        // in the source.
        match err.as_db_error() {
            Some(db) => DbError(format!("{}: {}", db.code().code(), db.message())),
            None => DbError(err.to_string()),
        }
    }
}

impl From<PoolError> for DbError {
    fn from(err: PoolError) -> Self {
        DbError(format!("no connection: {err}"))
    }
}
