//! The output layer: JSON on stdout for `--json`, human text on stderr.
//!
//! Nothing else in the binary prints. Human text is suppressed by `--quiet`; JSON is the
//! requested output and always printed. Write errors on stdout are returned (a broken pipe
//! then ends the command quietly, see `exit`); on stderr they are ignored.

use std::fmt::Display;
use std::io::{self, Write};

use serde::Serialize;

use crate::cli::GlobalArgs;

/// Prints `value` as pretty JSON on stdout, followed by a newline.
pub fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    serde_json::to_writer_pretty(&mut stdout, value).map_err(|e| match e.io_error_kind() {
        Some(kind) => anyhow::Error::new(io::Error::from(kind)),
        None => anyhow::Error::new(e),
    })?;
    writeln!(stdout)?;
    stdout.flush()?;
    Ok(())
}

/// Prints a line of human output on stderr, unless `--quiet`.
pub fn say(global: &GlobalArgs, text: impl Display) {
    if !global.quiet {
        crate::progress::suspend(|| {
            let _ = writeln!(io::stderr().lock(), "{text}");
        });
    }
}

/// Formats a byte count the way the tables show it (1 decimal, binary units).
pub fn bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

/// Formats rows as aligned columns (two spaces between columns).
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let format_row = |cells: Vec<&str>| {
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        line.trim_end().to_string()
    };
    let mut out = vec![format_row(header.to_vec())];
    out.extend(
        rows.iter()
            .map(|r| format_row(r.iter().map(String::as_str).collect())),
    );
    out.join("\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn tables_align() {
        let t = super::table(
            &["A", "BB"],
            &[
                vec!["long".into(), "x".into()],
                vec!["s".into(), "y".into()],
            ],
        );
        assert_eq!(t, "A     BB\nlong  x\ns     y");
    }
}
