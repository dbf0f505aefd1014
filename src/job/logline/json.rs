//! JSON lines: one object a line, as nginx (`escape=json`), Caddy,
//! Traefik and most application loggers write them. The address, time and
//! forwarded list are top-level fields found by the usual names, or by the
//! names `--ip-field` and `--time-field` give; a time may be any form
//! `time.rs` reads, as a string or as a number of seconds (or milliseconds)
//! since the epoch. Only the wanted fields are decoded; the rest of an
//! object is skipped without allocating.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::{Fields, LineOptions, parse_address, time};

/// Address fields, the most specific first.
const IP_FIELDS: &[&str] = &[
    "remote_addr",
    "client_ip",
    "clientip",
    "client_addr",
    "remote_ip",
    "ClientAddr",
    "ip",
    "src_ip",
    "source_ip",
];
/// Time fields, the most specific first.
const TIME_FIELDS: &[&str] = &[
    "time_local",
    "time_iso8601",
    "timestamp",
    "@timestamp",
    "time",
    "ts",
    "StartUTC",
    "datetime",
    "date",
    "msec",
];
/// Forwarded-for fields.
const FORWARDED_FIELDS: &[&str] = &[
    "http_x_forwarded_for",
    "x_forwarded_for",
    "forwarded_for",
    "xff",
    "request_X-Forwarded-For",
];

/// Which top-level fields of a file's lines hold the address, the time
/// and the forwarded list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonFields {
    ip: String,
    time: String,
    forwarded: Option<String>,
}

impl JsonFields {
    /// The names the first object among `sample` uses (or the ones
    /// `options` gives), so later lines compare each key with one name.
    pub(super) fn resolve(sample: &[&[u8]], options: &LineOptions) -> Result<Self, String> {
        let keys: Vec<String> = sample
            .iter()
            .find_map(|line| {
                serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(line).ok()
            })
            .map(|object| object.keys().cloned().collect())
            .ok_or("its lines are not JSON objects")?;
        let pick = |given: &Option<String>, usual: &[&str], what: &str, option: &str| {
            let candidates = match given {
                Some(name) => vec![name.as_str()],
                None => usual.to_vec(),
            };
            candidates
                .into_iter()
                .find(|name| keys.iter().any(|key| key == name))
                .map(str::to_owned)
                .ok_or_else(|| {
                    format!(
                        "its JSON lines have no {what} field (looked for {}; the first has {}); \
                         pass {option}",
                        given.as_deref().map_or(usual.join(", "), str::to_owned),
                        keys.join(", ")
                    )
                })
        };
        Ok(JsonFields {
            ip: pick(&options.ip_field, IP_FIELDS, "address", "--ip-field NAME")?,
            time: pick(
                &options.time_field,
                TIME_FIELDS,
                "time",
                "--time-field NAME",
            )?,
            forwarded: FORWARDED_FIELDS
                .iter()
                .find(|name| keys.iter().any(|key| key == *name))
                .map(|name| (*name).to_owned()),
        })
    }

    /// `remote_addr, time_iso8601`: the fields in use.
    pub(super) fn describe(&self) -> String {
        format!("{}, {}", self.ip, self.time)
    }

    /// Address, day and (when `forwarded` is wanted) forwarded list of a line.
    pub(super) fn extract<'a>(&self, line: &'a [u8], forwarded: bool) -> Option<Fields<'a>> {
        let mut found = Found::default();
        let mut deserializer = serde_json::Deserializer::from_slice(line);
        LineSeed {
            fields: self,
            forwarded,
            found: &mut found,
        }
        .deserialize(&mut deserializer)
        .ok()?;
        deserializer.end().ok()?;
        let address = parse_address(found.ip?.as_bytes())?;
        let day = match found.time? {
            Scalar::Text(text) => time::day_of(text.as_bytes())?,
            Scalar::Number(seconds) => time::epoch_seconds_day(epoch_seconds(seconds))?,
        };
        let list = found.forwarded.map(|text| match text {
            Cow::Borrowed(text) => Cow::Borrowed(text.as_bytes()),
            Cow::Owned(text) => Cow::Owned(text.into_bytes()),
        });
        Some((address, day, list))
    }
}

/// Whole seconds of a number that may count seconds, milliseconds,
/// microseconds or nanoseconds since the epoch (told apart by size, as
/// `time.rs` does for digits).
fn epoch_seconds(number: f64) -> i64 {
    let seconds = match number.abs() {
        n if n < 1e11 => number,
        n if n < 1e14 => number / 1e3,
        n if n < 1e17 => number / 1e6,
        _ => number / 1e9,
    };
    seconds.floor() as i64
}

/// What a line gave so far.
#[derive(Default)]
struct Found<'a> {
    ip: Option<Cow<'a, str>>,
    time: Option<Scalar<'a>>,
    forwarded: Option<Cow<'a, str>>,
}

enum Scalar<'a> {
    Text(Cow<'a, str>),
    Number(f64),
}

/// Reads one object, keeping the wanted fields.
struct LineSeed<'f, 'x, 'a> {
    fields: &'f JsonFields,
    forwarded: bool,
    found: &'x mut Found<'a>,
}

impl<'de> DeserializeSeed<'de> for LineSeed<'_, '_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for LineSeed<'_, '_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
        let fields = self.fields;
        while let Some(key) = map.next_key_seed(KeySeed(fields, self.forwarded))? {
            let value = match key {
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
                _ => map.next_value_seed(ScalarSeed)?,
            };
            match (key, value) {
                (Key::Ip, Scalar::Text(text)) => self.found.ip = Some(text),
                (Key::Time, time) => self.found.time = Some(time),
                (Key::Forwarded, Scalar::Text(text)) => self.found.forwarded = Some(text),
                _ => {}
            }
        }
        Ok(())
    }
}

/// Which wanted field a key names.
enum Key {
    Ip,
    Time,
    Forwarded,
    Other,
}

struct KeySeed<'f>(&'f JsonFields, bool);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Key;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Key, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for KeySeed<'_> {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
        let KeySeed(fields, forwarded) = self;
        Ok(if key == fields.ip {
            Key::Ip
        } else if key == fields.time {
            Key::Time
        } else if forwarded && fields.forwarded.as_deref() == Some(key) {
            Key::Forwarded
        } else {
            Key::Other
        })
    }
}

/// A string (borrowed from the line when it has no escapes) or a number;
/// anything else is skipped as text nobody can parse.
struct ScalarSeed;

impl<'de> DeserializeSeed<'de> for ScalarSeed {
    type Value = Scalar<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Scalar<'de>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ScalarSeed {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or a number")
    }

    fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Text(Cow::Borrowed(text)))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Text(Cow::Owned(text.to_owned())))
    }

    fn visit_u64<E: de::Error>(self, number: u64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Number(number as f64))
    }

    fn visit_i64<E: de::Error>(self, number: i64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Number(number as f64))
    }

    fn visit_f64<E: de::Error>(self, number: f64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Number(number))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Text(Cow::Borrowed("")))
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Scalar<'de>, M::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Text(Cow::Borrowed("")))
    }

    fn visit_seq<S: de::SeqAccess<'de>>(self, mut seq: S) -> Result<Scalar<'de>, S::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Text(Cow::Borrowed("")))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Text(Cow::Borrowed("")))
    }
}
