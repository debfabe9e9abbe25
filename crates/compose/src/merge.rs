//! Phase 6a, merge: several compose documents → one, by the Compose Specification's merge rules,
//! as compose-go's `override.Merge` applies them.
//!
//! - Mappings are merged key by key, sequences are appended, scalars are replaced.
//! - `command`, `entrypoint`, `healthcheck.test` and each `ulimits` entry are replaced whole.
//! - `environment`, `labels`, `annotations`, `sysctls`, `tmpfs`, `dns*`, `env_file`,
//!   `label_file`, build `args`/`labels`/`additional_contexts`, deploy labels and network/volume
//!   labels are turned into the sequence form (`KEY=VALUE`, a mapping's entries sorted) and
//!   appended, so that a mapping and a sequence of the same thing merge; `extra_hosts` does the
//!   same but drops exact repetitions. [`crate::unicity`] then keeps the last entry of each key.
//! - A service's `networks`, `models` and `depends_on` are merged as mappings (a sequence is
//!   first turned into a mapping); `build: path` is merged as `build: {context: path}`.
//! - `logging` options are merged only when both files name the same driver (or one names none).
//! - A network's `ipam.config` entries are merged by `subnet`.
//! - A node tagged `!reset` in the overriding document removes the inherited value; `!override`
//!   replaces it instead of merging. No `!reset`/`!override` tag is left in the result.
//!
//! Every node keeps its [`crate::yaml::Loc`]: the node that wins keeps its own; a merged mapping
//! keeps the location of its first definition.

use crate::error::{Error, ErrorKind};
use crate::yaml::{Key, Map, Node, Tag, Value, YamlPath};

/// Merges `over` onto `base`, two whole compose documents (`base` may be the result of earlier
/// merges). A null document counts as an empty one.
pub fn merge(base: Node, over: Node) -> Result<Node, Error> {
    let base = root_map(base)?;
    if over.is_null() && over.tag.is_none() {
        return Ok(base);
    }
    if over.as_map().is_none() && over.tag != Some(Tag::Reset) {
        return Err(top_level_error(&over));
    }
    let mut cx = Cx::default();
    match merge_value(base, over, &mut cx)? {
        Some(n) => Ok(n),
        None => Ok(Node::empty_map()),
    }
}

/// Merges the service definition `over` onto `base`, by the rules for `services.*` (what
/// `extends` does: `base` is the extended service, `over` the extending one).
pub fn merge_service(base: &Node, over: &Node) -> Result<Node, Error> {
    let base = match strip_tags(base.clone()) {
        Some(b) if !b.is_null() => b,
        _ => Node::empty_map().with_loc(base.loc),
    };
    let mut cx = Cx::default();
    cx.push_key("services");
    cx.push_key("x");
    if !over.is_null() && over.as_map().is_none() {
        return Err(
            Error::new(ErrorKind::InvalidValue, "a service must be a mapping").at(over.loc),
        );
    }
    let merged = merge_value(base, over.clone(), &mut cx)?;
    Ok(merged.unwrap_or_else(|| Node::empty_map().with_loc(over.loc)))
}

/// Resolves the `!reset` and `!override` tags of one document on its own, as compose-go does
/// when it loads a file: a node tagged `!reset` is removed (from its mapping or sequence), an
/// `!override` tag is dropped and its value kept. The result carries neither tag.
///
/// [`merge`] does this to both its inputs; call it for a document that is not merged with
/// another (a single compose file).
pub fn apply_resets(doc: Node) -> Result<Node, Error> {
    Ok(strip_tags(doc).unwrap_or_else(Node::empty_map))
}

/// Removes `!reset` nodes and `!override` tags, recursively. `None` when `node` itself is reset.
pub(crate) fn strip_tags(mut node: Node) -> Option<Node> {
    strip_tags_in_place(&mut node).then_some(node)
}

/// [`strip_tags`] without rebuilding anything: `false` when `node` itself is reset.
fn strip_tags_in_place(node: &mut Node) -> bool {
    match node.tag {
        Some(Tag::Reset) => return false,
        Some(Tag::Override) => node.tag = None,
        _ => {}
    }
    match &mut node.value {
        Value::Map(m) => m.retain(|_, v| strip_tags_in_place(v)),
        Value::Seq(items) => items.retain_mut(strip_tags_in_place),
        _ => {}
    }
    true
}

fn root_map(base: Node) -> Result<Node, Error> {
    let loc = base.loc;
    match strip_tags(base) {
        None => Ok(Node::empty_map().with_loc(loc)),
        Some(n) if n.is_null() => Ok(Node::empty_map().with_loc(loc)),
        Some(n) if n.as_map().is_some() => Ok(n),
        Some(n) => Err(top_level_error(&n)),
    }
}

