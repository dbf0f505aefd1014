//! The book's wire format (*Redis in Action* section 6.6), spoken byte for
//! byte so our sender can feed the book's receivers and the book's sender
//! can feed ours (`--protocol classic`).
//!
//! Keys for channel `C` (the channel string as given, e.g. `logs:`) and
//! file base name `F`: `ids:C` (message counter), `msgs:C` (zset of chat
//! messages as JSON, scored by id), `chat:C` (zset: member → last id seen),
//! `seen:R` (zset: chat → last id seen by recipient R), `lock:chat:C`,
//! `CF` (the file's bytes, appended in 128 KiB blocks) and `CF:done`
//! (receivers that finished it). `docs/classic.md` has the details.
//!
//! Where a book peer cannot tell the difference, we do better: a receiver
//! advances its read position only after a file's work is done, in the same
//! atomic step as its `INCR`, so a crash mid-file redelivers that file and
//! still counts once; the sender appends only at the offset it expects, so
//! a restart or a retried command never appends twice; counters compare as
//! numbers. The format itself has no notification, so both sides poll.

mod receiver;
mod sender;

use std::time::Duration;

use crate::error::{Error, Result};
use crate::redis::Redis;

pub use receiver::ClassicReceiver;
pub use sender::{ClassicSender, check_sizes};

/// Refuses a Redis Cluster before anything is written: the book's keys
/// (`chat:C`, `seen:R`, `msgs:C`, the files) meet in one transaction by
/// design, and hash to different slots.
pub fn refuse_cluster(redis: &Redis) -> Result<()> {
    if redis.is_cluster() {
        return Err(Error::Usage(
            "the classic protocol cannot run on a Redis Cluster: the book's keys meet in one transaction but hash to different slots; use the native protocol (leave out --protocol classic / --classic)".into(),
        ));
    }
    Ok(())
}

/// Size of each `APPEND` and `GETRANGE`, as in the book.
pub const BLOCK_SIZE: u64 = 1 << 17;
/// Redis' default `proto-max-bulk-len`: no string key can grow beyond it.
pub(crate) const MAX_FILE: u64 = 512 * 1024 * 1024;
/// How often to look again when the format gives nothing to block on.
pub(crate) const POLL: Duration = Duration::from_millis(100);
/// The chat member that sends; it never fetches.
pub(crate) const SOURCE: &str = "source";
/// The message that ends a transfer.
pub(crate) const DONE: &str = ":done";

/// Key names of one classic channel.
#[derive(Clone, Debug)]
pub(crate) struct ClassicKeys {
    channel: String,
}

impl ClassicKeys {
    pub fn new(channel: &str) -> Self {
        ClassicKeys {
            channel: channel.to_owned(),
        }
    }

    pub fn ids(&self) -> String {
        format!("ids:{}", self.channel)
    }

    pub fn messages(&self) -> String {
        format!("msgs:{}", self.channel)
    }

    pub fn chat(&self) -> String {
        format!("chat:{}", self.channel)
    }

    pub fn seen(&self, recipient: &str) -> String {
        format!("seen:{recipient}")
    }

    pub fn lock(&self) -> String {
        format!("lock:chat:{}", self.channel)
    }

    pub fn content(&self, name: &str) -> String {
        format!("{}{name}", self.channel)
    }

    pub fn done(&self, name: &str) -> String {
        format!("{}{name}:done", self.channel)
    }

    /// Our own record (unknown to the book) of files whose keys the sender
    /// deleted, so a restarted sender knows which announced files still
    /// need cleaning, empty ones included.
    pub fn cleaned(&self) -> String {
        format!("rd:classic:{}:cleaned", self.channel)
    }
}

/// A chat message as stored in `msgs:C`.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Message {
    pub(crate) id: u64,
    /// Kept as written: with the id, it tells messages of a chat that was
    /// created again apart.
    #[serde(default)]
    pub(crate) ts: Option<serde_json::Number>,
    pub(crate) message: String,
}

pub(crate) fn parse_message(key: &str, json: &str) -> Result<Message> {
    serde_json::from_str(json).map_err(|e| Error::Protocol {
        key: key.to_owned(),
        reason: format!("malformed chat message {json:?}: {e}"),
    })
}

/// A message exactly as the book's Python writes it with `json.dumps`:
/// keys in this order, `", "` and `": "` separators, non-ASCII escaped.
pub(crate) fn message_json(id: u64, ts: f64, sender: &str, message: &str) -> String {
    format!(
        "{{\"id\": {id}, \"ts\": {}, \"sender\": {}, \"message\": {}}}",
        python_float(ts),
        python_string(sender),
        python_string(message)
    )
}

/// Python's `repr` of a float for the values a clock gives: the shortest
/// digits that round-trip (as Rust prints them), always with a fraction.
fn python_float(value: f64) -> String {
    let text = value.to_string();
    if text.contains(['.', 'e', 'E']) || !value.is_finite() {
        text
    } else {
        format!("{text}.0")
    }
}

/// A JSON string with `ensure_ascii`: everything outside printable ASCII as
/// `\uXXXX` (UTF-16, lowercase hex), as Python's `json.dumps` does.
pub fn python_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_written_as_python_json_dumps_writes_them() {
        assert_eq!(
            message_json(3, 1732467200.25, "source", "access.log"),
            r#"{"id": 3, "ts": 1732467200.25, "sender": "source", "message": "access.log"}"#
        );
        assert_eq!(
            message_json(1, 1732467200.0, "source", ""),
            r#"{"id": 1, "ts": 1732467200.0, "sender": "source", "message": ""}"#
        );
    }

    #[test]
    fn strings_escape_like_ensure_ascii() {
        assert_eq!(
            python_string("naïve \"q\" \\ ☃ 𝄞\u{7f}"),
            r#""na\u00efve \"q\" \\ \u2603 \ud834\udd1e\u007f""#
        );
    }
}
