//! The loader: runs the phases of the pipeline in order (crate README.md lists them).
//!
//! Per file, and per YAML document in it: parse → interpolate → include → extends → merge into
//! the model → unicity → canonical form → unicity (canonical ports can reveal duplicates). Then,
//! for the whole model: paths → environment from `env_file` → normalize (with the project name)
//! → profiles → consistency → typed `Project` → service graph.
//!
//! `include:` is handled here because it is a recursive load: each included project is loaded
//! with its own project directory and env files, its paths resolved against its own directory,
//! and its resources added to the including file's model; one defined on both sides (and not
//! identical) is a conflict, as in compose-go v2.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;

use crate::error::{Error, ErrorKind, Result};
use crate::yaml::{self, Key, Loc, Node, Value, YamlPath};
use crate::{
    canonical, consistency, de, defaults, discovery, dotenv, extends, interpolate, merge, model,
    normalize, paths, profiles, unicity,
};

/// The environment used for interpolation and for resolving `environment:` entries without a
/// value: the shell environment over the env files.
pub type Environment = IndexMap<String, String>;

pub use crate::discovery::ConfigFile;

/// Resolves references that are not local paths (`remote:…`, later git or OCI includes) in
/// `include` and `extends.file` to a local file.
pub trait ResourceLoader: std::fmt::Debug + Send + Sync {
    fn accept(&self, path: &str) -> bool;
    fn load(&self, path: &str) -> Result<PathBuf>;
}

/// Everything the loader needs, resolved by [`crate::discovery`] and the binary.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub files: Vec<ConfigFile>,
    /// The project directory: relative paths in the files are relative to it.
    pub project_dir: PathBuf,
    /// Shell environment over env files.
    pub environment: Environment,
    /// `-p` or `COMPOSE_PROJECT_NAME` (an invalid explicit name is an error, not normalised).
    pub explicit_name: Option<String>,
    pub profiles: Vec<String>,
    /// Services named on the command line (activated whatever their profiles).
    pub services: Vec<String>,
    pub interpolate: bool,
    pub normalize: bool,
    pub resolve_paths: bool,
    pub consistency: bool,
    pub home: Option<PathBuf>,
    pub resource_loaders: Vec<std::sync::Arc<dyn ResourceLoader>>,
}

impl LoadOptions {
    pub fn new(
        files: Vec<ConfigFile>,
        project_dir: PathBuf,
        environment: Environment,
    ) -> LoadOptions {
        LoadOptions {
            files,
            project_dir,
            environment,
            explicit_name: None,
            profiles: Vec::new(),
            services: Vec::new(),
            interpolate: true,
            normalize: true,
            resolve_paths: true,
            consistency: true,
            home: None,
            resource_loaders: Vec::new(),
        }
    }
}