fn top_level_error(n: &Node) -> Error {
    Error::new(
        ErrorKind::InvalidValue,
        format!("top-level object must be a mapping, not {}", n.kind_name()),
    )
    .at(n.loc)
}

/// Where the merge is: the keys (for matching the special rules) and the YAML path (for errors).
#[derive(Default)]
struct Cx {
    keys: Vec<String>,
}

impl Cx {
    fn push_key(&mut self, k: &str) {
        self.keys.push(k.to_string());
    }
    fn pop(&mut self) {
        self.keys.pop();
    }
    fn path(&self) -> YamlPath {
        self.keys.iter().fold(YamlPath::root(), |p, k| p.key(k))
    }
    fn matches(&self, pattern: &str) -> bool {
        let mut n = 0;
        for (i, seg) in pattern.split('.').enumerate() {
            match self.keys.get(i) {
                Some(k) if seg == "*" || seg == k => n += 1,
                _ => return false,
            }
        }
        n == self.keys.len()
    }
}

/// The merge rules that differ from the generic one.
#[derive(Clone, Copy)]
enum Rule {
    /// The overriding value replaces the inherited one.
    Replace,
    /// Both sides as `KEY=VALUE` sequences, appended.
    ToSequence,
    /// As `ToSequence`, without the overriding entries that are already there.
    ExtraHosts,
    /// `build: ctx` is `build: {context: ctx}`, then mappings merged.
    Build,
    /// Sequences of service names become mappings (with default conditions), then merged.
    DependsOn,
    /// Sequences of names become mappings of name → null, then merged.
    ToMapping,
    /// Options merged only when the driver is the same.
    Logging,
    /// Entries matched by `subnet`.
    IpamConfig,
}

const RULES: &[(&str, Rule)] = &[
    ("networks.*.ipam.config", Rule::IpamConfig),
    ("networks.*.labels", Rule::ToSequence),
    ("volumes.*.labels", Rule::ToSequence),
    ("services.*.annotations", Rule::ToSequence),
    ("services.*.build", Rule::Build),
    ("services.*.build.args", Rule::ToSequence),
    ("services.*.build.additional_contexts", Rule::ToSequence),
    ("services.*.build.extra_hosts", Rule::ExtraHosts),
    ("services.*.build.labels", Rule::ToSequence),
    ("services.*.command", Rule::Replace),
    ("services.*.depends_on", Rule::DependsOn),
    ("services.*.deploy.labels", Rule::ToSequence),
    ("services.*.dns", Rule::ToSequence),
    ("services.*.dns_opt", Rule::ToSequence),
    ("services.*.dns_search", Rule::ToSequence),
    ("services.*.entrypoint", Rule::Replace),
    ("services.*.env_file", Rule::ToSequence),
    ("services.*.label_file", Rule::ToSequence),
    ("services.*.environment", Rule::ToSequence),
    ("services.*.extra_hosts", Rule::ExtraHosts),
    ("services.*.healthcheck.test", Rule::Replace),
    ("services.*.labels", Rule::ToSequence),
    ("services.*.logging", Rule::Logging),
    ("services.*.models", Rule::ToMapping),
    ("services.*.networks", Rule::ToMapping),
    ("services.*.sysctls", Rule::ToSequence),
    ("services.*.tmpfs", Rule::ToSequence),
    ("services.*.ulimits.*", Rule::Replace),
];

fn rule_for(cx: &Cx) -> Option<Rule> {
    RULES.iter().find(|(p, _)| cx.matches(p)).map(|(_, r)| *r)
}

/// Merges one value. `base` carries no tags; `over` may. `None` means "remove the key".
fn merge_value(base: Node, over: Node, cx: &mut Cx) -> Result<Option<Node>, Error> {
    match over.tag {
        Some(Tag::Reset) => return Ok(None),
        Some(Tag::Override) => return Ok(strip_tags(over)),
        _ => {}
    }
    if let Some(rule) = rule_for(cx) {
        return apply_rule(rule, base, over, cx);
    }
    generic(base, over, cx)
}

