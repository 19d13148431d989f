//! The client's IP: the socket peer, or, when the peer is a trusted proxy,
//! the right-most X-Forwarded-For address that is not itself a trusted proxy.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

use crate::error::ApiError;
use crate::state::AppState;

/// The extracted client IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// Picks the client address from the peer and the X-Forwarded-For chain.
pub fn resolve(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let Some(chain) = forwarded_for else {
        return peer;
    };
    chain
        .rsplit(',')
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .find(|ip| !trusted.contains(ip))
        .unwrap_or(peer)
}

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .ok_or_else(|| ApiError::Internal("no connection info".into()))?;
        let xff = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok());
        Ok(ClientIp(resolve(peer, xff, &state.trusted_proxies)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_claims() {
        assert_eq!(
            resolve(ip("203.0.113.9"), Some("1.2.3.4"), &[]),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn trusted_proxy_passes_on_the_last_untrusted_hop() {
        let proxies = [ip("10.0.0.1"), ip("10.0.0.2")];
        assert_eq!(
            resolve(
                ip("10.0.0.1"),
                Some("6.6.6.6, 198.51.100.7, 10.0.0.2"),
                &proxies
            ),
            ip("198.51.100.7")
        );
        assert_eq!(resolve(ip("10.0.0.1"), None, &proxies), ip("10.0.0.1"));
        assert_eq!(
            resolve(ip("10.0.0.1"), Some("garbage"), &proxies),
            ip("10.0.0.1")
        );
    }
}
