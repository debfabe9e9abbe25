//! `berth container cp | export | top | stats`: docker's verbs for looking into a container,
//! on top of [`berth_engine::container::ops`].

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use berth_engine::container::lifecycle;
use berth_engine::container::ops::{
    self, CgroupFs, CgroupSample, CopyInSource, CopyOptions, CopyOutDest, HostSample, RootfsAccess,
};
use berth_engine::container::shim;
use berth_engine::container::store::ContainerDir;
use berth_engine::container::{ContainerConfig, ContainerState, Status};
use clap::Args;

use crate::commands::container::Ctx;

#[derive(Debug, Args)]
pub struct CpArgs {
    /// Archive mode (copy all uid/gid information)
    #[arg(short, long)]
    pub archive: bool,
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long)]
    pub follow_link: bool,
    /// CONTAINER:SRC_PATH, a local path, or - (a tar stream on stdin)
    pub src: String,
    /// CONTAINER:DEST_PATH, a local path, or - (a tar stream on stdout)
    pub dest: String,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    pub container: String,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    pub container: String,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
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
    pub containers: Vec<String>,
}

/// docker's reading of a `cp` argument: `CONTAINER:PATH`, or a local path (absolute paths and
/// arguments without `:` are local; `-` is a stream).
fn split_cp_arg(arg: &str) -> (Option<&str>, &str) {
    if arg.starts_with('/') || arg.starts_with('.') {
        return (None, arg);
    }
    match arg.split_once(':') {
        Some((c, p)) if !c.is_empty() => (Some(c), p),
        _ => (None, arg),
    }
}

/// `berth container cp`.
pub fn run_cp(ctx: &Ctx, a: &CpArgs) -> anyhow::Result<u8> {
    let opts = CopyOptions {
        archive: a.archive,
        follow_link: a.follow_link,
    };
    match (split_cp_arg(&a.src), split_cp_arg(&a.dest)) {
        ((Some(_), _), (Some(_), _)) => bail!("copying between containers is not supported"),
        ((None, _), (None, _)) => bail!("must specify at least one container source"),
        ((Some(c), src), (None, dest)) => {
            let dir = ctx.resolve(c)?;
            let access = RootfsAccess::open(&ctx.engine.stores, &dir)?;
            let src = if src.is_empty() { "/" } else { src };
            if dest == "-" {
                let stdout = std::io::stdout();
                let mut out = std::io::BufWriter::new(stdout.lock());
                ops::copy_out(&access, src, CopyOutDest::Stream(&mut out), &opts)?;
                out.flush()?;
            } else {
                ops::copy_out(&access, src, CopyOutDest::Host(Path::new(dest)), &opts)?;
            }
            access.close()?;
        }
        ((None, src), (Some(c), dest)) => {
            let dir = ctx.resolve(c)?;
            let access = RootfsAccess::open(&ctx.engine.stores, &dir)?;
            let dest = if dest.is_empty() { "/" } else { dest };
            if src == "-" {
                let stdin = std::io::stdin();
                let mut input = stdin.lock();
                ops::copy_in(&access, CopyInSource::Stream(&mut input), dest, &opts)?;
            } else {
                ops::copy_in(&access, CopyInSource::Host(Path::new(src)), dest, &opts)?;
            }
            access.close()?;
        }
    }
    Ok(0)
}

/// `berth container export`.
pub fn run_export(ctx: &Ctx, a: &ExportArgs) -> anyhow::Result<u8> {
    let dir = ctx.resolve(&a.container)?;
    match &a.output {
        None => {
            let stdout = std::io::stdout();
            if stdout.is_terminal() {
                bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
            }
            let access = RootfsAccess::open(&ctx.engine.stores, &dir)?;
            let mut out = std::io::BufWriter::new(stdout.lock());
            ops::export(&access, &mut out)?;
            out.flush()?;
            access.close()?;
        }
        Some(path) => {
            let access = RootfsAccess::open(&ctx.engine.stores, &dir)?;
            let file = std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            let mut out = std::io::BufWriter::new(file);
            let result = ops::export(&access, &mut out)
                .map_err(anyhow::Error::from)
                .and_then(|()| {
                    out.flush()?;
                    out.get_ref().sync_all()?;
                    Ok(())
                });
            if let Err(e) = result {
                let _ = std::fs::remove_file(path);
                return Err(e);
            }
            access.close()?;
        }
    }
    Ok(0)
}

fn is_running(st: &ContainerState) -> bool {
    matches!(st.status, Status::Running | Status::Paused)
}

/// `berth container top`.
pub fn run_top(ctx: &Ctx, a: &TopArgs) -> anyhow::Result<u8> {
    let dir = ctx.resolve(&a.container)?;
    let config = dir.config()?;
    if !is_running(&lifecycle::state(&dir)?) {
        return Err(ops::OpsError::NotRunning(config.name).into());
    }
    let rows = ops::top(&CgroupFs::host(), &shim::cgroups_path(&config))?;
    let mut table: Vec<Vec<String>> = vec![ops::TOP_TITLES.iter().map(|t| t.to_string()).collect()];
    table.extend(rows);
    print!("{}", crate::commands::tabwrite(&table, 20, 3));
    Ok(0)
}

struct Target {
    key: String,
    dir: ContainerDir,
    config: ContainerConfig,
}

struct Reading {
    cg: CgroupSample,
    host: HostSample,
    net: (u64, u64),
    running: bool,
}

