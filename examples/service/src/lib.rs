//! An example HTTP service that caches PostgreSQL queries with cachette.
//!
//! The binary (`src/main.rs`) reads a [`Config`], builds an [`App`] and
//! serves its [`router`](App::router); the integration test builds the
//! same `App` in-process. `README.md` shows how to run it and what each
//! endpoint does.
//!
//! # The cache
//!
//! One typed [`Cache`] over a [`TieredBackend`]: a bounded memory L1 in
//! this process in front of Redis (L2, shared by every instance), with an
//! invalidation channel over Redis pub/sub, wrapped in cachette's
//! [`MetricsLayer`] so that every backend operation reaches `/metrics`.
//!
//! - `product:{id}` holds a [`Product`], tagged `product:{id}`.
//! - `category:{c}:products` holds the list of a category, tagged
//!   `category:{c}`.
//!
//! Reads go through [`Cache::get_or_load`]: concurrent requests for a
//! missing key run one query (single-flight), and the policy of
//! [`Config`] applies: a value is fresh for `soft_ttl` (30 s), then stale
//! (served at once and refreshed in the background) until `ttl` (10 min);
//! when PostgreSQL or Redis fails, fail-safe serves values up to
//! `fail_safe` (1 h) old instead of an error; a missing product is cached
//! as "not found" for `negative_ttl` (10 s); a query slower than
//! `hard_timeout` (5 s) is abandoned.
//!
//! # Invalidation
//!
//! `PUT /products/{id}` updates the row first, then invalidates the tags
//! `product:{id}`, `category:{old}` and `category:{new}`: Redis drops the
//! tagged entries, this instance drops its L1 copies, and the channel tells
//! every other instance to drop theirs. If the invalidation fails after
//! the update, the answer is 503 (the update is kept; repeating the PUT,
//! which is idempotent, invalidates again).

#![deny(missing_docs)]

mod config;
pub mod db;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use cachette::backends::tiered::{InvalidationChannel, TieredBackend};
use cachette::layers::{Layer, MetricsLayer};
use cachette::{Backend, Cache, EntryOptions, MemoryBackend};
use deadpool_postgres::Pool;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{Value, json};

pub use config::{Config, ConfigError};
pub use db::{Product, ProductUpdate};

/// How long `/healthz` waits for the database.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// The service: its database pool, its cache, and the handle that renders
/// `/metrics`. Cheap to clone.
#[derive(Clone)]
pub struct App {
    inner: Arc<Inner>,
}

struct Inner {
    db: Pool,
    cache: Cache,
    /// The backend under the cache, metrics layer included (for `/stats`).
    backend: Arc<dyn Backend>,
    /// The same backend without the layer (for its channel's state).
    tiered: Arc<TieredBackend>,
    metrics: PrometheusHandle,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("cache", &self.inner.cache)
            .finish_non_exhaustive()
    }
}

impl App {
    /// Connects to PostgreSQL (creating the table if it is missing) and
    /// Redis, subscribes to the invalidation channel, and builds the
    /// cache. `metrics` renders `/metrics`: the handle of the recorder that
    /// the `metrics` facade records into (main installs it as the global
    /// recorder).
    pub async fn start(config: &Config, metrics: PrometheusHandle) -> Result<App, StartError> {
        let db = db::pool(&config.database_url).map_err(StartError::database)?;
        db::create_schema(&db).await.map_err(StartError::database)?;

        let l1 = MemoryBackend::builder()
            .max_bytes(config.l1_max_bytes)
            .build()
            .map_err(StartError::cache)?;
        let l2 = cachette::open(&config.redis_url)
            .await
            .map_err(StartError::cache)?;
        let channel = InvalidationChannel::from_url(&config.redis_url, &config.channel);
        let tiered = TieredBackend::builder(Arc::new(l1), l2)
            .l1_ttl(config.l1_ttl)
            .invalidation_channel(channel)
            .build()
            .await
            .map_err(StartError::cache)?;
        let tiered = Arc::new(tiered);
        let backend = MetricsLayer::new()
            .backend_label("products")
            .layer(Arc::clone(&tiered) as Arc<dyn Backend>);
        let cache = Cache::builder(Arc::clone(&backend))
            .namespace(config.namespace.as_str())
            .default_ttl(config.ttl)
            .soft_ttl(config.soft_ttl)
            .fail_safe(config.fail_safe)
            .negative_ttl(config.negative_ttl)
            .hard_timeout(config.hard_timeout)
            .build()
            .await
            .map_err(StartError::cache)?;
        Ok(App {
            inner: Arc::new(Inner {
                db,
                cache,
                backend,
                tiered,
                metrics,
            }),
        })
    }

