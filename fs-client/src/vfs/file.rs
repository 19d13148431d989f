//! A file's contents as this mount sees them: the committed version (its
//! object list), overlaid with changes not yet committed.
//!
//! Layers, top first, for any 64 KiB segment of the file:
//! 1. the tail: the segment written last, still in memory (so a run of
//!    small appends does not re-seal it each time);
//! 2. staged segments in the journal's stage file (sealed, on disk);
//! 3. chunks already uploaded as new objects but not yet committed;
//! 4. the committed objects, for bytes below `base_limit` (truncation moves
//!    the limit down: bytes past it read as zeros until rewritten);
//! 5. zeros (holes).
//!
//! A file is cut into chunks of [`CHUNK`] bytes at fixed offsets; each chunk
//! is one object. A commit uploads a new object for every chunk that has
//! changed and keeps the objects of the others.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};

use common::NodeId;
use common::crypto::Plaintext;
use common::crypto::attrs::{NodeAttributes, ObjectEntry, Timestamp};
use common::crypto::content::SEGMENT_SIZE;
use common::crypto::random_array;
use zeroize::Zeroizing;

use super::content::Content;
use super::error::{FsError, FsResult};
use super::journal::{HeldSlot, INLINE_MAX, Inline, Journal, Manifest, Stage};
use super::types::Ino;
use crate::api::VaultApi;
use crate::cache::buffers::POOL;

/// Plaintext bytes per 64 KiB segment.
pub(crate) const SEG: u64 = SEGMENT_SIZE as u64;
/// Plaintext bytes per object (a multiple of [`SEG`]).
pub(crate) const CHUNK: u64 = 4 << 20;
const _: () = assert!(CHUNK == crate::cache::buffers::CHUNK_BYTES as u64);
/// Segments per chunk.
pub(crate) const SEGS_PER_CHUNK: u64 = CHUNK / SEG;
/// Whole chunks held in memory per file ([`FileInner::hold`]): those in an
/// early upload (it has one slot per chunk and each file may take them
/// all) and two waiting for one.
const KEPT_CHUNKS: usize = super::content::EARLY_UPLOADS + 2;
/// Largest file (the object list and offsets stay far from overflow).
pub(crate) const MAX_FILE_SIZE: u64 = 1 << 50;

fn usize_of(n: u64) -> FsResult<usize> {
    usize::try_from(n).map_err(|_| FsError::TooBig)
}

/// What `getattr` shows of an open or changed file, without waiting for
/// its lock.
#[derive(Debug, Clone)]
pub(crate) struct View {
    pub attrs: NodeAttributes,
    pub nlink: u32,
    /// Bumped whenever this mount changes the link count (link, unlink,
    /// rename over it): a commit answer sent before such a change must not
    /// write its older count back.
    pub link_gen: u64,
}

/// An open or changed file.
pub(crate) struct FileState {
    pub node: NodeId,
    pub ino: Ino,
    pub inner: tokio::sync::Mutex<FileInner>,
    pub view: std::sync::Mutex<View>,
    /// End of the last read, to spot sequential reading.
    pub last_read_end: AtomicU64,
    /// Open handles (and operations in progress) using this state.
    pub handles: AtomicU32,
    /// Made here and not yet on the server (its base version is 0): the
    /// commit creates it. Readable without the file's lock.
    pub local: AtomicBool,
}

