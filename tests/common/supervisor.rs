//! Helpers of the supervisor and daemon end-to-end tests: finding, killing and waiting for a
//! project's supervisor, and reading what `container inspect` says of restarts.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::compose::Compose;

/// A command that runs until `/tmp/stop` appears in the container, then exits 3 (removing
/// the file, so the next run waits again). pid 1 ignores signals it has no handler for, so
/// this is how a test makes a container exit without `container kill` (which marks it
/// stopped by the user).
pub const STOPPABLE: &str =
    r#"["sh", "-c", "while [ ! -e /tmp/stop ]; do sleep 1; done; rm /tmp/stop; exit 3"]"#;

/// Pids of the supervisors of `root` (by their command line).
pub fn supervisors(root: &Path) -> Vec<i32> {
    super::berth_pids(root, &["__supervise"])
}

pub fn kill(pid: i32, signal: rustix::process::Signal) {
    rustix::process::kill_process(rustix::process::Pid::from_raw(pid).unwrap(), signal).unwrap();
}

/// SIGKILLs the supervisors of its root when a test panics (a passing test checks that
/// `down` left none).
pub struct KillSupervisorsOnPanic(pub PathBuf);

impl Drop for KillSupervisorsOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for pid in supervisors(&self.0) {
                let _ = rustix::process::kill_process(
                    rustix::process::Pid::from_raw(pid).unwrap(),
                    rustix::process::Signal::KILL,
                );
            }
        }
    }
}

pub fn project_dir(root: &Path, project: &str) -> PathBuf {
    root.join("projects").join(project)
}

/// The pid the supervisor of `project` wrote into its lock file (`None` while a new one
/// writes it).
pub fn read_supervisor_pid(root: &Path, project: &str) -> Option<i32> {
    let text = std::fs::read_to_string(project_dir(root, project).join("supervisor.lock")).ok()?;
    text.trim().parse().ok()
}

/// The pid the running supervisor of `project` wrote into its lock file.
pub fn supervisor_pid(root: &Path, project: &str) -> i32 {
    read_supervisor_pid(root, project).unwrap()
}

/// Whether somebody holds the supervisor's lock.
pub fn supervisor_alive(root: &Path, project: &str) -> bool {
    let Ok(f) = std::fs::File::open(project_dir(root, project).join("supervisor.lock")) else {
        return false;
    };
    rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err()
}

/// SIGKILLs the supervisor of `project`; returns its pid once its lock is free.
pub fn kill_supervisor(root: &Path, project: &str) -> i32 {
    let pid = supervisor_pid(root, project);
    kill(pid, rustix::process::Signal::KILL);
    wait_until("the killed supervisor releases its lock", 10, || {
        !supervisor_alive(root, project)
    });
    pid
}

/// Polls `done` every 50 ms for up to `secs` seconds.
pub fn wait_until(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `container inspect`'s `State` of `name`.
pub fn state(c: &Compose, name: &str) -> serde_json::Value {
    c.e.env.inspect(name)["State"].clone()
}

pub fn restart_count(c: &Compose, name: &str) -> u64 {
    c.e.env.inspect(name)["RestartCount"].as_u64().unwrap()
}

pub fn started_at(c: &Compose, name: &str) -> chrono::DateTime<chrono::FixedOffset> {
    let s = state(c, name)["StartedAt"].as_str().unwrap().to_string();
    chrono::DateTime::parse_from_rfc3339(&s).unwrap()
}
