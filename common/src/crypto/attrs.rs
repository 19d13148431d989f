//! Node attribute records: everything about a node except its name and its
//! place in the tree, sealed as one record bound to the node's id and version.
//!
//! Plaintext layout (integers big-endian):
//!
//! ```text
//! u8  record version (1 or 2)   u8  kind        u32 mode (0o7777 bits)
//! u32 uid   u32 gid             u64 size (bytes of plaintext)
//! 4 x (i64 seconds, u32 nanoseconds)   atime, mtime, ctime, btime
//! u16 symlink target length, target bytes
//! u32 xattr count, then per xattr: u8 name length, name, u32 value length, value
//!     (names strictly ascending)
//! u32 object count, then per object: id[16], u64 offset, u64 length, then
//!     version 1: sha256[32]
//!     version 2: u8 1, sha256[32] | u8 2, seed[24]
//!     (offsets strictly ascending, no overlap, inside size)
//! ```
//!
//! `sealed = sealed box(attribute key, frame("securevault/v1/attributes",
//! [node id, u64be version]), plaintext)`. The object list commits to every
//! ciphertext object ([`ObjectCheck`]), so a server cannot serve an older
//! object, and bytes not covered by an object are a hole (zeros).
//!
//! The encoding is canonical: a record is written as version 1 exactly when
//! no entry commits to a seed (so records without new objects stay readable
//! by version-1 readers), and a version 2 record without a seed entry is
//! refused.

use std::collections::BTreeMap;

use zeroize::Zeroizing;

use super::CryptoError;
use super::aad::frame;
use super::content::{ObjectCheck, ObjectDigest, ObjectSeed, SEED_LEN};
use super::sealed;
use super::subkeys::AttributeKey;
use crate::codec::{Reader, Writer};
use crate::ids::{NodeId, ObjectId};

const LABEL: &str = "securevault/v1/attributes";
/// The newest version of the attribute record's plaintext layout (object
/// entries tagged with their kind of commitment).
pub const RECORD_VERSION: u8 = 2;
/// The first version: every object entry commits to a SHA-256 digest.
pub const RECORD_VERSION_DIGESTS: u8 = 1;
/// Longest symlink target (Linux PATH_MAX less the terminating NUL).
pub const MAX_SYMLINK_TARGET: usize = 4095;
/// Longest xattr name (XATTR_NAME_MAX).
pub const MAX_XATTR_NAME: usize = 255;
/// Largest xattr value (XATTR_SIZE_MAX).
pub const MAX_XATTR_VALUE: usize = 65536;
/// Most bytes of xattr names and values on one node.
pub const MAX_XATTR_TOTAL: usize = 256 * 1024;
/// Most objects in one file version.
pub const MAX_OBJECTS: usize = 1 << 22;
const V1_ENTRY_LEN: usize = 16 + 8 + 8 + 32;
/// The shortest tagged (version 2) entry: one committing to a seed.
const MIN_TAGGED_ENTRY_LEN: usize = 16 + 8 + 8 + 1 + SEED_LEN;
const CHECK_DIGEST: u8 = 1;
const CHECK_SEED: u8 = 2;

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum NodeKind {
    /// A regular file.
    File = 1,
    /// A directory.
    Directory = 2,
    /// A symbolic link.
    Symlink = 3,
    /// A named pipe.
    Fifo = 4,
    /// A Unix socket.
    Socket = 5,
}

impl NodeKind {
    /// The wire code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Reads a wire code.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => NodeKind::File,
            2 => NodeKind::Directory,
            3 => NodeKind::Symlink,
            4 => NodeKind::Fifo,
            5 => NodeKind::Socket,
            _ => return None,
        })
    }
}

/// A point in time: seconds since the Unix epoch and nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp {
    /// Seconds since 1970-01-01T00:00:00Z (negative before).
    pub secs: i64,
    /// Nanoseconds, below 1_000_000_000.
    pub nanos: u32,
}

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => Self {
                secs: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                nanos: d.subsec_nanos(),
            },
            Err(_) => Self::default(),
        }
    }
}

