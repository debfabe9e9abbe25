//! The harness the container end-to-end tests share: a state root with a busybox image
//! imported, `berth` invocations against it, and the leak check run when it is dropped.
#![allow(dead_code)]

pub mod compose;
pub mod net;
pub mod supervisor;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth_testkit::in_ci;

pub const IMAGE: &str = "test/bb:1";

pub fn require_root() -> bool {
    let root = rustix::process::geteuid().is_root();
    if !root {
        assert!(
            !in_ci(),
            "CI=true but not root: the container tests must run"
        );
        eprintln!("skipped: needs root");
    }
    root
}

/// A state root with the busybox image imported, removed (after a leak check) on drop.
pub struct Env {
    pub tmp: tempfile::TempDir,
    pub root: PathBuf,
    /// Every berth command runs in this network namespace (`nsenter --net`), when set.
    pub netns: Option<PathBuf>,
}

impl Env {
    pub fn new() -> Env {
        Env::with_netns(None)
    }

    /// An environment whose berth commands all run inside the network namespace `netns`.
    pub fn with_netns(netns: Option<PathBuf>) -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let tar = tmp.path().join("rootfs.tar");
        std::fs::write(&tar, berth_testkit::image::busybox_rootfs_tar()).unwrap();
        let env = Env { tmp, root, netns };
        env.ok(&[
            "image",
            "import",
            "-c",
            "CMD [\"sh\"]",
            "-c",
            "ENV FROM_IMAGE=1 SHARED=image",
            tar.to_str().unwrap(),
            IMAGE,
        ]);
        env
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", ns.display()))
                    .arg("--")
                    .arg(env!("CARGO_BIN_EXE_berth"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_berth")),
        };
        c.arg("--root")
            .arg(&self.root)
            .args(args)
            .current_dir(self.tmp.path())
            .env_remove("BERTH_ROOT")
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "berth {args:?} failed ({:?}):\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `container run --rm IMAGE sh -c SCRIPT` with extra flags; returns (code, stdout, stderr).
    pub fn sh(&self, flags: &[&str], script: &str) -> (i32, String, String) {
        let mut args = vec!["container", "run", "--rm"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[IMAGE, "sh", "-c", script]);
        let out = self.run(&args);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn inspect(&self, name: &str) -> serde_json::Value {
        let v: serde_json::Value =
            serde_json::from_str(&self.ok(&["container", "inspect", name])).unwrap();
        v[0].clone()
    }

    pub fn id_of(&self, name: &str) -> String {
        self.inspect(name)["Id"].as_str().unwrap().to_string()
    }

    pub fn wait_status(&self, name: &str, status: &str, max: Duration) {
        let deadline = Instant::now() + max;
        loop {
            let out = self.run(&["container", "inspect", name]);
            let st = serde_json::from_slice::<serde_json::Value>(&out.stdout)
                .ok()
                .and_then(|v| v[0]["State"]["Status"].as_str().map(String::from))
                .unwrap_or_else(|| "missing".to_string());
            if st == status {
                return;
            }
            assert!(Instant::now() < deadline, "{name}: {st}, wanted {status}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // A failed test never got to `down`: its supervisor would outlive it (and restart
        // what is removed below).
        if std::thread::panicking() {
            for pid in berth_pids(&self.root, &["__supervise"]) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        let ids: Vec<String> = std::fs::read_dir(self.root.join("containers"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.len() == 64)
                    .collect()
            })
            .unwrap_or_default();
        for id in &ids {
            let _ = self.run(&["container", "rm", "-f", id]);
        }
        unmount_run(&self.root);
        if !std::thread::panicking() {
            assert_no_leaks(&self.root, &ids);
        }
    }
}

/// Takes down the root's `run/` tmpfs (berth mounts it at the first container start and
/// leaves it, as `/run` is left): lazily, a DNS daemon may still be on its way out.
pub fn unmount_run(root: &Path) {
    let run = root.join("run");
    while nix::mount::umount2(&run, nix::mount::MntFlags::MNT_DETACH).is_ok() {}
}

/// Nothing of the root is mounted, no shim (or DNS daemon, or supervisor) of it runs, no cgroup of these containers exists.
pub fn assert_no_leaks(root: &Path, ids: &[String]) {
    let root_s = root.to_string_lossy().into_owned();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let leaked_mounts: Vec<&str> = mounts.lines().filter(|l| l.contains(&root_s)).collect();
        let shims = berth_pids(root, &["__shim", "__monitor", "__dns", "__supervise"]);
        if leaked_mounts.is_empty() && shims.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "leaked mounts {leaked_mounts:?} or shims {shims:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for id in ids {
        for cg in cgroup_dirs(id) {
            assert!(!cg.exists(), "leaked cgroup {}", cg.display());
        }
    }
}

pub fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Ok(d) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in d.flatten() {
            v.push(e.path().join("berth").join(id));
        }
    }
    v.push(PathBuf::from("/sys/fs/cgroup/berth").join(id));
    v
}

/// `pid: command line` of each of `pids`, for a failure message.
pub fn describe_pids(pids: &[i32]) -> String {
    pids.iter()
        .map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            format!("{pid}: {}", cmdline.trim_end())
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Pids of the shims, monitors and DNS daemon of `root` (by their command lines).
pub fn shim_pids(root: &Path) -> Vec<i32> {
    berth_pids(root, &["__shim", "__monitor", "__dns"])
}

/// Pids of the berth processes of `root` running one of `verbs` (by their command lines).
pub fn berth_pids(root: &Path, verbs: &[&str]) -> Vec<i32> {
    let needle = root.to_string_lossy().into_owned();
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.iter().any(|a| verbs.contains(&a.as_str())) && args.iter().any(|a| a == &needle) {
            pids.push(pid);
        }
    }
    pids
}

/// A child process killed and reaped when the test ends, failed or not.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
