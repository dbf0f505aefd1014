//! `--split`: a local file sent as pieces cut at line ends, each a file of
//! its own (see `native/pieces.rs`), and the record that keeps a later run
//! from cutting it otherwise.

use std::path::Path;
use std::time::UNIX_EPOCH;

use super::driver::{Input, Job};
use super::{Origin, Sender, Sent};
use crate::error::{Error, Result};
use crate::native::pieces::{self, Piece};

/// A file cut into pieces, ready to send.
struct Cut {
    pieces: Vec<Piece>,
    /// The decoded copy the pieces are read from, for a compressed input.
    copy: Option<tempfile::TempPath>,
    /// The input's `size:mtime`.
    input: String,
}

impl Sender {
    /// Sends `path` as pieces of about `size` bytes, decoding it first
    /// when it is compressed.
    pub(super) async fn send_pieces(&self, path: &Path, name: &str, size: u64) -> Result<Sent> {
        let cut = cut(path, size).await?;
        if let Some(copy) = cut.copy {
            self.state().copies.push(copy);
        }
        let count = cut.pieces.len();
        self.record_split(name, &format!("{count} {size} {}", cut.input))
            .await?;
        tracing::info!(pieces = count, "{name}: cut into {count} pieces");
        let mut uploaded = None;
        for piece in cut.pieces {
            let piece_name = piece.name(name);
            self.before_each_file().await?;
            self.remember(&piece_name, Origin::Piece(piece.clone()));
            let job = Job::given(&piece_name, Input::Piece(piece));
            if let Some(bytes) = self.drive(job).await? {
                *uploaded.get_or_insert(0) += bytes;
            }
        }
        Ok(match uploaded {
            Some(bytes) => Sent::Uploaded { bytes },
            None => Sent::AlreadySent,
        })
    }

    /// Records that `name` goes in the pieces `cut` describes (`pieces
    /// size identity`), unless an earlier run sent it cut otherwise: its
    /// pieces so far were counted, and pieces cut differently would count
    /// their lines again.
    async fn record_split(&self, name: &str, cut: &str) -> Result<()> {
        match self.channel.recorded_split(name).await? {
            Some(earlier) if earlier != cut => Err(Error::Usage(format!(
                "{name} was sent in pieces by an earlier run ({earlier}: pieces, size, \
                 input size:mtime), now it would be {cut}; pieces cut otherwise would be \
                 counted again: send it with the same --split, or purge the channel"
            ))),
            Some(_) => Ok(()),
            None => self.channel.record_split(name, cut).await,
        }
    }
}

/// Cuts `path` into pieces of about `size` bytes, on a blocking thread.
async fn cut(path: &Path, size: u64) -> Result<Cut> {
    let source = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let metadata = std::fs::metadata(&source)?;
        let mtime = metadata
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let copy = pieces::plain_copy(&source)?;
        let plain = copy.as_ref().map_or(source.as_path(), |copy| copy);
        Ok::<_, std::io::Error>(Cut {
            pieces: pieces::cut(plain, size, mtime)?,
            copy,
            input: format!("{}:{mtime}", metadata.len()),
        })
    })
    .await
    .map_err(|e| Error::io(path, std::io::Error::other(e)))?
    .map_err(|e| Error::io(path, e))
}
