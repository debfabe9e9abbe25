//! Phase 0, discovery: which compose files, which project directory, which env files, which
//! profiles and which project name, as Docker Compose (compose-go's `cli` options) decides them.
//!
//! Reads the filesystem (to find and read files) but starts nothing. The process environment
//! and standard input are passed in, so that every rule here is testable with a temp dir.
//!
//! Rules, in compose-go's order:
//! - config files: `-f` (repeatable, relative to the working directory, `-` = stdin); else
//!   `COMPOSE_FILE` split by `COMPOSE_PATH_SEPARATOR` (default `:`); else the first of
//!   `compose.yaml`, `compose.yml`, `docker-compose.yml`, `docker-compose.yaml` found in the
//!   search directory (`--project-directory`, or the working directory) or its parents, plus the
//!   first `compose.override.yml`, `compose.override.yaml`, `docker-compose.override.yml`,
//!   `docker-compose.override.yaml` beside it. Several candidates: the first wins, with a
//!   warning.
//! - project directory: `--project-directory`, else the first file's directory (stdin: the
//!   working directory).
//! - env files: `--env-file` (repeatable, must exist), else `<project dir>/.env` when it is a
//!   file, unless `COMPOSE_DISABLE_ENV_FILE` is true.
//! - profiles: `--profile`, else `COMPOSE_PROFILES` (comma separated).
//! - project name: see [`project_name`].

use std::path::{Path, PathBuf};

use indexmap::IndexMap;

use crate::error::{Error, ErrorKind};

/// Compose file names looked for, in order of preference.
pub const DEFAULT_FILE_NAMES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
];

/// Override file names looked for beside the discovered file, in order of preference.
pub const DEFAULT_OVERRIDE_FILE_NAMES: [&str; 4] = [
    "compose.override.yml",
    "compose.override.yaml",
    "docker-compose.override.yml",
    "docker-compose.override.yaml",
];

/// What the command line and the process give discovery.
#[derive(Clone, Debug, Default)]
pub struct ProjectOptions {
    /// `-f/--file`, in order; `-` reads [`ProjectOptions::stdin`].
    pub files: Vec<String>,
    /// `-p/--project-name`.
    pub project_name: Option<String>,
    /// `--project-directory`.
    pub project_directory: Option<PathBuf>,
    /// `--env-file`, in order.
    pub env_files: Vec<PathBuf>,
    /// `--profile`, in order.
    pub profiles: Vec<String>,
    /// The process's current directory; relative paths are resolved against it.
    pub working_dir: PathBuf,
    /// The process environment (`COMPOSE_FILE`, `COMPOSE_PROFILES`, … are read from it).
    pub environment: IndexMap<String, String>,
    /// The text of standard input, for `-f -` (the caller reads it only when asked to).
    pub stdin: Option<String>,
}

impl ProjectOptions {
    /// Whether `-f -` was given, so the caller knows to read standard input first.
    pub fn reads_stdin(&self) -> bool {
        self.files.iter().any(|f| f == "-")
    }
}

/// One compose file to load.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigFile {
    /// The file's absolute path, or `-` for standard input: the name errors show.
    pub name: String,
    /// The absolute path; `None` for standard input.
    pub path: Option<PathBuf>,
    /// The file's text.
    pub content: String,
}

/// The outcome of discovery.
#[derive(Clone, Debug, PartialEq)]
pub struct Discovered {
    /// The compose files, in load order.
    pub files: Vec<ConfigFile>,
    /// The project directory (absolute).
    pub project_dir: PathBuf,
    /// The env files to read, in order (absolute).
    pub env_files: Vec<PathBuf>,
    /// The active profiles.
    pub profiles: Vec<String>,
    /// Things the user should know (several candidate files, …); the binary prints them.
    pub warnings: Vec<String>,
}

