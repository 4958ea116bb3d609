//! `authctl email test|outbox` (SPEC §13): try the configured transport now, and look
//! at the outbox the server's sender works through (metadata only, never a body or a
//! token).

use clap::{Args, Subcommand};

use super::open_service;
use super::output::{self, OutputFormat, outln};
use crate::config::Settings;
use crate::domain::Email;
use crate::error::Result;
use crate::store::Access;

#[derive(Debug, Subcommand)]
pub enum EmailCommand {
    /// Send one test message now, synchronously (exit 1 with the server's reply)
    Test(TestArgs),
    /// List the outbox: id, kind, recipient, state, attempts, next try, last error
    Outbox(OutboxArgs),
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Where to send the test message
    #[arg(value_name = "ADDRESS", value_parser = Email::parse)]
    pub address: Email,
}

#[derive(Debug, Args)]
pub struct OutboxArgs {
    /// Show at most this many messages, newest first
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

pub async fn run(settings: &Settings, cmd: EmailCommand) -> Result<u8> {
    match cmd {
        EmailCommand::Test(args) => {
            let service = open_service(settings, Access::ReadOnly).await?;
            service.send_test_email(&args.address).await?;
            outln!("sent a test message to {}", args.address.as_str());
        }
        EmailCommand::Outbox(args) => {
            let service = open_service(settings, Access::ReadOnly).await?;
            let rows = service.outbox(args.limit).await?;
            match args.output {
                OutputFormat::Json => output::print_json(&rows),
                OutputFormat::Table => {
                    let mut t = output::table(&[
                        "ID",
                        "KIND",
                        "TO",
                        "STATE",
                        "ATTEMPTS",
                        "NEXT TRY",
                        "LAST ERROR",
                    ]);
                    for r in &rows {
                        t.add_row(vec![
                            r.id.to_string(),
                            r.kind.clone(),
                            r.to.clone(),
                            r.state.clone(),
                            r.attempts.to_string(),
                            r.next_attempt_at
                                .map(|at| at.format("%Y-%m-%d %H:%M:%SZ").to_string())
                                .unwrap_or_default(),
                            r.last_error.clone().unwrap_or_default(),
                        ]);
                    }
                    outln!("{t}");
                }
            }
        }
    }
    Ok(0)
}
