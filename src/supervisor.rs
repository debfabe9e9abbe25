//! The per-project supervisor: `berth __supervise ROOT PROJECT`, one detached process per
//! project and state root, that carries out the containers' restart policies.
//!
//! **SIGKILL-safe by construction:** it keeps nothing that is not on disk. Containers are
//! held by their shims, not by the supervisor; every fact it acts on is in the containers'
//! `state.json` (status, exit, `restart_count`, the current back-off, when a pending restart
//! is due, which exit was judged) and in `<root>/projects/<project>/project.json` (start
//! levels and `depends_on`, written by `up`). Kill it at any moment and a new one carries on.
//!
//! Files under `<root>/projects/<project>/`:
//! - `supervisor.lock`: flock held for the supervisor's whole life (liveness without pids);
//!   it holds the supervisor's pid, for [`stop`]'s last resort.
//! - `supervisor.sock`: control, one request line per connection: `rescan` (look at the
//!   project's containers again; `ok` once done), `status`, `exit` (`ok`, then exit).
//! - `supervisor.log`: its stderr.
//!
//! How it supervises: each running container gets a thread blocked in the shim's `wait`
//! ([`lifecycle::wait`]; nothing depends on being the shim's parent, so a new supervisor
//! adopts running shims the same way). An exit goes to the main loop, which applies the
//! restart policy with Docker's semantics (moby's `restartmanager`): `no`; `always`;
//! `on-failure[:N]` (non-zero exits only, at most N restarts, 0 unlimited);
//! `unless-stopped`; never a container the user stopped or killed (`manually_stopped`).
//! Back-off 100 ms, doubled at each exit, capped at 60 s, back to 100 ms after a run of at
//! least 10 s; `deploy.restart_policy.delay` replaces the back-off and `window` restarts
//! the attempt count after a run longer than it. While it waits the container is
//! `restarting`. Containers found exited at start-up (or at a rescan) whose exit nobody
//! judged are judged at once, and restarted **in dependency order**: a dependent waits
//! until its dependencies are up (beyond Docker, which restarts them in any order).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use berth_compose::model::Project;
use berth_engine::container::config::{ContainerState, RestartPolicy, Status};
use berth_engine::container::lifecycle;
use berth_engine::container::shim;
use berth_engine::container::store::{ContainerDir, ContainerStore};
use berth_engine::fsutil::{self, Lock};
use serde::{Deserialize, Serialize};

use crate::labels;
use crate::orchestrator::observe::project_containers;

/// The hidden verb: `berth __supervise [--launch] ROOT PROJECT`.
pub const SUPERVISE_VERB: &str = "__supervise";

/// Docker's first back-off.
const FIRST_BACKOFF_MS: u64 = 100;
/// Docker's longest back-off.
const MAX_BACKOFF_MS: u64 = 60_000;
/// A run at least this long resets the back-off.
const RESET_AFTER: Duration = Duration::from_secs(10);
/// The supervisor looks at the project's containers again this often, so a container
/// started behind its back (`container start`) is watched without anybody asking.
const RESCAN_EVERY: Duration = Duration::from_secs(2);
/// How often pending restarts are looked at (a user's stop cancels them; a held dependent
/// is released once its dependencies are up).
const PENDING_POLL: Duration = Duration::from_millis(250);
/// The log is cut when a supervisor starts and finds it larger than this.
const MAX_LOG_BYTES: u64 = 1024 * 1024;

/// What the supervisor needs to know of the compose file, written by `up` to
/// `<root>/projects/<project>/project.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProjectRecord {
    /// The services' start levels: each level starts after the previous one.
    pub levels: Vec<Vec<String>>,
    /// Each service's `depends_on`.
    pub depends_on: BTreeMap<String, Vec<DependsOn>>,
}

/// One `depends_on` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DependsOn {
    pub service: String,
    pub condition: Condition,
    /// compose's `restart: true` (restart the dependent when compose restarts the
    /// dependency). Recorded for the verbs that restart services; a policy restart does not
    /// act on it (docker compose's does not either).
    pub restart: bool,
}

/// A `depends_on` condition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Condition {
    #[default]
    #[serde(rename = "service_started")]
    Started,
    #[serde(rename = "service_healthy")]
    Healthy,
    #[serde(rename = "service_completed_successfully")]
    CompletedSuccessfully,
}

impl Condition {
    /// compose's spelling (`service_started`, …); anything unknown is `service_started`, as
    /// `up` reads it.
    pub fn from_compose(s: &str) -> Condition {
        match s {
            "service_healthy" => Condition::Healthy,
            "service_completed_successfully" => Condition::CompletedSuccessfully,
            _ => Condition::Started,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Condition::Started => "service_started",
            Condition::Healthy => "service_healthy",
            Condition::CompletedSuccessfully => "service_completed_successfully",
        }
    }
}

