//! Named backends built from configuration.
//!
//! [`CacheManager`] holds named backends and a default one. It is built
//! from a [`CacheManagerConfig`] (a TOML file, overridden by `CACHETTE_*`
//! environment variables), which opens every cache up front with
//! [`open`](crate::open), or from backends in code with
//! [`CacheManager::builder`].
//!
//! The TOML form:
//!
//! ```toml
//! default = "main"          # optional
//!
//! [caches.main]
//! url = "memory://?max_entries=10000"
//!
//! [caches.sessions]
//! url = "memory://?policy=lru&default_ttl=30m"
//!
//! [caches.pages]            # a tiered cache (feature `tiered`): no `url`
//! l1 = "memory://?max_entries=10000"
//! l2 = "redis://127.0.0.1:6379/0?prefix=pages:"
//! ```
//!
//! A cache may also carry the layers around its backend and the options of
//! its typed [`Cache`](crate::Cache) ([`CacheManager::cache`]):
//!
//! ```toml
//! [caches.users]
//! url = "redis://127.0.0.1:6379/0"
//! [caches.users.layers]     # tracing → metrics → circuit_breaker → retry → timeout → prefix → backend
//! timeout = { all = "250ms" }
//! retry = { max_attempts = 3, initial_backoff = "10ms" }
//! metrics = {}
//! [caches.users.cache]
//! namespace = "users"
//! ttl = "10m"
//! soft_ttl = "1m"
//! ```
//!
//! See [`CacheConfig`] for every key of a cache, the order of the layers
//! and a complete example. The environment:
//! `CACHETTE_CACHES__<NAME>__<KEY>=<value>` sets or adds a key of cache
//! `<name>` (`..__LAYERS__RETRY__MAX_ATTEMPTS=5`, `..__CACHE__TTL=5m` at
//! the lower levels), `CACHETTE_DEFAULT=<name>` names the default. Names from the
//! environment match configured names without regard to case (a new one is
//! added in lower case); see [`CacheManagerConfig::apply_env_vars`].
//!
//! When no default is named, the only cache is the default if there is
//! exactly one, else the cache named `default` if there is one, else there
//! is none and [`CacheManager::default_cache`] is an error.

mod config;
mod layers;
mod schema;
#[cfg(feature = "tiered")]
mod tiered;

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::backend::Backend;
use crate::cache::{Cache, CacheOptions, Codec};
use crate::error::{Error, Result};
use crate::params::did_you_mean;

pub use config::{CacheConfig, CacheManagerConfig};
pub use layers::{
    CircuitBreakerConfig, LayersConfig, MetricsConfig, RetryConfig, TimeoutConfig, TracingConfig,
};

/// The name in errors raised by the manager.
const MANAGER: &str = "manager";

/// Named backends and a default one.
///
/// Build it from configuration ([`from_toml_str`](Self::from_toml_str),
/// [`from_file`](Self::from_file),
/// [`from_env_and_file`](Self::from_env_and_file), then
/// [`CacheManagerConfig::build`], which opens every cache), or from backends
/// in code with [`builder`](Self::builder). Every cache is open once the
/// manager exists, so [`get`](Self::get) never does I/O.
///
/// ```
/// use cachette::{Backend, CacheManager, SetOptions};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> cachette::Result<()> {
/// let manager = CacheManager::builder()
///     .add("main", cachette::open("memory://?max_entries=1000").await?)
///     .add("sessions", cachette::open("memory://?default_ttl=30m").await?)
///     .default("main")
///     .build()?;
///
/// manager.get("sessions")?.set("s:1", "ada".into(), &SetOptions::new()).await?;
/// assert_eq!(manager.default_cache()?.get("s:1").await?, None);
///
/// let err = manager.get("sesions").unwrap_err();
/// assert!(err.message().contains("known: main, sessions"));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct CacheManager {
    caches: BTreeMap<String, Entry>,
    default: Option<String>,
    /// The typed caches [`cache`](CacheManager::cache) built, by name and
    /// codec: each a `Cache<C>`.
    typed: Mutex<HashMap<(String, TypeId), Box<dyn Any + Send + Sync>>>,
}

/// A cache of the manager: its backend, in its layers, and the options of
/// its typed [`Cache`].
#[derive(Debug)]
struct Entry {
    backend: Arc<dyn Backend>,
    options: CacheOptions,
}

impl Entry {
    /// A backend made in code: no options.
    fn new(backend: Arc<dyn Backend>) -> Self {
        Entry {
            backend,
            options: CacheOptions::default(),
        }
    }
}

impl CacheManager {
    /// A builder for a manager of backends made in code.
    pub fn builder() -> CacheManagerBuilder {
        CacheManagerBuilder {
            caches: Vec::new(),
            default: None,
        }
    }

