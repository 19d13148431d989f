//! Test vectors: the files under `common/tests/vectors/` pin every byte of the
//! format. Valid vectors are re-created from their inputs (fixed salts and
//! seeds) and must match byte for byte, and must decrypt; `fail_*` vectors
//! must fail with the error kind they name and never yield plaintext.
//!
//! `SECUREVAULT_WRITE_VECTORS=1 cargo test -p common write_vectors -- --ignored`
//! rewrites the files; do that only for a deliberate format change (which
//! also needs a new version byte).

#![allow(clippy::cast_possible_truncation, clippy::type_complexity)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::attrs::{
    NodeAttributes, NodeKind, ObjectEntry, Timestamp, open_attributes, seal_attributes_with_salt,
};
use super::content::{
    ObjectBinding, ObjectCheck, ObjectDigest, ObjectEncryptor, ObjectSeed, decrypt_object,
    open_object, seal_all,
};
use super::kdf::{KdfParams, KeyEncryptionKey, derive_account_keys};
use super::keywrap::{self, WrapPurpose};
use super::name::{NameTag, decrypt_name, encrypt_name_with_salt, name_tag};
use super::recovery::RecoveryKey;
use super::subkeys::{AttributeKey, ContentKey, NameEncryptionKey, NameTagKey, VaultKey};
use super::{CryptoError, Key32};
use crate::ids::{NodeId, ObjectId};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn h(bytes: &[u8]) -> Value {
    Value::String(hex::encode(bytes))
}

fn unhex(v: &Value, field: &str) -> Vec<u8> {
    hex::decode(v[field].as_str().unwrap_or_else(|| panic!("field {field}"))).unwrap()
}

fn arr<const N: usize>(v: &Value, field: &str) -> [u8; N] {
    unhex(v, field)
        .try_into()
        .unwrap_or_else(|_| panic!("{field} length"))
}

fn num(v: &Value, field: &str) -> u64 {
    v[field].as_u64().unwrap_or_else(|| panic!("field {field}"))
}

/// The plaintext of content vectors: byte i is i mod 251.
fn pattern(len: u64) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn filled<const N: usize>(start: u8) -> [u8; N] {
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = start.wrapping_add(i as u8);
    }
    out
}

/// The error kind a fail vector expects.
fn kind(e: &CryptoError) -> &'static str {
    match e {
        CryptoError::Authentication | CryptoError::SegmentAuthentication { .. } => "authentication",
        CryptoError::DigestMismatch => "digest",
        CryptoError::SeedMismatch => "seed",
        CryptoError::CiphertextLength { .. } => "length",
        CryptoError::UnsupportedVersion(_) => "version",
        CryptoError::NameTagMismatch => "name_tag",
        CryptoError::KdfParams(_) => "kdf_params",
        CryptoError::RecoveryKey(_) => "recovery_key",
        CryptoError::Malformed { .. } => "malformed",
        CryptoError::InvalidName(_) => "invalid_name",
        CryptoError::Rng | CryptoError::OutOfRange => "other",
    }
}

// ---- building the vectors -------------------------------------------------

const VAULT_KEY: [u8; 32] = [0x5e; 32];
const ACCOUNT: &str = "alice@example.org";

fn subkeys() -> super::subkeys::VaultSubkeys {
    VaultKey::from_bytes(VAULT_KEY).subkeys().unwrap()
}

fn kdf_vector() -> Value {
    let params = KdfParams {
        memory_kib: 65536,
        iterations: 3,
        parallelism: 4,
        salt: filled(0x10),
    };
    let keys = derive_account_keys(b"correct horse battery staple", &params).unwrap();
    json!({
        "kind": "kdf",
        "description": "Argon2id v1.3 master key, split by HKDF into the auth key and the key-encryption key (default parameters)",
        "password": "correct horse battery staple",
        "params": serde_json::to_value(&params).unwrap(),
        "auth_key": h(keys.auth.expose()),
        "kek": h(keys.kek.expose()),
    })
}

