//! A container's cgroups after it exited: the OOM check, removal, killing leftovers.
//!
//! Everything goes through descriptors of `/sys/fs/cgroup` and of each hierarchy mounted in
//! it, opened once ([`CgroupFs::open`]), with `openat`/`unlinkat` relative to them. **Why:**
//! a path walk through `/sys` revalidates the sysfs dentry `fs` under sysfs's kernfs lock,
//! and when many containers exit at once the kernel holds that lock (for writing) over and
//! over while it tears down their namespaces' network devices. With absolute paths, each of
//! the ~40 lookups a monitor makes to check and remove a container's cgroups queued behind
//! that teardown: `perf` counted more blocked lookups there than anything else in a `down`
//! of 50, where removing the cgroups took 110 ms per container. A monitor opens its
//! `CgroupFs` while the container starts, when no teardown is under way.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, openat, unlinkat};

/// Where cgroup hierarchies may be mounted: `/sys/fs/cgroup` itself (v2) and the
/// directories in it (v1 controllers; under v2 these are cgroups, where our paths are absent).
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Descriptors of the cgroup hierarchies: `/sys/fs/cgroup` and each directory in it.
#[derive(Debug)]
pub struct CgroupFs {
    /// `(name, directory)`: `""` for `/sys/fs/cgroup` itself, the directory's name otherwise.
    bases: Vec<(String, OwnedFd)>,
}

impl CgroupFs {
    /// Opens `/sys/fs/cgroup` and the directories in it.
    pub fn open() -> io::Result<CgroupFs> {
        let root = rustix::fs::open(
            CGROUP_ROOT,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut names = Vec::new();
        for entry in Dir::read_from(&root)? {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." || entry.file_type() != FileType::Directory {
                continue;
            }
            names.push(OsString::from_vec(name.to_vec()));
        }
        let mut bases = Vec::with_capacity(names.len() + 1);
        for name in names {
            if let Ok(fd) = open_dir(&root, &name) {
                bases.push((name.to_string_lossy().into_owned(), fd));
            }
        }
        bases.insert(0, (String::new(), root));
        Ok(CgroupFs { bases })
    }

    /// The hierarchy mounted at `/sys/fs/cgroup/<name>` (`""`: v2's root).
    fn base(&self, name: &str) -> Option<&OwnedFd> {
        self.bases.iter().find(|(n, _)| n == name).map(|(_, fd)| fd)
    }

    /// Whether the kernel OOM-killed a process of the cgroup (v2 `memory.events`, v1
    /// `memory.oom_control`).
    pub fn oom_killed(&self, cgroups_path: &str) -> bool {
        let rel = cgroups_path.trim_matches('/');
        for (base, file) in [("", "memory.events"), ("memory", "memory.oom_control")] {
            let Some(fd) = self.base(base) else { continue };
            let Ok(text) = read_at(fd, &format!("{rel}/{file}")) else {
                continue;
            };
            for line in text.lines() {
                let mut parts = line.split_whitespace();
                if parts.next() == Some("oom_kill")
                    && let Some(n) = parts.next().and_then(|n| n.parse::<u64>().ok())
                {
                    return n > 0;
                }
            }
        }
        false
    }

    /// Removes the cgroup of an exited container in every hierarchy, with any cgroups made
    /// below it, then its empty parents ([`CgroupFs::remove_parents`]). A cgroup whose last
    /// processes are still being torn down refuses `rmdir` with `EBUSY` for a moment: that is
    /// retried for up to a second in all (a process that outlives the init, possible without a
    /// pid namespace of its own, keeps its cgroup, as it did with libcontainer's `delete`).
    pub fn remove(&self, cgroups_path: &str) {
        let rel = cgroups_path.trim_matches('/');
        let deadline = Instant::now() + Duration::from_secs(1);
        for (_, base) in &self.bases {
            remove_tree(base, rel, deadline);
        }
        self.remove_parents(cgroups_path);
    }

