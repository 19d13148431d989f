//! Empty files the journal uses again instead of creating and deleting one
//! per pending file.
//!
//! Every small file written through the mount used to cost the journal a
//! new stage file and a new manifest, both deleted once the file was
//! committed: thousands of inodes made and freed per second during an
//! untar or rsync, and on ext4 (most of all without its journal) inode
//! allocation then scans past every recently freed one. Here a committed
//! file's journal files are renamed into `free/` and emptied, and the next
//! new stage file or manifest is renamed out of it: no inode is made or
//! freed while the pool lasts.
//!
//! The pool is also kept stocked ahead of need: when a file is taken and
//! it holds fewer than three quarters of its `spare` files, a background
//! thread (at a lower priority) makes empty files until it holds `spare`
//! again, but only while nothing is being taken: it waits for [`QUIET`]
//! without a take before each file it makes. During a burst the files it
//! made would cost what the burst's own do (an inode each), and making
//! them alongside doubled the contention: in a `cp -r` of 10k small files
//! into a fresh mount, the filler was the daemon's busiest thread (24% of
//! the machine's CPU) and the copy took twice as long. A burst of new files (`cp -r`, an untar) then takes its
//! manifests from the pool instead of allocating an inode on the `close`
//! path: in a profile of `cp -r` of 10k small files into a fresh mount,
//! `ext4_create` was 30% of the daemon's CPU, every bit of it between the
//! `close` and its answer. Not at open: the first stocking of a new
//! journal made a 1 GiB write right after the mount slower (5.7-7.4 s
//! against 5.4-5.5 s); the pool is only needed once files are being
//! created, and it keeps what commits retire.
//!
//! Invariants: a file in the pool is empty and nobody has it open (the
//! caller only retires a stage file no descriptor uses; see
//! `Journal::remove`; the filler adds a file only once it is made).
//! Taking never replaces an existing file (rename with
//! `RENAME_NOREPLACE`). The pool holds at most [`POOL_MAX`] files; beyond
//! that a retired file is deleted. Files left in `free/` by an earlier run
//! are adopted at open (emptied again, in case a crash came between the
//! rename and the truncation).

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::fs::{CWD, RenameFlags, renameat_with};

/// Most empty files kept: as many as an untar or rsync of a large tree has
/// pending at once, so that it deletes none. With 4096, a 20k-file untar
/// deleted most of its 40k journal files, and on ext4 without a journal
/// (the bench machine's) each new inode after that scans past the ones
/// freed in the last minutes (`recently_deleted`: a third of the daemon's
/// CPU in a perf profile of the untar). On that disk, 20k rounds of
/// creating two files and deleting two made 500 rounds earlier took 29.5
/// s; renaming them into a pool instead, 8.4 s. An empty file costs an
/// inode and no data block.
pub(crate) const POOL_MAX: usize = 1 << 16;
/// The filler thread's nice value.
const FILLER_NICE: i32 = 10;
/// How long the filler waits after the last take before it makes a file.
const QUIET: Duration = Duration::from_millis(200);

/// The pool of empty files in one directory.
#[derive(Debug)]
pub(crate) struct Recycle {
    shared: Arc<Shared>,
    /// Files the pool is kept stocked with (0: it only holds what is
    /// retired).
    spare: usize,
}

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    free: Mutex<Vec<u64>>,
    next: AtomicU64,
    /// A filler thread is running.
    filling: AtomicBool,
    /// When the pool was opened: the origin of `last_take`.
    opened: Instant,
    /// Milliseconds after `opened` of the last take.
    last_take: AtomicU64,
}

