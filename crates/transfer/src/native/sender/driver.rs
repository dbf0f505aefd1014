//! The queue every upload goes through. One call of [`Sender::drive`]
//! works through a queue that starts with one job; a step that finds Redis
//! lost earlier work says so in its answer ([`Stop`]), and the driver
//! puts that work ahead of the job at hand (in the order the files first
//! came: receivers read files in that order) and goes on.

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;

use tokio::io::AsyncRead;

use super::upload::Upload;
use super::{SENDER, Sender};
use crate::error::{Error, Result};
use crate::native::pieces::Piece;
use crate::native::protocol::sending::Wanted;

/// Attempts at uploading one file when Redis keeps losing part of it.
const MAX_UPLOAD_ATTEMPTS: u32 = 3;

/// A stream to send, boxed so that a job is one type whatever it reads.
pub(super) type Stream = Box<dyn AsyncRead + Unpin + Send>;

/// Where a job's bytes come from.
pub(super) enum Input {
    File(PathBuf),
    Piece(Piece),
    /// Taken when its upload begins: a stream is read once.
    Stream(Option<Stream>),
}

/// Why a file is uploaded.
pub(super) enum Purpose {
    /// The caller gave it: its outcome is the caller's answer.
    Given,
    /// Receivers asked for it again: the outcome is the caller's answer.
    Again(Wanted),
    /// Redis lost this run's earlier upload of it.
    Redo,
}

/// One file to upload. Steps take it as `&mut Job` even to read it: it
/// may hold a stream, which is `Send` but not `Sync`, so a `&Job` held
/// across an await would keep the public calls' futures from being `Send`.
pub(super) struct Job {
    pub(super) name: String,
    pub(super) input: Input,
    pub(super) purpose: Purpose,
    /// Uploads of it so far that Redis cut short.
    attempts: u32,
    /// Whether ANNOUNCE checks that Redis still knows this sender's earlier
    /// file ids: not for files redone because it did not, nor after one
    /// such finding for this job.
    pub(super) check_forgotten: bool,
}

impl Job {
    /// A file the caller gave.
    pub(super) fn given(name: &str, input: Input) -> Self {
        Job::new(name.to_owned(), input, Purpose::Given)
    }

    /// A file receivers asked for again.
    pub(super) fn again(wanted: Wanted, input: Input) -> Self {
        Job::new(wanted.name.clone(), input, Purpose::Again(wanted))
    }

    /// A file Redis lost.
    pub(super) fn redo(name: String, input: Input) -> Self {
        Job::new(name, input, Purpose::Redo)
    }

    fn new(name: String, input: Input, purpose: Purpose) -> Self {
        let check_forgotten = !matches!(purpose, Purpose::Redo);
        Job {
            name,
            input,
            purpose,
            attempts: 1,
            check_forgotten,
        }
    }

    /// The request this upload serves, if it is an upload again.
    pub(super) fn wanted(&self) -> Option<&Wanted> {
        match &self.purpose {
            Purpose::Again(wanted) => Some(wanted),
            Purpose::Given | Purpose::Redo => None,
        }
    }
}

/// Work the driver does in order.
pub(super) enum Task<'a> {
    Start(Job),
    /// An upload that stopped while Redis' lost work went first.
    Resume(Job, Box<Upload<'a>>),
    /// Set the end-of-input mark again (Redis lost it).
    MarkEnd,
}

impl Task<'_> {
    fn name(&self) -> Option<&str> {
        match self {
            Task::Start(job) | Task::Resume(job, _) => Some(&job.name),
            Task::MarkEnd => None,
        }
    }
}

/// Why a step stopped working on its job.
pub(super) enum Stop<'a> {
    /// Over: the bytes uploaded, `None` when there was nothing to upload.
    Done(Option<u64>),
    /// Nothing announced: Redis forgot earlier files of this run.
    Forgot,
    /// Redis lost part of this upload: it starts over from what Redis has.
    Lost,
    /// Redis restarted while the upload waited for room.
    Restarted(Box<Upload<'a>>),
}

impl Sender {
    /// Uploads `job`, and whatever Redis turns out to have lost before it;
    /// returns the bytes of `job` uploaded (`None`: nothing to upload).
    pub(super) async fn drive(&self, job: Job) -> Result<Option<u64>> {
        self.work_through(VecDeque::from([Task::Start(job)])).await
    }

