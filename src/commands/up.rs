//! `berth up`: create and start the project's containers (observe → plan → execute).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use berth_compose::graph::ServiceGraph;
use berth_compose::model::Project;
use berth_engine::fsutil::Lock;
use clap::Args;

use crate::cli::Settings;
use crate::commands::container::Ctx;
use crate::orchestrator::execute::{Progress, UpContext, ensure_networks, ensure_volumes};
use crate::orchestrator::observe::project_containers;
use crate::orchestrator::plan::{self, Condition, Dependency, DesiredService, UpOptions};
use crate::project::{self, LoadFlags};

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Detached mode: run containers in the background
    #[arg(short, long)]
    pub detach: bool,
    /// Recreate containers even if their configuration and image haven't changed
    #[arg(long = "force-recreate")]
    pub force_recreate: bool,
    /// If containers already exist, don't recreate them
    #[arg(long = "no-recreate", conflicts_with = "force_recreate")]
    pub no_recreate: bool,
    /// Don't start linked services
    #[arg(long = "no-deps")]
    pub no_deps: bool,
    /// Don't start the services after creating them
    #[arg(long = "no-start")]
    pub no_start: bool,
    /// Remove containers for services not defined in the Compose file
    #[arg(long = "remove-orphans")]
    pub remove_orphans: bool,
    /// Scale SERVICE to NUM instances; overrides the `scale` setting in the Compose file
    #[arg(long, value_name = "SERVICE=NUM")]
    pub scale: Vec<String>,
    /// Use this timeout in seconds for container shutdown when containers are already running
    #[arg(short = 't', long)]
    pub timeout: Option<u64>,
    /// Build images before starting containers
    #[arg(long)]
    pub build: bool,
    /// Don't build an image, even if it's policy
    #[arg(long = "no-build", conflicts_with = "build")]
    pub no_build: bool,
    /// Pull image before running ("always"|"missing"|"never")
    #[arg(long, default_value = "policy")]
    pub pull: String,
    pub services: Vec<String>,
}

/// The per-project lock: two `up`/`down` of one project run one after the other.
pub fn project_lock(root: &std::path::Path, project: &str) -> anyhow::Result<Lock> {
    let dir = root.join("projects");
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let path = dir.join(format!("{project}.lock"));
    if let Some(lock) = Lock::try_exclusive(&path)? {
        return Ok(lock);
    }
    eprintln!("waiting for another berth command on project {project} to finish");
    Ok(Lock::exclusive(&path)?)
}

/// The service graph of `project`.
pub fn graph(project: &Project) -> anyhow::Result<ServiceGraph> {
    Ok(ServiceGraph::new(project.services.iter().map(
        |(name, s)| {
            (
                name.clone(),
                s.depends_on
                    .iter()
                    .filter(|(dep, d)| d.required || project.services.contains_key(*dep))
                    .map(|(dep, _)| dep.clone())
                    .collect(),
            )
        },
    ))?)
}

/// The config hash of every service.
pub fn hashes(project: &Project) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (name, svc) in &project.services {
        let value = serde_json::to_value(svc).context("serialise the service")?;
        out.insert(name.clone(), berth_compose::hash::service_hash(&value));
    }
    Ok(out)
}

fn scale_overrides(raw: &[String]) -> anyhow::Result<BTreeMap<String, u32>> {
    raw.iter()
        .map(|s| {
            let (svc, n) = s
                .split_once('=')
                .with_context(|| format!("invalid --scale {s:?}: expected SERVICE=NUM"))?;
            let n: u32 = n
                .parse()
                .with_context(|| format!("invalid --scale {s:?}: {n:?} is not a number"))?;
            Ok((svc.to_string(), n))
        })
        .collect()
}

fn replicas(svc: &berth_compose::model::ServiceConfig) -> u32 {
    svc.scale
        .or_else(|| svc.deploy.as_ref().and_then(|d| d.replicas))
        .unwrap_or(1)
        .max(0) as u32
}

