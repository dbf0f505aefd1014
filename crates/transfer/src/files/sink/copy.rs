//! `--out`: byte-identical copies, written to temporary files and renamed
//! into place once verified, never through a symbolic link.

use std::os::fd::OwnedFd;
use std::path::Path;

use super::{broken, pump};
use crate::error::{Error, Result};
use crate::files::incoming::IncomingFile;
use crate::host;

/// Writes a copy under `dir` through `.NAME.HOST.PID.rd-partial`, renamed
/// into place once verified (host and process id keep two receivers
/// writing the same file into one directory, as workers may after Redis
/// lost an acknowledgement, out of each other's way, and tell which
/// temporary files a killed receiver left: see [`remove_stale_partials`]). Every step below `dir` works relative to a handle
/// on the directory above it and never follows a symbolic link, so a link
/// planted inside the output directory cannot send a write elsewhere.
pub(super) async fn write_copy(dir: &Path, name: &str, file: &mut IncomingFile) -> Result<()> {
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
