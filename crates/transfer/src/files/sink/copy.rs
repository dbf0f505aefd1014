//! `--out`: byte-identical copies, written to temporary files and renamed
//! into place once verified and on the disk, never through a symbolic link.
//! Writing and committing (flush to the disk, rename) are separate steps,
//! so a receiver can go on with the next files while copies are flushed:
//! flushes in parallel share the file system's journal commits.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::oneshot;
use tokio::sync::oneshot::error::TryRecvError;

use super::{broken, pump};
use crate::error::{Error, Result};
use crate::files::incoming::IncomingFile;
use crate::host;

/// Writes a copy under `dir` through `.NAME.N.HOST.PID.rd-partial` (N
/// counts this process's copies, so two copies of one name never share
/// a temporary file; host and process id keep two receivers writing the
/// same file into one directory, as workers may after Redis lost an
/// acknowledgement, out of each other's way, and tell which temporary
/// files a killed receiver left: see [`remove_stale_partials`]). Every
/// step below `dir` works relative to a handle on the directory above it
/// and never follows a symbolic link, so a link planted inside the output
/// directory cannot send a write elsewhere. The copy is in place once the
/// returned [`Commit`] ran.
pub(super) async fn write_copy(dir: &Path, name: &str, file: &mut IncomingFile) -> Result<Commit> {
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
    let mut commit = Commit {
        parent,
        partial,
        base,
        shown,
        out: tokio::fs::File::from_std(out),
        kept: false,
    };
    pump(name, file, &mut commit.out)
        .await
        .map_err(|side| side.into_error(&commit.shown))?;
    Ok(commit)
}

/// A copy written to its temporary file, to flush to the disk and rename
/// into place. Dropped without running (an error, a receiver stopped),
/// it removes the temporary file.
pub(super) struct Commit {
    /// The directory it is in.
    parent: OwnedFd,
    /// Its name there, and the name it is renamed to.
    partial: String,
    base: String,
    /// Its path, for messages.
    shown: String,
    out: tokio::fs::File,
    /// Renamed into place.
    kept: bool,
}

impl Commit {
    /// Flushes the copy to the disk and renames it into place: a copy
    /// acknowledged survives a crash of the machine.
    pub(super) async fn run(mut self) -> Result<()> {
        self.out
            .sync_all()
            .await
            .map_err(|e| broken(&self.shown, e))?;
        rustix::fs::renameat(&self.parent, &self.partial, &self.parent, &self.base)
            .map_err(|e| broken(&self.shown, e.into()))?;
        self.kept = true;
        Ok(())
    }
}

impl Drop for Commit {
    fn drop(&mut self) {
        if !self.kept {
            let _ = rustix::fs::unlinkat(
                &self.parent,
                self.partial.as_str(),
                rustix::fs::AtFlags::empty(),
            );
        }
    }
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
pub(super) async fn remove_stale_partials(dir: &Path) {
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
    static COPIES: AtomicU64 = AtomicU64::new(0);
    let copy = COPIES.fetch_add(1, Ordering::Relaxed);
    let owner = partial_owner(std::process::id());
    let partial = format!(".{base}.{copy}.{owner}{PARTIAL}");
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

/// Copies being committed, by name: two copies of one name are renamed
/// in the order they were written, so the later one stays in place.
#[derive(Default)]
pub(super) struct Commits(HashMap<String, oneshot::Receiver<()>>);

impl Commits {
    /// `commit`, run once the copy of the same name written before it
    /// (if any) is committed or abandoned.
    pub(super) fn in_order(
        &mut self,
        name: &str,
        commit: Commit,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        if self.0.len() >= 1024 {
            // Forget the names whose last copy is committed.
            self.0
                .retain(|_, done| matches!(done.try_recv(), Err(TryRecvError::Empty)));
        }
        let (finished, done) = oneshot::channel();
        let before = self.0.insert(name.to_owned(), done);
        async move {
            if let Some(before) = before {
                let _ = before.await;
            }
            let committed = commit.run().await;
            let _ = finished.send(());
            committed
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    use bytes::Bytes;
    use tokio::sync::mpsc;

    use super::*;
    use crate::files::incoming::Ticket;

    /// A verified file named `x` holding `contents`.
    fn incoming(contents: &'static [u8]) -> IncomingFile {
        let (bytes, chunks) = mpsc::channel(1);
        bytes.try_send(Ok(Bytes::from_static(contents))).unwrap();
        let ticket = Ticket::Classic {
            message: 1,
            ts: "0".into(),
        };
        let verified = Arc::new(AtomicBool::new(true));
        IncomingFile::new("x".into(), ticket, chunks, verified, Vec::new())
    }

    #[tokio::test]
    async fn two_copies_of_one_name_are_renamed_in_the_order_they_were_written() {
        let dir = tempfile::tempdir().unwrap();
        let first = write_copy(dir.path(), "x", &mut incoming(b"old"))
            .await
            .unwrap();
        let second = write_copy(dir.path(), "x", &mut incoming(b"new"))
            .await
            .unwrap();
        let mut commits = Commits::default();
        let first = commits.in_order("x", first);
        let second = tokio::spawn(commits.in_order("x", second));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!second.is_finished(), "the later copy went first");
        first.await.unwrap();
        second.await.unwrap().unwrap();
        assert_eq!(std::fs::read(dir.path().join("x")).unwrap(), b"new");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "temporary files left: {left:?}");
    }

    #[tokio::test]
    async fn a_copy_dropped_before_its_commit_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let commit = write_copy(dir.path(), "x", &mut incoming(b"data"))
            .await
            .unwrap();
        drop(commit);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
