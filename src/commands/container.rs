//! `berth container …`: the docker CLI for single containers, so the engine is usable and
//! testable without a compose file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use berth_engine::container::lifecycle::{self, LifecycleError};
use berth_engine::container::store::{self as cstore, ContainerDir, ContainerStore};
use berth_engine::container::{
    ContainerConfig, ContainerState, DnsConfig, LogConfig, MountConfig, MountKind, NamespaceMode,
    NetworkConfig, ProcessConfig, ResourceConfig, RestartPolicy, SeccompConfig, SecurityConfig,
    Status,
};
use berth_engine::images::ImageRecord;
use berth_engine::reference::Reference;
use clap::{Args, Subcommand};
use serde_json::json;

use crate::cli::Settings;
use crate::engine::{self, Engine};

/// Exit status of `run` when the container could not be created or started (docker's 125).
pub const RUN_FAILED: u8 = 125;

/// `berth container …`, parsed on its own (see [`crate::cli::ForwardArgs`]).
#[derive(Debug, clap::Parser)]
#[command(
    name = "container",
    bin_name = "berth container",
    about = "Manage containers",
    disable_help_subcommand = true
)]
pub struct ContainerArgs {
    #[command(subcommand)]
    pub command: ContainerCommand,
}

/// docker's exit status for a command line it cannot parse.
pub const USAGE_EXIT: u8 = 125;

/// Parses the forwarded arguments and runs the verb.
pub fn run_forwarded(settings: &Settings, raw: &[String]) -> anyhow::Result<u8> {
    use clap::Parser;
    let argv = std::iter::once("container".to_string()).chain(raw.iter().cloned());
    let args = match ContainerArgs::try_parse_from(argv) {
        Ok(a) => a,
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp
                | clap::error::ErrorKind::DisplayVersion
                | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => 0,
                _ => USAGE_EXIT,
            };
            let _ = e.print();
            return Ok(code);
        }
    };
    run(settings, &args)
}

#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Create and run a new container from an image
    Run(RunArgs),
    /// Create a new container
    Create(RunArgs),
    /// Start one or more stopped containers
    Start(StartArgs),
    /// Stop one or more running containers
    Stop(StopArgs),
    /// Restart one or more containers
    Restart(StopArgs),
    /// Kill one or more running containers
    Kill(KillArgs),
    /// Remove one or more containers
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// List containers
    #[command(alias = "list", alias = "ps")]
    Ls(LsArgs),
    /// Display detailed information on one or more containers
    Inspect(NamesArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(NamesArgs),
    /// Pause all processes within one or more containers
    Pause(NamesArgs),
    /// Unpause all processes within one or more containers
    Unpause(NamesArgs),
    /// Rename a container
    Rename(RenameArgs),
    /// Fetch the logs of a container
    Logs(crate::commands::logs::LogsArgs),
    /// Execute a command in a running container
    Exec(ExecArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(crate::commands::container_ops::CpArgs),
    /// Export a container's filesystem as a tar archive
    Export(crate::commands::container_ops::ExportArgs),
    /// Display the running processes of a container
    Top(crate::commands::container_ops::TopArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(crate::commands::container_ops::StatsArgs),
    /// List port mappings or a specific mapping for the container
    Port(PortArgs),
}

#[derive(Debug, Args)]
pub struct PortArgs {
    pub container: String,
    /// PRIVATE_PORT[/PROTO]
    pub port: Option<String>,
}

/// `port`: the running container's published ports, `80/tcp -> 0.0.0.0:32768`.
fn port(ctx: &Ctx, a: &PortArgs) -> anyhow::Result<u8> {
    let dir = ctx.resolve(&a.container)?;
    let config = dir.config()?;
    let eps = crate::net::store(ctx.root())
        .map_err(anyhow::Error::msg)?
        .container_endpoints(&dir.id)?;
    let want = match &a.port {
        None => None,
        Some(p) => {
            let (port, proto) = p.split_once('/').unwrap_or((p.as_str(), "tcp"));
            let port: u16 = port
                .parse()
                .with_context(|| format!("invalid port {p:?}"))?;
            Some((port, proto.to_string()))
        }
    };
    let mut ports: Vec<_> = eps.iter().flat_map(|e| e.ports.iter()).collect();
    ports.sort_by_key(|p| (p.container_port, p.protocol.clone()));
    let mut found = false;
    for p in ports {
        if let Some((port, proto)) = &want
            && (p.container_port != *port || p.protocol != *proto)
        {
            continue;
        }
        found = true;
        let host = p
            .host_ip
            .map(|ip| ip.to_string())
            .unwrap_or_else(|| "0.0.0.0".into());
        if want.is_some() {
            println!("{host}:{}", p.host_port);
        } else {
            println!(
                "{}/{} -> {host}:{}",
                p.container_port, p.protocol, p.host_port
            );
        }
    }
    if let Some((port, proto)) = want
        && !found
    {
        bail!(
            "no public port '{port}/{proto}' published for {}",
            config.name
        );
    }
    Ok(0)
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Detached mode: run command in the background
    #[arg(short, long)]
    pub detach: bool,
    /// Set environment variables
    #[arg(short, long = "env", value_name = "list")]
    pub env: Vec<String>,
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// Username or UID (format: "<name|uid>[:<group|gid>]")
    #[arg(short, long)]
    pub user: Option<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Give extended privileges to the command
    #[arg(long)]
    pub privileged: bool,
    pub container: String,
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run container in background and print container ID
    #[arg(short, long)]
    pub detach: bool,
    /// Automatically remove the container and its associated anonymous volumes when it exits
    #[arg(long)]
    pub rm: bool,
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables
    #[arg(short, long = "env", value_name = "list")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file", value_name = "list")]
    pub env_file: Vec<PathBuf>,
    /// Bind mount a volume (SRC:DST[:ro])
    #[arg(short, long = "volume", value_name = "list")]
    pub volume: Vec<String>,
    /// Mount a tmpfs directory (PATH[:size=…,mode=…])
    #[arg(long, value_name = "list")]
    pub tmpfs: Vec<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short, long)]
    pub user: Option<String>,
    /// Add additional groups to join
    #[arg(long = "group-add", value_name = "list")]
    pub group_add: Vec<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Mount the container's root filesystem as read only
    #[arg(long)]
    pub read_only: bool,
    /// Add Linux capabilities
    #[arg(long = "cap-add", value_name = "list")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop", value_name = "list")]
    pub cap_drop: Vec<String>,
    /// Give extended privileges to this container
    #[arg(long)]
    pub privileged: bool,
    /// Security Options
    #[arg(long = "security-opt", value_name = "list")]
    pub security_opt: Vec<String>,
    /// Memory limit
    #[arg(short, long)]
    pub memory: Option<String>,
    /// Swap limit equal to memory plus swap: '-1' to enable unlimited swap
    #[arg(long = "memory-swap")]
    pub memory_swap: Option<String>,
    /// Memory soft limit
    #[arg(long = "memory-reservation")]
    pub memory_reservation: Option<String>,
    /// Number of CPUs
    #[arg(long)]
    pub cpus: Option<f64>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares")]
    pub cpu_shares: Option<u64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long = "pids-limit")]
    pub pids_limit: Option<i64>,
    /// Tune host's OOM preferences (-1000 to 1000)
    #[arg(long = "oom-score-adj", allow_hyphen_values = true)]
    pub oom_score_adj: Option<i32>,
    /// Size of /dev/shm
    #[arg(long = "shm-size")]
    pub shm_size: Option<String>,
    /// Ulimit options (name=soft[:hard])
    #[arg(long, value_name = "ulimit")]
    pub ulimit: Vec<String>,
    /// Sysctl options
    #[arg(long, value_name = "map")]
    pub sysctl: Vec<String>,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long)]
    pub init: bool,
    /// Restart policy to apply when a container exits
    #[arg(long, default_value = "no")]
    pub restart: String,
    /// Set meta data on a container
    #[arg(short, long = "label", value_name = "list")]
    pub label: Vec<String>,
    /// Container host name
    #[arg(long)]
    pub hostname: Option<String>,
    /// Signal to stop the container
    #[arg(long = "stop-signal")]
    pub stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long = "stop-timeout")]
    pub stop_timeout: Option<u64>,
    /// Connect a container to a network (a network's name, none, host, container:NAME)
    #[arg(long, alias = "net", default_value = "default")]
    pub network: Vec<String>,
    /// Add network-scoped alias for the container
    #[arg(long = "network-alias", alias = "net-alias", value_name = "list")]
    pub network_alias: Vec<String>,
    /// Add link to another container (NAME or NAME:ALIAS): in this container, ALIAS names
    /// it on the networks they share
    #[arg(long, value_name = "list")]
    pub link: Vec<String>,
    /// IPv4 address (e.g., 172.30.100.104)
    #[arg(long)]
    pub ip: Option<String>,
    /// Container MAC address (e.g., 92:d0:c6:0a:29:33)
    #[arg(long = "mac-address")]
    pub mac_address: Option<String>,
    /// Publish a container's port(s) to the host ([IP:][HOST_PORT:]CONTAINER_PORT[/PROTO])
    #[arg(short = 'p', long = "publish", value_name = "list")]
    pub publish: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Expose a port or a range of ports
    #[arg(long, value_name = "list")]
    pub expose: Vec<String>,
    /// Logging driver for the container (json-file, local, none)
    #[arg(long = "log-driver")]
    pub log_driver: Option<String>,
    /// Log driver options (max-size, max-file)
    #[arg(long = "log-opt", value_name = "list")]
    pub log_opt: Vec<String>,
    /// Add a host device to the container (HOST[:CONTAINER[:PERMISSIONS]])
    #[arg(long, value_name = "list")]
    pub device: Vec<String>,
    /// Add a rule to the cgroup allowed devices list ("c 1:3 mr")
    #[arg(long = "device-cgroup-rule", value_name = "list")]
    pub device_cgroup_rule: Vec<String>,
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long = "add-host", value_name = "list")]
    pub add_host: Vec<String>,
    /// Set custom DNS servers
    #[arg(long, value_name = "list")]
    pub dns: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long = "dns-search", value_name = "list")]
    pub dns_search: Vec<String>,
    /// Set DNS options
    #[arg(long = "dns-option", value_name = "list")]
    pub dns_option: Vec<String>,
    /// Command to run to check health
    #[arg(long = "health-cmd", value_name = "string")]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h) (default 0s)
    #[arg(long = "health-interval", value_name = "duration")]
    pub health_interval: Option<String>,
    /// Maximum time to allow one check to run (ms|s|m|h) (default 0s)
    #[arg(long = "health-timeout", value_name = "duration")]
    pub health_timeout: Option<String>,
    /// Consecutive failures needed to report unhealthy
    #[arg(long = "health-retries", value_name = "int")]
    pub health_retries: Option<u32>,
    /// Start period for the container to initialize before starting health-retries countdown
    /// (ms|s|m|h) (default 0s)
    #[arg(long = "health-start-period", value_name = "duration")]
    pub health_start_period: Option<String>,
    /// Time between running the check during the start period (ms|s|m|h) (default 0s)
    #[arg(long = "health-start-interval", value_name = "duration")]
    pub health_start_interval: Option<String>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long = "no-healthcheck")]
    pub no_healthcheck: bool,
    /// The image
    pub image: String,
    /// The command and its arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short, long)]
    pub attach: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Signal to send to the container
    #[arg(short, long)]
    pub signal: Option<String>,
    /// Seconds to wait before killing the container
    #[arg(short, long)]
    pub time: Option<u64>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short, long, default_value = "KILL")]
    pub signal: String,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short, long)]
    pub force: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short, long)]
    pub volumes: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    pub all: bool,
    /// Only display container IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Format output: table or json
    #[arg(long)]
    pub format: Option<String>,
    /// Filter output based on conditions provided (name=, id=, label=KEY[=VALUE], status=,
    /// ancestor=, exited=)
    #[arg(short, long = "filter", value_name = "filter")]
    pub filter: Vec<String>,
}

