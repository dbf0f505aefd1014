//! Validation of file and channel names.
//!
//! Both sides check names: the sender so that it never announces a name a
//! receiver would refuse, the receiver because it must not trust whatever
//! another program wrote into Redis. A valid file name is a relative path of
//! `/`-separated components that cannot leave the directory it is joined to.

use crate::error::{Error, Result};

/// Longest file name we accept, in bytes (Linux' `PATH_MAX`).
const MAX_NAME_BYTES: usize = 4096;

/// Checks a key prefix: a channel name without `:`, so that no prefix is
/// the start of another prefix's key names.
pub fn check_prefix(prefix: &str) -> Result<()> {
    check_channel_name(prefix)?;
    if prefix.contains(':') {
        return Err(Error::InvalidChannel {
            name: prefix.to_owned(),
            reason: "a prefix may not contain `:`",
        });
    }
    Ok(())
}

/// Checks that `name` is safe to join to an output directory and to put in
/// an environment variable.
pub fn check_file_name(name: &str) -> Result<()> {
    let refuse = |reason| {
        Err(Error::HostileName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return refuse("it is empty");
    }
    if name.len() > MAX_NAME_BYTES {
        return refuse("it is longer than 4096 bytes");
    }
    if name.chars().any(char::is_control) {
        return refuse("it contains NUL or control characters");
    }
    if name.starts_with('/') || name.starts_with('\\') {
        return refuse("it is an absolute path");
    }
    if name.contains('\\') {
        return refuse("it contains a backslash");
    }
    for component in name.split('/') {
        match component {
            "" => return refuse("it has an empty path component"),
            "." | ".." => return refuse("it contains a `.` or `..` component"),
            _ => {}
        }
    }
    Ok(())
}

/// Checks that a channel (or receiver id) can be embedded in key names and
/// glob patterns without changing their meaning: no hash-tag braces, no glob
/// characters, no whitespace or control characters.
pub fn check_channel_name(name: &str) -> Result<()> {
    let refuse = |reason| {
        Err(Error::InvalidChannel {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return refuse("it is empty");
    }
    if name.len() > 200 {
        return refuse("it is longer than 200 bytes");
    }
    if let Some(bad) = name
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || "{}*?[]\\,".contains(*c))
    {
        return refuse(match bad {
            '{' | '}' => "braces would change the Redis Cluster hash tag",
            ',' => "commas separate receiver lists",
            c if c.is_whitespace() => "it contains whitespace",
            c if c.is_control() => "it contains control characters",
            _ => "glob characters (* ? [ ] \\) would break key patterns",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_relative_names_with_spaces_and_utf8_are_accepted() {
        for name in [
            "a",
            "logs/2026/access log.gz",
            "città/naïve ☃.txt",
            ".hidden",
            "a..b",
        ] {
            check_file_name(name).unwrap();
        }
    }

    #[test]
    fn names_that_could_escape_or_confuse_are_refused() {
        for name in [
            "",
            "../etc/passwd",
            "a/../../b",
            "/etc/passwd",
            "a//b",
            "a/./b",
            "nul\0byte",
            "line\nbreak",
            "esc\x1b[31m",
            "back\\slash",
            "trailing/",
        ] {
            assert!(check_file_name(name).is_err(), "{name:?} was accepted");
        }
    }

    #[test]
    fn channel_names_keep_keys_and_patterns_intact() {
        check_channel_name("logs:").unwrap();
        check_channel_name("web-logs_2026.eu").unwrap();
        for name in ["", "a{b}", "a*", "a b", "a,b", "a\\b"] {
            assert!(check_channel_name(name).is_err(), "{name:?} was accepted");
        }
    }
}
