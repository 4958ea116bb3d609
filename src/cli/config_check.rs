//! `authctl config check`: validates the whole configuration (file, `.env`,
//! environment, flags) and prints the effective settings with every secret redacted.
//! An invalid configuration never gets here: loading it fails first with exit 7 and a
//! message naming the key or variable.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde::Serialize;

use super::output::{self, OutputFormat, outln};
use crate::config::{DEFAULT_CONFIG_FILE, Overrides, Settings, check, dotenv};

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print the effective settings, secrets redacted
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Serialize)]
struct Report {
    valid: bool,
    /// The TOML file read, if any.
    config_file: Option<PathBuf>,
    /// Whether `./.env` was read.
    dotenv: bool,
    /// TOML key → effective value.
    settings: BTreeMap<&'static str, String>,
}

pub fn run(settings: &Settings, overrides: &Overrides, cmd: ConfigCommand) -> u8 {
    let ConfigCommand::Check(args) = cmd;
    let config_file = overrides.config_file.clone().or_else(|| {
        let default = PathBuf::from(DEFAULT_CONFIG_FILE);
        default.exists().then_some(default)
    });
    let dotenv = Path::new(dotenv::DOTENV_FILE).exists();
    let effective = check::effective(settings);
    match args.output {
        OutputFormat::Json => output::print_json(&Report {
            valid: true,
            config_file,
            dotenv,
            settings: effective.iter().map(|e| (e.key, e.value.clone())).collect(),
        }),
        OutputFormat::Table => {
            outln!(
                "configuration is valid (config file: {}; .env: {})",
                config_file.map_or("none".into(), |p| p.display().to_string()),
                if dotenv { "read" } else { "none" }
            );
            let mut t = output::table(&["KEY", "ENV", "VALUE"]);
            for e in &effective {
                t.add_row(vec![e.key, e.env, e.value.as_str()]);
            }
            outln!("{t}");
        }
    }
    0
}