fn subkeys_vector() -> Value {
    let s = subkeys();
    json!({
        "kind": "subkeys",
        "description": "purpose keys derived from the vault key by HKDF-SHA256 with distinct labels",
        "vault_key": h(&VAULT_KEY),
        "name_encryption": h(s.name_encryption.expose()),
        "name_tag": h(s.name_tag.expose()),
        "attributes": h(s.attributes.expose()),
        "content": h(s.content.expose()),
    })
}

fn wrap_vector(purpose: WrapPurpose) -> Value {
    wrap_vector_for(purpose, ACCOUNT)
}

fn wrap_vector_for(purpose: WrapPurpose, account: &str) -> Value {
    let (key, label, extra) = match purpose {
        WrapPurpose::Password => {
            let kek = filled::<32>(0x20);
            (
                Key32::from_bytes(kek),
                "password",
                json!({ "kek": h(&kek) }),
            )
        }
        WrapPurpose::Recovery => {
            let rk = RecoveryKey::from_bytes(filled(0x30));
            let text = rk.to_display_string().unwrap();
            (
                rk.wrapping_key().unwrap(),
                "recovery",
                json!({ "recovery_key": h(&filled::<32>(0x30)), "recovery_key_text": text.as_str() }),
            )
        }
    };
    let salt = filled(0x40);
    let wrapped = keywrap::wrap_with_salt(
        &key,
        purpose,
        account,
        &VaultKey::from_bytes(VAULT_KEY),
        &salt,
    )
    .unwrap();
    let mut v = json!({
        "kind": "wrap",
        "description": format!("vault key wrapped by the {label} branch"),
        "purpose": label,
        "account": account,
        "vault_key": h(&VAULT_KEY),
        "salt": h(&salt),
        "wrapped": h(&wrapped),
    });
    if let (Some(obj), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
        obj.extend(extra.clone());
    }
    v
}

fn name_vector(name: &[u8], description: &str) -> Value {
    let s = subkeys();
    let parent = NodeId::from_bytes(filled(0x50));
    let child = NodeId::from_bytes(filled(0x60));
    let salt = filled(0x70);
    let enc = encrypt_name_with_salt(&s.name_encryption, parent, child, name, &salt).unwrap();
    let tag = name_tag(&s.name_tag, parent, name).unwrap();
    json!({
        "kind": "name",
        "description": description,
        "name_encryption_key": h(s.name_encryption.expose()),
        "name_tag_key": h(s.name_tag.expose()),
        "parent": parent.to_string(),
        "child": child.to_string(),
        "name": h(name),
        "salt": h(&salt),
        "encrypted": h(&enc),
        "tag": h(tag.as_bytes()),
    })
}

fn sample_file() -> NodeAttributes {
    let mut a = NodeAttributes::new(
        NodeKind::File,
        0o640,
        1000,
        100,
        Timestamp {
            secs: 1_763_000_000,
            nanos: 123_456_789,
        },
    );
    a.mtime = Timestamp {
        secs: 1_763_000_100,
        nanos: 0,
    };
    a.btime = Timestamp {
        secs: -1,
        nanos: 999_999_999,
    };
    a.size = 200_000;
    a.xattrs.insert(b"user.colour".to_vec(), b"blue".to_vec());
    a.xattrs.insert(b"user.empty".to_vec(), Vec::new());
    a.objects.push(ObjectEntry {
        id: ObjectId::from_bytes(filled(0x80)),
        offset: 0,
        len: 131_072,
        check: ObjectCheck::Digest(ObjectDigest::from_bytes(filled(0x90))),
    });
    a.objects.push(ObjectEntry {
        id: ObjectId::from_bytes(filled(0xa0)),
        offset: 196_608,
        len: 3392,
        check: ObjectCheck::Digest(ObjectDigest::from_bytes(filled(0xb0))),
    });
    a
}

/// The sample file after its tail was rewritten by a version 2 writer: the
/// new object commits to its seed, the untouched one keeps its digest.
fn sample_file_v2() -> NodeAttributes {
    let mut a = sample_file();
    if let Some(tail) = a.objects.last_mut() {
        tail.id = ObjectId::from_bytes(filled(0x60));
        tail.check = ObjectCheck::Seed(ObjectSeed::from_bytes(filled(0x70)));
    }
    a
}

