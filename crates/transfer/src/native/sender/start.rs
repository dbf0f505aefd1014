//! Starting a job: open its input, announce it, and begin reading where
//! what Redis holds of it ends (an earlier run's unfinished upload is
//! resumed, a complete one skipped); then hand its upload's outcome back
//! to the driver.

use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use super::Sender;
use super::driver::{Input, Job, Stop, Stream};
use super::upload::{Ended, Upload};
use crate::error::{Error, Result};
use crate::native::codec::Codec;
use crate::native::encoder::{self, Layout, Snapshot};
use crate::native::pieces::Piece;
use crate::native::protocol::sending::{AnnounceState, Announced, Announcement};
use crate::redis::memory;
use crate::telemetry;

/// A local file opened to be sent.
pub(super) struct Opened {
    pub(super) file: std::fs::File,
    pub(super) metadata: std::fs::Metadata,
    /// `size:mtime`, what ANNOUNCE compares with an earlier run's upload.
    pub(super) identity: String,
}

impl Input {
    /// The file to read and the piece of it, unless this is a stream.
    fn file(&self) -> Option<(PathBuf, Option<Piece>)> {
        match self {
            Input::File(path) => Some((path.clone(), None)),
            Input::Piece(piece) => Some((piece.path.clone(), Some(piece.clone()))),
            Input::Stream(_) => None,
        }
    }
}

