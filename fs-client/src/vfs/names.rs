//! Directories whose every entry this mount knows, by name tag, so that a
//! lookup of a name that is not there (what every `create`, `cp` and
//! `tar` does first) is answered without asking the server, and a file can
//! be created here before the server has seen it (see `local`).
//!
//! A listing becomes complete when this mount made the directory (it is
//! empty) or listed all of it without a change to it in between. It stays
//! complete while this mount applies its own changes to it and the change
//! feed reports no other change to it: a feed record naming the directory
//! drops the listing, unless it is the echo of a request this mount sent
//! ([`Names::expect`]). Whether a listing may be trusted at a given moment
//! is the table's call (the same freshness bound as verified attributes).
//!
//! Tags, not names, are kept: the tag is what a lookup computes anyway, and
//! no plaintext name is held for this. Memory is bounded by
//! [`MAX_NAMES`]: past it, listings are dropped (which only costs lookups).

use std::collections::HashMap;
use std::time::Instant;

use common::NodeId;
use common::crypto::name::NameTag;

/// Most entries kept over all complete listings.
pub(crate) const MAX_NAMES: usize = 200_000;

/// One complete listing.
#[derive(Debug)]
pub(crate) struct Listing {
    pub entries: HashMap<NameTag, NodeId>,
    /// When it became complete.
    pub at: Instant,
}

/// What a complete listing says about a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameState {
    /// No complete listing (or not a fresh one): ask the server.
    Unknown,
    /// The directory has no such entry.
    Absent,
    /// The entry names this node.
    Present(NodeId),
}

/// Complete listings and the feed echoes this mount expects.
#[derive(Debug, Default)]
pub(crate) struct Names {
    dirs: HashMap<NodeId, Listing>,
    total: usize,
    /// Mutations of each directory since it was last made complete or
    /// dropped; a listing read while this moved is not complete.
    generation: HashMap<NodeId, u64>,
    /// Feed records (node, directory) this mount's own requests cause.
    echoes: HashMap<(NodeId, NodeId), u32>,
}

impl Names {
    /// The listing of `dir`, if complete.
    pub(crate) fn listing(&self, dir: NodeId) -> Option<&Listing> {
        self.dirs.get(&dir)
    }

    /// The mutation count of `dir`, to note before listing it.
    pub(crate) fn generation(&self, dir: NodeId) -> u64 {
        self.generation.get(&dir).copied().unwrap_or(0)
    }

    /// `dir` was just made here: it is complete and empty.
    pub(crate) fn made_empty(&mut self, dir: NodeId) {
        self.set(dir, HashMap::new());
    }

    /// `dir` was listed in full, starting at mutation count `generation`:
    /// complete unless it changed meanwhile.
    pub(crate) fn listed(
        &mut self,
        dir: NodeId,
        generation: u64,
        entries: HashMap<NameTag, NodeId>,
    ) {
        if self.generation(dir) == generation {
            self.set(dir, entries);
        }
    }

    fn set(&mut self, dir: NodeId, entries: HashMap<NameTag, NodeId>) {
        self.drop_dir(dir);
        if self.total + entries.len() > MAX_NAMES {
            self.dirs.clear();
            self.total = 0;
            if entries.len() > MAX_NAMES {
                return;
            }
        }
        self.total += entries.len();
        self.dirs.insert(
            dir,
            Listing {
                entries,
                at: Instant::now(),
            },
        );
    }

    /// This mount added the entry `tag` → `node` to `dir`.
    pub(crate) fn added(&mut self, dir: NodeId, tag: NameTag, node: NodeId) {
        self.bump(dir);
        if self.total >= MAX_NAMES {
            self.drop_dir(dir);
            return;
        }
        if let Some(l) = self.dirs.get_mut(&dir)
            && l.entries.insert(tag, node).is_none()
        {
            self.total += 1;
        }
    }

    /// This mount removed the entry `tag` from `dir`.
    pub(crate) fn removed(&mut self, dir: NodeId, tag: &NameTag) {
        self.bump(dir);
        if let Some(l) = self.dirs.get_mut(&dir)
            && l.entries.remove(tag).is_some()
        {
            self.total -= 1;
        }
    }

