//! `exec` in a running container: the berth binary re-executed as `berth __exec …`, a
//! single-threaded process (libcontainer's tenant builder forks with raw clone3 and must not
//! run in a multi-threaded process) that joins the container's namespaces and cgroup, runs the
//! command with the caller's stdio (inherited from `berth container exec`, or pipes of a
//! health check), waits for it and exits with its exit code.

use std::path::{Path, PathBuf};

use nix::sys::wait::{WaitStatus, waitpid};

use crate::container::config::Status;
use crate::container::shim;
use crate::container::store::ContainerStore;
use crate::layout::Root;

/// The hidden verb the binary dispatches to [`main`].
pub const EXEC_VERB: &str = "__exec";

/// Exit status when the exec could not be started (docker's 126 is "cannot invoke", 127 "not
/// found"; a failure before that is docker's 125-ish daemon error, reported as 126 here).
pub const EXEC_FAILED: i32 = 126;

/// What to run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecRequest {
    pub id: String,
    pub args: Vec<String>,
    /// `NAME=value`, added to (and overriding) the container's environment.
    pub env: Vec<String>,
    /// `uid[:gid]` or a name; empty: the container's user.
    pub user: String,
    pub workdir: Option<String>,
    pub privileged: bool,
    pub detach: bool,
    /// Allocate a pseudo-terminal (`exec -t`): this process relays between its own stdio and
    /// the terminal.
    pub tty: bool,
}

impl ExecRequest {
    /// The `__exec` argument vector (after the verb) for this request.
    pub fn to_args(&self, root: &Path) -> Vec<String> {
        let mut v = vec!["--root".to_string(), root.to_string_lossy().into_owned()];
        for e in &self.env {
            v.push("--env".into());
            v.push(e.clone());
        }
        if !self.user.is_empty() {
            v.push("--user".into());
            v.push(self.user.clone());
        }
        if let Some(w) = &self.workdir {
            v.push("--workdir".into());
            v.push(w.clone());
        }
        if self.privileged {
            v.push("--privileged".into());
        }
        if self.detach {
            v.push("--detach".into());
        }
        if self.tty {
            v.push("--tty".into());
        }
        v.push(self.id.clone());
        v.push("--".into());
        v.extend(self.args.iter().cloned());
        v
    }

    fn parse(args: &[String]) -> Result<(PathBuf, ExecRequest), String> {
        let mut root = None;
        let mut req = ExecRequest::default();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = |name: &str| {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            match a.as_str() {
                "--root" => root = Some(PathBuf::from(value("--root")?)),
                "--env" => req.env.push(value("--env")?),
                "--user" => req.user = value("--user")?,
                "--workdir" => req.workdir = Some(value("--workdir")?),
                "--privileged" => req.privileged = true,
                "--detach" => req.detach = true,
                "--tty" => req.tty = true,
                "--" => {
                    req.args = it.cloned().collect();
                    break;
                }
                id if req.id.is_empty() => req.id = id.to_string(),
                other => return Err(format!("unexpected argument {other:?}")),
            }
        }
        let root = root.ok_or("--root is required")?;
        if req.id.is_empty() || req.args.is_empty() {
            return Err("usage: berth __exec --root ROOT [opts] ID -- CMD...".to_string());
        }
        Ok((root, req))
    }
}

/// Entry point of `berth __exec`: returns the exit code of the command.
pub fn main(args: &[String]) -> i32 {
    let (root, req) = match ExecRequest::parse(args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("berth exec: {e}");
            return 2;
        }
    };
    match exec(&root, &req) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error response from daemon: {e}");
            EXEC_FAILED
        }
    }
}