impl Recycle {
    /// Opens (creating) the pool in `dir`, adopting the files there, and
    /// keeps it stocked with `spare` files (at most [`POOL_MAX`]).
    pub(crate) fn open(dir: &Path, spare: usize) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let mut free = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let n = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u64>().ok());
            match n {
                Some(n)
                    if free.len() < POOL_MAX
                        && (entry.metadata().is_ok_and(|m| m.len() == 0)
                            || empty(&entry.path()).is_ok()) =>
                {
                    free.push(n);
                }
                _ => {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        let next = free.iter().max().map_or(0, |m| m.saturating_add(1));
        Ok(Self {
            shared: Arc::new(Shared {
                dir: dir.to_path_buf(),
                free: Mutex::new(free),
                next: AtomicU64::new(next),
                filling: AtomicBool::new(false),
                opened: Instant::now(),
                last_take: AtomicU64::new(0),
            }),
            spare: spare.min(POOL_MAX),
        })
    }

    /// Starts the filler when the pool is below three quarters of its
    /// spare files and no filler runs.
    fn stock(&self) {
        let spare = self.spare;
        if spare == 0
            || self.shared.free().len() >= spare - spare / 4
            || self.shared.filling.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let shared = self.shared.clone();
        let started = std::thread::Builder::new()
            .name("journal-pool".into())
            .spawn(move || {
                // Below the daemon's other threads: this work is ahead of
                // need. (On Linux the "process" here is this thread.)
                let _ = rustix::process::setpriority_process(None, FILLER_NICE);
                if let Err(e) = shared.fill(spare) {
                    tracing::debug!(error = %e, "cannot make spare journal files");
                }
                shared.filling.store(false, Ordering::Release);
            });
        if started.is_err() {
            self.shared.filling.store(false, Ordering::Release);
        }
    }

    /// Takes `path` away (as removing it would) into the pool, emptied.
    /// The caller guarantees nobody has it open. Nothing there is fine.
    pub(crate) fn retire(&self, path: &Path) -> io::Result<()> {
        if self.shared.free().len() >= POOL_MAX {
            return remove_if_present(path);
        }
        let n = self.shared.next.fetch_add(1, Ordering::Relaxed);
        let slot = self.shared.slot(n);
        match fs::rename(path, &slot) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
        if empty(&slot).is_err() {
            return remove_if_present(&slot);
        }
        self.shared.free().push(n);
        Ok(())
    }

    /// Puts an empty file at `path` if the pool has one and nothing is
    /// there yet; the caller then opens `path` as it would have anyway.
    /// True when it did.
    pub(crate) fn take(&self, path: &Path) -> bool {
        self.shared
            .last_take
            .store(self.shared.since_open(), Ordering::Relaxed);
        let taken = self.shared.free().pop();
        self.stock();
        let Some(n) = taken else {
            return false;
        };
        match renameat_with(CWD, self.shared.slot(n), CWD, path, RenameFlags::NOREPLACE) {
            Ok(()) => true,
            // Taken already: the file stays in the pool.
            Err(rustix::io::Errno::EXIST) => {
                self.shared.free().push(n);
                false
            }
            // Gone or unusable: forgotten.
            Err(_) => false,
        }
    }

    /// Files in the pool (for tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shared.free().len()
    }
}

impl Shared {
    fn slot(&self, n: u64) -> PathBuf {
        self.dir.join(n.to_string())
    }

    fn free(&self) -> std::sync::MutexGuard<'_, Vec<u64>> {
        self.free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Milliseconds since the pool was opened.
    fn since_open(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Makes empty files until the pool holds `spare`, each once nothing
    /// was taken for [`QUIET`].
    fn fill(&self, spare: usize) -> io::Result<()> {
        let quiet = u64::try_from(QUIET.as_millis()).unwrap_or(u64::MAX);
        while self.free().len() < spare {
            let since = self
                .since_open()
                .saturating_sub(self.last_take.load(Ordering::Relaxed));
            if since < quiet {
                std::thread::sleep(Duration::from_millis(quiet - since));
                continue;
            }
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(self.slot(n))?;
            self.free().push(n);
        }
        Ok(())
    }
}

fn empty(path: &Path) -> io::Result<()> {
    OpenOptions::new().write(true).open(path)?.set_len(0)
}

pub(crate) fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;

    use super::*;

    #[test]
    fn a_retired_file_comes_back_empty_under_a_new_name() {
        let dir = tempfile::tempdir().unwrap();
        let pool = Recycle::open(&dir.path().join("free"), 0).unwrap();
        let a = dir.path().join("a");
        fs::write(&a, b"old contents").unwrap();
        let inode = fs::metadata(&a).unwrap().ino();
        pool.retire(&a).unwrap();
        assert!(!a.exists());
        assert_eq!(pool.len(), 1);
        // Retiring what is not there is fine.
        pool.retire(&a).unwrap();
        assert_eq!(pool.len(), 1);

        let b = dir.path().join("b");
        pool.take(&b);
        assert_eq!(pool.len(), 0);
        let meta = fs::metadata(&b).unwrap();
        assert_eq!(meta.ino(), inode, "the same inode");
        assert_eq!(meta.len(), 0, "emptied");
        // An empty pool leaves the path alone.
        let c = dir.path().join("c");
        pool.take(&c);
        assert!(!c.exists());
    }

