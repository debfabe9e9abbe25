//! Phase 11a: berth's own serde `Deserializer` over the located YAML tree.
//!
//! [`from_node`] turns a [`Node`] into any `DeserializeOwned` type (the `model`), tracking the
//! YAML path while it descends, so that every error names the file, line and column of the
//! offending node and its path (`services.web.ports[0].target`).
//!
//! - Structs know their fields: a key that is not one of them is [`ErrorKind::UnknownKey`]
//!   (`additional property "foo" is not allowed`), located at the key, with a "did you mean"
//!   hint when a known key is close. Keys starting with `x-` are extensions: they are collected
//!   into the struct's field named `__extensions` when it has one ([`EXTENSIONS`]), otherwise
//!   they are unknown too.
//! - Scalars are converted leniently, as compose-go does after interpolation: `"3"` where an
//!   integer is expected, `"true"`/`"false"` where a boolean is, any number or boolean where a
//!   string is. Anything else is [`ErrorKind::InvalidValue`]: `must be a string, found a mapping`.
//! - `null` where a struct is expected is an empty struct (Go's zero value), where an `Option`
//!   is expected `None`.
//! - A `Deserialize` impl may put a hint on a second line of its custom message
//!   (`"...\nhint: ..."`); it becomes [`Error::hint`].

use std::fmt;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};

use crate::error::{Error, ErrorKind};
use crate::yaml::{Key, Map, Node, Value, YamlPath};

/// The serde name of the field that receives a struct's `x-*` keys.
pub const EXTENSIONS: &str = "__extensions";

/// Deserialises `node` into `T`, reporting errors with the offending node's location and path.
pub fn from_node<T: DeserializeOwned>(node: &Node) -> Result<T, Error> {
    from_node_at(node, YamlPath::root())
}

/// As [`from_node`], for a node found at `path` in its document (errors carry the full path).
pub fn from_node_at<T: DeserializeOwned>(node: &Node, path: YamlPath) -> Result<T, Error> {
    T::deserialize(NodeDe { node, path }).map_err(|e| *e.error)
}

/// The error type of the deserializer: an [`Error`], and whether it was already located.
#[derive(Debug)]
pub struct DeError {
    error: Box<Error>,
    located: bool,
}

impl DeError {
    fn new(error: Error) -> DeError {
        DeError {
            error: Box::new(error),
            located: false,
        }
    }
    fn located(error: Error) -> DeError {
        DeError {
            error: Box::new(error),
            located: true,
        }
    }
    /// The error inside.
    pub fn into_error(self) -> Error {
        *self.error
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        let text = msg.to_string();
        let (message, hint) = match text.split_once("\nhint: ") {
            Some((m, h)) => (m.to_string(), Some(h.to_string())),
            None => (text, None),
        };
        let mut e = Error::new(ErrorKind::InvalidValue, message);
        e.hint = hint;
        DeError::new(e)
    }
    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DeError::new(Error::new(
            ErrorKind::InvalidValue,
            format!("must be {exp}, found {unexp}"),
        ))
    }
    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DeError::new(Error::new(
            ErrorKind::InvalidValue,
            format!("invalid value {unexp}, expected {exp}"),
        ))
    }
    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        DeError::new(
            Error::new(
                ErrorKind::InvalidValue,
                format!("invalid value {variant:?}"),
            )
            .hint(format!("use one of: {}", expected.join(", "))),
        )
    }
    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let mut e = Error::new(
            ErrorKind::UnknownKey,
            format!("additional property {field:?} is not allowed"),
        );
        e.hint = closest(field, expected).map(|k| format!("did you mean {k:?}?"));
        DeError::new(e)
    }
    fn missing_field(field: &'static str) -> Self {
        DeError::new(Error::new(
            ErrorKind::InvalidValue,
            format!("missing property {field:?}"),
        ))
    }
}

