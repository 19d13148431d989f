//! [`FakeApi`]: an in-memory server implementing [`AccountApi`], for unit
//! tests of the flows without a network.
//!
//! It follows the contract of `common::api::auth` closely enough to catch a
//! client that gets the protocol wrong: e-mail verification before login,
//! the two login steps bound by a ticket, single-use codes with a try limit,
//! refresh-token rotation with reuse detection, access tokens that can be
//! expired on demand, sessions, TOTP, the audit log, and a password change
//! that checks the current auth key and revokes every other session. "Mail"
//! goes to an outbox the test reads ([`FakeApi::last_code`]); the expected
//! TOTP code is exposed by [`FakeApi::totp_code`]. Failures can be queued
//! ([`FakeApi::fail_next`]) to exercise error handling.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use common::api::{
    Accepted, AccountInfo, AccountKeys, AuditEvent, Base64, ChangePasswordRequest, ErrorCode,
    LoginRequest, LoginResponse, LoginTicket, PreloginRequest, PreloginResponse, RefreshRequest,
    RegisterRequest, ResendCodeRequest, SecondFactor, SessionInfo, Tokens, TotpCodeRequest,
    TotpEnrollment, VerifyEmailRequest, VerifyLoginRequest,
};
use common::crypto::kdf::KdfParams;
use common::crypto::keywrap::canonical_account;

use super::{AccessToken, AccountApi, ApiError, ApiResult, AuditQuery};

/// The server the fake pretends to be (for error messages).
pub const FAKE_SERVER: &str = "https://fake.invalid";
const MAX_CODE_TRIES: u32 = 5;

/// What the fake server stores for an account (all of it opaque to a real
/// server: no password, no plaintext key).
#[derive(Debug, Clone)]
pub struct Stored {
    /// KDF parameters and salt.
    pub kdf: KdfParams,
    /// The auth key (a real server stores only its Argon2id hash).
    pub auth_key: Vec<u8>,
    /// The vault key wrapped by the key-encryption key.
    pub wrapped_vault_key: Vec<u8>,
    /// The vault key wrapped by the recovery key.
    pub recovery_wrapped_vault_key: Vec<u8>,
}

/// A failure to answer instead of the next call's real result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Injected {
    /// The server cannot be reached.
    Unreachable,
    /// 429 with `Retry-After`.
    RateLimited(u64),
    /// Any other status and code.
    Status(u16, ErrorCode),
}

#[derive(Debug, Clone)]
struct Account {
    id: String,
    email: String,
    kdf: KdfParams,
    auth_key: Vec<u8>,
    wrapped: Vec<u8>,
    recovery_wrapped: Vec<u8>,
    verified: bool,
    totp_active: bool,
    totp_pending: bool,
    totp_code: String,
    created_at: i64,
}

#[derive(Debug)]
struct Ticket {
    email: String,
    code: Option<String>,
    totp: bool,
    tries: u32,
}

#[derive(Debug)]
struct FakeSession {
    email: String,
    refresh: String,
    spent: Vec<String>,
    device: Option<String>,
    revoked: bool,
    created_at: i64,
}

#[derive(Debug, Default)]
struct State {
    accounts: HashMap<String, Account>,
    verify_codes: HashMap<String, String>,
    tickets: HashMap<String, Ticket>,
    sessions: HashMap<String, FakeSession>,
    /// Access token → (session id, still valid).
    access: HashMap<String, (String, bool)>,
    outbox: Vec<(String, String)>,
    audit: Vec<(String, AuditEvent)>,
    failures: VecDeque<Injected>,
    counter: u64,
    refreshes: u64,
    access_lifetime: u64,
}

