//! compose-go's `loader/normalize_test.go` cases (tests/conformance/compose-go/normalize/):
//! `input.yaml` normalised with `env.json` as the project environment must equal
//! `expected.yaml` (mappings compared without regard to key order, as Go maps are).

use std::path::{Path, PathBuf};

use berth_compose::normalize::normalize_with_env;
use berth_compose::yaml::{parse, to_json};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/compose-go/normalize")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn normalize_conformance() {
    let index: serde_json::Value = serde_json::from_str(&read(&dir().join("index.json"))).unwrap();
    let cases = index["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 8, "the corpus has 8 normalize cases");

    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().expect("case name");
        let case_dir = dir().join(name);
        let input_path = case_dir.join("input.yaml");
        let mut doc = parse(&input_path.display().to_string(), &read(&input_path)).unwrap();
        let expected_path = case_dir.join("expected.yaml");
        let expected = parse(&expected_path.display().to_string(), &read(&expected_path)).unwrap();
        let env: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&read(&case_dir.join("env.json"))).unwrap();
        let project = doc.get("name").and_then(|n| n.as_str()).unwrap_or_default().to_string();

        let result = normalize_with_env(&mut doc, &project, |k| {
            env.get(k).and_then(|v| v.as_str()).map(str::to_string)
        });
        match result {
            Err(e) => failures.push(format!("{name}: error {e}")),
            Ok(()) => {
                let (got, want) = (to_json(&doc), to_json(&expected));
                if got != want {
                    failures.push(format!("{name}:\n  got:  {got}\n  want: {want}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}
