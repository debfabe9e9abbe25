//! End-to-end tests of `berth container …` as root: real containers from a busybox image the
//! test imports. Each test has its own state root; each checks that nothing leaked (mounts,
//! cgroups, shim processes, runtime state).

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::*;

/// `run --rm -i` of a command that is done at once: the container exits as `run` attaches.
/// A connection that reached the shim just before it stopped listening was never answered,
/// and a `--rm` container's shim waits for its starter before it goes: `run` hung until that
/// wait ran out (10 s), and printed nothing, the container being removed by then.
#[test]
fn run_rm_i_of_a_quick_command_prints_its_output_at_once() {
    if !require_root() {
        return;
    }
    let env = Env::new();
    for i in 0..12 {
        let start = std::time::Instant::now();
        let out = env.run(&["container", "run", "--rm", "-i", IMAGE, "echo", "quick"]);
        let took = start.elapsed();
        assert_eq!(out.status.code(), Some(0), "round {i}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "quick\n", "round {i}");
        assert!(
            took < std::time::Duration::from_secs(5),
            "round {i} took {took:?}"
        );
    }
}

#[test]
fn exit_codes_and_output_streams() {
    if !require_root() {
        return;
    }
    let env = Env::new();
    assert_eq!(env.sh(&[], "exit 0").0, 0);
    assert_eq!(env.sh(&[], "exit 7").0, 7);
    let (code, out, err) = env.sh(&[], "echo out; echo err >&2; echo out2");
    assert_eq!(code, 0);
    assert_eq!(out, "out\nout2\n");
    assert_eq!(err, "err\n");
    // A missing executable is docker's 127 from the runtime... berth reports the start failure.
    let out = env.run(&["container", "run", "--rm", IMAGE, "/nonexistent"]);
    assert_ne!(out.status.code(), Some(0));
    // --rm removed every container.
    assert_eq!(env.ok(&["container", "ls", "-a", "-q"]), "");
    // start -a: this run's output and its exit code, each time.
    env.ok(&[
        "container",
        "create",
        "--name",
        "again",
        IMAGE,
        "sh",
        "-c",
        "echo run; exit 9",
    ]);
    for _ in 0..2 {
        let out = env.run(&["container", "start", "-a", "again"]);
        assert_eq!(out.status.code(), Some(9));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "run\n");
    }
    // Two clean starts left nothing in the shim's log: the runtime's notes about controllers
    // the host lacks are not written at every start.
    let id = env.id_of("again");
    let shim_log = env.root.join("containers").join(&id).join("shim.log");
    let logged = std::fs::read_to_string(&shim_log).unwrap_or_default();
    assert_eq!(logged, "", "{}", shim_log.display());
    env.ok(&["container", "rm", "again"]);
}

