//! TLS settings that travel in the URL: `rediss://host:port?tls_ca_cert=CA.pem`
//! trusts a private CA instead of the system's, and `tls_cert=` with
//! `tls_key=` present a client certificate (Redis' default `tls-auth-clients
//! yes` asks for one). The command line's `--tls-ca-cert`, `--tls-cert` and
//! `--tls-key` add these parameters; redis-rs gets the URL without them.

use std::path::Path;

use redis::{ClientTlsConfig, ConnectionInfo, IntoConnectionInfo, RedisResult, TlsCertificates};

use crate::error::{Error, Result};

/// The URL parameters this module reads.
const PARAMETERS: [&str; 3] = ["tls_ca_cert", "tls_cert", "tls_key"];

/// `url` without our TLS parameters, and the certificates they name.
///
/// # Errors
///
/// [`Error::Usage`] for a certificate without its key (or the reverse),
/// TLS parameters on a URL that is not `rediss://`, or a file that cannot
/// be read, naming it.
pub(crate) fn split(url: &str) -> Result<(String, Option<TlsCertificates>)> {
    let Some((address, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), None));
    };
    let mut kept = Vec::new();
    let mut files: [Option<&str>; 3] = [None; 3];
    for parameter in query.split('&') {
        let (key, value) = parameter.split_once('=').unwrap_or((parameter, ""));
        match PARAMETERS.iter().position(|p| *p == key) {
            Some(i) => files[i] = Some(value),
            None => kept.push(parameter),
        }
    }
    let clean = if kept.is_empty() {
        address.to_owned()
    } else {
        format!("{address}?{}", kept.join("&"))
    };
    let [ca, cert, key] = files;
    if ca.is_none() && cert.is_none() && key.is_none() {
        return Ok((clean, None));
    }
    if !address.starts_with("rediss://") {
        return Err(Error::Usage(
            "TLS certificates need a rediss:// URL (TLS); this one is not".into(),
        ));
    }
    Ok((clean, Some(certificates(ca, cert, key)?)))
}

/// The PEM files of a CA and of a client certificate and its key, read.
///
/// # Errors
///
/// [`Error::Usage`] for a certificate without its key (or the reverse), or
/// a file that cannot be read, naming it.
pub(crate) fn certificates(
    ca: Option<&str>,
    cert: Option<&str>,
    key: Option<&str>,
) -> Result<TlsCertificates> {
    let client_tls = match (cert, key) {
        (Some(cert), Some(key)) => Some(ClientTlsConfig {
            client_cert: read("--tls-cert", cert)?,
            client_key: read("--tls-key", key)?,
        }),
        (None, None) => None,
        _ => {
            return Err(Error::Usage(
                "a client certificate needs its key: give both --tls-cert and --tls-key".into(),
            ));
        }
    };
    let root_cert = ca.map(|ca| read("--tls-ca-cert", ca)).transpose()?;
    Ok(TlsCertificates {
        client_tls,
        root_cert,
    })
}

/// How to reach `url`, with `certs` when given.
pub(crate) fn connection_info(
    url: &str,
    certs: Option<&TlsCertificates>,
) -> RedisResult<ConnectionInfo> {
    match certs {
        Some(certs) => Ok(redis::Client::build_with_tls(url, certs.clone())?
            .get_connection_info()
            .clone()),
        None => url.into_connection_info(),
    }
}

fn read(option: &str, path: &str) -> Result<Vec<u8>> {
    std::fs::read(Path::new(path))
        .map_err(|e| Error::Usage(format!("cannot read {option} {path}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn our_parameters_leave_the_url_and_others_stay() {
        let (url, certs) = split("rediss://h:1/0").unwrap();
        assert_eq!((url.as_str(), certs.is_none()), ("rediss://h:1/0", true));
        let (url, certs) = split("unix:///r.sock?db=1&pass=x").unwrap();
        assert_eq!(
            (url.as_str(), certs.is_none()),
            ("unix:///r.sock?db=1&pass=x", true)
        );
        let error = split("rediss://h:1?tls_cert=/nonexistent").unwrap_err();
        assert!(error.to_string().contains("needs its key"), "{error}");
        let error = split("redis://h:1?tls_ca_cert=/x").unwrap_err();
        assert!(error.to_string().contains("rediss://"), "{error}");
        let error = split("rediss://h:1?tls_ca_cert=/nonexistent/ca.pem").unwrap_err();
        assert!(error.to_string().contains("/nonexistent/ca.pem"), "{error}");
    }
}
