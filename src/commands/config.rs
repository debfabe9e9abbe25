//! `berth config`: parse, resolve and render the compose files in canonical form, or list
//! parts of the project (`--services`, `--volumes`, …), as `docker compose config` does.
//!
//! The flag handling and output selection ([`render`]) work on a [`ConfigView`], the narrow
//! boundary to the compose loader: the project as a JSON tree plus the lists the listing flags
//! print. `view_of` builds that view from the loaded project.

use std::path::PathBuf;

use anyhow::{Context, bail};
use berth_compose::{emit, hash, template};
use clap::Args;
use indexmap::IndexMap;
use serde_json::Value;

use crate::cli::Settings;
use crate::project::{self, LoadFlags};

/// `berth config` flags (those of `docker compose config`).
#[derive(Debug, Default, Args)]
pub struct ConfigArgs {
    #[command(flatten)]
    pub shorts: crate::cli::ShortGlobals,
    /// Format the output. Values: [yaml | json]
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Only validate the configuration, don't print anything
    #[arg(short, long)]
    pub quiet: bool,
    /// Print the service names, one per line
    #[arg(long)]
    pub services: bool,
    /// Print the volume names, one per line
    #[arg(long)]
    pub volumes: bool,
    /// Print the network names, one per line
    #[arg(long)]
    pub networks: bool,
    /// Print the profile names, one per line
    #[arg(long)]
    pub profiles: bool,
    /// Print the image names, one per line
    #[arg(long)]
    pub images: bool,
    /// Print the service config hash, one per line (SERVICES is "svc1,svc2" or "*" for all)
    #[arg(long, value_name = "SERVICES")]
    pub hash: Option<String>,
    /// Don't interpolate environment variables
    #[arg(long = "no-interpolate")]
    pub no_interpolate: bool,
    /// Don't normalize compose model
    #[arg(long = "no-normalize")]
    pub no_normalize: bool,
    /// Don't resolve file paths
    #[arg(long = "no-path-resolution")]
    pub no_path_resolution: bool,
    /// Don't check model consistency - warning: may produce invalid Compose output
    #[arg(long = "no-consistency")]
    pub no_consistency: bool,
    /// Pin image tags to digests
    #[arg(long = "resolve-image-digests")]
    pub resolve_image_digests: bool,
    /// Save to file (default to stdout)
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Print environment used for interpolation
    #[arg(long)]
    pub environment: bool,
    /// Print model variables and default values
    #[arg(long)]
    pub variables: bool,
    /// Services to render (default: all)
    #[arg(value_name = "SERVICE")]
    pub service_names: Vec<String>,
}

impl From<&ConfigArgs> for LoadFlags {
    fn from(a: &ConfigArgs) -> LoadFlags {
        LoadFlags {
            // `--variables` lists `${…}` as written, so compose reads the model uninterpolated.
            interpolate: !a.no_interpolate && !a.variables,
            normalize: !a.no_normalize,
            resolve_paths: !a.no_path_resolution,
            consistency: !a.no_consistency,
            services: a.service_names.clone(),
        }
    }
}

/// A `${…}` variable of the model, for `--variables`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Variable {
    pub name: String,
    /// `${VAR?err}` / `${VAR:?err}`.
    pub required: bool,
    /// `${VAR-default}` / `${VAR:-default}`.
    pub default_value: String,
    /// `${VAR+alt}` / `${VAR:+alt}`.
    pub alternate_value: String,
}

/// What the loader returns to `config`: the project and the lists its flags print.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConfigView {
    /// The canonical project, keys in the order `docker compose config` prints them.
    pub project: Value,
    /// Service names in the order `--services` prints them (compose: dependency order).
    pub services: Vec<String>,
    /// Volume names, in print order.
    pub volumes: Vec<String>,
    /// Network names, in print order.
    pub networks: Vec<String>,
    /// One image per service (the default `<project>-<service>` when none is set).
    pub images: Vec<String>,
    /// Profile names used by services.
    pub profiles: Vec<String>,
    /// Config hash per service.
    pub hashes: IndexMap<String, String>,
    /// The environment used for interpolation.
    pub environment: IndexMap<String, String>,
    /// The model's variables.
    pub variables: Vec<Variable>,
}

/// Where the rendered text goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Rendered {
    Stdout(String),
    File { path: PathBuf, content: String },
}

