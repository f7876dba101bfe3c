//! `cachette backends`: the capability table of every URL scheme cachette
//! knows, compiled into this binary or not.

use cachette::{Capabilities, SchemeInfo, TtlPrecision};
use clap::Args;
use comfy_table::Cell;
use serde::Serialize;

use super::Outcome;
use crate::output::{self, Printer, yes_no};
use crate::units::format_bytes;

/// Arguments of `cachette backends`.
#[derive(Debug, Args)]
#[command(after_help = "\
Columns: `compiled in` says whether this binary was built with the scheme's
cargo feature. `TTL` is the finest TTL the backend enforces itself (`ms` or
`s`, where shorter TTLs round up), or `no`. `ttl/touch` is TTL inspection;
`keys` is key listing; `shared` means several processes see the same data.
Capabilities are those of the backend with default options.")]
pub(crate) struct BackendsArgs {}

/// Prints the table (or the JSON array).
pub(crate) fn run(_args: &BackendsArgs, out: Printer) -> anyhow::Result<Outcome> {
    let json = out.is_json();
    let schemes = cachette::schemes();
    if json {
        let rows: Vec<SchemeRow> = schemes.iter().map(SchemeRow::from).collect();
        output::print_json(&rows)?;
    } else {
        print_table(&schemes)?;
    }
    Ok(Outcome::Done)
}

fn print_table(schemes: &[SchemeInfo]) -> anyhow::Result<()> {
    let mut table = output::table([
        "scheme",
        "feature",
        "compiled in",
        "atomic incr",
        "conditional set",
        "TTL",
        "ttl/touch",
        "tags",
        "keys",
        "clear",
        "persistent",
        "shared",
        "max key",
        "max value",
    ]);
    for info in schemes {
        let mut row = vec![
            Cell::new(info.scheme),
            Cell::new(info.feature),
            Cell::new(yes_no(info.enabled)),
        ];
        match &info.capabilities {
            Some(caps) => row.extend(capability_cells(caps).map(Cell::new)),
            // Without the feature the binary cannot know the backend's limits.
            None => row.extend((0..11).map(|_| Cell::new("-"))),
        }
        table.add_row(row);
    }
    output::align_right(&mut table, [12, 13]);
    output::print_table(&table)?;
    for info in schemes {
        output::print_line(format_args!("{}: {}", info.scheme, info.description))?;
    }
    Ok(())
}

fn capability_cells(caps: &Capabilities) -> [String; 11] {
    let ttl = if caps.native_ttl {
        precision_name(caps.ttl_precision).0
    } else {
        "no".to_owned()
    };
    [
        yes_no(caps.atomic_incr).to_owned(),
        yes_no(caps.conditional_set).to_owned(),
        ttl,
        yes_no(caps.ttl_inspection).to_owned(),
        yes_no(caps.tags).to_owned(),
        yes_no(caps.key_listing).to_owned(),
        yes_no(caps.clear).to_owned(),
        yes_no(caps.persistent).to_owned(),
        yes_no(caps.shared).to_owned(),
        format_bytes(caps.max_key_len as u64),
        caps.max_value_len
            .map_or_else(|| "unlimited".to_owned(), |len| format_bytes(len as u64)),
    ]
}

/// The short (`ms`) and long (`milliseconds`) names of a TTL precision.
fn precision_name(precision: TtlPrecision) -> (String, String) {
    match precision {
        TtlPrecision::Milliseconds => ("ms".to_owned(), "milliseconds".to_owned()),
        TtlPrecision::Seconds => ("s".to_owned(), "seconds".to_owned()),
        // A precision added by a later version of the library.
        other => {
            let name = format!("{other:?}").to_lowercase();
            (name.clone(), name)
        }
    }
}

/// One scheme in `--json` output.
#[derive(Debug, Serialize)]
struct SchemeRow {
    scheme: &'static str,
    feature: &'static str,
    enabled: bool,
    description: &'static str,
    capabilities: Option<CapabilitiesRow>,
}

/// [`Capabilities`] in `--json` output, field for field.
#[derive(Debug, Serialize)]
struct CapabilitiesRow {
    atomic_incr: bool,
    conditional_set: bool,
    native_ttl: bool,
    ttl_precision: String,
    ttl_inspection: bool,
    tags: bool,
    counts_invalidations: bool,
    key_listing: bool,
    clear: bool,
    persistent: bool,
    shared: bool,
    max_key_len: usize,
    max_value_len: Option<usize>,
}

impl From<&SchemeInfo> for SchemeRow {
    fn from(info: &SchemeInfo) -> Self {
        SchemeRow {
            scheme: info.scheme,
            feature: info.feature,
            enabled: info.enabled,
            description: info.description,
            capabilities: info.capabilities.as_ref().map(CapabilitiesRow::from),
        }
    }
}

impl From<&Capabilities> for CapabilitiesRow {
    fn from(caps: &Capabilities) -> Self {
        CapabilitiesRow {
            atomic_incr: caps.atomic_incr,
            conditional_set: caps.conditional_set,
            native_ttl: caps.native_ttl,
            ttl_precision: precision_name(caps.ttl_precision).1,
            ttl_inspection: caps.ttl_inspection,
            tags: caps.tags,
            counts_invalidations: caps.counts_invalidations,
            key_listing: caps.key_listing,
            clear: caps.clear,
            persistent: caps.persistent,
            shared: caps.shared,
            max_key_len: caps.max_key_len,
            max_value_len: caps.max_value_len,
        }
    }
}