/// A non-fatal finding, printed by the binary as `WARN[0000] …` the way docker compose does.
#[derive(Clone, Debug, PartialEq)]
pub struct Warning {
    pub loc: Loc,
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The result of a load.
#[derive(Debug)]
pub struct Loaded {
    pub name: String,
    /// The final tree (canonical, normalised, profiles applied).
    pub tree: Node,
    pub project: model::Project,
    pub warnings: Vec<Warning>,
    /// Every profile the files declare (before profiles were applied), sorted.
    pub all_profiles: Vec<String>,
}

/// Loads, validates and types a project.
pub fn load(opts: &LoadOptions) -> Result<Loaded> {
    let mut warnings = Vec::new();
    // Each file is parsed once: the project name comes from the parsed documents, which then
    // go through the pipeline.
    let parsed = parse_files(&opts.files)?;
    let name = project_name(opts, &parsed, &mut warnings)?;
    let mut env = opts.environment.clone();
    env.insert("COMPOSE_PROJECT_NAME".to_string(), name.clone());

    let mut ctx = Ctx {
        opts,
        warnings: &mut warnings,
        include_stack: Vec::new(),
    };
    let mut tree = ctx.load_parsed(&opts.files, parsed, &opts.project_dir, &env)?;
    if tree.as_map().is_none_or(|m| m.is_empty()) {
        let file = opts
            .files
            .first()
            .map(|f| f.name.clone())
            .unwrap_or_default();
        return Err(Error::new(ErrorKind::Empty, "empty compose file").at(Loc {
            file: yaml::FileId::intern(&file),
            line: 0,
            col: 0,
        }));
    }
    if let Some(m) = tree.as_map_mut() {
        m.insert(Key::new("name"), Node::string(name.clone()));
        m.shift_remove("include");
    }
    resolve_environment(&mut tree, &env)?;
    if opts.normalize {
        let lookup = |k: &str| env.get(k).cloned();
        normalize::normalize_with_env(&mut tree, &name, lookup)?;
    }
    let all_profiles = profiles::all_profiles(&tree);
    profiles::apply_profiles(&mut tree, &opts.profiles, &opts.services)?;
    select_services(&mut tree, &opts.services);
    if opts.consistency {
        consistency::check(&tree)?;
    }
    let project: model::Project = de::from_node(&tree)?;
    Ok(Loaded {
        name,
        tree,
        project,
        warnings,
        all_profiles,
    })
}

/// The project name: `-p`/`COMPOSE_PROJECT_NAME` (must already be valid), else the last
/// `name:` of the files (interpolated, normalised), else the project directory's basename
/// (normalised). compose-go decides it the same way, before loading.
fn project_name(
    opts: &LoadOptions,
    parsed: &[Vec<Node>],
    warnings: &mut Vec<Warning>,
) -> Result<String> {
    let mut from_files = None;
    if opts.explicit_name.is_none() {
        for doc in parsed.iter().flatten() {
            if let Some(n) = doc.get("name").filter(|n| !n.is_null()) {
                from_files = Some(n.clone());
            }
        }
    }
    let from_files = match from_files {
        Some(mut n) => {
            if opts.interpolate {
                let lookup = |k: &str| opts.environment.get(k).cloned();
                let ws = interpolate::interpolate(&mut n, &lookup)?;
                warnings.extend(ws.into_iter().map(|w| Warning {
                    loc: w.loc,
                    message: w.to_string(),
                }));
            }
            n.scalar_text()
        }
        None => None,
    };
    discovery::project_name(
        opts.explicit_name.as_deref(),
        None,
        from_files.as_deref(),
        &opts.project_dir,
    )
}

/// The documents of every file, in order.
fn parse_files(files: &[ConfigFile]) -> Result<Vec<Vec<Node>>> {
    files
        .iter()
        .map(|f| Ok(yaml::parse_all(&f.name, &f.content)?))
        .collect()
}

struct Ctx<'a> {
    opts: &'a LoadOptions,
    warnings: &'a mut Vec<Warning>,
    /// Files being included, outermost first, to refuse include cycles.
    include_stack: Vec<String>,
}