/// The known key closest to `key` when it is close enough to be a typo.
fn closest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    let limit = (key.chars().count() / 3).clamp(1, 3);
    known
        .iter()
        .filter(|k| **k != EXTENSIONS)
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Edit distance counting a swap of two neighbours as one edit (optimal string alignment).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    if let Some(first) = d.first_mut() {
        for (j, cell) in first.iter_mut().enumerate() {
            *cell = j;
        }
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// The deserializer for one node at one path.
struct NodeDe<'a> {
    node: &'a Node,
    path: YamlPath,
}

type R<T> = Result<T, DeError>;

impl NodeDe<'_> {
    /// Attaches this node's location and path to an error that has none yet.
    fn locate<T>(&self, r: R<T>) -> R<T> {
        r.map_err(|mut e| {
            if !e.located {
                e.located = true;
                e.error.loc = self.node.loc;
                e.error.path = self.path.clone();
            }
            e
        })
    }

    fn wrong(&self, expected: &str) -> DeError {
        let found = match &self.node.value {
            Value::String(s) => format!("a string {s:?}"),
            _ => self.node.kind_name().to_string(),
        };
        DeError::located(
            Error::new(
                ErrorKind::InvalidValue,
                format!("must be {expected}, found {found}"),
            )
            .at(self.node.loc)
            .path(self.path.clone()),
        )
    }

    fn int(&self) -> R<i64> {
        match &self.node.value {
            Value::Int(i) => Ok(*i),
            Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Ok(*f as i64),
            Value::String(s) => s.trim().parse().map_err(|_| self.wrong("an integer")),
            _ => Err(self.wrong("an integer")),
        }
    }

    fn uint(&self) -> R<u64> {
        let i = self.int()?;
        u64::try_from(i).map_err(|_| self.wrong("a non-negative integer"))
    }

    fn float(&self) -> R<f64> {
        match &self.node.value {
            Value::Int(i) => Ok(*i as f64),
            Value::Float(f) => Ok(*f),
            Value::String(s) => s.trim().parse().map_err(|_| self.wrong("a number")),
            _ => Err(self.wrong("a number")),
        }
    }

    fn text(&self) -> R<String> {
        match &self.node.value {
            Value::Null | Value::Seq(_) | Value::Map(_) => Err(self.wrong("a string")),
            _ => self
                .node
                .scalar_text()
                .ok_or_else(|| self.wrong("a string")),
        }
    }
}

macro_rules! int_method {
    ($method:ident, $visit:ident, $ty:ty, $conv:ident, $what:expr) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> R<V::Value> {
            let v = self.$conv()?;
            let v = <$ty>::try_from(v).map_err(|_| self.wrong($what))?;
            let r = visitor.$visit(v);
            self.locate(r)
        }
    };
}

