//! Tests of the disk and segment caches: round trips, LRU order, the disk
//! bound (counted with `std::fs`, not the index), persistence, damaged and
//! leftover files, modes, a model-based proptest and a concurrency smoke
//! test.

// Test data: small numbers, and byte patterns that truncate on purpose.
#![allow(clippy::cast_possible_truncation)]

use std::collections::VecDeque;
use std::fs::{self, FileTimes, OpenOptions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use common::ObjectId;
use proptest::prelude::*;

use super::{DiskCache, SegmentCache};

fn id(n: u64) -> ObjectId {
    ObjectId::from_bytes(
        u128::from(n)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .to_be_bytes(),
    )
}

/// The content of object `n`: `len` bytes that differ per object.
fn content(n: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (n as usize)
                .wrapping_mul(31)
                .wrapping_add(i.wrapping_mul(7)) as u8
        })
        .collect()
}

fn objects_dir(dir: &Path) -> PathBuf {
    dir.join("objects")
}

fn object_file(dir: &Path, id: ObjectId) -> PathBuf {
    objects_dir(dir).join(id.to_string())
}

/// Every file in `objects/`, as the file system sees it.
fn files(dir: &Path) -> Vec<(String, u64)> {
    let mut out: Vec<_> = fs::read_dir(objects_dir(dir))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let meta = fs::symlink_metadata(e.path()).unwrap();
            (e.file_name().into_string().unwrap(), meta.len())
        })
        .collect();
    out.sort();
    out
}

/// The bytes in `objects/`, as the file system sees them.
fn disk_bytes(dir: &Path) -> u64 {
    files(dir).iter().map(|(_, len)| len).sum()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn disk_cache_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<DiskCache>();
    check::<SegmentCache>();
}

#[test]
fn round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = DiskCache::open(tmp.path(), 10_000).unwrap();
    let data = content(1, 1000);
    assert_eq!(cache.read_at(id(1), 0, 10).unwrap(), None);
    assert_eq!(cache.read_all(id(1)).unwrap(), None);
    assert!(!cache.contains(id(1)));
    assert!(cache.is_empty());

    cache.insert(id(1), &data).unwrap();
    assert!(cache.contains(id(1)));
    assert_eq!(cache.len(), 1);
    assert_eq!(cache.used_bytes(), 1000);
    assert_eq!(cache.capacity(), 10_000);
    assert_eq!(cache.read_all(id(1)).unwrap().unwrap(), data);
    assert_eq!(
        cache.read_at(id(1), 100, 50).unwrap().unwrap(),
        &data[100..150]
    );
    assert_eq!(
        cache.read_at(id(1), 990, 10).unwrap().unwrap(),
        &data[990..]
    );
    assert_eq!(cache.read_at(id(1), 1000, 0).unwrap().unwrap(), b"");
    assert_eq!(
        files(tmp.path()),
        vec![(id(1).to_string(), 1000)],
        "one file named by the id's hex, no temporaries"
    );

    // Past the end: an error, and the (intact) entry stays.
    let err = cache.read_at(id(1), 990, 11).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    let err = cache.read_at(id(1), u64::MAX, 1).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    assert!(cache.contains(id(1)));

    // An empty object.
    cache.insert(id(2), b"").unwrap();
    assert_eq!(cache.read_all(id(2)).unwrap().unwrap(), b"");

    cache.remove(id(1)).unwrap();
    cache.remove(id(1)).unwrap();
    assert!(!cache.contains(id(1)));
    assert_eq!(cache.used_bytes(), 0);
    assert_eq!(cache.read_at(id(1), 0, 1).unwrap(), None);
    assert_eq!(files(tmp.path()), vec![(id(2).to_string(), 0)]);
}

#[test]
fn insert_of_a_cached_id_is_a_no_op() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = DiskCache::open(tmp.path(), 10_000).unwrap();
    cache.insert(id(1), b"first").unwrap();
    cache.insert(id(1), b"other bytes").unwrap();
    assert_eq!(cache.read_all(id(1)).unwrap().unwrap(), b"first");
    assert_eq!(cache.used_bytes(), 5);
    assert_eq!(disk_bytes(tmp.path()), 5);
}