    /// The typed cache (its [`stats`](Cache::stats) are `/stats`).
    pub fn cache(&self) -> &Cache {
        &self.inner.cache
    }

    /// The database pool.
    pub fn db(&self) -> &Pool {
        &self.inner.db
    }

    /// The routes, ready for `axum::serve`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/products/{id}", get(get_product).put(put_product))
            .route("/categories/{category}/products", get(get_category))
            .route("/stats", get(stats))
            .route("/metrics", get(metrics))
            .route("/healthz", get(healthz))
            .with_state(self.clone())
    }

    /// The product `id` through the cache: `None` if there is none.
    pub async fn product(&self, id: i64) -> Result<Option<Product>, ApiError> {
        let db = self.inner.db.clone();
        let options = EntryOptions::new().tags([product_tag(id)]);
        self.inner
            .cache
            .get_or_load(
                &format!("product:{id}"),
                move |_| async move { db::product(&db, id).await },
                &options,
            )
            .await
            .map_err(ApiError::cache)
    }

    /// The products of `category` through the cache.
    pub async fn products_in(&self, category: &str) -> Result<Vec<Product>, ApiError> {
        check_category(category)?;
        let db = self.inner.db.clone();
        let owned = category.to_owned();
        let options = EntryOptions::new().tags([category_tag(category)]);
        let list = self
            .inner
            .cache
            .get_or_load(
                &format!("category:{category}:products"),
                move |_| async move { db::products_in(&db, &owned).await.map(Some) },
                &options,
            )
            .await
            .map_err(ApiError::cache)?;
        Ok(list.unwrap_or_default())
    }

    /// Updates the product `id` in PostgreSQL, then invalidates its entry
    /// and the lists of its old and new categories, here and (through the
    /// channel) in every other instance.
    pub async fn update(&self, id: i64, update: &ProductUpdate) -> Result<Product, ApiError> {
        check_category(&update.category)?;
        if update.name.trim().is_empty() {
            return Err(ApiError::bad_request("the name is empty"));
        }
        if update.price_cents < 0 {
            return Err(ApiError::bad_request("the price is negative"));
        }
        let old_category = db::update(&self.inner.db, id, update)
            .await
            .map_err(ApiError::database)?
            .ok_or_else(|| ApiError::not_found(id))?;
        let mut tags = vec![product_tag(id), category_tag(&old_category)];
        if old_category != update.category {
            tags.push(category_tag(&update.category));
        }
        let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
        if let Err(err) = self.inner.cache.invalidate_tags(&tags).await {
            tracing::error!(product = id, error = %err, "updated, but the cache was not invalidated");
            return Err(ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: format!(
                    "product {id} was updated, but its cached copies could not be invalidated \
                     ({err}); repeat the request"
                ),
            });
        }
        Ok(Product {
            id,
            name: update.name.clone(),
            price_cents: update.price_cents,
            category: update.category.clone(),
        })
    }

    /// What `/stats` answers: the typed cache's counters and hit ratio,
    /// the backend's counters (with the tiered backend's details, e.g.
    /// `l1_hits`, `invalidations_received`), and the channel's state.
    pub async fn stats(&self) -> Value {
        let stats = self.inner.cache.stats();
        let backend = match self.inner.backend.stats().await {
            Ok(backend) => {
                let mut counters: BTreeMap<String, u64> = backend
                    .counters()
                    .into_iter()
                    .map(|(name, value)| (name.to_owned(), value))
                    .collect();
                counters.extend(backend.details);
                json!(counters)
            }
            Err(err) => json!({ "error": err.to_string() }),
        };
        json!({
            "cache": {
                "hits": stats.hits,
                "misses": stats.misses,
                "stale_served": stats.stale_served,
                "loads": stats.loads,
                "load_errors": stats.load_errors,
                "refreshes": stats.refreshes,
                "coalesced": stats.coalesced,
                "fail_safe_activations": stats.fail_safe_activations,
                "hit_ratio": stats.hit_ratio(),
            },
            "backend": backend,
            "channel": format!("{:?}", self.inner.tiered.channel_state()),
        })
    }
}

