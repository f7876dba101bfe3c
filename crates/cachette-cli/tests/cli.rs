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

/// `stats --prometheus` prints the text exposition format: a TYPE line
/// and a labelled sample for every counter.
#[test]
fn stats_prints_prometheus_text() {
    let output = cachette(&["stats", "--prometheus"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains("# TYPE cachette_hits_total counter\n"),
        "{text}"
    );
    assert!(
        text.contains("cachette_hits_total{backend=\"memory\"} 0\n"),
        "{text}"
    );
    assert!(text.contains("# TYPE cachette_entries gauge\n"), "{text}");
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').expect("a sample line");
        assert!(
            series.starts_with("cachette_") && series.ends_with('}'),
            "{line}"
        );
        value.parse::<u64>().expect("an integer sample");
    }
}
