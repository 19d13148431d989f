//! `vault-server`: the entry point. Parses the command line, sets up
//! logging and hands over to the library; nothing else lives here.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use vault_server::config::{Settings, SettingsArgs};

/// The SecureVault server: stores accounts, the encrypted tree and ciphertext
/// objects. It never sees a password, a key, a file name or file contents.
///
/// Every setting can be given as a flag, a `VAULT_*` environment variable
/// (also read from a `.env` file in the working directory) or a key in the
/// `--config` TOML file; flags and variables win over the file.
#[derive(Debug, Parser)]
#[command(name = "vault-server", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    settings: SettingsArgs,
    /// Log filter (e.g. `info`, `debug`, `vault_server=trace`).
    #[arg(long, env = "VAULT_LOG", default_value = "info", global = true)]
    log: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
}

fn main() -> ExitCode {
    vault_server::memory::bound_allocator();
    // .env never overrides variables that are already set.
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_default())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::resolve(cli.settings)?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Migrate => {
            vault_server::build_state(&settings).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Serve => {
            let mut settings = settings;
            let listener = std::net::TcpListener::bind(settings.listen)
                .with_context(|| format!("cannot listen on {}", settings.listen))?;
            let addr = listener.local_addr()?;
            let scheme = if settings.tls.is_some() {
                "https"
            } else {
                "http"
            };
            if settings.public_url.is_none() {
                if addr.ip().is_unspecified() {
                    tracing::warn!(
                        "listening on all addresses without VAULT_PUBLIC_URL: set it to the URL clients use"
                    );
                }
                settings.public_url = Some(format!("{scheme}://{addr}"));
            }
            let state = vault_server::build_state(&settings).await?;
            vault_server::http::health::prometheus();
            println!("vault-server listening on {scheme}://{addr}");
            tracing::info!(
                %addr,
                backend = state.store.backend(),
                objects = state.blobs.backend(),
                "listening"
            );
            vault_server::serve(&settings, state, listener, vault_server::shutdown_signal())
                .await?;
            Ok(())
        }
    }
}
