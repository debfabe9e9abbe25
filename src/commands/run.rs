//! `berth run`: a one-off container of a service (`<project>-<service>-run-<12 hex>`), its
//! dependencies brought up first, the command in the foreground with its exit code.

use std::io::IsTerminal;

use anyhow::{Context, bail};
use berth_compose::model::ShellCommand;
use clap::Args;

use crate::cli::Settings;
use crate::commands::container::Ctx;
use crate::orchestrator::convert::{self, ServiceInstance};
use crate::project::{self, LoadFlags};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run container in background and print container ID
    #[arg(short, long)]
    pub detach: bool,
    /// Automatically remove the container when it exits
    #[arg(long)]
    pub rm: bool,
    /// Set environment variables
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Publish a container's port(s) to the host
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Run command with all service's ports enabled and mapped to the host
    #[arg(long = "service-ports")]
    pub service_ports: bool,
    /// Don't start linked services
    #[arg(long = "no-deps")]
    pub no_deps: bool,
    /// Override the entrypoint of the image
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Bind mount a volume
    #[arg(short, long = "volume")]
    pub volumes: Vec<String>,
    /// Run as specified username or uid
    #[arg(short, long)]
    pub user: Option<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Disable pseudo-TTY allocation (default: auto-detected)
    #[arg(short = 'T', long = "no-TTY")]
    pub no_tty: bool,
    /// Add or override a label
    #[arg(short, long = "label")]
    pub labels: Vec<String>,
    pub service: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

pub fn run(settings: &Settings, a: &RunArgs) -> anyhow::Result<u8> {
    let loaded = project::load(
        settings,
        &LoadFlags {
            services: vec![a.service.clone()],
            ..LoadFlags::default()
        },
    )?;
    let mut project = loaded.loaded.project;
    let Some(svc) = project.services.get(&a.service).cloned() else {
        bail!("no such service: {}", a.service);
    };
    let ctx = Ctx::open(settings)?;
    // Dependencies first (as `up -d` of them), unless --no-deps.
    let deps: Vec<String> = svc.depends_on.keys().cloned().collect();
    if !a.no_deps && !deps.is_empty() {
        let up = crate::commands::up::UpArgs {
            detach: true,
            pull: "policy".into(),
            services: deps,
            ..Default::default()
        };
        let code = crate::commands::up::run(settings, &up)?;
        if code != 0 {
            return Ok(code);
        }
    } else {
        // The networks and volumes the one-off container needs.
        let progress = crate::orchestrator::execute::Progress::new();
        crate::orchestrator::execute::ensure_networks(&ctx, &project, &progress)?
            .finish()
            .map_err(|e| anyhow::anyhow!("firewall: {e}"))?;
        crate::orchestrator::execute::ensure_volumes(&ctx, &project, &progress)?;
    }
    // The run's overrides go into the service before it is converted.
    {
        let s = project
            .services
            .get_mut(&a.service)
            .context("service vanished")?;
        if !a.command.is_empty() {
            s.command = Some(ShellCommand::Exec(a.command.clone()));
        }
        if let Some(e) = &a.entrypoint {
            s.entrypoint = Some(ShellCommand::Shell(e.clone()));
        }
        if !a.service_ports {
            s.ports.clear();
        }
        s.restart = "no".into();
        if let Some(d) = s.deploy.as_mut() {
            d.restart_policy = None;
        }
        if let Some(u) = &a.user {
            s.user = u.clone();
        }
        if let Some(w) = &a.workdir {
            s.working_dir = w.clone();
        }
        s.container_name.clear();
    }
    let svc = &project.services[&a.service];
    if svc.image.is_empty() {
        bail!(
            "service {:?} builds its image (`build:`), which berth does not do yet",
            a.service
        );
    }
    // The service's own keys are checked before a pull (see `up`).
    crate::orchestrator::convert::preflight(&project, &a.service, &loaded.environment)?;
    let image = crate::commands::container::image_for(&ctx, &svc.image, &svc.pull_policy)?;
    let crate::orchestrator::execute::Shared {
        joined,
        volumes_from,
    } = crate::orchestrator::execute::shared_containers(&ctx, &project.name, svc)?;
    let hashes = crate::commands::up::hashes(&project)?;
    let inst = ServiceInstance {
        project: &project,
        service: &a.service,
        number: 1,
        oneoff: true,
        image: &image,
        config_hash: hashes.get(&a.service).cloned().unwrap_or_default(),
        working_dir: loaded.discovered.project_dir.display().to_string(),
        config_files: loaded
            .discovered
            .files
            .iter()
            .filter_map(|f| f.path.as_ref().map(|p| p.display().to_string()))
            .collect(),
        joined,
        environment: &loaded.environment,
        volumes_from,
    };
    let convert::NewContainer { mut config, files } = convert::container_config(&inst)?;
    if let Some(n) = &a.name {
        config.name = n.clone();
    }
    config.auto_remove = a.rm;
    let tty = !a.no_tty && !a.detach && std::io::stdin().is_terminal();
    config.process.tty = tty;
    config.process.stdin_open = !a.detach;
    for e in &a.env {
        let key = e.split('=').next().unwrap_or(e);
        config
            .process
            .env
            .retain(|x| x.split('=').next() != Some(key));
        if e.contains('=') {
            config.process.env.push(e.clone());
        } else if let Ok(v) = std::env::var(key) {
            config.process.env.push(format!("{key}={v}"));
        }
    }
    for l in &a.labels {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        config.labels.insert(k.to_string(), v.to_string());
    }
    for p in &a.publish {
        config
            .ports
            .extend(crate::commands::container::port_configs(p)?);
    }
    for v in &a.volumes {
        config
            .mounts
            .push(crate::commands::container::parse_volume_flag(v)?);
    }
    crate::commands::container::ensure_volumes(&ctx, &config.mounts)?;
    let dir = ctx.store.create_with_files(&config, &files)?;
    crate::commands::container::run_created(&ctx, &dir, a.detach, !a.detach, tty, a.rm)
}
