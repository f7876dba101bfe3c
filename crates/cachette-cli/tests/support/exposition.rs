//! A strict parser of Prometheus' text exposition format 0.0.4
//! (<https://prometheus.io/docs/instrumenting/exposition_formats/>), for
//! tests that check what the CLI prints: names, labels and their escapes,
//! values, one TYPE (before the samples) and one HELP per metric, a
//! metric's lines together, no series twice.

use std::collections::{BTreeMap, HashSet};

/// The samples of one metric, with its TYPE and HELP.
#[derive(Debug, Default)]
pub(crate) struct Family {
    pub(crate) kind: String,
    pub(crate) help: String,
    pub(crate) samples: Vec<Sample>,
}

#[derive(Debug)]
pub(crate) struct Sample {
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) value: f64,
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => text.parse().map_err(|_| format!("bad value `{text}`")),
    }
}

/// Parses `{a="x",b="y"}` at the start of `text`; returns the labels
/// and the rest.
fn parse_labels(text: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = text.strip_prefix('{').ok_or("no `{`")?;
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let (name, after) = rest.split_once("=\"").ok_or("a label without `=\"`")?;
        if !is_label_name(name) {
            return Err(format!("bad label name `{name}`"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("an unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape {other:?} in a label value")),
                },
                Some((_, '\n')) => return Err("a newline in a label value".into()),
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(name.to_owned(), value).is_some() {
            return Err(format!("label `{name}` twice"));
        }
        rest = &after[end + 1..];
        // A comma between labels (and optionally after the last one).
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err(format!("no `,` or `}}` after label `{name}`"));
        }
    }
}

/// Checks the HELP docstring's escapes (`\\` and `\n` only).
fn check_help(text: &str) -> Result<(), String> {
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' && !matches!(chars.next(), Some('\\' | 'n')) {
            return Err(format!("bad escape in HELP `{text}`"));
        }
    }
    Ok(())
}

/// The metric families of `text`, by name.
pub(crate) fn parse(text: &str) -> Result<BTreeMap<String, Family>, String> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut series: HashSet<(String, Vec<(String, String)>)> = HashSet::new();
    // A metric's lines form one group: moving to another metric ends it.
    let mut enter = |name: &str, current: &mut Option<String>| -> Result<(), String> {
        if current.as_deref() != Some(name) {
            if finished.contains(name) {
                return Err(format!("the lines of `{name}` are not together"));
            }
            if let Some(previous) = current.take() {
                finished.insert(previous);
            }
            *current = Some(name.to_owned());
        }
        Ok(())
    };
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.trim_start().splitn(3, ' ');
            match (words.next(), words.next(), words.next()) {
                (Some("TYPE"), Some(name), Some(kind)) => {
                    if !is_metric_name(name) {
                        return Err(format!("bad metric name `{name}`"));
                    }
                    if !["counter", "gauge", "histogram", "summary", "untyped"]
                        .contains(&kind.trim())
                    {
                        return Err(format!("bad type `{kind}`"));
                    }
                    enter(name, &mut current)?;
                    let family = families.entry(name.to_owned()).or_default();
                    if !family.kind.is_empty() || !family.samples.is_empty() {
                        return Err(format!("TYPE of `{name}` twice or after its samples"));
                    }
                    family.kind = kind.trim().to_owned();
                }
                (Some("HELP"), Some(name), help) => {
                    if !is_metric_name(name) {
                        return Err(format!("bad metric name `{name}`"));
                    }
                    let help = help.unwrap_or_default();
                    check_help(help)?;
                    enter(name, &mut current)?;
                    let family = families.entry(name.to_owned()).or_default();
                    if !family.help.is_empty() {
                        return Err(format!("HELP of `{name}` twice"));
                    }
                    family.help = help.to_owned();
                }
                // Any other comment is ignored.
                _ => {}
            }
            continue;
        }
        let name_end = line
            .find(['{', ' ', '\t'])
            .ok_or_else(|| format!("no value in `{line}`"))?;
        let name = &line[..name_end];
        if !is_metric_name(name) {
            return Err(format!("bad metric name `{name}`"));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..])?
        } else {
            (BTreeMap::new(), &line[name_end..])
        };
        let mut fields = rest.split_whitespace();
        let value = parse_value(fields.next().ok_or("no value")?)?;
        if let Some(timestamp) = fields.next() {
            timestamp
                .parse::<i64>()
                .map_err(|_| format!("bad timestamp `{timestamp}`"))?;
        }
        if fields.next().is_some() {
            return Err(format!("trailing text in `{line}`"));
        }
        enter(name, &mut current)?;
        let family = families
            .get_mut(name)
            .filter(|family| !family.kind.is_empty())
            .ok_or_else(|| format!("a sample of `{name}` before its TYPE"))?;
        let key = (
            name.to_owned(),
            labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        );
        if !series.insert(key) {
            return Err(format!("the series `{line}` twice"));
        }
        family.samples.push(Sample { labels, value });
    }
    Ok(families)
}