/// Finds the compose files, project directory, env files and profiles for `opts`.
pub fn discover(opts: &ProjectOptions) -> Result<Discovered, Error> {
    let wd = &opts.working_dir;
    let mut warnings = Vec::new();
    let project_directory = opts.project_directory.as_ref().map(|d| absolute(wd, d));

    let mut files = Vec::new();
    if !opts.files.is_empty() {
        for f in &opts.files {
            files.push(read_config(f, wd, opts, "open")?);
        }
    } else if let Some(list) = opts
        .environment
        .get("COMPOSE_FILE")
        .filter(|l| !l.is_empty())
    {
        let sep = match opts.environment.get("COMPOSE_PATH_SEPARATOR") {
            Some(s) if !s.is_empty() => s.as_str(),
            _ => ":",
        };
        for f in list.split(sep) {
            files.push(read_config(f, wd, opts, "stat")?);
        }
    } else {
        let start = project_directory.clone().unwrap_or_else(|| wd.clone());
        for path in find_default_files(&start, &mut warnings) {
            files.push(read_path(path, "open")?);
        }
    }
    if files.is_empty() {
        return Err(
            Error::new(ErrorKind::Io, "no configuration file provided: not found")
                .hint("run berth in a directory with a compose.yaml, or name the file with -f"),
        );
    }

    let project_dir = match project_directory {
        Some(d) => d,
        None => files
            .iter()
            .find_map(|f| {
                f.path
                    .as_ref()
                    .and_then(|p| p.parent())
                    .map(Path::to_path_buf)
            })
            .unwrap_or_else(|| wd.clone()),
    };

    let env_files = env_files(opts, &project_dir)?;
    let profiles = if opts.profiles.is_empty() {
        opts.environment
            .get("COMPOSE_PROFILES")
            .map(|p| {
                p.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    } else {
        opts.profiles.clone()
    };

    Ok(Discovered {
        files,
        project_dir,
        env_files,
        profiles,
        warnings,
    })
}

/// The first default file found in `start` or its parents, and the first override beside it.
fn find_default_files(start: &Path, warnings: &mut Vec<String>) -> Vec<PathBuf> {
    for dir in start.ancestors() {
        let candidates = existing(dir, &DEFAULT_FILE_NAMES);
        let Some(winner) = candidates.first() else {
            continue;
        };
        let mut found = vec![winner.clone()];
        if candidates.len() > 1 {
            warnings.push(multiple_warning("config", &candidates));
        }
        let overrides = existing(dir, &DEFAULT_OVERRIDE_FILE_NAMES);
        if let Some(first) = overrides.first() {
            if overrides.len() > 1 {
                warnings.push(multiple_warning("override", &overrides));
            }
            found.push(first.clone());
        }
        return found;
    }
    Vec::new()
}

fn multiple_warning(what: &str, candidates: &[PathBuf]) -> String {
    let names: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    let used = names.first().cloned().unwrap_or_default();
    format!(
        "found multiple {what} files with supported names: {}; using {used}",
        names.join(", ")
    )
}

fn existing(dir: &Path, names: &[&str]) -> Vec<PathBuf> {
    names
        .iter()
        .map(|n| dir.join(n))
        .filter(|p| p.exists())
        .collect()
}

/// Reads one file named on the command line or in `COMPOSE_FILE`; `verb` is what Go's error
/// would say (`open` for `-f`, `stat` for `COMPOSE_FILE`).
fn read_config(f: &str, wd: &Path, opts: &ProjectOptions, verb: &str) -> Result<ConfigFile, Error> {
    if f == "-" {
        let content = opts.stdin.clone().ok_or_else(|| {
            Error::new(
                ErrorKind::Io,
                "failed to read compose file from standard input",
            )
        })?;
        return Ok(ConfigFile {
            name: "-".to_string(),
            path: None,
            content,
        });
    }
    read_path(absolute(wd, Path::new(f)), verb)
}

fn read_path(path: PathBuf, verb: &str) -> Result<ConfigFile, Error> {
    let name = path.display().to_string();
    match std::fs::read_to_string(&path) {
        Ok(content) => Ok(ConfigFile {
            name,
            path: Some(path),
            content,
        }),
        Err(e) => Err(io_error(verb, &path, &e)),
    }
}

/// An I/O error worded as Go's `*PathError` (`open /x/compose.yaml: no such file or
/// directory`).
fn io_error(verb: &str, path: &Path, e: &std::io::Error) -> Error {
    let cause = match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        std::io::ErrorKind::IsADirectory => "is a directory".to_string(),
        _ => e.to_string(),
    };
    Error::new(ErrorKind::Io, format!("{verb} {}: {cause}", path.display()))
}

fn env_files(opts: &ProjectOptions, project_dir: &Path) -> Result<Vec<PathBuf>, Error> {
    if !opts.env_files.is_empty() {
        let mut out = Vec::new();
        for f in &opts.env_files {
            let p = absolute(&opts.working_dir, f);
            if !p.exists() {
                return Err(Error::new(
                    ErrorKind::Io,
                    format!("couldn't find env file: {}", p.display()),
                ));
            }
            if p.is_dir() {
                return Err(Error::new(
                    ErrorKind::Io,
                    format!("{} is a directory", p.display()),
                ));
            }
            out.push(p);
        }
        return Ok(out);
    }
    if let Some(v) = opts.environment.get("COMPOSE_DISABLE_ENV_FILE") {
        let disabled = parse_go_bool(v).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidValue,
                format!("strconv.ParseBool: parsing {v:?}: invalid syntax"),
            )
            .hint("set COMPOSE_DISABLE_ENV_FILE to true or false")
        })?;
        if disabled {
            return Ok(Vec::new());
        }
    }
    let default = project_dir.join(".env");
    Ok(if default.is_file() {
        vec![default]
    } else {
        Vec::new()
    })
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// `p` made absolute against `base`, with `.` and `..` components removed lexically (as Go's
/// `filepath.Abs`, which cleans).
fn absolute(base: &Path, p: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// compose-go's normalisation of a directory name into a project name: lower case, only
/// `[a-z0-9_-]` kept, leading `_` and `-` removed.
pub fn normalize_project_name(s: &str) -> String {
    let kept: String = s
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
        .collect();
    kept.trim_start_matches(['_', '-']).to_string()
}

fn invalid_project_name(v: &str) -> Error {
    Error::new(
        ErrorKind::InvalidValue,
        format!(
            "invalid project name {v:?}: must consist only of lowercase alphanumeric characters, \
             hyphens, and underscores as well as start with a letter or number"
        ),
    )
}

/// The project name, by compose-go's precedence: `-p` (`cli`), then `COMPOSE_PROJECT_NAME`
/// (`env`; empty counts as unset), then the last top-level `name:` of the files (`from_files`,
/// normalised as compose-go does), then the project directory's base name, normalised.
///
/// An explicit `-p` or `COMPOSE_PROJECT_NAME` that is not already a valid name is an error, as
/// is a name that ends up empty.
pub fn project_name(
    cli: Option<&str>,
    env: Option<&str>,
    from_files: Option<&str>,
    project_dir: &Path,
) -> Result<String, Error> {
    let explicit = cli
        .filter(|s| !s.is_empty())
        .or(env.filter(|s| !s.is_empty()));
    let name = match explicit {
        Some(n) => n.to_string(),
        None => {
            let from_files = from_files
                .map(normalize_project_name)
                .filter(|s| !s.is_empty());
            match from_files {
                Some(n) => n,
                None => {
                    let base = project_dir
                        .file_name()
                        .map(|b| b.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    normalize_project_name(&base)
                }
            }
        }
    };
    if name.is_empty() {
        return Err(
            Error::new(ErrorKind::InvalidValue, "project name must not be empty")
                .hint("name the project with -p NAME or a top-level `name:`"),
        );
    }
    if normalize_project_name(&name) != name {
        return Err(invalid_project_name(&name));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn opts(wd: &Path) -> ProjectOptions {
        ProjectOptions {
            working_dir: wd.to_path_buf(),
            ..ProjectOptions::default()
        }
    }

    fn touch(p: &Path, text: &str) {
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(p, text).unwrap();
    }

    fn names(d: &Discovered) -> Vec<String> {
        d.files.iter().map(|f| f.name.clone()).collect()
    }

    #[test]
    fn finds_compose_yaml_in_a_parent_with_its_override() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        touch(&root.join("compose.yaml"), "services: {}\n");
        touch(&root.join("compose.override.yml"), "services: {}\n");
        let sub = root.join("a/b");
        fs::create_dir_all(&sub).unwrap();
        let d = discover(&opts(&sub)).unwrap();
        assert_eq!(
            names(&d),
            vec![
                root.join("compose.yaml").display().to_string(),
                root.join("compose.override.yml").display().to_string()
            ]
        );
        assert_eq!(d.project_dir, root);
        assert_eq!(d.files[0].content, "services: {}\n");
        assert!(d.warnings.is_empty());
    }

    #[test]
    fn prefers_compose_yaml_over_docker_compose_yml_and_warns() {
        let tmp = tempfile::tempdir().unwrap();
        touch(&tmp.path().join("docker-compose.yml"), "a: 1\n");
        touch(&tmp.path().join("compose.yaml"), "b: 1\n");
        let d = discover(&opts(tmp.path())).unwrap();
        assert_eq!(d.files.len(), 1);
        assert_eq!(d.files[0].content, "b: 1\n");
        assert_eq!(d.warnings.len(), 1);
        assert!(
            d.warnings[0].contains("docker-compose.yml"),
            "{}",
            d.warnings[0]
        );
    }

    #[test]
    fn nothing_found_is_docker_composes_error() {
        let tmp = tempfile::tempdir().unwrap();
        let err = discover(&opts(tmp.path())).unwrap_err();
        assert_eq!(err.message(), "no configuration file provided: not found");
        assert_eq!(err.kind, ErrorKind::Io);
    }

    #[test]
    fn dash_f_is_relative_to_the_working_dir_and_sets_the_project_dir() {
        let tmp = tempfile::tempdir().unwrap();
        touch(&tmp.path().join("compose.yaml"), "x: 1\n");
        touch(&tmp.path().join("sub/other.yml"), "y: 1\n");
        touch(&tmp.path().join("sub/.env"), "A=1\n");
        let mut o = opts(tmp.path());
        o.files = vec!["sub/other.yml".into(), "-".into()];
        o.stdin = Some("z: 1\n".into());
        let d = discover(&o).unwrap();
        assert_eq!(
            names(&d),
            vec![
                tmp.path().join("sub/other.yml").display().to_string(),
                "-".into()
            ]
        );
        assert_eq!(d.files[1].content, "z: 1\n");
        assert_eq!(d.project_dir, tmp.path().join("sub"));
        assert_eq!(d.env_files, vec![tmp.path().join("sub/.env")]);
    }

    #[test]
    fn missing_dash_f_names_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let mut o = opts(tmp.path());
        o.files = vec!["nope.yaml".into()];
        let err = discover(&o).unwrap_err();
        assert_eq!(
            err.message(),
            format!(
                "open {}: no such file or directory",
                tmp.path().join("nope.yaml").display()
            )
        );
    }

    #[test]
    fn stdin_only_uses_the_working_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let mut o = opts(tmp.path());
        o.files = vec!["-".into()];
        assert!(o.reads_stdin());
        assert!(discover(&o).is_err(), "no stdin text given");
        o.stdin = Some("services: {}".into());
        let d = discover(&o).unwrap();
        assert_eq!(d.project_dir, tmp.path());
    }

    #[test]
    fn compose_file_env_with_separator() {
        let tmp = tempfile::tempdir().unwrap();
        touch(&tmp.path().join("a.yml"), "a: 1\n");
        touch(&tmp.path().join("b.yml"), "b: 1\n");
        touch(&tmp.path().join("compose.yaml"), "c: 1\n");
        let mut o = opts(tmp.path());
        o.environment
            .insert("COMPOSE_FILE".into(), "a.yml;b.yml".into());
        o.environment
            .insert("COMPOSE_PATH_SEPARATOR".into(), ";".into());
        let d = discover(&o).unwrap();
        assert_eq!(
            d.files
                .iter()
                .map(|f| f.content.as_str())
                .collect::<Vec<_>>(),
            ["a: 1\n", "b: 1\n"]
        );
        // -f wins over COMPOSE_FILE.
        o.files = vec!["compose.yaml".into()];
        assert_eq!(discover(&o).unwrap().files[0].content, "c: 1\n");
        // A missing COMPOSE_FILE entry is reported like compose-go's stat.
        o.files.clear();
        o.environment
            .insert("COMPOSE_FILE".into(), "a.yml;zz.yml".into());
        let err = discover(&o).unwrap_err();
        assert!(
            err.message().starts_with("stat ")
                && err.message().ends_with("zz.yml: no such file or directory")
        );
    }

    #[test]
    fn project_directory_is_searched_and_used() {
        let tmp = tempfile::tempdir().unwrap();
        touch(&tmp.path().join("proj/compose.yml"), "p: 1\n");
        let mut o = opts(tmp.path());
        o.project_directory = Some("proj".into());
        let d = discover(&o).unwrap();
        assert_eq!(d.project_dir, tmp.path().join("proj"));
        assert_eq!(d.files[0].content, "p: 1\n");
    }

    #[test]
    fn env_files_and_profiles() {
        let tmp = tempfile::tempdir().unwrap();
        touch(&tmp.path().join("compose.yaml"), "x: 1\n");
        touch(&tmp.path().join(".env"), "A=1\n");
        touch(&tmp.path().join("one.env"), "B=1\n");
        let mut o = opts(tmp.path());
        o.environment
            .insert("COMPOSE_PROFILES".into(), "debug, web,,".into());
        let d = discover(&o).unwrap();
        assert_eq!(d.env_files, vec![tmp.path().join(".env")]);
        assert_eq!(d.profiles, vec!["debug".to_string(), "web".to_string()]);

        o.profiles = vec!["only".into()];
        o.env_files = vec!["one.env".into()];
        let d = discover(&o).unwrap();
        assert_eq!(d.env_files, vec![tmp.path().join("one.env")]);
        assert_eq!(d.profiles, vec!["only".to_string()]);

        o.env_files = vec!["missing.env".into()];
        let err = discover(&o).unwrap_err();
        assert!(
            err.message().starts_with("couldn't find env file: "),
            "{}",
            err.message()
        );

        o.env_files.clear();
        o.environment
            .insert("COMPOSE_DISABLE_ENV_FILE".into(), "true".into());
        assert!(discover(&o).unwrap().env_files.is_empty());
        o.environment
            .insert("COMPOSE_DISABLE_ENV_FILE".into(), "maybe".into());
        assert_eq!(discover(&o).unwrap_err().kind, ErrorKind::InvalidValue);
    }

    #[test]
    fn project_name_precedence() {
        let dir = Path::new("/srv/My_App.v2");
        assert_eq!(
            project_name(Some("cli"), Some("env"), Some("file"), dir).unwrap(),
            "cli"
        );
        assert_eq!(
            project_name(None, Some("env"), Some("file"), dir).unwrap(),
            "env"
        );
        assert_eq!(
            project_name(None, Some(""), Some("file"), dir).unwrap(),
            "file"
        );
        assert_eq!(
            project_name(None, None, Some("File Name"), dir).unwrap(),
            "filename"
        );
        assert_eq!(project_name(None, None, None, dir).unwrap(), "my_appv2");
        assert_eq!(
            project_name(None, None, Some("__"), Path::new("/x/-Dir")).unwrap(),
            "dir"
        );
    }

    #[test]
    fn explicit_invalid_names_are_errors() {
        let dir = Path::new("/srv/app");
        let err = project_name(Some("MyApp"), None, None, dir).unwrap_err();
        assert_eq!(
            err.message(),
            "invalid project name \"MyApp\": must consist only of lowercase alphanumeric \
             characters, hyphens, and underscores as well as start with a letter or number"
        );
        assert!(project_name(None, Some("_app"), None, dir).is_err());
        let err = project_name(None, None, None, Path::new("/")).unwrap_err();
        assert_eq!(err.message(), "project name must not be empty");
    }
}
