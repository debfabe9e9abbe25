//! Phase 10, profiles: services of inactive profiles removed.
//!
//! - A service without `profiles` is always active; one with profiles is active when one of them
//!   is active (`--profile`, `COMPOSE_PROFILES`), and `*` activates every profile.
//! - A service named on the command line is activated by adding its profiles to the active
//!   ones (so other services of those profiles are active too, as in docker compose).
//! - **Beyond compose-go:** the `required` dependencies of an active service are activated too,
//!   transitively, whatever their profiles (issue 2: "their dependencies are pulled in").
//!   docker compose refuses such a file (`service "debug" depends on undefined service
//!   "helper"`); berth runs it. Every file docker compose accepts gives the same result here.
//!   A `required: false` dependency on an inactive service is dropped, not activated.
//!
//! Run [`all_profiles`] before [`apply_profiles`] when every profile must be listed.

use std::collections::BTreeSet;

use crate::error::{Error, ErrorKind};
use crate::yaml::{Node, Value};

/// Every profile named by some service, sorted, without duplicates.
pub fn all_profiles(doc: &Node) -> Vec<String> {
    let mut out = BTreeSet::new();
    if let Some(services) = doc.get("services").and_then(Node::as_map) {
        for service in services.values() {
            out.extend(profiles_of(service));
        }
    }
    out.into_iter().collect()
}