impl ProjectRecord {
    /// The record of a loaded project: the whole project's start levels (not only the
    /// services one `up` names) and every service's `depends_on`.
    pub fn of(project: &Project) -> anyhow::Result<ProjectRecord> {
        let levels = crate::commands::up::graph(project)?.start_levels();
        let depends_on = project
            .services
            .iter()
            .map(|(name, svc)| {
                let deps = svc
                    .depends_on
                    .iter()
                    .map(|(dep, d)| DependsOn {
                        service: dep.clone(),
                        condition: Condition::from_compose(&d.condition),
                        restart: d.restart,
                    })
                    .collect();
                (name.clone(), deps)
            })
            .collect();
        Ok(ProjectRecord { levels, depends_on })
    }
}

/// `<root>/projects/<project>/`.
fn project_dir(root: &Path, project: &str) -> anyhow::Result<PathBuf> {
    if project.is_empty()
        || project.starts_with('.')
        || project.contains('/')
        || project.contains('\0')
    {
        bail!("invalid project name {project:?}");
    }
    Ok(root.join("projects").join(project))
}

/// Writes `project.json` atomically.
pub fn write_project_record(
    root: &Path,
    project: &str,
    record: &ProjectRecord,
) -> anyhow::Result<()> {
    let dir = project_dir(root, project)?;
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    fsutil::write_json_atomic(&dir.join("project.json"), record)
        .with_context(|| format!("project {project}: write project.json"))?;
    Ok(())
}

/// `project.json`, or an empty record (every service on one level, no dependency) when
/// there is none.
fn read_project_record(dir: &Path) -> ProjectRecord {
    match fsutil::read_json_if_exists(&dir.join("project.json")) {
        Ok(r) => r.unwrap_or_default(),
        Err(e) => {
            log(&format!("{e}"));
            ProjectRecord::default()
        }
    }
}

/// Whether a supervisor of `project` runs (its lock is held).
pub fn running(root: &Path, project: &str) -> bool {
    let Ok(dir) = project_dir(root, project) else {
        return false;
    };
    if !dir.is_dir() {
        return false;
    }
    matches!(Lock::try_exclusive(&dir.join("supervisor.lock")), Ok(None))
}

/// Starts the project's supervisor unless one runs, then has it look at the project's
/// containers again (`rescan`). Returns once it supervises them.
pub fn ensure_running(root: &Path, project: &str) -> anyhow::Result<()> {
    let root = std::path::absolute(root).context("resolve the state root")?;
    let dir = project_dir(&root, project)?;
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    // One started by another berth binary (berth was upgraded or rebuilt since) hands the
    // project over: stopping a supervisor loses nothing, and this binary's own adopts the
    // containers as it starts.
    if running(&root, project) && lock_pid(&dir).is_some_and(crate::binary::runs_other_binary) {
        stop(&root, project)?;
    }
    if !running(&root, project) {
        let exe = std::env::current_exe().context("cannot find the berth executable")?;
        let out = Command::new(exe)
            .arg(SUPERVISE_VERB)
            .arg("--launch")
            .arg(&root)
            .arg(project)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .with_context(|| format!("project {project}: start the supervisor"))?;
        let reply = String::from_utf8_lossy(&out.stdout);
        match reply.trim() {
            // It looked at the containers as it started.
            "ready" => return Ok(()),
            // Another one won the race: ask it to look.
            "running" => {}
            other => bail!(
                "project {project}: the supervisor did not start: {}\nhint: see {}",
                if other.is_empty() { "no answer" } else { other },
                dir.join("supervisor.log").display()
            ),
        }
    }
    let reply = ask(&dir, "rescan", Duration::from_secs(60))
        .with_context(|| format!("project {project}: supervisor rescan"))?;
    if reply != "ok" {
        bail!("project {project}: supervisor rescan: {reply}");
    }
    Ok(())
}

