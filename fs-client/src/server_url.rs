//! The server's base URL, checked once where it enters the program.
//!
//! Only `https://` is accepted, except plain `http://` to a loopback host
//! (127.0.0.0/8, `::1`, `localhost`), where nothing crosses a network. A URL
//! with credentials, a query or a fragment is refused: the base is a place,
//! not a request. The trailing slash is dropped so `https://h/` and
//! `https://h` name the same server.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use reqwest::Url;

/// Why a server URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not a URL at all.
    #[error("`{0}` is not a valid server URL")]
    Invalid(String),
    /// A scheme other than http(s).
    #[error("`{0}`: the server URL must start with https://")]
    Scheme(String),
    /// Plain http to a host that is not loopback.
    #[error(
        "`{0}`: plain http:// is only allowed for a server on this machine (127.0.0.1, ::1, localhost); use https://"
    )]
    InsecureHttp(String),
    /// User name, password, query or fragment present.
    #[error("`{0}`: the server URL must not contain a user name, password, query or fragment")]
    Extras(String),
}

/// A validated server base URL.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerUrl(Url);

impl ServerUrl {
    /// Parses and checks a base URL.
    pub fn parse(text: &str) -> Result<Self, UrlError> {
        let shown = text.trim().to_owned();
        let url = Url::parse(&shown).map_err(|_| UrlError::Invalid(shown.clone()))?;
        let host = url
            .host_str()
            .ok_or_else(|| UrlError::Invalid(shown.clone()))?;
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(host) => {}
            "http" => return Err(UrlError::InsecureHttp(shown)),
            _ => return Err(UrlError::Scheme(shown)),
        }
        if !url.username().is_empty()
            || url.password().is_some()
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return Err(UrlError::Extras(shown));
        }
        let mut url = url;
        let trimmed = url.path().trim_end_matches('/').to_owned();
        url.set_path(&trimmed);
        Ok(Self(url))
    }

    /// The URL of an API path such as `/v1/auth/login`, with optional
    /// further segments that are percent-encoded (ids from the server).
    pub fn endpoint(&self, path: &str, extra: &[&str]) -> Url {
        let mut url = self.0.clone();
        let base = self.0.path().trim_end_matches('/');
        url.set_path(&format!("{base}/{}", path.trim_start_matches('/')));
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.extend(extra);
        }
        url
    }

    /// The URL as text, for display and for the session file.
    pub fn as_str(&self) -> &str {
        self.0.as_str().trim_end_matches('/')
    }
}

impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServerUrl({})", self.as_str())
    }
}

/// Loopback as the URL parser normalised it: IPv6 hosts come bracketed,
/// IPv4 hosts in dotted decimal (so `http://2130706433` is 127.0.0.1 too).
fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ip.is_loopback(),
        Ok(IpAddr::V6(ip)) => ip == Ipv6Addr::LOCALHOST,
        Err(_) => host.trim_end_matches('.').eq_ignore_ascii_case("localhost"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_is_accepted_anywhere() {
        let u = ServerUrl::parse("https://vault.example.org/").unwrap();
        assert_eq!(u.as_str(), "https://vault.example.org");
        assert_eq!(
            u.endpoint("/v1/auth/login", &[]).as_str(),
            "https://vault.example.org/v1/auth/login"
        );
    }

    #[test]
    fn http_only_for_loopback() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://127.1.2.3",
            "http://[::1]:9000/",
            "http://localhost:8080",
            "http://LOCALHOST",
        ] {
            assert!(ServerUrl::parse(ok).is_ok(), "{ok} refused");
        }
        for bad in [
            "http://vault.example.org",
            "http://10.0.0.1",
            "http://128.0.0.1",
            "http://[::2]",
            "http://[::ffff:127.0.0.1]",
            "http://localhost.example.org",
            "http://0.0.0.0:8080",
        ] {
            assert!(
                matches!(ServerUrl::parse(bad), Err(UrlError::InsecureHttp(_))),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn other_schemes_and_extras_are_refused() {
        assert!(matches!(
            ServerUrl::parse("ftp://h"),
            Err(UrlError::Scheme(_))
        ));
        assert!(matches!(
            ServerUrl::parse("vault.example.org"),
            Err(UrlError::Invalid(_))
        ));
        for bad in [
            "https://user:pw@h",
            "https://user@h",
            "https://h/?x=1",
            "https://h/#frag",
        ] {
            assert!(
                matches!(ServerUrl::parse(bad), Err(UrlError::Extras(_))),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn endpoints_keep_a_path_prefix_and_encode_ids() {
        let u = ServerUrl::parse("https://h/vault/").unwrap();
        assert_eq!(u.as_str(), "https://h/vault");
        assert_eq!(
            u.endpoint("/v1/sessions", &["a b/c"]).as_str(),
            "https://h/vault/v1/sessions/a%20b%2Fc"
        );
    }
}
