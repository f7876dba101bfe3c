//! [`CacheOptions`]: the options of a [`Cache`] as data, read from the
//! `[caches.<name>.cache]` table of a
//! [`CacheManagerConfig`](crate::manager::CacheManagerConfig) or its
//! environment; and [`Cache::from_url`].

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::error::{Error, Result};

use super::codec::NAME;
use super::{Cache, CacheBuilder, Codec, DefaultCodec};

impl Cache<DefaultCodec> {
    /// A cache with every default option (see the [module docs](super))
    /// over the backend at `url`, opened with [`open`](crate::open).
    ///
    /// ```
    /// use cachette::Cache;
    /// use cachette::cache::EntryOptions;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> cachette::Result<()> {
    /// let cache = Cache::from_url("memory://?max_entries=10000").await?;
    /// cache.set("answer", &42u32, &EntryOptions::new()).await?;
    /// assert_eq!(cache.get::<u32>("answer").await?, Some(42));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// The errors of [`open`](crate::open) and of
    /// [`CacheBuilder::build`].
    pub async fn from_url(url: &str) -> Result<Self> {
        Cache::builder(crate::registry::open(url).await?)
            .build()
            .await
    }
}

/// The options of a [`Cache`] as data: each field is the
/// [`CacheBuilder`] setter of the same name (`ttl` is
/// [`default_ttl`](CacheBuilder::default_ttl)), and an absent field keeps
/// the builder's default. A [`CacheManager`](crate::CacheManager) reads
/// them from the `[caches.<name>.cache]` table of its configuration and
/// [`CacheManager::cache`](crate::CacheManager::cache) applies them; the
/// [manager's docs](crate::manager) show the TOML.
///
/// | key | value | builder setter |
/// | --- | --- | --- |
/// | `namespace` | text, e.g. `"users"` | [`namespace`](CacheBuilder::namespace) |
/// | `ttl` | duration, e.g. `"10m"` | [`default_ttl`](CacheBuilder::default_ttl) |
/// | `soft_ttl` | duration | [`soft_ttl`](CacheBuilder::soft_ttl) |
/// | `negative_ttl` | duration | [`negative_ttl`](CacheBuilder::negative_ttl) |
/// | `jitter` | duration | [`jitter`](CacheBuilder::jitter) |
/// | `fail_safe` | duration: the maximum age | [`fail_safe`](CacheBuilder::fail_safe) |
/// | `fail_safe_throttle` | duration | [`fail_safe_throttle`](CacheBuilder::fail_safe_throttle) |
/// | `fail_safe_recovery` | duration | [`fail_safe_recovery`](CacheBuilder::fail_safe_recovery) |
/// | `fail_safe_capacity` | whole number | [`fail_safe_capacity`](CacheBuilder::fail_safe_capacity) |
/// | `eager_refresh` | number between 0 and 1, e.g. `0.8` | [`eager_refresh`](CacheBuilder::eager_refresh) |
/// | `soft_timeout` | duration | [`soft_timeout`](CacheBuilder::soft_timeout) |
/// | `hard_timeout` | duration | [`hard_timeout`](CacheBuilder::hard_timeout) |
/// | `codec` | `"postcard"`, `"json"`, `"msgpack"` or `"raw"` | the codec the cache must be asked for (see [`builder`](Self::builder)) |
/// | `compress_above` | byte size, `4096` or `"4KiB"` (feature `lz4`) | `compress_above` |
/// | `max_decompressed_size` | byte size (feature `lz4`) | `max_decompressed_size` |
/// | `distributed_lock` | `{ lock_ttl = "5s", wait = "2s" }` | [`distributed_lock`](CacheBuilder::distributed_lock) |
///
/// Durations are in humantime form (`150ms`, `30s`, `1h 30m`). Two
/// builder options exist in code only: [`clock`](CacheBuilder::clock) (an
/// object, for tests on tokio's paused clock) and `key_hasher` (a test
/// hook of the `testing` feature).
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use cachette::{KeyTtl, MemoryBackend};
/// use cachette::cache::{CacheOptions, EntryOptions, Postcard};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> cachette::Result<()> {
/// let options: CacheOptions = toml::from_str(r#"
///     namespace = "users"
///     ttl = "10m"
///     soft_ttl = "1m"
/// "#).unwrap();
/// let cache = options
///     .builder(Arc::new(MemoryBackend::default()), Postcard)?
///     .build()
///     .await?;
/// cache.set("user:1", &"Ada", &EntryOptions::new()).await?;
/// assert_eq!(cache.namespace(), "users");
/// let KeyTtl::ExpiresIn(ttl) = cache.ttl("user:1").await? else { panic!() };
/// assert!(ttl > Duration::from_secs(590));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CacheOptions {
    /// [`CacheBuilder::namespace`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// [`CacheBuilder::default_ttl`].
    #[serde(default, with = "duration", skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Duration>,
    /// [`CacheBuilder::soft_ttl`].
    #[serde(default, with = "duration", skip_serializing_if = "Option::is_none")]
    pub soft_ttl: Option<Duration>,
    /// [`CacheBuilder::negative_ttl`].
    #[serde(default, with = "duration", skip_serializing_if = "Option::is_none")]
    pub negative_ttl: Option<Duration>,
    /// [`CacheBuilder::jitter`].
    #[serde(default, with = "duration", skip_serializing_if = "Option::is_none")]
    pub jitter: Option<Duration>,
    /// [`CacheBuilder::fail_safe`]: the maximum age of the values it serves.
    #[serde(default, with = "duration", skip_serializing_if = "Option::is_none")]
    pub fail_safe: Option<Duration>,
    /// [`CacheBuilder::fail_safe_throttle`].
    #[serde(default, with = "duration", skip_serializing_if = "Option::is_none")]
    pub fail_safe_throttle: Option<Duration>,
    /// [`CacheBuilder::fail_safe_recovery`].
    #[serde(default, with = "duration", skip_serializing_if = "Option::is_none")]
    pub fail_safe_recovery: Option<Duration>,
    /// [`CacheBuilder::fail_safe_capacity`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_safe_capacity: Option<usize>,
    /// [`CacheBuilder::eager_refresh`]: the fraction of an entry's fresh
    /// life after which a hit refreshes it in the background.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eager_refresh: Option<f64>,
    /// [`CacheBuilder::soft_timeout`].
    #[serde(default, with = "duration", skip_serializing_if = "Option::is_none")]
    pub soft_timeout: Option<Duration>,
    /// [`CacheBuilder::hard_timeout`].
    #[serde(default, with = "duration", skip_serializing_if = "Option::is_none")]
    pub hard_timeout: Option<Duration>,
    /// The codec the cache must be asked for; see
    /// [`builder`](Self::builder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec: Option<CodecName>,
    /// `CacheBuilder::compress_above` (feature `lz4`), in bytes.
    #[serde(default, with = "byte_size", skip_serializing_if = "Option::is_none")]
    pub compress_above: Option<u64>,
    /// `CacheBuilder::max_decompressed_size` (feature `lz4`), in bytes.
    #[serde(default, with = "byte_size", skip_serializing_if = "Option::is_none")]
    pub max_decompressed_size: Option<u64>,
    /// [`CacheBuilder::distributed_lock`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distributed_lock: Option<LockOptions>,
}

