//! The service's configuration: from the environment, then the command
//! line (which wins).

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use cachette::params::redact;

/// Where the service finds its servers and listens, and how long it
/// caches.
///
/// [`Config::new`] gives the defaults below; [`Config::from_env_and_args`]
/// reads them from the environment and the command line.
///
/// | field | env | argument | default |
/// | --- | --- | --- | --- |
/// | `database_url` | `DATABASE_URL` | `--database-url` | required |
/// | `redis_url` | `REDIS_URL` (or `CACHE_URL`) | `--redis-url` | required |
/// | `listen` | `LISTEN` | `--listen` | `127.0.0.1:3000` |
///
/// The durations are the cache policy ([`crate`] explains each one).
#[derive(Clone)]
#[non_exhaustive]
pub struct Config {
    /// PostgreSQL, `postgres://user[:password]@host[:port]/db`.
    pub database_url: String,
    /// Redis, `redis://[user[:password]@]host[:port][/db]`: the shared
    /// L2 and the invalidation channel between instances.
    pub redis_url: String,
    /// The address the HTTP server binds.
    pub listen: SocketAddr,
    /// The first part of every cache key and tag in Redis.
    pub namespace: String,
    /// The Redis pub/sub channel that carries invalidations between
    /// instances.
    pub channel: String,
    /// How long a value lives in Redis (the hard TTL).
    pub ttl: Duration,
    /// After this long a value is stale: served at once, refreshed from
    /// PostgreSQL in the background.
    pub soft_ttl: Duration,
    /// When PostgreSQL or Redis fails, values up to this old are served
    /// instead of an error.
    pub fail_safe: Duration,
    /// How long a "no such product" is cached.
    pub negative_ttl: Duration,
    /// A query running longer is abandoned (the stale value is served if
    /// fail-safe has one, else an error).
    pub hard_timeout: Duration,
    /// The longest a copy lives in this process's memory (L1); the
    /// invalidation channel drops it earlier when another instance writes.
    pub l1_ttl: Duration,
    /// The memory L1's bound, in bytes.
    pub l1_max_bytes: u64,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("database_url", &redact(&self.database_url))
            .field("redis_url", &redact(&self.redis_url))
            .field("listen", &self.listen)
            .field("namespace", &self.namespace)
            .field("channel", &self.channel)
            .field("ttl", &self.ttl)
            .field("soft_ttl", &self.soft_ttl)
            .field("fail_safe", &self.fail_safe)
            .field("negative_ttl", &self.negative_ttl)
            .field("hard_timeout", &self.hard_timeout)
            .field("l1_ttl", &self.l1_ttl)
            .field("l1_max_bytes", &self.l1_max_bytes)
            .finish()
    }
}

/// The command-line arguments, each taking a value (`--name VALUE` or
/// `--name=VALUE`).
const ARGUMENTS: [&str; 3] = ["--database-url", "--redis-url", "--listen"];

impl Config {
    /// The defaults, with these servers.
    pub fn new(database_url: impl Into<String>, redis_url: impl Into<String>) -> Self {
        Config {
            database_url: database_url.into(),
            redis_url: redis_url.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            namespace: "shop".to_owned(),
            channel: "shop-invalidations".to_owned(),
            ttl: Duration::from_secs(600),
            soft_ttl: Duration::from_secs(30),
            fail_safe: Duration::from_secs(3600),
            negative_ttl: Duration::from_secs(10),
            hard_timeout: Duration::from_secs(5),
            l1_ttl: Duration::from_secs(60),
            l1_max_bytes: 64 * 1024 * 1024,
        }
    }

