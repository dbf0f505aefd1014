//! Where a receiver puts each file: a directory, a command, or stdout.
//!
//! Each sink commits its output only once the file is verified: `--out`
//! renames a temporary file into place, `--exec` closes the command's stdin
//! (so it sees end-of-file) only after the last byte checked out, `--stdout`
//! flushes. The caller acknowledges only after the sink returns `Ok`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::{Error, Result};
use crate::files::decode::Decode;
use crate::files::incoming::IncomingFile;
use crate::files::names;
use crate::files::progress::Progress;
use crate::files::source::{Failure, FileSource};

mod copy;
use copy::{Commit, Commits, remove_stale_partials, write_copy};

/// What to do with each received file.
#[derive(Clone, Debug)]
pub enum Sink {
    /// Write a byte-identical copy under this directory.
    Dir(PathBuf),
    /// Pipe the (decoded) contents into `sh -c COMMAND`.
    Exec(String),
    /// Write the (decoded) contents to standard output.
    Stdout,
}

/// What processing a file left to do.
enum Staged {
    /// Nothing: the output is committed.
    Committed,
    /// A copy is written, to flush to the disk and rename into place.
    Copy(Commit),
}

/// How often progress within a file is reported.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

impl Sink {
    /// Processes every file `files` hands out until it ends, acknowledging
    /// each once its output is committed and reporting each failure to
    /// `files`. Tells `progress` the bytes received, a few times a second
    /// (a failed attempt's bytes stay counted). Returns the
    /// number of files processed; [`FileSource::parked`] tells those given
    /// up on.
    ///
    /// # Errors
    ///
    /// [`Error::Sink`] when the output itself is broken (a closed stdout, a
    /// command that cannot run, an unwritable directory, a full disk): the
    /// file in hand is neither acknowledged nor failed. Also Redis errors
    /// that outlast the retries, and a failure `files` cannot record (the
    /// book's format).
    pub async fn receive_all<S: FileSource>(
        &self,
        files: &mut S,
        decode: Decode,
        progress: Option<&dyn Progress>,
    ) -> Result<u64> {
        let received = self.receive_each(files, decode, progress).await;
        // Acknowledgements under way are recorded, whatever stopped the work.
        let closed = files.close().await;
        let received = received?;
        closed?;
        Ok(received)
    }

    /// [`Sink::receive_all`] but for waiting for the acknowledgements.
    async fn receive_each<S: FileSource>(
        &self,
        files: &mut S,
        decode: Decode,
        progress: Option<&dyn Progress>,
    ) -> Result<u64> {
        if let Sink::Dir(dir) = self {
            remove_stale_partials(dir).await;
        }
        let mut done = 0;
        let mut printed = Printed::default();
        let mut commits = Commits::default();
        while let Some(mut file) = files.next_file().await? {
            if file.done_before() && self.still_holds(&file).await {
                tracing::info!(
                    "{}: received already, before Redis restarted without its latest writes; \
                     acknowledging it again",
                    file.title()
                );
                files.ack_done_before(file).await?;
                continue;
            }
            if let Some(refused) = printed.refusal(&file) {
                file.close().await;
                return Err(refused);
            }
            let token = file.token().to_owned();
            let outcome = match self
                .process_showing(&mut file, decode, printed.bytes_of(&token), progress)
                .await
            {
                Ok(Staged::Copy(commit)) => {
                    // Flushed and acknowledged while the next files come.
                    let (name, bytes) = (file.title(), file.received());
                    let commit = commits.in_order(file.name(), commit);
                    files.ack_after(file, commit).await?;
                    tracing::info!("received {name} ({})", bytesize::ByteSize(bytes));
                    done += 1;
                    continue;
                }
                Ok(Staged::Committed) => Ok(()),
                Err(error) => Err(error),
            };
            printed.note(&file, &outcome);
            if outcome.is_ok() {
                done += 1;
            }
            settle(files, file, outcome, &printed).await?;
        }
        Ok(done)
    }

