//! Data-driven tests of phase 7 (`canonical`).
//!
//! - `tests/fixtures/canonical/<group>/input.yaml` → `expected.yaml`, compared as trees (mapping
//!   order ignored, sequence order and scalar types kept); an optional `warnings.txt` lists the
//!   YAML paths of the expected warnings.
//! - `tests/fixtures/canonical/invalid/<case>/input.yaml` must fail as `error.json` says (kind,
//!   path, line, column, message).
//! - Every YAML document of the compose-go conformance corpus (`merge/`, `normalize/`,
//!   `unicity/`, `reset/`) that parses must canonicalize without error, and the canonical form
//!   must be a fixed point (canonicalizing it again changes nothing).

use std::fs;
use std::path::{Path, PathBuf};

use berth_compose::ErrorKind;
use berth_compose::canonical::canonicalize;
use berth_compose::yaml::{self, Node};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/canonical")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn parse(path: &Path) -> Node {
    yaml::parse(&path.display().to_string(), &read(path)).unwrap_or_else(|e| panic!("{e}"))
}

fn dirs(root: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    out
}

#[test]
fn fixtures_rewrite_to_expected() {
    let groups: Vec<PathBuf> = dirs(&fixtures())
        .into_iter()
        .filter(|d| d.file_name().is_some_and(|n| n != "invalid"))
        .collect();
    assert!(groups.len() >= 8, "fixture groups missing: {groups:?}");
    let mut failures = Vec::new();
    for dir in groups {
        let mut doc = parse(&dir.join("input.yaml"));
        let want = parse(&dir.join("expected.yaml"));
        let warnings = match canonicalize(&mut doc) {
            Ok(w) => w,
            Err(e) => {
                failures.push(format!("{}: unexpected error: {e}", dir.display()));
                continue;
            }
        };
        if doc != want {
            failures.push(format!(
                "{}:\n got: {}\nwant: {}",
                dir.display(),
                yaml::to_json(&doc),
                yaml::to_json(&want)
            ));
        }
        let mut got_paths: Vec<String> = warnings.iter().map(|w| w.path.to_string()).collect();
        got_paths.sort();
        let warnings_file = dir.join("warnings.txt");
        let mut want_paths: Vec<String> = if warnings_file.exists() {
            read(&warnings_file)
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect()
        } else {
            Vec::new()
        };
        want_paths.sort();
        if got_paths != want_paths {
            failures.push(format!(
                "{}: warnings {got_paths:?}, want {want_paths:?}",
                dir.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn invalid_inputs_fail_where_expected() {
    let cases = dirs(&fixtures().join("invalid"));
    assert!(cases.len() >= 10, "invalid cases missing");
    let mut failures = Vec::new();
    for dir in cases {
        let want: serde_json::Value = serde_json::from_str(&read(&dir.join("error.json")))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut doc = parse(&dir.join("input.yaml"));
        let err = match canonicalize(&mut doc) {
            Ok(_) => {
                failures.push(format!("{}: no error", dir.display()));
                continue;
            }
            Err(e) => e,
        };
        let kind = format!("{:?}", err.kind);
        let got = serde_json::json!({
            "kind": kind,
            "path": err.path.to_string(),
            "line": err.loc.line,
            "col": err.loc.col,
            "message": err.message,
        });
        if got != want {
            failures.push(format!("{}:\n got: {got}\nwant: {want}", dir.display()));
        }
        if err.kind != ErrorKind::InvalidValue
            || err.hint.is_none() && err.message.starts_with("invalid port")
        {
            failures.push(format!("{}: kind or hint wrong: {err:?}", dir.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn corpus_yaml_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/compose-go");
    let mut out = Vec::new();
    for folder in ["merge", "normalize", "unicity", "reset"] {
        for dir in dirs(&root.join(folder)) {
            let mut files: Vec<PathBuf> = fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
                .collect();
            files.sort();
            out.extend(files);
        }
    }
    out
}

#[test]
fn corpus_documents_canonicalize_to_a_fixed_point() {
    let files = corpus_yaml_files();
    assert!(files.len() > 150, "corpus not found: {} files", files.len());
    let mut checked = 0;
    let mut failures = Vec::new();
    for file in files {
        // Files that are invalid YAML on purpose (duplicate keys, anchor cycles) are for the parser.
        let Ok(mut doc) = yaml::parse(&file.display().to_string(), &read(&file)) else {
            continue;
        };
        if let Err(e) = canonicalize(&mut doc) {
            failures.push(format!("{}: {e}", file.display()));
            continue;
        }
        let once = doc.clone();
        if let Err(e) = canonicalize(&mut doc) {
            failures.push(format!("{}: second pass: {e}", file.display()));
            continue;
        }
        if doc != once {
            failures.push(format!("{}: not a fixed point", file.display()));
        }
        checked += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked > 150, "only {checked} documents checked");
}