/// One `ls --filter`; filters of one key are alternatives, different keys must all match
/// (docker's rule).
fn matches_filters(filters: &[(String, String)], c: &ContainerConfig, s: &ContainerState) -> bool {
    let mut keys: Vec<&str> = filters.iter().map(|(k, _)| k.as_str()).collect();
    keys.dedup();
    keys.iter().all(|key| {
        filters
            .iter()
            .filter(|(k, _)| k == key)
            .any(|(_, v)| match *key {
                "name" => c.name.contains(v.trim_start_matches('/')),
                "id" => c.id.starts_with(v.as_str()),
                "label" => match v.split_once('=') {
                    Some((k, val)) => c.labels.get(k).is_some_and(|x| x == val),
                    None => c.labels.contains_key(v.as_str()),
                },
                "status" => s.status.as_str() == v,
                "ancestor" => {
                    c.image_name == *v
                        || c.image_id.as_ref().is_some_and(|id| {
                            id.to_string() == *v || id.hex().starts_with(v.as_str())
                        })
                }
                "exited" => {
                    s.status == Status::Exited
                        && s.exit_code.map(|e| e.to_string()) == Some(v.clone())
                }
                _ => false,
            })
    })
}

#[derive(Debug, Args)]
pub struct NamesArgs {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RenameArgs {
    pub container: String,
    pub new_name: String,
}

/// The store and paths a container command needs.
pub struct Ctx {
    pub engine: Engine,
    pub store: ContainerStore,
    pub shim_exe: PathBuf,
}

impl Ctx {
    pub fn open(settings: &Settings) -> anyhow::Result<Ctx> {
        let engine = Engine::open(settings)?;
        let store = ContainerStore::open(&engine.stores.root)?;
        let shim_exe = std::env::current_exe().context("cannot find the berth executable")?;
        Ok(Ctx {
            engine,
            store,
            shim_exe,
        })
    }

    pub fn root(&self) -> &Path {
        self.engine.stores.root.path()
    }

    pub fn resolve(&self, key: &str) -> anyhow::Result<ContainerDir> {
        Ok(self.store.resolve(key)?)
    }
}

/// Runs a container verb; returns the process exit code.
pub fn run(settings: &Settings, args: &ContainerArgs) -> anyhow::Result<u8> {
    let ctx = Ctx::open(settings)?;
    match &args.command {
        ContainerCommand::Run(a) => run_container(settings, &ctx, a),
        ContainerCommand::Create(a) => {
            let dir = create(settings, &ctx, a)?;
            println!("{}", dir.id);
            Ok(0)
        }
        ContainerCommand::Start(a) if a.attach => {
            let [key] = a.containers.as_slice() else {
                bail!("you cannot start and attach multiple containers at once");
            };
            let dir = ctx.resolve(key)?;
            // Only this run's output, as docker's attach shows it.
            let since = chrono::Utc::now();
            let spawned = lifecycle::start(&ctx.shim_exe, ctx.root(), &dir, true)?;
            crate::commands::logs::follow(&dir, Some(since))?;
            exit_code(&ctx, &dir, spawned)
        }
        ContainerCommand::Start(a) => each(&a.containers, |key| {
            let dir = ctx.resolve(key)?;
            lifecycle::detach(lifecycle::start(&ctx.shim_exe, ctx.root(), &dir, true)?);
            Ok(())
        }),
        ContainerCommand::Stop(a) => each(&a.containers, |key| {
            let dir = ctx.resolve(key)?;
            stop_with(&ctx, &dir, a)?;
            Ok(())
        }),
        ContainerCommand::Restart(a) => each(&a.containers, |key| {
            let dir = ctx.resolve(key)?;
            stop_with(&ctx, &dir, a)?;
            lifecycle::detach(lifecycle::start(&ctx.shim_exe, ctx.root(), &dir, true)?);
            Ok(())
        }),
        ContainerCommand::Kill(a) => {
            let sig = lifecycle::parse_signal(&a.signal)?;
            each(&a.containers, |key| {
                let dir = ctx.resolve(key)?;
                lifecycle::kill(&ctx.store, &dir, sig, true)?;
                Ok(())
            })
        }
        ContainerCommand::Rm(a) => each(&a.containers, |key| {
            let dir = ctx.resolve(key)?;
            lifecycle::remove(
                &ctx.engine.stores.root,
                &ctx.store,
                &dir,
                a.force,
                a.volumes,
            )?;
            // What a shim killed before it could release is given back here.
            crate::net::release(ctx.root(), &dir.id).map_err(anyhow::Error::msg)?;
            Ok(())
        }),
        ContainerCommand::Port(a) => port(&ctx, a),
        ContainerCommand::Ls(a) => ls(&ctx, a).map(|()| 0),
        ContainerCommand::Inspect(a) => inspect(&ctx, a),
        ContainerCommand::Wait(a) => {
            let mut failed = false;
            for key in &a.containers {
                match ctx
                    .resolve(key)
                    .and_then(|dir| Ok(lifecycle::wait(&ctx.store, &dir, None)?))
                {
                    Ok(code) => println!("{}", code.unwrap_or(255)),
                    Err(e) => {
                        eprintln!("Error response from daemon: {e:#}");
                        failed = true;
                    }
                }
            }
            Ok(u8::from(failed))
        }
        ContainerCommand::Pause(a) => each(&a.containers, |key| {
            let dir = ctx.resolve(key)?;
            lifecycle::pause(&ctx.store, &dir)?;
            Ok(())
        }),
        ContainerCommand::Unpause(a) => each(&a.containers, |key| {
            let dir = ctx.resolve(key)?;
            lifecycle::resume(&ctx.store, &dir)?;
            Ok(())
        }),
        ContainerCommand::Exec(a) => exec(&ctx, a),
        ContainerCommand::Cp(a) => crate::commands::container_ops::run_cp(&ctx, a),
        ContainerCommand::Export(a) => crate::commands::container_ops::run_export(&ctx, a),
        ContainerCommand::Top(a) => crate::commands::container_ops::run_top(&ctx, a),
        ContainerCommand::Stats(a) => crate::commands::container_ops::run_stats(&ctx, a),
        ContainerCommand::Logs(a) => crate::commands::logs::run(&ctx, a),
        ContainerCommand::Rename(a) => {
            let dir = ctx.resolve(&a.container)?;
            ctx.store.rename(&dir, &a.new_name)?;
            Ok(0)
        }
    }
}

/// Docker's multi-container verbs: each name is echoed on success, errors are printed and the
/// exit status is 1 if any failed, the others still done.
fn each(keys: &[String], mut f: impl FnMut(&str) -> anyhow::Result<()>) -> anyhow::Result<u8> {
    let mut failed = false;
    for key in keys {
        match f(key) {
            Ok(()) => println!("{key}"),
            Err(e) => {
                eprintln!("Error response from daemon: {e:#}");
                failed = true;
            }
        }
    }
    Ok(u8::from(failed))
}

fn stop_with(ctx: &Ctx, dir: &ContainerDir, a: &StopArgs) -> Result<(), LifecycleError> {
    if let Some(sig) = &a.signal {
        // `stop -s`: that signal instead of the configured one, then SIGKILL after the timeout.
        let sig = lifecycle::parse_signal(sig)?;
        let st = lifecycle::state(dir)?;
        if matches!(st.status, Status::Running | Status::Paused) {
            lifecycle::kill(&ctx.store, dir, sig, true)?;
            let t = Duration::from_secs(a.time.unwrap_or(10));
            if lifecycle::wait(&ctx.store, dir, Some(t))?.is_some() {
                return Ok(());
            }
        }
    }
    lifecycle::stop(&ctx.store, dir, a.time.map(Duration::from_secs))?;
    Ok(())
}

fn run_container(settings: &Settings, ctx: &Ctx, a: &RunArgs) -> anyhow::Result<u8> {
    let dir = match create(settings, ctx, a) {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("berth: {e:#}");
            return Ok(RUN_FAILED);
        }
    };
    run_created(ctx, &dir, a.detach, a.interactive, a.tty, a.rm)
}

