//! End-to-end tests of `berth container cp / export / top / stats` as root: real containers
//! from a busybox image the test imports. Each test has its own state root; each checks that
//! nothing leaked (mounts of the root, cgroups, shim processes).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

mod common;

use common::*;

impl Env {
    /// `container run -d --name NAME [flags] IMAGE sh -c SCRIPT`, waited until `/ready`
    /// exists in it (the script's last step before sleeping).
    fn start(&self, name: &str, flags: &[&str], script: &str) {
        let mut args = vec!["container", "run", "-d", "--name", name];
        args.extend_from_slice(flags);
        let script = format!("{script}\ntouch /ready\nexec sleep 1000");
        args.extend_from_slice(&[IMAGE, "sh", "-c", &script]);
        self.ok(&args);
        let deadline = Instant::now() + Duration::from_secs(10);
        let ready = format!("{name}:/ready");
        while !self.run(&["container", "cp", &ready, "-"]).status.success() {
            assert!(Instant::now() < deadline, "{name} never got ready");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn upper(&self, name: &str) -> PathBuf {
        self.root
            .join("containers")
            .join(self.id_of(name))
            .join("upper")
    }

    /// Whether the container's rootfs is a mount point on the host (this process's table).
    fn merged_mounted(&self, name: &str) -> bool {
        self.merged_mounted_in(name, "/proc/self/mountinfo")
    }

    /// Whether the container's rootfs is a mount point in its shim's mount namespace.
    fn merged_mounted_in_shim(&self, name: &str) -> bool {
        let state = self
            .root
            .join("containers")
            .join(self.id_of(name))
            .join("state.json");
        let state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(state).unwrap()).unwrap();
        let pid = state["shim_pid"]
            .as_i64()
            .expect("a running container's shim");
        self.merged_mounted_in(name, &format!("/proc/{pid}/mountinfo"))
    }

    fn merged_mounted_in(&self, name: &str, mountinfo: &str) -> bool {
        let merged = self
            .root
            .join("containers")
            .join(self.id_of(name))
            .join("merged");
        let mounts = std::fs::read_to_string(mountinfo).unwrap();
        mounts
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(merged.to_str().unwrap()))
    }
}

/// (type flag, name, link name) of each entry of a plain tar (GNU long names resolved).
fn tar_entries(data: &[u8]) -> Vec<(u8, String, String)> {
    let field = |b: &[u8]| {
        let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
        String::from_utf8_lossy(&b[..end]).into_owned()
    };
    let mut out = Vec::new();
    let mut off = 0;
    let mut long_name: Option<String> = None;
    while off + 512 <= data.len() {
        let h = &data[off..off + 512];
        if h.iter().all(|b| *b == 0) {
            break;
        }
        let size = usize::from_str_radix(field(&h[124..136]).trim(), 8).unwrap();
        let body = &data[off + 512..off + 512 + size];
        let kind = h[156];
        if kind == b'L' {
            long_name = Some(field(body));
        } else {
            let name = long_name.take().unwrap_or_else(|| field(&h[0..100]));
            out.push((kind, name, field(&h[157..257])));
        }
        off += 512 + size.div_ceil(512) * 512;
    }
    out
}

fn tar_file<'a>(data: &'a [u8], wanted: &str) -> &'a [u8] {
    let mut off = 0;
    while off + 512 <= data.len() {
        let h = &data[off..off + 512];
        let end = h[..100].iter().position(|c| *c == 0).unwrap_or(100);
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&h[124..136])
                .trim_matches(char::from(0))
                .trim(),
            8,
        )
        .unwrap_or(0);
        if &h[..end] == wanted.as_bytes() {
            return &data[off + 512..off + 512 + size];
        }
        off += 512 + size.div_ceil(512) * 512;
    }
    panic!("{wanted} not in the archive");
}