/// The two durations of [`CacheBuilder::distributed_lock`]; both must be
/// given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct LockOptions {
    /// The longest a loader holds the lock.
    #[serde(default, with = "duration", skip_serializing_if = "Option::is_none")]
    pub lock_ttl: Option<Duration>,
    /// How long the others wait for the value before loading it themselves.
    #[serde(default, with = "duration", skip_serializing_if = "Option::is_none")]
    pub wait: Option<Duration>,
}

/// The codec named in a [`CacheOptions`]: cachette's own codecs, by the
/// names of their [`Codec::name`] (`raw` for [`RawBytes`](super::RawBytes)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum CodecName {
    /// [`Postcard`](super::Postcard), the [`DefaultCodec`].
    Postcard,
    /// `Json` (feature `json`).
    Json,
    /// `MessagePack` (feature `msgpack`).
    Msgpack,
    /// [`RawBytes`](super::RawBytes).
    Raw,
}

impl CodecName {
    /// The names a configuration may give, in the order of the variants.
    pub(crate) const NAMES: &'static [&'static str] = &["postcard", "json", "msgpack", "raw"];

    /// The name in a configuration.
    fn config_name(self) -> &'static str {
        match self {
            CodecName::Postcard => "postcard",
            CodecName::Json => "json",
            CodecName::Msgpack => "msgpack",
            CodecName::Raw => "raw",
        }
    }

    /// What [`Codec::name`] answers for this codec.
    fn codec_name(self) -> &'static str {
        match self {
            CodecName::Postcard => "postcard",
            CodecName::Json => "json",
            CodecName::Msgpack => "msgpack",
            CodecName::Raw => "raw bytes",
        }
    }
}

