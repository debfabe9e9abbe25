//! The command line: global options as `docker compose` has them (plus berth's own), the
//! verbs, and [`Settings`], the raw arguments resolved once before any work starts.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use berth_compose::discovery::ProjectOptions;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::commands::{config::ConfigArgs, version::VersionArgs};

const HELP_TEMPLATE: &str = "\
Usage:  {usage}

{about}

Options:
{options}

Commands:
{subcommands}

Run 'berth COMMAND --help' for more information on a command.
";

/// berth's command line.
#[derive(Debug, Parser)]
#[command(
    name = "berth",
    bin_name = "berth",
    about = "Define and run multi-container applications with berth",
    override_usage = "berth [OPTIONS] COMMAND",
    help_template = HELP_TEMPLATE,
    disable_version_flag = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(flatten)]
    pub shorts: ShortGlobals,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Attach local standard input, output, and error streams to a service's running container
    Attach(crate::commands::service_verbs::AttachArgs),
    /// Parse, resolve and render compose file in canonical format
    Config(ConfigArgs),
    /// Manage containers (run, ls, stop, rm, logs, exec, …)
    Container(ForwardArgs),
    /// List images used by the created containers
    Images(crate::commands::images::ImagesArgs),
    /// Manage images (pull, ls, inspect, rm, tag)
    Image(crate::commands::image::ImageArgs),
    /// Log in to a registry
    Login(crate::commands::login::LoginArgs),
    /// Log out from a registry
    Logout(crate::commands::login::LogoutArgs),
    /// Keep the projects' supervisors running (in the foreground, e.g. from a systemd unit)
    Daemon(crate::commands::daemon::DaemonArgs),
    /// Creates containers for a service
    Create(crate::commands::service_verbs::CreateArgs),
    /// Stop and remove containers, networks
    Down(crate::commands::down::DownArgs),
    /// Receive real time events from containers
    Events(crate::commands::events::EventsArgs),
    /// Execute a command in a running container
    Exec(crate::commands::service_verbs::ExecArgs),
    /// Export a service container's filesystem as a tar archive
    Export(crate::commands::service_verbs::ExportArgs),
    /// Force stop service containers
    Kill(crate::commands::service_verbs::KillArgs),
    /// List running compose projects
    Ls(crate::commands::service_verbs::LsArgs),
    /// Pause services
    Pause(crate::commands::service_verbs::ServicesArgs),
    /// Print the public port for a port binding
    Port(crate::commands::service_verbs::PortArgs),
    /// Copy files/folders between a service container and the local filesystem
    Cp(crate::commands::service_verbs::CpArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(crate::commands::service_verbs::StatsArgs),
    /// Run a one-off command on a service
    Run(crate::commands::run::RunArgs),
    /// Restart service containers
    Restart(crate::commands::service_verbs::RestartArgs),
    /// Removes stopped service containers
    Rm(crate::commands::service_verbs::RmArgs),
    /// Scale services
    Scale(crate::commands::service_verbs::ScaleArgs),
    /// Start services
    Start(crate::commands::service_verbs::ServicesArgs),
    /// Stop services
    Stop(crate::commands::service_verbs::StopArgs),
    /// Display the running processes
    Top(crate::commands::service_verbs::ServicesArgs),
    /// Unpause services
    Unpause(crate::commands::service_verbs::ServicesArgs),
    /// Block until containers of all (or specified) services stop.
    Wait(crate::commands::service_verbs::ServicesArgs),
    /// View output from containers
    Logs(crate::commands::project_logs::ProjectLogsArgs),
    /// List containers
    Ps(crate::commands::ps::PsArgs),
    /// Create and start containers
    Up(crate::commands::up::UpArgs),
    /// Manage networks (create, ls, inspect, rm, prune, connect, disconnect)
    Network(crate::commands::network::NetworkArgs),
    /// Pull service images
    Pull(crate::commands::pull::PullArgs),
    /// Show the berth version information
    Version(VersionArgs),
    /// Manage volumes (create, ls, inspect, rm, prune)
    Volume(crate::commands::volume::VolumeArgs),
    /// List volumes
    Volumes(crate::commands::volumes::VolumesArgs),
}

/// When to print ANSI control characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Ansi {
    Never,
    Always,
    Auto,
}

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Progress {
    Auto,
    Tty,
    Plain,
    Json,
    Quiet,
}

/// The arguments of a verb with its own command line (`container`): docker's CLI for single
/// containers shares no option with compose (`run --env-file`, `-p`, `-f` mean other things
/// there), so its arguments are taken raw here and parsed by the verb's own parser. Options
/// before the verb (`--root`, `--log-level`, `--ansi`) still apply.
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct ForwardArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub args: Vec<String>,
}

