//! `berth down`: stop and remove the project's containers (dependents first), its networks,
//! and with `-v` its volumes.

use std::time::Duration;

use anyhow::bail;
use berth_engine::container::lifecycle::{self, Release};
use berth_engine::volumes::VolumeStore;
use berth_net::network::HostVeths;
use clap::Args;

use crate::cli::Settings;
use crate::commands::container::Ctx;
use crate::orchestrator::convert;
use crate::orchestrator::execute::{Progress, parallel};
use crate::orchestrator::observe::{Observed, project_containers};
use crate::orchestrator::plan;
use crate::project::{self, LoadFlags};

#[derive(Debug, Args)]
pub struct DownArgs {
    #[command(flatten)]
    pub shorts: crate::cli::ShortGlobals,
    /// Remove named volumes declared in the "volumes" section of the Compose file and
    /// anonymous volumes attached to containers
    #[arg(short, long)]
    pub volumes: bool,
    /// Remove containers for services not defined in the Compose file
    #[arg(long = "remove-orphans")]
    pub remove_orphans: bool,
    /// Specify a shutdown timeout in seconds
    #[arg(short = 't', long)]
    pub timeout: Option<u64>,
    /// Remove images used by services ("local"|"all")
    #[arg(long)]
    pub rmi: Option<String>,
    pub services: Vec<String>,
}