/// Stops the project's supervisor (`exit`) and waits until it is gone; after 5 s it is
/// SIGKILLed (harmless: it keeps nothing that is not on disk). Containers keep running.
pub fn stop(root: &Path, project: &str) -> anyhow::Result<()> {
    let dir = project_dir(root, project)?;
    if !running(root, project) {
        return Ok(());
    }
    // An error here (a supervisor still starting, or wedged) is covered by the kill below.
    let _ = ask(&dir, "exit", Duration::from_secs(5));
    let lock = dir.join("supervisor.lock");
    if wait_free(&lock, Duration::from_secs(5)) {
        return Ok(());
    }
    let pid = lock_pid(&dir);
    if let Some(pid) = pid
        && running(root, project)
    {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    if wait_free(&lock, Duration::from_secs(5)) {
        return Ok(());
    }
    bail!("project {project}: the supervisor does not exit (pid {pid:?})")
}

/// The pid the supervisor wrote into its lock file as it took the lock.
fn lock_pid(dir: &Path) -> Option<i32> {
    std::fs::read_to_string(dir.join("supervisor.lock"))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .filter(|p| *p > 1)
}

/// Waits until nobody holds `lock`; `true` once free.
pub fn wait_free(lock: &Path, max: Duration) -> bool {
    let deadline = Instant::now() + max;
    loop {
        if !matches!(Lock::try_exclusive(lock), Ok(None)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One request on the control socket; retried while the supervisor holds its lock but does
/// not serve yet (it binds the socket after taking the lock).
fn ask(dir: &Path, line: &str, timeout: Duration) -> anyhow::Result<String> {
    let socket = dir.join("supervisor.sock");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut stream = loop {
        match UnixStream::connect(&socket) {
            Ok(s) => break s,
            Err(e)
                if Instant::now() < deadline
                    && matches!(Lock::try_exclusive(&dir.join("supervisor.lock")), Ok(None)) =>
            {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e).with_context(|| format!("connect {}", socket.display())),
        }
    };
    stream.set_read_timeout(Some(timeout))?;
    writeln!(stream, "{line}")?;
    let mut reply = String::new();
    BufReader::new(&stream).read_line(&mut reply)?;
    if reply.is_empty() {
        bail!("the supervisor closed the connection");
    }
    Ok(reply.trim_end().to_string())
}

/// Entry point of `berth __supervise`: `--launch ROOT PROJECT` starts the supervisor and
/// prints its first line (`ready`, `running`, `error …`), so the supervisor is nobody's
/// child; `ROOT PROJECT` is the supervisor.
pub fn main(args: &[String]) -> i32 {
    // Signals blocked by the parent (`berth daemon` and an attached `up` block SIGINT and
    // SIGTERM for their signal thread) survive exec, and would pass on to every shim and
    // container started from here: start from none.
    let _ = nix::sys::signal::SigSet::all().thread_unblock();
    match args {
        [flag, root, project] if flag == "--launch" => launch(Path::new(root), project),
        [root, project] => match serve(Path::new(root), project) {
            Ok(()) => 0,
            Err(e) => {
                log(&format!("error: {e:#}"));
                println!("error {e:#}");
                1
            }
        },
        _ => {
            eprintln!("usage: berth {SUPERVISE_VERB} [--launch] ROOT PROJECT");
            2
        }
    }
}

fn launch(root: &Path, project: &str) -> i32 {
    let result = (|| -> anyhow::Result<String> {
        let dir = project_dir(root, project)?;
        std::fs::create_dir_all(&dir)?;
        let log_path = dir.join("supervisor.log");
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("open {}", log_path.display()))?;
        if log.metadata().is_ok_and(|m| m.len() > MAX_LOG_BYTES) {
            log.set_len(0)?;
        }
        let _ = log.flush();
        let exe = std::env::current_exe().context("find berth's binary")?;
        let mut child = Command::new(exe)
            .arg(SUPERVISE_VERB)
            .arg(root)
            .arg(project)
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .process_group(0)
            .spawn()
            .context("start")?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        // The supervisor is not waited for: it outlives this launcher and is re-parented.
        Ok(line)
    })();
    match result {
        Ok(line) if !line.is_empty() => print!("{line}"),
        Ok(_) => println!("error no answer"),
        Err(e) => println!("error {e:#}"),
    }
    let _ = std::io::stdout().flush();
    0
}

/// One line of the supervisor's log (its stderr), timestamped.
fn log(msg: &str) {
    eprintln!("{} {msg}", shim::now_rfc3339());
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Whether the state file says running or paused although the shim is gone (what
/// [`lifecycle::state`] reports as an exit with code 255).
fn shim_died(dir: &ContainerDir) -> bool {
    dir.state()
        .is_ok_and(|raw| matches!(raw.status, Status::Running | Status::Paused))
        && !dir.shim_alive().unwrap_or(true)
}

/// What the restart policy decides about one exit (moby's `ShouldRestart`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Decision {
    restart: bool,
    /// The back-off now in force, in milliseconds.
    backoff_ms: u64,
    /// The wait before the restart: the back-off, or `deploy.restart_policy.delay`.
    wait_ms: u64,
    /// Restarts counted against `max_retries`, this one included.
    attempts: u32,
}

/// Judges the exit recorded in `st` (`ran`: how long the run lasted, when known).
fn decide(policy: &RestartPolicy, st: &ContainerState, ran: Option<Duration>) -> Decision {
    // A user start resets `restart_count`, and with it the back-off and the attempts (a
    // fresh restart manager in Docker).
    let fresh = st.restart_count == 0;
    let mut backoff = if fresh { 0 } else { st.restart_delay_ms };
    if ran.is_some_and(|d| d >= RESET_AFTER) {
        backoff = 0;
    }
    backoff = if backoff == 0 {
        FIRST_BACKOFF_MS
    } else if backoff < MAX_BACKOFF_MS {
        backoff.saturating_mul(2)
    } else {
        backoff
    }
    .min(MAX_BACKOFF_MS);
    let mut attempts = if fresh {
        0
    } else {
        st.restart_attempts.min(st.restart_count)
    };
    if let (Some(window), Some(ran)) = (policy.window_ms, ran)
        && ran > Duration::from_millis(window)
    {
        attempts = 0;
    }
    // An exit without a recorded code is a failure.
    let code = st.exit_code.unwrap_or(255);
    let restart = !st.manually_stopped
        && match policy.name.as_str() {
            "always" | "unless-stopped" => true,
            "on-failure" => code != 0 && (policy.max_retries == 0 || attempts < policy.max_retries),
            _ => false,
        };
    Decision {
        restart,
        backoff_ms: backoff,
        wait_ms: policy.delay_ms.unwrap_or(backoff),
        attempts: attempts + u32::from(restart),
    }
}

/// How long the last run lasted.
fn run_duration(st: &ContainerState) -> Option<Duration> {
    let start = chrono::DateTime::parse_from_rfc3339(&st.started_at).ok()?;
    let end = chrono::DateTime::parse_from_rfc3339(&st.finished_at).ok()?;
    (end - start).to_std().ok()
}

/// Something for the main loop.
enum Event {
    /// A watched container's `wait` returned.
    Exited(String),
    /// A control request and the connection to answer on.
    Control(String, UnixStream),
}

/// A restart waiting for its time (its due time is also in the container's state).
#[derive(Debug, Clone)]
struct Pending {
    due_ms: u64,
    service: String,
    /// Found exited by a scan (not seen exiting): restarted in dependency order.
    ordered: bool,
    /// "held" was logged.
    said_held: bool,
}

struct Supervisor {
    root: PathBuf,
    project: String,
    dir: PathBuf,
    store: ContainerStore,
    shim_exe: PathBuf,
    record: ProjectRecord,
    /// Containers with a thread in `wait`.
    watched: BTreeSet<String>,
    pending: BTreeMap<String, Pending>,
    tx: mpsc::Sender<Event>,
    last_scan: Instant,
    /// The last error of [`crate::net::heal_firewall`], logged once rather than every rescan.
    firewall_error: Option<String>,
}

fn serve(root: &Path, project: &str) -> anyhow::Result<()> {
    let dir = project_dir(root, project)?;
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let Some(lock) = Lock::try_exclusive(&dir.join("supervisor.lock"))? else {
        println!("running");
        return Ok(());
    };
    {
        let mut f = lock.file();
        f.set_len(0)?;
        write!(f, "{}", std::process::id())?;
    }
    let stores = berth_engine::layout::Stores::open(root)
        .with_context(|| format!("open the state root {}", root.display()))?;
    let store = ContainerStore::open(&stores.root)?;
    let socket = dir.join("supervisor.sock");
    let _ = std::fs::remove_file(&socket);
    let listener =
        UnixListener::bind(&socket).with_context(|| format!("bind {}", socket.display()))?;
    let (tx, rx) = mpsc::channel();
    let listen_tx = tx.clone();
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut line = String::new();
                if BufReader::new(&stream).read_line(&mut line).is_err() {
                    continue;
                }
                if listen_tx
                    .send(Event::Control(line.trim().to_string(), stream))
                    .is_err()
                {
                    return;
                }
            }
        })
        .context("start the control thread")?;
    let mut sup = Supervisor {
        root: root.to_path_buf(),
        project: project.to_string(),
        record: ProjectRecord::default(),
        dir: dir.clone(),
        store,
        shim_exe: std::env::current_exe().context("find berth's binary")?,
        watched: BTreeSet::new(),
        pending: BTreeMap::new(),
        tx,
        last_scan: Instant::now(),
        firewall_error: None,
    };
    log(&format!(
        "supervising project {project} (pid {})",
        std::process::id()
    ));
    sup.scan();
    println!("ready");
    let _ = std::io::stdout().flush();
    // Nobody reads fd 1 any more.
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        use std::os::fd::AsRawFd;
        let _ = nix::unistd::dup2(null.as_raw_fd(), 1);
    }
    loop {
        match rx.recv_timeout(sup.next_wake()) {
            Ok(Event::Exited(id)) => {
                sup.watched.remove(&id);
                sup.consider(&id, false);
            }
            Ok(Event::Control(request, mut stream)) => match request.as_str() {
                "rescan" => {
                    sup.scan();
                    let _ = writeln!(stream, "ok");
                }
                "status" => {
                    let _ = writeln!(
                        stream,
                        "ok pid={} watching={} pending={}",
                        std::process::id(),
                        sup.watched.len(),
                        sup.pending.len()
                    );
                }
                "exit" => {
                    log("exit requested");
                    let _ = std::fs::remove_file(&socket);
                    // The lock goes before the answer: the asker's first look then finds it
                    // free, instead of polling again 20 ms later. Nothing is done after.
                    drop(lock);
                    let _ = writeln!(stream, "ok");
                    return Ok(());
                }
                other => {
                    let _ = writeln!(stream, "error unknown request {other:?}");
                }
            },
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => bail!("the control thread is gone"),
        }
        sup.tick();
    }
}

