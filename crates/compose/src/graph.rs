//! Phase 13, graph: the services and their `depends_on` as a petgraph directed graph (an edge
//! goes from a service to each service it depends on), for start order, stop order and the
//! subsets `up svc` and `up --no-deps svc` work on.
//!
//! Everything is deterministic: names are sorted wherever a list is returned, and a cycle is
//! reported as compose-go does, `dependency cycle detected: a -> b -> a`, looking for it from the
//! services in name order.

use std::collections::{BTreeMap, BTreeSet};

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};

use crate::error::{Error, ErrorKind};

/// The dependency graph of a project's services.
#[derive(Clone, Debug, Default)]
pub struct ServiceGraph {
    graph: DiGraph<String, ()>,
    index: BTreeMap<String, NodeIndex>,
}

impl ServiceGraph {
    /// Builds the graph from `(service, dependencies)` pairs. A service listed twice has the
    /// union of its dependencies.
    ///
    /// Errors: a dependency on a service that is not listed ([`ErrorKind::Reference`],
    /// `service "a" depends on undefined service "b"`), a cycle ([`ErrorKind::Cycle`]).
    pub fn new(services: impl IntoIterator<Item = (String, Vec<String>)>) -> Result<Self, Error> {
        let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (name, ds) in services {
            deps.entry(name).or_default().extend(ds);
        }
        for (name, ds) in &deps {
            if let Some(missing) = ds.iter().find(|d| !deps.contains_key(*d)) {
                return Err(Error::new(
                    ErrorKind::Reference,
                    format!("service \"{name}\" depends on undefined service \"{missing}\""),
                ));
            }
        }
        if let Some(cycle) = find_cycle(&deps) {
            return Err(Error::new(ErrorKind::Cycle, cycle_message(&cycle)));
        }
        let mut g = ServiceGraph::default();
        for name in deps.keys() {
            g.add_node(name);
        }
        for (name, ds) in &deps {
            for d in ds {
                g.add_edge(name, d);
            }
        }
        Ok(g)
    }

    fn add_node(&mut self, name: &str) {
        if !self.index.contains_key(name) {
            let i = self.graph.add_node(name.to_string());
            self.index.insert(name.to_string(), i);
        }
    }

    fn add_edge(&mut self, from: &str, to: &str) {
        if let (Some(&a), Some(&b)) = (self.index.get(from), self.index.get(to)) {
            self.graph.update_edge(a, b, ());
        }
    }

    /// The services, sorted.
    pub fn services(&self) -> Vec<String> {
        self.index.keys().cloned().collect()
    }

