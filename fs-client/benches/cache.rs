//! Throughput of the client's cache hot paths, through the public API of
//! `fs_client::cache`: the on-disk ciphertext cache ([`DiskCache`]), the
//! in-memory segment cache ([`SegmentCache`]), and the read path a mount
//! takes for a segment that is on disk but not in memory (disk cache →
//! AEAD → segment cache), put together from the same public pieces as
//! `vfs::content` uses (that module is crate-private).
//!
//! Design:
//! - Objects are the client's real unit: 4 MiB (one chunk) of ciphertext
//!   in the real format, read in 64 KiB segments (the AEAD segment, and the
//!   size of the kernel's FUSE reads).
//! - Eviction pressure: the caches that evict are a few times smaller than
//!   the working set, so inserts pay for evictions and reads for misses.
//! - Every benchmark reports throughput in bytes: object bytes for the
//!   disk cache, segment bytes for the segment cache and the read path.
//! - Access patterns are a fixed pseudo-random sequence, so runs compare.
//! - Short by default (criterion's sample floor of 10, 1 s warm-up, 3 s
//!   measurement) so `cargo bench` over the workspace stays a few minutes;
//!   criterion's `--measurement-time` and `--sample-size` override.
//!
//! The disk cache lives in a temporary directory on the same filesystem as
//! `std::env::temp_dir()`; its figures include the page cache, as a
//! mount's would.
//!
//! `cargo bench -p fs-client --bench cache` (add `-- --quick` for a rough
//! pass, or a filter such as `-- disk_cache`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    missing_docs
)]

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use common::crypto::content::{
    HEADER_LEN, ObjectBinding, ObjectDecryptor, SEGMENT_SIZE, ciphertext_range, encrypt_object,
    segment_count,
};
use common::crypto::subkeys::VaultKey;
use common::{NodeId, ObjectId};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fs_client::cache::{DiskCache, SegmentCache};

/// One object: a 4 MiB chunk.
const OBJECT: usize = 4 << 20;
/// One segment of plaintext.
const SEG: usize = SEGMENT_SIZE;
/// Read size: one segment.
const READ: usize = 64 * 1024;

/// Deterministic pseudo-random numbers (xorshift64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Object id number `n`.
fn id(n: u64) -> ObjectId {
    ObjectId::from_bytes((u128::from(n) + 1).to_be_bytes())
}

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    (0..len).map(|_| rng.next() as u8).collect()
}

fn disk_cache(c: &mut Criterion) {
    let object = noise(OBJECT, 1);
    let mut group = c.benchmark_group("disk_cache");

    // Inserts of new 4 MiB objects into a cache of four: from the fifth
    // on, each insert evicts (and deletes) the least recently used one.
    {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::open(dir.path(), 4 * OBJECT as u64).unwrap();
        let mut n = 0u64;
        group.throughput(Throughput::Bytes(OBJECT as u64));
        group.bench_function("insert_4MiB_evicting", |b| {
            b.iter(|| {
                n += 1;
                cache.insert(id(n), black_box(&object)).unwrap();
            })
        });
        assert!(cache.used_bytes() <= cache.capacity());
    }

    // Reads of cached objects (no eviction): one 64 KiB range at a random
    // segment-aligned offset, and whole objects.
    {
        let dir = tempfile::tempdir().unwrap();
        let objects = 8u64;
        let cache = DiskCache::open(dir.path(), 16 * OBJECT as u64).unwrap();
        for n in 0..objects {
            cache.insert(id(n), &object).unwrap();
        }
        let mut rng = Rng(7);
        group.throughput(Throughput::Bytes(READ as u64));
        group.bench_function("read_at_64KiB_hit", |b| {
            b.iter(|| {
                let n = rng.below(objects as usize) as u64;
                let offset = (rng.below(OBJECT / READ) * READ) as u64;
                black_box(cache.read_at(id(n), offset, READ).unwrap().unwrap())
            })
        });
        group.throughput(Throughput::Bytes(OBJECT as u64));
        group.bench_function("read_all_4MiB_hit", |b| {
            b.iter(|| {
                let n = rng.below(objects as usize) as u64;
                black_box(cache.read_all(id(n)).unwrap().unwrap())
            })
        });
    }

    // Read-through under pressure: 16 objects (64 MiB) over a cache of
    // four (16 MiB). A miss inserts the object (as a fetch from the server
    // would, minus the network) and reads again; about three reads in four
    // miss.
    {
        let dir = tempfile::tempdir().unwrap();
        let working_set = 16usize;
        let cache = DiskCache::open(dir.path(), 4 * OBJECT as u64).unwrap();
        let mut rng = Rng(11);
        let (mut reads, mut misses) = (0u64, 0u64);
        group.throughput(Throughput::Bytes(READ as u64));
        group.bench_function("read_through_64KiB_pressure", |b| {
            b.iter(|| {
                let n = rng.below(working_set) as u64;
                let offset = (rng.below(OBJECT / READ) * READ) as u64;
                reads += 1;
                let data = match cache.read_at(id(n), offset, READ).unwrap() {
                    Some(d) => d,
                    None => {
                        misses += 1;
                        cache.insert(id(n), &object).unwrap();
                        cache.read_at(id(n), offset, READ).unwrap().unwrap()
                    }
                };
                black_box(data)
            })
        });
        eprintln!(
            "disk_cache/read_through_64KiB_pressure: {misses} misses in {reads} reads ({:.0} %)",
            100.0 * misses as f64 / reads.max(1) as f64
        );
    }
    group.finish();
}