    /// Removes the container's cgroup (if the runtime left it) and then its parents, in every
    /// hierarchy, as long as they are empty (rmdir fails on a non-empty cgroup). The top-level `berth` cgroup stays: removing it
    /// could race with a container being created beside.
    pub fn remove_parents(&self, cgroups_path: &str) {
        let rel = cgroups_path.trim_matches('/');
        for (_, base) in &self.bases {
            let mut path = std::path::PathBuf::from(rel);
            while path.components().count() > 1 {
                // Absent, or not empty: either way there is nothing to do.
                let _ = unlinkat(base, &path, AtFlags::REMOVEDIR);
                path.pop();
            }
        }
    }

    /// SIGKILLs every process of the cgroup (each hierarchy's `cgroup.procs`) until it is
    /// empty or `max` has passed. For the processes of a container whose shim was killed:
    /// nobody else will stop them.
    pub fn kill(&self, cgroups_path: &str, max: Duration) {
        use nix::sys::signal::{Signal, kill};
        let procs = format!("{}/cgroup.procs", cgroups_path.trim_matches('/'));
        let deadline = Instant::now() + max;
        loop {
            let mut any = false;
            for (_, base) in &self.bases {
                let Ok(text) = read_at(base, &procs) else {
                    continue;
                };
                for pid in text.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    any = true;
                    let _ = kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
            if !any || Instant::now() >= deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn open_dir<P: rustix::path::Arg>(dir: impl AsFd, path: P) -> io::Result<OwnedFd> {
    Ok(openat(
        dir,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

fn read_at(dir: impl AsFd, path: &str) -> io::Result<String> {
    let fd = openat(dir, path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
    let mut text = String::new();
    File::from(fd).read_to_string(&mut text)?;
    Ok(text)
}

/// Removes cgroup `rel` under `base` and the cgroups below it, deepest first.
fn remove_tree(base: &OwnedFd, rel: &str, deadline: Instant) {
    let Ok(dir) = open_dir(base, rel) else {
        return; // not in this hierarchy
    };
    remove_children(&dir, deadline);
    remove_retrying(base, rel, deadline);
}

fn remove_children(dir: &OwnedFd, deadline: Instant) {
    let Ok(entries) = Dir::read_from(dir) else {
        return;
    };
    let children: Vec<OsString> = entries
        .flatten()
        .filter(|e| e.file_type() == FileType::Directory)
        .map(|e| OsString::from_vec(e.file_name().to_bytes().to_vec()))
        .filter(|n| n != "." && n != "..")
        .collect();
    for name in children {
        if let Ok(child) = open_dir(dir, &name) {
            remove_children(&child, deadline);
        }
        remove_retrying(dir, &name, deadline);
    }
}

fn remove_retrying<P: rustix::path::Arg + Copy>(dir: impl AsFd, path: P, deadline: Instant) {
    let mut pause = Duration::from_millis(5);
    loop {
        match unlinkat(&dir, path, AtFlags::REMOVEDIR) {
            Err(rustix::io::Errno::BUSY) if Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Ok(()) | Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hierarchies_of_this_machine_are_found() {
        let Ok(fs) = CgroupFs::open() else {
            return; // no cgroup filesystem here: nothing to look at
        };
        assert_eq!(fs.bases[0].0, "", "/sys/fs/cgroup itself comes first");
        for (name, _) in &fs.bases[1..] {
            assert!(
                std::path::Path::new(CGROUP_ROOT).join(name).is_dir(),
                "{name}"
            );
        }
    }

    #[test]
    fn paths_that_are_nowhere_are_left_alone() {
        let Ok(fs) = CgroupFs::open() else { return };
        let path = "/berth-test-absent/x/0123";
        assert!(!fs.oom_killed(path));
        fs.remove(path);
        fs.kill(path, Duration::ZERO);
    }
}
