//! Phase 12, consistency: what compose-go's `loader/validate.go` (`Validate`,
//! `checkConsistency`, `graph.CheckCycle`) and docker compose refuse in a well-formed tree.
//!
//! Run on the normalized tree after profiles: references to services that do not exist
//! (`depends_on`, and `links`, `volumes_from`, `service:` namespaces that normalize turned into
//! `depends_on`), to networks, named volumes, secrets and configs that are not declared at top
//! level; contradicting keys (`network_mode` with `networks`, `external` with creation options,
//! `scale` with a different `deploy.replicas`, `container_name` with several replicas, one
//! container name for two services); `depends_on` cycles.
//!
//! Messages are compose-go's (without its `: invalid compose project` suffix); services are
//! checked in name order so that the first error is always the same one. Every error carries
//! the location and YAML path of the node to edit.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{Error, ErrorKind};
use crate::graph::{cycle_message, find_cycle};
use crate::yaml::{Loc, Map, Node, Value, YamlPath};

/// Checks a project tree; the first problem found is returned.
pub fn check(doc: &Node) -> Result<(), Error> {
    for kind in ["networks", "volumes", "secrets", "configs"] {
        check_resources(doc, kind)?;
    }
    let empty = Map::new();
    let services = doc.get("services").and_then(Node::as_map).unwrap_or(&empty);
    let mut names: Vec<&str> = services.keys().map(|k| k.as_str()).collect();
    names.sort_unstable();
    let mut container_names: BTreeMap<String, &str> = BTreeMap::new();
    for name in names {
        let Some((key, service)) = services.get_key_value(name) else {
            continue;
        };
        let path = YamlPath::root().key("services").key(name);
        let service_loc = if key.loc.is_known() {
            key.loc
        } else {
            service.loc
        };
        Service {
            doc,
            services,
            name,
            service,
            path: &path,
            loc: service_loc,
        }
        .check()?;

        if let Some(cn) = service.get("container_name")
            && let Some(text) = cn.scalar_text()
        {
            if let Some(other) = container_names.get(&text) {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!("container name \"{text}\" is already in use by service \"{other}\""),
                )
                .at(cn.loc)
                .path(path.key("container_name"))
                .hint("container names must be unique: rename one, or remove `container_name`"));
            }
            container_names.insert(text, name);
        }
    }
    check_cycles(services)
}

/// Where a map entry was written: its key, or its value when the key is not located.
fn entry_loc(map: &Map, key: &str, fallback: Loc) -> Loc {
    match map.get_key_value(key) {
        Some((k, _)) if k.loc.is_known() => k.loc,
        Some((_, v)) if v.loc.is_known() => v.loc,
        _ => fallback,
    }
}

fn truthy(node: &Node) -> bool {
    match &node.value {
        Value::Bool(b) => *b,
        Value::String(s) => matches!(s.as_str(), "1" | "t" | "T" | "true" | "TRUE" | "True"),
        Value::Int(i) => *i == 1,
        _ => false,
    }
}

/// Top-level networks, volumes, secrets, configs: `external` without creation options; a
/// secret's or config's source.
fn check_resources(doc: &Node, kind: &str) -> Result<(), Error> {
    let Some(top) = doc.get(kind).and_then(Node::as_map) else {
        return Ok(());
    };
    for (key, resource) in top {
        let path = YamlPath::root().key(kind).key(&key.name);
        let Some(r) = resource.as_map() else { continue };
        if r.get("external").is_some_and(truthy) {
            let conflicting = r.keys().find(|k| {
                !matches!(k.as_str(), "name" | "external") && !k.as_str().starts_with("x-")
            });
            if let Some(k) = conflicting {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "conflicting parameters \"external\" and \"{}\" specified",
                        k.name
                    ),
                )
                .at(entry_loc(r, &k.name, resource.loc))
                .path(path.key(&k.name))
                .hint(format!(
                    "an external resource is created outside compose: remove `{}`",
                    k.name
                )));
            }
            continue;
        }
        let sources: &[&str] = match kind {
            "secrets" => &["file", "environment"],
            "configs" => &["file", "environment", "content"],
            _ => continue,
        };
        let given: Vec<&str> = sources
            .iter()
            .copied()
            .filter(|s| r.contains_key(*s))
            .collect();
        let loc = if key.loc.is_known() {
            key.loc
        } else {
            resource.loc
        };
        if given.len() > 1 {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("{} attributes are mutually exclusive", sources.join("|")),
            )
            .at(loc)
            .path(path)
            .hint(format!("keep only one of {}", given.join(", "))));
        }
        if given.is_empty() && !r.contains_key("driver") && !r.contains_key("external") {
            return Err(Error::new(
                ErrorKind::InvalidValue,
                format!("one of {} must be set", sources.join("|")),
            )
            .at(loc)
            .path(path));
        }
    }
    Ok(())
}

