//! What a failed connection is told as: which of our errors, with a
//! hint of what to check, and URLs with their passwords masked.

use redis::{ErrorKind, RedisError};

use crate::error::Error;

pub(super) fn connect_error(url: &str, source: RedisError) -> Error {
    let auth = source.kind() == ErrorKind::AuthenticationFailed
        || matches!(source.code(), Some("WRONGPASS" | "NOAUTH"));
    // The user logged in, but its ACL lacks a command we need (such as
    // what the cluster client runs to learn the slots): its message names
    // the command, and the password is not to blame.
    if source.code() == Some("NOPERM") {
        return Error::Permission {
            url: url.to_owned(),
            source,
        };
    }
    if source
        .to_string()
        .contains("SELECT is not allowed in cluster mode")
    {
        return Error::InvalidUrl {
            url: url.to_owned(),
            reason: "a Redis Cluster has only database 0; remove the /N after the address".into(),
        };
    }
    if let Some(hint) = tls_hint(url, &source) {
        return Error::Tls {
            url: url.to_owned(),
            hint,
            source,
        };
    }
    if auth {
        Error::Auth {
            url: url.to_owned(),
            source,
        }
    } else {
        Error::Connect {
            url: url.to_owned(),
            source,
        }
    }
}

/// What to check when opening a `rediss://` connection failed in its
/// handshake: rustls names a certificate it refused, or the server's alert
/// (or hang-up) says it refused ours.
fn tls_hint(url: &str, source: &RedisError) -> Option<&'static str> {
    if !url.starts_with("rediss://") || source.is_connection_refusal() {
        return None;
    }
    let said = source.to_string();
    if said.contains("peer certificate") {
        Some(
            "the server's certificate is not trusted: give the CA that signed it with --tls-ca-cert or REDIS_TLS_CA_CERT, and check that the URL's host is a name in it",
        )
    } else if said.contains("alert") || said.contains("reset") || said.contains("closed") {
        Some(
            "the server refused the handshake: it may want a client certificate (--tls-cert and --tls-key, or REDIS_TLS_CERT and REDIS_TLS_KEY) signed by a CA it trusts",
        )
    } else {
        None
    }
}

/// Removes passwords from a URL so it can be printed: the `user:pass@`
/// part and `pass`/`password` query parameters (as `unix://` URLs use).
/// Credentials end at the last `@`, so a password with a raw `@` in it is
/// masked whole.
pub(crate) fn redacted(url: &str) -> String {
    let (address, query) = match url.split_once('?') {
        Some((address, query)) => (address, Some(query)),
        None => (url, None),
    };
    let mut shown = match address.split_once("://") {
        Some((scheme, _)) if scheme.starts_with("unix") => address.to_owned(),
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((credentials, host)) => {
                let user = credentials.split(':').next().unwrap_or("");
                format!("{scheme}://{user}:***@{host}")
            }
            None => address.to_owned(),
        },
        None => address.to_owned(),
    };
    if let Some(query) = query {
        let parameters: Vec<String> = query
            .split('&')
            .map(|parameter| match parameter.split_once('=') {
                Some((key, _)) if key == "pass" || key == "password" => format!("{key}=***"),
                _ => parameter.to_owned(),
            })
            .collect();
        shown = format!("{shown}?{}", parameters.join("&"));
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(redacted("redis://u:secret@h:1/0"), "redis://u:***@h:1/0");
        assert_eq!(redacted("redis://h:1"), "redis://h:1");
        assert_eq!(redacted("redis://u:p@ss:w@rd@h:1"), "redis://u:***@h:1");
        assert_eq!(redacted("rediss://:p@ss@h:1"), "rediss://:***@h:1");
        assert_eq!(redacted("unix:///run/a@b.sock"), "unix:///run/a@b.sock");
        assert_eq!(redacted("unix:///tmp/r.sock"), "unix:///tmp/r.sock");
        assert_eq!(
            redacted("unix:///tmp/r.sock?db=1&pass=secret"),
            "unix:///tmp/r.sock?db=1&pass=***"
        );
    }
}