/// Why the service could not start.
#[derive(Debug)]
pub struct StartError(String);

impl StartError {
    fn database(err: db::DbError) -> Self {
        StartError(err.to_string())
    }

    fn cache(err: cachette::Error) -> Self {
        StartError(format!("cache: {err}"))
    }
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// An error answer: a status and a message, sent as `{"error": message}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong.
    pub message: String,
}

impl ApiError {
    fn bad_request(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    fn not_found(id: i64) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("no product {id}"),
        }
    }

    fn unavailable(message: String) -> Self {
        tracing::error!(%message, "request failed");
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message,
        }
    }

    fn cache(err: cachette::Error) -> Self {
        Self::unavailable(err.to_string())
    }

    fn database(err: db::DbError) -> Self {
        Self::unavailable(err.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

/// axum's own answers to a request it cannot take apart (a path segment
/// that is not a number, a body that is not JSON), as JSON too.
macro_rules! api_error_from_rejection {
    ($($rejection:ty),*) => {$(
        impl From<$rejection> for ApiError {
            fn from(rejection: $rejection) -> Self {
                ApiError {
                    status: rejection.status(),
                    message: rejection.body_text(),
                }
            }
        }
    )*};
}

api_error_from_rejection!(JsonRejection, PathRejection);

/// Categories are names of 1 to 64 ASCII letters, digits, `-` and `_`:
/// they go into cache keys, tags and URLs.
fn check_category(category: &str) -> Result<(), ApiError> {
    let valid = (1..=64).contains(&category.len())
        && category
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "the category {category:?} is not 1 to 64 ASCII letters, digits, '-' or '_'"
        )))
    }
}

fn product_tag(id: i64) -> String {
    format!("product:{id}")
}

fn category_tag(category: &str) -> String {
    format!("category:{category}")
}

async fn get_product(
    State(app): State<App>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<Product>, ApiError> {
    let Path(id) = id?;
    match app.product(id).await? {
        Some(product) => Ok(Json(product)),
        None => Err(ApiError::not_found(id)),
    }
}

async fn get_category(
    State(app): State<App>,
    category: Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<Product>>, ApiError> {
    let Path(category) = category?;
    app.products_in(&category).await.map(Json)
}

async fn put_product(
    State(app): State<App>,
    id: Result<Path<i64>, PathRejection>,
    body: Result<Json<ProductUpdate>, JsonRejection>,
) -> Result<Json<Product>, ApiError> {
    let (Path(id), Json(update)) = (id?, body?);
    app.update(id, &update).await.map(Json)
}

async fn stats(State(app): State<App>) -> Json<Value> {
    Json(app.stats().await)
}

async fn metrics(State(app): State<App>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.inner.metrics.render(),
    )
}

/// 200 when the database answers, else 503. The body also shows the
/// invalidation channel's state: `Disconnected` means that this instance
/// bypasses its L1 until it has subscribed again (slower, still correct),
/// so it does not fail the check.
async fn healthz(State(app): State<App>) -> (StatusCode, Json<Value>) {
    let database = match tokio::time::timeout(HEALTH_TIMEOUT, db::ping(&app.inner.db)).await {
        Ok(Ok(())) => "ok".to_owned(),
        Ok(Err(err)) => err.to_string(),
        Err(_) => format!("no answer within {HEALTH_TIMEOUT:?}"),
    };
    let channel = format!("{:?}", app.inner.tiered.channel_state());
    let status = if database == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({ "database": database, "invalidation_channel": channel })),
    )
}
