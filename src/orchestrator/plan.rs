//! Reconciliation: a pure function from the desired project and the observed containers to a
//! plan of atomic container operations, for `berth up` and `berth down`.
//!
//! The rules are docker compose v2's (`pkg/compose/convergence.go`, `reconcile.go`):
//!
//! - a service's containers are taken in number order; beyond its scale the highest numbers
//!   are removed (`scale: 0` removes them all);
//! - a kept container whose config hash differs (or every one with `--force-recreate`) is
//!   recreated, unless `--no-recreate`; otherwise a stopped one (created, exited, dead) is
//!   started, unless `--no-start`; paused, restarting and running ones are left as they are;
//! - missing replicas are created with the numbers after the highest existing one (gaps are
//!   not refilled, as Docker's `nextContainerNumber`);
//! - a service is recreated when a dependency it declares with `restart: true` is recreated,
//!   transitively;
//! - `up svc…` works on `svc…` and their dependencies only; `--force-recreate` applies to the
//!   services named, their dependencies are recreated only when they diverged;
//! - one-off containers (`berth run`) are never touched by `up` and are never orphans;
//!   containers of a service the project does not define are orphans: removed with
//!   `--remove-orphans`, otherwise reported so that the caller warns about them.
//!
//! No I/O here: the caller observes the containers, runs the plan and prints the result.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, bail};
use berth_compose::model::ServiceDependency;

/// A service as `up` wants it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredService {
    /// The service's name.
    pub name: String,
    /// Config hash of the service (`berth_compose::hash::service_hash`), compared with the
    /// hash recorded on its containers.
    pub hash: String,
    /// Replicas wanted (before `--scale` overrides).
    pub scale: u32,
    /// Its `depends_on`.
    pub depends_on: Vec<Dependency>,
}

/// One `depends_on` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dependency {
    /// The service depended on.
    pub service: String,
    /// What to wait for before starting the dependent.
    pub condition: Condition,
    /// Recreate the dependent when this dependency is recreated.
    pub restart: bool,
    /// Whether the dependency must exist.
    pub required: bool,
}

impl Dependency {
    /// The dependency of `service` on `name` as the compose model has it. An unknown condition
    /// is an error naming the service and the key.
    pub fn from_compose(service: &str, name: &str, dep: &ServiceDependency) -> Result<Self> {
        let condition = match dep.condition.as_str() {
            "" | "service_started" => Condition::Started,
            "service_healthy" => Condition::Healthy,
            "service_completed_successfully" => Condition::CompletedSuccessfully,
            other => bail!(
                "service \"{service}\": depends_on.{name}.condition: unknown condition \
                 \"{other}\" (expected service_started, service_healthy or \
                 service_completed_successfully)"
            ),
        };
        Ok(Dependency {
            service: name.to_string(),
            condition,
            restart: dep.restart,
            required: dep.required,
        })
    }
}

/// A `depends_on` condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    /// `service_started`.
    Started,
    /// `service_healthy`.
    Healthy,
    /// `service_completed_successfully`.
    CompletedSuccessfully,
}

/// A container of the project as observed before planning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedContainer {
    /// Container id.
    pub id: String,
    /// Container name.
    pub name: String,
    /// Its service (label `com.docker.compose.service`).
    pub service: String,
    /// Its replica number (label `com.docker.compose.container-number`).
    pub number: u32,
    /// The config hash it was created from (label `com.docker.compose.config-hash`).
    pub hash: String,
    /// Its state.
    pub state: ObservedState,
    /// A one-off container (`berth run`, label `com.docker.compose.oneoff=True`).
    pub oneoff: bool,
}

/// Docker's container states, as far as planning cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObservedState {
    Created,
    Running,
    Paused,
    Restarting,
    Exited,
    Dead,
}

