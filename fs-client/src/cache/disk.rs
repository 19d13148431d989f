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
//!     <hex>.<n>.tmp an object being written, or one being deleted
//! ```
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
//! - **The bound.** Before an object is published, least recently used
//!   objects are evicted until it fits, and their files are deleted before
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
        for object in found {
            index.insert(object.id, object.size);
        }
        let cache = Self {
            objects,
            capacity: capacity_bytes,
            index: Mutex::new(index),
            tmp_counter: AtomicU64::new(0),
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
        let tmp = self.tmp_path(id);
        if let Err(e) = write_new_file(&tmp, ciphertext) {
            remove_quietly(&tmp);
            return Err(e);
        }
        let (published, mut trash) = {
            let mut index = self.lock_index();
            if index.entries.contains_key(&id) {
                // A concurrent insert of the same object won.
                (Ok(false), Vec::new())
            } else {
                let trash = self.evict_until(&mut index, size);
                match fs::rename(&tmp, self.object_path(id)) {
                    Ok(()) => {
                        index.insert(id, size);
                        (Ok(true), trash)
                    }
                    Err(e) => (Err(e), trash),
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
                Some(_) => self.retire(id)?,
                None => None,
            }
        };
        match trash {
            Some(path) => remove_file_if_exists(&path),
            None => Ok(()),
        }
    }

    /// The bytes of the objects in the index (their files' sizes).
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
        match read_file_range(&self.object_path(id), entry.size, offset, len) {
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
            index.remove(id);
            match self.retire(id) {
                Ok(trash) => trash,
                Err(e) => {
                    tracing::warn!(object = %id, error = %e, "cannot delete a cache file");
                    None
                }
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
            let Some(victim) = index.pop_lru() else { break };
            match self.retire(victim) {
                Ok(path) => trash.extend(path),
                Err(e) => tracing::warn!(object = %victim, error = %e, "cannot evict a cache file"),
            }
        }
        trash
    }

    /// Moves the real-named file of `id` out of the way (call with the index
    /// locked, after removing the entry). Returns the path to unlink later,
    /// or None if there was no file.
    ///
    /// Should the rename fail for another reason, unlinks the file in place.
    fn retire(&self, id: ObjectId) -> io::Result<Option<PathBuf>> {
        let real = self.object_path(id);
        let trash = self.tmp_path(id);
        match fs::rename(&real, &trash) {
            Ok(()) => Ok(Some(trash)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(_) => remove_file_if_exists(&real).map(|()| None),
        }
    }

    fn object_path(&self, id: ObjectId) -> PathBuf {
        self.objects.join(id.to_string())
    }

    /// A fresh `*.tmp` path, for writing or retiring object `id`.
    fn tmp_path(&self, id: ObjectId) -> PathBuf {
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        self.objects.join(format!("{id}.{n}{TMP_SUFFIX}"))
    }
}

/// One cached object in the index.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Length of the object (and of its file) in bytes.
    size: u64,
    /// Position in the recency order: larger is more recent.
    tick: u64,
    /// Unique per insertion, so a failed read drops only what it read.
    generation: u64,
}

/// The objects on disk, their sizes and recency. Invariants: `order` holds
/// exactly one `(tick, id)` per entry, and `used` is the sum of the sizes.
#[derive(Debug, Default)]
struct Index {
    entries: HashMap<ObjectId, Entry>,
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

    /// Adds (or replaces) an entry as the most recently used.
    fn insert(&mut self, id: ObjectId, size: u64) {
        self.remove(id);
        let tick = self.next_tick();
        self.entries.insert(
            id,
            Entry {
                size,
                tick,
                generation: tick,
            },
        );
        self.order.insert(tick, id);
        self.used = self.used.saturating_add(size);
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

    fn remove(&mut self, id: ObjectId) -> Option<Entry> {
        let entry = self.entries.remove(&id)?;
        self.order.remove(&entry.tick);
        self.used = self.used.saturating_sub(entry.size);
        Some(entry)
    }

    /// Removes and returns the least recently used entry.
    fn pop_lru(&mut self) -> Option<ObjectId> {
        let (_, id) = self.order.pop_first()?;
        if let Some(entry) = self.entries.remove(&id) {
            self.used = self.used.saturating_sub(entry.size);
        }
        Some(id)
    }
}

/// An object file found at open.
struct Found {
    id: ObjectId,
    size: u64,
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
        let id = dirent
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<ObjectId>().ok());
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
        let modified = meta.modified().unwrap_or(UNIX_EPOCH);
        let accessed = meta.accessed().unwrap_or(UNIX_EPOCH);
        found.push(Found {
            id,
            size: meta.len(),
            last_used: modified.max(accessed),
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
