//! Pack files of the disk cache: the small objects of one commit written
//! together as one file, so caching a batch of small files costs one new
//! file (one inode, one directory entry) instead of one per object.
//!
//! ```text
//! pack-<16 hex>:  "SVP1" | count (u32 BE) | count x (object id [16] | length (u32 BE)) | the objects, in that order
//! ```
//!
//! A pack is written whole and published by a rename, like an object file,
//! so a pack under its real name is complete; [`read_directory`] still
//! checks that the directory and the file's length agree, and a pack that
//! does not is dropped at open. Its contents are ciphertext that the reader
//! authenticates, as for every cached object.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use common::ObjectId;

/// Start of every pack.
const MAGIC: &[u8; 4] = b"SVP1";
/// Bytes of the fixed part of the header.
const FIXED: usize = 8;
/// Bytes of one object's line in the directory.
const LINE: usize = 20;
/// Name prefix of pack files.
const PREFIX: &str = "pack-";

/// Where one object lies in a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Placed {
    pub id: ObjectId,
    /// From the start of the file.
    pub offset: u64,
    pub len: u64,
}

/// The file name of pack `n`.
pub(super) fn name(n: u64) -> String {
    format!("{PREFIX}{n:016x}")
}

/// The pack number of a file name, if it is a pack's.
pub(super) fn parse_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix(PREFIX)?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// The bytes of a pack of `objects`, and where each lies in it.
pub(super) fn encode(objects: &[(ObjectId, &[u8])]) -> io::Result<(Vec<u8>, Vec<Placed>)> {
    let count = u32::try_from(objects.len()).map_err(|_| invalid("too many objects"))?;
    let header = FIXED as u64 + LINE as u64 * u64::from(count);
    let data: u64 = objects.iter().map(|(_, b)| b.len() as u64).sum();
    let total = usize::try_from(header + data).map_err(|_| invalid("pack too large"))?;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&count.to_be_bytes());
    let mut placed = Vec::with_capacity(objects.len());
    let mut offset = header;
    for (id, bytes) in objects {
        let len = u32::try_from(bytes.len()).map_err(|_| invalid("object too large"))?;
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(&len.to_be_bytes());
        placed.push(Placed {
            id: *id,
            offset,
            len: u64::from(len),
        });
        offset += u64::from(len);
    }
    for (_, bytes) in objects {
        out.extend_from_slice(bytes);
    }
    Ok((out, placed))
}

/// Reads and checks the directory of the pack `file`, `file_len` bytes
/// long: the magic, and lengths that add up to exactly the file.
pub(super) fn read_directory(file: &File, file_len: u64) -> io::Result<Vec<Placed>> {
    let mut fixed = [0u8; FIXED];
    file.read_exact_at(&mut fixed, 0)?;
    let (magic, count) = fixed.split_at(4);
    if magic != MAGIC {
        return Err(invalid("not a pack"));
    }
    let count = u32::from_be_bytes(count.try_into().map_err(|_| invalid("header"))?);
    let header = FIXED as u64 + LINE as u64 * u64::from(count);
    if header > file_len {
        return Err(invalid("directory longer than the file"));
    }
    let lines_len = usize::try_from(header - FIXED as u64).map_err(|_| invalid("header"))?;
    let mut lines = vec![0u8; lines_len];
    file.read_exact_at(&mut lines, FIXED as u64)?;
    let mut placed = Vec::with_capacity(lines.len() / LINE);
    let mut offset = header;
    for line in lines.chunks_exact(LINE) {
        let (id, len) = line.split_at(16);
        let id: [u8; 16] = id.try_into().map_err(|_| invalid("id"))?;
        let len = u64::from(u32::from_be_bytes(
            len.try_into().map_err(|_| invalid("length"))?,
        ));
        placed.push(Placed {
            id: ObjectId::from_bytes(id),
            offset,
            len,
        });
        offset = offset.saturating_add(len);
    }
    if offset != file_len {
        return Err(invalid("lengths do not add up to the file"));
    }
    Ok(placed)
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("cache pack: {what}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::Write;

    use super::*;

    fn id(n: u8) -> ObjectId {
        ObjectId::from_bytes([n; 16])
    }

    fn written(bytes: &[u8]) -> (tempfile::NamedTempFile, u64) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        (f, bytes.len() as u64)
    }

    #[test]
    fn a_pack_reads_back_where_each_object_is() {
        let objects: Vec<(ObjectId, &[u8])> =
            vec![(id(1), b"one"), (id(2), b""), (id(3), b"three!")];
        let (bytes, placed) = encode(&objects).unwrap();
        let (f, len) = written(&bytes);
        assert_eq!(read_directory(f.as_file(), len).unwrap(), placed);
        for (p, (i, b)) in placed.iter().zip(&objects) {
            assert_eq!(p.id, *i);
            let at = usize::try_from(p.offset).unwrap();
            assert_eq!(&bytes[at..at + b.len()], *b);
        }
    }

    #[test]
    fn a_damaged_pack_is_refused() {
        let (bytes, _) = encode(&[(id(1), b"one".as_slice()), (id(2), b"two")]).unwrap();
        for cut in [0, 3, 8, 20, bytes.len() - 1] {
            let (f, len) = written(&bytes[..cut]);
            assert!(read_directory(f.as_file(), len).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        let (f, len) = written(&longer);
        assert!(read_directory(f.as_file(), len).is_err());
        let mut magic = bytes.clone();
        magic[0] ^= 1;
        let (f, len) = written(&magic);
        assert!(read_directory(f.as_file(), len).is_err());
        // A count far beyond the file is caught before anything is read.
        let mut count = bytes;
        count[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        let (f, len) = written(&count);
        assert!(read_directory(f.as_file(), len).is_err());
    }

    #[test]
    fn names_round_trip_and_others_are_not_packs() {
        assert_eq!(parse_name(&name(0x1234)), Some(0x1234));
        assert_eq!(parse_name(&name(u64::MAX)), Some(u64::MAX));
        for other in [
            "pack-12",
            "pack-000000000000000g",
            "0123456789abcdef0123456789abcdef",
            "x.tmp",
        ] {
            assert_eq!(parse_name(other), None, "{other}");
        }
    }
}