pub fn run(settings: &Settings, args: &DownArgs) -> anyhow::Result<u8> {
    let rmi_all = match args.rmi.as_deref() {
        None | Some("local") => false,
        Some("all") => true,
        Some(other) => bail!("invalid --rmi {other:?}\nhint: use \"local\" or \"all\""),
    };
    let loaded = project::load(settings, &LoadFlags::default())?;
    let project = &loaded.loaded.project;
    let ctx = Ctx::open(settings)?;
    let _lock = crate::commands::up::project_lock(ctx.root(), &project.name)?;
    // No policy restart may race with the removal.
    crate::supervisor::stop(ctx.root(), &project.name)?;
    let timeout = args.timeout.map(Duration::from_secs);
    let progress = Progress::new();
    let all = project_containers(&ctx.store, &project.name)?;
    let selected =
        |o: &Observed| args.services.is_empty() || args.services.iter().any(|s| s == o.service());
    let known = |o: &Observed| project.services.contains_key(o.service());
    let orphans: Vec<&Observed> = all.iter().filter(|o| !known(o) && !o.oneoff()).collect();
    if !orphans.is_empty() && !args.remove_orphans && args.services.is_empty() {
        crate::project::warn(&format!(
            "Found orphan containers ({}) for this project. If you removed or renamed this service in your compose file, you can run this command with the --remove-orphans flag to clean it up.",
            orphans
                .iter()
                .map(|o| o.config.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    // Dependents first, level by level; orphans (with --remove-orphans) before all.
    let levels = crate::commands::up::graph(project)?.start_levels();
    let observed: Vec<_> = all
        .iter()
        .filter(|o| selected(o) || !known(o))
        .map(Observed::to_plan)
        .collect();
    let by_id = |id: &str| all.iter().find(|o| o.dir.id == id);
    let batches: Vec<Vec<&Observed>> = plan::down(&levels, &observed, args.remove_orphans)
        .iter()
        .map(|level| {
            level
                .iter()
                .filter_map(|op| match op {
                    plan::Op::Remove { id, .. } => by_id(id),
                    _ => None,
                })
                .collect()
        })
        .collect();
    // Stopped level by level, dependents first; their shims leave their networking to us
    // (`Release::ByCaller`).
    let stopping = batches.iter().try_for_each(|batch| {
        parallel(batch, |o| {
            if o.running() {
                crate::hooks::pre_stop(&ctx, project, o)?;
                lifecycle::stop_with(&ctx.store, &o.dir, timeout, Release::ByCaller)?;
                progress.line("Container", &o.config.name, "Stopped");
            }
            Ok(())
        })
    });
    let stopped: Vec<&Observed> = batches.iter().flatten().copied().collect();
    // Every container whose shim is gone gives its networking back here, in one go (one
    // lock, one write), also when a stop failed. Their processes have all exited: the
    // kernel deletes their veths as it dismantles their namespaces.
    let gone: Vec<&str> = stopped
        .iter()
        .filter(|o| !o.dir.shim_alive().unwrap_or(true))
        .map(|o| o.dir.id.as_str())
        .collect();
    let released = crate::net::release_endpoints(ctx.root(), &gone, HostVeths::LeaveToKernel)
        .map_err(anyhow::Error::msg);
    stopping?;
    let released = released?;
    let firewall_behind = |rewritten: bool| -> anyhow::Result<()> {
        match &released {
            Some(r) if r.published_ports() && !rewritten => {
                crate::net::sync_firewall(ctx.root(), &r.store).map_err(anyhow::Error::msg)
            }
            _ => Ok(()),
        }
    };
    // The kernel has deleted the released veths by the end, unless something outside the
    // project still holds a namespace (`nsenter`, a container of another project joined to
    // it): those go now, so no host end stays on a bridge with an address given back.
    let leftover_veths = || {
        if let Some(r) = &released
            && let Err(e) = berth_net::network::delete_host_veths(&r.endpoints)
        {
            crate::project::warn(&format!("network: {e}"));
        }
    };
    // Everything is stopped: the removals are independent (a directory tree each) and run in
    // parallel; one after the other they were most of `down`.
    let remove = |o: &Observed| {
        lifecycle::remove(
            &ctx.engine.stores.root,
            &ctx.store,
            &o.dir,
            true,
            args.volumes,
        )?;
        progress.line("Container", &o.config.name, "Removed");
        Ok(())
    };
    if !args.services.is_empty() {
        let (removed, firewall) = std::thread::scope(|s| {
            let firewall = s.spawn(|| firewall_behind(false));
            let removed = parallel(&stopped, remove);
            (removed, firewall.join())
        });
        leftover_veths();
        removed?;
        firewall.unwrap_or_else(|_| Err(anyhow::anyhow!("updating the firewall panicked")))?;
        return Ok(0);
    }
    // Networks the project made (external ones are never removed).
    let store = crate::net::store(ctx.root()).map_err(anyhow::Error::msg)?;
    let mut keys: Vec<String> = project.networks.keys().cloned().collect();
    if project
        .services
        .values()
        .any(|s| s.network_mode.is_empty() && s.networks.is_empty())
        && !keys.iter().any(|k| k == "default")
    {
        keys.push("default".into());
    }
    let mut names = Vec::new();
    for key in keys {
        let def = project
            .networks
            .get(&key)
            .cloned()
            .flatten()
            .unwrap_or_default();
        if def.external.0 {
            continue;
        }
        let name = convert::network_name(project, &key);
        if store.get(&name)?.is_some() {
            names.push(name);
        }
    }
    // The containers' endpoints are released, so the networks go while the containers'
    // directories are removed: deleting a bridge waits for the kernel to finish tearing down
    // the containers' namespaces.
    let (containers, networks) = std::thread::scope(|s| {
        let containers = s.spawn(|| parallel(&stopped, remove));
        // Removing a network rewrites the firewall, which then drops the released ports too.
        let (networks, rewritten) = remove_networks(ctx.root(), &store, &names);
        if let Err(e) = firewall_behind(rewritten) {
            crate::project::warn(&format!("firewall: {e:#}"));
        }
        let containers = containers
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("removing the containers panicked")));
        (containers, networks)
    });
    for (name, result) in networks {
        // Still in use: endpoints of containers that no longer exist (a berth killed between
        // a container's removal and its release) are let go, and the network goes unless a
        // live container elsewhere still holds it.
        let result = match result {
            Err(berth_net::network::NetworkError::InUse { .. }) => {
                release_ghosts(&ctx, &store, &name);
                crate::commands::network::remove_network(&ctx.engine.stores.root, &store, &name)
            }
            other => other.map_err(anyhow::Error::from),
        };
        match result {
            Ok(()) => progress.line("Network", &name, "Removed"),
            Err(e) => crate::project::warn(&format!("network {name}: {e:#}")),
        }
    }
    leftover_veths();
    containers?;
    if rmi_all {
        remove_images(&ctx, project, &progress);
    }
    if args.volumes {
        let vstore = VolumeStore::open(&ctx.engine.stores.root)?;
        let users = ctx.store.volume_users()?;
        let users_of = |name: &str| users.get(name).cloned().unwrap_or_default();
        for (key, def) in &project.volumes {
            if def.as_ref().is_some_and(|d| d.external.0) {
                continue;
            }
            let name = convert::volume_name(project, key);
            if vstore.get_if_exists(&name)?.is_none() {
                continue;
            }
            vstore.remove(&name, true, &users_of)?;
            progress.line("Volume", &name, "Removed");
        }
    }
    Ok(0)
}

/// Releases the endpoints on network `name` whose containers no longer exist.
fn release_ghosts(ctx: &Ctx, store: &berth_net::network::NetworkStore, name: &str) {
    let Ok(endpoints) = store.endpoints(name) else {
        return;
    };
    let ghosts: Vec<&str> = endpoints
        .iter()
        .map(|e| e.container_id.as_str())
        .filter(|id| !ctx.store.dir_of(id).path.exists())
        .collect();
    if let Err(e) = crate::net::release_endpoints(ctx.root(), &ghosts, HostVeths::Delete) {
        crate::project::warn(&format!("network {name}: {e}"));
    }
}

/// A network's name and how its removal went.
type NetworkResult = (String, Result<(), berth_net::network::NetworkError>);

/// Removes networks `names`: their records one after the other, then their bridges and the
/// firewall's rules for them at the same time (`nft` and the kernel's rtnl lock each take
/// tens of milliseconds). The result of each, and whether the firewall was rewritten (its
/// failure is warned of here).
fn remove_networks(
    root: &std::path::Path,
    store: &berth_net::network::NetworkStore,
    names: &[String],
) -> (Vec<NetworkResult>, bool) {
    let mut results = Vec::new();
    let mut removed = Vec::new();
    for name in names {
        match store.remove_records(name) {
            Ok(r) => removed.push(r),
            Err(e) => results.push((name.clone(), Err(e))),
        }
    }
    if removed.is_empty() {
        return (results, false);
    }
    let firewall = std::thread::scope(|s| {
        let firewall = s.spawn(|| crate::net::sync_firewall(root, store));
        for r in removed {
            let name = r.name().to_string();
            results.push((name, r.delete_bridge()));
        }
        firewall
            .join()
            .unwrap_or_else(|_| Err("updating the firewall panicked".into()))
    });
    if let Err(e) = firewall {
        crate::project::warn(&format!("firewall: {e}"));
    }
    (results, true)
}

/// `--rmi all`: the images of the project's services, each once, unless another container
/// still uses it (a warning, as docker compose; never an error). `--rmi local` removes the
/// images compose built without a name of their own: berth builds none yet, so nothing.
fn remove_images(ctx: &Ctx, project: &berth_compose::model::Project, progress: &Progress) {
    let in_use = match ctx.store.image_users() {
        Ok(u) => u,
        Err(e) => {
            crate::project::warn(&format!("images: {e}"));
            return;
        }
    };
    let mut names: Vec<&str> = project
        .services
        .values()
        .map(|s| s.image.as_str())
        .filter(|i| !i.is_empty())
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut removed = false;
    for name in names {
        let Ok(reference) = berth_engine::reference::Reference::parse(name) else {
            continue;
        };
        let key = reference.to_string();
        if !ctx
            .engine
            .stores
            .images
            .refs()
            .is_ok_and(|r| r.contains_key(&key))
        {
            continue;
        }
        match berth_engine::prune::remove_image(&ctx.engine.stores, &key, false, &in_use) {
            Ok(_) => {
                progress.line("Image", name, "Removed");
                removed = true;
            }
            Err(e) => crate::project::warn(&format!("image {name}: {e}")),
        }
    }
    if removed && let Err(e) = berth_engine::prune::collect_garbage(&ctx.engine.stores) {
        crate::project::warn(&format!("images: {e}"));
    }
}
