//! The on-disk cache of ciphertext objects, bounded in bytes, evicting the
//! least recently used object first, and kept across mounts.
//!
//! # Layout
//!
//! ```text
//! <dir>/            mode 0700
//!   lock            held with an exclusive `flock` while a DiskCache is open
//!   objects/        mode 0700
//!     <32 hex>      one ciphertext object, mode 0600, named by its ObjectId
//!     pack-<16 hex> several small objects written together (`pack.rs`)
//!     <name>.<n>.tmp an object or pack being written, or being deleted
//! ```
//!
//! [`DiskCache::insert_many`] writes the small objects of one commit as one
//! pack: one new file instead of one per object (in a profile of `cp` of
//! 10k small files, creating a cache file per object was most of the
//! daemon's CPU, in ext4's inode allocator). Each object in a pack is its
//! own entry in the index (looked up, touched and evicted on its own); the
//! pack's file goes when its last entry does, and until then all of its
//! bytes count against the bound.
//!
//! Only ciphertext is ever written here: what the server stores, byte for
//! byte. The caller authenticates everything it reads back (AEAD tags and
//! digests), so this module need not fsync, and a torn or tampered file costs
//! a refetch, never a wrong plaintext.
//!
//! # Invariants
//!
//! - **A real name is always complete.** An object is written to a fresh
//!   `*.tmp` file (`create_new`, 0600) and renamed into place; a crash leaves
//!   at most a `*.tmp` file, and [`DiskCache::open`] deletes every one of
//!   them. Should a file still be shorter or longer than the index records
//!   (someone truncated it, or the disk lied), reads fail with
//!   [`io::ErrorKind::UnexpectedEof`] / [`io::ErrorKind::InvalidData`] and the
//!   entry is dropped; they never return data of the wrong length.
//! - **The index and the real names agree.** Every change to a real name (the
//!   rename that publishes an object, and the rename that retires one) happens
//!   while the index mutex is held, together with the matching index update.
//!   Retired files are renamed to a unique `*.tmp` name under the lock and
//!   unlinked after it is released, so slow unlinks do not block readers and
//!   an eviction can never delete a file that a concurrent insert of the same
//!   id has just published. A failed read drops its entry only if the entry
//!   still has the generation the reader saw.
//! - **The bound.** Before an object or pack is published, least recently
//!   used objects are evicted until it fits (a pack's bytes are freed only
//!   when its last object goes), and their files are deleted before
//!   `insert` returns. So the objects under real names never total more than
//!   the capacity, and once `insert` returns, the bytes in `objects/` are at
//!   most the capacity plus the `*.tmp` files of inserts still in flight in
//!   other threads (none when single-threaded). Objects larger than the
//!   capacity are not cached.
//! - **One process at a time.** The index lives in memory; two processes
//!   sharing the directory would each keep their own bound and delete each
//!   other's `*.tmp` files. The `lock` file makes a second
//!   [`DiskCache::open`] of the same directory fail with
//!   [`io::ErrorKind::ResourceBusy`] instead.
//! - **LRU order across restarts.** A read sets the file's access time; at
//!   open the files are indexed oldest first by the later of their access and
//!   modification times, so the order roughly survives a remount.
//!
//! A plain mutex-protected index is used rather than `moka`: moka evicts in
//! deferred maintenance tasks, which would make the disk bound approximate;
//! here it is exact. The mutex is never held across reading or writing file
//! contents, only across renames.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::{self, DirBuilder, File, FileTimes, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use common::ObjectId;

use super::pack;

/// The subdirectory holding the objects.
const OBJECTS_DIR: &str = "objects";
/// The lock file in the cache directory.
const LOCK_FILE: &str = "lock";
/// Suffix of files being written or deleted.
const TMP_SUFFIX: &str = ".tmp";
/// Mode of the cache directories.
const DIR_MODE: u32 = 0o700;
/// Mode of every file.
const FILE_MODE: u32 = 0o600;

/// A bounded LRU cache of ciphertext objects in a directory.
///
/// `Send + Sync`; share it in an `Arc`. See the module documentation for
/// the invariants.
pub struct DiskCache {
    /// `<dir>/objects`.
    objects: PathBuf,
    /// The bound on the bytes of cached objects.
    capacity: u64,
    /// Which objects are on disk, their sizes and their recency.
    index: Mutex<Index>,
    /// Makes `*.tmp` names unique within this (sole) user of the directory.
    tmp_counter: AtomicU64,
    /// The number of the next pack (above every pack found at open).
    next_pack: AtomicU64,
    /// Held (flock) for as long as the cache is open.
    _lock: File,
}