/// The options of `berth up` that planning depends on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpOptions {
    /// `--force-recreate`: recreate the services asked for even when unchanged.
    pub force_recreate: bool,
    /// `--no-recreate`: never recreate (takes precedence over `force_recreate`).
    pub no_recreate: bool,
    /// `--no-start`: create, do not start.
    pub no_start: bool,
    /// `--remove-orphans`.
    pub remove_orphans: bool,
    /// The services asked for (empty = all); other services are left alone, except the
    /// dependencies of those asked for.
    pub services: Vec<String>,
    /// `--scale service=n` overrides.
    pub scale: BTreeMap<String, u32>,
}

/// One atomic operation on a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Create replica `number` of `service` (and start it, unless `--no-start`).
    Create { service: String, number: u32 },
    /// Replace container `old` (replica `number`) by a new one from the current config (and
    /// start it, unless `--no-start`).
    Recreate {
        service: String,
        number: u32,
        old: String,
    },
    /// Start the existing, up-to-date container `id`.
    Start { service: String, id: String },
    /// Stop then remove container `id` (scale down, orphans, `down`).
    Remove { service: String, id: String },
}

impl Op {
    /// The service the operation is about.
    pub fn service(&self) -> &str {
        match self {
            Op::Create { service, .. }
            | Op::Recreate { service, .. }
            | Op::Start { service, .. }
            | Op::Remove { service, .. } => service,
        }
    }
}

/// What `up` has to do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Dependency levels (from `berth_compose::graph::ServiceGraph::start_levels`); the ops of
    /// one level can run in parallel, a level starts after the previous one is done.
    /// `levels[i]` holds the ops of the services of the `levels[i]` given to [`plan`] (it may
    /// be empty), so the caller can still wait for the `depends_on` conditions of level `i`.
    pub levels: Vec<Vec<Op>>,
    /// Scale-down and orphan removals (run first).
    pub removals: Vec<Op>,
    /// Orphans found but kept (no --remove-orphans): to warn about.
    pub orphans: Vec<ObservedContainer>,
}

impl Plan {
    /// Nothing to do: no operation at all (kept orphans change nothing).
    pub fn is_empty(&self) -> bool {
        self.removals.is_empty() && self.levels.iter().all(Vec::is_empty)
    }
}

/// How the kept containers of one service are compared with their desired config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Recreate {
    /// When the hash differs or a `restart: true` dependency is recreated.
    Diverged,
    /// Always.
    Force,
    /// Never.
    Never,
}

/// Plans `up`: `desired` are all the services of the project (a container of any other
/// service is an orphan), `levels` the start levels of the services to work on (the subgraph
/// of `opts.services` and their dependencies, or of `opts.services` alone for `--no-deps`),
/// `observed` the project's containers, one-off ones included. A service is worked on when it
/// is in `levels` and, if `opts.services` is given, is one of them or one of their transitive
/// dependencies. `--scale` entries for services outside the project are ignored (the caller
/// validates them).
pub fn plan(
    desired: &[DesiredService],
    levels: &[Vec<String>],
    observed: &[ObservedContainer],
    opts: &UpOptions,
) -> Plan {
    let by_name: BTreeMap<&str, &DesiredService> =
        desired.iter().map(|d| (d.name.as_str(), d)).collect();
    let scope = scope(&by_name, levels, &opts.services);

    let mut containers: BTreeMap<&str, Vec<&ObservedContainer>> = BTreeMap::new();
    let mut orphans: Vec<&ObservedContainer> = Vec::new();
    for c in observed.iter().filter(|c| !c.oneoff) {
        if by_name.contains_key(c.service.as_str()) {
            containers.entry(c.service.as_str()).or_default().push(c);
        } else {
            orphans.push(c);
        }
    }
    orphans.sort_by(|a, b| container_order(a, b));

    let mut out = Plan::default();
    let mut recreated: BTreeSet<&str> = BTreeSet::new();
    let mut planned: BTreeSet<&str> = BTreeSet::new();
    for level in levels {
        let mut ops = Vec::new();
        for name in level {
            let Some(service) = by_name.get(name.as_str()) else {
                continue;
            };
            // A name listed twice in `levels` is planned once.
            if !scope.contains(name.as_str()) || !planned.insert(name.as_str()) {
                continue;
            }
            let strategy = if opts.no_recreate {
                Recreate::Never
            } else if opts.force_recreate
                && (opts.services.is_empty() || opts.services.contains(name))
            {
                Recreate::Force
            } else {
                Recreate::Diverged
            };
            let parent_recreated = service
                .depends_on
                .iter()
                .any(|d| d.restart && recreated.contains(d.service.as_str()));
            let scale = opts.scale.get(name).copied().unwrap_or(service.scale);
            let mut existing = containers.remove(name.as_str()).unwrap_or_default();
            existing.sort_by(|a, b| container_order(a, b));
            let any_recreated = converge_service(
                service,
                scale,
                &existing,
                strategy,
                parent_recreated,
                opts.no_start,
                &mut ops,
                &mut out.removals,
            );
            if any_recreated {
                recreated.insert(service.name.as_str());
            }
        }
        out.levels.push(ops);
    }

    if opts.remove_orphans {
        out.removals.extend(orphans.into_iter().map(remove));
    } else {
        out.orphans = orphans.into_iter().cloned().collect();
    }
    out
}