impl State {
    fn next(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    fn code(&mut self) -> String {
        let n = self.next();
        format!("{:06}", (n * 7919 + 100_000) % 1_000_000)
    }

    fn mail(&mut self, email: &str) -> String {
        let code = self.code();
        self.outbox.push((email.to_owned(), code.clone()));
        code
    }

    fn log(&mut self, email: &str, event: &str, ok: bool, detail: Option<String>) {
        let id = i64::try_from(self.next()).unwrap_or(i64::MAX);
        self.audit.push((
            email.to_owned(),
            AuditEvent {
                id,
                at: 1_700_000_000 + id,
                event: event.to_owned(),
                ip: Some("127.0.0.1".into()),
                outcome: if ok { "success" } else { "failure" }.into(),
                detail,
            },
        ));
    }

    fn tokens(&mut self, session_id: &str) -> Tokens {
        let access = format!("access-{}", self.next());
        let refresh = format!("refresh-{}", self.next());
        self.access
            .insert(access.clone(), (session_id.to_owned(), true));
        if let Some(s) = self.sessions.get_mut(session_id) {
            let old = std::mem::replace(&mut s.refresh, refresh.clone());
            s.spent.push(old);
        }
        Tokens {
            access_token: access.into(),
            expires_in: self.access_lifetime,
            refresh_token: refresh.into(),
        }
    }

    /// The account and session id behind a bearer token.
    fn authed(&self, token: &AccessToken) -> ApiResult<(String, String)> {
        let unauthorized = || ApiError::status(401, ErrorCode::Unauthorized, "invalid token");
        let (sid, valid) = self.access.get(token.expose()).ok_or_else(unauthorized)?;
        let session = self.sessions.get(sid).ok_or_else(unauthorized)?;
        if !*valid || session.revoked {
            return Err(unauthorized());
        }
        Ok((session.email.clone(), sid.clone()))
    }

    fn account(&self, email: &str) -> ApiResult<&Account> {
        self.accounts
            .get(email)
            .ok_or_else(|| ApiError::status(401, ErrorCode::Unauthorized, "no account"))
    }

    fn account_mut(&mut self, email: &str) -> ApiResult<&mut Account> {
        self.accounts
            .get_mut(email)
            .ok_or_else(|| ApiError::status(401, ErrorCode::Unauthorized, "no account"))
    }

    fn info(&self, email: &str) -> ApiResult<AccountInfo> {
        let a = self.account(email)?;
        Ok(AccountInfo {
            id: a.id.clone(),
            email: a.email.clone(),
            totp_enabled: a.totp_active,
            created_at: a.created_at,
        })
    }
}

fn invalid_code() -> ApiError {
    ApiError::status(401, ErrorCode::InvalidCode, "wrong or expired code")
}

/// The in-memory server.
#[derive(Debug)]
pub struct FakeApi {
    state: Mutex<State>,
}

impl Default for FakeApi {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeApi {
    /// An empty server.
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State {
                access_lifetime: 900,
                ..State::default()
            }),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> ApiResult<T>) -> ApiResult<T> {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(failure) = st.failures.pop_front() {
            return Err(match failure {
                Injected::Unreachable => ApiError::Unreachable {
                    server: FAKE_SERVER.into(),
                    source: "connection refused".into(),
                },
                Injected::RateLimited(secs) => ApiError::Status {
                    status: 429,
                    code: Some(ErrorCode::RateLimited),
                    message: "too many requests".into(),
                    retry_after: Some(secs),
                },
                Injected::Status(status, code) => ApiError::status(status, code, "injected"),
            });
        }
        f(&mut st)
    }

    fn peek<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Answers the next call with `failure`.
    pub fn fail_next(&self, failure: Injected) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .failures
            .push_back(failure);
    }

    /// The last code mailed to `email`.
    pub fn last_code(&self, email: &str) -> Option<String> {
        let email = canonical_account(email);
        self.peek(|s| {
            s.outbox
                .iter()
                .rev()
                .find(|(to, _)| *to == email)
                .map(|(_, c)| c.clone())
        })
    }

    /// How many mails went to `email`.
    pub fn mails_to(&self, email: &str) -> usize {
        let email = canonical_account(email);
        self.peek(|s| s.outbox.iter().filter(|(to, _)| *to == email).count())
    }

    /// The TOTP code the "authenticator app" of `email` shows now.
    pub fn totp_code(&self, email: &str) -> Option<String> {
        let email = canonical_account(email);
        self.peek(|s| s.accounts.get(&email).map(|a| a.totp_code.clone()))
    }

    /// Makes every access token issued so far invalid (as if expired).
    pub fn expire_access_tokens(&self) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        for (_, valid) in st.access.values_mut() {
            *valid = false;
        }
    }

    /// Sets `expires_in` of future access tokens.
    pub fn set_access_lifetime(&self, secs: u64) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .access_lifetime = secs;
    }

    /// How many refreshes succeeded.
    pub fn refreshes(&self) -> u64 {
        self.peek(|s| s.refreshes)
    }

    /// What the server stores for `email`.
    pub fn stored(&self, email: &str) -> Option<Stored> {
        let email = canonical_account(email);
        self.peek(|s| {
            s.accounts.get(&email).map(|a| Stored {
                kdf: a.kdf.clone(),
                auth_key: a.auth_key.clone(),
                wrapped_vault_key: a.wrapped.clone(),
                recovery_wrapped_vault_key: a.recovery_wrapped.clone(),
            })
        })
    }

    /// Makes the server answer logins with another wrapped key (a lying or
    /// broken server).
    pub fn replace_wrapped_key(&self, email: &str, wrapped: Vec<u8>) {
        let email = canonical_account(email);
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(a) = st.accounts.get_mut(&email) {
            a.wrapped = wrapped;
        }
    }

    /// Makes pre-login answer `kdf` for `email` (a downgrade attempt).
    pub fn replace_kdf(&self, email: &str, kdf: KdfParams) {
        let email = canonical_account(email);
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(a) = st.accounts.get_mut(&email) {
            a.kdf = kdf;
        }
    }

    /// Ids of the sessions of `email` that are not revoked.
    pub fn live_sessions(&self, email: &str) -> Vec<String> {
        let email = canonical_account(email);
        let mut ids: Vec<String> = self.peek(|s| {
            s.sessions
                .iter()
                .filter(|(_, v)| v.email == email && !v.revoked)
                .map(|(k, _)| k.clone())
                .collect()
        });
        ids.sort();
        ids
    }
}

