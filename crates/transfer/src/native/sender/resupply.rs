//! Serving receivers that lost files: requests in `wanted` are uploaded
//! again from this run's inputs, or parked when that cannot be done; and
//! the final wait, which serves them until every receiver is done.

use std::time::{Duration, Instant};

use super::driver::{Input, Job};
use super::{Origin, Sender};
use crate::error::{Error, Result};
use crate::native::notice::WaitNotice;
use crate::native::protocol::sending::{Request, Wanted};
use crate::telemetry;

/// How often a sender whose input ended looks at what is left: the end of
/// a transfer is noticed this much later at most.
const LOOK_AT_MOST_EVERY: Duration = Duration::from_millis(50);

impl Sender {
    /// Uploads again the files receivers asked for because their data left
    /// Redis before they could read it (released early, or lost by Redis),
    /// when this run has their source and it is unchanged; parks them for
    /// those receivers when it cannot be read again. Returns the names of
    /// wanted files that are not among this run's inputs (so far).
    pub async fn resupply(&self) -> Result<Vec<String>> {
        self.repair_after_restart().await?;
        let mut unserved = Vec::new();
        for request in self.channel.requests().await? {
            match request {
                Request::Malformed { name, value } => {
                    self.give_up(&name, &format!("its request {value:?} is malformed"))
                        .await?;
                }
                Request::Again(wanted) => {
                    if let Some(name) = self.serve(wanted).await? {
                        unserved.push(name);
                    }
                }
            }
        }
        unserved.sort();
        self.state().asked = !unserved.is_empty();
        Ok(unserved)
    }

    /// Uploads a wanted file again, or parks it; returns its name when it
    /// is not among this run's inputs.
    async fn serve(&self, wanted: Wanted) -> Result<Option<String>> {
        let origin = self
            .state()
            .inputs
            .get(&wanted.name)
            .map(|input| input.origin.clone());
        let input = match origin {
            None => return Ok(Some(wanted.name)),
            Some(Origin::Stream) => {
                let reason = "it was read from a stream, which cannot be read again";
                self.give_up(&wanted.name, reason).await?;
                return Ok(None);
            }
            Some(Origin::File(path)) => Input::File(path),
            Some(Origin::Piece(piece)) => Input::Piece(piece),
        };
        let name = wanted.name.clone();
        tracing::info!(
            "{name}: uploading it again for {} (its data left Redis before they could read it)",
            if wanted.receivers == "*" {
                "a worker".to_owned()
            } else {
                format!("receivers {}", wanted.receivers)
            }
        );
        telemetry::file_sent_again();
        match self.drive(Job::again(wanted, input)).await {
            Ok(_) => {}
            Err(error @ (Error::SourceChanged { .. } | Error::Io { .. })) => {
                self.give_up(&name, &format!("it cannot be supplied again: {error}"))
                    .await?
            }
            Err(error) => return Err(error),
        }
        Ok(None)
    }

    /// Parks a wanted file for the receivers that wanted it.
    async fn give_up(&self, name: &str, reason: &str) -> Result<()> {
        tracing::warn!("{name}: {reason}; parking it for the receivers that lost it");
        self.channel.give_up(name, reason).await?;
        Ok(())
    }

    /// Waits until every announced file is finished by all its receivers
    /// and its data is gone from Redis, uploading files again for
    /// receivers that lost them meanwhile.
    ///
    /// # Errors
    ///
    /// [`Error::NotSupplied`] when receivers wait for files this run cannot
    /// upload again (it was not given them).
    pub async fn wait_until_done(&self) -> Result<()> {
        let mut last_event = "0-0".to_owned();
        let mut notice = WaitNotice::new();
        let mut looked: Option<Instant> = None;
        loop {
            // Receivers make an event per file they settle: looking once
            // per event would keep Redis and this process busy while
            // thousands of small files are settled a second.
            if let Some(at) = looked {
                tokio::time::sleep_until((at + LOOK_AT_MOST_EVERY).into()).await;
            }
            looked = Some(Instant::now());
            let unserved = self.resupply().await?;
            self.release(false).await?;
            let outstanding = self.channel.outstanding().await?;
            if outstanding.active == 0
                && outstanding.reclaim == 0
                && outstanding.wanted == unserved.len() as u64
            {
                return self.done(unserved).await;
            }
            if notice.due() {
                tracing::info!(
                    "every file is uploaded; waiting for {}",
                    self.awaited().await?
                );
            }
            match outstanding.newest_event {
                Some(id) => {
                    if id == last_event {
                        self.channel.wait_for_event(&last_event).await?;
                    }
                    last_event = id;
                }
                None => self.channel.wait_for_event(&last_event).await?,
            }
        }
    }

    /// Nothing is left in Redis but requests for the `unserved` files:
    /// the end of the wait, or of the channel if it vanished.
    async fn done(&self, unserved: Vec<String>) -> Result<()> {
        if !unserved.is_empty() {
            return Err(Error::NotSupplied {
                channel: self.options.channel.clone(),
                names: unserved.join(", "),
            });
        }
        // Empty because done, or because the state vanished?
        match self.channel.meta().await? {
            Some(_) => {
                // Whatever a failover brought back (see
                // `purge::remove_leftovers`): nothing of a finished
                // file stays in Redis.
                crate::native::purge::remove_leftovers(&self.channel).await?;
                self.lease.release().await
            }
            None => Err(self.channel.protocol_error(
                "the channel vanished while receivers were working (purged, or Redis \
                 restarted without persistence); send again"
                    .into(),
            )),
        }
    }
}
