//! The compose verbs that act on a project's existing containers: `start`, `stop`, `restart`,
//! `kill`, `rm`, `pause`, `unpause`, `exec`, `port`, `top`, `wait`, `create`, `scale`, and
//! `ls` (projects). Containers are selected by the services named (all when none), in
//! dependency order (start) or reverse (stop).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::{Context, bail};
use berth_engine::container::{Status, lifecycle};
use clap::Args;
use serde_json::json;

use crate::cli::Settings;
use crate::commands::container::Ctx;
use crate::labels;
use crate::orchestrator::execute::{Progress, parallel};
use crate::orchestrator::observe::{Observed, project_containers};
use crate::project::{self, LoadFlags};

/// The project, its containers and the engine.
struct ProjectCtx {
    ctx: Ctx,
    project: berth_compose::model::Project,
    containers: Vec<Observed>,
}

impl ProjectCtx {
    fn open(settings: &Settings) -> anyhow::Result<ProjectCtx> {
        let loaded = project::load(settings, &LoadFlags::default())?;
        let ctx = Ctx::open(settings)?;
        let project = loaded.loaded.project;
        let containers = project_containers(&ctx.store, &project.name)?;
        Ok(ProjectCtx {
            ctx,
            project,
            containers,
        })
    }

    fn check(&self, services: &[String]) -> anyhow::Result<()> {
        for s in services {
            if !self.project.services.contains_key(s) {
                bail!("no such service: {s}");
            }
        }
        Ok(())
    }

    /// The service containers (not one-off) of `services` (all when empty), grouped by
    /// dependency level: start order, or stop order with `reverse`.
    fn levels(&self, services: &[String], reverse: bool) -> anyhow::Result<Vec<Vec<&Observed>>> {
        self.check(services)?;
        let graph = crate::commands::up::graph(&self.project)?;
        let levels = if reverse {
            graph.stop_levels()
        } else {
            graph.start_levels()
        };
        Ok(levels
            .iter()
            .map(|level| {
                self.containers
                    .iter()
                    .filter(|o| !o.oneoff() && level.iter().any(|s| s == o.service()))
                    .filter(|o| services.is_empty() || services.iter().any(|s| s == o.service()))
                    .collect()
            })
            .collect())
    }

    /// One container of `service`: replica `index` (1 when unset).
    fn one(&self, service: &str, index: Option<u32>) -> anyhow::Result<&Observed> {
        self.check(&[service.to_string()])?;
        let index = index.unwrap_or(1);
        self.containers
            .iter()
            .find(|o| o.service() == service && !o.oneoff() && o.number() == index)
            .with_context(|| format!("service \"{service}\" is not running container #{index}"))
    }
}

