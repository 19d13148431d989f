//! Files made here before the server has seen them.
//!
//! When the parent's complete listing (see `names`) says a name is free,
//! `create` makes the file in memory only: its node id is chosen here, and
//! its manifest (base version 0, parent and name) is in the journal once
//! it is first closed (or renamed, synced or its attributes set): a file
//! is promised to survive a crash once closed. The commit creates it on the
//! server together with its contents, many files in one request (see
//! `batch`). Until then this mount answers for it: lookups find it, a
//! rename moves it and an unlink drops it without the server ever seeing
//! it (an editor's or rsync's temporary file costs nothing).
//!
//! Anything that needs the server to know the file first (a listing of
//! its directory, `rmdir` of it, a hard link, a rename onto an existing
//! name) commits the pending files of that directory first.
//!
//! The create can still fail on the server: another device took the name
//! meanwhile (the file keeps a conflicted-copy name instead, never
//! replacing theirs) or deleted the directory (the file goes to the root).
//! After a crash, replay creates what the journal holds; an `exists` for
//! the file's own id means an earlier try landed.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::NodeId;
use common::api::ErrorCode;
use common::api::tree::{CreateNodeRequest, EntrySpec};
use common::crypto::attrs::NodeAttributes;
use common::crypto::name::NameTag;

use super::commit::{self, conflict_name};
use super::core::{Core, attr_of, lock};
use super::error::{FsError, FsResult};
use super::file::{FileInner, FileState};
use super::names::NameState;
use super::remote::Budget;
use super::seal;
use super::types::{Attr, Ino, ROOT_INO};
use crate::api::VaultApi;

/// The request that creates `inner`'s node at version 1 with `attrs`.
pub(crate) fn create_request<A>(
    core: &Core<A>,
    inner: &FileInner,
    attrs: &NodeAttributes,
) -> FsResult<CreateNodeRequest> {
    let (id, parent) = (inner.node, inner.parent);
    Ok(CreateNodeRequest {
        id,
        kind: seal::wire_kind(attrs.kind),
        record: seal::seal(&core.keys, id, 1, attrs)?.into(),
        entry: Some(EntrySpec {
            parent,
            tag: seal::tag(&core.keys, parent, &inner.name)?,
            encrypted_name: seal::encrypt(&core.keys, parent, id, &inner.name)?.into(),
        }),
        objects: Vec::new(),
    })
}

/// Makes a file in `parent` without asking the server, when its complete
/// listing says `name` is free: `None` when it cannot say (the caller
/// creates on the server). The file comes with one handle counted.
pub(crate) fn create<A: VaultApi + 'static>(
    core: &Core<A>,
    parent: Ino,
    name: &[u8],
    attrs: NodeAttributes,
) -> FsResult<Option<(Ino, Arc<FileState>, Attr)>> {
    let dir = core.id_of(parent)?;
    let tag = seal::tag(&core.keys, dir, name)?;
    let id = NodeId::random()?;
    let ino = {
        let mut t = lock(&core.table);
        if t.name_state(dir, &tag) != NameState::Absent {
            return Ok(None);
        }
        let ino = t.ino_for(id, parent, name);
        t.names.added(dir, tag, id);
        ino
    };
    let mut inner = FileInner::clean(id, 0, attrs.clone(), dir, name);
    inner.dirty = true;
    // Not closed until its first `close`: the uploader leaves it alone
    // while it is being written. Its manifest is written then (or at an
    // earlier rename, fsync or attribute change), not here: a file is
    // promised to survive a crash once closed, and one journal write per
    // new file less is what `cp -r` and tar wait on.
    inner.seq = 1;
    let file = FileState::new(id, ino, inner, 1);
    file.handles.fetch_add(1, Ordering::AcqRel);
    lock(&core.files).insert(ino, file.clone());
    lock(&core.dirty).insert(ino, 0);
    lock(&core.table).remember(ino);
    Ok(Some((ino, file, attr_of(ino, &attrs, 1))))
}