#[test]
fn a_relative_root_works_from_its_directory() {
    if !require_root() {
        return;
    }
    let env = Env::new();
    // `--root root` from the directory above it: the same root as env's.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .current_dir(env.tmp.path())
        .args(["--root", "root", "container", "run", "--rm", IMAGE])
        .args(["sh", "-c", "echo relative; cat /etc/hostname >/dev/null"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "relative\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success());
}

#[test]
fn kill_stop_and_wait_report_docker_exit_codes() {
    if !require_root() {
        return;
    }
    let env = Env::new();
    env.ok(&[
        "container",
        "run",
        "-d",
        "--name",
        "kk",
        IMAGE,
        "sleep",
        "100",
    ]);
    env.wait_status("kk", "running", Duration::from_secs(5));
    // A `wait` that starts before the shim hands over to its monitor (after 500 ms) still
    // gets the exit code; the monitor then runs under the root's path.
    let waiter = env
        .cmd(&["container", "wait", "kk"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    let monitors: Vec<i32> = shim_pids(&env.root);
    assert_eq!(monitors.len(), 1, "one shim process for one container");
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", monitors[0])).unwrap();
    assert!(
        String::from_utf8_lossy(&cmdline).contains("__monitor"),
        "the shim handed over to its monitor"
    );
    env.ok(&["container", "kill", "kk"]);
    let out = waiter.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "137");
    assert_eq!(env.ok(&["container", "wait", "kk"]).trim(), "137");
    let st = env.inspect("kk");
    assert_eq!(st["State"]["Status"], "exited");
    assert_eq!(st["State"]["ExitCode"], 137);

    // SIGTERM through the init (busybox sleep as pid 1 would ignore it): 143.
    env.ok(&[
        "container",
        "run",
        "-d",
        "--init",
        "--name",
        "tt",
        IMAGE,
        "sleep",
        "100",
    ]);
    env.wait_status("tt", "running", Duration::from_secs(5));
    env.ok(&["container", "kill", "-s", "TERM", "tt"]);
    assert_eq!(env.ok(&["container", "wait", "tt"]).trim(), "143");

    // A process that ignores TERM is killed after the grace period.
    env.ok(&[
        "container",
        "run",
        "-d",
        "--name",
        "gg",
        IMAGE,
        "sh",
        "-c",
        "trap '' TERM; while true; do sleep 1; done",
    ]);
    env.wait_status("gg", "running", Duration::from_secs(5));
    let t0 = Instant::now();
    env.ok(&["container", "stop", "-t", "2", "gg"]);
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "stop returned after {took:?}"
    );
    assert!(took < Duration::from_secs(8), "stop took {took:?}");
    assert_eq!(env.inspect("gg")["State"]["ExitCode"], 137);
    // Stopping a stopped container is fine; start brings it back.
    env.ok(&["container", "stop", "gg"]);
    env.ok(&["container", "start", "kk"]);
    env.wait_status("kk", "running", Duration::from_secs(5));
    let out = env.run(&["container", "rm", "kk"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "rm of a running container fails"
    );
    // A one-letter name is refused, as docker does.
    let out = env.run(&["container", "run", "-d", "--name", "k", IMAGE, "true"]);
    assert_eq!(out.status.code(), Some(125));
    env.ok(&["container", "rm", "-f", "kk", "tt", "gg"]);
    assert_eq!(env.ok(&["container", "ls", "-a", "-q"]), "");
}

#[test]
fn env_entrypoint_workdir_and_user() {
    if !require_root() {
        return;
    }
    let env = Env::new();
    let (_, out, _) = env.sh(
        &["-e", "A=1", "-e", "SHARED=cli"],
        "echo $A $FROM_IMAGE $SHARED $HOME",
    );
    assert_eq!(out, "1 1 cli /root\n");
    let (_, out, _) = env.sh(&["-w", "/tmp"], "pwd");
    assert_eq!(out, "/tmp\n");
    let (_, out, _) = env.sh(&["-u", "app"], "id -u; id -g; id -G; echo $HOME");
    assert_eq!(out, "1000\n1000\n1000 2000\n/home/app\n");
    let (_, out, _) = env.sh(&["-u", "1000:2000"], "id -u; id -g");
    assert_eq!(out, "1000\n2000\n");
    // --entrypoint replaces the image's and its CMD.
    let out = env.ok(&[
        "container",
        "run",
        "--rm",
        "--entrypoint",
        "echo",
        IMAGE,
        "hello",
        "there",
    ]);
    assert_eq!(out, "hello there\n");
    let out = env.ok(&[
        "container",
        "run",
        "--rm",
        "--hostname",
        "box",
        IMAGE,
        "hostname",
    ]);
    assert_eq!(out, "box\n");
}

#[test]
fn read_only_rootfs_and_hardening_probes_fail() {
    if !require_root() {
        return;
    }
    let env = Env::new();
    let (code, _, _) = env.sh(&["--read-only"], "touch /x");
    assert_ne!(code, 0, "--read-only rootfs is writable");
    assert_eq!(
        env.sh(&["--read-only"], "touch /tmp/x 2>/dev/null || true")
            .0,
        0
    );
    assert_eq!(env.sh(&[], "touch /x").0, 0);

    for probe in [
        "mount -t tmpfs t /mnt",
        "echo h > /proc/sysrq-trigger",
        "head -c 1 /proc/kcore >/dev/null",
        "hostname x",
        "nice -n -5 true",
        "insmod /bin/busybox",
        "unshare -m true",
    ] {
        let (code, _, err) = env.sh(&[], probe);
        assert_ne!(
            code, 0,
            "probe {probe:?} succeeded in a default container: {err}"
        );
    }
    let (_, out, _) = env.sh(&[], "grep CapEff /proc/self/status");
    assert_eq!(
        out.split_whitespace().nth(1),
        Some("00000000a80425fb"),
        "{out}"
    );
    let (_, out, _) = env.sh(&["--cap-drop", "ALL"], "grep CapEff /proc/self/status");
    assert_eq!(
        out.split_whitespace().nth(1),
        Some("0000000000000000"),
        "{out}"
    );
    let (_, out, _) = env.sh(&["--privileged"], "grep CapEff /proc/self/status");
    assert_ne!(
        out.split_whitespace().nth(1),
        Some("00000000a80425fb"),
        "{out}"
    );
}

/// `field` of `/proc/self/status` as the script's process sees it.
fn status_field(out: &str, field: &str) -> Option<String> {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
}

#[test]
fn the_seccomp_filter_is_loaded_and_capabilities_are_exactly_the_containers() {
    if !require_root() {
        return;
    }
    let env = Env::new();
    // The shim loads a precompiled filter itself, borrowing CAP_SYS_ADMIN for the load:
    // the filter must be in force and the capability gone from every set.
    let status = "grep -E '^(Cap|Seccomp|NoNewPrivs)' /proc/self/status";
    let check = |out: &str, eff: &str, seccomp: &str, what: &str| {
        for set in ["CapEff", "CapPrm"] {
            assert_eq!(
                status_field(out, set).as_deref(),
                Some(eff),
                "{what} {set}: {out}"
            );
        }
        assert_eq!(
            status_field(out, "CapAmb").as_deref(),
            Some("0000000000000000"),
            "{what}: {out}"
        );
        assert_eq!(
            status_field(out, "CapInh").as_deref(),
            Some("0000000000000000"),
            "{what}: {out}"
        );
        assert_eq!(
            status_field(out, "Seccomp").as_deref(),
            Some(seccomp),
            "{what}: {out}"
        );
    };
    const DEFAULT: &str = "00000000a80425fb";
    const NONE: &str = "0000000000000000";
    let (_, out, _) = env.sh(&[], status);
    check(&out, DEFAULT, "2", "default");
    assert_eq!(
        status_field(&out, "CapBnd").as_deref(),
        Some(DEFAULT),
        "{out}"
    );
    assert_eq!(
        status_field(&out, "NoNewPrivs").as_deref(),
        Some("0"),
        "{out}"
    );
    let (_, out, _) = env.sh(&["--user", "1000"], status);
    check(&out, NONE, "2", "--user 1000");
    let (_, out, _) = env.sh(&["--security-opt", "no-new-privileges"], status);
    check(&out, DEFAULT, "2", "no-new-privileges");
    assert_eq!(
        status_field(&out, "NoNewPrivs").as_deref(),
        Some("1"),
        "{out}"
    );
    let (_, out, _) = env.sh(&["--cap-add", "SYS_ADMIN"], status);
    check(&out, "00000000a82425fb", "2", "--cap-add SYS_ADMIN");
    let (_, out, _) = env.sh(&["--security-opt", "seccomp=unconfined"], status);
    check(&out, DEFAULT, "0", "seccomp=unconfined");

    // The filter is Docker's: a new user namespace needs no capability, only the filter
    // forbids it (where this kernel allows unprivileged user namespaces at all).
    let (code, _, err) = env.sh(&[], "unshare -U true");
    assert_ne!(code, 0, "unshare -U under the default profile: {err}");
    assert!(err.contains("not permitted"), "{err}");
    let userns = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .map(|s| s.trim() != "0")
        .unwrap_or(false);
    if userns {
        let (code, _, err) = env.sh(&["--security-opt", "seccomp=unconfined"], "unshare -U true");
        assert_eq!(code, 0, "unshare -U unconfined: {err}");
    }

    // Processes exec'd into the container get the same filter and the same capabilities.
    env.ok(&[
        "container",
        "run",
        "-d",
        "--name",
        "sc",
        IMAGE,
        "sleep",
        "100",
    ]);
    env.wait_status("sc", "running", Duration::from_secs(5));
    let exec = |flags: &[&str]| {
        let mut args = vec!["container", "exec"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["sc", "sh", "-c", status]);
        env.ok(&args)
    };
    check(&exec(&[]), DEFAULT, "2", "exec");
    check(&exec(&["-u", "1000"]), NONE, "2", "exec -u 1000");
    let out = exec(&["--privileged"]);
    assert_eq!(
        status_field(&out, "Seccomp").as_deref(),
        Some("2"),
        "exec --privileged: {out}"
    );
    assert_ne!(
        status_field(&out, "CapEff").as_deref(),
        Some(DEFAULT),
        "{out}"
    );
    let out = env.run(&["container", "exec", "sc", "unshare", "-U", "true"]);
    assert_ne!(
        out.status.code(),
        Some(0),
        "unshare -U in an exec'd process"
    );
    env.ok(&["container", "rm", "-f", "sc"]);
}

#[test]
fn limits_are_set_and_effective() {
    if !require_root() {
        return;
    }
    let env = Env::new();
    env.ok(&[
        "container",
        "run",
        "-d",
        "--name",
        "lim",
        "--memory",
        "64m",
        "--pids-limit",
        "40",
        "--cpus",
        "0.5",
        IMAGE,
        "sleep",
        "100",
    ]);
    env.wait_status("lim", "running", Duration::from_secs(5));
    let id = env.id_of("lim");
    let read = |rel: &[&str]| -> Option<String> {
        rel.iter()
            .find_map(|p| std::fs::read_to_string(format!("/sys/fs/cgroup/{p}")).ok())
            .map(|s| s.trim().to_string())
    };
    let mem = read(&[
        &format!("memory/berth/{id}/memory.limit_in_bytes"),
        &format!("berth/{id}/memory.max"),
    ]);
    assert_eq!(mem.as_deref(), Some("67108864"));
    let pids = read(&[
        &format!("pids/berth/{id}/pids.max"),
        &format!("berth/{id}/pids.max"),
    ]);
    assert_eq!(pids.as_deref(), Some("40"));
    let quota = read(&[
        &format!("cpu,cpuacct/berth/{id}/cpu.cfs_quota_us"),
        &format!("cpu/berth/{id}/cpu.cfs_quota_us"),
        &format!("berth/{id}/cpu.max"),
    ]);
    assert!(
        quota.as_deref() == Some("50000") || quota.as_deref() == Some("50000 100000"),
        "{quota:?}"
    );
    env.ok(&["container", "rm", "-f", "lim"]);

    // A memory hog is OOM-killed and inspect says so.
    let out = env.run(&[
        "container",
        "run",
        "--name",
        "hog",
        "--memory",
        "32m",
        "--memory-swap",
        "32m",
        IMAGE,
        "sh",
        "-c",
        "tail /dev/zero",
    ]);
    assert_eq!(out.status.code(), Some(137));
    assert_eq!(env.inspect("hog")["State"]["OOMKilled"], true);

    // A fork bomb stops at the pids limit: at most 9 children beside the shell, and the
    // shell is told it cannot fork.
    let (_, out, err) = env.sh(
        &["--pids-limit", "10"],
        "for i in $(seq 1 30); do sleep 30 & echo $i; done",
    );
    let started: u32 = out.lines().last().unwrap_or("0").parse().unwrap();
    assert!(
        (1..=9).contains(&started),
        "{started} children under pids-limit 10"
    );
    assert!(err.contains("can't fork"), "{err}");
}

#[test]
fn logs_and_survival_of_a_killed_parent() {
    if !require_root() {
        return;
    }
    let env = Env::new();
    env.ok(&[
        "container",
        "run",
        "-d",
        "--name",
        "logger",
        IMAGE,
        "sh",
        "-c",
        "echo one; echo two >&2; sleep 0.2; echo three",
    ]);
    env.ok(&["container", "wait", "logger"]);
    assert_eq!(env.ok(&["container", "logs", "logger"]), "one\nthree\n");
    let out = env.run(&["container", "logs", "logger"]);
    assert_eq!(String::from_utf8_lossy(&out.stderr), "two\n");
    assert_eq!(
        env.ok(&["container", "logs", "--tail", "1", "logger"]),
        "three\n"
    );
    let ts = env.ok(&["container", "logs", "-t", "logger"]);
    assert!(ts.starts_with("20") && ts.contains("Z one\n"), "{ts}");

    // SIGKILL the berth process that runs a container in the foreground: the container keeps
    // running and its log keeps growing; a new berth sees it running.
    let mut fg = env
        .cmd(&[
            "container",
            "run",
            "--name",
            "ticker",
            IMAGE,
            "sh",
            "-c",
            "while true; do echo tick; sleep 0.1; done",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = fg.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut fg.stderr.take().unwrap(), &mut err).unwrap();
            panic!("the foreground run ended early ({status}): {err}");
        }
        let out = env.run(&["container", "inspect", "ticker"]);
        if String::from_utf8_lossy(&out.stdout).contains("\"running\"") {
            break;
        }
        assert!(Instant::now() < deadline, "ticker never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    fg.kill().unwrap();
    fg.wait().unwrap();
    let count = || env.ok(&["container", "logs", "ticker"]).lines().count();
    let before = count();
    std::thread::sleep(Duration::from_millis(600));
    assert!(count() > before, "the log stopped growing");
    env.wait_status("ticker", "running", Duration::from_secs(1));
    let ls = env.ok(&["container", "ls"]);
    assert!(ls.contains("ticker") && ls.contains("Up "), "{ls}");
    env.ok(&["container", "stop", "-t", "1", "ticker"]);
}

#[test]
fn pause_unpause_rename_and_names() {
    if !require_root() {
        return;
    }
    let env = Env::new();
    env.ok(&[
        "container",
        "run",
        "-d",
        "--name",
        "p1",
        IMAGE,
        "sleep",
        "100",
    ]);
    env.wait_status("p1", "running", Duration::from_secs(5));
    env.ok(&["container", "pause", "p1"]);
    assert_eq!(env.inspect("p1")["State"]["Status"], "paused");
    env.ok(&["container", "unpause", "p1"]);
    assert_eq!(env.inspect("p1")["State"]["Status"], "running");
    let out = env.run(&["container", "run", "-d", "--name", "p1", IMAGE, "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is already in use"));
    env.ok(&["container", "rename", "p1", "p2"]);
    env.ok(&["container", "rm", "-f", "p2"]);
}

#[test]
fn volumes_copy_up_persist_and_bind_mounts() {
    if !require_root() {
        return;
    }
    let env = Env::new();
    // A new named volume at /data is filled from the image (owner and content kept).
    let (code, out, err) = env.sh(
        &["-v", "appdata:/data"],
        "cat /data/seed.txt; stat -c '%u:%g %a' /data; echo kept > /data/new.txt",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "seeded by the image\n1000:1000 750\n");
    // It outlives the container; it is not filled again.
    let (_, out, _) = env.sh(
        &["-v", "appdata:/data"],
        "rm /data/seed.txt; cat /data/new.txt",
    );
    assert_eq!(out, "kept\n");
    let (_, out, _) = env.sh(&["-v", "appdata:/data"], "ls /data");
    assert_eq!(out, "new.txt\n");
    let ls = env.ok(&["volume", "ls", "-q"]);
    assert_eq!(
        ls, "appdata\n",
        "the anonymous volumes of --rm containers are gone"
    );
    // In use: refused; read-only mounts are read-only.
    env.ok(&[
        "container",
        "create",
        "--name",
        "holder",
        "-v",
        "appdata:/data:ro",
        IMAGE,
    ]);
    let out = env.run(&["volume", "rm", "appdata"]);
    assert_ne!(out.status.code(), Some(0));
    let out = env.run(&["container", "start", "holder"]);
    assert!(out.status.success());
    env.ok(&["container", "wait", "holder"]);
    env.ok(&["container", "rm", "holder"]);
    env.ok(&["volume", "rm", "appdata"]);

    // Bind mounts, in both directions; a missing host dir is created by the short syntax.
    let host = env.tmp.path().join("host");
    let spec = format!("{}:/mnt/h", host.display());
    let (code, _, err) = env.sh(&["-v", &spec], "echo from-container > /mnt/h/f");
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(host.join("f")).unwrap(),
        "from-container\n"
    );
    let ro = format!("{}:/mnt/h:ro", host.display());
    assert_ne!(env.sh(&["-v", &ro], "echo x > /mnt/h/g").0, 0);
    // tmpfs with a size.
    let (_, out, _) = env.sh(&["--tmpfs", "/scratch:size=1m"], "df -k /scratch | tail -1");
    assert!(out.split_whitespace().nth(1) == Some("1024"), "{out}");
    // An anonymous volume of a kept container goes with rm -v.
    env.ok(&[
        "container",
        "run",
        "--name",
        "anon",
        "-v",
        "/cache",
        IMAGE,
        "true",
    ]);
    assert_eq!(env.ok(&["volume", "ls", "-q"]).lines().count(), 1);
    env.ok(&["container", "rm", "-v", "anon"]);
    assert_eq!(env.ok(&["volume", "ls", "-q"]), "");
}

#[test]
fn exec_runs_in_the_container_with_its_exit_code() {
    if !require_root() {
        return;
    }
    let env = Env::new();
    env.ok(&[
        "container",
        "run",
        "-d",
        "--name",
        "ex",
        "-e",
        "X=1",
        IMAGE,
        "sleep",
        "100",
    ]);
    env.wait_status("ex", "running", Duration::from_secs(5));
    let out = env.run(&["container", "exec", "ex", "sh", "-c", "echo $X $Y; exit 5"]);
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n");
    let out = env.ok(&[
        "container",
        "exec",
        "-e",
        "Y=2",
        "-w",
        "/tmp",
        "-u",
        "app",
        "ex",
        "sh",
        "-c",
        "echo $X $Y $(pwd) $(id -u)",
    ]);
    assert_eq!(out, "1 2 /tmp 1000\n");
    // The exec'd process is in the container's pid namespace: it sees the sleep as pid 1.
    let out = env.ok(&["container", "exec", "ex", "cat", "/proc/1/cmdline"]);
    assert_eq!(out, "sleep\u{0}100\u{0}");
    let out = env.run(&["container", "exec", "ex", "/nonexistent"]);
    assert_ne!(out.status.code(), Some(0));
    env.ok(&["container", "stop", "-t", "0", "ex"]);
    let out = env.run(&["container", "exec", "ex", "true"]);
    assert_ne!(out.status.code(), Some(0), "exec in a stopped container");
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not running"));
}

#[test]
fn run_interactive_and_with_a_terminal() {
    if !require_root() {
        return;
    }
    let env = Env::new();
    let run_with_input = |args: &[&str], input: &[u8]| -> Output {
        use std::io::Write;
        let mut child = env
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    };
    // -i: our stdin is the container's; its end closes the container's stdin.
    let out = run_with_input(
        &[
            "container",
            "run",
            "--rm",
            "-i",
            IMAGE,
            "sh",
            "-c",
            "cat; echo done",
        ],
        b"hello\nworld\n",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\nworld\ndone\n");
    // Without -i the container's stdin is empty.
    let out = run_with_input(&["container", "run", "--rm", IMAGE, "cat"], b"ignored\n");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    // -t: a terminal; the exit code comes back.
    let out = run_with_input(
        &["container", "run", "--rm", "-i", "-t", IMAGE, "sh"],
        b"tty; exit 4\n",
    );
    assert_eq!(out.status.code(), Some(4));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("/dev/pts/0"), "{text}");
}

#[test]
fn log_rotation_devices_and_sysctls() {
    if !require_root() {
        return;
    }
    let env = Env::new();
    // 3 KiB of lines with max-size 1k and max-file 2: at most two files, the newest lines kept.
    env.ok(&[
        "container",
        "run",
        "--name",
        "rot",
        "--log-opt",
        "max-size=1k",
        "--log-opt",
        "max-file=2",
        IMAGE,
        "sh",
        "-c",
        "for i in $(seq 1 150); do echo line-$i; done",
    ]);
    let id = env.id_of("rot");
    let log_dir = env.root.join("containers").join(&id).join("log");
    let mut files: Vec<String> = std::fs::read_dir(&log_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["container.log", "container.log.1"]);
    for f in &files {
        let len = std::fs::metadata(log_dir.join(f)).unwrap().len();
        assert!(len <= 1024, "{f} is {len} bytes");
    }
    let logs = env.ok(&["container", "logs", "rot"]);
    assert!(logs.ends_with("line-150\n"), "{logs}");
    assert!(
        !logs.contains("line-1\n"),
        "the oldest lines were rotated away"
    );
    // --log-driver none: nothing stored, and logs says so.
    env.ok(&[
        "container",
        "run",
        "--name",
        "quiet",
        "--log-driver",
        "none",
        IMAGE,
        "echo",
        "x",
    ]);
    let out = env.run(&["container", "logs", "quiet"]);
    assert_ne!(out.status.code(), Some(0));
    // --device: the node exists with the given permissions in the device cgroup.
    let (code, out, err) = env.sh(
        &["--device", "/dev/null:/dev/extra-null"],
        "echo hi > /dev/extra-null && ls -l /dev/extra-null",
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with('c'), "{out}");
    // Namespaced sysctls are set; host-wide ones are refused before anything starts.
    let (_, out, _) = env.sh(
        &["--sysctl", "net.ipv4.ip_unprivileged_port_start=80"],
        "cat /proc/sys/net/ipv4/ip_unprivileged_port_start",
    );
    assert_eq!(out, "80\n");
    let out = env.run(&[
        "container",
        "run",
        "--rm",
        "--sysctl",
        "vm.swappiness=1",
        IMAGE,
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125));
    env.ok(&["container", "rm", "rot", "quiet"]);
}

#[test]
fn images_in_use_by_containers_are_kept() {
    if !require_root() {
        return;
    }
    let env = Env::new();
    env.ok(&[
        "container",
        "create",
        "--name",
        "user1",
        IMAGE,
        "echo",
        "still here",
    ]);
    let out = env.run(&["image", "rm", IMAGE]);
    assert_ne!(
        out.status.code(),
        Some(0),
        "rm of an image a container uses"
    );
    // Forced: the name goes, the image and its layers stay for the container.
    env.ok(&["image", "rm", "--force", IMAGE]);
    env.ok(&["image", "prune", "--all", "--force"]);
    env.ok(&["container", "start", "user1"]);
    assert_eq!(env.ok(&["container", "wait", "user1"]).trim(), "0");
    assert_eq!(env.ok(&["container", "logs", "user1"]), "still here\n");
    env.ok(&["container", "rm", "user1"]);
    // Without the container, prune takes it.
    let out = env.ok(&["image", "prune", "--all", "--force"]);
    assert!(out.contains("deleted: sha256:"), "{out}");
}

#[test]
fn compose_images_lists_the_projects_containers() {
    if !require_root() {
        return;
    }
    let env = Env::new();
    let dir = env.tmp.path().join("proj");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("compose.yaml"),
        format!(
            "name: imgproj\nservices:\n  web:\n    image: {IMAGE}\n  db:\n    image: {IMAGE}\n"
        ),
    )
    .unwrap();
    for (name, project, service) in [
        ("imgproj-web-1", "imgproj", "web"),
        ("imgproj-db-1", "imgproj", "db"),
        ("other-web-1", "other", "web"),
    ] {
        env.ok(&[
            "container",
            "create",
            "--name",
            name,
            "--label",
            &format!("com.docker.compose.project={project}"),
            "--label",
            &format!("com.docker.compose.service={service}"),
            IMAGE,
        ]);
    }
    let dir_s = dir.to_str().unwrap();
    let out = env.ok(&["--project-directory", dir_s, "images"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with("CONTAINER") && lines[0].contains("IMAGE ID"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("imgproj-db-1") && lines[1].contains("test/bb"),
        "{out}"
    );
    assert!(
        lines[2].starts_with("imgproj-web-1") && lines[2].contains(" 1 "),
        "{out}"
    );
    let out = env.ok(&[
        "--project-directory",
        dir_s,
        "images",
        "web",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["ContainerName"], "imgproj-web-1");
    let out = env.ok(&["--project-directory", dir_s, "images", "-q"]);
    assert_eq!(out.lines().count(), 1, "one image id: {out}");
    // ls --filter: one key's values are alternatives, different keys all apply.
    let count = |args: &[&str]| {
        let mut v = vec!["container", "ls", "-a", "-q"];
        v.extend_from_slice(args);
        env.ok(&v).lines().count()
    };
    assert_eq!(
        count(&["-f", "label=com.docker.compose.project=imgproj"]),
        2
    );
    assert_eq!(count(&["-f", "label=com.docker.compose.service=web"]), 2);
    assert_eq!(
        count(&[
            "-f",
            "label=com.docker.compose.service=web",
            "-f",
            "name=imgproj"
        ]),
        1
    );
    assert_eq!(count(&["-f", "name=imgproj-db", "-f", "name=other"]), 2);
    assert_eq!(count(&["-f", "status=created"]), 3);
    assert_eq!(count(&["-f", "status=running"]), 0);
    assert_eq!(count(&["-f", "ancestor=test/bb:1"]), 3);
    // Without -a a status filter still sees stopped containers, as in docker.
    assert_eq!(
        env.ok(&["container", "ls", "-q", "-f", "status=created"])
            .lines()
            .count(),
        3
    );
    assert_ne!(
        env.run(&["container", "ls", "-f", "bogus=1"]).status.code(),
        Some(0)
    );
}

#[test]
fn a_killed_shim_leaves_a_removable_container() {
    if !require_root() {
        return;
    }
    let env = Env::new();
    env.ok(&[
        "container",
        "run",
        "-d",
        "--name",
        "orphan",
        IMAGE,
        "sleep",
        "100",
    ]);
    env.wait_status("orphan", "running", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(700));
    let shims = shim_pids(&env.root);
    assert_eq!(shims.len(), 1);
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(shims[0]).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    // Nobody records the exit any more: reported exited with 255 and an error.
    env.wait_status("orphan", "exited", Duration::from_secs(5));
    let st = env.inspect("orphan");
    assert_eq!(st["State"]["ExitCode"], 255);
    assert!(st["State"]["Error"].as_str().unwrap().contains("shim"));
    // rm takes the container's processes, mount and cgroup down (Env's drop checks).
    let id = env.id_of("orphan");
    env.ok(&["container", "rm", "-f", "orphan"]);
    for cg in cgroup_dirs(&id) {
        assert!(!cg.exists(), "cgroup {} left", cg.display());
    }
}

#[test]
fn network_mode_container_shares_the_namespace() {
    if !require_root() {
        return;
    }
    let env = Env::new();
    env.ok(&[
        "container",
        "run",
        "-d",
        "--name",
        "netowner",
        IMAGE,
        "sh",
        "-c",
        "nc -l -p 7777 > /tmp/got; sleep 100",
    ]);
    env.wait_status("netowner", "running", Duration::from_secs(5));
    let owner_ns = env.ok(&[
        "container",
        "exec",
        "netowner",
        "readlink",
        "/proc/self/ns/net",
    ]);
    let (code, joined_ns, err) = env.sh(
        &["--network", "container:netowner"],
        "readlink /proc/self/ns/net",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(joined_ns, owner_ns, "same network namespace");
    // Loopback traffic inside that shared namespace only.
    let (code, _, err) = env.sh(
        &["--network", "container:netowner"],
        "echo over-lo > /tmp/in && nc -w 2 127.0.0.1 7777 < /tmp/in",
    );
    assert_eq!(code, 0, "{err}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = env.ok(&["container", "exec", "netowner", "cat", "/tmp/got"]);
        if got == "over-lo\n" {
            break;
        }
        assert!(Instant::now() < deadline, "{got:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A default container's own namespace has a working loopback (`lo` is brought up).
    let (code, out, err) = env.sh(
        &[],
        "nc -l -p 1234 > /tmp/o & sleep 0.3; echo x > /tmp/i; nc -w 2 127.0.0.1 1234 < /tmp/i; wait; cat /tmp/o",
    );
    assert_eq!((code, out.as_str()), (0, "x\n"), "{err}");
    // A private namespace is a different one; joining a stopped container fails cleanly.
    let (_, own_ns, _) = env.sh(&[], "readlink /proc/self/ns/net");
    assert_ne!(own_ns, owner_ns);
    env.ok(&["container", "stop", "-t", "0", "netowner"]);
    let out = env.run(&[
        "container",
        "run",
        "--rm",
        "--network",
        "container:netowner",
        IMAGE,
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not running"));
    env.ok(&["container", "rm", "netowner"]);
}