impl Ctx<'_> {
    /// Loads files into one merged, canonical tree whose relative paths are resolved against
    /// `dir` (when path resolution is on).
    fn load_files(&mut self, files: &[ConfigFile], dir: &Path, env: &Environment) -> Result<Node> {
        let parsed = parse_files(files)?;
        self.load_parsed(files, parsed, dir, env)
    }

    /// [`Ctx::load_files`] for files already parsed (`parsed[i]` are the documents of `files[i]`).
    fn load_parsed(
        &mut self,
        files: &[ConfigFile],
        parsed: Vec<Vec<Node>>,
        dir: &Path,
        env: &Environment,
    ) -> Result<Node> {
        let mut dict = Node::empty_map();
        for (f, docs) in files.iter().zip(parsed) {
            if docs.is_empty() && files.len() == 1 {
                return Err(Error::new(ErrorKind::Empty, "empty compose file").at(Loc {
                    file: yaml::FileId::intern(&f.name),
                    line: 0,
                    col: 0,
                }));
            }
            for doc in docs {
                dict = self.load_document(dict, doc, f, dir, env)?;
            }
        }
        let mut dict = self.finish_model(dict)?;
        defaults::apply(&mut dict);
        if self.opts.resolve_paths {
            paths::resolve_paths(&mut dict, dir, self.opts.home.as_deref())?;
        }
        Ok(dict)
    }

    fn load_document(
        &mut self,
        dict: Node,
        mut doc: Node,
        f: &ConfigFile,
        dir: &Path,
        env: &Environment,
    ) -> Result<Node> {
        if doc.is_null() {
            return Ok(dict);
        }
        if doc.as_map().is_none() {
            return Err(Error::new(
                ErrorKind::InvalidValue,
                "top-level object must be a mapping",
            )
            .at(doc.loc));
        }
        if self.opts.interpolate {
            let lookup = |k: &str| env.get(k).cloned();
            let ws = interpolate::interpolate(&mut doc, &lookup)?;
            self.warnings.extend(ws.into_iter().map(|w| Warning {
                loc: w.loc,
                message: w.to_string(),
            }));
        }
        // The absolute path (docker compose names the file so in its warnings), or `-`.
        let full_name = f
            .path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| f.name.clone());
        self.include_stack.push(full_name.clone());
        let included = self.apply_include(&mut doc, dir, env);
        self.include_stack.pop();
        included?;
        // `extends.file` in the project's own files is relative to the project directory, as
        // in compose-go; inside an extended file, to that file's directory (extends does that).
        extends::apply_extends(&mut doc, dir, &mut ExtendsCtx { ctx: self, env })?;
        if let Some(v) = doc.as_map_mut().and_then(|m| m.shift_remove("version")) {
            self.warnings.push(Warning {
                loc: v.loc,
                message: format!(
                    "{full_name}: the attribute `version` is obsolete, it will be ignored, please remove it to avoid potential confusion"
                ),
            });
        }
        merge::merge(dict, doc)
    }

    /// Unicity, canonical form, unicity — compose-go runs them after every file; once after the
    /// last gives the same model (merging accepts short and long forms alike, and keeping each
    /// key's first position with its last value commutes with appending), without walking the
    /// whole model again for every file.
    fn finish_model(&mut self, dict: Node) -> Result<Node> {
        let mut dict = unicity::enforce_unicity(dict)?;
        let ws = canonical::canonicalize(&mut dict)?;
        self.warnings.extend(ws.into_iter().map(|w| Warning {
            loc: w.loc,
            message: w.message,
        }));
        unicity::enforce_unicity(dict)
    }

    /// A path in `include` or `extends.file`: through a resource loader that accepts it, else
    /// relative to `dir`.
    fn resolve_resource(&self, dir: &Path, p: &str) -> Result<PathBuf> {
        match self.opts.resource_loaders.iter().find(|l| l.accept(p)) {
            Some(l) => l.load(p),
            None => Ok(absolutize(dir, p)),
        }
    }

    /// `include:` — every entry loaded as a project of its own, its resources added to `doc`.
    fn apply_include(&mut self, doc: &mut Node, dir: &Path, env: &Environment) -> Result<()> {
        let Some(includes) = doc.as_map_mut().and_then(|m| m.shift_remove("include")) else {
            return Ok(());
        };
        let path = YamlPath::root().key("include");
        let entries = match &includes.value {
            Value::Null => return Ok(()),
            Value::Seq(items) => items.clone(),
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidValue,
                    format!("`include` must be a list, found {}", includes.kind_name()),
                )
                .at(includes.loc)
                .path(path));
            }
        };
        for (i, entry) in entries.iter().enumerate() {
            let epath = path.index(i);
            let spec = IncludeSpec::from_node(entry, &epath)?;
            if spec.paths.is_empty() {
                return Err(Error::new(ErrorKind::InvalidValue, "include needs a path")
                    .at(entry.loc)
                    .path(epath));
            }
            let mut files = Vec::with_capacity(spec.paths.len());
            for p in &spec.paths {
                files.push(
                    self.resolve_resource(dir, p)
                        .map_err(|e| e.at(entry.loc).path(epath.clone()))?,
                );
            }
            let main = files[0].display().to_string();
            if self.include_stack.contains(&main) {
                let mut chain = self.include_stack.clone();
                chain.push(main);
                return Err(Error::new(
                    ErrorKind::Cycle,
                    format!(
                        "include cycle detected:\n{}\n include {}",
                        chain[0],
                        chain[1..].join("\n include ")
                    ),
                )
                .at(entry.loc)
                .path(epath));
            }
            let project_dir = match &spec.project_directory {
                Some(d) => absolutize(dir, d),
                None => files[0]
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| dir.to_path_buf()),
            };
            let env_files: Vec<PathBuf> = if spec.env_files.is_empty() {
                let f = project_dir.join(".env");
                if f.is_file() { vec![f] } else { Vec::new() }
            } else {
                spec.env_files.iter().map(|f| absolutize(dir, f)).collect()
            };
            let mut sub_env = env.clone();
            for ef in &env_files {
                let lookup = |k: &str| sub_env.get(k).cloned();
                let values = dotenv::read_file(ef, &lookup)
                    .map_err(|e| e.at(entry.loc).path(epath.clone()))?;
                // The including project's environment wins (compose-go's Mapping.Merge adds
                // only what is not defined yet), as the shell environment wins over `.env`.
                for (k, v) in values {
                    sub_env.entry(k).or_insert(v);
                }
            }
            let mut configs = Vec::new();
            for file in &files {
                let content = std::fs::read_to_string(file).map_err(|e| {
                    Error::new(
                        ErrorKind::Io,
                        format!("failed to read included file {}: {e}", file.display()),
                    )
                    .at(entry.loc)
                    .path(epath.clone())
                })?;
                configs.push(ConfigFile {
                    name: file.display().to_string(),
                    path: Some(file.clone()),
                    content,
                });
            }
            let mut imported = self.load_files(&configs, &project_dir, &sub_env)?;
            resolve_environment(&mut imported, &sub_env)?;
            import_resources(&imported, doc, entry.loc)?;
        }
        Ok(())
    }
}