fn exec(root: &Path, req: &ExecRequest) -> Result<i32, String> {
    let root = Root::open(root).map_err(|e| e.to_string())?;
    let store = ContainerStore::open(&root).map_err(|e| e.to_string())?;
    let dir = store.resolve(&req.id).map_err(|e| e.to_string())?;
    let config = dir.config().map_err(|e| e.to_string())?;
    let state = shim::observed_state(&dir).map_err(|e| e.to_string())?;
    match state.status {
        Status::Running => {}
        Status::Paused => {
            return Err(format!(
                "container {} is paused, unpause the container before exec",
                config.name
            ));
        }
        _ => return Err(format!("container {} is not running", dir.id)),
    }
    // The exec'd process: the container's own process (env, user, capabilities, rlimits)
    // with this request's changes, handed to the runtime as a process.json.
    let spec = oci_spec::runtime::Spec::load(store.bundle_dir(&dir.id).join("config.json"))
        .map_err(|e| format!("read the container's spec: {e}"))?;
    let mut process = spec.process().clone().unwrap_or_default();
    let mut env: Vec<String> = process.env().clone().unwrap_or_default();
    for e in &req.env {
        let entry = if e.contains('=') {
            e.clone()
        } else {
            format!("{e}={}", std::env::var(e).unwrap_or_default())
        };
        let key = entry.split('=').next().unwrap_or("").to_string();
        env.retain(|x| x.split('=').next() != Some(key.as_str()));
        env.push(entry);
    }
    process
        .set_args(Some(req.args.clone()))
        .set_env(Some(env))
        .set_terminal(Some(req.tty));
    if let Some(w) = &req.workdir {
        process.set_cwd(PathBuf::from(w));
    }
    if !req.user.is_empty() {
        // The rootfs as the shim mounted it, in its mount namespace (none on the host).
        let view = crate::container::ops::live_rootfs(&dir)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("container {} is not running", dir.id))?;
        let (uid, gid, groups) = resolve_user(
            Path::new(&format!(
                "/proc/self/fd/{}",
                std::os::fd::AsRawFd::as_raw_fd(&view)
            )),
            &req.user,
        )?;
        let mut user = process.user().clone();
        user.set_uid(uid)
            .set_gid(gid)
            .set_additional_gids(Some(groups));
        process.set_user(user);
    }
    if req.privileged {
        let all: oci_spec::runtime::Capabilities = crate::container::caps::all_caps()
            .iter()
            .filter_map(|c| serde_json::from_value(serde_json::Value::String(c.clone())).ok())
            .collect();
        if let Some(caps) = process.capabilities().clone() {
            let mut caps = caps;
            caps.set_bounding(Some(all.clone()))
                .set_effective(Some(all.clone()))
                .set_permitted(Some(all.clone()));
            process.set_capabilities(Some(caps));
        }
    }
    // The container's precompiled seccomp filter, loaded by the executor as at the start.
    let seccomp = crate::container::seccomp_bpf::for_exec(
        &spec,
        &mut process,
        req.privileged,
        &shim::seccomp_cache_dir(&store),
    )
    .map_err(|e| e.to_string())?;
    let work = tempdir_in(&shim::runtime_root(&store))?;
    let process_file = work.join("process.json");
    crate::fsutil::write_json_atomic(&process_file, &process).map_err(|e| e.to_string())?;
    let console = if req.tty {
        let path = work.join("console.sock");
        Some((
            std::os::unix::net::UnixListener::bind(&path)
                .map_err(|e| format!("bind the console socket: {e}"))?,
            path,
        ))
    } else {
        None
    };
    let builder = libcontainer::container::builder::ContainerBuilder::new(
        shim::runtime_id(&dir.id).to_string(),
        libcontainer::syscall::syscall::SyscallType::default(),
    )
    .with_root_path(shim::runtime_root(&store))
    .map_err(|e| e.to_string())?
    .with_console_socket(console.as_ref().map(|(_, p)| p.clone()))
    .with_executor(shim::ShimExecutor { seccomp })
    .as_tenant()
    .with_process(Some(&process_file))
    // The runtime takes a console socket only from a caller that does not wait itself; this
    // process waits below either way.
    .with_detach(req.detach || req.tty);
    let built = builder.build();
    let result = match (built, console) {
        (Err(e), _) => Err(e.to_string()),
        (Ok(pid), None) => Ok((pid, None)),
        (Ok(pid), Some((listener, _))) => shim::receive_pty_master(&listener)
            .map(|m| (pid, Some(m)))
            .map_err(|e| e.to_string()),
    };
    let _ = std::fs::remove_dir_all(&work);
    let (pid, master) = result?;
    if let Some(master) = master {
        relay_terminal(master);
    }
    if req.detach {
        return Ok(0);
    }
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("wait for the exec'd process: {e}")),
        }
    }
}

