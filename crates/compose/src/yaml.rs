//! Phase 1, parse: YAML bytes → [`Node`], berth's located YAML tree.
//!
//! Every later phase (interpolate, extends/include, merge, normalize, canonical form) is a
//! transformation of this tree, as compose-go works on `map[string]any`. Unlike that map, each
//! node remembers where it was written ([`Loc`]: file, line, column) and its custom tag
//! (`!reset`, `!override`), so that an error found after merging several files still names the
//! file and line the user has to edit.
//!
//! Scalars are resolved as YAML 1.2 core schema (go-yaml v3 does the same when decoding into
//! `any`): `yes`/`no`/`on`/`off` are strings, `true`/`false` booleans, `1` an integer and `'1'` a
//! string (see `scalar`). The tree is built in one pass over the events of granit-parser (the
//! YAML parser serde-saphyr is made of; see `build`): aliases are expanded with the anchor's
//! locations, merge keys (`<<`) applied, duplicate keys refused, and nesting depth, alias
//! expansion (alias bombs) and document count bounded.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use indexmap::IndexMap;

mod build;
mod scalar;

/// A file known to the loader, referred to by [`Loc::file`].
///
/// Files are interned in a process-wide table so that a [`Loc`] stays `Copy` and small, and
/// errors can print the file's name long after the phase that read it is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FileId(pub u32);

fn files() -> &'static Mutex<Vec<Arc<str>>> {
    static FILES: OnceLock<Mutex<Vec<Arc<str>>>> = OnceLock::new();
    FILES.get_or_init(|| Mutex::new(vec![Arc::from("")]))
}

impl FileId {
    /// No file (a node made by the loader itself).
    pub const NONE: FileId = FileId(0);

    /// Interns `name` (a path as the user should see it, or `-` for stdin).
    pub fn intern(name: &str) -> FileId {
        let mut table = files().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = table.iter().position(|n| &**n == name) {
            return FileId(i as u32);
        }
        table.push(Arc::from(name));
        FileId((table.len() - 1) as u32)
    }

    pub fn name(self) -> Arc<str> {
        let table = files().lock().unwrap_or_else(|e| e.into_inner());
        table
            .get(self.0 as usize)
            .cloned()
            .unwrap_or_else(|| Arc::from(""))
    }
}

/// Where a node was written. `line == 0` means unknown (a node the loader made).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Loc {
    pub file: FileId,
    pub line: u32,
    pub col: u32,
}

impl Loc {
    pub const NONE: Loc = Loc {
        file: FileId::NONE,
        line: 0,
        col: 0,
    };

    pub fn is_known(&self) -> bool {
        self.line != 0
    }
}

impl fmt::Display for Loc {
    /// `file:line:col`, `file` alone when the line is unknown, nothing for no file.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.file.name();
        match (name.is_empty(), self.is_known()) {
            (true, _) => Ok(()),
            (false, true) => write!(f, "{}:{}:{}", name, self.line, self.col),
            (false, false) => write!(f, "{name}"),
        }
    }
}

/// A custom YAML tag that the compose loader understands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tag {
    /// `!reset`: remove the value inherited from earlier files (or set it to its empty form).
    Reset,
    /// `!override`: replace the value inherited from earlier files instead of merging.
    Override,
    /// Any other explicit tag (kept, ignored by the loader).
    Other(String),
}

/// A mapping key: its text and where it was written. Equality and hashing use the text only,
/// and `Borrow<str>` lets a [`Map`] be indexed by `&str`.
#[derive(Clone, Debug)]
pub struct Key {
    pub name: String,
    pub loc: Loc,
}

impl Key {
    pub fn new(name: impl Into<String>) -> Key {
        Key {
            name: name.into(),
            loc: Loc::NONE,
        }
    }

    pub fn at(name: impl Into<String>, loc: Loc) -> Key {
        Key {
            name: name.into(),
            loc,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.name
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}
impl Eq for Key {}
impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state)
    }
}
impl std::borrow::Borrow<str> for Key {
    fn borrow(&self) -> &str {
        &self.name
    }
}
impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}
impl From<&str> for Key {
    fn from(s: &str) -> Key {
        Key::new(s)
    }
}
impl From<String> for Key {
    fn from(s: String) -> Key {
        Key::new(s)
    }
}

