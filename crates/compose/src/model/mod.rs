//! Phase 11b: the typed model of a compose project, as compose-go's `types` package has it.
//!
//! Deserialised from the canonical tree by [`crate::de::from_node`] (long syntax only; see the
//! crate README, "Contracts"). `Serialize` reproduces `docker compose config`: fields in
//! compose-go's struct order, its `omitempty` rules (Go zero values are left out, `Option`s are
//! Go pointers and left out when `None`), Go maps sorted by key (`BTreeMap`), `x-*` extensions
//! inline after the fields, durations and byte sizes as compose-go prints them.
//!
//! Where compose-go's canonical form still allows two shapes (`command` string or list,
//! `ulimits` integer or `{soft, hard}`, `external` boolean or legacy mapping, `extra_hosts`
//! list or mapping, string-or-list keys) the type accepts both through `deserialize_any`, which
//! keeps the YAML path for errors.

use std::collections::BTreeMap;
use std::fmt;

use indexmap::IndexMap;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Serialize, Serializer};

use crate::error::Error;
use crate::units::{ByteSize, Duration};
use crate::yaml::Node;

/// Declares a model struct: `Deserialize` (every field optional, unknown keys refused by
/// `crate::de`), and a `Serialize` that follows Go's `omitempty`. A field marked `[keep]` is
/// always printed (no `omitempty` in compose-go), one marked `[skip]` never (accepted, not
/// printed). `[extensions]` after the name adds `pub extensions: Extensions` for `x-*` keys.
macro_rules! model {
    (
        $(#[$sattr:meta])*
        pub struct $name:ident $([$ext:ident])? {
            $(
                $(#[$fattr:meta])*
                $([$mark:ident])?
                pub $fname:ident : $fty:ty
            ),* $(,)?
        }
    ) => {
        $(#[$sattr])*
        #[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
        #[serde(default)]
        pub struct $name {
            $(
                $(#[$fattr])*
                pub $fname: $fty,
            )*
            $(
                /// Extension keys (`x-*`), printed inline after the fields.
                #[serde(rename = "__extensions", default)]
                pub $ext: $crate::model::Extensions,
            )?
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeMap as _;
                let mut m = s.serialize_map(None)?;
                $(
                    if $crate::model::include_field!($($mark)?; &self.$fname) {
                        m.serialize_entry(stringify!($fname).trim_start_matches("r#"), &self.$fname)?;
                    }
                )*
                $(
                    for (k, v) in &self.$ext {
                        m.serialize_entry(k, v)?;
                    }
                )?
                m.end()
            }
        }

        impl $crate::model::OmitEmpty for $name {
            fn is_omitted(&self) -> bool {
                true $( && $crate::model::OmitEmpty::is_omitted(&self.$fname) )*
                    $( && self.$ext.is_empty() )?
            }
        }
    };
}

macro_rules! include_field {
    (; $v:expr) => {
        !$crate::model::OmitEmpty::is_omitted($v)
    };
    (keep; $v:expr) => {
        true
    };
    (skip; $v:expr) => {
        false
    };
}

pub(crate) use include_field;

mod build;
mod deploy;
mod network;
mod project;
mod service;
mod volume;

pub use build::*;
pub use deploy::*;
pub use network::*;
pub use project::*;
pub use service::*;
pub use volume::*;

/// Extension keys (`x-*`) of an object, in document order.
pub type Extensions = IndexMap<String, serde_json::Value>;

/// Deserialises a whole project from the canonical tree.
pub fn project_from_node(node: &Node) -> Result<Project, Error> {
    crate::de::from_node(node)
}

/// Go's `omitempty`: whether a value is its type's zero value and is left out when printed.
pub trait OmitEmpty {
    /// True when `docker compose config` would leave the key out.
    fn is_omitted(&self) -> bool;
}

macro_rules! omit_zero {
    ($($t:ty),*) => {$(
        impl OmitEmpty for $t {
            fn is_omitted(&self) -> bool {
                *self == <$t>::default()
            }
        }
    )*};
}
omit_zero!(bool, i32, i64, u16, u32, u64, f32, f64, ByteSize, Duration);

impl OmitEmpty for String {
    fn is_omitted(&self) -> bool {
        self.is_empty()
    }
}
impl<T> OmitEmpty for Option<T> {
    fn is_omitted(&self) -> bool {
        self.is_none()
    }
}
impl<T> OmitEmpty for Vec<T> {
    fn is_omitted(&self) -> bool {
        self.is_empty()
    }
}
impl<K, V> OmitEmpty for BTreeMap<K, V> {
    fn is_omitted(&self) -> bool {
        self.is_empty()
    }
}
impl<K, V> OmitEmpty for IndexMap<K, V> {
    fn is_omitted(&self) -> bool {
        self.is_empty()
    }
}

/// A string → string mapping (compose-go `Mapping`, `Labels`, `Options`): printed sorted; a
/// null value reads as an empty string.
pub type Mapping = BTreeMap<String, String>;

/// compose-go `MappingWithEquals` (`environment`, build `args`): a null value means "take it
/// from the environment" and is kept as `None`.
pub type MappingWithEquals = BTreeMap<String, Option<String>>;

/// `deserialize_with` for [`Mapping`] fields: null values become `""` as in compose-go.
pub fn nullable_mapping<'de, D: Deserializer<'de>>(d: D) -> Result<Mapping, D::Error> {
    let m: BTreeMap<String, Option<String>> = BTreeMap::deserialize(d)?;
    Ok(m.into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect())
}

/// `deserialize_with` for compose-go `StringList` fields: one string or a list of strings.
pub fn string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string or a list of strings")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Vec<String>, E> {
            Ok(vec![s.to_string()])
        }
        fn visit_i64<E: de::Error>(self, i: i64) -> Result<Vec<String>, E> {
            Ok(vec![i.to_string()])
        }
        fn visit_f64<E: de::Error>(self, f: f64) -> Result<Vec<String>, E> {
            Ok(vec![crate::yaml::format_float(f)])
        }
        fn visit_unit<E: de::Error>(self) -> Result<Vec<String>, E> {
            Ok(Vec::new())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
            let mut out = Vec::new();
            while let Some(s) = seq.next_element::<String>()? {
                out.push(s);
            }
            Ok(out)
        }
    }
    d.deserialize_any(V)
}