struct Service<'a> {
    doc: &'a Node,
    services: &'a Map,
    name: &'a str,
    service: &'a Node,
    path: &'a YamlPath,
    loc: Loc,
}

impl Service<'_> {
    fn err(&self, kind: ErrorKind, message: String, key: &str) -> Error {
        let loc = self
            .service
            .as_map()
            .map_or(self.loc, |m| entry_loc(m, key, self.loc));
        Error::new(kind, message).at(loc).path(self.path.key(key))
    }

    fn declared(&self, kind: &str, name: &str) -> bool {
        self.doc
            .get(kind)
            .and_then(Node::as_map)
            .is_some_and(|m| m.contains_key(name))
    }

    fn check(&self) -> Result<(), Error> {
        let s = self.service;
        let name = self.name;
        if s.get("provider").is_none() && s.get("image").is_none() && s.get("build").is_none() {
            return Err(Error::new(
                ErrorKind::InvalidValue,
                format!("service \"{name}\" has neither an image nor a build context specified"),
            )
            .at(self.loc)
            .path(self.path.clone())
            .hint("add `image:` or `build:`"));
        }
        if let Some(build) = s.get("build")
            && build.get("dockerfile").is_some()
            && build.get("dockerfile_inline").is_some()
        {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "service \"{name}\" declares mutualy exclusive dockerfile and dockerfile_inline"
                ),
            )
            .at(build
                .as_map()
                .map_or(build.loc, |m| entry_loc(m, "dockerfile_inline", build.loc)))
            .path(self.path.key("build").key("dockerfile_inline")));
        }
        self.check_networks()?;
        self.check_healthcheck()?;
        self.check_service_refs()?;
        self.check_volumes()?;
        self.check_secrets_configs()?;
        self.check_scale()?;
        self.check_watch()
    }

    fn check_networks(&self) -> Result<(), Error> {
        let Some(networks) = self.service.get("networks") else {
            return Ok(());
        };
        let names: Vec<(String, Loc)> = match &networks.value {
            Value::Map(m) => m
                .iter()
                .map(|(k, v)| (k.name.clone(), if k.loc.is_known() { k.loc } else { v.loc }))
                .collect(),
            Value::Seq(items) => items
                .iter()
                .filter_map(|i| i.scalar_text().map(|t| (t, i.loc)))
                .collect(),
            _ => Vec::new(),
        };
        if self.service.get("network_mode").is_some() && !names.is_empty() {
            return Err(self
                .err(
                    ErrorKind::Conflict,
                    format!(
                        "service {} declares mutually exclusive `network_mode` and `networks`",
                        self.name
                    ),
                    "networks",
                )
                .hint(
                    "a service either joins networks or shares another network stack: remove one",
                ));
        }
        for (net, loc) in names {
            if !self.declared("networks", &net) {
                return Err(Error::new(
                    ErrorKind::Reference,
                    format!(
                        "service \"{}\" refers to undefined network {net}",
                        self.name
                    ),
                )
                .at(loc)
                .path(self.path.key("networks").key(&net))
                .hint(format!(
                    "declare it under the top-level `networks:` (`{net}: {{}}`)"
                )));
            }
        }
        Ok(())
    }

    fn check_healthcheck(&self) -> Result<(), Error> {
        let Some(test) = self.service.get("healthcheck").and_then(|h| h.get("test")) else {
            return Ok(());
        };
        if let Some(first) = test.as_seq().and_then(|t| t.first())
            && !matches!(first.as_str(), Some("CMD" | "CMD-SHELL" | "NONE"))
        {
            return Err(Error::new(
                ErrorKind::InvalidValue,
                "healthcheck.test must start either by \"CMD\", \"CMD-SHELL\" or \"NONE\"",
            )
            .at(first.loc)
            .path(self.path.key("healthcheck").key("test").index(0)));
        }
        Ok(())
    }

    fn undefined_service(&self, target: &str, loc: Loc, path: YamlPath) -> Error {
        Error::new(
            ErrorKind::Reference,
            format!(
                "service \"{}\" depends on undefined service \"{target}\"",
                self.name
            ),
        )
        .at(loc)
        .path(path)
        .hint(format!("define a service \"{target}\", or fix the name"))
    }

    /// `depends_on`, then the references normalize derives it from (when it did not run).
    fn check_service_refs(&self) -> Result<(), Error> {
        let s = self.service;
        if let Some(deps) = s.get("depends_on").and_then(Node::as_map) {
            for (k, v) in deps {
                if !self.services.contains_key(k.as_str()) {
                    let loc = if k.loc.is_known() { k.loc } else { v.loc };
                    return Err(self.undefined_service(
                        &k.name,
                        loc,
                        self.path.key("depends_on").key(&k.name),
                    ));
                }
            }
        }
        if let Some(mode) = s.get("network_mode")
            && let Some(target) = mode.as_str().and_then(|m| m.strip_prefix("service:"))
            && !self.services.contains_key(target)
        {
            return Err(Error::new(
                ErrorKind::Reference,
                format!("service \"{target}\" not found for network_mode 'service:{target}'"),
            )
            .at(mode.loc)
            .path(self.path.key("network_mode")));
        }
        for ns in ["ipc", "pid", "uts", "cgroup"] {
            if let Some(node) = s.get(ns)
                && let Some(target) = node.as_str().and_then(|m| m.strip_prefix("service:"))
                && !self.services.contains_key(target)
            {
                return Err(self.undefined_service(target, node.loc, self.path.key(ns)));
            }
        }
        let seq = |key: &str| {
            s.get(key)
                .and_then(Node::as_seq)
                .map(|v| v.as_slice())
                .unwrap_or(&[])
        };
        for (i, link) in seq("links").iter().enumerate() {
            let Some(l) = link.as_str() else { continue };
            let target = l.split(':').next().unwrap_or(l);
            if !self.services.contains_key(target) {
                return Err(self.undefined_service(
                    target,
                    link.loc,
                    self.path.key("links").index(i),
                ));
            }
        }
        for (i, from) in seq("volumes_from").iter().enumerate() {
            let Some(v) = from.as_str() else { continue };
            if v.starts_with("container:") {
                continue;
            }
            let target = v.split(':').next().unwrap_or(v);
            if !self.services.contains_key(target) {
                return Err(self.undefined_service(
                    target,
                    from.loc,
                    self.path.key("volumes_from").index(i),
                ));
            }
        }
        Ok(())
    }

    fn check_volumes(&self) -> Result<(), Error> {
        let Some(volumes) = self.service.get("volumes").and_then(Node::as_seq) else {
            return Ok(());
        };
        for (i, v) in volumes.iter().enumerate() {
            if v.get("type").and_then(Node::as_str) != Some("volume") {
                continue;
            }
            let Some(source) = v.get("source") else {
                continue;
            };
            let Some(src) = source.as_str().filter(|s| !s.is_empty()) else {
                continue;
            };
            if !self.declared("volumes", src) {
                return Err(Error::new(
                    ErrorKind::Reference,
                    format!("service \"{}\" refers to undefined volume {src}", self.name),
                )
                .at(source.loc)
                .path(self.path.key("volumes").index(i).key("source"))
                .hint(format!(
                    "declare it under the top-level `volumes:`, or write `./{src}` for a bind mount"
                )));
            }
        }
        Ok(())
    }

    fn check_secrets_configs(&self) -> Result<(), Error> {
        let lists: [(Option<&Node>, &str, &str, YamlPath); 3] = [
            (
                self.service.get("build").and_then(|b| b.get("secrets")),
                "secrets",
                "build secret",
                self.path.key("build").key("secrets"),
            ),
            (
                self.service.get("configs"),
                "configs",
                "config",
                self.path.key("configs"),
            ),
            (
                self.service.get("secrets"),
                "secrets",
                "secret",
                self.path.key("secrets"),
            ),
        ];
        for (list, top, what, path) in lists {
            let Some(items) = list.and_then(Node::as_seq) else {
                continue;
            };
            for (i, item) in items.iter().enumerate() {
                let (source, loc, p) = match item.get("source") {
                    Some(src) => (src.scalar_text(), src.loc, path.index(i).key("source")),
                    None => (item.scalar_text(), item.loc, path.index(i)),
                };
                let Some(source) = source else { continue };
                if !self.declared(top, &source) {
                    return Err(Error::new(
                        ErrorKind::Reference,
                        format!(
                            "service \"{}\" refers to undefined {what} {source}",
                            self.name
                        ),
                    )
                    .at(loc)
                    .path(p)
                    .hint(format!("declare it under the top-level `{top}:`")));
                }
            }
        }
        Ok(())
    }

    fn check_scale(&self) -> Result<(), Error> {
        let s = self.service;
        let int = |n: &Node| {
            n.as_i64()
                .or_else(|| n.as_str().and_then(|t| t.trim().parse().ok()))
        };
        let scale = s.get("scale").and_then(int);
        let replicas = s
            .get("deploy")
            .and_then(|d| d.get("replicas"))
            .and_then(int);
        if let (Some(a), Some(b)) = (scale, replicas)
            && a != b
        {
            return Err(self
                .err(
                    ErrorKind::Conflict,
                    "can't set distinct values on 'scale' and 'deploy.replicas'".to_string(),
                    "scale",
                )
                .hint("keep only `deploy.replicas`"));
        }
        let effective = scale.or(replicas).unwrap_or(1);
        if effective > 1 && s.get("container_name").is_some() {
            let attr = if scale.is_some() {
                "scale"
            } else {
                "deploy.replicas"
            };
            return Err(self
                .err(
                    ErrorKind::Conflict,
                    format!("can't set container_name and {attr} as container name must be unique"),
                    "container_name",
                )
                .hint(format!("remove `container_name`, or set {attr} to 1")));
        }
        Ok(())
    }

    fn check_watch(&self) -> Result<(), Error> {
        let Some(watch) = self
            .service
            .get("develop")
            .and_then(|d| d.get("watch"))
            .and_then(Node::as_seq)
        else {
            return Ok(());
        };
        for (i, rule) in watch.iter().enumerate() {
            let action = rule.get("action").and_then(Node::as_str);
            if action != Some("rebuild") && rule.get("target").is_none() {
                return Err(Error::new(
                    ErrorKind::InvalidValue,
                    "target is required for non-rebuild actions",
                )
                .at(rule.loc)
                .path(self.path.key("develop").key("watch").index(i)));
            }
        }
        Ok(())
    }
}

