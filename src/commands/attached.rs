//! `berth up` without `-d`: the project's output, prefixed per container, until every
//! attached container is done; the first Ctrl-C stops the project gracefully (with
//! progress), the second kills it. `--abort-on-container-exit`, `--abort-on-container-failure`
//! and `--exit-code-from` as docker compose.

use std::sync::mpsc;
use std::time::Duration;

use berth_engine::container::{ContainerState, RestartPolicy, Status, lifecycle};
use berth_engine::logs::{LogReader, ReadOptions};
use chrono::{DateTime, Utc};
use nix::sys::signal::{SigSet, Signal};

use crate::commands::container::Ctx;
use crate::commands::project_logs::{Prefix, prefixes, write_entry};
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

/// Whether the restart policy will bring the container back (the supervisor's rule), so its
/// output is still followed.
fn will_restart(policy: &RestartPolicy, st: &ContainerState) -> bool {
    if st.status == Status::Restarting {
        return true;
    }
    if st.manually_stopped {
        return false;
    }
    let code = st.exit_code.unwrap_or(0);
    match policy.name.as_str() {
        "always" | "unless-stopped" => true,
        "on-failure" => {
            code != 0 && (policy.max_retries == 0 || st.restart_count < policy.max_retries)
        }
        _ => false,
    }
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
    let containers: Vec<Observed> = project_containers(&ctx.store, project)?
        .into_iter()
        .filter(|o| !o.oneoff())
        .collect();
    let shown: Vec<bool> = containers
        .iter()
        .map(|o| {
            (opts.attach.is_empty() || opts.attach.iter().any(|s| s == o.service()))
                && !opts.no_attach.iter().any(|s| s == o.service())
        })
        .collect();
    let color = !opts.no_color
        && std::io::IsTerminal::is_terminal(&std::io::stdout())
        && std::env::var_os("NO_COLOR").is_none();
    let prefixes: Vec<Prefix> = prefixes(&containers, opts.no_log_prefix, color);
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
    std::thread::scope(|s| -> anyhow::Result<()> {
        for (index, o) in containers.iter().enumerate() {
            let tx = tx.clone();
            let (out, prefix, show) = (&out, &prefixes[index], shown[index]);
            s.spawn(move || {
                let dir = o.dir.clone();
                let policy = o.config.restart.clone();
                let done = move || {
                    !dir.shim_alive().unwrap_or(false)
                        && lifecycle::state(&dir).is_ok_and(|st| !will_restart(&policy, &st))
                };
                if show && let Ok(reader) = LogReader::open(&o.dir.log_dir()) {
                    let ropts = ReadOptions {
                        since: Some(since),
                        follow: true,
                        ..ReadOptions::default()
                    };
                    if let Ok(entries) = reader.entries_until(&ropts, done.clone()) {
                        for e in entries.flatten() {
                            if !write_entry(out, prefix, &e, false) {
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
        }
        drop(tx);
        let mut remaining = containers.len();
        let mut signals_seen = 0;
        let mut stopping = false;
        let stop_all = |kill: bool| {
            let levels = stop_levels.to_vec();
            let containers = &containers;
            let progress = &progress;
            let timeout = opts.timeout;
            s.spawn(move || {
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
        while remaining > 0 {
            let Ok(event) = rx.recv() else { break };
            match event {
                Event::Signal => {
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
                Event::Exited { index, code } => {
                    remaining -= 1;
                    let o = &containers[index];
                    if shown[index] {
                        let _g = out.lock();
                        println!("{} exited with code {code}", o.config.name);
                    }
                    let from = opts.exit_code_from.as_deref() == Some(o.service());
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
        }
        Ok(())
    })?;
    Ok(result)
}
