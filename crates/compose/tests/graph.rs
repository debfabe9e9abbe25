//! The service graph: levels, subgraphs and cycle messages.

use berth_compose::ErrorKind;
use berth_compose::graph::ServiceGraph;

fn graph(spec: &[(&str, &[&str])]) -> Result<ServiceGraph, berth_compose::Error> {
    ServiceGraph::new(
        spec.iter()
            .map(|(n, ds)| (n.to_string(), ds.iter().map(|d| d.to_string()).collect())),
    )
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn levels(v: &[&[&str]]) -> Vec<Vec<String>> {
    v.iter().map(|l| names(l)).collect()
}

/// web -> api -> db, web -> cache, worker -> db, lone
fn sample() -> ServiceGraph {
    graph(&[
        ("web", &["api", "cache"]),
        ("api", &["db"]),
        ("worker", &["db"]),
        ("db", &[]),
        ("cache", &[]),
        ("lone", &[]),
    ])
    .unwrap()
}

#[test]
fn start_levels_are_longest_paths_sorted() {
    let g = sample();
    assert_eq!(
        g.start_levels(),
        levels(&[&["cache", "db", "lone"], &["api", "worker"], &["web"]])
    );
}

#[test]
fn stop_levels_stop_dependents_first() {
    let g = sample();
    assert_eq!(
        g.stop_levels(),
        levels(&[&["lone", "web", "worker"], &["api", "cache"], &["db"]])
    );
}

#[test]
fn every_dependency_starts_in_an_earlier_level() {
    let g = sample();
    let start = g.start_levels();
    let level_of = |n: &str| start.iter().position(|l| l.iter().any(|x| x == n)).unwrap();
    for s in g.services() {
        for d in g.dependencies_of(&s) {
            assert!(level_of(&d) < level_of(&s), "{d} before {s}");
        }
    }
    assert_eq!(start.iter().map(Vec::len).sum::<usize>(), g.len());
}

#[test]
fn with_dependencies_is_transitive() {
    let g = sample().with_dependencies(&names(&["web"]));
    assert_eq!(g.services(), names(&["api", "cache", "db", "web"]));
    assert_eq!(
        g.start_levels(),
        levels(&[&["cache", "db"], &["api"], &["web"]])
    );
    let g = sample().with_dependencies(&names(&["worker", "nope"]));
    assert_eq!(g.services(), names(&["db", "worker"]));
}

#[test]
fn only_keeps_edges_among_the_named() {
    let g = sample().only(&names(&["web", "api"]));
    assert_eq!(g.services(), names(&["api", "web"]));
    assert_eq!(g.dependencies_of("web"), names(&["api"]));
    assert_eq!(g.start_levels(), levels(&[&["api"], &["web"]]));
    let g = sample().only(&names(&["web", "worker"]));
    assert_eq!(g.start_levels(), levels(&[&["web", "worker"]]));
}

#[test]
fn dependents_are_transitive_and_sorted() {
    let g = sample();
    assert_eq!(g.dependents_of("db"), names(&["api", "web", "worker"]));
    assert_eq!(g.dependents_of("web"), Vec::<String>::new());
    assert_eq!(g.dependents_of("nope"), Vec::<String>::new());
}

#[test]
fn cycle_is_reported_from_the_first_name() {
    let e = graph(&[
        ("service3", &["service1"]),
        ("service2", &["service3"]),
        ("service1", &["service2"]),
    ])
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Cycle);
    assert_eq!(
        e.message(),
        "dependency cycle detected: service1 -> service2 -> service3 -> service1"
    );
}

#[test]
fn self_dependency_is_a_cycle() {
    let e = graph(&[("service1", &["service1"])]).unwrap_err();
    assert_eq!(
        e.message(),
        "dependency cycle detected: service1 -> service1"
    );
}

#[test]
fn cycle_below_an_acyclic_entry() {
    let e = graph(&[("a", &["b"]), ("b", &["c"]), ("c", &["d"]), ("d", &["c"])]).unwrap_err();
    assert_eq!(e.message(), "dependency cycle detected: c -> d -> c");
}

#[test]
fn undefined_dependency_is_refused() {
    let e = graph(&[("bar", &["zot"])]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Reference);
    assert_eq!(
        e.message(),
        "service \"bar\" depends on undefined service \"zot\""
    );
}

#[test]
fn empty_graph() {
    let g = graph(&[]).unwrap();
    assert!(g.is_empty());
    assert!(g.start_levels().is_empty());
    assert!(g.stop_levels().is_empty());
}