    /// Number of services.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// No service at all.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Whether `name` is a service of this graph.
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    fn neighbours(&self, name: &str, dir: Direction) -> Vec<String> {
        let Some(&i) = self.index.get(name) else {
            return Vec::new();
        };
        let mut out: Vec<String> = self
            .graph
            .neighbors_directed(i, dir)
            .map(|n| self.graph[n].clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The services `name` depends on directly, sorted (empty for an unknown name).
    pub fn dependencies_of(&self, name: &str) -> Vec<String> {
        self.neighbours(name, Direction::Outgoing)
    }

    /// The services that depend on `name`, directly or transitively, sorted: what must stop
    /// before it (empty for an unknown name).
    pub fn dependents_of(&self, name: &str) -> Vec<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![name.to_string()];
        while let Some(n) = todo.pop() {
            for d in self.neighbours(&n, Direction::Incoming) {
                if seen.insert(d.clone()) {
                    todo.push(d);
                }
            }
        }
        seen.remove(name);
        seen.into_iter().collect()
    }

    /// Levels of a parallel start: level 0 has the services without dependencies, level n the
    /// services whose dependencies are all in levels below n (each as low as possible). Names
    /// are sorted in a level.
    pub fn start_levels(&self) -> Vec<Vec<String>> {
        self.levels(Direction::Outgoing)
    }

    /// Levels of a parallel stop: level 0 has the services nothing depends on, level n the
    /// services whose dependents are all in levels below n. Names are sorted in a level.
    pub fn stop_levels(&self) -> Vec<Vec<String>> {
        self.levels(Direction::Incoming)
    }

    /// Longest-path layering along `dir` (the graph is acyclic, so every node gets a level).
    fn levels(&self, dir: Direction) -> Vec<Vec<String>> {
        let mut level: BTreeMap<NodeIndex, usize> = BTreeMap::new();
        // Repeatedly settle the nodes whose neighbours along `dir` are all settled.
        while level.len() < self.graph.node_count() {
            let before = level.len();
            for (_, &i) in self.index.iter() {
                if level.contains_key(&i) {
                    continue;
                }
                let mut l = 0;
                let mut ready = true;
                for n in self.graph.neighbors_directed(i, dir) {
                    match level.get(&n) {
                        Some(&nl) => l = l.max(nl + 1),
                        None => {
                            ready = false;
                            break;
                        }
                    }
                }
                if ready {
                    level.insert(i, l);
                }
            }
            if level.len() == before {
                break; // unreachable for an acyclic graph; never loop forever
            }
        }
        let depth = level.values().max().map_or(0, |m| m + 1);
        let mut out = vec![Vec::new(); depth];
        for (name, i) in &self.index {
            if let Some(slot) = level.get(i).and_then(|&l| out.get_mut(l)) {
                slot.push(name.clone());
            }
        }
        out
    }

    /// The subgraph of `names` and everything they depend on, transitively (`up svc`).
    /// Unknown names are ignored.
    pub fn with_dependencies(&self, names: &[String]) -> ServiceGraph {
        let mut keep = BTreeSet::new();
        let mut todo: Vec<String> = names.iter().filter(|n| self.contains(n)).cloned().collect();
        while let Some(n) = todo.pop() {
            if keep.insert(n.clone()) {
                todo.extend(self.dependencies_of(&n));
            }
        }
        self.subgraph(&keep)
    }

    /// The subgraph of `names` only, with the dependencies among them (`up --no-deps svc`).
    /// Unknown names are ignored.
    pub fn only(&self, names: &[String]) -> ServiceGraph {
        let keep: BTreeSet<String> = names.iter().filter(|n| self.contains(n)).cloned().collect();
        self.subgraph(&keep)
    }

    fn subgraph(&self, keep: &BTreeSet<String>) -> ServiceGraph {
        let mut g = ServiceGraph::default();
        for name in keep {
            g.add_node(name);
        }
        for name in keep {
            for d in self.dependencies_of(name) {
                if keep.contains(&d) {
                    g.add_edge(name, &d);
                }
            }
        }
        g
    }
}

/// `dependency cycle detected: a -> b -> a`
pub fn cycle_message(cycle: &[String]) -> String {
    format!("dependency cycle detected: {}", cycle.join(" -> "))
}

/// The first dependency cycle met by a depth-first search from the services in name order,
/// following dependencies in name order: the path from the first service of the cycle back to
/// itself (`[a, b, a]`; `[a, a]` for a self-dependency). Dependencies that are not keys of
/// `deps` are ignored.
pub fn find_cycle<S: AsRef<str>>(deps: &BTreeMap<String, BTreeSet<S>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        Visiting,
        Done,
    }
    let mut state: BTreeMap<&str, State> = BTreeMap::new();
    for start in deps.keys() {
        if state.contains_key(start.as_str()) {
            continue;
        }
        // Iterative DFS: (node, its sorted dependencies, next dependency to visit).
        let mut stack: Vec<(&str, Vec<&str>, usize)> = Vec::new();
        state.insert(start, State::Visiting);
        stack.push((start, sorted_deps(deps, start), 0));
        while let Some(top) = stack.last_mut() {
            let (node, children, next) = (top.0, &top.1, &mut top.2);
            let Some(&child) = children.get(*next) else {
                state.insert(node, State::Done);
                stack.pop();
                continue;
            };
            *next += 1;
            match state.get(child) {
                Some(State::Done) => {}
                Some(State::Visiting) => {
                    let from = stack.iter().position(|(n, _, _)| *n == child).unwrap_or(0);
                    let mut cycle: Vec<String> = stack
                        .iter()
                        .skip(from)
                        .map(|(n, _, _)| n.to_string())
                        .collect();
                    cycle.push(child.to_string());
                    return Some(cycle);
                }
                None => {
                    if let Some((key, _)) = deps.get_key_value(child) {
                        state.insert(key, State::Visiting);
                        stack.push((key, sorted_deps(deps, key), 0));
                    }
                }
            }
        }
    }
    None
}

fn sorted_deps<'a, S: AsRef<str>>(
    deps: &'a BTreeMap<String, BTreeSet<S>>,
    name: &str,
) -> Vec<&'a str> {
    let mut v: Vec<&str> = deps
        .get(name)
        .map(|ds| {
            ds.iter()
                .map(AsRef::as_ref)
                .filter(|d| deps.contains_key(*d))
                .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}