/// Answers a lookup from memory when it can: `Err(NotFound)` for a name a
/// fresh complete listing does not have, the attributes of a file made
/// here or of a node whose state is fresh; `None` to ask the server.
pub(crate) fn lookup<A: VaultApi + 'static>(
    core: &Core<A>,
    parent: Ino,
    dir: NodeId,
    tag: &NameTag,
    name: &[u8],
) -> FsResult<Option<Attr>> {
    let (ino, listed) = {
        let t = lock(&core.table);
        match t.name_state(dir, tag) {
            NameState::Absent => return Err(FsError::NotFound),
            NameState::Present(id) => match t.ino_of(id) {
                Some(ino) => (ino, true),
                None => return Ok(None),
            },
            NameState::Unknown => match t.named(parent, name) {
                Some(ino) => (ino, false),
                None => return Ok(None),
            },
        }
    };
    let Some(f) = core.file(ino) else {
        if !listed {
            return Ok(None);
        }
        let t = lock(&core.table);
        return Ok(t.fresh(ino).map(|k| attr_of(ino, &k.attrs, k.nlink)));
    };
    if f.local.load(Ordering::Acquire) {
        // Its name in the table may be a guess (replay): check the journal's.
        match f.inner.try_lock() {
            Ok(inner) if inner.parent == dir && inner.name.as_slice() == name && !inner.gone => {}
            Ok(_) => return Ok(None),
            Err(_) => {}
        }
    } else if lock(&core.table).fresh(ino).is_none() {
        // An open file the server knows: the server says whether the
        // name still leads to it.
        return Ok(None);
    }
    let v = f.view();
    Ok(Some(attr_of(ino, &v.attrs, v.nlink)))
}

/// The file made here and not yet on the server that `name` in `parent`
/// names, if any.
pub(crate) fn pending<A: VaultApi + 'static>(
    core: &Core<A>,
    parent: Ino,
    name: &[u8],
) -> Option<Arc<FileState>> {
    let ino = lock(&core.table).named(parent, name)?;
    core.file(ino).filter(|f| f.local.load(Ordering::Acquire))
}

/// `unlink` of a file the server has not seen: dropped here. False when
/// `name` is no such file (the caller asks the server).
pub(crate) async fn unlink<A: VaultApi + 'static>(
    core: &Core<A>,
    parent: Ino,
    name: &[u8],
) -> FsResult<bool> {
    let Some(file) = pending(core, parent, name) else {
        return Ok(false);
    };
    let mut inner = file.inner.lock().await;
    if inner.base_version != 0 || inner.gone {
        return Ok(false);
    }
    let tag = seal::tag(&core.keys, inner.parent, name)?;
    lock(&core.table).names.removed(inner.parent, &tag);
    commit::forget_deleted(core, &mut inner)?;
    drop(inner);
    {
        let mut v = file.view.lock().unwrap_or_else(|p| p.into_inner());
        v.nlink = 0;
        v.link_gen += 1;
    }
    lock(&core.dirty).remove(&file.ino);
    core.maybe_release(file.ino);
    Ok(true)
}

/// A rename of a file the server has not seen, onto a name the target's
/// complete listing says is free: done here. False when it cannot be (the
/// caller commits the file and asks the server).
pub(crate) async fn rename<A: VaultApi + 'static>(
    core: &Core<A>,
    parent: Ino,
    name: &[u8],
    new_parent: Ino,
    new_name: &[u8],
) -> FsResult<bool> {
    let Some(file) = pending(core, parent, name) else {
        return Ok(false);
    };
    let dst = core.id_of(new_parent)?;
    let dst_tag = seal::tag(&core.keys, dst, new_name)?;
    let mut inner = file.inner.lock().await;
    if inner.base_version != 0 || inner.gone {
        return Ok(false);
    }
    let src_tag = seal::tag(&core.keys, inner.parent, name)?;
    {
        let mut t = lock(&core.table);
        if t.name_state(dst, &dst_tag) != NameState::Absent {
            return Ok(false);
        }
        t.names.removed(inner.parent, &src_tag);
        t.names.added(dst, dst_tag, inner.node);
        t.ino_for(inner.node, new_parent, new_name);
    }
    inner.parent = dst;
    inner.name = zeroize::Zeroizing::new(new_name.to_vec());
    // The manifest holds the name: this save is never skipped.
    inner.save(&core.journal, false)?;
    Ok(true)
}

/// Commits the files made here in `dir` that the server has not seen yet
/// (before it is listed or removed).
pub(crate) async fn flush_dir<A: VaultApi + 'static>(
    core: &Arc<Core<A>>,
    dir: NodeId,
) -> FsResult<()> {
    let mut locals: Vec<Arc<FileState>> = lock(&core.files)
        .values()
        .filter(|f| f.local.load(Ordering::Acquire))
        .cloned()
        .collect();
    if locals.is_empty() {
        return Ok(());
    }
    // Only files this directory holds: the inode table knows each one's
    // directory, so files elsewhere, perhaps locked by a batch in flight
    // for a while, are not waited for.
    {
        let t = lock(&core.table);
        locals.retain(|f| {
            t.slot(f.ino)
                .ok()
                .and_then(|s| t.id(s.parent).ok())
                .is_none_or(|parent| parent == dir)
        });
    }
    let mut mine = Vec::new();
    for f in locals.drain(..) {
        if f.inner.lock().await.parent == dir {
            mine.push(f);
        }
    }
    super::batch::commit_files(core, Budget::Interactive, mine).await
}

