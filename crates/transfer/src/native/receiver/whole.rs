//! A file that came whole with its announcement (`sender/whole.rs`): its
//! record holds its one chunk, so it is restored and verified at once,
//! with no chunk to read, no upload log to follow and no reading position
//! to report (nothing of it is deleted before everyone settled it).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::mpsc;

use super::fetch::Fetching;
use crate::error::Error;
use crate::native::chunk;
use crate::native::protocol::reading::StoredWhole;
use crate::native::rate::RateMeter;
use crate::telemetry;

/// The file's original bytes, ready to read, or the reason they are not:
/// a value that does not restore to the recorded size and digest was
/// damaged in Redis, so the file counts as gone and is asked for again.
pub(super) fn restore(name: &str, slot: u64, whole: StoredWhole, rate: &RateMeter) -> Fetching {
    let verified = Arc::new(AtomicBool::new(false));
    let gone = Arc::new(AtomicBool::new(false));
    let (pieces, error) = match check(&whole, slot) {
        Ok(pieces) => (pieces, None),
        Err(reason) => (Vec::new(), Some(reason)),
    };
    let (sender, chunks) = mpsc::channel(pieces.len().max(1));
    match error {
        None => {
            for piece in pieces {
                let _ = sender.try_send(Ok(piece));
            }
            rate.add(whole.size);
            telemetry::bytes_received(whole.size);
            verified.store(true, Ordering::Release);
        }
        Some(reason) => {
            gone.store(true, Ordering::Release);
            let error = Error::Corrupt {
                name: name.to_owned(),
                reason: format!("{reason} (damaged in Redis)"),
            };
            let _ = sender.try_send(Err(io::Error::new(io::ErrorKind::InvalidData, error)));
        }
    }
    Fetching {
        chunks,
        verified,
        gone,
        task: None,
    }
}

/// The value's original bytes, once they match the recorded size and
/// digest. An empty file's value is empty (a chunk never is).
fn check(whole: &StoredWhole, slot: u64) -> Result<Vec<bytes::Bytes>, String> {
    let pieces = match whole.value.is_empty() {
        true => Vec::new(),
        false => chunk::decode(&whole.value, slot)?,
    };
    let mut hasher = blake3::Hasher::new();
    let mut size = 0;
    for piece in &pieces {
        hasher.update(piece);
        size += piece.len() as u64;
    }
    if size != whole.size {
        return Err(format!(
            "its record holds {size} bytes, the sender sent {}",
            whole.size
        ));
    }
    if hasher.finalize() != whole.digest {
        return Err("BLAKE3 digest mismatch".into());
    }
    Ok(pieces)
}
