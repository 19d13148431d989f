//! The `vault` command line: its arguments ([`Cli`]), the entry point
//! ([`main`]) that sets up logging and the runtime, and the one place a
//! failure is reported: one `error: ...` line on stderr (with its causes
//! only under `-v`) and a non-zero exit status.

mod commands;
mod keep_key;
pub mod render;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgAction, Args, Parser, Subcommand};

pub use commands::{run, session_for};

use crate::error::Error;

const SCRIPTING: &str = "\
Scripts: the password may come from VAULT_PASSWORD or --password-file (the new one of `vault passwd` \
from VAULT_NEW_PASSWORD or --new-password-file). When standard input is not a terminal, its lines \
give the password (unless given otherwise) and then each code asked for, in order; nothing else is \
asked.

The session is kept in $VAULT_CONFIG_DIR, else $XDG_CONFIG_HOME/securevault, else \
~/.config/securevault. Mounts keep their write-back journal, control sockets and logs in \
$VAULT_DATA_DIR, else $XDG_DATA_HOME/securevault, else ~/.local/share/securevault, and their \
cache in --cache-dir, else $XDG_CACHE_HOME/securevault/ACCOUNT, else ~/.cache/securevault/ACCOUNT.";

/// SecureVault: an end-to-end encrypted folder backed by a vault server.
#[derive(Debug, Parser)]
#[command(name = "vault", version, propagate_version = true, after_long_help = SCRIPTING)]
pub struct Cli {
    /// Explain failures in detail and log requests to stderr (-vv: more).
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,

    /// The vault server (https://, or http:// on this machine only); else
    /// VAULT_SERVER, else the server of the saved session.
    #[arg(long, global = true, value_name = "URL", env = "VAULT_SERVER")]
    pub server: Option<String>,

    /// Extra trusted CA certificates (PEM) for the server's TLS certificate.
    #[arg(long, global = true, value_name = "FILE", env = "VAULT_CA_FILE")]
    pub ca_file: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create an account, show its recovery key once, and verify the e-mail address.
    Register(RegisterArgs),
    /// Verify the e-mail address with the mailed code (if `vault register` was interrupted).
    VerifyEmail(EmailArg),
    /// Log in: password, then the e-mailed or authenticator-app code.
    Login(LoginArgs),
    /// Log out of this session, or of every session with --all.
    Logout(LogoutArgs),
    /// Show the server, the logged-in account and the mounted vaults.
    Status(StatusArgs),
    /// Change the password (the same vault key is re-wrapped; no file is re-encrypted).
    Passwd(PasswdArgs),
    /// List the account's sessions, or revoke one.
    Sessions(SessionsArgs),
    /// Turn the authenticator-app (TOTP) second factor on or off.
    #[command(subcommand)]
    Totp(TotpCommand),
    /// Show the account's audit log, newest first.
    Audit(AuditArgs),
    /// Mount the vault on a directory (in the background unless --foreground).
    Mount(MountArgs),
    /// Upload pending changes, then unmount a mounted vault.
    Unmount(UnmountArgs),
    /// The detached mount daemon that `vault mount` starts (internal).
    #[command(name = "__mount-daemon", hide = true)]
    MountDaemon,
}

/// Where the password comes from in scripts.
#[derive(Debug, Clone, Args)]
pub struct PasswordArgs {
    /// Read the password from this file (its first line break is dropped);
    /// else VAULT_PASSWORD, else a prompt or standard input.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
}

/// `vault register`.
#[derive(Debug, Clone, Args)]
pub struct RegisterArgs {
    /// The account's e-mail address.
    #[arg(long, value_name = "ADDRESS")]
    pub email: String,
    #[command(flatten)]
    pub password: PasswordArgs,
}

/// An e-mail address.
#[derive(Debug, Clone, Args)]
pub struct EmailArg {
    /// The account's e-mail address.
    #[arg(long, value_name = "ADDRESS")]
    pub email: String,
}