#[test]
fn objects_larger_than_the_capacity_are_not_cached() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = DiskCache::open(tmp.path(), 100).unwrap();
    cache.insert(id(1), &content(1, 60)).unwrap();
    cache.insert(id(2), &content(2, 101)).unwrap();
    assert!(!cache.contains(id(2)));
    assert!(cache.contains(id(1)), "nothing evicted for it either");
    // Exactly the capacity fits, evicting everything else.
    cache.insert(id(3), &content(3, 100)).unwrap();
    assert!(cache.contains(id(3)));
    assert!(!cache.contains(id(1)));
    assert_eq!(disk_bytes(tmp.path()), 100);
}

#[test]
fn least_recently_used_goes_first() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = DiskCache::open(tmp.path(), 300).unwrap();
    for n in 1..=3 {
        cache.insert(id(n), &content(n, 100)).unwrap();
    }
    // Order A B C; reading A makes it B C A.
    cache.read_at(id(1), 0, 1).unwrap().unwrap();
    cache.insert(id(4), &content(4, 100)).unwrap();
    assert!(!cache.contains(id(2)), "B was least recently used");
    assert!(!object_file(tmp.path(), id(2)).exists());
    assert!(cache.contains(id(1)) && cache.contains(id(3)) && cache.contains(id(4)));

    // C A D; `contains` does not count as a use.
    assert!(cache.contains(id(3)));
    cache.insert(id(5), &content(5, 100)).unwrap();
    assert!(!cache.contains(id(3)));

    // A D E; read_all counts as a use: A E D.
    cache.read_all(id(4)).unwrap().unwrap();
    cache.insert(id(6), &content(6, 200)).unwrap();
    assert!(!cache.contains(id(1)) && !cache.contains(id(5)));
    assert!(cache.contains(id(4)) && cache.contains(id(6)));
    assert_eq!(cache.used_bytes(), 300);
    assert_eq!(disk_bytes(tmp.path()), 300);
    assert_eq!(files(tmp.path()).len(), 2);
}

#[test]
fn the_bound_holds_after_every_insert() {
    let tmp = tempfile::tempdir().unwrap();
    let capacity = 10_000;
    let cache = DiskCache::open(tmp.path(), capacity).unwrap();
    let mut rng = 0x1234_5678_u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut max_object = 0;
    for n in 0..400 {
        let len = (next() % 4000) as usize;
        max_object = max_object.max(len as u64);
        cache.insert(id(n), &content(n, len)).unwrap();
        let on_disk = disk_bytes(tmp.path());
        assert!(
            on_disk <= capacity,
            "{on_disk} bytes on disk after insert {n}"
        );
        assert!(on_disk <= capacity + max_object);
        assert_eq!(on_disk, cache.used_bytes());
        // Reads of random earlier objects return the bytes or nothing.
        let m = next() % (n + 1);
        if let Some(data) = cache.read_all(id(m)).unwrap() {
            assert_eq!(data, content(m, data.len()));
            assert_eq!(
                data.len() as u64,
                fs::metadata(object_file(tmp.path(), id(m))).unwrap().len()
            );
        }
    }
    assert!(cache.used_bytes() > capacity / 2, "the cache is in use");
}

#[test]
fn reopen_keeps_entries_and_files() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let cache = DiskCache::open(tmp.path(), 10_000).unwrap();
        for n in 1..=3 {
            cache.insert(id(n), &content(n, 100 * n as usize)).unwrap();
        }
    }
    let cache = DiskCache::open(tmp.path(), 10_000).unwrap();
    assert_eq!(cache.len(), 3);
    assert_eq!(cache.used_bytes(), 600);
    for n in 1..=3 {
        assert_eq!(
            cache.read_all(id(n)).unwrap().unwrap(),
            content(n, 100 * n as usize)
        );
    }
    assert_eq!(disk_bytes(tmp.path()), 600);
}

