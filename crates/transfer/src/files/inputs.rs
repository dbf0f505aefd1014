//! Turning the sender's PATH arguments into named inputs.
//!
//! A file is named by its base name, a directory's files by their path
//! relative to the directory (recursively, in sorted order), and `-` by
//! `--name`. Names are checked here so nothing is announced that a
//! receiver would refuse.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::{Error, Result};
use crate::files::names;

/// One thing to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Input {
    /// Where to read it; `None` for standard input.
    pub path: Option<PathBuf>,
    /// The name receivers see.
    pub name: String,
    /// Size and modification time when collected (files only).
    pub size: u64,
    /// Last modification time, for `--follow` to tell a settled file.
    pub modified: Option<SystemTime>,
}

/// Expands the PATH arguments into inputs, in order, and checks that every
/// name is acceptable and unique.
pub fn collect(paths: &[PathBuf], stdin_name: Option<&str>) -> Result<Vec<Input>> {
    let inputs = list(paths, stdin_name)?;
    let mut seen = HashSet::new();
    for input in &inputs {
        names::check_file_name(&input.name)?;
        if !seen.insert(&input.name) {
            return Err(Error::DuplicateName {
                name: input.name.clone(),
            });
        }
    }
    Ok(inputs)
}

/// Expands the PATH arguments into inputs, in order, without judging names.
pub fn list(paths: &[PathBuf], stdin_name: Option<&str>) -> Result<Vec<Input>> {
    let mut inputs = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            let name = stdin_name.ok_or_else(|| {
                Error::Usage("reading from stdin (`-`) needs --name NAME to name the file".into())
            })?;
            inputs.push(Input {
                path: None,
                name: name.to_owned(),
                size: 0,
                modified: None,
            });
            continue;
        }
        let metadata = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if metadata.is_dir() {
            collect_dir(path, &mut inputs)?;
        } else {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| not_utf8(path))?;
            inputs.push(Input {
                path: Some(path.clone()),
                name: name.to_owned(),
                size: metadata.len(),
                modified: metadata.modified().ok(),
            });
        }
    }
    Ok(inputs)
}

fn collect_dir(dir: &Path, inputs: &mut Vec<Input>) -> Result<()> {
    let walker = walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .follow_links(false);
    let mut found = Vec::new();
    for entry in walker {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(dir).to_owned();
            Error::io(path, e.into())
        })?;
        if !entry.file_type().is_file() {
            continue;
        }
        let relative = entry.path().strip_prefix(dir).unwrap_or(entry.path());
        let parts: Option<Vec<&str>> = relative
            .components()
            .map(|c| c.as_os_str().to_str())
            .collect();
        let name = parts.ok_or_else(|| not_utf8(entry.path()))?.join("/");
        let metadata = entry
            .metadata()
            .map_err(|e| Error::io(entry.path(), e.into()))?;
        found.push(Input {
            path: Some(entry.path().to_owned()),
            name,
            size: metadata.len(),
            modified: metadata.modified().ok(),
        });
    }
    // Sorted by the name receivers see, whatever order the walk produced.
    found.sort_by(|a, b| a.name.cmp(&b.name));
    inputs.extend(found);
    Ok(())
}

fn not_utf8(path: &Path) -> Error {
    Error::HostileName {
        name: path.to_string_lossy().into_owned(),
        reason: "it is not valid UTF-8",
    }
}
