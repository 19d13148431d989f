//! Throughput of the crypto hot paths: content objects (whole and by range),
//! names and attribute records. `cargo bench -p common`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    missing_docs
)]

use std::hint::black_box;

use common::crypto::attrs::{
    NodeAttributes, NodeKind, Timestamp, open_attributes, seal_attributes,
};
use common::crypto::content::{
    HEADER_LEN, ObjectBinding, ObjectDecryptor, ObjectDigest, ciphertext_range, decrypt_object,
    encrypt_object, segments_for_range,
};
use common::crypto::name::{decrypt_name, encrypt_name, name_tag};
use common::crypto::subkeys::VaultKey;
use common::{NodeId, ObjectId};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

fn content(c: &mut Criterion) {
    let keys = VaultKey::from_bytes([1; 32]).subkeys().unwrap();
    let binding = ObjectBinding {
        file: NodeId::from_bytes([2; 16]),
        object: ObjectId::from_bytes([3; 16]),
        offset: 0,
    };
    let mut group = c.benchmark_group("content");
    for size in [64 * 1024usize, 4 << 20] {
        let pt = vec![0x5au8; size];
        let ct = encrypt_object(&keys.content, &binding, &pt).unwrap();
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("encrypt", size), &pt, |b, pt| {
            b.iter(|| encrypt_object(&keys.content, &binding, black_box(pt)).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("decrypt", size), &ct, |b, ct| {
            b.iter(|| decrypt_object(&keys.content, &binding, black_box(ct), size as u64).unwrap())
        });
        // What a whole download costs the reader: its buffer (reused, as
        // the daemon's pool does) decrypted in place.
        let dec =
            ObjectDecryptor::new(&keys.content, &binding, &ct[..HEADER_LEN], size as u64).unwrap();
        let mut buf = Vec::with_capacity(ct.len());
        group.bench_with_input(BenchmarkId::new("open_in_place", size), &ct, |b, ct| {
            b.iter(|| {
                buf.clear();
                buf.extend_from_slice(black_box(ct));
                dec.open_object_in_place(&mut buf).unwrap();
            })
        });
        group.bench_with_input(BenchmarkId::new("digest", size), &ct, |b, ct| {
            b.iter(|| ObjectDigest::of(black_box(ct)))
        });
    }
    // A 4 KiB random read from a 4 MiB object: one segment's work.
    let size = 4u64 << 20;
    let ct = encrypt_object(&keys.content, &binding, &vec![7u8; size as usize]).unwrap();
    let dec = ObjectDecryptor::new(&keys.content, &binding, &ct[..HEADER_LEN], size).unwrap();
    let r = ciphertext_range(size, segments_for_range(size, 1_000_000, 4096)).unwrap();
    group.throughput(Throughput::Bytes(4096));
    group.bench_function("read_4k_range", |b| {
        b.iter(|| {
            dec.decrypt_range(
                1_000_000,
                4096,
                black_box(&ct[r.start as usize..r.end as usize]),
            )
            .unwrap()
        })
    });
    group.finish();
}

fn metadata(c: &mut Criterion) {
    let keys = VaultKey::from_bytes([1; 32]).subkeys().unwrap();
    let parent = NodeId::from_bytes([4; 16]);
    let child = NodeId::from_bytes([5; 16]);
    let name = b"holiday-photo-0001.jpg";
    let enc = encrypt_name(&keys.name_encryption, parent, child, name).unwrap();
    let tag = name_tag(&keys.name_tag, parent, name).unwrap();
    c.bench_function("name/encrypt", |b| {
        b.iter(|| encrypt_name(&keys.name_encryption, parent, child, black_box(name)).unwrap())
    });
    c.bench_function("name/decrypt_and_verify", |b| {
        b.iter(|| {
            decrypt_name(
                &keys.name_encryption,
                &keys.name_tag,
                parent,
                child,
                black_box(&enc),
                &tag,
            )
            .unwrap()
        })
    });
    let attrs = NodeAttributes::new(NodeKind::File, 0o644, 1000, 1000, Timestamp::now());
    let sealed = seal_attributes(&keys.attributes, child, 1, &attrs).unwrap();
    c.bench_function("attributes/seal", |b| {
        b.iter(|| seal_attributes(&keys.attributes, child, 1, black_box(&attrs)).unwrap())
    });
    c.bench_function("attributes/open", |b| {
        b.iter(|| open_attributes(&keys.attributes, child, 1, black_box(&sealed)).unwrap())
    });
}

criterion_group!(benches, content, metadata);
criterion_main!(benches);