/// Starts a created container as `run` does: detached (its id printed), or in the
/// foreground (attached with `-i`/`-t`, else following its output) returning its exit code;
/// 125 when it cannot start (removed again with `rm`).
pub fn run_created(
    ctx: &Ctx,
    dir: &ContainerDir,
    detach: bool,
    interactive: bool,
    tty: bool,
    rm: bool,
) -> anyhow::Result<u8> {
    let spawned = match lifecycle::start(&ctx.shim_exe, ctx.root(), dir, true) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("berth: {e:#}");
            if rm {
                let _ = lifecycle::remove(&ctx.engine.stores.root, &ctx.store, dir, true, true);
            }
            return Ok(RUN_FAILED);
        }
    };
    if detach {
        lifecycle::detach(spawned);
        println!("{}", dir.id);
        return Ok(0);
    }
    if interactive || tty {
        attach(ctx, dir, tty)?;
    } else {
        crate::commands::logs::follow(dir, None)?;
    }
    exit_code(ctx, dir, spawned)
}

/// The exit code of a container started in the foreground: from the shim's report pipe (it
/// comes before a `--rm` container removes itself), else from its recorded state.
fn exit_code(
    ctx: &Ctx,
    dir: &ContainerDir,
    spawned: Option<berth_engine::container::shim::Spawned>,
) -> anyhow::Result<u8> {
    let reported = spawned.and_then(|mut s| {
        let code = s.wait_exit();
        // Hang up the report pipe before waiting for the shim: a `--rm` container's shim
        // waits for that before it removes the container (its output has been read by now).
        let berth_engine::container::shim::Spawned {
            mut child, report, ..
        } = s;
        drop(report);
        let _ = child.wait();
        code
    });
    let code = match reported {
        Some(c) => c,
        None => lifecycle::wait(&ctx.store, dir, None)?.unwrap_or(255),
    };
    Ok(u8::try_from(code.clamp(0, 255)).unwrap_or(255))
}

/// A service's image by its `pull_policy` (or `up --pull`): `always` pulls, `never` only
/// looks, `missing` (the default, and the `daily`/`weekly`/`every_*` policies between their
/// refreshes) pulls when absent.
pub fn image_for(ctx: &Ctx, image: &str, policy: &str) -> anyhow::Result<ImageRecord> {
    match policy {
        "always" => {
            let reference = Reference::parse(image)?;
            let rt = engine::runtime()?;
            Ok(rt.block_on(ctx.engine.pull(&reference, None))?.image)
        }
        "never" => crate::commands::image::resolve(&ctx.engine, image).with_context(|| {
            format!("image {image} is not present and its pull policy is \"never\"")
        }),
        "build" => bail!("pull_policy build: building images is not supported yet"),
        _ => find_or_pull(ctx, image),
    }
}

fn find_or_pull(ctx: &Ctx, image: &str) -> anyhow::Result<ImageRecord> {
    if let Ok(record) = crate::commands::image::resolve(&ctx.engine, image) {
        return Ok(record);
    }
    let reference = Reference::parse(image)?;
    eprintln!(
        "Unable to find image '{}' locally",
        reference.familiar_string()
    );
    let rt = engine::runtime()?;
    let pulled = rt.block_on(ctx.engine.pull(&reference, None))?;
    Ok(pulled.image)
}

