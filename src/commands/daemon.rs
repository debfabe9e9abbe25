//! `berth daemon --all` / `berth daemon PROJECT...`: keeps the projects' supervisors
//! running, in the foreground (what `examples/systemd/berth.service` runs at boot).
//!
//! Every [`CHECK_EVERY`] it lists the projects that have containers in the state root (the
//! `com.docker.compose.project` label of the store's containers: a project without
//! containers has nothing to supervise, and `down` must stay down) and starts the
//! supervisor of each one whose supervisor is not running ([`supervisor::ensure_running`]).
//! The supervisor does the rest: containers found exited (or whose shim died with the
//! machine) come back by their restart policy, in dependency order. So a supervisor that
//! crashed is healed within seconds even when no berth command runs, and a project that
//! appears later is picked up.
//!
//! The daemon holds nothing: the supervisors are started through a launcher, are nobody's
//! children and outlive it. SIGTERM or SIGINT ends it with status 0 and leaves supervisors
//! and containers running. A project whose supervisor cannot start is reported on stderr
//! (once per distinct error) and retried at the next check; it does not stop the others.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};
use berth_engine::container::store::ContainerStore;
use berth_engine::fsutil::Lock;
use berth_engine::layout::Stores;
use clap::Args;

use crate::cli::Settings;
use crate::labels;
use crate::orchestrator::observe::project_containers;
use crate::supervisor;

/// How often the supervisors are looked at (the supervisor's own rescan period).
const CHECK_EVERY: Duration = Duration::from_secs(2);

/// `berth daemon`'s arguments.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Keep the supervisors of every project of the state root running (also the projects
    /// that appear later)
    #[arg(
        long,
        conflicts_with = "projects",
        required_unless_present = "projects"
    )]
    pub all: bool,
    /// Keep the supervisors of these projects running
    #[arg(value_name = "PROJECT")]
    pub projects: Vec<String>,
}

/// Runs until SIGTERM or SIGINT; returns the exit code (0).
pub fn run(settings: &Settings, args: &DaemonArgs) -> anyhow::Result<u8> {
    for p in &args.projects {
        if !valid_project_name(p) {
            bail!(
                "project {p:?}: invalid project name\nhint: a project name is lowercase letters, digits, '-' and '_', starting with a letter or digit"
            );
        }
    }
    // Before any thread exists, so only the signal thread takes them. The mask survives
    // exec: the supervisor clears it as it starts, so neither it nor its shims keep it.
    let signals = crate::commands::attached::block_signals()?;
    let stores = Stores::open(&settings.root).with_context(|| {
        format!(
            "failed to open berth's state directory {}",
            settings.root.display()
        )
    })?;
    let root = std::path::absolute(stores.root.path()).context("resolve the state root")?;
    let store = ContainerStore::open(&stores.root)?;
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let flag = stop.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Ok(sig) = signals.wait() {
                flag.store(true, Ordering::SeqCst);
                let _ = tx.send(sig);
            }
        })
        .context("start the signal thread")?;
    let mut daemon = Daemon {
        root,
        store,
        named: (!args.all).then(|| args.projects.iter().cloned().collect()),
        reported: BTreeMap::new(),
    };
    loop {
        daemon.round(&stop);
        match rx.recv_timeout(CHECK_EVERY) {
            Ok(sig) => {
                eprintln!(
                    "berth daemon: {sig}: exiting (the supervisors and containers keep running)"
                );
                return Ok(0);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => bail!("the signal thread is gone"),
        }
    }
}

/// compose's rule for project names (`-p`): lowercase letters, digits, `-` and `_`,
/// starting with a letter or a digit. Anything else (a label set by hand) could name a path
/// outside `<root>/projects/`.
fn valid_project_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// The projects to keep supervised: those with containers, limited to `named` when given.
fn wanted(named: Option<&BTreeSet<String>>, with_containers: BTreeSet<String>) -> Vec<String> {
    with_containers
        .into_iter()
        .filter(|p| named.is_none_or(|n| n.contains(p)))
        .collect()
}

/// What one look at a project did.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Its supervisor runs.
    Running,
    /// It had none; one was started.
    Started,
    /// Another berth command works on the project (`up`, `down`): next time.
    Busy,
    /// Its containers are gone (a `down` finished meanwhile).
    Gone,
}

struct Daemon {
    root: PathBuf,
    store: ContainerStore,
    /// `None` for `--all`.
    named: Option<BTreeSet<String>>,
    /// The last error reported per project, so a project that keeps failing is not
    /// reported every two seconds.
    reported: BTreeMap<String, String>,
}

impl Daemon {
    /// One look at every project; stops early once `stop` is set.
    fn round(&mut self, stop: &AtomicBool) {
        let projects = match projects_with_containers(&self.store) {
            Ok(p) => wanted(self.named.as_ref(), p),
            Err(e) => {
                self.report("", &format!("list the containers: {e:#}"));
                return;
            }
        };
        for project in projects {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            if !valid_project_name(&project) {
                self.report(
                    &project,
                    &format!("project {project:?}: invalid project name"),
                );
                continue;
            }
            match keep(&self.root, &self.store, &project) {
                Ok(outcome) => {
                    if outcome == Outcome::Started {
                        println!("project {project}: supervisor started");
                    }
                    if matches!(outcome, Outcome::Started | Outcome::Running) {
                        self.reported.remove(&project);
                    }
                }
                Err(e) => self.report(&project, &format!("{e:#}")),
            }
        }
    }

