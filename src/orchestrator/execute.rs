//! Execute: networks and volumes first, then the plan's removals, then its levels one after
//! another, the operations of a level in parallel (one thread each: every operation is a
//! few blocking engine calls). Progress lines as docker compose prints them.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, bail};
use berth_compose::model::Project;
use berth_engine::container::lifecycle;
use berth_engine::container::store::ContainerDir;
use berth_engine::container::{ContainerConfig, MountConfig, MountKind};
use berth_engine::images::ImageRecord;
use berth_engine::volumes::{VolumeOptions, VolumeStore};
use berth_net::ipam::SubnetConfig;
use berth_net::network::CreateRequest;

use crate::commands::container::Ctx;
use crate::labels;
use crate::orchestrator::convert::{self, ServiceInstance};
use crate::orchestrator::observe::Observed;
use crate::orchestrator::plan::Op;

/// Progress lines on stderr (` ✔ Container p-web-1  Started`), one writer at a time.
pub struct Progress {
    lock: Mutex<()>,
}

impl Progress {
    pub fn new() -> Progress {
        Progress {
            lock: Mutex::new(()),
        }
    }

    pub fn line(&self, kind: &str, name: &str, what: &str) {
        let _g = self.lock.lock();
        let _ = writeln!(std::io::stderr(), " \u{2714} {kind} {name}  {what}");
    }
}

/// What `up` needs to know beyond the project.
pub struct UpContext<'a> {
    pub ctx: &'a Ctx,
    pub project: &'a Project,
    pub working_dir: String,
    pub config_files: Vec<String>,
    pub images: BTreeMap<String, ImageRecord>,
    pub hashes: BTreeMap<String, String>,
    pub no_start: bool,
    /// `-V`: a recreated container gets new anonymous volumes instead of its predecessor's.
    pub renew_anon_volumes: bool,
    pub stop_timeout: Option<Duration>,
    pub progress: Progress,
    /// The project's interpolation environment (secrets and configs by `environment:`).
    pub environment: &'a berth_compose::loader::Environment,
}

/// What a service shares with other containers, resolved for its conversion: the container
/// of each `service:x` / `container:x` of `network_mode`, `pid` and `ipc`, and the mounts of
/// each `volumes_from` source (see [`convert::ServiceInstance`]). A service's container is its
/// running one, else any of its (whose start then says it is not running).
pub fn shared_containers(
    ctx: &Ctx,
    project: &str,
    svc: &berth_compose::model::ServiceConfig,
) -> anyhow::Result<Shared> {
    let mut observed = None;
    let mut container_of = |source: &str| -> anyhow::Result<Option<String>> {
        Ok(Some(match source.split_once(':') {
            Some(("service", other)) => {
                let all = match &observed {
                    Some(all) => all,
                    None => observed.insert(crate::orchestrator::observe::project_containers(
                        &ctx.store, project,
                    )?),
                };
                let of = |o: &&Observed| o.service() == other && !o.oneoff();
                all.iter()
                    .filter(of)
                    .find(|o| o.running())
                    .or_else(|| all.iter().find(of))
                    .map(|o| o.dir.id.clone())
                    .with_context(|| format!("service {other} has no container to share with"))?
            }
            Some(("container", other)) => ctx.resolve(other)?.id,
            _ => return Ok(None),
        }))
    };
    let mut joined = BTreeMap::new();
    for mode in [&svc.network_mode, &svc.pid, &svc.ipc] {
        if let Some(id) = container_of(mode)? {
            joined.insert(mode.clone(), id);
        }
    }
    // An external link names a container that must exist, as with docker compose; its
    // address is looked up at each query (it may restart elsewhere).
    for (i, entry) in svc.external_links.iter().enumerate() {
        // Malformed entries were refused by the conversion's preflight.
        let target = crate::net::parse_link(entry).map_or(entry.as_str(), |(c, _)| c);
        ctx.resolve(target)
            .with_context(|| format!("external_links[{i}] {entry:?}"))?;
    }
    let mut volumes_from = BTreeMap::new();
    for entry in &svc.volumes_from {
        let (source, _) = convert::volumes_from_source(entry);
        if let Some(id) = container_of(&source)? {
            volumes_from.insert(source, ctx.store.dir_of(&id).config()?.mounts);
        }
    }
    Ok(Shared {
        joined,
        volumes_from,
    })
}