/// Builds the container's configuration from the flags and the image, and records it.
pub fn create(settings: &Settings, ctx: &Ctx, a: &RunArgs) -> anyhow::Result<ContainerDir> {
    let image = find_or_pull(ctx, &a.image)?;
    let id = cstore::new_id();
    let name = match &a.name {
        Some(n) => n.clone(),
        None => random_name(&id),
    };
    let mut env_layers: Vec<Vec<String>> = Vec::new();
    for file in &a.env_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read env file {}", file.display()))?;
        env_layers.push(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(|l| env_entry(l, settings))
                .collect(),
        );
    }
    env_layers.push(a.env.iter().map(|e| env_entry(e, settings)).collect());
    let entrypoint = a.entrypoint.as_ref().map(|e| {
        if e.is_empty() {
            berth_engine::container::spec::CommandOverride::Exec(Vec::new())
        } else {
            berth_engine::container::spec::CommandOverride::Exec(vec![e.clone()])
        }
    });
    let command = (!a.command.is_empty())
        .then(|| berth_engine::container::spec::CommandOverride::Exec(a.command.clone()));
    let args = berth_engine::container::spec::resolve_command(
        &image.config,
        entrypoint.as_ref(),
        command.as_ref(),
    )?;
    let layer_refs: Vec<&[String]> = env_layers.iter().map(Vec::as_slice).collect();
    let env = berth_engine::container::spec::merge_env(&image.config.env, &layer_refs);
    let hostname = a.hostname.clone().unwrap_or_else(|| id[..12].to_string());

    let mut mounts = Vec::new();
    for v in &a.volume {
        mounts.push(parse_volume_flag(v)?);
    }
    for t in &a.tmpfs {
        mounts.push(parse_tmpfs_flag(t)?);
    }
    // The image's VOLUMEs not covered by a mount get anonymous volumes, as in Docker.
    for target in &image.config.volumes {
        let t = target.trim_end_matches('/');
        if !mounts.iter().any(|m| m.target.trim_end_matches('/') == t) {
            mounts.push(MountConfig {
                target: target.clone(),
                read_only: false,
                kind: MountKind::Volume {
                    name: berth_engine::volumes::random_name()?,
                    nocopy: false,
                    anonymous: true,
                    subpath: None,
                },
            });
        }
    }
    ensure_volumes(ctx, &mounts)?;
    let mut security = SecurityConfig {
        privileged: a.privileged,
        cap_add: a.cap_add.clone(),
        cap_drop: a.cap_drop.clone(),
        ..Default::default()
    };
    for opt in &a.security_opt {
        let (k, v) = opt.split_once(['=', ':']).unwrap_or((opt.as_str(), "true"));
        match k {
            "no-new-privileges" => security.no_new_privileges = v != "false",
            "seccomp" if v == "unconfined" => security.seccomp = SeccompConfig::Unconfined,
            "seccomp" => {
                let text = std::fs::read_to_string(v)
                    .with_context(|| format!("opening seccomp profile ({v}) failed"))?;
                security.seccomp = SeccompConfig::Profile(text);
            }
            "label" | "apparmor" => {}
            _ => bail!("invalid --security-opt: {opt:?}"),
        }
    }
    let bytes = |s: &Option<String>, what: &str| -> anyhow::Result<Option<i64>> {
        s.as_deref()
            .map(|v| {
                if v == "-1" {
                    return Ok(-1);
                }
                berth_compose::units::ByteSize::parse(v)
                    .map(|b| b.bytes())
                    .map_err(|e| anyhow::anyhow!("invalid {what} {v:?}: {e}"))
            })
            .transpose()
    };
    let resources = ResourceConfig {
        memory: bytes(&a.memory, "--memory")?,
        memory_swap: bytes(&a.memory_swap, "--memory-swap")?,
        memory_reservation: bytes(&a.memory_reservation, "--memory-reservation")?,
        nano_cpus: a.cpus.map(|c| (c * 1e9) as i64),
        cpu_shares: a.cpu_shares,
        cpuset_cpus: a.cpuset_cpus.clone(),
        cpuset_mems: None,
        pids_limit: a.pids_limit,
        oom_score_adj: a.oom_score_adj,
        shm_size: bytes(&a.shm_size, "--shm-size")?.map(|b| b as u64),
        // Not flags of `berth container run` yet; compose files have them.
        ..ResourceConfig::default()
    };
    let mut ulimits = BTreeMap::new();
    for u in &a.ulimit {
        let (name, vals) = u
            .split_once('=')
            .with_context(|| format!("invalid ulimit argument: {u}"))?;
        let (soft, hard) = vals.split_once(':').unwrap_or((vals, vals));
        let soft: u64 = soft
            .parse()
            .with_context(|| format!("invalid ulimit {u}"))?;
        let hard: u64 = hard
            .parse()
            .with_context(|| format!("invalid ulimit {u}"))?;
        ulimits.insert(name.to_string(), (soft, hard));
    }
    let sysctls = a
        .sysctl
        .iter()
        .map(|s| {
            s.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("invalid sysctl {s:?}: expected KEY=VALUE"))
        })
        .collect::<anyhow::Result<BTreeMap<_, _>>>()?;
    let mut log = LogConfig::default();
    if let Some(d) = &a.log_driver {
        match d.as_str() {
            "json-file" | "local" | "none" => log.driver = d.clone(),
            other => bail!("logging driver {other:?} is not supported (json-file, local, none)"),
        }
    }
    for opt in &a.log_opt {
        match opt.split_once('=') {
            Some(("max-size", v)) => {
                log.max_size = berth_compose::units::ByteSize::parse(v)
                    .map_err(|e| anyhow::anyhow!("invalid max-size {v:?}: {e}"))?
                    .bytes()
                    .max(0) as u64;
            }
            Some(("max-file", v)) => {
                log.max_file = v
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .with_context(|| format!("invalid max-file {v:?}"))?;
            }
            _ => bail!("unknown log opt {opt:?}"),
        }
    }
    let (network, networks) = network_mode(ctx, a)?;
    let ports = published_ports(a, &image.config.exposed_ports, &networks)?;
    let (policy, retries) = a
        .restart
        .split_once(':')
        .unwrap_or((a.restart.as_str(), "0"));
    if !matches!(policy, "no" | "always" | "on-failure" | "unless-stopped") {
        bail!("invalid restart policy {:?}", a.restart);
    }
    let mut labels = image.config.labels.clone();
    for l in &a.label {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        labels.insert(k.to_string(), v.to_string());
    }
    let extra_hosts = a
        .add_host
        .iter()
        .map(|h| {
            h.split_once([':', '='])
                .map(|(n, ip)| (n.to_string(), ip.to_string()))
                .with_context(|| format!("invalid argument {h:?} for --add-host: expected HOST:IP"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;

    let config = ContainerConfig {
        id: id.clone(),
        name,
        created: berth_engine::container::shim::now_rfc3339(),
        image_name: a.image.clone(),
        image_id: Some(image.id.clone()),
        process: ProcessConfig {
            args,
            env,
            cwd: a
                .workdir
                .clone()
                .or_else(|| image.config.working_dir.clone())
                .filter(|w| !w.is_empty())
                .unwrap_or_else(|| "/".to_string()),
            user: a
                .user
                .clone()
                .or_else(|| image.config.user.clone())
                .unwrap_or_default(),
            group_add: a.group_add.clone(),
            tty: a.tty,
            stdin_open: a.interactive,
        },
        hostname,
        domainname: String::new(),
        labels,
        mounts,
        read_only: a.read_only,
        security,
        resources,
        ulimits,
        sysctls,
        devices: a
            .device
            .iter()
            .map(|d| parse_device(d))
            .collect::<anyhow::Result<_>>()?,
        device_cgroup_rules: a
            .device_cgroup_rule
            .iter()
            .map(|r| {
                berth_engine::container::spec::device_cgroup_rule(r)
                    .map(|_| r.clone())
                    .map_err(anyhow::Error::from)
            })
            .collect::<anyhow::Result<_>>()?,
        init: a.init,
        stop_signal: a
            .stop_signal
            .clone()
            .or_else(|| image.config.stop_signal.clone())
            .unwrap_or_default(),
        stop_timeout: a.stop_timeout,
        log,
        restart: RestartPolicy {
            name: policy.to_string(),
            max_retries: retries.parse().unwrap_or(0),
            delay_ms: None,
            window_ms: None,
        },
        network,
        // `--pid`, `--ipc`, `--uts`, `--cgroupns` are not flags of berth's yet.
        pid: NamespaceMode::Private,
        ipc: NamespaceMode::Private,
        uts: NamespaceMode::Private,
        cgroupns: NamespaceMode::Private,
        networks,
        ports,
        auto_remove: a.rm,
        extra_hosts,
        dns: DnsConfig {
            servers: a.dns.clone(),
            search: a.dns_search.clone(),
            options: a.dns_option.clone(),
        },
        cgroup_parent: "berth".to_string(),
        healthcheck: crate::health::resolve(image.config.healthcheck.as_ref(), &health_flags(a)?),
    };
    Ok(ctx.store.create(&config)?)
}

/// `--health-*` and `--no-healthcheck` (which conflicts with them, as in docker).
fn health_flags(a: &RunArgs) -> anyhow::Result<crate::health::HealthOverrides> {
    let dur = |flag: &str, v: &Option<String>| -> anyhow::Result<Option<Duration>> {
        let Some(v) = v else { return Ok(None) };
        let d = berth_compose::units::Duration::parse(v)
            .map_err(|e| anyhow::anyhow!("invalid argument {v:?} for \"{flag}\" flag: {e}"))?;
        crate::health::duration(d).map_err(|e| anyhow::anyhow!("{flag}: {e}"))
    };
    let over = crate::health::HealthOverrides {
        test: a
            .health_cmd
            .iter()
            .map(|c| vec!["CMD-SHELL".to_string(), c.clone()])
            .next()
            .unwrap_or_default(),
        interval: dur("--health-interval", &a.health_interval)?,
        timeout: dur("--health-timeout", &a.health_timeout)?,
        retries: a.health_retries,
        start_period: dur("--health-start-period", &a.health_start_period)?,
        start_interval: dur("--health-start-interval", &a.health_start_interval)?,
        disable: a.no_healthcheck,
    };
    let any_health_flag = a.health_cmd.is_some()
        || a.health_interval.is_some()
        || a.health_timeout.is_some()
        || a.health_retries.is_some()
        || a.health_start_period.is_some()
        || a.health_start_interval.is_some();
    if a.no_healthcheck && any_health_flag {
        bail!("--no-healthcheck conflicts with --health-* options");
    }
    Ok(over)
}

/// `--network` (repeatable, as in docker 20.10+): `none`, `host`, `container:NAME`, or the
/// names of bridge networks (the first one is the default route). Without the flag the
/// container gets `lo` only (berth has no implicit default bridge yet).
fn network_mode(
    ctx: &Ctx,
    a: &RunArgs,
) -> anyhow::Result<(NetworkConfig, Vec<berth_engine::container::EndpointConfig>)> {
    let named: Vec<&String> = a
        .network
        .iter()
        .filter(|n| !matches!(n.as_str(), "default" | "private"))
        .collect();
    let special = named
        .iter()
        .find(|n| matches!(n.as_str(), "none" | "host") || n.starts_with("container:"));
    if let Some(mode) = special {
        if named.len() > 1 {
            bail!("conflicting options: --network {mode} cannot be combined with other networks");
        }
        if !a.publish.is_empty() || a.publish_all {
            bail!("conflicting options: port publishing and the container's network mode ({mode})");
        }
        if !a.link.is_empty() {
            bail!("conflicting options: --link and the container's network mode ({mode})");
        }
        let config = match mode.as_str() {
            "none" => NetworkConfig::None,
            "host" => NetworkConfig::Host,
            other => {
                let name = &other["container:".len()..];
                let target = ctx
                    .store
                    .resolve(name)
                    .with_context(|| format!("--network {other}"))?;
                NetworkConfig::Container(target.id)
            }
        };
        return Ok((config, Vec::new()));
    }
    // Docker's `--link NAME[:ALIAS]`: the container must exist; its address is looked up
    // at each query (see `dnsd`).
    let mut links = Vec::new();
    for l in &a.link {
        let Some((name, alias)) = crate::net::parse_link(l) else {
            bail!("--link {l:?}: not NAME or NAME:ALIAS");
        };
        ctx.store
            .resolve(name)
            .with_context(|| format!("--link {l}"))?;
        links.push(format!("{name}:{alias}"));
    }
    let store = crate::net::store(ctx.engine.stores.root.path()).map_err(anyhow::Error::msg)?;
    let mut endpoints = Vec::new();
    for (i, name) in named.iter().enumerate() {
        let net = store.require(name)?;
        endpoints.push(berth_engine::container::EndpointConfig {
            network: net.name,
            aliases: if i == 0 {
                a.network_alias.clone()
            } else {
                Vec::new()
            },
            ipv4_address: if i == 0 { a.ip.clone() } else { None },
            mac_address: if i == 0 { a.mac_address.clone() } else { None },
            interface_name: None,
            links: if i == 0 { links.clone() } else { Vec::new() },
        });
    }
    if endpoints.is_empty() && (a.ip.is_some() || !a.network_alias.is_empty() || !links.is_empty())
    {
        bail!("--ip, --network-alias and --link need a user-defined network (--network NAME)");
    }
    Ok((NetworkConfig::Private, endpoints))
}

/// `-p` specs (docker's syntax, ranges expanded) and, with `-P`, every exposed port (the
/// image's and `--expose`) on a random host port.
fn published_ports(
    a: &RunArgs,
    image_exposed: &[String],
    networks: &[berth_engine::container::EndpointConfig],
) -> anyhow::Result<Vec<berth_engine::container::PortConfig>> {
    let mut out = Vec::new();
    for spec in &a.publish {
        out.extend(port_configs(spec)?);
    }
    if a.publish_all {
        let mut exposed: Vec<String> = image_exposed.to_vec();
        for e in &a.expose {
            for p in port_configs(e)? {
                exposed.push(format!("{}/{}", p.container_port, p.protocol));
            }
        }
        for e in exposed {
            let (port, proto) = e.split_once('/').unwrap_or((e.as_str(), "tcp"));
            let container_port: u16 = port
                .parse()
                .with_context(|| format!("exposed port {e:?} is not a port number"))?;
            if !out.iter().any(|p: &berth_engine::container::PortConfig| {
                p.container_port == container_port && p.protocol == proto
            }) {
                out.push(berth_engine::container::PortConfig {
                    host_ip: None,
                    host_port: None,
                    container_port,
                    protocol: proto.to_string(),
                });
            }
        }
    }
    if !out.is_empty() && networks.is_empty() {
        bail!("publishing ports needs a network: add --network NAME (see `berth network create`)");
    }
    Ok(out)
}

/// One `-p`/`ports` short-syntax spec as port configs, one per container port. A host range
/// for a single container port takes the range's first port.
pub fn port_configs(spec: &str) -> anyhow::Result<Vec<berth_engine::container::PortConfig>> {
    let parsed = berth_compose::canonical::ports::parse(spec)
        .map_err(|e| anyhow::anyhow!("invalid port spec {spec:?}: {e}"))?;
    parsed
        .into_iter()
        .map(|p| {
            if p.protocol == "sctp" {
                bail!("port {spec:?}: sctp is not supported (tcp, udp)");
            }
            if p.host_ip.contains(':') {
                bail!("port {spec:?}: IPv6 host addresses are not supported yet");
            }
            let host_port = match p.published.split('-').next() {
                None | Some("") => None,
                Some(h) => Some(
                    h.parse::<u16>()
                        .with_context(|| format!("invalid host port in {spec:?}"))?,
                ),
            };
            Ok(berth_engine::container::PortConfig {
                host_ip: (!p.host_ip.is_empty()).then(|| p.host_ip.clone()),
                host_port: host_port.filter(|p| *p != 0),
                container_port: p.target,
                protocol: p.protocol,
            })
        })
        .collect()
}

/// Creates the named and anonymous volumes the mounts use (existing ones are kept as they
/// are, as Docker does).
pub fn ensure_volumes(ctx: &Ctx, mounts: &[MountConfig]) -> anyhow::Result<()> {
    let mut store = None;
    for m in mounts {
        if let MountKind::Volume {
            name, anonymous, ..
        } = &m.kind
        {
            let store = match &store {
                Some(s) => s,
                None => store.insert(berth_engine::volumes::VolumeStore::open(
                    &ctx.engine.stores.root,
                )?),
            };
            let mut opts = berth_engine::volumes::VolumeOptions::default();
            if *anonymous {
                opts.labels.insert(
                    berth_engine::volumes::ANONYMOUS_LABEL.to_string(),
                    String::new(),
                );
            }
            store.create(name, &opts)?;
        }
    }
    Ok(())
}

fn env_entry(e: &str, settings: &Settings) -> String {
    if e.contains('=') {
        e.to_string()
    } else {
        // `-e NAME`: the value from berth's environment, as docker does.
        let v = settings
            .project
            .environment
            .get(e)
            .cloned()
            .unwrap_or_default();
        format!("{e}={v}")
    }
}

/// `-v SRC:DST[:ro|rw]`: SRC absolute is a bind, otherwise a named volume; `-v /DST` alone is an
/// anonymous volume.
pub fn parse_volume_flag(v: &str) -> anyhow::Result<MountConfig> {
    let parts: Vec<&str> = v.split(':').collect();
    let (src, dst, opts) = match parts.as_slice() {
        [dst] => (None, *dst, ""),
        [src, dst] => (Some(*src), *dst, ""),
        [src, dst, opts] => (Some(*src), *dst, *opts),
        _ => bail!("invalid volume specification: {v:?}"),
    };
    if !dst.starts_with('/') {
        bail!("invalid volume specification: {v:?}: the destination must be an absolute path");
    }
    let read_only = opts.split(',').any(|o| o == "ro");
    let kind = match src {
        None => MountKind::Volume {
            name: berth_engine::volumes::random_name()?,
            nocopy: false,
            anonymous: true,
            subpath: None,
        },
        Some(s) if s.starts_with('/') || s.starts_with('.') => MountKind::Bind {
            source: PathBuf::from(s),
            propagation: None,
            create_host_path: true,
        },
        Some(name) => MountKind::Volume {
            name: name.to_string(),
            nocopy: opts.split(',').any(|o| o == "nocopy"),
            anonymous: false,
            subpath: None,
        },
    };
    Ok(MountConfig {
        target: dst.to_string(),
        read_only,
        kind,
    })
}

/// `--device HOST[:CONTAINER[:PERMISSIONS]]` (permissions a subset of `rwm`, default all).
fn parse_device(d: &str) -> anyhow::Result<berth_engine::container::DeviceConfig> {
    let parts: Vec<&str> = d.split(':').collect();
    let (host, container, perms) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, c] if c.chars().all(|ch| "rwm".contains(ch)) && !c.is_empty() => (*h, *h, *c),
        [h, c] => (*h, *c, "rwm"),
        [h, c, p] => (*h, *c, *p),
        _ => bail!("invalid device specification: {d}"),
    };
    if !host.starts_with('/') || !container.starts_with('/') {
        bail!("invalid device specification: {d}: paths must be absolute");
    }
    if perms.is_empty() || !perms.chars().all(|c| "rwm".contains(c)) {
        bail!("invalid device mode: {perms}");
    }
    Ok(berth_engine::container::DeviceConfig {
        host_path: PathBuf::from(host),
        container_path: container.to_string(),
        permissions: perms.to_string(),
    })
}

/// `--tmpfs PATH[:size=64m,mode=1777]`.
fn parse_tmpfs_flag(t: &str) -> anyhow::Result<MountConfig> {
    let (path, opts) = t.split_once(':').unwrap_or((t, ""));
    let mut size = None;
    let mut mode = None;
    let mut read_only = false;
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o.split_once('=') {
            Some(("size", v)) => {
                size = Some(
                    berth_compose::units::ByteSize::parse(v)
                        .map_err(|e| anyhow::anyhow!("invalid tmpfs size {v:?}: {e}"))?
                        .bytes() as u64,
                )
            }
            Some(("mode", v)) => {
                mode = Some(
                    u32::from_str_radix(v, 8)
                        .with_context(|| format!("invalid tmpfs mode {v:?}"))?,
                )
            }
            None if o == "ro" => read_only = true,
            _ => {}
        }
    }
    Ok(MountConfig {
        target: path.to_string(),
        read_only,
        kind: MountKind::Tmpfs { size, mode },
    })
}