#[test]
fn cp_in_and_out_of_running_and_stopped_containers_stays_in_the_rootfs() {
    if !require_root() {
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let env = Env::new();
    let host = env.tmp.path().join("host");
    std::fs::create_dir(&host).unwrap();
    env.start(
        "c1",
        &[],
        "ln -s /etc/shadow /x\nln -s / /link\nmkdir -p /data/sub\necho hi > /data/sub/f",
    );

    // A symlink to a host-looking path comes out as the link, never the host file.
    let out = env.run(&["container", "cp", "c1:/x", "-"]);
    assert!(out.status.success());
    assert_eq!(
        tar_entries(&out.stdout),
        vec![(b'2', "x".to_string(), "/etc/shadow".to_string())]
    );
    env.ok(&["container", "cp", "c1:/x", host.join("x").to_str().unwrap()]);
    assert_eq!(
        std::fs::read_link(host.join("x")).unwrap(),
        Path::new("/etc/shadow")
    );
    // -L follows it, confined: the container's /etc/shadow does not exist.
    let out = env.run(&["container", "cp", "-L", "c1:/x", "-"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Could not find the file"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Through a symlinked dir pointing to `/`: lands in the rootfs, not on the host.
    let planted = format!("berth-planted-{}", std::process::id());
    let src = host.join("src.txt");
    std::fs::write(&src, b"from the host").unwrap();
    std::os::unix::fs::chown(&src, Some(1234), Some(4321)).unwrap();
    let dest = format!("c1:/link/tmp/{planted}");
    env.ok(&["container", "cp", src.to_str().unwrap(), &dest]);
    assert!(!Path::new("/tmp").join(&planted).exists());
    let copied = env.upper("c1").join("tmp").join(&planted);
    assert_eq!(std::fs::read(&copied).unwrap(), b"from the host");
    // Owned by root without -a, keeps its owner with -a.
    let m = std::fs::metadata(&copied).unwrap();
    assert_eq!((m.uid(), m.gid()), (0, 0));
    env.ok(&["container", "cp", "-a", src.to_str().unwrap(), "c1:/data/"]);
    let m = std::fs::metadata(env.upper("c1").join("data/src.txt")).unwrap();
    assert_eq!((m.uid(), m.gid()), (1234, 4321));

    // Directories: into an existing dir under their name; `/.` copies the content; a
    // missing destination becomes the copy.
    env.ok(&["container", "cp", "c1:/data", host.to_str().unwrap()]);
    assert_eq!(std::fs::read(host.join("data/sub/f")).unwrap(), b"hi\n");
    env.ok(&[
        "container",
        "cp",
        "c1:/data/sub/.",
        host.join("new").to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(host.join("new/f")).unwrap(), b"hi\n");
    let out = env.run(&["container", "cp", "c1:/data", src.to_str().unwrap()]);
    assert!(!out.status.success(), "a directory onto a file");
    let out = env.run(&["container", "cp", "c1:/nope", host.to_str().unwrap()]);
    assert!(!out.status.success());

    // A tar stream in: extracted into the directory.
    let archive = env.run(&["container", "cp", "c1:/data/sub", "-"]).stdout;
    let mut child = env
        .cmd(&["container", "cp", "-", "c1:/tmp"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&archive).unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    assert_eq!(
        std::fs::read(env.upper("c1").join("tmp/sub/f")).unwrap(),
        b"hi\n"
    );

    // Stopped: the rootfs is mounted for the copy and unmounted after.
    env.ok(&["container", "kill", "c1"]);
    env.wait_status("c1", "exited", Duration::from_secs(10));
    assert!(!env.merged_mounted("c1"));
    let out = env.run(&["container", "cp", "c1:/data/sub/f", "-"]);
    assert!(out.status.success());
    assert_eq!(tar_file(&out.stdout, "f"), b"hi\n");
    env.ok(&[
        "container",
        "cp",
        src.to_str().unwrap(),
        "c1:/link/stopped.txt",
    ]);
    assert_eq!(
        std::fs::read(env.upper("c1").join("stopped.txt")).unwrap(),
        b"from the host"
    );
    assert!(!Path::new("/stopped.txt").exists());
    assert!(!env.merged_mounted("c1"));
    // The copy survives a restart.
    env.ok(&["container", "start", "c1"]);
    env.wait_status("c1", "running", Duration::from_secs(5));
    let out = env.run(&["container", "cp", "c1:/stopped.txt", "-"]);
    assert_eq!(tar_file(&out.stdout, "stopped.txt"), b"from the host");
    // A running container's rootfs is mounted in its shim's namespace only, and stays
    // mounted there after a copy.
    assert!(env.merged_mounted_in_shim("c1"));
    assert!(!env.merged_mounted("c1"));
}

#[test]
fn export_has_the_containers_files() {
    if !require_root() {
        return;
    }
    let env = Env::new();
    env.start("ex", &[], "echo exported > /made-here");
    let file = env.tmp.path().join("ex.tar");
    env.ok(&["container", "export", "-o", file.to_str().unwrap(), "ex"]);
    let data = std::fs::read(&file).unwrap();
    let entries = tar_entries(&data);
    let names: Vec<&str> = entries.iter().map(|e| e.1.as_str()).collect();
    assert!(names.contains(&"made-here"), "{names:?}");
    assert!(
        names.contains(&"bin/busybox") || names.contains(&"bin/sh"),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .all(|n| !n.starts_with('/') && !n.starts_with("./"))
    );
    // /proc is an empty directory in the rootfs: no process shows through.
    assert!(names.iter().all(|n| !n.starts_with("proc/")), "{names:?}");
    assert_eq!(tar_file(&data, "made-here"), b"exported\n");
    // Stopped, to stdout.
    env.ok(&["container", "kill", "ex"]);
    env.wait_status("ex", "exited", Duration::from_secs(10));
    let out = env.run(&["container", "export", "ex"]);
    assert!(out.status.success());
    assert_eq!(tar_file(&out.stdout, "made-here"), b"exported\n");
    assert!(!env.merged_mounted("ex"));
}

#[test]
fn top_lists_the_containers_processes() {
    if !require_root() {
        return;
    }
    let env = Env::new();
    env.start("tp", &[], "true");
    let out = env.ok(&["container", "top", "tp"]);
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 1, "{out}");
    let f: Vec<&str> = rows[0].split_whitespace().collect();
    assert_eq!(f[0], "root");
    let pid = env.inspect("tp")["State"]["Pid"].as_i64().unwrap();
    assert_eq!(f[1], pid.to_string());
    assert_eq!(f[5], "?");
    assert_eq!(f[7..].join(" "), "sleep 1000");
    env.ok(&["container", "kill", "tp"]);
    env.wait_status("tp", "exited", Duration::from_secs(10));
    assert!(!env.run(&["container", "top", "tp"]).status.success());
}

#[test]
fn stats_no_stream_shows_the_memory_limit() {
    if !require_root() {
        return;
    }
    let env = Env::new();
    env.start("st", &["-m", "64m"], "true");
    let out = env.ok(&["container", "stats", "--no-stream", "st"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("CONTAINER ID"), "{out}");
    assert!(lines[1].contains(" / 64MiB"), "{out}");
    assert!(lines[1].contains("0B / 0B"), "{out}");
    let json = env.ok(&[
        "container",
        "stats",
        "--no-stream",
        "--format",
        "json",
        "st",
    ]);
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["Name"], "st");
    assert!(v["MemUsage"].as_str().unwrap().ends_with(" / 64MiB"), "{v}");
    assert_eq!(v["NetIO"], "0B / 0B");
    assert_eq!(v["PIDs"], "1");
    // Default: running ones only; -a adds the stopped one with zeros.
    env.ok(&["container", "create", "--name", "idle", IMAGE, "true"]);
    let out = env.ok(&["container", "stats", "--no-stream"]);
    assert!(out.contains(" st ") && !out.contains("idle"), "{out}");
    let out = env.ok(&[
        "container",
        "stats",
        "--no-stream",
        "-a",
        "--format",
        "json",
    ]);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.contains("\"Name\":\"idle\""), "{out}");
}