/// The services `plan` works on: those of `levels` that the project defines, narrowed to
/// `services` and their transitive dependencies when `services` is given.
fn scope<'a>(
    by_name: &BTreeMap<&str, &'a DesiredService>,
    levels: &'a [Vec<String>],
    services: &[String],
) -> BTreeSet<&'a str> {
    let in_levels = levels
        .iter()
        .flatten()
        .map(String::as_str)
        .filter(|n| by_name.contains_key(n));
    if services.is_empty() {
        return in_levels.collect();
    }
    let mut wanted: BTreeSet<&str> = BTreeSet::new();
    let mut todo: Vec<&str> = services.iter().map(String::as_str).collect();
    while let Some(n) = todo.pop() {
        if let Some(s) = by_name.get(n)
            && wanted.insert(s.name.as_str())
        {
            todo.extend(s.depends_on.iter().map(|d| d.service.as_str()));
        }
    }
    in_levels.filter(|n| wanted.contains(n)).collect()
}

/// Converges one service's `existing` containers (sorted by number) towards `scale` replicas:
/// pushes its removals to `removals` and the rest to `ops`. Returns whether a container is
/// recreated.
#[allow(clippy::too_many_arguments)]
fn converge_service(
    service: &DesiredService,
    scale: u32,
    existing: &[&ObservedContainer],
    strategy: Recreate,
    parent_recreated: bool,
    no_start: bool,
    ops: &mut Vec<Op>,
    removals: &mut Vec<Op>,
) -> bool {
    let keep = existing
        .len()
        .min(usize::try_from(scale).unwrap_or(usize::MAX));
    let (kept, extra) = existing.split_at(keep);
    removals.extend(extra.iter().map(|c| remove(c)));

    let mut any_recreated = false;
    for c in kept {
        let must_recreate = match strategy {
            Recreate::Never => false,
            Recreate::Force => true,
            Recreate::Diverged => parent_recreated || c.hash != service.hash,
        };
        if must_recreate {
            any_recreated = true;
            ops.push(Op::Recreate {
                service: service.name.clone(),
                number: c.number,
                old: c.id.clone(),
            });
            continue;
        }
        let stopped = matches!(
            c.state,
            ObservedState::Created | ObservedState::Exited | ObservedState::Dead
        );
        if stopped && !no_start {
            ops.push(Op::Start {
                service: service.name.clone(),
                id: c.id.clone(),
            });
        }
    }

    // Docker's nextContainerNumber: after the highest number in use, gaps are not refilled.
    let mut next = existing
        .iter()
        .map(|c| c.number)
        .max()
        .map_or(Some(1), |n| n.checked_add(1));
    for _ in existing.len()..usize::try_from(scale).unwrap_or(usize::MAX) {
        // A number past u32::MAX cannot be given: create what fits rather than wrap around.
        let Some(number) = next else { break };
        ops.push(Op::Create {
            service: service.name.clone(),
            number,
        });
        next = number.checked_add(1);
    }
    any_recreated
}

