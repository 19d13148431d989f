//! Reading and writing file contents as ciphertext objects.
//!
//! Reads: a segment of an object comes from the memory cache of decrypted
//! segments, else from the on-disk ciphertext cache, else from the server.
//! A whole object (at most one chunk, 4 MiB) is downloaded at once when the
//! disk cache can hold it: its commitment is checked against the file's
//! object list before it is cached or decrypted, and every segment is
//! authenticated as it is decrypted, so a server that tampers produces an
//! error, never bytes. It is decrypted in place, in the buffer it was
//! downloaded into, and kept whole in the memory cache: a read within it
//! is answered with a slice of that buffer ([`Content::range`]), so a
//! streamed byte is copied once in the daemon (off the socket) on its way
//! from the server to FUSE. Concurrent readers of one object share one download.
//! Sequential readers get the next objects fetched in the background; those
//! go to the memory cache only when it holds the read-ahead window twice
//! over (a stream read once would otherwise flush the disk cache and cost a
//! copy of every byte), and are opened as they stream in
//! ([`ObjectOpener`]): each segment decrypted out of place from the piece
//! read off the connection, so no ciphertext buffer is filled and read
//! again (a profile of a cold 1 GiB read had that copy at 8% of the
//! daemon's and server's CPU). Checking and decrypting a whole object that
//! goes to the disk cache runs on the blocking pool, off the async workers
//! that answer FUSE requests.
//!
//! Writes: a chunk of plaintext becomes one new object with a fresh random
//! id, bound to its file and offset, uploaded with bounded parallelism; a
//! partial chunk (small files, tails) is also kept in the disk cache, so
//! reading back what was just written is local.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use common::crypto::Plaintext;
use common::crypto::attrs::ObjectEntry;
use common::crypto::content::{
    HEADER_LEN, ObjectBinding, ObjectCheck, ObjectDecryptor, ObjectOpener, ObjectSeed,
    SEGMENT_SIZE, ciphertext_len, ciphertext_range, encrypt_object_into, segment_count,
};
use common::crypto::subkeys::ContentKey;
use common::{NodeId, ObjectId};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::background::Background;
use super::error::{FsError, FsResult};
use super::file::CHUNK;
use super::remote::{Budget, Remote};
use crate::api::tree::crc32c;
use crate::api::{ByteRange, ObjectSink, VaultApi};
use crate::cache::buffers::POOL;
use crate::cache::{DiskCache, SegmentCache};

const SEG: u64 = SEGMENT_SIZE as u64;
/// Objects fetched ahead of sequential readers at once.
const PREFETCHES: usize = 6;
/// Chunks of files still being written that upload at once. Each upload
/// waits for the server's durable reservation (a database commit) before
/// its body goes anywhere: with a MariaDB that syncs every commit, 4 at
/// once took a 1 GiB write from 4.3 s to 5.9-6.9 s; 8 brought it to
/// 4.1-5.4 s, for 32 MiB more held while a big file is written (a 10 GiB
/// write peaked at 92 MiB instead of 59).
pub(crate) const EARLY_UPLOADS: usize = 8;

/// Object reads and writes with their caches.
pub(crate) struct Content<A> {
    remote: Arc<Remote<A>>,
    key: Arc<ContentKey>,
    disk: Option<Arc<DiskCache>>,
    mem: SegmentCache,
    inflight: std::sync::Mutex<HashMap<ObjectId, Arc<tokio::sync::Mutex<()>>>>,
    uploads: Arc<Semaphore>,
    early_uploads: Arc<Semaphore>,
    prefetches: Arc<Semaphore>,
    /// Held while the objects of one commit are written to the disk cache
    /// ([`Content::stored`]), so those writes run one batch at a time.
    write_through: Arc<std::sync::Mutex<()>>,
    background: Arc<Background>,
}

impl<A> std::fmt::Debug for Content<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Content").finish_non_exhaustive()
    }
}

