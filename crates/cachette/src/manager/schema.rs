//! The keys of the configuration at every level, and what each holds: one
//! table that the TOML check of unknown keys, the naming of settings in
//! errors and the environment's `CACHETTE_CACHES__<NAME>__A__B` variables
//! all read, so that a new key is added in one place (next to its field).

use toml::de::{DeTable, DeValue};
use toml::{Table, Value};

use crate::cache::CodecName;
use crate::params::{parse_byte_size, parse_duration};

/// What a setting holds: how it is checked, and how the environment's
/// text becomes its TOML value.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    /// Any text (a URL, a name).
    Text,
    /// A humantime duration, kept as text.
    Duration,
    /// A whole number.
    Count,
    /// A number with a fraction, e.g. `0.8`.
    Fraction,
    /// `true` or `false`.
    Flag,
    /// A byte size, a number or text with a unit.
    ByteSize,
    /// One of these names.
    Choice(&'static [&'static str]),
    /// A table of these settings.
    Table(&'static [Setting]),
    /// A layer: a table of these settings, which the environment can also
    /// turn on (`true`, with its defaults) or off (`false`) as a whole.
    Layer(&'static [Setting]),
    /// Tables named by the user (the caches), each of these settings.
    Named(&'static [Setting]),
}

/// A key and what it holds.
pub(super) type Setting = (&'static str, Kind);

use Kind::{ByteSize, Choice, Count, Duration, Flag, Fraction, Layer, Named, Text};

/// The top level.
pub(super) const TOP: &[Setting] = &[("default", Text), ("caches", Named(CACHE))];

/// A cache: [`CacheConfig`](super::CacheConfig).
pub(super) const CACHE: &[Setting] = &[
    ("url", Text),
    ("l1", Text),
    ("l2", Text),
    ("l3", Text),
    ("l1_ttl", Duration),
    ("channel", Text),
    ("layers", Kind::Table(LAYERS)),
    ("cache", Kind::Table(OPTIONS)),
];

/// [`LayersConfig`](super::LayersConfig).
const LAYERS: &[Setting] = &[
    ("prefix", Text),
    (
        "timeout",
        Layer(&[
            ("all", Duration),
            ("reads", Duration),
            ("writes", Duration),
            ("scans", Duration),
        ]),
    ),
    (
        "retry",
        Layer(&[
            ("max_attempts", Count),
            ("initial_backoff", Duration),
            ("max_backoff", Duration),
        ]),
    ),
    (
        "circuit_breaker",
        Layer(&[("failure_threshold", Count), ("open_duration", Duration)]),
    ),
    (
        "metrics",
        Layer(&[
            ("cache_label", Text),
            ("backend_label", Text),
            ("export_interval", Duration),
            ("export_stats", Flag),
        ]),
    ),
    (
        "tracing",
        Layer(&[("record_keys", Flag), ("namespace", Text)]),
    ),
];

/// [`CacheOptions`](crate::cache::CacheOptions).
const OPTIONS: &[Setting] = &[
    ("namespace", Text),
    ("ttl", Duration),
    ("soft_ttl", Duration),
    ("negative_ttl", Duration),
    ("jitter", Duration),
    ("fail_safe", Duration),
    ("fail_safe_throttle", Duration),
    ("fail_safe_recovery", Duration),
    ("fail_safe_capacity", Count),
    ("eager_refresh", Fraction),
    ("soft_timeout", Duration),
    ("hard_timeout", Duration),
    ("codec", Choice(CodecName::NAMES)),
    ("compress_above", ByteSize),
    ("max_decompressed_size", ByteSize),
    (
        "distributed_lock",
        Kind::Table(&[("lock_ttl", Duration), ("wait", Duration)]),
    ),
];

/// "`a`, `b`, `c`": the keys of `schema`, for messages.
fn key_list(schema: &[Setting]) -> String {
    let keys: Vec<String> = schema.iter().map(|(key, _)| format!("`{key}`")).collect();
    keys.join(", ")
}

/// The setting called `key` in `schema`, ignoring ASCII case if `any_case`.
fn find(schema: &[Setting], key: &str, any_case: bool) -> Option<(&'static str, Kind)> {
    schema
        .iter()
        .copied()
        .find(|(known, _)| *known == key || (any_case && known.eq_ignore_ascii_case(key)))
}

/// The unknown key that comes first in the file, with its offset and the
/// message that names it and the valid ones; `None` if every key is known
/// (or the text does not parse, which `toml::from_str` then reports).
/// Serde meets keys in sorted order, so it would name a later key.
pub(super) fn first_unknown_key(toml: &str) -> Option<(usize, String)> {
    let root = DeTable::parse(toml).ok()?;
    let mut found = Vec::new();
    unknown_keys(root.get_ref(), TOP, &mut found);
    found.into_iter().min_by_key(|&(start, _)| start)
}

/// Adds the unknown keys of `table`, and of the tables in it, to `found`.
fn unknown_keys(table: &DeTable<'_>, schema: &[Setting], found: &mut Vec<(usize, String)>) {
    for (key, value) in table {
        let Some((_, kind)) = find(schema, key.get_ref(), false) else {
            let message = format!(
                "unknown field `{}`, expected one of {}",
                key.get_ref(),
                key_list(schema)
            );
            found.push((key.span().start, message));
            continue;
        };
        let Some(inner) = value.get_ref().as_table() else {
            continue;
        };
        match kind {
            Kind::Table(settings) | Layer(settings) => unknown_keys(inner, settings, found),
            Named(settings) => {
                for named in inner.values() {
                    if let Some(named) = named.get_ref().as_table() {
                        unknown_keys(named, settings, found);
                    }
                }
            }
            _ => {}
        }
    }
}

/// The dotted path of the value at byte `offset` of the file
/// (`caches.users.cache.ttl`), to name the setting of an error that serde
/// reports without it; `None` if no single value is there.
pub(super) fn setting_at(toml: &str, offset: usize) -> Option<String> {
    let root = DeTable::parse(toml).ok()?;
    path_to(root.get_ref(), offset)
}

fn path_to(table: &DeTable<'_>, offset: usize) -> Option<String> {
    table.iter().find_map(|(key, value)| {
        let key = key.get_ref();
        match value.get_ref() {
            DeValue::Table(inner) => path_to(inner, offset).map(|path| format!("{key}.{path}")),
            DeValue::Array(_) => None,
            _ => value.span().contains(&offset).then(|| key.to_string()),
        }
    })
}

/// The setting an environment variable names under a cache.
#[derive(Debug)]
pub(super) struct EnvSetting {
    /// The keys from the cache's table down to the setting, as in TOML.
    pub(super) path: Vec<&'static str>,
    /// What it holds.
    kind: Kind,
}

/// Resolves the setting an environment variable names under a cache
/// (`["LAYERS", "RETRY", "MAX_ATTEMPTS"]`, any case). The message of an
/// error names the setting and the valid ones.
pub(super) fn env_setting(names: &[&str]) -> Result<EnvSetting, String> {
    let mut path = Vec::new();
    let mut kind = Kind::Table(CACHE);
    for (at, name) in names.iter().enumerate() {
        let (Kind::Table(settings) | Layer(settings) | Named(settings)) = kind else {
            return Err(format!(
                "`{}` has no settings under it",
                names[..at].join("__").to_ascii_uppercase()
            ));
        };
        let Some((key, found)) = find(settings, name, true) else {
            return Err(format!(
                "unknown setting `{}`; expected {}",
                names[..=at].join("__").to_ascii_uppercase(),
                upper_keys(settings)
            ));
        };
        path.push(key);
        kind = found;
    }
    if let Kind::Table(settings) = kind {
        let under = names.join("__").to_ascii_uppercase();
        return Err(format!(
            "`{under}` is a group of settings; expected `{under}__` and one of {}",
            upper_keys(settings)
        ));
    }
    Ok(EnvSetting { path, kind })
}

/// "A, B, C": the keys of `schema` as the environment spells them.
fn upper_keys(schema: &[Setting]) -> String {
    let keys: Vec<String> = schema
        .iter()
        .map(|(key, _)| key.to_ascii_uppercase())
        .collect();
    keys.join(", ")
}

impl EnvSetting {
    /// The TOML value `text` stands for; `None` removes the setting (a
    /// layer turned off). The message of an error never quotes `text`.
    pub(super) fn value(&self, text: &str) -> Result<Option<Value>, String> {
        match self.kind {
            Layer(settings) => match parse_flag(text) {
                Some(true) => Ok(Some(Value::Table(Table::new()))),
                Some(false) => Ok(None),
                None => Err(format!(
                    "expected `true` or `false` to turn the layer on or off, or one of its \
                     settings: {}",
                    upper_keys(settings)
                )),
            },
            kind => leaf(kind, text).map(Some),
        }
    }
}

/// `true` or `false`, in any case.
fn parse_flag(text: &str) -> Option<bool> {
    if text.eq_ignore_ascii_case("true") {
        Some(true)
    } else if text.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// The TOML value of a leaf setting of `kind` given as `text`.
fn leaf(kind: Kind, text: &str) -> Result<Value, String> {
    let checked = |ok: bool, expected: &str| {
        if ok {
            Ok(Value::String(text.to_owned()))
        } else {
            Err(format!("expected {expected}"))
        }
    };
    match kind {
        Duration => parse_duration(text)
            .map(|_| Value::String(text.to_owned()))
            .map_err(|expected| format!("expected {expected}")),
        Count => text
            .trim()
            .parse::<u32>()
            .map(|count| Value::Integer(i64::from(count)))
            .map_err(|_| format!("expected a whole number up to {}", u32::MAX)),
        Fraction => text
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|number| number.is_finite())
            .map(Value::Float)
            .ok_or_else(|| "expected a number such as 0.8".to_owned()),
        Flag => parse_flag(text)
            .map(Value::Boolean)
            .ok_or_else(|| "expected `true` or `false`".to_owned()),
        ByteSize => checked(
            parse_byte_size(text).is_some(),
            crate::cache::config::byte_size::EXPECTED,
        ),
        Choice(names) => checked(
            names.contains(&text),
            &format!("one of {}", names.join(", ")),
        ),
        _ => Ok(Value::String(text.to_owned())),
    }
}

/// Sets (or, for `None`, removes) the value at `path` under `table`,
/// adding the tables on the way. A layer turned on keeps the options it
/// has.
pub(super) fn set_path(table: &mut Table, path: &[&str], value: Option<Value>) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut table = table;
    for key in parents {
        let entry = table
            .entry(*key)
            .or_insert_with(|| Value::Table(Table::new()));
        if !entry.is_table() {
            *entry = Value::Table(Table::new());
        }
        let Value::Table(inner) = entry else {
            return;
        };
        table = inner;
    }
    match value {
        Some(Value::Table(new)) if new.is_empty() => {
            table
                .entry(*last)
                .or_insert_with(|| Value::Table(Table::new()));
        }
        Some(value) => {
            table.insert((*last).to_owned(), value);
        }
        None => {
            table.remove(*last);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TOML value of each kind that the structs accept.
    fn sample(kind: Kind) -> Value {
        match kind {
            Text => Value::String("app".into()),
            Duration => Value::String("1s".into()),
            Count => Value::Integer(2),
            Fraction => Value::Float(0.5),
            Flag => Value::Boolean(true),
            ByteSize => Value::String("4KiB".into()),
            Choice(names) => Value::String(names[0].into()),
            Kind::Table(settings) | Layer(settings) | Named(settings) => {
                Value::Table(table_of(settings))
            }
        }
    }

    fn table_of(settings: &[Setting]) -> Table {
        settings
            .iter()
            .map(|(key, kind)| ((*key).to_owned(), sample(*kind)))
            .collect()
    }

    #[test]
    fn a_value_of_each_kind_in_the_schema_is_accepted_by_its_field() {
        // A cache that sets every key the schema knows deserializes: the
        // schema names no key that the structs lack.
        let mut cache = table_of(CACHE);
        cache.remove("url");
        let parsed: Result<super::super::CacheConfig, _> = Value::Table(cache).try_into();
        assert!(parsed.is_ok(), "{parsed:?}");
    }

    /// The fields serde knows for `T`, as its unknown-field error lists them.
    fn fields_of<T: serde::de::DeserializeOwned + std::fmt::Debug>() -> Vec<String> {
        let err = toml::from_str::<T>("not_a_field = 1").unwrap_err();
        let message = err.message().to_owned();
        let (_, fields) = message
            .split_once(", expected")
            .expect("an unknown-field error");
        // "`a`", "`a` or `b`", "one of `a`, `b`, `c`".
        fields
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    }

    /// The settings of the table `key` of `schema`.
    fn table(schema: &[Setting], key: &str) -> &'static [Setting] {
        match find(schema, key, false) {
            Some((_, Kind::Table(settings) | Layer(settings))) => settings,
            other => panic!("`{key}` is not a table: {other:?}"),
        }
    }

    #[test]
    fn every_field_of_a_cache_is_a_key_of_the_schema_in_order() {
        use super::super::layers::*;
        use crate::cache::{CacheOptions, LockOptions};
        let options = table(CACHE, "cache");
        let checks = [
            (fields_of::<super::super::CacheConfig>(), CACHE),
            (fields_of::<LayersConfig>(), LAYERS),
            (fields_of::<TimeoutConfig>(), table(LAYERS, "timeout")),
            (fields_of::<RetryConfig>(), table(LAYERS, "retry")),
            (
                fields_of::<CircuitBreakerConfig>(),
                table(LAYERS, "circuit_breaker"),
            ),
            (fields_of::<MetricsConfig>(), table(LAYERS, "metrics")),
            (fields_of::<TracingConfig>(), table(LAYERS, "tracing")),
            (fields_of::<CacheOptions>(), options),
            (
                fields_of::<LockOptions>(),
                table(options, "distributed_lock"),
            ),
        ];
        for (fields, schema) in checks {
            let keys: Vec<&str> = schema.iter().map(|(key, _)| *key).collect();
            assert_eq!(fields, keys);
        }
    }

    #[test]
    fn a_setting_is_found_by_its_offset() {
        let toml = "[caches.a]\nurl = \"memory://\"\n[caches.a.layers]\nretry = { max_attempts = \"x\" }\n";
        let offset = toml.find("\"x\"").unwrap() + 1;
        assert_eq!(
            setting_at(toml, offset).as_deref(),
            Some("caches.a.layers.retry.max_attempts")
        );
    }
}
