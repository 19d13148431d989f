//! Server settings: built-in defaults, then a TOML file (`--config FILE`),
//! then a `.env` file in the working directory, then `VAULT_*` environment
//! variables and command-line flags (later wins). Secrets may also be given
//! as `*_FILE` paths. [`Settings::resolve`] validates everything at start and
//! answers one clear error per problem.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Deserialize;
use zeroize::Zeroizing;

/// A configuration problem, shown to the operator as one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML file does not parse.
    #[error("{path}: {message}")]
    Toml {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A value is invalid.
    #[error("{setting}: {message}")]
    Invalid {
        /// The setting's variable name.
        setting: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// Default of `VAULT_SMALL_OBJECTS_IN_DB`: the objects of files up to
/// about 64 KiB, most files of a source tree or a home directory, while
/// their bytes stay a small part of the total.
const DEFAULT_SMALL_OBJECTS_IN_DB: u64 = 64 * 1024;

fn invalid(setting: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting,
        message: message.into(),
    }
}

/// Every setting, as flags and `VAULT_*` variables (unset ones fall back to
/// the TOML file, then to the defaults).
#[derive(Debug, Clone, Default, Args)]
pub struct SettingsArgs {
    /// TOML file with settings (keys are the variable names without `VAULT_`,
    /// lower-case: `listen = "0.0.0.0:8443"`).
    #[arg(long, env = "VAULT_CONFIG", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "VAULT_LISTEN", value_name = "ADDR", global = true)]
    pub listen: Option<String>,
    /// Directory for the embedded database, objects, the generated JWT secret
    /// and the development mail outbox [default: ./vault-data].
    #[arg(long, env = "VAULT_DATA_DIR", value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Database: `sqlite:///path/db.sqlite` or `mysql://user:pass@host/db`
    /// (MariaDB, MySQL 8, TiDB) [default: SQLite in the data dir].
    #[arg(
        long,
        env = "VAULT_DATABASE_URL",
        value_name = "URL",
        global = true,
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// File holding VAULT_DATABASE_URL (for secrets managers).
    #[arg(
        long,
        env = "VAULT_DATABASE_URL_FILE",
        value_name = "FILE",
        global = true
    )]
    pub database_url_file: Option<PathBuf>,
    /// Mail server: `smtp://user:pass@host:587` (STARTTLS required unless the
    /// host is loopback) or `smtps://…` (TLS). Without it, mails are written
    /// to `<data dir>/outbox/` (development only, loopback listeners only).
    #[arg(
        long,
        env = "VAULT_SMTP_URL",
        value_name = "URL",
        global = true,
        hide_env_values = true
    )]
    pub smtp_url: Option<String>,
    /// File holding VAULT_SMTP_URL.
    #[arg(long, env = "VAULT_SMTP_URL_FILE", value_name = "FILE", global = true)]
    pub smtp_url_file: Option<PathBuf>,
    /// Sender of the server's mails [default: SecureVault <vault@localhost>].
    #[arg(long, env = "VAULT_MAIL_FROM", value_name = "MAILBOX", global = true)]
    pub mail_from: Option<String>,
    /// Secret (at least 32 bytes) signing access tokens and keying the hashes
    /// of codes and tokens [default: generated once into the data dir].
    #[arg(
        long,
        env = "VAULT_JWT_SECRET",
        value_name = "SECRET",
        global = true,
        hide_env_values = true
    )]
    pub jwt_secret: Option<String>,
    /// File holding VAULT_JWT_SECRET.
    #[arg(
        long,
        env = "VAULT_JWT_SECRET_FILE",
        value_name = "FILE",
        global = true
    )]
    pub jwt_secret_file: Option<PathBuf>,
    /// Where ciphertext objects live: `db`, `file:DIR` or
    /// `s3://BUCKET?endpoint=URL&region=R` [default: file:<data dir>/objects].
    #[arg(long, env = "VAULT_BLOB_STORE", value_name = "STORE", global = true)]
    pub blob_store: Option<String>,
    /// With a `file:` or `s3://` blob store: the objects of new small files
    /// (sent inline in batches) of at most this many bytes are kept in the
    /// database instead, one transaction per batch rather than a file or
    /// S3 object each; 0 keeps every new object in the blob store (those
    /// already in the database stay readable there) [default: 65536].
    #[arg(
        long,
        env = "VAULT_SMALL_OBJECTS_IN_DB",
        value_name = "BYTES",
        global = true
    )]
    pub small_objects_in_db: Option<u64>,
    /// The URL clients use to reach this server (issuer of tokens, links in
    /// mails) [default: http://<listen>].
    #[arg(long, env = "VAULT_PUBLIC_URL", value_name = "URL", global = true)]
    pub public_url: Option<String>,
    /// PEM certificate chain: serve HTTPS (with VAULT_TLS_KEY).
    #[arg(long, env = "VAULT_TLS_CERT", value_name = "FILE", global = true)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for VAULT_TLS_CERT.
    #[arg(long, env = "VAULT_TLS_KEY", value_name = "FILE", global = true)]
    pub tls_key: Option<PathBuf>,
    /// Comma-separated proxy addresses whose X-Forwarded-For is trusted for
    /// the client IP (rate limits, audit log) [default: none].
    #[arg(long, env = "VAULT_TRUSTED_PROXIES", value_name = "IPS", global = true)]
    pub trusted_proxies: Option<String>,
    /// Requests per minute per client IP on each auth endpoint [default: 60].
    #[arg(
        long,
        env = "VAULT_AUTH_RATE_PER_MINUTE",
        value_name = "N",
        global = true
    )]
    pub auth_rate_per_minute: Option<u32>,
    /// Burst allowed above that rate [default: 20].
    #[arg(long, env = "VAULT_AUTH_BURST", value_name = "N", global = true)]
    pub auth_burst: Option<u32>,
    /// Access-token lifetime in seconds, at most 900 [default: 900].
    #[arg(
        long,
        env = "VAULT_ACCESS_TOKEN_TTL",
        value_name = "SECS",
        global = true
    )]
    pub access_token_ttl: Option<u64>,
    /// Largest JSON request body in bytes [default: 65536].
    #[arg(long, env = "VAULT_MAX_BODY", value_name = "BYTES", global = true)]
    pub max_body: Option<usize>,
    /// Storage quota of an account without one of its own, in bytes of
    /// ciphertext [default: 10737418240 (10 GiB)].
    #[arg(long, env = "VAULT_QUOTA_BYTES", value_name = "BYTES", global = true)]
    pub quota_bytes: Option<u64>,
    /// Largest ciphertext object one upload may store, in bytes (object
    /// bodies are streamed: VAULT_MAX_BODY does not apply to them)
    /// [default: 1073741824 (1 GiB)].
    #[arg(
        long,
        env = "VAULT_MAX_OBJECT_BYTES",
        value_name = "BYTES",
        global = true
    )]
    pub max_object_bytes: Option<u64>,
    /// Seconds an uploaded object may stay uncommitted (not part of any file
    /// version) before the collector deletes it [default: 3600].
    #[arg(long, env = "VAULT_GC_GRACE_SECS", value_name = "SECS", global = true)]
    pub gc_grace_secs: Option<u64>,
}