fn sample_symlink() -> NodeAttributes {
    let mut a = NodeAttributes::new(
        NodeKind::Symlink,
        0o777,
        0,
        0,
        Timestamp { secs: 0, nanos: 0 },
    );
    a.symlink_target = b"../docs/notes.txt".to_vec();
    a.size = 17;
    a
}

fn attrs_json(a: &NodeAttributes) -> Value {
    let t = |t: Timestamp| json!([t.secs, t.nanos]);
    json!({
        "kind": a.kind.code(),
        "mode": a.mode,
        "uid": a.uid,
        "gid": a.gid,
        "size": a.size,
        "atime": t(a.atime), "mtime": t(a.mtime), "ctime": t(a.ctime), "btime": t(a.btime),
        "symlink_target": h(&a.symlink_target),
        "xattrs": a.xattrs.iter().map(|(k, v)| json!([h(k), h(v)])).collect::<Vec<_>>(),
        "objects": a.objects.iter().map(|o| match &o.check {
            ObjectCheck::Digest(d) => json!({
                "id": o.id.to_string(), "offset": o.offset, "len": o.len, "digest": h(d.as_bytes()),
            }),
            ObjectCheck::Seed(s) => json!({
                "id": o.id.to_string(), "offset": o.offset, "len": o.len, "seed": h(s.as_bytes()),
            }),
        }).collect::<Vec<_>>(),
    })
}

fn attrs_from_json(v: &Value) -> NodeAttributes {
    let t = |f: &str| Timestamp {
        secs: v[f][0].as_i64().unwrap(),
        nanos: u32::try_from(v[f][1].as_u64().unwrap()).unwrap(),
    };
    let u32f = |f: &str| u32::try_from(num(v, f)).unwrap();
    NodeAttributes {
        kind: NodeKind::from_code(u8::try_from(num(v, "kind")).unwrap()).unwrap(),
        mode: u32f("mode"),
        uid: u32f("uid"),
        gid: u32f("gid"),
        size: num(v, "size"),
        atime: t("atime"),
        mtime: t("mtime"),
        ctime: t("ctime"),
        btime: t("btime"),
        symlink_target: unhex(v, "symlink_target"),
        xattrs: v["xattrs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    hex::decode(p[0].as_str().unwrap()).unwrap(),
                    hex::decode(p[1].as_str().unwrap()).unwrap(),
                )
            })
            .collect::<BTreeMap<_, _>>(),
        objects: v["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| ObjectEntry {
                id: o["id"].as_str().unwrap().parse().unwrap(),
                offset: num(o, "offset"),
                len: num(o, "len"),
                check: if o.get("seed").is_some() {
                    ObjectCheck::Seed(ObjectSeed::from_bytes(arr(o, "seed")))
                } else {
                    ObjectCheck::Digest(ObjectDigest::from_bytes(arr(o, "digest")))
                },
            })
            .collect(),
    }
}

fn attrs_vector(a: &NodeAttributes, description: &str) -> Value {
    let key = subkeys().attributes;
    let node = NodeId::from_bytes(filled(0xc0));
    let salt = filled(0xd0);
    let sealed = seal_attributes_with_salt(&key, node, 42, a, &salt).unwrap();
    json!({
        "kind": "attributes",
        "description": description,
        "attributes_key": h(key.expose()),
        "node": node.to_string(),
        "version": 42,
        "record": attrs_json(a),
        "plaintext": h(&a.encode().unwrap()),
        "salt": h(&salt),
        "sealed": h(&sealed),
    })
}

fn content_binding() -> ObjectBinding {
    ObjectBinding {
        file: NodeId::from_bytes(filled(0xe0)),
        object: ObjectId::from_bytes(filled(0xf0)),
        offset: 131_072,
    }
}

const SEED: [u8; 24] = [0x33; 24];

fn content_ciphertext(len: u64) -> Vec<u8> {
    let enc = ObjectEncryptor::with_seed(&subkeys().content, &content_binding(), &SEED).unwrap();
    seal_all(enc, &pattern(len)).unwrap()
}