/// `vault login`.
#[derive(Debug, Clone, Args)]
pub struct LoginArgs {
    /// The account's e-mail address (default: the saved session's).
    #[arg(long, value_name = "ADDRESS")]
    pub email: Option<String>,
    /// For an account with an authenticator app: have a code e-mailed instead.
    #[arg(long)]
    pub email_code: bool,
    /// Keep the vault key in the kernel session keyring for this many
    /// seconds, so `vault mount` needs no password meanwhile (0: do not).
    #[arg(long, value_name = "SECONDS", default_value_t = crate::mount::keyring::DEFAULT_KEEP_SECONDS)]
    pub keep_key: u64,
    #[command(flatten)]
    pub password: PasswordArgs,
}

/// `vault status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Only the mounted vaults and their pending uploads, from the mount
    /// daemons: no request to the server (cheap to repeat, works offline).
    #[arg(long)]
    pub mounts: bool,
}

/// `vault logout`.
#[derive(Debug, Clone, Args)]
pub struct LogoutArgs {
    /// End every session of the account, on every device.
    #[arg(long)]
    pub all: bool,
}

/// `vault passwd`.
#[derive(Debug, Clone, Args)]
pub struct PasswdArgs {
    #[command(flatten)]
    pub password: PasswordArgs,
    /// Read the new password from this file; else VAULT_NEW_PASSWORD, else a
    /// prompt or the next line of standard input.
    #[arg(long, value_name = "FILE")]
    pub new_password_file: Option<PathBuf>,
}

/// `vault sessions`.
#[derive(Debug, Clone, Args)]
pub struct SessionsArgs {
    /// Without a subcommand: list the sessions.
    #[command(subcommand)]
    pub action: Option<SessionsCommand>,
}

/// `vault sessions ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum SessionsCommand {
    /// Revoke one session (its device is logged out).
    Revoke {
        /// The session's ID, as `vault sessions` lists it.
        id: String,
    },
}

/// `vault totp ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum TotpCommand {
    /// Show a QR code for the authenticator app and activate it with its first code.
    Enable,
    /// Turn the authenticator app off (asks for a current code).
    Disable,
}

/// `vault audit`.
#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// Show at most this many events.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
    /// Only events older than the event with this ID (for paging back).
    #[arg(long, value_name = "ID")]
    pub before: Option<i64>,
}

/// `vault mount`.
#[derive(Debug, Clone, Args)]
pub struct MountArgs {
    /// The directory to mount the vault on (it must exist).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Stay attached: log to stderr, unmount on Ctrl-C.
    #[arg(long)]
    pub foreground: bool,
    /// The on-disk cache of encrypted data (default:
    /// $XDG_CACHE_HOME/securevault/ACCOUNT).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Bound of the on-disk cache (e.g. 512M, 2G, 1GiB; K/M/G/T are
    /// powers of 1024, KB/MB/GB/TB of 1000).
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = crate::mount::size::parse_size)]
    pub cache_size: u64,
    /// Bound of the in-memory cache of decrypted data.
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = crate::mount::size::parse_size)]
    pub memory_cache: u64,
    /// Mount read-only.
    #[arg(long)]
    pub read_only: bool,
    /// Let other users (root included) use the mount; ordinary users need
    /// user_allow_other in /etc/fuse.conf.
    #[arg(long)]
    pub allow_other: bool,
    #[command(flatten)]
    pub password: PasswordArgs,
}