/// What [`shared_containers`] found: [`convert::ServiceInstance`]'s fields of the same names.
pub struct Shared {
    pub joined: BTreeMap<String, String>,
    pub volumes_from: BTreeMap<String, Vec<MountConfig>>,
}

/// The keys of the project networks the services use (and `default` when a service has no
/// `networks:`), sorted.
fn used_networks(project: &Project) -> Vec<String> {
    let mut used: Vec<String> = Vec::new();
    for svc in project.services.values() {
        if !svc.network_mode.is_empty() {
            continue;
        }
        if svc.networks.is_empty() {
            used.push("default".into());
        }
        used.extend(svc.networks.keys().cloned());
    }
    used.sort();
    used.dedup();
    used
}

fn network_definition(project: &Project, key: &str) -> berth_compose::model::NetworkConfig {
    project
        .networks
        .get(key)
        .cloned()
        .flatten()
        .unwrap_or_default()
}

/// What creating the project network `key` asks for, or an error naming the key berth
/// cannot honour: another driver or IPAM driver, more than one address pool, IPv6
/// (`enable_ipv6`, an IPv6 subnet) or no IPv4 (`enable_ipv4: false`). Pure, so `up` and
/// `run` check every network before any pull ([`check_networks`]).
fn network_request(
    project: &Project,
    key: &str,
    def: &berth_compose::model::NetworkConfig,
) -> anyhow::Result<CreateRequest> {
    let refuse = |what: &str, why: &str| anyhow::anyhow!("network {key}: {what}: {why}");
    const NO_IPV6: &str = "IPv6 is not supported by berth yet (its networks are IPv4 only)";
    if !def.driver.is_empty() && def.driver != "bridge" {
        return Err(refuse(
            "driver",
            &format!("{:?} is not supported (bridge)", def.driver),
        ));
    }
    if def.enable_ipv6 == Some(true) {
        return Err(refuse("enable_ipv6", NO_IPV6));
    }
    if def.enable_ipv4 == Some(false) {
        return Err(refuse(
            "enable_ipv4",
            "IPv4 cannot be turned off: berth's networks are IPv4 only",
        ));
    }
    if !def.ipam.driver.is_empty() && def.ipam.driver != "default" {
        return Err(refuse(
            "ipam.driver",
            &format!("{:?} is not supported (default)", def.ipam.driver),
        ));
    }
    for (i, pool) in def.ipam.config.iter().enumerate() {
        if pool.subnet.contains(':') {
            return Err(refuse(&format!("ipam.config[{i}].subnet"), NO_IPV6));
        }
    }
    if def.ipam.config.len() > 1 {
        return Err(refuse(
            "ipam.config",
            "berth gives a network one IPv4 subnet; give one entry",
        ));
    }
    let (ipam, aux_addresses) = match def.ipam.config.first() {
        Some(pool) => {
            let at = "ipam.config[0]";
            let cfg = SubnetConfig::from_compose(&pool.subnet, &pool.ip_range, &pool.gateway)
                .map_err(|e| refuse(at, &e.to_string()))?;
            let mut aux = BTreeMap::new();
            for (name, addr) in &pool.aux_addresses {
                let ip = addr.parse::<std::net::Ipv4Addr>().map_err(|_| {
                    refuse(
                        &format!("{at}.aux_addresses.{name}"),
                        &format!("{addr:?} is not an IPv4 address"),
                    )
                })?;
                aux.insert(name.clone(), ip);
            }
            cfg.check_aux(&aux)
                .map_err(|e| refuse(&format!("{at}.aux_addresses"), &e.to_string()))?;
            (Some(cfg), aux)
        }
        None => (None, BTreeMap::new()),
    };
    let mut net_labels: BTreeMap<String, String> = def
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    net_labels.insert(labels::PROJECT.into(), project.name.clone());
    net_labels.insert(labels::NETWORK.into(), key.to_string());
    net_labels.insert(
        labels::VERSION.into(),
        crate::commands::version::VERSION.into(),
    );
    Ok(CreateRequest {
        name: convert::network_name(project, key),
        driver: "bridge".into(),
        ipam,
        aux_addresses,
        internal: def.internal,
        labels: net_labels,
        options: def
            .driver_opts
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    })
}