/// Selects and formats what `config` prints, in docker compose's order of precedence among
/// the listing flags.
pub fn render(view: &ConfigView, args: &ConfigArgs) -> anyhow::Result<Rendered> {
    let lines = |items: &[String]| items.iter().map(|s| format!("{s}\n")).collect::<String>();
    if args.services {
        return Ok(Rendered::Stdout(lines(&view.services)));
    }
    if args.volumes {
        return Ok(Rendered::Stdout(lines(&view.volumes)));
    }
    if args.networks {
        return Ok(Rendered::Stdout(lines(&view.networks)));
    }
    if let Some(hash) = &args.hash {
        return render_hashes(view, hash).map(Rendered::Stdout);
    }
    if args.profiles {
        let mut p = view.profiles.clone();
        p.sort();
        p.dedup();
        return Ok(Rendered::Stdout(lines(&p)));
    }
    if args.images {
        return Ok(Rendered::Stdout(lines(&view.images)));
    }
    if args.variables {
        return render_variables(&view.variables, args.format.as_deref()).map(Rendered::Stdout);
    }
    if args.environment {
        let mut vars: Vec<String> = view
            .environment
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        vars.sort();
        return Ok(Rendered::Stdout(lines(&vars)));
    }
    let content = match args.format.as_deref().unwrap_or("yaml") {
        "yaml" => emit::to_yaml(&view.project),
        "json" => emit::to_json(&view.project),
        other => bail!("unsupported format {other:?}"),
    };
    if args.quiet {
        return Ok(Rendered::Stdout(String::new()));
    }
    match &args.output {
        Some(path) if !content.is_empty() => Ok(Rendered::File {
            path: path.clone(),
            content,
        }),
        _ => Ok(Rendered::Stdout(content)),
    }
}

/// `--hash "*"` or `--hash a,b`: `name hash` lines sorted by name.
fn render_hashes(view: &ConfigView, which: &str) -> anyhow::Result<String> {
    let mut names: Vec<String> = if which == "*" {
        view.hashes.keys().cloned().collect()
    } else {
        which.split(',').map(String::from).collect()
    };
    names.sort();
    let mut out = String::new();
    for name in names {
        let Some(h) = view.hashes.get(&name) else {
            bail!("no such service: {name}");
        };
        out.push_str(&format!("{name} {h}\n"));
    }
    Ok(out)
}

/// `--variables`: a table (docker's tabwriter: minimum width 20, padding 3) sorted by name,
/// or the variables as YAML/JSON with `--format`.
fn render_variables(vars: &[Variable], format: Option<&str>) -> anyhow::Result<String> {
    let mut sorted: Vec<&Variable> = vars.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    match format {
        None | Some("table") | Some("pretty") => {
            let mut rows = vec![[
                "NAME".to_string(),
                "REQUIRED".to_string(),
                "DEFAULT VALUE".to_string(),
                "ALTERNATE VALUE".to_string(),
            ]];
            for v in &sorted {
                rows.push([
                    v.name.clone(),
                    v.required.to_string(),
                    v.default_value.clone(),
                    v.alternate_value.clone(),
                ]);
            }
            Ok(super::tabwrite(&rows, 20, 3))
        }
        Some(f @ ("yaml" | "json")) => {
            let map: serde_json::Map<String, Value> = sorted
                .iter()
                .map(|v| {
                    let mut m = serde_json::Map::new();
                    m.insert("name".into(), v.name.clone().into());
                    m.insert("defaultvalue".into(), v.default_value.clone().into());
                    m.insert("presencevalue".into(), v.alternate_value.clone().into());
                    m.insert("required".into(), v.required.into());
                    (v.name.clone(), Value::Object(m))
                })
                .collect();
            let v = Value::Object(map);
            Ok(if f == "yaml" {
                emit::to_yaml(&v)
            } else {
                emit::to_json(&v) + "\n"
            })
        }
        Some(other) => bail!("unsupported format {other:?}"),
    }
}

/// Runs `berth config`.
pub fn run(settings: &Settings, args: &ConfigArgs) -> anyhow::Result<()> {
    if args.resolve_image_digests {
        bail!(
            "--resolve-image-digests needs berth's image store to look up digests, which this \
             build does not have yet\nhint: run `berth config` without --resolve-image-digests"
        );
    }
    let flags = LoadFlags::from(args);
    let project = project::load(settings, &flags)?;
    if args.quiet {
        // Validation is the load itself; nothing to print.
        return Ok(());
    }
    let view = view_of(&project, &flags, args)?;
    match render(&view, args)? {
        Rendered::Stdout(text) => print!("{text}"),
        Rendered::File { path, content } => std::fs::write(&path, content)
            .with_context(|| format!("failed to write {}", path.display()))?,
    }
    Ok(())
}