    /// Prints `msg` on stderr unless it is what was last reported for `project`.
    fn report(&mut self, project: &str, msg: &str) {
        if should_report(&mut self.reported, project, msg) {
            eprintln!("berth daemon: {msg}");
        }
    }
}

/// Whether `msg` is news for `project` (and remembers it).
fn should_report(reported: &mut BTreeMap<String, String>, project: &str, msg: &str) -> bool {
    if reported.get(project).is_some_and(|m| m == msg) {
        return false;
    }
    reported.insert(project.to_string(), msg.to_string());
    true
}

/// Every project named by the `com.docker.compose.project` label of a container of `store`.
fn projects_with_containers(store: &ContainerStore) -> anyhow::Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for id in store.ids()? {
        // A container being removed concurrently is simply not there.
        let Ok(config) = store.dir_of(&id).config() else {
            continue;
        };
        if let Some(p) = config.labels.get(labels::PROJECT) {
            out.insert(p.clone());
        }
    }
    Ok(out)
}

/// Starts the supervisor of `project` unless it runs. It is started under the project's
/// command lock (the one `up` and `down` hold), so it cannot come back in the middle of a
/// `down` that stopped it; a project whose lock is held is left for the next round.
fn keep(root: &Path, store: &ContainerStore, project: &str) -> anyhow::Result<Outcome> {
    if supervisor::running(root, project) {
        return Ok(Outcome::Running);
    }
    let dir = root.join("projects");
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let Some(_lock) = Lock::try_exclusive(&dir.join(format!("{project}.lock")))
        .with_context(|| format!("project {project}: lock"))?
    else {
        return Ok(Outcome::Busy);
    };
    if project_containers(store, project)?.is_empty() {
        return Ok(Outcome::Gone);
    }
    if supervisor::running(root, project) {
        return Ok(Outcome::Running);
    }
    supervisor::ensure_running(root, project)?;
    Ok(Outcome::Started)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn project_names_follow_compose_and_cannot_be_paths() {
        for ok in ["web", "p1", "0x", "my_app-2"] {
            assert!(valid_project_name(ok), "{ok}");
        }
        for bad in [
            "", "../x", "a/b", ".hidden", "-x", "_x", "Web", "a b", "a\0",
        ] {
            assert!(!valid_project_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn all_takes_every_project_with_containers_and_names_restrict_it() {
        let found = set(&["a", "b", "c"]);
        assert_eq!(wanted(None, found.clone()), ["a", "b", "c"]);
        // A named project without containers is not supervised (yet).
        assert_eq!(wanted(Some(&set(&["b", "z"])), found), ["b"]);
    }

    #[test]
    fn a_failure_is_reported_once_until_it_changes() {
        let mut r = BTreeMap::new();
        assert!(should_report(&mut r, "p", "boom"));
        assert!(!should_report(&mut r, "p", "boom"));
        assert!(should_report(&mut r, "q", "boom"), "per project");
        assert!(should_report(&mut r, "p", "bang"));
        r.remove("p");
        assert!(should_report(&mut r, "p", "bang"), "again after a success");
    }

    #[test]
    fn the_command_line_wants_all_or_projects_not_both() {
        let parse = |args: &[&str]| crate::cli::Cli::try_parse_from(args);
        assert!(parse(&["berth", "daemon"]).is_err());
        assert!(parse(&["berth", "daemon", "--all", "p"]).is_err());
        for ok in [
            &["berth", "daemon", "--all"][..],
            &["berth", "daemon", "p", "q"],
        ] {
            match parse(ok).unwrap().command {
                Some(crate::cli::Command::Daemon(a)) => {
                    assert_eq!(a.all, ok.len() == 3 && ok[2] == "--all")
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn projects_are_found_by_their_containers_label() {
        let tmp = tempfile::tempdir().unwrap();
        let stores = Stores::open(tmp.path()).unwrap();
        let store = ContainerStore::open(&stores.root).unwrap();
        assert!(projects_with_containers(&store).unwrap().is_empty());
        for (name, project) in [
            ("a-web-1", Some("a")),
            ("b-db-1", Some("b")),
            ("lone", None),
        ] {
            let mut config = berth_engine::container::ContainerConfig {
                id: berth_engine::container::store::new_id(),
                name: name.into(),
                ..Default::default()
            };
            if let Some(p) = project {
                config.labels.insert(labels::PROJECT.into(), p.into());
            }
            store.create(&config).unwrap();
        }
        assert_eq!(projects_with_containers(&store).unwrap(), set(&["a", "b"]));
        // A project without containers has nothing to supervise: no supervisor is started.
        assert_eq!(keep(tmp.path(), &store, "gone").unwrap(), Outcome::Gone);
        assert!(!supervisor::running(tmp.path(), "gone"));
    }
}
