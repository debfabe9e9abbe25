//! End-to-end scenarios for `berth config`: the real binary on real files.
//!
//! Each directory under `tests/fixtures/config/` is one scenario with one intent, written in
//! its `case.json`:
//!
//! ```json
//! { "intent": "an unknown key is reported at its line with a hint",
//!   "args": ["config"],            // after `berth`; the scenario dir is the working dir
//!   "env": {"FOO": "bar"},          // added to a clean environment (PATH and HOME kept)
//!   "stdin": "…",                   // optional
//!   "cwd": "sub/dir",               // optional, relative to the scenario dir
//!   "exit": 1,
//!   "stdout": "expected.yaml",      // optional: stdout must equal this file ($DIR = scenario dir)
//!   "stdout_contains": ["…"],       // optional
//!   "stderr_contains": ["…"] }      // optional
//! ```
//!
//! These need no root: `config` reads files and starts nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(serde::Deserialize)]
struct Case {
    intent: String,
    args: Vec<String>,
    #[serde(default)]
    env: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    stdin: Option<String>,
    #[serde(default)]
    cwd: Option<String>,
    exit: i32,
    #[serde(default)]
    stdout: Option<String>,
    #[serde(default)]
    stdout_contains: Vec<String>,
    #[serde(default)]
    stderr_contains: Vec<String>,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config")
}

fn run_case(dir: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(dir.join("case.json")).map_err(|e| e.to_string())?;
    let case: Case = serde_json::from_str(&text).map_err(|e| format!("case.json: {e}"))?;
    let dir_str = dir.display().to_string();
    let cwd = match &case.cwd {
        Some(c) => dir.join(c),
        None => dir.to_path_buf(),
    };
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.args(case.args.iter().map(|a| a.replace("$DIR", &dir_str)))
        .current_dir(&cwd)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("NO_COLOR", "1")
        .stdin(if case.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in &case.env {
        cmd.env(k, v.replace("$DIR", &dir_str));
    }
    let mut child = cmd.spawn().map_err(|e| format!("spawn berth: {e}"))?;
    if let Some(input) = &case.stdin {
        use std::io::Write;
        let mut stdin = child.stdin.take().ok_or("no stdin")?;
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let mut problems = Vec::new();
    if out.status.code() != Some(case.exit) {
        problems.push(format!(
            "exit code {:?}, want {}",
            out.status.code(),
            case.exit
        ));
    }
    if let Some(file) = &case.stdout {
        let want = std::fs::read_to_string(dir.join(file))
            .map_err(|e| format!("{file}: {e}"))?
            .replace("$DIR", &dir_str);
        if stdout != want {
            problems.push(format!(
                "stdout differs from {file}:\n{}",
                diff(&want, &stdout)
            ));
        }
    }
    for s in &case.stdout_contains {
        let s = s.replace("$DIR", &dir_str);
        if !stdout.contains(&s) {
            problems.push(format!("stdout lacks {s:?}"));
        }
    }
    for s in &case.stderr_contains {
        let s = s.replace("$DIR", &dir_str);
        if !stderr.contains(&s) {
            problems.push(format!("stderr lacks {s:?}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}\n  {}\n--- stdout ---\n{stdout}--- stderr ---\n{stderr}",
            case.intent,
            problems.join("\n  ")
        ))
    }
}

/// A line diff good enough to see what changed.
fn diff(want: &str, got: &str) -> String {
    let (w, g): (Vec<_>, Vec<_>) = (want.lines().collect(), got.lines().collect());
    let mut out = String::new();
    for i in 0..w.len().max(g.len()) {
        match (w.get(i), g.get(i)) {
            (Some(a), Some(b)) if a == b => {}
            (a, b) => {
                out.push_str(&format!(
                    "  line {}: want {:?}\n           got  {:?}\n",
                    i + 1,
                    a,
                    b
                ));
                if out.len() > 2000 {
                    break;
                }
            }
        }
    }
    out
}

#[test]
fn config_scenarios() {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .expect("tests/fixtures/config exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("case.json").is_file())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 10,
        "expected the scenario set, found {}",
        dirs.len()
    );
    let failures: Vec<String> = dirs
        .iter()
        .filter_map(|d| run_case(d).err().map(|e| format!("{}: {e}", d.display())))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} scenarios failed:\n\n{}",
        failures.len(),
        dirs.len(),
        failures.join("\n\n")
    );
}