/// The [`ConfigView`] of a loaded project.
fn view_of(
    p: &project::Project,
    flags: &LoadFlags,
    args: &ConfigArgs,
) -> anyhow::Result<ConfigView> {
    let model = &p.loaded.project;
    let mut project = serde_json::to_value(model).context("failed to serialise the project")?;
    if args.format.as_deref() == Some("json") {
        json_tags(&mut project);
    }
    if flags.interpolate {
        // As docker compose: the output is itself a valid compose file, so a literal `$` that
        // interpolation produced is written `$$`.
        escape_dollars(&mut project);
    }
    let mut services_json = serde_json::Map::new();
    if let Some(s) = project.get("services").and_then(Value::as_object) {
        services_json = s.clone();
    }
    let mut hashes = IndexMap::new();
    let mut images = Vec::new();
    let mut names: Vec<&String> = services_json.keys().collect();
    names.sort();
    for name in &names {
        let svc = &services_json[name.as_str()];
        if args.hash.is_some() {
            hashes.insert((*name).clone(), hash::service_hash(svc));
        }
        images.push(match svc.get("image").and_then(Value::as_str) {
            Some(i) if !i.is_empty() => i.to_string(),
            _ => format!("{}-{}", p.loaded.name, name),
        });
    }
    let keys_sorted = |key: &str| -> Vec<String> {
        let mut v: Vec<String> = project
            .get(key)
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        v.sort();
        v
    };
    let mut environment = p.environment.clone();
    environment.sort_keys();
    Ok(ConfigView {
        services: dependency_order(&p.loaded.tree),
        volumes: keys_sorted("volumes"),
        networks: keys_sorted("networks"),
        images,
        profiles: p.loaded.all_profiles.clone(),
        hashes,
        environment,
        variables: if args.variables {
            variables_of(&p.discovered)
        } else {
            Vec::new()
        },
        project,
    })
}

/// The model serialises by compose-go's YAML tags; `--format json` follows its JSON tags, which
/// differ in three fields that are never omitted: a service's `command` and `entrypoint`
/// (`null` when unset) and a network's `ipam` (`{}` when unset).
fn json_tags(project: &mut Value) {
    // compose-go's ServiceConfig field order: the keys that come before `command`, and those
    // between `command` and `entrypoint`.
    const BEFORE_COMMAND: &[&str] = &[
        "profiles",
        "annotations",
        "attach",
        "build",
        "develop",
        "blkio_config",
        "cap_add",
        "cap_drop",
        "cgroup_parent",
        "cgroup",
        "cpu_count",
        "cpu_percent",
        "cpu_period",
        "cpu_quota",
        "cpu_rt_period",
        "cpu_rt_runtime",
        "cpus",
        "cpuset",
        "cpu_shares",
    ];
    const BEFORE_ENTRYPOINT: &[&str] = &[
        "command",
        "configs",
        "container_name",
        "credential_spec",
        "depends_on",
        "deploy",
        "device_cgroup_rules",
        "devices",
        "dns",
        "dns_opt",
        "dns_search",
        "dockerfile",
        "domainname",
    ];
    const BEFORE_IPAM: &[&str] = &["name", "driver", "driver_opts"];
    if let Some(services) = project.get_mut("services").and_then(Value::as_object_mut) {
        for svc in services.values_mut() {
            if let Some(m) = svc.as_object_mut() {
                insert_in_order(m, "command", Value::Null, BEFORE_COMMAND);
                let before: Vec<&str> = BEFORE_COMMAND
                    .iter()
                    .chain(BEFORE_ENTRYPOINT)
                    .copied()
                    .collect();
                insert_in_order(m, "entrypoint", Value::Null, &before);
            }
        }
    }
    if let Some(networks) = project.get_mut("networks").and_then(Value::as_object_mut) {
        for net in networks.values_mut() {
            if let Some(m) = net.as_object_mut() {
                insert_in_order(
                    m,
                    "ipam",
                    Value::Object(serde_json::Map::new()),
                    BEFORE_IPAM,
                );
            }
        }
    }
}