#[test]
fn reopen_with_a_smaller_capacity_evicts_the_oldest_first() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let cache = DiskCache::open(tmp.path(), 10_000).unwrap();
        for n in 1..=3 {
            cache.insert(id(n), &content(n, 100)).unwrap();
        }
    }
    // Last used: B long ago, C a while ago, A recently.
    let now = SystemTime::now();
    for (n, ago) in [(1, 10), (2, 1000), (3, 100)] {
        let t = now - Duration::from_secs(ago);
        let file = OpenOptions::new()
            .write(true)
            .open(object_file(tmp.path(), id(n)))
            .unwrap();
        file.set_times(FileTimes::new().set_accessed(t).set_modified(t))
            .unwrap();
    }
    let cache = DiskCache::open(tmp.path(), 200).unwrap();
    assert!(!cache.contains(id(2)));
    assert!(!object_file(tmp.path(), id(2)).exists());
    assert!(cache.contains(id(1)) && cache.contains(id(3)));
    assert_eq!(disk_bytes(tmp.path()), 200);
    // And C is still older than A.
    cache.insert(id(4), &content(4, 100)).unwrap();
    assert!(!cache.contains(id(3)) && cache.contains(id(1)));
}

#[test]
fn a_read_sets_the_access_time_for_the_next_open() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let cache = DiskCache::open(tmp.path(), 10_000).unwrap();
        for n in 1..=3 {
            cache.insert(id(n), &content(n, 100)).unwrap();
        }
        let old = SystemTime::now() - Duration::from_secs(1000);
        for n in 1..=3 {
            let file = OpenOptions::new()
                .write(true)
                .open(object_file(tmp.path(), id(n)))
                .unwrap();
            file.set_times(FileTimes::new().set_accessed(old).set_modified(old))
                .unwrap();
        }
        cache.read_at(id(1), 0, 1).unwrap().unwrap();
    }
    let cache = DiskCache::open(tmp.path(), 200).unwrap();
    assert!(cache.contains(id(1)), "A was read last");
    assert_eq!(cache.len(), 2);
}

#[test]
fn a_truncated_file_is_an_error_and_is_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = DiskCache::open(tmp.path(), 10_000).unwrap();
    for n in 1..=3 {
        cache.insert(id(n), &content(n, 100)).unwrap();
    }
    for n in 1..=2 {
        OpenOptions::new()
            .write(true)
            .open(object_file(tmp.path(), id(n)))
            .unwrap()
            .set_len(50)
            .unwrap();
    }
    // Even a range inside what is left is refused: the file is torn.
    let err = cache.read_at(id(1), 0, 10).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    assert!(!cache.contains(id(1)));
    assert!(!object_file(tmp.path(), id(1)).exists());
    assert_eq!(cache.read_at(id(1), 0, 10).unwrap(), None);

    let err = cache.read_all(id(2)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    assert!(!cache.contains(id(2)));
    assert!(!object_file(tmp.path(), id(2)).exists());

    // A longer file is refused too.
    OpenOptions::new()
        .write(true)
        .open(object_file(tmp.path(), id(3)))
        .unwrap()
        .set_len(150)
        .unwrap();
    let err = cache.read_at(id(3), 0, 10).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(!cache.contains(id(3)));

    assert_eq!(cache.used_bytes(), 0);
    assert_eq!(disk_bytes(tmp.path()), 0);
    // The id can be cached again.
    cache.insert(id(1), &content(1, 100)).unwrap();
    assert_eq!(cache.read_all(id(1)).unwrap().unwrap(), content(1, 100));
}

#[test]
fn a_vanished_file_is_a_miss() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = DiskCache::open(tmp.path(), 10_000).unwrap();
    cache.insert(id(1), &content(1, 100)).unwrap();
    fs::remove_file(object_file(tmp.path(), id(1))).unwrap();
    assert_eq!(cache.read_at(id(1), 0, 10).unwrap(), None);
    assert!(!cache.contains(id(1)));
    assert_eq!(cache.used_bytes(), 0);
}

#[test]
fn leftovers_are_removed_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let objects = objects_dir(tmp.path());
    fs::create_dir_all(&objects).unwrap();
    let good = content(1, 100);
    fs::write(objects.join(id(1).to_string()), &good).unwrap();
    fs::write(objects.join(format!("{}.tmp", id(2))), b"partial").unwrap();
    fs::write(objects.join(format!("{}.7.tmp", id(3))), b"partial").unwrap();
    fs::write(objects.join("not-an-object"), b"junk").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", objects.join(id(4).to_string())).unwrap();
    fs::create_dir(objects.join("subdir")).unwrap();

    let cache = DiskCache::open(tmp.path(), 10_000).unwrap();
    assert_eq!(cache.len(), 1);
    assert_eq!(cache.used_bytes(), 100);
    assert_eq!(cache.read_all(id(1)).unwrap().unwrap(), good);
    assert!(!cache.contains(id(4)));
    let names: Vec<_> = files(tmp.path())
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(names, vec![id(1).to_string(), "subdir".to_owned()]);
    assert_eq!(mode(&objects.join(id(1).to_string())), 0o600);
}

