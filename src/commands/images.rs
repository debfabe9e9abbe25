//! `berth images`: the images the project's containers use, as `docker compose images`.

use berth_engine::container::store::ContainerStore;
use clap::Args;
use serde_json::json;

use crate::cli::Settings;
use crate::engine::Engine;
use crate::labels;
use crate::project::{self, LoadFlags};

#[derive(Debug, Args)]
pub struct ImagesArgs {
    #[command(flatten)]
    pub shorts: crate::cli::ShortGlobals,
    /// Format the output: table or json
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Only display IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Services (default: all)
    pub services: Vec<String>,
}

struct Row {
    container: String,
    repository: String,
    tag: String,
    id: String,
    size: u64,
}

pub fn run(settings: &Settings, args: &ImagesArgs) -> anyhow::Result<()> {
    let project = project::load(
        settings,
        &LoadFlags {
            services: args.services.clone(),
            ..LoadFlags::default()
        },
    )?;
    let name = project.loaded.name.clone();
    let engine = Engine::open(settings)?;
    let store = ContainerStore::open(&engine.stores.root)?;
    let mut rows = Vec::new();
    for id in store.ids()? {
        let Ok(config) = store.dir_of(&id).config() else {
            continue;
        };
        if config.labels.get(labels::PROJECT) != Some(&name) {
            continue;
        }
        let service = config
            .labels
            .get(labels::SERVICE)
            .cloned()
            .unwrap_or_default();
        if !args.services.is_empty() && !args.services.contains(&service) {
            continue;
        }
        let Some(image_id) = &config.image_id else {
            continue;
        };
        let record = engine.stores.images.get(image_id)?;
        // The name the container was created with, as docker compose shows it.
        let (repository, tag) = split_name(&config.image_name);
        rows.push(Row {
            container: config.name.clone(),
            repository,
            tag,
            id: image_id.to_string(),
            size: record.map(|r| r.size).unwrap_or(0),
        });
    }
    rows.sort_by(|a, b| a.container.cmp(&b.container));
    if args.quiet {
        let mut seen = std::collections::BTreeSet::new();
        for r in &rows {
            if seen.insert(&r.id) {
                println!("{}", r.id);
            }
        }
        return Ok(());
    }
    if args.format == "json" {
        let out: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({
                    "ContainerName": r.container,
                    "Repository": r.repository,
                    "Tag": r.tag,
                    "ID": r.id,
                    "Size": r.size,
                })
            })
            .collect();
        println!("{}", serde_json::to_string(&out)?);
        return Ok(());
    }
    if args.format != "table" {
        anyhow::bail!("invalid --format {:?}: table or json", args.format);
    }
    let mut table = vec![[
        "CONTAINER".to_string(),
        "REPOSITORY".to_string(),
        "TAG".to_string(),
        "IMAGE ID".to_string(),
        "SIZE".to_string(),
    ]];
    for r in rows {
        let short = r.id.strip_prefix("sha256:").unwrap_or(&r.id)[..12].to_string();
        table.push([
            r.container,
            r.repository,
            r.tag,
            short,
            crate::progress::human_size(r.size, 3),
        ]);
    }
    print!("{}", crate::commands::tabwrite(&table, 0, 3));
    Ok(())
}

/// `repo[:tag][@digest]` → (repository, tag); `<none>` for no tag, as Docker shows it.
fn split_name(name: &str) -> (String, String) {
    let without_digest = name.split('@').next().unwrap_or(name);
    match without_digest.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo.to_string(), tag.to_string()),
        _ => (without_digest.to_string(), "latest".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_like_docker_compose_images() {
        let s = |n: &str| split_name(n);
        assert_eq!(s("busybox"), ("busybox".into(), "latest".into()));
        assert_eq!(
            s("localhost:5000/app:v1"),
            ("localhost:5000/app".into(), "v1".into())
        );
        assert_eq!(
            s("localhost:5000/app"),
            ("localhost:5000/app".into(), "latest".into())
        );
        assert_eq!(s("app:1@sha256:abc"), ("app".into(), "1".into()));
    }
}