    #[test]
    fn taking_never_replaces_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let pool = Recycle::open(&dir.path().join("free"), 0).unwrap();
        let a = dir.path().join("a");
        fs::write(&a, b"x").unwrap();
        pool.retire(&a).unwrap();
        let b = dir.path().join("b");
        fs::write(&b, b"keep me").unwrap();
        pool.take(&b);
        assert_eq!(fs::read(&b).unwrap(), b"keep me");
        assert_eq!(pool.len(), 1);
    }

    #[test]
    fn files_left_by_an_earlier_run_are_adopted_empty() {
        let dir = tempfile::tempdir().unwrap();
        let free = dir.path().join("free");
        fs::create_dir_all(&free).unwrap();
        fs::write(free.join("7"), b"left over").unwrap();
        fs::write(free.join("junk"), b"?").unwrap();
        let pool = Recycle::open(&free, 0).unwrap();
        assert_eq!(pool.len(), 1);
        assert!(!free.join("junk").exists());
        assert_eq!(fs::metadata(free.join("7")).unwrap().len(), 0);
        // New slots do not collide with adopted ones.
        let a = dir.path().join("a");
        fs::write(&a, b"x").unwrap();
        pool.retire(&a).unwrap();
        assert_eq!(pool.len(), 2);
        assert!(free.join("8").exists());
    }

    /// Waits (up to 10 s) for the pool to hold `n` files.
    fn wait_for(pool: &Recycle, n: usize) -> usize {
        for _ in 0..1000 {
            if pool.len() == n && !pool.shared.filling.load(Ordering::Acquire) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        pool.len()
    }

    #[test]
    fn the_filler_waits_while_files_are_being_taken() {
        let dir = tempfile::tempdir().unwrap();
        let pool = Recycle::open(&dir.path().join("free"), 64).unwrap();
        // A burst: a take every 20 ms for half a second. Without the wait
        // the filler makes all 64 in a few milliseconds, and the burst
        // takes them.
        let mut taken = 0;
        for i in 0..25 {
            taken += usize::from(pool.take(&dir.path().join(format!("t{i}"))));
            std::thread::sleep(Duration::from_millis(20));
        }
        let made = taken + pool.len();
        // (A few, at most, if this thread was held up for longer than the
        // quiet time on a loaded machine.)
        assert!(made < 32, "the filler made {made} files during the burst");
        assert_eq!(wait_for(&pool, 64), 64, "stocked once it is quiet");
    }

    #[test]
    fn the_pool_is_kept_stocked_with_its_spare_files() {
        let dir = tempfile::tempdir().unwrap();
        let free = dir.path().join("free");
        fs::create_dir_all(&free).unwrap();
        fs::write(free.join("3"), b"left over").unwrap();
        let pool = Recycle::open(&free, 8).unwrap();
        assert_eq!(pool.len(), 1, "not stocked at open");
        // The first take starts the filler.
        assert!(pool.take(&dir.path().join("first")));
        assert_eq!(wait_for(&pool, 8), 8, "stocked");
        let mut names: Vec<_> = fs::read_dir(&free)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort_by_key(|n| n.parse::<u64>().unwrap());
        assert_eq!(names, ["4", "5", "6", "7", "8", "9", "10", "11"]);
        assert!(
            names
                .iter()
                .all(|n| fs::metadata(free.join(n)).unwrap().len() == 0)
        );

        // Taking one leaves it above three quarters: no refill yet.
        assert!(pool.take(&dir.path().join("a")));
        assert_eq!(wait_for(&pool, 7), 7);
        // Below three quarters (5 < 6): filled back to 8.
        assert!(pool.take(&dir.path().join("b")));
        assert!(pool.take(&dir.path().join("c")));
        assert_eq!(wait_for(&pool, 8), 8, "refilled");
        assert_eq!(fs::read_dir(&free).unwrap().count(), 8);
        assert_eq!(fs::read(dir.path().join("first")).unwrap(), b"", "emptied");
    }
}
