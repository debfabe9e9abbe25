//! End-to-end scenarios of `berth daemon` (keeping the projects' supervisors running) and of
//! the supervisor's recovery of containers whose shim died (what a reboot leaves), as root,
//! each in its own state root and network namespace. Every test ends with `down` and checks
//! that no supervisor of its root is left; the daemon is killed and reaped even on panic.

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

mod common;

use common::compose::*;
use common::supervisor::*;
use common::*;

/// The daemon's period, twice, and a little more: long enough for it to have acted.
const TWO_ROUNDS: Duration = Duration::from_millis(4500);

/// `berth daemon ARGS` running as a child of the test, its output in files; SIGKILLed (if
/// still running) and reaped on drop.
struct Daemon {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Daemon {
    fn start(env: &Env, args: &[&str]) -> Daemon {
        let out = env.tmp.path().join("daemon.out");
        let err = env.tmp.path().join("daemon.err");
        let mut verb = vec!["daemon"];
        verb.extend_from_slice(args);
        let child = env
            .cmd(&verb)
            .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
            .stderr(Stdio::from(std::fs::File::create(&err).unwrap()))
            .spawn()
            .unwrap();
        Daemon { child, out, err }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Another project in the same state root as `c` (its directory, its name).
struct Other<'a> {
    c: &'a Compose,
    dir: PathBuf,
    name: String,
}

impl<'a> Other<'a> {
    fn new(c: &'a Compose, name: &str, yaml: &str) -> Other<'a> {
        let dir = c.e.env.tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("compose.yaml"), yaml.replace("IMAGE", IMAGE)).unwrap();
        Other {
            c,
            dir,
            name: name.to_string(),
        }
    }

