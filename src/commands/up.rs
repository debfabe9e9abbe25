//! `berth up`: create and start the project's containers (observe → plan → execute).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use berth_compose::graph::ServiceGraph;
use berth_compose::model::Project;
use berth_engine::container::lifecycle;
use berth_engine::container::{HealthStatus, Status};
use berth_engine::fsutil::Lock;
use clap::Args;

use crate::cli::Settings;
use crate::commands::container::Ctx;
use crate::orchestrator::execute::{Progress, UpContext, ensure_networks, ensure_volumes};
use crate::orchestrator::observe::project_containers;
use crate::orchestrator::plan::{self, Condition, Dependency, DesiredService, UpOptions};
use crate::project::{self, LoadFlags};

#[derive(Debug, Default, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub shorts: crate::cli::ShortGlobals,
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
    /// Recreate anonymous volumes instead of retrieving data from the previous containers
    #[arg(short = 'V', long = "renew-anon-volumes")]
    pub renew_anon_volumes: bool,
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
    /// Stops all containers if any container was stopped. Incompatible with -d
    #[arg(long = "abort-on-container-exit", conflicts_with = "detach")]
    pub abort_on_container_exit: bool,
    /// Stops all containers if any container exited with failure. Incompatible with -d
    #[arg(long = "abort-on-container-failure", conflicts_with = "detach")]
    pub abort_on_container_failure: bool,
    /// Return the exit code of the selected service container. Implies
    /// --abort-on-container-exit
    #[arg(
        long = "exit-code-from",
        value_name = "SERVICE",
        conflicts_with = "detach"
    )]
    pub exit_code_from: Option<String>,
    /// Restrict attaching to the specified services
    #[arg(long)]
    pub attach: Vec<String>,
    /// Do not attach (stream logs) to the specified services
    #[arg(long = "no-attach")]
    pub no_attach: Vec<String>,
    /// Don't print prefix in logs
    #[arg(long = "no-log-prefix")]
    pub no_log_prefix: bool,
    /// Produce monochrome output
    #[arg(long = "no-color")]
    pub no_color: bool,
    /// Wait for services to be running|healthy. Implies detached mode.
    #[arg(long)]
    pub wait: bool,
    /// Maximum duration in seconds to wait for the project to be running|healthy
    #[arg(long = "wait-timeout", value_name = "SECONDS")]
    pub wait_timeout: Option<u64>,
    pub services: Vec<String>,
}

/// The per-project lock: two `up`/`down` of one project run one after the other.
pub fn project_lock(root: &std::path::Path, project: &str) -> anyhow::Result<Lock> {
    let dir = root.join("projects");
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let path = project_lock_path(root, project);
    if let Some(lock) = Lock::try_exclusive(&path)? {
        return Ok(lock);
    }
    eprintln!("waiting for another berth command on project {project} to finish");
    Ok(Lock::exclusive(&path)?)
}

fn project_lock_path(root: &std::path::Path, project: &str) -> std::path::PathBuf {
    root.join("projects").join(format!("{project}.lock"))
}

