//! After Redis restarted, which may have lost its latest writes: noticing
//! it (its run id changed), and the work to do again (the channel, files
//! whose upload it no longer records as complete, the end-of-input mark).
//! What receivers lost comes back through their requests (`resupply`).
//! Also the end of input's cleanup: uploads an earlier run left.

use std::collections::{HashSet, VecDeque};

use super::driver::{Input, Job, Task};
use super::{Origin, Sender, Watch, create_channel};
use crate::error::{Error, Result};

impl Sender {
    /// Whether Redis restarted since it was last looked at: a connection
    /// was replaced and the server's run id changed.
    pub(super) async fn restarted(&self) -> Result<bool> {
        let redis = &self.channel.redis;
        let reconnections = redis.reconnections();
        if self.state().watch.reconnections == reconnections {
            return Ok(false);
        }
        let run_id = redis.run_id().await?;
        let mut state = self.state();
        let same = run_id.is_none() || state.watch.run_id == run_id;
        state.watch = Watch {
            reconnections,
            run_id,
        };
        Ok(!same)
    }

    /// Looks at the server anew, after a step found Redis behind before
    /// any connection of ours noticed a restart.
    pub(super) async fn forget_watch(&self) -> Result<()> {
        let redis = &self.channel.redis;
        let watch = Watch {
            reconnections: redis.reconnections(),
            run_id: redis.run_id().await?,
        };
        self.state().watch = watch;
        Ok(())
    }

    /// Does again what a Redis restart lost of this run's work, when Redis
    /// restarted: between files, where nothing is being uploaded.
    pub(super) async fn repair_after_restart(&self) -> Result<()> {
        if self.restarted().await? {
            let work = self.restart_work(&HashSet::new()).await?;
            self.work_through(VecDeque::from(work)).await?;
        }
        Ok(())
    }

    /// Creates the channel again if Redis lost it, and lists the work to
    /// do again: this run's files whose upload Redis no longer records as
    /// complete, except those in `queued` (they are uploaded anyway), in
    /// the order they came: receivers read files in that order, so the one
    /// they wait for goes first, not after newer files that would fill the
    /// budget. Then the end-of-input mark, when it was set.
    ///
    /// # Errors
    ///
    /// [`Error::UploadLost`] when Redis lost a stream, which cannot be read
    /// again.
    pub(super) async fn restart_work<'a>(&self, queued: &HashSet<String>) -> Result<Vec<Task<'a>>> {
        tracing::warn!("Redis restarted; checking whether it lost any of this run's work");
        create_channel(&self.channel, &self.options, self.limit).await?;
        let inputs = self.inputs_in_order();
        let names: Vec<&str> = inputs.iter().map(|(name, _)| name.as_str()).collect();
        let complete = self.channel.sent_completely(&names).await?;
        let mut work = Vec::new();
        for ((name, origin), complete) in inputs.into_iter().zip(complete) {
            if complete || queued.contains(&name) {
                continue;
            }
            let input = match origin {
                Origin::File(path) => Input::File(path),
                Origin::Piece(piece) => Input::Piece(piece),
                Origin::Stream => return Err(Error::UploadLost { name }),
            };
            tracing::warn!("{name}: Redis lost part of its upload; uploading it again");
            work.push(Task::Start(Job::redo(name, input)));
        }
        if self.state().finished {
            work.push(Task::MarkEnd);
        }
        Ok(work)
    }

    /// This run's inputs, in the order they came.
    fn inputs_in_order(&self) -> Vec<(String, Origin)> {
        let state = self.state();
        let mut inputs: Vec<_> = state.inputs.iter().collect();
        inputs.sort_by_key(|(_, remembered)| remembered.order);
        inputs
            .into_iter()
            .map(|(name, remembered)| (name.clone(), remembered.origin.clone()))
            .collect()
    }

    /// Abandons every upload still unfinished: only at the end of this
    /// run's input, when none of them is this run's.
    pub(super) async fn abandon_left_uploads(&self) -> Result<()> {
        for file in self.channel.active_files().await? {
            if !file.uploading || self.state().inputs.contains_key(&file.name) {
                continue;
            }
            tracing::warn!(
                "{}: an earlier sender stopped while uploading it, and this run was not \
                 given it again; abandoning it (receivers skip it)",
                file.name
            );
            self.channel
                .abort_upload(
                    file.fid,
                    "its sender stopped before finishing it and was not given it again",
                )
                .await?;
        }
        Ok(())
    }
}