    fn ok(&self, verb: &[&str]) {
        let mut args = vec![
            "--project-directory",
            self.dir.to_str().unwrap(),
            "-p",
            self.name.as_str(),
        ];
        args.extend_from_slice(verb);
        self.c.e.env.ok(&args);
    }
}

/// The signals `pid` blocks (`SigBlk` of /proc/PID/status).
fn blocked_signals(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:"))
        .unwrap()
        .trim();
    u64::from_str_radix(hex, 16).unwrap()
}

/// `down` of every project (the daemon, if any, still running), then no supervisor of the
/// root may be left or come back.
fn finish(c: &Compose, others: &[&Other], daemon_runs: bool) {
    c.ok(&["down", "-v", "--remove-orphans", "-t", "1"]);
    for o in others {
        o.ok(&["down", "-v", "--remove-orphans", "-t", "1"]);
    }
    if daemon_runs {
        // A daemon that brought them back would have done so by now.
        std::thread::sleep(TWO_ROUNDS);
    }
    let left = supervisors(&c.e.env.root);
    assert!(left.is_empty(), "supervisors left: {left:?}");
}

#[test]
fn daemon_all_brings_back_every_project_in_dependency_order() {
    if !require_root() {
        return;
    }
    let c = Compose::new(
        "dall",
        &format!(
            r#"
services:
  db:
    image: IMAGE
    command: {STOPPABLE}
    restart: always
  app:
    image: IMAGE
    command: {STOPPABLE}
    restart: always
    depends_on: [db]
"#
        ),
    );
    let other = Other::new(
        &c,
        "pdsolo",
        &format!(
            r#"
services:
  solo:
    image: IMAGE
    command: {STOPPABLE}
    restart: always
"#
        ),
    );
    let _guard = KillSupervisorsOnPanic(c.e.env.root.clone());
    let root = c.e.env.root.clone();
    c.ok(&["up", "-d"]);
    other.ok(&["up", "-d"]);
    let (db, app, solo) = ("pdall-db-1", "pdall-app-1", "pdsolo-solo-1");
    for name in [db, app, solo] {
        c.e.env
            .wait_status(name, "running", Duration::from_secs(10));
    }
    for p in [&c.name, &other.name] {
        kill_supervisor(&root, p);
    }
    // The containers exit with nobody to restart them (a crash of every supervisor).
    for name in [app, db, solo] {
        c.e.ok(&["container", "exec", name, "touch", "/tmp/stop"]);
    }
    for name in [app, db, solo] {
        c.e.env.wait_status(name, "exited", Duration::from_secs(10));
    }
    assert!(supervisors(&root).is_empty());
    let daemon = Daemon::start(&c.e.env, &["--all"]);
    wait_until("both supervisors back", 15, || {
        supervisor_alive(&root, &c.name) && supervisor_alive(&root, &other.name)
    });
    wait_until("every container running again", 20, || {
        [db, app, solo]
            .iter()
            .all(|n| state(&c, n)["Status"] == "running")
    });
    assert!(
        started_at(&c, db) < started_at(&c, app),
        "db must start first: db {}, app {}",
        started_at(&c, db),
        started_at(&c, app)
    );
    for name in [db, app, solo] {
        assert_eq!(restart_count(&c, name), 1, "{name}");
    }
    let out = daemon.stdout();
    for line in [
        "project pdall: supervisor started",
        "project pdsolo: supervisor started",
    ] {
        assert!(out.lines().any(|l| l == line), "{out}");
    }
    finish(&c, &[&other], true);
    assert!(daemon.stderr().is_empty(), "{}", daemon.stderr());
}

#[test]
fn the_daemon_restarts_a_killed_supervisor() {
    if !require_root() {
        return;
    }
    let c = Compose::new(
        "dheal",
        r#"
services:
  svc:
    image: IMAGE
    command: ["sleep", "600"]
    restart: always
"#,
    );
    let _guard = KillSupervisorsOnPanic(c.e.env.root.clone());
    let root = c.e.env.root.clone();
    c.ok(&["up", "-d"]);
    let daemon = Daemon::start(&c.e.env, &["pdheal"]);
    let old = supervisor_pid(&root, &c.name);
    kill(old, rustix::process::Signal::KILL);
    // One period of the daemon, and the time a supervisor takes to start. (The lock may
    // never be seen free: the daemon can be quicker than this loop.)
    wait_until("a new supervisor within a few seconds", 6, || {
        supervisor_alive(&root, &c.name) && read_supervisor_pid(&root, &c.name) != Some(old)
    });
    let new = supervisor_pid(&root, &c.name);
    wait_until("the daemon says so", 5, || {
        daemon.stdout() == "project pdheal: supervisor started\n"
    });
    // It does not inherit the daemon's blocked SIGINT and SIGTERM (nor would its shims).
    let term_int = (1u64 << (15 - 1)) | (1u64 << (2 - 1));
    assert_eq!(blocked_signals(new) & term_int, 0);
    assert_eq!(state(&c, "pdheal-svc-1")["Status"], "running");
    finish(&c, &[], true);
}

#[test]
fn sigterm_ends_the_daemon_with_0_and_leaves_supervisors_and_containers_running() {
    if !require_root() {
        return;
    }
    let c = Compose::new(
        "dterm",
        r#"
services:
  svc:
    image: IMAGE
    command: ["sleep", "600"]
    restart: always
"#,
    );
    let _guard = KillSupervisorsOnPanic(c.e.env.root.clone());
    let root = c.e.env.root.clone();
    c.ok(&["up", "-d"]);
    // The supervisor that must survive is one the daemon started.
    kill_supervisor(&root, &c.name);
    let mut daemon = Daemon::start(&c.e.env, &["--all"]);
    wait_until("the daemon starts the supervisor", 10, || {
        supervisor_alive(&root, &c.name)
    });
    let sup = supervisor_pid(&root, &c.name);
    kill(daemon.pid(), rustix::process::Signal::TERM);
    let mut status = None;
    wait_until("the daemon exits", 10, || {
        status = daemon.child.try_wait().unwrap();
        status.is_some()
    });
    assert_eq!(status.unwrap().code(), Some(0), "{}", daemon.stderr());
    // Past the daemon's period: nothing it started went down with it.
    std::thread::sleep(TWO_ROUNDS);
    assert!(supervisor_alive(&root, &c.name));
    assert_eq!(supervisor_pid(&root, &c.name), sup);
    assert_eq!(state(&c, "pdterm-svc-1")["Status"], "running");
    finish(&c, &[], false);
}

#[test]
fn a_container_whose_shim_died_is_restarted_each_time_as_after_a_reboot() {
    if !require_root() {
        return;
    }
    let c = Compose::new(
        "dshim",
        r#"
services:
  svc:
    image: IMAGE
    command: ["sleep", "600"]
    restart: always
"#,
    );
    let _guard = KillSupervisorsOnPanic(c.e.env.root.clone());
    c.ok(&["up", "-d"]);
    let name = "pdshim-svc-1";
    let state_file =
        c.e.env
            .root
            .join("containers")
            .join(c.e.env.id_of(name))
            .join("state.json");
    // The state file keeps saying running, as it does for the containers of a machine that
    // went down; the second time is what an exit judged with no date used to hide.
    for n in 1..=2 {
        c.e.env
            .wait_status(name, "running", Duration::from_secs(10));
        let st: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&state_file).unwrap()).unwrap();
        let shim = st["shim_pid"].as_i64().unwrap() as i32;
        kill(shim, rustix::process::Signal::KILL);
        wait_until(&format!("restart {n}"), 15, || {
            restart_count(&c, name) == n && state(&c, name)["Status"] == "running"
        });
    }
    let log = std::fs::read_to_string(project_dir(&c.e.env.root, &c.name).join("supervisor.log"))
        .unwrap();
    assert_eq!(
        log.matches("pdshim-svc-1: exited 255, restart").count(),
        2,
        "{log}"
    );
    finish(&c, &[], false);
}