/// Checks every project network the services use that berth would create (see
/// [`network_request`]), without touching anything: `up` and `run` call it before pulling.
pub fn check_networks(project: &Project) -> anyhow::Result<()> {
    for key in used_networks(project) {
        let def = network_definition(project, &key);
        if !def.external.0 {
            network_request(project, &key, &def)?;
        }
    }
    Ok(())
}

/// The project networks the services use (and `default` when a service has no
/// `networks:`), created unless they exist; external ones must exist. When it made one, the
/// firewall table is being rewritten on a thread as this returns: the caller goes on creating
/// containers (each waits for the rewrite before it runs) and calls
/// [`FirewallSync::finish`](crate::net::FirewallSync::finish) at the end.
pub fn ensure_networks(
    ctx: &Ctx,
    project: &Project,
    progress: &Progress,
) -> anyhow::Result<crate::net::FirewallSync> {
    let root = &ctx.engine.stores.root;
    let store = crate::net::store(root.path()).map_err(anyhow::Error::msg)?;
    // All are checked before the first is made.
    check_networks(project)?;
    let mut created = false;
    for key in used_networks(project) {
        let def = network_definition(project, &key);
        let name = convert::network_name(project, &key);
        if def.external.0 {
            if store.get(&name)?.is_none() {
                bail!(
                    "network {name} declared as external, but could not be found\nhint: create it with `berth network create {name}`"
                );
            }
            continue;
        }
        if let Some(existing) = store.get(&name)? {
            if existing.labels.get(labels::PROJECT).map(String::as_str) != Some(&project.name) {
                crate::project::warn(&format!(
                    "a network with name {name} exists but was not created by berth for this project.\nSet `external: true` to use an existing network"
                ));
            }
            continue;
        }
        let req = network_request(project, &key, &def)?;
        crate::commands::network::create_network_records(root, &store, &req)
            .with_context(|| format!("network {key}"))?;
        progress.line("Network", &name, "Created");
        created = true;
    }
    if !created {
        return Ok(crate::net::FirewallSync::default());
    }
    crate::net::FirewallSync::start(root.path()).map_err(anyhow::Error::msg)
}

/// The project's named volumes, created unless they exist; external ones must exist.
pub fn ensure_volumes(ctx: &Ctx, project: &Project, progress: &Progress) -> anyhow::Result<()> {
    let store = VolumeStore::open(&ctx.engine.stores.root)?;
    for (key, def) in &project.volumes {
        let def = def.clone().unwrap_or_default();
        let name = convert::volume_name(project, key);
        if def.external.0 {
            if store.get_if_exists(&name)?.is_none() {
                bail!(
                    "external volume \"{name}\" not found\nhint: create it with `berth volume create {name}`"
                );
            }
            continue;
        }
        if store.get_if_exists(&name)?.is_some() {
            continue;
        }
        let mut opts = VolumeOptions::default();
        for (k, v) in &def.labels {
            opts.labels.insert(k.clone(), v.clone());
        }
        opts.labels
            .insert(labels::PROJECT.into(), project.name.clone());
        opts.labels.insert(labels::VOLUME.into(), key.clone());
        opts.labels.insert(
            labels::VERSION.into(),
            crate::commands::version::VERSION.into(),
        );
        if !def.driver.is_empty() && def.driver != "local" {
            bail!(
                "volume {key}: driver {:?} is not supported (local)",
                def.driver
            );
        }
        for (k, v) in &def.driver_opts {
            opts.driver_opts.insert(k.clone(), v.clone());
        }
        store.create(&name, &opts)?;
        progress.line("Volume", &name, "Created");
    }
    Ok(())
}

