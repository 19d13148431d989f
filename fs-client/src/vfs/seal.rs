//! The vault's keys applied to the tree: name tags and encrypted names for
//! entries, sealed attribute records for nodes, and the kind mappings
//! between the wire, the record and the kernel.
//!
//! Every record opened here is checked against the node it came with: its
//! AAD binds node id and version, and its kind must match the kind the
//! server states. Every name is checked against its tag.

use common::NodeId;
use common::api::tree::{EntryInfo, Kind, NodeInfo};
use common::crypto::CryptoError;
use common::crypto::attrs::{NodeAttributes, NodeKind, open_attributes, seal_attributes};
use common::crypto::name::{NameTag, decrypt_name, encrypt_name, name_tag};
use common::crypto::subkeys::VaultSubkeys;
use zeroize::Zeroizing;

use super::error::{FsError, FsResult};
use super::types::FileKind;

/// Longest entry name.
pub(crate) const NAME_MAX: usize = 255;

/// Checks a name before it is tagged or encrypted.
pub(crate) fn check_name(name: &[u8]) -> FsResult<()> {
    if name.len() > NAME_MAX {
        return Err(FsError::NameTooLong);
    }
    if name.is_empty() || name == b"." || name == b".." || name.iter().any(|&b| b == b'/' || b == 0)
    {
        return Err(FsError::Invalid);
    }
    Ok(())
}

/// The tag the server indexes `name` in `parent` by.
pub(crate) fn tag(keys: &VaultSubkeys, parent: NodeId, name: &[u8]) -> FsResult<NameTag> {
    check_name(name)?;
    Ok(name_tag(&keys.name_tag, parent, name)?)
}

/// `name` encrypted for the entry `parent` → `child`.
pub(crate) fn encrypt(
    keys: &VaultSubkeys,
    parent: NodeId,
    child: NodeId,
    name: &[u8],
) -> FsResult<Vec<u8>> {
    check_name(name)?;
    Ok(encrypt_name(&keys.name_encryption, parent, child, name)?)
}

/// The plaintext name of an entry of `parent`, checked against its tag.
pub(crate) fn decrypt(
    keys: &VaultSubkeys,
    parent: NodeId,
    entry: &EntryInfo,
) -> FsResult<Zeroizing<Vec<u8>>> {
    Ok(decrypt_name(
        &keys.name_encryption,
        &keys.name_tag,
        parent,
        entry.node.id,
        entry.encrypted_name.as_bytes(),
        &entry.tag,
    )?)
}

/// Seals `attrs` as the record of `id` at `version`.
pub(crate) fn seal(
    keys: &VaultSubkeys,
    id: NodeId,
    version: u64,
    attrs: &NodeAttributes,
) -> FsResult<Vec<u8>> {
    Ok(seal_attributes(&keys.attributes, id, version, attrs)?)
}

/// Opens a node's record and checks it matches what the server says the
/// node is.
pub(crate) fn open(keys: &VaultSubkeys, info: &NodeInfo) -> FsResult<NodeAttributes> {
    let attrs = open_attributes(
        &keys.attributes,
        info.id,
        info.version,
        info.record.as_bytes(),
    )?;
    if wire_kind(attrs.kind) != info.kind {
        return Err(FsError::Integrity(CryptoError::Malformed {
            what: "attribute record",
            reason: "kind differs from the node's",
        }));
    }
    Ok(attrs)
}

/// The wire kind of a record kind.
pub(crate) fn wire_kind(kind: NodeKind) -> Kind {
    match kind {
        NodeKind::File => Kind::File,
        NodeKind::Directory => Kind::Directory,
        NodeKind::Symlink => Kind::Symlink,
        NodeKind::Fifo => Kind::Fifo,
        NodeKind::Socket => Kind::Socket,
    }
}

/// The kernel's kind of a record kind.
pub(crate) fn file_kind(kind: NodeKind) -> FileKind {
    match kind {
        NodeKind::File => FileKind::File,
        NodeKind::Directory => FileKind::Directory,
        NodeKind::Symlink => FileKind::Symlink,
        NodeKind::Fifo => FileKind::Fifo,
        NodeKind::Socket => FileKind::Socket,
    }
}
