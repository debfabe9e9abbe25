//! Phase 8, normalize: the implicit defaults compose-go's `loader/normalize.go` adds to the
//! merged, canonical tree.
//!
//! - a service with neither `networks` nor `network_mode` is attached to the `default` network,
//!   and the top-level `networks.default` is declared when some service uses it;
//! - top-level networks, volumes, configs and secrets get a `name:` (`<project>_<key>`, or the key
//!   itself for an external resource) unless one is given;
//! - `links`, `network_mode`/`ipc`/`pid`/`uts`/`cgroup: service:X` and `volumes_from: X` become
//!   implicit `depends_on` entries (an explicit entry is never overridden);
//! - `build` gets `context: .` and `dockerfile: Dockerfile` when missing;
//! - `environment` and `build.args` entries without a value take it from the project
//!   environment when it has one;
//! - `pull_policy: if_not_present` becomes `missing`, volume targets are cleaned.
//!
//! Nodes the phase creates are placed at the location of the node they derive from (a `links`
//! entry for the `depends_on` it implies, the service for its default network), so that a later
//! error about them still points at something the user wrote.

use crate::error::{Error, ErrorKind};
use crate::yaml::{Key, Loc, Map, Node, Value, YamlPath};

/// Applies compose-go's normalisation to `doc` with an empty project environment.
///
/// See [`normalize_with_env`].
pub fn normalize(doc: &mut Node, project_name: &str) -> Result<(), Error> {
    normalize_with_env(doc, project_name, |_| None)
}

/// Applies compose-go's normalisation to `doc` (the merged, canonical tree of one project).
///
/// `lookup` reads the project environment: `environment` entries without a value (`FOO` or
/// `FOO: null`) and `build.args` without a value take theirs from it; an unset variable stays
/// valueless in `environment` and is dropped from `build.args`, as compose-go does.
pub fn normalize_with_env<F>(doc: &mut Node, project_name: &str, lookup: F) -> Result<(), Error>
where
    F: Fn(&str) -> Option<String>,
{
    let doc_loc = doc.loc;
    let root = doc.as_map_mut().ok_or_else(|| {
        Error::new(ErrorKind::InvalidValue, "a compose file must be a mapping").at(doc_loc)
    })?;
    normalize_networks(root)?;

    let services_path = YamlPath::root().key("services");
    if let Some(services) = root.get_mut("services") {
        if services.is_null() {
            services.value = Value::Map(Map::new());
        }
        let services_loc = services.loc;
        let services = services.as_map_mut().ok_or_else(|| {
            Error::new(ErrorKind::InvalidValue, "services must be a mapping")
                .at(services_loc)
                .path(services_path.clone())
        })?;
        for (name, service) in services.iter_mut() {
            let path = services_path.key(&name.name);
            normalize_service(service, &path, &lookup)?;
        }
    }

    for kind in ["networks", "volumes", "configs", "secrets"] {
        set_name_from_key(root, kind, project_name)?;
    }
    Ok(())
}

/// `services.X` as a mapping (a null service is an empty one).
fn service_map<'a>(service: &'a mut Node, path: &YamlPath) -> Result<&'a mut Map, Error> {
    if service.is_null() {
        service.value = Value::Map(Map::new());
    }
    let loc = service.loc;
    let kind = service.kind_name();
    service.as_map_mut().ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidValue,
            format!("a service must be a mapping, not {kind}"),
        )
        .at(loc)
        .path(path.clone())
    })
}

