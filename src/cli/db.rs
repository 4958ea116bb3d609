//! `authctl db backup|copy` (SPEC §17): an online backup of a SQLite database, and a
//! copy of every table into another database (SQLite ↔ PostgreSQL), over the
//! streaming copy in [`crate::store::copy`].

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde::Serialize;

use super::output::{self, OutputFormat, outln};
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::store::copy::{self, TableCount};
use crate::store::{DatabaseUrl, backup};

/// What `db copy` says about writes made while it runs.
const NOT_CARRIED_OVER: &str = "the source was read in one snapshot taken when the copy began: \
     writes made to it during the copy are not carried over";

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Write a consistent copy of the SQLite database to FILE while the server runs
    /// (mode 0600; an existing FILE is refused). PostgreSQL: use pg_dump
    Backup(BackupArgs),
    /// Copy every table of this database into the empty database at --to (SQLite ↔
    /// PostgreSQL), migrating it first
    Copy(CopyArgs),
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The new backup file (must not exist)
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// The target database: sqlite://PATH or postgres://… (it must hold no user)
    /// [env: AUTHCTL_COPY_TO, which keeps a password out of the process list]
    #[arg(
        long,
        value_name = "URL",
        env = "AUTHCTL_COPY_TO",
        hide_env_values = true
    )]
    pub to: String,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// `db copy --output json`.
#[derive(Debug, Serialize)]
struct CopyReport {
    /// Both URLs with their passwords redacted.
    source: String,
    target: String,
    /// Per table in copy order: `{"table": "users", "rows": 3}`.
    tables: Vec<TableCount>,
    /// Tables left out on purpose: `{"table": "rate_limits", "reason": "…"}`.
    skipped: Vec<Skipped>,
    note: &'static str,
}

#[derive(Debug, Serialize)]
struct Skipped {
    table: &'static str,
    reason: &'static str,
}

pub async fn run(settings: &Settings, cmd: DbCommand) -> Result<u8> {
    match cmd {
        DbCommand::Backup(args) => {
            let bytes = backup::backup_sqlite(&settings.database_url, &args.file).await?;
            outln!(
                "backup written to {} ({bytes} bytes, mode 0600)",
                args.file.display()
            );
            Ok(0)
        }
        DbCommand::Copy(args) => copy_to(settings, &args).await,
    }
}

async fn copy_to(settings: &Settings, args: &CopyArgs) -> Result<u8> {
    // Parsed here, not by clap: its error would echo the URL, password and all.
    let target = DatabaseUrl::parse(&args.to)
        .map_err(|why| Error::config(format!("--to: the URL {why}")))?;
    let source = &settings.database_url;
    if target.expose() == source.expose() {
        return Err(Error::config("--to names the database being copied"));
    }
    let human = args.output == OutputFormat::Table;
    if human {
        eprintln!("copying {source} to {target}; {NOT_CARRIED_OVER}");
    }
    let tables = copy::copy(source, &target, |t| {
        if human {
            eprintln!("  {}: {} rows", t.table, t.rows);
        }
    })
    .await?;
    match args.output {
        OutputFormat::Json => output::print_json(&CopyReport {
            source: source.redacted(),
            target: target.redacted(),
            tables,
            skipped: copy::SKIPPED
                .iter()
                .map(|&(table, reason)| Skipped { table, reason })
                .collect(),
            note: NOT_CARRIED_OVER,
        }),
        OutputFormat::Table => {
            let mut t = output::table(&["TABLE", "ROWS"]);
            for c in &tables {
                t.add_row(vec![c.table.to_string(), c.rows.to_string()]);
            }
            outln!("{t}");
            for (table, reason) in copy::SKIPPED {
                outln!("not copied: {table} ({reason})");
            }
            outln!("note: {NOT_CARRIED_OVER}");
        }
    }
    Ok(0)
}
