//! The inode table: which inode number stands for which node, how many
//! references the kernel holds, the last name a node was seen under, and
//! the node's last verified attributes.
//!
//! Inode numbers are handed out on first sight and never reused within a
//! mount. Versions only move forward: a record older than one already
//! verified is refused (a server rolling a node back is caught for as long
//! as the mount remembers the node).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::NodeId;
use common::api::tree::NodeInfo;
use common::crypto::CryptoError;
use common::crypto::attrs::NodeAttributes;
use common::crypto::name::NameTag;
use zeroize::Zeroizing;

use super::error::{FsError, FsResult};
use super::names::{NameState, Names};
use super::records::{Due, PendingRecord, RecordChange};
use super::types::{Ino, ROOT_INO};

/// How long verified attributes are trusted without asking the server
/// (the change feed drops them earlier when the node changes).
pub(crate) const ATTR_TTL: Duration = Duration::from_secs(1);

/// How long a complete poll of the change feed vouches for every state
/// verified before it was sent and not dropped by it. The feed is polled
/// every second, so while it answers, a `stat` storm (`ls -l`, `rsync`,
/// `find`) is served from memory with the same staleness bound as
/// [`ATTR_TTL`]; when it does not, states age out after [`ATTR_TTL`].
pub(crate) const FEED_TTL: Duration = Duration::from_secs(2);

/// A node's verified state.
#[derive(Debug, Clone)]
pub(crate) struct Known {
    pub version: u64,
    pub nlink: u32,
    pub attrs: NodeAttributes,
    pub at: Instant,
}

/// A plaintext name as a map key, wiped when dropped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Name(Vec<u8>);

impl Drop for Name {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// One inode.
#[derive(Debug)]
pub(crate) struct Slot {
    pub id: NodeId,
    pub lookups: u64,
    /// The directory it was last seen in (itself for the root).
    pub parent: Ino,
    /// The name it was last seen under (memory only; for conflict copies).
    pub name: Zeroizing<Vec<u8>>,
    pub known: Option<Known>,
    /// The last verified state, kept when `known` is dropped.
    pub stale: Option<Known>,
    /// The highest version verified, and the table tick when it was.
    pub max_version: u64,
    pub max_tick: u64,
    /// The file version whose contents the kernel's page cache holds (0:
    /// none), so `open` can let it keep them.
    pub kernel_version: u64,
    /// A directory's or symlink's change not yet on the server (see
    /// `records`); keeps the slot while there is one.
    pub record: Option<PendingRecord>,
}

/// Every inode of the mount.
#[derive(Debug)]
pub(crate) struct Table {
    by_ino: HashMap<Ino, Slot>,
    by_id: HashMap<NodeId, Ino>,
    /// (directory, name) → inode, for answering from memory while the
    /// server cannot be reached.
    by_name: HashMap<(Ino, Name), Ino>,
    next: Ino,
    /// Counts recorded versions; a request notes it before it is sent.
    tick: u64,
    /// When the last complete change-feed poll was sent.
    feed_at: Option<Instant>,
    /// Inodes with a pending record change.
    records: HashSet<Ino>,
    /// Counts record changes.
    record_seq: u64,
    /// Directories whose every entry is known.
    pub names: Names,
}

impl Table {
    pub(crate) fn new() -> Self {
        let mut by_ino = HashMap::new();
        by_ino.insert(
            ROOT_INO,
            Slot {
                id: NodeId::ROOT,
                lookups: 1,
                parent: ROOT_INO,
                name: Zeroizing::new(Vec::new()),
                known: None,
                stale: None,
                max_version: 0,
                max_tick: 0,
                kernel_version: 0,
                record: None,
            },
        );
        let mut by_id = HashMap::new();
        by_id.insert(NodeId::ROOT, ROOT_INO);
        Self {
            by_ino,
            by_id,
            by_name: HashMap::new(),
            next: ROOT_INO + 1,
            tick: 0,
            feed_at: None,
            records: HashSet::new(),
            record_seq: 0,
            names: Names::default(),
        }
    }

