//! compose-go's `!reset` / `!override` cases (`tests/conformance/compose-go/reset/`): the numbered
//! files are parsed, their `extends` resolved, merged in order and deduplicated, as compose-go's
//! `loadYamlModel` does; the result is compared with `expected_model`, with the `checks`, or the
//! error with `error`.
//!
//! Two `checks` were written against compose-go's typed `ServiceConfig`; they are read here on the
//! raw tree: `equals` ignores the `name` the typed struct carries, and an `environment` in
//! sequence form is compared as the mapping it stands for; an absent boolean counts as `false`
//! (the corpus note says so).
//!
//! Parse errors come from the YAML parser (`yaml.rs`), whose messages are not go-yaml's: for
//! those cases the test checks that loading fails with a syntax error at the line compose-go
//! names, not the exact text (see `PARSER_MESSAGES`).

use std::fs;
use std::path::{Path, PathBuf};

use berth_compose::error::{Error, ErrorKind};
use berth_compose::extends::{ExtendsContext, apply_extends};
use berth_compose::merge::merge;
use berth_compose::unicity::enforce_unicity;
use berth_compose::yaml::{Key, Map, Node, Tag, Value, from_json, parse};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/compose-go/reset")
}

/// Cases whose expected error is go-yaml's (or compose-go's reset pre-pass) wording of a parse
/// error, and the line berth's parser must blame: the duplicate key (the line compose-go names),
/// the alias that refers to the node being defined. The parser refuses the same input in its own
/// words.
const PARSER_MESSAGES: &[(&str, u32)] = &[
    ("Test_DuplicateReset", 6),
    ("TestResetCycle__direct_self_reference_cycle", 5),
];

/// The reset cases never extend a service of another file.
struct NoFiles;

impl ExtendsContext for NoFiles {
    fn load(&mut self, file: &str, _relative_to: &Path) -> Result<(Node, PathBuf), Error> {
        Err(Error::new(
            ErrorKind::Io,
            format!("unexpected load of {file}"),
        ))
    }
    fn rebase_paths(&mut self, _service: &mut Node, _from_dir: &Path) -> Result<(), Error> {
        Ok(())
    }
}

fn load(dir: &Path, expect: &serde_json::Value) -> Result<Node, Error> {
    let mut merged = Node::empty_map();
    for f in expect["files"].as_array().unwrap() {
        let file = f["file"].as_str().unwrap();
        let name = f["go_filename"].as_str().unwrap();
        let text = fs::read_to_string(dir.join(file)).unwrap();
        let mut doc = parse(name, &text)?;
        apply_extends(&mut doc, dir, &mut NoFiles)?;
        merged = enforce_unicity(merge(merged, doc)?)?;
    }
    Ok(merged)
}

fn has_merge_tags(n: &Node) -> bool {
    matches!(n.tag, Some(Tag::Reset | Tag::Override))
        || match &n.value {
            Value::Map(m) => m.values().any(has_merge_tags),
            Value::Seq(s) => s.iter().any(has_merge_tags),
            _ => false,
        }
}

fn lookup<'a>(n: &'a Node, path: &[serde_json::Value]) -> Option<&'a Node> {
    path.iter().try_fold(n, |cur, seg| cur.get(seg.as_str()?))
}

/// The raw tree read as the typed struct would read it (see the module comment).
fn typed_view(n: &Node, name: Option<&str>) -> Node {
    let mut n = n.clone();
    if let (Some(m), Some(name)) = (n.as_map_mut(), name) {
        m.entry(Key::new("name"))
            .or_insert_with(|| Node::string(name));
        if let Some(env) = m.get_mut("environment")
            && let Some(items) = env.as_seq()
        {
            let mut map = Map::new();
            for item in items {
                let text = item.scalar_text().unwrap_or_default();
                let (k, v) = match text.split_once('=') {
                    Some((k, v)) => (k.to_string(), Node::string(v)),
                    None => (text, Node::null()),
                };
                map.insert(Key::new(k), v);
            }
            *env = Node::map(map);
        }
    }
    n
}

fn check(case: &str, got: &Node, c: &serde_json::Value) -> Result<(), String> {
    let path = c["path"].as_array().unwrap();
    let found = lookup(got, path);
    if c["absent"].as_bool() == Some(true) {
        return match found {
            None => Ok(()),
            Some(n) => Err(format!(
                "{case}: {path:?} should be absent, is {:?}",
                n.value
            )),
        };
    }
    let want = from_json(&c["equals"]);
    let ok = match (found, &want.value) {
        (None, Value::Bool(false)) => true,
        (None, _) => false,
        (Some(n), Value::Map(_)) => typed_view(n, path.last().and_then(|s| s.as_str())) == want,
        (Some(n), _) => *n == want,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{case}: {path:?} is {:?}, want {:?}",
            found.map(|n| &n.value),
            want.value
        ))
    }
}

#[test]
fn compose_go_reset_cases() {
    let index: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(root().join("index.json")).unwrap()).unwrap();
    let cases = index["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 11, "the corpus has 11 reset cases");
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let dir = root().join(name);
        let expect: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(dir.join("expect.json")).unwrap()).unwrap();
        let result = load(&dir, &expect);
        match (expect["expect"].as_str().unwrap(), result) {
            ("error", Ok(got)) => failures.push(format!(
                "{name}: loaded, expected an error; got {:?}",
                got.value
            )),
            ("error", Err(e)) => {
                let want = expect["error"].as_str().unwrap();
                let file = expect["files"][0]["go_filename"].as_str().unwrap();
                let full = format!("failed to parse {file}: {}", e.message());
                match PARSER_MESSAGES.iter().find(|(n, _)| *n == name) {
                    _ if full == want => {}
                    Some((_, line)) if e.kind == ErrorKind::Syntax && e.loc.line == *line => {}
                    _ => failures.push(format!("{name}: error {e:?}, want {want:?}")),
                }
            }
            (_, Err(e)) => failures.push(format!("{name}: unexpected error {e}")),
            (_, Ok(got)) => {
                if has_merge_tags(&got) {
                    failures.push(format!("{name}: a !reset/!override tag survived"));
                }
                if let Some(model) = expect.get("expected_model") {
                    let want = from_json(model);
                    if got != want {
                        failures.push(format!(
                            "{name}:\n  got  {}\n  want {}",
                            berth_compose::yaml::to_json(&got),
                            model
                        ));
                    }
                }
                for c in expect["checks"].as_array().into_iter().flatten() {
                    if let Err(e) = check(name, &got, c) {
                        failures.push(e);
                    }
                }
            }
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
