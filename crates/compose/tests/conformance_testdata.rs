//! compose-go's loader scenarios (`testdata/expectations.json`), run through berth's whole
//! loader: extends, include, cycles, empty files, remote resources.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_compose::loader::{self, ConfigFile, LoadOptions, ResourceLoader};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/compose-go")
}

#[derive(serde::Deserialize)]
struct Expectations {
    scenarios: Vec<Scenario>,
}

#[derive(serde::Deserialize)]
struct Scenario {
    name: String,
    working_dir: Option<String>,
    files: Vec<FileSpec>,
    environment: Option<std::collections::BTreeMap<String, Option<String>>>,
    #[serde(default)]
    options: std::collections::BTreeMap<String, bool>,
    project_name: Option<String>,
    #[serde(default)]
    resource_loaders: std::collections::BTreeMap<String, String>,
    expect: String,
    error: Option<String>,
    error_match: Option<String>,
}

#[derive(serde::Deserialize)]
struct FileSpec {
    filename: Option<String>,
    content: Option<String>,
    content_from: Option<String>,
}

/// compose-go's test loader for `remote:X` references: a file under a local directory.
#[derive(Debug)]
struct PrefixLoader {
    prefix: String,
    dir: PathBuf,
}

impl ResourceLoader for PrefixLoader {
    fn accept(&self, path: &str) -> bool {
        path.starts_with(&format!("{}:", self.prefix))
    }
    fn load(&self, path: &str) -> Result<PathBuf, berth_compose::Error> {
        let rest = &path[self.prefix.len() + 1..];
        let p = self.dir.join(rest);
        if p.exists() {
            Ok(p)
        } else {
            Err(berth_compose::Error::new(
                berth_compose::ErrorKind::Io,
                format!("{}: no such file or directory", p.display()),
            ))
        }
    }
}

fn run(s: &Scenario) -> Result<(), String> {
    let root = root();
    let working_dir = match &s.working_dir {
        Some(d) => root.join(d),
        None => root.clone(),
    };
    let working_dir = working_dir
        .canonicalize()
        .map_err(|e| format!("working dir: {e}"))?;
    let mut files = Vec::new();
    for f in &s.files {
        let name = f.filename.clone().unwrap_or_else(|| "(inline)".to_string());
        let (content, path) = match (&f.content, &f.content_from) {
            (Some(c), _) => (c.clone(), working_dir.join(&name)),
            (None, Some(from)) => (
                std::fs::read_to_string(root.join(from)).map_err(|e| format!("{from}: {e}"))?,
                working_dir.join(&name),
            ),
            (None, None) => {
                let p = root.join(&name);
                (
                    std::fs::read_to_string(&p).map_err(|e| format!("{name}: {e}"))?,
                    p,
                )
            }
        };
        files.push(ConfigFile {
            name,
            path: Some(path),
            content,
        });
    }
    let mut env = loader::Environment::new();
    for (k, v) in s.environment.iter().flatten() {
        if let Some(v) = v {
            env.insert(k.clone(), v.clone());
        }
    }
    let mut opts = LoadOptions::new(files, working_dir, env);
    opts.explicit_name = s.project_name.clone();
    opts.normalize = !s.options.get("SkipNormalization").copied().unwrap_or(false);
    opts.consistency = !s
        .options
        .get("SkipConsistencyCheck")
        .copied()
        .unwrap_or(false);
    opts.resolve_paths = s.options.get("ResolvePaths").copied().unwrap_or(true);
    for (prefix, dir) in &s.resource_loaders {
        opts.resource_loaders.push(Arc::new(PrefixLoader {
            prefix: prefix.clone(),
            dir: root.join(dir),
        }));
    }
    let result = loader::load(&opts);
    match (s.expect.as_str(), result) {
        ("valid", Ok(_)) => Ok(()),
        ("valid", Err(e)) => Err(format!("expected valid, got error: {e}")),
        ("error", Ok(_)) => Err(format!("expected error {:?}, loaded fine", s.error)),
        ("error", Err(e)) => {
            let want = s.error.clone().unwrap_or_default();
            let got = e.message().to_string();
            let ok = match s.error_match.as_deref() {
                Some("exact") => got == want,
                Some("prefix") => got.starts_with(&want),
                Some("contains") => got.contains(&want),
                Some("not_exist") => e.kind == berth_compose::ErrorKind::Io,
                _ => true,
            };
            if ok {
                Ok(())
            } else {
                Err(format!(
                    "error {got:?} does not match {:?} {want:?}",
                    s.error_match
                ))
            }
        }
        (other, _) => Err(format!("unknown expectation {other}")),
    }
}

#[test]
fn compose_go_loader_scenarios() {
    let text = std::fs::read_to_string(root().join("testdata/expectations.json")).unwrap();
    let exp: Expectations = serde_json::from_str(&text).unwrap();
    assert_eq!(exp.scenarios.len(), 37);
    let failures: Vec<String> = exp
        .scenarios
        .iter()
        .filter_map(|s| run(s).err().map(|e| format!("{}: {e}", s.name)))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} scenarios failed:\n{}",
        failures.len(),
        exp.scenarios.len(),
        failures.join("\n")
    );
}
