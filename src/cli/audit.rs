//! `authctl audit …`: reading the audit log (SPEC §10). Read-only: it never writes.

use clap::{Args, Subcommand};

use super::open_service;
use super::output::{self, OutputFormat};
use crate::config::{self, Settings};
use crate::domain::UserRef;
use crate::error::Result;
use crate::service::AuditKind;
use crate::service::audit::AuditQuery;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List audit events, newest first
    List(ListArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only events about this user: a numeric id (also of a deleted user), an email or
    /// a username
    #[arg(long, value_name = "USER", value_parser = parse_user_ref)]
    pub user: Option<UserRef>,
    /// Only events of this kind
    #[arg(long, value_enum, value_name = "KIND")]
    pub kind: Option<AuditKind>,
    /// Only events of the last DURATION (e.g. 15m, 24h, 7d)
    #[arg(long, value_name = "DURATION", value_parser = config::parse_duration)]
    pub since: Option<std::time::Duration>,
    /// Show at most this many events
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub limit: u32,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

fn parse_user_ref(s: &str) -> std::result::Result<UserRef, String> {
    s.parse()
}

pub async fn run(settings: &Settings, cmd: AuditCommand) -> Result<u8> {
    match cmd {
        AuditCommand::List(args) => {
            let service = open_service(settings, crate::store::Access::ReadOnly).await?;
            let events = service
                .audit_list(&AuditQuery {
                    user: args.user,
                    kind: args.kind,
                    since: args.since,
                    limit: args.limit,
                })
                .await?;
            match args.output {
                OutputFormat::Json => output::print_json(&events),
                OutputFormat::Table => {
                    let mut t =
                        output::table(&["AT", "KIND", "USER", "FAMILY", "IP", "REQUEST", "DETAIL"]);
                    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
                    for e in events {
                        let user = match (e.user_id, e.username) {
                            (Some(id), Some(name)) => format!("{id} ({name})"),
                            (Some(id), None) => id.to_string(),
                            (None, _) => "-".into(),
                        };
                        t.add_row(vec![
                            e.at.format("%Y-%m-%d %H:%M:%SZ").to_string(),
                            e.kind,
                            user,
                            or_dash(e.family_id.map(|f| f.to_string())),
                            or_dash(e.ip),
                            or_dash(e.request_id),
                            e.detail.to_string(),
                        ]);
                    }
                    println!("{t}");
                }
            }
        }
    }
    Ok(0)
}
