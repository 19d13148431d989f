//! The write-back journal: where written data waits, encrypted, until it is
//! committed on the server. Everything in it is sealed with the vault's
//! local key (`common::crypto::local`), so the disk never holds plaintext.
//!
//! Per file with pending changes there are two files in the journal dir:
//!
//! - `<node>.<epoch>.stage`: the file's changed 64 KiB segments, each in a
//!   fixed slot at `index * SLOT` holding `u32 len || sealed(segment)`, the
//!   seal bound to (node, epoch, index) so a slot cannot move; slots never
//!   written are holes in a sparse file.
//! - `<node>.manifest`: sealed (node) state replay needs: epoch, base
//!   version, size, the base limit (bytes at or past it come only from the
//!   journal: truncation), which segments are staged, the objects already
//!   uploaded for whole chunks, the attributes, and the entry's parent and
//!   name (for a conflict copy). It is saved in place in two slots
//!   written in turn, so a kill leaves the last whole save (see `slots`),
//!   or replaced atomically (write, fsync when asked, rename) when durable
//!   or larger than a slot.
//!
//! A small file whose changes are one segment of at most [`INLINE_MAX`]
//! bytes has no stage file: the segment is in its manifest ([`Inline`]),
//! and a new small file costs one journal file written once at close.
//!
//! A directory or symlink with a pending mode, owner or time change (see
//! `records`) has `<node>.record`: the sealed change, one page rewritten
//! in place.
//!
//! Invariants: a manifest only lists slots written before it; a slot is
//! punched (or the files deleted) only after a manifest that no longer
//! needs it is in place. A daemon killed at any point leaves either the old
//! or the new manifest, each consistent with the stage file's slots.
//!
//! A file's stage is removed by name (its node and current epoch), never by
//! scanning the directory: with thousands of files pending, a scan per
//! committed file made committing quadratic. What a crash leaves (stage
//! files without a manifest, or of an older epoch) is swept once, when the
//! journal is read back at mount.
//!
//! Removed manifests and stage files go to a pool of empty files
//! (`free/`, see `recycle`) and new ones come from it: writing thousands
//! of small files then makes and frees no inodes in the journal.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::codec::{Reader, Writer as _};
use common::crypto::CryptoError;
use common::crypto::Plaintext;
use common::crypto::SEALED_OVERHEAD;
use common::crypto::attrs::{NodeAttributes, ObjectEntry};
use common::crypto::content::{ObjectCheck, ObjectDigest, SEGMENT_SIZE};
use common::crypto::local::{open_local, open_local_append, seal_local, seal_local_append};
use common::crypto::subkeys::LocalKey;
use common::{NodeId, ObjectId};
use zeroize::Zeroizing;

use super::error::{FsError, FsResult};
use super::recycle::{Recycle, remove_if_present};
use super::slots::{self, PAGE};

/// Bytes per slot in a stage file (a segment, its seal and length, rounded
/// up to 4 KiB so slots stay page-aligned).
pub(crate) const SLOT: u64 = ((SEGMENT_SIZE + SEALED_OVERHEAD + 4).div_ceil(4096) * 4096) as u64;
/// The first manifest layout: uploaded objects committed by their digest.
const MANIFEST_MAGIC_V1: &[u8; 4] = b"SVJ\x01";
/// Version 1 with an [`Inline`] segment after its fields.
const MANIFEST_MAGIC_V1_INLINE: &[u8; 4] = b"SVJ\x02";
/// What this client writes: uploaded objects as tagged entries (a seed or a
/// digest, as in attribute record version 2). Manifests of the older
/// layouts are still read: a journal left by an older client replays.
const MANIFEST_MAGIC: &[u8; 4] = b"SVJ\x03";
/// [`MANIFEST_MAGIC`] with an [`Inline`] segment.
const MANIFEST_MAGIC_INLINE: &[u8; 4] = b"SVJ\x04";
/// The most bytes a manifest holds inline: a small file then costs one
/// journal file written once, not a manifest and a stage file.
pub(crate) const INLINE_MAX: usize = 12 * 1024;

/// A small file's only changed segment (its index and bytes), kept in its
/// manifest: written with it, sealed with it, and never a stage slot.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Inline {
    pub seg: u64,
    pub data: Plaintext,
}

impl std::fmt::Debug for Inline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inline")
            .field("seg", &self.seg)
            .field("len", &self.data.len())
            .finish()
    }
}

fn corrupt(reason: &'static str) -> FsError {
    FsError::Integrity(CryptoError::Malformed {
        what: "journal",
        reason,
    })
}

/// What replay needs to finish a file's upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Manifest {
    pub node: NodeId,
    pub epoch: u64,
    pub base_version: u64,
    pub size: u64,
    pub base_limit: u64,
    pub parent: NodeId,
    pub name: Vec<u8>,
    /// Current attributes (object list empty; size is `size`).
    pub attrs: NodeAttributes,
    /// Staged segment indices as half-open ranges.
    pub staged: Vec<(u64, u64)>,
    /// A small file's one segment, held in the manifest itself instead of
    /// a stage file (see [`Inline`]).
    pub inline: Option<Inline>,
    /// Objects already uploaded for whole chunks: (chunk index, object).
    pub uploaded: Vec<(u64, ObjectEntry)>,
}

impl Manifest {
    /// SHA-256 of the encoded manifest: equal fingerprints, equal files.
    pub(crate) fn fingerprint(&self) -> FsResult<[u8; 32]> {
        Ok(crate::api::tree::sha256(&self.encode()?))
    }

    fn encode(&self) -> FsResult<Zeroizing<Vec<u8>>> {
        let mut attrs = self.attrs.clone();
        attrs.objects.clear();
        attrs.size = self.size;
        let attrs = attrs.encode()?;
        let mut out = Zeroizing::new(Vec::new());
        out.put_bytes(if self.inline.is_some() {
            MANIFEST_MAGIC_INLINE
        } else {
            MANIFEST_MAGIC
        });
        out.put_bytes(self.node.as_bytes());
        out.put_u64(self.epoch);
        out.put_u64(self.base_version);
        out.put_u64(self.size);
        out.put_u64(self.base_limit);
        out.put_bytes(self.parent.as_bytes());
        out.put_u16(u16::try_from(self.name.len()).map_err(|_| FsError::NameTooLong)?);
        out.put_bytes(&self.name);
        out.put_u32(u32::try_from(attrs.len()).map_err(|_| FsError::TooBig)?);
        out.put_bytes(&attrs);
        out.put_u32(u32::try_from(self.staged.len()).map_err(|_| FsError::TooBig)?);
        for (a, b) in &self.staged {
            out.put_u64(*a);
            out.put_u64(*b);
        }
        out.put_u32(u32::try_from(self.uploaded.len()).map_err(|_| FsError::TooBig)?);
        for (chunk, o) in &self.uploaded {
            out.put_u64(*chunk);
            o.encode_tagged(&mut out);
        }
        if let Some(inline) = &self.inline {
            out.put_u64(inline.seg);
            out.put_u32(u32::try_from(inline.data.len()).map_err(|_| FsError::TooBig)?);
            out.put_bytes(&inline.data);
        }
        Ok(out)
    }

