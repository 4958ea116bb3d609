//! `authctl user import` and `user export` (SPEC §16): JSON Lines, one account a
//! line. Import streams its input line by line (each line bounded) and writes in
//! batches of [`BATCH`] per transaction, so memory stays flat for any file size; a
//! bad line is reported with its number and skipped. Export pages through the
//! accounts by id and writes as it reads.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::Args;
use serde::{Deserialize, Serialize};

use super::open_service;
use super::output::{self, OutputFormat};
use crate::config::Settings;
use crate::domain::{Email, Username};
use crate::error::{Error, Result};
use crate::hashing::PasswordHash;
use crate::service::{Audit, AuditKind, RequestContext};
use crate::store::Access;
use crate::store::import::{ImportRow, OnConflict, RowOutcome, UNUSABLE_HASH};

/// Lines per transaction.
pub const BATCH: usize = 1_000;
/// The longest line read; longer is a bad line (and is skipped without being held).
const MAX_LINE: usize = 64 * 1024;

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// JSON Lines file to read, or - for standard input
    #[arg(value_name = "FILE")]
    pub file: String,
    /// What a line matching an existing account (by email or username) does
    #[arg(long, value_enum, default_value_t = OnConflict::Skip)]
    pub on_conflict: OnConflict,
    /// Check every line and report what would happen; write nothing
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// File to write (created mode 0600); standard output without it
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Include the password hashes
    #[arg(long)]
    pub with_hashes: bool,
}

/// One line, as import reads it and export writes it.
#[derive(Debug, Deserialize, Serialize)]
struct Line {
    email: String,
    username: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    is_active: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email_verified: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    roles: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    created_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Default, Serialize)]
struct Summary {
    created: u64,
    updated: u64,
    skipped: u64,
    failed: u64,
    dry_run: bool,
}

/// A role name as SPEC §15 has it: `[a-z][a-z0-9_.:-]{0,63}`.
fn valid_role(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.:-".contains(c))
}

fn parse_line(
    number: u64,
    raw: &[u8],
    now: DateTime<Utc>,
) -> std::result::Result<ImportRow, String> {
    let text = std::str::from_utf8(raw).map_err(|_| "not UTF-8".to_owned())?;
    let line: Line = serde_json::from_str(text).map_err(|e| format!("not a valid line: {e}"))?;
    let email = Email::parse(&line.email).map_err(|m| format!("email: {m}"))?;
    let username = Username::parse(&line.username).map_err(|m| format!("username: {m}"))?;
    if let Some(hash) = &line.password_hash {
        PasswordHash::check_import(hash)?;
    }
    if let Some(bad) = line.roles.iter().flatten().find(|r| !valid_role(r)) {
        return Err(format!(
            "roles: '{bad}' is not a role name ([a-z][a-z0-9_.:-]{{0,63}})"
        ));
    }
    Ok(ImportRow {
        line: number,
        email_norm: email.normalized(),
        email: email.as_str().to_owned(),
        username_norm: username.normalized(),
        username: username.as_str().to_owned(),
        password_hash: line.password_hash,
        is_active: line.is_active.unwrap_or(true),
        email_verified: line.email_verified.unwrap_or(false),
        created_at: line.created_at.unwrap_or(now),
        roles: line.roles.map(|mut roles| {
            roles.sort();
            roles.dedup();
            roles
        }),
    })
}

/// Reads one line into `buf` (without its newline), keeping at most `MAX_LINE`
/// bytes: `Ok(None)` at the end, `Ok(Some(false))` for a line that was too long
/// (its rest is read and dropped).
fn read_line(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> std::io::Result<Option<bool>> {
    buf.clear();
    let mut too_long = false;
    let mut any = false;
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            return Ok(any.then_some(!too_long));
        }
        any = true;
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (chunk.len(), false),
        };
        if !too_long && buf.len() + take <= MAX_LINE {
            buf.extend_from_slice(&chunk[..take]);
        } else {
            too_long = true;
            buf.clear();
        }
        reader.consume(if done { take + 1 } else { take });
        if done {
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            return Ok(Some(!too_long));
        }
    }
}

