//! Container lifecycle on top of the store and the shim: start, kill, stop, wait, pause,
//! resume, remove. Every operation is idempotent where Docker's is (stopping a stopped
//! container succeeds) and tolerates partial state (a container whose shim died, whose rootfs
//! is still mounted, or whose runtime state was left behind can always be removed).
//!
//! These calls block; async callers run them in `spawn_blocking`. None of them calls the
//! runtime (libcontainer) itself: only the shim does, in its own single-threaded process.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::container::config::{ContainerState, Status};
use crate::container::shim::{self, ShimError};
use crate::container::store::{ContainerDir, ContainerStore, StoreError};
use crate::events;
use crate::fsutil::FsError;
use crate::rootfs::Rootfs;

/// Why a lifecycle operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Fs(#[from] FsError),
    // Transparent: with a message of "{0}" and the same error as its source, `{:#}`
    // printed the shim's message twice.
    #[error(transparent)]
    Shim(#[from] ShimError),
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("container {0} is paused, unpause the container before stopping or killing")]
    Paused(String),
    #[error(
        "cannot remove container \"/{0}\": container is running: stop the container before \
         removing or force remove"
    )]
    RemoveRunning(String),
    #[error("invalid signal: {0}")]
    InvalidSignal(String),
    #[error("container {name}: {message}")]
    Request { name: String, message: String },
    /// The shim did not answer in time (a `wait` with a timeout, mostly).
    #[error("container {0}: the shim did not answer in time")]
    Timeout(String),
    #[error(transparent)]
    Rootfs(#[from] crate::rootfs::RootfsError),
}

/// Parses `SIGTERM`, `TERM`, `term` or `15` into a signal number.
pub fn parse_signal(s: &str) -> Result<i32, LifecycleError> {
    let t = s.trim();
    if let Ok(n) = t.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        return Err(LifecycleError::InvalidSignal(s.to_string()));
    }
    let upper = t.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| LifecycleError::InvalidSignal(s.to_string()))
}

/// The observed state: what `state.json` says, corrected when the shim is gone.
pub fn state(dir: &ContainerDir) -> Result<ContainerState, LifecycleError> {
    Ok(shim::observed_state(dir)?)
}

fn is_running(state: &ContainerState) -> bool {
    matches!(state.status, Status::Running | Status::Paused)
}

/// Starts a created or exited container (a no-op for a running one: `None`). `user` says
/// whether the user asked (it clears the manual-stop flag and the restart count). The caller
/// keeps the [`shim::Spawned`] to learn the exit code, or hands it to [`detach`].
pub fn start(
    shim_exe: &Path,
    root: &Path,
    dir: &ContainerDir,
    user: bool,
) -> Result<Option<shim::Spawned>, LifecycleError> {
    let st = state(dir)?;
    if is_running(&st) {
        return Ok(None);
    }
    // A fresh container has nothing to clear: skip the write (one file less per start).
    if user && (st.manually_stopped || st.restart_count != 0) {
        dir.update_state(|s| {
            s.manually_stopped = false;
            s.restart_count = 0;
        })?;
    }
    Ok(Some(shim::spawn(shim_exe, root, dir)?))
}

/// Lets a started shim go: a small thread waits for it so it never lingers as a zombie in a
/// long-lived process (a short-lived one may simply exit; the kernel re-parents the shim).
/// The thread is in the caller's process, never in the shim.
pub fn detach(spawned: Option<shim::Spawned>) {
    let Some(spawned) = spawned else { return };
    let shim::Spawned {
        mut child, report, ..
    } = spawned;
    drop(report);
    let _ = std::thread::Builder::new()
        .name("shim-reaper".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let _ = child.wait();
        });
}

fn socket(store: &ContainerStore, dir: &ContainerDir) -> std::path::PathBuf {
    shim::socket_path(store, &dir.id)
}

fn name_of(dir: &ContainerDir) -> String {
    dir.config()
        .map(|c| c.name)
        .unwrap_or_else(|_| dir.id.clone())
}

fn ask(
    store: &ContainerStore,
    dir: &ContainerDir,
    line: &str,
    timeout: Option<Duration>,
) -> Result<String, LifecycleError> {
    ask_then(store, dir, line, timeout, None)
}