impl CacheOptions {
    /// Whether no option is set.
    pub(crate) fn is_default(&self) -> bool {
        *self == CacheOptions::default()
    }

    /// A builder over `backend` with `codec` and these options.
    ///
    /// # Errors
    ///
    /// An [`ErrorKind::Config`](crate::ErrorKind::Config) error naming
    /// both codecs when [`codec`](Self::codec) names another codec than
    /// `codec` (a cache asked for postcard must not read what a JSON cache
    /// of the same name writes); naming the option when `compress_above` or
    /// `max_decompressed_size` is given without the `lz4` feature, does not
    /// fit in memory, or `distributed_lock` lacks one of its durations. The
    /// other checks are [`CacheBuilder::build`]'s.
    pub fn builder<C: Codec>(
        &self,
        backend: Arc<dyn Backend>,
        codec: C,
    ) -> Result<CacheBuilder<C>> {
        if let Some(named) = self.codec
            && named.codec_name() != codec.name()
        {
            return Err(Error::config(
                NAME,
                format!(
                    "the configuration names the codec `{}`, but the cache was asked for with the \
                     codec `{}`; ask for the configured codec or change `codec`",
                    named.config_name(),
                    codec.name()
                ),
            ));
        }
        self.apply(Cache::builder(backend).codec(codec))
    }

    /// Checks these options over `backend` as [`CacheBuilder::build`]
    /// would, without its I/O and without the codec (which is chosen when
    /// the cache is asked for).
    pub(crate) fn check(&self, backend: Arc<dyn Backend>) -> Result<()> {
        self.apply(Cache::builder(backend))?.check()
    }

    /// `builder` with every option that is set.
    fn apply<C: Codec>(&self, mut builder: CacheBuilder<C>) -> Result<CacheBuilder<C>> {
        if let Some(namespace) = &self.namespace {
            builder = builder.namespace(namespace.clone());
        }
        let durations: [(Option<Duration>, DurationSetter<C>); 9] = [
            (self.ttl, CacheBuilder::default_ttl),
            (self.soft_ttl, CacheBuilder::soft_ttl),
            (self.negative_ttl, CacheBuilder::negative_ttl),
            (self.jitter, CacheBuilder::jitter),
            (self.fail_safe, CacheBuilder::fail_safe),
            (self.fail_safe_throttle, CacheBuilder::fail_safe_throttle),
            (self.fail_safe_recovery, CacheBuilder::fail_safe_recovery),
            (self.soft_timeout, CacheBuilder::soft_timeout),
            (self.hard_timeout, CacheBuilder::hard_timeout),
        ];
        for (value, setter) in durations {
            if let Some(value) = value {
                builder = setter(builder, value);
            }
        }
        if let Some(entries) = self.fail_safe_capacity {
            builder = builder.fail_safe_capacity(entries);
        }
        if let Some(fraction) = self.eager_refresh {
            builder = builder.eager_refresh(fraction);
        }
        builder = compression(builder, self.compress_above, self.max_decompressed_size)?;
        if let Some(lock) = &self.distributed_lock {
            let (Some(lock_ttl), Some(wait)) = (lock.lock_ttl, lock.wait) else {
                return Err(Error::config(
                    NAME,
                    "distributed_lock needs both `lock_ttl` and `wait`",
                ));
            };
            builder = builder.distributed_lock(lock_ttl, wait);
        }
        Ok(builder)
    }
}