/// The TOML file: the same keys, all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlSettings {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    database_url_file: Option<PathBuf>,
    smtp_url: Option<String>,
    smtp_url_file: Option<PathBuf>,
    mail_from: Option<String>,
    jwt_secret: Option<String>,
    jwt_secret_file: Option<PathBuf>,
    blob_store: Option<String>,
    small_objects_in_db: Option<u64>,
    public_url: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    trusted_proxies: Option<String>,
    auth_rate_per_minute: Option<u32>,
    auth_burst: Option<u32>,
    access_token_ttl: Option<u64>,
    max_body: Option<usize>,
    quota_bytes: Option<u64>,
    max_object_bytes: Option<u64>,
    gc_grace_secs: Option<u64>,
}

/// A secret setting: zeroized on drop, `<redacted>` in Debug.
#[derive(Clone)]
pub struct SecretText(Zeroizing<String>);

impl SecretText {
    /// The secret's text; do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where the JWT secret comes from.
#[derive(Clone)]
pub enum JwtSecretSource {
    /// Given by the operator.
    Given(Zeroizing<Vec<u8>>),
    /// Generated and kept in the data dir.
    DataDir(PathBuf),
}

impl std::fmt::Debug for JwtSecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwtSecretSource::Given(_) => f.write_str("Given(<redacted>)"),
            JwtSecretSource::DataDir(p) => write!(f, "DataDir({})", p.display()),
        }
    }
}

