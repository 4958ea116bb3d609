//! `db backup FILE` (SPEC §17): a consistent copy of a live SQLite database, taken
//! with `VACUUM INTO` on a read-only connection. SQLite writes the copy from one read
//! transaction, so it holds exactly the commits made before it began, while `serve`
//! goes on writing (WAL mode: readers and the writer do not block each other).
//!
//! The file holds password hashes and signing keys: it is created here, empty and
//! mode 0600, before SQLite fills it. An existing FILE is refused, never overwritten.

use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};

use super::DatabaseUrl;
use crate::error::{Error, Result};

/// Copies the SQLite database at `url` into the new file `file`; returns its size.
pub async fn backup_sqlite(url: &DatabaseUrl, file: &Path) -> Result<u64> {
    if url.is_postgres() {
        return Err(Error::Refused {
            message: "db backup copies SQLite databases only".into(),
            hint: Some(
                "back up PostgreSQL with pg_dump (e.g. `pg_dump -Fc -f authctl.dump \"$DATABASE_URL\"`)",
            ),
        });
    }
    let lower = url.expose().to_ascii_lowercase();
    if lower.contains(":memory:") || lower.contains("mode=memory") {
        return Err(Error::Refused {
            message: "an in-memory SQLite database has no file to back up".into(),
            hint: None,
        });
    }
    let options = SqliteConnectOptions::from_str(url.expose())
        .map_err(|e| Error::config(format!("DATABASE_URL is not a usable SQLite URL: {e}")))?;
    if !options.get_filename().exists() {
        return Err(Error::Unavailable(format!(
            "the SQLite database {} does not exist",
            options.get_filename().display()
        )));
    }
    let Some(target) = file.to_str() else {
        return Err(Error::Refused {
            message: format!("{} is not a UTF-8 path", file.display()),
            hint: None,
        });
    };
    create_private(file)?;
    let written = vacuum_into(options, target).await;
    if written.is_err() {
        // Nothing half-written is left behind to be mistaken for a backup.
        let _ = std::fs::remove_file(file);
    }
    written?;
    std::fs::metadata(file)
        .map(|m| m.len())
        .map_err(|e| Error::Internal(anyhow::anyhow!("reading {}: {e}", file.display())))
}

async fn vacuum_into(options: SqliteConnectOptions, target: &str) -> Result<()> {
    let options = options
        .read_only(true)
        .create_if_missing(false)
        .busy_timeout(std::time::Duration::from_secs(5))
        // One VACUUM INTO of a large file is long by nature, not a slow query.
        .disable_statement_logging();
    let mut conn = SqliteConnection::connect_with(&options).await?;
    sqlx::query("VACUUM INTO $1")
        .bind(target)
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

/// An empty file only its owner can read; an existing one is refused.
fn create_private(file: &Path) -> Result<()> {
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    match open.open(file) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(Error::Refused {
            message: format!(
                "{} exists; db backup never overwrites a file",
                file.display()
            ),
            hint: Some("choose a new file name, or move the old backup away first"),
        }),
        Err(e) => Err(Error::Refused {
            message: format!("cannot create {}: {e}", file.display()),
            hint: None,
        }),
    }
}
