//! End to end: `berth image …`, `berth pull` and `berth login` against a real `docker-registry`
//! on 127.0.0.1, images made from busybox-static, a fresh `--root` per test. Needs root
//! (whiteouts are device nodes) and the registry binary; skipped with a message otherwise,
//! unless CI=true.

use std::path::Path;
use std::process::{Command, Output};

use berth_testkit::{Format, ImageBuilder, push, require_registry};

fn require_root() -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    assert!(!berth_testkit::in_ci(), "CI=true but not root");
    println!("skipped: needs root");
    false
}

fn berth(root: &Path, cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("--root")
        .arg(root)
        .args(args)
        .current_dir(cwd)
        .env("HOME", cwd)
        .env("NO_COLOR", "1")
        .output()
        .expect("run berth")
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

fn push_images(reg: &berth_testkit::Registry) -> String {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        push(
            reg,
            "app/one:v1",
            &ImageBuilder::busybox(Format::Oci, "one").build(),
        )
        .await;
        push(
            reg,
            "app/two:v1",
            &ImageBuilder::busybox(Format::Docker, "two").build(),
        )
        .await
    })
}

#[test]
fn image_pull_ls_inspect_tag_rm() {
    if !require_registry() || !require_root() {
        return;
    }
    let reg = berth_testkit::Registry::start();
    push_images(&reg);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let name = format!("{}/app/one:v1", reg.host());

    let out = ok(&berth(&root, tmp.path(), &["image", "pull", &name]));
    assert!(out.contains("v1: Pulling from app/one"), "{out}");
    assert!(out.contains("Status: Downloaded newer image for"), "{out}");
    assert!(
        out.lines().last().unwrap().ends_with("/app/one:v1"),
        "{out}"
    );
    let again = ok(&berth(&root, tmp.path(), &["image", "pull", &name]));
    assert!(again.contains("Status: Image is up to date for"), "{again}");
    assert_eq!(
        ok(&berth(&root, tmp.path(), &["image", "pull", "-q", &name])).trim(),
        format!("{name}")
    );

    let ls = ok(&berth(&root, tmp.path(), &["image", "ls"]));
    let lines: Vec<&str> = ls.lines().collect();
    assert!(
        lines[0].starts_with("REPOSITORY") && lines[0].contains("IMAGE ID"),
        "{ls}"
    );
    assert_eq!(lines.len(), 2, "{ls}");
    assert!(
        lines[1].contains("app/one") && lines[1].contains("v1"),
        "{ls}"
    );

    let inspect: serde_json::Value =
        serde_json::from_str(&ok(&berth(&root, tmp.path(), &["image", "inspect", &name]))).unwrap();
    let img = &inspect[0];
    assert_eq!(
        img["Config"]["Cmd"],
        serde_json::json!(["/bin/cat", "/app/hello.txt"])
    );
    assert_eq!(img["Config"]["WorkingDir"], "/app");
    assert_eq!(img["RootFS"]["Layers"].as_array().unwrap().len(), 2);
    let id = img["Id"].as_str().unwrap().to_string();

    // A second name: removing by id is refused without -f; by name it only untags.
    ok(&berth(
        &root,
        tmp.path(),
        &["image", "tag", &name, "mine:latest"],
    ));
    let ls = ok(&berth(&root, tmp.path(), &["image", "ls"]));
    assert!(ls.contains("mine"), "{ls}");
    let refused = berth(&root, tmp.path(), &["image", "rm", &id[7..19]]);
    assert_eq!(
        refused.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("must be forced"));
    let untag = ok(&berth(&root, tmp.path(), &["image", "rm", "mine"]));
    assert!(
        untag.contains("Untagged: mine") && !untag.contains("Deleted"),
        "{untag}"
    );
    let gone = ok(&berth(&root, tmp.path(), &["image", "rm", &name]));
    assert!(gone.contains("Deleted: sha256:"), "{gone}");
    assert_eq!(ok(&berth(&root, tmp.path(), &["image", "ls", "-q"])), "");
    // Removing the last image collected its blobs and layers.
    assert_eq!(
        std::fs::read_dir(root.join("content/blobs/sha256"))
            .unwrap()
            .count(),
        0
    );

    // prune -a: refuses without --force when not on a terminal, then removes everything.
    ok(&berth(&root, tmp.path(), &["image", "pull", "-q", &name]));
    let refused = berth(&root, tmp.path(), &["image", "prune", "-a"]);
    assert_eq!(refused.status.code(), Some(1));
    let pruned = ok(&berth(
        &root,
        tmp.path(),
        &["image", "prune", "-a", "--force"],
    ));
    assert!(
        pruned.contains("deleted: sha256:") && pruned.contains("Total reclaimed space:"),
        "{pruned}"
    );
    assert_eq!(ok(&berth(&root, tmp.path(), &["image", "ls", "-q"])), "");
    assert_eq!(
        std::fs::read_dir(root.join("content/blobs/sha256"))
            .unwrap()
            .count(),
        0
    );

    // A failed pull (no such tag) exits 1 and leaves no image.
    let missing = berth(
        &root,
        tmp.path(),
        &["image", "pull", &format!("{}/app/none:v1", reg.host())],
    );
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("failed to pull"));
    assert_eq!(ok(&berth(&root, tmp.path(), &["image", "ls", "-q"])), "");
    assert!(
        std::fs::read_dir(root.join("content/ingest"))
            .unwrap()
            .next()
            .is_none()
    );
}

