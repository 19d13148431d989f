//! [`SessionClient`]: the bearer-token calls of [`AccountApi`] for a saved
//! session, with the access token managed out of sight.
//!
//! The access token lives in memory only. It is obtained by refreshing when
//! first needed or about to expire; a call answered 401 triggers one refresh
//! and one retry. Every refresh rotates the refresh token, so each one is
//! done under the store's cross-process lock, starting from the token on
//! disk (another process may have rotated it meanwhile) and saving the new
//! one before anything else happens. A refresh the server refuses means the
//! session is over (expired, revoked, or logged out elsewhere): the saved
//! session is removed and the caller gets [`ApiError::NotLoggedIn`].

use std::future::Future;
use std::time::{Duration, Instant};

use common::api::{
    AccountInfo, AccountKeys, AuditEvent, ChangePasswordRequest, RefreshRequest, SessionInfo,
    TotpCodeRequest, TotpEnrollment,
};
use tokio::sync::Mutex;

use super::{AccessToken, AccountApi, ApiError, ApiResult, AuditQuery};
use crate::config::{RefreshToken, Session, SessionStore, StoreLock};

/// Refresh this long before the server's stated expiry.
const EXPIRY_MARGIN: Duration = Duration::from_secs(30);
/// Give up waiting for another process's refresh after this long.
const LOCK_WAIT: Duration = Duration::from_secs(30);
const LOCK_POLL: Duration = Duration::from_millis(50);

#[derive(Debug)]
struct State {
    session: Session,
    access: Option<(AccessToken, Instant)>,
}

/// Authenticated calls for one session.
#[derive(Debug)]
pub struct SessionClient<'a, A, S> {
    api: &'a A,
    store: &'a S,
    state: Mutex<State>,
}

impl<'a, A: AccountApi, S: SessionStore> SessionClient<'a, A, S> {
    /// A client for `session`, which `store` holds.
    pub fn new(api: &'a A, store: &'a S, session: Session) -> Self {
        Self {
            api,
            store,
            state: Mutex::new(State {
                session,
                access: None,
            }),
        }
    }

    /// A client for the session saved in `store`.
    pub fn from_store(api: &'a A, store: &'a S) -> ApiResult<Self> {
        let session = store.load()?.ok_or(ApiError::NotLoggedIn)?;
        Ok(Self::new(api, store, session))
    }

    /// A copy of the session as it stands (with the latest refresh token).
    pub async fn session(&self) -> Session {
        self.state.lock().await.session.clone()
    }

    /// Changes the session and saves it (e.g. after a password change).
    pub async fn update_session(&self, change: impl FnOnce(&mut Session)) -> ApiResult<()> {
        let mut st = self.state.lock().await;
        let _lock = self.lock().await?;
        match self.store.load()? {
            // Keep the newest refresh token: another process may have
            // rotated it, and saving an older one would break that process.
            Some(disk) if disk.session_id == st.session.session_id => {
                st.session.refresh_token = disk.refresh_token;
            }
            // Logged out or replaced meanwhile: do not bring it back.
            _ => {
                change(&mut st.session);
                return Ok(());
            }
        }
        change(&mut st.session);
        self.store.save(&st.session)?;
        Ok(())
    }

    async fn lock(&self) -> ApiResult<StoreLock> {
        let start = Instant::now();
        loop {
            if let Some(lock) = self.store.try_lock()? {
                return Ok(lock);
            }
            if start.elapsed() > LOCK_WAIT {
                return Err(ApiError::Store(crate::config::ConfigError::Busy {
                    path: crate::config::LOCK_FILE.into(),
                }));
            }
            tokio::time::sleep(LOCK_POLL).await;
        }
    }

    /// Exchanges the refresh token; `st` is held by the caller.
    async fn refresh_locked(&self, st: &mut State) -> ApiResult<AccessToken> {
        let _lock = self.lock().await?;
        // Start from the token on disk: another process may have rotated it.
        match self.store.load()? {
            Some(disk)
                if disk.session_id == st.session.session_id && disk.server == st.session.server =>
            {
                st.session.refresh_token = disk.refresh_token;
            }
            // Logged out, or replaced by another login, in another process.
            _ => return Err(ApiError::NotLoggedIn),
        }
        let req = RefreshRequest {
            refresh_token: st.session.refresh_token.expose().into(),
        };
        let started = Instant::now();
        match self.api.refresh(&req).await {
            Ok(tokens) => {
                st.session.refresh_token =
                    RefreshToken::new(tokens.refresh_token.expose().to_owned());
                self.store.save(&st.session)?;
                let lifetime = Duration::from_secs(tokens.expires_in).saturating_sub(EXPIRY_MARGIN);
                let token = AccessToken::new(tokens.access_token.expose().to_owned());
                st.access = Some((token.clone(), started + lifetime));
                tracing::debug!(session = %st.session.session_id, "access token refreshed");
                Ok(token)
            }
            Err(e) if e.is_unauthorized() => {
                tracing::debug!(error = %e, "refresh refused; the session is over");
                st.access = None;
                self.store.remove()?;
                Err(ApiError::NotLoggedIn)
            }
            Err(e) => Err(e),
        }
    }