/// Docker-style `adjective_name` names, derived from the id so they are reproducible.
fn random_name(id: &str) -> String {
    const LEFT: &[&str] = &[
        "brave", "calm", "eager", "fond", "gentle", "happy", "jolly", "keen", "lucid", "merry",
        "nifty", "proud", "quirky", "sharp", "tender", "vivid",
    ];
    const RIGHT: &[&str] = &[
        "babbage", "curie", "darwin", "euler", "feynman", "gauss", "hopper", "kepler", "lovelace",
        "meitner", "noether", "pascal", "ritchie", "shannon", "turing", "wozniak",
    ];
    let n = u64::from_str_radix(&id[..8], 16).unwrap_or(0);
    format!(
        "{}_{}_{}",
        LEFT[(n % 16) as usize],
        RIGHT[((n >> 4) % 16) as usize],
        &id[8..12]
    )
}

fn ls(ctx: &Ctx, a: &LsArgs) -> anyhow::Result<()> {
    let mut filters = Vec::new();
    for f in &a.filter {
        let (k, v) = f
            .split_once('=')
            .with_context(|| format!("bad format of filter (expected name=value): {f}"))?;
        if !matches!(
            k,
            "name" | "id" | "label" | "status" | "ancestor" | "exited"
        ) {
            bail!("invalid filter '{k}'");
        }
        filters.push((k.to_string(), v.to_string()));
    }
    filters.sort();
    // A status or exited filter looks at every container, as docker does.
    let all = a.all || filters.iter().any(|(k, _)| k == "status" || k == "exited");
    let mut rows = Vec::new();
    for id in ctx.store.ids()? {
        let dir = ctx.store.dir_of(&id);
        let (Ok(config), Ok(state)) = (dir.config(), lifecycle::state(&dir)) else {
            continue;
        };
        if !all && !matches!(state.status, Status::Running | Status::Paused) {
            continue;
        }
        if !matches_filters(&filters, &config, &state) {
            continue;
        }
        rows.push((config, state));
    }
    rows.sort_by(|a, b| b.0.created.cmp(&a.0.created));
    if a.quiet {
        for (c, _) in &rows {
            println!("{}", if a.no_trunc { &c.id[..] } else { &c.id[..12] });
        }
        return Ok(());
    }
    if a.format.as_deref() == Some("json") {
        for (c, s) in &rows {
            println!(
                "{}",
                json!({
                    "ID": &c.id[..12],
                    "Image": c.image_name,
                    "Command": format!("\"{}\"", c.process.args.join(" ")),
                    "CreatedAt": c.created,
                    "Names": c.name,
                    "State": s.status.as_str(),
                    "Status": status_text(s),
                    "Labels": c.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
                })
            );
        }
        return Ok(());
    }
    let mut table = vec![[
        "CONTAINER ID".to_string(),
        "IMAGE".to_string(),
        "COMMAND".to_string(),
        "CREATED".to_string(),
        "STATUS".to_string(),
        "PORTS".to_string(),
        "NAMES".to_string(),
    ]];
    for (c, s) in &rows {
        let mut cmd = c.process.args.join(" ");
        if !a.no_trunc && cmd.chars().count() > 20 {
            cmd = cmd.chars().take(19).collect::<String>() + "…";
        }
        table.push([
            if a.no_trunc {
                c.id.clone()
            } else {
                c.id[..12].to_string()
            },
            c.image_name.clone(),
            format!("\"{cmd}\""),
            ago(&c.created),
            status_text(s),
            String::new(),
            c.name.clone(),
        ]);
    }
    print!("{}", crate::commands::tabwrite(&table, 0, 3));
    Ok(())
}