/// A duration setter of [`CacheBuilder`].
type DurationSetter<C> = fn(CacheBuilder<C>, Duration) -> CacheBuilder<C>;

/// `builder` with the LZ4 options that are set.
#[cfg(feature = "lz4")]
fn compression<C: Codec>(
    mut builder: CacheBuilder<C>,
    compress_above: Option<u64>,
    max_decompressed_size: Option<u64>,
) -> Result<CacheBuilder<C>> {
    let in_memory = |bytes: u64, option: &str| {
        usize::try_from(bytes).map_err(|_| {
            Error::config(
                NAME,
                format!("{option} ({bytes} bytes) does not fit in memory"),
            )
        })
    };
    if let Some(bytes) = compress_above {
        builder = builder.compress_above(in_memory(bytes, "compress_above")?);
    }
    if let Some(bytes) = max_decompressed_size {
        builder = builder.max_decompressed_size(in_memory(bytes, "max_decompressed_size")?);
    }
    Ok(builder)
}

/// Without `lz4`, giving an LZ4 option is an error naming it.
#[cfg(not(feature = "lz4"))]
fn compression<C: Codec>(
    builder: CacheBuilder<C>,
    compress_above: Option<u64>,
    max_decompressed_size: Option<u64>,
) -> Result<CacheBuilder<C>> {
    let option = match (compress_above, max_decompressed_size) {
        (None, None) => return Ok(builder),
        (Some(_), _) => "compress_above",
        (None, Some(_)) => "max_decompressed_size",
    };
    Err(Error::config(
        NAME,
        format!("`{option}` needs the cargo feature `lz4`"),
    ))
}

/// `Option<Duration>` as humantime text (`10s`, `1h 30m`), the form of
/// every duration in configuration files.
pub(crate) mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    use crate::params::parse_duration;

    pub(crate) fn serialize<S: Serializer>(
        value: &Option<Duration>,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        match value {
            Some(duration) => serializer.collect_str(&humantime::format_duration(*duration)),
            None => serializer.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Option<Duration>, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_duration(&text).map(Some).map_err(|expected| {
            serde::de::Error::custom(format!("expected {expected}, got `{text}`"))
        })
    }
}

/// `Option<u64>` as a byte size: a whole number, or text with a unit
/// (`4KiB`, `1 MB`, see [`parse_byte_size`](crate::params::parse_byte_size)).
pub(crate) mod byte_size {
    use std::fmt;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    use crate::params::parse_byte_size;

    /// What a byte size looks like, for errors.
    pub(crate) const EXPECTED: &str = "a byte size such as `4096`, `4KiB` or `1 MB`";

    pub(crate) fn serialize<S: Serializer>(
        value: &Option<u64>,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        match value {
            Some(bytes) => serializer.serialize_u64(*bytes),
            None => serializer.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Option<u64>, D::Error> {
        struct ByteSize;
        impl Visitor<'_> for ByteSize {
            type Value = u64;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(EXPECTED)
            }
            fn visit_u64<E: de::Error>(self, bytes: u64) -> Result<u64, E> {
                Ok(bytes)
            }
            fn visit_i64<E: de::Error>(self, bytes: i64) -> Result<u64, E> {
                u64::try_from(bytes)
                    .map_err(|_| E::custom(format!("expected {EXPECTED}, got {bytes}")))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<u64, E> {
                parse_byte_size(text)
                    .ok_or_else(|| E::custom(format!("expected {EXPECTED}, got `{text}`")))
            }
        }
        deserializer.deserialize_any(ByteSize).map(Some)
    }
}