pub fn run(settings: &Settings, args: &UpArgs) -> anyhow::Result<u8> {
    if !args.detach {
        bail!(
            "berth up runs detached only for now: use `berth up -d`, then `berth logs -f`\nhint: attached mode (log streaming, Ctrl-C to stop) comes with the supervisor"
        );
    }
    if args.build {
        bail!("--build: building images (`build:`) is not supported yet");
    }
    let loaded = project::load(
        settings,
        &LoadFlags {
            services: args.services.clone(),
            ..LoadFlags::default()
        },
    )?;
    let project = &loaded.loaded.project;
    for s in &args.services {
        if !project.services.contains_key(s) {
            bail!("no such service: {s}");
        }
    }
    let ctx = Ctx::open(settings)?;
    let _lock = project_lock(ctx.root(), &project.name)?;
    let full = graph(project)?;
    let graph = if args.services.is_empty() {
        full
    } else if args.no_deps {
        full.only(&args.services)
    } else {
        full.with_dependencies(&args.services)
    };
    let levels = graph.start_levels();
    let hashes = hashes(project)?;
    let scale = scale_overrides(&args.scale)?;
    for s in scale.keys() {
        if !project.services.contains_key(s) {
            bail!("--scale: no such service: {s}");
        }
    }

    // Images first: nothing is created before every image is there.
    let mut images = BTreeMap::new();
    for name in levels.iter().flatten() {
        let svc = &project.services[name];
        if svc.image.is_empty() {
            bail!(
                "service {name:?} has no image and builds one (`build:`), which berth does not do yet\nhint: build it elsewhere and set `image:`"
            );
        }
        let policy = if args.pull == "policy" {
            svc.pull_policy.as_str()
        } else {
            args.pull.as_str()
        };
        let image = crate::commands::container::image_for(&ctx, &svc.image, policy)
            .with_context(|| format!("service {name}"))?;
        images.insert(name.clone(), image);
    }
    let desired: Vec<DesiredService> = levels
        .iter()
        .flatten()
        .map(|name| {
            let svc = &project.services[name];
            DesiredService {
                name: name.clone(),
                hash: hashes.get(name).cloned().unwrap_or_default(),
                scale: scale.get(name).copied().unwrap_or_else(|| replicas(svc)),
                depends_on: svc
                    .depends_on
                    .iter()
                    .map(|(dep, d)| Dependency {
                        service: dep.clone(),
                        condition: match d.condition.as_str() {
                            "service_healthy" => Condition::Healthy,
                            "service_completed_successfully" => Condition::CompletedSuccessfully,
                            _ => Condition::Started,
                        },
                        restart: d.restart,
                        required: d.required,
                    })
                    .collect(),
            }
        })
        .collect();
    for d in &desired {
        for dep in &d.depends_on {
            if dep.condition == Condition::Healthy && !args.no_deps {
                bail!(
                    "service {} depends on {} being healthy: health checks come with berth's supervisor (next issue)",
                    d.name,
                    dep.service
                );
            }
        }
    }

    let progress = Progress::new();
    ensure_networks(&ctx, project, &progress)?;
    ensure_volumes(&ctx, project, &progress)?;

    let mut observed: Vec<_> = project_containers(&ctx.store, &project.name)?
        .iter()
        .map(|o| o.to_plan())
        .collect();
    if !args.services.is_empty() {
        // Other services' containers are neither touched nor orphans.
        let selected: Vec<&String> = levels.iter().flatten().collect();
        observed.retain(|o| selected.contains(&&o.service));
    }
    let opts = UpOptions {
        force_recreate: args.force_recreate,
        no_recreate: args.no_recreate,
        no_start: args.no_start,
        remove_orphans: args.remove_orphans,
        services: args.services.clone(),
        scale: scale.clone(),
    };
    let plan = plan::plan(&desired, &levels, &observed, &opts);
    if !plan.orphans.is_empty() {
        crate::project::warn(&format!(
            "Found orphan containers ({}) for this project. If you removed or renamed this service in your compose file, you can run this command with the --remove-orphans flag to clean it up.",
            plan.orphans
                .iter()
                .map(|o| o.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if plan.is_empty() {
        // Nothing changed: say so (docker compose lists every container as Running).
        for o in project_containers(&ctx.store, &project.name)? {
            if !o.oneoff() {
                progress.line("Container", &o.config.name, "Running");
            }
        }
        let record = crate::supervisor::ProjectRecord::of(project)?;
        crate::supervisor::write_project_record(ctx.root(), &project.name, &record)?;
        crate::supervisor::ensure_running(ctx.root(), &project.name)?;
        return Ok(0);
    }
    let up = UpContext {
        ctx: &ctx,
        project,
        working_dir: loaded.discovered.project_dir.display().to_string(),
        config_files: loaded
            .discovered
            .files
            .iter()
            .filter_map(|f| f.path.as_ref().map(|p| p.display().to_string()))
            .collect(),
        images,
        hashes,
        no_start: args.no_start,
        stop_timeout: args.timeout.map(Duration::from_secs),
        progress,
    };
    up.run_parallel(&plan.removals)?;
    for level in &plan.levels {
        up.run_parallel(level)?;
        wait_for_completion(&up, level, &desired)?;
    }
    let record = crate::supervisor::ProjectRecord::of(project)?;
    crate::supervisor::write_project_record(ctx.root(), &project.name, &record)?;
    crate::supervisor::ensure_running(ctx.root(), &project.name)?;
    Ok(0)
}

/// `service_completed_successfully`: the dependents of a level wait until the dependency's
/// containers exited 0.
fn wait_for_completion(
    up: &UpContext,
    level: &[plan::Op],
    desired: &[DesiredService],
) -> anyhow::Result<()> {
    if up.no_start {
        return Ok(());
    }
    let started: Vec<&str> = level
        .iter()
        .filter_map(|op| match op {
            plan::Op::Create { service, .. }
            | plan::Op::Recreate { service, .. }
            | plan::Op::Start { service, .. } => Some(service.as_str()),
            plan::Op::Remove { .. } => None,
        })
        .collect();
    for service in started {
        let awaited = desired.iter().any(|d| {
            d.depends_on.iter().any(|dep| {
                dep.service == service && dep.condition == Condition::CompletedSuccessfully
            })
        });
        if !awaited {
            continue;
        }
        for o in project_containers(&up.ctx.store, &up.project.name)? {
            if o.service() != service || o.oneoff() {
                continue;
            }
            let code = berth_engine::container::lifecycle::wait(&up.ctx.store, &o.dir, None)?
                .unwrap_or(255);
            if code != 0 {
                let dependents: Vec<&str> = desired
                    .iter()
                    .filter(|d| d.depends_on.iter().any(|dep| dep.service == service))
                    .map(|d| d.name.as_str())
                    .collect();
                bail!(
                    "service {service:?} didn't complete successfully: exit {code} (needed by {})",
                    dependents.join(", ")
                );
            }
        }
    }
    Ok(())
}