    /// Parses a TOML configuration; see [`CacheManagerConfig`] for the form
    /// and [`CacheManagerConfig::from_toml_str`] for the errors. Call
    /// [`with_env`](CacheManagerConfig::with_env) on the result to apply the
    /// environment, and [`build`](CacheManagerConfig::build) to open the
    /// caches.
    ///
    /// ```
    /// use cachette::{Backend, CacheManager, KeyTtl, SetOptions};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> cachette::Result<()> {
    /// let manager = CacheManager::from_toml_str(
    ///     r#"
    ///     default = "main"
    ///
    ///     [caches.main]
    ///     url = "memory://?max_entries=10000"
    ///
    ///     [caches.sessions]
    ///     url = "memory://?policy=lru&default_ttl=30m"
    ///     "#,
    /// )?
    /// .build()
    /// .await?;
    ///
    /// assert_eq!(manager.names(), ["main", "sessions"]);
    /// assert_eq!(manager.default_name(), Some("main"));
    ///
    /// let sessions = manager.get("sessions")?;
    /// sessions.set("session:42", "ada".into(), &SetOptions::new()).await?;
    /// assert!(matches!(sessions.ttl("session:42").await?, KeyTtl::ExpiresIn(_)));
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_toml_str(toml: &str) -> Result<CacheManagerConfig> {
        CacheManagerConfig::from_toml_str(toml)
    }

    /// Reads a TOML configuration file; see [`CacheManagerConfig::from_file`].
    pub fn from_file(path: impl AsRef<Path>) -> Result<CacheManagerConfig> {
        CacheManagerConfig::from_file(path)
    }

    /// Reads a TOML configuration file and applies the environment over it;
    /// see [`CacheManagerConfig::from_env_and_file`].
    pub fn from_env_and_file(path: impl AsRef<Path>) -> Result<CacheManagerConfig> {
        CacheManagerConfig::from_env_and_file(path)
    }

    /// Checks names and the default, then holds the backends.
    fn assemble(caches: Vec<(String, Entry)>, default: Option<String>) -> Result<Self> {
        let mut by_name = BTreeMap::new();
        for (name, backend) in caches {
            if name.is_empty() {
                return Err(Error::config(MANAGER, "a cache name is empty"));
            }
            if by_name.contains_key(&name) {
                return Err(Error::config(
                    MANAGER,
                    format!("the cache `{name}` is added twice"),
                ));
            }
            by_name.insert(name, backend);
        }
        let names: Vec<&str> = by_name.keys().map(String::as_str).collect();
        let default = resolve_default(default.as_deref(), &names)?.map(str::to_owned);
        Ok(CacheManager {
            caches: by_name,
            default,
            typed: Mutex::new(HashMap::new()),
        })
    }

    /// The cache named `name`: its backend, in the layers of its
    /// configuration ([`LayersConfig`]), if any. [`cache`](Self::cache)
    /// gives the typed cache over it.
    ///
    /// # Errors
    ///
    /// An [`ErrorKind::Config`](crate::ErrorKind::Config) error naming the
    /// known caches when there is no cache by that name.
    pub fn get(&self, name: &str) -> Result<Arc<dyn Backend>> {
        self.entry(name).map(|entry| Arc::clone(&entry.backend))
    }

    /// The typed [`Cache`] over the cache named `name`, with the options of
    /// its configuration (see [`CacheOptions`]; none for a backend added
    /// in code) and the codec `C`. The first call for a name and codec
    /// builds it (reading its key version from the backend); later calls
    /// return clones of it, which share its loads in flight, fail-safe
    /// values and counters.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cachette::{CacheManager, DefaultCodec, KeyTtl};
    /// use cachette::cache::EntryOptions;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> cachette::Result<()> {
    /// let manager = CacheManager::from_toml_str(r#"
    ///     [caches.users]
    ///     url = "memory://"
    ///     cache = { namespace = "users", ttl = "10m" }
    /// "#)?
    /// .build()
    /// .await?;
    ///
    /// let users = manager.cache::<DefaultCodec>("users").await?;
    /// users.set("user:1", &"Ada", &EntryOptions::new()).await?;
    /// assert!(manager.get("users")?.exists("users:v0:user:1").await?);
    /// let KeyTtl::ExpiresIn(ttl) = users.ttl("user:1").await? else { panic!() };
    /// assert!(ttl > Duration::from_secs(590));
    ///
    /// // The configuration names no codec: any codec may be asked for.
    /// # #[cfg(feature = "json")]
    /// manager.cache::<cachette::cache::Json>("users").await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// An [`ErrorKind::Config`](crate::ErrorKind::Config) error when there
    /// is no cache by that name, or when its configuration names another
    /// codec than `C` (the message names both); the errors of
    /// [`CacheBuilder::build`](crate::CacheBuilder::build), with the
    /// cache's name in front.
    pub async fn cache<C: Codec + Default>(&self, name: &str) -> Result<Cache<C>> {
        let entry = self.entry(name)?;
        let key = (name.to_owned(), TypeId::of::<C>());
        let built = |typed: &Box<dyn Any + Send + Sync>| typed.downcast_ref::<Cache<C>>().cloned();
        if let Some(cache) = self.typed.lock().get(&key).and_then(built) {
            return Ok(cache);
        }
        let cache = async {
            entry
                .options
                .builder(Arc::clone(&entry.backend), C::default())?
                .build()
                .await
        }
        .await
        .map_err(|err| in_cache(name, err))?;
        // Two first calls may race: the first one stored wins, so that
        // every caller shares one cache.
        let mut typed = self.typed.lock();
        let kept = typed.entry(key).or_insert_with(|| Box::new(cache.clone()));
        Ok(built(kept).unwrap_or(cache))
    }