    /// [`Sink::process_after`], telling `progress` how far the file is a
    /// few times a second.
    async fn process_showing(
        &self,
        file: &mut IncomingFile,
        decode: Decode,
        already: &mut u64,
        progress: Option<&dyn Progress>,
    ) -> Result<Staged> {
        let so_far = file.received_so_far();
        if let Some(progress) = progress {
            progress.file_started(&file.title(), file.expected_size());
        }
        let mut reported = 0;
        let outcome = {
            let processing = self.process_staged(file, decode, already);
            tokio::pin!(processing);
            let mut tick = tokio::time::interval(PROGRESS_EVERY);
            loop {
                tokio::select! {
                    outcome = &mut processing => break outcome,
                    _ = tick.tick() => if let Some(progress) = progress {
                        let now = so_far.load(std::sync::atomic::Ordering::Relaxed);
                        progress.advance(now.saturating_sub(reported));
                        reported = now;
                    }
                }
            }
        };
        if let Some(progress) = progress {
            if outcome.is_ok() {
                progress.advance(file.received().saturating_sub(reported));
            }
            progress.file_ended();
        }
        outcome
    }

    /// Whether this sink's output still holds a file it committed before
    /// (see [`IncomingFile::done_before`]): a copy of the size the sender
    /// saw under `--out` (gone or changed since, it is received again);
    /// a command's work and printed bytes cannot be taken back, so they
    /// always count.
    async fn still_holds(&self, file: &IncomingFile) -> bool {
        let Sink::Dir(dir) = self else {
            return true;
        };
        let copy = dir.join(file.name());
        let size = tokio::fs::symlink_metadata(&copy)
            .await
            .ok()
            .filter(std::fs::Metadata::is_file)
            .map(|metadata| metadata.len());
        size.is_some() && size == file.expected_size()
    }

    /// Processes one file completely. `Ok` means the output is committed.
    pub async fn process(&self, file: &mut IncomingFile, decode: Decode) -> Result<()> {
        self.process_after(file, decode, &mut 0).await
    }

    /// Like [`Sink::process`]; stdout skips the first `*already` bytes (an
    /// earlier attempt wrote them) and counts what it writes there.
    async fn process_after(
        &self,
        file: &mut IncomingFile,
        decode: Decode,
        already: &mut u64,
    ) -> Result<()> {
        match self.process_staged(file, decode, already).await? {
            Staged::Copy(commit) => commit.run().await,
            Staged::Committed => Ok(()),
        }
    }

    /// Like [`Sink::process_after`], leaving a copy's commit to the caller.
    async fn process_staged(
        &self,
        file: &mut IncomingFile,
        decode: Decode,
        already: &mut u64,
    ) -> Result<Staged> {
        let name = file.name().to_owned();
        names::check_file_name(&name)?;
        match self {
            Sink::Dir(dir) => match file.piece() {
                // Pieces go to any worker, so no directory gets them all.
                Some(piece) => Err(Error::Sink {
                    output: dir.display().to_string(),
                    reason: format!(
                        "{name} is piece {} of {} of {}: a file sent with --split arrives in \
                         pieces, which --out cannot put back together; use --exec or --stdout",
                        piece.index, piece.count, piece.file
                    ),
                }),
                None => write_copy(dir, &name, file).await.map(Staged::Copy),
            },
            Sink::Exec(command) => run_command(command, &name, file, decode)
                .await
                .map(|()| Staged::Committed),
            Sink::Stdout => write_stdout(&name, file, decode, already)
                .await
                .map(|()| Staged::Committed),
        }
    }
}