impl UpContext<'_> {
    fn instance<'s>(
        &'s self,
        service: &'s str,
        number: u32,
    ) -> anyhow::Result<ServiceInstance<'s>> {
        let image = self
            .images
            .get(service)
            .with_context(|| format!("service {service}: no image"))?;
        let svc = self
            .project
            .services
            .get(service)
            .with_context(|| format!("no service {service}"))?;
        let Shared {
            joined,
            volumes_from,
        } = shared_containers(self.ctx, &self.project.name, svc)
            .with_context(|| format!("service {service}"))?;
        Ok(ServiceInstance {
            project: self.project,
            service,
            number,
            oneoff: false,
            image,
            config_hash: self.hashes.get(service).cloned().unwrap_or_default(),
            working_dir: self.working_dir.clone(),
            config_files: self.config_files.clone(),
            joined,
            environment: self.environment,
            volumes_from,
        })
    }

    fn create(&self, service: &str, number: u32) -> anyhow::Result<ContainerDir> {
        self.create_after(service, number, None)
    }

    /// Creates the container; one that replaces `previous` takes over its anonymous volumes
    /// (by mount target, as docker compose does) unless `-V` renews them.
    fn create_after(
        &self,
        service: &str,
        number: u32,
        previous: Option<&ContainerConfig>,
    ) -> anyhow::Result<ContainerDir> {
        let inst = self.instance(service, number)?;
        let convert::NewContainer { mut config, files } = convert::container_config(&inst)?;
        if let Some(prev) = previous.filter(|_| !self.renew_anon_volumes) {
            inherit_anonymous_volumes(&mut config, prev);
        }
        crate::commands::container::ensure_volumes(self.ctx, &config.mounts)?;
        let dir = self.ctx.store.create_with_files(&config, &files)?;
        self.progress.line("Container", &config.name, "Created");
        Ok(dir)
    }

    fn start(&self, dir: &ContainerDir) -> anyhow::Result<()> {
        if self.no_start {
            return Ok(());
        }
        let config = dir.config();
        let name = config
            .as_ref()
            .map(|c| c.name.clone())
            .unwrap_or_else(|_| dir.id.clone());
        lifecycle::detach(
            lifecycle::start(&self.ctx.shim_exe, self.ctx.root(), dir, true)
                .with_context(|| format!("container {name}"))?,
        );
        crate::hooks::post_start(self.ctx, self.project, dir, &config?)?;
        self.progress.line("Container", &name, "Started");
        Ok(())
    }

    fn remove(&self, id: &str) -> anyhow::Result<()> {
        let dir = self.ctx.store.dir_of(id);
        let name = dir
            .config()
            .map(|c| c.name)
            .unwrap_or_else(|_| id.to_string());
        self.pre_stop(&dir)?;
        stop_and_remove(self.ctx, &dir, self.stop_timeout, false)?;
        self.progress.line("Container", &name, "Removed");
        Ok(())
    }

    /// The `pre_stop` hooks of the container of `dir` when it runs.
    fn pre_stop(&self, dir: &ContainerDir) -> anyhow::Result<()> {
        let observed = Observed {
            dir: dir.clone(),
            config: dir.config()?,
            state: lifecycle::state(dir)?,
        };
        crate::hooks::pre_stop(self.ctx, self.project, &observed)
    }

    /// One operation of the plan.
    pub fn run_op(&self, op: &Op) -> anyhow::Result<()> {
        match op {
            Op::Create { service, number } => {
                let dir = self.create(service, *number)?;
                self.start(&dir)
            }
            Op::Start { id, .. } => self.start(&self.ctx.store.dir_of(id)),
            Op::Remove { id, .. } => self.remove(id),
            Op::Recreate {
                service,
                number,
                old,
            } => {
                // As docker compose: the old container stops and steps aside under a
                // temporary name, the new one takes the name, then the old one goes.
                let old_dir = self.ctx.store.dir_of(old);
                let old_config = old_dir.config()?;
                let old_name = old_config.name.clone();
                self.pre_stop(&old_dir)?;
                lifecycle::stop(&self.ctx.store, &old_dir, self.stop_timeout)
                    .with_context(|| format!("stop {old_name}"))?;
                self.ctx
                    .store
                    .rename(&old_dir, &format!("{}_{old_name}", &old[..12]))?;
                let dir = match self.create_after(service, *number, Some(&old_config)) {
                    Ok(d) => d,
                    Err(e) => {
                        let _ = self.ctx.store.rename(&old_dir, &old_name);
                        return Err(e);
                    }
                };
                // With -V the old anonymous volumes go with the old container; otherwise
                // the new one uses them now.
                stop_and_remove(
                    self.ctx,
                    &old_dir,
                    self.stop_timeout,
                    self.renew_anon_volumes,
                )?;
                self.progress.line("Container", &old_name, "Recreated");
                self.start(&dir)
            }
        }
    }

    /// Runs operations in parallel; every error is reported, the first is returned.
    pub fn run_parallel(&self, ops: &[Op]) -> anyhow::Result<()> {
        let errors: Vec<anyhow::Error> = std::thread::scope(|s| {
            let handles: Vec<_> = ops
                .iter()
                .map(|op| s.spawn(move || self.run_op(op)))
                .collect();
            handles
                .into_iter()
                .filter_map(|h| match h.join() {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e),
                    Err(_) => Some(anyhow::anyhow!("an operation panicked")),
                })
                .collect()
        });
        let mut errors = errors.into_iter();
        match errors.next() {
            None => Ok(()),
            Some(first) => {
                for e in errors {
                    eprintln!("error: {e:#}");
                }
                Err(first)
            }
        }
    }
}

