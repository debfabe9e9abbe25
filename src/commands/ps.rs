//! `berth ps`: the project's containers.

use std::io::Write;

use anyhow::bail;
use berth_engine::container::Status;
use clap::Args;
use serde_json::json;

use crate::cli::Settings;
use crate::commands::container::{Ctx, status_text};
use crate::orchestrator::observe::project_containers;
use crate::project::{self, LoadFlags};

#[derive(Debug, Args)]
pub struct PsArgs {
    #[command(flatten)]
    pub shorts: crate::cli::ShortGlobals,
    /// Show all stopped containers (including those created by the run command)
    #[arg(short, long)]
    pub all: bool,
    /// Only display IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Display services
    #[arg(long)]
    pub services: bool,
    /// Filter services by status (paused, restarting, removing, running, dead, created, exited)
    #[arg(long)]
    pub status: Vec<String>,
    /// Filter services by a property (status=…)
    #[arg(long)]
    pub filter: Vec<String>,
    /// Format the output: table or json
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    #[arg(value_name = "SERVICE")]
    pub service_names: Vec<String>,
}

pub fn run(settings: &Settings, args: &PsArgs) -> anyhow::Result<u8> {
    let loaded = project::load(settings, &LoadFlags::default())?;
    let project = &loaded.loaded.project;
    let ctx = Ctx::open(settings)?;
    // The next berth command notices a supervisor that is gone (killed, or after a reboot).
    if !crate::supervisor::running(ctx.root(), &project.name)
        && !project_containers(&ctx.store, &project.name)?.is_empty()
    {
        crate::supervisor::ensure_running(ctx.root(), &project.name)?;
    }
    let mut statuses = args.status.clone();
    for f in &args.filter {
        match f.split_once('=') {
            Some(("status", v)) => statuses.push(v.to_string()),
            _ => bail!("invalid filter {f:?} (status=…)"),
        }
    }
    let containers: Vec<_> = project_containers(&ctx.store, &project.name)?
        .into_iter()
        .filter(|o| {
            args.service_names.is_empty() || args.service_names.iter().any(|s| s == o.service())
        })
        .filter(|o| {
            if !statuses.is_empty() {
                return statuses.iter().any(|s| s == o.state.status.as_str());
            }
            args.all
                || matches!(
                    o.state.status,
                    Status::Running | Status::Paused | Status::Restarting
                )
        })
        .collect();
    let mut out = std::io::stdout().lock();
    if args.services {
        let mut names: Vec<&str> = containers.iter().map(|o| o.service()).collect();
        names.dedup();
        for n in names {
            writeln!(out, "{n}")?;
        }
        return Ok(0);
    }
    if args.quiet {
        for o in &containers {
            writeln!(out, "{}", o.dir.id)?;
        }
        return Ok(0);
    }
    let ports_of = |o: &crate::orchestrator::observe::Observed| -> String {
        let eps = crate::net::store(ctx.root())
            .ok()
            .and_then(|s| s.container_endpoints(&o.dir.id).ok())
            .unwrap_or_default();
        let mut list: Vec<String> = eps
            .iter()
            .flat_map(|e| e.ports.iter())
            .map(|p| {
                let ip = p
                    .host_ip
                    .map(|i| i.to_string())
                    .unwrap_or_else(|| "0.0.0.0".into());
                format!("{ip}:{}->{}/{}", p.host_port, p.container_port, p.protocol)
            })
            .collect();
        list.sort();
        list.join(", ")
    };
    let command = |o: &crate::orchestrator::observe::Observed| {
        let cmd = o.config.process.args.join(" ");
        if args.no_trunc || cmd.chars().count() <= 20 {
            format!("\"{cmd}\"")
        } else {
            format!("\"{}…\"", cmd.chars().take(19).collect::<String>())
        }
    };
    match args.format.as_str() {
        "json" => {
            for o in &containers {
                writeln!(
                    out,
                    "{}",
                    json!({
                        "ID": o.dir.id,
                        "Name": o.config.name,
                        "Image": o.config.image_name,
                        "Command": o.config.process.args.join(" "),
                        "Project": project.name,
                        "Service": o.service(),
                        "Created": o.config.created,
                        "State": o.state.status.as_str(),
                        "Status": status_text(&o.state),
                        "ExitCode": o.state.exit_code.unwrap_or(0),
                        "RestartCount": o.state.restart_count,
                        "Publishers": ports_of(o),
                    })
                )?;
            }
        }
        "table" => {
            let mut rows = vec![
                [
                    "NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS", "PORTS",
                ]
                .map(String::from)
                .to_vec(),
            ];
            for o in &containers {
                rows.push(vec![
                    o.config.name.clone(),
                    o.config.image_name.clone(),
                    command(o),
                    o.service().to_string(),
                    crate::commands::container::ago(&o.config.created),
                    status_text(&o.state),
                    ports_of(o),
                ]);
            }
            write!(out, "{}", super::tabwrite(&rows, 3, 3))?;
        }
        other => bail!("unknown format {other:?} (table, json)"),
    }
    Ok(0)
}