pub async fn import(settings: &Settings, args: ImportArgs) -> Result<u8> {
    let service = open_service(settings, Access::ReadWrite).await?;
    let input: Box<dyn BufRead> = if args.file == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        let file = std::fs::File::open(&args.file)
            .map_err(|e| Error::Internal(anyhow::anyhow!("opening {}: {e}", args.file)))?;
        Box::new(std::io::BufReader::new(file))
    };
    let mut input = input;
    let mut summary = Summary {
        dry_run: args.dry_run,
        ..Summary::default()
    };
    let now = Utc::now();
    let mut batch: Vec<ImportRow> = Vec::with_capacity(BATCH);
    let mut buf = Vec::new();
    let mut number = 0u64;
    loop {
        let read = read_line(&mut input, &mut buf)
            .map_err(|e| Error::Internal(anyhow::anyhow!("reading {}: {e}", args.file)))?;
        let Some(fits) = read else { break };
        number += 1;
        if buf.iter().all(u8::is_ascii_whitespace) && fits {
            continue;
        }
        let parsed = if fits {
            parse_line(number, &buf, now)
        } else {
            Err(format!("longer than {MAX_LINE} bytes"))
        };
        match parsed {
            Ok(row) => batch.push(row),
            Err(reason) => {
                summary.failed += 1;
                eprintln!("line {number}: {reason}");
            }
        }
        if batch.len() >= BATCH {
            apply(&service, &mut batch, &args, now, &mut summary).await?;
        }
    }
    apply(&service, &mut batch, &args, now, &mut summary).await?;
    if !args.dry_run {
        let event = Audit::new(AuditKind::UserImported)
            .detail("created", summary.created)
            .detail("updated", summary.updated)
            .detail("skipped", summary.skipped)
            .detail("failed", summary.failed);
        service.audit(&RequestContext::none(), event).await;
    }
    match args.output {
        OutputFormat::Json => output::print_json(&summary),
        OutputFormat::Table => super::output::outln!(
            "{}created {}, updated {}, skipped {}, failed {}",
            if args.dry_run { "dry run: " } else { "" },
            summary.created,
            summary.updated,
            summary.skipped,
            summary.failed
        ),
    }
    Ok(if summary.failed > 0 { 1 } else { 0 })
}

async fn apply(
    service: &crate::service::AuthService,
    batch: &mut Vec<ImportRow>,
    args: &ImportArgs,
    now: DateTime<Utc>,
    summary: &mut Summary,
) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let outcomes = service
        .store()
        .import_batch(batch, args.on_conflict, !args.dry_run, now)
        .await?;
    for (row, outcome) in batch.iter().zip(outcomes) {
        match outcome {
            RowOutcome::Created => summary.created += 1,
            RowOutcome::Updated => summary.updated += 1,
            RowOutcome::Skipped => summary.skipped += 1,
            RowOutcome::Conflict(reason) => {
                summary.failed += 1;
                eprintln!("line {}: {reason}", row.line);
            }
        }
    }
    batch.clear();
    Ok(())
}

pub async fn export(settings: &Settings, args: ExportArgs) -> Result<u8> {
    let service = open_service(settings, Access::ReadOnly).await?;
    let io = |e: std::io::Error| Error::Internal(anyhow::anyhow!("writing the export: {e}"));
    let mut out: Box<dyn Write> = match &args.file {
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
        Some(path) => {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
                options.mode(0o600);
                let file = options.open(path).map_err(io)?;
                // An existing file keeps its mode at open: make it 0600 too.
                file.set_permissions(std::fs::Permissions::from_mode(0o600))
                    .map_err(io)?;
                Box::new(std::io::BufWriter::new(file))
            }
            #[cfg(not(unix))]
            {
                Box::new(std::io::BufWriter::new(options.open(path).map_err(io)?))
            }
        }
    };
    let mut after = 0i64;
    loop {
        let page = service.store().export_page(after, BATCH as i64).await?;
        let Some(last) = page.last() else { break };
        after = last.id.0;
        let ids: Vec<crate::domain::UserId> = page.iter().map(|r| r.id).collect();
        let mut roles: std::collections::HashMap<crate::domain::UserId, Vec<String>> =
            std::collections::HashMap::new();
        for (user, role) in service.store().roles_of_many(&ids).await? {
            roles.entry(user).or_default().push(role);
        }
        for row in page {
            let row_roles = roles.remove(&row.id).unwrap_or_default();
            let hash = (args.with_hashes
                && row.password_hash != UNUSABLE_HASH
                && PasswordHash::parse(&row.password_hash).is_some())
            .then_some(row.password_hash);
            let line = Line {
                email: row.email,
                username: row.username,
                password_hash: hash,
                is_active: Some(row.is_active),
                email_verified: Some(row.email_verified),
                roles: Some(row_roles),
                created_at: Some(row.created_at),
            };
            let text = serde_json::to_string(&line)
                .map_err(|e| Error::Internal(anyhow::Error::new(e).context("encoding a line")))?;
            match writeln!(out, "{text}") {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(0),
                other => other.map_err(io)?,
            }
        }
    }
    match out.flush() {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
        other => other.map(|()| 0).map_err(io),
    }
}
