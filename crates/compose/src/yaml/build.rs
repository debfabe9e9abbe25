//! The tree builder: granit-parser events (the YAML parser serde-saphyr is built on) → [`Node`]s.
//!
//! One pass over the event stream with an explicit stack, so no input can exhaust the call
//! stack. On top of the events it resolves scalars ([`super::scalar`]), expands aliases by
//! cloning the anchored node (which keeps the anchor's locations), applies merge keys (`<<`),
//! refuses duplicate keys and bounds what an input can cost: nesting depth, nodes produced by
//! aliases (alias bombs) and the number of documents.

use std::collections::HashMap;

use serde_saphyr::granit_parser::{
    ErrorKind, Event, Options, Parser, ScalarStyle, ScanError, Span,
};

use super::scalar;
use super::{FileId, Key, Loc, Map, Node, ParseError, Tag, Value, format_float};

/// Deepest nesting of mappings and sequences, aliases expanded. Later phases walk the tree
/// recursively; serde_json stops at the same depth.
pub(super) const MAX_DEPTH: usize = 128;
/// Most nodes that alias expansion may produce in one stream: a compose file replays a few
/// per `<<: *anchor` (about 6,000 for 500 services sharing one anchor); an alias bomb
/// replays billions.
pub(super) const MAX_REPLAYED_NODES: usize = 100_000;
/// Most nodes kept for anchors in one stream (each anchored node is copied once when it is
/// defined; nested anchors copy their content again).
pub(super) const MAX_ANCHORED_NODES: usize = 1_000_000;
/// Most documents in one stream.
pub(super) const MAX_DOCUMENTS: usize = 1024;

/// Every document of `text`, in order, empty ones included (as null roots).
pub(super) fn documents(file: FileId, text: &str) -> Result<Vec<Node>, ParseError> {
    let mut options = Options::default();
    options.emit_comments = false;
    let mut b = Builder {
        file,
        text,
        stack: Vec::new(),
        anchors: HashMap::new(),
        replayed: 0,
        anchored: 0,
        root: None,
        docs: Vec::new(),
    };
    for item in Parser::new_from_str_with_options(text, options) {
        let (event, span) = item.map_err(|e| b.scan_error(&e))?;
        b.event(event, span)?;
    }
    Ok(b.docs)
}

/// A finished node with what its expansion would cost if it is aliased.
struct Built {
    node: Node,
    /// Nodes in the subtree (keys included).
    size: usize,
    /// Levels of collections in the subtree (a scalar has none).
    height: usize,
}

/// An open mapping or sequence.
struct Frame {
    kind: Kind,
    loc: Loc,
    tag: Option<Tag>,
    /// granit's anchor id defined on this node, 0 for none.
    anchor: usize,
    /// Nodes so far, this one included (as [`Built::size`]).
    size: usize,
    /// Levels so far, this one included (as [`Built::height`]).
    height: usize,
}

enum Kind {
    Seq(Vec<Node>),
    Map {
        map: Map,
        /// The key read, waiting for its value.
        key: Option<PendingKey>,
        /// Mappings merged in by `<<`, in the order written (earlier ones win).
        merged: Vec<Map>,
    },
}

enum PendingKey {
    Key(Key),
    /// A merge key (`<<`, plain or tagged `!!merge`).
    Merge,
}

struct Builder<'t> {
    file: FileId,
    text: &'t str,
    stack: Vec<Frame>,
    /// Anchored nodes of the current document, by granit's anchor id.
    anchors: HashMap<usize, Built>,
    /// Nodes produced by alias expansion so far in the stream.
    replayed: usize,
    /// Nodes copied for anchors so far in the stream.
    anchored: usize,
    /// The current document's root, once built.
    root: Option<Node>,
    docs: Vec<Node>,
}