fn segment_cache(c: &mut Criterion) {
    let mut group = c.benchmark_group("segment_cache");
    group.throughput(Throughput::Bytes(SEG as u64));
    let segment = Bytes::from(vec![0x5au8; SEG]);

    // 256 segments (16 MiB) cached in a cache of 64 MiB: gets hit, and
    // misses ask for objects never inserted.
    {
        let cache = SegmentCache::new(64 << 20);
        let held = 256u64;
        for k in 0..held {
            cache.insert(id(k / 64), k % 64, Bytes::from(vec![k as u8; SEG]));
        }
        cache.run_pending_tasks();
        let mut rng = Rng(3);
        group.bench_function("get_hit", |b| {
            b.iter(|| {
                let k = rng.below(held as usize) as u64;
                black_box(cache.get(id(k / 64), k % 64).unwrap())
            })
        });
        group.bench_function("get_miss", |b| {
            b.iter(|| {
                let k = rng.below(held as usize) as u64;
                assert!(black_box(cache.get(id(1000 + k / 64), k % 64)).is_none());
            })
        });
    }

    // Inserts of new segments into a cache of 256 (16 MiB): in steady
    // state every insert evicts one. The same buffer is inserted each time
    // (a reference count), so this is the cache's own cost.
    {
        let cache = SegmentCache::new(16 << 20);
        let mut n = 0u64;
        group.bench_function("insert_evicting", |b| {
            b.iter(|| {
                n += 1;
                cache.insert(id(n / 64), n % 64, black_box(segment.clone()));
            })
        });
        cache.run_pending_tasks();
        assert!(cache.weighted_size() <= cache.capacity());
    }
    group.finish();
}

fn read_path(c: &mut Criterion) {
    let keys = VaultKey::from_bytes([1; 32]).subkeys().unwrap();
    let file = NodeId::from_bytes([2; 16]);
    let object = id(42);
    let binding = ObjectBinding {
        file,
        object,
        offset: 0,
    };
    let plain_len = OBJECT as u64;
    let ciphertext = encrypt_object(&keys.content, &binding, &noise(OBJECT, 5)).unwrap();
    let segments = segment_count(plain_len);
    let dir = tempfile::tempdir().unwrap();
    let disk = DiskCache::open(dir.path(), 8 * OBJECT as u64).unwrap();
    disk.insert(object, &ciphertext).unwrap();

    let mut group = c.benchmark_group("read_path");
    group.throughput(Throughput::Bytes(SEG as u64));

    // A segment missing from memory but on disk, as `vfs::content` reads
    // it: the header and the segment's ciphertext from the disk cache,
    // authenticated and decrypted, then inserted into a segment cache a
    // quarter the size of the object (so inserts evict). Each iteration
    // reads the next segment of the object under a fresh memory key, so
    // every one is a miss.
    {
        let mem = SegmentCache::new(plain_len / 4);
        let mut n = 0u64;
        group.bench_function("segment_from_disk_decrypt_64KiB", |b| {
            b.iter(|| {
                n += 1;
                let index = n % segments;
                let key = id(1_000_000 + n / segments);
                assert!(mem.get(key, index).is_none());
                let header = disk.read_at(object, 0, HEADER_LEN).unwrap().unwrap();
                let range = ciphertext_range(plain_len, index..index + 1).unwrap();
                let ct = disk
                    .read_at(object, range.start, (range.end - range.start) as usize)
                    .unwrap()
                    .unwrap();
                let dec =
                    ObjectDecryptor::new(&keys.content, &binding, &header, plain_len).unwrap();
                let mut plain = Vec::with_capacity(ct.len());
                dec.open_segment(index, &ct, &mut plain).unwrap();
                let plain = Bytes::from(plain);
                mem.insert(key, index, plain.clone());
                black_box(plain)
            })
        });
    }

    // The same read once the segment is in memory: a hit, copied out as a
    // read answer is.
    {
        let mem = SegmentCache::new(2 * plain_len);
        let header = &ciphertext[..HEADER_LEN];
        let dec = ObjectDecryptor::new(&keys.content, &binding, header, plain_len).unwrap();
        for index in 0..segments {
            let range = ciphertext_range(plain_len, index..index + 1).unwrap();
            let mut plain = Vec::with_capacity(SEG);
            dec.open_segment(
                index,
                &ciphertext[range.start as usize..range.end as usize],
                &mut plain,
            )
            .unwrap();
            mem.insert(object, index, Bytes::from(plain));
        }
        let mut n = 0u64;
        group.bench_function("segment_from_memory_64KiB", |b| {
            b.iter(|| {
                n += 1;
                let seg = mem.get(object, n % segments).unwrap();
                let mut out = Vec::with_capacity(SEG);
                out.extend_from_slice(&seg);
                black_box(out)
            })
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = disk_cache, segment_cache, read_path
}
criterion_main!(benches);