/// Inserts `key: value` when absent, after the leading run of keys that belong before it.
fn insert_in_order(
    m: &mut serde_json::Map<String, Value>,
    key: &str,
    value: Value,
    before: &[&str],
) {
    if m.contains_key(key) {
        return;
    }
    let old = std::mem::take(m);
    let mut inserted = false;
    for (k, v) in old {
        if !inserted && !before.contains(&k.as_str()) {
            m.insert(key.to_string(), value.clone());
            inserted = true;
        }
        m.insert(k, v);
    }
    if !inserted {
        m.insert(key.to_string(), value);
    }
}

/// Service names as `docker compose config --services` prints them: names in sorted order, each
/// after its dependencies (compose-go's `ForEachService` with dependencies included).
fn dependency_order(tree: &berth_compose::yaml::Node) -> Vec<String> {
    use berth_compose::yaml::Node;
    let Some(services) = tree.get("services").and_then(Node::as_map) else {
        return Vec::new();
    };
    fn visit(
        name: &str,
        services: &berth_compose::yaml::Map,
        seen: &mut Vec<String>,
        out: &mut Vec<String>,
    ) {
        if seen.iter().any(|s| s == name) {
            return;
        }
        seen.push(name.to_string());
        let mut deps: Vec<String> = services
            .get(name)
            .and_then(|s| s.get("depends_on"))
            .and_then(Node::as_map)
            .map(|m| m.keys().map(|k| k.name.clone()).collect())
            .unwrap_or_default();
        deps.sort();
        for d in deps.iter().filter(|d| services.contains_key(d.as_str())) {
            visit(d, services, seen, out);
        }
        out.push(name.to_string());
    }
    let mut names: Vec<&str> = services.keys().map(|k| k.as_str()).collect();
    names.sort_unstable();
    let (mut seen, mut out) = (Vec::new(), Vec::new());
    for n in names {
        visit(n, services, &mut seen, &mut out);
    }
    out
}

/// `$` → `$$` in every key and string of the output.
fn escape_dollars(v: &mut Value) {
    match v {
        Value::String(s) if s.contains('$') => *s = s.replace('$', "$$"),
        Value::Array(items) => items.iter_mut().for_each(escape_dollars),
        Value::Object(m) if m.keys().any(|k| k.contains('$')) || !m.is_empty() => {
            let old = std::mem::take(m);
            for (k, mut val) in old {
                escape_dollars(&mut val);
                m.insert(k.replace('$', "$$"), val);
            }
        }
        _ => {}
    }
}

