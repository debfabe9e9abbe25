//! `berth logs`: the project's containers' output, each line prefixed with the container's
//! service and number (`web-1  | …`), coloured per container on a terminal.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use berth_engine::logs::{LogEntry, LogReader, ReadOptions, Stream};
use chrono::Utc;
use clap::Args;

use crate::cli::Settings;
use crate::commands::container::Ctx;
use crate::commands::follow::{self, Prefixes, Tracker};
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

impl Prefix {
    /// `name` padded to `width`, in palette colour `index` when `color`; empty when `plain`.
    pub fn new(name: &str, width: usize, index: usize, plain: bool, color: bool) -> Prefix {
        Prefix {
            text: if plain {
                String::new()
            } else if color {
                format!(
                    "\x1b[{}m{name:<width$}  |\x1b[0m ",
                    COLORS[index % COLORS.len()]
                )
            } else {
                format!("{name:<width$}  | ")
            },
        }
    }
}

/// The prefixes of `containers`, padded to the longest.
pub fn prefixes(containers: &[Observed], plain: bool, color: bool) -> Vec<Prefix> {
    let mut p = Prefixes::new(containers, plain, color);
    containers.iter().map(|o| p.next(o)).collect()
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
            if !o.dir.log_dir().exists() {
                // Created, never started: no output yet.
                continue;
            }
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
    follow_project(&ctx, &project.name, args, containers, &opts, color)
}

/// `logs -f`: every selected container's output, from `opts` for those there now and from
/// their first line for those that appear later, until all are done (the project is down,
/// or everything exited with no restart coming).
fn follow_project(
    ctx: &Ctx,
    project: &str,
    args: &ProjectLogsArgs,
    first: Vec<Observed>,
    opts: &ReadOptions,
    color: bool,
) -> anyhow::Result<u8> {
    let select = |o: &Observed| {
        (args.services.is_empty() || args.services.iter().any(|s| s == o.service()))
            && args.index.is_none_or(|i| o.number() == i)
            && o.config.log.driver != "none"
    };
    let mut tracker = Tracker::new(ctx, project, select);
    let initial = tracker.new_ones()?;
    let mut prefixes = Prefixes::new(&first, args.no_log_prefix, color);
    let later = ReadOptions {
        until: opts.until,
        follow: true,
        ..ReadOptions::default()
    };
    let out = Mutex::new(());
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| -> anyhow::Result<u8> {
        let spawn = |o: Observed, prefix: Prefix, opts: ReadOptions| {
            let (out, tx) = (&out, tx.clone());
            s.spawn(move || {
                if let Some(reader) = follow::open_log(&o) {
                    let (dir, policy) = (o.dir.clone(), o.config.restart.clone());
                    if let Ok(entries) =
                        reader.entries_until(&opts, move || follow::done(&dir, &policy))
                    {
                        for e in entries {
                            let Ok(e) = e else { break };
                            if !write_entry(out, &prefix, &e, args.timestamps) {
                                break;
                            }
                        }
                    }
                }
                let _ = tx.send(());
            });
        };
        let mut live = 0usize;
        for o in initial {
            let p = prefixes.next(&o);
            // One that appeared since `first` was listed is new: all of it is shown.
            let known = first.iter().any(|f| f.dir.id == o.dir.id);
            spawn(o, p, if known { opts.clone() } else { later.clone() });
            live += 1;
        }
        loop {
            match rx.recv_timeout(follow::RESCAN) {
                Ok(()) => live -= 1,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
            // Sampled before the scan: an `up` that finishes in between has made its
            // containers by then, so the scan sees them.
            let busy = crate::commands::up::project_busy(ctx.root(), project);
            // New containers (recreated, scaled) are followed from their first line.
            for o in tracker.new_ones()? {
                let p = prefixes.next(&o);
                spawn(o, p, later.clone());
                live += 1;
            }
            // Nothing left to follow ends it, unless an `up` or `down` is under way
            // (a recreate stops the old container before the new one exists).
            if live == 0 && !busy {
                break;
            }
        }
        Ok(0)
    })
}