/// Plans `down`: every container of the services of `levels` (one-off ones too), dependents
/// first (`levels` are start levels, walked in reverse); the containers of other services
/// (orphans) only with `remove_orphans`, in a level of their own that runs first. Levels
/// without any container are left out, so an empty result means nothing to remove.
pub fn down(
    levels: &[Vec<String>],
    observed: &[ObservedContainer],
    remove_orphans: bool,
) -> Vec<Vec<Op>> {
    let known: BTreeSet<&str> = levels.iter().flatten().map(String::as_str).collect();
    let mut out = Vec::new();
    if remove_orphans {
        let mut orphans: Vec<&ObservedContainer> = observed
            .iter()
            .filter(|c| !known.contains(c.service.as_str()))
            .collect();
        orphans.sort_by(|a, b| container_order(a, b));
        if !orphans.is_empty() {
            out.push(orphans.into_iter().map(remove).collect());
        }
    }
    for level in levels.iter().rev() {
        let names: BTreeSet<&str> = level.iter().map(String::as_str).collect();
        let mut here: Vec<&ObservedContainer> = observed
            .iter()
            .filter(|c| names.contains(c.service.as_str()))
            .collect();
        here.sort_by(|a, b| container_order(a, b));
        if !here.is_empty() {
            out.push(here.into_iter().map(remove).collect());
        }
    }
    out
}

/// Deterministic order of containers: service, service containers before one-off ones,
/// number, id.
fn container_order(a: &ObservedContainer, b: &ObservedContainer) -> std::cmp::Ordering {
    (&a.service, a.oneoff, a.number, &a.id).cmp(&(&b.service, b.oneoff, b.number, &b.id))
}

