//! What a string key costs a Redis server that allocates with jemalloc (the
//! allocator Redis builds with by default, and Debian's): the budget of a
//! channel counts these figures, not the bytes of data, so that
//! `--limit 64MiB` means 64 MiB of Redis memory.
//!
//! jemalloc rounds every allocation up to a size class; above 64 bytes
//! there are four classes per doubling (1 MiB, 1.25 MiB, 1.5 MiB, ...). A
//! string of exactly 1 MiB needs a few bytes of header too and so costs
//! 1.25 MiB; chunks are sized to end just below a class instead.

/// Bytes Redis adds to a string value's allocation: the largest `sds`
/// header (9), the terminating zero, and the `\r\n` a value read straight
/// from the query buffer keeps room for.
const VALUE_OVERHEAD: u64 = 12;

/// What a chunk key costs beside its value: the value's `robj` (16), the
/// dictionary entry (24), its share of the dictionary's bucket array (8 to
/// 16), and a key name of up to 60 bytes (64 with its header), rounded up.
/// Checked against `MEMORY USAGE` in the tests.
pub const KEY_COST: u64 = 128;

/// The smallest allocation size class of jemalloc that holds `n` bytes.
pub fn size_class(n: u64) -> u64 {
    if n <= 8 {
        return 8;
    }
    if n <= 64 {
        return n.div_ceil(16) * 16;
    }
    // Four classes between 2^k and 2^(k+1), 2^(k-2) apart.
    let k = 63 - (n - 1).leading_zeros() as u64;
    let step = 1u64 << (k - 2);
    n.div_ceil(step) * step
}

/// The largest size class not above `requested` (at least 4 KiB): the
/// memory one chunk's value is allowed to take.
pub fn slot_for(requested: u64) -> u64 {
    let mut class = 4096;
    while size_class(class + 1) <= requested {
        class = size_class(class + 1);
    }
    class
}

/// The most bytes a value may have to fit an allocation of `slot` bytes.
pub fn capacity_of(slot: u64) -> u64 {
    slot - VALUE_OVERHEAD
}

/// What a chunk key whose value has `len` bytes costs Redis in all.
pub fn chunk_cost(len: u64) -> u64 {
    size_class(len + VALUE_OVERHEAD) + KEY_COST
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_classes_follow_jemalloc() {
        let classes: Vec<u64> = [1, 8, 9, 17, 64, 65, 100, 129, 4096, 4097, 1 << 20]
            .into_iter()
            .map(size_class)
            .collect();
        assert_eq!(
            classes,
            [8, 8, 16, 32, 64, 80, 112, 160, 4096, 5120, 1 << 20]
        );
        assert_eq!(size_class((1 << 20) + 1), 1_310_720);
    }

    #[test]
    fn a_slot_is_the_largest_class_not_above_the_request() {
        assert_eq!(slot_for(1 << 20), 1 << 20);
        assert_eq!(slot_for(1_000_000), 917_504);
        assert_eq!(slot_for(1), 4096);
        assert_eq!(slot_for(300_000), 262_144);
    }

    #[test]
    fn a_full_chunk_costs_its_slot_and_one_byte_more_costs_the_next_class() {
        let slot = 1 << 20;
        assert_eq!(chunk_cost(capacity_of(slot)), slot + KEY_COST);
        assert_eq!(chunk_cost(capacity_of(slot) + 1), 1_310_720 + KEY_COST);
    }
}