#[test]
fn files_are_0600_and_directories_0700() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a/cache");
    let cache = DiskCache::open(&dir, 10_000).unwrap();
    cache.insert(id(1), &content(1, 10)).unwrap();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&objects_dir(&dir)), 0o700);
    assert_eq!(mode(&object_file(&dir, id(1))), 0o600);
    assert_eq!(mode(&dir.join("lock")), 0o600);
    drop(cache);

    // Existing directories are tightened.
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(objects_dir(&dir), fs::Permissions::from_mode(0o777)).unwrap();
    let _cache = DiskCache::open(&dir, 10_000).unwrap();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&objects_dir(&dir)), 0o700);
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let first = DiskCache::open(tmp.path(), 10_000).unwrap();
    let err = DiskCache::open(tmp.path(), 10_000).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ResourceBusy);
    drop(first);
    DiskCache::open(tmp.path(), 10_000).unwrap();
}

#[test]
fn open_refuses_a_file_as_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("file");
    fs::write(&path, b"x").unwrap();
    assert!(DiskCache::open(&path, 10).is_err());
}

#[derive(Debug, Clone)]
enum Op {
    Insert(u64),
    ReadAt(u64, u64, usize),
    ReadAll(u64),
    Remove(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0..8u64;
    prop_oneof![
        3 => key.clone().prop_map(Op::Insert),
        3 => (key.clone(), 0..450u64, 0..450usize).prop_map(|(k, o, l)| Op::ReadAt(k, o, l)),
        1 => key.clone().prop_map(Op::ReadAll),
        1 => key.prop_map(Op::Remove),
    ]
}

/// The reference: a plain LRU list of (key, size), least recent first.
struct Model {
    capacity: u64,
    lru: VecDeque<(u64, u64)>,
}

impl Model {
    fn used(&self) -> u64 {
        self.lru.iter().map(|(_, size)| size).sum()
    }

    /// Removes `key`, returning its size.
    fn take(&mut self, key: u64) -> Option<u64> {
        let pos = self.lru.iter().position(|(k, _)| *k == key)?;
        self.lru.remove(pos).map(|(_, size)| size)
    }

    /// Marks `key` most recently used, returning its size.
    fn touch(&mut self, key: u64) -> Option<u64> {
        let size = self.take(key)?;
        self.lru.push_back((key, size));
        Some(size)
    }

