//! `authctl token …`

use super::output::outln;
use std::io::Read;

use clap::{ArgGroup, Args};
use serde::Serialize;

use super::output::{self, OutputFormat};
use super::{TokenCommand, open_service};
use crate::config::Settings;
use crate::domain::{FamilyId, UserId, UserRef};
use crate::error::{Error, Result};
use crate::service::Inspection;
use crate::store::Access;

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// An access token (JWT) or a refresh token; `-` reads it from standard input
    // Refresh tokens are base64url and may start with '-'.
    #[arg(value_name = "TOKEN", allow_hyphen_values = true)]
    pub token: String,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["family_id", "token", "user"])))]
pub struct RevokeArgs {
    /// The family (session) id: the `sid` claim, as `token inspect` shows it
    #[arg(value_name = "FAMILY_ID")]
    pub family_id: Option<FamilyId>,
    /// Revoke the family of this access or refresh token (`-` reads standard input)
    #[arg(long, value_name = "TOKEN", allow_hyphen_values = true)]
    pub token: Option<String>,
    /// Revoke every family of this user (id, email or username)
    #[arg(long, value_name = "USER")]
    pub user: Option<UserRef>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Serialize)]
struct Revoked {
    revoked_families: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<UserId>,
    count: u64,
}

fn token_arg(raw: &str) -> Result<String> {
    if raw != "-" {
        return Ok(raw.trim().to_owned());
    }
    let mut s = String::new();
    std::io::stdin()
        .take(64 * 1024)
        .read_to_string(&mut s)
        .map_err(|e| {
            Error::Internal(anyhow::Error::new(e).context("reading the token from stdin"))
        })?;
    Ok(s.trim().to_owned())
}

pub async fn run(settings: &Settings, cmd: TokenCommand) -> Result<u8> {
    match cmd {
        TokenCommand::Inspect(args) => {
            let token = token_arg(&args.token)?;
            let service = open_service(settings, Access::ReadOnly).await?;
            let inspection = service.inspect(&token).await?;
            match args.output {
                OutputFormat::Json => output::print_json(&inspection),
                OutputFormat::Table => print_inspection(&inspection),
            }
            // A token that is not usable any more is exit 5, after showing why.
            Ok(if inspection.valid {
                0
            } else {
                crate::error::exit::INVALID_TOKEN
            })
        }
        TokenCommand::RevokeFamily(args) => {
            let service = open_service(settings, Access::ReadWrite).await?;
            let report = if let Some(user) = &args.user {
                let (user, n) = service
                    .revoke_user(&crate::service::RequestContext::none(), user)
                    .await?;
                Revoked {
                    revoked_families: vec![],
                    user_id: Some(user.id),
                    count: n,
                }
            } else {
                let family = match (&args.family_id, &args.token) {
                    (Some(f), _) => *f,
                    (None, Some(t)) => service.family_of(&token_arg(t)?).await?,
                    (None, None) => {
                        return Err(Error::validation(
                            "target",
                            "give FAMILY_ID, --token or --user",
                        ));
                    }
                };
                service.revoke_family(family).await?;
                Revoked {
                    revoked_families: vec![family.to_string()],
                    user_id: None,
                    count: 1,
                }
            };
            match args.output {
                OutputFormat::Json => output::print_json(&report),
                OutputFormat::Table => match report.user_id {
                    Some(id) => outln!("revoked {} session(s) of user {id}", report.count),
                    None => outln!("revoked family {}", report.revoked_families.join(", ")),
                },
            }
            Ok(0)
        }
        TokenCommand::Prune(args) => {
            let service = open_service(settings, Access::ReadWrite).await?;
            let report = service.prune().await?;
            match args.output {
                OutputFormat::Json => output::print_json(&report),
                OutputFormat::Table => outln!(
                    "pruned {} expired token(s) and {} session(s)",
                    report.tokens,
                    report.families
                ),
            }
            Ok(0)
        }
    }
}

fn print_inspection(i: &Inspection) {
    let time =
        |t: Option<chrono::DateTime<chrono::Utc>>| t.map_or("-".to_string(), |t| t.to_rfc3339());
    let mut pairs = vec![
        ("kind", format!("{:?}", i.kind).to_lowercase()),
        ("valid", i.valid.to_string()),
        ("state", format!("{:?}", i.state).to_lowercase()),
        ("family_id", i.family_id.to_string()),
        ("user_id", i.user_id.to_string()),
        ("username", i.username.clone().unwrap_or_else(|| "-".into())),
        ("issued_at", time(i.issued_at)),
        ("expires_at", time(i.expires_at)),
    ];
    if let Some(c) = &i.claims {
        pairs.push(("issuer", c.iss.clone()));
        pairs.push(("jti", c.jti.clone()));
    }
    output::print_pairs(&pairs);
}