/// Points `config`'s anonymous volume mounts at the anonymous volumes `previous` had at the
/// same targets.
fn inherit_anonymous_volumes(config: &mut ContainerConfig, previous: &ContainerConfig) {
    for m in &mut config.mounts {
        let MountKind::Volume {
            name, anonymous, ..
        } = &mut m.kind
        else {
            continue;
        };
        if !*anonymous {
            continue;
        }
        let target = m.target.trim_end_matches('/');
        if let Some(old) = previous.mounts.iter().find_map(|p| match &p.kind {
            MountKind::Volume {
                name,
                anonymous: true,
                ..
            } if p.target.trim_end_matches('/') == target => Some(name),
            _ => None,
        }) {
            name.clone_from(old);
        }
    }
}

/// Stops (gracefully, then kills) and removes a container; with `volumes`, its anonymous
/// volumes too. Networking is released by its shim (and here again, for a dead shim).
pub fn stop_and_remove(
    ctx: &Ctx,
    dir: &ContainerDir,
    timeout: Option<Duration>,
    volumes: bool,
) -> anyhow::Result<()> {
    let state = lifecycle::state(dir)?;
    if matches!(
        state.status,
        berth_engine::container::Status::Running | berth_engine::container::Status::Paused
    ) {
        lifecycle::stop(&ctx.store, dir, timeout)?;
    }
    lifecycle::remove(&ctx.engine.stores.root, &ctx.store, dir, true, volumes)?;
    crate::net::release(ctx.root(), &dir.id).map_err(anyhow::Error::msg)?;
    Ok(())
}

/// Runs `f` on each container in parallel (a thread each: the work is waiting on shims and
/// the kernel); every error is reported, the first is returned once all are done.
pub fn parallel<'a>(
    items: &[&'a Observed],
    f: impl Fn(&'a Observed) -> anyhow::Result<()> + Sync,
) -> anyhow::Result<()> {
    let errors: Vec<anyhow::Error> = std::thread::scope(|s| {
        let handles: Vec<_> = items.iter().map(|o| s.spawn(|| f(o))).collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().ok().and_then(Result::err))
            .collect()
    });
    let mut it = errors.into_iter();
    match it.next() {
        None => Ok(()),
        Some(first) => {
            for e in it {
                eprintln!("error: {e:#}");
            }
            Err(first)
        }
    }
}