/// [`ask`]; with `linger`, then waits (that long at most) for the shim to close the
/// connection as it exits (see [`shim::request_until_closed`]).
fn ask_then(
    store: &ContainerStore,
    dir: &ContainerDir,
    line: &str,
    timeout: Option<Duration>,
    linger: Option<Duration>,
) -> Result<String, LifecycleError> {
    // A connection the shim closes without reading it (accepted, or still queued, when the
    // first stage hands over to its monitor, or when the shim exits after its container)
    // ends unanswered: EOF, ECONNRESET when our request was still unread, EPIPE when it was
    // closed before we wrote. The request was never seen, so it is asked again while the
    // shim lives; a shim that is gone had nothing left running to ask.
    let unanswered = |e: &std::io::Error| {
        matches!(
            e.kind(),
            std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::BrokenPipe
        )
    };
    let mut attempt = 0;
    let reply = loop {
        let socket = socket(store, dir);
        let result = match linger {
            None => shim::request(&socket, line, timeout),
            Some(linger) => {
                let exited = || !dir.shim_alive().unwrap_or(false);
                shim::request_until_closed(&socket, line, timeout, linger, &exited)
            }
        };
        match result {
            Err(e) if unanswered(&e) && attempt < 20 && dir.shim_alive().unwrap_or(false) => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            other => break other,
        }
    };
    let reply = reply.map_err(|e| {
        if matches!(
            e.kind(),
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
        ) || (unanswered(&e) && !dir.shim_alive().unwrap_or(true))
        {
            LifecycleError::NotRunning(name_of(dir))
        } else if matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ) {
            LifecycleError::Timeout(name_of(dir))
        } else {
            LifecycleError::Request {
                name: name_of(dir),
                message: e.to_string(),
            }
        }
    })?;
    match reply.strip_prefix("error ") {
        Some(msg) if msg.contains("not running") => Err(LifecycleError::NotRunning(name_of(dir))),
        Some(msg) => Err(LifecycleError::Request {
            name: name_of(dir),
            message: msg.to_string(),
        }),
        None => Ok(reply),
    }
}

/// Sends a signal to the container's init process. `user`: marks it manually stopped, so
/// restart policies leave it alone (Docker's semantics for `kill` and `stop`).
pub fn kill(
    store: &ContainerStore,
    dir: &ContainerDir,
    signal: i32,
    user: bool,
) -> Result<(), LifecycleError> {
    let st = state(dir)?;
    if !is_running(&st) {
        return Err(LifecycleError::NotRunning(name_of(dir)));
    }
    if user {
        dir.update_state(|s| s.manually_stopped = true)?;
    }
    kill_event(dir, signal);
    ask(
        store,
        dir,
        &format!("kill {signal}"),
        Some(Duration::from_secs(10)),
    )?;
    Ok(())
}

/// Docker's `kill` event. Recorded before the signal is sent, so that it always precedes the
/// `die` the shim records when the signal ends the container.
fn kill_event(dir: &ContainerDir, signal: i32) {
    events::emit_for(dir, "kill", &[("signal", signal.to_string())]);
}

/// Waits for the container to exit (at most `timeout`); returns its exit code, or `None` on
/// timeout. A container that is not running returns its last exit code at once.
pub fn wait(
    store: &ContainerStore,
    dir: &ContainerDir,
    timeout: Option<Duration>,
) -> Result<Option<i32>, LifecycleError> {
    wait_then(store, dir, timeout, None)
}

/// [`wait`], and then until the shim has exited (at most `SHIM_EXIT` more): what a stop or
/// a forced removal waits for before it goes on with the container's directory.
fn wait_until_gone(
    store: &ContainerStore,
    dir: &ContainerDir,
    timeout: Option<Duration>,
) -> Result<Option<i32>, LifecycleError> {
    let code = wait_then(store, dir, timeout, Some(SHIM_EXIT))?;
    if code.is_some() {
        wait_for_shim_exit(dir, SHIM_EXIT);
    }
    Ok(code)
}

/// How long a shim may take from its container's exit to its own.
const SHIM_EXIT: Duration = Duration::from_secs(5);

