//! End-to-end scenarios of the per-project supervisor (restart policies, adoption after a
//! SIGKILL, dependency-ordered recovery) as root, each in its own state root and network
//! namespace. Every test ends with `down` and checks that no supervisor of its root is left.

use std::time::Duration;

mod common;

use common::compose::*;
use common::supervisor::*;
use common::*;

/// `down`, then no supervisor of the root may be left.
fn finish(c: &Compose) {
    c.ok(&["down", "-v", "--remove-orphans", "-t", "1"]);
    let left = supervisors(&c.e.env.root);
    assert!(left.is_empty(), "supervisors left: {left:?}");
}

#[test]
fn on_failure_restarts_exactly_n_times_with_a_doubling_backoff() {
    if !require_root() {
        return;
    }
    let c = Compose::new(
        "onfail",
        r#"
services:
  flaky:
    image: IMAGE
    command: ["sh", "-c", "echo start; exit 1"]
    restart: on-failure:3
"#,
    );
    let _guard = KillSupervisorsOnPanic(c.e.env.root.clone());
    c.ok(&["up", "-d"]);
    let name = "ponfail-flaky-1";
    wait_until("three restarts, then exited", 20, || {
        restart_count(&c, name) == 3 && state(&c, name)["Status"] == "exited"
    });
    // No fourth restart comes.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(restart_count(&c, name), 3);
    assert_eq!(state(&c, name)["Status"], "exited");
    assert_eq!(state(&c, name)["ExitCode"], 1);
    // Each run logged its start: the gaps are the back-offs, 100, 200 and 400 ms (plus the
    // time a start takes).
    let logs = c.e.ok(&["container", "logs", "-t", name]);
    let starts: Vec<chrono::DateTime<chrono::FixedOffset>> = logs
        .lines()
        .map(|l| chrono::DateTime::parse_from_rfc3339(l.split(' ').next().unwrap()).unwrap())
        .collect();
    assert_eq!(starts.len(), 4, "{logs}");
    for (i, backoff) in [100i64, 200, 400].into_iter().enumerate() {
        let gap = (starts[i + 1] - starts[i]).num_milliseconds();
        assert!(
            gap >= backoff - 10 && gap <= backoff + 3000,
            "gap {i}: {gap} ms, back-off {backoff} ms\n{logs}"
        );
    }
    finish(&c);
}

#[test]
fn always_restarts_after_exit_0_and_ps_shows_the_count() {
    if !require_root() {
        return;
    }
    let c = Compose::new(
        "always",
        r#"
services:
  once:
    image: IMAGE
    command: ["sh", "-c", "echo ran; exit 0"]
    restart: always
"#,
    );
    let _guard = KillSupervisorsOnPanic(c.e.env.root.clone());
    c.ok(&["up", "-d"]);
    wait_until("two restarts", 15, || {
        restart_count(&c, "palways-once-1") >= 2
    });
    let ps = c.ps();
    assert!(ps[0]["RestartCount"].as_u64().unwrap() >= 2, "{ps:?}");
    finish(&c);
}

#[test]
fn unless_stopped_stays_stopped_after_container_stop() {
    if !require_root() {
        return;
    }
    let c = Compose::new(
        "unless",
        r#"
services:
  svc:
    image: IMAGE
    command: ["sleep", "600"]
    restart: unless-stopped
"#,
    );
    let _guard = KillSupervisorsOnPanic(c.e.env.root.clone());
    c.ok(&["up", "-d"]);
    let name = "punless-svc-1";
    c.e.env
        .wait_status(name, "running", Duration::from_secs(10));
    c.e.ok(&["container", "stop", "-t", "1", name]);
    // Longer than the first back-off and the supervisor's periodic look.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(state(&c, name)["Status"], "exited");
    assert_eq!(restart_count(&c, name), 0);
    finish(&c);
}