    /// Reads `DATABASE_URL`, `REDIS_URL` (or `CACHE_URL`) and `LISTEN`
    /// through `env`, then `args` (without the program name), which win.
    ///
    /// ```
    /// use cachette_example_service::Config;
    ///
    /// let env = |name: &str| (name == "DATABASE_URL").then(|| "postgres://app@db/shop".to_owned());
    /// let args = ["--redis-url", "redis://cache:6379", "--listen=0.0.0.0:8080"].map(String::from);
    /// let config = Config::from_env_and_args(env, args).unwrap();
    /// assert_eq!(config.redis_url, "redis://cache:6379");
    /// assert_eq!(config.listen.port(), 8080);
    /// ```
    ///
    /// An unknown argument, a missing value, an address that does not
    /// parse or a missing server URL is an error that says so.
    pub fn from_env_and_args(
        env: impl Fn(&str) -> Option<String>,
        args: impl IntoIterator<Item = String>,
    ) -> Result<Self, ConfigError> {
        let mut database_url = env("DATABASE_URL");
        let mut redis_url = env("REDIS_URL").or_else(|| env("CACHE_URL"));
        let mut listen = env("LISTEN");
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
                None => (arg, None),
            };
            let slot = match name.as_str() {
                "--database-url" => &mut database_url,
                "--redis-url" => &mut redis_url,
                "--listen" => &mut listen,
                _ => {
                    return Err(ConfigError(format!(
                        "unknown argument {name:?}; the arguments are {}",
                        ARGUMENTS.join(", ")
                    )));
                }
            };
            let value = inline.or_else(|| args.next());
            *slot = Some(value.ok_or_else(|| ConfigError(format!("{name} needs a value")))?);
        }
        let database_url = database_url.ok_or_else(|| {
            ConfigError("no PostgreSQL URL: set DATABASE_URL or pass --database-url".to_owned())
        })?;
        let redis_url = redis_url.ok_or_else(|| {
            ConfigError("no Redis URL: set REDIS_URL (or CACHE_URL) or pass --redis-url".to_owned())
        })?;
        let mut config = Config::new(database_url, redis_url);
        if let Some(listen) = listen {
            config.listen = listen.parse().map_err(|err| {
                ConfigError(format!(
                    "the listen address {listen:?} is not IP:PORT ({err})"
                ))
            })?;
        }
        Ok(config)
    }
}

/// A configuration that cannot be used; the message says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(env: &[(&str, &str)], args: &[&str]) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_env_and_args(
            move |name| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()),
            args.iter().map(|a| (*a).to_owned()),
        )
    }

    #[test]
    fn arguments_win_over_the_environment() {
        let config = parse(
            &[
                ("DATABASE_URL", "postgres://env/db"),
                ("CACHE_URL", "redis://env"),
            ],
            &["--database-url", "postgres://arg/db", "--listen=[::1]:9000"],
        )
        .unwrap();
        assert_eq!(config.database_url, "postgres://arg/db");
        assert_eq!(
            config.redis_url, "redis://env",
            "CACHE_URL stands for REDIS_URL"
        );
        assert_eq!(config.listen, "[::1]:9000".parse().unwrap());
    }

    #[test]
    fn mistakes_are_errors_that_name_the_problem() {
        let servers = [
            ("DATABASE_URL", "postgres://db"),
            ("REDIS_URL", "redis://r"),
        ];
        let message = |env: &[(&str, &str)], args: &[&str]| parse(env, args).unwrap_err().0;
        assert!(
            message(&servers, &["--port", "1"])
                .contains("unknown argument \"--port\"; the arguments are --database-url")
        );
        assert_eq!(message(&servers, &["--listen"]), "--listen needs a value");
        assert!(
            message(&servers, &["--listen", "localhost"]).contains("\"localhost\" is not IP:PORT")
        );
        assert!(message(&servers[1..], &[]).contains("DATABASE_URL"));
        assert!(message(&servers[..1], &[]).contains("REDIS_URL"));
    }

    #[test]
    fn debug_hides_passwords() {
        let config = Config::new("postgres://app:hunter2@db/shop", "redis://:s3cret@cache");
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("s3cret"),
            "{debug}"
        );
    }
}
