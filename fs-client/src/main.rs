//! `vault`: the entry point. Parses the command line and hands over to the
//! library; nothing else lives here.

use clap::Parser;

/// SecureVault: an end-to-end encrypted folder backed by a vault server.
#[derive(Debug, Parser)]
#[command(name = "vault", version)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    Ok(())
}
