//! Turns a sender's input into chunks: a reader cuts it into blocks and
//! hashes the original bytes, blocks are compressed on the blocking pool
//! (several at once on several cores), and a [`Packer`] fills chunks with
//! them in order. The sender only writes what comes out.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use futures_util::future::{Either, ready};
use futures_util::stream::FuturesOrdered;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

use crate::error::Error;
use crate::files::incoming::AbortOnDrop;
use crate::native::buffers::{CHUNKS, Pool, READS};
use crate::native::chunk::{self, Block, Compressed, Packed, Packer};
use crate::native::codec::{Codec, Compression};

/// Bytes read from a file's start to recognise compressed content.
const HEAD: usize = 8192;
/// How long a stream may pause before what it sent so far goes out as a
/// chunk of its own, so receivers of a slow pipe are not kept waiting for
/// a full chunk.
const FLUSH_AFTER: Duration = Duration::from_secs(1);
/// Reads in a row none of whose blocks shrink after which the rest of a
/// file is sent raw: it is compressed already (or encrypted), whatever its type.
const GIVE_UP_AFTER: u32 = 8;

/// What the encoder passes to the uploader.
pub(crate) enum Encoded {
    Chunk(Packed),
    /// The input ended: its size and the digest of all its original bytes.
    End {
        size: u64,
        digest: blake3::Hash,
    },
}

/// A read, ready to pack.
enum Encoding {
    Raw(Block),
    Compressed(Compressed),
}

/// What a reader passes to the encoder.
enum Input {
    /// Original bytes after [`chunk::HEADER`] bytes of room.
    Block(Vec<u8>),
    /// Close the chunk being filled: the input paused.
    Flush,
    End {
        size: u64,
        digest: blake3::Hash,
    },
}

/// How a file is cut and stored.
#[derive(Clone, Copy)]
pub(crate) struct Layout {
    /// The allocation each chunk's value gets in Redis.
    pub(crate) slot: u64,
    pub(crate) codec: Codec,
}

impl Layout {
    /// Original bytes read at a time.
    fn read_len(&self) -> usize {
        chunk::read_len(self.slot, self.codec)
    }

    /// Where read buffers come from: raw reads become chunks as they are.
    fn pool(&self) -> &'static Pool {
        if self.codec == Codec::Raw {
            &CHUNKS
        } else {
            &READS
        }
    }
}

/// The codec for the file `file` given `compression`, from its first
/// bytes; says so when the file is compressed already.
pub(crate) fn codec_for_file(
    compression: Compression,
    file: &std::fs::File,
    name: &str,
) -> std::io::Result<Codec> {
    use std::os::unix::fs::FileExt;
    let mut head = vec![0; HEAD];
    let len = file.read_at(&mut head, 0)?;
    let (codec, kind) = compression.codec_for(&head[..len]);
    if let Some(kind) = kind {
        tracing::debug!("{name}: {kind} data, sent as it is");
    }
    Ok(codec)
}

/// Encodes `file` from byte `offset` on (`hasher` covers the bytes before
/// it), checking at the end that it is still the file `expected`
/// describes. Returns the chunks as they come and the tasks producing
/// them.
/// With `piece_len`, `file` is positioned at a piece of that many bytes,
/// which ends there rather than at the file's end.
pub(crate) fn encode_file(
    file: std::fs::File,
    path: &Path,
    offset: u64,
    hasher: blake3::Hasher,
    expected: Snapshot,
    layout: Layout,
    piece_len: Option<u64>,
) -> (mpsc::Receiver<std::io::Result<Encoded>>, Tasks) {
    let (blocks, input) = mpsc::channel(2);
    let path = path.to_owned();
    let reading = tokio::task::spawn_blocking(move || {
        let read = FileRead {
            offset,
            hasher,
            expected,
            layout,
            piece_len,
        };
        read_file(file, &path, read, blocks);
    });
    let (out, encoded) = mpsc::channel(2);
    let encoding = tokio::spawn(encode(input, layout, out));
    (encoded, [AbortOnDrop(reading), AbortOnDrop(encoding)])
}

/// Encodes everything `reader` yields, recognising compressed content from
/// its first bytes.
pub(crate) fn encode_stream<R: AsyncRead + Unpin + Send + 'static>(
    reader: R,
    compression: Compression,
    layout: Layout,
) -> (mpsc::Receiver<std::io::Result<Encoded>>, Tasks) {
    let (blocks, input) = mpsc::channel(2);
    let (out, encoded) = mpsc::channel(2);
    let (settled, layout_rx) = tokio::sync::oneshot::channel();
    let reading = tokio::spawn(read_stream(reader, compression, layout, blocks, settled));
    let encoding = tokio::spawn(async move {
        // Without a layout the reader failed first: its error still goes out.
        let layout = layout_rx.await.unwrap_or(layout);
        encode(input, layout, out).await;
    });
    (encoded, [AbortOnDrop(reading), AbortOnDrop(encoding)])
}