impl<'de> de::Deserializer<'de> for NodeDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> R<V::Value> {
        let r = match &self.node.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => visitor.visit_i64(*i),
            Value::Float(f) => visitor.visit_f64(*f),
            Value::String(s) => visitor.visit_str(s),
            Value::Seq(items) => visitor.visit_seq(Seq::new(items, &self.path)),
            Value::Map(m) => visitor.visit_map(Entries::new(m, &self.path)),
        };
        self.locate(r)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> R<V::Value> {
        let b = match &self.node.value {
            Value::Bool(b) => *b,
            Value::String(s) if s.eq_ignore_ascii_case("true") => true,
            Value::String(s) if s.eq_ignore_ascii_case("false") => false,
            Value::String(s) => {
                return Err(DeError::located(
                    Error::new(ErrorKind::InvalidValue, format!("invalid boolean {s:?}"))
                        .at(self.node.loc)
                        .path(self.path.clone())
                        .hint("use true or false"),
                ));
            }
            _ => return Err(self.wrong("a boolean")),
        };
        let r = visitor.visit_bool(b);
        self.locate(r)
    }

    int_method!(deserialize_i8, visit_i8, i8, int, "an integer in range");
    int_method!(deserialize_i16, visit_i16, i16, int, "an integer in range");
    int_method!(deserialize_i32, visit_i32, i32, int, "an integer in range");
    int_method!(deserialize_i64, visit_i64, i64, int, "an integer");
    int_method!(deserialize_u8, visit_u8, u8, uint, "an integer in range");
    int_method!(deserialize_u16, visit_u16, u16, uint, "an integer in range");
    int_method!(deserialize_u32, visit_u32, u32, uint, "an integer in range");
    int_method!(
        deserialize_u64,
        visit_u64,
        u64,
        uint,
        "a non-negative integer"
    );

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> R<V::Value> {
        let f = self.float()?;
        let r = visitor.visit_f32(f as f32);
        self.locate(r)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> R<V::Value> {
        let f = self.float()?;
        let r = visitor.visit_f64(f);
        self.locate(r)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> R<V::Value> {
        let s = self.text()?;
        let mut chars = s.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => {
                let r = visitor.visit_char(c);
                self.locate(r)
            }
            _ => Err(self.wrong("a single character")),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> R<V::Value> {
        let s = self.text()?;
        let r = visitor.visit_string(s);
        self.locate(r)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> R<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> R<V::Value> {
        let s = self.text()?;
        let r = visitor.visit_byte_buf(s.into_bytes());
        self.locate(r)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> R<V::Value> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> R<V::Value> {
        if self.node.is_null() {
            let r = visitor.visit_none();
            return self.locate(r);
        }
        let (node, path) = (self.node, self.path.clone());
        let r = visitor.visit_some(NodeDe { node, path });
        self.locate(r)
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> R<V::Value> {
        if !self.node.is_null() {
            return Err(self.wrong("null"));
        }
        let r = visitor.visit_unit();
        self.locate(r)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> R<V::Value> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> R<V::Value> {
        let (node, path) = (self.node, self.path.clone());
        let r = visitor.visit_newtype_struct(NodeDe { node, path });
        self.locate(r)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> R<V::Value> {
        let Value::Seq(items) = &self.node.value else {
            return Err(self.wrong("a sequence"));
        };
        let r = visitor.visit_seq(Seq::new(items, &self.path));
        self.locate(r)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> R<V::Value> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> R<V::Value> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> R<V::Value> {
        let r = match &self.node.value {
            Value::Map(m) => visitor.visit_map(Entries::new(m, &self.path)),
            _ => return Err(self.wrong("a mapping")),
        };
        self.locate(r)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> R<V::Value> {
        static EMPTY: std::sync::OnceLock<Map> = std::sync::OnceLock::new();
        let map = match &self.node.value {
            Value::Map(m) => m,
            // Go decodes null into a struct as its zero value.
            Value::Null => EMPTY.get_or_init(Map::new),
            _ => return Err(self.wrong("a mapping")),
        };
        let access = StructEntries::new(map, &self.path, fields)?;
        let r = visitor.visit_map(access);
        self.locate(r)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> R<V::Value> {
        let r = match &self.node.value {
            Value::String(_) | Value::Int(_) | Value::Bool(_) | Value::Float(_) => {
                let s = self.text()?;
                visitor.visit_enum(s.into_deserializer())
            }
            Value::Map(m) if m.len() == 1 => match m.iter().next() {
                Some((k, v)) => visitor.visit_enum(Variant {
                    key: k,
                    value: v,
                    parent: &self.path,
                }),
                None => return Err(self.wrong("a string or a mapping with one key")),
            },
            _ => return Err(self.wrong("a string or a mapping with one key")),
        };
        self.locate(r)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> R<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> R<V::Value> {
        visitor.visit_unit()
    }
}

/// The items of a sequence.
struct Seq<'a> {
    items: std::slice::Iter<'a, Node>,
    index: usize,
    path: &'a YamlPath,
}

impl<'a> Seq<'a> {
    fn new(items: &'a [Node], path: &'a YamlPath) -> Seq<'a> {
        Seq {
            items: items.iter(),
            index: 0,
            path,
        }
    }
}

impl<'de> SeqAccess<'de> for Seq<'_> {
    type Error = DeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> R<Option<T::Value>> {
        let Some(node) = self.items.next() else {
            return Ok(None);
        };
        let path = self.path.index(self.index);
        self.index += 1;
        seed.deserialize(NodeDe { node, path }).map(Some)
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

/// A mapping's entries, for maps (every key accepted).
struct Entries<'a> {
    entries: indexmap::map::Iter<'a, Key, Node>,
    pending: Option<(&'a Key, &'a Node)>,
    path: &'a YamlPath,
}

impl<'a> Entries<'a> {
    fn new(map: &'a Map, path: &'a YamlPath) -> Entries<'a> {
        Entries {
            entries: map.iter(),
            pending: None,
            path,
        }
    }
}

impl<'de> MapAccess<'de> for Entries<'_> {
    type Error = DeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> R<Option<K::Value>> {
        let Some((k, v)) = self.entries.next() else {
            return Ok(None);
        };
        self.pending = Some((k, v));
        key_seed(seed, k, self.path).map(Some)
    }
    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> R<T::Value> {
        let Some((k, node)) = self.pending.take() else {
            return Err(de::Error::custom("value requested before its key"));
        };
        seed.deserialize(NodeDe {
            node,
            path: self.path.key(&k.name),
        })
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

fn key_seed<'de, K: DeserializeSeed<'de>>(seed: K, k: &Key, path: &YamlPath) -> R<K::Value> {
    seed.deserialize(KeyDe(&k.name)).map_err(|mut e| {
        if !e.located {
            e.located = true;
            e.error.loc = k.loc;
            e.error.path = path.key(&k.name);
        }
        e
    })
}

/// What a struct's mapping yields next.
enum Slot<'a> {
    Field(&'a Key, &'a Node),
    Extensions,
}

/// A mapping's entries for a struct: only known fields, `x-*` gathered into [`EXTENSIONS`].
struct StructEntries<'a> {
    slots: std::vec::IntoIter<Slot<'a>>,
    pending: Option<Slot<'a>>,
    extensions: Node,
    path: &'a YamlPath,
}

impl<'a> StructEntries<'a> {
    fn new(
        map: &'a Map,
        path: &'a YamlPath,
        fields: &'static [&'static str],
    ) -> R<StructEntries<'a>> {
        let takes_extensions = fields.contains(&EXTENSIONS);
        let mut slots = Vec::with_capacity(map.len());
        let mut ext = Map::new();
        for (k, v) in map {
            if k.name.starts_with("x-") && takes_extensions {
                ext.insert(k.clone(), v.clone());
            } else if fields.contains(&k.name.as_str()) && k.name != EXTENSIONS {
                slots.push(Slot::Field(k, v));
            } else {
                let mut e = Error::new(
                    ErrorKind::UnknownKey,
                    format!("additional property {:?} is not allowed", k.name),
                )
                .at(k.loc)
                .path(path.key(&k.name));
                e.hint = closest(&k.name, fields).map(|c| format!("did you mean {c:?}?"));
                return Err(DeError::located(e));
            }
        }
        if !ext.is_empty() {
            slots.push(Slot::Extensions);
        }
        Ok(StructEntries {
            slots: slots.into_iter(),
            pending: None,
            extensions: Node::map(ext),
            path,
        })
    }
}

impl<'de> MapAccess<'de> for StructEntries<'_> {
    type Error = DeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> R<Option<K::Value>> {
        let Some(slot) = self.slots.next() else {
            return Ok(None);
        };
        let r = match &slot {
            Slot::Field(k, _) => key_seed(seed, k, self.path),
            Slot::Extensions => seed.deserialize(KeyDe(EXTENSIONS)),
        };
        self.pending = Some(slot);
        r.map(Some)
    }
    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> R<T::Value> {
        match self.pending.take() {
            Some(Slot::Field(k, node)) => seed.deserialize(NodeDe {
                node,
                path: self.path.key(&k.name),
            }),
            // Extension keys keep the struct's path: `x-foo`, not `__extensions.x-foo`.
            Some(Slot::Extensions) => seed.deserialize(NodeDe {
                node: &self.extensions,
                path: self.path.clone(),
            }),
            None => Err(de::Error::custom("value requested before its key")),
        }
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.slots.len())
    }
}

/// A mapping key: always a string.
struct KeyDe<'a>(&'a str);

impl<'de> de::Deserializer<'de> for KeyDe<'_> {
    type Error = DeError;
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> R<V::Value> {
        visitor.visit_str(self.0)
    }
    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> R<V::Value> {
        match self.0.parse() {
            Ok(i) => visitor.visit_i64(i),
            Err(_) => Err(de::Error::custom(format!(
                "key {:?} must be an integer",
                self.0
            ))),
        }
    }
    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> R<V::Value> {
        match self.0.parse() {
            Ok(u) => visitor.visit_u64(u),
            Err(_) => Err(de::Error::custom(format!(
                "key {:?} must be a non-negative integer",
                self.0
            ))),
        }
    }
    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i128 u8 u16 u32 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

/// An enum written as a one-key mapping `{variant: value}`.
struct Variant<'a> {
    key: &'a Key,
    value: &'a Node,
    parent: &'a YamlPath,
}

impl<'de, 'a> EnumAccess<'de> for Variant<'a> {
    type Error = DeError;
    type Variant = NodeDe<'a>;
    fn variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> R<(T::Value, NodeDe<'a>)> {
        let v = key_seed(seed, self.key, self.parent)?;
        Ok((
            v,
            NodeDe {
                node: self.value,
                path: self.parent.key(&self.key.name),
            },
        ))
    }
}

impl<'de> VariantAccess<'de> for NodeDe<'_> {
    type Error = DeError;
    fn unit_variant(self) -> R<()> {
        if self.node.is_null() {
            Ok(())
        } else {
            Err(self.wrong("null"))
        }
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> R<T::Value> {
        seed.deserialize(self)
    }
    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> R<V::Value> {
        de::Deserializer::deserialize_seq(self, visitor)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> R<V::Value> {
        de::Deserializer::deserialize_struct(self, "", fields, visitor)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use indexmap::IndexMap;
    use serde::Deserialize;

    use super::*;
    use crate::yaml::parse;

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(default)]
    struct Svc {
        image: String,
        replicas: i64,
        ports: Vec<u16>,
        tty: bool,
        cpus: f32,
        labels: BTreeMap<String, String>,
        #[serde(rename = "__extensions", default)]
        extensions: IndexMap<String, serde_json::Value>,
    }

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(default)]
    struct Plain {
        image: String,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Doc {
        services: BTreeMap<String, Svc>,
    }

    fn doc(text: &str) -> Result<Doc, Error> {
        from_node(&parse("t.yaml", text).unwrap())
    }

    #[test]
    fn unknown_key_is_located_at_the_key_with_a_hint() {
        let e = doc("services:\n  web:\n    imgae: nginx\n").unwrap_err();
        assert_eq!(e.kind, ErrorKind::UnknownKey);
        assert_eq!(e.message, "additional property \"imgae\" is not allowed");
        assert_eq!(e.hint.as_deref(), Some("did you mean \"image\"?"));
        assert_eq!((e.loc.line, e.loc.col), (3, 5));
        assert_eq!(e.path.to_string(), "services.web.imgae");
        assert_eq!(
            e.to_string(),
            "t.yaml:3:5: services.web.imgae: additional property \"imgae\" is not allowed\nhint: did you mean \"image\"?"
        );
    }

    #[test]
    fn unknown_key_far_from_any_has_no_hint() {
        let e = doc("services:\n  web:\n    zzzzzzzz: 1\n").unwrap_err();
        assert_eq!(e.kind, ErrorKind::UnknownKey);
        assert_eq!(e.hint, None);
    }

    #[test]
    fn wrong_type_names_path_and_node() {
        let e = doc("services:\n  web:\n    image:\n      a: b\n").unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidValue);
        assert_eq!(e.message, "must be a string, found a mapping");
        assert_eq!(e.path.to_string(), "services.web.image");
        assert_eq!((e.loc.line, e.loc.col), (4, 7));
        let e = doc("services:\n  web:\n    ports: [80, abc]\n").unwrap_err();
        assert_eq!(e.message, "must be an integer, found a string \"abc\"");
        assert_eq!(e.path.to_string(), "services.web.ports[1]");
        assert_eq!((e.loc.line, e.loc.col), (3, 17));
        let e = doc("services:\n  web:\n    ports: [70000]\n").unwrap_err();
        assert_eq!(e.path.to_string(), "services.web.ports[0]");
        let e = doc("services:\n  web:\n    tty: maybe\n").unwrap_err();
        assert_eq!(e.message, "invalid boolean \"maybe\"");
        assert_eq!(e.hint.as_deref(), Some("use true or false"));
        let e = doc("services: [a]\n").unwrap_err();
        assert_eq!(e.message, "must be a mapping, found a sequence");
        assert_eq!(e.path.to_string(), "services");
    }

    #[test]
    fn scalars_convert_leniently() {
        let d = doc("services:\n  web:\n    image: 3\n    replicas: \"3\"\n    ports: [\"80\", 81]\n    tty: \"true\"\n    cpus: \"0.5\"\n    labels: {a: 1, b: true, c: 1.5}\n").unwrap();
        let web = &d.services["web"];
        assert_eq!(web.image, "3");
        assert_eq!(web.replicas, 3);
        assert_eq!(web.ports, vec![80, 81]);
        assert!(web.tty);
        assert_eq!(web.cpus, 0.5);
        assert_eq!(web.labels["a"], "1");
        assert_eq!(web.labels["b"], "true");
        assert_eq!(web.labels["c"], "1.5");
    }

    #[test]
    fn extensions_are_collected_or_refused() {
        let d = doc("services:\n  web:\n    image: x\n    x-foo: {a: [1, two]}\n").unwrap();
        assert_eq!(
            d.services["web"].extensions["x-foo"],
            serde_json::json!({"a": [1, "two"]})
        );
        let e = from_node::<Plain>(&parse("p.yaml", "image: x\nx-foo: 1\n").unwrap()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::UnknownKey);
        assert_eq!(e.message, "additional property \"x-foo\" is not allowed");
        assert_eq!(e.loc.line, 2);
        // The internal field name cannot be written by users.
        let e = from_node::<Svc>(&parse("p.yaml", "__extensions: {}\n").unwrap()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::UnknownKey);
    }

    #[test]
    fn errors_from_custom_deserialize_are_located_with_hint() {
        #[derive(Debug, Deserialize)]
        struct H {
            #[allow(dead_code)]
            interval: crate::units::Duration,
        }
        let e = from_node::<H>(&parse("h.yaml", "interval: 10x\n").unwrap()).unwrap_err();
        assert_eq!(e.message, "invalid duration \"10x\": unknown unit \"x\"");
        assert!(e.hint.is_some());
        assert_eq!(e.path.to_string(), "interval");
        assert_eq!((e.loc.line, e.loc.col), (1, 11));
        let e = from_node::<H>(&parse("h.yaml", "{}\n").unwrap()).unwrap_err();
        assert_eq!(e.message, "missing property \"interval\"");
    }

    #[test]
    fn null_struct_is_empty_and_null_option_is_none() {
        let d = doc("services:\n  web:\n").unwrap();
        assert_eq!(d.services["web"], Svc::default());
        let o: Option<Plain> = from_node(&parse("o.yaml", "~\n").unwrap()).unwrap();
        assert_eq!(o, None);
    }

    #[test]
    fn from_node_at_prefixes_the_path() {
        let n = parse("p.yaml", "image: [1]\n").unwrap();
        let e = from_node_at::<Plain>(&n, YamlPath::parse("services.web")).unwrap_err();
        assert_eq!(e.path.to_string(), "services.web.image");
    }
}
