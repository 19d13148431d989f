//! Mounting a vault: `vault mount`, `vault unmount`, the mount daemon, and
//! the thin fuser adapter over [`crate::vfs::Vfs`].
//!
//! - [`command`]: the commands; every check and the password prompt happen
//!   in the terminal before anything is detached.
//! - [`handoff`]: the parent hands the vault key and options to the
//!   detached daemon over a socket pair on its stdin (never argv, the
//!   environment or disk) and waits for `ready`.
//! - [`daemon`]: opens the vault, mounts, serves, and on `vault unmount`,
//!   SIGTERM/SIGINT or an outside `umount` uploads pending changes before
//!   exiting.
//! - [`fuse`] and [`convert`]: the adapter, a pure translation layer; every
//!   request runs as a tokio task so the FUSE threads never wait on the
//!   network.
//! - [`control`] and [`server`]: the per-mount control socket (status and
//!   unmount with progress).
//! - [`keyring`] and [`unlock`]: the vault key from the kernel keyring
//!   (left by `vault login`) or from the password.
//! - [`mountinfo`], [`paths`], [`size`], [`progress`]: the mount table,
//!   local directories and the journal lock, `--cache-size` values, and the
//!   unmount progress bar.
//! - [`malloc`]: glibc allocator settings that keep the daemon's memory
//!   near what its caches hold.
//!
//! Invariants: one daemon per account and data directory (the journal
//! lock); the vault key and subkeys live only in memory and zeroize on
//! drop; nothing here logs a file name, a password or a key.

pub mod command;
pub mod control;
pub mod convert;
pub mod daemon;
pub mod fuse;
pub mod handoff;
pub mod keyring;
pub mod malloc;
pub mod mountinfo;
pub mod paths;
pub mod progress;
pub mod server;
pub mod size;
pub mod unlock;

pub use handoff::RemoteCause;