/// One ciphertext object of a file version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEntry {
    /// The object's id on the server.
    pub id: ObjectId,
    /// Plaintext offset of the object's first byte in the file.
    pub offset: u64,
    /// Plaintext length of the object (at least 1).
    pub len: u64,
    /// What the record commits to: the object's seed, or (records written
    /// before version 2) the SHA-256 of its whole ciphertext.
    pub check: ObjectCheck,
}

impl ObjectEntry {
    /// Appends the entry in the tagged form of record version 2 (also used
    /// by the client's journal).
    pub fn encode_tagged(&self, w: &mut Vec<u8>) {
        w.put_bytes(self.id.as_bytes());
        w.put_u64(self.offset);
        w.put_u64(self.len);
        match &self.check {
            ObjectCheck::Digest(d) => {
                w.put_u8(CHECK_DIGEST);
                w.put_bytes(d.as_bytes());
            }
            ObjectCheck::Seed(s) => {
                w.put_u8(CHECK_SEED);
                w.put_bytes(s.as_bytes());
            }
        }
    }

    /// Reads one entry in the tagged form of [`Self::encode_tagged`].
    pub fn decode_tagged(r: &mut Reader<'_>) -> Result<Self, CryptoError> {
        let m = CryptoError::malformed("object entry");
        let id = ObjectId::from_bytes(r.array().map_err(&m)?);
        let offset = r.u64().map_err(&m)?;
        let len = r.u64().map_err(&m)?;
        let check = match r.u8().map_err(&m)? {
            CHECK_DIGEST => ObjectCheck::Digest(ObjectDigest::from_bytes(r.array().map_err(&m)?)),
            CHECK_SEED => ObjectCheck::Seed(ObjectSeed::from_bytes(r.array().map_err(&m)?)),
            _ => return Err(invalid("unknown object commitment")),
        };
        Ok(Self {
            id,
            offset,
            len,
            check,
        })
    }
}

/// The decrypted attribute record of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAttributes {
    /// What the node is.
    pub kind: NodeKind,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    /// Owner as the creating client saw it.
    pub uid: u32,
    /// Group as the creating client saw it.
    pub gid: u32,
    /// Plaintext size: the file length, or a symlink's target length.
    pub size: u64,
    /// Last access.
    pub atime: Timestamp,
    /// Last content change.
    pub mtime: Timestamp,
    /// Last attribute change.
    pub ctime: Timestamp,
    /// Creation.
    pub btime: Timestamp,
    /// A symlink's target; empty for every other kind.
    pub symlink_target: Vec<u8>,
    /// Extended attributes.
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// A file's ciphertext objects, ascending by offset.
    pub objects: Vec<ObjectEntry>,
}

fn invalid(reason: &'static str) -> CryptoError {
    CryptoError::Malformed {
        what: "attribute record",
        reason,
    }
}

impl NodeAttributes {
    /// A new, empty node of `kind` with every time set to `now`.
    pub fn new(kind: NodeKind, mode: u32, uid: u32, gid: u32, now: Timestamp) -> Self {
        Self {
            kind,
            mode: mode & 0o7777,
            uid,
            gid,
            size: 0,
            atime: now,
            mtime: now,
            ctime: now,
            btime: now,
            symlink_target: Vec::new(),
            xattrs: BTreeMap::new(),
            objects: Vec::new(),
        }
    }