impl Sender {
    /// Starts `job`: opens, announces and uploads it.
    pub(super) async fn start(&self, job: &mut Job) -> Result<Stop<'_>> {
        match job.input.file() {
            Some((path, piece)) => self.start_file(job, &path, piece.as_ref()).await,
            None => self.start_stream(job).await,
        }
    }

    /// Goes on with an upload that waited while Redis' lost work went first.
    pub(super) async fn resume<'a>(
        &'a self,
        job: &mut Job,
        upload: Box<Upload<'a>>,
    ) -> Result<Stop<'a>> {
        match job.input.file() {
            Some((path, _)) => self.run_file(&path, upload).await,
            None => self.run_stream(upload).await,
        }
    }

    /// Uploads `path`, or the `piece` of it, as the job's file.
    async fn start_file(
        &self,
        job: &mut Job,
        path: &Path,
        piece: Option<&Piece>,
    ) -> Result<Stop<'_>> {
        // Opened before it is announced: a file that vanished must not leave
        // an announcement behind that receivers would wait on.
        let opened = open_input(path, piece, job)?;
        let field = piece.map(Piece::field);
        let whole = self
            .read_whole(path, piece, &opened.file, &opened.metadata)
            .await?;
        let sizes = whole.as_ref().map(|w| (w.size, w.value.len() as u64));
        let mut file = self.announcement(job, &opened.identity, true, field.as_deref());
        file.whole = whole;
        let mut announced = self.announce(file).await?;
        if announced.state == AnnounceState::Full {
            // No room for it whole: chunk by chunk, waiting for room.
            let file = self.announcement(job, &opened.identity, true, field.as_deref());
            announced = self.announce(file).await?;
        }
        if let (AnnounceState::Stored, Some((size, stored))) = (announced.state, sizes) {
            return Ok(self.stored_whole(&job.name, size, stored).await);
        }
        if let Some(skipped) = skip(&job.name, announced.state) {
            return Ok(skipped);
        }
        let upload = self
            .begin_file(&job.name, path, piece, opened, &announced)
            .await?;
        self.run_file(path, upload).await
    }

    /// Reads the part of the file an earlier run uploaded (its digest is
    /// rebuilt; reading goes on from there) and starts encoding the rest.
    async fn begin_file(
        &self,
        name: &str,
        path: &Path,
        piece: Option<&Piece>,
        opened: Opened,
        announced: &Announced,
    ) -> Result<Box<Upload<'_>>> {
        let prefix = announced.offset;
        let compression = self.options.compress;
        let owned_name = name.to_owned();
        let start = piece.map_or(0, |piece| piece.range.start);
        let mut file = opened.file;
        let (file, hasher, codec) = tokio::task::spawn_blocking(move || {
            let mut hasher = blake3::Hasher::new();
            let codec = encoder::codec_for_file(compression, &file, &owned_name)?;
            file.seek(std::io::SeekFrom::Start(start))?;
            hasher.update_reader((&mut file).take(prefix))?;
            std::io::Result::Ok((file, hasher, codec))
        })
        .await
        .map_err(|e| Error::io(path, std::io::Error::other(e)))?
        .map_err(|e| Error::io(path, e))?;
        if prefix > 0 {
            tracing::info!(
                "{name}: resuming after {} uploaded by an earlier run",
                bytesize::ByteSize(prefix)
            );
            self.report_progress(prefix);
        }
        let layout = Layout {
            slot: announced.slot,
            codec,
        };
        let piece_len = piece.map(|piece| piece.range.end - piece.range.start);
        let expected = piece.map_or(Snapshot::of(&opened.metadata), |piece| piece.cut_from);
        let (incoming, reading) =
            encoder::encode_file(file, path, prefix, hasher, expected, layout, piece_len);
        Ok(Upload::new(self, name, announced, incoming, reading))
    }

    /// A small file went whole with its announcement: counts it as sent.
    pub(super) async fn stored_whole(&self, name: &str, size: u64, stored: u64) -> Stop<'_> {
        self.report_progress(size);
        if let Err(error) = self.note_rate(size).await {
            // Only `status` reads it: not worth failing an upload.
            tracing::debug!("could not record the upload rate: {error}");
        }
        tracing::debug!(
            "{name}: sent {} as {} with its announcement",
            bytesize::ByteSize(size),
            bytesize::ByteSize(stored)
        );
        telemetry::file_sent(size, stored);
        Stop::Done(Some(size))
    }

    /// Runs a file's upload until it ends or waits for Redis' lost work.
    async fn run_file<'a>(&'a self, path: &Path, mut upload: Box<Upload<'a>>) -> Result<Stop<'a>> {
        let ended = match upload.run().await {
            Ok(ended) => ended,
            Err(error) => {
                let error = match error {
                    Error::Io { source, .. } => match source.downcast::<Error>() {
                        Ok(ours) => ours,
                        Err(source) => Error::io(path, source),
                    },
                    other => other,
                };
                if let Error::SourceChanged { reason, .. } = &error {
                    let fid = upload.fid();
                    // Reading stops first.
                    drop(upload);
                    let reason = format!("the source changed while it was read: {reason}");
                    self.channel.abort_upload(fid, &reason).await?;
                }
                return Err(error);
            }
        };
        Ok(match ended {
            Ended::Finished(size) => Stop::Done(Some(size)),
            Ended::Unread => {
                // Those who asked for it again are served before the next
                // file (or in the final wait), which has the room now.
                tracing::info!(
                    "{}: everyone it was for asked for it again from the start; \
                     it is uploaded again for them",
                    upload.name()
                );
                self.state().asked = true;
                Stop::Done(None)
            }
            Ended::Lost => Stop::Lost,
            Ended::Restarted => Stop::Restarted(upload),
        })
    }

    /// Sends a stream as the job's file.
    async fn start_stream(&self, job: &mut Job) -> Result<Stop<'_>> {
        let file = self.announcement(job, "stream", false, None);
        let announced = self.announce(file).await?;
        if let Some(skipped) = skip(&job.name, announced.state) {
            return Ok(skipped);
        }
        let reader: Stream = match &mut job.input {
            Input::Stream(reader) => reader.take(),
            Input::File(_) | Input::Piece(_) => None,
        }
        .ok_or_else(|| Error::io(&job.name, std::io::Error::other("read already")))?;
        let layout = Layout {
            slot: announced.slot,
            codec: Codec::Raw,
        };
        let (incoming, reading) = encoder::encode_stream(reader, self.options.compress, layout);
        let upload = Upload::new(self, &job.name, &announced, incoming, reading);
        self.run_stream(upload).await
    }

    /// Runs a stream's upload until it ends or waits for Redis' lost work.
    async fn run_stream<'a>(&'a self, mut upload: Box<Upload<'a>>) -> Result<Stop<'a>> {
        Ok(match upload.run().await? {
            Ended::Finished(size) => Stop::Done(Some(size)),
            Ended::Unread => {
                return Err(Error::Processing {
                    name: upload.name().to_owned(),
                    reason: "every receiver gave up on it while it was sent (see `status`); \
                             a stream cannot be read again"
                        .into(),
                });
            }
            Ended::Lost => Stop::Lost,
            Ended::Restarted => Stop::Restarted(upload),
        })
    }

    /// What ANNOUNCE is told of `job`'s file.
    fn announcement<'a>(
        &self,
        job: &'a Job,
        identity: &'a str,
        resumable: bool,
        piece: Option<&'a str>,
    ) -> Announcement<'a> {
        let again = job.wanted();
        Announcement {
            name: &job.name,
            identity,
            resumable,
            slot: memory::slot_for(self.options.chunk_size),
            acks_needed: again.map_or(self.options.audience.acks_needed(), |w| w.acks_needed()),
            again,
            lowest_fid: self.state().highest_fid + 1,
            piece,
            check_forgotten: job.check_forgotten,
            whole: None,
        }
    }

    /// Announces a file, and notes what the answer says of the channel.
    async fn announce(&self, file: Announcement<'_>) -> Result<Announced> {
        let announced = self.channel.announce(&file).await?;
        self.note_announced(&announced);
        Ok(announced)
    }

    /// Notes what an ANNOUNCE answer says of the channel: whether
    /// receivers asked for files again, and the highest file id given.
    pub(super) fn note_announced(&self, announced: &Announced) {
        if announced.state != AnnounceState::Forgot {
            let mut state = self.state();
            state.asked = announced.requests > 0;
            state.highest_fid = state.highest_fid.max(announced.fid);
        }
    }
}