/// One `include:` entry in long form.
struct IncludeSpec {
    paths: Vec<String>,
    project_directory: Option<String>,
    env_files: Vec<String>,
}

impl IncludeSpec {
    fn from_node(n: &Node, path: &YamlPath) -> Result<IncludeSpec> {
        let strings = |n: &Node, p: &YamlPath| -> Result<Vec<String>> {
            match &n.value {
                Value::String(s) => Ok(vec![s.clone()]),
                Value::Seq(items) => items
                    .iter()
                    .enumerate()
                    .map(|(i, x)| {
                        x.as_str().map(str::to_string).ok_or_else(|| {
                            Error::new(
                                ErrorKind::InvalidValue,
                                format!("must be a string, found {}", x.kind_name()),
                            )
                            .at(x.loc)
                            .path(p.index(i))
                        })
                    })
                    .collect(),
                Value::Null => Ok(Vec::new()),
                _ => Err(Error::new(
                    ErrorKind::InvalidValue,
                    format!(
                        "must be a string or a list of strings, found {}",
                        n.kind_name()
                    ),
                )
                .at(n.loc)
                .path(p.clone())),
            }
        };
        match &n.value {
            Value::String(s) => Ok(IncludeSpec {
                paths: vec![s.clone()],
                project_directory: None,
                env_files: Vec::new(),
            }),
            Value::Map(m) => {
                let mut spec = IncludeSpec {
                    paths: Vec::new(),
                    project_directory: None,
                    env_files: Vec::new(),
                };
                for (k, v) in m {
                    let p = path.key(k.as_str());
                    match k.as_str() {
                        "path" => spec.paths = strings(v, &p)?,
                        "env_file" => spec.env_files = strings(v, &p)?,
                        "project_directory" => {
                            spec.project_directory = v.as_str().map(str::to_string)
                        }
                        other if other.starts_with("x-") => {}
                        other => {
                            return Err(Error::new(
                                ErrorKind::UnknownKey,
                                format!("additional property {other:?} is not allowed"),
                            )
                            .at(k.loc)
                            .path(path.clone())
                            .hint("include entries take path, project_directory and env_file"));
                        }
                    }
                }
                Ok(spec)
            }
            _ => Err(Error::new(
                ErrorKind::InvalidValue,
                format!("invalid include entry: {}", n.kind_name()),
            )
            .at(n.loc)
            .path(path.clone())),
        }
    }
}