    /// Checks the invariants of the record.
    pub fn validate(&self) -> Result<(), CryptoError> {
        if self.mode & !0o7777 != 0 {
            return Err(invalid("mode has bits outside 0o7777"));
        }
        for t in [self.atime, self.mtime, self.ctime, self.btime] {
            if t.nanos >= 1_000_000_000 {
                return Err(invalid("nanoseconds out of range"));
            }
        }
        let is_symlink = self.kind == NodeKind::Symlink;
        if is_symlink {
            if self.symlink_target.is_empty() || self.symlink_target.len() > MAX_SYMLINK_TARGET {
                return Err(invalid("symlink target length"));
            }
            if self.symlink_target.contains(&0) {
                return Err(invalid("symlink target contains NUL"));
            }
            if self.size != self.symlink_target.len() as u64 {
                return Err(invalid("symlink size differs from its target length"));
            }
        } else if !self.symlink_target.is_empty() {
            return Err(invalid("symlink target on a node that is not a symlink"));
        }
        if self.kind != NodeKind::File && !is_symlink && self.size != 0 {
            return Err(invalid("size on a node without contents"));
        }
        if self.kind != NodeKind::File && !self.objects.is_empty() {
            return Err(invalid("objects on a node that is not a file"));
        }
        let mut total = 0usize;
        for (name, value) in &self.xattrs {
            if name.is_empty() || name.len() > MAX_XATTR_NAME || name.contains(&0) {
                return Err(invalid("xattr name length"));
            }
            if value.len() > MAX_XATTR_VALUE {
                return Err(invalid("xattr value too large"));
            }
            total = total.saturating_add(name.len() + value.len());
        }
        if total > MAX_XATTR_TOTAL {
            return Err(invalid("xattrs too large in total"));
        }
        if self.objects.len() > MAX_OBJECTS {
            return Err(invalid("too many objects"));
        }
        let mut next_free = 0u64;
        for o in &self.objects {
            if o.len == 0 {
                return Err(invalid("empty object"));
            }
            if o.offset < next_free {
                return Err(invalid("objects overlap or are out of order"));
            }
            next_free = o
                .offset
                .checked_add(o.len)
                .ok_or(invalid("object end overflows"))?;
            if next_free > self.size {
                return Err(invalid("object extends past the file size"));
            }
        }
        Ok(())
    }