    /// A token believed valid, refreshing if there is none or it expires soon.
    async fn token(&self) -> ApiResult<AccessToken> {
        let mut st = self.state.lock().await;
        if let Some((token, until)) = &st.access
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        self.refresh_locked(&mut st).await
    }

    /// A new token after `rejected` was refused (unless another task already
    /// replaced it).
    async fn token_after_rejection(&self, rejected: &AccessToken) -> ApiResult<AccessToken> {
        let mut st = self.state.lock().await;
        if let Some((token, _)) = &st.access
            && token != rejected
        {
            return Ok(token.clone());
        }
        self.refresh_locked(&mut st).await
    }

    /// Runs `call` with a token; on 401 refreshes once and retries once.
    pub async fn call<T, F, Fut>(&self, call: F) -> ApiResult<T>
    where
        F: Fn(AccessToken) -> Fut,
        Fut: Future<Output = ApiResult<T>>,
    {
        let token = self.token().await?;
        match call(token.clone()).await {
            Err(e) if e.is_unauthorized() => {
                tracing::debug!("access token refused; refreshing once");
                let fresh = self.token_after_rejection(&token).await?;
                call(fresh).await
            }
            other => other,
        }
    }

    /// The account.
    pub async fn account(&self) -> ApiResult<AccountInfo> {
        let api = self.api;
        self.call(move |t| async move { api.account(&t).await })
            .await
    }

    /// The KDF parameters and wrapped vault key as the server has them now.
    pub async fn account_keys(&self) -> ApiResult<AccountKeys> {
        let api = self.api;
        self.call(move |t| async move { api.account_keys(&t).await })
            .await
    }

    /// Ends this session on the server.
    pub async fn logout(&self) -> ApiResult<()> {
        let api = self.api;
        self.call(move |t| async move { api.logout(&t).await })
            .await
    }

    /// Changes the password.
    pub async fn change_password(&self, req: &ChangePasswordRequest) -> ApiResult<()> {
        let api = self.api;
        self.call(move |t| async move { api.change_password(&t, req).await })
            .await
    }

    /// Lists the account's sessions.
    pub async fn sessions(&self) -> ApiResult<Vec<SessionInfo>> {
        let api = self.api;
        self.call(move |t| async move { api.sessions(&t).await })
            .await
    }

    /// Revokes one session.
    pub async fn revoke_session(&self, id: &str) -> ApiResult<()> {
        let api = self.api;
        self.call(move |t| async move { api.revoke_session(&t, id).await })
            .await
    }

    /// Revokes every session of the account, this one included.
    pub async fn revoke_all_sessions(&self) -> ApiResult<()> {
        let api = self.api;
        self.call(move |t| async move { api.revoke_all_sessions(&t).await })
            .await
    }

    /// Starts TOTP enrolment.
    pub async fn totp_enroll(&self) -> ApiResult<TotpEnrollment> {
        let api = self.api;
        self.call(move |t| async move { api.totp_enroll(&t).await })
            .await
    }

    /// Confirms TOTP enrolment with a first code.
    pub async fn totp_activate(&self, req: &TotpCodeRequest) -> ApiResult<()> {
        let api = self.api;
        self.call(move |t| async move { api.totp_activate(&t, req).await })
            .await
    }

    /// Turns TOTP off with a current code.
    pub async fn totp_disable(&self, req: &TotpCodeRequest) -> ApiResult<()> {
        let api = self.api;
        self.call(move |t| async move { api.totp_disable(&t, req).await })
            .await
    }

    /// Reads the audit log.
    pub async fn audit(&self, query: AuditQuery) -> ApiResult<Vec<AuditEvent>> {
        let api = self.api;
        self.call(move |t| async move { api.audit(&t, query).await })
            .await
    }
}

impl<A: AccountApi, S: SessionStore> super::TokenSource for SessionClient<'_, A, S> {
    fn token(&self) -> super::BoxFuture<'_, ApiResult<AccessToken>> {
        Box::pin(SessionClient::token(self))
    }

    fn after_rejection<'a>(
        &'a self,
        rejected: &'a AccessToken,
    ) -> super::BoxFuture<'a, ApiResult<AccessToken>> {
        Box::pin(self.token_after_rejection(rejected))
    }
}
