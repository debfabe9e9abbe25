//! Phase 10, profiles: services of inactive profiles removed, as compose-go's
//! `Project.WithProfiles` and `WithServicesEnabled` and the Compose Specification say.
//!
//! - A service without `profiles` is always active; one with profiles is active when one of them
//!   is active, and `*` activates every profile.
//! - A service named on the command line is activated by adding its profiles to the active
//!   ones (so other services of those profiles are active too, as in docker compose).
//! - Dependencies are never activated implicitly (the specification: "References to other
//!   services … do not automatically enable a component that would otherwise have been ignored
//!   by active profiles. Instead Compose returns an error"): an active service whose
//!   `depends_on` names an inactive service is an error when the dependency is `required`, and
//!   the entry is dropped otherwise.
//!
//! Run [`all_profiles`] before [`apply_profiles`] when every profile must be listed.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{Error, ErrorKind};
use crate::yaml::{Map, Node, Value, YamlPath};

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
                .hint("run `docker compose config --services` to list the services")
        })?;
        if !is_enabled(service, &active) {
            active.extend(profiles_of(service));
        }
    }

    let enabled: BTreeSet<String> = services
        .iter()
        .filter(|(_, s)| is_enabled(s, &active))
        .map(|(k, _)| k.name.clone())
        .collect();
    // Disabled services and their profiles (for the hint).
    let disabled: BTreeMap<String, Vec<String>> = services
        .iter()
        .filter(|(k, _)| !enabled.contains(&k.name))
        .map(|(k, s)| (k.name.clone(), profiles_of(s)))
        .collect();

    for name in &enabled {
        let Some(service) = services.get_mut(name.as_str()) else {
            continue;
        };
        let Some(deps) = service.get_mut("depends_on").and_then(Node::as_map_mut) else {
            continue;
        };
        check_dependencies(name, deps, &disabled)?;
    }
    services.retain(|k, _| enabled.contains(&k.name));
    Ok(())
}

/// Refuses a required dependency on a disabled service; drops the optional ones.
fn check_dependencies(
    name: &str,
    deps: &mut Map,
    disabled: &BTreeMap<String, Vec<String>>,
) -> Result<(), Error> {
    let path = YamlPath::root().key("services").key(name).key("depends_on");
    for (dep, cfg) in deps.iter() {
        let Some(profiles) = disabled.get(&dep.name) else {
            continue;
        };
        if !is_required(cfg) {
            continue;
        }
        let loc = if dep.loc.is_known() { dep.loc } else { cfg.loc };
        let flags: Vec<String> = profiles.iter().map(|p| format!("--profile {p}")).collect();
        return Err(Error::new(
            ErrorKind::Reference,
            format!("service \"{name}\" depends on undefined service \"{}\"", dep.name),
        )
        .at(loc)
        .path(path.key(&dep.name))
        .hint(format!(
            "\"{}\" is not enabled by the active profiles: add {}, or declare the dependency with `required: false`",
            dep.name,
            flags.join(" or ")
        )));
    }
    deps.retain(|k, _| !disabled.contains_key(&k.name));
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
    fn required_dependency_on_a_disabled_service_is_an_error() {
        let e = apply(&["debug"], &[]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Reference);
        assert_eq!(
            e.message(),
            "service \"debug_lib\" depends on undefined service \"test_lib\""
        );
        assert_eq!(e.path.to_string(), "services.debug_lib.depends_on.test_lib");
        assert_eq!(e.loc.line, 13);
        assert!(
            e.hint
                .as_deref()
                .unwrap_or_default()
                .contains("--profile test"),
            "{e}"
        );
        // Naming the service does not enable its dependency's profile either.
        assert!(apply(&[], &["debug_lib"]).is_err());
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