/// Acknowledges a file processed, or reports its failure to `files`.
/// A broken output (every file would fail the same way) stops the run,
/// acknowledging and parking nothing: the file comes back on the next run.
async fn settle<S: FileSource>(
    files: &mut S,
    file: IncomingFile,
    outcome: Result<()>,
    printed: &Printed,
) -> Result<()> {
    let name = file.title();
    match outcome {
        Err(error @ Error::Sink { .. }) => {
            file.close().await;
            Err(error)
        }
        Ok(()) => {
            let bytes = file.received();
            files.ack(file).await?;
            tracing::info!("received {name} ({})", bytesize::ByteSize(bytes));
            Ok(())
        }
        Err(error) => {
            let shown = error.to_string();
            let token = file.token().to_owned();
            match files.fail(file, error).await? {
                Failure::WillRetry => tracing::warn!("{shown}; will try again"),
                Failure::Parked if printed.cut_short.is_some() => {
                    return Err(Error::CutShort {
                        name,
                        printed: printed.bytes.get(&token).copied().unwrap_or_default(),
                        reason: format!("{shown}; parked after repeated failures"),
                    });
                }
                Failure::Parked => tracing::error!("{shown}; parked after repeated failures"),
            }
            Ok(())
        }
    }
}

/// What earlier attempts wrote to stdout, which cannot be taken back: a
/// later attempt at a file goes on after its bytes, and no other file may
/// start before a file printed in part is finished.
#[derive(Default)]
struct Printed {
    /// Bytes of each file (by token) that earlier attempts wrote.
    bytes: HashMap<String, u64>,
    /// The file printed in part, if one was.
    cut_short: Option<CutShort>,
}

/// A file printed in part.
struct CutShort {
    token: String,
    /// Its name, for messages.
    name: String,
    /// Why its attempt stopped.
    why: String,
}

impl Printed {
    /// The error that stops the run when `file` is not the file printed
    /// in part.
    fn refusal(&self, file: &IncomingFile) -> Option<Error> {
        let cut = self.cut_short.as_ref()?;
        if cut.token == file.token() {
            return None;
        }
        let next = if file.title() == cut.name {
            "another version of it".to_owned()
        } else {
            file.title()
        };
        Some(Error::CutShort {
            name: cut.name.clone(),
            printed: self.bytes.get(&cut.token).copied().unwrap_or_default(),
            reason: format!("{}, and the next file offered is {next}", cut.why),
        })
    }

    /// The bytes of the file with `token` printed so far, to be raised as
    /// more are.
    fn bytes_of(&mut self, token: &str) -> &mut u64 {
        self.bytes.entry(token.to_owned()).or_default()
    }

    /// Takes note of how an attempt at `file` ended: finished, nothing of
    /// it stays to be resumed; failed after printing some, it is cut short.
    fn note(&mut self, file: &IncomingFile, outcome: &Result<()>) {
        let token = file.token();
        match outcome {
            Ok(()) => {
                self.bytes.remove(token);
                self.cut_short = None;
            }
            Err(error) if self.bytes.get(token).is_some_and(|&bytes| bytes > 0) => {
                let why = match error {
                    Error::Corrupt { reason, .. } | Error::Processing { reason, .. } => {
                        reason.clone()
                    }
                    other => other.to_string(),
                };
                self.cut_short = Some(CutShort {
                    token: token.to_owned(),
                    name: file.title(),
                    why,
                });
            }
            Err(_) => {}
        }
    }
}

/// Writes contents to stdout, after the first `*already` bytes (written by
/// an earlier attempt), raising `*already` as it goes. On a multi-threaded
/// runtime each buffer is written in place with a blocking write, saving
/// the copy into `tokio::io::stdout`'s own buffer (a third of the
/// receiver's work when stdout is fast).
async fn write_stdout(
    name: &str,
    file: &mut IncomingFile,
    decode: Decode,
    already: &mut u64,
) -> Result<()> {
    use std::io::Write;
    use tokio::runtime::{Handle, RuntimeFlavor};
    let in_place = Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread;
    let mut stdout = tokio::io::stdout();
    let mut contents = file.decoded(decode);
    let mut seen = 0u64;
    loop {
        let buffer = contents
            .fill_buf()
            .await
            .map_err(|e| Error::reading(name, e))?;
        if buffer.is_empty() {
            break;
        }
        let n = buffer.len();
        let fresh = &buffer[(already.saturating_sub(seen).min(n as u64)) as usize..];
        if !fresh.is_empty() {
            if in_place {
                tokio::task::block_in_place(|| std::io::stdout().lock().write_all(fresh))
            } else {
                stdout.write_all(fresh).await
            }
            .map_err(|e| broken("stdout", e))?;
        }
        seen += n as u64;
        *already = (*already).max(seen);
        contents.as_mut().consume(n);
    }
    if in_place {
        tokio::task::block_in_place(|| std::io::stdout().lock().flush())
    } else {
        stdout.flush().await
    }
    .map_err(|e| broken("stdout", e))
}

