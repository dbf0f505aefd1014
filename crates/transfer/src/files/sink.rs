//! Where a receiver puts each file: a directory, a command, or stdout.
//!
//! Each sink commits its output only once the file is verified: `--out`
//! renames a temporary file into place, `--exec` closes the command's stdin
//! (so it sees end-of-file) only after the last byte checked out, `--stdout`
//! flushes. The caller acknowledges only after the sink returns `Ok`.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::{Error, Result};
use crate::files::decode::Decode;
use crate::files::incoming::IncomingFile;
use crate::files::names;
use crate::files::progress::Progress;
use crate::files::source::{Failure, FileSource};
use crate::host;

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
        if let Sink::Dir(dir) = self {
            remove_stale_partials(dir).await;
        }
        let mut done = 0;
        // Bytes of each file that earlier attempts wrote to stdout, which
        // cannot be taken back: a later attempt goes on after them, and no
        // other file may start before it (see `cut_short`).
        let mut printed: HashMap<String, u64> = HashMap::new();
        // The file printed in part: its key, its name, why it stopped.
        let mut cut_short: Option<(String, String, String)> = None;
        while let Some(mut file) = files.next_file().await? {
            let name = file.title();
            if file.done_before() && self.still_holds(&file).await {
                tracing::info!(
                    "{name}: received already, before Redis restarted without its latest writes; \
                     acknowledging it again"
                );
                files.ack_done_before(file).await?;
                continue;
            }
            let key = file.token().to_owned();
            if let Some((cut, cut_name, why)) = &cut_short
                && *cut != key
            {
                let printed = printed.get(cut).copied().unwrap_or_default();
                let next = if name == *cut_name {
                    "another version of it".to_owned()
                } else {
                    name
                };
                file.close().await;
                return Err(Error::CutShort {
                    name: cut_name.clone(),
                    printed,
                    reason: format!("{why}, and the next file offered is {next}"),
                });
            }
            let already = printed.entry(key.clone()).or_default();
            let so_far = file.received_so_far();
            if let Some(progress) = progress {
                progress.file_started(&name, file.expected_size());
            }
            let mut reported = 0;
            let outcome = {
                // Progress within a file too, a few times a second.
                let processing = self.process_after(&mut file, decode, already);
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
            match &outcome {
                Ok(()) => {
                    printed.remove(&key);
                    cut_short = None;
                }
                Err(error) if printed.get(&key).is_some_and(|&bytes| bytes > 0) => {
                    let why = match error {
                        Error::Corrupt { reason, .. } | Error::Processing { reason, .. } => {
                            reason.clone()
                        }
                        other => other.to_string(),
                    };
                    cut_short = Some((key.clone(), name.clone(), why));
                }
                Err(_) => {}
            }
            if let Some(progress) = progress {
                if outcome.is_ok() {
                    progress.advance(file.received().saturating_sub(reported));
                }
                progress.file_ended();
            }
            match outcome {
                // Every file would fail the same way: stop, acknowledging
                // and parking nothing; the file comes back on the next run.
                Err(error @ Error::Sink { .. }) => {
                    file.close().await;
                    return Err(error);
                }
                Ok(()) => {
                    let bytes = file.received();
                    files.ack(file).await?;
                    done += 1;
                    tracing::info!("received {name} ({})", bytesize::ByteSize(bytes));
                }
                Err(error) => {
                    let shown = error.to_string();
                    match files.fail(file, error).await? {
                        Failure::WillRetry => tracing::warn!("{shown}; will try again"),
                        Failure::Parked if cut_short.is_some() => {
                            return Err(Error::CutShort {
                                name,
                                printed: printed.get(&key).copied().unwrap_or_default(),
                                reason: format!("{shown}; parked after repeated failures"),
                            });
                        }
                        Failure::Parked => {
                            tracing::error!("{shown}; parked after repeated failures")
                        }
                    }
                }
            }
        }
        Ok(done)
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
                None => write_copy(dir, &name, file).await,
            },
            Sink::Exec(command) => run_command(command, &name, file, decode).await,
            Sink::Stdout => write_stdout(&name, file, decode, already).await,
        }
    }
}

