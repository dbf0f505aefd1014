//! Several small files a round trip: consecutive files that come whole
//! (`whole.rs`) are announced, in their order, by one ANNOUNCE_MANY
//! step. It stops at the first file it neither stores nor finds sent
//! before, which then goes the way of any file, so the order receivers
//! see is the order the files were given in, whatever Redis answers.

use std::path::{Path, PathBuf};

use super::driver::{Input, Job};
use super::start::open_input;
use super::{Origin, SENDER, Sender, Sent};
use crate::error::Result;
use crate::files::names;
use crate::native::protocol::sending::{AnnounceState, Announcement, Whole};
use crate::redis::memory;

/// Most files announced in one step.
const MOST_FILES: usize = 32;
/// Most bytes of values announced in one step.
const MOST_BYTES: usize = 1 << 20;

/// A small file read whole, ready to announce.
struct Ready {
    name: String,
    identity: String,
    whole: Whole,
}

impl Sender {
    /// Sends local files, in order, as [`Sender::send_file`] would each:
    /// small ones several a round trip. Returns what happened to each.
    pub async fn send_files(&self, files: &[(PathBuf, String)]) -> Result<Vec<Sent>> {
        let mut sent = Vec::with_capacity(files.len());
        let mut rest = files;
        while let Some((path, name)) = rest.first() {
            let ready = match self.options.split {
                Some(_) => Vec::new(),
                None => self.read_ready(rest).await?,
            };
            if ready.is_empty() {
                sent.push(self.send_file(path, name).await?);
                rest = &rest[1..];
                continue;
            }
            let done = self.announce_ready(&rest[..ready.len()], ready).await?;
            rest = &rest[done.len()..];
            sent.extend(done);
        }
        Ok(sent)
    }

    /// The small files that `files` begins with, read whole, up to
    /// [`MOST_FILES`] and [`MOST_BYTES`]. A file that cannot be read ends
    /// the list: the files before it go first, as they would one by one,
    /// and its error comes when it is the first.
    async fn read_ready(&self, files: &[(PathBuf, String)]) -> Result<Vec<Ready>> {
        let mut ready = Vec::new();
        let mut bytes = 0;
        for (path, name) in files.iter().take(MOST_FILES) {
            let whole = match self.read_one(path, name).await {
                Ok(whole) => whole,
                Err(error) if ready.is_empty() => return Err(error),
                Err(_) => break,
            };
            let Some((identity, whole)) = whole else {
                break;
            };
            bytes += whole.value.len();
            if bytes > MOST_BYTES && !ready.is_empty() {
                break;
            }
            ready.push(Ready {
                name: name.clone(),
                identity,
                whole,
            });
        }
        Ok(ready)
    }

    /// One file's identity and whole value, if it is small enough.
    async fn read_one(&self, path: &Path, name: &str) -> Result<Option<(String, Whole)>> {
        names::check_file_name(name)?;
        let job = Job::given(name, Input::File(path.to_owned()));
        let opened = open_input(path, None, &job)?;
        let whole = self
            .read_whole(path, None, &opened.file, &opened.metadata)
            .await?;
        Ok(whole.map(|whole| (opened.identity, whole)))
    }

    /// Announces `ready`, read from `files`, in one step. Returns what
    /// happened to the files it stored or found sent; the first other one
    /// goes the way of any file (waiting for room, resuming, redoing what
    /// Redis lost first), and the rest are left for the next step.
    async fn announce_ready(
        &self,
        files: &[(PathBuf, String)],
        ready: Vec<Ready>,
    ) -> Result<Vec<Sent>> {
        self.lease.check(SENDER)?;
        self.before_each_file().await?;
        for (path, name) in files {
            self.remember(name, Origin::File(path.clone()));
        }
        let lowest_fid = self.state().highest_fid + 1;
        let announcements: Vec<_> = ready
            .iter()
            .map(|file| Announcement {
                name: &file.name,
                identity: &file.identity,
                resumable: true,
                slot: memory::slot_for(self.options.chunk_size),
                acks_needed: self.options.audience.acks_needed(),
                again: None,
                lowest_fid,
                piece: None,
                check_forgotten: true,
                whole: Some(file.whole.clone()),
            })
            .collect();
        let answers = self.channel.announce_many(&announcements).await?;
        let mut sent = Vec::new();
        for ((path, name), (file, answer)) in files.iter().zip(ready.iter().zip(answers)) {
            self.note_announced(&answer);
            match answer.state {
                AnnounceState::Stored => {
                    let stored = file.whole.value.len() as u64;
                    self.stored_whole(name, file.whole.size, stored).await;
                    sent.push(Sent::Uploaded {
                        bytes: file.whole.size,
                    });
                }
                AnnounceState::AlreadySent => {
                    tracing::info!("{name}: already sent by an earlier run; skipping");
                    sent.push(Sent::AlreadySent);
                }
                _ => {
                    sent.push(self.send_file(path, name).await?);
                    break;
                }
            }
        }
        Ok(sent)
    }
}