    fn insert(&mut self, key: u64, size: u64) {
        if size > self.capacity || self.lru.iter().any(|(k, _)| *k == key) {
            return;
        }
        while self.used() + size > self.capacity {
            self.lru.pop_front();
        }
        self.lru.push_back((key, size));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn behaves_like_a_model_lru(
        capacity in 0..1200u64,
        sizes in proptest::collection::vec(0..400usize, 8),
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let cache = DiskCache::open(tmp.path(), capacity).unwrap();
        let mut model = Model { capacity, lru: VecDeque::new() };
        let max_object = sizes.iter().copied().max().unwrap_or(0) as u64;
        for op in ops {
            match op {
                Op::Insert(k) => {
                    let data = content(k, sizes[k as usize]);
                    cache.insert(id(k), &data).unwrap();
                    model.insert(k, data.len() as u64);
                }
                Op::ReadAt(k, offset, len) => {
                    let got = cache.read_at(id(k), offset, len);
                    match model.touch(k) {
                        None => prop_assert_eq!(got.unwrap(), None),
                        Some(size) if offset + len as u64 > size => {
                            prop_assert_eq!(got.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
                        }
                        Some(_) => {
                            let all = content(k, sizes[k as usize]);
                            let want = &all[offset as usize..offset as usize + len];
                            prop_assert_eq!(got.unwrap().unwrap(), want);
                        }
                    }
                }
                Op::ReadAll(k) => {
                    let got = cache.read_all(id(k)).unwrap();
                    let want = model.touch(k).map(|_| content(k, sizes[k as usize]));
                    prop_assert_eq!(got, want);
                }
                Op::Remove(k) => {
                    cache.remove(id(k)).unwrap();
                    model.take(k);
                }
            }
            let on_disk = disk_bytes(tmp.path());
            prop_assert!(on_disk <= capacity + max_object);
            prop_assert!(on_disk <= capacity);
            prop_assert_eq!(on_disk, cache.used_bytes());
            prop_assert_eq!(on_disk, model.used());
            prop_assert_eq!(cache.len(), model.lru.len());
            for k in 0..8 {
                prop_assert_eq!(cache.contains(id(k)), model.lru.iter().any(|(m, _)| *m == k));
            }
        }
    }
}

#[test]
fn concurrent_inserts_and_reads() {
    const THREADS: u64 = 8;
    const KEYS: u64 = 40;
    let tmp = tempfile::tempdir().unwrap();
    let capacity = 64 * 1024;
    let cache = Arc::new(DiskCache::open(tmp.path(), capacity).unwrap());
    let size = |k: u64| 1 + (k as usize * 997) % 8192;
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let cache = Arc::clone(&cache);
            std::thread::spawn(move || {
                let mut rng = 0x9e37_79b9_7f4a_7c15_u64 ^ (t + 1);
                let mut hits = 0;
                for _ in 0..600 {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let k = rng % KEYS;
                    let data = content(k, size(k));
                    match (rng >> 32) % 10 {
                        0..=3 => cache.insert(id(k), &data).unwrap(),
                        4..=6 => {
                            let offset = (rng >> 40) as usize % data.len();
                            let len = (data.len() - offset).min(100);
                            if let Some(got) = cache.read_at(id(k), offset as u64, len).unwrap() {
                                assert_eq!(got, &data[offset..offset + len]);
                                hits += 1;
                            }
                        }
                        7..=8 => {
                            if let Some(got) = cache.read_all(id(k)).unwrap() {
                                assert_eq!(got, data);
                                hits += 1;
                            }
                        }
                        _ => cache.remove(id(k)).unwrap(),
                    }
                }
                hits
            })
        })
        .collect();
    let hits: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(hits > 0);
    let names = files(tmp.path());
    assert!(
        names.iter().all(|(name, _)| !name.ends_with(".tmp")),
        "no temporaries left: {names:?}"
    );
    assert_eq!(disk_bytes(tmp.path()), cache.used_bytes());
    assert!(cache.used_bytes() <= capacity);
    assert_eq!(names.len(), cache.len());
    for (name, len) in names {
        let n = (0..KEYS).find(|&k| id(k).to_string() == name).unwrap();
        assert_eq!(len as usize, size(n));
        assert_eq!(
            fs::read(objects_dir(tmp.path()).join(&name)).unwrap(),
            content(n, size(n))
        );
    }
}

#[test]
fn segment_cache_round_trip_and_invalidation() {
    let cache = SegmentCache::new(1 << 20);
    let seg = |n: u8| Bytes::from(vec![n; 1000]);
    assert_eq!(cache.get(id(1), 0), None);
    for s in 0..4 {
        cache.insert(id(1), s, seg(s as u8));
        cache.insert(id(2), s, seg(10 + s as u8));
    }
    assert_eq!(cache.get(id(1), 2), Some(seg(2)));
    assert_eq!(cache.get(id(2), 3), Some(seg(13)));
    cache.run_pending_tasks();
    assert_eq!(cache.weighted_size(), 8000);
    assert_eq!(cache.entry_count(), 8);
    assert_eq!(cache.capacity(), 1 << 20);

    cache.invalidate_object(id(1));
    // At once, before any maintenance.
    for s in 0..4 {
        assert_eq!(cache.get(id(1), s), None);
        assert_eq!(cache.get(id(2), s), Some(seg(10 + s as u8)));
    }
    cache.run_pending_tasks();
    assert_eq!(cache.weighted_size(), 4000);

    cache.invalidate(id(2), 0);
    assert_eq!(cache.get(id(2), 0), None);
    cache.invalidate_all();
    assert_eq!(cache.get(id(2), 1), None);
}

#[test]
fn segment_cache_is_bounded_in_bytes_and_lru() {
    let segment = 64 * 1024;
    let cache = SegmentCache::new(4 * segment as u64);
    for s in 0..4 {
        cache.insert(id(1), s, Bytes::from(vec![s as u8; segment]));
    }
    cache.run_pending_tasks();
    // Use segment 0, so segment 1 is the least recently used.
    assert!(cache.get(id(1), 0).is_some());
    cache.run_pending_tasks();
    cache.insert(id(1), 4, Bytes::from(vec![4; segment]));
    cache.run_pending_tasks();
    assert!(cache.weighted_size() <= 4 * segment as u64);
    assert_eq!(cache.get(id(1), 1), None);
    assert!(cache.get(id(1), 0).is_some());
    assert!(cache.get(id(1), 4).is_some(), "new entries are admitted");

    for s in 0..100 {
        cache.insert(id(2), s, Bytes::from(vec![0; segment]));
    }
    cache.run_pending_tasks();
    assert!(cache.weighted_size() <= 4 * segment as u64);
    assert!(cache.get(id(2), 99).is_some());
}

#[test]
fn segment_cache_debug_shows_no_contents() {
    let cache = SegmentCache::new(1 << 20);
    cache.insert(id(1), 0, Bytes::from_static(b"top secret plaintext"));
    let shown = format!("{cache:?}");
    assert!(!shown.contains("secret"), "{shown}");
    assert!(!shown.contains("116, 111, 112"), "{shown}");
}

#[test]
fn a_whole_object_answers_its_segments_and_ranges_as_slices() {
    let segment = 64 * 1024;
    let cache = SegmentCache::new(1 << 20);
    let plain: Vec<u8> = (0..2 * segment + 10).map(|i| (i % 251) as u8).collect();
    let whole = Bytes::from(plain.clone());
    cache.insert_whole(id(1), whole.clone());
    assert_eq!(cache.get(id(1), 0).as_deref(), Some(&plain[..segment]));
    assert_eq!(
        cache.get(id(1), 2).as_deref(),
        Some(&plain[2 * segment..]),
        "the short last segment"
    );
    assert_eq!(cache.get(id(1), 3), None, "past the end");
    let r = cache.range(id(1), 100, segment as u64 + 200).unwrap();
    assert_eq!(&r[..], &plain[100..segment + 200]);
    assert_eq!(
        r.as_ptr(),
        whole[100..].as_ptr(),
        "a slice of the cached buffer, not a copy"
    );
    assert_eq!(cache.range(id(1), 0, plain.len() as u64 + 1), None);
    assert_eq!(cache.range(id(2), 0, 1), None, "only whole objects");
    // An empty object has one empty segment.
    cache.insert_whole(id(3), Bytes::new());
    assert_eq!(cache.get(id(3), 0).as_deref(), Some(&[][..]));
    assert_eq!(cache.get(id(3), 1), None);

    // Weighed at its full length, and dropped with its object.
    cache.run_pending_tasks();
    assert_eq!(cache.weighted_size(), plain.len() as u64);
    cache.invalidate_object(id(1));
    assert_eq!(cache.get(id(1), 0), None);
    assert_eq!(cache.range(id(1), 0, 1), None);
}

/// The pack files in `objects/`.
fn packs(dir: &Path) -> Vec<String> {
    files(dir)
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| name.starts_with("pack-"))
        .collect()
}