impl<A: VaultApi + 'static> Content<A> {
    pub(crate) fn new(
        remote: Arc<Remote<A>>,
        key: ContentKey,
        disk: Option<DiskCache>,
        mem: SegmentCache,
        parallel_uploads: usize,
        background: Arc<Background>,
    ) -> Self {
        Self {
            remote,
            key: Arc::new(key),
            disk: disk.map(Arc::new),
            mem,
            inflight: std::sync::Mutex::new(HashMap::new()),
            uploads: Arc::new(Semaphore::new(parallel_uploads.max(1))),
            early_uploads: Arc::new(Semaphore::new(EARLY_UPLOADS)),
            prefetches: Arc::new(Semaphore::new(PREFETCHES)),
            write_through: Arc::default(),
            background,
        }
    }

    /// Bytes of ciphertext in the disk cache.
    pub(crate) fn disk_used(&self) -> u64 {
        self.disk.as_deref().map_or(0, DiskCache::used_bytes)
    }

    /// Whether work that outlived its caller (a download's checks, cache
    /// write and decryption run on the blocking pool, which cannot be
    /// aborted) still holds the disk cache, and with it its lock.
    pub(crate) fn disk_in_use(&self) -> bool {
        self.disk.as_ref().is_some_and(|d| Arc::strong_count(d) > 1)
    }

    fn object_lock(&self, id: ObjectId) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 256 {
            map.retain(|_, l| Arc::strong_count(l) > 1);
        }
        map.entry(id).or_default().clone()
    }

    /// Plaintext `start..end` (object-local, within the object) of `obj`.
    pub(crate) async fn read(
        &self,
        file: NodeId,
        obj: &ObjectEntry,
        start: u64,
        end: u64,
    ) -> FsResult<Vec<u8>> {
        let end = end.min(obj.len);
        let mut out = Vec::with_capacity(usize::try_from(end.saturating_sub(start)).unwrap_or(0));
        if start >= end {
            return Ok(out);
        }
        for index in start / SEG..end.div_ceil(SEG) {
            let seg = self.segment(file, obj, index).await?;
            let seg_start = index * SEG;
            let from =
                usize::try_from(start.saturating_sub(seg_start)).map_err(|_| FsError::TooBig)?;
            let to = usize::try_from((end - seg_start).min(SEG)).map_err(|_| FsError::TooBig)?;
            out.extend_from_slice(
                seg.get(from..to.min(seg.len()))
                    .ok_or(FsError::Internal("segment bounds".into()))?,
            );
        }
        Ok(out)
    }

    /// Decrypted segment `index` of `obj`.
    pub(crate) async fn segment(
        &self,
        file: NodeId,
        obj: &ObjectEntry,
        index: u64,
    ) -> FsResult<Bytes> {
        if let Some(b) = self.mem.get(obj.id, index) {
            return Ok(b);
        }
        let lock = self.object_lock(obj.id);
        let _guard = lock.lock().await;
        if let Some(b) = self.mem.get(obj.id, index) {
            return Ok(b);
        }
        if let Some(b) = self.cached_segment(file, obj, index)? {
            return Ok(b);
        }
        let ct_len = ciphertext_len(obj.len)?;
        match &self.disk {
            Some(disk) if ct_len <= disk.capacity() => {
                self.download_whole(file, obj, Some(disk.clone())).await?;
                match self.mem.get(obj.id, index) {
                    Some(b) => Ok(b),
                    None => self
                        .cached_segment(file, obj, index)?
                        .ok_or_else(|| FsError::Internal("object vanished from the cache".into())),
                }
            }
            _ => self.download_segment(file, obj, index).await,
        }
    }

    /// Segment `index` from the disk cache, if the object is there.
    fn cached_segment(
        &self,
        file: NodeId,
        obj: &ObjectEntry,
        index: u64,
    ) -> FsResult<Option<Bytes>> {
        let Some(disk) = &self.disk else {
            return Ok(None);
        };
        let Some(header) = disk.read_at(obj.id, 0, HEADER_LEN).ok().flatten() else {
            return Ok(None);
        };
        let range = ciphertext_range(obj.len, index..index + 1)?;
        let len = usize::try_from(range.end - range.start).map_err(|_| FsError::TooBig)?;
        let Some(ct) = disk.read_at(obj.id, range.start, len).ok().flatten() else {
            return Ok(None);
        };
        let dec = ObjectDecryptor::for_entry(&self.key, file, obj, &header)?;
        let mut plain = Vec::with_capacity(len);
        match dec.open_segment(index, &ct, &mut plain) {
            Ok(()) => {
                let b = Bytes::from(plain);
                self.mem.insert(obj.id, index, b.clone());
                Ok(Some(b))
            }
            Err(e) => {
                // A damaged cache file: drop it and go to the server.
                tracing::warn!(object = %obj.id, error = %e, "cached object failed authentication; refetching");
                let _ = disk.remove(obj.id);
                Ok(None)
            }
        }
    }

    /// Downloads and verifies a whole object, caches it in `disk` if given,
    /// and decrypts it into the memory cache.
    ///
    /// The checks, the disk cache write and the decryption of up to 4 MiB
    /// run on the blocking pool: milliseconds of CPU on an async worker
    /// would hold up the FUSE requests queued behind it (with one worker
    /// per core, a reader waits for every read-ahead in flight).
    async fn download_whole(
        &self,
        file: NodeId,
        obj: &ObjectEntry,
        disk: Option<Arc<DiskCache>>,
    ) -> FsResult<()> {
        let id = obj.id;
        let ct = self
            .remote
            .call_for(Budget::Interactive, &[], |api, t| async move {
                api.download_object(&t, id, None).await
            })
            .await?;
        let (key, mem, obj) = (self.key.clone(), self.mem.clone(), obj.clone());
        tokio::task::spawn_blocking(move || open_whole(&key, file, &obj, ct, disk.as_deref(), &mem))
            .await
            .map_err(|e| FsError::Internal(format!("decryption task failed: {e}")))?
    }

    /// Downloads a whole object into the memory cache only, opening each
    /// segment as it arrives ([`ObjectOpener`]): out of place, from the
    /// piece read off the connection into a pooled plaintext buffer, with
    /// no ciphertext buffer between them. The plaintext reaches the cache
    /// only once all of it checked out.
    async fn download_streamed(&self, file: NodeId, obj: &ObjectEntry) -> FsResult<()> {
        let id = obj.id;
        let len = usize::try_from(obj.len).map_err(|_| FsError::TooBig)?;
        let opener = self
            .remote
            .call_for(Budget::Interactive, &[], |api, t| {
                let plain = POOL.plaintext_zeroed(len);
                let mut opener = Opening(ObjectOpener::new(self.key.clone(), file, obj, plain));
                async move {
                    api.download_object_into(&t, id, &mut opener).await?;
                    Ok(opener.0)
                }
            })
            .await?;
        let plain = opener.finish()?;
        self.mem.insert_whole(obj.id, POOL.plaintext_bytes(plain));
        Ok(())
    }

    /// Fetches just the header and one segment (no disk cache).
    async fn download_segment(
        &self,
        file: NodeId,
        obj: &ObjectEntry,
        index: u64,
    ) -> FsResult<Bytes> {
        let id = obj.id;
        let header = self
            .remote
            .call_for(Budget::Interactive, &[], |api, t| async move {
                api.download_object(&t, id, ByteRange::from_range(0..HEADER_LEN as u64))
                    .await
            })
            .await?;
        let range = ciphertext_range(obj.len, index..index + 1)?;
        let ct = self
            .remote
            .call_for(Budget::Interactive, &[], |api, t| {
                let r = range.clone();
                async move { api.download_object(&t, id, ByteRange::from_range(r)).await }
            })
            .await?;
        let dec = ObjectDecryptor::for_entry(&self.key, file, obj, &header)?;
        let mut plain = Vec::with_capacity(ct.len());
        dec.open_segment(index, &ct, &mut plain)?;
        let b = Bytes::from(plain);
        self.mem.insert(obj.id, index, b.clone());
        Ok(b)
    }

    /// Plaintext `start..end` (object-local, within the object) of `obj` as
    /// one slice of the object's cached plaintext, without a copy, when the
    /// object is (or, fetched now, comes to be) in the memory cache whole;
    /// `None` when it is not (it came from the disk cache, or is too big
    /// for it): the caller reads it segment by segment.
    pub(crate) async fn range(
        &self,
        file: NodeId,
        obj: &ObjectEntry,
        start: u64,
        end: u64,
    ) -> FsResult<Option<Bytes>> {
        if let Some(b) = self.mem.range(obj.id, start, end) {
            return Ok(Some(b));
        }
        self.segment(file, obj, start / SEG).await?;
        Ok(self.mem.range(obj.id, start, end))
    }

    /// Whether read-ahead keeps `obj` in the memory cache only. A whole
    /// chunk read ahead for a sequential reader is read once, soon, and in
    /// order: writing it to the disk cache would cost one more copy of every
    /// byte streamed and push the small files and random reads the disk
    /// cache is for out of it (the write side does the same, see
    /// [`Content::stored`]). That needs a memory cache that holds the
    /// read-ahead window twice over, or segments would be evicted before
    /// they are read and fetched again.
    fn streams_in_memory(&self, obj: &ObjectEntry) -> bool {
        obj.len >= CHUNK && self.mem.capacity() >= 2 * PREFETCHES as u64 * CHUNK
    }

    /// Whether every segment of `obj` is in the memory cache (the first and
    /// the last stand for them: they are inserted together).
    fn in_memory(&self, obj: &ObjectEntry) -> bool {
        let last = segment_count(obj.len).saturating_sub(1);
        self.mem.get(obj.id, 0).is_some() && self.mem.get(obj.id, last).is_some()
    }

    /// Fetches `obj` in the background if it is not cached (read-ahead).
    pub(crate) fn prefetch(self: &Arc<Self>, file: NodeId, obj: ObjectEntry) {
        let Some(disk) = &self.disk else { return };
        if disk.contains(obj.id) || self.in_memory(&obj) {
            return;
        }
        let Ok(permit) = self.prefetches.clone().try_acquire_owned() else {
            return;
        };
        let this = self.clone();
        self.background.spawn(async move {
            let _permit = permit;
            let lock = this.object_lock(obj.id);
            let _guard = lock.lock().await;
            let Some(disk) = &this.disk else { return };
            if disk.contains(obj.id) || this.in_memory(&obj) {
                return;
            }
            let fetched = if this.streams_in_memory(&obj) {
                this.download_streamed(file, &obj).await
            } else {
                this.download_whole(file, &obj, Some(disk.clone())).await
            };
            if let Err(e) = fetched {
                tracing::debug!(error = %e, "read-ahead failed");
            }
        });
    }

    /// An upload slot for a commit: taken (under the file's lock) before a
    /// chunk is read into memory, so the plaintext and ciphertext held at
    /// once stay bounded.
    pub(crate) async fn upload_permit(&self) -> FsResult<OwnedSemaphorePermit> {
        self.uploads
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| FsError::Internal("uploader closed".into()))
    }

    /// An upload slot for an early upload of a chunk still being written,
    /// taken *before* the file's lock. Separate from the commit slots: a
    /// commit holds the lock while it waits for a slot, so sharing them
    /// would let early uploads holding every slot wait on that lock forever.
    pub(crate) async fn early_upload_permit(&self) -> FsResult<OwnedSemaphorePermit> {
        self.early_uploads
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| FsError::Internal("uploader closed".into()))
    }

    /// Encrypts `plain` as a new object at `offset` of `file`: its entry
    /// for the file's object list, and the ciphertext to upload.
    pub(crate) fn seal_object(
        &self,
        file: NodeId,
        offset: u64,
        plain: &[u8],
    ) -> FsResult<(ObjectEntry, Bytes)> {
        let id = ObjectId::random()?;
        let binding = ObjectBinding {
            file,
            object: id,
            offset,
        };
        let len =
            usize::try_from(ciphertext_len(plain.len() as u64)?).map_err(|_| FsError::TooBig)?;
        let mut out = POOL.take(len);
        encrypt_object_into(&self.key, &binding, plain, &mut out)?;
        let ct = POOL.into_bytes(out);
        Ok((
            ObjectEntry {
                id,
                offset,
                len: plain.len() as u64,
                check: ObjectCheck::Seed(ObjectSeed::of_header(&ct)?),
            },
            ct,
        ))
    }

    /// Objects this mount just stored on the server, each with its
    /// plaintext length: a partial chunk (a small file, a file's tail) is
    /// kept in the disk cache, so reading it back is local. A full chunk is
    /// not: a big file written in one go would push everything else out of
    /// the cache, and keeping it costs one more copy of every byte written
    /// (JuiceFS does the same by default); reading it back downloads it.
    ///
    /// The objects of one commit are written together, as one pack file
    /// ([`DiskCache::insert_many`]), in the background, off the commit path:
    /// written one file per object, a profile of `cp` of 10k small files
    /// had creating those files (ext4's inode allocation) at most of the
    /// daemon's CPU. Until they are written, a read downloads them. The
    /// batches of concurrent commits are written one after another: two
    /// threads creating files in the one cache directory at once spend
    /// their time spinning on its lock in the kernel (`rwsem_spin_on_owner`
    /// was a tenth of the daemon's CPU in that profile).
    pub(crate) fn stored(&self, objects: Vec<(ObjectId, u64, Bytes)>) {
        let Some(disk) = self.disk.clone() else {
            return;
        };
        let objects: Vec<_> = objects
            .into_iter()
            .filter(|(_, len, _)| *len < CHUNK)
            .collect();
        if objects.is_empty() {
            return;
        }
        // On the blocking pool, through `background`: stopping the mount
        // waits for it, so the cache's lock is free once the mount is.
        let one_at_a_time = self.write_through.clone();
        self.background.spawn_blocking(move || {
            let _turn = one_at_a_time
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let objects: Vec<(ObjectId, &[u8])> =
                objects.iter().map(|(id, _, ct)| (*id, &ct[..])).collect();
            if let Err(e) = disk.insert_many(&objects) {
                tracing::warn!(error = %e, "cannot write to the disk cache");
            }
        });
    }

    /// Encrypts `plain` as a new object at `offset` of `file` and uploads
    /// it, holding `permit` until done. `plain` is shared with the file
    /// when it is a chunk kept in memory; this drops its reference once
    /// encrypted, so only the ciphertext is held while the upload is in
    /// flight.
    pub(crate) async fn upload_with(
        &self,
        budget: Budget,
        permit: OwnedSemaphorePermit,
        file: NodeId,
        offset: u64,
        plain: Arc<Plaintext>,
    ) -> FsResult<ObjectEntry> {
        let _permit = permit;
        let (entry, ct) = self.seal_object(file, offset, &plain)?;
        POOL.recycle_shared(plain);
        let (id, crc) = (entry.id, crc32c(&ct));
        let body = ct.clone();
        let sent = self
            .remote
            .call_for(budget, &[], |api, t| {
                let body = body.clone();
                async move { api.upload_object(&t, id, body, crc).await }
            })
            .await;
        match sent {
            Ok(()) => {}
            // The id is fresh and random: `exists` means an earlier try of
            // this very upload landed and only its answer was lost.
            Err(e) if e.code() == Some(common::api::ErrorCode::Exists) => {}
            Err(e) => return Err(e.into()),
        }
        self.stored(vec![(id, entry.len, ct)]);
        Ok(entry)
    }
}