/// How mail leaves the server.
#[derive(Clone)]
pub enum MailSettings {
    /// Through an SMTP server.
    Smtp(SecretText),
    /// Into `.eml` files in this directory (development).
    Outbox(PathBuf),
}

impl std::fmt::Debug for MailSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MailSettings::Smtp(_) => f.write_str("Smtp(<redacted>)"),
            MailSettings::Outbox(p) => write!(f, "Outbox({})", p.display()),
        }
    }
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Listening address.
    pub listen: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Database URL (may hold a password: never logged).
    pub database_url: SecretText,
    /// Mail transport.
    pub mail: MailSettings,
    /// Sender mailbox.
    pub mail_from: String,
    /// JWT secret source.
    pub jwt_secret: JwtSecretSource,
    /// Object store spec (validated by the storage layer).
    pub blob_store: String,
    /// Largest object of a batch kept in the database (0: none).
    pub small_objects_in_db: u64,
    /// Public URL (token issuer, links in mails); when unset, the server
    /// uses the address it actually bound.
    pub public_url: Option<String>,
    /// TLS certificate and key.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Trusted proxies.
    pub trusted_proxies: Vec<IpAddr>,
    /// Auth requests per minute per IP.
    pub auth_rate_per_minute: u32,
    /// Auth burst per IP.
    pub auth_burst: u32,
    /// Access-token lifetime.
    pub access_token_ttl: u64,
    /// Largest JSON body.
    pub max_body: usize,
    /// Default per-account quota in bytes.
    pub quota_bytes: u64,
    /// Largest object in bytes.
    pub max_object_bytes: u64,
    /// Seconds before an uncommitted upload is collected.
    pub gc_grace_secs: u64,
}

fn read_secret_file(path: &Path) -> Result<Zeroizing<String>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(Zeroizing::new(
        text.trim_end_matches(['\n', '\r']).to_owned(),
    ))
}

/// One secret from the value, or its `_FILE`; both set is an error.
fn secret(
    setting: &'static str,
    value: Option<String>,
    file: Option<PathBuf>,
) -> Result<Option<Zeroizing<String>>, ConfigError> {
    match (value, file) {
        (Some(_), Some(_)) => Err(invalid(
            setting,
            "set either the value or its _FILE, not both",
        )),
        (Some(v), None) => Ok(Some(Zeroizing::new(v))),
        (None, Some(f)) => read_secret_file(&f).map(Some),
        (None, None) => Ok(None),
    }
}

