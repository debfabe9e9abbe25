//! `exec` in a running container: the berth binary re-executed as `berth __exec …`, a
//! single-threaded process (libcontainer's tenant builder forks with raw clone3 and must not
//! run in a multi-threaded process) that joins the container's namespaces and cgroup, runs the
//! command with the caller's stdio (inherited from `berth container exec`, or pipes of a
//! health check), waits for it and exits with its exit code.

use std::collections::HashMap;
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
    let env: HashMap<String, String> = req
        .env
        .iter()
        .map(|e| match e.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (e.clone(), std::env::var(e).unwrap_or_default()),
        })
        .collect();
    let user = if req.user.is_empty() {
        None
    } else {
        Some(resolve_user(
            crate::rootfs::Rootfs::at(&dir.path).merged(),
            &req.user,
        )?)
    };
    let mut builder = libcontainer::container::builder::ContainerBuilder::new(
        shim::runtime_id(&dir.id).to_string(),
        libcontainer::syscall::syscall::SyscallType::default(),
    )
    .with_root_path(shim::runtime_root(&store))
    .map_err(|e| e.to_string())?
    .as_tenant()
    .with_container_args(req.args.clone())
    .with_env(env)
    .with_cwd(req.workdir.as_ref().map(PathBuf::from))
    .with_detach(req.detach);
    if let Some((uid, gid, groups)) = user {
        builder = builder
            .with_user(Some(uid))
            .with_group(Some(gid))
            .with_additional_gids(groups);
    }
    if req.privileged {
        builder = builder.with_capabilities(ALL_CAPS.iter().map(|c| c.to_string()).collect());
    }
    let pid = builder.build().map_err(|e| e.to_string())?;
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

/// Every capability (for `exec --privileged`).
const ALL_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

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
        };
        let args = req.to_args(Path::new("/r"));
        let (root, back) = ExecRequest::parse(&args).unwrap();
        assert_eq!(root, PathBuf::from("/r"));
        assert_eq!(back, req);
        assert!(ExecRequest::parse(&["--root".into(), "/r".into(), "id".into()]).is_err());
    }
}
