//! compose-go conformance: `interpolation/cases.json` (template and tree interpolation) and
//! `interpolation/operator_choice.json`.

use std::path::PathBuf;

use berth_compose::ErrorKind;
use berth_compose::interpolate::interpolate;
use berth_compose::template::{TemplateError, operator_of, substitute};
use berth_compose::yaml::{Key, Map, Node, YamlPath, lookup as node_at};
use serde_json::Value as J;

fn corpus(file: &str) -> Vec<J> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/conformance/compose-go/interpolation")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    match serde_json::from_str(&text) {
        Ok(J::Array(cases)) => cases,
        other => panic!("{}: not a JSON array: {other:?}", path.display()),
    }
}

fn text<'a>(v: &'a J, key: &str) -> Option<&'a str> {
    v.get(key).and_then(J::as_str)
}

/// A document holding `value` at compose-go's tree path `a.b.[]` (`[]` is a sequence item),
/// and berth's path to it.
fn tree_at(path: &str, value: &str) -> (Node, YamlPath) {
    let segs: Vec<&str> = path.split('.').collect();
    let mut node = Node::string(value);
    for seg in segs.iter().rev() {
        node = if *seg == "[]" {
            Node::seq(vec![node])
        } else {
            let mut m = Map::new();
            m.insert(Key::new(*seg), node);
            Node::map(m)
        };
    }
    let mut ypath = YamlPath::root();
    for seg in segs {
        ypath = if seg == "[]" {
            ypath.index(0)
        } else {
            ypath.key(seg)
        };
    }
    (node, ypath)
}

/// Checks an error against the case's `error` object; returns what did not match.
fn check_error(
    name: &str,
    want: &J,
    kind_ok: bool,
    message: &str,
    fields: Option<(&str, &str)>,
    message_at_path: Option<&str>,
) -> Option<String> {
    if !kind_ok {
        return Some(format!("{name}: wrong error kind for {want}: {message}"));
    }
    if let Some(c) = text(want, "contains")
        && !message.contains(c)
    {
        return Some(format!("{name}: error {message:?} does not contain {c:?}"));
    }
    if let Some(v) = text(want, "variable")
        && fields.map(|f| f.0) != Some(v)
    {
        return Some(format!("{name}: variable: want {v:?}, got {fields:?}"));
    }
    if let Some(r) = text(want, "reason")
        && fields.map(|f| f.1) != Some(r)
    {
        return Some(format!("{name}: reason: want {r:?}, got {fields:?}"));
    }
    if let (Some(want_msg), Some(got)) = (text(want, "message_at_path"), message_at_path)
        && want_msg.replace(".[]", "[0]") != got
    {
        return Some(format!("{name}: message: want {want_msg:?}, got {got:?}"));
    }
    None
}

fn run_case(case: &J) -> Option<String> {
    let name = text(case, "name").unwrap_or("?");
    let Some(template) = text(case, "template") else {
        return Some(format!("{name}: no template"));
    };
    let env: Vec<(String, String)> = case
        .get("env")
        .and_then(J::as_object)
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    let lookup = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let expected = text(case, "expected");
    let want_err = case.get("error");
    let want_kind = want_err.and_then(|e| text(e, "kind"));

    if let Some(path) = text(case, "path") {
        let (mut doc, ypath) = tree_at(path, template);
        return match (interpolate(&mut doc, &lookup), expected, want_err) {
            (Ok(_), Some(want), _) => {
                let got = node_at(&doc, &ypath).and_then(Node::as_str);
                (got != Some(want)).then(|| format!("{name}: want {want:?}, got {got:?}"))
            }
            (Err(e), None, Some(w)) => {
                let kind_ok = e.kind == ErrorKind::Interpolation
                    && e.path == ypath
                    && match want_kind {
                        Some("invalid_template") => {
                            e.message().starts_with("invalid interpolation format for ")
                        }
                        Some("missing_required") => {
                            e.message().starts_with("error while interpolating ")
                        }
                        _ => false,
                    };
                check_error(name, w, kind_ok, e.message(), None, Some(e.message()))
            }
            (got, _, _) => Some(format!("{name}: unexpected outcome {got:?}")),
        };
    }

    match (substitute(template, &lookup), expected, want_err) {
        (Ok(got), Some(want), _) => {
            (got.value != want).then(|| format!("{name}: want {want:?}, got {:?}", got.value))
        }
        (Err(e), None, Some(w)) => {
            let (kind_ok, fields) = match (&e, want_kind) {
                (TemplateError::MissingRequired { variable, reason }, Some("missing_required")) => {
                    (true, Some((variable.as_str(), reason.as_str())))
                }
                (TemplateError::Invalid { .. }, Some("invalid_template")) => (true, None),
                _ => (false, None),
            };
            check_error(name, w, kind_ok, &e.to_string(), fields, None)
        }
        (got, _, _) => Some(format!("{name}: unexpected outcome {got:?}")),
    }
}

#[test]
fn compose_go_interpolation_cases() {
    let cases = corpus("cases.json");
    assert_eq!(cases.len(), 116, "the corpus changed");
    let failures: Vec<String> = cases.iter().filter_map(run_case).collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn compose_go_operator_choice() {
    let cases = corpus("operator_choice.json");
    assert_eq!(cases.len(), 12, "the corpus changed");
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| {
            let (name, input, want) = (text(c, "name")?, text(c, "input")?, text(c, "symbol")?);
            let got = operator_of(input).map(|o| o.symbol());
            (got != Some(want)).then(|| format!("{name}: {input:?}: want {want:?}, got {got:?}"))
        })
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
}