/// What becomes of a job whose announcement says there is nothing to
/// upload now; `None` when there is. A file stored whole is the caller's
/// to count; `Full` only answers an announcement with the file's data.
fn skip(name: &str, state: AnnounceState) -> Option<Stop<'static>> {
    match state {
        AnnounceState::Upload | AnnounceState::Full => None,
        AnnounceState::Stored => Some(Stop::Done(None)),
        AnnounceState::Forgot => Some(Stop::Forgot),
        AnnounceState::AlreadySent => {
            tracing::info!("{name}: already sent by an earlier run; skipping");
            Some(Stop::Done(None))
        }
        AnnounceState::Busy => Some(Stop::Done(None)),
    }
}

/// Opens the file to send and checks it is still the one a request for
/// it again, or the cut into pieces, saw.
pub(super) fn open_input(path: &Path, piece: Option<&Piece>, job: &Job) -> Result<Opened> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let metadata = file.metadata().map_err(|e| Error::io(path, e))?;
    let mtime = metadata
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    // A piece is its length and the input's time, the same in every
    // run (a decoded copy's own time is not).
    let identity = match piece {
        Some(piece) => format!("{}:{}", piece.range.end - piece.range.start, piece.mtime),
        None => format!("{}:{mtime}", metadata.len()),
    };
    if let Some(again) = job.wanted()
        && again.identity != identity
    {
        return Err(Error::SourceChanged {
            path: path.to_owned(),
            reason: "it changed since it was sent".into(),
        });
    }
    // A piece's identity was fixed when the file was cut: the file
    // must still be the one cut.
    if let Some(reason) = piece.and_then(|piece| piece.cut_from.differs(&metadata)) {
        return Err(Error::SourceChanged {
            path: path.to_owned(),
            reason: format!("{reason} since it was cut into pieces"),
        });
    }
    Ok(Opened {
        file,
        metadata,
        identity,
    })
}
