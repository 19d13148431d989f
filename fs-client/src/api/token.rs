//! [`TokenSource`]: where long-running users of the API (the mount) get
//! their bearer token, as a trait object so the filesystem logic does not
//! depend on how sessions are stored.
//!
//! [`super::authed::SessionClient`] implements it (refreshing under the
//! session file's lock, so a mount and a CLI command sharing a session never
//! trip the server's refresh-token reuse detection); [`StaticToken`] is the
//! fixed token unit tests use with the fake.

use std::future::Future;
use std::pin::Pin;

use super::{AccessToken, ApiResult};

/// A boxed future, as trait objects need.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Supplies bearer tokens.
pub trait TokenSource: Send + Sync {
    /// A token believed valid (refreshing when it expires soon).
    fn token(&self) -> BoxFuture<'_, ApiResult<AccessToken>>;
    /// A new token after the server refused `rejected` (401).
    fn after_rejection<'a>(
        &'a self,
        rejected: &'a AccessToken,
    ) -> BoxFuture<'a, ApiResult<AccessToken>>;
}

/// One fixed token (tests and fakes).
#[derive(Debug, Clone)]
pub struct StaticToken(pub AccessToken);

impl TokenSource for StaticToken {
    fn token(&self) -> BoxFuture<'_, ApiResult<AccessToken>> {
        let t = self.0.clone();
        Box::pin(async move { Ok(t) })
    }

    fn after_rejection<'a>(
        &'a self,
        _rejected: &'a AccessToken,
    ) -> BoxFuture<'a, ApiResult<AccessToken>> {
        let t = self.0.clone();
        Box::pin(async move { Ok(t) })
    }
}