impl Supervisor {
    /// How long the main loop may sleep.
    fn next_wake(&self) -> Duration {
        let mut wake = RESCAN_EVERY.saturating_sub(self.last_scan.elapsed());
        if !self.pending.is_empty() {
            wake = wake.min(PENDING_POLL);
            let now = now_ms();
            if let Some(due) = self.pending.values().map(|p| p.due_ms).min() {
                wake = wake.min(Duration::from_millis(due.saturating_sub(now)));
            }
        }
        wake.max(Duration::from_millis(5))
    }

    /// Looks at every container of the project: watches running ones, judges exits nobody
    /// judged, takes over pending restarts.
    fn scan(&mut self) {
        self.last_scan = Instant::now();
        self.record = read_project_record(&self.dir);
        self.heal_firewall();
        let containers = match project_containers(&self.store, &self.project) {
            Ok(c) => c,
            Err(e) => {
                log(&format!("list the containers: {e:#}"));
                return;
            }
        };
        for o in containers {
            let id = o.dir.id.clone();
            if self.watched.contains(&id) {
                continue;
            }
            if self.pending.contains_key(&id) && !o.running() {
                continue;
            }
            self.pending.remove(&id);
            self.consider(&id, true);
        }
    }

    /// Writes the root's firewall table again if it vanished under running containers (a
    /// reload of the host's firewall flushed it): their published ports and their way out
    /// come back within a rescan, not at the next container start.
    fn heal_firewall(&mut self) {
        match crate::net::heal_firewall(&self.root) {
            Ok(healed) => {
                if healed {
                    log(
                        "the firewall table was gone (the host's firewall flushed?): written again",
                    );
                }
                self.firewall_error = None;
            }
            Err(e) => {
                if self.firewall_error.as_ref() != Some(&e) {
                    log(&format!("write the firewall table again: {e}"));
                }
                self.firewall_error = Some(e);
            }
        }
    }