fn since(rfc: &str) -> Option<Duration> {
    let t = chrono::DateTime::parse_from_rfc3339(rfc).ok()?;
    (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
        .to_std()
        .ok()
}

/// Docker's `units.HumanDuration`.
fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "Less than a second".to_string(),
        1 => "1 second".to_string(),
        2..60 => format!("{s} seconds"),
        60..120 => "About a minute".to_string(),
        120..3600 => format!("{} minutes", s / 60),
        3600..7200 => "About an hour".to_string(),
        7200..172800 => format!("{} hours", s / 3600),
        172800..1209600 => format!("{} days", s / 86400),
        1209600..5184000 => format!("{} weeks", s / 604800),
        5184000..63072000 => format!("{} months", s / 2592000),
        _ => format!("{} years", s / 31536000),
    }
}

pub fn ago(rfc: &str) -> String {
    since(rfc)
        .map(|d| format!("{} ago", human_duration(d)))
        .unwrap_or_default()
}

/// Docker's STATUS column: `Up 3 minutes`, `Up 3 seconds (healthy)`, `Exited (0) 2 hours
/// ago`, `Created`.
pub fn status_text(s: &ContainerState) -> String {
    match s.status {
        Status::Running => {
            let up = since(&s.started_at).map(human_duration).unwrap_or_default();
            match &s.health {
                Some(h) if h.status == berth_engine::container::HealthStatus::Starting => {
                    format!("Up {up} (health: starting)")
                }
                Some(h) => format!("Up {up} ({})", h.status.as_str()),
                None => format!("Up {up}"),
            }
        }
        Status::Paused => format!(
            "Up {} (Paused)",
            since(&s.started_at).map(human_duration).unwrap_or_default()
        ),
        Status::Exited => format!(
            "Exited ({}) {}",
            s.exit_code.unwrap_or(0),
            ago(&s.finished_at)
        ),
        Status::Created => "Created".to_string(),
        Status::Restarting => format!("Restarting ({})", s.exit_code.unwrap_or(0)),
        Status::Removing => "Removal In Progress".to_string(),
        Status::Dead => "Dead".to_string(),
    }
}

