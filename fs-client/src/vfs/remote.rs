//! [`Remote`]: the [`VaultApi`] with a bearer token and retries.
//!
//! Every call gets a token from the [`TokenSource`]; a 401 makes it ask for
//! a fresh one and try once more. Transient failures (no connection, a
//! timeout, 5xx, 429) are retried with exponential back-off within a time
//! budget: short for calls a process is waiting on in the kernel
//! ([`Budget::Interactive`]), long for the background uploader
//! ([`Budget::Background`]). Calls that create things are retried too: ids
//! are the client's, so a retry of a request that did land answers
//! `exists`, which the callers recognise.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use common::NodeId;

use crate::api::{AccessToken, ApiError, ApiResult, TokenSource, VaultApi};

/// How long to keep retrying transient failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Budget {
    /// A process waits in the kernel: a few seconds at most.
    Interactive,
    /// `fsync` and unmount: ride out a server restart.
    Background,
    /// The background uploader, which holds a file's lock while it works
    /// and retries on its own schedule: give up quickly.
    Uploader,
}

impl Budget {
    fn limit(self) -> Duration {
        match self {
            Self::Interactive => Duration::from_secs(4),
            Self::Background => Duration::from_secs(60),
            Self::Uploader => Duration::from_secs(2),
        }
    }
}

const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(5);

/// True for failures worth trying again.
pub(crate) fn is_transient(e: &ApiError) -> bool {
    match e {
        ApiError::Unreachable { .. } | ApiError::Timeout { .. } => true,
        ApiError::Status { status, .. } => *status >= 500 || *status == 429,
        _ => false,
    }
}

/// After an interactive call gave up on an unreachable server, further
/// interactive calls try once only for this long (answering from the
/// caches at once instead of stalling every `stat` for the full budget).
const OFFLINE_GRACE: Duration = Duration::from_secs(10);

/// What must reach the server before any other call: directories made
/// here, which later calls may name (see `dirs`).
pub(crate) trait Before: Send + Sync {
    /// Whether anything waits that is, or is in, one of `nodes`; with
    /// `None`, whether anything waits at all (cheap).
    fn waiting(&self, nodes: Option<&[NodeId]>) -> bool;
    /// Sends what waits.
    fn send(&self) -> Pin<Box<dyn Future<Output = ApiResult<()>> + Send + '_>>;
}

/// The API with tokens and retries.
pub(crate) struct Remote<A> {
    api: Arc<A>,
    tokens: Arc<dyn TokenSource>,
    offline_until: std::sync::Mutex<Option<Instant>>,
    before: OnceLock<Weak<dyn Before>>,
}

impl<A> std::fmt::Debug for Remote<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").finish_non_exhaustive()
    }
}

impl<A: VaultApi> Remote<A> {
    pub(crate) fn new(api: Arc<A>, tokens: Arc<dyn TokenSource>) -> Self {
        Self {
            api,
            tokens,
            offline_until: std::sync::Mutex::new(None),
            before: OnceLock::new(),
        }
    }

    /// Makes every later [`Self::call`] first have `before` send what
    /// waits.
    pub(crate) fn set_before(&self, before: Weak<dyn Before>) {
        let _ = self.before.set(before);
    }

    pub(crate) fn offline(&self) -> bool {
        let until = *self.offline_until.lock().unwrap_or_else(|p| p.into_inner());
        until.is_some_and(|t| Instant::now() < t)
    }

    fn set_offline(&self, offline: bool) {
        *self.offline_until.lock().unwrap_or_else(|p| p.into_inner()) =
            offline.then(|| Instant::now() + OFFLINE_GRACE);
    }

    /// Runs `call` with the API and a token, refreshing once on 401 and
    /// retrying transient failures within `budget`; first sends what must
    /// reach the server before it (see [`Before`]).
    pub(crate) async fn call<T, F, Fut>(&self, budget: Budget, call: F) -> ApiResult<T>
    where
        F: Fn(Arc<A>, AccessToken) -> Fut,
        Fut: Future<Output = ApiResult<T>>,
    {
        self.send_before(None).await?;
        self.call_direct(budget, call).await
    }

    /// [`Self::call`] for a call whose answer depends only on `nodes`
    /// (the node read, or the directory looked up or listed; none for
    /// objects): what waits is sent first only when it is one of them or
    /// in one. A reader of other files then does not wait for new
    /// directories to be sent (rsync reads its source while it makes the
    /// copy's directories).
    pub(crate) async fn call_for<T, F, Fut>(
        &self,
        budget: Budget,
        nodes: &[NodeId],
        call: F,
    ) -> ApiResult<T>
    where
        F: Fn(Arc<A>, AccessToken) -> Fut,
        Fut: Future<Output = ApiResult<T>>,
    {
        self.send_before(Some(nodes)).await?;
        self.call_direct(budget, call).await
    }

    /// Has [`Before`] send what waits for a call about `nodes` (`None`:
    /// about anything).
    async fn send_before(&self, nodes: Option<&[NodeId]>) -> ApiResult<()> {
        if let Some(before) = self.before.get().and_then(Weak::upgrade)
            && before.waiting(nodes)
        {
            before.send().await?;
        }
        Ok(())
    }

    /// [`Self::call`] without sending what waits first: for the sender.
    pub(crate) async fn call_direct<T, F, Fut>(&self, budget: Budget, call: F) -> ApiResult<T>
    where
        F: Fn(Arc<A>, AccessToken) -> Fut,
        Fut: Future<Output = ApiResult<T>>,
    {
        let start = Instant::now();
        let mut delay = FIRST_DELAY;
        let mut refreshed = false;
        let once = budget != Budget::Background && self.offline();
        loop {
            let token = self.tokens.token().await?;
            match call(self.api.clone(), token.clone()).await {
                Err(e) if e.is_unauthorized() && !refreshed => {
                    refreshed = true;
                    let _fresh = self.tokens.after_rejection(&token).await?;
                }
                Err(e) if is_transient(&e) && !once && start.elapsed() + delay < budget.limit() => {
                    let wait = match &e {
                        ApiError::Status {
                            retry_after: Some(s),
                            ..
                        } => Duration::from_secs(*s).min(MAX_DELAY),
                        _ => delay,
                    };
                    tracing::debug!(error = %e, ?wait, "transient server error; retrying");
                    tokio::time::sleep(wait).await;
                    delay = (delay * 2).min(MAX_DELAY);
                }
                Err(e) => {
                    if matches!(e, ApiError::Unreachable { .. } | ApiError::Timeout { .. }) {
                        self.set_offline(true);
                    }
                    return Err(e);
                }
                Ok(v) => {
                    if once {
                        self.set_offline(false);
                    }
                    return Ok(v);
                }
            }
        }
    }
}