fn content_vector(len: u64, file: &str, ct: &[u8], description: &str) -> Value {
    let b = content_binding();
    json!({
        "kind": "content",
        "description": description,
        "content_key": h(subkeys().content.expose()),
        "file": b.file.to_string(),
        "object": b.object.to_string(),
        "offset": b.offset,
        "seed": h(&SEED),
        "plaintext_len": len,
        "plaintext_pattern": "byte i = i mod 251",
        "ciphertext_file": file,
        "ciphertext_sha256": h(ObjectDigest::of(ct).as_bytes()),
    })
}

/// Every vector: (file stem, JSON, binary ciphertext if any).
fn all_vectors() -> Vec<(String, Value, Option<Vec<u8>>)> {
    const SEG: u64 = 65_536;
    let mut out: Vec<(String, Value, Option<Vec<u8>>)> = vec![
        ("kdf_default".into(), kdf_vector(), None),
        ("subkeys".into(), subkeys_vector(), None),
        (
            "wrap_password".into(),
            wrap_vector(WrapPurpose::Password),
            None,
        ),
        (
            "wrap_recovery".into(),
            wrap_vector(WrapPurpose::Recovery),
            None,
        ),
        (
            "wrap_account_canonicalised".into(),
            {
                let mut v = wrap_vector_for(WrapPurpose::Password, " Alice@Example.ORG\t");
                v["description"] = json!(
                    "the account is canonicalised (ASCII white space trimmed, ASCII letters lower-cased) before it is bound"
                );
                v
            },
            None,
        ),
        (
            "name_short".into(),
            name_vector(b"notes.txt", "a short name: one 32-byte padding block"),
            None,
        ),
        (
            "name_ascii".into(),
            name_vector(b"Quarterly report.pdf", "an ASCII file name"),
            None,
        ),
        (
            "name_utf8".into(),
            name_vector("résumé – ünïcode.txt".as_bytes(), "a UTF-8 file name"),
            None,
        ),
        (
            "name_max_len".into(),
            name_vector(&[b'n'; 255], "the longest name: 255 bytes, padded to 256"),
            None,
        ),
        (
            "attributes_file".into(),
            attrs_vector(&sample_file(), "a file with xattrs, a hole and two objects"),
            None,
        ),
        (
            "attributes_file_v2".into(),
            attrs_vector(
                &sample_file_v2(),
                "record version 2: one object committed by its digest, one by its seed",
            ),
            None,
        ),
        (
            "attributes_symlink".into(),
            attrs_vector(&sample_symlink(), "a symlink"),
            None,
        ),
    ];
    for (stem, len, what) in [
        (
            "content_empty",
            0,
            "an empty object: one empty final segment",
        ),
        ("content_one_byte", 1, "one byte"),
        ("content_one_segment", SEG, "exactly one full segment"),
        (
            "content_three_segments",
            2 * SEG + 1000,
            "two full segments and a short last one",
        ),
    ] {
        let ct = content_ciphertext(len);
        let v = content_vector(len, &format!("{stem}.bin"), &ct, what);
        out.push((stem.into(), v, Some(ct)));
    }

    // ---- fail vectors ----
    let fail = |mut v: Value, error: &str, description: &str| {
        v["expect_error"] = json!(error);
        v["description"] = json!(description);
        v
    };
    let mut weak = kdf_vector();
    weak["params"]["memory_kib"] = json!(8192);
    weak["params"]["iterations"] = json!(1);
    out.push((
        "fail_kdf_weak_params".into(),
        fail(
            weak,
            "kdf_params",
            "KDF parameters below the minimum (a downgrade) must be refused",
        ),
        None,
    ));
    let mut acct = wrap_vector(WrapPurpose::Password);
    acct["account"] = json!("mallory@example.org");
    out.push((
        "fail_wrap_other_account".into(),
        fail(
            acct,
            "authentication",
            "a wrapped key replayed for another account",
        ),
        None,
    ));
    let mut purpose = wrap_vector(WrapPurpose::Password);
    purpose["purpose"] = json!("recovery");
    purpose["recovery_key"] = purpose["kek"].clone();
    out.push((
        "fail_wrap_purpose_swapped".into(),
        fail(
            purpose,
            "authentication",
            "a password-wrapped key presented as the recovery-wrapped one",
        ),
        None,
    ));
    let mut typo = wrap_vector(WrapPurpose::Recovery);
    let original = typo["recovery_key_text"].as_str().unwrap().to_owned();
    let first = if original.starts_with('Z') { "Y" } else { "Z" };
    let text = format!("{first}{}", &original[1..]);
    typo["recovery_key_text"] = json!(text);
    out.push((
        "fail_recovery_typo".into(),
        fail(
            typo,
            "recovery_key",
            "a mistyped recovery key fails its checksum",
        ),
        None,
    ));
    let mut moved = name_vector(b"Quarterly report.pdf", "");
    moved["parent"] = json!(NodeId::from_bytes(filled(0x51)).to_string());
    out.push((
        "fail_name_moved_directory".into(),
        fail(
            moved,
            "authentication",
            "an encrypted name moved to another directory",
        ),
        None,
    ));
    let mut relinked = name_vector(b"Quarterly report.pdf", "");
    relinked["child"] = json!(NodeId::from_bytes(filled(0x61)).to_string());
    out.push((
        "fail_name_other_child".into(),
        fail(
            relinked,
            "authentication",
            "an encrypted name attached to another node",
        ),
        None,
    ));
    let mut tag = name_vector(b"Quarterly report.pdf", "");
    tag["tag"] = name_vector(b"other.pdf", "")["tag"].clone();
    out.push((
        "fail_name_tag_mismatch".into(),
        fail(
            tag,
            "name_tag",
            "an entry's encrypted name paired with another name's tag",
        ),
        None,
    ));
    let mut flipped = name_vector(b"Quarterly report.pdf", "");
    let mut enc = unhex(&flipped, "encrypted");
    enc[30] ^= 1;
    flipped["encrypted"] = h(&enc);
    out.push((
        "fail_name_modified".into(),
        fail(
            flipped,
            "authentication",
            "one bit of an encrypted name flipped",
        ),
        None,
    ));
    let mut slash = name_vector(b"Quarterly report.pdf", "");
    {
        let s = subkeys();
        let (parent, child) = (
            NodeId::from_bytes(filled(0x50)),
            NodeId::from_bytes(filled(0x60)),
        );
        let aad = super::name::aad(parent, child).unwrap();
        let enc = super::sealed::seal_with_salt(
            &s.name_encryption.0,
            &filled(0x70),
            &aad,
            &super::name::pad(b"a/b"),
        )
        .unwrap();
        slash["encrypted"] = h(&enc);
        slash["name"] = h(b"a/b");
    }
    out.push((
        "fail_name_contains_slash".into(),
        fail(
            slash,
            "invalid_name",
            "a correctly encrypted name that is not a valid name (contains /)",
        ),
        None,
    ));
    let mut overlap = attrs_vector(&sample_file(), "");
    {
        let mut plain = sample_file().encode().unwrap().to_vec();
        let second = plain.len() - 64 + 16;
        plain[second..second + 8].copy_from_slice(&100u64.to_be_bytes());
        overlap["plaintext"] = h(&plain);
        let node = NodeId::from_bytes(filled(0xc0));
        let aad = super::attrs::aad(node, 42).unwrap();
        let sealed =
            super::sealed::seal_with_salt(&subkeys().attributes.0, &filled(0xd0), &aad, &plain)
                .unwrap();
        overlap["sealed"] = h(&sealed);
    }
    out.push((
        "fail_attributes_overlapping_objects".into(),
        fail(
            overlap,
            "malformed",
            "an authentic record whose object list overlaps: refused by validation",
        ),
        None,
    ));
    let mut version = attrs_vector(&sample_file(), "");
    version["version"] = json!(41);
    out.push((
        "fail_attributes_older_version".into(),
        fail(
            version,
            "authentication",
            "a record replayed as another version of the node",
        ),
        None,
    ));
    let mut other_node = attrs_vector(&sample_file(), "");
    other_node["node"] = json!(NodeId::from_bytes(filled(0xc1)).to_string());
    out.push((
        "fail_attributes_other_node".into(),
        fail(
            other_node,
            "authentication",
            "one node's record served for another node",
        ),
        None,
    ));
    let mut downgraded = attrs_vector(&sample_file(), "");
    let mut sealed = unhex(&downgraded, "sealed");
    sealed[0] = 0;
    downgraded["sealed"] = h(&sealed);
    out.push((
        "fail_attributes_unknown_version".into(),
        fail(
            downgraded,
            "version",
            "a sealed box with an unknown version byte",
        ),
        None,
    ));

    let base_len = 2 * SEG + 1000;
    let base = content_ciphertext(base_len);
    let seg = |i: usize| {
        let start = 28 + i * 65_552;
        base[start..(start + 65_552).min(base.len())].to_vec()
    };
    let header = base[..28].to_vec();
    let join = |parts: &[Vec<u8>]| {
        let mut v = header.clone();
        for p in parts {
            v.extend_from_slice(p);
        }
        v
    };
    let mut modified = base.clone();
    modified[28 + 65_552 + 100] ^= 1;
    let trusted = |v: Value| v; // plaintext_len stays the authenticated one
    let own_len = |mut v: Value, ct: &[u8]| {
        v["plaintext_len"] = json!(super::content::plaintext_len(ct.len() as u64).unwrap());
        v
    };
    let cases: Vec<(
        &str,
        Vec<u8>,
        Box<dyn Fn(Value, &[u8]) -> Value>,
        &str,
        &str,
    )> = vec![
        (
            "fail_content_modified",
            modified,
            Box::new(|v, _| trusted(v)),
            "authentication",
            "one bit flipped in the second segment",
        ),
        (
            "fail_content_reordered",
            join(&[seg(1), seg(0), seg(2)]),
            Box::new(|v, _| trusted(v)),
            "authentication",
            "the first two segments swapped",
        ),
        (
            "fail_content_dropped",
            join(&[seg(0), seg(2)]),
            Box::new(own_len),
            "authentication",
            "the middle segment dropped (length taken from the ciphertext)",
        ),
        (
            "fail_content_truncated",
            join(&[seg(0), seg(1)]),
            Box::new(own_len),
            "authentication",
            "truncated at a segment boundary (length taken from the ciphertext)",
        ),
        (
            "fail_content_truncated_trusted_len",
            join(&[seg(0), seg(1)]),
            Box::new(|v, _| trusted(v)),
            "length",
            "truncated at a segment boundary, against the authenticated length",
        ),
        (
            "fail_content_appended",
            join(&[seg(0), seg(1), seg(2), seg(1)]),
            Box::new(own_len),
            "authentication",
            "a segment appended after the last one",
        ),
    ];
    for (stem, ct, adjust, error, what) in cases {
        let v = content_vector(base_len, &format!("{stem}.bin"), &ct, what);
        let v = fail(adjust(v, &ct), error, what);
        out.push((stem.into(), v, Some(ct)));
    }
    // Re-use the valid ciphertext, changing where it claims to belong.
    let base_file = "content_three_segments.bin";
    let mut other_file = content_vector(base_len, base_file, &base, "");
    other_file["file"] = json!(NodeId::from_bytes(filled(0xe1)).to_string());
    out.push((
        "fail_content_other_file".into(),
        fail(
            other_file,
            "authentication",
            "an object moved to another file",
        ),
        None,
    ));
    let mut other_pos = content_vector(base_len, base_file, &base, "");
    other_pos["offset"] = json!(0);
    out.push((
        "fail_content_other_position".into(),
        fail(
            other_pos,
            "authentication",
            "an object moved to another position in its file",
        ),
        None,
    ));
    let mut replay = content_vector(base_len, base_file, &base, "");
    let newer = {
        let enc = ObjectEncryptor::with_seed(&subkeys().content, &content_binding(), &[0x34; 24])
            .unwrap();
        seal_all(enc, &pattern(base_len)).unwrap()
    };
    replay["object_digest"] = h(ObjectDigest::of(&newer).as_bytes());
    out.push((
        "fail_content_replayed_object".into(),
        fail(
            replay,
            "digest",
            "an older object served where the object list commits to a newer one",
        ),
        None,
    ));
    let mut committed = content_vector(
        base_len,
        base_file,
        &base,
        "a whole object checked against the seed its entry commits to",
    );
    committed["object_seed"] = h(&SEED);
    out.push(("content_committed_seed".into(), committed, None));
    let mut replay_seed = content_vector(base_len, base_file, &base, "");
    replay_seed["object_seed"] = h(&[0x34; 24]);
    out.push((
        "fail_content_replayed_object_seed".into(),
        fail(
            replay_seed,
            "seed",
            "an older object served where a version 2 object list commits to a newer one's seed",
        ),
        None,
    ));
    let mut v2 = base.clone();
    v2[3] = 2;
    let v = content_vector(base_len, "fail_content_unknown_version.bin", &v2, "");
    out.push((
        "fail_content_unknown_version".into(),
        fail(
            v,
            "version",
            "an object whose header names an unknown format version",
        ),
        Some(v2),
    ));
    out
}

