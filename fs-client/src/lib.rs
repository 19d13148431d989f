//! The SecureVault client library behind the `vault` command.
//!
//! - [`api`]: the server's account endpoints as a trait, over HTTP or an
//!   in-memory fake, with transparent access-token refresh.
//! - [`account`]: the register, login, password-change and TOTP flows, with
//!   the client-side cryptography from `common::crypto`.
//! - [`config`]: the configuration directory and the saved session.
//! - [`secrets`]: asking for passwords and codes (terminal or script).
//! - [`server_url`]: the server URL and the https/loopback rule.
//! - [`error`]: every failure as one sentence for a person.
//! - [`vfs`]: the filesystem logic of a mount (no FUSE in it).
//! - [`cache`]: the on-disk ciphertext cache and the in-memory segment cache.
//! - [`cli`]: the command line itself.

pub mod account;
pub mod api;
pub mod cache;
pub mod cli;
pub mod config;
pub mod error;
pub mod mount;
pub mod secrets;
pub mod server_url;
pub mod vfs;

pub use error::Error;
