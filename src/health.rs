//! Health checks: the check a container gets (its image's `HEALTHCHECK` under the user's
//! `healthcheck:`/`--health-*`), one probe (the test run inside the container through
//! `berth __exec`), Docker's status machine over the probes' results, and a wait until a
//! container is healthy.
//!
//! Probes run only when someone calls [`probe`]: [`wait_healthy`] does while it waits (`up`'s
//! `service_healthy` gate and `up --wait`); a supervisor may call [`probe`]/[`record`]
//! periodically. [`wait_healthy`] probes only when the last recorded result is older than the
//! interval, so it does not double the probes of a supervisor that keeps up.

use std::io::Read;
use std::os::fd::AsFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use berth_engine::container::exec::{EXEC_VERB, ExecRequest};
use berth_engine::container::lifecycle;
use berth_engine::container::shim::now_rfc3339;
use berth_engine::container::store::ContainerDir;
use berth_engine::container::{
    HEALTH_LOG_ENTRIES, Health, HealthConfig, HealthResult, HealthStatus, Status,
};
use berth_engine::events;
use berth_engine::images::Healthcheck;
use chrono::{DateTime, Utc};

use crate::commands::container::Ctx;

/// Docker's cap on a probe's recorded output (the rest is dropped, `...` marks the cut).
pub const MAX_OUTPUT: usize = 4096;

/// The user's health-check settings over the image's (`healthcheck:` or `--health-*`):
/// `None`/zero inherits the image's value, then Docker's default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthOverrides {
    /// Docker's form (`["CMD", …]`, `["CMD-SHELL", s]`, `["NONE"]`); empty: the image's.
    pub test: Vec<String>,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub retries: Option<u32>,
    pub start_period: Option<Duration>,
    pub start_interval: Option<Duration>,
    /// `disable: true`, `--no-healthcheck`: the test is `["NONE"]`, whatever else is given.
    pub disable: bool,
}

/// The container's check: each setting from `over`, else the image's, else Docker's default
/// (zero counts as unset, as in Docker). `None` when neither gives a test.
pub fn resolve(image: Option<&Healthcheck>, over: &HealthOverrides) -> Option<HealthConfig> {
    let test = if over.disable {
        vec!["NONE".to_string()]
    } else if !over.test.is_empty() {
        over.test.clone()
    } else {
        image.map(|i| i.test.clone()).unwrap_or_default()
    };
    if test.is_empty() {
        return None;
    }
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let pick = |o: Option<Duration>, i: Option<Duration>, default: u64| {
        o.filter(|d| !d.is_zero())
            .or(i.filter(|d| !d.is_zero()))
            .map(ms)
            .unwrap_or(default)
    };
    let d = HealthConfig::default();
    Some(HealthConfig {
        test,
        interval_ms: pick(over.interval, image.and_then(|i| i.interval), d.interval_ms),
        timeout_ms: pick(over.timeout, image.and_then(|i| i.timeout), d.timeout_ms),
        retries: over
            .retries
            .filter(|r| *r > 0)
            .or(image.and_then(|i| i.retries).filter(|r| *r > 0))
            .unwrap_or(d.retries),
        start_period_ms: pick(
            over.start_period,
            image.and_then(|i| i.start_period),
            d.start_period_ms,
        ),
        start_interval_ms: pick(
            over.start_interval,
            image.and_then(|i| i.start_interval),
            d.start_interval_ms,
        ),
    })
}

/// A health-check duration given by the user: negative is refused, zero means "unset", and
/// anything else must be at least 1 ms (Docker's minimum).
pub fn duration(d: berth_compose::units::Duration) -> Result<Option<Duration>, String> {
    match d.as_nanos() {
        n if n < 0 => Err(format!("{d} must not be negative")),
        0 => Ok(None),
        n if n < 1_000_000 => Err(format!("{d} is shorter than the minimum of 1ms")),
        _ => Ok(Some(d.to_std())),
    }
}

/// Runs the container's test once (through `berth __exec`, stdout and stderr together, at
/// most [`MAX_OUTPUT`] bytes kept), killed after the check's timeout. Never fails: a test that
/// cannot run or times out is a failed result with exit code -1, as in Docker.
pub fn probe(ctx: &Ctx, dir: &ContainerDir, hc: &HealthConfig) -> HealthResult {
    probe_with(&ctx.shim_exe, ctx.root(), dir, hc)
}