/// `-f FILE` and `-p NAME`, the short forms of `--file` and `--project-name`: valid before the
/// verb and after the verbs that have no `-f`/`-p` of their own. (In docker compose a verb's
/// own flag shadows the persistent one — `logs -f` follows, `run -p` publishes; clap cannot
/// shadow a global argument, so the short forms are added where they don't clash.)
#[derive(Debug, Default, Args)]
pub struct ShortGlobals {
    #[arg(id = "short_files", short = 'f', value_name = "FILE", hide = true)]
    pub files: Vec<String>,
    #[arg(
        id = "short_project_name",
        short = 'p',
        value_name = "NAME",
        hide = true
    )]
    pub project_name: Option<String>,
}

impl Cli {
    /// Folds every `-f`/`-p` into [`GlobalArgs`]: the verb's first, so that the ones before
    /// the verb end up first.
    pub fn absorb_shorts(&mut self) {
        match &self.command {
            Some(Command::Config(a)) => self.global.absorb(&a.shorts),
            Some(Command::Pull(a)) => self.global.absorb(&a.shorts),
            Some(Command::Images(a)) => self.global.absorb(&a.shorts),
            Some(Command::Volumes(a)) => self.global.absorb(&a.shorts),
            Some(Command::Up(a)) => self.global.absorb(&a.shorts),
            Some(Command::Down(a)) => self.global.absorb(&a.shorts),
            Some(Command::Ps(a)) => self.global.absorb(&a.shorts),
            Some(Command::Create(a)) => self.global.absorb(&a.shorts),
            Some(Command::Exec(a)) => self.global.absorb(&a.shorts),
            Some(Command::Attach(a)) => self.global.absorb(&a.shorts),
            Some(Command::Kill(a)) => self.global.absorb(&a.shorts),
            Some(Command::Port(a)) => self.global.absorb(&a.shorts),
            Some(Command::Export(a)) => self.global.absorb(&a.shorts),
            Some(Command::Restart(a)) => self.global.absorb(&a.shorts),
            Some(Command::Scale(a)) => self.global.absorb(&a.shorts),
            Some(Command::Stop(a)) => self.global.absorb(&a.shorts),
            Some(
                Command::Start(a)
                | Command::Pause(a)
                | Command::Unpause(a)
                | Command::Top(a)
                | Command::Wait(a),
            ) => self.global.absorb(&a.shorts),
            _ => {}
        }
        let shorts = std::mem::take(&mut self.shorts);
        self.global.absorb(&shorts);
    }
}

impl GlobalArgs {
    /// Folds the short forms in: those before the verb come first, then the verb's.
    pub fn absorb(&mut self, shorts: &ShortGlobals) {
        self.files.splice(0..0, shorts.files.iter().cloned());
        if self.project_name.is_none() {
            self.project_name.clone_from(&shorts.project_name);
        }
    }
}

/// Options valid before or after any verb (cobra's persistent flags in docker compose).
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Compose configuration files (short: -f)
    #[arg(long = "file", value_name = "FILE", global = true)]
    pub files: Vec<String>,
    /// Project name (short: -p)
    #[arg(long = "project-name", value_name = "NAME", global = true)]
    pub project_name: Option<String>,
    /// Specify an alternate working directory (default: the path of the, first specified, Compose file)
    #[arg(long = "project-directory", value_name = "DIR", global = true)]
    pub project_directory: Option<PathBuf>,
    /// Specify an alternate environment file
    #[arg(long = "env-file", value_name = "PATH", global = true)]
    pub env_files: Vec<PathBuf>,
    /// Specify a profile to enable
    #[arg(
        id = "profile",
        long = "profile",
        value_name = "PROFILE",
        global = true
    )]
    pub profiles: Vec<String>,
    /// Control when to print ANSI control characters
    #[arg(
        long,
        value_enum,
        default_value = "auto",
        env = "COMPOSE_ANSI",
        global = true
    )]
    pub ansi: Ansi,
    /// Set type of progress output
    #[arg(
        long,
        value_enum,
        default_value = "auto",
        env = "COMPOSE_PROGRESS",
        global = true
    )]
    pub progress: Progress,
    /// Control max parallelism, -1 for unlimited
    #[arg(
        long,
        value_name = "N",
        default_value_t = -1,
        allow_negative_numbers = true,
        env = "COMPOSE_PARALLEL_LIMIT",
        global = true
    )]
    pub parallel: i64,
    /// Execute command in dry run mode
    #[arg(long = "dry-run", global = true)]
    pub dry_run: bool,
    /// berth's state directory (default: /var/lib/berth, or $XDG_DATA_HOME/berth when not root)
    #[arg(long, value_name = "DIR", env = "BERTH_ROOT", global = true)]
    pub root: Option<PathBuf>,
    /// Set the logging level ("trace"|"debug"|"info"|"warn"|"error")
    #[arg(
        long = "log-level",
        value_name = "LEVEL",
        default_value = "warn",
        global = true
    )]
    pub log_level: String,
    /// Show the berth version information
    #[arg(short = 'v', long = "version")]
    pub version: bool,
}

