//! The built `berth` binary: help, version, exit codes and error output.

use std::process::{Command, Output};

fn berth(args: &[&str], dir: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .current_dir(dir)
        .env_remove("COMPOSE_FILE")
        .env_remove("COMPOSE_PROJECT_NAME")
        .env("NO_COLOR", "1")
        .output()
        .expect("run berth")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn help_reads_like_docker_compose() {
    let tmp = tempfile::tempdir().unwrap();
    let out = berth(&["--help"], tmp.path());
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    assert!(
        help.starts_with("Usage:  berth [OPTIONS] COMMAND\n"),
        "{help}"
    );
    assert!(
        help.contains("Define and run multi-container applications with berth"),
        "{help}"
    );
    for needle in [
        "Commands:",
        "config",
        "version",
        "Options:",
        "--file",
        "--project-name",
        "--project-directory",
        "--env-file",
        "--profile",
        "--ansi",
        "--progress",
        "--parallel",
        "--dry-run",
        "--root",
        "--log-level",
    ] {
        assert!(help.contains(needle), "help lacks {needle}:\n{help}");
    }
    // No verb prints the same help.
    let bare = berth(&[], tmp.path());
    assert_eq!(bare.status.code(), Some(0));
    assert!(text(&bare.stdout).starts_with("Usage:  berth [OPTIONS] COMMAND\n"));
}

#[test]
fn versions() {
    let tmp = tempfile::tempdir().unwrap();
    let v = env!("CARGO_PKG_VERSION");
    assert_eq!(
        text(&berth(&["--version"], tmp.path()).stdout),
        format!("berth version v{v}\n")
    );
    assert_eq!(
        text(&berth(&["version", "--short"], tmp.path()).stdout),
        format!("{v}\n")
    );
    assert_eq!(
        text(&berth(&["version", "--format", "json"], tmp.path()).stdout),
        format!("{{\"version\":\"v{v}\"}}\n")
    );
}

#[test]
fn unknown_flags_exit_with_compose_syntax_status() {
    let tmp = tempfile::tempdir().unwrap();
    let out = berth(&["config", "--no-such-flag"], tmp.path());
    assert_eq!(out.status.code(), Some(16));
    assert!(text(&out.stderr).contains("--no-such-flag"));
}

#[test]
fn errors_are_printed_with_exit_1() {
    let tmp = tempfile::tempdir().unwrap();
    let out = berth(&["config"], tmp.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(
        text(&out.stderr).starts_with("error: no configuration file provided: not found\nhint: "),
        "{}",
        text(&out.stderr)
    );

    let out = berth(&["-f", "missing.yaml", "config"], tmp.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("missing.yaml: no such file or directory"));

    let out = berth(&["config", "--resolve-image-digests"], tmp.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("image store"),
        "{}",
        text(&out.stderr)
    );
}

/// Every verb's `--help` renders: clap checks the whole command tree (duplicate flags between a
/// verb and the global options panic) when a command is built, so this catches them.
#[test]
fn every_verb_has_help() {
    for verb in [
        &["config"][..],
        &["image", "pull"],
        &["image", "ls"],
        &["image", "inspect"],
        &["image", "rm"],
        &["image", "tag"],
        &["login"],
        &["logout"],
        &["pull"],
        &["version"],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(verb)
            .arg("--help")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{verb:?} --help: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
