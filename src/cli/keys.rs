//! `authctl keys list|rotate|retire` (SPEC §9): the operator's view of the signing
//! keys in the database. `list` is read-only; `rotate` and `retire` take effect on
//! every running server within seconds (see `service::keys`).

use clap::{Args, Subcommand};
use jsonwebtoken::Algorithm;

use super::open_service;
use super::output::{self, OutputFormat, outln};
use crate::config::Settings;
use crate::error::Result;
use crate::service::keys::KeyInfo;
use crate::store::Access;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List the signing keys: kid, algorithm, state (current, previous, retired)
    List(ListArgs),
    /// Make a new current signing key; the previous one verifies until its tokens expire
    Rotate(RotateArgs),
    /// Stop trusting a key now (a leaked key): its tokens are refused at once
    Retire(RetireArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    /// Algorithm of the new key (HS256, HS384, HS512, EdDSA, ES256) [default: the configured ALGORITHM]
    #[arg(long, value_name = "ALG", value_parser = crate::config::types::parse_algorithm, conflicts_with = "id_token")]
    pub algorithm: Option<Algorithm>,
    /// Rotate the OpenID Connect provider's ID-token key of this algorithm instead
    /// (RS256, EdDSA, ES256) [default when given without a value: RS256]
    #[arg(long, value_name = "ALG", num_args = 0..=1, default_missing_value = "RS256",
        value_parser = str::parse::<crate::tokens::id_token::IdAlg>)]
    pub id_token: Option<crate::tokens::id_token::IdAlg>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct RetireArgs {
    /// The key id, as `keys list` shows it
    #[arg(value_name = "KID", allow_hyphen_values = true)]
    pub kid: String,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

pub async fn run(settings: &Settings, cmd: KeysCommand) -> Result<u8> {
    let access = match cmd {
        KeysCommand::List(_) => Access::ReadOnly,
        _ => Access::ReadWrite,
    };
    let service = open_service(settings, access).await?;
    match cmd {
        KeysCommand::List(args) => {
            let keys = service.list_keys().await?;
            match args.output {
                OutputFormat::Json => output::print_json(&keys),
                OutputFormat::Table => print_table(&keys),
            }
        }
        KeysCommand::Rotate(RotateArgs {
            id_token: Some(alg),
            output: format,
            ..
        }) => {
            let (kid, alg) = service.rotate_id_key(alg).await?;
            match format {
                OutputFormat::Json => output::print_json(&serde_json::json!({
                    "kid": kid, "alg": alg, "state": "current", "use": "id_token"
                })),
                OutputFormat::Table => outln!(
                    "new current ID-token key {kid} ({alg}); the previous one verifies until its \
                     ID tokens expire; running servers pick it up within seconds"
                ),
            }
        }
        KeysCommand::Rotate(args) => {
            let key = service.rotate_keys(args.algorithm).await?;
            match args.output {
                OutputFormat::Json => output::print_json(&key),
                OutputFormat::Table => outln!(
                    "new current key {} ({}); the previous one verifies until its tokens expire; \
                     running servers pick it up within seconds",
                    key.kid,
                    key.alg
                ),
            }
        }
        KeysCommand::Retire(args) => {
            service.retire_key(&args.kid).await?;
            match args.output {
                OutputFormat::Json => {
                    output::print_json(&serde_json::json!({ "retired": args.kid }))
                }
                OutputFormat::Table => outln!(
                    "retired key {}: tokens it signed are refused from now on",
                    args.kid
                ),
            }
        }
    }
    service.store().close().await;
    Ok(0)
}

fn print_table(keys: &[KeyInfo]) {
    let mut t = output::table(&["KID", "USE", "ALG", "STATE", "CREATED", "EXPIRES"]);
    for k in keys {
        t.add_row(vec![
            k.kid.clone(),
            k.use_.to_owned(),
            k.alg.clone(),
            k.state.clone(),
            k.created_at.to_rfc3339(),
            k.expires_at.map(|e| e.to_rfc3339()).unwrap_or_default(),
        ]);
    }
    outln!("{t}");
}
