//! The masters of a Redis Cluster as a sender sees them: which master
//! holds a key, and whether it has room. Chunks spread over the masters by
//! hash, not by room, so one master can fill up while the others have
//! plenty; a chunk for a master past half its `maxmemory` waits until
//! receivers have freed some there.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::redis::{Memory, Redis};

/// How old the memory figures may be before they are read again.
const FRESH_FOR: Duration = Duration::from_millis(500);

/// Each master's slots and memory, read at most every [`FRESH_FOR`].
pub struct Shards {
    redis: Redis,
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Every range of slots, with the master that serves it.
    slots: Vec<SlotRange>,
    /// The memory of each master (`host:port`).
    memory: HashMap<String, Memory>,
    read_at: Option<Instant>,
    /// The masters we last said were full.
    said: Vec<String>,
}

impl Shards {
    /// The masters of `redis`, a cluster.
    pub fn new(redis: Redis) -> Self {
        Shards {
            redis,
            state: tokio::sync::Mutex::new(State::default()),
        }
    }

    /// Returns once the master holding `key` is below half its
    /// `maxmemory` (at once when it has none), saying once why it waits.
    pub async fn wait_for_room(&self, key: &str) -> Result<()> {
        let slot = slot_of(key.as_bytes());
        loop {
            let mut state = self.state.lock().await;
            if state.read_at.is_none_or(|at| at.elapsed() > FRESH_FOR) {
                self.read(&mut state).await?;
            }
            let master = state
                .slots
                .iter()
                .find(|range| (range.first..=range.last).contains(&slot))
                .map(|range| range.master.clone());
            let full = master
                .as_ref()
                .and_then(|m| state.memory.get(m).copied())
                .filter(Memory::past_half);
            let Some(Memory { used, max }) = full else {
                return Ok(());
            };
            let master = master.expect("found above");
            if !state.said.contains(&master) {
                tracing::info!(
                    "Redis master {master} holds {} of its maxmemory {}: waiting for receivers to free room there",
                    bytesize::ByteSize(used),
                    bytesize::ByteSize(max)
                );
                state.said.push(master);
            }
            drop(state);
            tokio::time::sleep(FRESH_FOR / 2).await;
        }
    }

    /// Reads the slot ranges and each master's memory.
    async fn read(&self, state: &mut State) -> Result<()> {
        let nodes: String = self
            .redis
            .query(
                "reading the cluster's nodes",
                redis::cmd("CLUSTER").arg("NODES"),
            )
            .await?;
        state.slots = parse_slots(&nodes);
        state.memory = self.redis.memory_by_primary().await?;
        state.read_at = Some(Instant::now());
        state
            .said
            .retain(|m| state.memory.get(m).is_some_and(Memory::past_half));
        Ok(())
    }
}

/// The cluster slot of a key: CRC16 (XMODEM) of the key, or of its hash tag
/// (the part between the first `{` and the next `}`, when not empty),
/// modulo 16384.
pub(crate) fn slot_of(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16::State::<crc16::XMODEM>::calculate(hashed) % 16384
}

/// Slots `first..=last`, served by `master` (`host:port`).
#[derive(Debug, PartialEq, Eq)]
struct SlotRange {
    first: u16,
    last: u16,
    master: String,
}

/// The slot ranges of the masters in a `CLUSTER NODES` answer (slot
/// fields from the ninth on: `a-b` or `a`; importing and migrating
/// markers in brackets are skipped).
fn parse_slots(nodes: &str) -> Vec<SlotRange> {
    let mut ranges = Vec::new();
    for line in nodes.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        if fields.len() < 9 || !fields[2].split(',').any(|f| f == "master") {
            continue;
        }
        let Some(address) = fields[1].split(['@', ',']).next() else {
            continue;
        };
        for range in &fields[8..] {
            if range.starts_with('[') {
                continue;
            }
            let (first, last) = range.split_once('-').unwrap_or((range, range));
            if let (Ok(first), Ok(last)) = (first.parse(), last.parse()) {
                ranges.push(SlotRange {
                    first,
                    last,
                    master: address.to_owned(),
                });
            }
        }
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::{SlotRange, parse_slots, slot_of};

    #[test]
    fn slots_follow_redis_including_hash_tags() {
        // Values from `CLUSTER KEYSLOT` on Redis 7.0.
        assert_eq!(slot_of(b"foo"), 12182);
        assert_eq!(slot_of(b"{user1000}.following"), slot_of(b"user1000"));
        assert_eq!(slot_of(b"foo{}{bar}"), slot_of(b"foo{}{bar}"));
        assert_ne!(slot_of(b"foo{}{bar}"), slot_of(b"bar"));
    }

    #[test]
    fn slot_ranges_of_masters_only() {
        let nodes = "\
a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460 [5461->-b2]
b2 127.0.0.1:7002@17002 master - 0 0 2 connected 5461-10922 16000
d4 127.0.0.1:7004@17004 slave a1 0 0 1 connected
";
        let range = |first, last, master: &str| SlotRange {
            first,
            last,
            master: master.to_owned(),
        };
        assert_eq!(
            parse_slots(nodes),
            vec![
                range(0, 5460, "127.0.0.1:7001"),
                range(5461, 10922, "127.0.0.1:7002"),
                range(16000, 16000, "127.0.0.1:7002"),
            ]
        );
    }
}