/// `uid[:gid]` numerically, or a name looked up in the container's `/etc/passwd`/`group`.
fn resolve_user(rootfs: &Path, user: &str) -> Result<(u32, u32, Vec<u32>), String> {
    let r = crate::container::user::resolve_user(rootfs, user, &[]).map_err(|e| e.to_string())?;
    Ok((r.uid, r.gid, r.additional_gids))
}

/// A private directory for this exec's process.json and console socket (short path: the
/// socket name must fit in 108 bytes).
fn tempdir_in(parent: &Path) -> Result<PathBuf, String> {
    let dir = parent.join(format!("x{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    Ok(dir)
}

/// `exec -t`: copies this process' stdin to the terminal and the terminal to stdout (raw mode
/// when stdin is a terminal itself) until the terminal closes.
fn relay_terminal(master: std::os::fd::OwnedFd) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::io::{IsTerminal, Read, Write};
    use std::os::fd::AsFd;
    let stdin = std::io::stdin();
    let saved = if stdin.is_terminal() {
        let saved = rustix::termios::tcgetattr(&stdin).ok();
        if let Some(s) = &saved {
            let mut raw = s.clone();
            raw.make_raw();
            let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &raw);
            if let Ok(size) = rustix::termios::tcgetwinsize(&stdin) {
                let _ = rustix::termios::tcsetwinsize(&master, size);
            }
        }
        saved
    } else {
        None
    };
    // Window size changes follow the user's terminal: SIGWINCH through a signalfd (blocked
    // only now, after the exec'd process was forked, so it does not inherit the mask).
    let winch = saved.as_ref().and_then(|_| {
        use nix::sys::signal::{SigSet, Signal};
        use nix::sys::signalfd::{SfdFlags, SignalFd};
        let mut set = SigSet::empty();
        set.add(Signal::SIGWINCH);
        set.thread_block().ok()?;
        SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).ok()
    });
    let mut term = std::fs::File::from(master);
    let mut out = std::io::stdout();
    let mut buf = [0u8; 8192];
    let mut stdin_open = true;
    loop {
        let stdin_fd = stdin.as_fd();
        let mut fds = vec![PollFd::new(term.as_fd(), PollFlags::POLLIN)];
        if stdin_open {
            fds.push(PollFd::new(stdin_fd, PollFlags::POLLIN));
        }
        let winch_at = fds.len();
        if let Some(w) = &winch {
            fds.push(PollFd::new(w.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
        let term_ready = fds[0].revents().is_some_and(|r| !r.is_empty());
        let stdin_ready = stdin_open && fds[1].revents().is_some_and(|r| !r.is_empty());
        let resized = winch.is_some()
            && fds
                .get(winch_at)
                .and_then(|f| f.revents())
                .is_some_and(|r| !r.is_empty());
        drop(fds);
        if resized && let Some(w) = &winch {
            while let Ok(Some(_)) = w.read_signal() {}
            if let Ok(size) = rustix::termios::tcgetwinsize(&stdin) {
                let _ = rustix::termios::tcsetwinsize(&term, size);
            }
        }
        if term_ready {
            match term.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let _ = out.write_all(&buf[..n]);
                    let _ = out.flush();
                }
            }
        }
        if stdin_ready {
            match stdin.lock().read(&mut buf) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => {
                    let _ = term.write_all(&buf[..n]);
                }
            }
        }
    }
    if let Some(s) = saved {
        let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips_through_its_arguments() {
        let req = ExecRequest {
            id: "abc".into(),
            args: vec!["sh".into(), "-c".into(), "--root x".into()],
            env: vec!["A=1".into()],
            user: "1000:1000".into(),
            workdir: Some("/tmp".into()),
            privileged: true,
            detach: false,
            tty: true,
        };
        let args = req.to_args(Path::new("/r"));
        let (root, back) = ExecRequest::parse(&args).unwrap();
        assert_eq!(root, PathBuf::from("/r"));
        assert_eq!(back, req);
        assert!(ExecRequest::parse(&["--root".into(), "/r".into(), "id".into()]).is_err());
    }
}