    /// Looks at one container and acts: watch it, judge its exit, or schedule the restart
    /// its state says is pending.
    fn consider(&mut self, id: &str, ordered: bool) {
        let dir = self.store.dir_of(id);
        let Ok(config) = dir.config() else {
            // Removed meanwhile.
            self.pending.remove(id);
            return;
        };
        let name = config.name.clone();
        let service = config
            .labels
            .get(labels::SERVICE)
            .cloned()
            .unwrap_or_default();
        let st = match lifecycle::state(&dir) {
            Ok(st) => st,
            Err(e) => {
                log(&format!("{name}: read its state: {e}"));
                return;
            }
        };
        match st.status {
            Status::Running | Status::Paused => self.watch(&dir),
            Status::Restarting => match st.restart_due_ms {
                Some(due_ms) => {
                    self.pending.insert(
                        id.to_string(),
                        Pending {
                            due_ms,
                            service,
                            ordered,
                            said_held: false,
                        },
                    );
                }
                // Not ours (no due time): judge it as an exit.
                None => self.judge(&dir, &name, service, &config.restart, st, ordered),
            },
            Status::Exited => {
                // A died shim's exit is never judged yet (judging it writes `exited`), whatever
                // `restart_judged` says: an empty `finished_at` cannot tell two such exits apart.
                if shim_died(&dir) || st.restart_judged.as_deref() != Some(st.finished_at.as_str())
                {
                    self.judge(&dir, &name, service, &config.restart, st, ordered);
                }
            }
            Status::Created | Status::Removing | Status::Dead => {}
        }
    }

