//! End-to-end health checks as root: `depends_on: service_healthy` gates the start, an
//! unhealthy dependency fails `up`, `up --wait`, and `container run --health-*` with
//! `inspect`'s `State.Health`. The image's `HEALTHCHECK` as the default is covered by the unit
//! tests of the conversion only: `image import -c` does not take `HEALTHCHECK`.

mod common;

use common::compose::*;
use common::*;

/// The first probe result that succeeded, from `inspect`'s `State.Health.Log`.
fn first_success_end(inspect: &serde_json::Value) -> String {
    inspect["State"]["Health"]["Log"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ExitCode"] == 0)
        .unwrap_or_else(|| panic!("no successful probe: {inspect:#}"))["End"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_healthy_dependency_is_waited_for() {
    if !require_root() {
        return;
    }
    let c = Compose::new(
        "hok",
        r#"
services:
  db:
    image: IMAGE
    command: ["sh", "-c", "sleep 1; touch /tmp/ready; exec sleep 600"]
    healthcheck:
      test: ["CMD-SHELL", "test -f /tmp/ready"]
      interval: 200ms
      retries: 50
  web:
    image: IMAGE
    command: ["sleep", "600"]
    depends_on:
      db:
        condition: service_healthy
"#,
    );
    let (_, err) = c.ok(&["up", "-d"]);
    assert!(err.contains("Container phok-db-1  Healthy"), "{err}");
    let db = c.e.env.inspect("phok-db-1");
    assert_eq!(db["State"]["Health"]["Status"], "healthy", "{db:#}");
    assert_eq!(db["State"]["Health"]["FailingStreak"], 0);
    // The probes failed until the file existed: the dependent started only afterwards.
    let log = db["State"]["Health"]["Log"].as_array().unwrap();
    assert!(log.len() >= 2 && log[0]["ExitCode"] == 1, "{log:?}");
    let healthy_at = first_success_end(&db);
    let web = c.e.env.inspect("phok-web-1");
    let web_started = web["State"]["StartedAt"].as_str().unwrap();
    assert!(
        web_started > healthy_at.as_str(),
        "web started at {web_started}, db healthy at {healthy_at}"
    );
    assert!(web.get("State").unwrap().get("Health").is_none());
    // ps shows the health.
    let table = c.e.ok(&["container", "ls"]);
    let line = table.lines().find(|l| l.contains("phok-db-1")).unwrap();
    assert!(line.contains("(healthy)"), "{table}");
}

#[test]
fn an_unhealthy_dependency_fails_up() {
    if !require_root() {
        return;
    }
    let c = Compose::new(
        "hbad",
        r#"
services:
  db:
    image: IMAGE
    command: ["sleep", "600"]
    healthcheck:
      test: ["CMD", "sh", "-c", "echo not ready; exit 1"]
      interval: 100ms
      retries: 2
  web:
    image: IMAGE
    command: ["sleep", "600"]
    depends_on:
      db:
        condition: service_healthy
"#,
    );
    let out = c.run(&["up", "-d"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("dependency failed to start: container phbad-db-1 is unhealthy")
            && err.contains("\"web\"")
            && err.contains("\"db\""),
        "{err}"
    );
    let db = c.e.env.inspect("phbad-db-1");
    let health = &db["State"]["Health"];
    assert_eq!(health["Status"], "unhealthy", "{db:#}");
    assert_eq!(health["FailingStreak"], 2);
    assert_eq!(health["Log"][1]["Output"], "not ready\n");
    // The dependent was never started.
    let ps = c.ps();
    assert!(
        ps.iter()
            .all(|p| p["Service"] != "web" || p["State"] != "running"),
        "{ps:?}"
    );
    // A dependency without a health check cannot be waited for.
    c.ok(&["down", "-t", "1"]);
    c.write(
        r#"
services:
  db:
    image: IMAGE
    command: ["sleep", "600"]
  web:
    image: IMAGE
    command: ["sleep", "600"]
    depends_on:
      db:
        condition: service_healthy
"#,
    );
    let out = c.run(&["up", "-d"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(
            "dependency failed to start: container phbad-db-1 has no healthcheck configured"
        ),
        "{err}"
    );
}

#[test]
fn up_wait_waits_for_health_and_fails_on_unhealthy() {
    if !require_root() {
        return;
    }
    let c = Compose::new(
        "hwait",
        r#"
services:
  checked:
    image: IMAGE
    command: ["sleep", "600"]
    healthcheck:
      test: ["CMD", "true"]
      interval: 200ms
  plain:
    image: IMAGE
    command: ["sleep", "600"]
"#,
    );
    let (_, err) = c.ok(&["up", "--wait"]);
    assert!(err.contains("Container phwait-checked-1  Healthy"), "{err}");
    assert!(err.contains("Container phwait-plain-1  Healthy"), "{err}");
    let checked = c.e.env.inspect("phwait-checked-1");
    assert_eq!(checked["State"]["Health"]["Status"], "healthy");
    // Nothing changed: --wait still checks.
    c.ok(&["up", "-d", "--wait"]);

    c.write(
        r#"
services:
  checked:
    image: IMAGE
    command: ["sleep", "600"]
    healthcheck:
      test: ["CMD", "false"]
      interval: 100ms
      retries: 1
"#,
    );
    let out = c.run(&["up", "-d", "--wait", "--remove-orphans"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("container phwait-checked-1 is unhealthy"),
        "{err}"
    );

    // A check that cannot finish in time: the timeout ends the wait.
    c.write(
        r#"
services:
  checked:
    image: IMAGE
    command: ["sleep", "600"]
    healthcheck:
      test: ["CMD", "true"]
      interval: 1m
"#,
    );
    let out = c.run(&["up", "-d", "--wait", "--wait-timeout", "1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("application not healthy after 1s"), "{err}");
}

#[test]
fn container_run_health_flags_show_in_inspect() {
    if !require_root() {
        return;
    }
    let e = Env::new();
    e.ok(&[
        "container",
        "run",
        "-d",
        "--name",
        "hc",
        "--health-cmd",
        "true",
        "--health-interval",
        "250ms",
        "--health-retries",
        "4",
        IMAGE,
        "sleep",
        "600",
    ]);
    let v = e.inspect("hc");
    assert_eq!(
        v["Config"]["Healthcheck"],
        serde_json::json!({
            "Test": ["CMD-SHELL", "true"],
            "Interval": 250_000_000u64,
            "Timeout": 30_000_000_000u64,
            "StartPeriod": 0,
            "StartInterval": 5_000_000_000u64,
            "Retries": 4,
        })
    );
    // Nothing probes a plain container yet (no supervisor): it stays starting.
    assert_eq!(
        v["State"]["Health"],
        serde_json::json!({"Status": "starting", "FailingStreak": 0, "Log": []})
    );
    let table = e.ok(&["container", "ls"]);
    assert!(table.contains("(health: starting)"), "{table}");

    e.ok(&[
        "container",
        "run",
        "-d",
        "--name",
        "nohc",
        "--no-healthcheck",
        IMAGE,
        "sleep",
        "600",
    ]);
    let v = e.inspect("nohc");
    assert!(v["State"].get("Health").is_none(), "{v:#}");
    assert_eq!(
        v["Config"]["Healthcheck"]["Test"],
        serde_json::json!(["NONE"])
    );
    let out = e.run(&[
        "container",
        "create",
        "--no-healthcheck",
        "--health-cmd",
        "true",
        IMAGE,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("conflicts"));
}
