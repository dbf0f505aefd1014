//! The one interface every receiver offers, whatever its wire format:
//! hand out the next file, take it back as done or as failed. Sinks, the
//! aggregation job and library users are written once against it.

use std::future::Future;

use crate::error::{Error, Result};
use crate::files::incoming::IncomingFile;

/// What became of a file whose processing failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// It will be offered again (to this receiver, or to any worker).
    WillRetry,
    /// It failed too often and was parked; `status` lists it.
    Parked,
}

/// A stream of files to process, each acknowledged only after its work.
///
/// Implemented by [`crate::Receiver`] (the native protocol) and
/// [`crate::classic::ClassicReceiver`] (the book's).
pub trait FileSource: Send {
    /// Waits for the next file. `None` means the sender marked the end of
    /// its input and everything before the mark is finished.
    fn next_file(&mut self) -> impl Future<Output = Result<Option<IncomingFile>>> + Send;

    /// Acknowledges a file whose work is complete: only now may its data
    /// leave Redis. A source may record the acknowledgement in the
    /// background, so the next file does not wait for a round trip:
    /// [`FileSource::close`] waits for every one, and an error recording
    /// one comes out of a later call.
    ///
    /// # Errors
    ///
    /// Fails, and acknowledges nothing, unless the file was read to its end
    /// and verified, or when it came from another source.
    fn ack(&mut self, file: IncomingFile) -> impl Future<Output = Result<()>> + Send;

    /// Acknowledges a file once `commit`, the last step of its work (a
    /// copy flushed to the disk and renamed into place), succeeded. A
    /// source may run both in the background while the next files are
    /// processed; when `commit` fails, the file is not acknowledged and
    /// its error comes out of this call or a later one.
    ///
    /// # Errors
    ///
    /// As [`FileSource::ack`], and `commit`'s.
    fn ack_after(
        &mut self,
        file: IncomingFile,
        commit: impl Future<Output = Result<()>> + Send + 'static,
    ) -> impl Future<Output = Result<()>> + Send {
        async move {
            commit.await?;
            self.ack(file).await
        }
    }

    /// Acknowledges a file this receiver already did the work of, without
    /// reading it again: one [`IncomingFile::done_before`] says Redis
    /// forgot the acknowledgement of (it restarted without its latest
    /// writes). Call it only when the work's effect survived that
    /// restart where it lives (the copy is on disk, the output went out);
    /// when the effect lived in Redis too, do the work again instead.
    ///
    /// # Errors
    ///
    /// Fails, and acknowledges nothing, for a file that was not done
    /// before.
    fn ack_done_before(&mut self, file: IncomingFile) -> impl Future<Output = Result<()>> + Send {
        async move { Err(not_done_before(&file)) }
    }

    /// Records that the consumer could not parse `lines` lines of `file`,
    /// for `status` to show next to this receiver. A source whose format
    /// has nowhere to keep the count (the book's) does nothing.
    ///
    /// # Errors
    ///
    /// Redis errors that outlast the retries.
    fn record_unparsed(
        &mut self,
        file: &IncomingFile,
        lines: u64,
    ) -> impl Future<Output = Result<()>> + Send {
        let _ = (file, lines);
        async { Ok(()) }
    }

    /// Waits until every acknowledgement given so far is recorded. Call
    /// it when done with the source, whether it ended or the work stopped
    /// with an error.
    ///
    /// # Errors
    ///
    /// An acknowledgement that could not be recorded.
    fn close(&mut self) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// Reports that processing a file failed with `error`.
    ///
    /// # Errors
    ///
    /// Besides Redis errors: a source that cannot record failures (the
    /// book's format) returns `error` itself, and the file comes back when
    /// the receiver runs again.
    fn fail(
        &mut self,
        file: IncomingFile,
        error: Error,
    ) -> impl Future<Output = Result<Failure>> + Send;

    /// Files set aside since connecting: parked after failing too often,
    /// or refused for a hostile name. A run that set files aside did not
    /// finish its work.
    fn parked(&self) -> u64;
}

/// What [`FileSource::ack_done_before`] says of a file not done before.
pub(crate) fn not_done_before(file: &IncomingFile) -> Error {
    Error::Usage(format!(
        "{}: this receiver did not acknowledge it before; read it and acknowledge it",
        file.name()
    ))
}
