//! [`CacheManagerConfig`]: named caches from TOML, the environment or
//! code.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::cache::CacheOptions;
use crate::cache::config::duration;
use crate::error::{Error, Result};
use crate::params::{redact, redact_text};
use crate::registry::open;

use super::layers::LayersConfig;
use super::schema::{EnvSetting, env_setting, first_unknown_key, set_path, setting_at};
use super::{CacheManager, Entry, MANAGER, resolve_default};

/// The environment variable that names the default cache.
const ENV_DEFAULT: &str = "CACHETTE_DEFAULT";
/// The prefix of `CACHETTE_CACHES__<NAME>__<SETTING>`.
const ENV_CACHES: &str = "CACHETTE_CACHES__";
/// The separator between levels of an environment variable's name.
const ENV_SEPARATOR: &str = "__";

/// The configuration of a [`CacheManager`]: each cache by name (a URL, or
/// the layers of a tiered cache) and the name of the default cache.
///
/// Read it from TOML ([`from_toml_str`](Self::from_toml_str),
/// [`from_file`](Self::from_file)), apply the environment
/// ([`with_env`](Self::with_env)), then open every cache with
/// [`build`](Self::build). The TOML form:
///
/// ```toml
/// default = "main"          # optional, see `default_name`
///
/// [caches.main]
/// url = "memory://?max_entries=10000"
///
/// [caches.sessions]
/// url = "memory://?policy=lru&default_ttl=30m"
/// ```
///
/// See [`CacheConfig`] for the keys of a cache: tiered caches, the
/// `layers` table and the typed cache's `cache` table, with a complete
/// example. Unknown keys, at every level, are errors that name the key and
/// the valid ones; a value of the wrong form is an error that names the
/// setting (`caches.users.cache.ttl`). `Debug` output shows URLs with their
/// passwords replaced by `***`.
#[derive(Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CacheManagerConfig {
    /// The name of the default cache, if given; see
    /// [`default_name`](Self::default_name) for the rules when it is not.
    #[serde(default)]
    pub default: Option<String>,
    /// The caches, by name.
    #[serde(default)]
    pub caches: BTreeMap<String, CacheConfig>,
}

