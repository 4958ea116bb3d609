//! The command line: one file per group of subcommands, each a thin
//! parse → service → print over the same core that `serve` uses.

mod apikey;
mod audit;
mod client;
mod config_check;
mod db;
mod email;
mod health;
mod keys;
mod ops;
mod output;
mod token;
mod transfer;
mod user;

use output::outln;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use crate::config::{self, LogFormat, Overrides, Settings};
use crate::error::{Error, Result};
use crate::service::AuthService;
use crate::store::{self, Access, Store, StoreOptions};

pub use ops::{generate_completions, generate_man_pages};
pub use output::OutputFormat;

const AFTER_HELP: &str = "\
Configuration: flags > environment > config file (--config, else ./authctl.toml) > defaults.
A .env file in the working directory is read. Environment: DATABASE_URL, SECRET_KEY,
ALGORITHM, ACCESS_TOKEN_EXPIRE_MINUTES, REFRESH_TOKEN_EXPIRE_DAYS, DB_POOL_MIN_CONN,
DB_POOL_MAX_CONN, LOG_LEVEL, and AUTHCTL_* (see `man authctl` or the README).

Exit codes: 0 ok, 1 failure, 2 usage, 3 not found, 4 conflict, 5 invalid token,
6 database unreachable, 7 configuration error.";

/// authctl: a JWT authentication REST API and the toolkit to operate it.
#[derive(Debug, Parser)]
#[command(name = "authctl", version, about, long_about = None, after_long_help = AFTER_HELP)]
pub struct Cli {
    /// Read settings from this TOML file (default: ./authctl.toml if present)
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,

    /// Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Log line format [env: AUTHCTL_LOG_FORMAT]
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the REST API (migrates the database first unless --no-migrate)
    Serve(ServeArgs),
    /// Apply pending database migrations, or list them with --status
    Migrate(MigrateArgs),
    /// Manage users
    #[command(subcommand)]
    User(UserCommand),
    /// Inspect, revoke and prune tokens
    #[command(subcommand)]
    Token(TokenCommand),
    /// Read the audit log
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Create, list and revoke API keys for services (the admin API, introspection)
    #[command(subcommand)]
    Apikey(apikey::ApikeyCommand),
    /// Register and manage the applications that sign in with authctl (OpenID Connect)
    #[command(subcommand)]
    Client(client::ClientCommand),
    /// Probe a running server; exit 0 when healthy, 1 when not or unreachable
    Health(HealthArgs),
    /// List, rotate and retire the signing keys
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Check the configuration and show the effective settings, secrets redacted
    #[command(subcommand)]
    Config(config_check::ConfigCommand),
    #[command(subcommand)]
    Email(email::EmailCommand),
    /// Back up a SQLite database, or copy the database into another (SQLite ↔ PostgreSQL)
    #[command(subcommand)]
    Db(db::DbCommand),
    /// Print a shell completion script
    Completions(CompletionsArgs),
    /// Print the OpenAPI document (no server needed)
    Openapi,
    /// Write completions/ and man/ from these definitions (for maintainers)
    #[command(hide = true)]
    GenerateAssets(GenerateArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [env: AUTHCTL_BIND] [default: 127.0.0.1:8000]
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<String>,
    /// Do not migrate; wait until the schema is current instead
    #[arg(long)]
    pub no_migrate: bool,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// List applied and pending migrations instead of applying them
    #[arg(long)]
    pub status: bool,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user (password from --password-stdin or a no-echo prompt)
    Add(user::AddArgs),
    /// List users
    List(user::ListArgs),
    /// Disable a user and revoke all of their sessions
    Disable(user::TargetArgs),
    /// Enable a disabled user
    Enable(user::TargetArgs),
    /// Delete a user with all sessions and tokens
    Delete(user::TargetArgs),
    /// Set a user's password and revoke all of their sessions
    SetPassword(user::SetPasswordArgs),
    /// Show a user with failed logins and any lock
    Show(user::TargetArgs),
    /// End a user's lockout (failed logins and lock cleared)
    Unlock(user::TargetArgs),
    /// Remove a user's TOTP and recovery codes (an operator's recovery; audited)
    MfaReset(user::TargetArgs),
    /// List a user's live sessions
    Sessions(user::TargetArgs),
    /// Mark a user's email address verified
    Verify(user::TargetArgs),
    /// Issue a password reset token for an operator to pass on (works without email)
    ResetLink(user::TargetArgs),
    /// Import users from JSON Lines (FILE or - for stdin), keeping their bcrypt/Argon2 hashes
    Import(transfer::ImportArgs),
    /// Export users as JSON Lines (no password hashes unless --with-hashes)
    Export(transfer::ExportArgs),
    /// Give or take away roles
    #[command(subcommand)]
    Role(RoleCommand),
}

#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// Give a user roles (tokens issued from now on carry them)
    Add(user::RoleArgs),
    /// Take roles away from a user
    Remove(user::RoleArgs),
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Verify a token and show what it is: claims, family, user, state
    Inspect(token::InspectArgs),
    /// Revoke a token family (session), or all of a user's
    RevokeFamily(token::RevokeArgs),
    /// Delete expired tokens and long-revoked sessions
    Prune(token::PruneArgs),
}

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Base URL of the server [default: http://127.0.0.1:<port of the configured bind>]
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Which probe to ask
    #[arg(long, value_enum, default_value_t = health::Check::Readiness)]
    pub check: health::Check,
    /// Give up after this long (e.g. 3s, 500ms)
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = config::parse_duration)]
    pub timeout: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Project directory that holds completions/ and man/
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
}

