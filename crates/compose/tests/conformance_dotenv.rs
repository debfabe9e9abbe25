//! compose-go conformance: `dotenv/cases.json` with `dotenv/fixtures/`.

use std::path::{Path, PathBuf};

use berth_compose::Error;
use berth_compose::dotenv::{self, EnvMap};
use serde_json::Value as J;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/compose-go/dotenv")
}

fn text<'a>(v: &'a J, key: &str) -> Option<&'a str> {
    v.get(key).and_then(J::as_str)
}

/// compose-go's message: its `line N: ` prefix is berth's `loc.line`.
fn compose_message(e: &Error) -> String {
    if e.loc.line > 0 {
        format!("line {}: {}", e.loc.line, e.message())
    } else {
        e.message().to_string()
    }
}

fn run(case: &J, dir: &Path) -> Result<EnvMap, Error> {
    let env: Option<Vec<(String, String)>> =
        case.get("lookup_env").and_then(J::as_object).map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        });
    let lookup = |k: &str| {
        env.as_ref()?
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    let input_file = text(case, "input_file").map(|f| root().join(f));
    match (
        text(case, "api").unwrap_or(""),
        text(case, "input"),
        input_file,
    ) {
        ("Parse" | "ParseWithLookup" | "parser.parse", Some(input), _) => {
            dotenv::parse(input, &lookup)
        }
        ("Read" | "ReadWithLookup", _, Some(file)) => dotenv::read(&[file], &lookup),
        ("Load", _, Some(file)) => dotenv::read(&[file], &|_| None).map(|vars| {
            vars.into_iter()
                .map(|(k, v)| (k, v.replace("\r\n", "\n")))
                .collect()
        }),
        ("GetEnvFromFile", _, _) => {
            let inputs: Vec<&str> = case
                .get("inputs")
                .and_then(J::as_array)
                .map(|a| a.iter().filter_map(J::as_str).collect())
                .unwrap_or_default();
            let mut files = Vec::new();
            for (i, input) in inputs.iter().enumerate() {
                let path = dir.join(format!("{i}.env"));
                std::fs::write(&path, input)
                    .map_err(|e| Error::new(berth_compose::ErrorKind::Io, e.to_string()))?;
                files.push(path);
            }
            dotenv::env_from_files(&files, &lookup)
        }
        (api, _, _) => Err(Error::new(
            berth_compose::ErrorKind::Io,
            format!("case not understood (api {api:?})"),
        )),
    }
}

fn check(case: &J, dir: &Path) -> Option<String> {
    let name = text(case, "name").unwrap_or("?");
    match (
        run(case, dir),
        case.get("expected").and_then(J::as_object),
        case.get("error"),
    ) {
        (Ok(got), Some(want), _) => {
            let mut problems = Vec::new();
            for (k, v) in want {
                if got.get(k).map(String::as_str) != v.as_str() {
                    problems.push(format!("{k}: want {v}, got {:?}", got.get(k)));
                }
            }
            if text(case, "match") == Some("exact") && got.len() != want.len() {
                problems.push(format!("exact match wanted, got {got:?}"));
            }
            for absent in case
                .get("expected_absent")
                .and_then(J::as_array)
                .into_iter()
                .flatten()
            {
                if absent.as_str().is_some_and(|k| got.contains_key(k)) {
                    problems.push(format!("{absent} should be absent"));
                }
            }
            (!problems.is_empty()).then(|| format!("{name}: {}", problems.join("; ")))
        }
        (Err(e), None, Some(J::String(want))) => {
            let got = compose_message(&e);
            let ok = match text(case, "error_match") {
                Some("exact") => got == *want,
                _ => got.contains(want.as_str()),
            };
            (!ok).then(|| format!("{name}: error {got:?} does not match {want:?}"))
        }
        (got, _, _) => Some(format!("{name}: unexpected outcome {got:?}")),
    }
}

#[test]
fn compose_go_dotenv_cases() {
    let path = root().join("cases.json");
    let cases: Vec<J> =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("cases.json")).expect("JSON");
    assert_eq!(cases.len(), 92, "the corpus changed");
    let failures: Vec<String> = cases
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let dir = tempfile::tempdir().expect("temp dir");
            let sub = dir.path().join(i.to_string());
            std::fs::create_dir(&sub).expect("case dir");
            check(c, &sub)
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