impl AccountApi for FakeApi {
    async fn register(&self, req: &RegisterRequest) -> ApiResult<Accepted> {
        self.with(|st| {
            let email = canonical_account(&req.email);
            req.kdf
                .validate()
                .map_err(|_| ApiError::status(400, ErrorCode::BadRequest, "weak kdf"))?;
            if req.auth_key.as_bytes().len() != 32 {
                return Err(ApiError::status(400, ErrorCode::BadRequest, "auth key"));
            }
            // No enumeration: an existing address is answered alike.
            if !st.accounts.contains_key(&email) {
                let id = format!("acc-{}", st.next());
                let totp_code = st.code();
                st.accounts.insert(
                    email.clone(),
                    Account {
                        id,
                        email: email.clone(),
                        kdf: req.kdf.clone(),
                        auth_key: req.auth_key.as_bytes().to_vec(),
                        wrapped: req.wrapped_vault_key.as_bytes().to_vec(),
                        recovery_wrapped: req.recovery_wrapped_vault_key.as_bytes().to_vec(),
                        verified: false,
                        totp_active: false,
                        totp_pending: false,
                        totp_code,
                        created_at: 1_700_000_000,
                    },
                );
                let code = st.mail(&email);
                st.verify_codes.insert(email.clone(), code);
                st.log(&email, "account.register", true, None);
            }
            Ok(Accepted::default())
        })
    }

    async fn verify_email(&self, req: &VerifyEmailRequest) -> ApiResult<Accepted> {
        self.with(|st| {
            let email = canonical_account(&req.email);
            if st.verify_codes.get(&email).map(String::as_str) != Some(req.code.expose()) {
                return Err(invalid_code());
            }
            st.verify_codes.remove(&email);
            st.account_mut(&email)?.verified = true;
            st.log(&email, "account.verify_email", true, None);
            Ok(Accepted::default())
        })
    }

    async fn prelogin(&self, req: &PreloginRequest) -> ApiResult<PreloginResponse> {
        self.with(|st| {
            let email = canonical_account(&req.email);
            let kdf = match st.accounts.get(&email) {
                Some(a) => a.kdf.clone(),
                None => {
                    let mut salt = [0u8; 16];
                    for (i, b) in email.bytes().enumerate() {
                        if let Some(s) = salt.get_mut(i % 16) {
                            *s ^= b;
                        }
                    }
                    KdfParams {
                        memory_kib: 65536,
                        iterations: 3,
                        parallelism: 4,
                        salt,
                    }
                }
            };
            Ok(PreloginResponse { kdf })
        })
    }

    async fn login(&self, req: &LoginRequest) -> ApiResult<LoginTicket> {
        self.with(|st| {
            let email = canonical_account(&req.email);
            let wrong =
                || ApiError::status(401, ErrorCode::Unauthorized, "wrong e-mail or password");
            let (verified, totp) = match st.accounts.get(&email) {
                Some(a) if a.auth_key == req.auth_key.as_bytes() => (a.verified, a.totp_active),
                _ => {
                    st.log(&email, "login.password", false, None);
                    return Err(wrong());
                }
            };
            if !verified {
                return Err(ApiError::status(
                    403,
                    ErrorCode::EmailNotVerified,
                    "verify the address first",
                ));
            }
            let ticket = format!("ticket-{}", st.next());
            let code = if totp { None } else { Some(st.mail(&email)) };
            st.tickets.insert(
                ticket.clone(),
                Ticket {
                    email: email.clone(),
                    code,
                    totp,
                    tries: 0,
                },
            );
            st.log(&email, "login.password", true, None);
            Ok(LoginTicket {
                ticket: ticket.into(),
                second_factor: if totp {
                    SecondFactor::Totp
                } else {
                    SecondFactor::Email
                },
                expires_in: 600,
            })
        })
    }