#[derive(Debug, Args)]
pub struct ServicesArgs {
    #[command(flatten)]
    pub shorts: crate::cli::ShortGlobals,
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    #[command(flatten)]
    pub shorts: crate::cli::ShortGlobals,
    /// Specify a shutdown timeout in seconds
    #[arg(short = 't', long)]
    pub timeout: Option<u64>,
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RestartArgs {
    #[command(flatten)]
    pub shorts: crate::cli::ShortGlobals,
    /// Specify a shutdown timeout in seconds
    #[arg(short = 't', long)]
    pub timeout: Option<u64>,
    /// Don't restart dependent services
    #[arg(long = "no-deps")]
    pub no_deps: bool,
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    #[command(flatten)]
    pub shorts: crate::cli::ShortGlobals,
    /// SIGNAL to send to the container
    #[arg(short, long, default_value = "SIGKILL")]
    pub signal: String,
    /// Remove containers for services not defined in the Compose file
    #[arg(long = "remove-orphans")]
    pub remove_orphans: bool,
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Don't ask to confirm removal
    #[arg(short, long)]
    pub force: bool,
    /// Stop the containers, if required, before removing
    #[arg(short, long)]
    pub stop: bool,
    /// Remove any anonymous volumes attached to containers
    #[arg(short, long)]
    pub volumes: bool,
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub shorts: crate::cli::ShortGlobals,
    /// index of the container if service has multiple replicas
    #[arg(long)]
    pub index: Option<u32>,
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    pub output: Option<std::path::PathBuf>,
    pub service: String,
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    #[command(flatten)]
    pub shorts: crate::cli::ShortGlobals,
    /// Override the key sequence for detaching from a container
    #[arg(long = "detach-keys", default_value = "ctrl-p,ctrl-q")]
    pub detach_keys: String,
    /// index of the container if service has multiple replicas
    #[arg(long)]
    pub index: Option<u32>,
    /// Do not attach STDIN
    #[arg(long = "no-stdin")]
    pub no_stdin: bool,
    /// Proxy all received signals to the process
    #[arg(long = "sig-proxy", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub sig_proxy: bool,
    pub service: String,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub shorts: crate::cli::ShortGlobals,
    /// Detached mode: Run command in the background
    #[arg(short, long)]
    pub detach: bool,
    /// Set environment variables
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Run the command as this user
    #[arg(short, long)]
    pub user: Option<String>,
    /// Path to workdir directory for this command
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Disable pseudo-TTY allocation. By default `exec` allocates a TTY
    #[arg(short = 'T', long = "no-TTY")]
    pub no_tty: bool,
    /// Index of the container if service has multiple replicas
    #[arg(long)]
    pub index: Option<u32>,
    /// Give extended privileges to the process
    #[arg(long)]
    pub privileged: bool,
    pub service: String,
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PortArgs {
    #[command(flatten)]
    pub shorts: crate::cli::ShortGlobals,
    /// Index of the container if service has multiple replicas
    #[arg(long)]
    pub index: Option<u32>,
    /// tcp or udp
    #[arg(long, default_value = "tcp")]
    pub protocol: String,
    pub service: String,
    pub private_port: u16,
}

#[derive(Debug, Args)]
pub struct CpArgs {
    #[command(flatten)]
    pub shorts: crate::cli::ShortGlobals,
    /// Index of the container if service has multiple replicas
    #[arg(long)]
    pub index: Option<u32>,
    /// Archive mode (copy all uid/gid information)
    #[arg(short, long)]
    pub archive: bool,
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long)]
    pub follow_link: bool,
    /// SERVICE:SRC_PATH or a local path
    pub src: String,
    /// SERVICE:DEST_PATH or a local path
    pub dest: String,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub shorts: crate::cli::ShortGlobals,
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    pub all: bool,
    /// Disable streaming stats and only pull the first result
    #[arg(long)]
    pub no_stream: bool,
    /// Do not truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Format output: table or json
    #[arg(long)]
    pub format: Option<String>,
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Show all stopped Compose projects
    #[arg(short, long)]
    pub all: bool,
    /// Only display project names
    #[arg(short, long)]
    pub quiet: bool,
    /// Format the output: table or json
    #[arg(long, default_value = "table")]
    pub format: String,
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    #[command(flatten)]
    pub shorts: crate::cli::ShortGlobals,
    /// Don't start linked services
    #[arg(long = "no-deps")]
    pub no_deps: bool,
    #[arg(required = true, value_name = "SERVICE=REPLICAS")]
    pub scale: Vec<String>,
}

pub fn start(settings: &Settings, a: &ServicesArgs) -> anyhow::Result<u8> {
    let p = ProjectCtx::open(settings)?;
    let levels = p.levels(&a.services, false)?;
    if levels.iter().all(Vec::is_empty) {
        bail!("service(s) {:?} has no container to start", a.services);
    }
    let progress = Progress::new();
    for level in levels {
        parallel(&level, |o| {
            if o.running() {
                return Ok(());
            }
            lifecycle::detach(lifecycle::start(
                &p.ctx.shim_exe,
                p.ctx.root(),
                &o.dir,
                true,
            )?);
            crate::hooks::post_start(&p.ctx, &p.project, &o.dir, &o.config)?;
            progress.line("Container", &o.config.name, "Started");
            Ok(())
        })?;
    }
    Ok(0)
}

pub fn stop(settings: &Settings, a: &StopArgs) -> anyhow::Result<u8> {
    let p = ProjectCtx::open(settings)?;
    let timeout = a.timeout.map(Duration::from_secs);
    let progress = Progress::new();
    for level in p.levels(&a.services, true)? {
        parallel(&level, |o| {
            if o.running() {
                crate::hooks::pre_stop(&p.ctx, &p.project, o)?;
                lifecycle::stop(&p.ctx.store, &o.dir, timeout)?;
            }
            progress.line("Container", &o.config.name, "Stopped");
            Ok(())
        })?;
    }
    Ok(0)
}

pub fn restart(settings: &Settings, a: &RestartArgs) -> anyhow::Result<u8> {
    let p = ProjectCtx::open(settings)?;
    let timeout = a.timeout.map(Duration::from_secs);
    let progress = Progress::new();
    for level in p.levels(&a.services, false)? {
        parallel(&level, |o| {
            if o.running() {
                crate::hooks::pre_stop(&p.ctx, &p.project, o)?;
                lifecycle::stop(&p.ctx.store, &o.dir, timeout)?;
            }
            lifecycle::detach(lifecycle::start(
                &p.ctx.shim_exe,
                p.ctx.root(),
                &o.dir,
                true,
            )?);
            crate::hooks::post_start(&p.ctx, &p.project, &o.dir, &o.config)?;
            progress.line("Container", &o.config.name, "Restarted");
            Ok(())
        })?;
    }
    Ok(0)
}