    /// Applies the restart policy to the exit recorded in `st`; a restart is written down
    /// (`restarting`, count, back-off, due time) before it is waited for.
    fn judge(
        &mut self,
        dir: &ContainerDir,
        name: &str,
        service: String,
        policy: &RestartPolicy,
        st: ContainerState,
        ordered: bool,
    ) {
        // The state file says running although the shim is gone (killed, or the machine went
        // down): whatever still runs in the container's cgroup has nobody to stop it.
        let shim_died = shim_died(dir);
        // Nobody recorded that exit: it is dated now (as Docker dates the exits it finds
        // after a crash), so the next such exit is told apart from this one.
        let finished_at = if shim_died && st.finished_at.is_empty() {
            shim::now_rfc3339()
        } else {
            st.finished_at.clone()
        };
        let ended = ContainerState {
            finished_at: finished_at.clone(),
            ..st.clone()
        };
        let decision = decide(policy, &st, run_duration(&ended));
        let due_ms = now_ms() + decision.wait_ms;
        let mut changed = false;
        let written = dir.update_state(|s| {
            // Somebody else moved it on (a user start, a concurrent judge): leave it.
            if s.started_at != st.started_at
                || s.finished_at != st.finished_at
                || s.restart_count != st.restart_count
            {
                return;
            }
            changed = true;
            s.restart_judged = Some(finished_at.clone());
            if shim_died {
                s.status = Status::Exited;
                s.finished_at = finished_at.clone();
                s.exit_code = st.exit_code;
                s.error = st.error.clone();
                s.pid = None;
                s.shim_pid = None;
            }
            if decision.restart {
                s.status = Status::Restarting;
                s.restart_count += 1;
                s.restart_attempts = decision.attempts;
                s.restart_delay_ms = decision.backoff_ms;
                s.restart_due_ms = Some(due_ms);
            }
        });
        if let Err(e) = written {
            log(&format!("{name}: write its state: {e}"));
            return;
        }
        if !changed {
            return;
        }
        let code = st.exit_code.unwrap_or(255);
        if !decision.restart {
            let why = if st.manually_stopped {
                "stopped by the user"
            } else {
                "policy"
            };
            log(&format!(
                "{name}: exited {code}, not restarted ({why}: restart {:?})",
                policy.name
            ));
            return;
        }
        if shim_died && let Ok(config) = dir.config() {
            shim::kill_cgroup(&shim::cgroups_path(&config), Duration::from_secs(5));
        }
        log(&format!(
            "{name}: exited {code}, restart {} in {} ms",
            st.restart_count + 1,
            decision.wait_ms
        ));
        self.pending.insert(
            dir.id.clone(),
            Pending {
                due_ms,
                service,
                ordered,
                said_held: false,
            },
        );
    }