    async fn resend_code(&self, req: &ResendCodeRequest) -> ApiResult<Accepted> {
        self.with(|st| {
            let email = st
                .tickets
                .get(req.ticket.expose())
                .map(|t| t.email.clone())
                .ok_or_else(|| ApiError::status(401, ErrorCode::InvalidTicket, "bad ticket"))?;
            let code = st.mail(&email);
            if let Some(t) = st.tickets.get_mut(req.ticket.expose()) {
                t.code = Some(code);
            }
            Ok(Accepted::default())
        })
    }

    async fn verify_login(&self, req: &VerifyLoginRequest) -> ApiResult<LoginResponse> {
        self.with(|st| {
            let key = req.ticket.expose();
            let code = req.code.expose();
            let ticket = st
                .tickets
                .get_mut(key)
                .ok_or_else(|| ApiError::status(401, ErrorCode::InvalidTicket, "bad ticket"))?;
            let email = ticket.email.clone();
            let by_mail = ticket.code.as_deref() == Some(code);
            let totp_ok =
                ticket.totp && st.accounts.get(&email).map(|a| a.totp_code.as_str()) == Some(code);
            let Some(ticket) = st.tickets.get_mut(key) else {
                return Err(ApiError::status(
                    401,
                    ErrorCode::InvalidTicket,
                    "bad ticket",
                ));
            };
            if !by_mail && !totp_ok {
                ticket.tries += 1;
                if ticket.tries >= MAX_CODE_TRIES {
                    st.tickets.remove(key);
                }
                st.log(&email, "login.code", false, None);
                return Err(invalid_code());
            }
            st.tickets.remove(key);
            if totp_ok {
                let fresh = st.code();
                st.account_mut(&email)?.totp_code = fresh;
            }
            let session_id = format!("sess-{}", st.next());
            st.sessions.insert(
                session_id.clone(),
                FakeSession {
                    email: email.clone(),
                    refresh: String::new(),
                    spent: Vec::new(),
                    device: req.device.clone(),
                    revoked: false,
                    created_at: 1_700_000_000,
                },
            );
            let tokens = st.tokens(&session_id);
            st.log(&email, "login.code", true, Some(session_id.clone()));
            let a = st.account(&email)?;
            let (kdf, wrapped) = (a.kdf.clone(), Base64(a.wrapped.clone()));
            Ok(LoginResponse {
                tokens,
                session_id,
                wrapped_vault_key: wrapped,
                kdf,
                account: st.info(&email)?,
            })
        })
    }

    async fn refresh(&self, req: &RefreshRequest) -> ApiResult<Tokens> {
        self.with(|st| {
            let refused =
                || ApiError::status(401, ErrorCode::Unauthorized, "invalid refresh token");
            let token = req.refresh_token.expose();
            let found = st
                .sessions
                .iter_mut()
                .find(|(_, s)| s.refresh == token || s.spent.iter().any(|t| t == token));
            let Some((sid, session)) = found else {
                return Err(refused());
            };
            if session.revoked {
                return Err(refused());
            }
            if session.refresh != token {
                // A spent token came back: assume theft, end the session.
                session.revoked = true;
                return Err(refused());
            }
            let sid = sid.clone();
            st.refreshes += 1;
            Ok(st.tokens(&sid))
        })
    }

    async fn logout(&self, token: &AccessToken) -> ApiResult<()> {
        self.with(|st| {
            let (email, sid) = st.authed(token)?;
            if let Some(s) = st.sessions.get_mut(&sid) {
                s.revoked = true;
            }
            st.log(&email, "logout", true, Some(sid));
            Ok(())
        })
    }

    async fn account(&self, token: &AccessToken) -> ApiResult<AccountInfo> {
        self.with(|st| {
            let (email, _) = st.authed(token)?;
            st.info(&email)
        })
    }

    async fn account_keys(&self, token: &AccessToken) -> ApiResult<AccountKeys> {
        self.with(|st| {
            let (email, _) = st.authed(token)?;
            let a = st.account(&email)?;
            Ok(AccountKeys {
                kdf: a.kdf.clone(),
                wrapped_vault_key: Base64(a.wrapped.clone()),
            })
        })
    }

