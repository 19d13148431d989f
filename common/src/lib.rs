//! SecureVault's shared core: identifiers, the binary codec and all of the
//! cryptography. Both the client and the server depend on this crate, but only
//! the client ever holds a key; the server handles the opaque byte strings the
//! functions here produce.
//!
//! The byte formats are specified in `docs/FORMAT.md`; the test vectors under
//! `tests/vectors/` pin them.

pub mod api;
pub mod codec;
pub mod crypto;
pub mod ids;

pub use ids::{NodeId, ObjectId};