#[test]
fn compose_pull_honours_pull_policy_and_failures() {
    if !require_registry() || !require_root() {
        return;
    }
    let reg = berth_testkit::Registry::start();
    push_images(&reg);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let h = reg.host();
    std::fs::write(
        tmp.path().join("compose.yaml"),
        format!(
            "name: pulltest\nservices:\n  one:\n    image: {h}/app/one:v1\n  two:\n    image: {h}/app/two:v1\n    pull_policy: missing\n  never:\n    image: {h}/app/none:v1\n    pull_policy: never\n"
        ),
    )
    .unwrap();
    let out = berth(&root, tmp.path(), &["pull"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("one Pulled") && err.contains("two Pulled"),
        "{err}"
    );
    assert!(err.contains("never Skipped - pull_policy: never"), "{err}");
    let ids = ok(&berth(&root, tmp.path(), &["image", "ls", "-q"]));
    assert_eq!(ids.lines().count(), 2, "{ids}");
    // `missing` skips what is present.
    let out = berth(&root, tmp.path(), &["pull", "two"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("two Skipped - already present"));

    // A service whose image does not exist fails the pull, unless --ignore-pull-failures.
    std::fs::write(
        tmp.path().join("compose.yaml"),
        format!("name: pulltest\nservices:\n  bad:\n    image: {h}/app/none:v1\n  one:\n    image: {h}/app/one:v1\n"),
    )
    .unwrap();
    let out = berth(&root, tmp.path(), &["pull", "-q"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bad:"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = berth(&root, tmp.path(), &["pull", "-q", "--ignore-pull-failures"]);
    assert!(out.status.success());
}

#[test]
fn login_and_logout_write_dockers_config_file() {
    use std::io::Write;
    // Logins are verified: the registry must exist (it needs no credentials).
    if !require_registry() {
        return;
    }
    let reg = berth_testkit::Registry::start();
    let host = reg.host();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["--root"])
        .arg(&root)
        .args(["login", "-u", "alice", "--password-stdin", &host])
        .env("HOME", tmp.path())
        .env_remove("DOCKER_CONFIG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join(".docker/config.json")).unwrap())
            .unwrap();
    // base64("alice:s3cret"), the format docker writes.
    assert_eq!(config["auths"][host.as_str()]["auth"], "YWxpY2U6czNjcmV0");
    let out = berth(&root, tmp.path(), &["logout", &host]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Removing login credentials"));
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join(".docker/config.json")).unwrap())
            .unwrap();
    assert!(config["auths"].get(&host).is_none(), "{config}");
}

#[test]
fn import_save_rm_load_round_trip() {
    if !require_registry() || !require_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::write(
        tmp.path().join("rootfs.tar"),
        berth_testkit::image::busybox_base_tar(),
    )
    .unwrap();
    let id = ok(&berth(
        &root,
        tmp.path(),
        &[
            "image",
            "import",
            "-c",
            "CMD [\"sh\"]",
            "-c",
            "ENV A=1",
            "rootfs.tar",
            "example/bb:1",
        ],
    ));
    assert!(id.trim().starts_with("sha256:"), "{id}");
    let inspect: serde_json::Value = serde_json::from_str(&ok(&berth(
        &root,
        tmp.path(),
        &["image", "inspect", "example/bb:1"],
    )))
    .unwrap();
    assert_eq!(inspect[0]["Config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(inspect[0]["Config"]["Env"], serde_json::json!(["A=1"]));

    ok(&berth(
        &root,
        tmp.path(),
        &["image", "save", "-o", "bb.tar", "example/bb:1"],
    ));
    ok(&berth(&root, tmp.path(), &["image", "rm", "example/bb:1"]));
    assert_eq!(ok(&berth(&root, tmp.path(), &["image", "ls", "-q"])), "");
    let loaded = ok(&berth(
        &root,
        tmp.path(),
        &["image", "load", "-i", "bb.tar"],
    ));
    assert_eq!(loaded.trim(), "Loaded image: example/bb:1");
    let again: serde_json::Value = serde_json::from_str(&ok(&berth(
        &root,
        tmp.path(),
        &["image", "inspect", "example/bb:1"],
    )))
    .unwrap();
    assert_eq!(
        again[0]["Id"], inspect[0]["Id"],
        "save then load keeps the image id"
    );
}

/// Runs `berth login -u USER --password-stdin SERVER` with `password` on stdin.
fn login_with_stdin(root: &Path, home: &Path, user: &str, password: &str, server: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("--root")
        .arg(root)
        .args(["login", "-u", user, "--password-stdin", server])
        .env("HOME", home)
        .env_remove("DOCKER_CONFIG")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run berth login");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("write the password");
    child.wait_with_output().expect("berth login")
}

#[test]
fn login_is_verified_against_a_token_auth_registry() {
    // Needs no root: login touches only $HOME/.docker.
    if !require_registry() {
        return;
    }
    let reg = berth_testkit::Registry::start();
    let front = berth_testkit::TokenAuthFront::start(&reg, "alice", "s3cret");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let config_file = tmp.path().join(".docker/config.json");

    // A wrong password: exit 1, docker's wording, nothing written.
    let refused = login_with_stdin(&root, tmp.path(), "alice", "wrong", &front.host());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{err}");
    assert!(
        err.contains("unauthorized: incorrect username or password"),
        "{err}"
    );
    assert!(!String::from_utf8_lossy(&refused.stdout).contains("Login Succeeded"));
    assert!(
        !config_file.exists(),
        "a refused login wrote {config_file:?}"
    );

    // The right one: verified, then stored.
    let out = login_with_stdin(&root, tmp.path(), "alice", "s3cret", &front.host());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Login Succeeded"
    );
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config_file).unwrap()).unwrap();
    assert_eq!(
        config["auths"][front.host().as_str()]["auth"],
        "YWxpY2U6czNjcmV0"
    );

    // A later wrong password leaves the stored credentials as they were.
    let before = std::fs::read(&config_file).unwrap();
    let refused = login_with_stdin(&root, tmp.path(), "alice", "nope", &front.host());
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(std::fs::read(&config_file).unwrap(), before);
}

#[test]
fn an_identity_token_is_exchanged_for_an_access_token() {
    if !require_registry() || !require_root() {
        return;
    }
    let reg = berth_testkit::Registry::start();
    push_images(&reg);
    let front = berth_testkit::TokenAuthFront::start_with_refresh_token(&reg, "refresh-me");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let write_config = |token: &str| {
        std::fs::create_dir_all(tmp.path().join(".docker")).unwrap();
        std::fs::write(
            tmp.path().join(".docker/config.json"),
            serde_json::json!({"auths": {front.host(): {"identitytoken": token}}}).to_string(),
        )
        .unwrap();
    };
    let image = format!("{}/app/one:v1", front.host());
    // A wrong refresh token is refused by the token endpoint: nothing pulled.
    write_config("stale");
    let out = berth(&root, tmp.path(), &["image", "pull", "-q", &image]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("identity token was refused"), "{err}");
    // The right one: exchanged (grant_type=refresh_token) and the pull goes through.
    write_config("refresh-me");
    ok(&berth(&root, tmp.path(), &["image", "pull", "-q", &image]));
    assert!(ok(&berth(&root, tmp.path(), &["image", "ls"])).contains("app/one"));
}
