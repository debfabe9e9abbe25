//! `berth volume …`: the docker CLI for volumes (create, ls, inspect, rm, prune).

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, bail};
use berth_engine::layout::Root;
use berth_engine::volumes::{
    ANONYMOUS_LABEL, PruneFilter, Volume, VolumeOptions, VolumeStore, label_matches, random_name,
};
use clap::{Args, Subcommand};
use serde::Serialize;
use serde_json::json;

use crate::cli::Settings;

#[derive(Debug, Args)]
pub struct VolumeArgs {
    #[command(subcommand)]
    pub command: VolumeCommand,
}

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume
    Create(CreateArgs),
    /// Display detailed information on one or more volumes
    Inspect(InspectArgs),
    /// List volumes
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Remove unused local volumes (anonymous ones unless --all)
    Prune(PruneArgs),
    /// Remove one or more volumes
    #[command(alias = "remove")]
    Rm(RmArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Specify volume driver name
    #[arg(short, long, default_value = "local")]
    pub driver: String,
    /// Set driver specific options (local: type=none,o=bind,device=/path)
    #[arg(short = 'o', long = "opt", value_name = "KEY=VALUE")]
    pub opts: Vec<String>,
    /// Set metadata for a volume
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Volume name (a random anonymous one when absent)
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    #[arg(required = true, value_name = "VOLUME")]
    pub volumes: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only display volume names
    #[arg(short, long)]
    pub quiet: bool,
    /// Format output: table or json
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Provide filter values (name=, label=, dangling=, driver=); no `-f`: it is the global --file
    #[arg(long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Do not fail on a missing volume (no `-f`: it is the global --file); a volume in use is
    /// never removed
    #[arg(long)]
    pub force: bool,
    #[arg(required = true, value_name = "VOLUME")]
    pub volumes: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove all unused volumes, not just anonymous ones
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt for confirmation (no `-f`: it is the global --file)
    #[arg(long)]
    pub force: bool,
    /// Provide filter values (label=, label!=, all=)
    #[arg(long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
}

pub fn run(settings: &Settings, args: &VolumeArgs) -> anyhow::Result<()> {
    let root = Root::open(&settings.root).with_context(|| {
        format!(
            "failed to open berth's state directory {}",
            settings.root.display()
        )
    })?;
    let store = VolumeStore::open(&root)?;
    match &args.command {
        VolumeCommand::Create(a) => create(&store, a),
        VolumeCommand::Inspect(a) => inspect(&store, a),
        VolumeCommand::Ls(a) => ls(&root, &store, a),
        VolumeCommand::Prune(a) => prune(&root, &store, a),
        VolumeCommand::Rm(a) => rm(&root, &store, a),
    }
}

/// Volume name → the containers (any state) whose mounts use it; Docker refuses to remove
/// those even with `--force`. `rm`, `prune` and `ls --filter dangling=` all go through it.
fn volume_users(root: &Root) -> anyhow::Result<HashMap<String, Vec<String>>> {
    let store = berth_engine::container::store::ContainerStore::open(root)?;
    Ok(store.volume_users()?.into_iter().collect())
}

/// `KEY=VALUE` (or `KEY`, an empty value) pairs, as docker's `--opt` and `--label` read them.
fn key_values(items: &[String], what: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for item in items {
        let (k, v) = item.split_once('=').unwrap_or((item, ""));
        if k.trim().is_empty() {
            bail!("invalid {what} {item:?}: the key is empty");
        }
        map.insert(k.to_string(), v.to_string());
    }
    Ok(map)
}

/// `docker volume create`: prints the name.
fn create(store: &VolumeStore, a: &CreateArgs) -> anyhow::Result<()> {
    let mut labels = key_values(&a.labels, "label")?;
    let name = match &a.name {
        Some(n) => n.clone(),
        None => {
            labels.insert(ANONYMOUS_LABEL.to_string(), String::new());
            random_name()?
        }
    };
    let opts = VolumeOptions {
        driver: a.driver.clone(),
        driver_opts: key_values(&a.opts, "option")?,
        labels,
    };
    let volume = store.create(&name, &opts)?;
    println!("{}", volume.name);
    Ok(())
}

/// The fields `docker volume inspect` shows, in its order.
fn inspect_json(store: &VolumeStore, v: &Volume) -> serde_json::Value {
    json!({
        "CreatedAt": v.created_at,
        "Driver": v.driver,
        "Labels": v.labels,
        "Mountpoint": store.mountpoint_of(v),
        "Name": v.name,
        "Options": v.options,
        "Scope": "local",
    })
}