/// The implicit `default` network: attached to every service that declares no network and no
/// `network_mode`, and declared at top level when some service uses it.
fn normalize_networks(root: &mut Map) -> Result<(), Error> {
    let mut uses_default = false;
    let services_path = YamlPath::root().key("services");
    if let Some(services) = root.get_mut("services").and_then(Node::as_map_mut) {
        for (name, service) in services.iter_mut() {
            let path = services_path.key(&name.name);
            let service_loc = if name.loc.is_known() {
                name.loc
            } else {
                service.loc
            };
            let service = service_map(service, &path)?;
            if service.contains_key("provider") || service.contains_key("network_mode") {
                continue;
            }
            let needs_default = match service.get("networks").map(|n| &n.value) {
                None | Some(Value::Null) => true,
                Some(Value::Map(m)) => {
                    if m.contains_key("default") {
                        uses_default = true;
                    }
                    m.is_empty()
                }
                Some(Value::Seq(items)) => {
                    if items.iter().any(|i| i.as_str() == Some("default")) {
                        uses_default = true;
                    }
                    items.is_empty()
                }
                Some(_) => false,
            };
            if needs_default {
                let mut nets = Map::new();
                nets.insert(
                    Key::at("default", service_loc),
                    Node::null().with_loc(service_loc),
                );
                let networks = Node::map(nets).with_loc(service_loc);
                match service.get_full_mut("networks") {
                    Some((_, _, existing)) => *existing = networks,
                    None => {
                        service.insert(Key::at("networks", service_loc), networks);
                    }
                }
                uses_default = true;
            }
        }
    }
    if !uses_default {
        return Ok(());
    }
    let networks = root
        .entry(Key::new("networks"))
        .or_insert_with(Node::empty_map);
    if networks.is_null() {
        networks.value = Value::Map(Map::new());
    }
    let loc = networks.loc;
    let networks = networks.as_map_mut().ok_or_else(|| {
        Error::new(ErrorKind::InvalidValue, "networks must be a mapping")
            .at(loc)
            .path(YamlPath::root().key("networks"))
    })?;
    if !networks.contains_key("default") {
        networks.insert(Key::new("default"), Node::null());
    }
    Ok(())
}

fn normalize_service<F>(service: &mut Node, path: &YamlPath, lookup: &F) -> Result<(), Error>
where
    F: Fn(&str) -> Option<String>,
{
    let service = service_map(service, path)?;

    if let Some(policy) = service.get_mut("pull_policy")
        && policy.as_str() == Some("if_not_present")
    {
        policy.value = Value::String("missing".to_string());
    }

    if let Some(build) = service.get_mut("build") {
        normalize_build(build, lookup);
    }

    if let Some(env) = service.get_mut("environment") {
        resolve_values(env, lookup, true);
    }

    normalize_depends_on(service);

    if let Some(volumes) = service.get_mut("volumes").and_then(Node::as_seq_mut) {
        for volume in volumes {
            if let Some(target) = volume.get_mut("target")
                && let Value::String(t) = &mut target.value
            {
                *t = crate::paths::clean(t);
            }
        }
    }
    Ok(())
}

fn normalize_build<F>(build: &mut Node, lookup: &F)
where
    F: Fn(&str) -> Option<String>,
{
    // Short syntax (`build: ./dir`), in case the canonical phase left it.
    if let Value::String(context) = &build.value {
        let mut m = Map::new();
        m.insert(
            Key::at("context", build.loc),
            Node::string(context.clone()).with_loc(build.loc),
        );
        build.value = Value::Map(m);
    }
    if build.is_null() {
        build.value = Value::Map(Map::new());
    }
    let loc = build.loc;
    let Some(b) = build.as_map_mut() else { return };
    if b.get("context").is_none_or(Node::is_null) {
        set(b, "context", Node::string(".").with_loc(loc));
    }
    if b.get("dockerfile").is_none_or(Node::is_null)
        && b.get("dockerfile_inline").is_none_or(Node::is_null)
    {
        set(b, "dockerfile", Node::string("Dockerfile").with_loc(loc));
    }
    if let Some(args) = b.get_mut("args") {
        resolve_values(args, lookup, false);
    }
}

/// Sets `map[key]`, keeping the key's position and location when it exists.
fn set(map: &mut Map, key: &str, value: Node) {
    match map.get_mut(key) {
        Some(existing) => *existing = value,
        None => {
            let loc = value.loc;
            map.insert(Key::at(key, loc), value);
        }
    }
}

/// Fills valueless entries of `environment` / `build.args` from the environment.
///
/// In a sequence, `NAME` becomes `NAME=value` when the variable is set; in a mapping a null
/// value becomes the variable's value. An unset variable is kept (`keep_empty`) or dropped.
fn resolve_values<F>(node: &mut Node, lookup: &F, keep_empty: bool)
where
    F: Fn(&str) -> Option<String>,
{
    match &mut node.value {
        Value::Seq(items) => {
            let old = std::mem::take(items);
            for mut item in old {
                if let Value::String(s) = &item.value
                    && !s.contains('=')
                {
                    match lookup(s) {
                        Some(v) => item.value = Value::String(format!("{s}={v}")),
                        None if keep_empty => {}
                        None => continue,
                    }
                }
                items.push(item);
            }
        }
        Value::Map(map) => {
            let old = std::mem::take(map);
            for (key, mut value) in old {
                if value.is_null() {
                    match lookup(&key.name) {
                        Some(v) => value.value = Value::String(v),
                        None if keep_empty => {}
                        None => continue,
                    }
                }
                map.insert(key, value);
            }
        }
        _ => {}
    }
}