/// Objects `ns` with `len` bytes each, for `insert_many`.
fn batch(ns: std::ops::Range<u64>, len: usize) -> Vec<(ObjectId, Vec<u8>)> {
    ns.map(|n| (id(n), content(n, len))).collect()
}

fn insert_many(cache: &DiskCache, objects: &[(ObjectId, Vec<u8>)]) {
    let refs: Vec<(ObjectId, &[u8])> = objects.iter().map(|(i, b)| (*i, &b[..])).collect();
    cache.insert_many(&refs).unwrap();
}

#[test]
fn a_batch_is_one_pack_file_that_reads_back_and_survives_a_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let objects = batch(0..50, 300);
    {
        let cache = DiskCache::open(tmp.path(), 100_000).unwrap();
        insert_many(&cache, &objects);
        assert_eq!(files(tmp.path()).len(), 1, "{:?}", files(tmp.path()));
        assert_eq!(packs(tmp.path()).len(), 1);
        assert_eq!(cache.len(), 50);
        assert_eq!(cache.used_bytes(), disk_bytes(tmp.path()));
        assert_eq!(cache.used_bytes(), 50 * 300 + 8 + 50 * 20);
        for (i, data) in &objects {
            assert_eq!(&cache.read_all(*i).unwrap().unwrap(), data);
            assert_eq!(cache.read_at(*i, 10, 5).unwrap().unwrap(), data[10..15]);
            assert_eq!(
                cache.read_at(*i, 299, 2).unwrap_err().kind(),
                io::ErrorKind::UnexpectedEof
            );
        }
        assert_eq!(
            mode(&objects_dir(tmp.path()).join(&packs(tmp.path())[0])),
            0o600
        );
        // Already cached, listed twice, or a single one left: no new pack.
        let mut again = batch(40..60, 300);
        again.push((id(55), content(55, 300)));
        insert_many(&cache, &again);
        assert_eq!(packs(tmp.path()).len(), 2);
        insert_many(&cache, &batch(55..61, 300));
        assert_eq!(
            packs(tmp.path()).len(),
            2,
            "one new object is a file of its own"
        );
        assert!(object_file(tmp.path(), id(60)).exists());
        assert_eq!(cache.len(), 61);
    }
    let cache = DiskCache::open(tmp.path(), 100_000).unwrap();
    assert_eq!(cache.len(), 61);
    assert_eq!(cache.used_bytes(), disk_bytes(tmp.path()));
    for (i, data) in batch(0..61, 300) {
        assert_eq!(cache.read_all(i).unwrap().unwrap(), data);
    }
    // The next pack gets a new number.
    insert_many(&cache, &batch(100..103, 10));
    assert_eq!(packs(tmp.path()).len(), 3);
    assert_eq!(cache.used_bytes(), disk_bytes(tmp.path()));
}