/// Adds the included project's resources to the including file's model; a name defined on both
/// sides with different content is a conflict.
fn import_resources(imported: &Node, doc: &mut Node, at: Loc) -> Result<()> {
    let Some(target) = doc.as_map_mut() else {
        return Ok(());
    };
    for kind in ["services", "volumes", "networks", "secrets", "configs"] {
        let Some(from) = imported.get(kind).and_then(Node::as_map) else {
            continue;
        };
        let entry = target.entry(Key::new(kind)).or_insert_with(Node::empty_map);
        if entry.is_null() {
            *entry = Node::empty_map();
        }
        let Some(to) = entry.as_map_mut() else {
            return Err(
                Error::new(ErrorKind::InvalidValue, format!("{kind} must be a mapping"))
                    .at(entry.loc),
            );
        };
        for (name, res) in from {
            if let Some(existing) = to.get(name.as_str()) {
                if existing == res {
                    continue;
                }
                return Err(Error::new(ErrorKind::Conflict, format!("{kind}.{name} conflicts with imported resource"))
                    .at(if existing.loc.is_known() { existing.loc } else { at })
                    .hint("a service, network, volume, secret or config may be defined by the included file or by the including file, not both"));
            }
            to.insert(name.clone(), res.clone());
        }
    }
    Ok(())
}

/// `env_file:` entries of every service merged under its `environment:` (the file's values
/// lose to `environment:`), and `environment:` entries without a value resolved from the
/// environment, as compose-go's ResolveEnvironment. Only keys that exist are resolved; an
/// unset variable stays without value (null).
fn resolve_environment(tree: &mut Node, env: &Environment) -> Result<()> {
    let Some(services) = tree.get_mut("services").and_then(Node::as_map_mut) else {
        return Ok(());
    };
    for (sname, svc) in services.iter_mut() {
        let Some(svc_map) = svc.as_map_mut() else {
            continue;
        };
        let mut from_files: IndexMap<String, String> = IndexMap::new();
        if let Some(files) = svc_map.get("env_file").and_then(Node::as_seq) {
            for (i, f) in files.iter().enumerate() {
                let (path, required) = match &f.value {
                    Value::String(s) => (s.clone(), true),
                    Value::Map(m) => (
                        m.get("path")
                            .and_then(Node::as_str)
                            .unwrap_or_default()
                            .to_string(),
                        m.get("required").and_then(Node::as_bool).unwrap_or(true),
                    ),
                    _ => continue,
                };
                let p = Path::new(&path);
                if !p.exists() {
                    if required {
                        return Err(Error::new(
                            ErrorKind::Io,
                            format!("env file {path} not found"),
                        )
                        .at(f.loc)
                        .path(
                            YamlPath::root()
                                .key("services")
                                .key(sname.as_str())
                                .key("env_file")
                                .index(i),
                        )
                        .hint("create the file, fix the path, or mark it `required: false`"));
                    }
                    continue;
                }
                let lookup = |k: &str| env.get(k).cloned().or_else(|| from_files.get(k).cloned());
                let values = dotenv::read_file(p, &lookup)?;
                from_files.extend(values);
            }
        }
        // Like `docker compose config` (compose-go's WithDiscardEnvFile): once their values are
        // in `environment`, the env files themselves are no longer part of the model.
        svc_map.shift_remove("env_file");
        let has_env = svc_map.contains_key("environment");
        if from_files.is_empty() && !has_env {
            continue;
        }
        let mut merged = crate::yaml::Map::new();
        for (k, v) in from_files {
            merged.insert(Key::new(k), Node::string(v));
        }
        if let Some(own) = svc_map.get("environment").and_then(Node::as_map) {
            for (k, v) in own {
                merged.insert(k.clone(), v.clone());
            }
        }
        for (k, v) in merged.iter_mut() {
            if v.is_null()
                && let Some(val) = env.get(k.as_str())
            {
                *v = Node::string(val.clone()).with_loc(v.loc);
            }
        }
        let loc = svc_map
            .get("environment")
            .map(|n| n.loc)
            .unwrap_or(Loc::NONE);
        svc_map.insert(Key::new("environment"), Node::map(merged).with_loc(loc));
    }
    Ok(())
}