fn profiles_of(service: &Node) -> Vec<String> {
    match service.get("profiles").map(|p| &p.value) {
        Some(Value::Seq(items)) => items.iter().filter_map(Node::scalar_text).collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

fn is_enabled(service: &Node, active: &BTreeSet<String>) -> bool {
    let profiles = profiles_of(service);
    profiles.is_empty() || active.contains("*") || profiles.iter().any(|p| active.contains(p))
}

/// A `depends_on` entry is required unless it says `required: false`.
fn is_required(dep: &Node) -> bool {
    match dep.get("required").map(|r| &r.value) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => {
            !matches!(s.as_str(), "false" | "False" | "FALSE" | "0" | "f" | "F")
        }
        _ => true,
    }
}

/// Removes the services that no active profile enables.
///
/// `active`: the `--profile` / `COMPOSE_PROFILES` profiles; `explicit_services`: the services
/// named on the command line (their profiles become active).
///
/// Errors: a name in `explicit_services` that is no service (`no such service: x`), and a
/// `required` dependency of an active service that is inactive
/// (`service "web" depends on undefined service "db"`, both [`ErrorKind::Reference`]).
pub fn apply_profiles(
    doc: &mut Node,
    active: &[String],
    explicit_services: &[String],
) -> Result<(), Error> {
    let Some(services) = doc.get_mut("services").and_then(Node::as_map_mut) else {
        return Ok(());
    };
    let mut active: BTreeSet<String> = active.iter().cloned().collect();
    for name in explicit_services {
        let service = services.get(name.as_str()).ok_or_else(|| {
            Error::new(ErrorKind::Reference, format!("no such service: {name}"))
                .hint("run `berth config --services` to list the services")
        })?;
        if !is_enabled(service, &active) {
            active.extend(profiles_of(service));
        }
    }

    let mut enabled: BTreeSet<String> = services
        .iter()
        .filter(|(_, s)| is_enabled(s, &active))
        .map(|(k, _)| k.name.clone())
        .collect();
    // Pull in the required dependencies of active services, transitively.
    let mut queue: Vec<String> = enabled.iter().cloned().collect();
    while let Some(name) = queue.pop() {
        let Some(deps) = services
            .get(name.as_str())
            .and_then(|s| s.get("depends_on"))
            .and_then(Node::as_map)
        else {
            continue;
        };
        for (dep, cfg) in deps {
            if is_required(cfg)
                && services.contains_key(dep.as_str())
                && enabled.insert(dep.name.clone())
            {
                queue.push(dep.name.clone());
            }
        }
    }
    let disabled: BTreeSet<String> = services
        .keys()
        .filter(|k| !enabled.contains(&k.name))
        .map(|k| k.name.clone())
        .collect();
    for name in &enabled {
        if let Some(deps) = services
            .get_mut(name.as_str())
            .and_then(|s| s.get_mut("depends_on"))
            .and_then(Node::as_map_mut)
        {
            deps.retain(|k, _| !disabled.contains(&k.name));
        }
    }
    services.retain(|k, _| enabled.contains(&k.name));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse;

    const DOC: &str = "\
services:
  web:
    image: web
  test_lib:
    profiles: [test]
  coverage_lib:
    profiles: [test]
    depends_on:
      test_lib: {condition: service_started, required: true}
  debug_lib:
    profiles: [debug]
    depends_on:
      test_lib: {condition: service_started, required: true}
  optional:
    profiles: [opt]
    depends_on:
      test_lib: {condition: service_started, required: false}
      web: {condition: service_started, required: true}
";

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn apply(active: &[&str], explicit: &[&str]) -> Result<Vec<String>, Error> {
        let mut doc = parse("p.yaml", DOC).unwrap();
        apply_profiles(&mut doc, &s(active), &s(explicit))?;
        let mut names: Vec<String> = doc
            .get("services")
            .unwrap()
            .as_map()
            .unwrap()
            .keys()
            .map(|k| k.name.clone())
            .collect();
        names.sort();
        Ok(names)
    }

    #[test]
    fn lists_all_profiles_sorted() {
        let doc = parse("p.yaml", DOC).unwrap();
        assert_eq!(all_profiles(&doc), s(&["debug", "opt", "test"]));
    }

    #[test]
    fn no_profile_keeps_unprofiled_services() {
        assert_eq!(apply(&[], &[]).unwrap(), s(&["web"]));
    }

    #[test]
    fn active_profile_enables_its_services() {
        assert_eq!(
            apply(&["test"], &[]).unwrap(),
            s(&["coverage_lib", "test_lib", "web"])
        );
    }

    #[test]
    fn star_enables_everything() {
        assert_eq!(apply(&["*"], &[]).unwrap().len(), 5);
    }

    #[test]
    fn explicit_service_activates_its_profiles() {
        assert_eq!(
            apply(&[], &["coverage_lib"]).unwrap(),
            s(&["coverage_lib", "test_lib", "web"])
        );
    }

    #[test]
    fn required_dependencies_are_pulled_in_whatever_their_profiles() {
        // debug_lib (profile debug) requires test_lib (profile test): it comes along.
        assert_eq!(
            apply(&["debug"], &[]).unwrap(),
            s(&["debug_lib", "test_lib", "web"])
        );
        // Naming a service pulls in its dependencies the same way.
        assert_eq!(
            apply(&[], &["debug_lib"]).unwrap(),
            s(&["debug_lib", "test_lib", "web"])
        );
    }

    #[test]
    fn dependencies_are_pulled_in_transitively() {
        let doc = "services:\n  a:\n    profiles: [x]\n    depends_on:\n      b: {condition: service_started, required: true}\n  b:\n    profiles: [y]\n    depends_on:\n      c: {condition: service_started, required: true}\n  c:\n    profiles: [z]\n  d:\n    profiles: [z]\n";
        let mut doc = parse("t.yaml", doc).unwrap();
        apply_profiles(&mut doc, &s(&["x"]), &[]).unwrap();
        let names: Vec<&str> = doc
            .get("services")
            .unwrap()
            .as_map()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
    }

    #[test]
    fn optional_dependency_on_a_disabled_service_is_dropped() {
        let mut doc = parse("p.yaml", DOC).unwrap();
        apply_profiles(&mut doc, &s(&["opt"]), &[]).unwrap();
        let deps = doc
            .get("services")
            .unwrap()
            .get("optional")
            .unwrap()
            .get("depends_on")
            .unwrap();
        let keys: Vec<&str> = deps.as_map().unwrap().keys().map(|k| k.as_str()).collect();
        assert_eq!(keys, ["web"]);
    }

    #[test]
    fn unknown_explicit_service() {
        let e = apply(&[], &["nope"]).unwrap_err();
        assert_eq!(e.message(), "no such service: nope");
    }
}
