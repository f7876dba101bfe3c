//! [`CacheManagerConfig`]: named cache URLs from TOML, the environment or
//! code.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};

use super::url::{open, redact, redact_text};
use super::{CacheManager, MANAGER, resolve_default};

/// The environment variable that names the default cache.
const ENV_DEFAULT: &str = "CACHETTE_DEFAULT";
/// The prefix of `CACHETTE_CACHES__<NAME>__<SETTING>`.
const ENV_CACHES: &str = "CACHETTE_CACHES__";
/// The separator between levels of an environment variable's name.
const ENV_SEPARATOR: &str = "__";

/// The configuration of a [`CacheManager`]: a URL per cache name and the
/// name of the default cache.
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
/// Unknown keys are errors. `Debug` output shows URLs with their passwords
/// replaced by `***`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
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

/// The configuration of one named cache.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CacheConfig {
    /// The URL the cache is opened from with [`open`](crate::open).
    pub url: String,
}

impl CacheConfig {
    /// A cache opened from `url`.
    pub fn new(url: impl Into<String>) -> Self {
        CacheConfig { url: url.into() }
    }
}

impl fmt::Debug for CacheConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheConfig")
            .field("url", &redact(&self.url))
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
        let config: CacheManagerConfig = toml::from_str(toml).map_err(|err| {
            let position = match err.span() {
                Some(span) => {
                    let (line, column) = line_and_column(toml, span.start);
                    format!(" at line {line}, column {column}")
                }
                None => String::new(),
            };
            // The message may quote a value from the file, such as a URL
            // with a password; the file's own lines are never echoed.
            Error::config(
                MANAGER,
                format!(
                    "cannot parse {origin}{position}: {}",
                    redact_text(err.message().trim_end())
                ),
            )
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
    /// - `CACHETTE_CACHES__<NAME>__URL=<url>` sets the URL of cache `<name>`
    ///   (lower-cased), adding the cache if it is not configured yet.
    ///   `__` separates the levels, so a name may contain single `_`.
    /// - `CACHETTE_DEFAULT=<name>` names the default cache.
    ///
    /// Variable names are matched without regard to case. An empty value is
    /// ignored, as if the variable were unset. Other `CACHETTE_*` variables
    /// (the CLI's, say) are ignored.
    ///
    /// # Errors
    ///
    /// An [`ErrorKind::Config`](crate::ErrorKind::Config) error naming the
    /// variable, for a name under `CACHETTE_CACHES__` that does not have the
    /// form above. Values are never echoed.
    ///
    /// ```
    /// use cachette::manager::CacheManagerConfig;
    ///
    /// let config = CacheManagerConfig::from_toml_str("[caches.main]\nurl = \"memory://\"")?
    ///     .apply_env_vars([
    ///         ("CACHETTE_CACHES__MAIN__URL", "memory://?max_entries=100"),
    ///         ("CACHETTE_CACHES__USER_SESSIONS__URL", "memory://?policy=lru"),
    ///         ("CACHETTE_DEFAULT", "main"),
    ///     ])?;
    /// assert_eq!(config.caches["main"].url, "memory://?max_entries=100");
    /// assert_eq!(config.caches["user_sessions"].url, "memory://?policy=lru");
    /// assert_eq!(config.default.as_deref(), Some("main"));
    /// # Ok::<(), cachette::Error>(())
    /// ```
    pub fn apply_env_vars<I, K, V>(mut self, vars: I) -> Result<Self>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: Into<String>,
    {
        for (key, value) in vars {
            let key = key.as_ref();
            let upper = key.to_ascii_uppercase();
            let value: String = value.into();
            if upper == ENV_DEFAULT {
                if !value.is_empty() {
                    self.default = Some(value);
                }
                continue;
            }
            let Some(rest) = upper.strip_prefix(ENV_CACHES) else {
                continue;
            };
            let parts: Vec<&str> = rest.split(ENV_SEPARATOR).collect();
            let [name, setting] = parts[..] else {
                return Err(Error::config(
                    MANAGER,
                    format!(
                        "environment variable `{key}`: expected `{ENV_CACHES}<NAME>{ENV_SEPARATOR}URL` \
                         (`{ENV_SEPARATOR}` separates levels, so a name cannot contain it)"
                    ),
                ));
            };
            if name.is_empty() {
                return Err(Error::config(
                    MANAGER,
                    format!("environment variable `{key}`: the cache name is empty"),
                ));
            }
            if setting != "URL" {
                return Err(Error::config(
                    MANAGER,
                    format!(
                        "environment variable `{key}`: unknown setting `{setting}`; expected URL"
                    ),
                ));
            }
            if value.is_empty() {
                continue;
            }
            self.caches
                .entry(name.to_ascii_lowercase())
                .and_modify(|cache| cache.url.clone_from(&value))
                .or_insert_with(|| CacheConfig::new(value));
        }
        Ok(self)
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

    /// Opens every cache with [`open`](crate::open), concurrently, and
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
            match open(&cache.url).await {
                Ok(backend) => Ok((name, backend)),
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