    /// A poll of the change feed sent at `sent` was applied in full: no
    /// node it did not drop changed before `sent`.
    pub(crate) fn feed_polled(&mut self, sent: Instant) {
        self.feed_at = Some(sent);
    }

    /// True while the change feed vouches for states verified at `at`
    /// (or `at` is recent enough on its own).
    fn vouched(&self, at: Instant) -> bool {
        let feed = self.feed_at.filter(|f| f.elapsed() < FEED_TTL);
        at.elapsed() < ATTR_TTL || feed.is_some_and(|f| f >= at)
    }

    /// What the complete listing of `dir`, if fresh, says about `tag`.
    pub(crate) fn name_state(&self, dir: NodeId, tag: &NameTag) -> NameState {
        match self.names.listing(dir) {
            Some(l) if self.vouched(l.at) => match l.entries.get(tag) {
                Some(id) => NameState::Present(*id),
                None => NameState::Absent,
            },
            _ => NameState::Unknown,
        }
    }

    /// The inode of `id`, if it has one.
    pub(crate) fn ino_of(&self, id: NodeId) -> Option<Ino> {
        self.by_id.get(&id).copied()
    }

    /// The inode last seen as `name` in `parent`.
    pub(crate) fn named(&self, parent: Ino, name: &[u8]) -> Option<Ino> {
        self.by_name.get(&(parent, Name(name.to_vec()))).copied()
    }

    /// The node of `ino`.
    pub(crate) fn id(&self, ino: Ino) -> FsResult<NodeId> {
        self.by_ino.get(&ino).map(|s| s.id).ok_or(FsError::NotFound)
    }

    pub(crate) fn slot(&self, ino: Ino) -> FsResult<&Slot> {
        self.by_ino.get(&ino).ok_or(FsError::NotFound)
    }

    pub(crate) fn slot_mut(&mut self, ino: Ino) -> FsResult<&mut Slot> {
        self.by_ino.get_mut(&ino).ok_or(FsError::NotFound)
    }

    /// The inode of `id`, seen as `name` in `parent` (a new number on first
    /// sight).
    pub(crate) fn ino_for(&mut self, id: NodeId, parent: Ino, name: &[u8]) -> Ino {
        if let Some(&ino) = self.by_id.get(&id) {
            if let Some(slot) = self.by_ino.get_mut(&ino)
                && ino != ROOT_INO
                && (slot.parent != parent || slot.name.as_slice() != name)
            {
                let old = (slot.parent, Name(std::mem::take(&mut slot.name).to_vec()));
                if self.by_name.get(&old) == Some(&ino) {
                    self.by_name.remove(&old);
                }
                slot.parent = parent;
                slot.name = Zeroizing::new(name.to_vec());
                self.by_name.insert((parent, Name(name.to_vec())), ino);
            }
            return ino;
        }
        let ino = self.new_slot(id, parent, name);
        self.by_name.insert((parent, Name(name.to_vec())), ino);
        ino
    }

    /// The inode of `id` when its name is not known (a file replayed from
    /// the journal that the server already has: its name may have changed
    /// since its manifest was written, here or elsewhere). No name leads to
    /// it until a lookup or listing finds it.
    pub(crate) fn ino_unnamed(&mut self, id: NodeId) -> Ino {
        match self.by_id.get(&id) {
            Some(&ino) => ino,
            None => self.new_slot(id, ROOT_INO, b""),
        }
    }

    /// A new inode number for `id`, found under no name yet.
    fn new_slot(&mut self, id: NodeId, parent: Ino, name: &[u8]) -> Ino {
        let ino = self.next;
        self.next += 1;
        self.by_id.insert(id, ino);
        self.by_ino.insert(
            ino,
            Slot {
                id,
                lookups: 0,
                parent,
                name: Zeroizing::new(name.to_vec()),
                known: None,
                stale: None,
                max_version: 0,
                max_tick: 0,
                kernel_version: 0,
                record: None,
            },
        );
        ino
    }

