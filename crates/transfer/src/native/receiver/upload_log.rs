//! What a file's upload log said so far: how many chunks are published,
//! each chunk's digest, and whether the upload ended or was abandoned.

use std::time::Duration;

use crate::error::Result;
use crate::native::protocol::channel::Channel;
use crate::native::protocol::reading::{LogEntry, UploadEnd};

/// The upload log of one file, as read so far.
pub(super) struct UploadLog {
    fid: u64,
    /// Chunks `0..published` may be read.
    pub published: u64,
    /// The BLAKE3 digest of each published chunk, by index.
    digests: Vec<Option<blake3::Hash>>,
    /// Size and digest of the whole file, once uploaded.
    pub end: Option<UploadEnd>,
    /// Why the sender abandoned the upload.
    pub aborted: Option<String>,
    /// The last entry read.
    last_id: String,
}

impl UploadLog {
    /// The log of file `fid`, nothing read yet.
    pub fn new(fid: u64) -> UploadLog {
        UploadLog {
            fid,
            published: 0,
            digests: Vec::new(),
            end: None,
            aborted: None,
            last_id: "0-0".into(),
        }
    }

    /// The digest published with chunk `index`, if any.
    pub fn digest(&self, index: u64) -> Option<blake3::Hash> {
        self.digests.get(index as usize).copied().flatten()
    }

    /// Reads the log from where we left off, blocking up to `block` when
    /// it has nothing new. Returns whether anything new came.
    pub async fn follow(&mut self, channel: &Channel, block: Option<Duration>) -> Result<bool> {
        let entries = channel
            .read_upload_log(self.fid, &self.last_id, block)
            .await?;
        let news = !entries.is_empty();
        for entry in entries {
            self.apply(entry);
        }
        Ok(news)
    }

    fn apply(&mut self, entry: LogEntry) {
        if let Some(published) = entry.published {
            self.published = self.published.max(published.count);
            let first = published
                .count
                .saturating_sub(published.digests.len() as u64);
            for (i, digest) in published.digests.into_iter().enumerate() {
                let index = (first + i as u64) as usize;
                if self.digests.len() <= index {
                    self.digests.resize(index + 1, None);
                }
                self.digests[index] = digest;
            }
        }
        if let Some(end) = entry.end {
            self.end = Some(end);
        }
        if let Some(reason) = entry.aborted {
            self.aborted = Some(reason);
        }
        self.last_id = entry.id;
    }
}