/// Which side of a copy failed: reading the file (its own failure) or
/// writing the output (the sink's).
enum Side {
    Read(Error),
    Write(std::io::Error),
}

impl Side {
    fn into_error(self, output: &str) -> Error {
        match self {
            Side::Read(error) => error,
            Side::Write(error) => broken(output, error),
        }
    }
}

/// Copies a file's contents into `out`, telling read from write failures.
async fn pump<R, W>(name: &str, contents: &mut R, out: &mut W) -> std::result::Result<(), Side>
where
    R: AsyncBufRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    loop {
        let buffer = contents
            .fill_buf()
            .await
            .map_err(|e| Side::Read(Error::reading(name, e)))?;
        if buffer.is_empty() {
            return Ok(());
        }
        let n = buffer.len();
        out.write_all(buffer).await.map_err(Side::Write)?;
        contents.consume(n);
    }
}

/// A failure of the output itself.
fn broken(output: impl std::fmt::Display, error: std::io::Error) -> Error {
    Error::Sink {
        output: output.to_string(),
        reason: error.to_string(),
    }
}

/// Makes the command die with us even when we are killed outright:
/// otherwise it would see end-of-file on a half-delivered file and might
/// take it for the whole.
#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut tokio::process::Command) {
    // SAFETY: the closure runs in the forked child before exec and calls
    // only prctl, which is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_command: &mut tokio::process::Command) {}

async fn run_command(
    command: &str,
    name: &str,
    file: &mut IncomingFile,
    decode: Decode,
) -> Result<()> {
    let mut shell = tokio::process::Command::new("sh");
    shell
        .arg("-c")
        .arg(command)
        .env("REDISTRIBUTE_NAME", name)
        .stdin(Stdio::piped())
        .kill_on_drop(true);
    if let Some(piece) = file.piece() {
        shell
            .env("REDISTRIBUTE_NAME", &piece.file)
            .env("REDISTRIBUTE_PIECE", piece.index.to_string())
            .env("REDISTRIBUTE_PIECES", piece.count.to_string());
    }
    die_with_parent(&mut shell);
    let output = format!("`sh -c {command}`");
    let mut child = shell.spawn().map_err(|e| broken(&output, e))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let mut contents = file.decoded(decode);
    match pump(name, &mut contents, &mut stdin).await {
        Ok(()) => {}
        // The command stopped reading early; that is its business, but the
        // file must still be verified before it can count as done.
        Err(Side::Write(error)) if error.kind() == std::io::ErrorKind::BrokenPipe => {
            tokio::io::copy_buf(&mut contents, &mut tokio::io::sink())
                .await
                .map_err(|e| Error::reading(name, e))?;
        }
        Err(side) => {
            let _ = child.kill().await;
            return Err(side.into_error(&output));
        }
    }
    drop(stdin);
    let status = child.wait().await.map_err(|e| broken(&output, e))?;
    exit_verdict(status, command, name, output)
}

/// What the command's exit says of the file: done, failed, or (for the
/// shell's own codes for a command it could not find or run) a broken
/// output, as every file would fail the same way.
fn exit_verdict(
    status: std::process::ExitStatus,
    command: &str,
    name: &str,
    output: String,
) -> Result<()> {
    match status.code() {
        Some(0) => Ok(()),
        Some(code @ (126 | 127)) => Err(Error::Sink {
            output,
            reason: format!(
                "the shell exited with {code} (command {})",
                if code == 127 {
                    "not found"
                } else {
                    "not executable"
                }
            ),
        }),
        _ => Err(Error::Processing {
            name: name.to_owned(),
            reason: format!("`{command}` exited with {status}"),
        }),
    }
}
