//! End to end: `berth volume create|ls|inspect|rm|prune` against a fresh `--root` per test,
//! compared with what docker prints.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn berth_with_stdin(root: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("--root")
        .arg(root)
        .args(args)
        .current_dir(root.parent().unwrap())
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run berth");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn berth(root: &Path, args: &[&str]) -> Output {
    berth_with_stdin(root, args, b"")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "berth failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn failed(out: &Output) -> (String, String) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected exit 1: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn create_ls_inspect_rm() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let device = tmp.path().join("host-dir");
    std::fs::create_dir(&device).unwrap();
    std::fs::write(device.join("kept"), b"host").unwrap();

    assert_eq!(ok(&berth(&root, &["volume", "create", "data"])), "data\n");
    assert_eq!(ok(&berth(&root, &["volume", "create", "data"])), "data\n");
    let dev_opt = format!("device={}", device.display());
    let out = ok(&berth(
        &root,
        &[
            "volume",
            "create",
            "--label",
            "team=db",
            "-o",
            "type=none",
            "--opt",
            "o=bind",
            "-o",
            &dev_opt,
            "bound",
        ],
    ));
    assert_eq!(out, "bound\n");
    let anon = ok(&berth(&root, &["volume", "create"]));
    let anon = anon.trim_end().to_string();
    assert_eq!(anon.len(), 64, "{anon}");
    assert!(anon.bytes().all(|c| c.is_ascii_hexdigit()), "{anon}");

    let mut names = [anon.clone(), "bound".to_string(), "data".to_string()];
    names.sort();
    let table: String = std::iter::once("DRIVER    VOLUME NAME\n".to_string())
        .chain(names.iter().map(|n| format!("local     {n}\n")))
        .collect();
    assert_eq!(ok(&berth(&root, &["volume", "ls"])), table);
    assert_eq!(
        ok(&berth(&root, &["volume", "list", "-q"])),
        names.iter().map(|n| format!("{n}\n")).collect::<String>()
    );
    assert_eq!(
        ok(&berth(
            &root,
            &["volume", "ls", "--filter", "label=team=db"]
        )),
        "DRIVER    VOLUME NAME\nlocal     bound\n"
    );
    assert_eq!(
        ok(&berth(
            &root,
            &[
                "volume",
                "ls",
                "-q",
                "--filter",
                "label=com.docker.volume.anonymous"
            ]
        )),
        format!("{anon}\n")
    );
    // Nothing uses a volume until containers exist: all are dangling.
    assert_eq!(
        ok(&berth(
            &root,
            &["volume", "ls", "-q", "--filter", "dangling=false"]
        )),
        ""
    );
    let json = ok(&berth(
        &root,
        &["volume", "ls", "--filter", "name=dat", "--format", "json"],
    ));
    let lines: Vec<&str> = json.lines().collect();
    assert_eq!(lines.len(), 1, "{json}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(v["Name"], "data");
    assert_eq!(v["Driver"], "local");
    assert_eq!(v["Scope"], "local");
    assert_eq!(
        v["Mountpoint"],
        root.join("volumes/data/_data").to_string_lossy().as_ref()
    );
    let err = berth(&root, &["volume", "ls", "--filter", "colour=red"]);
    assert!(
        failed(&err).1.contains("invalid filter 'colour'"),
        "{:?}",
        err
    );

    let out = ok(&berth(&root, &["volume", "inspect", "data", "bound"]));
    assert!(
        out.starts_with("[\n    {\n        \"CreatedAt\": \""),
        "{out}"
    );
    let arr: Vec<serde_json::Map<String, serde_json::Value>> = serde_json::from_str(&out).unwrap();
    assert_eq!(arr.len(), 2);
    let keys: Vec<&str> = arr[0].keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "CreatedAt",
            "Driver",
            "Labels",
            "Mountpoint",
            "Name",
            "Options",
            "Scope"
        ]
    );
    assert_eq!(arr[0]["Name"], "data");
    assert_eq!(arr[0]["Labels"], serde_json::json!({}));
    assert!(
        chrono_like(arr[0]["CreatedAt"].as_str().unwrap()),
        "{}",
        arr[0]["CreatedAt"]
    );
    assert_eq!(arr[1]["Labels"], serde_json::json!({"team": "db"}));
    assert_eq!(
        arr[1]["Options"],
        serde_json::json!({"device": device.to_string_lossy(), "o": "bind", "type": "none"})
    );
    assert_eq!(arr[1]["Mountpoint"], device.to_string_lossy().as_ref());

    let out = berth(&root, &["volume", "inspect", "nope"]);
    let (stdout, stderr) = failed(&out);
    assert_eq!(stdout, "[]\n");
    assert!(stderr.contains("no such volume: nope"), "{stderr}");

    let (_, stderr) = failed(&berth(&root, &["volume", "create", "-d", "rexray", "x1"]));
    assert!(stderr.contains("\"rexray\" is not supported"), "{stderr}");
    let (_, stderr) = failed(&berth(&root, &["volume", "create", "x"]));
    assert!(stderr.contains("too short"), "{stderr}");
    let (_, stderr) = failed(&berth(
        &root,
        &[
            "volume",
            "create",
            "-o",
            "type=tmpfs",
            "-o",
            "device=tmpfs",
            "t1",
        ],
    ));
    assert!(
        stderr.contains("tmpfs volumes are not supported"),
        "{stderr}"
    );

    // One missing name: the others are still removed, exit status 1.
    let (stdout, stderr) = failed(&berth(&root, &["volume", "rm", "data", "nope", &anon]));
    assert_eq!(stdout, format!("data\n{anon}\n"));
    assert!(
        stderr.contains("Error response from daemon: get nope: no such volume"),
        "{stderr}"
    );
    assert_eq!(
        ok(&berth(&root, &["volume", "rm", "--force", "nope"])),
        "nope\n"
    );
    assert_eq!(ok(&berth(&root, &["volume", "remove", "bound"])), "bound\n");
    assert_eq!(ok(&berth(&root, &["volume", "ls", "-q"])), "");
    // The bind device is the user's: never deleted.
    assert_eq!(std::fs::read(device.join("kept")).unwrap(), b"host");
}

