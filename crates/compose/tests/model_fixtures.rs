//! Data-driven tests of the typed model: `tests/fixtures/model/valid/*.yaml` deserialise and
//! serialise back to the JSON next to them (written from compose-go's types, see the fixtures'
//! README); `invalid/*.yaml` fail with the error described next to them.

use std::fs;
use std::path::{Path, PathBuf};

use berth_compose::model::{Project, project_from_node};
use berth_compose::yaml;

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/model")
        .join(kind);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

fn load(path: &Path) -> Result<Project, berth_compose::Error> {
    let text = fs::read_to_string(path).unwrap();
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    let node = yaml::parse(&name, &text).unwrap();
    project_from_node(&node)
}

fn expected(path: &Path) -> serde_json::Value {
    let text = fs::read_to_string(path.with_extension("json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// JSON equality that also compares the order of object keys.
fn ordered_eq(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    match (a, b) {
        (J::Object(x), J::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y.iter())
                    .all(|((ka, va), (kb, vb))| ka == kb && ordered_eq(va, vb))
        }
        (J::Array(x), J::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| ordered_eq(a, b))
        }
        _ => a == b,
    }
}

#[test]
fn valid_fixtures_round_trip_to_compose_go_json() {
    let files = fixtures("valid");
    assert!(files.len() >= 3, "fixtures missing");
    let mut failures = Vec::new();
    for path in &files {
        match load(path) {
            Err(e) => failures.push(format!("{}: {e}", path.display())),
            Ok(project) => {
                let got = serde_json::to_value(&project).unwrap();
                let want = expected(path);
                if !ordered_eq(&got, &want) {
                    failures.push(format!(
                        "{}:\n got: {}\nwant: {}",
                        path.display(),
                        serde_json::to_string_pretty(&got).unwrap(),
                        serde_json::to_string_pretty(&want).unwrap()
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn invalid_fixtures_fail_with_located_errors() {
    let files = fixtures("invalid");
    assert!(files.len() >= 5, "fixtures missing");
    let mut failures = Vec::new();
    for path in &files {
        let want = expected(path);
        let e = match load(path) {
            Ok(_) => {
                failures.push(format!("{}: loaded, expected an error", path.display()));
                continue;
            }
            Err(e) => e,
        };
        let got = serde_json::json!({
            "kind": format!("{:?}", e.kind),
            "message": e.message,
            "path": e.path.to_string(),
            "line": e.loc.line,
            "col": e.loc.col,
        });
        let mut want_core = want.clone();
        let want_hint = want_core.as_object_mut().and_then(|o| o.remove("hint"));
        if got != want_core {
            failures.push(format!(
                "{}:\n got: {got}\nwant: {want_core}",
                path.display()
            ));
        }
        if let Some(h) = want_hint
            && e.hint.as_deref() != h.as_str()
        {
            failures.push(format!("{}: hint {:?}, want {h}", path.display(), e.hint));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn project_helpers() {
    let node = yaml::parse("h.yaml", "services:\n  web: {image: a}\n  db: {image: b}\n").unwrap();
    let p = project_from_node(&node).unwrap();
    assert_eq!(p.service_names(), vec!["db", "web"]);
    assert_eq!(p.service("web").map(|s| s.image.as_str()), Some("a"));
    assert!(p.service("nope").is_none());
}