/// A `depends_on` entry as compose-go writes an implicit one.
fn dependency(restart: bool, loc: Loc) -> Node {
    let mut m = Map::new();
    m.insert(
        Key::at("condition", loc),
        Node::string("service_started").with_loc(loc),
    );
    m.insert(Key::at("required", loc), Node::bool(true).with_loc(loc));
    m.insert(Key::at("restart", loc), Node::bool(restart).with_loc(loc));
    Node::map(m).with_loc(loc)
}

/// Implicit dependencies from `links`, `service:` namespaces and `volumes_from`.
fn normalize_depends_on(service: &mut Map) {
    let mut implied: Vec<(String, bool, Loc)> = Vec::new();
    if let Some(links) = service.get("links").and_then(Node::as_seq) {
        for link in links {
            if let Some(l) = link.as_str() {
                let parts: Vec<&str> = l.split(':').collect();
                let name = match parts.as_slice() {
                    [name, _alias] => name,
                    _ => l,
                };
                implied.push((name.to_string(), true, link.loc));
            }
        }
    }
    for namespace in ["network_mode", "ipc", "pid", "uts", "cgroup"] {
        if let Some(node) = service.get(namespace)
            && let Some(shared) = node.as_str().and_then(|s| s.strip_prefix("service:"))
        {
            implied.push((shared.to_string(), true, node.loc));
        }
    }
    if let Some(from) = service.get("volumes_from").and_then(Node::as_seq) {
        for item in from {
            if let Some(v) = item.as_str()
                && !v.starts_with("container:")
            {
                let name = v.split(':').next().unwrap_or(v);
                implied.push((name.to_string(), false, item.loc));
            }
        }
    }

    let depends_on = service.get_mut("depends_on");
    let Some(depends_on) = depends_on else {
        if implied.is_empty() {
            return;
        }
        let mut m = Map::new();
        add_implied(&mut m, implied);
        let loc = m.first().map(|(k, _)| k.loc).unwrap_or(Loc::NONE);
        service.insert(Key::at("depends_on", loc), Node::map(m).with_loc(loc));
        return;
    };
    // Short syntax (a list of names), in case the canonical phase left it.
    if let Value::Seq(items) = &depends_on.value {
        let mut m = Map::new();
        for item in items {
            if let Some(name) = item.scalar_text() {
                let mut dep = dependency(false, item.loc);
                if let Some(d) = dep.as_map_mut() {
                    d.shift_remove("restart");
                }
                m.insert(Key::at(name, item.loc), dep);
            }
        }
        depends_on.value = Value::Map(m);
    }
    if depends_on.is_null() {
        depends_on.value = Value::Map(Map::new());
    }
    if let Some(m) = depends_on.as_map_mut() {
        add_implied(m, implied);
    }
}

fn add_implied(m: &mut Map, implied: Vec<(String, bool, Loc)>) {
    for (name, restart, loc) in implied {
        if !m.contains_key(name.as_str()) {
            m.insert(Key::at(name, loc), dependency(restart, loc));
        }
    }
}

/// compose-go's `isTrue`: Go's `strconv.ParseBool` of the value's text.
fn is_true(node: &Node) -> bool {
    match &node.value {
        Value::Bool(b) => *b,
        Value::Int(i) => *i == 1,
        Value::String(s) => matches!(s.as_str(), "1" | "t" | "T" | "true" | "TRUE" | "True"),
        _ => false,
    }
}