    fn decode(bytes: &[u8]) -> FsResult<Self> {
        let bad = |_| corrupt("manifest does not parse");
        let mut r = Reader::new(bytes);
        let (has_inline, tagged) = match &r.array::<4>().map_err(bad)? {
            m if m == MANIFEST_MAGIC_V1 => (false, false),
            m if m == MANIFEST_MAGIC_V1_INLINE => (true, false),
            m if m == MANIFEST_MAGIC => (false, true),
            m if m == MANIFEST_MAGIC_INLINE => (true, true),
            _ => return Err(corrupt("unknown manifest version")),
        };
        let node = NodeId::from_bytes(r.array().map_err(bad)?);
        let epoch = r.u64().map_err(bad)?;
        let base_version = r.u64().map_err(bad)?;
        let size = r.u64().map_err(bad)?;
        let base_limit = r.u64().map_err(bad)?;
        let parent = NodeId::from_bytes(r.array().map_err(bad)?);
        let name_len = usize::from(r.u16().map_err(bad)?);
        let name = r.bytes(name_len).map_err(bad)?.to_vec();
        let attrs_len = usize::try_from(r.u32().map_err(bad)?).map_err(|_| corrupt("length"))?;
        let attrs = NodeAttributes::decode(r.bytes(attrs_len).map_err(bad)?)?;
        let n = r.u32().map_err(bad)?;
        let mut staged = Vec::new();
        for _ in 0..n {
            let a = r.u64().map_err(bad)?;
            let b = r.u64().map_err(bad)?;
            if a >= b {
                return Err(corrupt("empty staged range"));
            }
            staged.push((a, b));
        }
        let n = r.u32().map_err(bad)?;
        let mut uploaded = Vec::new();
        for _ in 0..n {
            let chunk = r.u64().map_err(bad)?;
            let entry = if tagged {
                ObjectEntry::decode_tagged(&mut r)?
            } else {
                ObjectEntry {
                    id: ObjectId::from_bytes(r.array().map_err(bad)?),
                    offset: r.u64().map_err(bad)?,
                    len: r.u64().map_err(bad)?,
                    check: ObjectCheck::Digest(ObjectDigest::from_bytes(r.array().map_err(bad)?)),
                }
            };
            uploaded.push((chunk, entry));
        }
        let inline = if has_inline {
            let seg = r.u64().map_err(bad)?;
            let len = usize::try_from(r.u32().map_err(bad)?).map_err(|_| corrupt("length"))?;
            if len > INLINE_MAX {
                return Err(corrupt("inline segment too large"));
            }
            let data = Plaintext::new(r.bytes(len).map_err(bad)?.to_vec());
            Some(Inline { seg, data })
        } else {
            None
        };
        r.finish().map_err(bad)?;
        Ok(Self {
            inline,
            node,
            epoch,
            base_version,
            size,
            base_limit,
            parent,
            name,
            attrs,
            staged,
            uploaded,
        })
    }
}

/// The journal directory.
pub(crate) struct Journal {
    dir: PathBuf,
    key: LocalKey,
    /// Empty files to use again (`free/`).
    pool: Recycle,
    /// Chunk buffers files of this mount hold in memory instead of the
    /// stage (see `FileInner::hold`), at most [`HELD_CHUNKS`].
    held: Arc<AtomicUsize>,
}

/// Chunk buffers (4 MiB) all files of a mount may hold in memory at once
/// instead of staging them: one file written in order needs up to seven
/// (one filling, four in upload, two waiting), so several can stream at
/// once, and the memory stays bounded however many are written.
const HELD_CHUNKS: usize = 12;

/// One of the [`HELD_CHUNKS`]: given back when dropped.
pub(crate) struct HeldSlot(Arc<AtomicUsize>);

impl Drop for HeldSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl std::fmt::Debug for HeldSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeldSlot")
    }
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

