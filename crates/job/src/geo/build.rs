//! Collecting ranges from any number of files into a [`GeoTable`]:
//! deduplicating places as they come, and turning ranges that overlap into
//! sorted, disjoint ones at the end.
//!
//! Real tables overlap: ip-location-db's country table nests hundreds of
//! precise geofeed ranges inside broader registry ranges, a few overlap
//! partly, and a few repeat a range with another country. So an address
//! gets the place of the narrowest range holding it, as in longest-prefix
//! routing, and of equally narrow ones the one read last (later files and
//! rows correct earlier ones). That also lets a small file of one's own,
//! given after a big table, override parts of it. Neighbouring ranges that
//! end up with the same place are merged, which keeps lookups short.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use super::{Address, GeoTable, Place, Ranges};

struct Pending<A> {
    start: A,
    end: A,
    place: u32,
}

#[derive(Default)]
pub(super) struct TableBuilder {
    places: Vec<Place>,
    place_ids: HashMap<Place, u32>,
    /// The ids of places with only a country, by country.
    country_ids: HashMap<String, u32>,
    v4: Vec<Pending<u32>>,
    v6: Vec<Pending<u128>>,
}

/// IPv6 addresses whose top 96 bits are these hold an IPv4 address.
const IPV4_MAPPED: u128 = 0xffff;

impl TableBuilder {
    /// The id of `place`, new if it was not seen before.
    pub fn place_id(&mut self, place: &Place) -> u32 {
        if let Some(&id) = self.place_ids.get(place) {
            return id;
        }
        let id = self.places.len() as u32;
        self.places.push(place.clone());
        self.place_ids.insert(place.clone(), id);
        id
    }

    /// The id of the place that is just this country. Country tables have
    /// a row per range: looking them up by `&str` spares building a
    /// [`Place`] per row, which took a third of [`GeoTable::builtin`]'s time.
    pub fn country_id(&mut self, country: &str) -> u32 {
        if let Some(&id) = self.country_ids.get(country) {
            return id;
        }
        let id = self.place_id(&Place {
            country: country.to_owned(),
            ..Place::default()
        });
        self.country_ids.insert(country.to_owned(), id);
        id
    }

    /// Adds an IPv4 range; `start <= end` is the caller's to check.
    pub fn add_v4(&mut self, start: u32, end: u32, place: u32) {
        self.v4.push(Pending { start, end, place });
    }

    /// Adds an IPv6 range; `start <= end` is the caller's to check. A range
    /// of IPv4-mapped addresses becomes an IPv4 range, because that is
    /// where lookups of such addresses go.
    pub fn add_v6(&mut self, start: u128, end: u128, place: u32) {
        if start >> 32 == IPV4_MAPPED && end >> 32 == IPV4_MAPPED {
            self.add_v4(start as u32, end as u32, place);
        } else {
            self.v6.push(Pending { start, end, place });
        }
    }

    pub fn finish(self) -> GeoTable {
        let v4 = disjoint(&self.v4);
        let v6 = disjoint(&self.v6);
        GeoTable::from_parts(self.places, v4, v6)
    }
}

/// Sorted, disjoint ranges giving each address the place the module
/// documentation says.
///
/// Sweeps the address space from range start to range start, keeping the
/// ranges holding the current address in a heap with the winner on top
/// (ranges that ended are dropped when they reach the top). The winner
/// holds until it ends or the next range starts.
fn disjoint<A: Address>(pending: &[Pending<A>]) -> Ranges<A> {
    let mut by_start: Vec<usize> = (0..pending.len()).collect();
    by_start.sort_by_key(|&i| pending[i].start);
    let mut by_start = by_start.into_iter().peekable();
    // Narrowest first, then the one read last.
    let mut holding: BinaryHeap<(Reverse<A>, usize)> = BinaryHeap::new();
    let mut ranges = Ranges {
        starts: Vec::new(),
        ends: Vec::new(),
        places: Vec::new(),
    };
    let mut at = A::from(0);
    loop {
        while let Some(i) = by_start.next_if(|&i| pending[i].start <= at) {
            holding.push((Reverse(pending[i].end - pending[i].start), i));
        }
        while holding.peek().is_some_and(|&(_, i)| pending[i].end < at) {
            holding.pop();
        }
        let Some(&(_, winner)) = holding.peek() else {
            match by_start.peek() {
                Some(&next) => at = pending[next].start,
                None => return ranges,
            }
            continue;
        };
        let mut end = pending[winner].end;
        if let Some(&next) = by_start.peek() {
            end = end.min(pending[next].start - A::from(1));
        }
        ranges.push_merged(at, end, pending[winner].place);
        match end.checked_next() {
            Some(next) => at = next,
            None => return ranges,
        }
    }
}

impl<A: Address> Ranges<A> {
    /// Appends a range after the last one, extending the last one instead
    /// when it ends just before and has the same place.
    fn push_merged(&mut self, start: A, end: A, place: u32) {
        if let (Some(last_end), Some(&last_place)) = (self.ends.last_mut(), self.places.last())
            && last_place == place
            && last_end.checked_next() == Some(start)
        {
            *last_end = end;
            return;
        }
        self.starts.push(start);
        self.ends.push(end);
        self.places.push(place);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `disjoint` must compute, address by address.
    fn brute_force(pending: &[Pending<u32>], ip: u32) -> Option<u32> {
        pending
            .iter()
            .enumerate()
            .filter(|(_, range)| range.start <= ip && ip <= range.end)
            .max_by_key(|&(i, range)| (Reverse(range.end - range.start), i))
            .map(|(_, range)| range.place)
    }

    #[test]
    fn overlapping_ranges_resolve_to_the_narrowest_then_the_last_read() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..2000 {
            let pending: Vec<Pending<u32>> = (0..rng.usize(0..8))
                .map(|_| {
                    let start = rng.u32(0..40);
                    Pending {
                        start,
                        end: start + rng.u32(0..12),
                        place: rng.u32(0..3),
                    }
                })
                .collect();
            let ranges = disjoint(&pending);
            assert!(ranges.check(3).is_ok(), "{:?}", ranges.check(3));
            for ip in 0..60 {
                let found = ranges.find(ip);
                assert_eq!(found, brute_force(&pending, ip), "address {ip}");
            }
        }
    }

    #[test]
    fn ranges_reaching_the_last_address_end_the_sweep() {
        let pending = [
            Pending {
                start: 0,
                end: u32::MAX,
                place: 0,
            },
            Pending {
                start: u32::MAX,
                end: u32::MAX,
                place: 1,
            },
        ];
        let ranges = disjoint(&pending);
        assert_eq!(ranges.starts, [0, u32::MAX]);
        assert_eq!(ranges.ends, [u32::MAX - 1, u32::MAX]);
        assert_eq!(ranges.places, [0, 1]);
    }
}
