//! [`Error`]: every way a `vault` command can fail, each with the one
//! sentence a person sees after `error: `. This is the one place where API
//! errors become words; flows that know better what a 401 means at their
//! step (a wrong password at login, say) pick the variant themselves.
//!
//! Display never includes a cause; causes hang off [`std::error::Error::source`]
//! and are shown only with `-v`.

use std::path::PathBuf;

use common::api::ErrorCode;
use common::crypto::CryptoError;

use crate::api::{ApiError, BoxError};
use crate::config::ConfigError;
use crate::secrets::SecretError;
use crate::server_url::UrlError;

/// A failed command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Login step one refused the e-mail and password.
    #[error("wrong e-mail address or password")]
    WrongPassword,
    /// The current password does not unlock the account's key.
    #[error("wrong password")]
    WrongCurrentPassword,
    /// A one-time code was refused.
    #[error("wrong or expired code")]
    WrongCode,
    /// The login ticket expired or used up its tries.
    #[error("this login attempt has expired or used up its tries: run `vault login` again")]
    TicketExpired,
    /// Rate limited.
    #[error("{}", match retry_after {
        Some(s) => format!("too many attempts; try again in {s} s"),
        None => "too many attempts; try again later".to_owned(),
    })]
    RateLimited {
        /// Seconds to wait, from `Retry-After`.
        retry_after: Option<u64>,
    },
    /// No usable session.
    #[error("not logged in: run `vault login`")]
    NotLoggedIn,
    /// The e-mail address is not verified.
    #[error(
        "the e-mail address is not verified yet: enter the mailed code with `vault verify-email`, or run `vault register` again for a new one"
    )]
    EmailNotVerified,
    /// No connection.
    #[error("cannot reach the server at {server}")]
    Unreachable {
        /// The server.
        server: String,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// No answer in time.
    #[error("the server at {server} did not answer in time")]
    Timeout {
        /// The server.
        server: String,
    },
    /// The login answer's wrapped key does not open with this password.
    #[error("the server returned a key this password cannot unlock")]
    KeyMismatch(#[source] CryptoError),
    /// The server sent KDF parameters outside the safe bounds.
    #[error("the server sent unsafe key-derivation parameters")]
    UnsafeKdf(#[source] CryptoError),
    /// The server contradicted itself or the client's expectations.
    #[error("the server's answer is inconsistent: {0}")]
    Inconsistent(&'static str),
    /// A request the server refused, in its own words.
    #[error("the server refused the request: {message}")]
    Refused {
        /// The server's sentence.
        message: String,
        /// The stable code.
        code: Option<ErrorCode>,
    },
    /// An error answer without the API's error shape: probably not a vault
    /// server (or a proxy in the way).
    #[error("the server answered {status} {message}; is this a SecureVault server?")]
    UnexpectedStatus {
        /// HTTP status.
        status: u16,
        /// The reason phrase.
        message: String,
    },
    /// Something named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The server failed.
    #[error("the server failed ({message}); try again later")]
    ServerFailure {
        /// The server's sentence.
        message: String,
    },
    /// An answer this client does not understand.
    #[error("the server sent an answer this client does not understand")]
    Protocol(#[source] ApiError),
    /// No server to talk to.
    #[error("no server given: use --server URL or set VAULT_SERVER")]
    NoServer,
    /// The command needs another server than the saved session's.
    #[error(
        "logged in to {saved}, not {given}: run `vault logout` first, or `vault login --server {given}`"
    )]
    OtherServer {
        /// The saved session's server.
        saved: String,
        /// The server asked for.
        given: String,
    },
    /// Logout removed the local session but could not reach the server.
    #[error("logged out on this computer only; the server was not told: {0}")]
    LocalLogoutOnly(#[source] Box<Error>),
    /// A misuse of the command line detected after parsing.
    #[error("{0}")]
    Usage(String),
    /// A bad server URL.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// Reading a password or code failed.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The configuration directory or session file.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The HTTP client could not be built.
    #[error(transparent)]
    Http(#[from] crate::api::http::HttpSetupError),
    /// A cryptographic failure not covered above.
    #[error("cryptography failed")]
    Crypto(#[from] CryptoError),
    /// The key derivation task died.
    #[error("the key derivation did not finish")]
    Task(#[source] BoxError),
    /// Writing to the terminal failed.
    #[error("cannot write the output")]
    Output(#[from] std::io::Error),
    /// A local file or directory operation of the mount commands failed.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The directory cannot be mounted on.
    #[error("cannot mount on {}: {reason}", dir.display())]
    BadMountPoint {
        /// The directory given.
        dir: PathBuf,
        /// Why not.
        reason: &'static str,
    },
    /// Something is mounted on the directory already.
    #[error("{}", if *ours {
        format!("{} is already mounted: run `vault unmount {}` first", dir.display(), dir.display())
    } else {
        format!("{} is already a mount point", dir.display())
    })]
    AlreadyMounted {
        /// The directory.
        dir: PathBuf,
        /// True when it is a live SecureVault mount.
        ours: bool,
    },
    /// Nothing is mounted on the directory.
    #[error("{} is not mounted", dir.display())]
    NotMounted {
        /// The directory.
        dir: PathBuf,
    },
    /// Something other than a vault is mounted on the directory.
    #[error("{} is not a SecureVault mount", dir.display())]
    NotAVaultMount {
        /// The directory.
        dir: PathBuf,
    },
    /// Another daemon on this machine holds the account's journal.
    #[error("this vault is already mounted on this machine (journal {} is in use)", journal.display())]
    VaultInUse {
        /// The journal directory.
        journal: PathBuf,
    },
    /// Mounting failed.
    #[error("cannot mount {}: {reason}", dir.display())]
    MountFailed {
        /// The mount point.
        dir: PathBuf,
        /// Why, in a few words.
        reason: String,
        /// The cause.
        #[source]
        source: Option<BoxError>,
    },
    /// Unmounting failed.
    #[error("cannot unmount {}: {reason}", dir.display())]
    UnmountFailed {
        /// The mount point.
        dir: PathBuf,
        /// Why, in a few words.
        reason: String,
    },
    /// The filesystem could not be opened.
    #[error("cannot open the vault")]
    Vault(#[source] crate::vfs::FsError),
    /// The detached mount daemon failed; its message and causes.
    #[error("{message}")]
    Daemon {
        /// The daemon's one-line error.
        message: String,
        /// Its causes, as the daemon reported them.
        #[source]
        cause: Option<crate::mount::RemoteCause>,
    },
}

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Unreachable { server, source } => Self::Unreachable { server, source },
            ApiError::Timeout { server } => Self::Timeout { server },
            ApiError::NotLoggedIn => Self::NotLoggedIn,
            ApiError::Store(c) => Self::Config(c),
            ApiError::InvalidResponse { .. } => Self::Protocol(e),
            ApiError::Status {
                status,
                code,
                message,
                retry_after,
            } => match code {
                Some(ErrorCode::RateLimited) => Self::RateLimited { retry_after },
                None if status == 429 => Self::RateLimited { retry_after },
                Some(ErrorCode::Unauthorized) => Self::NotLoggedIn,
                None if status == 401 => Self::NotLoggedIn,
                Some(ErrorCode::InvalidCode) => Self::WrongCode,
                Some(ErrorCode::InvalidTicket) => Self::TicketExpired,
                Some(ErrorCode::EmailNotVerified) => Self::EmailNotVerified,
                Some(ErrorCode::NotFound) => Self::NotFound(message),
                Some(ErrorCode::Internal | ErrorCode::Unavailable) => {
                    Self::ServerFailure { message }
                }
                None if status >= 500 => Self::ServerFailure { message },
                None => Self::UnexpectedStatus { status, message },
                Some(_) => Self::Refused { message, code },
            },
        }
    }
}

impl Error {
    /// The error with its causes, one per line, for `-v`.
    pub fn chain(&self) -> Vec<String> {
        let mut out = vec![self.to_string()];
        let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(self);
        while let Some(e) = cur {
            let text = e.to_string();
            if out.last() != Some(&text) {
                out.push(text);
            }
            cur = e.source();
        }
        out
    }
}

/// Maps the answer to a password check (login step one): a refusal there
/// means the e-mail or password is wrong, not that a session is missing.
pub fn password_step(e: ApiError) -> Error {
    if e.is_unauthorized() || e.code() == Some(ErrorCode::Forbidden) {
        Error::WrongPassword
    } else {
        e.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: ErrorCode) -> Error {
        ApiError::status(400, code, "server says so").into()
    }

    #[test]
    fn api_errors_read_as_sentences() {
        let rl: Error = ApiError::Status {
            status: 429,
            code: Some(ErrorCode::RateLimited),
            message: "x".into(),
            retry_after: Some(30),
        }
        .into();
        assert_eq!(rl.to_string(), "too many attempts; try again in 30 s");
        let bare: Error = ApiError::Status {
            status: 429,
            code: None,
            message: "x".into(),
            retry_after: None,
        }
        .into();
        assert_eq!(bare.to_string(), "too many attempts; try again later");
        assert_eq!(
            status(ErrorCode::Unauthorized).to_string(),
            "not logged in: run `vault login`"
        );
        assert_eq!(
            Error::from(ApiError::NotLoggedIn).to_string(),
            "not logged in: run `vault login`"
        );
        assert_eq!(
            status(ErrorCode::InvalidCode).to_string(),
            "wrong or expired code"
        );
        assert!(
            status(ErrorCode::InvalidTicket)
                .to_string()
                .contains("vault login")
        );
        assert_eq!(
            status(ErrorCode::Conflict).to_string(),
            "the server refused the request: server says so"
        );
        assert!(
            status(ErrorCode::Internal)
                .to_string()
                .starts_with("the server failed")
        );
        let unreachable: Error = ApiError::Unreachable {
            server: "https://v.example".into(),
            source: "connection refused".into(),
        }
        .into();
        assert_eq!(
            unreachable.to_string(),
            "cannot reach the server at https://v.example"
        );
        assert_eq!(
            unreachable.chain(),
            vec![
                "cannot reach the server at https://v.example".to_owned(),
                "connection refused".to_owned()
            ]
        );
    }

    #[test]
    fn a_refused_password_step_is_a_wrong_password() {
        let e = password_step(ApiError::status(401, ErrorCode::Unauthorized, "no"));
        assert_eq!(e.to_string(), "wrong e-mail address or password");
        let e = password_step(ApiError::status(429, ErrorCode::RateLimited, "no"));
        assert!(matches!(e, Error::RateLimited { .. }));
    }

    #[test]
    fn messages_are_one_line() {
        let samples: Vec<Error> = vec![
            Error::WrongPassword,
            Error::KeyMismatch(CryptoError::Authentication),
            Error::UnsafeKdf(CryptoError::KdfParams("too few iterations")),
            Error::OtherServer {
                saved: "https://a".into(),
                given: "https://b".into(),
            },
            Error::NoServer,
        ];
        for e in samples {
            assert!(!e.to_string().contains('\n'), "{e}");
        }
        assert_eq!(
            Error::KeyMismatch(CryptoError::Authentication).to_string(),
            "the server returned a key this password cannot unlock"
        );
    }
}
