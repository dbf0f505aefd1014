//! A file being received, as a stream of bytes, decoded bytes or lines.
//!
//! Whatever protocol delivers a file, a producer task pushes its chunks into
//! a channel, and the consumer reads them through [`IncomingFile`]. The
//! producer checks the file at its end and reports damage as a read error
//! instead of end-of-file.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use tokio::io::{AsyncBufRead, AsyncRead, ReadBuf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::files::decode::{self, Decode, Decoded};

/// What the receiving side needs to acknowledge a file it handed out.
#[derive(Clone, Debug)]
pub(crate) enum Ticket {
    /// Native protocol: the file id, its announcement's stream entry, the
    /// channel's creation time (file ids start over when a channel is
    /// purged and created again), the id of the file's first upload (which
    /// an upload of the same file again keeps), the sender's identity of
    /// its source (size and modification time), and whether its data was
    /// found gone from Redis, to be asked for again.
    Native {
        fid: u64,
        entry: String,
        epoch: String,
        origin: u64,
        identity: String,
        gone: Arc<AtomicBool>,
    },
    /// Classic protocol: the id and timestamp of the chat message
    /// announcing it (ids start over when a chat is created again).
    Classic { message: u64, ts: String },
}

/// Aborts a background task when its owner goes away.
pub(crate) struct AbortOnDrop(pub(crate) JoinHandle<()>);