/// Services named on the command line: only they and their dependencies (transitively) stay,
/// as compose-go's `WithSelectedServices`. Nothing to do when none are named.
fn select_services(tree: &mut Node, selected: &[String]) {
    if selected.is_empty() {
        return;
    }
    let Some(services) = tree.get_mut("services").and_then(Node::as_map_mut) else {
        return;
    };
    let mut keep: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let mut queue: Vec<String> = selected.to_vec();
    while let Some(name) = queue.pop() {
        if !keep.insert(name.clone()) {
            continue;
        }
        if let Some(deps) = services
            .get(name.as_str())
            .and_then(|s| s.get("depends_on"))
            .and_then(Node::as_map)
        {
            queue.extend(deps.keys().map(|k| k.name.clone()));
        }
    }
    services.retain(|k, _| keep.contains(&k.name));
}

/// `dir/p` cleaned, or `p` cleaned when absolute (Go's `filepath.Join` / `Clean`).
fn absolutize(dir: &Path, p: &str) -> PathBuf {
    if Path::new(p).is_absolute() {
        PathBuf::from(paths::clean(p))
    } else {
        PathBuf::from(paths::join(&dir.to_string_lossy(), p))
    }
}

/// What `extends` needs from the loader: loading another file (parsed, interpolated and in
/// canonical form, tags kept), and rebasing a service's relative paths onto the directory of
/// the file it came from.
struct ExtendsCtx<'a, 'b> {
    ctx: &'a mut Ctx<'b>,
    env: &'a Environment,
}

impl extends::ExtendsContext for ExtendsCtx<'_, '_> {
    fn load(&mut self, file: &str, relative_to: &Path) -> Result<(Node, PathBuf)> {
        let path = self.ctx.resolve_resource(relative_to, file)?;
        let content = std::fs::read_to_string(&path).map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("failed to read {}: {e}", path.display()),
            )
            .hint("extends.file is relative to the directory of the file that names it")
        })?;
        let name = path.display().to_string();
        let mut doc = Node::empty_map();
        for d in yaml::parse_all(&name, &content)? {
            doc = merge::merge(doc, d)?;
        }
        if doc.as_map().is_some_and(|m| m.is_empty()) {
            // Keep the file's identity: extends detects cycles by the file a document came from.
            doc.loc = Loc {
                file: yaml::FileId::intern(&name),
                line: 1,
                col: 1,
            };
        }
        if self.ctx.opts.interpolate {
            let env = self.env;
            let lookup = |k: &str| env.get(k).cloned();
            let ws = interpolate::interpolate(&mut doc, &lookup)?;
            self.ctx.warnings.extend(ws.into_iter().map(|w| Warning {
                loc: w.loc,
                message: w.to_string(),
            }));
        }
        let ws = canonical::canonicalize(&mut doc)?;
        self.ctx.warnings.extend(ws.into_iter().map(|w| Warning {
            loc: w.loc,
            message: w.message,
        }));
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok((doc, dir))
    }

    fn rebase_paths(&mut self, service: &mut Node, from_dir: &Path) -> Result<()> {
        if self.ctx.opts.resolve_paths {
            paths::resolve_service_paths(service, from_dir, self.ctx.opts.home.as_deref());
        }
        Ok(())
    }
}