pub fn kill(settings: &Settings, a: &KillArgs) -> anyhow::Result<u8> {
    let p = ProjectCtx::open(settings)?;
    let sig = lifecycle::parse_signal(&a.signal)?;
    let progress = Progress::new();
    let targets: Vec<&Observed> = p
        .levels(&a.services, true)?
        .into_iter()
        .flatten()
        .filter(|o| o.running())
        .collect();
    if targets.is_empty() {
        bail!("no containers to kill");
    }
    parallel(&targets, |o| {
        lifecycle::kill(&p.ctx.store, &o.dir, sig, true)?;
        progress.line("Container", &o.config.name, "Killed");
        Ok(())
    })?;
    if a.remove_orphans {
        for o in p
            .containers
            .iter()
            .filter(|o| !o.oneoff() && !p.project.services.contains_key(o.service()))
        {
            crate::orchestrator::execute::stop_and_remove(
                &p.ctx,
                &o.dir,
                Some(Duration::ZERO),
                false,
            )?;
            progress.line("Container", &o.config.name, "Removed");
        }
    }
    Ok(0)
}

pub fn rm(settings: &Settings, a: &RmArgs) -> anyhow::Result<u8> {
    let p = ProjectCtx::open(settings)?;
    p.check(&a.services)?;
    let selected: Vec<&Observed> = p
        .containers
        .iter()
        .filter(|o| a.services.is_empty() || a.services.iter().any(|s| s == o.service()))
        .collect();
    let progress = Progress::new();
    if a.stop {
        let running: Vec<&Observed> = selected.iter().copied().filter(|o| o.running()).collect();
        parallel(&running, |o| {
            crate::hooks::pre_stop(&p.ctx, &p.project, o)?;
            lifecycle::stop(&p.ctx.store, &o.dir, None)?;
            progress.line("Container", &o.config.name, "Stopped");
            Ok(())
        })?;
    }
    let stopped: Vec<&Observed> = selected
        .into_iter()
        .filter(|o| {
            !matches!(
                lifecycle::state(&o.dir).map(|s| s.status),
                Ok(Status::Running | Status::Paused | Status::Restarting)
            )
        })
        .collect();
    if stopped.is_empty() {
        eprintln!("No stopped containers");
        return Ok(0);
    }
    if !a.force {
        eprint!(
            "Going to remove {}\n? Are you sure? [yN] ",
            stopped
                .iter()
                .map(|o| o.config.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Ok(0);
        }
    }
    parallel(&stopped, |o| {
        crate::orchestrator::execute::stop_and_remove(&p.ctx, &o.dir, None, a.volumes)?;
        progress.line("Container", &o.config.name, "Removed");
        Ok(())
    })?;
    Ok(0)
}

pub fn pause(settings: &Settings, a: &ServicesArgs, resume: bool) -> anyhow::Result<u8> {
    let p = ProjectCtx::open(settings)?;
    let progress = Progress::new();
    let targets: Vec<&Observed> = p
        .levels(&a.services, false)?
        .into_iter()
        .flatten()
        .collect();
    parallel(&targets, |o| {
        if resume {
            if o.state.status == Status::Paused {
                lifecycle::resume(&p.ctx.store, &o.dir)?;
                progress.line("Container", &o.config.name, "Unpaused");
            }
        } else if o.state.status == Status::Running {
            lifecycle::pause(&p.ctx.store, &o.dir)?;
            progress.line("Container", &o.config.name, "Paused");
        }
        Ok(())
    })?;
    Ok(0)
}

/// `attach`: this terminal to a running service container, as `docker compose attach`: its
/// output from now on, stdin to it (unless `--no-stdin`), signals forwarded (unless
/// `--sig-proxy=false`), detach with the detach keys; ends when the container exits.
pub fn attach(settings: &Settings, a: &AttachArgs) -> anyhow::Result<u8> {
    let p = ProjectCtx::open(settings)?;
    let o = p.one(&a.service, a.index)?;
    if !o.running() {
        bail!("cannot attach to a stopped container, start it first");
    }
    let options = crate::commands::container::AttachOptions {
        tty: o.config.process.tty,
        stdin: !a.no_stdin,
        since: Some(chrono::Utc::now()),
        detach_keys: Some(crate::commands::container::parse_detach_keys(
            &a.detach_keys,
        )?),
        sig_proxy: a.sig_proxy,
    };
    crate::commands::container::attach_session(&p.ctx, &o.dir, &options)?;
    Ok(0)
}

pub fn exec(settings: &Settings, a: &ExecArgs) -> anyhow::Result<u8> {
    let p = ProjectCtx::open(settings)?;
    let o = p.one(&a.service, a.index)?;
    if !o.running() {
        bail!("container {} is not running", o.config.name);
    }
    // As docker compose: interactive, with a terminal when stdin is one (unless -T).
    let tty = !a.no_tty && !a.detach && std::io::stdin().is_terminal();
    let args = crate::commands::container::ExecArgs {
        detach: a.detach,
        env: a.env.clone(),
        interactive: !a.detach,
        tty,
        user: a.user.clone(),
        workdir: a.workdir.clone(),
        privileged: a.privileged,
        container: o.dir.id.clone(),
        command: a.command.clone(),
    };
    crate::commands::container::exec(&p.ctx, &args)
}

pub fn port(settings: &Settings, a: &PortArgs) -> anyhow::Result<u8> {
    let p = ProjectCtx::open(settings)?;
    let o = p.one(&a.service, a.index)?;
    let eps = crate::net::store(p.ctx.root())
        .map_err(anyhow::Error::msg)?
        .container_endpoints(&o.dir.id)?;
    let found = eps
        .iter()
        .flat_map(|e| e.ports.iter())
        .find(|pp| pp.container_port == a.private_port && pp.protocol == a.protocol)
        .with_context(|| {
            format!(
                "no port {}/{} for container {}",
                a.private_port, a.protocol, o.config.name
            )
        })?;
    let ip = found
        .host_ip
        .map(|i| i.to_string())
        .unwrap_or_else(|| "0.0.0.0".into());
    println!("{ip}:{}", found.host_port);
    Ok(0)
}

/// `cp`: `SERVICE:PATH` names the service's container (`--index`, default 1); the copy itself
/// is `container cp`'s. Paths that start with `/` or `.` are local, as docker's.
pub fn cp(settings: &Settings, a: &CpArgs) -> anyhow::Result<u8> {
    let p = ProjectCtx::open(settings)?;
    let resolve = |arg: &str| -> anyhow::Result<String> {
        if arg.starts_with('/') || arg.starts_with('.') {
            return Ok(arg.to_string());
        }
        match arg.split_once(':') {
            Some((service, path)) if !service.is_empty() => {
                let o = p.one(service, a.index)?;
                Ok(format!("{}:{path}", o.dir.id))
            }
            _ => Ok(arg.to_string()),
        }
    };
    let args = crate::commands::container_ops::CpArgs {
        archive: a.archive,
        follow_link: a.follow_link,
        src: resolve(&a.src)?,
        dest: resolve(&a.dest)?,
    };
    crate::commands::container_ops::run_cp(&p.ctx, &args)
}

/// `export`: `container export` of the service's container (`--index`, default 1).
pub fn export(settings: &Settings, a: &ExportArgs) -> anyhow::Result<u8> {
    let p = ProjectCtx::open(settings)?;
    let o = p.one(&a.service, a.index)?;
    let args = crate::commands::container_ops::ExportArgs {
        output: a.output.clone(),
        container: o.dir.id.clone(),
    };
    crate::commands::container_ops::run_export(&p.ctx, &args)
}

/// `stats`: `container stats` of the project's containers (the selected services').
pub fn stats(settings: &Settings, a: &StatsArgs) -> anyhow::Result<u8> {
    let p = ProjectCtx::open(settings)?;
    let containers: Vec<String> = p
        .levels(&a.services, false)?
        .into_iter()
        .flatten()
        .filter(|o| a.all || o.running())
        .map(|o| o.dir.id.clone())
        .collect();
    if containers.is_empty() {
        // docker's stats with no container would show every one on the host.
        return Ok(0);
    }
    let args = crate::commands::container_ops::StatsArgs {
        all: a.all,
        no_stream: a.no_stream,
        no_trunc: a.no_trunc,
        format: a.format.clone(),
        containers,
    };
    crate::commands::container_ops::run_stats(&p.ctx, &args)
}

pub fn top(settings: &Settings, a: &ServicesArgs) -> anyhow::Result<u8> {
    let p = ProjectCtx::open(settings)?;
    for o in p.levels(&a.services, false)?.into_iter().flatten() {
        if !o.running() {
            continue;
        }
        println!("{}", o.config.name);
        crate::commands::container_ops::run_top(
            &p.ctx,
            &crate::commands::container_ops::TopArgs {
                container: o.dir.id.clone(),
            },
        )?;
        println!();
    }
    Ok(0)
}

pub fn wait(settings: &Settings, a: &ServicesArgs) -> anyhow::Result<u8> {
    let p = ProjectCtx::open(settings)?;
    let mut last = 0;
    for o in p.levels(&a.services, false)?.into_iter().flatten() {
        let code = lifecycle::wait(&p.ctx.store, &o.dir, None)?.unwrap_or(255);
        println!("{code}");
        last = code;
    }
    Ok(last.clamp(0, 255) as u8)
}

pub fn ls(settings: &Settings, a: &LsArgs) -> anyhow::Result<u8> {
    let ctx = Ctx::open(settings)?;
    // project → (status → count, config files)
    let mut projects: BTreeMap<String, (BTreeMap<String, u32>, String)> = BTreeMap::new();
    for id in ctx.store.ids()? {
        let dir = ctx.store.dir_of(&id);
        let Ok(config) = dir.config() else { continue };
        let Some(project) = config.labels.get(labels::PROJECT) else {
            continue;
        };
        let Ok(state) = lifecycle::state(&dir) else {
            continue;
        };
        let entry = projects.entry(project.clone()).or_default();
        *entry
            .0
            .entry(state.status.as_str().to_string())
            .or_default() += 1;
        if let Some(files) = config.labels.get(labels::CONFIG_FILES) {
            entry.1 = files.clone();
        }
    }
    let mut out = std::io::stdout().lock();
    let rows: Vec<(String, String, String)> = projects
        .into_iter()
        .filter(|(_, (st, _))| a.all || st.contains_key("running"))
        .map(|(name, (st, files))| {
            let status = st
                .iter()
                .map(|(s, n)| format!("{s}({n})"))
                .collect::<Vec<_>>()
                .join(", ");
            (name, status, files)
        })
        .collect();
    if a.quiet {
        for (name, _, _) in &rows {
            writeln!(out, "{name}")?;
        }
        return Ok(0);
    }
    match a.format.as_str() {
        "json" => {
            let list: Vec<_> = rows
                .iter()
                .map(|(n, s, f)| json!({"Name": n, "Status": s, "ConfigFiles": f}))
                .collect();
            writeln!(out, "{}", serde_json::to_string(&list)?)?;
        }
        "table" => {
            let mut table = vec![vec![
                "NAME".to_string(),
                "STATUS".to_string(),
                "CONFIG FILES".to_string(),
            ]];
            table.extend(rows.into_iter().map(|(n, s, f)| vec![n, s, f]));
            write!(out, "{}", super::tabwrite(&table, 3, 3))?;
        }
        other => bail!("unknown format {other:?} (table, json)"),
    }
    Ok(0)
}

pub fn scale(settings: &Settings, a: &ScaleArgs) -> anyhow::Result<u8> {
    let services: Vec<String> = a
        .scale
        .iter()
        .map(|s| {
            s.split_once('=')
                .map(|(n, _)| n.to_string())
                .unwrap_or_default()
        })
        .collect();
    let args = crate::commands::up::UpArgs {
        detach: true,
        no_recreate: true,
        no_deps: a.no_deps,
        scale: a.scale.clone(),
        pull: "policy".into(),
        services,
        ..Default::default()
    };
    crate::commands::up::run(settings, &args)
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub shorts: crate::cli::ShortGlobals,
    /// Recreate containers even if their configuration and image haven't changed
    #[arg(long = "force-recreate")]
    pub force_recreate: bool,
    /// If containers already exist, don't recreate them
    #[arg(long = "no-recreate", conflicts_with = "force_recreate")]
    pub no_recreate: bool,
    /// Remove containers for services not defined in the Compose file
    #[arg(long = "remove-orphans")]
    pub remove_orphans: bool,
    /// Scale SERVICE to NUM instances
    #[arg(long, value_name = "SERVICE=NUM")]
    pub scale: Vec<String>,
    /// Pull image before running ("always"|"missing"|"never")
    #[arg(long, default_value = "policy")]
    pub pull: String,
    pub services: Vec<String>,
}

/// `create`: `up` without starting anything.
pub fn create(settings: &Settings, a: &CreateArgs) -> anyhow::Result<u8> {
    let args = crate::commands::up::UpArgs {
        detach: true,
        no_start: true,
        force_recreate: a.force_recreate,
        no_recreate: a.no_recreate,
        remove_orphans: a.remove_orphans,
        scale: a.scale.clone(),
        pull: a.pull.clone(),
        services: a.services.clone(),
        ..Default::default()
    };
    crate::commands::up::run(settings, &args)
}
