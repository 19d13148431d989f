//! The SecureVault server as a library: `main.rs` only parses the command
//! line and calls in here, and the end-to-end tests start the same server on
//! `127.0.0.1:0`.
//!
//! The server holds no keys: it stores the client's ciphertext and the
//! hashes of login secrets, and enforces ownership, single use and rate
//! limits.

pub mod auth;
pub mod blob;
pub mod config;
pub mod error;
pub mod gc;
pub mod http;
pub mod mail;
pub mod memory;
pub mod objects;
pub mod state;
pub mod store;
pub mod tree;

use axum::serve::ListenerExt as _;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use lettre::message::Mailbox;

use crate::auth::jwt::JwtCodec;
use crate::auth::ratelimit::IpLimiter;
use crate::auth::secrets::{SecretError, ServerKeys};
use crate::blob::{BlobError, BlobStore, DbPool};
use crate::config::{MailSettings, Settings};
use crate::mail::{MailError, Mailer, OutboxMailer, SmtpMailer};
use crate::state::AppState;
use crate::store::{Store, StoreError};

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The database.
    #[error("database: {0}")]
    Store(#[from] StoreError),
    /// The object store.
    #[error("object store: {0}")]
    Blob(#[from] BlobError),
    /// The mail transport.
    #[error("mail: {0}")]
    Mail(#[from] MailError),
    /// The server secret.
    #[error("{0}")]
    Secret(#[from] SecretError),
    /// Binding or serving.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A setting that only fails when used.
    #[error("{0}")]
    Config(String),
}

/// Connects the store (running migrations), the mailer and the keys.
pub async fn build_state(settings: &Settings) -> Result<AppState, ServerError> {
    if let Some(path) = settings.database_url.expose().strip_prefix("sqlite://")
        && let Some(dir) = std::path::Path::new(path).parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    let connected = store::connect_with_pool(settings.database_url.expose()).await?;
    connected.store.migrate().await?;
    let blobs = open_blobs(settings, Some(connected.pool.clone())).await?;
    let blobs = blob::with_small_in_db(blobs, Some(connected.pool), settings.small_objects_in_db);
    assemble(settings, connected.store, blobs, None).await
}

/// Builds the state around a given store (and optionally mailer). The
/// object store is opened from `VAULT_BLOB_STORE`; `db` is refused here (it
/// needs the store's pool: use [`build_state`]).
pub async fn build_state_with(
    settings: &Settings,
    store: Arc<dyn Store>,
    mailer: Option<Arc<dyn Mailer>>,
) -> Result<AppState, ServerError> {
    let blobs = open_blobs(settings, None).await?;
    assemble(settings, store, blobs, mailer).await
}

/// Opens the object store `VAULT_BLOB_STORE` names (`db` in `pool`).
async fn open_blobs(
    settings: &Settings,
    pool: Option<DbPool>,
) -> Result<Arc<dyn BlobStore>, ServerError> {
    let blobs = blob::open(&settings.blob_store, &settings.data_dir, pool).await?;
    tracing::info!(backend = blobs.backend(), "object store opened");
    Ok(blobs)
}

async fn assemble(
    settings: &Settings,
    store: Arc<dyn Store>,
    blobs: Arc<dyn BlobStore>,
    mailer: Option<Arc<dyn Mailer>>,
) -> Result<AppState, ServerError> {
    let from: Mailbox = settings
        .mail_from
        .parse()
        .map_err(|_| ServerError::Config("VAULT_MAIL_FROM is not a mailbox".into()))?;
    let mailer: Arc<dyn Mailer> = match mailer {
        Some(m) => m,
        None => match &settings.mail {
            MailSettings::Smtp(url) => Arc::new(SmtpMailer::new(url.expose(), from)?),
            MailSettings::Outbox(dir) => Arc::new(OutboxMailer::new(dir.clone(), from)?),
        },
    };
    let keys = Arc::new(ServerKeys::load(&settings.jwt_secret)?);
    let issuer = settings
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", settings.listen));
    let jwt = Arc::new(JwtCodec::new(
        keys.jwt_key(),
        issuer,
        settings.access_token_ttl,
    ));
    Ok(AppState {
        store,
        mailer,
        keys,
        jwt,
        limiter: Arc::new(IpLimiter::new(
            settings.auth_rate_per_minute,
            settings.auth_burst,
        )),
        trusted_proxies: Arc::new(settings.trusted_proxies.clone()),
        blobs,
        quota_bytes: settings.quota_bytes,
        max_object_bytes: settings.max_object_bytes,
        gc_grace_secs: settings.gc_grace_secs,
    })
}

/// Serves on an already bound listener until `shutdown` resolves; runs the
/// object collector ([`gc`]) meanwhile and stops it afterwards.
pub async fn serve(
    settings: &Settings,
    state: AppState,
    listener: std::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let collector = gc::spawn(state.clone(), gc::PERIOD);
    let served = serve_http(settings, state, listener, shutdown).await;
    collector.stop().await;
    served
}

async fn serve_http(
    settings: &Settings,
    state: AppState,
    listener: std::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    listener.set_nonblocking(true)?;
    let app =
        http::router(state, settings.max_body).into_make_service_with_connect_info::<SocketAddr>();
    match &settings.tls {
        None => {
            // TCP_NODELAY: a response written as headers, then body (object
            // downloads) must not wait for the client's delayed ACK (40 ms).
            let listener = tokio::net::TcpListener::from_std(listener)?.tap_io(|tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "cannot set TCP_NODELAY");
                }
            });
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await?;
        }
        Some((cert, key)) => {
            let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key).await?;
            let handle = axum_server::Handle::new();
            let stopper = handle.clone();
            tokio::spawn(async move {
                shutdown.await;
                stopper.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
            });
            let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(config)
                .acceptor(axum_server::accept::NoDelayAcceptor::new());
            axum_server::from_tcp(listener)?
                .acceptor(acceptor)
                .handle(handle)
                .serve(app)
                .await?;
        }
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