impl AbortOnDrop {
    /// Aborts the task and waits until it is gone, so nothing it does (a
    /// retry, a log line) outlives the caller's next step.
    pub(crate) async fn stop(mut self) {
        self.0.abort();
        let _ = (&mut self.0).await;
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Where a piece belongs: see [`IncomingFile::piece`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PieceOf {
    /// The whole file's name; the piece itself travels as `FILE#INDEX`.
    pub file: String,
    /// From 1.
    pub index: u32,
    /// How many pieces the file has.
    pub count: u32,
}

impl PieceOf {
    /// The piece named `name` whose record says `field` (`I/N`), if both
    /// agree.
    pub(crate) fn parse(name: &str, field: &str) -> Option<PieceOf> {
        let (index, count) = field.split_once('/')?;
        let (index, count): (u32, u32) = (index.parse().ok()?, count.parse().ok()?);
        let file = name.strip_suffix(&format!("#{index}"))?;
        (index >= 1 && index <= count && !file.is_empty()).then(|| PieceOf {
            file: file.to_owned(),
            index,
            count,
        })
    }
}

/// A file being received. Read it as raw bytes (it implements
/// [`AsyncRead`] and [`AsyncBufRead`]), decoded with [`IncomingFile::decoded`],
/// or as lines with [`IncomingFile::lines`]; then pass it to
/// [`FileSource::ack`](crate::FileSource::ack) or
/// [`FileSource::fail`](crate::FileSource::fail).
///
/// Reading ends with an error instead of end-of-file when the data turns
/// out to be incomplete or altered, so a consumer never mistakes a damaged
/// file for a complete one.
pub struct IncomingFile {
    name: String,
    ticket: Ticket,
    /// See [`IncomingFile::token`]; stamped by the receiver that built it
    /// ([`IncomingFile::of_channel`]).
    token: String,
    /// Shared, so progress can be watched while the file is being read.
    received: Arc<AtomicU64>,
    /// The size the sender saw, when it knew one (not for a stream).
    expected_size: Option<u64>,
    /// Which piece of which file this is, for a file sent with `--split`.
    piece: Option<PieceOf>,
    chunks: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
    verified: Arc<AtomicBool>,
    /// This receiver acknowledged this very file before, and Redis forgot.
    done_before: bool,
    tasks: Vec<AbortOnDrop>,
}

impl IncomingFile {
    /// A file whose bytes arrive on `chunks`; `verified` turns true once
    /// the producer checked the whole file.
    pub(crate) fn new(
        name: String,
        ticket: Ticket,
        chunks: mpsc::Receiver<io::Result<Bytes>>,
        verified: Arc<AtomicBool>,
        tasks: Vec<AbortOnDrop>,
    ) -> Self {
        IncomingFile {
            name,
            ticket,
            token: String::new(),
            received: Arc::default(),
            expected_size: None,
            piece: None,
            chunks,
            current: Bytes::new(),
            verified,
            done_before: false,
            tasks,
        }
    }

    pub(crate) fn ticket(&self) -> &Ticket {
        &self.ticket
    }

    /// Stops reading the file: its background work ends before this
    /// returns. Dropping the file stops it too, only not at once.
    pub async fn close(self) {
        for task in self.tasks {
            task.stop().await;
        }
    }

    /// The file as one of channel `channel` under key prefix `prefix`
    /// (the book's format has none): stamps its [`IncomingFile::token`].
    pub(crate) fn of_channel(mut self, prefix: &str, channel: &str) -> Self {
        self.token = match &self.ticket {
            Ticket::Native {
                origin,
                epoch,
                identity,
                ..
            } if identity == "stream" => format!("{prefix}:{channel}:{epoch}:{origin}"),
            Ticket::Native {
                epoch, identity, ..
            } => format!("{prefix}:{channel}:{epoch}:{}:{identity}", self.name),
            Ticket::Classic { message, ts } => format!("classic:{channel}:{ts}:{message}"),
        };
        self
    }

    /// An identity of this file that stays the same however often it is
    /// delivered, and differs from every other file ever sent on any
    /// channel: what makes counting a file twice detectable.
    ///
    /// A file read from disk is named by its name and its source's
    /// identity (size and modification time), not by a file id: a Redis
    /// that restarted from an older snapshot can lose the record of a
    /// file a worker is finishing, and the sender then announces the same
    /// file under a new id, which must not count it again. A stream is
    /// never announced again, so its first upload's id names it.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Whether the file was read to its end and found intact.
    pub(crate) fn is_verified(&self) -> bool {
        self.verified.load(Ordering::Acquire)
    }

    /// The file's name relative to what the sender was given, `/`-separated.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file as one this receiver acknowledged before.
    pub(crate) fn marked_done_before(mut self) -> Self {
        self.done_before = true;
        self
    }

    /// Whether this receiver process already did this file's work and
    /// acknowledged it, and Redis then forgot the acknowledgement (it
    /// restarted from a snapshot older than it). A consumer whose work left
    /// its effect outside Redis, where the restart could not undo it,
    /// passes the file to
    /// [`FileSource::ack_done_before`](crate::FileSource::ack_done_before)
    /// instead of doing it twice; one whose effect lived in Redis (the
    /// job's counts) does the work again, since the restart undid it.
    pub fn done_before(&self) -> bool {
        self.done_before
    }

    /// The file as piece `piece` of a larger one.
    pub(crate) fn piece_of(mut self, piece: Option<PieceOf>) -> Self {
        self.piece = piece;
        self
    }

    /// The file as people call it in messages: its name, or `access.log
    /// (piece 3 of 20)`.
    pub fn title(&self) -> String {
        match &self.piece {
            Some(piece) => format!("{} (piece {} of {})", piece.file, piece.index, piece.count),
            None => self.name.clone(),
        }
    }

    /// Which piece of which file this is, when the sender cut a file into
    /// pieces (`send --split`); `None` for a whole file.
    pub fn piece(&self) -> Option<&PieceOf> {
        self.piece.as_ref()
    }

    /// The file as one whose sender saw `size` bytes (when it knew).
    pub(crate) fn expecting(mut self, size: Option<u64>) -> Self {
        self.expected_size = size;
        self
    }

    /// The size the sender saw when it opened the file, to show how far
    /// along a file is; `None` for a stream. A file still being written
    /// to may turn out longer.
    pub fn expected_size(&self) -> Option<u64> {
        self.expected_size
    }

    /// Bytes received so far (all of them once read to the end).
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// A handle on [`IncomingFile::received`] that can be read while the
    /// file itself is busy being read, to show progress within a file.
    pub fn received_so_far(&self) -> Arc<AtomicU64> {
        self.received.clone()
    }

    /// The contents, decompressed as `decode` and the name say.
    pub fn decoded(&mut self, decode: Decode) -> Decoded<'_> {
        let name = self.name.clone();
        decode::decoder(&name, decode, self)
    }

    /// The (decoded) contents split at `\n`, without the newline.
    pub fn lines(&mut self, decode: Decode) -> tokio::io::Split<Decoded<'_>> {
        use tokio::io::AsyncBufReadExt;
        self.decoded(decode).split(b'\n')
    }
}

impl AsyncBufRead for IncomingFile {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        while this.current.is_empty() {
            match ready!(this.chunks.poll_recv(cx)) {
                Some(Ok(data)) => {
                    this.received
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                    this.current = data;
                }
                Some(Err(error)) => return Poll::Ready(Err(error)),
                None => break,
            }
        }
        Poll::Ready(Ok(&this.current))
    }

    fn consume(self: Pin<&mut Self>, amount: usize) {
        let _ = self.get_mut().current.split_to(amount);
    }
}

impl AsyncRead for IncomingFile {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let available = ready!(self.as_mut().poll_fill_buf(cx))?;
        let n = available.len().min(buf.remaining());
        buf.put_slice(&available[..n]);
        self.consume(n);
        Poll::Ready(Ok(()))
    }
}