impl Journal {
    /// Opens (creating) the journal in `dir`, its pool of empty files
    /// kept stocked with `spare` (see `recycle`).
    pub(crate) fn open(dir: &Path, key: LocalKey, spare: usize) -> FsResult<Self> {
        create_private_dir(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            key,
            pool: Recycle::open(&dir.join("free"), spare)?,
            held: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// A slot for one more chunk held in memory, if the mount has one left.
    pub(crate) fn hold_slot(&self) -> Option<HeldSlot> {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < HELD_CHUNKS).then_some(n + 1)
            })
            .ok()
            .map(|_| HeldSlot(self.held.clone()))
    }

    fn manifest_path(&self, node: NodeId) -> PathBuf {
        self.dir.join(format!("{node}.manifest"))
    }

    fn stage_path(&self, node: NodeId, epoch: u64) -> PathBuf {
        self.dir.join(format!("{node}.{epoch:016x}.stage"))
    }

    /// Opens (creating) the stage file of `node` at `epoch`.
    pub(crate) fn stage(&self, node: NodeId, epoch: u64) -> FsResult<Stage> {
        let path = self.stage_path(node, epoch);
        self.pool.take(&path);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)?;
        Ok(Stage {
            file,
            node,
            epoch,
            key: self.key.clone(),
            punching: std::sync::Mutex::new(Vec::new()),
            punched: std::sync::Condvar::new(),
        })
    }

    /// Replaces the manifest of `m.node`; with `durable`, it and the stage
    /// file are on disk when this returns. `last` is the number of the
    /// caller's own last save of it when that save may be followed in
    /// place; answers the same for the save made now.
    ///
    /// A manifest is written in slots (see `slots`). After a save that may
    /// be followed, the next goes to the other slot, in place: no new inode
    /// and no rename per `close`, `chmod`, `utimens` or rename of a pending
    /// file. The first save of a file is written in place too when no file
    /// is there yet (an empty one from the pool, or a new one): a run
    /// ending during that write leaves an empty file or a slot cut short,
    /// which [`Self::manifests`] drops, as the close that wrote it never
    /// returned. Anything else (a durable save, a manifest larger than a
    /// slot, a file whose last save is not the caller's) is a new file
    /// renamed over the old one, so a crash leaves the old manifest or the
    /// new.
    pub(crate) fn write_manifest(
        &self,
        m: &Manifest,
        stage: Option<&Stage>,
        durable: bool,
        last: Option<u64>,
    ) -> FsResult<Option<u64>> {
        let plain = m.encode()?;
        if durable && let Some(stage) = stage {
            stage.file.sync_data()?;
        }
        let path = self.manifest_path(m.node);
        if !durable {
            if let Some(seq) = last.and_then(|l| l.checked_add(1)) {
                let bytes = self.manifest_slot(m.node, seq, &plain)?;
                if bytes.len() <= slots::SLOT_BYTES {
                    write_at(&path, &bytes, slots::offset(seq))?;
                    return Ok(Some(seq));
                }
            }
            if let Some(file) = self.new_file(&path)? {
                let bytes = self.manifest_slot(m.node, 0, &plain)?;
                file.write_all_at(&bytes, 0)?;
                return Ok((bytes.len() <= slots::SLOT_BYTES).then_some(0));
            }
        }
        let bytes = self.manifest_slot(m.node, 0, &plain)?;
        let tmp = self.dir.join(format!("{}.manifest.tmp", m.node));
        self.pool.take(&tmp);
        replace_file(&tmp, &path, &bytes, durable)?;
        if durable {
            File::open(&self.dir)?.sync_all()?;
            return Ok(None);
        }
        Ok((bytes.len() <= slots::SLOT_BYTES).then_some(0))
    }

    /// Save `seq` of `node`'s manifest `plain`, sealed, as slot bytes.
    fn manifest_slot(&self, node: NodeId, seq: u64, plain: &[u8]) -> FsResult<Vec<u8>> {
        let sealed = seal_local(
            &self.key,
            "manifest",
            &[node.as_bytes(), &seq.to_be_bytes()],
            plain,
        )?;
        slots::to_slot(seq, &sealed).ok_or(FsError::TooBig)
    }

    /// The manifest in `raw`, the file of `node`: the valid slot saved
    /// last, or (written by an older version) one sealed page or the
    /// sealed bytes alone. `None` when the file was cut short by a kill
    /// before any save in it was whole.
    fn read_manifest(&self, node: NodeId, raw: &[u8]) -> FsResult<Option<Manifest>> {
        let open = |fields: &[&[u8]], sealed: &[u8]| {
            open_local(&self.key, "manifest", fields, sealed)
                .map_err(FsError::from)
                .and_then(|plain| Manifest::decode(&plain))
                .and_then(|m| {
                    if m.node == node {
                        Ok(m)
                    } else {
                        Err(corrupt("manifest of another node"))
                    }
                })
        };
        if slots::is_slotted(raw) {
            let mut best: Option<(u64, Manifest)> = None;
            let mut cut = false;
            for slot in slots::slots(raw) {
                match slot {
                    slots::Slot::Sealed { seq, sealed } => {
                        if let Ok(m) = open(&[node.as_bytes(), &seq.to_be_bytes()], sealed)
                            && best.as_ref().is_none_or(|(b, _)| seq > *b)
                        {
                            best = Some((seq, m));
                        }
                    }
                    slots::Slot::CutShort => cut = true,
                    slots::Slot::Bad => {}
                }
            }
            return match best {
                Some((_, m)) => Ok(Some(m)),
                None if cut => Ok(None),
                None => Err(corrupt("no readable manifest slot")),
            };
        }
        if paged(raw) == Paged::CutShort {
            return Ok(None);
        }
        match from_page(raw).map(|sealed| open(&[node.as_bytes()], sealed)) {
            Some(Ok(m)) => Ok(Some(m)),
            _ => open(&[node.as_bytes()], raw).map(Some),
        }
    }

    /// An empty file at `path` if nothing is there yet (from the pool, or
    /// made), open for writing; `None` when something is.
    fn new_file(&self, path: &Path) -> FsResult<Option<File>> {
        if self.pool.take(path) {
            return Ok(Some(OpenOptions::new().write(true).open(path)?));
        }
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(file) => Ok(Some(file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Forgets `node`'s pending changes (after they are committed or the
    /// file is gone): the manifest first, then the stage file of `epoch`
    /// (the file's current one; 0: it has none). Stage files of other
    /// epochs exist only after a crash, and [`Self::manifests`] removes
    /// them at the next start: a scan here would cost a read of the whole
    /// directory per committed file.
    ///
    /// The files go back to the pool (`recycle`); the stage file only when
    /// `stage_unused` (no descriptor still reads or writes it: one of a
    /// deleted file that is still open must keep its contents).
    pub(crate) fn remove(&self, node: NodeId, epoch: u64, stage_unused: bool) -> FsResult<()> {
        self.pool.retire(&self.manifest_path(node))?;
        if epoch != 0 {
            let path = self.stage_path(node, epoch);
            if stage_unused {
                self.pool.retire(&path)?;
            } else {
                remove_if_present(&path)?;
            }
        }
        Ok(())
    }

    /// The local key journal entries are sealed with.
    pub(crate) fn key(&self) -> &LocalKey {
        &self.key
    }

    fn page_file(&self, node: NodeId, kind: PageFile) -> PathBuf {
        self.dir.join(format!("{node}.{}", kind.suffix()))
    }

    /// Replaces the sealed record change of `node` (see `records`) or its
    /// pending directory (see `dirs`): one page written in place; the
    /// first one takes its file from the pool. tar and rsync change
    /// every directory they make two or three times: a new file renamed
    /// over the old one per change made and freed an inode each time, and
    /// ext4's inode allocation then scans past every recently freed one.
    /// Neither is ever durable (`fsyncdir` sends it instead), and a
    /// one-page write is never cut short by a kill, so the page holds the
    /// old contents or the new.
    pub(crate) fn write_page(&self, node: NodeId, kind: PageFile, sealed: &[u8]) -> FsResult<()> {
        let page = to_page(sealed)
            .ok_or_else(|| FsError::Internal(format!("a {} larger than a page", kind.suffix())))?;
        let path = self.page_file(node, kind);
        self.pool.take(&path);
        write_in_place(&path, &page)
    }

    /// Forgets the page of `node` (its file goes to the pool).
    pub(crate) fn remove_page(&self, node: NodeId, kind: PageFile) -> FsResult<()> {
        Ok(self.pool.retire(&self.page_file(node, kind))?)
    }

    /// Every page of `kind` left by an earlier run, sealed, by node (and
    /// removes temporary ones a crash or an older version left).
    pub(crate) fn pages(&self, kind: PageFile) -> FsResult<Vec<(NodeId, Vec<u8>)>> {
        let suffix = format!(".{}", kind.suffix());
        let tmp = format!("{suffix}.tmp");
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(&tmp) {
                remove_if_present(&entry.path())?;
                continue;
            }
            let Some(node) = name
                .strip_suffix(&suffix)
                .and_then(|hex| hex.parse::<NodeId>().ok())
            else {
                continue;
            };
            let raw = fs::read(entry.path())?;
            if raw.is_empty() {
                // Taken from the pool, and the run ended before the write.
                self.pool.retire(&entry.path())?;
                continue;
            }
            // A page; or, a record change written by an older version, the
            // sealed change itself.
            let sealed = from_page(&raw).map_or_else(|| raw.clone(), <[u8]>::to_vec);
            out.push((node, sealed));
        }
        Ok(out)
    }

    /// Every manifest left by an earlier run (unreadable ones are reported
    /// and left in place, with their stage files, for a person to look
    /// at). Also removes what a crash can leave besides: temporary
    /// manifests, and stage files no manifest refers to (written before
    /// their manifest, or left when a removal was cut short). Call it only
    /// before the journal is used (at mount): a stage file being written
    /// for a new manifest would look left over.
    pub(crate) fn manifests(&self) -> FsResult<Vec<Manifest>> {
        let mut out = Vec::new();
        let mut stages = Vec::new();
        let mut unreadable = std::collections::HashSet::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(".manifest.tmp") {
                let _ = fs::remove_file(entry.path());
                continue;
            }
            if let Some(stage) = parse_stage_name(name) {
                stages.push((stage, entry.path()));
                continue;
            }
            let Some(hex_id) = name.strip_suffix(".manifest") else {
                continue;
            };
            let Ok(node) = hex_id.parse::<NodeId>() else {
                continue;
            };
            let raw = fs::read(entry.path())?;
            let parsed = if raw.is_empty() {
                Ok(None)
            } else {
                self.read_manifest(node, &raw)
            };
            match parsed {
                Ok(Some(m)) => out.push(m),
                // Made for a first manifest, and the run ended before the
                // write or during it: the close that wrote it never
                // returned.
                Ok(None) => self.pool.retire(&entry.path())?,
                Err(_) => {
                    unreadable.insert(node);
                    tracing::error!(path = %entry.path().display(), "unreadable journal manifest left in place");
                }
            }
        }
        let live: std::collections::HashSet<(NodeId, u64)> =
            out.iter().map(|m| (m.node, m.epoch)).collect();
        for ((node, epoch), path) in stages {
            if !unreadable.contains(&node) && !live.contains(&(node, epoch)) {
                remove_if_present(&path)?;
            }
        }
        Ok(out)
    }
}