fn read(cgfs: &CgroupFs, t: &Target) -> anyhow::Result<Reading> {
    let st = lifecycle::state(&t.dir)?;
    let running = is_running(&st);
    if !running {
        return Ok(Reading {
            cg: CgroupSample::default(),
            host: HostSample::default(),
            net: (0, 0),
            running,
        });
    }
    let (cg, host, net) = ops::sample_container(
        cgfs,
        &shim::cgroups_path(&t.config),
        st.pid,
        &t.config.network,
    )?;
    Ok(Reading {
        cg,
        host,
        net,
        running,
    })
}

fn targets(ctx: &Ctx, a: &StatsArgs) -> anyhow::Result<Vec<Target>> {
    let mut out = Vec::new();
    if a.containers.is_empty() {
        for id in ctx.store.ids()? {
            let dir = ctx.store.dir_of(&id);
            let Ok(config) = dir.config() else { continue };
            if !a.all && !lifecycle::state(&dir).is_ok_and(|s| is_running(&s)) {
                continue;
            }
            out.push(Target {
                key: id[..12].to_string(),
                dir,
                config,
            });
        }
    } else {
        for key in &a.containers {
            let dir = ctx.resolve(key)?;
            let config = dir.config()?;
            out.push(Target {
                key: key.clone(),
                dir,
                config,
            });
        }
    }
    Ok(out)
}

const STATS_TITLES: [&str; 8] = [
    "CONTAINER ID",
    "NAME",
    "CPU %",
    "MEM USAGE / LIMIT",
    "MEM %",
    "NET I/O",
    "BLOCK I/O",
    "PIDS",
];

fn render(a: &StatsArgs, rows: &[(&Target, ops::Stats)]) -> String {
    let json = a.format.as_deref() == Some("json");
    let mut table: Vec<Vec<String>> = Vec::new();
    let mut lines = String::new();
    if !json {
        table.push(STATS_TITLES.iter().map(|t| t.to_string()).collect());
    }
    for (t, s) in rows {
        let id = if a.no_trunc {
            t.config.id.clone()
        } else {
            t.config.id.chars().take(12).collect()
        };
        let cpu = format!("{:.2}%", s.cpu_percent);
        let mem = format!(
            "{} / {}",
            ops::bytes_size(s.mem_usage),
            ops::bytes_size(s.mem_limit)
        );
        let mem_perc = format!("{:.2}%", s.mem_percent);
        let net = format!(
            "{} / {}",
            ops::human_size(s.net_rx),
            ops::human_size(s.net_tx)
        );
        let block = format!(
            "{} / {}",
            ops::human_size(s.block_read),
            ops::human_size(s.block_write)
        );
        if json {
            let v = serde_json::json!({
                "BlockIO": block,
                "CPUPerc": cpu,
                "Container": t.key,
                "ID": id,
                "MemPerc": mem_perc,
                "MemUsage": mem,
                "Name": t.config.name,
                "NetIO": net,
                "PIDs": s.pids.to_string(),
            });
            lines.push_str(&v.to_string());
            lines.push('\n');
        } else {
            table.push(vec![
                id,
                t.config.name.clone(),
                cpu,
                mem,
                mem_perc,
                net,
                block,
                s.pids.to_string(),
            ]);
        }
    }
    if json {
        lines
    } else {
        crate::commands::tabwrite(&table, 10, 3)
    }
}

/// `berth container stats`.
pub fn run_stats(ctx: &Ctx, a: &StatsArgs) -> anyhow::Result<u8> {
    match a.format.as_deref() {
        None | Some("table") | Some("json") => {}
        Some(f) => bail!("unsupported format {f:?}: use table or json"),
    }
    let cgfs = CgroupFs::host();
    let mut targets = targets(ctx, a)?;
    let mut prev: Vec<Option<Reading>> = targets.iter().map(|t| read(&cgfs, t).ok()).collect();
    let mut interval = Duration::from_millis(500);
    loop {
        let started = Instant::now();
        std::thread::sleep(interval);
        let mut rows = Vec::new();
        let mut next = Vec::new();
        for (t, p) in targets.iter().zip(&prev) {
            let cur = match read(&cgfs, t) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("{}: {e:#}", t.key);
                    next.push(None);
                    continue;
                }
            };
            let stats = if cur.running {
                let prev = p.as_ref().filter(|p| p.running).map(|p| (&p.cg, &p.host));
                ops::stats(prev, (&cur.cg, &cur.host), cur.net)
            } else {
                ops::Stats::default()
            };
            rows.push((t, stats));
            next.push(Some(cur));
        }
        let text = render(a, &rows);
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        if a.no_stream {
            out.write_all(text.as_bytes())?;
            out.flush()?;
            return Ok(0);
        }
        out.write_all(b"\x1b[2J\x1b[H")?;
        out.write_all(text.as_bytes())?;
        out.flush()?;
        drop(out);
        // Containers that started or went away since (when none were named).
        if a.containers.is_empty() {
            let fresh = self::targets(ctx, a)?;
            let mut readings = Vec::new();
            for t in &fresh {
                let old = targets.iter().position(|o| o.config.id == t.config.id);
                readings.push(match old {
                    Some(i) => next[i].take(),
                    None => read(&cgfs, t).ok(),
                });
            }
            targets = fresh;
            next = readings;
        }
        prev = next;
        let work = started.elapsed().saturating_sub(interval);
        interval = Duration::from_secs(1).saturating_sub(work);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cp_arguments_split_like_docker() {
        assert_eq!(split_cp_arg("web:/etc/x"), (Some("web"), "/etc/x"));
        assert_eq!(split_cp_arg("web:"), (Some("web"), ""));
        assert_eq!(split_cp_arg("/abs:olute"), (None, "/abs:olute"));
        assert_eq!(split_cp_arg("./a:b"), (None, "./a:b"));
        assert_eq!(split_cp_arg("local"), (None, "local"));
        assert_eq!(split_cp_arg("-"), (None, "-"));
    }
}