fn generic(base: Node, over: Node, cx: &mut Cx) -> Result<Option<Node>, Error> {
    if over.is_null() {
        return Ok(Some(base));
    }
    match (base.value, over.value) {
        (Value::Map(b), Value::Map(o)) => {
            let merged = merge_mappings(b, o, cx)?;
            Ok(Some(Node {
                value: Value::Map(merged),
                loc: base.loc,
                tag: base.tag,
            }))
        }
        (Value::Seq(mut b), Value::Seq(o)) => {
            b.extend(o.into_iter().filter_map(strip_tags));
            Ok(Some(Node {
                value: Value::Seq(b),
                loc: base.loc,
                tag: base.tag,
            }))
        }
        (Value::Map(_), v) | (Value::Seq(_), v) => {
            let over = Node {
                value: v,
                loc: over.loc,
                tag: over.tag,
            };
            Err(cannot_override(&over, cx))
        }
        (_, v) => Ok(strip_tags(Node {
            value: v,
            loc: over.loc,
            tag: over.tag,
        })),
    }
}

fn cannot_override(over: &Node, cx: &Cx) -> Error {
    Error::new(
        ErrorKind::Conflict,
        format!("cannot override {} with {}", cx.path(), over.kind_name()),
    )
    .at(over.loc)
    .path(cx.path())
    .hint("tag the value `!override` to replace the inherited one, or `!reset` to remove it")
}

/// Merges the entries of `over` into `base`: new keys are added at the end, existing ones merged
/// in place, keys tagged `!reset` removed.
fn merge_mappings(mut base: Map, over: Map, cx: &mut Cx) -> Result<Map, Error> {
    for (k, v) in over {
        if v.tag == Some(Tag::Reset) {
            base.shift_remove(k.as_str());
            continue;
        }
        let Some(slot) = base.get_mut(k.as_str()) else {
            if let Some(v) = strip_tags(v) {
                base.insert(k, v);
            }
            continue;
        };
        let current = std::mem::replace(slot, Node::null());
        cx.push_key(k.as_str());
        let merged = merge_value(current, v, cx);
        cx.pop();
        match merged? {
            Some(m) => *slot = m,
            None => {
                base.shift_remove(k.as_str());
            }
        }
    }
    Ok(base)
}

fn apply_rule(rule: Rule, base: Node, over: Node, cx: &mut Cx) -> Result<Option<Node>, Error> {
    let loc = base.loc;
    match rule {
        Rule::Replace => Ok(strip_tags(over)),
        Rule::ToSequence | Rule::ExtraHosts => {
            let reset = reset_keys(&over);
            let mut seq = to_sequence(base, cx)?;
            if !reset.is_empty() {
                seq.retain(|n| {
                    n.as_str()
                        .is_none_or(|s| !reset.iter().any(|r| entry_key(s) == r))
                });
            }
            let Some(over) = strip_tags(over) else {
                return Ok(Some(Node::at(Value::Seq(seq), loc)));
            };
            let more = to_sequence(over, cx)?;
            if matches!(rule, Rule::ExtraHosts) {
                let fresh: Vec<Node> = more.into_iter().filter(|m| !seq.contains(m)).collect();
                seq.extend(fresh);
            } else {
                seq.extend(more);
            }
            Ok(Some(Node::at(Value::Seq(seq), loc)))
        }
        Rule::Build => {
            let b = build_map(base);
            let o = build_map(over);
            Ok(Some(Node::at(Value::Map(merge_mappings(b, o, cx)?), loc)))
        }
        Rule::DependsOn => {
            let mut default = Map::new();
            default.insert(Key::new("condition"), Node::string("service_started"));
            default.insert(Key::new("required"), Node::bool(true));
            let b = to_mapping(base, Some(&default), cx)?;
            let o = to_mapping(over, Some(&default), cx)?;
            Ok(Some(Node::at(Value::Map(merge_mappings(b, o, cx)?), loc)))
        }
        Rule::ToMapping => {
            let b = to_mapping(base, None, cx)?;
            let o = to_mapping(over, None, cx)?;
            Ok(Some(Node::at(Value::Map(merge_mappings(b, o, cx)?), loc)))
        }
        Rule::Logging => {
            let same_driver = match (base.get("driver"), over.get("driver")) {
                (Some(b), Some(o)) => b == o,
                _ => true,
            };
            if base.as_map().is_some() && over.as_map().is_some() && !same_driver {
                return Ok(strip_tags(over));
            }
            generic(base, over, cx)
        }
        Rule::IpamConfig => merge_ipam_config(base, over, cx).map(Some),
    }
}

/// Keys that a mapping in the overriding file resets (`KEY: !reset`).
fn reset_keys(over: &Node) -> Vec<String> {
    match over.as_map() {
        Some(m) => m
            .iter()
            .filter(|(_, v)| v.tag == Some(Tag::Reset))
            .map(|(k, _)| k.name.clone())
            .collect(),
        None => Vec::new(),
    }
}