/// Writes `page` at the start of `path` (made, private to the user, if
/// missing), over what is there: one page, so a kill leaves the old page
/// or the new.
fn write_in_place(path: &Path, page: &[u8]) -> FsResult<()> {
    write_at(path, page, 0)
}

/// Writes `bytes` at `offset` of `path` (made, private to the user, if
/// missing), over what is there.
fn write_at(path: &Path, bytes: &[u8], offset: u64) -> FsResult<()> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?
        .write_all_at(bytes, offset)?;
    Ok(())
}

/// Writes `bytes` to `tmp` (private to the user; synced with `durable`)
/// and renames it over `path`, so a crash leaves the old file or the new.
fn replace_file(tmp: &Path, path: &Path, bytes: &[u8], durable: bool) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(tmp)?;
    f.write_all(bytes)?;
    if durable {
        f.sync_data()?;
    }
    drop(f);
    fs::rename(tmp, path)
}

/// Slots punched by one call in [`Stage::finish_punch`] (a 4 MiB chunk).
const PUNCH_STEP: u64 = 64;

/// The start of a page (then the sealed manifest's or change's length, u32
/// big-endian, the sealed manifest, and zeros to the end of the page).
const PAGE_MAGIC: &[u8; 4] = b"SVJ1";
const PAGE_HEAD: usize = PAGE_MAGIC.len() + 4;

/// The kinds of one-page journal files, one per node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PageFile {
    /// `<node>.record`: a directory's or symlink's pending record change.
    Record,
    /// `<node>.dir`: a directory made here that the server has not seen.
    Dir,
}

impl PageFile {
    fn suffix(self) -> &'static str {
        match self {
            Self::Record => "record",
            Self::Dir => "dir",
        }
    }
}

/// `sealed` in whole pages: the page head, `sealed`, zeros to the end of
/// its last page (`None` only when longer than a `u32` counts).
fn to_pages(sealed: &[u8]) -> Option<Vec<u8>> {
    let len = u32::try_from(sealed.len()).ok()?;
    let total = (PAGE_HEAD + sealed.len()).div_ceil(PAGE) * PAGE;
    let mut page = Vec::with_capacity(total);
    page.extend_from_slice(PAGE_MAGIC);
    page.extend_from_slice(&len.to_be_bytes());
    page.extend_from_slice(sealed);
    page.resize(total, 0);
    Some(page)
}

/// `sealed` as one page, if it fits in one.
fn to_page(sealed: &[u8]) -> Option<Vec<u8>> {
    to_pages(sealed).filter(|p| p.len() == PAGE)
}

/// What a journal file holds.
#[derive(Debug, PartialEq, Eq)]
enum Paged<'a> {
    /// Pages holding this sealed manifest or change.
    Sealed(&'a [u8]),
    /// Pages whose head promises more than the file holds: a first
    /// manifest written in place and cut short by a kill (older versions
    /// wrote only a first manifest or a one-page one in place).
    CutShort,
    /// Not pages: the sealed manifest itself, as older versions wrote one
    /// that did not fit in a page.
    Raw,
}

fn paged(raw: &[u8]) -> Paged<'_> {
    if raw.is_empty() || !raw.len().is_multiple_of(PAGE) || !raw.starts_with(PAGE_MAGIC) {
        return Paged::Raw;
    }
    let Some(len) = raw
        .get(PAGE_MAGIC.len()..PAGE_HEAD)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .and_then(|b| usize::try_from(u32::from_be_bytes(b)).ok())
    else {
        return Paged::Raw;
    };
    match PAGE_HEAD
        .checked_add(len)
        .and_then(|end| raw.get(PAGE_HEAD..end))
    {
        Some(sealed) => Paged::Sealed(sealed),
        None => Paged::CutShort,
    }
}

/// The sealed manifest or change in a page file (`None`: `raw` is not
/// one, and is the sealed manifest itself).
fn from_page(raw: &[u8]) -> Option<&[u8]> {
    match paged(raw) {
        Paged::Sealed(sealed) => Some(sealed),
        Paged::CutShort | Paged::Raw => None,
    }
}

/// The node and epoch a stage file's name (`<node>.<epoch>.stage`) holds.
fn parse_stage_name(name: &str) -> Option<(NodeId, u64)> {
    let (node, epoch) = name.strip_suffix(".stage")?.split_once('.')?;
    Some((node.parse().ok()?, u64::from_str_radix(epoch, 16).ok()?))
}

/// One file's stage file.
pub(crate) struct Stage {
    file: File,
    node: NodeId,
    epoch: u64,
    key: LocalKey,
    /// Slot ranges being punched ([`Stage::begin_punch`]): a write into
    /// one waits until the punch is done, so the punch never frees a slot
    /// written after the caller decided to punch it.
    punching: std::sync::Mutex<Vec<std::ops::Range<u64>>>,
    punched: std::sync::Condvar,
}

