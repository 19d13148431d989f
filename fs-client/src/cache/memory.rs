//! The in-memory cache of decrypted 64 KiB segments, bounded in bytes.
//!
//! Keys are `(object, segment index within the object)`; values are the
//! plaintext of one segment as [`Bytes`]. An object downloaded and opened
//! whole is kept as one entry instead, its whole plaintext under the index
//! [`WHOLE`]: a segment of it is a slice of that entry, and so is any range
//! a read asks for, which then reaches FUSE without being copied together
//! from segments. Objects are immutable and their
//! ids never reused, so an entry can never become stale: invalidation only
//! frees memory early (when a file is deleted or rewritten).
//!
//! It is a [`moka::sync::Cache`] with the LRU eviction policy (reads through
//! FUSE reuse a segment soon after decrypting it, when the kernel asks for
//! neighbouring pages; an LFU admission filter would refuse exactly those
//! new entries) and a weigher of the value's length, so the bound is on
//! plaintext bytes; keys and moka's bookkeeping come on top. Like all moka
//! bounds it is enforced by deferred maintenance, so the size may briefly
//! exceed the capacity; [`SegmentCache::run_pending_tasks`] settles it.
//!
//! # Plaintext
//!
//! This is the only place where the client keeps decrypted file contents
//! (never on disk). `Bytes` cannot be zeroized when moka evicts or drops
//! it: the buffer goes back to the allocator as it is. That is accepted: the
//! kernel's page cache holds the same plaintext for the mounted files
//! anyway, and only the same user (or root) can read this process's
//! memory. The manual [`fmt::Debug`] implementation prints sizes only,
//! never contents.
//!
//! # Caller's duty
//!
//! A `Bytes` that is a slice of a larger buffer keeps the whole buffer
//! alive, and only its own length is weighed. Insert segments that own their
//! allocation (one `Vec` per segment, e.g. `Bytes::from(vec)`), and whole
//! objects as one entry ([`SegmentCache::insert_whole`]), or the bound
//! undercounts memory. Slices handed out by `get` and `range` are held only
//! while a request is answered.
//!
//! [`SegmentCache::invalidate_object`] uses moka's invalidation closures:
//! `get` never returns an invalidated entry, and memory is reclaimed by the
//! next maintenance run. Entries inserted for the same object at the same
//! instant as the invalidation may be invalidated too, which is harmless as
//! objects are not read after they are deleted.

use std::fmt;

use bytes::Bytes;
use common::ObjectId;
use common::crypto::content::SEGMENT_SIZE;
use moka::policy::EvictionPolicy;
use moka::sync::Cache;

/// The segment index under which a whole object's plaintext is kept.
const WHOLE: u64 = u64::MAX;

/// A bounded cache of decrypted segments, keyed by object and segment
/// index. Cloning shares the same cache.
#[derive(Clone)]
pub struct SegmentCache {
    inner: Cache<(ObjectId, u64), Bytes>,
    capacity: u64,
}

impl fmt::Debug for SegmentCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SegmentCache")
            .field("capacity", &self.capacity)
            .field("weighted_size", &self.inner.weighted_size())
            .field("entries", &self.inner.entry_count())
            .finish()
    }
}

impl SegmentCache {
    /// A cache holding at most about `capacity_bytes` of plaintext.
    pub fn new(capacity_bytes: u64) -> Self {
        let inner = Cache::builder()
            .max_capacity(capacity_bytes)
            .weigher(|_key: &(ObjectId, u64), value: &Bytes| {
                u32::try_from(value.len()).unwrap_or(u32::MAX)
            })
            .eviction_policy(EvictionPolicy::lru())
            .support_invalidation_closures()
            .build();
        Self {
            inner,
            capacity: capacity_bytes,
        }
    }

    /// Segment `segment` of object `id`, if cached (on its own or as part
    /// of the whole object); marks it recently used.
    pub fn get(&self, id: ObjectId, segment: u64) -> Option<Bytes> {
        if let Some(whole) = self.inner.get(&(id, WHOLE)) {
            let seg = SEGMENT_SIZE as u64;
            let start = usize::try_from(segment.checked_mul(seg)?).ok()?;
            let end = start.saturating_add(SEGMENT_SIZE).min(whole.len());
            // Past the end: only the empty segment of an empty object.
            return (start < end || (start == 0 && whole.is_empty()))
                .then(|| whole.slice(start..end));
        }
        self.inner.get(&(id, segment))
    }

    /// Plaintext bytes `start..end` of object `id`, if the whole object is
    /// cached (see [`SegmentCache::insert_whole`]): a slice, not a copy.
    pub fn range(&self, id: ObjectId, start: u64, end: u64) -> Option<Bytes> {
        let whole = self.inner.get(&(id, WHOLE))?;
        let (start, end) = (usize::try_from(start).ok()?, usize::try_from(end).ok()?);
        (start <= end && end <= whole.len()).then(|| whole.slice(start..end))
    }

    /// Caches the whole plaintext of object `id` as one entry (weighed at
    /// its full length): `get` answers every segment of it from there.
    pub fn insert_whole(&self, id: ObjectId, plaintext: Bytes) {
        self.inner.insert((id, WHOLE), plaintext);
    }

    /// Caches the plaintext of segment `segment` of object `id`.
    pub fn insert(&self, id: ObjectId, segment: u64, plaintext: Bytes) {
        self.inner.insert((id, segment), plaintext);
    }

    /// Drops one segment.
    pub fn invalidate(&self, id: ObjectId, segment: u64) {
        self.inner.invalidate(&(id, segment));
    }

    /// Drops every segment of object `id`: `get` stops returning them at
    /// once; their memory is freed by the next maintenance run.
    pub fn invalidate_object(&self, id: ObjectId) {
        if self
            .inner
            .invalidate_entries_if(move |key, _| key.0 == id)
            .is_err()
        {
            // Only when invalidation closures are disabled, which `new`
            // never does; dropping everything is still correct.
            self.inner.invalidate_all();
        }
    }

    /// Drops every segment.
    pub fn invalidate_all(&self) {
        self.inner.invalidate_all();
    }

    /// The plaintext bytes cached, as of the last maintenance run.
    pub fn weighted_size(&self) -> u64 {
        self.inner.weighted_size()
    }

    /// The number of segments cached, as of the last maintenance run.
    pub fn entry_count(&self) -> u64 {
        self.inner.entry_count()
    }

    /// The bound given to [`SegmentCache::new`].
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Runs moka's pending maintenance (evictions, invalidations) now, so
    /// that the sizes above are exact.
    pub fn run_pending_tasks(&self) {
        self.inner.run_pending_tasks();
    }
}