/// Our own errors travel through `io::Error` from the reader; unwrap them
/// so the message is not repeated.
fn failed(name: &str, error: std::io::Error) -> Error {
    if error.get_ref().is_some_and(|inner| inner.is::<Error>()) {
        if let Some(Ok(ours)) = error.into_inner().map(|inner| inner.downcast::<Error>()) {
            return *ours;
        }
        unreachable!("checked above");
    }
    Error::Processing {
        name: name.to_owned(),
        reason: error.to_string(),
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
        let buffer = contents.fill_buf().await.map_err(|e| failed(name, e))?;
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
            .map_err(|e| Side::Read(failed(name, e)))?;
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

/// Writes a copy under `dir` through `.NAME.HOST.PID.rd-partial`, renamed
/// into place once verified (host and process id keep two receivers
/// writing the same file into one directory, as workers may after Redis
/// lost an acknowledgement, out of each other's way, and tell which
/// temporary files a killed receiver left: see [`remove_stale_partials`]). Every step below `dir` works relative to a handle
/// on the directory above it and never follows a symbolic link, so a link
/// planted inside the output directory cannot send a write elsewhere.
async fn write_copy(dir: &Path, name: &str, file: &mut IncomingFile) -> Result<()> {
    let (dir, name_owned) = (dir.to_owned(), name.to_owned());
    let opened = tokio::task::spawn_blocking(move || open_partial(&dir, &name_owned))
        .await
        .map_err(|e| broken("the output directory", std::io::Error::other(e)))??;
    let Partial {
        parent,
        partial,
        base,
        shown,
        out,
    } = opened;
    let mut out = tokio::fs::File::from_std(out);
    let mut temporary = Temporary {
        parent: &parent,
        name: &partial,
        kept: false,
    };
    pump(name, file, &mut out)
        .await
        .map_err(|side| side.into_error(&shown))?;
    out.sync_all().await.map_err(|e| broken(&shown, e))?;
    rustix::fs::renameat(&parent, &partial, &parent, &base)
        .map_err(|e| broken(&shown, e.into()))?;
    temporary.kept = true;
    Ok(())
}

/// What a temporary copy's name ends with.
const PARTIAL: &str = ".rd-partial";

/// The part of a temporary copy's name before [`PARTIAL`] that names the
/// process writing it: `HOST.PID`.
fn partial_owner(pid: u32) -> String {
    format!("{}.{pid}", host::name())
}

/// Deletes the temporary copies under `dir` that receivers killed on this
/// host left (their process is gone), so a restarted receiver leaves a
/// clean directory; another host's, whose process cannot be checked from
/// here, stay.
async fn remove_stale_partials(dir: &Path) {
    let dir = dir.to_owned();
    let removed = tokio::task::spawn_blocking(move || {
        let host = format!(".{}.", host::name());
        let mut removed = 0u64;
        for entry in walkdir::WalkDir::new(&dir).into_iter().flatten() {
            let name = entry.file_name().to_string_lossy();
            let Some(rest) = name.strip_suffix(PARTIAL) else {
                continue;
            };
            let stale = rest.rsplit_once('.').is_some_and(|(before, pid)| {
                (before.to_owned() + ".").ends_with(&host)
                    && pid.parse().is_ok_and(|pid| !host::process_exists(pid))
            });
            if stale && entry.file_type().is_file() && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    })
    .await
    .unwrap_or(0);
    if removed > 0 {
        tracing::info!(
            "removed {} that killed receivers left",
            crate::text::counted(removed, "temporary copy", "temporary copies")
        );
    }
}

/// Removes the temporary file unless it was renamed into place: after an
/// error, and when the copy is abandoned midway (the receiver was stopped).
struct Temporary<'a> {
    parent: &'a OwnedFd,
    name: &'a str,
    kept: bool,
}

impl Drop for Temporary<'_> {
    fn drop(&mut self) {
        if !self.kept {
            let _ = rustix::fs::unlinkat(self.parent, self.name, rustix::fs::AtFlags::empty());
        }
    }
}

/// A temporary file open for writing, and how to rename it into place.
struct Partial {
    /// The directory it is in.
    parent: OwnedFd,
    /// Its name there, and the name it is renamed to.
    partial: String,
    base: String,
    /// Its path, for messages.
    shown: String,
    out: std::fs::File,
}

/// Creates the directories of `name` under `dir` and the temporary file,
/// refusing symbolic links on the way.
fn open_partial(dir: &Path, name: &str) -> Result<Partial> {
    use rustix::fs::{Mode, OFlags};
    let directory = OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC;
    std::fs::create_dir_all(dir).map_err(|e| broken(dir.display(), e))?;
    let mut parent = rustix::fs::open(
        dir,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| broken(dir.display(), e.into()))?;
    let mut shown = dir.to_path_buf();
    let mut parts: Vec<&str> = name.split('/').collect();
    let base = parts.pop().unwrap_or_default().to_owned();
    for part in parts {
        shown.push(part);
        match rustix::fs::mkdirat(&parent, part, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(broken(shown.display(), e.into())),
        }
        parent = rustix::fs::openat(&parent, part, directory, Mode::empty())
            .map_err(|e| link_refused(&shown, e))?;
    }
    let partial = format!(".{base}.{}{PARTIAL}", partial_owner(std::process::id()));
    shown.push(&partial);
    let out = rustix::fs::openat(
        &parent,
        partial.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )
    .map_err(|e| link_refused(&shown, e))?;
    Ok(Partial {
        parent,
        partial,
        base,
        shown: shown.display().to_string(),
        out: std::fs::File::from(out),
    })
}

/// A symbolic link where a directory or the temporary file goes is this
/// file's problem (its name leads there), not the whole output's.
fn link_refused(path: &Path, error: rustix::io::Errno) -> Error {
    if error == rustix::io::Errno::LOOP || error == rustix::io::Errno::NOTDIR {
        Error::Processing {
            name: path.display().to_string(),
            reason: "a symbolic link or a file stands where a directory or the temporary file goes; refusing to write through it".into(),
        }
    } else {
        broken(path.display(), error.into())
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
                .map_err(|e| failed(name, e))?;
        }
        Err(side) => {
            let _ = child.kill().await;
            return Err(side.into_error(&output));
        }
    }
    drop(stdin);
    let status = child.wait().await.map_err(|e| broken(&output, e))?;
    match status.code() {
        Some(0) => Ok(()),
        // The shell's own codes for a command it could not find or run:
        // every file would fail the same way.
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
