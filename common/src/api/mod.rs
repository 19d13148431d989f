//! The JSON wire types of the server's `/v1` API, shared by `vault-server`
//! and the `vault` client so the two cannot drift.
//!
//! Binary values (keys, wrapped keys, tokens' raw bytes) travel as unpadded
//! base64url strings ([`Base64`]). Every error answer has one shape,
//! [`ErrorBody`], with a stable machine-readable `code`. Tokens, tickets and
//! codes are [`SecretText`]: plain strings on the wire, redacted in Debug.

mod auth;
mod base64;
mod error;
#[cfg(feature = "openapi")]
mod openapi;
mod secret;
pub mod tree;

pub use auth::*;
pub use base64::Base64;
pub use error::{ErrorBody, ErrorCode, ErrorDetail};
pub use secret::SecretText;
