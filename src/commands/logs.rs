//! Reading container logs: `berth container logs` and the foreground of `container run`.
//! (Compose's `berth logs`, which interleaves services, builds on the same reader.)

use std::io::Write;

use anyhow::Context;
use berth_engine::container::Status;
use berth_engine::container::store::ContainerDir;
use berth_engine::logs::{LogEntry, LogReader, ReadOptions, Stream};
use chrono::{DateTime, Utc};
use clap::Args;

use crate::commands::container::Ctx;

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short, long)]
    pub follow: bool,
    /// Number of lines to show from the end of the logs ("all" for every line)
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Show timestamps
    #[arg(short, long)]
    pub timestamps: bool,
    /// Show logs since timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m")
    #[arg(long)]
    pub since: Option<String>,
    /// Show logs before a timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m")
    #[arg(long)]
    pub until: Option<String>,
    pub container: String,
}

/// Docker's `--since`/`--until`: RFC 3339 (with or without zone, date only), a Unix timestamp,
/// or a Go duration meaning "that long ago".
pub fn parse_time(s: &str, now: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    if let Ok(secs) = s.parse::<f64>() {
        let nanos = (secs * 1e9) as i64;
        return Ok(DateTime::from_timestamp_nanos(nanos));
    }
    let d = berth_compose::units::Duration::parse(s)
        .map_err(|e| anyhow::anyhow!("invalid time {s:?}: {e}"))?;
    let d = chrono::Duration::from_std(d.to_std()).context("duration out of range")?;
    Ok(now - d)
}

fn options(a: &LogsArgs) -> anyhow::Result<ReadOptions> {
    let now = Utc::now();
    let tail = match a.tail.as_str() {
        "all" | "" => None,
        n => match n.parse::<i64>() {
            Ok(n) if n < 0 => None,
            Ok(n) => Some(n as usize),
            Err(_) => anyhow::bail!("invalid --tail {n:?}: a number or \"all\""),
        },
    };
    Ok(ReadOptions {
        tail,
        since: a.since.as_deref().map(|s| parse_time(s, now)).transpose()?,
        until: a.until.as_deref().map(|s| parse_time(s, now)).transpose()?,
        follow: a.follow,
    })
}

/// `berth container logs`.
pub fn run(ctx: &Ctx, a: &LogsArgs) -> anyhow::Result<u8> {
    let dir = ctx.resolve(&a.container)?;
    let config = dir.config()?;
    if config.log.driver == "none" {
        anyhow::bail!(
            "configured logging driver does not support reading: container {} logs with driver \"none\"",
            config.name
        );
    }
    let opts = options(a)?;
    print_entries(&dir, &opts, a.timestamps)?;
    Ok(0)
}

fn print_entries(dir: &ContainerDir, opts: &ReadOptions, timestamps: bool) -> anyhow::Result<()> {
    let log_dir = dir.log_dir();
    std::fs::create_dir_all(&log_dir).ok();
    let reader = LogReader::open(&log_dir)?;
    let stop_dir = dir.clone();
    // Done once the shim is gone, or once it recorded the exit: it drains the output into
    // the log before, and an exited `--rm` container's shim waits for its starter (this
    // follower, in `run`) before it removes the container and goes.
    let entries = reader.entries_until(opts, move || {
        !stop_dir.shim_alive().unwrap_or(false)
            || stop_dir
                .state()
                .is_ok_and(|s| matches!(s.status, Status::Exited | Status::Dead))
    })?;
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    for entry in entries {
        let entry: LogEntry = entry?;
        let line = entry.format_line(timestamps);
        let result = match entry.stream {
            Stream::Stdout => stdout.lock().write_all(&line),
            Stream::Stderr => stderr.lock().write_all(&line),
        };
        if let Err(e) = result {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            return Err(e.into());
        }
    }
    Ok(())
}

/// The foreground of `container run` and `start -a`: prints the container's output as it
/// comes (stdout to stdout, stderr to stderr) until it exits; `since` skips older entries.
pub fn follow(dir: &ContainerDir, since: Option<DateTime<Utc>>) -> anyhow::Result<()> {
    // A `--rm` container may be gone already: its exit code comes from the shim's report.
    if !dir.config_file().exists() {
        return Ok(());
    }
    let config = dir.config()?;
    if config.log.driver != "none" {
        let opts = ReadOptions {
            follow: true,
            since,
            ..ReadOptions::default()
        };
        print_entries(dir, &opts, false)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_like_docker() {
        let now = DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let t = |s: &str| parse_time(s, now).unwrap().to_rfc3339();
        assert_eq!(t("2026-11-23T09:00:00Z"), "2026-11-23T09:00:00+00:00");
        assert_eq!(t("2026-11-23T09:00:00"), "2026-11-23T09:00:00+00:00");
        assert_eq!(t("2026-11-22"), "2026-11-22T00:00:00+00:00");
        assert_eq!(t("42m"), "2026-11-23T09:18:00+00:00");
        assert_eq!(t("1h30m"), "2026-11-23T08:30:00+00:00");
        assert_eq!(t("1795428000"), "2026-11-23T10:00:00+00:00");
        assert!(parse_time("yesterday", now).is_err());
    }
}