#[test]
fn a_new_supervisor_adopts_running_containers_and_pending_restarts_after_sigkill() {
    if !require_root() {
        return;
    }
    let c = Compose::new(
        "adopt",
        &format!(
            r#"
services:
  steady:
    image: IMAGE
    command: {STOPPABLE}
    restart: always
  flaky:
    image: IMAGE
    command: ["sh", "-c", "echo start; exit 1"]
    deploy:
      restart_policy: {{condition: on-failure, max_attempts: 2, delay: 3s}}
"#
        ),
    );
    let _guard = KillSupervisorsOnPanic(c.e.env.root.clone());
    c.ok(&["up", "-d"]);
    let (steady, flaky) = ("padopt-steady-1", "padopt-flaky-1");
    wait_until("flaky waits for its first restart", 10, || {
        state(&c, flaky)["Status"] == "restarting"
    });
    assert_eq!(restart_count(&c, flaky), 1);
    let old = kill_supervisor(&c.e.env.root, &c.name);
    // Containers outlive it.
    assert_eq!(state(&c, steady)["Status"], "running");
    // `up -d` has nothing to change and hands the project to a new supervisor.
    c.ok(&["up", "-d"]);
    assert!(supervisor_alive(&c.e.env.root, &c.name));
    assert_ne!(supervisor_pid(&c.e.env.root, &c.name), old);
    // It carries on with the pending restart: restarted once more, then given up.
    wait_until("flaky restarted twice, then exited", 20, || {
        restart_count(&c, flaky) == 2 && state(&c, flaky)["Status"] == "exited"
    });
    // And it watches the container that was running all along.
    c.e.ok(&["container", "exec", steady, "touch", "/tmp/stop"]);
    wait_until("steady restarted", 15, || {
        restart_count(&c, steady) == 1 && state(&c, steady)["Status"] == "running"
    });
    finish(&c);
}

#[test]
fn containers_found_exited_are_restarted_in_dependency_order() {
    if !require_root() {
        return;
    }
    // Without ordering, app (100 ms back-off) would be restarted long before db (2 s delay).
    let c = Compose::new(
        "order",
        &format!(
            r#"
services:
  db:
    image: IMAGE
    command: {STOPPABLE}
    deploy:
      restart_policy: {{condition: any, delay: 2s}}
  app:
    image: IMAGE
    command: {STOPPABLE}
    restart: always
    depends_on: [db]
"#
        ),
    );
    let _guard = KillSupervisorsOnPanic(c.e.env.root.clone());
    c.ok(&["up", "-d"]);
    let (db, app) = ("porder-db-1", "porder-app-1");
    for name in [db, app] {
        c.e.env
            .wait_status(name, "running", Duration::from_secs(10));
    }
    kill_supervisor(&c.e.env.root, &c.name);
    for name in [app, db] {
        c.e.ok(&["container", "exec", name, "touch", "/tmp/stop"]);
    }
    for name in [app, db] {
        c.e.env.wait_status(name, "exited", Duration::from_secs(10));
    }
    assert!(!supervisor_alive(&c.e.env.root, &c.name));
    // The next berth command notices the supervisor is gone and starts one.
    c.ok(&["ps"]);
    assert!(supervisor_alive(&c.e.env.root, &c.name));
    wait_until("both restarted", 20, || {
        [db, app]
            .iter()
            .all(|n| state(&c, n)["Status"] == "running")
    });
    assert!(
        started_at(&c, db) < started_at(&c, app),
        "db must start first: db {}, app {}",
        started_at(&c, db),
        started_at(&c, app)
    );
    assert_eq!(restart_count(&c, db), 1);
    assert_eq!(restart_count(&c, app), 1);
    let log = std::fs::read_to_string(project_dir(&c.e.env.root, &c.name).join("supervisor.log"))
        .unwrap();
    assert!(log.contains("porder-app-1: restart held"), "{log}");
    finish(&c);
}

