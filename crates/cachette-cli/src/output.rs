//! What every command prints with: lines, JSON and tables on stdout, notes
//! on stderr.
//!
//! Everything goes through `io::Write` and returns its error instead of
//! panicking like `println!` does on a closed pipe; `main` treats a broken
//! pipe as a normal end.

use std::fmt::Display;
use std::io::{self, Write as _};

use comfy_table::{CellAlignment, ContentArrangement, Table, presets};
use serde::Serialize;

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
