//! The lookup structure: which range holds an address, in about one cache
//! miss for the index and one for the range, for IPv4 and IPv6 alike.
//!
//! A binary search over hundreds of thousands of ranges misses the cache
//! at nearly every step. Instead the address space is cut by a radix tree
//! over the address bits: a root of 2^16 slots on the top 16 bits, then
//! nodes of 16 slots (one cache line) on 4 bits each, only where more than
//! [`LEAF`] ranges share a slot. A slot that is not split names the first
//! range it overlaps; the ranges are gap-filled (a gap is a range of no
//! place), so the answer is that range or one of the next few, found by a
//! short forward scan over neighbouring entries of one array. Real tables
//! are dense in a few places (an IPv6 /32 of one ISP holds 34,000 ranges of
//! the built-in table): depth grows only there.

use super::{Address, Ranges};

/// Bits the root splits on.
const ROOT_BITS: u32 = 16;
/// Bits each deeper node splits on: 16 slots of `u32`, one cache line.
const STRIDE_BITS: u32 = 4;
/// A slot overlapping at most this many ranges is not split further.
const LEAF: usize = 16;
/// Set in a slot that points at a node; clear in one that names a range.
const NODE: u32 = 1 << 31;
/// The place of a gap between ranges.
const NOWHERE: u32 = u32::MAX;

/// Ranges of one address family, indexed for lookups. Built from the
/// table's [`Ranges`], which stay the canonical form (stored, checked).
#[derive(PartialEq, Eq)]
pub(super) struct RangeIndex<A> {
    /// Range starts covering the whole address space in order, each with
    /// its place or [`NOWHERE`].
    entries: Vec<(A, u32)>,
    /// The root's slots, then every node's, each node's slots contiguous.
    slots: Vec<u32>,
}

impl<A: Address> RangeIndex<A> {
    pub(super) fn new(ranges: &Ranges<A>) -> Self {
        let mut entries = Vec::with_capacity(ranges.starts.len() * 2 + 1);
        let mut next = Some(A::from(0));
        for i in 0..ranges.starts.len() {
            let (start, end) = (ranges.starts[i], ranges.ends[i]);
            if next.is_some_and(|next| next < start) {
                entries.push((next.expect("checked"), NOWHERE));
            }
            entries.push((start, ranges.places[i]));
            next = end.checked_next();
        }
        if let Some(next) = next {
            entries.push((next, NOWHERE));
        }
        let mut index = RangeIndex {
            entries,
            slots: vec![0; 1 << ROOT_BITS],
        };
        index.fill(0, A::from(0), A::BITS - ROOT_BITS, 0);
        index
    }

    /// Fills the node at `node` whose slots cover `2^shift` addresses each,
    /// the first slot starting at `first`, held by entry `low`; splits
    /// crowded slots further.
    fn fill(&mut self, node: usize, first: A, shift: u32, mut low: usize) {
        let count = if node == 0 {
            1 << ROOT_BITS
        } else {
            1 << STRIDE_BITS
        };
        for slot in 0..count {
            let start = first + (A::from_index(slot) << shift);
            let end = start + ((A::from(1) << shift) - A::from(1));
            low = self.holding(start, low);
            let high = self.holding(end, low);
            if high - low < LEAF || shift == 0 {
                self.slots[node + slot] = low as u32;
            } else {
                let child = self.slots.len();
                self.slots.resize(child + (1 << STRIDE_BITS), 0);
                self.slots[node + slot] = NODE | child as u32;
                let shift = shift.saturating_sub(STRIDE_BITS);
                self.fill(child, start, shift, low);
            }
        }
    }

    /// The index of the entry holding `ip`, at or after entry `from`
    /// (which starts at or before `ip`). Galloping from there: slots are
    /// filled in address order, so the answer is usually close.
    fn holding(&self, ip: A, mut from: usize) -> usize {
        let mut step = 1;
        let mut beyond = from + 1;
        while beyond < self.entries.len() && self.entries[beyond].0 <= ip {
            from = beyond;
            beyond += step;
            step *= 2;
        }
        let beyond = beyond.min(self.entries.len());
        from + self.entries[from..beyond].partition_point(|&(start, _)| start <= ip) - 1
    }

    /// The place of the range holding `ip`, if any.
    pub(super) fn find(&self, ip: A) -> Option<u32> {
        let mut shift = A::BITS - ROOT_BITS;
        let mut slot = self.slots[ip.bits(shift, ROOT_BITS)];
        while slot & NODE != 0 {
            shift -= STRIDE_BITS;
            slot = self.slots[(slot & !NODE) as usize + ip.bits(shift, STRIDE_BITS)];
        }
        let mut at = slot as usize;
        while let Some(&(start, _)) = self.entries.get(at + 1)
            && start <= ip
        {
            at += 1;
        }
        let place = self.entries[at].1;
        (place != NOWHERE).then_some(place)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ranges of `(start, end, place)`, in order and disjoint.
    fn ranges(list: &[(u32, u32, u32)]) -> Ranges<u32> {
        Ranges {
            starts: list.iter().map(|r| r.0).collect(),
            ends: list.iter().map(|r| r.1).collect(),
            places: list.iter().map(|r| r.2).collect(),
        }
    }

    fn agree(ranges: &Ranges<u32>, addresses: impl IntoIterator<Item = u32>) {
        let index = RangeIndex::new(ranges);
        for ip in addresses {
            assert_eq!(index.find(ip), ranges.find(ip), "address {ip:#x}");
        }
    }

    #[test]
    fn an_empty_table_holds_nothing() {
        agree(&ranges(&[]), [0, 1, 0x8000_0000, u32::MAX]);
    }

    #[test]
    fn the_first_and_last_addresses_are_found() {
        let edges = ranges(&[(0, 0, 1), (5, 9, 2), (u32::MAX - 1, u32::MAX, 3)]);
        agree(
            &edges,
            [0, 1, 4, 5, 9, 10, u32::MAX - 2, u32::MAX - 1, u32::MAX],
        );
    }

    #[test]
    fn crowded_slots_are_split_until_few_ranges_share_one() {
        // 4,000 one-address ranges every third address in one /16, and a
        // /8 of one place: the /16 needs nodes down to a few bits.
        let mut list: Vec<(u32, u32, u32)> = (0..4000)
            .map(|i| {
                let ip = 0x0a0b_0000 + 3 * i;
                (ip, ip, i % 7)
            })
            .collect();
        list.push((0x0b00_0000, 0x0bff_ffff, 9));
        let crowded = ranges(&list);
        let index = RangeIndex::new(&crowded);
        assert!(index.slots.len() > 1 << ROOT_BITS, "no node was made");
        agree(&crowded, 0x0a0a_fff0..0x0a0c_0010);
        agree(
            &crowded,
            [
                0x0aff_ffff,
                0x0b00_0000,
                0x0b12_3456,
                0x0bff_ffff,
                0x0c00_0000,
            ],
        );
    }
}