/// `vault unmount`.
#[derive(Debug, Clone, Args)]
pub struct UnmountArgs {
    /// The directory the vault is mounted on.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// True for the commands that run a mount in this process.
fn runs_a_mount(command: &Command) -> bool {
    matches!(command, Command::MountDaemon)
        || matches!(command, Command::Mount(args) if args.foreground)
}

fn init_tracing(verbose: u8, daemon: bool) {
    // Never trace hyper or h2 internals: their frame logs are too close to
    // the headers that carry tokens.
    let default = match (verbose, daemon) {
        (0, false) => return,
        (0, true) => "fs_client=info",
        (1, _) => "fs_client=debug",
        _ => "fs_client=trace,reqwest=debug",
    };
    let filter = tracing_subscriber::EnvFilter::new(default);
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

/// Prints `error` as one line (and its causes under `-v`).
pub fn report(error: &Error, verbose: u8) {
    let chain = error.chain();
    let mut lines = chain.iter().map(|l| render::clean(l));
    if let Some(first) = lines.next() {
        eprintln!("error: {first}");
    }
    if verbose > 0 {
        for cause in lines {
            eprintln!("  caused by: {cause}");
        }
    }
}

/// The `vault` program.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let mounting = runs_a_mount(&cli.command);
    init_tracing(cli.verbose, mounting);
    if mounting && !crate::mount::malloc::tune() {
        tracing::debug!("glibc refused a malloc setting; its default stays");
    }
    // A mount serves FUSE requests as tasks: it needs worker threads.
    let built = if mounting {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let runtime = match built {
        Ok(rt) => rt,
        Err(e) => {
            report(&Error::Output(e), cli.verbose);
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(&cli));
    // A mount may leave a blocking task stuck on a dead FUSE request; do
    // not wait for it to exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e, cli.verbose);
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::path::Path;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn commands_parse() {
        let cli = Cli::try_parse_from([
            "vault",
            "-v",
            "login",
            "--email",
            "a@b",
            "--email-code",
            "--server",
            "https://h",
        ])
        .unwrap();
        assert_eq!(cli.verbose, 1);
        assert_eq!(cli.server.as_deref(), Some("https://h"));
        assert!(matches!(
            cli.command,
            Command::Login(LoginArgs {
                email_code: true,
                ..
            })
        ));
        let cli = Cli::try_parse_from(["vault", "sessions", "revoke", "sess-1"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Sessions(SessionsArgs {
                action: Some(SessionsCommand::Revoke { ref id })
            }) if id == "sess-1"
        ));
        assert!(Cli::try_parse_from(["vault", "audit", "--limit", "0"]).is_err());
        assert!(Cli::try_parse_from(["vault", "register"]).is_err());
    }

    #[test]
    fn mount_commands_parse() {
        let cli = Cli::try_parse_from(["vault", "mount", "/mnt/v"]).unwrap();
        let Command::Mount(args) = cli.command else {
            panic!("not a mount")
        };
        assert_eq!(args.dir, PathBuf::from("/mnt/v"));
        assert!(!args.foreground && !args.read_only && !args.allow_other);
        assert_eq!(args.cache_size, 1 << 30);
        assert_eq!(args.memory_cache, 64 << 20);
        assert!(args.cache_dir.is_none());

        let cli = Cli::try_parse_from([
            "vault",
            "mount",
            "d",
            "--foreground",
            "--cache-dir",
            "/c",
            "--cache-size",
            "512M",
            "--memory-cache",
            "2G",
            "--read-only",
            "--allow-other",
            "--password-file",
            "/pw",
        ])
        .unwrap();
        assert!(runs_a_mount(&cli.command));
        let Command::Mount(args) = cli.command else {
            panic!("not a mount")
        };
        assert!(args.foreground && args.read_only && args.allow_other);
        assert_eq!(args.cache_size, 512 << 20);
        assert_eq!(args.memory_cache, 2 << 30);
        assert_eq!(args.cache_dir, Some(PathBuf::from("/c")));
        assert_eq!(args.password.password_file, Some(PathBuf::from("/pw")));

        assert!(Cli::try_parse_from(["vault", "mount", "d", "--cache-size", "lots"]).is_err());
        assert!(Cli::try_parse_from(["vault", "mount"]).is_err());
        let cli = Cli::try_parse_from(["vault", "unmount", "d"]).unwrap();
        assert!(
            matches!(cli.command, Command::Unmount(UnmountArgs { ref dir }) if dir == Path::new("d"))
        );
        let cli = Cli::try_parse_from(["vault", "__mount-daemon"]).unwrap();
        assert!(runs_a_mount(&cli.command));
        let cli = Cli::try_parse_from(["vault", "login", "--keep-key", "0"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Login(LoginArgs { keep_key: 0, .. })
        ));
        let cli = Cli::try_parse_from(["vault", "login"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Login(LoginArgs { keep_key: 3600, .. })
        ));
    }

    #[test]
    fn the_daemon_command_is_hidden_from_help() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("mount"), "{help}");
        assert!(help.contains("unmount"));
        assert!(!help.contains("__mount-daemon"), "{help}");
    }
}