/// The `${…}` variables the compose files refer to (`--variables`), first mention wins.
fn variables_of(discovered: &berth_compose::discovery::Discovered) -> Vec<Variable> {
    use berth_compose::yaml::{self, Node, Value as Y};
    fn walk(n: &Node, out: &mut Vec<Variable>) {
        match &n.value {
            Y::String(s) => {
                for v in template::variables(s) {
                    if out.iter().all(|x| x.name != v.name) {
                        out.push(Variable {
                            name: v.name,
                            required: v.required,
                            default_value: v.default_value.unwrap_or_default(),
                            alternate_value: v.alternate_value.unwrap_or_default(),
                        });
                    }
                }
            }
            Y::Seq(items) => items.iter().for_each(|i| walk(i, out)),
            Y::Map(m) => m.values().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for f in &discovered.files {
        if let Ok(docs) = yaml::parse_all(&f.name, &f.content) {
            docs.iter().for_each(|d| walk(d, &mut out));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view() -> ConfigView {
        ConfigView {
            project: json!({"name": "demo", "services": {"web": {"image": "nginx", "ports": [{"target": 80, "published": "8080"}]}}}),
            services: vec!["db".into(), "web".into()],
            volumes: vec!["data".into()],
            networks: vec!["default".into()],
            images: vec!["postgres".into(), "nginx".into()],
            profiles: vec!["web".into(), "debug".into(), "web".into()],
            hashes: IndexMap::from([("web".into(), "abc".into()), ("db".into(), "def".into())]),
            environment: IndexMap::from([("B".into(), "2".into()), ("A".into(), "1".into())]),
            variables: vec![
                Variable {
                    name: "TAG".into(),
                    default_value: "latest".into(),
                    ..Variable::default()
                },
                Variable {
                    name: "DB_PASSWORD".into(),
                    required: true,
                    ..Variable::default()
                },
            ],
        }
    }

    fn stdout(args: &ConfigArgs) -> String {
        match render(&view(), args).unwrap() {
            Rendered::Stdout(s) => s,
            other => panic!("expected stdout, got {other:?}"),
        }
    }

    #[test]
    fn default_is_yaml_and_json_on_request() {
        let yaml = "name: demo\nservices:\n  web:\n    image: nginx\n    ports:\n      - target: 80\n        published: \"8080\"\n";
        assert_eq!(stdout(&ConfigArgs::default()), yaml);
        let a = ConfigArgs {
            format: Some("json".into()),
            ..ConfigArgs::default()
        };
        assert!(stdout(&a).starts_with("{\n  \"name\": \"demo\",\n  \"services\": {"));
        let a = ConfigArgs {
            format: Some("toml".into()),
            ..ConfigArgs::default()
        };
        assert_eq!(
            render(&view(), &a).unwrap_err().to_string(),
            "unsupported format \"toml\""
        );
    }

    #[test]
    fn quiet_prints_nothing_and_output_goes_to_a_file() {
        let a = ConfigArgs {
            quiet: true,
            ..ConfigArgs::default()
        };
        assert_eq!(stdout(&a), "");
        let a = ConfigArgs {
            output: Some("out.yaml".into()),
            ..ConfigArgs::default()
        };
        match render(&view(), &a).unwrap() {
            Rendered::File { path, content } => {
                assert_eq!(path, PathBuf::from("out.yaml"));
                assert!(content.starts_with("name: demo\n"));
            }
            other => panic!("expected a file, got {other:?}"),
        }
    }

    #[test]
    fn listing_flags_follow_compose_precedence() {
        let a = ConfigArgs {
            services: true,
            volumes: true,
            ..ConfigArgs::default()
        };
        assert_eq!(stdout(&a), "db\nweb\n");
        let a = ConfigArgs {
            volumes: true,
            networks: true,
            ..ConfigArgs::default()
        };
        assert_eq!(stdout(&a), "data\n");
        let a = ConfigArgs {
            networks: true,
            ..ConfigArgs::default()
        };
        assert_eq!(stdout(&a), "default\n");
        let a = ConfigArgs {
            profiles: true,
            images: true,
            ..ConfigArgs::default()
        };
        assert_eq!(stdout(&a), "debug\nweb\n");
        let a = ConfigArgs {
            images: true,
            ..ConfigArgs::default()
        };
        assert_eq!(stdout(&a), "postgres\nnginx\n");
        let a = ConfigArgs {
            environment: true,
            ..ConfigArgs::default()
        };
        assert_eq!(stdout(&a), "A=1\nB=2\n");
    }

    #[test]
    fn hashes_sorted_and_unknown_services_refused() {
        let a = ConfigArgs {
            hash: Some("*".into()),
            ..ConfigArgs::default()
        };
        assert_eq!(stdout(&a), "db def\nweb abc\n");
        let a = ConfigArgs {
            hash: Some("web".into()),
            ..ConfigArgs::default()
        };
        assert_eq!(stdout(&a), "web abc\n");
        let a = ConfigArgs {
            hash: Some("web,nope".into()),
            ..ConfigArgs::default()
        };
        assert_eq!(
            render(&view(), &a).unwrap_err().to_string(),
            "no such service: nope"
        );
    }

    #[test]
    fn variables_table() {
        let a = ConfigArgs {
            variables: true,
            ..ConfigArgs::default()
        };
        let want = "\
NAME                REQUIRED            DEFAULT VALUE       ALTERNATE VALUE
DB_PASSWORD         true                                    
TAG                 false               latest              
";
        assert_eq!(stdout(&a), want);
        let a = ConfigArgs {
            variables: true,
            format: Some("yaml".into()),
            ..ConfigArgs::default()
        };
        assert!(stdout(&a).starts_with("DB_PASSWORD:\n  name: DB_PASSWORD\n"));
    }

    #[test]
    fn load_options_from_flags() {
        let a = ConfigArgs {
            no_interpolate: true,
            no_consistency: true,
            service_names: vec!["web".into()],
            ..ConfigArgs::default()
        };
        let o = LoadFlags::from(&a);
        assert!(!o.interpolate && o.normalize && o.resolve_paths && !o.consistency);
        assert_eq!(o.services, vec!["web".to_string()]);
    }
}