impl std::fmt::Debug for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stage")
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl Stage {
    fn fields(&self, index: u64) -> [Vec<u8>; 3] {
        [
            self.node.as_bytes().to_vec(),
            self.epoch.to_be_bytes().to_vec(),
            index.to_be_bytes().to_vec(),
        ]
    }

    /// Stores segment `index` (at most 64 KiB of plaintext).
    pub(crate) fn write(&self, index: u64, plain: &[u8]) -> FsResult<()> {
        let f = self.fields(index);
        // The length, then the sealed segment, sealed straight into the
        // buffer that is written (no copy of the sealed bytes).
        let mut buf = Vec::with_capacity(4 + plain.len() + SEALED_OVERHEAD);
        buf.extend_from_slice(&[0; 4]);
        seal_local_append(
            &self.key,
            "segment",
            &[&f[0], &f[1], &f[2]],
            plain,
            &mut buf,
        )?;
        let len = u32::try_from(buf.len() - 4).map_err(|_| FsError::TooBig)?;
        buf.get_mut(..4)
            .ok_or(FsError::Internal("slot length".into()))?
            .copy_from_slice(&len.to_be_bytes());
        let at = index.checked_mul(SLOT).ok_or(FsError::TooBig)?;
        self.wait_unless_punching(index);
        self.file.write_all_at(&buf, at)?;
        Ok(())
    }

    /// Waits while slot `index` is in a range being punched (only a chunk
    /// rewritten right after its early upload ever does).
    fn wait_unless_punching(&self, index: u64) {
        let mut ranges = self.punching.lock().unwrap_or_else(|p| p.into_inner());
        while ranges.iter().any(|r| r.contains(&index)) {
            ranges = self.punched.wait(ranges).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Marks slot `ranges` as about to be punched by [`Stage::finish_punch`]:
    /// from now on writes into them wait for it. Call it under the lock
    /// the writers of this stage take, once the slots' data is elsewhere.
    pub(crate) fn begin_punch(&self, ranges: Vec<std::ops::Range<u64>>) {
        self.punching
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(ranges);
    }

    /// Punches the ranges [`Stage::begin_punch`] marked (blocking; no lock
    /// of the caller's needed), then lets waiting writers on.
    pub(crate) fn finish_punch(&self) {
        let ranges = self
            .punching
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        // A chunk at a time: the punch holds the file's inode lock, which
        // a write into other slots (the writer going on) needs too.
        for r in &ranges {
            let mut at = r.start;
            while at < r.end {
                let end = r.end.min(at + PUNCH_STEP);
                self.punch(at..end);
                at = end;
            }
        }
        self.punching
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|r| !ranges.contains(r));
        self.punched.notify_all();
    }

    /// Reads segment `index` back (exactly what was written).
    pub(crate) fn read(&self, index: u64) -> FsResult<Plaintext> {
        let mut out = Plaintext::with_capacity(SEGMENT_SIZE);
        self.read_into(index, &mut out)?;
        Ok(out)
    }

    /// [`Stage::read`], appending to `out` (a chunk is read into one
    /// buffer); on error `out` is as it was.
    pub(crate) fn read_into(&self, index: u64, out: &mut Plaintext) -> FsResult<()> {
        let at = index.checked_mul(SLOT).ok_or(FsError::TooBig)?;
        let mut len = [0u8; 4];
        self.file.read_exact_at(&mut len, at)?;
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 || len as u64 > SLOT - 4 {
            return Err(corrupt("empty or oversized slot"));
        }
        let mut sealed = vec![0u8; len];
        self.file.read_exact_at(&mut sealed, at + 4)?;
        let f = self.fields(index);
        open_local_append(&self.key, "segment", &[&f[0], &f[1], &f[2]], &sealed, out)?;
        Ok(())
    }

    /// Flushes the slots written so far to disk.
    pub(crate) fn sync(&self) -> FsResult<()> {
        Ok(self.file.sync_data()?)
    }

    /// Releases the disk space of slots `range` (their data is elsewhere
    /// now). Best effort: a filesystem without hole punching keeps them.
    pub(crate) fn punch(&self, range: std::ops::Range<u64>) {
        let (Some(start), Some(end)) = (range.start.checked_mul(SLOT), range.end.checked_mul(SLOT))
        else {
            return;
        };
        if end <= start {
            return;
        }
        let _ = rustix::fs::fallocate(
            &self.file,
            rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE,
            start,
            end - start,
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::cast_possible_truncation)]
mod tests {
    use super::*;
    use common::crypto::attrs::{NodeKind, Timestamp};
    use common::crypto::subkeys::VaultKey;

    fn key() -> LocalKey {
        VaultKey::from_bytes([3; 32]).subkeys().unwrap().local
    }

    fn manifest(node: NodeId) -> Manifest {
        Manifest {
            node,
            epoch: 7,
            base_version: 3,
            size: 200_000,
            base_limit: 100,
            parent: NodeId::from_bytes([1; 16]),
            name: b"notes.txt".to_vec(),
            attrs: {
                let mut a =
                    NodeAttributes::new(NodeKind::File, 0o640, 1000, 1000, Timestamp::now());
                a.size = 200_000;
                a
            },
            staged: vec![(0, 2), (3, 4)],
            uploaded: vec![(
                5,
                ObjectEntry {
                    id: ObjectId::from_bytes([9; 16]),
                    offset: 5 << 22,
                    len: 10,
                    check: ObjectCheck::Digest(ObjectDigest::from_bytes([4; 32])),
                },
            )],
            inline: None,
        }
    }

    /// A new small file's manifest: its one segment inline, nothing staged.
    fn small(node: NodeId, len: usize) -> Manifest {
        let mut m = manifest(node);
        m.epoch = 0;
        m.size = len as u64;
        m.attrs.size = len as u64;
        m.staged.clear();
        m.uploaded.clear();
        m.inline = Some(Inline {
            seg: 0,
            data: Plaintext::new(vec![0x5a; len]),
        });
        m
    }

    #[test]
    fn manifests_carry_seed_commitments_and_the_old_layout_still_reads() {
        use common::crypto::content::ObjectSeed;
        let mut m = manifest(NodeId::from_bytes([4; 16]));
        let digest_only = m.encode().unwrap();
        assert_eq!(&digest_only[..4], MANIFEST_MAGIC);
        assert_eq!(Manifest::decode(&digest_only).unwrap(), m);
        // The same manifest as a version 1 client wrote it: its one
        // uploaded entry (last, no inline segment) without the tag byte.
        let mut v1 = digest_only.to_vec();
        v1[..4].copy_from_slice(MANIFEST_MAGIC_V1);
        let tag_at = v1.len() - 32 - 1;
        assert_eq!(v1.remove(tag_at), 1);
        assert_eq!(Manifest::decode(&v1).unwrap(), m);
        // A seed entry round-trips, and so does it next to an inline segment.
        m.uploaded[0].1.check = ObjectCheck::Seed(ObjectSeed::from_bytes([6; 24]));
        assert_eq!(Manifest::decode(&m.encode().unwrap()).unwrap(), m);
        m.inline = small(m.node, 10).inline;
        let bytes = m.encode().unwrap();
        assert_eq!(&bytes[..4], MANIFEST_MAGIC_INLINE);
        assert_eq!(Manifest::decode(&bytes).unwrap(), m);
    }

    #[test]
    fn a_small_files_segment_rides_in_its_manifest() {
        use std::os::unix::fs::MetadataExt as _;
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), key(), 0).unwrap();
        let tiny = small(NodeId::from_bytes([1; 16]), 100);
        assert_eq!(j.write_manifest(&tiny, None, false, None).unwrap(), Some(0));
        // Several pages, still in one slot: saved again in place, in the
        // other slot, then the first again.
        let node = NodeId::from_bytes([2; 16]);
        let path = j.manifest_path(node);
        let m = small(node, 5000);
        assert_eq!(j.write_manifest(&m, None, false, None).unwrap(), Some(0));
        assert_eq!(fs::metadata(&path).unwrap().len(), 2 * PAGE as u64);
        let inode = fs::metadata(&path).unwrap().ino();
        let mut later = m.clone();
        later.attrs.mode = 0o600;
        assert_eq!(
            j.write_manifest(&later, None, false, Some(0)).unwrap(),
            Some(1)
        );
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            (slots::SLOT_BYTES + 2 * PAGE) as u64
        );
        let mut latest = later.clone();
        latest.attrs.mode = 0o400;
        assert_eq!(
            j.write_manifest(&latest, None, false, Some(1)).unwrap(),
            Some(2)
        );
        assert_eq!(fs::metadata(&path).unwrap().ino(), inode, "in place");
        let mut got = j.manifests().unwrap();
        got.sort_by_key(|m| m.node);
        assert_eq!(got, vec![tiny, latest]);
        // Neither has a stage file, and nothing is plaintext.
        for e in fs::read_dir(dir.path()).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(!name.ends_with(".stage"), "{name}");
            if e.file_type().unwrap().is_file() {
                let bytes = fs::read(e.path()).unwrap();
                assert!(!bytes.windows(16).any(|w| w == [0x5a; 16]), "{name}");
            }
        }
    }

    #[test]
    fn a_first_manifest_cut_short_between_its_pages_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), key(), 0).unwrap();
        let node = NodeId::from_bytes([3; 16]);
        j.write_manifest(&small(node, 9000), None, false, None)
            .unwrap();
        let path = j.manifest_path(node);
        let full = fs::read(&path).unwrap();
        assert_eq!(full.len(), 3 * PAGE);
        // A kill between pages: the head promises more than is there.
        fs::write(&path, &full[..PAGE]).unwrap();
        assert_eq!(slots::slots(&full[..PAGE]), vec![slots::Slot::CutShort]);
        assert_eq!(j.manifests().unwrap(), vec![]);
        assert!(!path.exists());
        // The same bytes whole read back.
        fs::write(&path, &full).unwrap();
        assert_eq!(j.manifests().unwrap().len(), 1);
    }

    /// A save in place cut short, or mixed with the slot's old pages, by a
    /// kill leaves the save before it, whole in the other slot.
    #[test]
    fn a_save_in_place_cut_by_a_kill_leaves_the_one_before() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), key(), 0).unwrap();
        let node = NodeId::from_bytes([4; 16]);
        let path = j.manifest_path(node);
        let mut saves = Vec::new();
        let mut last = None;
        for mode in [0o600, 0o640, 0o644] {
            let mut m = small(node, 9000);
            m.attrs.mode = mode;
            last = j.write_manifest(&m, None, false, last).unwrap();
            saves.push(m);
        }
        assert_eq!(last, Some(2));
        let whole = fs::read(&path).unwrap();
        assert_eq!(j.manifests().unwrap(), vec![saves[2].clone()]);
        // Save 3 (slot 1) cut after its first page.
        let mut m = small(node, 9000);
        m.attrs.mode = 0o400;
        j.write_manifest(&m, None, false, last).unwrap();
        let after = fs::read(&path).unwrap();
        let mut cut = after.clone();
        cut.truncate(slots::SLOT_BYTES + PAGE);
        cut[..slots::SLOT_BYTES].copy_from_slice(&whole[..slots::SLOT_BYTES]);
        fs::write(&path, &cut).unwrap();
        assert_eq!(j.manifests().unwrap(), vec![saves[2].clone()]);
        // Save 3 with its first page written over save 1's other pages.
        let mut mixed = whole.clone();
        mixed[slots::SLOT_BYTES..slots::SLOT_BYTES + PAGE]
            .copy_from_slice(&after[slots::SLOT_BYTES..slots::SLOT_BYTES + PAGE]);
        fs::write(&path, &mixed).unwrap();
        assert_eq!(j.manifests().unwrap(), vec![saves[2].clone()]);
        // Whole, save 3 wins over save 2.
        fs::write(&path, &after).unwrap();
        assert_eq!(j.manifests().unwrap(), vec![m]);
        // A slot's number cannot be changed unseen: save 1 claiming to be
        // save 5 is refused, and save 2 read.
        let mut renumbered = whole;
        renumbered[slots::SLOT_BYTES + 8..slots::SLOT_BYTES + 16]
            .copy_from_slice(&5u64.to_be_bytes());
        fs::write(&path, &renumbered).unwrap();
        assert_eq!(j.manifests().unwrap(), vec![saves[2].clone()]);
    }

    #[test]
    fn stage_slots_round_trip_and_stay_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), key(), 0).unwrap();
        let node = NodeId::from_bytes([5; 16]);
        let s = j.stage(node, 1).unwrap();
        s.write(0, b"first").unwrap();
        s.write(1000, &vec![7u8; SEGMENT_SIZE]).unwrap();
        assert_eq!(s.read(0).unwrap().as_slice(), b"first");
        assert_eq!(
            s.read(1000).unwrap().as_slice(),
            vec![7u8; SEGMENT_SIZE].as_slice()
        );
        assert!(s.read(1).is_err(), "a hole is not a segment");
        // A slot copied to another index does not open there.
        let mut raw = vec![0u8; SLOT as usize];
        s.file.read_exact_at(&mut raw, 0).unwrap();
        s.file.write_all_at(&raw, 2 * SLOT).unwrap();
        assert!(s.read(2).is_err());
        // Another epoch's stage cannot read this one's slots.
        let path = j.stage_path(node, 1);
        fs::copy(&path, j.stage_path(node, 2)).unwrap();
        assert!(j.stage(node, 2).unwrap().read(0).is_err());
        // Nothing written is plaintext.
        let bytes = fs::read(&path).unwrap();
        assert!(!bytes.windows(5).any(|w| w == b"first"));
        s.punch(1000..1001);
        assert!(s.read(1000).is_err());
    }

    #[test]
    fn chunks_held_in_memory_are_bounded_for_the_whole_mount() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), key(), 0).unwrap();
        let mut slots: Vec<HeldSlot> = (0..HELD_CHUNKS).map_while(|_| j.hold_slot()).collect();
        assert_eq!(slots.len(), HELD_CHUNKS);
        assert!(j.hold_slot().is_none(), "more than the budget");
        // A slot dropped (a chunk uploaded or spilled) is free again.
        slots.pop();
        let again = j.hold_slot();
        assert!(again.is_some());
        assert!(j.hold_slot().is_none());
        drop(again);
        drop(slots);
        assert_eq!(j.held.load(Ordering::Acquire), 0);
    }

    #[test]
    fn a_slot_written_while_its_range_is_being_punched_waits_and_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), key(), 0).unwrap();
        let s = Arc::new(j.stage(NodeId::from_bytes([5; 16]), 1).unwrap());
        for i in 0..4 {
            s.write(i, b"old").unwrap();
        }
        s.begin_punch(std::iter::once(0..2).collect());
        // Outside the range: goes on at once.
        s.write(3, b"other").unwrap();
        let writer = {
            let s = s.clone();
            std::thread::spawn(move || s.write(1, b"new").unwrap())
        };
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(
            !writer.is_finished(),
            "the write did not wait for the punch"
        );
        s.finish_punch();
        writer.join().unwrap();
        assert!(s.read(0).is_err(), "punched");
        assert_eq!(
            s.read(1).unwrap().as_slice(),
            b"new",
            "written after the punch"
        );
        assert_eq!(s.read(2).unwrap().as_slice(), b"old");
        assert_eq!(s.read(3).unwrap().as_slice(), b"other");
        // Nothing is marked any more: writes go on.
        s.write(0, b"again").unwrap();
        assert_eq!(s.read(0).unwrap().as_slice(), b"again");
    }

    #[test]
    fn a_slot_reads_into_the_end_of_a_buffer_and_a_bad_one_leaves_it_alone() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), key(), 0).unwrap();
        let s = j.stage(NodeId::from_bytes([5; 16]), 1).unwrap();
        s.write(0, b"abc").unwrap();
        s.write(1, b"def").unwrap();
        let mut out = Plaintext::new(b"x".to_vec());
        s.read_into(0, &mut out).unwrap();
        s.read_into(1, &mut out).unwrap();
        assert_eq!(out.as_slice(), b"xabcdef");
        // A slot that fails authentication appends nothing.
        // Length, version, salt, then the 3 bytes of "def": flip one.
        let mut raw = vec![0u8; 4 + 1 + 24 + 3];
        s.file.read_exact_at(&mut raw, SLOT).unwrap();
        raw[30] ^= 1;
        s.file.write_all_at(&raw, SLOT).unwrap();
        assert!(s.read_into(1, &mut out).is_err());
        assert_eq!(out.as_slice(), b"xabcdef");
    }

    #[test]
    fn manifests_round_trip_and_tampering_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), key(), 0).unwrap();
        let node = NodeId::from_bytes([5; 16]);
        let m = manifest(node);
        j.write_manifest(&m, None, true, None).unwrap();
        assert_eq!(j.manifests().unwrap(), vec![m.clone()]);
        let raw = fs::read(dir.path().join(format!("{node}.manifest"))).unwrap();
        assert!(!raw.windows(9).any(|w| w == b"notes.txt"));
        // Moved to another node's name: refused and left alone.
        let other = NodeId::from_bytes([6; 16]);
        fs::write(dir.path().join(format!("{other}.manifest")), &raw).unwrap();
        assert_eq!(j.manifests().unwrap(), vec![m]);
        j.remove(node, 7, true).unwrap();
        fs::remove_file(dir.path().join(format!("{other}.manifest"))).unwrap();
        assert!(j.manifests().unwrap().is_empty());
    }

    #[test]
    fn remove_takes_the_current_stage_and_a_restart_sweeps_left_over_ones() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), key(), 0).unwrap();
        let node = NodeId::from_bytes([5; 16]);
        let orphan = NodeId::from_bytes([6; 16]);
        let mut m = manifest(node);
        m.epoch = 2;
        j.stage(node, 1).unwrap().write(0, b"a").unwrap();
        j.stage(node, 2).unwrap().write(0, b"b").unwrap();
        j.stage(orphan, 7).unwrap().write(0, b"c").unwrap();
        j.write_manifest(&m, None, false, None).unwrap();

        // A restart keeps the stage the manifest names, and only it.
        assert_eq!(j.manifests().unwrap(), vec![m]);
        assert!(!j.stage_path(node, 1).exists());
        assert!(j.stage_path(node, 2).exists());
        assert!(!j.stage_path(orphan, 7).exists());

        j.remove(node, 2, true).unwrap();
        assert!(!j.stage_path(node, 2).exists());
        assert!(!j.manifest_path(node).exists());
        // Removing again (or with no stage) is fine.
        j.remove(node, 2, true).unwrap();
        j.remove(node, 0, true).unwrap();
        let left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["free"], "only the pool is left");
        // The removed files went to the pool, and come back from it.
        assert_eq!(fs::read_dir(dir.path().join("free")).unwrap().count(), 2);
        j.stage(node, 9).unwrap();
        j.write_manifest(&manifest(node), None, false, None)
            .unwrap();
        assert_eq!(fs::read_dir(dir.path().join("free")).unwrap().count(), 0);
    }

    #[test]
    fn a_manifest_is_saved_in_place_and_a_big_or_durable_one_replaced() {
        use std::os::unix::fs::MetadataExt as _;
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), key(), 0).unwrap();
        let node = NodeId::from_bytes([5; 16]);
        let path = j.manifest_path(node);
        let mut m = manifest(node);
        // The first save makes the file; the next may follow in place.
        assert_eq!(j.write_manifest(&m, None, false, None).unwrap(), Some(0));
        let inode = fs::metadata(&path).unwrap().ino();
        assert_eq!(fs::metadata(&path).unwrap().len(), PAGE as u64);
        m.size = 7;
        m.attrs.size = 7;
        assert_eq!(j.write_manifest(&m, None, false, Some(0)).unwrap(), Some(1));
        assert_eq!(
            fs::metadata(&path).unwrap().ino(),
            inode,
            "written in place"
        );
        assert_eq!(j.manifests().unwrap(), vec![m.clone()]);
        // A durable save is never followed in place: it is a new file, and
        // says so.
        m.size = 8;
        m.attrs.size = 8;
        assert_eq!(j.write_manifest(&m, None, true, Some(1)).unwrap(), None);
        let durable = fs::metadata(&path).unwrap().ino();
        assert_ne!(durable, inode);
        assert_eq!(j.manifests().unwrap(), vec![m.clone()]);
        // Nor is a file whose last save the caller does not know (a save
        // that failed after it): replaced by a new file.
        m.size = 9;
        m.attrs.size = 9;
        assert_eq!(j.write_manifest(&m, None, false, None).unwrap(), Some(0));
        assert_ne!(fs::metadata(&path).unwrap().ino(), durable);
        assert_eq!(j.manifests().unwrap(), vec![m.clone()]);
        // Too big for a slot: written whole, never followed in place.
        m.uploaded = (0..300)
            .map(|k| {
                (
                    k,
                    ObjectEntry {
                        id: ObjectId::from_bytes([9; 16]),
                        offset: k << 22,
                        len: 10,
                        check: ObjectCheck::Digest(ObjectDigest::from_bytes([4; 32])),
                    },
                )
            })
            .collect();
        assert_eq!(j.write_manifest(&m, None, false, Some(0)).unwrap(), None);
        assert!(fs::metadata(&path).unwrap().len() > slots::SLOT_BYTES as u64);
        assert_eq!(j.manifests().unwrap(), vec![m.clone()]);
        m.uploaded.truncate(1);
        assert_eq!(j.write_manifest(&m, None, false, None).unwrap(), Some(0));
        assert_eq!(j.manifests().unwrap(), vec![m]);
        // The file holds no plaintext name.
        let raw = fs::read(&path).unwrap();
        assert!(!raw.windows(9).any(|w| w == b"notes.txt"));
    }

    /// Manifests written by the version before slots (one sealed page, or
    /// the sealed bytes alone) are still read back after an upgrade.
    #[test]
    fn manifests_of_the_older_layout_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), key(), 0).unwrap();
        let (a, b) = (NodeId::from_bytes([6; 16]), NodeId::from_bytes([7; 16]));
        let old = |m: &Manifest| {
            seal_local(
                &j.key,
                "manifest",
                &[m.node.as_bytes()],
                &m.encode().unwrap(),
            )
            .unwrap()
        };
        let (ma, mb) = (manifest(a), small(b, 9000));
        fs::write(j.manifest_path(a), to_page(&old(&ma)).unwrap()).unwrap();
        fs::write(j.manifest_path(b), old(&mb)).unwrap();
        let mut got = j.manifests().unwrap();
        got.sort_by_key(|m| m.node);
        assert_eq!(got, vec![ma, mb]);
    }

    #[test]
    fn a_record_change_is_rewritten_in_place_and_its_file_reused() {
        use std::os::unix::fs::MetadataExt as _;
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), key(), 0).unwrap();
        let node = NodeId::from_bytes([5; 16]);
        let path = j.page_file(node, PageFile::Record);
        j.write_page(node, PageFile::Record, b"first change")
            .unwrap();
        let inode = fs::metadata(&path).unwrap().ino();
        j.write_page(node, PageFile::Record, b"second").unwrap();
        assert_eq!(fs::metadata(&path).unwrap().ino(), inode, "in place");
        assert_eq!(
            j.pages(PageFile::Record).unwrap(),
            vec![(node, b"second".to_vec())]
        );
        // Removed into the pool, and the next change takes it from there.
        j.remove_page(node, PageFile::Record).unwrap();
        assert!(j.pages(PageFile::Record).unwrap().is_empty());
        let other = NodeId::from_bytes([6; 16]);
        j.write_page(other, PageFile::Record, b"other").unwrap();
        assert_eq!(
            fs::metadata(j.page_file(other, PageFile::Record))
                .unwrap()
                .ino(),
            inode
        );
        assert_eq!(
            j.pages(PageFile::Record).unwrap(),
            vec![(other, b"other".to_vec())]
        );
    }

    #[test]
    fn records_of_older_runs_and_cut_short_ones_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), key(), 0).unwrap();
        // An older version wrote the sealed change whole.
        let old = NodeId::from_bytes([5; 16]);
        fs::write(j.page_file(old, PageFile::Record), b"sealed whole").unwrap();
        // A run that ended between taking the file and writing it.
        let empty = NodeId::from_bytes([6; 16]);
        fs::write(j.page_file(empty, PageFile::Record), b"").unwrap();
        fs::write(dir.path().join(format!("{empty}.record.tmp")), b"x").unwrap();
        assert_eq!(
            j.pages(PageFile::Record).unwrap(),
            vec![(old, b"sealed whole".to_vec())]
        );
        assert!(!j.page_file(empty, PageFile::Record).exists());
        assert!(!dir.path().join(format!("{empty}.record.tmp")).exists());
    }

    #[test]
    fn pages_parse_back_and_odd_ones_are_not_pages() {
        let page = to_page(b"sealed bytes").unwrap();
        assert_eq!(page.len(), PAGE);
        assert_eq!(from_page(&page), Some(&b"sealed bytes"[..]));
        assert!(to_page(&vec![1; PAGE - PAGE_HEAD]).is_some());
        assert!(to_page(&vec![1; PAGE - PAGE_HEAD + 1]).is_none());
        assert_eq!(from_page(&page[..PAGE - 1]), None);
        let mut bad = page.clone();
        bad[..4].copy_from_slice(b"XXXX");
        assert_eq!(from_page(&bad), None);
        let mut long = page;
        long[4..8].copy_from_slice(&(PAGE as u32).to_be_bytes());
        assert_eq!(from_page(&long), None);
        assert_eq!(paged(&long), Paged::CutShort);
        // Several pages.
        let two = to_pages(&[7; PAGE]).unwrap();
        assert_eq!(two.len(), 2 * PAGE);
        assert_eq!(from_page(&two), Some(&[7; PAGE][..]));
        assert_eq!(paged(b"raw sealed bytes"), Paged::Raw);
    }

    #[test]
    fn a_first_manifest_cut_short_before_its_write_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), key(), 0).unwrap();
        // The first manifest of a file is written in place into a file of
        // the pool; a run that ended between the two left it empty.
        let retired = dir.path().join("retired");
        fs::write(&retired, b"old").unwrap();
        j.pool.retire(&retired).unwrap();
        let node = NodeId::from_bytes([3; 16]);
        let m = manifest(node);
        assert_eq!(j.write_manifest(&m, None, false, None).unwrap(), Some(0));
        assert_eq!(j.pool.len(), 0, "the pool's file was used");
        assert_eq!(j.manifests().unwrap(), vec![m]);
        let empty = NodeId::from_bytes([4; 16]);
        fs::write(j.manifest_path(empty), b"").unwrap();
        assert_eq!(j.manifests().unwrap().len(), 1);
        assert!(!j.manifest_path(empty).exists());
        assert_eq!(j.pool.len(), 1, "back in the pool");
    }

    #[test]
    fn the_stages_of_an_unreadable_manifest_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), key(), 0).unwrap();
        let node = NodeId::from_bytes([8; 16]);
        j.stage(node, 3).unwrap().write(0, b"a").unwrap();
        fs::write(j.manifest_path(node), b"not a sealed manifest").unwrap();
        assert!(j.manifests().unwrap().is_empty());
        assert!(j.stage_path(node, 3).exists());
    }

    #[test]
    fn stage_names_parse_back() {
        let node = NodeId::from_bytes([9; 16]);
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), key(), 0).unwrap();
        let path = j.stage_path(node, 0xfeed);
        let name = path.file_name().unwrap().to_str().unwrap();
        assert_eq!(parse_stage_name(name), Some((node, 0xfeed)));
        assert_eq!(parse_stage_name("x.manifest"), None);
        assert_eq!(parse_stage_name("zz.1.stage"), None);
    }
}
