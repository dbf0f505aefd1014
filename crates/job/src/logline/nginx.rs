//! A custom layout in nginx's `log_format` syntax, for logs no named
//! format fits: `--log-format 'nginx:$remote_addr - $remote_user
//! [$time_local] "$request" ...'`. A line is matched against the layout's
//! text piece by piece; a variable takes everything up to the text that
//! follows it (nginx escapes a `"` inside a variable as `\x22`, so a quoted
//! variable ends at its closing quote). The address comes from
//! `$remote_addr` (or `$realip_remote_addr`, `$binary_remote_addr` is not
//! text), the time from `$time_local`, `$time_iso8601` or `$msec`, and the
//! forwarded list from `$http_x_forwarded_for`.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use super::{Fields, parse_address, time};

/// A compiled layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NginxLayout {
    /// As given, after `nginx:`, for messages.
    text: String,
    parts: Vec<Part>,
    /// Index of the last part worth reading; matching stops after it.
    last_needed: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(Vec<u8>),
    Variable(Variable),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variable {
    Address,
    Time,
    Forwarded,
    Other,
}

impl FromStr for NginxLayout {
    type Err = String;

    /// Compiles the layout after `nginx:`.
    fn from_str(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let Some(dollar) = rest.find('$') else {
                parts.push(Part::Text(rest.as_bytes().to_vec()));
                break;
            };
            if dollar > 0 {
                parts.push(Part::Text(rest.as_bytes()[..dollar].to_vec()));
            }
            let (name, next) = variable_name(&rest[dollar + 1..], text)?;
            if name.is_empty() {
                return Err(format!(
                    "a $ without a variable name in the layout {text:?}"
                ));
            }
            if let Some(Part::Variable(_)) = parts.last() {
                return Err(format!(
                    "${name} follows another variable with no text between them, so where one \
                     ends cannot be told: {text:?}"
                ));
            }
            parts.push(Part::Variable(Variable::named(name)));
            rest = next;
        }
        let has = |wanted| parts.contains(&Part::Variable(wanted));
        if !has(Variable::Address) || !has(Variable::Time) {
            return Err(format!(
                "the layout {text:?} needs $remote_addr and one of $time_local, $time_iso8601 \
                 or $msec"
            ));
        }
        let last_needed = parts
            .iter()
            .rposition(|part| {
                matches!(
                    part,
                    Part::Variable(Variable::Address | Variable::Time | Variable::Forwarded)
                )
            })
            .expect("checked above");
        Ok(NginxLayout {
            text: text.to_owned(),
            parts,
            last_needed,
        })
    }
}

/// The name of the variable `after` a `$` starts with (`name` or
/// `{name}`), and the layout after it.
fn variable_name<'a>(after: &'a str, layout: &str) -> Result<(&'a str, &'a str), String> {
    match after.strip_prefix('{') {
        Some(braced) => {
            let close = braced
                .find('}')
                .ok_or_else(|| format!("${{ without }} in the layout {layout:?}"))?;
            Ok((&braced[..close], &braced[close + 1..]))
        }
        None => {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            Ok((&after[..end], &after[end..]))
        }
    }
}

impl Variable {
    /// What the variable `name` holds, as far as counting visits cares.
    fn named(name: &str) -> Self {
        match name {
            "remote_addr" | "realip_remote_addr" => Variable::Address,
            "time_local" | "time_iso8601" | "msec" => Variable::Time,
            // Not `$proxy_add_x_forwarded_for`: it ends with the
            // address that connected, which would pass as the client.
            "http_x_forwarded_for" => Variable::Forwarded,
            _ => Variable::Other,
        }
    }
}

impl fmt::Display for NginxLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "nginx:{}", self.text)
    }
}

impl NginxLayout {
    /// Address, day and forwarded list of a line that fits the layout.
    pub(super) fn extract<'a>(&self, line: &'a [u8]) -> Option<Fields<'a>> {
        let (mut address, mut day, mut forwarded) = (None, None, None);
        let mut at = 0;
        for (index, part) in self.parts.iter().enumerate().take(self.last_needed + 1) {
            match part {
                Part::Text(text) => {
                    if !line[at..].starts_with(text) {
                        return None;
                    }
                    at += text.len();
                }
                Part::Variable(variable) => {
                    let end = match self.parts.get(index + 1) {
                        Some(Part::Text(next)) => at + memchr::memmem::find(&line[at..], next)?,
                        _ => line.len(),
                    };
                    let value = &line[at..end];
                    match variable {
                        Variable::Address => address = Some(parse_address(value)?),
                        Variable::Time => day = Some(time::day_of(value)?),
                        Variable::Forwarded => forwarded = Some(Cow::Borrowed(value)),
                        Variable::Other => {}
                    }
                    at = end;
                }
            }
        }
        Some((address?, day?, forwarded))
    }
}