/// A YAML mapping in document order.
pub type Map = IndexMap<Key, Node>;

/// The value of a [`Node`].
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Seq(Vec<Node>),
    Map(Map),
}

/// A YAML node with its location and custom tag.
///
/// Equality compares values and tags, never locations: two files that say the same thing are
/// equal.
#[derive(Clone, Debug)]
pub struct Node {
    pub value: Value,
    pub loc: Loc,
    pub tag: Option<Tag>,
}

impl PartialEq for Node {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value && self.tag == other.tag
    }
}

impl Node {
    pub fn new(value: Value) -> Node {
        Node {
            value,
            loc: Loc::NONE,
            tag: None,
        }
    }
    pub fn at(value: Value, loc: Loc) -> Node {
        Node {
            value,
            loc,
            tag: None,
        }
    }
    pub fn null() -> Node {
        Node::new(Value::Null)
    }
    pub fn string(s: impl Into<String>) -> Node {
        Node::new(Value::String(s.into()))
    }
    pub fn int(i: i64) -> Node {
        Node::new(Value::Int(i))
    }
    pub fn bool(b: bool) -> Node {
        Node::new(Value::Bool(b))
    }
    pub fn map(m: Map) -> Node {
        Node::new(Value::Map(m))
    }
    pub fn empty_map() -> Node {
        Node::new(Value::Map(Map::new()))
    }
    pub fn seq(items: Vec<Node>) -> Node {
        Node::new(Value::Seq(items))
    }
    /// The same node placed at `loc` (for nodes the loader derives from one the user wrote).
    pub fn with_loc(mut self, loc: Loc) -> Node {
        self.loc = loc;
        self
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_map(&self) -> Option<&Map> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }
    pub fn as_map_mut(&mut self) -> Option<&mut Map> {
        match &mut self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }
    pub fn as_seq(&self) -> Option<&Vec<Node>> {
        match &self.value {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_seq_mut(&mut self) -> Option<&mut Vec<Node>> {
        match &mut self.value {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self.value {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }
    pub fn as_i64(&self) -> Option<i64> {
        match self.value {
            Value::Int(i) => Some(i),
            _ => None,
        }
    }
    /// `map[key]` when this is a mapping that has `key`.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map().and_then(|m| m.get(key))
    }
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        self.as_map_mut().and_then(|m| m.get_mut(key))
    }
    /// A scalar as the text a YAML user wrote (or would have written) for it: strings as
    /// they are, numbers and booleans in their plain form. `None` for null and collections.
    pub fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::String(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(format_float(*f)),
            Value::Null | Value::Seq(_) | Value::Map(_) => None,
        }
    }
    /// A short name of the node's kind, for error messages ("a mapping", "a string", …).
    pub fn kind_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::String(_) => "a string",
            Value::Seq(_) => "a sequence",
            Value::Map(_) => "a mapping",
        }
    }
}

/// Formats a float as go-yaml and Go's `strconv.FormatFloat(f, 'g', -1, 64)` would in the
/// common cases: integral values without a fraction are printed with none.
pub fn format_float(f: f64) -> String {
    if f.is_nan() {
        ".nan".to_string()
    } else if f.is_infinite() {
        if f > 0.0 {
            "+.inf".to_string()
        } else {
            "-.inf".to_string()
        }
    } else {
        let s = format!("{f}");
        s
    }
}

/// A YAML path in a document, as compose-go prints it: `services.web.ports[0]`.
///
/// A persistent list (each step shares its parent): the phases and the typed deserialiser make
/// one for every node they visit, so `key`/`index` cost one small allocation instead of a copy
/// of the whole path.
#[derive(Clone, Default)]
pub struct YamlPath(Option<Arc<PathStep>>);

