//! Small files in one step: a file whose encoded bytes fit one small chunk
//! is read whole, before it is announced, and stored in its record by
//! the announcement itself. Uploading it then costs one round trip instead
//! of five (ANNOUNCE, RESERVE, SET, PUBLISH, FINISH), and a receiver reads
//! it with the record (see `receiver/open.rs`).

use std::os::unix::fs::FileExt;
use std::path::Path;

use super::Sender;
use crate::error::{Error, Result};
use crate::native::chunk;
use crate::native::codec::Codec;
use crate::native::encoder::{self, Snapshot};
use crate::native::pieces::Piece;
use crate::native::protocol::sending::Whole;

/// Files (or pieces) up to this size are read whole to see whether they
/// fit: text compresses about fourfold, so larger ones seldom do.
const READ_AT_MOST: u64 = 512 << 10;

/// The largest chunk value stored in a record. Records share the
/// channel's Redis Cluster slot, where chunk keys spread over the shards:
/// this keeps what one shard holds for the channel small.
const VALUE_AT_MOST: usize = 64 << 10;

impl Sender {
    /// The whole of a small file (or piece), encoded, when it fits one
    /// chunk of at most [`VALUE_AT_MOST`] bytes; `None` otherwise.
    pub(super) async fn read_whole(
        &self,
        path: &Path,
        piece: Option<&Piece>,
        file: &std::fs::File,
        metadata: &std::fs::Metadata,
    ) -> Result<Option<Whole>> {
        let (start, len) = match piece {
            Some(piece) => (piece.range.start, piece.range.end - piece.range.start),
            None => (0, metadata.len()),
        };
        if len > READ_AT_MOST {
            return Ok(None);
        }
        let file = file.try_clone().map_err(|e| Error::io(path, e))?;
        let expected = piece.map_or(Snapshot::of(metadata), |piece| piece.cut_from);
        let compression = self.options.compress;
        let slot = crate::redis::memory::slot_for(self.options.chunk_size);
        let path = path.to_owned();
        let limit = self.limit;
        tokio::task::spawn_blocking(move || {
            let shown = path.display().to_string();
            let codec = encoder::codec_for_file(compression, &file, &shown)
                .map_err(|e| Error::io(&path, e))?;
            // Data that stays as it is, too long for a record: not worth a read.
            if codec == Codec::Raw && len + chunk::HEADER as u64 > VALUE_AT_MOST as u64 {
                return Ok(None);
            }
            let data = read_exactly(&file, start, len).map_err(|e| Error::io(&path, e))?;
            let now = file.metadata().map_err(|e| Error::io(&path, e))?;
            let changed = match data.len() as u64 == len {
                true => expected.differs(&now),
                false => Some(format!(
                    "it was cut short ({} of {len} bytes read)",
                    data.len()
                )),
            };
            if let Some(reason) = changed {
                return Err(Error::SourceChanged { path, reason });
            }
            let value = chunk::whole_value(codec, &data, slot, VALUE_AT_MOST);
            Ok(value.map(|value| Whole {
                value,
                size: len,
                digest: blake3::hash(&data),
                limit,
            }))
        })
        .await
        .map_err(|e| Error::io("reading a small file", std::io::Error::other(e)))?
    }
}

/// Up to `len` bytes of `file` from `start`, fewer only at its end.
fn read_exactly(file: &std::fs::File, start: u64, len: u64) -> std::io::Result<Vec<u8>> {
    let mut data = vec![0; len as usize];
    let mut filled = 0;
    while filled < data.len() {
        match file.read_at(&mut data[filled..], start + filled as u64)? {
            0 => break,
            n => filled += n,
        }
    }
    data.truncate(filled);
    Ok(data)
}
