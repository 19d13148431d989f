//! Setting up one simulated client: its own account, registered, verified
//! and logged in exactly as `vault register` / `vault login` do it (real
//! client-side crypto), then the vault's root directory created as the
//! first mount does.
//!
//! One account per client keeps the clients independent: no shared quota,
//! no shared rows to contend on beyond what separate users share. Each has
//! its own vault key, but all share one password and salt, so the password
//! hash (Argon2id at the cheapest parameters the server accepts, as the
//! end-to-end tests use) runs once per run: the server only ever sees the
//! derived auth key, and 50 client-side Argon2 runs would only cost setup
//! time and, with glibc keeping each thread's freed 19 MiB buffer, hundreds
//! of MiB of the generator's memory on a machine it shares with the server.
//!
//! The auth endpoints are rate-limited per client IP and endpoint
//! (`VAULT_AUTH_RATE_PER_MINUTE`, default 60, `VAULT_AUTH_BURST`, default
//! 20), and every simulated client comes from 127.0.0.1: a 429 is waited out
//! (its `Retry-After`) and retried until the setup deadline, so setup works
//! with the defaults, only slower (about a second per client beyond the
//! burst); a server started for a load run should raise both.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use common::NodeId;
use common::api::tree::{CreateNodeRequest, Kind, NodeInfo, paths as tree_paths};
use common::api::{
    Accepted, Base64, LoginRequest, LoginResponse, LoginTicket, PreloginRequest, PreloginResponse,
    RefreshRequest, RegisterRequest, SecondFactor, Tokens, VerifyEmailRequest, VerifyLoginRequest,
    paths,
};
use common::crypto::attrs::{NodeAttributes, NodeKind, Timestamp, seal_attributes};
use common::crypto::kdf::{AccountKeys, KdfParams, derive_account_keys};
use common::crypto::keywrap::{wrap_vault_key, wrap_vault_key_for_recovery};
use common::crypto::random_array;
use common::crypto::recovery::RecoveryKey;
use common::crypto::subkeys::{VaultKey, VaultSubkeys};
use reqwest::Method;

use super::http::{CallError, Http};
use super::mail::Outbox;

/// How long to wait for each mailed code.
const MAIL_TIMEOUT: Duration = Duration::from_secs(60);
/// Owner ids written into the sealed records (the server never sees them).
pub const UID: u32 = 1000;

/// What every setup shares.
#[derive(Debug)]
pub struct SetupContext {
    /// The mail directory.
    pub outbox: Outbox,
    /// The password's parameters and salt, shared by every account.
    pub kdf: KdfParams,
    /// The keys derived from the shared password.
    pub keys: AccountKeys,
    /// Setup gives up (rate limits included) at this instant.
    pub deadline: Instant,
    /// Unique per run, in every address.
    pub run_tag: String,
}

/// One logged-in simulated client.
#[derive(Debug)]
pub struct Session {
    /// Its connection.
    pub http: Http,
    /// Its address.
    pub email: String,
    /// The access token.
    pub access: String,
    /// The refresh token.
    pub refresh: String,
    /// When the access token should be refreshed.
    pub refresh_at: Instant,
    /// The vault's keys (names, records).
    pub keys: VaultSubkeys,
}

impl Session {
    /// Swaps in refreshed tokens.
    fn take(&mut self, tokens: &Tokens) {
        self.access = tokens.access_token.expose().to_owned();
        self.refresh = tokens.refresh_token.expose().to_owned();
        self.refresh_at = refresh_time(tokens.expires_in);
    }