/// The configuration of one named cache: either a `url`, or the layers of
/// a tiered cache (feature `tiered`, see
/// [`backends::tiered`](crate::backends)); and optionally the layers
/// around it and the options of its typed [`Cache`](crate::Cache).
///
/// ```toml
/// [caches.users]
/// url = "redis://127.0.0.1:6379/0"
///
/// [caches.users.layers]         # see LayersConfig; applied in a fixed order,
/// prefix = "app:"               # whatever the order here
/// timeout = { all = "250ms", scans = "5s" }
/// retry = { max_attempts = 3, initial_backoff = "10ms", max_backoff = "1s" }
/// circuit_breaker = { failure_threshold = 5, open_duration = "5s" }
/// metrics = {}                  # feature `metrics`; label cache = "users"
/// tracing = { record_keys = false }
///
/// [caches.users.cache]          # see CacheOptions: CacheManager::cache::<C>("users")
/// namespace = "users"
/// ttl = "10m"
/// soft_ttl = "1m"
/// fail_safe = "1h"
/// negative_ttl = "30s"
/// jitter = "5s"
/// soft_timeout = "100ms"
/// hard_timeout = "2s"
/// codec = "postcard"            # or "json", "msgpack", "raw"
/// compress_above = "4KiB"       # feature `lz4`
/// ```
///
/// The layers wrap the backend from the caller down, as
/// [`LayerStack`](crate::layers::LayerStack) orders them:
///
/// ```text
/// tracing → metrics → circuit_breaker → retry → timeout → prefix → backend
/// ```
///
/// so that tracing and metrics see what the caller sees, the breaker
/// counts operations that failed after their retries, and each attempt has
/// its own deadline ([`LayersConfig`](super::LayersConfig) has the keys of
/// each layer, [the layers' docs](crate::layers) the reasons).
/// [`CacheManager::get`] gives the backend in its layers, and
/// [`CacheManager::cache`] the typed cache over it, with the options of
/// [`CacheOptions`] (checked when the manager is built).
///
/// Every setting has an environment form, the path of its keys in upper
/// case, joined by `__`: `CACHETTE_CACHES__USERS__LAYERS__RETRY__MAX_ATTEMPTS=5`,
/// `CACHETTE_CACHES__USERS__CACHE__TTL=5m`, and
/// `CACHETTE_CACHES__USERS__LAYERS__METRICS=true` (or `false`) turns a
/// layer on with its defaults (or off); see
/// [`CacheManagerConfig::apply_env_vars`].
///
/// | key       | value |
/// |-----------|-------|
/// | `url`     | the URL the cache opens from with [`open`](crate::open) |
/// | `l1`      | tiered: the URL of the local layer, e.g. `memory://?max_entries=10000` |
/// | `l2`      | tiered: the URL of the shared layer, e.g. `redis://127.0.0.1:6379/0` |
/// | `l3`      | tiered, optional: a third layer under `l2`, e.g. `s3://bucket/cache` (the stack is `l1` over a tiered `l2` over `l3`) |
/// | `l1_ttl`  | tiered: the longest a copy lives in an upper layer (`l1`, and `l2` over `l3`), e.g. `10s` (default 30 s) |
/// | `channel` | tiered, feature `redis` or `postgres`: the invalidation channel's server, `redis://[user[:password]@]host[:port][/db]` (or `rediss://`, `redis+unix://`) for Redis pub/sub, `postgres://user[:password]@host[:port]/db` for `LISTEN`/`NOTIFY`, with optional parameters `name` (default `cachette:tiered:<cache name>`), `connect_timeout`, `response_timeout` and `ping_interval` (durations) |
/// | `layers`  | the layers around the backend: a table, see [`LayersConfig`](super::LayersConfig) |
/// | `cache`   | the options of the typed cache: a table, see [`CacheOptions`] |
///
/// ```
/// use cachette::{Backend, CacheManager, SetOptions};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> cachette::Result<()> {
/// # #[cfg(feature = "tiered")] {
/// let manager = CacheManager::from_toml_str(
///     r#"
///     [caches.pages]
///     l1 = "memory://?max_entries=10000"
///     l2 = "memory://"                  # in practice redis://..., file://...
///     l1_ttl = "10s"
///     "#,
/// )?
/// .build()
/// .await?;
/// let pages = manager.get("pages")?;
/// assert_eq!(pages.name(), "tiered");
/// pages.set("home", "<html>".into(), &SetOptions::new()).await?;
/// # }
/// # Ok(())
/// # }
/// ```
///
/// A cache with layers and typed options, from TOML alone:
///
/// ```
/// use std::time::Duration;
/// use cachette::{Backend, CacheManager, DefaultCodec, KeyTtl};
/// use cachette::cache::EntryOptions;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> cachette::Result<()> {
/// let manager = CacheManager::from_toml_str(
///     r#"
///     [caches.users]
///     url = "memory://"
///
///     [caches.users.layers]
///     timeout = { all = "250ms" }
///     retry = { max_attempts = 3 }
///     circuit_breaker = { failure_threshold = 5 }
///     tracing = {}
///
///     [caches.users.cache]
///     namespace = "users"
///     ttl = "10m"
///     soft_ttl = "1m"
///     negative_ttl = "30s"
///     "#,
/// )?
/// .apply_env_vars([("CACHETTE_CACHES__USERS__CACHE__TTL", "5m")])?
/// .build()
/// .await?;
///
/// let users = manager.cache::<DefaultCodec>("users").await?;
/// users.set("user:1", &"Ada", &EntryOptions::new()).await?;
/// let KeyTtl::ExpiresIn(ttl) = users.ttl("user:1").await? else { panic!() };
/// assert!(ttl <= Duration::from_secs(300)); // the environment won
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CacheConfig {
    /// The URL the cache is opened from with [`open`](crate::open); empty
    /// for a tiered cache.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// The URL of a tiered cache's L1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l1: Option<String>,
    /// The URL of a tiered cache's L2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l2: Option<String>,
    /// The URL of a third layer, under L2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l3: Option<String>,
    /// The longest a tiered cache's L1 copy lives.
    #[serde(default, with = "duration", skip_serializing_if = "Option::is_none")]
    pub l1_ttl: Option<Duration>,
    /// The URL of a tiered cache's invalidation channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The layers around the backend: the `layers` table.
    #[serde(default, skip_serializing_if = "LayersConfig::is_empty")]
    pub layers: LayersConfig,
    /// The options of the typed [`Cache`](crate::Cache) that
    /// [`CacheManager::cache`] builds: the `cache` table.
    #[serde(default, skip_serializing_if = "CacheOptions::is_default")]
    pub cache: CacheOptions,
}

