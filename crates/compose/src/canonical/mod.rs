//! Phase 7, canonical form: short syntax → long syntax, on the merged YAML tree.
//!
//! After [`canonicalize`], every value has the shape `docker compose config` prints (and the
//! Compose Specification's long syntax): ports and volumes are mappings, `environment` and
//! labels are mappings of strings, `depends_on` a mapping of conditions, `command` a list of
//! words, and so on. It reproduces compose-go's `transform.Canonical` transformers plus the
//! list → mapping conversions its `types` decoders do. Defaults that compose-go fills later
//! (`SetDefaultValues`, `Normalize`: port `mode`/`protocol` of long entries, secret targets,
//! build `context`/`dockerfile`, default network, names) are not filled here.
//!
//! Nodes already in long form are left untouched; rewritten nodes keep the location and tag of
//! the node they came from, so later errors still point at what the user wrote.

pub mod ports;
mod shellwords;
mod volume;

use crate::error::{Error, ErrorKind};
use crate::yaml::{Key, Loc, Map, Node, Value, YamlPath};

/// Something worth telling the user that does not stop loading.
#[derive(Clone, Debug, PartialEq)]
pub struct Warning {
    /// Where the node the warning is about was written.
    pub loc: Loc,
    /// Its YAML path.
    pub path: YamlPath,
    /// The explanation, lower case, no final period.
    pub message: String,
}

/// Rewrites a merged compose document into canonical (long) syntax, in place.
///
/// Returns the warnings (deprecated `external.name`, a command cut at a shell operator); fails
/// with [`ErrorKind::InvalidValue`] on a value that has no long form (an invalid port or volume
/// spec, a value of the wrong type), located at the offending node.
pub fn canonicalize(doc: &mut Node) -> Result<Vec<Warning>, Error> {
    let mut cx = Canon {
        warnings: Vec::new(),
    };
    let root = YamlPath::root();
    if let Some(top) = doc.as_map_mut() {
        for (key, node) in top.iter_mut() {
            let p = root.key(key.as_str());
            match key.as_str() {
                "services" => {
                    for_each_entry(node, &p, |svc, p| cx.service(svc, p))?;
                }
                "networks" | "volumes" | "secrets" | "configs" => {
                    for_each_entry(node, &p, |res, p| cx.resource(res, p))?;
                }
                "include" => cx.include(node, &p)?,
                _ => {}
            }
        }
    }
    Ok(cx.warnings)
}

struct Canon {
    warnings: Vec<Warning>,
}

fn invalid(node: &Node, path: &YamlPath, message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidValue, message)
        .at(node.loc)
        .path(path.clone())
}

/// Replaces `node`'s value, keeping its location and tag.
fn replace(node: &mut Node, value: Value) {
    node.value = value;
}

/// A new node placed where `origin` was written.
fn derived(value: Value, origin: Loc) -> Node {
    Node::at(value, origin)
}

fn string_at(s: impl Into<String>, origin: Loc) -> Node {
    derived(Value::String(s.into()), origin)
}

/// Calls `f` on every value of a mapping node (nothing for null or other kinds: the schema
/// and `de` report those).
fn for_each_entry(
    node: &mut Node,
    path: &YamlPath,
    mut f: impl FnMut(&mut Node, &YamlPath) -> Result<(), Error>,
) -> Result<(), Error> {
    if let Some(m) = node.as_map_mut() {
        for (k, v) in m.iter_mut() {
            f(v, &path.key(k.as_str()))?;
        }
    }
    Ok(())
}

fn for_each_item(
    node: &mut Node,
    path: &YamlPath,
    mut f: impl FnMut(&mut Node, &YamlPath) -> Result<(), Error>,
) -> Result<(), Error> {
    if let Some(items) = node.as_seq_mut() {
        for (i, item) in items.iter_mut().enumerate() {
            f(item, &path.index(i))?;
        }
    }
    Ok(())
}

/// What a `KEY` list item without `=` maps to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum NoValue {
    /// `null` (environment, build args: "take it from the environment").
    Null,
    /// `""` (labels, annotations, sysctls).
    Empty,
    /// An error (`additional_contexts`).
    Refused,
}