struct PathStep {
    parent: Option<Arc<PathStep>>,
    seg: PathSeg,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathSeg {
    Key(String),
    Index(usize),
}

impl YamlPath {
    pub fn root() -> YamlPath {
        YamlPath(None)
    }
    fn child(&self, seg: PathSeg) -> YamlPath {
        YamlPath(Some(Arc::new(PathStep {
            parent: self.0.clone(),
            seg,
        })))
    }
    pub fn key(&self, k: &str) -> YamlPath {
        self.child(PathSeg::Key(k.to_string()))
    }
    pub fn index(&self, i: usize) -> YamlPath {
        self.child(PathSeg::Index(i))
    }
    /// Descends in place (for walks that clone the path only when they report something).
    pub fn push_key(&mut self, k: &str) {
        *self = self.key(k);
    }
    pub fn push_index(&mut self, i: usize) {
        *self = self.index(i);
    }
    pub fn pop(&mut self) {
        if let Some(step) = self.0.take() {
            self.0 = step.parent.clone();
        }
    }
    /// The segments, root first.
    pub fn segments(&self) -> Vec<PathSeg> {
        let mut out = Vec::new();
        let mut cur = self.0.as_deref();
        while let Some(step) = cur {
            out.push(step.seg.clone());
            cur = step.parent.as_deref();
        }
        out.reverse();
        out
    }
    pub fn is_root(&self) -> bool {
        self.0.is_none()
    }
    /// Parses `a.b[0].c` (for tests and for paths given on the command line).
    pub fn parse(s: &str) -> YamlPath {
        let mut path = YamlPath::root();
        for part in s.split('.').filter(|p| !p.is_empty()) {
            let (name, rest) = match part.find('[') {
                Some(i) => (&part[..i], &part[i..]),
                None => (part, ""),
            };
            if !name.is_empty() {
                path.push_key(name);
            }
            for idx in rest.split('[').filter(|x| !x.is_empty()) {
                if let Ok(i) = idx.trim_end_matches(']').parse() {
                    path.push_index(i);
                }
            }
        }
        path
    }
}

impl PartialEq for YamlPath {
    fn eq(&self, other: &Self) -> bool {
        self.segments() == other.segments()
    }
}
impl Eq for YamlPath {}

impl fmt::Debug for YamlPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "YamlPath({self})")
    }
}

impl fmt::Display for YamlPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for seg in self.segments() {
            match seg {
                PathSeg::Key(k) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    f.write_str(&k)?;
                }
                PathSeg::Index(i) => write!(f, "[{i}]")?,
            }
            first = false;
        }
        Ok(())
    }
}

/// Why a document could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("{loc}: {message}")]
    Syntax { loc: Loc, message: String },
    #[error("{file}: empty compose file")]
    Empty { file: String },
}

impl ParseError {
    pub fn loc(&self) -> Loc {
        match self {
            ParseError::Syntax { loc, .. } => *loc,
            ParseError::Empty { .. } => Loc::NONE,
        }
    }
}

/// Parses one YAML document. `name` is how errors name the file (a path, `-`, or `(inline)`).
///
/// An empty document (nothing, or only comments) parses to a null node; whether that is an error
/// is the caller's decision (compose says `empty compose file`).
pub fn parse(name: &str, text: &str) -> Result<Node, ParseError> {
    let file = FileId::intern(name);
    let start = Loc {
        file,
        line: 1,
        col: 1,
    };
    if text.trim().is_empty() || only_comments(text) {
        return Ok(Node::at(Value::Null, start));
    }
    let mut docs = build::documents(file, text)?.into_iter();
    let first = docs.next();
    if let Some(second) = docs.next() {
        return Err(ParseError::Syntax {
            loc: second.loc,
            message: "multiple YAML documents detected where one was expected".to_string(),
        });
    }
    Ok(match first {
        Some(n) if !n.is_null() => n,
        _ => Node::at(Value::Null, start),
    })
}

/// Parses every document of a YAML stream (`---` separated), skipping empty ones, as compose
/// does for a file that holds several documents: each is applied in order.
pub fn parse_all(name: &str, text: &str) -> Result<Vec<Node>, ParseError> {
    let file = FileId::intern(name);
    if text.trim().is_empty() || only_comments(text) {
        return Ok(Vec::new());
    }
    let mut docs = build::documents(file, text)?;
    docs.retain(|d| !d.is_null());
    Ok(docs)
}

