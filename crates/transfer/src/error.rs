//! The crate's one error type.
//!
//! Every variant carries enough context to be printed as a single line that
//! says what failed and what to do, because the binary prints nothing else.

use std::path::PathBuf;

use redis::{ErrorKind, RedisError, ServerErrorKind};

/// Everything that can go wrong while sending or receiving.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Redis URL could not be parsed.
    #[error(
        "invalid Redis URL {url}: {reason} (expected redis://[user:pass@]host:port[/db], rediss://… or unix:///path)"
    )]
    InvalidUrl {
        /// The URL, password masked.
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// Redis could not be reached or refused the connection.
    #[error(
        "cannot connect to Redis at {url}: {source} (is redis-server running there? set --redis or REDIS_URL)"
    )]
    Connect {
        /// The URL, password masked.
        url: String,
        /// The client's error.
        #[source]
        source: redis::RedisError,
    },

    /// The TLS handshake with Redis failed: a certificate was refused, by
    /// us or by the server.
    #[error("TLS with Redis at {url} failed: {source} ({hint})")]
    Tls {
        /// The URL, password masked.
        url: String,
        /// What to check.
        hint: &'static str,
        /// The client's error.
        #[source]
        source: redis::RedisError,
    },

    /// Redis rejected the credentials.
    #[error(
        "Redis at {url} refused the credentials: {source} (check the user and password in the URL)"
    )]
    Auth {
        /// The URL, password masked.
        url: String,
        /// The client's error.
        #[source]
        source: redis::RedisError,
    },

    /// The user logged in, but its ACL does not allow a command the tool
    /// needs; the server's message names the command.
    #[error(
        "Redis at {url} does not let this user run a command it needs: {source} (allow it in the user's ACL: see \"ACL permissions\" in docs/operations.md)"
    )]
    Permission {
        /// The URL, password masked.
        url: String,
        /// The client's error, naming the command.
        #[source]
        source: redis::RedisError,
    },

    /// A Redis command failed for a reason retrying cannot fix.
    #[error("Redis {what} failed: {source}")]
    Redis {
        /// The step that was attempted.
        what: &'static str,
        /// The client's error.
        #[source]
        source: redis::RedisError,
    },

    /// Redis stayed unreachable for longer than we are willing to wait.
    #[error(
        "Redis unreachable for {seconds} s during {what}: {source} (run the same command again once Redis is back: a transfer resumes where it stopped)"
    )]
    GaveUp {
        /// The step that was attempted.
        what: &'static str,
        /// How long we kept trying.
        seconds: u64,
        /// The client's error.
        #[source]
        source: redis::RedisError,
    },

    /// A local file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// A file name that could escape the output directory or confuse a shell.
    #[error("refusing file name {name:?}: {reason}")]
    HostileName {
        /// The name in question.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },

    /// Two inputs would be stored under the same name in one channel.
    #[error(
        "two inputs are both named {name:?} in this channel; send them in separate runs or rename one"
    )]
    DuplicateName {
        /// The name in question.
        name: String,
    },

    /// A channel name that cannot be used as part of a Redis key.
    #[error("invalid channel name {name:?}: {reason}")]
    InvalidChannel {
        /// The name in question.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },

    /// The receiver id is not one of the receivers the sender named.
    #[error(
        "receiver {id:?} is not a receiver of channel {channel:?} (its receivers are: {known})"
    )]
    UnknownReceiver {
        /// The id given.
        id: String,
        /// The channel.
        channel: String,
        /// The receivers it has.
        known: String,
    },

    /// The channel exists with settings that contradict this command.
    #[error(
        "channel {channel:?} already exists {existing}; use the same settings or `redistribute purge --channel {channel}` first"
    )]
    ChannelMismatch {
        /// The channel.
        channel: String,
        /// Its existing settings.
        existing: String,
    },

    /// Redis may evict our keys when memory runs short.
    #[error(
        "Redis at {url} has maxmemory-policy {policy}, which may evict chunks of files in flight and lose them; set `maxmemory-policy noeviction` (or a volatile-* policy), or pass --allow-eviction to accept that risk"
    )]
    EvictionPolicy {
        /// The URL, password masked.
        url: String,
        /// The policy Redis reported.
        policy: String,
    },

    /// A file changed (size or modification time) while it was being sent.
    #[error(
        "{}: {reason} while it was being sent; its upload was abandoned (send it again once it is stable)",
        path.display()
    )]
    SourceChanged {
        /// The file.
        path: PathBuf,
        /// What changed.
        reason: String,
    },

    /// Another live process holds this role of the channel.
    #[error(
        "{role} of channel {channel:?} is already taken by {holder}; stop that process (if it died on another machine, its claim lapses within 15 s)"
    )]
    RoleTaken {
        /// The role: `the sender`, `receiver 0`, `worker w1`.
        role: String,
        /// The channel.
        channel: String,
        /// Who holds it.
        holder: String,
    },

    /// `purge` refused: processes are at work on the channel.
    #[error(
        "channel {channel:?} is in use by {holders}; stop them first, then purge (a process that died on another machine lets go within 15 s)"
    )]
    ChannelInUse {
        /// The channel.
        channel: String,
        /// Who holds its roles.
        holders: String,
    },

    /// This process lost its role: its lease lapsed (Redis unreachable for
    /// too long) and another process took it.
    #[error(
        "{role} of channel {channel:?} was taken over by another process while this one was cut off; stopping"
    )]
    RoleLost {
        /// The role.
        role: String,
        /// The channel.
        channel: String,
    },

    /// A file's data did not arrive intact.
    #[error("file {name:?}: {reason}; it was not acknowledged")]
    Corrupt {
        /// The name in question.
        name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The output files go to is broken, so every file would fail the same
    /// way: nothing is acknowledged or counted as a failure of the file.
    #[error(
        "{output}: {reason}; stopped without acknowledging or parking anything (fix it, then run the same command again)"
    )]
    Sink {
        /// The output: stdout, a path, or the command.
        output: String,
        /// What went wrong.
        reason: String,
    },

    /// A file went to stdout in part and cannot be finished next: printing
    /// any other file would splice it into this one.
    #[error(
        "stdout: {name} was cut short after {printed} bytes: {reason}; stopping so that no other file is printed into the middle of it"
    )]
    CutShort {
        /// The file printed in part.
        name: String,
        /// Its bytes that went to stdout.
        printed: u64,
        /// Why it cannot be finished next.
        reason: String,
    },

    /// The work finished, but files failed (too often, or for good) and were parked: not
    /// everyone who needed them got them. The binary exits with 3.
    #[error(
        "{} failed and {} parked{detail}; see `redistribute status --channel {channel}`",
        crate::text::counted(*.count, "file", "files"),
        if *.count == 1 { "was" } else { "were" }
    )]
    FilesParked {
        /// The channel.
        channel: String,
        /// How many files.
        count: u64,
        /// Which files and by whom, when known (`: a.log (receiver 2: why)`).
        detail: String,
    },

    /// The book's format announced files under names this receiver
    /// refuses (a path, a control character): each was skipped, named in
    /// a line of its own, and not counted as done. The binary exits with 3:
    /// the work is done, but not all of it was delivered.
    #[error(
        "{} and not counted as done on chat {channel:?}; send {} again under a plain file name",
        crate::text::counted(*.count, "file was refused for its name", "files were refused for their names"),
        if *.count == 1 { "it" } else { "them" }
    )]
    FilesRefused {
        /// The channel (the book's chat).
        channel: String,
        /// How many files.
        count: u64,
    },

    /// Receivers wait for files whose data left Redis before they could
    /// read them, and this sender was not given those files. The binary
    /// exits with 3.
    #[error(
        "receivers of channel {channel:?} lost these files and wait for them to be uploaded again: {names}; run `redistribute send` with them (or `redistribute purge`)"
    )]
    NotSupplied {
        /// The channel.
        channel: String,
        /// Which files.
        names: String,
    },

    /// Redis lost part of an upload (it restarted without its latest
    /// writes, or a replica without them took over), again and again.
    #[error(
        "file {name:?}: Redis lost part of its upload several times in a row (restarts without their latest writes); send it again once Redis is stable"
    )]
    UploadLost {
        /// The file.
        name: String,
    },

    /// Processing a file failed on the receiving side.
    #[error("file {name:?}: {reason}")]
    Processing {
        /// The name in question.
        name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A file whose contents cannot be processed however often it is
    /// tried (the job finds its lines in no format it may read): parked at
    /// the first failure rather than read again and again.
    #[error("file {name:?}: {reason}")]
    Unprocessable {
        /// The name in question.
        name: String,
        /// What is wrong with it, and what to do.
        reason: String,
    },

    /// The channel was created by a version of redistribute that speaks
    /// another schema.
    #[error(
        "channel {channel} was made by another version of redistribute (schema {found}, this one speaks {expected}): run one version on every machine, or let the channel drain and `purge` it"
    )]
    SchemaMismatch {
        /// The channel.
        channel: String,
        /// The schema it has.
        found: String,
        /// The schema this build speaks.
        expected: &'static str,
    },

    /// The state kept in Redis is not what this version of the protocol writes.
    #[error(
        "unexpected data in Redis at {key}: {reason} (was the key written by another program? `purge` the channel)"
    )]
    Protocol {
        /// The key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A value given by the caller could not be used; the text says why.
    #[error("{0}")]
    Usage(String),
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// What failed while reading file `name`: one of our own errors that
    /// travelled through `io::Error` from an [`crate::IncomingFile`] (its
    /// message already names the file), else [`Error::Processing`].
    pub fn reading(name: &str, error: std::io::Error) -> Self {
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

    /// Whether the same operation may succeed if tried again later, as
    /// opposed to errors that need a person to change something.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Redis { source, .. } => is_transient(source),
            Error::Corrupt { .. } | Error::Processing { .. } | Error::UploadLost { .. } => true,
            _ => false,
        }
    }
}

