//! Tables kept in Redis under versions, so workers need no local files and
//! an import never changes the table under a running job.
//!
//! | key | type | value |
//! |---|---|---|
//! | `<prefix>:geo:version` | string | counter: the last version handed out |
//! | `<prefix>:geo:table:<version>` | string | a table in the form of `binary.rs` |
//! | `<prefix>:geo:current` | string | the version jobs should load |
//!
//! An import writes its table under a fresh version and only then points
//! `current` at it, never backwards. A job loads `current` and keeps what it
//! loaded in memory, so it is undisturbed; the previous version stays for a
//! job that read `current` just before the switch, older ones are deleted.
//! Every key is touched by single-key commands, so this works unchanged on
//! Redis Cluster.

use super::GeoTable;
use super::binary;
use redistribute_transfer::error::{Error, Result};
use redistribute_transfer::redis::Redis;

/// Redis strings stop at 512 MB; tables that large would need chunking,
/// which real tables (the full GeoLite2 City is about 100 MB) do not.
const MAX_BLOB_BYTES: usize = 256 << 20;

/// Points `current` (`KEYS[1]`) at `ARGV[1]` unless it points at a newer
/// version already, and returns the version it pointed at before (0 for
/// none), so of two concurrent imports the later version wins.
const SWITCH: &str = r"
local before = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > before then
    redis.call('SET', KEYS[1], ARGV[1])
end
return before
";

fn version_key(prefix: &str) -> String {
    format!("{prefix}:geo:version")
}

fn current_key(prefix: &str) -> String {
    format!("{prefix}:geo:current")
}

/// What every table key starts with.
fn tables_prefix(prefix: &str) -> String {
    format!("{prefix}:geo:table:")
}

fn table_key(prefix: &str, version: u64) -> String {
    format!("{}{version}", tables_prefix(prefix))
}

/// Stores `table` as a new version and makes it current; returns the
/// version.
///
/// # Errors
///
/// [`Error::Usage`] for a table too large to store; Redis errors.
pub async fn store(redis: &Redis, prefix: &str, table: &GeoTable) -> Result<u64> {
    let blob = table.to_bytes();
    if blob.len() > MAX_BLOB_BYTES {
        return Err(Error::Usage(format!(
            "the location table is {} MiB in binary form; at most {} MiB can be stored in Redis",
            blob.len() >> 20,
            MAX_BLOB_BYTES >> 20
        )));
    }
    // A retried INCR may skip a version; versions only need to grow.
    let version: u64 = redis
        .query(
            "geo import: new version",
            redis::cmd("INCR").arg(version_key(prefix)),
        )
        .await?;
    redis
        .query::<()>(
            "geo import: storing the table",
            redis::cmd("SET").arg(table_key(prefix, version)).arg(&blob),
        )
        .await?;
    let before: u64 = redis
        .query(
            "geo import: switching to the new table",
            redis::cmd("EVAL")
                .arg(SWITCH)
                .arg(1)
                .arg(current_key(prefix))
                .arg(version),
        )
        .await?;
    // `before == version` when a retry repeated the switch: the previous
    // version is unknown then, so the next import cleans up. A newer import
    // that won a race cleans up after this one.
    if before < version {
        delete_older_than(redis, prefix, before).await?;
    }
    Ok(version)
}

/// Deletes every stored version below `keep_from`.
async fn delete_older_than(redis: &Redis, prefix: &str, keep_from: u64) -> Result<()> {
    let tables = tables_prefix(prefix);
    let pattern = format!("{}*", glob_escaped(&tables));
    for key in redis
        .scan("geo import: listing old tables", &pattern)
        .await?
    {
        let old = key
            .strip_prefix(&tables)
            .and_then(|version| version.parse::<u64>().ok())
            .is_some_and(|version| version < keep_from);
        if old {
            // UNLINK frees the memory in the background: tables are large.
            redis
                .query::<()>(
                    "geo import: deleting an old table",
                    redis::cmd("UNLINK").arg(&key),
                )
                .await?;
        }
    }
    Ok(())
}

/// `text` with the characters special in a `SCAN MATCH` pattern escaped.
fn glob_escaped(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// The version jobs should load, or `None` when no table was imported.
///
/// # Errors
///
/// [`Error::Protocol`] when the key holds something else; Redis errors.
pub async fn current_version(redis: &Redis, prefix: &str) -> Result<Option<u64>> {
    let key = current_key(prefix);
    let value: Option<String> = redis
        .query(
            "reading the location table version",
            redis::cmd("GET").arg(&key),
        )
        .await?;
    value
        .map(|value| {
            value.parse().map_err(|_| Error::Protocol {
                key,
                reason: format!("{value:?} is not a version number"),
            })
        })
        .transpose()
}

/// The current table and its version, or `None` when no table was imported.
///
/// # Errors
///
/// [`Error::Protocol`] when the stored table is damaged or missing; Redis
/// errors.
pub async fn load(redis: &Redis, prefix: &str) -> Result<Option<(u64, GeoTable)>> {
    // The version read may be deleted before we get its table, if two
    // imports finish in between; `current` then names one that exists.
    for _ in 0..3 {
        let Some(version) = current_version(redis, prefix).await? else {
            return Ok(None);
        };
        let key = table_key(prefix, version);
        let blob: Option<Vec<u8>> = redis
            .query("loading the location table", redis::cmd("GET").arg(&key))
            .await?;
        if let Some(blob) = blob {
            let table = binary::decode(&blob).map_err(|reason| Error::Protocol { key, reason })?;
            return Ok(Some((version, table)));
        }
    }
    Err(Error::Protocol {
        key: current_key(prefix),
        reason: "it names a version whose table is missing".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_patterns_match_only_the_prefix_given() {
        assert_eq!(glob_escaped("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
        assert_eq!(glob_escaped("logs:geo:table:"), "logs:geo:table:");
    }
}