impl std::fmt::Debug for FileState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileState")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl FileState {
    pub(crate) fn new(node: NodeId, ino: Ino, inner: FileInner, nlink: u32) -> Arc<Self> {
        let view = View {
            attrs: inner.attrs.clone(),
            nlink,
            link_gen: 0,
        };
        let local = AtomicBool::new(inner.base_version == 0);
        Arc::new(Self {
            node,
            ino,
            inner: tokio::sync::Mutex::new(inner),
            view: std::sync::Mutex::new(view),
            last_read_end: AtomicU64::new(0),
            handles: AtomicU32::new(0),
            local,
        })
    }

    /// Publishes `inner`'s attributes for `getattr`.
    pub(crate) fn publish(&self, inner: &FileInner) {
        let mut v = self.view.lock().unwrap_or_else(|p| p.into_inner());
        v.attrs = inner.attrs.clone();
    }

    pub(crate) fn view(&self) -> View {
        self.view.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The mutable state of a file, behind its lock.
pub(crate) struct FileInner {
    pub node: NodeId,
    /// The committed version this state is based on; 0 for a file made
    /// here that the server has not seen yet.
    pub base_version: u64,
    /// Its objects, ascending by offset.
    pub base: Arc<Vec<ObjectEntry>>,
    /// Current attributes; `attrs.size` is the current size and
    /// `attrs.objects` is always empty (the list is built at commit).
    pub attrs: NodeAttributes,
    /// The attributes of the base version (objects empty), to merge
    /// attribute changes made elsewhere with ours.
    pub base_attrs: NodeAttributes,
    /// Committed bytes at or past this offset are not part of the file.
    pub base_limit: u64,
    /// Staged segments and the write sequence that last touched each.
    pub staged: BTreeMap<u64, u64>,
    /// Chunks uploaded as new objects, not yet committed.
    pub uploaded: BTreeMap<u64, ObjectEntry>,
    /// Chunks queued for or in an early upload.
    pub uploading: BTreeSet<u64>,
    /// Chunks uploaded early whose stage slots are still there: they are
    /// punched in batches, after a durable manifest names their objects.
    pub unpunched: BTreeSet<u64>,
    /// A task is flushing the stage to punch `unpunched` (one at a time).
    pub punching: bool,
    /// The segments of a chunk written in order from its start, held in
    /// memory instead of the stage file (see [`FileInner::hold`]): a
    /// prefix of the chunk, in whole segments.
    pub filling: Option<(u64, Plaintext, HeldSlot)>,
    /// Whole chunks from `filling`, in memory only, until their early
    /// upload is done (shared with it) or they are spilled to the stage.
    pub kept: BTreeMap<u64, (Arc<Plaintext>, HeldSlot)>,
    pub tail: Option<(u64, Plaintext)>,
    /// Write sequence: bumped by every segment change.
    pub seq: u64,
    /// `seq` when a descriptor was last closed (`flush`): the uploader
    /// commits files whose writes have all been closed.
    pub closed_seq: u64,
    /// When a descriptor was last closed or the attributes last set: the
    /// uploader lets a file rest [`super::commit::COMMIT_SETTLE`] after
    /// that, so what a program does right after close (set times and mode,
    /// rename) never waits for a commit in flight.
    pub closed_at: Option<std::time::Instant>,
    /// Something is not committed (contents or attributes).
    pub dirty: bool,
    pub epoch: u64,
    pub stage: Option<Arc<Stage>>,
    /// Where the file was last seen, for a conflict copy.
    pub parent: NodeId,
    pub name: Zeroizing<Vec<u8>>,
    /// The node is gone from the server (unlinked): nothing to commit.
    pub gone: bool,
    /// SHA-256 of the manifest last written to the journal (memory only),
    /// so closing, `chmod` and `utimens` do not write the same one again.
    pub saved: Option<[u8; 32]>,
    /// The number of this file's own last save of its manifest, when the
    /// next save may follow it in place (see `Journal::write_manifest`).
    pub manifest_seq: Option<u64>,
}

impl std::fmt::Debug for FileInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileInner")
            .field("base_version", &self.base_version)
            .field("size", &self.attrs.size)
            .field("dirty", &self.dirty)
            .finish_non_exhaustive()
    }
}

/// What the layers need.
pub(crate) struct Io<'a, A> {
    pub content: &'a Arc<Content<A>>,
    pub journal: &'a Journal,
}

impl FileInner {
    /// State for the committed `version` of `node` with `attrs`.
    pub(crate) fn clean(
        node: NodeId,
        version: u64,
        mut attrs: NodeAttributes,
        parent: NodeId,
        name: &[u8],
    ) -> Self {
        let base = Arc::new(std::mem::take(&mut attrs.objects));
        Self {
            node,
            base_version: version,
            base,
            base_limit: attrs.size,
            base_attrs: attrs.clone(),
            attrs,
            staged: BTreeMap::new(),
            uploaded: BTreeMap::new(),
            uploading: BTreeSet::new(),
            unpunched: BTreeSet::new(),
            punching: false,
            filling: None,
            kept: BTreeMap::new(),
            tail: None,
            seq: 0,
            closed_seq: 0,
            closed_at: None,
            dirty: false,
            epoch: 0,
            stage: None,
            parent,
            name: Zeroizing::new(name.to_vec()),
            gone: false,
            saved: None,
            manifest_seq: None,
        }
    }

    /// Moves to a newer committed version (nothing pending).
    pub(crate) fn rebase_clean(&mut self, version: u64, mut attrs: NodeAttributes) {
        self.base = Arc::new(std::mem::take(&mut attrs.objects));
        self.base_version = version;
        self.base_limit = attrs.size;
        self.base_attrs = attrs.clone();
        self.attrs = attrs;
    }

