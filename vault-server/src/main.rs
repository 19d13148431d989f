//! `vault-server`: the entry point. Parses the command line and hands over to
//! the library; nothing else lives here.

use clap::Parser;

/// The SecureVault server: stores accounts, the encrypted tree and ciphertext
/// objects. It never sees a password, a key, a file name or file contents.
#[derive(Debug, Parser)]
#[command(name = "vault-server", version)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    Ok(())
}