    /// Refreshes the access token when it is due (not measured: a mount
    /// does this in the background).
    ///
    /// # Errors
    ///
    /// When the refresh fails (rate limits are waited out for a minute).
    pub async fn refresh_if_due(&mut self) -> anyhow::Result<()> {
        if Instant::now() < self.refresh_at {
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        let req = RefreshRequest {
            refresh_token: self.refresh.clone().into(),
        };
        let http = self.http.clone();
        let tokens: Tokens = patient(deadline, || {
            http.json(Method::POST, paths::REFRESH, Some(&req), None)
        })
        .await
        .with_context(|| format!("refreshing the session of {}", self.email))?;
        self.take(&tokens);
        Ok(())
    }
}

/// When to refresh a token valid for `expires_in` seconds: at three
/// quarters of its life.
fn refresh_time(expires_in: u64) -> Instant {
    Instant::now() + Duration::from_secs(expires_in.saturating_mul(3) / 4)
}

/// Calls `call` until it succeeds or fails with anything but a 429, waiting
/// out each 429's `Retry-After`; gives up at `deadline`.
async fn patient<T, F, Fut>(deadline: Instant, mut call: F) -> Result<T, CallError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, CallError>>,
{
    loop {
        match call().await {
            Err(e) => match e.rate_limited() {
                Some(secs) if Instant::now() + Duration::from_secs(secs) < deadline => {
                    tokio::time::sleep(Duration::from_secs(secs)).await;
                }
                _ => return Err(e),
            },
            ok => return ok,
        }
    }
}

/// The keys of the password every account of a run shares: a random
/// password hashed at the cheapest parameters the server accepts (OWASP's
/// Argon2id floor), off the async threads.
///
/// # Errors
///
/// When the OS has no randomness.
pub async fn shared_keys() -> anyhow::Result<(KdfParams, AccountKeys)> {
    let mut secret = [0u8; 12];
    getrandom::fill(&mut secret)?;
    let password = format!("load test {}", data_encoding::HEXLOWER.encode(&secret));
    let kdf = KdfParams {
        memory_kib: 19456,
        iterations: 2,
        parallelism: 1,
        salt: random_array()?,
    };
    let params = kdf.clone();
    let keys =
        tokio::task::spawn_blocking(move || derive_account_keys(password.as_bytes(), &params))
            .await??;
    Ok((kdf, keys))
}

/// Registers, verifies and logs in client `index` on `http`, and creates its
/// vault's root.
///
/// # Errors
///
/// Any refused call (after rate limits are waited out), a missing mail, or
/// the deadline.
pub async fn set_up(http: Http, index: usize, cx: &SetupContext) -> anyhow::Result<Session> {
    let email = format!("load-{}-{index:03}@load.test", cx.run_tag);
    let (kdf, keys) = (&cx.kdf, &cx.keys);
    let vault_key = VaultKey::generate()?;
    let recovery = RecoveryKey::generate()?;
    let deadline = cx.deadline;

    let register = RegisterRequest {
        email: email.clone(),
        kdf: kdf.clone(),
        auth_key: Base64(keys.auth.expose().to_vec()),
        wrapped_vault_key: Base64(wrap_vault_key(&keys.kek, &email, &vault_key)?),
        recovery_wrapped_vault_key: Base64(wrap_vault_key_for_recovery(
            &recovery, &email, &vault_key,
        )?),
    };
    let _: Accepted = patient(deadline, || {
        http.json(Method::POST, paths::REGISTER, Some(&register), None)
    })
    .await?;
    let code = cx.outbox.code(&email, "verification", MAIL_TIMEOUT).await?;
    let verify = VerifyEmailRequest {
        email: email.clone(),
        code: code.into(),
    };
    let _: Accepted = patient(deadline, || {
        http.json(Method::POST, paths::VERIFY_EMAIL, Some(&verify), None)
    })
    .await?;

    // Log in as `vault login` does: pre-login for the parameters (the keys
    // derived above are for the same ones), then the password step, then
    // the mailed code.
    let prelogin = PreloginRequest {
        email: email.clone(),
    };
    let pre: PreloginResponse = patient(deadline, || {
        http.json(Method::POST, paths::PRELOGIN, Some(&prelogin), None)
    })
    .await?;
    if pre.kdf != *kdf {
        bail!("pre-login for {email} answered other KDF parameters than registered");
    }
    let login = LoginRequest {
        email: email.clone(),
        auth_key: Base64(keys.auth.expose().to_vec()),
    };
    let ticket: LoginTicket = patient(deadline, || {
        http.json(Method::POST, paths::LOGIN, Some(&login), None)
    })
    .await?;
    if ticket.second_factor != SecondFactor::Email {
        bail!("the login of {email} asks for a second factor other than an e-mailed code");
    }
    let code = cx.outbox.code(&email, "login", MAIL_TIMEOUT).await?;
    let verify = VerifyLoginRequest {
        ticket: ticket.ticket.clone(),
        code: code.into(),
        device: Some("vault-load".into()),
    };
    let logged: LoginResponse = patient(deadline, || {
        http.json(Method::POST, paths::LOGIN_VERIFY, Some(&verify), None)
    })
    .await?;

    let subkeys = vault_key.subkeys()?;
    let root = NodeAttributes::new(NodeKind::Directory, 0o755, UID, UID, Timestamp::now());
    let create_root = CreateNodeRequest {
        id: NodeId::ROOT,
        kind: Kind::Directory,
        record: Base64(seal_attributes(
            &subkeys.attributes,
            NodeId::ROOT,
            1,
            &root,
        )?),
        entry: None,
        objects: Vec::new(),
    };
    let access = logged.tokens.access_token.expose().to_owned();
    let _: NodeInfo = http
        .json(
            Method::POST,
            tree_paths::NODES,
            Some(&create_root),
            Some(&access),
        )
        .await
        .with_context(|| format!("creating the root directory of {email}"))?;

    let mut session = Session {
        http,
        email,
        access: String::new(),
        refresh: String::new(),
        refresh_at: Instant::now(),
        keys: subkeys,
    };
    session.take(&logged.tokens);
    Ok(session)
}
