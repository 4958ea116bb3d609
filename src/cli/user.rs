//! `authctl user …`

use super::output::outln;
use std::io::{BufRead, IsTerminal};

use clap::Args;
use serde::Serialize;

use super::output::{self, OutputFormat};
use super::{RoleCommand, UserCommand, open_service};
use crate::config::Settings;
use crate::domain::{Email, Password, Role, UserRef, Username};
use crate::error::{Error, Result};
use crate::service::RequestContext;
use crate::store::{Access, User};

#[derive(Debug, Args)]
pub struct AddArgs {
    /// Email address (unique, case-insensitive)
    #[arg(long)]
    pub email: String,
    /// Username: 3-32 of A-Z a-z 0-9 _ . - (unique, case-insensitive)
    #[arg(long)]
    pub username: String,
    /// Read the password from the first line of standard input
    #[arg(long)]
    pub password_stdin: bool,
    /// Create the user disabled
    #[arg(long)]
    pub inactive: bool,
    /// Give the user this role (repeatable): [a-z][a-z0-9_.:-]{0,63}
    #[arg(long = "role", value_name = "ROLE", value_parser = parse_role)]
    pub roles: Vec<Role>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct RoleArgs {
    /// The user: a numeric id, an email or a username
    #[arg(value_name = "USER", value_parser = parse_user_ref)]
    pub user: UserRef,
    /// The roles: [a-z][a-z0-9_.:-]{0,63}
    #[arg(value_name = "ROLE", required = true, value_parser = parse_role)]
    pub roles: Vec<Role>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

fn parse_role(s: &str) -> std::result::Result<Role, String> {
    Role::parse(s)
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Show at most this many users
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub limit: u32,
    /// Only users holding this role
    #[arg(long, value_name = "ROLE", value_parser = parse_role)]
    pub role: Option<Role>,
}

#[derive(Debug, Args)]
pub struct TargetArgs {
    /// The user: a numeric id, an email or a username
    #[arg(value_name = "USER", value_parser = parse_user_ref)]
    pub user: UserRef,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct SetPasswordArgs {
    /// The user: a numeric id, an email or a username
    #[arg(value_name = "USER", value_parser = parse_user_ref)]
    pub user: UserRef,
    /// Read the password from the first line of standard input
    #[arg(long)]
    pub password_stdin: bool,
}

fn parse_user_ref(s: &str) -> std::result::Result<UserRef, String> {
    s.parse()
}

#[derive(Serialize)]
struct Changed<'a> {
    user: &'a User,
    revoked_sessions: u64,
}

pub async fn run(settings: &Settings, cmd: UserCommand) -> Result<u8> {
    match cmd {
        UserCommand::Add(args) => {
            // Validate everything before asking for a password.
            let mut errors = Vec::new();
            let email = Email::parse(&args.email)
                .map_err(|m| errors.push(crate::error::FieldError::new("--email", m)));
            let username = Username::parse(&args.username)
                .map_err(|m| errors.push(crate::error::FieldError::new("--username", m)));
            let (Ok(email), Ok(username)) = (email, username) else {
                return Err(Error::Validation(errors));
            };
            let password = read_password(args.password_stdin)?;
            let service = open_service(settings, Access::ReadWrite).await?;
            let user = service
                .add_user(
                    &RequestContext::none(),
                    email,
                    username,
                    Some(&password),
                    !args.inactive,
                    &args.roles,
                )
                .await?;
            match args.output {
                OutputFormat::Json => output::print_json(&user),
                OutputFormat::Table => outln!(
                    "created user {} ({} <{}>){}",
                    user.id,
                    user.username,
                    user.email,
                    if user.is_active { "" } else { ", disabled" }
                ),
            }
        }
        UserCommand::List(args) => {
            let service = open_service(settings, Access::ReadOnly).await?;
            let users = service.list_users(args.limit, args.role.as_ref()).await?;
            match args.output {
                OutputFormat::Json => output::print_json(&users),
                OutputFormat::Table => {
                    let mut t =
                        output::table(&["ID", "USERNAME", "EMAIL", "ACTIVE", "ROLES", "CREATED"]);
                    for u in &users {
                        t.add_row(vec![
                            u.id.to_string(),
                            u.username.clone(),
                            u.email.clone(),
                            if u.is_active { "yes" } else { "no" }.to_string(),
                            u.roles.join(","),
                            u.created_at.format("%Y-%m-%d %H:%M:%SZ").to_string(),
                        ]);
                    }
                    outln!("{t}");
                }
            }
        }
        UserCommand::Disable(args) => {
            let service = open_service(settings, Access::ReadWrite).await?;
            let (user, revoked) = service
                .set_active(&RequestContext::none(), &args.user, false)
                .await?;
            print_changed(args.output, &user, revoked, "disabled");
        }
        UserCommand::Enable(args) => {
            let service = open_service(settings, Access::ReadWrite).await?;
            let (user, revoked) = service
                .set_active(&RequestContext::none(), &args.user, true)
                .await?;
            print_changed(args.output, &user, revoked, "enabled");
        }
        UserCommand::Delete(args) => {
            let service = open_service(settings, Access::ReadWrite).await?;
            let user = service
                .delete_user(&RequestContext::none(), &args.user)
                .await?;
            print_changed(args.output, &user, 0, "deleted");
        }
        UserCommand::SetPassword(args) => {
            let password = read_password(args.password_stdin)?;
            let service = open_service(settings, Access::ReadWrite).await?;
            let (user, revoked) = service
                .set_password(&RequestContext::none(), &args.user, &password)
                .await?;
            print_changed(OutputFormat::Table, &user, revoked, "password changed for");
        }
        UserCommand::Show(args) => {
            let service = open_service(settings, Access::ReadOnly).await?;
            let d = service.user_details(&args.user).await?;
            match args.output {
                OutputFormat::Json => output::print_json(&d),
                OutputFormat::Table => output::print_pairs(&[
                    ("id", d.user.id.to_string()),
                    ("username", d.user.username.clone()),
                    ("email", d.user.email.clone()),
                    ("active", if d.user.is_active { "yes" } else { "no" }.into()),
                    ("roles", d.user.roles.join(",")),
                    (
                        "mfa enabled",
                        if d.user.mfa_enabled { "yes" } else { "no" }.into(),
                    ),
                    (
                        "created",
                        d.user.created_at.format("%Y-%m-%d %H:%M:%SZ").to_string(),
                    ),
                    ("failed logins", d.failed_logins.to_string()),
                    (
                        "locked until",
                        match d.locked_until {
                            None => "not locked".into(),
                            Some(_) if d.permanently_locked => {
                                "until an operator unlocks it (locked for good)".into()
                            }
                            Some(u) => u.format("%Y-%m-%d %H:%M:%SZ").to_string(),
                        },
                    ),
                    ("locks", d.lock_count.to_string()),
                    (
                        "failures since last success",
                        d.consecutive_failures.to_string(),
                    ),
                ]),
            }
        }
        UserCommand::Sessions(args) => {
            let service = open_service(settings, Access::ReadOnly).await?;
            let (_, sessions) = service.user_sessions(&args.user).await?;
            match args.output {
                OutputFormat::Json => output::print_json(&sessions),
                OutputFormat::Table => {
                    let mut t = output::table(&[
                        "ID",
                        "CREATED",
                        "LAST USED",
                        "EXPIRES",
                        "IP",
                        "USER AGENT",
                    ]);
                    let when = |d: chrono::DateTime<chrono::Utc>| {
                        d.format("%Y-%m-%d %H:%M:%SZ").to_string()
                    };
                    for s in &sessions {
                        t.add_row(vec![
                            s.id.to_string(),
                            when(s.created_at),
                            s.last_used_at.map_or_else(|| "-".into(), when),
                            when(s.expires_at),
                            s.ip.clone().unwrap_or_else(|| "-".into()),
                            s.user_agent.clone().unwrap_or_else(|| "-".into()),
                        ]);
                    }
                    println!("{t}");
                }
            }
        }
        UserCommand::Verify(args) => {
            let service = open_service(settings, Access::ReadWrite).await?;
            let user = service.mark_email_verified(&args.user).await?;
            match args.output {
                OutputFormat::Json => output::print_json(&user),
                OutputFormat::Table => {
                    println!("verified the email of user {} ({})", user.id, user.username)
                }
            }
        }
        UserCommand::Import(args) => return super::transfer::import(settings, args).await,
        UserCommand::Export(args) => return super::transfer::export(settings, args).await,
        UserCommand::ResetLink(args) => {
            let service = open_service(settings, Access::ReadWrite).await?;
            let reset = service
                .reset_link(&crate::service::RequestContext::none(), &args.user)
                .await?;
            match args.output {
                OutputFormat::Json => output::print_json(&reset),
                OutputFormat::Table => match &reset.link {
                    Some(link) => println!("{link}"),
                    None => println!("{}", reset.token),
                },
            }
        }
        UserCommand::MfaReset(args) => {
            let service = open_service(settings, Access::ReadWrite).await?;
            let (user, was_on) = service.mfa_reset(&args.user).await?;
            match args.output {
                OutputFormat::Json => output::print_json(&serde_json::json!({
                    "user": user,
                    "was_enabled": was_on,
                })),
                OutputFormat::Table => outln!(
                    "removed TOTP and recovery codes of user {} ({}){}",
                    user.id,
                    user.username,
                    if was_on { "" } else { "; TOTP was not on" }
                ),
            }
        }
        UserCommand::Role(RoleCommand::Add(args)) => {
            let service = open_service(settings, Access::ReadWrite).await?;
            let user = service
                .add_roles(&RequestContext::none(), &args.user, &args.roles)
                .await?;
            print_roles(args.output, &user);
        }
        UserCommand::Role(RoleCommand::Remove(args)) => {
            let service = open_service(settings, Access::ReadWrite).await?;
            let user = service
                .remove_roles(&RequestContext::none(), &args.user, &args.roles)
                .await?;
            print_roles(args.output, &user);
        }
        UserCommand::Unlock(args) => {
            let service = open_service(settings, Access::ReadWrite).await?;
            let (user, was_locked) = service.unlock(&RequestContext::none(), &args.user).await?;
            match args.output {
                OutputFormat::Json => output::print_json(&serde_json::json!({
                    "user": user,
                    "was_locked": was_locked,
                })),
                OutputFormat::Table => println!(
                    "unlocked user {} ({}){}",
                    user.id,
                    user.username,
                    if was_locked {
                        ""
                    } else {
                        "; it was not locked"
                    }
                ),
            }
        }
    }
    Ok(0)
}

fn print_roles(format: OutputFormat, user: &User) {
    match format {
        OutputFormat::Json => output::print_json(user),
        OutputFormat::Table => outln!(
            "user {} ({}) now has roles: {}",
            user.id,
            user.username,
            if user.roles.is_empty() {
                "none".to_owned()
            } else {
                user.roles.join(", ")
            }
        ),
    }
}

fn print_changed(format: OutputFormat, user: &User, revoked: u64, what: &str) {
    match format {
        OutputFormat::Json => output::print_json(&Changed {
            user,
            revoked_sessions: revoked,
        }),
        OutputFormat::Table => outln!(
            "{what} user {} ({}); {revoked} session(s) revoked",
            user.id,
            user.username
        ),
    }
}

/// One line from stdin (trailing newline stripped, as `docker login --password-stdin`
/// does), or a no-echo prompt on a terminal, asked twice.
fn read_password(from_stdin: bool) -> Result<Password> {
    let raw = if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map_err(|e| {
            Error::Internal(anyhow::Error::new(e).context("reading the password from stdin"))
        })?;
        let line = line.strip_suffix('\n').unwrap_or(&line);
        line.strip_suffix('\r').unwrap_or(line).to_owned()
    } else if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ")
            .map_err(|e| Error::Internal(anyhow::Error::new(e).context("reading the password")))?;
        let second = rpassword::prompt_password("Repeat password: ")
            .map_err(|e| Error::Internal(anyhow::Error::new(e).context("reading the password")))?;
        if first != second {
            return Err(Error::validation("password", "the two entries differ"));
        }
        first
    } else {
        return Err(Error::validation(
            "password",
            "standard input is not a terminal: pass the password with --password-stdin",
        ));
    };
    Password::parse(&raw).map_err(|m| Error::validation("password", m))
}