fn inspect(ctx: &Ctx, a: &NamesArgs) -> anyhow::Result<u8> {
    let mut out = Vec::new();
    let mut failed = false;
    for key in &a.containers {
        match ctx.resolve(key) {
            Ok(dir) => {
                let config = dir.config()?;
                let state = lifecycle::state(&dir)?;
                let mut value = inspect_json(&dir, &config, &state);
                value["NetworkSettings"] = network_settings(ctx, &config)?;
                out.push(value);
            }
            Err(e) => {
                eprintln!("Error: {e:#}");
                failed = true;
            }
        }
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(u8::from(failed))
}

/// docker inspect's `NetworkSettings`: the endpoints the container holds now (addresses
/// exist only while it runs) and its published ports.
fn network_settings(ctx: &Ctx, c: &ContainerConfig) -> anyhow::Result<serde_json::Value> {
    let eps = crate::net::store(ctx.root())
        .map_err(anyhow::Error::msg)?
        .container_endpoints(&c.id)?;
    let mut networks = serde_json::Map::new();
    for e in &c.networks {
        let live = eps.iter().find(|ep| ep.network == e.network);
        networks.insert(
            e.network.clone(),
            json!({
                "Aliases": e.aliases,
                "NetworkID": e.network,
                "EndpointID": live.map(|l| l.host_veth.clone()).unwrap_or_default(),
                "Gateway": live.and_then(|l| l.gateway).map(|g| g.to_string()).unwrap_or_default(),
                "IPAddress": live.map(|l| l.ip.to_string()).unwrap_or_default(),
                "IPPrefixLen": live.map(|l| l.prefix).unwrap_or(0),
                "MacAddress": live.map(|l| l.mac.clone()).unwrap_or_default(),
                "DNSNames": live.map(|l| l.names.clone()),
            }),
        );
    }
    let mut ports = serde_json::Map::new();
    for p in &c.ports {
        let key = format!("{}/{}", p.container_port, p.protocol);
        let live: Vec<serde_json::Value> = eps
            .iter()
            .flat_map(|e| e.ports.iter())
            .filter(|l| l.container_port == p.container_port && l.protocol == p.protocol)
            .map(|l| {
                json!({
                    "HostIp": l.host_ip.map(|i| i.to_string()).unwrap_or_else(|| "0.0.0.0".into()),
                    "HostPort": l.host_port.to_string(),
                })
            })
            .collect();
        ports.insert(
            key,
            if live.is_empty() {
                serde_json::Value::Null
            } else {
                json!(live)
            },
        );
    }
    let first = eps.first();
    Ok(json!({
        "Networks": networks,
        "Ports": ports,
        "IPAddress": first.map(|l| l.ip.to_string()).unwrap_or_default(),
        "Gateway": first.and_then(|l| l.gateway).map(|g| g.to_string()).unwrap_or_default(),
        "MacAddress": first.map(|l| l.mac.clone()).unwrap_or_default(),
    }))
}

/// docker inspect's shape for the fields berth has.
pub fn inspect_json(
    dir: &ContainerDir,
    c: &ContainerConfig,
    s: &ContainerState,
) -> serde_json::Value {
    // berth keeps the resolved argv only (image entrypoint and cmd already applied): it is
    // shown as `Cmd`, with an empty `Entrypoint`.
    let cmd = &c.process.args;
    let mut value = json!({
        "Id": c.id,
        "Created": c.created,
        "Path": cmd.first().cloned().unwrap_or_default(),
        "Args": cmd.iter().skip(1).collect::<Vec<_>>(),
        "State": {
            "Status": s.status.as_str(),
            "Running": matches!(s.status, Status::Running | Status::Paused),
            "Paused": s.status == Status::Paused,
            "Restarting": s.status == Status::Restarting,
            "OOMKilled": s.oom_killed,
            "Dead": s.status == Status::Dead,
            "Pid": s.pid.unwrap_or(0),
            "ExitCode": s.exit_code.unwrap_or(0),
            "Error": s.error,
            "StartedAt": if s.started_at.is_empty() { "0001-01-01T00:00:00Z" } else { &s.started_at },
            "FinishedAt": if s.finished_at.is_empty() { "0001-01-01T00:00:00Z" } else { &s.finished_at },
        },
        "Image": c.image_id.as_ref().map(ToString::to_string).unwrap_or_default(),
        "Name": format!("/{}", c.name),
        "RestartCount": s.restart_count,
        "LogPath": dir.log_dir().join("container.log"),
        "HostConfig": {
            "AutoRemove": c.auto_remove,
            "Privileged": c.security.privileged,
            "ReadonlyRootfs": c.read_only,
            "CapAdd": c.security.cap_add,
            "CapDrop": c.security.cap_drop,
            "Memory": c.resources.memory.unwrap_or(0),
            "MemorySwap": c.resources.memory_swap.unwrap_or(0),
            "MemoryReservation": c.resources.memory_reservation.unwrap_or(0),
            "NanoCpus": c.resources.nano_cpus.unwrap_or(0),
            "CpuShares": c.resources.cpu_shares.unwrap_or(0),
            "PidsLimit": c.resources.pids_limit,
            "Init": c.init,
            "RestartPolicy": { "Name": c.restart.name, "MaximumRetryCount": c.restart.max_retries },
            "LogConfig": { "Type": c.log.driver, "Config": { "max-size": c.log.max_size.to_string(), "max-file": c.log.max_file.to_string() } },
        },
        "Mounts": c.mounts,
        "Config": {
            "Hostname": c.hostname,
            "Domainname": c.domainname,
            "User": c.process.user,
            "Tty": c.process.tty,
            "OpenStdin": c.process.stdin_open,
            "Env": c.process.env,
            "Cmd": cmd,
            "Entrypoint": Vec::<String>::new(),
            "Image": c.image_name,
            "WorkingDir": c.process.cwd,
            "Labels": c.labels,
            "StopSignal": if c.stop_signal.is_empty() { "SIGTERM" } else { &c.stop_signal },
            "StopTimeout": c.stop_timeout,
        },
    });
    // Docker shows both only for a container with a health check.
    if let Some(h) = &s.health {
        value["State"]["Health"] = json!({
            "Status": h.status.as_str(),
            "FailingStreak": h.failing_streak,
            "Log": h.log.iter().map(|r| json!({
                "Start": r.start,
                "End": r.end,
                "ExitCode": r.exit_code,
                "Output": r.output,
            })).collect::<Vec<_>>(),
        });
    }
    if let Some(h) = &c.healthcheck {
        let ns = |ms: u64| ms.saturating_mul(1_000_000);
        value["Config"]["Healthcheck"] = json!({
            "Test": h.test,
            "Interval": ns(h.interval_ms),
            "Timeout": ns(h.timeout_ms),
            "StartPeriod": ns(h.start_period_ms),
            "StartInterval": ns(h.start_interval_ms),
            "Retries": h.retries,
        });
    }
    value
}

/// `exec`: a `berth __exec` child (single-threaded, as libcontainer needs) with this process'
/// stdio; its exit code is the command's.
pub fn exec(ctx: &Ctx, a: &ExecArgs) -> anyhow::Result<u8> {
    let dir = ctx.resolve(&a.container)?;
    let req = berth_engine::container::exec::ExecRequest {
        id: dir.id.clone(),
        args: a.command.clone(),
        env: a.env.clone(),
        user: a.user.clone().unwrap_or_default(),
        workdir: a.workdir.clone(),
        privileged: a.privileged,
        detach: a.detach,
        tty: a.tty,
    };
    let mut cmd = std::process::Command::new(&ctx.shim_exe);
    cmd.arg(berth_engine::container::exec::EXEC_VERB)
        .args(req.to_args(ctx.root()));
    if !a.interactive {
        cmd.stdin(std::process::Stdio::null());
    }
    let status = cmd.status().context("cannot run the exec helper")?;
    Ok(status.code().map(|c| c.clamp(0, 255) as u8).unwrap_or(255))
}

/// `run -i`/`-t` in the foreground: this process' stdin goes to the container (through the
/// shim's `attach`); a terminal's output comes back raw on the same connection, plain output
/// through the log. Returns when the container's output ends.
fn attach(ctx: &Ctx, dir: &ContainerDir, tty: bool) -> anyhow::Result<()> {
    attach_session(
        ctx,
        dir,
        &AttachOptions {
            tty,
            stdin: true,
            since: None,
            detach_keys: None,
            sig_proxy: false,
        },
    )
}

/// How [`attach_session`] attaches.
pub struct AttachOptions {
    /// The container has a terminal: output comes back raw on the connection.
    pub tty: bool,
    /// This process' stdin goes to the container.
    pub stdin: bool,
    /// Plain output from the log from this time (`None`: all of it).
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Typing this byte sequence on stdin detaches and leaves the container running.
    pub detach_keys: Option<Vec<u8>>,
    /// Signals this process receives go to the container's process (not with a terminal,
    /// where Ctrl-C is a byte like any other).
    pub sig_proxy: bool,
}

/// Docker's `--detach-keys`: comma-separated `a`-`z`, `ctrl-<a-z|@|[|\\|]|^|_>`.
pub fn parse_detach_keys(spec: &str) -> anyhow::Result<Vec<u8>> {
    spec.split(',')
        .map(|k| {
            let k = k.trim();
            if let Some(c) = k.strip_prefix("ctrl-") {
                match c.as_bytes() {
                    [b] if b.is_ascii_lowercase() => Ok(b - b'a' + 1),
                    [b'@'] => Ok(0),
                    [b @ (b'[' | b'\\' | b']' | b'^' | b'_')] => Ok(b - b'@'),
                    _ => bail!("invalid detach keys {spec:?}: unknown key {k:?}"),
                }
            } else {
                match k.as_bytes() {
                    [b] if b.is_ascii_graphic() => Ok(*b),
                    _ => bail!("invalid detach keys {spec:?}: unknown key {k:?}"),
                }
            }
        })
        .collect()
}

/// Attaches this process to the running container of `dir` (`run -i`, compose `attach`):
/// stdin to the container, its output here, until it exits (or the detach keys are typed).
pub fn attach_session(ctx: &Ctx, dir: &ContainerDir, o: &AttachOptions) -> anyhow::Result<()> {
    use std::io::{IsTerminal, Read, Write};
    let tty = o.tty;
    // Plain output is in the log: without input to give, the shim is not asked.
    if !tty && (!o.stdin || !dir.config()?.process.stdin_open) {
        if o.sig_proxy {
            proxy_signals(ctx, dir)?;
        }
        return crate::commands::logs::follow(dir, o.since);
    }
    let socket = berth_engine::container::shim::socket_path(&ctx.store, &dir.id);
    // The reply line, byte by byte: what follows it is the container's output.
    let handshake = || -> std::io::Result<(std::os::unix::net::UnixStream, String)> {
        let mut stream = std::os::unix::net::UnixStream::connect(&socket)?;
        stream.write_all(b"attach\n")?;
        let mut reply = Vec::new();
        let mut byte = [0u8; 1];
        while stream.read(&mut byte)? == 1 && byte[0] != b'\n' {
            reply.push(byte[0]);
        }
        Ok((stream, String::from_utf8_lossy(&reply).into_owned()))
    };
    let (mut stream, reply) = match handshake() {
        Ok(r) => r,
        // A container that was done before we could attach (`run -i … true`): its shim has
        // gone; what it printed is in its log.
        Err(e) => {
            let deadline = std::time::Instant::now() + Duration::from_secs(2);
            loop {
                let done = !dir.shim_alive().unwrap_or(false)
                    || lifecycle::state(dir).is_ok_and(|st| st.status != Status::Running);
                if done {
                    return crate::commands::logs::follow(dir, o.since);
                }
                if std::time::Instant::now() > deadline {
                    return Err(e)
                        .with_context(|| format!("cannot attach to container {}", dir.id));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    if let Some(msg) = reply.strip_prefix("error ") {
        bail!("cannot attach: {msg}");
    }
    let stdin = std::io::stdin();
    let _raw = if tty && stdin.is_terminal() {
        if let Ok(size) = rustix::termios::tcgetwinsize(&stdin) {
            let _ = berth_engine::container::shim::request(
                &socket,
                &format!("resize {} {}", size.ws_row, size.ws_col),
                Some(Duration::from_secs(5)),
            );
        }
        // Later size changes too: SIGWINCH, blocked here before any thread is spawned so only
        // the waiting thread takes it.
        let set = nix_signals::winch_set();
        if set.thread_block().is_ok() {
            let socket = socket.clone();
            let _ = std::thread::Builder::new()
                .name("winch".into())
                .spawn(move || {
                    while set.wait().is_ok() {
                        if let Ok(size) = rustix::termios::tcgetwinsize(std::io::stdin()) {
                            let _ = berth_engine::container::shim::request(
                                &socket,
                                &format!("resize {} {}", size.ws_row, size.ws_col),
                                Some(Duration::from_secs(5)),
                            );
                        }
                    }
                });
        }
        RawMode::enter(&stdin)
    } else {
        None
    };
    if o.sig_proxy && !tty {
        proxy_signals(ctx, dir)?;
    }
    let mut input = stream.try_clone()?;
    let detach_keys = o.detach_keys.clone().filter(|k| !k.is_empty());
    let detached = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let detached_in = detached.clone();
    if o.stdin {
        std::thread::Builder::new()
            .name("stdin".into())
            .spawn(move || {
                let mut buf = [0u8; 4096];
                let mut stdin = std::io::stdin().lock();
                // How much of the detach sequence the last bytes typed.
                let mut matched = 0;
                loop {
                    match stdin.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if let Some(keys) = &detach_keys {
                                for &b in &buf[..n] {
                                    matched = if b == keys[matched] {
                                        matched + 1
                                    } else {
                                        usize::from(b == keys[0])
                                    };
                                    if matched == keys.len() {
                                        detached_in
                                            .store(true, std::sync::atomic::Ordering::SeqCst);
                                        // Ends the session: the output loop sees the end.
                                        let _ = input.shutdown(std::net::Shutdown::Both);
                                        if !tty {
                                            // The log follower has no end to wait for.
                                            std::process::exit(0);
                                        }
                                        return;
                                    }
                                }
                            }
                            if input.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
                // End of input: without a terminal the container's stdin is closed with it.
                if !tty {
                    let _ = input.shutdown(std::net::Shutdown::Write);
                }
            })?;
    }
    if tty {
        let mut out = std::io::stdout();
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    out.write_all(&buf[..n])?;
                    out.flush()?;
                }
            }
        }
        if detached.load(std::sync::atomic::Ordering::SeqCst) {
            eprintln!("\r\nread escape sequence\r");
        }
    } else {
        crate::commands::logs::follow(dir, o.since)?;
    }
    // Hang up now, whatever the stdin thread still holds: a shim holds back its hand-over
    // while a session is attached.
    let _ = stream.shutdown(std::net::Shutdown::Both);
    Ok(())
}

/// Docker's `--sig-proxy`: the signals a user sends this process (Ctrl-C's SIGINT, a
/// `kill`) go to the container's process instead, from a thread that waits for them (blocked
/// here, before other threads exist, so that none of them takes one).
fn proxy_signals(ctx: &Ctx, dir: &ContainerDir) -> anyhow::Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ] {
        set.add(s);
    }
    set.thread_block()?;
    let store = ctx.store.clone();
    let dir = dir.clone();
    std::thread::Builder::new()
        .name("sig-proxy".into())
        .spawn(move || {
            while let Ok(sig) = set.wait() {
                // Not a user's stop: the restart policy still applies, as with Docker.
                let _ = lifecycle::kill(&store, &dir, sig as i32, false);
            }
        })?;
    Ok(())
}

/// The terminal in raw mode until dropped.
struct RawMode {
    saved: rustix::termios::Termios,
}

impl RawMode {
    fn enter(stdin: &std::io::Stdin) -> Option<RawMode> {
        let saved = rustix::termios::tcgetattr(stdin).ok()?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(stdin, rustix::termios::OptionalActions::Now, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(
            std::io::stdin(),
            rustix::termios::OptionalActions::Now,
            &self.saved,
        );
    }
}

mod nix_signals {
    /// `{SIGWINCH}`.
    pub fn winch_set() -> nix::sys::signal::SigSet {
        let mut set = nix::sys::signal::SigSet::empty();
        set.add(nix::sys::signal::Signal::SIGWINCH);
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_engine::container::{Health, HealthStatus};

    fn run_args(argv: &[&str]) -> RunArgs {
        use clap::Parser;
        let all = ["container", "run"].iter().chain(argv).copied();
        match ContainerArgs::try_parse_from(all).map(|a| a.command) {
            Ok(ContainerCommand::Run(a)) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn detach_keys_as_docker() {
        assert_eq!(parse_detach_keys("ctrl-p,ctrl-q").unwrap(), [16, 17]);
        assert_eq!(parse_detach_keys("ctrl-@,a,ctrl-_").unwrap(), [0, b'a', 31]);
        for bad in ["ctrl-", "ctrl-1", "ab", "", "ctrl-P"] {
            assert!(parse_detach_keys(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn health_flags_as_docker() {
        let o = health_flags(&run_args(&[
            "--health-cmd",
            "test -f /ok",
            "--health-interval",
            "2s",
            "--health-retries",
            "5",
            "--health-start-period",
            "1m",
            "img",
        ]))
        .unwrap();
        assert_eq!(o.test, ["CMD-SHELL", "test -f /ok"]);
        assert_eq!(o.interval, Some(Duration::from_secs(2)));
        assert_eq!(o.retries, Some(5));
        assert_eq!(o.start_period, Some(Duration::from_secs(60)));
        assert!(o.timeout.is_none() && !o.disable);
        assert!(
            health_flags(&run_args(&["--no-healthcheck", "img"]))
                .unwrap()
                .disable
        );
        let e = health_flags(&run_args(&["--no-healthcheck", "--health-cmd", "x", "img"]));
        assert!(format!("{:#}", e.unwrap_err()).contains("conflicts"));
        let e = health_flags(&run_args(&["--health-timeout=-1s", "img"]));
        assert!(format!("{:#}", e.unwrap_err()).contains("negative"));
    }

    #[test]
    fn status_text_shows_health_while_running() {
        let mut s = ContainerState {
            status: Status::Running,
            started_at: berth_engine::container::shim::now_rfc3339(),
            ..ContainerState::default()
        };
        assert!(!status_text(&s).contains('('));
        s.health = Some(Health::default());
        assert!(
            status_text(&s).ends_with(" (health: starting)"),
            "{}",
            status_text(&s)
        );
        s.health = Some(Health {
            status: HealthStatus::Healthy,
            ..Health::default()
        });
        assert!(status_text(&s).starts_with("Up "));
        assert!(status_text(&s).ends_with(" (healthy)"));
        s.status = Status::Exited;
        assert!(!status_text(&s).contains("healthy"));
    }
}