/// Whether an error is likely to go away by itself: dropped or refused
/// connections, timeouts, a Redis still loading its data set, failovers.
pub fn is_transient(error: &RedisError) -> bool {
    if error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
    {
        return true;
    }
    matches!(
        error.kind(),
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
                | ServerErrorKind::TryAgain
                | ServerErrorKind::MasterDown
                | ServerErrorKind::ClusterDown
        ) | ErrorKind::Io
            // A reply cut in the middle: the connection is out of step.
            | ErrorKind::Parse
            // The cluster's topology changed (a failover, slots moved)
            // beyond what the client followed by itself: a fresh
            // connection learns it. READONLY: a write reached a master
            // demoted to replica.
            | ErrorKind::ClusterConnectionNotFound
            | ErrorKind::Server(
                ServerErrorKind::Moved | ServerErrorKind::Ask | ServerErrorKind::ReadOnly
            )
    )
        // A blocking read the server ended because its node stopped
        // serving the slot (a `CLUSTER FAILOVER` demoted it): looking
        // again reaches the new primary.
        || error.code() == Some("UNBLOCKED")
        // A script reached a key of its slot that a resharding moved
        // already (the slot is migrating, key by key). Our scripts are
        // idempotent, and once the slot has moved the retry goes there.
        || error.to_string().contains("non local key")
}

/// Whether Redis refused a write because it reached `maxmemory`.
pub(crate) fn is_out_of_memory(error: &RedisError) -> bool {
    error.code() == Some("OOM")
}

/// Shorthand used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::Error;

    #[test]
    fn an_error_read_from_a_file_names_the_file_once() {
        let ours = Error::Corrupt {
            name: "big3.log".into(),
            reason: "chunk 0 is missing".into(),
        };
        let read = Error::reading("big3.log", std::io::Error::other(ours));
        assert_eq!(
            read.to_string(),
            r#"file "big3.log": chunk 0 is missing; it was not acknowledged"#
        );
        let other = Error::reading("big3.log", std::io::Error::other("gzip: bad header"));
        assert_eq!(other.to_string(), r#"file "big3.log": gzip: bad header"#);
    }
}
