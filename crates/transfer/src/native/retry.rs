//! Offering parked files again (`redistribute retry`): each becomes a
//! request for the sender to upload it again from its source, for the
//! receivers that gave up on it.

use crate::error::Result;
use crate::files::names;
use crate::native::lease;
use crate::native::protocol::Keys;
use crate::native::protocol::channel::Channel;
pub use crate::native::protocol::offer_again::Retried;
use crate::redis::Redis;

/// What `retry` did.
#[derive(Debug)]
pub struct RetryOutcome {
    /// The parked files it found (those named, or all).
    pub files: Vec<Retried>,
    /// Names asked for that are not parked.
    pub not_parked: Vec<String>,
    /// The sender that will upload them, if one is running; otherwise the
    /// next `send` with the same inputs does.
    pub sender: Option<String>,
}

/// Offers the parked files of `channel` named in `files` (all when empty)
/// again.
///
/// # Errors
///
/// A channel that does not exist; invalid names; Redis errors.
pub async fn retry(
    redis: &Redis,
    prefix: &str,
    channel: &str,
    files: &[String],
) -> Result<RetryOutcome> {
    names::check_channel_name(channel)?;
    names::check_prefix(prefix)?;
    for name in files {
        names::check_file_name(name)?;
    }
    let channel = Channel::new(redis.clone(), Keys::new(prefix, channel));
    let files_found = channel.offer_parked_again(files).await?;
    let not_parked = files
        .iter()
        .filter(|name| !files_found.iter().any(|r| &r.file == *name))
        .cloned()
        .collect();
    Ok(RetryOutcome {
        files: files_found,
        not_parked,
        sender: lease::holder_of(&channel, "sender").await?,
    })
}
