//! compose-go's merge and unicity cases (`tests/conformance/compose-go/{merge,unicity}/`):
//! `EnforceUnicity(Merge(base, override)) == expected` (plain `Merge` where the index says
//! `enforce_unicity: false`), and `EnforceUnicity(input) == expected`, compared as YAML trees.

use std::fs;
use std::path::{Path, PathBuf};

use berth_compose::merge::merge;
use berth_compose::unicity::enforce_unicity;
use berth_compose::yaml::{Node, Tag, Value, parse};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/compose-go")
}

fn read_yaml(dir: &Path, file: &str) -> Node {
    let path = dir.join(file);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse(&path.display().to_string(), &text).unwrap_or_else(|e| panic!("{e}"))
}

fn has_merge_tags(n: &Node) -> bool {
    matches!(n.tag, Some(Tag::Reset | Tag::Override))
        || match &n.value {
            Value::Map(m) => m.values().any(has_merge_tags),
            Value::Seq(s) => s.iter().any(has_merge_tags),
            _ => false,
        }
}

fn show(n: &Node) -> String {
    serde_json::to_string(&berth_compose::yaml::to_json(n)).unwrap_or_default()
}

#[test]
fn compose_go_merge_cases() {
    let index: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(root().join("merge/index.json")).unwrap())
            .unwrap();
    let cases = index["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 60, "the corpus has 60 merge cases");
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let unicity = case["enforce_unicity"].as_bool().unwrap();
        let dir = root().join("merge").join(name);
        let (base, over, want) = (
            read_yaml(&dir, "base.yaml"),
            read_yaml(&dir, "override.yaml"),
            read_yaml(&dir, "expected.yaml"),
        );
        let got = merge(base, over).and_then(|m| if unicity { enforce_unicity(m) } else { Ok(m) });
        match got {
            Ok(got) if got == want && !has_merge_tags(&got) => {}
            Ok(got) => failures.push(format!(
                "{name}:\n  got  {}\n  want {}",
                show(&got),
                show(&want)
            )),
            Err(e) => failures.push(format!("{name}: error {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn compose_go_unicity_cases() {
    let index: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(root().join("unicity/index.json")).unwrap())
            .unwrap();
    let cases = index["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4, "the corpus has 4 unicity cases");
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let dir = root().join("unicity").join(name);
        let (input, want) = (
            read_yaml(&dir, "input.yaml"),
            read_yaml(&dir, "expected.yaml"),
        );
        match enforce_unicity(input) {
            Ok(got) if got == want => {}
            Ok(got) => failures.push(format!(
                "{name}:\n  got  {}\n  want {}",
                show(&got),
                show(&want)
            )),
            Err(e) => failures.push(format!("{name}: error {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