    /// The plaintext record (validated first).
    pub fn encode(&self) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        self.validate()?;
        let tagged = self
            .objects
            .iter()
            .any(|o| matches!(o.check, ObjectCheck::Seed(_)));
        let mut out = Zeroizing::new(Vec::with_capacity(
            90 + self.symlink_target.len() + self.objects.len() * (V1_ENTRY_LEN + 1),
        ));
        let w: &mut Vec<u8> = &mut out;
        w.put_u8(if tagged {
            RECORD_VERSION
        } else {
            RECORD_VERSION_DIGESTS
        });
        w.put_u8(self.kind.code());
        w.put_u32(self.mode);
        w.put_u32(self.uid);
        w.put_u32(self.gid);
        w.put_u64(self.size);
        for t in [self.atime, self.mtime, self.ctime, self.btime] {
            w.put_i64(t.secs);
            w.put_u32(t.nanos);
        }
        // Lengths below are bounded by validate().
        w.put_u16(u16::try_from(self.symlink_target.len()).map_err(|_| CryptoError::OutOfRange)?);
        w.put_bytes(&self.symlink_target);
        w.put_u32(u32::try_from(self.xattrs.len()).map_err(|_| CryptoError::OutOfRange)?);
        for (name, value) in &self.xattrs {
            w.put_u8(u8::try_from(name.len()).map_err(|_| CryptoError::OutOfRange)?);
            w.put_bytes(name);
            w.put_u32(u32::try_from(value.len()).map_err(|_| CryptoError::OutOfRange)?);
            w.put_bytes(value);
        }
        w.put_u32(u32::try_from(self.objects.len()).map_err(|_| CryptoError::OutOfRange)?);
        for o in &self.objects {
            match (&o.check, tagged) {
                (_, true) => o.encode_tagged(w),
                (ObjectCheck::Digest(d), false) => {
                    w.put_bytes(o.id.as_bytes());
                    w.put_u64(o.offset);
                    w.put_u64(o.len);
                    w.put_bytes(d.as_bytes());
                }
                (ObjectCheck::Seed(_), false) => return Err(CryptoError::OutOfRange),
            }
        }
        Ok(out)
    }

    /// Parses and validates a plaintext record.
    pub fn decode(bytes: &[u8]) -> Result<Self, CryptoError> {
        let m = CryptoError::malformed("attribute record");
        let mut r = Reader::new(bytes);
        let version = r.u8().map_err(&m)?;
        let tagged = match version {
            RECORD_VERSION_DIGESTS => false,
            RECORD_VERSION => true,
            _ => return Err(CryptoError::UnsupportedVersion(version)),
        };
        let kind = NodeKind::from_code(r.u8().map_err(&m)?).ok_or(invalid("unknown node kind"))?;
        let mode = r.u32().map_err(&m)?;
        let uid = r.u32().map_err(&m)?;
        let gid = r.u32().map_err(&m)?;
        let size = r.u64().map_err(&m)?;
        let mut times = [Timestamp::default(); 4];
        for t in &mut times {
            t.secs = r.i64().map_err(&m)?;
            t.nanos = r.u32().map_err(&m)?;
        }
        let [atime, mtime, ctime, btime] = times;
        let target_len = usize::from(r.u16().map_err(&m)?);
        let symlink_target = r.bytes(target_len).map_err(&m)?.to_vec();
        let xattr_count = r.u32().map_err(&m)?;
        let mut xattrs = BTreeMap::new();
        let mut previous: Option<&[u8]> = None;
        for _ in 0..xattr_count {
            let name_len = usize::from(r.u8().map_err(&m)?);
            let name = r.bytes(name_len).map_err(&m)?;
            if previous.is_some_and(|p| p >= name) {
                return Err(invalid("xattr names not strictly ascending"));
            }
            previous = Some(name);
            let value_len = usize::try_from(r.u32().map_err(&m)?).map_err(|_| invalid("xattr"))?;
            let value = r.bytes(value_len).map_err(&m)?;
            xattrs.insert(name.to_vec(), value.to_vec());
        }
        let object_count = usize::try_from(r.u32().map_err(&m)?).map_err(|_| invalid("objects"))?;
        let min_entry = if tagged {
            MIN_TAGGED_ENTRY_LEN
        } else {
            V1_ENTRY_LEN
        };
        if object_count > r.remaining() / min_entry {
            return Err(invalid("object count exceeds the record"));
        }
        let mut objects = Vec::with_capacity(object_count);
        for _ in 0..object_count {
            objects.push(if tagged {
                ObjectEntry::decode_tagged(&mut r)?
            } else {
                ObjectEntry {
                    id: ObjectId::from_bytes(r.array().map_err(&m)?),
                    offset: r.u64().map_err(&m)?,
                    len: r.u64().map_err(&m)?,
                    check: ObjectCheck::Digest(ObjectDigest::from_bytes(r.array().map_err(&m)?)),
                }
            });
        }
        r.finish().map_err(&m)?;
        // Canonical: version 2 only when some entry needs it.
        if tagged
            && !objects
                .iter()
                .any(|o| matches!(o.check, ObjectCheck::Seed(_)))
        {
            return Err(invalid("a version 2 record without a seed commitment"));
        }
        let attrs = Self {
            kind,
            mode,
            uid,
            gid,
            size,
            atime,
            mtime,
            ctime,
            btime,
            symlink_target,
            xattrs,
            objects,
        };
        attrs.validate()?;
        Ok(attrs)
    }
}

pub(crate) fn aad(node: NodeId, version: u64) -> Result<Vec<u8>, CryptoError> {
    frame(LABEL, &[node.as_bytes(), &version.to_be_bytes()])
}

#[cfg(test)]
pub(crate) fn seal_attributes_with_salt(
    key: &AttributeKey,
    node: NodeId,
    version: u64,
    attrs: &NodeAttributes,
    salt: &[u8; sealed::SALT_LEN],
) -> Result<Vec<u8>, CryptoError> {
    sealed::seal_with_salt(&key.0, salt, &aad(node, version)?, &attrs.encode()?)
}

/// Seals the record of `node` at `version`.
pub fn seal_attributes(
    key: &AttributeKey,
    node: NodeId,
    version: u64,
    attrs: &NodeAttributes,
) -> Result<Vec<u8>, CryptoError> {
    sealed::seal(&key.0, &aad(node, version)?, &attrs.encode()?)
}

