//! Rate limits: per client IP on every auth endpoint (governor, in memory per
//! instance), and per account with exponential back-off (in the database, so
//! every instance agrees).
//!
//! The per-account back-off never locks an account: after
//! [`FREE_FAILURES`] wrong passwords each further one doubles the wait (from
//! [`FIRST_BACKOFF`] up to [`MAX_BACKOFF`] seconds), and a success clears it. Unknown addresses are
//! throttled exactly like known ones, so the limits reveal nothing.

use std::net::IpAddr;
use std::num::NonZeroU32;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::ApiError;
use crate::http::client_ip::ClientIp;
use crate::state::AppState;
use crate::store::{Throttle, ThrottleCharge};

/// Failures allowed before the back-off starts.
pub const FREE_FAILURES: u32 = 5;
/// The longest back-off, in seconds.
pub const MAX_BACKOFF: i64 = 900;

/// A keyed limiter over (client IP, endpoint).
#[derive(Debug)]
pub struct IpLimiter {
    limiter: DefaultKeyedRateLimiter<(IpAddr, String)>,
    clock: DefaultClock,
}

impl IpLimiter {
    /// `per_minute` requests per IP and endpoint, with `burst` on top.
    pub fn new(per_minute: u32, burst: u32) -> Self {
        let rate = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        Self {
            limiter: RateLimiter::keyed(Quota::per_minute(rate).allow_burst(burst)),
            clock: DefaultClock::default(),
        }
    }

    /// Ok, or the seconds to wait.
    pub fn check(&self, ip: IpAddr, endpoint: &str) -> Result<(), u64> {
        self.limiter
            .check_key(&(ip, endpoint.to_owned()))
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()).as_secs().max(1))
    }
}

/// Middleware for the auth routes: 429 with Retry-After past the limit.
pub async fn limit_by_ip(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    path: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let endpoint = path.as_ref().map_or("?", |p| p.as_str());
    match state.limiter.check(ip, endpoint) {
        Ok(()) => next.run(request).await,
        Err(retry_after) => {
            metrics::counter!("vault_rate_limited_total", "scope" => "ip").increment(1);
            ApiError::RateLimited { retry_after }.into_response()
        }
    }
}

/// Counts a password attempt against the back-off under `key` *before* the
/// password is checked (a success clears it again), or answers 429 while a
/// back-off runs. Atomic in the store, so parallel guesses get no extras.
pub async fn charge_attempt(state: &AppState, key: &[u8], now: i64) -> Result<(), ApiError> {
    let next = move |previous: Option<Throttle>| after_failure(previous, now);
    match state.store.charge_throttle(key, now, &next).await? {
        ThrottleCharge::Charged(_) => Ok(()),
        ThrottleCharge::Blocked { not_before } => {
            metrics::counter!("vault_rate_limited_total", "scope" => "account").increment(1);
            Err(ApiError::RateLimited {
                retry_after: u64::try_from(not_before - now).unwrap_or(1).max(1),
            })
        }
    }
}

/// The first back-off, in seconds (for failure `FREE_FAILURES + 1`).
pub const FIRST_BACKOFF: i64 = 5;

/// The state after one more failure: free up to [`FREE_FAILURES`], then a
/// wait of [`FIRST_BACKOFF`] seconds doubling with each failure, capped at
/// [`MAX_BACKOFF`].
pub fn after_failure(t: Option<Throttle>, now: i64) -> Throttle {
    let failures = t.map_or(0, |t| t.failures).saturating_add(1);
    let not_before = if failures > FREE_FAILURES {
        let exp = (failures - FREE_FAILURES - 1).min(20);
        now + FIRST_BACKOFF.saturating_mul(1i64 << exp).min(MAX_BACKOFF)
    } else {
        now
    };
    Throttle {
        failures,
        not_before,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_after_the_free_failures_and_is_capped() {
        let mut t = None;
        let mut waits = Vec::new();
        for _ in 0..20 {
            let next = after_failure(t, 1000);
            waits.push(next.not_before - 1000);
            t = Some(next);
        }
        assert_eq!(&waits[..9], &[0, 0, 0, 0, 0, 5, 10, 20, 40]);
        assert_eq!(*waits.last().unwrap(), MAX_BACKOFF);
    }

    #[test]
    fn ip_limiter_allows_the_burst_then_refuses() {
        let l = IpLimiter::new(1, 3);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert!(l.check(ip, "/login").is_ok());
        }
        let wait = l.check(ip, "/login").unwrap_err();
        assert!((1..=60).contains(&wait));
        // Another endpoint and another IP have their own budgets.
        assert!(l.check(ip, "/prelogin").is_ok());
        assert!(l.check("192.0.2.2".parse().unwrap(), "/login").is_ok());
    }
}
