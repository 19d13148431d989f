//! The client's two caches of file contents.
//!
//! - [`DiskCache`] ([`disk`]): ciphertext objects exactly as the server
//!   stores them, in a private directory, bounded by `--cache-size` with
//!   least-recently-used eviction, and kept across mounts. Nothing decrypted
//!   is ever written to disk; what is read back is authenticated by the
//!   caller (AEAD and digests), so a damaged file costs a refetch.
//! - [`SegmentCache`] ([`memory`]): decrypted 64 KiB segments, in memory
//!   only, bounded in bytes, so repeated reads of a segment decrypt it once.
//! - [`buffers`]: not a cache of contents but of memory: reused chunk-sized
//!   buffers, so that 4 MiB chunks do not cost fresh pages each.
//!
//! A read looks in the segment cache first, then decrypts from the disk
//! cache, then fetches the object from the server (and inserts it into the
//! disk cache). Both caches are keyed by [`common::ObjectId`]: objects are
//! immutable and their ids never reused, so neither cache can hold stale
//! data; dropping entries early only frees space.

pub mod buffers;
pub mod disk;
pub mod memory;
mod pack;

#[cfg(test)]
mod tests;

pub use disk::DiskCache;
pub use memory::SegmentCache;
