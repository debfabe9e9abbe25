//! `berth volumes`: the project's volumes, as `docker compose volumes`: those labelled with the
//! project; with services named, only those their containers mount.

use std::collections::BTreeSet;

use anyhow::bail;
use berth_engine::container::store::ContainerStore;
use berth_engine::volumes::VolumeStore;
use clap::Args;

use crate::cli::Settings;
use crate::engine::Engine;
use crate::labels;
use crate::project::{self, LoadFlags};

#[derive(Debug, Args)]
pub struct VolumesArgs {
    #[command(flatten)]
    pub shorts: crate::cli::ShortGlobals,
    /// Format the output: table or json
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Only display volume names
    #[arg(short, long)]
    pub quiet: bool,
    /// Services (default: all)
    pub services: Vec<String>,
}

pub fn run(settings: &Settings, args: &VolumesArgs) -> anyhow::Result<()> {
    super::volume::check_ls_format(&args.format)?;
    let loaded = project::load(settings, &LoadFlags::default())?;
    let project = &loaded.loaded.project;
    for s in &args.services {
        if !project.services.contains_key(s) {
            bail!("no such service: {s}");
        }
    }
    let name = &loaded.loaded.name;
    let engine = Engine::open(settings)?;
    let store = VolumeStore::open(&engine.stores.root)?;
    let mut volumes: Vec<_> = store
        .list()?
        .into_iter()
        .filter(|v| v.labels.get(labels::PROJECT) == Some(name))
        .collect();
    if !args.services.is_empty() {
        let containers = ContainerStore::open(&engine.stores.root)?;
        let mut mounted = BTreeSet::new();
        for id in containers.ids()? {
            let Ok(config) = containers.dir_of(&id).config() else {
                continue;
            };
            let ours = config.labels.get(labels::PROJECT) == Some(name)
                && config
                    .labels
                    .get(labels::SERVICE)
                    .is_some_and(|s| args.services.contains(s));
            if ours {
                mounted.extend(config.mounts.iter().filter_map(|m| match &m.kind {
                    berth_engine::container::MountKind::Volume { name, .. } => Some(name.clone()),
                    _ => None,
                }));
            }
        }
        volumes.retain(|v| mounted.contains(&v.name));
    }
    super::volume::print_volumes(&store, &volumes, &args.format, args.quiet);
    Ok(())
}