/// `docker volume inspect`: a JSON array (4-space indent, as docker); missing names are
/// reported after it and make the exit status 1.
fn inspect(store: &VolumeStore, a: &InspectArgs) -> anyhow::Result<()> {
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for name in &a.volumes {
        match store.get(name) {
            Ok(v) => out.push(inspect_json(store, &v)),
            Err(berth_engine::volumes::VolumeError::NotFound { .. }) => missing.push(name),
            Err(e) => return Err(e.into()),
        }
    }
    let mut buf = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(
        &mut buf,
        serde_json::ser::PrettyFormatter::with_indent(b"    "),
    );
    out.serialize(&mut ser)?;
    println!("{}", String::from_utf8_lossy(&buf));
    match missing.as_slice() {
        [] => Ok(()),
        [one] => bail!("no such volume: {one}"),
        many => bail!(
            "no such volume: {}",
            many.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `docker volume ls --filter`: the same key ORs, different keys AND (labels: all must match).
#[derive(Debug, Default)]
struct LsFilter {
    names: Vec<String>,
    drivers: Vec<String>,
    labels: Vec<String>,
    dangling: Option<bool>,
}

fn parse_ls_filters(filters: &[String]) -> anyhow::Result<LsFilter> {
    let mut f = LsFilter::default();
    for item in filters {
        let Some((key, value)) = item.split_once('=') else {
            bail!("bad format of filter (expected name=value): {item}");
        };
        match key {
            "name" => f.names.push(value.to_string()),
            "driver" => f.drivers.push(value.to_string()),
            "label" => f.labels.push(value.to_string()),
            "dangling" => {
                f.dangling = Some(match value.to_ascii_lowercase().as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => bail!("invalid filter 'dangling={value}'"),
                })
            }
            _ => bail!("invalid filter '{key}'"),
        }
    }
    Ok(f)
}

impl LsFilter {
    fn matches(&self, v: &Volume, users: &HashMap<String, Vec<String>>) -> bool {
        (self.names.is_empty() || self.names.iter().any(|n| v.name.contains(n.as_str())))
            && (self.drivers.is_empty() || self.drivers.contains(&v.driver))
            && self.labels.iter().all(|l| label_matches(&v.labels, l))
            && self
                .dangling
                .is_none_or(|d| d == users.get(&v.name).is_none_or(|u| u.is_empty()))
    }
}

/// `docker volume ls`: DRIVER and VOLUME NAME, by name.
fn ls(root: &Root, store: &VolumeStore, a: &LsArgs) -> anyhow::Result<()> {
    check_ls_format(&a.format)?;
    let filter = parse_ls_filters(&a.filters)?;
    let users = if filter.dangling.is_some() {
        volume_users(root)?
    } else {
        HashMap::new()
    };
    let volumes: Vec<Volume> = store
        .list()?
        .into_iter()
        .filter(|v| filter.matches(v, &users))
        .collect();
    print_volumes(store, &volumes, &a.format, a.quiet);
    Ok(())
}

/// The formats [`print_volumes`] knows.
pub fn check_ls_format(format: &str) -> anyhow::Result<()> {
    if !matches!(format, "table" | "json") {
        bail!("unsupported format {format:?}\nhint: berth prints --format table or json");
    }
    Ok(())
}

/// Volumes as `docker volume ls` prints them (and `docker compose volumes`): names alone
/// (`quiet`), a JSON object a line, or the DRIVER and VOLUME NAME table.
pub fn print_volumes(store: &VolumeStore, volumes: &[Volume], format: &str, quiet: bool) {
    if quiet {
        for v in volumes {
            println!("{}", v.name);
        }
        return;
    }
    if format == "json" {
        for v in volumes {
            let labels: Vec<String> = v.labels.iter().map(|(k, x)| format!("{k}={x}")).collect();
            let line = json!({
                "Availability": "N/A",
                "Driver": v.driver,
                "Group": "N/A",
                "Labels": labels.join(","),
                "Links": "N/A",
                "Mountpoint": store.mountpoint_of(v),
                "Name": v.name,
                "Scope": "local",
                "Size": "N/A",
                "Status": "N/A",
            });
            println!("{line}");
        }
        return;
    }
    let rows: Vec<Vec<String>> = std::iter::once(vec!["DRIVER".into(), "VOLUME NAME".into()])
        .chain(
            volumes
                .iter()
                .map(|v| vec![v.driver.clone(), v.name.clone()]),
        )
        .collect();
    // docker's tabwriter: minimum width 10, padding 3.
    print!("{}", super::tabwrite(&rows, 10, 3));
}

/// `docker volume rm`: each removed name on stdout; failures on stderr, the others still
/// removed, exit status 1 if any failed.
fn rm(root: &Root, store: &VolumeStore, a: &RmArgs) -> anyhow::Result<()> {
    let users = volume_users(root)?;
    let users = |n: &str| users.get(n).cloned().unwrap_or_default();
    let mut failed = false;
    for name in &a.volumes {
        match store.remove(name, a.force, &users) {
            Ok(()) => println!("{name}"),
            Err(e) => {
                eprintln!("Error response from daemon: {e}");
                failed = true;
            }
        }
    }
    if failed {
        bail!("some volumes could not be removed");
    }
    Ok(())
}

fn parse_prune_filters(a: &PruneArgs) -> anyhow::Result<PruneFilter> {
    let mut f = PruneFilter {
        all: a.all,
        ..PruneFilter::default()
    };
    for item in &a.filters {
        let Some((key, value)) = item.split_once('=') else {
            bail!("bad format of filter (expected name=value): {item}");
        };
        match key {
            "label" => f.labels.push(value.to_string()),
            "label!" => f.not_labels.push(value.to_string()),
            "all" => {
                f.all = match value.to_ascii_lowercase().as_str() {
                    "true" | "1" => true,
                    "false" | "0" => a.all,
                    _ => bail!("invalid filter 'all={value}'"),
                }
            }
            _ => bail!("invalid filter '{key}'"),
        }
    }
    Ok(f)
}

/// `docker volume prune`: asks first (unless `--force`), then prints what went and the space
/// reclaimed.
fn prune(root: &Root, store: &VolumeStore, a: &PruneArgs) -> anyhow::Result<()> {
    let filter = parse_prune_filters(a)?;
    if !a.force {
        use std::io::{BufRead, Write};
        let what = if filter.all {
            "all local volumes"
        } else {
            "anonymous local volumes"
        };
        eprint!(
            "WARNING! This will remove {what} not used by at least one container.\nAre you sure you want to continue? [y/N] "
        );
        std::io::stderr().flush().ok();
        // Read from stdin whether or not it is a terminal, as docker (`echo y | … prune`).
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        if !matches!(line.trim(), "y" | "Y" | "yes" | "Yes") {
            return Ok(());
        }
    }
    let users = volume_users(root)?;
    let users = |n: &str| users.get(n).cloned().unwrap_or_default();
    let report = store.prune(&filter, &users)?;
    if !report.removed.is_empty() {
        println!("Deleted Volumes:");
        for name in &report.removed {
            println!("{name}");
        }
        println!();
    }
    println!(
        "Total reclaimed space: {}",
        crate::progress::human_size(report.bytes_reclaimed, 3)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol(name: &str, labels: &[(&str, &str)]) -> Volume {
        Volume {
            name: name.into(),
            driver: "local".into(),
            created_at: String::new(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            options: BTreeMap::new(),
            populated: false,
        }
    }

    #[test]
    fn ls_filters_combine_like_docker() {
        let f = parse_ls_filters(&["name=db".into(), "name=cache".into(), "label=tier".into()])
            .unwrap();
        let none = HashMap::new();
        assert!(f.matches(&vol("app_db", &[("tier", "x")]), &none));
        assert!(f.matches(&vol("cache1", &[("tier", "")]), &none));
        assert!(!f.matches(&vol("app_db", &[]), &none));
        assert!(!f.matches(&vol("logs", &[("tier", "x")]), &none));

        let used: HashMap<String, Vec<String>> =
            [("app_db".to_string(), vec!["c".to_string()])].into();
        let dangling = parse_ls_filters(&["dangling=true".into()]).unwrap();
        assert!(!dangling.matches(&vol("app_db", &[]), &used));
        assert!(dangling.matches(&vol("other", &[]), &used));
        let not = parse_ls_filters(&["dangling=false".into()]).unwrap();
        assert!(not.matches(&vol("app_db", &[]), &used));

        assert!(parse_ls_filters(&["colour=red".into()]).is_err());
        assert!(parse_ls_filters(&["dangling=maybe".into()]).is_err());
        assert!(parse_ls_filters(&["name".into()]).is_err());
    }

    #[test]
    fn key_values_read_like_docker_opts() {
        let m = key_values(&["a=1".into(), "b".into(), "c=x=y".into()], "label").unwrap();
        assert_eq!(m["a"], "1");
        assert_eq!(m["b"], "");
        assert_eq!(m["c"], "x=y");
        assert!(key_values(&["=v".into()], "label").is_err());
    }
}