    /// Starts a thread blocked in the shim's `wait`.
    fn watch(&mut self, dir: &ContainerDir) {
        if !self.watched.insert(dir.id.clone()) {
            return;
        }
        let store = self.store.clone();
        let id = dir.id.clone();
        let dir = dir.clone();
        let tx = self.tx.clone();
        let spawned = std::thread::Builder::new()
            .name("wait".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                if let Err(e) = lifecycle::wait(&store, &dir, None) {
                    log(&format!("{}: wait: {e}", dir.id));
                    // Do not spin on a container that cannot be waited for.
                    std::thread::sleep(Duration::from_secs(1));
                }
                let _ = tx.send(Event::Exited(dir.id));
            });
        if let Err(e) = spawned {
            log(&format!("{id}: start a wait thread: {e}"));
            self.watched.remove(&id);
            return;
        }
        // Health checks of this run, probed by the supervisor (who else would, after `up`?).
        if let Ok(config) = self.store.dir_of(&id).config()
            && let Some(hc) = config.healthcheck.filter(|h| h.probe_args().is_some())
        {
            let (exe, root, dir) = (
                self.shim_exe.clone(),
                self.root.clone(),
                self.store.dir_of(&id),
            );
            let _ = std::thread::Builder::new()
                .name("health".into())
                .stack_size(256 * 1024)
                .spawn(move || crate::health::probe_loop(&exe, &root, &dir, &hc));
        }
    }

    /// Periodic work: pending restarts that are due (in start-level order), cancelled by
    /// the user, or released by their dependencies; a rescan now and then.
    fn tick(&mut self) {
        if self.last_scan.elapsed() >= RESCAN_EVERY {
            self.scan();
        }
        let level_of = |service: &str| {
            self.record
                .levels
                .iter()
                .position(|l| l.iter().any(|s| s == service))
                .unwrap_or(usize::MAX)
        };
        let mut ids: Vec<(usize, String)> = self
            .pending
            .iter()
            .map(|(id, p)| (level_of(&p.service), id.clone()))
            .collect();
        ids.sort();
        for (_, id) in ids {
            self.try_restart(&id);
        }
    }

    /// A pending restart: cancelled, postponed, or done.
    fn try_restart(&mut self, id: &str) {
        let Some(p) = self.pending.get(id).cloned() else {
            return;
        };
        let dir = self.store.dir_of(id);
        let (Ok(config), Ok(st)) = (dir.config(), lifecycle::state(&dir)) else {
            self.pending.remove(id);
            return;
        };
        let name = config.name;
        // Somebody else started it, or it is no longer the restart we scheduled.
        if st.status != Status::Restarting || st.restart_due_ms != Some(p.due_ms) {
            self.pending.remove(id);
            if matches!(st.status, Status::Running | Status::Paused) {
                self.watch(&dir);
            }
            return;
        }
        // Stopped or killed by the user during the back-off: not restarted.
        if st.manually_stopped {
            self.pending.remove(id);
            let _ = dir.update_state(|s| {
                if s.status == Status::Restarting {
                    s.status = Status::Exited;
                }
                s.restart_due_ms = None;
            });
            log(&format!("{name}: restart cancelled (stopped by the user)"));
            return;
        }
        if now_ms() < p.due_ms {
            return;
        }
        if p.ordered
            && let Some(why) = self.dependencies_pending(&p.service)
        {
            if !p.said_held
                && let Some(p) = self.pending.get_mut(id)
            {
                p.said_held = true;
                log(&format!("{name}: restart held: {why}"));
            }
            return;
        }
        // The previous shim is still finishing (or a user start is under way): next tick.
        if dir.shim_alive().unwrap_or(true) {
            return;
        }
        self.pending.remove(id);
        match lifecycle::start(&self.shim_exe, &self.root, &dir, false) {
            Ok(spawned) => {
                lifecycle::detach(spawned);
                let _ = dir.update_state(|s| s.restart_due_ms = None);
                log(&format!("{name}: restarted ({})", st.restart_count));
                self.watch(&dir);
            }
            Err(e) => {
                // As Docker: a restart that cannot start leaves the container exited.
                let _ = dir.update_state(|s| {
                    if s.status == Status::Restarting {
                        s.status = Status::Exited;
                    }
                    s.restart_due_ms = None;
                });
                log(&format!("{name}: restart failed: {e}"));
            }
        }
    }

    /// `None` when every dependency of `service` meets its condition; otherwise what it
    /// waits for.
    fn dependencies_pending(&self, service: &str) -> Option<String> {
        let deps = self.record.depends_on.get(service)?;
        if deps.is_empty() {
            return None;
        }
        let containers = match project_containers(&self.store, &self.project) {
            Ok(c) => c,
            Err(e) => return Some(format!("list the containers: {e:#}")),
        };
        for dep in deps {
            for c in containers
                .iter()
                .filter(|c| c.service() == dep.service && !c.oneoff())
            {
                let met = match dep.condition {
                    Condition::Started => c.running(),
                    // Health checks are another part's work: healthy counts as started
                    // until the supervisor runs them.
                    Condition::Healthy => c.running(),
                    Condition::CompletedSuccessfully => {
                        c.state.status == Status::Exited && c.state.exit_code == Some(0)
                    }
                };
                if !met {
                    return Some(format!(
                        "{}: {} not met",
                        c.config.name,
                        dep.condition.as_str()
                    ));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(name: &str, max: u32) -> RestartPolicy {
        RestartPolicy {
            name: name.into(),
            max_retries: max,
            ..Default::default()
        }
    }

    /// Feeds `exits` (exit code, run length) through `decide` as the supervisor would,
    /// returning each decision.
    fn run(p: &RestartPolicy, exits: &[(i32, u64)]) -> Vec<Decision> {
        let mut st = ContainerState::default();
        let mut out = Vec::new();
        for &(code, ran_ms) in exits {
            st.exit_code = Some(code);
            let d = decide(p, &st, Some(Duration::from_millis(ran_ms)));
            if d.restart {
                st.restart_count += 1;
                st.restart_attempts = d.attempts;
                st.restart_delay_ms = d.backoff_ms;
            }
            out.push(d);
        }
        out
    }

    #[test]
    fn backoff_doubles_from_100ms_and_is_capped_at_a_minute() {
        let d = run(&policy("always", 0), &[(0, 1); 12]);
        let waits: Vec<u64> = d.iter().map(|d| d.wait_ms).collect();
        assert_eq!(
            waits,
            [
                100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 51200, 60000, 60000
            ]
        );
        assert!(d.iter().all(|d| d.restart));
    }

    #[test]
    fn a_run_of_ten_seconds_resets_the_backoff() {
        let d = run(
            &policy("always", 0),
            &[(1, 1), (1, 1), (1, 10_000), (1, 9_999)],
        );
        let waits: Vec<u64> = d.iter().map(|d| d.wait_ms).collect();
        assert_eq!(waits, [100, 200, 100, 200]);
    }

    #[test]
    fn on_failure_restarts_non_zero_exits_at_most_n_times() {
        let d = run(&policy("on-failure", 3), &[(1, 1); 5]);
        let restarts: Vec<bool> = d.iter().map(|d| d.restart).collect();
        assert_eq!(restarts, [true, true, true, false, false]);
        let d = run(&policy("on-failure", 3), &[(0, 1)]);
        assert!(!d[0].restart, "exit 0 is not a failure");
        let d = run(&policy("on-failure", 0), &[(2, 1); 20]);
        assert!(d.iter().all(|d| d.restart), "0 is unlimited");
    }

    #[test]
    fn no_never_restarts_and_always_restarts_exit_0() {
        assert!(!run(&policy("no", 0), &[(1, 1)])[0].restart);
        assert!(!run(&policy("", 0), &[(1, 1)])[0].restart);
        assert!(run(&policy("always", 0), &[(0, 1)])[0].restart);
        assert!(run(&policy("unless-stopped", 0), &[(0, 1)])[0].restart);
    }

    #[test]
    fn the_user_stopping_a_container_wins_over_every_policy() {
        for name in ["always", "unless-stopped", "on-failure"] {
            let st = ContainerState {
                exit_code: Some(137),
                manually_stopped: true,
                ..Default::default()
            };
            assert!(!decide(&policy(name, 0), &st, None).restart, "{name}");
        }
    }

    #[test]
    fn a_user_start_resets_backoff_and_attempts() {
        // restart_count 0 (what a user start leaves) with stale back-off and attempts.
        let st = ContainerState {
            exit_code: Some(1),
            restart_delay_ms: 6400,
            restart_attempts: 3,
            ..Default::default()
        };
        let d = decide(&policy("on-failure", 3), &st, None);
        assert!(d.restart);
        assert_eq!((d.wait_ms, d.attempts), (100, 1));
    }

    #[test]
    fn deploy_delay_replaces_the_backoff_and_window_resets_attempts() {
        let p = RestartPolicy {
            name: "on-failure".into(),
            max_retries: 2,
            delay_ms: Some(5000),
            window_ms: Some(1000),
        };
        let d = run(&p, &[(1, 10), (1, 10), (1, 2000), (1, 10), (1, 10)]);
        assert!(d.iter().all(|d| d.wait_ms == 5000));
        let restarts: Vec<bool> = d.iter().map(|d| d.restart).collect();
        // Two attempts, a run longer than the window starts the count again.
        assert_eq!(restarts, [true, true, true, true, false]);
    }

    #[test]
    fn an_unknown_exit_code_is_a_failure() {
        let st = ContainerState::default();
        assert!(decide(&policy("on-failure", 0), &st, None).restart);
    }

    #[test]
    fn run_duration_reads_the_state_times() {
        let st = ContainerState {
            started_at: "2024-01-01T00:00:00.000000000Z".into(),
            finished_at: "2024-01-01T00:00:10.500000000Z".into(),
            ..Default::default()
        };
        assert_eq!(run_duration(&st), Some(Duration::from_millis(10_500)));
        assert_eq!(run_duration(&ContainerState::default()), None);
    }

    #[test]
    fn a_running_state_without_its_shim_is_a_died_shim() {
        let tmp = tempfile::tempdir().unwrap();
        let stores = berth_engine::layout::Stores::open(tmp.path()).unwrap();
        let store = ContainerStore::open(&stores.root).unwrap();
        let config = berth_engine::container::ContainerConfig {
            id: berth_engine::container::store::new_id(),
            name: "box".into(),
            ..Default::default()
        };
        let dir = store.create(&config).unwrap();
        assert!(!shim_died(&dir), "created, never started");
        dir.update_state(|s| s.status = Status::Running).unwrap();
        // What a reboot leaves: running on disk, nobody holding the shim's lock.
        assert!(shim_died(&dir));
        let shim = Lock::try_exclusive(&dir.shim_lock()).unwrap().unwrap();
        assert!(!shim_died(&dir), "the shim is alive");
        drop(shim);
        dir.update_state(|s| s.status = Status::Exited).unwrap();
        assert!(!shim_died(&dir), "its exit was recorded");
    }

    #[test]
    fn project_names_cannot_leave_the_projects_directory() {
        let root = Path::new("/r");
        assert!(project_dir(root, "../x").is_err());
        assert!(project_dir(root, "a/b").is_err());
        assert!(project_dir(root, "").is_err());
        assert_eq!(
            project_dir(root, "web").unwrap(),
            Path::new("/r/projects/web")
        );
    }

    #[test]
    fn the_project_record_round_trips_and_conditions_read_compose_spelling() {
        let record = ProjectRecord {
            levels: vec![vec!["db".into()], vec!["web".into()]],
            depends_on: BTreeMap::from([(
                "web".to_string(),
                vec![DependsOn {
                    service: "db".into(),
                    condition: Condition::from_compose("service_completed_successfully"),
                    restart: true,
                }],
            )]),
        };
        let tmp = tempfile::tempdir().unwrap();
        write_project_record(tmp.path(), "p", &record).unwrap();
        let text = std::fs::read_to_string(tmp.path().join("projects/p/project.json")).unwrap();
        assert!(
            text.contains("\"service_completed_successfully\""),
            "{text}"
        );
        assert_eq!(read_project_record(&tmp.path().join("projects/p")), record);
        assert_eq!(
            Condition::from_compose("service_healthy"),
            Condition::Healthy
        );
        assert_eq!(
            Condition::from_compose("service_started"),
            Condition::Started
        );
    }
}
