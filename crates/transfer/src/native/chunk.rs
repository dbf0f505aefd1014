//! The chunk format: what one chunk key holds, how a sender packs blocks
//! into it, and how a receiver restores the original bytes.
//!
//! A chunk is a sequence of blocks, each decodable on its own:
//!
//! ```text
//! codec (1 byte) | original length (u32 LE) | stored length (u32 LE) | stored bytes
//! ```
//!
//! Codec 0 is raw, 1 an lz4 block, 2 a zstd frame. A compressed block
//! restores to at most [`MAX_BLOCK`] bytes; a chunk to at most
//! [`max_original`]. Chunks are packed up to the capacity of their
//! allocator size class (see [`crate::redis::memory`]), so every chunk but
//! a file's last costs Redis exactly its slot. Each chunk's BLAKE3 digest,
//! published with it, covers its stored bytes, so a receiver checks what it
//! read before decoding any of it; the file's digest covers the original
//! bytes.

use bytes::Bytes;

use crate::native::buffers::{CHUNKS, Pool, READS, RESTORED};
use crate::native::codec::{self, Codec};
use crate::redis::memory;

/// Bytes of a block's header.
pub(crate) const HEADER: usize = 9;
/// Most original bytes of a compressed block.
pub(crate) const MAX_BLOCK: usize = 128 << 10;
/// Original bytes a sender reads at a time, compressed as several blocks
/// by one task.
pub(crate) const READ: usize = 256 << 10;
/// Most original bytes a chunk of compressed blocks restores to, which
/// bounds a receiver's memory.
const MAX_ORIGINAL: u64 = 8 << 20;

/// Original bytes one chunk in a `slot`-byte allocation holds raw.
pub(crate) fn raw_capacity(slot: u64) -> u64 {
    memory::capacity_of(slot) - HEADER as u64
}

/// Original bytes a sender reads at a time: for raw data exactly a chunk.
pub(crate) fn read_len(slot: u64, codec: Codec) -> usize {
    let raw = raw_capacity(slot) as usize;
    if codec == Codec::Raw {
        raw
    } else {
        READ.min(raw)
    }
}

/// The most original bytes a chunk with a `slot`-byte allocation may
/// restore to.
pub(crate) fn max_original(slot: u64) -> u64 {
    MAX_ORIGINAL.max(slot)
}

/// Original bytes per compressed block: what each codec needs to compress
/// well (lz4 looks back 64 KiB at most), and small against a chunk, since
/// a block that does not fit the rest of a chunk opens the next one.
fn block_len(codec: Codec, slot: u64) -> usize {
    let best = match codec {
        Codec::Zstd => MAX_BLOCK,
        _ => 64 << 10,
    };
    best.min(memory::capacity_of(slot) as usize / 8).max(1024)
}

/// A buffer from `pool` for `len` original bytes, with room for the
/// header in front.
pub(crate) fn block_buffer(pool: &Pool, len: usize) -> Vec<u8> {
    let mut buffer = pool.take(HEADER + len);
    buffer.resize(HEADER, 0);
    buffer
}

/// A read of raw bytes, framed as one block.
pub(crate) struct Block {
    frame: Vec<u8>,
    /// Original length.
    len: usize,
}

impl Block {
    /// Frames the original bytes in `buffer`, after [`HEADER`] bytes of
    /// room (see [`block_buffer`]), as they are.
    pub(crate) fn raw(mut buffer: Vec<u8>) -> Block {
        let len = buffer.len() - HEADER;
        write_header(&mut buffer, Codec::Raw, len);
        Block { frame: buffer, len }
    }
}

/// A read compressed into blocks, framed one after the other in one buffer.
pub(crate) struct Compressed {
    frames: Vec<u8>,
    /// Where each block's frame ends, its original length, and whether it
    /// is stored raw (it did not shrink).
    blocks: Vec<(usize, usize, bool)>,
}

