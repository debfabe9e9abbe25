//! `berth up` without `-d`: the project's output, prefixed per container, until every
//! attached container is done; the first Ctrl-C stops the project gracefully (with
//! progress), the second kills it. `--abort-on-container-exit`, `--abort-on-container-failure`
//! and `--exit-code-from` as docker compose.

use std::sync::mpsc;
use std::time::Duration;

use berth_engine::container::lifecycle;
use berth_engine::logs::ReadOptions;
use chrono::{DateTime, Utc};
use nix::sys::signal::{SigSet, Signal};

use crate::commands::container::Ctx;
use crate::commands::follow::{self, Prefixes, Tracker};
use crate::commands::project_logs::{Prefix, write_entry};
use crate::orchestrator::execute::Progress;
use crate::orchestrator::observe::{Observed, project_containers};

/// How the attached session ends.
#[derive(Debug, Default, Clone)]
pub struct AttachOptions {
    pub abort_on_container_exit: bool,
    pub abort_on_container_failure: bool,
    pub exit_code_from: Option<String>,
    /// Services whose output is shown (all when empty).
    pub attach: Vec<String>,
    pub no_attach: Vec<String>,
    pub no_log_prefix: bool,
    pub no_color: bool,
    pub timeout: Option<Duration>,
}

/// Blocks SIGINT and SIGTERM in the calling thread and every thread it starts later, so
/// that only [`attached`]'s signal thread takes them. Call before any thread exists.
pub fn block_signals() -> anyhow::Result<SigSet> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.thread_block()?;
    Ok(set)
}

enum Event {
    Signal,
    Exited { index: usize, code: i32 },
}

/// Follows the project's containers; returns the exit code of `up`.
pub fn attached(
    ctx: &Ctx,
    project: &str,
    stop_levels: &[Vec<String>],
    signals: SigSet,
    since: DateTime<Utc>,
    opts: &AttachOptions,
) -> anyhow::Result<u8> {
    let show = |service: &str| {
        (opts.attach.is_empty() || opts.attach.iter().any(|s| s == service))
            && !opts.no_attach.iter().any(|s| s == service)
    };
    let mut tracker = Tracker::new(ctx, project, |_| true);
    let first = tracker.new_ones()?;
    let color = !opts.no_color
        && std::io::IsTerminal::is_terminal(&std::io::stdout())
        && std::env::var_os("NO_COLOR").is_none();
    let mut prefixes = Prefixes::new(&first, opts.no_log_prefix, color);
    let out = std::sync::Mutex::new(());
    let (tx, rx) = mpsc::channel::<Event>();
    let stop_tx = tx.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            while signals.wait().is_ok() {
                if stop_tx.send(Event::Signal).is_err() {
                    return;
                }
            }
        })?;
    let progress = Progress::new();
    let mut result = 0u8;
    // (name, service, shown) of every container followed, by index.
    let mut followed: Vec<(String, String, bool)> = Vec::new();
    std::thread::scope(|s| -> anyhow::Result<()> {
        let follow = |index: usize, o: Observed, prefix: Prefix, shown: bool| {
            let (tx, out) = (tx.clone(), &out);
            s.spawn(move || {
                let (dir, policy) = (o.dir.clone(), o.config.restart.clone());
                let done = move || follow::done(&dir, &policy);
                if shown && let Some(reader) = follow::open_log(&o) {
                    let ropts = ReadOptions {
                        since: Some(since),
                        follow: true,
                        ..ReadOptions::default()
                    };
                    if let Ok(entries) = reader.entries_until(&ropts, done.clone()) {
                        for e in entries.flatten() {
                            if !write_entry(out, &prefix, &e, false) {
                                break;
                            }
                        }
                    }
                }
                while !done() {
                    std::thread::sleep(Duration::from_millis(100));
                }
                let code = lifecycle::state(&o.dir)
                    .ok()
                    .and_then(|st| st.exit_code)
                    .unwrap_or(0);
                let _ = tx.send(Event::Exited { index, code });
            });
        };
        let mut remaining = 0usize;
        for o in first {
            let shown = show(o.service());
            followed.push((o.config.name.clone(), o.service().to_string(), shown));
            let prefix = prefixes.next(&o);
            follow(followed.len() - 1, o, prefix, shown);
            remaining += 1;
        }
        let mut signals_seen = 0;
        let mut stopping = false;
        let stop_all = |kill: bool| {
            let levels = stop_levels.to_vec();
            let progress = &progress;
            let timeout = opts.timeout;
            s.spawn(move || {
                // Whatever the project has now, recreated containers included.
                let containers: Vec<Observed> = project_containers(&ctx.store, project)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|o| !o.oneoff())
                    .collect();
                for level in &levels {
                    let batch: Vec<&Observed> = containers
                        .iter()
                        .filter(|o| level.iter().any(|l| l == o.service()))
                        .collect();
                    std::thread::scope(|s2| {
                        for o in batch {
                            s2.spawn(move || {
                                let r = if kill {
                                    lifecycle::kill(&ctx.store, &o.dir, 9, true)
                                } else {
                                    lifecycle::stop(&ctx.store, &o.dir, timeout).map(|_| ())
                                };
                                if r.is_ok() && !kill {
                                    progress.line("Container", &o.config.name, "Stopped");
                                }
                            });
                        }
                    });
                }
            });
        };
        loop {
            let event = match rx.recv_timeout(follow::RESCAN) {
                Ok(event) => Some(event),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            match event {
                None => {}
                Some(Event::Signal) => {
                    signals_seen += 1;
                    if signals_seen == 1 {
                        eprintln!("Gracefully stopping... (press Ctrl+C again to force)");
                        stopping = true;
                        result = 130;
                        stop_all(false);
                    } else {
                        stop_all(true);
                    }
                }
                Some(Event::Exited { index, code }) => {
                    remaining -= 1;
                    let (name, service, shown) = &followed[index];
                    if *shown {
                        let _g = out.lock();
                        println!("{name} exited with code {code}");
                    }
                    let from = opts.exit_code_from.as_deref() == Some(service.as_str());
                    if from {
                        result = code.clamp(0, 255) as u8;
                    }
                    let abort = opts.abort_on_container_exit
                        || from
                        || (opts.abort_on_container_failure && code != 0);
                    if abort && !stopping {
                        if opts.exit_code_from.is_none() {
                            result = code.clamp(0, 255) as u8;
                        }
                        eprintln!("Aborting on container exit...");
                        stopping = true;
                        stop_all(false);
                    }
                }
            }
            // Sampled before the scan: an `up` that finishes in between has made its
            // containers by then, so the scan sees them.
            let busy = crate::commands::up::project_busy(ctx.root(), project);
            // Containers recreated or scaled by another command are followed too, from
            // their first line — unless the session is ending.
            if !stopping {
                for o in tracker.new_ones()? {
                    let shown = show(o.service());
                    followed.push((o.config.name.clone(), o.service().to_string(), shown));
                    let prefix = prefixes.next(&o);
                    follow(followed.len() - 1, o, prefix, shown);
                    remaining += 1;
                }
            }
            // Nothing left to follow ends it, unless an `up` or `down` is under way
            // (a recreate stops the old container before the new one exists).
            if remaining == 0 && !busy {
                break;
            }
        }
        Ok(())
    })?;
    Ok(result)
}
