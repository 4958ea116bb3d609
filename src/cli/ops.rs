//! `serve`, `migrate`, `completions` and the asset generator.

use super::output::outln;
use std::path::Path;

use super::output::{self, OutputFormat};
use super::{MigrateArgs, ServeArgs};
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::server::{self, ServeOptions};
use crate::store::{self, Access, StoreOptions};

pub async fn serve(settings: Settings, args: ServeArgs) -> Result<()> {
    let running = server::spawn(
        settings,
        ServeOptions {
            migrate: !args.no_migrate,
        },
    )
    .await?;
    let stop = running.stopper();
    tokio::spawn(async move {
        server::shutdown_signal().await;
        let _ = stop.send(true);
        // A second signal while draining means "now".
        server::shutdown_signal().await;
        server::exit_now();
    });
    running.wait().await
}

pub async fn migrate(settings: &Settings, args: &MigrateArgs) -> Result<()> {
    // `--status` only reads; applying creates a missing SQLite file (mode 0600).
    let access = if args.status {
        Access::ReadOnly
    } else {
        Access::Create
    };
    let store = store::connect(StoreOptions {
        access,
        ..StoreOptions::from(settings)
    })?;
    if args.status {
        let status = store.migration_status().await?;
        match args.output {
            OutputFormat::Json => output::print_json(&status),
            OutputFormat::Table => {
                let mut t = output::table(&["VERSION", "DESCRIPTION", "STATE"]);
                for m in &status {
                    t.add_row(vec![
                        m.version.to_string(),
                        m.description.clone(),
                        if m.applied { "applied" } else { "pending" }.to_string(),
                    ]);
                }
                outln!("{t}");
            }
        }
    } else {
        let report = store.migrate().await?;
        // The first signing key and the grace secret, so that tokens can be signed by
        // servers started with --no-migrate and verified by the CLI.
        crate::service::keys::provision(store.as_ref(), &settings.auth).await?;
        let applied = &report.applied;
        match args.output {
            OutputFormat::Json => output::print_json(&report),
            OutputFormat::Table => {
                if applied.is_empty() {
                    outln!("database is up to date");
                } else {
                    outln!("applied {} migration(s): {applied:?}", applied.len());
                }
                // Reported on every run until an operator resolves them.
                for c in &report.email_collisions {
                    outln!(
                        "warning: user {} keeps its email un-normalized: in NFC it is the \
                         address of user {}",
                        c.user_id,
                        c.conflicts_with
                    );
                }
            }
        }
    }
    store.close().await;
    Ok(())
}

pub fn completions(shell: clap_complete::Shell) {
    let mut cmd = super::command();
    // Rendered first: clap_complete panics on a failed write (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "authctl", &mut script);
    output::write_bytes(&script);
}

/// Completion scripts for every supported shell, as (file name, contents).
pub fn generate_completions() -> Vec<(String, Vec<u8>)> {
    use clap_complete::Shell;
    [
        Shell::Bash,
        Shell::Zsh,
        Shell::Fish,
        Shell::Elvish,
        Shell::PowerShell,
    ]
    .into_iter()
    .map(|shell| {
        let mut cmd = super::command();
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd, "authctl", &mut buf);
        let name = match shell {
            Shell::Bash => "authctl.bash".to_string(),
            Shell::Zsh => "_authctl".to_string(),
            Shell::Fish => "authctl.fish".to_string(),
            Shell::Elvish => "authctl.elv".to_string(),
            _ => "_authctl.ps1".to_string(),
        };
        (name, buf)
    })
    .collect()
}

/// A man page per command and subcommand, as (file name, contents).
pub fn generate_man_pages() -> Result<Vec<(String, Vec<u8>)>> {
    let mut pages = Vec::new();
    let mut cmd = super::command();
    cmd.build();
    collect_man(&cmd, "authctl", &mut pages)?;
    Ok(pages)
}

fn collect_man(cmd: &clap::Command, name: &str, pages: &mut Vec<(String, Vec<u8>)>) -> Result<()> {
    if cmd.is_hide_set() {
        return Ok(());
    }
    let cmd = cmd.clone().name(name.to_string());
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut buf)
        .map_err(|e| Error::Internal(anyhow::Error::new(e).context("rendering a man page")))?;
    pages.push((format!("{name}.1"), buf));
    for sub in cmd.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        collect_man(sub, &format!("{name}-{}", sub.get_name()), pages)?;
    }
    Ok(())
}

pub fn generate_assets(dir: &Path) -> Result<()> {
    let write = |sub: &str, files: Vec<(String, Vec<u8>)>| -> Result<()> {
        let target = dir.join(sub);
        std::fs::create_dir_all(&target)
            .map_err(|e| Error::Internal(anyhow::anyhow!("creating {}: {e}", target.display())))?;
        for (name, contents) in files {
            let path = target.join(name);
            std::fs::write(&path, contents)
                .map_err(|e| Error::Internal(anyhow::anyhow!("writing {}: {e}", path.display())))?;
        }
        Ok(())
    };
    write("completions", generate_completions())?;
    write("man", generate_man_pages()?)?;
    outln!(
        "wrote {}/completions and {}/man",
        dir.display(),
        dir.display()
    );
    Ok(())
}