impl Compressed {
    /// Compresses `data` with `codec` for chunks in `slot`-byte
    /// allocations, in blocks of a few dozen KiB, each stored raw when it
    /// does not get smaller.
    pub(crate) fn new(codec: Codec, data: &[u8], slot: u64) -> Self {
        let mut frames = READS.take(data.len() + data.len() / 8);
        let mut blocks = Vec::new();
        for data in data.chunks(block_len(codec, slot)) {
            let start = frames.len();
            frames.resize(start + HEADER, 0);
            let stored = if codec::compress(codec, data, &mut frames) {
                codec
            } else {
                frames.extend_from_slice(data);
                Codec::Raw
            };
            write_header(&mut frames[start..], stored, data.len());
            blocks.push((frames.len(), data.len(), stored == Codec::Raw));
        }
        Compressed { frames, blocks }
    }

    /// Whether any block got smaller.
    pub(crate) fn shrank(&self) -> bool {
        self.blocks.iter().any(|&(_, _, raw)| !raw)
    }
}

/// The chunk value a small input makes on its own, framed as [`Packer`]
/// frames one chunk: one raw block, or the compressed blocks one after
/// another; `None` when it does not fit one chunk of `slot`, or is longer
/// than `at_most`. An empty input makes an empty value. Allocated to fit,
/// not from a pool: the value is kept while a whole batch of small files
/// is announced.
pub(crate) fn whole_value(codec: Codec, data: &[u8], slot: u64, at_most: usize) -> Option<Bytes> {
    let capacity = (memory::capacity_of(slot) as usize).min(at_most);
    if data.is_empty() {
        return Some(Bytes::new());
    }
    if codec == Codec::Raw {
        if HEADER + data.len() > capacity {
            return None;
        }
        let mut value = Vec::with_capacity(HEADER + data.len());
        value.resize(HEADER, 0);
        value.extend_from_slice(data);
        write_header(&mut value, Codec::Raw, data.len());
        return Some(Bytes::from(value));
    }
    let read = Compressed::new(codec, data, slot);
    let value = (read.frames.len() <= capacity).then(|| Bytes::copy_from_slice(&read.frames));
    READS.give(read.frames);
    value
}

fn write_header(frame: &mut [u8], codec: Codec, original: usize) {
    let stored = frame.len() - HEADER;
    frame[0] = codec as u8;
    frame[1..5].copy_from_slice(&(original as u32).to_le_bytes());
    frame[5..9].copy_from_slice(&(stored as u32).to_le_bytes());
}

/// A chunk ready to be written.
pub(crate) struct Packed {
    pub(crate) data: Bytes,
    /// Original bytes it restores to.
    pub(crate) original: u64,
}

/// Packs blocks, in order, into chunks of at most `capacity` bytes.
pub(crate) struct Packer {
    capacity: usize,
    max_original: u64,
    chunk: Vec<u8>,
    original: u64,
}

impl Packer {
    /// A packer for chunks in `slot`-byte allocations.
    pub(crate) fn new(slot: u64) -> Self {
        Packer {
            capacity: memory::capacity_of(slot) as usize,
            max_original: max_original(slot),
            chunk: Vec::new(),
            original: 0,
        }
    }

    /// Adds a raw read, moving the chunks it completes to `done`. A read
    /// that fills a chunk becomes that chunk without a copy.
    pub(crate) fn push(&mut self, block: Block, done: &mut Vec<Packed>) {
        let fills = block.frame.len() <= self.capacity
            && block.frame.len() + HEADER >= self.capacity
            && block.len as u64 <= self.max_original;
        if self.chunk.is_empty() && fills {
            self.chunk = block.frame;
            self.original = block.len as u64;
            done.extend(self.take());
            return;
        }
        self.push_raw(&block.frame[HEADER..], done);
        CHUNKS.give(block.frame);
    }