impl CacheConfig {
    /// A cache opened from `url`.
    pub fn new(url: impl Into<String>) -> Self {
        CacheConfig {
            url: url.into(),
            ..CacheConfig::default()
        }
    }

    /// A tiered cache over the backends at these two URLs (feature
    /// `tiered`); set [`l1_ttl`](Self::l1_ttl) and
    /// [`channel`](Self::channel) on the result if needed.
    pub fn tiered(l1: impl Into<String>, l2: impl Into<String>) -> Self {
        CacheConfig {
            l1: Some(l1.into()),
            l2: Some(l2.into()),
            ..CacheConfig::default()
        }
    }

    /// Sets `setting` (from an environment variable) to `text` through the
    /// TOML form: one piece of code for every level.
    fn set(&mut self, setting: &EnvSetting, text: &str) -> Result<()> {
        // Never echoed: values are not shown.
        let value = setting
            .value(text)
            .map_err(|message| Error::config(MANAGER, message))?;
        let invalid = |err: &dyn fmt::Display| {
            Error::config(
                MANAGER,
                format!("the setting does not take this value: {err}"),
            )
        };
        let mut table = toml::Table::try_from(&*self).map_err(|err| invalid(&err))?;
        set_path(&mut table, &setting.path, value);
        *self = toml::Value::Table(table)
            .try_into()
            .map_err(|err: toml::de::Error| invalid(&err.message()))?;
        Ok(())
    }

    /// Whether any key of a tiered cache is set.
    fn is_tiered(&self) -> bool {
        self.l1.is_some()
            || self.l2.is_some()
            || self.l3.is_some()
            || self.l1_ttl.is_some()
            || self.channel.is_some()
    }

    /// Opens the cache named `name`, puts it in its layers and checks its
    /// typed options.
    async fn open(self, name: &str) -> Result<Entry> {
        let backend = self.layers.wrap(name, self.open_backend(name).await?)?;
        self.cache.check(Arc::clone(&backend))?;
        Ok(Entry {
            backend,
            options: self.cache,
        })
    }

    /// Opens the backend of the cache named `name`.
    async fn open_backend(&self, name: &str) -> Result<Arc<dyn Backend>> {
        if !self.is_tiered() {
            if self.url.is_empty() {
                return Err(Error::config(
                    MANAGER,
                    "no `url` is given (or `l1` and `l2` for a tiered cache)",
                ));
            }
            return open(&self.url).await;
        }
        if !self.url.is_empty() {
            return Err(Error::config(
                MANAGER,
                "give either `url` or the keys of a tiered cache (`l1`, `l2`, `l3`, `l1_ttl`, `channel`), not both",
            ));
        }
        let (Some(l1), Some(l2)) = (&self.l1, &self.l2) else {
            return Err(Error::config(
                MANAGER,
                "a tiered cache needs both `l1` and `l2`",
            ));
        };
        #[cfg(feature = "tiered")]
        return super::tiered::open(name, l1, l2, self).await;
        #[cfg(not(feature = "tiered"))]
        {
            let _ = (name, l1, l2);
            Err(Error::config(
                MANAGER,
                "the `tiered` backend is not compiled in; enable the cargo feature `tiered`",
            ))
        }
    }
}

