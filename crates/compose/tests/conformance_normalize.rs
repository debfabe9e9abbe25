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
        let project = doc
            .get("name")
            .and_then(|n| n.as_str())
            .unwrap_or_default()
            .to_string();

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
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// testdata/expectations.json: the depends_on cycle files, after normalize (which also turns
/// their short `depends_on` lists into mappings), must fail consistency with compose-go's exact
/// message.
#[test]
fn depends_on_cycle_expectations() {
    let testdata =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/compose-go/testdata");
    let expectations: serde_json::Value =
        serde_json::from_str(&read(&testdata.join("expectations.json"))).unwrap();
    let mut checked = 0;
    for file in [
        "compose-depends-on-cycle.yaml",
        "compose-depends-on-self.yaml",
    ] {
        let want = &expectations["files"][file];
        assert_eq!(want["error_match"], "exact", "{file}");
        let path = testdata.join(file);
        let mut doc = parse(&path.display().to_string(), &read(&path)).unwrap();
        normalize_with_env(&mut doc, "depends-on-cycle", |_| None).unwrap();
        let e = berth_compose::consistency::check(&doc).expect_err(file);
        assert_eq!(Some(e.message()), want["error"].as_str(), "{file}");
        assert!(e.loc.is_known(), "{file}: {e}");
        checked += 1;
    }
    assert_eq!(checked, 2);
}
