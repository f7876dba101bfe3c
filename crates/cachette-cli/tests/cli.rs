//! The `cachette` binary, run as a user would run it.
//!
//! A `memory://` store lives for one process, so these tests cannot `set`
//! in one run and `get` in the next; they check what one run prints and its
//! exit status.

use std::process::{Command, Output};

/// Runs `cachette` with these arguments, isolated from the caller's
/// `CACHETTE_URL`, `CACHETTE_CONFIG`, `CACHETTE_CACHE` and `RUST_LOG`.
fn cachette(args: &[&str]) -> Output {
    cachette_with(args, &[])
}

/// [`cachette`] with these environment variables set.
fn cachette_with(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cachette"))
        .args(args)
        .env_remove("CACHETTE_URL")
        .env_remove("CACHETTE_CONFIG")
        .env_remove("CACHETTE_CACHE")
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .output()
        .expect("the cachette binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Checks that a run failed the way the CLI promises: exit status 2, one
/// `error:` message, no panic and no `Debug` dump.
fn assert_clean_error(output: &Output) -> String {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(2), "stderr: {err}");
    assert!(err.starts_with("error: "), "stderr: {err}");
    assert!(!err.contains("panicked"), "stderr: {err}");
    assert!(!err.contains("Error {"), "stderr: {err}");
    err
}

#[test]
fn backends_prints_a_table_with_the_memory_scheme() {
    let output = cachette(&["backends"]);
    assert!(output.status.success(), "stderr: {}", stderr(&output));
    let table = stdout(&output);
    assert!(table.contains("scheme"), "{table}");
    assert!(table.contains("atomic incr"), "{table}");
    assert!(table.contains("memory"), "{table}");
}

#[test]
fn backends_json_lists_the_memory_scheme_with_its_capabilities() {
    let output = cachette(&["backends", "--json"]);
    assert!(output.status.success(), "stderr: {}", stderr(&output));
    let schemes: serde_json::Value = serde_json::from_slice(&output.stdout).expect("valid JSON");
    let memory = schemes
        .as_array()
        .expect("an array")
        .iter()
        .find(|s| s["scheme"] == "memory")
        .expect("the memory scheme is listed");
    assert_eq!(memory["enabled"], true);
    assert_eq!(memory["capabilities"]["atomic_incr"], true);
    assert_eq!(memory["capabilities"]["ttl_precision"], "milliseconds");
}

#[test]
fn get_of_a_missing_key_exits_1_with_a_note_on_stderr() {
    let output = cachette(&["get", "missing"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    assert_eq!(stderr(&output).trim(), "(miss)");
}

#[test]
fn set_exits_0_and_prints_ok() {
    let output = cachette(&["set", "k", "v", "--ttl", "1500ms", "--tag", "t"]);
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(&output));
    assert_eq!(stdout(&output).trim(), "OK");
}

#[test]
fn ttl_of_a_missing_key_prints_missing() {
    let output = cachette(&["ttl", "missing"]);
    assert_eq!(stdout(&output).trim(), "missing");
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn incr_and_decr_print_the_new_value() {
    let output = cachette(&["incr", "counter", "5"]);
    assert_eq!(stdout(&output).trim(), "5");
    let output = cachette(&["decr", "counter", "-3"]);
    assert_eq!(stdout(&output).trim(), "3");
}

#[test]
fn keys_of_an_empty_store_prints_nothing() {
    let output = cachette(&["keys"]);
    assert!(output.status.success(), "stderr: {}", stderr(&output));
    assert!(output.stdout.is_empty());
}

#[test]
fn an_unknown_scheme_is_an_error_naming_the_scheme() {
    let err = assert_clean_error(&cachette(&["--url", "nosuchscheme://x", "get", "k"]));
    assert!(err.contains("nosuchscheme"), "stderr: {err}");
}

#[test]
fn the_url_comes_from_cachette_url_when_not_given() {
    let output = Command::new(env!("CARGO_BIN_EXE_cachette"))
        .args(["ping"])
        .env_remove("CACHETTE_CONFIG")
        .env_remove("CACHETTE_CACHE")
        .env_remove("RUST_LOG")
        .env("CACHETTE_URL", "fromenv://x")
        .output()
        .expect("the cachette binary runs");
    let err = assert_clean_error(&output);
    assert!(err.contains("fromenv"), "stderr: {err}");
}

#[test]
fn a_password_in_the_url_never_reaches_the_error() {
    let err = assert_clean_error(&cachette(&[
        "--url",
        "redis://user:hunter2@localhost:1",
        "get",
        "k",
    ]));
    assert!(!err.contains("hunter2"), "stderr: {err}");
}

#[test]
fn an_empty_key_is_a_clean_error() {
    assert_clean_error(&cachette(&["get", ""]));
}

#[test]
fn a_zero_ttl_is_refused() {
    assert_clean_error(&cachette(&["set", "k", "v", "--ttl", "0s"]));
}

#[test]
fn clear_requires_yes() {
    let err = assert_clean_error(&cachette(&["clear"]));
    assert!(err.contains("--yes"), "stderr: {err}");
    let output = cachette(&["clear", "--yes"]);
    assert!(output.status.success(), "stderr: {}", stderr(&output));
}

#[test]
fn ping_prints_pong() {
    let output = cachette(&["ping"]);
    assert!(output.status.success(), "stderr: {}", stderr(&output));
    assert!(stdout(&output).starts_with("PONG "), "{}", stdout(&output));
}

#[test]
fn bench_with_ops_runs_exactly_that_many_and_prints_json() {
    let output = cachette(&[
        "bench", "--ops", "20000", "--keys", "1000", "--json", "--seed", "7",
    ]);
    assert!(output.status.success(), "stderr: {}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("valid JSON");
    assert_eq!(report["ops"], 20000);
    assert_eq!(
        report["gets"].as_u64().unwrap() + report["sets"].as_u64().unwrap(),
        20000
    );
    let hit_ratio = report["hit_ratio"].as_f64().expect("a hit ratio");
    assert!((0.0..=1.0).contains(&hit_ratio), "hit ratio {hit_ratio}");
    for field in [
        "p50_us",
        "p99_us",
        "p999_us",
        "max_us",
        "throughput_ops_per_sec",
    ] {
        assert!(
            report[field].as_f64().is_some(),
            "{field} missing: {report}"
        );
    }
}

#[test]
fn bench_without_warmup_counts_misses() {
    let output = cachette(&[
        "bench",
        "--ops",
        "5000",
        "--keys",
        "1000",
        "--no-warmup",
        "--json",
    ]);
    assert!(output.status.success(), "stderr: {}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("valid JSON");
    assert!(report["misses"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["misses"], report["fills"]);
    assert_eq!(report["warmup_secs"], serde_json::Value::Null);
}

#[test]
fn bench_for_a_duration_prints_a_table() {
    let output = cachette(&["bench", "--duration", "1s", "--keys", "10000"]);
    assert!(output.status.success(), "stderr: {}", stderr(&output));
    let table = stdout(&output);
    for row in ["throughput", "hit ratio", "latency p99", "latency max"] {
        assert!(table.contains(row), "no `{row}` in:\n{table}");
    }
}

#[test]
fn bench_refuses_duration_and_ops_together() {
    let output = cachette(&["bench", "--duration", "1s", "--ops", "10"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("cannot be used with"));
}

#[test]
fn sim_on_a_zipf_trace_prints_json_with_every_policy_and_capacity() {
    let output = cachette(&[
        "sim",
        "--zipf",
        "1.0",
        "--keys",
        "1000",
        "--requests",
        "20000",
        "--capacity",
        "10,100",
        "--json",
    ]);
    assert!(output.status.success(), "stderr: {}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("valid JSON");
    assert_eq!(report["trace"]["requests"], 20000);
    let results = report["results"].as_array().expect("a results array");
    assert_eq!(results.len(), 8, "{report}");
    for result in results {
        assert_eq!(
            result["hits"].as_u64().unwrap() + result["misses"].as_u64().unwrap(),
            20000
        );
        let miss_ratio = result["miss_ratio"].as_f64().expect("a miss ratio");
        assert!((0.0..=1.0).contains(&miss_ratio), "{result}");
    }
    assert_eq!(results[0]["capacity"], 10);
    assert_eq!(results[0]["policy"], "lru");
    assert_eq!(results[7]["capacity"], 100);
    assert_eq!(results[7]["policy"], "s3fifo");
}

#[test]
fn sim_prints_a_table_of_miss_ratios_with_the_trace_above_it() {
    let output = cachette(&[
        "sim",
        "--zipf",
        "0.8",
        "--keys",
        "500",
        "--requests",
        "5000",
        "--capacity",
        "5%,50",
        "--policy",
        "fifo,sieve",
    ]);
    assert!(output.status.success(), "stderr: {}", stderr(&output));
    let table = stdout(&output);
    for text in [
        "requests:  5,000",
        "distinct:",
        "fifo",
        "sieve",
        "(5%)",
        "50",
    ] {
        assert!(table.contains(text), "no `{text}` in:\n{table}");
    }
    assert!(!table.contains("s3fifo"), "{table}");
}

#[test]
fn sim_plot_writes_an_svg_file() {
    let path = std::env::temp_dir().join(format!("cachette-cli-sim-{}.svg", std::process::id()));
    let output = cachette(&[
        "sim",
        "--zipf",
        "1.0",
        "--keys",
        "1000",
        "--requests",
        "10000",
        "--capacity",
        "10,100,500",
        "--json",
        "--plot",
        path.to_str().expect("a UTF-8 temp path"),
    ]);
    assert!(output.status.success(), "stderr: {}", stderr(&output));
    let svg = std::fs::read_to_string(&path).expect("the plot was written");
    let _ = std::fs::remove_file(&path);
    assert!(
        svg.starts_with("<svg") || svg.starts_with("<?xml"),
        "{}",
        &svg[..svg.len().min(200)]
    );
    for policy in ["lru", "fifo", "sieve", "s3fifo"] {
        assert!(svg.contains(policy), "no legend entry for {policy}");
    }
}

#[test]
fn sim_of_a_missing_trace_file_is_a_clean_error() {
    let output = cachette(&[
        "sim",
        "--trace",
        "/nonexistent/lirs/absent.trace.gz",
        "--capacity",
        "10",
    ]);
    let err = assert_clean_error(&output);
    assert!(err.contains("absent.trace.gz"), "{err}");
}

#[test]
fn sim_without_a_known_folder_asks_for_the_format() {
    let output = cachette(&["sim", "--trace", "/nonexistent/x.trace", "--capacity", "10"]);
    let err = assert_clean_error(&output);
    assert!(err.contains("--format"), "{err}");
}

#[test]
fn sim_needs_a_trace_or_a_zipf_exponent() {
    let output = cachette(&["sim", "--capacity", "10"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--trace"), "{}", stderr(&output));
}

/// A fresh directory under the temp dir, removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("cachette-cli-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("a temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn backends_lists_tiered_as_compiled_in() {
    let output = cachette(&["backends", "--json"]);
    let schemes: serde_json::Value = serde_json::from_slice(&output.stdout).expect("valid JSON");
    let tiered = schemes
        .as_array()
        .expect("an array")
        .iter()
        .find(|s| s["scheme"] == "tiered")
        .expect("the tiered scheme is listed");
    assert_eq!(tiered["enabled"], true);
}

#[test]
fn a_tiered_cache_from_a_config_file_keeps_what_set_wrote() {
    let dir = TempDir::new("tiered");
    let config = dir.0.join("caches.toml");
    let l2 = dir.0.join("l2");
    std::fs::write(
        &config,
        format!(
            "[caches.pages]\nl1 = \"memory://?max_entries=100\"\nl2 = \"file://{}\"\nl1_ttl = \"5s\"\n\n\
             [caches.other]\nurl = \"memory://\"\n",
            l2.display()
        ),
    )
    .expect("the config file is written");
    let config = config.to_str().expect("a UTF-8 path");
    let set = cachette(&[
        "--config", config, "--cache", "pages", "set", "home", "hello",
    ]);
    assert_eq!(set.status.code(), Some(0), "stderr: {}", stderr(&set));
    // A new process: the value comes back from the file-backed L2.
    let get = cachette(&["--config", config, "--cache", "pages", "get", "home"]);
    assert_eq!(get.status.code(), Some(0), "stderr: {}", stderr(&get));
    assert_eq!(stdout(&get).trim(), "hello");
    let stats = cachette(&["--config", config, "--cache", "pages", "stats", "--json"]);
    assert!(stdout(&stats).contains("l1_hits"), "{}", stdout(&stats));
}

#[test]
fn a_config_file_without_a_default_asks_for_a_cache_name() {
    let dir = TempDir::new("nodefault");
    let config = dir.0.join("caches.toml");
    std::fs::write(
        &config,
        "[caches.a]\nurl = \"memory://\"\n[caches.b]\nurl = \"memory://\"\n",
    )
    .expect("the config file is written");
    let output = cachette(&["--config", config.to_str().expect("UTF-8"), "get", "k"]);
    let err = assert_clean_error(&output);
    assert!(
        err.contains("no default cache") && err.contains("known: a, b"),
        "{err}"
    );
    let output = cachette(&[
        "--config",
        config.to_str().expect("UTF-8"),
        "--cache",
        "c",
        "get",
        "k",
    ]);
    let err = assert_clean_error(&output);
    assert!(err.contains("no cache named `c`"), "{err}");
}

#[test]
fn a_bad_layer_in_a_config_file_is_a_clean_error_naming_the_file_and_the_cache() {
    let dir = TempDir::new("badlayer");
    let config = dir.0.join("caches.toml");
    std::fs::write(
        &config,
        "[caches.pages]\nl1 = \"memory://?max_entrie=1\"\nl2 = \"memory://\"\n",
    )
    .expect("the config file is written");
    let config = config.to_str().expect("UTF-8");
    let err = assert_clean_error(&cachette(&["--config", config, "get", "k"]));
    assert!(
        err.contains(config)
            && err.contains("cache `pages`: l1: unknown parameter `max_entrie`")
            && err.contains("did you mean `max_entries`?"),
        "{err}"
    );
}

/// `set` in one process, `get` in another, over two memcached servers: the
/// value comes back, and it lives on exactly one of the two.
#[test]
fn memcached_keeps_a_value_between_processes_on_exactly_one_of_two_servers() {
    use cachette::testing::servers::memcached::MemcachedCluster;
    let cluster = MemcachedCluster::start(2);
    let url = cluster.url();
    let set = cachette(&["--url", &url, "set", "k", "v", "--ttl", "2s"]);
    assert_eq!(set.status.code(), Some(0), "stderr: {}", stderr(&set));
    assert_eq!(stdout(&set).trim(), "OK");
    let get = cachette(&["--url", &url, "get", "k"]);
    assert_eq!(get.status.code(), Some(0), "stderr: {}", stderr(&get));
    assert_eq!(stdout(&get).trim(), "v");
    // Only the key's server was used: it holds the entry and the prefix's
    // generation; the other holds nothing.
    let items: Vec<u64> = cluster
        .servers()
        .iter()
        .map(|server| server.stat("curr_items"))
        .collect();
    let mut sorted = items.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [0, 2], "items per server: {items:?}");
}

/// `set` in one process, `get` in another, on a PostgreSQL server the test
/// started: the value comes back; the table is UNLOGGED; once the TTL has
/// passed, the key is a miss and one sweeper pass (`purge-expired`)
/// deletes the row.
#[test]
fn postgres_keeps_a_value_between_processes_and_sweeps_it_after_its_ttl() {
    use cachette::testing::servers::postgres::PostgresServer;
    let server = PostgresServer::start();
    let url = server.url();
    let set = cachette(&["--url", &url, "set", "k", "v", "--ttl", "2s"]);
    assert_eq!(set.status.code(), Some(0), "stderr: {}", stderr(&set));
    assert_eq!(stdout(&set).trim(), "OK");
    let get = cachette(&["--url", &url, "get", "k"]);
    assert_eq!(get.status.code(), Some(0), "stderr: {}", stderr(&get));
    assert_eq!(stdout(&get).trim(), "v");
    assert_eq!(
        server.psql("SELECT relpersistence FROM pg_class WHERE relname = 'cachette_cache'"),
        "u"
    );
    assert_eq!(server.psql("SELECT count(*) FROM cachette_cache"), "1");
    std::thread::sleep(std::time::Duration::from_secs(3));
    let get = cachette(&["--url", &url, "get", "k"]);
    assert_eq!(get.status.code(), Some(1), "stdout: {}", stdout(&get));
    let purge = cachette(&["--url", &url, "purge-expired"]);
    assert_eq!(purge.status.code(), Some(0), "stderr: {}", stderr(&purge));
    assert_eq!(stdout(&purge).trim(), "1");
    assert_eq!(server.psql("SELECT count(*) FROM cachette_cache"), "0");
}

/// `set` in one process, `get` in another, on an S3 server the test
/// started (credentials from the environment, as in production) and on
/// local files; after the TTL the key is a miss.
#[test]
fn object_storage_keeps_a_value_between_processes() {
    use cachette::testing::servers::s3::{ACCESS_KEY, S3Server, SECRET_KEY};
    let server = S3Server::start();
    server.create_bucket("bucket");
    let dir = cachette::testing::servers::fresh_dir();
    let env = [
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
    ];
    for url in [
        format!(
            "s3://bucket/cache?endpoint={}&allow_http=true",
            server.endpoint()
        ),
        format!("object+file://{}", dir.display()),
    ] {
        let set = cachette_with(&["--url", &url, "set", "k", "v", "--ttl", "2s"], &env);
        assert_eq!(set.status.code(), Some(0), "{url}: {}", stderr(&set));
        assert_eq!(stdout(&set).trim(), "OK");
        let get = cachette_with(&["--url", &url, "get", "k"], &env);
        assert_eq!(get.status.code(), Some(0), "{url}: {}", stderr(&get));
        assert_eq!(stdout(&get).trim(), "v");
        assert!(
            !stderr(&get).contains(SECRET_KEY) && !stdout(&get).contains(SECRET_KEY),
            "the secret is shown"
        );
    }
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let url = format!("object+file://{}", dir.display());
    let get = cachette_with(&["--url", &url, "get", "k"], &env);
    assert_eq!(get.status.code(), Some(1), "expired: {}", stdout(&get));
    let _ = std::fs::remove_dir_all(dir);
}

/// `exists`, `mget` and `invalidate-tags` on a file cache, each in its own
/// process: what `set --tag` wrote, the CLI can invalidate.
#[test]
fn exists_mget_and_invalidate_tags() {
    let dir = cachette::testing::servers::fresh_dir();
    let url = format!("file://{}/cache", dir.display());
    for (key, value, tag) in [("a", "1", "red"), ("b", "2", "blue"), ("c", "3", "red")] {
        let set = cachette(&["--url", &url, "set", key, value, "--tag", tag]);
        assert_eq!(set.status.code(), Some(0), "{}", stderr(&set));
    }
    let exists = cachette(&["--url", &url, "exists", "a"]);
    assert_eq!(
        (exists.status.code(), stdout(&exists).trim()),
        (Some(0), "true")
    );
    let absent = cachette(&["--url", &url, "exists", "zz"]);
    assert_eq!(
        (absent.status.code(), stdout(&absent).trim()),
        (Some(1), "false")
    );
    let mget = cachette(&["--url", &url, "mget", "a", "zz", "c"]);
    assert_eq!(mget.status.code(), Some(0), "{}", stderr(&mget));
    assert_eq!(stdout(&mget), "1\n\n3\n");
    assert!(stderr(&mget).contains("(miss) zz"), "{}", stderr(&mget));
    let invalidated = cachette(&["--url", &url, "invalidate-tags", "red"]);
    assert_eq!(
        invalidated.status.code(),
        Some(0),
        "{}",
        stderr(&invalidated)
    );
    assert_eq!(stdout(&invalidated).trim(), "2");
    let mget = cachette(&["--url", &url, "mget", "a", "b", "c"]);
    assert_eq!(stdout(&mget), "\n2\n\n");
    let _ = std::fs::remove_dir_all(dir);
}

/// The default store of `bench` is bounded below the key space: a warmed
/// run still misses (an unbounded one would be all hits).
#[test]
fn bench_by_default_evicts_and_misses() {
    let output = cachette(&[
        "bench", "--ops", "20000", "--keys", "1000", "--json", "--seed", "7",
    ]);
    assert!(output.status.success(), "stderr: {}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("valid JSON");
    assert!(report["misses"].as_u64().unwrap() > 0, "{report}");
    let hit_ratio = report["hit_ratio"].as_f64().unwrap();
    assert!(hit_ratio < 1.0, "{report}");
}

/// Shell completions name the commands, for each shell clap supports.
#[test]
fn completions_name_the_commands() {
    for shell in ["bash", "zsh", "fish"] {
        let output = cachette(&["completions", shell]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{shell}: {}",
            stderr(&output)
        );
        let script = stdout(&output);
        for command in ["invalidate-tags", "purge-expired", "mget", "bench"] {
            assert!(script.contains(command), "{shell} lacks {command}");
        }
    }
    let output = cachette(&["completions", "tcsh"]);
    assert_eq!(output.status.code(), Some(2));
}

/// `stats --prometheus` prints valid text exposition format: every line
/// parses by the format's rules (below), every sample has a declared type,
/// and the counters, gauges and details are there.
#[test]
fn stats_prints_prometheus_text() {
    let output = cachette(&["stats", "--prometheus"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    let families = exposition::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let hits = &families["cachette_hits_total"];
    assert_eq!(hits.kind, "counter");
    assert_eq!(hits.samples.len(), 1, "{text}");
    assert_eq!(hits.samples[0].labels["backend"], "memory");
    assert_eq!(hits.samples[0].value, 0.0);
    assert_eq!(families["cachette_entries"].kind, "gauge");
    assert_eq!(families["cachette_bytes"].kind, "gauge");
    for (name, family) in &families {
        assert!(!family.help.is_empty(), "{name} has no HELP");
        assert!(!family.samples.is_empty(), "{name} has no sample");
    }
    // The memory engine's own figure (`tags`) is a detail.
    let detail = &families["cachette_detail"];
    assert_eq!(detail.kind, "gauge");
    assert!(
        detail.samples.iter().any(|s| s.labels["name"] == "tags"),
        "{text}"
    );
}

/// The parser checks itself: what the format forbids is refused.
#[test]
fn the_exposition_parser_refuses_what_the_format_forbids() {
    for bad in [
        "cachette_x{backend=\"a\"} 1\n# TYPE cachette_x counter\n",
        "# TYPE x counter\n# TYPE x gauge\nx 1\n",
        "# TYPE x counter\nx{a=\"1\",a=\"2\"} 1\n",
        "# TYPE x counter\nx{a=\"1} 1\n",
        "# TYPE x counter\nx{1a=\"1\"} 1\n",
        "# TYPE x counter\nx one\n",
        "# TYPE x counter\nx 1\nx 2\n",
        "# TYPE x counter\n# TYPE y counter\nx 1\ny 1\nx{a=\"b\"} 1\n",
        "# TYPE x meter\nx 1\n",
        "# TYPE x counter\nx{a=\"\\q\"} 1\n",
        "# TYPE x counter\nx{a=\"1\"b=\"2\"} 1\n",
    ] {
        assert!(exposition::parse(bad).is_err(), "accepted: {bad:?}");
    }
    let good = "# HELP x a \\\\ b\n# TYPE x counter\nx{a=\"q\\\"\\n\\\\\"} +Inf 123\n\n";
    exposition::parse(good).unwrap_or_else(|e| panic!("{e}"));
    let good = "# TYPE x counter\nx{a=\"1\",b=\"2\",} 1\n";
    exposition::parse(good).unwrap_or_else(|e| panic!("{e}"));
}

/// A strict parser of the text exposition format.
#[path = "support/exposition.rs"]
mod exposition;

/// `cachette --url URL set KEY --stdin` with `value` on stdin.
fn set_from_stdin(url: &str, key: &str, value: &[u8]) -> Output {
    use std::io::Write as _;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_cachette"))
        .args(["--url", url, "set", key, "--stdin"])
        .env_remove("CACHETTE_URL")
        .env_remove("CACHETTE_CONFIG")
        .env_remove("CACHETTE_CACHE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the cachette binary runs");
    // Dropping stdin after the write closes it: the value ends there.
    let written = child.stdin.take().expect("a stdin").write_all(value);
    let output = child.wait_with_output().expect("the cachette binary runs");
    written.expect("the value is written to stdin");
    output
}

/// Checks that `text` contains each of `parts`.
fn assert_contains_all(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(text.contains(part), "no `{part}` in:\n{text}");
    }
}

/// Parses stdout as one JSON document.
fn json_stdout(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            stdout(output),
            stderr(output)
        )
    })
}

/// `--json` on set, get, exists, mget, keys, ttl, del and stats: one JSON
/// document on stdout each, the exit statuses of the text output, nothing
/// on stderr; a value that is not UTF-8 is `{"base64": ...}`.
#[test]
fn json_output_of_the_key_commands() {
    let dir = cachette::testing::servers::fresh_dir();
    let url = format!("file://{}/cache", dir.display());
    let run = |args: &[&str]| {
        let mut all = vec!["--url", url.as_str(), "--json"];
        all.extend_from_slice(args);
        cachette(&all)
    };
    let set = run(&["set", "a", "1", "--tag", "red"]);
    assert_eq!(set.status.code(), Some(0), "{}", stderr(&set));
    assert_eq!(
        json_stdout(&set),
        serde_json::json!({"key": "a", "written": true})
    );
    let not_set = run(&["set", "a", "2", "--nx"]);
    assert_eq!(not_set.status.code(), Some(1));
    assert_eq!(json_stdout(&not_set)["written"], false);
    assert!(not_set.stderr.is_empty(), "{}", stderr(&not_set));

    let binary = set_from_stdin(&url, "bin", &[0xff, 0x00, 0x41]);
    assert_eq!(binary.status.code(), Some(0));

    let get = run(&["get", "a"]);
    assert_eq!(get.status.code(), Some(0), "{}", stderr(&get));
    let doc = json_stdout(&get);
    assert_eq!(
        (doc["found"].clone(), doc["value"].clone()),
        (true.into(), "1".into())
    );
    assert_eq!(doc["envelope"], serde_json::Value::Null);
    let get = run(&["get", "bin"]);
    assert_eq!(
        json_stdout(&get)["value"],
        serde_json::json!({"base64": "/wBB"})
    );
    let miss = run(&["get", "zz"]);
    assert_eq!(miss.status.code(), Some(1));
    assert_eq!(json_stdout(&miss)["found"], false);
    assert!(miss.stderr.is_empty(), "{}", stderr(&miss));

    let exists = run(&["exists", "a"]);
    assert_eq!(exists.status.code(), Some(0));
    assert_eq!(
        json_stdout(&exists),
        serde_json::json!({"key": "a", "exists": true})
    );
    let absent = run(&["exists", "zz"]);
    assert_eq!(absent.status.code(), Some(1));
    assert_eq!(json_stdout(&absent)["exists"], false);

    let mget = run(&["mget", "a", "zz", "bin"]);
    assert_eq!(mget.status.code(), Some(0), "{}", stderr(&mget));
    assert_eq!(
        json_stdout(&mget),
        serde_json::json!({"entries": [
            {"key": "a", "found": true, "value": "1"},
            {"key": "zz", "found": false, "value": null},
            {"key": "bin", "found": true, "value": {"base64": "/wBB"}},
        ]})
    );
    assert!(mget.stderr.is_empty(), "{}", stderr(&mget));

    let keys = run(&["keys"]);
    let mut listed: Vec<String> =
        serde_json::from_value(json_stdout(&keys)["keys"].clone()).expect("a list of keys");
    listed.sort();
    assert_eq!(listed, ["a", "bin"]);
    let empty = run(&["keys", "nothing*"]);
    assert_eq!(json_stdout(&empty), serde_json::json!({"keys": []}));

    let ttl = run(&["ttl", "a"]);
    assert_eq!(json_stdout(&ttl)["state"], "persistent");

    let stats = run(&["stats"]);
    assert_eq!(stats.status.code(), Some(0), "{}", stderr(&stats));
    let doc = json_stdout(&stats);
    assert_eq!(doc["backend"], "file");
    assert_eq!(doc["entries"], 2);
    assert_eq!(doc["sources"]["entries"], "the directory");
    assert_eq!(doc["sources"]["hits"], "this process");

    let invalidated = run(&["invalidate-tags", "red"]);
    assert_eq!(
        json_stdout(&invalidated),
        serde_json::json!({"invalidated": 1})
    );
    let del = run(&["del", "bin", "zz"]);
    assert_eq!(json_stdout(&del), serde_json::json!({"removed": 1}));
    let _ = std::fs::remove_dir_all(dir);
}

/// Under `--json` an error is one JSON object on stderr, with its kind,
/// and the exit status is 2 as without it; bad command lines too.
#[test]
fn json_errors_are_an_object_on_stderr_with_exit_status_2() {
    let error = |output: &Output| {
        assert_eq!(output.status.code(), Some(2), "{}", stderr(output));
        assert!(output.stdout.is_empty(), "{}", stdout(output));
        let doc: serde_json::Value = serde_json::from_slice(&output.stderr)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stderr(output)));
        (
            doc["error"]["kind"].as_str().expect("a kind").to_owned(),
            doc["error"]["message"]
                .as_str()
                .expect("a message")
                .to_owned(),
        )
    };
    let (kind, message) = error(&cachette(&["--json", "get", ""]));
    assert_eq!(kind, "invalid input");
    assert!(message.contains("empty"), "{message}");
    let (kind, message) = error(&cachette(&["--url", "nosuch://x", "get", "k", "--json"]));
    assert_eq!(kind, "config", "{message}");
    assert!(message.contains("nosuch"), "{message}");
    let (kind, message) = error(&cachette(&["--json", "clear"]));
    assert_eq!(kind, "command");
    assert!(message.contains("--yes"), "{message}");
    let (kind, message) = error(&cachette(&["--json", "get", "k", "--nope"]));
    assert_eq!(kind, "usage");
    assert!(message.contains("--nope"), "{message}");
}

/// Every other command answers with one JSON document under `--json`.
#[test]
fn json_output_of_the_other_commands() {
    for args in [
        &["--json", "ping"][..],
        &["--json", "incr", "n", "2"],
        &["--json", "clear", "--yes"],
        &["--json", "purge-expired"],
        &["--json", "touch", "missing", "--persist"],
        &["--json", "backends"],
        &["--json", "completions", "bash"],
        &["--json", "bench", "--ops", "100", "--keys", "10"],
        &[
            "--json",
            "sim",
            "--zipf",
            "1",
            "--keys",
            "10",
            "--requests",
            "100",
            "--capacity",
            "5",
        ],
    ] {
        let output = cachette(args);
        assert!(
            matches!(output.status.code(), Some(0 | 1)),
            "{args:?}: {}",
            stderr(&output)
        );
        let doc = json_stdout(&output);
        assert!(doc.is_object() || doc.is_array(), "{args:?}: {doc}");
    }
    let incr = cachette(&["--json", "incr", "n", "2"]);
    assert_eq!(
        json_stdout(&incr),
        serde_json::json!({"key": "n", "value": 2})
    );
}

/// `watch --count 2` draws two frames and exits; under `--json` one object
/// per frame and line, the first without ops/s, both with the entries of
/// the file cache.
#[test]
fn watch_draws_count_frames_of_the_backends_figures() {
    let dir = cachette::testing::servers::fresh_dir();
    let url = format!("file://{}/cache", dir.display());
    for key in ["a", "b", "c"] {
        let set = cachette(&["--url", &url, "set", key, "v"]);
        assert_eq!(set.status.code(), Some(0), "{}", stderr(&set));
    }
    let args = [
        "--url",
        &url,
        "watch",
        "--count",
        "2",
        "--interval",
        "200ms",
    ];
    let text = cachette(&args);
    assert_eq!(text.status.code(), Some(0), "{}", stderr(&text));
    let frames = stdout(&text);
    assert_eq!(frames.matches("hit ratio").count(), 2, "{frames}");
    assert_eq!(frames.matches("ops/s").count(), 2, "{frames}");
    assert!(frames.contains("(frame 2,"), "{frames}");
    // Not a terminal: no screen clearing.
    assert!(!frames.contains('\x1b'), "{frames}");

    let json = cachette(&[&args[..], &["--json"]].concat());
    assert_eq!(json.status.code(), Some(0), "{}", stderr(&json));
    let frames: Vec<serde_json::Value> = stdout(&json)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    assert_eq!(frames.len(), 2, "{}", stdout(&json));
    for (index, frame) in frames.iter().enumerate() {
        assert_eq!(frame["frame"], index + 1);
        assert_eq!(frame["backend"], "file");
        assert_eq!(frame["entries"], 3);
        assert_eq!(frame["sources"]["entries"], "the directory");
        for field in ["hit_ratio", "bytes", "evictions", "elapsed_secs"] {
            assert!(frame[field].is_number(), "{field}: {frame}");
        }
    }
    assert!(frames[0]["ops_per_sec"].is_null(), "{}", frames[0]);
    // Nothing ran between the frames: no operations.
    assert_eq!(frames[1]["ops_per_sec"], 0.0);
    assert!(
        frames[1]["elapsed_secs"].as_f64().unwrap() >= 0.15,
        "{}",
        frames[1]
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// `stats` and `watch` on Redis show the server's figures with their
/// source: the keys under the prefix (a SCAN), the database's keys, the
/// server's memory and keyspace hits; not the CLI process's zeros.
#[test]
fn stats_and_watch_on_redis_show_the_servers_figures() {
    use cachette::testing::servers::redis::RedisServer;
    let server = RedisServer::start();
    let app = format!("{}?prefix=app:", server.url());
    let other = format!("{}?prefix=other:", server.url());
    for (url, key) in [(&app, "a"), (&app, "b"), (&app, "c"), (&other, "x")] {
        let set = cachette(&["--url", url, "set", key, "v"]);
        assert_eq!(set.status.code(), Some(0), "{}", stderr(&set));
    }
    // A keyspace hit and a miss on the server, from other processes.
    assert_eq!(
        cachette(&["--url", &app, "get", "a"]).status.code(),
        Some(0)
    );
    assert_eq!(
        cachette(&["--url", &app, "get", "zz"]).status.code(),
        Some(1)
    );

    let stats = cachette(&["--url", &app, "--json", "stats"]);
    assert_eq!(stats.status.code(), Some(0), "{}", stderr(&stats));
    let doc = json_stdout(&stats);
    assert_eq!(doc["entries"], 3, "{doc}");
    assert_eq!(doc["sources"]["entries"], "SCAN of prefix");
    assert_eq!(doc["details"]["db_keys"], 4, "{doc}");
    assert!(
        doc["details"]["server_used_memory"].as_u64().unwrap() > 0,
        "{doc}"
    );
    assert!(
        doc["details"]["server_keyspace_hits"].as_u64().unwrap() >= 1,
        "{doc}"
    );
    assert!(
        doc["details"]["server_keyspace_misses"].as_u64().unwrap() >= 1,
        "{doc}"
    );
    assert_eq!(doc["sources"]["server_keyspace_hits"], "server INFO stats");
    assert_eq!(doc["sources"]["server_used_memory"], "server INFO memory");
    assert_eq!(doc["sources"]["hits"], "this process");

    let table = cachette(&["--url", &app, "stats"]);
    let table = stdout(&table);
    assert_contains_all(
        &table,
        &[
            "SCAN of prefix",
            "server INFO stats",
            "server INFO memory",
            "source",
        ],
    );
    let no_scan = cachette(&["--url", &app, "--json", "stats", "--no-scan"]);
    assert_eq!(json_stdout(&no_scan)["sources"]["entries"], "not reported");
    // The SCAN walks the whole database (4 keys): above --scan-limit it is
    // left out, and the exposition has no entries sample.
    let at_limit = cachette(&["--url", &app, "--json", "stats", "--scan-limit", "4"]);
    assert_eq!(json_stdout(&at_limit)["entries"], 3);
    let over = cachette(&["--url", &app, "--json", "stats", "--scan-limit", "3"]);
    let doc = json_stdout(&over);
    assert!(
        doc["sources"]["entries"]
            .as_str()
            .is_some_and(|source| source.starts_with("not counted")),
        "{doc}"
    );
    let over = cachette(&["--url", &app, "stats", "--prometheus", "--scan-limit", "3"]);
    let text = stdout(&over);
    let families = exposition::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert!(!families.contains_key("cachette_entries"), "{text}");

    let prometheus = cachette(&["--url", &app, "stats", "--prometheus"]);
    let text = stdout(&prometheus);
    let families = exposition::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(families["cachette_entries"].samples[0].value, 3.0);
    // Redis reports no byte count of the prefix: no sample, rather than 0.
    assert!(!families.contains_key("cachette_bytes"), "{text}");
    assert!(
        families["cachette_detail"]
            .samples
            .iter()
            .any(|s| s.labels["name"] == "server_used_memory" && s.value > 0.0),
        "{text}"
    );

    let watch = cachette(&[
        "--url",
        &app,
        "--json",
        "watch",
        "--count",
        "2",
        "--interval",
        "200ms",
    ]);
    assert_eq!(watch.status.code(), Some(0), "{}", stderr(&watch));
    let last: serde_json::Value = stdout(&watch)
        .lines()
        .last()
        .map(|line| serde_json::from_str(line).expect("a JSON frame"))
        .expect("two frames");
    assert_eq!(last["frame"], 2);
    assert_eq!(last["entries"], 3);
    assert!(last["hits"].as_u64().unwrap() >= 1, "{last}");
    assert_eq!(last["sources"]["hits"], "server INFO stats");
    assert_eq!(last["sources"]["bytes"], "server INFO memory");
    assert!(last["bytes"].as_u64().unwrap() > 0, "{last}");
}

/// What the typed `Cache` wrote, `get` reads: `--namespace` finds the key
/// at the stored key version, an envelope is shown as its header and
/// payload, and `--codec` decodes JSON and MessagePack (postcard is shown
/// in hex).
#[test]
fn get_decodes_what_the_typed_cache_wrote() {
    use cachette::cache::{Cache, EntryOptions, Json, MessagePack};
    use std::time::Duration;
    let dir = cachette::testing::servers::fresh_dir();
    let url = format!("file://{}/cache", dir.display());
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let backend = cachette::open(&url).await.expect("the file cache opens");
        let users = Cache::builder(backend.clone())
            .codec(Json)
            .namespace("users")
            .default_ttl(Duration::from_secs(600))
            .soft_ttl(Duration::from_secs(60))
            .build()
            .await
            .expect("a cache");
        users.bump_version().await.expect("a version bump");
        let ada = serde_json::json!({"id": 42, "name": "Ada"});
        users
            .set("42", &ada, &EntryOptions::new())
            .await
            .expect("set");
        let packed = Cache::builder(backend.clone())
            .codec(MessagePack)
            .namespace("packed")
            .build()
            .await
            .expect("a cache");
        packed
            .set("k", &ada, &EntryOptions::new())
            .await
            .expect("set");
        let plain = Cache::builder(backend.clone())
            .namespace("plain")
            .build()
            .await
            .expect("a cache");
        plain
            .set("k", &(42_u8, "Ada"), &EntryOptions::new())
            .await
            .expect("set");
        // A compressed payload, under a key of the hashed form.
        let squeezed = Cache::builder(backend.clone())
            .codec(Json)
            .namespace("squeezed")
            .compress_above(64)
            .build()
            .await
            .expect("a cache");
        let long = "x".repeat(1000);
        squeezed
            .set("#h:long", &long, &EntryOptions::new())
            .await
            .expect("set");
        backend.close().await.expect("close");
    });

    // An envelope (soft TTL) at version 1, JSON.
    let get = cachette(&["--url", &url, "get", "--namespace", "users", "42"]);
    assert_eq!(get.status.code(), Some(0), "{}", stderr(&get));
    let value: serde_json::Value = serde_json::from_slice(&get.stdout).expect("JSON");
    assert_eq!(value, serde_json::json!({"id": 42, "name": "Ada"}));
    let header = stderr(&get);
    assert_contains_all(
        &header,
        &[
            "envelope: codec json (id 1)",
            "created:",
            "stale after:",
            "expires after:",
        ],
    );
    let json = cachette(&["--url", &url, "--json", "get", "--namespace", "users", "42"]);
    let doc = json_stdout(&json);
    assert_eq!(doc["stored_key"], "users:v1:42");
    assert_eq!(doc["codec"], "json");
    assert_eq!(doc["value"]["name"], "Ada");
    let envelope = &doc["envelope"];
    assert_eq!(envelope["codec"], "json");
    let created = envelope["created_unix_ms"].as_u64().expect("created");
    let soft = envelope["soft_deadline_unix_ms"]
        .as_u64()
        .expect("a soft deadline");
    assert!(soft > created && soft - created <= 60_000, "{envelope}");
    assert_eq!(envelope["negative"], false);
    // The raw stored bytes start with the envelope's magic.
    let raw = cachette(&["--url", &url, "get", "users:v1:42", "--raw"]);
    assert!(
        raw.stdout.starts_with(&[0xCC, b'c', b'h', b't']),
        "{:?}",
        raw.stdout
    );
    // Version 0's key holds nothing.
    let old = cachette(&["--url", &url, "get", "users:v0:42"]);
    assert_eq!(old.status.code(), Some(1));

    // A plain value (no envelope), MessagePack by --codec.
    let packed = cachette(&[
        "--url",
        &url,
        "--json",
        "get",
        "--namespace",
        "packed",
        "--codec",
        "msgpack",
        "k",
    ]);
    let doc = json_stdout(&packed);
    assert_eq!(
        doc["value"],
        serde_json::json!({"id": 42, "name": "Ada"}),
        "{doc}"
    );
    assert_eq!(doc["envelope"], serde_json::Value::Null);

    // Postcard cannot be decoded without its type: hex, with a note.
    let plain = cachette(&[
        "--url",
        &url,
        "get",
        "--namespace",
        "plain",
        "--codec",
        "postcard",
        "k",
    ]);
    assert_eq!(plain.status.code(), Some(0), "{}", stderr(&plain));
    assert_eq!(stdout(&plain).trim(), "2a03416461");
    assert!(
        stderr(&plain).contains("not self-describing"),
        "{}",
        stderr(&plain)
    );

    // Decompressed, and found under its hashed key with its original key.
    let squeezed = cachette(&[
        "--url",
        &url,
        "--json",
        "get",
        "--namespace",
        "squeezed",
        "#h:long",
    ]);
    let doc = json_stdout(&squeezed);
    assert_eq!(doc["value"], "x".repeat(1000));
    assert!(
        doc["stored_key"]
            .as_str()
            .unwrap()
            .starts_with("squeezed:v0:#h:"),
        "{doc}"
    );
    assert_eq!(doc["envelope"]["compressed"], true);
    assert_eq!(doc["envelope"]["original_key"], "#h:long");
    assert_eq!(
        doc["envelope"]["flags"],
        serde_json::json!(["compressed", "original key"])
    );

    // Bytes that claim to be an envelope and are not: a serialization error.
    let corrupt = set_from_stdin(&url, "bad", &[0xCC, b'c', b'h', b't', 9]);
    assert_eq!(corrupt.status.code(), Some(0));
    let bad = cachette(&["--url", &url, "--json", "get", "bad"]);
    assert_eq!(bad.status.code(), Some(2));
    let error: serde_json::Value = serde_json::from_slice(&bad.stderr).expect("a JSON error");
    assert_eq!(error["error"]["kind"], "serialization");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown envelope format version 9"),
        "{error}"
    );

    // A bad namespace is the cache's own error.
    let bad = cachette(&["--url", &url, "get", "--namespace", "a:b", "k"]);
    assert_clean_error(&bad);
    let missing = cachette(&["--url", &url, "get", "--namespace", "users", "43"]);
    assert_eq!(missing.status.code(), Some(1));
    let _ = std::fs::remove_dir_all(dir);
}

/// An envelope whose times lie past year 9999 (RFC 3339's last) is a
/// corrupt or hostile header, not a reason to panic: `get` shows those
/// times as counts of ms, in text and in JSON.
#[test]
fn get_of_an_envelope_with_times_past_year_9999_shows_them_as_ms() {
    let dir = cachette::testing::servers::fresh_dir();
    let url = format!("file://{}/cache", dir.display());
    // Magic, format 1, codec 1 (json), no flags, then created, soft and
    // hard deadlines all at u64::MAX ms, then the payload.
    let mut envelope = vec![0xCC, b'c', b'h', b't', 1, 1, 0];
    for _ in 0..3 {
        envelope.extend_from_slice(&u64::MAX.to_le_bytes());
    }
    envelope.extend_from_slice(b"\"x\"");
    let set = set_from_stdin(&url, "far", &envelope);
    assert_eq!(set.status.code(), Some(0), "{}", stderr(&set));

    let text = cachette(&["--url", &url, "get", "far"]);
    assert_eq!(text.status.code(), Some(0), "{}", stderr(&text));
    assert_eq!(stdout(&text), "\"x\"\n");
    let header = stderr(&text);
    assert_eq!(
        header.matches("18446744073709551615 ms after").count(),
        3,
        "{header}"
    );
    let json = cachette(&["--url", &url, "--json", "get", "far"]);
    assert_eq!(json.status.code(), Some(0), "{}", stderr(&json));
    let doc = json_stdout(&json);
    assert_eq!(doc["value"], "x");
    assert_eq!(doc["envelope"]["created_unix_ms"], u64::MAX);
    assert!(
        doc["envelope"]["created"]
            .as_str()
            .is_some_and(|created| created.starts_with("18446744073709551615 ms")),
        "{doc}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// `watch` without `--count` runs until Ctrl-C (SIGINT), then ends
/// cleanly with exit status 0.
#[cfg(unix)]
#[test]
fn watch_stops_cleanly_on_ctrl_c() {
    use std::io::BufRead as _;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_cachette"))
        .args(["--json", "watch", "--interval", "100ms"])
        .env_remove("CACHETTE_URL")
        .env_remove("CACHETTE_CONFIG")
        .env_remove("CACHETTE_CACHE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("watch starts");
    let mut frames = std::io::BufReader::new(child.stdout.take().expect("a stdout")).lines();
    // The Ctrl-C handler is in place once the first frame is drawn.
    let frame = frames.next().expect("a frame").expect("a line");
    serde_json::from_str::<serde_json::Value>(&frame).expect("a JSON frame");
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("the child can be waited for") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("watch did not stop on SIGINT");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "{status:?}");
}