/// Reads and parses a file.
pub fn parse_file(path: &Path) -> Result<Node, std::io::Error> {
    let text = std::fs::read_to_string(path)?;
    parse(&path.display().to_string(), &text).map_err(std::io::Error::other)
}

fn only_comments(text: &str) -> bool {
    text.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---" || t == "..."
    })
}

/// Builds a [`Node`] from JSON (used for `env.json`-style test data and by callers that have a
/// `serde_json::Value`). Object order is kept.
pub fn from_json(v: &serde_json::Value) -> Node {
    use serde_json::Value as J;
    Node::new(match v {
        J::Null => Value::Null,
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(0.0)),
        },
        J::String(s) => Value::String(s.clone()),
        J::Array(a) => Value::Seq(a.iter().map(from_json).collect()),
        J::Object(o) => Value::Map(
            o.iter()
                .map(|(k, v)| (Key::new(k.clone()), from_json(v)))
                .collect(),
        ),
    })
}

/// Converts a tree to JSON (tags and locations dropped). Non-finite floats become null.
pub fn to_json(n: &Node) -> serde_json::Value {
    use serde_json::Value as J;
    match &n.value {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(i) => J::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(J::Number)
            .unwrap_or(J::Null),
        Value::String(s) => J::String(s.clone()),
        Value::Seq(items) => J::Array(items.iter().map(to_json).collect()),
        Value::Map(m) => J::Object(
            m.iter()
                .map(|(k, v)| (k.name.clone(), to_json(v)))
                .collect(),
        ),
    }
}

/// Where in the tree a path leads, if anywhere.
pub fn lookup<'a>(root: &'a Node, path: &YamlPath) -> Option<&'a Node> {
    let mut cur = root;
    for seg in path.segments() {
        cur = match seg {
            PathSeg::Key(k) => cur.get(&k)?,
            PathSeg::Index(i) => cur.as_seq()?.get(i)?,
        };
    }
    Some(cur)
}