impl fmt::Debug for CacheConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |url: &Option<String>| url.as_deref().map(redact);
        f.debug_struct("CacheConfig")
            .field("url", &redact(&self.url))
            .field("l1", &shown(&self.l1))
            .field("l2", &shown(&self.l2))
            .field("l3", &shown(&self.l3))
            .field("l1_ttl", &self.l1_ttl)
            .field("channel", &shown(&self.channel))
            .field("layers", &self.layers)
            .field("cache", &self.cache)
            .finish()
    }
}

impl fmt::Debug for CacheManagerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheManagerConfig")
            .field("default", &self.default)
            .field("caches", &self.caches)
            .finish()
    }
}

impl CacheManagerConfig {
    /// An empty configuration: no caches, no default.
    pub fn new() -> Self {
        CacheManagerConfig::default()
    }

    /// Parses the TOML form (see the type's docs).
    ///
    /// # Errors
    ///
    /// An [`ErrorKind::Config`](crate::ErrorKind::Config) error with the
    /// line, the column and the TOML problem (a syntax error, an unknown
    /// key, a value of the wrong type, an empty cache name).
    pub fn from_toml_str(toml: &str) -> Result<Self> {
        Self::parse(toml, "the cache configuration")
    }

    /// Reads and parses a TOML file (see the type's docs).
    ///
    /// # Errors
    ///
    /// An [`ErrorKind::Config`](crate::ErrorKind::Config) error that names
    /// the file: it cannot be read, or it is not a valid configuration
    /// (with the line, column and TOML problem).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let origin = format!("the cache configuration file `{}`", path.display());
        let text = std::fs::read_to_string(path).map_err(|err| {
            Error::config(MANAGER, format!("cannot read {origin}")).with_source(err)
        })?;
        Self::parse(&text, &origin)
    }

    /// [`from_file`](Self::from_file), then [`with_env`](Self::with_env):
    /// the environment overrides the file.
    pub fn from_env_and_file(path: impl AsRef<Path>) -> Result<Self> {
        Self::from_file(path)?.with_env()
    }

    fn parse(toml: &str, origin: &str) -> Result<Self> {
        // The position and the message of a problem. The message may
        // quote a value from the file, such as a URL with a password; the
        // file's own lines are never echoed.
        let error = |start: Option<usize>, message: &str| {
            let position = start.map_or_else(String::new, |start| {
                let (line, column) = line_and_column(toml, start);
                format!(" at line {line}, column {column}")
            });
            Error::config(
                MANAGER,
                format!(
                    "cannot parse {origin}{position}: {}",
                    redact_text(message.trim_end())
                ),
            )
        };
        if let Some((start, message)) = first_unknown_key(toml) {
            return Err(error(Some(start), &message));
        }
        let config: CacheManagerConfig = toml::from_str(toml).map_err(|err| {
            let start = err.span().map(|span| span.start);
            match start.and_then(|start| setting_at(toml, start)) {
                Some(setting) => error(start, &format!("`{setting}`: {}", err.message())),
                None => error(start, err.message()),
            }
        })?;
        if config.caches.contains_key("") {
            return Err(Error::config(
                MANAGER,
                format!("{origin}: a cache name is empty"),
            ));
        }
        Ok(config)
    }

    /// Applies the process environment; see
    /// [`apply_env_vars`](Self::apply_env_vars) for the variables read.
    ///
    /// # Errors
    ///
    /// As `apply_env_vars`, and when one of its variables is not valid UTF-8.
    pub fn with_env(self) -> Result<Self> {
        let mut vars = Vec::new();
        for (key, value) in std::env::vars_os() {
            let Some(key) = key.to_str() else { continue };
            if !is_manager_variable(key) {
                continue;
            }
            let value = value.into_string().map_err(|_| {
                Error::config(
                    MANAGER,
                    format!("the environment variable `{key}` is not valid UTF-8"),
                )
            })?;
            vars.push((key.to_owned(), value));
        }
        self.apply_env_vars(vars)
    }

    /// Applies environment variables given as `(name, value)` pairs, in
    /// order; [`with_env`](Self::with_env) passes the process environment.
    ///
    /// - `CACHETTE_CACHES__<NAME>__URL=<url>` sets the URL of cache `<name>`,
    ///   adding the cache if it is not configured yet.
    ///   `__` separates the levels, so a name may contain single `_`.
    ///   Every other key of [`CacheConfig`] is set the same way, by the path
    ///   of its keys: `..__L1`, `..__L1_TTL`,
    ///   `..__LAYERS__RETRY__MAX_ATTEMPTS`, `..__LAYERS__PREFIX`,
    ///   `..__CACHE__TTL`, `..__CACHE__DISTRIBUTED_LOCK__WAIT`. A layer's own
    ///   path takes `true` (add it, keeping any options it has) or `false`
    ///   (remove it): `..__LAYERS__METRICS=true`. The value has the form of
    ///   the TOML value, without quotes: `5`, `250ms`, `true`, `4KiB`.
    /// - `CACHETTE_DEFAULT=<name>` names the default cache.
    ///
    /// Variable names are matched without regard to case, and so are the
    /// cache names in them (environment variables are usually upper case):
    /// `CACHETTE_CACHES__MAIN__URL` and `CACHETTE_DEFAULT=MAIN` both name a
    /// cache configured as `[caches.Main]` or `[caches.main]`. A name that
    /// matches no configured cache adds one named in lower case. Two
    /// configured names that differ only in case cannot be told apart from
    /// the environment: naming them is an error. Elsewhere (TOML, code,
    /// [`CacheManager::get`]) names are exact. An empty value is
    /// ignored, as if the variable were unset. Other `CACHETTE_*` variables
    /// (the CLI's, say) are ignored.
    ///
    /// # Errors
    ///
    /// An [`ErrorKind::Config`](crate::ErrorKind::Config) error naming the
    /// variable, for a name under `CACHETTE_CACHES__` that does not have the
    /// form above (an unknown setting is named with the valid ones at its
    /// level), or a value of the wrong form (the message says the form
    /// expected). Values are never echoed.
    ///
    /// ```
    /// use cachette::manager::CacheManagerConfig;
    ///
    /// let config = CacheManagerConfig::from_toml_str("[caches.main]\nurl = \"memory://\"")?
    ///     .apply_env_vars([
    ///         ("CACHETTE_CACHES__MAIN__URL", "memory://?max_entries=100"),
    ///         ("CACHETTE_CACHES__USER_SESSIONS__URL", "memory://?policy=lru"),
    ///         ("CACHETTE_DEFAULT", "main"),
    ///         ("CACHETTE_CACHES__MAIN__LAYERS__RETRY__MAX_ATTEMPTS", "5"),
    ///     ])?;
    /// assert_eq!(config.caches["main"].url, "memory://?max_entries=100");
    /// let retry = config.caches["main"].layers.retry.as_ref().unwrap();
    /// assert_eq!(retry.max_attempts, Some(5));
    /// assert_eq!(config.caches["user_sessions"].url, "memory://?policy=lru");
    /// assert_eq!(config.default.as_deref(), Some("main"));
    ///
    /// let err = config
    ///     .apply_env_vars([("CACHETTE_CACHES__MAIN__LAYERS__RETRY__ATTEMPTS", "5")])
    ///     .unwrap_err();
    /// assert!(err.message().contains("expected MAX_ATTEMPTS, INITIAL_BACKOFF, MAX_BACKOFF"));
    /// # Ok::<(), cachette::Error>(())
    /// ```
    pub fn apply_env_vars<I, K, V>(mut self, vars: I) -> Result<Self>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: Into<String>,
    {
        let mut default_from_env = false;
        for (key, value) in vars {
            let key = key.as_ref();
            let upper = key.to_ascii_uppercase();
            let value: String = value.into();
            if upper == ENV_DEFAULT {
                if !value.is_empty() {
                    self.default = Some(value);
                    default_from_env = true;
                }
                continue;
            }
            let Some(rest) = upper.strip_prefix(ENV_CACHES) else {
                continue;
            };
            // The name as written: upper-casing ASCII keeps byte offsets.
            let rest = &key[key.len() - rest.len()..];
            let parts: Vec<&str> = rest.split(ENV_SEPARATOR).collect();
            let [name, ref names @ ..] = parts[..] else {
                continue;
            };
            if names.is_empty() {
                return Err(Error::config(
                    MANAGER,
                    format!(
                        "environment variable `{key}`: expected `{ENV_CACHES}<NAME>{ENV_SEPARATOR}URL` \
                         or another setting (`{ENV_SEPARATOR}` separates levels, so a name cannot \
                         contain it)"
                    ),
                ));
            }
            if name.is_empty() {
                return Err(Error::config(
                    MANAGER,
                    format!("environment variable `{key}`: the cache name is empty"),
                ));
            }
            let in_variable =
                |err: Error| err.context(format_args!("environment variable `{key}`"));
            let setting = env_setting(names)
                .map_err(|message| in_variable(Error::config(MANAGER, message)))?;
            if value.is_empty() {
                continue;
            }
            let name = self.cache_named(name).map_err(in_variable)?;
            self.caches
                .entry(name)
                .or_default()
                .set(&setting, &value)
                .map_err(in_variable)?;
        }
        if let Some(default) = self.default.take_if(|_| default_from_env) {
            self.default = Some(self.cache_named(&default)?);
        }
        Ok(self)
    }

    /// The configured cache that `name` (from the environment) stands for:
    /// the one whose name equals it without regard to ASCII case, else
    /// `name` in lower case, the name of a cache not configured yet.
    /// Two configured names that differ only in case are an error.
    fn cache_named(&self, name: &str) -> Result<String> {
        let matching: Vec<&String> = self
            .caches
            .keys()
            .filter(|known| known.eq_ignore_ascii_case(name))
            .collect();
        match matching[..] {
            [] => Ok(name.to_ascii_lowercase()),
            [known] => Ok(known.clone()),
            _ => Err(Error::config(
                MANAGER,
                format!(
                    "`{name}` matches the caches {}, which differ only in case; \
                     the environment cannot tell them apart, rename one",
                    matching
                        .iter()
                        .map(|known| format!("`{known}`"))
                        .collect::<Vec<_>>()
                        .join(" and ")
                ),
            )),
        }
    }

    /// The name of the default cache: `default` if given; otherwise the only
    /// cache, if there is exactly one; otherwise the cache named `default`,
    /// if there is one; otherwise none.
    ///
    /// # Errors
    ///
    /// An [`ErrorKind::Config`](crate::ErrorKind::Config) error when
    /// `default` names a cache that is not configured.
    pub fn default_name(&self) -> Result<Option<&str>> {
        let names: Vec<&str> = self.caches.keys().map(String::as_str).collect();
        resolve_default(self.default.as_deref(), &names)
    }

    /// Opens every cache with [`open`](crate::open) (a tiered cache: each
    /// of its layers, then the tiered backend over them), concurrently, and
    /// returns the manager.
    ///
    /// Caches are opened here rather than on first use, so that a wrong URL
    /// or an unreachable server fails at startup, not on some later request.
    ///
    /// # Errors
    ///
    /// The first error of [`open`](crate::open), with the cache's name in
    /// front of its message, or the error of
    /// [`default_name`](Self::default_name).
    pub async fn build(self) -> Result<CacheManager> {
        self.default_name()?;
        let opening = self.caches.into_iter().map(|(name, cache)| async move {
            match cache.open(&name).await {
                Ok(entry) => Ok((name, entry)),
                Err(err) => Err(super::in_cache(&name, err)),
            }
        });
        let caches = futures_util::future::try_join_all(opening).await?;
        CacheManager::assemble(caches, self.default)
    }
}

/// Whether [`CacheManagerConfig::apply_env_vars`] reads this variable.
fn is_manager_variable(key: &str) -> bool {
    let upper = key.to_ascii_uppercase();
    upper == ENV_DEFAULT || upper.starts_with(ENV_CACHES)
}

/// The 1-based line and column (in characters) of a byte offset.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}
