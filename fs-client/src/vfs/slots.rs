//! A manifest file as two slots written in turn, in place.
//!
//! A pending file's manifest is saved at every `close`, `chmod`, `utimens`
//! and rename, and a small file's manifest holds its data (up to
//! [`super::journal::INLINE_MAX`]), so it spans several pages. A
//! multi-page write can be cut between pages by a kill, so such a save was
//! a temporary file renamed over the old one: two renames in a journal
//! directory of thousands of entries, and an inode freed, per save. In a
//! profile of `rsync -a` of 20k files within the mount, saving manifests
//! was a third of the daemon's CPU, half of it in `rename`.
//!
//! Layout: slot 0 at offset 0, slot 1 at [`SLOT_BYTES`], each
//! `"SVJ3" || u32be len || u64be seq || sealed || zeros` to the end of its
//! last page, the seal bound to the node and to `seq` (so neither the
//! number nor the slot's place can be changed unseen). Save number `seq`
//! goes to slot `seq % 2`: a write never touches the slot of the save
//! before it, so a kill during the write leaves that one whole and the slot
//! being written either untouched, cut short, or mixed, which fails
//! authentication. Reading takes the valid slot with the higher `seq`.
//!
//! Only a save that fits in a slot may be followed by one in place. A
//! larger manifest (many uploaded chunks, long xattrs) and a durable save
//! are written whole as save 0 of a new file renamed over the old: a
//! durable manifest is never overwritten in place, so a power loss can
//! only cost what was never made durable.

/// Bytes of a journal page (writes of one page are never cut short by a
/// kill, and slots start on page boundaries).
pub(crate) const PAGE: usize = 4096;
/// Bytes of a slot: a small file's manifest with its inline data fits.
pub(crate) const SLOT_BYTES: usize = 4 * PAGE;
/// The start of a slot.
const MAGIC: &[u8; 4] = b"SVJ3";
/// Magic, length, sequence number.
const HEAD: usize = MAGIC.len() + 4 + 8;

/// What one slot of a file holds.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Slot<'a> {
    /// A sealed manifest saved as number `seq` (not yet authenticated).
    Sealed { seq: u64, sealed: &'a [u8] },
    /// A head promising more than the file holds: a write cut short.
    CutShort,
    /// Anything else.
    Bad,
}

/// Where save number `seq` goes.
pub(crate) fn offset(seq: u64) -> u64 {
    if seq.is_multiple_of(2) {
        0
    } else {
        SLOT_BYTES as u64
    }
}

/// The bytes of save `seq` holding `sealed`, in whole pages (`None` when
/// longer than a `u32` counts).
pub(crate) fn to_slot(seq: u64, sealed: &[u8]) -> Option<Vec<u8>> {
    let len = u32::try_from(sealed.len()).ok()?;
    let total = HEAD.checked_add(sealed.len())?.div_ceil(PAGE) * PAGE;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(sealed);
    out.resize(total, 0);
    Some(out)
}

/// Whether `raw` (a whole manifest file) is in this layout. The first page
/// of a slot is written first and whole, so a file whose slot 0 is not a
/// slot's start holds at most slot 1 (slot 0 a hole).
pub(crate) fn is_slotted(raw: &[u8]) -> bool {
    raw.starts_with(MAGIC) || raw.get(SLOT_BYTES..).is_some_and(|b| b.starts_with(MAGIC))
}

/// The slots of `raw`, slot 0 first. Slot 0 may run past [`SLOT_BYTES`]
/// (a manifest written whole); slot 1 may not.
pub(crate) fn slots(raw: &[u8]) -> Vec<Slot<'_>> {
    let mut out = Vec::with_capacity(2);
    if let Some(s) = slot_at(raw, 0, false) {
        out.push(s);
    }
    if let Some(s) = slot_at(raw, SLOT_BYTES, true) {
        out.push(s);
    }
    out
}

fn slot_at(raw: &[u8], at: usize, bounded: bool) -> Option<Slot<'_>> {
    let bytes = raw.get(at..).filter(|b| !b.is_empty())?;
    if bytes.len() < HEAD {
        let start = bytes
            .get(..bytes.len().min(MAGIC.len()))
            .unwrap_or_default();
        return Some(if MAGIC.starts_with(start) {
            Slot::CutShort
        } else {
            Slot::Bad
        });
    }
    if !bytes.starts_with(MAGIC) {
        return Some(Slot::Bad);
    }
    let word = |r: std::ops::Range<usize>| bytes.get(r).unwrap_or_default();
    let len = <[u8; 4]>::try_from(word(4..8))
        .map(u32::from_be_bytes)
        .ok()?;
    let seq = <[u8; 8]>::try_from(word(8..16))
        .map(u64::from_be_bytes)
        .ok()?;
    let end = usize::try_from(len)
        .ok()
        .and_then(|l| HEAD.checked_add(l))?;
    if bounded && end > SLOT_BYTES {
        return Some(Slot::Bad);
    }
    Some(match bytes.get(HEAD..end) {
        Some(sealed) => Slot::Sealed { seq, sealed },
        None => Slot::CutShort,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn slots_parse_back_where_they_were_written() {
        let s0 = to_slot(4, b"even").unwrap();
        assert_eq!(s0.len(), PAGE);
        let s1 = to_slot(5, &[7; PAGE]).unwrap();
        assert_eq!(s1.len(), 2 * PAGE);
        assert_eq!((offset(4), offset(5)), (0, SLOT_BYTES as u64));
        let mut file = vec![0u8; SLOT_BYTES];
        file[..s0.len()].copy_from_slice(&s0);
        file.extend_from_slice(&s1);
        assert!(is_slotted(&file));
        assert_eq!(
            slots(&file),
            vec![
                Slot::Sealed {
                    seq: 4,
                    sealed: b"even"
                },
                Slot::Sealed {
                    seq: 5,
                    sealed: &[7; PAGE]
                }
            ]
        );
        // Slot 1 cut short by a kill; slot 0 a hole.
        let cut = &file[..SLOT_BYTES + PAGE];
        assert_eq!(slots(cut)[1], Slot::CutShort);
        let mut hole = file.clone();
        hole[..SLOT_BYTES].fill(0);
        assert!(is_slotted(&hole));
        assert_eq!(slots(&hole)[0], Slot::Bad);
        // Not this layout: an older version's page, or raw bytes.
        assert!(!is_slotted(b"SVJ1\0\0\0\x04abcd"));
        assert!(!is_slotted(b""));
        assert_eq!(slots(b""), vec![]);
        assert_eq!(slots(b"SVJ"), vec![Slot::CutShort]);
    }

    #[test]
    fn only_slot_0_may_run_past_a_slot() {
        let big = to_slot(0, &vec![1; SLOT_BYTES]).unwrap();
        assert!(big.len() > SLOT_BYTES);
        let got = slots(&big);
        assert_eq!(got.len(), 2, "slot 1 read from the middle of slot 0");
        assert!(matches!(got[0], Slot::Sealed { seq: 0, .. }));
        assert_eq!(got[1], Slot::Bad);
        // A slot 1 whose head claims more than a slot is refused.
        let mut file = vec![0u8; SLOT_BYTES];
        file.extend_from_slice(&big);
        assert_eq!(slots(&file)[1], Slot::Bad);
        // A head promising more than the file holds: cut short.
        assert_eq!(slots(&big[..PAGE]), vec![Slot::CutShort]);
    }
}