/// The reading and encoding tasks of one input; dropping them stops them.
pub(crate) type Tasks = [AbortOnDrop; 2];

/// A block being encoded: raw at once, compressed on the blocking pool;
/// `None` asks for the chunk being filled to be closed.
type Pending = Either<
    tokio::task::JoinHandle<Option<Encoding>>,
    futures_util::future::Ready<Result<Option<Encoding>, tokio::task::JoinError>>,
>;

/// What [`encode`] keeps between blocks.
struct Packing {
    packer: Packer,
    /// Turns raw once compression keeps missing.
    codec: Codec,
    /// Compressed reads in a row that did not shrink.
    misses: u32,
    /// Chunks packed, to pass on.
    done: Vec<Packed>,
}

impl Packing {
    /// Starts encoding one block with the codec in force.
    fn start(&self, buffer: Vec<u8>, slot: u64) -> Pending {
        let codec = self.codec;
        if codec == Codec::Raw {
            return Either::Right(ready(Ok(Some(Encoding::Raw(Block::raw(buffer))))));
        }
        Either::Left(tokio::task::spawn_blocking(move || {
            let read = Compressed::new(codec, &buffer[chunk::HEADER..], slot);
            READS.give(buffer);
            Some(Encoding::Compressed(read))
        }))
    }

    /// Packs an encoded block, or closes the chunk being filled.
    fn pack(&mut self, encoded: Option<Encoding>) {
        match encoded {
            Some(Encoding::Raw(block)) => self.packer.push(block, &mut self.done),
            Some(Encoding::Compressed(read)) => {
                self.misses = if read.shrank() { 0 } else { self.misses + 1 };
                if self.misses >= GIVE_UP_AFTER {
                    self.codec = Codec::Raw;
                }
                self.packer.push_compressed(read, &mut self.done);
            }
            None => self.done.extend(self.packer.take()),
        }
    }
}

/// Compresses blocks in parallel and packs them in order.
async fn encode(
    mut input: mpsc::Receiver<std::io::Result<Input>>,
    layout: Layout,
    out: mpsc::Sender<std::io::Result<Encoded>>,
) {
    let parallel = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut packing = Packing {
        packer: Packer::new(layout.slot),
        codec: layout.codec,
        misses: 0,
        done: Vec::new(),
    };
    let mut pending: FuturesOrdered<Pending> = FuturesOrdered::new();
    let mut end = None;
    loop {
        tokio::select! {
            biased;
            encoded = pending.next(), if !pending.is_empty() => match encoded {
                Some(Ok(encoded)) => packing.pack(encoded),
                _ => return,
            },
            next = input.recv(), if end.is_none() && pending.len() < parallel => match next {
                Some(Ok(Input::Block(buffer))) => {
                    pending.push_back(packing.start(buffer, layout.slot));
                }
                // In order with the blocks before it.
                Some(Ok(Input::Flush)) => pending.push_back(Either::Right(ready(Ok(None)))),
                Some(Ok(Input::End { size, digest })) => end = Some(Encoded::End { size, digest }),
                Some(Err(error)) => {
                    let _ = out.send(Err(error)).await;
                    return;
                }
                None => return, // the reader was stopped
            },
            else => break,
        }
        for packed in packing.done.drain(..) {
            if out.send(Ok(Encoded::Chunk(packed))).await.is_err() {
                return;
            }
        }
    }
    if let Some(last) = packing.packer.take() {
        let _ = out.send(Ok(Encoded::Chunk(last))).await;
    }
    if let Some(end) = end {
        let _ = out.send(Ok(end)).await;
    }
}

/// What [`read_file`] reads: see [`encode_file`].
struct FileRead {
    offset: u64,
    hasher: blake3::Hasher,
    expected: Snapshot,
    layout: Layout,
    piece_len: Option<u64>,
}

