//! Handing a file's decoded bytes to the counter in blocks of whole
//! lines, skipping lines too long to be log lines as they stream by.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// Longest line we look at; longer ones count as unparsed (a binary file
/// without newlines must not grow memory without bound).
pub(super) const MAX_LINE: usize = 64 * 1024;

/// Decoded bytes of a file travel to the counter in blocks of about this
/// many bytes, cut after a newline.
pub(super) const LINE_BLOCK_BYTES: usize = 256 << 10;
/// Blocks read ahead of the counter.
pub(super) const BLOCKS_IN_FLIGHT: usize = 4;

/// Sends what `reader` gives to `blocks` as blocks of whole lines,
/// reusing the buffers that come back on `returned`. Lines longer than
/// [`MAX_LINE`] are skipped as they stream by rather than gathered; returns
/// how many there were.
pub(super) async fn read_blocks(
    mut reader: impl AsyncBufRead + Unpin,
    blocks: &tokio::sync::mpsc::Sender<Vec<u8>>,
    mut returned: tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
) -> std::io::Result<u64> {
    let mut fresh = || {
        returned
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(LINE_BLOCK_BYTES + LINE_BLOCK_BYTES / 4))
    };
    let mut block = fresh();
    let mut overlong = 0;
    let mut skipping = false;
    loop {
        let buffer = reader.fill_buf().await?;
        let length = buffer.len();
        if length == 0 {
            break;
        }
        let mut data = buffer;
        if skipping {
            match memchr::memchr(b'\n', data) {
                Some(newline) => {
                    skipping = false;
                    data = &data[newline + 1..];
                }
                None => data = &[],
            }
        }
        block.extend_from_slice(data);
        std::pin::Pin::new(&mut reader).consume(length);
        if block.len() >= LINE_BLOCK_BYTES {
            let cut = memchr::memrchr(b'\n', &block).map_or(0, |newline| newline + 1);
            let mut next = fresh();
            if block.len() - cut > MAX_LINE {
                overlong += 1;
                skipping = true;
            } else {
                next.extend_from_slice(&block[cut..]);
            }
            block.truncate(cut);
            let full = std::mem::replace(&mut block, next);
            if !full.is_empty() && blocks.send(full).await.is_err() {
                break; // the counter is gone; its error says why
            }
        }
    }
    if !block.is_empty() {
        let _ = blocks.send(block).await;
    }
    Ok(overlong)
}
