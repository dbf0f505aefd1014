//! JSON lines: one object a line, as nginx (`escape=json`), Caddy,
//! Traefik, Filebeat or Vector (Elastic Common Schema) and most application
//! loggers write them. The address, time and forwarded list are fields
//! found by the usual names, or by the names `--ip-field` and
//! `--time-field` give; a dotted name (`client.ip`) is a field inside an
//! object, unless the object has a key with the dot in it. A time may be
//! any form `time.rs` reads, as a string or as a number of seconds (or
//! milliseconds) since the epoch. Only the wanted fields are decoded; the
//! rest of an object is skipped without allocating.

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
    "client.ip",
    "source.ip",
    "client.address",
    "source.address",
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

/// Which fields of a file's lines hold the address, the time and the
/// forwarded list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonFields {
    ip: Field,
    time: Field,
    forwarded: Option<Field>,
}

/// A field by its name as given, and the keys leading to it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Field {
    name: String,
    path: Vec<String>,
}

/// Every field of `object` by its dotted name (`client.ip`), nested
/// objects a few levels deep included, with the keys leading to it; a
/// key with a dot in it is a name of its own.
fn field_names(object: &serde_json::Map<String, serde_json::Value>) -> Vec<Field> {
    fn walk(
        object: &serde_json::Map<String, serde_json::Value>,
        prefix: &Field,
        out: &mut Vec<Field>,
    ) {
        for (key, value) in object {
            let mut field = prefix.clone();
            if !field.name.is_empty() {
                field.name.push('.');
            }
            field.name.push_str(key);
            field.path.push(key.clone());
            if let (serde_json::Value::Object(inner), true) = (value, field.path.len() < 4) {
                walk(inner, &field, out);
            }
            out.push(field);
        }
    }
    let mut out = Vec::new();
    let top = Field {
        name: String::new(),
        path: Vec::new(),
    };
    walk(object, &top, &mut out);
    out
}

impl JsonFields {
    /// The names the first object among `sample` uses (or the ones
    /// `options` gives), so later lines compare each key with one name.
    pub(super) fn resolve(sample: &[&[u8]], options: &LineOptions) -> Result<Self, String> {
        let fields = sample
            .iter()
            .find_map(|line| {
                serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(line).ok()
            })
            .map(|object| field_names(&object))
            .ok_or("its lines are not JSON objects")?;
        let named = |name: &str| fields.iter().find(|field| field.name == name).cloned();
        let pick = |given: &Option<String>, usual: &[&str], what: &str, option: &str| {
            let candidates = match given {
                Some(name) => vec![name.as_str()],
                None => usual.to_vec(),
            };
            candidates.into_iter().find_map(named).ok_or_else(|| {
                let top: Vec<&str> = fields
                    .iter()
                    .filter(|field| field.path.len() == 1)
                    .map(|field| field.name.as_str())
                    .collect();
                format!(
                    "its JSON lines have no {what} field (looked for {}; the first has {}); \
                     pass {option}",
                    given.as_deref().map_or(usual.join(", "), str::to_owned),
                    top.join(", ")
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
            forwarded: FORWARDED_FIELDS.iter().find_map(|name| named(name)),
        })
    }

    /// `remote_addr, time_iso8601`: the fields in use.
    pub(super) fn describe(&self) -> String {
        format!("{}, {}", self.ip.name, self.time.name)
    }

    /// Address, day and (when `forwarded` is wanted) forwarded list of a line.
    pub(super) fn extract<'a>(&self, line: &'a [u8], forwarded: bool) -> Option<Fields<'a>> {
        let mut found = Found::default();
        let mut deserializer = serde_json::Deserializer::from_slice(line);
        LineSeed {
            fields: self,
            forwarded,
            depth: 0,
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

/// Reads one object, keeping the wanted fields: the line's, or at `depth`
/// the one inside it a wanted field's path leads into.
struct LineSeed<'f, 'x, 'a> {
    fields: &'f JsonFields,
    forwarded: bool,
    depth: usize,
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
        let (fields, depth) = (self.fields, self.depth);
        let key_seed = KeySeed {
            fields,
            forwarded: self.forwarded,
            depth,
        };
        while let Some(key) = map.next_key_seed(key_seed)? {
            let value = match key {
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
                Key::Inside => {
                    map.next_value_seed(LineSeed {
                        fields,
                        forwarded: self.forwarded,
                        depth: depth + 1,
                        found: &mut *self.found,
                    })?;
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

/// Which wanted field a key names, or leads into.
enum Key {
    Ip,
    Time,
    Forwarded,
    /// An object some wanted field is inside of.
    Inside,
    Other,
}

#[derive(Clone, Copy)]
struct KeySeed<'f> {
    fields: &'f JsonFields,
    forwarded: bool,
    depth: usize,
}

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
        let KeySeed {
            fields,
            forwarded,
            depth,
        } = self;
        let forwarded = fields.forwarded.as_ref().filter(|_| forwarded);
        let wanted = [(&fields.ip, Key::Ip), (&fields.time, Key::Time)]
            .into_iter()
            .chain(forwarded.map(|field| (field, Key::Forwarded)));
        let mut inside = false;
        for (field, slot) in wanted {
            if field.path.get(depth).map(String::as_str) != Some(key) {
                continue;
            }
            if field.path.len() == depth + 1 {
                return Ok(slot);
            }
            inside = true;
        }
        Ok(if inside { Key::Inside } else { Key::Other })
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