    async fn change_password(
        &self,
        token: &AccessToken,
        req: &ChangePasswordRequest,
    ) -> ApiResult<()> {
        self.with(|st| {
            let (email, sid) = st.authed(token)?;
            if st.account(&email)?.auth_key != req.current_auth_key.as_bytes() {
                st.log(&email, "account.password", false, None);
                return Err(ApiError::status(
                    403,
                    ErrorCode::Forbidden,
                    "wrong current password",
                ));
            }
            req.new_kdf
                .validate()
                .map_err(|_| ApiError::status(400, ErrorCode::BadRequest, "weak kdf"))?;
            let a = st.account_mut(&email)?;
            a.kdf = req.new_kdf.clone();
            a.auth_key = req.new_auth_key.as_bytes().to_vec();
            a.wrapped = req.new_wrapped_vault_key.as_bytes().to_vec();
            for (id, s) in st.sessions.iter_mut() {
                if s.email == email && *id != sid {
                    s.revoked = true;
                }
            }
            st.log(&email, "account.password", true, None);
            Ok(())
        })
    }

    async fn sessions(&self, token: &AccessToken) -> ApiResult<Vec<SessionInfo>> {
        self.with(|st| {
            let (email, current) = st.authed(token)?;
            let mut list: Vec<SessionInfo> = st
                .sessions
                .iter()
                .filter(|(_, s)| s.email == email && !s.revoked)
                .map(|(id, s)| SessionInfo {
                    id: id.clone(),
                    device: s.device.clone(),
                    ip: Some("127.0.0.1".into()),
                    created_at: s.created_at,
                    last_used_at: s.created_at,
                    current: *id == current,
                })
                .collect();
            list.sort_by(|a, b| a.id.cmp(&b.id));
            Ok(list)
        })
    }

    async fn revoke_session(&self, token: &AccessToken, id: &str) -> ApiResult<()> {
        self.with(|st| {
            let (email, _) = st.authed(token)?;
            match st.sessions.get_mut(id) {
                Some(s) if s.email == email && !s.revoked => s.revoked = true,
                _ => {
                    return Err(ApiError::status(
                        404,
                        ErrorCode::NotFound,
                        "no such session",
                    ));
                }
            }
            st.log(&email, "session.revoke", true, Some(id.to_owned()));
            Ok(())
        })
    }

    async fn revoke_all_sessions(&self, token: &AccessToken) -> ApiResult<()> {
        self.with(|st| {
            let (email, _) = st.authed(token)?;
            for s in st.sessions.values_mut() {
                if s.email == email {
                    s.revoked = true;
                }
            }
            st.log(&email, "session.revoke_all", true, None);
            Ok(())
        })
    }

    async fn totp_enroll(&self, token: &AccessToken) -> ApiResult<TotpEnrollment> {
        self.with(|st| {
            let (email, _) = st.authed(token)?;
            let a = st.account_mut(&email)?;
            if a.totp_active {
                return Err(ApiError::status(
                    409,
                    ErrorCode::Conflict,
                    "TOTP is already on",
                ));
            }
            a.totp_pending = true;
            Ok(TotpEnrollment {
                secret: "JBSWY3DPEHPK3PXP".into(),
                otpauth_uri: format!(
                    "otpauth://totp/SecureVault:{email}?secret=JBSWY3DPEHPK3PXP&issuer=SecureVault"
                )
                .into(),
            })
        })
    }

    async fn totp_activate(&self, token: &AccessToken, req: &TotpCodeRequest) -> ApiResult<()> {
        self.with(|st| {
            let (email, _) = st.authed(token)?;
            let fresh = st.code();
            let a = st.account_mut(&email)?;
            if !a.totp_pending || a.totp_code != req.code.expose() {
                return Err(invalid_code());
            }
            a.totp_pending = false;
            a.totp_active = true;
            a.totp_code = fresh;
            st.log(&email, "totp.activate", true, None);
            Ok(())
        })
    }

    async fn totp_disable(&self, token: &AccessToken, req: &TotpCodeRequest) -> ApiResult<()> {
        self.with(|st| {
            let (email, _) = st.authed(token)?;
            let fresh = st.code();
            let a = st.account_mut(&email)?;
            if !a.totp_active || a.totp_code != req.code.expose() {
                return Err(invalid_code());
            }
            a.totp_active = false;
            a.totp_code = fresh;
            st.log(&email, "totp.disable", true, None);
            Ok(())
        })
    }

    async fn audit(&self, token: &AccessToken, query: AuditQuery) -> ApiResult<Vec<AuditEvent>> {
        self.with(|st| {
            let (email, _) = st.authed(token)?;
            let limit = usize::try_from(query.limit.unwrap_or(50)).unwrap_or(usize::MAX);
            Ok(st
                .audit
                .iter()
                .rev()
                .filter(|(who, e)| *who == email && query.before.is_none_or(|b| e.id < b))
                .map(|(_, e)| e.clone())
                .take(limit)
                .collect())
        })
    }
}