/// Creates `inner`'s node on the server (its base version is 0): at
/// version 1, empty, or with its final attributes when it has no
/// contents (then nothing is left to commit).
pub(crate) async fn create_remote<A: VaultApi + 'static>(
    budget: Budget,
    core: &Arc<Core<A>>,
    file: &FileState,
    inner: &mut FileInner,
) -> FsResult<()> {
    for _ in 0..4 {
        let empty = inner.size() == 0 && inner.staged.is_empty() && inner.uploaded.is_empty();
        let mut attrs = inner.attrs.clone();
        attrs.objects.clear();
        if !empty {
            attrs.size = 0;
        }
        let req = create_request(core, inner, &attrs)?;
        let (id, parent) = (inner.node, inner.parent);
        lock(&core.table).names.expect(id, parent);
        let since = core.tick();
        let link_gen = commit::link_gen(file);
        let e = match core.create_node(budget, &req).await {
            Ok(info) if empty => {
                return commit::committed(core, file, inner, &info, attrs, since, link_gen);
            }
            Ok(info) => {
                lock(&core.table).observe(file.ino, &info, attrs.clone(), since)?;
                landed(file, inner, info.version, attrs);
                return Ok(());
            }
            Err(e) => e,
        };
        lock(&core.table).names.unexpect(id, parent);
        match e.code() {
            Some(ErrorCode::Exists) => match core.fetch(file.ino, id).await {
                // The id is ours alone: an earlier try landed.
                Ok((info, mut current)) => {
                    let objects = std::mem::take(&mut current.objects);
                    landed(file, inner, info.version, current);
                    inner.base = Arc::new(objects);
                    return Ok(());
                }
                Err(FsError::NotFound) => taken(core, file, inner)?,
                Err(e) => return Err(e),
            },
            Some(ErrorCode::NotFound | ErrorCode::NotADirectory) if parent != NodeId::ROOT => {
                tracing::warn!(node = %id, "the directory of a new file was removed elsewhere; keeping the file in the vault's root");
                place(core, inner, NodeId::ROOT, ROOT_INO, inner.name.to_vec())?;
            }
            _ => return Err(e.into()),
        }
    }
    Err(FsError::Internal(
        "cannot create the file on the server".into(),
    ))
}

/// The node now exists on the server at `version` holding `attrs` (no
/// contents yet).
pub(crate) fn landed(file: &FileState, inner: &mut FileInner, version: u64, attrs: NodeAttributes) {
    inner.base_version = version;
    inner.base_attrs = attrs;
    inner.base_attrs.objects.clear();
    file.local.store(false, Ordering::Release);
}

/// Another device took the name meanwhile: this file takes a conflicted
/// copy's name next to it.
fn taken<A>(core: &Core<A>, file: &FileState, inner: &mut FileInner) -> FsResult<()> {
    tracing::warn!(node = %inner.node, "a new file's name was taken elsewhere meanwhile; keeping it as a conflicted copy");
    let name = conflict_name(&inner.name);
    let parent_ino = lock(&core.table)
        .slot(file.ino)
        .map(|s| s.parent)
        .unwrap_or(ROOT_INO);
    place(core, inner, inner.parent, parent_ino, name)
}

/// Moves a file the server has not seen to `name` in `dir`.
fn place<A>(
    core: &Core<A>,
    inner: &mut FileInner,
    dir: NodeId,
    dir_ino: Ino,
    name: Vec<u8>,
) -> FsResult<()> {
    let old = seal::tag(&core.keys, inner.parent, &inner.name)?;
    {
        let mut t = lock(&core.table);
        t.names.removed(inner.parent, &old);
        // Its listing missed what took the name.
        t.names.drop_dir(dir);
        t.ino_for(inner.node, dir_ino, &name);
    }
    inner.parent = dir;
    inner.name = zeroize::Zeroizing::new(name);
    // The manifest holds the name: this save is never skipped.
    inner.save(&core.journal, false)
}