/// The key of a `KEY=VALUE` entry.
fn entry_key(s: &str) -> &str {
    s.split_once('=').map_or(s, |(k, _)| k)
}

/// A value as a sequence: a mapping as its `KEY=VALUE` entries (a null value gives `KEY`, a
/// sequence value one entry per item) sorted, a scalar as a one-item sequence.
fn to_sequence(node: Node, cx: &Cx) -> Result<Vec<Node>, Error> {
    match node.value {
        Value::Null => Ok(Vec::new()),
        Value::Seq(items) => Ok(items),
        Value::Map(m) => {
            let mut seq = Vec::with_capacity(m.len());
            for (k, v) in m {
                match &v.value {
                    Value::Null => seq.push(Node::string(k.name.clone()).with_loc(k.loc)),
                    Value::Seq(items) => {
                        for item in items {
                            let text = entry_text(item, &k, cx)?;
                            seq.push(Node::string(format!("{}={text}", k.name)).with_loc(item.loc));
                        }
                    }
                    _ => {
                        let text = entry_text(&v, &k, cx)?;
                        seq.push(Node::string(format!("{}={text}", k.name)).with_loc(v.loc));
                    }
                }
            }
            seq.sort_by(|a, b| a.as_str().unwrap_or("").cmp(b.as_str().unwrap_or("")));
            Ok(seq)
        }
        _ => Ok(vec![node]),
    }
}

fn entry_text(v: &Node, k: &Key, cx: &Cx) -> Result<String, Error> {
    v.scalar_text().ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidValue,
            format!(
                "{} must be a string, number or boolean, not {}",
                k.name,
                v.kind_name()
            ),
        )
        .at(v.loc)
        .path(cx.path().key(&k.name))
    })
}

fn build_map(node: Node) -> Map {
    let loc = node.loc;
    match node.value {
        Value::String(s) => {
            let mut m = Map::new();
            m.insert(Key::at("context", loc), Node::at(Value::String(s), loc));
            m
        }
        Value::Map(m) => m,
        _ => Map::new(),
    }
}

/// A sequence of names as a mapping name → `default` (or null); a mapping as it is.
fn to_mapping(node: Node, default: Option<&Map>, cx: &Cx) -> Result<Map, Error> {
    match node.value {
        Value::Map(m) => Ok(m),
        Value::Seq(items) => {
            let mut m = Map::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                let Some(name) = item.scalar_text() else {
                    return Err(Error::new(
                        ErrorKind::InvalidValue,
                        format!("expected a name, found {}", item.kind_name()),
                    )
                    .at(item.loc)
                    .path(cx.path().index(i)));
                };
                let value = match default {
                    Some(d) => Node::at(Value::Map(d.clone()), item.loc),
                    None => Node::at(Value::Null, item.loc),
                };
                m.insert(Key::at(name, item.loc), value);
            }
            Ok(m)
        }
        _ => Ok(Map::new()),
    }
}

