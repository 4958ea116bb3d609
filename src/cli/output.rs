//! Human tables or JSON for scripts, and the one way commands write to stdout.
//!
//! Every line goes through [`write_line`] (the [`outln!`] macro): `println!` panics
//! when stdout is a closed pipe (`authctl user list | head -1`: Rust ignores SIGPIPE,
//! so the write fails with EPIPE). Here a closed pipe ends the process quietly with
//! exit 0 — the reader has what it wanted — and any other write error is one line on
//! stderr and exit 1. Never a panic.

use std::fmt;
use std::io::Write;

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned table for people
    #[default]
    Table,
    /// One JSON document for scripts
    Json,
}

/// `println!` for commands: see the module comment.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::output::write_line(format_args!($($arg)*))
    };
}
pub(crate) use outln;

/// Writes one line to stdout; a closed pipe exits 0 at once (see the module comment).
pub fn write_line(line: fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let written = out
        .write_fmt(line)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    if let Err(e) = written {
        stdout_failed(&e);
    }
}

/// Writes bytes as they are (a completion script) to stdout.
pub fn write_bytes(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
        stdout_failed(&e);
    }
}

fn stdout_failed(e: &std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    // Reporting on stderr may fail too (closed as well): then there is nobody to tell.
    let _ = writeln!(
        std::io::stderr(),
        "error: cannot write to standard output: {e}"
    );
    std::process::exit(i32::from(crate::error::exit::FAILURE));
}

pub fn print_json(value: &impl Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => outln!("{s}"),
        Err(e) => eprintln!("error: cannot render JSON: {e}"),
    }
}

pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED)
        .set_header(header.to_vec());
    t
}

/// Key/value pairs, one per line.
pub fn print_pairs(pairs: &[(&str, String)]) {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in pairs {
        outln!("{k:<width$}  {v}");
    }
}
