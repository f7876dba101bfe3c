//! The example service end to end: real PostgreSQL and Redis servers
//! (started by `cachette::testing::servers` on free loopback ports), the
//! app served in-process on `127.0.0.1:0`, and plain HTTP through reqwest.
//!
//! Run with `cargo test -p cachette-example-service --all-features --test service`.

use std::sync::OnceLock;
use std::time::Duration;

use cachette::testing::servers::postgres::PostgresServer;
use cachette::testing::servers::redis::RedisServer;
use cachette_example_service::{App, Config, Product};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::time::{Instant, sleep};

/// How long an invalidation may take to reach another instance. Generous:
/// the test polls, and passes as soon as it arrives.
const PROPAGATION: Duration = Duration::from_secs(20);

/// The handle of the Prometheus recorder that this test binary installs,
/// once, as the `metrics` facade's global recorder: the metrics layer
/// records through the facade, so a recorder that is not installed would
/// see nothing. Every app of the binary renders the same recorder.
fn metrics() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).expect("no other recorder in this binary");
            handle
        })
        .clone()
}

/// A PostgreSQL and a Redis server with the `products` table seeded.
struct Servers {
    postgres: PostgresServer,
    redis: RedisServer,
}

impl Servers {
    fn start() -> Servers {
        Servers {
            postgres: PostgresServer::start(),
            redis: RedisServer::start(),
        }
    }

    /// The configuration of an instance. Every duration is far longer
    /// than the test, so that nothing it checks can happen by expiry: a
    /// value read twice is a hit, and an L1 copy is dropped only by an
    /// invalidation.
    fn config(&self) -> Config {
        let mut config = Config::new(self.postgres.url(), self.redis.url());
        config.ttl = Duration::from_secs(7200);
        config.soft_ttl = Duration::from_secs(3600);
        config.fail_safe = Duration::from_secs(7200);
        config.negative_ttl = Duration::from_secs(3600);
        config.hard_timeout = Duration::from_secs(60);
        config.l1_ttl = Duration::from_secs(3600);
        config
    }
}

/// An instance of the service, served on a free port.
struct Instance {
    base: String,
    http: reqwest::Client,
}

