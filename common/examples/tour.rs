//! A tour of the crypto core, run by `scripts/demo.sh` until the mount lands:
//! derives account keys from a password, wraps a vault key, encrypts a name,
//! an attribute record and a file, reads a range back, and shows a tampered
//! byte being caught.

use std::process::ExitCode;

use common::crypto::CryptoError;
use common::crypto::attrs::{
    NodeAttributes, NodeKind, ObjectEntry, Timestamp, open_attributes, seal_attributes,
};
use common::crypto::content::{
    HEADER_LEN, ObjectBinding, ObjectCheck, ObjectDecryptor, ObjectSeed, ciphertext_range,
    encrypt_object, open_object, segments_for_range,
};
use common::crypto::kdf::{KdfParams, derive_account_keys};
use common::crypto::keywrap::{unwrap_vault_key, wrap_vault_key};
use common::crypto::name::{decrypt_name, encrypt_name, name_tag};
use common::crypto::recovery::RecoveryKey;
use common::crypto::subkeys::VaultKey;
use common::{NodeId, ObjectId};

fn main() -> ExitCode {
    match tour() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn tour() -> Result<(), CryptoError> {
    let account = "demo@example.org";
    let params = KdfParams::generate()?;
    let started = std::time::Instant::now();
    let keys = derive_account_keys(b"a demo password", &params)?;
    println!(
        "Argon2id (m={} MiB, t={}, p={}) took {:.2?}; the server would get only the auth key.",
        params.memory_kib / 1024,
        params.iterations,
        params.parallelism,
        started.elapsed()
    );

    let vault_key = VaultKey::generate()?;
    let wrapped = wrap_vault_key(&keys.kek, account, &vault_key)?;
    let recovery = RecoveryKey::generate()?;
    println!(
        "Wrapped vault key: {} bytes. A recovery key looks like:",
        wrapped.len()
    );
    println!("    {}", recovery.to_display_string()?.as_str());
    let keys_again = derive_account_keys(b"a demo password", &params)?;
    let vault_key = unwrap_vault_key(&keys_again.kek, account, &wrapped)?;
    let sub = vault_key.subkeys()?;

    let dir = NodeId::random()?;
    let file = NodeId::random()?;
    let name = b"holiday plans.txt";
    let enc_name = encrypt_name(&sub.name_encryption, dir, file, name)?;
    let tag = name_tag(&sub.name_tag, dir, name)?;
    println!(
        "Name {:?} -> {} bytes of ciphertext, lookup tag {}…",
        String::from_utf8_lossy(name),
        enc_name.len(),
        &hex::encode(tag.as_bytes())[..16]
    );
    let back = decrypt_name(
        &sub.name_encryption,
        &sub.name_tag,
        dir,
        file,
        &enc_name,
        &tag,
    )?;
    assert_eq!(back.as_slice(), name);

    let contents: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let binding = ObjectBinding {
        file,
        object: ObjectId::random()?,
        offset: 0,
    };
    let object = encrypt_object(&sub.content, &binding, &contents)?;
    let entry = ObjectEntry {
        id: binding.object,
        offset: 0,
        len: contents.len() as u64,
        check: ObjectCheck::Seed(ObjectSeed::of_header(&object)?),
    };
    let mut attrs = NodeAttributes::new(NodeKind::File, 0o644, 1000, 1000, Timestamp::now());
    attrs.size = entry.len;
    attrs.objects.push(entry.clone());
    let record = seal_attributes(&sub.attributes, file, 1, &attrs)?;
    println!(
        "File of {} bytes -> object of {} bytes; attribute record {} bytes.",
        contents.len(),
        object.len(),
        record.len()
    );
    let attrs = open_attributes(&sub.attributes, file, 1, &record)?;
    let entry = attrs.objects.first().ok_or(CryptoError::OutOfRange)?;
    assert_eq!(open_object(&sub.content, file, entry, &object)?, contents);

    // A 100-byte read in the middle needs the header and one segment.
    let segments = segments_for_range(entry.len, 500_000, 100);
    let range = ciphertext_range(entry.len, segments.clone())?;
    let header = object.get(..HEADER_LEN).ok_or(CryptoError::OutOfRange)?;
    let dec = ObjectDecryptor::for_entry(&sub.content, file, entry, header)?;
    let slice = object
        .get(usize::try_from(range.start).unwrap_or(0)..usize::try_from(range.end).unwrap_or(0))
        .ok_or(CryptoError::OutOfRange)?;
    let part = dec.decrypt_range(500_000, 100, slice)?;
    assert_eq!(
        part.as_slice(),
        contents.get(500_000..500_100).unwrap_or_default()
    );
    println!("Read 100 bytes at offset 500000 by fetching segments {segments:?} only.");

    let mut tampered = object.clone();
    if let Some(b) = tampered.get_mut(100_000) {
        *b ^= 1;
    }
    match open_object(&sub.content, file, entry, &tampered) {
        Err(e) => println!("One flipped bit in the stored object: {e}."),
        Ok(_) => return Err(CryptoError::Authentication),
    }
    Ok(())
}