    /// Adds a compressed read's blocks, moving the chunks they complete to
    /// `done`, and gives its buffer back.
    pub(crate) fn push_compressed(&mut self, read: Compressed, done: &mut Vec<Packed>) {
        let mut start = 0;
        for &(end, len, raw) in &read.blocks {
            let frame = &read.frames[start..end];
            if raw {
                self.push_raw(&frame[HEADER..], done);
            } else {
                // A compressed block does not split: it opens the next chunk.
                let room = self.capacity - self.chunk.len();
                if frame.len() > room || self.original + len as u64 > self.max_original {
                    done.extend(self.take());
                }
                self.append(frame, len);
                if self.capacity - self.chunk.len() <= HEADER {
                    done.extend(self.take());
                }
            }
            start = end;
        }
        READS.give(read.frames);
    }

    /// Adds raw bytes, split to fill each chunk exactly.
    fn push_raw(&mut self, mut data: &[u8], done: &mut Vec<Packed>) {
        while !data.is_empty() {
            let room = (self.capacity - self.chunk.len()).saturating_sub(HEADER);
            let n = room
                .min((self.max_original - self.original) as usize)
                .min(data.len());
            if n == 0 {
                done.extend(self.take());
                continue;
            }
            let mut header = [0; HEADER];
            header[0] = Codec::Raw as u8;
            header[1..5].copy_from_slice(&(n as u32).to_le_bytes());
            header[5..9].copy_from_slice(&(n as u32).to_le_bytes());
            self.append(&header, 0);
            self.append(&data[..n], n);
            data = &data[n..];
            if self.capacity - self.chunk.len() <= HEADER {
                done.extend(self.take());
            }
        }
    }

    /// Appends bytes holding `original` bytes of the file.
    fn append(&mut self, bytes: &[u8], original: usize) {
        if self.chunk.is_empty() {
            self.chunk = CHUNKS.take(self.capacity);
        }
        self.chunk.extend_from_slice(bytes);
        self.original += original as u64;
    }

    /// The last, partly filled chunk, if any.
    pub(crate) fn take(&mut self) -> Option<Packed> {
        if self.chunk.is_empty() {
            return None;
        }
        let original = std::mem::take(&mut self.original);
        Some(Packed {
            data: CHUNKS.bytes(std::mem::take(&mut self.chunk)),
            original,
        })
    }
}

/// Restores the original bytes of a chunk from a `slot`-byte allocation:
/// raw blocks as slices of it, compressed ones into one buffer.
///
/// # Errors
///
/// A description of the first thing wrong with it: chunks are checked
/// against their digest first, so this means a sender wrote nonsense.
pub(crate) fn decode(chunk: &Bytes, slot: u64) -> Result<Vec<Bytes>, String> {
    if chunk.len() as u64 > memory::capacity_of(slot) {
        return Err(format!(
            "a chunk of {} bytes is larger than its slot",
            chunk.len()
        ));
    }
    let blocks = parse(chunk, slot)?;
    let restored_len = blocks
        .iter()
        .filter(|b| b.codec != Codec::Raw)
        .map(|b| b.original)
        .sum();
    let restored = if restored_len == 0 {
        Bytes::new()
    } else {
        let mut restored = RESTORED.take_len(restored_len);
        let mut at = 0;
        for block in blocks.iter().filter(|b| b.codec != Codec::Raw) {
            let out = &mut restored[at..at + block.original];
            codec::decompress_into(block.codec, &chunk[block.stored.clone()], out)?;
            at += block.original;
        }
        RESTORED.bytes(restored)
    };
    let mut at = 0;
    Ok(blocks
        .into_iter()
        .map(|block| {
            if block.codec == Codec::Raw {
                return chunk.slice(block.stored);
            }
            at += block.original;
            restored.slice(at - block.original..at)
        })
        .collect())
}

/// One block as its header describes it.
struct Parsed {
    codec: Codec,
    original: usize,
    /// Where its stored bytes are in the chunk.
    stored: std::ops::Range<usize>,
}