/// `networks.*.ipam.config`: an overriding entry with the `subnet` of an inherited one is merged
/// into it; other entries are added.
fn merge_ipam_config(base: Node, over: Node, cx: &mut Cx) -> Result<Node, Error> {
    let loc = base.loc;
    let over = strip_tags(over).unwrap_or_else(Node::null);
    let (Value::Seq(configs), Value::Seq(overrides)) = (base.value, over.value) else {
        return Err(
            Error::new(ErrorKind::InvalidValue, "ipam config must be a sequence")
                .at(over.loc)
                .path(cx.path()),
        );
    };
    if configs.is_empty() {
        return Ok(Node::at(Value::Seq(overrides), loc));
    }
    let subnet = |n: &Node| n.get("subnet").cloned();
    let mut out: Vec<Node> = Vec::new();
    for original in configs {
        let mut right = original;
        for left in &overrides {
            if subnet(left) != subnet(&right) && !out.iter().any(|c| subnet(c) == subnet(left)) {
                out.push(left.clone());
                continue;
            }
            let (Value::Map(r), Value::Map(l)) = (right.value.clone(), left.value.clone()) else {
                return Err(Error::new(
                    ErrorKind::InvalidValue,
                    "an ipam config entry must be a mapping",
                )
                .at(left.loc)
                .path(cx.path()));
            };
            let merged = Node::at(Value::Map(merge_mappings(r, l, cx)?), right.loc);
            right = merged.clone();
            match out.iter().position(|c| subnet(c) == subnet(&merged)) {
                Some(i) => {
                    if let Some(slot) = out.get_mut(i) {
                        *slot = merged;
                    }
                }
                None => out.push(merged),
            }
        }
    }
    Ok(Node::at(Value::Seq(out), loc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse;

    fn y(s: &str) -> Node {
        parse("t.yaml", s).unwrap()
    }

    fn has_tags(n: &Node) -> bool {
        matches!(n.tag, Some(Tag::Reset | Tag::Override))
            || match &n.value {
                Value::Map(m) => m.values().any(has_tags),
                Value::Seq(s) => s.iter().any(has_tags),
                _ => false,
            }
    }

    #[test]
    fn mappings_merge_sequences_append_scalars_replace() {
        let got = merge(
            y("services:\n  a:\n    image: x\n    cap_add: [A]\n"),
            y("services:\n  a:\n    image: y\n    cap_add: [B]\n    init: true\n"),
        )
        .unwrap();
        assert_eq!(
            got,
            y("services:\n  a:\n    image: y\n    cap_add: [A, B]\n    init: true\n")
        );
    }

    #[test]
    fn reset_removes_and_override_replaces() {
        let got = merge(
            y("services:\n  a:\n    image: x\n    ports: ['80:80']\n    labels: {A: b}\n"),
            y("services:\n  a:\n    image: !reset null\n    ports: !override ['81:81']\n"),
        )
        .unwrap();
        assert_eq!(
            got,
            y("services:\n  a:\n    ports: ['81:81']\n    labels: {A: b}\n")
        );
        assert!(!has_tags(&got));
    }

    #[test]
    fn reset_key_inside_environment_removes_sequence_entry() {
        let got = merge(
            y("services:\n  a:\n    environment: [FOO=1, BAR=2]\n"),
            y("services:\n  a:\n    environment:\n      FOO: !reset\n"),
        )
        .unwrap();
        assert_eq!(got, y("services:\n  a:\n    environment: [BAR=2]\n"));
    }

    #[test]
    fn winner_keeps_its_location() {
        let base = parse("base.yaml", "services:\n  a:\n    image: x\n    user: me\n").unwrap();
        let over = parse("over.yaml", "services:\n  a:\n    image: y\n").unwrap();
        let got = merge(base, over).unwrap();
        let a = got.get("services").unwrap().get("a").unwrap();
        assert_eq!(a.get("image").unwrap().loc.to_string(), "over.yaml:3:12");
        assert_eq!(a.get("user").unwrap().loc.to_string(), "base.yaml:4:11");
    }

    #[test]
    fn type_mismatch_is_an_error_with_path() {
        let e = merge(
            y("services:\n  a:\n    build: {context: .}\n    dns: [a]\n    x: {a: 1}\n"),
            y("services:\n  a:\n    x: [1]\n"),
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Conflict);
        assert_eq!(e.path.to_string(), "services.a.x");
        assert_eq!(e.loc.line, 3);
    }

    #[test]
    fn apply_resets_strips_a_single_file() {
        let got = apply_resets(y("services:\n  a:\n    image: !reset x\n    ports: !override [1]\n    dns: [!reset a, b]\n")).unwrap();
        assert_eq!(got, y("services:\n  a:\n    ports: [1]\n    dns: [b]\n"));
    }

    #[test]
    fn merge_service_uses_service_rules() {
        let got = merge_service(
            &y("command: [a]\nenvironment: {A: '1'}\nbuild: .\n"),
            &y("command: [b]\nenvironment: [B=2]\nbuild: {dockerfile: D}\n"),
        )
        .unwrap();
        assert_eq!(
            got,
            y("command: [b]\nenvironment: [A=1, B=2]\nbuild: {context: ., dockerfile: D}\n")
        );
    }

    #[test]
    fn depends_on_sequence_becomes_mapping() {
        let got = merge(
            y("services:\n  a:\n    depends_on: [db]\n"),
            y("services:\n  a:\n    depends_on:\n      db: {condition: service_healthy}\n"),
        )
        .unwrap();
        assert_eq!(
            got,
            y(
                "services:\n  a:\n    depends_on:\n      db: {condition: service_healthy, required: true}\n"
            )
        );
    }

    #[test]
    fn logging_driver_change_drops_options() {
        let got = merge(
            y("services:\n  a:\n    logging: {driver: local, options: {a: b}}\n"),
            y("services:\n  a:\n    logging: {driver: syslog}\n"),
        )
        .unwrap();
        assert_eq!(got, y("services:\n  a:\n    logging: {driver: syslog}\n"));
    }

    #[test]
    fn non_mapping_document_is_refused() {
        assert!(merge(y("[1]"), y("a: 1")).is_err());
        assert!(merge(y("a: 1"), y("[1]")).is_err());
    }
}
