//! `authctl client add|list|remove|rotate-secret` (SPEC §18): the applications that
//! "sign in with authctl". Operator only (no dynamic registration); a confidential
//! client's secret is printed once, only its digest is stored.

use clap::{Args, Subcommand};

use super::open_service;
use super::output::{self, OutputFormat, outln};
use crate::config::Settings;
use crate::error::Result;
use crate::service::oidc::{ClientInfo, NewClient};
use crate::store::Access;
use crate::tokens::id_token::IdAlg;

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Register a client; prints its client_id (and, unless --public, its secret once)
    Add(AddArgs),
    /// List the clients (never their secrets)
    List(ListArgs),
    /// Remove a client: its sessions end and its tokens are refused at once
    Remove(TargetArgs),
    /// Give a confidential client a new secret; the old one fails from now on
    RotateSecret(TargetArgs),
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// A name people see on the login page ("to continue to NAME")
    #[arg(long)]
    pub name: String,
    /// A redirect URI, compared as an exact string (repeatable); http://127.0.0.1/… and
    /// http://[::1]/… match any port (RFC 8252)
    #[arg(long = "redirect-uri", value_name = "URI", required = true, num_args = 1..)]
    pub redirect_uris: Vec<String>,
    /// A public client (an SPA, a mobile app): no secret, PKCE only
    #[arg(long)]
    pub public: bool,
    /// Where RP-initiated logout may send the browser back to (repeatable, exact)
    #[arg(long = "post-logout-redirect-uri", value_name = "URI", num_args = 1..)]
    pub post_logout_redirect_uris: Vec<String>,
    /// The ID token's signing algorithm
    #[arg(long, value_name = "ALG", default_value = "RS256", value_parser = str::parse::<IdAlg>)]
    pub id_token_alg: IdAlg,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct TargetArgs {
    /// The client_id, as `client list` shows it
    #[arg(value_name = "ID", allow_hyphen_values = true)]
    pub id: String,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

fn kind(c: &ClientInfo) -> &'static str {
    if c.public { "public" } else { "confidential" }
}

pub async fn run(settings: &Settings, cmd: ClientCommand) -> Result<u8> {
    let access = match cmd {
        ClientCommand::List(_) => Access::ReadOnly,
        _ => Access::ReadWrite,
    };
    let service = open_service(settings, access).await?;
    match cmd {
        ClientCommand::Add(args) => {
            let created = service
                .client_add(NewClient {
                    name: args.name,
                    redirect_uris: args.redirect_uris,
                    post_logout_redirect_uris: args.post_logout_redirect_uris,
                    public: args.public,
                    id_token_alg: args.id_token_alg,
                })
                .await?;
            match args.output {
                OutputFormat::Json => output::print_json(&created),
                OutputFormat::Table => {
                    outln!(
                        "created {} client {} ({})",
                        kind(&created),
                        created.client_id,
                        created.name
                    );
                    outln!("client_id:     {}", created.client_id);
                    if let Some(secret) = &created.client_secret {
                        outln!("client_secret: {secret}");
                        outln!("the secret is shown only now");
                    }
                }
            }
        }
        ClientCommand::List(args) => {
            let clients = service.client_list().await?;
            match args.output {
                OutputFormat::Json => output::print_json(&clients),
                OutputFormat::Table => {
                    let mut t = output::table(&[
                        "CLIENT_ID",
                        "NAME",
                        "TYPE",
                        "ID TOKEN",
                        "REDIRECT URIS",
                        "CREATED",
                    ]);
                    for c in &clients {
                        t.add_row(vec![
                            c.client_id.clone(),
                            c.name.clone(),
                            kind(c).to_owned(),
                            c.id_token_alg.to_string(),
                            c.redirect_uris.join(" "),
                            c.created_at.format("%Y-%m-%d %H:%M:%SZ").to_string(),
                        ]);
                    }
                    outln!("{t}");
                }
            }
        }
        ClientCommand::Remove(args) => {
            service.client_remove(&args.id).await?;
            match args.output {
                OutputFormat::Json => {
                    output::print_json(&serde_json::json!({"client_id": args.id, "removed": true}))
                }
                OutputFormat::Table => {
                    outln!("removed client {}; its sessions are revoked", args.id)
                }
            }
        }
        ClientCommand::RotateSecret(args) => {
            let info = service.client_rotate_secret(&args.id).await?;
            let secret = info.client_secret.unwrap_or_default();
            match args.output {
                OutputFormat::Json => output::print_json(
                    &serde_json::json!({"client_id": info.client_id, "client_secret": secret}),
                ),
                OutputFormat::Table => {
                    outln!("new secret for client {} (shown only now):", info.client_id);
                    outln!("{secret}");
                }
            }
        }
    }
    Ok(0)
}