// ---- checking the vectors ---------------------------------------------------

/// Runs one vector: Ok(()) if it verified (valid vectors also re-encrypt to
/// the same bytes), Err if an operation failed.
fn run(v: &Value) -> Result<(), CryptoError> {
    let key32 = |f: &str| arr::<32>(v, f);
    let id = |f: &str| -> NodeId { v[f].as_str().unwrap().parse().unwrap() };
    match v["kind"].as_str().unwrap() {
        "kdf" => {
            let params: KdfParams = serde_json::from_value(v["params"].clone()).unwrap();
            let keys = derive_account_keys(v["password"].as_str().unwrap().as_bytes(), &params)?;
            assert_eq!(keys.auth.expose(), &key32("auth_key"));
            assert_eq!(keys.kek.expose(), &key32("kek"));
        }
        "subkeys" => {
            let s = VaultKey::from_bytes(key32("vault_key")).subkeys()?;
            assert_eq!(s.name_encryption.expose(), &key32("name_encryption"));
            assert_eq!(s.name_tag.expose(), &key32("name_tag"));
            assert_eq!(s.attributes.expose(), &key32("attributes"));
            assert_eq!(s.content.expose(), &key32("content"));
        }
        "wrap" => {
            let account = v["account"].as_str().unwrap();
            let wrapped = unhex(v, "wrapped");
            let (key, purpose) = match v["purpose"].as_str().unwrap() {
                "password" => (
                    KeyEncryptionKey::from_bytes(key32("kek")).0,
                    WrapPurpose::Password,
                ),
                _ => {
                    // The written form, when given, must parse to the raw key.
                    let rk = RecoveryKey::from_bytes(key32("recovery_key"));
                    if let Some(text) = v.get("recovery_key_text").and_then(Value::as_str) {
                        assert_eq!(RecoveryKey::parse(text)?, rk);
                    }
                    (rk.wrapping_key()?, WrapPurpose::Recovery)
                }
            };
            let vk = keywrap::unwrap(&key, purpose, account, &wrapped)?;
            assert_eq!(vk.expose(), &key32("vault_key"));
            let again = keywrap::wrap_with_salt(&key, purpose, account, &vk, &arr(v, "salt"))?;
            assert_eq!(again, wrapped, "re-wrapping must reproduce the vector");
        }
        "name" => {
            let ek = NameEncryptionKey::from_bytes(key32("name_encryption_key"));
            let tk = NameTagKey::from_bytes(key32("name_tag_key"));
            let (parent, child) = (id("parent"), id("child"));
            let tag = NameTag::from_bytes(key32("tag"));
            let name = decrypt_name(&ek, &tk, parent, child, &unhex(v, "encrypted"), &tag)?;
            assert_eq!(name.as_slice(), unhex(v, "name").as_slice());
            let again = encrypt_name_with_salt(&ek, parent, child, &name, &arr(v, "salt"))?;
            assert_eq!(again, unhex(v, "encrypted"));
        }
        "attributes" => {
            let key = AttributeKey::from_bytes(key32("attributes_key"));
            let node = id("node");
            let version = num(v, "version");
            let attrs = open_attributes(&key, node, version, &unhex(v, "sealed"))?;
            assert_eq!(attrs, attrs_from_json(&v["record"]));
            assert_eq!(attrs.encode()?.as_slice(), unhex(v, "plaintext").as_slice());
            let again = seal_attributes_with_salt(&key, node, version, &attrs, &arr(v, "salt"))?;
            assert_eq!(again, unhex(v, "sealed"));
        }
        "content" => {
            let key = ContentKey::from_bytes(key32("content_key"));
            let file = id("file");
            let object: ObjectId = v["object"].as_str().unwrap().parse().unwrap();
            let offset = num(v, "offset");
            let len = num(v, "plaintext_len");
            let ct = std::fs::read(dir().join(v["ciphertext_file"].as_str().unwrap())).unwrap();
            assert_eq!(
                ObjectDigest::of(&ct).as_bytes(),
                &key32("ciphertext_sha256")
            );
            let check = if v.get("object_digest").is_some() {
                Some(ObjectCheck::Digest(ObjectDigest::from_bytes(key32(
                    "object_digest",
                ))))
            } else if v.get("object_seed").is_some() {
                Some(ObjectCheck::Seed(ObjectSeed::from_bytes(arr(
                    v,
                    "object_seed",
                ))))
            } else {
                None
            };
            let plain = if let Some(check) = check {
                let entry = ObjectEntry {
                    id: object,
                    offset,
                    len,
                    check,
                };
                open_object(&key, file, &entry, &ct)?
            } else {
                decrypt_object(
                    &key,
                    &ObjectBinding {
                        file,
                        object,
                        offset,
                    },
                    &ct,
                    len,
                )?
            };
            assert_eq!(plain, pattern(len));
            let enc = ObjectEncryptor::with_seed(
                &key,
                &ObjectBinding {
                    file,
                    object,
                    offset,
                },
                &arr(v, "seed"),
            )?;
            assert_eq!(
                seal_all(enc, &plain)?,
                ct,
                "re-encrypting must reproduce the vector"
            );
        }
        other => panic!("unknown vector kind {other}"),
    }
    Ok(())
}