    /// `dir` may have changed in ways this mount does not know.
    pub(crate) fn drop_dir(&mut self, dir: NodeId) {
        self.bump(dir);
        if let Some(l) = self.dirs.remove(&dir) {
            self.total -= l.entries.len();
        }
    }

    fn bump(&mut self, dir: NodeId) {
        *self.generation.entry(dir).or_insert(0) += 1;
    }

    /// A request about to be sent will show in the feed as `node` changing
    /// in `dir`.
    pub(crate) fn expect(&mut self, node: NodeId, dir: NodeId) {
        *self.echoes.entry((node, dir)).or_insert(0) += 1;
    }

    /// The request [`Names::expect`]ed did not happen after all.
    pub(crate) fn unexpect(&mut self, node: NodeId, dir: NodeId) {
        if let Some(n) = self.echoes.get_mut(&(node, dir)) {
            *n -= 1;
            if *n == 0 {
                self.echoes.remove(&(node, dir));
            }
        }
    }

    /// The feed says `node` changed in `dir`: our own echo is consumed,
    /// anything else drops the listing.
    pub(crate) fn feed(&mut self, node: NodeId, dir: NodeId) {
        if self.echoes.contains_key(&(node, dir)) {
            self.unexpect(node, dir);
        } else {
            self.drop_dir(dir);
        }
    }

    /// Entries held (for tests).
    #[cfg(test)]
    pub(crate) fn total(&self) -> usize {
        self.total
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn id(n: u8) -> NodeId {
        NodeId::from_bytes([n; 16])
    }

    fn tag(n: u8) -> NameTag {
        NameTag::from_bytes([n; 32])
    }

    #[test]
    fn a_listing_read_while_the_directory_changed_is_not_complete() {
        let mut n = Names::default();
        let g = n.generation(id(1));
        n.added(id(1), tag(1), id(2));
        n.listed(id(1), g, HashMap::new());
        assert!(n.listing(id(1)).is_none());
        let g = n.generation(id(1));
        n.listed(id(1), g, HashMap::from([(tag(1), id(2))]));
        assert_eq!(n.listing(id(1)).map(|l| l.entries.len()), Some(1));
        assert_eq!(n.total(), 1);
    }

    #[test]
    fn own_changes_keep_the_listing_and_echoes_are_consumed_once() {
        let mut n = Names::default();
        n.made_empty(id(1));
        n.expect(id(2), id(1));
        n.added(id(1), tag(2), id(2));
        n.feed(id(2), id(1));
        assert_eq!(
            n.listing(id(1))
                .and_then(|l| l.entries.get(&tag(2)).copied()),
            Some(id(2))
        );
        // A second record for the same pair is someone else's change.
        n.feed(id(2), id(1));
        assert!(n.listing(id(1)).is_none());
        assert_eq!(n.total(), 0);
    }

    #[test]
    fn unexpected_echoes_are_withdrawn_and_removals_counted() {
        let mut n = Names::default();
        n.made_empty(id(1));
        n.expect(id(3), id(1));
        n.unexpect(id(3), id(1));
        n.added(id(1), tag(3), id(3));
        n.removed(id(1), &tag(3));
        assert_eq!(n.total(), 0);
        n.feed(id(3), id(1));
        assert!(n.listing(id(1)).is_none());
    }

    #[test]
    fn memory_is_bounded() {
        let mut n = Names::default();
        let big: HashMap<NameTag, NodeId> = (0..u32::try_from(MAX_NAMES).unwrap())
            .map(|i| {
                let mut t = [0u8; 32];
                t[..4].copy_from_slice(&i.to_be_bytes());
                (NameTag::from_bytes(t), id(1))
            })
            .collect();
        n.listed(id(1), 0, big);
        assert_eq!(n.total(), MAX_NAMES);
        n.made_empty(id(2));
        n.added(id(2), tag(9), id(9));
        assert!(n.total() <= MAX_NAMES);
        assert!(n.listing(id(2)).is_none());
    }
}