    /// Moves the base to a newer `version` whose contents are the same as
    /// ours' base (only its attributes changed elsewhere): attribute by
    /// attribute, what we changed wins, the rest is taken from theirs.
    pub(crate) fn rebase_attrs(&mut self, version: u64, mut theirs: NodeAttributes) {
        theirs.objects.clear();
        let (base, ours) = (&self.base_attrs, &self.attrs);
        let mut m = theirs.clone();
        if ours.mode != base.mode {
            m.mode = ours.mode;
        }
        if ours.uid != base.uid {
            m.uid = ours.uid;
        }
        if ours.gid != base.gid {
            m.gid = ours.gid;
        }
        if ours.atime != base.atime {
            m.atime = ours.atime;
        }
        if ours.mtime != base.mtime {
            m.mtime = ours.mtime;
        }
        m.ctime = ours.ctime.max(theirs.ctime);
        m.size = ours.size;
        let keys: BTreeSet<&Vec<u8>> = base.xattrs.keys().chain(ours.xattrs.keys()).collect();
        for k in keys {
            let (b, o) = (base.xattrs.get(k), ours.xattrs.get(k));
            if b != o {
                match o {
                    Some(v) => m.xattrs.insert(k.clone(), v.clone()),
                    None => m.xattrs.remove(k),
                };
            }
        }
        self.attrs = m;
        self.base_attrs = theirs;
        self.base_version = version;
    }

    pub(crate) fn size(&self) -> u64 {
        self.attrs.size
    }

    fn touch(&mut self) {
        let now = Timestamp::now();
        self.attrs.mtime = now;
        self.attrs.ctime = now;
        self.dirty = true;
    }

    fn ensure_stage(&mut self, journal: &Journal) -> FsResult<&Stage> {
        if self.stage.is_none() {
            if self.epoch == 0 {
                self.epoch = u64::from_be_bytes(random_array()?);
            }
            self.stage = Some(Arc::new(journal.stage(self.node, self.epoch)?));
        }
        self.stage
            .as_deref()
            .ok_or(FsError::Internal("stage".into()))
    }

    /// The file's only change is its tail segment, small enough for its
    /// manifest to hold (no stage file: see `journal::Inline`).
    fn inline_tail(&self) -> Option<(u64, &Plaintext)> {
        let (seg, data) = self.tail.as_ref()?;
        let alone = self.stage.is_none()
            && self.uploaded.is_empty()
            && self.staged.len() == 1
            && self.staged.contains_key(seg);
        (alone && data.len() <= INLINE_MAX).then_some((*seg, data))
    }

    /// Writes the tail to the stage file unless the manifest holds it.
    pub(crate) fn flush_tail_unless_inline(&mut self, journal: &Journal) -> FsResult<()> {
        if self.inline_tail().is_some() {
            return Ok(());
        }
        self.flush_tail(journal)
    }

    /// Writes the in-memory tail segment to the stage file (or holds it
    /// in memory, see [`FileInner::hold`]).
    pub(crate) fn flush_tail(&mut self, journal: &Journal) -> FsResult<()> {
        let Some((seg, buf)) = self.tail.take() else {
            return Ok(());
        };
        let res = self.hold(journal, seg, &buf).and_then(|held| {
            if held {
                return Ok(());
            }
            self.ensure_stage(journal)?.write(seg, &buf)
        });
        if let Err(e) = res {
            self.tail = Some((seg, buf));
            return Err(e);
        }
        Ok(())
    }