#[test]
fn a_pack_goes_with_its_last_object_and_counts_whole_until_then() {
    let tmp = tempfile::tempdir().unwrap();
    let pack_len = 3 * 1000 + 8 + 3 * 20;
    let capacity = pack_len + 1500;
    let cache = DiskCache::open(tmp.path(), capacity).unwrap();
    insert_many(&cache, &batch(0..3, 1000));
    assert_eq!(cache.used_bytes(), pack_len);
    // Removing objects of a pack frees nothing until the last.
    cache.remove(id(0)).unwrap();
    assert_eq!(packs(tmp.path()).len(), 1);
    assert_eq!(cache.used_bytes(), pack_len);
    assert!(cache.read_all(id(0)).unwrap().is_none());
    assert_eq!(cache.read_all(id(1)).unwrap().unwrap(), content(1, 1000));
    // An object that does not fit evicts the least recently used: id 2,
    // then id 1 with which the pack goes.
    cache.insert(id(10), &content(10, 1400)).unwrap();
    assert_eq!(cache.len(), 3, "the pack still fits");
    cache.insert(id(11), &content(11, 1400)).unwrap();
    assert!(packs(tmp.path()).is_empty(), "{:?}", files(tmp.path()));
    assert!(!cache.contains(id(1)) && !cache.contains(id(2)));
    assert_eq!(cache.used_bytes(), 2800);
    assert_eq!(disk_bytes(tmp.path()), 2800);
    // A pack larger than the whole cache is written as separate files.
    insert_many(&cache, &batch(20..30, 800));
    assert!(packs(tmp.path()).is_empty());
    assert!(disk_bytes(tmp.path()) <= capacity);
    assert_eq!(disk_bytes(tmp.path()), cache.used_bytes());
}

#[test]
fn damaged_packs_cost_a_miss_never_wrong_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let cache = DiskCache::open(tmp.path(), 100_000).unwrap();
        insert_many(&cache, &batch(0..4, 500));
        insert_many(&cache, &batch(10..14, 500));
    }
    let names = packs(tmp.path());
    assert_eq!(names.len(), 2);
    // Cut short while closed: dropped at open.
    let first = objects_dir(tmp.path()).join(&names[0]);
    let len = fs::metadata(&first).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&first)
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    let cache = DiskCache::open(tmp.path(), 100_000).unwrap();
    assert_eq!(packs(tmp.path()), names[1..].to_vec());
    assert_eq!(cache.len(), 4);
    assert!(cache.read_all(id(0)).unwrap().is_none());
    // Cut short while open: the read fails and drops the entry.
    let second = objects_dir(tmp.path()).join(&names[1]);
    let len = fs::metadata(&second).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&second)
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    assert!(cache.read_all(id(10)).is_err());
    assert!(!cache.contains(id(10)));
    assert_eq!(cache.used_bytes(), len, "the rest of the pack still counts");
}

