//! Test accounts with the real client-side crypto (Argon2id at the lowest
//! accepted cost, HKDF branches, the wrapped vault key and the recovery
//! wrap), and the register / verify / login flows every test builds on.

use common::api::{
    Accepted, Base64, ChangePasswordRequest, LoginResponse, LoginTicket, PreloginResponse,
    RegisterRequest, SecondFactor,
};
use common::crypto::kdf::{AccountKeys, KdfParams, derive_account_keys};
use common::crypto::keywrap::{unwrap_vault_key, wrap_vault_key, wrap_vault_key_for_recovery};
use common::crypto::random_array;
use common::crypto::recovery::RecoveryKey;
use common::crypto::subkeys::VaultKey;

use crate::random_hex;
use crate::server::TestServer;

/// The cheapest parameters the server accepts (OWASP's Argon2id floor), with
/// a fresh salt: real crypto, fast tests.
pub fn test_kdf() -> KdfParams {
    KdfParams {
        memory_kib: 19456,
        iterations: 2,
        parallelism: 1,
        salt: random_array().expect("OS randomness"),
    }
}

/// Derives the account keys off the async threads.
pub async fn derive(password: &str, kdf: &KdfParams) -> AccountKeys {
    let password = password.to_owned();
    let kdf = kdf.clone();
    tokio::task::spawn_blocking(move || derive_account_keys(password.as_bytes(), &kdf))
        .await
        .expect("join")
        .expect("derive_account_keys")
}

/// A unique address `<tag>-<random>@e2e.test`.
pub fn unique_email(tag: &str) -> String {
    format!("{tag}-{}@e2e.test", random_hex(8))
}

/// What the client knows about an account.
#[derive(Debug)]
pub struct TestAccount {
    /// The address as registered.
    pub email: String,
    /// The password.
    pub password: String,
    /// The KDF parameters and salt.
    pub kdf: KdfParams,
    /// The keys derived from the password.
    pub keys: AccountKeys,
    /// The random vault key.
    pub vault_key: VaultKey,
    /// The recovery key.
    pub recovery: RecoveryKey,
}

impl TestAccount {
    /// A new account with a unique address.
    pub async fn new(tag: &str) -> Self {
        Self::with_email(&unique_email(tag)).await
    }

    /// A new account for `email`.
    pub async fn with_email(email: &str) -> Self {
        let password = format!("correct horse battery {}", random_hex(4));
        let kdf = test_kdf();
        let keys = derive(&password, &kdf).await;
        Self {
            email: email.to_owned(),
            password,
            kdf,
            keys,
            vault_key: VaultKey::generate().expect("vault key"),
            recovery: RecoveryKey::generate().expect("recovery key"),
        }
    }

    /// The auth key bytes.
    pub fn auth_key(&self) -> Vec<u8> {
        self.keys.auth.expose().to_vec()
    }

    /// The registration request.
    pub fn register_request(&self) -> RegisterRequest {
        RegisterRequest {
            email: self.email.clone(),
            kdf: self.kdf.clone(),
            auth_key: Base64(self.auth_key()),
            wrapped_vault_key: Base64(
                wrap_vault_key(&self.keys.kek, &self.email, &self.vault_key).expect("wrap"),
            ),
            recovery_wrapped_vault_key: Base64(
                wrap_vault_key_for_recovery(&self.recovery, &self.email, &self.vault_key)
                    .expect("recovery wrap"),
            ),
        }
    }

    /// The same account after a password change to `new_password` (new
    /// salt, same vault key), and the request that makes the change.
    pub async fn with_new_password(&self, new_password: &str) -> (Self, ChangePasswordRequest) {
        let kdf = test_kdf();
        let keys = derive(new_password, &kdf).await;
        let req = ChangePasswordRequest {
            current_auth_key: Base64(self.auth_key()),
            new_kdf: kdf.clone(),
            new_auth_key: Base64(keys.auth.expose().to_vec()),
            new_wrapped_vault_key: Base64(
                wrap_vault_key(&keys.kek, &self.email, &self.vault_key).expect("wrap"),
            ),
        };
        let next = Self {
            email: self.email.clone(),
            password: new_password.to_owned(),
            kdf,
            keys,
            vault_key: self.vault_key.clone(),
            recovery: self.recovery.clone(),
        };
        (next, req)
    }

    /// Checks that a login answer carries this account's vault key: derives
    /// the key-encryption key from the password and the answer's parameters
    /// and unwraps.
    pub async fn assert_unwraps(&self, response: &LoginResponse) {
        let keys = derive(&self.password, &response.kdf).await;
        let vault_key = unwrap_vault_key(
            &keys.kek,
            &self.email,
            response.wrapped_vault_key.as_bytes(),
        )
        .expect("the wrapped vault key unwraps with the password");
        assert_eq!(vault_key, self.vault_key, "unwrapped a different vault key");
    }
}

/// A logged-in session.
#[derive(Debug, Clone)]
pub struct LoggedIn {
    /// The access token.
    pub access: String,
    /// The refresh token.
    pub refresh: String,
    /// The session id.
    pub session_id: String,
    /// The whole answer.
    pub response: LoginResponse,
}

impl From<LoginResponse> for LoggedIn {
    fn from(response: LoginResponse) -> Self {
        Self {
            access: response.tokens.access_token.expose().to_owned(),
            refresh: response.tokens.refresh_token.expose().to_owned(),
            session_id: response.session_id.clone(),
            response,
        }
    }
}

impl TestServer {
    /// Registers `a` (202).
    pub async fn register(&self, a: &TestAccount) {
        self.api
            .register(&a.register_request())
            .await
            .ok::<Accepted>(202);
    }

    /// The verification code mailed to `email`.
    pub async fn verification_code(&self, email: &str) -> String {
        self.mail.code(email, "verification").await
    }

    /// The next login code mailed to `email`.
    pub async fn login_code(&self, email: &str) -> String {
        self.mail.code(email, "login").await
    }

    /// Registers `a` and verifies the address with the mailed code.
    pub async fn register_and_verify(&self, a: &TestAccount) {
        self.register(a).await;
        let code = self.verification_code(&a.email).await;
        self.api
            .verify_email(&a.email, &code)
            .await
            .ok::<Accepted>(200);
    }

    /// A new registered and verified account.
    pub async fn new_account(&self, tag: &str) -> TestAccount {
        let a = TestAccount::new(tag).await;
        self.register_and_verify(&a).await;
        a
    }

    /// Step one as the client does it: pre-login (which must answer the
    /// account's parameters), derive the auth key from the password, log in.
    pub async fn login_ticket(&self, a: &TestAccount) -> LoginTicket {
        let pre: PreloginResponse = self.api.prelogin(&a.email).await.ok(200);
        assert_eq!(pre.kdf, a.kdf, "prelogin answered other parameters");
        let keys = derive(&a.password, &pre.kdf).await;
        self.api.login(&a.email, keys.auth.expose()).await.ok(200)
    }

    /// The whole login with the e-mailed code; checks the vault key.
    pub async fn login(&self, a: &TestAccount) -> LoggedIn {
        self.login_as(a, None).await
    }

    /// [`Self::login`] with a device label.
    pub async fn login_as(&self, a: &TestAccount, device: Option<&str>) -> LoggedIn {
        let ticket = self.login_ticket(a).await;
        assert_eq!(ticket.second_factor, SecondFactor::Email);
        let code = self.login_code(&a.email).await;
        let response: LoginResponse = self
            .api
            .verify_login(ticket.ticket.expose(), &code, device)
            .await
            .ok(200);
        a.assert_unwraps(&response).await;
        response.into()
    }
}