/// The clap command, for generators and tests.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

impl Cli {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            config_file: self.config.clone(),
            database_url: self.database_url.clone(),
            log_level: self.log_level.clone(),
            log_format: self.log_format,
            bind: match &self.command {
                Command::Serve(s) => s.bind.clone(),
                _ => None,
            },
        }
    }
}

/// Runs the parsed command line. `main` maps the error to an exit code.
pub async fn run(cli: Cli) -> Result<u8> {
    match &cli.command {
        Command::Completions(args) => {
            ops::completions(args.shell);
            return Ok(0);
        }
        Command::GenerateAssets(args) => {
            ops::generate_assets(&args.dir)?;
            return Ok(0);
        }
        Command::Openapi => {
            outln!("{}", crate::http::docs::openapi_json()?);
            return Ok(0);
        }
        _ => {}
    }
    let overrides = cli.overrides();
    let settings = config::load(&overrides)?;
    // Only the server logs at info by default; commands stay quiet unless asked.
    let level = match (&cli.command, &cli.log_level) {
        (Command::Serve(_), _) | (_, Some(_)) => settings.log_level.clone(),
        _ => "warn".to_string(),
    };
    // Held until the command ends: dropping it flushes the log lines still buffered.
    let _log_guard = crate::telemetry::init(&level, settings.log_format);

    match cli.command {
        Command::Serve(args) => ops::serve(settings, args).await.map(|()| 0),
        Command::Migrate(args) => ops::migrate(&settings, &args).await.map(|()| 0),
        Command::Health(args) => Ok(health::run(&settings, &args).await),
        Command::Config(cmd) => Ok(config_check::run(&settings, &overrides, cmd)),
        Command::User(cmd) => user::run(&settings, cmd).await,
        Command::Token(cmd) => token::run(&settings, cmd).await,
        Command::Keys(cmd) => keys::run(&settings, cmd).await,
        Command::Audit(cmd) => audit::run(&settings, cmd).await,
        Command::Apikey(cmd) => apikey::run(&settings, cmd).await,
        Command::Client(cmd) => client::run(&settings, cmd).await,
        Command::Email(cmd) => email::run(&settings, cmd).await,
        Command::Db(cmd) => db::run(&settings, cmd).await,
        Command::Completions(_) | Command::GenerateAssets(_) | Command::Openapi => Ok(0),
    }
}

/// Opens the store and checks the schema is current (commands never migrate on their
/// own; `authctl migrate` or `serve` does). Read-only commands pass
/// [`Access::ReadOnly`]: they write nothing, not even a missing SQLite file.
async fn open_store(settings: &Settings, access: Access) -> Result<Arc<dyn Store>> {
    let store = store::connect(StoreOptions {
        access,
        ..StoreOptions::from(settings)
    })?;
    store.ping().await?;
    if !store.schema_is_current().await? {
        return Err(Error::schema_not_current());
    }
    Ok(store)
}

/// The service for a command: it never creates a signing key (only `serve` and
/// `migrate` do).
async fn open_service(settings: &Settings, access: Access) -> Result<AuthService> {
    let store = open_store(settings, access).await?;
    AuthService::new(store, &settings.auth).await
}