    /// Holds segment `seg`, leaving the tail, in memory instead of the
    /// stage file when it continues the chunk being written in order from
    /// its start; answers whether it did.
    ///
    /// A sequential write then never writes its data to the local disk: a
    /// whole chunk so held goes to `kept`, its early upload encrypts it
    /// from there, and once uploaded it is simply dropped (no stage write,
    /// no read back, no flush and punch). What is held is not in the
    /// journal, which is allowed while the file is open: only a close (or
    /// fsync, or an attribute change) promises survival of a crash, and
    /// every save [`FileInner::spill`]s first. So does anything that would
    /// read or change a held chunk's slots on disk. Only chunks past the
    /// first are held (a file under 4 MiB never needs the buffer), at most
    /// [`KEPT_CHUNKS`] whole ones per file (past that the oldest is
    /// spilled), and only while the mount has a slot left for one more
    /// (`Journal::hold_slot`: bounded memory with any number of writers).
    fn hold(&mut self, journal: &Journal, seg: u64, data: &[u8]) -> FsResult<bool> {
        let k = seg / SEGS_PER_CHUNK;
        let at = (seg % SEGS_PER_CHUNK) * SEG;
        let full = data.len() as u64 == SEG;
        let next = self
            .filling
            .as_ref()
            .is_some_and(|(fk, buf, _)| *fk == k && buf.len() as u64 == at);
        if !next {
            // Anything else ends the run: what it held goes to the stage.
            self.spill_filling(journal)?;
        }
        if !full {
            return Ok(false);
        }
        match &mut self.filling {
            Some((_, buf, _)) if next => buf.extend_from_slice(data),
            None if at == 0 && k > 0 && !self.kept.contains_key(&k) => {
                let Some(slot) = journal.hold_slot() else {
                    return Ok(false);
                };
                let mut buf = POOL.plaintext(usize::try_from(CHUNK).unwrap_or(0));
                buf.extend_from_slice(data);
                self.filling = Some((k, buf, slot));
            }
            _ => return Ok(false),
        }
        if let Some((fk, buf, slot)) = self.filling.take_if(|(_, b, _)| b.len() as u64 == CHUNK) {
            self.kept.insert(fk, (Arc::new(buf), slot));
            while self.kept.len() > KEPT_CHUNKS {
                match self.kept.keys().next() {
                    Some(&old) => self.spill_held(journal, old)?,
                    None => break,
                }
            }
        }
        Ok(true)
    }

    /// Writes the whole segments `data` of chunk `k`, held in memory, to
    /// their stage slots.
    fn spill_chunk(&mut self, journal: &Journal, k: u64, data: &[u8]) -> FsResult<()> {
        let stage = self.ensure_stage(journal)?;
        for (i, part) in (0u64..).zip(data.chunks(usize_of(SEG)?)) {
            stage.write(k * SEGS_PER_CHUNK + i, part)?;
        }
        Ok(())
    }

    /// Spills the chunk being filled, if any.
    fn spill_filling(&mut self, journal: &Journal) -> FsResult<()> {
        if let Some((k, buf, slot)) = self.filling.take()
            && let Err(e) = self.spill_chunk(journal, k, &buf)
        {
            self.filling = Some((k, buf, slot));
            return Err(e);
        }
        Ok(())
    }

    /// Spills chunk `k` if it is held (filling or kept).
    fn spill_held(&mut self, journal: &Journal, k: u64) -> FsResult<()> {
        if self.filling.as_ref().is_some_and(|(fk, _, _)| *fk == k) {
            self.spill_filling(journal)?;
        }
        if let Some((buf, slot)) = self.kept.remove(&k) {
            if let Err(e) = self.spill_chunk(journal, k, &buf) {
                self.kept.insert(k, (buf, slot));
                return Err(e);
            }
            POOL.recycle_shared(buf);
        }
        Ok(())
    }

    /// Writes everything held in memory to the stage: the journal is the
    /// record again (before a save, a truncation).
    pub(crate) fn spill(&mut self, journal: &Journal) -> FsResult<()> {
        self.spill_filling(journal)?;
        while let Some(&k) = self.kept.keys().next() {
            self.spill_held(journal, k)?;
        }
        Ok(())
    }

    /// Chunk `k`'s early upload: the chunk itself if it is held whole in
    /// memory. Otherwise its slots are read from the stage, so a part of
    /// it still being filled is spilled first.
    pub(crate) fn for_upload(
        &mut self,
        journal: &Journal,
        k: u64,
    ) -> FsResult<Option<Arc<Plaintext>>> {
        if let Some((buf, _)) = self.kept.get(&k) {
            return Ok(Some(buf.clone()));
        }
        self.spill_held(journal, k)?;
        Ok(None)
    }

    /// A held segment's bytes.
    fn held_segment(&self, seg: u64) -> Option<&[u8]> {
        let k = seg / SEGS_PER_CHUNK;
        let at = usize_of((seg % SEGS_PER_CHUNK) * SEG).ok()?;
        let buf: &[u8] = match &self.filling {
            Some((fk, buf, _)) if *fk == k => buf,
            _ => &self.kept.get(&k)?.0,
        };
        buf.get(at..at + usize_of(SEG).ok()?)
    }