/// [`probe`] for processes without a [`Ctx`] (the supervisor): berth's binary and the root.
pub fn probe_with(
    exe: &std::path::Path,
    root: &std::path::Path,
    dir: &ContainerDir,
    hc: &HealthConfig,
) -> HealthResult {
    let start = now_rfc3339();
    let (exit_code, output) = match run_probe(exe, root, dir, hc) {
        Ok(r) => r,
        Err(e) => (-1, format!("{e:#}")),
    };
    HealthResult {
        start,
        end: now_rfc3339(),
        exit_code,
        output,
    }
}

fn run_probe(
    exe: &std::path::Path,
    root: &std::path::Path,
    dir: &ContainerDir,
    hc: &HealthConfig,
) -> anyhow::Result<(i32, String)> {
    let Some(args) = hc.probe_args() else {
        bail!("the health check is disabled or has no test");
    };
    let timeout = Duration::from_millis(hc.timeout_ms);
    let req = ExecRequest {
        id: dir.id.clone(),
        args,
        ..ExecRequest::default()
    };
    let (mut reader, writer) = std::io::pipe().context("create the probe's output pipe")?;
    let child = {
        // The command holds the pipe's write ends until dropped: dropped at the end of this
        // block, so the pipe ends when the probe (and whatever inherited it) does.
        let mut cmd = Command::new(exe);
        cmd.arg(EXEC_VERB)
            .args(req.to_args(root))
            .stdin(Stdio::null())
            .stdout(writer.try_clone().context("duplicate the probe's pipe")?)
            .stderr(writer);
        cmd.spawn().context("cannot run the exec helper")?
    };
    let mut child = KillOnDrop(child);
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut truncated = false;
    let mut buf = [0u8; 4096];
    let mut eof = false;
    let mut status = None;
    loop {
        if status.is_none() {
            status = child.0.try_wait().context("wait for the probe")?;
        }
        if eof && status.is_some() {
            break;
        }
        let now = Instant::now();
        if now >= deadline {
            child.kill();
            return Ok((
                -1,
                format!(
                    "Health check exceeded timeout ({})",
                    berth_compose::units::Duration(
                        i64::try_from(timeout.as_nanos()).unwrap_or(i64::MAX)
                    )
                ),
            ));
        }
        if eof {
            std::thread::sleep((deadline - now).min(Duration::from_millis(10)));
            continue;
        }
        // Once the helper exited, only what is already in the pipe is read: a process the
        // test left running in the background may hold the pipe open forever.
        let wait = if status.is_some() {
            Duration::ZERO
        } else {
            (deadline - now).min(Duration::from_millis(100))
        };
        let mut fds = [nix::poll::PollFd::new(
            reader.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let ready = match nix::poll::poll(
            &mut fds,
            nix::poll::PollTimeout::try_from(wait).unwrap_or(nix::poll::PollTimeout::MAX),
        ) {
            Ok(n) => n > 0,
            Err(nix::errno::Errno::EINTR) => false,
            Err(e) => bail!("wait for the probe's output: {e}"),
        };
        if !ready {
            if status.is_some() {
                break;
            }
            continue;
        }
        match reader.read(&mut buf) {
            Ok(0) => eof = true,
            Ok(n) => {
                let room = MAX_OUTPUT.saturating_sub(out.len());
                out.extend_from_slice(&buf[..n.min(room)]);
                truncated |= n > room;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => bail!("read the probe's output: {e}"),
        }
    }
    let code = match status {
        Some(s) => s
            .code()
            .or_else(|| {
                use std::os::unix::process::ExitStatusExt;
                s.signal().map(|sig| 128 + sig)
            })
            .unwrap_or(-1),
        None => -1,
    };
    let mut output = String::from_utf8_lossy(&out).into_owned();
    if truncated {
        output.push_str("...");
    }
    Ok((code, output))
}

/// The `__exec` helper and the test it runs, killed unless they already ended: the test is
/// the helper's child (libcontainer starts it as a sibling of its intermediate process), so
/// both are killed, the test first.
struct KillOnDrop(Child);

impl KillOnDrop {
    fn kill(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let pid = self.0.id();
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default();
            for c in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(c),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Records one probe's result in the container's state (Docker's status machine, see
/// [`apply`]) and returns the new health. A result of an earlier run (the container was
/// restarted meanwhile) or for a container not running any more changes nothing (`None`).
pub fn record(
    dir: &ContainerDir,
    hc: &HealthConfig,
    result: HealthResult,
) -> anyhow::Result<Option<Health>> {
    let mut out = None;
    let mut changed = false;
    dir.update_state(|s| {
        if !matches!(s.status, Status::Running | Status::Paused) {
            return;
        }
        let started = parse_time(&s.started_at);
        if started.is_some_and(|st| parse_time(&result.start).is_some_and(|r| r < st)) {
            return;
        }
        if let Some(h) = s.health.as_mut() {
            let before = h.status;
            apply(h, hc, result, started);
            changed = h.status != before;
            out = Some(h.clone());
        }
    })
    .with_context(|| format!("record the health of container {}", dir.id))?;
    if let (true, Some(h)) = (changed, &out) {
        // Docker's event on every change of status: `health_status: healthy`.
        events::emit_for(dir, &format!("health_status: {}", h.status.as_str()), &[]);
    }
    Ok(out)
}

/// Docker's rules: a success makes the container healthy and clears the streak; a failure
/// while still `starting` inside the start period does not count; otherwise it lengthens the
/// streak, and `retries` failures in a row make it unhealthy. The log keeps the last
/// [`HEALTH_LOG_ENTRIES`] results.
fn apply(h: &mut Health, hc: &HealthConfig, result: HealthResult, started: Option<DateTime<Utc>>) {
    if result.exit_code == 0 {
        h.failing_streak = 0;
        h.status = HealthStatus::Healthy;
    } else {
        let in_start_period = h.status == HealthStatus::Starting
            && match (started, parse_time(&result.start)) {
                (Some(st), Some(r)) => {
                    (r - st).to_std().unwrap_or_default()
                        < Duration::from_millis(hc.start_period_ms)
                }
                _ => false,
            };
        if !in_start_period {
            h.failing_streak = h.failing_streak.saturating_add(1);
            if h.failing_streak >= hc.retries.max(1) {
                h.status = HealthStatus::Unhealthy;
            }
        }
    }
    h.log.push(result);
    let excess = h.log.len().saturating_sub(HEALTH_LOG_ENTRIES);
    h.log.drain(..excess);
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// How often the state is re-read while waiting for the next probe (a supervisor's results
/// show up this fast).
const POLL: Duration = Duration::from_millis(200);

/// Probes the container (at `start_interval` while starting inside the start period, at
/// `interval` after; the first probe one interval after the start, as Docker) until it is
/// healthy or unhealthy, or `deadline` passes (then `Starting` is returned). A container that
/// is not running, or runs without a health check, is an error in docker compose's words.
pub fn wait_healthy(
    ctx: &Ctx,
    dir: &ContainerDir,
    hc: &HealthConfig,
    deadline: Option<Instant>,
) -> anyhow::Result<HealthStatus> {
    let name = dir
        .config()
        .map(|c| c.name)
        .unwrap_or_else(|_| dir.id.clone());
    loop {
        let state = lifecycle::state(dir)?;
        match state.status {
            Status::Running | Status::Paused => {}
            Status::Exited | Status::Dead => bail!(
                "container {name} exited ({})",
                state.exit_code.unwrap_or(255)
            ),
            other => bail!("container {name} is {}", other.as_str()),
        }
        let Some(health) = &state.health else {
            bail!("container {name} has no healthcheck configured");
        };
        if health.status != HealthStatus::Starting {
            return Ok(health.status);
        }
        let now = Utc::now();
        let started = parse_time(&state.started_at).unwrap_or(now);
        let interval = if (now - started).to_std().unwrap_or_default()
            < Duration::from_millis(hc.start_period_ms)
        {
            hc.start_interval_ms
        } else {
            hc.interval_ms
        };
        let last = health
            .log
            .last()
            .and_then(|r| parse_time(&r.end))
            .filter(|end| *end >= started)
            .unwrap_or(started);
        let due =
            last + chrono::Duration::milliseconds(i64::try_from(interval).unwrap_or(i64::MAX));
        // Docker does not probe a paused container.
        if now >= due && state.status == Status::Running {
            let result = probe(ctx, dir, hc);
            record(dir, hc, result)?;
            continue;
        }
        let mut pause = (due - now).to_std().unwrap_or(POLL).min(POLL);
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(HealthStatus::Starting);
            }
            pause = pause.min(left);
        }
        std::thread::sleep(pause.max(Duration::from_millis(1)));
    }
}

/// The supervisor's probing of one running container: a probe every `start_interval`
/// during the start period and every `interval` after, each result recorded, until the
/// container stops or is started again (another run, another loop).
pub fn probe_loop(
    exe: &std::path::Path,
    root: &std::path::Path,
    dir: &ContainerDir,
    hc: &HealthConfig,
) {
    let Ok(first) = berth_engine::container::lifecycle::state(dir) else {
        return;
    };
    let started = first.started_at.clone();
    let begun = std::time::Instant::now();
    loop {
        let in_start_period = begun.elapsed() < Duration::from_millis(hc.start_period_ms);
        let wait = if in_start_period {
            hc.start_interval_ms
        } else {
            hc.interval_ms
        };
        std::thread::sleep(Duration::from_millis(wait.max(10)));
        match berth_engine::container::lifecycle::state(dir) {
            Ok(st)
                if st.status == berth_engine::container::Status::Running
                    && st.started_at == started => {}
            _ => return,
        }
        let result = probe_with(exe, root, dir, hc);
        if record(dir, hc, result).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> String {
        (DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::seconds(secs)).to_rfc3339()
    }

    fn result(start: i64, code: i32) -> HealthResult {
        HealthResult {
            start: at(start),
            end: at(start),
            exit_code: code,
            output: format!("run at {start}"),
        }
    }

    fn hc(retries: u32, start_period_s: u64) -> HealthConfig {
        HealthConfig {
            test: vec!["CMD".into(), "true".into()],
            retries,
            start_period_ms: start_period_s * 1000,
            ..HealthConfig::default()
        }
    }

    #[test]
    fn failures_count_to_retries_then_unhealthy_and_a_success_heals() {
        let c = hc(2, 0);
        let started = parse_time(&at(0));
        let mut h = Health::default();
        apply(&mut h, &c, result(1, 1), started);
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Starting, 1));
        apply(&mut h, &c, result(2, 1), started);
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Unhealthy, 2));
        apply(&mut h, &c, result(3, 0), started);
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Healthy, 0));
        // Healthy once: a failure counts at once, one is not enough with retries 2.
        apply(&mut h, &c, result(4, 7), started);
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Healthy, 1));
    }

    #[test]
    fn failures_in_the_start_period_do_not_count_while_starting() {
        let c = hc(1, 10);
        let started = parse_time(&at(100));
        let mut h = Health::default();
        apply(&mut h, &c, result(105, 1), started);
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Starting, 0));
        apply(&mut h, &c, result(111, 1), started);
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Unhealthy, 1));
        // After a success inside the start period, failures count.
        let mut h = Health::default();
        apply(&mut h, &c, result(101, 0), started);
        apply(&mut h, &c, result(102, 1), started);
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Unhealthy, 1));
    }

    #[test]
    fn the_log_keeps_the_last_five() {
        let c = hc(100, 0);
        let mut h = Health::default();
        for i in 0..8 {
            apply(&mut h, &c, result(i, 1), None);
        }
        assert_eq!(h.log.len(), HEALTH_LOG_ENTRIES);
        assert_eq!(h.log[0].output, "run at 3");
        assert_eq!(h.log[4].output, "run at 7");
    }

    #[test]
    fn user_settings_over_the_image_over_docker_defaults() {
        let image = Healthcheck {
            test: vec!["CMD-SHELL".into(), "image-test".into()],
            interval: Some(Duration::from_secs(7)),
            timeout: None,
            start_period: Some(Duration::from_secs(3)),
            start_interval: None,
            retries: Some(9),
        };
        // Only some fields given: the image's test stays.
        let over = HealthOverrides {
            interval: Some(Duration::from_millis(1500)),
            retries: Some(0),
            ..HealthOverrides::default()
        };
        let got = resolve(Some(&image), &over).unwrap();
        assert_eq!(
            got,
            HealthConfig {
                test: vec!["CMD-SHELL".into(), "image-test".into()],
                interval_ms: 1500,
                timeout_ms: 30_000,
                retries: 9,
                start_period_ms: 3000,
                start_interval_ms: 5000,
            }
        );
        let over = HealthOverrides {
            test: vec!["CMD".into(), "mine".into()],
            ..HealthOverrides::default()
        };
        assert_eq!(resolve(Some(&image), &over).unwrap().test, ["CMD", "mine"]);
        let off = HealthOverrides {
            test: vec!["CMD".into(), "mine".into()],
            disable: true,
            ..HealthOverrides::default()
        };
        assert_eq!(resolve(Some(&image), &off).unwrap().test, ["NONE"]);
        assert_eq!(resolve(None, &HealthOverrides::default()), None);
        let only_interval = HealthOverrides {
            interval: Some(Duration::from_secs(1)),
            ..HealthOverrides::default()
        };
        assert_eq!(resolve(None, &only_interval), None);
    }

    #[test]
    fn durations_are_checked_like_docker() {
        use berth_compose::units::Duration as D;
        assert_eq!(duration(D(0)), Ok(None));
        assert_eq!(duration(D::from_secs(2)), Ok(Some(Duration::from_secs(2))));
        assert!(duration(D(-1)).unwrap_err().contains("negative"));
        assert!(duration(D(500)).unwrap_err().contains("1ms"));
    }
}