    /// The current tick: note it before sending a request whose answer
    /// goes to [`Table::observe`].
    pub(crate) fn tick(&self) -> u64 {
        self.tick
    }

    /// Records a verified record of `ino` from an answer to a request sent
    /// at tick `since`, and returns the attributes now current. An answer
    /// older than a version this mount knew *before the request was sent*
    /// is a rollback by the server and refused; one older than a version
    /// learned while it was in flight (a concurrent commit) is only late,
    /// and the newer state stays.
    pub(crate) fn observe(
        &mut self,
        ino: Ino,
        info: &NodeInfo,
        attrs: NodeAttributes,
        since: u64,
    ) -> FsResult<NodeAttributes> {
        self.tick += 1;
        let tick = self.tick;
        let slot = self.slot_mut(ino)?;
        if info.version < slot.max_version {
            if slot.max_tick <= since {
                tracing::error!(node = %slot.id, seen = slot.max_version, served = info.version, "server served an older version of a node");
                return Err(FsError::Integrity(CryptoError::Malformed {
                    what: "node",
                    reason: "version older than one already seen (rollback)",
                }));
            }
            return Ok(slot.stale.as_ref().map_or(attrs, |k| k.attrs.clone()));
        }
        slot.max_version = info.version;
        slot.max_tick = tick;
        // A change not yet sent: this record is its base now, and what
        // the mount shows is the record with the change.
        let attrs = match slot.record.as_mut() {
            Some(r) => {
                let shown = r.change.applied(&attrs);
                r.base = Some((info.version, attrs));
                shown
            }
            None => attrs,
        };
        let known = Known {
            version: info.version,
            nlink: info.nlink,
            attrs: attrs.clone(),
            at: Instant::now(),
        };
        slot.stale = Some(known.clone());
        slot.known = Some(known);
        Ok(attrs)
    }

    /// Fresh verified state of `ino`, if any.
    pub(crate) fn fresh(&self, ino: Ino) -> Option<&Known> {
        self.by_ino
            .get(&ino)
            .and_then(|s| s.known.as_ref())
            .filter(|k| self.vouched(k.at))
    }

    /// The inode last seen as `name` in `parent`, with its last verified
    /// state however old (for when the server cannot be reached).
    pub(crate) fn remembered(&self, parent: Ino, name: &[u8]) -> Option<(Ino, &Known)> {
        let ino = *self.by_name.get(&(parent, Name(name.to_vec())))?;
        let known = self.by_ino.get(&ino)?.stale.as_ref()?;
        Some((ino, known))
    }

    /// The last verified state of `ino` however old.
    pub(crate) fn stale(&self, ino: Ino) -> Option<&Known> {
        self.by_ino.get(&ino)?.stale.as_ref()
    }

    /// Drops the cached state of `id` (it changed on the server); true if
    /// there was one.
    pub(crate) fn invalidate(&mut self, id: NodeId) -> bool {
        if let Some(ino) = self.by_id.get(&id)
            && let Some(slot) = self.by_ino.get_mut(ino)
        {
            return slot.known.take().is_some();
        }
        false
    }