/// A command (`command`, `entrypoint`, hook `command`): compose-go `ShellCommand`.
#[derive(Clone, Debug, PartialEq)]
pub enum ShellCommand {
    /// A string, split like a shell would (`sh -c` is not implied).
    Shell(String),
    /// A list of arguments, used as they are.
    Exec(Vec<String>),
}

impl ShellCommand {
    /// The arguments: a list as written, or the string split into words as compose-go does
    /// (`go-shellwords`: blanks separate words, quotes and backslashes escape).
    pub fn args(&self) -> Vec<String> {
        match self {
            ShellCommand::Exec(v) => v.clone(),
            ShellCommand::Shell(s) => split_words(s),
        }
    }
}

/// Splits a command line into words: blanks separate, `'…'` is literal, `"…"` allows `\"`,
/// `\\`, `\$` and `` \` ``, a backslash outside quotes escapes the next character.
pub fn split_words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' | '\r' => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '\'' => {
                in_word = true;
                for n in chars.by_ref() {
                    if n == '\'' {
                        break;
                    }
                    cur.push(n);
                }
            }
            '"' => {
                in_word = true;
                while let Some(n) = chars.next() {
                    match n {
                        '"' => break,
                        '\\' => match chars.peek() {
                            Some(&e @ ('"' | '\\' | '$' | '`')) => {
                                cur.push(e);
                                chars.next();
                            }
                            _ => cur.push('\\'),
                        },
                        _ => cur.push(n),
                    }
                }
            }
            _ => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

impl OmitEmpty for ShellCommand {
    fn is_omitted(&self) -> bool {
        match self {
            ShellCommand::Exec(v) => v.is_empty(),
            ShellCommand::Shell(s) => s.trim().is_empty(),
        }
    }
}

impl Serialize for ShellCommand {
    /// As `docker compose config` prints it: always a list.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.args().serialize(s)
    }
}