#[test]
fn objects_cached_both_alone_and_in_a_pack_are_kept_once_at_open() {
    // As an object evicted from a pack that stays, then cached again, leaves
    // it. Whichever copy is older comes first; the other is deleted.
    for pack_is_older in [true, false] {
        let tmp = tempfile::tempdir().unwrap();
        {
            let cache = DiskCache::open(tmp.path(), 100_000).unwrap();
            for (i, data) in batch(0..3, 100) {
                cache.insert(i, &data).unwrap();
            }
        }
        let objects = batch(0..3, 100);
        let refs: Vec<(ObjectId, &[u8])> = objects.iter().map(|(i, b)| (*i, &b[..])).collect();
        let (bytes, _) = super::pack::encode(&refs).unwrap();
        let pack = objects_dir(tmp.path()).join("pack-0000000000000007");
        fs::write(&pack, bytes).unwrap();
        let (old, new) = (
            SystemTime::now() - Duration::from_secs(100),
            SystemTime::now() - Duration::from_secs(10),
        );
        let times = |t| FileTimes::new().set_accessed(t).set_modified(t);
        let pack_time = if pack_is_older { old } else { new };
        let file_time = if pack_is_older { new } else { old };
        OpenOptions::new()
            .write(true)
            .open(&pack)
            .unwrap()
            .set_times(times(pack_time))
            .unwrap();
        for (i, _) in &objects {
            OpenOptions::new()
                .write(true)
                .open(object_file(tmp.path(), *i))
                .unwrap()
                .set_times(times(file_time))
                .unwrap();
        }
        let cache = DiskCache::open(tmp.path(), 100_000).unwrap();
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.used_bytes(), disk_bytes(tmp.path()));
        let want_files = if pack_is_older { 1 } else { 3 };
        assert_eq!(
            files(tmp.path()).len(),
            want_files,
            "{:?}",
            files(tmp.path())
        );
        for (i, data) in &objects {
            assert_eq!(&cache.read_all(*i).unwrap().unwrap(), data);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Packs among single objects, under eviction and removal: the bytes on
    /// disk are what the cache counts and never above the bound, and a read
    /// gives an object's bytes or nothing.
    #[test]
    fn packs_keep_the_bound_and_the_bytes(
        capacity in 0..6000u64,
        ops in proptest::collection::vec((0..4u8, 0..24u64, 1..6u64, 0..700usize), 1..60),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let cache = DiskCache::open(tmp.path(), capacity).unwrap();
        let len_of = |k: u64| (k as usize * 37) % 700;
        for (kind, k, count, _) in ops {
            match kind {
                0 => cache.insert(id(k), &content(k, len_of(k))).unwrap(),
                1 => {
                    let objects: Vec<_> = (k..k + count).map(|n| (id(n), content(n, len_of(n)))).collect();
                    insert_many(&cache, &objects);
                }
                2 => cache.remove(id(k)).unwrap(),
                _ => {
                    if let Some(got) = cache.read_all(id(k)).unwrap() {
                        prop_assert_eq!(got, content(k, len_of(k)));
                    }
                }
            }
            let on_disk = disk_bytes(tmp.path());
            prop_assert!(on_disk <= capacity, "{} on disk, capacity {}", on_disk, capacity);
            prop_assert_eq!(on_disk, cache.used_bytes());
        }
        drop(cache);
        let cache = DiskCache::open(tmp.path(), capacity).unwrap();
        prop_assert_eq!(disk_bytes(tmp.path()), cache.used_bytes());
        for k in 0..30 {
            if let Some(got) = cache.read_all(id(k)).unwrap() {
                prop_assert_eq!(got, content(k, len_of(k)));
            }
        }
    }
}
