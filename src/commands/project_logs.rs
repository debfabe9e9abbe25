//! `berth logs`: the project's containers' output, each line prefixed with the container's
//! service and number (`web-1  | …`), coloured per container on a terminal.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use berth_engine::logs::{LogEntry, LogReader, ReadOptions, Stream};
use chrono::Utc;
use clap::Args;

use crate::cli::Settings;
use crate::commands::container::Ctx;
use crate::commands::logs::parse_time;
use crate::orchestrator::observe::{Observed, project_containers};
use crate::project::{self, LoadFlags};

#[derive(Debug, Args)]
pub struct ProjectLogsArgs {
    /// Follow log output
    #[arg(short, long)]
    pub follow: bool,
    /// Number of lines to show from the end of the logs for each container
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Show timestamps
    #[arg(short, long)]
    pub timestamps: bool,
    /// Show logs since timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m for 42 minutes)
    #[arg(long)]
    pub since: Option<String>,
    /// Show logs before a timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m for 42 minutes)
    #[arg(long)]
    pub until: Option<String>,
    /// Don't print prefix in logs
    #[arg(long = "no-log-prefix")]
    pub no_log_prefix: bool,
    /// Produce monochrome output
    #[arg(long = "no-color")]
    pub no_color: bool,
    /// index of the container if service has multiple replicas
    #[arg(long)]
    pub index: Option<u32>,
    pub services: Vec<String>,
}

/// docker compose's palette, in its order.
const COLORS: [&str; 12] = [
    "36", "33", "32", "35", "34", "31", "36;1", "33;1", "32;1", "35;1", "34;1", "31;1",
];

/// A container's line prefix (`web-1  | `), coloured or plain.
pub struct Prefix {
    text: String,
}

/// The prefixes of `containers`, padded to the longest.
pub fn prefixes(containers: &[Observed], plain: bool, color: bool) -> Vec<Prefix> {
    let names: Vec<String> = containers
        .iter()
        .map(|o| {
            if o.oneoff() || o.number() == 0 {
                o.config.name.clone()
            } else {
                format!("{}-{}", o.service(), o.number())
            }
        })
        .collect();
    let width = names.iter().map(|n| n.len()).max().unwrap_or(0);
    names
        .into_iter()
        .enumerate()
        .map(|(i, n)| Prefix {
            text: if plain {
                String::new()
            } else if color {
                format!("\x1b[{}m{n:<width$}  |\x1b[0m ", COLORS[i % COLORS.len()])
            } else {
                format!("{n:<width$}  | ")
            },
        })
        .collect()
}

/// Writes one entry with its prefix; false once the output is gone.
pub fn write_entry(out: &Mutex<()>, prefix: &Prefix, entry: &LogEntry, timestamps: bool) -> bool {
    let mut line = prefix.text.clone().into_bytes();
    line.extend_from_slice(&entry.format_line(timestamps));
    if !line.ends_with(b"\n") {
        line.push(b'\n');
    }
    let _g = out.lock();
    let result = match entry.stream {
        Stream::Stdout => std::io::stdout().lock().write_all(&line),
        Stream::Stderr => std::io::stderr().lock().write_all(&line),
    };
    result.is_ok()
}

pub fn run(settings: &Settings, args: &ProjectLogsArgs) -> anyhow::Result<u8> {
    let loaded = project::load(settings, &LoadFlags::default())?;
    let project = &loaded.loaded.project;
    let ctx = Ctx::open(settings)?;
    let containers: Vec<Observed> = project_containers(&ctx.store, &project.name)?
        .into_iter()
        .filter(|o| !o.oneoff())
        .filter(|o| args.services.is_empty() || args.services.iter().any(|s| s == o.service()))
        .filter(|o| args.index.is_none_or(|i| o.number() == i))
        .filter(|o| o.config.log.driver != "none")
        .collect();
    let now = Utc::now();
    let tail = match args.tail.as_str() {
        "all" | "" => None,
        n => match n.parse::<i64>() {
            Ok(n) if n < 0 => None,
            Ok(n) => Some(n as usize),
            Err(_) => anyhow::bail!("invalid --tail {n:?}: a number or \"all\""),
        },
    };
    let opts = ReadOptions {
        tail,
        since: args
            .since
            .as_deref()
            .map(|s| parse_time(s, now))
            .transpose()?,
        until: args
            .until
            .as_deref()
            .map(|s| parse_time(s, now))
            .transpose()?,
        follow: args.follow,
    };
    let color =
        !args.no_color && std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let prefixes = prefixes(&containers, args.no_log_prefix, color);
    let out = Mutex::new(());
    if !args.follow {
        // Everything there is, merged by time.
        let mut all: Vec<(LogEntry, usize)> = Vec::new();
        for (i, o) in containers.iter().enumerate() {
            let reader = LogReader::open(&o.dir.log_dir())?;
            for e in reader.entries(&opts)? {
                all.push((e?, i));
            }
        }
        all.sort_by_key(|(e, _)| e.time);
        for (e, i) in &all {
            if !write_entry(&out, &prefixes[*i], e, args.timestamps) {
                break;
            }
        }
        return Ok(0);
    }
    std::thread::scope(|s| {
        for (i, o) in containers.iter().enumerate() {
            let (out, prefix, opts) = (&out, &prefixes[i], &opts);
            s.spawn(move || -> anyhow::Result<()> {
                let reader = LogReader::open(&o.dir.log_dir())?;
                let dir = o.dir.clone();
                for e in reader.entries_until(opts, move || !dir.shim_alive().unwrap_or(false))? {
                    if !write_entry(out, prefix, &e?, args.timestamps) {
                        break;
                    }
                }
                Ok(())
            });
        }
    });
    Ok(0)
}