/// A `KEY=VALUE` list → a mapping; a mapping's scalar values → their text. `null` values stay
/// `null` when `missing` is [`NoValue::Null`] and become `""` otherwise.
fn to_mapping(node: &mut Node, path: &YamlPath, missing: NoValue) -> Result<(), Error> {
    match &mut node.value {
        Value::Seq(items) => {
            let mut m = Map::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let Some(text) = item.scalar_text() else {
                    return Err(invalid(
                        item,
                        &path.index(i),
                        format!(
                            "invalid entry: expected KEY=VALUE, got {}",
                            item.kind_name()
                        ),
                    ));
                };
                let (k, v) = match text.split_once('=') {
                    Some((k, v)) => (k.to_string(), Value::String(v.to_string())),
                    None => match missing {
                        NoValue::Null => (text, Value::Null),
                        NoValue::Empty => (text, Value::String(String::new())),
                        NoValue::Refused => {
                            return Err(invalid(
                                item,
                                &path.index(i),
                                format!("invalid value {text}, expected key=value"),
                            )
                            .hint("write each entry as KEY=VALUE"));
                        }
                    },
                };
                m.insert(Key::at(k, item.loc), derived(v, item.loc));
            }
            replace(node, Value::Map(m));
        }
        Value::Map(m) => {
            for (k, v) in m.iter_mut() {
                match &v.value {
                    Value::Null if missing != NoValue::Null => {
                        v.value = Value::String(String::new())
                    }
                    Value::Null | Value::String(_) => {}
                    Value::Bool(_) | Value::Int(_) | Value::Float(_) => {
                        v.value = Value::String(v.scalar_text().unwrap_or_default())
                    }
                    Value::Seq(_) | Value::Map(_) => {
                        return Err(invalid(
                            v,
                            &path.key(k.as_str()),
                            format!(
                                "invalid value: expected a string, a number, a boolean or null, got {}",
                                v.kind_name()
                            ),
                        ));
                    }
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// A string → a one-item list.
fn string_to_list(node: &mut Node) {
    if let Value::String(s) = &node.value {
        let item = string_at(s.clone(), node.loc);
        replace(node, Value::Seq(vec![item]));
    }
}

/// A list of names → a mapping of name → null (service `networks`, `models`).
fn names_to_mapping(node: &mut Node, path: &YamlPath) -> Result<(), Error> {
    if let Value::Seq(items) = &node.value {
        let mut m = Map::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let Some(name) = item.as_str() else {
                return Err(invalid(
                    item,
                    &path.index(i),
                    format!("invalid entry: expected a name, got {}", item.kind_name()),
                ));
            };
            m.insert(Key::at(name, item.loc), derived(Value::Null, item.loc));
        }
        replace(node, Value::Map(m));
    }
    Ok(())
}

impl Canon {
    fn warn(&mut self, node: &Node, path: &YamlPath, message: impl Into<String>) {
        self.warnings.push(Warning {
            loc: node.loc,
            path: path.clone(),
            message: message.into(),
        });
    }

    fn service(&mut self, svc: &mut Node, path: &YamlPath) -> Result<(), Error> {
        let Some(m) = svc.as_map_mut() else {
            return Ok(());
        };
        for (k, v) in m.iter_mut() {
            let p = path.key(k.as_str());
            if v.is_null() {
                continue;
            }
            match k.as_str() {
                "annotations" | "labels" | "sysctls" => to_mapping(v, &p, NoValue::Empty)?,
                "environment" => to_mapping(v, &p, NoValue::Null)?,
                "extra_hosts" => extra_hosts(v, &p)?,
                "depends_on" => depends_on(v, &p)?,
                "networks" | "models" => names_to_mapping(v, &p)?,
                "secrets" | "configs" => for_each_item(v, &p, file_mount)?,
                "build" => build(v, &p)?,
                "env_file" => env_file(v, &p)?,
                "label_file" | "dns" | "dns_search" | "tmpfs" => string_to_list(v),
                "ulimits" => for_each_entry(v, &p, ulimit)?,
                "healthcheck" => healthcheck(v),
                "command" | "entrypoint" => self.shell_command(v, &p)?,
                "expose" => expose(v, &p)?,
                "devices" => for_each_item(v, &p, device)?,
                "gpus" => gpus(v, &p)?,
                "extends" => extends(v, &p)?,
                "develop" => develop(v),
                "ports" => ports_list(v, &p)?,
                "volumes" => for_each_item(v, &p, volume_mount)?,
                "deploy" => {
                    if let Some(labels) = v.get_mut("labels") {
                        to_mapping(labels, &p.key("labels"), NoValue::Empty)?;
                    }
                }
                "post_start" | "pre_stop" => {
                    for_each_item(v, &p, |hook, hp| {
                        if let Some(cmd) = hook.get_mut("command") {
                            self.shell_command(cmd, &hp.key("command"))?;
                        }
                        if let Some(env) = hook.get_mut("environment") {
                            to_mapping(env, &hp.key("environment"), NoValue::Null)?;
                        }
                        Ok(())
                    })?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// A command string → its words, split as a shell would (without running one).
    fn shell_command(&mut self, node: &mut Node, path: &YamlPath) -> Result<(), Error> {
        let Value::String(line) = &node.value else {
            return Ok(());
        };
        let split = shellwords::split(line).map_err(|reason| {
            invalid(node, path, format!("invalid command {line:?}: {reason}"))
                .hint("close every quote and parenthesis, or write the command as a list of words")
        })?;
        if let Some(at) = split.stopped_at {
            let rest = line.get(at..).unwrap_or_default();
            self.warn(
                node,
                path,
                format!("command {line:?} is cut before {rest:?}: shell operators need a shell, use [\"sh\", \"-c\", \"…\"]"),
            );
        }
        let loc = node.loc;
        let words = split.words.into_iter().map(|w| string_at(w, loc)).collect();
        replace(node, Value::Seq(words));
        Ok(())
    }

    /// A top-level network, volume, secret or config: `external: {name: x}` (deprecated) →
    /// `external: true` and `name: x`; labels and driver options → mappings of strings.
    fn resource(&mut self, node: &mut Node, path: &YamlPath) -> Result<(), Error> {
        let Some(m) = node.as_map_mut() else {
            return Ok(());
        };
        for key in ["labels", "driver_opts"] {
            if let Some(v) = m.get_mut(key) {
                to_mapping(v, &path.key(key), NoValue::Empty)?;
            }
        }
        let Some(ext) = m.get_mut("external") else {
            return Ok(());
        };
        let ext_path = path.key("external");
        let Some(ext_map) = ext.as_map() else {
            return Ok(());
        };
        let ext_name = ext_map.get("name").cloned();
        ext.value = Value::Bool(true);
        let Some(ext_name) = ext_name else {
            return Ok(());
        };
        self.warnings.push(Warning {
            loc: ext_name.loc,
            path: ext_path.key("name"),
            message: "external.name is deprecated, set name and external: true".to_string(),
        });
        match m.get("name") {
            Some(name) if name.value != ext_name.value => Err(invalid(
                name,
                &path.key("name"),
                "name and external.name conflict; only use name",
            )
            .hint("remove external.name and keep name")),
            Some(_) => Ok(()),
            None => {
                m.insert(Key::at("name", ext_name.loc), ext_name);
                Ok(())
            }
        }
    }

    /// `include:` entries: a path string → `{path: [x]}`, a single `path` → a list.
    fn include(&mut self, node: &mut Node, path: &YamlPath) -> Result<(), Error> {
        for_each_item(node, path, |item, p| {
            match &item.value {
                Value::String(s) => {
                    let loc = item.loc;
                    let mut m = Map::new();
                    m.insert(
                        Key::at("path", loc),
                        derived(Value::Seq(vec![string_at(s.clone(), loc)]), loc),
                    );
                    replace(item, Value::Map(m));
                }
                Value::Map(_) => {
                    for key in ["path", "env_file"] {
                        if let Some(v) = item.get_mut(key) {
                            string_to_list(v);
                        }
                    }
                }
                _ => {
                    return Err(invalid(
                        item,
                        p,
                        format!(
                            "invalid include: expected a path or a mapping, got {}",
                            item.kind_name()
                        ),
                    ));
                }
            }
            Ok(())
        })
    }
}

/// `host:ip` / `host=ip` list → mapping host → ip (a list when a host has several IPs);
/// brackets around IPv6 addresses removed, as compose-go does.
fn extra_hosts(node: &mut Node, path: &YamlPath) -> Result<(), Error> {
    fn strip(ip: &str) -> &str {
        if ip.len() > 2 && ip.starts_with('[') && ip.ends_with(']') {
            &ip[1..ip.len() - 1]
        } else {
            ip
        }
    }
    fn check_host(host: &str, node: &Node, path: &YamlPath) -> Result<(), Error> {
        if host.is_empty() || host.contains([':', '=']) {
            return Err(invalid(node, path, format!("bad host name '{host}'"))
                .hint("write each entry as HOST=IP"));
        }
        Ok(())
    }
    match &mut node.value {
        Value::Seq(items) => {
            let mut m = Map::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let ip_path = path.index(i);
                let Some(text) = item.scalar_text() else {
                    return Err(invalid(
                        item,
                        &ip_path,
                        format!(
                            "invalid extra host: expected HOST=IP, got {}",
                            item.kind_name()
                        ),
                    ));
                };
                let Some((host, ips)) = text.split_once('=').or_else(|| text.split_once(':'))
                else {
                    return Err(invalid(
                        item,
                        &ip_path,
                        format!("invalid additional host, missing IP: {text}"),
                    )
                    .hint("write each entry as HOST=IP (HOST:IP is accepted too)"));
                };
                check_host(host, item, &ip_path)?;
                let new: Vec<Node> = ips
                    .split(',')
                    .map(|ip| string_at(strip(ip), item.loc))
                    .collect();
                match m.get_mut(host) {
                    Some(existing) => {
                        let prev = std::mem::replace(existing, Node::null());
                        let mut all = match prev.value {
                            Value::Seq(v) => v,
                            _ => vec![prev],
                        };
                        all.extend(new);
                        *existing = derived(Value::Seq(all), item.loc);
                    }
                    None => {
                        let value = match <[Node; 1]>::try_from(new) {
                            Ok([one]) => one,
                            Err(many) => derived(Value::Seq(many), item.loc),
                        };
                        m.insert(Key::at(host, item.loc), value);
                    }
                }
            }
            replace(node, Value::Map(m));
        }
        Value::Map(m) => {
            for (k, v) in m.iter_mut() {
                let p = path.key(k.as_str());
                check_host(k.as_str(), v, &p)?;
                match &mut v.value {
                    Value::Null => v.value = Value::String(String::new()),
                    Value::Seq(ips) => {
                        for ip in ips.iter_mut() {
                            if let Some(t) = ip.scalar_text() {
                                ip.value = Value::String(strip(&t).to_string());
                            }
                        }
                    }
                    Value::Map(_) => {
                        return Err(
                            invalid(v, &p, "unexpected value type for extra_hosts entry")
                                .hint("give an IP address or a list of them"),
                        );
                    }
                    _ => {
                        let t = v.scalar_text().unwrap_or_default();
                        v.value = Value::String(strip(&t).to_string());
                    }
                }
            }
        }
        _ => {}
    }
    Ok(())
}

fn condition_entry(loc: Loc) -> Map {
    let mut d = Map::new();
    d.insert(Key::at("condition", loc), string_at("service_started", loc));
    d.insert(Key::at("required", loc), derived(Value::Bool(true), loc));
    d
}

/// `depends_on` list → mapping with `condition: service_started, required: true`; mapping
/// entries get those two when missing (`restart` is left to whoever sets it).
fn depends_on(node: &mut Node, path: &YamlPath) -> Result<(), Error> {
    match &mut node.value {
        Value::Seq(items) => {
            let mut m = Map::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let Some(name) = item.as_str() else {
                    return Err(invalid(
                        item,
                        &path.index(i),
                        format!(
                            "invalid depends_on entry: expected a service name, got {}",
                            item.kind_name()
                        ),
                    ));
                };
                m.insert(
                    Key::at(name, item.loc),
                    derived(Value::Map(condition_entry(item.loc)), item.loc),
                );
            }
            replace(node, Value::Map(m));
        }
        Value::Map(m) => {
            for (k, v) in m.iter_mut() {
                let loc = v.loc;
                let Some(d) = v.as_map_mut() else {
                    return Err(invalid(v, &path.key(k.as_str()), format!("unsupported value: expected a mapping, got {}", v.kind_name()))
                        .hint("write `condition: service_started` (or another condition) under the service name"));
                };
                for (key, value) in condition_entry(loc) {
                    d.entry(key).or_insert(value);
                }
            }
        }
        _ => {
            return Err(invalid(
                node,
                path,
                format!(
                    "invalid depends_on: expected a list or a mapping, got {}",
                    node.kind_name()
                ),
            ));
        }
    }
    Ok(())
}

/// A string `s` becomes `{key: s}`; a mapping stays; anything else is an error saying what was
/// expected (`what`: "a name", "a service name", …).
fn string_to_map(node: &mut Node, path: &YamlPath, key: &str, what: &str) -> Result<(), Error> {
    match &node.value {
        Value::String(s) => {
            let mut m = Map::new();
            m.insert(Key::at(key, node.loc), string_at(s.clone(), node.loc));
            replace(node, Value::Map(m));
            Ok(())
        }
        Value::Map(_) => Ok(()),
        _ => Err(invalid(
            node,
            path,
            format!("expected {what} or a mapping, got {}", node.kind_name()),
        )),
    }
}

/// A secret or config given by name → `{source: name}`.
fn file_mount(node: &mut Node, path: &YamlPath) -> Result<(), Error> {
    string_to_map(node, path, "source", "a name").map_err(|e| Error {
        message: format!("unsupported type: {}", e.message),
        ..e
    })
}

/// `build: ./dir` → `{context: ./dir}`; inside, args/labels/ssh/secrets/… to long form.
fn build(node: &mut Node, path: &YamlPath) -> Result<(), Error> {
    if let Value::String(s) = &node.value {
        let mut m = Map::new();
        m.insert(Key::at("context", node.loc), string_at(s.clone(), node.loc));
        replace(node, Value::Map(m));
        return Ok(());
    }
    let Some(m) = node.as_map_mut() else {
        return Err(invalid(
            node,
            path,
            format!(
                "invalid build: expected a path or a mapping, got {}",
                node.kind_name()
            ),
        ));
    };
    for (k, v) in m.iter_mut() {
        let p = path.key(k.as_str());
        if v.is_null() {
            continue;
        }
        match k.as_str() {
            "args" => to_mapping(v, &p, NoValue::Null)?,
            "labels" => to_mapping(v, &p, NoValue::Empty)?,
            "additional_contexts" => to_mapping(v, &p, NoValue::Refused)?,
            "extra_hosts" => extra_hosts(v, &p)?,
            "ssh" => ssh(v, &p)?,
            "secrets" => for_each_item(v, &p, file_mount)?,
            "ulimits" => for_each_entry(v, &p, ulimit)?,
            "cache_from" | "cache_to" | "tags" | "platforms" => string_to_list(v),
            _ => {}
        }
    }
    Ok(())
}

/// Build `ssh` list → mapping id → path (`default` alone → null).
fn ssh(node: &mut Node, path: &YamlPath) -> Result<(), Error> {
    if let Value::String(_) = node.value {
        string_to_list(node);
    }
    if let Value::Seq(items) = &node.value {
        let mut m = Map::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let Some(s) = item.as_str() else {
                return Err(invalid(
                    item,
                    &path.index(i),
                    format!("invalid ssh key type {}", item.kind_name()),
                ));
            };
            let (id, value) = match s.split_once('=') {
                Some((id, p)) => (id, Value::String(p.to_string())),
                None if s == "default" => (s, Value::Null),
                None => {
                    return Err(
                        invalid(item, &path.index(i), format!("invalid ssh key {s:?}"))
                            .hint("write ID=PATH, or `default`"),
                    );
                }
            };
            m.insert(Key::at(id, item.loc), derived(value, item.loc));
        }
        replace(node, Value::Map(m));
    }
    Ok(())
}

/// `env_file` string or list → list of `{path, required: true}`.
fn env_file(node: &mut Node, path: &YamlPath) -> Result<(), Error> {
    string_to_list(node);
    let Some(items) = node.as_seq_mut() else {
        return Err(invalid(
            node,
            path,
            format!(
                "invalid env_file: expected a path or a list, got {}",
                node.kind_name()
            ),
        ));
    };
    for (i, item) in items.iter_mut().enumerate() {
        let loc = item.loc;
        match &mut item.value {
            Value::String(s) => {
                let mut m = Map::new();
                m.insert(Key::at("path", loc), string_at(s.clone(), loc));
                m.insert(Key::at("required", loc), derived(Value::Bool(true), loc));
                item.value = Value::Map(m);
            }
            Value::Map(m) => {
                m.entry(Key::at("required", loc))
                    .or_insert_with(|| derived(Value::Bool(true), loc));
            }
            _ => {
                return Err(invalid(
                    item,
                    &path.index(i),
                    format!(
                        "invalid env_file entry: expected a path or a mapping, got {}",
                        item.kind_name()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// An ulimit is a number or `{soft, hard}`; both are already canonical.
fn ulimit(node: &mut Node, path: &YamlPath) -> Result<(), Error> {
    match node.value {
        Value::Int(_) | Value::Map(_) => Ok(()),
        _ => Err(invalid(
            node,
            path,
            format!(
                "invalid ulimit: expected an integer or a mapping with soft and hard, got {}",
                node.kind_name()
            ),
        )),
    }
}

/// `healthcheck.test: "cmd"` → `["CMD-SHELL", "cmd"]`.
fn healthcheck(node: &mut Node) {
    if let Some(test) = node.get_mut("test")
        && let Value::String(s) = &test.value
    {
        let loc = test.loc;
        let items = vec![string_at("CMD-SHELL", loc), string_at(s.clone(), loc)];
        replace(test, Value::Seq(items));
    }
}

/// `expose` entries (numbers or strings) → strings.
fn expose(node: &mut Node, path: &YamlPath) -> Result<(), Error> {
    string_to_list(node);
    for_each_item(node, path, |item, p| match item.value {
        Value::String(_) => Ok(()),
        Value::Int(_) | Value::Float(_) => {
            item.value = Value::String(item.scalar_text().unwrap_or_default());
            Ok(())
        }
        _ => Err(invalid(
            item,
            p,
            format!(
                "invalid expose entry: expected a port or a range, got {}",
                item.kind_name()
            ),
        )),
    })
}

/// A device `SRC[:DST[:PERMISSIONS]]` → `{source, target, permissions}`.
fn device(node: &mut Node, path: &YamlPath) -> Result<(), Error> {
    let Value::String(spec) = &node.value else {
        return match node.value {
            Value::Map(_) => Ok(()),
            _ => Err(invalid(
                node,
                path,
                format!(
                    "invalid device: expected a string or a mapping, got {}",
                    node.kind_name()
                ),
            )),
        };
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dst, perms) = match parts.as_slice() {
        [s] => (*s, *s, "rwm"),
        [s, d] => (*s, *d, "rwm"),
        [s, d, p] => (*s, *d, *p),
        _ => {
            return Err(invalid(
                node,
                path,
                format!("confusing device mapping, please use long syntax: {spec}"),
            )
            .hint("write the device as a mapping with source, target and permissions"));
        }
    };
    let dst = if dst.is_empty() { src } else { dst };
    let loc = node.loc;
    let mut m = Map::new();
    m.insert(Key::at("source", loc), string_at(src, loc));
    m.insert(Key::at("target", loc), string_at(dst, loc));
    m.insert(Key::at("permissions", loc), string_at(perms, loc));
    replace(node, Value::Map(m));
    Ok(())
}

/// `gpus: all` → `[{count: all}]`.
fn gpus(node: &mut Node, path: &YamlPath) -> Result<(), Error> {
    match &node.value {
        Value::String(s) => {
            let loc = node.loc;
            let mut m = Map::new();
            m.insert(Key::at("count", loc), string_at(s.clone(), loc));
            replace(node, Value::Seq(vec![derived(Value::Map(m), loc)]));
            Ok(())
        }
        Value::Seq(_) => Ok(()),
        _ => Err(invalid(
            node,
            path,
            format!(
                "invalid gpus: expected `all` or a list, got {}",
                node.kind_name()
            ),
        )),
    }
}

/// `extends: svc` → `{service: svc}`.
fn extends(node: &mut Node, path: &YamlPath) -> Result<(), Error> {
    string_to_map(node, path, "service", "a service name").map_err(|e| Error {
        message: format!("invalid extends: {}", e.message),
        ..e
    })
}

/// `develop.watch` rules whose `path` is a list → one rule per path.
fn develop(node: &mut Node) {
    let Some(watch) = node.get_mut("watch").and_then(Node::as_seq_mut) else {
        return;
    };
    let mut out = Vec::with_capacity(watch.len());
    for rule in watch.drain(..) {
        let paths = rule.get("path").and_then(Node::as_seq).cloned();
        match (paths, &rule.value) {
            (Some(paths), Value::Map(m)) => {
                for p in paths {
                    let mut copy = m.clone();
                    if let Some(slot) = copy.get_mut("path") {
                        *slot = p;
                    }
                    out.push(Node {
                        value: Value::Map(copy),
                        loc: rule.loc,
                        tag: rule.tag.clone(),
                    });
                }
            }
            _ => out.push(rule),
        }
    }
    *watch = out;
}

const PORT_HINT: &str = "use [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL] (ports may be ranges START-END, \
     PROTOCOL is tcp, udp or sctp), e.g. \"127.0.0.1:8080:80/tcp\", or the long syntax";

fn ports_list(node: &mut Node, path: &YamlPath) -> Result<(), Error> {
    let Some(items) = node.as_seq_mut() else {
        return Err(invalid(
            node,
            path,
            format!("invalid ports: expected a list, got {}", node.kind_name()),
        ));
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.drain(..).enumerate() {
        let loc = item.loc;
        match &item.value {
            Value::Int(n) => {
                let mut m = Map::new();
                m.insert(Key::at("target", loc), derived(Value::Int(*n), loc));
                out.push(Node {
                    value: Value::Map(m),
                    loc,
                    tag: item.tag,
                });
            }
            Value::String(spec) => {
                let parsed = ports::parse(spec).map_err(|reason| {
                    invalid(
                        &item,
                        &path.index(i),
                        format!("invalid port {spec:?}: {reason}"),
                    )
                    .hint(PORT_HINT)
                })?;
                for p in parsed {
                    let mut m = Map::new();
                    m.insert(Key::at("mode", loc), string_at("ingress", loc));
                    if !p.host_ip.is_empty() {
                        m.insert(Key::at("host_ip", loc), string_at(p.host_ip, loc));
                    }
                    m.insert(
                        Key::at("target", loc),
                        derived(Value::Int(i64::from(p.target)), loc),
                    );
                    if !p.published.is_empty() {
                        m.insert(Key::at("published", loc), string_at(p.published, loc));
                    }
                    m.insert(Key::at("protocol", loc), string_at(p.protocol, loc));
                    out.push(Node {
                        value: Value::Map(m),
                        loc,
                        tag: item.tag.clone(),
                    });
                }
            }
            Value::Map(_) => out.push(item),
            _ => {
                return Err(invalid(
                    &item,
                    &path.index(i),
                    format!(
                        "invalid port: expected a string, an integer or a mapping, got {}",
                        item.kind_name()
                    ),
                )
                .hint(PORT_HINT));
            }
        }
    }
    *items = out;
    Ok(())
}

fn volume_mount(node: &mut Node, path: &YamlPath) -> Result<(), Error> {
    let spec = match &node.value {
        Value::String(s) => s.clone(),
        Value::Map(_) => return Ok(()),
        _ => {
            return Err(invalid(
                node,
                path,
                format!("invalid type {} for service volume mount", node.kind_name()),
            ));
        }
    };
    let v = volume::parse(&spec).map_err(|reason| {
        invalid(node, path, reason).hint("use [SOURCE:]TARGET[:MODE] where MODE is a comma-separated list of ro, rw, z, Z, nocopy or a propagation mode, or the long syntax")
    })?;
    let loc = node.loc;
    let s = |t: &str| string_at(t, loc);
    let mut m = Map::new();
    m.insert(Key::at("type", loc), s(v.kind));
    if !v.source.is_empty() {
        m.insert(Key::at("source", loc), s(&v.source));
    }
    if !v.target.is_empty() {
        m.insert(Key::at("target", loc), s(&v.target));
    }
    if v.read_only {
        m.insert(Key::at("read_only", loc), derived(Value::Bool(true), loc));
    }
    if let Some(b) = v.bind {
        let mut bm = Map::new();
        if let Some(p) = b.propagation {
            bm.insert(Key::at("propagation", loc), s(&p));
        }
        if b.create_host_path {
            bm.insert(
                Key::at("create_host_path", loc),
                derived(Value::Bool(true), loc),
            );
        }
        if let Some(z) = b.selinux {
            bm.insert(Key::at("selinux", loc), s(&z));
        }
        m.insert(Key::at("bind", loc), derived(Value::Map(bm), loc));
    }
    if let Some(nocopy) = v.volume {
        let mut vm = Map::new();
        if nocopy {
            vm.insert(Key::at("nocopy", loc), derived(Value::Bool(true), loc));
        }
        m.insert(Key::at("volume", loc), derived(Value::Map(vm), loc));
    }
    replace(node, Value::Map(m));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::{Tag, parse};

    fn canon(src: &str) -> (Node, Vec<Warning>) {
        let mut doc = parse("t.yaml", src).expect("yaml");
        let w = canonicalize(&mut doc).expect("canonical");
        (doc, w)
    }

    fn err(src: &str) -> Error {
        let mut doc = parse("t.yaml", src).expect("yaml");
        canonicalize(&mut doc).expect_err("should fail")
    }

    #[test]
    fn port_error_is_located() {
        let e = err("services:\n  web:\n    ports:\n      - \"80:80:80/tcpx\"\n");
        assert_eq!(e.kind, ErrorKind::InvalidValue);
        assert_eq!(e.path.to_string(), "services.web.ports[0]");
        assert_eq!((e.loc.line, e.loc.col), (4, 9));
        assert!(
            e.message.starts_with("invalid port \"80:80:80/tcpx\": "),
            "{}",
            e.message
        );
        assert!(e.hint.is_some());
    }

    #[test]
    fn rewritten_nodes_keep_location_and_tag() {
        let src = "services:\n  web:\n    environment: !override\n      - A=1\n";
        let before = parse("t.yaml", src).expect("yaml");
        let at = |d: &Node| {
            d.get("services")
                .and_then(|s| s.get("web"))
                .and_then(|w| w.get("environment"))
                .cloned()
        };
        let (doc, _) = canon(src);
        let env = at(&doc).expect("env");
        assert_eq!(env.tag, Some(Tag::Override));
        assert_eq!(Some(env.loc), at(&before).map(|n| n.loc));
        assert!(env.as_map().is_some());
        assert_eq!(env.get("A").map(|a| a.loc.line), Some(4));
    }

    #[test]
    fn external_name_warns_and_conflicts() {
        let (doc, w) = canon("volumes:\n  v:\n    external:\n      name: real\n");
        let v = doc.get("volumes").and_then(|v| v.get("v")).expect("v");
        assert_eq!(v.get("external").and_then(Node::as_bool), Some(true));
        assert_eq!(v.get("name").and_then(Node::as_str), Some("real"));
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].path.to_string(), "volumes.v.external.name");
        let e = err("networks:\n  n:\n    name: a\n    external:\n      name: b\n");
        assert_eq!(e.message, "name and external.name conflict; only use name");
    }

    #[test]
    fn command_cut_warns() {
        let (doc, w) = canon("services:\n  a:\n    command: echo a && echo b\n");
        let cmd = doc
            .get("services")
            .and_then(|s| s.get("a"))
            .and_then(|a| a.get("command"))
            .expect("cmd");
        assert_eq!(cmd.as_seq().map(Vec::len), Some(2));
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].path.to_string(), "services.a.command");
    }

    #[test]
    fn long_form_is_untouched() {
        let src = "services:\n  a:\n    ports:\n      - target: 80\n        published: 8080\n    volumes:\n      - type: bind\n        source: ./x\n        target: /x\n";
        let before = parse("t.yaml", src).expect("yaml");
        let (after, _) = canon(src);
        assert_eq!(before, after);
    }
}