/// `depends_on` cycles, reported from the first service (by name) of the first cycle found,
/// located at its `depends_on` entry for the next service of the cycle.
fn check_cycles(services: &Map) -> Result<(), Error> {
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, service) in services {
        let ds = service
            .get("depends_on")
            .and_then(Node::as_map)
            .map(|m| m.keys().map(|k| k.name.clone()).collect())
            .unwrap_or_default();
        deps.insert(name.name.clone(), ds);
    }
    let Some(cycle) = find_cycle(&deps) else {
        return Ok(());
    };
    let (first, second) = match cycle.as_slice() {
        [a, b, ..] => (a.as_str(), b.as_str()),
        _ => return Err(Error::new(ErrorKind::Cycle, cycle_message(&cycle))),
    };
    let path = YamlPath::root()
        .key("services")
        .key(first)
        .key("depends_on")
        .key(second);
    let loc = services
        .get(first)
        .and_then(|s| s.get("depends_on"))
        .and_then(|d| d.as_map().map(|m| entry_loc(m, second, d.loc)))
        .unwrap_or(Loc::NONE);
    Err(Error::new(ErrorKind::Cycle, cycle_message(&cycle))
        .at(loc)
        .path(path)
        .hint("services cannot wait for each other: remove one of these dependencies"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse;

    fn error_of(src: &str) -> Error {
        let doc = parse("c.yaml", src).unwrap();
        check(&doc).expect_err("an error")
    }

    #[test]
    fn valid_project_passes() {
        let doc = parse(
            "c.yaml",
            "services:\n  web:\n    image: w\n    networks: {front: null}\n    depends_on:\n      db: {condition: service_started, required: true}\n    volumes:\n      - {type: volume, source: data, target: /d}\n      - {type: volume, target: /anon}\n      - {type: bind, source: /x, target: /x}\n    secrets: [{source: s}]\n    configs: [{source: c}]\n    container_name: web1\n    deploy: {replicas: 1}\n  db:\n    build: {context: .}\n    network_mode: 'service:web'\n    volumes_from: ['container:x']\nnetworks: {front: {name: p_front}}\nvolumes: {data: {}}\nsecrets: {s: {file: ./s}}\nconfigs: {c: {content: hi}}\n",
        )
        .unwrap();
        check(&doc).unwrap();
    }

    #[test]
    fn each_check_message_path_and_line() {
        // (document, kind, message, path, line)
        let cases: &[(&str, ErrorKind, &str, &str, u32)] = &[
            (
                "services:\n  bar:\n    image: b\n    depends_on:\n      zot: {condition: service_started}\n",
                ErrorKind::Reference,
                "service \"bar\" depends on undefined service \"zot\"",
                "services.bar.depends_on.zot",
                5,
            ),
            (
                "services:\n  a:\n    image: a\n    links: ['db:database']\n",
                ErrorKind::Reference,
                "service \"a\" depends on undefined service \"db\"",
                "services.a.links[0]",
                4,
            ),
            (
                "services:\n  a:\n    image: a\n    volumes_from: [other]\n",
                ErrorKind::Reference,
                "service \"a\" depends on undefined service \"other\"",
                "services.a.volumes_from[0]",
                4,
            ),
            (
                "services:\n  a:\n    image: a\n    network_mode: 'service:zot'\n",
                ErrorKind::Reference,
                "service \"zot\" not found for network_mode 'service:zot'",
                "services.a.network_mode",
                4,
            ),
            (
                "services:\n  a:\n    image: a\n    network_mode: host\n    networks: {default: null}\nnetworks: {default: {}}\n",
                ErrorKind::Conflict,
                "service a declares mutually exclusive `network_mode` and `networks`",
                "services.a.networks",
                5,
            ),
            (
                "services:\n  a:\n    image: a\n    networks:\n      back: null\n",
                ErrorKind::Reference,
                "service \"a\" refers to undefined network back",
                "services.a.networks.back",
                5,
            ),
            (
                "services:\n  a:\n    image: a\n    volumes:\n      - type: volume\n        source: data\n        target: /d\n",
                ErrorKind::Reference,
                "service \"a\" refers to undefined volume data",
                "services.a.volumes[0].source",
                6,
            ),
            (
                "services:\n  a:\n    image: a\n    secrets:\n      - source: s\n",
                ErrorKind::Reference,
                "service \"a\" refers to undefined secret s",
                "services.a.secrets[0].source",
                5,
            ),
            (
                "services:\n  a:\n    image: a\n    configs:\n      - c\n",
                ErrorKind::Reference,
                "service \"a\" refers to undefined config c",
                "services.a.configs[0]",
                5,
            ),
            (
                "services:\n  a:\n    build:\n      context: .\n      secrets: [{source: k}]\n",
                ErrorKind::Reference,
                "service \"a\" refers to undefined build secret k",
                "services.a.build.secrets[0].source",
                5,
            ),
            (
                "networks:\n  n:\n    external: true\n    driver: overlay\n",
                ErrorKind::Conflict,
                "conflicting parameters \"external\" and \"driver\" specified",
                "networks.n.driver",
                4,
            ),
            (
                "volumes:\n  v:\n    name: v\n    external: true\n    driver_opts: {a: b}\n",
                ErrorKind::Conflict,
                "conflicting parameters \"external\" and \"driver_opts\" specified",
                "volumes.v.driver_opts",
                5,
            ),
            (
                "secrets:\n  s:\n    file: ./a\n    environment: A\n",
                ErrorKind::Conflict,
                "file|environment attributes are mutually exclusive",
                "secrets.s",
                2,
            ),
            (
                "configs:\n  c:\n    name: x\n",
                ErrorKind::InvalidValue,
                "one of file|environment|content must be set",
                "configs.c",
                2,
            ),
            (
                "services:\n  a:\n    image: a\n    scale: 2\n    deploy:\n      replicas: 3\n",
                ErrorKind::Conflict,
                "can't set distinct values on 'scale' and 'deploy.replicas'",
                "services.a.scale",
                4,
            ),
            (
                "services:\n  a:\n    image: a\n    container_name: x\n    deploy:\n      replicas: 2\n",
                ErrorKind::Conflict,
                "can't set container_name and deploy.replicas as container name must be unique",
                "services.a.container_name",
                4,
            ),
            (
                "services:\n  a:\n    image: a\n    container_name: x\n  b:\n    image: b\n    container_name: x\n",
                ErrorKind::Conflict,
                "container name \"x\" is already in use by service \"a\"",
                "services.b.container_name",
                7,
            ),
            (
                "services:\n  a:\n    environment: {}\n",
                ErrorKind::InvalidValue,
                "service \"a\" has neither an image nor a build context specified",
                "services.a",
                2,
            ),
            (
                "services:\n  a:\n    image: a\n    healthcheck:\n      test: [curl, x]\n",
                ErrorKind::InvalidValue,
                "healthcheck.test must start either by \"CMD\", \"CMD-SHELL\" or \"NONE\"",
                "services.a.healthcheck.test[0]",
                5,
            ),
            (
                "services:\n  a:\n    image: a\n    develop:\n      watch:\n        - {path: ./x, action: sync}\n",
                ErrorKind::InvalidValue,
                "target is required for non-rebuild actions",
                "services.a.develop.watch[0]",
                6,
            ),
            (
                "services:\n  service3:\n    image: c\n    depends_on: {service1: {}}\n  service1:\n    image: a\n    depends_on: {service2: {}}\n  service2:\n    image: b\n    depends_on: {service3: {}}\n",
                ErrorKind::Cycle,
                "dependency cycle detected: service1 -> service2 -> service3 -> service1",
                "services.service1.depends_on.service2",
                7,
            ),
            (
                "services:\n  service1:\n    image: a\n    depends_on:\n      service1: {}\n",
                ErrorKind::Cycle,
                "dependency cycle detected: service1 -> service1",
                "services.service1.depends_on.service1",
                5,
            ),
        ];
        for (src, kind, message, path, line) in cases {
            let e = error_of(src);
            assert_eq!(e.message(), *message, "{src}");
            assert_eq!(e.kind, *kind, "{src}");
            assert_eq!(e.path.to_string(), *path, "{src}");
            assert_eq!(e.loc.line, *line, "{src}: {e}");
            assert_eq!(&*e.loc.file.name(), "c.yaml");
        }
    }

    #[test]
    fn normalized_links_blame_the_link() {
        let mut doc = parse("c.yaml", "services:\n  a:\n    image: a\n    links: [db]\n").unwrap();
        crate::normalize::normalize(&mut doc, "p").unwrap();
        let e = check(&doc).unwrap_err();
        assert_eq!(
            e.message(),
            "service \"a\" depends on undefined service \"db\""
        );
        assert_eq!(e.path.to_string(), "services.a.depends_on.db");
        assert_eq!(e.loc.line, 4);
    }
}