    /// Adds `change` to the pending change of `ino` (a new one is based on
    /// `base`, its verified version and record), shows it in the cached
    /// state, and answers the node, the whole change to keep in the
    /// journal, and the attributes now shown.
    pub(crate) fn change_record(
        &mut self,
        ino: Ino,
        change: &RecordChange,
        base: (u64, NodeAttributes),
    ) -> FsResult<(NodeId, RecordChange, NodeAttributes)> {
        self.record_seq += 1;
        let seq = self.record_seq;
        let slot = self.slot_mut(ino)?;
        let (merged, raw) = match slot.record.as_mut() {
            Some(r) => {
                r.change.merge(change);
                r.at = Instant::now();
                r.seq = seq;
                let (_, raw) = r.base.get_or_insert(base);
                (r.change.clone(), raw.clone())
            }
            None => {
                let raw = base.1.clone();
                slot.record = Some(PendingRecord {
                    change: change.clone(),
                    base: Some(base),
                    at: Instant::now(),
                    seq,
                });
                (change.clone(), raw)
            }
        };
        let shown = merged.applied(&raw);
        for k in [slot.known.as_mut(), slot.stale.as_mut()]
            .into_iter()
            .flatten()
        {
            k.attrs = shown.clone();
        }
        let node = slot.id;
        self.records.insert(ino);
        Ok((node, merged, shown))
    }

    /// A change read back from the journal at mount: pending, based on
    /// nothing until the node is fetched.
    pub(crate) fn restore_record(&mut self, node: NodeId, change: RecordChange) {
        let ino = self.ino_for(node, ROOT_INO, &[]);
        self.record_seq += 1;
        let seq = self.record_seq;
        if let Some(slot) = self.by_ino.get_mut(&ino) {
            slot.record = Some(PendingRecord {
                change,
                base: None,
                at: Instant::now(),
                seq,
            });
            self.records.insert(ino);
        }
    }

    /// Pending changes to send: those unchanged for `settle` (`only`: just
    /// that inode's), and whether others are still resting.
    pub(crate) fn due_records(&self, settle: Duration, only: Option<Ino>) -> (Vec<Due>, bool) {
        let mut due = Vec::new();
        let mut resting = false;
        for ino in &self.records {
            if only.is_some_and(|o| o != *ino) {
                continue;
            }
            let Some(slot) = self.by_ino.get(ino) else {
                continue;
            };
            let Some(r) = &slot.record else { continue };
            if r.at.elapsed() < settle {
                resting = true;
                continue;
            }
            due.push(Due {
                ino: *ino,
                node: slot.id,
                seq: r.seq,
                change: r.change.clone(),
                base: r.base.clone(),
            });
        }
        (due, resting)
    }

    /// Inodes with a pending record change.
    pub(crate) fn pending_records(&self) -> usize {
        self.records.len()
    }

    /// The change of `ino` sent as `seq` is on the server (or its node is
    /// gone): forgets it unless a newer one was made since. Answers
    /// whether it was forgotten (its journal file can go). The slot goes
    /// with it when the kernel holds no reference and `keep` (an open
    /// file) does not say otherwise.
    pub(crate) fn record_settled(&mut self, ino: Ino, seq: u64, keep: bool) -> bool {
        let Some(slot) = self.by_ino.get_mut(&ino) else {
            return false;
        };
        if slot.record.as_ref().is_none_or(|r| r.seq != seq) {
            return false;
        }
        slot.record = None;
        self.records.remove(&ino);
        self.forget(ino, 0, keep);
        true
    }

    /// One more kernel reference.
    pub(crate) fn remember(&mut self, ino: Ino) {
        if let Some(s) = self.by_ino.get_mut(&ino) {
            s.lookups += 1;
        }
    }

    /// The kernel dropped `n` references; the slot goes when none are left
    /// and `keep` (open or dirty files) says so.
    pub(crate) fn forget(&mut self, ino: Ino, n: u64, keep: bool) {
        if ino == ROOT_INO {
            return;
        }
        let gone = match self.by_ino.get_mut(&ino) {
            Some(s) => {
                s.lookups = s.lookups.saturating_sub(n);
                s.lookups == 0 && !keep && s.record.is_none()
            }
            None => false,
        };
        if gone && let Some(s) = self.by_ino.remove(&ino) {
            self.by_id.remove(&s.id);
            let key = (s.parent, Name(s.name.to_vec()));
            if self.by_name.get(&key) == Some(&ino) {
                self.by_name.remove(&key);
            }
        }
    }
}