impl fmt::Debug for DiskCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let index = self.lock_index();
        f.debug_struct("DiskCache")
            .field("objects", &self.objects)
            .field("capacity", &self.capacity)
            .field("used", &index.used)
            .field("entries", &index.entries.len())
            .finish()
    }
}

impl DiskCache {
    /// Opens (creating it if needed) the cache in `dir`, bounded to
    /// `capacity_bytes` of objects.
    ///
    /// Creates `dir` and `dir/objects` with mode 0700 (tightening existing
    /// ones), takes the directory's lock, deletes leftover `*.tmp` files and
    /// stray entries, indexes the objects found oldest first, and evicts down
    /// to the capacity at once.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::ResourceBusy`] when another `DiskCache` (in this or
    /// another process) has the directory open; any error creating, locking
    /// or listing the directories.
    pub fn open(dir: &Path, capacity_bytes: u64) -> io::Result<Self> {
        create_private_dir(dir)?;
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(dir.join(LOCK_FILE))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::ResourceBusy,
                    format!("the cache {} is in use by another mount", dir.display()),
                ));
            }
            Err(TryLockError::Error(e)) => return Err(e),
        }
        let objects = dir.join(OBJECTS_DIR);
        create_private_dir(&objects)?;

        let mut found = scan(&objects)?;
        found.sort_by(|a, b| a.last_used.cmp(&b.last_used).then(a.id.cmp(&b.id)));
        let mut index = Index::default();
        let mut packs = std::collections::BTreeSet::new();
        for object in found {
            if let Place::Pack { n, .. } = object.place {
                packs.insert(n);
            }
            if index.entries.contains_key(&object.id) {
                // Cached twice (an object evicted from a pack that stayed,
                // then cached again): one copy is enough, and a file of its
                // own that is not indexed would never be deleted.
                if object.place == Place::Own {
                    remove_file_if_exists(&objects.join(object.id.to_string()))?;
                }
                continue;
            }
            index.insert(object.id, object.size, object.place);
        }
        // A pack none of whose objects made it into the index (each was
        // also cached elsewhere) would never be deleted.
        for n in &packs {
            if !index.packs.contains_key(n) {
                remove_file_if_exists(&objects.join(pack::name(*n)))?;
            }
        }
        let next_pack = packs.last().map_or(0, |n| n.saturating_add(1));
        let cache = Self {
            objects,
            capacity: capacity_bytes,
            index: Mutex::new(index),
            tmp_counter: AtomicU64::new(0),
            next_pack: AtomicU64::new(next_pack),
            _lock: lock,
        };
        let trash = {
            let mut index = cache.lock_index();
            cache.evict_until(&mut index, 0)
        };
        unlink_all(trash);
        Ok(cache)
    }

    /// Caches `ciphertext` as object `id`.
    ///
    /// Does nothing when `id` is already cached (ids are never reused for
    /// different content, so the bytes would be the same) or when the object
    /// is larger than the whole capacity. Otherwise evicts least recently used
    /// objects until it fits, deletes their files, and publishes the new file
    /// atomically. The new object becomes the most recently used.
    ///
    /// # Errors
    ///
    /// Any error writing or renaming the file; the cache is then unchanged
    /// apart from evictions already made.
    pub fn insert(&self, id: ObjectId, ciphertext: &[u8]) -> io::Result<()> {
        let size = u64::try_from(ciphertext.len()).map_err(|_| too_large())?;
        if size > self.capacity || self.lock_index().entries.contains_key(&id) {
            return Ok(());
        }
        self.write_and_publish(
            &id.to_string(),
            ciphertext,
            // A concurrent insert of the same object may have won.
            |index| (!index.entries.contains_key(&id)).then_some(()),
            |index, ()| index.insert(id, size, Place::Own),
        )
    }

    /// Caches several objects, written together as one pack file (see the
    /// module note); as [`DiskCache::insert`] for each of them otherwise.
    /// Objects already cached, or larger than the capacity, are left out;
    /// one object left is written as its own file, and so are all of them
    /// should their pack be larger than the capacity. The objects become
    /// the most recently used, in order.
    ///
    /// # Errors
    ///
    /// Any error writing or renaming the file; the cache is then unchanged
    /// apart from evictions already made.
    pub fn insert_many(&self, objects: &[(ObjectId, &[u8])]) -> io::Result<()> {
        let fresh: Vec<(ObjectId, &[u8])> = {
            let index = self.lock_index();
            let mut seen = std::collections::HashSet::new();
            objects
                .iter()
                .filter(|(id, ct)| {
                    (ct.len() as u64) <= self.capacity
                        && !index.entries.contains_key(id)
                        && seen.insert(*id)
                })
                .copied()
                .collect()
        };
        let (bytes, placed) = pack::encode(&fresh)?;
        let size = bytes.len() as u64;
        if fresh.len() < 2 || size > self.capacity {
            for (id, ct) in fresh {
                self.insert(id, ct)?;
            }
            return Ok(());
        }
        let n = self.next_pack.fetch_add(1, Ordering::Relaxed);
        self.write_and_publish(
            &pack::name(n),
            &bytes,
            // Concurrent inserts of the same objects may have won; their
            // bytes stay in the pack unindexed, counted with it.
            |index| {
                let new: Vec<&pack::Placed> = placed
                    .iter()
                    .filter(|p| !index.entries.contains_key(&p.id))
                    .collect();
                (!new.is_empty()).then_some(new)
            },
            |index, new| {
                for p in new {
                    let place = Place::Pack {
                        n,
                        offset: p.offset,
                        file_len: size,
                    };
                    index.insert(p.id, p.len, place);
                }
            },
        )
    }

    /// Writes `data` to a fresh `*.tmp` file, then, with the index locked:
    /// unless `wanted` finds nothing left to publish, evicts until it fits,
    /// renames it to `name` and indexes it with `publish`. The tmp file is
    /// deleted when it is not published.
    fn write_and_publish<T>(
        &self,
        name: &str,
        data: &[u8],
        wanted: impl FnOnce(&Index) -> Option<T>,
        publish: impl FnOnce(&mut Index, T),
    ) -> io::Result<()> {
        let tmp = self.tmp_path(name);
        if let Err(e) = write_new_file(&tmp, data) {
            remove_quietly(&tmp);
            return Err(e);
        }
        let (published, mut trash) = {
            let mut index = self.lock_index();
            match wanted(&index) {
                None => (Ok(false), Vec::new()),
                Some(what) => {
                    let trash = self.evict_until(&mut index, data.len() as u64);
                    match fs::rename(&tmp, self.objects.join(name)) {
                        Ok(()) => {
                            publish(&mut index, what);
                            (Ok(true), trash)
                        }
                        Err(e) => (Err(e), trash),
                    }
                }
            }
        };
        if !matches!(published, Ok(true)) {
            trash.push(tmp);
        }
        unlink_all(trash);
        published.map(|_| ())
    }

    /// Reads `len` bytes at `offset` of object `id`, marking it recently used.
    ///
    /// `Ok(None)` when the object is not cached (or its file has vanished).
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::UnexpectedEof`] when `offset + len` is beyond the end
    /// of the object (the entry is kept: the request was wrong, not the
    /// file), and when the file is shorter than the object (the entry is
    /// dropped); [`io::ErrorKind::InvalidData`] when the file is longer than
    /// the object (dropped too); other I/O errors as they come.
    pub fn read_at(&self, id: ObjectId, offset: u64, len: usize) -> io::Result<Option<Vec<u8>>> {
        let Some(entry) = self.lock_index().touch(id) else {
            return Ok(None);
        };
        let len64 = u64::try_from(len).map_err(|_| too_large())?;
        if offset.checked_add(len64).is_none_or(|end| end > entry.size) {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "read of {len} bytes at {offset} past the end of the {}-byte object {id}",
                    entry.size
                ),
            ));
        }
        self.read_checked(id, entry, offset, len)
    }

    /// Reads the whole of object `id`, marking it recently used.
    ///
    /// `Ok(None)` when the object is not cached.
    ///
    /// # Errors
    ///
    /// As [`DiskCache::read_at`] for a file of the wrong length (the entry
    /// is dropped), and other I/O errors.
    pub fn read_all(&self, id: ObjectId) -> io::Result<Option<Vec<u8>>> {
        let Some(entry) = self.lock_index().touch(id) else {
            return Ok(None);
        };
        let len = usize::try_from(entry.size).map_err(|_| too_large())?;
        self.read_checked(id, entry, 0, len)
    }

    /// Whether object `id` is cached. Does not change its recency.
    pub fn contains(&self, id: ObjectId) -> bool {
        self.lock_index().entries.contains_key(&id)
    }

    /// Drops object `id` and deletes its file, if it is cached.
    ///
    /// # Errors
    ///
    /// An error deleting the file (the entry is gone from the index anyway).
    pub fn remove(&self, id: ObjectId) -> io::Result<()> {
        let trash = {
            let mut index = self.lock_index();
            match index.remove(id) {
                Some((_, Some(file))) => self.retire(file)?,
                _ => None,
            }
        };
        match trash {
            Some(path) => remove_file_if_exists(&path),
            None => Ok(()),
        }
    }

    /// The bytes of the files of the objects in the index (a pack's whole
    /// size while any of its objects is in it).
    pub fn used_bytes(&self) -> u64 {
        self.lock_index().used
    }

    /// The bound given to [`DiskCache::open`].
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// How many objects are cached.
    pub fn len(&self) -> usize {
        self.lock_index().entries.len()
    }

    /// Whether no object is cached.
    pub fn is_empty(&self) -> bool {
        self.lock_index().entries.is_empty()
    }

    /// The index, even if another thread panicked holding it: every update
    /// leaves it consistent, as none of them can panic half way.
    fn lock_index(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads a range of an entry's file, checking the file's length against
    /// the index; drops the entry (if still the same generation) when the
    /// file is missing or of the wrong length.
    fn read_checked(
        &self,
        id: ObjectId,
        entry: Entry,
        offset: u64,
        len: usize,
    ) -> io::Result<Option<Vec<u8>>> {
        let read = match entry.place {
            Place::Own => read_file_range(&self.object_path(id), entry.size, offset, len),
            Place::Pack {
                n,
                offset: at,
                file_len,
            } => read_file_range(
                &self.objects.join(pack::name(n)),
                file_len,
                at.saturating_add(offset),
                len,
            ),
        };
        match read {
            Ok(data) => Ok(Some(data)),
            Err(e) => match e.kind() {
                io::ErrorKind::NotFound => {
                    self.drop_generation(id, entry.generation);
                    Ok(None)
                }
                io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData => {
                    tracing::warn!(object = %id, error = %e, "dropping a damaged cache file");
                    self.drop_generation(id, entry.generation);
                    Err(e)
                }
                _ => Err(e),
            },
        }
    }

    /// Drops entry `id` if it still has `generation`, deleting its file.
    fn drop_generation(&self, id: ObjectId, generation: u64) {
        let trash = {
            let mut index = self.lock_index();
            if index.entries.get(&id).map(|e| e.generation) != Some(generation) {
                return;
            }
            match index.remove(id) {
                Some((_, Some(file))) => match self.retire(file) {
                    Ok(trash) => trash,
                    Err(e) => {
                        tracing::warn!(object = %id, error = %e, "cannot delete a cache file");
                        None
                    }
                },
                _ => None,
            }
        };
        unlink_all(trash);
    }

    /// Evicts least recently used entries until `incoming` more bytes fit,
    /// retiring their files; returns the retired paths to unlink once the
    /// index lock is released. Call with the index locked.
    fn evict_until(&self, index: &mut Index, incoming: u64) -> Vec<PathBuf> {
        let mut trash = Vec::new();
        while index.used.saturating_add(incoming) > self.capacity {
            let Some((victim, file)) = index.pop_lru() else {
                break;
            };
            let Some(file) = file else { continue };
            match self.retire(file) {
                Ok(path) => trash.extend(path),
                Err(e) => tracing::warn!(object = %victim, error = %e, "cannot evict a cache file"),
            }
        }
        trash
    }

    /// Moves a real-named file out of the way (call with the index locked,
    /// after removing the entry, or the pack's last entry). Returns the path
    /// to unlink later, or None if there was no file.
    ///
    /// Should the rename fail for another reason, unlinks the file in place.
    fn retire(&self, file: Retire) -> io::Result<Option<PathBuf>> {
        let name = match file {
            Retire::Object(id) => id.to_string(),
            Retire::Pack(n) => pack::name(n),
        };
        let real = self.objects.join(&name);
        let trash = self.tmp_path(&name);
        match fs::rename(&real, &trash) {
            Ok(()) => Ok(Some(trash)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(_) => remove_file_if_exists(&real).map(|()| None),
        }
    }

    fn object_path(&self, id: ObjectId) -> PathBuf {
        self.objects.join(id.to_string())
    }

    /// A fresh `*.tmp` path, for writing or retiring the file `name`.
    fn tmp_path(&self, name: &str) -> PathBuf {
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        self.objects.join(format!("{name}.{n}{TMP_SUFFIX}"))
    }
}

/// Where a cached object's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Its own file, named by its id.
    Own,
    /// At `offset` in pack `n`, a file of `file_len` bytes (its size in
    /// `Index::packs` too, copied here as a pack never changes, so a read
    /// needs no second lookup).
    Pack { n: u64, offset: u64, file_len: u64 },
}

/// A file to delete once an entry is gone.
#[derive(Debug, Clone, Copy)]
enum Retire {
    Object(ObjectId),
    Pack(u64),
}

/// One cached object in the index.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Length of the object in bytes.
    size: u64,
    place: Place,
    /// Position in the recency order: larger is more recent.
    tick: u64,
    /// Unique per insertion, so a failed read drops only what it read.
    generation: u64,
}

/// The objects on disk, their sizes and recency. Invariants: `order` holds
/// exactly one `(tick, id)` per entry; `packs` holds each pack with at least
/// one entry, and how many; `used` is the sum of the sizes of the entries
/// in their own files and of the packs.
#[derive(Debug, Default)]
struct Index {
    entries: HashMap<ObjectId, Entry>,
    /// Pack number to (file size, entries in it).
    packs: HashMap<u64, (u64, usize)>,
    /// Tick to id, least recently used first.
    order: BTreeMap<u64, ObjectId>,
    used: u64,
    next_tick: u64,
}

impl Index {
    fn next_tick(&mut self) -> u64 {
        let tick = self.next_tick;
        self.next_tick = self.next_tick.saturating_add(1);
        tick
    }

    /// Adds an entry as the most recently used; an id already there is
    /// left as it is (the bytes would be the same).
    fn insert(&mut self, id: ObjectId, size: u64, place: Place) {
        if self.entries.contains_key(&id) {
            return;
        }
        let tick = self.next_tick();
        self.entries.insert(
            id,
            Entry {
                size,
                place,
                tick,
                generation: tick,
            },
        );
        self.order.insert(tick, id);
        match place {
            Place::Own => self.used = self.used.saturating_add(size),
            Place::Pack { n, file_len, .. } => {
                let (_, live) = self.packs.entry(n).or_insert_with(|| {
                    self.used = self.used.saturating_add(file_len);
                    (file_len, 0)
                });
                *live += 1;
            }
        }
    }

    /// Marks an entry most recently used; returns it.
    fn touch(&mut self, id: ObjectId) -> Option<Entry> {
        let tick = self.next_tick();
        let entry = self.entries.get_mut(&id)?;
        self.order.remove(&entry.tick);
        entry.tick = tick;
        self.order.insert(tick, id);
        Some(*entry)
    }

    /// Removes an entry; returns it, and the file to delete with it (its
    /// own, or its pack's when it was the pack's last).
    fn remove(&mut self, id: ObjectId) -> Option<(Entry, Option<Retire>)> {
        let entry = self.entries.remove(&id)?;
        self.order.remove(&entry.tick);
        let file = match entry.place {
            Place::Own => {
                self.used = self.used.saturating_sub(entry.size);
                Some(Retire::Object(id))
            }
            Place::Pack { n, .. } => match self.packs.get_mut(&n) {
                Some((_, live)) if *live > 1 => {
                    *live -= 1;
                    None
                }
                Some(&mut (size, _)) => {
                    self.packs.remove(&n);
                    self.used = self.used.saturating_sub(size);
                    Some(Retire::Pack(n))
                }
                None => None,
            },
        };
        Some((entry, file))
    }

    /// Removes the least recently used entry; returns its id and the file
    /// to delete with it, as [`Index::remove`].
    fn pop_lru(&mut self) -> Option<(ObjectId, Option<Retire>)> {
        let (tick, id) = self.order.first_key_value().map(|(t, id)| (*t, *id))?;
        match self.remove(id) {
            Some((_, file)) => Some((id, file)),
            None => {
                // Not reachable while the invariant holds; never loop on it.
                self.order.remove(&tick);
                Some((id, None))
            }
        }
    }
}

/// An object found at open.
struct Found {
    id: ObjectId,
    size: u64,
    place: Place,
    last_used: SystemTime,
}

/// Lists `objects`, deleting `*.tmp` files and stray files, tightening file
/// modes, and returning the objects.
fn scan(objects: &Path) -> io::Result<Vec<Found>> {
    let mut found = Vec::new();
    for dirent in fs::read_dir(objects)? {
        let dirent = dirent?;
        let path = dirent.path();
        // Does not follow symlinks.
        let meta = dirent.metadata()?;
        let name = dirent.file_name();
        let name = name.to_str();
        let modified = meta.modified().unwrap_or(UNIX_EPOCH);
        let accessed = meta.accessed().unwrap_or(UNIX_EPOCH);
        let last_used = modified.max(accessed);
        if let Some(n) = name.and_then(pack::parse_name).filter(|_| meta.is_file()) {
            let placed = File::open(&path).and_then(|f| pack::read_directory(&f, meta.len()));
            match placed {
                Ok(placed) => {
                    if meta.permissions().mode() & 0o777 != FILE_MODE {
                        fs::set_permissions(&path, fs::Permissions::from_mode(FILE_MODE))?;
                    }
                    found.extend(placed.into_iter().map(|p| Found {
                        id: p.id,
                        size: p.len,
                        place: Place::Pack {
                            n,
                            offset: p.offset,
                            file_len: meta.len(),
                        },
                        last_used,
                    }));
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "dropping a damaged cache pack");
                    remove_file_if_exists(&path)?;
                }
            }
            continue;
        }
        let id = name.and_then(|name| name.parse::<ObjectId>().ok());
        let Some(id) = id.filter(|_| meta.is_file()) else {
            // Leftover `*.tmp` files, and anything else that is not an object.
            if meta.is_dir() {
                tracing::warn!(path = %path.display(), "ignoring a directory in the cache");
            } else {
                remove_file_if_exists(&path)?;
            }
            continue;
        };
        if meta.permissions().mode() & 0o777 != FILE_MODE {
            fs::set_permissions(&path, fs::Permissions::from_mode(FILE_MODE))?;
        }
        found.push(Found {
            id,
            size: meta.len(),
            place: Place::Own,
            last_used,
        });
    }
    Ok(found)
}

/// Creates `dir` (and missing parents) with mode 0700, and sets an existing
/// one to 0700.
fn create_private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    let meta = fs::metadata(dir)?;
    if !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            format!("{} is not a directory", dir.display()),
        ));
    }
    if meta.permissions().mode() & 0o777 != DIR_MODE {
        fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))?;
    }
    Ok(())
}

/// Writes a new 0600 file (never an existing one, nor through a symlink).
fn write_new_file(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)?;
    file.write_all(data)
}

/// Reads `len` bytes at `offset` from a file that must be `size` bytes long,
/// and sets its access time (for the LRU order at the next open).
fn read_file_range(path: &Path, size: u64, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let file = File::open(path)?;
    let actual = file.metadata()?.len();
    if actual < size {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("cache file {} is truncated", path.display()),
        ));
    }
    if actual > size {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("cache file {} is longer than its object", path.display()),
        ));
    }
    let mut data = vec![0u8; len];
    file.read_exact_at(&mut data, offset)?;
    // Only a hint for the order at the next open.
    let _ = file.set_times(FileTimes::new().set_accessed(SystemTime::now()));
    Ok(data)
}

fn remove_file_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn remove_quietly(path: &Path) {
    if let Err(e) = remove_file_if_exists(path) {
        tracing::warn!(path = %path.display(), error = %e, "cannot delete a cache file");
    }
}

fn unlink_all(paths: impl IntoIterator<Item = PathBuf>) {
    for path in paths {
        remove_quietly(&path);
    }
}

fn too_large() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "size does not fit")
}