/// An [`ObjectOpener`] fed by a download.
struct Opening(ObjectOpener<Arc<ContentKey>>);

impl ObjectSink for Opening {
    fn take(&mut self, bytes: &[u8]) -> bool {
        self.0.feed(bytes).is_ok()
    }
}

/// Checks the downloaded whole object `ct` against its entry `obj` (the
/// commitment first, FORMAT.md 9.8), caches it in `disk` if given, and
/// decrypts it in place into `mem`, whole. Nothing reaches `mem` if any
/// segment fails; the buffer goes back to the pool wiped either way.
fn open_whole(
    key: &ContentKey,
    file: NodeId,
    obj: &ObjectEntry,
    ct: Vec<u8>,
    disk: Option<&DiskCache>,
    mem: &SegmentCache,
) -> FsResult<()> {
    let mut buf = Plaintext::new(ct);
    match open_in_place(key, file, obj, &mut buf, disk) {
        Ok(()) => {
            mem.insert_whole(obj.id, POOL.plaintext_bytes(buf));
            Ok(())
        }
        Err(e) => {
            POOL.recycle(buf);
            Err(e)
        }
    }
}

/// The steps of [`open_whole`] on `buf`, which holds the ciphertext and,
/// on success, the plaintext.
fn open_in_place(
    key: &ContentKey,
    file: NodeId,
    obj: &ObjectEntry,
    buf: &mut Vec<u8>,
    disk: Option<&DiskCache>,
) -> FsResult<()> {
    obj.check.verify_whole(buf)?;
    if let Some(disk) = disk
        && let Err(e) = disk.insert(obj.id, buf)
    {
        tracing::warn!(error = %e, "cannot write to the disk cache");
    }
    let header = buf
        .get(..HEADER_LEN)
        .ok_or(common::crypto::CryptoError::OutOfRange)?;
    let dec = ObjectDecryptor::for_entry(key, file, obj, header)?;
    dec.open_object_in_place(buf)?;
    Ok(())
}