/// Reads and checks every block header of a chunk.
fn parse(chunk: &[u8], slot: u64) -> Result<Vec<Parsed>, String> {
    let mut blocks = Vec::new();
    let mut at = 0;
    let mut total = 0u64;
    while at < chunk.len() {
        let header = chunk
            .get(at..at + HEADER)
            .ok_or_else(|| format!("a block header is cut short at byte {at}"))?;
        let codec = Codec::from_byte(header[0])
            .ok_or_else(|| format!("unknown codec {} at byte {at}", header[0]))?;
        let original = u32::from_le_bytes(header[1..5].try_into().expect("4 bytes")) as usize;
        let stored = u32::from_le_bytes(header[5..9].try_into().expect("4 bytes")) as usize;
        let start = at + HEADER;
        let end = start + stored;
        if end > chunk.len() {
            return Err(format!("a block at byte {at} runs past the chunk's end"));
        }
        total += original as u64;
        if total > max_original(slot) || (codec != Codec::Raw && original > MAX_BLOCK) {
            return Err(format!("a block at byte {at} restores to too many bytes"));
        }
        if codec == Codec::Raw && original != stored {
            return Err(format!("a raw block at byte {at} has two lengths"));
        }
        blocks.push(Parsed {
            codec,
            original,
            stored: start..end,
        });
        at = end;
    }
    if blocks.is_empty() {
        return Err("the chunk is empty".into());
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLOT: u64 = 1 << 20;
    const CAPACITY: u64 = SLOT - 12;

    fn pack_compressed(codec: Codec, data: &[u8]) -> Vec<Packed> {
        let mut packer = Packer::new(SLOT);
        let mut done = Vec::new();
        for read in data.chunks(READ) {
            packer.push_compressed(Compressed::new(codec, read, SLOT), &mut done);
        }
        done.extend(packer.take());
        done
    }

    fn pack(blocks: Vec<Block>) -> Vec<Packed> {
        let mut packer = Packer::new(SLOT);
        let mut done = Vec::new();
        for block in blocks {
            packer.push(block, &mut done);
        }
        done.extend(packer.take());
        done
    }

    fn restore(chunks: &[Packed]) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in chunks {
            assert!(chunk.data.len() as u64 <= CAPACITY);
            let pieces = decode(&chunk.data, SLOT).unwrap();
            let len: usize = pieces.iter().map(Bytes::len).sum();
            assert_eq!(len as u64, chunk.original);
            pieces.iter().for_each(|p| out.extend_from_slice(p));
        }
        out
    }

    fn log(bytes: usize, seed: u64) -> Vec<u8> {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut out = Vec::with_capacity(bytes + 100);
        while out.len() < bytes {
            out.extend_from_slice(
                format!(
                    "{}.{}.{}.{} - - [01/Nov/2026:00:00:01 +0000] \"GET /{} HTTP/1.1\" 200 {}\n",
                    rng.u8(..),
                    rng.u8(..),
                    rng.u8(..),
                    rng.u8(..),
                    rng.u32(..100),
                    rng.u32(..60000)
                )
                .as_bytes(),
            );
        }
        out.truncate(bytes);
        out
    }

    #[test]
    fn compressed_blocks_fill_chunks_to_their_size_class_and_restore_exactly() {
        for codec in [Codec::Lz4, Codec::Zstd] {
            let data = log(24 << 20, 1);
            let chunks = pack_compressed(codec, &data);
            assert_eq!(restore(&chunks), data);
            for chunk in &chunks[..chunks.len() - 1] {
                // In the slot's size class, or at the limit of original bytes.
                let cost = memory::chunk_cost(chunk.data.len() as u64);
                assert!(
                    cost == SLOT + memory::KEY_COST || chunk.original > MAX_ORIGINAL - 128 * 1024,
                    "{codec:?}: {} bytes for {}",
                    chunk.data.len(),
                    chunk.original
                );
            }
        }
    }

    #[test]
    fn raw_reads_of_a_chunks_capacity_are_chunks_as_they_are() {
        let data = log(3 << 20, 2);
        let raw = (CAPACITY as usize) - HEADER;
        let chunks = pack(
            data.chunks(raw)
                .map(|read| {
                    let mut buffer = block_buffer(&CHUNKS, read.len());
                    buffer.extend_from_slice(read);
                    Block::raw(buffer)
                })
                .collect(),
        );
        assert_eq!(chunks.len(), 4);
        assert!(chunks[..3].iter().all(|c| c.data.len() as u64 == CAPACITY));
        assert_eq!(restore(&chunks), data);
    }

    #[test]
    fn incompressible_blocks_are_stored_raw_and_split_to_fill_chunks() {
        let data = common_noise(5 << 20);
        assert!(!Compressed::new(Codec::Zstd, &data[..READ], SLOT).shrank());
        let chunks = pack_compressed(Codec::Lz4, &data);
        for chunk in &chunks[..chunks.len() - 1] {
            assert_eq!(chunk.data.len() as u64, CAPACITY);
        }
        assert_eq!(restore(&chunks), data);
    }

    fn common_noise(len: usize) -> Vec<u8> {
        let mut rng = fastrand::Rng::with_seed(3);
        (0..len).map(|_| rng.u8(..)).collect()
    }

    #[test]
    fn damaged_chunks_are_refused_with_a_reason() {
        let data = log(64 << 10, 4);
        let good = pack_compressed(Codec::Lz4, &data).remove(0).data;
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "empty"),
            (good[..5].to_vec(), "cut short"),
            ([&[9u8][..], &good[1..]].concat(), "unknown codec"),
            (good[..good.len() - 1].to_vec(), "past the chunk's end"),
            (
                [&good[..], &[0, 1, 0, 0, 0, 2, 0, 0, 0, 7, 7][..]].concat(),
                "two lengths",
            ),
        ];
        for (chunk, expected) in cases {
            let error = decode(&Bytes::from(chunk), SLOT).unwrap_err();
            assert!(error.contains(expected), "{error:?} lacks {expected:?}");
        }
        let mut huge = good.to_vec();
        huge[1..5].copy_from_slice(&(MAX_BLOCK as u32 + 1).to_le_bytes());
        assert!(
            decode(&Bytes::from(huge), SLOT)
                .unwrap_err()
                .contains("too many bytes")
        );
        let mut wrong = good.to_vec();
        wrong[1..5].copy_from_slice(&(64u32 << 10).wrapping_sub(1).to_le_bytes());
        let error = decode(&Bytes::from(wrong), SLOT).unwrap_err();
        assert!(
            !error.is_empty(),
            "a block one byte short is refused: {error}"
        );
    }

    #[test]
    fn a_whole_value_is_the_one_chunk_the_packer_makes_or_none() {
        let text: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("line {} of a log\n", i % 977).into_bytes())
            .take(200_000)
            .collect();
        for codec in [Codec::Lz4, Codec::Zstd] {
            let packed = pack_compressed(codec, &text[..100_000]);
            let value = whole_value(codec, &text[..100_000], SLOT, usize::MAX).unwrap();
            assert_eq!((packed.len(), &packed[0].data), (1, &value));
        }
        let raw = &text[..5000];
        let mut buffer = block_buffer(&CHUNKS, raw.len());
        buffer.extend_from_slice(raw);
        let packed = pack(vec![Block::raw(buffer)]);
        assert_eq!(
            whole_value(Codec::Raw, raw, SLOT, usize::MAX).unwrap(),
            packed[0].data
        );
        assert_eq!(
            whole_value(Codec::Raw, b"", SLOT, usize::MAX).unwrap(),
            Bytes::new()
        );
        let too_big = vec![7; CAPACITY as usize];
        assert_eq!(whole_value(Codec::Raw, &too_big, SLOT, usize::MAX), None);
        assert_eq!(whole_value(Codec::Raw, raw, SLOT, 1000), None);
    }
}