/// Whether another command holds the project's lock now (an `up` or `down` under way).
pub fn project_busy(root: &std::path::Path, project: &str) -> bool {
    matches!(
        Lock::try_exclusive(&project_lock_path(root, project)),
        Ok(None)
    )
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
    // Attached: Ctrl-C must reach only our signal thread, so it is blocked before any
    // thread exists. `--wait` implies detached.
    let signals = if args.detach || args.wait {
        None
    } else {
        Some(crate::commands::attached::block_signals()?)
    };
    let since = chrono::Utc::now();
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
    let lock = project_lock(ctx.root(), &project.name)?;
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

    // Every service's own keys are checked before any pull: an error in the file must not
    // wait for (or come after) a long download.
    for name in levels.iter().flatten() {
        if project.services[name].image.is_empty() {
            bail!(
                "service {name:?} has no image and builds one (`build:`), which berth does not do yet\nhint: build it elsewhere and set `image:`"
            );
        }
        crate::orchestrator::convert::preflight(project, name, &loaded.environment)?;
    }
    crate::orchestrator::execute::check_networks(project)?;
    // Images first: nothing is created before every image is there.
    let mut images = BTreeMap::new();
    for name in levels.iter().flatten() {
        let svc = &project.services[name];
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
            Ok(DesiredService {
                name: name.clone(),
                hash: hashes.get(name).cloned().unwrap_or_default(),
                scale: scale.get(name).copied().unwrap_or_else(|| replicas(svc)),
                depends_on: svc
                    .depends_on
                    .iter()
                    .map(|(dep, d)| Dependency::from_compose(name, dep, d))
                    .collect::<anyhow::Result<_>>()?,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    if args.wait && args.no_start {
        bail!("--wait cannot be combined with --no-start: nothing would start");
    }

    let progress = Progress::new();
    let firewall = ensure_networks(&ctx, project, &progress)?;
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
        firewall
            .finish()
            .map_err(|e| anyhow::anyhow!("firewall: {e}"))?;
        // Nothing changed: say so (docker compose lists every container as Running).
        for o in project_containers(&ctx.store, &project.name)? {
            if !o.oneoff() {
                progress.line("Container", &o.config.name, "Running");
            }
        }
        if args.wait {
            wait_for_services(&ctx, &project.name, &desired, &progress, args.wait_timeout)?;
        }
        let record = crate::supervisor::ProjectRecord::of(project)?;
        crate::supervisor::write_project_record(ctx.root(), &project.name, &record)?;
        crate::supervisor::ensure_running(ctx.root(), &project.name)?;
        // An attached session must not keep other commands off the project.
        drop(lock);
        return attach_if_asked(&ctx, project, &graph, signals, since, args);
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
        renew_anon_volumes: args.renew_anon_volumes,
        stop_timeout: args.timeout.map(Duration::from_secs),
        progress,
        environment: &loaded.environment,
    };
    up.run_parallel(&plan.removals)?;
    for level in &plan.levels {
        wait_for_health(&up, level, &desired)?;
        up.run_parallel(level)?;
        wait_for_completion(&up, level, &desired)?;
    }
    // Every container has waited for it already; its own error, if it failed, comes here.
    firewall
        .finish()
        .map_err(|e| anyhow::anyhow!("firewall: {e}"))?;
    if args.wait {
        wait_for_services(
            &ctx,
            &project.name,
            &desired,
            &up.progress,
            args.wait_timeout,
        )?;
    }
    let record = crate::supervisor::ProjectRecord::of(project)?;
    crate::supervisor::write_project_record(ctx.root(), &project.name, &record)?;
    crate::supervisor::ensure_running(ctx.root(), &project.name)?;
    drop(lock);
    attach_if_asked(&ctx, project, &graph, signals, since, args)
}

/// Attached mode after the project is up (nothing to do when detached).
fn attach_if_asked(
    ctx: &Ctx,
    project: &Project,
    graph: &ServiceGraph,
    signals: Option<nix::sys::signal::SigSet>,
    since: chrono::DateTime<chrono::Utc>,
    args: &UpArgs,
) -> anyhow::Result<u8> {
    let Some(signals) = signals else {
        return Ok(0);
    };
    if let Some(svc) = &args.exit_code_from
        && !project.services.contains_key(svc)
    {
        bail!("no such service: {svc}");
    }
    let opts = crate::commands::attached::AttachOptions {
        abort_on_container_exit: args.abort_on_container_exit,
        abort_on_container_failure: args.abort_on_container_failure,
        exit_code_from: args.exit_code_from.clone(),
        attach: args.attach.clone(),
        no_attach: args.no_attach.clone(),
        no_log_prefix: args.no_log_prefix,
        no_color: args.no_color,
        timeout: args.timeout.map(Duration::from_secs),
    };
    crate::commands::attached::attached(
        ctx,
        &project.name,
        &graph.stop_levels(),
        signals,
        since,
        &opts,
    )
}

/// `service_healthy`: before a level starts, every container of each dependency its services
/// wait for must be healthy (docker compose's `waitDependencies`). A dependency outside the
/// selected services (`--no-deps`) is not waited for; one that fails is an error naming both
/// services, or only a warning when no dependent requires it (`required: false`).
fn wait_for_health(
    up: &UpContext,
    level: &[plan::Op],
    desired: &[DesiredService],
) -> anyhow::Result<()> {
    if up.no_start {
        return Ok(());
    }
    // dependency → (dependent, required), in order.
    let mut awaited: BTreeMap<&str, Vec<(&str, bool)>> = BTreeMap::new();
    for op in level {
        if matches!(op, plan::Op::Remove { .. }) {
            continue;
        }
        let Some(d) = desired.iter().find(|d| d.name == op.service()) else {
            continue;
        };
        for dep in &d.depends_on {
            if dep.condition == Condition::Healthy && desired.iter().any(|x| x.name == dep.service)
            {
                let waiters = awaited.entry(dep.service.as_str()).or_default();
                if !waiters.iter().any(|(n, _)| *n == d.name) {
                    waiters.push((d.name.as_str(), dep.required));
                }
            }
        }
    }
    for (service, waiters) in awaited {
        let Err(e) = wait_service_healthy(up, service) else {
            continue;
        };
        match waiters.iter().find(|(_, required)| *required) {
            Some((dependent, _)) => bail!(
                "service {dependent:?} depends on {service:?}: dependency failed to start: {e:#}"
            ),
            None => {
                for (dependent, _) in waiters {
                    crate::project::warn(&format!(
                        "service {dependent:?}: optional dependency {service:?} is not healthy: {e:#}"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Every container of `service` healthy (no deadline, as docker compose: the check's own
/// retries end the wait).
fn wait_service_healthy(up: &UpContext, service: &str) -> anyhow::Result<()> {
    for o in project_containers(&up.ctx.store, &up.project.name)? {
        if o.service() != service || o.oneoff() {
            continue;
        }
        let name = &o.config.name;
        let Some(hc) = &o.config.healthcheck else {
            bail!("container {name} has no healthcheck configured");
        };
        up.progress.line("Container", name, "Waiting");
        match crate::health::wait_healthy(up.ctx, &o.dir, hc, None)? {
            HealthStatus::Healthy => up.progress.line("Container", name, "Healthy"),
            HealthStatus::Unhealthy => bail!("container {name} is unhealthy"),
            HealthStatus::Starting => bail!("container {name} is still starting"),
        }
    }
    Ok(())
}

/// `up --wait`: every container of the selected services running, and healthy when it has a
/// health check (those awaited by a `service_completed_successfully` exited 0), within
/// `timeout` seconds when given. Any other outcome is an error (exit status 1).
fn wait_for_services(
    ctx: &Ctx,
    project: &str,
    desired: &[DesiredService],
    progress: &Progress,
    timeout: Option<u64>,
) -> anyhow::Result<()> {
    let deadline = timeout.map(|t| Instant::now() + Duration::from_secs(t));
    let timed_out = || match timeout {
        Some(t) => anyhow::anyhow!("application not healthy after {t}s"),
        None => anyhow::anyhow!("application not healthy"),
    };
    for o in project_containers(&ctx.store, project)? {
        let service = o.service();
        if o.oneoff() || !desired.iter().any(|d| d.name == service) {
            continue;
        }
        let name = &o.config.name;
        progress.line("Container", name, "Waiting");
        let completes = desired.iter().any(|d| {
            d.depends_on.iter().any(|dep| {
                dep.service == service && dep.condition == Condition::CompletedSuccessfully
            })
        });
        if completes {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            match lifecycle::wait(&ctx.store, &o.dir, left)? {
                Some(0) => {
                    progress.line("Container", name, "Exited");
                    continue;
                }
                Some(code) => bail!("container {name} exited ({code})"),
                None => return Err(timed_out()),
            }
        }
        match o
            .config
            .healthcheck
            .as_ref()
            .filter(|h| h.probe_args().is_some())
        {
            Some(hc) => match crate::health::wait_healthy(ctx, &o.dir, hc, deadline)? {
                HealthStatus::Healthy => {}
                HealthStatus::Unhealthy => bail!("container {name} is unhealthy"),
                HealthStatus::Starting => return Err(timed_out()),
            },
            None => {
                let st = lifecycle::state(&o.dir)?;
                match st.status {
                    Status::Running => {}
                    Status::Exited | Status::Dead => {
                        bail!("container {name} exited ({})", st.exit_code.unwrap_or(255))
                    }
                    other => bail!("container {name} is {}", other.as_str()),
                }
            }
        }
        progress.line("Container", name, "Healthy");
    }
    Ok(())
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