fn chrono_like(s: &str) -> bool {
    // 2024-01-02T03:04:05Z
    let b = s.as_bytes();
    s.len() == 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'Z'
}

#[test]
fn prune_anonymous_then_all() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    assert_eq!(ok(&berth(&root, &["volume", "create", "keep"])), "keep\n");
    let a = ok(&berth(&root, &["volume", "create"]))
        .trim_end()
        .to_string();
    let b = ok(&berth(
        &root,
        &["volume", "create", "--label", "tier=cache"],
    ))
    .trim_end()
    .to_string();
    std::fs::write(
        root.join("volumes").join(&a).join("_data/f"),
        vec![7u8; 1000],
    )
    .unwrap();

    // Declined: nothing removed.
    let out = berth_with_stdin(&root, &["volume", "prune"], b"n\n");
    assert_eq!(ok(&out), "");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "WARNING! This will remove anonymous local volumes not used by at least one container."
        ),
        "{out:?}"
    );
    assert_eq!(
        ok(&berth(&root, &["volume", "ls", "-q"])).lines().count(),
        3
    );

    // A label filter narrows it.
    let out = ok(&berth(
        &root,
        &[
            "volume",
            "prune",
            "--force",
            "--filter",
            "label!=tier=cache",
        ],
    ));
    assert_eq!(
        out,
        format!("Deleted Volumes:\n{a}\n\nTotal reclaimed space: 1kB\n")
    );

    // Confirmed on stdin (not a terminal, as `echo y | docker volume prune`).
    let out = ok(&berth_with_stdin(&root, &["volume", "prune"], b"y\n"));
    assert_eq!(
        out,
        format!("Deleted Volumes:\n{b}\n\nTotal reclaimed space: 0B\n")
    );
    // Named volumes stay without --all.
    assert_eq!(
        ok(&berth(&root, &["volume", "prune", "--force"])),
        "Total reclaimed space: 0B\n"
    );
    assert_eq!(ok(&berth(&root, &["volume", "ls", "-q"])), "keep\n");

    let out = berth_with_stdin(&root, &["volume", "prune", "-a"], b"y\n");
    assert_eq!(
        ok(&out),
        "Deleted Volumes:\nkeep\n\nTotal reclaimed space: 0B\n"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("remove all local volumes"),
        "{out:?}"
    );
    assert_eq!(ok(&berth(&root, &["volume", "ls", "-q"])), "");
}

#[test]
fn volume_verbs_have_help() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    for verb in ["create", "inspect", "ls", "rm", "prune"] {
        let out = ok(&berth(&root, &["volume", verb, "--help"]));
        assert!(out.contains("Usage:"), "{verb}: {out}");
    }
    let out = ok(&berth(&root, &["volume", "rm", "--help"]));
    assert!(out.contains("--force"), "{out}");
}
