//! `authctl apikey create|list|revoke` (SPEC §15): keys for services, never for
//! people. `create` prints the key once; afterwards only its digest exists.

use clap::{Args, Subcommand};

use super::open_service;
use super::output::{self, OutputFormat, outln};
use crate::config::{self, Settings};
use crate::domain::Scope;
use crate::error::Result;
use crate::service::admin::ApiKeyInfo;
use crate::store::Access;

#[derive(Debug, Subcommand)]
pub enum ApikeyCommand {
    /// Create a key with the given scopes and print it once
    Create(CreateArgs),
    /// List the keys (never the keys themselves)
    List(ListArgs),
    /// Revoke a key: refused at once, by every server on the database
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// A name that says which service holds the key
    #[arg(long)]
    pub name: String,
    /// What the key may do (repeatable; none implies another)
    #[arg(long = "scope", value_name = "SCOPE", value_enum, required = true, num_args = 1..)]
    pub scopes: Vec<Scope>,
    /// Expire the key after this long (e.g. 90d); default: no expiry
    #[arg(long, value_name = "DURATION", value_parser = config::parse_duration)]
    pub expires: Option<std::time::Duration>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The key's id, as `apikey list` shows it
    #[arg(value_name = "ID")]
    pub id: i64,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

fn when(d: Option<chrono::DateTime<chrono::Utc>>) -> String {
    d.map_or_else(
        || "-".into(),
        |d| d.format("%Y-%m-%d %H:%M:%SZ").to_string(),
    )
}

fn scopes(info: &ApiKeyInfo) -> String {
    Scope::join(&info.scopes)
}

pub async fn run(settings: &Settings, cmd: ApikeyCommand) -> Result<u8> {
    let access = match cmd {
        ApikeyCommand::List(_) => Access::ReadOnly,
        _ => Access::ReadWrite,
    };
    let service = open_service(settings, access).await?;
    match cmd {
        ApikeyCommand::Create(args) => {
            let created = service
                .create_api_key(&args.name, &args.scopes, args.expires)
                .await?;
            match args.output {
                OutputFormat::Json => output::print_json(&created),
                OutputFormat::Table => {
                    outln!(
                        "created API key {} ({}) with scopes {}; it is shown only now:",
                        created.info.id,
                        created.info.name,
                        scopes(&created.info)
                    );
                    outln!("{}", created.key);
                }
            }
        }
        ApikeyCommand::List(args) => {
            let keys = service.list_api_keys().await?;
            match args.output {
                OutputFormat::Json => output::print_json(&keys),
                OutputFormat::Table => {
                    let mut t = output::table(&[
                        "ID",
                        "NAME",
                        "SCOPES",
                        "CREATED",
                        "EXPIRES",
                        "LAST USED",
                        "REVOKED",
                    ]);
                    for k in &keys {
                        t.add_row(vec![
                            k.id.to_string(),
                            k.name.clone(),
                            scopes(k),
                            when(Some(k.created_at)),
                            when(k.expires_at),
                            when(k.last_used_at),
                            when(k.revoked_at),
                        ]);
                    }
                    outln!("{t}");
                }
            }
        }
        ApikeyCommand::Revoke(args) => {
            let info = service.revoke_api_key(args.id).await?;
            match args.output {
                OutputFormat::Json => output::print_json(&info),
                OutputFormat::Table => outln!("revoked API key {} ({})", info.id, info.name),
            }
        }
    }
    Ok(0)
}