/// Reads a file in blocks on a blocking thread: plain reads straight into
/// each block's buffer, hashing as it goes.
fn read_file(
    mut file: std::fs::File,
    path: &Path,
    read: FileRead,
    out: mpsc::Sender<std::io::Result<Input>>,
) {
    let FileRead {
        offset,
        mut hasher,
        expected,
        layout,
        piece_len,
    } = read;
    let size = layout.read_len();
    let pool = layout.pool();
    let mut total = offset;
    loop {
        let wanted = piece_len.map_or(size as u64, |len| (len - total).min(size as u64));
        let mut buffer = chunk::block_buffer(pool, size);
        if let Err(error) = (&mut file).take(wanted).read_to_end(&mut buffer) {
            let _ = out.blocking_send(Err(error));
            return;
        }
        let len = buffer.len() - chunk::HEADER;
        total += len as u64;
        let last = len < size || piece_len == Some(total);
        let unchanged = match piece_len {
            // A piece ends before the file does: the file as a whole must
            // still be the one opened, and the piece read in full.
            Some(piece_len) => expected
                .changed(&file, expected.len)
                .or_else(|| (total != piece_len).then(|| "it was cut short".to_owned())),
            None => expected.changed(&file, total),
        };
        if last && let Some(reason) = unchanged {
            // Before the last block goes out: a file cut short or grown
            // while read must not be finished as if it were whole.
            let error = Error::SourceChanged {
                path: path.to_owned(),
                reason,
            };
            let _ = out.blocking_send(Err(std::io::Error::other(error)));
            return;
        }
        hasher.update(&buffer[chunk::HEADER..]);
        if len > 0 && out.blocking_send(Ok(Input::Block(buffer))).is_err() {
            return;
        }
        if last {
            let digest = hasher.finalize();
            let _ = out.blocking_send(Ok(Input::End {
                size: total,
                digest,
            }));
            return;
        }
    }
}

/// Reads a stream in blocks; the first decides the codec (and so the
/// layout the encoder is told through `settled`).
async fn read_stream<R: AsyncRead + Unpin>(
    mut reader: R,
    compression: Compression,
    mut layout: Layout,
    out: mpsc::Sender<std::io::Result<Input>>,
    settled: tokio::sync::oneshot::Sender<Layout>,
) {
    let mut settled = Some(settled);
    let mut hasher = blake3::Hasher::new();
    let mut total = 0u64;
    loop {
        let size = layout.read_len();
        let mut buffer = chunk::block_buffer(layout.pool(), size);
        let (len, paused) = match fill_block(&mut reader, &mut buffer, size).await {
            Ok(filled) => filled,
            Err(error) => {
                let _ = out.send(Err(error)).await;
                return;
            }
        };
        if let Some(settled) = settled.take() {
            let (codec, kind) = compression.codec_for(&buffer[chunk::HEADER..]);
            if let Some(kind) = kind {
                tracing::debug!("the stream is {kind} data, sent as it is");
            }
            layout.codec = codec;
            let _ = settled.send(layout);
        }
        hasher.update(&buffer[chunk::HEADER..]);
        total += len as u64;
        if len > 0 && out.send(Ok(Input::Block(buffer))).await.is_err() {
            return;
        }
        if paused {
            if out.send(Ok(Input::Flush)).await.is_err() {
                return;
            }
            continue;
        }
        if len < size {
            let digest = hasher.finalize();
            let _ = out
                .send(Ok(Input::End {
                    size: total,
                    digest,
                }))
                .await;
            return;
        }
    }
}

/// Reads up to `size` bytes of a stream into `buffer`: fewer when it
/// ends, or pauses for [`FLUSH_AFTER`] after some bytes (then `true`).
async fn fill_block<R: AsyncRead + Unpin>(
    reader: &mut R,
    buffer: &mut Vec<u8>,
    size: usize,
) -> std::io::Result<(usize, bool)> {
    let mut len = 0;
    while len < size {
        let mut rest = (&mut *reader).take((size - len) as u64);
        // Reads are cancellation safe: a timeout loses nothing.
        match tokio::time::timeout(FLUSH_AFTER, rest.read_buf(buffer)).await {
            Err(_) if len > 0 => return Ok((len, true)),
            Err(_) => continue,
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => len += n,
            Ok(Err(error)) => return Err(error),
        }
    }
    Ok((len, false))
}

/// What a file looked like when it was opened, to tell whether it changed
/// while it was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Snapshot {
    len: u64,
    modified: Option<SystemTime>,
}

impl Snapshot {
    pub(crate) fn of(metadata: &std::fs::Metadata) -> Self {
        Snapshot {
            len: metadata.len(),
            modified: metadata.modified().ok(),
        }
    }

    /// Why the file whose metadata is `now` is no longer the one this
    /// snapshot describes, if it is not.
    pub(crate) fn differs(&self, now: &std::fs::Metadata) -> Option<String> {
        let now = Snapshot::of(now);
        if now.len != self.len {
            Some(format!(
                "its size changed from {} to {} bytes",
                self.len, now.len
            ))
        } else if now.modified != self.modified {
            Some("it was modified".to_owned())
        } else {
            None
        }
    }

    /// Why `file`, read to its end after `read` bytes, is no longer the
    /// file that was opened, if it is not.
    fn changed(&self, file: &std::fs::File, read: u64) -> Option<String> {
        let now = match file.metadata() {
            Ok(metadata) => Snapshot::of(&metadata),
            Err(error) => return Some(format!("it could not be checked ({error})")),
        };
        if read != self.len || now.len != self.len {
            Some(format!(
                "its size changed from {} to {} bytes ({read} read)",
                self.len, now.len
            ))
        } else if now.modified != self.modified {
            Some("it was modified".to_owned())
        } else {
            None
        }
    }
}