    /// The entry named `name`.
    fn entry(&self, name: &str) -> Result<&Entry> {
        match self.caches.get(name) {
            Some(entry) => Ok(entry),
            None => Err(Error::config(
                MANAGER,
                format!(
                    "no cache named `{name}`; {}{}",
                    self.known(),
                    did_you_mean(name, self.caches.keys().map(String::as_str))
                ),
            )),
        }
    }

    /// The default cache (see [`default_name`](Self::default_name)).
    ///
    /// # Errors
    ///
    /// An [`ErrorKind::Config`](crate::ErrorKind::Config) error when there
    /// is no default cache.
    pub fn default_cache(&self) -> Result<Arc<dyn Backend>> {
        match &self.default {
            Some(name) => self.get(name),
            None => Err(Error::config(
                MANAGER,
                format!(
                    "there is no default cache: name one with `default = \"...\"` in the \
                     configuration, CACHETTE_DEFAULT or the builder's `default`; {}",
                    self.known()
                ),
            )),
        }
    }

    /// The name of the default cache: the one named in the configuration or
    /// builder; else the only cache, if there is exactly one; else the cache
    /// named `default`, if any; else none.
    pub fn default_name(&self) -> Option<&str> {
        self.default.as_deref()
    }

    /// The names of the caches, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.caches.keys().map(String::as_str).collect()
    }

    /// Closes every cache (see [`Backend::close`]).
    ///
    /// # Errors
    ///
    /// The first error, with the cache's name in front of its message,
    /// after trying to close every cache.
    pub async fn close(&self) -> Result<()> {
        let mut first_error = None;
        for (name, entry) in &self.caches {
            if let Err(err) = entry.backend.close().await {
                tracing::warn!(cache = %name, error = %err, "closing a cache failed");
                first_error.get_or_insert_with(|| in_cache(name, err));
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// "known: a, b" or "no caches are configured", for error messages.
    fn known(&self) -> String {
        if self.caches.is_empty() {
            "no caches are configured".to_owned()
        } else {
            format!("known: {}", self.names().join(", "))
        }
    }
}

/// Builds a [`CacheManager`] from backends made in code; see
/// [`CacheManager::builder`].
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct CacheManagerBuilder {
    caches: Vec<(String, Entry)>,
    default: Option<String>,
}

impl CacheManagerBuilder {
    /// Adds a cache under `name`.
    pub fn add(mut self, name: impl Into<String>, backend: Arc<dyn Backend>) -> Self {
        self.caches.push((name.into(), Entry::new(backend)));
        self
    }

    /// Names the default cache. Without it the rules of
    /// [`CacheManager::default_name`] apply.
    pub fn default(mut self, name: impl Into<String>) -> Self {
        self.default = Some(name.into());
        self
    }

    /// Checks the names and builds the manager.
    ///
    /// # Errors
    ///
    /// An [`ErrorKind::Config`](crate::ErrorKind::Config) error for an empty
    /// name, a name added twice, or a default that names no added cache.
    pub fn build(self) -> Result<CacheManager> {
        CacheManager::assemble(self.caches, self.default)
    }
}

/// The default cache's name: `explicit` if given (and then it must be one
/// of `names`), else the only name, else `default` if present, else none.
fn resolve_default<'a>(explicit: Option<&'a str>, names: &[&'a str]) -> Result<Option<&'a str>> {
    match explicit {
        Some(name) if names.contains(&name) => Ok(Some(name)),
        Some(name) => {
            let known = if names.is_empty() {
                "no caches are configured".to_owned()
            } else {
                format!("known: {}", names.join(", "))
            };
            Err(Error::config(
                MANAGER,
                format!(
                    "the default cache `{name}` is not configured; {known}{}",
                    did_you_mean(name, names.iter().copied())
                ),
            ))
        }
        None if names.len() == 1 => Ok(names.first().copied()),
        None => Ok(names.iter().copied().find(|name| *name == "default")),
    }
}

/// Puts the name of a cache in front of an error about it, keeping its kind,
/// backend and source.
fn in_cache(name: &str, err: Error) -> Error {
    err.context(format_args!("cache `{name}`"))
}