/// Resources with no explicit `name:` are named by their key: `<project>_<key>`, or the key
/// itself for an external resource.
fn set_name_from_key(root: &mut Map, kind: &str, project_name: &str) -> Result<(), Error> {
    let Some(top) = root.get_mut(kind) else {
        return Ok(());
    };
    if top.is_null() {
        return Ok(());
    }
    let loc = top.loc;
    let top = top.as_map_mut().ok_or_else(|| {
        Error::new(ErrorKind::InvalidValue, format!("{kind} must be a mapping"))
            .at(loc)
            .path(YamlPath::root().key(kind))
    })?;
    for (key, resource) in top.iter_mut() {
        let res_loc = if resource.loc.is_known() {
            resource.loc
        } else {
            key.loc
        };
        if resource.is_null() {
            *resource = Node::empty_map().with_loc(res_loc);
        }
        let Some(r) = resource.as_map_mut() else {
            return Err(Error::new(
                ErrorKind::InvalidValue,
                format!(
                    "{kind}.{} must be a mapping, not {}",
                    key.name,
                    resource.kind_name()
                ),
            )
            .at(res_loc)
            .path(YamlPath::root().key(kind).key(&key.name)));
        };
        if r.get("name").is_none_or(Node::is_null) {
            let external = r.get("external").is_some_and(is_true);
            let name = if external {
                key.name.clone()
            } else {
                format!("{project_name}_{}", key.name)
            };
            let node = Node::string(name).with_loc(res_loc);
            match r.get_mut("name") {
                Some(existing) => *existing = node,
                None => {
                    r.shift_insert(0, Key::at("name", res_loc), node);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::{parse, to_json};

    fn run(src: &str, env: &[(&str, &str)]) -> serde_json::Value {
        let mut doc = parse("n.yaml", src).unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        normalize_with_env(&mut doc, "p", |k| {
            env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })
        .unwrap();
        to_json(&doc)
    }

    #[test]
    fn default_network_only_when_used() {
        let j = run("services:\n  a:\n    network_mode: host\n", &[]);
        assert!(j.get("networks").is_none(), "{j}");
        let j = run("services:\n  a:\n    networks: {}\n", &[]);
        assert_eq!(j["networks"]["default"]["name"], "p_default");
        assert!(j["services"]["a"]["networks"]["default"].is_null());
        let j = run("services:\n  a:\n    provider: {type: x}\n", &[]);
        assert!(j.get("networks").is_none(), "{j}");
    }

    #[test]
    fn explicit_default_network_is_kept() {
        let j = run(
            "services:\n  a: {}\nnetworks:\n  default:\n    name: mine\n    driver: bridge\n",
            &[],
        );
        assert_eq!(j["networks"]["default"]["name"], "mine");
        assert_eq!(j["networks"]["default"]["driver"], "bridge");
    }

    #[test]
    fn implicit_dependency_is_located_at_its_source() {
        let mut doc = parse(
            "n.yaml",
            "services:\n  a:\n    links:\n      - db:database\n",
        )
        .unwrap();
        normalize(&mut doc, "p").unwrap();
        let deps = doc
            .get("services")
            .unwrap()
            .get("a")
            .unwrap()
            .get("depends_on")
            .unwrap();
        let (k, v) = deps.as_map().unwrap().get_key_value("db").unwrap();
        assert_eq!(k.loc.line, 4);
        assert_eq!(v.get("restart").unwrap().as_bool(), Some(true));
    }

    #[test]
    fn pull_policy_and_volume_target() {
        let j = run(
            "services:\n  a:\n    pull_policy: if_not_present\n    volumes:\n      - {type: volume, target: /data/./x/}\n",
            &[],
        );
        assert_eq!(j["services"]["a"]["pull_policy"], "missing");
        assert_eq!(j["services"]["a"]["volumes"][0]["target"], "/data/x");
    }

    #[test]
    fn environment_mapping_and_args() {
        let j = run(
            "services:\n  a:\n    environment:\n      A: null\n      B: null\n      C: x\n    build:\n      context: .\n      dockerfile_inline: FROM x\n      args:\n        A: null\n        B: null\n",
            &[("A", "1")],
        );
        assert_eq!(
            j["services"]["a"]["environment"],
            serde_json::json!({"A": "1", "B": null, "C": "x"})
        );
        assert_eq!(
            j["services"]["a"]["build"]["args"],
            serde_json::json!({"A": "1"})
        );
        assert!(j["services"]["a"]["build"].get("dockerfile").is_none());
    }

    #[test]
    fn external_truthy_values() {
        let j = run(
            "volumes:\n  a: {external: \"true\"}\n  b: {external: false}\nsecrets:\n  s: {file: ./x}\nconfigs:\n  c: {external: true}\n",
            &[],
        );
        assert_eq!(j["volumes"]["a"]["name"], "a");
        assert_eq!(j["volumes"]["b"]["name"], "p_b");
        assert_eq!(j["secrets"]["s"]["name"], "p_s");
        assert_eq!(j["configs"]["c"]["name"], "c");
    }

    #[test]
    fn wrong_shapes_are_errors() {
        let mut doc = parse("n.yaml", "services: [a]\n").unwrap();
        let e = normalize(&mut doc, "p").unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidValue);
        assert_eq!(e.path.to_string(), "services");
        let mut doc = parse("n.yaml", "services:\n  a: 3\n").unwrap();
        let e = normalize(&mut doc, "p").unwrap_err();
        assert_eq!(e.path.to_string(), "services.a");
        assert_eq!(e.loc.line, 2);
    }
}