/// Opens the record of `node` at `version`: fails if it was sealed for any
/// other node or version, or modified.
pub fn open_attributes(
    key: &AttributeKey,
    node: NodeId,
    version: u64,
    sealed: &[u8],
) -> Result<NodeAttributes, CryptoError> {
    let plain = sealed::open(&key.0, &aad(node, version)?, sealed)?;
    NodeAttributes::decode(&plain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::subkeys::VaultKey;

    fn key() -> AttributeKey {
        VaultKey::from_bytes([6; 32]).subkeys().unwrap().attributes
    }

    fn file() -> NodeAttributes {
        let mut a = NodeAttributes::new(
            NodeKind::File,
            0o644,
            1000,
            1000,
            Timestamp {
                secs: 1_700_000_000,
                nanos: 5,
            },
        );
        a.size = 10_000;
        a.xattrs.insert(b"user.a".to_vec(), b"1".to_vec());
        a.xattrs.insert(b"user.b".to_vec(), Vec::new());
        a.objects.push(ObjectEntry {
            id: ObjectId::from_bytes([1; 16]),
            offset: 0,
            len: 4096,
            check: ObjectCheck::Digest(ObjectDigest::from_bytes([2; 32])),
        });
        a.objects.push(ObjectEntry {
            id: ObjectId::from_bytes([3; 16]),
            offset: 8192,
            len: 1808,
            check: ObjectCheck::Digest(ObjectDigest::from_bytes([4; 32])),
        });
        a
    }

    const N: NodeId = NodeId::from_bytes([9; 16]);

    #[test]
    fn encode_decode_round_trip() {
        let a = file();
        let bytes = a.encode().unwrap();
        assert_eq!(NodeAttributes::decode(&bytes).unwrap(), a);
        let mut link = NodeAttributes::new(NodeKind::Symlink, 0o777, 0, 0, Timestamp::now());
        link.symlink_target = b"../target".to_vec();
        link.size = 9;
        assert_eq!(
            NodeAttributes::decode(&link.encode().unwrap()).unwrap(),
            link
        );
    }

    #[test]
    fn seal_is_bound_to_node_and_version() {
        let a = file();
        let s = seal_attributes(&key(), N, 7, &a).unwrap();
        assert_eq!(open_attributes(&key(), N, 7, &s).unwrap(), a);
        assert_eq!(
            open_attributes(&key(), N, 6, &s),
            Err(CryptoError::Authentication)
        );
        assert_eq!(
            open_attributes(&key(), NodeId::ROOT, 7, &s),
            Err(CryptoError::Authentication)
        );
    }

    #[test]
    fn invalid_records_are_refused() {
        let mut overlapping = file();
        overlapping.objects[1].offset = 100;
        assert!(overlapping.encode().is_err());
        let mut past_end = file();
        past_end.size = 9000;
        assert!(past_end.encode().is_err());
        let mut dir_with_objects = file();
        dir_with_objects.kind = NodeKind::Directory;
        assert!(dir_with_objects.encode().is_err());
        let mut bad_nanos = file();
        bad_nanos.mtime.nanos = 1_000_000_000;
        assert!(bad_nanos.encode().is_err());
        let mut bad_mode = file();
        bad_mode.mode = 0o100644;
        assert!(bad_mode.encode().is_err());
        let mut empty_link = NodeAttributes::new(NodeKind::Symlink, 0o777, 0, 0, Timestamp::now());
        assert!(empty_link.encode().is_err());
        empty_link.symlink_target = b"x".to_vec();
        assert!(
            empty_link.encode().is_err(),
            "size must equal the target length"
        );
    }

    #[test]
    fn decode_rejects_truncation_trailing_bytes_and_unsorted_xattrs() {
        let bytes = file().encode().unwrap();
        for cut in 0..bytes.len() {
            assert!(
                NodeAttributes::decode(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut long = bytes.to_vec();
        long.push(0);
        assert!(NodeAttributes::decode(&long).is_err());
        let mut v3 = bytes.to_vec();
        v3[0] = 3;
        assert_eq!(
            NodeAttributes::decode(&v3),
            Err(CryptoError::UnsupportedVersion(3))
        );
        // Swap the two xattr names ("user.a" at the first, "user.b" second).
        let text = bytes.to_vec();
        let a = text.windows(6).position(|w| w == b"user.a").unwrap();
        let b = text.windows(6).position(|w| w == b"user.b").unwrap();
        let mut swapped = text.clone();
        swapped[a + 5] = b'b';
        swapped[b + 5] = b'a';
        assert!(NodeAttributes::decode(&swapped).is_err());
    }

    /// `file()` with its second object rewritten: a new object commits to
    /// its seed, the untouched first one keeps its digest.
    fn file_with_a_new_object() -> NodeAttributes {
        let mut a = file();
        a.objects[1].check = ObjectCheck::Seed(ObjectSeed::from_bytes([5; SEED_LEN]));
        a
    }

    #[test]
    fn records_are_version_1_until_an_entry_commits_to_a_seed() {
        let v1 = file().encode().unwrap();
        assert_eq!(v1[0], RECORD_VERSION_DIGESTS);
        let mut dir = NodeAttributes::new(NodeKind::Directory, 0o755, 0, 0, Timestamp::now());
        dir.size = 0;
        assert_eq!(dir.encode().unwrap()[0], RECORD_VERSION_DIGESTS);
        let a = file_with_a_new_object();
        let v2 = a.encode().unwrap();
        assert_eq!(v2[0], RECORD_VERSION);
        // Tagged entries: a digest entry is one byte longer, a seed entry
        // eight bytes shorter.
        assert_eq!(v2.len(), v1.len() + 1 + (1 + SEED_LEN) - 32);
        assert_eq!(NodeAttributes::decode(&v2).unwrap(), a);
        let s = seal_attributes(&key(), N, 3, &a).unwrap();
        assert_eq!(open_attributes(&key(), N, 3, &s).unwrap(), a);
    }

    #[test]
    fn version_2_records_decode_strictly() {
        let bytes = file_with_a_new_object().encode().unwrap();
        for cut in 0..bytes.len() {
            assert!(
                NodeAttributes::decode(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        // The seed entry is last: its tag sits 25 bytes before the end.
        let tag_at = bytes.len() - 1 - SEED_LEN;
        assert_eq!(bytes[tag_at], CHECK_SEED);
        let mut unknown = bytes.to_vec();
        unknown[tag_at] = 3;
        assert!(matches!(
            NodeAttributes::decode(&unknown),
            Err(CryptoError::Malformed { .. })
        ));
        // A version 2 record of digests only is not canonical.
        let mut a = file();
        let mut only_digests = Vec::new();
        only_digests.push(RECORD_VERSION);
        let v1 = a.encode().unwrap();
        let objects_at = v1.len() - 2 * V1_ENTRY_LEN - 4;
        only_digests.extend_from_slice(&v1[1..objects_at + 4]);
        for o in &a.objects {
            o.encode_tagged(&mut only_digests);
        }
        assert!(matches!(
            NodeAttributes::decode(&only_digests),
            Err(CryptoError::Malformed { .. })
        ));
        // ... while the same bytes with one seed entry are.
        a.objects[0].check = ObjectCheck::Seed(ObjectSeed::from_bytes([8; SEED_LEN]));
        let mut with_seed = only_digests[..objects_at + 4].to_vec();
        for o in &a.objects {
            o.encode_tagged(&mut with_seed);
        }
        assert_eq!(NodeAttributes::decode(&with_seed).unwrap(), a);
    }

    #[test]
    fn huge_object_count_does_not_allocate() {
        let mut bytes = NodeAttributes::new(NodeKind::File, 0, 0, 0, Timestamp::default())
            .encode()
            .unwrap()
            .to_vec();
        let n = bytes.len();
        bytes[n - 4..].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(NodeAttributes::decode(&bytes).is_err());
    }
}
