//! What every command prints with: lines, JSON and tables on stdout, notes
//! and errors on stderr.
//!
//! Everything goes through `io::Write` and returns its error instead of
//! panicking like `println!` does on a closed pipe; `main` treats a broken
//! pipe as a normal end.
//!
//! # `--json`
//!
//! Under the global `--json` flag every command prints one JSON document
//! on stdout (`watch`: one compact object per line and frame) and no notes
//! on stderr. A stored value is a JSON string when it is UTF-8, and
//! `{"base64": "…"}` (standard alphabet, padded) otherwise. An error is
//! `{"error": {"kind": …, "message": …}}` on stderr, with the same exit
//! status as without `--json`; `kind` is the cachette error kind
//! (`connection`, `invalid input`, …), `usage` for a bad command line, `io`
//! for a failed read or write of the CLI itself, `command` otherwise.

use std::fmt::Display;
use std::io::{self, Write as _};

use base64::Engine as _;
use comfy_table::{CellAlignment, ContentArrangement, Table, presets};
use serde::Serialize;
use serde_json::json;

/// How a command prints its answer: for a person, or as JSON (`--json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Printer {
    json: bool,
}

impl Printer {
    /// A printer for `--json` (`true`) or for a person.
    pub(crate) fn new(json: bool) -> Self {
        Printer { json }
    }

    /// Whether the answer is JSON.
    pub(crate) fn is_json(self) -> bool {
        self.json
    }

    /// Prints a command's answer: `text` as one line for a person, or
    /// `doc` as one JSON document under `--json`.
    pub(crate) fn answer(self, text: impl Display, doc: &impl Serialize) -> anyhow::Result<()> {
        if self.json {
            print_json(doc)
        } else {
            Ok(print_line(text)?)
        }
    }

    /// Prints the answer of a command that found nothing to answer with (a
    /// miss, a write a condition kept from happening): `note` on stderr
    /// for a person, or `doc` on stdout under `--json`.
    pub(crate) fn absent(self, note: &str, doc: &impl Serialize) -> anyhow::Result<()> {
        if self.json {
            print_json(doc)
        } else {
            self::note(note);
            Ok(())
        }
    }

    /// A note for the person at the terminal, on stderr; nothing under
    /// `--json`, where stderr carries errors only.
    pub(crate) fn note(self, message: &str) {
        if !self.json {
            note(message);
        }
    }
}

/// A stored value in JSON: a string when it is UTF-8, else
/// `{"base64": "…"}`.
pub(crate) fn value_json(bytes: &[u8]) -> serde_json::Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::Value::String(text.to_owned()),
        Err(_) => json!({ "base64": base64::engine::general_purpose::STANDARD.encode(bytes) }),
    }
}

/// Prints one line on stdout.
pub(crate) fn print_line(line: impl Display) -> io::Result<()> {
    writeln!(io::stdout().lock(), "{line}")
}

/// Prints raw bytes on stdout, as they are.
pub(crate) fn print_bytes(bytes: &[u8]) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout.write_all(bytes)?;
    stdout.flush()
}

/// Prints a value as pretty JSON on stdout, followed by a newline.
pub(crate) fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    // As an io::Error, a broken pipe is recognised by main and ends quietly.
    serde_json::to_writer_pretty(&mut stdout, value).map_err(io::Error::from)?;
    writeln!(stdout)?;
    Ok(())
}

/// Prints a value as compact JSON on one line of stdout, and flushes it
/// (for streams of objects, such as `watch --json`).
pub(crate) fn print_json_line(value: &impl Serialize) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    serde_json::to_writer(&mut stdout, value).map_err(io::Error::from)?;
    writeln!(stdout)?;
    stdout.flush()?;
    Ok(())
}

/// Prints the error that ends the command on stderr: `error: …`, or the
/// JSON object of the [module docs](self) under `--json`.
pub(crate) fn print_error(kind: &str, message: &str, json: bool) {
    let mut stderr = io::stderr().lock();
    // A closed stderr leaves nowhere to report to; the exit status remains.
    let _ = if json {
        let doc = json!({ "error": { "kind": kind, "message": message } });
        writeln!(stderr, "{doc}")
    } else {
        writeln!(stderr, "error: {message}")
    };
}

/// The kind of an error for `--json`: the cachette error kind if a
/// cachette error caused it, `io` for the CLI's own reads and writes,
/// `command` otherwise.
pub(crate) fn error_kind(err: &anyhow::Error) -> &'static str {
    err.chain()
        .find_map(|cause| {
            if let Some(err) = cause.downcast_ref::<cachette::Error>() {
                Some(err.kind().as_str())
            } else {
                cause.downcast_ref::<io::Error>().map(|_| "io")
            }
        })
        .unwrap_or("command")
}

/// A table in the house style, with these column headers.
pub(crate) fn table<const N: usize>(header: [&str; N]) -> Table {
    let mut table = Table::new();
    table
        .load_style(presets::UTF8_FULL_CONDENSED.with_rounded_corners())
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header);
    table
}

/// Right-aligns the given columns (numbers read best that way).
pub(crate) fn align_right(table: &mut Table, columns: impl IntoIterator<Item = usize>) {
    for index in columns {
        if let Some(column) = table.column_mut(index) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
}

/// Prints a table on stdout.
pub(crate) fn print_table(table: &Table) -> io::Result<()> {
    print_line(table)
}

/// A note for the human at the terminal, on stderr. A closed stderr is no
/// reason to fail.
pub(crate) fn note(message: &str) {
    let _ = writeln!(io::stderr(), "{message}");
}

/// `yes` or `no`.
pub(crate) fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}