#[test]
fn every_vector_file_verifies() {
    let mut seen = 0;
    let mut failures = 0;
    for entry in std::fs::read_dir(dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let result = run(&v);
        match v.get("expect_error").and_then(Value::as_str) {
            None => assert_eq!(result, Ok(()), "valid vector {stem} failed"),
            Some(expected) => {
                assert!(
                    stem.starts_with("fail_"),
                    "{stem} expects an error but is not named fail_*"
                );
                let err = result.expect_err(&format!("{stem} must fail"));
                assert_eq!(kind(&err), expected, "{stem}: got {err:?}");
                failures += 1;
            }
        }
        seen += 1;
    }
    assert!(seen >= 30, "only {seen} vectors found");
    assert!(failures >= 15, "only {failures} fail vectors");
}

#[test]
fn committed_vectors_match_this_implementation() {
    // Regenerating in memory must give exactly the committed files: a format
    // change cannot slip in without the vectors (and FORMAT.md) changing too.
    for (stem, v, bin) in all_vectors() {
        let committed: Value = serde_json::from_slice(
            &std::fs::read(dir().join(format!("{stem}.json")))
                .unwrap_or_else(|_| panic!("{stem}.json missing")),
        )
        .unwrap();
        assert_eq!(committed, v, "{stem}.json differs");
        if let Some(bin) = bin {
            let on_disk = std::fs::read(dir().join(format!("{stem}.bin"))).unwrap();
            assert!(on_disk == bin, "{stem}.bin differs");
        }
    }
}

#[test]
#[ignore = "writes the vector files; run deliberately"]
fn write_vectors() {
    if std::env::var_os("SECUREVAULT_WRITE_VECTORS").is_none() {
        return;
    }
    std::fs::create_dir_all(dir()).unwrap();
    for (stem, v, bin) in all_vectors() {
        let mut text = serde_json::to_string_pretty(&v).unwrap();
        text.push('\n');
        std::fs::write(dir().join(format!("{stem}.json")), text).unwrap();
        if let Some(bin) = bin {
            std::fs::write(dir().join(format!("{stem}.bin")), bin).unwrap();
        }
    }
}