fn wait_then(
    store: &ContainerStore,
    dir: &ContainerDir,
    timeout: Option<Duration>,
    linger: Option<Duration>,
) -> Result<Option<i32>, LifecycleError> {
    let st = state(dir)?;
    if !is_running(&st) {
        return Ok(Some(st.exit_code.unwrap_or(0)));
    }
    match ask_then(store, dir, "wait", timeout, linger) {
        Ok(reply) => Ok(reply
            .strip_prefix("exit ")
            .and_then(|c| c.parse().ok())
            .or(Some(255))),
        Err(LifecycleError::Timeout(_)) => Ok(None),
        Err(LifecycleError::Request { .. } | LifecycleError::NotRunning(_)) => {
            // The shim went away between our look and the request: read what it recorded.
            wait_for_shim_exit(dir, Duration::from_secs(5));
            Ok(Some(state(dir)?.exit_code.unwrap_or(255)))
        }
        Err(e) => Err(e),
    }
}

fn wait_for_shim_exit(dir: &ContainerDir, max: Duration) {
    let deadline = Instant::now() + max;
    // Mostly called as the shim exits: looked at again soon, then less and less often.
    let mut pause = Duration::from_millis(1);
    while dir.shim_alive().unwrap_or(false) && Instant::now() < deadline {
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

/// Docker's stop: the stop signal, then SIGKILL after `timeout` (the container's
/// `stop_grace_period`, 10 s by default); a stopped container is left as it is. Returns the
/// exit code when the container was running.
pub fn stop(
    store: &ContainerStore,
    dir: &ContainerDir,
    timeout: Option<Duration>,
) -> Result<Option<i32>, LifecycleError> {
    stop_with(store, dir, timeout, Release::ByShim)
}

/// Who gives back a stopped container's networking (see [`stop_with`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// The shim, as the container exits (every stop but a batch's).
    ByShim,
    /// The caller, once the stop returns: the shim leaves the endpoints alone. `down` stops
    /// every container this way and releases them all in one go; released one by one, each
    /// shim queued for the network store's lock and a durable write of its own.
    ByCaller,
}

/// [`stop`], saying who releases the container's networking. With [`Release::ByCaller`] the
/// caller must release it (an older shim that does not know the request releases it
/// anyway; releases are idempotent).
pub fn stop_with(
    store: &ContainerStore,
    dir: &ContainerDir,
    timeout: Option<Duration>,
    release: Release,
) -> Result<Option<i32>, LifecycleError> {
    let st = state(dir)?;
    if !is_running(&st) {
        dir.update_state(|s| s.manually_stopped = true)?;
        return Ok(None);
    }
    let config = dir.config()?;
    if st.status == Status::Paused {
        // A frozen process cannot handle its signal: thaw it first, as Docker does on stop.
        let _ = ask(store, dir, "resume", Some(Duration::from_secs(10)));
    }
    let timeout = timeout.unwrap_or(Duration::from_secs(config.stop_timeout.unwrap_or(10)));
    let sig = if config.stop_signal.is_empty() {
        15
    } else {
        parse_signal(&config.stop_signal)?
    };
    if !timeout.is_zero() {
        kill_event(dir, sig);
        match stop_signal(store, dir, sig, release) {
            Ok(()) => {}
            Err(LifecycleError::NotRunning(_)) => {
                let code = final_code(dir)?;
                events::emit_for(dir, "stop", &[]);
                return Ok(Some(code));
            }
            Err(e) => return Err(e),
        }
        if let Some(code) = wait_until_gone(store, dir, Some(timeout))? {
            events::emit_for(dir, "stop", &[]);
            return Ok(Some(code));
        }
    }
    kill_event(dir, 9);
    match stop_signal(store, dir, 9, release) {
        Ok(()) | Err(LifecycleError::NotRunning(_)) => {}
        Err(e) => return Err(e),
    }
    let code = wait_until_gone(store, dir, Some(Duration::from_secs(30)))?;
    events::emit_for(dir, "stop", &[]);
    Ok(code)
}

/// Sends `sig` as a user's stop: the shim marks the container manually stopped in the record
/// of its exit (Docker's semantics: no restart policy brings it back), rather than this
/// process writing the mark first. A container that already exited gets the mark here; so
/// does one whose shim, of an older berth, knows only `kill`.
fn stop_signal(
    store: &ContainerStore,
    dir: &ContainerDir,
    sig: i32,
    release: Release,
) -> Result<(), LifecycleError> {
    let limit = Some(Duration::from_secs(10));
    let request = match release {
        Release::ByShim => format!("stop {sig}"),
        Release::ByCaller => format!("stop {sig} {}", shim::KEEP_NETWORK),
    };
    match ask(store, dir, &request, limit) {
        Ok(_) => Ok(()),
        Err(LifecycleError::Request { message, .. }) if message.starts_with("unknown request") => {
            dir.update_state(|s| s.manually_stopped = true)?;
            ask(store, dir, &format!("kill {sig}"), limit).map(drop)
        }
        Err(e @ LifecycleError::NotRunning(_)) => {
            dir.update_state(|s| s.manually_stopped = true)?;
            Err(e)
        }
        Err(e) => Err(e),
    }
}

fn final_code(dir: &ContainerDir) -> Result<i32, LifecycleError> {
    wait_for_shim_exit(dir, Duration::from_secs(5));
    Ok(state(dir)?.exit_code.unwrap_or(255))
}

/// Freezes the container (cgroup freezer).
pub fn pause(store: &ContainerStore, dir: &ContainerDir) -> Result<(), LifecycleError> {
    let st = state(dir)?;
    match st.status {
        Status::Running => {
            ask(store, dir, "pause", Some(Duration::from_secs(10)))?;
            events::emit_for(dir, "pause", &[]);
            Ok(())
        }
        Status::Paused => Err(LifecycleError::Request {
            name: name_of(dir),
            message: "container is already paused".to_string(),
        }),
        _ => Err(LifecycleError::NotRunning(name_of(dir))),
    }
}

/// Thaws a paused container.
pub fn resume(store: &ContainerStore, dir: &ContainerDir) -> Result<(), LifecycleError> {
    let st = state(dir)?;
    if st.status != Status::Paused {
        return Err(LifecycleError::Request {
            name: name_of(dir),
            message: "container is not paused".to_string(),
        });
    }
    ask(store, dir, "resume", Some(Duration::from_secs(10)))?;
    events::emit_for(dir, "unpause", &[]);
    Ok(())
}

/// Removes the anonymous volumes of a removed container that no other container uses
/// (`rm -v`, `run --rm`); errors are logged, not returned: the container is gone already.
pub fn remove_anonymous_volumes(
    root: &crate::layout::Root,
    store: &ContainerStore,
    config: &crate::container::config::ContainerConfig,
) {
    let anonymous: Vec<&str> = config
        .mounts
        .iter()
        .filter_map(|m| match &m.kind {
            crate::container::config::MountKind::Volume {
                name,
                anonymous: true,
                ..
            } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    if anonymous.is_empty() {
        return;
    }
    let (Ok(volumes), Ok(users)) = (
        crate::volumes::VolumeStore::open(root),
        store.volume_users(),
    ) else {
        return;
    };
    for name in anonymous {
        let using = |n: &str| users.get(n).cloned().unwrap_or_default();
        if let Err(e) = volumes.remove(name, true, &using) {
            tracing::warn!(volume = name, "cannot remove anonymous volume: {e}");
        }
    }
}

/// Removes a container: refuses a running one unless `force` (then SIGKILL and wait). Keeps
/// cleaning after errors: the rootfs is unmounted, runtime leftovers and the cgroup removed,
/// then the record. `volumes`: its anonymous volumes too (`rm -v`).
pub fn remove(
    root: &crate::layout::Root,
    store: &ContainerStore,
    dir: &ContainerDir,
    force: bool,
    volumes: bool,
) -> Result<(), LifecycleError> {
    let st = state(dir)?;
    if is_running(&st) {
        if !force {
            return Err(LifecycleError::RemoveRunning(name_of(dir)));
        }
        if st.status == Status::Paused {
            let _ = ask(store, dir, "resume", Some(Duration::from_secs(10)));
        }
        kill_event(dir, 9);
        match ask(store, dir, "kill 9", Some(Duration::from_secs(10))) {
            Ok(_) | Err(LifecycleError::NotRunning(_)) => {}
            Err(e) => return Err(e),
        }
        let _ = wait_until_gone(store, dir, Some(Duration::from_secs(30)))?;
    }
    let config = dir.config().ok();
    // A shim killed outright leaves its container's processes running with nobody to reap
    // them: they go by their cgroup before anything else is taken down.
    if let Some(config) = &config
        && !dir.shim_alive()?
    {
        shim::kill_cgroup(&shim::cgroups_path(config), Duration::from_secs(5));
    }
    let mut first_error: Option<LifecycleError> = None;
    if let Err(e) = Rootfs::at(&dir.path).unmount() {
        first_error.get_or_insert(e.into());
    }
    if let Some(config) = &config {
        shim::remove_cgroup_parents(&shim::cgroups_path(config));
    }
    let _ = std::fs::remove_file(shim::socket_path(store, &dir.id));
    let _ = std::fs::remove_dir_all(shim::runtime_root(store).join(shim::runtime_id(&dir.id)));
    let _ = std::fs::remove_dir_all(store.bundle_dir(&dir.id));
    match store.remove(dir) {
        Ok(()) => {
            if let (true, Some(config)) = (volumes, &config) {
                remove_anonymous_volumes(root, store, config);
            }
        }
        Err(e) => {
            first_error.get_or_insert(e.into());
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_like_docker() {
        assert_eq!(parse_signal("SIGTERM").unwrap(), 15);
        assert_eq!(parse_signal("term").unwrap(), 15);
        assert_eq!(parse_signal("KILL").unwrap(), 9);
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert_eq!(parse_signal("SIGUSR1").unwrap(), 10);
        assert!(parse_signal("SIGNOPE").is_err());
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("65").is_err());
    }

    /// A store with one container record and the listening socket of a pretend shim.
    fn pretend_shim() -> (
        tempfile::TempDir,
        ContainerStore,
        ContainerDir,
        std::os::unix::net::UnixListener,
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let root = crate::layout::Root::open(tmp.path().join("r")).unwrap();
        let store = ContainerStore::open(&root).unwrap();
        let config = crate::container::config::ContainerConfig {
            id: crate::container::store::new_id(),
            name: "web-1".into(),
            ..Default::default()
        };
        let dir = store.create(&config).unwrap();
        let sock = socket(&store, &dir);
        std::fs::create_dir_all(sock.parent().unwrap()).unwrap();
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        (tmp, store, dir, listener)
    }

    /// Accepts one connection and closes it with the request unread: the client sees
    /// ECONNRESET (unread data at close), as when a shim hands over or exits.
    fn reset_one(listener: &std::os::unix::net::UnixListener) {
        let (conn, _) = listener.accept().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        drop(conn);
    }

    #[test]
    fn a_request_the_live_shim_closed_unread_is_asked_again() {
        use std::io::{BufRead, Write};
        let (_tmp, store, dir, listener) = pretend_shim();
        let _alive = crate::fsutil::Lock::exclusive(&dir.shim_lock()).unwrap();
        let server = std::thread::spawn(move || {
            reset_one(&listener);
            let (conn, _) = listener.accept().unwrap();
            let mut line = String::new();
            std::io::BufReader::new(&conn).read_line(&mut line).unwrap();
            writeln!(&conn, "ok").unwrap();
            line
        });
        let reply = ask(&store, &dir, "kill 9", Some(Duration::from_secs(5))).unwrap();
        assert_eq!(reply, "ok");
        assert_eq!(server.join().unwrap(), "kill 9\n");
    }

    #[test]
    fn a_stop_through_a_shim_that_knows_only_kill_still_marks_the_container() {
        use std::io::{BufRead, Write};
        let (_tmp, store, dir, listener) = pretend_shim();
        let _alive = crate::fsutil::Lock::exclusive(&dir.shim_lock()).unwrap();
        let server = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for answer in ["error unknown request \"stop\"", "ok"] {
                let (conn, _) = listener.accept().unwrap();
                let mut line = String::new();
                std::io::BufReader::new(&conn).read_line(&mut line).unwrap();
                writeln!(&conn, "{answer}").unwrap();
                seen.push(line.trim().to_string());
            }
            seen
        });
        stop_signal(&store, &dir, 15, Release::ByShim).unwrap();
        assert_eq!(server.join().unwrap(), ["stop 15", "kill 15"]);
        assert!(dir.state().unwrap().manually_stopped);
    }

    /// A pretend shim's one answer, `ok`, to one request: the request's line.
    fn answer_ok_once(
        listener: std::os::unix::net::UnixListener,
    ) -> std::thread::JoinHandle<String> {
        use std::io::{BufRead, Write};
        std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            let mut line = String::new();
            std::io::BufReader::new(&conn).read_line(&mut line).unwrap();
            writeln!(&conn, "ok").unwrap();
            line
        })
    }

    #[test]
    fn a_stop_through_a_shim_that_knows_it_leaves_the_mark_to_the_shim() {
        let (_tmp, store, dir, listener) = pretend_shim();
        let _alive = crate::fsutil::Lock::exclusive(&dir.shim_lock()).unwrap();
        let server = answer_ok_once(listener);
        stop_signal(&store, &dir, 9, Release::ByShim).unwrap();
        assert_eq!(server.join().unwrap(), "stop 9\n");
        // Written by the shim with the exit, not here.
        assert!(!dir.state().unwrap().manually_stopped);
    }

    #[test]
    fn a_stop_whose_caller_releases_the_network_tells_the_shim() {
        let (_tmp, store, dir, listener) = pretend_shim();
        let _alive = crate::fsutil::Lock::exclusive(&dir.shim_lock()).unwrap();
        let server = answer_ok_once(listener);
        stop_signal(&store, &dir, 15, Release::ByCaller).unwrap();
        assert_eq!(server.join().unwrap(), "stop 15 keep-network\n");
    }

    /// A pretend shim whose container is running: answers one `wait` with `exit 0`, then
    /// closes the connection after `close_after` and lets go of its lock after `exit_after`.
    fn exiting_shim(
        close_after: Duration,
        exit_after: Duration,
    ) -> (
        tempfile::TempDir,
        ContainerStore,
        ContainerDir,
        std::thread::JoinHandle<()>,
    ) {
        use std::io::{BufRead, Write};
        let (tmp, store, dir, listener) = pretend_shim();
        dir.update_state(|s| s.status = Status::Running).unwrap();
        let lock = crate::fsutil::Lock::exclusive(&dir.shim_lock()).unwrap();
        let server = std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            let mut line = String::new();
            std::io::BufReader::new(&conn).read_line(&mut line).unwrap();
            assert_eq!(line, "wait\n");
            writeln!(&conn, "exit 0").unwrap();
            let start = Instant::now();
            let mut conn = Some(conn);
            let mut lock = Some(lock);
            while conn.is_some() || lock.is_some() {
                if start.elapsed() >= close_after {
                    conn = None;
                }
                if start.elapsed() >= exit_after {
                    lock = None;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        (tmp, store, dir, server)
    }

    #[test]
    fn a_stop_s_wait_returns_once_the_shim_has_exited() {
        let close = Duration::from_millis(150);
        let (_tmp, store, dir, server) = exiting_shim(close, close);
        let start = Instant::now();
        let code = wait_until_gone(&store, &dir, Some(Duration::from_secs(5))).unwrap();
        let took = start.elapsed();
        server.join().unwrap();
        assert_eq!(code, Some(0));
        assert!(took >= close && took < Duration::from_secs(2), "{took:?}");
        assert!(!dir.shim_alive().unwrap());
    }

    #[test]
    fn a_connection_left_open_past_the_shim_s_exit_does_not_hold_up_a_stop() {
        let (_tmp, store, dir, server) =
            exiting_shim(Duration::from_secs(1), Duration::from_millis(20));
        let start = Instant::now();
        let code = wait_until_gone(&store, &dir, Some(Duration::from_secs(5))).unwrap();
        let took = start.elapsed();
        assert_eq!(code, Some(0));
        assert!(took < Duration::from_millis(500), "{took:?}");
        server.join().unwrap();
    }

    #[test]
    fn a_request_a_shim_closed_unread_as_it_exited_means_not_running() {
        let (_tmp, store, dir, listener) = pretend_shim();
        // No shim lock held: the shim is gone by the time the client looks.
        let server = std::thread::spawn(move || reset_one(&listener));
        let err = ask(&store, &dir, "kill 9", Some(Duration::from_secs(5))).unwrap_err();
        server.join().unwrap();
        assert!(matches!(err, LifecycleError::NotRunning(_)), "{err:?}");
    }
}