impl Builder<'_> {
    fn loc(&self, span: &Span) -> Loc {
        Loc {
            file: self.file,
            line: u32::try_from(span.start.line()).unwrap_or(u32::MAX),
            col: u32::try_from(span.start.col() + 1).unwrap_or(u32::MAX),
        }
    }

    fn error(&self, loc: Loc, message: impl Into<String>) -> ParseError {
        ParseError::Syntax {
            loc,
            message: message.into(),
        }
    }

    fn scan_error(&self, e: &ScanError) -> ParseError {
        let m = e.marker();
        let loc = Loc {
            file: self.file,
            line: u32::try_from(m.line()).unwrap_or(u32::MAX),
            col: u32::try_from(m.col() + 1).unwrap_or(u32::MAX),
        };
        if matches!(e.kind(), ErrorKind::UnknownAnchor) {
            return self.error(loc, "alias refers to an unknown anchor");
        }
        let info = e.info();
        let message = info.lines().next().unwrap_or_default();
        self.error(
            loc,
            if message.is_empty() {
                "invalid YAML"
            } else {
                message
            },
        )
    }

    fn event(&mut self, event: Event<'_>, span: Span) -> Result<(), ParseError> {
        let is_map = matches!(event, Event::MappingStart(..));
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let loc = self.loc(&span);
                if let Some(Frame {
                    kind:
                        Kind::Map {
                            key: key @ None, ..
                        },
                    size,
                    ..
                }) = self.stack.last_mut()
                    && anchor == 0
                {
                    // A key: read it straight into its text.
                    *size += 1;
                    let is_merge = &*text == "<<"
                        && matches!(style, ScalarStyle::Plain)
                        && tag.as_deref().is_none_or(|t| {
                            matches!(scalar::classify(t), scalar::TagKind::Core(n) if n == "merge")
                        });
                    if is_merge {
                        *key = Some(PendingKey::Merge);
                        return Ok(());
                    }
                    let (value, _) = scalar::resolve(text, style, tag.as_deref())
                        .map_err(|m| self.error(loc, m))?;
                    let k = Key::at(key_text(value), loc);
                    return self.set_key(k);
                }
                let (value, tag) =
                    scalar::resolve(text, style, tag.as_deref()).map_err(|m| self.error(loc, m))?;
                let built = Built {
                    node: Node { value, loc, tag },
                    size: 1,
                    height: 0,
                };
                if anchor != 0 {
                    self.remember(anchor, &built, loc)?;
                }
                self.add(built)
            }
            Event::SequenceStart(_, anchor, tag) | Event::MappingStart(_, anchor, tag) => {
                let loc = self.loc(&span);
                if self.stack.len() >= MAX_DEPTH {
                    return Err(self.error(
                        loc,
                        format!("mappings and sequences nested deeper than {MAX_DEPTH} levels"),
                    ));
                }
                let tag = scalar::collection_tag(tag.as_deref(), is_map)
                    .map_err(|m| self.error(loc, m))?;
                let kind = if is_map {
                    Kind::Map {
                        map: Map::new(),
                        key: None,
                        merged: Vec::new(),
                    }
                } else {
                    Kind::Seq(Vec::new())
                };
                self.stack.push(Frame {
                    kind,
                    loc,
                    tag,
                    anchor,
                    size: 1,
                    height: 1,
                });
                Ok(())
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(frame) = self.stack.pop() else {
                    let loc = self.loc(&span);
                    return Err(self.error(loc, "end of a collection that was not started"));
                };
                let value = match frame.kind {
                    Kind::Seq(items) => Value::Seq(items),
                    Kind::Map {
                        mut map, merged, ..
                    } => {
                        // Keys written in the mapping win over merged ones; among merged
                        // mappings, the first that has a key wins.
                        for m in merged {
                            for (k, v) in m {
                                if !map.contains_key(k.as_str()) {
                                    map.insert(k, v);
                                }
                            }
                        }
                        Value::Map(map)
                    }
                };
                let built = Built {
                    node: Node {
                        value,
                        loc: frame.loc,
                        tag: frame.tag,
                    },
                    size: frame.size,
                    height: frame.height,
                };
                if frame.anchor != 0 {
                    self.remember(frame.anchor, &built, frame.loc)?;
                }
                self.add(built)
            }
            Event::Alias(id) => {
                let loc = self.loc(&span);
                let name = span
                    .slice(self.text)
                    .unwrap_or("*")
                    .trim_start_matches('*')
                    .to_string();
                let Some(anchored) = self.anchors.get(&id) else {
                    return Err(if self.stack.iter().any(|f| f.anchor == id) {
                        self.error(
                            loc,
                            format!(
                                "cycle detected: alias *{name} refers to a node that contains it"
                            ),
                        )
                    } else {
                        self.error(loc, format!("alias *{name} refers to an unknown anchor"))
                    });
                };
                self.replayed = self.replayed.saturating_add(anchored.size);
                if self.replayed > MAX_REPLAYED_NODES {
                    return Err(self.error(
                        loc,
                        format!(
                            "alias replay limit exceeded: aliases expand to more than {MAX_REPLAYED_NODES} nodes"
                        ),
                    ));
                }
                if self.stack.len() + anchored.height > MAX_DEPTH {
                    return Err(self.error(
                        loc,
                        format!(
                            "mappings and sequences nested deeper than {MAX_DEPTH} levels once alias *{name} is expanded"
                        ),
                    ));
                }
                let built = Built {
                    node: anchored.node.clone(),
                    size: anchored.size,
                    height: anchored.height,
                };
                self.add(built)
            }
            Event::DocumentStart(..) => {
                if self.docs.len() >= MAX_DOCUMENTS {
                    let loc = self.loc(&span);
                    return Err(
                        self.error(loc, format!("more than {MAX_DOCUMENTS} YAML documents"))
                    );
                }
                self.anchors.clear();
                self.root = None;
                Ok(())
            }
            Event::DocumentEnd => {
                let loc = self.loc(&span);
                let root = self
                    .root
                    .take()
                    .unwrap_or_else(|| Node::at(Value::Null, loc));
                self.docs.push(root);
                self.anchors.clear();
                Ok(())
            }
            // Stream markers, and presentation events this parser is not asked for.
            _ => Ok(()),
        }
    }

    fn remember(&mut self, anchor: usize, built: &Built, loc: Loc) -> Result<(), ParseError> {
        self.anchored = self.anchored.saturating_add(built.size);
        if self.anchored > MAX_ANCHORED_NODES {
            return Err(self.error(
                loc,
                format!("anchors hold more than {MAX_ANCHORED_NODES} nodes"),
            ));
        }
        self.anchors.insert(
            anchor,
            Built {
                node: built.node.clone(),
                size: built.size,
                height: built.height,
            },
        );
        Ok(())
    }

    /// Places a finished node: in the open collection, or as the document's root.
    fn add(&mut self, built: Built) -> Result<(), ParseError> {
        let Some(frame) = self.stack.last_mut() else {
            self.root = Some(built.node);
            return Ok(());
        };
        frame.size = frame.size.saturating_add(built.size);
        frame.height = frame.height.max(built.height + 1);
        match &mut frame.kind {
            Kind::Seq(items) => {
                items.push(built.node);
                Ok(())
            }
            Kind::Map { map, key, merged } => match key.take() {
                Some(PendingKey::Key(k)) => {
                    map.insert(k, built.node);
                    Ok(())
                }
                Some(PendingKey::Merge) => {
                    let node = built.node;
                    match node.value {
                        Value::Null => {}
                        Value::Map(m) => merged.push(m),
                        Value::Seq(items) => {
                            for item in items {
                                match item.value {
                                    Value::Map(m) => merged.push(m),
                                    _ => return Err(merge_error(item.loc)),
                                }
                            }
                        }
                        _ => return Err(merge_error(node.loc)),
                    }
                    Ok(())
                }
                None => {
                    // A collection or an alias as a key: its text.
                    let loc = built.node.loc;
                    let k = Key::at(key_text(built.node.value), loc);
                    self.set_key(k)
                }
            },
        }
    }

    /// Records a mapping key, refusing one the mapping already has.
    fn set_key(&mut self, k: Key) -> Result<(), ParseError> {
        if let Some(Frame {
            kind: Kind::Map { map, key, .. },
            ..
        }) = self.stack.last_mut()
        {
            if let Some((first, _)) = map.get_key_value(k.as_str()) {
                let message = format!(
                    "mapping key {:?} already defined at line {}",
                    k.name, first.loc.line
                );
                return Err(self.error(k.loc, message));
            }
            *key = Some(PendingKey::Key(k));
        }
        Ok(())
    }
}

fn merge_error(loc: Loc) -> ParseError {
    ParseError::Syntax {
        loc,
        message: "the value of a merge key (<<) must be a mapping or a sequence of mappings"
            .to_string(),
    }
}

/// The text a mapping key is known by: scalars as written in plain form, collections by a
/// placeholder (compose has no such keys).
fn key_text(value: Value) -> String {
    match value {
        Value::String(s) => s,
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => format_float(f),
        Value::Null => "null".to_string(),
        Value::Seq(_) | Value::Map(_) => "<complex key>".to_string(),
    }
}