    /// Bytes of segment `seg` as the file holds them now: exactly
    /// `min(SEG, size - seg * SEG)` bytes (empty past the end).
    pub(crate) async fn segment<A: VaultApi + 'static>(
        &self,
        io: &Io<'_, A>,
        seg: u64,
    ) -> FsResult<Plaintext> {
        let start = seg * SEG;
        let len = usize_of(self.size().saturating_sub(start).min(SEG))?;
        if len == 0 {
            return Ok(Plaintext::new(Vec::new()));
        }
        let mut buf = if let Some((t, b)) = &self.tail
            && *t == seg
        {
            Plaintext::new(b.to_vec())
        } else if let Some(held) = self.held_segment(seg) {
            Plaintext::new(held.to_vec())
        } else if self.staged.contains_key(&seg) {
            let stage = self
                .stage
                .as_ref()
                .ok_or(FsError::Internal("staged without a stage file".into()))?;
            stage.read(seg)?
        } else if let Some(obj) = self.uploaded.get(&(seg / SEGS_PER_CHUNK)) {
            let local = start.saturating_sub(obj.offset);
            Plaintext::new(io.content.read(self.node, obj, local, local + SEG).await?)
        } else {
            self.read_base(io, start, start + SEG).await?
        };
        buf.resize(len, 0);
        Ok(buf)
    }

    /// Committed bytes `start..end` clipped at the base limit, zeros for
    /// holes; always `end - start` bytes.
    async fn read_base<A: VaultApi + 'static>(
        &self,
        io: &Io<'_, A>,
        start: u64,
        end: u64,
    ) -> FsResult<Plaintext> {
        let mut out = Plaintext::zeroed(usize_of(end - start)?);
        let limit = end.min(self.base_limit);
        if start >= limit {
            return Ok(out);
        }
        let first = self.base.partition_point(|o| o.offset + o.len <= start);
        for obj in self.base.iter().skip(first) {
            if obj.offset >= limit {
                break;
            }
            let from = start.max(obj.offset);
            let to = limit.min(obj.offset + obj.len);
            if from >= to {
                continue;
            }
            let bytes = io
                .content
                .read(self.node, obj, from - obj.offset, to - obj.offset)
                .await?;
            let at = usize_of(from - start)?;
            let dst = out
                .get_mut(at..at + bytes.len())
                .ok_or(FsError::Internal("object bounds".into()))?;
            dst.copy_from_slice(&bytes);
        }
        Ok(out)
    }

    /// Reads up to `size` bytes at `offset`.
    ///
    /// A range that lies in one object, with nothing written over it since,
    /// is a slice of the object's cached plaintext (no copy, see
    /// [`Content::range`]); anything else is assembled segment by segment.
    pub(crate) async fn read<A: VaultApi + 'static>(
        &self,
        io: &Io<'_, A>,
        offset: u64,
        size: u32,
    ) -> FsResult<bytes::Bytes> {
        let end = offset.saturating_add(u64::from(size)).min(self.size());
        if let Some(bytes) = self.object_range(io, offset, end).await? {
            return Ok(bytes);
        }
        let mut out = Vec::with_capacity(usize_of(end.saturating_sub(offset))?);
        let mut pos = offset;
        while pos < end {
            let seg = pos / SEG;
            let from = usize_of(pos - seg * SEG)?;
            let to = usize_of((end - seg * SEG).min(SEG))?;
            // Committed segments are copied once, from the cache.
            let cached = self.object_segment(io, seg).await?;
            let owned;
            let bytes: &[u8] = match &cached {
                Some(b) => b,
                None => {
                    owned = self.segment(io, seg).await?;
                    &owned
                }
            };
            out.extend_from_slice(
                bytes
                    .get(from..to)
                    .ok_or(FsError::Internal("segment bounds".into()))?,
            );
            pos = seg * SEG + to as u64;
        }
        Ok(out.into())
    }

    /// Whether the file's bytes in segment `seg` are not (only) an
    /// object's: the tail, a held chunk, or staged writes hold them.
    fn overlaid(&self, seg: u64) -> bool {
        self.tail.as_ref().is_some_and(|(t, _)| *t == seg)
            || self.held_segment(seg).is_some()
            || self.staged.contains_key(&seg)
    }

    /// The committed object that holds the file's bytes `start..end` (within
    /// one chunk), if one does and no truncation clipped them.
    fn object_covering(&self, start: u64, end: u64) -> Option<&ObjectEntry> {
        let obj = match self.uploaded.get(&(start / CHUNK)) {
            Some(obj) => obj,
            None if end <= self.base_limit => {
                let first = self.base.partition_point(|o| o.offset + o.len <= start);
                self.base.get(first)?
            }
            None => return None,
        };
        (obj.offset <= start && end <= obj.offset + obj.len).then_some(obj)
    }

    /// The file's bytes `start..end` as a slice of one object's cached
    /// plaintext, when they lie in one object and nothing overlays them.
    async fn object_range<A: VaultApi + 'static>(
        &self,
        io: &Io<'_, A>,
        start: u64,
        end: u64,
    ) -> FsResult<Option<bytes::Bytes>> {
        if end <= start || start / CHUNK != (end - 1) / CHUNK {
            return Ok(None);
        }
        if (start / SEG..=(end - 1) / SEG).any(|seg| self.overlaid(seg)) {
            return Ok(None);
        }
        let Some(obj) = self.object_covering(start, end) else {
            return Ok(None);
        };
        io.content
            .range(self.node, obj, start - obj.offset, end - obj.offset)
            .await
    }

    /// Segment `seg` as the content cache holds it, when the file's bytes
    /// there are exactly one object's whole segment: nothing written over
    /// it since, and not clipped by a truncation. `None` otherwise (the
    /// caller assembles it with [`FileInner::segment`]).
    async fn object_segment<A: VaultApi + 'static>(
        &self,
        io: &Io<'_, A>,
        seg: u64,
    ) -> FsResult<Option<bytes::Bytes>> {
        let start = seg * SEG;
        let len = self.size().saturating_sub(start).min(SEG);
        if len == 0 || self.overlaid(seg) {
            return Ok(None);
        }
        let Some(obj) = self.object_covering(start, start + len) else {
            return Ok(None);
        };
        let local = start - obj.offset;
        if !local.is_multiple_of(SEG) {
            return Ok(None);
        }
        let bytes = io.content.segment(self.node, obj, local / SEG).await?;
        let len = usize_of(len)?;
        Ok((bytes.len() >= len).then(|| bytes.slice(..len)))
    }

    /// Plaintext of chunk `k` as the file holds it now.
    pub(crate) async fn chunk<A: VaultApi + 'static>(
        &self,
        io: &Io<'_, A>,
        k: u64,
    ) -> FsResult<Plaintext> {
        let start = k * CHUNK;
        let end = (start + CHUNK).min(self.size());
        let mut out = POOL.plaintext(usize_of(end.saturating_sub(start))?);
        let mut seg = start / SEG;
        while seg * SEG < end {
            out.extend_from_slice(&self.segment(io, seg).await?);
            seg += 1;
        }
        Ok(out)
    }

    /// Replaces segment `seg` with `buf` (its full current length).
    fn put_segment(&mut self, journal: &Journal, seg: u64, buf: Plaintext) -> FsResult<()> {
        if self.tail.as_ref().is_some_and(|(t, _)| *t != seg) {
            self.flush_tail(journal)?;
        }
        // The chunk's old slots are being reused: they must not be punched;
        // a chunk held in memory goes to them first (this segment of it is
        // about to change, and may go to its slot).
        self.unpunched.remove(&(seg / SEGS_PER_CHUNK));
        if self.held_segment(seg).is_some() {
            self.spill_held(journal, seg / SEGS_PER_CHUNK)?;
        }
        self.seq += 1;
        self.staged.insert(seg, self.seq);
        self.tail = Some((seg, buf));
        Ok(())
    }

    /// Writes `data` at `offset`.
    pub(crate) async fn write<A: VaultApi + 'static>(
        &mut self,
        io: &Io<'_, A>,
        offset: u64,
        data: &[u8],
    ) -> FsResult<()> {
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or(FsError::TooBig)?;
        if end > MAX_FILE_SIZE {
            return Err(FsError::TooBig);
        }
        if data.is_empty() {
            return Ok(());
        }
        let new_size = self.size().max(end);
        let mut pos = offset;
        while pos < end {
            let seg = pos / SEG;
            let seg_start = seg * SEG;
            let seg_len = usize_of((new_size - seg_start).min(SEG))?;
            let from = usize_of(pos - seg_start)?;
            let to = usize_of((end - seg_start).min(SEG))?;
            let src = data
                .get(usize_of(pos - offset)?..usize_of(pos - offset)? + (to - from))
                .ok_or(FsError::Internal("write bounds".into()))?;
            let mut buf = if from == 0 && to >= seg_len {
                Plaintext::with_capacity(seg_len)
            } else if let Some((t, b)) = self.tail.take_if(|(t, _)| *t == seg) {
                let _ = t;
                b
            } else {
                self.segment(io, seg).await?
            };
            if buf.len() < to {
                buf.resize(to, 0);
            }
            buf.get_mut(from..to)
                .ok_or(FsError::Internal("segment bounds".into()))?
                .copy_from_slice(src);
            self.put_segment(io.journal, seg, buf)?;
            pos = seg_start + to as u64;
        }
        self.attrs.size = new_size;
        // A chunk uploaded early and now partly rewritten keeps its object
        // as the layer under the rewritten segments (dropping it would
        // turn the rest of the chunk into zeros); the commit rebuilds the
        // chunk from both.
        self.touch();
        Ok(())
    }

    /// Sets the size (truncate or extend with zeros).
    pub(crate) async fn truncate<A: VaultApi + 'static>(
        &mut self,
        io: &Io<'_, A>,
        new: u64,
    ) -> FsResult<()> {
        if new > MAX_FILE_SIZE {
            return Err(FsError::TooBig);
        }
        let old = self.size();
        if new < old {
            self.spill(io.journal)?;
            // Keep the part of the segment holding the new end that stays.
            let cut_seg = new / SEG;
            let keep = usize_of(new - cut_seg * SEG)?;
            if keep > 0 {
                let mut buf = self.segment(io, cut_seg).await?;
                buf.truncate(keep);
                self.put_segment(io.journal, cut_seg, buf)?;
            }
            let first_gone = new.div_ceil(SEG);
            if self.tail.as_ref().is_some_and(|(t, _)| *t >= first_gone) {
                self.tail = None;
            }
            self.staged.retain(|s, _| *s < first_gone);
            // Chunks reaching past the new end are rebuilt from the layers;
            // stage what an early upload holds of the one cut in two.
            let cut_chunk = new / CHUNK;
            if !new.is_multiple_of(CHUNK) && self.uploaded.contains_key(&cut_chunk) {
                for seg in cut_chunk * SEGS_PER_CHUNK..new.div_ceil(SEG) {
                    if !self.staged.contains_key(&seg) {
                        let buf = self.segment(io, seg).await?;
                        self.put_segment(io.journal, seg, buf)?;
                    }
                }
            }
            self.uploaded.retain(|k, _| (k + 1) * CHUNK <= new);
            self.base_limit = self.base_limit.min(new);
        } else {
            self.base_limit = self.base_limit.min(old);
        }
        self.attrs.size = new;
        self.touch();
        Ok(())
    }

    /// True when chunk `k` is wholly written and staged (and not the
    /// tail's), so it could be uploaded before the file is closed.
    pub(crate) fn chunk_ready(&self, k: u64) -> bool {
        k < self.size() / CHUNK
            && self
                .tail
                .as_ref()
                .is_none_or(|(t, _)| t / SEGS_PER_CHUNK != k)
            && self
                .staged
                .range(k * SEGS_PER_CHUNK..(k + 1) * SEGS_PER_CHUNK)
                .count() as u64
                == SEGS_PER_CHUNK
    }

    /// Of the chunks `candidates` (those a write touched, and the one its
    /// tail left), the ones now ready and not yet queued: marks them queued
    /// and returns them, so each ready chunk gets one early upload. O(the
    /// candidates), not O(the staged segments): a long write calls this
    /// for every request.
    pub(crate) fn take_ready(&mut self, candidates: impl IntoIterator<Item = u64>) -> Vec<u64> {
        let mut out: Vec<u64> = Vec::new();
        for k in candidates {
            if !out.contains(&k) && !self.uploading.contains(&k) && self.chunk_ready(k) {
                out.push(k);
            }
        }
        self.uploading.extend(out.iter().copied());
        out
    }

    /// The newest write sequence of chunk `k`'s staged segments.
    pub(crate) fn chunk_seq(&self, k: u64) -> u64 {
        self.staged
            .range(k * SEGS_PER_CHUNK..(k + 1) * SEGS_PER_CHUNK)
            .map(|(_, s)| *s)
            .max()
            .unwrap_or(0)
    }

    /// Staged segments as ranges.
    fn staged_ranges(&self) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for &s in self.staged.keys() {
            match out.last_mut() {
                Some((_, end)) if *end == s => *end = s + 1,
                _ => out.push((s, s + 1)),
            }
        }
        out
    }

    /// The journal manifest for this state (call after
    /// `flush_tail_unless_inline`).
    pub(crate) fn manifest(&self) -> Manifest {
        let inline = self.inline_tail().map(|(seg, data)| Inline {
            seg,
            data: data.clone(),
        });
        let mut staged = self.staged_ranges();
        if let Some(i) = &inline {
            staged.retain(|r| *r != (i.seg, i.seg + 1));
        }
        Manifest {
            inline,
            node: self.node,
            epoch: self.epoch,
            base_version: self.base_version,
            size: self.size(),
            base_limit: self.base_limit,
            parent: self.parent,
            name: self.name.to_vec(),
            attrs: self.attrs.clone(),
            staged,
            uploaded: self.uploaded.iter().map(|(k, o)| (*k, o.clone())).collect(),
        }
    }

    /// Writes the manifest (and with `durable`, syncs the stage first).
    /// A save that is not `durable` and would write the manifest already
    /// there is skipped.
    pub(crate) fn save(&mut self, journal: &Journal, durable: bool) -> FsResult<()> {
        self.flush_tail_unless_inline(journal)?;
        self.spill(journal)?;
        let m = self.manifest();
        let fingerprint = m.fingerprint()?;
        if !durable && self.saved == Some(fingerprint) {
            return Ok(());
        }
        self.saved = None;
        let last = self.manifest_seq.take();
        self.manifest_seq = journal.write_manifest(&m, self.stage.as_deref(), durable, last)?;
        self.saved = Some(fingerprint);
        Ok(())
    }

    /// Every write so far was closed (or the attributes were just set):
    /// the uploader may commit the file once it has rested.
    pub(crate) fn mark_closed(&mut self) {
        self.closed_seq = self.seq;
        self.closed_at = Some(std::time::Instant::now());
    }

    /// The journal no longer holds this file's manifest.
    pub(crate) fn forget_saved(&mut self) {
        self.saved = None;
        self.manifest_seq = None;
    }

    /// State rebuilt from a manifest, on top of the committed `base`.
    pub(crate) fn from_manifest(
        m: Manifest,
        journal: &Journal,
        base: Vec<ObjectEntry>,
        base_attrs: Option<NodeAttributes>,
    ) -> FsResult<Self> {
        let stage = if m.staged.is_empty() {
            None
        } else {
            Some(Arc::new(journal.stage(m.node, m.epoch)?))
        };
        let mut staged = BTreeMap::new();
        for (a, b) in &m.staged {
            for s in *a..*b {
                staged.insert(s, 1);
            }
        }
        // An inline segment is the tail again, staged in memory.
        let tail = m.inline.map(|i| {
            staged.insert(i.seg, 1);
            (i.seg, i.data)
        });
        let mut attrs = m.attrs;
        attrs.size = m.size;
        attrs.objects.clear();
        let mut base_attrs = base_attrs.unwrap_or_else(|| attrs.clone());
        base_attrs.objects.clear();
        Ok(Self {
            node: m.node,
            base_version: m.base_version,
            base: Arc::new(base),
            base_attrs,
            attrs,
            base_limit: m.base_limit,
            staged,
            uploaded: m.uploaded.into_iter().collect(),
            uploading: BTreeSet::new(),
            unpunched: BTreeSet::new(),
            punching: false,
            filling: None,
            kept: BTreeMap::new(),
            tail,
            seq: 1,
            closed_seq: 1,
            closed_at: None,
            dirty: true,
            epoch: m.epoch,
            stage,
            parent: m.parent,
            name: Zeroizing::new(m.name),
            gone: false,
            saved: None,
            manifest_seq: None,
        })
    }

    /// Forgets everything pending (committed, or the file is gone).
    pub(crate) fn clear_pending(&mut self, journal: &Journal) -> FsResult<()> {
        self.forget_pending().run(journal)
    }

    /// Forgets everything pending in memory; answers what is left to do
    /// in the journal, for the caller to run while it still holds the
    /// file's lock (so no new manifest of the file can be written first).
    pub(crate) fn forget_pending(&mut self) -> JournalRemoval {
        let epoch = self.epoch;
        // Nobody else holds the stage file (no early upload reading it):
        // it can go back to the journal's pool.
        let unused = self
            .stage
            .as_ref()
            .is_none_or(|s| Arc::strong_count(s) == 1);
        self.staged.clear();
        self.uploaded.clear();
        self.tail = None;
        self.stage = None;
        self.unpunched.clear();
        self.filling = None;
        self.kept.clear();
        self.epoch = 0;
        self.dirty = false;
        self.saved = None;
        self.manifest_seq = None;
        JournalRemoval {
            node: self.node,
            epoch,
            unused,
        }
    }
}

/// The journal files of a file whose pending changes were forgotten
/// ([`FileInner::forget_pending`]).
#[derive(Debug, Clone, Copy)]
#[must_use = "the journal still holds the file's changes"]
pub(crate) struct JournalRemoval {
    node: NodeId,
    epoch: u64,
    /// Nobody else holds the stage file: it can go back to the pool.
    unused: bool,
}

impl JournalRemoval {
    /// Removes the manifest and stage file from the journal.
    pub(crate) fn run(self, journal: &Journal) -> FsResult<()> {
        journal.remove(self.node, self.epoch, self.unused)
    }
}
