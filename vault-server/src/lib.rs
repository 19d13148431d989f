//! The SecureVault server as a library: `main.rs` only parses the command
//! line and calls in here, and the end-to-end tests start the same server on
//! `127.0.0.1:0`.
//!
//! The server holds no keys: it stores the client's ciphertext and the
//! hashes of login secrets, and enforces ownership, single use and rate
//! limits.

pub mod store;