impl Instance {
    async fn start(servers: &Servers) -> Instance {
        let app = App::start(&servers.config(), metrics())
            .await
            .expect("the service starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let address = listener.local_addr().expect("the bound address");
        tokio::spawn(axum::serve(listener, app.router()).into_future());
        Instance {
            base: format!("http://{address}"),
            // No proxy from the environment may stand between the test and
            // a loopback address.
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("an HTTP client"),
        }
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap_or_else(|err| panic!("GET {path}: {err}"))
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        let response = self.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().await.expect("a JSON body")
    }

    async fn put(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .put(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .unwrap_or_else(|err| panic!("PUT {path}: {err}"))
    }

    async fn stats(&self) -> Value {
        self.get_json("/stats").await
    }

    async fn ids_in(&self, category: &str) -> Vec<i64> {
        let list: Vec<Product> = self
            .get_json(&format!("/categories/{category}/products"))
            .await;
        list.into_iter().map(|product| product.id).collect()
    }
}

/// Seeds three products: 1 and 3 in `books`, 2 in `stationery`.
async fn seed(servers: &Servers) {
    let pool = cachette_example_service::db::pool(&servers.postgres.url()).unwrap();
    cachette_example_service::db::create_schema(&pool)
        .await
        .unwrap();
    pool.get()
        .await
        .unwrap()
        .batch_execute(
            "INSERT INTO products (id, name, price_cents, category) VALUES
               (1, 'Notebook', 1200, 'books'),
               (2, 'Pen', 250, 'stationery'),
               (3, 'The Rust Programming Language', 4500, 'books')",
        )
        .await
        .unwrap();
}

async fn started() -> (Servers, Instance) {
    let servers = Servers::start();
    let instance = Instance::start(&servers).await;
    seed(&servers).await;
    (servers, instance)
}

fn counter(stats: &Value, name: &str) -> u64 {
    stats["cache"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name} in {stats}"))
}

/// Polls `check` every 50 ms until it holds; false once `limit` passed.
async fn eventually(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let started = Instant::now();
    while !check().await {
        if started.elapsed() > limit {
            return false;
        }
        sleep(Duration::from_millis(50)).await;
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_reads_of_a_product_are_one_miss_one_query_and_nine_hits() {
    let (_servers, app) = started().await;

    for _ in 0..10 {
        let product: Product = app.get_json("/products/1").await;
        assert_eq!(product.name, "Notebook");
    }

    let stats = app.stats().await;
    assert_eq!(counter(&stats, "misses"), 1, "{stats}");
    assert_eq!(counter(&stats, "hits"), 9, "{stats}");
    assert_eq!(
        counter(&stats, "loads"),
        1,
        "one query for ten reads: {stats}"
    );
    assert_eq!(stats["cache"]["hit_ratio"].as_f64(), Some(0.9), "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_product_is_404_and_cached_as_not_found() {
    let (_servers, app) = started().await;

    for _ in 0..3 {
        let response = app.get("/products/404").await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body, json!({ "error": "no product 404" }));
    }

    let stats = app.stats().await;
    assert_eq!(
        counter(&stats, "loads"),
        1,
        "the 'not found' is cached: {stats}"
    );
    assert_eq!(counter(&stats, "hits"), 2, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_category_list_is_cached_and_counted_like_a_product() {
    let (_servers, app) = started().await;

    for _ in 0..4 {
        assert_eq!(app.ids_in("books").await, [1, 3]);
    }
    assert_eq!(app.ids_in("garden").await, Vec::<i64>::new());

    let stats = app.stats().await;
    assert_eq!(counter(&stats, "loads"), 2, "{stats}");
    assert_eq!(
        (counter(&stats, "hits"), counter(&stats, "misses")),
        (3, 2),
        "{stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_invalidates_the_product_and_both_category_lists_here_and_in_another_instance() {
    let (servers, a) = started().await;
    let b = Instance::start(&servers).await;

    // Both instances hold the product and the two lists: B in its own L1,
    // where only the invalidation channel can reach them (its L1 TTL
    // outlasts the test).
    for instance in [&a, &b] {
        for _ in 0..2 {
            let product: Product = instance.get_json("/products/1").await;
            assert_eq!(product.category, "books");
            assert_eq!(instance.ids_in("books").await, [1, 3]);
            assert_eq!(instance.ids_in("stationery").await, [2]);
        }
    }
    // (Polled: while a busy machine delays the channel's pings, B bypasses
    // its L1.)
    let from_l1 = eventually(PROPAGATION, async || {
        let _: Product = b.get_json("/products/1").await;
        b.stats().await["backend"]["l1_hits"]
            .as_u64()
            .is_some_and(|hits| hits > 0)
    })
    .await;
    assert!(from_l1, "B serves from its L1");

    let update =
        json!({ "name": "Notebook, dotted", "price_cents": 1500, "category": "stationery" });
    let response = a.put("/products/1", &update).await;
    assert_eq!(response.status(), StatusCode::OK);
    let updated: Product = response.json().await.unwrap();
    assert_eq!(updated.price_cents, 1500);

    // The writer sees the change at once.
    let product: Product = a.get_json("/products/1").await;
    assert_eq!(
        (product.name.as_str(), product.price_cents),
        ("Notebook, dotted", 1500)
    );
    assert_eq!(
        a.ids_in("books").await,
        [3],
        "the old category's list is invalidated"
    );
    assert_eq!(
        a.ids_in("stationery").await,
        [1, 2],
        "the new category's list too"
    );

    // The other instance once the channel's message arrives.
    let seen = eventually(PROPAGATION, async || {
        let product: Product = b.get_json("/products/1").await;
        product.price_cents == 1500
    })
    .await;
    assert!(seen, "B must drop its L1 copy when A invalidates");
    assert_eq!(b.ids_in("books").await, [3]);
    assert_eq!(b.ids_in("stationery").await, [1, 2]);
    let received = b.stats().await["backend"]["invalidations_received"].as_u64();
    assert!(received.is_some_and(|n| n > 0), "B received A's message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_client_errors_in_json_and_change_nothing() {
    let (_servers, app) = started().await;
    let good = json!({ "name": "Pen", "price_cents": 300, "category": "stationery" });

    let cases = [
        (
            "/products/99",
            good.clone(),
            StatusCode::NOT_FOUND,
            "no product 99",
        ),
        (
            "/products/2",
            json!({ "name": "Pen", "price_cents": 300, "category": "a b" }),
            StatusCode::BAD_REQUEST,
            "the category \"a b\" is not 1 to 64 ASCII letters",
        ),
        (
            "/products/2",
            json!({ "name": " ", "price_cents": 300, "category": "stationery" }),
            StatusCode::BAD_REQUEST,
            "the name is empty",
        ),
        (
            "/products/2",
            json!({ "name": "Pen", "price_cents": -1, "category": "stationery" }),
            StatusCode::BAD_REQUEST,
            "the price is negative",
        ),
        (
            "/products/2",
            json!({ "name": "Pen" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing field `price_cents`",
        ),
    ];
    for (path, body, status, message) in cases {
        let response = app.put(path, &body).await;
        assert_eq!(response.status(), status, "PUT {path} {body}");
        let answer: Value = response.json().await.unwrap();
        let text = answer["error"].as_str().unwrap_or_default();
        assert!(text.contains(message), "PUT {path} {body}: {answer}");
    }
    for (path, message) in [
        ("/categories/no%20such/products", "the category \"no such\""),
        ("/products/abc", "Cannot parse `abc`"),
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "GET {path}");
        let answer: Value = response.json().await.unwrap();
        let text = answer["error"].as_str().unwrap_or_default();
        assert!(text.contains(message), "GET {path}: {answer}");
    }

    let pen: Product = app.get_json("/products/2").await;
    assert_eq!(pen.price_cents, 250, "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_prometheus_text_with_cachette_series_and_healthz_is_ok() {
    let (_servers, app) = started().await;
    for _ in 0..3 {
        let _: Product = app.get_json("/products/3").await;
    }

    let healthy = eventually(PROPAGATION, async || {
        app.get_json::<Value>("/healthz").await
            == json!({ "database": "ok", "invalidation_channel": "Subscribed" })
    })
    .await;
    assert!(
        healthy,
        "healthz: {}",
        app.get_json::<Value>("/healthz").await
    );

    let response = app.get("/metrics").await;
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = response.text().await.unwrap();
    let mut series = Vec::new();
    for line in text.lines().filter(|line| !line.is_empty()) {
        if let Some(comment) = line.strip_prefix("# ") {
            let kind = comment.split(' ').next();
            assert!(
                matches!(kind, Some("HELP" | "TYPE")),
                "a comment line: {line:?}"
            );
            continue;
        }
        series.push(sample(line));
    }
    assert!(
        series.iter().any(|name| name.starts_with("cachette_")),
        "no cachette_ series in:\n{text}"
    );
}

/// Checks a sample line of the text exposition format,
/// `name[{label="value",...}] value [timestamp]`, and returns its name.
fn sample(line: &str) -> String {
    let (series, rest) = match line.find('{') {
        Some(open) => {
            let close = line
                .rfind('}')
                .unwrap_or_else(|| panic!("unclosed labels: {line:?}"));
            let labels = &line[open + 1..close];
            for pair in labels.split("\",").filter(|pair| !pair.is_empty()) {
                let (name, value) = pair
                    .split_once("=\"")
                    .unwrap_or_else(|| panic!("a label is not name=\"value\": {line:?}"));
                assert!(valid_name(name), "label name {name:?} in {line:?}");
                assert!(!value.contains('\n'));
            }
            (&line[..open], &line[close + 1..])
        }
        None => line
            .split_once(' ')
            .unwrap_or_else(|| panic!("no value: {line:?}")),
    };
    assert!(valid_name(series), "metric name {series:?} in {line:?}");
    let mut fields = rest.split_whitespace();
    let value = fields
        .next()
        .unwrap_or_else(|| panic!("no value: {line:?}"));
    assert!(
        value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
        "value {value:?} in {line:?}"
    );
    assert!(
        fields.all(|timestamp| timestamp.parse::<i64>().is_ok()),
        "{line:?}"
    );
    series.to_owned()
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_' || first == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgresql_down_fail_safe_serves_the_last_value_past_its_ttl() {
    let mut servers = Servers::start();
    let mut config = servers.config();
    config.soft_ttl = Duration::from_millis(200);
    config.ttl = Duration::from_millis(400);
    let app = App::start(&config, metrics())
        .await
        .expect("the service starts");
    seed(&servers).await;
    let fetched = app.product(2).await.expect("PostgreSQL answers");
    assert_eq!(fetched.map(|pen| pen.price_cents), Some(250));

    servers.postgres.crash();
    // Past the TTL for certain: the next read must ask PostgreSQL.
    sleep(Duration::from_millis(600)).await;

    let served = app
        .product(2)
        .await
        .expect("fail-safe answers instead of the error");
    assert_eq!(served.map(|pen| pen.price_cents), Some(250));
    let stats = app.cache().stats();
    assert_eq!(stats.fail_safe_activations, 1, "{stats:?}");
    assert!(stats.load_errors >= 1, "the query failed: {stats:?}");
}