/// Everything a verb needs, resolved once from the arguments and the process.
#[derive(Debug)]
pub struct Settings {
    /// What discovery needs (files, project name, directories, env files, profiles, process
    /// environment, stdin when `-f -` asks for it).
    pub project: ProjectOptions,
    pub ansi: bool,
    pub progress: Progress,
    /// `None` for unlimited.
    pub parallel: Option<usize>,
    pub dry_run: bool,
    pub root: PathBuf,
}

impl Settings {
    /// Resolves the global options against the process: current directory, environment,
    /// standard input (read only for `-f -`), terminal.
    pub fn resolve(g: &GlobalArgs) -> anyhow::Result<Settings> {
        let working_dir =
            std::env::current_dir().context("failed to read the current directory")?;
        let environment = std::env::vars().collect();
        let mut project = ProjectOptions {
            files: g.files.clone(),
            project_name: g.project_name.clone(),
            project_directory: g.project_directory.clone(),
            env_files: g.env_files.clone(),
            profiles: g.profiles.clone(),
            working_dir,
            environment,
            stdin: None,
        };
        if project.reads_stdin() {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("failed to read the compose file from standard input")?;
            project.stdin = Some(text);
        }
        let parallel = match g.parallel {
            n if n < 0 => None,
            0 => anyhow::bail!("--parallel must be -1 (unlimited) or a positive number"),
            n => Some(usize::try_from(n).unwrap_or(usize::MAX)),
        };
        Ok(Settings {
            ansi: use_ansi(g.ansi, &project.environment),
            // Absolute: the shims, the runtime's spec and the overlay options are handed
            // paths under it, and none of them shares this process's working directory.
            root: std::path::absolute(
                g.root
                    .clone()
                    .unwrap_or_else(|| default_root(&project.environment)),
            )?,
            project,
            progress: g.progress,
            parallel,
            dry_run: g.dry_run,
        })
    }
}

impl Settings {
    /// Records the resolved settings at debug level.
    pub fn log(&self) {
        tracing::debug!(
            root = %self.root.display(),
            dry_run = self.dry_run,
            parallel = ?self.parallel,
            progress = ?self.progress,
            ansi = self.ansi,
            "resolved settings"
        );
    }
}

/// `--ansi auto` colours a terminal unless `NO_COLOR` is set (to anything non-empty).
pub fn use_ansi(ansi: Ansi, env: &indexmap::IndexMap<String, String>) -> bool {
    use std::io::IsTerminal;
    match ansi {
        Ansi::Never => false,
        Ansi::Always => true,
        Ansi::Auto => {
            env.get("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
        }
    }
}

/// `/var/lib/berth` for root, else `$XDG_DATA_HOME/berth` (or `~/.local/share/berth`).
fn default_root(env: &indexmap::IndexMap<String, String>) -> PathBuf {
    if is_root() {
        return PathBuf::from("/var/lib/berth");
    }
    match (env.get("XDG_DATA_HOME"), env.get("HOME")) {
        (Some(x), _) if !x.is_empty() => PathBuf::from(x).join("berth"),
        (_, Some(h)) if !h.is_empty() => PathBuf::from(h).join(".local/share/berth"),
        _ => PathBuf::from("/var/lib/berth"),
    }
}

/// Whether the process runs as uid 0 (read from /proc, without libc).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|rest| rest.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_parse_before_and_after_the_verb() {
        let cli = Cli::try_parse_from([
            "berth",
            "-f",
            "a.yml",
            "--file",
            "b.yml",
            "config",
            "--profile",
            "x",
            "-p",
            "demo",
            "--parallel",
            "-1",
            "--services",
        ])
        .unwrap();
        let mut cli = cli;
        cli.absorb_shorts();
        assert_eq!(cli.global.files, vec!["a.yml", "b.yml"]);
        assert_eq!(cli.global.profiles, vec!["x"]);
        assert_eq!(cli.global.project_name.as_deref(), Some("demo"));
        assert!(matches!(cli.command, Some(Command::Config(ref c)) if c.services));
    }

    #[test]
    fn ansi_never_and_always_ignore_the_terminal() {
        let mut env = indexmap::IndexMap::new();
        assert!(!use_ansi(Ansi::Never, &env));
        assert!(use_ansi(Ansi::Always, &env));
        env.insert("NO_COLOR".to_string(), "1".to_string());
        assert!(!use_ansi(Ansi::Auto, &env));
    }
}