fn remove(c: &ObservedContainer) -> Op {
    Op::Remove {
        service: c.service.clone(),
        id: c.id.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_compose::graph::ServiceGraph;

    use ObservedState::*;

    fn dep(service: &str, restart: bool) -> Dependency {
        Dependency {
            service: service.into(),
            condition: Condition::Started,
            restart,
            required: true,
        }
    }

    fn svc(name: &str, hash: &str, scale: u32, deps: Vec<Dependency>) -> DesiredService {
        DesiredService {
            name: name.into(),
            hash: hash.into(),
            scale,
            depends_on: deps,
        }
    }

    fn ctr(service: &str, number: u32, hash: &str, state: ObservedState) -> ObservedContainer {
        ObservedContainer {
            id: format!("{service}-id{number}"),
            name: format!("p-{service}-{number}"),
            service: service.into(),
            number,
            hash: hash.into(),
            state,
            oneoff: false,
        }
    }

    fn oneoff(service: &str, id: &str, state: ObservedState) -> ObservedContainer {
        ObservedContainer {
            id: id.into(),
            name: format!("p-{service}-run-{id}"),
            service: service.into(),
            number: 1,
            hash: "old".into(),
            state,
            oneoff: true,
        }
    }

    fn graph(desired: &[DesiredService]) -> ServiceGraph {
        ServiceGraph::new(desired.iter().map(|d| {
            (
                d.name.clone(),
                d.depends_on.iter().map(|x| x.service.clone()).collect(),
            )
        }))
        .expect("test graph is acyclic")
    }

    fn levels(desired: &[DesiredService]) -> Vec<Vec<String>> {
        graph(desired).start_levels()
    }

    fn create(service: &str, number: u32) -> Op {
        Op::Create {
            service: service.into(),
            number,
        }
    }

    fn recreate(service: &str, number: u32) -> Op {
        Op::Recreate {
            service: service.into(),
            number,
            old: format!("{service}-id{number}"),
        }
    }

    fn start(service: &str, number: u32) -> Op {
        Op::Start {
            service: service.into(),
            id: format!("{service}-id{number}"),
        }
    }

    fn rm(service: &str, number: u32) -> Op {
        Op::Remove {
            service: service.into(),
            id: format!("{service}-id{number}"),
        }
    }

    /// db ← web ← proxy (web depends on db, proxy on web), both with `restart: false`.
    fn stack(restart: bool) -> Vec<DesiredService> {
        vec![
            svc("db", "h-db", 1, vec![]),
            svc("web", "h-web", 1, vec![dep("db", restart)]),
            svc("proxy", "h-proxy", 1, vec![dep("web", restart)]),
        ]
    }

    fn running(desired: &[DesiredService]) -> Vec<ObservedContainer> {
        desired
            .iter()
            .map(|d| ctr(&d.name, 1, &d.hash, Running))
            .collect()
    }

    fn up(desired: &[DesiredService], observed: &[ObservedContainer], opts: &UpOptions) -> Plan {
        plan(desired, &levels(desired), observed, opts)
    }

    #[test]
    fn fresh_project_creates_every_service_in_dependency_levels() {
        let d = stack(false);
        let p = up(&d, &[], &UpOptions::default());
        assert_eq!(
            p.levels,
            vec![
                vec![create("db", 1)],
                vec![create("web", 1)],
                vec![create("proxy", 1)]
            ]
        );
        assert!(p.removals.is_empty() && p.orphans.is_empty());
        assert!(!p.is_empty());
    }

    #[test]
    fn unchanged_running_project_is_an_empty_plan() {
        let d = stack(true);
        let p = up(&d, &running(&d), &UpOptions::default());
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(p.levels.len(), 3, "levels stay aligned with the input");
    }

    #[test]
    fn paused_and_restarting_containers_are_left_alone() {
        let d = vec![svc("a", "h", 1, vec![]), svc("b", "h", 1, vec![])];
        let obs = vec![ctr("a", 1, "h", Paused), ctr("b", 1, "h", Restarting)];
        assert!(up(&d, &obs, &UpOptions::default()).is_empty());
    }

    #[test]
    fn changed_hash_recreates_that_service_only() {
        let d = stack(false);
        let mut obs = running(&d);
        obs[1].hash = "stale".into();
        let p = up(&d, &obs, &UpOptions::default());
        assert_eq!(p.levels, vec![vec![], vec![recreate("web", 1)], vec![]]);
        assert!(p.removals.is_empty());
    }

    #[test]
    fn restart_true_cascades_recreation_transitively() {
        let d = stack(true);
        let mut obs = running(&d);
        obs[0].hash = "stale".into();
        let p = up(&d, &obs, &UpOptions::default());
        assert_eq!(
            p.levels,
            vec![
                vec![recreate("db", 1)],
                vec![recreate("web", 1)],
                vec![recreate("proxy", 1)]
            ]
        );
    }

    #[test]
    fn cascade_stops_at_a_dependency_without_restart() {
        // proxy depends on web without restart: only db and web are recreated.
        let mut d = stack(true);
        d[2].depends_on = vec![dep("web", false)];
        let mut obs = running(&d);
        obs[0].hash = "stale".into();
        let p = up(&d, &obs, &UpOptions::default());
        assert_eq!(
            p.levels,
            vec![vec![recreate("db", 1)], vec![recreate("web", 1)], vec![]]
        );
    }

    #[test]
    fn created_dependency_does_not_cascade() {
        // db has no container yet: creating it is not a recreation, web stays.
        let d = stack(true);
        let obs = vec![
            ctr("web", 1, "h-web", Running),
            ctr("proxy", 1, "h-proxy", Running),
        ];
        let p = up(&d, &obs, &UpOptions::default());
        assert_eq!(p.levels, vec![vec![create("db", 1)], vec![], vec![]]);
    }

    #[test]
    fn scale_up_then_down_uses_and_removes_the_highest_numbers() {
        let d = vec![svc("w", "h", 1, vec![])];
        let opts = |n: u32| UpOptions {
            scale: BTreeMap::from([("w".to_string(), n)]),
            ..UpOptions::default()
        };
        // 1 → 3: numbers 2 and 3 are created.
        let p = up(&d, &[ctr("w", 1, "h", Running)], &opts(3));
        assert_eq!(p.levels, vec![vec![create("w", 2), create("w", 3)]]);
        // 3 → 1: 3 and 2 go, 1 stays; observed out of order on purpose.
        let obs = vec![
            ctr("w", 3, "h", Running),
            ctr("w", 1, "h", Running),
            ctr("w", 2, "h", Running),
        ];
        let p = up(&d, &obs, &opts(1));
        assert_eq!(p.removals, vec![rm("w", 2), rm("w", 3)]);
        assert!(p.levels.iter().all(Vec::is_empty));
        // The service's own scale applies without an override.
        let p = up(&d, &obs, &UpOptions::default());
        assert_eq!(p.removals, vec![rm("w", 2), rm("w", 3)]);
    }

    #[test]
    fn scale_zero_removes_every_container() {
        let d = vec![svc("w", "h", 0, vec![])];
        let obs = vec![ctr("w", 1, "h", Running), ctr("w", 2, "stale", Exited)];
        let p = up(&d, &obs, &UpOptions::default());
        assert_eq!(p.removals, vec![rm("w", 1), rm("w", 2)]);
        assert!(p.levels.iter().all(Vec::is_empty));
    }

    #[test]
    fn a_service_listed_twice_in_levels_is_planned_once() {
        let d = vec![svc("w", "h", 1, vec![])];
        let lv = vec![vec!["w".to_string()], vec!["w".to_string()]];
        let p = plan(&d, &lv, &[], &UpOptions::default());
        assert_eq!(p.levels, vec![vec![create("w", 1)], vec![]]);
    }

    #[test]
    fn gaps_are_not_refilled() {
        let d = vec![svc("w", "h", 3, vec![])];
        let obs = vec![ctr("w", 1, "h", Running), ctr("w", 3, "h", Running)];
        let p = up(&d, &obs, &UpOptions::default());
        assert_eq!(p.levels, vec![vec![create("w", 4)]]);
    }

    #[test]
    fn scale_down_keeps_the_lowest_and_checks_them() {
        // The kept container is still compared with the config.
        let d = vec![svc("w", "h", 1, vec![])];
        let obs = vec![ctr("w", 1, "stale", Running), ctr("w", 2, "h", Running)];
        let p = up(&d, &obs, &UpOptions::default());
        assert_eq!(p.removals, vec![rm("w", 2)]);
        assert_eq!(p.levels, vec![vec![recreate("w", 1)]]);
    }

    #[test]
    fn force_recreate_recreates_unchanged_containers() {
        let d = stack(false);
        let opts = UpOptions {
            force_recreate: true,
            ..UpOptions::default()
        };
        let p = up(&d, &running(&d), &opts);
        assert_eq!(
            p.levels,
            vec![
                vec![recreate("db", 1)],
                vec![recreate("web", 1)],
                vec![recreate("proxy", 1)]
            ]
        );
    }

    #[test]
    fn force_recreate_with_services_spares_unchanged_dependencies() {
        let d = stack(false);
        let opts = UpOptions {
            force_recreate: true,
            services: vec!["web".into()],
            ..UpOptions::default()
        };
        let lv = graph(&d).with_dependencies(&opts.services).start_levels();
        let p = plan(&d, &lv, &running(&d), &opts);
        assert_eq!(p.levels, vec![vec![], vec![recreate("web", 1)]]);
    }

    #[test]
    fn no_recreate_keeps_changed_containers_and_starts_stopped_ones() {
        let d = stack(true);
        let obs = vec![
            ctr("db", 1, "stale", Exited),
            ctr("web", 1, "stale", Running),
            ctr("proxy", 1, "stale", Running),
        ];
        for force_recreate in [false, true] {
            let opts = UpOptions {
                no_recreate: true,
                force_recreate,
                ..UpOptions::default()
            };
            let p = up(&d, &obs, &opts);
            assert_eq!(p.levels, vec![vec![start("db", 1)], vec![], vec![]]);
        }
    }

    #[test]
    fn stopped_containers_are_started() {
        let d = vec![
            svc("a", "h", 1, vec![]),
            svc("b", "h", 1, vec![]),
            svc("c", "h", 1, vec![]),
        ];
        let obs = vec![
            ctr("a", 1, "h", Created),
            ctr("b", 1, "h", Exited),
            ctr("c", 1, "h", Dead),
        ];
        let p = up(&d, &obs, &UpOptions::default());
        assert_eq!(
            p.levels,
            vec![vec![start("a", 1), start("b", 1), start("c", 1)]]
        );
    }

    #[test]
    fn no_start_starts_nothing_but_still_creates_and_recreates() {
        let d = vec![svc("a", "h", 2, vec![]), svc("b", "h", 1, vec![])];
        let obs = vec![ctr("a", 1, "h", Exited), ctr("b", 1, "stale", Exited)];
        let opts = UpOptions {
            no_start: true,
            ..UpOptions::default()
        };
        let p = up(&d, &obs, &opts);
        assert_eq!(p.levels, vec![vec![create("a", 2), recreate("b", 1)]]);
    }

    #[test]
    fn orphans_are_kept_and_reported_without_remove_orphans() {
        let d = vec![svc("web", "h", 1, vec![])];
        let obs = vec![
            ctr("web", 1, "h", Running),
            ctr("old", 2, "x", Running),
            ctr("old", 1, "x", Exited),
        ];
        let p = up(&d, &obs, &UpOptions::default());
        assert!(p.is_empty(), "kept orphans change nothing");
        let ids: Vec<&str> = p.orphans.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["old-id1", "old-id2"]);
    }

    #[test]
    fn orphans_are_removed_with_remove_orphans() {
        let d = vec![svc("web", "h", 1, vec![])];
        let obs = vec![ctr("web", 1, "h", Running), ctr("old", 1, "x", Running)];
        let opts = UpOptions {
            remove_orphans: true,
            ..UpOptions::default()
        };
        let p = up(&d, &obs, &opts);
        assert_eq!(p.removals, vec![rm("old", 1)]);
        assert!(p.orphans.is_empty());
    }

    #[test]
    fn oneoff_containers_are_never_touched_nor_orphans() {
        let d = vec![svc("web", "h", 1, vec![])];
        let obs = vec![
            ctr("web", 1, "h", Running),
            oneoff("web", "run1", Exited),
            oneoff("gone", "run2", Exited),
        ];
        let opts = UpOptions {
            remove_orphans: true,
            force_recreate: true,
            ..UpOptions::default()
        };
        let p = up(&d, &obs, &opts);
        assert_eq!(p.levels, vec![vec![recreate("web", 1)]]);
        assert!(p.removals.is_empty() && p.orphans.is_empty());
        // A one-off container does not count as a replica either.
        let d = vec![svc("web", "h", 1, vec![])];
        let p = up(&d, &[oneoff("web", "run1", Running)], &UpOptions::default());
        assert_eq!(p.levels, vec![vec![create("web", 1)]]);
    }

    #[test]
    fn subset_brings_up_dependencies_and_leaves_the_rest_alone() {
        let mut d = stack(false);
        d.push(svc("other", "h-other", 1, vec![]));
        // Everything stale or stopped; `up web` works on web and db only.
        let obs = vec![
            ctr("db", 1, "h-db", Exited),
            ctr("web", 1, "stale", Running),
            ctr("proxy", 1, "stale", Exited),
            ctr("other", 1, "stale", Exited),
            ctr("other", 2, "h-other", Running),
        ];
        let opts = UpOptions {
            services: vec!["web".into()],
            ..UpOptions::default()
        };
        let lv = graph(&d).with_dependencies(&opts.services).start_levels();
        let p = plan(&d, &lv, &obs, &opts);
        assert_eq!(
            p.levels,
            vec![vec![start("db", 1)], vec![recreate("web", 1)]]
        );
        assert!(
            p.removals.is_empty(),
            "other's extra replica is not its business"
        );
        assert!(
            p.orphans.is_empty(),
            "services outside the subset are no orphans"
        );
        // Full levels with a subset: narrowed the same way.
        let full = plan(&d, &levels(&d), &obs, &opts);
        assert_eq!(
            full.levels,
            vec![vec![start("db", 1)], vec![recreate("web", 1)], vec![]]
        );
        // --no-deps: the caller passes the levels of web alone.
        let lv = graph(&d).only(&opts.services).start_levels();
        let p = plan(&d, &lv, &obs, &opts);
        assert_eq!(p.levels, vec![vec![recreate("web", 1)]]);
    }

    #[test]
    fn subset_cascade_does_not_reach_services_outside_it() {
        let d = stack(true);
        let mut obs = running(&d);
        obs[0].hash = "stale".into();
        let opts = UpOptions {
            services: vec!["web".into()],
            ..UpOptions::default()
        };
        let lv = graph(&d).with_dependencies(&opts.services).start_levels();
        let p = plan(&d, &lv, &obs, &opts);
        assert_eq!(
            p.levels,
            vec![vec![recreate("db", 1)], vec![recreate("web", 1)]]
        );
    }

    #[test]
    fn down_removes_dependents_first_oneoffs_too() {
        let d = stack(false);
        let mut obs = running(&d);
        obs.push(ctr("web", 2, "h-web", Exited));
        obs.push(oneoff("db", "run1", Exited));
        obs.push(ctr("old", 1, "x", Running));
        let lv = levels(&d);
        let expected = vec![
            vec![rm("proxy", 1)],
            vec![rm("web", 1), rm("web", 2)],
            vec![
                rm("db", 1),
                Op::Remove {
                    service: "db".into(),
                    id: "run1".into(),
                },
            ],
        ];
        assert_eq!(down(&lv, &obs, false), expected);
        let services: Vec<Vec<&str>> = expected
            .iter()
            .map(|l| l.iter().map(Op::service).collect())
            .collect();
        assert_eq!(
            services,
            [vec!["proxy"], vec!["web", "web"], vec!["db", "db"]]
        );
        let mut with_orphans = vec![vec![rm("old", 1)]];
        with_orphans.extend(expected);
        assert_eq!(down(&lv, &obs, true), with_orphans);
    }

    #[test]
    fn down_of_nothing_is_empty() {
        let d = stack(false);
        assert!(down(&levels(&d), &[], true).is_empty());
        // A level without containers is left out.
        let obs = vec![ctr("db", 1, "h-db", Running), ctr("proxy", 1, "h", Running)];
        assert_eq!(
            down(&levels(&d), &obs, false),
            vec![vec![rm("proxy", 1)], vec![rm("db", 1)]]
        );
    }

    #[test]
    fn dependency_from_compose_conditions() {
        let mut dep = ServiceDependency {
            condition: "service_healthy".into(),
            restart: true,
            required: false,
            ..Default::default()
        };
        let got = Dependency::from_compose("web", "db", &dep).expect("known condition");
        assert_eq!(
            got,
            Dependency {
                service: "db".into(),
                condition: Condition::Healthy,
                restart: true,
                required: false,
            }
        );
        dep.condition = "service_completed_successfully".into();
        assert_eq!(
            Dependency::from_compose("web", "db", &dep)
                .map(|d| d.condition)
                .ok(),
            Some(Condition::CompletedSuccessfully)
        );
        dep.condition = "service_started".into();
        assert_eq!(
            Dependency::from_compose("web", "db", &dep)
                .map(|d| d.condition)
                .ok(),
            Some(Condition::Started)
        );
        dep.condition = "whenever".into();
        let err = Dependency::from_compose("web", "db", &dep).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "service \"web\": depends_on.db.condition: unknown condition \"whenever\""
            ),
            "{err}"
        );
    }
}