#[test]
fn sigkill_of_the_supervisor_during_up_loses_nothing() {
    if !require_root() {
        return;
    }
    const YAML: &str = r#"
services:
  db:
    image: IMAGE
    command: STOPPABLE
    restart: always
  app:
    image: IMAGE
    environment: [GEN=one]
    command: ["sh", "-c", "sleep 1.5; touch /tmp/ok; exec sleep 600"]
    stop_grace_period: 1s
    depends_on: [db]
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ok"]
      interval: 200ms
      retries: 50
  web:
    image: IMAGE
    environment: [GEN=one]
    command: ["sleep", "600"]
    stop_grace_period: 1s
    depends_on:
      app: {condition: service_healthy}
"#;
    let yaml = YAML.replace("STOPPABLE", STOPPABLE);
    let c = Compose::new("midup", &yaml);
    let _guard = KillSupervisorsOnPanic(c.e.env.root.clone());
    c.ok(&["up", "-d"]);
    let first_app = c
        .ids()
        .into_iter()
        .find(|(n, _)| n == "pmidup-app-1")
        .unwrap()
        .1;
    // A changed app and web: `up` recreates app, then waits for it to turn healthy (1.5 s)
    // before it recreates web. The supervisor dies in between.
    c.write(&yaml.replace("GEN=one", "GEN=two"));
    let child = c.e.env.cmd(&c.args(&["up", "-d"])).spawn().unwrap();
    let mut child = KillOnDrop(child);
    wait_until("up recreates app", 20, || {
        c.ids()
            .iter()
            .any(|(n, id)| n == "pmidup-app-1" && *id != first_app)
    });
    let killed = kill_supervisor(&c.e.env.root, &c.name);
    // With no supervisor, db's exit is not acted on yet.
    c.e.ok(&["container", "exec", "pmidup-db-1", "touch", "/tmp/stop"]);
    let status = child.0.wait().unwrap();
    assert!(
        status.success(),
        "up failed after its supervisor was killed: {status}"
    );
    // up started a new supervisor, which restarts db by its policy.
    assert!(supervisor_alive(&c.e.env.root, &c.name));
    assert_ne!(supervisor_pid(&c.e.env.root, &c.name), killed);
    wait_until("db restarted", 20, || {
        restart_count(&c, "pmidup-db-1") == 1 && state(&c, "pmidup-db-1")["Status"] == "running"
    });
    let ps = c.ps();
    assert_eq!(ps.len(), 3, "{ps:?}");
    assert!(ps.iter().all(|p| p["State"] == "running"), "{ps:?}");
    finish(&c);
}

/// The executable file process `pid` runs: device and inode.
fn exe_of(pid: i32) -> (u64, u64) {
    file_id(std::path::Path::new(&format!("/proc/{pid}/exe")))
}

/// A file's device and inode.
fn file_id(path: &std::path::Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).unwrap();
    (m.dev(), m.ino())
}

#[test]
fn an_upgraded_berth_replaces_the_supervisor_and_the_dns_daemon() {
    if !require_root() {
        return;
    }
    let c = Compose::new(
        "upgr",
        "services:\n  a:\n    image: IMAGE\n    command: [\"sleep\", \"600\"]\n  \
         b:\n    image: IMAGE\n    command: [\"sleep\", \"600\"]\n",
    );
    let _guard = KillSupervisorsOnPanic(c.e.env.root.clone());
    // "The old release": a copy of this binary, so another file.
    let old = c.e.env.tmp.path().join("berth-old");
    std::fs::copy(env!("CARGO_BIN_EXE_berth"), &old).unwrap();
    let new = std::path::Path::new(env!("CARGO_BIN_EXE_berth"));
    let netns = c.e.env.netns.clone().expect("compose tests run in a netns");
    let root = c.e.env.root.to_str().unwrap().to_string();
    let mut args = vec!["--root", root.as_str()];
    args.extend(c.args(&["up", "-d", "a"]));
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .arg("--")
        .arg(&old)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dns = || {
        let pids = berth_pids(&c.e.env.root, &["__dns"]);
        assert_eq!(pids.len(), 1, "one DNS daemon: {pids:?}");
        pids[0]
    };
    let old_supervisor = supervisor_pid(&c.e.env.root, &c.name);
    assert_eq!(exe_of(old_supervisor), file_id(&old));
    assert_eq!(exe_of(dns()), file_id(&old));

    // The new release starts b: its start replaces the DNS daemon, and `up` the supervisor.
    c.ok(&["up", "-d"]);
    let supervisor = supervisor_pid(&c.e.env.root, &c.name);
    assert_ne!(supervisor, old_supervisor);
    assert_eq!(exe_of(supervisor), file_id(new));
    assert_eq!(supervisors(&c.e.env.root), vec![supervisor]);
    assert_eq!(exe_of(dns()), file_id(new));
    // The new daemon knows both containers, the one started by the old release too.
    for (from, name) in [("a", "b"), ("b", "a")] {
        let (out, _) = c.ok(&["exec", "-T", from, "nslookup", name]);
        assert!(out.contains("Address"), "{from} resolves {name}: {out}");
    }
    // An unchanged binary changes nothing.
    c.ok(&["up", "-d"]);
    assert_eq!(supervisor_pid(&c.e.env.root, &c.name), supervisor);
    finish(&c);
}