impl<'de> Deserialize<'de> for ShellCommand {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ShellCommand, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ShellCommand;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ShellCommand, E> {
                Ok(ShellCommand::Shell(s.to_string()))
            }
            fn visit_i64<E: de::Error>(self, i: i64) -> Result<ShellCommand, E> {
                Ok(ShellCommand::Shell(i.to_string()))
            }
            fn visit_f64<E: de::Error>(self, f: f64) -> Result<ShellCommand, E> {
                Ok(ShellCommand::Shell(crate::yaml::format_float(f)))
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<ShellCommand, E> {
                Ok(ShellCommand::Shell(b.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ShellCommand, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(ShellCommand::Exec(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// `external:` of a network, volume, secret or config (compose-go `External`): a boolean, or
/// the legacy mapping `{name: …}` which means `true`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct External(pub bool);

impl OmitEmpty for External {
    fn is_omitted(&self) -> bool {
        !self.0
    }
}

impl Serialize for External {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bool(self.0)
    }
}

impl<'de> Deserialize<'de> for External {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<External, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = External;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a boolean")
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<External, E> {
                Ok(External(b))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<External, E> {
                match s.to_ascii_lowercase().as_str() {
                    "true" => Ok(External(true)),
                    "false" => Ok(External(false)),
                    _ => Err(E::custom(format!(
                        "invalid boolean {s:?}\nhint: use true or false"
                    ))),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<External, A::Error> {
                while map.next_entry::<String, de::IgnoredAny>()?.is_some() {}
                Ok(External(true))
            }
        }
        d.deserialize_any(V)
    }
}

/// A boolean whose default is `true` (compose-go `OptOut`): printed only when `false`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptOut(pub bool);

impl Default for OptOut {
    fn default() -> OptOut {
        OptOut(true)
    }
}

impl OmitEmpty for OptOut {
    fn is_omitted(&self) -> bool {
        self.0
    }
}

impl Serialize for OptOut {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bool(self.0)
    }
}

impl<'de> Deserialize<'de> for OptOut {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<OptOut, D::Error> {
        bool::deserialize(d).map(OptOut)
    }
}

/// A ulimit (compose-go `UlimitsConfig`): one value for soft and hard, or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ulimit {
    /// `nproc: 65535`.
    Single(i64),
    /// `nofile: {soft: 20000, hard: 40000}`.
    Pair {
        /// The soft limit.
        soft: i64,
        /// The hard limit.
        hard: i64,
    },
}

impl Serialize for Ulimit {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            Ulimit::Single(v) if v != 0 => s.serialize_i64(v),
            Ulimit::Single(_) => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("soft", &0)?;
                m.serialize_entry("hard", &0)?;
                m.end()
            }
            Ulimit::Pair { soft, hard } => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("soft", &soft)?;
                m.serialize_entry("hard", &hard)?;
                m.end()
            }
        }
    }
}

model! {
    /// The mapping form of a ulimit, for deserialisation.
    pub struct UlimitPair {
        pub soft: i64,
        pub hard: i64,
    }
}

impl<'de> Deserialize<'de> for Ulimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Ulimit, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ulimit;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or a mapping with soft and hard")
            }
            fn visit_i64<E: de::Error>(self, i: i64) -> Result<Ulimit, E> {
                Ok(Ulimit::Single(i))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Ulimit, E> {
                s.trim()
                    .parse()
                    .map(Ulimit::Single)
                    .map_err(|_| E::custom(format!("must be an integer, found a string {s:?}")))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Ulimit, A::Error> {
                let p = UlimitPair::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Ulimit::Pair {
                    soft: p.soft,
                    hard: p.hard,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// `extra_hosts` (compose-go `HostsList`): host → addresses, in document order. Read from a
/// list of `host=ip`/`host:ip` or a mapping host → address(es); printed as a sorted list of
/// `host=ip`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HostsList(pub IndexMap<String, Vec<String>>);

impl OmitEmpty for HostsList {
    fn is_omitted(&self) -> bool {
        self.0.is_empty()
    }
}

impl HostsList {
    /// `host<sep>ip` entries, sorted, as compose-go's `AsList` + sort.
    pub fn as_list(&self, sep: &str) -> Vec<String> {
        let mut l: Vec<String> = self
            .0
            .iter()
            .flat_map(|(h, ips)| ips.iter().map(move |ip| format!("{h}{sep}{ip}")))
            .collect();
        l.sort();
        l
    }

    fn insert(&mut self, host: &str, ips: Vec<String>) -> Result<(), String> {
        if host.is_empty() || host.contains([':', '=']) {
            return Err(format!("bad host name {host:?}"));
        }
        let ips = ips
            .into_iter()
            .map(
                |ip| match ip.strip_prefix('[').and_then(|i| i.strip_suffix(']')) {
                    Some(inner) if !inner.is_empty() => inner.to_string(),
                    _ => ip,
                },
            )
            .collect::<Vec<_>>();
        self.0.entry(host.to_string()).or_default().extend(ips);
        Ok(())
    }
}

impl Serialize for HostsList {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let list = self.as_list("=");
        let mut seq = s.serialize_seq(Some(list.len()))?;
        for e in &list {
            seq.serialize_element(e)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for HostsList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<HostsList, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = HostsList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of host=ip or a mapping")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<HostsList, A::Error> {
                let mut h = HostsList::default();
                while let Some(entry) = seq.next_element::<String>()? {
                    let Some((host, ip)) = entry.split_once('=').or_else(|| entry.split_once(':'))
                    else {
                        return Err(de::Error::custom(format!(
                            "invalid additional host, missing IP: {entry}\nhint: write host=ip"
                        )));
                    };
                    h.insert(host, ip.split(',').map(str::to_string).collect())
                        .map_err(de::Error::custom)?;
                }
                Ok(h)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<HostsList, A::Error> {
                let mut h = HostsList::default();
                while let Some((host, ips)) = map.next_entry::<String, HostAddresses>()? {
                    h.insert(&host, ips.0).map_err(de::Error::custom)?;
                }
                Ok(h)
            }
        }
        d.deserialize_any(V)
    }
}

/// The value of one `extra_hosts` mapping entry: an address, a list of them, or null (`""`).
struct HostAddresses(Vec<String>);

impl<'de> Deserialize<'de> for HostAddresses {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<HostAddresses, D::Error> {
        string_or_list(d).map(|v| HostAddresses(if v.is_empty() { vec![String::new()] } else { v }))
    }
}
