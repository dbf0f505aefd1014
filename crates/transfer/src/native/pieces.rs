//! One huge file shared by many workers (`send --workers --split SIZE`):
//! the file is cut at line ends into pieces of about SIZE, and each piece
//! travels as a file of its own, `NAME#I`, whose record says `piece I/N`.
//! Any worker can take, retry and finish a piece, so the pieces of one
//! file are processed at the same time, and the aggregation job's per-file
//! token makes each piece count once.
//!
//! A gzip'd or zstd'd input is decoded first, into a temporary file the
//! sender keeps while it runs (to upload a piece again): pieces must be
//! cut in the decoded lines, and the cut points, hence how many pieces
//! there are, are known only once the whole input was read. Pieces then
//! travel compressed by the channel's own codec.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use flate2::bufread::MultiGzDecoder;

use crate::native::codec::compressed_kind;
use crate::native::encoder::Snapshot;

/// Part of a file that travels as a file of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Piece {
    /// The plain file the piece is part of (a decoded copy for a
    /// compressed input).
    pub path: PathBuf,
    /// Its bytes in that file.
    pub range: Range<u64>,
    /// From 1.
    pub index: u32,
    /// How many pieces the file has.
    pub count: u32,
    /// Modification time of the input, nanoseconds since the epoch: with
    /// the piece's length, its identity, so a restarted sender resumes or
    /// skips pieces an earlier run sent.
    pub mtime: u128,
    /// `path` as it was cut: a piece of a file that changed since would
    /// read other bytes than its range promises.
    pub cut_from: Snapshot,
}

impl Piece {
    /// The name the piece travels under.
    pub fn name(&self, file: &str) -> String {
        format!("{file}#{}", self.index)
    }

    /// What its record's `piece` field says: `I/N`.
    pub fn field(&self) -> String {
        format!("{}/{}", self.index, self.count)
    }
}

/// A decoded copy of `path` when it is gzip'd or zstd'd (told by its first
/// bytes), written to the system's temporary directory; `None` when it is
/// plain already.
pub(crate) fn plain_copy(path: &Path) -> std::io::Result<Option<tempfile::TempPath>> {
    let mut input = BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
    let head = input.fill_buf()?;
    // Cut at its 0x0A bytes, any other compressed data would make pieces
    // nobody can decode.
    let gzip = match compressed_kind(head) {
        None => return Ok(None),
        Some("gz") => true,
        Some("zst") => false,
        Some(kind) => {
            return Err(std::io::Error::other(format!(
                "it is {kind} data, which --split cannot decode (only gzip and zstd): \
                 decompress it first"
            )));
        }
    };
    let mut copy = tempfile::Builder::new()
        .prefix("redistribute-piece-")
        .tempfile()?;
    let mut decoded: Box<dyn Read> = if gzip {
        Box::new(MultiGzDecoder::new(input))
    } else {
        Box::new(zstd::stream::read::Decoder::with_buffer(input)?)
    };
    let mut out = std::io::BufWriter::with_capacity(1 << 20, copy.as_file_mut());
    std::io::copy(&mut decoded, &mut out)?;
    out.flush()?;
    drop(out);
    Ok(Some(copy.into_temp_path()))
}

/// `path` cut into pieces of about `size` bytes, each ending after a
/// newline (the last at the end of the file); a line longer than `size`
/// stays whole. An empty file is one empty piece.
pub(crate) fn cut(path: &Path, size: u64, mtime: u128) -> std::io::Result<Vec<Piece>> {
    let mut file = std::fs::File::open(path)?;
    let metadata = file.metadata()?;
    let cut_from = Snapshot::of(&metadata);
    let len = metadata.len();
    let mut ends = Vec::new();
    let mut start = 0;
    while len - start > size {
        file.seek(SeekFrom::Start(start + size - 1))?;
        let mut reader = BufReader::with_capacity(64 << 10, &mut file);
        let mut skipped = Vec::new();
        // Up to and including the next newline (or the end of the file).
        let read = reader.read_until(b'\n', &mut skipped)? as u64;
        let end = start + size - 1 + read;
        ends.push(end);
        start = end;
    }
    if start < len || ends.is_empty() {
        ends.push(len);
    }
    let count = u32::try_from(ends.len()).map_err(std::io::Error::other)?;
    let mut begin = 0;
    Ok(ends
        .into_iter()
        .enumerate()
        .map(|(i, end)| {
            let piece = Piece {
                path: path.to_owned(),
                range: begin..end,
                index: i as u32 + 1,
                count,
                mtime,
                cut_from,
            };
            begin = end;
            piece
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces_of(text: &[u8], size: u64) -> Vec<Vec<u8>> {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(text).unwrap();
        cut(file.path(), size, 7)
            .unwrap()
            .into_iter()
            .map(|piece| text[piece.range.start as usize..piece.range.end as usize].to_vec())
            .collect()
    }

    #[test]
    fn pieces_end_after_a_newline_and_cover_the_file_exactly_once() {
        let text = b"aaaa\nbb\ncccccc\nd\neeeee\n";
        for size in 1..=30 {
            let pieces = pieces_of(text, size);
            assert_eq!(pieces.concat(), text, "size {size}");
            for piece in &pieces {
                assert!(piece.ends_with(b"\n"), "size {size}: {pieces:?}");
            }
            // About `size`: all but the last at least that long.
            for piece in &pieces[..pieces.len() - 1] {
                assert!(piece.len() as u64 >= size, "size {size}: {pieces:?}");
            }
        }
        assert_eq!(
            pieces_of(text, 8),
            [&b"aaaa\nbb\n"[..], b"cccccc\nd\n", b"eeeee\n"]
        );
        // A last line without its newline, a line longer than a piece.
        assert_eq!(pieces_of(b"xxxxxxxxxx\ny", 3), [&b"xxxxxxxxxx\n"[..], b"y"]);
        assert_eq!(pieces_of(b"", 3), [&b""[..]]);
    }

    #[test]
    fn pieces_are_numbered_and_named_for_the_file() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(b"1\n2\n3\n").unwrap();
        let pieces = cut(file.path(), 2, 7).unwrap();
        assert_eq!(pieces.len(), 3);
        assert_eq!(pieces[1].name("access.log"), "access.log#2");
        assert_eq!(pieces[1].field(), "2/3");
    }

    #[test]
    fn compressed_inputs_are_decoded_into_a_copy_and_plain_ones_are_not() {
        let text = b"line one\nline two\n".repeat(1000);
        let mut gz = tempfile::NamedTempFile::new().unwrap();
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&text).unwrap();
        gz.write_all(&encoder.finish().unwrap()).unwrap();
        let copy = plain_copy(gz.path()).unwrap().unwrap();
        assert_eq!(std::fs::read(&copy).unwrap(), text);
        let mut zst = tempfile::NamedTempFile::new().unwrap();
        zst.write_all(&zstd::encode_all(&text[..], 1).unwrap())
            .unwrap();
        let copy = plain_copy(zst.path()).unwrap().unwrap();
        assert_eq!(std::fs::read(&copy).unwrap(), text);
        let mut plain = tempfile::NamedTempFile::new().unwrap();
        plain.write_all(&text).unwrap();
        assert!(plain_copy(plain.path()).unwrap().is_none());
    }
}