/// True for loopback hosts (127.0.0.0/8, ::1, `localhost`).
pub fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl Settings {
    /// Layers the TOML file under the flags/environment and validates.
    pub fn resolve(args: SettingsArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                toml::from_str::<TomlSettings>(&text).map_err(|e| ConfigError::Toml {
                    path: path.clone(),
                    message: e.message().to_owned(),
                })?
            }
            None => TomlSettings::default(),
        };

        let listen_text = args
            .listen
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            invalid(
                "VAULT_LISTEN",
                format!("`{listen_text}` is not an address like 127.0.0.1:8080"),
            )
        })?;
        let data_dir = args
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("./vault-data"));

        let database_url = match secret(
            "VAULT_DATABASE_URL",
            args.database_url.or(file.database_url),
            args.database_url_file.or(file.database_url_file),
        )? {
            Some(url) => url,
            None => Zeroizing::new(format!(
                "sqlite://{}",
                data_dir.join("vault.sqlite").display()
            )),
        };
        if !(database_url.starts_with("sqlite:") || database_url.starts_with("mysql://")) {
            return Err(invalid(
                "VAULT_DATABASE_URL",
                "must start with sqlite: or mysql://",
            ));
        }

        let smtp = secret(
            "VAULT_SMTP_URL",
            args.smtp_url.or(file.smtp_url),
            args.smtp_url_file.or(file.smtp_url_file),
        )?;
        let mail = match smtp {
            Some(url) => {
                validate_smtp_url(&url)?;
                MailSettings::Smtp(SecretText(url))
            }
            None if listen.ip().is_loopback() => MailSettings::Outbox(data_dir.join("outbox")),
            None => {
                return Err(invalid(
                    "VAULT_SMTP_URL",
                    "required when listening on a non-loopback address (the mail outbox is for development only)",
                ));
            }
        };
        let mail_from = args
            .mail_from
            .or(file.mail_from)
            .unwrap_or_else(|| "SecureVault <vault@localhost>".into());
        if mail_from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(invalid(
                "VAULT_MAIL_FROM",
                format!("`{mail_from}` is not a mailbox"),
            ));
        }

        let jwt_secret = match secret(
            "VAULT_JWT_SECRET",
            args.jwt_secret.or(file.jwt_secret),
            args.jwt_secret_file.or(file.jwt_secret_file),
        )? {
            Some(s) if s.len() < 32 => {
                return Err(invalid("VAULT_JWT_SECRET", "must be at least 32 bytes"));
            }
            Some(s) => JwtSecretSource::Given(Zeroizing::new(s.as_bytes().to_vec())),
            None => JwtSecretSource::DataDir(data_dir.join("jwt-secret")),
        };

        let blob_store = args
            .blob_store
            .or(file.blob_store)
            .unwrap_or_else(|| format!("file:{}", data_dir.join("objects").display()));
        if !(blob_store == "db"
            || blob_store.starts_with("file:")
            || blob_store.starts_with("s3://"))
        {
            return Err(invalid(
                "VAULT_BLOB_STORE",
                "must be `db`, `file:DIR` or `s3://BUCKET?…`",
            ));
        }

        let public_url = args.public_url.or(file.public_url);
        if let Some(url) = &public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(invalid(
                "VAULT_PUBLIC_URL",
                "must be an http:// or https:// URL",
            ));
        }

        let tls = match (
            args.tls_cert.or(file.tls_cert),
            args.tls_key.or(file.tls_key),
        ) {
            (Some(c), Some(k)) => {
                for (setting, p) in [("VAULT_TLS_CERT", &c), ("VAULT_TLS_KEY", &k)] {
                    if !p.is_file() {
                        return Err(invalid(setting, format!("{} is not a file", p.display())));
                    }
                }
                Some((c, k))
            }
            (None, None) => None,
            _ => {
                return Err(invalid(
                    "VAULT_TLS_CERT",
                    "VAULT_TLS_CERT and VAULT_TLS_KEY go together",
                ));
            }
        };

        let trusted_proxies = args
            .trusted_proxies
            .or(file.trusted_proxies)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpAddr>().map_err(|_| {
                    invalid(
                        "VAULT_TRUSTED_PROXIES",
                        format!("`{s}` is not an IP address"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;

        let auth_rate_per_minute = args
            .auth_rate_per_minute
            .or(file.auth_rate_per_minute)
            .unwrap_or(60);
        let auth_burst = args.auth_burst.or(file.auth_burst).unwrap_or(20);
        if auth_rate_per_minute == 0 || auth_burst == 0 {
            return Err(invalid(
                "VAULT_AUTH_RATE_PER_MINUTE",
                "rate and burst must be at least 1",
            ));
        }
        let access_token_ttl = args
            .access_token_ttl
            .or(file.access_token_ttl)
            .unwrap_or(900);
        if !(30..=900).contains(&access_token_ttl) {
            return Err(invalid(
                "VAULT_ACCESS_TOKEN_TTL",
                "must be between 30 and 900 seconds",
            ));
        }
        let max_body = args.max_body.or(file.max_body).unwrap_or(64 * 1024);
        if !(1024..=16 * 1024 * 1024).contains(&max_body) {
            return Err(invalid(
                "VAULT_MAX_BODY",
                "must be between 1 KiB and 16 MiB",
            ));
        }

        let quota_bytes = args
            .quota_bytes
            .or(file.quota_bytes)
            .unwrap_or(10 * 1024 * 1024 * 1024);
        // Sizes are stored as signed 64-bit integers.
        if quota_bytes > i64::MAX as u64 {
            return Err(invalid("VAULT_QUOTA_BYTES", "too large"));
        }
        let max_object_bytes = args
            .max_object_bytes
            .or(file.max_object_bytes)
            .unwrap_or(1024 * 1024 * 1024);
        if max_object_bytes == 0 || max_object_bytes > i64::MAX as u64 {
            return Err(invalid(
                "VAULT_MAX_OBJECT_BYTES",
                "must be between 1 byte and 2^63-1",
            ));
        }
        let small_objects_in_db = args
            .small_objects_in_db
            .or(file.small_objects_in_db)
            .unwrap_or(DEFAULT_SMALL_OBJECTS_IN_DB);
        if small_objects_in_db > common::api::tree::BATCH_MAX_INLINE_OBJECT as u64 {
            return Err(invalid(
                "VAULT_SMALL_OBJECTS_IN_DB",
                "must be at most the largest inline object of a batch (262144)",
            ));
        }
        let gc_grace_secs = args.gc_grace_secs.or(file.gc_grace_secs).unwrap_or(3600);
        if gc_grace_secs > 365 * 24 * 3600 {
            return Err(invalid("VAULT_GC_GRACE_SECS", "must be at most a year"));
        }

        Ok(Self {
            listen,
            data_dir,
            database_url: SecretText(database_url),
            mail,
            mail_from,
            jwt_secret,
            blob_store,
            small_objects_in_db,
            public_url,
            tls,
            trusted_proxies,
            auth_rate_per_minute,
            auth_burst,
            access_token_ttl,
            max_body,
            quota_bytes,
            max_object_bytes,
            gc_grace_secs,
        })
    }
}

fn validate_smtp_url(url: &str) -> Result<(), ConfigError> {
    let rest = url
        .strip_prefix("smtps://")
        .or_else(|| url.strip_prefix("smtp://"))
        .ok_or_else(|| invalid("VAULT_SMTP_URL", "must start with smtp:// or smtps://"))?;
    let host_port = rest.rsplit('@').next().unwrap_or(rest);
    let host_port = host_port.split(['/', '?']).next().unwrap_or(host_port);
    if host_port.is_empty() {
        return Err(invalid("VAULT_SMTP_URL", "names no host"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> SettingsArgs {
        SettingsArgs::default()
    }

    #[test]
    fn defaults_are_the_embedded_setup() {
        let s = Settings::resolve(args()).unwrap();
        assert_eq!(s.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(
            s.database_url.expose(),
            "sqlite://./vault-data/vault.sqlite"
        );
        assert!(matches!(s.mail, MailSettings::Outbox(ref p) if p.ends_with("outbox")));
        assert_eq!(s.blob_store, "file:./vault-data/objects");
        assert_eq!(s.access_token_ttl, 900);
        assert_eq!(s.quota_bytes, 10 << 30);
        assert_eq!(s.max_object_bytes, 1 << 30);
        assert_eq!(s.gc_grace_secs, 3600);
        assert_eq!(s.small_objects_in_db, 64 * 1024);
        let mut off = args();
        off.small_objects_in_db = Some(0);
        assert_eq!(Settings::resolve(off).unwrap().small_objects_in_db, 0);
    }

    #[test]
    fn toml_is_overridden_by_flags_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:9000\"\nauth_burst = 3\n").unwrap();
        let mut a = args();
        a.config = Some(path.clone());
        let s = Settings::resolve(a.clone()).unwrap();
        assert_eq!(s.listen.port(), 9000);
        assert_eq!(s.auth_burst, 3);
        a.listen = Some("127.0.0.1:9001".into());
        assert_eq!(Settings::resolve(a).unwrap().listen.port(), 9001);
        std::fs::write(&path, "listne = \"x\"\n").unwrap();
        let mut a = args();
        a.config = Some(path);
        assert!(matches!(
            Settings::resolve(a),
            Err(ConfigError::Toml { .. })
        ));
    }

    #[test]
    fn outbox_is_refused_off_loopback() {
        let mut a = args();
        a.listen = Some("0.0.0.0:8080".into());
        let e = Settings::resolve(a.clone()).unwrap_err().to_string();
        assert!(e.starts_with("VAULT_SMTP_URL:"), "{e}");
        a.smtp_url = Some("smtp://mail.example.org:587".into());
        assert!(Settings::resolve(a).is_ok());
    }

    #[test]
    fn secrets_come_from_files_and_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("jwt");
        std::fs::write(&f, "x".repeat(40) + "\n").unwrap();
        let mut a = args();
        a.jwt_secret_file = Some(f);
        match Settings::resolve(a.clone()).unwrap().jwt_secret {
            JwtSecretSource::Given(s) => assert_eq!(s.len(), 40),
            other => panic!("{other:?}"),
        }
        a.jwt_secret = Some("y".repeat(40));
        assert!(Settings::resolve(a).is_err(), "value and file together");
        let mut short = args();
        short.jwt_secret = Some("short".into());
        assert!(Settings::resolve(short).is_err());
    }

    type Mutation = fn(&mut SettingsArgs);

    #[test]
    fn bad_values_name_their_setting() {
        let cases: Vec<(Mutation, &str)> = vec![
            (|a| a.listen = Some("nonsense".into()), "VAULT_LISTEN"),
            (
                |a| a.database_url = Some("postgres://x".into()),
                "VAULT_DATABASE_URL",
            ),
            (|a| a.smtp_url = Some("http://x".into()), "VAULT_SMTP_URL"),
            (
                |a| a.blob_store = Some("ftp://x".into()),
                "VAULT_BLOB_STORE",
            ),
            (
                |a| a.access_token_ttl = Some(3600),
                "VAULT_ACCESS_TOKEN_TTL",
            ),
            (
                |a| a.trusted_proxies = Some("1.2.3.4,nope".into()),
                "VAULT_TRUSTED_PROXIES",
            ),
            (
                |a| a.tls_cert = Some("/nonexistent".into()),
                "VAULT_TLS_CERT",
            ),
            (|a| a.max_object_bytes = Some(0), "VAULT_MAX_OBJECT_BYTES"),
            (|a| a.quota_bytes = Some(u64::MAX), "VAULT_QUOTA_BYTES"),
            (
                |a| a.small_objects_in_db = Some(256 * 1024 + 1),
                "VAULT_SMALL_OBJECTS_IN_DB",
            ),
        ];
        for (mutate, setting) in cases {
            let mut a = args();
            mutate(&mut a);
            let e = Settings::resolve(a).unwrap_err().to_string();
            assert!(e.starts_with(setting), "{setting}: {e}");
        }
    }

    #[test]
    fn loopback_hosts() {
        for h in ["localhost", "127.0.0.1", "127.1.2.3", "[::1]", "::1"] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in ["example.org", "10.0.0.1", "[2001:db8::1]"] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn debug_redacts_secrets() {
        let mut a = args();
        a.jwt_secret = Some("s".repeat(40));
        a.smtp_url = Some("smtp://user:hunter2@127.0.0.1:25".into());
        a.database_url = Some("mysql://u:hunter2@db/x".into());
        let shown = format!("{:?}", Settings::resolve(a).unwrap());
        assert!(
            !shown.contains("hunter2") && !shown.contains("ssssssss"),
            "{shown}"
        );
    }
}