/// Path of a file relative to `base` when it is inside it, for shorter messages.
pub fn display_path(path: &Path, base: &Path) -> PathBuf {
    path.strip_prefix(base)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_are_yaml_1_2() {
        let n = parse(
            "t.yaml",
            "a: yes\nb: true\nc: 1\nd: '1'\ne: 1.5\nf: ~\ng: on\nh: 0x10\n",
        )
        .unwrap();
        assert_eq!(n.get("a").unwrap().value, Value::String("yes".into()));
        assert_eq!(n.get("b").unwrap().value, Value::Bool(true));
        assert_eq!(n.get("c").unwrap().value, Value::Int(1));
        assert_eq!(n.get("d").unwrap().value, Value::String("1".into()));
        assert_eq!(n.get("e").unwrap().value, Value::Float(1.5));
        assert_eq!(n.get("f").unwrap().value, Value::Null);
        assert_eq!(n.get("g").unwrap().value, Value::String("on".into()));
        assert_eq!(n.get("h").unwrap().value, Value::Int(16));
        let n = parse("t.yaml", "mode: 0440\nzero: 0\noct: 0o17\nport: 8080\n").unwrap();
        assert_eq!(n.get("mode").unwrap().value, Value::Int(0o440));
        assert_eq!(n.get("zero").unwrap().value, Value::Int(0));
        assert_eq!(n.get("oct").unwrap().value, Value::Int(0o17));
        assert_eq!(n.get("port").unwrap().value, Value::Int(8080));
    }

    #[test]
    fn locations_and_keys() {
        let n = parse(
            "loc.yaml",
            "services:\n  web:\n    image: nginx\n    ports:\n      - 80:80\n",
        )
        .unwrap();
        let web = n.get("services").unwrap().get("web").unwrap();
        let image = web.get("image").unwrap();
        assert_eq!((image.loc.line, image.loc.col), (3, 12));
        let (k, _) = web.as_map().unwrap().get_key_value("ports").unwrap();
        assert_eq!((k.loc.line, k.loc.col), (4, 5));
        let port = &web.get("ports").unwrap().as_seq().unwrap()[0];
        assert_eq!(port.loc.line, 5);
        assert_eq!(port.loc.to_string(), "loc.yaml:5:9");
    }

    #[test]
    fn tags_reach_the_tree() {
        let n = parse(
            "t.yaml",
            "a: !reset []\nb: !override\n  x: 1\nc: !reset null\n",
        )
        .unwrap();
        assert_eq!(n.get("a").unwrap().tag, Some(Tag::Reset));
        assert_eq!(n.get("b").unwrap().tag, Some(Tag::Override));
        assert_eq!(n.get("c").unwrap().tag, Some(Tag::Reset));
        assert!(n.get("c").unwrap().is_null());
    }

    #[test]
    fn merge_keys_and_anchors() {
        let n = parse("t.yaml", "x: &a\n  p: 1\n  q: 2\ny:\n  <<: *a\n  q: 3\n").unwrap();
        let y = n.get("y").unwrap();
        assert_eq!(y.get("p").unwrap().value, Value::Int(1));
        assert_eq!(y.get("q").unwrap().value, Value::Int(3));
    }

    #[test]
    fn errors_have_locations() {
        let e = parse("bad.yaml", "a: b\n  c: d\n").unwrap_err();
        assert!(e.loc().line >= 1, "{e}");
        assert!(e.to_string().starts_with("bad.yaml:"), "{e}");
        let e = parse("dup.yaml", "a: 1\na: 2\n").unwrap_err();
        assert!(e.to_string().contains("dup.yaml:2"), "{e}");
    }

    #[test]
    fn alias_bomb_is_refused() {
        let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            doc.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let e = parse("bomb.yaml", &doc).unwrap_err();
        assert!(e.to_string().contains("alias replay limit exceeded"), "{e}");
    }

    #[test]
    fn several_documents() {
        let docs = parse_all("m.yaml", "a: 1\n---\nb: 2\n---\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].get("b").unwrap().value, Value::Int(2));
        assert_eq!(docs[1].get("b").unwrap().loc.line, 3);
        assert!(parse_all("e.yaml", "# nothing\n").unwrap().is_empty());
    }

    #[test]
    fn many_services_may_share_one_anchor() {
        // Regression: serde-saphyr's default budget refused 500 aliases of 2 anchors.
        let mut doc =
            String::from("x-common: &common\n  image: busybox\n  restart: always\nservices:\n");
        for i in 0..500 {
            doc.push_str(&format!("  s{i}:\n    <<: *common\n"));
        }
        let n = parse("many.yaml", &doc).unwrap();
        assert_eq!(n.get("services").unwrap().as_map().unwrap().len(), 500);
    }

    #[test]
    fn merge_keys_follow_the_merge_key_spec() {
        let n = parse(
            "m.yaml",
            "a: &a {p: 1, q: 1}\nb: &b {q: 2, r: 2}\nc:\n  s: 3\n  <<: [*a, *b]\n  q: 3\nd:\n  <<: *b\n  <<: *a\ne:\n  <<: ~\n  t: 1\n",
        )
        .unwrap();
        // Explicit keys win wherever they are written; merged ones follow them in order.
        let c = n.get("c").unwrap().as_map().unwrap();
        let keys: Vec<&str> = c.keys().map(Key::as_str).collect();
        assert_eq!(keys, ["s", "q", "p", "r"]);
        assert_eq!(c["q"].value, Value::Int(3));
        assert_eq!(c["p"].value, Value::Int(1));
        // Among merged mappings the earlier one wins, in a sequence or in two `<<` keys.
        let d = n.get("d").unwrap();
        assert_eq!(d.get("q").unwrap().value, Value::Int(2));
        assert_eq!(d.get("p").unwrap().value, Value::Int(1));
        assert_eq!(n.get("e").unwrap().as_map().unwrap().len(), 1);
        // A quoted `<<` is an ordinary key.
        let q = parse("m.yaml", "a:\n  \"<<\": 1\n").unwrap();
        assert_eq!(q.get("a").unwrap().get("<<").unwrap().value, Value::Int(1));
        for bad in ["a:\n  <<: 5\n", "a:\n  <<: [{x: 1}, 5]\n"] {
            let e = parse("m.yaml", bad).unwrap_err();
            assert!(e.to_string().contains("merge key"), "{e}");
            assert_eq!(e.loc().line, 2, "{e}");
        }
    }

    #[test]
    fn aliases_keep_the_anchor_locations() {
        let n = parse(
            "a.yaml",
            "x: &x\n  image: busybox\ny: *x\nz:\n  <<: *x\n  cmd: run\ns: &s hello\nt: *s\n",
        )
        .unwrap();
        let y = n.get("y").unwrap();
        assert_eq!((y.loc.line, y.loc.col), (2, 3));
        let image = y.get("image").unwrap();
        assert_eq!((image.loc.line, image.loc.col), (2, 10));
        // The mapping that merges keeps its own place; merged entries keep theirs.
        let z = n.get("z").unwrap();
        assert_eq!((z.loc.line, z.loc.col), (5, 3));
        let (k, v) = z.as_map().unwrap().get_key_value("image").unwrap();
        assert_eq!((k.loc.line, v.loc.line), (2, 2));
        let (k, _) = n.as_map().unwrap().get_key_value("t").unwrap();
        assert_eq!((k.loc.line, k.loc.col), (8, 1));
        let t = n.get("t").unwrap();
        assert_eq!(t.value, Value::String("hello".into()));
        assert_eq!((t.loc.line, t.loc.col), (7, 7));
    }

    #[test]
    fn explicit_tags() {
        let n = parse(
            "t.yaml",
            "a: !!str 1\nb: !!int \"3\"\nc: !!float 1\nd: !!null x\ne: !custom 5\nf: ! 7\ng: !!str\nh: !!bool \"true\"\ni: !!map {x: 1}\nj: &r !reset [1]\nk: *r\n",
        )
        .unwrap();
        let v = |k: &str| n.get(k).unwrap().value.clone();
        assert_eq!(v("a"), Value::String("1".into()));
        assert_eq!(v("b"), Value::Int(3));
        assert_eq!(v("c"), Value::Float(1.0));
        assert_eq!(v("d"), Value::Null);
        assert_eq!(v("e"), Value::Int(5));
        assert_eq!(n.get("e").unwrap().tag, Some(Tag::Other("!custom".into())));
        assert_eq!(v("f"), Value::String("7".into()));
        assert_eq!(v("g"), Value::String(String::new()));
        assert_eq!(v("h"), Value::Bool(true));
        assert!(n.get("i").unwrap().tag.is_none());
        assert_eq!(n.get("k").unwrap().tag, Some(Tag::Reset));
        for bad in [
            "a: !!int x\n",
            "a: !!map x\n",
            "a: !!str [1]\n",
            "a: !!bool yes\n",
        ] {
            let e = parse("t.yaml", bad).unwrap_err();
            assert!(e.to_string().contains("!!"), "{e}");
        }
    }

    #[test]
    fn numbers_octal_and_non_finite() {
        let n = parse(
            "n.yaml",
            "a: 0440\nb: 0o17\nc: 1_000\nd: 08\ne: .inf\nf: -.Inf\ng: 1e400\nh: 0b11\ni: -0x10\n",
        )
        .unwrap();
        let v = |k: &str| n.get(k).unwrap().value.clone();
        assert_eq!(v("a"), Value::Int(288));
        assert_eq!(v("b"), Value::Int(15));
        assert_eq!(v("c"), Value::Int(1000));
        assert_eq!(v("d"), Value::Float(8.0));
        assert_eq!(v("e"), Value::Float(f64::INFINITY));
        assert_eq!(v("f"), Value::Float(f64::NEG_INFINITY));
        assert_eq!(v("g"), Value::String("1e400".into()));
        assert_eq!(v("h"), Value::Int(3));
        assert_eq!(v("i"), Value::Int(-16));
    }

    #[test]
    fn duplicate_keys_name_both_lines() {
        let e = parse("d.yaml", "a:\n  b: 1\n  c: 2\n  b: 3\n").unwrap_err();
        assert_eq!((e.loc().line, e.loc().col), (4, 3));
        assert!(
            e.to_string().contains("\"b\" already defined at line 2"),
            "{e}"
        );
        // `1` and `"1"` are the same key for compose (its keys are strings).
        assert!(parse("d.yaml", "1: a\n\"1\": b\n").is_err());
        // A merged key that is also written is not a duplicate.
        assert!(parse("d.yaml", "a: &a {x: 1}\nb:\n  <<: *a\n  x: 2\n").is_ok());
    }

    #[test]
    fn self_referencing_alias_is_a_cycle() {
        let e = parse("c.yaml", "x: &h\n  svc:\n    <<: *h\n").unwrap_err();
        assert_eq!(e.loc().line, 3);
        assert!(e.to_string().contains("cycle detected: alias *h"), "{e}");
        let e = parse("c.yaml", "a: *nope\n").unwrap_err();
        assert!(e.to_string().contains("unknown anchor"), "{e}");
    }

    #[test]
    fn nesting_depth_is_bounded() {
        let ok = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(parse("d.yaml", &ok).is_ok());
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let e = parse("d.yaml", &deep).unwrap_err();
        assert!(e.to_string().contains("nested deeper than"), "{e}");
        // An alias cannot be used to nest deeper than the text does.
        let anchored = format!("a: &a {}{}\n", "[".repeat(100), "]".repeat(100));
        let e = parse(
            "d.yaml",
            &format!(
                "{anchored}b: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[*a]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n"
            ),
        )
        .unwrap_err();
        assert!(e.to_string().contains("once alias *a is expanded"), "{e}");
    }

    #[test]
    fn alias_replay_counts_nodes() {
        // 3 nodes (mapping, key, value) replayed per alias: 33,333 aliases fit, one more does not.
        let mut doc = String::from("a: &a {x: 1}\nb:\n");
        for _ in 0..33_333 {
            doc.push_str("- *a\n");
        }
        assert!(parse("r.yaml", &doc).is_ok());
        doc.push_str("- *a\n");
        let e = parse("r.yaml", &doc).unwrap_err();
        assert!(e.to_string().contains("alias replay limit exceeded"), "{e}");
        assert_eq!(e.loc().line, 33_336);
    }

    #[test]
    fn nested_anchors_are_bounded() {
        // Each anchor keeps a copy of its node: 100 nested anchors around 10,000 scalars copy
        // them 100 times, more than the limit; 50 do not.
        let nested = |levels: usize| {
            let mut doc = String::from("a: ");
            for i in 0..levels {
                doc.push_str(&format!("&a{i} ["));
            }
            doc.push_str(&vec!["x"; 10_000].join(","));
            doc.push_str(&"]".repeat(levels));
            doc.push('\n');
            doc
        };
        assert!(parse("n.yaml", &nested(50)).is_ok());
        let e = parse("n.yaml", &nested(100)).unwrap_err();
        assert!(e.to_string().contains("anchors hold more than"), "{e}");
    }

    #[test]
    fn documents_one_or_many() {
        let e = parse("m.yaml", "a: 1\n---\nb: 2\n").unwrap_err();
        assert_eq!(e.loc().line, 3);
        assert!(e.to_string().contains("multiple YAML documents"), "{e}");
        assert!(parse("m.yaml", "--- ~\n").unwrap().is_null());
        assert_eq!(
            parse_all("m.yaml", "---\n---\na: 1\n---\n--- ~\n")
                .unwrap()
                .len(),
            1
        );
        let many = "---\na: 1\n".repeat(1100);
        let e = parse_all("m.yaml", &many).unwrap_err();
        assert!(
            e.to_string().contains("more than 1024 YAML documents"),
            "{e}"
        );
    }

    #[test]
    fn syntax_errors_are_located_once() {
        let e = parse("s.yaml", "a: b\n  c: d\n").unwrap_err();
        let ParseError::Syntax { loc, message } = &e else {
            panic!("{e}")
        };
        assert_eq!((loc.line, loc.col), (2, 4));
        assert_eq!(message, "mapping values are not allowed in this context");
        let e = parse("s.yaml", "a: [1, 2\n").unwrap_err();
        assert_eq!(e.loc().line, 1);
        assert!(!e.to_string().contains(" at "), "{e}");
    }

    #[test]
    fn path_display_and_parse() {
        let p = YamlPath::root()
            .key("services")
            .key("web")
            .key("ports")
            .index(0);
        assert_eq!(p.to_string(), "services.web.ports[0]");
        assert_eq!(YamlPath::parse("services.web.ports[0]"), p);
    }
}