    /// Does `queue`'s tasks in order. Lost work only ever goes in front,
    /// so a given job or an upload again is the last task: its outcome is
    /// the answer. A queue of redone work only answers `None`.
    pub(super) async fn work_through<'a>(
        &'a self,
        mut queue: VecDeque<Task<'a>>,
    ) -> Result<Option<u64>> {
        while let Some(task) = queue.pop_front() {
            let (mut job, progress) = match task {
                Task::MarkEnd => {
                    self.channel.mark_end_of_input().await?;
                    continue;
                }
                Task::Start(mut job) => {
                    let progress = self.start(&mut job).await;
                    (job, progress)
                }
                Task::Resume(mut job, upload) => {
                    let progress = self.resume(&mut job, upload).await;
                    (job, progress)
                }
            };
            let ahead = match progress {
                Ok(Stop::Done(bytes)) => match job.purpose {
                    Purpose::Redo => continue,
                    Purpose::Given | Purpose::Again(_) => {
                        debug_assert!(queue.is_empty(), "lost work goes ahead of a given job");
                        return Ok(bytes);
                    }
                },
                Err(error) => {
                    self.failed(&job, error)?;
                    continue;
                }
                Ok(Stop::Forgot) => {
                    self.forget_watch().await?;
                    job.check_forgotten = false;
                    drop_redone_work(&mut queue);
                    let lost = self.restart_work(&queued(&queue, &job)).await?;
                    chain(lost, Task::Start(job))
                }
                Ok(Stop::Lost) => self.start_over(job, &mut queue).await?,
                Ok(Stop::Restarted(upload)) => {
                    drop_redone_work(&mut queue);
                    let lost = self.restart_work(&queued(&queue, &job)).await?;
                    chain(lost, Task::Resume(job, upload))
                }
            };
            for task in ahead.into_iter().rev() {
                queue.push_front(task);
            }
        }
        Ok(None)
    }

    /// A job failed: the caller hears of it, unless it is work Redis lost
    /// whose source is gone or changed since, which must not stop the
    /// others (nor the file whose upload found Redis behind).
    fn failed(&self, job: &Job, error: Error) -> Result<()> {
        match (&job.purpose, error) {
            (Purpose::Redo, error @ (Error::Io { .. } | Error::SourceChanged { .. })) => {
                let name = &job.name;
                tracing::warn!("{name}: Redis lost it, and it cannot be sent again: {error}");
                Ok(())
            }
            (_, error) => Err(error),
        }
    }

    /// Redis lost part of `job`'s upload (a restart without its latest
    /// writes): it starts over from what Redis still has, after the files
    /// before it that Redis lost too.
    async fn start_over<'a>(
        &'a self,
        mut job: Job,
        queue: &mut VecDeque<Task<'a>>,
    ) -> Result<Vec<Task<'a>>> {
        let lost = Error::UploadLost {
            name: job.name.clone(),
        };
        if matches!(job.input, Input::Stream(_)) || job.attempts >= MAX_UPLOAD_ATTEMPTS {
            return Err(lost);
        }
        // Not Redis' doing if another sender took over while this one was
        // paused.
        self.lease.confirm(SENDER).await?;
        tracing::warn!(
            "{}: Redis lost part of its upload (a restart without its latest writes); uploading it again",
            job.name
        );
        job.attempts += 1;
        job.check_forgotten = !matches!(job.purpose, Purpose::Redo);
        let earlier = match self.restarted().await? {
            true => {
                drop_redone_work(queue);
                self.restart_work(&queued(queue, &job)).await?
            }
            false => Vec::new(),
        };
        Ok(chain(earlier, Task::Start(job)))
    }
}

/// Before Redis' lost work is listed again after another restart: takes
/// the redone files not yet begun and the end-of-input mark out of the
/// queue, so the new list brings them back in the order the files came,
/// with the mark after every one of them (left in place, a file lost by
/// the later restart would go ahead of earlier ones, and the mark ahead of
/// files not announced yet, which could let a receiver end too early).
fn drop_redone_work(queue: &mut VecDeque<Task<'_>>) {
    queue.retain(|task| match task {
        Task::Start(job) => !matches!(job.purpose, Purpose::Redo),
        Task::MarkEnd => false,
        Task::Resume(..) => true,
    });
}

/// Names of the files the queue and the job at hand will upload anyway.
fn queued(queue: &VecDeque<Task<'_>>, job: &Job) -> HashSet<String> {
    queue
        .iter()
        .filter_map(Task::name)
        .chain([job.name.as_str()])
        .map(str::to_owned)
        .collect()
}

/// `first`, then `then`.
fn chain<'a>(mut first: Vec<Task<'a>>, then: Task<'a>) -> Vec<Task<'a>> {
    first.push(then);
    first
}
