//! `berth`: a Docker-Compose-compatible orchestrator. This binary owns the command line,
//! logging, colours and exit codes; the crates under `crates/` know nothing of them.

mod binary;
mod cli;
mod commands;
mod dnsd;
mod engine;
mod health;
mod hooks;
mod labels;
mod net;
mod orchestrator;
mod progress;
mod project;
mod supervisor;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, error::ErrorKind};
use tracing_subscriber::EnvFilter;

use cli::{Cli, Command, GlobalArgs, Settings};
use commands::{config, version};

/// Exit status of a command line that cannot be parsed: docker compose's
/// `CommandSyntaxFailure` (16).
const USAGE_EXIT: u8 = 16;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    // The shim: a single-threaded process from its first instruction (no runtime, no logging
    // set-up, nothing that could start a thread before libcontainer forks).
    if args.get(1).map(String::as_str) == Some(berth_engine::container::shim::SHIM_VERB) {
        // The runtime's own diagnostics go to the shim's stderr (its shim.log); no thread is
        // started by this. libcgroups' v1 manager warns of every controller the host lacks
        // (hugetlb, perf_event, ...) at every start: nothing to act on, so not logged.
        tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::new("warn,libcgroups::v1::manager=error"))
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .init();
        let exe = std::env::current_exe().unwrap_or_else(|_| args[0].clone().into());
        let code = berth_engine::container::shim::main(
            &args[2..],
            &exe,
            &alloc::release_free_memory,
            &net::ShimNetworking,
        );
        return ExitCode::from(code as u8);
    }
    if args.get(1).map(String::as_str) == Some(berth_engine::container::shim::MONITOR_VERB) {
        // No log subscriber here: its filter alone costs ~200 KiB in every monitor, which
        // lives as long as its container; the monitor reports its own errors on stderr.
        let code = berth_engine::container::shim::monitor_main(&args[2..], &net::ShimNetworking);
        return ExitCode::from(code as u8);
    }
    if args.get(1).map(String::as_str) == Some(net::DNS_VERB) {
        return ExitCode::from(dnsd::main(&args[2..]) as u8);
    }
    if args.get(1).map(String::as_str) == Some(supervisor::SUPERVISE_VERB) {
        return ExitCode::from(supervisor::main(&args[2..]) as u8);
    }
    if args.get(1).map(String::as_str) == Some(berth_engine::container::exec::EXEC_VERB) {
        let code = berth_engine::container::exec::main(&args[2..]);
        return ExitCode::from(code.clamp(0, 255) as u8);
    }
    let mut cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => 0,
                _ => USAGE_EXIT,
            };
            // Printing to a closed pipe is not worth a panic.
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    cli.absorb_shorts();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    init_logging(&cli.global)?;
    if cli.global.version {
        print!("{}", version::pretty());
        return Ok(0);
    }
    let Some(command) = cli.command else {
        // As docker compose: no verb prints the help.
        Cli::command().print_help()?;
        return Ok(0);
    };
    match command {
        Command::Version(args) => {
            version::run(&args);
            Ok(0)
        }
        Command::Config(args) => {
            let settings = Settings::resolve(&cli.global)?;
            settings.log();
            config::run(&settings, &args).map(|()| 0)
        }
        other => {
            let settings = Settings::resolve(&cli.global)?;
            settings.log();
            match other {
                Command::Container(args) => {
                    commands::container::run_forwarded(&settings, &args.args)
                }
                Command::Image(args) => commands::image::run(&settings, &args).map(|()| 0),
                Command::Images(args) => commands::images::run(&settings, &args).map(|()| 0),
                Command::Volumes(args) => commands::volumes::run(&settings, &args).map(|()| 0),
                Command::Login(args) => commands::login::login(&settings, &args).map(|()| 0),
                Command::Logout(args) => commands::login::logout(&settings, &args).map(|()| 0),
                Command::Up(args) => commands::up::run(&settings, &args),
                Command::Daemon(args) => commands::daemon::run(&settings, &args),
                Command::Create(args) => commands::service_verbs::create(&settings, &args),
                Command::Exec(args) => commands::service_verbs::exec(&settings, &args),
                Command::Attach(args) => commands::service_verbs::attach(&settings, &args),
                Command::Kill(args) => commands::service_verbs::kill(&settings, &args),
                Command::Ls(args) => commands::service_verbs::ls(&settings, &args),
                Command::Pause(args) => commands::service_verbs::pause(&settings, &args, false),
                Command::Unpause(args) => commands::service_verbs::pause(&settings, &args, true),
                Command::Port(args) => commands::service_verbs::port(&settings, &args),
                Command::Export(args) => commands::service_verbs::export(&settings, &args),
                Command::Cp(args) => commands::service_verbs::cp(&settings, &args),
                Command::Stats(args) => commands::service_verbs::stats(&settings, &args),
                Command::Restart(args) => commands::service_verbs::restart(&settings, &args),
                Command::Run(args) => commands::run::run(&settings, &args),
                Command::Rm(args) => commands::service_verbs::rm(&settings, &args),
                Command::Scale(args) => commands::service_verbs::scale(&settings, &args),
                Command::Start(args) => commands::service_verbs::start(&settings, &args),
                Command::Stop(args) => commands::service_verbs::stop(&settings, &args),
                Command::Top(args) => commands::service_verbs::top(&settings, &args),
                Command::Wait(args) => commands::service_verbs::wait(&settings, &args),
                Command::Down(args) => commands::down::run(&settings, &args),
                Command::Events(args) => commands::events::run(&settings, &args),
                Command::Ps(args) => commands::ps::run(&settings, &args),
                Command::Logs(args) => commands::project_logs::run(&settings, &args),
                Command::Network(args) => commands::network::run(&settings, &args).map(|()| 0),
                Command::Pull(args) => commands::pull::run(&settings, &args).map(|()| 0),
                Command::Volume(args) => commands::volume::run(&settings, &args).map(|()| 0),
                Command::Config(_) | Command::Version(_) => unreachable!("handled above"),
            }
        }
    }
}

#[allow(unsafe_code)]
mod alloc {
    /// Returns memory the allocator holds but nothing uses to the kernel (a shim's start-up
    /// garbage, should it idle in its first stage).
    pub fn release_free_memory() {
        #[cfg(target_env = "gnu")]
        // SAFETY: `malloc_trim` is a plain glibc call with no preconditions; glibc's malloc is
        // this process's allocator, and no allocation is borrowed across the call.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

/// Logs go to stderr (stdout is for data), without colour when `--ansi never`, `NO_COLOR`, or
/// stderr is not a terminal.
fn init_logging(g: &GlobalArgs) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&g.log_level).map_err(|e| {
        anyhow::anyhow!(
            "invalid log level {:?}: {e}\nhint: use one of trace, debug, info, warn, error",
            g.log_level
        )
    })?;
    let env: indexmap::IndexMap<String, String> = std::env::vars().collect();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(cli::use_ansi(g.ansi, &env))
        .without_time()
        .with_target(false)
        .init();
    Ok(())
}
